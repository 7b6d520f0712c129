"""What was compiled and loaded, for bug reports and the test header."""

from __future__ import annotations

from typing import Any

from . import _threads
from ._core_loader import LAPACK_SOURCE, core
from .spectra import gpu


def build_info() -> dict[str, Any]:
    """Return the compiled backends (the GPU one: loaded, or why not), compiler and flags, LAPACK source and thread counts."""
    import numpy
    import scipy

    compile_info = dict(core._compile_info())
    return {
        "version": core.__version__,
        "backends": {
            "cpu": {"loaded": True, "module": "hts_fast._core"},
            "cuda": gpu.status(),
        },
        "compiler": compile_info["compiler"],
        "cxx_standard": compile_info["cxx_standard"],
        "cxx_flags": compile_info["cxx_flags"].strip(),
        "build_type": compile_info["build_type"],
        "hardware_threads": compile_info["hardware_threads"],
        "mul128": compile_info["mul128"],  # the 64x64->128 multiply: int128, umul128, ...
        "default_threads": _threads.available_cores(),
        "lapack": {
            "source": LAPACK_SOURCE,
            "ready": bool(core._lapack_ready()),
            "dsyevd_2stage": bool(core._two_stage_ready()),
        },
        "blas": _threads.blas_info(),
        "numpy": numpy.__version__,
        "scipy": scipy.__version__,
    }
