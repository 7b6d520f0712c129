"""Tail fits other than the power law, for model comparison: exponential and lognormal.

* :func:`fit_exponential` (compiled, ``csrc/cpu/exponential.cpp``): p(x) = Lambda
  exp(-Lambda (x - xmin)) on x >= xmin. For each xmin
  candidate (every fitted value but the largest, as the power-law fit) the maximum-likelihood
  rate is closed-form, Lambda = n / sum(x - xmin); xmin is the candidate with the smallest KS
  distance D = max_j |F(x_j) - j/n| (the power-law fit's convention; the first on ties).
* :func:`fit_lognormal`: the lognormal truncated at a given xmin (the power-law fit's, so that
  the three models describe the same tail), (mu, sigma) of ln x by maximum likelihood.

Both report the log-likelihood summed over the tail (natural log, densities in 1 / units of
the eigenvalues), so they compare directly with the power law's and the TPL's.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import _threads
from .powerlaw import DEFAULT_THRESHOLD


@dataclass(frozen=True)
class ExponentialFit:
    """Exponential tail: rate ``Lambda`` (1 / units of the eigenvalues) above ``xmin``, its
    KS distance ``D``, log-likelihood ``loglik``, standard error ``Lambda_se`` = Lambda/sqrt(n)
    (observed Fisher information), ``n`` tail values, ``xmin_index`` among the fitted values;
    ``status`` "success" or "failed" (with ``reason``)."""

    Lambda: float
    xmin: float
    D: float
    loglik: float
    Lambda_se: float
    n: int
    xmin_index: int
    status: str
    reason: str = ""


def _fitted(evals: Any, threshold: float) -> np.ndarray:
    x = np.sort(np.asarray(evals, dtype=np.float64).ravel())
    if not np.all(np.isfinite(x)):
        msg = "eigenvalues contain NaN or Inf"
        raise ValueError(msg)
    return x[x > threshold]


def fit_exponential(evals: Any, *, threshold: float = DEFAULT_THRESHOLD) -> ExponentialFit:
    """The exponential tail with xmin chosen by the smallest KS distance (see the module)."""
    return fit_exponential_batch([evals], threshold=threshold, threads=1)[0]


def fit_exponential_batch(
    spectra: Sequence[Any], *, threshold: float = DEFAULT_THRESHOLD, threads: int | None = None
) -> list[ExponentialFit]:
    """fit_exponential() of many spectra, in parallel (compiled; each spectrum is fitted by one
    thread, so results do not depend on ``threads``). The KS scan skips a candidate as soon as
    one deviation reaches the best distance so far, which leaves the argmin unchanged."""
    from .._core_loader import core

    nan = math.nan
    prepared = [_fitted(evals, -math.inf) for evals in spectra]  # sorted, checked
    raw = core.fit_exponential_batch(prepared, float(threshold),
                                     _threads.resolve_threads(threads))  # fmt: skip
    fits = []
    for x, (lam, xmin, d, n, index, num_fit) in zip(prepared, raw, strict=True):
        if index < 0:
            reason = (f"only {num_fit} eigenvalue(s) above the threshold {threshold:g}"
                      if num_fit < 3 else "every candidate tail is constant")  # fmt: skip
            fits.append(ExponentialFit(nan, nan, nan, nan, nan, int(num_fit), -1, "failed", reason))
            continue
        tail = x[x > threshold][index:]
        spread = float(np.sum(tail - xmin))
        loglik = n * math.log(lam) - lam * spread
        fits.append(ExponentialFit(lam, xmin, d, loglik, lam / math.sqrt(n), int(n), int(index),
                                   "success"))  # fmt: skip
    return fits


@dataclass(frozen=True)
class LognormalFit:
    """Lognormal truncated at ``xmin``: ``mu``, ``sigma`` of ln x, KS distance ``D``,
    log-likelihood ``loglik``, ``n`` tail values; ``status`` "success" or "failed"."""

    mu: float
    sigma: float
    xmin: float
    D: float
    loglik: float
    n: int
    status: str
    reason: str = ""


def truncated_lognormal_logpdf(
    logx: np.ndarray, log_xmin: float, mu: float, s: float
) -> np.ndarray:
    """ln p(x) at ``logx`` = ln x of the lognormal (mu, s) truncated to x >= e**log_xmin."""
    import scipy.special

    z = (logx - mu) / s
    log_survival = scipy.special.log_ndtr(-(log_xmin - mu) / s)
    return -0.5 * z * z - 0.5 * math.log(2 * math.pi) - math.log(s) - logx - log_survival


def lognormal_logpdf(x: np.ndarray, xmin: float) -> np.ndarray:
    """ln p(x) of the lognormal truncated at xmin, (mu, s) fitted by maximum likelihood
    (:func:`fit_lognormal`)."""
    fit = fit_lognormal(x, xmin)
    return truncated_lognormal_logpdf(np.log(x), math.log(xmin), fit.mu, fit.sigma)


def fit_lognormal(evals: Any, xmin: float) -> LognormalFit:
    """The lognormal truncated at ``xmin`` fitted to ``evals >= xmin`` by maximum likelihood
    (Nelder-Mead on (mu, ln sigma)); D against its truncated CDF."""
    import scipy.optimize
    import scipy.special

    nan = math.nan
    x = np.sort(np.asarray(evals, dtype=np.float64).ravel())
    x = x[x >= xmin]
    n = len(x)
    if n < 3 or not (xmin > 0 and math.isfinite(xmin)) or x[0] == x[-1]:
        return LognormalFit(nan, nan, xmin, nan, nan, n, "failed",
                            "the tail needs at least 3 distinct values above xmin > 0")  # fmt: skip
    logx, log_xmin = np.log(x), math.log(xmin)

    def loglik(mu: float, s: float) -> float:
        return float(np.sum(truncated_lognormal_logpdf(logx, log_xmin, mu, s)))

    def negative(p: np.ndarray) -> float:
        value = -loglik(p[0], math.exp(p[1]))
        return value if math.isfinite(value) else 1e300

    start = np.array([float(np.mean(logx)), math.log(max(float(np.std(logx)), 1e-3))])
    best = scipy.optimize.minimize(negative, start, method="Nelder-Mead",
                                   options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 4000})  # fmt: skip
    mu, s = float(best.x[0]), math.exp(float(best.x[1]))
    lower = scipy.special.ndtr((log_xmin - mu) / s)
    with np.errstate(divide="ignore", invalid="ignore"):  # NaN when xmin is beyond the mass
        cdf = (scipy.special.ndtr((logx - mu) / s) - lower) / (1 - lower)
    D = float(np.max(np.abs(cdf - np.arange(n) / n)))
    return LognormalFit(mu, s, float(xmin), D, loglik(mu, s), n, "success")
