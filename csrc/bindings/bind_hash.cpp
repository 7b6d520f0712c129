#include <pybind11/pybind11.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <mutex>

#include "bindings.hpp"
#include "hts/hash128.hpp"
#include "hts/mul128.hpp"

namespace py = pybind11;

namespace hts::bindings {
namespace {

// Inputs at least this large are hashed without the GIL.
constexpr std::size_t kReleaseGil = std::size_t{1} << 16;

// The bytes of a contiguous buffer (bytes, bytearray, memoryview, NumPy array).
struct Bytes {
    py::buffer_info info;
    const void* data() const { return info.ptr; }
    std::size_t size() const {
        return static_cast<std::size_t>(info.size) * static_cast<std::size_t>(info.itemsize);
    }
};

Bytes bytes_of(const py::buffer& buffer) {
    Bytes b{buffer.request()};
    // a contiguous buffer: strides of a C-ordered array (or none)
    py::ssize_t expected = b.info.itemsize;
    for (py::ssize_t k = b.info.ndim - 1; k >= 0; --k) {
        if (b.info.shape[k] > 1 && b.info.strides[k] != expected) {
            throw py::value_error("hash128 needs a C-contiguous buffer");
        }
        expected *= b.info.shape[k];
    }
    return b;
}

// A streaming state with its own lock: update() may run without the GIL, so two Python
// threads feeding the same object take turns (as hashlib objects do).
struct LockedHash128 {
    Hash128 state;
    mutable std::mutex lock;

    void update(const void* data, std::size_t size) {
        const std::lock_guard<std::mutex> guard(lock);
        state.update(data, size);
    }
    std::array<std::uint8_t, 16> digest() const {
        const std::lock_guard<std::mutex> guard(lock);
        return state.digest();
    }
};

py::bytes as_bytes(const std::array<std::uint8_t, 16>& digest) {
    return py::bytes(reinterpret_cast<const char*>(digest.data()), digest.size());
}

}  // namespace

void register_hash(py::module_& m) {
    m.def(
        "_mul128",
        [](std::uint64_t a, std::uint64_t b) {
            const U128 p = mul128(a, b);
            return py::make_tuple(p.lo, p.hi);
        },
        py::arg("a"), py::arg("b"),
        "(low, high) 64-bit words of a*b by this build's route (for the tests).");
    m.def(
        "hash128",
        [](const py::buffer& buffer) {
            const Bytes b = bytes_of(buffer);
            std::array<std::uint8_t, 16> digest;
            if (b.size() >= kReleaseGil) {
                py::gil_scoped_release release;
                digest = hash128(b.data(), b.size());
            } else {
                digest = hash128(b.data(), b.size());
            }
            return as_bytes(digest);
        },
        py::arg("data"), "The 16-byte hts128 digest of a contiguous buffer (not cryptographic).");

    py::class_<LockedHash128>(m, "Hash128",
                              "A streaming hts128 state, used like a hashlib object.")
        .def(py::init<>())
        .def(
            "update",
            [](LockedHash128& self, const py::buffer& buffer) {
                const Bytes b = bytes_of(buffer);
                if (b.size() >= kReleaseGil) {
                    py::gil_scoped_release release;
                    self.update(b.data(), b.size());
                } else {
                    self.update(b.data(), b.size());
                }
            },
            py::arg("data"))
        .def("digest", [](const LockedHash128& self) { return as_bytes(self.digest()); })
        .def("hexdigest", [](const LockedHash128& self) {
            static const char* hex = "0123456789abcdef";
            const auto digest = self.digest();
            char text[32];
            for (std::size_t k = 0; k < 16; ++k) {
                text[2 * k] = hex[digest[k] >> 4];
                text[2 * k + 1] = hex[digest[k] & 15];
            }
            return py::str(text, 32);
        })
        .def_property_readonly("name", [](const LockedHash128&) { return "hts128"; })
        .def_property_readonly("digest_size", [](const LockedHash128&) { return 16; });
}

}  // namespace hts::bindings
