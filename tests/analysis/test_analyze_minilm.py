"""Parity on a real pretrained model: all-MiniLM-L6-v2 (39 analyzed layers)."""

from __future__ import annotations

import hts_fast
import numpy as np
import pytest

from ..conftest import REQUIRE_REFERENCES
from ..packaged_model import load_minilm
from ..weightwatcher_reference import assert_same_table, run_weightwatcher

pytestmark = pytest.mark.weightwatcher


@pytest.fixture(scope="module")
def minilm() -> dict[str, np.ndarray]:
    try:
        return load_minilm()
    except ImportError as exc:
        if REQUIRE_REFERENCES:
            raise
        pytest.skip(str(exc))


def test_minilm_compat_matches_weightwatcher(minilm):
    ours = hts_fast.analyze(minilm, compat="weightwatcher-0.7.7")
    theirs = run_weightwatcher(minilm)
    assert len(ours) == 39
    assert_same_table(ours, theirs)
    # spot values from the reference doc: position_embeddings has id 2
    assert ours.iloc[0]["name"] == "embeddings.position_embeddings"
    assert ours.iloc[0]["layer_id"] == 2


def test_minilm_gram_route_within_1e9_of_svd_route(minilm):
    svd = hts_fast.analyze(minilm)
    gram = hts_fast.analyze(minilm, esd_method="gram")
    for col in ("alpha", "alpha_weighted", "D", "xmin", "xmax", "sigma", "lambda_max", "norm",
                "log_norm", "log_spectral_norm", "log_alpha_norm", "stable_rank", "entropy",
                "sv_max"):  # fmt: skip
        np.testing.assert_allclose(gram[col], svd[col], rtol=1e-9, err_msg=col)
    assert list(gram["num_pl_spikes"]) == list(svd["num_pl_spikes"])
