"""Per-class classification metrics for multi-label (and binary) predictions.

Everything here takes numpy arrays and is vectorised over classes:

* ``y`` is an ``N x C`` array of 0/1 labels (a 1-D array is read as one class);
* ``p`` / ``scores`` is an ``N x C`` array of finite scores of the same shape.

Conventions
-----------
* **AUROC** is the Mann-Whitney statistic computed from mid-ranks, so tied scores count
  one half -- the same value as :func:`sklearn.metrics.roc_auc_score`. A class whose labels
  are all 0 or all 1 has no AUROC: it gets ``NaN`` and an :class:`UndefinedMetricWarning`
  that names the class index.
* **F1 at a threshold** predicts positive iff ``p >= threshold``; undefined ratios count as
  0 (scikit-learn's ``zero_division=0``).
* **Best-F1 threshold**: the candidates are the distinct scores of the class on the
  validation data. Among the candidates that reach the maximal F1, the **highest** threshold
  is taken (the most conservative rule: fewest predicted positives for the same F1). A class
  without positives in validation has F1 = 0 at every candidate, so it gets its highest score
  as threshold, with a warning.
* Thresholds are always chosen on validation data and applied unchanged to test data
  (:func:`multilabel_report`).
"""

from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np
import pandas as pd
from scipy.stats import rankdata

__all__ = [
    "UndefinedMetricWarning",
    "as_labels",
    "as_scores",
    "auroc_columns",
    "per_class_auroc",
    "best_f1_thresholds",
    "f1_at_thresholds",
    "precision_recall_f1_at_thresholds",
    "multilabel_report",
    "roc_points",
]


class UndefinedMetricWarning(UserWarning):
    """A metric is undefined for a class (e.g. AUROC when only one label value occurs)."""


# --------------------------------------------------------------------------- validation


def as_labels(y, name: str = "y") -> np.ndarray:
    """Return ``y`` as a 2-D bool array (N x C), checking that it holds only 0/1."""
    arr = np.asarray(y)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 1-D (N,) or 2-D (N, C); got shape {arr.shape}.")
    if arr.dtype != bool:
        if not np.issubdtype(arr.dtype, np.number):
            raise ValueError(f"{name} must hold 0/1 labels; got dtype {arr.dtype}.")
        bad = ~np.isin(arr, (0, 1))
        if bad.any():
            raise ValueError(
                f"{name} must hold only 0/1 labels; found e.g. {arr[bad].flat[0]!r}."
            )
        arr = arr.astype(bool)
    return arr


def as_scores(p, shape: tuple[int, int], name: str = "scores") -> np.ndarray:
    """Return ``p`` as a 2-D float array of ``shape``, checking that it is finite."""
    arr = np.asarray(p, dtype=float)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.shape != tuple(shape):
        raise ValueError(
            f"{name} has shape {arr.shape} but the labels have shape {tuple(shape)}."
        )
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinite values.")
    return arr


# --------------------------------------------------------------------------- AUROC


def auroc_columns(y: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Mid-rank AUROC of every column of already-checked arrays (:func:`as_labels`,
    :func:`as_scores`) without warnings; NaN where a column has a single label value.
    :func:`per_class_auroc` is the checked, warning form."""
    n_pos = y.sum(axis=0).astype(float)
    n_neg = y.shape[0] - n_pos
    ranks = rankdata(s, axis=0)  # average ranks for ties == trapezoidal ROC area
    rank_sum = np.where(y, ranks, 0.0).sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        auc = (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)
    auc[(n_pos == 0) | (n_neg == 0)] = np.nan
    return auc


def per_class_auroc(y_true, scores) -> np.ndarray:
    """AUROC of each class (column); equals ``roc_auc_score`` column by column.

    Parameters
    ----------
    y_true : array (N, C) or (N,) of 0/1 labels.
    scores : array of the same shape; any monotone scale (logits or probabilities).

    Returns
    -------
    np.ndarray of shape (C,). ``NaN`` (with an :class:`UndefinedMetricWarning` naming the
    class index) for a class whose labels are all 0 or all 1.
    """
    y = as_labels(y_true, "y_true")
    s = as_scores(scores, y.shape)
    n_pos = y.sum(axis=0)
    for j in np.flatnonzero((n_pos == 0) | (n_pos == y.shape[0])):
        warnings.warn(
            f"class {j}: only one label value in y_true; AUROC is undefined (NaN).",
            UndefinedMetricWarning,
            stacklevel=2,
        )
    return auroc_columns(y, s)


def roc_points(y, s) -> tuple[np.ndarray, np.ndarray]:
    """ROC curve of one class: ``(fpr, tpr)`` at every distinct threshold, from (0, 0).

    Predicts positive iff ``s >= t``, for ``t`` running down the distinct scores; the area
    under these points (trapezoids) is the AUROC. Needs both label values in ``y``.
    """
    yb = as_labels(y)
    if yb.shape[1] != 1:
        raise ValueError(f"roc_points takes one class (1-D y); got shape {np.shape(y)}.")
    yb = yb[:, 0]
    sc = as_scores(s, (yb.shape[0], 1))[:, 0]
    n_pos = int(yb.sum())
    n_neg = yb.shape[0] - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError("roc_points needs both positive and negative labels.")
    order = np.argsort(-sc, kind="stable")
    s_sorted, y_sorted = sc[order], yb[order]
    last = np.r_[s_sorted[:-1] != s_sorted[1:], True]
    tp = np.cumsum(y_sorted)[last]
    fp = np.cumsum(~y_sorted)[last]
    return np.r_[0.0, fp / n_neg], np.r_[0.0, tp / n_pos]


# --------------------------------------------------------------------------- F1


def precision_recall_f1_at_thresholds(y, p, thresholds):
    """Precision, recall and F1 of each class when predicting positive iff ``p >= t``.

    ``thresholds`` has one entry per class (a scalar is broadcast). Undefined ratios are 0,
    matching scikit-learn's ``zero_division=0``.

    Returns
    -------
    (precision, recall, f1), each an array of shape (C,).
    """
    yb = as_labels(y)
    s = as_scores(p, yb.shape, "p")
    t = np.broadcast_to(np.asarray(thresholds, dtype=float), (yb.shape[1],))
    pred = s >= t[None, :]
    tp = (pred & yb).sum(axis=0).astype(float)
    n_pred = pred.sum(axis=0).astype(float)
    n_pos = yb.sum(axis=0).astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(n_pred > 0, tp / n_pred, 0.0)
        recall = np.where(n_pos > 0, tp / n_pos, 0.0)
        f1 = np.where(n_pred + n_pos > 0, 2.0 * tp / (n_pred + n_pos), 0.0)
    return precision, recall, f1


def f1_at_thresholds(y, p, thresholds) -> np.ndarray:
    """F1 of each class at its threshold (positive iff ``p >= t``); ``zero_division=0``."""
    return precision_recall_f1_at_thresholds(y, p, thresholds)[2]


def best_f1_thresholds(y_val, p_val) -> tuple[np.ndarray, np.ndarray]:
    """Per class, the threshold that maximises F1 on validation data.

    Candidates are the distinct scores of the class; predicting positive iff
    ``p >= threshold``. Ties in F1 are broken towards the **highest** threshold. The search
    sorts each column once (``O(N log N)`` per class) and evaluates every candidate from
    cumulative counts.

    Returns
    -------
    (thresholds, f1), each of shape (C,), ``f1`` being the validation F1 at the threshold.
    """
    y = as_labels(y_val, "y_val")
    s = as_scores(p_val, y.shape, "p_val")
    n, _ = y.shape
    if n == 0:
        raise ValueError("y_val is empty.")
    order = np.argsort(-s, axis=0, kind="stable")  # descending scores
    s_sorted = np.take_along_axis(s, order, axis=0)
    y_sorted = np.take_along_axis(y, order, axis=0)
    tp = np.cumsum(y_sorted, axis=0, dtype=np.int64)  # TP when the top k+1 are positive
    n_pred = np.arange(1, n + 1, dtype=np.int64)[:, None]
    n_pos = y.sum(axis=0, dtype=np.int64)[None, :]
    # Only the last row of each run of equal scores is a reachable cut (p >= score).
    last = np.ones_like(s_sorted, dtype=bool)
    last[:-1] = s_sorted[:-1] != s_sorted[1:]
    # 2TP / (n_pred + n_pos); exact rationals round identically, so ties compare equal.
    f1 = np.where(n_pos > 0, 2.0 * tp / (n_pred + n_pos), 0.0)
    f1 = np.where(last, f1, -1.0)
    # argmax returns the first maximum in descending-score order == highest threshold.
    best = np.argmax(f1, axis=0)
    cols = np.arange(s.shape[1])
    for j in np.flatnonzero(n_pos[0] == 0):
        warnings.warn(
            f"class {j}: no positive label in validation data; F1 is 0 at every threshold "
            "and the highest score is used as threshold.",
            UndefinedMetricWarning,
            stacklevel=2,
        )
    return s_sorted[best, cols], f1[best, cols]


# --------------------------------------------------------------------------- report


def multilabel_report(
    y_val, p_val, y_test, p_test, class_names: Sequence[str] | None = None, rank_test=None
) -> pd.DataFrame:
    """Per-class test metrics with F1 thresholds chosen on validation data.

    ``rank_test``: the float64 logits behind ``p_test``, from which the AUROC is computed when
    given (a sigmoid is monotone, so the ranking is the same, but probabilities saturate to
    exactly 1.0 above a logit of ~16.6 in float32 and ~36.7 in float64 and tie). A class whose
    test labels are all equal has NaN AUROC, F1, Precision and Recall: it has no test to count.

    Returns a DataFrame indexed by class name (index name ``"Class"``) with columns

    ``AUROC``      test AUROC (threshold-free),
    ``F1``         test F1 at the validation-chosen threshold,
    ``Threshold``  the best-F1 threshold on validation (same scale as the scores),
    ``Precision``, ``Recall``  on test at that threshold,
    ``F1 (z>0)``   test F1 at the fixed rule logit > 0 (p > 0.5; ZLPR's own decision rule), from
                   ``rank_test`` when given,
    ``Prevalence`` fraction of positive test labels, ``n_pos`` number of positive test labels.
    """
    yv = as_labels(y_val, "y_val")
    yt = as_labels(y_test, "y_test")
    if yv.shape[1] != yt.shape[1]:
        raise ValueError(
            f"y_val has {yv.shape[1]} classes but y_test has {yt.shape[1]}."
        )
    n_classes = yt.shape[1]
    if class_names is None:
        class_names = [str(j) for j in range(n_classes)]
    class_names = list(class_names)
    if len(class_names) != n_classes:
        raise ValueError(
            f"{len(class_names)} class names given for {n_classes} classes."
        )
    thresholds, _ = best_f1_thresholds(yv, p_val)
    pt = as_scores(p_test, yt.shape, "p_test")
    auroc = per_class_auroc(yt, pt if rank_test is None else as_scores(rank_test, yt.shape, "rank_test"))
    precision, recall, f1 = precision_recall_f1_at_thresholds(yt, pt, thresholds)
    n_pos = yt.sum(axis=0).astype(int)
    undefined = (n_pos == 0) | (n_pos == yt.shape[0])  # one rule for every per-class metric
    if rank_test is None:  # p > 0.5
        _, _, f1_zero = precision_recall_f1_at_thresholds(yt, pt, np.nextafter(0.5, 1.0))
    else:  # z > 0
        _, _, f1_zero = precision_recall_f1_at_thresholds(yt, rank_test, np.nextafter(0.0, 1.0))
    precision, recall, f1, f1_zero = (np.where(undefined, np.nan, a) for a in (precision, recall, f1, f1_zero))
    index = pd.Index(class_names, name="Class")
    return pd.DataFrame(
        {
            "AUROC": auroc,
            "F1": f1,
            "Threshold": thresholds,
            "Precision": precision,
            "Recall": recall,
            "F1 (z>0)": f1_zero,
            "Prevalence": n_pos / max(yt.shape[0], 1),
            "n_pos": n_pos,
        },
        index=index,
    )
