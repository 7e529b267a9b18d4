"""One fit / predict loop for every experiment.

Seeding and deterministic CPU runs, device auto-selection, mixed precision and channels_last on
CUDA, AdamW/Adam/SGD, schedules, gradient clipping, early stopping on a validation metric, a
checkpoint every epoch with exact resume, a clear stop on a NaN/inf loss that keeps the last good
checkpoint, tqdm progress and a ``history.csv``.

Exact resume: every epoch reseeds torch from ``(seed, epoch)`` and draws its shuffling order
from a generator seeded the same way, so an epoch's randomness does not depend on what ran
before it; ``last.pt`` holds model, optimiser, scheduler, scaler, history and early-stopping
state, written atomically at the end of each epoch.
"""

from __future__ import annotations

import math
import os
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from lfakit.errors import ParameterError, TrainingError
from lfakit.fitconfig import FitConfig
from lfakit.runtime import progress

MetricFn = Callable[[np.ndarray, np.ndarray], float]


def select_device(device: str = "auto") -> torch.device:
    """``auto`` picks CUDA, then Apple MPS, then CPU; an explicit device that is absent is an error."""
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ParameterError("device='cuda' was asked for but no CUDA GPU is visible; use device='auto' or 'cpu'")
    if device == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ParameterError("device='mps' was asked for but MPS is not available; use device='auto' or 'cpu'")
    return torch.device(device)


def _to_input(t: torch.Tensor, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """A batch tensor on ``device``; floating tensors in the training ``dtype``."""
    if t.is_floating_point():
        return t.to(device, dtype, non_blocking=True)
    return t.to(device, non_blocking=True)


def _model_dtype(model: nn.Module) -> torch.dtype:
    p = next(iter(model.parameters()), None)
    return p.dtype if p is not None and p.is_floating_point() else torch.float32


@dataclass
class FitResult:
    model: nn.Module  # with the best epoch's weights loaded
    history: pd.DataFrame
    best_epoch: int
    best_value: float
    stopped_early: bool
    resumed_from_epoch: int = 0  # 0 = fresh start
    checkpoint_dir: Path | None = None
    extra: dict = field(default_factory=dict)


def _make_optimizer(model: nn.Module, cfg: FitConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def _make_scheduler(opt: torch.optim.Optimizer, cfg: FitConfig):
    if cfg.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs)
    if cfg.scheduler == "step":
        return torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.step_size, gamma=cfg.step_gamma)
    if cfg.scheduler == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode=cfg.monitor_mode, patience=2, factor=0.1)
    return None


def _epoch_seed(seed: int, epoch: int) -> int:
    return (seed * 1_000_003 + epoch * 7919) % (2**63 - 1)


def _seed_worker(worker_id: int) -> None:  # DataLoader workers: derive numpy/random seeds from torch's
    s = torch.initial_seed() % 2**32
    np.random.seed(s)
    random.seed(s)


def _loader(ds: Dataset, batch_size: int, shuffle: bool, seed: int, num_workers: int, device: torch.device):
    g = torch.Generator()
    g.manual_seed(seed)
    return DataLoader(
        ds,
        batch_size=batch_size,
        shuffle=shuffle,
        generator=g,
        num_workers=num_workers,
        worker_init_fn=_seed_worker if num_workers else None,
        pin_memory=device.type == "cuda",
        drop_last=False,
    )


def _split_batch(batch):
    """Batches are (x, y) or (x, y, index); returns x, y."""
    return batch[0], batch[1]


def _atomic_save(obj, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


@torch.no_grad()
def predict(
    model: nn.Module,
    dataset: Dataset,
    batch_size: int = 64,
    device: str | torch.device = "auto",
    amp: bool = True,
    loss_fn: nn.Module | None = None,
    num_workers: int = 0,
) -> dict[str, np.ndarray | float]:
    """Run ``model`` over ``dataset`` in order; return raw ``scores`` (logits), ``targets`` and,
    given ``loss_fn``, the dataset-mean ``loss`` (batch losses weighted by batch size)."""
    dev = device if isinstance(device, torch.device) else select_device(device)
    model.eval().to(dev)
    dtype = _model_dtype(model)
    loader = _loader(dataset, batch_size, False, 0, num_workers, dev)
    scores, targets, total, n = [], [], 0.0, 0
    use_amp = amp and dev.type == "cuda" and dtype == torch.float32
    for batch in loader:
        x, y = _split_batch(batch)
        x = _to_input(x, dev, dtype)
        if dev.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last) if x.ndim == 4 else x
        with torch.autocast(dev.type, enabled=use_amp):
            out = model(x)
        out = out.to(dtype)
        if loss_fn is not None:
            total += float(loss_fn(out, _to_input(y, dev, dtype))) * len(y)
            n += len(y)
        scores.append(out.cpu().numpy())
        targets.append(y.numpy())
    result: dict[str, np.ndarray | float] = {
        "scores": np.concatenate(scores) if scores else np.zeros((0,)),
        "targets": np.concatenate(targets) if targets else np.zeros((0,)),
    }
    if loss_fn is not None:
        result["loss"] = total / max(n, 1)
    return result


def fit(
    model: nn.Module,
    loss_fn: nn.Module,
    train_ds: Dataset,
    val_ds: Dataset,
    cfg: FitConfig,
    checkpoint_dir: str | Path | None = None,
    val_metric: tuple[str, MetricFn] | None = None,
    resume: bool = False,
    desc: str = "",
    stop_after_epoch: int | None = None,
) -> FitResult:
    """Train ``model`` with ``loss_fn``; validate every epoch; keep and return the best epoch.

    ``val_metric=("auroc", fn)`` adds ``val_auroc = fn(targets, scores)`` (scores are logits) to
    the history and makes it monitorable. With ``checkpoint_dir`` a ``last.pt`` is written every
    epoch and ``best.pt`` whenever the monitored value improves; ``resume=True`` continues from
    ``last.pt`` when one exists. ``stop_after_epoch`` ends the call after that epoch as an
    interruption would (used to test resume); the returned history then stops there.
    """
    device = select_device(cfg.device)
    ckpt = Path(checkpoint_dir) if checkpoint_dir else None
    if ckpt:
        ckpt.mkdir(parents=True, exist_ok=True)
    known = {"val_loss"} | ({f"val_{val_metric[0]}"} if val_metric else set())
    if cfg.monitor not in known:
        raise ParameterError(f"monitor={cfg.monitor!r} is not computed here; choose one of {sorted(known)}")

    model.to(device, cfg.dtype)
    if device.type == "cuda" and cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = _make_optimizer(model, cfg)
    sched = _make_scheduler(opt, cfg)
    use_amp = cfg.amp and device.type == "cuda" and cfg.precision == "float32"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    mode = cfg.monitor_mode
    best = math.inf if mode == "min" else -math.inf
    best_epoch, bad_epochs, start_epoch, stopped_early = 0, 0, 1, False
    history: list[dict] = []

    last_path = ckpt / "last.pt" if ckpt else None
    best_path = ckpt / "best.pt" if ckpt else None
    resumed_from = 0
    if resume and last_path is not None and last_path.exists():
        state = torch.load(last_path, map_location=device, weights_only=False)
        if state.get("config") != asdict(cfg):
            diff = {k: (state["config"].get(k), v) for k, v in asdict(cfg).items() if state["config"].get(k) != v}
            raise ParameterError(f"cannot resume from {last_path}: settings changed since it was written {diff}")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        if sched is not None and state.get("scheduler") is not None:
            sched.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        history = state["history"]
        best, best_epoch, bad_epochs = state["best"], state["best_epoch"], state["bad_epochs"]
        stopped_early = state.get("stopped_early", False)
        start_epoch = resumed_from = state["epoch"] + 1

    ebs = cfg.eval_batch_size or 2 * cfg.batch_size
    epochs = range(start_epoch, cfg.epochs + 1) if not stopped_early else range(0)
    bar = progress(epochs, cfg.progress, desc=desc or "epochs", total=cfg.epochs, initial=start_epoch - 1)
    for epoch in bar:
        t0 = time.perf_counter()
        es = _epoch_seed(cfg.seed, epoch)
        torch.manual_seed(es)  # dropout and augmentation draws of this epoch
        np.random.seed(es % 2**32)
        random.seed(es)
        model.train()
        loader = _loader(train_ds, cfg.batch_size, True, es, cfg.num_workers, device)
        run_loss, seen = 0.0, 0
        for step, batch in enumerate(loader):
            x, y = _split_batch(batch)
            x = _to_input(x, device, cfg.dtype)
            y = _to_input(y, device, cfg.dtype)
            if device.type == "cuda" and cfg.channels_last and x.ndim == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, enabled=use_amp):
                out = model(x)
            loss = loss_fn(out.to(cfg.dtype), y)
            if not torch.isfinite(loss):
                where = f"epoch {epoch}, batch {step}"
                kept = f"the last good checkpoint is {last_path}" if last_path and last_path.exists() else "no checkpoint was written yet"
                raise TrainingError(
                    f"loss {getattr(loss_fn, 'registry_name', type(loss_fn).__name__)} became "
                    f"{float(loss.detach())} at {where}; {kept}. Lower lr, set grad_clip, or turn amp off."
                )
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if cfg.grad_clip > 0:
                scaler.unscale_(opt)
                nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            scaler.step(opt)
            scaler.update()
            run_loss += float(loss.detach()) * len(y)
            seen += len(y)

        val = predict(model, val_ds, ebs, device, cfg.amp, loss_fn, cfg.num_workers)
        row = {"epoch": epoch, "train_loss": run_loss / max(seen, 1), "val_loss": val["loss"]}
        if val_metric:
            row[f"val_{val_metric[0]}"] = float(val_metric[1](val["targets"], val["scores"]))
        row["lr"] = opt.param_groups[0]["lr"]
        value = row[cfg.monitor]
        improved = value < best if mode == "min" else value > best
        if improved:
            best, best_epoch, bad_epochs = value, epoch, 0
            if best_path is not None:
                _atomic_save(model.state_dict(), best_path)
            else:
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            bad_epochs += 1
        if sched is not None:
            sched.step(value) if cfg.scheduler == "plateau" else sched.step()
        row["seconds"] = time.perf_counter() - t0
        history.append(row)
        if cfg.early_stopping_patience and bad_epochs >= cfg.early_stopping_patience:
            stopped_early = True
        if last_path is not None:
            _atomic_save(
                {
                    "epoch": epoch,
                    "model": model.state_dict(),
                    "optimizer": opt.state_dict(),
                    "scheduler": sched.state_dict() if sched is not None else None,
                    "scaler": scaler.state_dict(),
                    "history": history,
                    "best": best,
                    "best_epoch": best_epoch,
                    "bad_epochs": bad_epochs,
                    "stopped_early": stopped_early,
                    "config": asdict(cfg),
                },
                last_path,
            )
            pd.DataFrame(history).to_csv(ckpt / "history.csv", index=False)
        if hasattr(bar, "set_postfix"):
            bar.set_postfix({k: f"{v:.4g}" for k, v in row.items() if k.startswith(("train", "val"))})
        if stopped_early or (stop_after_epoch is not None and epoch >= stop_after_epoch):
            break

    if best_path is not None and best_path.exists():
        model.load_state_dict(torch.load(best_path, map_location=device, weights_only=True))
    elif best_epoch:
        model.load_state_dict(best_state)
    return FitResult(
        model=model,
        history=pd.DataFrame(history),
        best_epoch=best_epoch,
        best_value=best,
        stopped_early=stopped_early,
        resumed_from_epoch=resumed_from,
        checkpoint_dir=ckpt,
    )
