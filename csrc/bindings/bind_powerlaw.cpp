#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <vector>

#include "bindings.hpp"
#include "hts/exponential.hpp"
#include "hts/powerlaw.hpp"

namespace py = pybind11;

namespace hts::bindings {
namespace {

}  // namespace

void register_powerlaw(py::module_& m) {
    m.def(
        "fit_powerlaw",
        [](const InputArray& values, double threshold, std::int64_t small_n_cutoff,
           std::int64_t small_n_min_tail) {
            const InputArray v = flat(values);
            const PowerLawOptions o = make_options(threshold, small_n_cutoff, small_n_min_tail);
            PowerLawFitResult r;
            {
                // The kernel only reads the array, which `v` keeps alive.
                py::gil_scoped_release release;
                r = fit_powerlaw(v.data(), v.size(), o);
            }
            return as_tuple(r);
        },
        py::arg("values"), py::arg("threshold"), py::arg("small_n_cutoff"),
        py::arg("small_n_min_tail"), "Fit one spectrum; returns a tuple of result fields.");

    m.def(
        "fit_powerlaw_batch",
        [](const std::vector<InputArray>& spectra, double threshold,
           std::int64_t small_n_cutoff, std::int64_t small_n_min_tail, int threads) {
            const SpectraView in = view_of(spectra);
            std::vector<PowerLawFitResult> results(spectra.size());
            const PowerLawOptions o = make_options(threshold, small_n_cutoff, small_n_min_tail);
            {
                // `spectra` keeps every input alive; outputs are plain C++ memory.
                py::gil_scoped_release release;
                fit_powerlaw_batch(in.pointers.data(), in.counts.data(),
                                   static_cast<std::int64_t>(spectra.size()), o, results.data(),
                                   threads);
            }
            py::list out;
            for (const auto& r : results) out.append(as_tuple(r));
            return out;
        },
        py::arg("spectra"), py::arg("threshold"), py::arg("small_n_cutoff"),
        py::arg("small_n_min_tail"), py::arg("threads"),
        "Fit many spectra in parallel; returns a list of result tuples.");

    m.def(
        "fit_exponential_batch",
        [](const std::vector<InputArray>& spectra, double threshold, int threads) {
            const SpectraView in = view_of(spectra);
            std::vector<ExponentialFitResult> results(spectra.size());
            {
                py::gil_scoped_release release;  // `spectra` keeps every input alive
                fit_exponential_batch(in.pointers.data(), in.counts.data(),
                                      static_cast<std::int64_t>(spectra.size()), threshold,
                                      results.data(), threads);
            }
            py::list out;
            for (const auto& r : results)
                out.append(py::make_tuple(r.lambda, r.xmin, r.D, r.n, r.xmin_index, r.num_fit));
            return out;
        },
        py::arg("spectra"), py::arg("threshold"), py::arg("threads"),
        "Exponential tail fits of ascending spectra: list of (lambda, xmin, D, n, xmin_index, "
        "num_fit); xmin_index -1 when the fit failed.");

    m.def(
        "powerlaw_curve",
        [](const InputArray& values, double threshold, std::int64_t small_n_cutoff,
           std::int64_t small_n_min_tail, int threads) {
            const InputArray v = flat(values);
            const PowerLawOptions o = make_options(threshold, small_n_cutoff, small_n_min_tail);
            PowerLawCurve curve;
            PowerLawFitResult r;
            {
                py::gil_scoped_release release;
                r = powerlaw_curve(v.data(), v.size(), o, curve, threads);
            }
            return py::make_tuple(as_tuple(r), py::array_t<double>(py::cast(curve.xmins)),
                                  py::array_t<double>(py::cast(curve.alphas)),
                                  py::array_t<double>(py::cast(curve.Ds)),
                                  py::array_t<double>(py::cast(curve.sigmas)));
        },
        py::arg("values"), py::arg("threshold"), py::arg("small_n_cutoff"),
        py::arg("small_n_min_tail"), py::arg("threads"),
        "Full xmin scan: (result tuple, xmins, alphas, Ds, sigmas).");
}

}  // namespace hts::bindings
