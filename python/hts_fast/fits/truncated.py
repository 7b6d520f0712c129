"""Truncated power-law (TPL) fits of eigenvalue tails at a fixed xmin.

The model on ``x >= xmin`` is ``p(x) = x**(-alpha) * exp(-Lambda * x) / Z`` with
``Z = Lambda**(alpha - 1) * Gamma(1 - alpha, Lambda * xmin)`` (upper incomplete gamma), the
distribution WeightWatcher's ``fit='TPL'`` asks powerlaw for. Parameters are found by exact
maximum likelihood in the compiled kernel (csrc/cpu/tpl.cpp): the log-likelihood is concave
in (alpha, Lambda), so the maximum is unique and a safeguarded Newton method finds it.

The lower bound of alpha. With Lambda > 0 the density is proper for every real alpha, so the
unconstrained maximum may have any alpha; near the peak of an ESD it often has alpha < 1, even
alpha < 0 (a density that rises before the cut-off takes over). ``alpha_min`` constrains the
fit to alpha >= alpha_min: since the likelihood is concave, the constrained maximum is the
unconstrained one when that has alpha >= alpha_min, and otherwise lies on alpha = alpha_min
(status ``"alpha_bound"``, Lambda the best rate there). :data:`TPL_ALPHA_MIN` = 1 is the
bound analyze() uses by default: see its docstring for why.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast

import numpy as np

from .. import _threads
from .._arrays import as_float_array
from .._core_loader import core

#: Search box of the fit: alpha outside it ends on the bound (status ``"alpha_bound"``).
ALPHA_RANGE = (-100.0, 100.0)
#: The lower bound of alpha that analyze()'s fit="TPL"/"E_TPL" use by default (its
#: ``tpl_alpha_min``). 1, because the TPL exponents of the HT-SR literature are bounded there:
#: powerlaw 1.5, which WeightWatcher's TPL/E_TPL call and with which the published E-TPL
#: exponents (e.g. the NLP generalization-metrics study, pinned to it) were computed, accepts
#: a truncated power law only with alpha > 1 (its optimiser treats alpha <= 1 as out of
#: range, so a maximum below 1 ends just above 1); and 1 is where the power-law reading of
#: alpha ends (x**-alpha alone is normalisable only for alpha > 1). powerlaw 2.0's default
#: range [0, 3] is not used: its upper end would clip the heavy-tailed exponents of 3 to 6
#: that the power-law fits of the same layers give, and its lower end still admits the
#: alphas in (0, 1) that no earlier study reports. Fits that end on the bound have status
#: ``"alpha_bound"``.
TPL_ALPHA_MIN = 1.0
#: The largest lower bound of alpha a fit accepts: the pure power law (Lambda = 0), decided in
#: closed form, has alpha > 2, so a bound up to 2 never cuts it.
ALPHA_MIN_LIMIT = 2.0
#: Search box of ``Lambda * xmin`` (status ``"lambda_bound"`` on either end).
LAMBDA_XMIN_RANGE = (1e-250, 1e15)

TplStatus = Literal[
    "converged", "power_law", "alpha_bound", "lambda_bound", "not_converged", "failed"
]

_STATUSES: dict[int, TplStatus] = {
    0: "converged",
    1: "power_law",
    2: "alpha_bound",
    3: "lambda_bound",
    4: "not_converged",
    5: "failed",
}


@dataclass(frozen=True)
class TruncatedPowerLawFit:
    """Result of a truncated power-law fit, p(x) ~ x**(-alpha) * exp(-Lambda * x), x >= xmin.

    Attributes
    ----------
    alpha : float
        Exponent (dimensionless). Any real value in ``ALPHA_RANGE``; alpha <= 1 is a proper
        density when Lambda > 0. NaN when the fit failed.
    Lambda : float
        Exponential cut-off rate, in 1 / (units of the eigenvalues). 0 when the pure power
        law fits at least as well (status ``"power_law"``).
    xmin : float
        Lower end of the fitted tail (units of the eigenvalues), as given.
    loglik : float
        Log-likelihood summed over the n tail values (natural log, densities in
        1 / (units of the eigenvalues)).
    D : float
        Kolmogorov-Smirnov distance ``max_j |F(x_j) - j/n|`` between the sorted tail and the
        fitted CDF, in [0, 1] (the convention of :func:`hts_fast.fit_powerlaw`).
    alpha_se, Lambda_se : float
        Standard errors from the observed Fisher information (inverse Hessian of the total
        log-likelihood) at the maximum; Lambda_se in the units of Lambda. For status
        ``"power_law"`` alpha_se is the power law's ``(alpha - 1) / sqrt(n)`` and Lambda_se NaN.
    n : int
        Number of values >= xmin that entered the fit.
    status : str
        ``"converged"`` (interior maximum), ``"power_law"`` (maximum at Lambda = 0: alpha is the
        power-law MLE), ``"alpha_bound"`` / ``"lambda_bound"`` (the maximum lies outside the
        search box, or below the fit's ``alpha_min``: the best point on the box is returned;
        on alpha = alpha_min it is the maximum over alpha >= alpha_min), ``"not_converged"``
        (iteration limit; best point found) or ``"failed"`` (bad input; no fit).
    reason : str
        What the status means for this fit ("" when converged).
    iterations : int
        Newton iterations the kernel took (0 for status ``"power_law"`` or ``"failed"``).
    """

    alpha: float
    Lambda: float
    xmin: float
    loglik: float
    D: float
    alpha_se: float
    Lambda_se: float
    n: int
    status: TplStatus
    reason: str = ""
    iterations: int = 0

    @classmethod
    def failed(cls, reason: str, xmin: float = math.nan, n: int = 0) -> TruncatedPowerLawFit:
        """Return a failed result carrying ``reason``."""
        nan = math.nan
        return cls(nan, nan, xmin, nan, nan, nan, nan, n, "failed", reason)


def check_alpha_min(alpha_min: float | None) -> float:
    """The kernel's lower end of alpha for ``alpha_min``: None (unconstrained) gives
    ``ALPHA_RANGE[0]``; a number must lie in [ALPHA_RANGE[0], ALPHA_MIN_LIMIT] (ValueError)."""
    if alpha_min is None:
        return ALPHA_RANGE[0]
    if isinstance(alpha_min, bool) or not isinstance(alpha_min, (int, float, np.integer,
                                                                 np.floating)):  # fmt: skip
        msg = f"alpha_min must be a number or None, got {type(alpha_min).__name__}"
        raise TypeError(msg)
    value = float(alpha_min)
    if not ALPHA_RANGE[0] <= value <= ALPHA_MIN_LIMIT:
        msg = (f"alpha_min must be None or in [{ALPHA_RANGE[0]:g}, {ALPHA_MIN_LIMIT:g}] (a bound "
               f"above {ALPHA_MIN_LIMIT:g} would cut pure power laws), got {alpha_min!r}")  # fmt: skip
        raise ValueError(msg)
    return value


def _reason(status: TplStatus, error: int, n: int, bad_index: int, xmin: float,
            alpha: float = math.nan, alpha_min: float = ALPHA_RANGE[0]) -> str:  # fmt: skip
    if status == "failed":
        if error == 1:
            return f"eigenvalue {bad_index} is NaN or infinite; it cannot be fitted"
        if error == 2:
            return f"xmin must be a finite number > 0, got {xmin!r}"
        if error == 3:
            return f"only {n} value(s) >= xmin = {xmin:g}; a truncated power law needs 2"
        if error == 4:
            return f"all {n} values >= xmin are equal; the likelihood has no maximum"
        return f"unknown kernel error {error}"
    if status == "power_law":
        return (
            "the likelihood is largest at Lambda = 0: the pure power law fits at least as "
            "well (alpha is its MLE)"
        )
    if status == "alpha_bound" and alpha_min > ALPHA_RANGE[0] and alpha == alpha_min:
        return (f"the unconstrained maximum lies at alpha < {alpha_min:g}: alpha is held on "
                "that lower bound, Lambda is the best rate there")  # fmt: skip
    if status == "alpha_bound":
        lo, hi = ALPHA_RANGE
        return f"the maximum lies at alpha outside [{lo:g}, {hi:g}]; alpha stopped on the bound"
    if status == "lambda_bound":
        lo, hi = LAMBDA_XMIN_RANGE
        return (
            f"the maximum lies at Lambda * xmin outside [{lo:g}, {hi:g}]; Lambda stopped on "
            "the bound"
        )
    if status == "not_converged":
        return "the Newton iteration did not converge; the best point found is returned"
    return ""


def fit_from_fields(fields: tuple[Any, ...], xmin: float,
                    alpha_min: float = ALPHA_RANGE[0]) -> TruncatedPowerLawFit:  # fmt: skip
    """The fit of the kernel's result tuple (``alpha_min``: the kernel's lower end of alpha)."""
    alpha, lam, _xmin, loglik, D, alpha_se, lam_se, n, iterations, status_code, error, bad = fields
    status = _STATUSES.get(int(status_code), "failed")
    return TruncatedPowerLawFit(
        alpha=float(alpha),
        Lambda=float(lam),
        xmin=float(xmin),
        loglik=float(loglik),
        D=float(D),
        alpha_se=float(alpha_se),
        Lambda_se=float(lam_se),
        n=int(n),
        status=status,
        reason=_reason(status, int(error), int(n), int(bad), float(xmin), float(alpha), alpha_min),
        iterations=int(iterations),
    )


def _as_evals(values: Any, what: str) -> np.ndarray:
    arr = as_float_array(values, what, allow_int=True)
    if arr.ndim != 1:
        msg = f"{what} must be a 1-D array of eigenvalues, got shape {arr.shape}"
        raise ValueError(msg)
    return np.ascontiguousarray(arr, dtype=np.float64)


def _as_xmin(xmin: Any) -> float:
    if isinstance(xmin, bool) or not isinstance(xmin, (int, float, np.integer, np.floating)):
        msg = f"xmin must be a real number, got {type(xmin).__name__}"
        raise TypeError(msg)
    return float(xmin)


def fit_truncated_powerlaw_at(evals: Any, xmin: float, *,
                              alpha_min: float | None = None) -> TruncatedPowerLawFit:  # fmt: skip
    """Fit a truncated power law to the eigenvalues ``>= xmin`` by maximum likelihood.

    Maximises ``sum_i log p(x_i)`` with ``p(x) = x**(-alpha) exp(-Lambda x) / Z(alpha, Lambda)``
    over the n values ``x_i >= xmin``, jointly in alpha (any real number in ``ALPHA_RANGE``,
    or >= ``alpha_min`` when given: then status ``"alpha_bound"`` with alpha = alpha_min when
    the unconstrained maximum lies below it) and Lambda >= 0. When the maximum is at Lambda = 0 the result is the pure power law
    (``status="power_law"``, Lambda = 0, alpha = ``1 + n / sum(log(x_i / xmin))``); that
    happens exactly when this alpha exceeds 2 and the power law's mean
    ``xmin (alpha - 1) / (alpha - 2)`` is at most the sample mean of the tail.

    Parameters
    ----------
    evals : 1-D array
        Eigenvalues (any order). Only the values ``>= xmin`` are fitted; all must be finite.
    xmin : float
        Lower end of the tail, > 0, in the units of the eigenvalues.
    alpha_min : float or None
        Lower bound of alpha, at most ALPHA_MIN_LIMIT (None: unconstrained; analyze() uses
        :data:`TPL_ALPHA_MIN` by default).

    Returns
    -------
    TruncatedPowerLawFit
        alpha (dimensionless), Lambda (1 / units of evals), loglik (summed, natural log),
        D, standard errors, n and status. Bad data (NaN/Inf, fewer than two tail values,
        xmin <= 0, a tail of equal values) gives ``status="failed"`` with the ``reason``;
        nothing is raised for it.

    Raises
    ------
    ValueError
        ``evals`` is not 1-D.
    TypeError
        ``evals`` is complex or not numeric, or ``xmin`` is not a real number.

    Notes
    -----
    Cost: O(n log n) for sorting plus O(n) for the KS distance; the optimisation touches the
    data only through mean(log x) and mean(x). Deterministic and single-threaded.
    """
    x = _as_xmin(xmin)
    values = _as_evals(evals, "evals")
    low = check_alpha_min(alpha_min)
    return fit_from_fields(core.fit_truncated_powerlaw(values, x, low), x, low)


def fit_truncated_powerlaw_at_batch(
    pairs: Sequence[tuple[Any, float]], *, threads: int | None = None,
    alpha_min: float | None = None,
) -> list[TruncatedPowerLawFit]:  # fmt: skip
    """Fit every ``(evals, xmin)`` pair of ``pairs`` in parallel; results in input order.

    Each pair is fitted as by :func:`fit_truncated_powerlaw_at`, by one thread with the serial
    algorithm, so results are identical for any ``threads`` (None: all available cores).
    A pair that cannot be fitted, including one whose input has the wrong shape or type,
    gives a ``status="failed"`` result whose ``reason`` says why; the others are unaffected.
    """
    n_threads = _threads.resolve_threads(threads)
    low = check_alpha_min(alpha_min)
    results: list[TruncatedPowerLawFit | None] = [None] * len(pairs)
    arrays: list[np.ndarray] = []
    xmins: list[float] = []
    positions: list[int] = []
    for k, pair in enumerate(pairs):
        try:
            evals, xmin = pair
            x = _as_xmin(xmin)
            arrays.append(_as_evals(evals, f"spectrum {k}"))
            xmins.append(x)
            positions.append(k)
        except (TypeError, ValueError) as exc:
            results[k] = TruncatedPowerLawFit.failed(str(exc))
    n_threads = min(n_threads, max(1, len(arrays)))
    for k, x, fields in zip(
        positions,
        xmins,
        core.fit_truncated_powerlaw_batch(arrays, xmins, n_threads, low),
        strict=True,
    ):
        results[k] = fit_from_fields(fields, x, low)
    return cast(list[TruncatedPowerLawFit], results)  # every slot was filled above
