// Truncated power-law MLE at a fixed xmin (see tpl.hpp for the model).
//
// With y = x / xmin, w = ln y and mu = lambda xmin, the mean log-likelihood of a tail with
// L = mean(w) and Y = mean(y) is
//
//     l(alpha, mu) = -ln xmin - alpha L - mu Y - ln K(1 - alpha, mu),
//     K(s, mu) = ∫_0^∞ exp(s w - mu e^w) dw = ∫_1^∞ u^(-alpha) e^(-mu u) du,
//
// so the data enter only through (L, Y), and the derivatives of ln K are moments of
// (w, v = mu e^w) under the fitted density (special.hpp): with sigma = ln mu,
//
//     dl/dalpha = E[w] - L,   dl/dsigma = E[v] - mu Y,
//     the Hessian of l in (alpha, mu), rescaled by mu, is -Cov(w, v)   (concave).
//
// Optimizer: a box-constrained (trust-region-like) Newton method on that concave function,
// in the coordinates (alpha, t) with mu -> mu (1 + t), so that the model Hessian -Cov(w, v)
// is the exact one of l in (alpha, mu) and always negative definite. Each iteration
// maximises the quadratic model over a step box: |d alpha| <= 4, mu shrinks by at most a
// factor 100 or grows by at most e^4, and the search box of tpl.hpp (a variable on a bound
// whose gradient points out of the box stays there: projected Newton). Inside the box that is
// the plain Newton step; otherwise the best point on the box's edges (each the clamped 1-D
// optimum), which still improves the model and is therefore an ascent direction. Then a
// backtracking (Armijo) line search along it. Clipping each variable on its own edge (rather
// than shortening the whole step) matters near mu -> 0, where Var(v) blows up for
// alpha <= 3 and a jointly scaled step would stall alpha. Since l is concave the iteration
// reaches the unique maximum from any start, quadratically near it. It stops right after a
// full step taken from a decrement g . d (the squared step in the Fisher metric, per
// observation) below 1e-14 (quadratic convergence leaves ~1e-28), once the decrement is below
// 1e-30, or when below 1e-10 no step changes l by more than its rounding. A decrement below
// 1e-14 always gets that last full step: stopping before it would leave the point
// sqrt(n * decrement) standard errors off the maximum (3e-9 for n = 1,000 at 1e-20), enough
// for two starting points to give results differing at that level. The mean
// log-likelihood and gradient are evaluated about the peak of the density (see evaluate())
// so that tails of nearly equal values (lambda xmin up to ~1e15) keep their digits.
//
// The boundary lambda = 0 is decided before the search, in closed form (tpl.hpp).

#include "hts/tpl.hpp"

#include "hts/parallel.hpp"
#include "hts/special.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <mutex>
#include <vector>

namespace hts {
namespace {

constexpr int kMaxIterations = 200;
constexpr int kMaxHalvings = 60;
constexpr double kMaxAlphaStep = 4.0;
constexpr double kMaxShrink = 0.99;       // mu shrinks by at most a factor 1/(1 - 0.99)
const double kMaxGrow = std::expm1(4.0);  // mu grows by at most a factor e^4
constexpr double kArmijo = 1e-4;
constexpr double kDoneDecrement = 1e-30;
constexpr double kQuadraticDecrement = 1e-14;
constexpr double kNoiseDecrement = 1e-10;
const double kSigmaMin = std::log(kTplMuMin);
const double kSigmaMax = std::log(kTplMuMax);
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// Compensated (Neumaier) summation.
struct Sum {
    double sum = 0.0;
    double carry = 0.0;
    void add(double v) {
        const double t = sum + v;
        carry += std::fabs(sum) >= std::fabs(v) ? (sum - t) + v : (v - t) + sum;
        sum = t;
    }
    double value() const { return sum + carry; }
};

struct Tail {
    std::vector<double> w;  // ln(x / xmin), ascending
    double xmin = 0.0;
    double log_xmin = 0.0;
    double mean_w = 0.0;    // L
    double mean_ym1 = 0.0;  // Y - 1 = mean((x - xmin) / xmin), kept apart from the 1 so
                            // that tails of nearly equal values keep their digits
    double n = 0.0;
};

// A point of the search with the mean log-likelihood and its gradient there.
struct Point {
    double alpha = 0.0;
    double sigma = 0.0;  // ln(mu)
    double mu = 0.0;     // lambda * xmin
    GammaTail moments;
    double ell = -std::numeric_limits<double>::infinity();
    double ell_noise = 0.0;  // rounding level of ell: it is a sum of terms of this size
    double g_alpha = 0.0;
    double g_sigma = 0.0;
};

// l and its gradient, written about the peak w_c of the density (special.hpp) so that no
// large terms cancel: with log K = s w_c - v_c + ln(scaled), s = 1 - alpha, v_c = mu e^(w_c),
//   l = -ln xmin - w_c - alpha (L - w_c) - mu (Y - e^(w_c)) - ln(scaled),
//   dl/dalpha = E[w - w_c] - (L - w_c),   dl/dsigma = E[v - v_c] - mu (Y - e^(w_c)).
Point evaluate(const Tail& t, double alpha, double sigma) {
    Point p;
    p.alpha = alpha;
    p.sigma = sigma;
    p.mu = std::exp(sigma);
    p.moments = gamma_tail(1.0 - alpha, p.mu);
    if (!p.moments.ok) return p;  // ell stays -inf: rejected by the line search
    const double wc = p.moments.peak_w;
    const double dl = t.mean_w - wc;
    const double dy = t.mean_ym1 - std::expm1(wc);
    const double log_scaled = std::log(p.moments.scaled);
    p.ell = -t.log_xmin - wc - alpha * dl - p.mu * dy - log_scaled;
    p.ell_noise = 2e-15 * (1.0 + std::fabs(t.log_xmin) + wc + std::fabs(alpha * dl) +
                           std::fabs(p.mu * dy) + std::fabs(log_scaled));
    p.g_alpha = p.moments.mean_dw - dl;
    p.g_sigma = p.moments.mean_dv - p.mu * dy;
    return p;
}

bool alpha_held(const Point& p) {
    return (p.alpha <= kTplAlphaMin && p.g_alpha < 0.0) ||
           (p.alpha >= kTplAlphaMax && p.g_alpha > 0.0);
}
bool sigma_held(const Point& p) {
    return (p.sigma <= kSigmaMin && p.g_sigma < 0.0) ||
           (p.sigma >= kSigmaMax && p.g_sigma > 0.0);
}

// Maximiser of the quadratic model q(d) = g.d - d^T C d / 2 over the box lo <= d <= hi
// (lo <= 0 <= hi componentwise), C = Cov(w, v) positive semi-definite. Either the Newton
// step lies in the box, or the maximum is on an edge, where it is the clamped 1-D optimum.
struct Step {
    double da = 0.0;
    double ds = 0.0;
};

double model(const Point& p, const Step& d) {
    const double caa = p.moments.var_w, css = p.moments.var_v, cas = p.moments.cov_wv;
    return p.g_alpha * d.da + p.g_sigma * d.ds -
           0.5 * (caa * d.da * d.da + 2.0 * cas * d.da * d.ds + css * d.ds * d.ds);
}

// argmax over [lo, hi] of g t - c t^2 / 2.
double clamped_optimum(double g, double c, double lo, double hi) {
    if (c > 0.0) return std::clamp(g / c, lo, hi);
    return g > 0.0 ? hi : (g < 0.0 ? lo : 0.0);
}

Step box_newton_step(const Point& p, const Step& lo, const Step& hi) {
    const double caa = p.moments.var_w, css = p.moments.var_v, cas = p.moments.cov_wv;
    const double det = caa * css - cas * cas;
    if (det > 0.0 && std::isfinite(det)) {
        Step d;
        d.da = (css * p.g_alpha - cas * p.g_sigma) / det;
        d.ds = (caa * p.g_sigma - cas * p.g_alpha) / det;
        if (d.da >= lo.da && d.da <= hi.da && d.ds >= lo.ds && d.ds <= hi.ds) return d;
    }
    Step best;
    double best_q = 0.0;
    auto consider = [&](const Step& d) {
        const double q = model(p, d);
        if (q > best_q) {
            best_q = q;
            best = d;
        }
    };
    for (const double a_edge : {lo.da, hi.da}) {
        consider({a_edge, clamped_optimum(p.g_sigma - cas * a_edge, css, lo.ds, hi.ds)});
    }
    for (const double s_edge : {lo.ds, hi.ds}) {
        consider({clamped_optimum(p.g_alpha - cas * s_edge, caa, lo.da, hi.da), s_edge});
    }
    return best;
}

// The step box at p: alpha moves by at most kMaxAlphaStep and stays in the search box; the
// relative change ds of mu (mu -> mu (1 + ds)) is limited to [-kMaxShrink, kMaxGrow] and to
// the box of sigma.
void step_box(const Point& p, Step& lo, Step& hi) {
    lo.da = std::min(0.0, std::max(-kMaxAlphaStep, kTplAlphaMin - p.alpha));
    hi.da = std::max(0.0, std::min(kMaxAlphaStep, kTplAlphaMax - p.alpha));
    lo.ds = std::min(0.0, std::max(-kMaxShrink, std::expm1(kSigmaMin - p.sigma)));
    hi.ds = std::max(0.0, std::min(kMaxGrow, std::expm1(kSigmaMax - p.sigma)));
}

// Maximises l over the box from (alpha0, sigma0); fills status and iteration count.
Point maximise(const Tail& t, double alpha0, double sigma0, TplStatus& status, int& iterations) {
    Point cur = evaluate(t, alpha0, sigma0);
    bool finished = false;
    bool stalled = false;
    bool small_full_step = false;
    iterations = 0;
    while (iterations < kMaxIterations) {
        Step lo, hi;
        step_box(cur, lo, hi);
        const Step d = box_newton_step(cur, lo, hi);
        // Decrement: the slope of l along d (> 0 unless at the maximum).
        const double decrement = cur.g_alpha * d.da + cur.g_sigma * d.ds;
        if (!(decrement > kDoneDecrement) || small_full_step) {
            finished = true;
            break;
        }
        double step = 1.0;
        bool accepted = false;
        Point next;
        for (int k = 0; k < kMaxHalvings; ++k) {
            double alpha = cur.alpha + step * d.da;
            double sigma = cur.sigma + std::log1p(step * d.ds);
            if (step == 1.0) {  // a variable sent to a bound lands exactly on it
                if (d.da == lo.da && alpha - kTplAlphaMin < 1e-12) alpha = kTplAlphaMin;
                if (d.da == hi.da && kTplAlphaMax - alpha < 1e-12) alpha = kTplAlphaMax;
                if (d.ds == lo.ds && sigma - kSigmaMin < 1e-12) sigma = kSigmaMin;
                if (d.ds == hi.ds && kSigmaMax - sigma < 1e-12) sigma = kSigmaMax;
            }
            alpha = std::clamp(alpha, kTplAlphaMin, kTplAlphaMax);
            sigma = std::clamp(sigma, kSigmaMin, kSigmaMax);
            next = evaluate(t, alpha, sigma);
            if (next.ell >= cur.ell + kArmijo * step * decrement) {
                accepted = true;
                break;
            }
            // Within rounding of the maximum the gain cannot be measured: take the full step
            // if it does not lose more than rounding.
            if (step == 1.0 && decrement <= kNoiseDecrement &&
                next.ell >= cur.ell - cur.ell_noise) {
                accepted = true;
                break;
            }
            if (decrement <= kQuadraticDecrement) break;  // only the last full step is tried
            step *= 0.5;
        }
        ++iterations;
        if (!accepted) {
            // No measurable progress. Near the maximum that is rounding, not failure.
            finished = decrement <= kNoiseDecrement;
            stalled = !finished;
            break;
        }
        small_full_step = step == 1.0 && decrement <= kQuadraticDecrement;
        cur = next;
    }
    if (!finished || stalled) {
        status = TplStatus::not_converged;
    } else if (alpha_held(cur)) {
        status = TplStatus::alpha_bound;
    } else if (sigma_held(cur)) {
        status = TplStatus::lambda_bound;
    } else {
        status = TplStatus::converged;
    }
    return cur;
}

// KS distance max_j |F(x_j) - j/n| of the fitted TPL (or, with mu = 0, the power law).
double ks_distance(const Tail& t, double alpha, const GammaTail* moments) {
    const std::size_t n = t.w.size();
    double worst = 0.0;
    if (moments == nullptr) {  // power law: F = 1 - y^(1 - alpha)
        for (std::size_t j = 0; j < n; ++j) {
            const double f = -std::expm1((1.0 - alpha) * t.w[j]);
            worst = std::max(worst, std::fabs(f - static_cast<double>(j) / t.n));
        }
        return worst;
    }
    // F(x_j) = ∫_0^{w_j} e^φ / ∫_0^∞ e^φ, accumulated over the gaps between sorted points.
    const double s = 1.0 - alpha;
    double cumulative = 0.0;
    double previous = 0.0;
    for (std::size_t j = 0; j < n; ++j) {
        cumulative += gamma_tail_segment(s, *moments, previous, t.w[j]);
        previous = t.w[j];
        const double f = std::min(1.0, cumulative / moments->scaled);
        worst = std::max(worst, std::fabs(f - static_cast<double>(j) / t.n));
    }
    return worst;
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


// Is the maximum on the boundary lambda = 0? Then *alpha_pl is the power-law MLE there
// (concavity: the power law's one-sided slope in mu, E_PL[y] - Y, is <= 0; its mean in units
// of xmin is (alpha - 1)/(alpha - 2) = 1 + 1/(alpha - 2)).
bool power_law_boundary(const Tail& t, double* alpha_pl) {
    *alpha_pl = 1.0 + 1.0 / t.mean_w;
    return *alpha_pl > 2.0 && 1.0 / (*alpha_pl - 2.0) <= t.mean_ym1;
}

// The maximum-likelihood fit of a tail from its statistics (mean_w, mean_ym1, n, xmin): every
// field but D. `start` = {alpha, sigma} starts the Newton iteration there (a warm start);
// nullptr starts from the power-law alpha and mu = 1 / Y. The moments at the maximum are in
// *moments (not for status power_law).
TplFitResult fit_tail(const Tail& t, const double* start, GammaTail* moments = nullptr) {
    TplFitResult r;
    r.xmin = t.xmin;
    r.n = static_cast<std::int64_t>(t.n);
    r.error = TplError::none;
    double alpha_pl = 0.0;
    if (power_law_boundary(t, &alpha_pl)) {
        r.alpha = alpha_pl;
        r.lambda = 0.0;
        r.loglik = t.n * (std::log(alpha_pl - 1.0) - t.log_xmin - alpha_pl * t.mean_w);
        r.alpha_se = (alpha_pl - 1.0) / std::sqrt(t.n);
        r.lambda_se = kNaN;
        r.iterations = 0;
        r.status = TplStatus::power_law;
        return r;
    }
    double alpha0 = std::clamp(alpha_pl, kTplAlphaMin, kTplAlphaMax);
    double sigma0 = std::clamp(-std::log1p(t.mean_ym1), kSigmaMin, kSigmaMax);
    if (start != nullptr) {
        alpha0 = std::clamp(start[0], kTplAlphaMin, kTplAlphaMax);
        sigma0 = std::clamp(start[1], kSigmaMin, kSigmaMax);
    }
    const Point best = maximise(t, alpha0, sigma0, r.status, r.iterations);
    r.alpha = best.alpha;
    r.lambda = best.mu / t.xmin;
    r.loglik = t.n * best.ell;
    // Observed information of the total log-likelihood in (alpha, sigma) is n Cov(w, v) at
    // the maximum (the gradient term vanishes there); lambda = e^sigma / xmin.
    const double caa = best.moments.var_w;
    const double css = best.moments.var_v;
    const double cas = best.moments.cov_wv;
    const double det = caa * css - cas * cas;
    if (det > 0.0) {
        r.alpha_se = std::sqrt(css / (t.n * det));
        r.lambda_se = r.lambda * std::sqrt(caa / (t.n * det));
    } else {
        r.alpha_se = r.lambda_se = kNaN;
    }
    if (moments != nullptr) *moments = best.moments;
    return r;
}

}  // namespace

TplFitResult fit_truncated_powerlaw(const double* values, std::int64_t count, double xmin) {
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

    Tail t;
    t.xmin = xmin;
    t.log_xmin = std::log(xmin);
    t.n = static_cast<double>(n);
    t.w.resize(x.size());
    Sum sum_w, sum_ym1;
    for (std::size_t j = 0; j < x.size(); ++j) {
        const double ym1 = (x[j] - xmin) / xmin;  // x - xmin is exact near xmin
        t.w[j] = std::log1p(ym1);
        sum_w.add(t.w[j]);
        sum_ym1.add(ym1);
    }
    t.mean_w = sum_w.value() / t.n;
    t.mean_ym1 = sum_ym1.value() / t.n;

    GammaTail moments;
    TplFitResult r = fit_tail(t, nullptr, &moments);
    if (r.status == TplStatus::power_law) {
        r.D = ks_distance(t, r.alpha, nullptr);
    } else {
        r.D = moments.ok ? ks_distance(t, r.alpha, &moments) : kNaN;
    }
    return r;
}

void fit_truncated_powerlaw_batch(const double* const* values, const std::int64_t* counts,
                                  const double* xmins, std::int64_t num_pairs,
                                  TplFitResult* results, int threads) {
    parallel_for(num_pairs, threads, [&](std::int64_t k, int) {
        results[k] = fit_truncated_powerlaw(values[k], counts[k], xmins[k]);
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
Tail tail_from(const RefSums& sums, double c, std::int64_t m) {
    Tail t;
    t.xmin = c;
    t.log_xmin = std::log(c);
    t.n = static_cast<double>(m);
    const double e = (c - sums.r) / sums.r;
    t.mean_w = sums.w.value() / t.n - std::log1p(e);
    t.mean_ym1 = (sums.ym1.value() / t.n - e) * (sums.r / c);
    return t;
}

// Phase 1 for the candidates [first, last) of a chain.
void fit_chain(Scan& s, std::int64_t first, std::int64_t last) {
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
        Tail t;
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
        s.fits[kk] = fit_tail(t, warm ? start : nullptr, &s.moments[kk]);
        previous = &s.fits[kk];
    }
}

void fit_candidates(Scan& s, int threads) {
    const std::int64_t count = static_cast<std::int64_t>(s.starts.size());
    s.fits.assign(s.starts.size(), TplFitResult{});
    s.moments.assign(s.starts.size(), GammaTail{});
    const std::int64_t chains = (count + kChain - 1) / kChain;
    parallel_for(chains, threads, [&](std::int64_t q, int) {
        fit_chain(s, q * kChain, std::min(count, (q + 1) * kChain));
    });
}

// The fitted CDF of one candidate at the points of its tail.
struct KsCandidate {
    const double* x = nullptr;
    std::int64_t start = 0;  // index of xmin in x
    std::int64_t m = 0;      // tail size
    double n = 0.0;
    double xmin = 0.0;
    double s = 0.0;                       // 1 - alpha
    const GammaTail* moments = nullptr;   // nullptr: the power law F = 1 - y^(1-alpha)
    double denom = 1.0;                   // TPL: ∫ up to cdf_xmax; power law: F(cdf_xmax)

    double w(std::int64_t k) const { return std::log1p((x[start + k] - xmin) / xmin); }
    double empirical(std::int64_t k) const { return static_cast<double>(k) / n; }
    double power_law(double wk) const { return -std::expm1(s * wk) / denom; }
};

KsCandidate ks_candidate(const Scan& s, std::size_t k, double cdf_xmax) {
    KsCandidate c;
    c.x = s.x.data();
    c.start = s.starts[k];
    c.m = static_cast<std::int64_t>(s.x.size()) - c.start;
    c.n = static_cast<double>(c.m);
    c.xmin = s.x[static_cast<std::size_t>(c.start)];
    c.s = 1.0 - s.fits[k].alpha;
    const bool pl = s.fits[k].status == TplStatus::power_law;
    c.moments = pl ? nullptr : &s.moments[k];
    const bool cut = std::isfinite(cdf_xmax);
    const double w_top = cut ? std::log1p((cdf_xmax - c.xmin) / c.xmin) : 0.0;
    if (pl) {
        c.denom = cut ? -std::expm1(c.s * w_top) : 1.0;
    } else {
        c.denom = cut ? gamma_tail_segment(c.s, *c.moments, 0.0, w_top) : c.moments->scaled;
    }
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
        const double dev = std::fabs(f - c.empirical(k));
        if (dev > worst) {
            worst = dev;
            return !loses(dev);
        }
        return true;
    };
    // The fitted CDF at the next point w_k, walking up from (previous, cum): the TPL's is
    // accumulated segment by segment, the power law's is closed-form.
    double cum = 0.0, previous = 0.0;
    auto fitted_at = [&](double wk) {
        if (c.moments == nullptr) return c.power_law(wk);
        cum += gamma_tail_segment(c.s, *c.moments, previous, wk);
        previous = wk;
        return std::min(1.0, cum / c.denom);
    };
    for (std::int64_t b = 0; b <= blocks; ++b) {
        const std::int64_t k = std::min(b * kKsBlock, last);
        const double f = fitted_at(c.w(k));
        cums[static_cast<std::size_t>(b)] = cum;
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
        cum = cums[static_cast<std::size_t>(b)];
        previous = c.w(ka);
        for (std::int64_t k = ka + 1; k < kb; ++k) {
            if (!visit(k, fitted_at(c.w(k)))) return false;
        }
    }
    *distance = worst;
    return true;
}

bool is_valid(const TplFitResult& f, const TplSearchOptions& opt) {
    return (f.status == TplStatus::converged || f.status == TplStatus::power_law) &&
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
    fit_candidates(s, threads);
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
