// Special functions: the upper incomplete gamma function for any real order, in log form.
//
// Pure C++17 (no Python, no external libraries): the bindings in csrc/bindings wrap these. The
// math itself, K(s, x) = x^(-s) Γ(s, x) and the moments of its density by Gauss-Legendre
// panels (valid for every real s, negative included), is tplhd::gamma_tail of tpl_math.hpp,
// shared with the CUDA kernels; this file adds the host's copy of its rule table and the
// log-form functions built on it.
#pragma once

#include "hts/tpl_math.hpp"

namespace hts {

// The Gauss-Legendre rule table of tpl_math.hpp (tplhd::kRuleTableSize doubles), filled on
// first use (thread-safe) and shared by every host caller of the tplhd integrals.
const double* rule_table();

// ln Γ(s, x), the upper incomplete gamma function (unregularised), for any real s and x > 0.
// Returns NaN for x <= 0 or non-finite arguments.
double log_upper_gamma(double s, double x);

// ln Γ(s, x) with its first two derivatives in s:
//   d/ds  ln Γ(s, x) = ln x + E[w],   d²/ds² ln Γ(s, x) = Var(w)   (w as in tplhd::GammaTail),
// and in x:  d/dx ln Γ(s, x) = -x^(s-1) e^(-x) / Γ(s, x).
struct LogUpperGamma {
    double value = 0.0;
    double d_s = 0.0;
    double d2_s = 0.0;
    double d_x = 0.0;
};
LogUpperGamma log_upper_gamma_derivatives(double s, double x);

}  // namespace hts
