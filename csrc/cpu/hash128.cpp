#include "hts/hash128.hpp"

#include <algorithm>
#include <cstring>

#include "hts/mul128.hpp"

// SSE2: GCC and Clang say so with __SSE2__; MSVC has it on every x64 target. Little-endian:
// GCC and Clang say so with __BYTE_ORDER__; MSVC's targets all are. HTS_HASH128_SCALAR forces
// the plain loop (the tests compare both).
#if !defined(HTS_HASH128_SCALAR) && (defined(__SSE2__) || defined(_M_X64) || defined(_M_AMD64)) && \
    (!defined(__BYTE_ORDER__) || __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__)
#define HTS_HASH128_SSE2 1
#include <emmintrin.h>
#endif

namespace hts {
namespace {

constexpr std::uint64_t kP32 = 0x9E3779B1ULL;
constexpr std::uint64_t kP64 = 0x9E3779B97F4A7C15ULL;

std::uint64_t mix(std::uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

std::uint64_t splitmix64(std::uint64_t& state) { return mix(state += kP64); }

// The constants of the definition (see hash128.hpp), drawn once.
struct Constants {
    std::uint64_t keys[16 * 8];
    std::uint64_t init[8];
    std::uint64_t scramble[8];
    std::uint64_t fold_lo[8];
    std::uint64_t fold_hi[8];

    Constants() {
        std::uint64_t state = kHash128Seed;
        for (auto& k : keys) k = splitmix64(state);
        for (auto& k : init) k = splitmix64(state);
        for (auto& k : scramble) k = splitmix64(state);
        for (auto& k : fold_lo) k = splitmix64(state);
        for (auto& k : fold_hi) k = splitmix64(state);
    }
};

const Constants& constants() {
    static const Constants c;
    return c;
}

// Little-endian 64-bit words: a plain copy where the target is little-endian (MSVC's all
// are), byte by byte elsewhere (no compiler-specific byte swap).
#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
[[maybe_unused]] std::uint64_t load_le(const std::uint8_t* p) {
    std::uint64_t v;
    std::memcpy(&v, p, 8);
    return v;
}

void store_le(std::uint8_t* p, std::uint64_t v) { std::memcpy(p, &v, 8); }
#else
[[maybe_unused]] std::uint64_t load_le(const std::uint8_t* p) {
    std::uint64_t v = 0;
    for (int k = 7; k >= 0; --k) v = (v << 8) | p[k];
    return v;
}

void store_le(std::uint8_t* p, std::uint64_t v) {
    for (int k = 0; k < 8; ++k) p[k] = static_cast<std::uint8_t>(v >> (8 * k));
}
#endif

#if defined(HTS_HASH128_SSE2)

// `stripes` stripes at `p` with keys[8j..] for stripe j, two lanes per SSE2 register.
void accumulate(std::uint64_t* acc, const std::uint8_t* p, const std::uint64_t* keys,
                std::size_t stripes) {
    __m128i a[4];
    for (int r = 0; r < 4; ++r) a[r] = _mm_loadu_si128(reinterpret_cast<const __m128i*>(acc) + r);
    for (std::size_t j = 0; j < stripes; ++j) {
        const auto* d = reinterpret_cast<const __m128i*>(p + j * kHash128Stripe);
        const auto* k = reinterpret_cast<const __m128i*>(keys + 8 * j);
        for (int r = 0; r < 4; ++r) {
            const __m128i data = _mm_loadu_si128(d + r);
            const __m128i x = _mm_xor_si128(data, _mm_loadu_si128(k + r));
            // (x mod 2^32) * (x >> 32) in each 64-bit lane; the data with its lanes swapped
            const __m128i product = _mm_mul_epu32(x, _mm_srli_epi64(x, 32));
            const __m128i swapped = _mm_shuffle_epi32(data, _MM_SHUFFLE(1, 0, 3, 2));
            a[r] = _mm_add_epi64(a[r], _mm_add_epi64(product, swapped));
        }
    }
    for (int r = 0; r < 4; ++r) _mm_storeu_si128(reinterpret_cast<__m128i*>(acc) + r, a[r]);
}

#else

void accumulate(std::uint64_t* acc, const std::uint8_t* p, const std::uint64_t* keys,
                std::size_t stripes) {
    for (std::size_t j = 0; j < stripes; ++j) {
        for (std::size_t i = 0; i < 8; ++i) {
            const std::uint64_t d = load_le(p + j * kHash128Stripe + 8 * i);
            const std::uint64_t x = d ^ keys[8 * j + i];
            acc[i ^ 1] += d;
            acc[i] += (x & 0xFFFFFFFFULL) * (x >> 32);
        }
    }
}

#endif

void scramble(std::uint64_t* acc, const Constants& c) {
    for (std::size_t i = 0; i < 8; ++i) acc[i] = (acc[i] ^ (acc[i] >> 47) ^ c.scramble[i]) * kP32;
}

std::uint64_t fold(std::uint64_t a, std::uint64_t b) {
    const U128 product = mul128(a, b);
    return product.lo ^ product.hi;
}

}  // namespace

Hash128::Hash128() { std::memcpy(acc_, constants().init, sizeof acc_); }

void Hash128::update(const void* data, std::size_t size) {
    const Constants& c = constants();
    const auto* p = static_cast<const std::uint8_t*>(data);
    total_ += size;
    if (pending_size_ > 0) {
        const std::size_t take = std::min(size, kHash128Block - pending_size_);
        std::memcpy(pending_ + pending_size_, p, take);
        pending_size_ += take;
        p += take;
        size -= take;
        if (pending_size_ < kHash128Block) return;
        accumulate(acc_, pending_, c.keys, 16);
        scramble(acc_, c);
        pending_size_ = 0;
    }
    for (; size >= kHash128Block; p += kHash128Block, size -= kHash128Block) {
        accumulate(acc_, p, c.keys, 16);
        scramble(acc_, c);
    }
    if (size > 0) std::memcpy(pending_, p, size);
    pending_size_ = size;
}

std::array<std::uint8_t, 16> Hash128::digest() const {
    const Constants& c = constants();
    std::uint64_t acc[8];
    std::memcpy(acc, acc_, sizeof acc);
    const std::size_t whole = pending_size_ / kHash128Stripe;
    accumulate(acc, pending_, c.keys, whole);
    const std::size_t rest = pending_size_ - whole * kHash128Stripe;
    if (rest > 0) {
        std::uint8_t last[kHash128Stripe] = {};
        std::memcpy(last, pending_ + whole * kHash128Stripe, rest);
        accumulate(acc, last, c.keys + 8 * whole, 1);
    }
    std::uint64_t lo = total_ * kP64;
    std::uint64_t hi = ~total_ * kP64;
    for (std::size_t i = 0; i < 8; i += 2) {
        lo += fold(acc[i] ^ c.fold_lo[i], acc[i + 1] ^ c.fold_lo[i + 1]);
        hi += fold(acc[i] ^ c.fold_hi[i], acc[i + 1] ^ c.fold_hi[i + 1]);
    }
    std::array<std::uint8_t, 16> out{};
    store_le(out.data(), mix(lo));
    store_le(out.data() + 8, mix(hi));
    return out;
}

std::array<std::uint8_t, 16> hash128(const void* data, std::size_t size) {
    Hash128 h;
    h.update(data, size);
    return h.digest();
}

}  // namespace hts
