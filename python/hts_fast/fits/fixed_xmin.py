"""The power-law fit at a fixed xmin, and the median rule TempBalance and AlphaPruning use.

The median rule (TempBalance's ``pl_fitting="median"``, AlphaPruning's ``alpha_mid``) takes
no xmin search: with the N eigenvalues in ascending order, xmin is the one at index
``i = N // xmin_pos`` (the median for ``xmin_pos=2``), and the tail is everything from it up:

    alpha = 1 + n / sum_j ln(lambda_j / xmin)                      (n = N - i tail values)
    D     = max_j |1 - (lambda_j / xmin)**(1 - alpha) - j / n|     (j = 0 .. n-1)

One pass, O(N) after the sort. Two cases make TempBalance's version non-finite, and are
handled here:

* xmin at or below ``threshold`` (more than a ``1/xmin_pos`` share of the eigenvalues is
  ~0, a rank-deficient layer): ln(lambda / 0) is infinite. The index is then counted among the
  eigenvalues above ``threshold`` only, as TempBalance's ``filter_zeros=True`` counts it.
* every tail value equal to xmin (a matrix with all singular values equal, an orthogonal
  initialisation say, or a tail of one value): the sum is 0 and alpha infinite, or, with the
  eigenvalues equal only up to rounding, finite but about 1e15. No finite alpha describes a
  flat spectrum, so the fit fails and says so; flat means the largest eigenvalue within
  ``FLAT_RTOL`` (1e-9) relative of xmin. That is the float64 limit: weights stored in a
  lower precision are flat only to that precision, which the schedules judge from the
  weights' dtype (:func:`hts_fast.schedules.estimate.flat_tolerance`).

A successful fit's alpha is therefore always finite and > 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._arrays import as_float_array
from .powerlaw import DEFAULT_THRESHOLD

#: A tail whose largest value is within this relative distance of xmin is flat (no fit).
FLAT_RTOL = 1e-9


@dataclass(frozen=True)
class FixedXminFit:
    """A power-law fit of the tail at and above a given xmin.

    Attributes
    ----------
    alpha : float
        ``1 + n / sum(ln(tail / xmin))``; finite and > 1 on success, NaN when failed.
    D : float
        Kolmogorov-Smirnov distance of the tail to the fitted CDF, in [0, 1] (NaN when failed).
    xmin : float
        The tail's smallest eigenvalue (units of the eigenvalues; NaN when failed).
    xmin_index : int
        Its index in the ascending spectrum (-1 when failed).
    num_pl_spikes : int
        The tail's length n (0 when failed).
    status : {"success", "failed"}
    reason : str
        Why it failed, or a note on how xmin was chosen (``""`` otherwise).
    """

    alpha: float
    D: float
    xmin: float
    xmin_index: int
    num_pl_spikes: int
    status: str
    reason: str = ""

    @classmethod
    def failed(cls, reason: str) -> FixedXminFit:
        """A failed fit carrying ``reason``."""
        return cls(math.nan, math.nan, math.nan, -1, 0, "failed", reason)


def _sorted_evals(evals: Any) -> np.ndarray:
    values = as_float_array(evals, "evals", allow_int=True)
    if values.ndim != 1:
        msg = f"evals must be a 1-D array of eigenvalues, got shape {values.shape}"
        raise ValueError(msg)
    values = np.asarray(values, dtype=np.float64)
    if len(values) == 0:
        msg = "evals is empty: there is no spectrum to fit"
        raise ValueError(msg)
    if not np.all(np.isfinite(values)):
        msg = "evals holds NaN or Inf; a power law cannot be fitted"
        raise ValueError(msg)
    if values.min() < 0:
        msg = f"evals holds a negative value ({values.min()!r}); eigenvalues of W^T W are >= 0"
        raise ValueError(msg)
    return np.sort(values)


def fit_at_index(evals: np.ndarray, index: int, note: str = "") -> FixedXminFit:
    """Fit the tail ``evals[index:]`` of an ascending float64 spectrum (xmin = evals[index]).

    Fails (``status="failed"``) when xmin <= 0 or the tail is flat (every value within
    ``FLAT_RTOL`` relative of xmin).
    """
    n = len(evals) - index
    if not 0 <= index < len(evals):
        return FixedXminFit.failed(f"xmin index {index} outside a spectrum of {len(evals)}")
    xmin = float(evals[index])
    if not xmin > 0:
        return FixedXminFit.failed(f"xmin is {xmin!r}; a power law needs xmin > 0")
    ratio = evals[index:] / xmin
    total = float(np.sum(np.log(ratio)))
    if not (total > 0 and ratio[-1] > 1 + FLAT_RTOL):
        return FixedXminFit.failed(
            f"the {n} tail eigenvalue(s) all equal xmin = {xmin:.6g} (to {FLAT_RTOL:g}): a flat "
            "spectrum has no "
            "finite power-law exponent"
        )
    alpha = 1.0 + n / total
    D = float(np.max(np.abs(1.0 - ratio ** (1.0 - alpha) - np.arange(n) / n)))
    return FixedXminFit(alpha, D, xmin, int(index), int(n), "success", note)


def reindexed_note(index: int, threshold: float, above: int) -> str:
    """The reason note of a median-rule fit whose index fell on a zero eigenvalue and was
    counted among the ``above`` eigenvalues above ``threshold`` instead."""
    return (f"xmin at index {index} was <= {threshold:g}: index counted among the {above} "
            "eigenvalues above it")  # fmt: skip


def fit_median_xmin(
    evals: Any,
    *,
    xmin_pos: int = 2,
    threshold: float = DEFAULT_THRESHOLD,
    filter_zeros: bool = False,
) -> FixedXminFit:
    """Fit a power law with xmin at index ``N // xmin_pos`` of the ascending spectrum.

    Parameters
    ----------
    evals : 1-D array
        Eigenvalues (>= 0, any order).
    xmin_pos : int
        xmin is the eigenvalue at index ``N // xmin_pos`` (2: the median; larger: lower; >= 2).
    threshold : float
        Eigenvalues at or below it count as zeros.
    filter_zeros : bool
        Count the index among the eigenvalues above ``threshold`` only (TempBalance's
        ``filter_zeros``). When False (TempBalance's default) it is counted over all N, unless
        that xmin is itself at or below ``threshold``: then it is counted above the threshold
        and ``reason`` says so.

    Returns
    -------
    FixedXminFit
        ``status="failed"`` with the reason when no finite alpha exists (no eigenvalue above
        ``threshold``, or a flat tail).

    Raises
    ------
    ValueError
        Empty, not 1-D, NaN/Inf or negative input, or ``xmin_pos`` < 1.
    """
    if isinstance(xmin_pos, bool) or not isinstance(xmin_pos, (int, np.integer)) or xmin_pos < 2:
        msg = f"xmin_pos must be an integer >= 2 (1 would put xmin past the end), got {xmin_pos!r}"
        raise ValueError(msg)
    values = _sorted_evals(evals)
    N = len(values)
    zeros = int(np.searchsorted(values, threshold, side="right"))
    if zeros == N:
        return FixedXminFit.failed(f"no eigenvalue above the threshold {threshold:g}")
    index, note = N // xmin_pos, ""
    if filter_zeros or values[index] <= threshold:
        if not filter_zeros:
            note = reindexed_note(index, threshold, N - zeros)
        index = zeros + (N - zeros) // xmin_pos
    return fit_at_index(values, index, note)
