// CUDA backend state and memory: start-up, the stream, the caching allocator, persistent
// buffers, host <-> device copies, fill, sync and the error checks.
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cuda_runtime.h>

#include "alloc_logic.h"
#include "cuda_internal.h"
#include "launch.h"
#include "ns_cuda.h"

cudaStream_t ns_cu_stream;

static ns_alloc *g_alloc;
static pthread_mutex_t g_alloc_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t g_buf_mu = PTHREAD_MUTEX_INITIALIZER;
static char g_desc[320];

// ------------------------------------------------------------------ error checks

void ns_cu_check(cudaError_t e, const char *expr, const char *file, int line) {
    if (e == cudaSuccess) return;
    fprintf(stderr, "nnscope: CUDA error at %s:%d: %s (%s)\n", file, line, cudaGetErrorString(e),
            expr);
    exit(1);
}

void ns_cublas_check(cublasStatus_t s, const char *expr, const char *file, int line) {
    if (s == CUBLAS_STATUS_SUCCESS) return;
    fprintf(stderr, "nnscope: cuBLAS error at %s:%d: %s (%s)\n", file, line,
            ns_cublas.GetStatusString ? ns_cublas.GetStatusString(s) : "unknown status", expr);
    exit(1);
}

// ------------------------------------------------------------------ caching allocator

static void *raw_alloc(size_t bytes, void *ud) {
    (void)ud;
    void *p = NULL;
    if (cudaMalloc(&p, bytes) != cudaSuccess) {
        (void)cudaGetLastError(); // out of memory is not sticky: clear it for later checks
        return NULL;
    }
    return p;
}

static void raw_free(void *p, void *ud) {
    (void)ud;
    // Blocks may still be read by queued kernels: cudaFree waits for the device.
    cudaCheck(cudaFree(p));
}

void *ns_cu_alloc(size_t bytes) {
    pthread_mutex_lock(&g_alloc_mu);
    void *p = ns_alloc_get(g_alloc, bytes);
    pthread_mutex_unlock(&g_alloc_mu);
    return p;
}

// Freed blocks are reused by later allocations whose work is queued on the same stream after
// the work that used them, so no synchronisation is needed.
void ns_cu_free(void *p) {
    pthread_mutex_lock(&g_alloc_mu);
    ns_alloc_put(g_alloc, p);
    pthread_mutex_unlock(&g_alloc_mu);
}

extern "C" void ns_cuda_mem_stats(size_t *in_use, size_t *cached, size_t *peak) {
    ns_alloc_stats st;
    memset(&st, 0, sizeof st);
    pthread_mutex_lock(&g_alloc_mu);
    if (g_alloc) ns_alloc_get_stats(g_alloc, &st);
    pthread_mutex_unlock(&g_alloc_mu);
    if (in_use) *in_use = st.in_use;
    if (cached) *cached = st.cached;
    if (peak) *peak = st.peak;
}

extern "C" void ns_cuda_mem_reset_peak(void) {
    pthread_mutex_lock(&g_alloc_mu);
    if (g_alloc) ns_alloc_reset_peak(g_alloc);
    pthread_mutex_unlock(&g_alloc_mu);
}

extern "C" uint64_t ns_cuda_mem_raw_allocs(void) {
    ns_alloc_stats st;
    memset(&st, 0, sizeof st);
    pthread_mutex_lock(&g_alloc_mu);
    if (g_alloc) ns_alloc_get_stats(g_alloc, &st);
    pthread_mutex_unlock(&g_alloc_mu);
    return st.raw_allocs;
}

extern "C" void ns_cuda_empty_cache(void) {
    pthread_mutex_lock(&g_alloc_mu);
    if (g_alloc) ns_alloc_release_cached(g_alloc);
    pthread_mutex_unlock(&g_alloc_mu);
}

extern "C" const char *ns_cuda_device_desc(void) {
    return g_desc;
}

// ------------------------------------------------------------------ persistent buffers

static struct {
    void *p;
    size_t size;
} g_buf[NS_BUF_COUNT];

static bool buf_is_host(int id) {
    return id == NS_BUF_MT_HOST || id == NS_BUF_CE_HOST || id == NS_BUF_ACT_HOST;
}

void ns_cu_lock(void) {
    pthread_mutex_lock(&g_buf_mu);
}

void ns_cu_unlock(void) {
    pthread_mutex_unlock(&g_buf_mu);
}

void *ns_cu_buffer(int id, size_t bytes) {
    if (bytes <= g_buf[id].size) return g_buf[id].p;
    size_t size = g_buf[id].size ? g_buf[id].size : 4096;
    while (size < bytes) size *= 2;
    cudaCheck(cudaStreamSynchronize(ns_cu_stream)); // the old buffer may be in use
    if (buf_is_host(id)) {
        if (g_buf[id].p) cudaCheck(cudaFreeHost(g_buf[id].p));
        cudaCheck(cudaHostAlloc(&g_buf[id].p, size, cudaHostAllocDefault));
        memset(g_buf[id].p, 0, size);
    } else {
        if (g_buf[id].p) cudaCheck(cudaFree(g_buf[id].p));
        cudaCheck(cudaMalloc(&g_buf[id].p, size));
        cudaCheck(cudaMemset(g_buf[id].p, 0, size));
    }
    g_buf[id].size = size;
    return g_buf[id].p;
}

// ------------------------------------------------------------------ copies, fill, sync

void ns_cu_to_host(void *dst, const void *src, size_t bytes) {
    if (!bytes) return;
    cudaCheck(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, ns_cu_stream));
    cudaCheck(cudaStreamSynchronize(ns_cu_stream));
}

// Synchronous: the caller may reuse or free its host buffer as soon as this returns.
void ns_cu_from_host(void *dst, const void *src, size_t bytes) {
    if (!bytes) return;
    cudaCheck(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, ns_cu_stream));
    cudaCheck(cudaStreamSynchronize(ns_cu_stream));
}

void ns_cu_copy(void *dst, const void *src, size_t bytes) {
    if (!bytes || dst == src) return;
    cudaCheck(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, ns_cu_stream));
}

__global__ void fill_kernel(float *x, int64_t n, float v) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x)
        x[i] = v;
}

void ns_cu_fill(float *x, int64_t n, float v) {
    if (n <= 0) return;
    uint32_t bits;
    memcpy(&bits, &v, 4);
    if (bits == 0) { // +0.0f is all zero bytes
        cudaCheck(cudaMemsetAsync(x, 0, (size_t)n * 4, ns_cu_stream));
        return;
    }
    fill_kernel<<<ns_grid_1d(n, NS_CUDA_BLOCK, NS_CUDA_MAX_BLOCKS), NS_CUDA_BLOCK, 0,
                  ns_cu_stream>>>(x, n, v);
    NS_CU_LAUNCHED();
}

void ns_cu_sync(void) {
    cudaCheck(cudaStreamSynchronize(ns_cu_stream));
}

// ------------------------------------------------------------------ start-up

bool ns_cu_init(char *why, size_t whylen) {
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess) {
        snprintf(why, whylen, "no CUDA device: %s", cudaGetErrorString(e));
        return false;
    }
    if (count < 1) {
        snprintf(why, whylen, "no CUDA device: none found");
        return false;
    }
    cudaDeviceProp prop;
    if ((e = cudaGetDeviceProperties(&prop, 0)) != cudaSuccess || (e = cudaSetDevice(0))) {
        snprintf(why, whylen, "CUDA device 0 is not usable: %s", cudaGetErrorString(e));
        return false;
    }
    if (prop.major < 9) {
        snprintf(why, whylen,
                 "CUDA device 0 (%s) has compute capability %d.%d; this nnscope build targets "
                 "sm_90 and newer",
                 prop.name, prop.major, prop.minor);
        return false;
    }
    void *probe = NULL;
    if ((e = cudaStreamCreate(&ns_cu_stream)) != cudaSuccess ||
        (e = cudaMalloc(&probe, 256)) != cudaSuccess || (e = cudaFree(probe)) != cudaSuccess) {
        snprintf(why, whylen, "CUDA device 0 (%s) cannot be used: %s", prop.name,
                 cudaGetErrorString(e));
        return false;
    }
    if (!ns_cu_load_cublas(why, whylen)) return false;
    ns_alloc_backing be = {raw_alloc, raw_free, NULL};
    g_alloc = ns_alloc_new(&be);
    if (!g_alloc) {
        snprintf(why, whylen, "out of host memory starting the CUDA backend");
        return false;
    }
    const char *tf32 = getenv("NNSCOPE_TF32");
    if (tf32 && !strcmp(tf32, "1")) ns_cuda_set_tf32(true);
    snprintf(g_desc, sizeof g_desc, "%s (sm_%d%d)", prop.name, prop.major, prop.minor);
    return true;
}
