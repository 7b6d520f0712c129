"""Tail fits other than the power law, for model comparison: exponential and lognormal.

* :func:`fit_exponential`: p(x) = Lambda exp(-Lambda (x - xmin)) on x >= xmin. For each xmin
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
from dataclasses import dataclass
from typing import Any

import numpy as np

from .fits import DEFAULT_THRESHOLD

#: Candidates are scanned in blocks of at most this many (candidate, point) pairs.
_BLOCK_PAIRS = 4_000_000


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
    nan = math.nan
    x = _fitted(evals, threshold)
    n_all = len(x)
    if n_all < 3:
        return ExponentialFit(nan, nan, nan, nan, nan, n_all, -1, "failed",
                              f"only {n_all} eigenvalue(s) above the threshold {threshold:g}")  # fmt: skip
    # suffix sums of x: sum_{j >= i} x_j, so sum(x - x_i) over the tail is S_i - m_i x_i
    suffix = np.cumsum(x[::-1])[::-1]
    counts = n_all - np.arange(n_all)
    spread = suffix - counts * x
    best_d, best_i = math.inf, -1
    rank = np.arange(n_all)
    block = max(1, _BLOCK_PAIRS // n_all)
    for start in range(0, n_all - 1, block):
        idx = np.arange(start, min(start + block, n_all - 1))
        lam = np.where(spread[idx] > 0, counts[idx] / np.where(spread[idx] > 0, spread[idx], 1), 0)
        # points j >= i of candidate i: F = 1 - exp(-lam (x_j - x_i)), empirical (j - i)/m
        dx = np.maximum(x[None, :] - x[idx, None], 0.0)  # points below the candidate: masked
        fitted_cdf = -np.expm1(-lam[:, None] * dx)
        empirical = (rank[None, :] - idx[:, None]) / counts[idx, None]
        deviation = np.where(rank[None, :] >= idx[:, None], np.abs(fitted_cdf - empirical), 0.0)
        d = np.where(lam > 0, deviation.max(axis=1), 1.0)
        k = int(np.argmin(d))
        if d[k] < best_d:
            best_d, best_i = float(d[k]), int(idx[k])
    m = int(counts[best_i])
    if not spread[best_i] > 0:
        return ExponentialFit(nan, nan, nan, nan, nan, m, -1, "failed",
                              "every candidate tail is constant")  # fmt: skip
    lam = m / float(spread[best_i])
    loglik = m * math.log(lam) - lam * float(spread[best_i])
    return ExponentialFit(lam, float(x[best_i]), best_d, loglik, lam / math.sqrt(m), m, best_i,
                          "success")  # fmt: skip


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
        z = (logx - mu) / s
        survival = scipy.special.log_ndtr(-(log_xmin - mu) / s)
        return float(np.sum(-0.5 * z * z - 0.5 * math.log(2 * math.pi) - math.log(s) - logx
                            - survival))  # fmt: skip

    def negative(p: np.ndarray) -> float:
        value = -loglik(p[0], math.exp(p[1]))
        return value if math.isfinite(value) else 1e300

    start = np.array([float(np.mean(logx)), math.log(max(float(np.std(logx)), 1e-3))])
    best = scipy.optimize.minimize(negative, start, method="Nelder-Mead",
                                   options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 4000})  # fmt: skip
    mu, s = float(best.x[0]), math.exp(float(best.x[1]))
    lower = scipy.special.ndtr((log_xmin - mu) / s)
    cdf = (scipy.special.ndtr((logx - mu) / s) - lower) / (1 - lower)
    D = float(np.max(np.abs(cdf - np.arange(n) / n)))
    return LognormalFit(mu, s, float(xmin), D, loglik(mu, s), n, "success")
