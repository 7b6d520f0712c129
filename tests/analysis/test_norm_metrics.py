"""The compiled norm metrics (csrc/cpu/norm_metrics.cpp) against the readable oracle
hts_fast._reference.norm_metrics, and the same sums from the fused ESD pass."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hts_fast import _reference
from hts_fast._core_loader import core
from hts_fast.analysis.layer_spectra import layer_spectra
from hts_fast.analysis.metrics import batch_norm_metrics

KEYS = ("norm", "lambda_max", "matrix_rank", "weak_rank_loss", "entropy", "alpha_norm_sum")


def _spectra() -> list[np.ndarray]:
    rng = np.random.default_rng(11)
    heavy = np.sort(rng.pareto(2.5, 300) + 0.05)
    with_zeros = np.sort(np.concatenate([np.zeros(5), rng.random(40) + 1e-9, [1e-8, 1e-7]]))
    return [heavy, with_zeros, np.array([3.0]), np.sort(rng.random(7) * 1e-3)]


@pytest.mark.parametrize("compat", [False, True])
@pytest.mark.parametrize("tolerance", [1e-6, 0.5])
def test_kernel_equals_the_reference(compat, tolerance):
    spectra = _spectra()
    Ns = [300.0, 60.0, 4.0, 9.0]
    alphas = [3.2, 2.0, 4.5, -1.0 if compat else 2.5]
    got = core.norm_metrics_batch(spectra, Ns, alphas, tolerance, compat, 2)
    for k, (evals, N, alpha) in enumerate(zip(spectra, Ns, alphas, strict=True)):
        if alpha < 0 and evals[0] == 0:
            continue  # 0**-1: no finite reference
        want = _reference.norm_metrics(evals, N, alpha, compat=compat, tolerance=tolerance)
        for key, values in zip(KEYS, got, strict=True):
            if key in ("matrix_rank", "weak_rank_loss"):
                assert values[k] == want[key], (k, key)
            else:
                assert values[k] == pytest.approx(want[key], rel=1e-12, abs=1e-300), (k, key)


def test_edge_cases_follow_numpy_semantics():
    # a zero spectrum: norm 0, p = 0/0 (NaN) in compat, no entropy by default (rank 0)
    zero = np.zeros(4)
    norm, lmax, rank, weak, entropy, _ = core.norm_metrics_batch([zero, zero], [4.0, 4.0],
                                                                 [2.0, 2.0], 1e-6, False, 1)  # fmt: skip
    assert (norm[0], lmax[0], rank[0], weak[0]) == (0, 0, 0, 4)
    assert entropy[0] == 0.0
    compat_entropy = core.norm_metrics_batch([zero], [4.0], [2.0], 1e-6, True, 1)[4]
    assert math.isnan(compat_entropy[0])
    # a failed fit's alpha (NaN) gives a NaN alpha-norm sum
    assert math.isnan(core.norm_metrics_batch([np.array([2.0, 3.0])], [3.0], [math.nan], 1e-6, False,
                                              1)[5][0])  # fmt: skip
    with pytest.raises(ValueError, match="every spectrum needs an eigenvalue"):
        core.norm_metrics_batch([np.zeros(0)], [1.0], [2.0], 1e-6, False, 1)


def test_columns_and_thread_count():
    spectra = _spectra()
    N, alpha = np.array([300.0, 60.0, 4.0, 9.0]), np.array([3.2, 2.0, 4.5, 2.5])
    one = batch_norm_metrics(spectra, N, alpha, compat=False, tolerance=1e-6, threads=1)
    two = batch_norm_metrics(spectra, N, alpha, compat=False, tolerance=1e-6, threads=2)
    for key, values in one.items():
        np.testing.assert_array_equal(values, two[key])
    np.testing.assert_allclose(one["log_norm"], np.log10([s.sum() for s in spectra]), rtol=1e-14)
    np.testing.assert_allclose(one["stable_rank"], [s.sum() / s[-1] for s in spectra], rtol=1e-14)
    np.testing.assert_allclose(one["alpha_weighted"],
                               alpha * np.log10([s[-1] for s in spectra]), rtol=1e-14)  # fmt: skip
    assert one["num_evals"].tolist() == [len(s) for s in spectra]


@pytest.mark.parametrize("compat", [False, True])
def test_fused_pass_computes_the_same_sums(compat):
    rng = np.random.default_rng(5)
    matrices = [rng.standard_t(3.0, (80, 40)), rng.standard_t(4.0, (50, 30))]
    results = layer_spectra(matrices, [1.0, 1.0], [(0, 1, None), (1, 1, None)], [80.0, 50.0],
                            tolerance=1e-3, compat=compat)  # fmt: skip
    for (evals, _, fit, norms), N in zip(results, (80.0, 50.0), strict=True):
        alpha = fit.alpha if fit.status == "success" else (-1.0 if compat else math.nan)
        want = core.norm_metrics_batch([evals], [N], [alpha], 1e-3, compat, 1)
        assert norms == tuple(values[0] for values in want)
