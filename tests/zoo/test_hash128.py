"""hts128, the scan's content hash: the compiled kernel against the NumPy definition."""

from __future__ import annotations

import hashlib
import io
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from hts_fast import _core
from hts_fast import _reference as ref

#: lengths around the stripe (64 bytes) and block (1,024 bytes) boundaries, and larger
EDGE_LENGTHS = [0, 1, 7, 8, 9, 63, 64, 65, 127, 128, 960, 1023, 1024, 1025, 1088, 2047,
                2048, 2049, 4096 + 100, 114_217]  # fmt: skip


def _data(n: int, seed: int = 0) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()


@pytest.mark.parametrize("n", EDGE_LENGTHS)
def test_kernel_matches_the_reference(n):
    data = _data(n, seed=n)
    assert _core.hash128(data) == ref.hash128(data)


def test_known_digests():
    # fixed values: a change of the definition, or a platform that computes it differently,
    # would make every store's hashes stale
    assert _core.hash128(b"").hex() == "0639ce84d6c69912e5fa271db8c98335"
    assert _core.hash128(b"hts_fast").hex() == "da32a452d89bccea5b41baae79fa43ce"
    assert _core.hash128(bytes(range(256)) * 8).hex() == "1138de7823dd5045c357e1abfc274732"
    assert ref.hash128(b"hts_fast").hex() == "da32a452d89bccea5b41baae79fa43ce"


def test_streaming_in_any_chunks_equals_one_call():
    data = _data(50_000, seed=1)
    expected = _core.hash128(data)
    rng = np.random.default_rng(2)
    for _ in range(20):
        h = _core.Hash128()
        k = 0
        while k < len(data):
            step = int(rng.integers(0, 3000))
            h.update(data[k : k + step])
            k += step
        assert h.digest() == expected
        assert h.hexdigest() == expected.hex()
    # as hashlib.file_digest's digest factory
    assert hashlib.file_digest(io.BytesIO(data), _core.Hash128).digest() == expected


def test_any_one_byte_change_changes_the_hash():
    data = bytearray(_data(3000, seed=3))
    seen = {_core.hash128(data)}
    for k in range(len(data)):
        for flip in (0x01, 0x80):
            data[k] ^= flip
            seen.add(_core.hash128(data))
            data[k] ^= flip
    assert len(seen) == 1 + 2 * len(data)


def test_lengths_order_and_zeros_are_told_apart():
    data = _data(4096, seed=4)
    # trailing zero bytes (the padding of the last stripe) change the length, so the hash
    digests = {_core.hash128(data[:100] + bytes(k)) for k in range(70)}
    assert len(digests) == 70
    assert len({_core.hash128(bytes(n)) for n in range(2100)}) == 2100
    # two stripes of one block swapped, two blocks swapped
    swapped = data[64:128] + data[:64] + data[128:]
    blocks = data[1024:2048] + data[:1024] + data[2048:]
    assert len({_core.hash128(data), _core.hash128(swapped), _core.hash128(blocks)}) == 3


def test_buffers_and_threads():
    data = _data(300_000, seed=5)
    expected = _core.hash128(data)
    array = np.frombuffer(data, dtype=np.uint8)
    assert _core.hash128(array) == _core.hash128(memoryview(data)) == expected
    assert _core.hash128(array.view(np.float32)) == expected
    with pytest.raises(ValueError, match="contiguous"):
        _core.hash128(array[::2])
    with ThreadPoolExecutor(4) as pool:  # the GIL is released for large inputs
        assert set(pool.map(_core.hash128, [data] * 16)) == {expected}
