#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <vector>

#include "bindings.hpp"
#include "hts/special.hpp"
#include "hts/tpl.hpp"

namespace py = pybind11;

namespace hts::bindings {
namespace {

py::tuple as_tuple(const TplFitResult& r) {
    return py::make_tuple(r.alpha, r.lambda, r.xmin, r.loglik, r.D, r.alpha_se, r.lambda_se,
                          r.n, r.iterations, static_cast<int>(r.status),
                          static_cast<int>(r.error), r.bad_index);
}

}  // namespace

void register_tpl(py::module_& m) {
    m.def(
        "fit_truncated_powerlaw",
        [](const InputArray& values, double xmin) {
            const InputArray v = flat(values);
            TplFitResult r;
            {
                // The kernel only reads the array, which `v` keeps alive.
                py::gil_scoped_release release;
                r = fit_truncated_powerlaw(v.data(), v.size(), xmin);
            }
            return as_tuple(r);
        },
        py::arg("values"), py::arg("xmin"),
        "Truncated power-law MLE of the values >= xmin; returns a tuple of result fields.");

    m.def(
        "fit_truncated_powerlaw_batch",
        [](const std::vector<InputArray>& spectra, const std::vector<double>& xmins,
           int threads) {
            if (xmins.size() != spectra.size())
                throw py::value_error("one xmin per spectrum is required");
            const SpectraView in = view_of(spectra);
            std::vector<TplFitResult> results(spectra.size());
            {
                // `spectra` keeps every input alive; outputs are plain C++ memory.
                py::gil_scoped_release release;
                fit_truncated_powerlaw_batch(in.pointers.data(), in.counts.data(), xmins.data(),
                                             static_cast<std::int64_t>(spectra.size()),
                                             results.data(), threads);
            }
            py::list out;
            for (const auto& r : results) out.append(as_tuple(r));
            return out;
        },
        py::arg("spectra"), py::arg("xmins"), py::arg("threads"),
        "Truncated power-law MLE of many (values, xmin) pairs in parallel; list of tuples.");

    m.def(
        "_log_upper_gamma",
        [](const InputArray& s, const InputArray& x) {
            const InputArray sv = flat(s);
            const InputArray xv = flat(x);
            if (sv.size() != xv.size()) throw py::value_error("s and x must have equal length");
            const py::ssize_t n = sv.size();
            py::array_t<double> value(n), d_s(n), d2_s(n), d_x(n);
            const double* ps = sv.data();
            const double* px = xv.data();
            double* out[4] = {value.mutable_data(), d_s.mutable_data(), d2_s.mutable_data(),
                              d_x.mutable_data()};
            {
                // Plain memory only: inputs held by sv/xv, outputs by the arrays above.
                py::gil_scoped_release release;
                for (py::ssize_t k = 0; k < n; ++k) {
                    const LogUpperGamma g = log_upper_gamma_derivatives(ps[k], px[k]);
                    out[0][k] = g.value;
                    out[1][k] = g.d_s;
                    out[2][k] = g.d2_s;
                    out[3][k] = g.d_x;
                }
            }
            return py::make_tuple(value, d_s, d2_s, d_x);
        },
        py::arg("s"), py::arg("x"),
        "Test hook: ln Γ(s, x) (upper, unregularised) and d/ds, d²/ds², d/dx of it.");
}

}  // namespace hts::bindings
