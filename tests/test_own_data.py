"""own_data: every layout read, split and trained end to end with a registered user loss; bad
layouts stop with a clear message before a run folder is made."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch.nn.functional as F
from torch import nn

import lfakit.losses as L
from lfakit import params, runner
from lfakit.data import folders
from lfakit.errors import DataError, ParameterError


def _img(path: Path, value: int, rng) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    px = np.clip(rng.normal(value, 20, (12, 12, 3)), 0, 255).astype(np.uint8)
    cv2.imwrite(str(path), px)
    return path.name


def image_folder(root: Path, splits: bool, n: int = 12, classes=("cat", "dog", "owl")) -> Path:
    rng = np.random.default_rng(0)
    for k, c in enumerate(classes):
        for s, m in ((("train", n), ("val", 4), ("test", 4)) if splits else ((None, n),)):
            for i in range(m):
                _img(root / (s or "") / c / f"{i}.png", 40 + 80 * k, rng)
    return root


def csv_layout(root: Path, kind: str, n: int = 40) -> Path:
    rng = np.random.default_rng(1)
    lines = []
    labs = ("A", "B", "C")
    for i in range(n):
        on = [j for j in range(3) if (i >> j) & 1 or (i % 5 == j)] or [i % 3]
        _img(root / "img" / f"{i}.png", 30 + 60 * len(on), rng)
        if kind == "multiclass":
            lines.append(f"img/{i}.png,{labs[i % 3]}")
        elif kind == "multilabel_sep":
            lines.append(f"img/{i}.png,{'|'.join(labs[j] for j in on)}")
        elif kind == "multilabel_cols":
            lines.append(f"img/{i}.png," + ",".join("1" if j in on else "0" for j in range(3)))
        else:
            lines.append(f"img/{i}.png,{1 + len(on) + 0.1 * (i % 7):.2f},0.5")
    head = {"multiclass": "path,label", "multilabel_sep": "path,label", "multilabel_cols": "path,A,B,C",
            "score": "path,score,sd"}[kind]
    (root / "index.csv").write_text(head + "\n" + "\n".join(lines) + "\n")
    return root


class HingeCE(nn.Module):
    """A user's multi-class loss."""

    def __init__(self, w: float = 0.5, reduction: str = "mean"):
        super().__init__()
        if reduction not in ("none", "mean", "sum"):
            raise ValueError(reduction)
        self.w, self.reduction = w, reduction

    def forward(self, z, y):
        v = F.cross_entropy(z, y, reduction="none") + self.w * F.multi_margin_loss(z, y, reduction="none")
        return v.mean() if self.reduction == "mean" else v.sum() if self.reduction == "sum" else v


class SoftBCE(nn.Module):
    def __init__(self, reduction: str = "mean"):
        super().__init__()
        self.reduction = reduction

    def forward(self, z, y):
        return F.binary_cross_entropy_with_logits(z, y.to(z.dtype), reduction=self.reduction)


class Huber(nn.Module):
    def __init__(self, reduction: str = "mean"):
        super().__init__()
        self.reduction = reduction

    def forward(self, p, q, std=None):
        return F.huber_loss(p.reshape(-1), q.reshape(-1).to(p.dtype), reduction=self.reduction)


@pytest.fixture(scope="module")
def user_losses():
    for name, cls, task in (("hinge_ce", HingeCE, "multiclass"), ("soft_bce", SoftBCE, "multilabel"),
                            ("huber", Huber, "iqa")):
        L.register(name, cls, task=task, replace=True)
    yield
    for name in ("hinge_ce", "soft_bce", "huber"):
        L.unregister(name)


def _params(**kw) -> dict:
    return params.validate("own_data", {**params.defaults("own_data"), "epochs": 1, "batch_size": 16, "n_boot": 200,
                                        **kw})


def _run(P: dict, tmp_path: Path):
    from lfakit.experiments import own_data as E

    P = {**P, "run_dir": str(tmp_path / "run"), "cache_dir": str(tmp_path / "cache")}
    run_dir = E.setup(P)
    data = E.load_data(P)
    runs = E.train_all(P, data, run_dir)
    ev = E.evaluate(P, runs, data)
    T = E.tables(P, ev)
    E.figures(P, ev, runs, run_dir)
    files = E.save(P, run_dir, runs, ev, data, T)
    return data, T, files


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["folder", "folder_splits", "csv_multiclass", "multilabel_sep", "multilabel_cols",
                                    "score"])
def test_every_layout_end_to_end_with_a_user_loss(layout, tmp_path, user_losses):
    root = tmp_path / "data"
    if layout.startswith("folder"):
        image_folder(root, splits=layout == "folder_splits")
        kw = {"task": "multiclass", "losses": ["ce", "hinge_ce"], "baseline": "ce"}
    elif layout == "csv_multiclass":
        csv_layout(root, "multiclass")
        kw = {"task": "multiclass", "csv": "index.csv", "losses": ["ce", "hinge_ce"], "baseline": "ce"}
    elif layout.startswith("multilabel"):
        csv_layout(root, layout)
        kw = {"task": "multilabel", "csv": "index.csv", "losses": ["bce", "soft_bce"], "baseline": "bce",
              "label_columns": ["A", "B", "C"] if layout == "multilabel_cols" else []}
    else:
        csv_layout(root, "score")
        kw = {"task": "score", "csv": "index.csv", "sd_column": "sd", "losses": ["l1", "huber"], "baseline": "l1",
              "monitor": "val_srcc"}
    # a torchvision model by name, built without weights (resnet18 for classification, mobilenet's Linear head for scores)
    P = _params(data_dir=str(root), image_size=32, model="resnet18" if layout != "score" else "mobilenet_v3_small",
                precision="float32", **kw)
    data, T, files = _run(P, tmp_path)
    assert "metrics.json" in files and "comparison" in T
    if layout == "folder_splits":
        assert {s: len(sp.image_ids) for s, sp in data.splits.items()} == {"train": 36, "val": 12, "test": 12}
    if layout.startswith("multilabel"):
        assert data.classes == ["A", "B", "C"]
    comp = T["comparison"]
    assert "p (Holm)" in comp.columns and "Winner" not in comp.columns


def test_the_embedded_default_learns(tmp_path):
    from lfakit.experiments import own_data as E

    P = _params(epochs=3, losses=["ce", "focal_ce"], max_images=600)
    data, T, _ = _run(P, tmp_path)
    assert len(data.classes) == 10 and (tmp_path / "cache" / "own_data" / "digits_imagefolder" / "9").is_dir()
    assert (T["overall"]["Accuracy"] > 0.5).all(), T["overall"]
    assert "no Winner" in E.comparison_note(P) and "these two models" in E.comparison_note(P)


# ------------------------------------------------------------------------------ bad layouts


def _refused(tmp_path, monkeypatch, match, **kw):
    """``lfakit run own_data -p ...`` stops with the message (exit 2) and leaves no run folder."""
    import re

    import yaml

    from lfakit.cli import main

    results = tmp_path / "results"
    monkeypatch.setenv("LFAKIT_RESULTS", str(results))
    with pytest.raises((DataError, ParameterError), match=match):  # the step itself
        runner.preflight("own_data", params.validate("own_data", {**params.defaults("own_data"), **kw}))
    argv = ["run", "own_data", "-q"] + [a for k, v in kw.items() for a in ("-p", f"{k}={yaml.safe_dump(v, default_flow_style=True).strip().removesuffix('...').strip()}")]
    import contextlib
    import io

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert main(argv) == 2
    assert re.search(match, err.getvalue()), err.getvalue()
    assert not (results / "own_data").exists()


def test_an_empty_class_folder_is_refused(tmp_path, monkeypatch):
    root = image_folder(tmp_path / "d", splits=False)
    (root / "emu").mkdir()
    _refused(tmp_path, monkeypatch, r"class folder\(s\) emu .* hold no image", data_dir=str(root))


def test_a_csv_that_does_not_exist_is_refused(tmp_path, monkeypatch):
    _refused(tmp_path, monkeypatch, "CSV file .*nope.csv does not exist", data_dir=str(tmp_path), csv="nope.csv")


def test_a_missing_image_is_refused(tmp_path, monkeypatch):
    root = csv_layout(tmp_path / "d", "multiclass")
    (root / "img" / "3.png").unlink()
    _refused(tmp_path, monkeypatch, r"1 of 40 image file\(s\) do not exist .*img/3.png", data_dir=str(root),
             csv="index.csv")


def test_a_label_column_with_one_value_is_refused(tmp_path, monkeypatch):
    root = csv_layout(tmp_path / "d", "multiclass")
    lines = (root / "index.csv").read_text().splitlines()
    (root / "index.csv").write_text("\n".join([lines[0]] + [ln.rsplit(",", 1)[0] + ",cat" for ln in lines[1:]]))
    _refused(tmp_path, monkeypatch, "holds one value \\('cat'\\) in all 40 rows", data_dir=str(root), csv="index.csv")


def test_a_score_column_with_text_is_refused(tmp_path, monkeypatch):
    root = csv_layout(tmp_path / "d", "score")
    text = (root / "index.csv").read_text().replace("img/5.png,", "img/5.png,good").splitlines()
    (root / "index.csv").write_text("\n".join(text))
    _refused(tmp_path, monkeypatch, "score column 'score' holds text .* line\\(s\\) 7", data_dir=str(root),
             csv="index.csv", task="score", losses=["l1"], baseline="l1")


def test_a_multilabel_column_with_one_value_and_a_wrong_task_loss_are_refused(tmp_path, monkeypatch):
    root = csv_layout(tmp_path / "d", "multilabel_cols")
    lines = (root / "index.csv").read_text().splitlines()
    (root / "index.csv").write_text("\n".join([lines[0]] + [ln[:-1] + "1" for ln in lines[1:]]))
    _refused(tmp_path, monkeypatch, r"label\(s\) C hold one value", data_dir=str(root), csv="index.csv",
             task="multilabel", label_columns=["A", "B", "C"], losses=["bce"], baseline="bce")
    with pytest.raises(ParameterError, match="task='multilabel' trains multilabel losses; 'ce' is multiclass"):
        params.validate("own_data", {**params.defaults("own_data"), "task": "multilabel", "csv": "x.csv",
                                     "data_dir": str(root), "losses": ["ce"], "baseline": "ce"})


def test_iterative_stratification_keeps_label_shares():
    rng = np.random.default_rng(0)
    y = (rng.random((300, 4)) < np.array([0.05, 0.2, 0.4, 0.7])).astype(np.float32)
    idx = folders.Index("multilabel", [Path(f"{i}") for i in range(300)], [str(i) for i in range(300)], y,
                        list("abcd"), None)
    rows = folders.split_index(idx, 0.2, 0.2, seed=3)
    assert sum(len(r) for r in rows.values()) == 300
    for s, r in rows.items():
        share = y[r].sum(0) / y.sum(0)
        assert np.all(np.abs(share - len(r) / 300) < 0.07), (s, share)


@pytest.mark.slow
@pytest.mark.parametrize("task", ["multiclass", "score"])
def test_a_sweep_over_seeds_of_own_data_is_compared_like_any_other(task, tmp_path):
    """``lfakit sweep own_data --seeds 0,1`` and ``lfakit compare`` on it: a seed-level verdict table
    (AUROC for a classification task, SRCC for task=score, chosen without --metric)."""
    import os
    import subprocess
    import sys

    root = image_folder(tmp_path / "data", splits=False) if task == "multiclass" else csv_layout(tmp_path / "data", "score")
    env = {**os.environ, "LFAKIT_RESULTS": str(tmp_path / "results"), "LFAKIT_CACHE": str(tmp_path / "cache")}
    extra = ["-g", f"task={task}", "-g", f"data_dir={root}", "-g", "epochs=1", "-g", "image_size=12"]
    extra += ["-g", "losses=[ce, focal_ce]", "-g", "baseline=ce"] if task == "multiclass" else \
        ["-g", "losses=[l1, l2]", "-g", "baseline=l1", "-g", "csv=index.csv"]
    sw = subprocess.run([sys.executable, "-m", "lfakit.cli", "sweep", "own_data", "--seeds", "0,1", "-q", *extra],
                        capture_output=True, text=True, env=env)
    assert sw.returncode == 0, sw.stderr[-3000:]
    sweeps = [d for d in (tmp_path / "results" / "own_data" / "sweeps").iterdir() if not d.name.startswith(".")]
    cp = subprocess.run([sys.executable, "-m", "lfakit.cli", "compare", str(sweeps[0])], capture_output=True, text=True,
                        env=env)
    assert cp.returncode == 0, cp.stderr[-3000:]
    metric = "AUROC" if task == "multiclass" else "SRCC"
    challenger = "focal_ce" if task == "multiclass" else "l2"
    assert cp.stdout.startswith(f"own_data: {metric} vs {'ce' if task == 'multiclass' else 'l1'}")
    row = next(line for line in cp.stdout.splitlines() if line.startswith(f"| {challenger} "))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == "2" and cells[7].startswith("seeds (")  # two seeds, the seed-level test (untestable: too few labels)


# ------------------------------------------------------------------------------ the general steps


@pytest.mark.slow
def test_seeds_give_the_seed_level_comparison_of_the_study_experiments(tmp_path, user_losses):
    """own_data trains and compares through the steps chestxray_zlpr calls: with seeds=[0, 1] every
    loss has a model per seed (files tagged _seed<k>), the comparison is the seed-level t with a
    Winner column, and the note says two models per loss."""
    from lfakit.experiments import own_data as E

    root = image_folder(tmp_path / "data", splits=False)
    P = _params(data_dir=str(root), image_size=12, losses=["ce", "hinge_ce"], baseline="ce", seeds=[0, 1], augment=True)
    data, T, files = _run(P, tmp_path)
    assert {"predictions/ce_seed0.npz", "predictions/hinge_ce_seed1.npz"} <= set(files)
    comp = T["comparison"]
    assert set(comp["Test"]) <= {"seed-level t"} | {t for t in comp["Test"] if t.startswith("not tested")}
    assert "Winner" in comp.columns and (comp["Seeds"] == 2).all()
    assert "2 trained models per loss (seeds [0, 1])" in E.comparison_note(P)
    assert "Threshold, seed mean" in T["per_class_ce"].columns and "Threshold" not in T["per_class_ce"].columns


def test_the_training_split_is_predicted_without_augmentation():
    """The general dataset step: the augmented split is trained on, the plain one predicted."""
    from lfakit.experiments import steps

    x, y = np.zeros((4, 8, 8), np.uint8), np.zeros((4, 2), np.float32)
    train_on, predict_on = steps.image_datasets({"augment": True}, {"train": (x, y), "val": (x, y)}, 1)
    assert train_on["train"].augment and not predict_on["train"].augment and not train_on["val"].augment
    train_on, predict_on = steps.image_datasets({"augment": False}, {"train": (x, y)}, 1)
    assert not train_on["train"].augment


@pytest.mark.slow
def test_the_score_task_passes_the_ratings_sd_to_the_fidelity_loss(tmp_path, monkeypatch):
    """The CSV's sd column reaches the loss as ``std`` (the fidelity loss's Thurstone probability
    uses it), as KonIQ-10k's SD does in iqa_losses; the metrics and comparison are iqa_losses'."""
    seen = []
    root = csv_layout(tmp_path / "data", "score")
    built = L.build("fidelity")
    orig = type(built).forward

    def spy(self, p, q, std=None, **kw):
        seen.append(std is not None and bool((std == 0.5).all()))  # the layout's sd column: 0.5
        return orig(self, p, q, std=std, **kw)

    monkeypatch.setattr(type(built), "forward", spy)
    P = _params(task="score", data_dir=str(root), csv="index.csv", sd_column="sd", image_size=12,
                losses=["l1", "fidelity"], baseline="l1", monitor="val_srcc")
    data, T, files = _run(P, tmp_path)
    assert seen and all(seen)
    assert list(T["overall"].columns) == ["SRCC", "KRCC", "PLCC (raw)", "PLCC (logistic)", "RMSE (logistic)",
                                          "Logistic fit"]
    assert T["comparison"]["Test"].iloc[0] == "paired bootstrap, test set only"
    import pandas as pd

    written = pd.read_csv(tmp_path / "run" / "tables" / "overall.csv")
    assert list(written.iloc[:, 0]) == ["l1", "fidelity"]  # the loss names kept in the CSV


def test_seeds_for_the_score_task_are_refused_with_the_sweep_to_use(tmp_path, monkeypatch):
    root = csv_layout(tmp_path / "data", "score", n=12)
    with pytest.raises(ParameterError, match="lfakit sweep own_data --seeds"):
        _params(task="score", data_dir=str(root), csv="index.csv", losses=["l1", "l2"], baseline="l1", seeds=[0, 1])
    with pytest.raises(ParameterError, match="seeds is for the classification tasks"):  # one seed would be ignored
        _params(task="score", data_dir=str(root), csv="index.csv", losses=["l1", "l2"], baseline="l1", seeds=[5])


class NaNScore(nn.Module):
    """A score loss that diverges at once."""

    def __init__(self, reduction: str = "mean"):
        super().__init__()
        self.reduction = reduction

    def forward(self, p, q, std=None):
        return (p.reshape(-1) * float("nan")).mean()


@pytest.mark.slow
def test_a_score_run_where_one_loss_diverges_compares_the_others_and_all_diverging_stops(tmp_path, monkeypatch):
    from lfakit.errors import TrainingError
    from lfakit.experiments import own_data as E

    L.register("nan_score", NaNScore, task="iqa", replace=True)
    try:
        root = csv_layout(tmp_path / "data", "score")
        P = _params(task="score", data_dir=str(root), csv="index.csv", image_size=12, losses=["l1", "nan_score"],
                    baseline="l1", monitor="val_srcc")
        data, T, files = _run(P, tmp_path)
        assert T["overall"].loc["nan_score", "Logistic fit"] == "n/a" and np.isnan(T["comparison"]["p (test set)"]).all()
        P = {**P, "losses": ["nan_score"], "baseline": "nan_score", "run_dir": str(tmp_path / "run2")}
        with pytest.raises(TrainingError, match="every loss failed to train: nan_score: failed"):
            E.train_all(P, E.load_data({**P, "cache_dir": str(tmp_path / "cache")}), tmp_path / "run2")
    finally:
        L.unregister("nan_score")
