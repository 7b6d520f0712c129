"""Fuzzing the checkpoint readers: mutated files never crash, hang or allocate without bound.

Each case mutates a valid file (bit flips, byte overwrites with boundary values, truncation,
duplicated or deleted spans) and analyzes it. Allowed outcomes: a result table (layers may
fail with a reason) or TensorReadError for a file that cannot be opened. Anything else is a
bug. HTS_FAST_FUZZ_CASES raises the number of cases per format for longer local runs.
"""

from __future__ import annotations

import io
import os
import struct

import hts_fast
import numpy as np
import pytest
from hts_fast.loaders import TensorReadError

from ..conftest import peak_rss_mib
from ..mutations import mutate

CASES = int(os.environ.get("HTS_FAST_FUZZ_CASES", "300"))
BOUNDARY = [b"\x00", b"\xff", b"\x7f", b"\x80", struct.pack("<Q", 2**63 - 1),
            struct.pack("<q", -1), b"9" * 12, b'"', b"]", b"}"]  # fmt: skip


def _safetensors_bytes() -> bytes:
    from safetensors.numpy import save

    rng = np.random.default_rng(0)
    return save({"a.weight": rng.standard_normal((12, 9)).astype(np.float32),
                 "b.weight": rng.standard_normal((10, 8)).astype(np.float16),
                 "c.weight": rng.standard_normal((8, 4, 2, 2))})  # fmt: skip


def _npz_bytes(compressed: bool) -> bytes:
    rng = np.random.default_rng(1)
    buffer = io.BytesIO()
    save = np.savez_compressed if compressed else np.savez
    save(buffer, **{"a.weight": rng.standard_normal((12, 9)).astype(np.float32),
                    "b.weight": rng.standard_normal((9, 10))})  # fmt: skip
    return buffer.getvalue()


def _torch_zip_bytes() -> bytes:
    torch = pytest.importorskip("torch")
    torch.manual_seed(2)
    buffer = io.BytesIO()
    torch.save({"a.weight": torch.randn(10, 9), "b.weight": torch.randn(9, 12).half(),
                "b.bias": torch.randn(9)}, buffer)  # fmt: skip
    return buffer.getvalue()


def _gguf_bytes() -> bytes:
    from .test_loaders_gguf import gguf_model_bytes

    return gguf_model_bytes()


def _onnx_bytes() -> bytes:
    from .test_loaders_onnx import onnx_model_bytes

    return onnx_model_bytes()


FORMATS = {
    "safetensors": (".safetensors", _safetensors_bytes),
    "npz": (".npz", lambda: _npz_bytes(False)),
    "npz_compressed": (".npz", lambda: _npz_bytes(True)),
    "torch_zip": (".bin", _torch_zip_bytes),
    "gguf": (".gguf", _gguf_bytes),
    "onnx": (".onnx", _onnx_bytes),
}


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_mutated_files_never_crash(tmp_path, fmt):
    suffix, make = FORMATS[fmt]
    valid = make()
    path = tmp_path / f"fuzz{suffix}"
    path.write_bytes(valid)
    baseline = hts_fast.analyze(path, min_evals=0)
    assert len(baseline) > 0
    assert (baseline["status"] == "success").all()
    rng = np.random.default_rng(sum(map(ord, fmt)))
    outcomes = {"table": 0, "refused": 0}
    peak_before = peak_rss_mib()
    for case in range(CASES):
        path.write_bytes(mutate(rng, valid, BOUNDARY))
        try:
            table = hts_fast.analyze(path, min_evals=0)
        except TensorReadError:
            outcomes["refused"] += 1
            continue
        except Exception as exc:  # noqa: BLE001 - any other exception is a finding
            pytest.fail(f"case {case}: {type(exc).__name__}: {exc}")
        assert set(table["status"]) <= {"success", "failed"}
        assert (table.loc[table["status"] == "failed", "status_reason"] != "").all()
        outcomes["table"] += 1
    assert sum(outcomes.values()) == CASES
    grown_mib = peak_rss_mib() - peak_before
    assert grown_mib < 200, f"peak memory grew by {grown_mib:.0f} MiB while fuzzing"
