"""Benchmark: the generic image cache on RGB photos (KonIQ-10k-like 1024x768 JPEGs).

Writes ``--n-images`` smooth random RGB photos, 1024 x 768 (width x height) JPEGs at quality 90,
with Pillow into a temporary folder, then times one epoch over a DataLoader (batch 16,
num_workers=0) at ``--height`` x ``--width`` (default 384 x 512, KonIQ's smaller size):

  (a) baseline: every item decodes the JPEG (``image_decode.read_image(path, "RGB")``) and
      resizes it with ``INTER_AREA``, each epoch;
  (b) every item is a row of the RGB memmap ``image_cache.build_image_cache`` made once (the
      build and a reopen are timed apart).

It also times the kit's RGB decode against Pillow's ``np.asarray(Image.open(p).convert("RGB"))``
of the same files (the named baseline). Wall-clock seconds, best of ``--epochs``.
Run:  python benchmarks/bench_image_cache.py [--n-images 120]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

from lfakit.data import image_decode
from lfakit.data.datasets import ArrayImageDataset

from _epochs import DecodingArray, time_epochs
from lfakit.data.image_cache import build_image_cache, resize_to


def write_photos(folder: Path, n: int, seed: int = 0) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        small = rng.random((12, 16, 3)).astype(np.float32)
        img = cv2.resize(small, (1024, 768), interpolation=cv2.INTER_CUBIC)
        img = np.clip(img * 255 + rng.standard_normal(img.shape).astype(np.float32) * 6, 0, 255).astype(np.uint8)
        p = folder / f"{i:05d}.jpg"
        Image.fromarray(img, "RGB").save(p, quality=90)
        out.append(p)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-images", type=int, default=120)
    ap.add_argument("--height", type=int, default=384)
    ap.add_argument("--width", type=int, default=512)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=2, help="epochs timed per path (best reported)")
    args = ap.parse_args(argv)
    size = (args.height, args.width)

    with tempfile.TemporaryDirectory(prefix="lfakit-bench-") as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        paths = write_photos(work / "photos", args.n_images)
        t_gen = time.perf_counter() - t0
        mb = sum(os.path.getsize(p) for p in paths) / 2**20
        targets = np.zeros(len(paths), np.float32)
        print(f"data: {len(paths)} JPEGs 1024x768 ({mb:.0f} MiB) written in {t_gen:.1f} s -> "
              f"{args.height}x{args.width} RGB; batch {args.batch_size}, num_workers=0, "
              f"torch threads {torch.get_num_threads()}, cv2 threads {cv2.getNumThreads()}")

        decode_ds = ArrayImageDataset(DecodingArray(paths, (*size, 3), lambda p: resize_to(image_decode.read_image(p, "RGB"), size)), targets)
        t_decode = time_epochs(decode_ds, args.epochs, args.batch_size)

        build = dict(size=size, mode="RGB", preprocess=resize_to, key="resize_to:INTER_AREA",
                     cache_dir=work / "cache", namespace="photos", progress=False)
        t0 = time.perf_counter()
        cache = build_image_cache(paths, **build)
        t_build = time.perf_counter() - t0
        t0 = time.perf_counter()
        build_image_cache(paths, **build)
        t_reopen = time.perf_counter() - t0
        t_cache = time_epochs(ArrayImageDataset(cache, targets), args.epochs, args.batch_size)
        assert np.array_equal(cache[2], decode_ds.images[2])

        sample = paths[: min(30, len(paths))]
        pil, ours = [], []
        for _ in range(max(3, args.epochs)):
            t0 = time.perf_counter()
            for p in sample:
                with Image.open(p) as im:
                    np.asarray(im.convert("RGB"))
            pil.append((time.perf_counter() - t0) / len(sample))
            t0 = time.perf_counter()
            for p in sample:
                image_decode.read_image(p, "RGB")
            ours.append((time.perf_counter() - t0) / len(sample))

        a, b = min(t_decode), min(t_cache)
        print(f"(a) baseline, decode + resize every item: {a:8.3f} s/epoch  (epochs: "
              + ", ".join(f"{t:.3f}" for t in t_decode) + ")")
        print(f"(b) pre-resized RGB memmap cache:         {b:8.3f} s/epoch  (epochs: "
              + ", ".join(f"{t:.3f}" for t in t_cache) + ")")
        print(f"    one-time cache build: {t_build:.2f} s ({min(8, os.cpu_count() or 1)} threads), "
              f"{cache.nbytes / 2**20:.0f} MiB; reopening the built cache: {t_reopen * 1000:.1f} ms")
        print(f"speed-up per epoch (a)/(b): {a / b:.1f}x")
        print(f"decoding one 1024x768 JPEG to RGB: Pillow (baseline) {min(pil) * 1000:.2f} ms, "
              f"image_decode.read_image {min(ours) * 1000:.2f} ms; ratio {min(ours) / min(pil):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
