// Upper incomplete gamma function in log form, from K(s, x) of tpl_math.hpp (see special.hpp).

#include "hts/special.hpp"

#include <cmath>
#include <limits>

namespace hts {
namespace {

// The rule table, filled by its constructor.
struct RuleTable {
    double values[tplhd::kRuleTableSize];
    RuleTable() : values() { tplhd::fill_rule_table(values); }
};

}  // namespace

const double* rule_table() {
    static const RuleTable table;  // thread-safe one-time initialisation
    return table.values;
}

double log_upper_gamma(double s, double x) {
    const tplhd::GammaTail t = tplhd::gamma_tail(s, x, rule_table());
    if (!t.ok) return std::numeric_limits<double>::quiet_NaN();
    // ln Γ = s ln x + φ(w_c) + ln(scaled); at an interior peak s ln x cancels against φ(w_c)
    // = s ln(s/x) - s, so it is left out rather than added and subtracted.
    return s > x ? s * std::log(s) - s + std::log(t.scaled) : s * std::log(x) + t.log_integral;
}

LogUpperGamma log_upper_gamma_derivatives(double s, double x) {
    LogUpperGamma r;
    const tplhd::GammaTail t = tplhd::gamma_tail(s, x, rule_table());
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
