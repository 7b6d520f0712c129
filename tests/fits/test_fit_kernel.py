"""The compiled power-law fit against the NumPy oracle (hts_fast._reference)."""

from __future__ import annotations

import hts_fast
import numpy as np
import pytest
from hts_fast import _reference as ref

from ..conftest import heavy_tailed_esd, pareto_sample


def _spectra() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(2024)
    cases = {
        "pareto_2.5_n1000": pareto_sample(rng, 1000, 2.5),
        "pareto_1.5_n300": pareto_sample(rng, 300, 1.5),
        "pareto_6_n200": pareto_sample(rng, 200, 6.0),
        "lognormal_n500": rng.lognormal(0.0, 2.0, 500),
        "uniform_n400": rng.random(400) + 1e-3,
        "esd_t3_300x200": heavy_tailed_esd(rng, 300, 200, 3.0),
        "esd_gauss_400x100": heavy_tailed_esd(rng, 400, 100, 1e6),
        "span_1e-12_1e12": np.geomspace(1e-12, 1e12, 700) * (1 + 1e-3 * rng.random(700)),
        "duplicates": np.repeat(pareto_sample(rng, 150, 2.2), rng.integers(1, 4, 150)),
        "rounded_ties": np.round(pareto_sample(rng, 600, 2.0), 1),
        "all_equal": np.full(50, 3.0),
        "two_levels": np.r_[np.full(30, 1.0), np.full(30, 2.0)],
        "below_threshold_mixed": np.r_[np.zeros(20), np.full(5, 1e-6), pareto_sample(rng, 80, 3)],
        "unsorted": rng.permutation(pareto_sample(rng, 250, 2.8)),
    }
    for n in range(2, 26):
        cases[f"n{n}"] = pareto_sample(rng, n, 2.5)
    return cases


SPECTRA = _spectra()


def _assert_same(fit: hts_fast.PowerLawFit, expected: dict, rtol: float = 1e-11) -> None:
    assert fit.status == "success"
    assert fit.method == expected["method"]
    assert fit.xmin == expected["xmin"]
    assert fit.xmax == expected["xmax"]
    assert fit.num_pl_spikes == expected["num_pl_spikes"]
    assert fit.num_fit == expected["num_fit"]
    np.testing.assert_allclose(fit.alpha, expected["alpha"], rtol=rtol)
    np.testing.assert_allclose(fit.D, expected["D"], rtol=rtol, atol=1e-14)
    np.testing.assert_allclose(fit.sigma, expected["sigma"], rtol=rtol, atol=1e-14)


@pytest.mark.parametrize("name", sorted(SPECTRA))
def test_fit_matches_reference(name):
    values = SPECTRA[name]
    _assert_same(hts_fast.fit_powerlaw(values), ref.fit_powerlaw(values))


@pytest.mark.parametrize("name", ["pareto_2.5_n1000", "duplicates", "n12", "n5"])
def test_standard_rule_when_small_n_disabled(name):
    values = SPECTRA[name]
    fit = hts_fast.fit_powerlaw(values, small_n=False)
    _assert_same(fit, ref.fit_powerlaw(values, small_n=False))
    assert fit.method == "standard"


@pytest.mark.parametrize("name", sorted(SPECTRA))
def test_curve_matches_reference_everywhere(name):
    values = SPECTRA[name]
    curve = hts_fast.powerlaw_curve(values)
    scan = ref.powerlaw_scan(values)
    np.testing.assert_array_equal(curve.xmins, scan["xmins"])
    finite = np.isfinite(scan["alphas"])
    np.testing.assert_array_equal(np.isfinite(curve.alphas), finite)
    np.testing.assert_allclose(curve.alphas[finite], scan["alphas"][finite], rtol=1e-11)
    np.testing.assert_allclose(curve.Ds, scan["Ds"], rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("name", sorted(SPECTRA))
def test_pruned_search_equals_full_scan_bit_for_bit(name):
    """The fast selection prunes candidates; it must pick the plain argmin exactly."""
    values = SPECTRA[name]
    fit = hts_fast.fit_powerlaw(values)
    best = hts_fast.powerlaw_curve(values).best
    assert fit == best


def test_large_spectrum_against_reference():
    rng = np.random.default_rng(5)
    values = pareto_sample(rng, 15000, 2.3) * rng.lognormal(0, 0.05, 15000)
    _assert_same(hts_fast.fit_powerlaw(values), ref.fit_powerlaw(values))


def test_n_100000_runs_with_linear_memory():
    rng = np.random.default_rng(6)
    values = pareto_sample(rng, 100_000, 2.7)
    fit = hts_fast.fit_powerlaw(values)
    assert fit.num_fit == 100_000
    assert fit.alpha == pytest.approx(2.7, abs=5 * fit.sigma + 0.05)


def test_threshold_excludes_small_values():
    values = np.r_[np.full(10, 1e-5), pareto_sample(np.random.default_rng(1), 100, 3.0)]
    assert hts_fast.fit_powerlaw(values).num_fit == 100  # 1e-5 itself is not > 1e-5
    assert hts_fast.fit_powerlaw(values, threshold=0.0).num_fit == 110


def test_float32_and_int_input_are_widened():
    values = np.arange(1, 60, dtype=np.int64) ** 2
    as_float = hts_fast.fit_powerlaw(values.astype(np.float64))
    assert hts_fast.fit_powerlaw(values) == as_float
    f32 = values.astype(np.float32)
    assert hts_fast.fit_powerlaw(f32) == hts_fast.fit_powerlaw(f32.astype(np.float64))
