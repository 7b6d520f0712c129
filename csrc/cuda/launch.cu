// Launchers of the kernels in kernels.cuh: grid sizes, argument checks, and an error check after
// every launch and on the stream, so no CUDA error goes unnoticed.

#include "hts/cuda.hpp"
#include "kernels.cuh"

#include <cuda_runtime.h>

#include <algorithm>
#include <stdexcept>
#include <string>

namespace hts {
namespace cuda {
namespace {

void check(cudaError_t status, const char* what) {
    if (status != cudaSuccess)
        throw CudaError(std::string("CUDA error in ") + what + ": " + cudaGetErrorName(status) +
                        ": " + cudaGetErrorString(status));
}

// After a launch: a bad configuration shows at once, a fault in the kernel on the stream.
void check_launch(const char* kernel) { check(cudaGetLastError(), kernel); }

unsigned blocks_for(long long work, int per_block) {
    const long long blocks = (work + per_block - 1) / per_block;
    return static_cast<unsigned>(std::max(1LL, std::min(blocks, 65535LL * 16)));
}

}  // namespace

void require_device_pointer(const void* p, const char* what) {
    if (p == nullptr) throw std::invalid_argument(std::string(what) + " is a null pointer");
    cudaPointerAttributes attr{};
    check(cudaPointerGetAttributes(&attr, p), "cudaPointerGetAttributes");
    if (attr.type != cudaMemoryTypeDevice && attr.type != cudaMemoryTypeManaged)
        throw std::invalid_argument(std::string(what) +
                                    " is not in device memory; move it to the GPU explicitly "
                                    "(cupy.asarray / tensor.cuda()) or use the CPU functions");
}

void fit_powerlaw_batch(const PowerLawBatch& b, std::uintptr_t stream_handle) {
    if (b.num_spectra <= 0) return;
    require_device_pointer(b.offsets, "offsets");
    require_device_pointer(b.info, "info");
    if (b.total > 0) require_device_pointer(b.values, "values");
    cudaStream_t stream = reinterpret_cast<cudaStream_t>(stream_handle);
    hts_pl_prepare<<<blocks_for(b.num_spectra, 64), 64, 0, stream>>>(
        b.values, b.offsets, b.num_spectra, b.threshold, b.small_n_cutoff, b.small_n_min_tail,
        b.logx, b.alphas, b.ds, b.info);
    check_launch("hts_pl_prepare");
    if (b.total > 0) {
        hts_pl_distances<<<blocks_for(b.total * 32, 256), 256, 0, stream>>>(
            b.logx, b.offsets, b.num_spectra, b.alphas, b.ds, b.total);
        check_launch("hts_pl_distances");
    }
    hts_pl_select<<<blocks_for(b.num_spectra, 1), HTS_SELECT_THREADS, 0, stream>>>(
        b.values, b.offsets, b.num_spectra, b.info, b.alphas, b.ds, b.sigmas, b.out_f, b.out_i);
    check_launch("hts_pl_select");
    check(cudaStreamSynchronize(stream), "the power-law fit kernels");
}

void fit_tpl_batch(const TplBatch& b, std::uintptr_t stream_handle) {
    if (b.num_pairs <= 0) return;
    require_device_pointer(b.offsets, "offsets");
    require_device_pointer(b.segment, "segment");
    require_device_pointer(b.xmins, "xmins");
    require_device_pointer(b.rules, "rules");
    cudaStream_t stream = reinterpret_cast<cudaStream_t>(stream_handle);
    hts_tpl_rules<<<1, 1, 0, stream>>>(b.rules);
    check_launch("hts_tpl_rules");
    hts_tpl_fit<<<blocks_for(b.num_pairs, 64), 64, 0, stream>>>(
        b.values, b.offsets, b.segment, b.xmins, b.num_pairs, b.rules, b.out_f, b.out_i);
    check_launch("hts_tpl_fit");
    check(cudaStreamSynchronize(stream), "the TPL fit kernel");
}

int device_count() {
    int count = 0;
    return cudaGetDeviceCount(&count) == cudaSuccess ? count : 0;
}

std::string device_error() {
    int count = 0;
    const cudaError_t status = cudaGetDeviceCount(&count);
    if (status != cudaSuccess) return std::string(cudaGetErrorName(status)) + ": " +
                                      cudaGetErrorString(status);
    return count > 0 ? "" : "no CUDA device";
}

int runtime_version() { return CUDART_VERSION; }

int driver_version() {
    int version = 0;
    return cudaDriverGetVersion(&version) == cudaSuccess ? version : 0;
}

}  // namespace cuda
}  // namespace hts
