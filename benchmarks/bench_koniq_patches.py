"""Benchmark: an IQA training epoch at the paper's crop size, from the RGB cache vs decoding the JPEGs.

Generates the embedded KonIQ-format set (512x384 JPEGs, ``lfakit.data.koniq_embedded``) into a
temporary folder, then times one shuffled epoch of ``PatchDataset`` items (``--patches`` random
224 x 224 crops per image, mirrored at random, batch 32, num_workers=0), as ``iqa_losses`` feeds
them to the model with the paper profile's crop size:

  (a) baseline: every item decodes its JPEG (``image_decode.read_image(path, "RGB")``), as a
      data set without the pre-resized cache does (one decode per crop);
  (b) every item is a crop of a row of the RGB memmap ``koniq.load_koniq`` builds once through
      ``image_cache.build_image_cache`` (the build is timed apart).

Wall-clock seconds, best of ``--epochs``; the ratio is (a) / (b) in the same run.
Run:  python benchmarks/bench_koniq_patches.py [--patches 4] [--epochs 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from _epochs import DecodingArray
from lfakit.data import image_decode, koniq
from lfakit.data.koniq_embedded import write_embedded
from lfakit.data.patches import PatchDataset


def epoch_seconds(ds, batch_size: int, epochs: int) -> list[float]:
    out = []
    for e in range(epochs):
        torch.manual_seed(e)
        loader = DataLoader(ds, batch_size=batch_size, shuffle=True, num_workers=0,
                            generator=torch.Generator().manual_seed(e))
        t0 = time.perf_counter()
        n = sum(len(b["x"]) for b in loader)
        out.append(time.perf_counter() - t0)
        assert n == len(ds)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patches", type=int, default=4, help="crops per image per epoch (the paper profile: 20)")
    ap.add_argument("--patch-size", type=int, default=224)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=2, help="epochs timed per path (best reported)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="lfakit-bench-") as tmp:
        root = write_embedded(Path(tmp) / "koniq")
        t0 = time.perf_counter()
        splits = koniq.load_koniq(root, Path(tmp) / "cache", (384, 512), progress=False)
        t_build = time.perf_counter() - t0
        tr = splits["train"]
        folder = root / koniq.IMAGE_DIRS[0]
        paths = [folder / n for n in tr.image_names]
        print(f"data: {len(paths)} training JPEGs 512x384; {args.patches} crops of {args.patch_size} px per image, "
              f"batch {args.batch_size}, num_workers=0, torch threads 1; cache built in {t_build:.1f} s "
              f"(all {sum(len(s.mos) for s in splits.values())} images)")
        decoding = DecodingArray(paths, (384, 512, 3), lambda p: image_decode.read_image(p, "RGB"))
        base = PatchDataset(decoding, tr.mos, tr.sd, args.patch_size, args.patches, "fresh", hflip_p=0.5)
        cached = PatchDataset(tr.images, tr.mos, tr.sd, args.patch_size, args.patches, "fresh", hflip_p=0.5)
        t_dec = min(epoch_seconds(base, args.batch_size, args.epochs))
        t_cache = min(epoch_seconds(cached, args.batch_size, args.epochs))
        n = len(cached)
        print(f"{'pipeline':<36} {'epoch s':>8} {'crops/s':>9}")
        print(f"{'(a) decode the JPEG per crop':<36} {t_dec:8.2f} {n / t_dec:9.0f}")
        print(f"{'(b) RGB cache (memmap)':<36} {t_cache:8.2f} {n / t_cache:9.0f}")
        print(f"ratio (a)/(b): {t_dec / t_cache:.1f}x faster with the cache; the build ({t_build:.1f} s) "
              f"is repaid after {t_build / max(t_dec - t_cache, 1e-9):.2f} epochs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
