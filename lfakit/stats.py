"""Statistics for comparing two sets of predictions on the same instances.

* :func:`delong_test` -- paired DeLong test of two correlated AUROCs (binary labels), in
  the fast ``O(N log N)`` mid-rank form of Sun & Xu (2014).
* :func:`paired_bootstrap` -- paired bootstrap of a metric difference, resampling instances
  (rows). For ``metric="auroc"`` it runs fully vectorised: every replicate is a vector of
  resampling counts and the AUROC of all replicates is computed at once from one sort of
  each score column, without calling scikit-learn in a loop.
* :func:`paired_bootstrap_correlation` -- the same for a rank or linear correlation with a
  continuous target (IQA's SRCC / PLCC against the MOS), vectorised over replicates.
* :func:`delong_covariance` / :func:`delong_contrast` -- the DeLong covariance of several
  AUROCs on the same instances and the test of a contrast of them (the difference of two
  methods' seed-mean AUROCs).
* :func:`seed_paired_bootstrap` -- the paired bootstrap of that seed-mean difference, per class
  and for the mean over classes; percentile (the kit's resamples) or BCa (``scipy.stats.bootstrap``).
* :func:`aggregate_seeds` -- mean, standard deviation, count and t-interval over seeds.
* :func:`seed_level_test` (and :func:`seed_level_auroc`, :func:`seed_level_auroc_independent`,
  :func:`replicate_covariance`) -- two losses compared over their trained models, the
  seed-to-seed spread added to the test-set variance: the test behind every Winner.

All differences are ``second - first`` (``s2 - s1``): pass the baseline first.
"""

from __future__ import annotations

import math
import warnings
from typing import Callable, Sequence

import numpy as np
import pandas as pd
from scipy.stats import norm, rankdata
from scipy.stats import t as student_t

from lfakit.metrics.classification import (
    UndefinedMetricWarning,
    as_labels,
    as_scores,
    auroc_columns,
)

__all__ = ["delong_test", "delong_covariance", "delong_contrast", "paired_bootstrap", "paired_bootstrap_correlation",
           "seed_paired_bootstrap", "independent_seed_bootstrap", "independent_delong", "aggregate_seeds", "holm", "corrected_resampled_ttest",
           "seed_level_test", "seed_level_auroc", "seed_level_auroc_independent", "replicate_covariance"]

# Elements of one (replicates x instances) block in the vectorised bootstrap; bounds memory.
_BLOCK_ELEMENTS = 2_000_000


#: the fewest positives (and negatives) for which a test of ONE pair of trained models (DeLong,
#: test-set sampling only) is reported: with fewer its normal approximation is liberal (simulated
#: type-I rates 21% at 2 positives, 10% at 5, 7.4% at 10, 5.1% at 20), so such a class is
#: "not tested" there. The seed-level t needs no such floor (the seeds' spread carries it).
MIN_TEST_SET_LABELS = 20


def too_few_labels(y) -> str | None:
    """Why a one-pair test of class ``y`` (0/1) is not reported, or None when it is."""
    yb = np.asarray(y).astype(bool)
    m, n = int(yb.sum()), int((~yb).sum())
    if min(m, n) >= MIN_TEST_SET_LABELS:
        return None
    which = f"{m} positives" if m < n else f"{n} negatives"
    return f"not tested: {which} (< {MIN_TEST_SET_LABELS})"


# --------------------------------------------------------------------------- DeLong


def _binary_labels(y) -> np.ndarray:
    arr = as_labels(y, "y")
    if arr.shape[1] != 1:
        raise ValueError(
            f"this test needs 1-D binary labels; got shape {np.shape(y)}. "
            "Call it once per class for multi-label data."
        )
    return arr[:, 0]


def delong_covariance(y, scores) -> tuple[np.ndarray, np.ndarray, int, int]:
    """AUROCs of ``K`` score columns on the same instances and their DeLong (1988) covariance.

    ``y``: (N,) 0/1 labels; ``scores``: (K, N). Returns ``(auc (K,), cov (K, K), m, n)`` with
    ``m`` positives and ``n`` negatives, in the mid-rank form of Sun & Xu (2014): the structural
    components come from three rankings per column, ``O(K N log N)``, instead of the ``m x n``
    comparison matrix. ``cov`` is NaN when ``m < 2`` or ``n < 2``."""
    yb = _binary_labels(y)
    sc = np.asarray(scores, dtype=float)
    if sc.ndim != 2 or sc.shape[1] != yb.shape[0]:
        raise ValueError(f"scores must be (K, N) with N = {yb.shape[0]} instances; got shape {sc.shape}")
    m = int(yb.sum())
    n = yb.shape[0] - m
    if m == 0 or n == 0:
        raise ValueError("the DeLong test needs both positive and negative labels in y.")
    pos, neg = sc[:, yb], sc[:, ~yb]
    tx = rankdata(pos, axis=1)  # mid-ranks among positives
    ty = rankdata(neg, axis=1)  # mid-ranks among negatives
    tz = rankdata(np.concatenate([pos, neg], axis=1), axis=1)  # among all
    # Structural components: for each positive, the fraction of negatives ranked below it
    # (ties 1/2); for each negative, the fraction of positives ranked above it.
    v_pos = (tz[:, :m] - tx) / n
    v_neg = 1.0 - (tz[:, m:] - ty) / m
    aucs = v_pos.mean(axis=1)
    if m < 2 or n < 2:
        return aucs, np.full((sc.shape[0],) * 2, np.nan), m, n
    cov = np.atleast_2d(np.cov(v_pos)) / m + np.atleast_2d(np.cov(v_neg)) / n
    return aucs, cov, m, n


def delong_contrast(y, scores, contrast, ci: float = 0.95) -> dict:
    """DeLong's test of a contrast ``c . AUROC`` of ``K`` correlated AUROCs on the same instances.

    ``scores`` (K, N), ``contrast`` (K,). The variance of ``c . auc`` is ``c' S c`` with the
    DeLong covariance ``S`` (:func:`delong_covariance`); ``z = c . auc / sqrt(c' S c)``,
    two-sided normal p-value. With ``c = (-1, +1)`` it is :func:`delong_test`. The comparison
    over seeds uses ``c = (-1/S, ..., -1/S, +1/S, ..., +1/S)``: the difference of the seed-mean
    AUROCs of two methods whose ``S`` seeds were all scored on the same test set, their
    correlations (the shared test set) included. Returns ``delta``, ``se``, ``z``, ``p_value``,
    ``ci_low``, ``ci_high`` and ``auc`` (K,); see :func:`delong_test` for the ``se == 0`` and
    too-few-labels cases."""
    c = np.asarray(contrast, dtype=float)
    aucs, cov, m, n = delong_covariance(y, scores)
    if c.shape != aucs.shape:
        raise ValueError(f"contrast must have one weight per score column ({aucs.shape[0]}); got shape {c.shape}")
    delta = float(c @ aucs)
    if m < 2 or n < 2:
        warnings.warn(
            f"DeLong variance needs >= 2 positives and >= 2 negatives (got {m}, {n}); "
            "se and p-value are NaN.",
            UndefinedMetricWarning,
            stacklevel=2,
        )
        se = z = p = lo = hi = math.nan
    else:
        se = math.sqrt(max(float(c @ cov @ c), 0.0))
        z, p, lo, hi = _normal_test(delta, se, ci)
    return {"delta": delta, "se": se, "z": z, "p_value": p, "ci_low": lo, "ci_high": hi, "auc": aucs}


def _normal_test(delta: float, se: float, ci: float) -> tuple[float, float, float, float]:
    """``(z, two-sided p, ci_low, ci_high)`` of a normal test of ``delta`` with standard error
    ``se``; ``se == 0`` gives ``z = 0, p = 1`` for ``delta == 0`` and, otherwise, ``z = +-inf`` and
    **no** p-value (NaN): a zero standard error is a degenerate estimate (a constant score, a
    perfectly separated class with a handful of positives), not certainty, so it never yields
    p = 0. A NaN ``delta`` or ``se`` (a score that is NaN) gives NaN throughout: nothing was tested."""
    if math.isnan(delta) or math.isnan(se):
        return math.nan, math.nan, math.nan, math.nan
    if se > 0.0:
        z = delta / se
        p = float(2.0 * norm.sf(abs(z)))
    else:
        z = 0.0 if delta == 0.0 else math.copysign(math.inf, delta)
        p = 1.0 if delta == 0.0 else math.nan
    half = float(norm.ppf(0.5 + ci / 2.0)) * se
    return z, p, delta - half, delta + half


def delong_test(y, s1, s2, ci: float = 0.95) -> dict:
    """Paired two-sided DeLong test of ``AUROC(s2) - AUROC(s1)`` on the same instances.

    Parameters
    ----------
    y : array (N,) of 0/1 labels.
    s1, s2 : arrays (N,) of scores of the two models (``s1`` is the reference/baseline).
    ci : confidence level of the normal interval for the difference.

    Returns
    -------
    dict with ``auc1``, ``auc2`` (equal to ``roc_auc_score``), ``delta = auc2 - auc1``,
    ``se`` (its DeLong standard error), ``z``, ``p_value`` and ``ci_low``/``ci_high``
    (``delta -/+ z_{(1+ci)/2} * se``). When ``se == 0`` (e.g. identical scores) the result
    is ``z = 0, p = 1`` if ``delta == 0`` and ``z = +-inf`` with no p-value (NaN) otherwise. With fewer
    than two positives or negatives the variance is undefined: ``se``, ``z``, ``p_value``
    and the interval are NaN (with a warning).
    """
    yb = _binary_labels(y)
    a = as_scores(s1, (yb.shape[0], 1), "s1")[:, 0]
    b = as_scores(s2, (yb.shape[0], 1), "s2")[:, 0]
    if yb.all() or not yb.any():
        raise ValueError("delong_test needs both positive and negative labels in y.")
    r = delong_contrast(yb, np.stack([a, b]), [-1.0, 1.0], ci)
    return {"auc1": float(r["auc"][0]), "auc2": float(r["auc"][1]), "delta": r["delta"], "se": r["se"], "z": r["z"],
            "p_value": r["p_value"], "ci_low": r["ci_low"], "ci_high": r["ci_high"]}


# --------------------------------------------------------------------------- bootstrap


def _strata(y: np.ndarray, stratified: bool) -> list[np.ndarray]:
    """Row-index groups resampled separately (one group = plain bootstrap).

    * 1-D labels: one stratum per label value (positives and negatives keep their counts).
    * N x C 0/1 labels: each row is put in the stratum of its **rarest positive class**
      (rows without positives form one more stratum). Every class that is some row's
      rarest positive therefore keeps at least that many positives in every replicate, so
      rare classes cannot vanish from a resample.
    """
    n = y.shape[0]
    if not stratified:
        return [np.arange(n)]
    if y.ndim == 1:
        discrete = y.dtype == bool or np.issubdtype(y.dtype, np.integer)
        if not discrete and np.issubdtype(y.dtype, np.floating):
            discrete = bool(np.all(np.isfinite(y)) and np.all(y == np.round(y)))
        if not discrete:
            raise ValueError(
                "stratified=True needs discrete class labels in y; "
                "pass stratified=False for continuous targets."
            )
        _, key = np.unique(y, return_inverse=True)
    else:
        yb = as_labels(y, "y")
        prevalence = yb.sum(axis=0)
        # Rank classes from rarest to most frequent (stable: ties by column index).
        rarity = np.argsort(np.argsort(prevalence, kind="stable"), kind="stable")
        masked = np.where(yb, rarity[None, :], yb.shape[1])
        key = masked.min(axis=1)  # == C for rows with no positive label
    return [np.flatnonzero(key == k) for k in np.unique(key)]


def _draw_indices(rng: np.random.Generator, strata, n: int, b: int) -> np.ndarray:
    """``b`` bootstrap index vectors of length ``n`` (resampling within each stratum)."""
    out = np.empty((b, n), dtype=np.int64)
    start = 0
    for idx in strata:
        k = len(idx)
        out[:, start : start + k] = idx[rng.integers(0, k, size=(b, k))]
        start += k
    return out


def _replicate_blocks(n_boot: int, n: int):
    """Block sizes of replicates; a fixed function of (n_boot, n), hence deterministic."""
    size = max(1, min(n_boot, _BLOCK_ELEMENTS // max(n, 1)))
    done = 0
    while done < n_boot:
        b = min(size, n_boot - done)
        yield b
        done += b


def _counts(idx: np.ndarray, n: int) -> np.ndarray:
    """Turn a (b, n) index matrix into (b, n) int64 resampling counts (rows sum to n)."""
    b = idx.shape[0]
    flat = (idx + (np.arange(b) * n)[:, None]).ravel()
    return np.bincount(flat, minlength=b * n).reshape(b, n)


class _SortedColumn:
    """One score column sorted once; gives the weighted AUROC of many count vectors.

    With resampling counts ``w`` (each row sums to N), the weighted Mann-Whitney statistic
    is ``U = sum_{i positive} w_i * T_i - W_pos**2 / 2`` where ``T_i`` is the weight of all
    instances scored below ``i`` plus half the weight of its tie group (the weighted
    mid-rank shifted by 1/2). The same identity with ``w = 1`` is the usual rank-sum AUROC,
    and ties count 1/2 exactly as in scikit-learn. Everything is kept in integers
    (``2 T_i``) so the result is exact: one gather and one cumulative sum of a
    (replicates x N) block per column, plus one group sum when the column has ties.
    """

    def __init__(self, y: np.ndarray, s: np.ndarray):
        self.n = y.shape[0]
        self.order = np.argsort(s, kind="stable")
        s_sorted = s[self.order]
        pos_sorted = y[self.order]
        self.pos_at = np.flatnonzero(pos_sorted)  # sorted positions of the positives
        self.pos_rows = self.order[self.pos_at]  # their original row numbers
        new_group = np.r_[True, s_sorted[1:] != s_sorted[:-1]]
        self.ties = not new_group.all()
        if self.ties:
            self.starts = np.flatnonzero(new_group)
            self.group_of_pos = (np.cumsum(new_group) - 1)[self.pos_at]

    def auroc(self, w: np.ndarray, buf: tuple[np.ndarray, np.ndarray] | None = None):
        """AUROC for every row of counts ``w`` (b x N int64); ``buf``: two scratch arrays
        like ``w``, reused between calls to avoid allocating large blocks again."""
        if buf is None:
            buf = (np.empty_like(w), np.empty_like(w))
        ws = np.take(w, self.order, axis=1, out=buf[0])  # C-ordered, unlike w[:, order]
        if self.ties:
            group_w = np.add.reduceat(ws, self.starts, axis=1)
            two_t = 2 * np.cumsum(group_w, axis=1) - group_w  # 2 T per tie group
            two_t_pos = two_t[:, self.group_of_pos]
        else:
            two_t = np.cumsum(ws, axis=1, out=buf[1])
            two_t *= 2
            two_t -= ws
            two_t_pos = np.take(two_t, self.pos_at, axis=1)
        w_pos = np.take(w, self.pos_rows, axis=1)
        n_pos = w_pos.sum(axis=1)
        two_u = (w_pos * two_t_pos).sum(axis=1) - n_pos * n_pos
        den = 2.0 * n_pos * (w.sum(axis=1) - n_pos)  # rows sum to N for a bootstrap, N-1 for a jackknife
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(den > 0, two_u / den, np.nan)


def _nanmean_rows(a: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows -> NaN
        return np.nanmean(a, axis=1)


def paired_bootstrap(
    y,
    s1,
    s2,
    metric: str | Callable = "auroc",
    n_boot: int = 1000,
    seed: int = 0,
    stratified: bool = True,
    ci: float = 0.95,
) -> dict:
    """Paired bootstrap of ``metric(y, s2) - metric(y, s1)``, resampling instances.

    Parameters
    ----------
    y : labels, (N,) binary or (N, C) multi-label 0/1 (or any target for a callable metric
        with ``stratified=False``).
    s1, s2 : scores of the two models, same first dimension as ``y`` (``s1`` = baseline).
    metric : ``"auroc"`` (AUROC for 1-D ``y``; **mean per-class AUROC** for (N, C) ``y``,
        classes with an undefined AUROC skipped) -- computed vectorised over replicates --
        or any callable ``metric(y_rows, s_rows) -> float`` evaluated once per replicate.
    n_boot, seed : number of replicates and seed of ``numpy.random.default_rng``. The same
        seed draws the same resamples for every metric, so the fast path and a callable
        computing the same metric agree.
    stratified : resample within label strata (see ``_strata``: per class for 1-D labels,
        per rarest positive class for multi-label rows).
    ci : level of the percentile confidence interval.

    Returns
    -------
    dict with ``delta`` (on the full data), ``ci_low``/``ci_high`` (percentile interval of
    the replicate deltas), ``p_value`` (two-sided, from the replicate deltas shifted to mean
    ``delta``: ``(1 + #{|d_b - delta| >= |delta|}) / (B + 1)``), ``metric1``, ``metric2``
    and ``n_boot`` (replicates with a defined delta; others are dropped with a warning).
    """
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1; got {n_boot}.")
    y_arr = np.asarray(y)
    n = y_arr.shape[0]
    a = np.asarray(s1, dtype=float)
    b = np.asarray(s2, dtype=float)
    if a.shape[0] != n or b.shape[0] != n:
        raise ValueError(
            f"y, s1 and s2 must have the same number of rows; got {n}, {a.shape[0]}, "
            f"{b.shape[0]}."
        )
    rng = np.random.default_rng(seed)
    strata = _strata(y_arr, stratified)
    deltas = np.empty(n_boot)
    done = 0
    if isinstance(metric, str):
        if metric.lower() != "auroc":
            raise ValueError(f"unknown metric {metric!r}; use 'auroc' or a callable.")
        yb = as_labels(y_arr, "y")
        a2 = as_scores(a, yb.shape, "s1")
        b2 = as_scores(b, yb.shape, "s2")
        n_pos = yb.sum(axis=0)
        undefined = np.flatnonzero((n_pos == 0) | (n_pos == n))
        if undefined.size:
            warnings.warn(
                f"classes {undefined.tolist()} have a single label value; they are left out "
                "of the mean AUROC.",
                UndefinedMetricWarning,
                stacklevel=2,
            )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            m1 = float(np.nanmean(auroc_columns(yb, a2)))
            m2 = float(np.nanmean(auroc_columns(yb, b2)))
        cols1 = [_SortedColumn(yb[:, j], a2[:, j]) for j in range(yb.shape[1])]
        cols2 = [_SortedColumn(yb[:, j], b2[:, j]) for j in range(yb.shape[1])]
        for size in _replicate_blocks(n_boot, n):
            w = _counts(_draw_indices(rng, strata, n, size), n)
            buf = (np.empty_like(w), np.empty_like(w))
            auc1 = np.stack([c.auroc(w, buf) for c in cols1], axis=1)  # (size, C)
            auc2 = np.stack([c.auroc(w, buf) for c in cols2], axis=1)
            deltas[done : done + size] = _nanmean_rows(auc2) - _nanmean_rows(auc1)
            done += size
    elif callable(metric):
        m1 = float(metric(y_arr, a))
        m2 = float(metric(y_arr, b))
        for size in _replicate_blocks(n_boot, n):
            for rows in _draw_indices(rng, strata, n, size):
                deltas[done] = float(metric(y_arr[rows], b[rows])) - float(
                    metric(y_arr[rows], a[rows])
                )
                done += 1
    else:
        raise TypeError("metric must be 'auroc' or a callable metric(y, scores).")
    delta = m2 - m1
    ok = np.isfinite(deltas)
    if not ok.all():
        warnings.warn(
            f"{int((~ok).sum())} of {n_boot} bootstrap replicates gave an undefined metric "
            "and were dropped.",
            UndefinedMetricWarning,
            stacklevel=2,
        )
    d = deltas[ok]
    if d.size == 0 or not np.isfinite(delta):
        lo = hi = p = math.nan
    else:
        alpha = 1.0 - ci
        lo, hi = (float(v) for v in np.quantile(d, [alpha / 2.0, 1.0 - alpha / 2.0]))
        extreme = np.abs(d - delta) >= abs(delta)
        p = min(1.0, float((1 + extreme.sum()) / (d.size + 1)))
    return {
        "delta": float(delta),
        "ci_low": lo,
        "ci_high": hi,
        "p_value": p,
        "metric1": m1,
        "metric2": m2,
        "n_boot": int(d.size),
    }


def _rowwise_pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation of every row pair of two (B, n) arrays; NaN where a row is constant."""
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    den = np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (a * b).sum(axis=1) / den, np.nan)


_CORRELATIONS = ("srcc", "plcc")
_CORR_VECTOR_MAX_N = 500  # above it, one scipy call per replicate is as fast (benchmarks/bench_stats.py)


def paired_bootstrap_correlation(target, s1, s2, kind: str = "srcc", n_boot: int = 1000, seed: int = 0,
                                 ci: float = 0.95) -> dict:
    """Paired bootstrap of ``corr(s2, target) - corr(s1, target)``, resampling instances.

    ``kind``: ``"srcc"`` (Spearman: Pearson of average ranks, ties averaged as in
    ``scipy.stats.spearmanr``; a resample repeats rows, so ties are the rule) or ``"plcc"``
    (Pearson of the raw scores). Same resamples (``numpy.random.default_rng(seed)``), interval
    and p-value rule as :func:`paired_bootstrap` with ``stratified=False``, whose callable path
    it equals, computed for a block of replicates at once (``scipy.stats.rankdata`` along rows).
    Written here because ``scipy.stats.bootstrap`` re-evaluates ``spearmanr`` per replicate:
    measured (``benchmarks/bench_stats.py``) about 25x faster than that for a 51-image test set,
    but 0.8x for KonIQ-10k's 2,015 test images, where the sorting dominates; above
    ``_CORR_VECTOR_MAX_N`` instances it therefore runs the per-replicate path (the same numbers).
    Returns the dict of :func:`paired_bootstrap`.
    """
    if kind not in _CORRELATIONS:
        raise ValueError(f"kind must be one of {', '.join(_CORRELATIONS)}, got {kind!r}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1; got {n_boot}.")
    t = np.asarray(target, dtype=float).reshape(-1)
    a = np.asarray(s1, dtype=float).reshape(-1)
    b = np.asarray(s2, dtype=float).reshape(-1)
    n = t.size
    if a.size != n or b.size != n:
        raise ValueError(f"target, s1 and s2 must have the same length; got {n}, {a.size}, {b.size}.")
    if n < 3:
        raise ValueError(f"a bootstrap of a correlation needs at least 3 instances; got {n}.")
    if n > _CORR_VECTOR_MAX_N:
        from scipy import stats as _sps

        fn = (lambda y, v: _sps.spearmanr(y, v).statistic) if kind == "srcc" else (lambda y, v: _sps.pearsonr(y, v).statistic)
        return paired_bootstrap(t, a, b, metric=fn, n_boot=n_boot, seed=seed, stratified=False, ci=ci)
    rng = np.random.default_rng(seed)
    strata = [np.arange(n)]

    def corr(tt, ss):
        if kind == "srcc":
            tt, ss = rankdata(tt, axis=-1), rankdata(ss, axis=-1)
        return _rowwise_pearson(np.atleast_2d(tt), np.atleast_2d(ss))

    m1, m2 = float(corr(t, a)[0]), float(corr(t, b)[0])
    deltas = np.empty(n_boot)
    done = 0
    for size in _replicate_blocks(n_boot, n):
        idx = _draw_indices(rng, strata, n, size)
        deltas[done:done + size] = corr(t[idx], b[idx]) - corr(t[idx], a[idx])
        done += size
    delta = m2 - m1
    d = deltas[np.isfinite(deltas)]
    if d.size < n_boot:
        warnings.warn(f"{n_boot - d.size} of {n_boot} bootstrap replicates gave an undefined correlation "
                      "(a constant resample) and were dropped.", UndefinedMetricWarning, stacklevel=2)
    if d.size == 0 or not np.isfinite(delta):
        lo = hi = p = math.nan
    else:
        alpha = 1.0 - ci
        lo, hi = (float(v) for v in np.quantile(d, [alpha / 2.0, 1.0 - alpha / 2.0]))
        p = min(1.0, float((1 + (np.abs(d - delta) >= abs(delta)).sum()) / (d.size + 1)))
    return {"delta": float(delta), "ci_low": lo, "ci_high": hi, "p_value": p, "metric1": m1, "metric2": m2,
            "n_boot": int(d.size)}


# --------------------------------------------------------------------------- over seeds

_SEED_METRICS = ("auroc", "srcc", "plcc")
_BCA_MAX_N = 5000  # scipy's BCa jackknife evaluates the statistic N times on N - 1 instances


def _seed_stack(s, n: int, name: str) -> np.ndarray:
    a = np.asarray(s, dtype=float)
    if a.ndim == 1:
        a = a[None, :]
    if a.ndim not in (2, 3) or a.shape[1] != n:
        raise ValueError(f"{name} must be (seeds, N) or (seeds, N, C) with N = {n}; got shape {a.shape}")
    return a


class _SeedStatistic:
    """``mean over seeds of metric(s2) - metric(s1)`` per class, and its mean over classes, for
    any set of instance-index rows (a bootstrap or jackknife resample): the statistic of
    :func:`seed_paired_bootstrap`, vectorised over the rows."""

    def __init__(self, y: np.ndarray, s1: np.ndarray, s2: np.ndarray, metric, per_seed_targets: bool = False):
        self.metric, self.y, self.n = metric, y, y.shape[-1] if per_seed_targets else y.shape[0]
        self.per_seed = per_seed_targets
        if per_seed_targets:
            if not callable(metric) or y.ndim != 2 or not (y.shape[0] == s1.shape[0] == s2.shape[0]):
                raise ValueError("per_seed_targets needs a callable metric, targets (S, N) and S seeds of each method "
                                 f"(got targets {y.shape}, scores {s1.shape} and {s2.shape})")
            self.n_classes = 1
        elif metric == "auroc":
            yb = as_labels(y, "y")
            a = s1 if s1.ndim == 3 else s1[:, :, None]
            b = s2 if s2.ndim == 3 else s2[:, :, None]
            if a.shape[2] != yb.shape[1] or b.shape[2] != yb.shape[1]:
                raise ValueError(f"scores have {a.shape[2]} / {b.shape[2]} columns for {yb.shape[1]} label columns")
            self.n_classes = yb.shape[1]
            self.cols1 = [[_SortedColumn(yb[:, j], a[k, :, j]) for j in range(yb.shape[1])] for k in range(a.shape[0])]
            self.cols2 = [[_SortedColumn(yb[:, j], b[k, :, j]) for j in range(yb.shape[1])] for k in range(b.shape[0])]
        else:
            if s1.ndim != 2 or s2.ndim != 2:
                raise ValueError(f"metric {metric!r} takes one score per instance: (seeds, N) scores")
            self.n_classes = 1
            self.y = np.asarray(y, dtype=float).reshape(-1) if metric in ("srcc", "plcc") else y
        self.s1, self.s2 = s1, s2

    def _corr(self, idx: np.ndarray, s: np.ndarray) -> np.ndarray:
        t, v = self.y[idx], s[idx]
        if self.metric == "srcc":
            t, v = rankdata(t, axis=-1), rankdata(v, axis=-1)
        return _rowwise_pearson(np.atleast_2d(t), np.atleast_2d(v))

    def per_class(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Metric values (rows, seeds, classes) of both methods on the resamples ``idx`` (rows, n')."""
        if self.metric == "auroc":
            w = _counts(idx, self.n)
            buf = (np.empty_like(w), np.empty_like(w))
            m1 = np.stack([np.stack([c.auroc(w, buf) for c in seed], axis=1) for seed in self.cols1], axis=1)
            m2 = np.stack([np.stack([c.auroc(w, buf) for c in seed], axis=1) for seed in self.cols2], axis=1)
            return m1, m2
        if self.metric in ("srcc", "plcc"):
            m1 = np.stack([self._corr(idx, s) for s in self.s1], axis=1)[:, :, None]
            m2 = np.stack([self._corr(idx, s) for s in self.s2], axis=1)[:, :, None]
            return m1, m2
        f = self.metric
        if self.per_seed:  # seed k of both methods is scored against its own targets y[k]
            m1 = np.array([[[float(f(yk[r], s[r]))] for yk, s in zip(self.y, self.s1)] for r in idx])
            m2 = np.array([[[float(f(yk[r], s[r]))] for yk, s in zip(self.y, self.s2)] for r in idx])
            return m1, m2
        m1 = np.array([[[float(f(self.y[r], s[r]))] for s in self.s1] for r in idx])
        m2 = np.array([[[float(f(self.y[r], s[r]))] for s in self.s2] for r in idx])
        return m1, m2

    def deltas(self, idx: np.ndarray, keep: list | None = None) -> np.ndarray:
        """(rows, C + 1): the seed-mean delta per class, then its mean over the defined classes.
        ``keep``: a list that receives each model's values, ``(m1, m2)`` of shape (rows, S, C + 1)
        (the last column the model's mean over its defined classes)."""
        m1, m2 = self.per_class(np.atleast_2d(idx))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            d = np.nanmean(m2, axis=1) - np.nanmean(m1, axis=1)  # a seed with an undefined value is left out
            if keep is not None:
                keep.append(tuple(np.concatenate([m, np.nanmean(m, axis=2, keepdims=True)], axis=2) for m in (m1, m2)))
        return np.concatenate([d, _nanmean_rows(d)[:, None]], axis=1)


def seed_paired_bootstrap(y, s1, s2, metric="auroc", n_boot: int = 1000, seed: int = 0, stratified: bool = True,
                          ci: float = 0.95, ci_method: str = "percentile", per_seed_targets: bool = False) -> dict:
    """Paired bootstrap, over the shared test instances, of the difference of two methods' metric
    averaged over their seeds: ``mean_k metric(y, s2[k]) - mean_k metric(y, s1[k])``, per class and
    for the mean over classes.

    Every seed of both methods was scored on the same instances (rows aligned), so one resample
    of the instances is applied to all of them: the interval covers the test set's sampling
    variation of the seed-averaged difference, conditional on the trained models (the spread
    between seeds is reported beside it, not inside it).

    ``y``: (N,) or (N, C) labels, or the (N,) continuous target of a correlation; ``s1``, ``s2``:
    (S, N) or (S, N, C) scores (``s1`` the baseline; S may differ between the two). ``metric``:
    ``"auroc"`` (per label column, vectorised as in :func:`paired_bootstrap`, ties 1/2),
    ``"srcc"`` / ``"plcc"`` (vectorised as in :func:`paired_bootstrap_correlation`) or a callable
    ``metric(y_rows, s_rows) -> float`` evaluated per replicate and seed. ``stratified``
    resamples within label strata (AUROC only; ``_strata``). ``per_seed_targets=True``: ``y`` is
    (S, N), seed ``k`` of both methods has its own targets ``y[k]`` on the same N instances (a
    membership split drawn per seed), both methods have the same S seeds in the same order, and
    ``metric`` is a callable; resampling is unstratified.

    ``ci_method``: ``"percentile"`` (the kit's resamples, ``numpy.random.default_rng(seed)``; the
    same draws as :func:`paired_bootstrap`, so with one seed per method the results equal it), or
    ``"bca"``: ``scipy.stats.bootstrap(method="BCa")`` with this statistic, vectorised, on at
    most 5,000 instances (its jackknife evaluates the statistic once per instance), unstratified.
    The p-value is the kit's in both cases, from its percentile resamples:
    ``(1 + #{|d_b - delta| >= |delta|}) / (B + 1)``.

    Returns ``delta``, ``ci_low``, ``ci_high``, ``p_value`` (arrays over the C classes),
    ``mean`` (a dict of the same for the mean over classes), ``metric1``/``metric2`` ((S, C)
    per-seed values on the full data), ``n_boot``, and for :func:`seed_level_test`
    ``model_values`` (each method's (S, C + 1) values, the last column each model's mean over
    classes) and ``model_replicates`` (the same on every resample: (B, S, C + 1) per method).
    """
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1; got {n_boot}.")
    if ci_method not in ("percentile", "bca"):
        raise ValueError(f"ci_method must be 'percentile' or 'bca', got {ci_method!r}")
    if isinstance(metric, str) and metric not in _SEED_METRICS:
        raise ValueError(f"unknown metric {metric!r}; use one of {', '.join(_SEED_METRICS)} or a callable")
    y_arr = np.asarray(y)
    n = y_arr.shape[-1] if per_seed_targets else y_arr.shape[0]
    a, b = _seed_stack(s1, n, "s1"), _seed_stack(s2, n, "s2")
    stat = _SeedStatistic(y_arr, a, b, metric, per_seed_targets)
    strata = [np.arange(n)] if per_seed_targets else _strata(y_arr, stratified and metric == "auroc")
    full_idx = np.arange(n)[None, :]
    m1, m2 = stat.per_class(full_idx)
    models: list = []
    point = stat.deltas(full_idx, models)[0]  # (C + 1,)
    rng = np.random.default_rng(seed)
    reps = np.empty((n_boot, stat.n_classes + 1))
    done = 0
    for size in _replicate_blocks(n_boot, n):  # the blocks (hence draws) of paired_bootstrap
        reps[done:done + size] = stat.deltas(_draw_indices(rng, strata, n, size), models)
        done += size
    model_reps = tuple(np.concatenate([blk[j] for blk in models[1:]]) for j in (0, 1))
    lo, hi, p = _percentile_and_p(point, reps, ci)
    kept = np.isfinite(reps).sum(axis=0)
    if ci_method == "bca":
        if n > _BCA_MAX_N:
            raise ValueError(f"ci_method='bca' runs scipy's jackknife over all {n} instances (N statistics on N - 1 "
                             f"instances); it is limited to {_BCA_MAX_N}. Use ci_method='percentile'.")
        from scipy.stats import bootstrap as _scipy_bootstrap

        def statistic(idx, axis=-1):
            idx = np.moveaxis(np.asarray(idx, dtype=np.int64), axis, -1)
            out = stat.deltas(idx.reshape(-1, idx.shape[-1]))  # (rows, C + 1)
            return out.T.reshape(out.shape[1], *idx.shape[:-1])

        res = _scipy_bootstrap((np.arange(n),), statistic,
                               vectorized=True, method="BCa", n_resamples=n_boot, confidence_level=ci,
                               rng=np.random.default_rng(seed))
        lo = np.asarray(res.confidence_interval.low, dtype=float)
        hi = np.asarray(res.confidence_interval.high, dtype=float)
    if (kept < n_boot).any():
        warnings.warn(f"{int(n_boot - kept.min())} of {n_boot} bootstrap replicates gave an undefined metric for "
                      "some class and were dropped there.", UndefinedMetricWarning, stacklevel=2)
    return {**_seed_result(point, lo, hi, p), "metric1": m1[0], "metric2": m2[0], "n_boot": int(kept.min()),
            "ci_method": ci_method, "replicates": reps, "model_values": (models[0][0][0], models[0][1][0]),
            "model_replicates": model_reps}


def _percentile_and_p(point: np.ndarray, reps: np.ndarray, ci: float):
    """Per column of the (B, K) replicates: the percentile interval and the two-sided p-value
    ``(1 + #{|d_b - delta| >= |delta|}) / (B + 1)``; undefined replicates are left out."""
    alpha = 1.0 - ci
    lo, hi, p = (np.full(point.shape, np.nan) for _ in range(3))
    for j in range(point.size):
        d = reps[:, j][np.isfinite(reps[:, j])]
        if d.size and np.isfinite(point[j]):
            lo[j], hi[j] = np.quantile(d, [alpha / 2.0, 1.0 - alpha / 2.0])
            p[j] = min(1.0, float((1 + (np.abs(d - point[j]) >= abs(point[j])).sum()) / (d.size + 1)))
    return lo, hi, p


def _seed_result(point, lo, hi, p) -> dict:
    c = point.size - 1
    return {"delta": point[:c], "ci_low": lo[:c], "ci_high": hi[:c], "p_value": p[:c],
            "mean": {"delta": float(point[c]), "ci_low": float(lo[c]), "ci_high": float(hi[c]), "p_value": float(p[c])}}


def independent_seed_bootstrap(per_seed: Sequence[dict], ci: float = 0.95) -> dict:
    """Combine :func:`seed_paired_bootstrap` results of seeds that each have **their own** test set
    (``cf_ensemble`` draws data and split per seed): the seed-mean difference, and as its
    bootstrap distribution the mean over seeds of the seeds' replicates, which are independent
    draws (each seed resampled its own instances with its own stream). A seed whose difference is
    undefined for a class (the class is absent from its test set) is left out of that class's
    mean and replicates, as :func:`independent_delong` leaves it out; ``seeds`` says how many
    seeds each class's result covers. Returns ``delta``, ``ci_low``, ``ci_high``, ``p_value``,
    ``seeds`` (per class) and ``mean`` as :func:`seed_paired_bootstrap` does; the interval is
    percentile."""
    if not per_seed:
        raise ValueError("no per-seed results to combine")
    reps = np.stack([r["replicates"] for r in per_seed])  # (S, B, C + 1)
    points = np.stack([np.r_[r["delta"], r["mean"]["delta"]] for r in per_seed])  # (S, C + 1)
    kept = np.isfinite(points)
    n = kept.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        point = np.where(kept, points, 0.0).sum(axis=0) / n  # NaN where no seed is defined
        # a kept seed's undefined replicate makes the combined replicate undefined (it is dropped)
        combined = np.where(kept[:, None, :], reps, 0.0).sum(axis=0) / n
    lo, hi, p = _percentile_and_p(point, combined, ci)
    return {**_seed_result(point, lo, hi, p), "seeds": n[:-1], "n_boot": int(np.isfinite(combined).sum(axis=0).min()),
            "ci_method": "percentile"}


def union_seed_bootstrap(ids: Sequence, y: Sequence, s1: Sequence, s2: Sequence, metric, n_boot: int = 1000,
                         seed: int = 0, ci: float = 0.95) -> dict:
    """Paired bootstrap of ``mean_k metric(y[k], s2[k]) - metric(y[k], s1[k])`` when seed ``k``
    was scored on its own set of instances ``ids[k]`` and the sets **overlap** (the membership
    pools that the paper profile samples per seed from one data set share most of their images).

    Each replicate resamples the union of the instances once, with replacement, and every seed is
    scored on the resampled instances of its own set, each as often as it was drawn. An instance
    shared by several seeds is thus drawn for all of them together, which keeps the seeds'
    correlation through shared instances inside the interval. Identical sets with their ids in
    sorted order (as ``lfakit compare`` passes them) give exactly the draws and results of
    :func:`seed_paired_bootstrap` with ``per_seed_targets=True`` (its unstratified resamples).
    Disjoint sets give nearly independent resamples per seed: one multinomial draw over the
    union, so a seed's resample size varies around its set's size. As in
    :func:`seed_paired_bootstrap`, a seed whose metric is undefined in a replicate is left out
    of that replicate's mean over seeds.

    ``ids[k]``: (N_k,) unique sample ids of one kind (all strings or all integers; sorted or
    not); ``y[k]``, ``s1[k]``, ``s2[k]``: (N_k,)
    targets and the two methods' scores, rows aligned with ``ids[k]``; ``metric``: a callable
    ``metric(y_rows, s_rows) -> float``. Returns ``delta``, ``ci_low``, ``ci_high``, ``p_value``
    (one class), ``mean`` (the same), ``replicates``, ``n_boot``, ``model_values`` and
    ``model_replicates`` (each seed's model of each method: (S, 1) and (B, S, 1)) as
    :func:`seed_paired_bootstrap` does; the interval is percentile. Written here because no
    library bootstraps over a union of overlapping samples.
    """
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1; got {n_boot}.")
    if not (len(ids) == len(y) == len(s1) == len(s2)) or not ids:
        raise ValueError("ids, y, s1 and s2 need one entry per seed, the same number of each")
    ids = [np.asarray(a) for a in ids]
    union = np.unique(np.concatenate(ids))
    pos = []
    for k, a in enumerate(ids):
        if len(np.unique(a)) != len(a):
            raise ValueError(f"seed {k}: its sample ids are not unique")
        if not (len(y[k]) == len(s1[k]) == len(s2[k]) == len(a)):
            raise ValueError(f"seed {k}: {len(a)} ids but {len(y[k])} targets, {len(s1[k])} and {len(s2[k])} scores")
        pos.append(np.searchsorted(union, a))
    y = [np.asarray(v) for v in y]
    s1 = [np.asarray(v, dtype=float) for v in s1]
    s2 = [np.asarray(v, dtype=float) for v in s2]

    model_reps = np.empty((n_boot + 1, len(ids), 2))  # row 0: the full data; then each resample

    def delta(counts: np.ndarray | None, row: int) -> float:
        d = []
        for k in range(len(ids)):
            rows = slice(None) if counts is None else np.repeat(np.arange(len(ids[k])), counts[pos[k]])
            model_reps[row, k] = float(metric(y[k][rows], s1[k][rows])), float(metric(y[k][rows], s2[k][rows]))
            d.append(model_reps[row, k, 1] - model_reps[row, k, 0])
        d = np.asarray(d)
        return float(d[np.isfinite(d)].mean()) if np.isfinite(d).any() else math.nan  # undefined seeds left out

    n = len(union)
    point = np.full(2, delta(None, 0))
    rng = np.random.default_rng(seed)
    reps = np.empty((n_boot, 2))
    done = 0
    for size in _replicate_blocks(n_boot, n):  # the draws of seed_paired_bootstrap on n instances
        for idx in _draw_indices(rng, [np.arange(n)], n, size):
            reps[done] = delta(np.bincount(idx, minlength=n), done + 1)
            done += 1
    lo, hi, p = _percentile_and_p(point, reps, ci)
    kept = int(np.isfinite(reps[:, 0]).sum())
    if kept < n_boot:
        warnings.warn(f"{n_boot - kept} of {n_boot} bootstrap replicates gave an undefined metric for every seed and "
                      "were dropped.", UndefinedMetricWarning, stacklevel=2)
    return {**_seed_result(point, lo, hi, p), "n_boot": kept, "ci_method": "percentile", "replicates": reps,
            "model_values": (model_reps[0, :, :1], model_reps[0, :, 1:]),
            "model_replicates": (model_reps[1:, :, :1], model_reps[1:, :, 1:])}


def independent_delong(deltas, ses, ci: float = 0.95) -> dict:
    """DeLong tests of seeds with their own test sets, combined: the mean difference
    ``mean_k delta_k`` with standard error ``sqrt(sum_k se_k^2) / S`` (independent test sets, so
    the variances add), a two-sided normal p-value and interval. NaN entries are left out."""
    d, se = np.asarray(deltas, dtype=float), np.asarray(ses, dtype=float)
    ok = np.isfinite(d) & np.isfinite(se)
    if not ok.any():
        return {"delta": math.nan, "se": math.nan, "z": math.nan, "p_value": math.nan, "ci_low": math.nan,
                "ci_high": math.nan, "n": 0}
    d, se = d[ok], se[ok]
    delta = float(d.mean())
    s = math.sqrt(float((se ** 2).sum())) / d.size
    z, pv, lo, hi = _normal_test(delta, s, ci)
    return {"delta": delta, "se": s, "z": z, "p_value": pv, "ci_low": lo, "ci_high": hi, "n": int(d.size)}


# --------------------------------------------------------------------------- seeds


def aggregate_seeds(
    df: pd.DataFrame, by: str | Sequence[str], value: str, ci: float = 0.95
) -> pd.DataFrame:
    """Aggregate one value over seeds (or any repeated runs).

    Groups ``df`` by ``by`` and returns one row per group with ``mean``, ``std`` (sample,
    ddof=1), ``n`` (non-missing values) and the Student-t interval
    ``ci_low``/``ci_high`` = ``mean -/+ t_{(1+ci)/2, n-1} * std / sqrt(n)``
    (NaN when ``n < 2``). Groups are sorted by their keys.
    """
    keys = [by] if isinstance(by, str) else list(by)
    missing = [c for c in [*keys, value] if c not in df.columns]
    if missing:
        raise KeyError(f"columns not in the frame: {missing}; have {list(df.columns)}.")
    out = (
        df.groupby(keys, sort=True, dropna=False)[value]
        .agg(mean="mean", std="std", n="count")
        .reset_index()
    )
    n = out["n"].to_numpy(dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        tcrit = np.where(n >= 2, student_t.ppf(0.5 + ci / 2.0, np.maximum(n - 1, 1)), np.nan)
        half = tcrit * out["std"].to_numpy(dtype=float) / np.sqrt(n)
    out["ci_low"] = out["mean"] - half
    out["ci_high"] = out["mean"] + half
    out["n"] = out["n"].astype(int)
    return out


def holm(p_values) -> np.ndarray:
    """Holm's step-down adjustment of a family of p-values (statsmodels' ``multipletests``,
    ``method="holm"``): it controls the family-wise error rate, so "adjusted p < alpha" may be
    read for each member at once. NaN entries (untestable members) are left out of the family
    and stay NaN."""
    from statsmodels.stats.multitest import multipletests

    p = np.asarray(p_values, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    if ok.any():
        out[ok] = multipletests(p[ok], method="holm")[1]
    return out


def corrected_resampled_ttest(deltas, n_train: int, n_test: int, ci: float = 0.95) -> dict:
    """Nadeau & Bengio's (2003) corrected resampled t-test of paired differences from J random
    train/test re-splits of ONE data set.

    The re-splits share instances, so the J differences are positively correlated and the
    plain paired t-test (variance ``s^2 / J``) is anti-conservative. The correction uses
    ``(1/J + n_test/n_train) * s^2`` with the sample variance ``s^2`` (ddof=1) of the
    differences; ``t = mean / sqrt(that)`` on ``J - 1`` degrees of freedom, and the interval is
    ``mean -/+ t_{(1+ci)/2, J-1} * sqrt(that)``. Returns ``delta``, ``ci_low``, ``ci_high``,
    ``p_value`` and ``n`` (J); fewer than 2 differences give NaN. All differences equal: p = 1
    if they are 0, else NaN (no spread to test against). Written out here: scipy and
    statsmodels have no such test."""
    d = np.asarray(deltas, dtype=float)
    d = d[np.isfinite(d)]
    j = len(d)
    if n_train <= 0 or n_test <= 0:
        raise ValueError(f"n_train and n_test must be positive, got {n_train} and {n_test}")
    out = {"delta": float(d.mean()) if j else math.nan, "n": j}
    if j < 2:
        return {**out, "ci_low": math.nan, "ci_high": math.nan, "p_value": math.nan}
    var = (1.0 / j + n_test / n_train) * float(d.var(ddof=1))
    if var == 0:
        if out["delta"] == 0:
            return {**out, "ci_low": 0.0, "ci_high": 0.0, "p_value": 1.0}
        return {**out, "ci_low": math.nan, "ci_high": math.nan, "p_value": math.nan}
    se = math.sqrt(var)
    p = float(2 * student_t.sf(abs(out["delta"]) / se, j - 1))
    half = float(student_t.ppf(0.5 + ci / 2.0, j - 1)) * se
    return {**out, "ci_low": out["delta"] - half, "ci_high": out["delta"] + half, "p_value": p}


# --------------------------------------------------------------------------- over trained models


def _t_result(out: dict, delta: float, var: float, df_den: float, ci: float) -> dict:
    if var <= 0.0:
        return {**out, "se": 0.0, "reason": "no variance to test against (identical models, zero test-set variance)"}
    se = math.sqrt(var)
    df = var ** 2 / df_den if df_den > 0 else math.inf
    tstat = delta / se
    p = float(2.0 * student_t.sf(abs(tstat), df))
    half = float(student_t.ppf(0.5 + ci / 2.0, df)) * se
    return {**out, "se": se, "df": float(df), "t": float(tstat), "p_value": p, "ci_low": delta - half,
            "ci_high": delta + half}


#: the seeds' spread enters the degrees of freedom at this one-sided upper confidence level
SPREAD_CONFIDENCE = 0.9


def _upper_spread(s2: float, w: float, nu: int) -> float:
    """The per-seed variance ``tau2 + w`` at its :data:`SPREAD_CONFIDENCE` upper confidence bound
    from a sample variance ``s2`` on ``nu`` degrees of freedom (chi-square), never below ``w``."""
    from scipy.stats import chi2

    return max(nu * s2 / float(chi2.ppf(1.0 - SPREAD_CONFIDENCE, nu)), max(w, 0.0))


def _df(var: float, known: float, parts: list[tuple[float, int]]) -> float:
    """``df_den`` for :func:`_t_result` such that the degrees of freedom are Welch-Satterthwaite's
    for ``known + sum(a)`` with the estimated parts ``a`` (each on its ``nu`` df) taken at their
    upper confidence bound: ``(known + sum a)^2 / sum(a^2 / nu)``."""
    num = (known + sum(a for a, _ in parts)) ** 2
    den = sum(a * a / nu for a, nu in parts)
    if den <= 0.0 or num <= 0.0:
        return 0.0
    return var ** 2 * den / num


def _spread(vals: np.ndarray, block: np.ndarray) -> tuple[float, float, float]:
    """``(S2, w, tau2)``: the sample variance of ``vals``, the part of the test-set noise that
    differs between them (``block``'s mean variance minus its mean covariance), and the excess
    ``max(S2 - w, 0)``."""
    k = vals.size
    s2 = float(vals.var(ddof=1))
    w = float(np.trace(block) / k - (block.sum() - np.trace(block)) / (k * (k - 1)))
    return s2, w, max(s2 - w, 0.0)


def seed_level_test(values1, values2, cov, ci: float = 0.95, paired: bool = True) -> dict:
    """Two methods compared over their trained models (seeds), retraining noise included: the test
    behind every Winner of :mod:`lfakit.compare` and the notebooks' ``seeds`` tables.

    ``values1`` (K1,) and ``values2`` (K2,) are the metric of each trained model of the baseline and
    the challenger (one per seed); ``cov`` ((K1 + K2) x (K1 + K2), baseline first) is the
    covariance of those values over **test-set sampling** alone, conditional on the models:
    DeLong's (:func:`delong_covariance`) or that of bootstrap replicates that resampled the test
    instances once for every model (:func:`replicate_covariance`). Each value is ``mu_method + u +
    e``: ``u`` the model's retraining deviation (the seed-to-seed noise, variance ``tau2``), ``e``
    the test sample's error (covariance ``cov``).

    ``paired`` (the default; K1 == K2, the values aligned by seed): the per-seed differences
    ``D_k`` have test-set covariance ``L cov L'`` and sample variance ``S2``, whose expectation is
    ``tau2_D + w`` (``w``: the mean variance minus the mean covariance of the ``D_k``, the test-set
    noise that differs between seeds). ``tau2_D = max(S2 - w, 0)`` (moments) and the mean
    difference has variance ``1' L cov L' 1 / K^2 + tau2_D / K`` (the shared part of the test-set
    noise floored at 0: models of one loss are exchangeable draws). ``paired=False`` does the same
    per method (``tau2`` of each method, Welch's form) for methods whose seeds do not match. The
    statistic is referred to a t distribution with Welch-Satterthwaite degrees of freedom in which
    the part estimated from the seeds (``S2 / K``, on ``K - 1`` df) is taken at its
    :data:`SPREAD_CONFIDENCE` (90%) upper confidence bound, and the test-set part (from thousands
    of instances) as known. The plain Satterthwaite df credit a spread that came out small by
    chance, and named false Winners four times too often at p = 0.0033, the level Holm needs
    over 15 tests (3 seeds, R = 2, simulated); with the bound they stay at or below it. With no
    test-set noise the df are exactly ``K - 1`` (the paired t; Welch's df unpaired). The
    interval is ``delta -/+ t_df * se``: test and interval are one procedure.

    With one test set shared by every model its noise stays in the variance however many seeds
    there are; with a test set per seed it reduces to the t over seeds, with the test-set noise
    as the floor of the spread. Chosen over a t over seeds alone (blind to a shared test set's
    noise) and a two-level bootstrap (3-5 seeds give too few distinct resamples) by the
    simulations of :mod:`lfakit.seedsim` (``benchmarks/bench_seed_calibration.py``). Written here:
    no library combines a per-model DeLong or bootstrap covariance with a random seed effect.

    A model whose value is NaN (an undefined metric) is left out with its rows of ``cov`` (paired:
    with its partner). Fewer than two models (pairs) leave the seed-to-seed spread unmeasured: no
    p-value, ``reason`` says so. A zero standard error gives no p-value either, never p = 0.
    Returns ``delta``, ``se``, ``df``, ``t``, ``p_value``, ``ci_low``, ``ci_high``, ``tau2``,
    ``k`` (models or pairs used) and ``reason`` ("" when tested)."""
    v1, v2 = np.asarray(values1, dtype=float).ravel(), np.asarray(values2, dtype=float).ravel()
    cv = np.asarray(cov, dtype=float)
    k1, k2 = v1.size, v2.size
    if cv.shape != (k1 + k2,) * 2:
        raise ValueError(f"cov must be ({k1 + k2}, {k1 + k2}) for {k1} + {k2} values; got shape {cv.shape}")
    if paired and k1 != k2:
        raise ValueError(f"paired=True needs one value of each method per seed; got {k1} and {k2}")
    out = {"delta": math.nan, "se": math.nan, "df": math.nan, "t": math.nan, "p_value": math.nan,
           "ci_low": math.nan, "ci_high": math.nan, "tau2": math.nan, "k": 0, "reason": ""}
    if paired:
        ok = np.isfinite(v1) & np.isfinite(v2)
        k = int(ok.sum())
        if k == 0:
            return {**out, "reason": "no seed with a defined value for both methods"}
        d = v2[ok] - v1[ok]
        idx = np.flatnonzero(ok)
        lmat = np.zeros((k, k1 + k2))
        lmat[np.arange(k), idx] = -1.0
        lmat[np.arange(k), k1 + idx] = 1.0
        delta = float(d.mean())
        out.update(delta=delta, k=k)
        if k < 2:
            return {**out, "reason": "one trained model per method: the seed-to-seed spread is unmeasured"}
        cd = lmat @ cv @ lmat.T
        if not np.all(np.isfinite(cd)):
            return {**out, "reason": "the test-set covariance is undefined (too few labels of a kind)"}
        s2, w, tau2 = _spread(d, cd)
        out["tau2"] = tau2
        # the test-set part: w / k for the noise that differs between seeds, plus the shared part
        # (k - 1) c / k, floored at 0: models of one loss are exchangeable draws, whose differences
        # cannot covary negatively however many seeds are drawn (an estimate below 0 is noise)
        shared = max(float(cd.sum()) / k ** 2 - w / k, 0.0)
        var = max(w, 0.0) / k + shared + tau2 / k
        a_c = _upper_spread(s2, w, k - 1) / k
        return _t_result(out, delta, var, _df(var, shared, [(a_c, k - 1)]), ci)
    keep = np.r_[np.isfinite(v1), np.isfinite(v2)]
    k1, k2 = int(np.isfinite(v1).sum()), int(np.isfinite(v2).sum())
    v1, v2, cv = v1[np.isfinite(v1)], v2[np.isfinite(v2)], cv[np.ix_(keep, keep)]
    out["k"] = (k1, k2)
    if k1 == 0 or k2 == 0:
        return {**out, "reason": "no defined value for one of the methods"}
    delta = float(v2.mean() - v1.mean())
    out["delta"] = delta
    if k1 < 2 or k2 < 2:
        return {**out, "reason": "one trained model of a method: the seed-to-seed spread is unmeasured"}
    if not np.all(np.isfinite(cv)):
        return {**out, "reason": "the test-set covariance is undefined (too few labels of a kind)"}
    c = np.r_[np.full(k1, -1.0 / k1), np.full(k2, 1.0 / k2)]
    var, tau2, parts, known = max(float(c @ cv @ c), 0.0), [], [], max(float(c @ cv @ c), 0.0)
    for vals, block in ((v1, cv[:k1, :k1]), (v2, cv[k1:, k1:])):
        k = vals.size
        s2, w, t2 = _spread(vals, block)
        tau2.append(t2)
        var += t2 / k
        known -= max(w, 0.0) / k  # what remains of the test-set variance once the per-seed parts are taken out
        parts.append((s2, w, k))
    nu = min(k1, k2) - 1  # one inflation for both methods: with no test-set share the df are Welch's
    parts = [(_upper_spread(s2, w, nu) / k, k - 1) for s2, w, k in parts]
    out["tau2"] = tuple(tau2)
    return _t_result(out, delta, var, _df(var, max(known, 0.0), parts), ci)


def seed_level_auroc(y, s1, s2, ci: float = 0.95, paired: bool | None = None) -> dict:
    """:func:`seed_level_test` of AUROC when every model of both methods was scored on the **same**
    test instances: ``y`` (N,) 0/1, ``s1`` (K1, N) and ``s2`` (K2, N) the two methods' models' scores,
    paired by seed (rows aligned by seed) when ``paired`` is true, or, left None, when K1 == K2;
    else compared unpaired.
    The test-set covariance is DeLong's over all K1 + K2 models at once; adds ``auc1`` and ``auc2``
    (the models' AUROCs) to the result."""
    a1, a2 = np.atleast_2d(np.asarray(s1, dtype=float)), np.atleast_2d(np.asarray(s2, dtype=float))
    aucs, cov, m, n = delong_covariance(y, np.concatenate([a1, a2]))
    k1 = a1.shape[0]
    r = seed_level_test(aucs[:k1], aucs[k1:], cov, ci, paired=(k1 == a2.shape[0]) if paired is None else paired)
    if m < 2 or n < 2:
        r["reason"] = f"{m} positive(s) and {n} negative(s): DeLong needs at least 2 of each"
    return {**r, "auc1": aucs[:k1], "auc2": aucs[k1:]}


def seed_level_auroc_independent(ys, s1, s2, ci: float = 0.95) -> dict:
    """:func:`seed_level_test` of AUROC when each seed drew **its own, disjoint** test set: ``ys[k]``
    (N_k,) the labels of seed ``k``'s set, ``s1[k]`` and ``s2[k]`` (N_k,) the scores of the two
    methods' models of that seed on it (``None`` where a method has no model of that seed). The
    two models of one seed share their set, so their DeLong covariance enters; models of different
    seeds are independent. With one model per method and seed this is Welch's t over seeds with the
    models' DeLong variances as the floor of the spread. A seed whose set lacks the class leaves
    its models out."""
    if not (len(ys) == len(s1) == len(s2)):
        raise ValueError(f"ys, s1 and s2 need one entry per seed; got {len(ys)}, {len(s1)} and {len(s2)}")
    k = len(ys)
    vals = np.full(2 * k, np.nan)  # baseline models first, then the challenger's, seed by seed
    cov = np.zeros((2 * k, 2 * k))
    for i, (y, a, b) in enumerate(zip(ys, s1, s2)):
        y = np.asarray(y)
        rows = [(j, s) for j, s in ((i, a), (k + i, b)) if s is not None]
        if not rows or y.min() == y.max():
            continue  # the class is absent from this seed's test set
        auc, cv, _, _ = delong_covariance(y, np.stack([np.asarray(s, dtype=float) for _, s in rows]))
        idx = [j for j, _ in rows]
        vals[idx] = auc
        cov[np.ix_(idx, idx)] = cv
    return seed_level_test(vals[:k], vals[k:], cov, ci)


def replicate_covariance(reps1, reps2) -> np.ndarray:
    """The test-set covariance that :func:`seed_level_test` takes, from bootstrap replicates:
    ``reps1`` (B, K1) and ``reps2`` (B, K2) the models' metric on the same B resamples of the test
    instances (one resample applied to every model). Replicates with an undefined value are
    left out (pairwise complete)."""
    r = np.concatenate([np.asarray(reps1, dtype=float), np.asarray(reps2, dtype=float)], axis=1)
    return pd.DataFrame(r).cov(min_periods=2).to_numpy()
