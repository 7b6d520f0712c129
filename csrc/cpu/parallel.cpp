#include "hts/parallel.hpp"

#include <algorithm>
#include <atomic>
#include <exception>
#include <thread>
#include <vector>

namespace hts {

int resolve_threads(int requested) {
    if (requested > 0) return requested;
    const unsigned hw = std::thread::hardware_concurrency();
    return hw == 0 ? 1 : static_cast<int>(hw);
}

void parallel_for(std::int64_t count, int threads,
                  const std::function<void(std::int64_t, int)>& body) {
    if (count <= 0) return;
    const int workers =
        static_cast<int>(std::min<std::int64_t>(resolve_threads(threads), count));
    if (workers <= 1) {
        for (std::int64_t item = 0; item < count; ++item) body(item, 0);
        return;
    }
    std::atomic<std::int64_t> next{0};
    std::vector<std::exception_ptr> errors(static_cast<std::size_t>(count));
    auto run = [&](int worker) {
        for (;;) {
            const std::int64_t item = next.fetch_add(1, std::memory_order_relaxed);
            if (item >= count) return;
            try {
                body(item, worker);
            } catch (...) {
                errors[static_cast<std::size_t>(item)] = std::current_exception();
            }
        }
    };
    std::vector<std::thread> pool;
    pool.reserve(static_cast<std::size_t>(workers - 1));
    for (int w = 1; w < workers; ++w) {
        try {
            pool.emplace_back(run, w);
        } catch (...) {
            break;  // could not start another thread: the ones running share the work
        }
    }
    run(0);
    for (auto& t : pool) t.join();
    for (auto& e : errors)
        if (e) std::rethrow_exception(e);
}

}  // namespace hts
