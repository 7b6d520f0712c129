"""ESDs through the compiled kernels: one single-threaded LAPACK call per matrix (dgesdd for
``"svd"``, a float64 Gram product and dsyevd for ``"gram"``, a float32 Gram product and the
same float64 eigensolver for ``"gram32"``), the error messages of those calls, and the Gram
route's symmetric eigensolver. ``"svd"`` and ``"gram"`` are exact to float64 rounding;
``"gram32"`` to the float32 Gram product's (:func:`hts_fast.analysis.fast_route.error_bound`)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .. import _threads
from .._arrays import as_float_array, as_matrix
from .._core_loader import core

#: The kernels' code of each method.
METHOD_CODES = {"svd": 0, "gram": 1, "gram32": 2}
#: What the kernels' error codes mean (4: LAPACK failed, see error_for).
_ERRORS = {
    1: "is empty",
    2: "contains NaN or Inf values",
    3: "is too large for 32-bit LAPACK indexing",
    5: "has eigenvalues beyond the float64 range (matrix or scale too large)",
}
_ROUTINES = {0: "the SVD (LAPACK dgesdd)", 1: "the eigensolver (LAPACK dsyevd)",
             2: "the eigensolver (LAPACK dsyevd)"}  # fmt: skip


def method_code(method: str) -> int:
    """The kernels' code of a method; ValueError naming the choices otherwise, RuntimeError
    for ``"gram32"`` when the float32 LAPACK routines could not be installed."""
    try:
        code = METHOD_CODES[method]
    except (KeyError, TypeError):
        msg = f"method must be one of {[*sorted(METHOD_CODES), 'randomized']}, got {method!r}"
        raise ValueError(msg) from None
    if code == 2 and not core._float32_ready():
        msg = "method='gram32' needs LAPACK ssyevd and BLAS ssyrk, which SciPy did not provide"
        raise RuntimeError(msg)
    return code


def error_for(code: int, info: int, what: str, shape: tuple[int, ...], method: str) -> ValueError:
    """The ValueError for a kernel's error code (and LAPACK's ``info``) on matrix ``what``."""
    if code == 4:
        routine = _ROUTINES[METHOD_CODES[method]]
        problem = (
            f"{routine} did not converge (info={info})"
            if info > 0
            else f"{routine} rejected argument {-info} (an internal error, please report it)"
        )
        return ValueError(f"{what} (shape {shape}): {problem}")
    return ValueError(f"{what} (shape {shape}) {_ERRORS.get(code, f'failed (code {code})')}")


def tagged(exc: Exception, what: str) -> Exception:
    """Attach ``detail``: the message after the matrix's name (``what``), so that a caller
    can name the matrix its own way (analyze() says "weight ...")."""
    text = str(exc)
    exc.detail = text[len(what) :] if text.startswith(what) else f": {text}"  # type: ignore[attr-defined]
    return exc


def check_scale(scale: Any) -> float:
    """``scale`` as a float; ValueError unless it is finite."""
    value = float(scale)
    if not math.isfinite(value):
        msg = f"scale must be a finite number, got {scale!r}"
        raise ValueError(msg)
    return value


def decompose(
    matrices: list[np.ndarray], method: str, scales: list[float], threads: int
) -> list[tuple[np.ndarray, int, int]]:
    """Decompose every matrix with one single-threaded LAPACK call each.

    Up to ``threads`` matrices are decomposed at once. BLAS is pinned to one thread per
    call because OpenBLAS rounds differently with different thread counts (measured here:
    ~1e-15 relative), and results must not depend on the thread count.
    """
    code = method_code(method)
    with _threads.single_threaded_blas():
        return core.esd_batch(matrices, code, scales, threads)


def symmetric_eigenvalues(a: Any, *, overwrite: bool = False) -> np.ndarray:
    """Eigenvalues of a real symmetric matrix, ascending (float64; its units squared if ``a``
    is a Gram matrix), by the Gram route's compiled eigensolver: LAPACK dsyevd, or the
    two-stage dsyevd for orders >= 2,048 when SciPy's OpenBLAS has it (docs/architecture.md,
    "LAPACK and threads").

    ``a`` is assumed symmetric: only one triangle is read. ``a`` is not modified, unless
    ``overwrite`` and it is already a writeable C-ordered float64 array, which the solver
    then uses as its workspace (no copy). BLAS runs on one thread, so the result does not
    depend on the thread count. Raises ValueError for a non-square, empty or non-finite
    matrix or when LAPACK fails.
    """
    matrix = np.asarray(as_float_array(a, "a"), dtype=np.float64, order="C")
    if not (overwrite and matrix is a and matrix.flags.writeable):
        matrix = matrix.copy()  # never write into the caller's memory (nor a view of it)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        msg = f"a must be a square matrix, got shape {matrix.shape}"
        raise ValueError(msg)
    with _threads.single_threaded_blas():
        values, code, info = core.symmetric_eigenvalues(matrix)
    if code:
        raise error_for(code, info, "matrix", matrix.shape, "gram")
    return values


def exact_esd(W: Any, method: str, scale: Any = 1.0) -> np.ndarray:
    """The eigenvalues of (scale*W)^T (scale*W) by ``method`` ("svd", "gram" or "gram32"),
    float64, ascending: :func:`hts_fast.esd`'s compiled routes. Raises TypeError or ValueError naming
    the matrix "W" (checked before ``scale``)."""
    matrix = as_matrix(W, "W")
    values, code, info = decompose([matrix], method, [check_scale(scale)], 1)[0]
    if code:
        raise error_for(code, info, "W", matrix.shape, method)
    return values
