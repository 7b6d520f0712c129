"""Exponential and lognormal tail fits (hts_fast.fits.alternatives) against scipy and brute
force."""

from __future__ import annotations

import math

import hts_fast
import numpy as np
import pytest
import scipy.stats
from hts_fast.fits.alternatives import fit_exponential, fit_lognormal


def _brute_exponential(x: np.ndarray) -> tuple[float, float, float]:
    """(xmin, Lambda, D) by trying every candidate one at a time."""
    x = np.sort(x)
    best = (math.inf, math.nan, math.nan)
    for i in range(len(x) - 1):
        tail = x[i:]
        spread = float(np.sum(tail - x[i]))
        if spread <= 0:
            continue
        lam = len(tail) / spread
        cdf = 1 - np.exp(-lam * (tail - x[i]))
        d = float(np.max(np.abs(cdf - np.arange(len(tail)) / len(tail))))
        if d < best[0]:
            best = (d, x[i], lam)
    return best[1], best[2], best[0]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_exponential_equals_the_brute_force_scan(seed):
    rng = np.random.default_rng(seed)
    x = np.concatenate([rng.uniform(0.1, 1.0, 150), 1.0 + rng.exponential(0.5, 250)])
    fit = fit_exponential(x)
    xmin, lam, d = _brute_exponential(x)
    assert fit.xmin == xmin
    assert fit.Lambda == pytest.approx(lam, rel=1e-12)
    assert pytest.approx(d, rel=1e-12) == fit.D
    tail = np.sort(x)[fit.xmin_index :]
    expected = np.sum(scipy.stats.expon.logpdf(tail - fit.xmin, scale=1 / fit.Lambda))
    assert fit.loglik == pytest.approx(expected, rel=1e-12)
    assert fit.Lambda_se == pytest.approx(fit.Lambda / math.sqrt(fit.n))


def test_exponential_recovers_the_rate():
    hits = 0
    for k in range(100):
        x = 2.0 + np.random.default_rng(100 + k).exponential(1 / 3.0, 1000)
        fit = fit_exponential(x)
        hits += abs(fit.Lambda - 3.0) <= 3 * fit.Lambda_se * 2  # xmin search adds variance
    assert hits >= 95


def test_lognormal_matches_scipy_truncated_density():
    rng = np.random.default_rng(5)
    x = rng.lognormal(0.5, 0.8, 3000)
    xmin = float(np.quantile(x, 0.3))
    fit = fit_lognormal(x, xmin)
    tail = np.sort(x[x >= xmin])
    dist = scipy.stats.lognorm(s=fit.sigma, scale=math.exp(fit.mu))
    expected = np.sum(dist.logpdf(tail) - dist.logsf(xmin))
    assert fit.loglik == pytest.approx(expected, rel=1e-10)
    # the maximum: nearby parameters are worse
    for dmu, ds in ((1e-3, 0), (-1e-3, 0), (0, 1e-3), (0, -1e-3)):
        other = scipy.stats.lognorm(s=fit.sigma + ds, scale=math.exp(fit.mu + dmu))
        assert np.sum(other.logpdf(tail) - other.logsf(xmin)) < fit.loglik
    assert fit.mu == pytest.approx(0.5, abs=0.1)
    assert fit.sigma == pytest.approx(0.8, abs=0.1)


def test_failures_are_reported():
    assert fit_exponential([1.0, 2.0]).status == "failed"
    assert fit_lognormal([1.0, 1.0, 1.0, 1.0], 1.0).status == "failed"
    with pytest.raises(ValueError, match="NaN"):
        fit_exponential([1.0, np.nan, 2.0, 3.0])


@pytest.mark.parametrize("fit", ["EXP", "LOGNORMAL"])
def test_analyze_columns(fit):
    rng = np.random.default_rng(9)
    model = {"a.weight": rng.standard_t(3.0, (300, 100)), "b.weight": rng.normal(size=(80, 160))}
    table = hts_fast.analyze(model, fit=fit)
    assert (table["fit_method"] == fit).all()
    assert table["alpha"].isna().all()
    for (_, row), weight in zip(table.iterrows(), model.values(), strict=True):
        evals = hts_fast.esd(weight)
        if fit == "EXP":
            expected = fit_exponential(evals)
            assert row["Lambda"] == expected.Lambda
            assert row["loglik"] == expected.loglik
        else:
            expected = fit_lognormal(evals, hts_fast.fit_powerlaw(evals).xmin)
            assert row["lognormal_mu"] == expected.mu
            assert row["loglik"] == expected.loglik
        assert (row["xmin"], row["D"]) == (expected.xmin, expected.D)
    with pytest.raises(ValueError, match="ours"):
        hts_fast.analyze(model, fit=fit, compat="weightwatcher-0.7.7")
