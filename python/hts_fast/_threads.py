"""Thread counts and BLAS thread pinning.

OpenBLAS with more threads than free cores slows down by an order of magnitude, so when
hts_fast runs several LAPACK calls at once it pins BLAS to one thread per call.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from functools import lru_cache
from typing import Any


def available_cores() -> int:
    """Return the number of CPU cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def resolve_threads(threads: int | None) -> int:
    """Return the worker count for ``threads`` (None: all available cores)."""
    if threads is None:
        return available_cores()
    if isinstance(threads, bool) or not isinstance(threads, int):
        msg = f"threads must be a positive int or None, got {threads!r}"
        raise TypeError(msg)
    if threads < 1:
        msg = f"threads must be >= 1, got {threads}"
        raise ValueError(msg)
    return threads


@lru_cache(maxsize=1)
def _controller() -> Any:
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


@lru_cache(maxsize=1)
def _blas_libraries() -> tuple[Any, ...]:
    """threadpoolctl's controllers of the BLAS libraries loaded when first asked."""
    return tuple(_controller().select(user_api="blas").lib_controllers)


def _release_openblas_control() -> None:
    """Let any thread set OpenBLAS's thread count again.

    threadpoolctl >= 3.6 lets only one thread (the first to set a count) change the count of
    an OpenBLAS with its own thread pool; other threads' calls silently do nothing until that
    thread lets go, which only threadpoolctl's context managers do. hts_fast coordinates the
    pins itself (one process-wide pin, see single_threaded_blas), so it clears that owner
    around each change; otherwise, once the main thread had pinned, pins made in worker
    threads would be no-ops and their LAPACK calls would run on every core.
    """
    try:
        from threadpoolctl import OpenBLASController
    except ImportError:  # pragma: no cover - older threadpoolctl: no such control
        return
    clear = getattr(OpenBLASController, "clear_controlling_thread", None)
    if clear is not None:
        clear(force=True)


def _set_threads(counts: list[tuple[Any, int]]) -> None:
    """Set each (library controller, thread count), from whichever thread calls, leaving no
    thread as threadpoolctl's OpenBLAS owner (so a user's own limits from any thread still
    work)."""
    _release_openblas_control()
    for lib, threads in counts:
        lib.set_num_threads(threads)
    _release_openblas_control()


_pin_lock = threading.Lock()
_pin_depth = 0
_pinned_from: list[tuple[Any, int]] = []


@contextlib.contextmanager
def single_threaded_blas() -> Iterator[None]:
    """Pin BLAS/LAPACK libraries to one thread inside the block.

    Safe when several Python threads use hts_fast at once (the kernels release the GIL): the
    first caller pins, the last one to leave restores each library's previous thread count.
    """
    global _pin_depth
    with _pin_lock:
        if _pin_depth == 0:
            _pinned_from[:] = [(lib, lib.num_threads) for lib in _blas_libraries()]
            _set_threads([(lib, 1) for lib, _ in _pinned_from])
        _pin_depth += 1
    try:
        yield
    finally:
        with _pin_lock:
            _pin_depth -= 1
            if _pin_depth == 0:
                _set_threads(_pinned_from)  # the last thread out may not be the first in
                _pinned_from.clear()


def blas_info() -> list[dict[str, Any]]:
    """Return threadpoolctl's description of the loaded BLAS libraries."""
    return [
        {k: info.get(k) for k in ("internal_api", "version", "num_threads", "filepath")}
        for info in _controller().info()
        if info.get("user_api") == "blas"
    ]
