#include "hts/norm_metrics.hpp"

#include <algorithm>
#include <cfloat>
#include <cmath>

#include "hts/parallel.hpp"

namespace hts {
namespace {

// WeightWatcher adds this to every p and to the rank before taking logs (compat).
constexpr double kEntropyEpsilon = 1e-10;

}  // namespace

NormMetrics norm_metrics(const double* values, std::int64_t n, double N, double alpha,
                         const NormOptions& options, const double* logs, std::int64_t num_logs) {
    NormMetrics m;
    m.lambda_max = values[n - 1];
    const double rank_tolerance = std::sqrt(m.lambda_max) * N * DBL_EPSILON;
    // Both counts are of a monotone condition on the ascending values: binary searches.
    const double* end = values + n;
    m.matrix_rank = end - std::partition_point(values, end, [&](double v) {
                              return !(std::sqrt(v) > rank_tolerance);
                          });
    m.weak_rank_loss =
        std::partition_point(values, end, [&](double v) { return v < options.tolerance; }) -
        values;
    const std::int64_t first_log = logs != nullptr ? n - num_logs : n;
    // log(values[j]), or NaN where it is not defined (v <= 0)
    auto log_of = [&](std::int64_t j) {
        if (j >= first_log) return logs[j - first_log];
        const double v = values[j];
        return v > 0.0 ? std::log(v) : std::nan("");
    };
    for (std::int64_t j = 0; j < n; ++j) {
        const double v = values[j];
        m.norm += v;
        m.alpha_norm_sum += v > 0.0 ? std::exp(alpha * log_of(j)) : std::pow(v, alpha);
    }
    // the entropy of p = v / norm, normalized by the log of the rank
    double plogp = 0.0;
    const double log_norm = std::log(m.norm);
    for (std::int64_t j = 0; j < n; ++j) {
        const double v = values[j];
        const double p = v / m.norm;
        if (options.compat) {
            const double shifted = p + kEntropyEpsilon;  // no log to reuse: log(p + eps)
            plogp += shifted * std::log(shifted);
        } else if (p > 0) {
            plogp += p * (log_of(j) - log_norm);
        }
    }
    const auto rank = static_cast<double>(m.matrix_rank);
    if (options.compat)
        m.entropy = -plogp / std::log(rank + kEntropyEpsilon);
    else
        m.entropy = m.matrix_rank > 1 ? -plogp / std::log(rank) : 0.0;
    return m;
}

void norm_metrics_batch(const double* const* values, const std::int64_t* counts,
                        const double* Ns, const double* alphas, std::int64_t num_spectra,
                        const NormOptions& options, NormMetrics* out, int threads) {
    parallel_for(num_spectra, threads, [&](std::int64_t k, int) {
        out[k] = norm_metrics(values[k], counts[k], Ns[k], alphas[k], options);
    });
}

}  // namespace hts
