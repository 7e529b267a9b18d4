"""Loss atlas (the LFA CIFAR-10 study's missing "Figure 2", the CF-Ensemble study's focal table): no training.

Defines the notebook's parameter ``SCHEMA``. The notebook ``notebooks/loss_atlas.ipynb`` calls, in
order: :func:`setup`, :func:`compute`, :func:`constructions`, :func:`summary`, :func:`figure` (one per task family and an
overview), :func:`tables`, :func:`explorer` (sliders, only with ``interactive=True``) and
:func:`save`. The computations and plots live in :mod:`lfakit.atlas`; everything goes through
``lfakit.losses.build`` with the notebook's ``loss_kwargs``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from lfakit import atlas, losses, record, report
from lfakit.errors import ParameterError
from lfakit.experiments._shared import open_checked_run
from lfakit.schemas.loss_atlas import EXPERIMENT


def construction(P: dict) -> atlas.Construction:
    """The fixed inputs of the atlas (see :class:`lfakit.atlas.Construction`)."""
    return atlas.Construction(
        num_classes=P["num_classes"],
        multiclass_other_logit=P["multiclass_other_logit"],
        setwise_labels=P["setwise_labels"],
        setwise_positives=P["setwise_positives"],
        setwise_other_pt=P["setwise_other_pt"],
    )


def _order(name: str) -> tuple:
    task = losses.task_of(name)
    return (atlas.TASKS.index(task), name != atlas.REFERENCE.get(task), name)


def selected_losses(P: dict) -> list[str]:
    """``losses``, or every registered loss of ``tasks``; by task, the reference (bce / ce)
    first, then alphabetical."""
    names = P["losses"] or [n for t in P["tasks"] for n in losses.available(t)]
    return sorted(names, key=_order)


def preflight(P: dict) -> None:
    """Build every chosen loss with its ``loss_kwargs`` on the atlas's construction, before a
    run folder is made (an argument out of range fails here, naming the loss)."""
    try:
        c = construction(P)
    except ParameterError as e:
        raise ParameterError(str(e)) from None
    for name in selected_losses(P):
        msg = atlas.check_loss(name, P["loss_kwargs"].get(name, {}), c)
        if msg:
            raise ParameterError(msg)


def setup(P: dict) -> Path:
    """Fix threads and seeds, check inputs before any work, and open the run folder."""
    return open_checked_run(P, EXPERIMENT, preflight)


def loss_modules(P: dict) -> dict:
    """Each drawn loss built by name with its ``loss_kwargs`` (registry defaults otherwise)."""
    return {n: losses.build(n, **P["loss_kwargs"].get(n, {})) for n in selected_losses(P)}


def compute(P: dict) -> atlas.Atlas:
    """Curves on the grids and values at the table points, for every drawn loss."""
    return atlas.compute(
        selected_losses(P),
        P["loss_kwargs"],
        pts=atlas.pt_grid(P["grid_size"], P["pt_min"], P["pt_max"]),
        xs=np.linspace(-P["iqa_range"], P["iqa_range"], P["grid_size"]),
        table_pt=P["table_pt"],
        table_x=P["table_x"],
        construction=construction(P),
    )


DERIVATIVES = {
    "classification": "-dL/ds, s the logit of the true class (others fixed); |dL/ds| where the loss falls as p_t rises; BCE/CE: 1 - p_t",
    "classification_p": "-dL/dp_t along the construction's path, = (-dL/ds) / (p_t (1 - p_t))",
    "iqa": "-dL/dy_m, y_m the moving prediction (positive: a gradient step raises it)",
}


def summary(A: atlas.Atlas) -> pd.DataFrame:
    """Which losses each view draws and which derivative its lower panels show."""
    rows = []
    for df, x, d in ((A.curves, "p_t", "-dL/ds"), (A.iqa, "x", "-dL/dy_m")):
        if df.empty:
            continue
        for view, g in df.groupby("view", sort=False):
            names = list(dict.fromkeys(g["loss"]))
            rows.append({"view": view, "x": x, "lower panels": d, "n": len(names), "losses": ", ".join(names)})
    return pd.DataFrame(rows)


def constructions(A: atlas.Atlas) -> pd.DataFrame:
    """The constructions of the views, one row each (for the notebook's table)."""
    return pd.DataFrame([{"view": v, "construction": t} for v, t in A.construction.describe().items()])


FAMILIES = ("multilabel", "multiclass", "iqa", "overview")


def figure(P: dict, A: atlas.Atlas, family: str, run_dir: Path) -> Figure | None:
    """One figure (``multilabel``, ``multiclass``, ``iqa`` or ``overview``), saved as
    ``figures/<family>.png``; None when no drawn loss belongs to it."""
    if family not in FAMILIES:
        raise ParameterError(f"unknown figure {family!r}; figures: {', '.join(FAMILIES)}")
    if family == "iqa":
        if A.iqa.empty:
            return None
        fig = atlas.plot_family(A.iqa, atlas.views_of("iqa"), x="x", y="pull", ncols=2,
                                title="IQA losses: loss and -dL/dy_m against the moving prediction")
    elif family == "overview":
        if A.curves.empty:
            return None
        fig = atlas.plot_overview(A.curves)
    else:
        views = atlas.views_of(family)
        curves = A.curves[A.curves["view"].isin(views)] if not A.curves.empty else A.curves
        if curves.empty:
            return None
        ref = A.reference_curves[A.reference_curves["view"].isin(views)]
        fig = atlas.plot_family(curves, views, reference=ref, ncols=2,
                                title=f"{family} losses: loss and -dL/ds against p_t (dashed: {atlas.REFERENCE[family]})")
    report.save_figure(fig, run_dir / "figures" / f"{family}.png", dpi=100)
    return fig


def show(P: dict, A: atlas.Atlas, family: str, run_dir: Path):
    """:func:`figure`, saved and closed, returned as the saved PNG for the notebook to display
    (drawing it once instead of again for the inline backend); None when it has no curves."""
    import matplotlib.pyplot as plt
    from IPython.display import Image

    fig = figure(P, A, family, run_dir)
    if fig is None:
        return None
    plt.close(fig)
    return Image(filename=str(run_dir / "figures" / f"{family}.png"))


def _cfe_study_table(A: atlas.Atlas, P: dict, rel: pd.DataFrame) -> pd.DataFrame | None:
    """The CF-Ensemble study tabulates focal loss's modulating factor (1-p_t)^gamma as its gradient weight
    relative to BCE; next to it, focal's actual gradient ratio to BCE (autograd)."""
    rows = rel[rel["loss"] == "focal"].set_index("view")
    if rows.empty:
        return None
    gamma = losses.build("focal", **P["loss_kwargs"].get("focal", {})).gamma
    cols = [c for c in rel.columns if c not in ("view", "loss", "reference")]
    out = pd.DataFrame({"p_t": [float(c) for c in cols]})
    out[f"CF-Ensemble study: (1-p_t)^{gamma:g}"] = (1.0 - out["p_t"]) ** gamma
    for view in rows.index:
        out[f"focal/bce {view.split()[-1]}"] = rows.loc[view, cols].to_numpy(dtype=float)
    return out


def tables(P: dict, A: atlas.Atlas) -> dict[str, pd.DataFrame]:
    """Gradient weight at ``table_pt`` (absolute, relative to p_t = 0.5, relative to BCE/CE),
    the focal comparison with the CF-Ensemble study, and the IQA pull at ``table_x``."""
    out = {}
    if not A.at_table.empty:
        out["gradient_weight"] = atlas.weight_table(A.at_table, A.table_pt)
        out["relative_to_p05"] = atlas.relative_to_point(A.at_table, A.table_pt, 0.5)
        out["relative_to_reference"] = atlas.relative_to_reference(A.at_table, A.reference, A.table_pt)
        cfe = _cfe_study_table(A, P, out["relative_to_reference"])
        if cfe is not None:
            out["focal_vs_cfe_study"] = cfe
    if not A.iqa_at_table.empty:
        out["iqa_pull"] = atlas.pull_table(A.iqa_at_table, A.table_x)
    return out


def explorer(P: dict):
    """Sliders for gamma, tau and q (an ipywidgets panel) when ``interactive`` is True, else None."""
    if not P["interactive"]:
        return None
    pts = atlas.pt_grid(P["grid_size"], P["pt_min"], P["pt_max"])
    return atlas.explorer(pts, P["loss_kwargs"], construction(P))


HEADLINE_ABOUT = ("gradient weight -dL/ds of every classification loss at each p_t of table_pt, divided by the "
                  "weight of its view's reference (bce for multi-label views, ce for multi-class) at the same p_t; "
                  "computed in float64 (tables/weights_at_table_pt.csv and tables/reference_at_table_pt.csv hold "
                  "the weights)")


def save(P: dict, run_dir: Path, A: atlas.Atlas, tabs: dict[str, pd.DataFrame]) -> list[str]:
    """Write the run record (:mod:`lfakit.record`): metrics.json with the relative-to-reference
    table as headline, every table, the weights at the table points and the raw curves as
    tables/*.csv, and the manifest; return the files of the run folder. The atlas trains
    nothing, so it has no predictions."""
    views = {}
    for df in (A.curves, A.iqa):
        for name, g in (df.groupby("loss", sort=False) if not df.empty else []):
            views[name] = list(dict.fromkeys(g["view"]))
    methods = {n: {"task": losses.task_of(n), "views": views.get(n, []), "config": A.configs[n]} for n in A.configs}
    extra = {
        "derivatives": DERIVATIVES,
        "constructions": A.construction.describe(),
        "reference": atlas.REFERENCE,
        "grid": {k: P[k] for k in ("grid_size", "pt_min", "pt_max", "iqa_range")},
        "zero_below": atlas.NOISE,
        "table_pt": list(A.table_pt),
        "table_x": list(A.table_x),
    }
    raw = {"weights_at_table_pt": A.at_table, "reference_at_table_pt": A.reference,
           "curves_classification": A.curves, "curves_iqa": A.iqa}
    all_tables = {**tabs, **{k: v for k, v in raw.items() if not v.empty}}
    headline = tabs.get("relative_to_reference", tabs.get("iqa_pull", pd.DataFrame()))
    return record.save_run(run_dir, EXPERIMENT, P, methods=methods,
                           headline=("relative_to_reference" if "relative_to_reference" in tabs else "iqa_pull",
                                     headline, HEADLINE_ABOUT),
                           tables=all_tables, extra=extra, table_index=False)
