"""Bad input: clear, specific errors; one bad item never sinks a batch."""

from __future__ import annotations

import math

import hts_fast
import numpy as np
import pytest


@pytest.mark.parametrize(
    ("values", "match"),
    [
        ([], "no eigenvalues"),
        ([1.0, np.nan, 3.0], r"eigenvalue 1 is nan; NaN and Inf"),
        ([1.0, 2.0, np.inf], r"eigenvalue 2 is inf"),
        ([1.0, -0.5, 3.0], r"eigenvalue 1 is negative \(-0.5\)"),
        ([0.5], r"only 1 eigenvalue\(s\) above the threshold 1e-05"),
        ([1e-9, 1e-8, 2.0], r"only 1 eigenvalue\(s\) above"),
        (np.zeros(10), r"only 0 eigenvalue\(s\)"),
        (np.ones((3, 3)), r"must be a 1-D array.*hts_fast.esd\(\) first"),
    ],
)
def test_fit_errors(values, match):
    with pytest.raises(ValueError, match=match):
        hts_fast.fit_powerlaw(values)


def test_fit_type_errors():
    with pytest.raises(TypeError, match="complex"):
        hts_fast.fit_powerlaw(np.array([1 + 1j, 2.0]))
    with pytest.raises(TypeError, match="unsupported dtype"):
        hts_fast.fit_powerlaw(np.array(["a", "b"]))
    with pytest.raises(ValueError, match="threshold must be"):
        hts_fast.fit_powerlaw([1.0, 2.0], threshold=-1)


def test_two_values_are_enough():
    fit = hts_fast.fit_powerlaw([1.0, 2.0])
    assert fit.status == "success"
    assert fit.method == "small_n"


def test_batch_records_failures_and_keeps_the_rest():
    rng = np.random.default_rng(0)
    good = (1 - rng.random(300)) ** -0.5
    spectra = [good, [np.nan, 1.0], [], good[:40], np.ones((2, 2)), [-1.0, 2.0], "x"]
    out = hts_fast.fit_powerlaw_batch(spectra, threads=2)
    assert len(out) == len(spectra)
    assert [r.status for r in out] == [
        "success",
        "failed",
        "failed",
        "success",
        "failed",
        "failed",
        "failed",
    ]
    assert out[0] == hts_fast.fit_powerlaw(good)
    assert out[3] == hts_fast.fit_powerlaw(good[:40])
    assert "NaN" in out[1].reason
    assert "empty" in out[2].reason
    assert "1-D" in out[4].reason
    assert "negative" in out[5].reason
    assert "unsupported dtype" in out[6].reason
    assert math.isnan(out[1].alpha)
    assert out[1].num_pl_spikes == 0


@pytest.mark.parametrize(
    ("matrix", "error", "match"),
    [
        (np.array([[1.0, np.nan], [0.0, 1.0]]), ValueError, "contains NaN or Inf"),
        (np.array([[1.0, np.inf], [0.0, 1.0]], dtype=np.float32), ValueError, "NaN or Inf"),
        (np.array([[np.inf]], dtype=np.float16), ValueError, "NaN or Inf"),
        (np.zeros((0, 4)), ValueError, r"empty \(shape \(0, 4\)\)"),
        (np.ones(5), ValueError, "must be a 2-D matrix, got 1-D"),
        (np.ones((2, 3, 4, 5)), ValueError, "esd_conv2d"),
        (np.ones((3, 3), dtype=np.int32), TypeError, "unsupported dtype int32"),
        (np.ones((3, 3), dtype=bool), TypeError, "unsupported dtype bool"),
        (np.ones((3, 3), dtype=np.complex128), TypeError, "complex"),
        (np.ones((3, 3), dtype=np.longdouble), TypeError, "unsupported dtype"),
    ],
)
@pytest.mark.parametrize("method", ["svd", "gram"])
def test_esd_errors(matrix, error, match, method):
    with pytest.raises(error, match=match):
        hts_fast.esd(matrix, method=method)


def test_esd_option_errors():
    with pytest.raises(ValueError, match="method must be one of"):
        hts_fast.esd(np.ones((2, 2)), method="eig")
    with pytest.raises(ValueError, match="threads must be >= 1"):
        hts_fast.esd(np.ones((2, 2)), threads=0)
    with pytest.raises(ValueError, match="on_error"):
        hts_fast.esd_batch([np.ones((2, 2))], on_error="ignore")
    with pytest.raises(ValueError, match="2 scales for 1 matrices"):
        hts_fast.esd_batch([np.ones((2, 2))], scales=[1.0, 2.0])


def test_esd_batch_error_names_the_matrix_and_can_be_collected():
    good = np.random.default_rng(1).standard_normal((6, 4))
    bad = good.copy()
    bad[2, 1] = np.nan
    with pytest.raises(ValueError, match=r"matrix 1 .* contains NaN"):
        hts_fast.esd_batch([good, bad, np.ones(3)])
    out = hts_fast.esd_batch([good, bad, np.ones(3), good], on_error="return")
    np.testing.assert_array_equal(out[0], hts_fast.esd(good))
    np.testing.assert_array_equal(out[3], hts_fast.esd(good))
    assert isinstance(out[1], ValueError)
    assert "NaN" in str(out[1])
    assert isinstance(out[2], ValueError)
    assert "2-D" in str(out[2])


def test_big_endian_input_is_read_correctly():
    w = np.random.default_rng(2).standard_normal((20, 12))
    for dtype in (">f8", ">f4"):
        swapped = w.astype(dtype)
        for method in ("svd", "gram"):
            np.testing.assert_allclose(
                hts_fast.esd(swapped, method=method),
                hts_fast.esd(swapped.astype(swapped.dtype.newbyteorder("=")), method=method),
                rtol=1e-13,
            )


def test_bad_scales_and_overflow():
    w = np.ones((4, 3))
    for scale in (np.inf, np.nan):
        with pytest.raises(ValueError, match="scale must be a finite number"):
            hts_fast.esd(w, scale=scale)
    with pytest.raises(ValueError, match="beyond the float64 range"):
        hts_fast.esd(w, scale=1e200)
    out = hts_fast.esd_batch([w, w], scales=np.float32(2.0))
    np.testing.assert_allclose(out[0], hts_fast.esd(w) * 4, rtol=1e-14)


def test_kernel_never_fits_zeros_even_with_a_negative_threshold():
    from hts_fast._core_loader import core

    fields = core.fit_powerlaw(np.r_[0.0, 0.0, np.arange(1.0, 10.0)], -1.0, 20, 8)
    assert fields[6] == 9  # num_fit: the zeros are left out
    assert np.isfinite(fields[0])


def test_curve_error_reports_the_fitted_count():
    with pytest.raises(ValueError, match=r"only 1 eigenvalue\(s\)"):
        hts_fast.powerlaw_curve([1e-9, 2.0])
