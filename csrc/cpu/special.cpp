// Upper incomplete gamma function through the log-concave integral K(s, x) (see special.hpp).
//
// Quadrature. The integrand exp(φ(w)), φ(w) = s w - x e^w, is entire in w, and on each side of
// its peak |φ'| and x e^w are monotone. Panels are laid out from the peak outwards; a panel of
// width h keeps h |φ'| <= 8, h sqrt(x e^w) <= 2 and h <= 2 at both of its ends (hence over
// all of it). On such a panel the 16-point Gauss-Legendre rule is exact to ~1e-17 relative:
// its error for e^(βt) on [-1, 1] is ~1e-19 at β = 4, and the double-exponential factor
// e^(-x e^w) has derivatives of order 32 below ~1e26 where x e^w ~ 1, which a width of 2
// brings to ~1e-19. The walk stops once a rigorous bound on the rest of the integral (φ is
// concave, so it lies below its tangent) is below 1e-22 of the part already summed, for the
// weights of the second moments as well. Over s in [-30, 30], x in [1e-8, 1e3] this matches
// mpmath to 1.6e-13 in ln Γ (the rounding of ln Γ itself for |ln Γ| ~ 1000), and to ~1e-15
// relative in d/ds and d²/ds².
//
// Exponents are taken relative to the peak, φ(w) - φ(w_c) = s d - v_c expm1(d) with
// d = w - w_c and v_c = x e^(w_c), so nothing overflows and nothing cancels: ln Γ can be
// ±1e5 and still carry a relative error of ~1e-16 in Γ. Panels are placed in d, not w, so
// node positions stay exact to ~1e-16 near a peak far from the origin (w_c ~ 300 for
// x ~ 1e-130). Moments are accumulated about the peak for the same reason (variances of a
// narrow bump far from the origin would otherwise cancel).

#include "hts/special.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>

namespace hts {
namespace {

constexpr double kPi = 3.14159265358979323846;
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

// N-point Gauss-Legendre nodes and weights on [-1, 1], by Newton's method on P_N.
template <int N>
struct GaussLegendre {
    std::array<double, N> node{};
    std::array<double, N> weight{};

    GaussLegendre() {
        for (int i = 0; i < (N + 1) / 2; ++i) {
            // Tricomi's approximation of the i-th largest root as the starting point.
            double z = std::cos(kPi * (i + 0.75) / (N + 0.5));
            double derivative = 1.0;
            for (int iteration = 0; iteration < 100; ++iteration) {
                double p = 1.0, p_prev = 0.0;  // P_j(z), P_{j-1}(z)
                for (int j = 1; j <= N; ++j) {
                    const double p_prev2 = p_prev;
                    p_prev = p;
                    p = ((2.0 * j - 1.0) * z * p_prev - (j - 1.0) * p_prev2) / j;
                }
                derivative = N * (z * p - p_prev) / (z * z - 1.0);
                const double step = p / derivative;
                z -= step;
                if (std::fabs(step) <= 1e-17) break;
            }
            // Weight from the derivative at the converged root.
            double p = 1.0, p_prev = 0.0;
            for (int j = 1; j <= N; ++j) {
                const double p_prev2 = p_prev;
                p_prev = p;
                p = ((2.0 * j - 1.0) * z * p_prev - (j - 1.0) * p_prev2) / j;
            }
            derivative = N * (z * p - p_prev) / (z * z - 1.0);
            const double w = 2.0 / ((1.0 - z * z) * derivative * derivative);
            node[static_cast<std::size_t>(i)] = z;
            node[static_cast<std::size_t>(N - 1 - i)] = -z;
            weight[static_cast<std::size_t>(i)] = w;
            weight[static_cast<std::size_t>(N - 1 - i)] = w;
        }
        if (N % 2 == 1) node[static_cast<std::size_t>(N / 2)] = 0.0;
    }
};

template <int N>
const GaussLegendre<N>& rule() {
    static const GaussLegendre<N> instance;  // thread-safe one-time initialisation
    return instance;
}

// φ(w) = s w - x e^w about the peak w_c, as a function of d = w - w_c (v_c = x e^(w_c)).
// Working in d keeps node positions exact to ~1e-16 absolute near the peak even where w_c is
// large (w_c ~ 300 for x ~ 1e-130), which the absolute w would not.
struct Exponent {
    double s;
    double vc;

    double rel(double d) const { return s * d - vc * std::expm1(d); }  // φ(w) - φ(w_c)
    double v(double d) const { return vc * std::exp(d); }              // x e^w
    double slope(double d) const { return s - v(d); }                  // φ'(w)
    // Inverse length scale of the integrand near d for a rule that allows a slope budget
    // c_slope and a curvature budget c_curve per panel.
    double rate(double d, double c_slope, double c_curve) const {
        const double vd = v(d);
        return std::max(std::fabs(s - vd) / c_slope, std::sqrt(vd) / c_curve);
    }
};

// Width of the panel that starts at d and extends in direction dir (+1 or -1): the largest
// h <= h_max with h * max(rate(d), rate(d + dir h)) <= 1. |φ'| and x e^w are monotone on each
// side of the peak, so the two ends bound the rate over the whole panel.
double panel_width(const Exponent& e, double d, double dir, double c_slope, double c_curve,
                   double h_max) {
    const double r0 = e.rate(d, c_slope, c_curve);
    double h = r0 * h_max > 1.0 ? 1.0 / r0 : h_max;
    for (int k = 0; k < 8; ++k) {
        const double r = std::max(r0, e.rate(d + dir * h, c_slope, c_curve));
        if (r * h <= 1.0 + 1e-12) break;
        h = 1.0 / r;
    }
    return h;
}

struct Sums {
    double i0 = 0.0, w = 0.0, v = 0.0, ww = 0.0, vv = 0.0, wv = 0.0;
};

// Adds the moment integrals over d in [lo, hi] (a 16-point panel).
void add_moment_panel(const Exponent& e, double lo, double hi, Sums& acc) {
    const GaussLegendre<16>& gl = rule<16>();
    const double centre = 0.5 * (lo + hi);
    const double half = 0.5 * (hi - lo);
    Sums p;
    for (std::size_t i = 0; i < 16; ++i) {
        const double dw = centre + half * gl.node[i];
        const double dv = e.vc * std::expm1(dw);
        const double f = gl.weight[i] * std::exp(e.s * dw - dv);
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

// One n-point Gauss-Legendre panel of ∫ exp(φ - φ(w_c)) over d in [lo, hi].
template <int N>
double segment_panel(const Exponent& e, double lo, double hi) {
    const GaussLegendre<N>& gl = rule<N>();
    const double centre = 0.5 * (lo + hi);
    const double half = 0.5 * (hi - lo);
    double panel = 0.0;
    for (std::size_t i = 0; i < static_cast<std::size_t>(N); ++i) {
        const double dw = centre + half * gl.node[i];
        panel += gl.weight[i] * std::exp(e.s * dw - e.vc * std::expm1(dw));
    }
    return half * panel;
}

// ∫ exp(φ - φ(w_c)) over d in [lo, hi] with 8-point panels. A piece whose length times the
// 8-point rate is at most 0.1 (slope * length <= 0.2, sqrt(x e^w) * length <= 0.05: the
// 4-point rule is then exact to ~1e-15 relative) takes 4 points; that is the common case of
// the gap between neighbouring eigenvalues in a KS scan, checked first from the rate at lo
// alone (over a length <= 0.05 the rate grows by a few per cent at most).
double integrate_segment(const Exponent& e, double lo, double hi) {
    const double length = hi - lo;
    if (length <= 0.05 && length * e.rate(lo, kSlope8, kCurve8) <= 0.08)
        return segment_panel<4>(e, lo, hi);
    double total = 0.0;
    double d = lo;
    for (int k = 0; k < kMaxPanels && d < hi; ++k) {
        const double h = panel_width(e, d, 1.0, kSlope8, kCurve8, kWidth8);
        if (hi - d <= 0.1 * h) return total + segment_panel<4>(e, d, hi);
        const double end = d + h >= hi ? hi : d + h;
        total += segment_panel<8>(e, d, end);
        d = end;
    }
    return total;
}

}  // namespace

GammaTail gamma_tail(double s, double x) {
    GammaTail t;
    if (!(x > 0.0) || !std::isfinite(x) || !std::isfinite(s)) return t;
    // Peak of φ on [0, inf): interior where φ'(0) = s - x > 0.
    const bool interior = s > x;
    if (interior) {
        t.peak_w = std::log(s) - std::log(x);
        t.peak_v = s;
        t.log_peak = s * t.peak_w - s;
    } else {
        t.peak_w = 0.0;
        t.peak_v = x;
        t.log_peak = -x;
    }
    const Exponent e{s, t.peak_v};
    Sums acc;

    // Right of the peak (d = w - w_c >= 0): φ' < 0 and decreasing. For d >= D, φ lies below
    // its tangent at D, and the weights d^2, (v - v_c)^2 grow at most like polynomials times
    // e^(2(d-D)), so once |φ'(D)| > 3 the rest is below
    // e^(φ(D)-φ_c) (3 + D^2 + 2 D + (v(D) + v_c)^2) / (|φ'(D)| - 2).
    double d = 0.0;
    for (int k = 0; k < kMaxPanels; ++k) {
        const double h = panel_width(e, d, 1.0, kSlope16, kCurve16, kWidth16);
        add_moment_panel(e, d, d + h, acc);
        d += h;
        const double slope = e.slope(d);
        if (slope < -3.0) {
            const double vd = e.v(d) + t.peak_v;
            const double bound =
                std::exp(e.rel(d)) * (3.0 + d * d + 2.0 * d + vd * vd) / (-slope - 2.0);
            if (bound <= kTailTolerance * acc.i0) break;
        }
    }
    t.hi_cut = t.peak_w + d;

    // Left of an interior peak, down to w = 0 (d = -w_c): φ' > 0 and increasing leftwards,
    // |v - v_c| <= v_c, so once φ'(D) >= 1 the rest is below
    // e^(φ(D)-φ_c) (3 + D^2 + 2|D| + v_c^2) / φ'(D).
    d = 0.0;
    const double d_min = -t.peak_w;
    for (int k = 0; k < kMaxPanels && d > d_min; ++k) {
        const double h = panel_width(e, d, -1.0, kSlope16, kCurve16, kWidth16);
        const double lo = d - h <= d_min ? d_min : d - h;
        add_moment_panel(e, lo, d, acc);
        d = lo;
        if (d <= d_min) break;
        const double slope = e.slope(d);
        if (slope >= 1.0) {
            const double bound = std::exp(e.rel(d)) *
                                 (3.0 + d * d - 2.0 * d + t.peak_v * t.peak_v) / slope;
            if (bound <= kTailTolerance * acc.i0) break;
        }
    }
    t.lo_cut = d <= d_min ? 0.0 : t.peak_w + d;

    t.scaled = acc.i0;
    t.log_integral = t.log_peak + std::log(acc.i0);
    const double mw = acc.w / acc.i0;  // E[w - w_c]
    const double mv = acc.v / acc.i0;  // E[v - v_c]
    t.mean_w = t.peak_w + mw;
    t.mean_dw = mw;
    t.mean_v = t.peak_v + mv;
    t.mean_dv = mv;
    t.var_w = std::max(0.0, acc.ww / acc.i0 - mw * mw);
    t.var_v = std::max(0.0, acc.vv / acc.i0 - mv * mv);
    t.cov_wv = acc.wv / acc.i0 - mw * mv;
    t.ok = std::isfinite(t.log_integral) && acc.i0 > 0.0;
    return t;
}

double gamma_tail_segment(double s, const GammaTail& tail, double lo, double hi) {
    if (!tail.ok) return std::numeric_limits<double>::quiet_NaN();
    // Outside [lo_cut, hi_cut] the integrand is below 1e-22 of the total: leave it out.
    lo = std::max(lo, tail.lo_cut);
    hi = std::min(hi, tail.hi_cut);
    if (!(hi > lo)) return 0.0;
    return integrate_segment(Exponent{s, tail.peak_v}, lo - tail.peak_w, hi - tail.peak_w);
}

double log_upper_gamma(double s, double x) {
    const GammaTail t = gamma_tail(s, x);
    if (!t.ok) return std::numeric_limits<double>::quiet_NaN();
    // ln Γ = s ln x + φ(w_c) + ln(scaled); at an interior peak s ln x cancels against φ(w_c)
    // = s ln(s/x) - s, so it is left out rather than added and subtracted.
    return s > x ? s * std::log(s) - s + std::log(t.scaled) : s * std::log(x) + t.log_integral;
}

LogUpperGamma log_upper_gamma_derivatives(double s, double x) {
    LogUpperGamma r;
    const GammaTail t = gamma_tail(s, x);
    if (!t.ok) {
        const double nan = std::numeric_limits<double>::quiet_NaN();
        r.value = r.d_s = r.d2_s = r.d_x = nan;
        return r;
    }
    const double log_scaled = std::log(t.scaled);
    const double mean_dw = t.mean_dw;
    if (s > x) {
        r.value = s * std::log(s) - s + log_scaled;
        r.d_s = std::log(s) + mean_dw;  // ln x + w_c = ln s
    } else {
        r.value = s * std::log(x) + t.log_integral;
        r.d_s = std::log(x) + mean_dw;
    }
    r.d2_s = t.var_w;
    r.d_x = -std::exp((s - 1.0) * std::log(x) - x - r.value);
    return r;
}

}  // namespace hts
