// Host-side run of the CUDA kernels' math (tests/test_cuda_math.py compiles this with the
// system C++ compiler and loads it with ctypes). It calls the same HTS_HD functions as
// csrc/cuda/kernels.cuh, in the kernels' order, one "thread" after another, so the shared math
// is checked against the CPU kernels on machines without a GPU.
#include "hts/powerlaw_math.hpp"
#include "hts/tpl_math.hpp"

extern "C" {

// hts_pl_prepare + hts_pl_distances + hts_pl_select (info 6, out_f 5, out_i 6 per spectrum).
void host_powerlaw_batch(const double* values, const long long* offsets, long long num,
                         double threshold, long long cutoff, long long min_tail, double* logx,
                         double* alphas, double* ds, double* sigmas, long long* info,
                         double* out_f, long long* out_i) {
    using namespace hts;
    for (long long b = 0; b < num; ++b)
        pl::prepare_spectrum(values, offsets[b], offsets[b + 1], threshold, cutoff, min_tail,
                             logx, alphas, ds, info + 6 * b);
    for (long long b = 0; b < num; ++b) {
        const long long end = offsets[b + 1];
        for (long long k = offsets[b]; k < end; ++k) {
            sigmas[k] = hd::nan();
            if (!(alphas[k] > 1.0)) continue;
            double worst = 0.0;
            for (long long j = k; j < end; ++j)
                worst = hd::max(worst, pl::deviation(logx, k, j, 1.0 - alphas[k],
                                                     static_cast<double>(end - k)));
            ds[k] = worst;
        }
        const long long* row = info + 6 * b;
        double* f = out_f + 5 * b;
        long long* o = out_i + 6 * b;
        if (row[2] != 0) {
            f[0] = f[1] = f[2] = f[3] = f[4] = -1.0;
            o[0] = -1, o[1] = row[5], o[2] = -1, o[3] = 0, o[4] = row[2], o[5] = row[3];
            continue;
        }
        const long long start = row[0], nf = row[1];
        long long best = end;
        double best_d = hd::inf();
        for (long long k = start; k < end - 1; ++k) {
            sigmas[k] = pl::alpha_sigma(alphas[k], static_cast<double>(end - k));
            if (ds[k] < best_d) best_d = ds[k], best = k;
        }
        f[0] = alphas[best];
        f[1] = values[best];
        f[2] = values[end - 1];
        f[3] = best_d;
        f[4] = pl::alpha_sigma(alphas[best], static_cast<double>(end - best));
        o[0] = nf - tplhd::lower_bound(values + start, nf, values[best]);
        o[1] = nf, o[2] = best - start, o[3] = row[4], o[4] = 0, o[5] = -1;
    }
}

// hts_tpl_rules + hts_tpl_fit (out_f 7, out_i 5 per pair).
void host_tpl_batch(const double* values, const long long* offsets, const long long* segment,
                    const double* xmins, long long num_pairs, double* out_f, long long* out_i) {
    using namespace hts;
    double rules[tplhd::kRuleTableSize];
    tplhd::fill_rule_table(rules);
    for (long long p = 0; p < num_pairs; ++p) {
        const long long off = offsets[segment[p]];
        const tplhd::Result r =
            tplhd::fit(values + off, offsets[segment[p] + 1] - off, xmins[p], rules);
        const double f[7] = {r.alpha, r.lambda, r.xmin, r.loglik, r.D, r.alpha_se, r.lambda_se};
        const long long o[5] = {r.n, r.iterations, r.status, r.error, r.bad_index};
        for (int k = 0; k < 7; ++k) out_f[7 * p + k] = f[k];
        for (int k = 0; k < 5; ++k) out_i[5 * p + k] = o[k];
    }
}

}  // extern "C"
