"""The loss benchmarks' timing harness and scripts (not their timings: those are printed by
``make bench``, never asserted)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

import lfakit.losses as L

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))
import _timing  # noqa: E402


def test_time_pair_runs_the_off_side_with_value_checks_off():
    seen = {"ours": set(), "ref": set(), "off": set()}

    def recorder(side):
        def fn(x, y):
            seen[side].add(L.value_checks_enabled())
            return (x * y).sum()

        return fn

    x = torch.ones(3, requires_grad=True)
    res = _timing.time_pair(recorder("ours"), recorder("ref"), x, torch.ones(3), rounds=4,
                            block=1e-4, warmup=1, ours_off=recorder("off"))
    assert seen == {"ours": {True}, "ref": {True}, "off": {False}}
    assert L.value_checks_enabled()
    for part in (res, res["off"]):
        assert part["ours"] > 0 and part["ref"] > 0 and part["q1"] <= part["ratio"] <= part["q3"]


def test_verdict():
    assert _timing.verdict({"ratio": 1.05, "q1": 1.0, "q3": 1.08}) == "ok"
    assert _timing.verdict({"ratio": 1.12, "q1": 1.11, "q3": 1.2}) == "SLOW"
    assert _timing.verdict({"ratio": 1.09, "q1": 1.0, "q3": 1.2}) == "ok?"


def test_tally_lists_rows_over_the_bound_on_and_off():
    ok = {"ratio": 1.0, "q1": 0.9, "q3": 1.05}
    slow = {"ratio": 1.3, "q1": 1.2, "q3": 1.4}
    t = _timing.Tally()
    assert t.judge("a", {**ok, "off": ok}) == "ok/ok"
    assert t.judge("b", {**slow, "off": ok}) == "SLOW/ok"
    assert t.judge("c", {**ok, "off": slow}) == "ok/SLOW"
    assert t.judge("d", slow) == "SLOW"
    assert t.summary() == "value checks on: b, d; off: c"


@pytest.mark.parametrize("script,row", [
    ("bench_losses_multilabel.py", "bce"),
    ("bench_losses_multiclass.py", "ce"),
    ("bench_losses_iqa.py", "l1"),
])
def test_loss_benchmark_scripts_run(script, row):
    out = subprocess.run(
        [sys.executable, str(BENCH / script), "--rounds", "3", "--block", "0.001", "--only", row],
        capture_output=True, text=True, timeout=300, check=True,
    ).stdout
    lines = [line for line in out.splitlines() if line.startswith(row + " ")]
    assert len(lines) == 1, out
    assert "/" in lines[0]  # both verdicts: value checks on / off
