"""Spectral metrics of one layer from its pooled ESD (reference doc section 5)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

EPS64 = float(np.finfo(np.float64).eps)
#: WeightWatcher adds this to every probability and to the rank in its entropy (CPU value).
WW_ENTROPY_EPSILON = 1e-10


@dataclass(frozen=True)
class SliceStats:
    """Singular-value statistics of the matrices of one layer (scaled weights)."""

    sv_max: float
    sv_min: float
    rank_loss: int


def slice_stats(slice_evals: list[np.ndarray], N: int, *, compat: bool) -> SliceStats:
    """Largest and smallest singular value and rank loss over a layer's matrices.

    rank_loss counts, per matrix, singular values <= max(sv) * N * eps64 (N: the layer's
    larger dimension). sv_min is the smallest singular value of all matrices; in compat mode
    it is WeightWatcher's max over matrices of each matrix's smallest singular value.
    """
    if len({len(e) for e in slice_evals}) == 1:  # conv slices: one vectorized pass
        sv = np.sqrt(np.stack(slice_evals))  # exact inverse of the squaring for doubles
        tops = sv[:, -1]
        lost = np.count_nonzero(sv <= (tops * N * EPS64)[:, None])
        mins = sv[:, 0]
        sv_min = float(np.max(mins)) if compat else float(np.min(mins))
        return SliceStats(float(np.max(tops)), max(sv_min, 0.0) if compat else sv_min, int(lost))
    sv_max, rank_loss = 0.0, 0
    sv_mins = []
    for evals in slice_evals:
        sv = np.sqrt(evals)
        top = float(sv[-1])
        sv_max = max(sv_max, top)
        sv_mins.append(float(sv[0]))
        rank_loss += int(np.count_nonzero(sv <= top * N * EPS64))
    sv_min = max(0.0, *sv_mins) if compat else min(sv_mins)
    return SliceStats(sv_max, sv_min, rank_loss)


def matrix_rank(evals: np.ndarray, N: int) -> int:
    """Number of singular values sqrt(evals) above max * N * eps64 (NumPy's rule)."""
    sv = np.sqrt(evals)
    return int(np.count_nonzero(sv > np.max(sv) * N * EPS64))


def matrix_entropy(evals: np.ndarray, rank: int, *, compat: bool) -> float:
    """Normalized matrix entropy -sum(p ln p) / ln(rank), p = evals / sum(evals), in [0, 1].

    compat: WeightWatcher's variant, which adds 1e-10 to every p and to the rank. Default:
    the exact definition (0 ln 0 = 0); 0.0 for rank <= 1.
    """
    total = float(np.sum(evals))
    if compat:
        p = evals / total + WW_ENTROPY_EPSILON
        return float(-np.sum(p * np.log(p)) / np.log(rank + WW_ENTROPY_EPSILON))
    if rank <= 1 or total <= 0:
        return 0.0
    p = evals[evals > 0] / total
    return float(-np.sum(p * np.log(p)) / math.log(rank))


def norm_metrics(evals: np.ndarray, N: int, alpha: float, *, compat: bool) -> dict[str, float]:
    """norm (squared Frobenius), log norms, alpha_weighted, log_alpha_norm, stable_rank,
    matrix_rank and entropy of a sorted ESD (units: eigenvalues of the scaled W^T W)."""
    norm = float(np.sum(evals))
    spectral_norm = float(np.max(evals))
    log_spectral_norm = float(np.log10(spectral_norm))
    rank = matrix_rank(evals, N)
    return {
        "norm": norm,
        "log_norm": float(np.log10(norm)),
        "spectral_norm": spectral_norm,
        "log_spectral_norm": log_spectral_norm,
        "alpha_weighted": alpha * log_spectral_norm,
        "log_alpha_norm": float(np.log10(np.sum(evals**alpha))),
        "stable_rank": norm / spectral_norm if spectral_norm else math.nan,
        "matrix_rank": rank,
        "entropy": matrix_entropy(evals, rank, compat=compat),
    }


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
