"""Timing harness shared by the loss benchmarks (``bench_losses_*.py``).

Method: one CPU thread (the scripts call ``torch.set_num_threads(1)``), CPU time of the process
(``time.process_time``), so time spent descheduled while other processes use the shared CPU is
not counted. The kit's loss ("ours") and its reference are each timed as repeated
forward+backward calls on the same input. After a short warm-up, each side's calls per block
are doubled until a block lasts about ``--block`` seconds. Ours and the reference then run in
alternating blocks, in an order that rotates every round, for ``--rounds`` rounds. The tables give
the median over rounds of each side's time per call, the median of the per-round ratios
ours/reference, and the interquartile range of those ratios (the spread caused by noise).

``verdict``: ``ok`` when the median ratio is <= the bound (``LIMIT`` = 1.10 unless a script
says otherwise), ``SLOW`` when it is above, with ``?`` appended when the interquartile range
straddles the bound (inconclusive at this noise level: rerun with more rounds).

Each loss is also timed with the kit's per-call value checks off (``lfakit.losses.value_checks
(False)``, columns ``off``): the checks read the targets once per call (about 5-15 microseconds
on this CPU, a tenth of a fused loss at these sizes), which the references do not do.

The scripts are run as ``python benchmarks/bench_losses_X.py``, so this directory is on
``sys.path`` and they import this module as ``from _timing import ...``.
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import statistics
import time

import torch

from lfakit.losses import value_checks

LIMIT = 1.10  # the bound on ours / reference


def add_timing_args(ap: argparse.ArgumentParser) -> None:
    """The command-line flags common to the loss benchmarks."""
    ap.add_argument("--rounds", type=int, default=41, help="alternating rounds (median kept)")
    ap.add_argument("--block", type=float, default=0.02, help="seconds per timed block")
    ap.add_argument("--only", nargs="*", help="row labels to run (default: all)")


def setup_line(rounds: int) -> str:
    """The part of a table's title that describes the machine and the timing method."""
    return (
        f"CPU 1 thread, torch {torch.__version__}, {platform.processor() or platform.machine()}; "
        f"CPU time, median of {rounds} interleaved rounds"
    )


def _fwd_bwd(fn, x, y):
    def step():
        x.grad = None
        fn(x, y).backward()

    return step


def cpu_seconds_per_call(step, number: int) -> float:
    """CPU seconds per call of ``step()`` over ``number`` consecutive calls."""
    t0 = time.process_time()
    for _ in range(number):
        step()
    return (time.process_time() - t0) / number


def _calls_per_block(step, block: float) -> int:
    number = 1
    while cpu_seconds_per_call(step, number) * number < block and number < 1 << 20:
        number *= 2
    return number


def time_pair(ours, ref, x, y, rounds: int, block: float, warmup: int = 20,
              ours_off=None) -> dict:
    """Interleaved timing of ``ours`` and ``ref`` (forward+backward per call): per round one
    block of each, in an order that rotates every round. Returns the medians over rounds of the
    seconds per call, the median of the per-round ratios ours/ref and their quartiles.

    ``ours_off`` (usually ``ours`` itself) is timed as a third side, in blocks run with the
    kit's per-call value checks off (``lfakit.losses.value_checks(False)``); its figures, in the
    same form and against the same reference, are under the key ``"off"``.
    """
    sides = [(ours, contextlib.nullcontext), (ref, contextlib.nullcontext)]
    if ours_off is not None:
        sides.append((ours_off, lambda: value_checks(False)))
    steps = [(_fwd_bwd(fn, x, y), ctx) for fn, ctx in sides]
    numbers = []
    for step, ctx in steps:
        with ctx():
            cpu_seconds_per_call(step, warmup)  # warm-up
            numbers.append(_calls_per_block(step, block))
    times: list[list[float]] = [[] for _ in steps]
    n = len(steps)
    for r in range(rounds):
        order = [(k + r) % n for k in range(n)]
        if (r // n) % 2:
            order.reverse()
        for k in order:
            step, ctx = steps[k]
            with ctx():
                times[k].append(cpu_seconds_per_call(step, numbers[k]))
    res = _summary(times[0], times[1])
    if ours_off is not None:
        res["off"] = _summary(times[2], times[1])
    return res


def _summary(ours: list[float], ref: list[float]) -> dict:
    ratios = [a / b for a, b in zip(ours, ref)]
    q1, _, q3 = statistics.quantiles(ratios, n=4)
    return {
        "ours": statistics.median(ours),
        "ref": statistics.median(ref),
        "ratio": statistics.median(ratios),
        "q1": q1,
        "q3": q3,
    }


class Tally:
    """The rows over the bound, with the value checks on and off, and each row's verdict cell."""

    def __init__(self):
        self.slow: list[str] = []
        self.slow_off: list[str] = []

    def judge(self, row: str, res: dict, limit: float = LIMIT) -> str:
        """``ok/ok``-style verdicts of a :func:`time_pair` result (one word without ``"off"``)."""
        v = verdict(res, limit)
        if not v.startswith("ok"):
            self.slow.append(row)
        if "off" not in res:
            return v
        v_off = verdict(res["off"], limit)
        if not v_off.startswith("ok"):
            self.slow_off.append(row)
        return f"{v}/{v_off}"

    def summary(self) -> str:
        return (f"value checks on: {', '.join(self.slow) or 'none'}; "
                f"off: {', '.join(self.slow_off) or 'none'}")


def off_ms_cell(res: dict) -> str:
    """Milliseconds per call with the value checks off, blank without an ``"off"`` part."""
    return f"{res['off']['ours'] * 1e3:>8.4f}" if "off" in res else f"{'':>8}"


def ratio_cells(res: dict | None) -> str:
    """``ratio  q1-q3`` of a :func:`time_pair` result (or its ``"off"`` part), blank if None."""
    if res is None:
        return f"{'':>6} {'':>11}"
    return f"{res['ratio']:>6.2f} {res['q1']:>5.2f}-{res['q3']:<5.2f}"


def verdict(res: dict, limit: float = LIMIT) -> str:
    """``ok`` / ``SLOW`` for the median ratio against ``limit``, ``?`` if the IQR straddles it."""
    word = "ok" if res["ratio"] <= limit else "SLOW"
    return word + ("?" if res["q1"] <= limit < res["q3"] else "")
