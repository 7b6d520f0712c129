"""Likelihood-ratio tests of the power-law tail against its alternatives, vs powerlaw 2.0."""

from __future__ import annotations

import contextlib
import io
import math
import warnings

import hts_fast
import numpy as np
import pytest
from hts_fast.fits.alternatives import lognormal_logpdf
from hts_fast.fits.compare import COLUMNS, compare_tail, exponential_logpdf

from ..conftest import _require, pareto_sample


def _powerlaw_fit(x: np.ndarray, xmin: float) -> tuple[dict[str, tuple[float, float]], float]:
    """powerlaw 2.0 at a fixed xmin: its (R, p) per alternative and its lognormal loglik."""
    powerlaw = _require("powerlaw")
    with (
        warnings.catch_warnings(),
        contextlib.redirect_stdout(io.StringIO()),
        np.errstate(all="ignore"),
    ):
        warnings.simplefilter("ignore")
        fit = powerlaw.Fit(x, xmin=xmin, verbose=False)
        compared = {name: fit.distribution_compare("power_law", name,
                                                   normalized_ratio=name != "truncated_power_law")
                    for name in ("exponential", "lognormal", "truncated_power_law")}  # fmt: skip
        lognormal = float(np.sum(fit.lognormal.loglikelihoods(x[x >= xmin])))
    return compared, lognormal


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_powerlaw_package_at_a_fixed_xmin(seed):
    x = pareto_sample(np.random.default_rng(seed), 2000, 2.5)
    xmin = float(np.sort(x)[300])
    tail = x[x >= xmin]
    alpha = 1 + len(tail) / float(np.sum(np.log(tail / xmin)))
    ours = compare_tail(x, xmin, alpha)
    theirs, their_lognormal = _powerlaw_fit(x, xmin)
    # closed-form (exponential) and exact (truncated power law) fits: the same tests
    for name, col in (("exponential", "pl_exp"), ("truncated_power_law", "pl_tpl")):
        r, p = theirs[name]
        # atol: powerlaw's Nelder-Mead stops ~1e-5 short of the TPL's Lambda = 0 maximum
        np.testing.assert_allclose(getattr(ours, f"{col}_R"), r, rtol=1e-3, atol=1e-4)
        np.testing.assert_allclose(getattr(ours, f"{col}_p"), p, rtol=1e-2, atol=1e-4)
    assert ours.pl_tpl_R <= 1e-9  # nested: the TPL is at least as likely as the power law
    # both fit the lognormal numerically: ours reaches at least powerlaw's likelihood
    assert float(np.sum(lognormal_logpdf(tail, xmin))) >= their_lognormal - 1e-6
    if abs(theirs["lognormal"][0]) > 1:  # a clear verdict is the same verdict
        assert np.sign(ours.pl_lognormal_R) == np.sign(theirs["lognormal"][0])


def test_exact_exponential_mle_is_at_least_as_likely():
    rng = np.random.default_rng(3)
    x = 1.0 + rng.exponential(2.0, 3000)
    lam = 1 / (x.mean() - 1.0)
    ours = float(np.sum(exponential_logpdf(x, 1.0)))
    for other in (lam * 0.999, lam * 1.001):
        assert ours > float(np.sum(np.log(other) - other * (x - 1.0)))


def test_each_alternative_wins_on_its_own_data():
    rng = np.random.default_rng(4)
    exp_tail = 1.0 + rng.exponential(1.0, 3000)
    comparison = compare_tail(exp_tail, 1.0, 1 + 3000 / np.log(exp_tail).sum())
    assert comparison.pl_exp_R < -5
    assert comparison.pl_exp_p < 1e-6
    pareto = pareto_sample(rng, 3000, 2.2)
    comparison = compare_tail(pareto, 1.0, 1 + 3000 / np.log(pareto).sum())
    assert comparison.pl_exp_R > 5
    assert comparison.pl_tpl_p > 1e-3  # the nested test finds no truncation
    logn = np.exp(rng.normal(0.0, 1.0, 20000))
    logn = logn[logn >= 1.0]
    alpha = 1 + len(logn) / np.log(logn).sum()
    assert compare_tail(logn, 1.0, alpha).pl_lognormal_R < -3
    assert np.isfinite(lognormal_logpdf(logn, 1.0)).all()


def test_analyze_columns_and_guards():
    rng = np.random.default_rng(5)
    state = {
        "a.weight": rng.standard_t(3.0, (300, 150)),
        "b.weight": rng.standard_normal((200, 100)),
    }
    table = hts_fast.analyze(state, compare=True)
    assert list(table.columns[-len(COLUMNS) :]) == COLUMNS
    spectra: dict[int, np.ndarray] = {}
    plain = hts_fast.analyze(state, _spectra_sink=spectra)
    for k, evals in spectra.items():
        expected = compare_tail(evals, plain["xmin"][k], plain["alpha"][k]).columns()
        assert table.iloc[k][COLUMNS].to_dict() == pytest.approx(expected, nan_ok=True)
    assert math.isnan(compare_tail([1.0, 2.0], 1.0, 2.0).pl_exp_R)
    with pytest.raises(ValueError, match="compare=True"):
        hts_fast.analyze(state, compare=True, fit="TPL")
