"""Conv2d slicing with WeightWatcher 0.7.7's conventions (reference doc sections 2.5-3)."""

from __future__ import annotations

import math

import hts_fast
import numpy as np
import pytest
from hts_fast import _reference as ref


@pytest.mark.parametrize("shape", [(16, 8, 3, 3), (8, 16, 3, 3), (8, 16, 2, 2), (32, 32, 1, 1)])
@pytest.mark.parametrize("conv2d_norm", [True, False])
def test_pooled_esd_matches_reference(shape, conv2d_norm):
    w = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    got = hts_fast.esd_conv2d(w, conv2d_norm=conv2d_norm)
    expected = ref.conv2d_esd(w, conv2d_norm=conv2d_norm)
    out_ch, in_ch, kh, kw = shape
    assert got.shape == (kh * kw * min(out_ch, in_ch),)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-13 * expected.max())


def test_norm_halves_every_eigenvalue():
    w = np.random.default_rng(1).standard_normal((12, 6, 3, 3))
    np.testing.assert_allclose(
        hts_fast.esd_conv2d(w, conv2d_norm=True),
        hts_fast.esd_conv2d(w, conv2d_norm=False) / 2,
        rtol=1e-13,
    )


def test_slices_are_views_in_weightwatcher_order():
    w = np.random.default_rng(2).standard_normal((4, 6, 2, 3))  # out < in -> transposed
    parts = hts_fast.conv2d_matrices(w)
    assert parts.rf == 6
    assert parts.scale == math.sqrt(0.5)
    assert len(parts.matrices) == 6
    for k, (i, j) in enumerate((i, j) for i in range(2) for j in range(3)):
        np.testing.assert_array_equal(parts.matrices[k], w[:, :, i, j].T)
        assert np.shares_memory(parts.matrices[k], w)


def test_keras_layout_equals_torch_layout():
    w = np.random.default_rng(3).standard_normal((10, 7, 3, 3))
    keras = np.transpose(w, (2, 3, 1, 0))  # (kh, kw, in, out)
    np.testing.assert_array_equal(
        hts_fast.esd_conv2d(keras, layout="hwio"), hts_fast.esd_conv2d(w, layout="oihw")
    )


@pytest.mark.parametrize(
    ("shape", "default_nm", "compat_nm"),
    [
        ((128, 64, 3, 3), (128, 64), (128, 64)),  # out >= in: no swap
        ((64, 128, 3, 3), (128, 64), (128, 64)),  # out < in, rf odd: swap lands right
        ((128, 1024, 64, 1), (1024, 128), (128, 1024)),  # rf even: WeightWatcher reports N < M
        ((8, 16, 2, 2), (16, 8), (8, 16)),
    ],
)
def test_weightwatcher_nm_parity_bug_only_in_compat(shape, default_nm, compat_nm):
    w = np.zeros(shape, dtype=np.float32)
    assert default_nm == (hts_fast.conv2d_matrices(w).N, hts_fast.conv2d_matrices(w).M)
    parts = hts_fast.conv2d_matrices(w, compat="weightwatcher-0.7.7")
    assert compat_nm == (parts.N, parts.M)


def test_bad_conv_input():
    with pytest.raises(ValueError, match="must be 4-D"):
        hts_fast.conv2d_matrices(np.ones((3, 3)))
    with pytest.raises(ValueError, match="layout must be"):
        hts_fast.conv2d_matrices(np.ones((2, 2, 1, 1)), layout="nchw")
    with pytest.raises(ValueError, match="empty"):
        hts_fast.conv2d_matrices(np.ones((0, 2, 1, 1)))
