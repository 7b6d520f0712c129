#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>

#include "bindings.hpp"
#include "hts/shuffle.hpp"

namespace py = pybind11;

namespace hts::bindings {

void register_shuffle(py::module_& m) {
    m.def(
        "shuffle",
        [](py::array array, std::uint64_t seed) {
            if (!(array.flags() & py::array::c_style) || !array.writeable()) {
                throw py::value_error("shuffle needs a writeable C-contiguous array");
            }
            void* data = array.mutable_data();
            const auto count = static_cast<std::size_t>(array.size());
            const auto item = static_cast<std::size_t>(array.itemsize());
            py::gil_scoped_release release;
            shuffle_inplace(data, count, item, seed);
        },
        py::arg("array"), py::arg("seed"),
        "Shuffle a C-contiguous array's elements in place (cache-blocked, seeded).");
}

}  // namespace hts::bindings
