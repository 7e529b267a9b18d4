"""``lfakit.losses.check`` / ``lfakit check-loss``: every library loss passes what the library's
tests demand of a loss; deliberately broken losses fail, and the failing check is named."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import lfakit.losses as L
from lfakit.cli import main
from lfakit.losses._check import CHECKS

LIBRARY = [n for t in L.TASKS for n in L.available(t)]


@pytest.mark.parametrize("name", LIBRARY)
def test_every_library_loss_passes(name):
    report = L.check(name, verbose=False, timing=False)
    assert report.ok, str(report)
    assert [v.check for v in report.verdicts] == list(CHECKS)
    assert report["CPU cost"].status == "skip"


def test_the_cpu_cost_is_measured_against_the_tasks_reference(capsys):
    report = L.check("zlpr", repeats=5)
    out = capsys.readouterr().out
    assert report.ok and report["CPU cost"].status in ("pass", "warn")
    assert "x bce (" in report["CPU cost"].detail
    assert out.splitlines()[0] == "check-loss zlpr (multilabel)"
    assert len([line for line in out.splitlines() if line.startswith("  PASS") or line.startswith("  WARN")]) == 7
    assert out.splitlines()[-1] == "verdict: PASS (7 checks)"


# ------------------------------------------------------------------------------ broken losses


class _Base(nn.Module):
    task = "multiclass"

    def __init__(self, reduction: str = "mean"):
        super().__init__()
        if reduction not in ("none", "mean", "sum"):
            raise ValueError(f"reduction must be none, mean or sum, got {reduction!r}")
        self.reduction = reduction

    def reduce(self, v):
        return v.mean() if self.reduction == "mean" else v.sum() if self.reduction == "sum" else v


class NaiveSoftmaxCE(_Base):
    """-log(softmax) computed as exp / sum exp: NaN (inf / inf) at large logits."""

    def forward(self, z, y):
        p = torch.exp(z) / torch.exp(z).sum(1, keepdim=True)
        return self.reduce(-torch.log(p.gather(1, y[:, None]).squeeze(1)))


class SumForMean(_Base):
    """reduction='mean' returns the sum."""

    def forward(self, z, y):
        v = F.cross_entropy(z, y, reduction="none")
        return v.sum() if self.reduction in ("mean", "sum") else v


class StepLoss(_Base):
    """0/1 error through a hard step: its gradient is zero everywhere."""

    def forward(self, z, y):
        margin = z.gather(1, y[:, None]).squeeze(1) - z.amax(1)
        return self.reduce((margin < 0).to(z.dtype) + 0 * margin)


class StraightThrough(_Base):
    """A rounded value with the identity's gradient: the backward is not the value's derivative."""

    def forward(self, z, y):
        r = z + (torch.round(z) - z).detach()
        return self.reduce(F.cross_entropy(r, y, reduction="none"))


class Noisy(_Base):
    """Adds fresh noise on every call."""

    def forward(self, z, y):
        return self.reduce(F.cross_entropy(z, y, reduction="none") + 1e-3 * torch.rand(len(y), dtype=z.dtype))


class Broadcasts(nn.Module):
    """Multi-label BCE written with broadcasting and no shape check."""

    task = "multilabel"

    def __init__(self, reduction: str = "mean"):
        super().__init__()
        self.reduction = reduction

    def forward(self, z, y):
        v = torch.clamp(z, min=0) - z * y + torch.log1p(torch.exp(-z.abs()))
        return v.mean() if self.reduction == "mean" else v.sum() if self.reduction == "sum" else v


@pytest.mark.parametrize("cls,check,words", [
    (NaiveSoftmaxCE, "extreme logits", "at |z| = 10000"),
    (SumForMean, "reductions", "reduction='mean' gives"),
    (StepLoss, "float64 gradcheck", "gradient is zero everywhere"),
    (StraightThrough, "float64 gradcheck", "analytical and numerical gradients differ"),
    (Noisy, "determinism", "different values"),
    (Broadcasts, "shapes and dtypes", "not refused"),
])
def test_a_broken_loss_fails_naming_the_check(cls, check, words, capsys):
    report = L.check(cls, timing=False)
    out = capsys.readouterr().out
    assert not report.ok and check in report.failed, str(report)
    assert words in report[check].detail
    assert f"  FAIL  {check}" in out and out.splitlines()[-1].startswith("verdict: FAIL")


def test_a_loss_without_a_gradient_fails_every_gradient_check():
    class NoGrad(_Base):
        def forward(self, z, y):
            return self.reduce((z.argmax(1) != y).to(z.dtype))

    report = L.check(NoGrad, timing=False, verbose=False)
    assert {"float64 gradcheck", "extreme logits", "determinism"} <= set(report.failed)
    assert "no gradient flows" in report["float64 gradcheck"].detail


def test_a_registered_loss_is_checked_by_name():
    L.register("naive_ce", NaiveSoftmaxCE, task="multiclass")
    try:
        assert main(["check-loss", "naive_ce", "--no-timing"]) == 1
        assert main(["check-loss", "ce", "--no-timing", "--kwargs", "{label_smoothing: 0.1}"]) == 0
        assert main(["check-loss", f"{__name__}:NaiveSoftmaxCE", "--no-timing"]) == 1
    finally:
        L.unregister("naive_ce")


def test_check_loss_cli_in_a_process():
    out = subprocess.run([sys.executable, "-m", "lfakit.cli", "check-loss", "fidelity"], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "check-loss fidelity (iqa)" in out.stdout and "x l1 (" in out.stdout
    bad = subprocess.run([sys.executable, "-m", "lfakit.cli", "check-loss", "fidelty"], capture_output=True,
                         text=True, timeout=120)
    assert bad.returncode == 2 and "Did you mean: 'fidelity'" in bad.stderr
