"""Gram ESDs of order >= 2,048 use LAPACK's two-stage dsyevd when SciPy's OpenBLAS has it
(hts_fast._lapack); the eigenvalues stay those of the gesdd route to ~1e-14."""

from __future__ import annotations

import os
import subprocess
import sys

import hts_fast
import numpy as np
import pytest
from hts_fast import _lapack
from hts_fast._core_loader import core

ORDER = 2048


def test_found_in_scipys_openblas_and_reported():
    found = _lapack._two_stage_address() != 0
    assert bool(core._two_stage_ready()) == found
    assert hts_fast.build_info()["lapack"]["dsyevd_2stage"] == found
    if not found:
        pytest.skip("this SciPy's OpenBLAS has no dsyevd_2stage: dsyevd is used")


def test_large_gram_esd_equals_the_svd_route():
    w = np.random.default_rng(3).standard_t(4.0, (ORDER + 100, ORDER)).astype(np.float32)
    gram = hts_fast.esd(w, method="gram", threads=1)
    svd = hts_fast.esd(w, method="svd", threads=1)
    assert np.max(np.abs(gram - svd)) <= 1e-12 * svd[-1]


def test_switch_off_gives_dsyevd():
    code = ("import hts_fast; from hts_fast._core_loader import core, LAPACK_SOURCE; "
            "print(core._two_stage_ready(), LAPACK_SOURCE)")  # fmt: skip
    env = {**os.environ, "HTS_FAST_TWO_STAGE": "0"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True).stdout  # fmt: skip
    assert out.startswith("False ")
    assert "2stage" not in out


@pytest.mark.parametrize("order", [5, 300, ORDER])
def test_symmetric_eigenvalues_equal_scipy(order):
    import scipy.linalg
    from hts_fast.spectra.exact import symmetric_eigenvalues

    rng = np.random.default_rng(order)
    x = rng.standard_normal((order, order))
    a = (x + x.T) / 2  # symmetric, eigenvalues of both signs
    before = a.copy()
    got = symmetric_eigenvalues(a)
    np.testing.assert_array_equal(a, before)  # the input is not overwritten
    want = scipy.linalg.eigvalsh(a)
    assert np.max(np.abs(got - want)) <= 1e-12 * np.max(np.abs(want))


def test_symmetric_eigenvalues_bad_input():
    from hts_fast.spectra.exact import symmetric_eigenvalues

    with pytest.raises(ValueError, match="square"):
        symmetric_eigenvalues(np.zeros((3, 4)))
    with pytest.raises(ValueError, match="contains NaN or Inf values"):
        symmetric_eigenvalues(np.full((3, 3), np.nan))


def test_symmetric_eigenvalues_overwrite_uses_the_array_in_place():
    from hts_fast.spectra.exact import symmetric_eigenvalues

    x = np.random.default_rng(4).standard_normal((50, 50))
    a = x @ x.T
    want = symmetric_eigenvalues(a)
    work = a.copy()
    np.testing.assert_array_equal(symmetric_eigenvalues(work, overwrite=True), want)
    assert not np.array_equal(work, a)  # the solver's workspace
    frozen = a.copy()
    frozen.flags.writeable = False
    np.testing.assert_array_equal(symmetric_eigenvalues(frozen, overwrite=True), want)
    single = a.astype(np.float32)
    before = single.copy()
    symmetric_eigenvalues(single, overwrite=True)  # converted: the float32 input stays
    np.testing.assert_array_equal(single, before)
