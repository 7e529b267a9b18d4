"""What checking a run record against its manifest costs: ``lfakit.record.verify_run``.

A record of about ``--mb`` MB (default 100) is generated in a temporary folder as ``save_run``
leaves one: a ``predictions.npz`` of incompressible float64 scores (most of the bytes), the
tables, ``metrics.json``, a few figures (random bytes, the last one sized to reach ``--mb``), and ``manifest.json`` written last. ``verify_run``
(size and SHA-256 of every listed file; checkpoints are size-only and this record has none) is
timed against a named baseline measured in the same run on the same files: **plain
``hashlib.sha256`` over the same bytes, read once** (1 MiB blocks), which is the floor of any
hash check. Both are timed warm (the files in the page cache, as after the run wrote them or
after the first read), best of ``--repeat`` runs, wall-clock. Prints seconds and MB/s of each and
the ratio; the record is deleted afterwards.

Run:  python benchmarks/bench_record_verify.py [--mb 100 --repeat 15]
"""

from __future__ import annotations

import argparse
import hashlib
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from lfakit import record


def make_record(run_dir: Path, mb: float) -> int:
    """A run folder of about ``mb`` MB with the record's files and its manifest; its size in bytes."""
    rng = np.random.default_rng(0)
    rows = int(mb * 1e6 / (8 * 10 + 8 * 2))  # scores (rows x 10) and targets, float64: the bulk
    w = record.PredictionWriter()
    w.add("focal", "test", 0, np.arange(rows), rng.integers(0, 2, (rows, 1)), rng.normal(size=(rows, 10)))
    table = pd.DataFrame({"focal": rng.random(14), "zlpr": rng.random(14)}, index=[f"class {i}" for i in range(14)])
    record.save_run(run_dir, "bench", {"seed": 0}, methods={"focal": {}}, headline=("overall", table, "bench"),
                    tables={"overall": table, "per_class": pd.DataFrame(rng.random((500, 14)))}, predictions=w)
    (run_dir / "figures").mkdir()
    for i in range(5):
        (run_dir / "figures" / f"fig{i}.png").write_bytes(rng.bytes(200_000))
    short = int(mb * 1e6) - sum(p.stat().st_size for p in run_dir.rglob("*") if p.is_file())
    if short > 0:  # the npz compresses a little: a last figure brings the record to its size
        (run_dir / "figures" / "fig5.png").write_bytes(rng.bytes(short))
    record.write_manifest(run_dir)
    return sum(p.stat().st_size for p in run_dir.rglob("*") if p.is_file())


def sha256_once(run_dir: Path) -> int:
    """The baseline: hashlib.sha256 of every file the manifest lists, each read once."""
    n = 0
    for rel in record.read_manifest(run_dir)[0]:
        h = hashlib.sha256()
        with open(run_dir / rel, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
                n += len(block)
        h.hexdigest()
    return n


def best_of(fn, repeat: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=float, default=100.0, help="size of the generated record in MB (default 100)")
    ap.add_argument("--repeat", type=int, default=15, help="runs of each side; the best is reported (default 15)")
    args = ap.parse_args()
    print(f"python {platform.python_version()}, numpy {np.__version__}, {platform.machine()}; "
          f"best of {args.repeat} warm runs, wall-clock")
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        run_dir.mkdir()
        size = make_record(run_dir, args.mb)
        listed = record.read_manifest(run_dir)[0]
        hashed = sum(e["bytes"] for e in listed.values())
        print(f"\nrecord: {size / 1e6:.1f} MB in {len(listed)} listed files ({hashed / 1e6:.1f} MB hashed)")
        sha256_once(run_dir)  # warm the page cache for both sides
        t_base, n = best_of(lambda: sha256_once(run_dir), args.repeat)
        t_verify, problems = best_of(lambda: record.verify_run(run_dir), args.repeat)
        assert n == hashed and problems == [], problems
        print(f"  hashlib.sha256, each file read once (baseline) : {t_base:7.3f} s  {hashed / 1e6 / t_base:7.0f} MB/s")
        print(f"  lfakit.record.verify_run                       : {t_verify:7.3f} s  {hashed / 1e6 / t_verify:7.0f} MB/s")
        print(f"  verify_run / baseline                          : {t_verify / t_base:7.2f} x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
