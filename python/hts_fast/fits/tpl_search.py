"""Truncated power law with its xmin chosen: ``fit="TPL"`` (every candidate) and ``"E_TPL"``
(candidates around the ESD's peak), as WeightWatcher asks powerlaw for them.

Candidates are the distinct eigenvalues above ``threshold`` inside the xmin range, the
largest excepted (a tail needs two values). Each is fitted by the exact maximum-likelihood
kernel (hts_fast.fits.truncated); the chosen xmin has the smallest KS distance D among the valid
fits (a maximum found: status "converged", or "power_law" when Lambda = 0 is the maximum),
the first one on ties. With Lambda > 0 the density is proper for any alpha, so alpha <= 1 is
valid; powerlaw (and so WeightWatcher) also requires alpha > 1. Near the ESD's peak the exact
maximum usually has alpha < 1: a search confined to alpha > 1 ends on that boundary, which is
where WeightWatcher's E_TPL alphas of about 1.1 come from. Two ways to take alpha > 1 into
account, both here:

* ``alpha_min`` (a bound): every candidate is fitted over alpha >= alpha_min, the maximum
  ending on alpha = alpha_min (status "alpha_bound") where the unconstrained one lies below;
  such a fit is valid, since it is the constrained maximum. analyze()'s default for
  fit="TPL"/"E_TPL" (alpha_min = 1, :data:`hts_fast.fits.truncated.TPL_ALPHA_MIN`): what
  powerlaw's optimiser approximates. None: the unconstrained maximum.
* ``alpha_above_one`` (a filter): candidates whose unconstrained maximum has alpha <= 1 are
  dropped from the selection. What ``variant="weightwatcher-0.7.7"`` (analyze()'s compat
  mode) applies, as it has since the compat mode was first matched.

E_TPL's range comes from the histogram of log10 of the eigenvalues (100 bins): peak = 10 **
(left edge of the fullest bin), range = [0.95 peak, 1.5 peak). WeightWatcher 0.7.7 passes
``(log10(0.95 peak), 1.5 peak)`` instead, a lower bound in log units (so every eigenvalue
below 1.5 peak is a candidate); ``variant="weightwatcher-0.7.7"`` reproduces that range, and
the result records which one was used.

Cost: the whole search runs in the compiled kernel (csrc/cpu/tpl.cpp,
``fit_truncated_powerlaw_search``): neighbouring candidates share their tail sums and start
Newton's method from each other's maximum, and the KS distance is computed only for
candidates that can still win (exactly: the choice and its D are those of the full scan).
Measured on 2 cores: 0.14 s for all 4,095 candidates of n = 4,096, 0.5 s for n = 15,000
(the Python loop over the fixed-xmin kernel it replaced: 0.62 s and 7.8 s). The loop is kept
as :func:`_search_by_loop`, the tests' oracle.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np

from .. import _threads
from .._core_loader import core
from .powerlaw import DEFAULT_THRESHOLD
from .truncated import (
    TruncatedPowerLawFit,
    _as_evals,
    check_alpha_min,
    fit_from_fields,
    fit_truncated_powerlaw_at_batch,
)

Variant = Literal["corrected", "weightwatcher-0.7.7"]
PEAK_BINS = 100
RANGE_LOW, RANGE_HIGH = 0.95, 1.5


@dataclass(frozen=True)
class TplSearch:
    """The selected fit and how it was selected: ``fit`` (its xmin is the chosen one),
    ``xmin_range`` (low, high) searched, ``variant`` of the E_TPL range (None for TPL) and
    the number of ``candidates`` fitted and ``valid`` among them; ``alpha_min`` the bound of
    alpha the fits had (None: unconstrained)."""

    fit: TruncatedPowerLawFit
    xmin_range: tuple[float, float]
    variant: Variant | None
    candidates: int
    valid: int
    #: the lower bound of alpha every candidate was fitted with (None: unconstrained)
    alpha_min: float | None = None


def peak_xmin_range(evals: Any, *, variant: Variant = "corrected",
                    threshold: float = DEFAULT_THRESHOLD) -> tuple[float, float]:  # fmt: skip
    """E_TPL's xmin range (low, high) for an ESD (see the module docstring)."""
    x = np.asarray(evals, dtype=np.float64)
    x = x[x > threshold]
    if len(x) == 0:
        return (math.nan, math.nan)
    counts, edges = np.histogram(np.log10(x), bins=PEAK_BINS)
    peak = 10.0 ** edges[int(np.argmax(counts))]
    low = math.log10(RANGE_LOW * peak) if variant == "weightwatcher-0.7.7" else RANGE_LOW * peak
    return (low, RANGE_HIGH * peak)


def peak_candidate(x: np.ndarray, *, threads: int | None = None) -> tuple[Any, int] | str:
    """The power-law xmin candidate of the fixed-peak rule (fix_fingers="xmin_peak",
    TempBalance's xmin="peak"): among the candidates in :func:`peak_xmin_range` with a finite
    alpha > 1, the smallest KS distance (the first on ties).

    ``x``: the fitted values, ascending, above the threshold. Returns
    (:func:`hts_fast.fits.powerlaw.powerlaw_curve` of ``x``, the candidate's index), or the
    reason no candidate qualifies.
    """
    from .powerlaw import powerlaw_curve

    try:
        curve = powerlaw_curve(x, threads=threads)
    except ValueError as exc:
        return str(exc)
    low, high = peak_xmin_range(x)
    inside = np.flatnonzero((curve.xmins >= low) & (curve.xmins < high) & (curve.alphas > 1)
                            & np.isfinite(curve.alphas))  # fmt: skip
    if len(inside) == 0:
        return f"no xmin candidate with a finite alpha > 1 in [{low:.6g}, {high:.6g})"
    return curve, int(inside[np.argmin(curve.Ds[inside])])


def _xmin_range(x: np.ndarray, xmin_range: tuple[float, float] | None, variant: Variant | None,
                threshold: float) -> tuple[float, float]:  # fmt: skip
    if variant is not None:
        return peak_xmin_range(x, variant=variant, threshold=threshold)
    if xmin_range is not None:
        low, high = (float(v) for v in xmin_range)
        return low, high
    return -math.inf, math.inf


def _need_alpha(alpha_above_one: bool | None, variant: Variant | None) -> float:
    if alpha_above_one is None:
        alpha_above_one = variant == "weightwatcher-0.7.7"
    return 1.0 if alpha_above_one else -math.inf


def _cdf_xmax(cdf_xmax: float | None) -> float:
    value = math.inf if cdf_xmax is None else float(cdf_xmax)
    if not value > 0:
        msg = f"cdf_xmax must be a number > 0 or None, got {cdf_xmax!r}"
        raise ValueError(msg)
    return value


def _to_search(fields: tuple[Any, ...], low: float, high: float, variant: Variant | None,
               alpha_min: float | None = None) -> TplSearch:  # fmt: skip
    search = _search_of(fields, low, high, variant, check_alpha_min(alpha_min))
    return replace(search, alpha_min=alpha_min)


def _search_of(fields: tuple[Any, ...], low: float, high: float, variant: Variant | None,
               kernel_min: float) -> TplSearch:  # fmt: skip
    fit_fields, candidates, valid, _best, error, _bad = fields
    if error == 1:
        return TplSearch(TruncatedPowerLawFit.failed("eigenvalues hold NaN or Inf"),
                         (math.nan, math.nan), variant, 0, 0)  # fmt: skip
    if error == 2:
        reason = f"no xmin candidate in [{low:.6g}, {high:.6g}) with at least two values above"
        return TplSearch(TruncatedPowerLawFit.failed(reason), (low, high), variant, 0, 0)
    if error == 3:
        reason = f"none of the {candidates} xmin candidates gave a valid fit"
        return TplSearch(TruncatedPowerLawFit.failed(reason), (low, high), variant,
                         int(candidates), 0)  # fmt: skip
    return TplSearch(fit_from_fields(fit_fields, float(fit_fields[2]), kernel_min), (low, high),
                     variant, int(candidates), int(valid))  # fmt: skip


def fit_truncated_powerlaw(
    evals: Any, *, xmin_range: tuple[float, float] | None = None,
    variant: Variant | None = None, threshold: float = DEFAULT_THRESHOLD,
    threads: int | None = None, alpha_above_one: bool | None = None,
    cdf_xmax: float | None = None, alpha_min: float | None = None,
) -> TplSearch:  # fmt: skip
    """Fit a truncated power law choosing xmin by the smallest KS distance.

    ``variant`` given (E_TPL): the range is :func:`peak_xmin_range`; else ``xmin_range``, or
    every eigenvalue above ``threshold`` when None (TPL). ``alpha_min``: fit every candidate
    over alpha >= alpha_min (at most 2; fits on the bound have status "alpha_bound" and are
    valid); None (this function's default): unconstrained. ``alpha_above_one``: keep only
    fits with alpha > 1, as powerlaw (None: only for the WeightWatcher E_TPL variant).
    ``cdf_xmax`` (units of the eigenvalues): D compares each tail with the fitted CDF
    renormalised to [xmin, cdf_xmax], F(x) / F(cdf_xmax), as powerlaw does when given an
    xmax; the fits themselves are unchanged (None: no renormalisation).
    Returns the search with the selected fit; ``fit.status == "failed"`` (with the reason)
    when no candidate is valid. Results do not depend on ``threads``.
    """
    x = _as_evals(np.ravel(np.asarray(evals)), "evals")
    if not np.isfinite(x).all():
        return TplSearch(TruncatedPowerLawFit.failed("eigenvalues hold NaN or Inf"),
                         (math.nan, math.nan), variant, 0, 0)  # fmt: skip
    kernel_min = check_alpha_min(alpha_min)
    low, high = _xmin_range(x, xmin_range, variant, threshold)
    fields = core.fit_truncated_powerlaw_search(
        x, float(threshold), low, high, _need_alpha(alpha_above_one, variant),
        _cdf_xmax(cdf_xmax), _threads.resolve_threads(threads), kernel_min,
    )  # fmt: skip
    return _to_search(fields, low, high, variant, alpha_min)


def fit_truncated_powerlaw_batch(
    spectra: Sequence[Any], *, variant: Variant | None = None,
    threshold: float = DEFAULT_THRESHOLD, threads: int | None = None,
    alpha_above_one: bool | None = None, cdf_xmax: Sequence[float | None] | None = None,
    alpha_min: float | None = None,
) -> list[TplSearch]:  # fmt: skip
    """:func:`fit_truncated_powerlaw` for every spectrum of ``spectra``, one thread per
    spectrum (results in input order, identical to the one-at-a-time calls). ``cdf_xmax``:
    one value (or None) per spectrum."""
    xmaxes = [None] * len(spectra) if cdf_xmax is None else list(cdf_xmax)
    if len(xmaxes) != len(spectra):
        msg = f"cdf_xmax needs one value per spectrum ({len(spectra)}), got {len(xmaxes)}"
        raise ValueError(msg)
    kernel_min = check_alpha_min(alpha_min)
    arrays = [_as_evals(np.ravel(np.asarray(e)), f"spectrum {k}") for k, e in enumerate(spectra)]
    ranges = [_xmin_range(x[np.isfinite(x)], None, variant, threshold) for x in arrays]
    n_threads = min(_threads.resolve_threads(threads), max(1, len(arrays)))
    out = core.fit_truncated_powerlaw_search_batch(
        arrays, float(threshold), [r[0] for r in ranges], [r[1] for r in ranges],
        _need_alpha(alpha_above_one, variant), [_cdf_xmax(v) for v in xmaxes], n_threads,
        kernel_min,
    )  # fmt: skip
    return [_to_search(f, lo, hi, variant, alpha_min)
            for f, (lo, hi) in zip(out, ranges, strict=True)]  # fmt: skip


def _search_by_loop(
    evals: Any, *, xmin_range: tuple[float, float] | None = None,
    variant: Variant | None = None, threshold: float = DEFAULT_THRESHOLD,
    threads: int | None = None, alpha_above_one: bool | None = None,
    alpha_min: float | None = None,
) -> TplSearch:  # fmt: skip
    """The search as a Python loop over the fixed-xmin kernel, every candidate fitted from
    scratch (the implementation before the compiled search; the tests' oracle)."""
    x = np.sort(np.asarray(evals, dtype=np.float64).ravel())
    if not np.isfinite(x).all():
        return TplSearch(TruncatedPowerLawFit.failed("eigenvalues hold NaN or Inf"),
                         (math.nan, math.nan), variant, 0, 0)  # fmt: skip
    x = x[x > threshold]
    low, high = _xmin_range(x, xmin_range, variant, threshold)
    distinct = np.unique(x)[:-1]  # the largest value alone is no tail
    candidates = distinct[(distinct >= low) & (distinct < high)]
    if len(candidates) == 0:
        reason = f"no xmin candidate in [{low:.6g}, {high:.6g}) with at least two values above"
        return TplSearch(TruncatedPowerLawFit.failed(reason), (low, high), variant, 0, 0,
                         alpha_min)  # fmt: skip
    fits = fit_truncated_powerlaw_at_batch([(x, float(c)) for c in candidates], threads=threads,
                                           alpha_min=alpha_min)  # fmt: skip
    need_alpha = _need_alpha(alpha_above_one, variant)
    valid = [k for k, f in enumerate(fits)
             if (f.status in ("converged", "power_law")
                 or (f.status == "alpha_bound" and alpha_min is not None
                     and f.alpha == alpha_min))
             and f.alpha > need_alpha]  # fmt: skip
    if not valid:
        reason = f"none of the {len(fits)} xmin candidates gave a valid fit"
        return TplSearch(TruncatedPowerLawFit.failed(reason), (low, high), variant,
                         len(fits), 0, alpha_min)  # fmt: skip
    best = min(valid, key=lambda k: (fits[k].D, k))
    return TplSearch(fits[best], (low, high), variant, len(fits), len(valid), alpha_min)
