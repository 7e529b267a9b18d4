"""benchmarks/gpu_check.py (`make gpu-check`) on a machine without a GPU: it says so, runs nothing
heavy and exits 0. The GPU path itself runs only where a GPU is visible."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"


def test_without_a_gpu_it_says_so_and_runs_nothing_heavy():
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, str(SCRIPT)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "no CUDA GPU visible" in proc.stdout and "nothing heavy was run" in proc.stdout
    assert "DenseNet-121" not in proc.stdout and "rehearsal" not in proc.stdout  # no table: nothing measured
    assert time.perf_counter() - t0 < 60


def test_the_table_and_timm_reference():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import gpu_check

    assert gpu_check.TIMM_DENSENET121_TRAIN == 913.65 and "rtx3090" in gpu_check.TIMM_SOURCE
    text = gpu_check.table([["a check", "ok", "1 img/s", "", "note"]])
    lines = text.splitlines()
    assert lines[0].startswith("| check") and "a check" in lines[2] and len({len(x) for x in lines}) == 1
    profiles = gpu_check.rehearsal_profiles()
    assert ("iqa_losses", "paper") in profiles and ("cifar_fece", "lt") in profiles
    assert all(p != "smoke" for _, p in profiles)
