"""The 5+1 phases of training (Martin & Mahoney) from a layer's ESD diagnostics.

The phases describe how far a layer's spectrum has moved from that of a random matrix:
Random-like (a Marchenko-Pastur bulk and nothing else), Bleeding-out (the largest
eigenvalues leave the bulk edge), Bulk+Spikes (a bulk plus a few well-separated spikes),
Bulk-decay (many eigenvalues beyond the edge, a tail that decays but is not heavy),
Heavy-Tailed (a power-law tail, alpha < 4), and Rank-collapse (most eigenvalues vanish).

The rule, applied in this order, with the MP fit of ``mp_fit=True`` (its Tracy-Widom spike
count ``num_spikes`` and ``mp_softrank`` = bulk edge / lambda_max) and the power-law fit:

1. ``matrix_rank < num_evals / 2``                          -> Rank-collapse
2. the MP fit failed: alpha < 4 (a successful fit)           -> Heavy-Tailed, else "unknown"
3. ``num_spikes == 0``: ``mp_softrank >= 1``                  -> Random-like, else Bleeding-out
4. ``num_spikes <= max(3, 0.5% of num_evals)``               -> Bulk+Spikes
5. power-law fit succeeded and alpha < 4                     -> Heavy-Tailed
6. otherwise                                                 -> Bulk-decay

The thresholds (1/2 of the rank, 3 spikes or 0.5%, alpha = 4) are our choice, made so that
matrices built to sit in each phase (tests/analysis/test_phases.py) land there for every seed; the
papers describe the phases by pictures, not numbers. Bleeding-out is the least sharp: it
rests on lambda_max against the fitted edge, which fluctuates by a Tracy-Widom width (our
near-threshold construction lands there for 5 of 6 seeds, Random-like for the sixth). Use ``esd_method="svd"`` when rank
collapse matters: the gram route cannot resolve singular values below ~1e-8 of the largest.
"""

from __future__ import annotations

import math

import numpy as np

PHASES = ("Random-like", "Bleeding-out", "Bulk+Spikes", "Bulk-decay", "Heavy-Tailed",
          "Rank-collapse", "unknown")  # fmt: skip
HEAVY_TAILED_ALPHA = 4.0
RANK_COLLAPSE_FRACTION = 0.5
FEW_SPIKES = 3
FEW_SPIKES_FRACTION = 0.005


def phase_of(
    *, alpha: float, fit_ok: bool, num_spikes: float, mp_softrank: float, mp_ok: bool,
    matrix_rank: int, num_evals: int,
) -> str:  # fmt: skip
    """The phase of one layer by the rule of the module docstring."""
    if num_evals > 0 and matrix_rank < RANK_COLLAPSE_FRACTION * num_evals:
        return "Rank-collapse"
    heavy = fit_ok and math.isfinite(alpha) and alpha < HEAVY_TAILED_ALPHA
    if not mp_ok or not math.isfinite(num_spikes):
        return "Heavy-Tailed" if heavy else "unknown"
    if num_spikes == 0:
        return "Random-like" if mp_softrank >= 1 else "Bleeding-out"
    if num_spikes <= max(FEW_SPIKES, FEW_SPIKES_FRACTION * num_evals):
        return "Bulk+Spikes"
    return "Heavy-Tailed" if heavy else "Bulk-decay"


def phases(columns: dict[str, list | np.ndarray], mp_ok: list[bool],
           ranks: list[int] | None = None) -> list[str]:  # fmt: skip
    """phase_of() for every analyzed layer, from the table's columns (in pooled order);
    ``ranks`` replaces the matrix_rank column (hts_fast.analysis.fast_route.phase_ranks:
    the Gram routes' -1 read at their resolution)."""
    ranks = [int(r) for r in columns["matrix_rank"]] if ranks is None else ranks
    out = []
    for k, ok in enumerate(mp_ok):
        out.append(phase_of(
            alpha=float(columns["alpha"][k]), fit_ok=columns["status"][k] == "success",
            num_spikes=float(columns["num_spikes"][k]), mp_softrank=float(columns["mp_softrank"][k]),
            mp_ok=ok, matrix_rank=ranks[k], num_evals=int(columns["num_evals"][k]),
        ))  # fmt: skip
    return out
