"""Tests for lfakit.attacks: protocol, statistics, LiRA, RMIA, shadow, thresholds, run_attacks."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.special import logsumexp, softmax
from scipy.stats import hypergeom, spearmanr
from sklearn.metrics import roc_auc_score

from lfakit import attacks as A
from lfakit.errors import ParameterError
from lfakit.metrics import privacy


# --------------------------------------------------------------------------- synthetic models
def _outputs(labels, masks, effect, seed, k=5):
    """Logits (M, N, K) and cross-entropy losses (M, N) of M synthetic models, model m trained on
    ``masks[m]``: a per-example logit pattern shared by all models (example difficulty), model
    noise, and ``effect`` added to the true-class logit of the model's training points
    (memorisation; 0: a model that saw neither set, or rather whose outputs ignore it)."""
    rng = np.random.default_rng(seed)
    n = len(labels)
    base = rng.normal(0.0, 1.0, (n, k))
    z = base[None] + 0.3 * rng.normal(size=(len(masks), n, k))
    z[:, np.arange(n), labels] += effect * np.asarray(masks, float)
    loss = -(z[:, np.arange(n), labels] - logsumexp(z, axis=2))
    return z, loss


def _setup(n=600, n_ref=4, effect=6.0, seed=0, k=5):
    pr = A.make_protocol(n, n_ref, seed)
    labels = np.random.default_rng(seed + 100).integers(0, k, n)
    z, loss = _outputs(labels, np.vstack([pr.members[None], pr.ref_in]), effect, seed + 200, k)
    return pr, labels, z[0], loss[0], z[1:], loss[1:]


def _null_tolerance(n1, n2, k=4.0):
    """k standard deviations of the AUC under no signal (Mann-Whitney null, no ties)."""
    return k * math.sqrt((n1 + n2 + 1) / (12.0 * n1 * n2))


# --------------------------------------------------------------------------- protocol
@pytest.mark.parametrize("n, r", [(1000, 16), (7, 4), (4, 2), (10, 0)])
def test_protocol_split_and_reference_balance(n, r):
    pr = A.make_protocol(n, r, seed=5)
    assert pr.members.dtype == bool and pr.members.shape == (n,)
    assert pr.members.sum() == n // 2 and pr.non_members.sum() == n - n // 2
    assert not (pr.members & pr.non_members).any() and (pr.members | pr.non_members).all()
    assert pr.n_ref == r and pr.ref_in.shape == (r, n) and pr.ref_in.dtype == bool
    assert (pr.ref_in.sum(0) == r // 2).all()
    assert pr.n_pool == n


def test_protocol_odd_reference_count_rule():
    pr = A.make_protocol(101, 5, seed=1)
    counts = pr.ref_in.sum(0)
    assert set(np.unique(counts)) == {2, 3}
    assert (counts == 3).sum() == 101 // 2
    one = A.make_protocol(100, 1, seed=1)
    assert one.ref_in.sum() == 50


def test_protocol_is_seeded():
    a, b, c = A.make_protocol(500, 8, 3), A.make_protocol(500, 8, 3), A.make_protocol(500, 8, 4)
    assert np.array_equal(a.members, b.members) and np.array_equal(a.ref_in, b.ref_in)
    assert not np.array_equal(a.members, c.members) and not np.array_equal(a.ref_in, c.ref_in)
    assert a.seed == 3


def _max_overlap_z(members, ref_in):
    """Largest |z| over reference models of the overlap of its IN set with the target's members
    (hypergeometric under independence)."""
    n, k = len(members), int(members.sum())
    zs = []
    for row in ref_in:
        d = hypergeom(n, k, int(row.sum()))
        zs.append((int((row & members).sum()) - d.mean()) / d.std())
    return max(abs(z) for z in zs)


def test_protocol_reference_sets_are_independent_of_the_target_split():
    pr = A.make_protocol(4000, 32, seed=11)
    # 32 z-scores under independence: |z| > 5 has probability ~2e-5 overall
    assert _max_overlap_z(pr.members, pr.ref_in) < 5.0
    # the check detects dependence: a reference model that copies the target's split
    bad = pr.ref_in.copy()
    bad[0] = pr.members
    assert _max_overlap_z(pr.members, bad) > 5.0


@pytest.mark.parametrize("args, match", [((3, 2, 0), "n_pool"), ((10, -1, 0), "n_ref"), ((10, True, 0), "n_ref"),
                                         ((10.0, 2, 0), "n_pool"), ((10, 2, -1), "seed")])
def test_protocol_validates(args, match):
    with pytest.raises(ParameterError, match=match):
        A.make_protocol(*args)


def test_protocol_dataclass_validates_shapes():
    with pytest.raises(ParameterError, match="columns"):
        A.Protocol(np.zeros(6, bool), np.zeros((2, 5), bool))


# --------------------------------------------------------------------------- statistics
def test_logit_confidence_matches_the_naive_formula():
    rng = np.random.default_rng(0)
    z = rng.normal(0, 3, (200, 7))
    y = rng.integers(0, 7, 200)
    p = softmax(z, axis=1)[np.arange(200), y]
    np.testing.assert_allclose(A.true_class_logit_confidence(z, y), np.log(p / (1 - p)), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(A.true_class_probability(z, y), p, rtol=1e-12)


def test_logit_confidence_is_finite_for_huge_logits():
    z = np.array([[1000.0, 0.0, -1000.0], [1000.0, 0.0, -1000.0], [5e3, 5e3, 0.0]])
    y = np.array([0, 1, 0])
    phi = A.true_class_logit_confidence(z, y)
    assert np.isfinite(phi).all()
    assert phi[0] == pytest.approx(1000.0) and phi[1] == pytest.approx(-1000.0) and phi[2] == pytest.approx(0.0)
    with np.errstate(all="ignore"):  # the naive formula overflows here
        p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
        assert not np.isfinite(np.log(p[0, 0] / (1 - p[0, 0])))
    p = A.true_class_probability(z, y)
    assert p[0] == 1.0 and p[1] == pytest.approx(0.0) and p[2] == pytest.approx(0.5)


def test_statistics_validate_labels():
    with pytest.raises(ParameterError, match="labels"):
        A.true_class_probability(np.zeros((3, 4)), np.array([0, 1, 4]))
    with pytest.raises(ParameterError, match="2 classes"):
        A.true_class_logit_confidence(np.zeros((3, 1)), np.zeros(3, int))


def test_threshold_attacks():
    z = np.array([[2.0, 0.0], [0.0, 2.0]])
    np.testing.assert_array_equal(A.loss_attack([0.1, 2.0]), [-0.1, -2.0])
    np.testing.assert_allclose(A.confidence_attack(z, [0, 0]), softmax(z, 1)[:, 0])


# --------------------------------------------------------------------------- LiRA
def _gaussian_world(n=2000, r=64, seed=0):
    rng = np.random.default_rng(seed)
    mu_out = rng.normal(0, 2, n)
    mu_in = mu_out + rng.uniform(0.5, 3.0, n)
    sigma = rng.uniform(0.5, 1.5, n)
    ref_in = A.make_protocol(n, r, seed).ref_in
    ref_phi = np.where(ref_in, mu_in, mu_out) + sigma * rng.normal(size=(r, n))
    member = rng.random(n) < 0.5
    phi = np.where(member, mu_in, mu_out) + sigma * rng.normal(size=n)
    return phi, ref_phi, ref_in, member, mu_in, mu_out, sigma


def _log_normal(x, mu, s):
    return -0.5 * ((x - mu) / s) ** 2 - np.log(s)


def test_lira_online_ranks_as_the_true_likelihood_ratio():
    phi, ref_phi, ref_in, member, mu_in, mu_out, sigma = _gaussian_world()
    true_llr = _log_normal(phi, mu_in, sigma) - _log_normal(phi, mu_out, sigma)
    got = A.lira(phi, ref_phi, ref_in, online=True)
    assert spearmanr(got, true_llr).statistic > 0.95
    assert abs(roc_auc_score(member, got) - roc_auc_score(member, true_llr)) < 0.02
    assert roc_auc_score(member, true_llr) > 0.75  # the test has signal to lose


def test_lira_offline_is_the_one_sided_out_test():
    phi, ref_phi, ref_in, member, mu_in, mu_out, sigma = _gaussian_world()
    true_z = (phi - mu_out) / sigma
    got = A.lira(phi, ref_phi, ref_in, online=False)
    assert spearmanr(got, true_z).statistic > 0.95
    # one-sided: a phi far *below* the OUT mean is scored as a non-member (a two-sided test would not)
    low = A.lira(mu_out - 5 * sigma, ref_phi, ref_in, online=False)
    high = A.lira(mu_out + 5 * sigma, ref_phi, ref_in, online=False)
    assert (low < 0).all() and (high > 0).all()


def test_lira_median_center_and_fixed_variance():
    phi, ref_phi, ref_in, *_ = _gaussian_world(n=50, r=8)
    out = ~ref_in
    med = np.array([np.median(ref_phi[out[:, j], j]) for j in range(50)])
    fixed_sd = ref_phi[out].std()
    got = A.lira(phi, ref_phi, ref_in, online=False, center="median", fixed_variance=True)
    np.testing.assert_allclose(got, (phi - med) / fixed_sd, rtol=1e-12)
    sd = np.array([ref_phi[out[:, j], j].std() for j in range(50)])
    mean = np.array([ref_phi[out[:, j], j].mean() for j in range(50)])
    np.testing.assert_allclose(A.lira(phi, ref_phi, ref_in, online=False), (phi - mean) / sd, rtol=1e-12)


def test_lira_falls_back_to_global_fits_without_in_or_out_models():
    rng = np.random.default_rng(1)
    ref_phi = rng.normal(size=(4, 6))
    ref_in = np.array([[1, 1, 0, 0, 1, 0], [1, 0, 1, 0, 1, 0], [0, 1, 1, 0, 1, 1], [0, 0, 0, 0, 1, 0]], bool)
    phi = rng.normal(size=6)
    # every model used (ref_counts="all": this unbalanced design is about the fall-backs, not the counts)
    online = A.lira(phi, ref_phi, ref_in, online=True, ref_counts="all")
    offline = A.lira(phi, ref_phi, ref_in, online=False, ref_counts="all")
    assert np.isfinite(online).all() and np.isfinite(offline).all()
    assert np.isfinite(A.lira(phi, ref_phi, ref_in, online=True)).all()  # balanced: the same fall-backs where needed
    # example 3: no IN model -> the IN Gaussian is the global one of all IN values
    g_in, s_in = ref_phi[ref_in].mean(), ref_phi[ref_in].std()
    o3 = ref_phi[:, 3]
    expected3 = _log_normal(phi[3], g_in, s_in) - _log_normal(phi[3], o3.mean(), o3.std())
    assert online[3] == pytest.approx(expected3, rel=1e-12)
    # example 4: no OUT model -> the OUT Gaussian is the global one of all OUT values
    g_out, s_out = ref_phi[~ref_in].mean(), ref_phi[~ref_in].std()
    assert offline[4] == pytest.approx((phi[4] - g_out) / s_out, rel=1e-12)
    # example 5: a single IN model -> its value as the mean, the global IN std as the scale
    i5 = ref_phi[ref_in[:, 5], 5]
    o5 = ref_phi[~ref_in[:, 5], 5]
    expected5 = _log_normal(phi[5], i5[0], s_in) - _log_normal(phi[5], o5.mean(), o5.std())
    assert online[5] == pytest.approx(expected5, rel=1e-12)


def test_lira_constant_reference_values_stay_finite():
    ref_phi = np.ones((4, 3))
    ref_in = np.array([[1, 0, 1], [1, 0, 0], [0, 1, 0], [0, 1, 1]], bool)
    s = A.lira(np.array([1.0, 2.0, 0.0]), ref_phi, ref_in)
    assert np.isfinite(s).all()


def test_lira_needs_in_and_out_values():
    with pytest.raises(ParameterError, match="IN"):
        A.lira(np.zeros(3), np.zeros((2, 3)), np.zeros((2, 3), bool))
    with pytest.raises(ParameterError, match="match"):
        A.lira(np.zeros(3), np.zeros((2, 4)), np.zeros((2, 4), bool))


# --------------------------------------------------------------------------- RMIA
# Pr(x) = 0.5 everywhere (online: mean of the reference values), target p = 0.1 .. 0.5:
# ratio(x) = 0.2, 0.4, 0.6, 0.8, 1.0 (no two ratios at a gamma boundary in the cases below)
RMIA_T = np.array([0.1, 0.2, 0.3, 0.4, 0.5])
RMIA_REF = np.full((2, 5), 0.5)
RMIA_IN = np.array([[1, 0, 1, 0, 1], [0, 1, 0, 1, 0]], bool)


@pytest.mark.parametrize("gamma, expected", [
    (1.0, [0, 1 / 4, 2 / 4, 3 / 4, 1]),  # ratio(z) <= ratio(x): the smaller ratios, self excluded
    (1.7, [0, 1 / 4, 1 / 4, 2 / 4, 2 / 4]),  # ratio(z) <= ratio(x) / 1.7
    (0.45, [1 / 4, 3 / 4, 1, 1, 1]),  # ratio(z) <= ratio(x) / 0.45; x's own comparison is still excluded
])
def test_rmia_gamma_hand_computed(gamma, expected):
    np.testing.assert_allclose(A.rmia(RMIA_T, RMIA_REF, RMIA_IN, gamma=gamma), expected)  # 2 models: nothing trimmed


def test_rmia_population_hand_computed():
    # population {0, 1}: x0 vs x1 only (0.2/0.4 < 1): 0; x1 vs x0: 1; x2..x4 vs both: 1
    expected = [0, 1, 1, 1, 1]
    np.testing.assert_allclose(A.rmia(RMIA_T, RMIA_REF, RMIA_IN, [0, 1], gamma=1.0), expected)
    np.testing.assert_allclose(A.rmia(RMIA_T, RMIA_REF, RMIA_IN, np.array([1, 1, 0, 0, 0], bool), gamma=1.0), expected)
    np.testing.assert_allclose(A.rmia(RMIA_T, RMIA_REF, RMIA_IN, [1, 0, 1], gamma=1.0), expected)  # duplicates dropped
    # population {4}: x4 has nothing else to compare with
    with pytest.raises(ParameterError, match="other than"):
        A.rmia(RMIA_T, RMIA_REF, RMIA_IN, [4])
    with pytest.raises(ParameterError, match="empty"):
        A.rmia(RMIA_T, RMIA_REF, RMIA_IN, np.zeros(5, bool))


def _rmia_brute(t, ref, ref_in, pop, gamma, a, trim=0.0):
    from scipy.stats import trim_mean

    if a is None:
        pr = trim_mean(ref, trim, axis=0)
    else:
        pr_out = np.array([trim_mean(ref[~ref_in[:, j], j], trim) for j in range(ref.shape[1])])
        pr = ((1 + a) * pr_out + 1 - a) / 2
    ratio = t / pr
    out = []
    for i in range(len(t)):
        zs = [j for j in pop if j != i]
        out.append(np.mean([ratio[i] / ratio[j] > gamma for j in zs]))
    return np.array(out)


@pytest.mark.parametrize("gamma, a, trim", [(1.0, None, 0.0), (2.0, None, 0.2), (0.7, 0.3, 0.0), (1.3, 1.0, 0.2),
                                            (1.0, 0.0, 0.0)])
def test_rmia_equals_the_brute_force_definition(gamma, a, trim):
    rng = np.random.default_rng(7)
    n, r = 60, 6
    ref_in = A.make_protocol(n, r, 2).ref_in
    ref = rng.uniform(0.01, 1.0, (r, n))
    t = rng.uniform(0.01, 1.0, n)
    pop = np.sort(rng.choice(n, 25, replace=False))
    got = A.rmia(t, ref, ref_in, pop, gamma=gamma, offline_a=a, trim=trim)
    np.testing.assert_allclose(got, _rmia_brute(t, ref, ref_in, pop, gamma, a, trim), atol=1e-12)


def test_rmia_offline_uses_only_out_models():
    rng = np.random.default_rng(3)
    n, r = 80, 4
    ref_in = A.make_protocol(n, r, 0).ref_in
    ref = rng.uniform(0.05, 1, (r, n))
    t = rng.uniform(0.05, 1, n)
    changed = np.where(ref_in, rng.uniform(0.05, 1, (r, n)), ref)  # new values on the IN entries only
    off, off2 = A.rmia(t, ref, ref_in, offline_a=0.3), A.rmia(t, changed, ref_in, offline_a=0.3)
    np.testing.assert_array_equal(off, off2)
    on, on2 = A.rmia(t, ref, ref_in), A.rmia(t, changed, ref_in)
    assert not np.array_equal(on, on2)  # online reads the IN models too, so the check above can fail


def test_rmia_offline_without_out_models_falls_back():
    ref_in = np.array([[1, 0, 1], [1, 1, 0]], bool)  # example 0 has no OUT model
    s = A.rmia(np.array([0.2, 0.5, 0.9]), np.array([[0.3, 0.4, 0.5], [0.6, 0.7, 0.8]]), ref_in, offline_a=0.5)
    assert np.isfinite(s).all()


def test_rmia_validates():
    with pytest.raises(ParameterError, match="gamma"):
        A.rmia(RMIA_T, RMIA_REF, RMIA_IN, gamma=0.0)
    with pytest.raises(ParameterError, match="offline_a"):
        A.rmia(RMIA_T, RMIA_REF, RMIA_IN, offline_a=1.5)
    with pytest.raises(ParameterError, match="not finite"):  # Pr(x) = 0: no ratio
        A.rmia(RMIA_T, np.zeros_like(RMIA_REF), RMIA_IN)
    with pytest.raises(ParameterError, match="trim"):
        A.rmia(RMIA_T, RMIA_REF, RMIA_IN, trim=0.5)
    with pytest.raises(ParameterError, match="self_vote"):
        A.rmia(RMIA_T, RMIA_REF, RMIA_IN, self_vote="paper")


# --------------------------------------------------------------------------- shadow
def test_shadow_features():
    z = np.array([[3.0, 1.0, 0.0, -1.0], [0.0, 0.0, 5.0, 0.0]])
    y = np.array([1, 2])
    f = A.shadow_features(z, y, sample_loss=[0.5, 0.1])
    logp = z - logsumexp(z, axis=1, keepdims=True)
    assert f.shape == (2, 6)
    np.testing.assert_allclose(f[:, :3], -np.sort(-logp, 1)[:, :3])
    np.testing.assert_allclose(f[:, 3], logp[[0, 1], y])
    np.testing.assert_allclose(f[:, 4], A.true_class_logit_confidence(z, y))
    np.testing.assert_allclose(f[:, 5], [0.5, 0.1])
    assert A.shadow_features(z[:, :2], [0, 1]).shape == (2, 4)  # K = 2: top-2, no loss column


def test_shadow_attack_needs_both_labels():
    with pytest.raises(ParameterError, match="both"):
        A.shadow_attack(np.zeros((2, 5, 3)), np.ones((2, 5), bool), np.zeros((5, 3)))


# --------------------------------------------------------------------------- thresholds
def test_choose_threshold_hand_computed():
    s = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    y = np.array([0, 0, 1, 0, 1, 1], bool)
    # t = 0.3: TPR 1, FPR 1/3 -> bal. acc 5/6; t = 0.5: TPR 2/3, FPR 0 -> 5/6 too: the larger wins
    assert A.choose_threshold(s, y) == 0.5
    assert A.choose_threshold(s[::-1], y[::-1]) == 0.5  # independent of the input order
    # a unique best
    assert A.choose_threshold([0.1, 0.2, 0.3, 0.4], [0, 0, 1, 1]) == 0.3
    # nothing separates (all tied): the one candidate
    assert A.choose_threshold([1.0, 1.0, 1.0], [0, 1, 0]) == 1.0
    with pytest.raises(ParameterError, match="both"):
        A.choose_threshold([0.1, 0.2], [1, 1])


def test_choose_threshold_maximises_balanced_accuracy():
    rng = np.random.default_rng(0)
    y = rng.random(300) < 0.3
    s = np.round(rng.normal(size=300) + y, 1)
    t = A.choose_threshold(s, y)
    best = max(privacy.attack_metrics(y, s, c)["balanced_accuracy"] for c in np.unique(s))
    assert privacy.attack_metrics(y, s, t)["balanced_accuracy"] == pytest.approx(best, abs=1e-12)


# --------------------------------------------------------------------------- run_attacks
def test_every_attack_detects_a_model_that_memorised_its_members():
    pr, labels, tz, tl, rz, rl = _setup(effect=6.0)
    res = A.run_attacks(tz, tl, labels, rz, rl, pr, fixed_variance=True)
    assert set(res) == set(A.ATTACKS)
    for name, r in res.items():
        assert r.scores.shape == (600,) and np.isfinite(r.scores).all(), name
        m = privacy.attack_metrics(pr.members, r.scores, r.threshold)
        assert m["auc"] > 0.9, (name, m["auc"])
        assert m["balanced_accuracy"] > 0.8, (name, m)  # the reference-chosen threshold transfers
        assert r.ref_scores.shape == (4 * 600,) and np.array_equal(r.ref_is_member, pr.ref_in.reshape(-1))


def test_no_attack_finds_membership_a_model_ignores():
    n = 1000
    pr, labels, tz, tl, rz, rl = _setup(n=n, effect=0.0, seed=1)
    tol = _null_tolerance(n // 2, n // 2)  # 4 null standard deviations of the AUC: ~0.073 here
    res = A.run_attacks(tz, tl, labels, rz, rl, pr, rmia_offline_a=0.3)
    for name, r in res.items():
        auc = roc_auc_score(pr.members, r.scores)
        assert abs(auc - 0.5) < tol, (name, auc, tol)


def test_the_null_check_can_fail():
    """The same tolerance flags a weak real signal (effect 1 on the true-class logit)."""
    n = 1000
    pr, labels, tz, tl, rz, rl = _setup(n=n, effect=1.0, seed=1)
    auc = roc_auc_score(pr.members, A.run_attacks(tz, tl, labels, rz, rl, pr, attacks=("loss",))["loss"].scores)
    assert abs(auc - 0.5) > _null_tolerance(n // 2, n // 2)


def test_thresholds_are_fitted_on_reference_data_only(monkeypatch):
    pr, labels, tz, tl, rz, rl = _setup(n=200)
    calls = []
    real = A.choose_threshold

    def spy(scores, is_member):
        calls.append((np.array(scores, copy=True), np.array(is_member, copy=True)))
        return real(scores, is_member)

    monkeypatch.setattr(A, "choose_threshold", spy)
    res = A.run_attacks(tz, tl, labels, rz, rl, pr)
    assert len(calls) == len(A.ATTACKS)
    for (scores, is_member), r in zip(calls, res.values()):
        assert len(scores) == pr.n_ref * pr.n_pool
        np.testing.assert_array_equal(is_member, pr.ref_in.reshape(-1))
        np.testing.assert_array_equal(scores, r.ref_scores)
        assert r.threshold == real(scores, is_member)
    # and the target's outputs do not move a threshold
    tz2, tl2 = tz.copy(), tl.copy()
    tz2[pr.members] += np.random.default_rng(0).normal(0, 5, tz2[pr.members].shape)
    tl2[pr.members] = 0.0
    res2 = A.run_attacks(tz2, tl2, labels, rz, rl, pr)
    for name in A.ATTACKS:
        assert res2[name].threshold == res[name].threshold, name
        assert not np.array_equal(res2[name].scores, res[name].scores), name


def test_reference_scores_are_leave_one_out():
    pr, labels, tz, tl, rz, rl = _setup(n=100, n_ref=4)
    s, y = A.reference_scores("lira_online", rz, rl, labels, pr.ref_in, fixed_variance=True)
    phi = np.stack([A.true_class_logit_confidence(z, labels) for z in rz])
    for r in range(4):
        others = [q for q in range(4) if q != r]
        expected = A.lira(phi[r], phi[others], pr.ref_in[others], fixed_variance=True)
        np.testing.assert_allclose(s[r * 100:(r + 1) * 100], expected)
    np.testing.assert_array_equal(y, pr.ref_in.reshape(-1))
    s, _ = A.reference_scores("loss", rz, rl, labels, pr.ref_in)
    np.testing.assert_array_equal(s, -rl.reshape(-1))


def test_attack_scores_match_run_attacks():
    pr, labels, tz, tl, rz, rl = _setup(n=100)
    res = A.run_attacks(tz, tl, labels, rz, rl, pr, attacks=("rmia", "lira_offline"), rmia_gamma=2.0)
    got = A.attack_scores("rmia", tz, tl, labels, rz, rl, pr.ref_in, members=pr.members, rmia_gamma=2.0)
    np.testing.assert_array_equal(got, res["rmia"].scores)
    p = A.rmia_signal(tz, labels)
    rp = np.stack([A.rmia_signal(z, labels) for z in rz])
    np.testing.assert_array_equal(res["rmia"].scores, A.rmia(p, rp, pr.ref_in, ~pr.members, gamma=2.0))
    with pytest.raises(ParameterError, match="membership"):
        A.attack_scores("rmia", tz, tl, labels, rz, rl, pr.ref_in)


def test_reference_model_minimums():
    pr0, labels, tz, tl, rz, rl = _setup(n=100, n_ref=0)
    res = A.run_attacks(tz, tl, labels, rz, rl, pr0)
    assert set(res) == {"loss", "confidence"}
    assert all(math.isnan(r.threshold) and r.ref_scores.size == 0 for r in res.values())
    with pytest.raises(ParameterError, match="at least 2"):
        A.run_attacks(tz, tl, labels, rz, rl, pr0, attacks=("lira_online",))
    pr1, labels, tz, tl, rz, rl = _setup(n=100, n_ref=1)
    assert set(A.run_attacks(tz, tl, labels, rz, rl, pr1)) == {"loss", "confidence"}
    # R = 2: every attack runs; the leave-one-out references miss an IN or OUT model per example
    # and take the global fall-backs: finite scores and thresholds
    pr2, labels, tz, tl, rz, rl = _setup(n=100, n_ref=2)
    res = A.run_attacks(tz, tl, labels, rz, rl, pr2)
    assert set(res) == set(A.ATTACKS)
    for name, r in res.items():
        assert np.isfinite(r.scores).all() and np.isfinite(r.ref_scores).all() and np.isfinite(r.threshold), name


def test_run_attacks_validates():
    pr, labels, tz, tl, rz, rl = _setup(n=100, n_ref=2)
    with pytest.raises(ParameterError, match="unknown attack"):
        A.run_attacks(tz, tl, labels, rz, rl, pr, attacks=("lira",))
    with pytest.raises(ParameterError, match="shapes"):
        A.run_attacks(tz, tl, labels, rz[:1], rl, pr)
    small = A.Protocol(pr.members[:60], pr.ref_in[:, :60])
    with pytest.raises(ParameterError, match="shapes"):
        A.run_attacks(tz[:50], tl[:50], labels[:50], rz[:, :50], rl[:, :50], small, attacks=("loss",))
    none = A.Protocol(pr.members[:60], np.zeros((0, 60), bool))
    with pytest.raises(ParameterError, match="pool"):
        A.run_attacks(tz[:50], tl[:50], labels[:50], rz[:0, :50], rl[:0, :50], none, attacks=("loss",))


def test_attacks_module_stays_torch_free():
    import ast
    from pathlib import Path

    for mod in (A, privacy):
        tree = ast.parse(Path(mod.__file__).read_text())
        names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        names += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
        assert not any(x == "torch" or x.startswith("torch.") for x in names), mod.__name__


# --------------------------------------------------------------------------- queries and targets
def test_one_query_axis_gives_the_scores_of_plain_logits():
    pr, labels, tz, tl, rz, rl = _setup(n=200)
    plain = A.run_attacks(tz, tl, labels, rz, rl, pr)
    queried = A.run_attacks(tz[:, None], tl, labels, rz[:, :, None], rl, pr)
    for name in A.ATTACKS:
        np.testing.assert_array_equal(plain[name].scores, queried[name].scores, err_msg=name)
        assert plain[name].threshold == queried[name].threshold


def test_queries_change_the_scores_and_the_loss_attack_reads_the_identity():
    pr, labels, tz, tl, rz, rl = _setup(n=200)
    rng = np.random.default_rng(9)
    tq = np.stack([tz, tz + rng.normal(0, 1, tz.shape)], 1)
    rq = np.stack([rz, rz + rng.normal(0, 1, rz.shape)], 2)
    plain = A.run_attacks(tz, tl, labels, rz, rl, pr)
    two = A.run_attacks(tq, tl, labels, rq, rl, pr)
    np.testing.assert_array_equal(two["loss"].scores, plain["loss"].scores)
    for name in ("confidence", "lira_online", "lira_offline", "rmia", "shadow"):
        assert not np.array_equal(two[name].scores, plain[name].scores), name
    np.testing.assert_allclose(two["confidence"].scores, A.true_class_probability(tq, labels).mean(1))


def test_attack_targets_is_leave_one_out_over_models():
    pr, labels, tz, tl, rz, rl = _setup(n=150, n_ref=4)
    z, loss = np.concatenate([tz[None], rz]), np.concatenate([tl[None], rl])
    keep = np.vstack([pr.members[None], pr.ref_in])
    res = A.attack_targets(z, loss, labels, keep, [0, 2], attacks=("lira_online", "rmia"), seed=3)
    assert set(res) == {0, 2}
    np.testing.assert_array_equal(res[0]["rmia"].scores,
                                  A.run_attacks(tz, tl, labels, rz, rl, A.Protocol(pr.members, pr.ref_in, 3),
                                                attacks=("rmia",))["rmia"].scores)
    rest = [0, 1, 3, 4]
    expected = A.run_attacks(z[2], loss[2], labels, z[rest], loss[rest], A.Protocol(keep[2], keep[rest], 3),
                             attacks=("lira_online",))
    np.testing.assert_array_equal(res[2]["lira_online"].scores, expected["lira_online"].scores)
    np.testing.assert_array_equal(res[2]["lira_online"].ref_is_member, keep[rest].reshape(-1))
    with pytest.raises(ParameterError, match="distinct"):
        A.attack_targets(z, loss, labels, keep, [0, 0])
    with pytest.raises(ParameterError, match="distinct"):
        A.attack_targets(z, loss, labels, keep, [5])


def test_rmia_population_rule_in_the_leave_one_out():
    """Each reference model, attacked in the leave-one-out, uses its own non-members (paper rule)
    or every point ('all')."""
    pr, labels, tz, tl, rz, rl = _setup(n=120, n_ref=4)
    s, _ = A.reference_scores("rmia", rz, rl, labels, pr.ref_in)
    sig = np.stack([A.rmia_signal(z, labels) for z in rz])
    others = [1, 2, 3]
    np.testing.assert_array_equal(s[:120], A.rmia(sig[0], sig[others], pr.ref_in[others], ~pr.ref_in[0]))
    s_all, _ = A.reference_scores("rmia", rz, rl, labels, pr.ref_in, rmia_population="all")
    np.testing.assert_array_equal(s_all[:120], A.rmia(sig[0], sig[others], pr.ref_in[others], None))
    assert not np.array_equal(s, s_all)


def test_attack_options_validate():
    with pytest.raises(ParameterError, match="lira_offline_test"):
        A.AttackOptions(lira_offline_test="both")
    with pytest.raises(ParameterError, match="rmia_offline_a"):
        A.AttackOptions(rmia_offline_a=2.0)
    with pytest.raises(ParameterError, match="unknown attack option"):
        A.attack_scores("loss", np.zeros((4, 2)), np.zeros(4), np.zeros(4, int), np.zeros((0, 4, 2)), np.zeros((0, 4)),
                        np.zeros((0, 4), bool), rmia_gama=2)
    with pytest.raises(ParameterError, match="at least 4"):
        pr, labels, tz, tl, rz, rl = _setup(n=60, n_ref=2)
        A.run_attacks(tz, tl, labels, rz, rl, pr, attacks=("rmia",), rmia_offline_a="tune")


def _loo_design(n=3000, q=8, leak=0.1, seed=1):
    """Five models of the kit's protocol (the target, 4 references) with phi = difficulty + leak * IN
    + noise per (model, example, query); model 1 (a reference model) is the leave-one-out target."""
    p = A.make_protocol(n, 4, 0)
    keep = np.vstack([p.members, p.ref_in])
    rng = np.random.default_rng(seed)
    phi = rng.normal(0, 1, (1, n, 1)) + leak * keep[:, :, None] + rng.normal(0, 1, (5, n, q))
    return phi, keep


def test_a_reference_model_attacked_as_target_is_not_biased_by_unequal_in_counts():
    """Regression (issue 27 follow-up): leave-one-out from the balanced design gives model 1's members
    fewer IN references than its non-members (1-2 vs 2-3 of 4); with every reference used, LiRA
    online's unequal fits pushed its AUC below 0.5 (the smoke run: 0.42-0.47 with 2 queries, 0.27-0.38
    with 18). ref_counts="balanced" (the default) fits each example from equally many IN and OUT
    models and recovers a leak above chance; on the kit's own target all rules agree."""
    from sklearn.metrics import roc_auc_score

    phi, keep = _loo_design()
    rest = [0, 2, 3, 4]
    n_in = keep[rest].sum(0)
    assert n_in[keep[1]].mean() < 2 < n_in[~keep[1]].mean()  # the design the bias comes from
    auc = {rule: roc_auc_score(keep[1], A.lira(phi[1], phi[rest], keep[rest], fixed_variance=True, ref_counts=rule))
           for rule in ("all", "balanced", "reference_code")}
    assert auc["all"] < 0.45  # the old behaviour: a real leak scored below chance
    assert auc["balanced"] > 0.5 and auc["reference_code"] > 0.5
    use = A.reference_use(keep[rest], "balanced")
    assert ((keep[rest] & use).sum(0) == (~keep[rest] & use).sum(0)).all()
    # the kit's target (every example IN for 2 of 4): the rules keep every model and agree
    for rule in ("balanced", "reference_code"):
        np.testing.assert_array_equal(A.reference_use(keep[1:], rule), np.ones((4, keep.shape[1]), bool))
        np.testing.assert_array_equal(A.lira(phi[0], phi[1:], keep[1:], ref_counts=rule),
                                      A.lira(phi[0], phi[1:], keep[1:], ref_counts="all"))
    # through attack_targets: the option reaches LiRA and RMIA and is recorded
    res = A.attack_targets(np.stack([np.zeros((keep.shape[1], 3))] * 5) + np.arange(3), np.zeros(keep.shape), np.zeros(
        keep.shape[1], int), keep, [1], attacks=["lira_online"], ref_counts="all")
    assert res[1]["lira_online"].options["ref_counts"] == "all"
    with pytest.raises(ParameterError, match="ref_counts"):
        A.AttackOptions(ref_counts="some")
