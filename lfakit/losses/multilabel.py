"""Multi-label losses (spec: the kit's loss formula sheet, docs/losses.md section A).

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

Cost. Every call validates its inputs (shapes, dtype, target values) with one reduction over
the targets and a single device-to-host transfer (see ``lfakit.losses._base``), and the
losses are written with public PyTorch ops (``torch.nn.functional``, element-wise torch ops;
autograd gives every gradient), with as few operations as the formula allows: for 0/1 targets
the two branches ``y = 1`` / ``y = 0`` of an element-wise loss are one expression of the
signed logit ``u = z (1 - 2y)`` (``-z`` on positives, ``z`` on negatives; exact in floating
point), e.g. ``bce = softplus(u)``, ``1 - p_t = sigmoid(u)`` and ``exp_ce = exp(u)``. The
values are those of the formulas below up to rounding.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from lfakit.errors import ParameterError
from lfakit.losses._base import (
    _VALUE_CHECKS,
    Loss,
    check_number,
    check_multilabel,
    check_multilabel_shapes,
    judge_targets,
    target_stats,
    to_host,
)

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
    "EXP_CE_P_FLOOR",
]

#: Probability floor of ``exp_ce`` / ``f_ece``: the LFA authors' demo clips p = sigmoid(z) to
#: [1e-8, 1 - 1e-8] before applying the formula.
EXP_CE_P_FLOOR = 1e-8

#: The logit bound equivalent to that clip, ``logit(1 - 1e-8) = ln((1 - 1e-8) / 1e-8)``
#: = 18.420680733... (``-logit(1e-8)`` by symmetry), computed exactly: with it, ``exp(-z_c) =
#: 1/p - 1`` and ``exp(z_c) = 1/(1-p) - 1`` at the clipped p, so the kit's values are the
#: authors' (the rounded 18.42 would be 7e-4 off, relatively, on every clamped element).
EXP_CE_CLAMP = math.log((1.0 - EXP_CE_P_FLOOR) / EXP_CE_P_FLOOR)

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
    """Targets as a constant (detached) tensor of the logits' dtype and device (no copy when
    they already are one)."""
    t = targets.detach() if targets.requires_grad else targets
    if t.dtype != z.dtype or t.device != z.device:
        t = t.to(device=z.device, dtype=z.dtype)
    return t


def _signed(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``u = z (1 - 2y)``: ``-z`` where y = 1, ``z`` where y = 0 (exact for 0/1 targets)."""
    return torch.addcmul(z, z, y, value=-2)


def _focus(base: torch.Tensor, gamma: float) -> torch.Tensor:
    """``base ** gamma`` with a finite gradient at base = 0 (floor 1e-6 when gamma < 1)."""
    if gamma == 1:
        return base
    if gamma < 1:
        base = base.clamp(min=_FOCUS_FLOOR)
    return base.pow(gamma)


def _clamp_inclusive(z: torch.Tensor, bound: float) -> torch.Tensor:
    """``clamp(z, -bound, bound)`` whose gradient is 1 on ``|z| <= bound`` (bounds included)
    and 0 strictly outside. (``torch.clamp`` gives 0 *on* the bounds, which would make the
    derivative jump at |z| = bound from the interior value to 0.) The mask and the clamped
    constant are computed on the detached tensor: one differentiable op (``where``)."""
    zd = z.detach()
    return torch.where(zd.abs() <= bound, z, zd.clamp(-bound, bound))


def _smooth(t: torch.Tensor, eps: float) -> torch.Tensor:
    """Label smoothing toward 1/2: ``t (1 - eps) + eps / 2``."""
    return t * (1.0 - eps) + 0.5 * eps if eps > 0 else t


# --------------------------------------------------------------------------------------------
# element-wise losses
# --------------------------------------------------------------------------------------------
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
        self.label_smoothing = check_number("label_smoothing", label_smoothing, low=0, high=1)
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


class FocalLoss(Loss):
    r"""Sigmoid focal loss (Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017).

    Per element: ``l = alpha_t (1 - p_t)^gamma * bce(z, y)`` with ``p = sigmoid(z)``,
    ``p_t = p`` if y = 1 else ``1 - p``, ``alpha_t = alpha`` if y = 1 else ``1 - alpha``
    (``alpha_t = 1`` when ``alpha`` is None) and ``bce = y softplus(-z) + (1-y) softplus(z)``.

    ``1 - p_t`` is computed as ``sigmoid(-z)`` (y = 1) / ``sigmoid(z)`` (y = 0), never as a
    difference, so it has full relative precision for confident predictions; when
    ``gamma < 1`` it is floored at 1e-6 so the derivative of ``(1 - p_t)^gamma`` stays finite.
    For 0/1 targets (detected by the input check) both are one expression of the signed logit
    ``u = z (1 - 2y)``: ``bce = softplus(u)``, ``1 - p_t = sigmoid(u)``.

    Defaults: ``gamma=2.0``, ``alpha=None`` (no alpha weighting; RetinaNet uses alpha=0.25;
    the ChestX-ray14 ZLPR study's ``FocalLoss(alpha=1, gamma=2)`` is ``alpha=None`` here).
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
        self.gamma = check_number("gamma", gamma, low=0)
        if alpha is not None:
            if isinstance(alpha, (int, float)) and not isinstance(alpha, bool) and alpha < 0:
                raise ParameterError(
                    f"alpha must be None or in [0, 1], got {alpha!r} (torchvision's alpha=-1, "
                    "meaning no weighting, is alpha=None here)"
                )
            alpha = check_number("alpha", alpha, low=0, high=1)
        self.alpha = alpha

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        hard = check_multilabel(logits, targets, soft=True, need_hard=True)
        z = _upcast(logits)
        t = _targets_like(targets, z)
        if hard:  # u = -z on positives, z on negatives
            u = _signed(z, t)
            loss = F.softplus(u)
            if self.gamma != 0:
                loss = loss * _focus(torch.sigmoid(u), self.gamma)
        else:  # soft targets interpolate both branches (lerp(a, b, t) = a + t (b - a))
            nz = torch.neg(z)
            loss = torch.lerp(F.softplus(z), F.softplus(nz), t)
            if self.gamma != 0:
                one_minus_pt = torch.lerp(torch.sigmoid(z), torch.sigmoid(nz), t)
                loss = loss * _focus(one_minus_pt, self.gamma)
        if self.alpha is not None:  # alpha_t = alpha t + (1 - alpha)(1 - t), a constant
            loss = loss * (t * (2 * self.alpha - 1) + (1 - self.alpha))
        return self._reduce(loss)

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}, alpha={self.alpha}, {super().extra_repr()}"


class AsymmetricLoss(Loss):
    r"""Asymmetric loss (Ridnik et al., "Asymmetric Loss For Multi-Label Classification",
    ICCV 2021).

    Per element, with ``p = sigmoid(z)`` and the shifted probability ``p_m = max(p - m, 0)``:

    ``l = -[ y (1 - p)^{gamma_pos} log(max(p, eps))
             + (1 - y) p_m^{gamma_neg} log(max(1 - p_m, eps)) ]``

    The ``eps`` floors inside the logs are the authors' (they bound each log term by
    ln(1e-8) = -18.42..., so a positive with z below about -18.42 gets no gradient). ``1 - p`` is
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
    formula does. The value is the same either way; the gradient differs (autograd gives it
    in both cases: with detached weights it is not the derivative of the value).

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
        self.gamma_neg = check_number("gamma_neg", gamma_neg, low=0)
        self.gamma_pos = check_number("gamma_pos", gamma_pos, low=0)
        self.clip = check_number("clip", clip, low=0, high=1, high_open=True)
        self.eps = check_number("eps", eps, low=0, high=1, low_open=True, high_open=True)
        if not isinstance(detach_focusing, bool):
            raise ParameterError(f"detach_focusing must be a bool, got {detach_focusing!r}")
        self.detach_focusing = detach_focusing

    def _values(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-element loss (autograd gives the gradient; the focusing weights are computed
        from detached tensors when ``detach_focusing``)."""
        nz = torch.neg(z)
        one_minus_p = torch.sigmoid(nz)
        neg_log_eps = -math.log(self.eps)
        # -log(max(p, eps)) = min(-log p, -log eps), with -log p = softplus(-z) (exact near p=1)
        sp_neg = F.softplus(nz)
        nlog_pos = sp_neg.clamp(max=neg_log_eps)
        p = torch.sigmoid(z.detach() if self.detach_focusing else z)
        if self.clip > 0:
            # log(max(1 - p_m, eps)) with 1 - p_m = min(1 - p + clip, 1) >= clip
            xs = one_minus_p + self.clip
            log_neg = torch.log(xs.clamp(max=1))
            if self.clip < self.eps:  # otherwise log(clip) >= log(eps): the floor never acts
                log_neg = log_neg.clamp(min=-neg_log_eps)
            base_neg = (p - self.clip).clamp(min=0)  # p_m
        else:
            log_neg = torch.neg(F.softplus(z).clamp(max=neg_log_eps))  # log(max(1 - p, eps))
            base_neg = p
        # focusing weights, constants when detached
        base_pos = one_minus_p.detach() if self.detach_focusing else one_minus_p
        w_pos = _focus(base_pos, self.gamma_pos) if self.gamma_pos != 0 else None
        w_neg = _focus(base_neg, self.gamma_neg) if self.gamma_neg != 0 else None
        # y w_pos and (1 - y) w_neg; y is 0/1, so w - y w is exactly (1 - y) w
        a = y if w_pos is None else y * w_pos
        b = 1 - y if w_neg is None else torch.addcmul(w_neg, w_neg, y, value=-1)
        return torch.addcmul(a * nlog_pos, b, log_neg, value=-1)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        check_multilabel(logits, targets)
        z = _upcast(logits)
        return self._reduce(self._values(z, _targets_like(targets, z)))

    def extra_repr(self) -> str:
        return (
            f"gamma_neg={self.gamma_neg}, gamma_pos={self.gamma_pos}, clip={self.clip}, "
            f"eps={self.eps}, detach_focusing={self.detach_focusing}, {super().extra_repr()}"
        )


class ExpCELoss(Loss):
    r"""Exponential cross-entropy ("ECE" of the Loss Function Assessment work, Liu, Wang et al.
    2025, authors' demo code) -- **not** the expected calibration error.

    Per element: ``l = y exp(-z_c) + (1 - y) exp(z_c)`` with ``z_c = clamp(z, -c, c)``; for
    y = 1 this is ``1/p - 1`` and for y = 0 ``1/(1-p) - 1`` (``p = sigmoid(z_c)``).

    Clamp: the authors' demo clips ``p = sigmoid(z)`` to [1e-8, 1 - 1e-8] and applies the
    formula to the clipped p. The default ``c = ln((1 - 1e-8) / 1e-8) = 18.4206807...``
    (:data:`EXP_CE_CLAMP`, computed exactly) is that clip in logit space, so the values equal
    the authors' (up to rounding; a test compares with their probability-space formula, also
    beyond the clip). It keeps the value below ~1e8 (finite in float32).

    Gradient at the clamp, well defined everywhere: inside and *on* the bounds (|z| <= c) it
    is the exact derivative ``-y exp(-z) + (1-y) exp(z)`` (on a bound: the one-sided limit
    from inside; ``torch.clamp(z, -c, c)`` itself would give 0 there, so the kit's clamp
    passes the gradient through ``torch.where`` on ``|z| <= c``); strictly outside it is 0
    (the loss is constant there), as with the authors' probability clip -- so a confidently
    *wrong* logit beyond the bound gets no gradient. No inf/NaN can arise for any finite z.

    Evaluation: for 0/1 targets ``y exp(-z_c) + (1 - y) exp(z_c) = exp(clamp(u, -c, c))``
    with the signed logit ``u = z (1 - 2y)`` (the clamp is symmetric); autograd gives the
    gradient.

    Defaults: ``clamp=EXP_CE_CLAMP`` (18.4206807...).
    Reduction: ``"mean"`` is the **element mean** over B*C. Targets must be hard (0/1).
    """

    decision_threshold_logit = 0.0

    def __init__(self, clamp: float = EXP_CE_CLAMP, reduction: str = "mean"):
        super().__init__(reduction)
        self.clamp = check_number("clamp", clamp, low=0, high=80, low_open=True)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        check_multilabel(logits, targets)
        z = _upcast(logits)
        u = _signed(z, _targets_like(targets, z))  # -z on positives, z on negatives
        return self._reduce(torch.exp(_clamp_inclusive(u, self.clamp)))

    def extra_repr(self) -> str:
        return f"clamp={self.clamp}, {super().extra_repr()}"


class FocalExpCELoss(ExpCELoss):
    r"""Focal-balanced exponential cross-entropy ("F-ECE" of the Loss Function Assessment work):
    exponential term on positives, focal term on negatives, no alpha.

    Per element, with ``z_c = clamp(z, -c, c)`` and ``p = sigmoid(z_c)``:
    ``l = y exp(-z_c) + (1 - y) p^gamma softplus(z_c)``, i.e. ``y (1/p - 1) - (1 - y) p^gamma
    log(1 - p)``.

    The clamp (default ``c = ln((1 - 1e-8) / 1e-8)``, the authors' clip of p to
    [1e-8, 1 - 1e-8]) and its gradient convention are those of ``exp_ce`` (exact derivative
    for |z| <= c, 0 beyond). Because ``p >= 1e-8 > 0``, the focusing weight has a finite
    derivative for every gamma >= 0, so no further floor is applied. The two branches are
    combined with ``torch.lerp(negative, positive, y)``, which returns one of them exactly for
    y in {0, 1}; autograd gives the gradient.

    Defaults: ``gamma=2.0``, ``clamp=EXP_CE_CLAMP``.
    Reduction: ``"mean"`` is the **element mean** over B*C. Targets must be hard (0/1).
    """

    def __init__(self, gamma: float = 2.0, clamp: float = EXP_CE_CLAMP, reduction: str = "mean"):
        super().__init__(clamp=clamp, reduction=reduction)
        self.gamma = check_number("gamma", gamma, low=0)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        check_multilabel(logits, targets)
        z = _upcast(logits)
        y = _targets_like(targets, z)
        zc = _clamp_inclusive(z, self.clamp)
        negative = F.softplus(zc)  # -log(1 - p)
        if self.gamma != 0:
            negative = torch.sigmoid(zc).pow(self.gamma) * negative
        positive = torch.exp(torch.neg(zc))  # 1/p - 1
        return self._reduce(torch.lerp(negative, positive, y))

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


def _zlpr_stable(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Per-sample ``log(1 + sum (1-t) e^x) + log(1 + sum t e^-x)`` for any finite scores:
    ``logsumexp`` of ``x + log(1 - t)`` and ``-x + log(t)`` with an appended 0 column. A zero
    weight gives log-weight ``-inf`` (the entry drops out exactly: the -inf masking of the
    spec, never +-1e12); targets are constants, so no gradient passes through the logs."""
    return _zlpr_terms(x + torch.log1p(-t), torch.log(t) - x)


def _zlpr_direct(z: torch.Tensor, t: torch.Tensor, tau, hard: bool) -> torch.Tensor:
    """The same per-sample value summed directly, ``log1p(sum (1-t) e^x) + log1p(sum t e^-x)``
    with ``x = z / tau`` (``x = z`` when ``tau`` is None); autograd gives the gradient. Exact
    whenever no ``e^{+-x}`` overflows, and then the result is finite; an overflow shows up as
    inf or NaN (``0 * inf``) in the result, never as a wrong finite value.

    ``hard=True`` (0/1 targets): one exponential per element, ``E = exp(x (1 - 2t))``, and
    ``a = E (1 - t)``, ``b = E t``; these are bit for bit the ``a``, ``b`` of the general form
    (``x - 2x = -x`` exactly), which takes ``exp(x)`` and ``exp(-x)`` of every element."""
    x = z if tau is None else z / tau
    if hard:
        e = torch.exp(_signed(x, t))
        a, b = e * (1 - t), e * t
    else:
        a, b = (1 - t) * torch.exp(x), t * torch.exp(torch.neg(x))
    return torch.log1p(a.sum(dim=1)) + torch.log1p(b.sum(dim=1))


class _ZLPRFamily(Loss):
    """Shared forward of ``zlpr`` / ``fzlpr`` / ``soft_zlpr``: scores ``s = z / tau`` (``tau``
    only for fzlpr), ``weights = _weights(t)``; per sample
    ``log(1 + sum_c (1 - w_c) e^{s_c}) + log(1 + sum_c w_c e^{-s_c})``.

    The sums are first evaluated directly (a handful of element-wise ops), which is exact
    whenever no ``e^{+-s}`` overflows (|s| below ~88 in float32, ~709 in float64). Whether
    that happened is read from the reduced result in the same device-to-host transfer as the
    target check; if the result is not finite, the loss is evaluated again with the masked
    ``logsumexp`` form (``-inf`` masks, appended 0 column), which is finite for any finite
    logits. Both are the same formula; the second only rescales by the largest term. Why not
    always the ``logsumexp`` form: its forward+backward measured about 1.5x the plain
    element-wise reference of ``benchmarks/bench_losses_multilabel.py``, the direct sums
    about 0.9x.
    """

    decision_threshold_logit = 0.0
    _soft = False
    tau = None  # temperature of the scores z / tau (fzlpr)

    def _weights(self, t: torch.Tensor) -> torch.Tensor:
        return t

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        check_multilabel_shapes(logits, targets)
        stats = target_stats(targets, self._soft) if _VALUE_CHECKS[0] else None
        z = _upcast(logits)
        t = self._weights(_targets_like(targets, z))
        loss = self._reduce(_zlpr_direct(z, t, self.tau, hard=not self._soft))
        probe = loss if loss.ndim == 0 else loss.sum()
        if stats is None:
            (finite,) = to_host(probe)
        else:  # the target check and the overflow probe in one transfer
            lo, hi, finite = to_host(stats[1], stats[2], probe)
            judge_targets(stats[0], lo, hi, self._soft)
        if not math.isfinite(finite):  # an e^{+-s} overflowed (or the logits hold NaN)
            loss = self._reduce(_zlpr_stable(z if self.tau is None else z / self.tau, t))
        return loss


class ZLPRLoss(_ZLPRFamily):
    r"""ZLPR, "zero-bounded log-sum-exp & pairwise rank-based" loss (Su et al. 2022,
    arXiv:2208.02955).

    Per sample: ``l = log(1 + sum_{c: y_c=0} exp(z_c)) + log(1 + sum_{c: y_c=1} exp(-z_c))``.
    It pushes every positive logit above 0 and every negative below 0, so a label is predicted
    positive iff ``z > 0``.

    Evaluation: the sums are computed directly when no ``exp(+-z)`` overflows (exact, and the
    fast path); otherwise as ``logsumexp`` over the masked scores with one appended 0 column,
    masked entries set to ``-inf`` (not +-1e12, which overflows in float16). Which one ran is
    decided from the result itself, in the same single device-to-host transfer as the target
    check. The evaluation is in float32 or wider even under autocast (half-precision logits
    are cast up first).

    Defaults: none. Reduction: ``"mean"`` is the **sample mean** over B; ``"none"`` gives (B,).
    Targets must be hard (0/1).
    """

    def __init__(self, reduction: str = "mean"):
        super().__init__(reduction)


class SoftZLPRLoss(_ZLPRFamily):
    r"""ZLPR for soft targets t in [0, 1] (Su et al. 2022, soft-label form).

    Per sample: ``l = log(1 + sum_c (1 - t_c) exp(z_c)) + log(1 + sum_c t_c exp(-z_c))``,
    with ``t' = t (1 - eps) + eps / 2`` when ``label_smoothing = eps > 0``.

    Evaluated like ``zlpr`` (same code: direct sums when nothing overflows, else a stable
    ``logsumexp`` of ``z + log(1 - t)`` and ``-z + log(t)`` with an appended 0 column, where a
    zero weight gives log-weight ``-inf`` and drops out exactly), so on hard targets this
    equals ``zlpr`` bit for bit (value and gradient) whenever no ``exp(+-z)`` overflows; where
    one does, the two agree to rounding (``zlpr`` only evaluates ``exp`` of the signed score
    ``z (1 - 2y)``, so it keeps the direct sums in cases where this one switches to the stable
    form). Half-precision logits are cast up to float32.
    Targets are constants (no gradient to them).

    Defaults: ``label_smoothing=0.0``. Reduction: ``"mean"`` is the **sample mean** over B.
    """

    _soft = True

    def __init__(self, label_smoothing: float = 0.0, reduction: str = "mean"):
        super().__init__(reduction)
        self.label_smoothing = check_number("label_smoothing", label_smoothing, low=0, high=1)

    def _weights(self, t: torch.Tensor) -> torch.Tensor:
        return _smooth(t, self.label_smoothing)

    def extra_repr(self) -> str:
        return f"label_smoothing={self.label_smoothing}, {super().extra_repr()}"


class FocalZLPRLoss(ZLPRLoss):
    r"""Focal ZLPR (Hanif et al., Bioengineering 2025, 12(6):593): ZLPR on temperature-scaled
    scores, ``l = zlpr(z / tau)`` per sample.

    A small tau sharpens the log-sum-exp toward the hardest positive/negative. ``tau=0.2``
    comes from public implementations; the paper's own value was not available, so tau is a
    parameter. The decision rule is unchanged (z > 0). Evaluated exactly as ``zlpr`` on the
    scaled scores (the direct sums overflow for |z| / tau above ~88 in float32, where the
    stable form takes over).

    Defaults: ``tau=0.2``. Reduction: ``"mean"`` is the **sample mean** over B.
    Targets must be hard (0/1).
    """

    def __init__(self, tau: float = 0.2, reduction: str = "mean"):
        super().__init__(reduction)
        self.tau = check_number("tau", tau, low=0, low_open=True)

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
