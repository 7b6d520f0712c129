#include "hts/exponential.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "hts/parallel.hpp"

namespace hts {

ExponentialFitResult fit_exponential(const double* values, std::int64_t count, double threshold) {
    ExponentialFitResult r;
    const double* first = std::upper_bound(values, values + count, threshold);
    const auto n = static_cast<std::int64_t>(values + count - first);
    r.num_fit = n;
    if (n < 3) return r;
    const double* x = first;
    // suffix[i] = x_i + ... + x_{n-1}, accumulated from the end (as a reversed cumsum)
    std::vector<double> suffix(static_cast<std::size_t>(n));
    double acc = 0.0;
    for (std::int64_t i = n - 1; i >= 0; --i) {
        acc += x[i];
        suffix[static_cast<std::size_t>(i)] = acc;
    }
    double best = std::numeric_limits<double>::infinity();
    std::int64_t best_i = -1;
    for (std::int64_t i = 0; i + 1 < n; ++i) {
        const double m = static_cast<double>(n - i);
        const double spread = suffix[static_cast<std::size_t>(i)] - m * x[i];
        if (!(spread > 0.0)) continue;  // a constant tail has no rate
        const double lambda = m / spread;
        // D_i = max_j |F(x_j) - (j - i)/m|; a candidate loses as soon as one deviation
        // reaches the best D so far (the first candidate wins ties)
        double worst = 0.0;
        bool loses = false;
        for (std::int64_t j = i; j < n; ++j) {
            const double fitted = -std::expm1(-lambda * (x[j] - x[i]));
            const double dev = std::fabs(fitted - static_cast<double>(j - i) / m);
            if (dev > worst) {
                worst = dev;
                if (worst >= best) {
                    loses = true;
                    break;
                }
            }
        }
        if (!loses && worst < best) {
            best = worst;
            best_i = i;
        }
    }
    if (best_i < 0) return r;
    const double m = static_cast<double>(n - best_i);
    r.lambda = m / (suffix[static_cast<std::size_t>(best_i)] - m * x[best_i]);
    r.xmin = x[best_i];
    r.D = best;
    r.n = n - best_i;
    r.xmin_index = best_i;
    return r;
}

void fit_exponential_batch(const double* const* values, const std::int64_t* counts,
                           std::int64_t num_spectra, double threshold,
                           ExponentialFitResult* results, int threads) {
    parallel_for(num_spectra, threads, [&](std::int64_t k, int) {
        results[k] = fit_exponential(values[k], counts[k], threshold);
    });
}

}  // namespace hts
