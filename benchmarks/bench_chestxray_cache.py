"""Benchmark: decode-every-epoch vs the pre-resized uint8 memmap cache (ChestX-ray14 format).

Writes ~150 generated 1024x1024 PNGs in the NIH layout (``lfakit.data.chestxray_embedded``)
into a temporary folder, indexes them (``lfakit.data.chestxray_index``), then times one epoch
over a DataLoader (batch 16, num_workers=0) at 224 px:

  (a) baseline: every item decodes the PNG, converts to 8-bit gray, applies CLAHE at full
      resolution and resizes (what a loader without a cache does each epoch);
  (b) every item is read from the pre-resized memmap cache (``lfakit.data.image_cache``, with
      the ChestX-ray CLAHE preprocessing); the one-time build and a reopen are timed apart.

Both paths go through the same ``ArrayImageDataset`` normalisation, so the difference is the
image source only. It also times the kit's checked, quiet decoding (``image_decode.read_image``:
PNG chunk and CRC check, OpenCV logging off) against a plain ``cv2.imdecode`` of the same
bytes, the baseline. Wall-clock seconds, best of ``--epochs`` (the machine is shared).
Run:  python benchmarks/bench_chestxray_cache.py [--n-images 150]
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

from lfakit.data import chestxray_embedded, chestxray_index, image_cache, image_decode
from lfakit.data.chestxray import cache_preprocessing, load_preprocessed
from lfakit.data.datasets import ArrayImageDataset

from _epochs import DecodingArray, time_epochs


def time_decoding(blobs: list[bytes], rounds: int) -> tuple[float, float]:
    """Best-of-``rounds`` seconds per image: plain ``cv2.imdecode`` and the kit's
    ``decode_image`` (PNG check + quiet OpenCV + 8-bit gray), alternating rounds."""
    arrays = [np.frombuffer(b, np.uint8) for b in blobs]
    plain, ours = [], []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for a in arrays:
            cv2.imdecode(a, cv2.IMREAD_UNCHANGED)
        plain.append((time.perf_counter() - t0) / len(arrays))
        t0 = time.perf_counter()
        for a in arrays:
            image_decode.decode_image(a, "L")
        ours.append((time.perf_counter() - t0) / len(arrays))
    return min(plain), min(ours)


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
            chestxray_embedded.write_synthetic_nih(
                root, n_patients=max(2, -(-args.n_images // per_patient)),
                images_per_patient=(per_patient, per_patient), image_size=args.source_size, seed=0)
        t_gen = time.perf_counter() - t0
        index = chestxray_index.load_index(root)
        mb = sum(os.path.getsize(p) for p in index.path) / 2**20
        targets = chestxray_index.labels_matrix(index)
        print(f"data: {len(index)} PNGs {args.source_size}x{args.source_size} ({mb:.0f} MiB) "
              f"written in {t_gen:.1f} s -> {args.image_size} px, CLAHE clip {args.clahe_clip} "
              f"grid {args.clahe_grid}; batch {args.batch_size}, num_workers=0, "
              f"torch threads {torch.get_num_threads()}, cv2 threads {cv2.getNumThreads()}")

        decode_ds = ArrayImageDataset(
            DecodingArray(index.path, (args.image_size, args.image_size),
                          lambda p: load_preprocessed(p, args.image_size, args.clahe_clip, args.clahe_grid)), targets)
        t_decode = time_epochs(decode_ds, args.epochs, args.batch_size)

        preprocess, key = cache_preprocessing(args.clahe_clip, args.clahe_grid)
        build = dict(size=args.image_size, mode="L", preprocess=preprocess, key=key,
                     cache_dir=work / "cache", namespace="chestxray", ids=list(index.image_id),
                     progress=False)
        workers = min(8, os.cpu_count() or 1)
        t0 = time.perf_counter()
        cache = image_cache.build_image_cache(list(index.path), **build)
        t_build = time.perf_counter() - t0
        t0 = time.perf_counter()
        image_cache.build_image_cache(list(index.path), **build)
        t_reopen = time.perf_counter() - t0
        cache_ds = ArrayImageDataset(cache, targets)
        t_cache = time_epochs(cache_ds, args.epochs, args.batch_size)

        # same pixels either way
        assert np.array_equal(cache[3], decode_ds.images[3])

        blobs = [Path(p).read_bytes() for p in index.path[: min(40, len(index))]]
        t_plain, t_ours = time_decoding(blobs, rounds=max(3, args.epochs))

        a, b = min(t_decode), min(t_cache)
        print(f"(a) baseline, decode + CLAHE + resize every item: {a:8.3f} s/epoch  (epochs: "
              + ", ".join(f"{t:.3f}" for t in t_decode) + ")")
        print(f"(b) pre-resized memmap cache:                     {b:8.3f} s/epoch  (epochs: "
              + ", ".join(f"{t:.3f}" for t in t_cache) + ")")
        print(f"    one-time cache build: {t_build:.2f} s ({workers} threads); reopening the built "
              f"cache: {t_reopen * 1000:.1f} ms")
        print(f"speed-up per epoch (a)/(b): {a / b:.1f}x  (target >= 5x)")
        print(f"epochs after which the cache has paid for its build: {t_build / max(a - b, 1e-9):.2f}")
        print(f"decoding one PNG: plain cv2.imdecode (baseline) {t_plain * 1000:.2f} ms, the kit's "
              f"checked quiet decode_image {t_ours * 1000:.2f} ms; ratio {t_ours / t_plain:.3f} "
              "(PNG chunk/CRC check, log-level switch and the 8-bit conversion)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
