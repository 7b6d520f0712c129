"""Randomized (certified top-k) ESD + fit vs the exact routes, float32 heavy-tailed input.

Each run does what analyze(esd_method=...) does for one layer: the ESD and the power-law fit
(randomized: the certification loop of hts_fast.spectra.randomized). The exact routes are timed
in the same test, right after, so the ratio is taken in one process on one machine state.
BLAS is pinned to one thread everywhere, so the ratios compare algorithms.

    HTS_FAST_BENCH_SIZES=full python -m pytest benchmarks/test_bench_esd_randomized.py \
        --benchmark-only -s
"""

from __future__ import annotations

import time

import hts_fast
import numpy as np
import pytest
from hts_fast.spectra import randomized as er

from .conftest import _timings, full_only, heavy_tailed_matrix, record

SHAPES = [(1024, 2752), *full_only((4096, 11008))]


def _randomized(w: np.ndarray) -> tuple[hts_fast.PowerLawFit, er.CertifiedSpectrum]:
    result = er.certified_spectrum(w)
    return hts_fast.fit_powerlaw(result.spectrum.values), result


@pytest.mark.parametrize("shape", SHAPES)
def test_esd_fit_randomized_vs_exact(benchmark, shape):
    w = heavy_tailed_matrix(*shape)
    group = f"esd+fit {shape[0]}x{shape[1]}"
    fit, result = benchmark.pedantic(_randomized, args=(w,), rounds=1, iterations=1)
    record(benchmark, group, "hts_fast randomized")
    print(f"\n{group}: k tried {result.ks}, route {result.spectrum.route}")
    for method in ("svd", "gram"):
        start = time.perf_counter()
        evals = hts_fast.esd(w, method=method, threads=1)
        exact = hts_fast.fit_powerlaw(evals)
        _timings[group][f"exact {method}"] = time.perf_counter() - start
        assert fit.alpha == pytest.approx(exact.alpha, rel=1e-2)
        assert fit.num_pl_spikes == exact.num_pl_spikes
        assert result.spectrum.values[-1] == pytest.approx(evals[-1], rel=1e-6)
