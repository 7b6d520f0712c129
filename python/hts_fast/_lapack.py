"""Hand SciPy's LAPACK/BLAS function pointers to the compiled kernels.

hts_fast links no LAPACK of its own. SciPy exports its LAPACK and BLAS as Cython function
pointers (``scipy.linalg.cython_lapack`` / ``cython_blas``); the kernels call exactly the
routines ``scipy.linalg.svd`` calls, which is what WeightWatcher uses on a CPU.
"""

from __future__ import annotations

from types import ModuleType


def register(core: ModuleType) -> str:
    """Install dgesdd, dsyevd and dsyrk into ``core``; return where they came from."""
    from scipy.linalg import cython_blas, cython_lapack

    lapack = cython_lapack.__pyx_capi__
    blas = cython_blas.__pyx_capi__
    core._register_lapack(lapack["dgesdd"], lapack["dsyevd"], blas["dsyrk"])
    return "scipy.linalg.cython_lapack / cython_blas"
