"""Zoo throughput: hts-fast scan (1 and 2 workers) vs a plain loop of WeightWatcher 0.7.7.

The zoo: 1,000 generated checkpoints at full size (20 in the smoke run), each a safetensors
file of a small MLP (64x32, 128x64, 128x128, 10x128 float32 layers). WeightWatcher cannot
open a safetensors file, so its loop reads each one with ``safetensors.numpy.load_file`` and
analyzes the dict (its fastest route).

Two overhead figures are printed per scan: the stage split of ScanResult.stage_seconds
(discovery, hashing and store over the wall time; with workers, hashing and analysis are
summed over processes that run at the same time), and the part of the wall time that is not
analysis: 1 - (analysis alone) / (scan), where "analysis alone" is the same batches through
the same pipeline in this process with no discovery, hashing, store, queueing or worker
start (test_analysis_alone, run first; its fastest of 3 rounds).
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
from pathlib import Path

import numpy as np
import pytest
from hts_fast.zoo.scan import scan

from .conftest import SIZES, _timings, quiet_call, record

CHECKPOINTS = 1000 if SIZES == "full" else 20
SHAPES = {"fc1.weight": (64, 32), "fc2.weight": (128, 64), "fc3.weight": (128, 128),
          "head.weight": (10, 128)}  # fmt: skip
GROUP = f"scan of {CHECKPOINTS} small checkpoints"
#: wall seconds of the analysis alone, per esd_method (test_analysis_alone)
_alone: dict[str, float] = {}


@pytest.fixture(scope="module")
def zoo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from hts_fast.zoo.demo import write_safetensors

    root = tmp_path_factory.mktemp("zoo")
    rng = np.random.default_rng(0)
    for k in range(CHECKPOINTS):
        tensors = {n: rng.standard_t(4.0, s).astype(np.float32) for n, s in SHAPES.items()}
        # not model*.safetensors: a folder of those is one sharded Hugging Face model
        write_safetensors(root / f"ckpt_{k:04d}.safetensors", tensors)
    return root


@pytest.mark.parametrize("esd_method", ["svd", "gram"])
def test_analysis_alone(benchmark, zoo, esd_method):
    """The scan's analysis only: its batches of 32 paths through analyze's rows pipeline."""
    from hts_fast.analysis.pipeline import analyze_batch
    from hts_fast.zoo.scan import BATCH_CHECKPOINTS, _analyze_defaults

    paths = [str(p) for p in sorted(zoo.glob("*.safetensors"))]
    options = {**_analyze_defaults(), "esd_method": esd_method, "threads": None}

    def run() -> int:
        for k in range(0, len(paths), BATCH_CHECKPOINTS):
            analyze_batch(paths[k : k + BATCH_CHECKPOINTS], options, as_rows=True)
        return len(paths)

    assert benchmark.pedantic(run, rounds=3, iterations=1, warmup_rounds=0) == CHECKPOINTS
    if benchmark.stats is not None:  # None under --benchmark-disable (the CI smoke run)
        _alone[esd_method] = benchmark.stats.stats.min  # the fastest: the overhead is not hidden


@pytest.mark.parametrize("esd_method", ["svd", "gram"])
@pytest.mark.parametrize("workers", [1, 2])
def test_scan(benchmark, zoo, tmp_path, workers, esd_method):
    counter = iter(range(10**6))

    def run() -> object:
        store = tmp_path / f"store{next(counter)}.sqlite"
        return scan([zoo], store, workers=workers, esd_method=esd_method)

    result = benchmark.pedantic(run, rounds=1, iterations=1, warmup_rounds=0)
    assert result.done == CHECKPOINTS
    label = f"hts_fast scan, {workers} worker(s), esd_method={esd_method}"
    record(benchmark, GROUP, label)
    stages = result.stage_seconds
    # this process's discovery and store work, and the content hashes (read in the workers)
    overhead = stages.get("discovery", 0) + stages.get("store", 0) + stages.get("hashing", 0)
    split = ", ".join(f"{k} {v:.3f} s" for k, v in sorted(stages.items()))
    alone = _alone.get(esd_method, math.nan)
    _timings[GROUP][
        f"({label}: {split}; discovery + hashing + store = "
        f"{100 * overhead / result.seconds:.1f} % of {result.seconds:.3f} s; not analysis = "
        f"1 - {alone:.3f} s alone / {result.seconds:.3f} s = "
        f"{100 * (1 - alone / result.seconds):.1f} %)"
    ] = math.nan


def test_weightwatcher_loop(benchmark, zoo):
    ww = pytest.importorskip("weightwatcher")
    from safetensors.numpy import load_file

    logging.getLogger("weightwatcher").setLevel(logging.CRITICAL)
    files = sorted(zoo.glob("*.safetensors"))

    def run() -> int:
        done = 0
        for f in files:
            with contextlib.redirect_stdout(io.StringIO()):
                quiet_call(ww.WeightWatcher(model=load_file(str(f))).analyze)
            done += 1
        return done

    assert benchmark.pedantic(run, rounds=1, iterations=1) == CHECKPOINTS
    record(benchmark, GROUP, "weightwatcher loop")
