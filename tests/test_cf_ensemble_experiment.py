"""The cf_ensemble experiment: its profiles and early errors, its tables, its run folder.

Notebook / SCHEMA / profile consistency (shared by every experiment) is in test_params.py.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import ttest_rel

from lfakit import record, runner
from lfakit.errors import ParameterError
from lfakit.experiments import cf_ensemble as X

EXP = "cf_ensemble"


# --------------------------------------------------------------------------- parameters


def test_paper_profile_is_the_seed_configuration():
    p = runner.resolve_params(EXP, "paper")
    assert (p["n_instances"], p["n_classifiers"], p["positive_rate"]) == (500, 10, 0.1)
    assert (p["latent_dim"], p["rho"], p["lambda_reg"], p["max_iter"], p["tol"]) == (20, 0.5, 0.01, 50, 1e-4)
    assert (p["use_label_aware_confidence"], p["label_aware_alpha"], p["focal_gamma"]) == (True, 1.0, 2.0)
    assert (p["max_epochs"], p["lr"], p["optimizer"], p["patience"]) == (500, 0.01, "adam", 20)
    assert p["datasets"] == ["synthetic", "digits"] and p["trainers"] == ["als", "pytorch"] and p["seeds"] >= 10


@pytest.mark.parametrize(
    "over, pattern",
    [
        ({"datasets": ["synthetc"]}, "'synthetic'"),
        ({"trainers": ["torch"]}, "Choices: als, pytorch"),
        ({"rho": 0.0}, "rho=0"),
        ({"rho": 1.5}, "<= 1.0"),
        ({"collapse_steps": [1, 0]}, "positive integers"),
        ({"focal_gamma": 0.0}, "focal_gamma=0"),
        ({"seeds": 0}, ">= 1"),
        ({"device": "cuda"}, "Choices: cpu, auto"),
        ({"lr": "fast"}, "must be a float"),
    ],
)
def test_bad_parameters_fail_before_any_work(over, pattern):
    with pytest.raises(ParameterError, match=pattern):
        runner.resolve_params(EXP, "smoke", over)


def test_rho_zero_is_fine_for_the_pytorch_trainer_alone():
    assert runner.resolve_params(EXP, "smoke", {"rho": 0.0, "trainers": ["pytorch"]})["rho"] == 0.0


def test_too_few_positives_stop_with_the_parameters():
    """A parameter-only check: the CLI stops before a run folder, the notebook at its
    parameters cell (both validate with check_params)."""
    with pytest.raises(ParameterError, match="too few"):
        runner.resolve_params(EXP, "smoke", {"n_instances": 40, "positive_rate": 0.05})


# --------------------------------------------------------------------------- statistics and tables


def test_paired_seed_test_matches_scipy():
    rng = np.random.default_rng(0)
    a, b = rng.random(6), rng.random(6)
    r = X.paired_seed_test(b - a)
    ref = ttest_rel(b, a)
    assert r["p_value"] == pytest.approx(ref.pvalue) and r["delta"] == pytest.approx((b - a).mean())
    assert r["ci_low"] < r["delta"] < r["ci_high"]
    assert X.paired_seed_test(np.zeros(4))["p_value"] == 1.0
    assert X.paired_seed_test(np.full(4, 0.1))["p_value"] == 0.0
    assert np.isnan(X.paired_seed_test(np.array([0.3]))["p_value"])


def test_focal_weight_table():
    t = X.focal_weight_table()
    row = t[t.p_t == 0.95].iloc[0]
    assert row["gamma=0"] == 1.0 and row["gamma=2"] == pytest.approx(0.0025) and row["gamma=1"] == pytest.approx(0.05)


def test_comparison_marks_significance_from_the_seeds():
    P = {"datasets": ["synthetic"], "trainers": ["als"], "alpha": 0.05}
    rows = []
    rng = np.random.default_rng(1)
    for s in range(5):
        base = 0.8 + 0.01 * rng.normal()
        vals = {"averaging": base, "stacking": base + 0.001 * rng.normal(), "als_baseline": base,
                "als_class_weights": base + 0.05 + 0.001 * s, "als_focal": base + 0.01 * rng.normal(), "als_both": base + 0.05}
        rows += [{"dataset": "synthetic", "seed": s, "method": m, "pr_auc": v} for m, v in vals.items()]
    t = X.comparison_table(P, pd.DataFrame(rows)).set_index(["Challenger", "Reference"])
    assert t.loc[("ALS: class weights only", "ALS: baseline (no weighting)"), "Winner"] == "ALS: class weights only"
    assert t.loc[("ALS: focal only", "ALS: baseline (no weighting)"), "Winner"].endswith("(n.s.)")


# --------------------------------------------------------------------------- the module end to end (no papermill)

QUICK = {"datasets": ["synthetic"], "seeds": 2, "n_instances": 200, "positive_rate": 0.1, "max_iter": 10,
         "max_epochs": 20, "collapse_steps": [1, 2]}


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run")
    P = runner.resolve_params(EXP, "smoke", {**QUICK, "run_dir": str(run_dir)})
    assert X.setup(P) == run_dir
    data = X.load_data(P)
    runs = X.run_all(P, data, progress=False)
    per_seed = X.evaluate(P, data, runs)
    tables = X.tables(P, per_seed)
    collapse, _ = X.collapse_study(P, data)
    X.figures(P, data, runs, per_seed, run_dir)
    written = X.save(P, run_dir, data, runs, per_seed, tables, collapse)
    return P, run_dir, written, tables, collapse


def test_run_folder_holds_everything(quick):
    P, d, written, tables, collapse = quick
    for f in ("params.yaml", "environment.json", "metrics.json", "predictions.npz", "tables/results.csv",
              "tables/comparison.csv", "tables/focal_weights.csv", "tables/collapse.csv",
              "figures/prediction_spread.png", "figures/pr_auc_by_method.png", "figures/focal_weights.png"):
        assert (d / f).exists(), f
        assert f in written or f in ("params.yaml", "environment.json")
    assert len(tables["results"]) == len(X.methods(P)) == 10
    assert len(tables["comparison"]) == 10
    assert set(collapse["GD steps"]) == {10, 20}


def test_metrics_recomputable_from_predictions(quick):
    P, d, *_ = quick
    r = record.load_run(d)
    for k, s in enumerate(X.seed_list(P)):
        for method in X.methods(P):
            test = r.predictions.select(method=method, split="test", seed=s, group="synthetic")
            train = r.predictions.select(method=method, split="train", seed=s, group="synthetic")
            assert len(test) == 100 and len(train) == 100
            got = X.test_metrics(test.targets[:, 0], test.scores[:, 0], test.fields["difficulty"])
            for metric, v in got.items():
                assert r.methods[method]["synthetic"][metric][k] == pytest.approx(v)


@pytest.mark.slow
def test_lfakit_run_makes_the_run_folder(results_dir):
    args = [f"{k}={v}" if not isinstance(v, list) else f"{k}=[{', '.join(map(str, v))}]" for k, v in QUICK.items()]
    cmd = [sys.executable, "-m", "lfakit.cli", "run", EXP, "-q"] + [a for kv in args for a in ("-p", kv)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    run = Path(r.stdout.strip().splitlines()[-1].split("-> ")[-1])
    assert run.parent == results_dir / EXP
    for f in ("notebook.ipynb", "metrics.json", "predictions.npz", "tables/results.csv", "figures/prediction_spread.png"):
        assert (run / f).exists(), f
