"""Shared fixtures: reference implementations and spectra used across the tests."""

from __future__ import annotations

import contextlib
import io
import os
import sys
import warnings
from collections.abc import Callable
from typing import Any

import hts_fast
import numpy as np
import pytest

# CI sets this so that a missing reference package fails the run instead of skipping.
REQUIRE_REFERENCES = os.environ.get("HTS_FAST_REQUIRE_REFERENCES") == "1"


def pytest_report_header(config: pytest.Config) -> list[str]:
    info = hts_fast.build_info()
    line = (
        f"hts_fast {info['version']}: compiler {info['compiler']} flags '{info['cxx_flags']}', "
        f"numpy {info['numpy']}, scipy {info['scipy']}, threads {info['default_threads']}"
    )
    return [line]


def _require(module: str) -> Any:
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            return __import__(module, fromlist=["_"])
    except ImportError as exc:
        if REQUIRE_REFERENCES:
            raise
        pytest.skip(f"reference package missing: {exc}")


def peak_rss_mib() -> float:
    """This process's peak resident memory so far, in MiB (skips where the platform's
    ``resource`` module is missing, i.e. on Windows)."""
    resource = pytest.importorskip("resource", reason="peak RSS needs the POSIX resource module")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, else KiB


@pytest.fixture(scope="session")
def wwfit() -> Callable[[np.ndarray], Any]:
    """WeightWatcher 0.7.7's own fitter, called as WeightWatcher calls it (evals > 1e-5)."""
    ww_powerlaw = _require("weightwatcher.WW_powerlaw")

    def fit(evals: np.ndarray) -> Any:
        x = np.asarray(evals, dtype=np.float64)
        with (
            warnings.catch_warnings(),
            np.errstate(all="ignore"),
            contextlib.redirect_stdout(io.StringIO()),
        ):
            warnings.simplefilter("ignore")
            return ww_powerlaw.WWFit(x[x > 1e-5])

    return fit


@pytest.fixture(scope="session")
def powerlaw_module() -> Any:
    return _require("powerlaw")


def pareto_sample(rng: np.random.Generator, n: int, alpha: float, xmin: float = 1.0) -> np.ndarray:
    """n draws from the continuous power law p(x) ~ x^-alpha on x >= xmin (inverse CDF)."""
    return xmin * (1.0 - rng.random(n)) ** (-1.0 / (alpha - 1.0))


def heavy_tailed_esd(rng: np.random.Generator, rows: int, cols: int, dof: float) -> np.ndarray:
    """ESD of a matrix with Student-t entries (heavy-tailed for small dof)."""
    w = rng.standard_t(dof, size=(rows, cols)) / np.sqrt(rows)
    return np.sort(np.linalg.svd(w, compute_uv=False) ** 2)
