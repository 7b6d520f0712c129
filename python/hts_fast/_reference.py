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


def _tpl_log_normaliser(xmin: float, alpha: float, lam: float) -> float:
    """log Z + lam xmin for Z = integral_xmin^inf t^-alpha e^(-lam t) dt, by scipy's quad.

    (lam xmin is added so that callers can pair it with lam (x - xmin) instead of lam x: for
    a large lam the two big terms would otherwise cancel.)

    With t = xmin (1 + v) and mu = lam * xmin,
    Z e^(lam xmin) = xmin^(1-alpha) * integral_0^inf (1 + v)^-alpha e^(-mu v) dv; the offset v
    (not t / xmin) is integrated so that a cut-off length 1/mu far below 1 is still resolved.
    The integrand is divided by its largest value (at v_peak) so it never overflows, and
    [0, inf) is cut at v_peak, at 2^k - 1 (the power-law part spans decades) and at multiples
    of the cut-off length and of the bump's width, so that quad sees smooth pieces.
    """
    from itertools import pairwise

    from scipy.integrate import quad

    mu = lam * xmin
    v_peak = max(0.0, -alpha / mu - 1.0)

    def scaled(v: float) -> float:
        return math.exp(-alpha * (math.log1p(v) - math.log1p(v_peak)) - mu * (v - v_peak))

    width = math.sqrt(max(-alpha, 1.0)) / mu  # spread of the bump when alpha < 0
    end = v_peak + 200.0 * width + 100.0 / mu
    edges = {0.0, v_peak, end}
    edge = 1.0
    while edge < end:
        edges.add(edge)
        edge = 2.0 * edge + 1.0
    for k in (1, 2, 4, 8, 16, 32, 64):
        edges.update({v_peak + k / mu, v_peak + k * width, v_peak - k * width})
    cuts = sorted(e for e in edges if 0.0 <= e <= end)
    pieces = list(pairwise(cuts))
    # The integrand is unimodal and the pieces are split at its peak, so a piece is at most
    # (its length) x (the larger end value); pieces far below the rest are left out (quad
    # would only warn about round-off on them).
    bounds = [(hi - lo) * max(scaled(lo), scaled(hi)) for lo, hi in pieces]
    keep = 1e-20 * math.fsum(bounds)
    total = math.fsum(
        quad(scaled, lo, hi, epsabs=0.0, epsrel=1e-13, limit=200)[0]
        for (lo, hi), bound in zip(pieces, bounds, strict=True)
        if bound > keep
    )
    log_peak = -alpha * math.log1p(v_peak) - mu * v_peak
    return (1.0 - alpha) * math.log(xmin) + log_peak + math.log(total)


def tpl_loglik(x: Any, xmin: float, alpha: float, lam: float) -> float:
    """Total log-likelihood of the values of x >= xmin under the truncated power law.

    p(t) = t^-alpha e^(-lam t) / Z on t >= xmin, Z = integral_xmin^inf t^-alpha e^(-lam t) dt
    (= lam^(alpha-1) Gamma(1 - alpha, lam xmin)). lam = 0 is the pure power law, whose Z is
    xmin^(1-alpha) / (alpha - 1) for alpha > 1 (-inf is returned for alpha <= 1: no density).
    Natural log, densities in 1 / (units of x).
    """
    values = np.asarray(x, dtype=np.float64)
    tail = values[values >= xmin]
    n = len(tail)
    log_ratio = math.fsum(np.log1p((tail - xmin) / xmin))
    if lam == 0.0:
        if alpha <= 1.0:
            return -math.inf
        log_z_shifted = (1.0 - alpha) * math.log(xmin) - math.log(alpha - 1.0)
    else:
        log_z_shifted = _tpl_log_normaliser(xmin, alpha, lam)  # log Z + lam xmin
    # sum(-alpha log t - lam t) - n log Z, written about xmin to keep the terms small
    return (
        -alpha * (log_ratio + n * math.log(xmin)) - lam * math.fsum(tail - xmin) - n * log_z_shifted
    )


def norm_metrics(
    evals: Any, N: float, alpha: float, *, compat: bool, tolerance: float = 1e-6
) -> dict[str, float]:
    """WeightWatcher's norm metrics of one ascending ESD, written out term by term.

    norm = sum of the eigenvalues; lambda_max the largest; matrix_rank the number of singular
    values sqrt(v) above sqrt(lambda_max) * N * eps; weak_rank_loss the number of eigenvalues
    below ``tolerance``; entropy = -sum(p ln p) / ln(rank) over p = v / norm (compat:
    WeightWatcher adds 1e-10 to each p and to the rank; otherwise 0 terms drop out and a rank
    <= 1 has entropy 0); alpha_norm_sum = sum(v ** alpha).
    """
    values = [float(v) for v in np.asarray(evals, dtype=np.float64)]
    norm = math.fsum(values)
    lambda_max = max(values)
    tolerance_sv = math.sqrt(lambda_max) * N * float(np.finfo(np.float64).eps)
    rank = sum(1 for v in values if math.sqrt(v) > tolerance_sv)
    if compat:
        ps = [v / norm + 1e-10 for v in values]
        entropy = -math.fsum(p * math.log(p) for p in ps) / math.log(rank + 1e-10)
    else:
        ps = [v / norm for v in values]
        plogp = math.fsum(p * math.log(p) for p in ps if p > 0)
        entropy = -plogp / math.log(rank) if rank > 1 else 0.0
    return {
        "norm": norm,
        "lambda_max": lambda_max,
        "matrix_rank": rank,
        "weak_rank_loss": sum(1 for v in values if v < tolerance),
        "entropy": entropy,
        "alpha_norm_sum": math.fsum(v**alpha for v in values),
    }


_MASK64 = (1 << 64) - 1


def _mix64(z: int) -> int:
    """The splitmix64 finalizer of a 64-bit integer."""
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def _splitmix64(state: int) -> tuple[int, int]:
    """splitmix64: (new state, output), in Python integers modulo 2^64."""
    state = (state + 0x9E3779B97F4A7C15) & _MASK64
    return state, _mix64(state)


def _hash128_constants() -> dict[str, np.ndarray]:
    """hts128's constants: splitmix64 draws from the seed "hts_fast", in the order K (16
    stripes x 8 lanes), init, scramble, fold_lo, fold_hi."""
    state, draws = 0x6874735F66617374, []
    for _ in range(128 + 4 * 8):
        state, value = _splitmix64(state)
        draws.append(value)
    words = np.array(draws, dtype=np.uint64)
    return {"keys": words[:128].reshape(16, 8), "init": words[128:136],
            "scramble": words[136:144], "fold_lo": words[144:152], "fold_hi": words[152:160]}  # fmt: skip


def hash128(data: bytes) -> bytes:
    """hts128, the scan's content hash (a fast non-cryptographic 128-bit hash), as its
    definition reads (csrc/include/hts/hash128.hpp): 64-byte stripes of 8 little-endian
    words, 16 stripes a block, each stripe adding d[i] to accumulator i^1 and
    low32(d[i]^k) * high32(d[i]^k) to accumulator i; a scramble after each complete block;
    the rest zero-padded to whole stripes; two keyed 128-bit-product folds with the length,
    each through the splitmix64 finalizer."""
    c = _hash128_constants()
    n = len(data)
    acc = c["init"].copy()
    low32, p32 = np.uint64(0xFFFFFFFF), np.uint64(0x9E3779B1)
    swap = [1, 0, 3, 2, 5, 4, 7, 6]  # lane i's data goes to accumulator i ^ 1

    def stripes(words: np.ndarray) -> None:  # words: (stripes, 8), stripe j keyed by K[j]
        x = words ^ c["keys"][: len(words)]
        acc[:] += ((x & low32) * (x >> np.uint64(32))).sum(axis=0, dtype=np.uint64)
        acc[:] += words.sum(axis=0, dtype=np.uint64)[swap]

    blocks = n // 1024
    for b in range(blocks):
        stripes(np.frombuffer(data, dtype="<u8", count=128, offset=1024 * b).reshape(16, 8))
        acc[:] = (acc ^ (acc >> np.uint64(47)) ^ c["scramble"]) * p32
    rest = bytes(data[1024 * blocks :])
    if rest:
        padded = rest + bytes(-len(rest) % 64)
        stripes(np.frombuffer(padded, dtype="<u8").reshape(-1, 8))

    def fold(a: int, b: int) -> int:
        product = a * b
        return (product & _MASK64) ^ (product >> 64)

    def finish(start: int, keys: np.ndarray) -> int:
        h = start
        for i in range(0, 8, 2):
            h += fold(int(acc[i] ^ keys[i]), int(acc[i + 1] ^ keys[i + 1]))
        return _mix64(h & _MASK64)

    p64 = 0x9E3779B97F4A7C15
    lo = finish((n * p64) & _MASK64, c["fold_lo"])
    hi = finish(((~n & _MASK64) * p64) & _MASK64, c["fold_hi"])
    return lo.to_bytes(8, "little") + hi.to_bytes(8, "little")
