"""The lower bound of the TPL exponent (alpha_min; analyze()'s tpl_alpha_min, 1 by default):
the constrained maximum against scipy's bounded optimiser on the same likelihood, the closed
form at alpha = 1, the search with it, and the options that carry it."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.optimize
import scipy.special
from hts_fast import fit_curves
from hts_fast.fits.tpl_search import _search_by_loop, fit_truncated_powerlaw
from hts_fast.fits.truncated import TPL_ALPHA_MIN, fit_truncated_powerlaw_at

from ..conftest import _require, heavy_tailed_esd
from .test_tpl import tpl_sample
from .test_tpl_search import _assert_same_search, _inputs


def _scipy_bounded_fit(x: np.ndarray, xmin: float, alpha_min: float) -> tuple[float, float, float]:
    """(alpha, Lambda, loglik) maximising the TPL log-likelihood over alpha >= alpha_min with
    scipy's L-BFGS-B, the normaliser Lambda**(alpha-1) Gamma(1-alpha, Lambda xmin) by mpmath."""
    mpmath = _require("mpmath")
    tail = x[x >= xmin]
    n, sum_log, sum_x = len(tail), float(np.sum(np.log(tail))), float(np.sum(tail))

    def loglik(alpha: float, log_lam: float) -> float:
        lam = math.exp(log_lam)
        with mpmath.workdps(30):
            log_z = (alpha - 1) * log_lam + float(mpmath.log(mpmath.gammainc(1 - alpha,
                                                                             lam * xmin)))  # fmt: skip
        return -alpha * sum_log - lam * sum_x - n * log_z

    best = None
    for alpha0, lam0 in ((alpha_min + 0.5, 1.0 / np.mean(tail)), (alpha_min, 0.1 / xmin)):
        result = scipy.optimize.minimize(
            lambda p: -loglik(p[0], p[1]) / n, [alpha0, math.log(lam0)], method="L-BFGS-B",
            bounds=[(alpha_min, None), (None, None)],
            options={"ftol": 1e-15, "gtol": 1e-11, "maxiter": 2000},
        )  # fmt: skip
        if best is None or result.fun < best.fun:
            best = result
    assert best is not None
    return float(best.x[0]), math.exp(best.x[1]), -float(best.fun) * n


@pytest.mark.parametrize(
    ("alpha", "lam", "alpha_min"),
    [(0.3, 0.5, 1.0), (-0.5, 1.0, 1.0), (0.0, 0.2, 0.5), (1.4, 0.02, 1.5)],
)
def test_a_maximum_below_the_bound_ends_on_it_as_scipy_finds(alpha, lam, alpha_min):
    rng = np.random.default_rng(21)
    x = tpl_sample(rng, 800, max(alpha, 0.0), lam, 1.0)
    if alpha < 0:  # a density that rises before the cut-off: x^0.5 e^-x, by rejection
        y = 1.0 + rng.exponential(1.0, 20_000)
        x = y[rng.random(len(y)) < (y / y.max()) ** -alpha][:800]
    free = fit_truncated_powerlaw_at(x, 1.0)
    assert free.status == "converged"
    assert free.alpha < alpha_min  # the unconstrained maximum lies below the bound
    bounded = fit_truncated_powerlaw_at(x, 1.0, alpha_min=alpha_min)
    assert bounded.status == "alpha_bound"
    assert bounded.alpha == alpha_min  # exactly on the bound
    assert f"alpha < {alpha_min:g}" in bounded.reason
    s_alpha, s_lam, s_loglik = _scipy_bounded_fit(x, 1.0, alpha_min)
    assert s_alpha == pytest.approx(alpha_min, abs=1e-7)  # scipy ends on the bound too
    assert bounded.Lambda == pytest.approx(s_lam, rel=1e-5)
    assert bounded.loglik == pytest.approx(s_loglik, rel=1e-10, abs=1e-8)
    assert bounded.loglik >= s_loglik - 1e-8  # never below scipy's maximum
    assert bounded.loglik < free.loglik  # the bound costs likelihood


def test_at_alpha_one_the_rate_and_d_match_the_exponential_integral_closed_form():
    """At alpha = 1 the density is exp(-Lambda x) / (x E1(Lambda xmin)): the rate solves
    exp(-mu) / (mu E1(mu)) = mean(x / xmin) (mu = Lambda xmin) and F(x) = 1 -
    E1(Lambda x) / E1(Lambda xmin)."""
    rng = np.random.default_rng(5)
    x = np.sort(tpl_sample(rng, 600, 0.4, 0.8, 2.0))
    fit = fit_truncated_powerlaw_at(x, 2.0, alpha_min=1.0)
    assert (fit.status, fit.alpha) == ("alpha_bound", 1.0)
    y_mean = float(np.mean(x / 2.0))
    mu = scipy.optimize.brentq(lambda m: np.exp(-m) / (m * scipy.special.exp1(m)) - y_mean,
                               1e-9, 200.0, xtol=1e-15, rtol=1e-15)  # fmt: skip
    assert fit.Lambda == pytest.approx(mu / 2.0, rel=1e-10)
    cdf = 1.0 - scipy.special.exp1(fit.Lambda * x) / scipy.special.exp1(fit.Lambda * 2.0)
    expected_d = np.max(np.abs(cdf - np.arange(len(x)) / len(x)))
    assert pytest.approx(expected_d, abs=1e-12) == fit.D
    expected_loglik = float(np.sum(-np.log(x) - fit.Lambda * x)
                            - len(x) * np.log(scipy.special.exp1(mu)))  # fmt: skip
    assert fit.loglik == pytest.approx(expected_loglik, rel=1e-12)


def test_a_maximum_above_the_bound_is_the_unconstrained_one():
    rng = np.random.default_rng(2)
    x = tpl_sample(rng, 1000, 2.5, 0.05, 1.0)
    free = fit_truncated_powerlaw_at(x, 1.0)
    bounded = fit_truncated_powerlaw_at(x, 1.0, alpha_min=TPL_ALPHA_MIN)
    assert free.alpha > 2
    assert (bounded.status, free.status) == ("converged", "converged")
    for name in ("alpha", "Lambda", "loglik", "D", "alpha_se", "Lambda_se"):
        assert getattr(bounded, name) == pytest.approx(getattr(free, name), rel=1e-10)


@pytest.mark.parametrize("name", list(_inputs()))
def test_bounded_search_equals_the_python_loop(name: str) -> None:
    x = _inputs()[name]
    for variant in (None, "corrected"):
        fast = fit_truncated_powerlaw(x, variant=variant, alpha_min=TPL_ALPHA_MIN, threads=2)
        slow = _search_by_loop(x, variant=variant, alpha_min=TPL_ALPHA_MIN, threads=2)
        _assert_same_search(fast, slow)
        assert fast.alpha_min == slow.alpha_min == TPL_ALPHA_MIN
        if fast.fit.status != "failed":
            assert fast.fit.alpha >= TPL_ALPHA_MIN


def test_bounded_curve_respects_the_bound_and_the_search_takes_its_smallest_d():
    x = heavy_tailed_esd(np.random.default_rng(7), 400, 200, 3.0)
    curve = fit_curves(x, fit="TPL", alpha_min=1.0)
    fitted = curve[curve["status"] != "failed"]
    assert (fitted["alpha"] >= 1.0).all()
    on_bound = fitted["status"] == "alpha_bound"
    assert on_bound.any()  # near the ESD's bulk the unconstrained alpha is below 1
    assert (fitted.loc[on_bound, "alpha"] == 1.0).all()
    free = fit_curves(x, fit="TPL")
    assert (free.loc[on_bound[on_bound].index, "alpha"] < 1.0).all()
    valid = curve["status"].isin(["converged", "power_law", "alpha_bound"]).to_numpy()
    k = int(np.argmin(np.where(valid, curve["D"].to_numpy(), np.inf)))
    assert curve.attrs["selected"] == k
    search = fit_truncated_powerlaw(x, alpha_min=1.0)
    assert (search.fit.xmin, search.fit.D) == (curve["xmin"][k], curve["D"][k])


@pytest.mark.parametrize(
    ("value", "error", "match"),
    [(2.5, ValueError, r"alpha_min must be None or in \[-100, 2\]"),
     (math.nan, ValueError, "alpha_min must be None or in"),
     ("1", TypeError, "alpha_min must be a number or None"),
     (True, TypeError, "alpha_min must be a number or None")],
)  # fmt: skip
def test_bad_alpha_min_raises(value, error, match):
    with pytest.raises(error, match=match):
        fit_truncated_powerlaw_at([1.0, 2.0, 3.0], 1.0, alpha_min=value)
    with pytest.raises(error, match=match):
        fit_truncated_powerlaw([1.0, 2.0, 3.0], alpha_min=value)


# ------------------------------------------------------------------ analyze() and the CLI


def _model() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(3)
    return {"a.weight": rng.standard_t(3.0, (300, 150)), "b.weight": rng.standard_t(4.0, (200, 120)),
            "c.weight": rng.standard_normal((160, 100))}  # fmt: skip


def test_analyze_bounds_e_tpl_alpha_by_default_and_keeps_the_unconstrained_option():
    import hts_fast

    model = _model()
    bounded = hts_fast.analyze(model, fit="E_TPL")
    free = hts_fast.analyze(model, fit="E_TPL", tpl_alpha_min=None)
    assert (bounded["alpha"] >= TPL_ALPHA_MIN).all()
    assert set(bounded["tpl_status"]) <= {"converged", "power_law", "alpha_bound"}
    assert (bounded["tpl_status"] == "alpha_bound").any()
    assert (bounded.loc[bounded["tpl_status"] == "alpha_bound", "alpha"] == 1.0).all()
    assert (free["alpha"] < 1.0).any()  # what the bound changes
    for (_, row), weight in zip(free.iterrows(), model.values(), strict=True):
        search = fit_truncated_powerlaw(hts_fast.esd(weight), variant="corrected")
        assert (row["alpha"], row["xmin"], row["tpl_status"]) == (
            search.fit.alpha, search.fit.xmin, search.fit.status)  # fmt: skip
    other = hts_fast.analyze(model, fit="TPL", tpl_alpha_min=0.5)
    assert (other["alpha"] >= 0.5).all()


def test_compat_keeps_weightwatchers_filter_and_refuses_another_bound():
    import hts_fast

    model = _model()
    compat = hts_fast.analyze(model, fit="E_TPL", compat="weightwatcher-0.7.7")
    for (_, row), weight in zip(compat.iterrows(), model.values(), strict=True):
        search = fit_truncated_powerlaw(hts_fast.esd(weight), variant="weightwatcher-0.7.7",
                                        alpha_above_one=True)  # fmt: skip
        if search.fit.status == "failed":
            assert row["status"] == "failed"
            continue
        assert (row["alpha"], row["xmin"]) == (search.fit.alpha, search.fit.xmin)
        assert row["tpl_status"] in ("converged", "power_law")  # never on a bound
    with pytest.raises(ValueError, match="leave tpl_alpha_min at 1"):
        hts_fast.analyze(model, fit="E_TPL", compat="weightwatcher-0.7.7", tpl_alpha_min=None)
    with pytest.raises(ValueError, match="use it with fit='TPL' or 'E_TPL'"):
        hts_fast.analyze(model, tpl_alpha_min=None)
    with pytest.raises(ValueError, match="alpha_min must be None or in"):
        hts_fast.analyze(model, fit="TPL", tpl_alpha_min=3.0)


def test_cli_tpl_alpha_min(tmp_path, capsys):
    from hts_fast.cli import main

    path = tmp_path / "m.npz"
    np.savez(path, **_model())
    out = tmp_path / "free.csv"
    assert main(["analyze", str(path), "--fit", "E_TPL", "--tpl-alpha-min", "none", "--quiet",
                 "--out", str(out)]) == 0  # fmt: skip
    import hts_fast
    import pandas as pd

    expected = hts_fast.analyze(str(path), fit="E_TPL", tpl_alpha_min=None)
    np.testing.assert_array_equal(pd.read_csv(out)["alpha"], expected["alpha"])
    assert main(["analyze", str(path), "--fit", "E_TPL"]) == 0
    assert "tpl_status" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["analyze", str(path), "--fit", "E_TPL", "--tpl-alpha-min", "low"])
