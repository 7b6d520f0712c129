#include "hts/layer_spectra.hpp"

#include <algorithm>
#include <atomic>
#include <memory>
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

// Adds one matrix's ascending eigenvalues values[0, n) to the layer's singular-value
// summaries, as metrics.batch_slice_stats computes them: sqrt of the ends, and the count of
// sqrt(v) <= sqrt(top) * N * eps. `first`: whether it is the layer's first matrix.
void summarize(const double* values, std::int64_t n, double N, bool first, LayerSpectrum& out) {
    const double top = std::sqrt(values[n - 1]);
    const double bottom = std::sqrt(values[0]);
    const double tolerance = top * N * DBL_EPSILON;
    // the values are ascending, so the lost ones are a prefix: a binary search
    const std::int64_t lost =
        std::partition_point(values, values + n,
                             [&](double v) { return std::sqrt(v) <= tolerance; }) -
        values;
    out.sv_max = first ? top : std::max(out.sv_max, top);
    out.sv_min_smallest = first ? bottom : std::min(out.sv_min_smallest, bottom);
    out.sv_min_largest = first ? bottom : std::max(out.sv_min_largest, bottom);
    out.rank_loss += lost;
}

// Sorts `pooled`, the concatenation of `count` ascending runs of the given lengths, by
// merging the runs pairwise (the same values in the same order as a full sort).
void merge_runs(std::vector<double>& pooled, const std::int64_t* lengths, std::int64_t count) {
    std::vector<std::int64_t> bounds(static_cast<std::size_t>(count + 1), 0);
    for (std::int64_t k = 0; k < count; ++k)
        bounds[static_cast<std::size_t>(k + 1)] = bounds[static_cast<std::size_t>(k)] + lengths[k];
    for (std::int64_t width = 1; width < count; width *= 2) {
        for (std::int64_t k = 0; k + width < count; k += 2 * width) {
            const auto first = pooled.begin() + bounds[static_cast<std::size_t>(k)];
            const auto middle = pooled.begin() + bounds[static_cast<std::size_t>(k + width)];
            const auto last =
                pooled.begin() + bounds[static_cast<std::size_t>(std::min(k + 2 * width, count))];
            std::inplace_merge(first, middle, last);
        }
    }
}

// Pools, summarizes and fits a layer whose matrices' ESDs all sit in out.pooled (in matrix
// order); `results` are its matrices' decomposition results.
void finish_layer(const LayerGroup& g, const std::int64_t* lengths, const EsdResult* results,
                  const PowerLawOptions& options, const NormOptions& norm_options,
                  LayerSpectrum& out) {
    for (std::int64_t k = 0; k < g.count; ++k) {
        if (results[k].error != EsdError::none) {  // the first failing matrix, by index
            out.esd = results[k];
            out.failed_matrix = g.first + k;
            return;
        }
    }
    const auto total = static_cast<std::int64_t>(out.pooled.size());
    if (g.keep_top < 0) {
        std::int64_t offset = 0;
        bool first = true;
        for (std::int64_t k = 0; k < g.count; ++k) {
            if (lengths[k] > 0) {
                summarize(out.pooled.data() + offset, lengths[k], g.N, first, out);
                first = false;
            }
            offset += lengths[k];
        }
    }
    if (g.count > 1) merge_runs(out.pooled, lengths, g.count);
    if (g.keep_top >= 0 && g.keep_top < total)
        out.pooled.erase(out.pooled.begin(), out.pooled.end() - g.keep_top);
    if (g.keep_top >= 0 && !out.pooled.empty())
        summarize(out.pooled.data(), static_cast<std::int64_t>(out.pooled.size()), g.N, true,
                  out);
    const auto n = static_cast<std::int64_t>(out.pooled.size());
    std::vector<double> logs;  // of the fitted values: the largest ones, as pooled is sorted
    out.fit = fit_powerlaw(out.pooled.data(), n, options, &logs);
    if (n == 0) return;
    // the alpha of the table's alpha column: WeightWatcher's -1 for a failed fit in compat
    // mode, NaN by default
    const bool fitted = out.fit.error == FitError::none;
    const double alpha = fitted ? out.fit.alpha : norm_options.compat ? -1.0 : std::nan("");
    out.norms = norm_metrics(out.pooled.data(), n, g.N, alpha, norm_options, logs.data(),
                             static_cast<std::int64_t>(logs.size()));
}

}  // namespace

void layer_spectra(const MatrixView* matrices, const double* scales, const LayerGroup* groups,
                   std::int64_t num_groups, EsdMethod method, const PowerLawOptions& options,
                   const NormOptions& norm_options, LayerSpectrum* out, int threads) {
    // Matrices are decomposed one per task, the most expensive first (as esd_batch), each
    // into its place in its layer's buffer; whichever thread finishes a layer's last matrix
    // pools and fits that layer. Every step of a layer is a pure function of its own inputs,
    // so results do not depend on the thread count or the order of completion.
    std::vector<std::int64_t> group_of, offset_of, lengths;
    for (std::int64_t g = 0; g < num_groups; ++g) {
        std::int64_t total = 0;
        for (std::int64_t k = 0; k < groups[g].count; ++k) {
            const MatrixView& m = matrices[groups[g].first + k];
            const std::int64_t n = std::max<std::int64_t>(0, std::min(m.rows, m.cols));
            group_of.push_back(g);
            offset_of.push_back(total);
            lengths.push_back(n);
            total += n;
        }
        out[g].pooled.assign(static_cast<std::size_t>(total), 0.0);
    }
    const auto num_tasks = static_cast<std::int64_t>(group_of.size());
    std::vector<std::int64_t> first_task(static_cast<std::size_t>(num_groups), 0);
    for (std::int64_t g = 1; g < num_groups; ++g)
        first_task[static_cast<std::size_t>(g)] =
            first_task[static_cast<std::size_t>(g - 1)] + groups[g - 1].count;
    std::vector<double> cost(static_cast<std::size_t>(num_tasks));
    for (std::int64_t t = 0; t < num_tasks; ++t) {
        const LayerGroup& g = groups[group_of[static_cast<std::size_t>(t)]];
        const std::int64_t k = t - first_task[static_cast<std::size_t>(group_of[static_cast<std::size_t>(t)])];
        cost[static_cast<std::size_t>(t)] = decomposition_cost(matrices[g.first + k]);
    }
    std::vector<std::int64_t> order(static_cast<std::size_t>(num_tasks));
    std::iota(order.begin(), order.end(), std::int64_t{0});
    std::stable_sort(order.begin(), order.end(), [&](std::int64_t a, std::int64_t b) {
        return cost[static_cast<std::size_t>(a)] > cost[static_cast<std::size_t>(b)];
    });
    std::vector<EsdResult> results(static_cast<std::size_t>(num_tasks));
    std::unique_ptr<std::atomic<std::int64_t>[]> remaining(
        new std::atomic<std::int64_t>[static_cast<std::size_t>(num_groups)]);
    for (std::int64_t g = 0; g < num_groups; ++g) remaining[static_cast<std::size_t>(g)] = groups[g].count;
    const int workers = static_cast<int>(
        std::min<std::int64_t>(resolve_threads(threads), std::max<std::int64_t>(num_tasks, 1)));
    std::vector<EsdWorkspace> workspaces(static_cast<std::size_t>(workers));
    parallel_for(num_tasks, workers, [&](std::int64_t item, int worker) {
        const std::int64_t t = order[static_cast<std::size_t>(item)];
        const auto ut = static_cast<std::size_t>(t);
        const std::int64_t g = group_of[ut];
        const std::int64_t k = t - first_task[static_cast<std::size_t>(g)];
        LayerSpectrum& layer = out[g];
        results[ut] = esd_into(matrices[groups[g].first + k], method, scales[groups[g].first + k],
                               layer.pooled.data() + offset_of[ut],
                               workspaces[static_cast<std::size_t>(worker)]);
        // acq_rel: the thread that finishes the layer sees every other matrix's values
        if (remaining[static_cast<std::size_t>(g)].fetch_sub(1, std::memory_order_acq_rel) == 1) {
            const std::size_t f = static_cast<std::size_t>(first_task[static_cast<std::size_t>(g)]);
            finish_layer(groups[g], lengths.data() + f, results.data() + f, options, norm_options,
                         layer);
        }
    });
}

}  // namespace hts
