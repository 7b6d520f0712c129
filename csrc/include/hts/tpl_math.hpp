// Per-candidate math of the truncated power-law (TPL) fit, shared by the CPU kernels
// (csrc/cpu/special.cpp, csrc/cpu/tpl.cpp) and the CUDA kernels (csrc/cuda/kernels.cuh, also
// compiled at run time by CuPy), so both evaluate the same expressions in the same order: on
// the host the GPU code path equals the CPU kernel bit for bit (tests/test_cuda_math.py); the
// device's libm may differ in the last bit of exp/log, so GPU results agree to ~1e-13.
//
// Contents, in order:
//   1. Gauss-Legendre rules, as one table of nodes and weights filled once (fill_rule_table)
//      and passed to every function that integrates: no static locals, which NVRTC rejects.
//   2. The special function K(s, x) = ∫_0^∞ exp(s w - x e^w) dw = x^(-s) Γ(s, x) and the
//      moments of its density (gamma_tail), and pieces of it (gamma_tail_segment).
//   3. The fit at a fixed xmin from a tail's statistics: log-likelihood, gradient and Hessian
//      (evaluate), the box-constrained Newton iteration and its stopping rule (maximise), the
//      closed-form power-law boundary, and the standard errors (fit_tail).
//   4. The fitted CDF walked up a sorted tail, and the KS distance (FittedCdf, ks_distance).
// The orchestration around them (input checks, sorting, the all-xmin search with its chains,
// warm starts, threads and pruned KS scan) lives in the callers.
//
// Only the C math functions of the global namespace and hd.hpp are used: no standard library,
// so nvcc and NVRTC accept it as well as the host compiler.
#pragma once

#include "hts/hd.hpp"

namespace hts {
namespace tplhd {

// ---- 1. Gauss-Legendre rules ----------------------------------------------------------------

// Layout of the rule table: 16 nodes, 16 weights, 8 nodes, 8 weights, 4 nodes, 4 weights.
constexpr int kRuleTableSize = 2 * (16 + 8 + 4);
HTS_HD int rule_offset(int points) { return points == 16 ? 0 : (points == 8 ? 32 : 48); }

// P_n(z) and P_{n-1}(z) by the three-term recurrence of the Legendre polynomials.
HTS_HD void legendre(int n, double z, double& p, double& p_prev) {
    p = 1.0;
    p_prev = 0.0;
    for (int j = 1; j <= n; ++j) {
        const double p_prev2 = p_prev;
        p_prev = p;
        p = ((2.0 * j - 1.0) * z * p_prev - (j - 1.0) * p_prev2) / j;
    }
}

// N-point Gauss-Legendre nodes and weights on [-1, 1], by Newton's method on P_n.
HTS_HD void gauss_legendre(int n, double* node, double* weight) {
    const double pi = 3.14159265358979323846;
    for (int i = 0; i < (n + 1) / 2; ++i) {
        // Tricomi's approximation of the i-th largest root as the starting point.
        double z = ::cos(pi * (i + 0.75) / (n + 0.5));
        double p = 0.0, p_prev = 0.0;
        for (int iteration = 0; iteration < 100; ++iteration) {
            legendre(n, z, p, p_prev);
            const double derivative = n * (z * p - p_prev) / (z * z - 1.0);
            const double step = p / derivative;
            z -= step;
            if (::fabs(step) <= 1e-17) break;
        }
        // Weight from the derivative at the converged root.
        legendre(n, z, p, p_prev);
        const double derivative = n * (z * p - p_prev) / (z * z - 1.0);
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
    gauss_legendre(16, table + rule_offset(16), table + rule_offset(16) + 16);
    gauss_legendre(8, table + rule_offset(8), table + rule_offset(8) + 8);
    gauss_legendre(4, table + rule_offset(4), table + rule_offset(4) + 4);
}

// ---- 2. K(s, x) and its moments -------------------------------------------------------------
//
// Everything here rests on one integral. With t = x e^w,
//
//     Γ(s, x) = ∫_x^∞ t^(s-1) e^(-t) dt = x^s ∫_0^∞ exp(s w - x e^w) dw = x^s K(s, x),
//
// valid for every real s when x > 0. The exponent φ(w) = s w - x e^w is concave in w (φ'' =
// -x e^w < 0), so the integrand is a smooth, unimodal, log-concave bump whose only scales are
// |φ'| and sqrt(|φ''|). Composite Gauss-Legendre panels sized by those scales integrate it to
// about machine precision for s negative, zero, integer or not, with no special cases. The
// same pass gives the moments of w and of v = x e^w under the density K(s,x)^-1 e^φ(w), which
// are the derivatives of ln K (and of ln Γ) with respect to s and x.
//
// Quadrature. The integrand is entire in w, and on each side of its peak |φ'| and x e^w are
// monotone. Panels are laid out from the peak outwards; a panel of width h keeps h |φ'| <= 8,
// h sqrt(x e^w) <= 2 and h <= 2 at both of its ends (hence over all of it). On such a panel
// the 16-point Gauss-Legendre rule is exact to ~1e-17 relative: its error for e^(βt) on
// [-1, 1] is ~1e-19 at β = 4, and the double-exponential factor e^(-x e^w) has derivatives of
// order 32 below ~1e26 where x e^w ~ 1, which a width of 2 brings to ~1e-19. The walk stops
// once a rigorous bound on the rest of the integral (φ is concave, so it lies below its
// tangent) is below 1e-22 of the part already summed, for the weights of the second moments
// as well. Over s in [-30, 30], x in [1e-8, 1e3] this matches mpmath to 1.6e-13 in ln Γ (the
// rounding of ln Γ itself for |ln Γ| ~ 1000), and to ~1e-15 relative in d/ds and d²/ds².
//
// Exponents are taken relative to the peak, φ(w) - φ(w_c) = s d - v_c expm1(d) with
// d = w - w_c and v_c = x e^(w_c), so nothing overflows and nothing cancels: ln Γ can be
// ±1e5 and still carry a relative error of ~1e-16 in Γ. Panels are placed in d, not w, so
// node positions stay exact to ~1e-16 near a peak far from the origin (w_c ~ 300 for
// x ~ 1e-130). Moments are accumulated about the peak for the same reason (variances of a
// narrow bump far from the origin would otherwise cancel).

// Relative size below which the rest of an integral (weighted by the moments) is dropped.
constexpr double kTailTolerance = 1e-22;
// Panel rule for the totals and moments: 16 points with |φ'| h <= 8, sqrt(x e^w) h <= 2 and
// h <= 2. (The 16-point rule integrates e^(βt) on [-1, 1] to ~1e-19 relative for β = 4; the
// curvature and width limits keep the double-exponential factor equally well resolved.)
constexpr double kSlope16 = 8.0;
constexpr double kCurve16 = 2.0;
constexpr double kWidth16 = 2.0;
// Panel rule for segments (CDF pieces, needed to ~1e-13 absolute): 8 points, |φ'| h <= 2,
// sqrt(x e^w) h <= 0.5, h <= 1 (~1e-17 relative per panel).
constexpr double kSlope8 = 2.0;
constexpr double kCurve8 = 0.5;
constexpr double kWidth8 = 1.0;
// A walk never needs this many panels (w spans at most ~1500 for representable x); the cap only
// guards against a logic error turning into an endless loop.
constexpr int kMaxPanels = 200000;

// ln K(s, x) and the moments of the density p(w) = exp(s w - x e^w) / K(s, x) on w >= 0.
//
// The integral is computed as exp(log_peak) * scaled, where log_peak = φ(peak_w) is the
// maximum of φ on [0, inf) (peak_w = max(0, ln(s/x))). Moments are of w and v = x e^w.
struct GammaTail {
    double log_integral = 0.0;  // ln K(s, x)
    double peak_w = 0.0;        // argmax of φ on w >= 0
    double peak_v = 0.0;        // x e^peak_w
    double log_peak = 0.0;      // φ(peak_w)
    double scaled = 0.0;        // ∫ exp(φ(w) - log_peak) dw  (K = e^log_peak * scaled)
    double mean_w = 0.0;        // E[w]
    double mean_dw = 0.0;       // E[w] - peak_w (kept apart: no rounding from peak_w)
    double mean_v = 0.0;        // E[v], v = x e^w
    double mean_dv = 0.0;       // E[v] - peak_v
    double var_w = 0.0;         // Var(w)
    double var_v = 0.0;         // Var(v)
    double cov_wv = 0.0;        // Cov(w, v)
    double lo_cut = 0.0;        // outside [lo_cut, hi_cut] the density is negligible (< 1e-21)
    double hi_cut = 0.0;
    bool ok = false;            // false for x <= 0 or non-finite arguments
};

// φ(w) = s w - x e^w about the peak w_c, as a function of d = w - w_c (v_c = x e^(w_c)).
// Working in d keeps node positions exact to ~1e-16 absolute near the peak even where w_c is
// large (w_c ~ 300 for x ~ 1e-130), which the absolute w would not.
struct Exponent {
    double s;
    double vc;

    HTS_HD double rel(double d) const { return s * d - vc * ::expm1(d); }  // φ(w) - φ(w_c)
    HTS_HD double v(double d) const { return vc * ::exp(d); }              // x e^w
    HTS_HD double slope(double d) const { return s - v(d); }               // φ'(w)
    // Inverse length scale of the integrand near d for a rule that allows a slope budget
    // c_slope and a curvature budget c_curve per panel.
    HTS_HD double rate(double d, double c_slope, double c_curve) const {
        const double vd = v(d);
        return hd::max(::fabs(s - vd) / c_slope, ::sqrt(vd) / c_curve);
    }
};

// Width of the panel that starts at d and extends in direction dir (+1 or -1): the largest
// h <= h_max with h * max(rate(d), rate(d + dir h)) <= 1. |φ'| and x e^w are monotone on each
// side of the peak, so the two ends bound the rate over the whole panel.
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

// Adds the moment integrals over d in [lo, hi] (a 16-point panel).
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

// One N-point Gauss-Legendre panel of ∫ exp(φ - φ(w_c)) over d in [lo, hi] (N = 4, 8, 16: a
// template so that the host compiler unrolls the fixed-length loop).
template <int N>
HTS_HD double segment_panel(const Exponent& e, double lo, double hi, const double* rules) {
    const double* node = rules + rule_offset(N);
    const double* weight = node + N;
    const double centre = 0.5 * (lo + hi);
    const double half = 0.5 * (hi - lo);
    double panel = 0.0;
    for (int i = 0; i < N; ++i) {
        const double dw = centre + half * node[i];
        panel += weight[i] * ::exp(e.s * dw - e.vc * ::expm1(dw));
    }
    return half * panel;
}

// ∫ exp(φ - φ(w_c)) over d in [lo, hi] with 8-point panels. A piece whose length times the
// 8-point rate is at most 0.1 (slope * length <= 0.2, sqrt(x e^w) * length <= 0.05: the
// 4-point rule is then exact to ~1e-15 relative) takes 4 points; that is the common case of
// the gap between neighbouring eigenvalues in a KS scan, checked first from the rate at lo
// alone (over a length <= 0.05 the rate grows by a few per cent at most).
HTS_HD double integrate_segment(const Exponent& e, double lo, double hi, const double* rules) {
    const double length = hi - lo;
    if (length <= 0.05 && length * e.rate(lo, kSlope8, kCurve8) <= 0.08)
        return segment_panel<4>(e, lo, hi, rules);
    double total = 0.0;
    double d = lo;
    for (int k = 0; k < kMaxPanels && d < hi; ++k) {
        const double h = panel_width(e, d, 1.0, kSlope8, kCurve8, kWidth8);
        if (hi - d <= 0.1 * h) return total + segment_panel<4>(e, d, hi, rules);
        const double end = d + h >= hi ? hi : d + h;
        total += segment_panel<8>(e, d, end, rules);
        d = end;
    }
    return total;
}

// Right of the peak (d = w - w_c >= 0), into acc; returns where the walk stopped. φ' < 0 and
// decreasing there. For d >= D, φ lies below its tangent at D, and the weights d^2,
// (v - v_c)^2 grow at most like polynomials times e^(2(d-D)), so once |φ'(D)| > 3 the rest is
// below e^(φ(D)-φ_c) (3 + D^2 + 2 D + (v(D) + v_c)^2) / (|φ'(D)| - 2).
HTS_HD double walk_right(const Exponent& e, const double* rules, Sums& acc) {
    double d = 0.0;
    for (int k = 0; k < kMaxPanels; ++k) {
        const double h = panel_width(e, d, 1.0, kSlope16, kCurve16, kWidth16);
        add_moment_panel(e, d, d + h, rules, acc);
        d += h;
        const double slope = e.slope(d);
        if (slope < -3.0) {
            const double vd = e.v(d) + e.vc;
            const double bound =
                ::exp(e.rel(d)) * (3.0 + d * d + 2.0 * d + vd * vd) / (-slope - 2.0);
            if (bound <= kTailTolerance * acc.i0) break;
        }
    }
    return d;
}

// Left of an interior peak, down to w = 0 (d = d_min = -w_c), into acc; returns where the walk
// stopped. φ' > 0 and increasing leftwards, |v - v_c| <= v_c, so once φ'(D) >= 1 the rest is
// below e^(φ(D)-φ_c) (3 + D^2 + 2|D| + v_c^2) / φ'(D).
HTS_HD double walk_left(const Exponent& e, double d_min, const double* rules, Sums& acc) {
    double d = 0.0;
    for (int k = 0; k < kMaxPanels && d > d_min; ++k) {
        const double h = panel_width(e, d, -1.0, kSlope16, kCurve16, kWidth16);
        const double lo = d - h <= d_min ? d_min : d - h;
        add_moment_panel(e, lo, d, rules, acc);
        d = lo;
        if (d <= d_min) break;
        const double slope = e.slope(d);
        if (slope >= 1.0) {
            const double bound =
                ::exp(e.rel(d)) * (3.0 + d * d - 2.0 * d + e.vc * e.vc) / slope;
            if (bound <= kTailTolerance * acc.i0) break;
        }
    }
    return d;
}

// ln K(s, x) and the moments of its density (GammaTail). Requires x > 0 and finite s, x
// (otherwise ok = false).
HTS_HD GammaTail gamma_tail(double s, double x, const double* rules) {
    GammaTail t;
    if (!(x > 0.0) || !hd::finite(x) || !hd::finite(s)) return t;
    // Peak of φ on [0, inf): interior where φ'(0) = s - x > 0.
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
    t.hi_cut = t.peak_w + walk_right(e, rules, acc);
    const double d_min = -t.peak_w;
    const double d = walk_left(e, d_min, rules, acc);
    t.lo_cut = d <= d_min ? 0.0 : t.peak_w + d;

    t.scaled = acc.i0;
    t.log_integral = t.log_peak + ::log(acc.i0);
    const double mw = acc.w / acc.i0;  // E[w - w_c]
    const double mv = acc.v / acc.i0;  // E[v - v_c]
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

// ∫_lo^hi exp(φ(w) - tail.log_peak) dw for 0 <= lo <= hi, with φ(w) = s w - x e^w and the
// peak from `tail` (= gamma_tail(s, x)). Dividing by tail.scaled gives P(lo <= w <= hi).
HTS_HD double gamma_tail_segment(double s, const GammaTail& tail, double lo, double hi,
                                 const double* rules) {
    if (!tail.ok) return hd::nan();
    // Outside [lo_cut, hi_cut] the integrand is below 1e-22 of the total: leave it out.
    lo = hd::max(lo, tail.lo_cut);
    hi = hd::min(hi, tail.hi_cut);
    if (!(hi > lo)) return 0.0;
    return integrate_segment(Exponent{s, tail.peak_v}, lo - tail.peak_w, hi - tail.peak_w,
                             rules);
}

// ---- 3. The fit at a fixed xmin --------------------------------------------------------------
//
// With y = x / xmin, w = ln y and mu = lambda xmin, the mean log-likelihood of a tail with
// L = mean(w) and Y = mean(y) is
//
//     l(alpha, mu) = -ln xmin - alpha L - mu Y - ln K(1 - alpha, mu),
//     K(s, mu) = ∫_0^∞ exp(s w - mu e^w) dw = ∫_1^∞ u^(-alpha) e^(-mu u) du,
//
// so the data enter only through (L, Y), and the derivatives of ln K are moments of
// (w, v = mu e^w) under the fitted density (section 2): with sigma = ln mu,
//
//     dl/dalpha = E[w] - L,   dl/dsigma = E[v] - mu Y,
//     the Hessian of l in (alpha, mu), rescaled by mu, is -Cov(w, v)   (concave).
//
// Optimizer: a box-constrained (trust-region-like) Newton method on that concave function,
// in the coordinates (alpha, t) with mu -> mu (1 + t), so that the model Hessian -Cov(w, v)
// is the exact one of l in (alpha, mu) and always negative definite. Each iteration
// maximises the quadratic model over a step box: |d alpha| <= 4, mu shrinks by at most a
// factor 100 or grows by at most e^4, and the search box (kAlphaMin.., kMuMin..; a variable on
// a bound whose gradient points out of the box stays there: projected Newton). Inside the box
// that is the plain Newton step; otherwise the best point on the box's edges (each the
// clamped 1-D optimum), which still improves the model and is therefore an ascent direction.
// Then a backtracking (Armijo) line search along it. Clipping each variable on its own edge
// (rather than shortening the whole step) matters near mu -> 0, where Var(v) blows up for
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
// The boundary lambda = 0 is decided before the search, in closed form (power_law_boundary).

// Search box of the fit. alpha outside it, or lambda xmin outside (kMuMin, kMuMax), ends the
// search on the bound (status alpha_bound / lambda_bound). A caller may raise the lower end of
// alpha (alpha_min below, at most kAlphaMinLimit): the maximum over alpha >= alpha_min is
// then found by the same projected Newton method (l is concave, so it is unique, and it lies
// on alpha = alpha_min exactly when the unconstrained maximum lies below it).
constexpr double kAlphaMin = -100.0;
// The largest lower bound of alpha a caller may set: the power-law boundary (lambda = 0) is
// decided in closed form before the search, and its alpha is > 2, so any bound <= 2 leaves
// that decision valid.
constexpr double kAlphaMinLimit = 2.0;
constexpr double kAlphaMax = 100.0;
constexpr double kMuMin = 1e-250;  // lambda * xmin
constexpr double kMuMax = 1e15;

constexpr int kMaxIterations = 200;
constexpr int kMaxHalvings = 60;
constexpr double kMaxAlphaStep = 4.0;
constexpr double kMaxShrink = 0.99;  // mu shrinks by at most a factor 1/(1 - 0.99)
constexpr double kArmijo = 1e-4;
constexpr double kDoneDecrement = 1e-30;
constexpr double kQuadraticDecrement = 1e-14;
constexpr double kNoiseDecrement = 1e-10;

// The box of sigma = ln mu, and the largest relative growth of mu in one step (e^4).
HTS_HD double sigma_min() { return ::log(kMuMin); }
HTS_HD double sigma_max() { return ::log(kMuMax); }
HTS_HD double max_grow() { return ::expm1(4.0); }

// TplStatus and TplError of tpl.hpp, as plain ints (the same values).
enum Status : int {
    converged = 0, power_law = 1, alpha_bound = 2, lambda_bound = 3, not_converged = 4,
    failed = 5
};
// unsorted (GPU batches only): the array given as ascending is not.
enum Error : int {
    none = 0, non_finite = 1, bad_xmin = 2, too_few = 3, degenerate = 4, unsorted = 5
};

// Compensated (Neumaier) summation.
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

// w = ln(x / xmin), as log1p of (x - xmin) / xmin: x - xmin is exact near xmin.
HTS_HD double log_ratio(double x, double xmin) { return ::log1p((x - xmin) / xmin); }

// What the fit needs of a tail: its size and the means of w and y - 1.
struct TailStats {
    double xmin = 0.0;
    double log_xmin = 0.0;
    double mean_w = 0.0;    // L
    double mean_ym1 = 0.0;  // Y - 1 = mean((x - xmin) / xmin), kept apart from the 1 so
                            // that tails of nearly equal values keep their digits
    double n = 0.0;
};

// The statistics of the ascending tail x[0..count) >= xmin, summed directly about xmin; the
// logs w_j go to w (when not null) for the KS scan.
HTS_HD TailStats tail_stats(const double* x, long long count, double xmin, double* w) {
    TailStats t;
    t.xmin = xmin;
    t.log_xmin = ::log(xmin);
    t.n = static_cast<double>(count);
    Sum sum_w, sum_ym1;
    for (long long j = 0; j < count; ++j) {
        const double ym1 = (x[j] - xmin) / xmin;  // x - xmin is exact near xmin
        const double wj = ::log1p(ym1);
        if (w != nullptr) w[j] = wj;
        sum_w.add(wj);
        sum_ym1.add(ym1);
    }
    t.mean_w = sum_w.value() / t.n;
    t.mean_ym1 = sum_ym1.value() / t.n;
    return t;
}

// A point of the search with the mean log-likelihood and its gradient there.
struct Point {
    double alpha = 0.0;
    double sigma = 0.0;  // ln(mu)
    double mu = 0.0;     // lambda * xmin
    GammaTail moments;
    double ell = -hd::inf();
    double ell_noise = 0.0;  // rounding level of ell: it is a sum of terms of this size
    double g_alpha = 0.0;
    double g_sigma = 0.0;
};

// l and its gradient, written about the peak w_c of the density (section 2) so that no
// large terms cancel: with log K = s w_c - v_c + ln(scaled), s = 1 - alpha, v_c = mu e^(w_c),
//   l = -ln xmin - w_c - alpha (L - w_c) - mu (Y - e^(w_c)) - ln(scaled),
//   dl/dalpha = E[w - w_c] - (L - w_c),   dl/dsigma = E[v - v_c] - mu (Y - e^(w_c)).
// The Hessian is -Cov(w, v) of p.moments (see model()).
HTS_HD Point evaluate(const TailStats& t, double alpha, double sigma, const double* rules) {
    Point p;
    p.alpha = alpha;
    p.sigma = sigma;
    p.mu = ::exp(sigma);
    p.moments = gamma_tail(1.0 - alpha, p.mu, rules);
    if (!p.moments.ok) return p;  // ell stays -inf: rejected by the line search
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

// Is the point held on a bound of the search box (its gradient points out of the box)?
// alpha_min: the lower end of alpha (kAlphaMin unless the caller raised it).
HTS_HD bool alpha_held(const Point& p, double alpha_min) {
    return (p.alpha <= alpha_min && p.g_alpha < 0.0) || (p.alpha >= kAlphaMax && p.g_alpha > 0.0);
}
HTS_HD bool sigma_held(const Point& p) {
    return (p.sigma <= sigma_min() && p.g_sigma < 0.0) ||
           (p.sigma >= sigma_max() && p.g_sigma > 0.0);
}

// A step: da in alpha, ds the relative change of mu (mu -> mu (1 + ds)).
struct Step {
    double da = 0.0;
    double ds = 0.0;
};

// The quadratic model q(d) = g.d - d^T C d / 2 of l about p, C = Cov(w, v).
HTS_HD double model(const Point& p, const Step& d) {
    const double caa = p.moments.var_w, css = p.moments.var_v, cas = p.moments.cov_wv;
    return p.g_alpha * d.da + p.g_sigma * d.ds -
           0.5 * (caa * d.da * d.da + 2.0 * cas * d.da * d.ds + css * d.ds * d.ds);
}

// argmax over [lo, hi] of g t - c t^2 / 2.
HTS_HD double clamped_optimum(double g, double c, double lo, double hi) {
    if (c > 0.0) return hd::clamp(g / c, lo, hi);
    return g > 0.0 ? hi : (g < 0.0 ? lo : 0.0);
}

// Keeps d in best when the model gains more there than best_q.
HTS_HD void consider_step(const Point& p, const Step& d, Step& best, double& best_q) {
    const double q = model(p, d);
    if (q > best_q) {
        best_q = q;
        best = d;
    }
}

// Maximiser of the quadratic model over the box lo <= d <= hi (lo <= 0 <= hi componentwise),
// C positive semi-definite. Either the Newton step lies in the box, or the maximum is on an
// edge, where it is the clamped 1-D optimum.
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

// The step box at p: alpha moves by at most kMaxAlphaStep and stays in the search box
// [alpha_min, kAlphaMax]; the relative change ds of mu is limited to [-kMaxShrink,
// max_grow()] and to the box of sigma.
HTS_HD void step_box(const Point& p, double alpha_min, Step& lo, Step& hi) {
    lo.da = hd::min(0.0, hd::max(-kMaxAlphaStep, alpha_min - p.alpha));
    hi.da = hd::max(0.0, hd::min(kMaxAlphaStep, kAlphaMax - p.alpha));
    lo.ds = hd::min(0.0, hd::max(-kMaxShrink, ::expm1(sigma_min() - p.sigma)));
    hi.ds = hd::max(0.0, hd::min(max_grow(), ::expm1(sigma_max() - p.sigma)));
}

// The point at `step` times d from cur, inside the search box; a full step that sends a
// variable to a bound lands exactly on it.
HTS_HD Point step_to(const TailStats& t, const Point& cur, const Step& d, const Step& lo,
                     const Step& hi, double step, double alpha_min, const double* rules) {
    const double s_min = sigma_min(), s_max = sigma_max();
    double alpha = cur.alpha + step * d.da;
    double sigma = cur.sigma + ::log1p(step * d.ds);
    if (step == 1.0) {
        if (d.da == lo.da && alpha - alpha_min < 1e-12) alpha = alpha_min;
        if (d.da == hi.da && kAlphaMax - alpha < 1e-12) alpha = kAlphaMax;
        if (d.ds == lo.ds && sigma - s_min < 1e-12) sigma = s_min;
        if (d.ds == hi.ds && s_max - sigma < 1e-12) sigma = s_max;
    }
    alpha = hd::clamp(alpha, alpha_min, kAlphaMax);
    sigma = hd::clamp(sigma, s_min, s_max);
    return evaluate(t, alpha, sigma, rules);
}

// The status of the point where the iteration ended.
HTS_HD int final_status(const Point& p, bool finished, bool stalled, double alpha_min) {
    if (!finished || stalled) return not_converged;
    if (alpha_held(p, alpha_min)) return alpha_bound;
    if (sigma_held(p)) return lambda_bound;
    return converged;
}

// Maximises l over the box (alpha >= alpha_min) from (alpha0, sigma0); fills status and
// iteration count.
HTS_HD Point maximise(const TailStats& t, double alpha0, double sigma0, double alpha_min,
                      const double* rules, int& status, int& iterations) {
    Point cur = evaluate(t, alpha0, sigma0, rules);
    bool finished = false;
    bool stalled = false;
    bool small_full_step = false;
    iterations = 0;
    while (iterations < kMaxIterations) {
        Step lo, hi;
        step_box(cur, alpha_min, lo, hi);
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
            next = step_to(t, cur, d, lo, hi, step, alpha_min, rules);
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
    status = final_status(cur, finished, stalled, alpha_min);
    return cur;
}

// Is the maximum on the boundary lambda = 0? Then *alpha_pl is the power-law MLE there
// (concavity: the power law's one-sided slope in mu, E_PL[y] - Y, is <= 0; its mean in units
// of xmin is (alpha - 1)/(alpha - 2) = 1 + 1/(alpha - 2)). Otherwise *alpha_pl is where the
// Newton iteration starts.
HTS_HD bool power_law_boundary(const TailStats& t, double* alpha_pl) {
    *alpha_pl = 1.0 + 1.0 / t.mean_w;
    return *alpha_pl > 2.0 && 1.0 / (*alpha_pl - 2.0) <= t.mean_ym1;
}

// The maximum-likelihood fit of a tail, without its KS distance.
struct TailFit {
    double alpha = 0.0;
    double lambda = 0.0;     // 0 for status power_law
    double loglik = 0.0;     // total over the tail
    double alpha_se = 0.0;   // from the observed Fisher information (NaN where undefined)
    double lambda_se = 0.0;
    int iterations = 0;
    int status = failed;
    GammaTail moments;       // at the maximum (ok = false for status power_law)
};

// The closed-form fit on the boundary lambda = 0 (the pure power law with exponent alpha).
HTS_HD TailFit power_law_fit(const TailStats& t, double alpha) {
    TailFit r;
    r.alpha = alpha;
    r.lambda = 0.0;
    r.loglik = t.n * (::log(alpha - 1.0) - t.log_xmin - alpha * t.mean_w);
    r.alpha_se = (alpha - 1.0) / ::sqrt(t.n);
    r.lambda_se = hd::nan();
    r.iterations = 0;
    r.status = power_law;
    return r;
}

// Standard errors at an interior maximum. The observed information of the total
// log-likelihood in (alpha, sigma) is n Cov(w, v) there (the gradient term vanishes);
// lambda = e^sigma / xmin.
HTS_HD void standard_errors(const TailStats& t, TailFit& r) {
    const double caa = r.moments.var_w;
    const double css = r.moments.var_v;
    const double cas = r.moments.cov_wv;
    const double det = caa * css - cas * cas;
    if (det > 0.0) {
        r.alpha_se = ::sqrt(css / (t.n * det));
        r.lambda_se = r.lambda * ::sqrt(caa / (t.n * det));
    } else {
        r.alpha_se = r.lambda_se = hd::nan();
    }
}

// The fit of a tail from its statistics. `start` = {alpha, sigma} starts the Newton
// iteration there (a warm start); nullptr starts from the power-law alpha and mu = 1 / Y.
// alpha_min: the lower end of alpha, kAlphaMin (the search box) or a bound the caller raised,
// at most kAlphaMinLimit (so the power-law boundary, whose alpha is > 2, is unaffected).
HTS_HD TailFit fit_tail(const TailStats& t, const double* start, const double* rules,
                        double alpha_min = kAlphaMin) {
    double alpha_pl = 0.0;
    if (power_law_boundary(t, &alpha_pl)) return power_law_fit(t, alpha_pl);
    const double* from = start;
    const double cold[2] = {alpha_pl, -::log1p(t.mean_ym1)};
    if (from == nullptr) from = cold;
    const double alpha0 = hd::clamp(from[0], alpha_min, kAlphaMax);
    const double sigma0 = hd::clamp(from[1], sigma_min(), sigma_max());
    TailFit r;
    const Point best = maximise(t, alpha0, sigma0, alpha_min, rules, r.status, r.iterations);
    r.alpha = best.alpha;
    r.lambda = best.mu / t.xmin;
    r.loglik = t.n * best.ell;
    r.moments = best.moments;
    standard_errors(t, r);
    return r;
}

// Stores the fit of tail t in a result record with these field names: tpl.hpp's TplFitResult
// on the host, Result below on the GPU (D and the error fields are left to the caller).
template <class Record>
HTS_HD void store_fit(const TailStats& t, const TailFit& f, Record& r) {
    r.xmin = t.xmin;
    r.n = static_cast<decltype(r.n)>(t.n);
    r.alpha = f.alpha;
    r.lambda = f.lambda;
    r.loglik = f.loglik;
    r.alpha_se = f.alpha_se;
    r.lambda_se = f.lambda_se;
    r.iterations = f.iterations;
    r.status = static_cast<decltype(r.status)>(f.status);
}

// ---- 4. The fitted CDF and the KS distance ---------------------------------------------------

// Empirical CDF k / n at the k-th point (from 0) of a sorted tail of n values.
HTS_HD double empirical_cdf(long long k, double n) { return static_cast<double>(k) / n; }

// The fitted CDF F(x) of a fit, evaluated at ascending points w = ln(x / xmin) of its tail
// (at() must be called with w increasing from the last point, or after a restart()). The
// TPL's is accumulated segment by segment of the density, F(w) = ∫_0^w e^φ / denom; the power
// law's is closed-form, F = (1 - y^(1 - alpha)) / denom. denom renormalises F to
// [xmin, cdf_xmax] (powerlaw's KS test with an xmax); without a cut it is the whole integral
// (TPL) or 1 (power law), and F is the plain fitted CDF.
struct FittedCdf {
    double s = 0.0;                      // 1 - alpha
    const GammaTail* moments = nullptr;  // nullptr: the power law
    double denom = 1.0;
    const double* rules = nullptr;
    double cum = 0.0;       // TPL: ∫_0^previous e^(φ - φ_c)
    double previous = 0.0;  // TPL: the last point

    // F at w (>= previous for the TPL).
    HTS_HD double at(double w) { return moments == nullptr ? power_law_at(w) : tpl_at(w); }
    // at() for a known model: loops over many points pick one of these outside the loop.
    HTS_HD double power_law_at(double w) const { return -::expm1(s * w) / denom; }
    HTS_HD double tpl_at(double w) {
        cum += gamma_tail_segment(s, *moments, previous, w, rules);
        previous = w;
        return hd::min(1.0, cum / denom);
    }
    // Continues the walk from a point w where the TPL's integral was `cumulative`.
    HTS_HD void restart(double cumulative, double w) {
        cum = cumulative;
        previous = w;
    }
};

// The fitted CDF of a fit with exponent alpha and, for the TPL, `moments` (nullptr: the power
// law). w_top = ln(cdf_xmax / xmin) renormalises it to [xmin, cdf_xmax] when `cut`.
HTS_HD FittedCdf fitted_cdf(double alpha, const GammaTail* moments, bool cut, double w_top,
                            const double* rules) {
    FittedCdf f;
    f.s = 1.0 - alpha;
    f.moments = moments;
    f.rules = rules;
    if (moments == nullptr) {
        f.denom = cut ? -::expm1(f.s * w_top) : 1.0;
    } else {
        f.denom = cut ? gamma_tail_segment(f.s, *moments, 0.0, w_top, rules) : moments->scaled;
    }
    return f;
}

// |F(x_k) - k/n|, the deviation at the k-th point of the tail.
HTS_HD double ks_deviation(double fitted, long long k, double n) {
    return ::fabs(fitted - empirical_cdf(k, n));
}

// KS distance max_k |F(x_k) - k/n| over a tail of `count` sorted points whose logs
// w_k = ln(x_k / xmin) are logs[k] (an array or a functor). The model is chosen once, outside
// the loop: a loop body holding both cost the host ~12% of a fixed-xmin fit (n = 15,000).
template <class Logs>
HTS_HD double ks_distance(const Logs& logs, long long count, double n, FittedCdf cdf) {
    double worst = 0.0;
    if (cdf.moments == nullptr) {
        for (long long k = 0; k < count; ++k)
            worst = hd::max(worst, ks_deviation(cdf.power_law_at(logs[k]), k, n));
    } else {
        for (long long k = 0; k < count; ++k)
            worst = hd::max(worst, ks_deviation(cdf.tpl_at(logs[k]), k, n));
    }
    return worst;
}

// ---- The GPU's fit at a fixed xmin (kernels.cuh, tests/cuda_host_driver.cpp) ----------------

// The logs w_j of an ascending tail x[0..) >= xmin, recomputed where they are needed (the GPU
// keeps no per-pair scratch array).
struct TailLogs {
    const double* x;
    double xmin;
    HTS_HD double operator[](long long j) const { return log_ratio(x[j], xmin); }
};

// TplFitResult of tpl.hpp with plain ints.
struct Result {
    double alpha = hd::nan();
    double lambda = hd::nan();
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

// The input checks of fit_truncated_powerlaw on an ascending array (plus `unsorted`): the
// error code (none when the values >= xmin can be fitted), with r.n and r.bad_index set.
HTS_HD int check_input(const double* x, long long count, double xmin, long long& first,
                       Result& r) {
    if (!(xmin > 0.0) || !hd::finite(xmin)) return bad_xmin;
    for (long long k = 0; k < count; ++k) {
        const bool bad = !hd::finite(x[k]);
        if (bad || (k > 0 && x[k] < x[k - 1])) {
            r.bad_index = k;
            return bad ? non_finite : unsorted;
        }
    }
    first = lower_bound(x, count, xmin);
    r.n = count - first;
    if (r.n < 2) return too_few;
    if (x[first] == x[count - 1]) return degenerate;
    return none;
}

// Fits the values >= xmin of the ascending array x[0..count) (fit_truncated_powerlaw on the
// same values gives the same result; bad_index refers to positions in x).
HTS_HD Result fit(const double* x, long long count, double xmin, const double* rules) {
    Result r;
    long long first = 0;
    r.error = check_input(x, count, xmin, first, r);
    if (r.error != none) return r;
    const TailLogs logs{x + first, xmin};
    const TailStats t = tail_stats(logs.x, r.n, xmin, nullptr);
    const TailFit f = fit_tail(t, nullptr, rules);
    store_fit(t, f, r);
    if (f.status == power_law) {
        r.D = ks_distance(logs, r.n, t.n, fitted_cdf(f.alpha, nullptr, false, 0.0, rules));
    } else if (f.moments.ok) {
        r.D = ks_distance(logs, r.n, t.n, fitted_cdf(f.alpha, &f.moments, false, 0.0, rules));
    }
    return r;
}

}  // namespace tplhd
}  // namespace hts
