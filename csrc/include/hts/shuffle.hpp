// Uniform random permutation of a buffer, cache-friendly and reproducible from a seed.
//
// Fisher-Yates on a buffer larger than the cache spends most of its time on cache misses
// (one random access per element). This shuffle scatters the elements into buckets of about
// kShuffleBucket elements by an independent uniform bucket draw per element (two sequential
// passes), then Fisher-Yates-shuffles each bucket inside the cache. Concatenating uniformly
// shuffled buckets of multinomially distributed sizes is a uniform random permutation
// (Sanders, "Random permutations on distributed, external and hierarchical memory", 1998).
// Random numbers: xoshiro256** seeded through splitmix64; bounded draws by Lemire's
// multiply-and-reject method, so every draw is exactly uniform. Pure C++ (no Python).
#pragma once

#include <cstddef>
#include <cstdint>

namespace hts {

// Elements per bucket on average (doubles: 256 KiB, an L2-sized block).
constexpr std::size_t kShuffleBucket = 32768;

// Shuffle `count` elements of `item_size` bytes at `data` in place (item_size 1, 2, 4 or 8).
// The permutation depends only on `seed` and `count`.
void shuffle_inplace(void* data, std::size_t count, std::size_t item_size, std::uint64_t seed);

}  // namespace hts
