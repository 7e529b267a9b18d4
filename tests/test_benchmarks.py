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
    check = res["check"]
    assert len(check["rounds"]) == 4 and check["q1"] <= check["seconds"] <= check["q3"]


def test_time_pair_check_is_the_cost_of_what_only_the_checked_side_does():
    # a "loss" that does extra work only while the value checks are on: the measured check
    # cost is that work's cost (positive, and a clear share of the call), the off ratio ~ 1
    x = torch.ones(64, requires_grad=True)
    y = torch.ones(64)
    busy = torch.randn(200, 200)

    def loss(a, b):
        if L.value_checks_enabled():
            for _ in range(5):
                busy @ busy
        return (a * b).sum()

    def plain(a, b):
        return (a * b).sum()

    res = _timing.time_pair(loss, plain, x, y, rounds=5, block=5e-3, warmup=2, ours_off=loss)
    assert res["check"]["seconds"] > 0.5 * (res["ours"] - res["ref"]) > 0
    assert res["off"]["ratio"] < 0.5 * res["ratio"]


def test_check_share_and_its_verdict():
    res = {"check": {"seconds": 2e-5, "q1": 1e-5, "q3": 3e-5}}
    share = _timing.check_share(res, step=4e-3)
    assert share == pytest.approx({"ratio": 0.005, "q1": 0.0025, "q3": 0.0075})
    assert _timing.verdict(share, _timing.SHARE_LIMIT, "OVER") == "ok"
    over = _timing.check_share(res, step=1e-3)
    assert _timing.verdict(over, _timing.SHARE_LIMIT, "OVER") == "OVER?"  # q1 = 1% <= bound
    cells = _timing.check_cells({"check": res["check"]}, share)
    assert "20.0" in cells and "0.500%" in cells and "0.250-0.750%" in cells


def test_training_step_updates_the_model_and_is_timed():
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    before = model.weight.detach().clone()
    calls = []

    def loss_fn(out, y):
        calls.append(out.shape)
        return torch.nn.functional.cross_entropy(out, y)

    step = _timing.training_step(model, loss_fn, torch.randn(8, 4), torch.randint(0, 3, (8,)))
    seconds = _timing.step_seconds(step, rounds=3, block=1e-4, warmup=1)
    assert seconds > 0
    assert len(calls) >= 1 + 3 and set(calls) == {torch.Size([8, 3])}
    assert not torch.equal(model.weight.detach(), before)  # AdamW stepped


def test_verdict():
    assert _timing.verdict({"ratio": 1.05, "q1": 1.0, "q3": 1.08}) == "ok"
    assert _timing.verdict({"ratio": 1.12, "q1": 1.11, "q3": 1.2}) == "SLOW"
    assert _timing.verdict({"ratio": 1.09, "q1": 1.0, "q3": 1.2}) == "ok?"


def test_tally_lists_rows_over_the_bounds():
    ok = {"ratio": 1.0, "q1": 0.9, "q3": 1.05}
    slow = {"ratio": 1.3, "q1": 1.2, "q3": 1.4}
    small = {"ratio": 0.001, "q1": 0.0005, "q3": 0.002}
    big = {"ratio": 0.02, "q1": 0.015, "q3": 0.03}
    t = _timing.Tally()
    assert t.judge("a", ok, share=small) == "ok/ok"
    assert t.judge("b", slow, share=small) == "SLOW/ok"
    assert t.judge("c", ok, share=big) == "ok/OVER"
    assert t.judge("d", slow) == "SLOW"
    assert t.summary() == ("over the speed bound (checks off): b, d; "
                           "check share over 1%: c")


@pytest.mark.parametrize("script,row,share", [
    ("bench_losses_multilabel.py", "bce", True),
    ("bench_losses_multiclass.py", "ce", True),
    ("bench_losses_iqa.py", "l1", False),
])
def test_loss_benchmark_scripts_run(script, row, share):
    out = subprocess.run(
        [sys.executable, str(BENCH / script), "--rounds", "3", "--block", "0.001",
         "--step-rounds", "2", "--only", row],
        capture_output=True, text=True, timeout=300, check=True,
    ).stdout
    lines = [line for line in out.splitlines() if line.startswith(row + " ")]
    assert len(lines) == 1, out
    verdicts = lines[0].split()
    if share:  # both verdicts: speed (checks off) / check share of a smoke training step
        assert any(v.count("/") == 1 and v.split("/")[0].rstrip("?") in ("ok", "SLOW")
                   and v.split("/")[1].rstrip("?") in ("ok", "OVER") for v in verdicts), out
        assert "%" in lines[0]
        assert "one training step of the smoke model" in out and " ms (bound 1%)" in out
    else:
        assert any(v.rstrip("?") in ("ok", "SLOW") for v in verdicts), out
