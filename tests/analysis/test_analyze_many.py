"""analyze_many(): the same tables as analyze() one model at a time, errors kept in place."""

from __future__ import annotations

import dataclasses
import inspect

import hts_fast
import numpy as np
import pandas as pd
import pytest
from hts_fast.analysis.pipeline import _Options


def _model(seed: int, *, bad: bool = False) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    model = {
        "fc1.weight": rng.standard_t(3.0, (96, 40)),
        "fc2.weight": rng.standard_t(4.0, (64, 96)).astype(np.float32),
        "conv.weight": rng.standard_normal((16, 8, 3, 3)),
        "tiny.weight": rng.standard_normal((4, 3)),  # below min_evals: skipped
    }
    if bad:
        model["fc2.weight"][3, 5] = np.nan  # fails its layer only
    return model


def _assert_same(many: pd.DataFrame, one: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(many, one)
    pd.testing.assert_frame_equal(many.attrs["skipped"], one.attrs["skipped"])
    assert many.attrs["compat"] == one.attrs["compat"]


@pytest.mark.parametrize(
    "options",
    [{}, {"esd_method": "gram"}, {"compat": "weightwatcher-0.7.7"},
     {"mp_fit": True, "detX": True}, {"fix_fingers": "clip_xmax"}, {"fit": "E_TPL"},
     {"randomize": True, "seed": 3},
     {"fit": "TPL", "xmax": "force", "compat": "weightwatcher-0.7.7"}, {"xmax": 30.0}],
)  # fmt: skip
def test_equals_analyze_per_model(options):
    models = [_model(0), _model(1, bad=True), _model(2)]
    tables = hts_fast.analyze_many(models, **options)
    assert len(tables) == 3
    for table, model in zip(tables, models, strict=True):
        _assert_same(table, hts_fast.analyze(model, **options))
    assert (tables[1]["status"] == "failed").sum() >= 1  # the NaN layer
    stages = set(tables[0].attrs["seconds"])
    assert stages >= {"extract", "fit", "metrics"}
    assert stages & {"esd", "esd+fit"}


def test_a_model_that_cannot_be_opened_gives_its_error(tmp_path):
    missing = tmp_path / "missing.safetensors"
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"\xff" * 20)
    tables = hts_fast.analyze_many([_model(0), missing, 42, corrupt, _model(1)])
    assert isinstance(tables[1], Exception)
    assert "missing.safetensors" in str(tables[1])
    assert isinstance(tables[2], TypeError)
    assert isinstance(tables[3], Exception)
    for k, seed in ((0, 0), (4, 1)):
        _assert_same(tables[k], hts_fast.analyze(_model(seed)))


def test_empty_batch_and_bad_options():
    assert hts_fast.analyze_many([]) == []
    with pytest.raises(ValueError, match="fit must be"):
        hts_fast.analyze_many([_model(0)], fit="XYZ")
    with pytest.raises(TypeError):
        hts_fast.analyze_many([_model(0)], no_such_option=1)


def test_options_defaults_equal_analyze_signature():
    signature = inspect.signature(hts_fast.analyze).parameters
    for f in dataclasses.fields(_Options):
        assert signature[f.name].default == f.default, f.name
    public = {n for n, p in signature.items() if p.kind is p.KEYWORD_ONLY and n[0] != "_"}
    assert public == {f.name for f in dataclasses.fields(_Options)}
