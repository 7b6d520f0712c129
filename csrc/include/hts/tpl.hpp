// Truncated power law (TPL): maximum-likelihood fit at a fixed xmin.
//
// Density on x >= xmin:  p(x) = x^(-alpha) e^(-lambda x) / Z(alpha, lambda), with
//   Z = ∫_xmin^∞ t^(-alpha) e^(-lambda t) dt = lambda^(alpha-1) Γ(1 - alpha, lambda xmin),
// normalisable for every real alpha when lambda > 0, and for alpha > 1 when lambda = 0 (the
// pure power law). Pure C++ (no Python): the bindings in csrc/bindings wrap these functions.
//
// The TPL is an exponential family in (alpha, lambda) with sufficient statistics
// (ln x, x), so the log-likelihood is concave and has at most one maximum; it is reached
// on the boundary lambda = 0 exactly when the power-law MLE alpha_PL = 1 + n / Σ ln(x/xmin)
// has alpha_PL > 2 and a model mean xmin (alpha_PL - 1)/(alpha_PL - 2) <= the sample mean.
#pragma once

#include "hts/tpl_math.hpp"

#include <cstdint>
#include <limits>
#include <vector>

namespace hts {

// Search box of the fit (tpl_math.hpp's). alpha outside it, or lambda xmin outside
// (kTplMuMin, kTplMuMax), ends the search on the bound (status alpha_bound / lambda_bound).
constexpr double kTplAlphaMin = tplhd::kAlphaMin;
// The largest lower bound of alpha a caller may set (alpha_min below).
constexpr double kTplAlphaMinLimit = tplhd::kAlphaMinLimit;
constexpr double kTplAlphaMax = tplhd::kAlphaMax;
constexpr double kTplMuMin = tplhd::kMuMin;  // lambda * xmin
constexpr double kTplMuMax = tplhd::kMuMax;

enum class TplStatus : int {
    converged = 0,      // interior maximum: the gradient vanishes
    power_law = 1,      // maximum at lambda = 0: the pure power law fits at least as well
    alpha_bound = 2,    // alpha stopped on its lower end (kTplAlphaMin or the caller's
                        // alpha_min) or on kTplAlphaMax: the maximum lies outside the box
    lambda_bound = 3,   // lambda xmin stopped on kTplMuMin/kTplMuMax
    not_converged = 4,  // iteration limit or no further progress; best point returned
    failed = 5,         // bad input (see TplError); no fit
};

enum class TplError : int {
    none = 0,
    non_finite = 1,  // a NaN or an infinity in the values (index in bad_index)
    bad_xmin = 2,    // xmin <= 0 or not finite
    too_few = 3,     // fewer than two values >= xmin
    degenerate = 4,  // all values >= xmin are equal: no maximum exists
};

struct TplFitResult {
    double alpha = -1.0;      // exponent (dimensionless)
    double lambda = -1.0;     // cut-off rate, in 1/(units of x); 0 for status power_law
    double xmin = -1.0;
    double loglik = 0.0;      // Σ ln p(x_i) over the tail (total, not mean)
    double D = -1.0;          // KS distance max_j |F(x_j) - j/n| over the sorted tail
    double alpha_se = -1.0;   // standard errors from the observed Fisher information
    double lambda_se = -1.0;  // (NaN where undefined: lambda_se for status power_law)
    std::int64_t n = 0;       // number of values >= xmin
    int iterations = 0;       // Newton iterations taken
    TplStatus status = TplStatus::failed;
    TplError error = TplError::none;
    std::int64_t bad_index = -1;
};

// Fits the values >= xmin of `values` (any order; not modified). Deterministic, one thread.
// alpha_min: the lower end of alpha, in [kTplAlphaMin, kTplAlphaMinLimit] (clamped to it);
// the maximum over alpha >= alpha_min, status alpha_bound when it lies on alpha = alpha_min.
TplFitResult fit_truncated_powerlaw(const double* values, std::int64_t count, double xmin,
                                    double alpha_min = kTplAlphaMin);

// Fits many (values, xmin) pairs spread over `threads` threads (<= 0: all cores). Each pair
// is fitted by one thread with the serial algorithm: results do not depend on `threads`.
void fit_truncated_powerlaw_batch(const double* const* values, const std::int64_t* counts,
                                  const double* xmins, std::int64_t num_pairs,
                                  TplFitResult* results, int threads,
                                  double alpha_min = kTplAlphaMin);

// ---- The xmin search: every candidate of a spectrum at once ---------------------------------

struct TplSearchOptions {
    double threshold = 1e-5;  // only values > threshold are fitted
    // Candidates are the distinct fitted values c with xmin_low <= c < xmin_high, the largest
    // value excepted (a tail needs two distinct values).
    double xmin_low = -std::numeric_limits<double>::infinity();
    double xmin_high = std::numeric_limits<double>::infinity();
    // A fit is valid when its status is converged or power_law (or alpha_bound on a raised
    // alpha_min: the maximum over alpha >= alpha_min) and alpha > alpha_above.
    double alpha_above = -std::numeric_limits<double>::infinity();
    // The lower end of alpha in every candidate's fit (see fit_truncated_powerlaw).
    double alpha_min = kTplAlphaMin;
    // Finite: D compares the tail with the fitted CDF renormalised to [xmin, cdf_xmax],
    // F(x) / F(cdf_xmax) (powerlaw's KS test with an xmax); the fit itself is unchanged.
    double cdf_xmax = std::numeric_limits<double>::infinity();
};

enum class TplSearchError : int {
    none = 0,
    non_finite = 1,     // a NaN or an infinity in the values (index in bad_index)
    no_candidates = 2,  // no candidate in the range
    no_valid = 3,       // candidates, but no valid fit among them
};

struct TplSearchResult {
    TplFitResult fit;              // the chosen candidate's fit, D included (failed on error)
    std::int64_t candidates = 0;   // number of xmin candidates fitted
    std::int64_t valid = 0;        // number of valid fits among them
    std::int64_t best = -1;        // index of the chosen one among the candidates
    TplSearchError error = TplSearchError::none;
    std::int64_t bad_index = -1;
};

// Fits every xmin candidate of `values` and returns the valid fit with the smallest KS
// distance D (the first candidate on ties). Equal, to rounding, to fitting each candidate with
// fit_truncated_powerlaw (the Newton iteration starts from the neighbouring candidate's
// maximum, and tail sums are shared), and independent of `threads` bit for bit. Candidates
// that provably cannot win are dropped from the KS scan early; their D is not computed.
TplSearchResult fit_truncated_powerlaw_search(const double* values, std::int64_t count,
                                              const TplSearchOptions& options, int threads);

// The search for many spectra (options per spectrum), one thread per spectrum.
void fit_truncated_powerlaw_search_batch(const double* const* values, const std::int64_t* counts,
                                         const TplSearchOptions* options,
                                         std::int64_t num_spectra, TplSearchResult* results,
                                         int threads);

// The search with every candidate's fit in `curve` (ascending xmin), D computed for each fit
// that did not fail. The selection is the same as fit_truncated_powerlaw_search's.
TplSearchResult truncated_powerlaw_curve(const double* values, std::int64_t count,
                                         const TplSearchOptions& options,
                                         std::vector<TplFitResult>& curve, int threads);

}  // namespace hts
