#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <string>
#include <vector>

#include "bindings.hpp"
#include "hts/esd.hpp"

namespace py = pybind11;

namespace hts::bindings {
namespace {

MatrixView view_of(const py::array& a) {
    if (a.ndim() != 2) throw py::value_error("expected a 2-D matrix");
    const py::dtype dt = a.dtype();
    if (dt.kind() != 'f') throw py::type_error("expected a floating-point matrix");
    if (dt.byteorder() == '>' || dt.byteorder() == '<') {
        const std::uint16_t probe = 1;
        const bool little = *reinterpret_cast<const unsigned char*>(&probe) == 1;
        if ((dt.byteorder() == '<') != little)
            throw py::value_error("matrix has non-native byte order; convert it first");
    }
    MatrixView v;
    switch (dt.itemsize()) {
        case 2: v.type = ScalarType::float16; break;
        case 4: v.type = ScalarType::float32; break;
        case 8: v.type = ScalarType::float64; break;
        default: throw py::type_error("unsupported floating-point width");
    }
    const auto item = static_cast<py::ssize_t>(dt.itemsize());
    if (a.strides(0) % item != 0 || a.strides(1) % item != 0)
        throw py::value_error("matrix strides are not a multiple of the item size");
    v.data = a.data();
    v.rows = a.shape(0);
    v.cols = a.shape(1);
    v.row_stride = a.strides(0) / item;
    v.col_stride = a.strides(1) / item;
    return v;
}

}  // namespace

void register_esd(py::module_& m) {
    m.def(
        "esd_batch",
        [](const std::vector<py::array>& matrices, int method, const std::vector<double>& scales,
           int threads) {
            if (scales.size() != matrices.size())
                throw py::value_error("one scale per matrix is required");
            const std::size_t count = matrices.size();
            std::vector<MatrixView> views;
            std::vector<py::array_t<double>> outputs;
            std::vector<double*> out_pointers;
            for (const auto& a : matrices) {
                views.push_back(view_of(a));
                const auto k = std::max<std::int64_t>(
                    0, std::min(views.back().rows, views.back().cols));
                outputs.emplace_back(static_cast<py::ssize_t>(k));
                out_pointers.push_back(outputs.back().mutable_data());
            }
            std::vector<EsdResult> results(count);
            {
                // Inputs are kept alive by `matrices`, outputs by `outputs`; the kernels touch
                // no Python object.
                py::gil_scoped_release release;
                esd_batch(views.data(), static_cast<std::int64_t>(count),
                          static_cast<EsdMethod>(method), scales.data(), out_pointers.data(),
                          results.data(), threads);
            }
            py::list out;
            for (std::size_t k = 0; k < count; ++k)
                out.append(py::make_tuple(outputs[k], static_cast<int>(results[k].error),
                                          results[k].info));
            return out;
        },
        py::arg("matrices"), py::arg("method"), py::arg("scales"), py::arg("threads"),
        "ESDs of many matrices: list of (eigenvalues, error code, LAPACK info).");

    m.def(
        "_half_to_double",
        [](const py::array_t<std::uint16_t, py::array::c_style | py::array::forcecast>& bits) {
            py::array_t<double> out(bits.size());
            auto* o = out.mutable_data();
            const auto* b = bits.data();
            for (py::ssize_t k = 0; k < bits.size(); ++k) o[k] = half_to_double(b[k]);
            return out;
        },
        "Test hook: float16 bit patterns -> float64 with the kernel's converter.");
}

}  // namespace hts::bindings
