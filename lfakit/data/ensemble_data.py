"""Data for the CF-Ensemble experiment: a probability matrix R (classifiers x instances), labels,
instance difficulty, and a labelled / test split of the instances.

Two sources:

* :func:`synthetic_ensemble` -- the CF-Ensemble focal-loss study's simulated ensemble: 500
  instances, 10 classifiers, 10% positives, 40% easy / 40% medium / 20% hard instances, base
  classifiers with a mean PR-AUC near 0.70.
* :func:`digits_ensemble` -- a real ensemble: scikit-learn's bundled ``load_digits`` (1797 8x8
  images), one digit against the rest (digit 8 by default: 174 of 1797, 9.7% positives, the
  digit most often confused with others). Ten base classifiers from different model families
  are trained on a *base* part of the images and score the held-out rest, which forms R.

Both return an :class:`EnsembleSet`; :func:`labelled_split` then marks which of its instances
the aggregator sees labels for (``train``) and which it is evaluated on (``test``).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from lfakit.errors import DataError, ParameterError

DIFFICULTIES = ("easy", "medium", "hard")

# Synthetic generator constants (per difficulty: easy, medium, hard). The logit of classifier u on
# instance i is  beta_u + s_u * MARGIN[g] * (2 y_i - 1) + SHARED[g] * e_i + NOISE[g] * eps_ui :
# MARGIN the class separation, SHARED an error every classifier makes alike (averaging cannot
# remove it), NOISE the classifier's own error (disagreement). Chosen so the base classifiers'
# mean PR-AUC is about 0.70 (tests check it).
MARGIN = (4.6, 1.85, 0.46)
SHARED = (0.3, 1.0, 1.5)
NOISE = (0.3, 1.0, 2.0)


@dataclass
class EnsembleSet:
    """An ensemble's inputs: ``R`` (m x n) probabilities, labels ``y`` (n,) 0/1, ``difficulty``
    (n,) 0 easy / 1 medium / 2 hard, ``instance_ids`` (n,) and ``classifier_names`` (m,)."""

    name: str
    R: np.ndarray
    y: np.ndarray
    difficulty: np.ndarray
    instance_ids: np.ndarray
    classifier_names: list[str]
    difficulty_rule: str

    @property
    def shape(self) -> tuple[int, int]:
        return self.R.shape


def _mix_counts(n: int, mix) -> np.ndarray:
    mix = np.asarray(mix, dtype=float)
    if mix.shape != (3,) or (mix < 0).any() or not np.isclose(mix.sum(), 1.0):
        raise ParameterError(f"difficulty_mix must be three non-negative shares (easy, medium, hard) summing to 1, got {list(mix)}")
    counts = np.floor(mix * n + 0.5).astype(int)
    counts[-1] = n - counts[:-1].sum()
    return counts


def synthetic_ensemble(
    n_instances: int = 500,
    n_classifiers: int = 10,
    positive_rate: float = 0.10,
    difficulty_mix=(0.4, 0.4, 0.2),
    seed: int = 0,
) -> EnsembleSet:
    """The CF-Ensemble focal-loss study's simulated ensemble.

    Exactly ``round(positive_rate n)`` positives; difficulty groups of exactly the given shares,
    assigned independently of the label. Classifier ``u`` has a calibration offset
    ``beta_u ~ N(-0.5, 0.3)`` and a skill ``s_u ~ U(0.7, 1.3)``; its probability on instance
    ``i`` is the sigmoid of the logit in the module constants' comment: on easy instances all
    classifiers agree and are right, on hard ones they disagree widely and share a large error.
    """
    if n_instances < 20:
        raise ParameterError(f"n_instances must be >= 20, got {n_instances}")
    if n_classifiers < 2:
        raise ParameterError(f"n_classifiers must be >= 2, got {n_classifiers}")
    if not 0 < positive_rate < 1:
        raise ParameterError(f"positive_rate must be in (0, 1), got {positive_rate}")
    counts = _mix_counts(n_instances, difficulty_mix)
    rng = np.random.default_rng(seed)
    n_pos = int(round(positive_rate * n_instances))
    if n_pos < 2 or n_instances - n_pos < 2:
        raise ParameterError(f"positive_rate {positive_rate} gives {n_pos} positives of {n_instances}; need at least 2 of each class")
    y = np.zeros(n_instances, dtype=int)
    y[:n_pos] = 1
    rng.shuffle(y)
    g = np.repeat(np.arange(3), counts)
    rng.shuffle(g)
    beta = rng.normal(-0.5, 0.3, n_classifiers)
    skill = rng.uniform(0.7, 1.3, n_classifiers)
    shared = rng.normal(size=n_instances)
    own = rng.normal(size=(n_classifiers, n_instances))
    margin, sh, no = (np.asarray(v)[g] for v in (MARGIN, SHARED, NOISE))
    logit = beta[:, None] + skill[:, None] * (margin * (2 * y - 1))[None] + (sh * shared)[None] + no[None] * own
    R = 1.0 / (1.0 + np.exp(-logit))
    return EnsembleSet(
        name="synthetic",
        R=R,
        y=y,
        difficulty=g,
        instance_ids=np.arange(n_instances),
        classifier_names=[f"clf{u:02d}" for u in range(n_classifiers)],
        difficulty_rule="generated: 40% easy (classifiers agree), 40% medium, 20% hard (classifiers disagree)",
    )


def base_classifiers(seed: int = 0) -> dict:
    """Ten scikit-learn classifiers of different families (all with ``predict_proba``)."""
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
    from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.naive_bayes import BernoulliNB, GaussianNB
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.tree import DecisionTreeClassifier

    return {
        "gaussian_nb": GaussianNB(),
        "bernoulli_nb": BernoulliNB(binarize=8.0),
        "logreg_weak": make_pipeline(StandardScaler(), LogisticRegression(C=0.001)),
        "logreg": make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000)),
        "lda": LinearDiscriminantAnalysis(),
        "tree_d3": DecisionTreeClassifier(max_depth=3, random_state=seed),
        "knn_15": KNeighborsClassifier(n_neighbors=15),
        "forest": RandomForestClassifier(n_estimators=30, max_depth=4, random_state=seed, n_jobs=1),
        "extra_trees": ExtraTreesClassifier(n_estimators=30, max_depth=4, random_state=seed, n_jobs=1),
        "mlp": make_pipeline(StandardScaler(), MLPClassifier(hidden_layer_sizes=(8,), solver="lbfgs", max_iter=200, random_state=seed)),
    }


def disagreement_difficulty(R: np.ndarray, mix=(0.4, 0.4, 0.2)) -> np.ndarray:
    """Difficulty from the classifiers' disagreement, without labels: instances ranked by the
    standard deviation of their column of R; the lowest 40% easy, the highest 20% hard."""
    counts = _mix_counts(R.shape[1], mix)
    order = np.argsort(R.std(axis=0), kind="stable")
    g = np.empty(R.shape[1], dtype=int)
    g[order] = np.repeat(np.arange(3), counts)
    return g


def digits_ensemble(positive_digit: int = 8, base_fraction: float = 0.4, seed: int = 0) -> EnsembleSet:
    """A real ensemble from scikit-learn's bundled digits (no download).

    Target: ``positive_digit`` against the other nine digits. A stratified ``base_fraction`` of the
    1797 images trains the ten :func:`base_classifiers`; the held-out rest are the ensemble's
    instances: ``R[u, i]`` is classifier ``u``'s probability that held-out image ``i`` is the digit.
    ``instance_ids`` are the row numbers in ``load_digits()``; difficulty is
    :func:`disagreement_difficulty` (the real set has no generated difficulty).
    """
    from sklearn.datasets import load_digits
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import train_test_split

    if positive_digit not in range(10):
        raise ParameterError(f"positive_digit must be 0..9, got {positive_digit}")
    if not 0.1 <= base_fraction <= 0.9:
        raise ParameterError(f"base_fraction must be in [0.1, 0.9], got {base_fraction}")
    X, digit = load_digits(return_X_y=True)
    y = (digit == positive_digit).astype(int)
    ids = np.arange(len(y))
    base_idx, ens_idx = train_test_split(ids, train_size=base_fraction, stratify=digit, random_state=seed)
    ens_idx = np.sort(ens_idx)
    rows, names = [], []
    for name, clf in base_classifiers(seed).items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            clf.fit(X[base_idx], y[base_idx])
        rows.append(clf.predict_proba(X[ens_idx])[:, 1])
        names.append(name)
    R = np.clip(np.vstack(rows), 0.0, 1.0)
    return EnsembleSet(
        name="digits",
        R=R,
        y=y[ens_idx],
        difficulty=disagreement_difficulty(R),
        instance_ids=ens_idx,
        classifier_names=names,
        difficulty_rule="base classifiers' disagreement (std of R's column): lowest 40% easy, highest 20% hard",
    )


def labelled_split(es: EnsembleSet, labelled_fraction: float = 0.5, seed: int = 0) -> np.ndarray:
    """Boolean mask of the instances whose labels the aggregator sees (``train``); the rest are
    ``test``. Stratified by label and difficulty, so both parts keep the class and difficulty mix."""
    from sklearn.model_selection import train_test_split

    if not 0.05 <= labelled_fraction <= 0.95:
        raise ParameterError(f"labelled_fraction must be in [0.05, 0.95], got {labelled_fraction}")
    n = len(es.y)
    strata = es.y * 3 + es.difficulty
    counts = np.bincount(strata)
    if counts[counts > 0].min() < 2:
        strata = es.y  # a (label, difficulty) group with a single instance: stratify by label only
    try:
        tr, _ = train_test_split(np.arange(n), train_size=labelled_fraction, stratify=strata, random_state=seed)
    except ValueError as e:
        raise DataError(f"cannot split {n} instances into labelled and test parts stratified by label ({e})") from None
    mask = np.zeros(n, dtype=bool)
    mask[tr] = True
    return mask


def load(name: str, seed: int, **kw) -> EnsembleSet:
    """``"synthetic"`` or ``"digits"`` by name."""
    if name == "synthetic":
        return synthetic_ensemble(seed=seed, **kw)
    if name == "digits":
        return digits_ensemble(seed=seed, **kw)
    raise ParameterError(f"unknown ensemble data set {name!r}; choices: synthetic, digits")
