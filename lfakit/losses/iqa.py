"""No-reference IQA losses (spec: ``docs/losses.md`` section C).

Every loss here is called as ``loss(pred, mos, std=None)``:

* ``pred``: the model's quality predictions, shape (N,) or (N, 1), a floating tensor (the raw
  output of the regression head: nothing is squashed);
* ``mos``: mean opinion scores, shape (N,) or (N, 1), with the same N (no broadcasting: an
  (N, 1) prediction against an (N,) target is flattened, never expanded to N x N);
* ``std``: optional per-image standard deviation of the opinion scores, shape like ``mos``.
  Only ``fidelity`` uses it; the other losses accept it (so one training loop can call every
  loss the same way) and ignore it after checking its shape.

Targets (``mos``, ``std``) are constants: no gradient flows to them. Half-precision predictions
(float16/bfloat16, e.g. under ``torch.autocast``) are cast up to float32 before any arithmetic,
so the loss is float32 for them; float64 stays float64.

Reduction conventions (``reduction="none" | "mean" | "sum"``):

* point-wise losses (``l1``, ``l2``): ``"none"`` returns the (N,) per-image losses, ``"mean"``
  their mean (the batch loss), ``"sum"`` their sum -- as ``F.l1_loss`` / ``F.mse_loss``;
* pairwise losses (``rank``, ``rank_mos``, ``fidelity``): the terms are the N(N-1)/2 unordered pairs
  ``i < j``, in the order of :func:`pair_indices` (row-major upper triangle, as
  ``torch.triu_indices(N, N, 1)``). ``"none"`` returns that pair vector, ``"mean"`` the mean
  over pairs (the batch loss), ``"sum"`` the sum over pairs;
* set-wise losses (``plcc``, ``srcc``, ``norm_in_norm``): the whole batch is **one** term
  (a correlation or a normalised norm has no per-image part), so every reduction returns the
  same 0-dim scalar: ``"none"`` that single term, ``"mean"`` / ``"sum"`` its mean / sum.

Small batches and constant inputs: every loss except ``l1`` / ``l2`` needs N >= 2 and raises
``ValueError`` otherwise. A batch whose MOS are all equal carries no ranking or correlation
information; the set-wise losses (whose value is undefined there) raise ``ValueError``
(usually a sign that the wrong column was loaded), the pairwise losses are defined and return
their value. Constant *predictions* happen legitimately (e.g. at initialisation), so the
set-wise losses add a documented ``eps`` (default 1e-8) inside the prediction-side norm instead
of failing: the loss is then finite with a finite (large) gradient.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from lfakit.errors import ParameterError
from lfakit.losses._base import (
    _VALUE_CHECKS,
    Loss,
    check_number,
    to_host,
)

__all__ = [
    "L1Loss",
    "L2Loss",
    "PLCCLoss",
    "SRCCLoss",
    "RankLoss",
    "MOSRankLoss",
    "FidelityLoss",
    "NormInNormLoss",
    "pair_indices",
    "soft_rank",
    "average_rank",
]


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------

def _as_vector(x: torch.Tensor, name: str) -> torch.Tensor:
    """(N,) or (N, 1) -> (N,); anything else is an error (never a silent broadcast)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim == 1:
        return x
    if x.ndim == 2 and x.shape[1] == 1:
        return x[:, 0]
    raise ValueError(
        f"{name} must have shape (N,) or (N, 1), got {tuple(x.shape)} "
        "(IQA losses take one score per image)"
    )


def _prepare(pred, mos, std=None, *, min_n: int = 1, varying: str | None = None,
             pred_std=None):
    """Check and flatten the inputs; return float pred (upcast from half), constant mos/std.

    Value checks (MOS finite; MOS not all equal when ``varying`` names the quantity that would
    be undefined; ``std`` finite and >= 0; ``pred_std``, an already flattened tensor, finite
    and > 0) read ``torch.aminmax`` of each of them in one device-to-host transfer per call;
    they are skipped with the value checks off (:func:`lfakit.losses.set_value_checks`).
    """
    p = _as_vector(pred, "pred")
    if not p.is_floating_point():
        raise TypeError(f"pred must be a floating tensor, got {p.dtype}")
    if p.dtype in (torch.float16, torch.bfloat16):
        p = p.float()
    q = _as_vector(mos, "mos")
    n = p.shape[0]
    if q.shape[0] != n:
        raise ValueError(
            f"pred has {p.shape[0]} scores but mos has {q.shape[0]}: they must match one to one"
        )
    if n < min_n:
        raise ValueError(f"this loss needs a batch of at least {min_n} images, got N={n}")
    q = _constant_like(q, p)
    s = None
    if std is not None:
        s = _as_vector(std, "std")
        if s.shape[0] != n:
            raise ValueError(f"std has {s.shape[0]} entries but mos has {n}")
        s = _constant_like(s, p)
    if n == 0 or not _VALUE_CHECKS[0]:
        return p, q, s
    stats = [*torch.aminmax(q)]
    if s is not None:
        stats += torch.aminmax(s)
    if pred_std is not None:
        stats += torch.aminmax(pred_std.detach())
    stats = to_host(*stats)
    lo, hi = stats[0], stats[1]
    if not (math.isfinite(lo) and math.isfinite(hi)):  # NaN propagates into both
        raise ValueError("mos contains NaN or inf")
    if varying is not None and not hi > lo:
        _constant_mos(varying)
    if s is not None and not (stats[2] >= 0 and math.isfinite(stats[3])):
        raise ValueError("std must be finite and >= 0")
    if pred_std is not None and not (stats[-2] > 0 and math.isfinite(stats[-1])):
        raise ValueError("pred_std must be finite and > 0")
    return p, q, s


def _constant_like(x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """``x`` as a constant (detached) tensor of ``p``'s dtype and device; no copy if it is."""
    if x.requires_grad:
        x = x.detach()
    if x.dtype != p.dtype or x.device != p.device:
        x = x.to(device=p.device, dtype=p.dtype)
    return x


def _constant_mos(what: str) -> None:
    raise ValueError(
        f"all MOS in this batch are equal: {what} is undefined for a constant target "
        "(check that the right score column was loaded)"
    )


def _pearson(a: torch.Tensor, b: torch.Tensor, eps: float) -> torch.Tensor:
    """Pearson correlation of ``a`` (predictions) and ``b`` (constant, not constant-valued).

    ``rho = <a_c, b_c> / (sqrt(|a_c|^2 + eps) |b_c|)`` with ``x_c = x - mean(x)``; elementwise
    products and sums only (no matmul, which autocast would run in half precision).
    """
    ac = a - a.mean()
    bc = b - b.mean()
    return (ac * bc).sum() / (torch.sqrt((ac * ac).sum() + eps) * torch.sqrt((bc * bc).sum()))


def pair_indices(n: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Index tensors ``(i, j)`` of the N(N-1)/2 pairs ``i < j``, row-major.

    This is the order of the ``reduction="none"`` output of the pairwise losses
    (``rank``, ``fidelity``): entry ``k`` is the pair ``(i[k], j[k])``.
    """
    ij = torch.triu_indices(n, n, offset=1, device=device)
    return ij[0], ij[1]


def soft_rank(x: torch.Tensor, temperature: float) -> torch.Tensor:
    """Differentiable ranks ``r_i = 1/2 + sum_j sigmoid((x_i - x_j) / T)`` of a vector.

    The sum includes ``j = i`` (contributing 1/2), so as ``T -> 0`` the result tends to the
    1-based ranks with ties averaged (:func:`average_rank`). O(N^2) time and memory.
    """
    return 0.5 + torch.sigmoid((x[:, None] - x[None, :]) / temperature).sum(dim=1)


def average_rank(x: torch.Tensor) -> torch.Tensor:
    """1-based ranks with ties averaged (``scipy.stats.rankdata(method="average")``).

    ``r_i = 1/2 + #{j: x_j < x_i} + #{j: x_j = x_i}/2`` (``j = i`` included); not
    differentiable (piecewise constant), used for the targets.
    """
    d = x[:, None] - x[None, :]
    return 0.5 + (d > 0).to(x.dtype).sum(dim=1) + 0.5 * (d == 0).to(x.dtype).sum(dim=1)


# --------------------------------------------------------------------------------------------
# point-wise losses
# --------------------------------------------------------------------------------------------
class _PointwiseLoss(Loss):
    """Shared forward of ``l1`` / ``l2``: the checked, flattened (N,) vectors into
    ``torch.nn.functional``'s loss (``_fn``)."""

    _fn = None  # F.l1_loss or F.mse_loss

    def forward(self, pred: torch.Tensor, mos: torch.Tensor, std=None) -> torch.Tensor:
        p, q, _ = _prepare(pred, mos, std)
        return self._fn(p, q, reduction=self.reduction)


class L1Loss(_PointwiseLoss):
    r"""Mean absolute error between predicted scores and MOS.

    Per image: ``l_i = |pred_i - mos_i|``; computed by ``F.l1_loss`` on the flattened (N,)
    vectors.

    Reduction: ``"mean"`` averages over the N images, ``"sum"`` sums, ``"none"`` gives (N,).
    ``std`` is accepted and ignored. N = 1 is allowed.

    Args:
        reduction: "mean" | "sum" | "none".
    """

    _fn = staticmethod(F.l1_loss)


class L2Loss(_PointwiseLoss):
    r"""Mean squared error between predicted scores and MOS.

    Per image: ``l_i = (pred_i - mos_i)^2``; computed by ``F.mse_loss`` on the flattened (N,)
    vectors.

    Reduction: ``"mean"`` averages over the N images, ``"sum"`` sums, ``"none"`` gives (N,).
    ``std`` is accepted and ignored. N = 1 is allowed.

    Args:
        reduction: "mean" | "sum" | "none".
    """

    _fn = staticmethod(F.mse_loss)


# --------------------------------------------------------------------------------------------
# set-wise losses
# --------------------------------------------------------------------------------------------
class PLCCLoss(Loss):
    r"""One minus the Pearson linear correlation of predictions and MOS over the batch.

    ``loss = 1 - rho(pred, mos)`` in [0, 2] (default), or ``(1 - rho) / 2`` in [0, 1] with
    ``halved=True``, the form one popular IQA toolbox returns ("normalised to [0, 1]"); the two
    differ by exactly a factor 2 (same minimiser, half the gradient). This is also what the
    KonIQ-10k IQA study calls its "SRCC loss": its formula is the Pearson correlation of the raw
    scores, not of ranks (the rank version is ``srcc``).

    ``rho = <a, b> / (sqrt(|a|^2 + eps) |b|)`` with ``a = pred - mean(pred)``,
    ``b = mos - mean(mos)``; ``eps`` keeps the loss differentiable for constant predictions
    (it changes rho by a relative ~eps / (2 |a|^2)); ``eps=0`` gives the exact correlation.

    Set-wise: one term per batch, so every reduction returns the same 0-dim scalar.
    Needs N >= 2 and MOS that are not all equal (``ValueError`` otherwise). ``std`` is ignored.

    Args:
        halved: return ``(1 - rho) / 2`` instead of ``1 - rho``.
        eps: >= 0, added to the squared norm of the centred predictions.
        reduction: "mean" | "sum" | "none" (all identical, see above).
    """

    def __init__(self, halved: bool = False, eps: float = 1e-8, reduction: str = "mean"):
        super().__init__(reduction)
        if not isinstance(halved, bool):
            raise ParameterError(f"halved must be True or False, got {halved!r}")
        self.halved = halved
        self.eps = check_number("eps", eps, low=0)

    def forward(self, pred: torch.Tensor, mos: torch.Tensor, std=None) -> torch.Tensor:
        p, q, _ = _prepare(pred, mos, std, min_n=2, varying="the Pearson correlation")
        loss = 1.0 - _pearson(p, q, self.eps)
        return 0.5 * loss if self.halved else loss

    def extra_repr(self) -> str:
        return f"halved={self.halved}, eps={self.eps}, {super().extra_repr()}"


class SRCCLoss(Loss):
    r"""One minus a differentiable Spearman correlation over the batch.

    ``loss = 1 - rho(soft_rank(pred), rank(mos))`` where
    ``soft_rank(pred)_i = 1/2 + sum_j sigmoid((pred_i - pred_j) / T)`` (:func:`soft_rank`,
    sum over all j including i), ``rank(mos)`` are the exact 1-based ranks of the MOS with ties
    averaged (:func:`average_rank`), and ``rho`` is the Pearson correlation with the same
    ``eps`` convention as ``plcc``. As ``T -> 0`` the soft ranks tend to the average ranks of
    the predictions, so the loss tends to ``1 - Spearman(pred, mos)`` (with ties averaged on
    both sides, as ``scipy.stats.spearmanr``); the gap shrinks like ``exp(-gap / T)`` where
    ``gap`` is the smallest distance between two distinct predictions.

    The temperature is in the **units of the predictions**: pick it well below the typical
    distance between predictions of images with different MOS (default 0.1 suits MOS on a
    1-5 scale; for a 0-100 scale use a proportionally larger value, e.g. 2). Too small a T
    saturates the sigmoids and the gradient vanishes. O(N^2) time and memory.

    Set-wise: one term per batch, so every reduction returns the same 0-dim scalar.
    Needs N >= 2 and MOS that are not all equal (``ValueError`` otherwise). ``std`` is ignored.

    Args:
        temperature: T > 0.
        eps: >= 0, added to the squared norm of the centred soft ranks.
        reduction: "mean" | "sum" | "none" (all identical, see above).
    """

    def __init__(self, temperature: float = 0.1, eps: float = 1e-8, reduction: str = "mean"):
        super().__init__(reduction)
        self.temperature = check_number("temperature", temperature, low=0, low_open=True)
        self.eps = check_number("eps", eps, low=0)

    def forward(self, pred: torch.Tensor, mos: torch.Tensor, std=None) -> torch.Tensor:
        p, q, _ = _prepare(pred, mos, std, min_n=2, varying="the Spearman correlation")
        return 1.0 - _pearson(soft_rank(p, self.temperature), average_rank(q), self.eps)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, eps={self.eps}, {super().extra_repr()}"


class NormInNormLoss(Loss):
    r"""Norm-in-Norm loss (Li, Jiang, Jiang: "Norm-in-Norm Loss with Faster Convergence and
    Better Performance for Image Quality Assessment", ACM MM 2020).

    Both score vectors are centred and divided by their ``q``-norm,
    ``a = (pred - mean(pred)) / (sum|pred - mean(pred)|^q + eps)^(1/q)`` and
    ``b = (mos - mean(mos)) / ||mos - mean(mos)||_q``, then

    ``loss = (||a - b||_p / S)^p``, ``S = 2^max(1, 1/q) * N^max(0, 1/p - 1/q)``,

    evaluated as ``sum|a - b|^p / S^p`` (the same value, without the infinite derivative of
    ``x^(1/p)`` at 0). ``S`` is the largest value ``||a - b||_p`` can take, so the loss lies in
    [0, 1]. With ``p = q = 2`` the loss equals ``(1 - rho) / 2`` (rho the Pearson correlation):
    ``|a - b|^2 = 2 - 2 rho`` and ``S = 2``. Defaults ``p=1, q=2`` are the paper's choice.

    ``eps`` (default 1e-8, as the authors' code) keeps the loss defined for constant
    predictions; ``eps=0`` gives the exact formula. Only the norm term of the formula sheet is
    implemented (no extra regularisation term).

    Set-wise: one term per batch, so every reduction returns the same 0-dim scalar.
    Needs N >= 2 and MOS that are not all equal (``ValueError`` otherwise). ``std`` is ignored.

    Args:
        p: >= 1, exponent of the error norm (1: L1-like, robust; 2: PLCC-like).
        q: >= 1, exponent of the normalising norm.
        eps: >= 0, added to ``sum |a_c|^q`` of the centred predictions before the 1/q power.
        reduction: "mean" | "sum" | "none" (all identical, see above).
    """

    def __init__(self, p: float = 1.0, q: float = 2.0, eps: float = 1e-8, reduction: str = "mean"):
        super().__init__(reduction)
        self.p = check_number("p", p, low=1)
        self.q = check_number("q", q, low=1)
        self.eps = check_number("eps", eps, low=0)

    def scale(self, n: int) -> float:
        """``S = 2^max(1, 1/q) * N^max(0, 1/p - 1/q)`` for a batch of ``n`` images."""
        return 2.0 ** max(1.0, 1.0 / self.q) * n ** max(0.0, 1.0 / self.p - 1.0 / self.q)

    def forward(self, pred: torch.Tensor, mos: torch.Tensor, std=None) -> torch.Tensor:
        p, q, _ = _prepare(pred, mos, std, min_n=2, varying="the normalised MOS")
        a = p - p.mean()
        # (sum |a|^q + eps)^(1/q) is the q-norm of a with one more entry eps^(1/q)
        padded = F.pad(a, (0, 1), value=self.eps ** (1.0 / self.q)) if self.eps else a
        a = a / torch.linalg.vector_norm(padded, ord=self.q)
        b = q - q.mean()
        b = b / torch.linalg.vector_norm(b, ord=self.q)
        if self.p == 1.0:  # sum |a - b| (its derivative at a = b is 0, as that of abs)
            return torch.linalg.vector_norm(a - b, ord=1) / self.scale(p.shape[0])
        return ((a - b).abs() ** self.p).sum() / self.scale(p.shape[0]) ** self.p

    def extra_repr(self) -> str:
        return f"p={self.p}, q={self.q}, eps={self.eps}, {super().extra_repr()}"


# --------------------------------------------------------------------------------------------
# pairwise losses
# --------------------------------------------------------------------------------------------
class RankLoss(Loss):
    r"""Pairwise hinge ranking loss (the KonIQ-10k IQA study's "Rank loss").

    Per pair: ``l_ij = max(0, |pred_i - pred_j| - e_ij (mos_i - mos_j))`` with ``e_ij = 1``
    if ``pred_i >= pred_j`` else ``-1``. Equivalently ``l_ij = max(0, e_ij (dpred - dmos))``:
    zero when the predicted order is right and the predicted gap does not exceed the MOS gap;
    ``|dpred| + |dmos|`` when the order is wrong. ``e_ij`` is a constant (no gradient).

    Pairs: the N(N-1)/2 unordered pairs ``i < j`` (for distinct predictions ``l_ij = l_ji``,
    so this equals the mean over all ordered pairs ``i != j``; at a tie ``pred_i = pred_j``
    the rule ``e_ij = 1`` is applied with ``i < j``). Computed on the N x N difference
    matrices at once.

    Reduction: ``"mean"`` (the batch loss) averages over the pairs, ``"sum"`` sums,
    ``"none"`` returns the pair vector in :func:`pair_indices` order.
    Needs N >= 2. ``std`` is ignored.

    Args:
        reduction: "mean" | "sum" | "none".
    """

    def forward(self, pred: torch.Tensor, mos: torch.Tensor, std=None) -> torch.Tensor:
        p, q, _ = _prepare(pred, mos, std, min_n=2)
        i, j = pair_indices(p.shape[0], device=p.device)
        dp = p[i] - p[j]
        dq = q[i] - q[j]
        e = torch.where(dp.detach() >= 0, 1.0, -1.0).to(p.dtype)
        return self._reduce(torch.relu(dp.abs() - e * dq))


class MOSRankLoss(Loss):
    r"""Pairwise ranking (monotonicity) loss with the sign taken from the MOS: the field's rank
    loss (LinearityIQA's monotonicity regulariser; pyiqa's ``RankLoss``, which cites it).

    Per pair ``i < j``: ``t_ij = max(0, -sign(mos_i - mos_j) (pred_i - pred_j))``, the predicted
    gap of a pair ordered against its MOS, 0 for a pair in the right order. A pair with tied MOS
    is masked: ``sign(0) = 0``, so its term is exactly 0 with no gradient, whatever the
    predictions. With ``scaled=True`` (default, as both references) every term is divided by
    ``1 + max_kl t_kl``, the largest term of the batch:

    ``loss = mean_{i<j} t_ij / (1 + max t)``.

    How it differs from ``rank`` (the KonIQ-10k IQA study's formula): there the sign comes from
    the *predictions* and the MOS gap is subtracted, so a correctly ordered pair still pays for a
    predicted gap larger than its MOS gap, and a tied-MOS pair pays ``|pred_i - pred_j|``. Here
    the sign comes from the MOS and only the order counts: 0 for any prediction in the MOS order
    (compressed or stretched), the predicted gap for a misordered pair, nothing for tied MOS.
    Like ``rank`` it has no gradient at exactly constant predictions (``relu'(0) = 0``); it
    reads only prediction differences, and constant predictions are a minimiser (value 0).
    LinearityIQA adds it only as an optional regulariser (weight 0.1) beside its main loss;
    trained alone it only orders the predictions, with no pull towards the MOS scale.

    Reference rule (LinearityIQA ``IQAloss.py``, ``monotonicity_regularization``): on the N x N
    matrix ``r_ij = relu((pred_i - pred_j) sign(mos_j - mos_i))``, ``sum(r) / (N (N - 1)) /
    (1 + max r)``, the scale not detached by default (its ``detach=False``). ``r`` is symmetric,
    so this is the mean over the N(N-1)/2 unordered pairs used here, tied pairs counted as 0
    terms in the denominator. pyiqa (``pyiqa/losses/iqa_losses.py``, ``RankLoss``) takes the
    mean over all N^2 entries (the zero diagonal included) and always detaches the scale: its
    value is ``(N - 1) / N`` times this loss with ``detach_scale=True``. Neither has a margin.

    Reduction: ``"mean"`` (the batch loss) averages over the N(N-1)/2 pairs (tied pairs
    included, as zeros), ``"sum"`` sums, ``"none"`` returns the scaled pair vector in
    :func:`pair_indices` order. Needs N >= 2; a batch with all MOS equal gives 0. ``std`` is
    ignored.

    Args:
        scaled: divide by ``1 + max t`` (both references); False gives the plain hinge mean.
        detach_scale: treat ``1 + max t`` as a constant (pyiqa); False (default, LinearityIQA's
            default) lets the gradient flow through the max too. Ignored when not ``scaled``.
        reduction: "mean" | "sum" | "none".
    """

    def __init__(self, scaled: bool = True, detach_scale: bool = False, reduction: str = "mean"):
        super().__init__(reduction)
        for name, value in (("scaled", scaled), ("detach_scale", detach_scale)):
            if not isinstance(value, bool):
                raise ParameterError(f"{name} must be True or False, got {value!r}")
        self.scaled = scaled
        self.detach_scale = detach_scale

    def forward(self, pred: torch.Tensor, mos: torch.Tensor, std=None) -> torch.Tensor:
        p, q, _ = _prepare(pred, mos, std, min_n=2)
        i, j = pair_indices(p.shape[0], device=p.device)
        # sign(dmos) is 0 for a tied pair: its term is 0 with no gradient (masked)
        terms = torch.relu(-torch.sign(q[i] - q[j]) * (p[i] - p[j]))
        if self.scaled:
            top = terms.detach().amax() if self.detach_scale else terms.amax()
            terms = terms / (1.0 + top)
        return self._reduce(terms)

    def extra_repr(self) -> str:
        return f"scaled={self.scaled}, detach_scale={self.detach_scale}, {super().extra_repr()}"


class FidelityLoss(Loss):
    r"""Pairwise fidelity loss under a Thurstone (Gaussian) model of the scores.

    Per pair: ``l_ij = 1 - sqrt(p_ij phat_ij + eps) - sqrt((1 - p_ij)(1 - phat_ij) + eps)``

    * predicted preference ``phat_ij = Phi((pred_i - pred_j) / sqrt(sig_i^2 + sig_j^2))``,
      ``sig = sigma`` (default 1) for every image, or the per-image ``pred_std`` passed to
      ``forward`` (e.g. a predicted uncertainty; it receives gradients);
    * target preference ``p_ij = Phi((mos_i - mos_j) / sqrt(s_i^2 + s_j^2))`` when the opinion
      std ``s = std`` is given; without it (or for a pair with ``s_i = s_j = 0``) the hard
      label ``1`` if ``mos_i > mos_j``, ``0.5`` if equal, ``0`` if smaller.

    ``1 - phat`` and ``1 - p`` are evaluated as ``Phi(-x)`` (no cancellation). ``eps``
    keeps the gradient finite where a product under a root is 0; it shifts the loss down by at
    most about ``sqrt(eps)`` (1e-4 for the default: a hard label ``p = 1`` predicted with
    ``phat -> 1`` gives ``1 - sqrt(1 + eps) - sqrt(eps)``), so it can be slightly negative.

    Pairs: the N(N-1)/2 unordered pairs ``i < j``; ``l_ij = l_ji`` exactly (swapping i and j
    maps p to 1 - p and phat to 1 - phat), so this equals the mean over all ordered pairs
    ``i != j``.

    Reduction: ``"mean"`` (the batch loss) averages over the pairs, ``"sum"`` sums,
    ``"none"`` returns the pair vector in :func:`pair_indices` order. Needs N >= 2.

    Args:
        sigma: > 0, the fixed predicted std used when ``pred_std`` is not passed.
        eps: >= 0, added under both square roots.
        reduction: "mean" | "sum" | "none".
    """

    def __init__(self, sigma: float = 1.0, eps: float = 1e-8, reduction: str = "mean"):
        super().__init__(reduction)
        self.sigma = check_number("sigma", sigma, low=0, low_open=True)
        self.eps = check_number("eps", eps, low=0)

    def forward(
        self, pred: torch.Tensor, mos: torch.Tensor, std=None, pred_std=None
    ) -> torch.Tensor:
        sg = None
        if pred_std is not None:
            sg = _as_vector(pred_std, "pred_std")
            pv = _as_vector(pred, "pred")
            if sg.shape[0] != pv.shape[0]:
                raise ValueError(f"pred_std has {sg.shape[0]} entries but pred has {pv.shape[0]}")
            dtype = torch.float32 if pv.dtype in (torch.float16, torch.bfloat16) else pv.dtype
            if pv.is_floating_point():  # (a non-float pred is rejected by _prepare)
                sg = sg.to(dtype)  # checked in the dtype it is used in
        p, q, s = _prepare(pred, mos, std, min_n=2, pred_std=sg)
        i, j = pair_indices(p.shape[0], device=p.device)
        if sg is None:
            den = math.sqrt(2.0) * self.sigma
        else:
            den = torch.sqrt(sg[i] ** 2 + sg[j] ** 2)
        x = (p[i] - p[j]) / den
        phat, phat_c = torch.special.ndtr(x), torch.special.ndtr(-x)

        dq = q[i] - q[j]
        hard = 0.5 * (torch.sign(dq) + 1.0)  # 1 / 0.5 / 0
        if s is None:
            pt, pt_c = hard, 1.0 - hard
        else:
            sden = torch.sqrt(s[i] ** 2 + s[j] ** 2)
            ok = sden > 0
            z = dq / torch.where(ok, sden, torch.ones_like(sden))
            pt = torch.where(ok, torch.special.ndtr(z), hard)
            pt_c = torch.where(ok, torch.special.ndtr(-z), 1.0 - hard)

        terms = 1.0 - torch.sqrt(pt * phat + self.eps) - torch.sqrt(pt_c * phat_c + self.eps)
        return self._reduce(terms)

    def extra_repr(self) -> str:
        return f"sigma={self.sigma}, eps={self.eps}, {super().extra_repr()}"
