"""Loss Function Assessment (LFA) metrics: per-class one-vs-rest metrics and the LFA tables.

Protocol (the LFA authors' demo, computed the way its tables describe them):

* The model has a sigmoid head: one probability per class, trained one-vs-rest.
* **Threshold**: per class, the probability threshold that maximises F1 on the **validation**
  split (:func:`lfakit.metrics.classification.best_f1_thresholds`: candidates are the
  distinct validation scores, ties go to the highest threshold). It is then applied unchanged
  to the **test** split, where every metric is reported; test data never influence it.
* Per class ``c`` on test, predicting positive iff ``p_c >= threshold_c``, with TP, FP, FN, TN
  the one-vs-rest counts:

  ========== ================================================================================
  AUC        area under the ROC curve of ``p_c`` (threshold-free; scikit-learn's value)
  threshold  the validation-chosen threshold
  acc        one-vs-rest accuracy (TP + TN) / N
  Precision  TP / (TP + FP)
  Recall     TP / (TP + FN)
  F0.5       F-beta with beta = 0.5: 1.25 P R / (0.25 P + R)
  F0         F-beta with beta = 0, which **is the precision** (the LFA tables list it anyway)
  F1         2 P R / (P + R)
  miss       the kit's **miss rate** FN / (TP + FN) = 1 - Recall: the share of the class's
             images the model fails to flag
  overflow   the kit's **overflow** FP / (TP + FP) = 1 - Precision: the share of the flagged
             images that belong to other classes (false-discovery rate)
  ========== ================================================================================

  A ratio with a zero denominator is 0 (scikit-learn's ``zero_division=0``); so a class with
  no predicted positive has Precision = overflow = 0.
* **Table 2** (:func:`table2`): for every loss, the **mean ± standard deviation across
  classes** of each per-class metric -- every class weighs the same, whatever its size. (The
  authors' code averaged with scikit-learn's ``average="weighted"``, which weighs classes by
  frequency and makes recall equal accuracy; the kit does not.) The standard deviation is the
  population one (``ddof=0``) over the classes.

"Miss" and "overflow" are not defined in the LFA material; the definitions above are the
kit's own.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from lfakit.metrics.classification import (
    as_labels,
    as_scores,
    best_f1_thresholds,
    per_class_auroc,
    precision_recall_f1_at_thresholds,
)

__all__ = [
    "METRICS",
    "one_hot",
    "fbeta",
    "confusion_counts",
    "per_class_metrics",
    "table2",
    "table2_numbers",
    "hard_class_table",
    "true_class_probability",
]

METRICS: tuple[str, ...] = ("AUC", "threshold", "acc", "Precision", "Recall", "F0.5", "F0", "F1", "miss", "overflow")


def one_hot(labels, num_classes: int) -> np.ndarray:
    """Integer labels (N,) -> 0/1 float array (N, K); an (N, K) 0/1 array is returned as is."""
    a = np.asarray(labels)
    if a.ndim == 2:
        return as_labels(a).astype(np.float64)
    if a.ndim != 1 or (a.size and (a.min() < 0 or a.max() >= num_classes)):
        raise ValueError(f"labels must be (N,) integers in 0..{num_classes - 1} or an (N, K) 0/1 array.")
    return np.eye(num_classes)[a.astype(int)]


def fbeta(precision, recall, beta: float) -> np.ndarray:
    """F-beta from precision and recall; 0 where both are 0. ``beta = 0`` gives the precision."""
    p, r = np.asarray(precision, float), np.asarray(recall, float)
    b2 = beta * beta
    den = b2 * p + r
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, (1 + b2) * p * r / den, 0.0)


def confusion_counts(y, p, thresholds) -> dict[str, np.ndarray]:
    """Per-class TP, FP, FN, TN when predicting positive iff ``p >= threshold``."""
    yb = as_labels(y)
    s = as_scores(p, yb.shape, "p")
    t = np.broadcast_to(np.asarray(thresholds, dtype=float), (yb.shape[1],))
    pred = s >= t[None, :]
    return {
        "TP": (pred & yb).sum(0),
        "FP": (pred & ~yb).sum(0),
        "FN": (~pred & yb).sum(0),
        "TN": (~pred & ~yb).sum(0),
    }


def per_class_metrics(y_val, p_val, y_test, p_test, class_names: Sequence[str] | None = None,
                      rank_test=None) -> pd.DataFrame:
    """The LFA metrics of every class (rows, index ``Class``) on test, thresholds from validation.

    ``y_*`` are integer labels (N,) or one-vs-rest 0/1 arrays (N, K); ``p_*`` are (N, K)
    probabilities (sigmoid outputs). ``rank_test``: the float64 logits behind ``p_test``; the AUC
    is computed from them when given (the same ranking, without the ties of saturated
    probabilities). Columns: :data:`METRICS`, then ``n_test`` (test images of the class) and
    ``TP``, ``FP``, ``FN``, ``TN``.
    """
    pv, pt = np.asarray(p_val, float), np.asarray(p_test, float)
    k = pt.shape[1] if pt.ndim == 2 else 1
    yv, yt = one_hot(y_val, k), one_hot(y_test, k)
    names = [str(j) for j in range(k)] if class_names is None else [str(c) for c in class_names]
    if len(names) != k:
        raise ValueError(f"{len(names)} class names for {k} classes.")
    thresholds, _ = best_f1_thresholds(yv, pv)  # validation only
    auc = per_class_auroc(yt, pt if rank_test is None else np.asarray(rank_test, float))
    precision, recall, f1 = precision_recall_f1_at_thresholds(yt, pt, thresholds)
    c = confusion_counts(yt, pt, thresholds)
    n = yt.shape[0]
    with np.errstate(divide="ignore", invalid="ignore"):
        miss = np.where(c["TP"] + c["FN"] > 0, c["FN"] / (c["TP"] + c["FN"]), 0.0)
        overflow = np.where(c["TP"] + c["FP"] > 0, c["FP"] / (c["TP"] + c["FP"]), 0.0)
    df = pd.DataFrame(
        {
            "AUC": auc,
            "threshold": thresholds,
            "acc": (c["TP"] + c["TN"]) / max(n, 1),
            "Precision": precision,
            "Recall": recall,
            "F0.5": fbeta(precision, recall, 0.5),
            "F0": fbeta(precision, recall, 0.0),
            "F1": f1,
            "miss": miss,
            "overflow": overflow,
            "n_test": yt.sum(0).astype(int),
            **{key: v.astype(int) for key, v in c.items()},
        },
        index=pd.Index(names, name="Class"),
    )
    return df


def table2_numbers(per_class_by_loss: Mapping[str, pd.DataFrame], metrics: Sequence[str] = METRICS) -> pd.DataFrame:
    """Mean and std across classes (unweighted, ddof=0) of each metric, per loss.

    Every class counts: a class whose metric is undefined (NaN, e.g. an AUC without both
    labels) makes that mean NaN rather than silently leaving the class out.
    Returns a frame indexed by loss with columns ``<metric> mean`` and ``<metric> std``.
    """
    rows = {}
    for loss, df in per_class_by_loss.items():
        row = {}
        for m in metrics:
            v = df[m].to_numpy(float)
            row[f"{m} mean"] = float(np.mean(v))
            row[f"{m} std"] = float(np.std(v))
        rows[str(loss)] = row
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.index.name = "loss"
    return out


def table2(per_class_by_loss: Mapping[str, pd.DataFrame], metrics: Sequence[str] = METRICS, decimals: int = 3) -> pd.DataFrame:
    """The LFA Table-2 layout: one row per loss, ``mean±std`` across classes in each metric column."""
    num = table2_numbers(per_class_by_loss, metrics)
    cells = {
        m: [f"{num.loc[loss, f'{m} mean']:.{decimals}f}±{num.loc[loss, f'{m} std']:.{decimals}f}" for loss in num.index]
        for m in metrics
    }
    return pd.DataFrame(cells, index=num.index)


def hard_class_table(per_class_by_loss: Mapping[str, pd.DataFrame], n_hard: int = 3,
                     class_sizes: Mapping[str, int] | Sequence[int] | None = None,
                     decimals: int = 3, select_by: Mapping[str, pd.DataFrame] | None = None) -> pd.DataFrame:
    """Per class: Recall and AUC of every loss, and which classes are hard.

    A class is **hard by recall** when its recall averaged over the losses is among the
    ``n_hard`` lowest, **hard by AUC** likewise; the ``hard`` column says ``recall``, ``AUC``,
    ``recall+AUC`` or is empty. The choice is made on ``select_by`` (the same metrics on the
    validation split) when given, so that the reported (test) metrics of the hard classes are
    not the ones that picked them; without it, on ``per_class_by_loss`` itself.
    ``class_sizes`` (training images per class) adds an ``n_train`` column. Rows keep the class
    order.
    """
    losses = list(per_class_by_loss)
    first = per_class_by_loss[losses[0]]
    recall = pd.DataFrame({loss: per_class_by_loss[loss]["Recall"] for loss in losses})
    auc = pd.DataFrame({loss: per_class_by_loss[loss]["AUC"] for loss in losses})
    chooser = select_by if select_by is not None else per_class_by_loss
    k = min(n_hard, len(first))

    def lowest(metric):
        mean = pd.DataFrame({loss: chooser[loss][metric] for loss in losses}).mean(axis=1)
        return set(mean.sort_values(kind="stable").index[:k]) if k > 0 else set()

    low_r, low_a = lowest("Recall"), lowest("AUC")
    out = pd.DataFrame(index=first.index)
    if class_sizes is not None:
        sizes = class_sizes if isinstance(class_sizes, Mapping) else dict(zip(first.index, class_sizes))
        out["n_train"] = [int(sizes[c]) for c in first.index]
    for loss in losses:
        out[f"Recall {loss}"] = recall[loss].round(decimals) + 0.0
    for loss in losses:
        out[f"AUC {loss}"] = auc[loss].round(decimals) + 0.0
    out["hard"] = ["+".join(t for t, s in (("recall", low_r), ("AUC", low_a)) if c in s) for c in first.index]
    return out


def true_class_probability(labels, probs) -> np.ndarray:
    """``probs[i, labels[i]]``: each image's predicted probability of its own class."""
    labels = np.asarray(labels).astype(int)
    probs = np.asarray(probs, float)
    if probs.ndim != 2 or labels.shape != (probs.shape[0],):
        raise ValueError(f"need labels (N,) and probs (N, K); got {labels.shape} and {probs.shape}.")
    return probs[np.arange(len(labels)), labels]
