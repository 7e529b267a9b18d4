"""Benchmark: the data path at each paper profile's resolution, images/s per CPU core.

Per core: ``torch.set_num_threads(1)``, ``cv2.setNumThreads(1)``, one cache-build thread,
``num_workers=0``; CPU time of this process (``time.process_time``), so time lost to other
processes on a shared machine is not counted. Every figure is the best of ``--repeats`` passes;
ratios are between sides measured in this same run.

1. Cache build from full-size files (written into a temporary folder first):
   * ``chestxray 224 gray``: 1024 x 1024 8-bit PNGs (NIH) -> CLAHE at full size + INTER_AREA to
     224 (``chestxray.cache_preprocessing``, the profile's clip 2.0 / grid 8);
   * ``koniq 384x512 RGB``: 1024 x 768 JPEGs (KonIQ-10k) -> INTER_AREA to 512 x 384;
   against the named baseline **torchvision ImageFolder + PIL decode + Resize** (what reading the
   files each epoch costs; it does no CLAHE). CIFAR (32 px) has no image files to decode: its
   python batches are read as arrays.
2. Training loader, with each profile's augmentation and batch size:
   * ``membership 32 px RGB`` (flips + shifts of up to 5%, batch 256; cifar_fece: no augmentation);
   * ``chestxray 224 gray -> 3 ch`` (flips + shifts, batch 8) and ``224 px RGB`` (batch 32);
   * ``iqa 384x512 -> 224 patches`` (fresh random crops, flips p = 0.5, batch 32);
   the kit's batch path (``engine._loader`` -> ``__getitems__`` -> ``batching.collate``) against
   the **per-item path** (the same data set read item by item with ``default_collate``, what the
   kit did before) and **torchvision ImageFolder + PIL** (``RandomHorizontalFlip`` +
   ``RandomCrop(pad)`` + ``ToTensor`` + ``Normalize`` over pre-resized PNG files; for the patches
   ``RandomCrop(224)`` of the 512 x 384 files). Targets per core with augmentation: 50,000
   images/s at 32 px, 4,000 at 224 px.
3. Beside the patch loader: one Swin-B (torchvision ``swin_b``, random weights) training step on
   this CPU, batch ``--model-batch``, images/s (``--no-model`` skips it; the GPU figure is the GPU
   check's).

Run:  python benchmarks/bench_loader.py [--repeats 2] [--quick] [--no-model]
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from lfakit import engine
from lfakit.data import chestxray
from lfakit.data.datasets import IMAGENET_MEAN, IMAGENET_STD, ArrayImageDataset, LabelImageDataset
from lfakit.data.image_cache import build_image_cache, resize_to
from lfakit.data.patches import PatchDataset

TARGETS = {"membership 32 px RGB": 50_000, "chestxray 224 gray -> 3 ch": 4_000, "224 px RGB": 4_000}


class PerItem(Dataset):
    """The data set read item by item (no ``__getitems__``): the per-item path, the baseline."""

    def __init__(self, ds):
        self.ds = ds

    def __len__(self):
        return len(self.ds)

    def __getitem__(self, i):
        return self.ds[i]


def cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return platform.processor() or platform.machine()


def best_rate(fn, n: int, repeats: int) -> float:
    """Images/s: ``n`` over the least CPU seconds of ``repeats`` calls of ``fn``."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.process_time()
        fn()
        best = min(best, time.process_time() - t0)
    return n / max(best, 1e-9)


def smooth(rng, h: int, w: int, c: int) -> np.ndarray:
    small = rng.random((max(2, h // 64), max(2, w // 64), c)).astype(np.float32)
    img = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC).reshape(h, w, c)
    return np.clip(img * 255 + rng.standard_normal(img.shape).astype(np.float32) * 6, 0, 255).astype(np.uint8)


def write_files(folder: Path, n: int, h: int, w: int, c: int, ext: str, seed: int = 0) -> list[Path]:
    """``n`` images in ``folder/c0/`` (ImageFolder's layout: one class folder)."""
    (folder / "c0").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        img = smooth(rng, h, w, c)
        p = folder / "c0" / f"{i:05d}.{ext}"
        Image.fromarray(img[..., 0] if c == 1 else img, "L" if c == 1 else "RGB").save(p, quality=90)
        paths.append(p)
    return paths


def imagefolder(root: Path, tf, gray: bool):
    from torchvision import datasets

    loader = (lambda p: Image.open(p).convert("L")) if gray else None
    return datasets.ImageFolder(str(root), transform=tf, **({"loader": loader} if loader else {}))


def epoch(ds, batch: int, seed: int = 0, engine_loader: bool = True):
    torch.manual_seed(seed)
    if engine_loader:
        loader = engine._loader(ds, batch, True, seed, 0, torch.device("cpu"), False)
    else:
        loader = DataLoader(ds, batch_size=batch, shuffle=True, generator=torch.Generator().manual_seed(seed))
    n = 0
    for b in loader:
        n += len(b[0] if not isinstance(b, dict) else b["x"])
    return n


def cache_builds(work: Path, args, rows: list) -> None:
    from torchvision import transforms as T

    specs = [
        ("chestxray 224 gray", 1024, 1024, 1, "png", 224, "L", *chestxray.cache_preprocessing(2.0, 8)),
        ("koniq 384x512 RGB", 768, 1024, 3, "jpg", (384, 512), "RGB", resize_to, "resize_to:INTER_AREA"),
    ]
    for name, h, w, c, ext, size, mode, pre, key in specs:
        paths = write_files(work / name.split()[0], args.n_files, h, w, c, ext)
        n = len(paths)
        k = [0]

        def build():
            k[0] += 1
            build_image_cache(paths, size, mode, pre, key, work / "cache" / str(k[0]), num_workers=1, progress=False)

        ours = best_rate(build, n, args.repeats)
        hw = (size, size) if isinstance(size, int) else size
        ds = imagefolder(work / name.split()[0], T.Compose([T.Resize(hw), T.PILToTensor()]), gray=c == 1)
        base = best_rate(lambda: [ds[i] for i in range(len(ds))], n, args.repeats)
        rows.append(("cache build", f"{name} from {w}x{h} {ext.upper()}", ours, "ImageFolder+PIL decode+Resize", base))


def loaders(work: Path, args, rows: list) -> None:
    from torchvision import transforms as T

    rng = np.random.default_rng(1)
    norm3 = T.Normalize(IMAGENET_MEAN, IMAGENET_STD)
    q = args.quick
    specs = [  # name, n, (h, w, c) of the cache, channels, batch, files for ImageFolder
        ("membership 32 px RGB", 2_000 if q else 20_000, (32, 32, 3), 3, 256, 300 if q else 3_000),
        ("chestxray 224 gray -> 3 ch", 64 if q else 800, (224, 224, 1), 3, 8, 32 if q else 300),
        ("224 px RGB", 64 if q else 600, (224, 224, 3), 3, 32, 32 if q else 300),
    ]
    for name, n, (h, w, c), ch, batch, n_files in specs:
        imgs = np.stack([smooth(rng, h, w, c) for _ in range(min(n, 200))])
        imgs = imgs[np.arange(n) % len(imgs)]
        imgs = imgs[..., 0] if c == 1 else imgs
        if name.startswith("membership"):  # its data set: int64 class labels (LabelImageDataset)
            ds = LabelImageDataset(imgs, np.arange(n) % 10, channels=ch, augment=True)
        else:
            ds = ArrayImageDataset(imgs, np.zeros((n, 14 if c == 1 else 1), np.float32), channels=ch, augment=True)
        ours = best_rate(lambda: epoch(ds, batch), n, args.repeats)
        per_item = best_rate(lambda: epoch(PerItem(ds), batch), n, args.repeats)
        root = work / name.split()[0] / "files"
        write_files(root, n_files, h, w, c, "png", seed=2)
        m = int(round(0.05 * h))
        tf = T.Compose([T.RandomHorizontalFlip(), T.RandomCrop((h, w), padding=m), T.ToTensor(),
                        *([T.Lambda(lambda x: x.expand(3, -1, -1))] if c == 1 else []), norm3])
        folder = imagefolder(root, tf, gray=c == 1)
        tv = best_rate(lambda: epoch(folder, batch, engine_loader=False), n_files, args.repeats)
        rows.append(("train loader", name + f", flip+shift, batch {batch}", ours, "per-item path", per_item))
        rows.append(("", "", None, "ImageFolder+PIL, RandomCrop(pad)+flip", tv))

    n_img, k = (8, 4) if q else (60, 20)
    photos = np.stack([smooth(rng, 384, 512, 3) for _ in range(n_img)])
    ds = PatchDataset(photos, rng.random(n_img), rng.random(n_img), 224, k, "fresh", hflip_p=0.5)
    ours = best_rate(lambda: epoch(ds, 32), len(ds), args.repeats)
    per_item = best_rate(lambda: epoch(PerItem(ds), 32), len(ds), args.repeats)
    root = work / "koniq" / "files"
    write_files(root, min(n_img, 30), 384, 512, 3, "png", seed=3)
    tf = T.Compose([T.RandomCrop(224), T.RandomHorizontalFlip(), T.ToTensor(), norm3])
    folder = imagefolder(root, tf, gray=False)
    tv = best_rate(lambda: [epoch(folder, 32, e, engine_loader=False) for e in range(k)], k * len(folder), args.repeats)
    rows.append(("train loader", f"iqa 384x512 -> 224 patches, flip, batch 32", ours, "per-item path", per_item))
    rows.append(("", "", None, "ImageFolder+PIL, RandomCrop(224)+flip", tv))
    if not args.no_model:
        rows.append(("model step", f"Swin-B fwd+bwd+SGD, batch {args.model_batch}", swin_rate(args), "", None))


def swin_rate(args) -> float:
    from torchvision.models import swin_b

    model = swin_b(weights=None)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    x = torch.randn(args.model_batch, 3, 224, 224)

    def step():
        opt.zero_grad(set_to_none=True)
        model(x).float().mean().backward()
        opt.step()

    step()  # warm-up
    return best_rate(step, args.model_batch, 1)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=2, help="passes per side (best kept)")
    ap.add_argument("--n-files", type=int, default=24, help="full-size files per cache build")
    ap.add_argument("--model-batch", type=int, default=2)
    ap.add_argument("--no-model", action="store_true", help="skip the Swin-B step")
    ap.add_argument("--no-build", action="store_true", help="skip the cache builds")
    ap.add_argument("--quick", action="store_true", help="small sizes (the test suite's smoke run)")
    args = ap.parse_args(argv)
    if args.quick:
        args.n_files, args.repeats = min(args.n_files, 3), 1
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    rows: list = []
    with tempfile.TemporaryDirectory(prefix="lfakit-bench-") as tmp:
        work = Path(tmp)
        if not args.no_build:
            cache_builds(work, args, rows)
        loaders(work, args, rows)
    print(f"{cpu_name()}; torch {torch.__version__}, CPU {torch.backends.cpu.get_cpu_capability()}; "
          f"1 thread, num_workers=0, CPU time, best of {args.repeats}")
    print(f"{'':<13}{'profile':<50}{'kit img/s':>10}  {'baseline':<40}{'img/s':>9}{'kit/base':>9}  target")
    last = None
    for what, name, ours, base_name, base in rows:
        last = ours if ours is not None else last  # a baseline row without a kit figure: the row above's
        target = TARGETS.get(name.split(",")[0]) if ours is not None else None
        cells = [f"{what:<13}{name:<50}", f"{rate(ours):>10}" if ours is not None else " " * 10,
                 f"  {base_name:<40}", f"{rate(base):>9}" if base is not None else " " * 9,
                 f"{last / base:>8.1f}x" if base else " " * 9]
        if target:
            cells.append(f"  >= {target:,}: {'met' if ours >= target else 'NOT met'}")
        print("".join(cells))
    return 0


def rate(v: float) -> str:
    return f"{v:,.0f}" if v >= 100 else f"{v:.2f}"


if __name__ == "__main__":
    sys.exit(main())
