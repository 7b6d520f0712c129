"""Zoo throughput: hts-fast scan (1 and 2 workers) vs a plain loop of WeightWatcher 0.7.7.

The zoo: 1,000 generated checkpoints at full size (20 in the smoke run), each a safetensors
file of a small MLP (64x32, 128x64, 128x128, 10x128 float32 layers). WeightWatcher cannot
open a safetensors file, so its loop reads each one with ``safetensors.numpy.load_file`` and
analyzes the dict (its fastest route). The store and discovery overhead is the scan's wall
time minus the analysis time its workers report for the checkpoints, over the wall time.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
from pathlib import Path

import numpy as np
import pytest
from hts_fast.scan import scan
from hts_fast.store import Store

from .conftest import SIZES, _timings, quiet_call, record

CHECKPOINTS = 1000 if SIZES == "full" else 20
SHAPES = {"fc1.weight": (64, 32), "fc2.weight": (128, 64), "fc3.weight": (128, 128),
          "head.weight": (10, 128)}  # fmt: skip
GROUP = f"scan of {CHECKPOINTS} small checkpoints"


@pytest.fixture(scope="module")
def zoo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from hts_fast.demo_zoo import write_safetensors

    root = tmp_path_factory.mktemp("zoo")
    rng = np.random.default_rng(0)
    for k in range(CHECKPOINTS):
        tensors = {n: rng.standard_t(4.0, s).astype(np.float32) for n, s in SHAPES.items()}
        # not model*.safetensors: a folder of those is one sharded Hugging Face model
        write_safetensors(root / f"ckpt_{k:04d}.safetensors", tensors)
    return root


@pytest.mark.parametrize("workers", [1, 2])
def test_scan(benchmark, zoo, tmp_path, workers):
    counter = iter(range(10**6))

    def run() -> object:
        return scan([zoo], tmp_path / f"store{next(counter)}.sqlite", workers=workers)

    result = benchmark.pedantic(run, rounds=1, iterations=1, warmup_rounds=0)
    assert result.done == CHECKPOINTS
    record(benchmark, GROUP, f"hts_fast scan, {workers} worker(s)")
    if workers == 1:
        with Store(next(iter(sorted(tmp_path.glob("store*.sqlite"))))) as store:
            analysis = float(store.frame("checkpoints")["seconds"].sum())
        overhead = 1 - analysis / result.seconds
        _timings[GROUP][f"(store + discovery overhead {100 * overhead:.1f} %)"] = math.nan


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
