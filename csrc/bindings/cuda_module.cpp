// hts_fast._cuda: bindings of the CUDA kernels (csrc/cuda). Arrays arrive as raw device
// addresses: hts_fast.gpu validates them (device, dtype, contiguity) and allocates every
// output with the caller's array library, so nothing is copied between host and device here.
#include <pybind11/pybind11.h>

#include <cstdint>
#include <stdexcept>

#include "hts/cuda.hpp"

namespace py = pybind11;

namespace {

template <class T>
T* ptr(std::uintptr_t address) {
    return reinterpret_cast<T*>(address);
}

}  // namespace

PYBIND11_MODULE(_cuda, m) {
    m.doc() = "hts_fast CUDA kernels (use hts_fast.gpu)";
    py::register_exception<hts::cuda::CudaError>(m, "CudaError", PyExc_RuntimeError);

    m.def(
        "fit_powerlaw_batch",
        [](std::uintptr_t values, std::uintptr_t offsets, long long num_spectra,
           long long total, double threshold, long long small_n_cutoff,
           long long small_n_min_tail, std::uintptr_t logx, std::uintptr_t alphas,
           std::uintptr_t ds, std::uintptr_t sigmas, std::uintptr_t info, std::uintptr_t out_f,
           std::uintptr_t out_i, std::uintptr_t stream) {
            hts::cuda::PowerLawBatch b;
            b.values = ptr<const double>(values);
            b.offsets = ptr<const long long>(offsets);
            b.num_spectra = num_spectra;
            b.total = total;
            b.threshold = threshold;
            b.small_n_cutoff = small_n_cutoff;
            b.small_n_min_tail = small_n_min_tail;
            b.logx = ptr<double>(logx);
            b.alphas = ptr<double>(alphas);
            b.ds = ptr<double>(ds);
            b.sigmas = ptr<double>(sigmas);
            b.info = ptr<long long>(info);
            b.out_f = ptr<double>(out_f);
            b.out_i = ptr<long long>(out_i);
            // Device memory only: the caller's arrays stay alive for the whole call.
            py::gil_scoped_release release;
            hts::cuda::fit_powerlaw_batch(b, stream);
        },
        py::arg("values"), py::arg("offsets"), py::arg("num_spectra"), py::arg("total"),
        py::arg("threshold"), py::arg("small_n_cutoff"), py::arg("small_n_min_tail"),
        py::arg("logx"), py::arg("alphas"), py::arg("ds"), py::arg("sigmas"), py::arg("info"),
        py::arg("out_f"), py::arg("out_i"), py::arg("stream"),
        "Power-law fit of packed ascending spectra (device addresses).");

    m.def(
        "fit_tpl_batch",
        [](std::uintptr_t values, std::uintptr_t offsets, long long num_spectra,
           std::uintptr_t segment, std::uintptr_t xmins, long long num_pairs,
           std::uintptr_t rules, std::uintptr_t out_f, std::uintptr_t out_i,
           std::uintptr_t stream) {
            hts::cuda::TplBatch b;
            b.values = ptr<const double>(values);
            b.offsets = ptr<const long long>(offsets);
            b.num_spectra = num_spectra;
            b.segment = ptr<const long long>(segment);
            b.xmins = ptr<const double>(xmins);
            b.num_pairs = num_pairs;
            b.rules = ptr<double>(rules);
            b.out_f = ptr<double>(out_f);
            b.out_i = ptr<long long>(out_i);
            py::gil_scoped_release release;  // as above
            hts::cuda::fit_tpl_batch(b, stream);
        },
        py::arg("values"), py::arg("offsets"), py::arg("num_spectra"), py::arg("segment"),
        py::arg("xmins"), py::arg("num_pairs"), py::arg("rules"), py::arg("out_f"),
        py::arg("out_i"), py::arg("stream"),
        "TPL fits at fixed xmin of (spectrum, xmin) pairs (device addresses).");

    m.def("device_count", &hts::cuda::device_count, "Visible CUDA devices (0 without a driver).");
    m.def("device_error", &hts::cuda::device_error, "Why device_count() is 0 ('' otherwise).");
    m.def("runtime_version", &hts::cuda::runtime_version, "CUDART_VERSION built against.");
    m.def("driver_version", &hts::cuda::driver_version, "CUDA driver version (0: none).");
#ifdef HTS_FAST_CUDA_ARCHITECTURES
    m.attr("cuda_architectures") = HTS_FAST_CUDA_ARCHITECTURES;
#endif
}
