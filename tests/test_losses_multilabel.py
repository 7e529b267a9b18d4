"""Tests for lfakit.losses.multilabel (spec: docs/losses.md section A and its checks).

Reference values are computed element by element (or sample by sample) with Python's ``math``
module in double precision, independently of the vectorised implementations.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import lfakit.losses as L
from lfakit.errors import ParameterError
from lfakit.losses.multilabel import EXP_CE_CLAMP, EXP_CE_P_FLOOR, zlpr_consistency

NAMES = ["bce", "focal", "asl", "zlpr", "soft_zlpr", "fzlpr", "exp_ce", "f_ece"]
SET_WISE = {"zlpr", "soft_zlpr", "fzlpr"}
SOFT_OK = {"bce", "focal", "soft_zlpr"}

# Fixed inputs: row 2 has no positive, row 3 no negative (edge cases of the ZLPR family);
# no negative logit sits near ASL's clip kink logit(0.05) = -2.944.
Z = [
    [2.0, -1.5, 0.3, -3.0, 0.8],
    [-0.7, 1.2, -2.2, 0.0, 3.5],
    [0.4, 0.9, -0.1, -1.1, 2.6],
    [-2.5, 1.7, 0.6, -0.4, -1.9],
]
Y = [
    [1, 0, 1, 0, 0],
    [0, 1, 0, 0, 1],
    [0, 0, 0, 0, 0],
    [1, 1, 1, 1, 1],
]
T = [  # soft targets
    [0.9, 0.1, 0.7, 0.0, 0.2],
    [0.3, 1.0, 0.5, 0.05, 0.8],
    [0.0, 0.0, 0.25, 0.0, 0.6],
    [1.0, 0.4, 0.95, 1.0, 0.5],
]
PW = [2.0, 0.5, 1.0, 3.0, 1.5]


def tz(rows=Z, requires_grad=False):
    return torch.tensor(rows, dtype=torch.float64, requires_grad=requires_grad)


def ty(rows=Y):
    return torch.tensor(rows, dtype=torch.float64)


# ------------------------------------------------------------------------------------------
# scalar references (plain math, one element / one sample at a time)
# ------------------------------------------------------------------------------------------
def sigmoid(x):
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


def softplus(x):
    return math.log1p(math.exp(x)) if x < 30 else x + math.exp(-x)


def elementwise(fn, z=Z, y=Y, **kw):
    return [[fn(z[i][j], y[i][j], j, **kw) for j in range(len(z[0]))] for i in range(len(z))]


def ref_bce(z, y, j, pos_weight=None, label_smoothing=0.0):
    ys = y * (1 - label_smoothing) + label_smoothing / 2
    w = 1.0 if pos_weight is None else pos_weight[j]
    p = sigmoid(z)
    return -(w * ys * math.log(p) + (1 - ys) * math.log(1 - p))


def ref_focal(z, y, j, gamma=2.0, alpha=None):
    p = sigmoid(z)
    pt = p * y + (1 - p) * (1 - y)
    ce = -(y * math.log(p) + (1 - y) * math.log(1 - p))
    a = 1.0 if alpha is None else alpha * y + (1 - alpha) * (1 - y)
    return a * (1 - pt) ** gamma * ce


def ref_asl(z, y, j, gamma_neg=4.0, gamma_pos=1.0, clip=0.05, eps=1e-8):
    # the authors' algorithm, one element at a time
    p = sigmoid(z)
    xs_neg = min(1 - p + clip, 1.0)
    if y == 1:
        return -((1 - p) ** gamma_pos) * math.log(max(p, eps))
    return -((1 - xs_neg) ** gamma_neg) * math.log(max(xs_neg, eps))


def ref_exp_ce(z, y, j, clamp=EXP_CE_CLAMP):
    zc = min(max(z, -clamp), clamp)
    return math.exp(-zc) if y == 1 else math.exp(zc)


def ref_f_ece(z, y, j, gamma=2.0, clamp=EXP_CE_CLAMP):
    zc = min(max(z, -clamp), clamp)
    if y == 1:
        return math.exp(-zc)
    return sigmoid(zc) ** gamma * math.log(1 + math.exp(zc))


def ref_zlpr(z=Z, y=Y, tau=1.0):
    out = []
    for zi, yi in zip(z, y):
        neg = sum(math.exp(a / tau) for a, b in zip(zi, yi) if b == 0)
        pos = sum(math.exp(-a / tau) for a, b in zip(zi, yi) if b == 1)
        out.append(math.log(1 + neg) + math.log(1 + pos))
    return out


def ref_soft_zlpr(z=Z, t=T, label_smoothing=0.0):
    out = []
    for zi, ti in zip(z, t):
        neg = pos = 0.0
        for a, b in zip(zi, ti):
            b = b * (1 - label_smoothing) + label_smoothing / 2
            neg += (1 - b) * math.exp(a)
            pos += b * math.exp(-a)
        out.append(math.log(1 + neg) + math.log(1 + pos))
    return out


def flat_mean(rows):
    vals = [v for r in rows for v in (r if isinstance(r, list) else [r])]
    return sum(vals) / len(vals)


# (id, name, kwargs, reference per element/sample as nested lists, targets)
CASES = [
    ("bce", "bce", {}, elementwise(ref_bce), Y),
    ("bce_pw", "bce", {"pos_weight": PW}, elementwise(ref_bce, pos_weight=PW), Y),
    ("bce_ls", "bce", {"label_smoothing": 0.1}, elementwise(ref_bce, label_smoothing=0.1), Y),
    (
        "bce_pw_ls_soft",
        "bce",
        {"pos_weight": torch.tensor(PW), "label_smoothing": 0.2},
        elementwise(ref_bce, y=T, pos_weight=PW, label_smoothing=0.2),
        T,
    ),
    ("focal", "focal", {}, elementwise(ref_focal), Y),
    ("focal_a25", "focal", {"alpha": 0.25}, elementwise(ref_focal, alpha=0.25), Y),
    ("focal_g05_a5", "focal", {"gamma": 0.5, "alpha": 0.5},
     elementwise(ref_focal, gamma=0.5, alpha=0.5), Y),
    ("focal_soft", "focal", {"alpha": 0.25}, elementwise(ref_focal, y=T, alpha=0.25), T),
    ("asl", "asl", {}, elementwise(ref_asl), Y),
    ("asl_nodetach", "asl", {"detach_focusing": False}, elementwise(ref_asl), Y),
    ("asl_noclip", "asl", {"clip": 0.0, "gamma_pos": 0.0, "gamma_neg": 2.0},
     elementwise(ref_asl, clip=0.0, gamma_pos=0.0, gamma_neg=2.0), Y),
    ("zlpr", "zlpr", {}, ref_zlpr(), Y),
    ("soft_zlpr", "soft_zlpr", {}, ref_soft_zlpr(), T),
    ("soft_zlpr_ls", "soft_zlpr", {"label_smoothing": 0.1},
     ref_soft_zlpr(label_smoothing=0.1), T),
    ("fzlpr", "fzlpr", {}, ref_zlpr(tau=0.2), Y),
    ("fzlpr_t05", "fzlpr", {"tau": 0.5}, ref_zlpr(tau=0.5), Y),
    ("exp_ce", "exp_ce", {}, elementwise(ref_exp_ce), Y),
    ("f_ece", "f_ece", {}, elementwise(ref_f_ece), Y),
    ("f_ece_g1", "f_ece", {"gamma": 1.0}, elementwise(ref_f_ece, gamma=1.0), Y),
]
CASE_IDS = [c[0] for c in CASES]


# ------------------------------------------------------------------------------------------
# value against the hand-computed formula
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cid,name,kw,ref,targets", CASES, ids=CASE_IDS)
def test_value_matches_reference(cid, name, kw, ref, targets):
    z, y = tz(), ty(targets)
    none = L.build(name, reduction="none", **kw)(z, y)
    torch.testing.assert_close(none, torch.tensor(ref, dtype=torch.float64), rtol=1e-12, atol=1e-12)
    mean = L.build(name, **kw)(z, y)  # default reduction
    assert mean.ndim == 0
    assert math.isclose(mean.item(), flat_mean(ref), rel_tol=1e-12)
    expected_shape = (4,) if name in SET_WISE else (4, 5)
    assert tuple(none.shape) == expected_shape


def test_asl_sum_reproduces_authors_class_and_default_is_element_mean():
    z, y = tz(), ty()
    ref = elementwise(ref_asl)
    total = sum(sum(r) for r in ref)
    assert math.isclose(L.build("asl", reduction="sum")(z, y).item(), total, rel_tol=1e-12)
    assert math.isclose(L.build("asl")(z, y).item(), total / 20, rel_tol=1e-12)


def test_exp_ce_values_beyond_clamp():
    z = [[30.0, -30.0, 18.0, -40.0], [100.0, -100.0, -18.0, 5.0]]
    y = [[1, 1, 0, 0], [0, 1, 1, 0]]
    for name, fn in (("exp_ce", ref_exp_ce), ("f_ece", ref_f_ece)):
        got = L.build(name, reduction="none")(tz(z), ty(y))
        torch.testing.assert_close(got, torch.tensor(elementwise(fn, z, y), dtype=torch.float64))
    # the bound is 1/p - 1 at the authors' floor p = 1e-8, i.e. 1e8 - 1, not more
    big = L.build("exp_ce", reduction="none")(tz([[-1e4]]), ty([[1]])).item()
    assert math.isclose(big, 1e8 - 1, rel_tol=1e-12)


def test_exp_ce_clamp_is_the_authors_probability_clip_exactly():
    assert EXP_CE_P_FLOOR == 1e-8
    assert math.isclose(EXP_CE_CLAMP, math.log(1e8 - 1), rel_tol=1e-15)
    # logit of the clip bounds, both sides: sigmoid(+-c) = 1 - 1e-8 and 1e-8
    assert math.isclose(sigmoid(EXP_CE_CLAMP), 1 - 1e-8, rel_tol=1e-15)
    assert math.isclose(sigmoid(-EXP_CE_CLAMP), 1e-8, rel_tol=1e-12)
    assert L.build("exp_ce").clamp == EXP_CE_CLAMP and L.build("f_ece").clamp == EXP_CE_CLAMP


def _authors_demo(name, z, y, gamma=2.0):
    """The LFA authors' demo, written out in probability space (float64): p = sigmoid(z),
    clipped to [1e-8, 1 - 1e-8], then the formula on p."""
    p = torch.sigmoid(z.double()).clamp(1e-8, 1 - 1e-8)
    y = y.double()
    if name == "exp_ce":  # y (1/p - 1) + (1 - y)(1/(1-p) - 1)
        return y * (1 / p - 1) + (1 - y) * (1 / (1 - p) - 1)
    # f_ece: y (1/p - 1) + (1 - y) p^gamma (-log(1 - p))
    return y * (1 / p - 1) + (1 - y) * p**gamma * -torch.log(1 - p)


@pytest.mark.parametrize("name,kw", [("exp_ce", {}), ("f_ece", {}), ("f_ece", {"gamma": 0.5})])
def test_exp_ce_and_f_ece_equal_the_authors_probability_space_formula(name, kw):
    g = torch.Generator().manual_seed(11)
    z = torch.randn(16, 12, generator=g, dtype=torch.float64) * 12
    # beyond the clip on both sides (|z| > 19), near it, and exactly at the kit's bound
    z[0] = torch.tensor([19.5, -19.5, 25.0, -25.0, 40.0, -40.0, 1e3, -1e3,
                         18.3, -18.3, EXP_CE_CLAMP, -EXP_CE_CLAMP], dtype=torch.float64)
    y = (torch.rand(16, 12, generator=g) < 0.4).to(torch.float64)
    y[0] = torch.tensor([1, 0] * 6, dtype=torch.float64)
    y[1] = 1 - y[0]
    z[1] = z[0]
    assert (z.abs() > 19).sum() >= 16
    want = _authors_demo(name, z, y, **kw)
    got = L.build(name, reduction="none", **kw)(z, y)
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-12)
    # the clamped elements take the authors' extreme values: 1/p - 1 = 1e8 - 1 on a positive
    # with z < -19; on a negative with z > 19, 1/(1-p) - 1 = 1e8 - 1 (exp_ce) or
    # p^gamma (-log(1 - p)) = (1 - 1e-8)^gamma ln(1e8) (f_ece)
    wrong_pos = (z < -19) & (y == 1)
    wrong_neg = (z > 19) & (y == 0)
    assert wrong_pos.sum() >= 4 and wrong_neg.sum() >= 4
    neg_bound = 1e8 - 1 if name == "exp_ce" else (1 - 1e-8) ** kw.get("gamma", 2.0) * math.log(1e8)
    torch.testing.assert_close(got[wrong_pos], torch.full_like(got[wrong_pos], 1e8 - 1),
                               rtol=1e-6, atol=0)
    torch.testing.assert_close(got[wrong_neg], torch.full_like(got[wrong_neg], neg_bound),
                               rtol=1e-6, atol=0)
    # float32 logits too (the kit computes in float32 then)
    got32 = L.build(name, reduction="none", **kw)(z.float(), y.float())
    torch.testing.assert_close(got32.double(), want, rtol=1e-5, atol=1e-6)
    # the rounded bound of earlier versions would not match (7e-4 off per clamped element)
    old = L.build(name, reduction="none", clamp=18.42, **kw)(z, y)
    assert not torch.allclose(old, want, rtol=1e-6, atol=1e-12)


def test_bce_equals_torch_functional():
    z, t = tz(), ty(T)
    pw = torch.tensor(PW, dtype=torch.float64)
    for kw, yy in (({}, ty()), ({"pos_weight": PW}, ty()), ({"pos_weight": PW}, t)):
        got = L.build("bce", **kw)(z, yy)
        want = F.binary_cross_entropy_with_logits(z, yy, pos_weight=pw if kw else None)
        torch.testing.assert_close(got, want, rtol=0, atol=0)
    ls = L.build("bce", label_smoothing=0.2)(z, ty())
    want = F.binary_cross_entropy_with_logits(z, ty() * 0.8 + 0.1)
    torch.testing.assert_close(ls, want)


# ------------------------------------------------------------------------------------------
# published implementations / equivalences
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("alpha,tv_alpha", [(0.25, 0.25), (0.5, 0.5), (None, -1)])
@pytest.mark.parametrize("gamma", [2.0, 0.5])
@pytest.mark.parametrize("targets", ["hard", "soft"])
def test_focal_equals_torchvision(alpha, tv_alpha, gamma, targets):
    from torchvision.ops import sigmoid_focal_loss

    z = tz()
    y = ty(Y if targets == "hard" else T)
    for red in ("mean", "sum", "none"):
        ours = L.build("focal", gamma=gamma, alpha=alpha, reduction=red)(z, y)
        theirs = sigmoid_focal_loss(z, y, alpha=tv_alpha, gamma=gamma, reduction=red)
        torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-14)


def test_focal_gamma0_no_alpha_is_bce():
    z, y = tz(), ty()
    torch.testing.assert_close(L.build("focal", gamma=0)(z, y), L.build("bce")(z, y))


def test_soft_zlpr_equals_zlpr_on_hard_targets():
    z1, z2 = tz(requires_grad=True), tz(requires_grad=True)
    a = L.build("zlpr", reduction="none")(z1, ty())
    b = L.build("soft_zlpr", reduction="none")(z2, ty())
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    a.sum().backward()
    b.sum().backward()
    torch.testing.assert_close(z1.grad, z2.grad, rtol=0, atol=0)


def test_soft_zlpr_label_smoothing_equals_pre_smoothed_targets():
    z, t = tz(), ty(T)
    a = L.build("soft_zlpr", label_smoothing=0.3)(z, t)
    b = L.build("soft_zlpr")(z, t * 0.7 + 0.15)
    torch.testing.assert_close(a, b)


@pytest.mark.parametrize("tau", [0.2, 0.7, 3.0])
def test_fzlpr_is_zlpr_of_scaled_logits(tau):
    z, y = tz(), ty()
    kw = {} if tau == 0.2 else {"tau": tau}  # tau=0.2 is the default
    got = L.build("fzlpr", reduction="none", **kw)(z, y)
    want = L.build("zlpr", reduction="none")(z / tau, y)
    torch.testing.assert_close(got, want, rtol=1e-15, atol=0)


def test_zlpr_rows_without_positives_or_negatives():
    z, y = tz(), ty()
    got = L.build("zlpr", reduction="none")(z, y)
    assert math.isclose(got[2].item(), math.log(1 + sum(math.exp(v) for v in Z[2])), rel_tol=1e-13)
    assert math.isclose(got[3].item(), math.log(1 + sum(math.exp(-v) for v in Z[3])), rel_tol=1e-13)


def test_zlpr_accepts_bool_and_int_targets():
    z = tz()
    want = L.build("zlpr")(z, ty())
    for dt in (torch.bool, torch.long, torch.float32):
        torch.testing.assert_close(L.build("zlpr")(z, ty().to(dt)), want)
        torch.testing.assert_close(L.build("exp_ce")(z, ty().to(dt)), L.build("exp_ce")(z, ty()))


# ------------------------------------------------------------------------------------------
# gradients
# ------------------------------------------------------------------------------------------
# gradcheck needs the backward to be the derivative of the value: ASL with detached focusing
# weights is not (tested separately below), so ASL runs here with detach_focusing=False.
GRAD_CASES = [
    (c[0], c[1], {**c[2], "detach_focusing": False} if c[1] == "asl" else c[2], c[3], c[4])
    for c in CASES
] + [
    ("asl_g05", "asl", {"gamma_pos": 0.5, "gamma_neg": 0.5, "detach_focusing": False}, None, Y)
]


@pytest.mark.parametrize("cid,name,kw,ref,targets", GRAD_CASES, ids=[c[0] for c in GRAD_CASES])
def test_gradcheck_float64(cid, name, kw, ref, targets):
    loss = L.build(name, reduction="sum", **kw)
    y = ty(targets)
    assert torch.autograd.gradcheck(lambda z: loss(z, y), (tz(requires_grad=True),))


def _asl_grad_ref(z, y, detach, gamma_neg=4.0, gamma_pos=1.0, m=0.05):
    p = sigmoid(z)
    if y == 1:
        g = -((1 - p) ** (gamma_pos + 1))
        if not detach:
            g += gamma_pos * p * (1 - p) ** gamma_pos * math.log(p)
        return g
    pm = p - m
    if pm <= 0:
        return 0.0
    g = pm**gamma_neg * p * (1 - p) / (1 - pm)
    if not detach:
        g -= gamma_neg * pm ** (gamma_neg - 1) * p * (1 - p) * math.log(1 - pm)
    return g


@pytest.mark.parametrize("detach", [True, False])
def test_asl_gradient_detach_on_off(detach):
    z = tz(requires_grad=True)
    L.build("asl", detach_focusing=detach, reduction="sum")(z, ty()).backward()
    want = [[_asl_grad_ref(Z[i][j], Y[i][j], detach) for j in range(5)] for i in range(4)]
    torch.testing.assert_close(z.grad, torch.tensor(want, dtype=torch.float64))


def test_asl_detach_changes_gradient_not_value():
    z1, z2 = tz(requires_grad=True), tz(requires_grad=True)
    a = L.build("asl", detach_focusing=True)(z1, ty())
    b = L.build("asl", detach_focusing=False)(z2, ty())
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    a.backward()
    b.backward()
    assert (z1.grad - z2.grad).abs().max() > 1e-3
    # with detached weights the backward is not the derivative of the value
    loss = L.build("asl", reduction="sum")
    ok = torch.autograd.gradcheck(
        lambda z: loss(z, ty()), (tz(requires_grad=True),), raise_exception=False
    )
    assert not ok


def test_exp_ce_gradient_at_and_beyond_clamp():
    c = EXP_CE_CLAMP
    z = torch.tensor([[c, -c, c + 1, -c - 1, 1e4, -1e4]], dtype=torch.float64, requires_grad=True)
    y = ty([[0, 1, 0, 1, 1, 0]])
    L.build("exp_ce", reduction="sum")(z, y).backward()
    e = math.exp(c)
    # on the bound: the interior derivative; strictly outside: zero; never inf/NaN
    torch.testing.assert_close(z.grad, torch.tensor([[e, -e, 0, 0, 0, 0]], dtype=torch.float64))


@pytest.mark.parametrize("name", ["exp_ce", "f_ece"])
def test_gradient_on_clamp_bound_is_interior_derivative(name):
    c = EXP_CE_CLAMP
    z = torch.tensor([[c, -c, c, -c]], dtype=torch.float64)
    y = ty([[0, 1, 1, 0]])
    grads = []
    for bound in (c, 60.0):  # the default clamp, and one far away (no clamping)
        zz = z.clone().requires_grad_(True)
        L.build(name, clamp=bound, reduction="sum")(zz, y).backward()
        grads.append(zz.grad)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-12, atol=0)
    assert (grads[0] != 0).all()


# ------------------------------------------------------------------------------------------
# robustness: huge logits in float32 and under bf16 autocast
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cid,name,kw,ref,targets", CASES, ids=CASE_IDS)
def test_finite_for_huge_logits_float32(cid, name, kw, ref, targets):
    z = torch.tensor(
        [[1e4, -1e4, 1e4, -1e4, 0.0], [-1e4, 1e4, 5e3, -5e3, 1e4],
         [1e4, 1e4, -1e4, -1e4, 1e4], [-1e4, -1e4, -1e4, -1e4, -1e4]],
        requires_grad=True,
    )
    loss = L.build(name, **kw)(z, torch.tensor(targets, dtype=torch.float32))
    loss.backward()
    assert loss.dtype == torch.float32
    assert torch.isfinite(loss)
    assert torch.isfinite(z.grad).all()


@pytest.mark.parametrize("cid,name,kw,ref,targets", CASES, ids=CASE_IDS)
def test_finite_under_bf16_autocast(cid, name, kw, ref, targets):
    torch.manual_seed(0)
    layer = torch.nn.Linear(8, 5)
    with torch.no_grad():
        layer.weight.mul_(3e3)
    x = torch.randn(4, 8)
    y = torch.tensor(targets, dtype=torch.float32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = layer(x)
        assert logits.dtype == torch.bfloat16
        assert logits.abs().max() > 1e3
        loss = L.build(name, **kw)(logits, y)
    assert loss.dtype == torch.float32  # evaluated in float32
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(layer.weight.grad).all() and torch.isfinite(layer.bias.grad).all()


def test_focal_and_asl_keep_precision_for_confident_predictions_float32():
    # 1 - p_t must come from sigmoid(-z), not 1 - sigmoid(z) (which is exactly 0 in float32)
    z32 = torch.tensor([[20.0, -20.0, 30.0]])
    y = torch.tensor([[1.0, 0.0, 1.0]])
    for name, kw in (("focal", {}), ("focal", {"alpha": 0.25}), ("asl", {"clip": 0.0, "gamma_neg": 1.0})):
        got = L.build(name, reduction="none", **kw)(z32, y)
        want = L.build(name, reduction="none", **kw)(z32.double(), y.double())
        assert (got > 0).all(), (name, got)
        torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=0)


def test_zlpr_float16_logits_near_fp16_max():
    z = torch.tensor([[6e4, -6e4, 3e4], [-6e4, 6e4, 0.0]], dtype=torch.float16, requires_grad=True)
    y = torch.tensor([[0.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    for name in ("zlpr", "soft_zlpr", "fzlpr"):
        z.grad = None
        loss = L.build(name)(z, y)
        loss.backward()
        assert loss.dtype == torch.float32 and torch.isfinite(loss)
        assert torch.isfinite(z.grad).all()
    # the finite value is the exact one: log(1+e^6e4) + log(1+e^6e4) ~ 2 * 6e4 in row 0
    got = L.build("zlpr", reduction="none")(z.detach(), y)
    assert math.isclose(got[0].item(), 12e4, rel_tol=1e-6)


# ------------------------------------------------------------------------------------------
# reductions
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cid,name,kw,ref,targets", CASES, ids=CASE_IDS)
def test_reductions_consistent(cid, name, kw, ref, targets):
    z, y = tz(), ty(targets)
    none = L.build(name, reduction="none", **kw)(z, y)
    torch.testing.assert_close(L.build(name, reduction="sum", **kw)(z, y), none.sum())
    torch.testing.assert_close(L.build(name, reduction="mean", **kw)(z, y), none.mean())


def test_bad_reduction_rejected():
    with pytest.raises(ValueError, match="reduction"):
        L.build("zlpr", reduction="avg")


# ------------------------------------------------------------------------------------------
# input checks
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_shape_errors(name):
    loss = L.build(name)
    with pytest.raises(ValueError, match="must equal logits shape"):
        loss(tz(), ty()[:, :4])
    with pytest.raises(ValueError, match="must equal logits shape"):
        loss(tz(), ty()[:1])  # would broadcast silently otherwise
    with pytest.raises(ValueError, match="batch, classes"):
        loss(tz()[0], ty()[0])
    with pytest.raises(TypeError, match="floating"):
        loss(torch.ones(4, 5, dtype=torch.long), ty())


@pytest.mark.parametrize("name", NAMES)
def test_target_range_errors(name):
    loss = L.build(name)
    for bad in (1.5, -0.1):
        y = ty().clone()
        y[0, 1] = bad
        with pytest.raises(ValueError, match="0, 1|0 or 1"):
            loss(tz(), y)
    y = ty().clone()
    y[0, 1] = 0.5
    if name in SOFT_OK:
        assert torch.isfinite(loss(tz(), y))
    else:
        with pytest.raises(ValueError, match="0 or 1"):
            loss(tz(), y)


def test_pos_weight_length_checked():
    with pytest.raises(ValueError, match="pos_weight"):
        L.build("bce", pos_weight=[1.0, 2.0])(tz(), ty())
    with pytest.raises(ParameterError, match="pos_weight"):
        L.build("bce", pos_weight=[1.0, -2.0])
    # a scalar pos_weight broadcasts to every class
    got = L.build("bce", pos_weight=2.0)(tz(), ty())
    want = L.build("bce", pos_weight=[2.0] * 5)(tz(), ty())
    torch.testing.assert_close(got, want)


@pytest.mark.parametrize(
    "name,kw,match",
    [
        ("focal", {"gamma": -1.0}, "gamma"),
        ("focal", {"alpha": 1.5}, "alpha"),
        ("focal", {"alpha": -1}, "alpha=None"),
        ("asl", {"clip": 1.0}, "clip"),
        ("asl", {"eps": 0.0}, "eps"),
        ("asl", {"detach_focusing": "yes"}, "detach_focusing"),
        ("fzlpr", {"tau": 0.0}, "tau"),
        ("soft_zlpr", {"label_smoothing": 1.5}, "label_smoothing"),
        ("bce", {"label_smoothing": -0.1}, "label_smoothing"),
        ("exp_ce", {"clamp": 0.0}, "clamp"),
        ("f_ece", {"gamma": "2"}, "gamma"),
    ],
)
def test_bad_parameters(name, kw, match):
    with pytest.raises(ParameterError, match=match):
        L.build(name, **kw)


# ------------------------------------------------------------------------------------------
# registry and conventions
# ------------------------------------------------------------------------------------------
def test_registry_lists_all_multilabel_losses():
    assert set(NAMES) <= set(L.available("multilabel"))
    for name in NAMES:
        assert L.task_of(name) == "multilabel"


def test_registry_typos_are_explained():
    with pytest.raises(ParameterError, match="zlpr"):
        L.build("zlp")
    with pytest.raises(ParameterError, match="gamma"):
        L.build("focal", gama=2)


@pytest.mark.parametrize("name", NAMES)
def test_module_conventions(name):
    cls = L.get(name)
    assert issubclass(cls, torch.nn.Module)
    assert cls.decision_threshold_logit == 0.0
    doc = cls.__doc__.lower()
    assert "mean" in doc and ("element mean" in doc or "sample mean" in doc)
    assert ("sample mean" in doc) == (name in SET_WISE)
    assert L.build(name).reduction == "mean"


def test_bce_pos_weight_is_a_buffer():
    loss = L.build("bce", pos_weight=PW)
    assert "pos_weight" in loss.state_dict()
    assert L.build("bce").pos_weight is None


# ------------------------------------------------------------------------------------------
# optional: ZLPR consistency term
# ------------------------------------------------------------------------------------------
def test_zlpr_consistency_value_and_gradient():
    s_rows, t_rows = Z, [[v * 0.5 - 0.3 for v in r] for r in Z]
    want = [
        sum((sigmoid(a) - sigmoid(b)) * (a - b) for a, b in zip(sr, tr))
        for sr, tr in zip(s_rows, t_rows)
    ]
    s, t = tz(s_rows), tz(t_rows)
    torch.testing.assert_close(
        zlpr_consistency(s, t, reduction="none"), torch.tensor(want, dtype=torch.float64)
    )
    assert math.isclose(zlpr_consistency(s, t).item(), sum(want) / 4, rel_tol=1e-12)
    assert math.isclose(zlpr_consistency(t, s, reduction="sum").item(), sum(want), rel_tol=1e-12)
    assert zlpr_consistency(s, s).item() == 0.0
    assert torch.autograd.gradcheck(
        zlpr_consistency, (tz(s_rows, True), tz(t_rows, True))
    )
    with pytest.raises(ValueError, match="same shape"):
        zlpr_consistency(s, t[:, :3])


# ------------------------------------------------------------------------------------------
# fast paths (added with the speed work): every shortcut equals the plain formula
# ------------------------------------------------------------------------------------------
from lfakit.losses.multilabel import _zlpr_direct, _zlpr_stable  # noqa: E402


def _rand_case(seed, b=6, c=7, scale=3.0, soft=False):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(b, c, generator=g, dtype=torch.float64) * scale
    if soft:
        t = torch.rand(b, c, generator=g, dtype=torch.float64)
    else:
        t = (torch.rand(b, c, generator=g, dtype=torch.float64) < 0.3).to(torch.float64)
    return z, t


@pytest.mark.parametrize("tau", [None, 0.2])
@pytest.mark.parametrize("kind", ["hard", "general", "soft"])
def test_zlpr_direct_sums_equal_stable_form_value_and_gradient(tau, kind):
    z, t = _rand_case(1, soft=kind == "soft")
    z1 = z.clone().requires_grad_(True)
    values = _zlpr_direct(z1, t, tau, kind == "hard")
    values.sum().backward()
    zz = z.clone().requires_grad_(True)
    ref = _zlpr_stable(zz if tau is None else zz / tau, t)
    ref.sum().backward()
    torch.testing.assert_close(values.detach(), ref.detach(), rtol=1e-12, atol=0)
    torch.testing.assert_close(z1.grad, zz.grad, rtol=1e-10, atol=1e-14)


def test_zlpr_hard_and_general_direct_forms_are_bitwise_equal():
    z, t = _rand_case(2)
    out = []
    for hard in (True, False):
        zz = z.clone().requires_grad_(True)
        v = _zlpr_direct(zz, t, None, hard)
        v.sum().backward()
        out.append((v.detach(), zz.grad))
    (v1, g1), (v2, g2) = out
    assert torch.equal(v1, v2) and torch.equal(g1, g2)


@pytest.mark.parametrize("name", ["zlpr", "fzlpr", "soft_zlpr"])
def test_zlpr_row_that_overflows_switches_to_stable_form_exactly(name):
    # one row far beyond exp's float32 range: the whole batch is evaluated stably, and every
    # row equals the float64 value (which needs no fallback there)
    z, y = _rand_case(3)
    z[2] = torch.tensor([300.0, -250.0, 120.0, -90.0, 95.0, 0.5, -400.0], dtype=torch.float64)
    z32 = z.float().requires_grad_(True)
    loss = L.build(name, reduction="none")(z32, y.float())
    loss.sum().backward()
    z64 = z.clone().requires_grad_(True)
    want = L.build(name, reduction="none")(z64, y)
    want.sum().backward()
    assert torch.isfinite(loss).all() and torch.isfinite(z32.grad).all()
    torch.testing.assert_close(loss.double(), want.detach(), rtol=2e-6, atol=1e-6)
    torch.testing.assert_close(z32.grad.double(), z64.grad, rtol=1e-4, atol=1e-6)


def test_soft_zlpr_and_zlpr_agree_where_only_one_falls_back():
    # exp(-z) of a negative label's z = -100 overflows float32 in soft_zlpr's general form
    # (weight 0, but 0 * inf) while zlpr never evaluates it: both give the exact value
    z = torch.tensor([[-100.0, 2.0, -1.0], [0.3, -0.2, 1.5]], requires_grad=True)
    y = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 1.0]])
    a = L.build("zlpr", reduction="none")(z, y)
    b = L.build("soft_zlpr", reduction="none")(z, y)
    torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
    exact = torch.tensor(ref_zlpr(z.tolist(), y.tolist()))
    torch.testing.assert_close(a, exact, rtol=1e-6, atol=1e-7)


def _asl_autograd_reference(z, y, gamma_neg=4.0, gamma_pos=1.0, clip=0.05, eps=1e-8):
    """ASL with detached focusing weights written with plain torch ops (autograd gradient)."""
    p = torch.sigmoid(z)
    one_minus_p = torch.sigmoid(-z)
    log_pos = torch.log(torch.clamp(p, min=eps))
    if clip > 0:
        xs_neg = torch.clamp(one_minus_p + clip, max=1)
        p_m = torch.clamp(p - clip, min=0)
    else:
        xs_neg, p_m = one_minus_p, p
    log_neg = torch.log(torch.clamp(xs_neg, min=eps))
    w_pos = one_minus_p.detach().clamp(min=1e-6 if gamma_pos < 1 else 0) ** gamma_pos
    w_neg = p_m.detach().clamp(min=1e-6 if gamma_neg < 1 else 0) ** gamma_neg
    return -(y * w_pos * log_pos + (1 - y) * w_neg * log_neg).sum()


@pytest.mark.parametrize(
    "kw",
    [{}, {"clip": 0.0}, {"clip": 1e-9, "eps": 1e-8}, {"gamma_pos": 0.5, "gamma_neg": 0.7},
     {"gamma_pos": 0.0, "gamma_neg": 0.0}, {"clip": 0.2, "gamma_neg": 2.0}],
    ids=["default", "noclip", "clip_below_eps", "gammas_below_1", "gammas_0", "clip02"],
)
def test_asl_detached_gradient_equals_autograd_of_the_formula(kw):
    # logits away from the kinks, with some beyond the eps floor (|z| > -ln(1e-8) = 18.42...)
    z, y = _rand_case(4, b=8, c=6, scale=4.0)
    z[0, :3] = torch.tensor([-25.0, 30.0, -40.0], dtype=torch.float64)
    z1 = z.clone().requires_grad_(True)
    L.build("asl", reduction="sum", **kw)(z1, y).backward()
    z2 = z.clone().requires_grad_(True)
    ref_kw = {k: v for k, v in kw.items()}
    _asl_autograd_reference(z2, y, **ref_kw).backward()
    torch.testing.assert_close(z1.grad, z2.grad, rtol=1e-9, atol=1e-12)


AUTOGRAD = ["exp_ce", "f_ece", "zlpr", "soft_zlpr", "fzlpr", "asl"]


@pytest.mark.parametrize("reduction", ["none", "mean"])
@pytest.mark.parametrize("name", AUTOGRAD)
def test_losses_gradcheck_every_reduction(name, reduction):
    kw = {"detach_focusing": False} if name == "asl" else {}  # (detached: not the derivative)
    loss = L.build(name, reduction=reduction, **kw)
    y = ty(T if name == "soft_zlpr" else Y)
    assert torch.autograd.gradcheck(lambda z: loss(z, y), (tz(requires_grad=True),))


@pytest.mark.parametrize("name", AUTOGRAD)
def test_second_derivative_is_correct(name):
    # every loss is written with autograd ops (no hand-written backward): double backward works
    kw = {"detach_focusing": False} if name == "asl" else {}
    loss = L.build(name, reduction="sum", **kw)
    y = ty(T if name == "soft_zlpr" else Y)
    assert torch.autograd.gradgradcheck(lambda z: loss(z, y), (tz(requires_grad=True),))


@pytest.mark.parametrize("name", AUTOGRAD)
def test_same_value_with_and_without_grad(name):
    loss = L.build(name)
    y = ty(T if name == "soft_zlpr" else Y)
    z = tz(requires_grad=True)
    with torch.no_grad():
        plain = loss(z, y)
    assert torch.equal(plain, loss(z, y).detach())


@pytest.mark.parametrize("name", sorted(SOFT_OK))
def test_nan_soft_targets_rejected(name):
    y = ty(T).clone()
    y[1, 2] = float("nan")
    with pytest.raises(ValueError, match="0, 1"):
        L.build(name)(tz(), y)


@pytest.mark.parametrize("name", NAMES)
def test_integer_targets_out_of_range_rejected(name):
    y = ty().long()
    y[0, 0] = 2
    with pytest.raises(ValueError, match="0, 1|0 or 1"):
        L.build(name)(tz(), y)


def test_focal_hard_and_soft_code_paths_agree():
    # 0/1 targets take the signed-logit path; adding a 0.5 somewhere switches the whole batch
    # to the interpolating path: the other elements must not change
    y = ty()
    y_mixed = y.clone()
    y_mixed[0, 1] = 0.5
    for kw in ({}, {"alpha": 0.25}, {"gamma": 0.5}):
        a = L.build("focal", reduction="none", **kw)(tz(), y)
        b = L.build("focal", reduction="none", **kw)(tz(), y_mixed)
        mask = torch.ones_like(a, dtype=torch.bool)
        mask[0, 1] = False
        torch.testing.assert_close(a[mask], b[mask], rtol=1e-14, atol=1e-16)
