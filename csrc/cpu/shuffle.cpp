#include "hts/shuffle.hpp"

#include <cstring>
#include <stdexcept>
#include <vector>

#include "hts/mul128.hpp"

namespace hts {
namespace {

std::uint64_t splitmix64(std::uint64_t& state) {
    std::uint64_t z = (state += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

// xoshiro256** (Blackman and Vigna): a fast generator with a 2^256 - 1 period.
class Xoshiro256 {
public:
    explicit Xoshiro256(std::uint64_t seed) {
        for (auto& word : s_) word = splitmix64(seed);
    }

    std::uint64_t next() {
        const std::uint64_t result = rotl(s_[1] * 5, 7) * 9;
        const std::uint64_t t = s_[1] << 17;
        s_[2] ^= s_[0];
        s_[3] ^= s_[1];
        s_[1] ^= s_[2];
        s_[0] ^= s_[3];
        s_[2] ^= t;
        s_[3] = rotl(s_[3], 45);
        return result;
    }

    // Exactly uniform in [0, bound), bound >= 1 (Lemire 2019: multiply, reject the bias).
    std::uint64_t below(std::uint64_t bound) {
        U128 product = mul128(next(), bound);
        if (product.lo < bound) {
            const std::uint64_t threshold = (0 - bound) % bound;
            while (product.lo < threshold) product = mul128(next(), bound);
        }
        return product.hi;
    }

private:
    static std::uint64_t rotl(std::uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
    std::uint64_t s_[4]{};
};

template <typename T>
void fisher_yates(T* data, std::size_t count, Xoshiro256& rng) {
    for (std::size_t i = count; i > 1; --i) {
        const std::size_t j = static_cast<std::size_t>(rng.below(i));
        const T tmp = data[i - 1];
        data[i - 1] = data[j];
        data[j] = tmp;
    }
}

template <typename T>
void bucket_shuffle(T* data, std::size_t count, std::uint64_t seed) {
    Xoshiro256 rng(seed);
    const std::size_t buckets = count / kShuffleBucket + 1;
    if (buckets == 1) {
        fisher_yates(data, count, rng);
        return;
    }
    // pass 1: an independent uniform bucket for every element
    std::vector<std::uint32_t> bucket_of(count);
    std::vector<std::size_t> start(buckets + 1, 0);
    for (std::size_t i = 0; i < count; ++i) {
        const auto b = static_cast<std::uint32_t>(rng.below(buckets));
        bucket_of[i] = b;
        ++start[b + 1];
    }
    for (std::size_t b = 0; b < buckets; ++b) start[b + 1] += start[b];
    // pass 2: scatter (elements keep their order inside a bucket), then copy back
    std::vector<T> scattered(count);
    std::vector<std::size_t> fill(start.begin(), start.end() - 1);
    for (std::size_t i = 0; i < count; ++i) scattered[fill[bucket_of[i]]++] = data[i];
    std::memcpy(data, scattered.data(), count * sizeof(T));
    // pass 3: shuffle each bucket inside the cache
    for (std::size_t b = 0; b < buckets; ++b) {
        fisher_yates(data + start[b], start[b + 1] - start[b], rng);
    }
}

}  // namespace

void shuffle_inplace(void* data, std::size_t count, std::size_t item_size, std::uint64_t seed) {
    switch (item_size) {
        case 1: bucket_shuffle(static_cast<std::uint8_t*>(data), count, seed); break;
        case 2: bucket_shuffle(static_cast<std::uint16_t*>(data), count, seed); break;
        case 4: bucket_shuffle(static_cast<std::uint32_t*>(data), count, seed); break;
        case 8: bucket_shuffle(static_cast<std::uint64_t*>(data), count, seed); break;
        default: throw std::invalid_argument("shuffle_inplace: item size must be 1, 2, 4 or 8");
    }
}

}  // namespace hts
