// The full 128-bit product of two 64-bit unsigned integers, on every compiler.
//
// GCC and Clang have `unsigned __int128` on 64-bit targets; MSVC has the `_umul128` (x64) and
// `__umulh` (ARM64) intrinsics; anything else gets four 32x32->64 products. All routes give
// the same two words (the tests compare the portable one, forced by defining
// HTS_MUL128_PORTABLE, with Python's integers and with the native route).
#pragma once

#include <cstdint>

#if !defined(HTS_MUL128_PORTABLE) && defined(_MSC_VER) && !defined(__clang__) && \
    (defined(_M_X64) || defined(_M_ARM64))
#include <intrin.h>
#endif

namespace hts {

struct U128 {
    std::uint64_t lo;
    std::uint64_t hi;
};

// Schoolbook multiplication on 32-bit limbs: a = a1·2^32 + a0, b = b1·2^32 + b0.
inline U128 mul128_portable(std::uint64_t a, std::uint64_t b) {
    constexpr std::uint64_t kLow32 = 0xFFFFFFFFULL;
    const std::uint64_t a0 = a & kLow32, a1 = a >> 32;
    const std::uint64_t b0 = b & kLow32, b1 = b >> 32;
    const std::uint64_t p00 = a0 * b0;
    const std::uint64_t p01 = a0 * b1;
    const std::uint64_t p10 = a1 * b0;
    const std::uint64_t p11 = a1 * b1;
    // the middle column: each term < 2^32, so the sum < 3·2^32 cannot overflow
    const std::uint64_t middle = (p00 >> 32) + (p01 & kLow32) + (p10 & kLow32);
    return U128{(middle << 32) | (p00 & kLow32), p11 + (p01 >> 32) + (p10 >> 32) + (middle >> 32)};
}

// The product by the fastest route this compiler offers.
inline U128 mul128(std::uint64_t a, std::uint64_t b) {
#if defined(HTS_MUL128_PORTABLE)
    return mul128_portable(a, b);
#elif defined(__SIZEOF_INT128__)
    __extension__ typedef unsigned __int128 u128;  // __extension__: no -Wpedantic warning
    const u128 product = static_cast<u128>(a) * b;
    return U128{static_cast<std::uint64_t>(product), static_cast<std::uint64_t>(product >> 64)};
#elif defined(_MSC_VER) && !defined(__clang__) && defined(_M_X64)
    U128 r;
    r.lo = _umul128(a, b, &r.hi);
    return r;
#elif defined(_MSC_VER) && !defined(__clang__) && defined(_M_ARM64)
    return U128{a * b, __umulh(a, b)};
#else
    return mul128_portable(a, b);
#endif
}

// Which route mul128 takes in this build: "int128", "umul128", "umulh" or "portable".
inline const char* mul128_route() {
#if defined(HTS_MUL128_PORTABLE)
    return "portable";
#elif defined(__SIZEOF_INT128__)
    return "int128";
#elif defined(_MSC_VER) && !defined(__clang__) && defined(_M_X64)
    return "umul128";
#elif defined(_MSC_VER) && !defined(__clang__) && defined(_M_ARM64)
    return "umulh";
#else
    return "portable";
#endif
}

}  // namespace hts
