"""Tests for lfakit.metrics.classification, lfakit.stats and lfakit.report."""

from __future__ import annotations

import math
import warnings

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from scipy import stats as sps  # noqa: E402
from sklearn.metrics import f1_score, precision_score, recall_score, roc_auc_score  # noqa: E402

from lfakit.errors import ParameterError  # noqa: E402
from lfakit.metrics.classification import (  # noqa: E402
    UndefinedMetricWarning,
    best_f1_thresholds,
    f1_at_thresholds,
    multilabel_report,
    per_class_auroc,
    precision_recall_f1_at_thresholds,
    roc_points,
)
from lfakit.report import (  # noqa: E402
    _winner,
    comparison_table,
    format_table,
    overall_table,
    per_class_table,
    plot_history,
    plot_per_class_auroc,
    plot_roc_curves,
    save_figure,
)
from lfakit.stats import (  # noqa: E402
    _draw_indices,
    _strata,
    aggregate_seeds,
    delong_test,
    holm,
    paired_bootstrap,
)


def _multilabel(rng, n=400, prevalence=(0.3, 0.1, 0.05, 0.5), signal=1.0, decimals=None):
    """Labels (n, C) and sigmoid scores; rounding the scores creates many ties."""
    prev = np.asarray(prevalence)
    y = (rng.random((n, prev.size)) < prev).astype(int)
    y[0] = 1  # every class has both label values
    y[1] = 0
    logits = rng.normal(size=y.shape) + signal * y - 1.0
    p = 1.0 / (1.0 + np.exp(-logits))
    if decimals is not None:
        p = np.round(p, decimals)
    return y, p


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


# --------------------------------------------------------------------------- metrics


@pytest.mark.parametrize("decimals", [None, 1, 2])
def test_per_class_auroc_matches_sklearn_including_ties(decimals):
    rng = np.random.default_rng(1)
    y, p = _multilabel(rng, decimals=decimals)
    ours = per_class_auroc(y, p)
    ref = [roc_auc_score(y[:, j], p[:, j]) for j in range(y.shape[1])]
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-12)


def test_per_class_auroc_integer_scores_and_1d():
    y = np.array([0, 0, 1, 1, 0, 1, 1, 0])
    s = np.array([1, 2, 2, 3, 3, 3, 5, 1])  # many ties across label values
    assert per_class_auroc(y, s).shape == (1,)
    assert per_class_auroc(y, s)[0] == pytest.approx(roc_auc_score(y, s), abs=1e-15)


def test_per_class_auroc_single_label_class_is_nan_with_warning():
    rng = np.random.default_rng(2)
    y, p = _multilabel(rng, n=50)
    y[:, 2] = 0
    with pytest.warns(UndefinedMetricWarning, match="class 2"):
        auc = per_class_auroc(y, p)
    assert np.isnan(auc[2]) and np.isfinite(auc[[0, 1, 3]]).all()


def test_roc_points_area_is_auroc():
    rng = np.random.default_rng(3)
    y, p = _multilabel(rng, decimals=1)
    fpr, tpr = roc_points(y[:, 0], p[:, 0])
    assert fpr[0] == 0 and tpr[0] == 0 and fpr[-1] == 1 and tpr[-1] == 1
    area = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))
    assert area == pytest.approx(roc_auc_score(y[:, 0], p[:, 0]), abs=1e-12)


def test_f1_precision_recall_match_sklearn_zero_division_0():
    rng = np.random.default_rng(4)
    y, p = _multilabel(rng, n=300, decimals=2)
    # Includes a threshold above every score (no predicted positive -> F1 = 0).
    thresholds = np.array([0.3, 0.5, 1.5, p[:, 3].min()])
    prec, rec, f1 = precision_recall_f1_at_thresholds(y, p, thresholds)
    for j, t in enumerate(thresholds):
        pred = (p[:, j] >= t).astype(int)
        assert f1[j] == pytest.approx(f1_score(y[:, j], pred, zero_division=0), abs=1e-12)
        assert prec[j] == pytest.approx(
            precision_score(y[:, j], pred, zero_division=0), abs=1e-12
        )
        assert rec[j] == pytest.approx(recall_score(y[:, j], pred, zero_division=0), abs=1e-12)
    np.testing.assert_array_equal(f1_at_thresholds(y, p, thresholds), f1)
    # No positives and no predicted positives: sklearn's zero_division=0 gives 0 too.
    assert f1_at_thresholds(np.zeros(5), np.zeros(5), 1.0)[0] == 0.0


@pytest.mark.parametrize("decimals", [1, 2])
def test_best_f1_threshold_equals_brute_force(decimals):
    rng = np.random.default_rng(5)
    y, p = _multilabel(rng, n=150, prevalence=(0.3, 0.1, 0.5), decimals=decimals)
    thr, f1 = best_f1_thresholds(y, p)
    for j in range(y.shape[1]):
        candidates = np.unique(p[:, j])[::-1]  # every distinct score, highest first
        scores = [f1_score(y[:, j], p[:, j] >= t, zero_division=0) for t in candidates]
        best = int(np.argmax(scores))  # first maximum == highest threshold (documented)
        assert thr[j] == candidates[best]
        assert f1[j] == pytest.approx(scores[best], abs=1e-12)


def test_best_f1_tie_break_takes_highest_threshold():
    # t=0.9 and t=0.6 both give F1 = 2/3 (TP=1 of 1 predicted, and TP=2 of 4 predicted).
    y = np.array([1, 0, 0, 1])
    p = np.array([0.9, 0.8, 0.7, 0.6])
    thr, f1 = best_f1_thresholds(y, p)
    assert thr[0] == 0.9
    assert f1[0] == pytest.approx(2 / 3)
    assert f1_score(y, p >= 0.6) == pytest.approx(f1_score(y, p >= 0.9))


def test_thresholds_are_chosen_on_validation_only():
    rng = np.random.default_rng(6)
    y_val, p_val = _multilabel(rng, n=300)
    y_test, p_test = _multilabel(rng, n=300)
    y_test2, p_test2 = _multilabel(rng, n=200, signal=3.0)
    names = ["A", "B", "C", "D"]
    r1 = multilabel_report(y_val, p_val, y_test, p_test, names)
    r2 = multilabel_report(y_val, p_val, y_test2, p_test2, names)
    thr, _ = best_f1_thresholds(y_val, p_val)
    np.testing.assert_array_equal(r1["Threshold"], thr)
    np.testing.assert_array_equal(r2["Threshold"], thr)  # test data changed, thresholds not
    # F1 is reported on test data at the validation thresholds.
    np.testing.assert_array_equal(r1["F1"], f1_at_thresholds(y_test, p_test, thr))
    assert not np.allclose(r1["F1"], r2["F1"])


def test_multilabel_report_columns_and_values():
    rng = np.random.default_rng(7)
    y_val, p_val = _multilabel(rng, n=200)
    y_test, p_test = _multilabel(rng, n=250)
    rep = multilabel_report(y_val, p_val, y_test, p_test, ["A", "B", "C", "D"])
    assert list(rep.columns) == [
        "AUROC", "F1", "Threshold", "Precision", "Recall", "F1 (z>0)", "Prevalence", "n_pos"
    ]
    assert rep.index.name == "Class" and list(rep.index) == ["A", "B", "C", "D"]
    for j, name in enumerate(rep.index):
        pred = p_test[:, j] >= rep.loc[name, "Threshold"]
        assert rep.loc[name, "AUROC"] == pytest.approx(roc_auc_score(y_test[:, j], p_test[:, j]))
        assert rep.loc[name, "F1"] == pytest.approx(f1_score(y_test[:, j], pred, zero_division=0))
        assert rep.loc[name, "Precision"] == pytest.approx(
            precision_score(y_test[:, j], pred, zero_division=0)
        )
        assert rep.loc[name, "n_pos"] == y_test[:, j].sum()
        assert rep.loc[name, "Prevalence"] == pytest.approx(y_test[:, j].mean())
        assert rep.loc[name, "F1 (z>0)"] == pytest.approx(f1_score(y_test[:, j], p_test[:, j] > 0.5, zero_division=0))


@pytest.mark.parametrize(
    "y, p, match",
    [
        (np.array([0, 1, 2]), np.array([0.1, 0.2, 0.3]), "0/1"),
        (np.array([0, 1, 1]), np.array([0.1, np.nan, 0.3]), "NaN"),
        (np.array([0, 1, 1]), np.array([0.1, 0.3]), "shape"),
    ],
)
def test_bad_input_fails_clearly(y, p, match):
    with pytest.raises(ValueError, match=match):
        per_class_auroc(y, p)


# --------------------------------------------------------------------------- DeLong


def _delong_slow(y, s1, s2):
    """Direct O(m n) DeLong: structural components from all positive/negative pairs."""
    y = np.asarray(y).astype(bool)
    comps = []
    for s in (s1, s2):
        x, z = s[y][:, None], s[~y][None, :]
        psi = (x > z) + 0.5 * (x == z)  # m x n kernel
        comps.append((psi.mean(axis=1), psi.mean(axis=0), psi.mean()))
    (v10a, v01a, a1), (v10b, v01b, a2) = comps
    m, n = y.sum(), (~y).sum()
    s10 = np.cov(np.vstack([v10a, v10b]))
    s01 = np.cov(np.vstack([v01a, v01b]))
    s = s10 / m + s01 / n
    var = s[0, 0] + s[1, 1] - 2 * s[0, 1]
    return a1, a2, math.sqrt(var)


def test_delong_matches_slow_implementation_and_sklearn():
    rng = np.random.default_rng(8)
    y = (rng.random(120) < 0.35).astype(int)
    s1 = np.round(rng.normal(size=120) + y, 1)  # ties within and across classes
    s2 = np.round(0.7 * s1 + rng.normal(size=120) + 0.5 * y, 1)  # correlated with s1
    r = delong_test(y, s1, s2)
    a1, a2, se = _delong_slow(y, s1, s2)
    assert r["auc1"] == pytest.approx(roc_auc_score(y, s1), abs=1e-12)
    assert r["auc2"] == pytest.approx(roc_auc_score(y, s2), abs=1e-12)
    assert r["auc1"] == pytest.approx(a1, abs=1e-12) and r["auc2"] == pytest.approx(a2)
    assert r["se"] == pytest.approx(se, rel=1e-10)
    assert r["delta"] == pytest.approx(a2 - a1)
    assert r["z"] == pytest.approx((a2 - a1) / se)
    assert r["p_value"] == pytest.approx(2 * sps.norm.sf(abs((a2 - a1) / se)))
    half = sps.norm.ppf(0.975) * se
    assert (r["ci_low"], r["ci_high"]) == pytest.approx((a2 - a1 - half, a2 - a1 + half))


def test_delong_small_example_by_hand():
    # Positives (0.9, 0.4), negatives (0.5, 0.1); model 2 ranks everything right.
    y = np.array([1, 1, 0, 0])
    s1 = np.array([0.9, 0.4, 0.5, 0.1])
    s2 = np.array([0.9, 0.6, 0.5, 0.1])
    r = delong_test(y, s1, s2)
    # Model 1: V10 = (1, 1/2), V01 = (1/2, 1), AUC 3/4. Model 2: all components 1, AUC 1.
    # var(delta) = var(V10_1)/2 + var(V01_1)/2 = (1/8)/2 + (1/8)/2 = 1/8.
    assert r["auc1"] == 0.75 and r["auc2"] == 1.0
    assert r["se"] == pytest.approx(math.sqrt(1 / 8))


def test_delong_identical_and_very_different_scores():
    rng = np.random.default_rng(9)
    y = (rng.random(400) < 0.3).astype(int)
    s = rng.normal(size=400) + y
    same = delong_test(y, s, s.copy())
    assert same["delta"] == 0 and same["p_value"] == 1.0 and same["z"] == 0
    strong = delong_test(y, rng.normal(size=400), s + 2 * y)
    assert strong["delta"] > 0.3 and strong["p_value"] < 1e-10
    assert strong["ci_low"] > 0


def test_delong_p_values_roughly_uniform_under_the_null():
    rng = np.random.default_rng(10)
    pvals = []
    for _ in range(300):
        y = (rng.random(80) < 0.4).astype(int)
        shared = rng.normal(size=80)  # correlated models of equal quality
        s1 = shared + rng.normal(size=80) + y
        s2 = shared + rng.normal(size=80) + y
        pvals.append(delong_test(y, s1, s2)["p_value"])
    pvals = np.array(pvals)
    assert 0.02 <= np.mean(pvals < 0.05) <= 0.09
    assert sps.kstest(pvals, "uniform").pvalue > 0.01


def test_delong_needs_both_labels():
    with pytest.raises(ValueError, match="both"):
        delong_test(np.ones(5), np.arange(5.0), np.arange(5.0))


# --------------------------------------------------------------------------- bootstrap


def _binormal(rng, n, mus):
    y = (rng.random(n) < 0.3).astype(int)
    return y, [rng.normal(size=n) + mu * y for mu in mus]


def test_bootstrap_is_deterministic_for_a_seed():
    rng = np.random.default_rng(11)
    y, p = _multilabel(rng, n=300)
    _, q = _multilabel(rng, n=300)
    a = paired_bootstrap(y, p, q, n_boot=200, seed=3)
    b = paired_bootstrap(y, p, q, n_boot=200, seed=3)
    c = paired_bootstrap(y, p, q, n_boot=200, seed=4)
    assert a == b
    assert (a["ci_low"], a["ci_high"]) != (c["ci_low"], c["ci_high"])
    assert a["delta"] == c["delta"]


def test_bootstrap_ci_covers_true_delta_in_simulation():
    rng = np.random.default_rng(12)
    mu1, mu2 = 0.8, 1.3
    true_delta = sps.norm.cdf(mu2 / math.sqrt(2)) - sps.norm.cdf(mu1 / math.sqrt(2))
    covered = 0
    for k in range(20):
        y, (s1, s2) = _binormal(rng, 600, (mu1, mu2))
        r = paired_bootstrap(y, s1, s2, n_boot=300, seed=k)
        covered += r["ci_low"] <= true_delta <= r["ci_high"]
        assert r["ci_low"] <= r["delta"] <= r["ci_high"]
    assert covered >= 16  # nominal 95%: 19 expected, >= 16 with overwhelming probability


def test_vectorised_bootstrap_equals_sklearn_loop_for_same_seed():
    rng = np.random.default_rng(13)
    y, p = _multilabel(rng, n=150, decimals=1)  # ties
    _, q = _multilabel(rng, n=150, decimals=1)

    def mean_auroc(yy, ss):
        return np.mean([roc_auc_score(yy[:, j], ss[:, j]) for j in range(yy.shape[1])])

    fast = paired_bootstrap(y, p, q, metric="auroc", n_boot=25, seed=5)
    slow = paired_bootstrap(y, p, q, metric=mean_auroc, n_boot=25, seed=5)
    for key in ("delta", "ci_low", "ci_high", "p_value", "metric1", "metric2"):
        assert fast[key] == pytest.approx(slow[key], abs=1e-12)
    # 1-D labels: plain AUROC.
    r = paired_bootstrap(y[:, 0], p[:, 0], q[:, 0], n_boot=25, seed=5)
    s = paired_bootstrap(y[:, 0], p[:, 0], q[:, 0], metric=roc_auc_score, n_boot=25, seed=5)
    assert r["ci_low"] == pytest.approx(s["ci_low"]) and r["p_value"] == s["p_value"]


def test_bootstrap_identical_scores_and_strong_difference():
    rng = np.random.default_rng(14)
    y, (s1, s2) = _binormal(rng, 500, (0.2, 2.5))
    same = paired_bootstrap(y, s1, s1.copy(), n_boot=100)
    assert same["delta"] == 0 and same["p_value"] == 1.0
    assert same["ci_low"] == same["ci_high"] == 0
    strong = paired_bootstrap(y, s1, s2, n_boot=100)
    assert strong["p_value"] == pytest.approx(1 / 101) and strong["ci_low"] > 0


def test_bootstrap_mean_auroc_skips_undefined_class_with_warning():
    rng = np.random.default_rng(22)
    y, p = _multilabel(rng, n=200)
    _, q = _multilabel(rng, n=200)
    y[:, 1] = 0
    with pytest.warns(UndefinedMetricWarning, match=r"classes \[1\]"):
        r = paired_bootstrap(y, p, q, n_boot=50)
    keep = [0, 2, 3]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ref = paired_bootstrap(y[:, keep], p[:, keep], q[:, keep], n_boot=50)
    assert r["delta"] == pytest.approx(ref["delta"])


def test_stratified_resampling_keeps_label_counts():
    rng = np.random.default_rng(15)
    y = (rng.random(200) < 0.1).astype(int)
    idx = _draw_indices(rng, _strata(y, True), 200, 50)
    assert (y[idx].sum(axis=1) == y.sum()).all()
    # Multi-label: a rare class never vanishes from a replicate.
    ym, _ = _multilabel(rng, n=300, prevalence=(0.4, 0.3, 0.01))
    idx = _draw_indices(rng, _strata(ym, True), 300, 200)
    assert (ym[idx][:, :, 2].sum(axis=1) >= 1).all()
    with pytest.raises(ValueError, match="stratified=False"):
        _strata(rng.normal(size=20), True)


def test_aggregate_seeds_t_interval():
    df = pd.DataFrame(
        {"loss": ["b", "a", "a", "a", "b", "c"], "seed": range(6),
         "auroc": [0.70, 0.80, 0.82, 0.84, 0.74, 0.9]}
    )
    out = aggregate_seeds(df, "loss", "auroc")
    assert list(out["loss"]) == ["a", "b", "c"]
    assert list(out["n"]) == [3, 2, 1]
    a = out.iloc[0]
    lo, hi = sps.t.interval(0.95, 2, loc=0.82, scale=sps.sem([0.80, 0.82, 0.84]))
    assert a["mean"] == pytest.approx(0.82) and a["std"] == pytest.approx(0.02)
    assert (a["ci_low"], a["ci_high"]) == pytest.approx((lo, hi))
    assert np.isnan(out.iloc[2]["ci_low"])
    with pytest.raises(KeyError, match="nope"):
        aggregate_seeds(df, "loss", "nope")


# --------------------------------------------------------------------------- tables


def test_winner_rule():
    assert _winner(0.01, 0.001, "ZLPR", 0.05) == "ZLPR"
    assert _winner(-0.01, 0.001, "ZLPR", 0.05) == "Baseline"
    assert _winner(0.01, 0.2, "ZLPR", 0.05) == "ZLPR (n.s.)"
    assert _winner(-0.01, 0.05, "ZLPR", 0.05) == "Baseline (n.s.)"  # p must be < alpha
    assert _winner(0.0, 1.0, "ZLPR", 0.05) == "Tie (n.s.)"
    assert _winner(0.01, float("nan"), "ZLPR", 0.05) == "ZLPR (n.s.)"
    assert _winner(float("nan"), float("nan"), "ZLPR", 0.05) == "n/a"


def _comparison_data(rng, n=600):
    y = (rng.random((n, 3)) < 0.3).astype(int)
    noise = rng.normal(size=(n, 3))
    base = noise + y * np.array([0.3, 2.0, 1.0])
    zlpr = base.copy()
    zlpr[:, 0] = noise[:, 0] + 2.0 * y[:, 0]  # much better on class 0
    zlpr[:, 1] = rng.normal(size=n) + 0.3 * y[:, 1]  # much worse on class 1
    # class 2 identical -> tie
    bce = base + 0.05 * rng.normal(size=(n, 3))  # nearly identical: nothing significant
    return y, {"Focal": base, "ZLPR": zlpr, "BCE": bce}


def test_comparison_table_of_one_seed_reports_these_models_without_a_winner():
    rng = np.random.default_rng(16)
    y, scores = _comparison_data(rng)
    names = ["Edema", "Hernia", "Mass"]
    t = comparison_table(y, scores, "Focal", names, n_boot=200)
    assert list(t.columns) == [
        "Challenger", "Class", "Baseline", "AUROC", "Delta", "CI low", "CI high",
        "p-value", "p (Holm)", "Test", "Seeds",
    ]  # one trained model per loss: no Winner column
    assert (t["Seeds"] == 1).all()
    # Long table: one block of C + 1 rows per challenger, in the order of `scores`.
    assert list(t["Challenger"]) == ["ZLPR"] * 4 + ["BCE"] * 4
    assert list(t["Class"]) == names + ["Mean"] + names + ["Mean"]
    assert list(t["Test"]) == (["DeLong, test set only"] * 3 + ["bootstrap, test set only"]) * 2
    z = t[t["Challenger"] == "ZLPR"].set_index("Class")
    assert z.loc["Edema", "Delta"] > 0 and z.loc["Edema", "p (Holm)"] < 0.05
    assert z.loc["Hernia", "Delta"] < 0 and z.loc["Hernia", "p (Holm)"] < 0.05
    assert z.loc["Mass", "p-value"] == 1.0 and z.loc["Mass", "Delta"] == 0.0
    assert (t[t["Challenger"] == "BCE"]["p (Holm)"] >= 0.05).all()
    # one Holm family over every row of the table (both challengers, classes and means)
    raw = []
    for name in ("ZLPR", "BCE"):
        raw += [delong_test(y[:, j], scores["Focal"][:, j], scores[name][:, j])["p_value"] for j in range(3)]
        raw.append(paired_bootstrap(y, scores["Focal"], scores[name], metric="auroc", n_boot=200, seed=0,
                                    stratified=True)["p_value"])
    np.testing.assert_allclose(t["p (Holm)"], np.round(holm(raw), 4), atol=1e-12)
    # Deltas and AUROCs agree with scikit-learn (to the rounding).
    assert z.loc["Edema", "Baseline"] == round(roc_auc_score(y[:, 0], scores["Focal"][:, 0]), 4)
    edema = z.loc["Edema"]
    assert edema["Delta"] == pytest.approx(edema["AUROC"] - edema["Baseline"], abs=1.5e-4)
    mean = z.loc["Mean"]
    assert mean["Delta"] == pytest.approx(z.loc[names, "Delta"].mean(), abs=2e-4)
    assert mean["CI low"] <= mean["Delta"] <= mean["CI high"]
    # Rounded to 4 decimals.
    assert np.allclose(t["Baseline"], t["Baseline"].round(4), atol=0)


def test_comparison_table_is_deterministic_text_and_checks_baseline():
    rng = np.random.default_rng(17)
    y, scores = _comparison_data(rng, n=300)
    a = format_table(comparison_table(y, scores, "Focal", n_boot=100))
    b = format_table(comparison_table(y, scores, "Focal", n_boot=100))
    assert a == b
    assert "-0.0000" not in a and "test set only" in a and "Winner" not in a
    with pytest.raises(ParameterError, match="Did you mean: 'Focal'"):
        comparison_table(y, scores, "focal")
    with pytest.raises(ParameterError, match="besides"):
        comparison_table(y, {"Focal": scores["Focal"]}, "Focal")


def test_comparison_table_undefined_class():
    rng = np.random.default_rng(18)
    y, scores = _comparison_data(rng, n=200)
    y[:, 1] = 0
    with pytest.warns(UndefinedMetricWarning, match="class 1"):
        t = comparison_table(y, scores, "Focal", n_boot=50)
    assert np.isnan(t.loc[1, "Delta"]) and np.isnan(t.loc[1, "p (Holm)"])
    assert np.isfinite(t.loc[3, "Delta"])  # Mean over the defined classes


def test_per_class_and_overall_tables():
    rng = np.random.default_rng(19)
    y_val, p_val = _multilabel(rng, n=200)
    y_test, p_test = _multilabel(rng, n=200)
    rep = multilabel_report(y_val, p_val, y_test, p_test, ["A", "B", "C", "D"])
    t = per_class_table(rep)
    assert list(t.columns) == ["Class", "AUROC", "F1", "Threshold", "F1 (z>0)"]
    assert "Threshold (σ of score)" in per_class_table(rep, score_output=True).columns
    assert list(t["Class"]) == ["A", "B", "C", "D"]
    assert (t["AUROC"] == rep["AUROC"].round(4).to_numpy()).all()
    text = format_table(t)
    assert text.splitlines()[0].split("|")[1].strip() == "Class"
    assert len(text.splitlines()) == 2 + 4
    o = overall_table({"Focal": {"loss": 0.04151, "avg_auroc": 0.85141, "avg_f1": 0.38029, "avg_f1_zero": 0.2},
                       "ZLPR": {"loss": 1.62679, "avg_auroc": 0.84622, "avg_f1": 0.36211, "avg_f1_zero": 0.31}})
    assert list(o.index) == ["Loss (own scale)", "Avg AUROC", "Avg F1", "Avg F1 (z>0)"]
    assert list(o.columns) == ["Focal", "ZLPR"]
    assert o.loc["Avg AUROC", "Focal"] == 0.8514
    assert format_table(o) == (
        "| Metric           |  Focal |   ZLPR |\n"
        "|:-----------------|-------:|-------:|\n"
        "| Loss (own scale) | 0.0415 | 1.6268 |\n"
        "| Avg AUROC        | 0.8514 | 0.8462 |\n"
        "| Avg F1           | 0.3803 | 0.3621 |\n"
        "| Avg F1 (z>0)     | 0.2000 | 0.3100 |"
    )
    from lfakit.report import loss_conventions

    note = loss_conventions(["focal", "zlpr", "bce"])
    assert "focal, bce: mean over every (image, label) element" in note and "zlpr: mean over images" in note


def test_format_table_is_independent_of_pandas_display_options():
    df = pd.DataFrame({"name": ["a", "bb"], "x": [-0.00001, 1 / 3], "n": [1, 22]})
    plain = format_table(df)
    with pd.option_context("display.precision", 2, "display.width", 20):
        assert format_table(df) == plain
    assert plain.splitlines()[2] == "| a    | 0.0000 |   1 |"
    assert plain.splitlines()[3] == "| bb   | 0.3333 |  22 |"


# --------------------------------------------------------------------------- figures


def _reports(rng, losses, n=200):
    y_val, _ = _multilabel(rng, n=n)
    y_test, _ = _multilabel(rng, n=n)
    out, scores = {}, {}
    for k, loss in enumerate(losses):
        _, p_val = _multilabel(rng, n=n, signal=1 + k)
        p_test = 1 / (1 + np.exp(-(rng.normal(size=y_test.shape) + (1 + k) * y_test)))
        out[loss] = multilabel_report(y_val, p_val, y_test, p_test, list("ABCD"))
        scores[loss] = p_test
    return y_test, scores, out


def test_plot_per_class_auroc_bars():
    rng = np.random.default_rng(20)
    _, _, reports = _reports(rng, ["Focal", "ZLPR", "FZLPR"])
    fig = plot_per_class_auroc(reports)
    assert len(fig.axes) == 1
    ax = fig.axes[0]
    assert len(ax.patches) == 4 * 3
    assert [t.get_text() for t in ax.get_xticklabels()] == list("ABCD")


def test_plot_roc_curves_panels_and_lines(tmp_path):
    rng = np.random.default_rng(21)
    y, scores, _ = _reports(rng, ["Focal", "ZLPR"])
    fig = plot_roc_curves(y, scores, list("ABCD"))
    assert len(fig.axes) == 4
    for ax in fig.axes:
        assert len(ax.lines) == 2 + 1  # one curve per loss + chance diagonal
        labels = [t.get_text() for t in ax.get_legend().get_texts()]
        assert labels[0].startswith("Focal (0.") and labels[1].startswith("ZLPR (0.")
    assert len(plot_roc_curves(y, scores, list("ABCD"), max_classes=3).axes) == 3
    path = save_figure(fig, tmp_path / "sub" / "roc.png")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width = int.from_bytes(data[16:20], "big")
    assert width == round(fig.get_figwidth() * 120)


def test_plot_history_panels():
    hist = {
        loss: pd.DataFrame(
            {"epoch": [1, 2, 3], "train_loss": [1.0 * k, 0.8 * k, 0.6 * k],
             "val_loss": [1.1, 0.9, 0.8], "val_auroc": [0.6, 0.7, 0.75]}
        )
        for k, loss in enumerate(["Focal", "ZLPR"], start=1)
    }
    fig = plot_history(hist)
    assert len(fig.axes) == 3
    assert all(len(ax.lines) == 2 for ax in fig.axes)
    assert fig.axes[0].get_yscale() == "log" and fig.axes[2].get_yscale() == "linear"


def _holm_reference(p):
    """Holm (1979) written out: sort ascending, multiply the i-th smallest by (m - i), take the
    running maximum, cap at 1, put back in the original order."""
    p = np.asarray(p, float)
    m = len(p)
    order = np.argsort(p)
    adj = np.empty(m)
    running = 0.0
    for i, k in enumerate(order):
        running = max(running, min(1.0, (m - i) * p[k]))
        adj[k] = running
    return adj


def test_holm_equals_the_written_out_procedure_and_skips_nan():
    from lfakit.stats import holm

    rng = np.random.default_rng(3)
    for m in (1, 2, 5, 14, 56):
        p = rng.uniform(0, 0.2, size=m) ** 2
        np.testing.assert_allclose(holm(p), _holm_reference(p), rtol=0, atol=1e-15)
    # the committed ChestX-ray comparison's situation: 14 tests, several raw p < 0.05, few survive
    p = np.array([0.0013, 0.003, 0.013, 0.02, 0.03, 0.04, 0.2, 0.3, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95])
    adj = holm(p)
    assert (p < 0.05).sum() == 6 and (adj < 0.05).sum() == 2
    with_nan = holm([0.01, np.nan, 0.04])
    assert np.isnan(with_nan[1]) and with_nan[[0, 2]] == pytest.approx(_holm_reference([0.01, 0.04]))


def test_report_ranks_the_logits_and_treats_an_empty_class_alike():
    from scipy.special import expit

    from lfakit.metrics.classification import multilabel_report, per_class_auroc

    rng = np.random.default_rng(5)
    n = 300
    y = np.zeros((n, 3), int)
    y[:, 0] = rng.uniform(size=n) < 0.4
    y[:, 1] = rng.uniform(size=n) < 0.3
    # class 2: no positive test image
    z = 45.0 + 3.0 * y + rng.normal(size=(n, 3))  # float64 sigmoid is exactly 1.0 above ~36.7
    p = expit(z)
    assert (p == 1.0).all()
    rep = multilabel_report(y, p, y, p, ["a", "b", "c"], rank_test=z)
    assert rep.loc["a", "AUROC"] == pytest.approx(per_class_auroc(y[:, :1], z[:, :1])[0])
    assert rep.loc["a", "AUROC"] > 0.9  # ranked on the logits, not on the tied probabilities
    with pytest.warns(UndefinedMetricWarning):
        tied = multilabel_report(y, p, y, p, ["a", "b", "c"])
    assert tied.loc["a", "AUROC"] == 0.5
    # one rule for a class without both label values: no AUROC and no F1, so both averages skip it
    assert np.isnan(rep.loc["c", "AUROC"]) and np.isnan(rep.loc["c", "F1"])
    assert np.isnan(rep.loc["c", "Precision"]) and np.isnan(rep.loc["c", "Recall"])
    assert np.nanmean(rep["F1"]) == pytest.approx(rep.loc[["a", "b"], "F1"].mean())


def test_corrected_resampled_ttest_equals_its_formula():
    from scipy.stats import t as student_t

    from lfakit.stats import corrected_resampled_ttest

    d = np.array([0.02, 0.035, -0.01, 0.04, 0.015])
    j, n_train, n_test = len(d), 540, 540
    var = (1 / j + n_test / n_train) * d.var(ddof=1)
    t = d.mean() / np.sqrt(var)
    r = corrected_resampled_ttest(d, n_train, n_test)
    assert r["p_value"] == pytest.approx(2 * student_t.sf(abs(t), j - 1), rel=1e-12)
    half = student_t.ppf(0.975, j - 1) * np.sqrt(var)
    assert (r["ci_low"], r["ci_high"]) == pytest.approx((d.mean() - half, d.mean() + half), rel=1e-12)
    # wider than the plain paired t-test: the correction can only make p larger
    plain = 2 * student_t.sf(abs(d.mean() / np.sqrt(d.var(ddof=1) / j)), j - 1)
    assert r["p_value"] > plain
    assert np.isnan(corrected_resampled_ttest([0.1], 10, 10)["p_value"])
    with pytest.raises(ValueError):
        corrected_resampled_ttest(d, 0, 10)


def test_seed_comparison_is_the_seed_level_t_with_one_holm_family():
    from lfakit.report import seed_comparison_table

    rng = np.random.default_rng(4)
    n = 300
    y = (rng.uniform(size=(n, 2)) < 0.3).astype(int)
    noise = rng.normal(size=(n, 2))
    scores = {"focal": {}, "zlpr": {}}
    for s in (0, 1, 2, 3):
        scores["focal"][s] = noise + 1.0 * y + 0.3 * rng.normal(size=(n, 2))
        scores["zlpr"][s] = noise + np.array([1.6, 1.0]) * y + 0.3 * rng.normal(size=(n, 2))  # better on class 0
    t = seed_comparison_table(y, scores, "focal", ["a", "b"], n_boot=200)
    assert list(t["Test"]) == ["seed-level t"] * 3 and (t["Seeds"] == 4).all()
    deltas = [roc_auc_score(y[:, 0], scores["zlpr"][s][:, 0]) - roc_auc_score(y[:, 0], scores["focal"][s][:, 0]) for s in range(4)]
    row = t.set_index("Class").loc["a"]
    assert row["Delta"] == pytest.approx(np.mean(deltas), abs=1e-4)
    from lfakit.stats import seed_level_auroc

    want = seed_level_auroc(y[:, 0], np.stack([scores["focal"][s][:, 0] for s in range(4)]),
                            np.stack([scores["zlpr"][s][:, 0] for s in range(4)]))
    assert row["p-value"] == pytest.approx(want["p_value"], abs=1e-4)
    assert (row["CI low"], row["CI high"]) == (pytest.approx(want["ci_low"], abs=1e-4), pytest.approx(want["ci_high"], abs=1e-4))
    assert row["Winner"] == "zlpr"
    np.testing.assert_allclose(t["p (Holm)"], holm(t["p-value"]), atol=2e-4)  # one family: classes and mean
    with pytest.raises(ParameterError, match="two or more seeds"):
        seed_comparison_table(y, {k: {0: v[0]} for k, v in scores.items()}, "focal")
    with pytest.raises(ParameterError, match="same seeds"):
        seed_comparison_table(y, {"focal": scores["focal"], "zlpr": {0: scores["zlpr"][0], 1: scores["zlpr"][1]}}, "focal")


def test_identical_seeds_keep_the_test_set_noise_in_the_test():
    """Models identical across seeds (no retraining noise): the seed-level t falls back to the
    test-set variance (DeLong's test of the pair), never to a zero variance."""
    from lfakit.report import seed_comparison_table

    y = np.array([[0], [0], [1], [1]] * 10)
    base = np.tile(np.array([[0.1], [0.6], [0.4], [0.9]]), (10, 1))
    better = np.tile(np.array([[0.1], [0.3], [0.4], [0.9]]), (10, 1))  # same AUROC gain for every seed
    t = seed_comparison_table(y, {"a": {0: base, 1: base}, "b": {0: better, 1: better}}, "a", ["c"], n_boot=100)
    row = t.iloc[0]
    pair = delong_test(y[:, 0], base[:, 0], better[:, 0])
    assert row["Delta"] > 0 and row["p-value"] == pytest.approx(pair["p_value"], abs=1e-4)


def test_one_seed_rare_class_is_shown_but_not_tested():
    """DeLong alone is liberal with few positives (issue 25: 21% type-I at 2, 10% at 5): a one-pair
    comparison shows such a class's difference and no test; 20 positives are tested."""
    rng = np.random.default_rng(21)
    n = 400
    y = np.zeros((n, 2), int)
    y[rng.choice(n, 8, replace=False), 0] = 1  # 8 positives
    y[rng.choice(n, 20, replace=False), 1] = 1  # exactly the floor
    base, other = rng.normal(size=(n, 2)) + y, rng.normal(size=(n, 2)) + 2 * y
    t = comparison_table(y, {"a": base, "b": other}, "a", ["rare", "twenty"], n_boot=100).set_index("Class")
    assert t.loc["rare", "Test"] == "not tested: 8 positives (< 20)"
    assert np.isfinite(t.loc["rare", "Delta"]) and np.isnan(t.loc["rare", "p-value"]) and np.isnan(t.loc["rare", "CI low"])
    assert np.isnan(t.loc["rare", "p (Holm)"]) and t.loc["twenty", "Test"] == "DeLong, test set only"
    assert np.isfinite(t.loc["twenty", "p-value"])
