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
  First Principles", LiRA): statistic ``phi = log(p_y / (1 - p_y))`` (the logit-scaled
  true-class confidence, ``research/mi_lira_2021/score.py``), Gaussians fitted per example to
  the reference models' ``phi`` where IN and where OUT. Online:
  ``log N(phi; mu_in, s_in) - log N(phi; mu_out, s_out)``. Offline: the one-sided test of the
  paper's Algorithm 1, ``Lambda = Pr[Z < phi]`` with ``Z ~ N(mu_out, s_out^2)``; see :func:`lira`.
  One query per example: the reference code averages ``p_y`` over augmented copies (flips,
  shifts) before the log-odds; the kit's saved outputs hold one un-augmented logit vector.
* ``rmia`` (Zarifzadeh et al. 2024, "Low-Cost High-Power Membership Inference Attacks"):
  ``ratio(x) = p(x | theta_target) / Pr(x)`` with ``Pr(x)`` the mean over reference models of
  ``p(x | theta_ref)``, and ``score(x) = Pr_z[ratio(x) / ratio(z) >= gamma]`` over a population
  of points ``z``; see :func:`rmia`.

Thresholds (:func:`choose_threshold`) are chosen on the **reference models' own outputs**
(:func:`reference_scores`, leave-one-out: reference model ``r`` is attacked with the other
``R - 1`` as its references, labelled with ``ref_in[r]``), never on the target's members.
:func:`run_attacks` runs a set of attacks on one target and returns :class:`AttackResult` s.

Minimum reference models (:data:`MIN_REFS`): ``loss`` and ``confidence`` need none (with
``R = 0`` there is no reference data, and their threshold is NaN); ``shadow``, ``lira_online``,
``lira_offline`` and ``rmia`` need ``R >= 2`` (the leave-one-out scoring of the references must
keep at least one model). With the balanced protocol and ``R >= 4``, every example keeps at least
one IN and one OUT model in the leave-one-out; with ``R = 2`` (and for the target with ``R = 1``)
an example misses its IN or OUT models there, and the documented global fall-backs are used.
"""

from __future__ import annotations

from dataclasses import dataclass, field

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


def _logits_labels(logits, labels) -> tuple[np.ndarray, np.ndarray]:
    z = _float_array(logits, "logits", 2)
    y = _to_numpy(labels)
    if y.ndim != 1 or len(y) != len(z):
        raise ParameterError(f"labels must be 1-D of length {len(z)}, got shape {y.shape}")
    if y.size and not np.issubdtype(y.dtype, np.integer):
        raise ParameterError(f"labels must be integers, got dtype {y.dtype}")
    if z.shape[1] < 2:
        raise ParameterError(f"logits need at least 2 classes, got {z.shape[1]}")
    if y.size and (y.min() < 0 or y.max() >= z.shape[1]):
        raise ParameterError(f"labels must lie in [0, {z.shape[1] - 1}]")
    return z, y.astype(np.int64)


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
def _true_class_log_probability(z: np.ndarray, y: np.ndarray) -> np.ndarray:
    return z[np.arange(len(y)), y] - logsumexp(z, axis=1)


def true_class_probability(logits, labels) -> np.ndarray:
    """Softmax probability of the true class, ``exp(z_y - logsumexp(z))`` (stable)."""
    z, y = _logits_labels(logits, labels)
    return np.exp(_true_class_log_probability(z, y))


def _phi(z: np.ndarray, y: np.ndarray) -> np.ndarray:
    rows = np.arange(len(y))
    others = z.copy()
    others[rows, y] = -np.inf
    return z[rows, y] - logsumexp(others, axis=1)


def true_class_logit_confidence(logits, labels) -> np.ndarray:
    """LiRA's statistic ``phi = log(p_y / (1 - p_y))``, computed stably from the logits as
    ``z_y - logsumexp_{k != y} z_k`` (``p_y / (1 - p_y) = exp(z_y) / sum_{k != y} exp(z_k)``);
    finite for any finite logits."""
    z, y = _logits_labels(logits, labels)
    return _phi(z, y)


# --------------------------------------------------------------------------- attacks
def loss_attack(sample_loss) -> np.ndarray:
    """Yeom et al. 2018: ``-loss`` (a low training loss suggests a member)."""
    return -_float_array(sample_loss, "sample_loss", 1)


def confidence_attack(logits, labels) -> np.ndarray:
    """The true-class softmax probability."""
    return true_class_probability(logits, labels)


def _check_refs(target: np.ndarray, ref: np.ndarray, ref_in, what: str) -> np.ndarray:
    ref_in = _bool_array(ref_in, "ref_in", 2)
    if ref.shape != ref_in.shape or ref.shape[1:] != target.shape:
        raise ParameterError(f"{what}: reference values {ref.shape}, ref_in {ref_in.shape} and target {target.shape} "
                             "do not match (expected (R, N), (R, N) and (N,))")
    if ref.shape[0] < 1:
        raise ParameterError(f"{what} needs at least one reference model")
    return ref_in


def _gaussian(ref_phi: np.ndarray, mask: np.ndarray, center: str, fixed_variance: bool, side: str):
    """Per-example location and scale of ``ref_phi`` where ``mask`` (R, N), with fall-backs."""
    if not mask.any():
        raise ParameterError(f"LiRA: no reference model is {side} for any example; cannot fit the {side} Gaussian")
    vals = ref_phi[mask]
    g_mu = float(np.median(vals) if center == "median" else vals.mean())
    g_sd = float(vals.std())
    n = mask.sum(0)
    have = n > 0
    mu = np.full(ref_phi.shape[1], g_mu)
    s = np.where(mask, ref_phi, 0.0).sum(0)
    mean = np.divide(s, n, out=np.zeros_like(s), where=have)
    if center == "median":
        masked = np.where(mask[:, have], ref_phi[:, have], np.nan)
        mu[have] = np.nanmedian(masked, axis=0)
    else:
        mu[have] = mean[have]
    if fixed_variance:
        sd = np.full(ref_phi.shape[1], g_sd)
    else:
        sq = np.where(mask, (ref_phi - mean[None, :]) ** 2, 0.0).sum(0)
        sd = np.where(n >= 2, np.sqrt(np.divide(sq, n, out=np.zeros_like(sq), where=have)), g_sd)
    return mu, np.maximum(sd, MIN_STD)


def lira(target_phi, ref_phi, ref_in, *, online: bool = True, fixed_variance: bool = False,
         center: str = "mean") -> np.ndarray:
    """LiRA (Carlini et al. 2022) on the statistic ``phi`` (:func:`true_class_logit_confidence`).

    ``target_phi`` (N,) of the attacked model; ``ref_phi`` (R, N) and ``ref_in`` (R, N) of the
    reference models. Per example, the reference ``phi`` values where IN (resp. OUT) give
    ``mu_in, s_in`` (resp. ``mu_out, s_out``): ``mu`` the mean (``center="median"``: the median,
    as the reference code ``research/mi_lira_2021/plot.py`` does), ``s`` the standard deviation
    (ddof 0, as ``np.std`` there). ``fixed_variance``: one global ``s_in`` (``s_out``) for all
    examples, the standard deviation of all IN (OUT) values pooled over examples and models, as
    ``plot.py``'s ``fix_variance`` does (which, in its online attack, uses the IN value for both
    sides; here each side has its own). Scales are floored at :data:`MIN_STD`.

    * online: ``log N(phi; mu_in, s_in) - log N(phi; mu_out, s_out)``;
    * offline (``online=False``): the paper's one-sided test against the OUT Gaussian,
      ``Lambda = Pr[Z < phi] = Phi((phi - mu_out) / s_out)`` (Algorithm 1, ``1 - Pr[Z > phi]``).
      Returned as the standardized statistic ``(phi - mu_out) / s_out``, a strictly increasing
      transform of ``Lambda`` with the same ranking (ROC, AUC, TPR at any FPR), which does not
      saturate at 1 in float for the most exposed examples. (The public ``plot.py`` ranks
      offline by ``-log N(phi; mu_out, s_out)``, a two-sided variant; the paper's test is used.)

    Fall-backs, never NaN: an example with no IN (no OUT) reference model takes the global
    location and scale of all IN (OUT) values; one with a single IN (OUT) model takes its value
    as location and the global scale. Online needs at least one IN and one OUT value overall,
    offline at least one OUT value.
    """
    if center not in ("mean", "median"):
        raise ParameterError(f"center must be 'mean' or 'median', got {center!r}")
    t = _float_array(target_phi, "target_phi", 1)
    r = _float_array(ref_phi, "ref_phi", 2)
    m = _check_refs(t, r, ref_in, "lira")
    mu_out, sd_out = _gaussian(r, ~m, center, fixed_variance, "OUT")
    z_out = (t - mu_out) / sd_out
    if not online:
        return z_out
    mu_in, sd_in = _gaussian(r, m, center, fixed_variance, "IN")
    z_in = (t - mu_in) / sd_in
    return (-0.5 * z_in**2 - np.log(sd_in)) - (-0.5 * z_out**2 - np.log(sd_out))


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


def _rmia_marginal(ref_p: np.ndarray, ref_in: np.ndarray, offline_a) -> np.ndarray:
    if offline_a is None:
        return ref_p.mean(0)
    out = ~ref_in
    if not out.any():
        raise ParameterError("RMIA offline: no reference model is OUT for any example")
    n_out = out.sum(0)
    s = np.where(out, ref_p, 0.0).sum(0)
    pr_out = np.full(ref_p.shape[1], float(ref_p[out].mean()))
    np.divide(s, n_out, out=pr_out, where=n_out > 0)
    return ((1.0 + offline_a) * pr_out + (1.0 - offline_a)) / 2.0


def _rmia_scores(log_ratio: np.ndarray, pop: np.ndarray, gamma: float) -> np.ndarray:
    sorted_pop = np.sort(log_ratio[pop])
    thr = log_ratio - np.log(gamma)  # ratio(x) / ratio(z) >= gamma  <=>  log ratio(z) <= thr(x)
    count = np.searchsorted(sorted_pop, thr, side="right").astype(np.float64)
    in_pop = np.zeros(len(log_ratio), dtype=bool)
    in_pop[pop] = True
    count -= in_pop & (log_ratio <= thr)  # x compared with itself: excluded
    denom = len(pop) - in_pop
    if (denom == 0).any():
        raise ParameterError("the RMIA population must hold at least one point other than the scored one")
    return count / denom


def rmia(target_p, ref_p, ref_in, population=None, *, gamma: float = 1.0, offline_a: float | None = None) -> np.ndarray:
    """RMIA (Zarifzadeh et al. 2024) on ``p(x | theta)``, the true-class probability.

    ``target_p`` (N,) of the attacked model; ``ref_p`` and ``ref_in`` (R, N) of the references.
    ``Pr(x)``: online (``offline_a=None``) the mean of ``p(x | theta_ref)`` over **all**
    reference models; offline (``offline_a = a`` in [0, 1]) from the **OUT** models only,
    ``Pr(x) = ((1 + a) Pr_OUT(x) + (1 - a)) / 2`` with ``Pr_OUT(x)`` their mean (the paper's
    offline approximation, as ``modules/mia/attacks/rmia.py`` of ml_privacy_meter; an example
    with no OUT model takes the mean over all OUT entries). ``ratio(x) = p(x | theta_target) / Pr(x)``
    and ``score(x) = #{z in population, z != x : ratio(x) / ratio(z) >= gamma} / #{z != x}``.

    ``population``: indices into the N points (duplicates dropped) or a bool mask (N,); None:
    all N points. The points ``z`` are scored the same way (same ``Pr``); the scored point
    itself is excluded from its own comparison (so a population may overlap the scored points,
    and the default compares every point with every other one, using no membership label).
    Comparisons run in log space (``log ratio(z) <= log ratio(x) - log gamma``), with
    probabilities floored at the smallest positive float; sorting + ``searchsorted``, no N x Z
    matrix. (ml_privacy_meter counts ``ratio(x)/ratio(z) > 1``, strictly, with gamma fixed at 1;
    the paper's ``>= gamma`` is used here; they differ only on exact ties.)
    """
    if isinstance(gamma, bool) or not np.isfinite(gamma) or gamma <= 0:
        raise ParameterError(f"gamma must be a positive number, got {gamma!r}")
    if offline_a is not None and not (0.0 <= offline_a <= 1.0):
        raise ParameterError(f"offline_a must lie in [0, 1] (or be None for online RMIA), got {offline_a!r}")
    t = _float_array(target_p, "target_p", 1)
    r = _float_array(ref_p, "ref_p", 2)
    m = _check_refs(t, r, ref_in, "rmia")
    if t.min(initial=0) < 0 or t.max(initial=0) > 1 or r.min(initial=0) < 0 or r.max(initial=0) > 1:
        raise ParameterError("RMIA probabilities must lie in [0, 1]")
    pop = _population_indices(population, len(t))
    pr = _rmia_marginal(r, m, offline_a)
    log_ratio = np.log(np.maximum(t, _TINY)) - np.log(np.maximum(pr, _TINY))
    return _rmia_scores(log_ratio, pop, float(gamma))


def shadow_features(logits, labels, sample_loss=None) -> np.ndarray:
    """Per-example features of the shadow attack, (N, F): the ``min(3, K)`` largest
    log-softmax values in decreasing order, the true-class log-probability, LiRA's ``phi``
    (true-class log-odds), and, when given, the model's own per-example training loss (the
    kit compares losses other than cross-entropy, so it is not implied by the probabilities)."""
    z, y = _logits_labels(logits, labels)
    logp = z - logsumexp(z, axis=1, keepdims=True)
    k = min(3, z.shape[1])
    top = -np.sort(-logp, axis=1)[:, :k]
    cols = [top, logp[np.arange(len(y)), y][:, None], _phi(z, y)[:, None]]
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
@dataclass
class _Options:
    fixed_variance: bool = False
    lira_center: str = "mean"
    rmia_gamma: float = 1.0
    rmia_offline_a: float | None = None
    population: object = None
    seed: int = 0
    shadow_max_rows: int = 200_000


def _statistic(attack: str, logits: np.ndarray, loss: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The per-model input of an attack; ``logits`` (M, N, K), ``loss`` (M, N)."""
    if attack == "loss":
        return -loss
    if attack in ("confidence", "rmia"):
        return np.stack([np.exp(_true_class_log_probability(z, labels)) for z in logits])
    if attack in ("lira_online", "lira_offline"):
        return np.stack([_phi(z, labels) for z in logits])
    if attack == "shadow":
        return np.stack([shadow_features(z, labels, l) for z, l in zip(logits, loss)])
    raise ParameterError(f"unknown attack {attack!r}; choose from {', '.join(ATTACKS)}")


def _score(attack: str, target, ref, ref_in: np.ndarray, o: _Options) -> np.ndarray:
    """Scores of the model with statistic ``target`` given references ``ref`` / ``ref_in``."""
    if attack in ("loss", "confidence"):
        return target
    if attack == "lira_online":
        return lira(target, ref, ref_in, online=True, fixed_variance=o.fixed_variance, center=o.lira_center)
    if attack == "lira_offline":
        return lira(target, ref, ref_in, online=False, fixed_variance=o.fixed_variance, center=o.lira_center)
    if attack == "rmia":
        return rmia(target, ref, ref_in, o.population, gamma=o.rmia_gamma, offline_a=o.rmia_offline_a)
    return shadow_attack(ref, ref_in, target, seed=o.seed, max_rows=o.shadow_max_rows)


def _loo(attack: str, ref, ref_in: np.ndarray, o: _Options) -> tuple[np.ndarray, np.ndarray]:
    R = ref_in.shape[0]
    if attack in ("loss", "confidence"):
        return ref.reshape(-1), ref_in.reshape(-1)
    if R < MIN_REFS[attack]:
        raise ParameterError(f"attack {attack!r} needs at least {MIN_REFS[attack]} reference models, got {R}")
    out = [_score(attack, ref[r], np.delete(ref, r, axis=0), np.delete(ref_in, r, axis=0), o) for r in range(R)]
    return np.concatenate(out), ref_in.reshape(-1)


def _check_outputs(target_logits, target_loss, labels, ref_logits, ref_loss, ref_in):
    tz, y = _logits_labels(target_logits, labels)
    n, k = tz.shape
    tl = _float_array(target_loss, "target_loss", 1)
    rz = _to_numpy(ref_logits)
    rz = np.zeros((0, n, k)) if rz.size == 0 else _float_array(rz, "ref_logits", 3)
    rl = _to_numpy(ref_loss)
    rl = np.zeros((0, n)) if rl.size == 0 else _float_array(rl, "ref_loss", 2)
    m = _bool_array(ref_in if _to_numpy(ref_in).size else np.zeros((0, n), bool), "ref_in", 2)
    R = m.shape[0]
    if tl.shape != (n,) or rz.shape != (R, n, k) or rl.shape != (R, n) or m.shape != (R, n):
        raise ParameterError(f"shapes do not match: target logits {tz.shape}, target loss {tl.shape}, ref logits "
                             f"{rz.shape}, ref loss {rl.shape}, ref_in {m.shape} (expected (N, K), (N,), (R, N, K), "
                             "(R, N), (R, N))")
    if R:
        _logits_labels(rz[0], y)
    return tz, tl, y, rz, rl, m


def attack_scores(attack: str, target_logits, target_loss, labels, ref_logits, ref_loss, ref_in, *,
                  fixed_variance: bool = False, lira_center: str = "mean", rmia_gamma: float = 1.0,
                  rmia_offline_a: float | None = None, population=None, seed: int = 0,
                  shadow_max_rows: int = 200_000) -> np.ndarray:
    """One attack's scores (N,) on the target model, with all ``R`` reference models."""
    tz, tl, y, rz, rl, m = _check_outputs(target_logits, target_loss, labels, ref_logits, ref_loss, ref_in)
    o = _Options(fixed_variance, lira_center, rmia_gamma, rmia_offline_a, population, seed, shadow_max_rows)
    if m.shape[0] < MIN_REFS.get(attack, 0):
        raise ParameterError(f"attack {attack!r} needs at least {MIN_REFS[attack]} reference models, got {m.shape[0]}")
    t = _statistic(attack, tz[None], tl[None], y)[0]
    return _score(attack, t, _statistic(attack, rz, rl, y) if m.shape[0] else None, m, o)


def reference_scores(attack: str, ref_logits, ref_loss, labels, ref_in, *, fixed_variance: bool = False,
                     lira_center: str = "mean", rmia_gamma: float = 1.0, rmia_offline_a: float | None = None,
                     population=None, seed: int = 0, shadow_max_rows: int = 200_000) -> tuple[np.ndarray, np.ndarray]:
    """One attack's scores on the reference models' own outputs, leave-one-out (model ``r``
    attacked with the other ``R - 1`` as its references; ``loss`` and ``confidence`` need no
    references), with their labels ``ref_in[r]``; both flattened model-major, shape (R * N,)."""
    ref_logits = _to_numpy(ref_logits)
    if ref_logits.ndim != 3 or ref_logits.shape[0] == 0:
        raise ParameterError(f"reference_scores needs ref_logits of shape (R >= 1, N, K), got {ref_logits.shape}")
    rz = _float_array(ref_logits, "ref_logits", 3)
    _, y = _logits_labels(rz[0], labels)
    rl = _float_array(ref_loss, "ref_loss", 2)
    m = _bool_array(ref_in, "ref_in", 2)
    if rl.shape != m.shape or rz.shape[:2] != m.shape:
        raise ParameterError(f"ref_logits {rz.shape}, ref_loss {rl.shape} and ref_in {m.shape} do not match")
    o = _Options(fixed_variance, lira_center, rmia_gamma, rmia_offline_a, population, seed, shadow_max_rows)
    return _loo(attack, _statistic(attack, rz, rl, y), m, o)


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
                attacks=None, fixed_variance: bool = False, lira_center: str = "mean", rmia_gamma: float = 1.0,
                rmia_offline_a: float | None = None, population=None, seed: int | None = None,
                shadow_max_rows: int = 200_000) -> dict[str, AttackResult]:
    """Run ``attacks`` on one target model: logits (N, K) and per-example losses (N,) of the
    target, (R, N, K) and (R, N) of the reference models, on the pool of ``protocol``.

    ``attacks=None``: every attack of :data:`ATTACKS` that ``protocol.n_ref`` allows (the
    others skipped, see :data:`MIN_REFS`); an explicit list raises ``ParameterError`` for an
    attack that cannot run. Each threshold is :func:`choose_threshold` on the reference models'
    leave-one-out scores (:func:`reference_scores`) -- never on the target's membership.
    ``rmia_offline_a=None``: online RMIA; ``population``: see :func:`rmia` (None: every pool
    point, each compared with all the others). ``seed`` (default ``protocol.seed`` or 0): the
    shadow classifier's.
    """
    if not isinstance(protocol, Protocol):
        raise ParameterError(f"protocol must be an lfakit.attacks.Protocol, got {type(protocol).__name__}")
    tz, tl, y, rz, rl, m = _check_outputs(target_logits, target_loss, labels, ref_logits, ref_loss, protocol.ref_in)
    if len(y) != protocol.n_pool:
        raise ParameterError(f"the outputs cover {len(y)} points but the protocol's pool has {protocol.n_pool}")
    R = protocol.n_ref
    if attacks is None:
        names = [a for a in ATTACKS if R >= MIN_REFS[a]]
    else:
        names = list(attacks)
        for a in names:
            if a not in MIN_REFS:
                raise ParameterError(f"unknown attack {a!r}; choose from {', '.join(ATTACKS)}")
            if R < MIN_REFS[a]:
                raise ParameterError(f"attack {a!r} needs at least {MIN_REFS[a]} reference models, the protocol has {R}")
    seed = (protocol.seed if protocol.seed is not None else 0) if seed is None else seed
    o = _Options(fixed_variance, lira_center, rmia_gamma, rmia_offline_a, population, seed, shadow_max_rows)
    out = {}
    for a in names:
        t = _statistic(a, tz[None], tl[None], y)[0]
        ref = _statistic(a, rz, rl, y) if R else None
        scores = _score(a, t, ref, m, o)
        if R:
            ref_scores, ref_is_member = _loo(a, ref, m, o)
            threshold = choose_threshold(ref_scores, ref_is_member)
        else:
            ref_scores, ref_is_member, threshold = np.zeros(0), np.zeros(0, dtype=bool), float("nan")
        opts = {"fixed_variance": fixed_variance, "lira_center": lira_center} if a.startswith("lira") else {}
        if a == "rmia":
            opts = {"gamma": rmia_gamma, "offline_a": rmia_offline_a}
        out[a] = AttackResult(a, scores, ref_scores, ref_is_member, threshold, opts)
    return out
