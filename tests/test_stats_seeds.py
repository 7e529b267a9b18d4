"""The comparison statistics over seeds (lfakit.stats): DeLong's covariance and contrast test of
several AUROCs, and the seed-mean paired bootstrap, each against a straightforward reference
implementation written out here (explicit comparison matrices, scikit-learn per replicate)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps
from scipy.stats import norm, spearmanr
from sklearn.metrics import roc_auc_score

from lfakit import stats
from lfakit.stats import _draw_indices, _strata


def _reference_delong(y: np.ndarray, scores: np.ndarray):
    """DeLong et al. (1988) as written: psi(x, y) = 1 if x > y, 1/2 if equal, over all
    positive-negative pairs; V10 and V01 are its row and column means."""
    pos, neg = scores[:, y == 1], scores[:, y == 0]
    psi = (pos[:, :, None] > neg[:, None, :]) + 0.5 * (pos[:, :, None] == neg[:, None, :])  # (K, m, n)
    v10, v01 = psi.mean(axis=2), psi.mean(axis=1)
    auc = v10.mean(axis=1)
    m, n = pos.shape[1], neg.shape[1]
    s10 = (v10 - auc[:, None]) @ (v10 - auc[:, None]).T / (m - 1)
    s01 = (v01 - auc[:, None]) @ (v01 - auc[:, None]).T / (n - 1)
    return auc, s10 / m + s01 / n


@pytest.mark.parametrize("ties", [False, True])
def test_delong_covariance_matches_the_reference(ties):
    rng = np.random.default_rng(3)
    n, k = 400, 5
    y = (rng.random(n) < 0.3).astype(int)
    scores = y[None, :] * rng.uniform(0.2, 1.0, (k, 1)) + rng.normal(size=(k, n))
    if ties:
        scores = np.round(scores, 1)  # many tied scores, within and across classes
    auc, cov, m, nn = stats.delong_covariance(y, scores)
    ref_auc, ref_cov = _reference_delong(y, scores)
    assert (m, nn) == (int(y.sum()), n - int(y.sum()))
    np.testing.assert_allclose(auc, [roc_auc_score(y, s) for s in scores], atol=1e-9, rtol=0)
    np.testing.assert_allclose(auc, ref_auc, atol=1e-9, rtol=0)
    np.testing.assert_allclose(cov, ref_cov, atol=1e-6, rtol=0)
    assert np.abs(cov - ref_cov).max() < 1e-12  # in fact exact up to rounding


def test_delong_contrast_of_two_is_delong_test_and_of_seed_means_is_its_reference():
    rng = np.random.default_rng(5)
    n = 300
    y = (rng.random(n) < 0.4).astype(int)
    a, b = y + rng.normal(size=n), 1.3 * y + rng.normal(size=n)
    t = stats.delong_test(y, a, b)
    c = stats.delong_contrast(y, np.stack([a, b]), [-1, 1])
    for key in ("delta", "se", "z", "p_value", "ci_low", "ci_high"):
        assert c[key] == pytest.approx(t[key], abs=1e-12)
    # three seeds of a baseline, two of a challenger: the seed-mean difference
    scores = np.stack([y * w + rng.normal(size=n) for w in (1.0, 1.1, 0.9, 1.4, 1.5)])
    contrast = np.r_[np.full(3, -1 / 3), np.full(2, 1 / 2)]
    r = stats.delong_contrast(y, scores, contrast)
    auc, cov = _reference_delong(y, scores)
    se = np.sqrt(contrast @ cov @ contrast)
    assert r["delta"] == pytest.approx(contrast @ auc, abs=1e-12)
    assert r["se"] == pytest.approx(se, abs=1e-9)
    assert r["p_value"] == pytest.approx(2 * norm.sf(abs(contrast @ auc) / se), abs=1e-9)
    with pytest.raises(ValueError, match="one weight per score column"):
        stats.delong_contrast(y, scores, [1, -1])


def _reference_seed_bootstrap(y, s1, s2, n_boot, seed, stratified, metric):
    """Per replicate, per seed, per class: the metric by scikit-learn/scipy on the resampled rows."""
    rng = np.random.default_rng(seed)
    idx = _draw_indices(rng, _strata(y, stratified), len(y), n_boot)  # one block, as the kit draws them
    c = y.shape[1] if y.ndim == 2 else 1

    def value(yy, ss, j):
        if metric == "auroc":
            yj = yy[:, j] if yy.ndim == 2 else yy
            sj = ss[:, j] if ss.ndim == 2 else ss
            return roc_auc_score(yj, sj) if 0 < yj.sum() < len(yj) else np.nan
        return spearmanr(yy, ss).statistic

    def delta(rows):
        d = np.array([np.nanmean([value(y[rows], s[rows], j) for s in s2])
                      - np.nanmean([value(y[rows], s[rows], j) for s in s1]) for j in range(c)])
        return np.r_[d, np.nanmean(d)]

    point = delta(np.arange(len(y)))
    reps = np.array([delta(r) for r in idx])
    lo, hi = np.quantile(reps, [0.025, 0.975], axis=0)
    p = (1 + (np.abs(reps - point) >= np.abs(point)).sum(axis=0)) / (n_boot + 1)
    return point, lo, hi, np.minimum(p, 1.0)


def test_seed_bootstrap_auroc_matches_a_scikit_learn_loop():
    rng = np.random.default_rng(11)
    n, c = 150, 3
    y = (rng.random((n, c)) < [0.1, 0.3, 0.5]).astype(int)
    s1 = np.stack([y * 0.6 + rng.normal(size=(n, c)) for _ in range(2)])
    s2 = np.stack([y * 0.9 + rng.normal(size=(n, c)) for _ in range(3)])
    r = stats.seed_paired_bootstrap(y, s1, s2, "auroc", n_boot=200, seed=4)
    point, lo, hi, p = _reference_seed_bootstrap(y, s1, s2, 200, 4, True, "auroc")
    np.testing.assert_allclose(r["delta"], point[:c], atol=1e-9)
    np.testing.assert_allclose(r["ci_low"], lo[:c], atol=1e-9)
    np.testing.assert_allclose(r["ci_high"], hi[:c], atol=1e-9)
    np.testing.assert_allclose(r["p_value"], p[:c], atol=1e-12)
    assert r["mean"]["delta"] == pytest.approx(point[c], abs=1e-9)
    assert (r["mean"]["ci_low"], r["mean"]["ci_high"]) == pytest.approx((lo[c], hi[c]), abs=1e-9)
    assert r["metric1"].shape == (2, c) and r["metric2"].shape == (3, c)
    np.testing.assert_allclose(r["metric2"][1], [roc_auc_score(y[:, j], s2[1][:, j]) for j in range(c)], atol=1e-12)


def test_seed_bootstrap_srcc_matches_a_scipy_loop_and_one_seed_equals_the_pairwise_bootstraps():
    rng = np.random.default_rng(2)
    n = 60
    t = rng.normal(size=n)
    s1 = np.stack([t + rng.normal(size=n) for _ in range(2)])
    s2 = np.stack([t + 0.5 * rng.normal(size=n) for _ in range(2)])
    r = stats.seed_paired_bootstrap(t, s1, s2, "srcc", n_boot=150, seed=1)
    point, lo, hi, p = _reference_seed_bootstrap(t, s1, s2, 150, 1, False, "srcc")
    assert r["mean"]["delta"] == pytest.approx(point[1], abs=1e-12)
    assert (r["ci_low"][0], r["ci_high"][0]) == pytest.approx((lo[0], hi[0]), abs=1e-9)
    assert r["p_value"][0] == pytest.approx(p[0], abs=1e-12)
    one = stats.seed_paired_bootstrap(t, s1[:1], s2[:1], "srcc", n_boot=150, seed=1)
    pair = stats.paired_bootstrap_correlation(t, s1[0], s2[0], "srcc", n_boot=150, seed=1)
    assert (one["mean"]["ci_low"], one["mean"]["ci_high"], one["mean"]["p_value"]) == \
        pytest.approx((pair["ci_low"], pair["ci_high"], pair["p_value"]), abs=1e-12)
    y = (t > 0).astype(int)
    one = stats.seed_paired_bootstrap(y, s1[:1], s2[:1], "auroc", n_boot=150, seed=1)
    pair = stats.paired_bootstrap(y, s1[0], s2[0], "auroc", n_boot=150, seed=1)
    assert (one["mean"]["delta"], one["mean"]["ci_low"], one["mean"]["ci_high"], one["mean"]["p_value"]) == \
        pytest.approx((pair["delta"], pair["ci_low"], pair["ci_high"], pair["p_value"]), abs=1e-12)


def test_bca_interval_is_scipys_with_a_straightforward_statistic():
    rng = np.random.default_rng(8)
    n = 80
    y = (rng.random(n) < 0.4).astype(int)
    s1 = np.stack([y * 0.5 + rng.normal(size=n) for _ in range(2)])
    s2 = np.stack([y * 1.0 + rng.normal(size=n) for _ in range(2)])
    r = stats.seed_paired_bootstrap(y, s1, s2, "auroc", n_boot=300, seed=6, ci_method="bca")

    def statistic(idx):  # one resample at a time, scikit-learn
        idx = idx.astype(int)
        return (np.mean([roc_auc_score(y[idx], s[idx]) for s in s2])
                - np.mean([roc_auc_score(y[idx], s[idx]) for s in s1]))

    ref = sps.bootstrap((np.arange(n),), statistic, vectorized=False, method="BCa", n_resamples=300,
                        rng=np.random.default_rng(6))
    assert r["ci_method"] == "bca"
    assert r["mean"]["ci_low"] == pytest.approx(ref.confidence_interval.low, abs=1e-9)
    assert r["mean"]["ci_high"] == pytest.approx(ref.confidence_interval.high, abs=1e-9)
    pct = stats.seed_paired_bootstrap(y, s1, s2, "auroc", n_boot=300, seed=6)
    assert r["mean"]["p_value"] == pct["mean"]["p_value"]  # the p-value is the percentile resamples' either way


def test_bca_refuses_a_large_test_set_and_bad_arguments_are_named():
    y = np.r_[np.zeros(3000), np.ones(3000)].astype(int)
    s = np.random.default_rng(0).normal(size=(1, 6000))
    with pytest.raises(ValueError, match="limited to 5000"):
        stats.seed_paired_bootstrap(y, s, s, "auroc", n_boot=100, ci_method="bca")
    with pytest.raises(ValueError, match="ci_method"):
        stats.seed_paired_bootstrap(y, s, s, ci_method="basic")
    with pytest.raises(ValueError, match="unknown metric"):
        stats.seed_paired_bootstrap(y, s, s, metric="f1")
    with pytest.raises(ValueError, match=r"\(seeds, N\)"):
        stats.seed_paired_bootstrap(y, s[:, :10], s)


def test_independent_seed_combination():
    """Seeds with their own test sets: the replicates of independent bootstraps are averaged
    row-wise, and DeLong's standard errors add in quadrature."""
    rng = np.random.default_rng(4)
    per = []
    for k in range(3):
        n = 100 + 10 * k
        y = (rng.random(n) < 0.4).astype(int)
        per.append(stats.seed_paired_bootstrap(y, (y + rng.normal(size=n))[None], (2 * y + rng.normal(size=n))[None],
                                               n_boot=150, seed=k))
    comb = stats.independent_seed_bootstrap(per)
    reps = np.mean([r["replicates"][:, -1] for r in per], axis=0)
    point = np.mean([r["mean"]["delta"] for r in per])
    assert comb["mean"]["delta"] == pytest.approx(point, abs=1e-15)
    assert (comb["mean"]["ci_low"], comb["mean"]["ci_high"]) == pytest.approx(tuple(np.quantile(reps, [0.025, 0.975])),
                                                                              abs=1e-12)
    r = stats.independent_delong([0.02, 0.04, np.nan], [0.01, 0.02, 0.5])
    se = np.sqrt(0.01 ** 2 + 0.02 ** 2) / 2
    assert r["n"] == 2 and r["delta"] == pytest.approx(0.03) and r["se"] == pytest.approx(se)
    assert r["p_value"] == pytest.approx(2 * norm.sf(0.03 / se))


def _tpr_at_1pct(y, s):
    from lfakit.metrics.privacy import tpr_at_fpr

    return tpr_at_fpr(y.astype(bool), s, 0.01) if 0 < y.sum() < len(y) else np.nan


def _pools(rng, n_all, n, seeds):
    out = []
    for _ in range(seeds):
        ids = np.sort(rng.choice(n_all, n, replace=False))
        y = (rng.random(n) < 0.5).astype(int)  # each seed its own membership split
        out.append((ids, y, y * 0.5 + rng.normal(size=n), y * 1.2 + rng.normal(size=n)))
    return out


def test_union_bootstrap_of_identical_pools_is_the_shared_pool_bootstrap():
    rng = np.random.default_rng(7)
    ids = np.arange(300)
    seeds = [(ids, *p[1:]) for p in _pools(rng, 300, 300, 3)]
    u = stats.union_seed_bootstrap(*zip(*seeds), metric=roc_auc_score, n_boot=200, seed=3)
    y, s1, s2 = (np.stack([p[i] for p in seeds]) for i in (1, 2, 3))
    ref = stats.seed_paired_bootstrap(y, s1, s2, roc_auc_score, n_boot=200, seed=3, per_seed_targets=True)
    np.testing.assert_allclose(u["replicates"][:, 0], ref["replicates"][:, 0], rtol=0, atol=1e-12)
    for key in ("delta", "ci_low", "ci_high", "p_value"):
        np.testing.assert_allclose(u[key], ref[key], rtol=0, atol=1e-12)


def test_union_bootstrap_draws_a_shared_instance_for_every_seed_that_has_it():
    """Written out: per replicate, draw the union with replacement and score each seed on the
    drawn instances of its pool (as often as drawn); the mean over seeds of the differences."""
    rng = np.random.default_rng(11)
    seeds = _pools(rng, 500, 300, 3)  # pools overlap by about 60%
    u = stats.union_seed_bootstrap(*zip(*seeds), metric=_tpr_at_1pct, n_boot=50, seed=5)
    union = np.unique(np.concatenate([p[0] for p in seeds]))
    draws = np.random.default_rng(5).integers(0, len(union), size=(50, len(union)))
    ref = []
    for d in draws:
        picked = union[d]
        per_seed = []
        for ids, y, s1, s2 in seeds:
            where = {v: i for i, v in enumerate(ids)}
            rows = np.array([where[v] for v in picked if v in where])
            per_seed.append(_tpr_at_1pct(y[rows], s2[rows]) - _tpr_at_1pct(y[rows], s1[rows]))
        ref.append(np.mean(per_seed))
    np.testing.assert_allclose(u["replicates"][:, 0], ref, rtol=0, atol=1e-12)
    point = np.mean([_tpr_at_1pct(y, s2) - _tpr_at_1pct(y, s1) for _, y, s1, s2 in seeds])
    assert u["delta"][0] == pytest.approx(point, abs=1e-12)
    lo, hi = np.quantile(ref, [0.025, 0.975])
    assert (u["ci_low"][0], u["ci_high"][0]) == pytest.approx((lo, hi), abs=1e-12)
    with pytest.raises(ValueError, match="seed 1: 300 ids but 299 targets"):
        stats.union_seed_bootstrap([seeds[0][0], seeds[1][0]], [seeds[0][1], seeds[1][1][:-1]],
                                   [seeds[0][2], seeds[1][2]], [seeds[0][3], seeds[1][3]], _tpr_at_1pct)


def test_union_bootstrap_leaves_an_undefined_seed_out_of_a_replicate_as_the_shared_bootstrap_does():
    """12 instances: some replicates draw a single class for some seed (AUROC undefined there);
    that seed is left out of the replicate's mean, in both bootstraps alike."""
    rng = np.random.default_rng(2)
    ids = np.arange(12)
    seeds = []
    for _ in range(3):  # two members of 12: a resample often draws none for some seed
        y = np.zeros(12, int)
        y[rng.choice(12, 2, replace=False)] = 1
        seeds.append((ids, y, y * 0.5 + rng.normal(size=12), y * 1.2 + rng.normal(size=12)))

    def auc(y, s):
        return roc_auc_score(y, s) if 0 < y.sum() < len(y) else np.nan

    u = stats.union_seed_bootstrap(*zip(*seeds), metric=auc, n_boot=300, seed=1)
    y, s1, s2 = (np.stack([p[i] for p in seeds]) for i in (1, 2, 3))
    ref = stats.seed_paired_bootstrap(y, s1, s2, auc, n_boot=300, seed=1, per_seed_targets=True)
    draws = _draw_indices(np.random.default_rng(1), [np.arange(12)], 12, 300)
    undefined = [any(not 0 < p[1][d].sum() < 12 for p in seeds) for d in draws]
    assert 10 < sum(undefined) < 300  # the case this test is about does occur
    np.testing.assert_allclose(u["replicates"][:, 0], ref["replicates"][:, 0], rtol=0, atol=1e-12)
    assert u["n_boot"] == ref["n_boot"]
