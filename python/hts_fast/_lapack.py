"""Hand SciPy's LAPACK/BLAS function pointers to the compiled kernels.

hts_fast links no LAPACK of its own. SciPy exports its LAPACK and BLAS as Cython function
pointers (``scipy.linalg.cython_lapack`` / ``cython_blas``); the kernels call exactly the
routines ``scipy.linalg.svd`` calls, which is what WeightWatcher uses on a CPU.

One routine SciPy does not export is used when present: LAPACK's two-stage ``dsyevd``
(eigenvalues only), ~1.5x faster than ``dsyevd`` for the Gram ESDs of order >= 2,048 (n =
3,072 here: 1.8 s vs 2.6 s, one thread). The OpenBLAS in SciPy's wheels has it (LP64, the
same 32-bit integers as ``cython_lapack``); its address is looked up there, and
``HTS_FAST_TWO_STAGE=0`` turns it off. Without it the kernels use ``dsyevd`` everywhere; the
two give eigenvalues equal to ~1e-14 relative.
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path
from types import ModuleType

#: The LP64 names of dsyevd_2stage in SciPy's OpenBLAS, then in a plain LAPACK.
TWO_STAGE_SYMBOLS = ("scipy_dsyevd_2stage_", "dsyevd_2stage_")


def _two_stage_address() -> int:
    """The address of dsyevd_2stage in the OpenBLAS SciPy's wheel ships, or 0."""
    if os.environ.get("HTS_FAST_TWO_STAGE", "1") == "0":
        return 0
    import scipy

    libs = Path(scipy.__file__).resolve().parent.parent / "scipy.libs"
    for path in sorted(libs.glob("libscipy_openblas*.so*")):
        if "openblas64" in path.name:  # ILP64: 64-bit integers, not cython_lapack's
            continue
        try:
            library = ctypes.CDLL(str(path))
        except OSError:
            continue
        for name in TWO_STAGE_SYMBOLS:
            function = getattr(library, name, None)
            if function is not None:
                return int(ctypes.cast(function, ctypes.c_void_p).value or 0)
    return 0


def register(core: ModuleType) -> str:
    """Install dgesdd, dsyevd, dsyrk, the float32 Gram route's ssyrk (and dsyevd_2stage
    when found) into ``core``; return where they came from."""
    from scipy.linalg import cython_blas, cython_lapack

    lapack = cython_lapack.__pyx_capi__
    blas = cython_blas.__pyx_capi__
    two_stage = _two_stage_address()
    core._register_lapack(lapack["dgesdd"], lapack["dsyevd"], blas["dsyrk"], two_stage,
                          blas["ssyrk"])  # fmt: skip
    source = "scipy.linalg.cython_lapack / cython_blas"
    return source + ("; dsyevd_2stage from SciPy's OpenBLAS" if two_stage else "")
