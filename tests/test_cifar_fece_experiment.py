"""cifar_fece: profiles, early errors, and tiny end-to-end runs.

Notebook / SCHEMA / profile consistency (shared by every experiment) is in test_params.py.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.special import expit

from lfakit import record, cli, runner
from lfakit.data import cifar
from lfakit.errors import DataError
from lfakit.experiments import cifar_fece as X
from lfakit.metrics.lfa import METRICS, per_class_metrics

from test_cifar_data import write_tiny_cifar

EXP = "cifar_fece"


def _runs(results_dir):
    d = results_dir / EXP
    return sorted(p.name for p in d.iterdir()) if d.exists() else []


# --------------------------------------------------------------------------- parameters


def test_smoke_runs_balanced_and_long_tailed_digits():
    p = runner.resolve_params(EXP, "smoke")
    assert p["dataset"] == "digits" and p["data_dir"] == ""
    assert 1 in p["imbalance_ratios"] and max(p["imbalance_ratios"]) > 1
    assert p["losses"] == ["bce", "focal", "asl", "exp_ce", "f_ece"] and p["baseline"] == "bce"


@pytest.mark.parametrize("profile, ratios", [("paper", [1]), ("lt", [100])])
def test_paper_and_lt_profiles_are_the_seed_configuration(profile, ratios):
    p = runner.resolve_params(EXP, profile)
    assert p["dataset"] == "cifar10" and p["imbalance_ratios"] == ratios
    assert (p["model"], p["optimizer"], p["lr"], p["weight_decay"], p["batch_size"], p["epochs"]) == (
        "resnet50", "adam", 1e-5, 1e-3, 100, 20)
    assert p["losses"] == ["bce", "focal", "asl", "exp_ce", "f_ece"] and p["baseline"] == "bce"
    assert p["seed"] == 42


@pytest.mark.parametrize(
    "args, message",
    [
        (["-p", "imbalance_ratios=[1, 0.5]"], "imbalance ratio must be a number >= 1"),
        (["-p", "imbalance_ratios=[]"], "must not be empty"),
        (["-p", "folds=1"], "use 0 .* or k >= 2 folds"),
        (["-p", "losses=[bce, f_ec]"], "Did you mean: 'f_ece'"),
        (["-p", "losses=[focal, asl]"], "baseline 'bce' is not among the trained losses"),
        (["-p", "data_dir=/somewhere"], "dataset is 'digits'"),
        (["-p", "pretrained=true"], "tiny_cnn has no pretrained weights"),
        (["-p", "dataset=cifar100"], "'cifar10'"),
    ],
)
def test_bad_parameters_fail_before_any_work(args, message, capsys, results_dir):
    before = _runs(results_dir)
    assert cli.main(["run", EXP, *args]) == 2
    err = capsys.readouterr().err
    assert re.search(message, err), err
    assert _runs(results_dir) == before


def test_paper_profile_without_cifar_stops_at_once_saying_where_data_goes(capsys, results_dir, tmp_path):
    """Checked by the CLI before a run folder is made or a kernel started (runner.preflight)."""
    missing = tmp_path / "cifar10"
    before = _runs(results_dir)
    assert cli.main(["run", EXP, "--profile", "paper", "-q", "-p", f"data_dir={missing}"]) == 2
    err = capsys.readouterr().err
    assert "cifar-10-batches-py" in err and "data_batch_1" in err and str(missing) in err
    assert "--profile smoke" in err
    assert _runs(results_dir) == before  # no run folder, no notebook


# --------------------------------------------------------------------------- models


def test_models_take_8px_digits_and_32px_cifar():
    P = runner.resolve_params(EXP, "smoke")
    f64 = dict(dtype=torch.float64)  # the smoke profile builds and trains in float64
    tiny = X.build_model(P, 10, channels=1)
    assert all(p.dtype == torch.float64 for p in tiny.parameters())
    assert tiny(torch.zeros(2, 1, 8, 8, **f64)).shape == (2, 10)
    big = X.build_model({**P, "model": "resnet50", "image_size": 0, "precision": "float32"}, 10, channels=3)
    assert big(torch.zeros(2, 3, 32, 32)).shape == (2, 10)  # 10 logits: the sigmoid head
    up = X.build_model({**P, "image_size": 16}, 10, channels=1)
    assert isinstance(up, X.ResizeInput) and up(torch.zeros(2, 1, 8, 8, **f64)).shape == (2, 10)


# --------------------------------------------------------------------------- end to end


def _tiny_params(tmp_path, **over):
    P = runner.resolve_params(EXP, "smoke", {"epochs": 1, "losses": ["bce", "f_ece"], "num_threads": 1, **over})
    P["run_dir"] = str(tmp_path / "run")
    return P


def _pipeline(P):
    run_dir = X.setup(P)
    data = X.load_data(P)
    runs = X.train_all(P, data, run_dir)
    ev = X.evaluate(P, runs, data)
    tabs = X.tables(P, ev)
    return run_dir, data, runs, ev, tabs


def test_cifar_format_data_through_the_pipeline_and_resume(tmp_path):
    write_tiny_cifar(tmp_path / "c10", per_batch=40, n_test=40)
    P = _tiny_params(tmp_path, dataset="cifar10", data_dir=str(tmp_path / "c10"), imbalance_ratios=[2],
                     image_size=16, batch_size=32)
    run_dir, data, runs, ev, tabs = _pipeline(P)
    assert X.input_channels(P, data.source) == 3
    assert data.classes == cifar.CIFAR10_CLASSES
    (splits,) = data.splits["2"]
    assert splits["test"].counts().sum() == 40
    assert (splits["train"].counts() + splits["val"].counts()).tolist() == cifar.long_tail_counts(20, 2)
    assert list(tabs["table2"]["loss"]) == ["bce", "f_ece"]
    assert set(tabs["significance_rho2"].columns) == {"f_ece"}
    # resume: the saved predictions are reloaded, not retrained
    again = X.train_all({**P, "resume": True}, data, run_dir)
    for name, r in runs["2"][0].items():
        np.testing.assert_array_equal(again["2"][0][name][P["seed"]].logits["test"], r[P["seed"]].logits["test"])


def test_missing_cifar_in_setup_is_a_data_error(tmp_path):
    P = _tiny_params(tmp_path, dataset="cifar10", data_dir=str(tmp_path / "none"))
    with pytest.raises(DataError, match="does not exist.*--profile smoke"):
        X.setup(P)
    assert not (tmp_path / "run").exists()


def test_kfold_averages_per_class_metrics_over_folds(tmp_path):
    P = _tiny_params(tmp_path, imbalance_ratios=[1], folds=2, digits_test_per_class=20)
    run_dir, data, runs, ev, tabs = _pipeline(P)
    assert len(data.splits["1"]) == 2 and [len(f) for f in runs["1"]] == [2, 2]
    frames = ev.per_fold["1"]["bce"]
    pd.testing.assert_frame_equal(ev.per_class["1"]["bce"][list(METRICS)], ((frames[0] + frames[1]) / 2)[list(METRICS)])
    assert set(tabs["folds"]["fold"]) == {1, 2}
    np.testing.assert_allclose(ev.probs_test["1"]["bce"], (expit(runs["1"][0]["bce"][P["seed"]].logits["test"]) + expit(runs["1"][1]["bce"][P["seed"]].logits["test"])) / 2)


@pytest.mark.slow
def test_run_folder_through_papermill_holds_tables_figures_and_recomputable_metrics(results_dir):
    before = set(_runs(results_dir))
    args = ["run", EXP, "-q", "-p", "epochs=1", "-p", "losses=[bce, f_ece]", "-p", "imbalance_ratios=[1, 5]",
            "-p", "digits_test_per_class=30", "-p", "num_threads=1"]
    assert cli.main(args) == 0
    (new,) = set(_runs(results_dir)) - before
    d = results_dir / EXP / new
    for f in ("notebook.ipynb", "params.yaml", "environment.json", "metrics.json", "predictions.npz",
              "tables/table2.csv", "tables/hard_classes_rho5.csv", "tables/comparison_rho1.csv",
              "figures/true_class_prob_test_rho5.png", "figures/true_class_prob_train_rho1.png",
              "figures/recall_vs_class_size.png"):
        assert (d / f).exists(), f
    r = record.load_run(d)
    assert r.extra["classes"] == list("0123456789")
    head = r.headline.set_index(["rho", "loss"])
    for rho in ("1", "5"):
        for loss in ("bce", "f_ece"):
            lm = r.methods[loss]["per_ratio"][rho]
            # the record's predictions alone reproduce metrics.json, with val thresholds and test metrics
            sel = {s: r.predictions.select(method=loss, split=s, group=f"rho={rho}/fold=1") for s in ("val", "test")}
            rep = per_class_metrics(sel["val"].targets[:, 0].astype(int), expit(sel["val"].scores),
                                    sel["test"].targets[:, 0].astype(int), expit(sel["test"].scores))
            for c in rep.index:
                for met in METRICS:
                    assert rep.loc[c, met] == pytest.approx(lm["per_class"][c][met]), (rho, loss, c, met)
            assert head.loc[(rho, loss), "Recall mean"] == pytest.approx(rep["Recall"].mean(), abs=5e-5)
            assert head.loc[(rho, loss), "Recall std"] == pytest.approx(rep["Recall"].std(ddof=0), abs=5e-5)
    assert r.extra["train_counts"]["5"][0] > r.extra["train_counts"]["5"][-1]
    t2 = pd.read_csv(d / "tables" / "table2.csv")
    assert list(t2.columns) == ["rho", "loss", *METRICS] and len(t2) == 4
