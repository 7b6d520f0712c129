// The CUDA kernels of hts_fast. Compiled by nvcc into hts_cuda_kernels (launch.cu) and, when the
// compiled module is absent, by CuPy's run-time compiler from this same file (hts_fast.gpu), so
// it includes nothing but the HTS_HD math headers and uses extern "C" names.
//
// Power-law fit of a batch of ascending spectra packed end to end (spectrum b occupies
// values[offsets[b] .. offsets[b + 1])), in three launches:
//   hts_pl_prepare    one thread per spectrum: checks, logs, suffix sums, alpha per candidate;
//   hts_pl_distances  one warp per candidate (all spectra at once): its KS distance;
//   hts_pl_select     one block per spectrum: sigma per candidate, first argmin of D, result.
// Per-value workspace arrays ("slots") are indexed like `values`; slot k of spectrum b is the
// candidate xmin = values[k] when it is a fitted value and not the last one.
#pragma once

#include "hts/powerlaw_math.hpp"
#include "hts/tpl_math.hpp"

// Per-spectrum info row (pl::prepare_spectrum).
#define HTS_PL_INFO 6
// Result rows: doubles alpha, xmin, xmax, D, sigma; ints num_pl_spikes, num_fit, xmin_index,
// method, error, bad_index (the field order of hts_fast._core.fit_powerlaw).
#define HTS_PL_OUT_F 5
#define HTS_PL_OUT_I 6
// TPL result rows: doubles alpha, lambda, xmin, loglik, D, alpha_se, lambda_se; ints n,
// iterations, status, error, bad_index.
#define HTS_TPL_OUT_F 7
#define HTS_TPL_OUT_I 5
#define HTS_SELECT_THREADS 256

// Index b with offsets[b] <= slot < offsets[b + 1] (offsets ascending, num + 1 entries).
__device__ inline long long hts_spectrum_of(const long long* offsets, long long num,
                                            long long slot) {
    long long lo = 0, hi = num;  // answer in [lo, hi)
    while (hi - lo > 1) {
        const long long mid = lo + (hi - lo) / 2;
        if (offsets[mid] <= slot) lo = mid;
        else hi = mid;
    }
    return lo;
}

extern "C" __global__ void hts_pl_prepare(const double* values, const long long* offsets,
                                          long long num, double threshold,
                                          long long small_n_cutoff, long long small_n_min_tail,
                                          double* logx, double* alphas, double* ds,
                                          long long* info) {
    for (long long b = blockIdx.x * (long long)blockDim.x + threadIdx.x; b < num;
         b += (long long)gridDim.x * blockDim.x) {
        hts::pl::prepare_spectrum(values, offsets[b], offsets[b + 1], threshold, small_n_cutoff,
                                  small_n_min_tail, logx, alphas, ds, info + b * HTS_PL_INFO);
    }
}

extern "C" __global__ void hts_pl_distances(const double* logx, const long long* offsets,
                                            long long num, const double* alphas, double* ds,
                                            long long total) {
    using namespace hts;
    const long long lane = threadIdx.x & 31;
    const long long warps = ((long long)gridDim.x * blockDim.x) >> 5;
    for (long long k = (blockIdx.x * (long long)blockDim.x + threadIdx.x) >> 5; k < total;
         k += warps) {
        const double alpha = alphas[k];  // NaN outside the candidates
        if (!(alpha > 1.0)) continue;    // the same for every lane of the warp
        const long long end = offsets[hts_spectrum_of(offsets, num, k) + 1];
        const double tail = (double)(end - k);
        const double exponent = 1.0 - alpha;
        double worst = 0.0;
        for (long long j = k + lane; j < end; j += 32)
            worst = hd::max(worst, pl::deviation(logx, k, j, exponent, tail));
        for (int shift = 16; shift > 0; shift >>= 1)
            worst = hd::max(worst, __shfl_down_sync(0xffffffffu, worst, shift));
        if (lane == 0) ds[k] = worst;
    }
}

extern "C" __global__ void hts_pl_select(const double* values, const long long* offsets,
                                         long long num, const long long* info,
                                         const double* alphas, const double* ds,
                                         double* sigmas, double* out_f, long long* out_i) {
    using namespace hts;
    __shared__ double best_d[HTS_SELECT_THREADS];
    __shared__ long long best_k[HTS_SELECT_THREADS];
    for (long long b = blockIdx.x; b < num; b += gridDim.x) {
        const long long off = offsets[b], end = offsets[b + 1];
        const long long* row = info + b * HTS_PL_INFO;
        const long long start = row[0], nf = row[1], error = row[2];
        for (long long k = off + threadIdx.x; k < end; k += blockDim.x) sigmas[k] = hd::nan();
        double d = hd::inf();
        long long at = end;
        if (error == 0) {
            for (long long k = start + threadIdx.x; k < end - 1; k += blockDim.x) {
                sigmas[k] = pl::alpha_sigma(alphas[k], (double)(end - k));
                if (ds[k] < d) {  // k increases: the first minimum of this thread
                    d = ds[k];
                    at = k;
                }
            }
        }
        best_d[threadIdx.x] = d;
        best_k[threadIdx.x] = at;
        __syncthreads();
        for (unsigned half = blockDim.x / 2; half > 0; half >>= 1) {
            if (threadIdx.x < half) {
                const double d2 = best_d[threadIdx.x + half];
                const long long k2 = best_k[threadIdx.x + half];
                if (d2 < best_d[threadIdx.x] ||
                    (d2 == best_d[threadIdx.x] && k2 < best_k[threadIdx.x])) {
                    best_d[threadIdx.x] = d2;
                    best_k[threadIdx.x] = k2;
                }
            }
            __syncthreads();
        }
        if (threadIdx.x == 0) {
            double* f = out_f + b * HTS_PL_OUT_F;
            long long* o = out_i + b * HTS_PL_OUT_I;
            if (error != 0) {
                f[0] = f[1] = f[2] = f[3] = f[4] = -1.0;
                o[0] = -1;
                o[1] = row[5];
                o[2] = -1;
                o[3] = 0;
                o[4] = error;
                o[5] = row[3];
            } else {
                const long long k = best_k[0];
                const double alpha = alphas[k];
                f[0] = alpha;
                f[1] = values[k];
                f[2] = values[end - 1];
                f[3] = best_d[0];
                f[4] = pl::alpha_sigma(alpha, (double)(end - k));
                o[0] = nf - tplhd::lower_bound(values + start, nf, values[k]);
                o[1] = nf;
                o[2] = k - start;
                o[3] = row[4];
                o[4] = 0;
                o[5] = -1;
            }
        }
        __syncthreads();  // the shared arrays are reused for the next spectrum
    }
}

// Fills the Gauss-Legendre table of tpl_math.hpp (one thread).
extern "C" __global__ void hts_tpl_rules(double* table) {
    if (blockIdx.x == 0 && threadIdx.x == 0) hts::tplhd::fill_rule_table(table);
}

// TPL fit at a fixed xmin, one thread per (spectrum, xmin) pair: pair p fits the ascending
// spectrum segment[p] at xmins[p].
extern "C" __global__ void hts_tpl_fit(const double* values, const long long* offsets,
                                       const long long* segment, const double* xmins,
                                       long long num_pairs, const double* rules, double* out_f,
                                       long long* out_i) {
    using namespace hts;
    __shared__ double table[tplhd::kRuleTableSize];
    for (int i = threadIdx.x; i < tplhd::kRuleTableSize; i += blockDim.x) table[i] = rules[i];
    __syncthreads();
    for (long long p = blockIdx.x * (long long)blockDim.x + threadIdx.x; p < num_pairs;
         p += (long long)gridDim.x * blockDim.x) {
        const long long s = segment[p];
        const long long off = offsets[s];
        const tplhd::Result r = tplhd::fit(values + off, offsets[s + 1] - off, xmins[p], table);
        double* f = out_f + p * HTS_TPL_OUT_F;
        long long* o = out_i + p * HTS_TPL_OUT_I;
        f[0] = r.alpha;
        f[1] = r.lambda;
        f[2] = r.xmin;
        f[3] = r.loglik;
        f[4] = r.D;
        f[5] = r.alpha_se;
        f[6] = r.lambda_se;
        o[0] = r.n;
        o[1] = r.iterations;
        o[2] = r.status;
        o[3] = r.error;
        o[4] = r.bad_index;
    }
}
