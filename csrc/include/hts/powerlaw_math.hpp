// Per-candidate math of the all-xmin power-law fit, shared by the CPU kernel
// (csrc/cpu/powerlaw.cpp) and the CUDA kernels (csrc/cuda), so both evaluate the same
// expressions in the same order. Candidates are indices i of the ascending fitted values
// x_i (> threshold); the tail of candidate i is x_i .. x_{n-1}.
#pragma once

#include "hts/hd.hpp"

namespace hts {
namespace pl {

// s + e = a + b exactly (Knuth's two-sum).
HTS_HD void two_sum(double a, double b, double& s, double& e) {
    s = a + b;
    const double bb = s - a;
    e = (a - (s - bb)) + (b - bb);
}

// S_i = sum_{j >= i} log(x_j / x_i), visited from the last value down to the first, in
// double-double arithmetic: a tail of equal values gives exactly 0 and long tails lose no
// digits to cancellation.
struct SuffixLogRatioSum {
    double hi = 0.0;
    double lo = 0.0;

    // Adds log(x_i) (`count` = n - i values in the tail now) and returns S_i.
    HTS_HD double push(double logx_i, double count) {
        double s, e;
        two_sum(hi, logx_i, s, e);
        hi = s;
        lo += e;
        const double p = count * logx_i;
        const double p_err = ::fma(count, logx_i, -p);
        return (hi - p) + (lo - p_err);
    }
};

// Continuous MLE alpha = 1 + n / S (standard rule).
HTS_HD double standard_alpha(double tail, double sum) { return 1.0 + tail / sum; }

// WeightWatcher 0.7.7's bias-corrected small-sample alpha = 1 + (n - 1) / S.
HTS_HD double small_n_alpha(double tail, double sum) { return 1.0 + (tail - 1.0) / sum; }

// Standard error of alpha, (alpha - 1) / sqrt(n_tail).
HTS_HD double alpha_sigma(double alpha, double tail) { return (alpha - 1.0) / ::sqrt(tail); }

// Fitted CDF 1 - (x_j / x_i)^(1 - alpha) from the logs; `exponent` = 1 - alpha.
HTS_HD double fitted_cdf(double logx_j, double logx_i, double exponent) {
    const double d = logx_j - logx_i;
    return 1.0 - (d == 0.0 ? 1.0 : ::exp(exponent * d));
}

// Empirical CDF (j - i) / n of point j in the tail of candidate i (n values).
HTS_HD double empirical_cdf(long long j, long long i, double tail) {
    return static_cast<double>(j - i) / tail;
}

// |F_fit(x_j) - F_emp(x_j)|: the KS distance of candidate i is its maximum over j >= i.
HTS_HD double deviation(const double* logx, long long i, long long j, double exponent,
                        double tail) {
    return ::fabs(fitted_cdf(logx[j], logx[i], exponent) - empirical_cdf(j, i, tail));
}


// FitError of powerlaw.hpp, plus 5: input not ascending (the GPU path needs sorted spectra).
constexpr long long kEmpty = 1, kNonFinite = 2, kNegative = 3, kTooFew = 4, kUnsorted = 5;

// Per-spectrum preparation of the batched fit, for the ascending values[off..end) (one thread
// per spectrum on the GPU): the checks of fit_powerlaw in the same order, log x of the fitted
// values, and alpha of every candidate slot by the standard or the small-n rule (0 where the
// small-n rule skips it, NaN off candidates); ds gets 1 on candidates (D of an unscanned
// candidate) and NaN elsewhere. row receives: first fitted slot, fitted count, error,
// bad index (relative to off), method (1 = small_n), num_fit.
HTS_HD void prepare_spectrum(const double* values, long long off, long long end,
                             double threshold, long long small_n_cutoff,
                             long long small_n_min_tail, double* logx, double* alphas,
                             double* ds, long long* row) {
    for (long long k = off; k < end; ++k) logx[k] = alphas[k] = ds[k] = hd::nan();
    long long error = 0, bad = -1, start = end, fitted = 0;
    if (end <= off) error = kEmpty;
    double prev = -hd::inf();
    for (long long k = off; k < end && error == 0; ++k) {
        const double v = values[k];
        if (!hd::finite(v)) {
            error = kNonFinite;
        } else if (v < 0.0) {
            error = kNegative;
        } else if (v < prev) {
            error = kUnsorted;
        } else {
            prev = v;
            if (v > threshold && v > 0.0) {  // log(0) cannot enter the fit
                if (fitted == 0) start = k;
                ++fitted;
            }
            continue;
        }
        bad = k - off;
    }
    if (error == 0 && fitted < 2) error = kTooFew;
    const bool small_n = small_n_cutoff > 0 && fitted < small_n_cutoff;
    row[0] = start;
    row[1] = fitted;
    row[2] = error;
    row[3] = bad;
    row[4] = small_n ? 1 : 0;
    row[5] = fitted;
    if (error != 0) return;
    const long long nf = fitted;
    for (long long k = start; k < end; ++k) logx[k] = ::log(values[k]);
    SuffixLogRatioSum acc;
    bool any_valid = false;
    double sum0 = 0.0;
    for (long long i = nf - 1; i >= 0; --i) {
        const double tail = static_cast<double>(nf - i);
        const double sum = acc.push(logx[start + i], tail);
        if (i == nf - 1) continue;  // the last value is no candidate
        const long long k = start + i;
        ds[k] = 1.0;  // D of a candidate that is not scanned (alpha <= 1 or skipped)
        if (!small_n) {
            alphas[k] = standard_alpha(tail, sum);
            continue;
        }
        alphas[k] = 0.0;
        if (i == 0) sum0 = sum;
        if (nf - i < small_n_min_tail || sum <= 1e-12) continue;
        alphas[k] = small_n_alpha(tail, sum);
        if (alphas[k] > 1.0) any_valid = true;
    }
    // Small-n rule with no valid candidate: the whole sample is the tail.
    if (small_n && !any_valid && sum0 > 1e-12)
        alphas[start] = small_n_alpha(static_cast<double>(nf), sum0);
}

}  // namespace pl
}  // namespace hts
