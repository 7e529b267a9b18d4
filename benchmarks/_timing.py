"""Timing harness shared by the loss benchmarks (``bench_losses_*.py``).

Method: one CPU thread (the scripts call ``torch.set_num_threads(1)``), CPU time of the process
(``time.process_time``), so time spent descheduled while other processes use the shared CPU is
not counted. Three sides are timed as repeated forward+backward calls on the same input: the
kit's loss with its per-call value checks on (the default), the same loss with them off
(``lfakit.losses.value_checks(False)``) and its named reference. After a short warm-up, each
side's calls per block are doubled until a block lasts about ``--block`` seconds. The sides then
run in alternating blocks, in an order that rotates every round, for ``--rounds`` rounds.

The tables give, per loss:

* the median over rounds of each side's time per call;
* ``off/ref``: the median of the per-round ratios (checks off) / reference, with their
  interquartile range (the spread caused by noise). The bound: ``LIMIT`` = 1.10 unless a
  script says otherwise (this is the cost of the computation, like for like: the references
  check nothing);
* ``on/ref``: the same with the checks on (for information);
* ``check``: the median over rounds of (checks-on time - checks-off time) per call, i.e. what
  the value checks cost, and that cost as a share of one training step of the kit's smoke
  model (:func:`step_seconds`), with its interquartile range. The bound: ``SHARE_LIMIT`` = 1%.

``verdict``: ``ok`` when the median is within the bound, ``SLOW`` (ratio) / ``OVER`` (share)
when it is not, with ``?`` appended when the interquartile range straddles the bound
(inconclusive at this noise level: rerun with more rounds). Two words ``speed/share``.

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

LIMIT = 1.10  # the bound on (ours, checks off) / reference
SHARE_LIMIT = 0.01  # the bound on (checks on - checks off) / one smoke training step


def add_timing_args(ap: argparse.ArgumentParser) -> None:
    """The command-line flags common to the loss benchmarks."""
    ap.add_argument("--rounds", type=int, default=41, help="alternating rounds (median kept)")
    ap.add_argument("--block", type=float, default=0.02, help="seconds per timed block")
    ap.add_argument("--step-rounds", type=int, default=15,
                    help="timed blocks of the smoke training step (median kept)")
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
    same form and against the same reference, are under the key ``"off"``, and the per-round
    differences ours - ours_off (what the checks cost per call, in seconds) under ``"check"``
    (keys ``seconds``, ``q1``, ``q3``; a raw list in ``rounds``).
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
        diffs = [a - b for a, b in zip(times[0], times[2])]
        q1, _, q3 = _quartiles(diffs)
        res["check"] = {"seconds": statistics.median(diffs), "q1": q1, "q3": q3, "rounds": diffs}
    return res


def _quartiles(values: list[float]) -> tuple[float, float, float]:
    if len(values) == 1:
        return values[0], values[0], values[0]
    return tuple(statistics.quantiles(values, n=4, method="inclusive"))


def _summary(ours: list[float], ref: list[float]) -> dict:
    ratios = [a / b for a, b in zip(ours, ref)]
    q1, _, q3 = _quartiles(ratios)
    return {
        "ours": statistics.median(ours),
        "ref": statistics.median(ref),
        "ratio": statistics.median(ratios),
        "q1": q1,
        "q3": q3,
    }


# ------------------------------------------------------------------------------------------
# the smoke model's training step, the yardstick of the check cost
# ------------------------------------------------------------------------------------------
def training_step(model: torch.nn.Module, loss_fn, x: torch.Tensor, y: torch.Tensor):
    """One training step as the kit's engine runs it: forward, loss, backward, AdamW step
    (PyTorch's defaults, zeroed gradients first). Returns the step as a function."""
    opt = torch.optim.AdamW(model.parameters())
    model.train()

    def step():
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()

    return step


def step_seconds(step, rounds: int, block: float, warmup: int = 3) -> float:
    """Median CPU seconds of one call of ``step()`` over ``rounds`` blocks of about ``block``
    seconds each (at least one call per block)."""
    cpu_seconds_per_call(step, warmup)
    number = _calls_per_block(step, block)
    return statistics.median(cpu_seconds_per_call(step, number) for _ in range(rounds))


def check_share(res: dict, step: float) -> dict:
    """The checks' cost per call of a :func:`time_pair` result (with an ``"off"`` side) as a
    share of a training step of ``step`` seconds: ``ratio`` (the median share) and its
    quartiles ``q1``, ``q3``, in the form :func:`verdict` reads."""
    c = res["check"]
    return {"ratio": c["seconds"] / step, "q1": c["q1"] / step, "q3": c["q3"] / step}


def step_line(profile: str, step: float) -> str:
    """The line that says which training step the check shares are relative to."""
    return (f"check share = (checks on - checks off) per loss call / one training step of the "
            f"smoke model, {profile}: {step * 1e3:.2f} ms (bound {SHARE_LIMIT:.0%})")


# ------------------------------------------------------------------------------------------
# verdicts and table cells
# ------------------------------------------------------------------------------------------
def verdict(res: dict, limit: float = LIMIT, word: str = "SLOW") -> str:
    """``ok`` / ``word`` for the median ``ratio`` against ``limit``, ``?`` if the IQR
    straddles it."""
    v = "ok" if res["ratio"] <= limit else word
    return v + ("?" if res["q1"] <= limit < res["q3"] else "")


class Tally:
    """The rows over a bound, and each row's verdict cell."""

    def __init__(self):
        self.slow: list[str] = []
        self.over: list[str] = []

    def judge(self, row: str, off: dict, limit: float = LIMIT, share: dict | None = None) -> str:
        """``speed/share`` verdicts: ``off`` (a :func:`time_pair` part, checks off) against
        ``limit``, ``share`` (a :func:`check_share` result) against ``SHARE_LIMIT``; one word
        without ``share``."""
        v = verdict(off, limit)
        if not v.startswith("ok"):
            self.slow.append(row)
        if share is None:
            return v
        v_share = verdict(share, SHARE_LIMIT, "OVER")
        if not v_share.startswith("ok"):
            self.over.append(row)
        return f"{v}/{v_share}"

    def summary(self) -> str:
        return (f"over the speed bound (checks off): {', '.join(self.slow) or 'none'}; "
                f"check share over {SHARE_LIMIT:.0%}: {', '.join(self.over) or 'none'}")


def ratio_cells(res: dict | None) -> str:
    """``ratio  q1-q3`` of a :func:`time_pair` result (or its ``"off"`` part), blank if None."""
    if res is None:
        return f"{'':>6} {'':>11}"
    return f"{res['ratio']:>6.2f} {res['q1']:>5.2f}-{res['q3']:<5.2f}"


def check_cells(res: dict, share: dict | None) -> str:
    """``check us  share%  q1-q3%`` of a :func:`time_pair` result and its :func:`check_share`
    (the share cells blank without one)."""
    us = f"{res['check']['seconds'] * 1e6:>8.1f}"
    if share is None:
        return f"{us} {'':>7} {'':>13}"
    iqr = f"{share['q1'] * 100:.3f}-{share['q3'] * 100:.3f}%"
    return f"{us} {share['ratio'] * 100:>6.3f}% {iqr:>13}"
