"""The compiled cache-blocked shuffle: a uniform random permutation, reproducible by seed."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats
from hts_fast._core_loader import core


def test_permutation_and_determinism():
    for dtype in (np.float64, np.float32, np.float16, np.int8):
        x = (np.arange(100_003) % 120).astype(dtype)  # crosses the 32k-element buckets
        a, b = x.copy(), x.copy()
        core.shuffle(a, 11)
        core.shuffle(b, 11)
        assert np.array_equal(a, b)
        assert np.array_equal(np.sort(a), np.sort(x))  # the same multiset
        assert not np.array_equal(a, x)
    c = np.arange(100_003.0)
    core.shuffle(c, 12)
    assert not np.array_equal(c, a.astype(np.float64))


def test_small_arrays_give_every_order_equally_often():
    # n = 4: 24 orders, 24,000 shuffles -> ~1,000 each (chi-square test at 1e-4)
    counts: dict[tuple[float, ...], int] = {}
    for seed in range(24_000):
        a = np.arange(4.0)
        core.shuffle(a, seed)
        counts[tuple(a)] = counts.get(tuple(a), 0) + 1
    assert len(counts) == 24
    assert scipy.stats.chisquare(list(counts.values())).pvalue > 1e-4


def test_positions_are_uniform_across_buckets():
    # where element 0 lands in a 100k array (4 buckets), over 3,000 seeds, in 10 bins
    n, seeds = 100_000, 3_000
    landed = np.empty(seeds, dtype=np.int64)
    ahead = 0
    for seed in range(seeds):
        a = np.arange(n, dtype=np.int32)
        core.shuffle(a, seed)
        where = np.flatnonzero(a == 0)[0]
        landed[seed] = where
        ahead += where < np.flatnonzero(a == n - 1)[0]
    bins = np.bincount(landed * 10 // n, minlength=10)
    assert scipy.stats.chisquare(bins).pvalue > 1e-4
    assert abs(ahead / seeds - 0.5) < 0.04  # first and last element: either order, 50/50


def test_refuses_what_it_cannot_shuffle():
    with pytest.raises(ValueError, match="C-contiguous"):
        core.shuffle(np.arange(10.0)[::2], 1)
    frozen = np.arange(10.0)
    frozen.flags.writeable = False
    with pytest.raises(ValueError, match="writeable"):
        core.shuffle(frozen, 1)
