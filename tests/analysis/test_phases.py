"""The 5+1 phases: matrices built to sit in each phase are labelled so, for every seed."""

from __future__ import annotations

import hts_fast
import numpy as np
import pytest
from hts_fast.analysis.phases import phase_of

N, M = 1000, 500


def _planted(rng: np.random.Generator, g: np.ndarray, strengths: np.ndarray) -> np.ndarray:
    """g plus orthogonal rank-one spikes of the given strengths (singular values)."""
    k = len(strengths)
    u = np.linalg.qr(rng.standard_normal((g.shape[0], k)))[0]
    v = np.linalg.qr(rng.standard_normal((g.shape[1], k)))[0]
    return g + (u * strengths) @ v.T


def _matrices(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    g = rng.standard_normal((N, M)) / np.sqrt(N)
    return {
        "Random-like": g,
        # just above the BBP threshold Q**-0.25 = 0.84: eigenvalues leave the edge, barely
        "Bleeding-out": _planted(rng, g, np.full(3, 0.95)),
        "Bulk+Spikes": _planted(rng, g, np.full(3, 4.0)),
        # Student-t entries: 3 degrees of freedom (weakly heavy) and 1.5 (heavy)
        "Bulk-decay": rng.standard_t(3.0, (2 * N, 2 * M)) / np.sqrt(2 * N),
        "Heavy-Tailed": rng.standard_t(1.5, (N, M)) / np.sqrt(N),
        "Rank-collapse": rng.standard_normal((N, 50)) @ rng.standard_normal((50, M)) / N,
    }


@pytest.mark.parametrize("seed", [0, 1])
def test_each_built_matrix_lands_in_its_phase(seed):
    matrices = _matrices(seed)
    table = hts_fast.analyze(list(matrices.items()), mp_fit=True)
    assert list(table["phase"]) == list(matrices), table[["name", "alpha", "num_spikes",
                                                          "mp_softrank", "phase"]]  # fmt: skip


def test_rule_order_and_edges():
    base = {"alpha": 5.0, "fit_ok": True, "num_spikes": 0, "mp_softrank": 1.2, "mp_ok": True,
            "matrix_rank": 500, "num_evals": 500}  # fmt: skip
    assert phase_of(**base) == "Random-like"
    assert phase_of(**{**base, "matrix_rank": 249}) == "Rank-collapse"
    assert phase_of(**{**base, "matrix_rank": 250}) == "Random-like"
    assert phase_of(**{**base, "mp_softrank": 0.99}) == "Bleeding-out"
    assert phase_of(**{**base, "num_spikes": 3}) == "Bulk+Spikes"
    assert phase_of(**{**base, "num_spikes": 4}) == "Bulk-decay"
    assert phase_of(**{**base, "num_spikes": 4, "alpha": 3.9}) == "Heavy-Tailed"
    assert phase_of(**{**base, "num_spikes": 4, "alpha": 3.9, "fit_ok": False}) == "Bulk-decay"
    assert phase_of(**{**base, "mp_ok": False, "alpha": 1.5}) == "Heavy-Tailed"
    assert phase_of(**{**base, "mp_ok": False}) == "unknown"
