"""The block-built DataFrame equals pandas' plain constructor, dtypes included."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hts_fast import _frame


def _columns(rows: int) -> dict:
    rng = np.random.default_rng(rows)
    strings = pd.array([f"layer.{k}" for k in range(rows)], dtype="str")
    return {
        "layer_id": np.arange(rows, dtype=np.int64),
        "name": strings,
        "alpha": rng.random(rows),
        "has_esd": rng.random(rows) > 0.5,
        "num_evals": rng.integers(0, 100, rows).astype(np.int64),
        "xmin": rng.random(rows),
        "status": pd.array(["success"] * rows, dtype="str"),
        "Q": rng.random(rows),
    }


@pytest.mark.parametrize("rows", [0, 1, 7])
def test_block_frame_equals_plain_constructor(rows):
    columns = _columns(rows)
    fast = _frame.frame_from_columns(columns)
    plain = _frame.frame_from_columns(columns, blocks=False)
    pd.testing.assert_frame_equal(fast, plain)
    assert list(fast.columns) == list(columns)
    assert fast["layer_id"].dtype == np.int64
    assert fast["has_esd"].dtype == bool
    # the frame owns its numeric data: changing it leaves the inputs alone
    if rows:
        fast.loc[0, "alpha"] = -5.0
        assert columns["alpha"][0] != -5.0


def test_columns_of_different_lengths_are_refused():
    if _frame.create_dataframe_from_blocks is None:
        pytest.skip("pandas < 2.3 has no block constructor")
    with pytest.raises(ValueError, match="differ in length"):
        _frame.frame_from_columns({"a": np.zeros(2), "b": np.zeros(3)})


def test_index_names_set_on_one_frame_stay_off_the_next():
    # the row and column indexes are cached; each frame must still get its own objects
    columns = _columns(3)
    first = _frame.frame_from_columns(columns)
    first.index.name, first.columns.name = "row", "column"
    second = _frame.frame_from_columns(columns)
    assert (second.index.name, second.columns.name) == (None, None)
    assert (first.index.name, first.columns.name) == ("row", "column")


def test_empty_skipped_tables_are_independent():
    """The empty skipped-layers table shares its (empty) blocks between results: it equals
    the one built from empty columns, and growing one leaves the next empty."""
    from hts_fast._table import SKIPPED_COLUMNS, skipped_frame, to_frame

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
@pytest.mark.parametrize("template", [True, False])
def test_string_arrays_equal_pandas_own(monkeypatch, values, template):
    """_table.string_array (pandas' str dtype, each value made a str) equals the array pandas
    itself builds, from its template or (as with pyarrow strings) from _from_sequence, and
    every call gives a new array."""
    from hts_fast import _table
    from hts_fast._table import string_array

    if not template:
        monkeypatch.setattr(_table, "_STRING_TEMPLATE", None)
    ours = string_array(values)
    theirs = pd.array([str(v) for v in values], dtype="str")
    assert ours.dtype == theirs.dtype
    assert type(ours) is type(theirs)
    pd.testing.assert_extension_array_equal(ours, theirs)
    again = string_array(values)
    if len(values):
        again[0] = "changed"
        assert ours[0] == str(values[0])
