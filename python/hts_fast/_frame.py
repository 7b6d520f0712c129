"""Fast construction of a DataFrame from typed columns.

``pd.DataFrame(dict_of_arrays)`` re-checks and re-infers every column one by one, which costs
more than the metrics themselves on models with many small layers. Columns that already have
their final dtype are stacked into one block per dtype and handed to pandas' public block
constructor (``pandas.api.internals.create_dataframe_from_blocks``, pandas >= 2.3); older
pandas takes the plain constructor. Both give the same frame.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import pandas as pd
from pandas.api.extensions import ExtensionArray

try:
    from pandas.api.internals import create_dataframe_from_blocks
except ImportError:  # pandas < 2.3
    create_dataframe_from_blocks = None


def frame_from_columns(columns: dict[str, Any], *, blocks: bool = True) -> pd.DataFrame:
    """Return a DataFrame with these columns, in this order, with a RangeIndex.

    Every value must be a 1-D NumPy array (bool, int64, float64, ...) or a pandas extension
    array, all of the same length; dtypes are kept as given (no inference). ``blocks=False``
    forces the plain ``pd.DataFrame`` constructor (for tests of the equivalence).
    """
    if not blocks or create_dataframe_from_blocks is None or not columns:
        return pd.DataFrame(columns, copy=False)
    lengths = {len(values) for values in columns.values()}
    if len(lengths) != 1:
        msg = f"columns differ in length: {sorted(lengths)}"
        raise ValueError(msg)
    by_dtype: dict[np.dtype, list[int]] = {}
    parts: list[tuple[Any, np.ndarray]] = []
    arrays = list(columns.values())
    for position, values in enumerate(arrays):
        if isinstance(values, np.ndarray) and values.ndim == 1 and values.dtype != object:
            by_dtype.setdefault(values.dtype, []).append(position)
        else:
            array = values if isinstance(values, ExtensionArray) else pd.array(values, copy=False)
            parts.append((array, np.array([position], dtype=np.intp)))
    for dtype, positions in by_dtype.items():
        # (columns, rows), as pandas stores a block; np.array copies the rows in one C call
        # (np.stack goes through several Python-level helpers, which cost more than the copy)
        block = np.array([arrays[p] for p in positions], dtype=dtype)
        parts.append((block, np.array(positions, dtype=np.intp)))
    return frame_from_blocks(parts, lengths.pop(), tuple(columns))


def frame_from_blocks(
    parts: list[tuple[Any, np.ndarray]], rows: int, names: tuple[str, ...]
) -> pd.DataFrame:
    """The DataFrame of these blocks: each a (columns, rows) NumPy array or a 1-D extension
    array, with the positions of its columns among ``names``; a RangeIndex of ``rows``.
    Needs pandas >= 2.3 (pandas.api.internals)."""
    # views of cached indexes: building them costs more than a small table's blocks, and a
    # view per frame keeps a name set on one frame's index off the others
    index = _range_index(rows).view()
    columns = _column_index(names).view()
    return create_dataframe_from_blocks(parts, index=index, columns=columns)


@functools.lru_cache(maxsize=256)
def _range_index(length: int) -> pd.RangeIndex:
    """RangeIndex(length), built once per length (handed out as views)."""
    return pd.RangeIndex(length)


@functools.lru_cache(maxsize=64)
def _column_index(names: tuple[str, ...]) -> pd.Index:
    """The columns' Index, built once per list of names (handed out as views)."""
    return pd.Index(list(names))
