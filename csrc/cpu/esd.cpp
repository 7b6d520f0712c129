// ESD kernels on top of the registered LAPACK (see hts/lapack.hpp).

#include "hts/esd.hpp"

#include "hts/lapack.hpp"
#include "hts/parallel.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

namespace hts {

double half_to_double(std::uint16_t bits) {
    const int sign = (bits >> 15) & 1;
    const int exponent = (bits >> 10) & 0x1f;
    const int mantissa = bits & 0x3ff;
    double value;
    if (exponent == 0) {
        value = std::ldexp(static_cast<double>(mantissa), -24);  // zero or subnormal
    } else if (exponent == 0x1f) {
        value = mantissa == 0 ? std::numeric_limits<double>::infinity()
                              : std::numeric_limits<double>::quiet_NaN();
    } else {
        value = std::ldexp(static_cast<double>(mantissa + 1024), exponent - 25);
    }
    return sign ? -value : value;
}

namespace {

constexpr std::int64_t kMaxLapackInt = std::numeric_limits<lapack_int>::max();
constexpr std::int64_t kTile = 32;

double load(const MatrixView& w, std::int64_t offset) {
    switch (w.type) {
        case ScalarType::float16: {
            std::uint16_t bits;
            std::memcpy(&bits, static_cast<const char*>(w.data) + 2 * offset, 2);
            return half_to_double(bits);
        }
        case ScalarType::float32:
            return static_cast<double>(static_cast<const float*>(w.data)[offset]);
        case ScalarType::float64:
        default:
            return static_cast<const double*>(w.data)[offset];
    }
}

// Copies the scale*W block of source rows [r0, r1) x columns [c0, c1) into `dst` (float64 or
// float32, Fortran order, leading dimension r1 - r0). Returns false on NaN/Inf (also when
// scale*W overflows float32).
template <typename Real>
bool copy_block(const MatrixView& w, double scale, std::int64_t r0, std::int64_t r1,
                std::int64_t c0, std::int64_t c1, Real* dst) {
    bool finite = true;
    const std::int64_t ld = r1 - r0;
    for (std::int64_t rt = r0; rt < r1; rt += kTile) {  // tiles keep the transposing copy
        const std::int64_t rt1 = std::min(rt + kTile, r1);  // cache friendly
        for (std::int64_t ct = c0; ct < c1; ct += kTile) {
            const std::int64_t ct1 = std::min(ct + kTile, c1);
            for (std::int64_t r = rt; r < rt1; ++r) {
                for (std::int64_t c = ct; c < ct1; ++c) {
                    const auto v = static_cast<Real>(
                        load(w, r * w.row_stride + c * w.col_stride) * scale);
                    finite &= std::isfinite(v);
                    dst[(r - r0) + (c - c0) * ld] = v;
                }
            }
        }
    }
    return finite;
}

// Whether the workspace already holds LAPACK's workspace answer for this shape and method.
bool ws_matches(const EsdWorkspace& ws, const MatrixView& w, EsdMethod method) {
    return ws.query_rows == w.rows && ws.query_cols == w.cols &&
           ws.query_method == static_cast<int>(method);
}

void remember_query(EsdWorkspace& ws, const MatrixView& w, EsdMethod method, lapack_int lwork,
                    lapack_int liwork) {
    ws.query_rows = w.rows;
    ws.query_cols = w.cols;
    ws.query_method = static_cast<int>(method);
    ws.lwork = lwork;
    ws.liwork = liwork;
}

EsdResult esd_svd(const MatrixView& w, double scale, double* out, EsdWorkspace& ws) {
    const std::int64_t k = std::min(w.rows, w.cols);
    ws.matrix.resize(static_cast<std::size_t>(w.rows * w.cols));
    if (!copy_block(w, scale, 0, w.rows, 0, w.cols, ws.matrix.data()))
        return {EsdError::non_finite, 0};
    char jobz = 'N';
    lapack_int m = static_cast<lapack_int>(w.rows), n = static_cast<lapack_int>(w.cols);
    lapack_int lda = m, ldu = 1, ldvt = 1, lwork = -1, info = 0;
    double dummy_u = 0.0, dummy_vt = 0.0, query = 0.0;
    ws.values.resize(static_cast<std::size_t>(k));
    ws.iwork.resize(static_cast<std::size_t>(8 * k));
    const LapackFunctions& f = lapack();
    if (!ws_matches(ws, w, EsdMethod::svd)) {
        f.dgesdd(&jobz, &m, &n, ws.matrix.data(), &lda, ws.values.data(), &dummy_u, &ldu,
                 &dummy_vt, &ldvt, &query, &lwork, ws.iwork.data(), &info);
        if (info != 0) return {EsdError::lapack_failed, info};
        const double wanted = std::ceil(query);
        if (wanted > static_cast<double>(kMaxLapackInt)) return {EsdError::too_large, 0};
        remember_query(ws, w, EsdMethod::svd, std::max<lapack_int>(1, static_cast<lapack_int>(wanted)), 0);
    }
    lwork = ws.lwork;
    ws.work.resize(static_cast<std::size_t>(lwork));
    f.dgesdd(&jobz, &m, &n, ws.matrix.data(), &lda, ws.values.data(), &dummy_u, &ldu,
             &dummy_vt, &ldvt, ws.work.data(), &lwork, ws.iwork.data(), &info);
    if (info != 0) return {EsdError::lapack_failed, info};
    // Singular values come back descending; the ESD is their squares, ascending.
    for (std::int64_t j = 0; j < k; ++j) {
        const double s = ws.values[static_cast<std::size_t>(k - 1 - j)];
        out[j] = s * s;
    }
    return {};
}

bool all_finite(const double* data, std::int64_t count) {
    bool finite = true;
    for (std::int64_t j = 0; j < count; ++j) finite &= std::isfinite(data[j]);
    return finite;
}

// Rows (or columns) of W converted to float64 per dsyrk call when W must be copied: the
// Gram matrix is accumulated block by block, so no float64 copy of the whole W is made.
// The block size is fixed, so the summation order never depends on the thread count.
constexpr std::int64_t kGramBlock = 512;

// One eigenvalues-only symmetric eigensolve of `a` (the `uplo` triangle, order x order,
// overwritten) into `values`: dsyevd_2stage for large orders when installed, else dsyevd.
// lwork = liwork = -1 asks for the workspace sizes. Returns LAPACK's info.
lapack_int call_syevd(const LapackFunctions& f, char uplo, lapack_int order, double* a,
                      double* values, double* work, lapack_int lwork, lapack_int* iwork,
                      lapack_int liwork) {
    char jobz = 'N';
    lapack_int info = 0;
    if (f.dsyevd_2stage != nullptr && order >= kTwoStageMinOrder)
        f.dsyevd_2stage(&jobz, &uplo, &order, a, &order, values, work, &lwork, iwork, &liwork,
                        &info, 1, 1);
    else
        f.dsyevd(&jobz, &uplo, &order, a, &order, values, work, &lwork, iwork, &liwork, &info);
    return info;
}

// call_syevd() of ws.gram into ws.values, the workspace sizes queried once per shape of W.
lapack_int gram_eigenvalues(const LapackFunctions& f, char uplo, lapack_int order,
                            EsdWorkspace& ws, const MatrixView& w) {
    if (!ws_matches(ws, w, EsdMethod::gram)) {
        lapack_int iquery = 0;
        double query = 0.0;
        const lapack_int info = call_syevd(f, uplo, order, ws.gram.data(), ws.values.data(),
                                           &query, -1, &iquery, -1);
        if (info != 0) return info;
        remember_query(ws, w, EsdMethod::gram,
                       std::max<lapack_int>(1, static_cast<lapack_int>(std::ceil(query))),
                       std::max<lapack_int>(1, iquery));
    }
    ws.work.resize(static_cast<std::size_t>(ws.lwork));
    ws.iwork.resize(static_cast<std::size_t>(ws.liwork));
    return call_syevd(f, uplo, order, ws.gram.data(), ws.values.data(), ws.work.data(),
                      ws.lwork, ws.iwork.data(), ws.liwork);
}

// Adds the Gram matrix of the smaller side of scale*W into `gram` (order min(rows, cols),
// upper triangle, Fortran order) by `syrk` (dsyrk or ssyrk), kGramBlock rows (or columns)
// of W converted to Real at a time into `block`. Returns false on NaN/Inf.
template <typename Real, typename Syrk>
bool accumulate_gram(const MatrixView& w, double scale, Syrk syrk, std::vector<Real>& block,
                     Real* gram) {
    const std::int64_t k = std::min(w.rows, w.cols);
    const bool tall = w.rows >= w.cols;  // Gram of the columns (W^T W) or of the rows (W W^T)
    const std::int64_t length = tall ? w.rows : w.cols;  // the summed dimension
    lapack_int order = static_cast<lapack_int>(k);
    char uplo = 'U';
    Real one = 1;
    block.resize(static_cast<std::size_t>(std::min(length, kGramBlock) * k));
    for (std::int64_t s0 = 0; s0 < length; s0 += kGramBlock) {
        const std::int64_t s1 = std::min(s0 + kGramBlock, length);
        lapack_int rows = static_cast<lapack_int>(s1 - s0);
        if (tall) {
            // block of rows R (rows x cols, Fortran, ld = rows): G += R^T R
            if (!copy_block(w, scale, s0, s1, 0, w.cols, block.data())) return false;
            char trans = 'T';
            syrk(&uplo, &trans, &order, &rows, &one, block.data(), &rows, &one, gram, &order);
        } else {
            // block of columns C (rows x block, Fortran, ld = rows): G += C C^T
            if (!copy_block(w, scale, 0, w.rows, s0, s1, block.data())) return false;
            char trans = 'N';
            lapack_int ld = static_cast<lapack_int>(w.rows);
            syrk(&uplo, &trans, &order, &rows, &one, block.data(), &ld, &one, gram, &order);
        }
    }
    return true;
}

// The eigenvalues of the float64 Gram matrix in ws.gram (upper triangle) into `out`,
// ascending; negative ones (rounding noise of size eps*lambda_max on a PSD matrix) clipped.
EsdResult gram_esd(const LapackFunctions& f, const MatrixView& w, EsdWorkspace& ws,
                   double* out) {
    const std::int64_t k = std::min(w.rows, w.cols);
    ws.values.resize(static_cast<std::size_t>(k));
    const lapack_int info = gram_eigenvalues(f, 'U', static_cast<lapack_int>(k), ws, w);
    if (info != 0) return {EsdError::lapack_failed, info};
    for (std::int64_t j = 0; j < k; ++j)
        out[j] = std::max(0.0, ws.values[static_cast<std::size_t>(j)]);
    return {};
}

EsdResult esd_gram(const MatrixView& w, double scale, double* out, EsdWorkspace& ws) {
    const std::int64_t k = std::min(w.rows, w.cols);
    lapack_int order = static_cast<lapack_int>(k);
    ws.gram.assign(static_cast<std::size_t>(k * k), 0.0);
    char uplo = 'U';
    double one = 1.0;
    const LapackFunctions& f = lapack();
    const bool c_contiguous = w.col_stride == 1 && w.row_stride == w.cols;
    const bool f_contiguous = w.row_stride == 1 && w.col_stride == w.rows;
    if ((c_contiguous || f_contiguous) && w.type == ScalarType::float64 && scale == 1.0) {
        // No copy: a C-ordered W is W^T in Fortran order (ld = cols).
        const double* b = static_cast<const double*>(w.data);
        if (!all_finite(b, w.rows * w.cols)) return {EsdError::non_finite, 0};
        lapack_int b_rows = static_cast<lapack_int>(f_contiguous ? w.rows : w.cols);
        lapack_int b_cols = static_cast<lapack_int>(f_contiguous ? w.cols : w.rows);
        char trans = b_rows >= b_cols ? 'T' : 'N';
        lapack_int inner = std::max(b_rows, b_cols);
        double zero = 0.0;
        f.dsyrk(&uplo, &trans, &order, &inner, &one, const_cast<double*>(b), &b_rows, &zero,
                ws.gram.data(), &order);
    } else if (!accumulate_gram(w, scale, f.dsyrk, ws.matrix, ws.gram.data())) {
        return {EsdError::non_finite, 0};
    }
    return gram_esd(f, w, ws, out);
}

// The float32 Gram route: W converted to float32 kGramBlock rows (or columns) at a time,
// each block's product added to a float32 Gram matrix by ssyrk (the sum stays in float32:
// its rounding was measured at <= 5e-7 lambda_max on 4096 x 11008 layers), then widened to
// float64 for the gram route's eigensolver. A float32 eigensolve (ssyevd_2stage) would be
// 1.8x faster again but measured 2e-5..6e-5 relative errors in alpha and up to 1e-3 in D,
// beyond the route's 1e-5 contract (docs/large-models.md).
// scale*W is first multiplied by the power of two 2^-e that brings its largest magnitude into
// [0.5, 1) (exact in any binary format), so the float32 products can neither overflow nor
// lose the matrix to underflow whatever W's own scale; the eigenvalues are multiplied back by
// 2^2e in float64.
EsdResult esd_gram32(const MatrixView& w, double scale, double* out, EsdWorkspace& ws) {
    const LapackFunctions& f = lapack();
    if (f.ssyrk == nullptr) return {EsdError::lapack_failed, -1000};
    const std::int64_t k = std::min(w.rows, w.cols);
    double peak = 0.0;
    for (std::int64_t r = 0; r < w.rows; ++r)
        for (std::int64_t c = 0; c < w.cols; ++c)
            peak = std::max(peak, std::abs(load(w, r * w.row_stride + c * w.col_stride)));
    if (!std::isfinite(peak)) return {EsdError::non_finite, 0};  // Inf (NaN: copy_block)
    int exponent = 0;
    std::frexp(peak * std::abs(scale), &exponent);  // peak * |scale| = m 2^exponent, m in [0.5, 1)
    ws.gram32.assign(static_cast<std::size_t>(k * k), 0.0f);
    if (!accumulate_gram(w, std::ldexp(scale, -exponent), f.ssyrk, ws.matrix32,
                         ws.gram32.data()))
        return {EsdError::non_finite, 0};
    // the upper triangle (LAPACK's uplo 'U' reads only it), widened: column j holds rows
    // 0..j in Fortran order
    ws.gram.resize(static_cast<std::size_t>(k * k));
    for (std::int64_t j = 0; j < k; ++j)
        for (std::int64_t i = 0; i <= j; ++i)
            ws.gram[static_cast<std::size_t>(i + j * k)] =
                static_cast<double>(ws.gram32[static_cast<std::size_t>(i + j * k)]);
    const EsdResult r = gram_esd(f, w, ws, out);
    for (std::int64_t j = 0; j < k; ++j) out[j] = std::ldexp(out[j], 2 * exponent);
    return r;
}

}  // namespace

EsdResult symmetric_eigenvalues(double* a, std::int64_t order, double* out) {
    if (order <= 0) return {EsdError::empty, 0};
    if (order * order > kMaxLapackInt) return {EsdError::too_large, 0};
    if (!all_finite(a, order * order)) return {EsdError::non_finite, 0};
    const LapackFunctions& f = lapack();
    const auto n = static_cast<lapack_int>(order);
    lapack_int iquery = 0;
    double query = 0.0;
    lapack_int info = call_syevd(f, 'U', n, a, out, &query, -1, &iquery, -1);
    if (info != 0) return {EsdError::lapack_failed, info};
    std::vector<double> work(static_cast<std::size_t>(std::max(1.0, std::ceil(query))));
    std::vector<lapack_int> iwork(static_cast<std::size_t>(std::max<lapack_int>(1, iquery)));
    info = call_syevd(f, 'U', n, a, out, work.data(), static_cast<lapack_int>(work.size()),
                      iwork.data(), static_cast<lapack_int>(iwork.size()));
    if (info != 0) return {EsdError::lapack_failed, info};
    return {};
}

EsdResult esd_into(const MatrixView& w, EsdMethod method, double scale, double* out,
                   EsdWorkspace& workspace) {
    if (w.rows <= 0 || w.cols <= 0) return {EsdError::empty, 0};
    if (w.rows > kMaxLapackInt || w.cols > kMaxLapackInt ||
        w.rows * w.cols > kMaxLapackInt)
        return {EsdError::too_large, 0};
    if (!std::isfinite(scale)) return {EsdError::non_finite, 0};
    const EsdResult r = method == EsdMethod::gram     ? esd_gram(w, scale, out, workspace)
                        : method == EsdMethod::gram32 ? esd_gram32(w, scale, out, workspace)
                                                      : esd_svd(w, scale, out, workspace);
    if (r.error == EsdError::none && !std::isfinite(out[std::min(w.rows, w.cols) - 1]))
        return {EsdError::overflow, 0};
    return r;
}

void esd_batch(const MatrixView* matrices, std::int64_t count, EsdMethod method,
               const double* scales, double* const* outs, EsdResult* results, int threads) {
    const int workers = static_cast<int>(std::min<std::int64_t>(resolve_threads(threads),
                                                                std::max<std::int64_t>(count, 1)));
    std::vector<EsdWorkspace> workspaces(static_cast<std::size_t>(workers));
    parallel_for(count, workers, [&](std::int64_t item, int worker) {
        results[item] = esd_into(matrices[item], method, scales[item], outs[item],
                                 workspaces[static_cast<std::size_t>(worker)]);
    });
}

}  // namespace hts
