"""Tables and figures for loss comparisons.

Tables are pandas DataFrames rounded to ``decimals``; :func:`format_table` renders any of
them as a stable plain-text (Markdown pipe) table that does not depend on pandas display
options, so notebook cells that print it can be checked by nbval.

Figures are built with the object API (``fig, ax = plt.subplots(...)``) and returned;
nothing here calls ``plt.show()``. :func:`save_figure` writes a PNG at 120 dpi without a
software-version stamp.

Comparison tables
-----------------
:func:`comparison_table` compares every challenger with one baseline, class by class
(DeLong test) and on the mean per-class AUROC (paired bootstrap, stratified). With several
challengers the result is one **long** table: one block of rows per challenger (in the
order of ``scores``), each block ending with its ``Mean`` row, so the column layout never
depends on how many losses are compared. Multiplicity: the class rows of one challenger are
one family (one test per class with both label values); ``p (Holm)`` is their Holm-adjusted
p-value, and a class Winner is declared only when it is below ``alpha``. The ``Mean`` row is one
test per challenger (its ``p (Holm)`` equals its raw p). These tests measure test-set sampling
noise for one pair of trained models; they say nothing about training variability (seeds).
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from lfakit.errors import ParameterError, close_matches
from lfakit.metrics.classification import (
    UndefinedMetricWarning,
    as_labels,
    as_scores,
    auroc_columns,
    roc_points,
)
from lfakit.stats import delong_test, holm, paired_bootstrap

__all__ = [
    "per_class_table",
    "overall_table",
    "comparison_table",
    "seed_comparison_table",
    "format_table",
    "loss_conventions",
    "round_floats",
    "plot_per_class_auroc",
    "plot_roc_curves",
    "plot_history",
    "save_figure",
]

COMPARISON_COLUMNS = [
    "Challenger",
    "Class",
    "Baseline",
    "AUROC",
    "Delta",
    "CI low",
    "CI high",
    "p-value",
    "p (Holm)",
    "Test",
    "Winner",
]


# --------------------------------------------------------------------------- tables


def round_floats(df: pd.DataFrame, decimals: int) -> pd.DataFrame:
    out = df.copy()
    for col in out.columns:
        if pd.api.types.is_float_dtype(out[col]):
            out[col] = out[col].round(decimals) + 0.0  # + 0.0 turns -0.0 into 0.0
    return out


def per_class_table(report_df: pd.DataFrame, decimals: int = 4, score_output: bool = False) -> pd.DataFrame:
    """The ChestX-ray14 ZLPR study's per-class table: ``Class | AUROC | F1 | Threshold | F1 (z>0)``,
    rounded.

    ``report_df`` is a :func:`lfakit.metrics.classification.multilabel_report` frame
    (indexed by class). ``F1`` uses the threshold tuned on validation, ``F1 (z>0)`` the fixed
    rule logit > 0. ``score_output=True`` (the ZLPR family, whose logits are uncalibrated scores)
    labels the threshold column ``Threshold (σ of score)``: it is the sigmoid of a score, not a
    probability.
    """
    cols = ["AUROC", "F1", "Threshold", "F1 (z>0)"]
    missing = [c for c in cols if c not in report_df.columns]
    if missing:
        raise KeyError(f"report_df lacks columns {missing}; expected a multilabel_report.")
    out = report_df[cols].astype(float)
    if score_output:
        out = out.rename(columns={"Threshold": "Threshold (σ of score)"})
    out.insert(0, "Class", [str(c) for c in report_df.index])
    return round_floats(out.reset_index(drop=True), decimals)


def overall_table(results: Mapping[str, Mapping[str, float]], decimals: int = 4) -> pd.DataFrame:
    """The ChestX-ray14 ZLPR study's "Overall metrics": rows ``Loss (own scale) / Avg AUROC / Avg F1
    / Avg F1 (z>0)``, a column per loss.

    ``results`` maps a loss name to ``{"loss", "avg_auroc", "avg_f1", "avg_f1_zero"}`` (a missing
    entry shows as NaN). The index is named ``Metric``. The loss row holds each loss in its own
    convention (mean over elements or over samples; :func:`loss_conventions` says which), so it
    is not comparable across columns.
    """
    if not results:
        raise ValueError("results is empty; give at least one loss.")
    rows = {"Loss (own scale)": "loss", "Avg AUROC": "avg_auroc", "Avg F1": "avg_f1", "Avg F1 (z>0)": "avg_f1_zero"}
    data = {
        str(name): [float(res.get(key, math.nan)) for key in rows.values()]
        for name, res in results.items()
    }
    out = pd.DataFrame(data, index=pd.Index(list(rows), name="Metric"))
    return round_floats(out, decimals)


def loss_conventions(names: Sequence[str]) -> str:
    """One line saying what each loss's value averages (from the loss registry's metadata)."""
    from lfakit.catalog import LOSSES

    groups: dict[str, list[str]] = {}
    for n in names:
        groups.setdefault(LOSSES.meta(n).get("mean_over", "its own convention"), []).append(n)
    what = {"elements": "mean over every (image, label) element", "samples": "mean over images of one set loss each"}
    parts = [f"{', '.join(ns)}: {what.get(k, k)}" for k, ns in groups.items()]
    return "Loss row, each in its own convention (not comparable across columns): " + "; ".join(parts) + "."


def _winner(delta: float, p: float, challenger: str, alpha: float) -> str:
    """Who has the higher AUROC, with ' (n.s.)' unless ``p < alpha``."""
    if not np.isfinite(delta):
        return "n/a"
    if delta > 0:
        name = challenger
    elif delta < 0:
        name = "Baseline"
    else:
        name = "Tie"
    significant = bool(np.isfinite(p) and p < alpha)
    return name if significant else f"{name} (n.s.)"


def _comparison_inputs(what: str, scores: Mapping, baseline: str, y_test, class_names):
    """The challengers (every loss but the baseline), the checked labels and the class names."""
    challengers = [name for name in scores if name != baseline]
    if not challengers:
        raise ParameterError(f"{what} needs at least one loss besides the baseline.")
    y = as_labels(y_test, "y_test")
    names = [str(j) for j in range(y.shape[1])] if class_names is None else list(class_names)
    if len(names) != y.shape[1]:
        raise ValueError(f"{len(names)} class names given for {y.shape[1]} classes.")
    return challengers, y, names


def comparison_table(
    y_test,
    scores: Mapping[str, np.ndarray],
    baseline: str,
    class_names: Sequence[str] | None = None,
    decimals: int = 4,
    alpha: float = 0.05,
    n_boot: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """Per-class AUROC of every challenger against ``baseline``, with significance.

    Columns: ``Challenger | Class | Baseline | AUROC | Delta | CI low | CI high | p-value |
    p (Holm) | Test | Seeds | Winner`` where ``Baseline``/``AUROC`` are the baseline's and the challenger's test
    AUROC and ``Delta = AUROC - Baseline``.

    * Class rows: DeLong test (``Test = "DeLong"``), normal 95% interval for the delta.
    * ``Mean`` row (last of each block): mean per-class AUROC; delta, percentile interval
      and p-value from a stratified paired bootstrap over test instances
      (``Test = "bootstrap"``, ``n_boot`` replicates, ``seed``).
    * ``p (Holm)``: class rows, Holm-adjusted over the classes of the challenger (the family);
      the ``Mean`` row is a single test and repeats its p.
    * ``Seeds``: 1 — one trained model per loss, so the tests cover test-set sampling only
      (:func:`seed_comparison_table` is the seed-level form).
    * ``Winner``: the challenger's name if ``Delta > 0``, ``"Baseline"`` if ``Delta < 0``,
      ``"Tie"`` if equal; `` (n.s.)`` is appended unless ``p (Holm) < alpha``. A class whose
      test labels are all equal has no AUROC: its row shows NaN and ``"n/a"``.

    One block per challenger (long table, see the module docstring). Everything is rounded
    to ``decimals``; nothing depends on timing, so the printed table is deterministic.
    """
    if baseline not in scores:
        raise ParameterError(
            f"baseline {baseline!r} is not among the scores {list(scores)}."
            + close_matches(baseline, scores)
        )
    challengers, y, names = _comparison_inputs("comparison_table", scores, baseline, y_test, class_names)
    n_classes = y.shape[1]
    base = as_scores(scores[baseline], y.shape, f"scores[{baseline!r}]")
    n_pos = y.sum(axis=0)
    defined = (n_pos > 0) & (n_pos < y.shape[0])
    for j in np.flatnonzero(~defined):
        warnings.warn(
            f"class {j} ({names[j]}): only one label value in y_test; its AUROC and "
            "test are undefined.",
            UndefinedMetricWarning,
            stacklevel=2,
        )
    rows = []
    for name in challengers:
        other = as_scores(scores[name], y.shape, f"scores[{name!r}]")
        for j in range(n_classes):
            if defined[j]:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", UndefinedMetricWarning)
                    r = delong_test(y[:, j], base[:, j], other[:, j])
            else:
                r = dict.fromkeys(
                    ("auc1", "auc2", "delta", "ci_low", "ci_high", "p_value"), math.nan
                )
            rows.append([name, names[j], r["auc1"], r["auc2"], r["delta"], r["ci_low"], r["ci_high"], r["p_value"]])
        block = rows[len(rows) - n_classes:]
        for row, adj in zip(block, holm([r[7] for r in block])):
            row += [adj, "DeLong", _winner(row[4], adj, name, alpha)]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UndefinedMetricWarning)
            b = paired_bootstrap(
                y[:, defined], base[:, defined], other[:, defined], metric="auroc",
                n_boot=n_boot, seed=seed, stratified=True,
            )
        rows.append(
            [name, "Mean", b["metric1"], b["metric2"], b["delta"], b["ci_low"],
             b["ci_high"], b["p_value"], b["p_value"], "bootstrap",
             _winner(b["delta"], b["p_value"], name, alpha)]
        )
    out = pd.DataFrame(rows, columns=COMPARISON_COLUMNS)
    out = out.astype({c: float for c in COMPARISON_COLUMNS[2:9]})
    out.insert(len(out.columns) - 1, "Seeds", 1)  # one trained model per loss: no training variance
    out.attrs["baseline"] = baseline
    return round_floats(out, decimals)


def seed_comparison_table(
    y_test,
    scores_by_seed: Mapping[str, Mapping[int, np.ndarray]],
    baseline: str,
    class_names: Sequence[str] | None = None,
    decimals: int = 4,
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Per-class AUROC of every challenger against ``baseline`` with seed-level evidence.

    ``scores_by_seed`` maps each loss to ``{seed: (N, C) scores}`` on the same test set; every
    loss has the same seeds (two or more). For each seed the AUROC delta (challenger minus
    baseline, same seed) is taken per class; the class row reports the mean over seeds of both
    AUROCs and of the delta, the Student-t 95% interval of the mean delta and the two-sided
    one-sample t-test of the per-seed deltas on ``seeds - 1`` degrees of freedom (``Test = "t
    over seeds"``): evidence that includes training variability (initial weights, data order),
    with the test images fixed. ``p (Holm)`` adjusts over the classes of one challenger; the
    ``Mean`` row tests the per-seed deltas of the mean per-class AUROC. Columns as
    :func:`comparison_table`. A class whose test labels are all equal shows NaN and ``n/a``;
    per-seed deltas that are all equal and non-zero (no spread to test against) give no p
    and no Winner.
    """
    if baseline not in scores_by_seed:
        raise ParameterError(f"baseline {baseline!r} is not among {list(scores_by_seed)}." + close_matches(baseline, scores_by_seed))
    seeds = list(scores_by_seed[baseline])
    if len(seeds) < 2:
        raise ParameterError("seed_comparison_table needs two or more seeds; with one, use comparison_table")
    for name, by_seed in scores_by_seed.items():
        if list(by_seed) != seeds:
            raise ParameterError(f"loss {name!r} has seeds {list(by_seed)}, the baseline {seeds}; every loss needs the same seeds")
    challengers, y, names = _comparison_inputs("seed_comparison_table", scores_by_seed, baseline, y_test, class_names)
    n_classes = y.shape[1]
    auc = {n: np.array([auroc_columns(y, as_scores(by_seed[s], y.shape, f"scores[{n!r}][{s}]")) for s in seeds])
           for n, by_seed in scores_by_seed.items()}  # loss -> (seeds, classes)
    rows = []
    for name in challengers:
        block = []
        for j in range(n_classes):
            block.append([name, names[j], *_t_over_seeds(auc[baseline][:, j], auc[name][:, j])])
        for row, adj in zip(block, holm([r[7] for r in block])):
            row += [adj, "t over seeds", _winner(row[4], adj, name, alpha)]
        rows += block
        m = _t_over_seeds(np.nanmean(auc[baseline], axis=1), np.nanmean(auc[name], axis=1))
        rows.append([name, "Mean", *m, m[5], "t over seeds", _winner(m[2], m[5], name, alpha)])
    out = pd.DataFrame(rows, columns=COMPARISON_COLUMNS)
    out = out.astype({c: float for c in COMPARISON_COLUMNS[2:9]})
    out.insert(len(out.columns) - 1, "Seeds", len(seeds))
    out.attrs["baseline"] = baseline
    return round_floats(out, decimals)


def _t_over_seeds(base: np.ndarray, other: np.ndarray) -> list[float]:
    """Mean baseline and challenger AUROC, mean delta, its t-interval and the t-test p over seeds."""
    from scipy.stats import t as student_t

    d = other - base
    if not np.isfinite(d).all():
        return [math.nan] * 6
    n, mean = len(d), float(d.mean())
    sd = float(d.std(ddof=1))
    if sd == 0:  # no spread to test against: identical deltas are no evidence either way
        p, lo, hi = (1.0, mean, mean) if mean == 0 else (math.nan, math.nan, math.nan)
    else:
        se = sd / math.sqrt(n)
        p = float(2 * student_t.sf(abs(mean) / se, n - 1))
        half = float(student_t.ppf(0.975, n - 1)) * se
        lo, hi = mean - half, mean + half
    return [float(base.mean()), float(other.mean()), mean, lo, hi, p]


def _cell(value, decimals: int) -> str:
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        if not np.isfinite(value):
            return "nan" if np.isnan(value) else ("inf" if value > 0 else "-inf")
        text = f"{float(value):.{decimals}f}"
        if text.startswith("-") and float(text) == 0.0:
            text = text[1:]  # never print -0.0000
        return text
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return "nan"
    return str(value)


def format_table(df: pd.DataFrame, decimals: int = 4, index: bool | None = None) -> str:
    """Render ``df`` as a Markdown pipe table with fixed-decimal numbers.

    The rendering depends only on the data (not on pandas display options): floats are
    printed with ``decimals`` places (``-0.0000`` as ``0.0000``), numeric columns are
    right-aligned and the others left-aligned. The index is included when it is named or
    is not the default ``0..n-1`` range (``index=True/False`` forces it).
    """
    if index is None:
        index = df.index.name is not None or not isinstance(df.index, pd.RangeIndex) or (
            not df.index.equals(pd.RangeIndex(len(df)))
        )
    frame = df.reset_index() if index else df
    headers = [str(c) for c in frame.columns]
    numeric = [pd.api.types.is_numeric_dtype(frame[c]) and not pd.api.types.is_bool_dtype(
        frame[c]) for c in frame.columns]
    body = [[_cell(v, decimals) for v in row] for row in frame.itertuples(index=False)]
    widths = [max([len(h), 3, *(len(r[i]) for r in body)]) for i, h in enumerate(headers)]

    def line(cells):
        parts = [
            c.rjust(w) if num else c.ljust(w) for c, w, num in zip(cells, widths, numeric)
        ]
        return "| " + " | ".join(parts) + " |"

    rule = "|" + "|".join(
        ("-" * (w + 1) + ":") if num else (":" + "-" * (w + 1))
        for w, num in zip(widths, numeric)
    ) + "|"
    return "\n".join([line(headers), rule, *(line(r) for r in body)])


# --------------------------------------------------------------------------- figures


def colors_for(names: Sequence[str]) -> dict[str, tuple]:
    """One tab10 colour per name, in order (the losses of one figure)."""
    cmap = plt.get_cmap("tab10")
    return {name: cmap(i % 10) for i, name in enumerate(names)}


def plot_per_class_auroc(report_by_loss: Mapping[str, pd.DataFrame]) -> Figure:
    """Grouped bars: for every class (x axis) one bar per loss with its test AUROC.

    Classes are taken from the first report, in its order; a loss lacking a class gets NaN.
    """
    if not report_by_loss:
        raise ValueError("report_by_loss is empty.")
    losses = list(report_by_loss)
    classes = [str(c) for c in next(iter(report_by_loss.values())).index]
    colors = colors_for(losses)
    width = 0.8 / len(losses)
    x = np.arange(len(classes))
    fig_width = min(16.0, max(6.0, 0.55 * len(classes) * math.sqrt(len(losses)) + 2.0))
    fig, ax = plt.subplots(figsize=(fig_width, 4.0))
    values = []
    for i, loss in enumerate(losses):
        rep = report_by_loss[loss]
        auc = pd.Series(rep["AUROC"].to_numpy(dtype=float), index=[str(c) for c in rep.index])
        v = auc.reindex(classes).to_numpy(dtype=float)
        values.append(v)
        ax.bar(x - 0.4 + width * (i + 0.5), v, width=width, label=loss, color=colors[loss])
    finite = np.concatenate(values)
    finite = finite[np.isfinite(finite)]
    low = max(0.0, float(finite.min()) - 0.05) if finite.size else 0.0
    ax.set_ylim(low, 1.0)
    ax.set_xticks(x)
    ax.set_xticklabels(classes, rotation=45, ha="right")
    ax.set_ylabel("Test AUROC")
    ax.set_title("Per-class AUROC by loss")
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0), title="Loss")
    fig.tight_layout()
    return fig


def plot_roc_curves(
    y_test,
    scores: Mapping[str, np.ndarray],
    class_names: Sequence[str] | None = None,
    max_classes: int = 14,
) -> Figure:
    """Small multiples of ROC curves: one panel per class (first ``max_classes``), one curve
    per loss with its AUROC in the legend, plus the dotted chance diagonal.

    A class with a single label value gets a panel that says so, without curves.
    """
    if not scores:
        raise ValueError("scores is empty.")
    y = as_labels(y_test, "y_test")
    n_classes = y.shape[1]
    names = [str(j) for j in range(n_classes)] if class_names is None else list(class_names)
    if len(names) != n_classes:
        raise ValueError(f"{len(names)} class names given for {n_classes} classes.")
    losses = list(scores)
    colors = colors_for(losses)
    mats = {loss: as_scores(scores[loss], y.shape, f"scores[{loss!r}]") for loss in losses}
    aucs = {loss: auroc_columns(y, m) for loss, m in mats.items()}
    n_panels = min(n_classes, max_classes)
    ncols = min(4, n_panels)
    nrows = math.ceil(n_panels / ncols)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(3.2 * ncols, 3.0 * nrows), squeeze=False, sharex=True, sharey=True
    )
    for j in range(n_panels):
        ax = axes.flat[j]
        ax.plot([0, 1], [0, 1], linestyle=":", color="grey", linewidth=0.8)
        n_pos = int(y[:, j].sum())
        if 0 < n_pos < y.shape[0]:
            for loss in losses:
                fpr, tpr = roc_points(y[:, j], mats[loss][:, j])
                ax.plot(fpr, tpr, color=colors[loss], linewidth=1.2,
                        label=f"{loss} ({aucs[loss][j]:.3f})")
            ax.legend(fontsize="x-small", loc="lower right", title="AUROC",
                      title_fontsize="x-small")
        else:
            ax.text(0.5, 0.5, "AUROC undefined\n(one label value)", ha="center",
                    va="center", fontsize="small", transform=ax.transAxes)
        ax.set_title(f"{names[j]} (n+={n_pos})", fontsize="small")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
    for ax in axes.flat[n_panels:]:
        fig.delaxes(ax)
    fig.supxlabel("False positive rate")
    fig.supylabel("True positive rate")
    fig.tight_layout()
    return fig


def plot_history(history_by_loss: Mapping[str, pd.DataFrame]) -> Figure:
    """Training curves: one panel per quantity (``train_loss``, ``val_loss``, ``val_auroc``,
    ``val_srcc``, ``val_plcc`` -- those present in any history), one line per loss, against ``epoch``.

    Loss panels use a log scale when all their values are positive, since different losses
    live on very different scales (compare their shapes, not their levels).
    """
    if not history_by_loss:
        raise ValueError("history_by_loss is empty.")
    losses = list(history_by_loss)
    colors = colors_for(losses)
    wanted = ["train_loss", "val_loss", "val_auroc", "val_srcc", "val_plcc"]
    panels = [c for c in wanted if any(c in h.columns for h in history_by_loss.values())]
    if not panels:
        raise KeyError(f"no history has any of the columns {wanted}.")
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4), squeeze=False)
    titles = {"train_loss": "Training loss", "val_loss": "Validation loss",
              "val_auroc": "Validation AUROC", "val_srcc": "Validation SRCC", "val_plcc": "Validation PLCC (raw)"}
    for ax, col in zip(axes.flat, panels):
        all_vals = []
        for loss in losses:
            h = history_by_loss[loss]
            if col not in h.columns:
                continue
            epoch = h["epoch"] if "epoch" in h.columns else np.arange(1, len(h) + 1)
            vals = h[col].to_numpy(dtype=float)
            all_vals.append(vals)
            ax.plot(epoch, vals, marker="o", markersize=3, color=colors[loss], label=loss)
        v = np.concatenate(all_vals) if all_vals else np.array([])
        v = v[np.isfinite(v)]
        if col.endswith("loss") and v.size and (v > 0).all():
            ax.set_yscale("log")
        ax.set_title(titles[col])
        ax.set_xlabel("epoch")
        ax.legend(fontsize="small")
    fig.tight_layout()
    return fig


def save_figure(fig: Figure, path, dpi: int = 120) -> Path:
    """Write ``fig`` as PNG at ``dpi`` (parents created; no software stamp); return path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, format="png", metadata={"Software": None})
    return path
