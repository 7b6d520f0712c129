// The hash and shuffle kernels built apart from hts_fast._core, for tests/test_portable.py:
// compiled there with HTS_MUL128_PORTABLE (the 32-bit-limb 64x64->128 multiply instead of
// unsigned __int128) and HTS_HASH128_SCALAR (the plain loop instead of SSE2), the routes
// that MSVC, 32-bit and non-x86 targets take, and compared with the module's results.
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "hts/hash128.hpp"
#include "hts/mul128.hpp"
#include "hts/shuffle.hpp"

extern "C" {

// out[0], out[1]: the low and high words of a*b.
void driver_mul128(std::uint64_t a, std::uint64_t b, std::uint64_t* out) {
    const hts::U128 p = hts::mul128(a, b);
    out[0] = p.lo;
    out[1] = p.hi;
}

const char* driver_mul128_route() { return hts::mul128_route(); }

void driver_hash128(const unsigned char* data, std::size_t size, unsigned char* out) {
    const auto digest = hts::hash128(data, size);
    std::memcpy(out, digest.data(), digest.size());
}

void driver_shuffle(void* data, std::size_t count, std::size_t item_size, std::uint64_t seed) {
    hts::shuffle_inplace(data, count, item_size, seed);
}

}  // extern "C"
