/* CUDA backend extras (kernels/): allocator statistics, the TF32 switch and the cuDNN
 * convolution entry points. Declared whether or not the backend is compiled in; they exist only
 * when nnscope was built with the `cuda` feature (NS_HAVE_CUDA defined), so callers guard their
 * use with #ifdef NS_HAVE_CUDA. Everything else goes through the device-neutral API
 * (ns_device_available, ns_tensor_move, ns_module_to, ...). */
#ifndef NS_CUDA_H
#define NS_CUDA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct ns_backend;

/* The CUDA kernel table, started on first call (device 0, a stream, the caching allocator,
 * cuBLAS). NULL when no usable GPU is present; why (may be NULL) then receives one line, e.g.
 * "no CUDA device: CUDA driver version is insufficient for CUDA runtime version". Cheap after
 * the first call; thread-safe. */
const struct ns_backend *ns_cuda_backend_get(char *why, size_t whylen);

/* Caching allocator: bytes handed out to tensors (in_use), bytes kept for reuse (cached) and
 * the peak of in_use since start or the last ns_cuda_mem_reset_peak(). Any pointer may be
 * NULL. Zeros before the backend started. */
void ns_cuda_mem_stats(size_t *in_use, size_t *cached, size_t *peak);
/* Sets the peak to the current in_use (e.g. at each step start). */
void ns_cuda_mem_reset_peak(void);
/* cudaMalloc calls made so far by the allocator (tests: a steady-state step makes none). */
uint64_t ns_cuda_mem_raw_allocs(void);
/* Returns every cached block to the driver (cudaFree). Blocks in use are kept. */
void ns_cuda_empty_cache(void);

/* TF32 tensor-core math for GEMMs (off by default: FP32 results like the CPU). Also switched on
 * at start-up by the environment variable NNSCOPE_TF32=1. */
void ns_cuda_set_tf32(bool on);
bool ns_cuda_tf32(void);

/* Name and compute capability of the device in use ("NVIDIA H200 (sm_90)"); "" before start. */
const char *ns_cuda_device_desc(void);

/* cuDNN convolution, whole batch, no bias (the bias is a separate bias_add). True when cuDNN is
 * compiled in and loads; else false with why filled. */
bool ns_cuda_conv2d_available(char *why, size_t whylen);
/* y (n, cout, ho, wo) = conv(x (n, cin, h, w), wt (cout, cin, k, k)); device pointers. */
void ns_cuda_conv2d(const float *x, const float *wt, float *y, int64_t n, int64_t cin, int64_t h,
                    int64_t w, int64_t cout, int64_t k, int64_t stride, int64_t pad, int64_t ho,
                    int64_t wo);
/* gx += dL/dx and gwt += dL/dwt given gy (n, cout, ho, wo); gx or gwt may be NULL. */
void ns_cuda_conv2d_bwd_acc(const float *x, const float *wt, const float *gy, float *gx, float *gwt,
                            int64_t n, int64_t cin, int64_t h, int64_t w, int64_t cout, int64_t k,
                            int64_t stride, int64_t pad, int64_t ho, int64_t wo);

#ifdef __cplusplus
}
#endif

#endif
