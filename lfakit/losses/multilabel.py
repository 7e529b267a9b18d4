"""Multi-label losses (spec: the kit's loss formula sheet, LOSSES.md section A).

Every loss here takes **logits** ``z`` of shape (B, C) and targets of the same shape, and
predicts label ``c`` positive iff ``z[:, c] > decision_threshold_logit`` (0.0 for all of them).

Reduction conventions:

* element-wise losses (``bce``, ``focal``, ``asl``, ``exp_ce``, ``f_ece``): ``reduction="none"``
  returns the (B, C) matrix of per-element losses and ``"mean"`` averages over all B*C
  elements (PyTorch's convention);
* set-wise losses (``zlpr``, ``soft_zlpr``, ``fzlpr``): ``"none"`` returns the (B,) vector of
  per-sample losses and ``"mean"`` averages over the B samples.

Half-precision logits (float16/bfloat16, e.g. produced under ``torch.autocast``) are cast up to
float32 before any arithmetic, so the returned loss is float32 for them; float64 stays float64.
Targets are treated as constants: no gradient flows to them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from lfakit.errors import ParameterError
from lfakit.losses._base import Loss, check_multilabel
from lfakit.losses._registry import register

__all__ = [
    "BCELoss",
    "FocalLoss",
    "AsymmetricLoss",
    "ZLPRLoss",
    "SoftZLPRLoss",
    "FocalZLPRLoss",
    "ExpCELoss",
    "FocalExpCELoss",
    "zlpr_consistency",
    "EXP_CE_CLAMP",
]

#: Logit bound of ``exp_ce`` / ``f_ece``: the authors clip p to [1e-8, 1 - 1e-8], i.e. the
#: logit to about +-ln(1e8) = +-18.4207; the kit uses the rounded value of the spec.
EXP_CE_CLAMP = 18.42

#: Lower bound on a focusing base ``b`` before ``b ** gamma`` when ``gamma < 1`` (the derivative
#: ``gamma * b ** (gamma - 1)`` is infinite at b = 0).
_FOCUS_FLOOR = 1e-6


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------
def _upcast(x: torch.Tensor) -> torch.Tensor:
    """float16/bfloat16 -> float32 (differentiable); other floating dtypes unchanged."""
    if x.dtype in (torch.float16, torch.bfloat16):
        return x.float()
    return x


def _targets_like(targets: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    return targets.detach().to(device=z.device, dtype=z.dtype)


def _focus(base: torch.Tensor, gamma: float) -> torch.Tensor:
    """``base ** gamma`` with a finite gradient at base = 0 (floor 1e-6 when gamma < 1)."""
    if gamma < 1:
        base = base.clamp(min=_FOCUS_FLOOR)
    return base.pow(gamma)


def _check_number(name: str, value, *, low=None, high=None, low_open=False, high_open=False):
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


def _clamp_inclusive(z: torch.Tensor, bound: float) -> torch.Tensor:
    """``clamp(z, -bound, bound)`` whose gradient is 1 on ``|z| <= bound`` (bounds included)
    and 0 strictly outside. (``torch.clamp`` gives 0 *on* the bounds, which would make the
    derivative jump at |z| = bound from the interior value to 0.)"""
    return torch.where(z > bound, bound, torch.where(z < -bound, -bound, z))


def _smooth(t: torch.Tensor, eps: float) -> torch.Tensor:
    """Label smoothing toward 1/2: ``t (1 - eps) + eps / 2``."""
    return t * (1.0 - eps) + 0.5 * eps if eps > 0 else t


# --------------------------------------------------------------------------------------------
# element-wise losses
# --------------------------------------------------------------------------------------------
@register("bce", "multilabel")
class BCELoss(Loss):
    r"""Binary cross-entropy on logits, one independent sigmoid per label.

    Per element: ``l = w_pos * y' * softplus(-z) + (1 - y') * softplus(z)`` with
    ``y' = y (1 - eps) + eps / 2`` (label smoothing toward 1/2, ``eps = label_smoothing``) and
    ``w_pos = pos_weight[c]`` (1 when ``pos_weight`` is None). This is exactly
    ``F.binary_cross_entropy_with_logits(z, y', pos_weight=pos_weight)``, which it calls.

    Defaults: ``pos_weight=None``, ``label_smoothing=0.0``.
    Reduction: ``"mean"`` is the **element mean** over B*C (as PyTorch); ``"none"`` gives (B, C).

    Targets may be soft, ``y`` in [0, 1] (cross-entropy is defined for them, and PyTorch accepts
    them); values outside [0, 1] are rejected.

    Args:
        pos_weight: None, a number, or a length-C sequence/tensor of non-negative weights on
            the positive term (PyTorch's ``pos_weight``; e.g. ``n_neg / n_pos`` per label).
        label_smoothing: eps in [0, 1].
        reduction: "mean" | "sum" | "none".
    """

    decision_threshold_logit = 0.0

    def __init__(self, pos_weight=None, label_smoothing: float = 0.0, reduction: str = "mean"):
        super().__init__(reduction)
        self.label_smoothing = _check_number("label_smoothing", label_smoothing, low=0, high=1)
        if pos_weight is not None:
            if isinstance(pos_weight, torch.Tensor):
                pw = pos_weight.detach().clone().to(torch.get_default_dtype())
            elif isinstance(pos_weight, (int, float)) and not isinstance(pos_weight, bool):
                pw = torch.tensor([float(pos_weight)])
            elif isinstance(pos_weight, Sequence):
                pw = torch.tensor([float(v) for v in pos_weight])
            else:
                raise ParameterError(
                    f"pos_weight must be None, a number, a sequence or a tensor, "
                    f"got {type(pos_weight).__name__}"
                )
            if pw.ndim > 1 or pw.numel() == 0:
                raise ParameterError(
                    f"pos_weight must be a number or a 1-D sequence of C weights, "
                    f"got shape {tuple(pw.shape)}"
                )
            if not bool(torch.isfinite(pw).all()) or bool((pw < 0).any()):
                raise ParameterError("pos_weight entries must be finite and >= 0")
            pw = pw.reshape(-1)
        else:
            pw = None
        self.register_buffer("pos_weight", pw)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        check_multilabel(logits, targets, soft=True)
        z = _upcast(logits)
        y = _smooth(_targets_like(targets, z), self.label_smoothing)
        pw = self.pos_weight
        if pw is not None:
            if pw.numel() not in (1, z.shape[1]):
                raise ValueError(
                    f"pos_weight has {pw.numel()} entries but logits have {z.shape[1]} classes"
                )
            pw = pw.to(device=z.device, dtype=z.dtype)
        return F.binary_cross_entropy_with_logits(z, y, pos_weight=pw, reduction=self.reduction)

    def extra_repr(self) -> str:
        pw = None if self.pos_weight is None else self.pos_weight.tolist()
        return f"pos_weight={pw}, label_smoothing={self.label_smoothing}, {super().extra_repr()}"


@register("focal", "multilabel")
class FocalLoss(Loss):
    r"""Sigmoid focal loss (Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017).

    Per element: ``l = alpha_t (1 - p_t)^gamma * bce(z, y)`` with ``p = sigmoid(z)``,
    ``p_t = p`` if y = 1 else ``1 - p``, ``alpha_t = alpha`` if y = 1 else ``1 - alpha``
    (``alpha_t = 1`` when ``alpha`` is None) and ``bce = y softplus(-z) + (1-y) softplus(z)``.

    ``1 - p_t`` is computed as ``sigmoid(-z)`` (y = 1) / ``sigmoid(z)`` (y = 0), never as a
    difference, so it has full relative precision for confident predictions; when
    ``gamma < 1`` it is floored at 1e-6 so the derivative of ``(1 - p_t)^gamma`` stays finite.

    Defaults: ``gamma=2.0``, ``alpha=None`` (no alpha weighting; RetinaNet uses alpha=0.25;
    the seed's ``FocalLoss(alpha=1, gamma=2)`` is ``alpha=None`` here).
    Reduction: ``"mean"`` is the **element mean** over B*C; ``"none"`` gives (B, C).

    Published implementation: equals ``torchvision.ops.sigmoid_focal_loss(z, y, alpha, gamma,
    reduction="mean")`` for ``alpha`` in [0, 1]; torchvision's ``alpha=-1`` (any negative
    alpha: no weighting) is ``alpha=None`` here. Like torchvision, soft targets t in [0, 1]
    are accepted and interpolate linearly: ``1 - p_t = t sigmoid(-z) + (1-t) sigmoid(z)``,
    ``alpha_t = alpha t + (1 - alpha)(1 - t)``, ``bce = t softplus(-z) + (1-t) softplus(z)``.

    Args:
        gamma: focusing exponent >= 0 (gamma = 0 and alpha None is plain BCE).
        alpha: None or a weight in [0, 1] on positives.
        reduction: "mean" | "sum" | "none".
    """

    decision_threshold_logit = 0.0

    def __init__(self, gamma: float = 2.0, alpha: float | None = None, reduction: str = "mean"):
        super().__init__(reduction)
        self.gamma = _check_number("gamma", gamma, low=0)
        if alpha is not None:
            if isinstance(alpha, (int, float)) and not isinstance(alpha, bool) and alpha < 0:
                raise ParameterError(
                    f"alpha must be None or in [0, 1], got {alpha!r} (torchvision's alpha=-1, "
                    "meaning no weighting, is alpha=None here)"
                )
            alpha = _check_number("alpha", alpha, low=0, high=1)
        self.alpha = alpha

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        check_multilabel(logits, targets, soft=True)
        z = _upcast(logits)
        t = _targets_like(targets, z)
        bce = t * F.softplus(-z) + (1 - t) * F.softplus(z)
        if self.gamma != 0:
            one_minus_pt = t * torch.sigmoid(-z) + (1 - t) * torch.sigmoid(z)
            loss = bce * _focus(one_minus_pt, self.gamma)
        else:
            loss = bce
        if self.alpha is not None:
            loss = (self.alpha * t + (1 - self.alpha) * (1 - t)) * loss
        return self._reduce(loss)

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}, alpha={self.alpha}, {super().extra_repr()}"


@register("asl", "multilabel")
class AsymmetricLoss(Loss):
    r"""Asymmetric loss (Ridnik et al., "Asymmetric Loss For Multi-Label Classification",
    ICCV 2021).

    Per element, with ``p = sigmoid(z)`` and the shifted probability ``p_m = max(p - m, 0)``:

    ``l = -[ y (1 - p)^{gamma_pos} log(max(p, eps))
             + (1 - y) p_m^{gamma_neg} log(max(1 - p_m, eps)) ]``

    The ``eps`` floors inside the logs are the authors' (they bound each log term by
    ln(1e-8) = -18.42, so a positive with z below about -18.4 gets no gradient). ``1 - p`` is
    computed as ``sigmoid(-z)``, ``1 - p_m`` as ``min(sigmoid(-z) + m, 1)``, and ``log p`` as
    ``-softplus(-z)`` (``log(1 - p)`` as ``-softplus(z)`` when m = 0), so confident predictions
    keep full precision in float32; the values are the authors'. When a gamma is
    < 1 its focusing base is floored at 1e-6 (finite derivative).

    Defaults: ``gamma_neg=4``, ``gamma_pos=1``, ``clip=0.05`` (m), ``eps=1e-8``,
    ``detach_focusing=True``.
    Reduction: the kit's default ``"mean"`` is the **element mean** over B*C. The authors'
    ``AsymmetricLoss`` class returns the **sum** over all elements: ``reduction="sum"``
    reproduces it.

    ``detach_focusing=True`` (the authors' default, ``disable_torch_grad_focal_loss=True``)
    treats the focusing weights ``(1-p)^{gamma_pos}`` and ``p_m^{gamma_neg}`` as constants in
    the backward pass; ``detach_focusing=False`` differentiates through them as the paper's
    formula does. The value is the same either way; the gradient differs.

    Targets must be hard (0/1).
    """

    decision_threshold_logit = 0.0

    def __init__(
        self,
        gamma_neg: float = 4.0,
        gamma_pos: float = 1.0,
        clip: float = 0.05,
        eps: float = 1e-8,
        detach_focusing: bool = True,
        reduction: str = "mean",
    ):
        super().__init__(reduction)
        self.gamma_neg = _check_number("gamma_neg", gamma_neg, low=0)
        self.gamma_pos = _check_number("gamma_pos", gamma_pos, low=0)
        self.clip = _check_number("clip", clip, low=0, high=1, high_open=True)
        self.eps = _check_number("eps", eps, low=0, high=1, low_open=True, high_open=True)
        if not isinstance(detach_focusing, bool):
            raise ParameterError(f"detach_focusing must be a bool, got {detach_focusing!r}")
        self.detach_focusing = detach_focusing

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        check_multilabel(logits, targets)
        z = _upcast(logits)
        y = _targets_like(targets, z)
        p = torch.sigmoid(z)
        one_minus_p = torch.sigmoid(-z)
        log_eps = math.log(self.eps)
        # log(max(p, eps)) = max(log p, log eps), with log p = -softplus(-z) (exact near p = 1)
        log_pos = (-F.softplus(-z)).clamp(min=log_eps)
        if self.clip > 0:
            p_m = (p - self.clip).clamp(min=0)
            log_neg = torch.log((one_minus_p + self.clip).clamp(max=1))  # >= log(clip)
            log_neg = log_neg.clamp(min=log_eps)
        else:
            p_m = p
            log_neg = (-F.softplus(z)).clamp(min=log_eps)
        base_pos, base_neg = one_minus_p, p_m
        if self.detach_focusing:
            base_pos, base_neg = base_pos.detach(), base_neg.detach()
        w_pos = _focus(base_pos, self.gamma_pos) if self.gamma_pos != 0 else 1.0
        w_neg = _focus(base_neg, self.gamma_neg) if self.gamma_neg != 0 else 1.0
        loss = -(y * w_pos * log_pos + (1 - y) * w_neg * log_neg)
        return self._reduce(loss)

    def extra_repr(self) -> str:
        return (
            f"gamma_neg={self.gamma_neg}, gamma_pos={self.gamma_pos}, clip={self.clip}, "
            f"eps={self.eps}, detach_focusing={self.detach_focusing}, {super().extra_repr()}"
        )


@register("exp_ce", "multilabel")
class ExpCELoss(Loss):
    r"""Exponential cross-entropy ("ECE" of the Loss Function Assessment work, Liu, Wang et al.
    2025, authors' demo code) -- **not** the expected calibration error.

    Per element: ``l = y exp(-z_c) + (1 - y) exp(z_c)`` with ``z_c = clamp(z, -18.42, 18.42)``;
    for y = 1 this is ``1/p - 1`` and for y = 0 ``1/(1-p) - 1``. The clamp mirrors the authors'
    clipping of p to [1e-8, 1 - 1e-8] and keeps the value below ~1e8 (finite in float32).

    Gradient at the clamp, well defined everywhere: inside and *on* the bounds (|z| <= 18.42)
    it is the exact derivative ``-y exp(-z) + (1-y) exp(z)`` (on a bound: the one-sided limit
    from inside; note ``torch.clamp`` itself would give 0 there, so the kit uses its own
    inclusive clamp); strictly outside it is 0 (the loss is constant there), as with the
    authors' probability clip -- so a confidently *wrong* logit beyond the bound gets no
    gradient. No inf/NaN can arise for any finite z.

    Defaults: ``clamp=18.42``. Reduction: ``"mean"`` is the **element mean** over B*C.
    Targets must be hard (0/1).
    """

    decision_threshold_logit = 0.0

    def __init__(self, clamp: float = EXP_CE_CLAMP, reduction: str = "mean"):
        super().__init__(reduction)
        self.clamp = _check_number("clamp", clamp, low=0, high=80, low_open=True)

    def _per_element(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        zc = _clamp_inclusive(z, self.clamp)
        return y * torch.exp(-zc) + (1 - y) * torch.exp(zc)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        check_multilabel(logits, targets)
        z = _upcast(logits)
        return self._reduce(self._per_element(z, _targets_like(targets, z)))

    def extra_repr(self) -> str:
        return f"clamp={self.clamp}, {super().extra_repr()}"


@register("f_ece", "multilabel")
class FocalExpCELoss(ExpCELoss):
    r"""Focal-balanced exponential cross-entropy ("F-ECE" of the Loss Function Assessment work):
    exponential term on positives, focal term on negatives, no alpha.

    Per element, with ``z_c = clamp(z, -18.42, 18.42)``:
    ``l = y exp(-z_c) + (1 - y) sigmoid(z_c)^gamma softplus(z_c)``.

    The clamp and its gradient convention are those of ``exp_ce`` (exact derivative for
    |z| <= 18.42, 0 beyond). Because sigmoid(z_c) >= sigmoid(-18.42) ~ 1e-8 > 0, the focusing
    weight has a finite derivative for every gamma >= 0, so no further floor is applied.

    Defaults: ``gamma=2.0``, ``clamp=18.42``. Reduction: ``"mean"`` is the **element mean**.
    Targets must be hard (0/1).
    """

    def __init__(self, gamma: float = 2.0, clamp: float = EXP_CE_CLAMP, reduction: str = "mean"):
        super().__init__(clamp=clamp, reduction=reduction)
        self.gamma = _check_number("gamma", gamma, low=0)

    def _per_element(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        zc = _clamp_inclusive(z, self.clamp)
        neg = F.softplus(zc)
        if self.gamma != 0:
            neg = torch.sigmoid(zc).pow(self.gamma) * neg
        return y * torch.exp(-zc) + (1 - y) * neg

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}, {super().extra_repr()}"


# --------------------------------------------------------------------------------------------
# set-wise losses (ZLPR family)
# --------------------------------------------------------------------------------------------
def _zlpr_terms(neg_scores: torch.Tensor, pos_scores: torch.Tensor) -> torch.Tensor:
    """Row-wise ``log(1 + sum_j exp(neg_j)) + log(1 + sum_j exp(pos_j))``; -inf entries drop out.

    Both log-sum-exps run in one ``logsumexp`` call over a (B, 2, C + 1) tensor whose last
    column is the appended 0 (the "1 +")."""
    scores = F.pad(torch.stack([neg_scores, pos_scores], dim=1), (0, 1))
    return torch.logsumexp(scores, dim=-1).sum(dim=-1)


@register("zlpr", "multilabel")
class ZLPRLoss(Loss):
    r"""ZLPR, "zero-bounded log-sum-exp & pairwise rank-based" loss (Su et al. 2022,
    arXiv:2208.02955).

    Per sample: ``l = log(1 + sum_{c: y_c=0} exp(z_c)) + log(1 + sum_{c: y_c=1} exp(-z_c))``.
    It pushes every positive logit above 0 and every negative below 0, so a label is predicted
    positive iff ``z > 0``.

    Computed as ``logsumexp`` over the masked scores with one appended 0 column; masked entries
    are set to ``-inf`` (not +-1e12, which overflows in float16), and the evaluation is in
    float32 or wider even under autocast (half-precision logits are cast up first).

    Defaults: none. Reduction: ``"mean"`` is the **sample mean** over B; ``"none"`` gives (B,).
    Targets must be hard (0/1).
    """

    decision_threshold_logit = 0.0

    def __init__(self, reduction: str = "mean"):
        super().__init__(reduction)

    @staticmethod
    def _zlpr(z: torch.Tensor, positive: torch.Tensor) -> torch.Tensor:
        neg_inf = float("-inf")
        return _zlpr_terms(torch.where(positive, neg_inf, z), torch.where(positive, -z, neg_inf))

    def _scores(self, z: torch.Tensor) -> torch.Tensor:
        return z

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        check_multilabel(logits, targets)
        z = _upcast(logits)
        positive = targets.detach().to(z.device) > 0.5
        return self._reduce(self._zlpr(self._scores(z), positive))


@register("soft_zlpr", "multilabel")
class SoftZLPRLoss(Loss):
    r"""ZLPR for soft targets t in [0, 1] (Su et al. 2022, soft-label form).

    Per sample: ``l = log(1 + sum_c (1 - t_c) exp(z_c)) + log(1 + sum_c t_c exp(-z_c))``,
    with ``t' = t (1 - eps) + eps / 2`` when ``label_smoothing = eps > 0``.

    Computed stably as ``logsumexp`` of ``z + log(1 - t)`` and ``-z + log(t)`` with an appended 0
    column; a zero weight gives log-weight ``-inf`` (the entry drops out exactly), so on hard
    targets this equals ``zlpr`` bit for bit. Half-precision logits are cast up to float32.
    Targets are constants (no gradient to them).

    Defaults: ``label_smoothing=0.0``. Reduction: ``"mean"`` is the **sample mean** over B.
    """

    decision_threshold_logit = 0.0

    def __init__(self, label_smoothing: float = 0.0, reduction: str = "mean"):
        super().__init__(reduction)
        self.label_smoothing = _check_number("label_smoothing", label_smoothing, low=0, high=1)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        check_multilabel(logits, targets, soft=True)
        z = _upcast(logits)
        t = _smooth(_targets_like(targets, z), self.label_smoothing)
        # log(0) = -inf exactly; targets are detached so no gradient passes through the log
        loss = _zlpr_terms(z + torch.log1p(-t), -z + torch.log(t))
        return self._reduce(loss)

    def extra_repr(self) -> str:
        return f"label_smoothing={self.label_smoothing}, {super().extra_repr()}"


@register("fzlpr", "multilabel")
class FocalZLPRLoss(ZLPRLoss):
    r"""Focal ZLPR (Hanif et al., Bioengineering 2025, 12(6):593): ZLPR on temperature-scaled
    scores, ``l = zlpr(z / tau)`` per sample.

    A small tau sharpens the log-sum-exp toward the hardest positive/negative. ``tau=0.2``
    comes from public implementations; the paper's own value was not available, so tau is a
    parameter. The decision rule is unchanged (z > 0).

    Defaults: ``tau=0.2``. Reduction: ``"mean"`` is the **sample mean** over B.
    Targets must be hard (0/1).
    """

    def __init__(self, tau: float = 0.2, reduction: str = "mean"):
        super().__init__(reduction)
        self.tau = _check_number("tau", tau, low=0, low_open=True)

    def _scores(self, z: torch.Tensor) -> torch.Tensor:
        return z / self.tau

    def extra_repr(self) -> str:
        return f"tau={self.tau}, {super().extra_repr()}"


def zlpr_consistency(s: torch.Tensor, t: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    r"""(Optional.) ZLPR's symmetric-KL consistency term between two logit sets (Su et al. 2022).

    Per sample: ``sum_c (sigmoid(s_c) - sigmoid(t_c)) (s_c - t_c)`` (>= 0, symmetric, 0 iff
    s = t); gradients flow to both ``s`` and ``t`` (detach one to use it as a teacher).
    Reduction: ``"mean"`` is the **sample mean** over B, ``"sum"`` the sum, ``"none"`` (B,).
    Half-precision inputs are cast up to float32.
    """
    if reduction not in ("none", "mean", "sum"):
        raise ValueError(f"reduction must be one of ('none', 'mean', 'sum'), got {reduction!r}")
    if s.ndim != 2 or s.shape != t.shape:
        raise ValueError(
            f"expected two logit tensors of the same shape (batch, classes), got "
            f"{tuple(s.shape)} and {tuple(t.shape)}"
        )
    if not (torch.is_floating_point(s) and torch.is_floating_point(t)):
        raise TypeError("zlpr_consistency takes floating logits")
    s, t = _upcast(s), _upcast(t)
    per_sample = ((torch.sigmoid(s) - torch.sigmoid(t)) * (s - t)).sum(dim=1)
    if reduction == "mean":
        return per_sample.mean()
    if reduction == "sum":
        return per_sample.sum()
    return per_sample
