// hts128: a fast 128-bit content hash for checkpoint files (NOT a cryptographic hash).
//
// It tells files apart that differ by accident (any change of content or length); it gives
// no protection against someone who crafts two files with the same hash on purpose.
//
// Definition (little-endian 64-bit words; all arithmetic modulo 2^64; the constants come
// from splitmix64 seeded with kHash128Seed, in this order: 128 stripe keys K, 8 initial
// accumulators, 8 scramble keys S, 8 low-half and 8 high-half finishing keys FL, FH):
//   * the input is cut into blocks of 16 stripes of 64 bytes (8 words d[0..7]);
//   * stripe j of a block, with keys k = K[8j .. 8j+7], updates the 8 accumulators:
//       x = d[i] ^ k[i];  acc[i ^ 1] += d[i];  acc[i] += (x mod 2^32) * (x >> 32)
//   * after each complete block (1,024 bytes): acc[i] = (acc[i] ^ (acc[i] >> 47) ^ S[i]) * P32
//   * the bytes after the last complete block (0 to 1,023) are stripes 0, 1, ... of a last,
//     unscrambled block, the final partial stripe padded with zero bytes;
//   * with n the length in bytes and fold(a, b) = low64(a*b) ^ high64(a*b) (128-bit product):
//       lo = mix(n * P64 + sum_i fold(acc[2i] ^ FL[2i], acc[2i+1] ^ FL[2i+1]))
//       hi = mix(~n * P64 + sum_i fold(acc[2i] ^ FH[2i], acc[2i+1] ^ FH[2i+1]))   (i = 0..3)
//     with mix the splitmix64 finalizer; the digest is lo then hi, 8 little-endian bytes each.
// The result depends on the bytes only: not on the platform, the chunking of a streamed
// input or any thread count. hts_fast._reference.hash128 is the slow NumPy definition.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

namespace hts {

constexpr std::uint64_t kHash128Seed = 0x6874735F66617374ULL;  // "hts_fast"
constexpr std::size_t kHash128Stripe = 64;
constexpr std::size_t kHash128Block = 16 * kHash128Stripe;

// A streaming hts128 state: update() with the bytes in any chunks, then digest().
class Hash128 {
public:
    Hash128();
    void update(const void* data, std::size_t size);
    // The 16-byte digest of everything given so far (the state is left as it is).
    std::array<std::uint8_t, 16> digest() const;

private:
    std::uint64_t acc_[8];
    std::uint8_t pending_[kHash128Block];  // the bytes after the last complete block
    std::size_t pending_size_ = 0;
    std::uint64_t total_ = 0;
};

// hts128 of one buffer.
std::array<std::uint8_t, 16> hash128(const void* data, std::size_t size);

}  // namespace hts
