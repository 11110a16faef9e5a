"""Correlation metrics of IQA: SRCC, KRCC, PLCC (after the VQEG logistic fit), RMSE, bootstrap CIs.

Conventions, shared with the IQA literature (pyiqa, DeQA-Score, DepictQA, VQEG):

- SRCC and KRCC (Kendall's tau-b) are computed on the raw predictions: they only depend on
  ranks, so no fit changes them.
- PLCC and RMSE are computed after mapping the predictions onto the MOS with the
  4-parameter logistic of VQEG, ``f(x) = (b1 - b2) / (1 + exp(-(x - b3) / |b4|)) + b2``,
  fitted by least squares (``scipy.optimize.curve_fit``) from
  ``p0 = [max(mos), min(mos), mean(pred), std(pred) / 4]``. pyiqa and DeQA-Score use the
  same curve and start point with a signed ``b4``; the family of curves is the same.
  ``fit=None`` gives the plain PLCC/RMSE of the raw predictions (``plcc_raw``).
- The fit may produce a decreasing curve, so a fitted PLCC is positive even for predictions
  that are anti-correlated with the MOS; SRCC keeps the sign. Read both.
- Least squares on this curve has poor local optima (a curve that is flat over the data, or
  a step that only an outlier moves), so the fit is run from several start points: the one
  above, the ``[max(mos), min(mos), mean(pred), 0.5]`` of Q-Align/DeQA-Score, and one
  centred on the median of the predictions with a width from their interquartile range.
  The usable fit with the smallest sum of squared errors is kept; ties go to the earlier
  start, so on ordinary data the result is that of the first start.
- A fitted curve is *flat*, and so unusable, when its values over the data span at most
  ``FLAT_TOLERANCE`` (1e-6) times the range of the MOS: it then carries no information
  about the predictions, whatever their scale.
- When the fit fails (fewer than 4 pairs, ``curve_fit`` does not converge, non-finite
  output, or a flat curve from every start), PLCC and RMSE fall back to the raw
  predictions: ``plcc == plcc_raw``. The returned :class:`LogisticFit` (and so every
  summary) records ``converged: false``, ``fallback: "raw"`` and the reason, and a
  :class:`MetricWarning` is emitted. Nothing else is silently changed.
- Degenerate inputs (fewer than two pairs, constant predictions or constant MOS) give
  ``nan`` with a :class:`MetricWarning`, never an exception. Non-finite inputs (NaN, inf)
  raise :class:`MetricInputError` saying how many: drop unscored images first.
- Confidence intervals are percentile bootstraps over images with a seeded generator; the
  fitted PLCC is re-fitted on every resample. To keep that fast, a re-fit tries the later
  start points only when the first gives no usable fit or one with more squared error than
  the best straight line or two-level step (the limits of the logistic).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats
from scipy.optimize import OptimizeWarning, curve_fit

from qponder.errors import QponderError

FIT_LOGISTIC4 = "logistic4"
FLAT_TOLERANCE = 1e-6  # a fitted curve spanning at most this fraction of the MOS range is flat
CI_LEVEL = 0.95

ArrayLike = Sequence[float] | np.ndarray


class MetricInputError(QponderError, ValueError):
    """Predictions and MOS cannot be compared (shape mismatch, NaN or inf values)."""


class MetricWarning(RuntimeWarning):
    """A metric is undefined (nan) or a fit fell back to the raw predictions."""


# --------------------------------------------------------------------------- inputs


def as_pairs(pred: ArrayLike, mos: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Validate predictions and MOS and return them as 1-D float64 arrays.

    Raises:
        MetricInputError: On different lengths, more than one dimension, or any NaN/inf
            value (the message says how many in each).
    """
    p = np.asarray(pred, dtype=np.float64)
    m = np.asarray(mos, dtype=np.float64)
    if p.ndim != 1 or m.ndim != 1:
        raise MetricInputError(f"pred and mos must be 1-D, got shapes {p.shape} and {m.shape}")
    if p.shape != m.shape:
        raise MetricInputError(f"pred has {p.size} values but mos has {m.size}")
    bad_p, bad_m = int((~np.isfinite(p)).sum()), int((~np.isfinite(m)).sum())
    if bad_p or bad_m:
        raise MetricInputError(
            f"non-finite values (NaN/inf): {bad_p} of {p.size} in pred, {bad_m} of {m.size} "
            "in mos; leave unscored images out before computing metrics"
        )
    return p, m


def _degenerate(p: np.ndarray, m: np.ndarray) -> str | None:
    """Why a correlation is undefined for these pairs, or None."""
    if p.size < 2:
        return f"{p.size} pair(s); a correlation needs at least 2"
    if np.all(p == p[0]):
        return "the predictions are constant"
    if np.all(m == m[0]):
        return "the MOS values are constant"
    return None


def _undefined(name: str, reason: str) -> float:
    warnings.warn(f"{name} is undefined (nan): {reason}", MetricWarning, stacklevel=3)
    return math.nan


# --------------------------------------------------------------------------- logistic fit


def logistic4(x: ArrayLike, b1: float, b2: float, b3: float, b4: float) -> np.ndarray:
    """The VQEG 4-parameter logistic ``(b1 - b2) / (1 + exp(-(x - b3) / |b4|)) + b2``.

    Example:
        >>> float(logistic4(3.0, 5.0, 1.0, 3.0, 0.5))  # the midpoint of the curve
        3.0
    """
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        return (b1 - b2) / (1.0 + np.exp(-(np.asarray(x, dtype=np.float64) - b3) / np.abs(b4))) + b2


def logistic4_p0(pred: np.ndarray, mos: np.ndarray) -> list[float]:
    """The standard start point ``[max(mos), min(mos), mean(pred), std(pred) / 4]``."""
    return [float(mos.max()), float(mos.min()), float(pred.mean()), float(pred.std() / 4.0)]


def _start_points(pred: np.ndarray, mos: np.ndarray) -> list[list[float]]:
    """Start points of the fit, in order of preference (see the module docstring)."""
    hi, lo = float(mos.max()), float(mos.min())
    q1, median, q3 = (float(q) for q in np.quantile(pred, [0.25, 0.5, 0.75]))
    width = (q3 - q1) / 4.0
    if not width > 0.0:
        width = float(pred.std() / 4.0)
    return [logistic4_p0(pred, mos), [hi, lo, float(pred.mean()), 0.5], [hi, lo, median, width]]


def _flat_reason(fitted: np.ndarray, mos: np.ndarray) -> str | None:
    """Why fitted values are a flat curve (see ``FLAT_TOLERANCE``), or None if they are not."""
    spread, mos_range = float(np.ptp(fitted)), float(np.ptp(mos))
    if spread > FLAT_TOLERANCE * mos_range:
        return None
    return (
        f"the fitted curve is flat over the data (its values span {spread:.3g}, at most "
        f"{FLAT_TOLERANCE:g} of the MOS range {mos_range:.3g})"
    )


@dataclass(frozen=True)
class LogisticFit:
    """Outcome of fitting the logistic that maps predictions onto the MOS.

    Attributes:
        method: ``"logistic4"``, or ``"none"`` when no fit was asked for.
        converged: Whether a usable fit was found. When False, :meth:`__call__` is the
            identity (the documented fall-back to raw predictions).
        params: ``(b1, b2, b3, b4)`` when converged, else None.
        reason: Why the fit failed (for instance a flat curve, see ``FLAT_TOLERANCE``),
            or None.
    """

    method: str
    converged: bool
    params: tuple[float, float, float, float] | None = None
    reason: str | None = None

    def __call__(self, pred: ArrayLike) -> np.ndarray:
        """Map predictions through the fitted curve (identity when there is none)."""
        pred = np.asarray(pred, dtype=np.float64)
        return logistic4(pred, *self.params) if self.params is not None else pred

    def to_dict(self) -> dict:
        """Plain data for summaries: method, converged, params, fallback and reason."""
        return {
            "method": self.method,
            "converged": self.converged,
            "params": list(self.params) if self.params is not None else None,
            "fallback": None if self.converged or self.method == "none" else "raw",
            "reason": self.reason,
        }


NO_FIT = LogisticFit(method="none", converged=True)


def _fit_from(p: np.ndarray, m: np.ndarray, p0: list[float], maxfev: int) -> LogisticFit:
    """One least-squares fit from start point ``p0``; a failure is in ``reason``."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", OptimizeWarning)
            popt, _ = curve_fit(logistic4, p, m, p0=p0, maxfev=maxfev)
    except (RuntimeError, ValueError) as exc:
        return LogisticFit(FIT_LOGISTIC4, False, reason=f"curve_fit failed: {exc}")
    fitted = logistic4(p, *popt)
    if not np.all(np.isfinite(popt)) or not np.all(np.isfinite(fitted)):
        return LogisticFit(FIT_LOGISTIC4, False, reason="the fitted curve is not finite")
    flat = _flat_reason(fitted, m)
    if flat is not None:
        return LogisticFit(FIT_LOGISTIC4, False, reason=flat)
    return LogisticFit(FIT_LOGISTIC4, True, params=tuple(float(b) for b in popt))


def _limit_sse(p: np.ndarray, m: np.ndarray) -> float:
    """Smallest squared error of the two limits of the logistic: a straight line and a step.

    A wide logistic approaches the least-squares line, a steep one the best two-level
    step, so a good fit has at most this error.
    """
    sst = float(np.sum((m - m.mean()) ** 2))
    line = sst * (1.0 - float(np.corrcoef(p, m)[0, 1]) ** 2)
    order = np.argsort(p, kind="stable")
    ps, ms = p[order], m[order]
    cut = np.flatnonzero(ps[1:] > ps[:-1]) + 1  # sizes of the lower group at each split
    s1, s2 = np.cumsum(ms), np.cumsum(ms**2)
    lo_n, hi_n = cut.astype(np.float64), float(ms.size) - cut
    lo_s, hi_s = s1[cut - 1], s1[-1] - s1[cut - 1]
    within = s2[-1] - lo_s**2 / lo_n - hi_s**2 / hi_n
    return min(line, float(within.min())) if within.size else line


def _fit_logistic4_quiet(
    p: np.ndarray, m: np.ndarray, maxfev: int, thorough: bool = True
) -> LogisticFit:
    """The best fit over the start points, without warnings; a failure is in ``reason``.

    With ``thorough`` every start point is tried. Without it (the bootstrap's re-fits), the
    later ones are tried only while the best fit so far is unusable or has more squared
    error than :func:`_limit_sse` (a curve the logistic can approach, so a fit worse than
    it is a poor local optimum). When no start gives a usable fit, the reason is that of
    the first start.
    """
    if p.size < 4:
        return LogisticFit(
            FIT_LOGISTIC4, False, reason=f"{p.size} pair(s); the fit needs at least 4"
        )
    why = _degenerate(p, m)
    if why is not None:
        return LogisticFit(FIT_LOGISTIC4, False, reason=why)
    # squared errors closer than this are a tie, which the earlier start wins
    tie = 1e-6 * float(np.sum((m - m.mean()) ** 2))
    good_enough = -math.inf if thorough else _limit_sse(p, m) + tie
    first: LogisticFit | None = None
    best: LogisticFit | None = None
    best_sse = math.inf
    for p0 in _start_points(p, m):
        fit = _fit_from(p, m, p0, maxfev)
        first = first or fit
        if fit.converged:
            sse = float(np.sum((fit(p) - m) ** 2))
            if sse < best_sse - tie:
                best, best_sse = fit, sse
        if best_sse <= good_enough:
            break
    return best if best is not None else first


def fit_logistic4(pred: ArrayLike, mos: ArrayLike, maxfev: int = 10000) -> LogisticFit:
    """Fit the VQEG 4-parameter logistic from predictions to MOS.

    Args:
        pred: Predicted scores.
        mos: Mean opinion scores of the same images.
        maxfev: Most function evaluations for ``curve_fit`` (10000, as DeQA-Score).

    Returns:
        A :class:`LogisticFit`: of the fits from several start points (see the module
        docstring), the usable one with the smallest sum of squared errors. A fit whose
        curve is flat over the data (values spanning at most ``FLAT_TOLERANCE`` of the MOS
        range) is not usable. When no fit is usable, a failed fit is returned
        (``converged=False``, identity mapping, ``fallback: "raw"``) with a
        :class:`MetricWarning`, not raised.
    """
    p, m = as_pairs(pred, mos)
    fit = _fit_logistic4_quiet(p, m, maxfev)
    if not fit.converged:
        warnings.warn(
            f"logistic fit failed ({fit.reason}); PLCC/RMSE use the raw predictions",
            MetricWarning,
            stacklevel=2,
        )
    return fit


def _get_fit(p: np.ndarray, m: np.ndarray, fit: str | None) -> LogisticFit:
    if fit is None:
        return NO_FIT
    if fit != FIT_LOGISTIC4:
        raise ValueError(f"unknown fit {fit!r}; use {FIT_LOGISTIC4!r} or None")
    return fit_logistic4(p, m)


# --------------------------------------------------------------------------- metrics


def srcc(pred: ArrayLike, mos: ArrayLike) -> float:
    """Spearman rank-order correlation between predictions and MOS (nan when undefined).

    Example:
        >>> srcc([1.0, 2.0, 3.5, 3.0], [1.2, 2.0, 4.1, 3.3])
        1.0
    """
    p, m = as_pairs(pred, mos)
    why = _degenerate(p, m)
    return _undefined("SRCC", why) if why else float(stats.spearmanr(p, m).statistic)


def krcc(pred: ArrayLike, mos: ArrayLike) -> float:
    """Kendall rank correlation (tau-b, which accounts for ties) between predictions and MOS."""
    p, m = as_pairs(pred, mos)
    why = _degenerate(p, m)
    return _undefined("KRCC", why) if why else float(stats.kendalltau(p, m).statistic)


def _pearson(p: np.ndarray, m: np.ndarray) -> float:
    why = _degenerate(p, m)
    return _undefined("PLCC", why) if why else float(stats.pearsonr(p, m).statistic)


def plcc(pred: ArrayLike, mos: ArrayLike, fit: str | None = FIT_LOGISTIC4) -> float:
    """Pearson linear correlation, after the logistic fit by default.

    Args:
        pred: Predicted scores.
        mos: Mean opinion scores.
        fit: ``"logistic4"`` (the literature's PLCC) or None (raw predictions). A failed fit
            falls back to the raw predictions with a :class:`MetricWarning`.

    Returns:
        The correlation, or nan when it is undefined.
    """
    p, m = as_pairs(pred, mos)
    return _pearson(_get_fit(p, m, fit)(p), m)


def rmse(pred: ArrayLike, mos: ArrayLike, fit: str | None = FIT_LOGISTIC4) -> float:
    """Root mean squared error between the (fitted) predictions and the MOS; nan when empty."""
    p, m = as_pairs(pred, mos)
    if p.size == 0:
        return _undefined("RMSE", "no pairs")
    return float(np.sqrt(np.mean((_get_fit(p, m, fit)(p) - m) ** 2)))


# --------------------------------------------------------------------------- bootstrap


def _rowwise_pearson(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson correlation of each row pair; nan for constant rows."""
    xc = x - x.mean(axis=1, keepdims=True)
    yc = y - y.mean(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (xc * yc).sum(axis=1) / np.sqrt((xc**2).sum(axis=1) * (yc**2).sum(axis=1))
    return np.clip(r, -1.0, 1.0)


def _resample_indices(n: int, n_resamples: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n, size=(n_resamples, n))


def _refit_plcc(p: np.ndarray, m: np.ndarray) -> float:
    fit = _fit_logistic4_quiet(p, m, maxfev=10000, thorough=False)
    q = fit(p)
    if _degenerate(q, m):
        return math.nan
    return float(stats.pearsonr(q, m).statistic)


def resampled_metric(pred: np.ndarray, mos: np.ndarray, metric: str, idx: np.ndarray) -> np.ndarray:
    """Values of ``metric`` on each row of resampling indices ``idx`` (nan where undefined).

    Args:
        pred: Validated predictions (see :func:`as_pairs`).
        mos: Validated MOS.
        metric: ``"srcc"``, ``"plcc"`` (re-fitted per resample) or ``"plcc_raw"``.
        idx: ``[n_resamples, n]`` integer indices.

    Returns:
        ``[n_resamples]`` metric values.
    """
    p, m = pred[idx], mos[idx]
    if metric == "srcc":
        return _rowwise_pearson(stats.rankdata(p, axis=1), stats.rankdata(m, axis=1))
    if metric == "plcc_raw":
        return _rowwise_pearson(p, m)
    if metric == "plcc":
        return np.array([_refit_plcc(pr, mr) for pr, mr in zip(p, m, strict=True)])
    raise ValueError(f"no bootstrap for metric {metric!r}; use srcc, plcc or plcc_raw")


def percentile_ci(values: np.ndarray, level: float = CI_LEVEL) -> list[float] | None:
    """The central ``level`` percentile interval of the finite values, or None if none."""
    values = values[np.isfinite(values)]
    if values.size == 0:
        return None
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(values, [alpha, 1.0 - alpha])
    return [float(lo), float(hi)]


def bootstrap_ci(
    pred: ArrayLike,
    mos: ArrayLike,
    metric: str = "srcc",
    n_resamples: int = 1000,
    seed: int = 0,
    level: float = CI_LEVEL,
) -> list[float] | None:
    """Percentile bootstrap confidence interval of a metric, resampling images.

    Args:
        pred: Predicted scores.
        mos: Mean opinion scores.
        metric: ``"srcc"``, ``"plcc"`` (logistic re-fitted on every resample) or ``"plcc_raw"``.
        n_resamples: Number of resamples.
        seed: Seed of the resampling; the same seed gives the same interval.
        level: Coverage of the interval.

    Returns:
        ``[lo, hi]``, or None when the metric is undefined on every resample (for
        instance with constant predictions) or there are fewer than 2 pairs.
    """
    p, m = as_pairs(pred, mos)
    if p.size < 2 or n_resamples < 1:
        return None
    return percentile_ci(
        resampled_metric(p, m, metric, _resample_indices(p.size, n_resamples, seed)), level
    )


def paired_bootstrap_diff(
    pred_a: ArrayLike,
    pred_b: ArrayLike,
    mos: ArrayLike,
    metric: str = "srcc",
    n_resamples: int = 1000,
    seed: int = 0,
    level: float = CI_LEVEL,
) -> list[float] | None:
    """CI of ``metric(pred_b) - metric(pred_a)`` over the same images, resampled jointly.

    Both prediction arrays must be aligned with ``mos`` (the same image at each index).
    Resampling the pairs together removes the variance the two runs share.

    Returns:
        ``[lo, hi]`` of the difference, or None when undefined on every resample.
    """
    a, m = as_pairs(pred_a, mos)
    b, _ = as_pairs(pred_b, mos)
    if m.size < 2 or n_resamples < 1:
        return None
    idx = _resample_indices(m.size, n_resamples, seed)
    diff = resampled_metric(b, m, metric, idx) - resampled_metric(a, m, metric, idx)
    return percentile_ci(diff, level)


def unpaired_bootstrap_diff(
    pred_a: ArrayLike,
    mos_a: ArrayLike,
    pred_b: ArrayLike,
    mos_b: ArrayLike,
    metric: str = "srcc",
    n_resamples: int = 1000,
    seed: int = 0,
    level: float = CI_LEVEL,
) -> list[float] | None:
    """CI of ``metric(b) - metric(a)`` when the two runs scored different images.

    Each run is resampled independently (so the interval is wider than a paired one).
    """
    a, ma = as_pairs(pred_a, mos_a)
    b, mb = as_pairs(pred_b, mos_b)
    if a.size < 2 or b.size < 2 or n_resamples < 1:
        return None
    va = resampled_metric(a, ma, metric, _resample_indices(a.size, n_resamples, seed))
    vb = resampled_metric(b, mb, metric, _resample_indices(b.size, n_resamples, seed + 1))
    return percentile_ci(vb - va, level)


# --------------------------------------------------------------------------- all at once


def _finite_or_none(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def compute_metrics(
    pred: ArrayLike,
    mos: ArrayLike,
    fit: str | None = FIT_LOGISTIC4,
    n_resamples: int = 1000,
    seed: int = 0,
) -> dict:
    """Every metric of one dataset, JSON-ready (undefined values are ``None``).

    Args:
        pred: Predicted scores of the images that have one.
        mos: Their MOS.
        fit: Fit used for PLCC/RMSE (``"logistic4"`` or None).
        n_resamples: Bootstrap resamples for the 95% CIs (0 disables them).
        seed: Seed of the bootstrap.

    Returns:
        ``{n, srcc, krcc, plcc, plcc_raw, rmse, ci95: {srcc, plcc}, fit}`` where ``fit`` is
        :meth:`LogisticFit.to_dict`. With no pairs every metric is None.

    Example:
        >>> m = compute_metrics([1.1, 2.3, 2.9, 4.2, 4.8], [1.0, 2.0, 3.0, 4.0, 5.0], n_resamples=0)
        >>> m["n"], round(m["srcc"], 6), m["fit"]["converged"], m["ci95"]
        (5, 1.0, True, {'srcc': None, 'plcc': None})
    """
    p, m = as_pairs(pred, mos)
    with warnings.catch_warnings():
        # summaries record undefined metrics as None and the fit's outcome; no need to warn twice
        warnings.simplefilter("ignore", MetricWarning)
        the_fit = (
            _get_fit(p, m, fit) if p.size else LogisticFit(fit or "none", False, reason="no pairs")
        )
        out = {
            "n": int(p.size),
            "srcc": _finite_or_none(srcc(p, m)),
            "krcc": _finite_or_none(krcc(p, m)),
            "plcc": _finite_or_none(_pearson(the_fit(p), m)),
            "plcc_raw": _finite_or_none(_pearson(p, m)),
            "rmse": _finite_or_none(float(np.sqrt(np.mean((the_fit(p) - m) ** 2))))
            if p.size
            else None,
        }
    ci_metric = "plcc" if fit == FIT_LOGISTIC4 else "plcc_raw"
    out["ci95"] = {
        "srcc": bootstrap_ci(p, m, "srcc", n_resamples, seed) if n_resamples else None,
        "plcc": bootstrap_ci(p, m, ci_metric, n_resamples, seed) if n_resamples else None,
    }
    out["fit"] = the_fit.to_dict()
    return out
