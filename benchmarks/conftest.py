"""Benchmark helpers: inputs built in code, and a ratio table printed at the end.

Run all sizes:      python -m pytest benchmarks --benchmark-only
Smoke run (CI):     HTS_FAST_BENCH_SIZES=small python -m pytest benchmarks --benchmark-disable
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import warnings
from collections import defaultdict
from typing import Any

import numpy as np
import pytest

#: "small" keeps only the sizes that run in seconds (CI smoke run); "full" runs all.
SIZES = os.environ.get("HTS_FAST_BENCH_SIZES", "full")

_timings: dict[str, dict[str, float]] = defaultdict(dict)


def full_only(*values: Any) -> list[Any]:
    """Parametrize values that only run with HTS_FAST_BENCH_SIZES=full."""
    return [
        pytest.param(v, marks=pytest.mark.skipif(SIZES != "full", reason="full sizes only"))
        for v in values
    ]


def record(benchmark: Any, group: str, name: str) -> None:
    """Remember the median time of a finished benchmark for the ratio table."""
    stats = getattr(benchmark, "stats", None)
    if stats is not None and getattr(stats, "stats", None) is not None:
        _timings[group][name] = stats.stats.median


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _timings:
        return
    tr = terminalreporter
    tr.section("hts_fast speed ratios (median time of baseline / median time of hts_fast)")
    for group in sorted(_timings):
        times = _timings[group]
        notes = [k for k, v in times.items() if math.isnan(v)]  # NaN marks a note, not a time
        times = {k: v for k, v in times.items() if not math.isnan(v)}
        ours = {k: v for k, v in times.items() if k.startswith("hts_fast")}
        base = {k: v for k, v in times.items() if not k.startswith("hts_fast")}
        parts = [f"{k}={v * 1e3:.3f} ms" for k, v in sorted(times.items())] + notes
        tr.write_line(f"{group}: " + ", ".join(parts))
        for ok, ov in sorted(ours.items()):
            for bk, bv in sorted(base.items()):
                tr.write_line(f"    {bk} / {ok} = {bv / ov:.1f}x")


def quiet_call(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Call a baseline with its prints and warnings silenced."""
    with (
        warnings.catch_warnings(),
        np.errstate(all="ignore"),
        contextlib.redirect_stdout(io.StringIO()),
    ):
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


def heavy_tailed_matrix(rows: int, cols: int, seed: int = 0) -> np.ndarray:
    """Student-t (dof 3) float32 matrix: a heavy-tailed ESD like a trained layer's."""
    rng = np.random.default_rng(seed)
    return (rng.standard_t(3.0, size=(rows, cols)) / np.sqrt(rows)).astype(np.float32)
