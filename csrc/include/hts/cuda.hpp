// Host-side entry points of the CUDA kernels (csrc/cuda/launch.cu). Plain C++: the bindings
// include this without CUDA headers. Every pointer is device memory owned by the caller (the
// Python layer allocates it with the caller's array library); streams are cudaStream_t values
// passed as integers. Each call checks every launch and synchronises the stream, turning any
// CUDA error into hts::cuda::CudaError (a std::runtime_error naming the kernel).
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>

namespace hts {
namespace cuda {

class CudaError : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

// Power-law fit of num_spectra ascending spectra packed in values (total doubles; spectrum b
// is values[offsets[b] .. offsets[b + 1])). Workspace/outputs: logx, alphas, ds, sigmas
// (total doubles each; alphas/ds/sigmas are the per-candidate curves, NaN off candidates),
// info (6 per spectrum), out_f (5 per spectrum), out_i (6 per spectrum); see kernels.cuh.
struct PowerLawBatch {
    const double* values = nullptr;
    const long long* offsets = nullptr;
    long long num_spectra = 0;
    long long total = 0;
    double threshold = 1e-5;
    long long small_n_cutoff = 20;
    long long small_n_min_tail = 8;
    double* logx = nullptr;
    double* alphas = nullptr;
    double* ds = nullptr;
    double* sigmas = nullptr;
    long long* info = nullptr;
    double* out_f = nullptr;
    long long* out_i = nullptr;
};
void fit_powerlaw_batch(const PowerLawBatch& batch, std::uintptr_t stream);

// TPL fit at fixed xmin for num_pairs pairs (segment[p], xmins[p]); rules is a workspace of
// 56 doubles (the Gauss-Legendre table, filled here); out_f 7 and out_i 5 per pair.
struct TplBatch {
    const double* values = nullptr;
    const long long* offsets = nullptr;
    long long num_spectra = 0;
    const long long* segment = nullptr;
    const double* xmins = nullptr;
    long long num_pairs = 0;
    double* rules = nullptr;
    double* out_f = nullptr;
    long long* out_i = nullptr;
};
void fit_tpl_batch(const TplBatch& batch, std::uintptr_t stream);

// Throws std::invalid_argument unless p is device (or managed) memory.
void require_device_pointer(const void* p, const char* what);

int device_count();     // 0 when there is no device or no driver (never throws)
int runtime_version();  // CUDART_VERSION the module was built against (e.g. 13000)
int driver_version();   // 0 when no driver is installed
std::string device_error();  // why device_count() is 0 ("" when it is not)

}  // namespace cuda
}  // namespace hts
