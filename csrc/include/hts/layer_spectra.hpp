// A layer's whole numeric path in one task: the ESDs of its matrices, pooled and sorted,
// per-matrix singular-value summaries, and the power-law fit of the pooled ESD. Running it
// per layer inside the ESD thread pool lets the fits of finished layers overlap the
// decompositions of the others, instead of a separate pass after all of them.
#pragma once

#include <cstdint>
#include <vector>

#include "hts/esd.hpp"
#include "hts/norm_metrics.hpp"
#include "hts/powerlaw.hpp"

namespace hts {

// The matrices [first, first + count) of the batch form one layer.
struct LayerGroup {
    std::int64_t first = 0;
    std::int64_t count = 0;
    std::int64_t keep_top = -1;  // keep only this many largest pooled eigenvalues (-1: all)
    double N = 0.0;              // the layer's N, for the rank-loss tolerance
};

struct LayerSpectrum {
    std::vector<double> pooled;  // ascending
    // Over the layer's matrices (the kept top counts as one): the largest singular value;
    // the smallest and the largest of their smallest singular values (WeightWatcher reports
    // the latter as sv_min); and the sum of their rank losses, a matrix's rank loss being
    // how many of its singular values are <= its largest * N * eps. Singular values are
    // the square roots of the eigenvalues.
    double sv_max = 0.0;
    double sv_min_smallest = 0.0;
    double sv_min_largest = 0.0;
    std::int64_t rank_loss = 0;
    EsdResult esd;                   // the first failing matrix's error, if any
    std::int64_t failed_matrix = -1;  // its index in the batch (-1: none)
    PowerLawFitResult fit;            // of `pooled`; not computed when a matrix failed
    // of `pooled`, with the fitted alpha (NaN, or -1 in compat mode, when the fit failed)
    NormMetrics norms;
};

// Every layer of `groups`, spread over `threads` threads, the most expensive layers first;
// each layer is handled by one thread, so results do not depend on the thread count. The
// ESDs equal esd_batch's, the fits fit_powerlaw's of the pooled ESD.
void layer_spectra(const MatrixView* matrices, const double* scales, const LayerGroup* groups,
                   std::int64_t num_groups, EsdMethod method, const PowerLawOptions& options,
                   const NormOptions& norm_options, LayerSpectrum* out, int threads);

}  // namespace hts
