"""Checkpoint files read without torch: safetensors files and folders, npz; bad files."""

from __future__ import annotations

import json
import struct

import hts_fast
import numpy as np
import pytest
from hts_fast.loaders import SafetensorsFile, TensorReadError, checkpoint_tensors, safetensors_files

from ..conftest import REQUIRE_REFERENCES
from ..weightwatcher_reference import assert_same_table, run_weightwatcher

safetensors_numpy = pytest.importorskip("safetensors.numpy")


def _state(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "a.weight": rng.standard_normal((60, 40)).astype(np.float32),
        "a.bias": rng.standard_normal(60).astype(np.float32),
        "b.weight": rng.standard_normal((48, 24, 3, 3)).astype(np.float32),
        "c.weight": rng.standard_normal((30, 50)),
        "d.weight": rng.standard_normal((40, 40)).astype(np.float16),
        "norm.weight": np.ones(40, dtype=np.float32),
    }


def _write_raw(path, header: dict, data: bytes, header_len: int | None = None) -> None:
    blob = json.dumps(header).encode()
    size = len(blob) if header_len is None else header_len
    path.write_bytes(struct.pack("<Q", size) + blob + data)


def test_round_trip_against_the_safetensors_library(tmp_path, monkeypatch):
    state = _state()
    path = tmp_path / "model.safetensors"
    safetensors_numpy.save_file(state, str(path))
    tensors, counts = checkpoint_tensors(path)
    assert [n for n, _ in tensors] == sorted(state)
    assert counts == [len(state)]
    reference = safetensors_numpy.load_file(str(path))
    for name, tensor in tensors:
        assert tensor.shape == state[name].shape
        loaded = tensor.load()
        assert loaded.dtype == state[name].dtype
        np.testing.assert_array_equal(loaded, reference[name])
    # small tensors are read, larger ones memory-mapped (no copy); the values are the same
    small = SafetensorsFile(path).tensor("a.weight").load()
    assert not isinstance(small, np.memmap)
    assert not small.flags.writeable
    monkeypatch.setattr(safetensors_files, "SMALL_TENSOR_BYTES", 0)
    mapped = SafetensorsFile(path).tensor("a.weight").load()
    assert isinstance(mapped, np.memmap)
    np.testing.assert_array_equal(mapped, small)


def test_bf16_and_fp8_are_converted_exactly(tmp_path):
    torch = pytest.importorskip("torch")
    from safetensors.torch import save_file

    rng = torch.Generator().manual_seed(0)
    values = torch.randn(64, 32, generator=rng) * 10
    tensors = {"bf.weight": values.to(torch.bfloat16), "e4.weight": values.to(torch.float8_e4m3fn),
               "e5.weight": values.to(torch.float8_e5m2)}  # fmt: skip
    path = tmp_path / "m.safetensors"
    save_file(tensors, str(path))
    opened = SafetensorsFile(path)
    np.testing.assert_array_equal(opened.tensor("bf.weight").load(),
                                  tensors["bf.weight"].float().numpy())  # fmt: skip
    try:
        import ml_dtypes  # noqa: F401
    except ImportError:
        if REQUIRE_REFERENCES:
            raise
        with pytest.raises(TensorReadError, match="needs the ml_dtypes package"):
            opened.tensor("e4.weight").load()
        return
    for name in ("e4.weight", "e5.weight"):
        np.testing.assert_array_equal(opened.tensor(name).load(), tensors[name].float().numpy())


def test_analyze_file_equals_analyze_of_the_loaded_dict(tmp_path):
    state = _state(1)
    path = tmp_path / "model.safetensors"
    safetensors_numpy.save_file(state, str(path))
    from_file = hts_fast.analyze(path)
    loaded = safetensors_numpy.load_file(str(path))
    from_dict = hts_fast.analyze({k: loaded[k] for k in sorted(loaded)})  # the file's order
    assert list(from_file["layer_id"]) == list(from_dict["layer_id"] - 1)  # files count from 0
    for col in ("name", "alpha", "D", "xmin", "lambda_max", "norm", "N", "M", "rf"):
        assert list(from_file[col]) == list(from_dict[col]), col


def _sharded_folder(tmp_path, with_index: bool):
    state = _state(2)
    folder = tmp_path / ("indexed" if with_index else "plain")
    folder.mkdir()
    names = list(state)
    shards = {"model-00001-of-00002.safetensors": names[:3],
              "model-00002-of-00002.safetensors": names[3:]}  # fmt: skip
    for shard, keys in shards.items():
        safetensors_numpy.save_file({k: state[k] for k in keys}, str(folder / shard))
    if with_index:
        weight_map = {k: shard for shard, keys in shards.items() for k in keys}
        (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    return folder


@pytest.mark.weightwatcher
@pytest.mark.parametrize("with_index", [True, False])
def test_sharded_folder_matches_weightwatcher(tmp_path, with_index):
    pytest.importorskip("torch")  # WeightWatcher reads folders through torch
    folder = _sharded_folder(tmp_path, with_index)
    ours = hts_fast.analyze(folder, compat="weightwatcher-0.7.7")
    assert_same_table(ours, run_weightwatcher(str(folder)))


def test_an_index_whose_shards_do_not_match_fails_the_checkpoint(tmp_path):
    """A shard the index names is missing, unreadable, or lacks a tensor the index puts in it:
    the whole checkpoint fails with the file named (no table of the surviving layers)."""
    folder = _sharded_folder(tmp_path, with_index=True)
    index = folder / "model.safetensors.index.json"
    weight_map = json.loads(index.read_text())["weight_map"]
    second = folder / "model-00002-of-00002.safetensors"
    data = second.read_bytes()
    intact = hts_fast.analyze(folder)

    second.unlink()
    with pytest.raises(TensorReadError, match=r"names the shard model-00002-of-00002\.safetensors, "
                                              r"which is missing"):  # fmt: skip
        hts_fast.analyze(folder)
    second.write_bytes(data[:4])  # no header: unusable as a whole
    with pytest.raises(TensorReadError, match=r"model-00002-of-00002\.safetensors.*a shard named by "
                                              r"model\.safetensors\.index\.json"):  # fmt: skip
        hts_fast.analyze(folder)
    second.write_bytes(data)
    index.write_text(json.dumps({"weight_map": {**weight_map, "extra.weight": second.name}}))
    with pytest.raises(TensorReadError, match=r"lists 'extra\.weight' in model-00002-of-00002"):
        hts_fast.analyze(folder)
    index.write_text(json.dumps({"weight_map": {**weight_map, "extra.weight": "../x.safetensors"}}))
    with pytest.raises(TensorReadError, match="as a shard"):
        hts_fast.analyze(folder)
    index.write_text(json.dumps({"weight_map": weight_map}))
    assert hts_fast.analyze(folder).equals(intact)


def test_npz_checkpoint(tmp_path):
    state = _state(3)
    path = tmp_path / "w.npz"
    np.savez(path, **state)
    df = hts_fast.analyze(path)
    assert list(df["name"]) == ["a", "b", "c", "d"]


def test_unusable_files_raise_a_clear_error(tmp_path):
    short = tmp_path / "short.safetensors"
    short.write_bytes(b"\x01\x02")
    with pytest.raises(TensorReadError, match="truncated: 2 bytes"):
        hts_fast.analyze(short)
    huge = tmp_path / "huge.safetensors"
    _write_raw(huge, {}, b"", header_len=10**9)
    with pytest.raises(TensorReadError, match=r"declares 1,000,000,000 bytes, more than"):
        hts_fast.analyze(huge)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(struct.pack("<Q", 5) + b"{nope")
    with pytest.raises(TensorReadError, match="corrupted header"):
        hts_fast.analyze(garbage)
    other = tmp_path / "weights.txt"
    other.write_text("x")
    with pytest.raises(TensorReadError, match="unsupported checkpoint format"):
        hts_fast.analyze(other)


def test_bad_tensors_fail_their_layer_only(tmp_path):
    """Value problems (NaN, an unsupported dtype) stay per-layer rows; the rest is read."""
    good = np.random.default_rng(4).standard_normal((20, 16)).astype(np.float32)
    nan = good.copy()
    nan[1, 1] = np.nan
    blocks = [good.tobytes(), nan.tobytes(), np.ones((20, 16), np.int32).tobytes(),
              good.tobytes(), bytes(20 * 16 // 2)]  # fmt: skip
    offsets, start = [], 0
    for block in blocks:
        offsets.append([start, start + len(block)])
        start += len(block)
    header = {
        "a.weight": {"dtype": "F32", "shape": [20, 16], "data_offsets": offsets[0]},
        "b.weight": {"dtype": "F32", "shape": [20, 16], "data_offsets": offsets[1]},
        "c.weight": {"dtype": "I32", "shape": [20, 16], "data_offsets": offsets[2]},
        "d.weight": {"dtype": "F32", "shape": [20, 16], "data_offsets": offsets[3]},
        "e.weight": {"dtype": "F4", "shape": [20, 16], "data_offsets": offsets[4]},
    }
    path = tmp_path / "bad.safetensors"
    _write_raw(path, header, b"".join(blocks))
    df = hts_fast.analyze(path).set_index("name")
    assert df.loc["a", "status"] == df.loc["d", "status"] == "success"
    assert df.loc["a", "alpha"] == df.loc["d", "alpha"]
    assert "NaN or Inf" in df.loc["b", "status_reason"]
    assert "unsupported dtype int32" in df.loc["c", "status_reason"]
    assert "dtype F4 is not supported" in df.loc["e", "status_reason"]
    assert str(path) in df.loc["e", "status_reason"]


_F32 = {"dtype": "F32", "shape": [20, 16]}


@pytest.mark.parametrize(
    ("entries", "data_bytes", "match"),
    [
        ({"a.weight": {**_F32, "data_offsets": [0, 100]}}, 100,
         (r"tensor 'a.weight': data_offsets \[0, 100\] hold 100 bytes, shape \[20, 16\] of "
          "F32 needs 1,280")),
        ({"a.weight": {**_F32, "dtype": "X9", "data_offsets": [0, 1280]}}, 1280,
         "tensor 'a.weight': unknown dtype 'X9'"),
        ({"a.weight": {**_F32, "shape": [20, -16], "data_offsets": [0, 1280]}}, 1280,
         "invalid shape"),
        ({"a.weight": {**_F32, "data_offsets": [1280, 0]}}, 1280, "invalid data_offsets"),
        ({"a.weight": {**_F32, "data_offsets": [0, 1280]},
          "b.weight": {**_F32, "data_offsets": [1290, 2570]}}, 2570,
         (r"'b.weight' at data bytes \[1,290, 2,570\) leaves a gap after tensor 'a.weight', "
          "which ends at 1,280")),
        ({"a.weight": {**_F32, "data_offsets": [0, 1280]},
          "b.weight": {**_F32, "data_offsets": [640, 1920]}}, 1920, "overlaps tensor 'a.weight'"),
        ({"a.weight": {**_F32, "data_offsets": [8, 1288]}}, 1288,
         (r"'a.weight' at data bytes \[8, 1,288\) leaves a gap after tensor 'z.weight', "
          "which ends at 0")),
        ({"a.weight": {**_F32, "data_offsets": [0, 1280]}}, 1281,
         "trailing bytes: the header declares 1,280 data bytes, the file holds 1,281"),
        ({"a.weight": {**_F32, "data_offsets": [0, 1280]}}, 1000,
         "truncated: the header declares 1,280 data bytes, the file holds 1,000"),
        ({"a.weight": [0, 1280]}, 1280, "the entry is not an object"),
    ],
)  # fmt: skip
def test_a_damaged_header_fails_the_whole_file(tmp_path, entries, data_bytes, match):
    """Any entry that does not fit the file makes the file unreadable: one error naming it,
    raised before any layer is analyzed (the good tensors are not analyzed on their own)."""
    path = tmp_path / "bad.safetensors"
    _write_raw(path, {"z.weight": {**_F32, "shape": [0], "data_offsets": [0, 0]}, **entries},
               bytes(data_bytes))  # fmt: skip
    with pytest.raises(TensorReadError, match=match) as info:
        hts_fast.analyze(path)
    assert str(info.value).startswith(f"{path}: ")


def test_every_truncation_fails_the_whole_file(tmp_path):
    """Cuts in the length field, in the header, inside the first tensor, at every tensor
    boundary and one byte short of the end: each is one error naming the file, with the
    numbers (the declared data bytes and those the file holds)."""
    state = _state(5)
    path = tmp_path / "model.safetensors"
    safetensors_numpy.save_file(state, str(path))
    raw = path.read_bytes()
    header_len = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8 : 8 + header_len])
    data_start, data_bytes = 8 + header_len, len(raw) - 8 - header_len
    ends = sorted(v["data_offsets"][1] for k, v in header.items() if k != "__metadata__")
    assert ends[-1] == data_bytes
    assert len(ends) == len(state)
    first_tensor = data_start + min(e for e in ends if e > 0) // 2
    cuts = {"in the length field": 5, "in the header": 8 + header_len // 2,
            "inside the first tensor": first_tensor, "one byte short": len(raw) - 1}  # fmt: skip
    cuts.update({f"at the boundary after {e}": data_start + e for e in ends[:-1]})
    for what, cut in cuts.items():
        path.write_bytes(raw[:cut])
        with pytest.raises(TensorReadError) as info:
            hts_fast.analyze(path, min_evals=0)
        message = str(info.value)
        assert message.startswith(f"{path}: truncated: "), (what, message)
        if cut >= data_start:
            assert message == (f"{path}: truncated: the header declares {data_bytes:,} data "
                               f"bytes, the file holds {cut - data_start:,}"), what  # fmt: skip
    path.write_bytes(raw)
    assert (hts_fast.analyze(path, min_evals=0)["status"] == "success").all()


def test_a_header_promising_terabytes_is_refused_without_allocating(tmp_path):
    """A 10^6 x 10^6 float32 tensor (4 TB) declared in a 100-byte file: refused from the
    header alone; Python's allocations while opening stay tiny (tracemalloc) and the process
    does not grow (peak RSS)."""
    import resource
    import tracemalloc

    header = {"w.weight": {"dtype": "F32", "shape": [10**6, 10**6],
                           "data_offsets": [0, 4 * 10**12]}}  # fmt: skip
    path = tmp_path / "huge.safetensors"
    _write_raw(path, header, bytes(64))
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    tracemalloc.start()
    try:
        with pytest.raises(TensorReadError) as info:
            hts_fast.analyze(path)
        _, traced_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert str(info.value) == (f"{path}: truncated: the header declares 4,000,000,000,000 data "
                               "bytes, the file holds 64")  # fmt: skip
    assert traced_peak < 16 << 20, f"{traced_peak} bytes allocated while refusing the file"
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before
    assert grown_kib < 64 << 10, f"peak RSS grew by {grown_kib} KiB"


def test_duplicate_names_fail_the_whole_file(tmp_path):
    block = np.ones((10, 10), np.float32).tobytes()
    entry = '{"dtype": "F32", "shape": [10, 10], "data_offsets": [0, 400]}'
    blob = ('{"x.weight": ' + entry + ', "x.weight": ' + entry + "}").encode()
    path = tmp_path / "dup.safetensors"
    path.write_bytes(struct.pack("<Q", len(blob)) + blob + block)
    with pytest.raises(TensorReadError, match=f"{path}: .*'x.weight' appears more than once"):
        hts_fast.analyze(path)


def test_npz_and_npy_damage_fails_the_whole_file(tmp_path):
    """A flipped data byte (CRC), a member that is not .npy, a .npy cut short: one error
    naming the file, raised on opening."""
    state = {k: v for k, v in _state(6).items() if v.ndim == 2}
    path = tmp_path / "w.npz"
    np.savez(path, **state)
    raw = bytearray(path.read_bytes())
    raw[raw.find(state["a.weight"].tobytes()) + 7] ^= 0x01
    path.write_bytes(bytes(raw))
    with pytest.raises(
        TensorReadError, match=r"member a\.weight\.npy: damaged \(Bad CRC-32"
    ) as info:
        hts_fast.analyze(path)
    assert str(info.value).startswith(f"{path}: ")
    import zipfile

    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("notes.txt", "x")
    with pytest.raises(TensorReadError, match=r"'notes\.txt' is not a \.npy array"):
        hts_fast.analyze(path)
    npy = tmp_path / "w.npy"
    np.save(npy, state["a.weight"])
    whole = npy.read_bytes()
    npy.write_bytes(whole[:-1])
    with pytest.raises(TensorReadError) as info:
        hts_fast.analyze(npy)
    assert str(info.value).startswith(f"{npy}: truncated: the .npy header declares shape (60, 40)")
    assert "9,600 data bytes; the file holds 9,599" in str(info.value)


def test_a_tensor_in_two_shards_fails_the_folder(tmp_path):
    state = _state(7)
    safetensors_numpy.save_file({"a.weight": state["a.weight"]},
                                str(tmp_path / "model-00001-of-00002.safetensors"))  # fmt: skip
    safetensors_numpy.save_file({"a.weight": state["a.weight"], "c.weight": state["c.weight"]},
                                str(tmp_path / "model-00002-of-00002.safetensors"))  # fmt: skip
    with pytest.raises(TensorReadError, match=r"the tensor 'a\.weight' sits in two shards, "
                       r"model-00001-of-00002\.safetensors and model-00002-of-00002"):  # fmt: skip
        hts_fast.analyze(tmp_path)
    index = {"weight_map": {"a.weight": "model-00001-of-00002.safetensors",
                            "c.weight": "model-00002-of-00002.safetensors"}}  # fmt: skip
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(TensorReadError, match="sits in two shards"):
        hts_fast.analyze(tmp_path)
    text = '{"weight_map": {"a.weight": "x.safetensors", "a.weight": "y.safetensors"}}'
    (tmp_path / "model.safetensors.index.json").write_text(text)
    with pytest.raises(TensorReadError, match=r"lists 'a\.weight' more than once"):
        hts_fast.analyze(tmp_path)


def test_headers_and_indexes_of_the_wrong_type_name_the_file(tmp_path):
    """A safetensors header holding an integer too long to parse, and an index mapping a
    tensor to something other than a file name: one TensorReadError naming the file."""
    import json
    import struct

    from hts_fast.loaders import checkpoint_tensors

    header = ('{"a.weight": {"dtype": "F32", "shape": [' + "9" * 5000
              + '], "data_offsets": [0, 4]}}').encode()  # fmt: skip
    path = tmp_path / "huge.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 4)
    with pytest.raises(TensorReadError, match=r"huge\.safetensors: corrupted header"):
        checkpoint_tensors(path)
    folder = tmp_path / "sharded"
    folder.mkdir()
    from safetensors.numpy import save_file

    save_file({"a.weight": np.ones((4, 4), np.float32)}, folder / "model-1.safetensors")
    for value in (["model-1.safetensors"], None, {"file": "model-1.safetensors"}):
        index = {"weight_map": {"a.weight": "model-1.safetensors", "b.weight": value}}
        (folder / "model.safetensors.index.json").write_text(json.dumps(index))
        with pytest.raises(TensorReadError, match=r"index\.json: .*'b\.weight' maps to"):
            checkpoint_tensors(folder)
