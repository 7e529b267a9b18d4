"""Rehearse a profile before it costs GPU-hours: ``lfakit run <experiment> --profile paper --rehearse``.

A rehearsal runs the profile's own notebook -- its model, image size, precision and AMP, loader
and augmentation, cache build, every loss, evaluation, statistics, tables, figures and run
record -- on a few batches per split and one epoch, then prints a **plan** for the real run:

* seconds per training and evaluation step of the profile's model, measured on this device
  (at the profile's batch size on a GPU; on a CPU at a batch of at most :data:`CPU_BATCH_CAP` pixels,
  scaled linearly to the profile's batch, which the plan says);
* the projected wall time of the full profile: steps per epoch x epochs x models, from the real
  data set's sizes (:data:`KITS`: ChestX-ray14 112,120 images, CIFAR-10 50,000 + 10,000,
  KonIQ-10k's official split), plus the evaluation passes;
* peak memory (the GPU's ``max_memory_allocated`` for one step at the real batch, and the peak
  RSS of this process and of the notebook's kernel);
* the disk the full run needs (image caches, checkpoints, predictions) against the free space;
* anything that would stop the real run: pretrained weights that are not on disk and cannot be
  downloaded (the rehearsal then uses random weights, and says so once), a CPU for a profile
  meant for a GPU, too little disk, a ``data_dir`` that does not exist.

Data: with a ``data_dir`` that exists, a small sample of it (``max_images`` / ``pool_size``, or,
for CIFAR-10's cifar_fece, a per-class sample written as CIFAR-10 batches); without one, a few
dozen items written in the real on-disk layout at the real resolution under
``<cache>/rehearsal/`` (NIH ChestX-ray14 1024 x 1024 PNGs with ``Data_Entry_2017.csv`` and the
lists; CIFAR-10 python batches; KonIQ-10k 1024x768 and 512x384 JPEGs with the sets CSV), made
by the kit's generators and written once.

The run folder is ``results/<experiment>/<time>-rehearsal-<profile>`` and holds
:data:`lfakit.compare.REHEARSAL_FILE` (``"rehearsal": true``, the plan); ``lfakit compare``,
``lfakit report`` and a sweep's reuse of complete runs leave it out. Its checkpoints (``*.pt``,
gigabytes for Swin-B) are deleted at the end, which the plan says; the plan, the marker, the
notebook and the run record stay (the manifest lists what is left).

CIFAR-10's long tail is rehearsed at a capped imbalance ratio (:data:`LT_RHO_CAP`: rho=10 on 20
images per class; the test suite's rho=2 on 4): the profile's rho=100 needs 200 per class.

Per-experiment knowledge (how to shrink, the real sizes, how to time a step) is in one table,
:data:`KITS`.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import resource
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from lfakit.compare import REHEARSAL_FILE
from lfakit.errors import DataError, LfakitError, ParameterError

#: on a CPU a step is timed at a batch of at most this many pixels the model computes on (4 images
#: of 224 x 224), then scaled linearly to the profile's batch
CPU_BATCH_CAP = 4 * 224 * 224
#: the test suite's probe (``tiny``): one image per batch, one timed step
TINY_BATCH_CAP = 1
#: sizes of the real data sets
NIH_IMAGES, NIH_TRAIN_VAL, NIH_TEST = 112_120, 86_524, 25_596
CIFAR_TRAIN, CIFAR_TEST = 50_000, 10_000
KADID_IMAGES = 10_125


# --------------------------------------------------------------------------- the table


@dataclass
class Workload:
    """What the full run does, from the real data sizes: per model ``epochs`` passes over
    ``train`` items and ``val`` items, then ``final`` items once; ``models`` trainings."""

    models: int
    epochs: int
    train: int
    val: int
    final: int
    source: str
    cache_bytes: int = 0
    output_width: int = 1  # logits per item (predictions' size)
    checkpoints_kept: int | None = None  # models whose checkpoints stay on disk (None: all)
    extra_bytes: int = 0  # other files (e.g. membership logits)
    note: str = ""


@dataclass
class Probe:
    """How to time one training step of the profile's model: a builder, the input's shape
    (C, H, W) and a target maker."""

    build: Callable[[dict], Any]
    shape: tuple[int, int, int]
    target: Callable[[int, Any], Any]
    loss: Callable[[dict], str]
    pixels: int | None = None  # pixels per image the model computes on, when it resizes its input (else H x W)


@dataclass
class Kit:
    data: Callable[[dict, bool, Path, bool], dict]  # (full params, user data?, work folder, tiny) -> overrides
    shrink: Callable[[dict, bool], dict]  # (full params, tiny) -> overrides
    workload: Callable[[dict], Workload] | None = None
    probe: Callable[[dict], Probe] | None = None
    notes: Callable[[dict, dict, bool], list[str]] | None = None  # (full, rehearsed params, tiny) -> plan notes


def _few(full: dict, key: str, keep: int) -> list:
    """The first ``keep`` entries of a list parameter, the baseline kept."""
    items = list(full[key])
    base = full.get("baseline")
    out = [base] if base in items else []
    out += [v for v in items if v not in out][: max(keep - len(out), 0)]
    return out


# ---- data writers: the real layout at the real resolution


def _once(folder: Path, write: Callable[[Path], None], done: str) -> Path:
    """``write`` into a temporary sibling of ``folder``, renamed into place; reused later."""
    if (folder / done).exists():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        write(tmp / "data")
        os.replace(tmp / "data", folder)
    except OSError:
        if not (folder / done).exists():
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def write_cifar_batches(root: Path, images, labels, test_images, test_labels) -> Path:
    """CIFAR-10's python layout (``cifar-10-batches-py/data_batch_1..5``, ``test_batch``,
    ``batches.meta``) from uint8 (N, 32, 32, 3) arrays, pickled as the release is."""
    import numpy as np

    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]

    def dump(name, x, y):
        data = np.ascontiguousarray(np.asarray(x, np.uint8).transpose(0, 3, 1, 2).reshape(len(x), 3072))
        with open(folder / name, "wb") as fh:
            pickle.dump({b"batch_label": name.encode(), b"labels": [int(v) for v in y], b"data": data,
                         b"filenames": [f"{name}_{i}.png".encode() for i in range(len(y))]}, fh, protocol=2)

    parts = np.array_split(np.arange(len(labels)), 5)
    for i, rows in enumerate(parts, 1):
        dump(f"data_batch_{i}", images[rows], labels[rows])
    dump("test_batch", test_images, test_labels)
    with open(folder / "batches.meta", "wb") as fh:
        pickle.dump({b"label_names": names, b"num_cases_per_batch": len(parts[0]), b"num_vis": 3072}, fh, protocol=2)
    return folder


def _cifar_like(per_class: int, test_per_class: int, seed: int = 0):
    """Smooth class-dependent 32 x 32 RGB images (a colour ramp per class plus noise)."""
    import numpy as np

    rng = np.random.default_rng(seed)

    def make(n):
        y = np.repeat(np.arange(10), n)
        yy, xx = np.mgrid[0:32, 0:32] / 31.0
        base = np.stack([(np.sin((c + 1) * xx + yy) + 1) * 0.5 * np.ones((32, 32)) for c in range(10)])
        x = base[y][..., None] * np.array([200, 120, 60]) + rng.normal(0, 25, (len(y), 32, 32, 3))
        return np.clip(x, 0, 255).astype(np.uint8), y

    x, y = make(per_class)
    xt, yt = make(test_per_class)
    return x, y, xt, yt


def generated_cifar(work: Path, per_class: int, test_per_class: int = 4) -> Path:
    def write(tmp):
        write_cifar_batches(tmp, *_cifar_like(per_class, test_per_class))
        (tmp / "rehearsal.txt").write_text("written by lfakit's rehearsal in CIFAR-10's python-batches layout\n")

    return _once(work / f"cifar10-{per_class}x10-test{test_per_class}x10", write, "rehearsal.txt")


def sampled_cifar(data_dir: str, work: Path, per_class: int, test_per_class: int = 4, seed: int = 0) -> Path:
    """A per-class sample of the user's CIFAR-10, written as CIFAR-10 batches (a new folder each time)."""
    import numpy as np

    from lfakit.data import cifar

    src = cifar.load_cifar10(data_dir)
    rng = np.random.default_rng(seed)

    def pick(labels, n):
        return np.sort(np.concatenate([rng.permutation(np.flatnonzero(labels == c))[:n] for c in range(10)]))

    tr, te = pick(src.train_labels, per_class), pick(src.test_labels, test_per_class)
    out = Path(tempfile.mkdtemp(prefix="cifar10-sample-", dir=_mkdir(work)))
    write_cifar_batches(out, src.train_images[tr], src.train_labels[tr], src.test_images[te], src.test_labels[te])
    return out


def generated_nih(work: Path, patients: int) -> Path:
    """NIH ChestX-ray14's layout at 1024 x 1024 (the kit's generator, :mod:`lfakit.data.chestxray_embedded`)."""
    from lfakit.data.chestxray_embedded import write_synthetic_nih

    return _once(work / f"nih-{patients}p-1024", lambda tmp: write_synthetic_nih(
        tmp, n_patients=patients, images_per_patient=(1, 2), image_size=1024, seed=0), "Data_Entry_2017.csv")


def generated_koniq(work: Path, photos: int) -> Path:
    """KonIQ-10k's layout: ``koniq10k_distributions_sets.csv``, ``512x384/`` (the kit's generator,
    :mod:`lfakit.data.koniq_embedded`) and ``1024x768/`` (the same images at the release's full
    size, as the release ships both)."""
    from PIL import Image

    from lfakit.data import koniq_embedded as ke

    def write(tmp):
        ke.write_embedded(tmp, grid=1, levels=1, photos=list(ke.PHOTOS)[:photos])
        big = tmp / "1024x768"
        big.mkdir()
        for f in sorted((tmp / ke.IMAGE_DIR).glob("*.jpg")):
            with Image.open(f) as im:
                im.convert("RGB").resize((1024, 768), Image.Resampling.BICUBIC).save(big / f.name, "JPEG", quality=95)

    return _once(work / f"koniq-{photos}photos", write, ke.SETS_CSV)


def _mkdir(p: Path) -> Path:
    p.mkdir(parents=True, exist_ok=True)
    return p


# ---- the experiments


def _chestxray_data(full, user, work, tiny):
    if user:
        return {"max_images": min(full["max_images"] or 10**9, 48 if tiny else 96)}
    # 20 patients, 30 images at 1024 x 1024; the test suite keeps 16 of them (8 train, 2 val, 6 test)
    return {"data_dir": str(generated_nih(work, 20)), "max_images": 16 if tiny else 0}


def _chestxray_shrink(full, tiny):
    out = {"epochs": 1, "seeds": list(full["seeds"])[:2]}
    if tiny:
        out.update(losses=_few(full, "losses", 2), batch_size=min(full["batch_size"], 2), seeds=list(full["seeds"])[:1])
    return out


def _chestxray_workload(full):
    n = min(full["max_images"] or NIH_IMAGES, NIH_IMAGES)
    tv = round(NIH_TRAIN_VAL * n / NIH_IMAGES)
    val = round(tv * full["val_fraction"])
    test = n - tv
    return Workload(models=len(full["losses"]) * max(1, len(full["seeds"])), epochs=full["epochs"], train=tv - val,
                    val=val, final=val + test, source=f"NIH ChestX-ray14: {NIH_IMAGES:,} images, {NIH_TRAIN_VAL:,} "
                    f"train/val, {NIH_TEST:,} test" + (f" (max_images {n:,})" if full["max_images"] else ""),
                    cache_bytes=n * full["image_size"] ** 2, output_width=14)


def _chestxray_probe(full):
    from lfakit import models

    ch = models.input_channels(full["model"])
    return Probe(lambda P: models.build_model(P["model"], 14, pretrained=False, in_chans=ch, precision=P["precision"]),
                 (ch, full["image_size"], full["image_size"]),
                 lambda n, g: __import__("torch").randint(0, 2, (n, 14), generator=g).float(),
                 lambda P: P["baseline"])


#: the largest imbalance ratio a rehearsal trains (the test suite's, and lfakit run --rehearse's);
#: rho needs 2 x rho images per class for a tail class of 2 (1 train, 1 validation): the profile's
#: rho=100 would need 200 per class, 490 images in the long tail, hours of a 224-px ResNet-50 on a CPU
LT_RHO_CAP = {True: 2, False: 10}


def _tail_per_class(rho: float) -> int:
    """The fewest images per class whose long tail at ``rho`` keeps 2 in the tail class."""
    from lfakit.data.cifar import long_tail_counts

    n = max(2, math.ceil(2 * rho))
    while min(long_tail_counts(n, rho)) < 2:
        n += 1
    return n


def cifar_sample(full: dict, tiny: bool) -> tuple[list, int, int]:
    """The rehearsal's imbalance ratios (each capped at :data:`LT_RHO_CAP`, so the long-tail code
    path runs on far fewer images), images per class (train pool) and test images per class."""
    cap = LT_RHO_CAP[tiny]
    ratios = list(dict.fromkeys(min(r, cap) for r in full["imbalance_ratios"]))
    # 2 per class: 1 train + 1 validation image (or one per fold of the rehearsal's 2 folds)
    per_class = max([2 if tiny else 6] + [_tail_per_class(r) for r in ratios if r > 1])
    return ratios, per_class, 2 if tiny else 4


def _cifar_fece_data(full, user, work, tiny):
    if full["dataset"] != "cifar10":
        return {}
    _, per_class, test_per_class = cifar_sample(full, tiny)
    if user:
        return {"data_dir": str(sampled_cifar(full["data_dir"], work, per_class, test_per_class))}
    return {"data_dir": str(generated_cifar(work, per_class, test_per_class))}


def _cifar_fece_shrink(full, tiny):
    out = {"epochs": 1, "seeds": list(full["seeds"])[:2], "folds": min(full["folds"], 2) if full["folds"] else 0}
    if full["dataset"] == "cifar10":
        out["imbalance_ratios"] = cifar_sample(full, tiny)[0]
    if tiny:
        out.update(losses=_few(full, "losses", 2), batch_size=min(full["batch_size"], 2), seeds=list(full["seeds"])[:1])
    return out


def _cifar_fece_notes(full, P, tiny):
    if full["dataset"] != "cifar10" or P["imbalance_ratios"] == full["imbalance_ratios"]:
        return []
    _, per_class, _ = cifar_sample(full, tiny)
    big = max(full["imbalance_ratios"])
    return [f"long tail rehearsed at rho={P['imbalance_ratios']} on {per_class} images per class (the profile's "
            f"rho={full['imbalance_ratios']}: rho={big:g} needs {_tail_per_class(big)} per class for a tail of 2); the same "
            "long-tail code path on fewer images; the projection uses the profile's ratios"]


def _cifar_fece_workload(full):
    from lfakit.data.cifar import long_tail_counts

    models, train, val = 0, 0, 0
    folds = full["folds"] or 1
    per = max(1, len(full["seeds"])) * len(full["losses"]) * folds
    for rho in full["imbalance_ratios"]:
        pool = sum(long_tail_counts(CIFAR_TRAIN // 10, rho))
        v = pool // folds if full["folds"] else round(pool * full["val_fraction"])
        train, val = max(train, pool - v), max(val, v)
        models += per
    side = full["image_size"] or 32
    return Workload(models=models, epochs=full["epochs"], train=train, val=val, final=val + CIFAR_TEST,
                    source=f"CIFAR-10: {CIFAR_TRAIN:,} train, {CIFAR_TEST:,} test; long tail per imbalance ratio "
                    f"(the largest ratio's counts are used for every ratio: an upper bound)",
                    cache_bytes=0, output_width=10,
                    note=f"inputs resized to {side} px inside the model" if full["image_size"] else "")


def _cifar_fece_probe(full):
    import torch

    from lfakit.experiments import cifar_fece as X

    return Probe(lambda P: X.build_model({**P, "pretrained": False}, 10, 3), (3, 32, 32),
                 lambda n, g: torch.randint(0, 2, (n, 10), generator=g).float(), lambda P: P["baseline"],
                 pixels=full["image_size"] ** 2 if full["image_size"] else None)  # resized inside the model


def _iqa_data(full, user, work, tiny):
    out = {"cache_dir": str(_mkdir(work / "cache-run"))}  # a fresh cache: the build is part of the rehearsal
    if user:
        out["max_images"] = min(full["max_images"] or 10**9, 30 if tiny else 60)
    else:
        # 3 photos, one per official split: 16 images (6 train, 5 val, 5 test); a sample of 9 (3 / 3 / 3,
        # the fewest that fill every split and the test set's logistic fit) or 12 (4 / 4 / 4)
        out.update(data_dir=str(generated_koniq(work, 3)), max_images=9 if tiny else 12, mos_scale=full["mos_scale"])
    if full["test_datasets"] and not full["kadid_dir"]:
        out["test_datasets"] = full["test_datasets"]  # the embedded KADID default (already small)
    return out


def _iqa_shrink(full, tiny):
    n = 1 if tiny else 2
    # the 4 (tiny: 3) training images give 8 (3) crops; the batch is cut to fit one whole batch (the engine
    # drops an incomplete last one). The profile's batch of 32 Swin-B crops at 224 px does not fit a 24 GB CPU
    # machine beside the loader's workers (measured: the kernel was killed), so the step time is measured
    # at a small batch and scaled (the plan says so)
    out = {"epochs": 1, "train_patch_num": min(full["train_patch_num"], n), "test_patch_num": min(full["test_patch_num"], n),
           "batch_size": min(full["batch_size"], 2 if tiny else 8),
           "n_boot": 200 if tiny else full["n_boot"]}
    if tiny:
        out.update(losses=_few(full, "losses", 2))
    return out


def _iqa_workload(full):
    from lfakit.data.koniq import OFFICIAL_SIZES

    n = sum(OFFICIAL_SIZES.values())
    f = min(1.0, (full["max_images"] or n) / n)
    tr, va, te = (round(OFFICIAL_SIZES[k] * f) for k in ("training", "validation", "test"))
    h, w = full["image_size"]
    cross = KADID_IMAGES if "kadid10k" in full["test_datasets"] else 0
    return Workload(models=len(full["losses"]), epochs=full["epochs"], train=tr * full["train_patch_num"],
                    val=va * full["test_patch_num"], final=(va + te + cross) * full["test_patch_num"],
                    source=f"KonIQ-10k official split {OFFICIAL_SIZES} x patches per image"
                    + (f", KADID-10k {KADID_IMAGES:,} images" if cross else ""),
                    cache_bytes=(tr + va + te + cross) * h * w * 3, output_width=1)


def _iqa_probe(full):
    import torch

    from lfakit import models
    from lfakit.experiments._shared import model_options

    p = full["patch_size"]
    return Probe(lambda P: models.build_model(P["model"], 1, pretrained=False, precision=P["precision"], **model_options(P)),
                 (3, p, p), lambda n, g: torch.rand((n,), generator=g) * 4 + 1, lambda P: P["baseline"])


def _membership_data(full, user, work, tiny):
    if full["dataset"] != "cifar10":
        return {}
    if user:
        return {}
    return {"data_dir": str(generated_cifar(work, 8))}  # 80 + 40 images: a pool of up to 64


def _membership_shrink(full, tiny):
    # the fewest reference models the attacks take (4), each trained on half of a pool of 16 (tiny) or 64
    # examples; the test suite's batch of 8 is one step (a batch of 2 would take 4 steps and 8 evaluation
    # batches per query: on these 32 x 32 images small batches cost ~3x the time per image)
    bs = min(full["batch_size"], 8) if tiny else full["batch_size"]
    out = {"epochs": 1, "pool_size": min(full["pool_size"] or 10**9, 16 if tiny else 64), "n_ref": min(full["n_ref"], 4),
           "n_boot": 200 if tiny else full["n_boot"]}
    out["n_targets"] = min(full["n_targets"], out["n_ref"] + 1)
    if tiny:
        out.update(losses=_few(full, "losses", 2), batch_size=bs)
    return out


def _membership_workload(full):
    from lfakit.experiments import membership_inference as X

    need = X.disk_need(full)
    pool = need["pool"]
    return Workload(models=need["models"], epochs=full["epochs"], train=pool // 2, val=pool // 2,
                    final=pool * need["queries"], source=f"CIFAR-10: a pool of {pool:,} of the {CIFAR_TRAIN + CIFAR_TEST:,} "
                    "images, each model trained on half, its logits on the whole pool for every query",
                    output_width=10, checkpoints_kept=full["workers"] if not full["keep_checkpoints"] else None,
                    extra_bytes=need["logits_bytes"], note="disk as lfakit.experiments.membership_inference.disk_need")


def _membership_probe(full):
    import torch

    from lfakit import models
    from lfakit.experiments._shared import model_options

    return Probe(lambda P: models.build_model(P["model"], 10, in_chans=3, precision=P["precision"], **model_options(P)),
                 (3, 32, 32), lambda n, g: torch.randint(0, 10, (n,), generator=g), lambda P: P["baseline"])


def _cf_shrink(full, tiny):
    out = {"seeds": min(full["seeds"], 2)}
    if tiny:
        out.update(max_iter=min(full["max_iter"], 10), max_epochs=min(full["max_epochs"], 50),
                   collapse_steps=list(full["collapse_steps"])[:2])
    return out


KITS: dict[str, Kit] = {
    "chestxray_zlpr": Kit(_chestxray_data, _chestxray_shrink, _chestxray_workload, _chestxray_probe),
    "cifar_fece": Kit(_cifar_fece_data, _cifar_fece_shrink, _cifar_fece_workload, _cifar_fece_probe, _cifar_fece_notes),
    "iqa_losses": Kit(_iqa_data, _iqa_shrink, _iqa_workload, _iqa_probe),
    "membership_inference": Kit(_membership_data, _membership_shrink, _membership_workload, _membership_probe),
    # no training on a device: the rehearsal runs the profile with fewer repetitions and scales its time
    "cf_ensemble": Kit(lambda f, u, w, t: {}, _cf_shrink),
    "loss_atlas": Kit(lambda f, u, w, t: {}, lambda f, t: {}),
}


#: an experiment without an entry: one epoch, its own data, the notebook's time scaled by epochs
GENERIC = Kit(lambda f, u, w, t: {}, lambda f, t: {"epochs": 1} if "epochs" in f else {})


def suite_runtime(full: dict) -> dict:
    """What ``tiny`` changes in every experiment: one torch thread in the kernel and the probe (the
    suite runs two workers on two cores, where two threads each oversubscribe the CPU: Swin-B's
    step took 2.5x as long) and at most one DataLoader worker (still the worker path: processes,
    worker seeds, augmentation in the worker; each worker more forks the kernel again per loader)."""
    out = {}
    if "num_threads" in full:
        out["num_threads"] = 1
    if full.get("num_workers", 0) > 1:
        out["num_workers"] = 1
    return out


#: parameters the test suite's note lists when ``tiny`` changed them
TINY_NOTED = ("losses", "batch_size", "n_ref", "pool_size", "max_images", "train_patch_num", "test_patch_num",
              "num_threads", "num_workers", "max_iter", "max_epochs", "collapse_steps")


def drop_checkpoints(run_dir: Path) -> tuple[int, int]:
    """Delete every ``*.pt`` under ``run_dir`` (a rehearsal's checkpoints: gigabytes for Swin-B x 7
    losses, and no rehearsal is resumed) and the folders they leave empty; ``manifest.json`` then
    lists what is still there, so the record stays intact. Returns (files, bytes) deleted."""
    gone, size = [], 0
    for f in sorted(run_dir.rglob("*.pt")):
        if f.is_file() and not f.is_symlink():
            size += f.stat().st_size
            f.unlink()
            gone.append(f.relative_to(run_dir).as_posix())
    for d in sorted({(run_dir / g).parent for g in gone}, key=lambda p: -len(p.parts)):
        while d != run_dir and d.is_dir() and not any(d.iterdir()):  # the folders left empty, up to the run folder
            d.rmdir()
            d = d.parent
    _update_manifest(run_dir, drop=gone)
    return len(gone), size


def _update_manifest(run_dir: Path, drop=(), refresh=()) -> None:
    """The run's ``manifest.json`` without the entries of deleted files (``drop``) and with the size
    and SHA-256 of files rewritten after it (``refresh``: the marker, updated once the plan is made);
    a manifest that cannot be read is left as it is (:func:`lfakit.record.verify_run` names it)."""
    import hashlib

    from lfakit.record import MANIFEST

    manifest = run_dir / MANIFEST
    if not manifest.is_file() or not (drop or refresh):
        return
    try:
        m = json.loads(manifest.read_text())
        files = m.get("files")
        if not isinstance(files, dict):
            return
        new = {k: v for k, v in files.items() if k not in set(drop)}
        for rel in refresh:
            if rel in new and (run_dir / rel).is_file():
                data = (run_dir / rel).read_bytes()
                new[rel] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        if new != files:
            m["files"] = new
            manifest.write_text(json.dumps(m, indent=2))
    except (OSError, ValueError):
        pass


def kit_for(experiment: str) -> Kit:
    """The experiment's entry of :data:`KITS`, or :data:`GENERIC` (which the plan says)."""
    return KITS.get(experiment, GENERIC)


# --------------------------------------------------------------------------- measuring


def _sync(dev) -> None:
    import torch

    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def time_steps(P: dict, probe: Probe, steps: int = 2, cpu_cap: int = CPU_BATCH_CAP) -> dict:
    """Seconds per training step (the engine's own step: forward under the profile's AMP,
    loss, backward, optimizer) and per evaluation batch (:func:`lfakit.engine.predict`) of the
    profile's model on random inputs of the profile's shape. On a CPU the batch is capped at
    :data:`CPU_BATCH_CAP` pixels (:data:`TINY_BATCH_CAP`: one image) and the times scaled linearly
    to the profile's batch. ``P['num_threads']`` > 0 fixes torch's CPU threads while it measures,
    as the run does."""
    import torch

    threads = torch.get_num_threads()
    if P.get("num_threads", 0) > 0:
        torch.set_num_threads(P["num_threads"])
    try:
        return _time_steps(P, probe, steps, cpu_cap)
    finally:
        torch.set_num_threads(threads)


def _time_steps(P: dict, probe: Probe, steps: int, cpu_cap: int) -> dict:
    import torch
    from torch.utils.data import TensorDataset

    from lfakit import engine, losses
    from lfakit.fitconfig import FitConfig

    cfg = FitConfig.from_params(P, progress=False)
    dev = engine.select_device(P["device"])
    full_bs = P["batch_size"]
    full_ebs = cfg.eval_batch_size or 2 * full_bs
    per = max(1, cpu_cap // (probe.pixels or probe.shape[1] * probe.shape[2]))  # images per CPU batch
    bs = full_bs if dev.type == "cuda" else max(1, min(full_bs, per))
    ebs = full_ebs if dev.type == "cuda" else max(1, min(full_ebs, per))
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    torch.manual_seed(0)
    model = probe.build(P).to(dev, cfg.dtype)
    if dev.type == "cuda" and cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    n_params = sum(p.numel() for p in model.parameters())
    name = probe.loss(P)
    loss_fn = losses.build(name, **(P.get("loss_kwargs") or {}).get(name, {}))
    opt = engine.make_optimizer(model, cfg)
    use_amp = cfg.amp and dev.type == "cuda" and cfg.precision == "float32"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    g = torch.Generator().manual_seed(0)
    x = torch.rand((bs, *probe.shape), generator=g)
    y = probe.target(bs, g)
    engine.train_one_epoch(model, loss_fn, [(x, y)], opt, scaler, cfg, dev, 1)  # warm-up
    _sync(dev)
    t0 = time.perf_counter()
    engine.train_one_epoch(model, loss_fn, [(x, y)] * steps, opt, scaler, cfg, dev, 1)
    _sync(dev)
    train_s = (time.perf_counter() - t0) / steps
    xe = torch.rand((ebs * steps, *probe.shape), generator=g)
    ds = TensorDataset(xe, probe.target(ebs * steps, g))
    engine.predict(model, TensorDataset(xe[:ebs], ds.tensors[1][:ebs]), ebs, dev, cfg.amp)  # warm-up
    _sync(dev)
    t0 = time.perf_counter()
    engine.predict(model, ds, ebs, dev, cfg.amp)
    _sync(dev)
    eval_s = (time.perf_counter() - t0) / steps
    gpu_peak = torch.cuda.max_memory_allocated(dev) if dev.type == "cuda" else None
    return {"device": str(dev), "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else _cpu_name(),
            "batch": bs, "eval_batch": ebs, "full_batch": full_bs, "full_eval_batch": full_ebs,
            "train_step_s": train_s * full_bs / bs, "eval_step_s": eval_s * full_ebs / ebs,
            "measured_train_step_s": train_s, "measured_eval_step_s": eval_s, "parameters": n_params,
            "gpu_peak_bytes": gpu_peak, "amp": use_amp}


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"CPU ({line.split(':', 1)[1].strip()}, {os.cpu_count()} cores)"
    except OSError:
        pass
    import platform

    return f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"


def peak_rss() -> dict:
    """Peak resident memory (bytes) of this process and of its waited-for children (the kernel)."""
    scale = 1 if sys.platform == "darwin" else 1024
    return {"self": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale,
            "children": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * scale}


def _free(path: Path) -> tuple[Path, int]:
    p = Path(path).resolve()
    while not p.exists():
        p = p.parent
    return p, shutil.disk_usage(p).free


# --------------------------------------------------------------------------- the plan


def _h(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h" if seconds < 100 * 3600 else f"{seconds / 3600:,.0f} h"


def _gb(b: float) -> str:
    return f"{b / 1e9:.2f} GB" if b < 10e9 else f"{b / 1e9:.0f} GB"


def wants_gpu(full: dict) -> bool:
    """A profile meant for a GPU: mixed precision on, on float32, on device auto or cuda."""
    return bool(full.get("amp")) and full.get("precision") == "float32" and full.get("device") in ("auto", "cuda")


def make_plan(experiment: str, profile: str | None, full: dict, rehearsed: dict, kit: Kit, notebook_s: float,
              blockers: list[str], notes: list[str], timing: dict | None) -> dict:
    """The plan of the full run (a dict; :func:`format_plan` prints it)."""
    from lfakit.runner import results_root

    plan: dict[str, Any] = {"experiment": experiment, "profile": profile, "rehearsal_seconds": notebook_s,
                            "notes": list(notes), "blockers": list(blockers), "memory": peak_rss()}
    w = kit.workload(full) if kit.workload else None
    if w is not None and timing is not None:
        bs, ebs = timing["full_batch"], timing["full_eval_batch"]
        train_steps = math.ceil(w.train / bs)
        val_steps = math.ceil(w.val / ebs)
        final_steps = math.ceil(w.final / ebs)
        per_model = w.epochs * (train_steps * timing["train_step_s"] + val_steps * timing["eval_step_s"]) \
            + final_steps * timing["eval_step_s"]
        total = per_model * w.models
        wbytes = timing["parameters"] * (8 if full.get("precision") == "float64" else 4)
        states = 1 if full.get("optimizer") == "sgd" else 2
        per_ckpt = wbytes * (1 + (1 + states) * (2 if experiment != "membership_inference" else 1))
        kept = w.models if w.checkpoints_kept is None else w.checkpoints_kept
        preds = w.models * w.final * (2 * w.output_width + 2) * 8 if not w.extra_bytes else w.extra_bytes
        disk = {"cache": w.cache_bytes, "checkpoints": per_ckpt * kept, "predictions": preds}
        plan.update(workload=w.__dict__, timing=timing, train_steps_per_epoch=train_steps, val_steps_per_epoch=val_steps,
                    final_steps=final_steps, seconds_per_model=per_model, projected_seconds=total, disk=disk,
                    formula=f"{w.models} models x ({w.epochs} epochs x ({train_steps:,} train steps x "
                    f"{timing['train_step_s']:.3g} s + {val_steps:,} validation steps x {timing['eval_step_s']:.3g} s) "
                    f"+ {final_steps:,} final evaluation steps x {timing['eval_step_s']:.3g} s)")
    else:
        scale = 1.0
        if kit is GENERIC:
            scale = full.get("epochs", 1) / rehearsed.get("epochs", 1)
            plan["notes"].append(f"{experiment} has no entry in lfakit.rehearse.KITS: a generic rehearsal (one epoch, "
                                 "the profile's own data); its projection scales the notebook's time by the epochs")
        if experiment == "cf_ensemble":  # seeds, and the iterations where the test suite cut them
            scale = full["seeds"] / max(rehearsed["seeds"], 1) * max(
                full["max_iter"] / rehearsed["max_iter"], full["max_epochs"] / rehearsed["max_epochs"])
        plan.update(projected_seconds=notebook_s * scale, disk={"run folder": 50e6},
                    formula=f"the rehearsal's {notebook_s:.0f} s" + (f" x {scale:g} (the profile's seeds, iterations "
                                                                     "or epochs over the rehearsal's)" if scale != 1 else "")
                    + " (no training on a device: the notebook's own wall time)")
    need = sum(plan["disk"].values())
    where, free = _free(results_root())
    plan["disk_need"], plan["disk_free"], plan["disk_where"] = need, free, str(where)
    if need > free:
        plan["blockers"].append(f"too little disk: the full run needs about {_gb(need)}, {where} has {_gb(free)} free "
                                "(set LFAKIT_RESULTS / LFAKIT_CACHE to a larger disk)")
    if timing is not None and wants_gpu(full) and timing["device"] == "cpu":
        plan["blockers"].append(f"no CUDA device here: the {profile} profile is meant for a GPU (amp, float32); on "
                                f"this CPU it would take about {_h(plan['projected_seconds'])}")
    return plan


def format_plan(plan: dict) -> str:
    t = plan.get("timing")
    lines = [f"rehearsal plan: {plan['experiment']} --profile {plan['profile']}"]
    lines.append(f"  rehearsal: the profile's notebook ran in {plan['rehearsal_seconds']:.0f} s")
    if t:
        w = plan["workload"]
        scaled = (f" (measured at batch {t['batch']} / {t['eval_batch']}, scaled linearly to {t['full_batch']} / "
                  f"{t['full_eval_batch']})" if t["batch"] != t["full_batch"] or t["eval_batch"] != t["full_eval_batch"]
                  else "")
        lines += [f"  device: {t['device']} ({t['device_name']}), amp {'on' if t['amp'] else 'off'}, "
                  f"{t['parameters'] / 1e6:.1f} M parameters",
                  f"  step time: train {t['train_step_s']:.3g} s per batch of {t['full_batch']}, evaluation "
                  f"{t['eval_step_s']:.3g} s per batch of {t['full_eval_batch']}{scaled}",
                  f"  full run sizes: {w['source']}",
                  f"  steps: {plan['train_steps_per_epoch']:,} train + {plan['val_steps_per_epoch']:,} validation per "
                  f"epoch, {plan['final_steps']:,} final evaluation per model; {w['models']} models x {w['epochs']} epochs"]
    lines.append(f"  projected wall time of the full profile on this device: {_h(plan['projected_seconds'])}"
                 f" = {plan['formula']}")
    mem = plan["memory"]
    gpu = t and t.get("gpu_peak_bytes")
    lines.append("  peak memory: " + (f"GPU {_gb(gpu)} (one training step at the real batch); " if gpu else "")
                 + f"RSS {_gb(mem['self'])} (this process), {_gb(mem['children'])} (the notebook's kernel)")
    d = plan["disk"]
    lines.append(f"  disk for the full run: about {_gb(plan['disk_need'])} ("
                 + ", ".join(f"{k} {_gb(v)}" for k, v in d.items()) + f"); free at {plan['disk_where']}: "
                 f"{_gb(plan['disk_free'])}")
    for n in plan["notes"]:
        lines.append(f"  note: {n}")
    if plan["blockers"]:
        lines.append("  would stop the real run:")
        lines += [f"    - {b}" for b in plan["blockers"]]
    else:
        lines.append("  would stop the real run: nothing found")
    return "\n".join(lines)


# --------------------------------------------------------------------------- the rehearsal


@dataclass
class Rehearsal:
    run_dir: Path
    plan: dict
    params: dict
    text: str = ""
    extra: dict = field(default_factory=dict)


def work_dir() -> Path:
    """Where generated rehearsal data go: ``<cache>/rehearsal`` (``$LFAKIT_CACHE`` or ~/.cache/lfakit)."""
    from lfakit.data.image_cache import default_cache_dir

    return default_cache_dir() / "rehearsal"


_WEIGHTS_SAID: set[str] = set()


def _weights(P: dict, blockers: list[str], notes: list[str]) -> dict:
    """Pretrained weights that are not on disk and cannot be fetched: random weights in the
    rehearsal (said once per model and process), and a blocker for the real run."""
    if not P.get("pretrained"):
        return P
    from lfakit import models

    try:
        models.ensure_weights(P["model"])
        return P
    except ParameterError as e:
        blockers.append(f"pretrained weights: {e}")
        if P["model"] not in _WEIGHTS_SAID:
            _WEIGHTS_SAID.add(P["model"])
            print(f"lfakit rehearse: {P['model']}'s ImageNet weights are not on disk and cannot be downloaded here; "
                  "the rehearsal uses random weights instead", file=sys.stderr)
        notes.append(f"{P['model']} ran with random weights (its ImageNet weights are not on disk)")
        return {**P, "pretrained": False}


def rehearse(experiment: str, profile: str | None = "paper", overrides: dict | None = None, *, tiny: bool = False,
             timeout: int | None = None, log_output: bool = True, verbose: bool = True) -> Rehearsal:
    """Rehearse ``profile`` of ``experiment`` (see the module docstring); ``tiny`` shrinks further
    for the test suite (two losses, batch 2, a handful of items per split, one torch thread and
    one loader worker, the long tail at rho=2, the probe at one image: tests/test_rehearse.py's
    docstring). Its checkpoints are deleted at the end (:func:`drop_checkpoints`). Returns the run
    folder and the plan; a failing notebook raises :class:`lfakit.runner.RunFailed` as a real run does."""
    from lfakit import runner
    from lfakit.params import validate

    overrides = dict(overrides or {})
    runner._check_experiment(experiment)
    kit = kit_for(experiment)
    full = runner.resolve_params(experiment, profile, overrides)
    blockers: list[str] = []
    notes: list[str] = []
    user = False
    if "data_dir" in full and full.get("data_dir"):
        root = Path(full["data_dir"]).expanduser()
        user = "data_dir" in overrides or root.exists()
        if not user:
            blockers.append(f"data_dir {full['data_dir']} (the profile's placeholder) does not exist: the real run "
                            f"needs -p data_dir=<your data>")
            notes.append("no data_dir given: the rehearsal wrote a few items in the real data set's layout at its "
                         f"resolution under {work_dir()}")
        elif user:
            notes.append(f"a small sample of {root}")
    work = _mkdir(work_dir() / experiment)
    run_work = Path(tempfile.mkdtemp(prefix="run-", dir=work))
    try:
        shrunk = {**kit.shrink(full, tiny), **kit.data(full, user, run_work if user else work, tiny),
                  **(suite_runtime(full) if tiny else {})}
        if "losses" in shrunk and full.get("loss_kwargs"):  # arguments of losses left out go too
            keep = set(shrunk["losses"]) | {full.get("baseline")}
            shrunk["loss_kwargs"] = {k: v for k, v in full["loss_kwargs"].items() if k in keep}
        if "cache_dir" in shrunk:
            shrunk["cache_dir"] = str(_mkdir(run_work / "cache"))
        P = validate(experiment, {**full, **shrunk})
        P = _weights(P, blockers, notes)
        if tiny and any(k in P and P[k] != full.get(k) for k in TINY_NOTED):
            notes.append("shrunk for the test suite: " + ", ".join(
                f"{k}={P[k]!r}" for k in TINY_NOTED if k in P and P[k] != full.get(k)))
        if kit.notes:
            notes += kit.notes(full, P, tiny)
        runner.check_results_root()
        runner.preflight(experiment, P)
        run_dir = runner.new_run_dir(experiment, f"rehearsal-{profile or 'default'}")
        marker = {"rehearsal": True, "experiment": experiment, "profile": profile, "status": "running",
                  "full_params": full, "shrunk": {k: P[k] for k in P if P[k] != full.get(k)}}
        (run_dir / REHEARSAL_FILE).write_text(json.dumps(marker, indent=2, default=str))
        P["run_dir"], P["resume"] = str(run_dir), False
        runner.write_params(run_dir, P)
        t0 = time.perf_counter()
        try:
            runner.execute(experiment, P, run_dir, timeout, log_output)
        except runner.RunFailed:
            marker["status"] = "failed"
            marker["checkpoints_deleted"] = drop_checkpoints(run_dir)
            (run_dir / REHEARSAL_FILE).write_text(json.dumps(marker, indent=2, default=str))
            _update_manifest(run_dir, refresh=[REHEARSAL_FILE])
            raise
        notebook_s = time.perf_counter() - t0
        n_ckpt, ckpt_bytes = drop_checkpoints(run_dir)
        notes.append(f"the rehearsal's checkpoints ({n_ckpt} files, {_gb(ckpt_bytes)}) were deleted at its end; the "
                     f"plan ({REHEARSAL_FILE}), the notebook and the run record are kept (its manifest lists what is left)")
        probe_params = {**full, "pretrained": False, **({"num_threads": P["num_threads"]} if tiny and "num_threads" in P else {})}
        timing = (time_steps(probe_params, kit.probe(full), *((1, TINY_BATCH_CAP) if tiny else ()))
                  if kit.probe else None)
        plan = make_plan(experiment, profile, full, P, kit, notebook_s, blockers, notes, timing)
        marker.update(status="complete", plan=plan)
        (run_dir / REHEARSAL_FILE).write_text(json.dumps(marker, indent=2, default=str))
        _update_manifest(run_dir, refresh=[REHEARSAL_FILE])  # the record lists the marker as it is now
        text = format_plan(plan) + f"\n  rehearsal run folder (left out by compare and report): {run_dir}"
        if verbose:
            print(text)
        return Rehearsal(run_dir, plan, P, text)
    finally:
        shutil.rmtree(run_work, ignore_errors=True)


def rehearse_sweep(experiment: str, profile: str | None, grid: dict | None, seeds=None, *, tiny: bool = False,
                   timeout: int | None = None, log_output: bool = True) -> list[Rehearsal]:
    """One rehearsal per distinct configuration of a sweep (points that differ only in ``seed``
    share one), then the sweep's projected total: each configuration's time x its points."""
    from lfakit.sweep import expand_grid

    points = expand_grid(grid, seeds)
    configs: dict[str, tuple[dict, int]] = {}
    for ov in points:
        key = json.dumps({k: v for k, v in ov.items() if k != "seed"}, sort_keys=True, default=str)
        base, n = configs.get(key, ({k: v for k, v in ov.items() if k != "seed"}, 0))
        configs[key] = (base, n + 1)
    done, total, need = [], 0.0, 0.0
    print(f"lfakit rehearse: {len(points)} sweep points, {len(configs)} distinct configuration(s); one rehearsal each")
    for base, n in configs.values():
        r = rehearse(experiment, profile, base, tiny=tiny, timeout=timeout, log_output=log_output)
        total += r.plan["projected_seconds"] * n
        need += r.plan["disk_need"] * n
        done.append(r)
    print(f"sweep plan: {len(points)} points, projected {_h(total)} on this device one point at a time "
          f"(divide by the points run at once); disk about {_gb(need)}")
    return done
