"""IQA evaluation metrics: rank and linear correlations between predicted scores and MOS.

Everything takes two 1-D array-likes of the same length N (an (N, 1) column is accepted and
flattened; torch tensors are converted): ``pred`` (predicted quality) and ``mos``.

* :func:`srcc` -- Spearman rank correlation (ties averaged), = ``scipy.stats.spearmanr``;
* :func:`krcc` -- Kendall rank correlation, **tau-b** (tie-corrected),
  = ``scipy.stats.kendalltau(variant="b")``;
* :func:`plcc` -- Pearson correlation of the **raw** predictions, = ``scipy.stats.pearsonr``;
* :func:`plcc_logistic` -- Pearson correlation after mapping the predictions through the
  4-parameter logistic ``f(x) = (b1 - b2) / (1 + exp(-(x - b3) / b4)) + b2`` fitted to the MOS
  by least squares (:func:`fit_logistic`), the protocol of the VQEG reports; the raw form is
  what e.g. the pyiqa benchmark tables report. Tables must say which one they show:
  :func:`iqa_report` states it in its ``plcc_kind`` entry;
* :func:`rmse` -- root mean squared error of the raw predictions (same scale as the MOS).

A correlation is undefined when one input is constant: the result is then ``NaN`` (scipy
warns). Fewer than 2 (3 for the logistic fit) scores, different lengths, or non-finite values
raise ``ValueError``.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import optimize, stats

__all__ = [
    "srcc",
    "krcc",
    "plcc",
    "plcc_logistic",
    "rmse",
    "logistic_4p",
    "fit_logistic",
    "LogisticFitWarning",
    "iqa_report",
]


class LogisticFitWarning(UserWarning):
    """The 4-parameter logistic could not be fitted; the identity map was used instead."""


def _pair(pred, mos, min_n: int = 2) -> tuple[np.ndarray, np.ndarray]:
    arrs = []
    for name, x in (("pred", pred), ("mos", mos)):
        if hasattr(x, "detach"):  # torch tensor
            x = x.detach().cpu().float().numpy() if x.dtype.is_floating_point else x.cpu().numpy()
        a = np.asarray(x, dtype=np.float64)
        if a.ndim == 2 and a.shape[1] == 1:
            a = a[:, 0]
        if a.ndim != 1:
            raise ValueError(f"{name} must be 1-D (N,) or a column (N, 1); got shape {a.shape}")
        if not np.isfinite(a).all():
            raise ValueError(f"{name} contains NaN or inf")
        arrs.append(a)
    p, q = arrs
    if p.shape != q.shape:
        raise ValueError(f"pred has {p.size} scores but mos has {q.size}")
    if p.size < min_n:
        raise ValueError(f"need at least {min_n} scores, got {p.size}")
    return p, q


def srcc(pred, mos) -> float:
    """Spearman rank-order correlation (ties get average ranks)."""
    p, q = _pair(pred, mos)
    return float(stats.spearmanr(p, q).statistic)


def krcc(pred, mos) -> float:
    """Kendall rank-order correlation, tau-b variant (corrects for ties in either input)."""
    p, q = _pair(pred, mos)
    return float(stats.kendalltau(p, q, variant="b").statistic)


def plcc(pred, mos) -> float:
    """Pearson linear correlation of the raw (unmapped) predictions and the MOS."""
    p, q = _pair(pred, mos)
    return float(stats.pearsonr(p, q).statistic)


def rmse(pred, mos) -> float:
    """Root mean squared error ``sqrt(mean((pred - mos)^2))`` of the raw predictions."""
    p, q = _pair(pred, mos, min_n=1)
    return float(np.sqrt(np.mean((p - q) ** 2)))


def logistic_4p(x, b1: float, b2: float, b3: float, b4: float):
    """``(b1 - b2) / (1 + exp(-(x - b3) / b4)) + b2``: from b2 (x -> -inf) to b1 (x -> +inf)
    when ``b4 > 0``; ``b3`` is the midpoint, ``|b4|`` the width."""
    z = np.clip(-(np.asarray(x, dtype=np.float64) - b3) / b4, -700.0, 700.0)
    return (b1 - b2) / (1.0 + np.exp(z)) + b2


#: the smallest width the fit may take, as a fraction of the predictions' standard deviation
WIDTH_FLOOR = 0.1


def at_width_floor(params, pred) -> bool:
    """Whether a fitted map (:func:`fit_logistic`) sits on the width bound: ``|b4|`` within 1e-6
    (relative) of ``WIDTH_FLOOR x std(pred)``. Such a fit is the steepest curve the bound allows,
    a near-step: its PLCC (logistic) says how well a step separates the scores, not how well a
    smooth monotone map fits them, so it is reported as such rather than as ``ok``."""
    sd = float(np.std(np.asarray(pred, dtype=np.float64)))
    return sd > 0 and abs(float(params[3])) <= WIDTH_FLOOR * sd * (1 + 1e-6)


def _bounds(q: np.ndarray, sign: float):
    """Box for the standardised fit: the asymptotes within the MOS range widened by its span on
    each side, the midpoint within 5 standard deviations of the predictions, and the width at
    least 0.1 of their standard deviation, in the direction of the correlation. Without the
    width bound, weakly correlated scores fit a step function, whose optimum is ill-conditioned
    (it moves with the last bits of the inputs, so with the CPU's vector kernels)."""
    lo, hi = float(q.min()), float(q.max())
    span = hi - lo
    w = (WIDTH_FLOOR, 100.0) if sign > 0 else (-100.0, -WIDTH_FLOOR)
    return ([lo - span, lo - span, -5.0, w[0]], [hi + span, hi + span, 5.0, w[1]])


def fit_logistic(pred, mos, maxfev: int = 20000) -> tuple[np.ndarray, bool]:
    """Least-squares fit of :func:`logistic_4p` mapping ``pred`` to ``mos``.

    Initial guess: ``b1 = max(mos)``, ``b2 = min(mos)``, ``b3 = median(pred)``,
    ``b4 = std(pred)`` with the sign of the Pearson correlation (so a decreasing relation
    starts from a decreasing curve). The fit runs on standardised predictions (better
    conditioned), within the box of ``_bounds`` (the width at least a tenth of the predictions'
    standard deviation, so no step function), and the parameters are mapped back to the
    original scale.

    Returns ``(params, ok)``. If ``curve_fit`` fails (no convergence within ``maxfev``
    evaluations), the predictions or the MOS are constant, or the fitted parameters are not
    finite, or there are fewer than 4 scores (the parameters), ``ok`` is False and ``params`` is
    the initial guess; callers should then fall back to the raw scores.
    """
    p, q = _pair(pred, mos, min_n=3)
    mu, sd = float(p.mean()), float(p.std())
    guess_sign = 1.0
    if sd > 0 and q.std() > 0:
        r = float(np.corrcoef(p, q)[0, 1])
        guess_sign = -1.0 if r < 0 else 1.0
    init = np.array([q.max(), q.min(), float(np.median(p)), guess_sign * max(sd, 1e-12)])
    if sd == 0 or q.std() == 0 or p.size < 4:  # four parameters need at least four points
        return init, False
    x = (p - mu) / sd
    init_std = np.array([init[0], init[1], float(np.clip((init[2] - mu) / sd, -4.9, 4.9)), guess_sign])
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optimize.OptimizeWarning)
            params, _ = optimize.curve_fit(logistic_4p, x, q, p0=init_std, maxfev=maxfev, bounds=_bounds(q, guess_sign))
    except (RuntimeError, ValueError, FloatingPointError):
        return init, False
    if not np.all(np.isfinite(params)) or params[3] == 0:
        return init, False
    b1, b2, b3, b4 = params
    out = np.array([b1, b2, mu + sd * b3, sd * b4])
    if not np.all(np.isfinite(logistic_4p(p, *out))):
        return init, False
    return out, True


def plcc_logistic(pred, mos, return_params: bool = False):
    """Pearson correlation between the MOS and the 4-parameter-logistic-mapped predictions.

    The map is fitted with :func:`fit_logistic`. If the fit fails, a
    :class:`LogisticFitWarning` is issued and the raw PLCC is returned (the identity map), so
    the result is always defined when :func:`plcc` is. With ``return_params=True`` returns
    ``(value, params_or_None)``.
    """
    p, q = _pair(pred, mos, min_n=3)
    params, ok = fit_logistic(p, q)
    if ok:
        mapped = logistic_4p(p, *params)
        value = float(stats.pearsonr(mapped, q).statistic) if mapped.std() > 0 else np.nan
    else:
        warnings.warn(
            "4-parameter logistic fit failed; plcc_logistic falls back to the raw PLCC",
            LogisticFitWarning,
            stacklevel=2,
        )
        value = plcc(p, q)
    if return_params:
        return value, (params if ok else None)
    return value


def iqa_report(pred, mos, plcc_kind: str = "raw") -> dict:
    """All IQA metrics in one dict, and which PLCC the headline ``"plcc"`` entry is.

    Keys: ``n``, ``srcc``, ``krcc`` (tau-b), ``plcc`` (the headline PLCC), ``plcc_kind``
    (``"raw"`` or ``"logistic4"``, saying which one ``plcc`` is), ``plcc_raw``,
    ``plcc_logistic`` (after the 4-parameter logistic map; the raw PLCC if the fit failed),
    ``logistic_fit_ok`` (bool), ``logistic_at_width_floor`` (the fit sits on its width bound, a
    near-step; :func:`at_width_floor`), ``rmse`` (raw predictions vs MOS), ``rmse_logistic`` (after the
    logistic map, so on the MOS scale whatever scale the model predicts in; the raw RMSE if the
    fit failed).

    Args:
        plcc_kind: ``"raw"`` (default; the protocol of the pyiqa benchmark tables the kit's
            anchors come from) or ``"logistic4"``.
    """
    if plcc_kind not in ("raw", "logistic4"):
        raise ValueError(f"plcc_kind must be 'raw' or 'logistic4', got {plcc_kind!r}")
    p, q = _pair(pred, mos, min_n=3)
    raw = plcc(p, q)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", LogisticFitWarning)
        logi, params = plcc_logistic(p, q, return_params=True)
    for w in caught:  # re-issue anything other than our own (expected) fallback warning
        if not issubclass(w.category, LogisticFitWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return {
        "n": int(p.size),
        "srcc": srcc(p, q),
        "krcc": krcc(p, q),
        "plcc": raw if plcc_kind == "raw" else logi,
        "plcc_kind": plcc_kind,
        "plcc_raw": raw,
        "plcc_logistic": logi,
        "logistic_fit_ok": params is not None,
        "logistic_at_width_floor": params is not None and at_width_floor(params, p),
        "rmse": rmse(p, q),
        "rmse_logistic": rmse(logistic_4p(p, *params), q) if params is not None else rmse(p, q),
    }
