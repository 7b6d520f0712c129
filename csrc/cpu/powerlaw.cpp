// All-xmin continuous power-law fit (Clauset et al. MLE + KS distance), with the
// candidate-selection rules of WeightWatcher 0.7.7 (see README "Power-law fit").
//
// Cost: alpha for every candidate is O(n) in total through compensated suffix sums of
// log(x). The KS distance of one candidate is O(n), so a plain scan is O(n^2). The
// selection only needs the argmin, so candidates are pruned exactly: a candidate is
// dropped as soon as one of its deviations proves it cannot beat the best so far
// (first index wins ties), and the deviations of a block of points are bounded from the
// block's end points because both the fitted and the empirical CDF are monotone. The
// result is the same argmin, bit for bit, as the plain scan in powerlaw_curve().

#include "hts/powerlaw.hpp"

#include "hts/parallel.hpp"
#include "hts/powerlaw_math.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

namespace hts {
namespace {

// Points between two evaluated block end points (inside a block, ranges are bisected).
constexpr std::int64_t kBlock = 64;
// Slack added to the bound of a range: the computed CDFs are monotone in j as long as libm's
// log and exp are, which glibc's are; the slack keeps the bound safe if an exp were not.
constexpr double kBoundSlack = 1e-13;

// Sorted fitted values and everything derived from them once per spectrum.
struct Prepared {
    std::vector<double> x;       // values > threshold, ascending
    std::vector<double> logx;    // log(x)
    std::vector<double> alphas;  // per candidate
};

// S_i = sum_{j >= i} log(x_j / x_i) for every i (see pl::SuffixLogRatioSum).
std::vector<double> log_ratio_sums(const std::vector<double>& logx) {
    const std::int64_t n = static_cast<std::int64_t>(logx.size());
    std::vector<double> sums(static_cast<std::size_t>(n));
    pl::SuffixLogRatioSum acc;
    for (std::int64_t i = n - 1; i >= 0; --i)
        sums[static_cast<std::size_t>(i)] =
            acc.push(logx[static_cast<std::size_t>(i)], static_cast<double>(n - i));
    return sums;
}

// Checks the input and fills prep.x (sorted values above the threshold).
FitError prepare_values(const double* values, std::int64_t count, const PowerLawOptions& opt,
                        Prepared& prep, std::int64_t& bad_index) {
    if (count <= 0) return FitError::empty;
    prep.x.clear();
    prep.x.reserve(static_cast<std::size_t>(count));
    bool sorted = true;
    for (std::int64_t k = 0; k < count; ++k) {
        const double v = values[k];
        if (!std::isfinite(v)) {
            bad_index = k;
            return FitError::non_finite;
        }
        if (v < 0.0) {
            bad_index = k;
            return FitError::negative;
        }
        if (v > opt.threshold && v > 0.0) {  // log(0) cannot enter the fit
            if (!prep.x.empty() && v < prep.x.back()) sorted = false;
            prep.x.push_back(v);
        }
    }
    if (prep.x.size() < 2) return FitError::too_few;
    if (!sorted) std::sort(prep.x.begin(), prep.x.end());
    prep.logx.resize(prep.x.size());
    for (std::size_t j = 0; j < prep.x.size(); ++j) prep.logx[j] = std::log(prep.x[j]);
    return FitError::none;
}

// Fitted-CDF evaluation for one candidate.
struct Candidate {
    const double* logx;
    std::int64_t start;  // candidate index i (xmin = x_i)
    double n;            // tail size as a double
    double exponent;     // 1 - alpha

    // |F_fit(x_j) - (j - i)/n| with F_fit(x) = 1 - (x/xmin)^(1 - alpha). Every deviation,
    // pruned search or full scan, goes through these two functions, so they agree bit for bit.
    double deviation(std::int64_t j) const { return std::fabs(fitted_cdf(j) - empirical_cdf(j)); }
    double fitted_cdf(std::int64_t j) const {
        return pl::fitted_cdf(logx[j], logx[start], exponent);
    }
    double empirical_cdf(std::int64_t j) const { return pl::empirical_cdf(j, start, n); }
};

// Plain O(n) KS distance of candidate i.
double ks_distance_full(const Candidate& c, std::int64_t end) {
    double worst = 0.0;
    for (std::int64_t j = c.start; j < end; ++j) worst = std::max(worst, c.deviation(j));
    return worst;
}

// Running maximum of the deviations of one candidate while its points are visited.
struct RunningMax {
    double worst = 0.0;
    std::int64_t at = 0;
};

// Visits the points strictly between ja and jb (fitted CDF fa, fb at the ends) by
// bisection, skipping every range whose bound cannot exceed the running maximum: both
// CDFs increase with j, so inside [ja, jb] the deviation |F - E| is at most
// max(F(jb) - E(ja), E(jb) - F(ja)). Returns false as soon as `loses` holds.
template <class Loses>
bool refine_range(const Candidate& c, std::int64_t ja, double fa, std::int64_t jb, double fb,
                  RunningMax& run, const Loses& loses) {
    if (jb - ja < 2) return true;
    const double bound =
        std::max(fb - c.empirical_cdf(ja), c.empirical_cdf(jb) - fa) + kBoundSlack;
    if (bound <= run.worst) return true;
    const std::int64_t mid = ja + (jb - ja) / 2;
    const double fm = c.fitted_cdf(mid);
    const double dev = std::fabs(fm - c.empirical_cdf(mid));
    if (dev > run.worst) {
        run.worst = dev;
        run.at = mid;
        if (loses(dev)) return false;
    }
    return refine_range(c, ja, fa, mid, fm, run, loses) &&
           refine_range(c, mid, fm, jb, fb, run, loses);
}

// Exact KS distance of candidate c, unless some deviation shows the candidate loses to
// the incumbent; `loses(r)` says whether a candidate whose distance is at least r loses.
// Returns true with *distance set when computed; false when pruned. *where receives the
// index of the largest (or the pruning) deviation, a good first probe for the neighbour.
template <class Loses>
bool ks_distance_pruned(const Candidate& c, std::int64_t end, std::int64_t hint,
                        const Loses& loses, double* distance, std::int64_t* where,
                        std::vector<double>& boundary) {
    RunningMax run{0.0, c.start};
    if (hint > c.start && hint < end) {
        run.worst = c.deviation(hint);
        run.at = hint;
        if (loses(run.worst)) {
            *where = hint;
            return false;
        }
    }
    // Block end points first (the largest deviations usually show up among them), then
    // the inside of the blocks whose bound could still beat the running maximum.
    const std::int64_t last = end - 1;
    const std::int64_t num_blocks = (last - c.start + kBlock - 1) / kBlock;
    boundary.resize(static_cast<std::size_t>(num_blocks + 1));
    for (std::int64_t b = 0; b <= num_blocks; ++b) {
        const std::int64_t j = std::min(c.start + b * kBlock, last);
        const double f = c.fitted_cdf(j);
        boundary[static_cast<std::size_t>(b)] = f;
        const double dev = std::fabs(f - c.empirical_cdf(j));
        if (dev > run.worst) {
            run.worst = dev;
            run.at = j;
            if (loses(dev)) {
                *where = j;
                return false;
            }
        }
    }
    for (std::int64_t b = 0; b < num_blocks; ++b) {
        const std::int64_t ja = c.start + b * kBlock;
        const std::int64_t jb = std::min(ja + kBlock, last);
        if (!refine_range(c, ja, boundary[static_cast<std::size_t>(b)], jb,
                          boundary[static_cast<std::size_t>(b + 1)], run, loses)) {
            *where = run.at;
            return false;
        }
    }
    *distance = run.worst;
    *where = run.at;
    return true;
}

// Standard rule: alpha_i = 1 + n_i / S_i; D_i = KS distance (1 when alpha_i <= 1).
void standard_alphas(Prepared& prep) {
    const std::int64_t nf = static_cast<std::int64_t>(prep.x.size());
    const std::vector<double> sums = log_ratio_sums(prep.logx);
    prep.alphas.resize(static_cast<std::size_t>(nf - 1));
    for (std::int64_t i = 0; i < nf - 1; ++i) {
        const double n = static_cast<double>(nf - i);
        prep.alphas[static_cast<std::size_t>(i)] =
            pl::standard_alpha(n, sums[static_cast<std::size_t>(i)]);
    }
}

Candidate make_candidate(const Prepared& prep, std::int64_t i, double alpha) {
    const std::int64_t nf = static_cast<std::int64_t>(prep.x.size());
    return Candidate{prep.logx.data(), i, static_cast<double>(nf - i), 1.0 - alpha};
}

// Index of the winning candidate under the standard rule, and its distance.
//
// Candidates are visited coarse to fine (stride 2^k, then 2^(k-1), ... 1), so a good
// incumbent is found after a few evaluations and most candidates are then pruned by a
// single deviation, probed where the nearest visited candidate deviated most.
std::int64_t select_standard(const Prepared& prep, double* best_distance) {
    const std::int64_t nf = static_cast<std::int64_t>(prep.x.size());
    const std::int64_t m = nf - 1;
    double best = std::numeric_limits<double>::infinity();
    std::int64_t best_i = m;
    std::vector<double> boundary;
    std::vector<std::int64_t> deviates_at(static_cast<std::size_t>(m), -1);

    auto consider = [&](std::int64_t i, std::int64_t hint) {
        const double alpha = prep.alphas[static_cast<std::size_t>(i)];
        double distance;
        if (!(alpha > 1.0)) {
            distance = 1.0;
        } else {
            const Candidate c = make_candidate(prep, i, alpha);
            auto loses = [&](double r) { return r > best || (r == best && i > best_i); };
            std::int64_t where = hint;
            const bool computed =
                ks_distance_pruned(c, nf, hint, loses, &distance, &where, boundary);
            deviates_at[static_cast<std::size_t>(i)] = where;
            if (!computed) return;
        }
        if (distance < best || (distance == best && i < best_i)) {
            best = distance;
            best_i = i;
        }
    };
    std::int64_t stride = 1;
    while (stride * 2 <= m) stride *= 2;
    consider(0, nf - 1);
    for (; stride >= 1; stride /= 2) {
        // At this level visit the odd multiples of stride; their neighbours at +-stride
        // were visited at a coarser level.
        for (std::int64_t i = stride; i < m; i += 2 * stride) {
            const std::int64_t left = deviates_at[static_cast<std::size_t>(i - stride)];
            const std::int64_t right =
                i + stride < m ? deviates_at[static_cast<std::size_t>(i + stride)] : -1;
            consider(i, left > i ? left : (right > i ? right : nf - 1));
        }
    }
    *best_distance = best;
    return best_i;
}

// WeightWatcher 0.7.7's small-sample rule (its WWFit.fit_powerlaw_smallN followed by the
// argmin-D selection in WWFit.__init__). Fills alphas and Ds for every candidate.
void small_n_scan(const Prepared& prep, const PowerLawOptions& opt, std::vector<double>& alphas,
                  std::vector<double>& ds) {
    const std::int64_t nf = static_cast<std::int64_t>(prep.x.size());
    const std::vector<double> sums = log_ratio_sums(prep.logx);
    alphas.assign(static_cast<std::size_t>(nf - 1), 0.0);
    ds.assign(static_cast<std::size_t>(nf - 1), 1.0);
    bool any_valid = false;
    for (std::int64_t i = 0; i < nf - 1; ++i) {
        const std::int64_t tail = nf - i;
        if (tail < opt.small_n_min_tail) continue;
        const double s = sums[static_cast<std::size_t>(i)];
        if (s <= 1e-12) continue;
        const double alpha = pl::small_n_alpha(static_cast<double>(tail), s);
        alphas[static_cast<std::size_t>(i)] = alpha;
        if (alpha <= 1.0) continue;
        ds[static_cast<std::size_t>(i)] = ks_distance_full(make_candidate(prep, i, alpha), nf);
        any_valid = true;
    }
    if (!any_valid) {
        // No candidate survived: the whole sample is the tail (index 0).
        const double s = sums[0];
        if (s > 1e-12) {
            const double alpha = pl::small_n_alpha(static_cast<double>(nf), s);
            alphas[0] = alpha;
            ds[0] = ks_distance_full(make_candidate(prep, 0, alpha), nf);
        }
    }
}

std::int64_t first_argmin(const std::vector<double>& v) {
    return static_cast<std::int64_t>(std::min_element(v.begin(), v.end()) - v.begin());
}

void finish(const Prepared& prep, std::int64_t i, double alpha, double distance,
            PowerLawFitResult& r) {
    const std::int64_t nf = static_cast<std::int64_t>(prep.x.size());
    r.xmin_index = i;
    r.xmin = prep.x[static_cast<std::size_t>(i)];
    r.xmax = prep.x.back();
    r.alpha = alpha;
    r.D = distance;
    r.sigma = pl::alpha_sigma(alpha, static_cast<double>(nf - i));
    const auto first = std::lower_bound(prep.x.begin(), prep.x.end(), r.xmin);
    r.num_pl_spikes = static_cast<std::int64_t>(prep.x.end() - first);
    r.num_fit = nf;
}

bool use_small_n(std::int64_t nf, const PowerLawOptions& opt) {
    return opt.small_n_cutoff > 0 && nf < opt.small_n_cutoff;
}

PowerLawFitResult fit_prepared(Prepared& prep, const PowerLawOptions& opt) {
    PowerLawFitResult r;
    const std::int64_t nf = static_cast<std::int64_t>(prep.x.size());
    if (use_small_n(nf, opt)) {
        std::vector<double> alphas, ds;
        small_n_scan(prep, opt, alphas, ds);
        const std::int64_t i = first_argmin(ds);
        r.method = FitMethod::small_n;
        finish(prep, i, alphas[static_cast<std::size_t>(i)], ds[static_cast<std::size_t>(i)], r);
        return r;
    }
    standard_alphas(prep);
    double distance = 0.0;
    const std::int64_t i = select_standard(prep, &distance);
    r.method = FitMethod::standard;
    finish(prep, i, prep.alphas[static_cast<std::size_t>(i)], distance, r);
    return r;
}

// Fills prep from the input; on bad input records the error in r and returns false.
bool prepare(const double* values, std::int64_t count, const PowerLawOptions& options,
             Prepared& prep, PowerLawFitResult& r) {
    r.error = prepare_values(values, count, options, prep, r.bad_index);
    r.num_fit = static_cast<std::int64_t>(prep.x.size());
    return r.error == FitError::none;
}

}  // namespace

PowerLawFitResult fit_powerlaw(const double* values, std::int64_t count,
                               const PowerLawOptions& options, std::vector<double>* logs) {
    Prepared prep;
    PowerLawFitResult r;
    if (logs != nullptr) logs->clear();
    if (!prepare(values, count, options, prep, r)) return r;
    r = fit_prepared(prep, options);
    if (logs != nullptr) *logs = std::move(prep.logx);
    return r;
}

void fit_powerlaw_batch(const double* const* values, const std::int64_t* counts,
                        std::int64_t num_spectra, const PowerLawOptions& options,
                        PowerLawFitResult* results, int threads) {
    parallel_for(num_spectra, threads, [&](std::int64_t k, int) {
        results[k] = fit_powerlaw(values[k], counts[k], options);
    });
}

PowerLawFitResult powerlaw_curve(const double* values, std::int64_t count,
                                 const PowerLawOptions& options, PowerLawCurve& curve,
                                 int threads) {
    Prepared prep;
    PowerLawFitResult r;
    if (!prepare(values, count, options, prep, r)) return r;
    const std::int64_t nf = static_cast<std::int64_t>(prep.x.size());
    const std::size_t m = static_cast<std::size_t>(nf - 1);
    curve.xmins.assign(prep.x.begin(), prep.x.end() - 1);
    curve.sigmas.resize(m);
    if (use_small_n(nf, options)) {
        small_n_scan(prep, options, curve.alphas, curve.Ds);
        r.method = FitMethod::small_n;
    } else {
        standard_alphas(prep);
        curve.alphas = prep.alphas;
        curve.Ds.assign(m, 1.0);
        parallel_for(static_cast<std::int64_t>(m), threads, [&](std::int64_t i, int) {
            const double alpha = curve.alphas[static_cast<std::size_t>(i)];
            if (alpha > 1.0)
                curve.Ds[static_cast<std::size_t>(i)] =
                    ks_distance_full(make_candidate(prep, i, alpha), nf);
        });
        r.method = FitMethod::standard;
    }
    for (std::size_t i = 0; i < m; ++i)
        curve.sigmas[i] = pl::alpha_sigma(curve.alphas[i], static_cast<double>(nf) -
                                                               static_cast<double>(i));
    const std::int64_t best = first_argmin(curve.Ds);
    finish(prep, best, curve.alphas[static_cast<std::size_t>(best)],
           curve.Ds[static_cast<std::size_t>(best)], r);
    return r;
}

}  // namespace hts
