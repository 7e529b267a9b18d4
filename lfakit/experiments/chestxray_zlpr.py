"""ChestX-ray14 loss comparison (the ChestX-ray14 ZLPR study): focal vs ZLPR / FZLPR (+ BCE, ASL).

Defines the notebook's parameter ``SCHEMA``. The notebook ``notebooks/chestxray_zlpr.ipynb`` calls, in order: :func:`setup` (threads, seed,
run folder, early input checks), :func:`load_data`, :func:`train_all`, :func:`evaluate`,
:func:`figures` and :func:`save`. Every step reads the validated parameter dict ``P``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from lfakit import models, record, report
from lfakit.catalog import LOSSES
from lfakit.data import chestxray
from lfakit.experiments import steps
from lfakit.experiments._shared import Trained, mean_auroc, open_checked_run, preflight_run
from lfakit.experiments._shared import loss_modules  # noqa: F401 -- the notebook's loss table
from lfakit.experiments.steps import ClassEvaluation as Evaluation
from lfakit.schemas.chestxray_zlpr import EXPERIMENT, check_inputs

CLASSES = chestxray.CLASSES
SPLITS = ("train", "val", "test")


def cache_dir(P: dict) -> Path:
    """``cache_dir`` parameter, else ``$LFAKIT_CACHE``, else ``~/.cache/lfakit``."""
    return Path(P["cache_dir"]).expanduser() if P["cache_dir"] else chestxray.default_cache_dir()


def preflight(P: dict, inputs_checked: bool = False) -> None:
    """What the run needs beyond its parameters: the NIH data (when ``data_dir`` is set) and
    the pretrained weights. ``lfakit run`` calls it before making a run folder, after the
    torch-free :func:`~lfakit.schemas.chestxray_zlpr.check_inputs` (``inputs_checked``); so does
    :func:`setup`, with those checks."""
    preflight_run(P, None if inputs_checked else check_inputs)


def setup(P: dict) -> Path:
    """Fix threads and seeds, check inputs before any work, and open the run folder."""
    return open_checked_run(P, EXPERIMENT, preflight)


def load_data(P: dict) -> dict:
    """The train / val / test splits (uint8 images from the pre-resized cache, 14 targets)."""
    return chestxray.load_chestxray(
        data_dir=P["data_dir"] or None,
        cache_dir=cache_dir(P),
        image_size=P["image_size"],
        clahe_clip=P["clahe_clip"],
        clahe_grid=P["clahe_grid"],
        val_fraction=P["val_fraction"],
        seed=P["seed"],
        max_images=P["max_images"] or None,
        embedded_kwargs={"n_patients": P["synthetic_patients"]},
    )


def split_summary(splits: dict) -> pd.DataFrame:
    """Images, patients and positives per class in each split (a checked notebook output)."""
    rows = {}
    for name, s in splits.items():
        pos = s.targets.sum(0).astype(int)
        rows[name] = {"images": len(s.image_ids), "patients": len(set(s.patient_ids)), **dict(zip(CLASSES, pos))}
    return pd.DataFrame(rows)


training_seeds = steps.training_seeds


def train_all(P: dict, splits: dict, run_dir: Path) -> dict[str, dict[int, Trained]]:
    """Train one model per loss in ``P['losses']`` and training seed (``seeds``, else ``seed``),
    same data and schedule for each, or reload them when resuming; ``{loss: {seed: Trained}}``
    with logits and per-image losses on every split. The seed sets the initial weights and the
    data order; the data split is ``P['seed']``'s."""
    ch = models.input_channels(P["model"])
    train_on, predict_on = steps.image_datasets(P, {n: (s.images, s.targets) for n, s in splits.items()}, ch)

    def build():
        return models.build_model(P["model"], len(CLASSES), pretrained=P["pretrained"], in_chans=ch,
                                  precision=P["precision"])

    return steps.train_losses(P, build, train_on, predict_on, run_dir, {"auroc": mean_auroc})


def evaluate(P: dict, runs: dict[str, dict[int, Trained]], splits: dict) -> Evaluation:
    """Per-class AUROC on test (of the float64 logits); F1 on test at the per-class threshold
    that maximises F1 on val; with several seeds, each per-class metric is the mean over seeds
    (:func:`lfakit.experiments.steps.evaluate_classification`). A class whose test labels are all
    equal has no AUROC and no F1 and is left out of both averages alike. Figures use the first seed."""
    return steps.evaluate_classification(runs, splits["val"].targets, splits["test"].targets, CLASSES)


def overall(ev: Evaluation) -> dict[str, dict]:
    """Per loss: the mean test loss and the averages over classes of AUROC, F1 and F1 (z>0)."""
    return {n: {"loss": ev.test_loss[n], "avg_auroc": ev.average(n, "AUROC"), "avg_f1": ev.average(n, "F1"),
                "avg_f1_zero": ev.average(n, "F1 (z>0)")} for n in ev.per_class}


def overall_note(ev: Evaluation) -> str:
    """What the overall table's rows mean and which classes the averages cover."""
    cover = (f"Averages over all {len(CLASSES)} classes." if not ev.left_out else
             f"Averages over {len(CLASSES) - len(ev.left_out)} classes; left out of every average (no positive or no "
             f"negative test image): {', '.join(ev.left_out)}.")
    return (f"{report.loss_conventions(list(ev.per_class))}\nAvg F1: per-class thresholds tuned on validation; "
            f"Avg F1 (z>0): the fixed rule logit > 0.\n{cover}")


def comparison_note(P: dict) -> str:
    """What the comparison's evidence covers (printed beside the table)."""
    return steps.comparison_note(P, EXPERIMENT)


def tables(P: dict, ev: Evaluation) -> dict[str, pd.DataFrame]:
    """The study's three tables: per-class metrics per loss, overall, and the comparison."""
    out = {}
    for name, rep in ev.per_class.items():
        t = report.per_class_table(rep, score_output=LOSSES.meta(name).get("output") == "score")
        if len(training_seeds(P)) > 1:  # every column is a mean over seeds; F1 was measured at each seed's threshold
            t = t.rename(columns={c: f"{c}, seed mean" for c in t.columns if c.startswith("Threshold")})
        out[f"per_class_{name}"] = t
    out["overall"] = report.overall_table(overall(ev))
    if len(ev.per_class) > 1:
        out["comparison"] = steps.classification_comparison(P, ev)
    return out


def figures(P: dict, ev: Evaluation, runs: dict[str, dict[int, Trained]], run_dir: Path) -> dict:
    """Per-class AUROC with 95% intervals (DeLong with one seed, t over seeds with several), ROC
    curves and training curves (first seed), saved under ``figures/`` and returned."""
    figs = {
        "per_class_auroc": report.plot_per_class_auroc_ci(ev.y_test, ev.logits_by_seed, CLASSES),
        "roc_curves": report.plot_roc_curves(ev.y_test, ev.probs_test, CLASSES),
        "history": report.plot_history({n: steps.first(r).history for n, r in runs.items()}),
    }
    for name, fig in figs.items():
        report.save_figure(fig, run_dir / "figures" / f"{name}.png")
    return figs


HEADLINE_ABOUT = ("test split; Loss (own scale): the mean test loss in each loss's own convention (see the loss "
                  "registry's mean_over), not comparable across losses; Avg AUROC: the mean over classes of the "
                  "per-class AUROC of the float64 logits; Avg F1: the mean over classes of F1 at the per-class "
                  "probability threshold that maximises F1 on validation; Avg F1 (z>0): at the fixed rule logit > 0; "
                  "classes without both test labels are in no average; with several training seeds every per-class "
                  "metric is the mean over seeds before the average over classes; rounded to 4 decimals")


def save(P: dict, run_dir: Path, runs: dict[str, dict[int, Trained]], ev: Evaluation, splits: dict,
         tables: dict[str, pd.DataFrame]) -> list[str]:
    """Write the run record (:mod:`lfakit.record`): every loss's logits and per-image losses on
    every split for every seed, metrics.json with the overall table as headline (means over
    seeds), tables/*.csv and the manifest; return the files of the run folder."""
    pw = record.PredictionWriter()
    steps.add_predictions(pw, runs, {n: (s.image_ids, s.targets) for n, s in splits.items()})
    methods = steps.method_records(P, runs)
    summary = overall(ev)
    for name, rec in methods.items():
        rep = ev.per_class[name]
        rec.update({
            "per_seed": {int(s): {"avg_auroc": float(np.nanmean(ps["AUROC"])), "avg_f1": float(np.nanmean(ps["F1"]))}
                         for s, ps in ev.per_seed[name].items()},
            "test_loss": summary[name]["loss"],
            "avg_auroc": summary[name]["avg_auroc"],
            "avg_f1": summary[name]["avg_f1"],
            "per_class": {c: {k.lower(): v for k, v in rep.loc[c].items()} for c in rep.index},
        })
    extra = {
        "classes": list(CLASSES),
        "seeds": training_seeds(P),
        "baseline": P["baseline"],
        "threshold_rule": "per class, the probability threshold maximising F1 on validation; F1 reported on test",
    }
    return record.save_run(run_dir, EXPERIMENT, P, methods=methods, headline=("overall", tables["overall"], HEADLINE_ABOUT),
                           tables=tables, predictions=pw, score_kind="logit", extra=extra)
