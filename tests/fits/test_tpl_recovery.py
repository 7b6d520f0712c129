"""Recovery study: truncated power laws with known parameters, drawn exactly (rejection from a
Pareto proposal with exponential acceptance, tests/fits/test_tpl.py::tpl_sample), seeded."""

from __future__ import annotations

import numpy as np
import pytest
from hts_fast.fits.tpl_search import fit_truncated_powerlaw_batch
from hts_fast.fits.truncated import fit_truncated_powerlaw_at_batch

from .test_tpl import tpl_sample

TRIALS = 200


def test_sampler_matches_the_density() -> None:
    """The sampler against the TPL's CDF (scipy quadrature of x^-alpha e^(-lam x)): KS test."""
    stats = pytest.importorskip("scipy.stats")
    integrate = pytest.importorskip("scipy.integrate")
    alpha, lam, xmin = 2.2, 0.3, 1.0

    def density(t: float) -> float:
        return t ** (-alpha) * np.exp(-lam * t)

    total = integrate.quad(density, xmin, np.inf)[0]

    def cdf(values: np.ndarray) -> np.ndarray:
        return np.array([integrate.quad(density, xmin, v)[0] / total for v in values])

    x = tpl_sample(np.random.default_rng(0), 400, alpha, lam, xmin)
    assert stats.kstest(x, cdf).pvalue > 0.01


@pytest.mark.parametrize(("alpha", "lam", "n"), [(2.5, 0.05, 500), (1.3, 0.5, 400)])
def test_fixed_xmin_estimates_cover_the_truth(alpha: float, lam: float, n: int) -> None:
    """alpha and Lambda within 3 standard errors in >= 95% of 200 seeded trials."""
    rng = np.random.default_rng(int(100 * alpha + n))
    samples = [tpl_sample(rng, n, alpha, lam) for _ in range(TRIALS)]
    fits = fit_truncated_powerlaw_at_batch([(x, 1.0) for x in samples], threads=2)
    converged = [f for f in fits if f.status == "converged"]
    assert len(converged) >= 0.95 * TRIALS  # the rest hit Lambda = 0 (pure power law)
    alpha_in = sum(abs(f.alpha - alpha) < 3 * f.alpha_se for f in converged)
    lam_in = sum(abs(f.Lambda - lam) < 3 * f.Lambda_se for f in converged)
    assert alpha_in >= 0.95 * len(converged)
    assert lam_in >= 0.95 * len(converged)


def test_xmin_search_recovers_alpha_above_a_different_body() -> None:
    """Exactly TPL(2.5, 0.05) above xmin = 1, a uniform body on [0.1, 1) below it (30% of the
    values). The search over every eigenvalue must not end in the body (xmin >= 0.95), alpha
    is within 4 standard errors (of the chosen fit) of the truth in all 20 trials, and the
    median |alpha error| is below 0.1. (The KS choice sometimes lands well inside the tail,
    where fewer values give a larger standard error: one trial here has xmin = 2.1, n = 376,
    alpha = 1.85 +- 0.30.)"""
    rng = np.random.default_rng(77)
    alpha, lam, xmin = 2.5, 0.05, 1.0
    samples = [np.r_[rng.uniform(0.1, xmin, 600), tpl_sample(rng, 1400, alpha, lam, xmin)]
               for _ in range(20)]  # fmt: skip
    searches = fit_truncated_powerlaw_batch(samples, threads=2)
    fits = [s.fit for s in searches]
    assert all(f.status == "converged" and f.xmin >= 0.95 * xmin for f in fits)
    assert all(abs(f.alpha - alpha) < 4 * f.alpha_se for f in fits)
    assert np.median([abs(f.alpha - alpha) for f in fits]) < 0.1
