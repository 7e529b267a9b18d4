"""Steps several experiments share: their losses built from the parameters, the checks of the
losses and the device that run before a run folder is made, and one loss's training (or its
reload on ``--resume``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
from torch import nn

from lfakit import engine, losses, record, runner, runtime
from lfakit.errors import ParameterError
from lfakit.fitconfig import FitConfig
from lfakit.metrics.classification import per_class_auroc


def loss_modules(P: dict) -> dict[str, nn.Module]:
    """Each loss of ``P['losses']`` built by name with its ``loss_kwargs`` (registry defaults otherwise)."""
    return {name: losses.build(name, **P["loss_kwargs"].get(name, {})) for name in P["losses"]}


def preflight_losses(P: dict) -> None:
    """Build every loss with its ``loss_kwargs`` once, so that an unknown argument or a value out
    of range (``{"focal": {"gamma": -1}}``) fails before any work, naming the loss."""
    for name in P["losses"]:
        kwargs = P["loss_kwargs"].get(name, {})
        try:
            losses.build(name, **kwargs)
        except ParameterError as e:
            raise ParameterError(f"parameter 'loss_kwargs': {e}") from None
        except (TypeError, ValueError) as e:
            raise ParameterError(f"parameter 'loss_kwargs': loss {name!r} with {kwargs}: {e}") from None


def preflight_device(P: dict) -> None:
    """``device=cuda`` (or ``mps``) on a machine without one fails here, before any work."""
    from lfakit.engine import select_device

    select_device(P["device"])


def preflight_run(P: dict, check_inputs: Callable[[dict], None] | None, *, weights: bool | None = None) -> None:
    """The checks every experiment runs before a run folder is made: its torch-free
    ``check_inputs`` (data and device; ``None`` when ``lfakit run`` has already run them), every
    loss built with its arguments, the device, and the pretrained weights of ``P['model']``
    (``weights``: default ``P['pretrained']``)."""
    from lfakit import models

    if check_inputs is not None:
        check_inputs(P)
    preflight_losses(P)
    preflight_device(P)
    if P.get("pretrained") if weights is None else weights:
        models.ensure_weights(P["model"])


def open_checked_run(P: dict, experiment: str, preflight: Callable[[dict], None]) -> Path:
    """Every notebook's setup step: fix threads and seeds, run the experiment's ``preflight``
    (its data, weights, device and loss checks, before any work) and open the run folder."""
    runtime.set_threads(P["num_threads"])
    runtime.seed_everything(P["seed"])
    preflight(P)
    return runner.open_run(experiment, P)


def model_options(P: dict) -> dict:
    """The parameters named like the options the chosen model declares in the registry
    (``swin_b_iqa``: drop_path, dropout; ``mlp``: width, ...), to pass to ``build_model``."""
    from lfakit.catalog import MODELS

    return {k: P[k] for k in MODELS.meta(P["model"]).get("options", ()) if k in P}


def mean_auroc(targets: np.ndarray, scores: np.ndarray) -> float:
    """Validation metric ``val_auroc``: the mean per-class AUROC of the logits (undefined classes skipped)."""
    return float(np.nanmean(per_class_auroc(targets, scores)))


def mean_frame(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """The element-wise mean of same-shaped per-class tables (over folds or seeds)."""
    return sum(frames[1:], frames[0].copy()) / len(frames) if len(frames) > 1 else frames[0]


@dataclass
class Trained:
    """What one training left: logits and per-sample losses for every predicted split, the
    best epoch and the history."""

    logits: dict[str, np.ndarray]
    sample_loss: dict[str, np.ndarray]
    best_epoch: int
    history: pd.DataFrame

    def loss(self, split: str) -> float:
        return float(np.mean(self.sample_loss[split]))


def train_or_resume(P: dict, tag: str, loss_fn: nn.Module, build: Callable[[], nn.Module], train_ds, val_ds,
                    predict_on: dict, run_dir: Path, val_metrics: dict, desc: str, *, fit_overrides: dict | None = None,
                    sample_losses: bool = True, predict_amp: bool | None = None, keep_previous_checkpoint: bool = True,
                    prune_checkpoints: bool = False) -> Trained:
    """Train ``build()`` with ``loss_fn`` through the engine and predict ``predict_on`` (split ->
    dataset), or, when resuming, reload what an earlier attempt finished.

    ``predictions/<tag>.npz`` (written atomically) marks the training as done for ``--resume``;
    ``checkpoints/<tag>/`` lets an interrupted one continue; ``history/<tag>.csv`` is its curve.
    Every training starts from the same seed, so each loss gets the same initial weights.
    ``fit_overrides`` are engine settings beyond the parameters (``drop_last``, ``val_loss``);
    ``sample_losses=False`` predicts without the loss (a batch loss has no per-sample value):
    the per-sample losses are then NaN. ``predict_amp``: the predictions' autocast (None: as the
    training's ``amp``; False: logits in the model's own precision, float32 or better).
    ``keep_previous_checkpoint=False``: no ``last.prev.pt`` (at most ``best.pt`` and ``last.pt``
    while training); ``prune_checkpoints``: ``checkpoints/<tag>/`` deleted once the predictions
    are saved (a resume then reads those, never the checkpoints)."""
    pred_path = Path(run_dir) / "predictions" / f"{tag}.npz"
    hist_path = Path(run_dir) / "history" / f"{tag}.csv"
    if P["resume"] and pred_path.exists():
        z = record.read_npz(pred_path)
        splits = [k[len("logits_"):] for k in z if k.startswith("logits_")]
        return Trained({s: z[f"logits_{s}"] for s in splits}, {s: z[f"loss_{s}"] for s in splits},
                       int(z["best_epoch"]), pd.read_csv(hist_path))
    runtime.seed_everything(P["seed"])
    model = build()
    cfg = FitConfig.from_params(P, **(fit_overrides or {}))
    ckpt_dir = Path(run_dir) / "checkpoints" / tag
    result = engine.fit(model, loss_fn, train_ds, val_ds, cfg, checkpoint_dir=ckpt_dir,
                        val_metrics=val_metrics, resume=P["resume"], desc=desc,
                        keep_previous_checkpoint=keep_previous_checkpoint)
    ebs = 2 * P["batch_size"]
    amp = cfg.amp if predict_amp is None else predict_amp
    out = {s: engine.predict(result.model, d, ebs, cfg.device, amp, loss_fn if sample_losses else None,
                             cfg.num_workers, sample_losses=sample_losses)
           for s, d in predict_on.items()}
    if not sample_losses:
        for o in out.values():
            o["sample_loss"] = np.full(len(o["scores"]), np.nan)
    run = Trained({s: o["scores"] for s, o in out.items()}, {s: o["sample_loss"] for s, o in out.items()},
                  result.best_epoch, result.history)
    hist_path.parent.mkdir(parents=True, exist_ok=True)
    run.history.to_csv(hist_path, index=False)
    record.write_npz(pred_path, **{f"logits_{s}": v for s, v in run.logits.items()},
                     **{f"loss_{s}": v for s, v in run.sample_loss.items()}, best_epoch=run.best_epoch)
    if prune_checkpoints and ckpt_dir.exists():
        import shutil

        shutil.rmtree(ckpt_dir)
    return run
