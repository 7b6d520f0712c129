"""torch .bin/.pt checkpoints read without torch and without running pickle code."""

from __future__ import annotations

import pickle
import zipfile

import hts_fast
import numpy as np
import pytest
from hts_fast.loaders import TensorReadError
from hts_fast.loaders.torch_zip import read_torch_zip

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
