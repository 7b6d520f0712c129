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


def test_concurrent_calls_restore_the_blas_thread_count():
    from hts_fast import _threads

    before = [lib["num_threads"] for lib in _threads.blas_info()]
    w = np.random.default_rng(2).standard_normal((120, 100))
    workers = [threading.Thread(target=lambda: [hts_fast.esd(w) for _ in range(20)])
               for _ in range(4)]  # fmt: skip
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    assert [lib["num_threads"] for lib in _threads.blas_info()] == before


def test_worker_threads_pin_blas_after_the_main_thread_did():
    """threadpoolctl >= 3.6 hands OpenBLAS control to the first thread that sets a limit;
    single_threaded_blas releases it, so a worker's pin still takes effect afterwards."""
    from concurrent.futures import ThreadPoolExecutor

    from hts_fast import _threads

    before = [lib["num_threads"] for lib in _threads.blas_info()]
    with _threads.single_threaded_blas():  # the main thread pins first
        pass

    def pinned() -> list[int]:
        with _threads.single_threaded_blas():
            return [lib["num_threads"] for lib in _threads.blas_info()]

    with ThreadPoolExecutor(max_workers=1) as pool:
        inside = pool.submit(pinned).result()
    assert inside == [1] * len(before)
    assert [lib["num_threads"] for lib in _threads.blas_info()] == before


def test_the_pin_leaves_user_limits_working_in_both_orders():
    """The pin sets OpenBLAS's count through its own symbols where it can: it still pins
    inside a user's threadpoolctl limit and restores that limit, the counts come back as
    they were, and a user's limit set after our pin still takes effect."""
    import threadpoolctl
    from hts_fast import _threads

    before = [lib["num_threads"] for lib in _threads.blas_info()]
    with _threads.single_threaded_blas():
        assert [lib["num_threads"] for lib in _threads.blas_info()] == [1] * len(before)
    with threadpoolctl.threadpool_limits(1, user_api="blas"):
        with _threads.single_threaded_blas():
            pass
        assert [lib["num_threads"] for lib in _threads.blas_info()] == [1] * len(before)
    assert [lib["num_threads"] for lib in _threads.blas_info()] == before
    if max(before) > 1:  # after our pin, a user's limit set from this thread still works
        with threadpoolctl.threadpool_limits(max(before) - 1, user_api="blas"):
            counts = [lib["num_threads"] for lib in _threads.blas_info()]
        assert counts == [max(before) - 1] * len(before)
