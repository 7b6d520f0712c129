"""Truncated power-law MLE (csrc/cpu/tpl.cpp) and the incomplete gamma function under it."""

from __future__ import annotations

import contextlib
import io
import math
import warnings
from typing import Any

import numpy as np
import pytest
from hts_fast import _reference as ref
from hts_fast._core_loader import core
from hts_fast.fits.truncated import (
    TruncatedPowerLawFit,
    fit_truncated_powerlaw_at,
    fit_truncated_powerlaw_at_batch,
)

from ..conftest import _require, pareto_sample


def tpl_sample(
    rng: np.random.Generator, n: int, alpha: float, lam: float, xmin: float = 1.0
) -> np.ndarray:
    """n exact draws from p(x) ~ x^-alpha e^(-lam x) on x >= xmin (alpha >= 0), by rejection.

    alpha > 1: propose from the Pareto(alpha, xmin), accept with e^(-lam (x - xmin)).
    alpha <= 1: propose from xmin + Exponential(lam), accept with (x / xmin)^-alpha.
    Both acceptance probabilities are <= 1 and proportional to p / proposal.
    """
    out: list[np.ndarray] = []
    have = 0
    while have < n:
        m = 4 * (n - have) + 64
        if alpha > 1.0:
            x = pareto_sample(rng, m, alpha, xmin)
            accept = np.exp(-lam * (x - xmin))
        else:
            x = xmin + rng.exponential(1.0 / lam, m)
            accept = (x / xmin) ** (-alpha)
        x = x[rng.random(m) < accept]
        out.append(x)
        have += len(x)
    return np.concatenate(out)[:n]


# ---------------------------------------------------------------- incomplete gamma function


def _gamma_grid() -> tuple[np.ndarray, np.ndarray]:
    orders = []
    for k in range(-30, 31):
        orders += [k, k + 1e-9, k - 1e-9]
    orders += [-29.7, -12.25, -3.5, -0.5, -1e-3, 1e-3, 0.5, 1.5, 2.75, 9.9, 17.3, 29.6]
    xs = np.geomspace(1e-8, 1e3, 12)
    s, x = np.meshgrid(np.array(orders), xs, indexing="ij")
    return s.ravel(), x.ravel()


def test_log_upper_gamma_matches_mpmath() -> None:
    mpmath = _require("mpmath")
    s, x = _gamma_grid()
    ours = core._log_upper_gamma(s, x)[0]
    with mpmath.workdps(60):  # mpmath's own series lose digits near negative integers
        expected = np.array(
            [
                float(mpmath.log(mpmath.gammainc(mpmath.mpf(a), mpmath.mpf(b))))
                for a, b in zip(s, x, strict=True)
            ]
        )
    # An error e in ln Γ is a relative error e in Γ.
    err = np.abs(ours - expected)
    worst = int(np.argmax(err))
    assert err[worst] <= 1e-12, (s[worst], x[worst], ours[worst], expected[worst])


def test_log_upper_gamma_derivatives_match_mpmath() -> None:
    mpmath = _require("mpmath")
    rng = np.random.default_rng(11)
    s = np.r_[rng.uniform(-30, 30, 12), [0.0, -1.0, -2.0 + 1e-9, 3.0]]
    x = np.r_[10.0 ** rng.uniform(-8, 3, 12), [1e-8, 0.5, 2.0, 1e3]]
    _, d_s, d2_s, d_x = core._log_upper_gamma(s, x)
    with mpmath.workdps(60):
        for k in range(len(s)):
            a, b = mpmath.mpf(s[k]), mpmath.mpf(x[k])

            def log_gamma(order: Any, at: Any = b) -> Any:
                return mpmath.log(mpmath.gammainc(order, at))

            want_1 = float(mpmath.diff(log_gamma, a))
            want_2 = float(mpmath.diff(log_gamma, a, 2))
            want_x = float(-(b ** (a - 1)) * mpmath.exp(-b) / mpmath.gammainc(a, b))
            assert d_s[k] == pytest.approx(want_1, rel=1e-12, abs=1e-12)
            assert d2_s[k] == pytest.approx(want_2, rel=1e-11)
            assert d_x[k] == pytest.approx(want_x, rel=1e-12)


def test_log_upper_gamma_special_values() -> None:
    s = np.array([1.0, 0.5, 3.0, 2.0, 0.0])
    x = np.array([2.0, 1e-300, 1e-300, 1e-300, 1.0])
    ours = core._log_upper_gamma(s, x)[0]
    # Γ(1, x) = e^-x; Γ(s, 0+) = Γ(s) for s > 0; Γ(0, 1) = E1(1)
    expected = [-2.0, math.lgamma(0.5), math.log(2.0), 0.0, math.log(0.21938393439552029)]
    np.testing.assert_allclose(ours, expected, rtol=0, atol=2e-15)
    bad = core._log_upper_gamma(np.array([1.0, 1.0, math.nan]), np.array([0.0, -1.0, 1.0]))[0]
    assert np.all(np.isnan(bad))


# ---------------------------------------------------------------- maximum likelihood


SETTINGS = [  # alpha, lam, n (xmin = 1)
    (1.5, 0.1, 2000),
    (2.5, 0.05, 3000),
    (4.0, 0.5, 2000),
    (0.8, 0.5, 2000),
    (6.0, 5.0, 2000),
    # steep tail: x^-alpha and e^(-lam x) look alike over its short range, so the errors are
    # large and strongly correlated, but the maximum is still found
    (30.0, 30.0, 5000),
]


def _assert_local_maximum(x: np.ndarray, fit: TruncatedPowerLawFit) -> None:
    """The fit is a maximum of the reference log-likelihood, with a vanishing gradient."""
    ll = ref.tpl_loglik(x, fit.xmin, fit.alpha, fit.Lambda)
    assert fit.loglik == pytest.approx(ll, rel=1e-9)
    for scale_a, scale_l in [(1, 0), (0, 1), (1, 1), (1, -1)]:
        da, dl = 0.05 * scale_a * fit.alpha_se, 0.05 * scale_l * fit.Lambda_se
        for sign in (1, -1):
            assert ref.tpl_loglik(x, fit.xmin, fit.alpha + sign * da, fit.Lambda + sign * dl) < ll

    # Central differences with Richardson extrapolation (the h^2 error term cancels), in
    # units of the standard errors: a point off by e standard errors has a gradient of
    # about e there.
    def slope(direction: tuple[float, float], h: float) -> float:
        def at(t: float) -> float:
            return ref.tpl_loglik(
                x, fit.xmin, fit.alpha + t * direction[0], fit.Lambda + t * direction[1]
            )

        return (4 * (at(h / 2) - at(-h / 2)) / h - (at(h) - at(-h)) / (2 * h)) / 3

    assert abs(slope((fit.alpha_se, 0.0), 1e-3)) < 1e-4
    assert abs(slope((0.0, fit.Lambda_se), 1e-3)) < 1e-4


@pytest.mark.parametrize(("alpha", "lam", "n"), SETTINGS)
def test_mle_recovers_parameters(alpha: float, lam: float, n: int) -> None:
    rng = np.random.default_rng(int(1000 * alpha + n))
    x = tpl_sample(rng, n, alpha, lam)
    fit = fit_truncated_powerlaw_at(x, 1.0)
    assert fit.status == "converged", fit.reason
    assert fit.reason == ""
    assert fit.n == n
    assert abs(fit.alpha - alpha) < 3 * fit.alpha_se
    assert abs(fit.Lambda - lam) < 3 * fit.Lambda_se
    assert 0 < fit.D < 0.1
    _assert_local_maximum(x, fit)


def test_mle_other_xmin_and_unsorted_input() -> None:
    """A tail that starts above the smallest values; scaling x scales Lambda by 1/scale."""
    rng = np.random.default_rng(5)
    tail = tpl_sample(rng, 1500, 2.2, 0.3, xmin=2.0)
    x = rng.permutation(np.r_[rng.uniform(0.0, 2.0, 500), tail])
    fit = fit_truncated_powerlaw_at(x, 2.0)
    assert fit.status == "converged"
    assert fit.n == 1500
    _assert_local_maximum(x, fit)
    scaled = fit_truncated_powerlaw_at(1e-3 * x, 2e-3)
    assert scaled.alpha == pytest.approx(fit.alpha, rel=1e-9)
    assert scaled.Lambda == pytest.approx(1e3 * fit.Lambda, rel=1e-9)
    assert scaled.Lambda_se == pytest.approx(1e3 * fit.Lambda_se, rel=1e-7)
    assert abs(scaled.D - fit.D) <= 1e-9
    # log-likelihoods of densities differ by n log(scale) between the two unit systems
    assert scaled.loglik == pytest.approx(fit.loglik - fit.n * math.log(1e-3), rel=1e-11)


def test_standard_errors_cover_the_truth() -> None:
    """Estimates within 3 standard errors in at least 95 of 100 seeded trials."""
    alpha, lam, n = 1.5, 0.1, 1000
    rng = np.random.default_rng(2025)
    samples = [tpl_sample(rng, n, alpha, lam) for _ in range(100)]
    fits = fit_truncated_powerlaw_at_batch([(x, 1.0) for x in samples])
    assert all(f.status == "converged" for f in fits)
    covered_alpha = sum(abs(f.alpha - alpha) < 3 * f.alpha_se for f in fits)
    covered_lam = sum(abs(f.Lambda - lam) < 3 * f.Lambda_se for f in fits)
    assert covered_alpha >= 95
    assert covered_lam >= 95


def test_ks_distance_matches_mpmath_cdf() -> None:
    mpmath = _require("mpmath")
    rng = np.random.default_rng(8)
    x = np.sort(tpl_sample(rng, 150, 1.7, 0.2, xmin=0.5))
    fit = fit_truncated_powerlaw_at(x, 0.5)
    s, lam = 1.0 - fit.alpha, fit.Lambda
    with mpmath.workdps(40):
        top = mpmath.gammainc(s, lam * 0.5)
        cdf = np.array([float(1 - mpmath.gammainc(s, lam * v) / top) for v in x])
    expected = np.max(np.abs(cdf - np.arange(len(x)) / len(x)))
    assert abs(fit.D - expected) <= 1e-12


def _powerlaw_tpl(powerlaw: Any, x: np.ndarray, xmin: float) -> tuple[float, float] | None:
    """powerlaw 2.0's TPL fit at a fixed xmin: (alpha, Lambda), or None where it failed."""
    try:
        with (
            warnings.catch_warnings(),
            contextlib.redirect_stdout(io.StringIO()),
            np.errstate(all="ignore"),
        ):
            warnings.simplefilter("ignore")
            dist = powerlaw.Fit(x, xmin=xmin).truncated_power_law
            return float(dist.alpha), float(dist.Lambda)
    except Exception:  # noqa: BLE001 - a fit powerlaw cannot do is not compared
        return None


def test_loglik_at_least_powerlaw_package() -> None:
    """Our maximum is never below powerlaw 2.0's (alpha bounded to [0, 3] there).

    Both parameter sets are scored with the reference log-likelihood.
    """
    powerlaw = _require("powerlaw")
    rng = np.random.default_rng(99)
    cases = [
        (tpl_sample(rng, 400, 1.5, 0.1), 1.0),
        (tpl_sample(rng, 400, 2.5, 0.05), 1.0),
        (tpl_sample(rng, 400, 4.0, 0.5), 1.0),
        (tpl_sample(rng, 400, 0.8, 0.5), 1.0),
        (pareto_sample(rng, 400, 2.2), 1.0),
        (1.0 + rng.exponential(2.0, 400), 1.0),
        (rng.lognormal(0.0, 1.0, 600), 1.5),
    ]
    compared = 0
    for x, xmin in cases:
        fit = fit_truncated_powerlaw_at(x, xmin)
        assert fit.status in ("converged", "power_law")
        theirs = _powerlaw_tpl(powerlaw, x, xmin)
        if theirs is None:
            continue
        ours_ll = ref.tpl_loglik(x, xmin, fit.alpha, fit.Lambda)
        theirs_ll = ref.tpl_loglik(x, xmin, *theirs)
        assert ours_ll >= theirs_ll - 1e-9 * max(1.0, abs(theirs_ll)), (theirs, fit)
        compared += 1
    assert compared >= 5


def test_pure_power_law_hits_the_lambda_zero_boundary() -> None:
    """lam = 0 exactly when alpha_PL > 2 and the PL mean <= the sample mean (documented)."""
    rng = np.random.default_rng(4)
    statuses = []
    for _ in range(12):
        x = pareto_sample(rng, 800, 3.0, xmin=0.7)
        fit = fit_truncated_powerlaw_at(x, 0.7)
        y = x / 0.7
        alpha_pl = 1.0 + len(y) / math.fsum(np.log(y))
        boundary = alpha_pl > 2 and (alpha_pl - 1) / (alpha_pl - 2) <= np.mean(y)
        statuses.append(fit.status)
        if boundary:
            assert fit.status == "power_law"
            assert fit.Lambda == 0.0
            assert fit.alpha == pytest.approx(alpha_pl, rel=1e-12)
            assert math.isnan(fit.Lambda_se)
            assert fit.alpha_se == pytest.approx((alpha_pl - 1) / math.sqrt(len(y)))
            assert fit.loglik == pytest.approx(ref.tpl_loglik(x, 0.7, alpha_pl, 0.0), rel=1e-12)
            assert "Lambda = 0" in fit.reason
            # any truncation lowers the likelihood
            assert ref.tpl_loglik(x, 0.7, alpha_pl, 1e-3) < fit.loglik
        else:
            assert fit.status == "converged"
            assert fit.Lambda < 3 * fit.Lambda_se  # consistent with no truncation
    assert 1 <= statuses.count("power_law") < len(statuses)  # both branches are exercised


def test_exponential_data_gives_alpha_near_zero() -> None:
    rng = np.random.default_rng(12)
    x = 5.0 + rng.exponential(0.5, 3000)
    fit = fit_truncated_powerlaw_at(x, 5.0)
    assert fit.status == "converged"
    assert abs(fit.alpha) < 3 * fit.alpha_se
    assert abs(fit.Lambda - 2.0) < 3 * fit.Lambda_se
    _assert_local_maximum(x, fit)


def test_alpha_bound_for_a_point_mass_away_from_xmin() -> None:
    """Values all equal but above xmin have no maximum: alpha stops on the search box."""
    fit = fit_truncated_powerlaw_at(np.r_[np.full(10, 3.0), 3.0 + 1e-9], 1.0)
    assert fit.status in ("alpha_bound", "lambda_bound")
    assert fit.reason


# ---------------------------------------------------------------- batch, determinism, input


def _fields(fit: TruncatedPowerLawFit) -> np.ndarray:
    numbers = [fit.alpha, fit.Lambda, fit.xmin, fit.loglik, fit.D, fit.alpha_se, fit.Lambda_se]
    return np.array([*numbers, fit.n, fit.iterations])


def test_batch_is_deterministic_across_thread_counts() -> None:
    rng = np.random.default_rng(21)
    pairs: list[tuple[Any, float]] = []
    for k in range(23):
        x = tpl_sample(rng, 200 + 37 * k, 0.8 + 0.3 * k, 0.05 + 0.02 * k)
        pairs.append((x, float(np.quantile(x, 0.1 * (k % 4)))))
    pairs.append((np.array([1.0, math.nan]), 1.0))
    runs = [fit_truncated_powerlaw_at_batch(pairs, threads=t) for t in (1, 2, 3)]
    singles = [fit_truncated_powerlaw_at(x, xmin) for x, xmin in pairs]
    for k, single in enumerate(singles):
        for run in runs:
            assert run[k].status == single.status
            assert run[k].reason == single.reason
            np.testing.assert_array_equal(_fields(run[k]), _fields(single))
    assert runs[0][-1].status == "failed"


@pytest.mark.parametrize(
    ("values", "xmin", "match"),
    [
        (np.array([1.0, 2.0, math.nan, 3.0]), 1.0, "NaN or infinite"),
        (np.array([1.0, 2.0, math.inf]), 1.0, "NaN or infinite"),
        (np.array([1.0, 2.0, 3.0]), 2.5, "only 1 value"),
        (np.array([], dtype=float), 1.0, "only 0 value"),
        (np.array([1.0, 2.0, 3.0]), 0.0, "xmin must be"),
        (np.array([1.0, 2.0, 3.0]), -1.0, "xmin must be"),
        (np.array([1.0, 2.0, 3.0]), math.nan, "xmin must be"),
        (np.full(5, 2.0), 1.0, "all 5 values"),
    ],
)
def test_bad_input_gives_a_failed_result(values: np.ndarray, xmin: float, match: str) -> None:
    fit = fit_truncated_powerlaw_at(values, xmin)
    assert fit.status == "failed"
    assert match in fit.reason
    assert math.isnan(fit.alpha)
    assert math.isnan(fit.loglik)
    (batched,) = fit_truncated_powerlaw_at_batch([(values, xmin)])
    assert batched.status == "failed"
    assert batched.reason == fit.reason


def test_wrong_shapes_and_types() -> None:
    with pytest.raises(ValueError, match="1-D"):
        fit_truncated_powerlaw_at(np.ones((3, 3)), 1.0)
    with pytest.raises(TypeError, match="complex"):
        fit_truncated_powerlaw_at(np.ones(4, dtype=complex), 1.0)
    with pytest.raises(TypeError, match="xmin"):
        fit_truncated_powerlaw_at(np.ones(4), "1.0")  # type: ignore[arg-type]
    results = fit_truncated_powerlaw_at_batch([(np.ones((2, 2)), 1.0), (np.ones(3), None)])  # type: ignore[list-item]
    assert [r.status for r in results] == ["failed", "failed"]
    assert "1-D" in results[0].reason
    assert "xmin" in results[1].reason
