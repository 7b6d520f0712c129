"""The portable C++ routes equal the native ones bit for bit.

MSVC has no ``unsigned __int128`` and non-x86 targets no SSE2, so hts128 and the shuffle have
a 32-bit-limb 64x64->128 multiply and a plain accumulation loop. tests/portable_driver.cpp
builds the hash and shuffle kernels with both forced (HTS_MUL128_PORTABLE,
HTS_HASH128_SCALAR) using the system C++ compiler; their results must equal hts_fast._core's,
and both multiplies must equal Python's integer product.
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from hts_fast import _core

ROOT = Path(__file__).resolve().parents[1]
CXX = shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")

pytestmark = [
    pytest.mark.skipif(CXX is None, reason="no C++ compiler on PATH"),
    pytest.mark.skipif(not (ROOT / "csrc").is_dir(), reason="not run from a source tree"),
]

MASK64 = (1 << 64) - 1
#: factors at the limb boundaries, where a carry between the 32-bit halves is likeliest wrong
EDGES = [0, 1, 2, 3, 0xFFFFFFFF, 0x100000000, 0x100000001, 0xFFFFFFFF00000000,
         0x00000000FFFFFFFF, 0x8000000000000000, 0x7FFFFFFFFFFFFFFF, MASK64 - 1, MASK64,
         0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9]  # fmt: skip


@pytest.fixture(scope="module")
def portable(tmp_path_factory) -> ctypes.CDLL:
    lib_path = tmp_path_factory.mktemp("portable") / "libportable.so"
    subprocess.run(
        [CXX, "-std=c++17", "-O2", "-shared", "-fPIC", "-Wall", "-Wextra", "-Werror",
         "-DHTS_MUL128_PORTABLE", "-DHTS_HASH128_SCALAR", f"-I{ROOT / 'csrc' / 'include'}",
         str(ROOT / "tests" / "portable_driver.cpp"), str(ROOT / "csrc" / "cpu" / "hash128.cpp"),
         str(ROOT / "csrc" / "cpu" / "shuffle.cpp"), "-o", str(lib_path)],
        check=True,
    )  # fmt: skip
    lib = ctypes.CDLL(str(lib_path))
    u64, size = ctypes.c_uint64, ctypes.c_size_t
    lib.driver_mul128.argtypes = [u64, u64, ctypes.POINTER(u64)]
    lib.driver_mul128_route.restype = ctypes.c_char_p
    lib.driver_hash128.argtypes = [ctypes.c_char_p, size, ctypes.c_char_p]
    lib.driver_shuffle.argtypes = [ctypes.c_void_p, size, size, u64]
    return lib


def _pairs() -> list[tuple[int, int]]:
    rng = np.random.default_rng(11)
    random = rng.integers(0, 2**64, size=(2000, 2), dtype=np.uint64, endpoint=False)
    return [(a, b) for a in EDGES for b in EDGES] + [(int(a), int(b)) for a, b in random]


def _portable_mul(lib: ctypes.CDLL, a: int, b: int) -> tuple[int, int]:
    out = (ctypes.c_uint64 * 2)()
    lib.driver_mul128(a, b, out)
    return out[0], out[1]


def test_both_multiplies_equal_the_integer_product(portable):
    assert portable.driver_mul128_route() == b"portable"
    for a, b in _pairs():
        exact = a * b
        expected = (exact & MASK64, exact >> 64)
        assert _portable_mul(portable, a, b) == expected, (hex(a), hex(b))
        assert _core._mul128(a, b) == expected, (hex(a), hex(b))


def _portable_hash(lib: ctypes.CDLL, data: bytes) -> bytes:
    out = ctypes.create_string_buffer(16)
    lib.driver_hash128(data, len(data), out)
    return out.raw


@pytest.mark.parametrize("n", [0, 1, 8, 63, 64, 65, 1023, 1024, 1025, 2049, 114_217])
def test_portable_hash_equals_the_module(portable, n):
    data = np.random.default_rng(n).integers(0, 256, n, dtype=np.uint8).tobytes()
    assert _portable_hash(portable, data) == _core.hash128(data)


def test_portable_hash_gives_the_known_digests(portable):
    # the fixed values of tests/zoo/test_hash128.py
    assert _portable_hash(portable, b"").hex() == "0639ce84d6c69912e5fa271db8c98335"
    assert _portable_hash(portable, b"hts_fast").hex() == "da32a452d89bccea5b41baae79fa43ce"


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.uint32, np.uint64])
@pytest.mark.parametrize("count", [2, 1000, 100_003])  # one bucket; several (32,768 each)
def test_portable_shuffle_equals_the_module(portable, dtype, count):
    ours = np.arange(count).astype(dtype)
    theirs = ours.copy()
    _core.shuffle(ours, 2024)
    portable.driver_shuffle(theirs.ctypes.data, count, theirs.itemsize, 2024)
    np.testing.assert_array_equal(ours, theirs)
    if count > 2:
        assert not np.array_equal(ours, np.arange(count).astype(dtype))  # it did shuffle
