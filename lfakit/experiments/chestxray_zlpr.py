"""ChestX-ray14 loss comparison (the ChestX-ray14 ZLPR study): focal vs ZLPR / FZLPR (+ BCE, ASL).

Defines the notebook's parameter ``SCHEMA``. The notebook ``notebooks/chestxray_zlpr.ipynb`` calls, in order: :func:`setup` (threads, seed,
run folder, early input checks), :func:`load_data`, :func:`train_all`, :func:`evaluate`,
:func:`figures` and :func:`save`. Every step reads the validated parameter dict ``P``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from scipy.special import expit

from lfakit import models, record, report
from lfakit.catalog import LOSSES
from lfakit.data import chestxray
from lfakit.data.datasets import ArrayImageDataset
from lfakit.metrics.classification import multilabel_report
from lfakit.experiments._shared import open_checked_run, mean_auroc, Trained, loss_modules, mean_frame, preflight_device, preflight_losses, train_or_resume
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
    if not inputs_checked:
        check_inputs(P)
    preflight_losses(P)
    preflight_device(P)
    if P["pretrained"]:
        models.ensure_weights(P["model"])


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


def _datasets(P: dict, splits: dict) -> dict:
    ch = models.input_channels(P["model"])
    return {
        name: ArrayImageDataset(s.images, s.targets, channels=ch, augment=P["augment"] and name == "train")
        for name, s in splits.items()
    }


def training_seeds(P: dict) -> list[int]:
    """The seeds every loss is trained with: ``seeds``, else ``[seed]``."""
    return [int(v) for v in P["seeds"]] or [P["seed"]]


def train_one(P: dict, name: str, loss_fn, datasets: dict, run_dir: Path,
              seed: int | None = None) -> Trained:
    """Train a fresh model with one loss and one seed (or reload it when resuming); logits and
    per-image losses on every split. The seed sets the initial weights and the data order; the
    data split is ``P['seed']``'s."""
    s = P["seed"] if seed is None else seed
    tag = f"{name}_seed{s}" if P["seeds"] else name

    def build():
        return models.build_model(P["model"], len(CLASSES), pretrained=P["pretrained"],
                                  in_chans=models.input_channels(P["model"]), precision=P["precision"])

    return train_or_resume({**P, "seed": s}, tag, loss_fn, build, datasets["train"], datasets["val"], datasets, run_dir,
                           {"auroc": mean_auroc}, f"{name} seed {s}" if P["seeds"] else name)


def train_all(P: dict, splits: dict, run_dir: Path) -> dict[str, dict[int, Trained]]:
    """Train one model per loss in ``P['losses']`` and seed (same data and schedule for each);
    ``{loss: {seed: Trained}}``."""
    datasets = _datasets(P, splits)
    return {name: {s: train_one(P, name, fn, datasets, run_dir, seed=s) for s in training_seeds(P)}
            for name, fn in loss_modules(P).items()}


@dataclass
class Evaluation:
    per_class: dict[str, pd.DataFrame]  # loss -> Class x (AUROC, F1, Threshold, ...), mean over seeds
    overall: dict[str, dict]  # loss -> {loss, avg_auroc, avg_f1}
    probs_test: dict[str, np.ndarray]
    y_test: np.ndarray
    logits_test: dict[str, np.ndarray]  # float64: what AUROC and DeLong rank
    left_out: list[str]  # classes without both label values on test: in no average
    logits_by_seed: dict[str, dict[int, np.ndarray]]  # loss -> seed -> float64 test logits
    per_seed: dict[str, dict[int, pd.DataFrame]]  # loss -> seed -> per-class report


def evaluate(P: dict, runs: dict[str, dict[int, Trained]], splits: dict) -> Evaluation:
    """Per-class AUROC on test (of the float64 logits); F1 on test at the per-class threshold
    that maximises F1 on val; with several seeds, each per-class metric is the mean over seeds.
    A class whose test labels are all equal has no AUROC and no F1 and is left out of both
    averages alike. Figures use the first seed."""
    y_val, y_test = splits["val"].targets, splits["test"].targets
    per_class, overall, probs, logits, by_seed, per_seed = {}, {}, {}, {}, {}, {}
    for name, seeds in runs.items():
        reps = {s: multilabel_report(y_val, expit(r.logits["val"]), y_test, expit(r.logits["test"]), CLASSES,
                                     rank_test=r.logits["test"]) for s, r in seeds.items()}
        rep = mean_frame(list(reps.values()))
        per_class[name], per_seed[name] = rep, reps
        first = next(iter(seeds.values()))
        probs[name], logits[name] = expit(first.logits["test"]), first.logits["test"]
        by_seed[name] = {s: r.logits["test"] for s, r in seeds.items()}
        overall[name] = {
            "loss": float(np.mean([r.loss("test") for r in seeds.values()])),
            "avg_auroc": float(np.nanmean(rep["AUROC"])),
            "avg_f1": float(np.nanmean(rep["F1"])),
            "avg_f1_zero": float(np.nanmean(rep["F1 (z>0)"])),
        }
    n_pos = y_test.sum(0)
    left_out = [c for c, k in zip(CLASSES, n_pos) if k == 0 or k == len(y_test)]
    return Evaluation(per_class, overall, probs, y_test, logits, left_out, by_seed, per_seed)


def overall_note(ev: Evaluation) -> str:
    """What the overall table's rows mean and which classes the averages cover."""
    cover = (f"Averages over all {len(CLASSES)} classes." if not ev.left_out else
             f"Averages over {len(CLASSES) - len(ev.left_out)} classes; left out of every average (no positive or no "
             f"negative test image): {', '.join(ev.left_out)}.")
    return (f"{report.loss_conventions(list(ev.overall))}\nAvg F1: per-class thresholds tuned on validation; "
            f"Avg F1 (z>0): the fixed rule logit > 0.\n{cover}")


def comparison_note(P: dict) -> str:
    """What the comparison's evidence covers (printed beside the table)."""
    seeds = training_seeds(P)
    if len(seeds) > 1:
        return (f"Evidence: {len(seeds)} trained models per loss (seeds {seeds}) on one split and test set. Each row is "
                "the seed-level t: the seed-to-seed spread of the paired per-seed AUROC differences beyond the "
                "test-set noise is added to the test-set variance of their mean (DeLong's covariance of every model "
                "per class; the bootstrap covariance of the models' mean AUROC for the Mean row), with its 95% "
                "interval. Holm family: every row of the table (each challenger's classes and Mean). A Winner is "
                "named where the corrected p < 0.05.")
    return (f"Evidence: one trained model per loss (seed {seeds[0]}). Each row is the difference of these two "
            "models: DeLong per class, a paired stratified bootstrap for the Mean, over test-set sampling only. "
            "Another seed could reverse any of them, so no Winner is named. Holm family: every row of the table. "
            "For a verdict about the losses: lfakit run chestxray_zlpr -p 'seeds=[0, 1, 2]'.")


def tables(P: dict, ev: Evaluation) -> dict[str, pd.DataFrame]:
    """The study's three tables: per-class metrics per loss, overall, and the comparison."""
    out = {}
    for name, rep in ev.per_class.items():
        t = report.per_class_table(rep, score_output=LOSSES.meta(name).get("output") == "score")
        if len(training_seeds(P)) > 1:  # every column is a mean over seeds; F1 was measured at each seed's threshold
            t = t.rename(columns={c: f"{c}, seed mean" for c in t.columns if c.startswith("Threshold")})
        out[f"per_class_{name}"] = t
    out["overall"] = report.overall_table(ev.overall)
    if len(ev.probs_test) > 1:
        if len(training_seeds(P)) > 1:
            out["comparison"] = report.seed_comparison_table(ev.y_test, ev.logits_by_seed, P["baseline"], CLASSES,
                                                              seed=P["seed"])
        else:
            out["comparison"] = report.comparison_table(ev.y_test, ev.logits_test, P["baseline"], CLASSES, seed=P["seed"])
    return out


def figures(P: dict, ev: Evaluation, runs: dict[str, dict[int, Trained]], run_dir: Path) -> dict:
    """Per-class AUROC with 95% intervals (DeLong with one seed, t over seeds with several), ROC
    curves and training curves (first seed), saved under ``figures/`` and returned."""
    figs = {
        "per_class_auroc": report.plot_per_class_auroc_ci(ev.y_test, ev.logits_by_seed, CLASSES),
        "roc_curves": report.plot_roc_curves(ev.y_test, ev.probs_test, CLASSES),
        "history": report.plot_history({n: next(iter(r.values())).history for n, r in runs.items()}),
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
    for name, seeds in runs.items():
        for seed, r in seeds.items():
            for split, s in splits.items():
                pw.add(name, split, seed, s.image_ids, s.targets, r.logits[split], r.sample_loss[split])
    built = loss_modules(P)
    methods = {}
    for name, seeds in runs.items():
        rep = ev.per_class[name]
        methods[name] = {
            "config": repr(built[name]),
            "best_epoch": {int(s): r.best_epoch for s, r in seeds.items()},
            "per_seed": {int(s): {"avg_auroc": float(np.nanmean(ps["AUROC"])), "avg_f1": float(np.nanmean(ps["F1"]))}
                         for s, ps in ev.per_seed[name].items()},
            "test_loss": ev.overall[name]["loss"],
            "avg_auroc": ev.overall[name]["avg_auroc"],
            "avg_f1": ev.overall[name]["avg_f1"],
            "per_class": {c: {k.lower(): v for k, v in rep.loc[c].items()} for c in rep.index},
        }
    extra = {
        "classes": list(CLASSES),
        "seeds": training_seeds(P),
        "baseline": P["baseline"],
        "threshold_rule": "per class, the probability threshold maximising F1 on validation; F1 reported on test",
    }
    return record.save_run(run_dir, EXPERIMENT, P, methods=methods, headline=("overall", tables["overall"], HEADLINE_ABOUT),
                           tables=tables, predictions=pw, score_kind="logit", extra=extra)
