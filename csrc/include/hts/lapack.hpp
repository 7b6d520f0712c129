// LAPACK/BLAS entry points used by the ESD kernels.
//
// hts_fast does not link a LAPACK of its own: at import time the Python layer hands over
// the function pointers that SciPy exports (scipy.linalg.cython_lapack / cython_blas), so
// the kernels run the very same LAPACK build as scipy.linalg.svd (which WeightWatcher uses)
// and no BLAS library has to be found at build time. The Fortran integer is 32-bit there.
#pragma once

#include <cstddef>

namespace hts {

using lapack_int = int;

using dgesdd_fn = void (*)(char* jobz, lapack_int* m, lapack_int* n, double* a, lapack_int* lda,
                           double* s, double* u, lapack_int* ldu, double* vt, lapack_int* ldvt,
                           double* work, lapack_int* lwork, lapack_int* iwork,
                           lapack_int* info);
using dsyevd_fn = void (*)(char* jobz, char* uplo, lapack_int* n, double* a, lapack_int* lda,
                           double* w, double* work, lapack_int* lwork, lapack_int* iwork,
                           lapack_int* liwork, lapack_int* info);
using dsyrk_fn = void (*)(char* uplo, char* trans, lapack_int* n, lapack_int* k, double* alpha,
                          double* a, lapack_int* lda, double* beta, double* c, lapack_int* ldc);
// LAPACK's two-stage dsyevd, called as the Fortran symbol it is (the two trailing arguments
// are the hidden lengths of the character arguments).
using dsyevd_2stage_fn = void (*)(char* jobz, char* uplo, lapack_int* n, double* a,
                                  lapack_int* lda, double* w, double* work, lapack_int* lwork,
                                  lapack_int* iwork, lapack_int* liwork, lapack_int* info,
                                  std::size_t jobz_length, std::size_t uplo_length);

// The float32 Gram product of the float32 Gram route (EsdMethod::gram32).
using ssyrk_fn = void (*)(char* uplo, char* trans, lapack_int* n, lapack_int* k, float* alpha,
                          float* a, lapack_int* lda, float* beta, float* c, lapack_int* ldc);
struct LapackFunctions {
    dgesdd_fn dgesdd = nullptr;
    dsyevd_fn dsyevd = nullptr;
    dsyrk_fn dsyrk = nullptr;
    // Optional: SciPy does not export it, but the OpenBLAS it ships does. Faster than
    // dsyevd for eigenvalues only from order ~2,000 on this project's machines.
    dsyevd_2stage_fn dsyevd_2stage = nullptr;
    // The float32 Gram route's product (SciPy exports it); without it the route is
    // unavailable.
    ssyrk_fn ssyrk = nullptr;
};

// Symmetric eigenproblems of at least this order use dsyevd_2stage when it is installed.
constexpr lapack_int kTwoStageMinOrder = 2048;

// Installs the function table (called once from the bindings).
void set_lapack(const LapackFunctions& functions);
// The installed table; throws std::runtime_error if none was installed.
const LapackFunctions& lapack();
bool lapack_ready();

}  // namespace hts
