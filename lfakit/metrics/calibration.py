"""Calibration: expected calibration error (ECE) and reliability diagrams (``docs/losses.md`` section D).

Not to be confused with the ``exp_ce`` *loss* (the LFA paper's "ECE", exponential
cross-entropy): everything here is about calibration.

Binary building block: ``confidences`` (N,) in [0, 1] and ``correct`` (N,) in {0, 1} (whether
the prediction the confidence belongs to was right).

Binning: ``n_bins`` (default 15) equal-width bins of [0, 1], right-closed:
``[0, 1/B], (1/B, 2/B], ..., ((B-1)/B, 1]`` -- a confidence exactly on an inner edge goes to the
lower bin, and 0 is counted (in the first bin) rather than dropped.

``ECE = sum_b (n_b / N) |accuracy_b - confidence_b|`` over the non-empty bins, where
``accuracy_b`` is the mean of ``correct`` and ``confidence_b`` the mean confidence in bin b.

Task helpers:

* multi-class (:func:`multiclass_ece`): from class probabilities (N, K) and labels (N,), the
  top-label confidence ``max_k p_k`` and correctness ``argmax_k p_k == label``
  (:func:`top_label_confidence`);
* multi-label (:func:`multilabel_ece`): **per-label binary calibration, averaged over
  labels** -- for each label c, the ECE of ``p[:, c]`` (the probability of "positive") against
  the outcome ``y[:, c]``, then the unweighted mean over the C labels (every label counts the
  same, whatever its prevalence). ``kind="top_label"`` instead uses, per label, the confidence
  ``max(p, 1 - p)`` of the thresholded 0/1 decision at 0.5 and its correctness.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = [
    "bin_edges",
    "reliability_diagram_data",
    "expected_calibration_error",
    "top_label_confidence",
    "multiclass_ece",
    "multiclass_reliability_data",
    "multilabel_ece",
    "multilabel_reliability_data",
    "plot_reliability",
]

COLUMNS = ["bin_lower", "bin_upper", "confidence", "accuracy", "count"]


# --------------------------------------------------------------------------- validation
def _to_numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor
        x = x.detach().cpu()
        if x.dtype.is_floating_point:
            x = x.double()
        x = x.numpy()
    return np.asarray(x)


def _check_n_bins(n_bins) -> int:
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer, got {n_bins!r}")
    return int(n_bins)


def _check_probs(p, name: str, ndim: int) -> np.ndarray:
    a = _to_numpy(p)
    if a.ndim != ndim:
        shape = "(N,)" if ndim == 1 else "(N, K)"
        raise ValueError(f"{name} must have shape {shape}, got {a.shape}")
    if not np.issubdtype(a.dtype, np.number) or np.issubdtype(a.dtype, np.complexfloating):
        raise ValueError(f"{name} must be numeric, got dtype {a.dtype}")
    a = a.astype(np.float64)
    if a.shape[0] == 0:
        raise ValueError(f"{name} is empty")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} contains NaN or inf")
    if (a < 0).any() or (a > 1).any():
        raise ValueError(
            f"{name} must lie in [0, 1] (probabilities, e.g. softmax/sigmoid of the logits; "
            "calibration metrics never take logits)"
        )
    return a


def _check_binary(y, name: str, shape: tuple) -> np.ndarray:
    a = _to_numpy(y)
    if a.shape != shape:
        raise ValueError(f"{name} must have shape {shape} (one per confidence), got {a.shape}")
    if a.dtype != bool:
        if not np.issubdtype(a.dtype, np.number):
            raise ValueError(f"{name} must be bool or 0/1, got dtype {a.dtype}")
        if not np.isin(a, (0, 1)).all():
            raise ValueError(f"{name} must contain only 0/1 (or bool) values")
    return a.astype(np.float64)


# --------------------------------------------------------------------------- binary core
def bin_edges(n_bins: int = 15) -> np.ndarray:
    """The ``n_bins + 1`` equal-width edges ``0, 1/B, ..., 1``."""
    return np.linspace(0.0, 1.0, _check_n_bins(n_bins) + 1)


def _bin_index(conf: np.ndarray, n_bins: int) -> np.ndarray:
    # right-closed bins; 0 in the first bin, 1 in the last
    return np.searchsorted(bin_edges(n_bins)[1:-1], conf, side="left")


def reliability_diagram_data(confidences, correct, n_bins: int = 15) -> pd.DataFrame:
    """Per-bin statistics of a reliability diagram, one row per bin (empty bins included).

    Columns: ``bin_lower``, ``bin_upper`` (edges), ``confidence`` (mean confidence in the bin),
    ``accuracy`` (mean of ``correct`` in the bin), ``count`` (samples in the bin). Empty bins
    have ``count = 0`` and NaN ``confidence`` / ``accuracy``.
    """
    n_bins = _check_n_bins(n_bins)
    conf = _check_probs(confidences, "confidences", 1)
    corr = _check_binary(correct, "correct", conf.shape)
    idx = _bin_index(conf, n_bins)
    count = np.bincount(idx, minlength=n_bins)
    sum_conf = np.bincount(idx, weights=conf, minlength=n_bins)
    sum_acc = np.bincount(idx, weights=corr, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.where(count > 0, sum_conf / count, np.nan)
        mean_acc = np.where(count > 0, sum_acc / count, np.nan)
    edges = bin_edges(n_bins)
    return pd.DataFrame(
        {
            "bin_lower": edges[:-1],
            "bin_upper": edges[1:],
            "confidence": mean_conf,
            "accuracy": mean_acc,
            "count": count.astype(np.int64),
        },
        columns=COLUMNS,
    )


def _ece_from_table(df: pd.DataFrame) -> float:
    nonempty = df["count"] > 0
    d = df[nonempty]
    w = d["count"].to_numpy(dtype=np.float64)
    gap = np.abs(d["accuracy"].to_numpy() - d["confidence"].to_numpy())
    return float(np.sum(w * gap) / np.sum(w))


def expected_calibration_error(confidences, correct, n_bins: int = 15) -> float:
    """ECE: the count-weighted mean over bins of ``|accuracy - confidence|``.

    ``confidences`` (N,) in [0, 1], ``correct`` (N,) bool or 0/1; ``n_bins`` equal-width,
    right-closed bins (see the module docstring). In [0, 1]; 0 for perfect calibration.
    """
    return _ece_from_table(reliability_diagram_data(confidences, correct, n_bins))


# --------------------------------------------------------------------------- multi-class
def top_label_confidence(probs, labels) -> tuple[np.ndarray, np.ndarray]:
    """``(max_k p_k, argmax_k p_k == label)`` for class probabilities (N, K) and labels (N,).

    Rows of ``probs`` must sum to 1 (within 1e-3): pass softmax outputs, not logits. Ties in
    the argmax go to the lowest class index (``numpy.argmax``).
    """
    p = _check_probs(probs, "probs", 2)
    if not np.allclose(p.sum(axis=1), 1.0, atol=1e-3, rtol=0):
        raise ValueError("each row of probs must sum to 1 (softmax probabilities)")
    y = _to_numpy(labels)
    if y.shape != (p.shape[0],):
        raise ValueError(f"labels must have shape ({p.shape[0]},), got {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        if not np.issubdtype(y.dtype, np.floating) or not np.all(y == np.round(y)):
            raise ValueError(f"labels must be integer class indices, got dtype {y.dtype}")
        y = y.astype(np.int64)
    if (y < 0).any() or (y >= p.shape[1]).any():
        raise ValueError(f"labels must lie in [0, {p.shape[1] - 1}]")
    return p.max(axis=1), (p.argmax(axis=1) == y)


def multiclass_ece(probs, labels, n_bins: int = 15) -> float:
    """Top-label ECE of a multi-class classifier (confidence = max probability)."""
    conf, correct = top_label_confidence(probs, labels)
    return expected_calibration_error(conf, correct, n_bins)


def multiclass_reliability_data(probs, labels, n_bins: int = 15) -> pd.DataFrame:
    """:func:`reliability_diagram_data` of the top-label confidences."""
    conf, correct = top_label_confidence(probs, labels)
    return reliability_diagram_data(conf, correct, n_bins)


# --------------------------------------------------------------------------- multi-label
def _per_label_binary(probs, targets, kind: str):
    if kind not in ("positive", "top_label"):
        raise ValueError(f"kind must be 'positive' or 'top_label', got {kind!r}")
    p = _check_probs(probs, "probs", 2)
    y = _check_binary(targets, "targets", p.shape)
    if kind == "positive":
        return p, y
    pred = p > 0.5
    return np.where(pred, p, 1.0 - p), (pred == (y == 1)).astype(np.float64)


def multilabel_ece(
    probs, targets, n_bins: int = 15, kind: str = "positive", return_per_label: bool = False
):
    """Multi-label ECE: per-label binary ECE, averaged over labels (unweighted mean).

    ``probs`` (N, C) sigmoid probabilities, ``targets`` (N, C) 0/1. For label c the binary ECE
    is computed on ``(p[:, c], y[:, c])`` (``kind="positive"``: calibration of the probability
    of the positive class) or on the top-label pair ``(max(p, 1-p), (p > 0.5) == y)``
    (``kind="top_label"``). The result is the mean of the C per-label values; with
    ``return_per_label=True`` returns ``(mean, per_label_array)``.
    """
    conf, corr = _per_label_binary(probs, targets, kind)
    per = np.array(
        [expected_calibration_error(conf[:, c], corr[:, c], n_bins) for c in range(conf.shape[1])]
    )
    mean = float(per.mean())
    return (mean, per) if return_per_label else mean


def multilabel_reliability_data(
    probs, targets, n_bins: int = 15, kind: str = "positive"
) -> pd.DataFrame:
    """Per-label reliability tables stacked: the columns of :func:`reliability_diagram_data`
    plus ``label`` (the label index), one block of ``n_bins`` rows per label."""
    conf, corr = _per_label_binary(probs, targets, kind)
    frames = []
    for c in range(conf.shape[1]):
        df = reliability_diagram_data(conf[:, c], corr[:, c], n_bins)
        df.insert(0, "label", c)
        frames.append(df)
    return pd.concat(frames, ignore_index=True)


# --------------------------------------------------------------------------- plot
def plot_reliability(df: pd.DataFrame, ax=None, title: str | None = None):
    """Draw a reliability diagram from :func:`reliability_diagram_data` output.

    Bars: accuracy per non-empty bin (width = bin width); dots: mean confidence per bin;
    dashed diagonal: perfect calibration. The ECE recomputed from the table is shown in the
    legend. Draws on ``ax`` if given, else on a new figure; returns the Figure. A stacked
    multi-label table must be filtered to one label first (``df[df.label == c]``).
    """
    import matplotlib.pyplot as plt

    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"df lacks columns {missing}; pass reliability_diagram_data(...) output")
    if "label" in df.columns and df["label"].nunique() > 1:
        raise ValueError("df holds several labels; select one, e.g. df[df.label == 0]")
    if ax is None:
        fig, ax = plt.subplots(figsize=(4.5, 4.5))
    else:
        fig = ax.figure
    d = df[df["count"] > 0]
    lo = d["bin_lower"].to_numpy()
    width = (d["bin_upper"] - d["bin_lower"]).to_numpy()
    ece = _ece_from_table(df) if len(d) else float("nan")
    ax.bar(lo, d["accuracy"].to_numpy(), width=width, align="edge", edgecolor="black",
           linewidth=0.6, alpha=0.8, label=f"accuracy (ECE = {ece:.4f})")
    ax.plot(lo + width / 2, d["confidence"].to_numpy(), "o", color="tab:red", ms=4,
            label="mean confidence")
    ax.plot([0, 1], [0, 1], "--", color="gray", linewidth=1, label="perfect calibration")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    if title:
        ax.set_title(title)
    ax.legend(loc="upper left", fontsize="small")
    return fig
