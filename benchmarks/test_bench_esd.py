"""ESD: hts_fast svd / gram vs numpy.linalg.svd and scipy gesdd, float32 input.

All run with BLAS pinned to one thread (hts_fast's own layout), so the ratios compare
algorithms and copies, not thread counts.
"""

from __future__ import annotations

import hts_fast
import numpy as np
import pytest
import scipy.linalg
import threadpoolctl

from .conftest import full_only, heavy_tailed_matrix, record

SHAPES = [(384, 384), (1024, 1024), *full_only((4096, 4096), (4096, 11008))]


def _rounds(shape: tuple[int, int]) -> int:
    return 5 if shape[0] * shape[1] <= 1024 * 1024 else 1


def _group(shape: tuple[int, int]) -> str:
    return f"esd {shape[0]}x{shape[1]}"


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("method", ["svd", "gram"])
def test_esd_hts_fast(benchmark, shape, method):
    w = heavy_tailed_matrix(*shape)
    values = benchmark.pedantic(
        hts_fast.esd, args=(w,), kwargs={"method": method}, rounds=_rounds(shape), iterations=1
    )
    record(benchmark, _group(shape), f"hts_fast.esd[{method}]")
    expected_top = np.linalg.norm(w.astype(np.float64), 2) ** 2
    assert values[-1] == pytest.approx(expected_top, rel=1e-10)


@pytest.mark.parametrize("shape", SHAPES)
def test_esd_numpy_svd(benchmark, shape):
    w = heavy_tailed_matrix(*shape)

    def run() -> np.ndarray:
        with threadpoolctl.threadpool_limits(1, user_api="blas"):
            return np.sort(np.linalg.svd(w.astype(np.float64), compute_uv=False) ** 2)

    values = benchmark.pedantic(run, rounds=_rounds(shape), iterations=1)
    record(benchmark, _group(shape), "numpy.linalg.svd")
    np.testing.assert_allclose(values[-5:], hts_fast.esd(w)[-5:], rtol=1e-12)


@pytest.mark.parametrize("shape", SHAPES)
def test_esd_scipy_gesdd(benchmark, shape):
    """What WeightWatcher runs on a CPU: scipy.linalg.svd(W.astype(float), compute_uv=False)."""
    w = heavy_tailed_matrix(*shape)

    def run() -> np.ndarray:
        with threadpoolctl.threadpool_limits(1, user_api="blas"):
            return scipy.linalg.svd(w.astype(float), compute_uv=False)

    benchmark.pedantic(run, rounds=_rounds(shape), iterations=1)
    record(benchmark, _group(shape), "scipy.linalg.svd (gesdd)")
