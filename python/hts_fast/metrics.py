"""Spectral metrics of many layers at once from their pooled ESDs (reference doc section 5)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

EPS64 = float(np.finfo(np.float64).eps)
#: WeightWatcher adds this to every probability and to the rank in its entropy (CPU value).
WW_ENTROPY_EPSILON = 1e-10


def warning_label(alpha: float, failed: bool, *, compat: bool) -> str:
    """'over-trained' (alpha < 2), 'under-trained' (alpha > 6) or ''.

    A failed fit is 'failed' by default; WeightWatcher labels it by its alpha of -1,
    i.e. 'over-trained'.
    """
    if failed and not compat:
        return "failed"
    if alpha < 2.0:
        return "over-trained"
    if alpha > 6.0:
        return "under-trained"
    return ""


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
        sv_max, smallest, largest, lost = zip(*stats, strict=True)
        return {
            "sv_max": np.array(sv_max, dtype=np.float64),
            "sv_min": np.array(largest if compat else smallest, dtype=np.float64),
            "rank_loss": np.array(lost, dtype=np.int64),
        }


def layer_slice_stats(
    tops: np.ndarray, bottoms: np.ndarray, lost: np.ndarray, owner: np.ndarray,
    num_layers: int, *, compat: bool,
) -> dict[str, np.ndarray]:  # fmt: skip
    """sv_max, sv_min and rank_loss per layer from per-matrix summaries (``owner[k]``: the
    layer of matrix k, non-decreasing; sv_min: the smallest, or in compat mode
    WeightWatcher's largest, of the matrices' smallest singular values)."""
    layer_starts = np.searchsorted(owner, np.arange(num_layers))
    pick_min = np.maximum if compat else np.minimum
    return {
        "sv_max": np.maximum.reduceat(tops, layer_starts),
        "sv_min": pick_min.reduceat(bottoms, layer_starts),
        "rank_loss": np.add.reduceat(lost, layer_starts),
    }


def batch_norm_metrics(
    spectra: list[np.ndarray], N: np.ndarray, alpha: np.ndarray, *, compat: bool,
    tolerance: float,
) -> dict[str, np.ndarray]:  # fmt: skip
    """Per-layer metrics of many ascending ESDs (units: eigenvalues of the scaled W^T W).

    norm = sum(evals) (squared Frobenius norm), log_norm = log10(norm), spectral_norm =
    lambda_max, alpha_weighted = alpha * log10(lambda_max), log_alpha_norm =
    log10(sum(evals**alpha)), stable_rank = norm / lambda_max, matrix_rank = #{sqrt(evals) >
    sqrt(lambda_max) * N * eps64}, weak_rank_loss = #{evals < tolerance}, and the normalized
    matrix entropy -sum(p ln p) / ln(rank) with p = evals / norm (compat: WeightWatcher adds
    1e-10 to every p and to the rank; default: exact, 0 for rank <= 1). A few NumPy passes
    over all eigenvalues at once instead of a Python loop per layer.
    """
    lengths = np.array([len(s) for s in spectra], dtype=np.intp)
    starts = _starts(lengths)
    flat = np.concatenate(spectra)
    norm = np.add.reduceat(flat, starts)
    spectral = flat[starts + lengths - 1]
    log_spectral = np.log10(spectral)
    sv = np.sqrt(flat)
    tol = np.repeat(np.sqrt(spectral) * N * EPS64, lengths)
    rank = np.add.reduceat((sv > tol).astype(np.int64), starts)
    p = flat / np.repeat(norm, lengths)
    if compat:
        p = p + WW_ENTROPY_EPSILON
        entropy = -np.add.reduceat(p * np.log(p), starts) / np.log(rank + WW_ENTROPY_EPSILON)
    else:
        plogp = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)
        entropy = np.where(rank > 1, -np.add.reduceat(plogp, starts) / np.log(np.maximum(rank, 2)),
                           0.0)  # fmt: skip
    return {
        "num_evals": lengths.astype(np.int64),
        "lambda_max": spectral,
        "weak_rank_loss": np.add.reduceat((flat < tolerance).astype(np.int64), starts),
        "norm": norm,
        "log_norm": np.log10(norm),
        "spectral_norm": spectral,
        "log_spectral_norm": log_spectral,
        "alpha_weighted": alpha * log_spectral,
        "log_alpha_norm": np.log10(np.add.reduceat(flat ** np.repeat(alpha, lengths), starts)),
        "stable_rank": norm / spectral,
        "matrix_rank": rank,
        "entropy": entropy,
    }
