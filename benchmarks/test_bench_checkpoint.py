"""Reading checkpoints: peak memory of analyze(path), and loading time against compute time.

* Peak RSS of ``analyze(path, esd_method="gram")`` in a fresh process on a generated float32
  safetensors file (2 GiB of 8192x1024 layers at full size), against the issue's bound of
  3 x the largest tensor in float64 + 300 MB. The same process's RSS after its imports is
  reported beside it.
* Loading overhead on a generated bfloat16 checkpoint (1 GiB of 2048x2048 layers at full
  size): ``analyze(path)`` against ``analyze()`` of the same weights already in memory as
  float32, side by side in one process; overhead = 1 - t(memory) / t(path).

Files are written tensor by tensor (never the whole checkpoint in memory) into pytest's
temporary folder.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import hts_fast
import numpy as np
import pytest
from hts_fast.loaders import checkpoint_tensors

from .conftest import SIZES, _timings

MiB = 2**20
#: (layers, rows, cols) of each generated checkpoint
RSS_FILE = (64, 8192, 1024) if SIZES == "full" else (4, 2048, 512)
BF16_FILE = (128, 2048, 2048) if SIZES == "full" else (8, 512, 512)


def _layer(seed: int, rows: int, cols: int) -> np.ndarray:
    """A heavy-tailed float32 layer (Student-t entries), generated in row blocks."""
    rng = np.random.default_rng(seed)
    return (rng.standard_t(4.0, size=(rows, cols)) / math.sqrt(rows)).astype(np.float32)


def write_safetensors(path: Path, layers: int, rows: int, cols: int, dtype: str) -> Path:
    """Stream a safetensors file of ``layers`` (rows, cols) tensors; dtype "F32" or "BF16"."""
    itemsize = {"F32": 4, "BF16": 2}[dtype]
    size = rows * cols * itemsize
    header = {f"layers.{k}.weight": {"dtype": dtype, "shape": [rows, cols],
                                     "data_offsets": [k * size, (k + 1) * size]}
              for k in range(layers)}  # fmt: skip
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    with path.open("wb") as f:
        f.write(len(raw).to_bytes(8, "little") + raw)
        for k in range(layers):
            w = _layer(k, rows, cols)
            f.write((w.view(np.uint32) >> 16).astype("<u2").tobytes() if dtype == "BF16"
                    else w.astype("<f4").tobytes())  # fmt: skip
    return path


def _peak_rss(path: Path) -> dict[str, float]:
    """Run analyze(path) in a fresh interpreter; return its RSS figures in MiB and seconds."""
    # VmHWM, not ru_maxrss: Linux carries the parent's high-water mark across fork + exec
    script = textwrap.dedent(f"""
        import json, re, time
        def high_water_mib():
            status = open("/proc/self/status").read()
            return int(re.search(r"VmHWM:\\s+(\\d+) kB", status).group(1)) / 1024
        import hts_fast, pandas, scipy.linalg
        base = high_water_mib()
        start = time.perf_counter()
        table = hts_fast.analyze({str(path)!r}, esd_method="gram")
        seconds = time.perf_counter() - start
        peak = high_water_mib()
        assert (table["status"] == "success").all(), table["status_reason"].tolist()
        print(json.dumps({{"after_imports": base, "peak": peak, "seconds": seconds,
                          "layers": len(table)}}))
    """)
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True, env=env)  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def rss_file(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("rss") / "model.safetensors"
    yield write_safetensors(path, *RSS_FILE, "F32")
    path.unlink()


def test_peak_memory_of_a_large_safetensors_file(benchmark, rss_file: Path) -> None:
    layers, rows, cols = RSS_FILE
    bound_mib = 3 * rows * cols * 8 / MiB + 300
    figures = benchmark.pedantic(_peak_rss, args=(rss_file,), rounds=1, iterations=1)
    benchmark.extra_info.update(figures, file_mib=rss_file.stat().st_size / MiB,
                                bound_mib=bound_mib)  # fmt: skip
    group = f"peak RSS, {rss_file.stat().st_size / MiB:.0f} MiB safetensors ({layers} layers)"
    # the table prints seconds; these entries carry MiB as "seconds" for the note
    _timings[group][f"peak RSS {figures['peak']:.0f} MiB (bound {bound_mib:.0f} MiB)"] = math.nan
    _timings[group][f"RSS after imports {figures['after_imports']:.0f} MiB"] = math.nan
    assert figures["layers"] == layers
    assert figures["peak"] <= bound_mib, figures


@pytest.fixture(scope="module")
def bf16_file(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("bf16") / "model.safetensors"
    yield write_safetensors(path, *BF16_FILE, "BF16")
    path.unlink()


def test_loading_overhead_of_a_bf16_checkpoint(benchmark, bf16_file: Path) -> None:
    layers, _, _ = BF16_FILE
    tensors = dict(checkpoint_tensors(bf16_file)[0])
    in_memory = {name: np.ascontiguousarray(t.load()) for name, t in tensors.items()}
    group = f"loading overhead, {bf16_file.stat().st_size / MiB:.0f} MiB bf16 ({layers} layers)"

    def from_file() -> object:
        return hts_fast.analyze(str(bf16_file), esd_method="gram")

    start = time.perf_counter()
    expected = hts_fast.analyze(in_memory, esd_method="gram")
    memory_seconds = time.perf_counter() - start
    table = benchmark.pedantic(from_file, rounds=1, iterations=1)
    file_seconds = benchmark.stats.stats.median if benchmark.stats else math.nan
    np.testing.assert_array_equal(table["lambda_max"], expected["lambda_max"])
    np.testing.assert_array_equal(table["alpha"], expected["alpha"])
    if not math.isnan(file_seconds):
        _timings[group]["analyze(arrays already in memory)"] = memory_seconds
        _timings[group]["hts_fast analyze(path)"] = file_seconds
        overhead = 1 - memory_seconds / file_seconds
        _timings[group][f"loading overhead {100 * overhead:.1f} %"] = math.nan
        extract = table.attrs["seconds"]["extract"]
        _timings[group][f"time waiting for reads {100 * extract / file_seconds:.1f} %"] = math.nan
        benchmark.extra_info.update(memory_seconds=memory_seconds, overhead=overhead,
                                    extract_seconds=extract)  # fmt: skip
