// Truncated power-law MLE at a fixed xmin and over every xmin candidate (see tpl.hpp for the
// model).
//
// The per-candidate math is tpl_math.hpp's, shared with the CUDA kernels: the moments of the
// incomplete gamma integral, the log-likelihood with its gradient and Hessian, the
// box-constrained Newton iteration and its stopping rule, the closed-form power-law boundary,
// the standard errors, the fitted CDF and the KS distance (read its comments for the math).
// This file is what the host does around it: input checks and sorting for the fit at a fixed
// xmin, and the all-xmin search (chains of warm starts with shared tail sums, threads, the
// pruned KS scan).

#include "hts/tpl.hpp"

#include "hts/parallel.hpp"
#include "hts/special.hpp"
#include "hts/tpl_math.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <mutex>
#include <vector>

namespace hts {
namespace {

using tplhd::GammaTail;
using tplhd::Sum;
using tplhd::TailFit;
using tplhd::TailStats;

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// tpl_math.hpp reports statuses as the plain ints of TplStatus.
static_assert(static_cast<int>(TplStatus::converged) == tplhd::converged &&
                  static_cast<int>(TplStatus::power_law) == tplhd::power_law &&
                  static_cast<int>(TplStatus::alpha_bound) == tplhd::alpha_bound &&
                  static_cast<int>(TplStatus::lambda_bound) == tplhd::lambda_bound &&
                  static_cast<int>(TplStatus::not_converged) == tplhd::not_converged &&
                  static_cast<int>(TplStatus::failed) == tplhd::failed,
              "TplStatus and tplhd::Status must agree");
static_assert(static_cast<int>(TplError::none) == tplhd::none &&
                  static_cast<int>(TplError::non_finite) == tplhd::non_finite &&
                  static_cast<int>(TplError::bad_xmin) == tplhd::bad_xmin &&
                  static_cast<int>(TplError::too_few) == tplhd::too_few &&
                  static_cast<int>(TplError::degenerate) == tplhd::degenerate,
              "TplError and tplhd::Error must agree");

// The fit of the tail t as a TplFitResult (D left for the KS scan).
TplFitResult to_result(const TailStats& t, const TailFit& f) {
    TplFitResult r;
    tplhd::store_fit(t, f, r);
    return r;
}

TplFitResult failed(TplError error, std::int64_t n, std::int64_t bad_index = -1) {
    TplFitResult r;
    r.alpha = r.lambda = r.loglik = r.D = r.alpha_se = r.lambda_se = kNaN;
    r.n = n;
    r.status = TplStatus::failed;
    r.error = error;
    r.bad_index = bad_index;
    return r;
}

// The moments the fitted CDF of f needs: nullptr for the power law.
const GammaTail* cdf_moments(const TailFit& f) {
    return f.status == tplhd::power_law ? nullptr : &f.moments;
}

// alpha_min clamped to [kTplAlphaMin, kTplAlphaMinLimit] (NaN: kTplAlphaMin).
double lower_alpha(double alpha_min) {
    return alpha_min >= kTplAlphaMin ? std::min(alpha_min, kTplAlphaMinLimit) : kTplAlphaMin;
}

}  // namespace

TplFitResult fit_truncated_powerlaw(const double* values, std::int64_t count, double xmin,
                                    double alpha_min) {
    if (!(xmin > 0.0) || !std::isfinite(xmin)) return failed(TplError::bad_xmin, 0);
    std::vector<double> x;
    for (std::int64_t k = 0; k < count; ++k) {
        const double v = values[k];
        if (!std::isfinite(v)) return failed(TplError::non_finite, 0, k);
        if (v >= xmin) x.push_back(v);
    }
    const std::int64_t n = static_cast<std::int64_t>(x.size());
    if (n < 2) return failed(TplError::too_few, n);
    std::sort(x.begin(), x.end());
    if (x.front() == x.back()) return failed(TplError::degenerate, n);

    std::vector<double> w(x.size());  // ln(x / xmin), for the KS distance
    const TailStats t = tplhd::tail_stats(x.data(), n, xmin, w.data());
    const double* rules = rule_table();
    const TailFit f = tplhd::fit_tail(t, nullptr, rules, lower_alpha(alpha_min));
    TplFitResult r = to_result(t, f);
    const GammaTail* moments = cdf_moments(f);
    r.D = moments == nullptr || moments->ok
              ? tplhd::ks_distance(w.data(), n, t.n,
                                   tplhd::fitted_cdf(f.alpha, moments, false, 0.0, rules))
              : kNaN;
    return r;
}

void fit_truncated_powerlaw_batch(const double* const* values, const std::int64_t* counts,
                                  const double* xmins, std::int64_t num_pairs,
                                  TplFitResult* results, int threads, double alpha_min) {
    parallel_for(num_pairs, threads, [&](std::int64_t k, int) {
        results[k] = fit_truncated_powerlaw(values[k], counts[k], xmins[k], alpha_min);
    });
}


// ---- The xmin search ------------------------------------------------------------------------
//
// Phase 1 fits every candidate. Candidates are taken in fixed chains of kChain neighbours
// (fixed, so that results do not depend on the thread count); along a chain, from the
// largest xmin down, each Newton iteration starts at the previous candidate's maximum, and
// the tail sums Σ ln(x/r), Σ (x - r)/r about the chain's smallest xmin r are extended by the
// few values in between, so a chain costs O(n) rather than O(n) per candidate. The mean of
// ln(x/xmin) is then Σ ln(x/r)/n - ln(xmin/r): a cancellation of relative size ln(xmin/r) /
// mean ln(x/xmin), small inside a chain; tails of at most kDirectTail values are summed
// directly about their own xmin, as fit_truncated_powerlaw does.
//
// Phase 2 computes D only where it can matter. The fitted CDF F and the empirical one (k/n)
// both increase along the sorted tail, so on a block of points between end points a and b
// the deviation |F - k/n| is at most max(F(b) - E(a), E(b) - F(a)); blocks whose bound is
// below the largest deviation found are skipped (this never changes D), and a candidate is
// dropped as soon as one deviation shows it loses to the best D found so far (first index
// wins ties). The winner is never dropped, so its D, and the choice, are exactly those of
// the full scan in truncated_powerlaw_curve().

namespace {

constexpr std::int64_t kChain = 32;
constexpr std::int64_t kDirectTail = 64;
constexpr std::int64_t kKsBlock = 64;
// Block end points take one long quadrature segment, the points inside a sum of short ones:
// the two agree to ~1e-16 of the total, far inside this slack on the bound.
constexpr double kKsSlack = 1e-12;

struct Scan {
    std::vector<double> x;             // fitted values, ascending
    std::vector<std::int64_t> starts;  // per candidate: index of its first occurrence in x
    std::vector<TplFitResult> fits;
    std::vector<GammaTail> moments;    // at each interior maximum (not for power_law)
};

TplSearchError prepare_scan(const double* values, std::int64_t count,
                            const TplSearchOptions& opt, Scan& s, std::int64_t& bad_index) {
    for (std::int64_t k = 0; k < count; ++k) {
        const double v = values[k];
        if (!std::isfinite(v)) {
            bad_index = k;
            return TplSearchError::non_finite;
        }
        if (v > opt.threshold) s.x.push_back(v);
    }
    std::sort(s.x.begin(), s.x.end());
    const std::size_t n = s.x.size();
    for (std::size_t j = 0; j < n; ++j) {
        const double c = s.x[j];
        if ((j == 0 || c != s.x[j - 1]) && c != s.x[n - 1] && c >= opt.xmin_low &&
            c < opt.xmin_high)
            s.starts.push_back(static_cast<std::int64_t>(j));
    }
    return s.starts.empty() ? TplSearchError::no_candidates : TplSearchError::none;
}

// Σ ln(x_j / r) and Σ (x_j - r) / r over j >= next (extended downwards).
struct RefSums {
    double r = 0.0;
    std::int64_t next = 0;
    Sum w, ym1;

    void extend(const std::vector<double>& x, std::int64_t to) {
        for (std::int64_t j = next - 1; j >= to; --j) {
            const double d = (x[static_cast<std::size_t>(j)] - r) / r;
            w.add(std::log1p(d));
            ym1.add(d);
        }
        next = std::min(next, to);
    }
};

// The statistics of the tail x[i..] from sums about r (r <= x_i).
TailStats tail_from(const RefSums& sums, double c, std::int64_t m) {
    TailStats t;
    t.xmin = c;
    t.log_xmin = std::log(c);
    t.n = static_cast<double>(m);
    const double e = (c - sums.r) / sums.r;
    t.mean_w = sums.w.value() / t.n - std::log1p(e);
    t.mean_ym1 = (sums.ym1.value() / t.n - e) * (sums.r / c);
    return t;
}

// Phase 1 for the candidates [first, last) of a chain, alpha >= alpha_min.
void fit_chain(Scan& s, std::int64_t first, std::int64_t last, double alpha_min) {
    const double* rules = rule_table();
    const std::int64_t n = static_cast<std::int64_t>(s.x.size());
    RefSums chain;
    chain.r = s.x[static_cast<std::size_t>(s.starts[static_cast<std::size_t>(first)])];
    chain.next = n;
    const TplFitResult* previous = nullptr;
    for (std::int64_t k = last - 1; k >= first; --k) {
        const std::size_t kk = static_cast<std::size_t>(k);
        const std::int64_t i = s.starts[kk];
        const double c = s.x[static_cast<std::size_t>(i)];
        const std::int64_t m = n - i;
        TailStats t;
        if (m <= kDirectTail) {
            RefSums own;
            own.r = c;
            own.next = n;
            own.extend(s.x, i);
            t = tail_from(own, c, m);
        } else {
            chain.extend(s.x, i);
            t = tail_from(chain, c, m);
        }
        double start[2];
        const bool warm = previous != nullptr && previous->status == TplStatus::converged;
        if (warm) {
            start[0] = previous->alpha;
            start[1] = std::log(previous->lambda * c);
        }
        const TailFit f = tplhd::fit_tail(t, warm ? start : nullptr, rules, alpha_min);
        s.fits[kk] = to_result(t, f);
        s.moments[kk] = f.moments;
        previous = &s.fits[kk];
    }
}

void fit_candidates(Scan& s, double alpha_min, int threads) {
    const std::int64_t count = static_cast<std::int64_t>(s.starts.size());
    s.fits.assign(s.starts.size(), TplFitResult{});
    s.moments.assign(s.starts.size(), GammaTail{});
    const std::int64_t chains = (count + kChain - 1) / kChain;
    parallel_for(chains, threads, [&](std::int64_t q, int) {
        fit_chain(s, q * kChain, std::min(count, (q + 1) * kChain), alpha_min);
    });
}

// The fitted CDF of one candidate at the points of its tail.
struct KsCandidate {
    const double* x = nullptr;
    std::int64_t start = 0;  // index of xmin in x
    std::int64_t m = 0;      // tail size
    double n = 0.0;
    double xmin = 0.0;
    tplhd::FittedCdf cdf;    // at the start of its walk up the tail

    double w(std::int64_t k) const { return tplhd::log_ratio(x[start + k], xmin); }
    double empirical(std::int64_t k) const { return tplhd::empirical_cdf(k, n); }
};

KsCandidate ks_candidate(const Scan& s, std::size_t k, double cdf_xmax) {
    KsCandidate c;
    c.x = s.x.data();
    c.start = s.starts[k];
    c.m = static_cast<std::int64_t>(s.x.size()) - c.start;
    c.n = static_cast<double>(c.m);
    c.xmin = s.x[static_cast<std::size_t>(c.start)];
    const bool pl = s.fits[k].status == TplStatus::power_law;
    const bool cut = std::isfinite(cdf_xmax);
    const double w_top = cut ? tplhd::log_ratio(cdf_xmax, c.xmin) : 0.0;
    c.cdf = tplhd::fitted_cdf(s.fits[k].alpha, pl ? nullptr : &s.moments[k], cut, w_top,
                              rule_table());
    return c;
}

// Exact KS distance max_k |F(x_k) - k/n| of candidate c unless `loses(deviation)` holds for
// one of its deviations (then false: dropped). `ends`/`cums` are scratch space.
template <class Loses>
bool ks_blocked(const KsCandidate& c, const Loses& loses, double* distance,
                std::vector<double>& ends, std::vector<double>& cums) {
    const std::int64_t last = c.m - 1;
    const std::int64_t blocks = (last + kKsBlock - 1) / kKsBlock;
    ends.resize(static_cast<std::size_t>(blocks + 1));
    cums.resize(static_cast<std::size_t>(blocks + 1));
    double worst = 0.0;
    auto visit = [&](std::int64_t k, double f) {
        const double dev = tplhd::ks_deviation(f, k, c.n);
        if (dev > worst) {
            worst = dev;
            return !loses(dev);
        }
        return true;
    };
    // The fitted CDF walks up the tail: first over the block end points, then, from a block's
    // start (restart), over the points inside it.
    tplhd::FittedCdf cdf = c.cdf;
    for (std::int64_t b = 0; b <= blocks; ++b) {
        const std::int64_t k = std::min(b * kKsBlock, last);
        const double f = cdf.at(c.w(k));
        cums[static_cast<std::size_t>(b)] = cdf.cum;
        ends[static_cast<std::size_t>(b)] = f;
        if (!visit(k, f)) return false;
    }
    for (std::int64_t b = 0; b < blocks; ++b) {
        const std::int64_t ka = b * kKsBlock;
        const std::int64_t kb = std::min(ka + kKsBlock, last);
        const double fa = ends[static_cast<std::size_t>(b)];
        const double fb = ends[static_cast<std::size_t>(b + 1)];
        const double bound = std::max(fb - c.empirical(ka), c.empirical(kb) - fa) + kKsSlack;
        if (kb - ka < 2 || bound <= worst) continue;
        cdf.restart(cums[static_cast<std::size_t>(b)], c.w(ka));
        for (std::int64_t k = ka + 1; k < kb; ++k) {
            if (!visit(k, cdf.at(c.w(k)))) return false;
        }
    }
    *distance = worst;
    return true;
}

// A maximum found: interior, at lambda = 0, or (with a raised alpha_min) on alpha = alpha_min,
// the maximum over the allowed alphas; and alpha > alpha_above.
bool is_valid(const TplFitResult& f, const TplSearchOptions& opt) {
    const double alpha_min = lower_alpha(opt.alpha_min);
    const bool on_bound = f.status == TplStatus::alpha_bound && alpha_min > kTplAlphaMin &&
                          f.alpha == alpha_min;
    return (f.status == TplStatus::converged || f.status == TplStatus::power_law || on_bound) &&
           f.alpha > opt.alpha_above;
}

// Candidates coarse to fine (0, then strides 2^k, 2^(k-1), ... 1): a good incumbent early.
std::vector<std::int64_t> coarse_to_fine(std::int64_t count) {
    std::vector<std::int64_t> order;
    order.reserve(static_cast<std::size_t>(count));
    order.push_back(0);
    std::int64_t stride = 1;
    while (stride * 2 < count) stride *= 2;
    for (; stride >= 1; stride /= 2)
        for (std::int64_t i = stride; i < count; i += 2 * stride) order.push_back(i);
    return order;
}

struct Incumbent {
    std::mutex lock;
    double D = std::numeric_limits<double>::infinity();
    std::int64_t k = std::numeric_limits<std::int64_t>::max();

    void offer(double d, std::int64_t candidate) {
        const std::lock_guard<std::mutex> guard(lock);
        if (d < D || (d == D && candidate < k)) {
            D = d;
            k = candidate;
        }
    }
};

// Phase 2: D of every valid candidate that could win (all of them when `every`), the fits'
// D fields filled (NaN for dropped ones); returns the index of the winner (-1: none valid).
std::int64_t select_by_ks(Scan& s, const TplSearchOptions& opt, bool every, int threads) {
    const std::int64_t count = static_cast<std::int64_t>(s.fits.size());
    std::vector<std::int64_t> order;
    for (const std::int64_t k : coarse_to_fine(count)) {
        const TplFitResult& f = s.fits[static_cast<std::size_t>(k)];
        const bool usable =
            f.status == TplStatus::power_law || s.moments[static_cast<std::size_t>(k)].ok;
        if (every ? (f.status != TplStatus::failed && usable) : is_valid(f, opt))
            order.push_back(k);
        else
            s.fits[static_cast<std::size_t>(k)].D = kNaN;
    }
    const int workers = static_cast<int>(
        std::max<std::int64_t>(1, std::min<std::int64_t>(resolve_threads(threads),
                                                         static_cast<std::int64_t>(order.size()))));
    std::vector<std::vector<double>> ends(static_cast<std::size_t>(workers));
    std::vector<std::vector<double>> cums(static_cast<std::size_t>(workers));
    Incumbent best;
    parallel_for(static_cast<std::int64_t>(order.size()), workers, [&](std::int64_t item,
                                                                      int worker) {
        const std::int64_t k = order[static_cast<std::size_t>(item)];
        const std::size_t kk = static_cast<std::size_t>(k);
        double bound_d;
        std::int64_t bound_k;
        {
            const std::lock_guard<std::mutex> guard(best.lock);
            bound_d = best.D;
            bound_k = best.k;
        }
        auto loses = [&](double r) {
            return !every && (r > bound_d || (r == bound_d && k > bound_k));
        };
        const KsCandidate c = ks_candidate(s, kk, opt.cdf_xmax);
        double distance = kNaN;
        const auto w = static_cast<std::size_t>(worker);
        const bool computed = ks_blocked(c, loses, &distance, ends[w], cums[w]);
        s.fits[kk].D = computed ? distance : kNaN;
        if (computed && is_valid(s.fits[kk], opt)) best.offer(distance, k);
    });
    return best.k == std::numeric_limits<std::int64_t>::max() ? -1 : best.k;
}

TplSearchResult search(const double* values, std::int64_t count, const TplSearchOptions& opt,
                       bool every, Scan& s, int threads) {
    TplSearchResult r;
    r.error = prepare_scan(values, count, opt, s, r.bad_index);
    r.fit = failed(TplError::none, 0);
    if (r.error != TplSearchError::none) return r;
    fit_candidates(s, lower_alpha(opt.alpha_min), threads);
    r.candidates = static_cast<std::int64_t>(s.fits.size());
    for (const TplFitResult& f : s.fits) r.valid += is_valid(f, opt) ? 1 : 0;
    r.best = select_by_ks(s, opt, every, threads);
    if (r.best < 0) {
        r.error = TplSearchError::no_valid;
        return r;
    }
    r.fit = s.fits[static_cast<std::size_t>(r.best)];
    return r;
}

}  // namespace

TplSearchResult fit_truncated_powerlaw_search(const double* values, std::int64_t count,
                                              const TplSearchOptions& options, int threads) {
    Scan s;
    return search(values, count, options, false, s, threads);
}

void fit_truncated_powerlaw_search_batch(const double* const* values, const std::int64_t* counts,
                                         const TplSearchOptions* options,
                                         std::int64_t num_spectra, TplSearchResult* results,
                                         int threads) {
    parallel_for(num_spectra, threads, [&](std::int64_t k, int) {
        results[k] = fit_truncated_powerlaw_search(values[k], counts[k], options[k], 1);
    });
}

TplSearchResult truncated_powerlaw_curve(const double* values, std::int64_t count,
                                         const TplSearchOptions& options,
                                         std::vector<TplFitResult>& curve, int threads) {
    Scan s;
    TplSearchResult r = search(values, count, options, true, s, threads);
    curve = std::move(s.fits);
    return r;
}

}  // namespace hts
