// HTS_HD: marks a function for both the host compiler and nvcc (NVRTC included).
//
// The math headers that use it (powerlaw_math.hpp, tpl_math.hpp) are included by the CPU
// kernels, by the CUDA kernels of csrc/cuda, and by CuPy's run-time compiler, so they use only
// the C math functions of the global namespace (glibc on the host, CUDA's on the device) and
// these helpers, which mirror std::min/max/clamp exactly (same comparisons, same NaN handling).
#pragma once

#if defined(__CUDACC__) || defined(__CUDACC_RTC__)
#define HTS_HD __host__ __device__ inline
#else
#define HTS_HD inline
#endif

#ifndef __CUDACC_RTC__
#include <math.h>  // ::exp, ::log, ... (NVRTC has them built in)
#endif
#if !defined(__CUDACC_RTC__) && !defined(__CUDACC__) && !defined(__GNUC__) && !defined(__clang__)
#include <limits>
#endif

namespace hts {
namespace hd {

// Exactly std::max / std::min / std::clamp for doubles.
HTS_HD double max(double a, double b) { return (a < b) ? b : a; }
HTS_HD double min(double a, double b) { return (b < a) ? b : a; }
HTS_HD double clamp(double v, double lo, double hi) { return v < lo ? lo : (hi < v ? hi : v); }
// False for NaN and +-Inf; needs IEEE arithmetic (no -ffast-math, which the build never uses).
HTS_HD bool finite(double v) { return v - v == 0.0; }
// Quiet NaN and +Inf: compiler builtins under nvcc and NVRTC (which has no <limits>), GCC and
// Clang; std::numeric_limits elsewhere (MSVC), the same values.
#if defined(__CUDACC_RTC__) || defined(__CUDACC__) || defined(__GNUC__) || defined(__clang__)
HTS_HD double nan() { return __builtin_nan(""); }
HTS_HD double inf() { return __builtin_huge_val(); }
#else
HTS_HD double nan() { return std::numeric_limits<double>::quiet_NaN(); }
HTS_HD double inf() { return std::numeric_limits<double>::infinity(); }
#endif

}  // namespace hd
}  // namespace hts
