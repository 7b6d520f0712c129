"""Parity on genuine Hugging Face model classes (built from a config, random weights, offline)."""

from __future__ import annotations

import contextlib
import io
import warnings

import hts_fast
import pytest

from ..conftest import REQUIRE_REFERENCES
from ..weightwatcher_reference import assert_same_table, run_weightwatcher

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.weightwatcher


def _transformers():
    try:
        with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            import transformers
    except ImportError:
        if REQUIRE_REFERENCES:
            raise
        pytest.skip("transformers is not installed")
    return transformers


def _build(factory):
    torch.manual_seed(0)
    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        return factory().eval()


def test_gpt2_conv1d_layers_and_tied_head_match_weightwatcher():
    tf = _transformers()
    config = tf.GPT2Config(n_layer=2, n_embd=64, n_head=4, vocab_size=500, n_positions=128,
                           bos_token_id=0, eos_token_id=0)  # fmt: skip
    model = _build(lambda: tf.GPT2LMHeadModel(config))
    ours = hts_fast.analyze(model, compat="weightwatcher-0.7.7")
    assert_same_table(ours, run_weightwatcher(model))
    assert "conv1d" in set(ours["layer_type"])  # HF's GPT-2 Conv1D, a 2-D (in, out) weight
    assert {"wte", "lm_head"} <= set(ours["name"])  # tied: WeightWatcher analyzes both
    default = hts_fast.analyze(model)
    assert "lm_head" not in set(default["name"])  # analyzed once by default
    reasons = default.attrs["skipped"].set_index("name")["skip_reason"]
    assert reasons["lm_head"].startswith("shares its weight with layer")


def test_bert_matches_weightwatcher():
    tf = _transformers()
    config = tf.BertConfig(num_hidden_layers=2, hidden_size=64, num_attention_heads=4,
                           intermediate_size=256, vocab_size=300, max_position_embeddings=64)  # fmt: skip
    model = _build(lambda: tf.BertModel(config))
    ours = hts_fast.analyze(model, compat="weightwatcher-0.7.7")
    assert_same_table(ours, run_weightwatcher(model))
    assert len(ours) > 10
