// Truncated power-law fit at a fixed xmin over one sorted tail, written once for the host and
// the device (HTS_HD) so the CUDA kernels and their host-side check run the same code.
//
// This is the algorithm of csrc/cpu/tpl.cpp and csrc/cpu/special.cpp (read their comments for
// the math), restated without the standard library (std::vector, std::array, static locals)
// so that nvcc and NVRTC accept it:
//   * the tail is read from an ascending array (x >= xmin) instead of a private copy, and its
//     logs w_j = log1p((x_j - xmin) / xmin) are recomputed where they are needed;
//   * the Gauss-Legendre nodes and weights come from a table filled once on the host by
//     gauss_legendre() (the same Newton iteration as special.cpp) and passed to the kernel.
// Same constants, same operations in the same order: on the host the results equal the CPU
// kernel's bit for bit (tests/test_cuda_math.py); the device's libm may differ in the last
// bit of exp/log, so GPU results agree to ~1e-13 rather than exactly.
#pragma once

#include "hts/hd.hpp"

namespace hts {
namespace tplhd {

// Layout of the rule table: 16 nodes, 16 weights, 8 nodes, 8 weights, 4 nodes, 4 weights.
constexpr int kRuleTableSize = 2 * (16 + 8 + 4);
HTS_HD int rule_offset(int points) { return points == 16 ? 0 : (points == 8 ? 32 : 48); }

// N-point Gauss-Legendre nodes and weights on [-1, 1] by Newton's method on P_N (host side).
HTS_HD void gauss_legendre(int n, double* node, double* weight) {
    const double pi = 3.14159265358979323846;
    for (int i = 0; i < (n + 1) / 2; ++i) {
        double z = ::cos(pi * (i + 0.75) / (n + 0.5));
        double derivative = 1.0;
        for (int iteration = 0; iteration < 100; ++iteration) {
            double p = 1.0, p_prev = 0.0;
            for (int j = 1; j <= n; ++j) {
                const double p_prev2 = p_prev;
                p_prev = p;
                p = ((2.0 * j - 1.0) * z * p_prev - (j - 1.0) * p_prev2) / j;
            }
            derivative = n * (z * p - p_prev) / (z * z - 1.0);
            const double step = p / derivative;
            z -= step;
            if (::fabs(step) <= 1e-17) break;
        }
        double p = 1.0, p_prev = 0.0;
        for (int j = 1; j <= n; ++j) {
            const double p_prev2 = p_prev;
            p_prev = p;
            p = ((2.0 * j - 1.0) * z * p_prev - (j - 1.0) * p_prev2) / j;
        }
        derivative = n * (z * p - p_prev) / (z * z - 1.0);
        const double w = 2.0 / ((1.0 - z * z) * derivative * derivative);
        node[i] = z;
        node[n - 1 - i] = -z;
        weight[i] = w;
        weight[n - 1 - i] = w;
    }
    if (n % 2 == 1) node[n / 2] = 0.0;
}

// Fills a table of kRuleTableSize doubles (layout above).
HTS_HD void fill_rule_table(double* table) {
    gauss_legendre(16, table, table + 16);
    gauss_legendre(8, table + 32, table + 40);
    gauss_legendre(4, table + 48, table + 52);
}

// ---- special.cpp: K(s, x) = ∫_0^∞ exp(s w - x e^w) dw and its moments ----

constexpr double kTailTolerance = 1e-22;
constexpr double kSlope16 = 8.0;
constexpr double kCurve16 = 2.0;
constexpr double kWidth16 = 2.0;
constexpr double kSlope8 = 2.0;
constexpr double kCurve8 = 0.5;
constexpr double kWidth8 = 1.0;
constexpr int kMaxPanels = 200000;

struct GammaTail {
    double log_integral = 0.0;
    double peak_w = 0.0;
    double peak_v = 0.0;
    double log_peak = 0.0;
    double scaled = 0.0;
    double mean_w = 0.0;
    double mean_dw = 0.0;
    double mean_v = 0.0;
    double mean_dv = 0.0;
    double var_w = 0.0;
    double var_v = 0.0;
    double cov_wv = 0.0;
    double lo_cut = 0.0;
    double hi_cut = 0.0;
    bool ok = false;
};

struct Exponent {
    double s;
    double vc;
    HTS_HD double rel(double d) const { return s * d - vc * ::expm1(d); }
    HTS_HD double v(double d) const { return vc * ::exp(d); }
    HTS_HD double slope(double d) const { return s - v(d); }
    HTS_HD double rate(double d, double c_slope, double c_curve) const {
        const double vd = v(d);
        return hd::max(::fabs(s - vd) / c_slope, ::sqrt(vd) / c_curve);
    }
};

HTS_HD double panel_width(const Exponent& e, double d, double dir, double c_slope,
                          double c_curve, double h_max) {
    const double r0 = e.rate(d, c_slope, c_curve);
    double h = r0 * h_max > 1.0 ? 1.0 / r0 : h_max;
    for (int k = 0; k < 8; ++k) {
        const double r = hd::max(r0, e.rate(d + dir * h, c_slope, c_curve));
        if (r * h <= 1.0 + 1e-12) break;
        h = 1.0 / r;
    }
    return h;
}

struct Sums {
    double i0 = 0.0, w = 0.0, v = 0.0, ww = 0.0, vv = 0.0, wv = 0.0;
};

HTS_HD void add_moment_panel(const Exponent& e, double lo, double hi, const double* rules,
                             Sums& acc) {
    const double* node = rules + rule_offset(16);
    const double* weight = node + 16;
    const double centre = 0.5 * (lo + hi);
    const double half = 0.5 * (hi - lo);
    Sums p;
    for (int i = 0; i < 16; ++i) {
        const double dw = centre + half * node[i];
        const double dv = e.vc * ::expm1(dw);
        const double f = weight[i] * ::exp(e.s * dw - dv);
        const double fw = f * dw;
        const double fv = f * dv;
        p.i0 += f;
        p.w += fw;
        p.v += fv;
        p.ww += fw * dw;
        p.vv += fv * dv;
        p.wv += fw * dv;
    }
    acc.i0 += half * p.i0;
    acc.w += half * p.w;
    acc.v += half * p.v;
    acc.ww += half * p.ww;
    acc.vv += half * p.vv;
    acc.wv += half * p.wv;
}

HTS_HD double segment_panel(const Exponent& e, double lo, double hi, const double* rules,
                            int points) {
    const double* node = rules + rule_offset(points);
    const double* weight = node + points;
    const double centre = 0.5 * (lo + hi);
    const double half = 0.5 * (hi - lo);
    double panel = 0.0;
    for (int i = 0; i < points; ++i) {
        const double dw = centre + half * node[i];
        panel += weight[i] * ::exp(e.s * dw - e.vc * ::expm1(dw));
    }
    return half * panel;
}

HTS_HD double integrate_segment(const Exponent& e, double lo, double hi, const double* rules) {
    const double length = hi - lo;
    if (length <= 0.05 && length * e.rate(lo, kSlope8, kCurve8) <= 0.08)
        return segment_panel(e, lo, hi, rules, 4);
    double total = 0.0;
    double d = lo;
    for (int k = 0; k < kMaxPanels && d < hi; ++k) {
        const double h = panel_width(e, d, 1.0, kSlope8, kCurve8, kWidth8);
        if (hi - d <= 0.1 * h) return total + segment_panel(e, d, hi, rules, 4);
        const double end = d + h >= hi ? hi : d + h;
        total += segment_panel(e, d, end, rules, 8);
        d = end;
    }
    return total;
}

HTS_HD GammaTail gamma_tail(double s, double x, const double* rules) {
    GammaTail t;
    if (!(x > 0.0) || !hd::finite(x) || !hd::finite(s)) return t;
    const bool interior = s > x;
    if (interior) {
        t.peak_w = ::log(s) - ::log(x);
        t.peak_v = s;
        t.log_peak = s * t.peak_w - s;
    } else {
        t.peak_w = 0.0;
        t.peak_v = x;
        t.log_peak = -x;
    }
    const Exponent e{s, t.peak_v};
    Sums acc;
    double d = 0.0;
    for (int k = 0; k < kMaxPanels; ++k) {
        const double h = panel_width(e, d, 1.0, kSlope16, kCurve16, kWidth16);
        add_moment_panel(e, d, d + h, rules, acc);
        d += h;
        const double slope = e.slope(d);
        if (slope < -3.0) {
            const double vd = e.v(d) + t.peak_v;
            const double bound =
                ::exp(e.rel(d)) * (3.0 + d * d + 2.0 * d + vd * vd) / (-slope - 2.0);
            if (bound <= kTailTolerance * acc.i0) break;
        }
    }
    t.hi_cut = t.peak_w + d;

    d = 0.0;
    const double d_min = -t.peak_w;
    for (int k = 0; k < kMaxPanels && d > d_min; ++k) {
        const double h = panel_width(e, d, -1.0, kSlope16, kCurve16, kWidth16);
        const double lo = d - h <= d_min ? d_min : d - h;
        add_moment_panel(e, lo, d, rules, acc);
        d = lo;
        if (d <= d_min) break;
        const double slope = e.slope(d);
        if (slope >= 1.0) {
            const double bound = ::exp(e.rel(d)) *
                                 (3.0 + d * d - 2.0 * d + t.peak_v * t.peak_v) / slope;
            if (bound <= kTailTolerance * acc.i0) break;
        }
    }
    t.lo_cut = d <= d_min ? 0.0 : t.peak_w + d;

    t.scaled = acc.i0;
    t.log_integral = t.log_peak + ::log(acc.i0);
    const double mw = acc.w / acc.i0;
    const double mv = acc.v / acc.i0;
    t.mean_w = t.peak_w + mw;
    t.mean_dw = mw;
    t.mean_v = t.peak_v + mv;
    t.mean_dv = mv;
    t.var_w = hd::max(0.0, acc.ww / acc.i0 - mw * mw);
    t.var_v = hd::max(0.0, acc.vv / acc.i0 - mv * mv);
    t.cov_wv = acc.wv / acc.i0 - mw * mv;
    t.ok = hd::finite(t.log_integral) && acc.i0 > 0.0;
    return t;
}

HTS_HD double gamma_tail_segment(double s, const GammaTail& tail, double lo, double hi,
                                 const double* rules) {
    if (!tail.ok) return hd::nan();
    lo = hd::max(lo, tail.lo_cut);
    hi = hd::min(hi, tail.hi_cut);
    if (!(hi > lo)) return 0.0;
    return integrate_segment(Exponent{s, tail.peak_v}, lo - tail.peak_w, hi - tail.peak_w,
                             rules);
}

// ---- tpl.hpp / tpl.cpp: the fit ----

constexpr double kAlphaMin = -100.0;
constexpr double kAlphaMax = 100.0;
constexpr double kMuMin = 1e-250;
constexpr double kMuMax = 1e15;
constexpr int kMaxIterations = 200;
constexpr int kMaxHalvings = 60;
constexpr double kMaxAlphaStep = 4.0;
constexpr double kMaxShrink = 0.99;
constexpr double kArmijo = 1e-4;
constexpr double kDoneDecrement = 1e-30;
constexpr double kQuadraticDecrement = 1e-14;
constexpr double kNoiseDecrement = 1e-10;

// TplStatus and TplError of tpl.hpp, as plain ints.
enum Status : int {
    converged = 0, power_law = 1, alpha_bound = 2, lambda_bound = 3, not_converged = 4,
    failed = 5
};
// unsorted (GPU batches only): the array given as ascending is not.
enum Error : int {
    none = 0, non_finite = 1, bad_xmin = 2, too_few = 3, degenerate = 4, unsorted = 5
};

// The ascending tail x[0..n) >= xmin with its means.
struct Tail {
    const double* x = nullptr;
    long long count = 0;
    double xmin = 0.0;
    double log_xmin = 0.0;
    double mean_w = 0.0;
    double mean_ym1 = 0.0;
    double n = 0.0;
    HTS_HD double w(long long j) const { return ::log1p((x[j] - xmin) / xmin); }
};

struct Sum {
    double sum = 0.0;
    double carry = 0.0;
    HTS_HD void add(double v) {
        const double t = sum + v;
        carry += ::fabs(sum) >= ::fabs(v) ? (sum - t) + v : (v - t) + sum;
        sum = t;
    }
    HTS_HD double value() const { return sum + carry; }
};

struct Point {
    double alpha = 0.0;
    double sigma = 0.0;
    double mu = 0.0;
    GammaTail moments;
    double ell = -hd::inf();
    double ell_noise = 0.0;
    double g_alpha = 0.0;
    double g_sigma = 0.0;
};

HTS_HD Point evaluate(const Tail& t, double alpha, double sigma, const double* rules) {
    Point p;
    p.alpha = alpha;
    p.sigma = sigma;
    p.mu = ::exp(sigma);
    p.moments = gamma_tail(1.0 - alpha, p.mu, rules);
    if (!p.moments.ok) return p;
    const double wc = p.moments.peak_w;
    const double dl = t.mean_w - wc;
    const double dy = t.mean_ym1 - ::expm1(wc);
    const double log_scaled = ::log(p.moments.scaled);
    p.ell = -t.log_xmin - wc - alpha * dl - p.mu * dy - log_scaled;
    p.ell_noise = 2e-15 * (1.0 + ::fabs(t.log_xmin) + wc + ::fabs(alpha * dl) +
                           ::fabs(p.mu * dy) + ::fabs(log_scaled));
    p.g_alpha = p.moments.mean_dw - dl;
    p.g_sigma = p.moments.mean_dv - p.mu * dy;
    return p;
}

struct Step {
    double da = 0.0;
    double ds = 0.0;
};

HTS_HD double model(const Point& p, const Step& d) {
    const double caa = p.moments.var_w, css = p.moments.var_v, cas = p.moments.cov_wv;
    return p.g_alpha * d.da + p.g_sigma * d.ds -
           0.5 * (caa * d.da * d.da + 2.0 * cas * d.da * d.ds + css * d.ds * d.ds);
}

HTS_HD double clamped_optimum(double g, double c, double lo, double hi) {
    if (c > 0.0) return hd::clamp(g / c, lo, hi);
    return g > 0.0 ? hi : (g < 0.0 ? lo : 0.0);
}

HTS_HD void consider_step(const Point& p, const Step& d, Step& best, double& best_q) {
    const double q = model(p, d);
    if (q > best_q) {
        best_q = q;
        best = d;
    }
}

HTS_HD Step box_newton_step(const Point& p, const Step& lo, const Step& hi) {
    const double caa = p.moments.var_w, css = p.moments.var_v, cas = p.moments.cov_wv;
    const double det = caa * css - cas * cas;
    if (det > 0.0 && hd::finite(det)) {
        Step d;
        d.da = (css * p.g_alpha - cas * p.g_sigma) / det;
        d.ds = (caa * p.g_sigma - cas * p.g_alpha) / det;
        if (d.da >= lo.da && d.da <= hi.da && d.ds >= lo.ds && d.ds <= hi.ds) return d;
    }
    Step best;
    double best_q = 0.0;
    const double a_edges[2] = {lo.da, hi.da};
    for (int k = 0; k < 2; ++k) {
        const double a = a_edges[k];
        consider_step(p, Step{a, clamped_optimum(p.g_sigma - cas * a, css, lo.ds, hi.ds)}, best,
                      best_q);
    }
    const double s_edges[2] = {lo.ds, hi.ds};
    for (int k = 0; k < 2; ++k) {
        const double s = s_edges[k];
        consider_step(p, Step{clamped_optimum(p.g_alpha - cas * s, caa, lo.da, hi.da), s}, best,
                      best_q);
    }
    return best;
}

HTS_HD double sigma_min() { return ::log(kMuMin); }
HTS_HD double sigma_max() { return ::log(kMuMax); }

HTS_HD void step_box(const Point& p, Step& lo, Step& hi) {
    lo.da = hd::min(0.0, hd::max(-kMaxAlphaStep, kAlphaMin - p.alpha));
    hi.da = hd::max(0.0, hd::min(kMaxAlphaStep, kAlphaMax - p.alpha));
    lo.ds = hd::min(0.0, hd::max(-kMaxShrink, ::expm1(sigma_min() - p.sigma)));
    hi.ds = hd::max(0.0, hd::min(::expm1(4.0), ::expm1(sigma_max() - p.sigma)));
}

HTS_HD bool alpha_held(const Point& p) {
    return (p.alpha <= kAlphaMin && p.g_alpha < 0.0) || (p.alpha >= kAlphaMax && p.g_alpha > 0.0);
}
HTS_HD bool sigma_held(const Point& p) {
    return (p.sigma <= sigma_min() && p.g_sigma < 0.0) ||
           (p.sigma >= sigma_max() && p.g_sigma > 0.0);
}

HTS_HD Point maximise(const Tail& t, double alpha0, double sigma0, const double* rules,
                      int& status, int& iterations) {
    const double s_min = sigma_min(), s_max = sigma_max();
    Point cur = evaluate(t, alpha0, sigma0, rules);
    bool finished = false;
    bool stalled = false;
    bool small_full_step = false;
    iterations = 0;
    while (iterations < kMaxIterations) {
        Step lo, hi;
        step_box(cur, lo, hi);
        const Step d = box_newton_step(cur, lo, hi);
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
            double sigma = cur.sigma + ::log1p(step * d.ds);
            if (step == 1.0) {
                if (d.da == lo.da && alpha - kAlphaMin < 1e-12) alpha = kAlphaMin;
                if (d.da == hi.da && kAlphaMax - alpha < 1e-12) alpha = kAlphaMax;
                if (d.ds == lo.ds && sigma - s_min < 1e-12) sigma = s_min;
                if (d.ds == hi.ds && s_max - sigma < 1e-12) sigma = s_max;
            }
            alpha = hd::clamp(alpha, kAlphaMin, kAlphaMax);
            sigma = hd::clamp(sigma, s_min, s_max);
            next = evaluate(t, alpha, sigma, rules);
            if (next.ell >= cur.ell + kArmijo * step * decrement) {
                accepted = true;
                break;
            }
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
            finished = decrement <= kNoiseDecrement;
            stalled = !finished;
            break;
        }
        small_full_step = step == 1.0 && decrement <= kQuadraticDecrement;
        cur = next;
    }
    if (!finished || stalled) {
        status = not_converged;
    } else if (alpha_held(cur)) {
        status = alpha_bound;
    } else if (sigma_held(cur)) {
        status = lambda_bound;
    } else {
        status = converged;
    }
    return cur;
}

// KS distance of the fitted TPL (moments != nullptr) or power law (moments == nullptr).
HTS_HD double ks_distance(const Tail& t, double alpha, const GammaTail* moments,
                          const double* rules) {
    double worst = 0.0;
    if (moments == nullptr) {
        for (long long j = 0; j < t.count; ++j) {
            const double f = -::expm1((1.0 - alpha) * t.w(j));
            worst = hd::max(worst, ::fabs(f - static_cast<double>(j) / t.n));
        }
        return worst;
    }
    const double s = 1.0 - alpha;
    double cumulative = 0.0;
    double previous = 0.0;
    for (long long j = 0; j < t.count; ++j) {
        const double wj = t.w(j);
        cumulative += gamma_tail_segment(s, *moments, previous, wj, rules);
        previous = wj;
        const double f = hd::min(1.0, cumulative / moments->scaled);
        worst = hd::max(worst, ::fabs(f - static_cast<double>(j) / t.n));
    }
    return worst;
}

// TplFitResult of tpl.hpp (lambda_ is lambda).
struct Result {
    double alpha = hd::nan();
    double lambda_ = hd::nan();
    double xmin = -1.0;  // as tpl.cpp leaves it for a failed fit
    double loglik = hd::nan();
    double D = hd::nan();
    double alpha_se = hd::nan();
    double lambda_se = hd::nan();
    long long n = 0;
    long long iterations = 0;
    long long status = failed;
    long long error = none;
    long long bad_index = -1;
};

// First index of the ascending x[0..count) with x >= v (count when none).
HTS_HD long long lower_bound(const double* x, long long count, double v) {
    long long lo = 0, hi = count;
    while (lo < hi) {
        const long long mid = lo + (hi - lo) / 2;
        if (x[mid] < v) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

// Fits the values >= xmin of the ascending array x[0..count) (fit_truncated_powerlaw on the
// same values gives the same result; bad_index refers to positions in x).
HTS_HD Result fit(const double* x, long long count, double xmin, const double* rules) {
    Result r;
    if (!(xmin > 0.0) || !hd::finite(xmin)) {
        r.error = bad_xmin;
        return r;
    }
    for (long long k = 0; k < count; ++k) {
        if (!hd::finite(x[k])) {
            r.error = non_finite;
            r.bad_index = k;
            return r;
        }
        if (k > 0 && x[k] < x[k - 1]) {
            r.error = unsorted;
            r.bad_index = k;
            return r;
        }
    }
    const long long first = lower_bound(x, count, xmin);
    const long long n = count - first;
    if (n < 2) {
        r.error = too_few;
        r.n = n;
        return r;
    }
    if (x[first] == x[count - 1]) {
        r.error = degenerate;
        r.n = n;
        return r;
    }
    Tail t;
    t.x = x + first;
    t.count = n;
    t.xmin = xmin;
    t.log_xmin = ::log(xmin);
    t.n = static_cast<double>(n);
    Sum sum_w, sum_ym1;
    for (long long j = 0; j < n; ++j) {
        const double ym1 = (t.x[j] - xmin) / xmin;
        sum_w.add(::log1p(ym1));
        sum_ym1.add(ym1);
    }
    t.mean_w = sum_w.value() / t.n;
    t.mean_ym1 = sum_ym1.value() / t.n;

    r.xmin = xmin;
    r.n = n;
    r.error = none;
    const double alpha_pl = 1.0 + 1.0 / t.mean_w;
    if (alpha_pl > 2.0 && 1.0 / (alpha_pl - 2.0) <= t.mean_ym1) {
        r.alpha = alpha_pl;
        r.lambda_ = 0.0;
        r.loglik = t.n * (::log(alpha_pl - 1.0) - t.log_xmin - alpha_pl * t.mean_w);
        r.D = ks_distance(t, alpha_pl, nullptr, rules);
        r.alpha_se = (alpha_pl - 1.0) / ::sqrt(t.n);
        r.lambda_se = hd::nan();
        r.iterations = 0;
        r.status = power_law;
        return r;
    }
    const double alpha0 = hd::clamp(alpha_pl, kAlphaMin, kAlphaMax);
    const double sigma0 = hd::clamp(-::log1p(t.mean_ym1), sigma_min(), sigma_max());
    int status = failed;
    int iterations = 0;
    const Point best = maximise(t, alpha0, sigma0, rules, status, iterations);
    r.status = status;
    r.iterations = iterations;
    r.alpha = best.alpha;
    r.lambda_ = best.mu / xmin;
    r.loglik = t.n * best.ell;
    r.D = best.moments.ok ? ks_distance(t, best.alpha, &best.moments, rules) : hd::nan();
    const double caa = best.moments.var_w;
    const double css = best.moments.var_v;
    const double cas = best.moments.cov_wv;
    const double det = caa * css - cas * cas;
    if (det > 0.0) {
        r.alpha_se = ::sqrt(css / (t.n * det));
        r.lambda_se = r.lambda_ * ::sqrt(caa / (t.n * det));
    } else {
        r.alpha_se = r.lambda_se = hd::nan();
    }
    return r;
}

}  // namespace tplhd
}  // namespace hts
