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
// reaches the unique maximum from any start, quadratically near it. It stops once the
// decrement g . d (the squared step in the Fisher metric, per observation) is below 1e-20,
// right after a full step taken from a decrement below 1e-14 (quadratic convergence leaves
// ~1e-28), or when below 1e-10 no step changes l by more than its rounding. The mean
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
#include <vector>

namespace hts {
namespace {

constexpr int kMaxIterations = 200;
constexpr int kMaxHalvings = 60;
constexpr double kMaxAlphaStep = 4.0;
constexpr double kMaxShrink = 0.99;       // mu shrinks by at most a factor 1/(1 - 0.99)
const double kMaxGrow = std::expm1(4.0);  // mu grows by at most a factor e^4
constexpr double kArmijo = 1e-4;
constexpr double kDoneDecrement = 1e-20;
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

    TplFitResult r;
    r.xmin = xmin;
    r.n = n;
    r.error = TplError::none;
    const double alpha_pl = 1.0 + 1.0 / t.mean_w;
    // The power-law mean in units of xmin is (alpha - 1)/(alpha - 2) = 1 + 1/(alpha - 2).
    if (alpha_pl > 2.0 && 1.0 / (alpha_pl - 2.0) <= t.mean_ym1) {
        // Maximum on the boundary lambda = 0 (concavity: the PL optimum's one-sided slope
        // in mu, E_PL[y] - Y, is <= 0).
        r.alpha = alpha_pl;
        r.lambda = 0.0;
        r.loglik = t.n * (std::log(alpha_pl - 1.0) - t.log_xmin - alpha_pl * t.mean_w);
        r.D = ks_distance(t, alpha_pl, nullptr);
        r.alpha_se = (alpha_pl - 1.0) / std::sqrt(t.n);
        r.lambda_se = kNaN;
        r.iterations = 0;
        r.status = TplStatus::power_law;
        return r;
    }

    const double alpha0 = std::clamp(alpha_pl, kTplAlphaMin, kTplAlphaMax);
    const double sigma0 = std::clamp(-std::log1p(t.mean_ym1), kSigmaMin, kSigmaMax);
    const Point best = maximise(t, alpha0, sigma0, r.status, r.iterations);
    r.alpha = best.alpha;
    r.lambda = best.mu / xmin;
    r.loglik = t.n * best.ell;
    r.D = best.moments.ok ? ks_distance(t, best.alpha, &best.moments) : kNaN;
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
    return r;
}

void fit_truncated_powerlaw_batch(const double* const* values, const std::int64_t* counts,
                                  const double* xmins, std::int64_t num_pairs,
                                  TplFitResult* results, int threads) {
    parallel_for(num_pairs, threads, [&](std::int64_t k, int) {
        results[k] = fit_truncated_powerlaw(values[k], counts[k], xmins[k]);
    });
}

}  // namespace hts
