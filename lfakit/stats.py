"""Statistics for comparing two sets of predictions on the same instances.

* :func:`delong_test` -- paired DeLong test of two correlated AUROCs (binary labels), in
  the fast ``O(N log N)`` mid-rank form of Sun & Xu (2014).
* :func:`paired_bootstrap` -- paired bootstrap of a metric difference, resampling instances
  (rows). For ``metric="auroc"`` it runs fully vectorised: every replicate is a vector of
  resampling counts and the AUROC of all replicates is computed at once from one sort of
  each score column, without calling scikit-learn in a loop.
* :func:`paired_bootstrap_correlation` -- the same for a rank or linear correlation with a
  continuous target (IQA's SRCC / PLCC against the MOS), vectorised over replicates.
* :func:`aggregate_seeds` -- mean, standard deviation, count and t-interval over seeds.

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

__all__ = ["delong_test", "paired_bootstrap", "paired_bootstrap_correlation", "aggregate_seeds", "holm",
           "corrected_resampled_ttest"]

# Elements of one (replicates x instances) block in the vectorised bootstrap; bounds memory.
_BLOCK_ELEMENTS = 2_000_000


# --------------------------------------------------------------------------- DeLong


def _binary_labels(y) -> np.ndarray:
    arr = as_labels(y, "y")
    if arr.shape[1] != 1:
        raise ValueError(
            f"this test needs 1-D binary labels; got shape {np.shape(y)}. "
            "Call it once per class for multi-label data."
        )
    return arr[:, 0]


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
    is ``z = 0, p = 1`` if ``delta == 0`` and ``z = +-inf, p = 0`` otherwise. With fewer
    than two positives or negatives the variance is undefined: ``se``, ``z``, ``p_value``
    and the interval are NaN (with a warning).
    """
    yb = _binary_labels(y)
    a = as_scores(s1, (yb.shape[0], 1), "s1")[:, 0]
    b = as_scores(s2, (yb.shape[0], 1), "s2")[:, 0]
    m = int(yb.sum())
    n = yb.shape[0] - m
    if m == 0 or n == 0:
        raise ValueError("delong_test needs both positive and negative labels in y.")
    scores = np.stack([a, b])  # (2, N)
    pos, neg = scores[:, yb], scores[:, ~yb]
    tx = rankdata(pos, axis=1)  # mid-ranks among positives
    ty = rankdata(neg, axis=1)  # mid-ranks among negatives
    tz = rankdata(np.concatenate([pos, neg], axis=1), axis=1)  # among all
    # Structural components: for each positive, the fraction of negatives ranked below it
    # (ties 1/2); for each negative, the fraction of positives ranked above it.
    v_pos = (tz[:, :m] - tx) / n
    v_neg = 1.0 - (tz[:, m:] - ty) / m
    aucs = v_pos.mean(axis=1)
    auc1, auc2 = float(aucs[0]), float(aucs[1])
    delta = auc2 - auc1
    if m < 2 or n < 2:
        warnings.warn(
            f"DeLong variance needs >= 2 positives and >= 2 negatives (got {m}, {n}); "
            "se and p-value are NaN.",
            UndefinedMetricWarning,
            stacklevel=2,
        )
        se = z = p = lo = hi = math.nan
    else:
        cov = np.cov(v_pos) / m + np.cov(v_neg) / n  # 2 x 2
        var = cov[0, 0] + cov[1, 1] - 2.0 * cov[0, 1]
        se = math.sqrt(max(float(var), 0.0))
        if se > 0.0:
            z = delta / se
            p = float(2.0 * norm.sf(abs(z)))
        else:
            z = 0.0 if delta == 0.0 else math.copysign(math.inf, delta)
            p = 1.0 if delta == 0.0 else 0.0
        half = float(norm.ppf(0.5 + ci / 2.0)) * se
        lo, hi = delta - half, delta + half
    return {
        "auc1": auc1,
        "auc2": auc2,
        "delta": delta,
        "se": se,
        "z": z,
        "p_value": p,
        "ci_low": lo,
        "ci_high": hi,
    }


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
        den = 2.0 * n_pos * (self.n - n_pos)
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
