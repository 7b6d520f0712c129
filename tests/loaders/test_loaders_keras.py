"""Keras .keras archives and .h5 files read without Keras, weights in PyTorch layout."""

from __future__ import annotations

import json
import os
import sys
import zipfile

import numpy as np
import pytest
from hts_fast.loaders import TensorReadError
from hts_fast.loaders.keras_files import keras_tensors

from ..conftest import _require

os.environ.setdefault("KERAS_BACKEND", "torch")
# Keras 3 with the torch backend converts variables through numpy's old __array__ protocol
pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"
)


@pytest.fixture(scope="module")
def h5py():
    return _require("h5py")


@pytest.fixture(scope="module")
def keras():
    return _require("keras")


def _randomize(model, seed: int) -> None:
    """Distinct random values in every variable (BatchNormalization's variance positive)."""
    rng = np.random.default_rng(seed)
    for w in model.weights:
        value = rng.standard_normal(tuple(w.shape)).astype(np.float32)
        w.assign(np.abs(value) + 0.5 if "variance" in w.path else value)


def _build(keras):
    """A Functional model with every converted layer type and two levels of nested models."""
    layers = keras.layers
    deep = keras.Sequential([layers.Dense(6, name="deep_dense")], name="deep")
    inner = keras.Sequential(
        [layers.Dense(8, name="inner_dense"), deep, layers.Dense(4, use_bias=False)],
        name="inner",
    )
    tokens = keras.Input((10,), dtype="int32")
    x = layers.Embedding(50, 16, name="embedding")(tokens)
    x = layers.Conv1D(12, 3, name="conv1d")(x)
    x = layers.LayerNormalization(name="layer_normalization")(x)
    x = layers.Reshape((8, 12, 1))(x)
    x = layers.Conv2D(5, (3, 2), name="conv2d")(x)
    x = layers.BatchNormalization(name="batch_normalization")(x)
    x = layers.Conv2DTranspose(3, (2, 3), strides=2, name="conv2d_transpose")(x)
    x = layers.DepthwiseConv2D(2, name="depthwise_conv2d")(x)
    x = layers.Flatten()(x)
    x = layers.Dense(10, name="head")(x)  # stored under the key "dense", not "head"
    x = layers.Dense(10)(x)  # auto-named: stored under the key "dense_1"
    model = keras.Model(tokens, inner(x))
    _randomize(model, 0)
    return model


@pytest.fixture(scope="module")
def saved(keras, tmp_path_factory):
    """The model and its files: .keras, .weights.h5, and Keras 3's legacy whole-model .h5."""
    model = _build(keras)
    folder = tmp_path_factory.mktemp("keras")
    paths = {kind: folder / f"m{kind}" for kind in (".keras", ".weights.h5", ".h5")}
    model.save(paths[".keras"])
    model.save_weights(paths[".weights.h5"])
    model.save(paths[".h5"])  # Keras 3 still writes the Keras 2 HDF5 layout
    return model, paths


def _expected(model) -> dict[str, tuple[np.ndarray, str | None]]:
    """name -> (array in PyTorch layout, layer_type), the transposes written out."""
    get = {layer.name: layer for layer in model.layers}
    inner = get["inner"]
    nested = {layer.name: layer for layer in inner.layers}
    deep = nested["deep"].layers[0]
    last = inner.layers[-1]
    emb, c1, ln = (get[n].get_weights() for n in ("embedding", "conv1d", "layer_normalization"))
    c2, bn, ct = (get[n].get_weights() for n in ("conv2d", "batch_normalization",
                                                  "conv2d_transpose"))  # fmt: skip
    dw, head = (get[n].get_weights() for n in ("depthwise_conv2d", "head"))
    auto_layer = model.layers[-2]  # auto-named ("dense" or "dense_<n>"), key "dense_1"
    auto = auto_layer.get_weights()
    return {
        "embedding.weight": (emb[0], "embedding"),
        "conv1d.weight": (np.transpose(c1[0], (2, 1, 0)), "conv1d"),
        "conv1d.bias": (c1[1], None),
        "layer_normalization.weight": (ln[0], "norm"),
        "layer_normalization.beta": (ln[1], None),
        "conv2d.weight": (np.transpose(c2[0], (3, 2, 0, 1)), "conv2d"),
        "conv2d.bias": (c2[1], None),
        "batch_normalization.weight": (bn[0], "norm"),
        "batch_normalization.beta": (bn[1], None),
        "batch_normalization.moving_mean": (bn[2], None),
        "batch_normalization.moving_variance": (bn[3], None),
        # Keras (kh, kw, out, in) -> torch ConvTranspose2d (in, out, kh, kw)
        "conv2d_transpose.weight": (np.transpose(ct[0], (3, 2, 0, 1)), "conv2d"),
        "conv2d_transpose.bias": (ct[1], None),
        "depthwise_conv2d.kernel": (dw[0], None),  # no torch layout: stored as is, no .weight
        "depthwise_conv2d.bias": (dw[1], None),
        "head.weight": (head[0].T, "dense"),
        "head.bias": (head[1], None),
        f"{auto_layer.name}.weight": (auto[0].T, "dense"),
        f"{auto_layer.name}.bias": (auto[1], None),
        "inner.inner_dense.weight": (nested["inner_dense"].get_weights()[0].T, "dense"),
        "inner.inner_dense.bias": (nested["inner_dense"].get_weights()[1], None),
        "inner.deep.deep_dense.weight": (deep.get_weights()[0].T, "dense"),
        "inner.deep.deep_dense.bias": (deep.get_weights()[1], None),
        f"inner.{last.name}.weight": (last.get_weights()[0].T, "dense"),
    }


def _check(tensors, expected) -> None:
    assert [name for name, _ in tensors] == list(expected)
    for name, tensor in tensors:
        array, layer_type = expected[name]
        assert tensor.name == name
        assert tensor.shape == array.shape, name
        assert tensor.layer_type == layer_type, name
        loaded = tensor.load()
        assert loaded.dtype == np.float32
        np.testing.assert_array_equal(loaded, array, err_msg=name)


@pytest.mark.parametrize("kind", [".keras", ".h5"])
def test_whole_model_files_give_pytorch_layout(saved, kind):
    model, paths = saved
    _check(keras_tensors(paths[kind]), _expected(model))


def test_weights_only_file_converts_by_rank(saved):
    """No config: the first variable of each layer is .weight, converted by its rank alone
    (an embedding is transposed, a depthwise kernel permuted like a Conv2D one)."""
    model, paths = saved
    expected = _expected(model)
    tensors = dict(keras_tensors(paths[".weights.h5"]))
    assert all(t.layer_type is None for t in tensors.values())
    same = [n for n in expected if n.endswith(".weight") and n != "embedding.weight"]
    for name in same:
        np.testing.assert_array_equal(tensors[name].load(), expected[name][0], err_msg=name)
    emb = model.get_layer("embedding").get_weights()[0]
    np.testing.assert_array_equal(tensors["embedding.weight"].load(), emb.T)
    depthwise = model.get_layer("depthwise_conv2d").get_weights()[0]
    np.testing.assert_array_equal(tensors["depthwise_conv2d.weight"].load(),
                                  np.transpose(depthwise, (3, 2, 0, 1)))  # fmt: skip
    np.testing.assert_array_equal(tensors["head.vars.1"].load(), expected["head.bias"][0])
    assert tensors["batch_normalization.vars.3"].shape == (5,)
    assert len(tensors) == len(expected)


def test_compressed_archive_member(saved, tmp_path):
    model, paths = saved
    repacked = tmp_path / "deflated.keras"
    with zipfile.ZipFile(paths[".keras"]) as src, zipfile.ZipFile(repacked, "w") as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info), compress_type=zipfile.ZIP_DEFLATED)
    with zipfile.ZipFile(repacked) as archive:
        assert archive.getinfo("model.weights.h5").compress_type == zipfile.ZIP_DEFLATED
    _check(keras_tensors(repacked), _expected(model))


def _numpy(keras, value) -> np.ndarray:
    return np.asarray(keras.ops.convert_to_numpy(value))


def _torch_module(torch, module, tensors, prefix):
    """``module`` with the weights read for ``prefix``, through load_state_dict (names and
    shapes must be PyTorch's own)."""
    state = {key: torch.from_numpy(np.ascontiguousarray(tensors[f"{prefix}.{key}"].load()))
             for key in ("weight", "bias")}  # fmt: skip
    module.load_state_dict(state)
    return module


def _rezip(source, target, h5py=None, edit=None) -> None:
    """Copy a .keras archive, optionally editing its weights member with h5py first."""
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(target, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if edit is not None and info.filename == "model.weights.h5":
                member = target.with_suffix(".member.h5")
                member.write_bytes(data)
                with h5py.File(member, "a") as f:
                    edit(f)
                data = member.read_bytes()
            dst.writestr(info.filename, data)


def test_older_files_without_layer_names_match_by_class_keys(h5py, saved, tmp_path):
    """Without the ``name`` attributes (older Keras 3), layers are matched to the config
    by Keras's own keys: snake-case class names numbered per class, in model order."""
    model, paths = saved

    def strip(f):
        f.visititems(lambda _, obj: obj.attrs.pop("name", None))

    _rezip(paths[".keras"], tmp_path / "old.keras", h5py, strip)
    _check(keras_tensors(tmp_path / "old.keras"), _expected(model))


@pytest.mark.filterwarnings("ignore:Layer InputLayer does not have a `quantize`:UserWarning")
def test_quantized_layers_stay_in_stored_layout(keras, tmp_path):
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, name="q")])
    model.quantize("int8")
    model.save(tmp_path / "int8.keras")
    tensors = keras_tensors(tmp_path / "int8.keras")
    assert [(n, t.shape, t.dtype, t.layer_type) for n, t in tensors] == [
        ("q.vars.0", (4, 8), "int8", None), ("q.vars.1", (8,), "float32", None),
        ("q.vars.2", (8,), "float32", None),
    ]  # fmt: skip
    np.testing.assert_array_equal(tensors[0][1].load(), _numpy(keras, model.layers[0].kernel))


def test_layouts_compute_what_torch_modules_compute(keras, tmp_path):
    """Loaded into torch modules, the converted kernels give the Keras layers' outputs."""
    torch = _require("torch")
    layers = keras.layers
    conv = layers.Conv2D(4, (3, 2), name="conv")
    deconv = layers.Conv2DTranspose(2, (2, 3), strides=2, name="deconv")
    dense = layers.Dense(5, name="fc")
    conv1 = layers.Conv1D(4, 3, name="conv1")
    image, sequence = keras.Input((9, 7, 3)), keras.Input((11, 6))
    model = keras.Model([image, sequence], [dense(deconv(conv(image))), conv1(sequence)])
    _randomize(model, 2)
    model.save(tmp_path / "conv.keras")
    tensors = dict(keras_tensors(tmp_path / "conv.keras"))
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 9, 7, 3)).astype(np.float32)
    s = rng.standard_normal((2, 11, 6)).astype(np.float32)
    y_conv = _numpy(keras, conv(x))
    y_deconv = _numpy(keras, deconv(y_conv))
    y_dense = _numpy(keras, dense(y_deconv))
    y_conv1 = _numpy(keras, conv1(s))

    def nchw(a):  # Keras is channels-last, torch channels-first
        return torch.from_numpy(a).permute(0, 3, 1, 2)

    def nhwc(t):
        return t.permute(0, 2, 3, 1).detach().numpy()

    nn = torch.nn
    t_conv = _torch_module(torch, nn.Conv2d(3, 4, (3, 2)), tensors, "conv")
    t_deconv = _torch_module(torch, nn.ConvTranspose2d(4, 2, (2, 3), stride=2), tensors, "deconv")
    t_dense = _torch_module(torch, nn.Linear(2, 5), tensors, "fc")
    t_conv1 = _torch_module(torch, nn.Conv1d(6, 4, 3), tensors, "conv1")
    with torch.no_grad():
        np.testing.assert_allclose(nhwc(t_conv(nchw(x))), y_conv, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(nhwc(t_deconv(nchw(y_conv))), y_deconv, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(t_dense(torch.from_numpy(y_deconv)).numpy(), y_dense,
                                   rtol=1e-5, atol=1e-5)  # fmt: skip
        got = t_conv1(torch.from_numpy(s).permute(0, 2, 1)).permute(0, 2, 1).numpy()
        np.testing.assert_allclose(got, y_conv1, rtol=1e-5, atol=1e-5)
    assert [tensors[n].layer_type for n in ("conv.weight", "deconv.weight", "fc.weight",
                                            "conv1.weight")] == ["conv2d", "conv2d", "dense",
                                                                 "conv1d"]  # fmt: skip


def test_attention_bfloat16_and_layers_without_torch_layout(keras, tmp_path):
    """MultiHeadAttention projections become Linear weights; a bfloat16 kernel is widened
    exactly; LSTM and separable convolutions stay in stored layout; no optimizer state."""
    torch = _require("torch")
    layers = keras.layers
    mha = layers.MultiHeadAttention(2, 4, name="mha")
    lstm = layers.LSTM(5, return_sequences=True, name="lstm")
    sep = layers.SeparableConv1D(4, 2, name="sep")
    low = layers.Dense(3, use_bias=False, dtype="bfloat16", name="low")
    inputs = keras.Input((6, 8))
    model = keras.Model(inputs, low(sep(lstm(mha(inputs, inputs)))))
    _randomize(model, 4)
    model.compile(optimizer="adam", loss="mse")
    rng = np.random.default_rng(5)
    model.fit(rng.random((4, 6, 8)), rng.random((4, 5, 3)), epochs=1, verbose=0)
    model.save(tmp_path / "attention.keras")
    tensors = dict(keras_tensors(tmp_path / "attention.keras"))
    assert list(tensors) == [
        *(f"mha.{p}.{v}" for p in ("query", "key", "value", "attention_output")
          for v in ("weight", "bias")),
        "lstm.lstm_cell.vars.0", "lstm.lstm_cell.vars.1", "lstm.lstm_cell.vars.2",
        "sep.depthwise_kernel", "sep.pointwise_kernel", "sep.bias", "low.weight",
    ]  # fmt: skip
    q, qb, k, kb, v, vb, o, _ = mha.get_weights()
    for name, kernel, bias in (("query", q, qb), ("key", k, kb), ("value", v, vb)):
        weight = tensors[f"mha.{name}.weight"]
        assert weight.layer_type == "dense"
        np.testing.assert_array_equal(weight.load(), kernel.reshape(8, 8).T)  # (in, H, D)
        np.testing.assert_array_equal(tensors[f"mha.{name}.bias"].load(), bias.reshape(8))
    np.testing.assert_array_equal(tensors["mha.attention_output.weight"].load(),
                                  o.reshape(8, 8).T)  # fmt: skip
    x = rng.standard_normal((2, 6, 8)).astype(np.float32)
    heads = _numpy(keras, mha.query_dense(x))  # (batch, seq, heads, head_dim)
    linear = _torch_module(torch, torch.nn.Linear(8, 8), tensors, "mha.query")
    out = _torch_module(torch, torch.nn.Linear(8, 8), tensors, "mha.attention_output")
    with torch.no_grad():
        got = linear(torch.from_numpy(x)).reshape(2, 6, 2, 4).numpy()
        np.testing.assert_allclose(got, heads, rtol=1e-5, atol=1e-5)
        got = out(torch.from_numpy(heads.reshape(2, 6, 8))).numpy()
    np.testing.assert_allclose(got, _numpy(keras, mha.output_dense(heads)), rtol=1e-5, atol=1e-5)
    cell = lstm.cell.get_weights()
    for i in range(3):
        loaded = tensors[f"lstm.lstm_cell.vars.{i}"]
        assert loaded.layer_type is None
        np.testing.assert_array_equal(loaded.load(), cell[i])
    for name, array in zip(("depthwise_kernel", "pointwise_kernel", "bias"), sep.get_weights(),
                           strict=True):  # fmt: skip
        np.testing.assert_array_equal(tensors[f"sep.{name}"].load(), array)
    kernel = tensors["low.weight"]
    assert (kernel.dtype, kernel.shape, kernel.layer_type) == ("bfloat16", (3, 4), "dense")
    expected = _numpy(keras, keras.ops.cast(low.kernel, "float32")).T
    assert kernel.load().dtype == np.float32
    np.testing.assert_array_equal(kernel.load(), expected)


def test_custom_model_is_read_by_rank(keras, tmp_path):
    """A subclassed model: no layer list in the config; names from the recorded layer names,
    kernels converted by rank, no layer type."""

    class Custom(keras.Model):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.proj = keras.layers.Dense(3, name="proj")
            self.blocks = [keras.layers.Dense(4, name="b0"), keras.layers.Dense(5, name="b1")]

        def call(self, x):
            x = self.proj(x)
            for block in self.blocks:
                x = block(x)
            return x

    model = Custom()
    model(np.zeros((1, 2), dtype=np.float32))
    model.save(tmp_path / "custom.keras")
    tensors = keras_tensors(tmp_path / "custom.keras")
    assert [n for n, _ in tensors] == [
        "blocks.b0.weight", "blocks.b0.vars.1", "blocks.b1.weight", "blocks.b1.vars.1",
        "proj.weight", "proj.vars.1",
    ]  # fmt: skip
    loaded = dict(tensors)
    for layer in (model.proj, *model.blocks):
        prefix = "proj" if layer is model.proj else f"blocks.{layer.name}"
        assert loaded[f"{prefix}.weight"].layer_type is None
        np.testing.assert_array_equal(loaded[f"{prefix}.weight"].load(), layer.get_weights()[0].T)


# --- legacy Keras 2 / tf.keras HDF5 files, written in their documented layout -------------

_LEGACY_SHAPES = {
    "dense": {"dense/kernel:0": (20, 30), "dense/bias:0": (30,)},
    "conv": {"conv/kernel:0": (3, 2, 4, 8), "conv/bias:0": (8,)},
    "emb": {"emb/embeddings:0": (100, 16)},
    "bn": {f"bn/{v}:0": (8,) for v in ("gamma", "beta", "moving_mean", "moving_variance")},
    "block": {"block_dense/kernel:0": (30, 10), "block_dense/bias:0": (10,)},  # nested model
    "flatten": {},
}
_LEGACY_CONFIG = {
    "class_name": "Functional",
    "config": {"name": "model", "layers": [
        {"class_name": "InputLayer", "config": {"name": "input_1"}, "name": "input_1"},
        {"class_name": "Dense", "config": {"name": "dense", "units": 30}, "name": "dense"},
        {"class_name": "Conv2D", "config": {"name": "conv", "filters": 8}, "name": "conv"},
        {"class_name": "Embedding", "config": {"name": "emb"}, "name": "emb"},
        {"class_name": "BatchNormalization", "config": {"name": "bn"}, "name": "bn"},
        {"class_name": "Sequential", "name": "block", "config": {"name": "block", "layers": [
            {"class_name": "Dense", "config": {"name": "block_dense", "units": 10}}]}},
        {"class_name": "Flatten", "config": {"name": "flatten"}, "name": "flatten"},
    ]},
}  # fmt: skip


def _write_legacy(h5py, path, whole_model: bool, split: bool = False) -> dict[str, np.ndarray]:
    """A Keras 2 HDF5 file; byte-string attributes; returns weight name -> array."""
    rng = np.random.default_rng(6)
    arrays = {}
    with h5py.File(path, "w") as f:
        group = f.create_group("model_weights") if whole_model else f
        names = np.array([n.encode() for n in _LEGACY_SHAPES])
        if split:  # how Keras 2 stores attributes too large for one HDF5 attribute
            group.attrs["layer_names0"], group.attrs["layer_names1"] = names[:3], names[3:]
        else:
            group.attrs["layer_names"] = names
        for layer, weights in _LEGACY_SHAPES.items():
            layer_group = group.create_group(layer)
            layer_group.attrs["weight_names"] = (np.array([w.encode() for w in weights])
                                                 if weights else np.zeros(0))  # fmt: skip
            for weight_name, shape in weights.items():
                arrays[f"{layer}/{weight_name}"] = rng.standard_normal(shape).astype(np.float32)
                layer_group.create_dataset(weight_name, data=arrays[f"{layer}/{weight_name}"])
        if whole_model:
            f.attrs["model_config"] = json.dumps(_LEGACY_CONFIG).encode()
            f.attrs["keras_version"], f.attrs["backend"] = b"2.15.0", b"tensorflow"
    return arrays


def test_legacy_whole_model_file(h5py, tmp_path):
    path = tmp_path / "legacy.h5"
    a = _write_legacy(h5py, path, whole_model=True)
    tensors = keras_tensors(path)
    expected = {
        "dense.weight": (a["dense/dense/kernel:0"].T, "dense"),
        "dense.bias": (a["dense/dense/bias:0"], None),
        "conv.weight": (np.transpose(a["conv/conv/kernel:0"], (3, 2, 0, 1)), "conv2d"),
        "conv.bias": (a["conv/conv/bias:0"], None),
        "emb.weight": (a["emb/emb/embeddings:0"], "embedding"),
        "bn.weight": (a["bn/bn/gamma:0"], "norm"),
        "bn.beta": (a["bn/bn/beta:0"], None),
        "bn.moving_mean": (a["bn/bn/moving_mean:0"], None),
        "bn.moving_variance": (a["bn/bn/moving_variance:0"], None),
        "block.block_dense.weight": (a["block/block_dense/kernel:0"].T, "dense"),
        "block.block_dense.bias": (a["block/block_dense/bias:0"], None),
    }
    _check(tensors, expected)


@pytest.mark.parametrize("split", [False, True])
def test_legacy_weights_only_file(h5py, tmp_path, split):
    """No model_config: kernels converted by rank (embeddings too), no layer types."""
    path = tmp_path / "legacy_weights.h5"
    a = _write_legacy(h5py, path, whole_model=False, split=split)
    expected = {
        "dense.weight": (a["dense/dense/kernel:0"].T, None),
        "dense.bias": (a["dense/dense/bias:0"], None),
        "conv.weight": (np.transpose(a["conv/conv/kernel:0"], (3, 2, 0, 1)), None),
        "conv.bias": (a["conv/conv/bias:0"], None),
        "emb.weight": (a["emb/emb/embeddings:0"].T, None),
        **{f"bn.{v}": (a[f"bn/bn/{v}:0"], None)
           for v in ("gamma", "beta", "moving_mean", "moving_variance")},
        "block.block_dense.weight": (a["block/block_dense/kernel:0"].T, None),
        "block.block_dense.bias": (a["block/block_dense/bias:0"], None),
    }  # fmt: skip
    _check(keras_tensors(path), expected)


# --- bad input ------------------------------------------------------------------------------


def test_bad_files_are_refused_whole(h5py, saved, tmp_path):
    _, paths = saved
    cases = {}
    data = paths[".keras"].read_bytes()
    (tmp_path / "cut.keras").write_bytes(data[: len(data) // 2])
    cases["cut.keras"] = "not a readable .keras archive"
    data = paths[".weights.h5"].read_bytes()
    (tmp_path / "cut.weights.h5").write_bytes(data[: len(data) // 2])
    cases["cut.weights.h5"] = "not a readable HDF5 file"
    noise = np.random.default_rng(7).bytes(4096)
    (tmp_path / "noise.keras").write_bytes(noise)
    cases["noise.keras"] = "not a readable .keras archive"
    (tmp_path / "noise.h5").write_bytes(noise)
    cases["noise.h5"] = "not a readable HDF5 file"
    with zipfile.ZipFile(tmp_path / "empty.keras", "w") as z:
        z.writestr("config.json", "{}")
        z.writestr("metadata.json", "{}")
    cases["empty.keras"] = "no model.weights.h5 in the archive"
    with zipfile.ZipFile(paths[".keras"]) as src, zipfile.ZipFile(tmp_path / "bad.keras", "w") as z:
        z.writestr("config.json", "{not json")
        z.writestr("model.weights.h5", src.read("model.weights.h5"))
    cases["bad.keras"] = "config.json is not valid JSON"
    with zipfile.ZipFile(tmp_path / "npz.keras", "w") as z:
        z.writestr("config.json", "{}")
        z.writestr("model.weights.npz", b"")
    cases["npz.keras"] = "model.weights.npz"

    cut_member = tmp_path / "cut.h5.keras"  # a zip whose weights member is cut short
    with zipfile.ZipFile(paths[".keras"]) as src, zipfile.ZipFile(cut_member, "w") as z:
        z.writestr("config.json", src.read("config.json"))
        member = src.read("model.weights.h5")
        z.writestr("model.weights.h5", member[: len(member) // 2])
    cases["cut.h5.keras"] = "not a readable HDF5 file"
    with h5py.File(tmp_path / "config.h5", "w") as f:
        f.create_group("model_weights").attrs["layer_names"] = np.array([b"dense"])
        f.attrs["model_config"] = b"{'class_name': 'Functional'"
    cases["config.h5"] = "model_config attribute is not valid JSON"
    cases["missing.h5"] = "no such file"
    for name, message in cases.items():
        with pytest.raises(TensorReadError, match=message) as info:
            keras_tensors(tmp_path / name)
        assert str(tmp_path / name) in str(info.value)


def test_hdf5_without_keras_weights(h5py, tmp_path):
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["data"] = np.zeros(3)
    with pytest.raises(TensorReadError, match="no Keras weights"):
        keras_tensors(tmp_path / "other.h5")


def test_missing_h5py_is_reported(saved, monkeypatch):
    _, paths = saved
    monkeypatch.setitem(sys.modules, "h5py", None)
    with pytest.raises(TensorReadError, match=r"needs the h5py package \(pip install h5py\)"):
        keras_tensors(paths[".keras"])


def test_bad_datasets_fail_alone(h5py, tmp_path):
    """Links to other files, external storage, non-numeric data and a corrupted chunk fail
    only when that tensor is loaded; the other tensors stay readable."""
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["secret"] = np.ones((4, 3), dtype=np.float32)
    raw = tmp_path / "raw.bin"
    raw.write_bytes(np.ones(12, dtype=np.float32).tobytes())
    path = tmp_path / "bad.weights.h5"
    good = np.arange(12, dtype=np.float32).reshape(4, 3)
    with h5py.File(path, "w") as f:
        f["layers/good/vars/0"] = good
        f["layers/good/vars/1"] = h5py.ExternalLink(str(other), "/secret")
        f["layers/soft/vars/0"] = h5py.SoftLink("/layers/good/vars/0")
        f["layers/linked"] = h5py.ExternalLink(str(other), "/")
        f.create_dataset("layers/ext/vars/0", shape=(4, 3), dtype="<f4",
                         external=[(str(raw), 0, 48)])  # fmt: skip
        f["layers/text/vars/0"] = np.array([b"kernel", b"bias"])
        f["layers/record/vars/0"] = np.zeros(3, dtype=[("a", "<f4"), ("b", "<i4")])
        f["layers/ints/vars/0"] = np.arange(6, dtype=np.int64).reshape(2, 3)
        zipped = f.create_dataset("layers/zipped/vars/0", data=np.ones((64, 64), np.float32),
                                  chunks=(64, 64), compression="gzip")  # fmt: skip
        chunk = zipped.id.get_chunk_info(0)
    with open(path, "r+b") as f:  # garble the compressed chunk
        f.seek(chunk.byte_offset + 4)
        f.write(b"\xff" * (chunk.size - 8))
    tensors = dict(keras_tensors(path))
    np.testing.assert_array_equal(tensors["good.weight"].load(), good.T)
    ints = tensors["ints.weight"].load()
    assert ints.dtype == np.int64
    np.testing.assert_array_equal(ints, np.arange(6).reshape(2, 3).T)
    failures = {
        "good.vars.1": "link to another file",
        "linked": "link to another file",
        "soft.weight": "SoftLink",
        "ext.weight": "external files",
        "text.weight": "not a numeric tensor",
        "record.weight": "not a numeric tensor",
        "zipped.weight": "read data",
    }
    for name, reason in failures.items():
        with pytest.raises(TensorReadError, match=reason) as info:
            tensors[name].load()
        assert str(path) in str(info.value)
        assert repr(name) in str(info.value)
    assert tensors["good.weight"].load().shape == (3, 4)  # still readable afterwards


def test_damaged_structure_refuses_the_whole_file(h5py, saved, tmp_path):
    """A dataset listed but absent, or data cut off: one error naming the file, raised when
    it is opened; every cut of a weights file is refused whole."""
    path = tmp_path / "legacy.h5"
    _write_legacy(h5py, path, whole_model=False)
    with h5py.File(path, "r+") as f:
        del f["dense/dense/bias:0"]
    with pytest.raises(TensorReadError) as info:
        keras_tensors(path)
    assert str(info.value) == (f"{path}: damaged HDF5 file: dataset /dense/dense/bias:0: no "
                               "'bias:0' in /dense/dense")  # fmt: skip
    _, paths = saved
    data = paths[".weights.h5"].read_bytes()
    cut = tmp_path / "cut.weights.h5"
    for end in (5, len(data) // 4, len(data) // 2, len(data) - 1):
        cut.write_bytes(data[:end])
        with pytest.raises(TensorReadError) as info:
            keras_tensors(cut)
        assert str(info.value).startswith(f"{cut}: "), end


def test_chunks_outside_the_file_refuse_it(h5py, tmp_path, monkeypatch):
    """A chunk whose recorded extent passes the end of the file (checked from the chunk
    index, before any data is read): the file size is shrunk in the check to simulate it."""
    path = tmp_path / "chunked.weights.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("layers/dense/vars/0", data=np.ones((64, 64), np.float32),
                         chunks=(16, 64))  # fmt: skip
        last = f["layers/dense/vars/0"].id.get_chunk_info(3)
    assert len(keras_tensors(path)) == 1
    from hts_fast.loaders import keras_files

    size = last.byte_offset + last.size - 1
    real = keras_files._storage_problem
    monkeypatch.setattr(keras_files, "_storage_problem",
                        lambda dataset, nbytes, _: real(dataset, nbytes, size))  # fmt: skip
    with pytest.raises(TensorReadError) as info:
        keras_tensors(path)
    assert str(info.value) == (
        f"{path}: damaged HDF5 file: dataset /layers/dense/vars/0: a chunk at bytes "
        f"[{last.byte_offset:,}, {last.byte_offset + last.size:,}) reaches beyond the end of "
        f"the file ({size:,} bytes; truncated?)"
    )
