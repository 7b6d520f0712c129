"""torch .bin/.pt checkpoints read without torch and without running pickle code."""

from __future__ import annotations

import importlib.util
import pickle
import zipfile

import hts_fast
import numpy as np
import pytest
from hts_fast.loaders import TensorReadError
from hts_fast.loaders.torch_zip import read_torch_zip

from ..conftest import REQUIRE_REFERENCES
from ..weightwatcher_reference import assert_same_table, run_weightwatcher

torch = pytest.importorskip("torch")


def _state():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(20, 30), torch.nn.Conv2d(4, 16, 3),
                                torch.nn.Linear(30, 40))  # fmt: skip
    state = model.state_dict()
    state["transposed.weight"] = torch.randn(12, 9).t()  # a non-contiguous view
    state["bf16.weight"] = torch.randn(24, 10).to(torch.bfloat16)
    state["half.weight"] = torch.randn(24, 10).half()
    state["double.weight"] = torch.randn(24, 10, dtype=torch.float64)
    state["tied.weight"] = state["0.weight"]
    state["step"] = torch.tensor(7)
    return state


def test_round_trip_against_torch_save(tmp_path):
    state = _state()
    path = tmp_path / "pytorch_model.bin"
    torch.save(state, path)
    loaded = read_torch_zip(path)
    assert list(loaded) == list(state)
    for name, tensor in state.items():
        expected = tensor.float().numpy() if tensor.dtype == torch.bfloat16 else tensor.numpy()
        np.testing.assert_array_equal(loaded[name], expected)
        assert loaded[name].dtype == expected.dtype


def test_analyze_bin_equals_analyze_of_the_state_dict(tmp_path):
    state = _state()
    path = tmp_path / "model.pt"
    torch.save({"state_dict": state}, path)
    from_file = hts_fast.analyze(path)
    from_dict = hts_fast.analyze(state)
    assert list(from_file["layer_id"]) == list(from_dict["layer_id"] - 1)
    for col in ("name", "alpha", "D", "lambda_max", "norm", "status"):
        assert list(from_file[col]) == list(from_dict[col]), col


@pytest.mark.weightwatcher
def test_folder_of_bin_shards_matches_weightwatcher(tmp_path):
    state = {k: v for k, v in _state().items() if k.endswith(".weight") and v.ndim >= 2}
    names = list(state)
    torch.save({k: state[k] for k in names[:3]}, tmp_path / "pytorch_model-00001-of-00002.bin")
    torch.save({k: state[k] for k in names[3:]}, tmp_path / "pytorch_model-00002-of-00002.bin")
    ours = hts_fast.analyze(tmp_path, compat="weightwatcher-0.7.7")
    assert_same_table(ours, run_weightwatcher(str(tmp_path)))


class _Evil:
    """Unpickling this runs a shell command (if anything ever unpickled it)."""

    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.target}",))


@pytest.mark.parametrize("payload", ["os_system", "builtins_eval", "model_class"])
def test_malicious_pickles_are_refused_and_never_run(tmp_path, payload):
    target = tmp_path / "pwned"
    path = tmp_path / "evil.bin"
    torch.save({"w": torch.ones(3, 3)}, path)
    if payload == "os_system":
        obj = {"w": _Evil(str(target))}
    elif payload == "builtins_eval":
        obj = {"w": _EvalPayload(f"open({str(target)!r}, 'w').write('x')")}
    else:
        obj = {"model": torch.nn.Linear(2, 2)}
    data = pickle.dumps(obj, protocol=2)
    with zipfile.ZipFile(path, "a") as archive:  # replace the pickle, keep the rest
        name = next(n for n in archive.namelist() if n.endswith("data.pkl"))
    _rewrite_entry(path, name, data)
    with pytest.raises(TensorReadError, match="refused to load"):
        read_torch_zip(path)
    df_error = None
    try:
        hts_fast.analyze(path)
    except TensorReadError as exc:
        df_error = exc
    assert df_error is not None
    assert not target.exists()


class _EvalPayload:
    def __init__(self, code: str) -> None:
        self.code = code

    def __reduce__(self):
        return (eval, (self.code,))


def _rewrite_entry(path, name: str, data: bytes) -> None:
    with zipfile.ZipFile(path) as archive:
        entries = {n: archive.read(n) for n in archive.namelist()}
    entries[name] = data
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        for n, content in entries.items():
            archive.writestr(n, content)


def test_corrupt_and_legacy_files(tmp_path):
    path = tmp_path / "broken.bin"
    torch.save({"w": torch.ones(30, 30)}, path)
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(TensorReadError, match=r"broken\.bin"):
        hts_fast.analyze(path)
    legacy = tmp_path / "legacy.pt"
    torch.save({"w": torch.ones(3, 3)}, legacy, _use_new_zipfile_serialization=False)
    with pytest.raises(TensorReadError, match="legacy"):
        read_torch_zip(legacy)


def test_tied_weights_of_a_saved_module_are_analyzed_once(tmp_path):
    """Module.state_dict() hands each key its own tensor object, however tied: the file
    refers to one storage twice, and the tied layer is skipped as sharing its weight, as
    when the state dict is analyzed in memory."""
    torch.manual_seed(1)
    model = torch.nn.ModuleDict({"embed": torch.nn.Embedding(120, 48),
                                 "fc": torch.nn.Linear(48, 48),
                                 "lm_head": torch.nn.Linear(48, 120, bias=False)})  # fmt: skip
    model["lm_head"].weight = model["embed"].weight
    state = model.state_dict()
    assert state["embed.weight"] is not state["lm_head.weight"]
    path = tmp_path / "tied.bin"
    torch.save(state, path)
    from_file = hts_fast.describe(path)
    from_dict = hts_fast.describe(state)
    # the same skip as in memory (a file's layer ids start at 0, a state dict's at 1)
    assert from_file["skip_reason"].tolist() == ["", "", "shares its weight with layer 0 (embed)"]
    assert from_dict["skip_reason"].tolist() == ["", "", "shares its weight with layer 1 (embed)"]
    table = hts_fast.analyze(path)
    assert table["name"].tolist() == ["embed", "fc"]


def test_views_of_a_bf16_storage_are_read_only_when_loaded(tmp_path):
    """Opening a bf16 checkpoint reads no tensor data: eight slices of one 16 MB storage
    allocate nothing while the file is opened (tracemalloc), and each slice widens to the
    float32 torch gives."""
    import tracemalloc

    from hts_fast.loaders import checkpoint_tensors

    torch.manual_seed(2)
    whole = torch.randn(8 * 256, 4096).to(torch.bfloat16)
    state = {f"layers.{k}.weight": whole[k * 256 : (k + 1) * 256] for k in range(8)}
    path = tmp_path / "bf16_views.bin"
    torch.save(state, path)
    tracemalloc.start()
    try:
        (tensors, _) = checkpoint_tensors(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2**20  # the storage is 16 MB of bf16 (32 MB as float32)
    assert [t.dtype for _, t in tensors] == ["bfloat16"] * 8
    for name, tensor in tensors:
        np.testing.assert_array_equal(tensor.load(), state[name].float().numpy())


def test_float8_complex_and_integer_tensors(tmp_path):
    """torch.save stores float8 and uint16 through _rebuild_tensor_v3 on bytes storages:
    float8 widens exactly (as torch's own .float()); a dtype hts_fast does not read
    (complex64) or an integer weight fails its own layer only, with the reason."""
    torch.manual_seed(3)
    w = torch.randn(64, 48)
    for dtype in (torch.float8_e4m3fn, torch.float8_e5m2, torch.complex64, torch.uint16):
        path = tmp_path / f"{str(dtype).split('.')[1]}.bin"
        torch.save({"a.weight": w.to(dtype), "b.weight": w}, path)
        table = hts_fast.analyze(path)
        assert table["status"].iloc[1] == "success"
        if dtype in (torch.float8_e4m3fn, torch.float8_e5m2):
            if importlib.util.find_spec("ml_dtypes") is None and not REQUIRE_REFERENCES:
                assert "needs the ml_dtypes package" in table["status_reason"].iloc[0]
                continue
            expected = hts_fast.analyze({"a.weight": w.to(dtype).float().numpy()})
            assert table["alpha"].iloc[0] == expected["alpha"].iloc[0]
            assert table["status"].iloc[0] == "success"
        else:
            assert table["status"].iloc[0] == "failed"
            reason = table["status_reason"].iloc[0]
            assert ("complex64 is not supported" in reason if dtype == torch.complex64
                    else "unsupported dtype uint16" in reason)  # fmt: skip


def test_a_big_endian_file_reads_as_its_little_endian_twin(tmp_path):
    """torch records the storages' byte order in the archive ("byteorder"); the same
    checkpoint rewritten big-endian (the record and every storage's elements swapped) reads
    back to the same values, bf16 and float16 included; a record that is neither is refused."""
    torch.manual_seed(4)
    state = {"a.weight": torch.randn(30, 20), "b.weight": torch.randn(30, 20).to(torch.bfloat16),
             "c.weight": torch.randn(30, 20).half()}  # fmt: skip
    little = tmp_path / "little.bin"
    torch.save(state, little)
    itemsize = {"0": 4, "1": 2, "2": 2}  # storages are keyed in the order they are pickled
    with zipfile.ZipFile(little) as source:
        entries = [(info, source.read(info)) for info in source.infolist()]

    def rewrite(path, byteorder):
        with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as out:
            for info, data in entries:
                key = info.filename.rsplit("/", 1)[-1]
                if info.filename.endswith("/byteorder"):
                    data = byteorder
                elif "/data/" in info.filename:
                    data = np.frombuffer(data, dtype=f"<u{itemsize[key]}").byteswap().tobytes()
                out.writestr(info.filename, data)

    big = tmp_path / "big.bin"
    rewrite(big, b"big")
    expected = read_torch_zip(little)
    got = read_torch_zip(big)
    for name in state:
        assert got[name].dtype.isnative
        np.testing.assert_array_equal(got[name], expected[name])
    np.testing.assert_array_equal(hts_fast.analyze(big)["alpha"], hts_fast.analyze(little)["alpha"])
    odd = tmp_path / "odd.bin"
    rewrite(odd, b"middle")
    with pytest.raises(TensorReadError, match="byteorder record is b'middle'"):
        read_torch_zip(odd)
