"""The kernels release the GIL: Python threads keep running during a long kernel call."""

from __future__ import annotations

import threading

import hts_fast
import numpy as np

from .conftest import pareto_sample


def test_fit_releases_the_gil():
    values = pareto_sample(np.random.default_rng(0), 12_000, 2.5)
    done = threading.Event()

    def work() -> None:
        hts_fast.powerlaw_curve(values, threads=1)  # the O(n^2) scan: ~0.5 s of C++
        done.set()

    ticks = 0
    worker = threading.Thread(target=work)
    worker.start()
    while not done.is_set():
        ticks += 1  # only possible while the worker's C++ code does not hold the GIL
    worker.join()
    assert ticks > 10_000


def test_esd_releases_the_gil():
    w = np.random.default_rng(1).standard_normal((700, 700))
    done = threading.Event()

    def work() -> None:
        hts_fast.esd(w)
        done.set()

    ticks = 0
    worker = threading.Thread(target=work)
    worker.start()
    while not done.is_set():
        ticks += 1
    worker.join()
    assert ticks > 10_000
