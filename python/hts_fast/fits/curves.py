"""Full xmin scans as tables: alpha(xmin), D(xmin) (and Lambda(xmin) for the truncated power
law) for every candidate, for plots and for users who want the whole scan."""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
import pandas as pd

from .. import _threads
from .._core_loader import core
from .powerlaw import DEFAULT_THRESHOLD, powerlaw_curve
from .tpl_search import _as_evals, _cdf_xmax
from .truncated import _STATUSES, check_alpha_min

__all__ = ["fit_curves"]


def _powerlaw_table(x: np.ndarray, threshold: float, small_n: bool,
                    threads: int | None) -> pd.DataFrame:  # fmt: skip
    curve = powerlaw_curve(x, threshold=threshold, small_n=small_n, threads=threads)
    n = curve.best.num_fit - np.arange(len(curve.xmins))
    table = pd.DataFrame({"xmin": curve.xmins, "alpha": curve.alphas, "D": curve.Ds,
                          "sigma": curve.sigmas, "n": n})  # fmt: skip
    table.attrs["selected"] = curve.best.xmin_index
    return table


def _tpl_table(x: np.ndarray, threshold: float, xmin_range: tuple[float, float] | None,
               alpha_above_one: bool, cdf_xmax: float | None, alpha_min: float | None,
               threads: int | None) -> pd.DataFrame:  # fmt: skip
    low, high = (-math.inf, math.inf) if xmin_range is None else map(float, xmin_range)
    fields, columns = core.truncated_powerlaw_curve(
        x, float(threshold), low, high, 1.0 if alpha_above_one else -math.inf,
        _cdf_xmax(cdf_xmax), _threads.resolve_threads(threads), check_alpha_min(alpha_min),
    )  # fmt: skip
    if fields[4] == 1:
        msg = "eigenvalues hold NaN or Inf"
        raise ValueError(msg)
    columns["status"] = [_STATUSES.get(int(s), "failed") for s in columns["status"]]
    table = pd.DataFrame(columns)
    table.attrs["selected"] = int(fields[3])
    return table


def fit_curves(
    evals: Any,
    fit: Literal["PL", "TPL"] = "PL",
    *,
    xmin_range: tuple[float, float] | None = None,
    threshold: float = DEFAULT_THRESHOLD,
    small_n: bool = True,
    alpha_above_one: bool = False,
    cdf_xmax: float | None = None,
    alpha_min: float | None = None,
    threads: int | None = None,
) -> pd.DataFrame:
    """Every xmin candidate's fit of an ESD tail, one row per candidate (ascending xmin).

    Parameters
    ----------
    evals : 1-D array
        Eigenvalues (any order). Values <= ``threshold`` are left out.
    fit : {"PL", "TPL"}
        ``"PL"``: the power-law scan of :func:`hts_fast.fit_powerlaw` (every fitted value but
        the largest is a candidate, duplicates included). ``"TPL"``: the truncated power law
        of :func:`hts_fast.fits.tpl_search.fit_truncated_powerlaw` (distinct values, optionally
        inside ``xmin_range`` = [low, high)).
    alpha_above_one, cdf_xmax, alpha_min
        TPL only: which fits are valid for the selection, the KS test's upper cut and the
        lower bound of alpha in every fit (None: unconstrained), as in
        :func:`hts_fast.fits.tpl_search.fit_truncated_powerlaw`.
    threads
        Worker threads (None: all cores); results do not depend on it.

    Returns
    -------
    pandas.DataFrame
        Columns, for ``"PL"``: ``xmin`` (units of the eigenvalues), ``alpha``
        (dimensionless MLE), ``D`` (KS distance in [0, 1]; 1 where alpha <= 1 or the
        small-sample rule skips the candidate), ``sigma`` ((alpha - 1) / sqrt(n)), ``n``
        (number of fitted values >= xmin). For ``"TPL"``: ``xmin``, ``alpha``, ``Lambda``
        (1 / units of the eigenvalues; 0 where the pure power law is the maximum), ``D``
        (NaN where the fit has no CDF), ``loglik`` (summed natural-log likelihood),
        ``alpha_se``, ``Lambda_se`` (observed-information standard errors), ``n`` and
        ``status`` (as :class:`hts_fast.fits.truncated.TruncatedPowerLawFit`).
        ``table.attrs["selected"]`` is the row of the chosen xmin (smallest D among the valid
        fits, the first on ties; -1 when none is valid), the row that
        :func:`hts_fast.fit_powerlaw` / ``fit_truncated_powerlaw`` return.

    Raises
    ------
    ValueError
        NaN/Inf, too few values (PL), input that is not 1-D, or an unknown ``fit``.

    Notes
    -----
    Cost O(n^2) for n fitted values (every KS distance is computed): about 1 s for the TPL
    curve of n = 4,096 on one core, whereas the searches alone drop most KS scans.
    """
    x = _as_evals(np.ravel(np.asarray(evals)), "evals")
    if fit == "PL":
        if (xmin_range is not None or alpha_above_one or cdf_xmax is not None
                or alpha_min is not None):  # fmt: skip
            msg = "xmin_range, alpha_above_one, cdf_xmax and alpha_min apply to fit='TPL' only"
            raise ValueError(msg)
        return _powerlaw_table(x, threshold, small_n, threads)
    if fit == "TPL":
        return _tpl_table(x, threshold, xmin_range, alpha_above_one, cdf_xmax, alpha_min,
                          threads)  # fmt: skip
    msg = f"fit must be 'PL' or 'TPL', got {fit!r}"
    raise ValueError(msg)
