#include <pybind11/pybind11.h>

#include <cstdint>
#include <stdexcept>

#include "bindings.hpp"
#include "hts/lapack.hpp"

namespace py = pybind11;

namespace hts::bindings {
namespace {

void* capsule_pointer(const py::object& capsule, const char* what) {
    PyObject* raw = capsule.ptr();
    if (!PyCapsule_CheckExact(raw))
        throw py::type_error(std::string("expected a PyCapsule for ") + what);
    void* pointer = PyCapsule_GetPointer(raw, PyCapsule_GetName(raw));
    if (pointer == nullptr) throw py::error_already_set();
    return pointer;
}

}  // namespace

void register_lapack(py::module_& m) {
    m.def(
        "_register_lapack",
        [](const py::object& dgesdd, const py::object& dsyevd, const py::object& dsyrk,
           std::uintptr_t dsyevd_2stage, const py::object& ssyrk) {
            LapackFunctions f;
            f.dgesdd = reinterpret_cast<dgesdd_fn>(capsule_pointer(dgesdd, "dgesdd"));
            f.dsyevd = reinterpret_cast<dsyevd_fn>(capsule_pointer(dsyevd, "dsyevd"));
            f.dsyrk = reinterpret_cast<dsyrk_fn>(capsule_pointer(dsyrk, "dsyrk"));
            f.dsyevd_2stage = reinterpret_cast<dsyevd_2stage_fn>(dsyevd_2stage);
            if (!ssyrk.is_none())
                f.ssyrk = reinterpret_cast<ssyrk_fn>(capsule_pointer(ssyrk, "ssyrk"));

            set_lapack(f);
        },
        py::arg("dgesdd"), py::arg("dsyevd"), py::arg("dsyrk"), py::arg("dsyevd_2stage") = 0,
        py::arg("ssyrk") = py::none(),
        "Install SciPy's LAPACK/BLAS function pointers (capsules from cython_lapack/blas) "
        "and, optionally, the address of the dsyevd_2stage symbol (0: none) and ssyrk "
        "(None: none), which enables the float32 Gram route.");
    m.def("_two_stage_ready", [] { return lapack_ready() && lapack().dsyevd_2stage != nullptr; },
          "Whether large symmetric eigensolves use dsyevd_2stage.");
    m.def("_lapack_ready", &lapack_ready, "Whether LAPACK functions are installed.");
    m.def("_float32_ready",
          [] { return lapack_ready() && lapack().ssyrk != nullptr; },
          "Whether the float32 Gram route (ssyrk) is installed.");
}

}  // namespace hts::bindings
