"""hts_fast.weightwatcher (the WeightWatcher 0.7.7 drop-in) vs WeightWatcher 0.7.7 itself on
all-MiniLM-L6-v2: the same script (construct, analyze with the same options, get_summary;
distances to a perturbed copy), timed in interleaved pairs in this process; the ratio is
WeightWatcher's time over the facade's (issue 18's target: >= 2x)."""

from __future__ import annotations

import logging
import time

import hts_fast.weightwatcher as hw
import numpy as np
import pytest
import threadpoolctl

from .conftest import SIZES, _timings, quiet_call
from .models import models

# WeightWatcher's own runs take minutes (mp_fit: ~60 s a call): full sizes only
pytestmark = pytest.mark.skipif(
    SIZES != "full", reason="full sizes only (minutes of WeightWatcher)"
)

OPTION_SETS = {"default": {}, "mp_fit+detX": {"mp_fit": True, "detX": True}}


def _minilm() -> dict[str, np.ndarray]:
    try:
        return models()["minilm"]()
    except ImportError as exc:
        pytest.skip(str(exc))


def _script(ww, model, options):
    watcher = ww.WeightWatcher(model=model)
    details = watcher.analyze(**options)
    return details, watcher.get_summary(details)


def _paired(fn_theirs, fn_ours, pairs: int) -> tuple[float, float, np.ndarray]:
    """Median seconds of each and the per-pair ratios (theirs / ours), interleaved."""
    theirs, ours = [], []
    for _ in range(pairs):
        start = time.perf_counter()
        quiet_call(fn_theirs)
        theirs.append(time.perf_counter() - start)
        start = time.perf_counter()
        quiet_call(fn_ours)
        ours.append(time.perf_counter() - start)
    ratios = np.array(theirs) / np.array(ours)
    return float(np.median(theirs)), float(np.median(ours)), ratios


@pytest.mark.parametrize("options", list(OPTION_SETS))
def test_facade_vs_weightwatcher_minilm(options):
    ww = pytest.importorskip("weightwatcher")
    logging.getLogger("weightwatcher").setLevel(logging.CRITICAL)
    model = _minilm()
    kwargs = OPTION_SETS[options]
    ours, summary = quiet_call(_script, hw, model, kwargs)
    theirs, their_summary = quiet_call(_script, ww, model, kwargs)
    np.testing.assert_allclose(ours["alpha"], theirs["alpha"], rtol=1e-6)
    assert list(summary) == list(their_summary)
    quiet_call(_script, hw, model, kwargs)  # warm
    t_theirs, t_ours, ratios = _paired(lambda: _script(ww, model, kwargs),
                                       lambda: _script(hw, model, kwargs), pairs=3)  # fmt: skip
    group = f"weightwatcher facade minilm {options}"
    _timings[group]["weightwatcher 0.7.7 analyze+get_summary"] = t_theirs
    _timings[group]["hts_fast.weightwatcher analyze+get_summary"] = t_ours
    _timings[group][f"(paired ratios {', '.join(f'{r:.1f}x' for r in ratios)})"] = float("nan")


def test_facade_distances_vs_weightwatcher_minilm():
    ww = pytest.importorskip("weightwatcher")
    logging.getLogger("weightwatcher").setLevel(logging.CRITICAL)
    model = _minilm()
    rng = np.random.default_rng(0)
    other = {k: v + 0.01 * rng.standard_normal(v.shape).astype(v.dtype) for k, v in model.items()}

    def run(module):
        # one BLAS thread for both: NumPy's OpenBLAS 0.3.31 crashes (SIGSEGV) on the 30522 x
        # 30522 float32 product 0.7.7's CKA forms for the embeddings when it runs on 2 threads
        with threadpoolctl.threadpool_limits(1):
            return module.WeightWatcher().distances(model, other, method="cka")

    np.testing.assert_allclose(quiet_call(run, hw)[0], quiet_call(run, ww)[0], rtol=1e-6)
    t_theirs, t_ours, ratios = _paired(lambda: run(ww), lambda: run(hw), pairs=3)
    group = "weightwatcher facade minilm distances(cka)"
    _timings[group]["weightwatcher 0.7.7 distances"] = t_theirs
    _timings[group]["hts_fast.weightwatcher distances"] = t_ours
    _timings[group][f"(paired ratios {', '.join(f'{r:.1f}x' for r in ratios)})"] = float("nan")
