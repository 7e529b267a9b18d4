"""Membership-inference attacks from saved outputs (logits and per-example losses); no torch.

Protocol (:func:`make_protocol`, :class:`Protocol`)
---------------------------------------------------
A pool of ``N`` labelled examples. The **target** model trains on ``members``: exactly
``floor(N/2)`` pool points drawn with the seed; the rest are the non-members (equal halves when
``N`` is even). ``R`` **reference** (shadow) models train with the same loss and recipe, model
``r`` on the pool points where ``ref_in[r]`` is True. ``ref_in`` follows the LiRA convention
(Carlini et al. 2022, their training code): for every point, a random permutation of the ``R``
models, the point IN for the first ``R/2`` -- so every point is IN for exactly half of the
reference models (each model's training set is then about, not exactly, ``N/2``). For odd ``R``
a random ``floor(N/2)`` of the points are IN for ``(R+1)/2`` models and the others for
``(R-1)/2`` (``R = 1``: one model on exactly ``floor(N/2)`` points). ``ref_in`` is drawn from its
own random stream (``SeedSequence(seed).spawn``), independently of the target's split.
Any of the ``R + 1`` models can be the target, the other ``R`` its references
(:func:`attack_targets`, leave-one-out as both reference codes do).

Queries
-------
Each model may be queried ``Q`` times per example (augmented copies: identity, mirror, shifts):
logits (N, Q, K) for one model, (R, N, Q, K) for the references; (N, K) and (R, N, K) are one
query and give the same scores as before queries existed. How each attack uses the queries:

* ``loss``: the model's own training loss of the first query (the identity);
* ``confidence``: the true-class probability averaged over queries (kit's choice; LiRA's
  ``plot.py`` likewise averages its global-threshold statistic over the queries);
* ``shadow``: each feature averaged over queries (kit's choice);
* ``lira_*``: one ``phi`` **per query** and one Gaussian per (example, query) fitted across the
  reference models; the per-query log-likelihood ratios (online) or test statistics (offline)
  are **averaged over the queries** -- as ``research/mi_lira_2021`` does (``score.py`` keeps the
  augmentation axis, ``plot.py`` takes ``score.mean(1)`` over it);
* ``rmia``: one ``LR(x, z)`` per query, each thresholded at ``gamma``, then a **majority vote**
  over the queries per pair ``(x, z)`` (a tie is "no": ``torch.mode`` of the paper code returns
  the smaller value), as the RMIA paper code (``research/2024_rmia/main.py``,
  ``aggregate_signals``) does.

Attacks
-------
Every attack returns one membership score per pool example, **higher = more likely a member**.

* ``loss`` (Yeom et al. 2018, "Privacy risk in machine learning: analyzing the connection to
  overfitting"): ``score = -loss(x)``, the model's own per-example training loss.
* ``confidence`` (Yeom et al. 2018; Salem et al. 2019): ``score = p_y(x)``, the softmax
  probability of the true class.
* ``shadow`` (Shokri et al. 2017, "Membership inference attacks against machine learning
  models"): an attack classifier trained on the reference (shadow) models' outputs labelled
  IN/OUT, applied to the target's outputs; see :func:`shadow_features` and :func:`shadow_attack`.
  Simplification: one attack model for all classes (Shokri et al. train one per class); the
  true-class features make it label-aware.
* ``lira_online`` / ``lira_offline`` (Carlini et al. 2022, "Membership Inference Attacks From
  First Principles", LiRA): statistic ``phi = log(p_y / (1 - p_y))`` per query (the logit-scaled
  true-class confidence of ``research/mi_lira_2021/score.py``), Gaussians fitted per example and
  query to the reference models' ``phi`` where IN and where OUT; see :func:`lira` for the
  conventions (centre, fixed variance, one- or two-sided offline test), each a parameter.
* ``rmia`` (Zarifzadeh et al. 2024, "Low-Cost High-Power Membership Inference Attacks"):
  ``ratio(x) = p(x | theta_target) / Pr(x)`` with ``Pr(x)`` a trimmed mean over reference models
  of ``p(x | theta_ref)``, and ``score(x) = Pr_z[ratio(x) / ratio(z) > gamma]`` over a population
  of points ``z``; see :func:`rmia` and :func:`rmia_signal`. The defaults are the paper's CIFAR-10
  configurations (``research/2024_rmia/attack_configs/cifar10/rmia_*.yaml`` at ml_privacy_meter
  commit d327341): ``gamma = 2``, ``proportiontocut = 0.2``, the signal ``taylor-soft-margin``
  (temperature 2, margin 0.6, Taylor order 4), the population the target's non-members; offline
  ``a`` tuned on a paired model as ML Privacy Meter's ``tune_offline_a`` (:func:`tune_offline_a`).

Thresholds (:func:`choose_threshold`) are chosen on the **reference models' own outputs**
(:func:`reference_scores`, leave-one-out: reference model ``r`` is attacked with the other
``R - 1`` as its references, labelled with ``ref_in[r]``), never on the target's members.
:func:`run_attacks` runs a set of attacks on one target and returns :class:`AttackResult` s;
:class:`AttackOptions` holds every convention.

Minimum reference models (:data:`MIN_REFS`): ``loss`` and ``confidence`` need none (with
``R = 0`` there is no reference data, and their threshold is NaN); ``shadow``, ``lira_online``,
``lira_offline`` and ``rmia`` need ``R >= 2`` (the leave-one-out scoring of the references must
keep at least one model); offline RMIA with a tuned ``a`` needs ``R >= 4`` (a paired model held
out, and the leave-one-out). With the balanced protocol and ``R >= 4``, every example keeps at
least one IN and one OUT model in the leave-one-out; with ``R = 2`` (and for the target with
``R = 1``) an example misses its IN or OUT models there, and the documented global fall-backs
are used.

Everything here is written by hand on numpy / scipy: no library implements LiRA or RMIA on saved
outputs. The reference rules the tests compare against are transcribed in
``tests/test_attacks_reference.py``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace

import numpy as np
from scipy.special import logsumexp

from lfakit.errors import ParameterError

__all__ = [
    "ATTACKS",
    "MIN_REFS",
    "Protocol",
    "make_protocol",
    "true_class_probability",
    "true_class_logit_confidence",
    "rmia_signal",
    "reference_use",
    "tune_offline_a",
    "AttackOptions",
    "attack_targets",
    "loss_attack",
    "confidence_attack",
    "lira",
    "rmia",
    "shadow_features",
    "shadow_attack",
    "choose_threshold",
    "attack_scores",
    "reference_scores",
    "AttackResult",
    "run_attacks",
]

ATTACKS = ("loss", "confidence", "shadow", "lira_online", "lira_offline", "rmia")
MIN_REFS = {"loss": 0, "confidence": 0, "shadow": 2, "lira_online": 2, "lira_offline": 2, "rmia": 2}
MIN_STD = 1e-6  # floor on LiRA's fitted standard deviations (a constant phi would give 0)
_TINY = np.finfo(np.float64).tiny  # floor on RMIA's probabilities before the log


# --------------------------------------------------------------------------- validation
def _to_numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor, without importing torch
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _is_int(x) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_))


def _bool_array(x, name: str, ndim: int) -> np.ndarray:
    a = _to_numpy(x)
    if a.ndim != ndim:
        raise ParameterError(f"{name} must be {ndim}-D, got shape {a.shape}")
    if a.dtype != bool:
        if a.size and not np.isin(a, (0, 1)).all():
            raise ParameterError(f"{name} must be boolean (or 0/1)")
        a = a.astype(bool)
    return a


def _float_array(x, name: str, ndim: int) -> np.ndarray:
    a = _to_numpy(x).astype(np.float64)
    if a.ndim != ndim:
        raise ParameterError(f"{name} must be {ndim}-D, got shape {a.shape}")
    if not np.isfinite(a).all():
        raise ParameterError(f"{name} holds NaN or infinite values")
    return a


# --------------------------------------------------------------------------- protocol
@dataclass
class Protocol:
    """The membership split: ``members`` bool (N,) is the target's training set; reference
    model ``r`` trains on ``ref_in[r]`` (bool (R, N); shape (0, N) when there are none)."""

    members: np.ndarray
    ref_in: np.ndarray
    seed: int | None = None

    def __post_init__(self):
        self.members = _bool_array(self.members, "members", 1)
        ref_in = _to_numpy(self.ref_in)
        if ref_in.size == 0:
            ref_in = np.zeros((0, len(self.members)), dtype=bool)
        self.ref_in = _bool_array(ref_in, "ref_in", 2)
        if self.ref_in.shape[1] != len(self.members):
            raise ParameterError(f"ref_in has {self.ref_in.shape[1]} columns but the pool has {len(self.members)} points")

    @property
    def n_pool(self) -> int:
        return len(self.members)

    @property
    def non_members(self) -> np.ndarray:
        return ~self.members

    @property
    def n_ref(self) -> int:
        return self.ref_in.shape[0]


def make_protocol(n_pool: int, n_ref: int, seed: int) -> Protocol:
    """Target members: exactly ``floor(n_pool / 2)`` points drawn with ``seed``; reference IN
    sets by the LiRA per-point permutation (each point IN for exactly ``n_ref / 2`` models when
    ``n_ref`` is even; odd ``n_ref``: see the module docstring), drawn independently of the
    target's split."""
    if not _is_int(n_pool) or n_pool < 4:
        raise ParameterError(f"n_pool must be an integer >= 4, got {n_pool!r}")
    if not _is_int(n_ref) or n_ref < 0:
        raise ParameterError(f"n_ref must be an integer >= 0 (0: threshold attacks only), got {n_ref!r}")
    if not _is_int(seed) or seed < 0:
        raise ParameterError(f"seed must be a non-negative integer, got {seed!r}")
    n_pool, n_ref, seed = int(n_pool), int(n_ref), int(seed)
    ss_target, ss_ref = np.random.SeedSequence(seed).spawn(2)
    rng = np.random.default_rng(ss_target)
    members = np.zeros(n_pool, dtype=bool)
    members[rng.permutation(n_pool)[: n_pool // 2]] = True
    rng = np.random.default_rng(ss_ref)
    if n_ref == 0:
        return Protocol(members, np.zeros((0, n_pool), dtype=bool), seed)
    k = np.full(n_pool, n_ref // 2)
    if n_ref % 2:
        k[rng.permutation(n_pool)[: n_pool // 2]] += 1
    rank = np.argsort(rng.random((n_ref, n_pool)), axis=0).argsort(axis=0)  # per point: a random order of models
    return Protocol(members, rank < k[None, :], seed)


# --------------------------------------------------------------------------- statistics
def _yidx(z: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Labels ``y`` (N,) as a ``take_along_axis`` index into logits ``z`` (..., N, Q, K)."""
    return y.reshape((1,) * (z.ndim - 3) + (-1, 1, 1))


def _log_py(z: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``log p_y`` of logits ``z`` (..., N, Q, K) with labels ``y`` (N,): shape (..., N, Q)."""
    zy = np.take_along_axis(z, _yidx(z, y), axis=-1)[..., 0]
    return zy - logsumexp(z, axis=-1)


def _phi_q(z: np.ndarray, y: np.ndarray) -> np.ndarray:
    """LiRA's ``phi`` of logits ``z`` (..., N, Q, K): ``z_y - logsumexp_{k != y} z_k``, (..., N, Q)."""
    idx = _yidx(z, y)
    zy = np.take_along_axis(z, idx, axis=-1)[..., 0]
    others = z.copy()
    np.put_along_axis(others, np.broadcast_to(idx, z.shape[:-1] + (1,)), -np.inf, axis=-1)
    return zy - logsumexp(others, axis=-1)


def _with_queries(z: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, bool]:
    """Logits (N, K) or (N, Q, K) as (N, Q, K), and whether a query axis was given."""
    if z.ndim == 2:
        return z[:, None, :], False
    return z, True


def _logits_labels(logits, labels) -> tuple[np.ndarray, np.ndarray]:
    z = _to_numpy(logits).astype(np.float64)
    if z.ndim not in (2, 3):
        raise ParameterError(f"logits must be (N, K) or (N, Q, K) (Q queries per example), got shape {z.shape}")
    if not np.isfinite(z).all():
        raise ParameterError("logits holds NaN or infinite values")
    y = _to_numpy(labels)
    if y.ndim != 1 or len(y) != len(z):
        raise ParameterError(f"labels must be 1-D of length {len(z)}, got shape {y.shape}")
    if y.size and not np.issubdtype(y.dtype, np.integer):
        raise ParameterError(f"labels must be integers, got dtype {y.dtype}")
    if z.shape[-1] < 2:
        raise ParameterError(f"logits need at least 2 classes, got {z.shape[-1]}")
    if z.ndim == 3 and z.shape[1] < 1:
        raise ParameterError("logits need at least one query per example")
    if y.size and (y.min() < 0 or y.max() >= z.shape[-1]):
        raise ParameterError(f"labels must lie in [0, {z.shape[-1] - 1}]")
    return z, y.astype(np.int64)


def true_class_probability(logits, labels) -> np.ndarray:
    """Softmax probability of the true class, ``exp(z_y - logsumexp(z))`` (stable); (N,) for
    logits (N, K), (N, Q) for logits (N, Q, K)."""
    z, y = _logits_labels(logits, labels)
    zq, q = _with_queries(z, y)
    p = np.exp(_log_py(zq, y))
    return p if q else p[:, 0]


def true_class_logit_confidence(logits, labels) -> np.ndarray:
    """LiRA's statistic ``phi = log(p_y / (1 - p_y))``, computed stably from the logits as
    ``z_y - logsumexp_{k != y} z_k`` (``p_y / (1 - p_y) = exp(z_y) / sum_{k != y} exp(z_k)``);
    finite for any finite logits. (N,) for logits (N, K), (N, Q) for (N, Q, K). (``score.py``
    computes ``log(p_y + 1e-45) - log(sum_{k != y} p_k + 1e-45)`` from float64 softmax values:
    the same number wherever neither probability underflows.)"""
    z, y = _logits_labels(logits, labels)
    zq, q = _with_queries(z, y)
    phi = _phi_q(zq, y)
    return phi if q else phi[:, 0]


def _taylor(v: np.ndarray, order: int) -> np.ndarray:
    """``1 + v + v^2/2! + ... + v^(order-1)/(order-1)!`` -- the paper code's ``get_taylor(v, n)``
    (``research/2024_rmia/signals.py``), whose ``n`` counts the terms."""
    out = 1.0 + v
    power = v
    for i in range(2, order):
        power = power * v
        out = out + power / math.factorial(i)
    return out


RMIA_SIGNALS = ("taylor_soft_margin", "softmax")


def rmia_signal(logits, labels, *, signal: str = "taylor_soft_margin", temperature: float = 2.0,
                margin: float = 0.6, taylor_order: int = 4) -> np.ndarray:
    """RMIA's ``p(x | theta)`` from logits (N, K) -> (N,) or (N, Q, K) -> (N, Q).

    * ``"taylor_soft_margin"`` (the paper's CIFAR configurations: ``signal:
      sm_taylor_softmax_relative``, ``temperature: 2.0``, ``taylor_m: 0.6``, ``taylor_n: 4``,
      computed by ``convert_signals(..., "taylor-soft-margin")``): with ``v = z / temperature`` and
      ``T(v)`` the truncated exponential of :func:`_taylor`, ``T(v_y - m) / (sum_{k != y} T(v_k) +
      T(v_y - m))``. The truncated series is not positive everywhere (order 4: ``T(v) < 0`` for
      ``v < -1.60``), so this "probability" can leave [0, 1] on very negative logits; it is kept
      as the paper computes it.
    * ``"softmax"``: the true-class softmax at ``temperature`` (ML Privacy Meter's ``get_softmax``).
    """
    if signal not in RMIA_SIGNALS:
        raise ParameterError(f"rmia signal must be one of {', '.join(RMIA_SIGNALS)}, got {signal!r}")
    if isinstance(temperature, bool) or not np.isfinite(temperature) or temperature <= 0:
        raise ParameterError(f"rmia temperature must be a positive number, got {temperature!r}")
    if not _is_int(taylor_order) or taylor_order < 2:
        raise ParameterError(f"rmia taylor_order must be an integer >= 2, got {taylor_order!r}")
    z, y = _logits_labels(logits, labels)
    zq, q = _with_queries(z, y)
    v = zq / float(temperature)
    if signal == "softmax":
        out = np.exp(_log_py(v, y))
    else:
        idx = y.reshape(-1, 1, 1)
        t = _taylor(v, int(taylor_order))
        vy = np.take_along_axis(v, idx, axis=-1)[..., 0]
        ty = np.take_along_axis(t, idx, axis=-1)[..., 0]
        soft = _taylor(vy - float(margin), int(taylor_order))
        out = soft / (t.sum(-1) - ty + soft)
    return out if q else out[:, 0]


# --------------------------------------------------------------------------- attacks
def loss_attack(sample_loss) -> np.ndarray:
    """Yeom et al. 2018: ``-loss`` (a low training loss suggests a member)."""
    return -_float_array(sample_loss, "sample_loss", 1)


def confidence_attack(logits, labels) -> np.ndarray:
    """The true-class softmax probability, averaged over queries when there are several."""
    p = true_class_probability(logits, labels)
    return p if p.ndim == 1 else p.mean(1)


def _queries_array(x, name: str, ndim: int) -> np.ndarray:
    """``x`` with ``ndim`` axes, or ``ndim + 1`` (a trailing query axis); returned with the query axis."""
    a = _to_numpy(x).astype(np.float64)
    if a.ndim == ndim:
        a = a[..., None]
    if a.ndim != ndim + 1:
        raise ParameterError(f"{name} must be {ndim}-D (one query) or {ndim + 1}-D (queries last), got shape {a.shape}")
    if not np.isfinite(a).all():
        raise ParameterError(f"{name} holds NaN or infinite values")
    return a


def _check_refs(target: np.ndarray, ref: np.ndarray, ref_in, what: str) -> np.ndarray:
    ref_in = _bool_array(ref_in, "ref_in", 2)
    if ref.shape[:2] != ref_in.shape or ref.shape[1:] != target.shape:
        raise ParameterError(f"{what}: reference values {ref.shape}, ref_in {ref_in.shape} and target {target.shape} "
                             "do not match (expected (R, N[, Q]), (R, N) and (N[, Q]))")
    if ref.shape[0] < 1:
        raise ParameterError(f"{what} needs at least one reference model")
    return ref_in


def _gaussian(ref_phi: np.ndarray, mask: np.ndarray, center: str, fixed_variance: bool, side: str):
    """Per (example, query) location and scale of ``ref_phi`` (R, N, Q) over the models where
    ``mask`` (R, N), with fall-backs; the fixed (global) scale pools every model, example and query."""
    if not mask.any():
        raise ParameterError(f"LiRA: no reference model is {side} for any example; cannot fit the {side} Gaussian")
    m3 = np.broadcast_to(mask[:, :, None], ref_phi.shape)
    vals = ref_phi[m3].reshape(-1, ref_phi.shape[2])  # (entries, Q)
    g_mu = np.median(vals, axis=0) if center == "median" else vals.mean(0)  # (Q,)
    g_sd = float(ref_phi[m3].std())
    n = mask.sum(0)  # (N,)
    have = n > 0
    mu = np.broadcast_to(g_mu, ref_phi.shape[1:]).copy()  # (N, Q)
    s = np.where(m3, ref_phi, 0.0).sum(0)
    mean = np.divide(s, n[:, None], out=np.zeros_like(s), where=have[:, None])
    if center == "median":
        masked = np.where(m3[:, have], ref_phi[:, have], np.nan)
        mu[have] = np.nanmedian(masked, axis=0)
    else:
        mu[have] = mean[have]
    if fixed_variance:
        sd = np.full(ref_phi.shape[1:], g_sd)
    else:
        sq = np.where(m3, (ref_phi - mean[None]) ** 2, 0.0).sum(0)
        sd = np.where((n >= 2)[:, None], np.sqrt(np.divide(sq, n[:, None], out=np.zeros_like(sq), where=have[:, None])),
                      g_sd)
    return mu, np.maximum(sd, MIN_STD)


#: which reference models each example's IN / OUT fits use (``ref_counts``; see :func:`reference_use`)
REF_COUNTS = ("balanced", "reference_code", "all")


def reference_use(ref_in, rule: str = "balanced", attack: str = "lira") -> np.ndarray:
    """Which reference models each example's statistics use, bool (R, N), from ``ref_in`` (R, N).

    Why it matters: with the balanced protocol every example is IN for exactly ``R/2`` reference
    models *of the kit's target*; a reference model attacked as the target (leave-one-out,
    :func:`attack_targets`) leaves a design where its own members are IN for fewer of the others
    and its non-members for more (``R = 4``: members 1-2 IN of 4, non-members 2-3). Fits from
    unequal counts are unequally noisy, and LiRA's online ratio then carries a bias of
    ``-(s^2 / 2) (1 / n_in - 1 / n_out)`` that points against membership: it pulls the AUC below
    0.5 where the membership signal is weak, more so the more queries average the noise away.

    * ``"balanced"`` (kit default): per example the first ``k = min(n_in, n_out)`` IN and the first
      ``k`` OUT models (model order), so every example's fits use equally many of each; an example
      with no IN or no OUT model keeps all (the fall-backs of :func:`lira` apply).
    * ``"reference_code"``: the reference code's rule. LiRA (``plot.py``, ``generate_ours``): every
      example keeps its first ``in_size`` IN and ``out_size`` OUT values, the smallest IN (OUT)
      count over the examples (at least 1). RMIA (the paper code's ``aggregate_signals``): the first
      ``R // 2`` IN and the first ``R // 2`` OUT models of each example.
    * ``"all"``: every reference model (the kit before this rule existed).

    With every example IN for the same number of models (the kit's target) the three are the same
    set, so the rule changes only the scores of reference models attacked as targets (and of
    unbalanced inputs)."""
    if rule not in REF_COUNTS:
        raise ParameterError(f"ref_counts must be one of {', '.join(REF_COUNTS)}, got {rule!r}")
    m = _bool_array(ref_in, "ref_in", 2)
    if rule == "all" or m.size == 0:
        return np.ones(m.shape, dtype=bool)
    n_in, n_out = m.sum(0), (~m).sum(0)
    if rule == "balanced":
        k_in = k_out = np.minimum(n_in, n_out)
        keep_all = k_in == 0
        k_in = np.where(keep_all, n_in, k_in)
        k_out = np.where(keep_all, n_out, k_out)
    elif attack == "rmia":
        k_in = k_out = np.full(m.shape[1], m.shape[0] // 2)
    else:
        k_in = np.full(m.shape[1], max(1, int(n_in.min())))
        k_out = np.full(m.shape[1], max(1, int(n_out.min())))
    first_in = m & (np.cumsum(m, 0) <= k_in[None])
    first_out = ~m & (np.cumsum(~m, 0) <= k_out[None])
    return first_in | first_out


LIRA_CENTERS = ("mean", "median")
LIRA_OFFLINE_TESTS = ("one_sided", "two_sided")
LIRA_FIXED_SDS = ("separate", "in_for_both")
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def lira(target_phi, ref_phi, ref_in, *, online: bool = True, fixed_variance: bool = False,
         center: str = "mean", offline_test: str = "one_sided", fixed_sd: str = "separate",
         ref_counts: str = "balanced") -> np.ndarray:
    """LiRA (Carlini et al. 2022) on the statistic ``phi`` (:func:`true_class_logit_confidence`).

    ``target_phi`` (N,) or (N, Q) of the attacked model; ``ref_phi`` (R, N) or (R, N, Q) and
    ``ref_in`` (R, N) of the reference models. Per example and query, the reference ``phi``
    values where IN (resp. OUT) give ``mu_in, s_in`` (resp. ``mu_out, s_out``), and the per-query
    statistics below are **averaged over the Q queries** (``plot.py``: ``score.mean(1)`` over the
    augmentation axis; one Gaussian per augmentation, never an average of ``p`` first).

    Conventions, each a parameter, with the public code's (``research/mi_lira_2021/plot.py``):

    * ``center``: ``"mean"`` (kit default) or ``"median"`` (``plot.py``: ``np.median``);
    * ``s``: the standard deviation with ddof 0 (``np.std``, as ``plot.py``); floored at
      :data:`MIN_STD` (``plot.py`` adds ``1e-30``);
    * ``fixed_variance``: one global scale per side, the standard deviation of all IN (OUT) values
      pooled over examples, queries and models (``plot.py``'s ``fix_variance``). ``fixed_sd``
      says which global scale the online OUT side uses: ``"separate"`` (kit default: the OUT
      values' own) or ``"in_for_both"`` (``plot.py``'s ``generate_ours``: ``std_out =
      np.std(dat_in)``). The offline attack always uses the OUT values' scale (``plot.py`` too);
    * online: ``log N(phi; mu_in, s_in) - log N(phi; mu_out, s_out)`` (``plot.py``'s
      ``pr_in - pr_out`` ranked by ``-score``: the same);
    * offline, ``offline_test="one_sided"`` (kit default: the paper's Algorithm 1, ``Lambda =
      Pr[Z < phi]``, ``Z ~ N(mu_out, s_out^2)``): returned as the standardized statistic ``(phi
      - mu_out) / s_out`` averaged over queries (one query: a strictly increasing transform of
      ``Lambda``, the same ranking, and no saturation at 1 in float; the paper gives no rule for
      combining queries offline, the mean is the kit's); ``"two_sided"``: ``-log N(phi; mu_out,
      s_out)`` averaged over queries (``plot.py``'s ``generate_ours_offline`` ranked by
      ``-score``), large on either side of the OUT distribution.

    ``ref_counts`` (:func:`reference_use`): which reference models each example's fits use --
    ``"balanced"`` (kit default: equally many IN and OUT per example), ``"reference_code"``
    (``plot.py``: every example's IN (OUT) values truncated to the smallest count over the
    examples, ``x[:in_size]``) or ``"all"``; with every example IN for the same number of models
    (the kit's target) all three keep every value. Fall-backs, never NaN: an example with no IN (no
    OUT) reference model takes the global location and scale of all IN (OUT) values; one with a
    single IN (OUT) model takes its value as location and the global scale. Online needs at least
    one IN and one OUT value overall, offline at least one OUT value.
    """
    if center not in LIRA_CENTERS:
        raise ParameterError(f"center must be 'mean' or 'median', got {center!r}")
    if offline_test not in LIRA_OFFLINE_TESTS:
        raise ParameterError(f"offline_test must be one of {', '.join(LIRA_OFFLINE_TESTS)}, got {offline_test!r}")
    if fixed_sd not in LIRA_FIXED_SDS:
        raise ParameterError(f"fixed_sd must be one of {', '.join(LIRA_FIXED_SDS)}, got {fixed_sd!r}")
    t0 = _to_numpy(target_phi)
    t = _queries_array(target_phi, "target_phi", 1)
    if t0.ndim not in (1, 2):
        raise ParameterError(f"target_phi must be (N,) or (N, Q), got shape {t0.shape}")
    r = _queries_array(ref_phi, "ref_phi", 2) if _to_numpy(ref_phi).ndim == t0.ndim + 1 else None
    if r is None:
        raise ParameterError(f"ref_phi must have one axis more than target_phi (R first), got {_to_numpy(ref_phi).shape} "
                             f"and {t0.shape}")
    m = _check_refs(t, r, ref_in, "lira")
    use = reference_use(m, ref_counts, "lira")
    mu_out, sd_out = _gaussian(r, ~m & use, center, fixed_variance, "OUT")
    z_out = (t - mu_out) / sd_out
    if not online:
        if offline_test == "one_sided":
            return z_out.mean(1)
        return (0.5 * z_out**2 + np.log(sd_out) + _HALF_LOG_2PI).mean(1)
    mu_in, sd_in = _gaussian(r, m & use, center, fixed_variance, "IN")
    if fixed_variance and fixed_sd == "in_for_both":
        sd_out = sd_in
        z_out = (t - mu_out) / sd_out
    z_in = (t - mu_in) / sd_in
    return ((-0.5 * z_in**2 - np.log(sd_in)) - (-0.5 * z_out**2 - np.log(sd_out))).mean(1)


def _population_indices(population, n: int) -> np.ndarray:
    if population is None:
        return np.arange(n)
    p = _to_numpy(population)
    if p.dtype == bool:
        if p.shape != (n,):
            raise ParameterError(f"a boolean population mask must have shape ({n},), got {p.shape}")
        idx = np.flatnonzero(p)
    else:
        if p.ndim != 1 or (p.size and not np.issubdtype(p.dtype, np.integer)):
            raise ParameterError("population must be a boolean mask or a 1-D array of integer indices")
        if p.size and (p.min() < 0 or p.max() >= n):
            raise ParameterError(f"population indices must lie in [0, {n - 1}]")
        idx = np.unique(p)
    if idx.size == 0:
        raise ParameterError("the RMIA population is empty")
    return idx


def _trimmed_mean(values: np.ndarray, mask: np.ndarray, trim: float) -> np.ndarray:
    """Per (example, query): the mean of ``values`` (R, N, Q) over the models where ``mask`` (R, N),
    after cutting ``int(trim * n)`` values from each end (``scipy.stats.trim_mean``'s rule, which
    the paper code applies over its models; vectorised here because the count ``n`` differs
    between examples). Examples with no model get NaN."""
    m3 = np.broadcast_to(mask[:, :, None], values.shape)
    v = np.sort(np.where(m3, values, np.inf), axis=0)  # the masked-out values sort last
    n = mask.sum(0)[:, None]  # (N, 1)
    cut = np.floor(trim * n).astype(np.int64)  # int(trim * n), as trim_mean
    cut = np.minimum(cut, (n - 1) // 2).clip(min=0)
    rank = np.arange(values.shape[0])[:, None, None]
    keep = (rank >= cut[None]) & (rank < (n - cut)[None])
    total = np.where(keep, v, 0.0).sum(0)
    count = keep.sum(0)
    return np.divide(total, count, out=np.full(total.shape, np.nan), where=count > 0)


def _rmia_marginal(ref_p: np.ndarray, ref_in: np.ndarray, offline_a, trim: float, use=None) -> np.ndarray:
    """``Pr(x)`` (N, Q): the trimmed mean over every reference model (online) or, offline, ``((1 + a)
    Pr_OUT(x) + (1 - a)) / 2`` with ``Pr_OUT`` the trimmed mean over the OUT models."""
    if use is None:
        use = np.ones(ref_p.shape[:2], bool)
    if offline_a is None:
        return _trimmed_mean(ref_p, use, trim)
    out = ~ref_in & use
    if not out.any():
        raise ParameterError("RMIA offline: no reference model is OUT for any example")
    pr_out = _trimmed_mean(ref_p, out, trim)
    missing = np.isnan(pr_out)
    if missing.any():
        fill = _trimmed_mean(ref_p.transpose(1, 0, 2).reshape(-1, 1, ref_p.shape[2]),
                             out.T.reshape(-1, 1), 0.0)[0]  # (Q,): the mean of every OUT value
        pr_out = np.where(missing, fill[None, :], pr_out)
    return ((1.0 + offline_a) * pr_out + (1.0 - offline_a)) / 2.0


RMIA_SELF_VOTES = ("excluded", "as_paper_code")
_CHUNK = 1 << 22  # pair-query comparisons per block of the voting loop (about 4 M booleans)


def _rmia_votes(ratio: np.ndarray, pop: np.ndarray, gamma: float) -> tuple[np.ndarray, np.ndarray]:
    """Per point ``x`` (N,): how many population points ``z`` get a majority of ``ratio(x, q) *
    (1 / ratio(z, q)) > gamma`` over the Q queries (the paper code's arithmetic and ``torch.mode``
    vote: a tie is no), and ``x``'s vote against itself (0 or 1; only meaningful for x in the
    population). One query with every ratio positive: sorting + ``searchsorted``; otherwise an
    explicit comparison in blocks of points (O(N Z Q))."""
    n, q = ratio.shape
    rz_inv = 1.0 / ratio[pop]  # (Z, Q)
    self_vote = ((ratio * (1.0 / ratio) > gamma).sum(1) * 2 > q).astype(np.int64)
    if q == 1 and (ratio > 0).all():
        # x * (1 / z) > gamma, counted through sorting; the product is formed as in the paper code
        # only for the pairs at the boundary, so the count is the same as the explicit one
        thr = gamma / ratio[:, 0]  # (1 / z) > thr roughly; refine the boundary exactly below
        s = np.sort(rz_inv[:, 0])
        lo = np.searchsorted(s, thr * (1 - 1e-12), side="left")
        hi = np.searchsorted(s, thr * (1 + 1e-12), side="right")
        count = len(s) - hi
        for i in np.flatnonzero(hi > lo):  # the few values within rounding of the boundary
            count[i] += int((ratio[i, 0] * s[lo[i]:hi[i]] > gamma).sum())
        return count.astype(np.int64), self_vote
    count = np.zeros(n, dtype=np.int64)
    step = max(1, _CHUNK // max(1, len(pop) * q))
    for i in range(0, n, step):
        votes = (ratio[i:i + step, None, :] * rz_inv[None, :, :] > gamma).sum(2)  # (b, Z)
        count[i:i + step] = (votes * 2 > q).sum(1)
    return count, self_vote


def rmia(target_p, ref_p, ref_in, population=None, *, gamma: float = 2.0, offline_a: float | None = None,
         trim: float = 0.2, self_vote: str = "excluded", ref_counts: str = "balanced") -> np.ndarray:
    """RMIA (Zarifzadeh et al. 2024) on ``p(x | theta)`` (:func:`rmia_signal`), with queries.

    ``target_p`` (N,) or (N, Q) of the attacked model; ``ref_p`` (R, N[, Q]) and ``ref_in`` (R, N)
    of the references. ``Pr(x)`` per query: online (``offline_a=None``) the ``trim``-trimmed mean
    of ``p(x | theta_ref)`` over **all** reference models; offline (``offline_a = a`` in [0, 1])
    over the **OUT** models only, ``Pr(x) = ((1 + a) Pr_OUT(x) + (1 - a)) / 2`` (an example with no
    OUT model takes the mean over all OUT values). ``ratio(x) = p(x | theta_target) / Pr(x)``;
    for each pair (x, z) and query the vote ``ratio(x) * (1 / ratio(z)) > gamma``, a majority
    over the queries (:func:`_rmia_votes`), and ``score(x)`` the fraction of population points
    ``z`` voting yes.

    Conventions, with the paper code's (``research/2024_rmia/main.py``, ``aggregate_signals``
    and its ``attack_configs/cifar10/rmia_*.yaml``): ``gamma = 2`` (configs), ``trim = 0.2``
    (``proportiontocut``; ``scipy.stats.trim_mean`` over the models), strict ``>`` (code; the
    paper's text writes ``>=``: they differ only on exact ties), ``Pr(x)`` from the first
    ``num_ref_models / 2`` IN and OUT models of each example (``ref_counts="reference_code"``;
    the kit's default ``"balanced"`` takes the first ``min(n_in, n_out)`` of each, see
    :func:`reference_use`; the same set when every example is IN for half of the references). ``population``: indices into the N points
    (duplicates dropped) or a bool mask (N,); None: all N points (the paper code passes the
    target's non-members). ``self_vote``: a scored point that is also in the population is
    compared with itself; ``"excluded"`` (kit default) drops that comparison, ``score = (votes -
    own vote) / (Z - 1)``; ``"as_paper_code"`` applies the paper code's line
    ``prediction[:, population_indices] = ((prediction * len(z)) - 1.0) / (len(z) - 1)`` to its
    negated score, which gives ``(votes + 1) / (Z - 1)`` -- one vote more for every population
    point (with ``gamma >= 1`` the own vote is 0). Points outside the population: ``votes / Z``.
    """
    if isinstance(gamma, bool) or not np.isfinite(gamma) or gamma <= 0:
        raise ParameterError(f"gamma must be a positive number, got {gamma!r}")
    if offline_a is not None and not (0.0 <= offline_a <= 1.0):
        raise ParameterError(f"offline_a must lie in [0, 1] (or be None for online RMIA), got {offline_a!r}")
    if isinstance(trim, bool) or not (0.0 <= trim < 0.5):
        raise ParameterError(f"trim (RMIA's proportiontocut) must lie in [0, 0.5), got {trim!r}")
    if self_vote not in RMIA_SELF_VOTES:
        raise ParameterError(f"self_vote must be one of {', '.join(RMIA_SELF_VOTES)}, got {self_vote!r}")
    t0 = _to_numpy(target_p)
    if t0.ndim not in (1, 2):
        raise ParameterError(f"target_p must be (N,) or (N, Q), got shape {t0.shape}")
    t = _queries_array(target_p, "target_p", 1)
    if _to_numpy(ref_p).ndim != t0.ndim + 1:
        raise ParameterError(f"ref_p must have one axis more than target_p (R first), got {_to_numpy(ref_p).shape}")
    r = _queries_array(ref_p, "ref_p", 2)
    m = _check_refs(t, r, ref_in, "rmia")
    pop = _population_indices(population, len(t))
    pr = _rmia_marginal(r, m, offline_a, float(trim), reference_use(m, ref_counts, "rmia"))
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = t / pr
    if not np.isfinite(ratio).all():
        raise ParameterError("RMIA: p(x | target) / Pr(x) is not finite for some example (Pr(x) = 0?)")
    votes, own = _rmia_votes(ratio, pop, float(gamma))
    in_pop = np.zeros(len(t), dtype=bool)
    in_pop[pop] = True
    z = len(pop)
    if (in_pop & (z < 2)).any():
        raise ParameterError("the RMIA population must hold at least one point other than the scored one")
    if self_vote == "excluded":
        return np.where(in_pop, (votes - own) / max(z - 1, 1), votes / z)
    return np.where(in_pop, (votes + 1.0) / max(z - 1, 1), votes / z)


def _roc_auc(y: np.ndarray, s: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, s))


#: the grid of ML Privacy Meter's ``tune_offline_a`` (``np.arange(0, 1.1, 0.1)``)
OFFLINE_A_GRID = tuple(float(a) for a in np.arange(0, 1.1, 0.1))


def tune_offline_a(ref_p, ref_in, pair: int = 0, *, gamma: float = 2.0, trim: float = 0.2,
                   self_vote: str = "excluded", population: str = "non_members",
                   ref_counts: str = "balanced") -> tuple[float, np.ndarray]:
    """Offline RMIA's ``a`` as ML Privacy Meter tunes it (``modules/mia/attacks/rmia.py`` and
    ``attacks.py``, ``tune_offline_a``): attack a **paired** reference model, ``ref_p[pair]``,
    with the other references' OUT values for every ``a`` of :data:`OFFLINE_A_GRID`, and keep the
    ``a`` of the highest AUC against that model's known membership (the first on a tie: strict
    ``>``, starting from AUC 0 and a = 0). Returns ``(a, AUCs over the grid)``.

    ML Privacy Meter pairs model ``i`` with ``i ^ 1`` and tunes with one reference model; here the
    paired model is ``ref_p[pair]`` and its references are all the others (the kit's choice: the
    same rule with the references the attack has). :func:`run_attacks` then attacks the target
    with the references **without** the paired model, as ML Privacy Meter's ``run_rmia`` leaves
    the target's pair out of its reference columns."""
    r = _queries_array(ref_p, "ref_p", 2) if _to_numpy(ref_p).ndim == 2 else _to_numpy(ref_p).astype(np.float64)
    m = _bool_array(ref_in, "ref_in", 2)
    if r.shape[0] < 2 or not (0 <= pair < r.shape[0]):
        raise ParameterError(f"tuning the offline a needs a paired model and at least one more reference (R={r.shape[0]}, "
                             f"pair={pair})")
    others = np.delete(np.arange(r.shape[0]), pair)
    y = m[pair]
    if y.all() or not y.any():
        raise ParameterError("tuning the offline a: the paired model must have members and non-members")
    pop = ~y if population == "non_members" else None
    best_a, best_auc, aucs = 0.0, 0.0, []
    for a in OFFLINE_A_GRID:
        s = rmia(r[pair], r[others], m[others], pop, gamma=gamma, offline_a=a, trim=trim, self_vote=self_vote,
                 ref_counts=ref_counts)
        auc = _roc_auc(y, s)
        aucs.append(auc)
        if auc > best_auc:
            best_auc, best_a = auc, a
    return best_a, np.array(aucs)


def shadow_features(logits, labels, sample_loss=None) -> np.ndarray:
    """Per-example features of the shadow attack, (N, F): the ``min(3, K)`` largest
    log-softmax values in decreasing order, the true-class log-probability, LiRA's ``phi``
    (true-class log-odds) -- each averaged over the queries when logits are (N, Q, K) -- and, when
    given, the model's own per-example training loss (the kit compares losses other than
    cross-entropy, so it is not implied by the probabilities)."""
    z, y = _logits_labels(logits, labels)
    zq, _ = _with_queries(z, y)
    logp = zq - logsumexp(zq, axis=-1, keepdims=True)  # (N, Q, K)
    k = min(3, zq.shape[-1])
    top = (-np.sort(-logp, axis=-1)[..., :k]).mean(1)
    cols = [top, _log_py(zq, y).mean(1)[:, None], _phi_q(zq, y).mean(1)[:, None]]
    if sample_loss is not None:
        loss = _float_array(sample_loss, "sample_loss", 1)
        if len(loss) != len(y):
            raise ParameterError(f"sample_loss has {len(loss)} values for {len(y)} examples")
        cols.append(loss[:, None])
    return np.concatenate(cols, axis=1)


def shadow_attack(ref_features, ref_in, target_features, *, seed: int = 0, max_rows: int = 200_000) -> np.ndarray:
    """Shokri et al. 2017: a scikit-learn ``HistGradientBoostingClassifier`` (default settings,
    ``random_state=seed``; chosen over logistic regression because it needs no feature scaling
    and learns non-monotone patterns) trained on the reference models' features
    ``ref_features`` (R, N, F) labelled ``ref_in`` (R, N), at most ``max_rows`` rows (a seeded
    random subset beyond that); returns its member probability for ``target_features`` (N, F)."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    X = _float_array(ref_features, "ref_features", 3)
    T = _float_array(target_features, "target_features", 2)
    y = _bool_array(ref_in, "ref_in", 2)
    if X.shape[:2] != y.shape or X.shape[2] != T.shape[1]:
        raise ParameterError(f"shadow: ref_features {X.shape}, ref_in {y.shape} and target_features {T.shape} do not match")
    X, y = X.reshape(-1, X.shape[2]), y.reshape(-1)
    rng = np.random.default_rng(seed)
    if len(y) > max_rows:
        keep = rng.choice(len(y), size=max_rows, replace=False)
        X, y = X[keep], y[keep]
    if y.all() or not y.any():
        raise ParameterError("shadow attack: the reference data hold only IN or only OUT examples; need both")
    from threadpoolctl import threadpool_limits

    # one OpenMP thread: the histogram sums are then added in one order on every machine, so the
    # fitted trees (and a notebook's checked outputs) do not depend on the CPU count
    with threadpool_limits(limits=1, user_api="openmp"):
        clf = HistGradientBoostingClassifier(random_state=seed).fit(X, y)
        return clf.predict_proba(T)[:, list(clf.classes_).index(True)]


# --------------------------------------------------------------------------- threshold
def choose_threshold(scores, is_member) -> float:
    """The threshold ``t`` (predict member when ``score >= t``) maximising balanced accuracy
    on the given data -- in the kit always the reference models' own outputs. Candidates: the
    distinct score values (the smallest predicts everyone a member); balanced accuracy compared
    exactly in integer arithmetic; ties go to the largest threshold (fewest predicted members)."""
    s = _float_array(scores, "scores", 1)
    y = _bool_array(is_member, "is_member", 1)
    if len(y) != len(s):
        raise ParameterError(f"scores ({len(s)}) and is_member ({len(y)}) differ in length")
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        raise ParameterError("choose_threshold needs both members and non-members")
    values, inv = np.unique(s, return_inverse=True)
    pos = np.bincount(inv, weights=y, minlength=len(values)).astype(np.int64)
    tot = np.bincount(inv, minlength=len(values)).astype(np.int64)
    tp = np.cumsum(pos[::-1])[::-1]  # members with score >= values[i]
    fp = np.cumsum((tot - pos)[::-1])[::-1]
    j = tp * n_neg - fp * n_pos  # proportional to TPR - FPR = 2 * balanced accuracy - 1
    return float(values[np.flatnonzero(j == j.max())[-1]])


# --------------------------------------------------------------------------- dispatch
RMIA_POPULATIONS = ("non_members", "all")


@dataclass(frozen=True)
class AttackOptions:
    """Every convention of the attacks, in one place; the defaults are the kit's for LiRA (each
    with the public ``plot.py``'s value as an option, see :func:`lira`) and the RMIA paper's
    CIFAR-10 configurations for RMIA (see :func:`rmia`, :func:`rmia_signal`).

    ``ref_counts``: which reference models each example's LiRA / RMIA fits use (:func:`reference_use`):
    ``"balanced"`` (kit default), ``"reference_code"`` (``plot.py`` / the RMIA paper code) or ``"all"``.
    ``rmia_offline_a``: None (online RMIA), a number in [0, 1] (the paper configs: 0.3), or
    ``"tune"`` (ML Privacy Meter's :func:`tune_offline_a` on a paired reference model).
    ``rmia_population``: ``"non_members"`` (the paper code: the attacked model's non-members) or
    ``"all"`` (every pool point, no membership label used); ``population`` (indices or a mask)
    overrides it for the target. ``seed``: the shadow classifier's."""

    fixed_variance: bool = False
    lira_center: str = "mean"
    lira_offline_test: str = "one_sided"
    lira_fixed_sd: str = "separate"
    ref_counts: str = "balanced"
    rmia_gamma: float = 2.0
    rmia_offline_a: float | str | None = None
    rmia_trim: float = 0.2
    rmia_signal: str = "taylor_soft_margin"
    rmia_temperature: float = 2.0
    rmia_margin: float = 0.6
    rmia_taylor_order: int = 4
    rmia_population: str = "non_members"
    rmia_self_vote: str = "excluded"
    population: object = None
    seed: int = 0
    shadow_max_rows: int = 200_000

    def __post_init__(self):
        for name, value, allowed in (("lira_center", self.lira_center, LIRA_CENTERS),
                                     ("lira_offline_test", self.lira_offline_test, LIRA_OFFLINE_TESTS),
                                     ("lira_fixed_sd", self.lira_fixed_sd, LIRA_FIXED_SDS),
                                     ("ref_counts", self.ref_counts, REF_COUNTS),
                                     ("rmia_signal", self.rmia_signal, RMIA_SIGNALS),
                                     ("rmia_population", self.rmia_population, RMIA_POPULATIONS),
                                     ("rmia_self_vote", self.rmia_self_vote, RMIA_SELF_VOTES)):
            if value not in allowed:
                raise ParameterError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
        a = self.rmia_offline_a
        if not (a is None or a == "tune" or (isinstance(a, (int, float)) and not isinstance(a, bool) and 0 <= a <= 1)):
            raise ParameterError(f"rmia_offline_a must be None (online), a number in [0, 1] or 'tune', got {a!r}")

    def record(self, attack: str) -> dict:
        """The options an attack used, for the run record."""
        if attack.startswith("lira"):
            keys = ("fixed_variance", "lira_center", "ref_counts") + (("lira_offline_test",) if attack == "lira_offline" else
                                                         ("lira_fixed_sd",))
        elif attack == "rmia":
            keys = ("rmia_gamma", "rmia_offline_a", "rmia_trim", "rmia_signal", "rmia_temperature", "rmia_margin",
                    "rmia_taylor_order", "rmia_population", "rmia_self_vote", "ref_counts")
        else:
            keys = ()
        return {k: getattr(self, k) for k in keys}


_OPTION_NAMES = {f.name for f in fields(AttackOptions)}


def _options(options: AttackOptions | None, kw: dict) -> AttackOptions:
    bad = set(kw) - _OPTION_NAMES
    if bad:
        raise ParameterError(f"unknown attack option(s) {sorted(bad)}; choose from {sorted(_OPTION_NAMES)}")
    return replace(options or AttackOptions(), **kw)


def _statistic(attack: str, logits: np.ndarray, loss: np.ndarray, labels: np.ndarray, o: AttackOptions) -> np.ndarray:
    """The per-model input of an attack; ``logits`` (M, N, Q, K), ``loss`` (M, N)."""
    if attack == "loss":
        return -loss
    if attack == "confidence":
        return np.exp(_log_py(logits, labels)).mean(2)
    if attack == "rmia":
        return np.stack([rmia_signal(z, labels, signal=o.rmia_signal, temperature=o.rmia_temperature,
                                     margin=o.rmia_margin, taylor_order=o.rmia_taylor_order) for z in logits])
    if attack in ("lira_online", "lira_offline"):
        return _phi_q(logits, labels)
    if attack == "shadow":
        return np.stack([shadow_features(z, labels, l) for z, l in zip(logits, loss)])
    raise ParameterError(f"unknown attack {attack!r}; choose from {', '.join(ATTACKS)}")


def _score(attack: str, target, ref, ref_in: np.ndarray, o: AttackOptions, members=None) -> np.ndarray:
    """Scores of the model with statistic ``target`` given references ``ref`` / ``ref_in``;
    ``members`` (N,) the attacked model's membership, used only for RMIA's population of
    non-members (the paper's setting: known non-members as the population)."""
    if attack in ("loss", "confidence"):
        return target
    if attack == "lira_online":
        return lira(target, ref, ref_in, online=True, fixed_variance=o.fixed_variance, center=o.lira_center,
                    fixed_sd=o.lira_fixed_sd, ref_counts=o.ref_counts)
    if attack == "lira_offline":
        return lira(target, ref, ref_in, online=False, fixed_variance=o.fixed_variance, center=o.lira_center,
                    offline_test=o.lira_offline_test, ref_counts=o.ref_counts)
    if attack == "rmia":
        pop = o.population
        if pop is None and o.rmia_population == "non_members":
            if members is None:
                raise ParameterError("RMIA with population 'non_members' needs the attacked model's membership")
            pop = ~np.asarray(members, bool)
        a = o.rmia_offline_a
        if a == "tune":
            a, _ = tune_offline_a(ref, ref_in, 0, gamma=o.rmia_gamma, trim=o.rmia_trim, self_vote=o.rmia_self_vote,
                                  population=o.rmia_population, ref_counts=o.ref_counts)
            ref, ref_in = ref[1:], ref_in[1:]  # the paired model is held out of the attack (ML Privacy Meter)
        return rmia(target, ref, ref_in, pop, gamma=o.rmia_gamma, offline_a=a, trim=o.rmia_trim,
                    self_vote=o.rmia_self_vote, ref_counts=o.ref_counts)
    return shadow_attack(ref, ref_in, target, seed=o.seed, max_rows=o.shadow_max_rows)


def _min_refs(attack: str, o: AttackOptions) -> int:
    return 4 if attack == "rmia" and o.rmia_offline_a == "tune" else MIN_REFS[attack]


def _loo(attack: str, ref, ref_in: np.ndarray, o: AttackOptions) -> tuple[np.ndarray, np.ndarray]:
    R = ref_in.shape[0]
    if attack in ("loss", "confidence"):
        return ref.reshape(-1), ref_in.reshape(-1)
    if R < _min_refs(attack, o):
        raise ParameterError(f"attack {attack!r} needs at least {_min_refs(attack, o)} reference models, got {R}")
    o_loo = replace(o, population=None)  # an explicit population is the target's; each reference uses its own rule
    out = [_score(attack, ref[r], np.delete(ref, r, axis=0), np.delete(ref_in, r, axis=0), o_loo, ref_in[r])
           for r in range(R)]
    return np.concatenate(out), ref_in.reshape(-1)


def _logits4(x, name: str, n: int | None = None) -> np.ndarray:
    """Reference logits (R, N, K) or (R, N, Q, K) as (R, N, Q, K)."""
    a = _to_numpy(x)
    if a.size == 0:
        return np.zeros((0, n or 0, 1, 2))
    a = a.astype(np.float64)
    if a.ndim == 3:
        a = a[:, :, None, :]
    if a.ndim != 4:
        raise ParameterError(f"{name} must be (R, N, K) or (R, N, Q, K), got shape {a.shape}")
    if not np.isfinite(a).all():
        raise ParameterError(f"{name} holds NaN or infinite values")
    return a


def _check_outputs(target_logits, target_loss, labels, ref_logits, ref_loss, ref_in):
    tz, y = _logits_labels(target_logits, labels)
    tz, _ = _with_queries(tz, y)
    n, q, k = tz.shape
    tl = _float_array(target_loss, "target_loss", 1)
    rz = _logits4(ref_logits, "ref_logits", n)
    if rz.shape[0] == 0:
        rz = np.zeros((0, n, q, k))
    rl = _to_numpy(ref_loss)
    rl = np.zeros((0, n)) if rl.size == 0 else _float_array(rl, "ref_loss", 2)
    m = _bool_array(ref_in if _to_numpy(ref_in).size else np.zeros((0, n), bool), "ref_in", 2)
    R = m.shape[0]
    if tl.shape != (n,) or rz.shape != (R, n, q, k) or rl.shape != (R, n) or m.shape != (R, n):
        raise ParameterError(f"shapes do not match: target logits {tz.shape}, target loss {tl.shape}, ref logits "
                             f"{rz.shape}, ref loss {rl.shape}, ref_in {m.shape} (expected (N, Q, K), (N,), "
                             "(R, N, Q, K), (R, N), (R, N); one query may drop the Q axis)")
    if R:
        _logits_labels(rz[0], y)
    return tz, tl, y, rz, rl, m


def attack_scores(attack: str, target_logits, target_loss, labels, ref_logits, ref_loss, ref_in, *, members=None,
                  options: AttackOptions | None = None, **kw) -> np.ndarray:
    """One attack's scores (N,) on the target model, with all ``R`` reference models; ``members``
    (the target's membership) only for RMIA's ``non_members`` population. Options: the fields of
    :class:`AttackOptions`, or ``options``."""
    o = _options(options, kw)
    tz, tl, y, rz, rl, m = _check_outputs(target_logits, target_loss, labels, ref_logits, ref_loss, ref_in)
    if attack not in MIN_REFS:
        raise ParameterError(f"unknown attack {attack!r}; choose from {', '.join(ATTACKS)}")
    if m.shape[0] < _min_refs(attack, o):
        raise ParameterError(f"attack {attack!r} needs at least {_min_refs(attack, o)} reference models, got {m.shape[0]}")
    t = _statistic(attack, tz[None], tl[None], y, o)[0]
    return _score(attack, t, _statistic(attack, rz, rl, y, o) if m.shape[0] else None, m, o, members)


def reference_scores(attack: str, ref_logits, ref_loss, labels, ref_in, *, options: AttackOptions | None = None,
                     **kw) -> tuple[np.ndarray, np.ndarray]:
    """One attack's scores on the reference models' own outputs, leave-one-out (model ``r``
    attacked with the other ``R - 1`` as its references; ``loss`` and ``confidence`` need no
    references), with their labels ``ref_in[r]``; both flattened model-major, shape (R * N,)."""
    o = _options(options, kw)
    rz = _logits4(ref_logits, "ref_logits")
    if rz.shape[0] == 0:
        raise ParameterError(f"reference_scores needs ref_logits of shape (R >= 1, N[, Q], K), got {rz.shape}")
    _, y = _logits_labels(rz[0], labels)
    rl = _float_array(ref_loss, "ref_loss", 2)
    m = _bool_array(ref_in, "ref_in", 2)
    if rl.shape != m.shape or rz.shape[:2] != m.shape:
        raise ParameterError(f"ref_logits {rz.shape}, ref_loss {rl.shape} and ref_in {m.shape} do not match")
    return _loo(attack, _statistic(attack, rz, rl, y, o), m, o)


@dataclass
class AttackResult:
    """One attack on one target: ``scores`` (N,) of the target's pool points (higher = member);
    ``ref_scores`` / ``ref_is_member`` (R * N,) the leave-one-out scores of the reference models
    and their IN labels; ``threshold`` chosen on those (NaN when there is no reference data)."""

    name: str
    scores: np.ndarray
    ref_scores: np.ndarray
    ref_is_member: np.ndarray
    threshold: float
    options: dict = field(default_factory=dict)

    @property
    def predictions(self) -> np.ndarray:
        """Predicted members of the target: ``scores >= threshold`` (all False for a NaN threshold)."""
        return self.scores >= self.threshold


def run_attacks(target_logits, target_loss, labels, ref_logits, ref_loss, protocol: Protocol, *,
                attacks=None, options: AttackOptions | None = None, **kw) -> dict[str, AttackResult]:
    """Run ``attacks`` on one target model: logits (N, K) or (N, Q, K) and per-example losses (N,)
    of the target, (R, N[, Q], K) and (R, N) of the reference models, on the pool of ``protocol``.

    ``attacks=None``: every attack of :data:`ATTACKS` that ``protocol.n_ref`` allows (the
    others skipped, see :data:`MIN_REFS`); an explicit list raises ``ParameterError`` for an
    attack that cannot run. Each threshold is :func:`choose_threshold` on the reference models'
    leave-one-out scores (:func:`reference_scores`) -- never on the target's membership. The
    conventions: ``options`` (:class:`AttackOptions`) or its fields as keywords; ``seed``
    defaults to ``protocol.seed`` (or 0). RMIA's ``non_members`` population is each attacked
    model's own non-members (the target's ``~protocol.members``; a reference model's OUT points in
    the leave-one-out).
    """
    if not isinstance(protocol, Protocol):
        raise ParameterError(f"protocol must be an lfakit.attacks.Protocol, got {type(protocol).__name__}")
    if "seed" not in kw or kw["seed"] is None:
        kw = {**kw, "seed": protocol.seed if protocol.seed is not None else 0}
    o = _options(options, kw)
    tz, tl, y, rz, rl, m = _check_outputs(target_logits, target_loss, labels, ref_logits, ref_loss, protocol.ref_in)
    if len(y) != protocol.n_pool:
        raise ParameterError(f"the outputs cover {len(y)} points but the protocol's pool has {protocol.n_pool}")
    R = protocol.n_ref
    if attacks is None:
        names = [a for a in ATTACKS if R >= _min_refs(a, o)]
    else:
        names = list(attacks)
        for a in names:
            if a not in MIN_REFS:
                raise ParameterError(f"unknown attack {a!r}; choose from {', '.join(ATTACKS)}")
            if R < _min_refs(a, o):
                raise ParameterError(f"attack {a!r} needs at least {_min_refs(a, o)} reference models, the protocol "
                                     f"has {R}")
    out = {}
    for a in names:
        t = _statistic(a, tz[None], tl[None], y, o)[0]
        ref = _statistic(a, rz, rl, y, o) if R else None
        scores = _score(a, t, ref, m, o, protocol.members)
        if R:
            ref_scores, ref_is_member = _loo(a, ref, m, o)
            threshold = choose_threshold(ref_scores, ref_is_member)
        else:
            ref_scores, ref_is_member, threshold = np.zeros(0), np.zeros(0, dtype=bool), float("nan")
        out[a] = AttackResult(a, scores, ref_scores, ref_is_member, threshold, o.record(a))
    return out


def attack_targets(logits, loss, labels, in_train, targets, *, attacks=None, options: AttackOptions | None = None,
                   **kw) -> dict[int, dict[str, AttackResult]]:
    """Several targets from one set of trained models: ``logits`` (M, N[, Q], K), ``loss`` (M, N)
    and ``in_train`` (M, N) of every model; for each index ``t`` of ``targets``, model ``t`` is
    attacked with the other ``M - 1`` as its references (:func:`run_attacks`, thresholds from their
    own leave-one-out) -- the leave-one-out over models that LiRA's ``plot.py`` (``ntest`` models
    held out) and the RMIA paper code (``target_idx``: every model in turn) use to average over
    targets. Returns ``{t: {attack: AttackResult}}``."""
    z = _logits4(logits, "logits")
    l = _float_array(loss, "loss", 2)
    m = _bool_array(in_train, "in_train", 2)
    M = m.shape[0]
    if z.shape[:2] != m.shape or l.shape != m.shape:
        raise ParameterError(f"logits {z.shape}, loss {l.shape} and in_train {m.shape} do not match")
    idx = [int(t) for t in targets]
    if not idx or any(not (0 <= t < M) for t in idx) or len(set(idx)) != len(idx):
        raise ParameterError(f"targets must be distinct model indices in [0, {M - 1}], got {list(targets)}")
    seed = kw.pop("seed", None)
    out = {}
    for t in idx:
        rest = np.delete(np.arange(M), t)
        proto = Protocol(m[t], m[rest], seed)
        out[t] = run_attacks(z[t], l[t], labels, z[rest], l[rest], proto, attacks=attacks, options=options,
                             seed=seed, **kw)
    return out
