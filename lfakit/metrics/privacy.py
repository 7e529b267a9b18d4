"""Metrics of membership-inference attacks (``lfakit.attacks``): AUC, TPR at low FPR, threshold
metrics, stratified bootstrap intervals and ROC points for log-log plots.

Inputs: ``is_member`` (N,) bool (or 0/1), the ground truth, and ``score`` (N,) float, higher =
more likely a member. Both classes must be present.

* :func:`tpr_at_fpr`: the largest TPR among the **observed** ROC points (``sklearn.metrics.roc_curve``,
  every threshold kept) whose FPR is ``<= fpr``; never interpolated between points. The ROC
  starts at (0, 0) (threshold +inf), so the value is always defined; ``fpr=0`` gives the TPR
  reached before the first false positive. ``rule``: ``"<="`` (default: "at most x% FPR", as ML
  Privacy Meter's ``compute_attack_results``, ``tpr[np.where(fpr <= 0.01)[0][-1]]``) or ``"<"``
  (LiRA's ``plot.py``, ``tpr[np.where(fpr < .001)[0][-1]]``); they differ when an observed point
  sits exactly at the FPR (with 1,000 non-members, FPR 0.001 is one false positive). ``"<"`` has no
  value at FPR 0 (``plot.py`` would fail there): NaN.
* :func:`attack_metrics`: ``auc`` (``roc_auc_score``), ``balanced_accuracy``, ``accuracy``,
  ``precision``, ``recall``, ``f1`` (scikit-learn's, predicting member when
  ``score >= threshold``; precision and F1 are 0 when nothing is predicted a member),
  ``advantage = TPR - FPR`` at that threshold (Yeom et al. 2018), and ``tpr@1%fpr``,
  ``tpr@0.1%fpr``, ``tpr@0%fpr``. A NaN (or None) threshold gives NaN threshold metrics.
* :func:`bootstrap_ci`: members and non-members resampled separately with replacement (the
  class sizes stay fixed), percentile interval.
* :func:`roc_curve_points`: the ROC's observed points with ``fpr > 0``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from sklearn.metrics import (accuracy_score, balanced_accuracy_score, f1_score, precision_score, recall_score,
                             roc_auc_score, roc_curve)

__all__ = ["FPR_RULES", "shared_bootstrap_auc", "tpr_at_fpr", "attack_metrics", "bootstrap_ci", "roc_curve_points", "NAMED_STATS"]

LOW_FPRS = {"tpr@1%fpr": 0.01, "tpr@0.1%fpr": 0.001, "tpr@0%fpr": 0.0}
NAMED_STATS = ("auc", *LOW_FPRS)


def _to_numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor, without importing torch
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _check(is_member, score) -> tuple[np.ndarray, np.ndarray]:
    y = _to_numpy(is_member)
    s = _to_numpy(score).astype(np.float64)
    if y.ndim != 1 or s.ndim != 1 or len(y) != len(s):
        raise ValueError(f"is_member and score must be 1-D of one length, got shapes {y.shape} and {s.shape}")
    if y.dtype != bool:
        if not np.isin(y, (0, 1)).all():
            raise ValueError("is_member must be boolean (or 0/1)")
        y = y.astype(bool)
    if not np.isfinite(s).all():
        raise ValueError("score holds NaN or infinite values")
    if y.all() or not y.any():
        raise ValueError("is_member needs both members and non-members")
    return y, s


def _check_fpr(fpr) -> float:
    if isinstance(fpr, bool) or not (0.0 <= float(fpr) <= 1.0):
        raise ValueError(f"fpr must lie in [0, 1], got {fpr!r}")
    return float(fpr)


FPR_RULES = ("<=", "<")


def _check_rule(rule: str) -> str:
    if rule not in FPR_RULES:
        raise ValueError(f"rule must be '<=' (at most the FPR) or '<' (below it, LiRA's plot.py), got {rule!r}")
    return rule


def _tpr_below(fp: np.ndarray, tp: np.ndarray, f: float, rule: str) -> float:
    keep = fp <= f if rule == "<=" else fp < f
    return float(tp[keep].max()) if keep.any() else float("nan")


def tpr_at_fpr(is_member, score, fpr: float, rule: str = "<=") -> float:
    """The largest TPR over the observed ROC points with FPR ``<= fpr`` (``rule="<"``: ``< fpr``;
    NaN when no point qualifies), no interpolation."""
    y, s = _check(is_member, score)
    f = _check_fpr(fpr)
    fp, tp, _ = roc_curve(y, s, drop_intermediate=False)
    return _tpr_below(fp, tp, f, _check_rule(rule))


def attack_metrics(is_member, score, threshold, fpr_rule: str = "<=") -> dict:
    """AUC, threshold metrics at ``score >= threshold``, advantage and TPR at 1%, 0.1%, 0% FPR
    (``fpr_rule``: see :func:`tpr_at_fpr`)."""
    y, s = _check(is_member, score)
    _check_rule(fpr_rule)
    out = {"auc": float(roc_auc_score(y, s))}
    keys = ("balanced_accuracy", "accuracy", "precision", "recall", "f1", "advantage")
    if threshold is None or math.isnan(float(threshold)):
        out.update({k: float("nan") for k in keys})
    else:
        pred = s >= float(threshold)
        out["balanced_accuracy"] = float(balanced_accuracy_score(y, pred))
        out["accuracy"] = float(accuracy_score(y, pred))
        out["precision"] = float(precision_score(y, pred, zero_division=0.0))
        out["recall"] = float(recall_score(y, pred))
        out["f1"] = float(f1_score(y, pred, zero_division=0.0))
        out["advantage"] = float(pred[y].mean() - pred[~y].mean())
    fp, tp, _ = roc_curve(y, s, drop_intermediate=False)
    for k, f in LOW_FPRS.items():
        out[k] = _tpr_below(fp, tp, f, fpr_rule)
    return out


class _WeightedROC:
    """ROC of the data with integer multiplicities ``w`` (a bootstrap resample), from one sort:
    the same points ``roc_curve`` gives on the resampled data, in O(N) per resample."""

    def __init__(self, y: np.ndarray, s: np.ndarray):
        self.order = np.argsort(-s, kind="mergesort")
        ss = s[self.order]
        self.y = y[self.order]
        self.ends = np.flatnonzero(np.r_[ss[1:] != ss[:-1], True])  # last index of each tied group

    def points(self, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ws = w[self.order]
        tp = np.cumsum(np.where(self.y, ws, 0))[self.ends]
        fp = np.cumsum(np.where(self.y, 0, ws))[self.ends]
        return np.r_[0.0, fp / fp[-1]], np.r_[0.0, tp / tp[-1]]

    def stat(self, name: str, w: np.ndarray, rule: str = "<=") -> float:
        fpr, tpr = self.points(w)
        if name == "auc":
            return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))  # trapezoid = Mann-Whitney, ties 1/2
        return _tpr_below(fpr, tpr, LOW_FPRS[name], rule)


def bootstrap_ci(is_member, score, stat: str | Callable = "auc", n_boot: int = 1000, seed: int = 0,
                 ci: float = 0.95, fpr_rule: str = "<=") -> tuple[float, float]:
    """Percentile bootstrap interval of ``stat``: ``"auc"``, ``"tpr@1%fpr"``, ``"tpr@0.1%fpr"``,
    ``"tpr@0%fpr"`` (computed from one sort per call), or a callable ``stat(is_member, score)``.
    Each resample draws the members and the non-members separately, with replacement."""
    y, s = _check(is_member, score)
    _check_rule(fpr_rule)
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 1:
        raise ValueError(f"n_boot must be a positive integer, got {n_boot!r}")
    if not 0.0 < ci < 1.0:
        raise ValueError(f"ci must lie in (0, 1), got {ci!r}")
    if isinstance(stat, str):
        if stat not in NAMED_STATS:
            raise ValueError(f"unknown stat {stat!r}; choose from {', '.join(NAMED_STATS)} or pass a callable")
        roc = _WeightedROC(y, s)
    elif not callable(stat):
        raise ValueError("stat must be a name or a callable stat(is_member, score)")
    pos, neg = np.flatnonzero(y), np.flatnonzero(~y)
    rng = np.random.default_rng(seed)
    vals = np.empty(int(n_boot))
    for b in range(int(n_boot)):
        idx = np.concatenate([pos[rng.integers(0, len(pos), len(pos))], neg[rng.integers(0, len(neg), len(neg))]])
        if isinstance(stat, str):
            vals[b] = roc.stat(stat, np.bincount(idx, minlength=len(y)), fpr_rule)
        else:
            vals[b] = stat(y[idx], s[idx])
    lo, hi = np.quantile(vals, [(1.0 - ci) / 2.0, (1.0 + ci) / 2.0])
    return float(lo), float(hi)


def roc_curve_points(is_member, score) -> tuple[np.ndarray, np.ndarray]:
    """``(fpr, tpr)`` of every observed ROC point (all thresholds kept, the staircase exact)
    with ``fpr > 0``, for log-log plots: points at ``fpr = 0`` cannot sit on a log axis, so the
    curve starts at ``fpr = 1 / n_non_members``; points with ``tpr = 0`` are kept (matplotlib
    masks non-positive values on a log axis). The TPR at zero FPR is :func:`tpr_at_fpr` (fpr=0)."""
    y, s = _check(is_member, score)
    fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)
    keep = fpr > 0
    return fpr[keep], tpr[keep]


def shared_bootstrap_auc(members, scores, n_boot: int = 1000, seed: int = 0) -> np.ndarray:
    """AUC replicates (B, M) of M models on **one** set of pool resamples: ``members`` and
    ``scores`` (M, N), each model with its own membership over the same N pool points; each
    replicate draws N pool indices with replacement (not stratified: the models' memberships
    differ) and applies them to every model, so the replicates' covariance is the pool-sampling
    covariance of the models' AUCs (:func:`lfakit.stats.replicate_covariance`). A replicate in
    which a model has one class only is NaN for that model."""
    y = np.asarray(members, dtype=bool)
    s = np.asarray(scores, dtype=np.float64)
    if y.ndim != 2 or y.shape != s.shape:
        raise ValueError(f"members and scores must be (M, N) of one shape, got {y.shape} and {s.shape}")
    rocs = [_WeightedROC(*_check(yy, ss)) for yy, ss in zip(y, s)]
    rng = np.random.default_rng(seed)
    n = y.shape[1]
    out = np.empty((int(n_boot), len(rocs)))
    for b in range(int(n_boot)):
        w = np.bincount(rng.integers(0, n, n), minlength=n)
        for m, (roc, yy) in enumerate(zip(rocs, y)):
            out[b, m] = roc.stat("auc", w) if (w[yy].sum() and w[~yy].sum()) else np.nan
    return out
