"""The loss atlas: how every registered loss weighs easy and hard examples.

This is the gradient–probability view of the Loss Function Assessment (LFA) work (the LFA CIFAR-10
study, whose "Figure 2" is missing): for each loss, its value and its gradient as a function of the
probability ``p_t`` the model gives the true class. Everything is computed **with autograd
through the modules that** ``lfakit.losses.build(name, **kwargs)`` **returns**; no loss formula is
re-implemented here, so the atlas shows exactly what the registry builds (its defaults, its
clamps, its detached weights).

Constructions (:class:`Construction`; float64, CPU)
---------------------------------------------------

* **Multi-label** (``multilabel y=1`` / ``multilabel y=0``, drawn separately): one sample of
  ``C = setwise_labels`` labels. Label 0 varies: for a positive (y=1) its logit is
  ``z = logit(p_t)``, for a negative (y=0) ``z = -logit(p_t)`` (so ``p_t = 1 - sigmoid(z)``).
  The other C-1 labels are fixed and correctly predicted with probability ``setwise_other_pt``:
  ``setwise_positives`` of them positive (``z = +logit(other_pt)``), the rest negative
  (``z = -logit(other_pt)``). The loss is built with ``reduction="none"``: an element-wise loss
  returns a (B, C) matrix and the atlas takes label 0's own element (the other labels do not
  enter it); a set-wise loss (ZLPR family) returns one value per sample and the atlas takes the
  sample's loss, in which the fixed labels do enter. Which kind a loss is, is read from the
  shape it returns, not from its name.
* **Multi-class** (``multiclass``): ``K = num_classes`` logits, the true class (0) has logit
  ``s = logit(p_t) + log(K-1) + c`` and the other K-1 logits equal ``c =
  multiclass_other_logit`` (0 by default), so that ``softmax(z)_0 = p_t`` exactly. Built with
  ``reduction="none"`` (one value per sample). A loss without that form (``flooding``, defined
  on a batch mean) is evaluated on a batch of one sample; a wrapper is drawn in the task of the
  loss it wraps, and only multi-class bases are supported.
* **IQA pair** (``iqa pair``): two images with MOS ``q_i > q_j`` (``pair_mos``); ``y_j = q_j`` is
  fixed and ``y_i = q_j + x``, so ``x = y_i - y_j`` is the predicted score difference (the MOS
  difference is ``q_i - q_j``). Pairwise and point-wise losses (those whose ``reduction="none"``
  output has one entry per pair or per image) are drawn here.
* **IQA set** (``iqa set``): a batch with MOS ``set_mos``; every prediction equals its MOS except
  the last (highest-MOS) image, predicted at ``q_last + x``. Set-wise losses (one value per
  batch: correlations, Norm-in-Norm) are drawn here; on two images they would be degenerate.
  IQA losses are built with ``reduction="sum"``: a point-wise loss gives the moving image's own
  term (the fixed image's is 0), a pairwise loss its single pair's term, a set-wise loss the
  batch's single term.

Derivatives (columns of the curve tables)
-----------------------------------------

* ``weight = -dL/ds`` where ``s`` is the logit of the true class (multi-label positives:
  ``s = z``; negatives: ``s = -z``; multi-class: ``s = z_0``; the other logits held fixed).
  It is the gradient magnitude ``|dL/ds|`` wherever the loss falls as ``p_t`` rises (every loss
  here except ``flooding`` below its level ``b``, where it is negative: gradient descent then
  lowers ``p_t``). For BCE and CE it equals ``1 - p_t``.
* ``weight_p = -dL/dp_t``, the derivative along the construction's path (the other logits held
  fixed), ``= weight / (p_t (1 - p_t))``; LFA's probability-defined losses are usually drawn
  with it.
* IQA: ``pull = -dL/dy_m`` with ``y_m`` the moving prediction: positive means a gradient step
  raises that prediction.

A derivative below ``NOISE = 1e-12`` in magnitude is reported as exactly 0: at that size it is
float64 rounding noise (LogitNorm, for instance, is invariant to the logit scale up to its 1e-7,
so along the multi-class construction its derivative is of order 1e-16 and autograd returns
noise of that size, of either sign).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from torch import nn

from lfakit import losses, report
from lfakit.errors import ParameterError

__all__ = [
    "TASKS",
    "REFERENCE",
    "TABLE_PT",
    "Construction",
    "Atlas",
    "views_of",
    "pt_grid",
    "loss_task",
    "check_loss",
    "classification_curves",
    "iqa_curves",
    "compute",
    "weight_table",
    "relative_to_point",
    "relative_to_reference",
    "pull_table",
    "loss_colors",
    "plot_family",
    "plot_overview",
    "plot_focus",
    "SLIDERS",
    "SLIDER_STYLE",
    "wide_range",
    "explorer",
]

TASKS = ("multilabel", "multiclass", "iqa")
VIEWS = {
    "multilabel": ("multilabel y=1", "multilabel y=0"),
    "multiclass": ("multiclass",),
    "iqa": ("iqa pair", "iqa set"),
}
#: The loss every classification view is compared against (built with its registry defaults).
REFERENCE = {"multilabel": "bce", "multiclass": "ce"}
#: p_t values of the relative-gradient tables (as the CF-Ensemble study tabulates focal loss).
TABLE_PT = (0.05, 0.3, 0.5, 0.8, 0.95)
DTYPE = torch.float64


@dataclass(frozen=True)
class Construction:
    """The fixed inputs around the one quantity that varies (see the module docstring)."""

    num_classes: int = 10
    multiclass_other_logit: float = 0.0
    setwise_labels: int = 14
    setwise_positives: int = 2
    setwise_other_pt: float = 0.9
    pair_mos: tuple[float, float] = (4.0, 3.0)
    set_mos: tuple[float, ...] = (1.0, 2.0, 3.0, 4.0, 5.0)

    def __post_init__(self):
        if self.num_classes < 2:
            raise ParameterError(f"num_classes must be >= 2, got {self.num_classes}")
        if self.setwise_labels < 2:
            raise ParameterError(f"setwise_labels must be >= 2, got {self.setwise_labels}")
        if not 0 <= self.setwise_positives <= self.setwise_labels - 1:
            raise ParameterError(
                f"setwise_positives must lie in [0, setwise_labels - 1] = "
                f"[0, {self.setwise_labels - 1}] (label 0 is the varying one), "
                f"got {self.setwise_positives}"
            )
        if not 0 < self.setwise_other_pt < 1:
            raise ParameterError(f"setwise_other_pt must lie in (0, 1), got {self.setwise_other_pt}")
        if len(self.pair_mos) != 2 or not self.pair_mos[0] > self.pair_mos[1]:
            raise ParameterError(f"pair_mos must be (q_i, q_j) with q_i > q_j, got {self.pair_mos}")
        if len(self.set_mos) < 3 or len(set(self.set_mos)) < 2:
            raise ParameterError(f"set_mos needs at least 3 scores, not all equal; got {self.set_mos}")

    def describe(self) -> dict[str, str]:
        """One sentence per construction (for the notebook and ``metrics.json``)."""
        c = self
        neg = c.setwise_labels - 1 - c.setwise_positives
        return {
            "multilabel": (
                f"one sample of C={c.setwise_labels} labels; label 0 varies (y=1: z=logit(p_t); "
                f"y=0: z=-logit(p_t)); the other {c.setwise_labels - 1} labels are fixed and "
                f"correct at p_t={c.setwise_other_pt}: {c.setwise_positives} positive, {neg} negative. "
                "Element-wise losses: label 0's own element; set-wise losses: the sample's loss."
            ),
            "multiclass": (
                f"K={c.num_classes} logits; true class 0 has s=logit(p_t)+log(K-1)+c, the other "
                f"{c.num_classes - 1} logits are c={c.multiclass_other_logit}, so softmax(z)_0=p_t."
            ),
            "iqa pair": (
                f"two images with MOS q_i={c.pair_mos[0]}, q_j={c.pair_mos[1]}; y_j=q_j fixed, "
                "y_i=q_j+x: x is the predicted score difference y_i-y_j "
                f"(the MOS difference is {c.pair_mos[0] - c.pair_mos[1]})."
            ),
            "iqa set": (
                f"a batch with MOS {list(c.set_mos)}; every prediction equals its MOS except the "
                f"last image's, predicted at {c.set_mos[-1]}+x."
            ),
        }


def views_of(task: str) -> tuple[str, ...]:
    return VIEWS[task]


def pt_grid(n: int, lo: float = 0.001, hi: float = 0.999) -> np.ndarray:
    """``n`` evenly spaced values of p_t from ``lo`` to ``hi`` (inclusive)."""
    if not 0 < lo < hi < 1:
        raise ParameterError(f"need 0 < pt_min < pt_max < 1, got {lo} and {hi}")
    if n < 2:
        raise ParameterError(f"the grid needs at least 2 points, got {n}")
    return np.linspace(lo, hi, n)


# --------------------------------------------------------------------------------------------
# building the modules
# --------------------------------------------------------------------------------------------
def _wrapped_base(module: nn.Module) -> nn.Module | None:
    base = getattr(module, "base", None)
    return base if isinstance(base, nn.Module) else None


def loss_task(name: str, module: nn.Module | None = None) -> str:
    """The task whose construction draws loss ``name``: the registry's task, except for a
    wrapper (a loss holding another loss in ``.base``, e.g. ``flooding``), which is drawn in its
    base's task."""
    base = _wrapped_base(module) if module is not None else None
    if base is not None and getattr(base, "task", None) in TASKS:
        return base.task
    return losses.task_of(name)


def _with_reduction(name: str, kwargs: Mapping, reduction: str) -> nn.Module | None:
    """``build(name, reduction=..., **kwargs)``, or None when the loss has no such form."""
    if "reduction" not in losses.accepted_kwargs(name):
        return None
    try:
        return losses.build(name, **{**kwargs, "reduction": reduction})
    except ParameterError:  # e.g. flooding: defined on a batch mean only
        return None


# --------------------------------------------------------------------------------------------
# evaluation
# --------------------------------------------------------------------------------------------
#: Derivatives smaller than this in magnitude are reported as 0 (float64 rounding noise, e.g.
#: LogitNorm's near scale invariance gives +-1e-16 along the multi-class construction).
NOISE = 1e-12


def _snap(v: np.ndarray) -> np.ndarray:
    return np.where(np.abs(v) < NOISE, 0.0, v) + 0.0


def _derivatives(s: torch.Tensor, pt: torch.Tensor, val: torch.Tensor) -> dict[str, np.ndarray]:
    weight = -s.grad.numpy()
    noise = np.abs(weight) < NOISE
    return {"s": s.detach().numpy(), "value": val.detach().numpy(),
            "weight": _snap(weight), "weight_p": np.where(noise, 0.0, -pt.grad.numpy()) + 0.0}


def _multilabel(name: str, module: nn.Module, kwargs: Mapping, pts: np.ndarray, positive: bool,
                c: Construction) -> dict[str, np.ndarray]:
    per_item = _with_reduction(name, kwargs, "none")
    if per_item is None:
        raise ParameterError(
            f"multi-label loss {name!r} has no reduction='none' form, so the atlas cannot isolate "
            "one label's loss (a wrapper such as flooding is drawn only around multi-class losses)"
        )
    g = len(pts)
    pt = torch.tensor(pts, dtype=DTYPE, requires_grad=True)
    s = torch.logit(pt)
    s.retain_grad()
    n_other, n_pos = c.setwise_labels - 1, c.setwise_positives
    other_y = torch.zeros(n_other, dtype=DTYPE)
    other_y[:n_pos] = 1.0
    other_z = (2 * other_y - 1) * math.log(c.setwise_other_pt / (1 - c.setwise_other_pt))
    z0 = s if positive else -s
    z = torch.cat([z0[:, None], other_z.expand(g, n_other)], dim=1)
    y = torch.cat([torch.full((g, 1), float(positive), dtype=DTYPE), other_y.expand(g, n_other)], dim=1)
    out = per_item(z, y)
    if out.shape == z.shape:  # element-wise: label 0's own term
        val = out[:, 0]
    elif out.shape == (g,):  # set-wise: the sample's loss
        val = out
    else:
        raise ValueError(f"{name}: reduction='none' returned shape {tuple(out.shape)} for logits {tuple(z.shape)}")
    val.sum().backward()
    return _derivatives(s, pt, val)


def _multiclass(name: str, module: nn.Module, kwargs: Mapping, pts: np.ndarray,
                c: Construction) -> dict[str, np.ndarray]:
    g, k, other = len(pts), c.num_classes, c.multiclass_other_logit
    pt = torch.tensor(pts, dtype=DTYPE, requires_grad=True)
    s = torch.logit(pt) + (math.log(k - 1) + other)
    s.retain_grad()
    z = torch.cat([s[:, None], torch.full((g, k - 1), other, dtype=DTYPE)], dim=1)
    y = torch.zeros(g, dtype=torch.long)
    per_sample = _with_reduction(name, kwargs, "none")
    if per_sample is not None:
        val = per_sample(z, y)
        if val.shape != (g,):
            raise ValueError(f"{name}: reduction='none' returned shape {tuple(val.shape)}, expected ({g},)")
    else:  # defined on a batch mean (flooding): a batch of one sample per point
        val = torch.stack([module(z[i:i + 1], y[i:i + 1]).reshape(()) for i in range(g)])
    val.sum().backward()
    return _derivatives(s, pt, val)


def _iqa_kind(name: str, kwargs: Mapping) -> str:
    """'iqa set' for a loss returning one value per batch, else 'iqa pair' (pairwise/point-wise)."""
    per_item = _with_reduction(name, kwargs, "none")
    if per_item is None:
        raise ParameterError(f"IQA loss {name!r} has no reduction='none' form; the atlas cannot classify it")
    out = per_item(torch.tensor([0.1, 0.4, 0.2, 0.9], dtype=DTYPE), torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=DTYPE))
    return "iqa set" if out.ndim == 0 else "iqa pair"


def _iqa(name: str, kwargs: Mapping, xs: np.ndarray, view: str, c: Construction) -> dict[str, np.ndarray]:
    summed = _with_reduction(name, kwargs, "sum")
    if summed is None:
        raise ParameterError(f"IQA loss {name!r} has no reduction='sum' form; the atlas cannot draw it")
    x = torch.tensor(xs, dtype=DTYPE, requires_grad=True)
    if view == "iqa pair":
        qi, qj = c.pair_mos
        mos = torch.tensor([qi, qj], dtype=DTYPE)
        fixed = torch.tensor([qj], dtype=DTYPE)
        vals = [summed(torch.cat([(qj + x[i]).reshape(1), fixed]), mos) for i in range(len(xs))]
    else:
        mos = torch.tensor(c.set_mos, dtype=DTYPE)
        fixed = mos[:-1]
        vals = [summed(torch.cat([fixed, (mos[-1] + x[i]).reshape(1)]), mos) for i in range(len(xs))]
    val = torch.stack([v.reshape(()) for v in vals])
    val.sum().backward()
    return {"value": val.detach().numpy(), "pull": _snap(-x.grad.numpy())}


def classification_curves(name: str, pts: Iterable[float], kwargs: Mapping | None = None,
                          construction: Construction | None = None) -> pd.DataFrame:
    """Loss value and derivatives of ``build(name, **kwargs)`` at each p_t in ``pts``.

    Columns: ``loss, task, view, p_t, s, value, weight, weight_p`` (see the module docstring);
    a multi-label loss gives one block of rows per view (y=1, then y=0).
    """
    kwargs = dict(kwargs or {})
    c = construction or Construction()
    pts = np.asarray(list(pts), dtype=float)
    if pts.size == 0 or not np.all((pts > 0) & (pts < 1)):
        raise ParameterError(f"p_t values must lie strictly between 0 and 1, got {pts.tolist()}")
    module = losses.build(name, **kwargs)
    task = loss_task(name, module)
    if task == "multilabel":
        parts = {"multilabel y=1": _multilabel(name, module, kwargs, pts, True, c),
                 "multilabel y=0": _multilabel(name, module, kwargs, pts, False, c)}
    elif task == "multiclass":
        parts = {"multiclass": _multiclass(name, module, kwargs, pts, c)}
    else:
        raise ParameterError(f"{name!r} is an {task} loss: use iqa_curves")
    frames = [pd.DataFrame({"loss": name, "task": task, "view": view, "p_t": pts, **cols})
              for view, cols in parts.items()]
    return pd.concat(frames, ignore_index=True)


def iqa_curves(name: str, xs: Iterable[float], kwargs: Mapping | None = None,
               construction: Construction | None = None) -> pd.DataFrame:
    """Loss value and ``pull = -dL/dy_m`` of IQA loss ``name`` at each x in ``xs``.

    Columns: ``loss, task, view, x, value, pull``; the view ('iqa pair' or 'iqa set') is read
    from the shape of the loss's ``reduction='none'`` output.
    """
    kwargs = dict(kwargs or {})
    c = construction or Construction()
    xs = np.asarray(list(xs), dtype=float)
    module = losses.build(name, **kwargs)
    task = loss_task(name, module)
    if task != "iqa":
        raise ParameterError(f"{name!r} is a {task} loss: use classification_curves")
    if _wrapped_base(module) is not None:
        raise ParameterError(f"{name!r} wraps another loss; the atlas draws wrappers only around multi-class losses")
    view = _iqa_kind(name, kwargs)
    cols = _iqa(name, kwargs, xs, view, c)
    return pd.DataFrame({"loss": name, "task": task, "view": view, "x": xs, **cols})


def check_loss(name: str, kwargs: Mapping | None = None, construction: Construction | None = None) -> str | None:
    """None if the atlas can draw ``build(name, **kwargs)``, else a message saying why not
    (bad argument values included: the module is built and evaluated at two points)."""
    kwargs = dict(kwargs or {})
    if "reduction" in kwargs:
        return (f"loss_kwargs[{name!r}] sets 'reduction': the atlas evaluates one sample at a time "
                "and chooses the reduction itself; remove it")
    try:
        module = losses.build(name, **kwargs)
        if loss_task(name, module) == "iqa":
            out = iqa_curves(name, [-0.5, 0.5], kwargs, construction)
            col = "pull"
        else:
            out = classification_curves(name, [0.3, 0.7], kwargs, construction)
            col = "weight"
    except (ParameterError, ValueError, TypeError, NotImplementedError) as e:
        return f"the atlas cannot draw {name!r} with arguments {kwargs}: {e}"
    if not np.all(np.isfinite(out[["value", col]].to_numpy())):
        return f"loss {name!r} with arguments {kwargs} gives non-finite values on the atlas's construction"
    return None


# --------------------------------------------------------------------------------------------
# the whole atlas
# --------------------------------------------------------------------------------------------
@dataclass
class Atlas:
    """Everything the notebook draws and tabulates (long tables, one row per loss/view/point)."""

    curves: pd.DataFrame  # classification on the p_t grid
    iqa: pd.DataFrame  # IQA on the x grid
    at_table: pd.DataFrame  # classification at the table points (and 0.5)
    iqa_at_table: pd.DataFrame  # IQA at the table x values
    reference: pd.DataFrame  # the reference losses (bce, ce; registry defaults) at the table points
    reference_curves: pd.DataFrame  # ... and on the grid
    configs: dict[str, str] = field(default_factory=dict)  # loss -> repr of the built module
    construction: Construction = field(default_factory=Construction)
    table_pt: tuple[float, ...] = TABLE_PT
    table_x: tuple[float, ...] = ()


def compute(names: Sequence[str], loss_kwargs: Mapping[str, Mapping] | None = None, *,
            pts: np.ndarray | None = None, xs: np.ndarray | None = None,
            table_pt: Sequence[float] = TABLE_PT, table_x: Sequence[float] = (-1.5, -0.5, 0.5, 1.5),
            construction: Construction | None = None) -> Atlas:
    """Curves on the grids and values at the table points for every loss in ``names``."""
    loss_kwargs = {k: dict(v) for k, v in (loss_kwargs or {}).items()}
    c = construction or Construction()
    pts = pt_grid(199) if pts is None else np.asarray(pts, dtype=float)
    xs = np.linspace(-3.0, 3.0, 199) if xs is None else np.asarray(xs, dtype=float)
    tpts = np.array(sorted(set(map(float, table_pt)) | {0.5}))
    curves, iqa, at_table, iqa_at, configs = [], [], [], [], {}
    for name in names:
        kw = loss_kwargs.get(name, {})
        module = losses.build(name, **kw)
        configs[name] = repr(module)
        if loss_task(name, module) == "iqa":
            iqa.append(iqa_curves(name, xs, kw, c))
            iqa_at.append(iqa_curves(name, table_x, kw, c))
        else:
            curves.append(classification_curves(name, pts, kw, c))
            at_table.append(classification_curves(name, tpts, kw, c))
    ref = pd.concat([classification_curves(r, tpts, None, c) for r in REFERENCE.values()], ignore_index=True)
    ref_curves = pd.concat([classification_curves(r, pts, None, c) for r in REFERENCE.values()], ignore_index=True)

    def cat(frames):
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    return Atlas(cat(curves), cat(iqa), cat(at_table), cat(iqa_at), ref, ref_curves, configs, c,
                 tuple(map(float, table_pt)), tuple(map(float, table_x)))


def _columns(values: Iterable[float]) -> list[str]:
    return [f"{v:g}" for v in values]


def weight_table(at: pd.DataFrame, pts: Sequence[float], column: str = "weight") -> pd.DataFrame:
    """Wide table: one row per (view, loss), one column per p_t (labelled like '0.05')."""
    if at.empty:
        return pd.DataFrame(columns=["view", "loss", *_columns(pts)])
    order = list(dict.fromkeys(zip(at["view"], at["loss"])))
    wide = at.pivot_table(index=["view", "loss"], columns="p_t", values=column, aggfunc="first")
    wide = wide.reindex(pd.MultiIndex.from_tuples(order, names=["view", "loss"]))
    wide = wide[[float(p) for p in pts]]
    wide.columns = _columns(pts)
    return wide.reset_index()


def _safe_divide(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den != 0, num / np.where(den != 0, den, 1.0), np.nan)


def relative_to_point(at: pd.DataFrame, pts: Sequence[float], point: float = 0.5) -> pd.DataFrame:
    """``weight(p_t) / weight(point)`` of the same loss in the same view (NaN where that is 0)."""
    tab = weight_table(at, list(pts) + ([point] if point not in pts else []))
    cols = _columns(pts)
    den = tab[f"{point:g}"].to_numpy(dtype=float)[:, None]
    out = tab[["view", "loss"]].copy()
    out[cols] = _safe_divide(tab[cols].to_numpy(dtype=float), den)
    return out


def relative_to_reference(at: pd.DataFrame, reference: pd.DataFrame, pts: Sequence[float]) -> pd.DataFrame:
    """``weight(p_t) / weight_ref(p_t)``, the reference (bce / ce with registry defaults) of the
    row's view at the same p_t; a ``reference`` column names it."""
    tab = weight_table(at, pts)
    ref = weight_table(reference, pts).set_index("view")
    cols = _columns(pts)
    out = tab[["view", "loss"]].copy()
    out.insert(2, "reference", [REFERENCE["multilabel" if v.startswith("multilabel") else "multiclass"]
                                for v in tab["view"]])
    den = ref.loc[tab["view"], cols].to_numpy(dtype=float)
    out[cols] = _safe_divide(tab[cols].to_numpy(dtype=float), den)
    return out


def pull_table(iqa_at: pd.DataFrame, xs: Sequence[float]) -> pd.DataFrame:
    """Wide IQA table: one row per (view, loss), one column per x, cell ``pull = -dL/dy_m``."""
    if iqa_at.empty:
        return pd.DataFrame(columns=["view", "loss", *_columns(xs)])
    order = list(dict.fromkeys(zip(iqa_at["view"], iqa_at["loss"])))
    wide = iqa_at.pivot_table(index=["view", "loss"], columns="x", values="pull", aggfunc="first")
    wide = wide.reindex(pd.MultiIndex.from_tuples(order, names=["view", "loss"]))[[float(x) for x in xs]]
    wide.columns = _columns(xs)
    return wide.reset_index()


# --------------------------------------------------------------------------------------------
# figures
# --------------------------------------------------------------------------------------------
YLABELS = {
    "value": "loss",
    "weight": r"$-\partial L/\partial s$",
    "weight_p": r"$-\partial L/\partial p_t$",
    "pull": r"$-\partial L/\partial \hat y_m$",
}
XLABELS = {"p_t": r"$p_t$", "iqa pair": r"$x = \hat y_i - \hat y_j$", "iqa set": r"$x = \hat y_m - q_m$"}


def loss_colors(names: Iterable[str]) -> dict[str, tuple]:
    """A fixed colour per registered loss name (the same in every figure)."""
    every = [n for t in TASKS for n in losses.available(t)]
    extra = [n for n in names if n not in every]
    cmap = plt.get_cmap("tab20")
    return {n: cmap(i % 20) for i, n in enumerate(every + extra)}


def wide_range(values: np.ndarray) -> bool:
    """Whether values are all positive and span a wide range: the maximum above 100 times the
    median (exp_ce and f_ece near p_t = 0 reach ~1000 where BCE is ~7). Such a panel gets a log y
    axis, so that every curve in it stays readable."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    return bool(v.size and (v > 0).all() and v.max() > 100 * np.median(v))


def _style(ax, values: np.ndarray) -> None:
    """The kit's tick labels; a log y axis when ``values`` (every curve of the panel, the
    reference's included) are all positive and span a wide range (:func:`wide_range`), linear
    otherwise."""
    ax.tick_params(labelsize=report.MIN_FONT, length=2.5, pad=1.5)
    ax.locator_params(axis="x", nbins=4)
    if wide_range(values):
        ax.set_yscale("log")
    else:
        ax.locator_params(axis="y", nbins=4)


def _short(view: str) -> str:
    """``multilabel y=1`` -> ``y=1``, ``iqa pair`` -> ``pair``, ``multiclass`` -> ``""``."""
    return view.split(" ", 1)[1] if " " in view else ""


def _rows(groups: Mapping, views: Sequence[str], per_row: int) -> list[list[tuple[str, str]]]:
    """The (view, loss) panels pairs of each figure row: a loss per row with its views side by side
    when every loss has every view (multi-label: y=1 | y=0), else ``per_row`` losses per row, a
    new row at each view."""
    names = {v: [n for w, n in groups if w == v] for v in views}
    present = [v for v in views if names[v]]
    if len(present) > 1 and len({tuple(names[v]) for v in present}) == 1 and len(present) <= per_row:
        return [[(v, n) for v in present] for n in names[present[0]]]
    out = []
    for v in present:
        out += [[(v, n) for n in names[v][i:i + per_row]] for i in range(0, len(names[v]), per_row)]
    return out


def plot_family(curves: pd.DataFrame, views: Sequence[str], *, x: str = "p_t", y: str = "weight",
                reference: pd.DataFrame | None = None, ncols: int = 2, title: str = "") -> Figure:
    """Small multiples sized for a notebook: each (view, loss) is a pair of panels side by side,
    the loss value and the derivative column ``y``, ``ncols`` pairs per row (multi-label: one loss
    per row, positives then negatives). The view's reference loss (if given) is drawn dashed
    grey in every other panel. A panel whose curves are positive and span more than a factor 100
    above their median gets a log y axis (:func:`wide_range`)."""
    groups = {key: g for key, g in curves.groupby(["view", "loss"], sort=False)}
    refs = {} if reference is None else {v: g for v, g in reference.groupby("view", sort=False)}
    rows = _rows(groups, views, ncols)
    if not rows:
        raise ValueError(f"no curves for the views {list(views)}")
    width = max(len(r) for r in rows)
    colors = loss_colors(curves["loss"].unique())
    with report.style():
        fig, axes = plt.subplots(len(rows), 2 * width, figsize=(min(report.FIG_WIDTH, 2.45 * 2 * width + 0.3),
                                                                 1.65 * len(rows) + 0.7),
                                 squeeze=False, layout="constrained")
        for r, row in enumerate(rows):
            for j in range(width):
                left, right = axes[r, 2 * j], axes[r, 2 * j + 1]
                if j >= len(row):
                    left.axis("off")
                    right.axis("off")
                    continue
                view, name = row[j]
                d = groups[(view, name)]
                ref = refs.get(view)
                ref = None if ref is None or ref["loss"].iloc[0] == name else ref
                for ax, col in ((left, "value"), (right, y)):
                    drawn = [d[col].to_numpy(dtype=float)]
                    if ref is not None:
                        ax.plot(ref[x], ref[col], color="0.6", linestyle="--", linewidth=0.9, label=ref["loss"].iloc[0])
                        drawn.append(ref[col].to_numpy(dtype=float))
                    ax.plot(d[x], d[col], color=colors[name], linewidth=1.5, label=name)
                    _style(ax, np.concatenate(drawn))
                right.axhline(0.0, color="0.85", linewidth=0.6, zorder=0)
                head = f"{name} · {_short(view)}" if _short(view) else name
                left.set_title(f"{head}: loss", fontsize=9, pad=3)
                right.set_title(f"{head}: {YLABELS[y]}", fontsize=9, pad=3)
                below = rows[r + 1][j][0] if r + 1 < len(rows) and j < len(rows[r + 1]) else None
                if below != view:  # the lowest panel of its column in this view: label its x axis
                    for ax in (left, right):
                        ax.set_xlabel(XLABELS.get(view, XLABELS.get(x, x)), fontsize=9, labelpad=1)
        if title:
            fig.suptitle(title)
    return fig


def plot_overview(curves: pd.DataFrame, views: Sequence[str] | None = None) -> Figure:
    """Every classification loss in one panel per view: ``|dL/ds|`` (top) and ``|dL/dp_t|``
    (bottom) against p_t on a log scale (zero values, e.g. ASL's clipped negatives, are not drawn);
    each view's legend below its column."""
    views = list(views or dict.fromkeys(curves["view"]))
    colors = loss_colors(curves["loss"].unique())
    with report.style():
        fig, axes = plt.subplots(2, len(views), figsize=(min(report.FIG_WIDTH, 3.3 * len(views) + 0.2), 7.6),
                                 squeeze=False, sharex=True, layout="constrained")
        for j, view in enumerate(views):
            d = curves[curves["view"] == view]
            for name in dict.fromkeys(d["loss"]):
                e = d[d["loss"] == name]
                for i, col in enumerate(("weight", "weight_p")):
                    v = np.abs(e[col].to_numpy(dtype=float))
                    v = np.where(v > 0, v, np.nan)
                    axes[i, j].plot(e["p_t"], v, color=colors[name], linewidth=1.3, label=name)
            for i, col in enumerate(("weight", "weight_p")):
                ax = axes[i, j]
                ax.set_yscale("log")
                ax.set_ylabel(r"$|\partial L/\partial s|$" if col == "weight" else r"$|\partial L/\partial p_t|$")
                ax.grid(True, which="major", color="0.9", linewidth=0.6)
            axes[1, j].set_xlabel(r"$p_t$")
            axes[0, j].set_title(view)
            axes[1, j].legend(ncol=2, loc="upper center", bbox_to_anchor=(0.5, -0.2), frameon=False,
                              handlelength=1.2, columnspacing=0.8)
        fig.suptitle("Gradient–probability view: every loss, gradient magnitude against p_t")
    return report._ticks(fig)


# --------------------------------------------------------------------------------------------
# interactive explorer (JupyterLab only; the notebook uses it when interactive=True)
# --------------------------------------------------------------------------------------------
#: slider -> (losses and the argument it sets, (min, max, step)).
SLIDERS = {
    "gamma": ((("focal", "gamma"), ("focal_ce", "gamma"), ("f_ece", "gamma")), (0.0, 5.0, 0.25)),
    "asl_gamma_neg": ((("asl", "gamma_neg"),), (0.0, 8.0, 0.5)),
    "asl_gamma_pos": ((("asl", "gamma_pos"),), (0.0, 4.0, 0.25)),
    "fzlpr_tau": ((("fzlpr", "tau"),), (0.05, 2.0, 0.05)),
    "logit_norm_tau": ((("logit_norm", "tau"),), (0.01, 1.0, 0.01)),
    "gce_q": ((("gce", "q"),), (0.05, 1.0, 0.05)),
}


def _slider_kwargs(values: Mapping[str, float], base: Mapping[str, Mapping] | None = None) -> dict[str, dict]:
    out = {k: dict(v) for k, v in (base or {}).items()}
    for slider, value in values.items():
        for name, arg in SLIDERS[slider][0]:
            out.setdefault(name, {})[arg] = float(value)
    return out


def slider_defaults(loss_kwargs: Mapping[str, Mapping] | None = None) -> dict[str, float]:
    """Each slider's starting value: the notebook's loss_kwargs, else the registry default."""
    loss_kwargs = loss_kwargs or {}
    out = {}
    for slider, (targets, _) in SLIDERS.items():
        name, arg = targets[0]
        out[slider] = float(loss_kwargs.get(name, {}).get(arg, losses.accepted_kwargs(name)[arg]))
    return out


def plot_focus(values: Mapping[str, float], pts: np.ndarray, loss_kwargs: Mapping[str, Mapping] | None = None,
               construction: Construction | None = None) -> Figure:
    """The losses the sliders control, with the slider values, against their references:
    loss (top; a log axis where the curves span a wide range, :func:`wide_range`: f_ece's
    ~1000 next to BCE's ~7) and ``|dL/ds|`` (bottom, log scale) for multi-label y=1, y=0 and
    multi-class."""
    kw = _slider_kwargs(values, loss_kwargs)
    names = list(dict.fromkeys(n for targets, _ in SLIDERS.values() for n, _ in targets))
    frames = [classification_curves(n, pts, kw.get(n, {}), construction) for n in names]
    frames += [classification_curves(r, pts, None, construction) for r in REFERENCE.values()]
    curves = pd.concat(frames, ignore_index=True)
    colors = loss_colors(curves["loss"].unique())
    views = ["multilabel y=1", "multilabel y=0", "multiclass"]
    with report.style():
        fig, axes = plt.subplots(2, 3, figsize=(report.FIG_WIDTH, 6.4), squeeze=False, sharex=True, layout="constrained")
        for j, view in enumerate(views):
            d = curves[curves["view"] == view]
            for name in dict.fromkeys(d["loss"]):
                e = d[d["loss"] == name]
                ref = name in REFERENCE.values()
                style = {"color": "0.5", "linestyle": "--"} if ref else {"color": colors[name]}
                axes[0, j].plot(e["p_t"], e["value"], label=name, **style)
                w = np.abs(e["weight"].to_numpy(dtype=float))
                axes[1, j].plot(e["p_t"], np.where(w > 0, w, np.nan), label=name, **style)
            if wide_range(d["value"].to_numpy(dtype=float)):
                axes[0, j].set_yscale("log")
            axes[0, j].set_title(view)
            axes[1, j].set_yscale("log")
            axes[1, j].set_xlabel(r"$p_t$")
            axes[0, j].legend(frameon=False, handlelength=1.2, labelspacing=0.25)
        axes[0, 0].set_ylabel("loss")
        axes[1, 0].set_ylabel(r"$|\partial L/\partial s|$")
        fig.suptitle(", ".join(f"{k}={v:g}" for k, v in values.items()))
    return report._ticks(fig)


#: Every slider's label column and slider width, so that the tracks start and end aligned.
SLIDER_STYLE = {"description_width": "9em"}
SLIDER_WIDTH = "32em"


def explorer(pts: np.ndarray, loss_kwargs: Mapping[str, Mapping] | None = None,
             construction: Construction | None = None):
    """An ``ipywidgets`` panel with one slider per entry of :data:`SLIDERS` redrawing
    :func:`plot_focus` (for JupyterLab; needs a live kernel). Every slider has the same label
    width and length (:data:`SLIDER_STYLE`, :data:`SLIDER_WIDTH`), so the tracks line up; a
    slider's tooltip names the losses and argument it sets."""
    import ipywidgets as widgets

    start = slider_defaults(loss_kwargs)
    sliders = {
        name: widgets.FloatSlider(value=start[name], min=lo, max=hi, step=step, description=name,
                                  tooltip=", ".join(f"{n}.{a}" for n, a in targets),
                                  continuous_update=False, readout_format=".2f",
                                  style=dict(SLIDER_STYLE), layout=widgets.Layout(width=SLIDER_WIDTH))
        for name, (targets, (lo, hi, step)) in SLIDERS.items()
    }

    def draw(**values):
        plot_focus(values, pts, loss_kwargs, construction)
        plt.show()
        return None

    return widgets.interactive(draw, **sliders)
