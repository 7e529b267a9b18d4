"""Latency of the command line's listing and parameter validation.

Baseline, measured in the same run: ``python -c pass`` (the interpreter's own start-up), and the
old path, which imported torch and papermill before checking anything (``python -c "import
torch, papermill"``). Prints the median of ``--rounds`` runs of each command and the ratios.
The bound the kit holds: listing and a parameter error answer within 1.5 s.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

BOUND_S = 1.5
COMMANDS = {
    "python -c pass (baseline)": [sys.executable, "-c", "pass"],
    "import torch, papermill (the old start-up)": [sys.executable, "-c", "import torch, papermill"],
    "lfakit list": [sys.executable, "-m", "lfakit.cli", "list"],
    "lfakit list chestxray_zlpr": [sys.executable, "-m", "lfakit.cli", "list", "chestxray_zlpr"],
    "lfakit run chestxray_zlpr -p lr=-1 (error)": [sys.executable, "-m", "lfakit.cli", "run", "chestxray_zlpr", "-p", "lr=-1"],
    "lfakit run cifar_fece -p image_size=2 (error)": [sys.executable, "-m", "lfakit.cli", "run", "cifar_fece", "-p", "image_size=2"],
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    times: dict[str, list[float]] = {k: [] for k in COMMANDS}
    for _ in range(args.rounds):  # interleaved, so machine noise hits every command alike
        for name, cmd in COMMANDS.items():
            t0 = time.perf_counter()
            subprocess.run(cmd, capture_output=True, check=False)
            times[name].append(time.perf_counter() - t0)
    base = statistics.median(times["python -c pass (baseline)"])
    old = statistics.median(times["import torch, papermill (the old start-up)"])
    print(f"{'command':<48} {'median s':>9} {'x python':>9} {'x old':>7}  verdict")
    worst = 0.0
    for name, ts in times.items():
        med = statistics.median(ts)
        lfakit = name.startswith("lfakit")
        worst = max(worst, med) if lfakit else worst
        verdict = ("ok" if med <= BOUND_S else f"over {BOUND_S} s") if lfakit else ""
        print(f"{name:<48} {med:9.3f} {med / base:9.2f} {med / old:7.2f}  {verdict}")
    return 0 if worst <= BOUND_S else 1


if __name__ == "__main__":
    sys.exit(main())
