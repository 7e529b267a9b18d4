"""Shared pieces for loss modules: reductions and input checks.

The value checks run on every call, so they are written to be cheap: one reduction
(``torch.aminmax``) over the targets and **one** device-to-host transfer per call (none of the
element-wise ``(t < 0) | (t > 1)`` masks, ``.any()`` calls or separate ``.item()`` syncs).
They can be switched off (:func:`set_value_checks`, :func:`value_checks`) where that reduction
and transfer matter; shape and dtype checks, which read no tensor data, always run.
"""

from __future__ import annotations

import contextlib
import math

import torch
from torch import nn

from lfakit.errors import ParameterError

REDUCTIONS = ("none", "mean", "sum")

_VALUE_CHECKS = [True]  # process-wide switch (a list, so that readers see updates)


def value_checks_enabled() -> bool:
    """Whether the losses validate the *values* of their targets on every call (default True)."""
    return _VALUE_CHECKS[0]


def set_value_checks(enabled: bool) -> bool:
    """Switch the per-call value checks of every loss on or off; return the previous setting.

    On (the default), each call reads its targets once (one reduction and one device-to-host
    transfer) and raises a clear error for values outside the loss's domain: multi-label
    targets outside {0, 1} (or [0, 1] for soft targets) or NaN, class labels outside [0, K),
    NaN/inf MOS, a constant MOS where a correlation loss needs variation, negative or
    non-finite MOS standard deviations. On a CPU this costs a few microseconds a call, well
    under 1% of a training step of the kit's smallest (smoke) models (``make bench`` measures
    it); on a GPU the transfer is a host synchronisation.

    Off, those reads are skipped and bad values give what the formula and PyTorch's own
    functions give: NaN or a wrong value for multi-label targets and MOS; for class labels
    out of range PyTorch's index error on a CPU (a device-side assert on a GPU), except that
    cross-entropy (``ce``, ``logit_clip``, ``logit_norm``) skips a label equal to -100, the
    default ``ignore_index`` of ``torch.nn.functional.cross_entropy``. Shape and dtype errors
    are still raised. Numerical safeguards are not checks and stay on (ZLPR's overflow
    fallback; focal loss still reads whether targets are hard, to choose its formula).

    The switch is process-wide (like ``torch.distributions.Distribution.set_default_validate_args``),
    not per thread. :func:`value_checks` sets it for a ``with`` block.
    """
    if not isinstance(enabled, bool):
        raise ParameterError(f"enabled must be True or False, got {enabled!r}")
    previous = _VALUE_CHECKS[0]
    _VALUE_CHECKS[0] = enabled
    return previous


@contextlib.contextmanager
def value_checks(enabled: bool):
    """``with value_checks(False): ...`` runs the block with the per-call value checks set to
    ``enabled`` (see :func:`set_value_checks`) and restores the previous setting after it."""
    previous = set_value_checks(enabled)
    try:
        yield
    finally:
        _VALUE_CHECKS[0] = previous


def check_number(name: str, value, *, low=None, high=None, low_open=False, high_open=False) -> float:
    """A loss argument as a finite float within the given bounds, or a ParameterError naming it."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ParameterError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ParameterError(f"{name} must be finite, got {value!r}")
    if low is not None and (value <= low if low_open else value < low):
        raise ParameterError(f"{name} must be {'>' if low_open else '>='} {low}, got {value!r}")
    if high is not None and (value >= high if high_open else value > high):
        raise ParameterError(f"{name} must be {'<' if high_open else '<='} {high}, got {value!r}")
    return value


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


def to_host(*values: torch.Tensor) -> list:
    """0-dim tensors -> Python numbers with a single device-to-host transfer.

    On the CPU ``.item()`` is a plain memory read; on an accelerator the values are stacked
    first so that the host waits for the device only once.
    """
    if values[0].is_cpu or len(values) == 1:
        return [v.item() for v in values]
    values = [v.detach() for v in values]
    if len({v.dtype for v in values}) > 1:
        values = [v.to(torch.float64) for v in values]
    return torch.stack(values).tolist()


def target_stats(targets: torch.Tensor, soft: bool, need_hard: bool = False):
    """Device-side summary of multi-label targets for :func:`judge_targets`: ``None`` when
    there is nothing to check (bool or empty targets), else ``(kind, lo, hi)``.

    * ``kind == "range"``: ``lo, hi = aminmax(t)`` (soft targets, or integer targets);
    * ``kind == "binary"``: ``lo, hi = aminmax(t - t*t)``. ``t - t*t`` is exactly 0 at 0 and 1,
      > 0 inside (0, 1) and < 0 outside [0, 1] (also in floating point: ``t*t`` rounds to a
      value <= t exactly when 0 <= t <= 1), and NaN for NaN; so the targets are all 0/1 iff
      ``lo == hi == 0`` and all in [0, 1] iff ``lo >= 0``.
    """
    t = targets.detach() if targets.requires_grad else targets
    if t.is_floating_point():
        if t.numel() == 0:
            return None
        if soft and not need_hard:
            return ("range", *torch.aminmax(t))
        return ("binary", *torch.aminmax(torch.addcmul(t, t, t, value=-1)))
    if t.dtype == torch.bool or t.numel() == 0:
        return None
    if t.is_complex():
        raise TypeError(f"targets must be real 0/1 values, got {t.dtype}")
    return ("range", *torch.aminmax(t))


def judge_targets(kind: str, lo, hi, soft: bool) -> bool:
    """Raise the input error for host values of :func:`target_stats`; return True iff every
    target is exactly 0 or 1 (for ``"range"`` stats of floating targets: unknown, False)."""
    if kind == "range":
        if not (lo >= 0 and hi <= 1):  # NaN fails too
            _bad_targets(soft)
        return isinstance(lo, int)  # integer targets in [0, 1] are 0/1
    if soft:
        if not lo >= 0:
            _bad_targets(soft)
        return hi == 0
    if not (lo == 0 and hi == 0):
        _bad_targets(soft)
    return True


def _bad_targets(soft: bool):
    if soft:
        raise ValueError("soft targets must lie in [0, 1] (found a value outside it, or NaN)")
    raise ValueError("targets must be 0 or 1 (use the soft variant for soft targets)")


def check_multilabel_shapes(logits: torch.Tensor, targets: torch.Tensor) -> None:
    """Raise a clear error unless logits and targets are matching B x C tensors, logits float."""
    if not isinstance(logits, torch.Tensor) or not isinstance(targets, torch.Tensor):
        raise TypeError(
            f"expected tensors (logits, targets), got {type(logits).__name__}, "
            f"{type(targets).__name__}"
        )
    if logits.ndim != 2:
        raise ValueError(f"expected logits of shape (batch, classes), got {tuple(logits.shape)}")
    if targets.shape != logits.shape:
        raise ValueError(
            f"targets shape {tuple(targets.shape)} must equal logits shape {tuple(logits.shape)} "
            "(multi-label losses take one 0/1 target per class; no broadcasting)"
        )
    if not logits.is_floating_point():
        raise TypeError(f"logits must be a floating tensor, got {logits.dtype}")


def check_multilabel(
    logits: torch.Tensor, targets: torch.Tensor, soft: bool = False, need_hard: bool = False
) -> bool:
    """Raise a clear error unless logits and targets are matching B x C float tensors.

    Hard targets must be in {0, 1}; soft targets (``soft=True``) in [0, 1] (NaN is rejected
    in both cases). Returns True iff every target is exactly 0 or 1 -- always for
    ``soft=False``; for soft floating targets the answer is exact when ``need_hard=True``
    (which costs one extra element-wise op), otherwise it is False.

    Cost: one reduction and one device-to-host transfer. With the value checks off
    (:func:`set_value_checks`) only the shapes are checked, unless ``need_hard`` asks for the
    answer; the result is then True for ``soft=False`` (the caller's contract) and False for
    soft targets (not known).
    """
    check_multilabel_shapes(logits, targets)
    if not (_VALUE_CHECKS[0] or need_hard):
        return not soft
    stats = target_stats(targets, soft, need_hard)
    if stats is None:  # bool or empty targets: nothing to read, all 0/1
        return True
    kind, lo, hi = stats
    lo, hi = to_host(lo, hi)
    return judge_targets(kind, lo, hi, soft)
