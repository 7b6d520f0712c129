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
    for positions in by_dtype.values():
        block = np.stack([arrays[p] for p in positions])  # (columns, rows), as pandas stores
        parts.append((block, np.array(positions, dtype=np.intp)))
    index = pd.RangeIndex(lengths.pop())
    return create_dataframe_from_blocks(parts, index=index, columns=_column_index(tuple(columns)))


@functools.lru_cache(maxsize=64)
def _column_index(names: tuple[str, ...]) -> pd.Index:
    """The columns' Index, built once per list of names (Index objects are immutable)."""
    return pd.Index(list(names))
