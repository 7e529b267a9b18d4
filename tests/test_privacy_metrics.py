"""Tests for lfakit.metrics.privacy: AUC / TPR at low FPR / threshold metrics / bootstrap / ROC points."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import (accuracy_score, balanced_accuracy_score, f1_score, precision_score, recall_score,
                             roc_auc_score)

from lfakit.metrics import privacy as P


def _data(n=400, shift=1.0, seed=0):
    rng = np.random.default_rng(seed)
    y = np.zeros(n, dtype=bool)
    y[: n // 2] = True
    s = rng.normal(size=n) + shift * y
    return y, s


# --------------------------------------------------------------------------- TPR at FPR
# 10 members (m) and 10 non-members (n), by decreasing score:
#   m m m | n | m m | n n | m m m m m | n n n n n n
# ROC points (fpr, tpr): (0, 0) (0, .1) (0, .2) (0, .3) (.1, .3) (.1, .5) (.3, .5) (.3, 1) ... (1, 1)
ORDER = "mmm" + "n" + "mm" + "nn" + "mmmmm" + "nnnnnnn"
Y_HAND = np.array([c == "m" for c in ORDER])
S_HAND = np.arange(len(ORDER), 0, -1, dtype=float)


def test_hand_case_is_what_the_comment_says():
    assert Y_HAND.sum() == 10 and (~Y_HAND).sum() == 10


@pytest.mark.parametrize("fpr, expected", [(0.0, 0.3), (0.01, 0.3), (0.001, 0.3), (0.0999, 0.3), (0.1, 0.5),
                                           (0.2, 0.5), (0.3, 1.0), (1.0, 1.0)])
def test_tpr_at_fpr_reads_observed_points_only(fpr, expected):
    assert P.tpr_at_fpr(Y_HAND, S_HAND, fpr) == expected


def test_tpr_at_fpr_differs_from_an_interpolation():
    """The hand case is one where interpolating would give another answer (so the test above can fail)."""
    interpolated = np.interp(0.01, [0.0, 0.1], [0.3, 0.5])
    assert not math.isclose(interpolated, 0.3)
    assert P.tpr_at_fpr(Y_HAND, S_HAND, 0.01) != pytest.approx(interpolated)


def test_tpr_at_zero_fpr_with_a_tie_at_the_top():
    # a member and a non-member share the top score: no threshold separates them, TPR@0 = 0
    y = np.array([1, 0, 1, 1, 0, 0], dtype=bool)
    s = np.array([5.0, 5.0, 4.0, 3.0, 2.0, 1.0])
    assert P.tpr_at_fpr(y, s, 0.0) == 0.0
    assert P.tpr_at_fpr(y, s, 1 / 3) == 1.0
    s2 = s.copy()
    s2[0] = 6.0  # break the tie: the top member is found at zero FPR
    assert P.tpr_at_fpr(y, s2, 0.0) == pytest.approx(1 / 3)


def test_tpr_at_fpr_validates():
    with pytest.raises(ValueError, match="fpr"):
        P.tpr_at_fpr(Y_HAND, S_HAND, 1.5)
    with pytest.raises(ValueError, match="both"):
        P.tpr_at_fpr(np.ones(4, bool), np.arange(4.0), 0.1)
    with pytest.raises(ValueError, match="NaN"):
        P.tpr_at_fpr(Y_HAND, np.r_[np.nan, S_HAND[1:]], 0.1)


# --------------------------------------------------------------------------- attack metrics
@pytest.mark.parametrize("threshold", [-0.3, 0.5, 1.2])
def test_attack_metrics_equal_sklearn(threshold):
    y, s = _data()
    m = P.attack_metrics(y, s, threshold)
    pred = s >= threshold
    assert m["auc"] == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert m["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, pred), abs=1e-12)
    assert m["accuracy"] == pytest.approx(accuracy_score(y, pred), abs=1e-12)
    assert m["precision"] == pytest.approx(precision_score(y, pred), abs=1e-12)
    assert m["recall"] == pytest.approx(recall_score(y, pred), abs=1e-12)
    assert m["f1"] == pytest.approx(f1_score(y, pred), abs=1e-12)
    tpr, fpr = pred[y].mean(), pred[~y].mean()
    assert m["advantage"] == pytest.approx(tpr - fpr, abs=1e-12)
    assert m["advantage"] == pytest.approx(2 * m["balanced_accuracy"] - 1, abs=1e-12)
    for key, f in (("tpr@1%fpr", 0.01), ("tpr@0.1%fpr", 0.001), ("tpr@0%fpr", 0.0)):
        assert m[key] == P.tpr_at_fpr(y, s, f)
    assert 0.6 < m["auc"] < 0.9  # the synthetic shift of 1 sd: AUC = Phi(1/sqrt 2) ~ 0.76


def test_attack_metrics_threshold_above_every_score():
    y, s = _data()
    m = P.attack_metrics(y, s, s.max() + 1)
    assert m["precision"] == 0.0 and m["recall"] == 0.0 and m["f1"] == 0.0
    assert m["balanced_accuracy"] == 0.5 and m["advantage"] == 0.0


@pytest.mark.parametrize("threshold", [None, float("nan")])
def test_attack_metrics_without_threshold(threshold):
    y, s = _data()
    m = P.attack_metrics(y, s, threshold)
    assert math.isnan(m["accuracy"]) and math.isnan(m["f1"]) and math.isnan(m["advantage"])
    assert m["auc"] == pytest.approx(roc_auc_score(y, s))


# --------------------------------------------------------------------------- bootstrap
@pytest.mark.parametrize("name, fn", [("auc", roc_auc_score),
                                      ("tpr@1%fpr", lambda y, s: P.tpr_at_fpr(y, s, 0.01)),
                                      ("tpr@0%fpr", lambda y, s: P.tpr_at_fpr(y, s, 0.0))])
def test_bootstrap_fast_path_equals_the_direct_computation(name, fn):
    y, s = _data(n=300)
    s = np.round(s, 1)  # ties, to exercise tied groups in the one-sort path
    fast = P.bootstrap_ci(y, s, name, n_boot=200, seed=3)
    slow = P.bootstrap_ci(y, s, fn, n_boot=200, seed=3)
    assert fast == pytest.approx(slow, abs=1e-12)


def test_bootstrap_is_stratified_and_seeded():
    y, s = _data(n=200)
    sizes = []

    def stat(yy, ss):
        sizes.append((int(yy.sum()), int((~yy).sum())))
        return roc_auc_score(yy, ss)

    P.bootstrap_ci(y, s, stat, n_boot=50, seed=1)
    assert set(sizes) == {(100, 100)}
    assert P.bootstrap_ci(y, s, "auc", n_boot=100, seed=1) == P.bootstrap_ci(y, s, "auc", n_boot=100, seed=1)
    assert P.bootstrap_ci(y, s, "auc", n_boot=100, seed=1) != P.bootstrap_ci(y, s, "auc", n_boot=100, seed=2)


def test_bootstrap_interval_brackets_the_estimate_and_shrinks_with_n():
    y, s = _data(n=200)
    lo, hi = P.bootstrap_ci(y, s, "auc", n_boot=500, seed=0)
    assert lo < roc_auc_score(y, s) < hi
    y2, s2 = _data(n=3200)
    lo2, hi2 = P.bootstrap_ci(y2, s2, "auc", n_boot=500, seed=0)
    # width ~ 1/sqrt(n): 16x the data, about a quarter of the width
    assert 0.15 < (hi2 - lo2) / (hi - lo) < 0.4


def test_bootstrap_validates():
    y, s = _data(n=50)
    with pytest.raises(ValueError, match="unknown stat"):
        P.bootstrap_ci(y, s, "accuracy")
    with pytest.raises(ValueError, match="n_boot"):
        P.bootstrap_ci(y, s, "auc", n_boot=0)
    with pytest.raises(ValueError, match="ci"):
        P.bootstrap_ci(y, s, "auc", ci=1.0)


# --------------------------------------------------------------------------- ROC points
def test_roc_curve_points_for_log_axes():
    fpr, tpr = P.roc_curve_points(Y_HAND, S_HAND)
    assert (fpr > 0).all()
    assert fpr[0] == pytest.approx(0.1) and tpr[0] == pytest.approx(0.3)
    assert fpr[-1] == 1.0 and tpr[-1] == 1.0
    assert (np.diff(fpr) >= 0).all() and (np.diff(tpr) >= 0).all()
    # one point per distinct score (all thresholds kept): 20 scores, the 3 leading zero-FPR ones dropped
    assert len(fpr) == len(S_HAND) - 3
