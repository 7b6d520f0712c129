"""Truncated power law: one fit at a fixed xmin vs powerlaw's ``truncated_power_law``, and our
search over every xmin candidate (powerlaw has no such batch; fitting its candidates one by
one costs candidates x its single-fit time): the compiled search against the Python loop over
the fixed-xmin kernel it replaced, side by side in one process (same results asserted).

Samples: TPL(alpha = 2.5, Lambda = 0.02) on x >= 1, drawn exactly (tests/fits/test_tpl.py).
"""

from __future__ import annotations

import contextlib
import io
import warnings

import numpy as np
import pytest
from hts_fast.fits.tpl_search import _search_by_loop, fit_truncated_powerlaw
from hts_fast.fits.truncated import fit_truncated_powerlaw_at

from .conftest import full_only, record

SIZES_N = [1000, *full_only(4096, 15000)]


def _sample(n: int) -> np.ndarray:
    from tests.fits.test_tpl import tpl_sample

    return tpl_sample(np.random.default_rng(n), n, 2.5, 0.02, 1.0)


@pytest.mark.parametrize("n", SIZES_N)
def test_tpl_fixed_xmin_hts_fast(benchmark, n):
    x = _sample(n)
    fit = benchmark(fit_truncated_powerlaw_at, x, 1.0)
    assert fit.status == "converged"
    record(benchmark, f"TPL fit at xmin, n={n}", "hts_fast")


@pytest.mark.parametrize("n", SIZES_N)
def test_tpl_fixed_xmin_powerlaw(benchmark, n):
    powerlaw = pytest.importorskip("powerlaw")
    x = _sample(n)

    def run() -> float:
        with (warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()),
              np.errstate(all="ignore")):  # fmt: skip
            warnings.simplefilter("ignore")
            return powerlaw.Fit(x, xmin=1.0, verbose=False).truncated_power_law.alpha

    benchmark.pedantic(run, rounds=3, iterations=1)
    record(benchmark, f"TPL fit at xmin, n={n}", "powerlaw")


@pytest.mark.parametrize("n", SIZES_N)
def test_tpl_every_xmin_hts_fast(benchmark, n):
    x = _sample(n)
    search = benchmark.pedantic(fit_truncated_powerlaw, args=(x,), rounds=3, iterations=1)
    assert search.candidates == n - 1
    record(benchmark, f"TPL over all {n - 1} xmin candidates", "hts_fast")


@pytest.mark.parametrize("n", SIZES_N)
def test_tpl_every_xmin_python_loop(benchmark, n):
    x = _sample(n)
    search = benchmark.pedantic(_search_by_loop, args=(x,), rounds=1, iterations=1)
    fast = fit_truncated_powerlaw(x)
    assert (fast.fit.xmin, fast.candidates) == (search.fit.xmin, search.candidates)
    assert fast.fit.alpha == pytest.approx(search.fit.alpha, rel=1e-10)
    record(benchmark, f"TPL over all {n - 1} xmin candidates", "python loop (before)")
