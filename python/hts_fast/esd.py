"""Empirical spectral densities (ESDs): eigenvalues of W^T W, one matrix or many."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

import numpy as np

from . import _threads
from ._arrays import as_float_array, as_matrix
from ._core_loader import core

EsdMethod = Literal["svd", "gram", "randomized"]
_METHOD_CODES = {"svd": 0, "gram": 1}
_ERRORS = {
    1: "is empty",
    2: "contains NaN or Inf values",
    3: "is too large for 32-bit LAPACK indexing",
    5: "has eigenvalues beyond the float64 range (matrix or scale too large)",
}
_ROUTINES = {0: "the SVD (LAPACK dgesdd)", 1: "the eigensolver (LAPACK dsyevd)"}


def _method_code(method: str) -> int:
    try:
        return _METHOD_CODES[method]
    except (KeyError, TypeError):
        msg = f"method must be one of {[*sorted(_METHOD_CODES), 'randomized']}, got {method!r}"
        raise ValueError(msg) from None


def _randomized_options(method: str, k: int | None, options: dict[str, Any]) -> dict[str, Any]:
    """The top_eigenvalues() options of method="randomized" (None: not that method)."""
    given = {key: value for key, value in options.items() if value is not None}
    if method != "randomized":
        if k is not None or given:
            msg = f"k, oversample, power_iters, seed and tol need method='randomized' (got {method!r})"
            raise ValueError(msg)
        _method_code(method)
        return {}
    if k is None:
        msg = "method='randomized' needs k, the number of top eigenvalues to compute"
        raise ValueError(msg)
    return {"k": k, **given}


def _error_for(code: int, info: int, what: str, shape: tuple[int, ...], method: str) -> ValueError:
    if code == 4:
        routine = _ROUTINES[_METHOD_CODES[method]]
        problem = (
            f"{routine} did not converge (info={info})"
            if info > 0
            else f"{routine} rejected argument {-info} (an internal error, please report it)"
        )
        return ValueError(f"{what} (shape {shape}): {problem}")
    return ValueError(f"{what} (shape {shape}) {_ERRORS.get(code, f'failed (code {code})')}")


def _tagged(exc: Exception, what: str) -> Exception:
    """Attach ``detail``: the message after the matrix's name (``what``), so that a caller
    can name the matrix its own way (analyze() says "weight ...")."""
    text = str(exc)
    exc.detail = text[len(what) :] if text.startswith(what) else f": {text}"  # type: ignore[attr-defined]
    return exc


def _check_scale(scale: Any) -> float:
    value = float(scale)
    if not math.isfinite(value):
        msg = f"scale must be a finite number, got {scale!r}"
        raise ValueError(msg)
    return value


def _run(
    matrices: list[np.ndarray], method: str, scales: list[float], threads: int
) -> list[tuple[np.ndarray, int, int]]:
    """Decompose every matrix with one single-threaded LAPACK call each.

    Up to ``threads`` matrices are decomposed at once. BLAS is pinned to one thread per
    call because OpenBLAS rounds differently with different thread counts (measured here:
    ~1e-15 relative), and results must not depend on the thread count.
    """
    code = _method_code(method)
    with _threads.single_threaded_blas():
        return core.esd_batch(matrices, code, scales, threads)


def esd(
    W: Any, *, method: EsdMethod = "svd", scale: float = 1.0, threads: int | None = None,
    k: int | None = None, oversample: int | None = None, power_iters: int | None = None,
    seed: int | None = None, tol: float | None = None,
) -> np.ndarray:  # fmt: skip
    """Return the eigenvalues of (scale*W)^T (scale*W), float64, ascending.

    With ``method="randomized"`` only the ``k`` largest, each certified to relative accuracy
    ``tol`` (default 1e-8): see :func:`hts_fast.esd_randomized.top_eigenvalues` for
    ``oversample``, ``power_iters``, ``seed`` and ``tol``, and README "Randomized top-k ESDs".

    Parameters
    ----------
    W : array of shape (rows, cols)
        NumPy float16/32/64 array or CPU torch tensor; any strides. It is copied once, to
        float64 (LAPACK overwrites its input), or not at all for ``gram`` with a contiguous
        float64 matrix and ``scale=1``. Big-endian arrays are converted to native order.
    method : {"svd", "gram", "randomized"}
        ``"svd"``: float64 LAPACK dgesdd on W, the same call ``scipy.linalg.svd`` makes
        (and so WeightWatcher on a CPU). ``"gram"``: float64 Gram matrix of the smaller side
        (dsyrk) and a symmetric eigensolver (dsyevd); about 2-3x faster, but eigenvalues
        below ~1e-15 * lambda_max are rounding noise (singular values below ~3e-8 * sv_max
        are lost), so rank and tiny-eigenvalue counts need ``"svd"``. Negative noise is
        clipped to 0.
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
    n_threads = _threads.resolve_threads(threads)
    options = _randomized_options(method, k, {"oversample": oversample, "power_iters":
                                              power_iters, "seed": seed, "tol": tol})  # fmt: skip
    if options:
        from .esd_randomized import top_eigenvalues

        return top_eigenvalues(W, scale=_check_scale(scale), **options).values
    matrix = as_matrix(W, "W")
    values, code, info = _run([matrix], method, [_check_scale(scale)], n_threads)[0]
    if code:
        raise _error_for(code, info, "W", matrix.shape, method)
    return values


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
        scale_list = [_check_scale(scales)] * len(items)
    else:
        scale_list = [_check_scale(s) for s in scales]
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
            results[idx] = _tagged(exc, f"matrix {idx}")
            continue
        groups[arrays[idx].shape].append(idx)

    # Largest work first keeps the pool busy to the end; order does not change any value.
    def cost(shape: tuple[int, int]) -> int:
        big, small = max(shape), min(shape)
        return big * small * small

    order = [i for shape in sorted(groups, key=cost, reverse=True) for i in groups[shape]]
    if order and options:
        from .esd_randomized import top_eigenvalues

        def one(i: int) -> Any:
            try:
                return top_eigenvalues(arrays[i], scale=scale_list[i], **options).values
            except (TypeError, ValueError, RuntimeError) as exc:
                return _tagged(type(exc)(f"matrix {i}: {exc}"), f"matrix {i}")

        with ThreadPoolExecutor(max_workers=n_threads) as pool:
            for i, value in zip(order, pool.map(one, order), strict=True):
                results[i] = value
    elif order:
        outputs = _run(
            [arrays[i] for i in order], method, [scale_list[i] for i in order], n_threads
        )
        for i, (values, code, info) in zip(order, outputs, strict=True):
            what = f"matrix {i}"
            results[i] = (
                _tagged(_error_for(code, info, what, arrays[i].shape, method), what)
                if code
                else values
            )
    if on_error == "raise":
        for result in results:
            if isinstance(result, Exception):
                raise result
    return results


def layer_spectra(
    matrices: Sequence[Any],
    scales: Sequence[float],
    layers: Sequence[tuple[int, int, int | None]],
    Ns: Sequence[float],
    *,
    method: str = "svd",
    threads: int | None = None,
    tolerance: float = 1e-6,
    compat: bool = False,
) -> list[tuple[np.ndarray, Any, Any, tuple[Any, ...]] | Exception]:
    """Each layer's pooled ESD, singular-value summary, power-law fit and norm sums, in one
    compiled pass.

    ``layers``: (first, count, keep_top) per layer, its matrices being
    ``matrices[first:first + count]`` (keep_top: keep only that many largest pooled
    eigenvalues, else None). ``Ns``: each layer's N (rank-loss tolerance). One thread handles
    a layer from its decompositions to its fit, so the fits of finished layers overlap the
    decompositions of the others; the results equal :func:`esd_batch`, pooling with
    ``np.sort`` and :func:`hts_fast.fits.fit_powerlaw_batch` bit for bit.

    Returns per layer either (pooled ascending ESD, :class:`hts_fast.metrics.LayerSliceStats`
    (equal to :func:`hts_fast.metrics.batch_slice_stats` of its matrices' ESDs),
    PowerLawFit, norm sums (norm, lambda_max, matrix_rank, weak_rank_loss, entropy,
    sum(evals**alpha)) as :func:`hts_fast.metrics.batch_norm_metrics` computes them with the
    fit's alpha, NaN when it failed or -1 with ``compat``; ``tolerance``: weak rank loss)
    or the exception of its first bad matrix (``detail``: the message after "matrix k", as
    esd_batch's). :func:`layer_spectra_table` returns the same as arrays.
    """
    table = layer_spectra_table(matrices, scales, layers, Ns, method=method, threads=threads,
                                tolerance=tolerance, compat=compat)  # fmt: skip
    return [table.errors[k] if k in table.errors
            else (table.pooled[k], table.slice_stats(k), table.fit(k), table.norm_sums(k))
            for k in range(len(layers))]  # fmt: skip


class LayerSpectraTable:
    """:func:`layer_spectra_table`'s result: one row per layer.

    Attributes
    ----------
    pooled : list of ndarray or None
        Each layer's pooled ascending ESD (None for a layer in ``errors``).
    reals : ndarray, float64, shape (layers, 12)
        Columns :attr:`REALS`: sv_max, the smallest and the largest of the matrices' smallest
        singular values (units of W), the norm sums, and the fit's alpha, xmin, xmax, D, sigma.
    counts : ndarray, int64, shape (layers, 13)
        Columns :attr:`COUNTS`.
    errors : dict of int to Exception
        The layers that could not be decomposed, with their first bad matrix's exception.
    """

    REALS = ("sv_max", "sv_min_smallest", "sv_min_largest", "norm", "lambda_max", "entropy",
             "alpha_norm_sum", "alpha", "xmin", "xmax", "D", "sigma")  # fmt: skip
    COUNTS = ("rank_loss", "matrix_rank", "weak_rank_loss", "num_pl_spikes", "num_fit",
              "xmin_index", "fit_method", "fit_error", "fit_bad_index", "esd_error", "esd_info",
              "failed_matrix", "num_evals")  # fmt: skip

    def __init__(self, pooled: list[Any], reals: np.ndarray, counts: np.ndarray,
                 errors: dict[int, Exception]) -> None:  # fmt: skip
        self.pooled, self.reals, self.counts, self.errors = pooled, reals, counts, errors

    @classmethod
    def concatenate(cls, tables: Sequence[LayerSpectraTable]) -> LayerSpectraTable:
        """The rows of several tables (chunks), in order; none may hold errors."""
        if len(tables) == 1:
            return tables[0]
        assert not any(t.errors for t in tables)
        if not tables:
            return cls([], np.zeros((0, len(cls.REALS))),
                       np.zeros((0, len(cls.COUNTS)), dtype=np.int64), {})  # fmt: skip
        return cls([e for t in tables for e in t.pooled], np.concatenate([t.reals for t in tables]),
                   np.concatenate([t.counts for t in tables]), {})  # fmt: skip

    def select(self, rows: Sequence[int]) -> LayerSpectraTable:
        """These rows only (errors dropped)."""
        return LayerSpectraTable([self.pooled[k] for k in rows], self.reals[rows],
                                 self.counts[rows], {})  # fmt: skip

    def fits(self) -> list[Any]:
        """Every row's :class:`hts_fast.fits.PowerLawFit` (no row may be in ``errors``)."""
        return [self.fit(k) for k in range(len(self.pooled))]

    def real(self, name: str) -> np.ndarray:
        """One float64 column (a view), every layer."""
        return self.reals[:, self.REALS.index(name)]

    def count(self, name: str) -> np.ndarray:
        """One int64 column (a view), every layer."""
        return self.counts[:, self.COUNTS.index(name)]

    def fit_fields(self, k: int) -> tuple[Any, ...]:
        """Layer k's fit as the kernels' field tuple (fits._to_result's order)."""
        return (*self.reals[k, _FIT_REALS].tolist(), *self.counts[k, _FIT_COUNTS].tolist())

    def fit(self, k: int) -> Any:
        """Layer k's :class:`hts_fast.fits.PowerLawFit`."""
        from .fits import DEFAULT_THRESHOLD, _to_result

        return _to_result(self.fit_fields(k), self.pooled[k], DEFAULT_THRESHOLD)

    def slice_stats(self, k: int) -> Any:
        """Layer k's :class:`hts_fast.metrics.LayerSliceStats`."""
        from .metrics import LayerSliceStats

        return LayerSliceStats(*self.reals[k, _STATS_REALS].tolist(),
                               int(self.counts[k, self.COUNTS.index("rank_loss")]))  # fmt: skip

    def norm_sums(self, k: int) -> tuple[Any, ...]:
        """Layer k's norm sums: norm, lambda_max, matrix_rank, weak_rank_loss, entropy,
        sum(evals**alpha)."""
        norm, lambda_max, entropy, alpha_sum = (self.reals[k, self.REALS.index(name)] for name
                                                in ("norm", "lambda_max", "entropy",
                                                    "alpha_norm_sum"))  # fmt: skip
        rank, weak = (int(self.counts[k, self.COUNTS.index(name)])
                      for name in ("matrix_rank", "weak_rank_loss"))  # fmt: skip
        return (float(norm), float(lambda_max), rank, weak, float(entropy), float(alpha_sum))


def _span(names: tuple[str, ...], first: str, last: str) -> slice:
    return slice(names.index(first), names.index(last) + 1)


# runs of LayerSpectraTable columns: the fit's fields in fits._to_result's order (alpha, xmin,
# xmax, D, sigma; num_pl_spikes, num_fit, xmin_index, method, error, bad index) and the
# singular-value summary (sv_max, smallest and largest sv_min)
_FIT_REALS = _span(LayerSpectraTable.REALS, "alpha", "sigma")
_FIT_COUNTS = _span(LayerSpectraTable.COUNTS, "num_pl_spikes", "fit_bad_index")
_STATS_REALS = _span(LayerSpectraTable.REALS, "sv_max", "sv_min_largest")
_ESD_ERROR = LayerSpectraTable.COUNTS.index("esd_error")
_ESD_ERROR_INFO_WHERE = _span(LayerSpectraTable.COUNTS, "esd_error", "failed_matrix")


def layer_spectra_table(
    matrices: Sequence[Any],
    scales: Sequence[float],
    layers: Sequence[tuple[int, int, int | None]],
    Ns: Sequence[float],
    *,
    method: str = "svd",
    threads: int | None = None,
    tolerance: float = 1e-6,
    compat: bool = False,
    keep_pooled: bool = True,
) -> LayerSpectraTable:
    """:func:`layer_spectra` as a :class:`LayerSpectraTable` (arrays, no per-layer objects).
    ``keep_pooled=False``: ``pooled`` holds None for every layer (only the table's numbers
    are wanted; :meth:`LayerSpectraTable.fits` then cannot be used).

    An entry of ``matrices`` may also be a 3-D NumPy array standing for its slices ``a[0]``,
    ``a[1]``, ... (a conv2d kernel's positions, without a Python object per slice);
    ``scales`` then has one value per entry and ``layers`` index the matrices so expanded.
    """
    code = _method_code(method)
    n_threads = _threads.resolve_threads(threads)
    scale_list = [float(s) for s in scales]
    for value in set(scale_list):  # a layer's matrices share one scale: check each once
        _check_scale(value)
    arrays = list(matrices)
    bad: dict[int, Exception] = {}  # matrices that could not be converted
    if any(type(m) is not np.ndarray for m in arrays):
        # anything but a NumPy array is converted first, one matrix per entry
        arrays, scale_list = expand_stacks(arrays, scale_list)
        arrays = [m if type(m) is np.ndarray else _as_matrix_or_error(m, idx)
                  for idx, m in enumerate(arrays)]  # fmt: skip
        bad = {idx: a for idx, a in enumerate(arrays) if isinstance(a, Exception)}
    norm_options = (float(tolerance), bool(compat))
    layer_list = list(layers)
    table, unreadable = _layer_spectra_call(arrays, scale_list, layer_list, list(Ns), code,
                                            method, n_threads, bad, norm_options,
                                            keep_pooled)  # fmt: skip
    if unreadable:  # arrays the kernels could not read as they are (e.g. foreign byte order)
        arrays, scale_list = expand_stacks(arrays, scale_list)
        for k in unreadable:
            first, count, _ = layer_list[k]
            for idx in range(first, first + count):
                arrays[idx] = _as_matrix_or_error(arrays[idx], idx)
        bad = {idx: a for idx, a in enumerate(arrays) if isinstance(a, Exception)}
        again, _ = _layer_spectra_call(arrays, scale_list, [layer_list[k] for k in unreadable],
                                       [Ns[k] for k in unreadable], code, method, n_threads,
                                       bad, norm_options, keep_pooled)  # fmt: skip
        for row, k in enumerate(unreadable):
            table.pooled[k] = again.pooled[row]
            table.reals[k] = again.reals[row]
            table.counts[k] = again.counts[row]
            table.errors.pop(k, None)
            if row in again.errors:  # still unreadable, or failed once converted
                table.errors[k] = again.errors[row]
    return table


def expand_stacks(entries: list[Any], scales: list[float]) -> tuple[list[Any], list[float]]:
    """Matrices and their scales, one per matrix, from layer_spectra_table()'s entries: every
    3-D NumPy stack replaced by its slices (views), its scale repeated."""
    if not any(type(e) is np.ndarray and e.ndim == 3 for e in entries):
        return list(entries), list(scales)
    matrices: list[Any] = []
    per_matrix: list[float] = []
    for entry, scale in zip(entries, scales, strict=True):
        parts = list(entry) if type(entry) is np.ndarray and entry.ndim == 3 else [entry]
        matrices.extend(parts)
        per_matrix.extend([scale] * len(parts))
    return matrices, per_matrix


def _as_matrix_or_error(item: Any, idx: int) -> Any:
    """as_matrix(item), or the item itself when it cannot be converted (the kernels then
    report it, and the retry keeps as_matrix's error)."""
    try:
        return as_matrix(item, f"matrix {idx}")
    except (TypeError, ValueError) as exc:
        return _tagged(exc, f"matrix {idx}")


def _layer_spectra_call(
    arrays: list[Any], scales: list[float], layers: list[tuple[int, int, int | None]],
    Ns: list[float], code: int, method: str, threads: int, bad: dict[int, Exception],
    norm_options: tuple[float, bool], keep_pooled: bool = True,
) -> tuple[LayerSpectraTable, list[int]]:  # fmt: skip
    """One compiled layer_spectra pass; ``bad``: the matrices that could not be converted
    (index -> its error), whose layers fail with that error without being run;
    ``norm_options``: (weak rank-loss tolerance, compat); ``keep_pooled``: return the pooled
    ESDs (else None for each). Returns the table and the layers with a matrix the kernels
    could not read (their errors are in the table too)."""
    from .fits import DEFAULT_THRESHOLD, SMALL_N_CUTOFF, SMALL_N_MIN_TAIL

    num = len(layers)
    errors: dict[int, Exception] = {}
    runnable, keep = arrays, list(range(num))
    if bad:  # layers holding a matrix that could not be converted fail with its error
        runnable = [np.zeros((1, 1)) if idx in bad else a for idx, a in enumerate(arrays)]
        keep = []
        for k, (first, count, _) in enumerate(layers):
            failed = next((i for i in range(first, first + count) if i in bad), None)
            if failed is None:
                keep.append(k)
            else:
                errors[k] = bad[failed]
    run = [layers[k] for k in keep]
    with _threads.single_threaded_blas():
        out_pooled, out_reals, out_ints, messages = core.layer_spectra(
            runnable, scales, [first for first, _, _ in run], [count for _, count, _ in run],
            [-1 if keep_top is None else keep_top for _, _, keep_top in run],
            [float(Ns[k]) for k in keep], code, DEFAULT_THRESHOLD, SMALL_N_CUTOFF,
            SMALL_N_MIN_TAIL, *norm_options, threads, keep_pooled)  # fmt: skip
    if len(keep) == num:
        pooled, reals, ints = out_pooled, out_reals, out_ints
    else:  # scatter the rows of the layers that ran; the others keep NaN / 0
        pooled = [None] * num
        reals = np.full((num, out_reals.shape[1]), np.nan)
        ints = np.zeros((num, out_ints.shape[1]), dtype=np.int64)
        reals[keep], ints[keep] = out_reals, out_ints
        for row, k in enumerate(keep):
            pooled[k] = out_pooled[row]
        row_of = {k: row for row, k in enumerate(keep)}
        messages = [messages[row_of[k]] if k in row_of else None for k in range(num)]
    unreadable: list[int] = []
    flat: list[Any] | None = None  # the matrices one by one, for the shape in a message
    for k in np.flatnonzero(ints[:, _ESD_ERROR]).tolist():
        error, info, where = ints[k, _ESD_ERROR_INFO_WHERE].tolist()
        what = f"matrix {where}"
        if error == -1:
            errors[k] = _tagged(ValueError(f"{what}: {messages[k]}"), what)
            unreadable.append(k)
        else:
            flat = flat if flat is not None else expand_stacks(arrays, scales)[0]
            errors[k] = _tagged(_error_for(error, info, what, flat[where].shape, method), what)
    for k in errors:
        pooled[k] = None
    return LayerSpectraTable(pooled, reals, ints, errors), unreadable


def symmetric_eigenvalues(a: Any, *, overwrite: bool = False) -> np.ndarray:
    """Eigenvalues of a real symmetric matrix, ascending (float64; its units squared if ``a``
    is a Gram matrix), by the Gram route's compiled eigensolver: LAPACK dsyevd, or the
    two-stage dsyevd for orders >= 2,048 when SciPy's OpenBLAS has it (see README "Layout").

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
        raise _error_for(code, info, "matrix", matrix.shape, "gram")
    return values
