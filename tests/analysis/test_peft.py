"""LoRA adapters (peft=): WeightWatcher 0.7.7's numbers in compat mode, exact products by default."""

from __future__ import annotations

import json
from pathlib import Path

import hts_fast
import numpy as np
import pandas as pd
import pytest
import scipy.linalg
from hts_fast.analysis.table import WW_COLUMNS

from ..weightwatcher_reference import assert_same_table, run_weightwatcher

torch = pytest.importorskip("torch")

COMPAT = "weightwatcher-0.7.7"
#: WeightWatcher's columns with peft: its own "peft" column, in its (alphabetical) place
PEFT_COLUMNS = [*WW_COLUMNS[:20], "peft", *WW_COLUMNS[20:]]
#: (out, in) of each adapted projection; rank 16
PROJECTIONS = {"q_proj": (64, 48), "v_proj": (40, 48)}
RANK, LORA_ALPHA = 16, 32


def _lora_factors(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    factors = {}
    for block in range(2):
        for proj, (out_dim, in_dim) in PROJECTIONS.items():
            key = f"layers.{block}.{proj}"
            factors[f"{key}.A"] = rng.standard_normal((RANK, in_dim)).astype(np.float32)
            factors[f"{key}.B"] = (rng.standard_normal((out_dim, RANK)) * 0.1).astype(np.float32)
            factors[f"{key}.W"] = rng.standard_normal((out_dim, in_dim)).astype(np.float32)
    return factors


def _adapter_folder(tmp_path: Path, factors: dict[str, np.ndarray], **config: object) -> Path:
    from safetensors.numpy import save_file

    folder = tmp_path / "adapter"
    folder.mkdir()
    tensors = {}
    for key in {k.rsplit(".", 1)[0] for k in factors}:
        tensors[f"base_model.model.{key}.lora_A.weight"] = factors[f"{key}.A"]
        tensors[f"base_model.model.{key}.lora_B.weight"] = factors[f"{key}.B"]
    save_file(tensors, str(folder / "adapter_model.safetensors"))
    settings = {"r": RANK, "lora_alpha": LORA_ALPHA, "peft_type": "LORA", **config}
    (folder / "adapter_config.json").write_text(json.dumps(settings))
    return folder


def _merged_state_dict(factors: dict[str, np.ndarray]) -> dict[str, object]:
    """A PEFT model's state dict: base_layer, lora_A.default, lora_B.default per projection."""
    state = {}
    for block in range(2):
        for proj in PROJECTIONS:
            key = f"layers.{block}.{proj}"
            state[f"model.{key}.base_layer.weight"] = torch.tensor(factors[f"{key}.W"])
            state[f"model.{key}.lora_A.default.weight"] = torch.tensor(factors[f"{key}.A"])
            state[f"model.{key}.lora_B.default.weight"] = torch.tensor(factors[f"{key}.B"])
    return state


class LoraLinear(torch.nn.Module):
    """PEFT's module layout: base_layer, then lora_A/lora_B ModuleDicts holding 'default'."""

    def __init__(self, w: np.ndarray, a: np.ndarray, b: np.ndarray) -> None:
        super().__init__()
        self.base_layer = torch.nn.Linear(w.shape[1], w.shape[0], bias=False)
        self.lora_A = torch.nn.ModuleDict({"default": torch.nn.Linear(a.shape[1], a.shape[0])})
        self.lora_B = torch.nn.ModuleDict({"default": torch.nn.Linear(b.shape[1], b.shape[0])})
        with torch.no_grad():
            self.base_layer.weight.copy_(torch.tensor(w))
            self.lora_A["default"].weight.copy_(torch.tensor(a))
            self.lora_B["default"].weight.copy_(torch.tensor(b))


def _module(factors: dict[str, np.ndarray]) -> torch.nn.Module:
    layers = [
        LoraLinear(factors[f"layers.{i}.{p}.W"], factors[f"layers.{i}.{p}.A"],
                   factors[f"layers.{i}.{p}.B"])
        for i in range(2) for p in PROJECTIONS
    ]  # fmt: skip
    return torch.nn.Sequential(*layers)


@pytest.mark.parametrize("peft", [True, "with_base"])
@pytest.mark.parametrize("kind", ["adapter_folder", "state_dict", "module"])
def test_compat_matches_weightwatcher(tmp_path: Path, kind: str, peft: object) -> None:
    factors = _lora_factors()
    model = {"adapter_folder": lambda: str(_adapter_folder(tmp_path, factors)),
             "state_dict": lambda: _merged_state_dict(factors),
             "module": lambda: _module(factors)}[kind]()  # fmt: skip
    theirs = run_weightwatcher(model, peft=peft)
    ours = hts_fast.analyze(model, compat=COMPAT, peft=peft)
    assert_same_table(ours, theirs, PEFT_COLUMNS)
    assert ours["peft"].any()
    expected_rows = 4 if peft is True or kind == "adapter_folder" else 12
    assert len(ours) == expected_rows


def _eigenvalues(matrix: np.ndarray) -> np.ndarray:
    return np.sort(scipy.linalg.svd(matrix.astype(np.float64), compute_uv=False) ** 2)


def test_default_products_are_exact_and_scaled(tmp_path: Path) -> None:
    factors = _lora_factors(1)
    folder = _adapter_folder(tmp_path, factors)
    table = hts_fast.analyze(str(folder), peft=True)
    scale = LORA_ALPHA / RANK
    assert list(table["name"]) == [f"base_model.model.layers.{i}.{p}.lora_BA"
                                   for i in range(2) for p in PROJECTIONS]  # fmt: skip
    for _, row in table.iterrows():
        key = row["name"].removeprefix("base_model.model.").removesuffix(".lora_BA")
        a, b = factors[f"{key}.A"].astype(np.float64), factors[f"{key}.B"].astype(np.float64)
        expected = _eigenvalues(scale * b @ a)[-RANK:]
        assert row["num_evals"] == RANK
        assert row["M"], row["N"] == (min(b.shape[0], a.shape[1]), max(b.shape[0], a.shape[1]))
        np.testing.assert_allclose(row["lambda_max"], expected[-1], rtol=1e-12)
        np.testing.assert_allclose(row["norm"], expected.sum(), rtol=1e-12)
        np.testing.assert_allclose(row["sv_min"] ** 2, expected[0], rtol=1e-9)
    # the lora_B tensors are reported as folded into the product rows
    skipped = table.attrs["skipped"]
    assert skipped["skip_reason"].str.startswith("analyzed in").sum() == 4
    assert skipped["skip_reason"].str.startswith("analyzed as").sum() == 4


def test_default_rslora_scale(tmp_path: Path) -> None:
    factors = _lora_factors(2)
    plain = hts_fast.analyze(str(_adapter_folder(tmp_path, factors)), peft=True)
    (tmp_path / "rs").mkdir()
    rs = hts_fast.analyze(str(_adapter_folder(tmp_path / "rs", factors, use_rslora=True)),
                          peft=True)  # fmt: skip
    ratio = (LORA_ALPHA / np.sqrt(RANK)) ** 2 / (LORA_ALPHA / RANK) ** 2
    np.testing.assert_allclose(rs["lambda_max"] / plain["lambda_max"], ratio, rtol=1e-12)
    np.testing.assert_allclose(rs["alpha"], plain["alpha"], rtol=1e-9)


def test_default_with_base_keeps_the_whole_spectrum() -> None:
    factors = _lora_factors(3)
    table = hts_fast.analyze(_merged_state_dict(factors), peft="with_base")
    assert list(table["layer_id"]) == sorted(table["layer_id"])  # in layer order
    merged = table[table["name"].str.contains("lora_W_plus_AB")]
    assert len(merged) == 4
    assert merged["peft"].all()
    for _, row in merged.iterrows():
        key = row["name"].removeprefix("model.").removesuffix(".lora_W_plus_AB.default")
        w, a, b = (factors[f"{key}.{x}"].astype(np.float64) for x in "WAB")
        expected = _eigenvalues(w + b @ a)  # a state dict states no scale: s = 1
        assert row["num_evals"] == len(expected) == min(w.shape)
        np.testing.assert_allclose(row["norm"], expected.sum(), rtol=1e-12)
        np.testing.assert_allclose(row["lambda_max"], expected[-1], rtol=1e-12)
    base = table[~table["peft"]]
    assert len(base) == 4
    assert base["name"].str.endswith("base_layer").all()


def test_unpairable_factors_are_reported_not_dropped() -> None:
    rng = np.random.default_rng(4)
    state = {"a.lora_A.weight": rng.standard_normal((16, 40)),
             "a.lora_B.weight": rng.standard_normal((30, 12)),  # rank 12 != 16
             "b.lora_A.weight": rng.standard_normal((16, 40))}  # fmt: skip
    table = hts_fast.analyze(state, peft=True)
    assert table.empty
    reasons = dict(zip(table.attrs["skipped"]["name"], table.attrs["skipped"]["skip_reason"],
                       strict=True))  # fmt: skip
    assert reasons["a.lora_A"].startswith("LoRA pair not analyzed: LoRA factors cannot be")
    assert reasons["b.lora_A"] == "lora_A without a lora_B after it"


def test_peft_argument_is_checked() -> None:
    with pytest.raises(ValueError, match="peft must be"):
        hts_fast.analyze({"w.weight": np.eye(9)}, peft="base")


def test_describe_lists_products_with_their_rank() -> None:
    table = hts_fast.describe(_merged_state_dict(_lora_factors()), peft=True)
    products = table[table["name"].str.contains("lora_BA")]
    assert len(products) == 4
    assert (products["num_evals"] == RANK).all()
    assert isinstance(table, pd.DataFrame)
    assert not table[table["name"].str.endswith("base_layer")]["analyzed"].any()


def test_with_base_mismatch_keeps_the_product_row() -> None:
    rng = np.random.default_rng(7)
    state = {"x.base_layer.weight": rng.standard_normal((50, 30)),  # not B·A's (60, 40)
             "x.lora_A.weight": rng.standard_normal((16, 40)),
             "x.lora_B.weight": rng.standard_normal((60, 16))}  # fmt: skip
    table = hts_fast.analyze(state, peft="with_base")
    assert list(table["name"]) == ["x.base_layer", "x.lora_BA"]
    skipped = table.attrs["skipped"].set_index("name")["skip_reason"]
    assert skipped["x.lora_B"].startswith("W + B·A not analyzed: base weight (50, 30)")


def test_embedding_named_factors_are_paired() -> None:
    rng = np.random.default_rng(8)
    state = {"unet.time_embedding.lora_A.weight": rng.standard_normal((16, 48)),
             "unet.time_embedding.lora_B.weight": rng.standard_normal((64, 16))}  # fmt: skip
    for compat in (None, COMPAT):
        table = hts_fast.analyze(state, peft=True, compat=compat)
        assert list(table["name"]) == ["unet.time_embedding.lora_BA"]


def test_scale_uses_each_pairs_rank_and_alpha_pattern(tmp_path: Path) -> None:
    factors = _lora_factors(5)
    pattern = {"layers.1.v_proj": 8.0}
    plain = hts_fast.analyze(str(_adapter_folder(tmp_path, factors)), peft=True)
    (tmp_path / "p").mkdir()
    patterned = hts_fast.analyze(str(_adapter_folder(tmp_path / "p", factors,
                                                     alpha_pattern=pattern)), peft=True)  # fmt: skip
    ratio = (patterned["lambda_max"] / plain["lambda_max"]).to_numpy()
    overridden = patterned["name"].str.contains("layers.1.v_proj").to_numpy()
    np.testing.assert_allclose(ratio[overridden], (8.0 / LORA_ALPHA) ** 2, rtol=1e-12)
    np.testing.assert_allclose(ratio[~overridden], 1.0, rtol=1e-12)
