"""analyze(): hts_fast (gram default, svd compat) vs WeightWatcher 0.7.7 vs the eigensolve floor.

The floor is the same Gram + symmetric-eigensolver calls timed alone with the best thread
layout we know: hts_fast's batch kernel across all cores, or SciPy one matrix at a time with
all cores given to BLAS, whichever is faster.
"""

from __future__ import annotations

import contextlib
import io
import logging
import time
from functools import cache

import hts_fast
import numpy as np
import pytest
import scipy.linalg
import threadpoolctl
from hts_fast import _threads
from hts_fast._arrays import as_matrix
from hts_fast._core_loader import core
from hts_fast.analysis.layer_spectra import expand_stacks
from hts_fast.analysis.pipeline import _extract
from hts_fast.analysis.planning import plan_layers

from .conftest import _timings, quiet_call, record
from .models import models

MODELS = models()


@cache
def state(name: str) -> dict[str, np.ndarray]:
    try:
        return MODELS[name]()
    except ImportError as exc:
        pytest.skip(str(exc))


def _matrices(model: dict[str, np.ndarray]) -> tuple[list[np.ndarray], list[float]]:
    plans = [p for p in plan_layers(model, None, 8, 15000, 50000, None) if not p.skip_reason]
    _, entries, scales = _extract(plans, None, True, "gram")
    return expand_stacks(entries, scales)


def _floor_once(matrices: list[np.ndarray], scales: list[float]) -> float:
    start = time.perf_counter()
    hts_fast.esd_batch(matrices, method="gram", scales=scales)
    batch = time.perf_counter() - start
    with threadpoolctl.threadpool_limits(_threads.available_cores(), user_api="blas"):
        start = time.perf_counter()
        for w, s in zip(matrices, scales, strict=True):
            w64 = w.astype(np.float64) * s
            gram = w64.T @ w64 if w64.shape[0] >= w64.shape[1] else w64 @ w64.T
            scipy.linalg.eigvalsh(gram, overwrite_a=True, check_finite=False)
        sequential = time.perf_counter() - start
    return min(batch, sequential)


def _floor_seconds(model: dict[str, np.ndarray]) -> float:
    """Median over repeats of the faster of the two thread layouts."""
    matrices, scales = _matrices(model)
    return float(np.median([_floor_once(matrices, scales) for _ in range(_rounds(model))]))


def _rounds(model: dict[str, np.ndarray]) -> int:
    """More rounds for small models, whose times are a few milliseconds and noisy."""
    return 15 if sum(w.size for w in model.values()) < 2_000_000 else 3


@pytest.mark.parametrize("name", list(MODELS))
def test_analyze_gram(benchmark, name):
    model = state(name)
    df = benchmark.pedantic(hts_fast.analyze, args=(model,), kwargs={"esd_method": "gram"},
                            rounds=_rounds(model), iterations=1, warmup_rounds=1)  # fmt: skip
    record(benchmark, f"analyze {name}", "hts_fast.analyze[gram]")
    benchmark.extra_info["seconds"] = df.attrs["seconds"]
    _timings[f"analyze {name}"]["eigensolve floor"] = _floor_seconds(model)
    split = ", ".join(f"{k} {v * 1e3:.0f} ms" for k, v in df.attrs["seconds"].items())
    _timings[f"analyze {name}"][f"(split of one gram run: {split})"] = float("nan")
    assert (df["status"] == "success").all()


@pytest.mark.parametrize("name", list(MODELS))
def test_analyze_compat_svd(benchmark, name):
    model = state(name)
    df = benchmark.pedantic(hts_fast.analyze, args=(model,),
                            kwargs={"compat": "weightwatcher-0.7.7"}, rounds=_rounds(model) - 1,
                            iterations=1, warmup_rounds=1)  # fmt: skip
    record(benchmark, f"analyze {name}", "hts_fast.analyze[compat svd]")
    if benchmark.stats is None:  # --benchmark-disable (the CI smoke run): nothing timed
        return
    total = benchmark.stats.stats.median
    ratios, svd = _paired_ratios(model)
    low, median, high = np.percentile(ratios, [25, 50, 75])
    split = ", ".join(f"{k} {v * 1e3:.1f} ms" for k, v in df.attrs["seconds"].items())
    _timings[f"analyze {name}"][
        f"(compat: whole analyze {total * 1e3:.1f} ms vs its gesdd calls alone {svd * 1e3:.1f} ms;"
        f" paired over {len(ratios)} interleaved runs: overhead {100 * (median - 1):.1f} %"
        f" (quartiles {100 * (low - 1):.1f} to {100 * (high - 1):.1f} %); stages: {split})"
    ] = float("nan")


def _paired_ratios(model: dict[str, np.ndarray]) -> tuple[np.ndarray, float]:
    """analyze(compat) time over the time of its float64 gesdd calls alone (the same
    matrices, the compiled batch call on all cores, nothing else: no extraction, pooling,
    fits, table), measured in interleaved pairs so that a slow phase of the machine hits both
    sides of a pair. Returns the ratio of every pair and the median gesdd time."""
    compat = "weightwatcher-0.7.7"
    plans = [p for p in plan_layers(model, None, 8, 15000, 50000, compat) if not p.skip_reason]
    matrices, scales = expand_stacks(*_extract(plans, compat, True, "svd")[1:])
    arrays = [as_matrix(m, "matrix") for m in matrices]
    threads = _threads.available_cores()
    # small models: many pairs, as each takes milliseconds and the median of a ratio near 1
    # moves by a percent with a few samples
    pairs = 150 if _rounds(model) > 3 else 3 * _rounds(model)
    ratios, alone = [], []
    for k in range(pairs + 2):  # the first two pairs warm up
        start = time.perf_counter()
        hts_fast.analyze(model, compat=compat)
        whole = time.perf_counter() - start
        with _threads.single_threaded_blas():
            start = time.perf_counter()
            core.esd_batch(arrays, 0, list(scales), threads)
            svd = time.perf_counter() - start
        if k >= 2:
            ratios.append(whole / svd)
            alone.append(svd)
    return np.array(ratios), float(np.median(alone))


@pytest.mark.parametrize("name", list(MODELS))
def test_analyze_weightwatcher(benchmark, name):
    ww = pytest.importorskip("weightwatcher")
    logging.getLogger("weightwatcher").setLevel(logging.CRITICAL)
    model = state(name)

    def run():
        with contextlib.redirect_stdout(io.StringIO()):
            return quiet_call(ww.WeightWatcher(model=model).analyze)

    theirs = benchmark.pedantic(run, rounds=2, iterations=1)
    record(benchmark, f"analyze {name}", "weightwatcher.analyze")
    ours = hts_fast.analyze(model, compat="weightwatcher-0.7.7")
    assert list(ours["layer_id"]) == list(theirs["layer_id"])
    np.testing.assert_allclose(ours["alpha"], theirs["alpha"], rtol=1e-6)
