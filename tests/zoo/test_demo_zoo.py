"""hts-fast demo-zoo: a reproducible small zoo of trained MLPs with test accuracies."""

from __future__ import annotations

import hts_fast
import numpy as np
from hts_fast.zoo.demo import accuracy, load_digits, make_demo_zoo, train_mlp

from ..conftest import _require


def test_training_learns_and_is_reproducible():
    _require("sklearn")
    digits = load_digits()
    params = train_mlp(digits, batch_size=32, width=64, lr=0.05, epochs=5, seed=1)
    again = train_mlp(digits, batch_size=32, width=64, lr=0.05, epochs=5, seed=1)
    assert all(np.array_equal(params[k], again[k]) for k in params)
    assert accuracy(params, digits.x_test, digits.y_test) > 0.8  # chance is 0.1
    assert params["fc1.weight"].shape == (64, 64)
    assert params["fc3.weight"].shape == (10, 64)


def test_zoo_files_and_labels(tmp_path, monkeypatch):
    _require("sklearn")
    from hts_fast.zoo import demo

    monkeypatch.setattr(demo, "BATCH_SIZES", (8, 128))
    monkeypatch.setattr(demo, "WIDTHS", (32,))
    monkeypatch.setattr(demo, "LEARNING_RATES", (0.05,))
    labels = make_demo_zoo(tmp_path / "zoo", epochs=2)
    assert list(labels.columns) == ["path", "test_accuracy", "train_accuracy", "batch_size",
                                    "width", "lr"]  # fmt: skip
    assert list(labels["path"]) == ["bs008_w32_lr0.05", "bs128_w32_lr0.05"]
    table = hts_fast.analyze(str(tmp_path / "zoo" / "bs008_w32_lr0.05"))
    assert list(table["name"]) == ["fc1", "fc2", "fc3"]
    assert (table["status"] == "success").all()
    # the saved weights are the trained ones: their accuracy is the labelled one
    from hts_fast.loaders import checkpoint_tensors

    saved = {n: np.asarray(t.load()) for n, t in
             checkpoint_tensors(tmp_path / "zoo" / "bs008_w32_lr0.05")[0]}  # fmt: skip
    digits = load_digits()
    assert accuracy(saved, digits.x_test, digits.y_test) == labels["test_accuracy"][0]
