// Special functions: the upper incomplete gamma function for any real order, in log form.
//
// Pure C++17 (no Python, no external libraries): the bindings in csrc/bindings wrap these.
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
#pragma once

namespace hts {

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

// The moments above. Requires x > 0 and finite s, x (otherwise ok = false).
GammaTail gamma_tail(double s, double x);

// ∫_lo^hi exp(φ(w) - tail.log_peak) dw for 0 <= lo <= hi, with φ(w) = s w - x e^w and the
// peak from `tail` (= gamma_tail(s, x)). Dividing by tail.scaled gives P(lo <= w <= hi).
double gamma_tail_segment(double s, const GammaTail& tail, double lo, double hi);

// ln Γ(s, x), the upper incomplete gamma function (unregularised), for any real s and x > 0.
// Returns NaN for x <= 0 or non-finite arguments.
double log_upper_gamma(double s, double x);

// ln Γ(s, x) with its first two derivatives in s:
//   d/ds  ln Γ(s, x) = ln x + E[w],   d²/ds² ln Γ(s, x) = Var(w)   (w as in GammaTail),
// and in x:  d/dx ln Γ(s, x) = -x^(s-1) e^(-x) / Γ(s, x).
struct LogUpperGamma {
    double value = 0.0;
    double d_s = 0.0;
    double d2_s = 0.0;
    double d_x = 0.0;
};
LogUpperGamma log_upper_gamma_derivatives(double s, double x);

}  // namespace hts
