"""Parameters of the loss atlas: every registered loss's value and gradient against p_t."""

from __future__ import annotations

import math

from lfakit.catalog import LOSS_TASKS, LOSSES
from lfakit.params import Spec, check_loss_kwargs, loss_choices, run_params

EXPERIMENT = "loss_atlas"


def _probabilities(values: list) -> str | None:
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v < 1:
            return f"every p_t must be a number strictly between 0 and 1, got {v!r}"
    return None


def _numbers(values: list) -> str | None:
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or abs(v) > 1000:
            return f"every entry must be a finite number in [-1000, 1000], got {v!r}"
    return None


SCHEMA: dict[str, Spec] = {
    "tasks": Spec(list, list(LOSS_TASKS), "task families to draw: multilabel, multiclass, iqa", choices=LOSS_TASKS, nonempty=True),
    "losses": Spec(list, [], "losses to draw, by registry name; empty: every registered loss of the chosen tasks", choices_fn=loss_choices()),
    "loss_kwargs": Spec(dict, {}, 'per-loss arguments, e.g. {"focal": {"gamma": 1.0}}; empty: registry defaults', check=check_loss_kwargs),
    "grid_size": Spec(int, 199, "points on the p_t grid and on the IQA x grid", min=5, max=20_001),
    "pt_min": Spec(float, 0.001, "smallest p_t drawn", min=1e-6, max=0.5),
    "pt_max": Spec(float, 0.999, "largest p_t drawn", min=0.5, max=1 - 1e-6),
    "table_pt": Spec(list, [0.05, 0.3, 0.5, 0.8, 0.95], "p_t values of the gradient-weight tables", nonempty=True, check=_probabilities),
    "num_classes": Spec(int, 10, "K of the multi-class construction", min=2, max=100_000),
    "multiclass_other_logit": Spec(float, 0.0, "logit of the K-1 other classes (the true-class logit varies)", min=-30.0, max=30.0),
    "setwise_labels": Spec(int, 14, "C of the multi-label sample (matters for the set-wise ZLPR family)", min=2, max=100_000),
    "setwise_positives": Spec(int, 2, "how many of the C-1 fixed labels are positive (the rest negative)", min=0, max=99_999),
    "setwise_other_pt": Spec(float, 0.9, "p_t of every fixed label (all correctly predicted)", min=1e-6, max=1 - 1e-6),
    "iqa_range": Spec(float, 3.0, "IQA curves span x from -iqa_range to iqa_range", min=0.01, max=1000.0),
    "table_x": Spec(list, [-1.5, -0.5, 0.5, 1.5], "x values of the IQA table", nonempty=True, check=_numbers),
    "interactive": Spec(bool, False, "sliders for gamma, tau and q in JupyterLab; False (papermill, nbval): static figures"),
    **run_params(EXPERIMENT, seed=42, num_threads=1),
}
SCHEMA["device"] = Spec(str, "cpu", "unused: the atlas always computes on the CPU in float64", choices=("auto", "cpu", "cuda", "mps"))
SCHEMA["seed"] = Spec(int, 42, "nothing here is random; kept for the common run interface", min=0, max=2**32 - 1)
SCHEMA["resume"] = Spec(bool, False, "nothing to resume: a run recomputes everything in seconds", internal=True)


def check_params(p: dict) -> str | None:
    """Checks across parameters that need no loss to be built (the experiment's preflight
    builds every chosen loss with its arguments)."""
    if not p["pt_min"] < p["pt_max"]:
        return f"pt_min ({p['pt_min']}) must be smaller than pt_max ({p['pt_max']})"
    if p["setwise_positives"] > p["setwise_labels"] - 1:
        return f"setwise_positives ({p['setwise_positives']}) must be at most setwise_labels - 1 ({p['setwise_labels'] - 1})"
    for name in p["losses"]:
        task = LOSSES.meta(name)["task"]
        if task not in p["tasks"]:
            return f"loss {name!r} is a {task} loss but tasks is {p['tasks']}; add {task!r} to tasks or drop the loss"
    chosen = set(p["losses"]) or {n for t in p["tasks"] for n in LOSSES.names(task=t)}
    for name, kwargs in p["loss_kwargs"].items():
        if name not in chosen:
            return (f"loss_kwargs gives arguments for {name!r}, which this atlas does not draw "
                    f"(tasks {p['tasks']}, losses {p['losses'] or 'all'}); remove it or draw the loss")
        if "reduction" in kwargs:  # as lfakit.atlas.check_loss, without building the loss
            return (f"loss_kwargs[{name!r}] sets 'reduction': the atlas evaluates one sample at a time "
                    "and chooses the reduction itself; remove it")
        base = kwargs.get("base") if name == "flooding" else None
        if isinstance(base, str) and base in LOSSES.names() and LOSSES.meta(base)["task"] != "multiclass":
            return (f"the atlas cannot draw 'flooding' with arguments {kwargs}: its base {base!r} is a "
                    f"{LOSSES.meta(base)['task']} loss, and the atlas draws flooding only around multi-class losses "
                    "(their per-sample value); use a multi-class base such as 'ce'")
    return None
