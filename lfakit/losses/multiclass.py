"""Multi-class (softmax) losses (spec: ``docs/losses.md`` section B).

Every loss here takes **logits** ``z`` of shape (B, K) and integer class labels ``y`` of
shape (B,) with values in [0, K); the prediction is ``argmax_k z_k``. Notation below:
``log p = log_softmax(z)``, ``p_y`` the probability of the labelled class.

Reduction convention: ``reduction="none"`` returns the (B,) vector of per-sample losses and
``"mean"`` (the default) is the **sample mean** over B; ``"sum"`` sums over B. The exception is
``flooding``, which is defined on the batch mean and only accepts ``"mean"``.

All losses are computed from ``log_softmax`` (never ``log(softmax)``), and quantities such as
``1 - p_y`` as ``-expm1(log p_y)``, so they stay finite with a finite gradient for logits of any
finite size. Half-precision logits (float16/bfloat16, e.g. produced under ``torch.autocast``)
are cast up to float32 before any arithmetic, so the returned loss is float32 for them; float64
stays float64. Labels are constants: no gradient flows to them.

Where a published implementation differs from its paper, the default follows the paper and a
documented argument reproduces the code (``sce``/``rce``/``nce_rce``: ``A``; ``mae``:
``scale``; ``logit_clip``: ``form``).

Labels: there is no ``ignore_index``; every label must be a class in [0, K). With the value
checks on (the default, :func:`lfakit.losses.set_value_checks`) every call reads the label
range first (:func:`check_multiclass`) and raises a clear error otherwise. The cross-entropy
losses (``ce``, ``logit_clip``, ``logit_norm``) call ``torch.nn.functional.cross_entropy``
with its default ``ignore_index=-100``: the check rejects -100 like any other label outside
[0, K), so that default is never reached with the checks on; with them off, a -100 label is
skipped as PyTorch's convention has it (every other bad label still fails in PyTorch's index
check). The other losses pick ``log p_y`` with ``gather``, which has no ignore value.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from lfakit.errors import ParameterError
from lfakit.losses._base import (
    REDUCTIONS,
    _VALUE_CHECKS,
    Loss,
    check_number,
    to_host,
)
from lfakit.losses._registry import build as _build_loss

__all__ = [
    "check_multiclass",
    "CrossEntropyLoss",
    "FocalCELoss",
    "MAELoss",
    "GCELoss",
    "RCELoss",
    "SCELoss",
    "NCELoss",
    "NCERCELoss",
    "PHuberCELoss",
    "LogitClipLoss",
    "LogitNormLoss",
    "FloodingLoss",
    "SCE_CODE_A",
]

#: ``A`` of the symmetric-CE authors' code: they clip the one-hot label at 1e-4, so
#: ``log 0`` becomes ``ln(1e-4) = -9.2103...`` (the paper uses A = -4).
SCE_CODE_A = math.log(1e-4)

#: Floor on ``p_y`` in ``gce`` (as in public GCE implementations); applied as ``log p_y >=
#: ln(1e-7)``, which is the same thing for the value and gives zero gradient below it.
_GCE_LOG_FLOOR = math.log(1e-7)

#: Floor on the focusing base ``1 - p_y`` of ``focal_ce`` when ``gamma < 1`` (the derivative
#: ``gamma * b ** (gamma - 1)`` is infinite at b = 0); same value as the multi-label focal loss.
_FOCUS_FLOOR = 1e-6


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------
def check_multiclass(logits: torch.Tensor, target: torch.Tensor, values: bool = True) -> None:
    """Raise a clear error unless ``logits`` is a (B, K) float tensor and ``target`` a (B,)
    tensor of integer class indices in [0, K).

    Any integer dtype is accepted for ``target`` (int64 is what PyTorch's ``cross_entropy``
    wants; int32/uint8 labels are accepted and cast); floating, bool and one-hot targets are
    rejected, as is ``K < 2`` (a softmax over one class is constant). There is no
    ``ignore_index``: every label must be a valid class.

    Cost: the structural checks read no tensor data; the label range (``values=True``; the
    losses pass the value-check switch) is one reduction (``torch.aminmax``) and one
    device-to-host transfer.
    """
    if not isinstance(logits, torch.Tensor) or not isinstance(target, torch.Tensor):
        raise TypeError(
            f"expected tensors (logits, target), got {type(logits).__name__}, "
            f"{type(target).__name__}"
        )
    if logits.ndim != 2:
        raise ValueError(
            f"expected logits of shape (batch, classes), got {tuple(logits.shape)}"
        )
    if not logits.is_floating_point():
        raise TypeError(f"logits must be a floating tensor, got {logits.dtype}")
    n, k = logits.shape
    if k < 2:
        raise ValueError(
            f"multi-class losses need at least 2 classes, got logits of shape {(n, k)}"
        )
    if target.ndim != 1 or target.shape[0] != n:
        hint = ""
        if target.ndim == 2 and tuple(target.shape) == (n, k):
            hint = (
                " It looks one-hot / multi-label: multi-class losses take class indices "
                "(use target.argmax(1)), or use a multi-label loss."
            )
        elif target.ndim == 2 and target.shape[1] == 1:
            hint = " Use target.squeeze(1)."
        raise ValueError(
            f"target must be a 1-D tensor of {n} class indices (one per row of logits "
            f"{tuple(logits.shape)}), got shape {tuple(target.shape)}.{hint}"
        )
    if target.is_floating_point() or target.dtype == torch.bool or target.is_complex():
        raise TypeError(
            f"target must hold integer class indices (int64), got {target.dtype}; "
            "convert float labels with target.long() only if they are whole numbers"
        )
    if n and values:
        lo, hi = to_host(*torch.aminmax(target))
        if lo < 0 or hi >= k:
            bad = lo if lo < 0 else hi
            raise ValueError(
                f"target labels must lie in [0, {k}) for logits with {k} classes; found {bad}"
                + (" (ignore_index is not supported)" if bad == -100 else "")
            )


def _upcast(x: torch.Tensor) -> torch.Tensor:
    """float16/bfloat16 -> float32 (differentiable); other floating dtypes unchanged."""
    if x.dtype in (torch.float16, torch.bfloat16):
        return x.float()
    return x


def _one_minus(logp_y: torch.Tensor) -> torch.Tensor:
    """``1 - p_y`` from ``log p_y`` without cancellation."""
    return -torch.expm1(logp_y)


def _rce(logp_y: torch.Tensor, a: float) -> torch.Tensor:
    """Reverse CE with ``log 0 := A``: ``-sum_k p_k log q_k = -A (1 - p_y)``."""
    return torch.expm1(logp_y).mul(a)  # -A (1 - p_y), with 1 - p_y = -expm1(log p_y)


def _nce(logp: torch.Tensor, logp_y: torch.Tensor) -> torch.Tensor:
    """Normalized CE ``log p_y / sum_k log p_k`` (denominator <= -K ln K < 0 for K >= 2)."""
    return logp_y / logp.sum(dim=1, keepdim=True)


class _MulticlassLoss(Loss):
    """Shared forward: check inputs, upcast, ``log_softmax``, per-sample loss, reduce.

    ``_per_sample(logp, logp_y)`` receives ``logp`` (B, K) and ``logp_y`` as a (B, 1) column
    and returns a (B, 1) column (kept 2-D so that no squeeze op enters the autograd graph
    unless ``reduction="none"`` asks for the (B,) vector).
    """

    decision_rule = "argmax"

    def _logits(self, z: torch.Tensor) -> torch.Tensor:
        """Transform of the logits before the softmax (identity except logit_clip/norm)."""
        return z

    def _per_sample(self, logp: torch.Tensor, logp_y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _loss(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        logp = z.log_softmax(1)
        per_sample = self._per_sample(logp, logp.gather(1, y.unsqueeze(1)))
        if self.reduction == "none":
            return per_sample.squeeze(1)
        return self._reduce(per_sample)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        check_multiclass(logits, target, values=_VALUE_CHECKS[0])
        z = self._logits(_upcast(logits))
        return self._loss(z, target.to(device=z.device, dtype=torch.long))  # no copy if int64


class _CEOfLogits(_MulticlassLoss):
    """Cross-entropy of (possibly transformed) logits through ``F.cross_entropy``
    (log_softmax + nll_loss in one call; faster than composing them by hand). Its default
    ``ignore_index=-100`` stands: the value check rejects that label (see the module
    docstring)."""

    label_smoothing = 0.0

    def _loss(self, z, y):
        return F.cross_entropy(
            z, y, reduction=self.reduction, label_smoothing=self.label_smoothing
        )


# --------------------------------------------------------------------------------------------
# cross-entropy family
# --------------------------------------------------------------------------------------------
class CrossEntropyLoss(_CEOfLogits):
    r"""Softmax cross-entropy, optionally with label smoothing.

    Per sample: ``l = -(1 - eps) log p_y - (eps / K) sum_k log p_k`` (``eps =
    label_smoothing``; the smoothed target is ``(1 - eps) onehot(y) + eps / K``, PyTorch's
    convention; label smoothing from Szegedy et al., "Rethinking the Inception Architecture
    for Computer Vision", CVPR 2016). With ``eps = 0`` it is ``-log p_y``. Computed by
    ``F.cross_entropy(z, y, label_smoothing=eps)`` after the label check (there is no
    ``ignore_index``: with the value checks on a label -100 is rejected like any other label
    outside [0, K); with them off PyTorch's default skips it).

    Defaults: ``label_smoothing=0.0``. Reduction: ``"mean"`` is the **sample mean** over B.
    """

    def __init__(self, label_smoothing: float = 0.0, reduction: str = "mean"):
        super().__init__(reduction)
        self.label_smoothing = check_number("label_smoothing", label_smoothing, low=0, high=1)

    def extra_repr(self) -> str:
        return f"label_smoothing={self.label_smoothing}, {super().extra_repr()}"


class FocalCELoss(_MulticlassLoss):
    r"""Softmax focal loss (Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017,
    multi-class form).

    Per sample: ``l = -(1 - p_y)^gamma log p_y``. ``1 - p_y`` is computed as
    ``-expm1(log p_y)`` (no cancellation for confident predictions); when ``gamma < 1`` it is
    floored at 1e-6 so the derivative of ``(1 - p_y)^gamma`` stays finite. ``gamma = 0`` is
    exactly ``ce``.

    Defaults: ``gamma=2.0`` (noisy-label work often uses 0.5). Reduction: ``"mean"`` is the
    **sample mean** over B.
    """

    def __init__(self, gamma: float = 2.0, reduction: str = "mean"):
        super().__init__(reduction)
        self.gamma = check_number("gamma", gamma, low=0)

    def _per_sample(self, logp, logp_y):
        if self.gamma == 0:
            return -logp_y
        base = _one_minus(logp_y)
        if self.gamma < 1:
            base = base.clamp(min=_FOCUS_FLOOR)
        return -base.pow(self.gamma) * logp_y

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}, {super().extra_repr()}"


# --------------------------------------------------------------------------------------------
# robust (noisy-label) losses
# --------------------------------------------------------------------------------------------
class MAELoss(_MulticlassLoss):
    r"""Mean absolute error between the softmax and the one-hot label (Ghosh, Kumar & Sastry,
    "Robust Loss Functions under Label Noise for Deep Neural Networks", AAAI 2017).

    Per sample: ``l = scale * sum_k |p_k - 1[k = y]| = scale * 2 (1 - p_y)``.

    Defaults: ``scale=1.0`` (the formula). A widely used implementation (e.g. the code of the
    normalized-loss work, Ma et al. 2020) returns ``1 - p_y``, i.e. half of it: ``scale=0.5``
    reproduces that. Reduction: ``"mean"`` is the **sample mean** over B.
    """

    def __init__(self, scale: float = 1.0, reduction: str = "mean"):
        super().__init__(reduction)
        self.scale = check_number("scale", scale, low=0, low_open=True)

    def _loss(self, z, y):  # 2 scale (1 - p_y) = -2 scale expm1(log p_y)
        # the constant factor -2 scale is applied after the reduction (one op on a scalar)
        p_y_minus_1 = torch.expm1(z.log_softmax(1).gather(1, y.unsqueeze(1)))
        if self.reduction == "none":
            return p_y_minus_1.squeeze(1).mul(-2.0 * self.scale)
        return self._reduce(p_y_minus_1).mul(-2.0 * self.scale)

    def extra_repr(self) -> str:
        return f"scale={self.scale}, {super().extra_repr()}"


class GCELoss(_MulticlassLoss):
    r"""Generalized cross-entropy (Zhang & Sabuncu, "Generalized Cross Entropy Loss for Training
    Deep Neural Networks with Noisy Labels", NeurIPS 2018).

    Per sample: ``l = (1 - p_y^q) / q`` with ``p_y`` clamped to ``>= 1e-7`` (as public
    implementations do). Computed as ``-expm1(q * max(log p_y, ln 1e-7)) / q``; the gradient is
    0 where the clamp is active. ``q -> 0`` gives CE, ``q = 1`` gives ``1 - p_y`` (half of
    ``mae``). The truncated variant ``L_trunc`` of the paper is not implemented.

    Defaults: ``q=0.7``. Reduction: ``"mean"`` is the **sample mean** over B.
    """

    def __init__(self, q: float = 0.7, reduction: str = "mean"):
        super().__init__(reduction)
        self.q = check_number("q", q, low=0, high=1, low_open=True)

    def _per_sample(self, logp, logp_y):
        return torch.expm1(logp_y.clamp(min=_GCE_LOG_FLOOR).mul(self.q)).mul(-1.0 / self.q)

    def extra_repr(self) -> str:
        return f"q={self.q}, {super().extra_repr()}"


class RCELoss(_MulticlassLoss):
    r"""Reverse cross-entropy (Wang et al., "Symmetric Cross Entropy for Robust Learning
    with Noisy Labels", ICCV 2019): ``-sum_k p_k log q_k`` with the one-hot label ``q`` and
    ``log 0 := A``.

    Per sample: ``l = -A (1 - p_y)`` (``1 - p_y`` computed as ``-expm1(log p_y)``).

    Defaults: ``A=-4.0`` (must be < 0). Reduction: ``"mean"`` is the **sample mean** over B.

    The paper sets A = -4. The authors' code clips the one-hot label at 1e-4 before the log,
    i.e. A = ln(1e-4) = -9.21: ``A=SCE_CODE_A`` reproduces it. Their code also clamps every
    p_k at 1e-7, which changes the value by at most |A| (K - 1) 1e-7; that is not reproduced.
    """

    def __init__(self, A: float = -4.0, reduction: str = "mean"):  # noqa: N803 (paper's name)
        super().__init__(reduction)
        self.A = check_number("A", A, high=0, high_open=True)

    def _per_sample(self, logp, logp_y):
        return _rce(logp_y, self.A)

    def extra_repr(self) -> str:
        return f"A={self.A}, {super().extra_repr()}"


class SCELoss(_MulticlassLoss):
    r"""Symmetric cross-entropy (Wang et al., "Symmetric Cross Entropy for Robust
    Learning with Noisy Labels", ICCV 2019).

    Per sample: ``l = alpha * (-log p_y) + beta * (-A (1 - p_y))`` (CE plus reverse CE).

    Defaults: ``alpha=0.1``, ``beta=1.0`` (the paper's CIFAR-10 setting), ``A=-4.0``.
    Reduction: ``"mean"`` is the **sample mean** over B (as the authors' code: mean CE and
    mean RCE).

    The paper sets A = -4. The authors' code clips the one-hot label at 1e-4 before the log,
    i.e. A = ln(1e-4) = -9.21: ``A=SCE_CODE_A`` reproduces it. Their code also clamps every
    p_k at 1e-7, which changes the value by at most |A| (K - 1) 1e-7; that is not reproduced.
    """

    def __init__(  # noqa: N803 (A is the paper's name)
        self, alpha: float = 0.1, beta: float = 1.0, A: float = -4.0, reduction: str = "mean"
    ):
        super().__init__(reduction)
        self.alpha = check_number("alpha", alpha, low=0)
        self.beta = check_number("beta", beta, low=0)
        self.A = check_number("A", A, high=0, high_open=True)

    def _per_sample(self, logp, logp_y):
        return self.alpha * (-logp_y) + self.beta * _rce(logp_y, self.A)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, beta={self.beta}, A={self.A}, {super().extra_repr()}"


class NCELoss(_MulticlassLoss):
    r"""Normalized cross-entropy (Ma et al., "Normalized Loss Functions for Deep Learning with
    Noisy Labels", ICML 2020).

    Per sample: ``l = (-log p_y) / (-sum_k log p_k)``, in (0, 1]. The denominator is at least
    ``K ln K > 0`` (so K >= 2 is required, which the input check enforces).

    Defaults: none. Reduction: ``"mean"`` is the **sample mean** over B.
    """

    def __init__(self, reduction: str = "mean"):
        super().__init__(reduction)

    def _per_sample(self, logp, logp_y):
        return _nce(logp, logp_y)


class NCERCELoss(_MulticlassLoss):
    r"""Active-passive loss NCE+RCE (Ma et al., "Normalized Loss Functions for Deep
    Learning with Noisy Labels", ICML 2020).

    Per sample: ``l = alpha * (-log p_y) / (-sum_k log p_k) + beta * (-A (1 - p_y))``.

    Defaults: ``alpha=1.0``, ``beta=1.0``, ``A=-4.0`` (the RCE of Wang et al. 2019).
    Reduction: ``"mean"`` is the **sample mean** over B.

    The normalized-loss authors' code uses the RCE of the symmetric-CE code, which clips the
    one-hot label at 1e-4, i.e. A = ln(1e-4) = -9.21: ``A=SCE_CODE_A`` reproduces it (their
    clamp of p_k at 1e-7 is not reproduced; it moves the value by at most |A| (K - 1) 1e-7).
    """

    def __init__(  # noqa: N803 (A is the paper's name)
        self, alpha: float = 1.0, beta: float = 1.0, A: float = -4.0, reduction: str = "mean"
    ):
        super().__init__(reduction)
        self.alpha = check_number("alpha", alpha, low=0)
        self.beta = check_number("beta", beta, low=0)
        self.A = check_number("A", A, high=0, high_open=True)

    def _per_sample(self, logp, logp_y):
        return self.alpha * _nce(logp, logp_y) + self.beta * _rce(logp_y, self.A)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, beta={self.beta}, A={self.A}, {super().extra_repr()}"


class PHuberCELoss(_MulticlassLoss):
    r"""Partially Huberised cross-entropy (Menon, Rawat, Reddi & Kumar, "Can gradient clipping
    mitigate label noise?", ICLR 2020).

    Per sample: ``l = -tau p_y + log(tau) + 1`` if ``p_y <= 1/tau``, else ``-log p_y``
    (continuous at ``p_y = 1/tau``; the gradient in ``p_y`` is bounded by ``tau``). The branch
    is chosen in log space (``log p_y <= -log tau``), so it is exact for tiny ``p_y``.

    Defaults: ``tau=10.0`` (must be >= 1; ``tau = 1`` is the linear loss ``1 - p_y``).
    Reduction: ``"mean"`` is the **sample mean** over B.
    """

    def __init__(self, tau: float = 10.0, reduction: str = "mean"):
        super().__init__(reduction)
        self.tau = check_number("tau", tau, low=1)

    def _per_sample(self, logp, logp_y):
        linear = (math.log(self.tau) + 1.0) - self.tau * torch.exp(logp_y)  # p_y = exp(log p_y)
        return torch.where(logp_y.detach() <= -math.log(self.tau), linear, torch.neg(logp_y))

    def extra_repr(self) -> str:
        return f"tau={self.tau}, {super().extra_repr()}"


# --------------------------------------------------------------------------------------------
# logit-norm based
# --------------------------------------------------------------------------------------------
class LogitClipLoss(_CEOfLogits):
    r"""Cross-entropy on norm-clipped logits, LogitClip (Wei et al., "Mitigating Memorization of
    Noisy Labels by Clipping the Model Prediction", ICML 2023).

    Per sample: ``l = ce(z_hat)`` with

    * ``form="paper"`` (default): ``z_hat = delta z / ||z||_2`` if ``||z||_2 > delta`` else
      ``z`` -- the logit vector is clipped to L2 norm at most ``delta``. Computed as
      ``z * delta / max(||z||, delta)`` (no division by a zero norm).
    * ``form="code"`` (the authors' released code): with ``n = ||z||_2 + 1e-7``,
      ``z_hat = z / (delta n)`` if ``n > 1/delta`` else ``z`` -- clipped to norm ``1/delta``
      instead. Computed as ``z / max(delta n, 1)``.

    The two coincide at ``delta = 1`` up to the code's 1e-7 (relative difference < 1e-7).

    Defaults: ``delta=1.0``, ``form="paper"``. Reduction: ``"mean"`` is the **sample mean**.
    """

    FORMS = ("paper", "code")

    def __init__(self, delta: float = 1.0, form: str = "paper", reduction: str = "mean"):
        super().__init__(reduction)
        self.delta = check_number("delta", delta, low=0, low_open=True)
        if form not in self.FORMS:
            raise ParameterError(f"form must be one of {self.FORMS}, got {form!r}")
        self.form = form

    def _logits(self, z):
        norm = torch.linalg.vector_norm(z, ord=2, dim=1, keepdim=True)
        if self.form == "paper":
            return z * (self.delta / norm.clamp(min=self.delta))
        return z / (self.delta * (norm + 1e-7)).clamp(min=1.0)

    def extra_repr(self) -> str:
        return f"delta={self.delta}, form={self.form!r}, {super().extra_repr()}"


class LogitNormLoss(_CEOfLogits):
    r"""Cross-entropy on normalized logits, LogitNorm (Wei et al., "Mitigating Neural Network
    Overconfidence with Logit Normalization", ICML 2022).

    Per sample: ``l = ce(z / (tau (||z||_2 + 1e-7)))`` -- every logit vector is rescaled to
    norm ``1/tau`` (the 1e-7 is the authors'). The paper's code and formula agree.

    Defaults: ``tau=0.04`` (the authors' README example uses 0.01). Reduction: ``"mean"`` is
    the **sample mean** over B.
    """

    def __init__(self, tau: float = 0.04, reduction: str = "mean"):
        super().__init__(reduction)
        self.tau = check_number("tau", tau, low=0, low_open=True)

    def _logits(self, z):
        norm = torch.linalg.vector_norm(z, ord=2, dim=1, keepdim=True)
        return z / (self.tau * (norm + 1e-7))

    def extra_repr(self) -> str:
        return f"tau={self.tau}, {super().extra_repr()}"


# --------------------------------------------------------------------------------------------
# flooding (a wrapper)
# --------------------------------------------------------------------------------------------
class FloodingLoss(Loss):
    r"""Flooding (Ishida et al., "Do We Need Zero Training Loss After Achieving Zero Training
    Error?", ICML 2020) around any registered loss.

    On a batch: ``l = |L - b| + b`` where ``L`` is the **batch mean** of the base loss. Above
    the flood level ``b`` it equals ``L`` (same gradient); below it, ``2b - L``, so the gradient
    changes sign and the optimiser climbs back toward ``b`` ("gradient ascent below b").

    Flooding is defined on the mini-batch mean, so ``reduction`` must be ``"mean"`` (there is
    no per-sample flooded loss, and flooding a sum would tie ``b`` to the batch size);
    ``"none"``/``"sum"`` are rejected, and so is a ``reduction`` other than ``"mean"`` in
    ``base_kwargs``.

    Usage: ``build("flooding", base="ce", b=0.1, base_kwargs={"label_smoothing": 0.1})``.
    ``base`` is a registered loss name (any task; the base's own "mean" convention applies)
    or a ``Loss`` module whose ``reduction`` is ``"mean"``. The forward takes whatever the base
    takes; the un-flooded mean of the last call is kept in ``last_base_loss`` (detached) for
    logging.

    Defaults: ``base="ce"``, ``b=0.1``, ``base_kwargs=None``.
    """

    def __init__(self, base="ce", b: float = 0.1, base_kwargs: dict | None = None,
                 reduction: str = "mean"):
        if reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
        if reduction != "mean":
            raise ParameterError(
                f"flooding is applied to the batch mean of the base loss, so reduction must be "
                f"'mean', got {reduction!r}"
            )
        super().__init__(reduction)
        self.b = check_number("b", b, low=0)
        if base_kwargs is not None and not isinstance(base_kwargs, dict):
            raise ParameterError(
                f"base_kwargs must be a dict or None, got {type(base_kwargs).__name__}"
            )
        base_kwargs = dict(base_kwargs or {})
        if isinstance(base, nn.Module):
            if base_kwargs:
                raise ParameterError("base_kwargs is only used when base is a loss name")
            module = base
        elif isinstance(base, str):
            if base == "flooding":
                raise ParameterError("flooding cannot wrap itself")
            if base_kwargs.get("reduction", "mean") != "mean":
                raise ParameterError(
                    f"flooding needs the base loss's batch mean; base_kwargs has reduction="
                    f"{base_kwargs['reduction']!r}"
                )
            module = _build_loss(base, **base_kwargs)
        else:
            raise ParameterError(
                f"base must be a loss name or an nn.Module, got {type(base).__name__}"
            )
        if getattr(module, "reduction", "mean") != "mean":
            raise ParameterError(
                f"flooding needs the base loss's batch mean; the base has reduction="
                f"{module.reduction!r}"
            )
        self.base = module
        self.last_base_loss: torch.Tensor | None = None

    def forward(self, *args, **kwargs) -> torch.Tensor:
        loss = self.base(*args, **kwargs)
        if loss.ndim != 0:
            raise ValueError(
                f"flooding expects the base loss to return a scalar batch mean, got shape "
                f"{tuple(loss.shape)}"
            )
        self.last_base_loss = loss.detach()
        return (loss - self.b).abs() + self.b

    def extra_repr(self) -> str:
        return f"b={self.b}, {super().extra_repr()}"
