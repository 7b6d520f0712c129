#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <vector>

#include "bindings.hpp"
#include "hts/norm_metrics.hpp"

namespace py = pybind11;

namespace hts::bindings {

void register_metrics(py::module_& m) {
    m.def(
        "norm_metrics_batch",
        [](const std::vector<InputArray>& spectra, const std::vector<double>& Ns,
           const std::vector<double>& alphas, double tolerance, bool compat, int threads) {
            const std::size_t num = spectra.size();
            if (Ns.size() != num || alphas.size() != num)
                throw py::value_error("one N and one alpha per spectrum are required");
            const SpectraView in = view_of(spectra);
            for (const auto count : in.counts)
                if (count < 1) throw py::value_error("every spectrum needs an eigenvalue");
            NormOptions options;
            options.tolerance = tolerance;
            options.compat = compat;
            std::vector<NormMetrics> out(num);
            {
                // `spectra` keeps every input alive; outputs are plain C++ memory.
                py::gil_scoped_release release;
                norm_metrics_batch(in.pointers.data(), in.counts.data(), Ns.data(),
                                   alphas.data(), static_cast<std::int64_t>(num), options,
                                   out.data(), threads);
            }
            const auto n = static_cast<py::ssize_t>(num);
            py::array_t<double> norm(n), lambda_max(n), entropy(n), alpha_sum(n);
            py::array_t<std::int64_t> rank(n), weak(n);
            for (std::size_t k = 0; k < num; ++k) {
                norm.mutable_data()[k] = out[k].norm;
                lambda_max.mutable_data()[k] = out[k].lambda_max;
                rank.mutable_data()[k] = out[k].matrix_rank;
                weak.mutable_data()[k] = out[k].weak_rank_loss;
                entropy.mutable_data()[k] = out[k].entropy;
                alpha_sum.mutable_data()[k] = out[k].alpha_norm_sum;
            }
            return py::make_tuple(norm, lambda_max, rank, weak, entropy, alpha_sum);
        },
        py::arg("spectra"), py::arg("Ns"), py::arg("alphas"), py::arg("tolerance"),
        py::arg("compat"), py::arg("threads"),
        "Norm metrics of many ascending ESDs: arrays (norm, lambda_max, matrix_rank, "
        "weak_rank_loss, entropy, sum of evals**alpha).");
}

}  // namespace hts::bindings
