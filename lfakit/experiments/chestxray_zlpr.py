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

from lfakit import models, record, report, runner, runtime
from lfakit.data import chestxray
from lfakit.data.datasets import ArrayImageDataset
from lfakit.errors import DataError
from lfakit.metrics.classification import multilabel_report, per_class_auroc
from lfakit.experiments._shared import Trained, loss_modules, preflight_device, preflight_losses, train_or_resume
from lfakit.schemas.chestxray_zlpr import EXPERIMENT

CLASSES = chestxray.CLASSES
SPLITS = ("train", "val", "test")



def cache_dir(P: dict) -> Path:
    """``cache_dir`` parameter, else ``$LFAKIT_CACHE``, else ``~/.cache/lfakit``."""
    return Path(P["cache_dir"]).expanduser() if P["cache_dir"] else chestxray.default_cache_dir()


def preflight(P: dict) -> None:
    """What the run needs beyond its parameters: the NIH data (when ``data_dir`` is set) and
    the pretrained weights. ``lfakit run`` calls it before making a run folder; so does
    :func:`setup`."""
    preflight_losses(P)
    preflight_device(P)
    if P["data_dir"]:
        root = Path(P["data_dir"]).expanduser()
        try:
            chestxray.load_index(root, val_fraction=P["val_fraction"], seed=P["seed"], max_images=P["max_images"] or None)
        except DataError as e:
            raise DataError(f"{e}\nWithout the NIH data: lfakit run {EXPERIMENT} --profile smoke") from None
    if P["pretrained"]:
        models.ensure_weights(P["model"])


def setup(P: dict) -> Path:
    """Fix threads and seeds, check inputs before any work, and open the run folder."""
    runtime.set_threads(P["num_threads"])
    runtime.seed_everything(P["seed"])
    preflight(P)
    return runner.open_run(EXPERIMENT, P)


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


def _mean_auroc(targets: np.ndarray, scores: np.ndarray) -> float:
    return float(np.nanmean(per_class_auroc(targets, scores)))


def _datasets(P: dict, splits: dict) -> dict:
    ch = models.input_channels(P["model"])
    return {
        name: ArrayImageDataset(s.images, s.targets, channels=ch, augment=P["augment"] and name == "train")
        for name, s in splits.items()
    }


def train_one(P: dict, name: str, loss_fn, datasets: dict, run_dir: Path, stop_after_epoch: int | None = None) -> Trained:
    """Train a fresh model with one loss (or reload it when resuming); logits and per-image
    losses on every split."""
    def build():
        return models.build_model(P["model"], len(CLASSES), pretrained=P["pretrained"],
                                  in_chans=models.input_channels(P["model"]), precision=P["precision"])

    return train_or_resume(P, name, loss_fn, build, datasets["train"], datasets["val"], datasets, run_dir,
                           {"auroc": _mean_auroc}, name, stop_after_epoch)


def train_all(P: dict, splits: dict, run_dir: Path) -> dict[str, Trained]:
    """Train one model per loss in ``P['losses']`` (same seed, data and schedule for each)."""
    datasets = _datasets(P, splits)
    return {name: train_one(P, name, fn, datasets, run_dir) for name, fn in loss_modules(P).items()}


@dataclass
class Evaluation:
    per_class: dict[str, pd.DataFrame]  # loss -> Class x (AUROC, F1, Threshold, ...)
    overall: dict[str, dict]  # loss -> {loss, avg_auroc, avg_f1}
    probs_test: dict[str, np.ndarray]
    y_test: np.ndarray
    logits_test: dict[str, np.ndarray]  # float64: what AUROC and DeLong rank
    left_out: list[str]  # classes without both label values on test: in no average


def evaluate(P: dict, runs: dict[str, Trained], splits: dict) -> Evaluation:
    """Per-class AUROC on test (of the float64 logits); F1 on test at the per-class threshold
    that maximises F1 on val. A class whose test labels are all equal has no AUROC and no F1
    and is left out of both averages alike."""
    y_val, y_test = splits["val"].targets, splits["test"].targets
    per_class, overall, probs = {}, {}, {}
    for name, r in runs.items():
        p_val, p_test = expit(r.logits["val"]), expit(r.logits["test"])
        rep = multilabel_report(y_val, p_val, y_test, p_test, CLASSES, rank_test=r.logits["test"])
        per_class[name] = rep
        probs[name] = p_test
        overall[name] = {
            "loss": r.loss("test"),
            "avg_auroc": float(np.nanmean(rep["AUROC"])),
            "avg_f1": float(np.nanmean(rep["F1"])),
        }
    n_pos = y_test.sum(0)
    left_out = [c for c, k in zip(CLASSES, n_pos) if k == 0 or k == len(y_test)]
    return Evaluation(per_class, overall, probs, y_test, {n: r.logits["test"] for n, r in runs.items()}, left_out)


def overall_note(ev: Evaluation) -> str:
    """What the averages cover (printed under the overall table)."""
    if not ev.left_out:
        return f"Averages over all {len(CLASSES)} classes."
    return (f"Averages over {len(CLASSES) - len(ev.left_out)} classes; left out of every average (no positive or no "
            f"negative test image): {', '.join(ev.left_out)}.")


def comparison_note(P: dict) -> str:
    """What the comparison's evidence covers (printed beside the table)."""
    return (f"Evidence: one trained model per loss (seed {P['seed']}): DeLong per class and a paired bootstrap of "
            "the mean measure test-set sampling noise only; training variance (another seed) is not included, so "
            "a Winner here is a single-seed Winner. Family for Holm: the classes of one challenger.")


def tables(P: dict, ev: Evaluation) -> dict[str, pd.DataFrame]:
    """The study's three tables: per-class metrics per loss, overall, and the comparison."""
    out = {f"per_class_{name}": report.per_class_table(rep) for name, rep in ev.per_class.items()}
    out["overall"] = report.overall_table(ev.overall)
    if len(ev.probs_test) > 1:
        out["comparison"] = report.comparison_table(ev.y_test, ev.logits_test, P["baseline"], CLASSES, seed=P["seed"])
    return out


def figures(P: dict, ev: Evaluation, runs: dict[str, Trained], run_dir: Path) -> dict:
    """Per-class AUROC bars and ROC curves, saved under ``figures/`` and returned."""
    figs = {
        "per_class_auroc": report.plot_per_class_auroc(ev.per_class),
        "roc_curves": report.plot_roc_curves(ev.y_test, ev.probs_test, CLASSES),
        "history": report.plot_history({n: r.history for n, r in runs.items()}),
    }
    for name, fig in figs.items():
        report.save_figure(fig, run_dir / "figures" / f"{name}.png")
    return figs


HEADLINE_ABOUT = ("test split; Loss: the mean per-image test loss; Avg AUROC: the mean over classes of the per-class "
                  "AUROC of the logits; Avg F1: the mean over classes of F1 at the per-class probability threshold "
                  "that maximises F1 on validation; rounded to 4 decimals")


def save(P: dict, run_dir: Path, runs: dict[str, Trained], ev: Evaluation, splits: dict, tables: dict[str, pd.DataFrame]) -> list[str]:
    """Write the run record (:mod:`lfakit.record`): every loss's logits and per-image losses on
    every split, metrics.json with the overall table as headline, tables/*.csv and the
    manifest; return the files of the run folder."""
    pw = record.PredictionWriter()
    for name, r in runs.items():
        for split, s in splits.items():
            pw.add(name, split, P["seed"], s.image_ids, s.targets, r.logits[split], r.sample_loss[split])
    built = loss_modules(P)
    methods = {}
    for name, r in runs.items():
        rep = ev.per_class[name]
        methods[name] = {
            "config": repr(built[name]),
            "best_epoch": r.best_epoch,
            "test_loss": ev.overall[name]["loss"],
            "avg_auroc": ev.overall[name]["avg_auroc"],
            "avg_f1": ev.overall[name]["avg_f1"],
            "per_class": {c: {k.lower(): v for k, v in rep.loc[c].items()} for c in rep.index},
        }
    extra = {
        "classes": list(CLASSES),
        "baseline": P["baseline"],
        "threshold_rule": "per class, the probability threshold maximising F1 on validation; F1 reported on test",
    }
    return record.save_run(run_dir, EXPERIMENT, P, methods=methods, headline=("overall", tables["overall"], HEADLINE_ABOUT),
                           tables=tables, predictions=pw, score_kind="logit", extra=extra)
