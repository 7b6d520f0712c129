"""Byte-level mutations of valid checkpoint files, shared by the fuzz tests."""

from __future__ import annotations

import numpy as np


def mutate(
    rng: np.random.Generator, data: bytes, boundary: list[bytes], *, resize: bool = True,
    focus_end: int | None = None, max_span: int = 64,
) -> bytes:  # fmt: skip
    """Apply 1-3 random mutations: a bit flip or an overwrite with a ``boundary`` value and,
    with ``resize``, a truncation or a duplicated or deleted span of up to ``max_span``
    bytes. With ``focus_end``, 70% of the mutations land before that offset (the header)."""
    buf = bytearray(data)
    for _ in range(int(rng.integers(1, 4))):
        limit = focus_end if focus_end is not None and rng.random() < 0.7 else len(buf)
        at = int(rng.integers(0, max(1, min(limit, len(buf)))))
        kind = int(rng.integers(0, 5 if resize else 2))
        if kind == 0 and buf:
            buf[at] ^= 1 << int(rng.integers(0, 8))
        elif kind == 1:
            chunk = boundary[int(rng.integers(0, len(boundary)))]
            buf[at : at + len(chunk)] = chunk
        elif kind == 2:
            del buf[at:]
        elif kind == 3:
            buf[at:at] = buf[at : at + int(rng.integers(1, max_span))]
        else:
            del buf[at : at + int(rng.integers(1, max_span))]
    return bytes(buf)
