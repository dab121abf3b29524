// Helpers shared by the CUDA files of the backend (C++ only).
#ifndef NS_CUDA_COMMON_CUH
#define NS_CUDA_COMMON_CUH

#include <cuda_runtime.h>

#include "cuda_internal.h"
#include "elem.h"
#include "launch.h"

// Grid-stride loop calling f(i) for i in [0, n).
template <typename F> __global__ void ns_each_kernel(int64_t n, F f) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x)
        f(i);
}

// Runs f(i) for every i in [0, n) on the backend's stream (no launch when n == 0).
template <typename F> static void ns_each(int64_t n, F f) {
    int blocks = ns_grid_1d(n, NS_CUDA_BLOCK, NS_CUDA_MAX_BLOCKS);
    if (!blocks) return;
    ns_each_kernel<<<blocks, NS_CUDA_BLOCK, 0, ns_cu_stream>>>(n, f);
    NS_CU_LAUNCHED();
}

// Sum of v over the warp (result in every lane).
template <typename T> __device__ inline T ns_warp_sum(T v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ inline float ns_warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Sum of v over the block (blockDim.x a multiple of 32, at most 1024), in a fixed order, so
// results are deterministic. The result is valid in thread 0. scratch: 32 T in shared memory.
template <typename T> __device__ inline T ns_block_sum(T v, T *scratch) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
    v = ns_warp_sum(v);
    __syncthreads(); // scratch may still be read by a previous call
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    if (warp == 0) {
        v = lane < nwarps ? scratch[lane] : (T)0;
        v = ns_warp_sum(v);
    }
    return v;
}

#endif
