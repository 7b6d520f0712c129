"""The median-rule power-law fit (hts_fast.fits.fixed_xmin) against TempBalance's estimator
written out in NumPy, and its failure cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hts_fast.fits.fixed_xmin import fit_median_xmin


def tempbalance_median_fit(evals: np.ndarray, xmin_pos: int = 2) -> tuple[float, float, float]:
    """TempBalance's pl_fitting="median" with filter_zeros=False, step by step: (alpha, D,
    xmin). Infinite or NaN where TempBalance's is."""
    eigs = np.sort(np.asarray(evals, dtype=np.float64))
    i = int(len(eigs) / xmin_pos)
    xmin = eigs[i]
    n = float(len(eigs) - i)
    with np.errstate(divide="ignore", invalid="ignore"):
        alpha = 1 + n / np.sum(np.log(eigs[i:] / xmin))
        seq = np.arange(n)
        D = np.max(np.abs(1 - (eigs[i:] / xmin) ** (-alpha + 1) - seq / n))
    return float(alpha), float(D), float(xmin)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("size", [7, 64, 501])
@pytest.mark.parametrize("xmin_pos", [2, 3, 10])
def test_median_fit_equals_tempbalance_closed_form(seed, size, xmin_pos):
    rng = np.random.default_rng(seed)
    evals = rng.pareto(2.5, size) + 0.1
    fit = fit_median_xmin(evals, xmin_pos=xmin_pos)
    alpha, D, xmin = tempbalance_median_fit(evals, xmin_pos)
    assert fit.status == "success"
    assert fit.reason == ""
    assert fit.alpha == pytest.approx(alpha, rel=1e-13)
    assert pytest.approx(D, rel=1e-12) == fit.D
    assert fit.xmin == xmin
    assert fit.num_pl_spikes == size - size // xmin_pos
    assert fit.xmin_index == size // xmin_pos


def test_exact_alpha_of_a_constructed_tail():
    """Tail values xmin * exp(c j): sum of logs c n (n - 1) / 2, so alpha = 1 + 2 / (c (n-1))."""
    n, c = 40, 0.05
    tail = np.exp(c * np.arange(n))
    evals = np.concatenate([np.linspace(0.1, 0.9, n), tail])
    fit = fit_median_xmin(evals)
    assert fit.xmin == 1.0
    assert fit.alpha == pytest.approx(1 + 2 / (c * (n - 1)), rel=1e-13)


def test_flat_spectrum_fails_where_tempbalance_is_infinite():
    evals = np.full(100, 2.5)  # an orthogonal matrix times a constant
    assert math.isinf(tempbalance_median_fit(evals)[0])
    fit = fit_median_xmin(evals)
    assert fit.status == "failed"
    assert math.isnan(fit.alpha)
    assert "all equal xmin" in fit.reason


def test_rank_deficient_counts_the_median_above_the_zeros():
    """With more than half the eigenvalues 0 TempBalance's xmin is 0 and its alpha NaN; here
    the median is taken among the eigenvalues above 1e-5, as filter_zeros does."""
    rng = np.random.default_rng(3)
    positive = rng.pareto(2.0, 30) + 0.5
    evals = np.concatenate([np.zeros(70), positive])
    assert not math.isfinite(tempbalance_median_fit(evals)[0])
    fit = fit_median_xmin(evals)
    expected = tempbalance_median_fit(positive)
    assert fit.status == "success"
    assert "counted among the 30 eigenvalues" in fit.reason
    assert fit.alpha == pytest.approx(expected[0], rel=1e-13)
    assert fit.xmin == expected[2]
    # filter_zeros counts there always; a few zeros below the median change nothing otherwise
    assert fit_median_xmin(evals, filter_zeros=True).alpha == fit.alpha
    few = np.concatenate([np.zeros(3), positive])
    assert fit_median_xmin(few).alpha == pytest.approx(tempbalance_median_fit(few)[0], rel=1e-13)
    assert fit_median_xmin(few, filter_zeros=True).alpha == pytest.approx(expected[0], rel=1e-13)


def test_no_eigenvalue_above_the_threshold_fails():
    fit = fit_median_xmin(np.zeros(10))
    assert fit.status == "failed"
    assert "no eigenvalue above" in fit.reason


@pytest.mark.parametrize(
    ("evals", "kwargs", "message"),
    [
        ([], {}, "empty"),
        ([[1.0, 2.0]], {}, "1-D"),
        ([1.0, np.nan], {}, "NaN"),
        ([1.0, -2.0], {}, "negative"),
        ([1.0, 2.0], {"xmin_pos": 1}, "xmin_pos"),
        ([1.0, 2.0], {"xmin_pos": 1.5}, "xmin_pos"),
    ],
)
def test_bad_input(evals, kwargs, message):
    with pytest.raises(ValueError, match=message):
        fit_median_xmin(evals, **kwargs)
