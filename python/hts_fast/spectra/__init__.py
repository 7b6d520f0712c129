"""Spectra: the eigenvalues of W^T W (the ESD) of one matrix or many.

Modules
-------
esd
    :func:`hts_fast.esd` and :func:`hts_fast.esd_batch`, the public entry points: input
    checks, then the exact or the randomized route.
exact
    The exact routes through the compiled kernels (``csrc/cpu/esd.cpp``, bound in
    ``csrc/bindings/bind_esd.cpp``): dgesdd (``"svd"``) or a Gram product and dsyevd
    (``"gram"``), one single-threaded LAPACK call per matrix; their error messages.
randomized
    Certified top-k eigenvalues by block Krylov (NumPy/BLAS), and the power-law fit on them.
conv2d
    Conv2d kernels as ``kh*kw`` matrices with WeightWatcher's conventions, and their ESDs.
gpu
    The optional GPU backend: cuSOLVER through CuPy or torch, and the CUDA fit kernels
    (``csrc/cuda``, compiled as ``hts_fast._cuda`` or at run time by CuPy).

LAPACK and BLAS come from SciPy (``hts_fast._lapack`` hands their addresses to the kernels);
thread counts and BLAS pinning live in ``hts_fast._threads``.
"""
