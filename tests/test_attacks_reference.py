"""The kit's LiRA, RMIA and TPR@FPR against transcriptions of the reference code (issue 27).

Each ``<file>__<function>`` below transcribes, in numpy (torch only where the reference's own
semantics are torch's: ``torch.mode``), one rule of the public reference code:

* LiRA, tensorflow/privacy ``research/mi_lira_2021/score.py`` (``load_one``: phi per
  augmentation) and ``plot.py`` (``generate_ours``, ``generate_ours_offline``, ``do_plot``);
* RMIA, privacytrustlab/ml_privacy_meter at commit d32734161a (the paper's code,
  ``research/2024_rmia/signals.py``: ``get_taylor``, ``convert_signals``; ``main.py``:
  ``aggregate_signals``, the augmented relative attack; its ``attack_configs/cifar10/rmia_*.yaml``
  settings), and ML Privacy Meter's current ``attacks.py`` (``tune_offline_a`` loop,
  ``audit.py``'s ``compute_attack_results``).

The kit's functions must equal them to 1e-10 on seeded synthetic reference outputs, with 2 and
18 queries (LiRA's default identity + mirror; RMIA's configs' ``nb_augmentation: 18``). Inputs
use the balanced protocol (every example IN for the same number of reference models), where the
references' per-example truncations (``x[:in_size]``, ``[:out_or_in_size]``) keep every value.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats
from scipy.stats import trim_mean
from sklearn.metrics import auc, roc_curve

from lfakit import attacks as A
from lfakit.metrics import privacy

TOL = 1e-10


# --------------------------------------------------------------------------- transcriptions: LiRA
def score_py__load_one(opredictions: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """research/mi_lira_2021/score.py, load_one: logits (COUNT, 1, Q, K) -> phi (COUNT, Q)."""
    predictions = opredictions - np.max(opredictions, axis=3, keepdims=True)
    predictions = np.array(np.exp(predictions), dtype=np.float64)
    predictions = predictions / np.sum(predictions, axis=3, keepdims=True)
    COUNT = predictions.shape[0]
    y_true = predictions[np.arange(COUNT), :, :, labels[:COUNT]]
    predictions[np.arange(COUNT), :, :, labels[:COUNT]] = 0
    y_wrong = np.sum(predictions, axis=3)
    return np.log(y_true.mean((1)) + 1e-45) - np.log(y_wrong.mean((1)) + 1e-45)


def plot_py__generate_ours(keep, scores, check_keep, check_scores, in_size=100000, out_size=100000,
                           fix_variance=False):
    """research/mi_lira_2021/plot.py, generate_ours (online); scores (models, N, Q)."""
    dat_in, dat_out = [], []
    for j in range(scores.shape[1]):
        dat_in.append(scores[keep[:, j], j, :])
        dat_out.append(scores[~keep[:, j], j, :])
    in_size = min(min(map(len, dat_in)), in_size)
    out_size = min(min(map(len, dat_out)), out_size)
    dat_in = np.array([x[:in_size] for x in dat_in])
    dat_out = np.array([x[:out_size] for x in dat_out])
    mean_in = np.median(dat_in, 1)
    mean_out = np.median(dat_out, 1)
    if fix_variance:
        std_in = np.std(dat_in)
        std_out = np.std(dat_in)
    else:
        std_in = np.std(dat_in, 1)
        std_out = np.std(dat_out, 1)
    prediction, answers = [], []
    for ans, sc in zip(check_keep, check_scores):
        pr_in = -scipy.stats.norm.logpdf(sc, mean_in, std_in + 1e-30)
        pr_out = -scipy.stats.norm.logpdf(sc, mean_out, std_out + 1e-30)
        score = pr_in - pr_out
        prediction.extend(score.mean(1))
        answers.extend(ans)
    return prediction, answers


def plot_py__generate_ours_offline(keep, scores, check_keep, check_scores, in_size=100000, out_size=100000,
                                   fix_variance=False):
    """research/mi_lira_2021/plot.py, generate_ours_offline."""
    dat_in, dat_out = [], []
    for j in range(scores.shape[1]):
        dat_in.append(scores[keep[:, j], j, :])
        dat_out.append(scores[~keep[:, j], j, :])
    out_size = min(min(map(len, dat_out)), out_size)
    dat_out = np.array([x[:out_size] for x in dat_out])
    mean_out = np.median(dat_out, 1)
    if fix_variance:
        std_out = np.std(dat_out)
    else:
        std_out = np.std(dat_out, 1)
    prediction, answers = [], []
    for ans, sc in zip(check_keep, check_scores):
        score = scipy.stats.norm.logpdf(sc, mean_out, std_out + 1e-30)
        prediction.extend(score.mean(1))
        answers.extend(ans)
    return prediction, answers


def plot_py__do_plot_low(prediction, answers, fpr_level=0.001):
    """research/mi_lira_2021/plot.py, do_plot + sweep: ``roc_curve(x, -score)`` and
    ``tpr[np.where(fpr < .001)[0][-1]]``."""
    fpr, tpr, _ = roc_curve(np.array(answers, dtype=bool), -np.array(prediction))
    return tpr[np.where(fpr < fpr_level)[0][-1]]


def audit_py__compute_attack_results(mia_scores, target_memberships, level):
    """ml_privacy_meter audit.py, compute_attack_results: ``tpr[np.where(fpr <= level)[0][-1]]``."""
    fpr_list, tpr_list, _ = roc_curve(target_memberships.ravel(), mia_scores.ravel())
    return tpr_list[np.where(fpr_list <= level)[0][-1]]


# --------------------------------------------------------------------------- transcriptions: RMIA
def signals_py__get_taylor(logit_signals, n):
    """research/2024_rmia/signals.py, get_taylor (factorial(i) as math.factorial)."""
    import math

    power = logit_signals
    taylor = power + 1.0
    for i in range(2, n):
        power = power * logit_signals
        taylor = taylor + (power / math.factorial(i))
    return taylor


def signals_py__convert_signals_taylor_soft_margin(all_logits, all_true_labels, temp, m, n):
    """research/2024_rmia/signals.py, convert_signals(metric='taylor-soft-margin'): logits (N, K)."""
    logit_signals = all_logits / temp
    taylor_logits = signals_py__get_taylor(logit_signals, n)
    taylor_logit_sum = taylor_logits.sum(axis=1).reshape(-1, 1)
    true_logit = np.take_along_axis(logit_signals, all_true_labels.reshape(-1, 1), 1)
    taylor_true_logit = np.take_along_axis(taylor_logits, all_true_labels.reshape(-1, 1), 1)
    taylor_logit_sum = taylor_logit_sum - taylor_true_logit
    soft_taylor_true_logit = signals_py__get_taylor(true_logit - m, n)
    taylor_logit_sum = taylor_logit_sum + soft_taylor_true_logit
    return (soft_taylor_true_logit / taylor_logit_sum).ravel()


def main_py__aggregate_signals_relative(membership, target_signal, reference_keep_matrix, reference_signals,
                                        num_ref_models, offline, offline_a=0.3, gamma=2.0, proportiontocut=0.2):
    """research/2024_rmia/main.py, aggregate_signals, the relative attack with ``augmentation:
    augmented``, ``top_k: -1``, every point a target (``target_indices`` = all) and the target's
    non-members as the population (``population_indices = membership == False``, as its caller).
    ``target_signal`` (N, Q), ``reference_signals`` (R, N, Q). Returns ``(prediction, answers)``,
    prediction lower = member (as the paper code)."""
    import torch

    target_signal = torch.from_numpy(target_signal)
    reference_signals = torch.from_numpy(reference_signals)
    reference_keep_matrix = torch.from_numpy(reference_keep_matrix)
    target_indices = np.arange(target_signal.shape[0])
    population_indices = membership == False  # noqa: E712 (as the paper code)
    out_or_in_size = int(num_ref_models) // 2
    in_signals, out_signals = [], []
    for data_idx in range(reference_signals.shape[1]):
        in_signals.append(reference_signals[reference_keep_matrix[:, data_idx], data_idx][:out_or_in_size])
        out_signals.append(reference_signals[~reference_keep_matrix[:, data_idx], data_idx][:out_or_in_size])
    in_signals = torch.stack(in_signals)
    out_signals = torch.stack(out_signals)
    nb_augmentations = target_signal.shape[1]

    def majority_voting_tensor(tensor, axis):
        return torch.mode(torch.stack(tensor), axis).values * 1.0

    if offline:
        ref_signals = out_signals.transpose(0, 1)
    else:
        ref_signals = (torch.cat((in_signals, out_signals), dim=1)).transpose(0, 1)
    augmented_gammas = []
    all_mean_x = trim_mean(ref_signals[:, target_indices, :], proportiontocut=proportiontocut, axis=0)
    all_mean_z = trim_mean(ref_signals[:, population_indices, :], proportiontocut=proportiontocut, axis=0)
    for k in range(0, nb_augmentations):
        mean_x = all_mean_x[:, k]
        mean_z = all_mean_z[:, k]
        if offline:
            prob_ratio_x = (target_signal[target_indices, k].ravel() / ((1 + offline_a) / 2 * mean_x + (1 - offline_a) / 2))
            prob_ratio_z_rev = 1 / (target_signal[population_indices, k].ravel()
                                    / ((1 + offline_a) / 2 * mean_z + (1 - offline_a) / 2))
        else:
            prob_ratio_x = (target_signal[target_indices, k].ravel() / (mean_x))
            prob_ratio_z_rev = 1 / (target_signal[population_indices, k].ravel() / (mean_z))
        score = torch.outer(prob_ratio_x, prob_ratio_z_rev)
        augmented_gammas.append((score > float(gamma)))
    augmented_test = majority_voting_tensor(augmented_gammas, axis=0)
    # the paper code's `torch.mode(...).values * 1.0` is float32 (torch's default dtype), whose mean
    # rounds at ~3e-8; the one change to the transcription: that mean taken in float64
    prediction = -np.array(augmented_test.double().mean(1).reshape(1, len(mean_x)))
    prediction[:, population_indices] = ((prediction[:, population_indices] * len(mean_z)) - 1.0) / (len(mean_z) - 1)
    answers = np.array(membership[target_indices], dtype=bool)
    return prediction, answers


def attacks_py__tune_offline_a(paired_memberships, attack):
    """ml_privacy_meter attacks.py, tune_offline_a: the loop over ``np.arange(0, 1.1, 0.1)``
    keeping the first ``a`` of the highest AUC (``roc_curve`` + ``auc``); ``attack(a)`` stands for
    its ``run_rmia`` on the paired model."""
    offline_a = 0.0
    max_auc = 0
    for test_a in np.arange(0, 1.1, 0.1):
        mia_scores = attack(test_a)
        fpr_list, tpr_list, _ = roc_curve(paired_memberships.ravel(), mia_scores.ravel())
        roc_auc = auc(fpr_list, tpr_list)
        if roc_auc > max_auc:
            max_auc = roc_auc
            offline_a = test_a
    return offline_a


# --------------------------------------------------------------------------- seeded inputs
def _models(n=240, r=8, q=2, k=10, seed=0, effect=1.5):
    """Logits (M, N, Q, K) of M = r + 1 models (model 0 the target) with a balanced reference
    design (every example IN for exactly r / 2 of the models 1..r), memorisation ``effect``, a
    per-query shift (augmented copies answer differently)."""
    rng = np.random.default_rng(seed)
    pr = A.make_protocol(n, r, seed)
    keep = np.vstack([pr.members[None], pr.ref_in])
    labels = rng.integers(0, k, n)
    base = rng.normal(0, 1.5, (n, 1, k)) + rng.normal(0, 0.5, (1, q, k)) + rng.normal(0, 0.3, (n, q, k))
    z = base[None] + 0.6 * rng.normal(size=(r + 1, n, q, k))
    z[:, np.arange(n), :, labels] += effect * keep.T[:, :, None].astype(float)
    return z, keep, labels


@pytest.fixture(params=[2, 18], ids=["2 queries", "18 queries"])
def outputs(request):
    return _models(q=request.param, seed=request.param)


def _phi_ref(z, labels):
    return np.stack([score_py__load_one(m[:, None], labels) for m in z])  # (M, N, Q)


# --------------------------------------------------------------------------- LiRA
def test_phi_equals_score_py(outputs):
    z, keep, labels = outputs
    got = np.stack([A.true_class_logit_confidence(m, labels) for m in z])
    assert got.shape == z.shape[:3]
    assert np.abs(got - _phi_ref(z, labels)).max() < TOL


@pytest.mark.parametrize("fix_variance", [False, True], ids=["per-example variance", "fixed variance (in for both)"])
def test_lira_online_equals_plot_py(outputs, fix_variance):
    z, keep, labels = outputs
    phi = _phi_ref(z, labels)
    prediction, answers = plot_py__generate_ours(keep[1:], phi[1:], keep[:1], phi[:1], fix_variance=fix_variance)
    got = A.lira(phi[0], phi[1:], keep[1:], online=True, center="median", fixed_variance=fix_variance,
                 fixed_sd="in_for_both")
    # plot.py ranks by -score: the member score is -prediction
    assert np.abs(got - (-np.array(prediction))).max() < TOL
    np.testing.assert_array_equal(answers, keep[0])
    # the convention matters: the kit's separate OUT scale gives other numbers (so this test can fail)
    if fix_variance:
        other = A.lira(phi[0], phi[1:], keep[1:], online=True, center="median", fixed_variance=True)
        assert np.abs(other - (-np.array(prediction))).max() > 1e-3
    mean_centre = A.lira(phi[0], phi[1:], keep[1:], online=True, center="mean", fixed_variance=fix_variance,
                         fixed_sd="in_for_both")
    assert np.abs(mean_centre - (-np.array(prediction))).max() > 1e-6


@pytest.mark.parametrize("fix_variance", [False, True])
def test_lira_offline_two_sided_equals_plot_py(outputs, fix_variance):
    z, keep, labels = outputs
    phi = _phi_ref(z, labels)
    prediction, _ = plot_py__generate_ours_offline(keep[1:], phi[1:], keep[:1], phi[:1], fix_variance=fix_variance)
    got = A.lira(phi[0], phi[1:], keep[1:], online=False, center="median", fixed_variance=fix_variance,
                 offline_test="two_sided")
    assert np.abs(got - (-np.array(prediction))).max() < TOL
    one_sided = A.lira(phi[0], phi[1:], keep[1:], online=False, center="median", fixed_variance=fix_variance)
    assert scipy.stats.spearmanr(one_sided, got).statistic < 0.99  # the two tests rank differently


def test_lira_through_attack_scores_from_logits(outputs):
    """The whole path from per-query logits (N, Q, K): attack_scores == plot.py on score.py's phi."""
    z, keep, labels = outputs
    phi = _phi_ref(z, labels)
    loss = np.zeros(z.shape[:2])
    prediction, _ = plot_py__generate_ours(keep[1:], phi[1:], keep[:1], phi[:1], fix_variance=True)
    got = A.attack_scores("lira_online", z[0], loss[0], labels, z[1:], loss[1:], keep[1:], fixed_variance=True,
                          lira_center="median", lira_fixed_sd="in_for_both")
    assert np.abs(got - (-np.array(prediction))).max() < TOL
    prediction, _ = plot_py__generate_ours_offline(keep[1:], phi[1:], keep[:1], phi[:1])
    got = A.attack_scores("lira_offline", z[0], loss[0], labels, z[1:], loss[1:], keep[1:], lira_center="median",
                          lira_offline_test="two_sided")
    assert np.abs(got - (-np.array(prediction))).max() < TOL


def test_lira_averages_per_query_ratios_not_probabilities(outputs):
    """One Gaussian per query, log-ratios averaged (score.py / plot.py), not p averaged first."""
    z, keep, labels = outputs
    phi = np.stack([A.true_class_logit_confidence(m, labels) for m in z])
    per_query = np.stack([A.lira(phi[0, :, j], phi[1:, :, j], keep[1:]) for j in range(z.shape[2])], 1)
    np.testing.assert_allclose(A.lira(phi[0], phi[1:], keep[1:]), per_query.mean(1), rtol=0, atol=TOL)
    p_first = np.log(np.stack([A.true_class_probability(m, labels) for m in z]).mean(2))
    assert np.abs(A.lira(phi[0], phi[1:], keep[1:]) - A.lira(p_first[0], p_first[1:], keep[1:])).max() > 1e-3


# --------------------------------------------------------------------------- TPR at FPR
def test_tpr_at_fpr_rules_equal_plot_py_and_ml_privacy_meter():
    rng = np.random.default_rng(5)
    y = np.r_[np.ones(1500, bool), np.zeros(2000, bool)]
    s = np.round(rng.normal(size=3500) + 0.8 * y, 1)  # ties, and observed points at FPR 0.001 exactly
    for level in (0.01, 0.001, 0.0005):
        assert privacy.tpr_at_fpr(y, s, level, rule="<") == plot_py__do_plot_low(-s, y, level)
        assert privacy.tpr_at_fpr(y, s, level) == audit_py__compute_attack_results(s, y, level)
    assert privacy.tpr_at_fpr(y, s, 0.0) == audit_py__compute_attack_results(s, y, 0.0)
    s2 = np.r_[np.linspace(10, 5, 1500), np.r_[11.0, 12.0], np.linspace(0, 1, 1998)]  # FPR 0.001 = 2 false positives
    assert privacy.tpr_at_fpr(y, s2, 0.001, rule="<") != privacy.tpr_at_fpr(y, s2, 0.001, rule="<=")
    assert np.isnan(privacy.tpr_at_fpr(y, s, 0.0, rule="<"))
    with pytest.raises(ValueError, match="rule"):
        privacy.tpr_at_fpr(y, s, 0.01, rule="<<")


# --------------------------------------------------------------------------- RMIA
def test_rmia_signal_equals_the_paper_code(outputs):
    z, keep, labels = outputs
    got = A.rmia_signal(z[0], labels)  # the defaults: the paper configs' T = 2, m = 0.6, n = 4
    ref = np.stack([signals_py__convert_signals_taylor_soft_margin(z[0][:, j], labels, 2.0, 0.6, 4)
                    for j in range(z.shape[2])], 1)
    assert np.abs(got - ref).max() < TOL
    soft = A.rmia_signal(z[0], labels, signal="softmax", temperature=1.0)
    np.testing.assert_allclose(soft, A.true_class_probability(z[0], labels), rtol=0, atol=TOL)


@pytest.mark.parametrize("offline", [False, True], ids=["online", "offline a=0.3"])
def test_rmia_paper_settings_equal_the_paper_code(outputs, offline):
    z, keep, labels = outputs
    sig = np.stack([A.rmia_signal(m, labels) for m in z])  # (M, N, Q)
    prediction, answers = main_py__aggregate_signals_relative(keep[0], sig[0], keep[1:], sig[1:], len(sig) - 1,
                                                              offline)
    a = 0.3 if offline else None
    got = A.rmia(sig[0], sig[1:], keep[1:], ~keep[0], gamma=2.0, trim=0.2, offline_a=a, self_vote="as_paper_code")
    assert np.abs(got - (-prediction.ravel())).max() < TOL
    np.testing.assert_array_equal(answers, keep[0])
    # the same from the logits, through the experiment's entry point and the defaults
    loss = np.zeros(z.shape[:2])
    via = A.attack_scores("rmia", z[0], loss[0], labels, z[1:], loss[1:], keep[1:], members=keep[0],
                          rmia_offline_a=a, rmia_self_vote="as_paper_code")
    assert np.abs(via - (-prediction.ravel())).max() < TOL
    # the kit's default drops the self-comparison instead: non-members' scores differ by 1 / (Z - 1)
    kit = A.rmia(sig[0], sig[1:], keep[1:], ~keep[0], offline_a=a)
    zsize = int((~keep[0]).sum())
    np.testing.assert_allclose(kit[~keep[0]], got[~keep[0]] - 1.0 / (zsize - 1), rtol=0, atol=TOL)
    np.testing.assert_array_equal(kit[keep[0]], got[keep[0]])


def test_rmia_majority_vote_tie_is_no():
    """2 queries that disagree: no vote (torch.mode returns the smaller value on a tie)."""
    t = np.array([[0.9, 0.1], [0.5, 0.5], [0.1, 0.9], [0.5, 0.5]])
    ref = np.full((2, 4, 2), 0.5)
    ref_in = np.array([[1, 0, 1, 0], [0, 1, 0, 1]], bool)
    s = A.rmia(t, ref, ref_in, gamma=1.5, trim=0.0)
    # x0 vs x1: query 0 1.8 > 1.5, query 1 0.2: tie -> no; every other pair has at most one yes too
    np.testing.assert_array_equal(s, np.zeros(4))
    s3 = A.rmia(np.c_[t, t[:, :1]], np.full((2, 4, 3), 0.5), ref_in, gamma=1.5, trim=0.0)
    # with a third query like the first, x0 wins 2 of 3 queries against every other point; x2 none
    assert s3[0] == 1.0 and s3[2] == 0.0


def test_offline_a_tuning_follows_ml_privacy_meter(outputs):
    z, keep, labels = outputs
    sig = np.stack([A.rmia_signal(m, labels) for m in z])
    ref, ref_in = sig[1:], keep[1:]
    best, aucs = A.tune_offline_a(ref, ref_in, 0)
    others = np.arange(1, len(ref))

    def attack(a):
        return A.rmia(ref[0], ref[others], ref_in[others], ~ref_in[0], offline_a=float(a))

    assert best == pytest.approx(attacks_py__tune_offline_a(ref_in[0], attack), abs=1e-12)
    assert len(aucs) == 11 and aucs.max() == pytest.approx(aucs[A.OFFLINE_A_GRID.index(best)])
    # run_attacks with a = "tune" attacks the target with the references less the paired model
    loss = np.zeros(z.shape[:2])
    got = A.attack_scores("rmia", z[0], loss[0], labels, z[1:], loss[1:], keep[1:], members=keep[0],
                          rmia_offline_a="tune")
    np.testing.assert_array_equal(got, A.rmia(sig[0], ref[1:], ref_in[1:], ~keep[0], offline_a=best))


# --------------------------------------------------------------------------- leave-one-out targets
def test_reference_code_counts_equal_plot_py_and_the_paper_code_on_a_leave_one_out_target(outputs):
    """A reference model attacked as the target: its references are no longer balanced per example
    (members IN for fewer of them). ``ref_counts="reference_code"`` then equals the references'
    own truncations -- plot.py's ``x[:in_size]`` (the smallest count over the examples) and the RMIA
    paper code's first ``num_ref_models // 2`` IN and OUT models -- which the balanced inputs above
    could not tell from using every model; ``"all"`` (the kit before) differs."""
    z, keep, labels = outputs
    phi = _phi_ref(z, labels)
    rest = [0] + list(range(2, len(z)))  # model 1 the target, the kit's target among its references
    assert len(np.unique(keep[rest].sum(0))) > 1  # unbalanced per example
    prediction, answers = plot_py__generate_ours(keep[rest], phi[rest], keep[1:2], phi[1:2], fix_variance=True)
    got = A.lira(phi[1], phi[rest], keep[rest], online=True, center="median", fixed_variance=True,
                 fixed_sd="in_for_both", ref_counts="reference_code")
    assert np.abs(got - (-np.array(prediction))).max() < TOL
    every = A.lira(phi[1], phi[rest], keep[rest], online=True, center="median", fixed_variance=True,
                   fixed_sd="in_for_both", ref_counts="all")
    assert np.abs(every - (-np.array(prediction))).max() > 1e-6
    # RMIA: references 2..R (every example keeps at least R // 2 of each side, as the paper code's stack needs)
    sig = np.stack([A.rmia_signal(m, labels) for m in z])
    refs = list(range(2, len(z)))
    for offline in (False, True):
        prediction, _ = main_py__aggregate_signals_relative(keep[1], sig[1], keep[refs], sig[refs], len(refs), offline)
        a = 0.3 if offline else None
        got = A.rmia(sig[1], sig[refs], keep[refs], ~keep[1], offline_a=a, self_vote="as_paper_code",
                     ref_counts="reference_code")
        assert np.abs(got - (-prediction.ravel())).max() < TOL
