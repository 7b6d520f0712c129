"""Truncated power law with its xmin chosen: ``fit="TPL"`` (every candidate) and ``"E_TPL"``
(candidates around the ESD's peak), as WeightWatcher asks powerlaw for them.

Candidates are the distinct eigenvalues above ``threshold`` inside the xmin range, the
largest excepted (a tail needs two values). Each is fitted by the exact maximum-likelihood
kernel (hts_fast.truncated); the chosen xmin has the smallest KS distance D among the valid
fits (a maximum found: status "converged", or "power_law" when Lambda = 0 is the maximum),
the first one on ties. With Lambda > 0 the density is proper for any alpha, so alpha <= 1 is
valid; powerlaw (and so WeightWatcher) also requires alpha > 1, which
``variant="weightwatcher-0.7.7"`` applies. Near the ESD's peak the exact maximum usually
has alpha < 1: a search confined to alpha > 1 ends on that boundary, which is where
WeightWatcher's E_TPL alphas of about 1.1 come from.

E_TPL's range comes from the histogram of log10 of the eigenvalues (100 bins): peak = 10 **
(left edge of the fullest bin), range = [0.95 peak, 1.5 peak). WeightWatcher 0.7.7 passes
``(log10(0.95 peak), 1.5 peak)`` instead, a lower bound in log units (so every eigenvalue
below 1.5 peak is a candidate); ``variant="weightwatcher-0.7.7"`` reproduces that range, and
the result records which one was used.

Cost: one O(n) fit per candidate, in parallel over candidates (E_TPL: typically a few
hundred candidates; TPL over a whole ESD: n of them, seconds for n = 4,096).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np

from .fits import DEFAULT_THRESHOLD
from .truncated import TruncatedPowerLawFit, fit_truncated_powerlaw_at_batch

Variant = Literal["corrected", "weightwatcher-0.7.7"]
PEAK_BINS = 100
RANGE_LOW, RANGE_HIGH = 0.95, 1.5


@dataclass(frozen=True)
class TplSearch:
    """The selected fit and how it was selected: ``fit`` (its xmin is the chosen one),
    ``xmin_range`` (low, high) searched, ``variant`` of the E_TPL range (None for TPL) and
    the number of ``candidates`` fitted and ``valid`` among them."""

    fit: TruncatedPowerLawFit
    xmin_range: tuple[float, float]
    variant: Variant | None
    candidates: int
    valid: int


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


def fit_truncated_powerlaw(
    evals: Any, *, xmin_range: tuple[float, float] | None = None,
    variant: Variant | None = None, threshold: float = DEFAULT_THRESHOLD,
    threads: int | None = None, alpha_above_one: bool | None = None,
) -> TplSearch:  # fmt: skip
    """Fit a truncated power law choosing xmin by the smallest KS distance.

    ``variant`` given (E_TPL): the range is :func:`peak_xmin_range`; else ``xmin_range``, or
    every eigenvalue above ``threshold`` when None (TPL). ``alpha_above_one``: keep only
    fits with alpha > 1, as powerlaw (None: only for the WeightWatcher E_TPL variant).
    Returns the search with the selected fit; ``fit.status == "failed"`` (with the reason)
    when no candidate is valid.
    """
    x = np.sort(np.asarray(evals, dtype=np.float64).ravel())
    if not np.isfinite(x).all():
        return TplSearch(TruncatedPowerLawFit.failed("eigenvalues hold NaN or Inf"),
                         (math.nan, math.nan), variant, 0, 0)  # fmt: skip
    x = x[x > threshold]
    if variant is not None:
        low, high = peak_xmin_range(x, variant=variant, threshold=threshold)
    elif xmin_range is not None:
        low, high = (float(v) for v in xmin_range)
    else:
        low, high = -math.inf, math.inf
    distinct = np.unique(x)[:-1]  # the largest value alone is no tail
    candidates = distinct[(distinct >= low) & (distinct < high)]
    if len(candidates) == 0:
        reason = f"no xmin candidate in [{low:.6g}, {high:.6g}) with at least two values above"
        return TplSearch(TruncatedPowerLawFit.failed(reason), (low, high), variant, 0, 0)
    fits = fit_truncated_powerlaw_at_batch([(x, float(c)) for c in candidates], threads=threads)
    if alpha_above_one is None:
        alpha_above_one = variant == "weightwatcher-0.7.7"
    need_alpha = 1.0 if alpha_above_one else -math.inf
    valid = [k for k, f in enumerate(fits)
             if f.status in ("converged", "power_law") and f.alpha > need_alpha]  # fmt: skip
    if not valid:
        reason = f"none of the {len(fits)} xmin candidates gave a valid fit"
        return TplSearch(replace(TruncatedPowerLawFit.failed(reason)), (low, high), variant,
                         len(fits), 0)  # fmt: skip
    best = min(valid, key=lambda k: (fits[k].D, k))
    return TplSearch(fits[best], (low, high), variant, len(fits), len(valid))
