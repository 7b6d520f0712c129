"""The GGUF reader: round trips through llama.cpp's GGUFWriter, layout, dequantization, and
damaged files (per-tensor errors, refused headers, fuzzing).

``gguf_model_bytes()`` builds the small valid file that the fuzz tests here mutate; the
shared fuzz suite can import it.
"""

from __future__ import annotations

import struct
import tempfile
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hts_fast.loaders import TensorReadError, gguf_files
from hts_fast.loaders.gguf_files import GGML_TYPES, gguf_tensors

from ..conftest import _require, peak_rss_mib
from ..mutations import mutate

FUZZ_CASES = 300
UNSUPPORTED = "is not supported (supported: F32, F16, BF16, F64, Q8_0, Q4_0)"


@pytest.fixture(scope="module")
def gguf() -> Any:
    return _require("gguf")


def _write(gguf: Any, path: Path, tensors: list[tuple[str, np.ndarray, Any]],
           alignment: int | None = None) -> Path:  # fmt: skip
    """A GGUF file written by llama.cpp's writer; ``tensors`` are (name, data, raw_dtype)."""
    writer = gguf.GGUFWriter(path, "llama")
    if alignment is not None:
        writer.add_custom_alignment(alignment)
    writer.add_block_count(1)
    writer.add_token_list(["<s>", "</s>", "hello", "world"])
    for name, data, raw_dtype in tensors:
        writer.add_tensor(name, data, raw_dtype=raw_dtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def _quantized(gguf: Any, x: np.ndarray, kind: str) -> tuple[np.ndarray, Any]:
    qtype = getattr(gguf.GGMLQuantizationType, kind)
    return gguf.quants.quantize(x, qtype), qtype


def _bf16_bits(x: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bit patterns, rounded to nearest even (finite inputs)."""
    bits = x.astype(np.float32).view(np.uint32).astype(np.uint64)
    return ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)


def _slow_dequantize(raw: bytes, kind: str) -> np.ndarray:
    """Block by block in pure Python, from the format description.

    Q8_0 block (34 bytes): float16 d, then 32 int8 q; value i = d * q[i].
    Q4_0 block (18 bytes): float16 d, then 16 bytes; byte j holds value j in its low nibble
    and value j + 16 in its high nibble; value = d * (nibble - 8).
    """
    size = 34 if kind == "Q8_0" else 18
    values: list[float] = []
    for at in range(0, len(raw), size):
        block = raw[at : at + size]
        (d,) = struct.unpack("<e", block[:2])
        if kind == "Q8_0":
            values += [d * q for q in struct.unpack("<32b", block[2:])]
        else:
            nibbles = [b & 0x0F for b in block[2:]] + [b >> 4 for b in block[2:]]
            values += [d * (n - 8) for n in nibbles]
    return np.array(values, dtype=np.float32)  # each d * q is exact in float32


def _block_scales(raw: np.ndarray, block_bytes: int) -> np.ndarray:
    """The stored float16 scale d of each 32-value block, one per value, as float64."""
    d = np.ascontiguousarray(raw.reshape(-1, block_bytes)[:, :2]).view("<f2")
    return np.repeat(d.astype(np.float64).ravel(), 32)


# ---------------------------------------------------------------- hand-made files


def _str(s: bytes | str) -> bytes:
    raw = s.encode() if isinstance(s, str) else s
    return struct.pack("<Q", len(raw)) + raw


def _kv_u32(key: str, value: int) -> bytes:
    return _str(key) + struct.pack("<II", 4, value)


def _info(name: bytes | str, dims: list[int], type_id: int, offset: int) -> bytes:
    return (_str(name) + struct.pack(f"<I{len(dims)}Q", len(dims), *dims)
            + struct.pack("<IQ", type_id, offset))  # fmt: skip


def _handmade(infos: list[bytes], data: bytes = b"", kv: tuple[bytes, ...] | list[bytes] = (), *,
              version: int = 3, n_tensors: int | None = None, n_kv: int | None = None,
              alignment: int = 32) -> bytes:  # fmt: skip
    """A GGUF file assembled byte by byte, for headers the writer cannot produce."""
    count = len(infos) if n_tensors is None else n_tensors
    head = b"GGUF" + struct.pack("<IQQ", version, count, len(kv) if n_kv is None else n_kv)
    head += b"".join(kv) + b"".join(infos)
    return head + b"\0" * (-len(head) % alignment) + data


def _f32(n: int, start: float = 0.0) -> bytes:
    return (np.arange(n, dtype=np.float32) + start).tobytes().ljust(-(-4 * n // 32) * 32, b"\0")


def _open(tmp_path: Path, data: bytes, name: str = "m.gguf") -> dict[str, Any]:
    path = tmp_path / name
    path.write_bytes(data)
    return dict(gguf_tensors(path))


def _refused(tmp_path: Path, data: bytes, reason: str) -> None:
    path = tmp_path / "bad.gguf"
    path.write_bytes(data)
    with pytest.raises(TensorReadError, match="not a readable GGUF file") as info:
        gguf_tensors(path)
    assert str(path) in str(info.value)
    assert reason in str(info.value)


def _fails(tensor: Any, reason: str) -> None:
    with pytest.raises(TensorReadError) as info:
        tensor.load()
    assert tensor.source in str(info.value)
    assert repr(tensor.name) in str(info.value)
    assert reason in str(info.value)


# ---------------------------------------------------------------- round trips


@pytest.fixture(scope="module")
def weights() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    return {"w": (0.05 * rng.standard_normal((96, 64))).astype(np.float32),
            "norm": rng.standard_normal(64).astype(np.float32)}  # fmt: skip


@pytest.fixture(scope="module")
def written(gguf: Any, weights: dict[str, np.ndarray], tmp_path_factory: Any) -> dict[str, Any]:
    w, norm = weights["w"], weights["norm"]
    q8, q8_type = _quantized(gguf, w, "Q8_0")
    q4, q4_type = _quantized(gguf, w, "Q4_0")
    bf16 = gguf.GGMLQuantizationType.BF16
    tensors = [
        ("blk.0.attn_q.weight", w, None),
        ("blk.0.attn_k.weight", w.astype(np.float16), None),
        ("blk.0.attn_v.weight", _bf16_bits(w), bf16),
        ("blk.0.ffn_up.weight", q8, q8_type),
        ("blk.0.ffn_down.weight", q4, q4_type),
        ("blk.0.attn_norm.weight", norm, None),
        ("blk.0.ffn_norm.weight", _bf16_bits(norm), bf16),
        ("blk.0.ffn_gate.weight", w.astype(np.float64), None),
        ("rope_freqs.weight", np.arange(-5, 5, dtype=np.int32), None),
    ]
    path = _write(gguf, tmp_path_factory.mktemp("gguf") / "model.gguf", tensors)
    return {"path": path, "q8": q8, "q4": q4, "tensors": gguf_tensors(path)}


def test_file_order_names_shapes_and_dtypes(written: dict[str, Any]) -> None:
    listed = [(name, t.shape, t.dtype) for name, t in written["tensors"]]
    assert listed == [
        ("blk.0.attn_q.weight", (96, 64), "float32"),
        ("blk.0.attn_k.weight", (96, 64), "float16"),
        ("blk.0.attn_v.weight", (96, 64), "bfloat16"),
        ("blk.0.ffn_up.weight", (96, 64), "q8_0"),
        ("blk.0.ffn_down.weight", (96, 64), "q4_0"),
        ("blk.0.attn_norm.weight", (64,), "float32"),
        ("blk.0.ffn_norm.weight", (64,), "bfloat16"),
        ("blk.0.ffn_gate.weight", (96, 64), "float64"),
        ("rope_freqs.weight", (10,), "int32"),
    ]
    identities = {t.identity for _, t in written["tensors"]}
    assert len(identities) == len(written["tensors"])
    path = str(written["path"].resolve())
    assert all(i[:2] == ("gguf", path) and i[2] % 32 == 0 for i in identities)


def test_plain_types_round_trip_exactly(written: dict[str, Any], weights: Any) -> None:
    tensors = dict(written["tensors"])
    w, norm = weights["w"], weights["norm"]
    f32 = tensors["blk.0.attn_q.weight"].load()
    assert isinstance(f32, np.memmap)  # memory-mapped, not copied
    assert f32.dtype == np.float32
    assert np.array_equal(f32, w)
    f16 = tensors["blk.0.attn_k.weight"].load()
    assert f16.dtype == np.float16
    assert np.array_equal(f16, w.astype(np.float16))
    assert np.array_equal(tensors["blk.0.attn_norm.weight"].load(), norm)
    f64 = tensors["blk.0.ffn_gate.weight"].load()
    assert f64.dtype == np.float64
    assert np.array_equal(f64, w.astype(np.float64))
    ints = tensors["rope_freqs.weight"].load()
    assert ints.dtype == np.int32
    assert np.array_equal(ints, np.arange(-5, 5))
    assert np.array_equal(np.asarray(tensors["blk.0.attn_q.weight"], dtype=np.float64), w)


def test_bf16_is_widened_exactly(written: dict[str, Any], weights: Any) -> None:
    tensors = dict(written["tensors"])
    for name, x in (("blk.0.attn_v.weight", weights["w"]),
                    ("blk.0.ffn_norm.weight", weights["norm"])):  # fmt: skip
        got = tensors[name].load()
        expected = (_bf16_bits(x).astype(np.uint32) << 16).view(np.float32)
        assert got.dtype == np.float32
        assert got.shape == x.shape
        assert np.array_equal(got, expected)
        # 8 significant bits: rounding moves a value by at most half a unit of the 8th bit
        assert np.all(np.abs(got - x) <= 2.0**-8 * np.abs(x))


@pytest.mark.parametrize("kind", ["Q8_0", "Q4_0"])
def test_dequantization_matches_gguf_and_slow_reference(gguf: Any, written: dict[str, Any],
                                                        kind: str) -> None:  # fmt: skip
    name = "blk.0.ffn_up.weight" if kind == "Q8_0" else "blk.0.ffn_down.weight"
    raw = written["q8" if kind == "Q8_0" else "q4"]
    got = dict(written["tensors"])[name].load()
    assert got.dtype == np.float32
    assert got.shape == (96, 64)
    reference = gguf.quants.dequantize(raw, getattr(gguf.GGMLQuantizationType, kind))
    assert np.array_equal(got, reference)
    assert np.array_equal(got.ravel(), _slow_dequantize(raw.tobytes(), kind))


def test_q8_0_error_bound(written: dict[str, Any], weights: Any) -> None:
    """q = round(x / d32) with d32 = max|x| / 127 per block, stored as d = float16(d32)
    (relative error <= 2**-11), so |x - d*q| <= d32/2 + 127*|d32 - d|
    <= |d| * (0.5 + 127 * 2**-11) / (1 - 2**-11)  (about 0.562 |d|)."""
    x = weights["w"].astype(np.float64).ravel()
    got = dict(written["tensors"])["blk.0.ffn_up.weight"].load().astype(np.float64).ravel()
    d = np.abs(_block_scales(written["q8"], 34))
    assert np.all(d > 2.0**-14)  # normal float16 scales: the relative bound holds
    assert np.all(np.abs(x - got) <= d * (0.5 + 127 * 2.0**-11) / (1 - 2.0**-11))


def test_q4_0_error_bound(written: dict[str, Any], weights: Any) -> None:
    """d32 = m / -8 where m is the block's value of largest magnitude; q = clip(trunc(x/d32
    + 8.5), 0, 15). Unclipped values are off by <= |d32|/2 + 8|d32 - d|, i.e. <= |d| *
    (0.5 + 8 * 2**-11) / (1 - 2**-11); values near -m (x/d32 > 7.5) clip to q = 15 and are
    off by <= |d| * (1 + 8 * 2**-11) / (1 - 2**-11)."""
    x = weights["w"].astype(np.float64).ravel()
    got = dict(written["tensors"])["blk.0.ffn_down.weight"].load().astype(np.float64).ravel()
    d = _block_scales(written["q4"], 18)
    assert np.all(np.abs(d) > 2.0**-14)
    error = np.abs(x - got)
    assert np.all(error <= np.abs(d) * (1 + 8 * 2.0**-11) / (1 - 2.0**-11))
    unclipped = x / d < 7.49
    assert unclipped.mean() > 0.9
    bound = np.abs(d) * (0.5 + 8 * 2.0**-11) / (1 - 2.0**-11)
    assert np.all(error[unclipped] <= bound[unclipped])


def test_orientation_is_pytorch_linear_layout(gguf: Any, tmp_path: Path) -> None:
    """A (n_out, n_in) array is stored with ggml ne = [n_in, n_out] and comes back as
    (n_out, n_in), the shape of torch.nn.Linear(n_in, n_out).weight."""
    n_out, n_in = 48, 32
    w = np.arange(n_out * n_in, dtype=np.float32).reshape(n_out, n_in)
    q8, q8_type = _quantized(gguf, w / 1000, "Q8_0")
    tensors = [("output.weight", w, None), ("blk.0.attn_output.weight", q8, q8_type)]
    path = _write(gguf, tmp_path / "linear.gguf", tensors)
    assert [t.shape.tolist() for t in gguf.GGUFReader(path).tensors] == [[n_in, n_out]] * 2
    tensors = dict(gguf_tensors(path))
    assert tensors["output.weight"].shape == (n_out, n_in)
    assert np.array_equal(tensors["output.weight"].load(), w)
    assert tensors["output.weight"].load()[1, 0] == n_in  # rows of n_in values are contiguous
    deq = tensors["blk.0.attn_output.weight"].load()
    assert deq.shape == (n_out, n_in)
    assert np.allclose(deq, w / 1000, atol=np.abs(w / 1000).max() / 127)


def test_chunked_dequantization(monkeypatch: Any, written: dict[str, Any]) -> None:
    """Dequantizing 5 blocks at a time (a partial last chunk) gives the same values."""
    tensors = dict(written["tensors"])
    whole = {n: tensors[n].load() for n in ("blk.0.ffn_up.weight", "blk.0.ffn_down.weight")}
    monkeypatch.setattr(gguf_files, "CHUNK_BLOCKS", 5)
    for name, expected in whole.items():
        assert np.array_equal(tensors[name].load(), expected)


def test_dequantization_streams(gguf: Any, tmp_path: Path) -> None:
    """A 4 Mi-value Q8_0 tensor dequantizes with at most ~1/4 extra memory beyond its
    float32 output (no int64 or float64 temporaries of the whole tensor)."""
    rng = np.random.default_rng(3)
    rows, cols = 2048, 2048
    blocks = rng.integers(0, 256, (rows * cols // 32, 34), dtype=np.uint8)
    blocks[:, :2] = np.full((len(blocks), 1), 0.01, dtype="<f2").view(np.uint8)
    raw = blocks.reshape(rows, cols // 32 * 34)
    path = _write(gguf, tmp_path / "big.gguf",
                  [("blk.0.ffn_up.weight", raw, gguf.GGMLQuantizationType.Q8_0)])  # fmt: skip
    (_, tensor), = gguf_tensors(path)  # fmt: skip
    tracemalloc.start()
    try:
        got = tensor.load()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert got.shape == (rows, cols)
    assert got.dtype == np.float32
    assert peak < 1.25 * got.nbytes, f"peak {peak / 2**20:.1f} MiB for {got.nbytes / 2**20} MiB"
    assert np.array_equal(
        got[::97], gguf.quants.dequantize(raw[::97], gguf.GGMLQuantizationType.Q8_0)
    )


def test_data_is_read_only_when_loaded(gguf: Any, tmp_path: Path) -> None:
    w = np.ones((4, 32), dtype=np.float32)
    path = _write(gguf, tmp_path / "lazy.gguf", [("a.weight", w, None)])
    (_, tensor), = gguf_tensors(path)  # fmt: skip
    begin = tensor.identity[2]
    data = bytearray(path.read_bytes())
    data[begin : begin + 4] = struct.pack("<f", 5.0)
    path.write_bytes(data)
    assert tensor.load()[0, 0] == 5.0


def test_custom_alignment(gguf: Any, tmp_path: Path, weights: Any) -> None:
    w = weights["w"]
    path = _write(gguf, tmp_path / "aligned.gguf",
                  [("a.weight", w[:3, :5], None), ("b.weight", w, None)], alignment=64)  # fmt: skip
    tensors = dict(gguf_tensors(path))
    assert tensors["b.weight"].identity[2] % 64 == 0
    assert np.array_equal(tensors["a.weight"].load(), w[:3, :5])
    assert np.array_equal(tensors["b.weight"].load(), w)


def test_type_table_matches_gguf(gguf: Any) -> None:
    for type_id, (name, block, type_size) in GGML_TYPES.items():
        qtype = gguf.GGMLQuantizationType(type_id)
        assert qtype.name == name
        assert gguf.GGML_QUANT_SIZES[qtype] == (block, type_size)


# ---------------------------------------------------------------- unsupported and broken tensors


def test_unsupported_quantizations_fail_per_tensor(gguf: Any, tmp_path: Path,
                                                   weights: Any) -> None:  # fmt: skip
    w = weights["w"]
    q41, q41_type = _quantized(gguf, w, "Q4_1")
    q50, q50_type = _quantized(gguf, w, "Q5_0")
    q6k = np.zeros((2, 210), dtype=np.uint8)  # two Q6_K blocks of 256 values, bytes as stored
    path = _write(gguf, tmp_path / "mixed.gguf", [
        ("blk.0.attn_q.weight", q41, q41_type), ("blk.0.attn_k.weight", q50, q50_type),
        ("blk.0.ffn_up.weight", q6k, gguf.GGMLQuantizationType.Q6_K),
        ("blk.0.attn_v.weight", w, None),
    ])  # fmt: skip
    tensors = dict(gguf_tensors(path))
    for name, kind in (("blk.0.attn_q.weight", "Q4_1"), ("blk.0.attn_k.weight", "Q5_0")):
        assert tensors[name].shape == (96, 64)
        assert tensors[name].dtype == kind.lower()
        _fails(tensors[name], f"quantization {kind} {UNSUPPORTED}")
    assert tensors["blk.0.ffn_up.weight"].shape == (2, 256)
    _fails(tensors["blk.0.ffn_up.weight"], f"quantization Q6_K {UNSUPPORTED}")
    assert np.array_equal(tensors["blk.0.attn_v.weight"].load(), w)


def test_scalar_empty_and_padded_tensors_are_laid_out_as_llama_cpp_does(tmp_path: Path) -> None:
    tensors = _open(tmp_path, _handmade([
        _info("good.weight", [8, 2], 0, 0),
        _info("scalar.weight", [], 0, 64),
        _info("empty.weight", [0, 4], 1, 96),
        _info("last.weight", [8], 0, 96),
    ], _f32(16) + _f32(1, 100.0) + _f32(8, 7.0)))  # fmt: skip
    assert np.array_equal(tensors["good.weight"].load(), np.arange(16).reshape(2, 8))
    scalar = tensors["scalar.weight"]
    assert scalar.shape == ()
    assert scalar.load() == 100.0
    empty = tensors["empty.weight"].load()
    assert empty.shape == (4, 0)
    assert empty.dtype == np.float16
    assert np.array_equal(tensors["last.weight"].load(), np.arange(8) + 7.0)


_GOOD = _info("good.weight", [8, 2], 0, 0)


@pytest.mark.parametrize(
    ("infos", "data", "reason"),
    [
        ([_GOOD, _info("beyond.weight", [8, 2], 0, 1 << 40)], _f32(16) * 2,
         "tensor 'beyond.weight': data offset 1,099,511,627,776, the layout expects 64"),
        ([_GOOD, _info("misaligned.weight", [8], 0, 4)], _f32(16) + _f32(8),
         "tensor 'misaligned.weight': data offset 4, the layout expects 64"),
        ([_GOOD, _info("tied.weight", [8, 2], 0, 0)], _f32(16) * 2,
         "tensor 'tied.weight': data offset 0, the layout expects 64"),
        ([_GOOD, _info("partly.weight", [8, 16], 0, 64)], _f32(16) + _f32(8, 100.0),
         "truncated: the tensor infos declare 576 data bytes after byte"),
        ([_info("unknown.weight", [8], 99, 0)], _f32(8), "unknown ggml tensor type 99"),
        ([_info("removed.weight", [8], 4, 0)], _f32(8), "unknown ggml tensor type 4"),
        ([_info("row.weight", [48, 2], 8, 0)], _f32(64),
         "row length 48 is not a multiple of the Q8_0 block size 32"),
        ([_info("huge.weight", [0, 2**62, 2], 0, 0)], b"", "out of range"),
        ([_info(b"bad\xffname", [8], 0, 0)], _f32(8), "not valid UTF-8"),
        ([_info("a", [8], 0, 0), _info("b", [8], 0, 32), _info("a", [8], 0, 64)],
         _f32(8) * 3, "tensor 'a': the name appears more than once"),
    ],
)  # fmt: skip
def test_broken_tensor_infos_fail_the_whole_file(tmp_path: Path, infos: list[bytes], data: bytes,
                                                 reason: str) -> None:  # fmt: skip
    path = tmp_path / "bad.gguf"
    path.write_bytes(_handmade(infos, data))
    with pytest.raises(TensorReadError) as info:
        gguf_tensors(path)
    assert str(info.value).startswith(f"{path}: ")
    assert reason in str(info.value)


def test_every_truncation_of_the_data_fails_the_whole_file(gguf: Any, tmp_path: Path,
                                                           weights: Any) -> None:  # fmt: skip
    w = weights["w"]
    q8, q8_type = _quantized(gguf, w, "Q8_0")
    path = _write(gguf, tmp_path / "cut.gguf", [("a.weight", w, None), ("b.weight", q8, q8_type)])
    full = path.read_bytes()
    tensors = dict(gguf_tensors(path))
    data_start = tensors["a.weight"].identity[2]
    second = tensors["b.weight"].identity[2]
    declared = second - data_start + q8.nbytes
    assert data_start + declared == len(full)
    for cut in (data_start + 100, second, second + 100, len(full) - 1):
        path.write_bytes(full[:cut])
        with pytest.raises(TensorReadError) as info:
            gguf_tensors(path)
        assert str(info.value) == (
            f"{path}: truncated: the tensor infos declare {declared:,} data bytes after byte "
            f"{data_start:,}, the file holds {cut - data_start:,}"
        )


def test_file_shrinking_after_open_raises_tensor_read_error(gguf: Any, tmp_path: Path) -> None:
    path = _write(
        gguf, tmp_path / "shrink.gguf", [("a.weight", np.ones((8, 32), np.float32), None)]
    )
    (_, tensor), = gguf_tensors(path)  # fmt: skip
    path.write_bytes(path.read_bytes()[: tensor.identity[2] + 10])
    _fails(tensor, "cannot read the data")


# ---------------------------------------------------------------- refused files


def test_truncated_headers_are_refused(gguf: Any, tmp_path: Path, weights: Any) -> None:
    path = _write(gguf, tmp_path / "whole.gguf", [("blk.0.attn_q.weight", weights["w"], None)])
    full = path.read_bytes()
    name_at = full.find(b"blk.0.attn_q.weight")
    key_at = full.find(b"tokenizer.ggml.tokens")
    for cut, reason in ((0, "truncated: 0 bytes"), (3, "truncated: 3 bytes"),
                        (20, "truncated: 20 bytes"), (30, "metadata"),
                        (key_at + 5, "metadata key"), (key_at + 40, "tokenizer.ggml.tokens"),
                        (name_at - 2, "tensor count 1 cannot fit"),
                        (name_at + 17, "tensor name: 19 bytes"),
                        (name_at + 19, "dimension count"), (name_at + 30, "dimensions"),
                        (name_at + 40, "type"), (name_at + 45, "offset")):  # fmt: skip
        _refused(tmp_path, full[:cut], reason)


def test_bad_magic_and_versions_are_refused(tmp_path: Path) -> None:
    valid = _handmade([_info("a", [8], 0, 0)], _f32(8))
    _refused(tmp_path, b"GGUX" + valid[4:], "no GGUF magic")
    _refused(tmp_path, b"PK\x03\x04" + valid[4:], "no GGUF magic")
    _refused(tmp_path, _handmade([], version=1), "version 1 is not supported")
    _refused(tmp_path, _handmade([], version=4), "version 4 is not supported")
    _refused(tmp_path, _handmade([], version=3 << 24), "big-endian")
    assert _open(tmp_path, _handmade([], version=2)) == {}


def test_absurd_counts_and_lengths_are_refused_quickly(tmp_path: Path) -> None:
    info = _info("a", [8], 0, 0)
    cases = [
        (_handmade([info], _f32(8), n_tensors=2**62), "tensor count 4611686018427387904"),
        (_handmade([info], _f32(8), n_kv=2**62), "metadata count"),
        (
            _handmade([struct.pack("<Q", 2**62) + b"a" * 40 + info], _f32(8), n_tensors=1),
            "tensor name: 4611686018427387904 bytes",
        ),
        (_handmade([info], _f32(8), [struct.pack("<Q", 2**62) + b"key"]), "metadata key"),
        (_handmade([info], _f32(8), [_str("k") + struct.pack("<IIQ", 9, 0, 2**62)]), "'k'"),
        (_handmade([info], _f32(8), [_str("k") + struct.pack("<IIQ", 9, 10, 2**61)]), "'k'"),
        (
            _handmade([info], _f32(8), [_str("k") + struct.pack("<IIQ", 9, 8, 2**62)]),
            "'k' count 4611686018427387904",
        ),
        (
            _handmade([info], _f32(8), [_str("k") + struct.pack("<IIQQ", 9, 8, 3, 2**62)]),
            "a string runs past the end",
        ),
        (_handmade([_str("a") + struct.pack("<I", 2**31) + b"\0" * 64]), "has 2147483648 dim"),
    ]
    # refused from the declared numbers alone: nothing allocated (or looped over) in
    # proportion to a count of 2**62
    tracemalloc.start()
    try:
        for data, reason in cases:
            _refused(tmp_path, data, reason)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 * 2**20, f"{peak / 2**20:.1f} MiB allocated"


def test_bad_metadata_is_refused(tmp_path: Path) -> None:
    info = [_info("a", [8], 0, 0)]
    nested = _str("k") + struct.pack("<IIQ", 9, 9, 1) + struct.pack("<IQ", 4, 1) + b"\0" * 4
    for kv, reason in (
        ([_kv_u32("general.alignment", 0)], "general.alignment 0 is not a positive power"),
        ([_kv_u32("general.alignment", 48)], "general.alignment 48"),
        ([_str("general.alignment") + struct.pack("<I", 8) + _str("32")], "'32'"),
        ([_kv_u32("x", 1), _kv_u32("x", 2)], "metadata key 'x' appears more than once"),
        ([_str("k") + struct.pack("<II", 13, 0)], "unknown value type 13"),
        ([nested], "array of unsupported element type 9"),
    ):
        _refused(tmp_path, _handmade(info, _f32(8), kv), reason)


def test_metadata_of_every_type_is_skipped(tmp_path: Path) -> None:
    kv = [_str(f"k{t}") + struct.pack("<I", t) + b"\x01" * size
          for t, size in ((0, 1), (1, 1), (2, 2), (3, 2), (4, 4), (5, 4), (6, 4), (7, 1),
                          (10, 8), (11, 8), (12, 8))]  # fmt: skip
    kv.append(_str("s") + struct.pack("<I", 8) + _str("text \xff".encode("latin-1")))
    kv.append(_str("arr") + struct.pack("<IIQ", 9, 12, 3) + b"\0" * 24)
    kv.append(_str("strs") + struct.pack("<IIQ", 9, 8, 2) + _str("x") + _str("yz"))
    kv.append(_kv_u32("general.alignment", 64))
    tensors = _open(tmp_path, _handmade([_info("a", [8], 0, 0)], _f32(8), kv, alignment=64))
    assert np.array_equal(tensors["a"].load(), np.arange(8))


def test_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(TensorReadError, match="not a readable GGUF file"):
        gguf_tensors(tmp_path / "absent.gguf")


# ---------------------------------------------------------------- fuzzing


def gguf_model_bytes() -> bytes:
    """A small valid GGUF file (F32, F16, BF16, Q8_0 and Q4_0 tensors, string-array and
    scalar metadata) written by llama.cpp's GGUFWriter, for fuzzing."""
    gguf = _require("gguf")
    rng = np.random.default_rng(11)
    w = (0.05 * rng.standard_normal((16, 64))).astype(np.float32)
    q = gguf.GGMLQuantizationType
    tensors = [
        ("token_embd.weight", w[:12, :32].astype(np.float16), None),
        ("blk.0.attn_q.weight", gguf.quants.quantize(w, q.Q8_0), q.Q8_0),
        ("blk.0.ffn_down.weight", gguf.quants.quantize(w[:8], q.Q4_0), q.Q4_0),
        ("blk.0.attn_norm.weight", w[0], None),
        ("output.weight", _bf16_bits(w[:6, :32]), q.BF16),
    ]
    with tempfile.TemporaryDirectory() as folder:
        return _write(gguf, Path(folder) / "small.gguf", tensors).read_bytes()


_BOUNDARY = [b"\x00", b"\xff", b"\x7f", b"\x80", b"\x00" * 8, b"\xff" * 8,
             struct.pack("<Q", 2**63 - 1), struct.pack("<Q", 2**62), struct.pack("<I", 2**31),
             struct.pack("<I", 99), struct.pack("<Q", 32)]  # fmt: skip


def test_mutated_files_raise_only_tensor_read_error(tmp_path: Path) -> None:
    """A mutated file is refused as a whole (TensorReadError naming it) or every tensor loads
    with its declared shape; the only per-tensor error left is a quantization not read here
    (a type id mutated into another known type of the same size)."""
    valid = gguf_model_bytes()
    path = tmp_path / "fuzz.gguf"
    path.write_bytes(valid)
    baseline = gguf_tensors(path)
    assert [t.load().shape for _, t in baseline] == [(12, 32), (16, 64), (8, 64), (64,), (6, 32)]
    header_end = min(t.identity[2] for _, t in baseline)
    rng = np.random.default_rng(2024)
    outcomes = {"opened": 0, "refused": 0}
    peak_before = peak_rss_mib()
    for case in range(FUZZ_CASES):
        path.write_bytes(mutate(rng, valid, _BOUNDARY, focus_end=header_end, max_span=32))
        try:
            tensors = gguf_tensors(path)
        except TensorReadError as exc:
            if not str(exc).startswith(f"{path}: "):
                pytest.fail(f"case {case}: the error does not name the file: {exc}")
            outcomes["refused"] += 1
            continue
        except Exception as exc:  # noqa: BLE001 - any other exception is a finding
            pytest.fail(f"case {case}: opening raised {type(exc).__name__}: {exc}")
        outcomes["opened"] += 1
        for name, tensor in tensors:
            try:
                array = tensor.load()
            except TensorReadError as exc:
                if UNSUPPORTED not in str(exc):
                    pytest.fail(f"case {case}: {name!r} failed for a read reason: {exc}")
                continue
            except Exception as exc:  # noqa: BLE001
                pytest.fail(f"case {case}: loading {name!r} raised {type(exc).__name__}: {exc}")
            assert array.shape == tensor.shape
    assert outcomes["opened"] > 0
    assert outcomes["refused"] > 0
    grown_mib = peak_rss_mib() - peak_before
    assert grown_mib < 100, f"peak memory grew by {grown_mib:.0f} MiB while fuzzing"
