"""AlphaPruning's layer-wise sparsity ratios (hts_fast.layerwise_ratios): the linear map and
the weighted mean in closed form, the clipping, and the reference's LLaMA-7B figures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hts_fast import layerwise_ratios
from hts_fast.schedules.pruning import block_of

#: LLaMA-7B's seven Linear matrices per decoder block and their parameter counts.
LLAMA7B_MATRICES = {"self_attn.q_proj": 4096 * 4096, "self_attn.k_proj": 4096 * 4096,
                    "self_attn.v_proj": 4096 * 4096, "self_attn.o_proj": 4096 * 4096,
                    "mlp.gate_proj": 11008 * 4096, "mlp.up_proj": 11008 * 4096,
                    "mlp.down_proj": 4096 * 11008}  # fmt: skip


def llama_table(block_alpha: np.ndarray, spread: float = 0.0) -> pd.DataFrame:
    """A LLaMA-7B-shaped table: 32 blocks of 7 matrices; each block's alphas have the mean
    block_alpha[b] (spread symmetrically by ``spread`` around it)."""
    offsets = spread * np.linspace(-1, 1, 7)
    rows = [{"name": f"model.layers.{b}.{m}", "alpha": a + off, "params": p}
            for b, a in enumerate(block_alpha)
            for (m, p), off in zip(LLAMA7B_MATRICES.items(), offsets, strict=True)]  # fmt: skip
    return pd.DataFrame(rows)


def weighted_mean(ratios: pd.Series, table: pd.DataFrame) -> float:
    return float(np.average(ratios.to_numpy(), weights=table["params"].to_numpy()))


def test_per_matrix_linear_map_closed_form():
    alphas = np.array([2.0, 3.5, 5.0, 2.75, 4.0])
    params = np.array([100, 300, 200, 400, 50])
    table = pd.DataFrame({"name": list("abcde"), "alpha": alphas, "params": params})
    got = layerwise_ratios(table, 0.5, 0.2, mapping="per_matrix")
    r = 0.8 + 0.4 * (alphas - 2.0) / 3.0
    c = 0.5 * params.sum() / (params * r).sum()
    np.testing.assert_allclose(got.to_numpy(), c * r, rtol=1e-14)
    assert list(got.index) == list("abcde")
    assert weighted_mean(got, table) == pytest.approx(0.5, rel=1e-14)
    assert got["c"] / got["a"] == pytest.approx(1.2 / 0.8, rel=1e-14)


def test_block_wise_uses_block_means():
    table = pd.DataFrame({"name": ["m.layers.0.q", "m.layers.0.k", "m.layers.1.q", "m.layers.1.k",
                                   "m.layers.2.q"],
                          "alpha": [2.0, 4.0, 5.0, 5.0, 2.5], "params": [1, 3, 2, 2, 4]})  # fmt: skip
    got = layerwise_ratios(table, 0.6, 0.3)
    means = np.array([3.0, 3.0, 5.0, 5.0, 2.5])
    r = 0.7 + 0.6 * (means - 2.5) / 2.5
    w = table["params"].to_numpy()
    np.testing.assert_allclose(got.to_numpy(), 0.6 * w.sum() / (w @ r) * r, rtol=1e-14)


def test_clipping_keeps_the_weighted_mean_and_the_order():
    alphas = np.array([1.5, 2.0, 6.0, 6.5, 3.0, 2.2])
    params = np.array([10, 10, 10, 10, 10, 50])
    table = pd.DataFrame({"name": list("abcdef"), "alpha": alphas, "params": params})
    raw = layerwise_ratios(table, 0.8, 0.5, mapping="per_matrix", clip=False)
    assert raw.max() > 1  # what AlphaPruning returns
    got = layerwise_ratios(table, 0.8, 0.5, mapping="per_matrix")
    assert got.between(0, 1).all()
    assert weighted_mean(got, table) == pytest.approx(0.8, rel=1e-14)
    assert list(np.argsort(got.to_numpy(), kind="stable")) == list(
        np.argsort(raw.to_numpy(), kind="stable")
    )
    # closed form: c and d (alpha 6.0, 6.5) are pruned whole; the others share what is left,
    # 0.8 * 100 - 20 = 60 over sum(P r) of a, b, e, f
    r = 0.5 + 1.0 * (alphas - 1.5) / 5.0
    rest = [0, 1, 4, 5]
    c = 60 / (params[rest] @ r[rest])
    np.testing.assert_allclose(got.to_numpy(), [c * r[0], c * r[1], 1, 1, c * r[4], c * r[5]],
                               rtol=1e-14)  # fmt: skip


def test_equal_metrics_give_the_target_everywhere():
    table = pd.DataFrame({"name": ["a", "b"], "alpha": [3.0, 3.0], "params": [5, 7]})
    np.testing.assert_allclose(layerwise_ratios(table, 0.4, mapping="per_matrix"), [0.4, 0.4],
                               rtol=1e-15)  # fmt: skip


def test_params_from_analyze_columns():
    table = pd.DataFrame({"name": ["x.0.a", "x.1.a"], "alpha": [2.0, 4.0], "N": [10, 20],
                          "M": [5, 5], "rf": [1, 9]})  # fmt: skip
    got = layerwise_ratios(table, 0.5, 0.5)
    w = np.array([50, 900])
    r = np.array([0.5, 1.5])
    np.testing.assert_allclose(got.to_numpy(), 0.5 * w.sum() / (w @ r) * r, rtol=1e-14)


#: The reference's AlphaPruning allocation for LLaMA-7B (alpha_peak cache, block-wise,
#: S = 0.7, eps = 0.3): extremes and six named blocks.
REFERENCE_MIN, REFERENCE_MAX = 0.5006, 0.9297
REFERENCE_BLOCKS = {0: 0.5042, 1: 0.5755, 2: 0.5966, 3: 0.5954, 30: 0.9137, 31: 0.7479}


def reference_block_alphas() -> np.ndarray:
    """Block means consistent with the reference's figures: with equal blocks the block-wise
    ratio is linear in the block mean, so the figures fix the means up to an affine map; the
    24 blocks the reference does not list share the rest of the 0.7 budget (block 4 holds the
    minimum, block 29 the maximum)."""
    ratios = np.empty(32)
    for b, value in REFERENCE_BLOCKS.items():
        ratios[b] = value
    ratios[4], ratios[29] = REFERENCE_MIN, REFERENCE_MAX
    listed = [*REFERENCE_BLOCKS, 4, 29]
    others = [b for b in range(32) if b not in listed]
    ratios[others] = (0.7 * 32 - ratios[listed].sum()) / len(others)
    # alpha = an affine image of the ratio; the reference's per-matrix range was 1.308-6.914
    return 1.308 + (ratios - REFERENCE_MIN) / (REFERENCE_MAX - REFERENCE_MIN) * (6.914 - 1.308)


def test_reference_llama7b_allocation():
    table = llama_table(reference_block_alphas(), spread=0.4)
    got = layerwise_ratios(table, 0.7, 0.3)
    per_block = got.groupby(lambda name: int(name.split(".")[2])).agg(["min", "max"])
    assert (per_block["min"] == per_block["max"]).all()  # one ratio per block
    block = per_block["min"]
    assert block.min() == pytest.approx(REFERENCE_MIN, abs=1e-4)
    assert block.max() == pytest.approx(REFERENCE_MAX, abs=1e-4)
    for b, value in REFERENCE_BLOCKS.items():
        assert block[b] == pytest.approx(value, abs=1e-4), b
    assert weighted_mean(got, table) == pytest.approx(0.7, rel=1e-14)
    # the range of the unscaled ratios, (1 - eps) / (1 + eps), is the reference's min / max
    assert block.min() / block.max() == pytest.approx(0.7 / 1.3, rel=1e-12)
    assert pytest.approx(0.7 / 1.3, abs=2e-5) == REFERENCE_MIN / REFERENCE_MAX


def test_reference_llama7b_at_08_exceeds_one_unclipped():
    """The same alphas at S = 0.8: AlphaPruning's largest ratio is 1.063 (reference); ours is
    capped at 1 with the weighted mean still 0.8."""
    table = llama_table(reference_block_alphas())
    raw = layerwise_ratios(table, 0.8, 0.3, clip=False)
    assert raw.max() == pytest.approx(1.063, abs=1e-3)
    got = layerwise_ratios(table, 0.8, 0.3)
    assert got.max() == 1.0
    assert got.between(0, 1).all()
    assert weighted_mean(got, table) == pytest.approx(0.8, rel=1e-14)
    assert (got[raw > 1] == 1.0).all()
    assert (got[raw <= 1] > raw[raw <= 1]).all()  # the excess went to the others


def test_block_names():
    assert block_of("model.layers.12.mlp.up_proj") == "model.layers.12"
    assert block_of("3.weight") == "3"
    assert block_of("encoder.layer.0.attention.self.query") == "encoder.layer.0"
    with pytest.raises(ValueError, match="no numbered block"):
        block_of("layer10.conv")


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"target": 1.2}, ValueError, "target must be a sparsity"),
        ({"epsilon": 1.0}, ValueError, "epsilon must be in"),
        ({"mapping": "layer"}, ValueError, "mapping must be"),
        ({"metric": "beta"}, ValueError, "no 'beta' column"),
        ({"params": [1, 2]}, ValueError, "params has 2 entries for 3 layers"),
        ({"params": [1, 0, 2]}, ValueError, "layer 'x.1.b' has 0.0 parameters"),
    ],
)
def test_bad_input(kwargs, error, message):
    table = pd.DataFrame({"name": ["x.0.a", "x.1.b", "x.2.c"], "alpha": [2.0, 3.0, 4.0],
                          "params": [1, 1, 1]})  # fmt: skip
    arguments = {"target": 0.5, **kwargs}
    with pytest.raises(error, match=message):
        layerwise_ratios(table, **arguments)


def test_non_finite_metric_names_the_layer():
    table = pd.DataFrame({"name": ["x.0.a", "x.1.b"], "alpha": [2.0, np.nan], "params": [1, 1]})
    with pytest.raises(ValueError, match=r"layer 'x\.1\.b' has alpha = nan"):
        layerwise_ratios(table, 0.5)
    with pytest.raises(ValueError, match="no numbered block"):
        layerwise_ratios(pd.DataFrame({"name": ["fc"], "alpha": [2.0], "params": [3]}), 0.5)


DOCS = Path(__file__).resolve().parents[2] / "docs" / "tempbalance.md"
BLOCK_MATRICES = {"self_attn.q_proj": (64, 64), "self_attn.k_proj": (64, 64),
                  "self_attn.v_proj": (64, 64), "self_attn.o_proj": (64, 64),
                  "mlp.gate_proj": (128, 64), "mlp.up_proj": (128, 64),
                  "mlp.down_proj": (64, 128)}  # fmt: skip


def tiny_llama_state_dict() -> dict[str, np.ndarray]:
    """Three LLaMA-shaped decoder blocks (hidden 64, MLP 128) of heavy-tailed (Student t,
    3 degrees of freedom) weights, with embeddings, norms and a head around them."""
    rng = np.random.default_rng(7)
    state = {"model.embed_tokens.weight": rng.standard_t(3, (100, 64))}
    for i in range(3):
        for matrix, shape in BLOCK_MATRICES.items():
            state[f"model.layers.{i}.{matrix}.weight"] = rng.standard_t(3, shape)
        state[f"model.layers.{i}.input_layernorm.weight"] = np.ones(64)
    state["model.norm.weight"] = np.ones(64)
    state["lm_head.weight"] = rng.standard_t(3, (100, 64))
    return state


def tiny_llama_module(state: dict[str, np.ndarray]):
    """The same weights as a torch module tree (float64, no biases): there analyze() puts
    the short name (q_proj) in ``name`` and the full path in ``longname``."""
    torch = pytest.importorskip("torch", reason="the torch form of the tiny LLaMA")
    nn = torch.nn

    def block() -> nn.Module:
        b, attn, mlp = nn.Module(), nn.Module(), nn.Module()
        for matrix, (rows, cols) in BLOCK_MATRICES.items():
            part, name = matrix.split(".")
            setattr(attn if part == "self_attn" else mlp, name, nn.Linear(cols, rows, bias=False))
        b.self_attn, b.mlp = attn, mlp
        b.input_layernorm = nn.LayerNorm(64, bias=False)
        return b

    model = nn.Module()
    model.model = nn.Module()
    model.model.embed_tokens = nn.Embedding(100, 64)
    model.model.layers = nn.ModuleList([block() for _ in range(3)])
    model.model.norm = nn.LayerNorm(64, bias=False)
    model.lm_head = nn.Linear(64, 100, bias=False)
    model = model.double()
    model.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
    return model


def docs_pruning_example() -> str:
    """The code of docs/tempbalance.md's "AlphaPruning ratios" section, as written there."""
    section = DOCS.read_text(encoding="utf-8").split("## AlphaPruning ratios", 1)[1]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


@pytest.mark.parametrize("form", ["state_dict", "torch"])
def test_docs_alphapruning_example_on_an_analyze_table(form):
    state = tiny_llama_state_dict()
    model = state if form == "state_dict" else tiny_llama_module(state)
    scope: dict = {"model": model}
    exec(docs_pruning_example(), scope)  # noqa: S102 - the docs' own example
    table, ratios = scope["table"], scope["ratios"]
    longnames = [f"model.layers.{i}.{m}" for i in range(3) for m in BLOCK_MATRICES]
    assert list(ratios.index) == longnames
    assert ratios.index.name == "longname"
    params = np.array([r * c for r, c in BLOCK_MATRICES.values()] * 3, dtype=np.float64)
    assert abs(np.average(ratios.to_numpy(), weights=params) - 0.7) < 1e-12
    assert ((ratios >= 0) & (ratios <= 1)).all()
    # closed form from the table's alphas: block means, the linear map, the scale c
    alphas = table.set_index("longname").loc[longnames, "alpha"].to_numpy().reshape(3, 7)
    blocks = np.repeat(alphas.mean(axis=1), 7)
    r = 0.7 + 0.6 * (blocks - blocks.min()) / (blocks.max() - blocks.min())
    expected = 0.7 * params.sum() / (params @ r) * r
    assert expected.max() < 1  # no clipping in this case
    np.testing.assert_allclose(ratios.to_numpy(), expected, rtol=1e-12)
    per_block = ratios.to_numpy().reshape(3, 7)
    assert (per_block == per_block[:, :1]).all()
    assert len(set(per_block[:, 0])) == 3
    per_matrix = layerwise_ratios(table, target=0.7, epsilon=0.3, mapping="per_matrix")
    assert list(per_matrix.index) == longnames


def test_docs_example_state_dict_and_torch_agree():
    state = tiny_llama_state_dict()
    results = []
    for model in (state, tiny_llama_module(state)):
        scope: dict = {"model": model}
        exec(docs_pruning_example(), scope)  # noqa: S102 - the docs' own example
        results.append(scope["ratios"])
    np.testing.assert_allclose(results[0].to_numpy(), results[1].to_numpy(), rtol=1e-9)


def test_a_table_without_longname_uses_name():
    table = pd.DataFrame({"name": ["x.0.a", "x.0.b", "x.1.a"], "alpha": [2.0, 4.0, 5.0],
                          "params": [1, 1, 2]})  # fmt: skip
    ratios = layerwise_ratios(table, 0.5)
    assert ratios.index.name == "name"
    # blocks x.0 (mean 3) and x.1 (5): r = 0.7, 0.7, 1.3; c = 2 / (0.7 + 0.7 + 2.6)
    np.testing.assert_allclose(ratios.to_numpy(), np.array([0.7, 0.7, 1.3]) * 2 / 4.0,
                               rtol=1e-15)  # fmt: skip
    with pytest.raises(ValueError, match="no 'longname' or 'name' column"):
        layerwise_ratios(table.rename(columns={"name": "layer"}), 0.5)
