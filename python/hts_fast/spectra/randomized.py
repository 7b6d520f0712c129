"""Top-k ESDs with certified eigenvalues, and the power-law fit on them.

The solver (:func:`top_eigenvalues`) finds the k largest eigenvalues of W^T W by a block
Krylov method on the smaller of W W^T and W^T W, started from a seeded Gaussian block
(Halko-Martinsson-Tropp's range finder with its power iterations kept as a Krylov basis),
with a float64 Rayleigh-Ritz step after every block and a per-eigenvalue residual test. When
the Krylov basis would cover a large part of the space, a dense symmetric eigensolve of the
float64 Gram matrix is cheaper and is used instead (``route="dense"``).

:func:`certified_spectrum` builds the float64 Gram matrix once, grows one Krylov basis on it
and fits the certified top after every block; analyze(esd_method="randomized") calls it through
:mod:`hts_fast.analysis.randomized_esd` (README "Randomized top-k ESDs").

What is certified, and what cannot be
-------------------------------------
Each returned eigenvalue is certified: it is a Ritz value (a lower bound, by interlacing)
within its residual bound of the true one, ``tol`` relative (unless an eigenvector is
orthogonal to the random start block, the caveat of every Krylov method). The power-law fit on a top-k is
then exactly the full ESD's fit restricted to the candidates xmin >= the smallest computed
eigenvalue c: the alpha and the KS distance D of a candidate depend only on the values at
or above it, all of which are computed. What the top-k cannot certify is that no candidate
below c has a smaller D (the full fit would pick it, and on a tie too, since the lowest xmin
wins). The argument, for a candidate whose tail has n_t > k values, fitted exponent a =
alpha - 1, and q = the fitted survival function at c:

* The computed values enter its D only through the deviations |q (x_r / c)^(-a) - r / n_t|
  at the top ranks r = 1..k, i.e. (k / n_t) times |rho (x_r / c)^(-a) - r / k| with rho =
  q n_t / k free. A power law with free scale and exponent follows the top ranks of an ESD to
  within a few ranks, so this lower bound is of order (a few) / n_t; on the 4096x11008
  Student-t benchmark it is about 12.3 / n_t to 12.9 / n_t for every k from 440 to 2048
  (grid search over a, exact minimum over rho), against D = 0.077 of the fit: useless for
  any candidate with more than ~170 values in its tail.
* The unknown values can make every other deviation small: put the n_t - k unknown tail
  values at the fitted quantiles, xmin (1 - s / n_t)^(-1 / a); their deviations are then
  at most 1 / n_t. The total count n is no obstacle (the other n - n_t values go below
  xmin), and the trace (known exactly: ||W||_F^2) constrains only their sum: with the
  unknowns bounded by c from above and by 0 from below, it rules out a candidate only when
  even the smallest tail sum allowed by D, sum_s xmin (1 - (s / n_t - D)_+)^(-1 / a), exceeds
  it, or the largest cannot reach it.
* A grid search over (n_t, a, xmin) on the benchmark ESD, with D set to the fit's, finds
  candidates that pass both tests (the top deviations and the trace bounds) for every k up
  to 2048 (half the spectrum); only at k = 3072 is none left.

So no top-k certificate of the KS choice exists on heavy-tailed ESDs at a cost below the
dense solve; certifying it needs the eigenvalues deep into the bulk. analyze() therefore
accepts a top-k fit by the edge rule of :func:`_accepted` (a stopping rule, checked against
the exact fits in the tests, not a proof), and the dense route returns every eigenvalue, so
its fit is the exact fit. Krylov convergence is the second obstacle: on the same ESD a
basis of 2688 columns (66% of the space) certifies only the top 154 eigenvalues to 1e-8 and
leaves the 438th (the fit's xmin) 2.5e-6 off, so the Krylov route pays off only for tails
that stand apart from the bulk (tests: a planted tail above a flat bulk).
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from .. import _threads
from .._arrays import as_matrix
from ..fits.powerlaw import DEFAULT_THRESHOLD, fit_powerlaw_batch
from .exact import exact_esd, symmetric_eigenvalues

#: Default relative accuracy certified for every returned eigenvalue.
DEFAULT_TOL = 1e-8
#: Krylov block size is k + oversample.
DEFAULT_OVERSAMPLE = 8
#: At most this many Krylov block steps after the first block (the basis holds up to
#: (power_iters + 1) blocks).
DEFAULT_POWER_ITERS = 16
#: A Krylov basis of more than this fraction of the space costs more than a dense eigensolve.
DENSE_FRACTION = 0.5
#: certified_spectrum(): Krylov block of INITIAL_K + oversample columns; a certified top of
#: fewer than MIN_K values is not fitted.
INITIAL_K, MIN_K = 128, 64
#: certified_spectrum(): the Krylov basis stops at DENSE_FRACTION of the space (then dense),
#: or once it holds ABANDON_FRACTION of the space while fewer than 1/ABANDON_RATIO of its
#: columns are certified eigenvalues (convergence too slow to pay off).
ABANDON_FRACTION, ABANDON_RATIO = 0.125, 16
#: analyze(): a top-k fit is accepted when at least max(MIN_BELOW, k * BELOW_FRACTION)
#: computed eigenvalues lie below its xmin; otherwise k grows.
MIN_BELOW, BELOW_FRACTION = 32, 0.25

Route = Literal["krylov-gram", "krylov-matrix", "dense"]
Operator = Literal["auto", "gram", "matrix"]


class ConvergenceError(RuntimeError):
    """The Krylov iteration did not certify the requested eigenvalues."""


@dataclass(frozen=True)
class TopSpectrum:
    """The k largest eigenvalues of (scale*W)^T (scale*W) with their error bounds.

    Attributes
    ----------
    values : ndarray
        The top-k eigenvalues, float64, ascending (all min(rows, cols) of them when
        ``complete``).
    bounds : ndarray
        Absolute error bound of each value (same order).
    n_evals : int
        Length of the whole ESD, min(rows, cols).
    frobenius_sq : float
        Sum of all eigenvalues, ||scale*W||_F^2, computed from W exactly.
    complete : bool
        ``values`` is the whole ESD.
    route : {"krylov-gram", "krylov-matrix", "dense"}
    steps : int
        Krylov block steps taken (0 for the dense route).
    """

    values: np.ndarray
    bounds: np.ndarray
    n_evals: int
    frobenius_sq: float
    complete: bool
    route: str
    steps: int


def _small_side(w: np.ndarray) -> np.ndarray:
    """S with S S^T the smaller Gram matrix of w (a view)."""
    return w if w.shape[0] <= w.shape[1] else w.T


def _gram(s: np.ndarray) -> np.ndarray:
    g = s @ s.T  # NumPy computes A @ A.T with syrk
    return (g + g.T) * 0.5


def _choose_operator(m: int, n: int, columns: int, operator: Operator) -> str:
    """Gram (m^2 n once, then 2 m^2 per column) or the matrix pair (4 m n per column)."""
    if operator != "auto":
        return operator
    return "gram" if columns * (4.0 * m * n - 2.0 * m * m) >= float(m) * m * n else "matrix"


def _orthonormal(x: np.ndarray) -> np.ndarray:
    q, _ = np.linalg.qr(x)
    return q


def _rounding_floor(m: int, n: int, lambda_max: float) -> float:
    """Allowance for float64 rounding in the Gram products and the Rayleigh-Ritz step,
    8 (m + n) eps lambda_max (the residual bound cannot see it)."""
    return 8.0 * (m + n) * float(np.finfo(np.float64).eps) * max(lambda_max, 0.0)


def _ritz_bounds(theta: np.ndarray, res: np.ndarray, want: int) -> np.ndarray:
    """Error bounds of the top ``want`` Ritz values (descending ``theta``, residual norms
    ``res`` of the first len(res) Ritz pairs): min(||r||, ||r||^2 / gap), the gap being the
    distance to the neighbouring Ritz values less their residual norms (Kato-Temple)."""
    bounds = res[:want].copy()
    for j in range(want):
        gap = math.inf
        for i in (j - 1, j + 1):
            if 0 <= i < len(theta):
                slack = res[i] if i < len(res) else math.inf
                gap = min(gap, abs(theta[j] - theta[i]) - slack)
        if gap > 0:
            bounds[j] = min(bounds[j], res[j] ** 2 / gap)
    return bounds


def _ritz(
    v: np.ndarray, av: np.ndarray, want: int, m: int, n: int,
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Rayleigh-Ritz on span(v) (orthonormal columns, ``av`` = A v): the top ``want`` Ritz
    values (descending, units of A) and their absolute error bounds (:func:`_ritz_bounds`
    plus the rounding floor)."""
    h = v.T @ av
    theta, y = np.linalg.eigh((h + h.T) * 0.5)
    theta, y = theta[::-1], y[:, ::-1]
    want = min(want, len(theta))
    yk = y[:, : min(want + 1, len(theta))]
    residual = av @ yk - (v @ yk) * theta[: yk.shape[1]]
    res = np.linalg.norm(residual, axis=0)
    bounds = _ritz_bounds(theta, res, want) + _rounding_floor(m, n, theta[0])
    return theta[:want], bounds


def _next_block(basis: list[np.ndarray], images: list[np.ndarray], apply: Any) -> None:
    """Append the next Krylov block (the last images orthogonalized against the basis) and
    its image to ``basis`` and ``images``."""
    v = np.hstack(basis)
    z = images[-1]
    z = z - v @ (v.T @ z)
    z = z - v @ (v.T @ z)  # twice is enough (Kahan-Parlett)
    z = _orthonormal(z)
    basis.append(z)
    images.append(apply(z))


def _krylov(
    apply: Any, m: int, n: int, k: int, block: int, steps: int, tol: float,
    rng: np.random.Generator, cap: float,
) -> tuple[np.ndarray, np.ndarray, bool, int]:  # fmt: skip
    """Block Krylov with Rayleigh-Ritz after every block, the basis growing to at most
    ``cap`` columns; returns the top-k values (descending), their bounds, whether all are
    within tol, and the steps taken."""
    q = _orthonormal(rng.standard_normal((m, block)))
    basis, images = [q], [apply(q)]
    for step in range(steps + 1):
        theta, bounds = _ritz(np.hstack(basis), np.hstack(images), k, m, n)
        ok = bool(np.all(bounds <= tol * np.abs(theta)))
        if ok or step == steps or sum(b.shape[1] for b in basis) + block > cap:
            return theta, bounds, ok, step
        _next_block(basis, images, apply)
    raise AssertionError  # pragma: no cover - the loop always returns


def _check_k(k: Any, n_evals: int) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        msg = f"k must be a positive int, got {k!r}"
        raise ValueError(msg)
    return min(int(k), n_evals)


def top_eigenvalues(
    W: Any,
    k: int,
    *,
    oversample: int = DEFAULT_OVERSAMPLE,
    power_iters: int = DEFAULT_POWER_ITERS,
    seed: int = 0,
    tol: float = DEFAULT_TOL,
    scale: float = 1.0,
    operator: Operator = "auto",
    on_failure: Literal["raise", "dense", "return"] = "raise",
) -> TopSpectrum:
    """Return the k largest eigenvalues of (scale*W)^T (scale*W), each certified to ``tol``.

    Parameters
    ----------
    W : array of shape (rows, cols)
        Any float array or CPU torch tensor; converted to float64 once.
    k : int
        Number of eigenvalues (capped at min(rows, cols)).
    oversample : int
        The Krylov block has k + oversample columns.
    power_iters : int
        Block steps after the first (the basis grows to at most power_iters + 1 blocks).
    seed : int
        Seeds the Gaussian start block; the same seed gives the same numbers for any
        thread count (BLAS runs single-threaded inside).
    tol : float
        Relative accuracy: every returned value theta_j has |theta_j - lambda_j| <= tol *
        theta_j by the bound of Notes.
    operator : {"auto", "gram", "matrix"}
        Apply W W^T (smaller side) as a float64 Gram matrix built once ("gram") or as two
        products with W per block ("matrix"); "auto" picks the cheaper by flop count.
    on_failure : {"raise", "dense", "return"}
        When the bound is not met after ``power_iters`` steps: raise
        :class:`ConvergenceError`, take the dense route, or return the values with their
        (too large) ``bounds``.

    Notes
    -----
    Ritz values of a Rayleigh-Ritz step are lower bounds of the eigenvalues they approximate
    (Cauchy interlacing); the error bound of each is min(||r||, ||r||^2 / gap) with r = A x -
    theta x computed in float64 and the gap taken to the neighbouring Ritz values less their
    residuals. As with any Krylov solver, an eigenvector orthogonal to the random start
    block would be missed unnoticed; oversampling makes this improbable. When the basis would
    exceed half the space the dense route (float64 Gram + LAPACK dsyevd) is taken.
    Every bound includes a float64 rounding allowance of 8 (rows + cols) eps lambda_max,
    which is all the dense route's bound holds (its small eigenvalues are only that
    accurate, as with esd(method="gram")).
    """
    for name, value in (("oversample", oversample), ("power_iters", power_iters)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            msg = f"{name} must be an int >= 0, got {value!r}"
            raise ValueError(msg)
    if operator not in ("auto", "gram", "matrix"):
        msg = f"operator must be 'auto', 'gram' or 'matrix', got {operator!r}"
        raise ValueError(msg)
    if not (isinstance(tol, (int, float)) and 0 < tol < 1):
        msg = f"tol must be in (0, 1), got {tol!r}"
        raise ValueError(msg)
    matrix = as_matrix(W, "W")
    if not np.all(np.isfinite(matrix)):
        msg = f"W (shape {matrix.shape}) contains NaN or Inf values"
        raise ValueError(msg)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="hts_fast-krylov") as pool:
        # OpenBLAS rounds differently in the main thread and in other threads (measured here:
        # ~1e-15 relative), so every solve runs in a worker thread, as esd_batch's do
        return pool.submit(_solve, matrix, k, int(oversample), int(power_iters), seed, tol,
                           float(scale), operator, on_failure).result()  # fmt: skip


def _solve(
    matrix: np.ndarray, k: int, oversample: int, power_iters: int, seed: int, tol: float,
    scale: float, operator: Operator, on_failure: str,
) -> TopSpectrum:  # fmt: skip
    w = np.asarray(matrix, dtype=np.float64) * scale
    s = _small_side(w)
    m, n = s.shape
    k = _check_k(k, m)
    block = min(m, k + int(oversample))
    with _threads.single_threaded_blas():
        frob = float(np.einsum("ij,ij->", w, w))
        cap = DENSE_FRACTION * m
        if 2 * block > cap:  # not even two blocks fit: the dense solve is cheaper
            return _dense(s, m, n, frob)
        route = _choose_operator(m, n, min(cap, block * (int(power_iters) + 1)), operator)
        if route == "gram":
            g = _gram(s)

            def apply(x: np.ndarray) -> np.ndarray:
                return g @ x
        else:

            def apply(x: np.ndarray) -> np.ndarray:
                return s @ (s.T @ x)

        rng = np.random.default_rng(seed)
        theta, bounds, ok, steps = _krylov(apply, m, n, k, block, int(power_iters), tol, rng, cap)
        if not ok and (steps < power_iters or on_failure == "dense"):
            return _dense(s, m, n, frob)  # the basis reached the cap, or asked for
    if not ok and on_failure == "raise":
        worst = float(np.max(bounds / np.abs(theta)))
        msg = (f"randomized ESD of shape {matrix.shape}: top-{k} eigenvalues certified only "
               f"to {worst:.2e} relative after {steps} steps (tol {tol:g}); raise "
               f"power_iters or oversample")  # fmt: skip
        raise ConvergenceError(msg)
    values = np.maximum(theta[::-1], 0.0)
    return TopSpectrum(values, bounds[::-1].copy(), m, frob, k == m, f"krylov-{route}", steps)


def _dense(s: np.ndarray, m: int, n: int, frob: float) -> TopSpectrum:
    """The whole spectrum by the compiled Gram kernel (no float64 Gram matrix at hand)."""
    return _complete(exact_esd(s, "gram"), m, n, frob)


def _complete(values: np.ndarray, m: int, n: int, frob: float) -> TopSpectrum:
    """All m eigenvalues (ascending, clipped at 0) as a complete TopSpectrum with the
    rounding-floor bound."""
    values = np.maximum(values, 0.0)
    bound = _rounding_floor(m, n, float(values[-1]))
    return TopSpectrum(values, np.full(m, bound), m, frob, True, "dense", 0)


@dataclass(frozen=True)
class CertifiedSpectrum:
    """A layer matrix's ESD as analyze(esd_method="randomized") uses it."""

    spectrum: TopSpectrum
    ks: tuple[int, ...]  # every k tried, in order


def _accepted(values: np.ndarray, fit: Any) -> bool:
    """Whether the fit on the top-k ``values`` is the full ESD's fit by the edge rule."""
    if values[0] <= DEFAULT_THRESHOLD:
        return True  # every value the fit uses has been computed
    if fit.status != "success":
        return False
    below = fit.xmin_index
    return below >= max(MIN_BELOW, BELOW_FRACTION * len(values))


def certified_spectrum(
    W: Any, *, scale: float = 1.0, seed: int = 0, tol: float = DEFAULT_TOL,
    k0: int | None = None,
) -> CertifiedSpectrum:  # fmt: skip
    """Grow one Krylov basis until the power-law fit of its certified top eigenvalues is
    accepted; fall back to the whole spectrum.

    The float64 Gram matrix of the smaller side is built once. A block Krylov basis (block
    k0 + oversample columns, k0 = INITIAL_K by default) grows by one block at a time; after
    each block the Ritz values certified to ``tol`` (the longest run from the top: k of
    them) are fitted, and the fit is accepted by the edge rule of :func:`_accepted` (at
    least max(32, k/4) certified eigenvalues below xmin, or the certified range reaches
    the fit threshold). The basis stops at DENSE_FRACTION of the space, or early when
    convergence is too slow (ABANDON_FRACTION, ABANDON_RATIO); then the Gram matrix
    is handed to LAPACK dsyevd (``route="dense"``, every eigenvalue, as
    esd(method="gram")). The edge rule is a stopping rule, not a proof (module docstring).

    Returns
    -------
    CertifiedSpectrum
        The spectrum (``complete`` on the dense route) and every k whose fit was tried.
    """
    matrix = as_matrix(W, "W")
    if not np.all(np.isfinite(matrix)):
        msg = f"W (shape {matrix.shape}) contains NaN or Inf values"
        raise ValueError(msg)
    first = k0 if k0 is not None else INITIAL_K
    _check_k(first, min(matrix.shape))
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="hts_fast-krylov") as pool:
        return pool.submit(_certify, matrix, float(scale), seed, tol, int(first)).result()


def _certified_run(theta: np.ndarray, bounds: np.ndarray, tol: float) -> int:
    """Number of leading (largest) Ritz values whose bound is within ``tol`` relative."""
    ok = bounds <= tol * np.abs(theta)
    return len(ok) if ok.all() else int(np.argmin(ok))


def _certify(matrix: np.ndarray, scale: float, seed: int, tol: float, k0: int) -> CertifiedSpectrum:
    """certified_spectrum() in one thread with single-threaded BLAS."""
    w = np.asarray(matrix, dtype=np.float64)
    if scale != 1.0:
        w = w * scale
    s = _small_side(w)
    m, n = s.shape
    block = min(m, k0 + DEFAULT_OVERSAMPLE)
    ks: list[int] = []
    with _threads.single_threaded_blas():
        g = _gram(s)
        frob = float(np.trace(g))  # ||W||_F^2, the Gram matrix's diagonal summed
        if 2 * block <= DENSE_FRACTION * m:
            found = _grow_and_fit(g, m, n, block, tol, np.random.default_rng(seed), ks)
            if found is not None:
                values, bounds, steps = found
                spec = TopSpectrum(values, bounds, m, frob, False, "krylov-gram", steps)
                return CertifiedSpectrum(spec, tuple(ks))
        ks.append(m)
        return CertifiedSpectrum(_dense_gram(g, m, n, frob), tuple(ks))


def _grow_and_fit(
    g: np.ndarray, m: int, n: int, block: int, tol: float, rng: np.random.Generator,
    ks: list[int],
) -> tuple[np.ndarray, np.ndarray, int] | None:  # fmt: skip
    """Grow a block Krylov basis of the Gram matrix ``g`` and fit its certified top after
    every block (every k fitted is appended to ``ks``). Returns the accepted values
    (ascending), their bounds and the block steps taken, or None when the basis reached its
    cap or was abandoned."""
    cap = DENSE_FRACTION * m

    def apply(x: np.ndarray) -> np.ndarray:
        return g @ x

    q = _orthonormal(rng.standard_normal((m, block)))
    basis, images = [q], [apply(q)]
    step, k = 0, 0
    while True:
        size = block * len(basis)
        want = min(size - block // 2, 2 * k + block)  # residuals only where they may pass
        theta, bounds = _ritz(np.hstack(basis), np.hstack(images), want, m, n)
        k = _certified_run(theta, bounds, tol)
        if k >= MIN_K and (not ks or k > ks[-1]):
            ks.append(k)
            values = np.maximum(theta[:k][::-1], 0.0)
            fit = fit_powerlaw_batch([values], threads=1)[0]
            if _accepted(values, fit):
                return values, bounds[:k][::-1].copy(), step
        slow = size >= ABANDON_FRACTION * m and k * ABANDON_RATIO < size
        if size + block > cap or slow:
            return None
        _next_block(basis, images, apply)
        step += 1


def _dense_gram(g: np.ndarray, m: int, n: int, frob: float) -> TopSpectrum:
    """Every eigenvalue of the float64 Gram matrix ``g`` (overwritten) by the Gram route's
    compiled eigensolver (LAPACK's two-stage dsyevd for large orders where SciPy's OpenBLAS
    has it, else dsyevd), as a complete TopSpectrum."""
    return _complete(symmetric_eigenvalues(g, overwrite=True), m, n, frob)
