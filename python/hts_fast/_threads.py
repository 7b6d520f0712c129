"""Thread counts and BLAS thread pinning.

OpenBLAS with more threads than free cores slows down by an order of magnitude, so when
hts_fast runs several LAPACK calls at once it pins BLAS to one thread per call.
"""

from __future__ import annotations

import contextlib
import os
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


@contextlib.contextmanager
def blas_threads(count: int) -> Iterator[None]:
    """Limit BLAS/LAPACK libraries to ``count`` threads inside the block."""
    with _controller().limit(limits=count, user_api="blas"):
        yield


def blas_info() -> list[dict[str, Any]]:
    """Return threadpoolctl's description of the loaded BLAS libraries."""
    return [
        {k: info.get(k) for k in ("internal_api", "version", "num_threads", "filepath")}
        for info in _controller().info()
        if info.get("user_api") == "blas"
    ]
