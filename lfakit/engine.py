"""One fit / predict loop for every experiment, in the style of torchvision's classification
reference: :func:`fit` is a short loop over :func:`train_one_epoch` and :func:`evaluate`, with
the optimiser and scheduler from :func:`make_optimizer` / :func:`make_scheduler`.

Device auto-selection, float32 or float64 (:class:`~lfakit.fitconfig.FitConfig`'s
``precision``), mixed precision and channels_last on CUDA, AdamW/Adam/SGD, schedules, gradient
clipping, several validation metrics with early stopping on any of them, a checkpoint every epoch
with exact resume, a clear stop on a NaN/inf loss that keeps the last good checkpoint, tqdm
progress and a ``history.csv``.

Batches. A dataset item is ``(x, y)``, ``(x, y, index)``, or a mapping with ``"x"``, ``"y"``,
optionally ``"index"`` (the sample id) and any further fields, which reach the loss as keyword
arguments (an IQA data set's ``"std"`` of the opinion scores goes to the fidelity loss as
``std=``). :func:`predict` returns the sample ids with the scores and, on request, every
sample's own loss (membership inference).

Exact resume: every epoch reseeds torch from ``(seed, epoch)`` and draws its shuffling order
from a generator seeded the same way, so an epoch's randomness does not depend on what ran
before it; ``last.pt`` holds model, optimiser, scheduler, scaler, history and early-stopping
state in types that ``torch.load(weights_only=True)`` accepts (a shared run folder cannot run
code), written atomically at the end of each epoch; the previous one is kept as ``last.prev.pt``,
so a checkpoint truncated by a crash falls back to the epoch before.

Several processes (``torchrun``, :mod:`lfakit.distributed`): with ``WORLD_SIZE`` > 1 :func:`fit`
trains one model in DistributedDataParallel. ``cfg.batch_size`` stays the global batch, split
evenly over the ranks; each rank reads its share of the single-process run's shuffled order
(:func:`rank_loader`), so the ranks' k-th batches together are the single-process k-th batch.
Rank 0 validates, writes the checkpoints and shows progress, and broadcasts what every rank
must agree on (the resumed state, each epoch's history row, the final weights); a NaN loss on
any rank stops all of them at the same step. With ``WORLD_SIZE`` unset or 1 none of this runs.
"""

from __future__ import annotations

import math
import os
import random
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from lfakit import distributed
from lfakit.errors import LfakitError, ParameterError, TrainingError
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


def _to_input(t, device: torch.device, dtype: torch.dtype):
    """A batch field on ``device``; floating tensors in the training ``dtype``; non-tensors as they are."""
    if not isinstance(t, torch.Tensor):
        return t
    return _tensor_to(t, device, dtype)


def _tensor_to(t: torch.Tensor, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
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


def make_optimizer(model: nn.Module, cfg: FitConfig) -> torch.optim.Optimizer:
    """The optimiser ``cfg.optimizer`` over the trainable parameters of ``model``.

    With ``cfg.head_lr_mult`` != 1 there are two parameter groups: first the submodule
    ``cfg.backbone_module`` at ``cfg.lr``, then every other trainable parameter (the head) at
    ``cfg.lr * cfg.head_lr_mult``; a scheduler scales both alike. At 1 (the default) one group."""
    if cfg.head_lr_mult == 1.0:
        return make_optimizer_for([p for p in model.parameters() if p.requires_grad], cfg)
    return make_optimizer_for(head_param_groups(model, cfg), cfg)


def head_param_groups(model: nn.Module, cfg: FitConfig) -> list[dict]:
    """``[{"params": backbone}, {"params": head, "lr": lr * head_lr_mult}]``: every trainable
    parameter of ``model`` in exactly one group, the backbone being ``cfg.backbone_module``."""
    try:
        backbone = model.get_submodule(cfg.backbone_module)
    except AttributeError:
        raise ParameterError(f"head_lr_mult={cfg.head_lr_mult} needs the model's backbone, but "
                             f"{type(model).__name__} has no submodule {cfg.backbone_module!r}") from None
    in_backbone = {id(p) for p in backbone.parameters()}
    trainable = [p for p in model.parameters() if p.requires_grad]
    body = [p for p in trainable if id(p) in in_backbone]
    head = [p for p in trainable if id(p) not in in_backbone]
    if not body or not head:
        raise ParameterError(f"head_lr_mult={cfg.head_lr_mult}: {cfg.backbone_module!r} holds "
                             f"{'every' if not head else 'no'} trainable parameter of {type(model).__name__}; "
                             "there is no head and backbone to tell apart")
    return [{"params": body}, {"params": head, "lr": cfg.lr * cfg.head_lr_mult}]


def make_optimizer_for(params, cfg: FitConfig) -> torch.optim.Optimizer:
    """The optimiser ``cfg.optimizer`` (adamw | adam | sgd, with ``lr``, ``weight_decay`` and, for
    SGD, ``momentum``) over any parameter list (the CF-Ensemble trainer's factors, say)."""
    params = list(params)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def make_scheduler(opt: torch.optim.Optimizer, cfg: FitConfig):
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


def _collate(device: torch.device, num_workers: int):
    """The loaders' ``collate_fn`` and ``pin_memory``. Data sets that read whole batches
    (:mod:`lfakit.data.batching`) hand over uint8 batches: with CUDA and no workers they go to the
    GPU as uint8 and are normalised there (nothing to pin); otherwise they are normalised on the
    CPU (in the workers, if any) and pinned for CUDA as before. Other data sets: ``default_collate``."""
    from lfakit.data import batching

    on_gpu = device.type == "cuda" and num_workers == 0
    return batching.Collate(device if on_gpu else None), device.type == "cuda" and not on_gpu


def _loader(ds: Dataset, batch_size: int, shuffle: bool, seed: int, num_workers: int, device: torch.device,
            drop_last: bool = False):
    g = torch.Generator()
    g.manual_seed(seed)
    collate, pin = _collate(device, num_workers)
    return DataLoader(
        ds,
        batch_size=batch_size,
        shuffle=shuffle,
        generator=g,
        num_workers=num_workers,
        worker_init_fn=_seed_worker if num_workers else None,
        collate_fn=collate,
        pin_memory=pin,
        drop_last=drop_last,
    )


class _Positions(Dataset):
    """Positions 0..n-1 as a data set: what a loader over any data set of length n would draw."""

    def __init__(self, n: int):
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> int:
        return i

    def __getitems__(self, indices: list[int]) -> list[int]:
        return list(indices)


def shuffled_order(n: int, seed: int) -> list[int]:
    """The order in which the single-process training loader (:func:`_loader` with
    ``shuffle=True``) visits a data set of ``n`` samples with this ``seed``.

    Drawn through a DataLoader built the same way rather than from ``torch.randperm``: the
    loader's iterator takes one number from the generator (its worker base seed) before its
    RandomSampler draws the permutation, so ``randperm(n, Generator().manual_seed(seed))`` (what
    DistributedSampler would draw) is a different order."""
    g = torch.Generator()
    g.manual_seed(seed)
    positions = DataLoader(_Positions(n), batch_size=max(n, 1), shuffle=True, generator=g, collate_fn=list)
    return [int(i) for batch in positions for i in batch]


class GlobalOrderSampler(DistributedSampler):
    """DistributedSampler over a given global ``order``: rank r reads ``order[r::world]``, padded
    (or, with ``drop_last``, trimmed) to a multiple of the world size exactly as
    DistributedSampler pads its own permutation."""

    def __init__(self, dataset: Dataset, order: list[int], num_replicas: int, rank: int, drop_last: bool = False):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=False, drop_last=drop_last)
        if len(order) != len(dataset):
            raise ValueError(f"order has {len(order)} positions for a data set of {len(dataset)}")
        self.order = list(order)

    def __iter__(self):
        # unshuffled, the parent yields this rank's positions 0..n-1 (padded / trimmed): map them through the order
        return iter([self.order[p] for p in super().__iter__()])


def _rank_seed(epoch_seed: int, rank: int) -> int:
    """Rank ``rank``'s seed for this epoch's dropout and augmentation draws (rank 0: the epoch seed)."""
    return (epoch_seed + rank) % (2**63 - 1)


def rank_loader(ds: Dataset, cfg: FitConfig, seed: int, device: torch.device, world: int, rank: int) -> DataLoader:
    """Rank ``rank`` of ``world``'s training loader for the epoch seeded ``seed``: batches of
    ``cfg.batch_size // world`` from :class:`GlobalOrderSampler` over :func:`shuffled_order`, so
    that the ranks' k-th batches together are the single-process loader's k-th batch (exactly,
    when ``len(ds)`` is a multiple of ``world``; otherwise DistributedSampler repeats up to
    ``world - 1`` samples in the last batch, or drops them with ``cfg.drop_last``)."""
    sampler = GlobalOrderSampler(ds, shuffled_order(len(ds), seed), world, rank, cfg.drop_last)
    g = torch.Generator()
    g.manual_seed(_rank_seed(seed, rank))  # worker base seeds: each rank's workers draw their own augmentations
    collate, pin = _collate(device, cfg.num_workers)
    return DataLoader(
        ds,
        batch_size=cfg.batch_size // world,
        sampler=sampler,
        generator=g,
        num_workers=cfg.num_workers,
        worker_init_fn=_seed_worker if cfg.num_workers else None,
        collate_fn=collate,
        pin_memory=pin,
        drop_last=cfg.drop_last,
    )


def _on_main(fn: Callable[[], object], what: str):
    """``fn()`` run on rank 0 and its result on every rank (alone: just ``fn()``). An exception on
    rank 0 is raised on every rank, so that none waits for a broadcast that never comes."""
    if not distributed.is_distributed():
        return fn()
    payload, error = None, None
    if distributed.is_main():
        try:
            payload = ("ok", fn())
        except Exception as e:  # noqa: BLE001 - re-raised below, on every rank
            error = e
            payload = ("error", e if isinstance(e, LfakitError) else None, f"{type(e).__name__}: {e}")
    payload = distributed.broadcast_object(payload)
    if payload[0] == "ok":
        return payload[1]
    if error is not None:
        raise error
    if payload[1] is not None:
        raise payload[1]
    raise TrainingError(f"rank 0 failed while {what}: {payload[2]}")


@dataclass
class Batch:
    """One collated batch: input, target, sample ids (or None) and the extra fields for the loss."""

    x: torch.Tensor
    y: torch.Tensor
    index: torch.Tensor | None
    extra: dict

    def to(self, device: torch.device, dtype: torch.dtype) -> "Batch":
        return Batch(_to_input(self.x, device, dtype), _to_input(self.y, device, dtype), self.index,
                     {k: _to_input(v, device, dtype) for k, v in self.extra.items()})


def split_batch(batch) -> Batch:
    """A DataLoader batch as a :class:`Batch`: ``(x, y)``, ``(x, y, index)`` or a mapping with
    ``x``, ``y``, optional ``index`` and extra fields."""
    if isinstance(batch, dict):
        missing = {"x", "y"} - set(batch)
        if missing:
            raise ParameterError(f"a dataset item given as a mapping needs the fields 'x' and 'y'; missing {sorted(missing)}")
        extra = {k: v for k, v in batch.items() if k not in ("x", "y", "index")}
        return Batch(batch["x"], batch["y"], batch.get("index"), extra)
    if len(batch) not in (2, 3):
        raise ParameterError(f"a dataset item must be (x, y), (x, y, index) or a mapping; got a {len(batch)}-tuple")
    return Batch(batch[0], batch[1], batch[2] if len(batch) == 3 else None, {})


def _atomic_save(obj, path: Path, keep_previous: bool = False) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    if keep_previous and path.exists():
        os.replace(path, path.with_suffix(".prev.pt"))
    os.replace(tmp, path)


def _loss_name(loss_fn: nn.Module) -> str:
    return getattr(loss_fn, "registry_name", type(loss_fn).__name__)


def _forward(model: nn.Module, x: torch.Tensor, device: torch.device, use_amp: bool, channels_last: bool):
    if device.type == "cuda" and channels_last and x.ndim == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.autocast(device.type, enabled=use_amp):
        return model(x)


def train_one_epoch(model: nn.Module, loss_fn: nn.Module, loader, opt: torch.optim.Optimizer, scaler, cfg: FitConfig,
                    device: torch.device, epoch: int, last_checkpoint: Path | None = None) -> float:
    """One pass over ``loader``: forward, loss (with the batch's extra fields), backward, clip,
    step. Returns the sample-weighted mean training loss; a NaN/inf loss stops with a clear error."""
    run_loss, seen = _train_epoch(model, loss_fn, loader, opt, scaler, cfg, device, epoch, last_checkpoint)
    return run_loss / max(seen, 1)


def _kept_message(last_checkpoint: Path | None) -> str:
    return (f"the last good checkpoint is {last_checkpoint}" if last_checkpoint and last_checkpoint.exists()
            else "no checkpoint was written yet")


def _train_epoch(model: nn.Module, loss_fn: nn.Module, loader, opt: torch.optim.Optimizer, scaler, cfg: FitConfig,
                 device: torch.device, epoch: int, last_checkpoint: Path | None = None) -> tuple[float, int]:
    """:func:`train_one_epoch`'s pass, returning this process's (sum of batch loss x batch size,
    samples). Under torchrun every step first agrees over all ranks whether any loss is NaN/inf,
    so that all of them stop at that step (the checkpoint named is rank 0's)."""
    model.train()
    use_amp = cfg.amp and device.type == "cuda" and cfg.precision == "float32"
    world, me = distributed.world_size(), distributed.rank()
    run_loss, seen = 0.0, 0
    for step, raw in enumerate(loader):
        b = split_batch(raw).to(device, cfg.dtype)
        out = _forward(model, b.x, device, use_amp, cfg.channels_last)
        loss = loss_fn(out.to(cfg.dtype), b.y, **b.extra)
        finite = bool(torch.isfinite(loss))
        if world > 1:
            flags = distributed.all_reduce_sum([0.0 if finite or r != me else 1.0 for r in range(world)])
            bad = [r for r, f in enumerate(flags) if f]
        else:
            bad = [] if finite else [0]
        if bad:
            if world > 1:
                kept = _on_main(lambda: _kept_message(last_checkpoint), "reporting a NaN loss")
                value = float(loss.detach()) if not finite else "non-finite"
                where = f" on rank {', '.join(map(str, bad))}"
            else:
                kept, value, where = _kept_message(last_checkpoint), float(loss.detach()), ""
            raise TrainingError(
                f"loss {_loss_name(loss_fn)} became {value}{where} at epoch {epoch}, batch {step}; {kept}. "
                "Lower lr, set grad_clip, or turn amp off."
            )
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if cfg.grad_clip > 0:
            scaler.unscale_(opt)
            nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        scaler.step(opt)
        scaler.update()
        run_loss += float(loss.detach()) * len(b.y)
        seen += len(b.y)
    return run_loss, seen


def per_sample_loss(loss_fn: nn.Module) -> nn.Module:
    """A copy of ``loss_fn`` returning one value per sample (``reduction="none"``, averaged over
    any further axes, e.g. the classes of a multi-label loss)."""
    if not hasattr(loss_fn, "reduction"):
        raise ParameterError(f"loss {_loss_name(loss_fn)} has no reduction argument; it cannot give per-sample losses")
    import copy

    fn = copy.copy(loss_fn)
    fn.reduction = "none"
    return fn


@torch.no_grad()
def predict(
    model: nn.Module,
    dataset: Dataset,
    batch_size: int = 64,
    device: str | torch.device = "auto",
    amp: bool = True,
    loss_fn: nn.Module | None = None,
    num_workers: int = 0,
    sample_losses: bool = False,
) -> dict[str, np.ndarray | float]:
    """Run ``model`` over ``dataset`` in order.

    Returns raw ``scores`` (logits, as float64 whatever the model's precision), ``targets``, ``index`` (the sample
    ids the dataset gave, else positions) and, given ``loss_fn``, the dataset-mean ``loss``
    (batch losses weighted by batch size). ``sample_losses=True`` adds ``sample_loss``: each
    sample's own loss (:func:`per_sample_loss`), what membership-inference attacks read."""
    dev = device if isinstance(device, torch.device) else select_device(device)
    model.eval().to(dev)
    dtype = _model_dtype(model)
    if sample_losses and loss_fn is None:
        raise ParameterError("sample_losses=True needs the loss_fn whose per-sample values to return")
    each = per_sample_loss(loss_fn) if sample_losses else None
    loader = _loader(dataset, batch_size, False, 0, num_workers, dev)
    scores, targets, ids, per, total, n = [], [], [], [], 0.0, 0
    use_amp = amp and dev.type == "cuda" and dtype == torch.float32
    for raw in loader:
        cpu = split_batch(raw)
        b = cpu.to(dev, dtype)
        out = _forward(model, b.x, dev, use_amp, True).to(dtype)
        if loss_fn is not None:
            total += float(loss_fn(out, b.y, **b.extra)) * len(b.y)
            n += len(b.y)
        if each is not None:
            v = each(out, b.y, **b.extra)
            per.append((v.flatten(1).mean(1) if v.ndim > 1 else v).cpu().numpy())
        scores.append(out.cpu().double().numpy())  # float64: a float32 sigmoid ties every logit above ~16.6
        targets.append(cpu.y.numpy())
        start = sum(len(i) for i in ids)
        ids.append(cpu.index.numpy() if cpu.index is not None else np.arange(start, start + len(cpu.y)))
    empty = np.zeros((0,))
    result: dict[str, np.ndarray | float] = {
        "scores": np.concatenate(scores) if scores else empty,
        "targets": np.concatenate(targets) if targets else empty,
        "index": np.concatenate(ids) if ids else empty.astype(np.int64),
    }
    if loss_fn is not None:
        result["loss"] = total / max(n, 1)
    if each is not None:
        result["sample_loss"] = np.concatenate(per) if per else empty
    return result


def evaluate(model: nn.Module, dataset: Dataset, loss_fn: nn.Module, cfg: FitConfig, device: torch.device,
             metrics: dict[str, MetricFn] | None = None) -> dict[str, float]:
    """``val_loss`` (unless ``cfg.val_loss`` is off) and ``val_<name> = fn(targets, scores)`` for
    every metric (scores are logits)."""
    ebs = cfg.eval_batch_size or 2 * cfg.batch_size
    val = predict(model, dataset, ebs, device, cfg.amp, loss_fn if cfg.val_loss else None, cfg.num_workers)
    row = {"val_loss": val["loss"]} if cfg.val_loss else {}
    for name, fn in (metrics or {}).items():
        row[f"val_{name}"] = float(fn(val["targets"], val["scores"]))
    return row


def _load_checkpoint(path: Path, device: torch.device, what: str) -> dict:
    """``torch.load(weights_only=True)`` of ``path``; a truncated or corrupt file falls back to
    the previous epoch's ``last.prev.pt``, else stops with a message naming the file."""
    candidates = [path, path.with_suffix(".prev.pt")]
    errors = []
    for c in candidates:
        if not c.exists():
            continue
        try:
            state = torch.load(c, map_location=device, weights_only=True)
        except Exception as e:  # noqa: BLE001 - zip, unpickling and EOF errors all mean "unreadable"
            errors.append(f"{c}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
            continue
        if c != path:
            import warnings

            why = f"unreadable ({errors[-1]})" if errors else "missing (the run stopped while replacing it)"
            warnings.warn(f"{path} is {why}; resuming {what} from the previous epoch's {c.name}", stacklevel=4)
        return state
    raise TrainingError(
        f"cannot resume {what}: its checkpoint is unreadable ({'; '.join(errors)}). "
        f"To retrain this one loss from scratch, delete {path.parent} and resume again; "
        "the losses already finished are kept."
    )


def fit(
    model: nn.Module,
    loss_fn: nn.Module,
    train_ds: Dataset,
    val_ds: Dataset,
    cfg: FitConfig,
    checkpoint_dir: str | Path | None = None,
    val_metrics: dict[str, MetricFn] | None = None,
    resume: bool = False,
    desc: str = "",
    stop_after_epoch: int | None = None,
    keep_previous_checkpoint: bool = True,
) -> FitResult:
    """Train ``model`` with ``loss_fn``; validate every epoch; keep and return the best epoch.

    ``keep_previous_checkpoint=False`` writes ``last.pt`` without keeping the previous epoch's as
    ``last.prev.pt`` (two checkpoints on disk, ``best.pt`` and ``last.pt``, instead of three: the
    write is atomic, the previous one only guards against a file damaged after it was written).

    ``val_metrics={"auroc": fn, ...}`` adds ``val_auroc = fn(targets, scores)`` (scores are
    logits) and the like to the history; ``cfg.monitor`` may name ``val_loss`` or any of them. With ``checkpoint_dir`` a ``last.pt`` is
    written every epoch and ``best.pt`` whenever the monitored value improves; ``resume=True``
    continues from ``last.pt`` when one exists. ``stop_after_epoch`` ends the call after that
    epoch as an interruption would (used to test resume); the returned history then stops there.

    Under torchrun (``WORLD_SIZE`` > 1) every rank calls ``fit`` with the same arguments; the
    model trains in DistributedDataParallel on global batches of ``cfg.batch_size`` (a multiple
    of the world size), ``train_loss`` is the mean over all ranks' samples, rank 0 validates,
    writes ``checkpoint_dir`` and decides a resume, and every rank returns the same
    (unwrapped) model and history. The checkpoints load in a single process.
    """
    metrics = dict(val_metrics or {})
    device = select_device(cfg.device)
    known = ({"val_loss"} if cfg.val_loss else set()) | {f"val_{m}" for m in metrics}
    if cfg.monitor not in known:
        raise ParameterError(f"monitor={cfg.monitor!r} is not computed here; choose one of {sorted(known)}")
    if len(train_ds) == 0 or len(val_ds) == 0:
        raise ParameterError(f"cannot train on an empty split (train: {len(train_ds)}, validation: {len(val_ds)} samples)")
    if cfg.drop_last and len(train_ds) < cfg.batch_size:
        raise ParameterError(f"batch_size={cfg.batch_size} is larger than the {len(train_ds)} training samples, and the "
                             "incomplete last batch is dropped; lower batch_size")
    world = distributed.world_size()
    if world > 1:
        device = _distributed_device(device, cfg, world)
        distributed.init(device)
    me, main = distributed.rank(), distributed.is_main()
    ckpt = Path(checkpoint_dir) if checkpoint_dir else None
    if ckpt and main:  # the other ranks never write into checkpoint_dir
        ckpt.mkdir(parents=True, exist_ok=True)

    model.to(device, cfg.dtype)
    if device.type == "cuda" and cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = make_optimizer(model, cfg)
    sched = make_scheduler(opt, cfg)
    use_amp = cfg.amp and device.type == "cuda" and cfg.precision == "float32"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    mode = cfg.monitor_mode
    best = math.inf if mode == "min" else -math.inf
    best_epoch, bad_epochs, start_epoch, stopped_early = 0, 0, 1, False
    history: list[dict] = []

    last_path = ckpt / "last.pt" if ckpt else None
    best_path = ckpt / "best.pt" if ckpt else None
    resumed_from = 0
    what = desc or _loss_name(loss_fn)
    state = None
    if world > 1:
        if resume:  # rank 0 decides and reads; every rank continues from its state
            state = _on_main(lambda: _read_resume_state(last_path, torch.device("cpu"), what, cfg), "resuming")
    elif resume and last_path is not None and (last_path.exists() or last_path.with_suffix(".prev.pt").exists()):
        state = _read_resume_state(last_path, device, what, cfg)
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        if sched is not None and state.get("scheduler") is not None:
            sched.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        history = state["history"]
        best, best_epoch, bad_epochs = state["best"], state["best_epoch"], state["bad_epochs"]
        stopped_early = state.get("stopped_early", False)
        start_epoch = resumed_from = state["epoch"] + 1
        del state

    net = model  # what trains: the model itself, or its DistributedDataParallel wrapper
    if world > 1:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    epochs = range(start_epoch, cfg.epochs + 1) if not stopped_early else range(0)
    try:
        bar = progress(epochs, cfg.progress and main, desc=desc or "epochs", total=cfg.epochs, initial=start_epoch - 1)
        best_state = None
        for epoch in bar:
            t0 = time.perf_counter()
            es = _epoch_seed(cfg.seed, epoch)
            rs = es if world == 1 else _rank_seed(es, me)
            torch.manual_seed(rs)  # dropout and augmentation draws of this epoch
            np.random.seed(rs % 2**32)
            random.seed(rs)
            if world > 1:
                loader = rank_loader(train_ds, cfg, es, device, world, me)
                total, seen = distributed.all_reduce_sum(
                    _train_epoch(net, loss_fn, loader, opt, scaler, cfg, device, epoch, last_path))
                row = {"epoch": epoch, "train_loss": total / max(seen, 1)}
            else:
                loader = _loader(train_ds, cfg.batch_size, True, es, cfg.num_workers, device, cfg.drop_last)
                row = {"epoch": epoch, "train_loss": train_one_epoch(model, loss_fn, loader, opt, scaler, cfg, device, epoch, last_path)}

            def validate(row=row):
                row.update(evaluate(model, val_ds, loss_fn, cfg, device, metrics))
                row["lr"] = opt.param_groups[0]["lr"]
                return row

            # rank 0 validates the weights it checkpoints (its BatchNorm buffers are the ones DDP
            # broadcasts); every rank takes its row, so all make the same best / early-stop decisions
            row = _on_main(validate, f"validating epoch {epoch}")
            value = row[cfg.monitor]
            improved = value < best if mode == "min" else value > best
            if improved:
                best, best_epoch, bad_epochs = value, epoch, 0
                if best_path is not None:  # rank 0 writes; the others hear of it, or of its error
                    _on_main(lambda: _atomic_save(model.state_dict(), best_path), "writing best.pt")
                elif main:
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

                def save_last():
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
                        keep_previous=keep_previous_checkpoint,
                    )
                    if not keep_previous_checkpoint:
                        last_path.with_suffix(".prev.pt").unlink(missing_ok=True)
                    pd.DataFrame(history).to_csv(ckpt / "history.csv", index=False)

                _on_main(save_last, "writing last.pt")
            if hasattr(bar, "set_postfix"):
                bar.set_postfix({k: f"{v:.4g}" for k, v in row.items() if k.startswith(("train", "val"))})
            if stopped_early or (stop_after_epoch is not None and epoch >= stop_after_epoch):
                break
    finally:  # drop the DDP wrapper now, even when this frame outlives the call (held by a traceback
        del net  # or a reference cycle): one still alive at interpreter exit can abort the process

    def best_weights():
        if best_path is not None and best_path.exists():
            model.load_state_dict(torch.load(best_path, map_location=device, weights_only=True))
        elif best_state is not None:
            model.load_state_dict(best_state)
        return {k: v.detach().cpu() for k, v in model.state_dict().items()} if world > 1 else None

    final = _on_main(best_weights, "loading the best epoch")
    if world > 1 and not main:  # every rank returns rank 0's best weights (and its BatchNorm buffers)
        model.load_state_dict(final)
    return FitResult(
        model=model,
        history=pd.DataFrame(history),
        best_epoch=best_epoch,
        best_value=best,
        stopped_early=stopped_early,
        resumed_from_epoch=resumed_from,
        checkpoint_dir=ckpt,
    )


def _distributed_device(device: torch.device, cfg: FitConfig, world: int) -> torch.device:
    """The checks of a torchrun training, before any work: a global batch that splits evenly,
    a device DistributedDataParallel supports; on CUDA, this rank's GPU (``cuda:$LOCAL_RANK``)."""
    if cfg.batch_size % world:
        lower = max(world, cfg.batch_size // world * world)
        raise ParameterError(
            f"batch_size={cfg.batch_size} is the global batch of all {world} processes (WORLD_SIZE={world}) and must "
            f"be a multiple of {world}; use batch_size={lower} or {lower + world}, or another number of processes")
    if device.type == "cuda":
        return torch.device("cuda", distributed.local_rank())
    if device.type != "cpu":
        raise ParameterError(f"training under torchrun (WORLD_SIZE={world}) runs on CUDA (nccl) or the CPU (gloo), "
                             f"not on {device.type}; set device=cuda or device=cpu")
    return device


def _read_resume_state(last_path: Path | None, device: torch.device, what: str, cfg: FitConfig) -> dict | None:
    """``last.pt`` (or ``last.prev.pt``) read for a resume, its settings checked against ``cfg``;
    None when there is none to resume from."""
    if last_path is None or not (last_path.exists() or last_path.with_suffix(".prev.pt").exists()):
        return None
    state = _load_checkpoint(last_path, device, what)
    saved = state.get("config")
    if isinstance(saved, dict):  # a setting added since the checkpoint was written counts at its default
        saved = {**{f.name: f.default for f in fields(FitConfig) if f.name not in saved}, **saved}
    if saved != asdict(cfg):
        diff = {k: (saved.get(k), v) for k, v in asdict(cfg).items() if saved.get(k) != v}
        raise ParameterError(f"cannot resume from {last_path}: settings changed since it was written {diff}")
    return state
