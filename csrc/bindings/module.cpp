// The hts_fast._core extension: thin pybind11 wrappers over the kernels in csrc/cpu.
// Validation and documentation live in the Python layer (python/hts_fast).

#include <pybind11/pybind11.h>

#include <thread>

#include "bindings.hpp"
#include "hts/mul128.hpp"

#ifndef HTS_FAST_VERSION
#define HTS_FAST_VERSION "unknown"
#endif
#ifndef HTS_FAST_CXX_FLAGS
#define HTS_FAST_CXX_FLAGS ""
#endif
#ifndef HTS_FAST_BUILD_TYPE
#define HTS_FAST_BUILD_TYPE ""
#endif

// The compiler's own version string (GCC and Clang: __VERSION__; MSVC: its full version).
#define HTS_STRINGIFY_(x) #x
#define HTS_STRINGIFY(x) HTS_STRINGIFY_(x)
#if defined(__VERSION__)
#define HTS_COMPILER __VERSION__
#elif defined(_MSC_FULL_VER)
#define HTS_COMPILER "MSVC " HTS_STRINGIFY(_MSC_FULL_VER)
#else
#define HTS_COMPILER "unknown"
#endif

namespace py = pybind11;

PYBIND11_MODULE(_core, m) {
    m.doc() = "hts_fast compiled kernels (C++, CPU)";
    m.attr("__version__") = HTS_FAST_VERSION;
    m.def("_compile_info", [] {
        py::dict info;
        info["compiler"] = HTS_COMPILER;
        info["cxx_standard"] = static_cast<long>(__cplusplus);
        info["cxx_flags"] = HTS_FAST_CXX_FLAGS;
        info["build_type"] = HTS_FAST_BUILD_TYPE;
        info["hardware_threads"] = static_cast<long>(std::thread::hardware_concurrency());
        info["mul128"] = hts::mul128_route();
        return info;
    }, "Compiler, flags and hardware threads of this build.");
    hts::bindings::register_lapack(m);
    hts::bindings::register_powerlaw(m);
    hts::bindings::register_esd(m);
    hts::bindings::register_tpl(m);
    hts::bindings::register_shuffle(m);
    hts::bindings::register_metrics(m);
    hts::bindings::register_hash(m);
}
