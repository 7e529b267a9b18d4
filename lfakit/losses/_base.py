"""Shared pieces for loss modules: reductions and input checks."""

from __future__ import annotations

import torch
from torch import nn

REDUCTIONS = ("none", "mean", "sum")


class Loss(nn.Module):
    """Base class: holds ``reduction`` and applies it to a per-element or per-sample tensor."""

    def __init__(self, reduction: str = "mean"):
        super().__init__()
        if reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
        self.reduction = reduction

    def _reduce(self, values: torch.Tensor) -> torch.Tensor:
        if self.reduction == "mean":
            return values.mean()
        if self.reduction == "sum":
            return values.sum()
        return values

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}"


def check_multilabel(logits: torch.Tensor, targets: torch.Tensor, soft: bool = False) -> None:
    """Raise a clear error unless logits and targets are matching B x C float tensors.

    Hard targets must be in {0, 1}; soft targets (``soft=True``) in [0, 1].
    """
    if logits.ndim != 2:
        raise ValueError(f"expected logits of shape (batch, classes), got {tuple(logits.shape)}")
    if targets.shape != logits.shape:
        raise ValueError(
            f"targets shape {tuple(targets.shape)} must equal logits shape {tuple(logits.shape)} "
            "(multi-label losses take one 0/1 target per class; no broadcasting)"
        )
    if not torch.is_floating_point(logits):
        raise TypeError(f"logits must be a floating tensor, got {logits.dtype}")
    t = targets.detach()
    if soft:
        if bool(((t < 0) | (t > 1)).any()):
            raise ValueError("soft targets must lie in [0, 1]")
    elif bool(((t != 0) & (t != 1)).any()):
        raise ValueError("targets must be 0 or 1 (use the soft variant for soft targets)")
