"""Slow, readable NumPy reference implementations: the oracle every backend is tested on.

Nothing here is fast or clever on purpose. Each function follows the written definition
directly (see README "Definitions"), so a compiled kernel that agrees with it is right.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def esd(W: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """Eigenvalues of (scale*W)^T (scale*W): squared singular values, ascending."""
    singular_values = np.linalg.svd(np.asarray(W, dtype=np.float64) * scale, compute_uv=False)
    return np.sort(singular_values**2)


def conv2d_esd(W: np.ndarray, conv2d_norm: bool = True) -> np.ndarray:
    """Pooled ESD of an (out, in, kh, kw) kernel: one out x in matrix per kernel position."""
    _, _, kh, kw = W.shape
    scale = math.sqrt(0.5) if conv2d_norm else 1.0
    pooled = [esd(W[:, :, i, j], scale) for i in range(kh) for j in range(kw)]
    return np.sort(np.concatenate(pooled))


def _ks_distance(tail: np.ndarray, alpha: float) -> float:
    """max_k |F_fit(x_k) - k/n| with F_fit(x) = 1 - (x/xmin)^(1-alpha), tail sorted."""
    n = len(tail)
    fitted_cdf = 1.0 - (tail / tail[0]) ** (1.0 - alpha)
    empirical_cdf = np.arange(n) / n
    return float(np.max(np.abs(fitted_cdf - empirical_cdf)))


def _log_ratio_sum(tail: np.ndarray) -> float:
    """sum_j log(x_j / xmin) for a sorted tail (xmin = tail[0])."""
    return math.fsum(np.log(tail / tail[0]))


def powerlaw_scan(
    evals: Any, threshold: float = 1e-5, small_n_cutoff: int = 20, min_tail: int = 8
) -> dict[str, Any]:
    """alpha, D, sigma for every xmin candidate and the selected index.

    Standard rule (n_fit >= small_n_cutoff): alpha_i = 1 + n_i / S_i, D_i = KS distance
    (1 when alpha_i <= 1). Small-sample rule: candidates with tails shorter than
    ``min_tail`` or S_i <= 1e-12 are skipped (alpha 0, D 1); alpha_i = 1 + (n_i - 1)/S_i;
    if nothing survives, the whole sample is scored at index 0. Selection: first argmin D.
    """
    values = np.asarray(evals, dtype=np.float64)
    x = np.sort(values[values > threshold])
    nf = len(x)
    if nf < 2:
        raise ValueError("fewer than 2 values above the threshold")
    small = small_n_cutoff > 0 and nf < small_n_cutoff
    alphas = np.zeros(nf - 1)
    ds = np.ones(nf - 1)
    for i in range(nf - 1):
        tail = x[i:]
        n = nf - i
        s = _log_ratio_sum(tail)
        if small:
            if n < min_tail or s <= 1e-12:
                continue
            alphas[i] = 1.0 + (n - 1.0) / s
        else:
            alphas[i] = 1.0 + n / s if s > 0 else math.inf
        if alphas[i] > 1.0:
            ds[i] = _ks_distance(tail, alphas[i])
    if small and not np.any(alphas > 1.0):
        s = _log_ratio_sum(x)
        if s > 1e-12:
            alphas[0] = 1.0 + (nf - 1.0) / s
            ds[0] = _ks_distance(x, alphas[0])
    sigmas = (alphas - 1.0) / np.sqrt(nf - np.arange(nf - 1))
    best = int(np.argmin(ds))
    return {
        "x": x,
        "xmins": x[:-1],
        "alphas": alphas,
        "Ds": ds,
        "sigmas": sigmas,
        "best": best,
        "method": "small_n" if small else "standard",
    }


def fit_powerlaw(evals: Any, threshold: float = 1e-5, small_n: bool = True) -> dict[str, Any]:
    """The selected fit as a dict with the fields of hts_fast.PowerLawFit."""
    scan = powerlaw_scan(evals, threshold, 20 if small_n else 0)
    i, x = scan["best"], scan["x"]
    return {
        "alpha": float(scan["alphas"][i]),
        "xmin": float(x[i]),
        "xmax": float(x[-1]),
        "D": float(scan["Ds"][i]),
        "sigma": float(scan["sigmas"][i]),
        "num_pl_spikes": int(np.sum(x >= x[i])),
        "num_fit": len(x),
        "method": scan["method"],
        "xmin_index": i,
    }
