// A minimal deterministic parallel loop: every item is computed by exactly one thread and
// written to its own output slot, so results never depend on the thread count.
#pragma once

#include <cstdint>
#include <functional>

namespace hts {

// Number of threads to use when the caller asks for `requested` (<= 0 means "all cores").
int resolve_threads(int requested);

// Calls body(item, worker) for every item in [0, count) using up to `threads` workers.
// Exceptions thrown by body are captured and the first one (by item index) is rethrown.
void parallel_for(std::int64_t count, int threads,
                  const std::function<void(std::int64_t item, int worker)>& body);

}  // namespace hts
