// Registration functions of the _core submodules (one per kernel area), and the input
// handling the spectrum bindings share.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <vector>

#include "hts/powerlaw.hpp"

namespace hts::bindings {
void register_lapack(pybind11::module_& m);
void register_powerlaw(pybind11::module_& m);
void register_esd(pybind11::module_& m);
void register_tpl(pybind11::module_& m);
void register_shuffle(pybind11::module_& m);
void register_metrics(pybind11::module_& m);
void register_hash(pybind11::module_& m);

// A spectrum as the fit kernels read it: contiguous float64 (converted if needed).
using InputArray = pybind11::array_t<double, pybind11::array::c_style | pybind11::array::forcecast>;

// `a` itself, after checking it is 1-D.
inline InputArray flat(const InputArray& a) {
    if (a.ndim() != 1) throw pybind11::value_error("expected a 1-D array of eigenvalues");
    return a;
}

// The data pointers and lengths of 1-D spectra, for the batch kernels (the arrays in
// `spectra` must outlive their use).
struct SpectraView {
    std::vector<const double*> pointers;
    std::vector<std::int64_t> counts;
};

inline SpectraView view_of(const std::vector<InputArray>& spectra) {
    SpectraView v;
    for (const auto& a : spectra) {
        flat(a);
        v.pointers.push_back(a.data());
        v.counts.push_back(a.size());
    }
    return v;
}

inline PowerLawOptions make_options(double threshold, std::int64_t small_n_cutoff,
                                    std::int64_t small_n_min_tail) {
    PowerLawOptions o;
    o.threshold = threshold;
    o.small_n_cutoff = small_n_cutoff;
    o.small_n_min_tail = small_n_min_tail;
    return o;
}

// A fit result as the tuple hts_fast.fits.powerlaw reads (field order of fit_from_fields).
inline pybind11::tuple as_tuple(const PowerLawFitResult& r) {
    return pybind11::make_tuple(r.alpha, r.xmin, r.xmax, r.D, r.sigma, r.num_pl_spikes,
                                r.num_fit, r.xmin_index, static_cast<int>(r.method),
                                static_cast<int>(r.error), r.bad_index);
}
}  // namespace hts::bindings
