"""TPL / E-TPL with xmin chosen by the KS distance: equal to fitting every candidate by hand."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hts_fast import fit_curves
from hts_fast.fits.tpl_search import (
    _search_by_loop,
    fit_truncated_powerlaw,
    fit_truncated_powerlaw_batch,
    peak_xmin_range,
)
from hts_fast.fits.truncated import TPL_ALPHA_MIN, fit_truncated_powerlaw_at

from ..conftest import heavy_tailed_esd, pareto_sample
from .test_tpl import tpl_sample


def _by_hand(x: np.ndarray, low: float, high: float, need_alpha: float) -> tuple[float, int]:
    """(xmin, number of candidates) of the smallest-D valid fit, one candidate at a time."""
    distinct = np.unique(x[x > 1e-5])[:-1]
    candidates = distinct[(distinct >= low) & (distinct < high)]
    best, best_d = math.nan, math.inf
    for c in candidates:
        fit = fit_truncated_powerlaw_at(x, float(c))
        if fit.status in ("converged", "power_law") and fit.alpha > need_alpha and best_d > fit.D:
            best, best_d = float(c), fit.D
    return best, len(candidates)


def test_search_equals_fitting_every_candidate():
    x = heavy_tailed_esd(np.random.default_rng(0), 400, 200, 3.0)
    for variant in ("corrected", "weightwatcher-0.7.7"):
        low, high = peak_xmin_range(x, variant=variant)
        search = fit_truncated_powerlaw(x, variant=variant, threads=2)
        need = 1.0 if variant == "weightwatcher-0.7.7" else -math.inf
        xmin, count = _by_hand(x, low, high, need)
        assert search.candidates == count > 0
        assert search.variant == variant
        if math.isnan(xmin):
            assert search.fit.status == "failed"
        else:
            assert search.fit.xmin == xmin
    whole = fit_truncated_powerlaw(x, threads=1)
    assert whole.fit.xmin == _by_hand(x, -math.inf, math.inf, -math.inf)[0]
    assert whole == fit_truncated_powerlaw(x, threads=2)  # thread-independent


def test_peak_range_variants():
    x = heavy_tailed_esd(np.random.default_rng(1), 300, 150, 4.0)
    counts, edges = np.histogram(np.log10(x[x > 1e-5]), bins=100)
    peak = 10 ** edges[np.argmax(counts)]
    assert peak_xmin_range(x) == (0.95 * peak, 1.5 * peak)
    # WeightWatcher 0.7.7 passes the lower bound in log units
    assert peak_xmin_range(x, variant="weightwatcher-0.7.7") == (math.log10(0.95 * peak),
                                                                 1.5 * peak)  # fmt: skip


def test_tpl_search_recovers_a_truncated_power_law():
    rng = np.random.default_rng(5)
    x = tpl_sample(rng, 3000, 2.5, 0.05, 1.0)
    search = fit_truncated_powerlaw(x, xmin_range=(1.0, 1.2))
    fit = search.fit
    assert fit.status == "converged"
    assert abs(fit.alpha - 2.5) < 3 * fit.alpha_se
    assert abs(fit.Lambda - 0.05) < 3 * fit.Lambda_se


def test_failures_say_why():
    assert "NaN" in fit_truncated_powerlaw([1.0, np.nan, 3.0]).fit.reason
    empty = fit_truncated_powerlaw(np.arange(1.0, 20.0), xmin_range=(100.0, 200.0))
    assert empty.fit.status == "failed"
    assert "no xmin candidate" in empty.fit.reason


def test_analyze_with_tpl_fits():
    import hts_fast

    rng = np.random.default_rng(3)
    state = {
        "a.weight": rng.standard_t(3.0, (300, 150)),
        "b.weight": rng.standard_t(4.0, (200, 120)),
    }
    spectra: dict[int, np.ndarray] = {}
    table = hts_fast.analyze(state, fit="E_TPL", _spectra_sink=spectra)
    columns = list(table.columns)
    assert columns.index("D") < columns.index("Lambda") < columns.index("M")  # sorted by name
    for k, evals in spectra.items():
        search = fit_truncated_powerlaw(evals, variant="corrected", alpha_min=TPL_ALPHA_MIN)
        row = table.iloc[k]
        assert (row["alpha"], row["Lambda"], row["xmin"]) == (search.fit.alpha, search.fit.Lambda,
                                                              search.fit.xmin)  # fmt: skip
        assert row["tpl_status"] == search.fit.status
        assert row["alpha"] >= TPL_ALPHA_MIN
        assert row["fit_method"] == "E_TPL[corrected]"
        assert math.isnan(row["sigma"])
    compat = hts_fast.analyze(state, fit="E_TPL", compat="weightwatcher-0.7.7")
    assert set(compat["fit_method"]) <= {"E_TPL[weightwatcher-0.7.7]", ""}
    tpl = hts_fast.analyze(state, fit="TPL")
    assert set(tpl["fit_method"]) == {"TPL"}
    assert (tpl["status"] == "success").all()


def test_compat_tpl_keeps_powerlaws_alpha_above_one():
    import hts_fast

    rng = np.random.default_rng(9)
    state = {f"l{k}.weight": rng.standard_normal((300, 200)) for k in range(3)}
    table = hts_fast.analyze(state, fit="TPL", compat="weightwatcher-0.7.7")
    fitted = table[table["status"] == "success"]
    assert (fitted["alpha"] > 1).all()


# ------------------------------------------- the compiled search vs the Python-loop oracle

FIELDS = ("alpha", "Lambda", "xmin", "D", "loglik", "alpha_se", "Lambda_se")


def _assert_same_search(fast: Any, slow: Any) -> None:
    """Same choice, same counts, every number equal to 1e-10 relative."""
    assert (fast.candidates, fast.valid, fast.variant) == (slow.candidates, slow.valid,
                                                           slow.variant)  # fmt: skip
    assert (fast.fit.status, fast.fit.n) == (slow.fit.status, slow.fit.n)
    for name in FIELDS:
        a, b = getattr(fast.fit, name), getattr(slow.fit, name)
        assert a == pytest.approx(b, rel=1e-10, abs=0.0, nan_ok=True), name


def _inputs() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(11)
    return {
        "tpl": tpl_sample(rng, 1200, 2.5, 0.02, 1.0),
        "tpl_steep": tpl_sample(rng, 600, 4.0, 0.5, 0.3),
        "pareto": pareto_sample(rng, 900, 1.8, 0.5),
        "t3_esd": heavy_tailed_esd(rng, 400, 200, 3.0),
        "t5_esd": heavy_tailed_esd(rng, 500, 300, 5.0),
        "mp_bulk": np.linalg.eigvalsh(np.cov(rng.standard_normal((250, 700)))),
        "lognormal": rng.lognormal(0.0, 1.0, 700),
        "ties": np.round(rng.pareto(2.0, 800) + 1.0, 2),
    }


@pytest.mark.parametrize("name", list(_inputs()))
def test_compiled_search_equals_the_python_loop(name: str) -> None:
    x = _inputs()[name]
    _assert_same_search(fit_truncated_powerlaw(x, threads=2), _search_by_loop(x, threads=2))
    for variant in ("corrected", "weightwatcher-0.7.7"):
        _assert_same_search(fit_truncated_powerlaw(x, variant=variant),
                            _search_by_loop(x, variant=variant))  # fmt: skip


def test_search_does_not_depend_on_threads_or_batching() -> None:
    spectra = list(_inputs().values())
    one = [fit_truncated_powerlaw(x, threads=1) for x in spectra]
    many = [fit_truncated_powerlaw(x, threads=3) for x in spectra]
    batch = fit_truncated_powerlaw_batch(spectra, threads=2)
    for a, b, c in zip(one, many, batch, strict=True):
        assert repr(a) == repr(b) == repr(c)  # bit for bit (repr: NaN-safe)


def test_search_picks_the_argmin_of_the_full_curve() -> None:
    """Dropping candidates early never changes the choice: the full scan agrees bit for bit."""
    for x in _inputs().values():
        search = fit_truncated_powerlaw(x)
        curve = fit_curves(x, fit="TPL")
        ok = curve["status"].isin(["converged", "power_law"]).to_numpy()
        D = np.where(ok, curve["D"].to_numpy(), np.inf)
        k = int(np.argmin(D))  # first on ties
        assert curve.attrs["selected"] == k
        assert (curve["xmin"][k], curve["D"][k]) == (search.fit.xmin, search.fit.D)


def test_analyze_tpl_columns_are_the_search_fit():
    import hts_fast

    rng = np.random.default_rng(3)
    model = {
        "a.weight": rng.standard_t(3.0, (300, 120)),
        "b.weight": rng.standard_t(5.0, (90, 200)),
    }
    table = hts_fast.analyze(model, fit="TPL")
    assert list(table.columns[-4:]) == ["tpl_status", "loglik", "alpha_se", "Lambda_se"]
    unbounded = hts_fast.analyze(model, fit="TPL", tpl_alpha_min=None)
    for (_, row), (_, free), weight in zip(table.iterrows(), unbounded.iterrows(),
                                           model.values(), strict=True):  # fmt: skip
        evals = hts_fast.esd(weight)
        assert free["alpha"] == fit_truncated_powerlaw(evals).fit.alpha
        fit = fit_truncated_powerlaw(evals, alpha_min=TPL_ALPHA_MIN).fit
        for column, value in (("alpha", fit.alpha), ("Lambda", fit.Lambda),
                              ("loglik", fit.loglik), ("alpha_se", fit.alpha_se),
                              ("Lambda_se", fit.Lambda_se)):  # fmt: skip
            assert row[column] == pytest.approx(value, rel=1e-12, nan_ok=True), column
