#include "hts/layer_spectra.hpp"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <numeric>

#include "hts/parallel.hpp"

namespace hts {
namespace {

double decomposition_cost(const MatrixView& m) {
    const double big = static_cast<double>(std::max(m.rows, m.cols));
    const double small = static_cast<double>(std::min(m.rows, m.cols));
    return big * small * small;
}

// The per-matrix summaries of values[0, n) (ascending), as metrics.batch_slice_stats
// computes them: sqrt of the ends, and the count of sqrt(v) <= sqrt(top) * N * eps.
void summarize(const double* values, std::int64_t n, double N, LayerSpectrum& out) {
    const double top = std::sqrt(values[n - 1]);
    const double tolerance = top * N * DBL_EPSILON;
    std::int64_t lost = 0;
    for (std::int64_t j = 0; j < n; ++j) lost += std::sqrt(values[j]) <= tolerance ? 1 : 0;
    out.top_sv.push_back(top);
    out.bottom_sv.push_back(std::sqrt(values[0]));
    out.lost.push_back(lost);
}

void one_layer(const MatrixView* matrices, const double* scales, const LayerGroup& g,
               EsdMethod method, const PowerLawOptions& options, LayerSpectrum& out,
               EsdWorkspace& ws) {
    std::int64_t total = 0;
    for (std::int64_t k = 0; k < g.count; ++k) {
        const MatrixView& m = matrices[g.first + k];
        total += std::max<std::int64_t>(0, std::min(m.rows, m.cols));
    }
    out.pooled.assign(static_cast<std::size_t>(total), 0.0);
    std::vector<std::int64_t> lengths;
    std::int64_t offset = 0;
    for (std::int64_t k = 0; k < g.count; ++k) {
        const MatrixView& m = matrices[g.first + k];
        const std::int64_t n = std::max<std::int64_t>(0, std::min(m.rows, m.cols));
        out.esd = esd_into(m, method, scales[g.first + k], out.pooled.data() + offset, ws);
        if (out.esd.error != EsdError::none) {
            out.failed_matrix = g.first + k;
            return;
        }
        lengths.push_back(n);
        offset += n;
    }
    if (g.keep_top < 0) {
        offset = 0;
        for (const std::int64_t n : lengths) {
            if (n > 0) summarize(out.pooled.data() + offset, n, g.N, out);
            offset += n;
        }
    }
    if (g.count > 1) std::sort(out.pooled.begin(), out.pooled.end());
    if (g.keep_top >= 0 && g.keep_top < total)
        out.pooled.erase(out.pooled.begin(), out.pooled.end() - g.keep_top);
    if (g.keep_top >= 0 && !out.pooled.empty())
        summarize(out.pooled.data(), static_cast<std::int64_t>(out.pooled.size()), g.N, out);
    out.fit = fit_powerlaw(out.pooled.data(), static_cast<std::int64_t>(out.pooled.size()),
                           options);
}

}  // namespace

void layer_spectra(const MatrixView* matrices, const double* scales, const LayerGroup* groups,
                   std::int64_t num_groups, EsdMethod method, const PowerLawOptions& options,
                   LayerSpectrum* out, int threads) {
    std::vector<double> cost(static_cast<std::size_t>(num_groups), 0.0);
    for (std::int64_t g = 0; g < num_groups; ++g)
        for (std::int64_t k = 0; k < groups[g].count; ++k)
            cost[static_cast<std::size_t>(g)] += decomposition_cost(matrices[groups[g].first + k]);
    std::vector<std::int64_t> order(static_cast<std::size_t>(num_groups));
    std::iota(order.begin(), order.end(), std::int64_t{0});
    std::stable_sort(order.begin(), order.end(), [&](std::int64_t a, std::int64_t b) {
        return cost[static_cast<std::size_t>(a)] > cost[static_cast<std::size_t>(b)];
    });
    const int workers = static_cast<int>(
        std::min<std::int64_t>(resolve_threads(threads), std::max<std::int64_t>(num_groups, 1)));
    std::vector<EsdWorkspace> workspaces(static_cast<std::size_t>(workers));
    parallel_for(num_groups, workers, [&](std::int64_t item, int worker) {
        const std::int64_t g = order[static_cast<std::size_t>(item)];
        one_layer(matrices, scales, groups[g], method, options, out[g],
                  workspaces[static_cast<std::size_t>(worker)]);
    });
}

}  // namespace hts
