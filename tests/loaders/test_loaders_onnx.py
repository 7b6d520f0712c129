"""The ONNX reader (hts_fast.loaders.onnx_files) against onnx's own numpy_helper.to_array.

Models are built with onnx.helper, exported by torch, or crafted byte by byte with the small
protobuf encoder below (for encodings onnx never writes and for damaged files). Every value
is compared exactly. ``onnx_model_bytes()`` is the valid model the fuzz tests mutate;
HTS_FAST_FUZZ_CASES raises the number of fuzz cases here too.
"""

from __future__ import annotations

import os
import struct
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hts_fast.loaders import LazyTensor, TensorReadError
from hts_fast.loaders.onnx_files import UNREADABLE_TYPES, onnx_tensors

from ..conftest import _require, peak_rss_mib
from ..mutations import mutate

CASES = int(os.environ.get("HTS_FAST_FUZZ_CASES", "300"))
BOUNDARY = [b"\x00", b"\xff", b"\x7f", b"\x80", struct.pack("<Q", 2**63 - 1),
            struct.pack("<q", -1), b"\xff" * 10, b"\x80" * 11, b"\x0b", b"\x1a"]  # fmt: skip


# -- a minimal protobuf encoder for crafted files ------------------------------------------


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _int(number: int, value: int) -> bytes:
    """A varint field."""
    return _varint(number << 3) + _varint(value)


def _bytes(number: int, payload: bytes) -> bytes:
    """A length-delimited field."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _crafted_model(*tensors: bytes) -> bytes:
    """A ModelProto (ir_version 9) whose graph holds the given TensorProto payloads."""
    graph = _bytes(2, b"g") + b"".join(_bytes(5, t) for t in tensors)
    return _int(1, 9) + _bytes(7, graph)


def _raw_tensor(name: str, array: np.ndarray, data_type: int = 1) -> bytes:
    dims = b"".join(_int(1, d) for d in array.shape)
    return dims + _int(2, data_type) + _bytes(8, name.encode()) + _bytes(9, array.tobytes())


# -- models built with onnx -----------------------------------------------------------------


def _onnx() -> Any:
    return _require("onnx")


def _model(*initializers: Any) -> Any:
    onnx = _onnx()
    graph = onnx.helper.make_graph([], "g", [], [], initializer=list(initializers))
    return onnx.helper.make_model(graph)


def _save(path: Path, model: Any) -> Path:
    _onnx().save_model(model, str(path))
    return path


def onnx_model_bytes() -> bytes:
    """A small valid ONNX model: float32 and float16 initializers in raw_data, one float32 in
    float_data, and a node using them (the bytes the fuzz tests mutate)."""
    onnx = _onnx()
    helper, numpy_helper = onnx.helper, onnx.numpy_helper
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.standard_normal((12, 9)).astype(np.float32), "a.weight"),
        numpy_helper.from_array(rng.standard_normal((10, 8)).astype(np.float16), "b.weight"),
        numpy_helper.from_array(rng.standard_normal((8, 4, 2, 2)).astype(np.float32), "c.weight"),
        helper.make_tensor(
            "d.bias", onnx.TensorProto.FLOAT, [9], rng.standard_normal(9).astype(np.float32)
        ),
    ]
    node = helper.make_node("MatMul", ["x", "a.weight"], ["y"])
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 12])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 9])], initializer=inits,
    )  # fmt: skip
    return helper.make_model(graph, producer_name="hts_fast tests").SerializeToString()


def _reference(path: Path) -> list[tuple[str, np.ndarray]]:
    """onnx's view of the file: each initializer's name and array (external data loaded)."""
    onnx = _onnx()
    model = onnx.load(str(path))
    return [(t.name, onnx.numpy_helper.to_array(t)) for t in model.graph.initializer]


def _assert_same_as_onnx(path: Path) -> list[tuple[str, LazyTensor]]:
    tensors = onnx_tensors(path)
    reference = _reference(path)
    assert [name for name, _ in tensors] == [name for name, _ in reference]
    for (name, tensor), (_, expected) in zip(tensors, reference, strict=True):
        got = tensor.load()
        if expected.dtype.kind == "V" or expected.dtype.name.startswith(("bfloat", "float8")):
            expected = expected.astype(np.float32)  # ml_dtypes types load widened
        assert tensor.shape == expected.shape, name
        assert got.shape == expected.shape, name
        assert got.dtype == expected.dtype, name
        np.testing.assert_array_equal(got, expected, err_msg=name)
    return tensors


def _is_memmap(array: np.ndarray) -> bool:
    while array is not None:
        if isinstance(array, np.memmap):
            return True
        array = array.base if isinstance(array.base, np.ndarray) else None
    return False


def _assert_refused(path: Path, *fragments: str) -> None:
    """Opening the model raises one TensorReadError naming it and saying what is wrong."""
    with pytest.raises(TensorReadError) as info:
        onnx_tensors(path)
    message = str(info.value)
    assert message.startswith(f"{path}: not a readable ONNX model ("), message
    for fragment in fragments:
        assert fragment in message


def _assert_fails(tensor: LazyTensor, path: Path, *fragments: str) -> None:
    with pytest.raises(TensorReadError) as info:
        tensor.load()
    message = str(info.value)
    for fragment in (str(path), repr(tensor.name), *fragments):
        assert fragment in message


# -- round trips ----------------------------------------------------------------------------

NUMPY_DTYPES = ["float32", "float16", "float64", "int64", "int32", "int16", "int8", "uint8",
                "uint16", "uint32", "uint64", "bool"]  # fmt: skip


def test_raw_data_round_trip(tmp_path):
    onnx = _onnx()
    rng = np.random.default_rng(1)
    arrays = {f"t.{d}": (rng.standard_normal((3, 5)) * 50).astype(d) for d in NUMPY_DTYPES}
    arrays["conv.weight"] = rng.standard_normal((8, 4, 3, 3)).astype(np.float32)
    arrays["scalar"] = np.array(2.5, dtype=np.float32)
    arrays["empty"] = np.zeros((0, 4), dtype=np.float32)
    inits = [onnx.numpy_helper.from_array(a, n) for n, a in arrays.items()]
    assert all(t.HasField("raw_data") for t in inits)
    path = _save(tmp_path / "raw.onnx", _model(*inits))
    tensors = _assert_same_as_onnx(path)
    by_name = dict(tensors)
    assert by_name["scalar"].shape == ()
    assert by_name["conv.weight"].shape == (8, 4, 3, 3)
    assert by_name["t.float16"].dtype == "float16"
    assert by_name["t.float64"].dtype == "float64"
    assert by_name["t.int64"].load().dtype == np.int64  # integers stay integers
    for name, tensor in tensors:
        if name != "empty":
            assert _is_memmap(tensor.load()), name
        assert tensor.source == str(path)
        assert tensor.identity is not None


def test_bfloat16_raw_data_is_exact(tmp_path):
    onnx = _onnx()
    rng = np.random.default_rng(2)
    exact = rng.standard_normal((6, 7)).astype(np.float32)
    exact = (exact.view(np.uint32) & 0xFFFF0000).view(np.float32)  # bfloat16-representable
    bits = (exact.view(np.uint32) >> 16).astype("<u2")
    tensor = onnx.TensorProto(name="bf", data_type=onnx.TensorProto.BFLOAT16, dims=[6, 7],
                              raw_data=bits.tobytes())  # fmt: skip
    path = _save(tmp_path / "bf16.onnx", _model(tensor))
    [(name, lazy)] = _assert_same_as_onnx(path)
    assert (name, lazy.dtype, lazy.shape) == ("bf", "bfloat16", (6, 7))
    got = lazy.load()
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, exact)


def test_typed_fields_round_trip(tmp_path):
    onnx = _onnx()
    helper, tp = onnx.helper, onnx.TensorProto
    rng = np.random.default_rng(3)
    f32 = rng.standard_normal((4, 5)).astype(np.float32)
    inits = [
        helper.make_tensor("float_data", tp.FLOAT, [4, 5], f32.ravel()),
        helper.make_tensor("double_data", tp.DOUBLE, [3, 2], rng.standard_normal(6)),
        helper.make_tensor(
            "f16_in_int32", tp.FLOAT16, [2, 3], rng.standard_normal(6).astype(np.float16)
        ),
        helper.make_tensor("bf16_in_int32", tp.BFLOAT16, [5], [1.0, -2.5, 3.140625, 0.0, -0.0]),
        helper.make_tensor("int64_data", tp.INT64, [4], [-(2**63), -1, 0, 2**63 - 1]),
        helper.make_tensor("int32", tp.INT32, [3], [-(2**31), -7, 2**31 - 1]),
        helper.make_tensor("int16", tp.INT16, [3], [-(2**15), -1, 2**15 - 1]),
        helper.make_tensor("int8", tp.INT8, [3], [-128, -1, 127]),
        helper.make_tensor("uint8", tp.UINT8, [3], [0, 1, 255]),
        helper.make_tensor("uint16", tp.UINT16, [2], [0, 65535]),
        helper.make_tensor("bool", tp.BOOL, [3], [True, False, True]),
        helper.make_tensor("uint32", tp.UINT32, [2], [2**32 - 1, 1]),
        helper.make_tensor("uint64", tp.UINT64, [2], [2**64 - 1, 1]),
        helper.make_tensor("scalar", tp.FLOAT, [], [7.0]),
        helper.make_tensor("empty", tp.FLOAT, [0, 3], []),
    ]
    if _has_ml_dtypes():
        inits.append(helper.make_tensor("f8e4m3", tp.FLOAT8E4M3FN, [3], [1.5, -2.0, 448.0]))
        inits.append(helper.make_tensor("f8e5m2", tp.FLOAT8E5M2, [3], [1.5, -2.0, 0.25]))
    assert not any(t.HasField("raw_data") for t in inits)
    path = _save(tmp_path / "typed.onnx", _model(*inits))
    tensors = dict(_assert_same_as_onnx(path))
    np.testing.assert_array_equal(tensors["float_data"].load(), f32)
    assert tensors["bf16_in_int32"].dtype == "bfloat16"
    np.testing.assert_array_equal(tensors["bf16_in_int32"].load(),
                                  np.array([1.0, -2.5, 3.140625, 0.0, -0.0], np.float32))  # fmt: skip
    assert tensors["float_data"].identity is None


def _has_ml_dtypes() -> bool:
    try:
        import ml_dtypes  # noqa: F401
    except ImportError:
        return False
    return True


def test_large_packed_varints(tmp_path):
    """Packed varint fields longer than the decoder's chunk, values of every byte length."""
    onnx = _onnx()
    rng = np.random.default_rng(7)
    bits = rng.integers(0, 64, size=300_000)
    ints = (rng.integers(0, 2**62, size=bits.size) >> (62 - np.minimum(bits, 62))).astype(np.int64)
    ints[::3] *= -1
    halves = rng.standard_normal(200_000).astype(np.float16)
    inits = [onnx.helper.make_tensor("ints", onnx.TensorProto.INT64, [600, 500], ints),
             onnx.helper.make_tensor("halves", onnx.TensorProto.FLOAT16, [400, 500], halves)]  # fmt: skip
    path = _save(tmp_path / "varints.onnx", _model(*inits))
    tensors = dict(_assert_same_as_onnx(path))
    np.testing.assert_array_equal(tensors["ints"].load().ravel(), ints)
    np.testing.assert_array_equal(tensors["halves"].load().ravel(), halves)
    assert onnx_tensors(str(path))[0][0] == "ints"  # a str path works too


def test_float8_raw_data(tmp_path):
    ml_dtypes = _require("ml_dtypes")
    values = np.array([[1.5, -2.0], [0.25, 448.0]], dtype=np.float32)
    raw = values.astype(ml_dtypes.float8_e4m3fn).view(np.uint8)
    path = tmp_path / "f8.onnx"
    path.write_bytes(_crafted_model(_raw_tensor("f8", raw, data_type=17)))
    [(_, tensor)] = _assert_same_as_onnx(path)
    assert tensor.dtype == "float8_e4m3fn"
    np.testing.assert_array_equal(tensor.load(), values)


def test_unpacked_and_split_typed_fields(tmp_path):
    """Protobuf readers must accept repeated numbers unpacked, and packed runs split in two."""
    floats = np.array([1.5, -2.25, 3.0, 4.0, 5.5, -6.0], dtype="<f4")
    unpacked_floats = b"".join(_varint(4 << 3 | 5) + struct.pack("<f", v) for v in floats[:4])
    float_tensor = (_int(1, 2) + _int(1, 3) + _int(2, 1) + unpacked_floats
                    + _bytes(4, floats[4:].tobytes()) + _bytes(8, b"f"))  # fmt: skip
    ints = [-5, 2**40, 0, -(2**63)]
    int_tensor = (_bytes(1, _varint(2) + _varint(2)) + _int(2, 7) + _int(7, ints[0])
                  + _bytes(7, _varint(ints[1]) + _varint(ints[2])) + _int(7, ints[3])
                  + _bytes(8, b"i"))  # fmt: skip
    doubles = np.array([0.1, -1e300], dtype="<f8")
    double_tensor = (_int(1, 2) + _int(2, 11) + b"".join(
        _varint(10 << 3 | 1) + struct.pack("<d", v) for v in doubles) + _bytes(8, b"d"))  # fmt: skip
    path = tmp_path / "unpacked.onnx"
    path.write_bytes(_crafted_model(float_tensor, int_tensor, double_tensor))
    tensors = dict(_assert_same_as_onnx(path))
    np.testing.assert_array_equal(tensors["f"].load(), floats.reshape(2, 3))
    np.testing.assert_array_equal(tensors["i"].load(), np.array(ints).reshape(2, 2))
    np.testing.assert_array_equal(tensors["d"].load(), doubles)


def test_empty_graph_and_last_field_wins(tmp_path):
    path = _save(tmp_path / "empty.onnx", _model())
    assert onnx_tensors(path) == []
    # a repeated optional field: protobuf keeps the last value
    twice = _bytes(8, b"first") + _raw_tensor("second", np.arange(3, dtype=np.float32))
    path.write_bytes(_crafted_model(twice))
    [(name, tensor)] = _assert_same_as_onnx(path)
    assert name == "second"
    np.testing.assert_array_equal(tensor.load(), [0.0, 1.0, 2.0])


def test_torch_export_initializers_equal_parameters(tmp_path):
    torch = _require("torch")
    _onnx()
    torch.manual_seed(0)
    # Linear(6, 5) acts on the last axis of a 4-D tensor: exported as MatMul with a transposed
    # weight under a generated name; the last Linear becomes Gemm(transB=1) and keeps its name
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3), torch.nn.Linear(6, 5), torch.nn.ReLU(), torch.nn.Flatten(),
        torch.nn.Linear(4 * 6 * 5, 3),
    ).eval()  # fmt: skip
    path = tmp_path / "torch.onnx"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter is deprecated
            torch.onnx.export(model, (torch.randn(1, 3, 8, 8),), str(path), dynamo=False)
    except ImportError as exc:
        pytest.skip(f"torch.onnx.export needs a package that is not installed: {exc}")
    tensors = _assert_same_as_onnx(path)
    params = {n: p.detach().numpy() for n, p in model.state_dict().items()}
    unmatched = dict(params)
    for name, tensor in tensors:
        array = tensor.load()
        if name in params:
            np.testing.assert_array_equal(array, params[name])
            del unmatched[name]
            continue
        matches = [n for n, p in unmatched.items()
                   if p.shape == array.T.shape and np.array_equal(p, array.T)]  # fmt: skip
        assert len(matches) == 1, f"{name} {array.shape} matches no parameter"
        del unmatched[matches[0]]
    assert not unmatched, f"parameters not found in the ONNX file: {sorted(unmatched)}"
    assert {"0.weight", "0.bias", "4.weight", "4.bias"} <= {n for n, _ in tensors}


# -- external data --------------------------------------------------------------------------


def _external_model(folder: Path) -> tuple[Path, dict[str, np.ndarray]]:
    onnx = _onnx()
    rng = np.random.default_rng(4)
    arrays = {"w1": rng.standard_normal((16, 9)).astype(np.float32),
              "w2": rng.standard_normal((5, 4, 3, 3)).astype(np.float16),
              "w3": rng.standard_normal(7)}  # fmt: skip
    model = _model(*(onnx.numpy_helper.from_array(a, n) for n, a in arrays.items()))
    folder.mkdir(exist_ok=True)
    path = folder / "model.onnx"
    onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="weights.bin", size_threshold=0)  # fmt: skip
    return path, arrays


def test_external_data_round_trip(tmp_path):
    path, arrays = _external_model(tmp_path / "m")
    assert (tmp_path / "m" / "weights.bin").exists()
    tensors = _assert_same_as_onnx(path)
    for name, tensor in tensors:
        np.testing.assert_array_equal(tensor.load(), arrays[name])
        assert _is_memmap(tensor.load())
        assert tensor.identity[:2] == ("onnx", str((tmp_path / "m" / "weights.bin").resolve()))
    assert len({t.identity for _, t in tensors}) == 3


def _set_external(path: Path, name: str, **entries: str) -> None:
    """Rewrite one initializer's external_data entries."""
    onnx = _onnx()
    model = onnx.load(str(path), load_external_data=False)
    [tensor] = [t for t in model.graph.initializer if t.name == name]
    values = {e.key: e.value for e in tensor.external_data} | entries
    del tensor.external_data[:]
    for key, value in values.items():
        tensor.external_data.add(key=key, value=value)
    path.write_bytes(model.SerializeToString())


def test_external_data_tied_initializers_share_identity(tmp_path):
    path, arrays = _external_model(tmp_path / "m")
    onnx = _onnx()
    model = onnx.load(str(path), load_external_data=False)
    w1 = model.graph.initializer[0]
    tied = model.graph.initializer.add()
    tied.CopyFrom(w1)
    tied.name = "w1_tied"
    path.write_bytes(model.SerializeToString())
    tensors = dict(onnx_tensors(path))
    assert tensors["w1_tied"].identity == tensors["w1"].identity
    np.testing.assert_array_equal(tensors["w1_tied"].load(), arrays["w1"])


BAD_EXTERNAL = {
    "traversal": ({"location": "../outside.bin"}, "outside the model's folder"),
    "deep traversal": ({"location": "../../../../../../etc/passwd"}, "outside the model's folder"),
    "absolute": ({"location": "/etc/passwd"}, "absolute path"),
    "symlink out": ({"location": "link.bin"}, "outside the model's folder"),
    "missing file": ({"location": "nothere.bin"}, "does not exist"),
    "wrong length": ({"length": "12"}, "the shape needs"),
    "offset beyond": ({"offset": "999999"}, "beyond the end"),
    "bad offset": ({"offset": "-4"}, "not a non-negative 64-bit integer"),
    "huge length": ({"length": "9" * 5000}, "not a non-negative 64-bit integer"),
    "no location": ({"location": ""}, "no location"),
}


@pytest.mark.parametrize("case", sorted(BAD_EXTERNAL))
def test_external_data_refused(tmp_path, case):
    path, _ = _external_model(tmp_path / "m")
    (tmp_path / "outside.bin").write_bytes((tmp_path / "m" / "weights.bin").read_bytes())
    (tmp_path / "m" / "link.bin").symlink_to(tmp_path / "outside.bin")
    entries, fragment = BAD_EXTERNAL[case]
    _set_external(path, "w2", **entries)
    _assert_refused(path, "initializer 'w2': ", fragment)


def test_external_data_truncated_file(tmp_path):
    path, arrays = _external_model(tmp_path / "m")
    data = tmp_path / "m" / "weights.bin"
    full = data.read_bytes()
    data.write_bytes(full[:-10])  # w3 is stored last
    _assert_refused(path, "initializer 'w3': ", str(data.resolve()), "truncated")
    # the data file shrinks after the model was opened: the tensor's load fails
    data.write_bytes(full)
    tensors = dict(onnx_tensors(path))
    np.testing.assert_array_equal(tensors["w1"].load(), arrays["w1"])
    data.write_bytes(b"")
    _assert_fails(tensors["w1"], path, str(data.resolve()))


# -- damaged and refused files --------------------------------------------------------------


def _corrupt_initializer(onnx: Any, case: str) -> Any:
    helper, tp = onnx.helper, onnx.TensorProto
    tensor = onnx.numpy_helper.from_array(np.ones((3, 4), np.float32), "bad")
    if case == "raw_data length":
        tensor.raw_data = tensor.raw_data[:-4]
    elif case == "negative dim":
        tensor.dims[0] = -3
    elif case == "unknown data type":
        tensor.data_type = 99
    elif case == "string":
        tensor = helper.make_tensor("bad", tp.STRING, [2], [b"a", b"b"])
    elif case == "complex64":
        tensor = onnx.numpy_helper.from_array(np.ones(3, np.complex64), "bad")
    elif case == "int4":
        tensor = helper.make_tensor("bad", tp.INT4, [2], [1, -2])
    elif case == "float_data count":
        tensor = tp(name="bad", data_type=tp.FLOAT, dims=[2, 3], float_data=[1.0] * 5)
    elif case == "int32_data count":
        tensor = tp(name="bad", data_type=tp.FLOAT16, dims=[2, 3], int32_data=[15360] * 7)
    elif case == "no data":
        tensor = tp(name="bad", data_type=tp.FLOAT, dims=[2])
    elif case == "segment":
        tensor.segment.begin = 0
        tensor.segment.end = 12
    elif case == "no data type":
        tensor.ClearField("data_type")
    return tensor


#: initializers the format allows but hts_fast does not read: a per-tensor error
UNSUPPORTED = {
    "string": "data type STRING (8) holds text",
    "complex64": "data type COMPLEX64 (14) is not a real floating-point type",
    "int4": "INT4 (22)",
    "segment": "segmented",
}
#: damaged initializers: the whole model is refused
CORRUPT = {
    "raw_data length": "raw_data holds 44 bytes, shape (3, 4) x float32 needs 48",
    "negative dim": "negative dimension",
    "unknown data type": "unknown data type 99",
    "float_data count": "float_data holds 5 values, shape (2, 3) needs 6",
    "int32_data count": "int32_data holds 7 values, shape (2, 3) needs 6",
    "no data": "float_data holds 0 values, shape (2,) needs 2",
    "no data type": "UNDEFINED (0)",
}


@pytest.mark.parametrize("case", sorted(UNSUPPORTED))
def test_unsupported_initializer_fails_alone(tmp_path, case):
    onnx = _onnx()
    good = onnx.numpy_helper.from_array(np.arange(6, dtype=np.float32).reshape(2, 3), "good")
    path = _save(tmp_path / "bad.onnx", _model(_corrupt_initializer(onnx, case), good))
    tensors = dict(onnx_tensors(path))
    assert list(tensors) == ["bad", "good"]
    _assert_fails(tensors["bad"], path, UNSUPPORTED[case])
    np.testing.assert_array_equal(tensors["good"].load(), np.arange(6).reshape(2, 3))


@pytest.mark.parametrize("case", sorted(CORRUPT))
def test_damaged_initializer_refuses_the_model(tmp_path, case):
    onnx = _onnx()
    good = onnx.numpy_helper.from_array(np.arange(6, dtype=np.float32).reshape(2, 3), "good")
    path = _save(tmp_path / "bad.onnx", _model(_corrupt_initializer(onnx, case), good))
    _assert_refused(path, "initializer 'bad': ", CORRUPT[case])


def test_duplicated_names(tmp_path):
    onnx = _onnx()
    first = onnx.numpy_helper.from_array(np.ones((2, 2), np.float32), "w")
    second = onnx.numpy_helper.from_array(np.zeros((2, 2), np.float32), "w")
    path = _save(tmp_path / "dup.onnx", _model(first, second, second))
    _assert_refused(path, "initializer 'w': the name appears more than once")


CRAFTED = {
    # the TensorProto's own bytes are damaged, its length in the graph is intact
    "truncated varint": (_int(1, 2) + _int(2, 1) + _bytes(8, b"bad") + b"\x90", "truncated"),
    "field past end": (_bytes(8, b"bad") + _int(1, 2) + b"\x4a\x09abc", "claims 9 bytes"),
    "group": (_bytes(8, b"bad") + b"\x0b", "group"),
    "wrong wire type": (_bytes(8, b"bad") + b"\x15\x00\x00\x00\x00", "wire type 5"),
    "location": (
        _raw_tensor("bad", np.ones(2, np.float32)) + _int(14, 7),
        "unknown data_location 7",
    ),
    "no name": (_int(1, 1) + _int(2, 1) + _bytes(9, b"\x00" * 4), "no name"),
    "rank": (
        b"".join(_int(1, 1) for _ in range(70)) + _int(2, 1) + _bytes(8, b"bad"),
        "more than 64 dimensions",
    ),
    "bad packed varint": (
        _int(1, 2) + _int(2, 7) + _bytes(7, b"\x01\x81") + _bytes(8, b"bad"),
        "packed varints end inside a value",
    ),
    "float_data bytes": (
        _int(1, 1) + _int(2, 1) + _bytes(4, b"\x00" * 5) + _bytes(8, b"bad"),
        "not whole values",
    ),
}


@pytest.mark.parametrize("case", sorted(CRAFTED))
def test_damaged_tensor_bytes_refuse_the_model(tmp_path, case):
    payload, fragment = CRAFTED[case]
    good = _raw_tensor("good", np.arange(4, dtype=np.float32))
    path = tmp_path / "crafted.onnx"
    path.write_bytes(_crafted_model(payload, good))
    _assert_refused(path, fragment)


NOT_ONNX = {
    "empty": b"",
    "random": np.random.default_rng(5).bytes(4096),
    "text": b"hello, this is not a model\n",
    "zip": b"PK\x03\x04" + bytes(100),
    "safetensors": struct.pack("<Q", 2) + b"{}",
    "no graph": _int(1, 9),
    "no ir_version": _bytes(7, b""),
    "graph is a varint": _int(1, 9) + _int(7, 3),
    "overlong varint": b"\x08" + b"\xff" * 12,
    "initializer past graph": _int(1, 9) + _bytes(7, b"\x2a\x05ab"),
    "group in graph": _int(1, 9) + _bytes(7, b"\x2b"),
}


@pytest.mark.parametrize("case", sorted(NOT_ONNX))
def test_not_an_onnx_model(tmp_path, case):
    path = tmp_path / "x.onnx"
    path.write_bytes(NOT_ONNX[case])
    with pytest.raises(TensorReadError, match=r"not (a readable|an) ONNX model") as info:
        onnx_tensors(path)
    assert str(path) in str(info.value)


def test_missing_file_folder_and_fifo(tmp_path):
    with pytest.raises(TensorReadError, match="cannot be read"):
        onnx_tensors(tmp_path / "none.onnx")
    with pytest.raises(TensorReadError, match="not a regular file"):
        onnx_tensors(tmp_path)
    if hasattr(os, "mkfifo"):
        os.mkfifo(tmp_path / "fifo.onnx")
        with pytest.raises(TensorReadError, match="not a regular file"):
            onnx_tensors(tmp_path / "fifo.onnx")  # refused without blocking on open()


def test_truncated_model(tmp_path):
    valid = onnx_model_bytes()
    path = tmp_path / "cut.onnx"
    for cut in sorted({1, 2, 5, 20, len(valid) // 3, len(valid) // 2, len(valid) - 30,
                       len(valid) - 1}):  # fmt: skip
        path.write_bytes(valid[:cut])
        with pytest.raises(TensorReadError, match="not a readable ONNX model") as info:
            onnx_tensors(path)
        assert str(path) in str(info.value)


# -- memory ---------------------------------------------------------------------------------


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_large_tensor_is_not_read_before_load(tmp_path):
    if not Path("/proc/self/statm").exists():
        pytest.skip("needs /proc/self/statm")
    n = 50 * 2**20 // 4  # 50 MiB of float32
    header = _int(1, 1024) + _int(1, n // 1024) + _int(2, 1) + _bytes(8, b"big")
    tensor_len = len(header) + len(_varint(9 << 3 | 2)) + len(_varint(4 * n)) + 4 * n
    graph_len = len(_varint(5 << 3 | 2)) + len(_varint(tensor_len)) + tensor_len
    path = tmp_path / "big.onnx"
    with open(path, "wb") as f:
        f.write(_int(1, 9) + _varint(7 << 3 | 2) + _varint(graph_len))
        f.write(_varint(5 << 3 | 2) + _varint(tensor_len) + header)
        f.write(_varint(9 << 3 | 2) + _varint(4 * n))
        np.arange(n, dtype="<f4").tofile(f)
    before = _rss_bytes()
    [(name, tensor)] = onnx_tensors(path)
    array = tensor.load()
    assert _rss_bytes() - before < 8 * 2**20
    assert (name, tensor.shape) == ("big", (1024, n // 1024))
    assert _is_memmap(array)
    assert array[-1, -1] == n - 1


# -- fuzzing --------------------------------------------------------------------------------


def test_mutated_models_never_crash(tmp_path):
    """A mutated model is refused as a whole (TensorReadError naming it) or every tensor
    loads with its declared shape; the only per-tensor error left is a data type the format
    defines but hts_fast does not read (a data_type mutated into one)."""
    valid = onnx_model_bytes()
    path = tmp_path / "fuzz.onnx"
    path.write_bytes(valid)
    assert len([t.load() for _, t in onnx_tensors(path)]) == 4
    rng = np.random.default_rng(6)
    outcomes = {"refused": 0, "loaded": 0}
    unsupported = tuple(f"({code}) {why}" for code, (_, why) in UNREADABLE_TYPES.items())
    peak_before = peak_rss_mib()
    for case in range(CASES):
        # without resizing, protobuf lengths mostly stay intact: damage lands inside tensors
        path.write_bytes(mutate(rng, valid, BOUNDARY, resize=case % 2 == 0))
        try:
            tensors = onnx_tensors(path)
        except TensorReadError as exc:
            if not str(exc).startswith(f"{path}: "):
                pytest.fail(f"case {case}: the error does not name the file: {exc}")
            outcomes["refused"] += 1
            continue
        except Exception as exc:  # noqa: BLE001 - any other exception is a finding
            pytest.fail(f"case {case}: {type(exc).__name__}: {exc}")
        for name, tensor in tensors:
            try:
                array = tensor.load()
            except TensorReadError as exc:
                if not any(reason in str(exc) for reason in unsupported):
                    pytest.fail(f"case {case}: {name!r} failed for a read reason: {exc}")
                continue
            except Exception as exc:  # noqa: BLE001
                pytest.fail(f"case {case}, tensor {name!r}: {type(exc).__name__}: {exc}")
            assert array.shape == tensor.shape
            outcomes["loaded"] += 1
    assert min(outcomes.values()) > 0, outcomes
    grown_mib = peak_rss_mib() - peak_before
    assert grown_mib < 100, f"peak memory grew by {grown_mib:.0f} MiB while fuzzing"
