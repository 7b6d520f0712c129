"""fix_fingers="clip_xmax": WeightWatcher 0.7.7's clipped power-law fits, column for column."""

from __future__ import annotations

import hts_fast
import numpy as np
import pytest

from ..weightwatcher_reference import assert_same_table, run_weightwatcher

COMPAT = "weightwatcher-0.7.7"


def _state() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {"a.weight": rng.standard_t(2.5, (300, 200)).astype(np.float32),
            "b.weight": rng.standard_t(4.0, (200, 120)).astype(np.float32),
            "c.weight": rng.standard_normal((32, 16, 3, 3)).astype(np.float32),
            "d.weight": rng.standard_t(3.0, (60, 40)).astype(np.float32)}  # fmt: skip


@pytest.mark.weightwatcher
def test_compat_matches_weightwatcher():
    state = _state()
    theirs = run_weightwatcher(state, fix_fingers="clip_xmax")
    ours = hts_fast.analyze(state, fix_fingers="clip_xmax", compat=COMPAT)
    assert_same_table(ours, theirs, list(theirs.columns))
    assert (ours["num_fingers"] > 0).sum() >= 2  # the test data has fingers to clip


def test_default_counts_what_was_clipped_and_keeps_the_rest():
    state = _state()
    ours = hts_fast.analyze(state, fix_fingers="clip_xmax")
    compat = hts_fast.analyze(state, fix_fingers="clip_xmax", compat=COMPAT)
    clipped = compat["num_fingers"] > 0
    # WeightWatcher reports one finger fewer than it clipped
    np.testing.assert_array_equal(ours["num_fingers"][clipped], compat["num_fingers"][clipped] + 1)
    plain = hts_fast.analyze(state)
    np.testing.assert_array_equal(ours["raw_alpha"], plain["alpha"])
    assert (ours["alpha"][clipped] + 1 < ours["raw_alpha"][clipped]).all()
    with pytest.raises(ValueError, match="fix_fingers"):
        hts_fast.analyze(state, fix_fingers="bogus")


def test_default_without_room_to_clip_keeps_the_raw_fit():
    state = _state()
    for limit in (1, 2):
        table = hts_fast.analyze(state, fix_fingers="clip_xmax", max_fingers=limit)
        assert (table["status"] == "success").all()
        assert (table["num_fingers"] == 0).all()
        np.testing.assert_array_equal(table["alpha"], table["raw_alpha"])
    with pytest.raises(ValueError, match="max_fingers"):
        hts_fast.analyze(state, fix_fingers="clip_xmax", max_fingers=0)
    with pytest.raises(ValueError, match="compare=True"):
        hts_fast.analyze(state, fix_fingers="clip_xmax", compare=True)


def test_xmin_peak_restricts_the_search_to_the_peak():
    from hts_fast import _reference
    from hts_fast.fits.tpl_search import peak_xmin_range

    state = _state()
    spectra: dict[int, np.ndarray] = {}
    table = hts_fast.analyze(state, fix_fingers="xmin_peak", _spectra_sink=spectra)
    for k, evals in spectra.items():
        scan = _reference.powerlaw_scan(evals)
        low, high = peak_xmin_range(scan["x"])
        inside = [i for i, x in enumerate(scan["xmins"])
                  if low <= x < high and scan["alphas"][i] > 1]  # fmt: skip
        best = min(inside, key=lambda i: (scan["Ds"][i], i))
        row = table.iloc[k]
        assert row["xmin"] == scan["xmins"][best]
        np.testing.assert_allclose(row["alpha"], scan["alphas"][best], rtol=1e-12)
        np.testing.assert_allclose(row["D"], scan["Ds"][best], rtol=1e-9)
        assert row["fit_method"] == "xmin_peak"


@pytest.mark.weightwatcher
def test_xmin_peak_compat_fails_like_weightwatcher():
    state = _state()
    theirs = run_weightwatcher(state, fix_fingers="xmin_peak")
    ours = hts_fast.analyze(state, fix_fingers="xmin_peak", compat=COMPAT)
    assert_same_table(ours, theirs)
    assert (ours["status"] == "failed").all()
