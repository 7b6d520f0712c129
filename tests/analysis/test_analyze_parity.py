"""analyze(compat="weightwatcher-0.7.7") against WeightWatcher 0.7.7 itself, column by column."""

from __future__ import annotations

import hts_fast
import numpy as np
import pytest

from ..weightwatcher_reference import assert_same_table, run_weightwatcher

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.weightwatcher


class GPT2Conv1D(torch.nn.Module):
    """Hugging Face GPT-2's Conv1D: a 2-D (in, out) weight; typed conv1d by its class name."""

    def __init__(self, nf: int, nx: int) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.randn(nx, nf) * 0.02)
        self.bias = torch.nn.Parameter(torch.zeros(nf))


GPT2Conv1D.__name__ = GPT2Conv1D.__qualname__ = "Conv1D"


def mixed_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Embedding(100, 32),  # embedding, N = 100
        torch.nn.Linear(32, 64),  # dense
        torch.nn.LayerNorm(64),  # norm: skipped
        torch.nn.Conv2d(16, 32, 3),  # out >= in, rf 9
        torch.nn.Conv2d(64, 16, (2, 2)),  # out < in, rf 4 even: WeightWatcher's N/M toggle
        torch.nn.Conv2d(48, 24, 3),  # out < in, rf 9 odd
        torch.nn.Conv2d(1, 4, 5),  # kernel larger than channels: WeightWatcher's flip branch
        torch.nn.Conv1d(16, 32, 3),  # 3-D weight, M = 3 < min_evals: skipped
        torch.nn.Conv1d(16, 32, 9),  # 3-D weight with M = 9: stacked SVD in WeightWatcher
        torch.nn.Linear(64, 5),  # M = 5 < min_evals
        GPT2Conv1D(48, 40),
        torch.nn.Linear(300, 200),  # above max_evals=150 in one test
        torch.nn.Embedding(60000, 8),  # N > max_N
    )


@pytest.mark.parametrize("kwargs", [{}, {"max_evals": 150}, {"min_evals": 0}])
def test_module_matches_weightwatcher(kwargs):
    model = mixed_model()
    ours = hts_fast.analyze(model, compat="weightwatcher-0.7.7", **kwargs)
    assert_same_table(ours, run_weightwatcher(model, **kwargs))


def test_state_dict_of_the_same_weights_matches_weightwatcher():
    model = mixed_model()
    state = model.state_dict()
    ours = hts_fast.analyze(state, compat="weightwatcher-0.7.7")
    assert_same_table(ours, run_weightwatcher(state))
    assert ours["layer_id"].min() >= 1  # dict input ids start at 1


def test_numpy_state_dict_and_nested_state_dict_match_weightwatcher():
    rng = np.random.default_rng(1)
    state = {
        "a.weight": rng.standard_normal((50, 30)),
        "a.bias": rng.standard_normal(50),
        "norm.weight": rng.standard_normal(30),
        "b.weight": rng.standard_normal((40, 20, 3, 3)).astype(np.float32),
        "c.weight": rng.standard_normal((20, 40, 2, 2)).astype(np.float32),
    }
    wrapped = {"state_dict": state}
    ours = hts_fast.analyze(wrapped, compat="weightwatcher-0.7.7")
    assert_same_table(ours, run_weightwatcher(wrapped))


def test_layer_filters_match_weightwatcher():
    model = mixed_model()
    for layers in ([1, 4], [-1, -4], ["conv2d"], ["1", "3"], ["-1"]):
        ours = hts_fast.analyze(model, compat="weightwatcher-0.7.7", layers=layers)
        assert_same_table(ours, run_weightwatcher(model, layers=layers))


def test_failed_fit_matches_weightwatcher():
    torch.manual_seed(3)
    model = torch.nn.Sequential(torch.nn.Linear(20, 20), torch.nn.Linear(30, 12))
    with torch.no_grad():
        model[0].weight.zero_()  # all eigenvalues 0: the fit fails
    ours = hts_fast.analyze(model, compat="weightwatcher-0.7.7")
    theirs = run_weightwatcher(model)
    assert list(ours["status"]) == list(theirs["status"]) == ["failed", "success"]
    assert ours.loc[0, "warning"] == theirs.loc[0, "warning"] == "over-trained"
    for col in ("alpha", "D", "sigma", "xmin", "num_pl_spikes"):
        assert ours.loc[0, col] == theirs.loc[0, col] == -1
    assert_same_table(ours.iloc[1:].reset_index(drop=True),
                      theirs.iloc[1:].reset_index(drop=True))  # fmt: skip


def test_tied_weights_are_analyzed_twice_like_weightwatcher():
    torch.manual_seed(4)
    emb = torch.nn.Embedding(64, 16)
    head = torch.nn.Linear(16, 64, bias=False)
    head.weight = emb.weight
    model = torch.nn.Sequential(emb, torch.nn.Linear(16, 16), head)
    ours = hts_fast.analyze(model, compat="weightwatcher-0.7.7")
    assert_same_table(ours, run_weightwatcher(model))
    assert len(ours) == 3
