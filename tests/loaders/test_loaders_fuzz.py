"""Fuzzing the checkpoint readers: a damaged file is never a result.

Each case mutates a valid file (bit flips, byte overwrites with boundary values, truncation,
duplicated or deleted spans) and analyzes it. The only allowed outcomes are:

* a file-level TensorReadError whose message starts with the file's path; or
* a table whose layers are exactly those of the unmutated file, each ``success`` or failed
  for a value reason (NaN/Inf weights, values so large the eigenvalues overflow float64, a
  fit the changed values defeat); a failure for a read reason is a finding.

A mutation can also leave a valid file that declares something else (a tensor renamed, an
F32 dtype flipped to I32, a torch view's size changed inside its storage). An independent
reader of the format (the safetensors library, NumPy, torch, onnx, gguf) tells those apart:
when it reads the mutated file, the table must equal the analysis of the arrays it read,
layer for layer, status for status and alpha for alpha; when it reads exactly the original
file's names, shapes and dtypes, the rule above holds too. When it refuses the file, the
table must hold the original layers with value-only differences.

Besides the random cases, every file is cut at every tensor boundary, inside each tensor,
in its first bytes, in its header and one byte short: each cut is a file-level error.
``HTS_FAST_FUZZ_N`` sets the number of random cases per format (300 by default, the CI run;
1000 or more for a long run).
"""

from __future__ import annotations

import io
import os
import struct
import tempfile
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hts_fast
import numpy as np
import pandas as pd
import pytest
from hts_fast.loaders import TensorReadError

from ..conftest import peak_rss_mib
from ..mutations import mutate

CASES = int(os.environ.get("HTS_FAST_FUZZ_N", os.environ.get("HTS_FAST_FUZZ_CASES", "300")))
BOUNDARY = [b"\x00", b"\xff", b"\x7f", b"\x80", struct.pack("<Q", 2**63 - 1),
            struct.pack("<q", -1), b"9" * 12, b'"', b"]", b"}"]  # fmt: skip
#: failure reasons that come from the values a mutation changed, not from reading the file
VALUE_REASONS = (
    "contains NaN or Inf values",
    "power-law fit failed",
    "has eigenvalues beyond the float64 range",
)
#: the columns that identify a layer and its outcome
LAYER_COLUMNS = ["name", "layer_type", "N", "M", "status"]

Arrays = list[tuple[str, np.ndarray]]


# --------------------------------------------------------------------- the files


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


# --------------------------------------------------------------------- independent readers


def _safetensors_reference(path: Path) -> Arrays:
    from safetensors.numpy import load

    return sorted(load(path.read_bytes()).items())


def _npz_reference(path: Path) -> Arrays:
    with np.load(path, allow_pickle=False) as archive:
        return [(name, archive[name]) for name in archive.files]


def _torch_reference(path: Path) -> Arrays:
    import torch

    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        msg = "not a state dict"
        raise TypeError(msg)
    return [(str(k), v.numpy()) for k, v in state.items() if isinstance(v, torch.Tensor)]


def _gguf_reference(path: Path) -> Arrays:
    import gguf

    plain = {gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16,
             gguf.GGMLQuantizationType.F64}  # fmt: skip
    arrays = []
    for tensor in gguf.GGUFReader(path).tensors:
        shape = tuple(reversed([int(d) for d in tensor.shape]))
        data = np.asarray(tensor.data)
        if tensor.tensor_type not in plain:
            data = gguf.quants.dequantize(data, tensor.tensor_type).astype(np.float32)
        arrays.append((tensor.name, data.reshape(shape)))
    return arrays


def _onnx_reference(path: Path) -> Arrays:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    arrays = [(t.name, onnx.numpy_helper.to_array(t)) for t in model.graph.initializer]
    if not all(isinstance(name, str) for name, _ in arrays):  # a name that is not UTF-8
        msg = "an initializer's name is not UTF-8"
        raise ValueError(msg)
    return arrays


FORMATS: dict[str, tuple[str, Callable[[], bytes], Callable[[Path], Arrays]]] = {
    "safetensors": (".safetensors", _safetensors_bytes, _safetensors_reference),
    "npz": (".npz", lambda: _npz_bytes(False), _npz_reference),
    "npz_compressed": (".npz", lambda: _npz_bytes(True), _npz_reference),
    "torch_zip": (".bin", _torch_zip_bytes, _torch_reference),
    "gguf": (".gguf", _gguf_bytes, _gguf_reference),
    "onnx": (".onnx", _onnx_bytes, _onnx_reference),
}


def _reference(read: Callable[[Path], Arrays], path: Path) -> Arrays | None:
    """The independent reader's arrays, or None when it refuses the file."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return read(path)
    except Exception:  # noqa: BLE001 - whatever it raises, it refused the file
        return None


def _declared(arrays: Arrays) -> list[tuple[str, tuple[int, ...], str]]:
    return [(name, a.shape, a.dtype.str) for name, a in arrays]


def _analyze_arrays(fmt: str, arrays: Arrays) -> pd.DataFrame:
    """The table analyze() gives for the reference's arrays, laid out as the file's."""
    if fmt == "onnx":  # every initializer a candidate layer, named as stored
        return hts_fast.analyze(list(arrays), min_evals=0)
    return hts_fast.analyze(dict(arrays), min_evals=0)


# --------------------------------------------------------------------- the oracle


def _layers(table: pd.DataFrame) -> list[tuple[Any, ...]]:
    return [tuple(row) for row in table[LAYER_COLUMNS].itertuples(index=False)]


def _read_failures(table: pd.DataFrame) -> list[tuple[str, str]]:
    failed = table[table["status"] != "success"]
    return [(name, reason) for name, reason in zip(failed["name"], failed["status_reason"],
                                                   strict=True)
            if not any(v in reason for v in VALUE_REASONS)]  # fmt: skip


def _check_table(fmt: str, case: int, path: Path, table: pd.DataFrame, baseline: pd.DataFrame,
                 original: list[Any], reference: Arrays | None) -> str:  # fmt: skip
    """Assert the allowed outcomes for a table; return which one it was."""
    where = f"{fmt} case {case}"
    if reference is not None and _declared(reference) != original:
        expected = _analyze_arrays(fmt, reference)
        assert _layers(table) == _layers(expected), where
        np.testing.assert_array_equal(table["alpha"], expected["alpha"], err_msg=where)
        return "a valid file declaring other tensors"
    assert _layers(table.assign(status="")) == _layers(baseline.assign(status="")), where
    assert not _read_failures(table), f"{where}: {_read_failures(table)}"
    if reference is not None:
        expected = _analyze_arrays(fmt, reference)
        assert _layers(table) == _layers(expected), where
        np.testing.assert_array_equal(table["alpha"], expected["alpha"], err_msg=where)
    return "the original layers" if (table["status"] == "success").all() else "value failures"


def _baseline(fmt: str, path: Path, valid: bytes) -> tuple[pd.DataFrame, list[Any], Arrays]:
    _, _, read = FORMATS[fmt]
    path.write_bytes(valid)
    baseline = hts_fast.analyze(path, min_evals=0)
    assert len(baseline) > 1
    assert (baseline["status"] == "success").all()
    reference = read(path)
    # the oracle's premise: the reference reader and hts_fast agree on the valid file
    expected = _analyze_arrays(fmt, reference)
    assert _layers(baseline) == _layers(expected)
    np.testing.assert_allclose(baseline["alpha"], expected["alpha"], rtol=1e-12)
    return baseline, _declared(reference), reference


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_mutated_files_are_refused_or_read_whole(tmp_path, fmt):
    suffix, make, read = FORMATS[fmt]
    valid = make()
    path = tmp_path / f"fuzz{suffix}"
    baseline, original, _ = _baseline(fmt, path, valid)
    rng = np.random.default_rng(sum(map(ord, fmt)))
    outcomes: dict[str, int] = {}
    peak_before = peak_rss_mib()
    for case in range(CASES):
        path.write_bytes(mutate(rng, valid, BOUNDARY))
        try:
            table = hts_fast.analyze(path, min_evals=0)
        except TensorReadError as exc:
            if not str(exc).startswith(f"{path}: "):
                pytest.fail(f"{fmt} case {case}: the error does not name the file: {exc}")
            outcome = "refused"
        except Exception as exc:  # noqa: BLE001 - any other exception is a finding
            pytest.fail(f"{fmt} case {case}: {type(exc).__name__}: {exc}")
        else:
            outcome = _check_table(fmt, case, path, table, baseline, original,
                                   _reference(read, path))  # fmt: skip
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    assert sum(outcomes.values()) == CASES
    assert outcomes.get("refused", 0) > CASES // 10, outcomes
    grown_mib = peak_rss_mib() - peak_before
    assert grown_mib < 200, f"peak memory grew by {grown_mib:.0f} MiB while fuzzing"


# --------------------------------------------------------------------- truncation


def _zip_data_spans(data: bytes, members: Callable[[str], bool]) -> list[tuple[int, int]]:
    """(start, end) of the stored bytes of the zip members ``members`` selects."""
    spans = []
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        for info in archive.infolist():
            if members(info.filename):
                name_len, extra_len = struct.unpack_from("<HH", data, info.header_offset + 26)
                start = info.header_offset + 30 + name_len + extra_len
                spans.append((start, start + info.compress_size))
    return spans


def _tensor_spans(fmt: str, data: bytes) -> list[tuple[int, int]]:
    """Where each tensor's bytes lie in the file, found without hts_fast's readers."""
    if fmt == "safetensors":
        header_len = struct.unpack_from("<Q", data)[0]
        import json

        header = json.loads(data[8 : 8 + header_len])
        header.pop("__metadata__", None)
        return [(8 + header_len + b, 8 + header_len + e)
                for b, e in (v["data_offsets"] for v in header.values())]  # fmt: skip
    if fmt.startswith("npz"):
        return _zip_data_spans(data, lambda name: name.endswith(".npy"))
    if fmt == "torch_zip":
        return _zip_data_spans(data, lambda name: "/data/" in name and not name.endswith(".pkl"))
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "f"
        path.write_bytes(data)
        if fmt == "gguf":
            import gguf

            return [(int(t.data_offset), int(t.data_offset) + int(t.n_bytes))
                    for t in gguf.GGUFReader(path).tensors]  # fmt: skip
        spans = []
        for _, array in _onnx_reference(path):
            raw = array.tobytes()
            start = data.find(raw)
            if start >= 0 and data.find(raw, start + 1) < 0:  # raw_data: found once
                spans.append((start, start + len(raw)))
        return spans


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_every_truncation_is_a_file_level_error(tmp_path, fmt):
    """Cuts in the first bytes (a length field or magic), in the header, inside the first
    tensor, at every tensor boundary, inside every tensor and one byte short."""
    suffix, make, _ = FORMATS[fmt]
    valid = make()
    path = tmp_path / f"cut{suffix}"
    spans = sorted(_tensor_spans(fmt, valid))
    assert len(spans) >= 2
    first = spans[0][0]
    cuts = {"in the first bytes": 5, "in the header": first // 2,
            "inside the first tensor": (spans[0][0] + spans[0][1]) // 2,
            "one byte short": len(valid) - 1}  # fmt: skip
    for k, (start, end) in enumerate(spans):
        cuts[f"at the start of tensor {k}"] = start
        cuts[f"inside tensor {k}"] = (start + end) // 2
        cuts[f"at the end of tensor {k}"] = end
    for what, cut in cuts.items():
        if not 0 < cut < len(valid):
            continue
        path.write_bytes(valid[:cut])
        with pytest.raises(TensorReadError) as info:
            hts_fast.analyze(path, min_evals=0)
        assert str(info.value).startswith(f"{path}: "), (fmt, what, str(info.value))
