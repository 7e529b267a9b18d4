"""Simulated loss comparisons with a known answer: how often the seed-level test of
:mod:`lfakit.stats` names a Winner when the two losses are equal (its false-Winner rate), and how
often it finds a real difference (its power), as a function of the number of seeds and of the
retraining noise.

A comparison is drawn as in :func:`simulate`: a test set of ``n`` instances with labels of
prevalence ``prevalence`` (or exactly ``n_pos`` positives); every trained model scores instance
``i`` as ``mu * y_i + a_i + sigma_e * e_i``, where ``a_i`` is what every model learns about the
instance (shared, standard normal), ``e_i`` the model's own per-instance noise, and ``mu`` the
model's separation. A method's ``mu`` gives its AUROC (binormal: ``Phi(mu / sqrt(2 (1 +
sigma_e^2)))``); each trained model draws its own ``mu`` around the method's, so that its AUROC
varies from seed to seed with standard deviation ``R * SE / sqrt(2)``, where ``SE`` is the
test-set standard error of the difference of one pair of models (measured on pilot draws). ``R``
is thus the issue's "training noise over test-set noise": the seed-to-seed SD of a one-pair
difference over its test-set SE.

Test sets: ``"shared"`` (every model scored on one test set, as the study experiments do),
``"independent"`` (each seed draws its own, disjoint test set; both methods' models of a seed
share it), or ``"pool"`` (each seed draws ``pool_fraction`` of one fixed pool as its test set, so
the seeds' sets overlap: cf_ensemble's re-splits of one data set). Each setting is tested the way
:mod:`lfakit.compare` tests it.

Used by ``tests/test_seed_calibration.py`` (a few settings, seconds) and
``benchmarks/bench_seed_calibration.py`` (the full table). Written here: the simulation is the
kit's own check of its own test.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.stats import norm

from lfakit import stats

TEST_SETS = ("shared", "independent", "pool")


@dataclass(frozen=True)
class Setting:
    """One simulated setting (see the module docstring)."""

    seeds: int = 3
    R: float = 0.0
    n: int = 2000
    prevalence: float = 0.08
    n_pos: int | None = None
    shift: float = 0.0  # the challenger's true AUROC gain
    test_sets: str = "shared"
    sigma_e: float = 0.5
    auc: float = 0.85  # the baseline's true AUROC
    pool_fraction: float = 0.25


@dataclass(frozen=True)
class Result:
    setting: Setting
    reps: int
    winners: int  # p < alpha with the seed-level test (a Winner, one comparison)
    naive: int  # p < alpha with the test that treats the models as fixed (the kit before issue 25)
    se_pair: float

    @property
    def rate(self) -> float:
        return self.winners / self.reps

    @property
    def naive_rate(self) -> float:
        return self.naive / self.reps

    @property
    def mc_se(self) -> float:
        """The Monte-Carlo standard error of :attr:`rate` at the rate itself (alpha when 0)."""
        p = max(self.rate, 0.05 if self.setting.shift == 0 else self.rate)
        return math.sqrt(p * (1 - p) / self.reps)


def _labels(rng: np.random.Generator, s: Setting, n: int) -> np.ndarray:
    if s.n_pos is not None:
        y = np.zeros(n, bool)
        y[rng.choice(n, s.n_pos, replace=False)] = True
        return y
    while True:
        y = rng.random(n) < s.prevalence
        if 2 <= y.sum() <= n - 2:
            return y


def _scores(rng, y, a, mu, sigma_e):
    return mu * y + a + sigma_e * rng.normal(size=y.shape[0])


def simulate(s: Setting, reps: int = 400, seed: int = 0, alpha: float = 0.05) -> Result:
    """``reps`` comparisons in setting ``s``; counts the Winners (p < ``alpha``)."""
    if s.test_sets not in TEST_SETS:
        raise ValueError(f"test_sets must be one of {TEST_SETS}, got {s.test_sets!r}")
    rng = np.random.default_rng(seed)
    scale = math.sqrt(2.0 * (1.0 + s.sigma_e ** 2))
    mu0 = scale * float(norm.ppf(s.auc))
    mu1 = scale * float(norm.ppf(s.auc + s.shift))
    n_test = int(round(s.n * s.pool_fraction)) if s.test_sets == "pool" else s.n
    # the test-set SE of one pair's difference, on pilot draws of the test set that is scored
    ses = []
    for _ in range(20):
        y, a = _labels(rng, s, n_test), rng.normal(size=n_test)
        _, cov, _, _ = stats.delong_covariance(y, np.stack([_scores(rng, y, a, mu0, s.sigma_e) for _ in range(2)]))
        ses.append(math.sqrt(max(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1], 0.0)))
    se_pair = float(np.mean(ses))
    tau_mu = s.R * se_pair / math.sqrt(2.0) / (float(norm.pdf(mu0 / scale)) / scale)
    winners = naive = 0
    for _ in range(reps):
        mus = [mu0 + tau_mu * rng.normal(size=s.seeds), mu1 + tau_mu * rng.normal(size=s.seeds)]
        if s.test_sets == "shared":
            y, a = _labels(rng, s, s.n), rng.normal(size=s.n)
            sc = [np.stack([_scores(rng, y, a, m, s.sigma_e) for m in mus[j]]) for j in (0, 1)]
            r = stats.seed_level_auroc(y, sc[0], sc[1])
            k = s.seeds
            old = stats.delong_contrast(y, np.concatenate(sc), np.r_[np.full(k, -1 / k), np.full(k, 1 / k)])
            p_naive = old["p_value"]
        else:
            if s.test_sets == "pool":
                y_pool, a_pool = _labels(rng, s, s.n), rng.normal(size=s.n)
            deltas, tests, ys, s1, s2 = [], [], [], [], []
            for k in range(s.seeds):
                if s.test_sets == "pool":
                    idx = rng.choice(s.n, n_test, replace=False)
                    y, a = y_pool[idx], a_pool[idx]
                else:
                    y, a = _labels(rng, s, s.n), rng.normal(size=s.n)
                b, c = _scores(rng, y, a, mus[0][k], s.sigma_e), _scores(rng, y, a, mus[1][k], s.sigma_e)
                ys.append(y), s1.append(b), s2.append(c)
                if y.min() != y.max():
                    t = stats.delong_test(y, b, c)
                    deltas.append(t["delta"]), tests.append(t)
            if s.test_sets == "pool":
                r = stats.corrected_resampled_ttest(deltas, n_train=s.n - n_test, n_test=n_test)
            else:
                r = stats.seed_level_auroc_independent(ys, s1, s2)
            p_naive = stats.independent_delong(deltas, [t["se"] for t in tests])["p_value"]
        winners += bool(np.isfinite(r["p_value"]) and r["p_value"] < alpha)
        naive += bool(np.isfinite(p_naive) and p_naive < alpha)
    return Result(s, reps, winners, naive, se_pair)


@dataclass(frozen=True)
class ClassesResult:
    """:func:`simulate_classes`: shares of comparisons with a false Winner, by kind."""

    seeds: int
    R: float
    reps: int
    raw_class: float  # per-class raw p < alpha (the share of class tests)
    any_class: int  # comparisons with a class Winner after Holm
    mean: int  # comparisons with a Winner on the mean row after Holm
    any: int  # comparisons with any Winner


def simulate_classes(seeds: int, R: float, n_classes: int = 14, n: int = 2000, prevalence=(0.02, 0.15),
                     reps: int = 100, n_boot: int = 200, seed: int = 0, alpha: float = 0.05,
                     sigma_e: float = 0.5, auc: float = 0.85) -> ClassesResult:
    """Equal losses over ``n_classes`` labels (prevalences spread evenly over ``prevalence``), one
    test set shared by every model, tested as :mod:`lfakit.compare` tests them: the seed-level t
    per class (DeLong covariance) and for the mean over classes (the covariance of the models'
    mean AUROC over ``n_boot`` stratified bootstrap resamples), Holm over the class rows and the
    mean row together (one family). ``R`` as in :func:`simulate`, measured on the rarest class."""
    rng = np.random.default_rng(seed)
    prev = np.linspace(prevalence[0], prevalence[1], n_classes)
    scale = math.sqrt(2.0 * (1.0 + sigma_e ** 2))
    mu0 = scale * float(norm.ppf(auc))
    pilot = simulate(Setting(seeds=1, R=0.0, n=n, prevalence=float(prev.mean()), sigma_e=sigma_e, auc=auc), reps=1,
                     seed=seed)
    tau_mu = R * pilot.se_pair / math.sqrt(2.0) / (float(norm.pdf(mu0 / scale)) / scale)
    raw_hits = raw_tests = any_class = mean_hits = any_hits = 0
    for _ in range(reps):
        y = (rng.random((n, n_classes)) < prev).astype(int)
        y[:2, :], y[2:4, :] = 1, 0  # at least two of each label per class
        a = rng.normal(size=(n, n_classes))
        mus = [mu0 + tau_mu * rng.normal(size=(seeds, n_classes)) for _ in (0, 1)]
        sc = [np.stack([mus[j][k] * y + a + sigma_e * rng.normal(size=(n, n_classes)) for k in range(seeds)])
              for j in (0, 1)]  # (seeds, n, C) per method
        p = [stats.seed_level_auroc(y[:, c], sc[0][:, :, c], sc[1][:, :, c])["p_value"] for c in range(n_classes)]
        b = stats.seed_paired_bootstrap(y, sc[0], sc[1], "auroc", n_boot=n_boot, seed=int(rng.integers(1 << 31)))
        (v1, v2), (r1, r2) = b["model_values"], b["model_replicates"]
        pm = stats.seed_level_test(v1[:, -1], v2[:, -1], stats.replicate_covariance(r1[:, :, -1], r2[:, :, -1]))["p_value"]
        adj = stats.holm(np.r_[p, pm])
        raw_hits += int(np.sum(np.asarray(p) < alpha))
        raw_tests += int(np.isfinite(p).sum())
        cls, mean = bool(np.any(adj[:-1] < alpha)), bool(adj[-1] < alpha)
        any_class += cls
        mean_hits += mean
        any_hits += cls or mean
    return ClassesResult(seeds, R, reps, raw_hits / max(raw_tests, 1), any_class, mean_hits, any_hits)
