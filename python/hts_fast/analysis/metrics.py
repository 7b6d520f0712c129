"""Spectral metrics of many layers at once from their pooled ESDs (reference doc section 5)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

EPS64 = float(np.finfo(np.float64).eps)


def warning_label(alpha: float, failed: bool, *, compat: bool) -> str:
    """'over-trained' (alpha < 2), 'under-trained' (alpha > 6) or '' (see warning_labels)."""
    return warning_labels(np.array([alpha], dtype=np.float64), np.array([failed]),
                          compat=compat)[0]  # fmt: skip


_WARNINGS = np.array(["", "over-trained", "under-trained", "failed"], dtype=object)


def warning_labels(alpha: np.ndarray, failed: np.ndarray, *, compat: bool) -> list[str]:
    """Per layer 'over-trained' (alpha < 2), 'under-trained' (alpha > 6) or ''.

    A failed fit is 'failed' by default; WeightWatcher labels it by its alpha of -1,
    i.e. 'over-trained'.
    """
    code = (alpha < 2.0) + 2 * (alpha > 6.0)
    if not compat:
        code[failed] = 3
    return _WARNINGS[code].tolist()


def _starts(lengths: np.ndarray) -> np.ndarray:
    return np.concatenate(([0], np.cumsum(lengths)[:-1])).astype(np.intp)


def batch_slice_stats(
    slices: list[np.ndarray], owner: np.ndarray, N: np.ndarray, num_layers: int, *, compat: bool
) -> dict[str, np.ndarray]:
    """Largest and smallest singular value and rank loss of each layer's matrices.

    rank_loss counts, per matrix, singular values <= max(sv) * N * eps64 (N: the layer's
    larger dimension). sv_min is the smallest singular value of all a layer's matrices; in
    compat mode it is WeightWatcher's max over matrices of each matrix's smallest one.
    ``slices``: every matrix's ascending ESD; ``owner[k]``: the layer of slice k (non-decreasing,
    every layer owning at least one slice); ``N``: each layer's N. Returns arrays of sv_max,
    sv_min and rank_loss per layer.
    """
    lengths = np.array([len(s) for s in slices], dtype=np.intp)
    starts = _starts(lengths)
    # sqrt undoes the kernel's squaring exactly for svd eigenvalues; gram ones are computed
    # directly (tiny ones are noise, see esd())
    flat = np.sqrt(np.concatenate(slices))
    tops = flat[starts + lengths - 1]
    bottoms = flat[starts]
    tol = np.repeat(tops * N[owner] * EPS64, lengths)
    lost = np.add.reduceat((flat <= tol).astype(np.int64), starts)
    return layer_slice_stats(tops, bottoms, lost, owner, num_layers, compat=compat)


class LayerSliceStats(NamedTuple):
    """One layer's singular-value summary over its matrices, as batch_slice_stats() computes
    it: sv_max; the smallest and the largest of the matrices' smallest singular values
    (sv_min by default and in compat mode); and the summed rank losses."""

    sv_max: float
    sv_min_smallest: float
    sv_min_largest: float
    rank_loss: int

    @staticmethod
    def columns(stats: list[LayerSliceStats], *, compat: bool) -> dict[str, np.ndarray]:
        """sv_max, sv_min and rank_loss arrays of these layers (as batch_slice_stats)."""
        sv_max, smallest, largest, lost = (np.array(v) for v in zip(*stats, strict=True))
        return slice_columns(sv_max, smallest, largest, lost, compat=compat)


def slice_columns(
    sv_max: np.ndarray, sv_min_smallest: np.ndarray, sv_min_largest: np.ndarray,
    rank_loss: np.ndarray, *, compat: bool,
) -> dict[str, np.ndarray]:  # fmt: skip
    """The table's sv_max, sv_min and rank_loss columns of per-layer summaries: sv_min is the
    smallest of a layer's matrices' smallest singular values, or in compat mode (as
    WeightWatcher 0.7.7 reports it) the largest of them."""
    return {
        "sv_max": np.asarray(sv_max, dtype=np.float64),
        "sv_min": np.asarray(sv_min_largest if compat else sv_min_smallest, dtype=np.float64),
        "rank_loss": np.asarray(rank_loss, dtype=np.int64),
    }


def layer_slice_stats(
    tops: np.ndarray, bottoms: np.ndarray, lost: np.ndarray, owner: np.ndarray,
    num_layers: int, *, compat: bool,
) -> dict[str, np.ndarray]:  # fmt: skip
    """sv_max, sv_min and rank_loss per layer from per-matrix summaries (``owner[k]``: the
    layer of matrix k, non-decreasing; sv_min: the smallest, or in compat mode
    WeightWatcher's largest, of the matrices' smallest singular values)."""
    starts = np.searchsorted(owner, np.arange(num_layers))
    # only the end slice_columns reports is reduced: it is passed as both ends
    sv_min = (np.maximum if compat else np.minimum).reduceat(bottoms, starts)
    return slice_columns(np.maximum.reduceat(tops, starts), sv_min, sv_min,
                         np.add.reduceat(lost, starts), compat=compat)  # fmt: skip


def norm_columns(
    norm: np.ndarray, lambda_max: np.ndarray, matrix_rank: np.ndarray,
    weak_rank_loss: np.ndarray, entropy: np.ndarray, alpha_norm_sum: np.ndarray,
    num_evals: np.ndarray, alpha: np.ndarray,
) -> dict[str, np.ndarray]:  # fmt: skip
    """The table's norm columns from the per-layer sums of the norm_metrics kernel.

    norm = sum(evals) (squared Frobenius norm), log_norm = log10(norm), spectral_norm =
    lambda_max, alpha_weighted = alpha * log10(lambda_max), log_alpha_norm =
    log10(sum(evals**alpha)), stable_rank = norm / lambda_max; matrix_rank, weak_rank_loss
    and entropy as the kernel returns them.
    """
    log_spectral = np.log10(lambda_max)
    return {
        "num_evals": np.asarray(num_evals, dtype=np.int64),
        "lambda_max": lambda_max,
        "weak_rank_loss": weak_rank_loss,
        "norm": norm,
        "log_norm": np.log10(norm),
        "spectral_norm": lambda_max,
        "log_spectral_norm": log_spectral,
        "alpha_weighted": alpha * log_spectral,
        "log_alpha_norm": np.log10(alpha_norm_sum),
        "stable_rank": norm / lambda_max,
        "matrix_rank": matrix_rank,
        "entropy": entropy,
    }


def batch_norm_metrics(
    spectra: list[np.ndarray], N: np.ndarray, alpha: np.ndarray, *, compat: bool,
    tolerance: float, threads: int | None = None,
) -> dict[str, np.ndarray]:  # fmt: skip
    """Per-layer metrics of many ascending ESDs (units: eigenvalues of the scaled W^T W).

    The compiled kernel (``csrc/cpu/norm_metrics.cpp``) sums each ESD once: norm =
    sum(evals), lambda_max, matrix_rank = #{sqrt(evals) > sqrt(lambda_max) * N * eps64},
    weak_rank_loss = #{evals < tolerance}, the normalized matrix entropy -sum(p ln p) /
    ln(rank) with p = evals / norm (compat: WeightWatcher adds 1e-10 to every p and to the
    rank; default: exact, 0 for rank <= 1) and sum(evals**alpha); :func:`norm_columns` makes
    the table's columns of them. ``hts_fast._reference.norm_metrics`` is the readable oracle.
    """
    from .. import _threads
    from .._core_loader import core

    sums = core.norm_metrics_batch(
        [np.ascontiguousarray(s, dtype=np.float64) for s in spectra],
        [float(n) for n in N], [float(a) for a in alpha], float(tolerance), bool(compat),
        _threads.resolve_threads(threads))  # fmt: skip
    return norm_columns(*sums, np.array([len(s) for s in spectra], dtype=np.int64),
                        np.asarray(alpha, dtype=np.float64))  # fmt: skip
