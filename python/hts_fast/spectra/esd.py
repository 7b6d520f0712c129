"""Empirical spectral densities (ESDs): eigenvalues of W^T W, one matrix or many."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

import numpy as np

from .. import _threads
from .._arrays import as_matrix
from .exact import check_scale, decompose, error_for, exact_esd, method_code, tagged
from .randomized import top_eigenvalues

EsdMethod = Literal["svd", "gram", "gram32", "randomized"]


def _randomized_options(method: str, k: int | None, options: dict[str, Any]) -> dict[str, Any]:
    """The top_eigenvalues() options of method="randomized" (None: not that method)."""
    given = {key: value for key, value in options.items() if value is not None}
    if method != "randomized":
        if k is not None or given:
            msg = f"k, oversample, power_iters, seed and tol need method='randomized' (got {method!r})"
            raise ValueError(msg)
        method_code(method)
        return {}
    if k is None:
        msg = "method='randomized' needs k, the number of top eigenvalues to compute"
        raise ValueError(msg)
    return {"k": k, **given}


def esd(
    W: Any, *, method: EsdMethod = "svd", scale: float = 1.0, threads: int | None = None,
    k: int | None = None, oversample: int | None = None, power_iters: int | None = None,
    seed: int | None = None, tol: float | None = None,
) -> np.ndarray:  # fmt: skip
    """Return the eigenvalues of (scale*W)^T (scale*W), float64, ascending.

    With ``method="randomized"`` only the ``k`` largest, each certified to relative accuracy
    ``tol`` (default 1e-8): see :func:`hts_fast.spectra.randomized.top_eigenvalues` for
    ``oversample``, ``power_iters``, ``seed`` and ``tol``, and README "Randomized top-k ESDs".

    Parameters
    ----------
    W : array of shape (rows, cols)
        NumPy float16/32/64 array or CPU torch tensor; any strides. It is copied once, to
        float64 (LAPACK overwrites its input), or not at all for ``gram`` with a contiguous
        float64 matrix and ``scale=1``. Big-endian arrays are converted to native order.
    method : {"svd", "gram", "gram32", "randomized"}
        ``"svd"``: float64 LAPACK dgesdd on W, the same call ``scipy.linalg.svd`` makes
        (and so WeightWatcher on a CPU). ``"gram"``: float64 Gram matrix of the smaller side
        (dsyrk) and a symmetric eigensolver (dsyevd); about 2-3x faster, but eigenvalues
        below ~1e-15 * lambda_max are rounding noise (singular values below ~3e-8 * sv_max
        are lost), so rank and tiny-eigenvalue counts need ``"svd"``. Negative noise is
        clipped to 0. ``"gram32"``: the Gram matrix in float32 (W converted 512 rows at a
        time, BLAS ssyrk), then the same float64 eigensolver: ~1.2-1.8x faster than
        ``"gram"`` on large layers, each eigenvalue within
        :func:`hts_fast.analysis.fast_route.error_bound` (u32 * sqrt(larger side) *
        lambda_max / 4; in analyze() a guard redoes a layer in float64 when that bound
        could change its fit; analyze()'s default for large layers is ``"gram"``).
    scale : float
        Multiplies W before the decomposition (eigenvalues scale by ``scale**2``).
    threads : int or None
        Accepted for symmetry with :func:`esd_batch`; one matrix is always decomposed by
        one single-threaded LAPACK call (see Notes).

    Returns
    -------
    ndarray of shape (min(rows, cols),)
        Squared singular values of ``scale*W`` in the units of W squared.

    Raises
    ------
    TypeError
        Non-float dtype (ints, bools, complex) or an unreadable object.
    ValueError
        Not 2-D, empty, NaN/Inf entries, unknown method, or an SVD that did not converge.

    Notes
    -----
    BLAS runs single-threaded inside hts_fast: multi-threaded OpenBLAS gives results that
    differ in the last bits with the thread count. Parallelism comes from decomposing
    several matrices at once (:func:`esd_batch`).
    """
    _threads.resolve_threads(threads)  # checked only: one matrix is one LAPACK call
    options = _randomized_options(method, k, {"oversample": oversample, "power_iters":
                                              power_iters, "seed": seed, "tol": tol})  # fmt: skip
    if options:
        return top_eigenvalues(W, scale=check_scale(scale), **options).values
    return exact_esd(W, method, scale)


def esd_batch(
    matrices: Sequence[Any],
    *,
    method: EsdMethod = "svd",
    scales: Sequence[float] | float = 1.0,
    threads: int | None = None,
    on_error: Literal["raise", "return"] = "raise",
    k: int | None = None,
    oversample: int | None = None,
    power_iters: int | None = None,
    seed: int | None = None,
    tol: float | None = None,
) -> list[np.ndarray | ValueError | TypeError]:
    """Return the ESD of every matrix, in input order.

    ``method="randomized"`` with ``k`` and its options as for :func:`esd`: the top-k of every
    matrix, equal shapes next to each other, ``threads`` matrices at a time; each result
    equals the single call's.

    Matrices of equal shape are grouped and the groups are decomposed largest first across a
    pool of ``threads`` worker threads, one single-threaded LAPACK call per matrix. Each
    matrix is decomposed by exactly one such call, so the result does not depend on the
    thread count.

    Parameters
    ----------
    matrices : sequence of 2-D arrays
        As for :func:`esd`.
    method, threads
        As for :func:`esd`.
    scales : float or sequence of floats
        One multiplier for all matrices or one per matrix.
    on_error : {"raise", "return"}
        ``"raise"``: the first bad matrix raises, naming its index. ``"return"``: its slot
        in the result holds the exception instead and the other matrices are still computed;
        the exception's ``detail`` attribute is its message after "matrix k".

    Returns
    -------
    list of ndarray
        ``result[k]`` is ``esd(matrices[k], scale=scales[k])``.
    """
    if on_error not in ("raise", "return"):
        msg = f"on_error must be 'raise' or 'return', got {on_error!r}"
        raise ValueError(msg)
    options = _randomized_options(method, k, {"oversample": oversample, "power_iters":
                                              power_iters, "seed": seed, "tol": tol})  # fmt: skip
    n_threads = _threads.resolve_threads(threads)
    items = list(matrices)
    if np.ndim(scales) == 0:
        scale_list = [check_scale(scales)] * len(items)
    else:
        scale_list = [check_scale(s) for s in scales]
        if len(scale_list) != len(items):
            msg = f"got {len(scale_list)} scales for {len(items)} matrices"
            raise ValueError(msg)

    results: list[Any] = [None] * len(items)
    groups: dict[tuple[int, int], list[int]] = defaultdict(list)
    arrays: dict[int, np.ndarray] = {}
    for idx, item in enumerate(items):
        try:
            arrays[idx] = as_matrix(item, f"matrix {idx}")
        except (TypeError, ValueError) as exc:
            results[idx] = tagged(exc, f"matrix {idx}")
            continue
        groups[arrays[idx].shape].append(idx)

    # Largest work first keeps the pool busy to the end; order does not change any value.
    def cost(shape: tuple[int, int]) -> int:
        big, small = max(shape), min(shape)
        return big * small * small

    order = [i for shape in sorted(groups, key=cost, reverse=True) for i in groups[shape]]
    if order and options:

        def one(i: int) -> Any:
            try:
                return top_eigenvalues(arrays[i], scale=scale_list[i], **options).values
            except (TypeError, ValueError, RuntimeError) as exc:
                return tagged(type(exc)(f"matrix {i}: {exc}"), f"matrix {i}")

        with ThreadPoolExecutor(max_workers=n_threads) as pool:
            for i, value in zip(order, pool.map(one, order), strict=True):
                results[i] = value
    elif order:
        outputs = decompose(
            [arrays[i] for i in order], method, [scale_list[i] for i in order], n_threads
        )
        for i, (values, code, info) in zip(order, outputs, strict=True):
            what = f"matrix {i}"
            results[i] = (
                tagged(error_for(code, info, what, arrays[i].shape, method), what)
                if code
                else values
            )
    if on_error == "raise":
        for result in results:
            if isinstance(result, Exception):
                raise result
    return results
