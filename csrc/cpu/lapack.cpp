#include "hts/lapack.hpp"

#include <stdexcept>

namespace hts {
namespace {
LapackFunctions g_functions;
}

void set_lapack(const LapackFunctions& functions) {
    if (functions.dgesdd == nullptr || functions.dsyevd == nullptr ||
        functions.dsyrk == nullptr)
        throw std::invalid_argument("set_lapack: a LAPACK/BLAS function pointer is null");
    g_functions = functions;
}

bool lapack_ready() {
    return g_functions.dgesdd != nullptr && g_functions.dsyevd != nullptr &&
           g_functions.dsyrk != nullptr;
}

const LapackFunctions& lapack() {
    if (!lapack_ready())
        throw std::runtime_error("hts_fast: LAPACK functions were not registered");
    return g_functions;
}

}  // namespace hts
