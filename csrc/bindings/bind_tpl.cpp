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

TplSearchOptions search_options(double threshold, double low, double high, double alpha_above,
                                double cdf_xmax, double alpha_min) {
    TplSearchOptions o;
    o.alpha_min = alpha_min;
    o.threshold = threshold;
    o.xmin_low = low;
    o.xmin_high = high;
    o.alpha_above = alpha_above;
    o.cdf_xmax = cdf_xmax;
    return o;
}

py::tuple as_tuple(const TplSearchResult& r) {
    return py::make_tuple(as_tuple(r.fit), r.candidates, r.valid, r.best,
                          static_cast<int>(r.error), r.bad_index);
}

// One column of a curve as a NumPy array.
template <class T, class Field>
py::array_t<T> column(const std::vector<TplFitResult>& curve, Field field) {
    py::array_t<T> out(static_cast<py::ssize_t>(curve.size()));
    T* p = out.mutable_data();
    for (std::size_t k = 0; k < curve.size(); ++k) p[k] = static_cast<T>(field(curve[k]));
    return out;
}

}  // namespace

void register_tpl(py::module_& m) {
    m.def(
        "fit_truncated_powerlaw",
        [](const InputArray& values, double xmin, double alpha_min) {
            const InputArray v = flat(values);
            TplFitResult r;
            {
                // The kernel only reads the array, which `v` keeps alive.
                py::gil_scoped_release release;
                r = fit_truncated_powerlaw(v.data(), v.size(), xmin, alpha_min);
            }
            return as_tuple(r);
        },
        py::arg("values"), py::arg("xmin"), py::arg("alpha_min") = kTplAlphaMin,
        "Truncated power-law MLE of the values >= xmin (alpha >= alpha_min); returns a tuple "
        "of result fields.");

    m.def(
        "fit_truncated_powerlaw_batch",
        [](const std::vector<InputArray>& spectra, const std::vector<double>& xmins,
           int threads, double alpha_min) {
            if (xmins.size() != spectra.size())
                throw py::value_error("one xmin per spectrum is required");
            const SpectraView in = view_of(spectra);
            std::vector<TplFitResult> results(spectra.size());
            {
                // `spectra` keeps every input alive; outputs are plain C++ memory.
                py::gil_scoped_release release;
                fit_truncated_powerlaw_batch(in.pointers.data(), in.counts.data(), xmins.data(),
                                             static_cast<std::int64_t>(spectra.size()),
                                             results.data(), threads, alpha_min);
            }
            py::list out;
            for (const auto& r : results) out.append(as_tuple(r));
            return out;
        },
        py::arg("spectra"), py::arg("xmins"), py::arg("threads"),
        py::arg("alpha_min") = kTplAlphaMin,
        "Truncated power-law MLE of many (values, xmin) pairs in parallel; list of tuples.");

    m.def(
        "fit_truncated_powerlaw_search",
        [](const InputArray& values, double threshold, double low, double high,
           double alpha_above, double cdf_xmax, int threads, double alpha_min) {
            const InputArray v = flat(values);
            const TplSearchOptions o =
                search_options(threshold, low, high, alpha_above, cdf_xmax, alpha_min);
            TplSearchResult r;
            {
                // The kernel only reads the array, which `v` keeps alive.
                py::gil_scoped_release release;
                r = fit_truncated_powerlaw_search(v.data(), v.size(), o, threads);
            }
            return as_tuple(r);
        },
        py::arg("values"), py::arg("threshold"), py::arg("low"), py::arg("high"),
        py::arg("alpha_above"), py::arg("cdf_xmax"), py::arg("threads"),
        py::arg("alpha_min") = kTplAlphaMin,
        "TPL over every xmin candidate; (fit tuple, candidates, valid, best, error, bad_index).");

    m.def(
        "fit_truncated_powerlaw_search_batch",
        [](const std::vector<InputArray>& spectra, double threshold,
           const std::vector<double>& lows, const std::vector<double>& highs,
           double alpha_above, const std::vector<double>& cdf_xmaxs, int threads,
           double alpha_min) {
            if (lows.size() != spectra.size() || highs.size() != spectra.size() ||
                cdf_xmaxs.size() != spectra.size())
                throw py::value_error("one xmin range and cdf_xmax per spectrum is required");
            const SpectraView in = view_of(spectra);
            std::vector<TplSearchOptions> options;
            for (std::size_t k = 0; k < spectra.size(); ++k)
                options.push_back(
                    search_options(threshold, lows[k], highs[k], alpha_above, cdf_xmaxs[k],
                                   alpha_min));
            std::vector<TplSearchResult> results(spectra.size());
            {
                // `spectra` keeps every input alive; outputs are plain C++ memory.
                py::gil_scoped_release release;
                fit_truncated_powerlaw_search_batch(in.pointers.data(), in.counts.data(),
                                                    options.data(),
                                                    static_cast<std::int64_t>(spectra.size()),
                                                    results.data(), threads);
            }
            py::list out;
            for (const auto& r : results) out.append(as_tuple(r));
            return out;
        },
        py::arg("spectra"), py::arg("threshold"), py::arg("lows"), py::arg("highs"),
        py::arg("alpha_above"), py::arg("cdf_xmaxs"), py::arg("threads"),
        py::arg("alpha_min") = kTplAlphaMin,
        "The TPL xmin search of many spectra in parallel; list of search tuples.");

    m.def(
        "truncated_powerlaw_curve",
        [](const InputArray& values, double threshold, double low, double high,
           double alpha_above, double cdf_xmax, int threads, double alpha_min) {
            const InputArray v = flat(values);
            const TplSearchOptions o =
                search_options(threshold, low, high, alpha_above, cdf_xmax, alpha_min);
            TplSearchResult r;
            std::vector<TplFitResult> curve;
            {
                py::gil_scoped_release release;
                r = truncated_powerlaw_curve(v.data(), v.size(), o, curve, threads);
            }
            py::dict columns;
            columns["xmin"] = column<double>(curve, [](const auto& f) { return f.xmin; });
            columns["alpha"] = column<double>(curve, [](const auto& f) { return f.alpha; });
            columns["Lambda"] = column<double>(curve, [](const auto& f) { return f.lambda; });
            columns["D"] = column<double>(curve, [](const auto& f) { return f.D; });
            columns["loglik"] = column<double>(curve, [](const auto& f) { return f.loglik; });
            columns["alpha_se"] = column<double>(curve, [](const auto& f) { return f.alpha_se; });
            columns["Lambda_se"] =
                column<double>(curve, [](const auto& f) { return f.lambda_se; });
            columns["n"] = column<std::int64_t>(curve, [](const auto& f) { return f.n; });
            columns["status"] = column<std::int32_t>(
                curve, [](const auto& f) { return static_cast<int>(f.status); });
            return py::make_tuple(as_tuple(r), columns);
        },
        py::arg("values"), py::arg("threshold"), py::arg("low"), py::arg("high"),
        py::arg("alpha_above"), py::arg("cdf_xmax"), py::arg("threads"),
        py::arg("alpha_min") = kTplAlphaMin,
        "Every candidate's TPL fit: (search tuple, dict of per-candidate columns).");

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
