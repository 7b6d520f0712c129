// Per-layer metrics of a pooled ESD that need every eigenvalue: the squared Frobenius norm,
// lambda_max, the numerical rank, the weak rank loss, the matrix entropy and the alpha-norm
// sum. WeightWatcher 0.7.7's definitions (reference doc section 5); units are eigenvalues of
// the scaled W^T W.
#pragma once

#include <cstdint>

namespace hts {

struct NormOptions {
    double tolerance = 1e-6;  // eigenvalues below this count as weak rank loss
    bool compat = false;      // WeightWatcher's entropy (1e-10 added to every p and to the rank)
};

struct NormMetrics {
    double norm = 0.0;                 // sum of the eigenvalues
    double lambda_max = 0.0;           // the largest (the last: the ESD is ascending)
    std::int64_t matrix_rank = 0;      // #{sqrt(v) > sqrt(lambda_max) * N * eps}
    std::int64_t weak_rank_loss = 0;   // #{v < tolerance}
    double entropy = 0.0;              // -sum p ln p / ln(rank), p = v / norm
    double alpha_norm_sum = 0.0;       // sum v**alpha (log10 of it is log_alpha_norm)
};

// The metrics of one ascending ESD values[0, n), n >= 1; N is the layer's N (rank tolerance)
// and alpha the layer's fitted alpha (NaN or WeightWatcher's -1 when the fit failed). Sums
// run in index order. v**alpha is computed as exp(alpha * log v) for v > 0 (pow for the
// others), so that the natural logs of the largest values, when the caller has them (the
// power-law fit's), are not computed twice: `logs` (may be null) holds log(values[j]) for
// the last `num_logs` values, all > 0. The result is the same with or without them.
NormMetrics norm_metrics(const double* values, std::int64_t n, double N, double alpha,
                         const NormOptions& options, const double* logs = nullptr,
                         std::int64_t num_logs = 0);

// norm_metrics() of many ESDs, spread over `threads` threads (results independent of it).
void norm_metrics_batch(const double* const* values, const std::int64_t* counts,
                        const double* Ns, const double* alphas, std::int64_t num_spectra,
                        const NormOptions& options, NormMetrics* out, int threads);

}  // namespace hts
