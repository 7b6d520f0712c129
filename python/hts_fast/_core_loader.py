"""Import the compiled extension once, with a useful message when it is missing."""

from __future__ import annotations

from . import _lapack

try:
    from . import _core as core
except ImportError as exc:  # pragma: no cover - only on a broken install
    msg = (
        "hts_fast's compiled extension hts_fast._core could not be imported "
        f"({exc}). Did you install the package with 'pip install .' (it builds the C++ "
        "kernels with CMake) rather than importing it from the source tree?"
    )
    raise ImportError(msg) from exc

LAPACK_SOURCE = _lapack.register(core)

__all__ = ["LAPACK_SOURCE", "core"]
