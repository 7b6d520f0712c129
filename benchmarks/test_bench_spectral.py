"""Spectral diagnostics: the Marchenko-Pastur fit and randomize=True vs WeightWatcher 0.7.7.

* mp_fit of one ESD (Marchenko-Pastur quantiles, Q = 2) for n = 384 / 1,536 / 4,096: ours
  against WeightWatcher's own ``apply_mp_fit`` on the same eigenvalues;
* ``analyze(randomize=True)`` on all-MiniLM-L6-v2 (full sizes only): ours (gram and compat)
  against WeightWatcher's ``analyze(randomize=True)`` (both include the MP fit of the shuffled
  spectra).
"""

from __future__ import annotations

import contextlib
import io
import logging

import hts_fast
import pytest
from hts_fast.fits.marchenko_pastur import mp_fit

from .conftest import full_only, quiet_call, record

SIZES_N = [384, *full_only(1536, 4096)]


def _ww_mp(n):
    from tests.fits.test_marchenko_pastur import mp_quantiles, ww_mp_columns

    ww = pytest.importorskip("weightwatcher")
    pytest.importorskip("sklearn")
    logging.getLogger("weightwatcher").setLevel(logging.CRITICAL)
    with contextlib.redirect_stdout(io.StringIO()):
        watcher = ww.WeightWatcher()
    return watcher, mp_quantiles(n, 2.0), ww_mp_columns


@pytest.mark.parametrize("n", SIZES_N)
def test_mp_fit_hts_fast(benchmark, n):
    from tests.fits.test_marchenko_pastur import mp_quantiles

    evals = mp_quantiles(n, 2.0)
    fit = benchmark(mp_fit, evals, 2 * n, n, compat=True)
    assert fit.status == "success"
    record(benchmark, f"mp_fit n={n}", "hts_fast.mp_fit")


@pytest.mark.parametrize("n", SIZES_N)
def test_mp_fit_weightwatcher(benchmark, n):
    watcher, evals, ww_mp_columns = _ww_mp(n)
    columns = benchmark.pedantic(ww_mp_columns, args=(watcher, evals, 2 * n, n), rounds=3,
                                 iterations=1)  # fmt: skip
    assert columns["num_spikes"] >= 0
    record(benchmark, f"mp_fit n={n}", "weightwatcher apply_mp_fit")


def _minilm():
    from tests.packaged_model import load_minilm

    try:
        return load_minilm()
    except ImportError as exc:
        pytest.skip(str(exc))


@pytest.mark.parametrize("mode", full_only("default", "gram", "compat"))
def test_randomize_minilm_hts_fast(benchmark, mode):
    model = _minilm()
    options = {"default": {}, "gram": {"esd_method": "gram"},
               "compat": {"compat": "weightwatcher-0.7.7"}}[mode]  # fmt: skip
    table = benchmark.pedantic(hts_fast.analyze, args=(model,),
                               kwargs={"randomize": True, "seed": 0, **options},
                               rounds=3, iterations=1, warmup_rounds=1)  # fmt: skip
    assert table["rand_distance"].notna().all()
    record(benchmark, "randomize, MiniLM", f"hts_fast[{mode}]")


@pytest.mark.parametrize("mode", full_only("weightwatcher"))
def test_randomize_minilm_weightwatcher(benchmark, mode):
    ww = pytest.importorskip("weightwatcher")
    logging.getLogger("weightwatcher").setLevel(logging.CRITICAL)
    model = _minilm()

    def run():
        with contextlib.redirect_stdout(io.StringIO()):
            return quiet_call(ww.WeightWatcher(model=model).analyze, randomize=True)

    benchmark.pedantic(run, rounds=1, iterations=1)
    record(benchmark, "randomize, MiniLM", "weightwatcher")
