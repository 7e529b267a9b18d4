"""CF-Ensemble (lfakit.ensemble) and its data (lfakit.data.ensemble_data)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import average_precision_score

from lfakit import ensemble as E
from lfakit.data import ensemble_data as D
from lfakit.errors import DataError, ParameterError


def _random_data(seed=0, m=6, n=80, frac_labelled=0.5):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype(float)
    y[:2], y[2:4] = 1, 0
    R = np.clip(0.5 + 0.3 * (2 * y - 1) * rng.random((m, 1)) + 0.25 * rng.normal(size=(m, n)), 0, 1)
    labels = np.where(rng.random(n) < frac_labelled, y, np.nan)
    labels[:4] = y[:4]
    return E.EnsembleData(R, labels), y


def _low_rank(seed=0, m=10, n=200, rank=3):
    rng = np.random.default_rng(seed)
    A = rng.uniform(0.2, 0.8, (m, rank))
    B = rng.dirichlet(np.ones(rank), n).T
    return A @ B  # entries in [0.2, 0.8], rank 3


# --------------------------------------------------------------------------- ALS


@pytest.mark.parametrize("seed, label_aware", [(0, True), (1, False), (2, True)])
def test_als_updates_never_increase_the_weighted_reconstruction_objective(seed, label_aware):
    data, _ = _random_data(seed)
    m = E.ALSTrainer(data.n_classifiers, latent_dim=4, rho=0.5, lambda_reg=0.05, max_iter=15, tol=0,
                     use_label_aware_confidence=label_aware, random_seed=seed).fit(data)
    J = np.asarray(m.history["als_half_steps"])
    assert len(J) == 1 + 2 * 15
    steps = np.diff(J)
    assert np.all(steps <= 1e-9 * J[0]), steps.max()  # monotone: every X and every Y update
    assert J[-1] < 0.2 * J[0]  # and it actually fits (starts near sum c r^2)
    # the objective recorded is the one with the trainer's confidence
    assert J[-1] == pytest.approx(E.als_objective(data.R, m.C_, m.X, m.Y, 0.05, 0.5))


def _grads(R, C, X, Y, rho, lam):
    """Gradients of rho L_rec + lambda Omega with respect to X and Y."""
    E_ = C * (R - X.T @ Y)
    return -2 * rho * Y @ E_.T + 2 * lam * X, -2 * rho * X @ E_ + 2 * lam * Y


def test_als_x_and_y_updates_are_exact_block_minimisers():
    """Each ALS half-step zeroes the gradient of rho L_rec + lambda Omega in its block."""
    data, _ = _random_data(3)
    rho, lam, d = 0.7, 0.1, 3
    m = E.ALSTrainer(data.n_classifiers, latent_dim=d, rho=rho, lambda_reg=lam, max_iter=3, tol=0, random_seed=0).fit(data)
    C, R, X, Y = m.C_, data.R, m.X, m.Y
    grad_X, grad_Y = _grads(R, C, X, Y, rho, lam)
    assert np.abs(grad_Y).max() < 1e-9  # the last update was Y's
    assert np.abs(grad_X).max() > 1e-6  # X was updated before Y, so it is not stationary any more
    # X's update: one iteration from the documented start (factors ~ N(0, 0.01^2), seed's rng)
    one = E.ALSTrainer(data.n_classifiers, latent_dim=d, rho=rho, lambda_reg=lam, max_iter=1, tol=0, random_seed=0).fit(data)
    rng = np.random.default_rng(0)
    rng.normal(0.0, 0.01, (d, data.n_classifiers))  # X0, replaced by the first update
    Y0 = rng.normal(0.0, 0.01, (d, R.shape[1]))
    grad_X1, _ = _grads(R, one.C_, one.X, Y0, rho, lam)
    assert np.abs(grad_X1).max() < 1e-9
    assert np.abs(_grads(R, one.C_, one.X * 1.01, Y0, rho, lam)[0]).max() > 1e-6  # not trivially 0


def test_rho_one_without_labels_reconstructs_a_low_rank_matrix():
    R = _low_rank()
    data = E.EnsembleData(R, None, "uniform")
    als = E.ALSTrainer(10, latent_dim=5, rho=1.0, lambda_reg=1e-6, max_iter=100, tol=0, random_seed=0).fit(data)
    assert np.sqrt(np.mean((als.reconstruction() - R) ** 2)) < 1e-4
    pt = E.TorchTrainer(10, latent_dim=5, rho=1.0, lambda_reg=1e-6, max_epochs=300, lr=0.05, patience=0, random_seed=0).fit(data)
    assert np.sqrt(np.mean((pt.reconstruction() - R) ** 2)) < 1e-3
    # a rank-1 factorisation cannot: the test would notice a trainer that ignores latent_dim
    als1 = E.ALSTrainer(10, latent_dim=1, rho=1.0, lambda_reg=1e-6, max_iter=100, tol=0, random_seed=0).fit(data)
    assert np.sqrt(np.mean((als1.reconstruction() - R) ** 2)) > 1e-2


def _synthetic_split(seed):
    es = D.synthetic_ensemble(seed=seed)
    tr = D.labelled_split(es, 0.5, seed=seed)
    return es, tr, E.EnsembleData(es.R, np.where(tr, es.y, -1))


@pytest.mark.parametrize("seed", [0, 1])
def test_class_weights_prevent_the_aggregator_collapse(seed):
    es, tr, data = _synthetic_split(seed)
    assert es.y.mean() == pytest.approx(0.10)
    kw = dict(aggregator_lr=0.1, max_iter=50, tol=0, random_seed=seed)
    p0 = E.ALSTrainer(10, use_class_weights=False, **kw).fit(data).predict()[~tr]
    p1 = E.ALSTrainer(10, use_class_weights=True, **kw).fit(data).predict()[~tr]
    # unweighted: nearly constant, every test instance predicted negative
    assert p0.std() < 0.07 and p0.max() - p0.min() < 0.35
    assert np.all(p0 <= 0.5)
    # weighted: spread out, both classes predicted
    assert p1.std() > 2.5 * p0.std()
    assert 0.02 < (p1 > 0.5).mean() < 0.6
    assert (p1[es.y[~tr] == 1] > 0.5).mean() > 0.5  # most test positives found


def test_class_weights_are_n_over_2_n_class():
    y = np.array([1, 0, 0, 0, 0, 0, 0, 0, 0, 0], dtype=float)
    w = E.class_weights(y)
    assert w[0] == pytest.approx(10 / 2) and w[1] == pytest.approx(10 / 18)
    assert w[y == 1].sum() == pytest.approx(w[y == 0].sum())  # each class carries half
    assert np.all(E.class_weights(y, enabled=False) == 1)
    with pytest.raises(DataError, match="both classes"):
        E.class_weights(np.zeros(5))


# --------------------------------------------------------------------------- focal


def test_focal_weights_equal_one_minus_p_t_to_the_gamma():
    p = np.array([0.95, 0.8, 0.6, 0.51, 0.3, 0.1, 0.95, 0.1])
    y = np.array([1, 1, 1, 1, 1, 1, 0, 0])
    for gamma in (0.0, 0.5, 1.0, 2.0, 5.0):
        expected = [(1 - (pi if yi == 1 else 1 - pi)) ** gamma for pi, yi in zip(p, y)]
        np.testing.assert_allclose(E.focal_weights(p, y, gamma), expected, rtol=1e-12)
    w2 = E.focal_weights(p, y, 2.0)
    assert w2[0] == pytest.approx(0.0025) and w2[5] == pytest.approx(0.81)  # the CF-Ensemble study's table
    assert w2[6] == pytest.approx(0.9025)  # a negative predicted 0.95 is badly wrong


@pytest.mark.parametrize("gamma", [0.0, 2.0])
def test_supervised_loss_is_focal_weight_times_bce_with_class_weights(gamma):
    z = torch.tensor([2.0, -1.0, 0.3, -3.0, 1.5], dtype=torch.float64)
    y = torch.tensor([1.0, 1.0, 0.0, 0.0, 0.0], dtype=torch.float64)
    a = torch.from_numpy(E.class_weights(y.numpy()))
    p = torch.sigmoid(z).numpy()
    bce = F.binary_cross_entropy_with_logits(z, y, reduction="none").numpy()
    fw = E.focal_weights(p, y.numpy(), gamma)
    expected = float((a.numpy() * fw * bce).sum() / a.numpy().sum())
    assert float(E.supervised_loss(z, y, a, gamma)) == pytest.approx(expected, rel=1e-10)


def test_pytorch_trainer_weights_reach_every_parameter():
    """With rho < 1 the class weights and the focal factor change the gradient of X and Y, not only of (w, b)."""
    data, _ = _random_data(4)
    lab = torch.from_numpy(np.flatnonzero(data.labeled_mask))
    y = torch.from_numpy(data.labels[data.labeled_mask])
    R, C = torch.from_numpy(data.R), torch.from_numpy(data.C)
    g = torch.Generator().manual_seed(0)
    base = [torch.randn(3, 6, generator=g, dtype=torch.float64), torch.randn(3, 80, generator=g, dtype=torch.float64),
            torch.rand(6, generator=g, dtype=torch.float64), torch.zeros((), dtype=torch.float64)]
    grads = {}
    for cw, gamma in ((False, 0.0), (True, 0.0), (False, 2.0)):
        t = E.TorchTrainer(6, latent_dim=3, rho=0.5, use_class_weights=cw, focal_gamma=gamma)
        t._fl = E.focal_module(gamma)
        params = [p.clone().requires_grad_(True) for p in base]
        a = torch.from_numpy(E.class_weights(y.numpy(), cw))
        total, _, _ = t.loss_terms(R, C, lab, y, a, *params)
        total.backward()
        grads[cw, gamma] = [p.grad.clone() for p in params]
    for other in ((True, 0.0), (False, 2.0)):
        for i, name in enumerate("XYwb"):
            assert not torch.allclose(grads[False, 0.0][i], grads[other][i]), f"{other} does not reach {name}"
    # ...and only labelled instances' columns of Y feel the supervised term
    unl = torch.from_numpy(np.flatnonzero(~data.labeled_mask))
    assert torch.allclose(grads[False, 0.0][1][:, unl], grads[True, 0.0][1][:, unl])


def test_pytorch_trainer_lowers_its_objective_and_learns():
    es, tr, data = _synthetic_split(0)
    m = E.TorchTrainer(10, max_epochs=150, random_seed=0).fit(data)
    h = m.history["total"]
    assert h[-1] < 0.05 * h[0]
    assert average_precision_score(es.y[~tr], m.predict()[~tr]) > 0.6


def test_label_aware_confidence():
    R = np.array([[0.9, 0.2, 0.7], [0.4, 0.6, 0.5]])
    C = np.ones_like(R)
    out = E.label_aware_confidence(R, C, np.array([1.0, 0.0, np.nan]), alpha=1.0)
    np.testing.assert_allclose(out, [[1.9, 1.8, 1.0], [1.4, 1.4, 1.0]])
    np.testing.assert_allclose(E.label_aware_confidence(R, C, np.array([1.0, 0.0, np.nan]), 0.0), C)


def test_deterministic_for_a_seed():
    _, _, data = _synthetic_split(2)
    for cls, kw in ((E.ALSTrainer, {"max_iter": 10}), (E.TorchTrainer, {"max_epochs": 30})):
        a = cls(10, random_seed=5, focal_gamma=2.0, **kw).fit(data).predict()
        b = cls(10, random_seed=5, focal_gamma=2.0, **kw).fit(data).predict()
        c = cls(10, random_seed=6, focal_gamma=2.0, **kw).fit(data).predict()
        assert np.array_equal(a, b)
        assert not np.array_equal(a, c)


# --------------------------------------------------------------------------- errors


def test_ensemble_data_reads_unlabelled_markers_and_rejects_bad_input():
    R = np.full((3, 4), 0.5)
    d = E.EnsembleData(R, [1, 0, -1, np.nan])
    assert d.labeled_mask.tolist() == [True, True, False, False]
    assert np.isnan(d.labels[2])
    np.testing.assert_allclose(d.C, 0.1)  # certainty confidence at r = 0.5
    with pytest.raises(DataError, match="one entry per instance.*transposed"):
        E.EnsembleData(R, [1, 0, 1])
    with pytest.raises(DataError, match="0 or 1"):
        E.EnsembleData(R, [1, 0, 2, 0])
    with pytest.raises(DataError, match=r"\[0, 1\].*logits"):
        E.EnsembleData(R * 3, None)
    with pytest.raises(DataError, match="NaN"):
        E.EnsembleData(np.where(np.eye(3, 4) > 0, np.nan, 0.5), None)
    with pytest.raises(DataError, match="shape of R"):
        E.EnsembleData(R, None, np.ones((4, 3)))
    with pytest.raises(ParameterError, match="uniform"):
        E.EnsembleData(R, None, "flat")


@pytest.mark.parametrize(
    "cls, kwargs, pattern",
    [
        (E.ALSTrainer, {"rho": 0.0}, "rho=0"),
        (E.ALSTrainer, {"rho": 1.5}, "rho must be <= 1"),
        (E.ALSTrainer, {"focal_gamma": -1.0}, "focal_gamma must be >= 0"),
        (E.ALSTrainer, {"latent_dim": 0}, "latent_dim must be >= 1"),
        (E.ALSTrainer, {"aggregator_lr": 0.0}, "aggregator_lr must be > 0"),
        (E.ALSTrainer, {"max_iter": 2.5}, "max_iter must be an integer"),
        (E.TorchTrainer, {"optimizer": "lbfgs"}, "optimizer must be"),
        (E.TorchTrainer, {"lambda_reg": -0.1}, "lambda_reg must be >= 0"),
        (E.TorchTrainer, {"lr": float("nan")}, "lr must be finite"),
    ],
)
def test_bad_trainer_arguments(cls, kwargs, pattern):
    with pytest.raises(ParameterError, match=pattern):
        cls(4, **kwargs)


def test_fit_errors_name_the_problem():
    data, _ = _random_data(0, m=6)
    with pytest.raises(DataError, match="n_classifiers=5 but R has 6 rows"):
        E.ALSTrainer(5).fit(data)
    with pytest.raises(ParameterError, match="EnsembleData"):
        E.ALSTrainer(6).fit(data.R)
    with pytest.raises(ParameterError, match="not fitted"):
        E.TorchTrainer(6).predict()
    one_class = E.EnsembleData(data.R, np.where(np.arange(80) < 10, 0.0, np.nan))
    with pytest.raises(DataError, match="class 0"):
        E.TorchTrainer(6).fit(one_class)
    with pytest.raises(DataError, match="no labelled instance"):
        E.ALSTrainer(6).fit(E.EnsembleData(data.R))
    E.ALSTrainer(6, rho=1.0, max_iter=2).fit(E.EnsembleData(data.R))  # rho = 1 needs no labels


# --------------------------------------------------------------------------- data


def test_synthetic_set_has_the_seed_shape_and_base_pr_auc_near_0_70():
    means = []
    for seed in range(10):
        es = D.synthetic_ensemble(seed=seed)
        assert es.R.shape == (10, 500) and es.y.sum() == 50
        assert np.bincount(es.difficulty).tolist() == [200, 200, 100]
        assert es.R.min() >= 0 and es.R.max() <= 1
        means.append(np.mean([average_precision_score(es.y, r) for r in es.R]))
    assert 0.65 < np.mean(means) < 0.75, np.mean(means)
    # easy: the classifiers agree (and are right); hard: they disagree much more
    agree = ((es.R > 0.5) == (es.y == 1)).mean(axis=0)
    assert agree[es.difficulty == 0].mean() > 0.97
    spread = es.R.std(axis=0)
    assert spread[es.difficulty == 2].mean() > 3 * spread[es.difficulty == 0].mean()


def test_synthetic_set_parameters_are_checked():
    with pytest.raises(ParameterError, match="difficulty_mix"):
        D.synthetic_ensemble(difficulty_mix=(0.5, 0.5, 0.5))
    with pytest.raises(ParameterError, match="positive_rate"):
        D.synthetic_ensemble(positive_rate=1.2)


def test_digits_set_scores_held_out_images_with_different_families():
    from sklearn.datasets import load_digits

    es = D.digits_ensemble(positive_digit=8, base_fraction=0.4, seed=0)
    _, digit = load_digits(return_X_y=True)
    assert es.R.shape == (10, 1797 - int(0.4 * 1797))
    assert len(set(es.instance_ids)) == es.R.shape[1]
    np.testing.assert_array_equal(es.y, (digit[es.instance_ids] == 8).astype(int))
    assert 0.08 < es.y.mean() < 0.12
    assert es.classifier_names == list(D.base_classifiers(0))
    final = [getattr(c, "steps", [(None, c)])[-1][1] for c in D.base_classifiers(0).values()]
    assert len({type(c).__module__ for c in final}) >= 7  # naive Bayes, linear, LDA, tree, kNN, ensembles, MLP
    ap = [average_precision_score(es.y, r) for r in es.R]
    assert max(ap) > 0.85 and min(ap) < 0.6  # strong and weak members
    assert np.bincount(es.difficulty).tolist() == [432, 432, 215]
    assert es.R.std(axis=0)[es.difficulty == 2].min() >= es.R.std(axis=0)[es.difficulty == 0].max()
    with pytest.raises(ParameterError, match="positive_digit"):
        D.digits_ensemble(positive_digit=10)


def test_labelled_split_is_stratified():
    es = D.synthetic_ensemble(seed=0)
    tr = D.labelled_split(es, 0.5, seed=0)
    assert tr.sum() == 250
    assert es.y[tr].sum() == 25
    assert np.bincount(es.difficulty[tr]).tolist() == [100, 100, 50]
    assert not np.array_equal(tr, D.labelled_split(es, 0.5, seed=1))


@pytest.mark.parametrize("gamma, class_weights", [(0.0, False), (2.0, False), (2.0, True)])
def test_als_aggregator_step_is_the_cfe_study_update(gamma, class_weights):
    """One aggregator step of ALSTrainer = the CF-Ensemble study's update, written out here: instance weights
    a_i (1 - p_t)^gamma held constant, gradient normalised by their sum."""
    data, _ = _random_data(3)
    t = E.ALSTrainer(6, focal_gamma=gamma, use_class_weights=class_weights, aggregator_steps=1,
                     aggregator_lr=0.5, max_iter=1, tol=0, random_seed=0)
    t.fit(data)  # fitted factors; now take one more step from a chosen (w, b)
    lab = data.labeled_mask
    Rl = (t.X.T @ t.Y)[:, lab]
    y = data.labels[lab]
    w0, b0 = np.linspace(-0.5, 1.0, 6), 0.3
    p = 1 / (1 + np.exp(-(w0 @ Rl + b0)))
    n, n1 = len(y), y.sum()
    a = np.where(y == 1, n / (2 * n1), n / (2 * (n - n1))) if class_weights else np.ones(n)
    v = a * (1 - np.where(y == 1, p, 1 - p)) ** gamma
    w_expected = w0 - 0.5 * (Rl @ (v * (p - y))) / v.sum()
    b_expected = b0 - 0.5 * (v * (p - y)).sum() / v.sum()
    t.w, t.b = w0.copy(), b0
    t._aggregator_steps(Rl, torch.from_numpy(y), torch.from_numpy(E.class_weights(y, class_weights)))
    np.testing.assert_allclose(t.w, w_expected, rtol=1e-12)
    assert t.b == pytest.approx(b_expected, rel=1e-12)
    if gamma:  # the focal step differs from the exact gradient of the focal loss
        wt = torch.from_numpy(w0).requires_grad_(True)
        loss = E.supervised_loss(wt @ torch.from_numpy(Rl) + b0, torch.from_numpy(y),
                                 torch.from_numpy(E.class_weights(y, class_weights)), gamma)
        (g,) = torch.autograd.grad(loss, wt)
        assert not np.allclose(w0 - 0.5 * g.numpy(), w_expected, rtol=1e-3)
