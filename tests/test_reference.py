"""The NumPy oracle itself, checked against closed forms, SciPy and the powerlaw package."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from hts_fast import _reference as ref

from .conftest import pareto_sample


def test_esd_of_matrix_with_known_singular_values():
    rng = np.random.default_rng(3)
    u, _ = np.linalg.qr(rng.standard_normal((60, 40)))
    v, _ = np.linalg.qr(rng.standard_normal((40, 40)))
    s = np.geomspace(1e-3, 50.0, 40)
    w = u @ np.diag(s) @ v.T
    np.testing.assert_allclose(ref.esd(w), np.sort(s**2), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ref.esd(w, scale=0.5), np.sort(s**2) / 4, rtol=1e-10, atol=1e-12)


def test_alpha_and_ks_distance_closed_form():
    # x = 1, e, e^2 with xmin = 1: S = 0 + 1 + 2 = 3, alpha = 1 + 3/3 = 2, and
    # F(x) = 1 - 1/x, so D = max(0, 1 - 1/e - 1/3, 1 - 1/e^2 - 2/3).
    x = np.exp([0.0, 1.0, 2.0])
    scan = ref.powerlaw_scan(x, threshold=0.0, small_n_cutoff=0)
    assert scan["alphas"][0] == pytest.approx(2.0, rel=1e-15)
    expected_d = max(1 - 1 / math.e - 1 / 3, 1 - math.exp(-2) - 2 / 3)
    assert scan["Ds"][0] == pytest.approx(expected_d, rel=1e-14)
    # second candidate: tail (e, e^2): S = 1, n = 2 -> alpha 3; D = |1 - e^-2 - 1/2|
    assert scan["alphas"][1] == pytest.approx(3.0, rel=1e-15)
    assert scan["Ds"][1] == pytest.approx(abs(1 - math.exp(-2) - 0.5), rel=1e-14)


def test_small_n_rule_bias_correction_and_min_tail():
    x = np.exp(np.linspace(0.0, 2.0, 10))
    scan = ref.powerlaw_scan(x, threshold=0.0)
    assert scan["method"] == "small_n"
    s0 = math.fsum(np.log(x / x[0]))
    assert scan["alphas"][0] == pytest.approx(1 + 9 / s0, rel=1e-15)
    # tails shorter than 8 (i >= 3) are skipped: alpha 0, D 1
    assert np.all(scan["alphas"][3:] == 0.0)
    assert np.all(scan["Ds"][3:] == 1.0)


@pytest.mark.parametrize(("alpha", "n", "seed"), [(1.7, 500, 0), (2.5, 2000, 1), (2.2, 800, 2)])
def test_alpha_and_D_match_powerlaw_package_at_fixed_xmin(powerlaw_module, alpha, n, seed):
    """powerlaw.Fit with a fixed xmin uses the same continuous MLE and KS distance.

    (powerlaw 2.0 bounds alpha to its default parameter range, about [1, 3], so only
    samples whose fitted alpha stays below 3 are compared.)
    """
    rng = np.random.default_rng(seed)
    x = np.sort(pareto_sample(rng, n, alpha) + rng.random(n) * 1e-9)  # tie-free
    scan = ref.powerlaw_scan(x, threshold=0.0)
    for i in (0, n // 10, n // 3, n // 2, n - 50):
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # powerlaw 2.0 warns about its own deprecations
            fit = powerlaw_module.Fit(x, xmin=x[i], verbose=False)
            their_alpha, their_d = fit.power_law.alpha, fit.power_law.D  # computed lazily
        assert scan["alphas"][i] == pytest.approx(their_alpha, rel=1e-10)
        assert scan["Ds"][i] == pytest.approx(their_d, rel=1e-9)


def test_recovers_pareto_exponent():
    rng = np.random.default_rng(11)
    x = pareto_sample(rng, 20000, 3.0)
    fit = ref.fit_powerlaw(x, threshold=0.0)
    assert fit["alpha"] == pytest.approx(3.0, abs=4 * fit["sigma"] + 0.02)
