"""Same input, same numbers, whatever the thread count."""

from __future__ import annotations

import hts_fast
import numpy as np

from .conftest import pareto_sample


def test_fit_batch_bit_identical_for_any_thread_count(monkeypatch):
    from hts_fast.fits import powerlaw

    monkeypatch.setattr(powerlaw, "VALUES_PER_THREAD", 1)  # use every thread asked for
    rng = np.random.default_rng(0)
    spectra = [pareto_sample(rng, int(n), 2 + rng.random() * 3) for n in rng.integers(2, 3000, 40)]
    runs = [hts_fast.fit_powerlaw_batch(spectra, threads=t) for t in (1, 2, 3, 8)]
    for other in runs[1:]:
        assert other == runs[0]
    assert runs[0] == [hts_fast.fit_powerlaw(s) for s in spectra]


def test_curve_bit_identical_for_any_thread_count():
    values = pareto_sample(np.random.default_rng(1), 2000, 2.5)
    a = hts_fast.powerlaw_curve(values, threads=1)
    b = hts_fast.powerlaw_curve(values, threads=4)
    np.testing.assert_array_equal(a.Ds, b.Ds)
    np.testing.assert_array_equal(a.alphas, b.alphas)
    assert a.best == b.best


def test_esd_batch_bit_identical_for_any_thread_count():
    rng = np.random.default_rng(2)
    mats = [rng.standard_normal(s).astype(np.float32) for s in [(300, 200)] * 3 + [(150, 400)] * 2]
    for method in ("svd", "gram"):
        runs = [hts_fast.esd_batch(mats, method=method, threads=t) for t in (1, 2, 5)]
        for other in runs[1:]:
            for x, y in zip(runs[0], other, strict=True):
                np.testing.assert_array_equal(x, y)


def test_esd_blas_thread_count_does_not_change_values():
    w = np.random.default_rng(3).standard_normal((600, 500))
    for method in ("svd", "gram"):
        np.testing.assert_array_equal(
            hts_fast.esd(w, method=method, threads=1), hts_fast.esd(w, method=method, threads=2)
        )
