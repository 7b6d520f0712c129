"""Is a power law the right model for an ESD tail? Likelihood-ratio tests at the fitted xmin.

At the power-law fit's xmin, the tail x >= xmin (n values) is also fitted by maximum
likelihood with three alternatives, each normalised on [xmin, inf):

* exponential: p(x) = lam exp(-lam (x - xmin)), lam = 1 / (mean(x) - xmin) (closed form);
* lognormal: p(x) = phi((ln x - mu) / s) / (x s S), S = P(X >= xmin) for the untruncated
  lognormal; (mu, s) by numerical maximisation (scipy, from the moments of ln x);
* truncated power law: p(x) ~ x^-alpha exp(-Lambda x) (hts_fast.fits.truncated, exact MLE).

For each pair (power law, alternative) R = sum_i (l_PL(x_i) - l_alt(x_i)) of the pointwise
log-likelihoods: R > 0 favours the power law. Non-nested alternatives (exponential,
lognormal) use Vuong's test: the reported ratio is normalised, R / sqrt(n var), and
p = erfc(|R| / sqrt(2 n var)) says whether its sign is significant. The truncated power law
contains the power law (Lambda = 0), so that comparison is the nested likelihood-ratio test:
the raw R (<= 0 up to rounding) and p = P(chi2_1 > 2|R|). These are the conventions of
Clauset, Shalizi & Newman (2009) and of the powerlaw package's ``distribution_compare``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.special

from .alternatives import lognormal_logpdf
from .truncated import fit_truncated_powerlaw_at

COLUMNS = ["pl_exp_R", "pl_exp_p", "pl_lognormal_R", "pl_lognormal_p", "pl_tpl_R", "pl_tpl_p"]


@dataclass(frozen=True)
class TailComparison:
    """Power law against the exponential, lognormal and truncated power law on one tail
    (see the module docstring for the meaning of each R and p)."""

    pl_exp_R: float
    pl_exp_p: float
    pl_lognormal_R: float
    pl_lognormal_p: float
    pl_tpl_R: float
    pl_tpl_p: float
    n: int

    def columns(self) -> dict[str, float]:
        return {c: getattr(self, c) for c in COLUMNS}

    @classmethod
    def unavailable(cls, n: int = 0) -> TailComparison:
        nan = math.nan
        return cls(nan, nan, nan, nan, nan, nan, n)


def power_law_logpdf(x: np.ndarray, xmin: float, alpha: float) -> np.ndarray:
    """ln p(x) of the power law (alpha - 1)/xmin (x/xmin)^-alpha on x >= xmin."""
    return math.log((alpha - 1) / xmin) - alpha * np.log(x / xmin)


def exponential_logpdf(x: np.ndarray, xmin: float) -> np.ndarray:
    """ln p(x) of the exponential tail fitted by maximum likelihood (closed form)."""
    lam = 1.0 / (float(np.mean(x)) - xmin)
    return math.log(lam) - lam * (x - xmin)


def _vuong(l_pl: np.ndarray, l_alt: np.ndarray) -> tuple[float, float]:
    """Normalised ratio R / sqrt(n var) and its two-sided p-value."""
    diff = l_pl - l_alt
    n = len(diff)
    total = float(np.sum(diff))
    variance = float(np.mean((diff - diff.mean()) ** 2))
    if variance <= 0:
        return math.nan, math.nan
    p = float(scipy.special.erfc(abs(total) / math.sqrt(2 * n * variance)))
    return total / math.sqrt(n * variance), p


def compare_tail(evals: Any, xmin: float, alpha: float) -> TailComparison:
    """Compare the power law (``alpha``, ``xmin``) with its alternatives on ``evals >= xmin``."""
    x = np.sort(np.asarray(evals, dtype=np.float64))
    x = x[x >= xmin]
    n = len(x)
    if n < 3 or not (math.isfinite(alpha) and alpha > 1 and xmin > 0) or x[0] == x[-1]:
        return TailComparison.unavailable(n)
    l_pl = power_law_logpdf(x, xmin, alpha)
    exp_r, exp_p = _vuong(l_pl, exponential_logpdf(x, xmin))
    logn_r, logn_p = _vuong(l_pl, lognormal_logpdf(x, xmin))
    tpl = fit_truncated_powerlaw_at(x, xmin)
    if tpl.status in ("converged", "power_law", "alpha_bound", "lambda_bound"):
        nested_r = float(np.sum(l_pl)) - tpl.loglik
        nested_p = float(scipy.special.chdtrc(1, abs(2 * nested_r)))  # chi2(1) survival
    else:
        nested_r = nested_p = math.nan
    return TailComparison(exp_r, exp_p, logn_r, logn_p, nested_r, nested_p, n)
