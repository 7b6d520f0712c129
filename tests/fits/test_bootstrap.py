"""Bootstrap intervals of alpha: seeded, thread-independent, and they cover the truth."""

from __future__ import annotations

import hts_fast
import numpy as np
import pytest
from hts_fast.fits.bootstrap import bootstrap_alpha

from ..conftest import pareto_sample


def test_interval_is_seeded_and_thread_independent():
    x = pareto_sample(np.random.default_rng(1), 2000, 3.0)
    a = bootstrap_alpha(x, resamples=300, seed=7, threads=1)
    b = bootstrap_alpha(x, resamples=300, seed=7, threads=2)
    assert (a.low, a.high) == (b.low, b.high)
    np.testing.assert_array_equal(a.alphas, b.alphas)
    c = bootstrap_alpha(x, resamples=300, seed=8)
    assert (a.low, a.high) != (c.low, c.high)
    # each resample is a full refit: the first equals fitting that resample by hand
    picks = np.random.default_rng(7).integers(0, len(x), size=(300, len(x)))
    assert a.alphas[0] == hts_fast.fit_powerlaw(np.sort(x[picks[0]])).alpha
    assert a.low < hts_fast.fit_powerlaw(x).alpha < a.high


def test_95_percent_intervals_cover_the_true_alpha():
    covered = 0
    for k in range(100):
        x = pareto_sample(np.random.default_rng(1000 + k), 1000, 2.5)
        interval = bootstrap_alpha(x, resamples=200, seed=k)
        covered += interval.low <= 2.5 <= interval.high
    # a 95% interval covers in ~95 of 100 trials; below 88 would be a real undercoverage
    assert covered >= 88


def test_bad_arguments():
    with pytest.raises(ValueError, match="at least 2"):
        bootstrap_alpha([1.0])
    with pytest.raises(ValueError, match="level"):
        bootstrap_alpha([1.0, 2.0, 3.0], level=1.5)


def test_analyze_alpha_ci_columns_are_the_layer_bootstrap():
    rng = np.random.default_rng(4)
    model = {
        "a.weight": rng.standard_t(3.0, (300, 100)),
        "b.weight": rng.standard_t(4.0, (80, 160)),
    }
    table = hts_fast.analyze(model, alpha_ci=0.9, seed=5)
    assert list(table.columns[-2:]) == ["alpha_ci_low", "alpha_ci_high"]
    for (_, row), weight in zip(table.iterrows(), model.values(), strict=True):
        seed = np.random.SeedSequence([5, int(row["layer_id"])]).generate_state(1)[0]
        interval = bootstrap_alpha(hts_fast.esd(weight), level=0.9, seed=int(seed))
        assert (row["alpha_ci_low"], row["alpha_ci_high"]) == (interval.low, interval.high)
        assert row["alpha_ci_low"] < row["alpha"] < row["alpha_ci_high"]
    with pytest.raises(ValueError, match="plain power-law"):
        hts_fast.analyze(model, alpha_ci=True, fit="TPL")
    with pytest.raises(ValueError, match="level"):
        hts_fast.analyze(model, alpha_ci=1.5)
