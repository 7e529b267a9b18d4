"""Benchmark: decode-every-epoch vs the pre-resized uint8 memmap cache (ChestX-ray14 format).

Writes ~150 generated 1024x1024 PNGs in the NIH layout into a temporary folder, then times one
epoch over a DataLoader (batch 16, num_workers=0) at 224 px:

  (a) every item decodes the PNG, converts to 8-bit gray, applies CLAHE at full resolution and
      resizes (what a loader without a cache does each epoch);
  (b) every item is read from the pre-resized memmap cache; the one-time cache build is timed
      separately.

Both paths go through the same ``ArrayImageDataset`` normalisation, so the difference is the
image source only. Run:  python benchmarks/bench_chestxray_cache.py [--n-images 150]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from lfakit.data import chestxray as cx
from lfakit.data.datasets import ArrayImageDataset


class DecodingImages:
    """Array-like (N, S, S) uint8 whose items are decoded + CLAHE + resized on every access."""

    dtype = np.dtype(np.uint8)
    ndim = 3

    def __init__(self, paths, image_size, clahe_clip, clahe_grid):
        self.paths = list(paths)
        self.args = (image_size, clahe_clip, clahe_grid)
        self.shape = (len(self.paths), image_size, image_size)

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        return cx.load_preprocessed(self.paths[i], *self.args)


def time_epochs(dataset, epochs: int, batch_size: int) -> list[float]:
    out = []
    for e in range(epochs):
        loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=0,
                            generator=torch.Generator().manual_seed(e))
        t0 = time.perf_counter()
        n = 0
        for x, _, _ in loader:
            n += len(x)
        out.append(time.perf_counter() - t0)
        assert n == len(dataset)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-images", type=int, default=150)
    ap.add_argument("--source-size", type=int, default=1024)
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=2, help="epochs timed per path (best reported)")
    ap.add_argument("--clahe-clip", type=float, default=2.0)
    ap.add_argument("--clahe-grid", type=int, default=8)
    ap.add_argument("--workdir", default=None, help="keep data here instead of a temp folder")
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="lfakit-bench-") as tmp:
        work = Path(args.workdir) if args.workdir else Path(tmp)
        root = work / "nih"
        per_patient = 3
        t0 = time.perf_counter()
        if not (root / "Data_Entry_2017.csv").is_file():
            cx.write_synthetic_nih(root, n_patients=max(2, -(-args.n_images // per_patient)),
                                   images_per_patient=(per_patient, per_patient),
                                   image_size=args.source_size, seed=0)
        t_gen = time.perf_counter() - t0
        index = cx.load_index(root)
        paths = dict(zip(index.image_id, index.path))
        mb = sum(os.path.getsize(p) for p in index.path) / 2**20
        targets = cx.labels_matrix(index)
        print(f"data: {len(index)} PNGs {args.source_size}x{args.source_size} ({mb:.0f} MiB) "
              f"written in {t_gen:.1f} s -> {args.image_size} px, CLAHE clip {args.clahe_clip} "
              f"grid {args.clahe_grid}; batch {args.batch_size}, num_workers=0, "
              f"torch threads {torch.get_num_threads()}, cv2 threads {__import__('cv2').getNumThreads()}")

        decode_ds = ArrayImageDataset(
            DecodingImages(index.path, args.image_size, args.clahe_clip, args.clahe_grid), targets)
        t_decode = time_epochs(decode_ds, args.epochs, args.batch_size)

        t0 = time.perf_counter()
        cache = cx.build_cache(index, paths, args.image_size, work / "cache",
                               clahe_clip=args.clahe_clip, clahe_grid=args.clahe_grid, progress=False)
        t_build = time.perf_counter() - t0
        t0 = time.perf_counter()
        cx.build_cache(index, paths, args.image_size, work / "cache",
                       clahe_clip=args.clahe_clip, clahe_grid=args.clahe_grid, progress=False)
        t_reopen = time.perf_counter() - t0
        cache_ds = ArrayImageDataset(cache, targets)
        t_cache = time_epochs(cache_ds, args.epochs, args.batch_size)

        # same pixels either way
        assert np.array_equal(cache[3], decode_ds.images[3])

        a, b = min(t_decode), min(t_cache)
        print(f"(a) decode + CLAHE + resize every item: {a:8.3f} s/epoch  (epochs: "
              + ", ".join(f"{t:.3f}" for t in t_decode) + ")")
        print(f"(b) pre-resized memmap cache:           {b:8.3f} s/epoch  (epochs: "
              + ", ".join(f"{t:.3f}" for t in t_cache) + ")")
        print(f"    one-time cache build: {t_build:.2f} s (threads: {min(8, os.cpu_count() or 1)}); "
              f"reopening the built cache: {t_reopen * 1000:.1f} ms")
        print(f"speed-up per epoch (a)/(b): {a / b:.1f}x  (target >= 5x)")
        print(f"epochs after which the cache has paid for its build: {t_build / max(a - b, 1e-9):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
