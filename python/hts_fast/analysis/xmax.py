"""The ``xmax`` option of :func:`hts_fast.analyze`: an upper end of the fitted tail.

WeightWatcher 0.7.7 (reference doc §4.1, §4.7) accepts ``xmax="force"`` only with
``pl_package="powerlaw"``, i.e. for its TPL / E_TPL fits, where it becomes
``powerlaw.Fit(..., xmax=max(evals))``. powerlaw then keeps the fit of each candidate as it is
(the truncated power law's normaliser ignores xmax) but computes the KS distance D against
the CDF renormalised to [xmin, xmax], F(x) / F(xmax); so xmax changes D and with it the chosen
xmin, although the fitted density is not the one tested. A numeric xmax also drops the
eigenvalues above it (powerlaw trims its data to [xmin, xmax]).

Semantics here:

* ``None``: no upper end (both modes).
* a number (units of the eigenvalues): eigenvalues above it are left out of the fit, for
  every ``fit`` (so ``xmax``, ``num_pl_spikes`` and the tail describe the cut spectrum);
  compat with fit="TPL"/"E_TPL" also renormalises D's CDF at xmax, as powerlaw does.
* ``"force"`` (xmax = the largest eigenvalue): compat with TPL/E_TPL renormalises D's CDF at
  the largest eigenvalue, as above; compat with fit="PL" is invalid (WeightWatcher raises:
  its own fitter takes no xmax). By default the largest eigenvalue cuts nothing and the
  fitted model is the one tested, so the results equal ``xmax=None``: renormalising only the
  test, not the fit, is the inconsistency the default mode removes.

* an ``int`` k in compat mode (WeightWatcher 0.7.7, reference doc §4.1): with |k| <= half the
  eigenvalues, the |k| largest are dropped before the fit (k = 0 is refused, as WeightWatcher's
  parameter check does); a larger |k| is used as a value, the data cut at the eigenvalue
  closest to it. By default an int is a value like any number (the meaning
  "drop the k largest" is what ``fix_fingers="clip_xmax"`` is for).
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np

Xmax = float | int | Literal["force"] | None


def check_xmax(xmax: Any, *, fit: str, compat: str | None, fix_fingers: str | None) -> Xmax:
    """The validated option: None, "force" or a float > 0. Raises ValueError otherwise."""
    if xmax is None:
        return None
    if fix_fingers:
        msg = "xmax cannot be combined with fix_fingers (WeightWatcher rejects it too)"
        raise ValueError(msg)
    if isinstance(xmax, str):
        if xmax != "force":
            msg = f"xmax must be None, 'force' or a number > 0, got {xmax!r}"
            raise ValueError(msg)
        if compat and fit == "PL":
            msg = "compat: xmax='force' needs fit='TPL' or 'E_TPL' (pl_package='powerlaw')"
            raise ValueError(msg)
        return "force"
    if isinstance(xmax, bool) or not isinstance(xmax, (int, float, np.integer, np.floating)):
        msg = f"xmax must be None, 'force' or a number > 0, got {type(xmax).__name__}"
        raise TypeError(msg)
    if compat and isinstance(xmax, (int, np.integer)):
        if xmax == 0:
            msg = "compat: xmax=0 is rejected by WeightWatcher 0.7.7 (its parameter check)"
            raise ValueError(msg)
        return int(xmax)  # WeightWatcher's "drop the |k| largest" (either sign)
    if not (math.isfinite(float(xmax)) and float(xmax) > 0):
        msg = f"xmax must be None, 'force' or a number > 0, got {xmax!r}"
        raise ValueError(msg)
    return float(xmax)


def fitted_evals(evals: np.ndarray, xmax: Xmax) -> np.ndarray:
    """The sorted eigenvalues that enter the fit: those <= a numeric xmax, all but the |k|
    largest for compat's int k (see the module notes), else all."""
    if isinstance(xmax, float):
        return evals[: int(np.searchsorted(evals, xmax, side="right"))]
    if isinstance(xmax, int) and not isinstance(xmax, bool):
        k = abs(xmax)
        if k <= len(evals) / 2:
            return evals[: len(evals) - k]
        closest = int(np.argmin(np.abs(evals - k)))
        return evals[: closest + 1]
    return evals


def cdf_xmax(evals: np.ndarray, xmax: Xmax, compat: str | None) -> float | None:
    """Where the TPL search renormalises D's CDF (compat only; None: nowhere)."""
    if not compat or xmax is None or len(evals) == 0:
        return None
    if isinstance(xmax, int) and not isinstance(xmax, bool):
        return None  # WeightWatcher drops the k largest and then fits with xmax=None
    return float(evals[-1]) if xmax == "force" else float(xmax)
