"""Tables and figures for loss comparisons.

Tables are pandas DataFrames rounded to ``decimals``; :func:`format_table` renders any of
them as a stable plain-text (Markdown pipe) table that does not depend on pandas display
options, so notebook cells that print it can be checked by nbval.

In a notebook, :func:`show_table` displays a table as Markdown (:class:`Table`): JupyterLab
renders it as an HTML table, with the Winner of a corrected comparison in bold and non-results
(``n.s.``, ties, ``n/a``) muted; its text/plain form is :func:`format_table`'s text (papermill's
log, a terminal). Both forms depend only on the data, so nbval checks them.

Figures are built with the object API (``fig, ax = plt.subplots(...)``) and returned;
nothing here calls ``plt.show()``. They are sized for a notebook: at most :data:`FIG_WIDTH`
inches wide with no text smaller than :data:`MIN_FONT` points, so that on a notebook ~850-1000
px wide (where JupyterLab scales a wider image down) no text is below 9 px.
:func:`save_figure` writes a PNG at 120 dpi without a software-version stamp; its text chunk
``lfakit:min-font-pt`` records the smallest font drawn (and ``lfakit:dpi`` the resolution), so a
test can tell the on-screen size of every figure's text. :func:`show_figures` displays the saved
PNGs (the run folder's files) in the notebook.

Comparison tables
-----------------
:func:`comparison_table` (one trained model per loss) and :func:`seed_comparison_table` (two or
more seeds per loss) compare every challenger with one baseline, class by class and on the mean
per-class AUROC. With several challengers the result is one **long** table: one block of rows per
challenger (in the order of ``scores``), each block ending with its ``Mean`` row, so the column
layout never depends on how many losses are compared. Multiplicity: every row of the table (all
challengers, classes and means) is one Holm family; ``p (Holm)`` is the adjusted p-value.

With one model per loss the rows are the difference of **these two models**: DeLong per class,
a stratified paired bootstrap for the mean, both over test-set sampling only (``Test`` says
so); the table has no Winner column, because retraining (another seed) could reverse it. With
seeds, each row is the seed-level t of :func:`lfakit.stats.seed_level_test` (the seed-to-seed
spread beyond the test-set noise added to DeLong's covariance of every model per class, to the
bootstrap covariance of the models for the mean), and a Winner is named where ``p (Holm) < alpha``.
"""

from __future__ import annotations

import io
import math
import re
import struct
import warnings
import zlib
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from lfakit.errors import ParameterError, close_matches
from lfakit.metrics.classification import (
    UndefinedMetricWarning,
    as_labels,
    as_scores,
    auroc_columns,
    roc_points,
)
from lfakit.stats import (delong_test, holm, paired_bootstrap, replicate_covariance, seed_level_auroc, seed_level_test,
                          seed_paired_bootstrap, too_few_labels)

__all__ = [
    "per_class_table",
    "overall_table",
    "comparison_table",
    "seed_comparison_table",
    "format_table",
    "markdown_table",
    "emphasis",
    "Table",
    "show_table",
    "one_line",
    "loss_table",
    "written_summary",
    "loss_conventions",
    "round_floats",
    "plot_per_class_auroc",
    "plot_per_class_auroc_ci",
    "plot_per_seed",
    "plot_roc_curves",
    "plot_history",
    "min_font_size",
    "figure_png",
    "png_text",
    "save_figure",
    "show_png",
    "show_figures",
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


#: the ``Test`` of a row that compares one trained model per loss: no verdict about the losses
TEST_SET_ONLY = ("DeLong, test set only", "bootstrap, test set only")
SEED_LEVEL = "seed-level t"


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
    """Per-class AUROC of every challenger against ``baseline``, for **one** trained model per loss.

    Columns: ``Challenger | Class | Baseline | AUROC | Delta | CI low | CI high | p-value |
    p (Holm) | Test | Seeds`` where ``Baseline``/``AUROC`` are the baseline's and the challenger's
    test AUROC and ``Delta = AUROC - Baseline``: the difference of these two trained models.

    * Class rows: DeLong test and its normal 95% interval (``Test = "DeLong, test set only"``); a
      class with fewer than :data:`lfakit.stats.MIN_TEST_SET_LABELS` positives or negatives shows
      its difference untested (``Test = "not tested: 9 positives (< 20)"``), since DeLong's
      normal approximation is liberal there.
    * ``Mean`` row (last of each block): mean per-class AUROC; delta, percentile interval and
      p-value from a stratified paired bootstrap over test instances (``Test = "bootstrap, test
      set only"``, ``n_boot`` replicates, ``seed``).
    * ``p (Holm)``: Holm over every row of the table (one family).
    * ``Seeds``: 1. The tests cover test-set sampling only, so the table names **no Winner**:
      another seed of either loss could reverse a difference (:func:`seed_comparison_table` is the
      seed-level form). ``alpha`` is accepted for the signature's sake and unused.

    A class whose test labels are all equal has no AUROC: its row shows NaN. Everything is
    rounded to ``decimals``; nothing depends on timing, so the printed table is deterministic.
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
            test = TEST_SET_ONLY[0]
            if defined[j]:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", UndefinedMetricWarning)
                    r = delong_test(y[:, j], base[:, j], other[:, j])
                few = too_few_labels(y[:, j])
                if few:  # DeLong is liberal here: the difference is shown, not tested
                    r, test = {**r, "ci_low": math.nan, "ci_high": math.nan, "p_value": math.nan}, few
            else:
                r = dict.fromkeys(
                    ("auc1", "auc2", "delta", "ci_low", "ci_high", "p_value"), math.nan
                )
            rows.append([name, names[j], r["auc1"], r["auc2"], r["delta"], r["ci_low"], r["ci_high"], r["p_value"],
                         test])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UndefinedMetricWarning)
            b = paired_bootstrap(
                y[:, defined], base[:, defined], other[:, defined], metric="auroc",
                n_boot=n_boot, seed=seed, stratified=True,
            )
        rows.append([name, "Mean", b["metric1"], b["metric2"], b["delta"], b["ci_low"], b["ci_high"], b["p_value"],
                     TEST_SET_ONLY[1]])
    return _finish(rows, 1, baseline, decimals, alpha, verdict=False)


def _finish(rows: list, seeds: int, baseline: str, decimals: int, alpha: float, verdict: bool) -> pd.DataFrame:
    """The long table from rows ``[challenger, class, baseline, auroc, delta, lo, hi, p, test]``:
    Holm over every row (one family), ``Seeds``, and with ``verdict`` the Winner."""
    cols = [c for c in COMPARISON_COLUMNS if c not in ("p (Holm)", "Winner")]
    out = pd.DataFrame(rows, columns=cols)
    out = out.astype({c: float for c in cols[2:8]})
    out.insert(cols.index("Test"), "p (Holm)", holm(out["p-value"].to_numpy(float)))
    out["Seeds"] = seeds
    if verdict:
        out["Winner"] = [_winner(d, ph, ch, alpha) for d, ph, ch in zip(out["Delta"], out["p (Holm)"], out["Challenger"])]
    out.attrs["baseline"] = baseline
    return round_floats(out, decimals)


def seed_comparison_table(
    y_test,
    scores_by_seed: Mapping[str, Mapping[int, np.ndarray]],
    baseline: str,
    class_names: Sequence[str] | None = None,
    decimals: int = 4,
    alpha: float = 0.05,
    n_boot: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """Per-class AUROC of every challenger against ``baseline`` with seed-level evidence.

    ``scores_by_seed`` maps each loss to ``{seed: (N, C) scores}`` on the same test set; every
    loss has the same seeds (two or more). Each row reports the mean over seeds of both AUROCs
    and of their per-seed difference, and the seed-level t of :func:`lfakit.stats.seed_level_test`
    (``Test = "seed-level t"``), paired by seed: the seed-to-seed spread of the differences
    beyond the test-set noise is added to the test-set variance of their mean, DeLong's
    covariance of every model's AUROC for a class row, and the covariance of the models' mean
    per-class AUROC over ``n_boot`` stratified bootstrap resamples of the test instances
    (``seed``) for the ``Mean`` row. The 95% interval comes from the same t. ``p (Holm)`` adjusts
    over every row of the table (one family); a Winner is named where it is below ``alpha``.
    Columns as :func:`comparison_table`, plus ``Winner``. A class whose test labels are all equal
    shows NaN and ``n/a``, and so does a row with no variance to test against (identical models).
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
    stacks = {n: np.stack([as_scores(by_seed[s], y.shape, f"scores[{n!r}][{s}]") for s in seeds])
              for n, by_seed in scores_by_seed.items()}  # loss -> (seeds, N, C)
    n_pos = y.sum(axis=0)
    defined = (n_pos > 0) & (n_pos < y.shape[0])
    rows = []
    for name in challengers:
        for j in range(n_classes):
            if not defined[j]:
                rows.append([name, names[j], *[math.nan] * 6, SEED_LEVEL])
                continue
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UndefinedMetricWarning)
                t = seed_level_auroc(y[:, j], stacks[baseline][:, :, j], stacks[name][:, :, j])
            rows.append([name, names[j], float(t["auc1"].mean()), float(t["auc2"].mean()), t["delta"], t["ci_low"],
                         t["ci_high"], t["p_value"], SEED_LEVEL])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UndefinedMetricWarning)
            b = seed_paired_bootstrap(y[:, defined], stacks[baseline][:, :, defined], stacks[name][:, :, defined],
                                      "auroc", n_boot=n_boot, seed=seed, stratified=True)
        (v1, v2), (r1, r2) = b["model_values"], b["model_replicates"]
        t = seed_level_test(v1[:, -1], v2[:, -1], replicate_covariance(r1[:, :, -1], r2[:, :, -1]))
        rows.append([name, "Mean", float(v1[:, -1].mean()), float(v2[:, -1].mean()), t["delta"], t["ci_low"],
                     t["ci_high"], t["p_value"], SEED_LEVEL])
    return _finish(rows, len(seeds), baseline, decimals, alpha, verdict=True)


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
    frame = _frame_for_display(df, index)
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


# --------------------------------------------------------------------------- notebook display

#: Columns whose entries name the outcome of a corrected comparison (shown bold when significant).
WINNER_COLUMNS = ("Winner", "Verdict")
#: Winner entries that are neither a result nor a non-result: the baseline's own row (``lfakit.compare``
#: writes ``baseline``, ``iqa_losses`` ``-``). ``Baseline`` (capitalised, :func:`comparison_table`)
#: is the baseline *winning* and is shown bold.
_NEUTRAL = ("baseline", "-", "—", "")
_MUTED_WORDS = ("tie", "n/a", "untestable")
_NOT_SIGNIFICANT = re.compile(r"(^|[\s(])n\.s\.($|[\s)])")
#: A Holm-corrected test written into a cell (``cifar_fece``'s significance table: ``+0.012 (p=0.001,
#: Holm 0.010)``); without ``n.s.`` it is significant.
_HOLM_CELL = re.compile(r"\(p=[\d.<]+, Holm [\d.<]+\)")
#: Markdown's special characters (``_`` too: ``softmax(z)_0`` must not open an emphasis), MathJax's
#: ``$`` and ``@`` (which would make ``TPR@0.1%`` a mail link).
_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|~$@])")
_NUMBERS_ONLY = re.compile(r"^[\d\s.,;:±+\-−—–%\[\]()/]+$")
NBSP = "\u00a0"
#: How a muted entry is drawn: grey italics. JupyterLab's HTML sanitizer keeps this inline style
#: (tests/test_browser_notebooks.py checks it in the rendered notebooks).
MUTED_OPEN, MUTED_CLOSE = '<span style="color: gray">*', "*</span>"


def emphasis(column, value) -> str | None:
    """How :func:`markdown_table` marks a cell: ``"muted"`` for a non-result (an entry holding
    ``n.s.``, a tie, ``n/a``, ``untestable``), ``"strong"`` for a winner that survived the
    correction (an entry of a :data:`WINNER_COLUMNS` column that is not muted and not the
    baseline's own row, or a written-out Holm test ``(p=..., Holm ...)`` without ``n.s.``),
    otherwise None."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    low = text.lower()
    if _NOT_SIGNIFICANT.search(low) or low in _MUTED_WORDS or low.startswith("tie "):
        return "muted"
    if (str(column) in WINNER_COLUMNS and text not in _NEUTRAL) or _HOLM_CELL.search(text):
        return "strong"
    return None


def _md(text: str) -> str:
    """One table cell's text for Markdown: on one line, Markdown's special characters (and
    MathJax's ``$``, and ``@``) escaped; a cell of numbers only (``0.874 ± 0.044``, ``[0.492, 0.545]``) and a
    trailing ``(n.s.)`` do not wrap (no-break spaces)."""
    text = " ".join(str(text).split())
    if _NUMBERS_ONLY.match(text):
        text = text.replace(" ", NBSP)
    text = text.replace(" (n.s.)", NBSP + "(n.s.)")
    return _MD_SPECIAL.sub(r"\\\1", text)


def _frame_for_display(df: pd.DataFrame, index: bool | None) -> pd.DataFrame:
    if index is None:
        index = df.index.name is not None or not isinstance(df.index, pd.RangeIndex) or (
            not df.index.equals(pd.RangeIndex(len(df)))
        )
    return df.reset_index() if index else df


def markdown_table(df: pd.DataFrame, decimals: int = 4, index: bool | None = None) -> str:
    """``df`` as a GitHub-flavoured Markdown table with the cells of :func:`format_table`
    (fixed decimals, ``-0.0000`` as ``0.0000``, numeric columns right-aligned, the same index
    rule), unpadded, with :func:`emphasis`: a significant Winner (and the ``Delta`` / ``Δ``
    cells of its row) in bold, non-results in grey italics. The text depends only on the data."""
    frame = _frame_for_display(df, index)
    cols = list(frame.columns)
    numeric = [pd.api.types.is_numeric_dtype(frame[c]) and not pd.api.types.is_bool_dtype(frame[c])
               for c in cols]
    delta_cols = {i for i, c in enumerate(cols) if str(c).startswith(("Delta", "Δ"))}
    lines = ["| " + " | ".join(_md(c) for c in cols) + " |",
             "|" + "|".join("--:" if num else ":--" for num in numeric) + "|"]
    for row in frame.itertuples(index=False):
        marks = [emphasis(c, v) for c, v in zip(cols, row)]
        winner_row = any(m == "strong" for m in marks)
        cells = []
        for i, (v, m) in enumerate(zip(row, marks)):
            text = _md(_cell(v, decimals))
            if text and (m == "strong" or (winner_row and i in delta_cols)):
                text = f"**{text}**"
            elif text and m == "muted":
                text = f"{MUTED_OPEN}{text}{MUTED_CLOSE}"
            cells.append(text)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


class Table:
    """A table for a notebook cell: ``text/markdown`` is :func:`markdown_table` (JupyterLab draws
    it as an HTML table), ``text/plain`` is :func:`format_table` (papermill's log, terminals,
    ``print``). ``title`` goes above it (bold in Markdown); both forms are deterministic, so
    nbval checks both."""

    def __init__(self, df: pd.DataFrame, decimals: int = 4, index: bool | None = None, title: str | None = None):
        self.df, self.decimals, self.index, self.title = df, decimals, index, title

    def _repr_markdown_(self) -> str:
        body = markdown_table(self.df, self.decimals, self.index)
        return f"**{_md(self.title)}**\n\n{body}" if self.title else body

    def __repr__(self) -> str:
        body = format_table(self.df, self.decimals, self.index)
        return f"{self.title}\n{body}" if self.title else body


def show_table(df: pd.DataFrame, decimals: int = 4, index: bool | None = None, *, title: str | None = None,
               by: str | None = None) -> None:
    """Display ``df`` in the notebook as a :class:`Table`. ``by``: one table per value of that
    column (in order of appearance, the column dropped, titled ``"<by>: <value>"`` after
    ``title``), so that a long comparison reads block by block."""
    from IPython.display import display

    if by is None:
        display(Table(df, decimals, index, title))
        return
    for value, part in df.groupby(by, sort=False):
        head = f"{by}: {value}"
        display(Table(part.drop(columns=by).reset_index(drop=True), decimals, index,
                      f"{title} · {head}" if title else head))


def one_line(module) -> str:
    """A module's repr on one line: a wrapped loss (``flooding`` around ``ce``) as
    ``FloodingLoss(b=0.1, reduction='mean', base=CrossEntropyLoss(...))``."""
    children = list(module.named_children()) if hasattr(module, "named_children") else []
    if not children:
        return " ".join(repr(module).split())
    extra = module.extra_repr() if hasattr(module, "extra_repr") else ""
    parts = ([extra] if extra else []) + [f"{name}={one_line(child)}" for name, child in children]
    return f"{type(module).__name__}({', '.join(parts)})"


def loss_table(modules: Mapping[str, object]) -> pd.DataFrame:
    """One row per loss: its name and the module as built (:func:`one_line`)."""
    return pd.DataFrame({"Loss": list(modules), "Built as": [one_line(m) for m in modules.values()]})


def _folder_listing(items: list[str]) -> str:
    """What one folder of the run holds, in a line: sub-folders holding the same files are named
    once (``5 folders (a, b, ...), each: best.pt, last.pt``); a long list shows its count, first
    and last entry."""
    split = [i.split("/", 1) for i in items]
    if all(len(p) == 2 for p in split):
        subs = list(dict.fromkeys(p[0] for p in split))
        contents = {s: tuple(p[1] for p in split if p[0] == s) for s in subs}
        if len(subs) > 1 and len(set(contents.values())) == 1:
            return f"{len(subs)} folders ({_few(subs)}), each: {', '.join(contents[subs[0]])}"
    return f"{len(items)} files: {_few(items)}" if len(items) > 12 else ", ".join(items)


def _few(names: list[str], n: int = 12) -> str:
    return ", ".join(names) if len(names) <= n else f"{names[0]}, {names[1]}, …, {names[-1]}"


def written_summary(run_dir, files: Iterable[str]) -> str:
    """Where the results are: ``run folder: <absolute path>`` and what the run wrote there (the
    relative paths ``files``), one line per top-level folder."""
    files = sorted(files)
    top = [f for f in files if "/" not in f]
    folders: dict[str, list[str]] = {}
    for f in files:
        if "/" in f:
            head, rest = f.split("/", 1)
            folders.setdefault(head, []).append(rest)
    width = max([len(d) + 1 for d in folders] + [0])
    width = max(width, 2)
    lines = [f"run folder: {Path(run_dir).resolve()}"]
    if top:
        lines.append(f"  {'./':<{width}}  {', '.join(top)}")
    lines += [f"  {d + '/':<{width}}  {_folder_listing(items)}" for d, items in folders.items()]
    return "\n".join(lines)


# --------------------------------------------------------------------------- figures

#: Widest figure, in inches. JupyterLab scales a wider image down to the notebook's width, and
#: at 850-1000 px a 10-inch figure's 8-point text is still 9.4-11 px on screen.
FIG_WIDTH = 10.0
#: Smallest font of any figure of the kit, in points (tick labels, legends, annotations).
MIN_FONT = 8.0
#: PNG text chunks written by :func:`save_figure`: the smallest font drawn (points) and the dpi.
FONT_KEY, DPI_KEY = "lfakit:min-font-pt", "lfakit:dpi"
#: The kit's figure fonts (points): every plotting function draws under these settings.
STYLE = {"font.size": 9.0, "axes.titlesize": 10.0, "axes.labelsize": 9.0, "xtick.labelsize": MIN_FONT,
         "ytick.labelsize": MIN_FONT, "legend.fontsize": MIN_FONT, "legend.title_fontsize": MIN_FONT,
         "figure.titlesize": 10.0, "figure.labelsize": 9.0}


def style():
    """A context in which new figures get the kit's fonts (:data:`STYLE`)."""
    return plt.rc_context(STYLE)


def _ticks(fig: Figure, size: float = MIN_FONT) -> Figure:
    """Tick labels of every axes at ``size`` points (set on the axes, so ticks made at draw
    time, outside :func:`style`, get it too)."""
    for ax in fig.axes:
        ax.tick_params(labelsize=size)
    return fig


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
    fig_width = min(FIG_WIDTH, max(6.0, 0.45 * len(classes) * math.sqrt(len(losses)) + 2.0))
    with style():
        fig, ax = plt.subplots(figsize=(fig_width, 3.8), layout="constrained")
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
        ax.set_xticklabels(classes, rotation=45 if max(map(len, classes)) > 3 else 0, ha="right")
        ax.set_ylabel("Test AUROC")
        ax.set_title("Per-class AUROC by loss")
        fig.legend(loc="outside right upper", title="Loss")
    return _ticks(fig)


def _auroc_intervals(y: np.ndarray, scores_by_seed: Mapping[str, Mapping], names: Sequence[str]) -> pd.DataFrame:
    """Long form for :func:`plot_per_class_auroc_ci`: per (class, loss), three rows (the DeLong
    95% interval's ends and the AUROC) with one seed; one row per seed with several."""
    from lfakit.stats import delong_contrast

    rows = []
    for loss, by_seed in scores_by_seed.items():
        mats = [as_scores(s, y.shape, f"scores[{loss!r}]") for s in by_seed.values()]
        for j, cls in enumerate(names):
            yj = y[:, j]
            if yj.min() == yj.max():
                continue  # no AUROC: both label values are needed
            if len(mats) == 1:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", UndefinedMetricWarning)
                    d = delong_contrast(yj, mats[0][None, :, j], [1.0])
                lo, hi = (float(np.clip(d[k], 0.0, 1.0)) if np.isfinite(d[k]) else d["delta"] for k in ("ci_low", "ci_high"))
                rows += [{"Class": cls, "Loss": loss, "AUROC": v} for v in (lo, d["delta"], hi)]
            else:
                aucs = [float(auroc_columns(yj[:, None], m[:, j:j + 1])[0]) for m in mats]
                rows += [{"Class": cls, "Loss": loss, "AUROC": a} for a in aucs]
    return pd.DataFrame(rows, columns=["Class", "Loss", "AUROC"])


def _t_interval(v) -> tuple[float, float]:
    """Student-t 95% interval of the mean of ``v`` (the seeds), for seaborn's ``errorbar``."""
    from scipy.stats import t as student_t

    v = np.asarray(v, dtype=float)
    m = float(v.mean())
    if v.size < 2:
        return m, m
    half = float(student_t.ppf(0.975, v.size - 1)) * float(v.std(ddof=1)) / math.sqrt(v.size)
    return m - half, m + half


def plot_per_class_auroc_ci(y_test, scores_by_seed: Mapping[str, Mapping], class_names: Sequence[str] | None = None) -> Figure:
    """Per class (rows), every loss's test AUROC with a 95% interval (seaborn point plot).

    ``scores_by_seed`` maps each loss to ``{seed: (N, C) scores}``. With one seed the interval is
    DeLong's (test-set sampling only); with several it is the Student-t interval of the mean over
    seeds (training variance, on the fixed test set) and the point is that mean. A class whose
    test labels are all equal has no AUROC and no row."""
    import seaborn as sns

    if not scores_by_seed:
        raise ValueError("scores_by_seed is empty.")
    y = as_labels(y_test, "y_test")
    names = [str(j) for j in range(y.shape[1])] if class_names is None else [str(c) for c in class_names]
    if len(names) != y.shape[1]:
        raise ValueError(f"{len(names)} class names given for {y.shape[1]} classes.")
    losses = list(scores_by_seed)
    n_seeds = len(next(iter(scores_by_seed.values())))
    data = _auroc_intervals(y, scores_by_seed, names)
    order = [c for c in names if c in set(data["Class"])]
    if n_seeds == 1:  # three rows per point: the median is the AUROC, the extremes the interval's ends
        estimator, errorbar, what = "median", (lambda v: (float(np.min(v)), float(np.max(v)))), "DeLong 95% CI"
    else:
        estimator, errorbar, what = "mean", _t_interval, f"mean and t 95% CI over {n_seeds} seeds"
    with style():
        fig, ax = plt.subplots(figsize=(8.0, 1.1 + 0.36 * max(len(order), 1)), layout="constrained")
        sns.pointplot(data=data, x="AUROC", y="Class", hue="Loss", order=order, hue_order=losses,
                      palette=colors_for(losses), estimator=estimator, errorbar=errorbar,
                      dodge=0.6 if len(losses) > 1 else False,
                      linestyle="none", markers="o", markersize=4, err_kws={"linewidth": 1.2}, ax=ax)
        lo = float(np.nanmin(data["AUROC"])) if len(data) else 0.5
        ax.set_xlim(max(0.0, lo - 0.02), 1.01)
        ax.xaxis.set_major_locator(plt.FixedLocator([t for t in np.arange(0.0, 1.001, 0.1) if t >= lo - 0.02]))
        ax.axvline(0.5, color="0.75", linestyle=":", linewidth=0.8)
        ax.grid(axis="x", color="0.92", linewidth=0.6)
        ax.set_xlabel("Test AUROC")
        ax.set_ylabel("")
        ax.set_title(f"Per-class AUROC by loss ({what})")
        if ax.get_legend() is not None:
            ax.get_legend().remove()
        handles = [plt.Line2D([], [], color=c, marker="o", linestyle="none") for c in colors_for(losses).values()]
        fig.legend(handles, losses, loc="outside right upper", title="Loss")
    return _ticks(fig)


def plot_per_seed(data: pd.DataFrame, value: str, by: str, *, panel: str | None = None, group: str | None = None,
                  title: str = "", xlabel: str | None = None) -> Figure:
    """Per-seed values, one dot per seed, and their mean ± sd (seaborn), for every ``by`` (rows),
    one panel per ``panel`` value: the spread over seeds that a mean ± std hides. ``group``
    colours the rows (e.g. by trainer)."""
    import seaborn as sns

    panels = list(dict.fromkeys(data[panel])) if panel else [None]
    order = list(dict.fromkeys(data[by]))
    hue = group or by
    hues = list(dict.fromkeys(data[hue]))
    palette = colors_for(hues)
    with style():
        fig, axes = plt.subplots(1, len(panels), figsize=(FIG_WIDTH if len(panels) > 1 else 6.0, 1.0 + 0.3 * len(order)),
                                 squeeze=False, sharey=True, layout="constrained")
        for ax, p in zip(axes.flat, panels):
            d = data if p is None else data[data[panel] == p]
            sns.stripplot(data=d, x=value, y=by, hue=hue, order=order, hue_order=hues, palette=palette, jitter=False,
                          size=4, alpha=0.55, legend=False, ax=ax)
            sns.pointplot(data=d, x=value, y=by, hue=hue, order=order, hue_order=hues, palette=palette,
                          estimator="mean", errorbar="sd", linestyle="none", markers="D", markersize=4,
                          err_kws={"linewidth": 1.4}, legend=False, ax=ax)
            ax.grid(axis="x", color="0.92", linewidth=0.6)
            ax.set_xlabel(xlabel or value)
            ax.set_ylabel("")
            if p is not None:
                ax.set_title(str(p))
        if title:
            fig.suptitle(title)
        if group:
            handles = [plt.Line2D([], [], color=palette[h], marker="o", linestyle="none") for h in hues]
            fig.legend(handles, hues, loc="outside lower center", ncol=len(hues))
    return _ticks(fig)


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
    with style():
        fig, axes = plt.subplots(nrows, ncols, figsize=(min(FIG_WIDTH, 2.45 * ncols + 0.4), 2.35 * nrows + 0.5),
                                 squeeze=False, sharex=True, sharey=True, layout="constrained")
        for j in range(n_panels):
            ax = axes.flat[j]
            ax.plot([0, 1], [0, 1], linestyle=":", color="grey", linewidth=0.8)
            n_pos = int(y[:, j].sum())
            if 0 < n_pos < y.shape[0]:
                for loss in losses:
                    fpr, tpr = roc_points(y[:, j], mats[loss][:, j])
                    ax.plot(fpr, tpr, color=colors[loss], linewidth=1.2,
                            label=f"{loss} ({aucs[loss][j]:.3f})")
                ax.legend(loc="lower right", handlelength=1.0, handletextpad=0.4, labelspacing=0.2,
                          borderpad=0.3, borderaxespad=0.3, framealpha=0.8)
            else:
                ax.text(0.5, 0.5, "AUROC undefined\n(one label value)", ha="center",
                        va="center", transform=ax.transAxes)
            ax.set_title(f"{names[j]} (n+={n_pos})", fontsize=9)
            ax.set_xlim(0, 1)
            ax.set_ylim(0, 1)
        for ax in axes.flat[n_panels:]:
            fig.delaxes(ax)
        fig.supxlabel("False positive rate")
        fig.supylabel("True positive rate")
        fig.suptitle("ROC curves on test (legend: loss and AUROC)")
    return _ticks(fig)


def plot_history(history_by_loss: Mapping[str, pd.DataFrame]) -> Figure:
    """Training curves: one panel per quantity (``train_loss``, ``val_loss``, ``val_auroc``,
    ``val_srcc``, ``val_plcc`` -- those present in any history), one line per loss, against ``epoch``.

    Loss panels use a log scale when all their values are positive, since different losses
    live on very different scales (compare their shapes, not their levels). One legend for all
    panels, below them.
    """
    if not history_by_loss:
        raise ValueError("history_by_loss is empty.")
    losses = list(history_by_loss)
    colors = colors_for(losses)
    wanted = ["train_loss", "val_loss", "val_auroc", "val_srcc", "val_plcc"]
    panels = [c for c in wanted if any(c in h.columns for h in history_by_loss.values())]
    if not panels:
        raise KeyError(f"no history has any of the columns {wanted}.")
    ncols = min(3, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    titles = {"train_loss": "Training loss", "val_loss": "Validation loss",
              "val_auroc": "Validation AUROC", "val_srcc": "Validation SRCC", "val_plcc": "Validation PLCC (raw)"}
    with style():
        fig, axes = plt.subplots(nrows, ncols, figsize=(min(FIG_WIDTH, 3.3 * ncols + 0.2), 2.9 * nrows + 0.5),
                                 squeeze=False, layout="constrained")
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
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        for ax in axes.flat[len(panels):]:
            fig.delaxes(ax)
        handles = [plt.Line2D([], [], color=colors[n], marker="o", markersize=3) for n in losses]
        fig.legend(handles, losses, loc="outside lower center", ncol=min(len(losses), 7))
    return _ticks(fig)


# --------------------------------------------------------------------------- figure files


def _drawn_texts(artist):
    """The non-empty visible texts below ``artist`` that a draw renders (the axis of an Axes
    whose axis is off is not drawn)."""
    from matplotlib.axis import Axis
    from matplotlib.text import Text

    for child in artist.get_children():
        if not child.get_visible():
            continue
        if isinstance(child, Axis) and child.axes is not None and not child.axes.axison:
            continue
        if isinstance(child, Text) and child.get_text().strip():
            yield child
        yield from _drawn_texts(child)


def min_font_size(fig: Figure) -> float:
    """The smallest font size (points) among the texts ``fig`` draws: titles, labels, tick
    labels, legends, annotations. Call it after the figure was drawn (tick labels are made at
    draw time); NaN for a figure without text."""
    sizes = [float(t.get_fontsize()) for t in _drawn_texts(fig)]
    return min(sizes) if sizes else math.nan


def png_text(data: bytes) -> dict[str, str]:
    """The ``tEXt`` chunks of a PNG (``{keyword: text}``)."""
    out, pos = {}, 8
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        if kind == b"tEXt":
            key, _, value = data[pos + 8:pos + 8 + length].partition(b"\0")
            out[key.decode("latin-1")] = value.decode("latin-1")
        if kind == b"IEND":
            break
        pos += 12 + length
    return out


def _with_text(data: bytes, texts: Mapping[str, str]) -> bytes:
    """``data`` (a PNG) with ``tEXt`` chunks added before its ``IEND`` chunk."""
    chunks = b""
    for key, value in texts.items():
        body = key.encode("latin-1") + b"\0" + value.encode("latin-1")
        chunks += struct.pack(">I", len(body)) + b"tEXt" + body + struct.pack(">I", zlib.crc32(b"tEXt" + body))
    end = data.rindex(b"IEND") - 4
    return data[:end] + chunks + data[end:]


def figure_png(fig: Figure, dpi: int = 120) -> bytes:
    """``fig`` as PNG bytes at ``dpi``, without a software stamp, with the smallest font drawn
    (``lfakit:min-font-pt``) and the dpi (``lfakit:dpi``) as text chunks."""
    buf = io.BytesIO()
    fig.savefig(buf, dpi=dpi, format="png", metadata={"Software": None})
    return _with_text(buf.getvalue(), {FONT_KEY: f"{min_font_size(fig):g}", DPI_KEY: f"{dpi:g}"})


def save_figure(fig: Figure, path, dpi: int = 120) -> Path:
    """Write ``fig`` as PNG at ``dpi`` (parents created; :func:`figure_png`); return path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(figure_png(fig, dpi))
    return path


def show_png(png) -> None:
    """Display a PNG (a path or bytes) in the notebook, as it is: the file the run folder holds."""
    from IPython.display import Image, display

    display(Image(data=Path(png).read_bytes() if isinstance(png, (str, Path)) else png, format="png"))


def show_figures(figs: Mapping[str, Figure] | Figure, folder=None, dpi: int = 120) -> None:
    """Display figures in the notebook and close them: ``figs`` maps a name to a figure that was
    saved as ``<folder>/<name>.png`` (an experiment's ``figures`` step), and that file is what
    is shown; without ``folder`` (or the file) the figure is rendered by :func:`figure_png`.
    Showing the saved file draws each figure once and keeps its font metadata."""
    if isinstance(figs, Figure):
        figs = {"figure": figs}
    for name, fig in figs.items():
        if fig is None:
            continue
        path = Path(folder) / f"{name}.png" if folder is not None else None
        show_png(path if path is not None and path.is_file() else figure_png(fig, dpi))
        plt.close(fig)
