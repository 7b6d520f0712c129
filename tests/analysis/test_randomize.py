"""randomize=True: shuffled-weights spectra, WeightWatcher 0.7.7's numbers in compat mode."""

from __future__ import annotations

import hts_fast
import numpy as np
import pytest

from ..weightwatcher_reference import run_weightwatcher

COMPAT = "weightwatcher-0.7.7"
COLUMNS = ["max_rand_eval", "rand_distance", "ww_softrank", "ww_maxdist"]


def _state(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "small.weight": rng.standard_normal((60, 40)).astype(np.float32),  # < 100 evals: 5 copies
        "dense.weight": rng.standard_normal((300, 200)).astype(np.float32),
        "conv.weight": rng.standard_normal((32, 16, 3, 3)).astype(np.float32),
        # out < in with an even kernel size: WeightWatcher's N/M toggle decides its copies
        "toggled.weight": rng.standard_normal((16, 48, 2, 2)).astype(np.float32),
    }


@pytest.mark.weightwatcher
def test_compat_matches_weightwatcher_for_the_same_seed() -> None:
    state = _state()
    np.random.seed(5)  # noqa: NPY002 - WeightWatcher draws from the legacy global state
    theirs = run_weightwatcher(state, randomize=True)
    ours = hts_fast.analyze(state, compat=COMPAT, randomize=True, seed=5)
    assert list(ours["layer_id"]) == list(theirs["layer_id"])
    for col in COLUMNS:
        np.testing.assert_allclose(ours[col], theirs[col], rtol=1e-9, err_msg=col)
    # seed=None draws from the global generator, as WeightWatcher does
    np.random.seed(5)  # noqa: NPY002 - WeightWatcher draws from the legacy global state
    global_state = hts_fast.analyze(state, compat=COMPAT, randomize=True)
    assert global_state[COLUMNS].equals(ours[COLUMNS])
    # the other columns are those of a plain analysis, and every WeightWatcher column is there
    plain = hts_fast.analyze(state, compat=COMPAT)
    assert ours[plain.columns].equals(plain)
    ww_columns = [c for c in ours.columns if c in theirs.columns]
    assert ww_columns == [c for c in theirs.columns if c in ours.columns]


def test_default_is_seeded_per_layer() -> None:
    state = _state(1)
    first = hts_fast.analyze(state, randomize=True, seed=3, threads=1)
    again = hts_fast.analyze(state, randomize=True, seed=3, threads=2)
    assert first.equals(again)
    other = hts_fast.analyze(state, randomize=True, seed=4)
    assert not np.array_equal(first["max_rand_eval"], other["max_rand_eval"])
    # a layer's numbers do not depend on which other layers are analyzed
    alone = hts_fast.analyze(state, randomize=True, seed=3, layers=["conv"])
    row = first[first["name"] == "conv"][COLUMNS].to_numpy()
    np.testing.assert_array_equal(alone[COLUMNS].to_numpy(), row)
    assert hts_fast.analyze(state, randomize=True)[COLUMNS].equals(
        hts_fast.analyze(state, randomize=True, seed=0)[COLUMNS])  # fmt: skip


def test_random_and_structured_layers_are_told_apart() -> None:
    rng = np.random.default_rng(2)
    noise = rng.standard_normal((400, 300)) / np.sqrt(400)
    u, v = rng.standard_normal(400), rng.standard_normal(300)
    spiked = noise + 3 * np.outer(u, v) / np.sqrt(400 * 300)
    table = hts_fast.analyze({"noise.weight": noise, "spiked.weight": spiked}, randomize=True)
    noise_row, spiked_row = table.iloc[0], table.iloc[1]
    # shuffling pure noise changes nothing; a planted spike is destroyed by shuffling
    assert 0.9 < noise_row["ww_softrank"] < 1.1
    assert noise_row["rand_distance"] < 0.05
    assert spiked_row["ww_softrank"] < 0.5
    assert spiked_row["ww_maxdist"] > spiked_row["max_rand_eval"]
    # shuffled entries of the same values: the same Frobenius norm (sum of eigenvalues)
    np.testing.assert_allclose(spiked_row["norm"], (spiked**2).sum(), rtol=1e-12)


def test_lora_products_are_shuffled_explicitly() -> None:
    rng = np.random.default_rng(3)
    state = {"q.lora_A.weight": rng.standard_normal((16, 48)),
             "q.lora_B.weight": rng.standard_normal((64, 16))}  # fmt: skip
    table = hts_fast.analyze(state, peft=True, randomize=True)
    assert len(table) == 1
    # a shuffled rank-16 product is full rank: its 16 largest eigenvalues are kept
    assert table["num_evals"].item() == 16
    assert np.isfinite(table[COLUMNS].to_numpy()).all()


MP_AND_DETX = ["num_spikes", "sigma_mp", "mp_softrank", "W_scale", "bulk_max", "bulk_min",
               "detX_num", "detX_val", "detX_val_unrescaled", "num_ERG_spikes", "ERG_gap",
               "rand_num_spikes", "num_traps", "rand_sigma_mp", "rand_mp_softrank",
               "rand_W_scale", "rand_bulk_max", "rand_bulk_min"]  # fmt: skip


@pytest.mark.weightwatcher
def test_every_option_column_matches_weightwatcher() -> None:
    from ..weightwatcher_reference import assert_same_table

    state = _state(2)
    state["square.weight"] = np.random.default_rng(9).standard_t(3, (64, 64)).astype(np.float32)
    np.random.seed(11)  # noqa: NPY002 - WeightWatcher draws from the legacy global state
    theirs = run_weightwatcher(state, randomize=True, mp_fit=True, detX=True)
    ours = hts_fast.analyze(state, compat=COMPAT, randomize=True, seed=11, mp_fit=True,
                            detX=True)  # fmt: skip
    assert set(MP_AND_DETX + COLUMNS) <= set(theirs.columns)
    assert_same_table(ours, theirs, list(theirs.columns))


def test_default_option_columns() -> None:
    table = hts_fast.analyze(_state(3), mp_fit=True, detX=True)
    compat = hts_fast.analyze(_state(3), mp_fit=True, detX=True, compat=COMPAT)
    assert table["ERG_gap"].dtype == np.float64  # NaN for a layer without a fit
    assert compat["ERG_gap"].dtype == np.int64
    same = table["name"] != "toggled"  # WeightWatcher's N/M toggle changes Q there
    for col in ("sigma_mp", "bulk_max", "num_spikes", "detX_num"):
        np.testing.assert_allclose(table.loc[same, col], compat.loc[same, col], rtol=1e-12)
    np.testing.assert_array_equal(table["ERG_gap"], table["detX_num"] - table["num_pl_spikes"])


def test_compat_stream_continues_across_chunks(monkeypatch):
    import importlib

    module = importlib.import_module("hts_fast.analysis.pipeline")
    rng = np.random.default_rng(6)
    state = {f"l{k}.weight": rng.standard_normal((60, 40)).astype(np.float32) for k in range(4)}
    whole = hts_fast.analyze(state, compat=COMPAT, randomize=True, seed=5, threads=1)
    monkeypatch.setattr(module, "CHUNK_MIN_BYTES", 1)  # one layer per chunk
    monkeypatch.setattr(module, "CHUNK_MAX_BYTES", 1)
    chunked = hts_fast.analyze(state, compat=COMPAT, randomize=True, seed=5, threads=1)
    assert chunked[COLUMNS].equals(whole[COLUMNS])
