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


#: Off a terminal (progress=True into a log), the bar is written as a line at most this often.
LOG_SECONDS = 10.0


class _Lines:
    """A text stream that turns each of tqdm's refreshes into one line of ``stream``: tqdm
    starts every refresh with a carriage return, which a log file would run together on one
    line; blank refreshes (the clearing at the end) are dropped."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream

    def write(self, text: str) -> None:
        line = text.replace("\r", "").rstrip()
        if line:
            self.stream.write(line + "\n")

    def flush(self) -> None:
        self.stream.flush()


def progress_bar(total: int, *, progress: bool | None, desc: str, unit: str) -> Any:
    """A tqdm bar on stderr counting ``total`` units (done, rate, time left); a bar that
    prints nothing when :func:`wanted` says no. On a terminal it redraws in place; asked for
    (``progress=True``) off a terminal, it writes one line at most every LOG_SECONDS and a
    last one at the end. Use it as a context manager; ``update(n)`` counts n more units
    done."""
    from tqdm import tqdm

    if progress and not wanted(None):  # into a log: lines, not carriage returns
        return tqdm(total=total, desc=desc, unit=unit, file=_Lines(sys.stderr),
                    mininterval=LOG_SECONDS, ncols=100, leave=True)  # fmt: skip
    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, disable=not wanted(progress),
                dynamic_ncols=True, leave=False)  # fmt: skip
