"""Batch reads (``__getitems__`` -> ``lfakit.data.batching``) against the per-item path, bit for bit:
every augmentation, gray and RGB, explicit generator and global RNG, through a plain DataLoader,
through the engine's loaders, on the "device" path and under AVX2 as well as the CPU's best."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset, default_collate

from lfakit import engine
from lfakit.data import batching
from lfakit.data.datasets import ArrayImageDataset, LabelImageDataset
from lfakit.data.patches import PatchDataset
from lfakit.fitconfig import FitConfig

ROOT = Path(__file__).resolve().parents[1]

AUGMENTS = {
    "none": dict(augment=False),
    "flip": dict(augment=True, max_shift=0.0),
    "shift": dict(augment=True, hflip_p=0.0),
    "flip+shift": dict(augment=True),
    "wide": dict(augment=True, hflip_p=0.3, max_shift=0.2),
}
LAYOUTS = {  # image array shape per item, model channels
    "gray->3": ((20, 20), 3),
    "gray->1": ((20, 20), 1),
    "gray(H,W,1)->3": ((20, 20, 1), 3),
    "rgb->3": ((18, 26, 3), 3),
    "rgb->1": ((18, 26, 3), 1),
    "rgb32": ((32, 32, 3), 3),
    "gray-large->3": ((70, 64), 3),  # >= Normalise.LUT_PIXELS: the CPU table path
    "rgb-large->3": ((64, 66, 3), 3),
    "rgb-large->1": ((64, 66, 3), 1),
}


def _images(shape, n=40, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, *shape), dtype=np.uint8)


def _same(a, b):
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a.dtype == b.dtype and a.shape == b.shape and a.stride() == b.stride() and torch.equal(a, b)


def _per_item(ds, idx):
    return default_collate([ds[i] for i in idx])


class PerItem(Dataset):
    """The data set read item by item (no ``__getitems__``): what the loaders did before."""

    def __init__(self, ds):
        self.ds = ds

    def __len__(self):
        return len(self.ds)

    def __getitem__(self, i):
        return self.ds[i]


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("aug", AUGMENTS)
@pytest.mark.parametrize("own_generator", [False, True], ids=["global-rng", "generator"])
def test_batch_read_is_the_per_item_batch_bit_for_bit(layout, aug, own_generator):
    shape, ch = LAYOUTS[layout]
    imgs = _images(shape)
    targets = np.random.default_rng(1).random((len(imgs), 5))
    ds = ArrayImageDataset(imgs, targets, channels=ch, **AUGMENTS[aug])
    idx = [3, 0, 39, 7, 7, -1, 12, 25, 30, 1, 2, 5, 8, 13, 21, 34, 38]

    def run(fn):
        torch.manual_seed(11)
        ds.generator = torch.Generator().manual_seed(5) if own_generator else None
        out = fn()
        return out, torch.get_rng_state(), ds.generator.get_state() if own_generator else None

    ref, ref_state, ref_gen = run(lambda: _per_item(ds, idx))
    got, state, gen = run(lambda: batching.collate(ds.__getitems__(idx)))
    assert _same(ref, got)
    assert torch.equal(ref_state, state)  # the same draws: the RNG is left where the per-item path leaves it
    if own_generator:
        assert torch.equal(ref_gen, gen)
    if AUGMENTS[aug]["augment"]:
        assert not torch.equal(got[0], batching.collate(
            ArrayImageDataset(imgs, targets, channels=ch).__getitems__(idx))[0])  # augmentation did something


@pytest.mark.parametrize("positions", ["fresh", "random", "grid"])
def test_patch_batch_read_is_the_per_item_batch_bit_for_bit(positions):
    imgs = _images((40, 52, 3), n=7)
    rng = np.random.default_rng(2)
    ds = PatchDataset(imgs, rng.random(7), rng.random(7), 24, 3, positions, seed=4,
                      hflip_p=0.5 if positions == "fresh" else 0.0)
    idx = [20, 0, 5, 5, 13, 1, 2, 3, 4, 19, 18]
    torch.manual_seed(3)
    ref = _per_item(ds, idx)
    ref_state = torch.get_rng_state()
    torch.manual_seed(3)
    got = batching.collate(ds.__getitems__(idx))
    assert _same(ref, got) and torch.equal(ref_state, torch.get_rng_state())
    with pytest.raises(IndexError):
        ds.__getitems__([0, len(ds)])


def test_a_plain_dataloader_with_the_default_collate_still_gets_the_per_item_batches():
    ds = ArrayImageDataset(_images((20, 20, 3)), np.zeros((40, 2)), augment=True)
    plain = ArrayImageDataset(_images((20, 20, 3)), np.zeros((40, 2)), augment=True)
    torch.manual_seed(0)
    a = list(DataLoader(ds, batch_size=6, shuffle=True, generator=torch.Generator().manual_seed(1)))
    torch.manual_seed(0)
    b = list(DataLoader(PerItem(plain), batch_size=6, shuffle=True, generator=torch.Generator().manual_seed(1)))
    assert len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    raw = ds.__getitems__([1, 2])
    assert len(raw) == 2 and isinstance(raw[0], tuple) and raw[0][2] == 1 and len(raw[:1]) == 1
    patches = PatchDataset(_images((30, 30, 3), n=3), np.arange(3.0), np.ones(3), 16, 2)
    item = patches.__getitems__([3])[0]
    assert list(item) == ["x", "y", "index", "std"] and item["index"] == 3


@pytest.mark.parametrize("num_workers", [0, 2])
def test_engine_loaders_give_the_per_item_batches(num_workers):
    imgs, targets = _images((20, 20)), np.random.default_rng(3).random((40, 3))
    ds = ArrayImageDataset(imgs, targets, channels=3, augment=True)
    cpu = torch.device("cpu")

    def epoch(data, make):
        torch.manual_seed(7)
        return list(make(data))

    batched = epoch(ds, lambda d: engine._loader(d, 8, True, 123, num_workers, cpu, False))
    per_item = epoch(PerItem(ds), lambda d: engine._loader(d, 8, True, 123, num_workers, cpu, False))
    assert len(batched) == 5 and all(_same(x, y) for x, y in zip(batched, per_item))
    cfg = FitConfig(batch_size=8, num_workers=num_workers)
    ranks = epoch(ds, lambda d: engine.rank_loader(d, cfg, 123, cpu, 2, 1))
    ranks_ref = epoch(PerItem(ds), lambda d: engine.rank_loader(d, cfg, 123, cpu, 2, 1))
    assert all(_same(x, y) for x, y in zip(ranks, ranks_ref))
    # a subclass with its own items and no batch_targets is read item by item
    sub = type("Labelled", (ArrayImageDataset,), {"get": lambda self, i, g=None: (*super(type(self), self).get(i, g)[:1], torch.tensor(int(i) % 3), int(i))})(imgs, targets)
    x, y, i = next(iter(engine._loader(sub, 4, False, 0, 0, cpu)))
    assert y.dtype == torch.int64 and y.tolist() == [0, 1, 2, 0] and i.tolist() == [0, 1, 2, 3]


def test_a_subclass_with_its_own_targets_reads_batches_through_batch_targets():
    ds = LabelImageDataset(_images((32, 32, 3)), np.arange(40) % 10, augment=True)  # own_data, membership_inference
    idx = list(range(0, 40, 3))
    torch.manual_seed(1)
    ref = _per_item(ds, idx)
    torch.manual_seed(1)
    raw = ds.__getitems__(idx)
    assert isinstance(raw, batching.RawBatch) and _same(ref, batching.collate(raw))


def test_engine_fit_through_the_batch_path_matches_the_per_item_path():
    imgs, targets = _images((12, 12, 3), n=24), np.random.default_rng(4).random((24, 2))
    train = ArrayImageDataset(imgs, targets, augment=True)
    val = ArrayImageDataset(imgs[:8], targets[:8])
    cfg = FitConfig(batch_size=6, epochs=2, lr=1e-2, progress=False, amp=False, val_loss=True, device="cpu")

    def run(tr, va):
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 12 * 12, 2))
        res = engine.fit(model, torch.nn.BCEWithLogitsLoss(), tr, va, cfg)
        return res.history, [p.detach().clone() for p in res.model.parameters()]

    h1, p1 = run(train, val)
    h2, p2 = run(PerItem(train), PerItem(val))
    assert h1[["train_loss", "val_loss"]].equals(h2[["train_loss", "val_loss"]])
    assert all(torch.equal(a, b) for a, b in zip(p1, p2))


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("method", ["ops", "lut", "gather"])
def test_every_normalisation_method_gives_the_per_item_bits(layout, method):
    shape, ch = LAYOUTS[layout]
    ds = ArrayImageDataset(_images(shape, n=9), np.zeros(9), channels=ch)
    ref = _per_item(ds, range(9))[0]
    raw = ds.__getitems__(range(9))
    assert _same(ref, raw.normalise(raw.images, "cpu", method=method))


def test_the_device_path_is_the_same_code_and_the_same_bits():
    ds = ArrayImageDataset(_images((20, 20)), np.zeros(40), channels=3, augment=True)
    torch.manual_seed(0)
    raw = ds.__getitems__(list(range(10)))
    on_cpu = batching.collate(raw)
    via_device = batching.Collate(torch.device("cpu"))(raw)
    assert _same(on_cpu, via_device)
    # on a device other than the CPU (meta: shapes only) no op mixes devices, and only x moves
    for layout in ("gray->3", "rgb->3", "rgb->1"):
        shape, ch = LAYOUTS[layout]
        raw = ArrayImageDataset(_images(shape), np.zeros(40), channels=ch).__getitems__([0, 1, 2])
        x, y, i = batching.Collate("meta")(raw)
        assert x.device.type == "meta" and x.shape == (3, ch, *shape[:2]) and x.dtype == torch.float32
        assert y.device.type == "cpu" and i.device.type == "cpu"


@pytest.mark.parametrize("plan", [
    (None, (-2, 3), (-2, 3)),
    (None, (-11, 12), (-11, 12)),
    ((-1, 2), (-3, 4)),
    ((0, 161), (0, 289), None),  # lcm too large: the scalar calls
    (None,),
])
def test_draw_returns_the_scalar_calls_numbers(plan):
    g1, g2 = torch.Generator().manual_seed(9), torch.Generator().manual_seed(9)
    ref = batching._scalar_draws(plan, 257, g1)
    got = batching.draw(plan, 257, g2)
    assert np.array_equal(ref, got) and torch.equal(g1.get_state(), g2.get_state())
    torch.manual_seed(2)
    ref = batching._scalar_draws(plan, 5, None)
    torch.manual_seed(2)
    assert np.array_equal(ref, batching.draw(plan, 5)) and batching.draw(plan, 0).shape == (0, len(plan))


def test_draw_under_a_float64_default_dtype_still_matches():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        plan = (None, (-2, 3), (-2, 3))
        g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
        assert np.array_equal(batching._scalar_draws(plan, 40, g1), batching.draw(plan, 40, g2))
        assert torch.equal(g1.get_state(), g2.get_state())
    finally:
        torch.set_default_dtype(old)


_DIGEST = """
import hashlib, sys, numpy as np, torch
from torch.utils.data import default_collate
from lfakit.data import batching
from lfakit.data.datasets import ArrayImageDataset, LabelImageDataset
h = hashlib.sha256()
for shape, ch in [((20, 20), 3), ((18, 26, 3), 3), ((18, 26, 3), 1)]:
    imgs = np.random.default_rng(0).integers(0, 256, (40, *shape), dtype=np.uint8)
    ds = ArrayImageDataset(imgs, np.zeros(40), channels=ch, augment=True)
    torch.manual_seed(0)
    ref = default_collate([ds[i] for i in range(40)])[0]
    torch.manual_seed(0)
    got = batching.collate(ds.__getitems__(list(range(40))))[0]
    assert torch.equal(ref, got), shape
    h.update(got.numpy().tobytes())
print(torch.backends.cpu.get_cpu_capability(), h.hexdigest())
"""


def test_same_bits_under_avx2_and_the_cpus_best_instruction_set():
    out = {}
    for cap in ("avx2", None):
        env = {k: v for k, v in os.environ.items() if k != "ATEN_CPU_CAPABILITY"}
        if cap:
            env["ATEN_CPU_CAPABILITY"] = cap
        r = subprocess.run([sys.executable, "-c", _DIGEST], capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
        assert r.returncode == 0, r.stderr[-2000:]
        isa, digest = r.stdout.split()
        out[cap or isa] = digest
    assert len(set(out.values())) == 1, out


def test_the_loader_benchmark_runs_in_its_quick_mode():
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_loader.py"), "--quick", "--no-model"],
                       capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    for row in ("cache build", "membership 32 px RGB", "chestxray 224 gray", "224 px RGB", "iqa 384x512 -> 224 patches",
                "per-item path", "ImageFolder+PIL"):
        assert row in r.stdout
