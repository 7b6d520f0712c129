"""ESD kernels against NumPy/SciPy and the reference."""

from __future__ import annotations

import hts_fast
import numpy as np
import pytest
import scipy.linalg
import threadpoolctl
from hts_fast import _core_loader
from hts_fast import _reference as ref

SHAPES = [(1, 1), (1, 7), (7, 1), (5, 5), (64, 32), (32, 64), (300, 200), (97, 131)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("method", ["svd", "gram"])
def test_esd_matches_reference(shape, dtype, method):
    rng = np.random.default_rng(sum(shape))
    w = rng.standard_normal(shape).astype(dtype)
    got = hts_fast.esd(w, method=method)
    expected = ref.esd(w)
    assert got.dtype == np.float64
    assert got.shape == (min(shape),)
    assert np.all(np.diff(got) >= 0)
    # gram squares the condition number: its error is relative to lambda_max
    atol = (1e-13 if method == "svd" else 1e-12) * expected.max()
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=atol)


@pytest.mark.parametrize("shape", [(200, 120), (120, 200)])
def test_svd_path_is_bit_identical_to_scipy_gesdd(shape):
    """WeightWatcher computes scipy.linalg.svd(W.astype(float), compute_uv=False)**2."""
    w = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    with threadpoolctl.threadpool_limits(1, user_api="blas"):  # hts_fast's BLAS layout
        ww_style = np.sort(scipy.linalg.svd(w.astype(float), compute_uv=False) ** 2)
    np.testing.assert_array_equal(hts_fast.esd(w), ww_style)


def test_scale_multiplies_before_the_decomposition():
    w = np.random.default_rng(1).standard_normal((50, 40)).astype(np.float32)
    with threadpoolctl.threadpool_limits(1, user_api="blas"):
        scaled = np.sort(scipy.linalg.svd(w * np.sqrt(0.5), compute_uv=False) ** 2)
    np.testing.assert_array_equal(hts_fast.esd(w, scale=np.sqrt(0.5)), scaled)


@pytest.mark.parametrize("method", ["svd", "gram"])
def test_noncontiguous_views_need_no_copy_and_give_same_values(method):
    base = np.random.default_rng(2).standard_normal((4, 60, 80, 3))
    view = base[1, ::2, 5:70, 2]  # strided in both dimensions
    assert not view.flags.c_contiguous
    np.testing.assert_allclose(
        hts_fast.esd(view, method=method), hts_fast.esd(view.copy(), method=method), rtol=1e-13
    )
    np.testing.assert_array_equal(hts_fast.esd(view.T), hts_fast.esd(np.asfortranarray(view.T)))


def test_known_spectrum_recovered():
    rng = np.random.default_rng(4)
    u, _ = np.linalg.qr(rng.standard_normal((120, 80)))
    v, _ = np.linalg.qr(rng.standard_normal((80, 80)))
    s = np.geomspace(0.01, 30.0, 80)
    w = u @ np.diag(s) @ v.T
    np.testing.assert_allclose(hts_fast.esd(w), np.sort(s**2), rtol=1e-11)
    np.testing.assert_allclose(hts_fast.esd(w, method="gram"), np.sort(s**2), rtol=1e-8)


def test_gram_loses_tiny_eigenvalues_as_documented():
    rng = np.random.default_rng(5)
    u, _ = np.linalg.qr(rng.standard_normal((60, 40)))
    s = np.r_[np.ones(39), 1e-9]  # one singular value at 1e-9 * sv_max
    w = u @ np.diag(s)
    assert hts_fast.esd(w)[0] == pytest.approx(1e-18, rel=1e-5)
    assert hts_fast.esd(w, method="gram")[0] < 1e-14  # only noise of size eps*lambda_max


def test_half_precision_conversion_exact_for_every_bit_pattern():
    bits = np.arange(2**16, dtype=np.uint16)
    got = _core_loader.core._half_to_double(bits)
    expected = bits.view(np.float16).astype(np.float64)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    keep = ~np.isnan(expected)
    np.testing.assert_array_equal(got[keep], expected[keep])
    np.testing.assert_array_equal(np.signbit(got[keep]), np.signbit(expected[keep]))


def test_torch_tensors_are_accepted():
    torch = pytest.importorskip("torch")
    w = torch.randn(70, 50, generator=torch.Generator().manual_seed(0))
    np.testing.assert_array_equal(hts_fast.esd(w), hts_fast.esd(w.numpy()))
    np.testing.assert_array_equal(hts_fast.esd(w.T), hts_fast.esd(w.numpy().T))
    bf16 = w.to(torch.bfloat16)
    np.testing.assert_array_equal(hts_fast.esd(bf16), hts_fast.esd(bf16.float().numpy()))
    np.testing.assert_array_equal(
        hts_fast.esd(w.requires_grad_()), hts_fast.esd(w.detach().numpy())
    )


def test_batch_keeps_input_order_and_matches_single_calls():
    rng = np.random.default_rng(6)
    shapes = [(30, 20), (64, 64), (30, 20), (10, 90), (64, 64), (5, 3), (30, 20)]
    mats = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    for method in ("svd", "gram"):
        out = hts_fast.esd_batch(mats, method=method, threads=2)
        for m, e in zip(mats, out, strict=True):
            np.testing.assert_array_equal(e, hts_fast.esd(m, method=method, threads=1))


def test_batch_per_matrix_scales():
    rng = np.random.default_rng(7)
    mats = [rng.standard_normal((20, 10)) for _ in range(3)]
    out = hts_fast.esd_batch(mats, scales=[1.0, 2.0, 0.5])
    for m, s, e in zip(mats, [1.0, 2.0, 0.5], out, strict=True):
        np.testing.assert_allclose(e, ref.esd(m) * s * s, rtol=1e-12)
