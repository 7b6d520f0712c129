"""analyze()'s compiled pass: per layer, the pooled ESD of its matrices, their singular-value
summary, the power-law fit and the norm sums, one thread per layer
(``csrc/cpu/layer_spectra.cpp``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .. import _threads
from .._arrays import as_matrix
from .._core_loader import core
from ..fits.powerlaw import (
    DEFAULT_THRESHOLD,
    SMALL_N_CUTOFF,
    SMALL_N_MIN_TAIL,
    fit_from_fields,
)
from ..spectra.exact import check_scale, error_for, method_code, tagged
from .metrics import LayerSliceStats


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
    decompositions of the others; the results equal :func:`hts_fast.esd_batch`, pooling with
    ``np.sort`` and :func:`hts_fast.fit_powerlaw_batch` bit for bit.

    Returns per layer either (pooled ascending ESD, :class:`.metrics.LayerSliceStats` (equal to
    :func:`.metrics.batch_slice_stats` of its matrices' ESDs), PowerLawFit, norm sums (norm,
    lambda_max, matrix_rank, weak_rank_loss, entropy, sum(evals**alpha)) as
    :func:`.metrics.batch_norm_metrics` computes them with the fit's alpha, NaN when it failed
    or -1 with ``compat``; ``tolerance``: weak rank loss) or the exception of its first bad
    matrix (``detail``: the message after "matrix k", as esd_batch's).
    :func:`layer_spectra_table` returns the same as arrays.
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

    @classmethod
    def assemble(cls, num: int, parts: Sequence[tuple[LayerSpectraTable, Sequence[int]]]
                 ) -> LayerSpectraTable:  # fmt: skip
        """A table of ``num`` rows from parts (table, the row each of its rows goes to);
        later parts overwrite earlier ones, errors included."""
        pooled: list[Any] = [None] * num
        reals = np.full((num, len(cls.REALS)), np.nan)
        counts = np.zeros((num, len(cls.COUNTS)), dtype=np.int64)
        errors: dict[int, Exception] = {}
        for table, rows in parts:
            for row, k in enumerate(rows):
                pooled[k] = table.pooled[row]
                reals[k], counts[k] = table.reals[row], table.counts[row]
                errors.pop(k, None)
                if row in table.errors:
                    errors[k] = table.errors[row]
        return cls(pooled, reals, counts, errors)

    def select(self, rows: Sequence[int]) -> LayerSpectraTable:
        """These rows only (errors dropped)."""
        return LayerSpectraTable([self.pooled[k] for k in rows], self.reals[rows],
                                 self.counts[rows], {})  # fmt: skip

    def fits(self) -> list[Any]:
        """Every row's :class:`hts_fast.PowerLawFit` (no row may be in ``errors``)."""
        return [self.fit(k) for k in range(len(self.pooled))]

    def real(self, name: str) -> np.ndarray:
        """One float64 column (a view), every layer."""
        return self.reals[:, self.REALS.index(name)]

    def count(self, name: str) -> np.ndarray:
        """One int64 column (a view), every layer."""
        return self.counts[:, self.COUNTS.index(name)]

    def fit_fields(self, k: int) -> tuple[Any, ...]:
        """Layer k's fit as the kernels' field tuple (fit_from_fields's order)."""
        return (*self.reals[k, _FIT_REALS].tolist(), *self.counts[k, _FIT_COUNTS].tolist())

    def fit(self, k: int) -> Any:
        """Layer k's :class:`hts_fast.PowerLawFit`."""
        return fit_from_fields(self.fit_fields(k), self.pooled[k], DEFAULT_THRESHOLD)

    def slice_stats(self, k: int) -> Any:
        """Layer k's :class:`hts_fast.analysis.metrics.LayerSliceStats`."""
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


# runs of LayerSpectraTable columns: the fit's fields in fit_from_fields's order (alpha, xmin,
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
    code = method_code(method)
    n_threads = _threads.resolve_threads(threads)
    scale_list = [float(s) for s in scales]
    for value in set(scale_list):  # a layer's matrices share one scale: check each once
        check_scale(value)
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
        return tagged(exc, f"matrix {idx}")


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
            errors[k] = tagged(ValueError(f"{what}: {messages[k]}"), what)
            unreadable.append(k)
        else:
            flat = flat if flat is not None else expand_stacks(arrays, scales)[0]
            errors[k] = tagged(error_for(error, info, what, flat[where].shape, method), what)
    for k in errors:
        pooled[k] = None
    return LayerSpectraTable(pooled, reals, ints, errors), unreadable
