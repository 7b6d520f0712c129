"""Power-law fits of eigenvalue tails (continuous MLE over every xmin candidate)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast

import numpy as np

from .. import _threads
from .._arrays import as_float_array
from .._core_loader import core

#: Eigenvalues at or below this are left out of the fit (WeightWatcher's EVALS_THRESH).
DEFAULT_THRESHOLD = 1e-5
#: Fits of fewer values use WeightWatcher 0.7.7's small-sample rule.
SMALL_N_CUTOFF = 20
#: Smallest tail the small-sample rule accepts.
SMALL_N_MIN_TAIL = 8

FIT_METHODS = {0: "standard", 1: "small_n"}


@dataclass(frozen=True)
class PowerLawFit:
    """Result of a power-law fit of an ESD tail, p(x) ~ x**(-alpha) for x >= xmin.

    Attributes
    ----------
    alpha : float
        Power-law exponent (dimensionless); NaN when the fit failed.
    xmin, xmax : float
        Smallest and largest fitted eigenvalue of the tail (units of the eigenvalues).
    D : float
        Kolmogorov-Smirnov distance between the tail and the fitted CDF, in [0, 1].
    sigma : float
        Standard error of alpha, (alpha - 1) / sqrt(n_tail).
    num_pl_spikes : int
        Number of eigenvalues >= xmin (0 when failed).
    num_fit : int
        Number of eigenvalues above the threshold that entered the fit.
    method : {"standard", "small_n", ""}
        Selection rule used ("" when failed).
    status : {"success", "failed"}
    reason : str
        Why the fit failed ("" on success).
    xmin_index : int
        Position of xmin among the sorted fitted values (-1 when failed).
    """

    alpha: float
    xmin: float
    xmax: float
    D: float
    sigma: float
    num_pl_spikes: int
    num_fit: int
    method: str
    status: Literal["success", "failed"]
    reason: str = ""
    xmin_index: int = -1

    @classmethod
    def failed(cls, reason: str, num_fit: int = 0) -> PowerLawFit:
        """Return a failed result carrying ``reason``."""
        nan = math.nan
        return cls(nan, nan, nan, nan, nan, 0, num_fit, "", "failed", reason)


def _check_options(threshold: float, small_n: bool) -> tuple[float, int, int]:
    threshold = float(threshold)
    if not math.isfinite(threshold) or threshold < 0:
        msg = f"threshold must be a finite number >= 0, got {threshold!r}"
        raise ValueError(msg)
    return threshold, (SMALL_N_CUTOFF if small_n else 0), SMALL_N_MIN_TAIL


def _failure_reason(fields: tuple[Any, ...], values: np.ndarray, threshold: float) -> str:
    error, bad_index, num_fit = fields[9], fields[10], fields[6]
    if error == 1:
        return "no eigenvalues (empty input)"
    if error == 2:
        return (
            f"eigenvalue {bad_index} is {float(values[bad_index])!r}; NaN and Inf cannot be fitted"
        )
    if error == 3:
        return (
            f"eigenvalue {bad_index} is negative ({float(values[bad_index])!r}); eigenvalues of "
            "W^T W are >= 0"
        )
    if error == 4:
        return (
            f"only {num_fit} eigenvalue(s) above the threshold {threshold:g}; "
            "a power-law fit needs at least 2"
        )
    return f"unknown kernel error {error}"


def fit_from_fields(fields: tuple[Any, ...], values: np.ndarray, threshold: float) -> PowerLawFit:
    alpha, xmin, xmax, D, sigma, spikes, num_fit, xmin_index, method, error, _bad = fields
    if error:
        return PowerLawFit.failed(_failure_reason(fields, values, threshold), int(num_fit))
    return PowerLawFit(
        alpha=alpha,
        xmin=xmin,
        xmax=xmax,
        D=D,
        sigma=sigma,
        num_pl_spikes=int(spikes),
        num_fit=int(num_fit),
        method=FIT_METHODS[method],
        status="success",
        xmin_index=int(xmin_index),
    )


def _as_evals(values: Any, what: str) -> np.ndarray:
    if (type(values) is np.ndarray and values.dtype == np.float64 and values.ndim == 1
            and values.flags.c_contiguous):  # fmt: skip
        return values
    arr = as_float_array(values, what, allow_int=True)
    if arr.ndim != 1:
        msg = f"{what} must be a 1-D array of eigenvalues, got shape {arr.shape}" + (
            "; compute the spectrum with hts_fast.esd() first" if arr.ndim == 2 else ""
        )
        raise ValueError(msg)
    return np.ascontiguousarray(arr, dtype=np.float64)


def fit_powerlaw(
    evals: Any, *, threshold: float = DEFAULT_THRESHOLD, small_n: bool = True
) -> PowerLawFit:
    """Fit a power law to the tail of an ESD, choosing xmin by minimum KS distance.

    Every fitted value but the largest is tried as xmin. For each, alpha is the continuous
    maximum-likelihood estimate ``1 + n / sum(log(x / xmin))`` over the n values >= xmin and
    D the Kolmogorov-Smirnov distance between those values and the fitted CDF
    ``1 - (x / xmin)**(1 - alpha)`` (empirical CDF at the lower step, k/n); the smallest D
    wins, the first candidate on ties. This is WeightWatcher 0.7.7's default fit.

    Parameters
    ----------
    evals : 1-D array
        Eigenvalues (any order, >= 0). Values <= ``threshold`` are left out.
    threshold : float
        Fit only eigenvalues strictly above this (default 1e-5, as WeightWatcher).
    small_n : bool
        With fewer than 20 fitted values use WeightWatcher 0.7.7's small-sample rule
        (bias-corrected ``1 + (n - 1)/sum``, tails of at least 8). False: always standard.

    Returns
    -------
    PowerLawFit

    Raises
    ------
    ValueError
        Empty input, NaN/Inf, negative values, fewer than two values above the threshold,
        or input that is not 1-D.
    TypeError
        Complex or non-numeric input.

    Notes
    -----
    alpha for all candidates costs O(n) (compensated suffix sums); the KS search is exact
    but pruned, typically O(n log n). Memory is O(n).
    """
    threshold, cutoff, min_tail = _check_options(threshold, small_n)
    values = _as_evals(evals, "evals")
    fields = core.fit_powerlaw(values, threshold, cutoff, min_tail)
    result = fit_from_fields(fields, values, threshold)
    if result.status == "failed":
        raise ValueError(result.reason)
    return result


#: A batch gets one more thread per this many eigenvalues (small batches run on one).
VALUES_PER_THREAD = 4_000


def fit_powerlaw_batch(
    spectra: Sequence[Any],
    *,
    threshold: float = DEFAULT_THRESHOLD,
    small_n: bool = True,
    threads: int | None = None,
) -> list[PowerLawFit]:
    """Fit every spectrum of ``spectra`` in parallel; results in input order.

    A spectrum that cannot be fitted gives a ``status="failed"`` result whose ``reason``
    says why; the others are unaffected. Each spectrum is fitted by one thread with the
    serial algorithm, so results are identical for any ``threads``.
    """
    threshold, cutoff, min_tail = _check_options(threshold, small_n)
    n_threads = _threads.resolve_threads(threads)
    results: list[PowerLawFit | None] = [None] * len(spectra)
    arrays: list[np.ndarray] = []
    positions: list[int] = []
    for k, spectrum in enumerate(spectra):
        try:
            arrays.append(_as_evals(spectrum, f"spectrum {k}"))
            positions.append(k)
        except (TypeError, ValueError) as exc:
            results[k] = PowerLawFit.failed(str(exc))
    # starting a thread costs about as much as fitting a few thousand values
    n_threads = min(n_threads, max(1, sum(len(a) for a in arrays) // VALUES_PER_THREAD))
    for k, values, fields in zip(
        positions,
        arrays,
        core.fit_powerlaw_batch(arrays, threshold, cutoff, min_tail, n_threads),
        strict=True,
    ):
        results[k] = fit_from_fields(fields, values, threshold)
    return cast(list[PowerLawFit], results)  # every slot was filled above


@dataclass(frozen=True)
class PowerLawCurve:
    """The whole xmin scan of a power-law fit (arrays over the candidates, ascending xmin)."""

    xmins: np.ndarray
    alphas: np.ndarray
    Ds: np.ndarray
    sigmas: np.ndarray
    best: PowerLawFit


def powerlaw_curve(
    evals: Any,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    small_n: bool = True,
    threads: int | None = None,
) -> PowerLawCurve:
    """Return alpha, D and sigma for every xmin candidate, plus the selected fit.

    Unlike :func:`fit_powerlaw` this computes every KS distance (O(n^2) time, O(n) memory),
    for plots of alpha(xmin) and D(xmin). Candidates with alpha <= 1 (or skipped by the
    small-sample rule) have D = 1, as in WeightWatcher.
    """
    threshold, cutoff, min_tail = _check_options(threshold, small_n)
    values = _as_evals(evals, "evals")
    fields, xmins, alphas, ds, sigmas = core.powerlaw_curve(
        values, threshold, cutoff, min_tail, _threads.resolve_threads(threads)
    )
    best = fit_from_fields(fields, values, threshold)
    if best.status == "failed":
        raise ValueError(best.reason)
    return PowerLawCurve(xmins=xmins, alphas=alphas, Ds=ds, sigmas=sigmas, best=best)
