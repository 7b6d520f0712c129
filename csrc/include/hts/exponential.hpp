// Exponential tail fit, p(x) = lambda exp(-lambda (x - xmin)) on x >= xmin, with xmin chosen
// by the smallest Kolmogorov-Smirnov distance over every candidate (the power-law fit's
// candidates and KS convention), for model comparison.
#pragma once

#include <cstdint>

namespace hts {

struct ExponentialFitResult {
    double lambda = 0.0;  // maximum-likelihood rate, n / sum(x - xmin)
    double xmin = 0.0;
    double D = 0.0;
    std::int64_t n = 0;           // tail size
    std::int64_t xmin_index = -1;  // among the fitted (sorted, > threshold) values; -1: failed
    std::int64_t num_fit = 0;      // values above the threshold
};

// `values`: ascending eigenvalues, finite and >= 0 (checked by the caller). Values <=
// `threshold` are left out. Fails (xmin_index = -1) with fewer than 3 fitted values or when
// every candidate tail is constant.
ExponentialFitResult fit_exponential(const double* values, std::int64_t count, double threshold);

// Fits many spectra, one thread each (results do not depend on `threads`).
void fit_exponential_batch(const double* const* values, const std::int64_t* counts,
                           std::int64_t num_spectra, double threshold,
                           ExponentialFitResult* results, int threads);

}  // namespace hts
