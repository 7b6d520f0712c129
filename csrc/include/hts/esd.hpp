// Empirical spectral densities: the eigenvalues of W^T W (squared singular values of W).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace hts {

enum class ScalarType : int { float16 = 0, float32 = 1, float64 = 2 };

enum class EsdMethod : int {
    svd = 0,   // float64 LAPACK dgesdd on W itself (what scipy.linalg.svd does)
    gram = 1,  // float64 Gram matrix of the smaller side (dsyrk) + dsyevd
    // float32 Gram matrix of the smaller side (ssyrk, W converted to float32 in blocks),
    // widened to float64 for the gram route's eigensolver: the Gram product's rounding is
    // float32's (analyze() guards it), the eigensolve's float64's.
    gram32 = 2,
};

// A strided 2-D view of a matrix owned by the caller. Strides are in elements.
struct MatrixView {
    const void* data = nullptr;
    ScalarType type = ScalarType::float64;
    std::int64_t rows = 0;
    std::int64_t cols = 0;
    std::int64_t row_stride = 0;
    std::int64_t col_stride = 0;
};

// Why a matrix could not be decomposed. `none` means success.
enum class EsdError : int {
    none = 0,
    empty = 1,          // a zero dimension
    non_finite = 2,     // NaN or infinity in the matrix
    too_large = 3,      // a dimension or a workspace beyond LAPACK's 32-bit integers
    lapack_failed = 4,  // LAPACK returned info != 0 (see EsdResult::info)
    overflow = 5,       // an eigenvalue exceeds the float64 range (scale too large)
};

struct EsdResult {
    EsdError error = EsdError::none;
    int info = 0;
};

// Per-thread scratch memory, reused across calls.
struct EsdWorkspace {
    std::vector<double> matrix;
    std::vector<double> gram;
    std::vector<double> values;
    std::vector<double> work;
    std::vector<int> iwork;
    // the float32 route's buffers
    std::vector<float> matrix32;
    std::vector<float> gram32;
    // LAPACK's workspace answer for the last shape seen, so equal shapes query once.
    std::int64_t query_rows = -1;
    std::int64_t query_cols = -1;
    int query_method = -1;
    int lwork = 0;
    int liwork = 0;
};

// Writes the eigenvalues of the symmetric order x order float64 matrix `a`, ascending, to
// `out` (order values), by the Gram route's eigensolver (dsyevd, or dsyevd_2stage for large
// orders when installed). Only one triangle of `a` is read; `a` is overwritten.
EsdResult symmetric_eigenvalues(double* a, std::int64_t order, double* out);

// Writes the min(rows, cols) eigenvalues of (scale*W)^T (scale*W), ascending, to `out`.
EsdResult esd_into(const MatrixView& w, EsdMethod method, double scale, double* out,
                   EsdWorkspace& workspace);

// Runs esd_into for every matrix, spread over `threads` threads; each matrix is handled
// entirely by one thread, so results do not depend on the thread count.
void esd_batch(const MatrixView* matrices, std::int64_t count, EsdMethod method,
               const double* scales, double* const* outs, EsdResult* results, int threads);

// Exact float16 -> float64 conversion of IEEE binary16 bit patterns.
double half_to_double(std::uint16_t bits);

}  // namespace hts
