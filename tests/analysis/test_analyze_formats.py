"""analyze() on every checkpoint format: the same table as the same weights given in memory."""

from __future__ import annotations

from pathlib import Path

import hts_fast
import numpy as np
import pandas as pd
import pytest
from hts_fast.loaders import TensorReadError, checkpoint_tensors

from ..conftest import _require

COMPAT = "weightwatcher-0.7.7"
#: columns whose values come from the spectrum (ids and names differ between inputs)
NUMERIC = ["M", "N", "rf", "num_evals", "alpha", "xmin", "D", "lambda_max", "norm",
           "log_norm", "entropy", "sv_max", "sv_min", "matrix_rank", "stable_rank"]  # fmt: skip


def assert_same_numbers(ours: pd.DataFrame, expected: pd.DataFrame, rtol: float = 1e-12) -> None:
    assert len(ours) == len(expected) > 0
    for col in NUMERIC:
        np.testing.assert_allclose(ours[col].to_numpy(float), expected[col].to_numpy(float),
                                   rtol=rtol, err_msg=col)  # fmt: skip


def _onnx_model(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    onnx = _require("onnx")
    from onnx import helper, numpy_helper

    inits = [numpy_helper.from_array(a, name=n) for n, a in arrays.items()]
    onnx.save(helper.make_model(helper.make_graph([], "g", [], [], initializer=inits)), path)
    return path


def _arrays(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    shapes = {"conv1.weight": (32, 16, 3, 3), "conv1.bias": (32,), "fc.weight": (40, 288),
              "fc.bias": (40,), "onnx::MatMul_7": (288, 50), "small": (4, 4),
              "conv2.weight": (16, 48, 2, 2), "c1d.weight": (20, 12, 5)}  # fmt: skip
    return {n: rng.standard_normal(s).astype(np.float32) for n, s in shapes.items()}


@pytest.mark.weightwatcher
def test_onnx_compat_matches_weightwatcher(tmp_path: Path) -> None:
    from ..weightwatcher_reference import assert_same_table, run_weightwatcher

    onnx = _require("onnx")
    path = _onnx_model(tmp_path / "m.onnx", _arrays())
    ours = hts_fast.analyze(str(path), compat=COMPAT)
    assert_same_table(ours, run_weightwatcher(onnx.load(str(path))))
    # WeightWatcher's ONNX rule: every initializer takes an id, names as stored
    assert list(ours["layer_id"]) == [0, 2, 4, 6]
    assert list(ours["name"]) == ["conv1.weight", "fc.weight", "onnx::MatMul_7", "conv2.weight"]


def test_onnx_default_equals_in_memory_arrays(tmp_path: Path) -> None:
    arrays = _arrays(1)
    path = _onnx_model(tmp_path / "m.onnx", arrays)
    ours = hts_fast.analyze(str(path))
    assert list(ours["name"]) == ["conv1.weight", "fc.weight", "onnx::MatMul_7",
                                  "conv2.weight", "c1d.weight"]  # fmt: skip
    assert list(ours["layer_type"]) == ["conv2d", "dense", "dense", "conv2d", "conv1d"]
    in_memory = hts_fast.analyze([(n, a) for n, a in arrays.items() if a.ndim > 1
                                  and n != "small"])  # fmt: skip
    assert_same_numbers(ours, in_memory)


def test_npy_file_is_one_memory_mapped_layer(tmp_path: Path) -> None:
    w = np.random.default_rng(2).standard_normal((30, 20))
    np.save(tmp_path / "fc.npy", w)
    np.save(tmp_path / "fortran.weight.npy", np.asfortranarray(w))
    expected = hts_fast.analyze([("fc", w)])
    for file, name in (("fc.npy", "fc"), ("fortran.weight.npy", "fortran")):
        table = hts_fast.analyze(str(tmp_path / file))
        assert list(table["name"]) == [name]
        assert_same_numbers(table, expected)
    (tmp_path / "bad.npy").write_bytes(b"\x93NUMPY\x01\x00garbage")
    with pytest.raises(TensorReadError, match=r"bad\.npy: not a readable"):
        hts_fast.analyze(str(tmp_path / "bad.npy"))


def test_default_typing_of_state_dicts() -> None:
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    conv1d = torch.nn.Conv1d(12, 20, 5)
    embedding = torch.nn.Embedding(100, 16)
    state = {"c.weight": conv1d.weight, "tok_embeddings.weight": embedding.weight}
    table = hts_fast.analyze(state)
    assert list(table["layer_type"]) == ["conv1d", "embedding"]
    module = hts_fast.analyze(torch.nn.ModuleDict({"c": conv1d, "e": embedding}))
    assert_same_numbers(table, module)
    # WeightWatcher's rule in compat mode: 3-D weights are unknown, embeddings are dense
    compat = hts_fast.analyze(state, compat=COMPAT)
    assert list(compat["layer_type"]) == ["dense"]
    skipped = compat.attrs["skipped"]
    assert skipped.loc[skipped["name"] == "c", "skip_reason"].item() == "layer type unknown"


def test_default_reads_keras_layout_conv_kernels() -> None:
    rng = np.random.default_rng(3)
    oihw = rng.standard_normal((24, 16, 3, 3))
    hwio = np.transpose(oihw, (2, 3, 1, 0)).copy()
    torch_layout = hts_fast.analyze({"conv.weight": oihw})
    keras_layout = hts_fast.analyze({"conv.weight": hwio})
    assert_same_numbers(keras_layout, torch_layout)
    assert (keras_layout[["N", "M", "rf"]].to_numpy() == [[24, 16, 9]]).all()


def test_a_source_that_fixes_the_layout_is_not_guessed(tmp_path: Path) -> None:
    """LeNet's convolutions (out + in < kh + kw) from a torch module or a torch .bin are
    read in PyTorch layout (the Keras guess is for arrays of unknown origin): N, M, rf and
    the numbers are WeightWatcher 0.7.7's, through compat mode."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 6, 5), torch.nn.Conv2d(3, 6, 5))
    path = tmp_path / "lenet.bin"
    torch.save(model.state_dict(), path)
    compat = hts_fast.analyze(model, compat=COMPAT, min_evals=1)
    assert compat[["N", "M", "rf"]].to_numpy().tolist() == [[6, 1, 25], [6, 3, 25]]
    for source in (model, path):
        table = hts_fast.analyze(source, min_evals=1)
        assert table[["N", "M", "rf"]].to_numpy().tolist() == [[6, 1, 25], [6, 3, 25]]
        np.testing.assert_allclose(table["alpha"], compat["alpha"], rtol=1e-9)
    # as bare arrays the origin is unknown, and the documented guess reads these kernels
    # (kh + kw > out + in) in Keras layout
    arrays = {f"{k}.weight": model[k].weight.detach().numpy() for k in range(2)}
    guessed = hts_fast.analyze(arrays, min_evals=1)
    assert guessed[["N", "M", "rf"]].to_numpy().tolist() == [[5, 5, 6], [5, 5, 18]]


def test_gguf_equals_its_dequantized_weights(tmp_path: Path) -> None:
    from ..loaders.test_loaders_gguf import gguf_model_bytes

    path = tmp_path / "m.gguf"
    path.write_bytes(gguf_model_bytes())
    tensors = dict(checkpoint_tensors(path)[0])
    arrays = {name: np.asarray(t.load(), dtype=np.float64) for name, t in tensors.items()}
    ours = hts_fast.analyze(str(path), min_evals=0)
    expected = hts_fast.analyze(arrays, min_evals=0)
    assert list(ours["name"]) == list(expected["name"])
    assert {t.dtype for t in tensors.values()} >= {"q8_0", "q4_0", "bfloat16", "float16"}
    assert_same_numbers(ours, expected)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_keras_file_equals_its_weights_in_pytorch_layout(tmp_path: Path) -> None:
    import os

    os.environ.setdefault("KERAS_BACKEND", "torch")
    keras = _require("keras")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((12, 12, 3)),
                              keras.layers.Conv2D(16, 3, name="conv"),
                              keras.layers.Flatten(),
                              keras.layers.Dense(40, name="fc")])  # fmt: skip
    path = tmp_path / "m.keras"
    model.save(path)
    conv = np.asarray(model.get_layer("conv").get_weights()[0])  # (kh, kw, in, out)
    fc = np.asarray(model.get_layer("fc").get_weights()[0])  # (in, out)
    expected = hts_fast.analyze({"conv.weight": np.transpose(conv, (3, 2, 0, 1)),
                                 "fc.weight": fc.T})  # fmt: skip
    ours = hts_fast.analyze(str(path))
    assert list(ours["name"]) == ["conv", "fc"]
    assert list(ours["layer_type"]) == ["conv2d", "dense"]
    assert_same_numbers(ours, expected)
