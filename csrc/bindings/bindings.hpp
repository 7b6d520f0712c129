// Registration functions of the _core submodules (one per kernel area).
#pragma once

#include <pybind11/pybind11.h>

namespace hts::bindings {
void register_lapack(pybind11::module_& m);
void register_powerlaw(pybind11::module_& m);
void register_esd(pybind11::module_& m);
void register_tpl(pybind11::module_& m);
void register_shuffle(pybind11::module_& m);
}  // namespace hts::bindings
