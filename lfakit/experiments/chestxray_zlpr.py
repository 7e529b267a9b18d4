"""ChestX-ray14 loss comparison (seed 000): focal vs ZLPR / FZLPR (+ BCE, ASL).

Defines the notebook's parameter ``SCHEMA``. The notebook ``notebooks/chestxray_zlpr.ipynb`` calls, in order: :func:`setup` (threads, seed,
run folder, early input checks), :func:`load_data`, :func:`train_all`, :func:`evaluate`,
:func:`figures` and :func:`save`. Every step reads the validated parameter dict ``P``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from lfakit import engine, losses, models, report, runner, runtime
from lfakit.data import chestxray
from lfakit.data.datasets import ArrayImageDataset
from lfakit.errors import DataError
from lfakit.metrics.classification import multilabel_report, per_class_auroc
from lfakit.experiments._shared import loss_modules, preflight_device, preflight_losses
from lfakit.fitconfig import FitConfig
from lfakit.schemas.chestxray_zlpr import EXPERIMENT, SCHEMA, VAL_METRICS, check_params  # noqa: F401

CLASSES = chestxray.CLASSES



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


@dataclass
class LossRun:
    """What one trained loss left: logits per split, the test loss and the history."""

    name: str
    logits: dict[str, np.ndarray]
    test_loss: float
    best_epoch: int
    history: pd.DataFrame


def _datasets(P: dict, splits: dict) -> dict:
    ch = models.input_channels(P["model"])
    return {
        name: ArrayImageDataset(s.images, s.targets, channels=ch, augment=P["augment"] and name == "train")
        for name, s in splits.items()
    }


def train_one(P: dict, name: str, loss_fn, datasets: dict, run_dir: Path, stop_after_epoch: int | None = None) -> LossRun:
    """Train a fresh model with one loss, or reload its saved predictions when resuming."""
    pred_path = run_dir / "predictions" / f"{name}.npz"
    hist_path = run_dir / "history" / f"{name}.csv"
    if P["resume"] and pred_path.exists():
        z = np.load(pred_path)
        return LossRun(name, {k: z[k] for k in ("train", "val", "test")}, float(z["test_loss"]), int(z["best_epoch"]), pd.read_csv(hist_path))
    runtime.seed_everything(P["seed"])  # every loss starts from the same initial weights
    model = models.build_model(P["model"], len(CLASSES), pretrained=P["pretrained"], in_chans=models.input_channels(P["model"]),
                               precision=P["precision"])
    cfg = FitConfig.from_params(P)
    result = engine.fit(
        model,
        loss_fn,
        datasets["train"],
        datasets["val"],
        cfg,
        checkpoint_dir=run_dir / "checkpoints" / name,
        val_metrics={"auroc": _mean_auroc},
        resume=P["resume"],
        desc=name,
        stop_after_epoch=stop_after_epoch,
    )
    ebs = 2 * P["batch_size"]
    out = {split: engine.predict(result.model, ds, ebs, cfg.device, cfg.amp, loss_fn) for split, ds in datasets.items()}
    run = LossRun(name, {k: v["scores"] for k, v in out.items()}, float(out["test"]["loss"]), result.best_epoch, result.history)
    pred_path.parent.mkdir(exist_ok=True)
    hist_path.parent.mkdir(exist_ok=True)
    run.history.to_csv(hist_path, index=False)
    tmp = pred_path.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, **run.logits, test_loss=run.test_loss, best_epoch=run.best_epoch)
    os.replace(tmp, pred_path)  # its presence marks the loss as done for --resume
    return run


def train_all(P: dict, splits: dict, run_dir: Path) -> dict[str, LossRun]:
    """Train one model per loss in ``P['losses']`` (same seed, data and schedule for each)."""
    datasets = _datasets(P, splits)
    return {name: train_one(P, name, fn, datasets, run_dir) for name, fn in loss_modules(P).items()}


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


@dataclass
class Evaluation:
    per_class: dict[str, pd.DataFrame]  # loss -> Class x (AUROC, F1, Threshold, ...)
    overall: dict[str, dict]  # loss -> {loss, avg_auroc, avg_f1}
    probs_test: dict[str, np.ndarray]
    y_test: np.ndarray


def evaluate(P: dict, runs: dict[str, LossRun], splits: dict) -> Evaluation:
    """Per-class AUROC on test; F1 on test at the per-class threshold that maximises F1 on val."""
    y_val, y_test = splits["val"].targets, splits["test"].targets
    per_class, overall, probs = {}, {}, {}
    for name, r in runs.items():
        p_val, p_test = _sigmoid(r.logits["val"]), _sigmoid(r.logits["test"])
        rep = multilabel_report(y_val, p_val, y_test, p_test, CLASSES)
        per_class[name] = rep
        probs[name] = p_test
        overall[name] = {
            "loss": r.test_loss,
            "avg_auroc": float(np.nanmean(rep["AUROC"])),
            "avg_f1": float(np.nanmean(rep["F1"])),
        }
    return Evaluation(per_class, overall, probs, y_test)


def tables(P: dict, ev: Evaluation) -> dict[str, pd.DataFrame]:
    """The seed's three tables: per-class metrics per loss, overall, and the comparison."""
    out = {f"per_class_{name}": report.per_class_table(rep) for name, rep in ev.per_class.items()}
    out["overall"] = report.overall_table(ev.overall)
    if len(ev.probs_test) > 1:
        out["comparison"] = report.comparison_table(ev.y_test, ev.probs_test, P["baseline"], CLASSES, seed=P["seed"])
    return out


def figures(P: dict, ev: Evaluation, runs: dict[str, LossRun], run_dir: Path) -> dict:
    """Per-class AUROC bars and ROC curves, saved under ``figures/`` and returned."""
    figs = {
        "per_class_auroc": report.plot_per_class_auroc(ev.per_class),
        "roc_curves": report.plot_roc_curves(ev.y_test, ev.probs_test, CLASSES),
        "history": report.plot_history({n: r.history for n, r in runs.items()}),
    }
    for name, fig in figs.items():
        report.save_figure(fig, run_dir / "figures" / f"{name}.png")
    return figs


def save(P: dict, run_dir: Path, runs: dict[str, LossRun], ev: Evaluation, splits: dict, tables: dict[str, pd.DataFrame]) -> list[str]:
    """Write metrics.json, predictions.npz and tables/*.csv; return the file names written."""
    metrics = {
        "experiment": EXPERIMENT,
        "classes": list(CLASSES),
        "baseline": P["baseline"],
        "threshold_rule": "per class, the probability threshold maximising F1 on validation; F1 reported on test",
        "losses": {},
    }
    for name, r in runs.items():
        rep = ev.per_class[name]
        metrics["losses"][name] = {
            "config": repr(loss_modules(P)[name]),
            "best_epoch": r.best_epoch,
            "test_loss": ev.overall[name]["loss"],
            "avg_auroc": ev.overall[name]["avg_auroc"],
            "avg_f1": ev.overall[name]["avg_f1"],
            "per_class": {
                c: {k.lower(): (None if pd.isna(v) else float(v)) for k, v in rep.loc[c].items()} for c in rep.index
            },
        }
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    arrays = {"class_names": np.array(CLASSES), "losses": np.array(list(runs))}
    for split, s in splits.items():
        arrays[f"targets_{split}"] = s.targets
        arrays[f"image_ids_{split}"] = np.array(s.image_ids)
        for name, r in runs.items():
            arrays[f"logits_{name}_{split}"] = r.logits[split]
    np.savez_compressed(run_dir / "predictions.npz", **arrays)
    tdir = run_dir / "tables"
    tdir.mkdir(exist_ok=True)
    for tname, df in tables.items():
        df.to_csv(tdir / f"{tname}.csv")
    figs = sorted(f"figures/{p.name}" for p in (run_dir / "figures").glob("*.png"))
    return sorted(["metrics.json", "predictions.npz", *(f"tables/{t}.csv" for t in tables), *figs])
