"""Progress bars on stderr (tqdm), shown where someone is watching: a terminal."""

from __future__ import annotations

import sys
from typing import Any


def check_progress(progress: Any) -> bool | None:
    """Validate a ``progress`` option: True, False or None (None: only on a terminal)."""
    if progress is not None and not isinstance(progress, bool):
        msg = f"progress must be True, False or None, got {progress!r}"
        raise TypeError(msg)
    return progress


def wanted(progress: bool | None) -> bool:
    """Whether to show a bar: ``progress`` itself, or for None whether stderr is a terminal."""
    if progress is None:
        isatty = getattr(sys.stderr, "isatty", None)
        return bool(isatty and isatty())
    return progress


def progress_bar(total: int, *, progress: bool | None, desc: str, unit: str) -> Any:
    """A tqdm bar on stderr counting ``total`` units (done, rate, time left); a bar that
    prints nothing when :func:`wanted` says no. Use it as a context manager; ``update(n)``
    counts n more units done."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, disable=not wanted(progress),
                dynamic_ncols=True, leave=False)  # fmt: skip
