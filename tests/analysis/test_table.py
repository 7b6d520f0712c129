"""The result table's DataFrame: pandas' own dtypes, str columns in pandas' str dtype."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hts_fast.analysis.table import SKIPPED_COLUMNS, skipped_frame, string_array, to_frame


def test_to_frame_keeps_the_column_dtypes_and_owns_its_data():
    rng = np.random.default_rng(3)
    columns = {"layer_id": np.arange(4, dtype=np.int64), "name": ["a", "b", "c", "d"],
               "alpha": rng.random(4), "has_esd": rng.random(4) > 0.5}  # fmt: skip
    frame = to_frame(columns)
    assert list(frame.columns) == list(columns)
    assert frame["layer_id"].dtype == np.int64
    assert frame["has_esd"].dtype == bool
    assert frame["name"].dtype == pd.array([], dtype="str").dtype
    assert isinstance(frame.index, pd.RangeIndex)
    frame.loc[0, "alpha"] = -5.0
    assert columns["alpha"][0] != -5.0


def test_skipped_tables_are_typed_alike_empty_or_not():
    """layer_id int64, the others str, whether layers were skipped or not; growing an empty
    one leaves the next empty."""
    first = skipped_frame([])
    built = to_frame({"layer_id": np.zeros(0, dtype=np.int64),
                      **{col: [] for col in SKIPPED_COLUMNS[1:]}})  # fmt: skip
    pd.testing.assert_frame_equal(first, built)
    first.loc[0] = [7, "a", "a", "dense", "why"]
    first["extra"] = 1.0
    second = skipped_frame([])
    assert second.empty
    assert list(second.columns) == SKIPPED_COLUMNS
    pd.testing.assert_frame_equal(second, built)


@pytest.mark.parametrize("values", [[], ["a", "layer.0"], ("x", 3, None, 2.5)])
def test_string_arrays_equal_pandas_own(values):
    """string_array (pandas' str dtype, each value made a str) equals the array pandas builds
    from the same strings, and every call gives a new array."""
    ours = string_array(values)
    theirs = pd.array([str(v) for v in values], dtype="str")
    assert ours.dtype == theirs.dtype
    assert type(ours) is type(theirs)
    pd.testing.assert_extension_array_equal(ours, theirs)
    again = string_array(values)
    if len(values):
        again[0] = "changed"
        assert ours[0] == str(values[0])
