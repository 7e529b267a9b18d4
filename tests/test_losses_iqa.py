"""Tests for lfakit.losses.iqa and lfakit.metrics.iqa (spec: docs/losses.md section C).

Reference values come from plain Python loops over images / pairs with the ``math`` module in
double precision, independent of the vectorised implementations; the metrics are checked
against scipy.stats.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from scipy import stats

import lfakit.losses as L
from lfakit.errors import ParameterError
from lfakit.losses.iqa import average_rank, pair_indices, soft_rank
from lfakit.metrics import iqa as M

NAMES = ["l1", "l2", "plcc", "srcc", "rank", "rank_mos", "fidelity", "norm_in_norm"]
POINTWISE = {"l1", "l2"}
PAIRWISE = {"rank", "rank_mos", "fidelity"}
SETWISE = {"plcc", "srcc", "norm_in_norm"}

# Fixed inputs: distinct predictions (no kink of abs/hinge is hit) that are not in the MOS
# order everywhere (pairs (1, 4) and (0, 6) are swapped, with distinct gaps 0.15 and 0.21), a
# tie in the MOS (images 0 and 3), and an opinion-std vector with one pair (2, 6) of zero total
# std.
PRED = [0.31, -0.30, 2.05, 0.77, -0.45, 1.43, 0.52]
MOS = [3.1, 1.4, 4.6, 3.1, 2.2, 3.9, 2.7]
STD = [0.5, 0.8, 0.0, 0.6, 0.9, 0.4, 0.0]
N = len(PRED)


def tp(vals=PRED, requires_grad=False, dtype=torch.float64):
    return torch.tensor(vals, dtype=dtype, requires_grad=requires_grad)


def tq(vals=MOS):
    return torch.tensor(vals, dtype=torch.float64)


# ------------------------------------------------------------------------------------------
# plain references (one image / one pair at a time)
# ------------------------------------------------------------------------------------------
def Phi(x):
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


def sigmoid(x):
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


def pairs(n):
    return [(i, j) for i in range(n) for j in range(i + 1, n)]


def ref_l1(p, q):
    return sum(abs(a - b) for a, b in zip(p, q)) / len(p)


def ref_l2(p, q):
    return sum((a - b) ** 2 for a, b in zip(p, q)) / len(p)


def ref_pearson(x, y, eps=0.0):
    mx, my = sum(x) / len(x), sum(y) / len(y)
    sxy = sum((a - mx) * (b - my) for a, b in zip(x, y))
    sxx = sum((a - mx) ** 2 for a in x)
    syy = sum((b - my) ** 2 for b in y)
    return sxy / (math.sqrt(sxx + eps) * math.sqrt(syy))


def ref_plcc(p, q, eps=0.0):
    return 1.0 - ref_pearson(p, q, eps)


def ref_soft_rank(p, T):
    return [0.5 + sum(sigmoid((p[i] - p[j]) / T) for j in range(len(p))) for i in range(len(p))]


def ref_avg_rank(q):
    out = []
    for i in range(len(q)):
        less = sum(1 for j in range(len(q)) if q[j] < q[i])
        eq = sum(1 for j in range(len(q)) if q[j] == q[i])
        out.append(less + (eq + 1) / 2)
    return out


def ref_srcc(p, q, T, eps=0.0):
    return 1.0 - ref_pearson(ref_soft_rank(p, T), ref_avg_rank(q), eps)


def ref_rank_terms(p, q):
    out = []
    for i, j in pairs(len(p)):
        e = 1.0 if p[i] >= p[j] else -1.0
        out.append(max(0.0, abs(p[i] - p[j]) - e * (q[i] - q[j])))
    return out


def sign(x):
    return (x > 0) - (x < 0)


def ref_rank_mos_terms(p, q, scaled=True):
    out = [max(0.0, -sign(q[i] - q[j]) * (p[i] - p[j])) for i, j in pairs(len(p))]
    top = max(out)
    return [t / (1.0 + top) for t in out] if scaled else out


def ref_fidelity_terms(p, q, s=None, sig=None, sigma=1.0, eps=1e-8):
    out = []
    for i, j in pairs(len(p)):
        si, sj = (sigma, sigma) if sig is None else (sig[i], sig[j])
        ph = Phi((p[i] - p[j]) / math.sqrt(si**2 + sj**2))
        if s is not None and s[i] ** 2 + s[j] ** 2 > 0:
            pt = Phi((q[i] - q[j]) / math.sqrt(s[i] ** 2 + s[j] ** 2))
        else:
            pt = 1.0 if q[i] > q[j] else (0.5 if q[i] == q[j] else 0.0)
        out.append(1 - math.sqrt(pt * ph + eps) - math.sqrt((1 - pt) * (1 - ph) + eps))
    return out


def ref_norm_in_norm(p, q, pp=1.0, qq=2.0, eps=0.0):
    n = len(p)
    mp, mq = sum(p) / n, sum(q) / n
    a = [x - mp for x in p]
    b = [x - mq for x in q]
    na = (sum(abs(x) ** qq for x in a) + eps) ** (1 / qq)
    nb = sum(abs(x) ** qq for x in b) ** (1 / qq)
    a = [x / na for x in a]
    b = [x / nb for x in b]
    S = 2 ** max(1, 1 / qq) * n ** max(0, 1 / pp - 1 / qq)
    norm = sum(abs(x - y) ** pp for x, y in zip(a, b)) ** (1 / pp)
    return (norm / S) ** pp


def mean(v):
    return sum(v) / len(v)


# (id, name, kwargs, reference(p, q, s), forward extras)
CASES = [
    ("l1", "l1", {}, lambda p, q: ref_l1(p, q)),
    ("l2", "l2", {}, lambda p, q: ref_l2(p, q)),
    ("plcc", "plcc", {}, lambda p, q: ref_plcc(p, q, 1e-8)),
    ("plcc_eps0", "plcc", {"eps": 0.0}, lambda p, q: ref_plcc(p, q)),
    ("plcc_halved", "plcc", {"halved": True}, lambda p, q: ref_plcc(p, q, 1e-8) / 2),
    ("srcc", "srcc", {}, lambda p, q: ref_srcc(p, q, 0.1, 1e-8)),
    ("srcc_T0.7", "srcc", {"temperature": 0.7, "eps": 0.0}, lambda p, q: ref_srcc(p, q, 0.7)),
    ("rank", "rank", {}, lambda p, q: mean(ref_rank_terms(p, q))),
    ("rank_mos", "rank_mos", {}, lambda p, q: mean(ref_rank_mos_terms(p, q))),
    ("rank_mos_detached", "rank_mos", {"detach_scale": True},
     lambda p, q: mean(ref_rank_mos_terms(p, q))),
    ("rank_mos_unscaled", "rank_mos", {"scaled": False},
     lambda p, q: mean(ref_rank_mos_terms(p, q, scaled=False))),
    ("fidelity", "fidelity", {}, lambda p, q: mean(ref_fidelity_terms(p, q))),
    ("fidelity_sigma", "fidelity", {"sigma": 0.3, "eps": 1e-6},
     lambda p, q: mean(ref_fidelity_terms(p, q, sigma=0.3, eps=1e-6))),
    ("nin", "norm_in_norm", {}, lambda p, q: ref_norm_in_norm(p, q, eps=1e-8)),
    ("nin_p2q2", "norm_in_norm", {"p": 2, "q": 2, "eps": 0.0},
     lambda p, q: ref_norm_in_norm(p, q, 2, 2)),
    ("nin_p1.5q3", "norm_in_norm", {"p": 1.5, "q": 3, "eps": 0.0},
     lambda p, q: ref_norm_in_norm(p, q, 1.5, 3)),
]
CASE_IDS = [c[0] for c in CASES]


# ------------------------------------------------------------------------------------------
# registry
# ------------------------------------------------------------------------------------------
def test_registry_lists_iqa_losses():
    assert L.available("iqa") == sorted(NAMES)
    for name in NAMES:
        assert L.task_of(name) == "iqa"


def test_build_rejects_unknown_argument():
    with pytest.raises(ParameterError, match="temperature"):
        L.build("srcc", temprature=0.1)


@pytest.mark.parametrize(
    "name,kw",
    [("srcc", {"temperature": 0}), ("srcc", {"temperature": -1.0}), ("plcc", {"eps": -1e-8}),
     ("plcc", {"halved": 1}), ("norm_in_norm", {"p": 0.5}), ("norm_in_norm", {"q": 0.9}),
     ("fidelity", {"sigma": 0.0}), ("rank", {"reduction": "avg"}), ("rank_mos", {"scaled": 1}),
     ("rank_mos", {"detach_scale": "yes"})],
)
def test_bad_parameters_raise(name, kw):
    with pytest.raises(ValueError):
        L.build(name, **kw)


# ------------------------------------------------------------------------------------------
# values against the per-pair loop references (float64)
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cid,name,kw,ref", CASES, ids=CASE_IDS)
def test_value_equals_loop_reference(cid, name, kw, ref):
    got = L.build(name, **kw)(tp(), tq())
    assert got.dtype == torch.float64 and got.ndim == 0
    assert math.isclose(got.item(), ref(PRED, MOS), rel_tol=1e-12, abs_tol=1e-14)


def test_fidelity_with_opinion_std_equals_reference():
    loss = L.build("fidelity", reduction="none")
    got = loss(tp(), tq(), std=tq(STD))
    want = ref_fidelity_terms(PRED, MOS, s=STD)
    torch.testing.assert_close(got, tq(want), rtol=1e-12, atol=1e-14)
    # pair (2, 6) has s_2 = s_6 = 0: hard label (mos_2 > mos_6 -> p = 1), not a NaN
    i, j = pair_indices(N)
    k = int(((i == 2) & (j == 6)).nonzero())
    hard = ref_fidelity_terms([PRED[2], PRED[6]], [MOS[2], MOS[6]])[0]
    assert math.isclose(got[k].item(), hard, rel_tol=1e-12)
    # the std changes the targets: different from the hard-label loss
    assert not torch.allclose(got, loss(tp(), tq()))


def test_fidelity_with_predicted_std_equals_reference():
    sig = [0.7, 1.1, 0.4, 0.9, 1.3, 0.5, 0.8]
    got = L.build("fidelity")(tp(), tq(), std=tq(STD), pred_std=tq(sig))
    want = mean(ref_fidelity_terms(PRED, MOS, s=STD, sig=sig))
    assert math.isclose(got.item(), want, rel_tol=1e-12)


def test_plcc_forms_against_scipy():
    rho = stats.pearsonr(PRED, MOS).statistic
    full = L.build("plcc", eps=0.0)(tp(), tq()).item()
    half = L.build("plcc", eps=0.0, halved=True)(tp(), tq()).item()
    assert math.isclose(full, 1 - rho, rel_tol=1e-12)
    assert math.isclose(half, (1 - rho) / 2, rel_tol=1e-12)  # the toolbox form
    # the default eps only perturbs rho by ~eps / (2 |a|^2)
    assert math.isclose(L.build("plcc")(tp(), tq()).item(), 1 - rho, rel_tol=0, abs_tol=1e-8)


def test_norm_in_norm_p2_q2_is_half_one_minus_pearson():
    rho = stats.pearsonr(PRED, MOS).statistic
    got = L.build("norm_in_norm", p=2, q=2, eps=0.0)(tp(), tq()).item()
    assert math.isclose(got, (1 - rho) / 2, rel_tol=1e-12)
    # and with the default eps, to ~1e-8
    got = L.build("norm_in_norm", p=2, q=2)(tp(), tq()).item()
    assert math.isclose(got, (1 - rho) / 2, rel_tol=1e-7)


def test_norm_in_norm_bounded_by_one():
    # S is the largest possible ||a - b||_p: exactly anti-correlated scores reach 1 at p=q=2
    loss = L.build("norm_in_norm", p=2, q=2, eps=0.0)
    assert math.isclose(loss(-tq(), tq()).item(), 1.0, rel_tol=1e-12)
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        p, q = torch.randn(16, generator=g, dtype=torch.float64), torch.randn(16, generator=g)
        assert 0.0 <= L.build("norm_in_norm")(p, q).item() <= 1.0


def test_rank_loss_zero_iff_consistent_and_not_overshooting():
    # predicted gaps never larger than the MOS gaps, same order: every hinge is 0
    q = tq([1.0, 2.0, 4.0, 7.0])
    assert L.build("rank", reduction="sum")(0.5 * q, q).item() == 0.0
    # a swapped pair costs |dpred| + |dmos|
    got = L.build("rank", reduction="none")(tp([2.0, 1.0]), tq([1.0, 3.0]))
    assert got.tolist() == [1.0 + 2.0]


def _linearityiqa_monotonicity(p, q, p_scale=None):
    """LinearityIQA's monotonicity term, transcribed from its rule on the N x N matrix.

    Source: github.com/lidq92/LinearityIQA, ``IQAloss.py``, ``monotonicity_regularization``
    (read at commit cbed5e8): ``r = relu((y_pred - y_pred.t()) * sign(y.t() - y))`` on (N, 1)
    columns, i.e. ``r[i, j] = max(0, (p_i - p_j) sign(q_j - q_i))``; the value is
    ``sum(r) / N / (N - 1) / (1 + max(r))``, the scale not detached under its default
    ``detach=False``. ``p_scale`` (None: ``p``) are the predictions the scale is computed from,
    so that holding them fixed gives the gradient of the detached variant.
    """
    n = len(p)

    def matrix(x):
        r = np.zeros((n, n))
        for i in range(n):
            for j in range(n):
                r[i, j] = max(0.0, (x[i] - x[j]) * np.sign(q[j] - q[i]))
        return r

    scale = 1.0 + matrix(p if p_scale is None else p_scale).max()
    return matrix(p).sum() / n / (n - 1) / scale


def _pyiqa_rank_loss(p, q, p_scale=None):
    """pyiqa's ``RankLoss``, transcribed from its rule on the N x N matrix.

    Source: github.com/chaofengc/IQA-PyTorch, ``pyiqa/losses/iqa_losses.py``, ``RankLoss``
    (read at commit 01ae427): the same matrix ``r`` as LinearityIQA's (which it cites), the value
    ``mean(r) / (1 + max(r))`` -- the mean over all N^2 entries, the zero diagonal included --
    with the scale always detached (``torch.max(ranking_loss.detach())``; its ``detach``
    argument is unused). Here the scale is computed from ``p_scale`` (None: ``p``).
    """
    n = len(p)
    r = np.array([[max(0.0, (p[i] - p[j]) * np.sign(q[j] - q[i])) for j in range(n)]
                  for i in range(n)])
    src = p if p_scale is None else p_scale
    rs = np.array([[max(0.0, (src[i] - src[j]) * np.sign(q[j] - q[i])) for j in range(n)]
                   for i in range(n)])
    return r.sum() / (n * n) / (1.0 + rs.max())


def _central_difference(f, p, h=1e-6):
    g = np.zeros(len(p))
    for k in range(len(p)):
        up, down = p.copy(), p.copy()
        up[k] += h
        down[k] -= h
        g[k] = (f(up) - f(down)) / (2 * h)
    return g


@pytest.mark.parametrize("seed,n", [(0, 2), (1, 3), (2, 9), (3, 16), (4, 16), (5, 32)])
def test_rank_mos_equals_linearityiqa_and_pyiqa(seed, n):
    """``rank_mos`` against independent numpy transcriptions of the two references, on seeded
    inputs with tied MOS (MOS rounded to halves on 1-5), value and gradient in float64.

    * default (``detach_scale=False``) = LinearityIQA's ``monotonicity_regularization`` with
      its default ``detach=False``: value and full gradient;
    * ``detach_scale=True`` = LinearityIQA with ``detach=True``, and ``(N - 1) / N`` times it
      = pyiqa's ``RankLoss`` (mean over N^2 entries, scale detached).

    Reference gradients are central differences of the transcriptions (h = 1e-6; the detached
    scale held at the unperturbed predictions), so they share no code with the kit's autograd.
    Tolerances: values rel 1e-12; gradients abs 1e-8 (the difference quotient's rounding,
    about 1e-16 / h, and its O(h^2) truncation on a piecewise rational function). The inputs are
    checked to keep every misordered pair's gap and the top term's lead above 1e-4, so no kink
    lies within h.
    """
    rng = np.random.default_rng(seed)
    q = np.round(rng.uniform(1, 5, n) * 2) / 2
    p = q + rng.normal(0, 1.0, n)  # many pairs misordered
    if n == 2:
        q, p = np.array([3.5, 2.0]), np.array([0.4, 1.1])  # the one pair misordered
    if n >= 9:
        assert len(np.unique(q)) < n  # tied MOS present
    terms = sorted(max(0.0, -np.sign(q[i] - q[j]) * (p[i] - p[j])) for i, j in pairs(n))
    assert terms[-1] > 1e-4 and (len(terms) == 1 or terms[-1] - terms[-2] > 1e-4)
    assert min(abs(p[i] - p[j]) for i, j in pairs(n)) > 1e-4

    def kit(detach_scale):
        x = torch.tensor(p, dtype=torch.float64, requires_grad=True)
        val = L.build("rank_mos", detach_scale=detach_scale)(x, torch.tensor(q))
        val.backward()
        return val.item(), x.grad.numpy()

    val, grad = kit(False)
    assert val == pytest.approx(_linearityiqa_monotonicity(p, q), rel=1e-12, abs=0)
    np.testing.assert_allclose(grad, _central_difference(lambda x: _linearityiqa_monotonicity(x, q), p),
                               rtol=0, atol=1e-8)

    val_d, grad_d = kit(True)
    assert val_d == val
    frozen = _central_difference(lambda x: _linearityiqa_monotonicity(x, q, p_scale=p), p)
    np.testing.assert_allclose(grad_d, frozen, rtol=0, atol=1e-8)
    assert (n - 1) / n * val_d == pytest.approx(_pyiqa_rank_loss(p, q), rel=1e-12, abs=0)
    pyiqa_grad = _central_difference(lambda x: _pyiqa_rank_loss(x, q, p_scale=p), p)
    np.testing.assert_allclose((n - 1) / n * grad_d, pyiqa_grad, rtol=0, atol=1e-8)
    assert np.abs(grad).max() > 1e-3  # not a vacuous comparison
    if n > 2:  # the detached scale changes the gradient (not only by a constant factor)
        assert np.abs(grad - grad_d).max() > 1e-6


def test_rank_mos_sign_from_mos_and_ties_masked():
    """How ``rank_mos`` differs from the study's ``rank`` (issue 26): the sign comes from the
    MOS, only the order counts, and a pair with tied MOS costs nothing."""
    study, field = L.build("rank", reduction="none"), L.build("rank_mos", reduction="none")
    q = tq([1.0, 2.0, 4.0])
    # in the MOS order, stretched: the study's rank pays for the overshoot, rank_mos nothing
    assert study(3.0 * q, q).sum().item() > 0 and field(3.0 * q, q).sum().item() == 0.0
    # in the MOS order, compressed: both 0
    assert study(0.5 * q, q).sum().item() == 0.0 == field(0.5 * q, q).sum().item()
    # a misordered pair: its predicted gap, over 1 + the largest term (here the same pair)
    got = field(tp([2.0, 1.0]), tq([1.0, 3.0]))
    assert got.tolist() == [1.0 / (1.0 + 1.0)]
    assert L.build("rank_mos", scaled=False, reduction="none")(tp([2.0, 1.0]), tq([1.0, 3.0])).tolist() == [1.0]
    # tied MOS with distinct predictions: the study's rank pays |dpred|, rank_mos is masked
    p = tp([0.2, 1.7, 0.9], requires_grad=True)
    qt = tq([3.0, 3.0, 2.0])  # pair (0, 1) tied, (0, 2) misordered (gap 0.7), (1, 2) in order
    out = field(p, qt)
    assert out[0].item() == 0.0
    assert study(p, qt)[0].item() == pytest.approx(1.5)
    (g,) = torch.autograd.grad(out[0], p, retain_graph=True)
    assert g.abs().max().item() == 0.0
    # the mean runs over all N(N-1)/2 pairs, the masked one included as a zero term
    terms = ref_rank_mos_terms([0.2, 1.7, 0.9], [3.0, 3.0, 2.0])
    assert L.build("rank_mos")(p, qt).item() == pytest.approx(sum(terms) / 3, rel=1e-12)


# ------------------------------------------------------------------------------------------
# soft-rank SRCC approaches the true Spearman as T -> 0
# ------------------------------------------------------------------------------------------
def test_average_rank_matches_scipy():
    q = tq(MOS + [1.4, 3.1])
    torch.testing.assert_close(average_rank(q), tq(list(stats.rankdata(q.numpy()))))


def test_srcc_loss_tends_to_one_minus_spearman():
    # a tie in the predictions too (images 0 and 7): soft ranks give it the average rank
    pred = PRED + [0.31]
    mos = MOS + [2.9]
    want = 1.0 - stats.spearmanr(pred, mos).statistic
    gap = min(abs(a - b) for a in pred for b in pred if a != b)  # 0.29
    temps = [gap * f for f in (2.0, 1.0, 0.5, 0.25, 0.1, 0.05)]
    errs = [abs(L.build("srcc", temperature=T, eps=0.0)(tp(pred), tq(mos)).item() - want)
            for T in temps]
    assert all(e1 < e0 for e0, e1 in zip(errs, errs[1:])), errs
    assert errs[0] > 1e-3  # the sequence starts visibly away from the limit
    # at T = gap / 40 the sigmoids are within e^-40 ~ 4e-18 of a step
    got = L.build("srcc", temperature=gap / 40, eps=0.0)(tp(pred), tq(mos)).item()
    assert abs(got - want) < 1e-12
    torch.testing.assert_close(soft_rank(tp(pred), gap / 40), tq(list(stats.rankdata(pred))))


# ------------------------------------------------------------------------------------------
# gradients
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cid,name,kw,ref", CASES, ids=CASE_IDS)
def test_gradcheck_float64(cid, name, kw, ref):
    loss = L.build(name, **kw)
    if kw.get("detach_scale"):
        # a detached scale is by design not differentiated: the gradient is the unscaled loss's
        # (gradchecked in its own case) over the constant 1 + max t
        p = tp(requires_grad=True)
        (g,) = torch.autograd.grad(loss(p, tq()), p)
        (g0,) = torch.autograd.grad(L.build(name, scaled=False)(p, tq()), p)
        top = max(ref_rank_mos_terms(PRED, MOS, scaled=False))
        torch.testing.assert_close(g, g0 / (1.0 + top), rtol=1e-14, atol=0)
        assert g.abs().max() > 0
        return
    assert torch.autograd.gradcheck(lambda p: loss(p, tq()), (tp(requires_grad=True),))


def test_gradcheck_fidelity_with_std_and_pred_std():
    loss = L.build("fidelity")
    sig = torch.tensor([0.7, 1.1, 0.4, 0.9, 1.3, 0.5, 0.8], dtype=torch.float64,
                       requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda p, s: loss(p, tq(), std=tq(STD), pred_std=s), (tp(requires_grad=True), sig)
    )


def test_no_gradient_to_targets():
    q = tq().requires_grad_(True)
    for name in NAMES:
        p = tp(requires_grad=True)
        L.build(name)(p, q).backward()
        assert q.grad is None and p.grad is not None


HUGE = [1e4, -1e4, 1e4, -1e4, 5e3, -5e3, 0.0]


@pytest.mark.parametrize("cid,name,kw,ref", CASES, ids=CASE_IDS)
def test_finite_for_huge_predictions_float32(cid, name, kw, ref):
    p = torch.tensor(HUGE, requires_grad=True)
    std = torch.tensor(STD, dtype=torch.float32) if name == "fidelity" else None
    loss = L.build(name, **kw)(p, torch.tensor(MOS), std=std)
    loss.backward()
    assert loss.dtype == torch.float32
    assert torch.isfinite(loss)
    assert torch.isfinite(p.grad).all()


@pytest.mark.parametrize("cid,name,kw,ref", CASES, ids=CASE_IDS)
def test_finite_under_bf16_autocast(cid, name, kw, ref):
    torch.manual_seed(0)
    layer = torch.nn.Linear(8, 1)
    with torch.no_grad():
        layer.weight.mul_(3e3)
    x = torch.randn(N, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        pred = layer(x)  # (N, 1)
        assert pred.dtype == torch.bfloat16
        assert pred.abs().max() > 1e3
        loss = L.build(name, **kw)(pred, torch.tensor(MOS), std=torch.tensor(STD))
    assert loss.dtype == torch.float32
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(layer.weight.grad).all() and torch.isfinite(layer.bias.grad).all()


@pytest.mark.parametrize("name", sorted(SETWISE))
def test_constant_predictions_finite(name):
    p = torch.full((N,), 0.5, dtype=torch.float64, requires_grad=True)
    loss = L.build(name)(p, tq())
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(p.grad).all()


# ------------------------------------------------------------------------------------------
# reductions and shapes
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_reductions_consistent(name):
    out = {r: L.build(name, reduction=r)(tp(), tq()) for r in ("none", "mean", "sum")}
    if name in SETWISE:
        assert out["none"].ndim == 0
        assert out["none"].item() == out["mean"].item() == out["sum"].item()
        return
    n_terms = N if name in POINTWISE else N * (N - 1) // 2
    assert out["none"].shape == (n_terms,)
    torch.testing.assert_close(out["mean"], out["none"].mean(), rtol=1e-14, atol=0)
    torch.testing.assert_close(out["sum"], out["none"].sum(), rtol=1e-14, atol=0)


def test_pairwise_none_follows_pair_indices_order():
    got = L.build("rank", reduction="none")(tp(), tq())
    torch.testing.assert_close(got, tq(ref_rank_terms(PRED, MOS)), rtol=1e-12, atol=0)
    i, j = pair_indices(N)
    assert list(zip(i.tolist(), j.tolist())) == pairs(N)


def test_pointwise_none_and_functional():
    p, q = tp(), tq()
    torch.testing.assert_close(L.build("l1", reduction="none")(p, q), (p - q).abs())
    torch.testing.assert_close(L.build("l2", reduction="none")(p, q), (p - q) ** 2)


@pytest.mark.parametrize("name", NAMES)
def test_column_predictions_are_flattened_not_broadcast(name):
    loss = L.build(name)
    flat = loss(tp(), tq())
    col = loss(tp().unsqueeze(1), tq())  # (N, 1) vs (N,): would be N x N under broadcasting
    both = loss(tp().unsqueeze(1), tq().unsqueeze(1))
    assert flat.item() == col.item() == both.item()


@pytest.mark.parametrize("name", NAMES)
def test_shape_errors(name):
    loss = L.build(name)
    with pytest.raises(ValueError, match="must match"):
        loss(tp(), tq(MOS + [2.0]))
    with pytest.raises(ValueError, match=r"\(N,\) or \(N, 1\)"):
        loss(tp().reshape(1, N).expand(2, N), tq())
    with pytest.raises(ValueError, match=r"\(N,\) or \(N, 1\)"):
        loss(tp(), tq().reshape(1, N))
    with pytest.raises(ValueError, match="std has"):
        loss(tp(), tq(), std=tq(STD[:-1]))
    with pytest.raises(ValueError, match="std must be"):
        loss(tp(), tq(), std=-tq(STD))
    with pytest.raises(ValueError, match="NaN"):
        loss(tp(), tq(MOS[:-1] + [float("nan")]))
    with pytest.raises(TypeError, match="floating"):
        loss(torch.arange(N), tq())


@pytest.mark.parametrize("name", sorted(SETWISE | PAIRWISE))
def test_single_image_batch_raises(name):
    with pytest.raises(ValueError, match="at least 2"):
        L.build(name)(tp([0.3]), tq([2.0]))


@pytest.mark.parametrize("name", sorted(POINTWISE))
def test_single_image_batch_allowed_for_pointwise(name):
    assert L.build(name)(tp([0.5]), tq([2.0])).item() == (1.5 if name == "l1" else 2.25)


@pytest.mark.parametrize("name", sorted(SETWISE))
def test_constant_mos_raises_for_setwise(name):
    with pytest.raises(ValueError, match="all MOS in this batch are equal"):
        L.build(name)(tp(), torch.full((N,), 3.0, dtype=torch.float64))


def test_constant_mos_defined_for_pairwise():
    q = torch.full((N,), 3.0, dtype=torch.float64)
    # rank: every pair costs |dpred|; rank_mos: every pair is tied, so masked; fidelity: p = 0.5
    got = L.build("rank")(tp(), q).item()
    assert math.isclose(got, mean(ref_rank_terms(PRED, [3.0] * N)), rel_tol=1e-12)
    p = tp(requires_grad=True)
    got = L.build("rank_mos")(p, q)
    got.backward()
    assert got.item() == 0.0 and p.grad.abs().max().item() == 0.0
    got = L.build("fidelity")(tp(), q).item()
    assert math.isclose(got, mean(ref_fidelity_terms(PRED, [3.0] * N)), rel_tol=1e-12)


def test_pred_std_checked():
    loss = L.build("fidelity")
    with pytest.raises(ValueError, match="pred_std has"):
        loss(tp(), tq(), pred_std=tq([1.0] * (N - 1)))
    with pytest.raises(ValueError, match="pred_std must be"):
        loss(tp(), tq(), pred_std=tq([1.0] * (N - 1) + [0.0]))


# ------------------------------------------------------------------------------------------
# metrics (lfakit.metrics.iqa)
# ------------------------------------------------------------------------------------------
def _metric_data(seed=0, n=200):
    rng = np.random.default_rng(seed)
    mos = np.round(rng.uniform(1, 5, n), 1)  # rounding creates ties
    pred = np.round(mos + rng.normal(0, 0.6, n), 1)
    return pred, mos


def test_metrics_equal_scipy():
    pred, mos = _metric_data()
    assert len(np.unique(mos)) < len(mos) and len(np.unique(pred)) < len(pred)  # ties present
    assert M.srcc(pred, mos) == pytest.approx(stats.spearmanr(pred, mos).statistic, abs=1e-15)
    assert M.krcc(pred, mos) == pytest.approx(
        stats.kendalltau(pred, mos, variant="b").statistic, abs=1e-15)
    assert M.plcc(pred, mos) == pytest.approx(stats.pearsonr(pred, mos).statistic, abs=1e-15)
    assert M.rmse(pred, mos) == pytest.approx(math.sqrt(np.mean((pred - mos) ** 2)), rel=1e-15)
    # tau-b, not tau-a: with ties they differ
    n = len(pred)
    conc = sum(np.sign(pred[i] - pred[j]) * np.sign(mos[i] - mos[j])
               for i in range(n) for j in range(i + 1, n))
    assert abs(M.krcc(pred, mos) - conc / (n * (n - 1) / 2)) > 1e-3


def test_metrics_accept_torch_and_columns():
    pred, mos = _metric_data(1, 50)
    a = M.srcc(torch.tensor(pred).unsqueeze(1), torch.tensor(mos))
    assert a == pytest.approx(M.srcc(pred, mos), abs=1e-15)


def test_metrics_input_errors():
    with pytest.raises(ValueError, match="scores but mos"):
        M.plcc([1.0, 2.0, 3.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="at least"):
        M.srcc([1.0], [2.0])
    with pytest.raises(ValueError, match="NaN"):
        M.krcc([1.0, np.nan, 2.0], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="1-D"):
        M.rmse(np.ones((3, 2)), np.ones(3))


def test_logistic_plcc_beats_raw_on_monotone_nonlinear():
    rng = np.random.default_rng(3)
    x = rng.uniform(-3, 3, 300)
    mos = 1 + 4 / (1 + np.exp(-2.0 * x)) + rng.normal(0, 0.05, x.size)
    raw = M.plcc(x, mos)
    logi, params = M.plcc_logistic(x, mos, return_params=True)
    assert logi > raw + 0.02
    assert logi > 0.99
    # the fitted map recovers the generating curve: b1 ~ 5, b2 ~ 1, b3 ~ 0, b4 ~ 0.5
    np.testing.assert_allclose(params, [5.0, 1.0, 0.0, 0.5], atol=0.05)
    # the rank metrics do not change under a monotone map
    assert M.srcc(x, mos) == pytest.approx(M.srcc(M.logistic_4p(x, *params), mos))


def test_logistic_fit_handles_decreasing_relation_and_scale():
    rng = np.random.default_rng(4)
    x = rng.uniform(0, 100, 200)  # a 0-100 prediction scale
    mos = 5 - 4 / (1 + np.exp(-(x - 40) / 8)) + rng.normal(0, 0.05, x.size)
    params, ok = M.fit_logistic(x, mos)
    assert ok
    assert np.corrcoef(M.logistic_4p(x, *params), mos)[0, 1] > 0.99


def test_logistic_plcc_falls_back_when_fit_fails(monkeypatch):
    pred, mos = _metric_data(2, 40)

    def boom(*a, **k):
        raise RuntimeError("Optimal parameters not found")

    monkeypatch.setattr(M.optimize, "curve_fit", boom)
    with pytest.warns(M.LogisticFitWarning):
        got = M.plcc_logistic(pred, mos)
    assert got == M.plcc(pred, mos)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the report records the fallback instead of warning
        rep = M.iqa_report(pred, mos)
    assert rep["logistic_fit_ok"] is False and rep["plcc_logistic"] == rep["plcc_raw"]


def test_iqa_report_states_which_plcc():
    pred, mos = _metric_data(5, 100)
    rep = M.iqa_report(pred, mos)
    assert rep["plcc_kind"] == "raw" and rep["plcc"] == rep["plcc_raw"] == M.plcc(pred, mos)
    assert rep["srcc"] == M.srcc(pred, mos) and rep["krcc"] == M.krcc(pred, mos)
    assert rep["rmse"] == M.rmse(pred, mos) and rep["n"] == 100
    assert rep["logistic_fit_ok"] is True
    rep4 = M.iqa_report(pred, mos, plcc_kind="logistic4")
    assert rep4["plcc_kind"] == "logistic4" and rep4["plcc"] == rep4["plcc_logistic"]
    with pytest.raises(ValueError, match="plcc_kind"):
        M.iqa_report(pred, mos, plcc_kind="fitted")


# ------------------------------------------------------------------------------------------
# input checks: (N,) and (N, 1) inputs, mixed dtypes, non-finite MOS and std
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_column_mos_and_mixed_dtypes_give_the_same_loss(name):
    loss = L.build(name)
    p = tp(requires_grad=True)
    fast = loss(p, tq())
    general = loss(p, tq()[:, None])
    torch.testing.assert_close(fast, general, rtol=0, atol=0)
    torch.testing.assert_close(loss(tp().float(), tq()), loss(tp().float(), tq().float()))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("name", NAMES)
def test_non_finite_mos_rejected(name, bad):
    q = tq().clone()
    q[3] = bad
    with pytest.raises(ValueError, match="NaN or inf"):
        L.build(name)(tp(), q)
    with pytest.raises(ValueError, match="NaN or inf"):
        L.build(name)(tp().float()[:, None], q)  # a float32 column against float64 MOS


def test_mos_overflowing_the_prediction_dtype_is_rejected():
    q = tq().clone()
    q[0] = 1e300  # finite in float64, inf once cast to the float32 of the predictions
    with pytest.raises(ValueError, match="NaN or inf"):
        L.build("l2")(tp().float(), q)


def test_std_and_pred_std_value_checks():
    loss = L.build("fidelity")
    s = tq([0.5] * N)
    for bad in (float("nan"), -0.1, float("inf")):
        s_bad = s.clone()
        s_bad[2] = bad
        with pytest.raises(ValueError, match="std must be finite and >= 0"):
            loss(tp(), tq(), s_bad)
    for bad in (float("nan"), 0.0, -1.0, float("inf")):
        sg = tq([1.0] * N)
        sg[4] = bad
        with pytest.raises(ValueError, match="pred_std must be finite and > 0"):
            loss(tp(), tq(), pred_std=sg)
    # checked in the dtype it is used in: 1e300 is finite in float64, inf in float32
    sg = tq([1.0] * N)
    sg[0] = 1e300
    with pytest.raises(ValueError, match="pred_std must be finite"):
        loss(tp().float(), tq(), pred_std=sg)
    assert torch.isfinite(loss(tp(), tq(), pred_std=sg))


def test_a_fit_on_its_width_floor_is_reported_as_such():
    """A step relation pulls the 4-parameter logistic onto its width bound (a near-step): the
    report says so instead of calling it a plain fit; a smooth sigmoid relation stays off it."""
    rng = np.random.default_rng(0)
    p = rng.uniform(0, 1, 200)
    step = np.where(p > 0.5, 4.0, 2.0) + rng.normal(0, 0.05, 200)
    rep = M.iqa_report(p, step)
    assert rep["logistic_fit_ok"] and rep["logistic_at_width_floor"]
    params, ok = M.fit_logistic(p, step)
    assert ok and abs(params[3]) == pytest.approx(M.WIDTH_FLOOR * p.std(), rel=1e-6)
    smooth = 1 + 4 / (1 + np.exp(-(p - 0.5) / 0.2)) + rng.normal(0, 0.05, 200)
    rep = M.iqa_report(p, smooth)
    assert rep["logistic_fit_ok"] and not rep["logistic_at_width_floor"]
