"""Tests for lfakit.losses.multiclass (spec: docs/losses.md section B and its checks).

Reference values are computed sample by sample with Python's ``math`` module in double
precision from the plain softmax, independently of the log-space implementations.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import lfakit.losses as L
from lfakit.errors import ParameterError
from lfakit.losses.multiclass import SCE_CODE_A, check_multiclass

NAMES = [
    "ce", "focal_ce", "mae", "gce", "rce", "sce", "nce", "nce_rce", "phuber_ce",
    "logit_clip", "logit_norm", "flooding",
]
PER_SAMPLE = [n for n in NAMES if n != "flooding"]

# Fixed inputs (B=6, K=4). Row 2 has p_y ~ 0.0099 < 1/10 (phuber's linear branch), row 4 has
# p_y < 1e-7 (gce's clamp), row 3 has ||z|| = 0.548 (< 1, inside logit_clip's ball), row 5 is
# uniform; no row has a norm near 0.5, 1 or 2 (logit_clip's thresholds in the tests).
Z = [
    [2.0, -1.0, 0.5, 0.1],
    [0.3, 1.2, -0.7, 2.5],
    [-1.5, 0.4, 3.0, -0.2],
    [0.2, -0.3, 0.1, 0.4],
    [-20.0, 0.0, 0.5, -0.5],
    [0.6, 0.6, 0.6, 0.6],
]
Y = [0, 1, 0, 2, 0, 3]


def tz(rows=Z, requires_grad=False):
    return torch.tensor(rows, dtype=torch.float64, requires_grad=requires_grad)


def ty(labels=Y):
    return torch.tensor(labels, dtype=torch.long)


# ------------------------------------------------------------------------------------------
# scalar references (plain math, one sample at a time, plain softmax)
# ------------------------------------------------------------------------------------------
def softmax(z):
    m = max(z)
    e = [math.exp(v - m) for v in z]
    s = sum(e)
    return [v / s for v in e]


def norm(z):
    return math.sqrt(sum(v * v for v in z))


def ref_ce(z, y, label_smoothing=0.0):
    p = softmax(z)
    k = len(z)
    target = [(1 - label_smoothing) * (j == y) + label_smoothing / k for j in range(k)]
    return -sum(t * math.log(pj) for t, pj in zip(target, p))


def ref_focal_ce(z, y, gamma=2.0):
    p = softmax(z)[y]
    return -((1 - p) ** gamma) * math.log(p)


def ref_mae(z, y, scale=1.0):
    p = softmax(z)
    return scale * sum(abs(pj - (j == y)) for j, pj in enumerate(p))


def ref_gce(z, y, q=0.7):
    p = max(softmax(z)[y], 1e-7)
    return (1 - p**q) / q


def ref_rce(z, y, A=-4.0):  # noqa: N803
    # -sum_k p_k log(onehot_k) with log 0 := A, written literally
    p = softmax(z)
    return -sum(pj * (0.0 if j == y else A) for j, pj in enumerate(p))


def ref_sce(z, y, alpha=0.1, beta=1.0, A=-4.0):  # noqa: N803
    return alpha * ref_ce(z, y) + beta * ref_rce(z, y, A)


def ref_nce(z, y):
    p = softmax(z)
    return -math.log(p[y]) / -sum(math.log(pj) for pj in p)


def ref_nce_rce(z, y, alpha=1.0, beta=1.0, A=-4.0):  # noqa: N803
    return alpha * ref_nce(z, y) + beta * ref_rce(z, y, A)


def ref_phuber(z, y, tau=10.0):
    p = softmax(z)[y]
    if p <= 1 / tau:
        return -tau * p + math.log(tau) + 1
    return -math.log(p)


def ref_logit_clip(z, y, delta=1.0, form="paper"):
    n = norm(z)
    if form == "paper":
        zh = [delta * v / n for v in z] if n > delta else z
    else:  # the authors' code
        n = n + 1e-7
        zh = [v / n / delta for v in z] if n > 1 / delta else z
    return ref_ce(zh, y)


def ref_logit_norm(z, y, tau=0.04):
    n = norm(z) + 1e-7
    return ref_ce([v / (n * tau) for v in z], y)


def per_sample(fn, z=Z, y=Y, **kw):
    return [fn(zi, yi, **kw) for zi, yi in zip(z, y)]


# (id, name, kwargs, per-sample reference)
CASES = [
    ("ce", "ce", {}, per_sample(ref_ce)),
    ("ce_ls", "ce", {"label_smoothing": 0.1}, per_sample(ref_ce, label_smoothing=0.1)),
    ("focal_ce", "focal_ce", {}, per_sample(ref_focal_ce)),
    ("focal_ce_g05", "focal_ce", {"gamma": 0.5}, per_sample(ref_focal_ce, gamma=0.5)),
    ("mae", "mae", {}, per_sample(ref_mae)),
    ("mae_half", "mae", {"scale": 0.5}, per_sample(ref_mae, scale=0.5)),
    ("gce", "gce", {}, per_sample(ref_gce)),
    ("gce_q03", "gce", {"q": 0.3}, per_sample(ref_gce, q=0.3)),
    ("rce", "rce", {}, per_sample(ref_rce)),
    ("rce_code", "rce", {"A": SCE_CODE_A}, per_sample(ref_rce, A=math.log(1e-4))),
    ("sce", "sce", {}, per_sample(ref_sce)),
    ("sce_code", "sce", {"A": SCE_CODE_A}, per_sample(ref_sce, A=math.log(1e-4))),
    ("sce_c100", "sce", {"alpha": 6.0, "beta": 0.1}, per_sample(ref_sce, alpha=6.0, beta=0.1)),
    ("nce", "nce", {}, per_sample(ref_nce)),
    ("nce_rce", "nce_rce", {}, per_sample(ref_nce_rce)),
    ("nce_rce_code", "nce_rce", {"alpha": 10.0, "beta": 0.1, "A": SCE_CODE_A},
     per_sample(ref_nce_rce, alpha=10.0, beta=0.1, A=math.log(1e-4))),
    ("phuber_ce", "phuber_ce", {}, per_sample(ref_phuber)),
    ("phuber_ce_t2", "phuber_ce", {"tau": 2.0}, per_sample(ref_phuber, tau=2.0)),
    ("logit_clip", "logit_clip", {}, per_sample(ref_logit_clip)),
    ("logit_clip_d2", "logit_clip", {"delta": 2.0}, per_sample(ref_logit_clip, delta=2.0)),
    ("logit_clip_code", "logit_clip", {"form": "code"}, per_sample(ref_logit_clip, form="code")),
    ("logit_clip_code_d2", "logit_clip", {"delta": 2.0, "form": "code"},
     per_sample(ref_logit_clip, delta=2.0, form="code")),
    ("logit_clip_code_d05", "logit_clip", {"delta": 0.5, "form": "code"},
     per_sample(ref_logit_clip, delta=0.5, form="code")),
    ("logit_norm", "logit_norm", {}, per_sample(ref_logit_norm)),
    ("logit_norm_t1", "logit_norm", {"tau": 1.0}, per_sample(ref_logit_norm, tau=1.0)),
]
CASE_IDS = [c[0] for c in CASES]


# ------------------------------------------------------------------------------------------
# value against the hand-computed formula
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cid,name,kw,ref", CASES, ids=CASE_IDS)
def test_value_matches_reference(cid, name, kw, ref):
    z, y = tz(), ty()
    none = L.build(name, reduction="none", **kw)(z, y)
    assert none.dtype == torch.float64 and tuple(none.shape) == (6,)
    torch.testing.assert_close(none, torch.tensor(ref, dtype=torch.float64), rtol=1e-12, atol=1e-12)
    mean = L.build(name, **kw)(z, y)  # default reduction: sample mean
    assert mean.ndim == 0
    assert math.isclose(mean.item(), sum(ref) / len(ref), rel_tol=1e-12)


def test_reference_inputs_exercise_both_branches():
    # guards the fixture: the tests above only pin both branches if the rows reach them
    p = [softmax(z)[y] for z, y in zip(Z, Y)]
    assert any(v <= 0.1 for v in p) and any(v > 0.1 for v in p)  # phuber tau=10
    assert any(v < 1e-7 for v in p)  # gce clamp
    norms = [norm(z) for z in Z]  # logit_clip: rows inside/outside radii 0.5, 1, 2, none near
    assert any(0.5 < n < 1 for n in norms) and any(1 < n < 2 for n in norms)
    assert any(n > 2 for n in norms)
    assert all(abs(n - r) > 0.04 for n in norms for r in (0.5, 1.0, 2.0))


def test_ce_equals_torch_cross_entropy():
    z, y = tz(requires_grad=True), ty()
    z2 = tz(requires_grad=True)
    for red in ("mean", "sum", "none"):
        ours = L.build("ce", reduction=red)(z, y)
        torch.testing.assert_close(ours, F.cross_entropy(z, y, reduction=red), rtol=1e-14, atol=0)
    L.build("ce")(z, y).backward()
    F.cross_entropy(z2, y).backward()
    torch.testing.assert_close(z.grad, z2.grad, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("eps", [0.1, 0.3, 1.0])
def test_label_smoothing_equals_torch(eps):
    z, y = tz(), ty()
    for red in ("mean", "none"):
        ours = L.build("ce", label_smoothing=eps, reduction=red)(z, y)
        theirs = F.cross_entropy(z, y, label_smoothing=eps, reduction=red)
        torch.testing.assert_close(ours, theirs, rtol=1e-13, atol=1e-14)


def test_focal_gamma0_is_ce():
    z, y = tz(), ty()
    torch.testing.assert_close(
        L.build("focal_ce", gamma=0, reduction="none")(z, y),
        L.build("ce", reduction="none")(z, y), rtol=1e-14, atol=1e-15,
    )


def test_mae_is_two_minus_two_py_and_scale_half_is_one_minus_py():
    torch.manual_seed(0)
    z, y = torch.randn(32, 7, dtype=torch.float64) * 3, torch.randint(0, 7, (32,))
    py = torch.softmax(z, 1)[torch.arange(32), y]
    torch.testing.assert_close(L.build("mae", reduction="none")(z, y), 2 - 2 * py)
    torch.testing.assert_close(L.build("mae", scale=0.5, reduction="none")(z, y), 1 - py)
    # gce with q = 1 is the halved form too
    torch.testing.assert_close(L.build("gce", q=1.0, reduction="none")(z, y), 1 - py)


def test_sce_is_alpha_ce_plus_beta_rce():
    z, y = tz(), ty()
    for A in (-4.0, SCE_CODE_A):  # noqa: N806
        got = L.build("sce", alpha=0.3, beta=2.0, A=A)(z, y)
        want = 0.3 * L.build("ce")(z, y) + 2.0 * L.build("rce", A=A)(z, y)
        torch.testing.assert_close(got, want)
    assert math.isclose(SCE_CODE_A, -9.210340371976182, rel_tol=1e-15)


def test_phuber_branches_and_continuity():
    tau = 10.0
    loss = L.build("phuber_ce", tau=tau, reduction="none")
    # two classes: p_y = sigmoid(d) for logits (d, 0); p_y = 1/tau at d = -log(tau - 1)
    d0 = -math.log(tau - 1)
    d = torch.tensor([d0 - 1.0, d0 - 1e-9, d0 + 1e-9, d0 + 1.0, -300.0], dtype=torch.float64)
    z = torch.stack([d, torch.zeros_like(d)], 1)
    got = loss(z, torch.zeros(5, dtype=torch.long))
    p = torch.sigmoid(d)
    torch.testing.assert_close(got[0], -tau * p[0] + math.log(tau) + 1)  # linear branch
    torch.testing.assert_close(got[3], -torch.log(p[3]))  # log branch
    torch.testing.assert_close(got[1], got[2], rtol=0, atol=1e-8)  # continuous at 1/tau
    assert math.isclose(got[1].item(), math.log(tau), rel_tol=1e-7)
    assert math.isclose(got[4].item(), math.log(tau) + 1, rel_tol=1e-12)  # p_y ~ e^-300
    # gradient wrt the logit is bounded by tau * p (1 - p) <= tau/4 in the linear branch
    zz = z.clone().requires_grad_(True)
    loss(zz, torch.zeros(5, dtype=torch.long)).sum().backward()
    assert zz.grad.abs().max() <= 1.0
    assert zz.grad[4].abs().max() < 1e-100  # not the CE gradient (which would be ~1)


def test_logit_clip_forms_coincide_at_delta_1_and_differ_elsewhere():
    z, y = tz(), ty()
    paper = L.build("logit_clip", reduction="none")(z, y)
    code = L.build("logit_clip", form="code", reduction="none")(z, y)
    torch.testing.assert_close(paper, code, rtol=1e-6, atol=0)
    for delta in (0.5, 2.0):
        a = L.build("logit_clip", delta=delta, reduction="none")(z, y)
        b = L.build("logit_clip", delta=delta, form="code", reduction="none")(z, y)
        assert (a - b).abs().max() > 1e-2
    # paper form: clipped logits have norm <= delta; code form: <= 1/delta
    clip = L.build("logit_clip", delta=2.0)
    assert torch.linalg.vector_norm(clip._logits(z * 10), dim=1).max() <= 2.0 + 1e-12
    clip = L.build("logit_clip", delta=2.0, form="code")
    assert torch.linalg.vector_norm(clip._logits(z * 10), dim=1).max() <= 0.5 + 1e-12


def test_logit_clip_large_delta_is_ce_and_logit_norm_is_scale_invariant():
    z, y = tz(), ty()
    torch.testing.assert_close(L.build("logit_clip", delta=1e3)(z, y), L.build("ce")(z, y))
    ln = L.build("logit_norm", reduction="none")
    torch.testing.assert_close(ln(z, y), ln(z * 37.0, y), rtol=1e-5, atol=0)  # up to the 1e-7


def test_nce_in_unit_interval():
    torch.manual_seed(1)
    z, y = torch.randn(64, 10, dtype=torch.float64) * 5, torch.randint(0, 10, (64,))
    v = L.build("nce", reduction="none")(z, y)
    assert bool(((v > 0) & (v <= 1)).all())


# ------------------------------------------------------------------------------------------
# flooding
# ------------------------------------------------------------------------------------------
def test_flooding_above_and_below_b():
    z, y = tz(requires_grad=True), ty()
    ce_mean = sum(per_sample(ref_ce)) / 6  # ~ 4.5
    # above the flood level: the base loss itself, same gradient
    above = L.build("flooding", base="ce", b=0.1)
    out = above(z, y)
    assert math.isclose(out.item(), ce_mean, rel_tol=1e-12)
    assert math.isclose(above.last_base_loss.item(), ce_mean, rel_tol=1e-12)
    out.backward()
    g_above = z.grad.clone()
    z.grad = None
    L.build("ce")(z, y).backward()
    torch.testing.assert_close(g_above, z.grad, rtol=0, atol=0)
    # below: 2b - L, gradient sign flipped
    z.grad = None
    below = L.build("flooding", base="ce", b=10.0)(z, y)
    assert math.isclose(below.item(), 20.0 - ce_mean, rel_tol=1e-12)
    below.backward()
    torch.testing.assert_close(z.grad, -g_above, rtol=0, atol=0)


def test_flooding_default_b_and_base_kwargs():
    z, y = tz(), ty()
    flood = L.build("flooding")
    assert flood.b == 0.1 and isinstance(flood.base, L.get("ce"))
    ref = per_sample(ref_sce, A=math.log(1e-4))
    m = sum(ref) / 6
    got = L.build("flooding", base="sce", b=0.1, base_kwargs={"A": SCE_CODE_A})(z, y)
    assert math.isclose(got.item(), abs(m - 0.1) + 0.1, rel_tol=1e-12)
    got = L.build("flooding", base="sce", b=10.0, base_kwargs={"A": SCE_CODE_A})(z, y)
    assert math.isclose(got.item(), abs(m - 10.0) + 10.0, rel_tol=1e-12)
    assert m < 10.0  # so the second call is in the flooded regime
    # a module as base, and a base from another task (multi-label bce)
    got = L.build("flooding", base=L.build("mae"), b=5.0)(z, y)
    assert math.isclose(got.item(), 10.0 - sum(per_sample(ref_mae)) / 6, rel_tol=1e-12)
    zb, yb = torch.zeros(2, 3, dtype=torch.float64), torch.ones(2, 3, dtype=torch.float64)
    got = L.build("flooding", base="bce", b=1.0)(zb, yb)
    assert math.isclose(got.item(), 2.0 - math.log(2), rel_tol=1e-12)


@pytest.mark.parametrize(
    "kw,match",
    [
        ({"reduction": "none"}, "batch mean"),
        ({"reduction": "sum"}, "batch mean"),
        ({"base_kwargs": {"reduction": "none"}}, "batch mean"),
        ({"base": "flooding"}, "itself"),
        ({"base": "cee"}, "'ce'"),
        ({"base_kwargs": {"gamma": 2.0}}, "gamma"),
        ({"b": -0.1}, "b must"),
        ({"base_kwargs": [("label_smoothing", 0.1)]}, "dict"),
        ({"base": 3}, "loss name"),
    ],
)
def test_flooding_rejects_bad_arguments(kw, match):
    with pytest.raises(ParameterError, match=match):
        L.build("flooding", **kw)
    with pytest.raises(ParameterError, match="batch mean"):
        L.build("flooding", base=L.build("ce", reduction="none"))


# ------------------------------------------------------------------------------------------
# gradients
# ------------------------------------------------------------------------------------------
GRAD_CASES = CASES + [
    ("flooding_above", "flooding", {"b": 0.1}, None),
    ("flooding_below", "flooding", {"b": 10.0, "base": "gce"}, None),
]


@pytest.mark.parametrize("cid,name,kw,ref", GRAD_CASES, ids=[c[0] for c in GRAD_CASES])
def test_gradcheck_float64(cid, name, kw, ref):
    loss = L.build(name, **kw) if name == "flooding" else L.build(name, reduction="sum", **kw)
    y = ty()
    assert torch.autograd.gradcheck(lambda z: loss(z, y), (tz(requires_grad=True),))


@pytest.mark.parametrize("name", ["logit_clip", "logit_norm"])
def test_zero_logits_have_finite_gradient(name):
    for form in (("paper", "code") if name == "logit_clip" else (None,)):
        kw = {"form": form} if form else {}
        z = torch.zeros(3, 4, dtype=torch.float64, requires_grad=True)
        loss = L.build(name, **kw)(z, ty([0, 1, 2]))
        loss.backward()
        assert math.isclose(loss.item(), math.log(4), rel_tol=1e-12)
        assert torch.isfinite(z.grad).all()


# ------------------------------------------------------------------------------------------
# robustness: huge logits in float32 and under bf16 autocast
# ------------------------------------------------------------------------------------------
HUGE = [
    [1e4, -1e4, 1e4, -1e4],
    [-1e4, 1e4, 5e3, -5e3],
    [1e4, 1e4, -1e4, -1e4],
    [-1e4, -1e4, -1e4, -1e4],
    [0.0, 0.0, 1e4, 0.0],
    [-1e4, 0.0, 0.0, 0.0],
]
ROBUST_CASES = CASES + [("flooding", "flooding", {}, None)]


@pytest.mark.parametrize("cid,name,kw,ref", ROBUST_CASES, ids=[c[0] for c in ROBUST_CASES])
def test_finite_for_huge_logits_float32(cid, name, kw, ref):
    z = torch.tensor(HUGE, requires_grad=True)
    loss = L.build(name, **kw)(z, ty())
    loss.backward()
    assert loss.dtype == torch.float32
    assert torch.isfinite(loss)
    assert torch.isfinite(z.grad).all()
    if name == "ce" and not kw:  # the finite value is the right one
        want = F.cross_entropy(torch.tensor(HUGE, dtype=torch.float64), ty()).item()
        assert math.isclose(loss.item(), want, rel_tol=1e-6)


@pytest.mark.parametrize("cid,name,kw,ref", ROBUST_CASES, ids=[c[0] for c in ROBUST_CASES])
def test_finite_under_bf16_autocast(cid, name, kw, ref):
    torch.manual_seed(0)
    layer = torch.nn.Linear(8, 4)
    with torch.no_grad():
        layer.weight.mul_(3e3)
    x = torch.randn(6, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = layer(x)
        assert logits.dtype == torch.bfloat16
        assert logits.abs().max() > 1e3
        loss = L.build(name, **kw)(logits, ty())
    assert loss.dtype == torch.float32  # evaluated in float32
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(layer.weight.grad).all() and torch.isfinite(layer.bias.grad).all()


# ------------------------------------------------------------------------------------------
# reductions
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cid,name,kw,ref", CASES, ids=CASE_IDS)
def test_reductions_consistent(cid, name, kw, ref):
    z, y = tz(), ty()
    none = L.build(name, reduction="none", **kw)(z, y)
    torch.testing.assert_close(L.build(name, reduction="sum", **kw)(z, y), none.sum())
    torch.testing.assert_close(L.build(name, reduction="mean", **kw)(z, y), none.mean())
    torch.testing.assert_close(L.build(name, **kw)(z, y), none.mean())


@pytest.mark.parametrize("name", PER_SAMPLE)
def test_bad_reduction_rejected(name):
    with pytest.raises(ValueError, match="reduction"):
        L.build(name, reduction="avg")


# ------------------------------------------------------------------------------------------
# input checks
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_shape_and_type_errors(name):
    loss = L.build(name)
    z, y = tz(), ty()
    with pytest.raises(ValueError, match="1-D tensor of 6 class indices"):
        loss(z, y[:5])  # wrong length
    with pytest.raises(ValueError, match="argmax"):
        loss(z, F.one_hot(y, 4))  # one-hot
    with pytest.raises(ValueError, match="squeeze"):
        loss(z, y[:, None])
    with pytest.raises(ValueError, match="batch, classes"):
        loss(z[0], y[:1])
    with pytest.raises(ValueError, match="batch, classes"):
        loss(z[None], y)
    with pytest.raises(TypeError, match="integer class indices"):
        loss(z, y.double())  # float targets
    with pytest.raises(TypeError, match="integer class indices"):
        loss(z, y > 1)
    with pytest.raises(TypeError, match="floating"):
        loss(torch.ones(6, 4, dtype=torch.long), y)
    with pytest.raises(ValueError, match="at least 2 classes"):
        loss(z[:, :1], torch.zeros(6, dtype=torch.long))


@pytest.mark.parametrize("name", NAMES)
def test_label_range_errors(name):
    loss = L.build(name)
    for bad, match in ((4, r"\[0, 4\).*found 4"), (-1, "found -1"), (-100, "ignore_index")):
        y = ty().clone()
        y[3] = bad
        with pytest.raises(ValueError, match=match):
            loss(tz(), y)


def test_other_integer_label_dtypes_accepted():
    z = tz()
    want = L.build("sce")(z, ty())
    for dt in (torch.int32, torch.int16, torch.uint8):
        torch.testing.assert_close(L.build("sce")(z, ty().to(dt)), want, rtol=0, atol=0)
    check_multiclass(z, ty())  # valid input passes silently


@pytest.mark.parametrize(
    "name,kw,match",
    [
        ("ce", {"label_smoothing": 1.5}, "label_smoothing"),
        ("focal_ce", {"gamma": -1.0}, "gamma"),
        ("mae", {"scale": 0.0}, "scale"),
        ("gce", {"q": 0.0}, "q"),
        ("gce", {"q": 1.5}, "q"),
        ("rce", {"A": 0.0}, "A"),
        ("sce", {"A": 4.0}, "A"),
        ("sce", {"alpha": -1.0}, "alpha"),
        ("nce_rce", {"beta": "1"}, "beta"),
        ("phuber_ce", {"tau": 0.5}, "tau"),
        ("logit_clip", {"delta": 0.0}, "delta"),
        ("logit_clip", {"form": "authors"}, "form"),
        ("logit_norm", {"tau": float("inf")}, "tau"),
        ("focal_ce", {"gama": 2.0}, "gamma"),
    ],
)
def test_bad_parameters(name, kw, match):
    with pytest.raises(ParameterError, match=match):
        L.build(name, **kw)


# ------------------------------------------------------------------------------------------
# registry and conventions
# ------------------------------------------------------------------------------------------
def test_registry_lists_all_multiclass_losses():
    assert L.available("multiclass") == sorted(NAMES)
    for name in NAMES:
        assert L.task_of(name) == "multiclass"
    assert set(L.accepted_kwargs("flooding")) == {"base", "b", "base_kwargs", "reduction"}


@pytest.mark.parametrize("name", NAMES)
def test_module_conventions(name):
    cls = L.get(name)
    assert issubclass(cls, torch.nn.Module)
    doc = cls.__doc__
    assert "Defaults:" in doc and "20" in doc  # a formula section and a source year
    assert ("sample mean" in doc) != (name == "flooding")
    assert L.build(name).reduction == "mean"


# ------------------------------------------------------------------------------------------
# input checks: tensor subclasses, every integer label dtype, complex / non-tensor targets
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_tensor_subclass_inputs_are_accepted(name):
    # nn.Parameter logits (a Tensor subclass) are valid and give the same loss
    loss = L.build(name)
    want = loss(tz(), ty())
    got = loss(torch.nn.Parameter(tz()), ty())
    torch.testing.assert_close(got, want, rtol=0, atol=0)


@pytest.mark.parametrize("dt", [torch.int32, torch.int16, torch.uint8])
def test_label_range_checked_for_every_integer_dtype(dt):
    y = ty().clone()
    y[2] = 7
    with pytest.raises(ValueError, match=r"\[0, 4\).*found 7"):
        L.build("mae")(tz(), y.to(dt))
    if dt != torch.uint8:
        y[2] = -3
        with pytest.raises(ValueError, match="found -3"):
            check_multiclass(tz(), y.to(dt))


def test_complex_and_non_tensor_targets_rejected():
    with pytest.raises(TypeError, match="integer class indices"):
        check_multiclass(tz(), ty().to(torch.complex64))
    with pytest.raises(TypeError, match="tensors"):
        check_multiclass(tz(), ty().tolist())


def test_empty_batch_passes_the_check():
    check_multiclass(torch.zeros(0, 4, dtype=torch.float64), torch.zeros(0, dtype=torch.long))
