// Power-law maximum-likelihood fit of an eigenvalue tail over every xmin candidate.
//
// Pure C++ (no Python): the bindings in csrc/bindings wrap these functions.
#pragma once

#include <cstdint>
#include <vector>

namespace hts {

// Why an input could not be fitted. `none` means the fit ran.
enum class FitError : int {
    none = 0,
    empty = 1,       // no values at all
    non_finite = 2,  // a NaN or an infinity (index in PowerLawFitResult::bad_index)
    negative = 3,    // a value below zero (index in PowerLawFitResult::bad_index)
    too_few = 4,     // fewer than two values above the threshold
};

// Which selection rule produced the result.
enum class FitMethod : int {
    standard = 0,  // continuous MLE alpha = 1 + n/S, argmin KS distance
    small_n = 1,   // WeightWatcher 0.7.7 small-sample rule (bias-corrected, tails >= min_tail)
};

struct PowerLawOptions {
    // Only values strictly greater than this are fitted (WeightWatcher: 1e-5).
    double threshold = 1e-5;
    // Fits with fewer fitted values than this use the small-n rule; 0 disables it.
    std::int64_t small_n_cutoff = 20;
    // Smallest tail the small-n rule accepts as a candidate.
    std::int64_t small_n_min_tail = 8;
};

struct PowerLawFitResult {
    double alpha = -1.0;
    double xmin = -1.0;
    double xmax = -1.0;
    double D = -1.0;
    double sigma = -1.0;
    std::int64_t num_pl_spikes = -1;  // number of values >= xmin
    std::int64_t num_fit = 0;         // number of values above the threshold
    std::int64_t xmin_index = -1;     // index of xmin among the sorted fitted values
    FitMethod method = FitMethod::standard;
    FitError error = FitError::none;
    std::int64_t bad_index = -1;      // index in the input of the offending value
};

// Fits one spectrum. `values` need not be sorted; it is not modified. `logs` (may be null)
// receives the natural logs of the fitted values (those above the threshold), ascending;
// empty when the input was refused.
PowerLawFitResult fit_powerlaw(const double* values, std::int64_t count,
                               const PowerLawOptions& options,
                               std::vector<double>* logs = nullptr);

// Fits many spectra, spread over `threads` threads (<= 0: hardware concurrency).
// Each spectrum is fitted by one thread with the serial algorithm, so the results do
// not depend on the thread count.
void fit_powerlaw_batch(const double* const* values, const std::int64_t* counts,
                        std::int64_t num_spectra, const PowerLawOptions& options,
                        PowerLawFitResult* results, int threads);

// The whole scan: alpha, D and sigma for every xmin candidate (O(n^2) time, O(n) memory).
struct PowerLawCurve {
    std::vector<double> xmins;
    std::vector<double> alphas;
    std::vector<double> Ds;
    std::vector<double> sigmas;
};

PowerLawFitResult powerlaw_curve(const double* values, std::int64_t count,
                                 const PowerLawOptions& options, PowerLawCurve& curve,
                                 int threads);

}  // namespace hts
