r"""CF-Ensemble: a collaborative-filtering ensemble of binary classifiers (the CF-Ensemble focal-loss study).

``m`` base classifiers have scored ``n`` instances; their probabilities form the matrix
``R`` (m x n, classifiers x instances). CF-Ensemble factorises ``R`` with confidence weights
and learns an aggregator on the reconstruction:

* latent factors ``X`` (d x m, one column per classifier) and ``Y`` (d x n, one column per
  instance); reconstruction ``R_hat = X^T Y``, so ``r_hat_ui = x_u^T y_i``;
* aggregator ``(w, b)``: the final probability of instance ``i`` is
  ``p_i = sigmoid(w^T r_hat_i + b)`` where ``r_hat_i`` is column ``i`` of ``R_hat``.

Objective (both trainers report it; the PyTorch trainer minimises it directly)::

    L(X, Y, w, b) = rho * L_rec + (1 - rho) * L_sup + lambda_reg * Omega

    L_rec = sum_{u,i} c_ui (r_ui - x_u^T y_i)^2                   confidence-weighted squared error
    Omega = ||X||_F^2 + ||Y||_F^2                                 ridge on the latent factors
    L_sup = sum_{i labelled} a_i f_i / sum_{i labelled} a_i       weighted focal / cross-entropy
    f_i   = (1 - p_t,i)^gamma * BCE(p_i, y_i),   p_t,i = p_i if y_i = 1 else 1 - p_i
    a_i   = n_L / (2 n_L,class(y_i))  with class weights, else 1

``f_i`` is :class:`lfakit.losses.multilabel.FocalLoss` (``gamma = focal_gamma``; ``gamma = 0``
is plain binary cross-entropy), reused rather than re-implemented. :class:`TorchTrainer` follows
its exact gradient; :class:`ALSTrainer`'s aggregator uses the study's update instead, which
multiplies the cross-entropy gradient by ``(1 - p_t)^gamma`` held constant and divides by the
sum of the instance weights (see ``ALSTrainer._aggregator_steps``).

Scale, as in the original: ``L_rec`` and ``Omega`` are **sums** over all ``m n`` entries while
``L_sup`` is a **mean** over labelled instances, so with the default ``rho = 0.5`` the
reconstruction dominates the latent factors and supervision mostly shapes ``(w, b)``; ``rho``
must be small (about ``1 / (m n)``) for the two to weigh alike. The aggregator weights ``w``
are not regularised. Only labelled instances enter ``L_sup``; every instance (labelled or not)
enters ``L_rec``: the setting is transductive, and predictions for the unlabelled instances
come from their own columns of ``Y``.

Two trainers:

* :class:`ALSTrainer` (the original ``CFEnsembleTrainer``): per iteration, ``X`` then ``Y``
  are set to the exact minimiser of ``rho L_rec + lambda_reg Omega`` with the other fixed
  (closed form, weighted ridge regression per column; equivalent to the usual weighted ALS
  with ridge ``lambda_reg / rho``), so that part of the objective never increases. The
  supervised term is **not** in these updates: supervision reaches ``X, Y`` only through
  *label-aware confidence* (``c_ui`` multiplied by ``1 + alpha r_ui`` on labelled positives and
  ``1 + alpha (1 - r_ui)`` on labelled negatives, so entries that agree with the label are
  reconstructed more faithfully). Then ``aggregator_steps`` steps of the study's aggregator
  update (learning rate ``aggregator_lr``; the gradient of ``L_sup`` with the focal factor held
  constant, normalised by the summed instance weights) update ``(w, b)``; class weights and
  the focal factor act there only.
* :class:`TorchTrainer` (the original ``CFEnsemblePyTorchTrainer``): all of ``X, Y, w, b`` by
  gradient descent (Adam by default) on ``L``, so class weights and the focal factor reach
  every parameter through ``L_sup``. No label-aware confidence.

Labels: a length-``n`` array of 0/1 with unlabelled instances marked ``-1`` or ``NaN``.
Everything is deterministic for a given ``random_seed`` (NumPy / torch CPU, float64).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.special import expit
import torch

from lfakit import losses
from lfakit.engine import make_optimizer_for
from lfakit.fitconfig import FitConfig
from lfakit.errors import DataError, ParameterError

__all__ = [
    "EnsembleData",
    "ALSTrainer",
    "TorchTrainer",
    "CFEnsembleTrainer",
    "CFEnsemblePyTorchTrainer",
    "class_weights",
    "focal_weights",
    "supervised_loss",
    "certainty_confidence",
    "label_aware_confidence",
    "als_objective",
]

CONFIDENCE_FLOOR = 0.1  # certainty confidence lies in [0.1, 1]


# --------------------------------------------------------------------------- data


def certainty_confidence(R: np.ndarray) -> np.ndarray:
    """Default confidence ``c = 0.1 + 0.9 |2 r - 1|``: 1 for a certain 0 or 1, 0.1 at r = 0.5.

    The floor keeps entries near 0.5 in the fit (with ``c = 0`` an instance every classifier
    is unsure about would be reconstructed by the ridge alone, i.e. as 0).
    """
    R = np.asarray(R, dtype=float)
    return CONFIDENCE_FLOOR + (1.0 - CONFIDENCE_FLOOR) * np.abs(2.0 * R - 1.0)


def label_aware_confidence(R: np.ndarray, C: np.ndarray, labels: np.ndarray, alpha: float) -> np.ndarray:
    """Confidence raised where a classifier agrees with a known label.

    Labelled positive ``i``: ``c_ui (1 + alpha r_ui)``; labelled negative: ``c_ui (1 + alpha (1 - r_ui))``;
    unlabelled columns unchanged. ``alpha = 0`` returns ``C``.
    """
    out = np.array(C, dtype=float, copy=True)
    lab = np.isfinite(labels)
    pos = lab & (labels == 1)
    neg = lab & (labels == 0)
    out[:, pos] *= 1.0 + alpha * R[:, pos]
    out[:, neg] *= 1.0 + alpha * (1.0 - R[:, neg])
    return out


@dataclass
class EnsembleData:
    """Probability matrix ``R`` (classifiers x instances), labels and confidence ``C``.

    Args:
        R: (m, n) probabilities in [0, 1] (finite), row ``u`` = classifier ``u``.
        labels: (n,) 0/1 labels; ``-1`` or ``NaN`` marks an unlabelled instance. ``None``: all
            unlabelled. Stored as float with NaN for unlabelled.
        C: (m, n) non-negative confidence weights; ``None``: :func:`certainty_confidence`,
            ``"uniform"``: all ones.
    """

    R: np.ndarray
    labels: np.ndarray | None = None
    C: np.ndarray | str | None = None
    labeled_mask: np.ndarray = field(init=False)

    def __post_init__(self):
        R = np.asarray(self.R, dtype=float)
        if R.ndim != 2 or min(R.shape) < 1:
            raise DataError(f"R must be a 2-D (classifiers x instances) matrix, got shape {R.shape}")
        if not np.all(np.isfinite(R)):
            raise DataError("R holds NaN or inf; every classifier must score every instance")
        if R.min() < 0 or R.max() > 1:
            raise DataError(
                f"R must hold probabilities in [0, 1], got values in [{R.min():.3g}, {R.max():.3g}] "
                "(pass sigmoid(logits), not logits)"
            )
        m, n = R.shape
        if self.labels is None:
            labels = np.full(n, np.nan)
        else:
            labels = np.asarray(self.labels, dtype=float).copy()
            if labels.shape != (n,):
                raise DataError(
                    f"labels must have one entry per instance (column of R): expected shape ({n},), "
                    f"got {labels.shape}. Is R transposed? It must be classifiers x instances."
                )
            labels[labels == -1] = np.nan
            bad = np.isfinite(labels) & (labels != 0) & (labels != 1)
            if bad.any():
                raise DataError(
                    f"labels must be 0 or 1, or -1 / NaN for unlabelled; found {np.unique(labels[bad])[:5]}"
                )
        if self.C is None:
            C = certainty_confidence(R)
        elif isinstance(self.C, str):
            if self.C != "uniform":
                raise ParameterError(f"C must be an array, None (certainty) or 'uniform', got {self.C!r}")
            C = np.ones_like(R)
        else:
            C = np.asarray(self.C, dtype=float)
            if C.shape != R.shape:
                raise DataError(f"C must have the shape of R {R.shape}, got {C.shape}")
            if not np.all(np.isfinite(C)) or (C < 0).any():
                raise DataError("C must hold finite, non-negative confidence weights")
        self.R, self.labels, self.C = R, labels, C
        self.labeled_mask = np.isfinite(labels)

    @property
    def n_classifiers(self) -> int:
        return self.R.shape[0]

    @property
    def n_instances(self) -> int:
        return self.R.shape[1]

    def label_aware_confidence(self, alpha: float = 1.0) -> np.ndarray:
        """``C`` with :func:`label_aware_confidence` applied to the labelled columns."""
        return label_aware_confidence(self.R, self.C, self.labels, alpha)


# --------------------------------------------------------------------------- losses


def class_weights(y: np.ndarray, enabled: bool = True) -> np.ndarray:
    """Per-instance weights ``n / (2 n_class)`` (each class then carries half the total), or ones.

    Raises DataError when weighting is asked for and one class is missing.
    """
    y = np.asarray(y, dtype=float)
    if not enabled:
        return np.ones_like(y)
    n = y.size
    n_pos = float((y == 1).sum())
    n_neg = n - n_pos
    if n_pos == 0 or n_neg == 0:
        raise DataError(
            f"class weights need both classes among the labelled instances; got {int(n_pos)} positives "
            f"and {int(n_neg)} negatives. Label more instances or set use_class_weights=False."
        )
    return np.where(y == 1, n / (2.0 * n_pos), n / (2.0 * n_neg))


def focal_weights(p, y, gamma: float) -> np.ndarray:
    """The focal modulating factor ``(1 - p_t)^gamma`` with ``p_t = p`` if ``y = 1`` else ``1 - p``."""
    p = np.asarray(p, dtype=float)
    y = np.asarray(y, dtype=float)
    p_t = np.where(y == 1, p, 1.0 - p)
    return np.power(1.0 - p_t, gamma)


def focal_module(gamma: float) -> torch.nn.Module:
    """lfakit's sigmoid focal loss with ``gamma``, per element (gamma = 0: binary cross-entropy)."""
    return losses.build("focal", gamma=gamma, alpha=None, reduction="none")


def supervised_loss(logits: torch.Tensor, y: torch.Tensor, weights: torch.Tensor, gamma: float, fl=None) -> torch.Tensor:
    """``L_sup = sum_i a_i FL_gamma(z_i, y_i) / sum_i a_i`` (``FL`` = lfakit's sigmoid focal loss;
    gamma = 0 is binary cross-entropy). ``logits``, ``y``, ``weights``: (n_labelled,) tensors;
    ``fl``: a prebuilt :func:`focal_module` (built here when None)."""
    fl = focal_module(gamma) if fl is None else fl
    per = fl(logits.reshape(-1, 1), y.reshape(-1, 1)).reshape(-1)
    return (weights * per).sum() / weights.sum()


def als_objective(R, C, X, Y, lambda_reg: float, rho: float = 1.0) -> float:
    """``rho L_rec + lambda_reg Omega`` (the part of the objective the ALS updates minimise)."""
    resid = R - X.T @ Y
    return float(rho * np.sum(C * resid**2) + lambda_reg * (np.sum(X**2) + np.sum(Y**2)))


def _check(name, value, *, low=None, high=None, integer=False, low_open=False):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ParameterError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    if integer and int(value) != value:
        raise ParameterError(f"{name} must be an integer, got {value!r}")
    if not math.isfinite(value):
        raise ParameterError(f"{name} must be finite, got {value!r}")
    if low is not None and (value <= low if low_open else value < low):
        raise ParameterError(f"{name} must be {'>' if low_open else '>='} {low}, got {value!r}")
    if high is not None and value > high:
        raise ParameterError(f"{name} must be <= {high}, got {value!r}")
    return int(value) if integer else float(value)


class _Base:
    """Shared arguments, checks and prediction."""

    def __init__(self, n_classifiers, latent_dim, rho, lambda_reg, use_class_weights, focal_gamma, random_seed):
        self.n_classifiers = _check("n_classifiers", n_classifiers, low=1, integer=True)
        self.latent_dim = _check("latent_dim", latent_dim, low=1, integer=True)
        self.rho = _check("rho", rho, low=0, high=1)
        self.lambda_reg = _check("lambda_reg", lambda_reg, low=0)
        self.use_class_weights = bool(use_class_weights)
        self.focal_gamma = _check("focal_gamma", focal_gamma, low=0)
        self.random_seed = None if random_seed is None else _check("random_seed", random_seed, low=0, integer=True)
        self.X = self.Y = self.w = None
        self.b = 0.0
        self.history: dict[str, list] = {}
        self.converged_ = False
        self.n_iter_ = 0

    def _check_data(self, data: EnsembleData):
        if not isinstance(data, EnsembleData):
            raise ParameterError(f"fit() takes an EnsembleData, got {type(data).__name__}; wrap R and labels: EnsembleData(R, labels)")
        if data.n_classifiers != self.n_classifiers:
            raise DataError(
                f"the trainer was built for n_classifiers={self.n_classifiers} but R has {data.n_classifiers} rows "
                f"(R must be classifiers x instances; shape {data.R.shape})"
            )
        n_lab = int(data.labeled_mask.sum())
        if self.rho < 1 and n_lab == 0:
            raise DataError("no labelled instance: the supervised term is empty; label some instances or set rho=1")
        if n_lab:
            y = data.labels[data.labeled_mask]
            if self.rho < 1 and (y.min() == y.max()):
                raise DataError(
                    f"all {n_lab} labelled instances are of class {int(y[0])}; the aggregator needs both classes"
                )

    def _fitted(self):
        if self.X is None:
            raise ParameterError("the trainer is not fitted; call fit(data) first")

    def reconstruction(self) -> np.ndarray:
        """``R_hat = X^T Y`` (m x n)."""
        self._fitted()
        return self.X.T @ self.Y

    def decision_function(self) -> np.ndarray:
        """Aggregator logits ``w^T r_hat_i + b`` for every instance (transductive)."""
        return self.w @ self.reconstruction() + self.b

    def predict(self) -> np.ndarray:
        """Final probabilities ``sigmoid(w^T r_hat_i + b)`` for every instance of the fitted data."""
        return expit(self.decision_function())


# --------------------------------------------------------------------------- ALS


def _ridge_columns(F: np.ndarray, T: np.ndarray, W: np.ndarray, ridge: float) -> np.ndarray:
    """For every column j: argmin_v sum_k W_kj (T_kj - F_k^T v)^2 + ridge ||v||^2.

    ``F``: (d, K) fixed factors, ``T``: (K, J) targets, ``W``: (K, J) weights -> (d, J).
    Solved for all columns at once: ``(F diag(W_j) F^T + ridge I) v_j = F diag(W_j) T_j``.
    """
    d, K = F.shape
    outer = (F[:, None, :] * F[None, :, :]).reshape(d * d, K)  # F_k F_k^T, one per k
    A = (W.T @ outer.T).reshape(-1, d, d) + ridge * np.eye(d)[None]
    rhs = (W * T).T @ F.T  # (J, d)
    return np.linalg.solve(A, rhs[..., None])[..., 0].T


class ALSTrainer(_Base):
    """CF-Ensemble with closed-form ALS for the latent factors and gradient descent for the aggregator.

    Arguments (names and defaults of the original ``CFEnsembleTrainer``):
        n_classifiers: number of base classifiers m (rows of R).
        latent_dim: d. rho: weight of reconstruction vs supervision, in (0, 1] (rho = 0 leaves
            the ALS nothing to fit; use :class:`TorchTrainer`). lambda_reg: ridge on X, Y.
        aggregator_lr: gradient-descent step size for (w, b). max_iter: ALS iterations.
        tol: stop when the total objective changes by less than tol between iterations (0: never).
        use_label_aware_confidence, label_aware_alpha: see the module docstring.
        use_class_weights: weights n / (2 n_class) in the aggregator's loss.
        focal_gamma: focal exponent of the aggregator's loss (0: cross-entropy).
    Added here: aggregator_steps (gradient steps per ALS iteration; the original takes 1) and
    random_seed (initial factors ~ N(0, 0.01^2)).

    After ``fit``: ``X, Y, w, b``, ``history`` (per iteration: ``total``, ``reconstruction``,
    ``supervised``, ``als_objective``; and ``als_half_steps``: ``rho L_rec + lambda Omega`` at the
    start and after every X and every Y update), ``converged_``, ``n_iter_``.
    """

    def __init__(
        self,
        n_classifiers: int,
        latent_dim: int = 20,
        rho: float = 0.5,
        lambda_reg: float = 0.01,
        aggregator_lr: float = 0.01,
        max_iter: int = 50,
        tol: float = 1e-4,
        use_label_aware_confidence: bool = True,
        label_aware_alpha: float = 1.0,
        use_class_weights: bool = True,
        focal_gamma: float = 0.0,
        aggregator_steps: int = 1,
        random_seed: int | None = None,
    ):
        super().__init__(n_classifiers, latent_dim, rho, lambda_reg, use_class_weights, focal_gamma, random_seed)
        if self.rho == 0:
            raise ParameterError(
                "rho=0 (supervision only) leaves the ALS updates nothing to fit; use rho in (0, 1] "
                "or TorchTrainer, which puts the supervised loss on every parameter"
            )
        self.aggregator_lr = _check("aggregator_lr", aggregator_lr, low=0, low_open=True)
        self.max_iter = _check("max_iter", max_iter, low=1, integer=True)
        self.tol = _check("tol", tol, low=0)
        self.use_label_aware_confidence = bool(use_label_aware_confidence)
        self.label_aware_alpha = _check("label_aware_alpha", label_aware_alpha, low=0)
        self.aggregator_steps = _check("aggregator_steps", aggregator_steps, low=1, integer=True)

    def _aggregator_steps(self, R_hat_lab: np.ndarray, y: torch.Tensor, a: torch.Tensor) -> float:
        """``aggregator_steps`` steps of the original aggregator update, then ``L_sup``.

        The CF-Ensemble study's (and the original ``WeightedAggregator.update``'s) step: with
        ``p = sigmoid(w^T r_hat + b)`` and instance weights ``v_i = a_i (1 - p_t,i)^gamma``,
        the focal factor held **constant** (no gradient through it),
        ``grad_w = sum_i v_i (p_i - y_i) r_hat_i / sum_i v_i`` and
        ``grad_b = sum_i v_i (p_i - y_i) / sum_i v_i``. (For gamma = 0 this is the exact
        gradient of ``L_sup``; for gamma > 0 it is not, which is the original's choice.)
        """
        Rl = R_hat_lab
        yn = y.numpy()
        an = a.numpy()
        w, b = self.w.copy(), float(self.b)
        for _ in range(self.aggregator_steps):
            p = expit(w @ Rl + b)
            v = an * focal_weights(p, yn, self.focal_gamma) if self.focal_gamma else an
            total = v.sum()
            if not total > 0:  # every labelled instance predicted perfectly: nothing to learn
                break
            wr = v * (p - yn)
            w -= self.aggregator_lr * (Rl @ wr) / total
            b -= self.aggregator_lr * wr.sum() / total
        self.w, self.b = w, b
        with torch.no_grad():
            z = torch.from_numpy(w @ Rl + b)
            return float(supervised_loss(z, y, a, self.focal_gamma, self._fl))

    def fit(self, data: EnsembleData) -> "ALSTrainer":
        self._check_data(data)
        R = data.R
        m, n = R.shape
        C = data.label_aware_confidence(self.label_aware_alpha) if self.use_label_aware_confidence else data.C
        self.C_ = C
        self._fl = focal_module(self.focal_gamma)
        rng = np.random.default_rng(self.random_seed)
        d = self.latent_dim
        self.X = rng.normal(0.0, 0.01, (d, m))
        self.Y = rng.normal(0.0, 0.01, (d, n))
        self.w = np.full(m, 1.0 / m)
        self.b = 0.0
        lab = data.labeled_mask
        y_lab = data.labels[lab]
        has_sup = len(np.unique(y_lab)) == 2  # the aggregator learns whenever both classes are labelled
        y_t = a_t = None
        if has_sup:
            y_t = torch.from_numpy(y_lab)
            a_t = torch.from_numpy(class_weights(y_lab, self.use_class_weights))
        ridge = self.lambda_reg / self.rho
        hist = {"iteration": [], "total": [], "reconstruction": [], "supervised": [], "als_objective": []}
        half = [als_objective(R, C, self.X, self.Y, self.lambda_reg, self.rho)]
        prev = math.inf
        self.converged_ = False
        for it in range(self.max_iter):
            self.X = _ridge_columns(self.Y, R.T, C.T, ridge)  # columns = classifiers
            half.append(als_objective(R, C, self.X, self.Y, self.lambda_reg, self.rho))
            self.Y = _ridge_columns(self.X, R, C, ridge)  # columns = instances
            half.append(als_objective(R, C, self.X, self.Y, self.lambda_reg, self.rho))
            sup = self._aggregator_steps((self.X.T @ self.Y)[:, lab], y_t, a_t) if has_sup else 0.0
            rec = float(np.sum(C * (R - self.X.T @ self.Y) ** 2))
            total = half[-1] + (1 - self.rho) * sup
            for k, v in zip(hist, (it + 1, total, rec, sup, half[-1])):
                hist[k].append(v)
            self.n_iter_ = it + 1
            if self.tol > 0 and abs(prev - total) < self.tol:
                self.converged_ = True
                break
            prev = total
        hist["als_half_steps"] = half
        self.history = hist
        return self


CFEnsembleTrainer = ALSTrainer


# --------------------------------------------------------------------------- PyTorch


class TorchTrainer(_Base):
    """CF-Ensemble with every parameter (X, Y, w, b) learnt by gradient descent on the full objective.

    Arguments as :class:`ALSTrainer` where shared (``n_classifiers, latent_dim=20, rho=0.5,
    lambda_reg=0.01, use_class_weights=True, focal_gamma=0.0``), and those of the original
    ``CFEnsemblePyTorchTrainer``: ``max_epochs=500`` (full-batch steps), ``lr=0.01``,
    ``optimizer`` ('adam' | 'adamw' | 'sgd' with momentum 0.9), ``patience=20`` and
    ``min_delta=1e-4`` (stop when the loss has not improved by min_delta for patience steps;
    patience 0: never stop early). ``rho`` may be 0 (supervision only) to 1 (reconstruction
    only). Runs on the CPU in float64 (the problem is tiny), initial factors ~ N(0, 0.01^2),
    ``w = 1/m``, ``b = 0``. ``history``: per step ``total``, ``reconstruction``, ``supervised``.
    """

    def __init__(
        self,
        n_classifiers: int,
        latent_dim: int = 20,
        rho: float = 0.5,
        lambda_reg: float = 0.01,
        max_epochs: int = 500,
        lr: float = 0.01,
        optimizer: str = "adam",
        patience: int = 20,
        min_delta: float = 1e-4,
        use_class_weights: bool = True,
        focal_gamma: float = 0.0,
        random_seed: int | None = None,
    ):
        super().__init__(n_classifiers, latent_dim, rho, lambda_reg, use_class_weights, focal_gamma, random_seed)
        self.max_epochs = _check("max_epochs", max_epochs, low=1, integer=True)
        self.lr = _check("lr", lr, low=0, low_open=True)
        if optimizer not in ("adam", "adamw", "sgd"):
            raise ParameterError(f"optimizer must be 'adam', 'adamw' or 'sgd', got {optimizer!r}")
        self.optimizer = optimizer
        self.patience = _check("patience", patience, low=0, integer=True)
        self.min_delta = _check("min_delta", min_delta, low=0)

    def loss_terms(self, R, C, lab, y, a, X, Y, w, b):
        """(total, reconstruction, supervised) as tensors, for the given parameter tensors."""
        R_hat = X.T @ Y
        rec = (C * (R - R_hat) ** 2).sum()
        reg = (X**2).sum() + (Y**2).sum()
        sup = supervised_loss((w @ R_hat + b)[lab], y, a, self.focal_gamma, self._fl) if lab.numel() else R.new_zeros(())
        return self.rho * rec + (1 - self.rho) * sup + self.lambda_reg * reg, rec, sup

    def fit(self, data: EnsembleData) -> "TorchTrainer":
        self._check_data(data)
        m, n = data.R.shape
        self._fl = focal_module(self.focal_gamma)
        g = torch.Generator().manual_seed(0 if self.random_seed is None else self.random_seed)
        dt = torch.float64
        R = torch.from_numpy(data.R)
        C = torch.from_numpy(data.C)
        lab_np = data.labeled_mask
        use_sup = self.rho < 1 and lab_np.any()
        lab = torch.from_numpy(np.flatnonzero(lab_np)) if use_sup else torch.zeros(0, dtype=torch.long)
        y_lab = data.labels[lab_np]
        y = torch.from_numpy(y_lab) if use_sup else None
        a = torch.from_numpy(class_weights(y_lab, self.use_class_weights)) if use_sup else None
        X = (torch.randn(self.latent_dim, m, generator=g, dtype=dt) * 0.01).requires_grad_(True)
        Y = (torch.randn(self.latent_dim, n, generator=g, dtype=dt) * 0.01).requires_grad_(True)
        w = torch.full((m,), 1.0 / m, dtype=dt, requires_grad=True)
        b = torch.zeros((), dtype=dt, requires_grad=True)
        params = [X, Y, w, b]
        # the engine's optimiser builder; AdamW keeps PyTorch's default weight decay of 0.01
        opt = make_optimizer_for(params, FitConfig(optimizer=self.optimizer, lr=self.lr, momentum=0.9,
                                                   weight_decay=0.01 if self.optimizer == "adamw" else 0.0))
        hist = {"iteration": [], "total": [], "reconstruction": [], "supervised": []}
        best, wait = math.inf, 0
        self.converged_ = False
        for ep in range(self.max_epochs):
            opt.zero_grad()
            total, rec, sup = self.loss_terms(R, C, lab, y, a, X, Y, w, b)
            if not torch.isfinite(total):
                raise FloatingPointError(f"the loss became {float(total.detach())} at step {ep + 1}; lower lr")
            total.backward()
            opt.step()
            tv = float(total.detach())
            for k, v in zip(hist, (ep + 1, tv, float(rec.detach()), float(sup.detach()))):
                hist[k].append(v)
            self.n_iter_ = ep + 1
            if tv < best - self.min_delta:
                best, wait = tv, 0
            else:
                wait += 1
                if self.patience and wait >= self.patience:
                    self.converged_ = True
                    break
        self.X, self.Y = X.detach().numpy().copy(), Y.detach().numpy().copy()
        self.w, self.b = w.detach().numpy().copy(), float(b.detach())
        self.history = hist
        return self


CFEnsemblePyTorchTrainer = TorchTrainer
