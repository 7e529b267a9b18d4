"""A user's loss: ``lfakit.losses.register`` from a notebook cell, and the ``lfakit.losses``
entry-point group through which an installed package's losses reach ``lfakit run``, sweeps and
their workers by name (a throwaway package written as a ``.dist-info`` on PYTHONPATH)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import lfakit.losses as L
from lfakit.catalog import LOSSES, loss_names
from lfakit.errors import ParameterError
from lfakit.params import check_loss_kwargs, loss_choices
from lfakit.schemas._loss_args import LOSS_ARGS, num


class MarginCE(nn.Module):
    """Cross-entropy with a subtracted true-class margin (a user's multi-class loss)."""

    def __init__(self, margin: float = 0.5, scale_by_k: bool = False, reduction: str = "mean"):
        super().__init__()
        self.margin, self.scale_by_k, self.reduction = margin, scale_by_k, reduction

    def forward(self, logits, targets):
        z = logits - self.margin * F.one_hot(targets, logits.shape[1]).to(logits.dtype)
        return F.cross_entropy(z, targets, reduction=self.reduction)


@pytest.fixture
def margin_ce():
    yield L.register("margin_ce", MarginCE, task="multiclass")
    if "margin_ce" in LOSSES:
        L.unregister("margin_ce")


def test_a_registered_loss_is_built_listed_and_checked_by_name(margin_ce):
    assert "margin_ce" in L.available("multiclass") and "margin_ce" not in L.available("multilabel")
    assert "margin_ce" in loss_choices("multiclass")() and "margin_ce" not in loss_choices("iqa")()
    assert L.task_of("margin_ce") == "multiclass" and LOSSES.meta("margin_ce")["user"]
    loss = L.build("margin_ce", margin=1.0)
    z, y = torch.randn(5, 3, dtype=torch.float64), torch.tensor([0, 1, 2, 0, 1])
    want = F.cross_entropy(z - F.one_hot(y, 3).double(), y)
    torch.testing.assert_close(loss(z, y), want)
    assert type(loss).registry_name == "margin_ce"
    # its arguments are checked without building it, as the library's are
    assert check_loss_kwargs({"margin_ce": {"margin": 2.0, "scale_by_k": True}}) is None
    assert "Did you mean: 'margin'" in check_loss_kwargs({"margin_ce": {"margni": 2.0}})
    assert "margin must be a number" in check_loss_kwargs({"margin_ce": {"margin": "big"}})
    assert "scale_by_k must be True or False" in check_loss_kwargs({"margin_ce": {"scale_by_k": 1}})
    assert "reduction must be one of" in check_loss_kwargs({"margin_ce": {"reduction": "avg"}})
    with pytest.raises(ParameterError, match="no argument 'gamma'"):
        L.build("margin_ce", gamma=1.0)


def test_register_refuses_what_it_cannot_train(margin_ce):
    with pytest.raises(ParameterError, match="already registered"):
        L.register("margin_ce", MarginCE, task="multiclass")
    L.register("margin_ce", MarginCE, task="multiclass", args={"margin": num(0)}, replace=True)  # a cell run again
    assert "margin must be >= 0" in check_loss_kwargs({"margin_ce": {"margin": -1.0}})
    with pytest.raises(ParameterError, match="library's losses"):
        L.register("focal", MarginCE, task="multilabel", replace=True)
    with pytest.raises(ParameterError, match="task must be one of multilabel, multiclass, iqa"):
        L.register("other", MarginCE, task="regression")
    with pytest.raises(ParameterError, match="nn.Module subclass"):
        L.register("other", lambda z, y: z.sum(), task="multiclass")

    class NoDefault(nn.Module):
        def __init__(self, k):
            super().__init__()

    with pytest.raises(ParameterError, match="k has none"):
        L.register("other", NoDefault, task="multiclass")
    with pytest.raises(ParameterError, match="library's losses"):
        L.unregister("ce")
    assert "other" not in LOSSES and "other" not in LOSS_ARGS
    L.unregister("margin_ce")
    assert "margin_ce" not in loss_names() and "margin_ce" not in LOSS_ARGS


def test_the_atlas_draws_a_registered_loss_beside_the_librarys(margin_ce):
    from lfakit import atlas

    at = atlas.compute(["ce", "margin_ce"], {"margin_ce": {"margin": 1.0}}, pts=atlas.pt_grid(9))
    got = set(at.curves["loss"]) if "loss" in at.curves else set(at.curves.iloc[:, 0])
    assert {"ce", "margin_ce"} <= got
    assert "margin_ce" in atlas.loss_colors(["ce", "margin_ce"])
    from lfakit.schemas import loss_atlas
    from lfakit.params import defaults, validate

    p = validate("loss_atlas", {**defaults("loss_atlas"), "losses": ["ce", "margin_ce"], "tasks": ["multiclass"]})
    assert loss_atlas.check_params(p) is None


# ----------------------------------------------------------------------------- entry points

PLUGIN = '''
import torch
import torch.nn.functional as F
from torch import nn


class SoftF1Loss(nn.Module):
    """1 - soft F1 per label plus BCE (a user's multi-label loss)."""

    task = "multilabel"
    mean_over = "elements"
    output = "probability"

    def __init__(self, weight: float = 0.5, reduction: str = "mean"):
        super().__init__()
        self.weight, self.reduction = weight, reduction

    def forward(self, logits, targets):
        p = torch.sigmoid(logits)
        t = targets.to(logits.dtype)
        soft_f1 = 2 * p * t / (p + t + 1e-6)
        v = F.binary_cross_entropy_with_logits(logits, t, reduction="none") + self.weight * (1 - soft_f1)
        return v.mean() if self.reduction == "mean" else v.sum() if self.reduction == "sum" else v


class Broken(nn.Module):
    pass
'''


def write_plugin(root: Path, entries: dict[str, str], name: str = "lfakit_user_losses") -> Path:
    """A throwaway installed package: ``root/<name>/__init__.py`` and its ``.dist-info`` with
    the entry points, importable with ``root`` on ``sys.path`` / PYTHONPATH."""
    (root / name).mkdir(parents=True)
    (root / name / "__init__.py").write_text(PLUGIN)
    info = root / f"{name}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[lfakit.losses]\n" + "".join(f"{k} = {v}\n" for k, v in entries.items()))
    return root


def _env(site: Path, **extra) -> dict:
    path = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, **extra}


def test_entry_point_losses_are_found_by_name_in_a_new_process(tmp_path):
    site = write_plugin(tmp_path / "site", {"soft_f1": "lfakit_user_losses:SoftF1Loss",
                                           "broken": "lfakit_user_losses:Broken",
                                           "missing": "lfakit_user_losses:Nope",
                                           "focal": "lfakit_user_losses:SoftF1Loss"})
    code = textwrap.dedent("""
        import json, warnings
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            from lfakit.params import loss_choices, check_loss_kwargs
            names = loss_choices("multilabel")()
        import lfakit.losses as L
        loss = L.build("soft_f1", weight=1.0)
        print(json.dumps({"names": names, "warnings": [str(x.message) for x in w],
                          "task": L.task_of("soft_f1"), "registry_name": type(loss).registry_name,
                          "bad": check_loss_kwargs({"soft_f1": {"wieght": 1}}),
                          "focal": L.get("focal").__name__}))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(site), timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert "soft_f1" in got["names"] and got["task"] == "multilabel" and got["registry_name"] == "soft_f1"
    assert "Did you mean: 'weight'" in got["bad"]
    assert got["focal"] == "FocalLoss"  # a plugin cannot shadow the library's loss
    warned = "\n".join(got["warnings"])
    assert "broken" in warned and "task must be one of" in warned  # a class without a task: skipped, said why
    assert "missing" in warned and "Nope" in warned
    assert "'focal' is already a registered loss" in warned
    assert "broken" not in got["names"] and "missing" not in got["names"]


@pytest.mark.slow
def test_an_entry_point_loss_runs_in_a_sweep_and_compare(tmp_path):
    """Acceptance: a loss of a throwaway installed package, chosen by its name in a parameter,
    trains in a two-point sweep (each point a separate `lfakit run` process) and `lfakit
    compare` reads the sweep."""
    site = write_plugin(tmp_path / "site", {"soft_f1": "lfakit_user_losses:SoftF1Loss"})
    env = _env(site, LFAKIT_RESULTS=str(tmp_path / "results"))
    cmd = [sys.executable, "-m", "lfakit.cli", "sweep", "chestxray_zlpr", "--grid", "losses=[focal],[soft_f1]",
           "--grid", "epochs=1", "--grid", "synthetic_patients=120", "--grid", "image_size=32", "--workers", "1", "-q"]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    assert "2 points: 2 complete" in out.stdout
    sweep_dir = Path(out.stdout.strip().splitlines()[-1].split("sweep folder ")[-1])
    cmp = subprocess.run([sys.executable, "-m", "lfakit.cli", "compare", str(sweep_dir), "--n-boot", "200"],
                         capture_output=True, text=True, env=env, timeout=300)
    assert cmp.returncode == 0, cmp.stderr[-3000:]
    lines = cmp.stdout.splitlines()
    head = [c.strip() for c in next(line for line in lines if line.startswith("| Method")).strip("|").split("|")]
    row = dict(zip(head, (c.strip() for c in next(line for line in lines if line.startswith("| soft_f1")).strip("|").split("|"))))
    assert row["Seeds"] == "1" and row.get("Winner", "") != "soft_f1"  # one model per loss names no Winner
    doc = json.loads((sweep_dir / "comparison" / "auroc-vs-focal" / "comparison.json").read_text())
    assert len(doc["runs"]) == 2 and doc["baseline"] == "focal"
    # without the package the same parameter stops with the registry's error, before any run folder
    bare = subprocess.run([sys.executable, "-m", "lfakit.cli", "run", "chestxray_zlpr", "-p", "losses=[soft_f1]"],
                          capture_output=True, text=True, env={**os.environ, "LFAKIT_RESULTS": str(tmp_path / "r2")},
                          timeout=120)
    assert bare.returncode != 0 and "soft_f1" in bare.stderr
    assert not (tmp_path / "r2").exists()
