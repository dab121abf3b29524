/* Internal declarations of the CUDA backend, shared by its C files (cuda_backend.c,
 * cuda_libs.c, cuda_blas.c, cuda_conv.c) and its CUDA files (*.cu). Not installed.
 *
 * cuBLAS and cuDNN are loaded with dlopen when the backend starts (cuda_libs.c), not linked:
 * linking them costs every process that links libnnscope about 0.6 s of start-up and makes
 * valgrind report errors inside their loaders, even when the program never touches a GPU.
 * cudart is linked statically. */
#ifndef NS_CUDA_INTERNAL_H
#define NS_CUDA_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#ifdef NS_HAVE_CUDNN
#include <cudnn.h>
#endif

#include "backend.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------ state (cuda_mem.cu) */

/* The stream every kernel, copy and library call of the backend runs on. */
extern cudaStream_t ns_cu_stream;

/* Starts the backend once: device 0, stream, allocator, libraries. Returns false and fills why
 * when no usable GPU is present. Not thread-safe: cuda_backend.c calls it under pthread_once. */
bool ns_cu_init(char *why, size_t whylen);

/* Error checks: print "nnscope: <library> error at file:line: <message> (<expr>)" and exit(1).
 * CUDA failures are not user mistakes the engine can report through ns_error: the device state
 * is unknown after one. */
void ns_cu_check(cudaError_t e, const char *expr, const char *file, int line);
void ns_cublas_check(cublasStatus_t s, const char *expr, const char *file, int line);
#define cudaCheck(x) ns_cu_check((x), #x, __FILE__, __LINE__)
#define cublasCheck(x) ns_cublas_check((x), #x, __FILE__, __LINE__)
#ifdef NS_HAVE_CUDNN
void ns_cudnn_check(cudnnStatus_t s, const char *expr, const char *file, int line);
#define cudnnCheck(x) ns_cudnn_check((x), #x, __FILE__, __LINE__)
#endif
/* Checks the last kernel launch (cheap: no synchronisation). */
#define NS_CU_LAUNCHED() cudaCheck(cudaGetLastError())

/* Persistent buffers, one per user so kernels never share one: grown on demand (after a stream
 * synchronisation, zero-filled when new), kept until exit. Device buffers hold tables, partial
 * sums and counters that the kernels leave zeroed; pinned host buffers stage uploads and
 * read-backs. Valid until the next request for the same id. */
enum {
    NS_BUF_MT_DEV,   /* multi-tensor: slot table, chunk table, partials (device) */
    NS_BUF_MT_COUNT, /* multi-tensor: per-slot arrival counters (device, left at zero) */
    NS_BUF_MT_HOST,  /* multi-tensor: staging of tables and results (pinned) */
    NS_BUF_CE_DEV,   /* cross-entropy: per-row losses, first bad row (device) */
    NS_BUF_CE_HOST,  /* cross-entropy: first bad row read back (pinned) */
    NS_BUF_ACT_DEV,  /* act_stats: per-column zero counts, partials (device) */
    NS_BUF_ACT_HOST, /* act_stats: results read back (pinned) */
    NS_BUF_CONV_WS,  /* cuDNN workspace (device) */
    NS_BUF_COUNT
};
void *ns_cu_buffer(int id, size_t bytes);
/* Serialises users of the shared buffers and of the allocator across threads. */
void ns_cu_lock(void);
void ns_cu_unlock(void);

/* ------------------------------------------------------------------ libraries (cuda_libs.c) */

/* cuBLAS entry points used by the backend, resolved with dlsym. */
typedef struct {
    __typeof__(cublasCreate_v2) *Create;
    __typeof__(cublasDestroy_v2) *Destroy;
    __typeof__(cublasSetStream_v2) *SetStream;
    __typeof__(cublasSetMathMode) *SetMathMode;
    __typeof__(cublasSgemm_v2) *Sgemm;
    __typeof__(cublasGetStatusString) *GetStatusString;
} ns_cublas_api;
extern ns_cublas_api ns_cublas;
extern cublasHandle_t ns_cublas_handle;

/* Loads cuBLAS (libcublas.so.<major>); false with why filled when it cannot. */
bool ns_cu_load_cublas(char *why, size_t whylen);

#ifdef NS_HAVE_CUDNN
typedef struct {
    __typeof__(cudnnCreate) *Create;
    __typeof__(cudnnDestroy) *Destroy;
    __typeof__(cudnnSetStream) *SetStream;
    __typeof__(cudnnGetErrorString) *GetErrorString;
    __typeof__(cudnnCreateTensorDescriptor) *CreateTensorDescriptor;
    __typeof__(cudnnSetTensor4dDescriptor) *SetTensor4dDescriptor;
    __typeof__(cudnnDestroyTensorDescriptor) *DestroyTensorDescriptor;
    __typeof__(cudnnCreateFilterDescriptor) *CreateFilterDescriptor;
    __typeof__(cudnnSetFilter4dDescriptor) *SetFilter4dDescriptor;
    __typeof__(cudnnDestroyFilterDescriptor) *DestroyFilterDescriptor;
    __typeof__(cudnnCreateConvolutionDescriptor) *CreateConvolutionDescriptor;
    __typeof__(cudnnSetConvolution2dDescriptor) *SetConvolution2dDescriptor;
    __typeof__(cudnnSetConvolutionMathType) *SetConvolutionMathType;
    __typeof__(cudnnDestroyConvolutionDescriptor) *DestroyConvolutionDescriptor;
    __typeof__(cudnnGetConvolutionForwardAlgorithm_v7) *GetConvolutionForwardAlgorithm_v7;
    __typeof__(cudnnGetConvolutionForwardWorkspaceSize) *GetConvolutionForwardWorkspaceSize;
    __typeof__(cudnnConvolutionForward) *ConvolutionForward;
    __typeof__(cudnnGetConvolutionBackwardDataAlgorithm_v7) *GetConvolutionBackwardDataAlgorithm_v7;
    __typeof__(cudnnGetConvolutionBackwardDataWorkspaceSize)
        *GetConvolutionBackwardDataWorkspaceSize;
    __typeof__(cudnnConvolutionBackwardData) *ConvolutionBackwardData;
    __typeof__(cudnnGetConvolutionBackwardFilterAlgorithm_v7)
        *GetConvolutionBackwardFilterAlgorithm_v7;
    __typeof__(cudnnGetConvolutionBackwardFilterWorkspaceSize)
        *GetConvolutionBackwardFilterWorkspaceSize;
    __typeof__(cudnnConvolutionBackwardFilter) *ConvolutionBackwardFilter;
} ns_cudnn_api;
extern ns_cudnn_api ns_cudnn;
extern cudnnHandle_t ns_cudnn_handle;
#endif
/* Loads cuDNN (libcudnn.so.<major>) on first use; false with why filled when it cannot (or the
 * build has no cuDNN). */
bool ns_cu_load_cudnn(char *why, size_t whylen);

/* ------------------------------------------------------------------ table entries
 * Same contracts as the fields of ns_backend (src/backend.h). */

/* memory, cuda_mem.cu */
void *ns_cu_alloc(size_t bytes);
void ns_cu_free(void *p);
void ns_cu_to_host(void *dst, const void *src, size_t bytes);
void ns_cu_from_host(void *dst, const void *src, size_t bytes);
void ns_cu_copy(void *dst, const void *src, size_t bytes);
void ns_cu_fill(float *x, int64_t n, float v);
void ns_cu_sync(void);

/* gemm, cuda_blas.c */
void ns_cu_gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                const float *a, const float *b, float beta, float *c);

/* elementwise and broadcasting, cuda_elem.cu */
void ns_cu_binary(enum ns_binary_op op, const float *a, const float *b, float *y, int64_t n);
void ns_cu_axpy(float alpha, const float *x, float *y, int64_t n);
void ns_cu_mul_acc(const float *a, const float *b, float *y, int64_t n);
void ns_cu_affine(const float *x, float *y, int64_t n, float scale, float shift);
void ns_cu_unary(enum ns_unary_op op, const float *x, float *y, int64_t n, float alpha);
void ns_cu_unary_bwd_acc(enum ns_unary_op op, const float *x, const float *y, const float *gy,
                         float *gx, int64_t n, float alpha);
void ns_cu_bias_add(const float *x, const float *b, float *y, int64_t outer, int64_t c,
                    int64_t inner);
void ns_cu_reduce(const float *x, float *y, int64_t outer, int64_t len, int64_t inner, float scale);
void ns_cu_expand_acc(const float *gy, float *gx, int64_t outer, int64_t len, int64_t inner,
                      float scale);
void ns_cu_transpose(const float *x, float *y, int64_t rows, int64_t cols, bool acc);
void ns_cu_copy_blocks(const float *src, int64_t src_stride, float *dst, int64_t dst_stride,
                       int64_t rows, int64_t len, bool acc);
void ns_cu_dropout(const float *x, float *y, int64_t n, float p, uint64_t seed, uint64_t counter,
                   bool acc);

/* softmax and losses, cuda_softmax.cu */
void ns_cu_softmax(const float *x, float *y, int64_t rows, int64_t cols, bool log);
void ns_cu_softmax_bwd_acc(const float *y, const float *gy, float *gx, int64_t rows, int64_t cols,
                           bool log);
int64_t ns_cu_cross_entropy(const float *logits, const int32_t *target, float *logp,
                            float *loss_dev, int64_t rows, int64_t cols);
void ns_cu_cross_entropy_bwd_acc(const float *logp, const int32_t *target, const float *g_dev,
                                 float *gx, int64_t rows, int64_t cols);

/* batch norm, convolution helpers, pooling, cuda_nn.cu */
void ns_cu_bn_stats(const float *x, float *mean, float *var_biased, int64_t outer, int64_t c,
                    int64_t inner);
void ns_cu_bn_apply(const float *x, const float *mean, const float *invstd, const float *gamma,
                    const float *beta, float *y, int64_t outer, int64_t c, int64_t inner);
void ns_cu_bn_update_running(float *rmean, float *rvar, const float *mean, const float *var_b,
                             int64_t c, float momentum, int64_t count);
void ns_cu_bn_invstd(const float *var, float *invstd, int64_t c, float eps);
void ns_cu_bn_bwd_acc(const float *x, const float *mean, const float *invstd, const float *gamma,
                      const float *gy, float *gx, float *ggamma, float *gbeta, int64_t outer,
                      int64_t c, int64_t inner, bool training);
void ns_cu_im2col(const float *x, float *col, int64_t cin, int64_t h, int64_t w, int64_t k,
                  int64_t stride, int64_t pad, int64_t ho, int64_t wo);
void ns_cu_col2im_acc(const float *col, float *gx, int64_t cin, int64_t h, int64_t w, int64_t k,
                      int64_t stride, int64_t pad, int64_t ho, int64_t wo);
void ns_cu_max_pool(const float *x, float *y, int32_t *argmax, int64_t planes, int64_t h, int64_t w,
                    int64_t k, int64_t stride, int64_t pad, int64_t ho, int64_t wo);
void ns_cu_max_pool_bwd_acc(const float *gy, const int32_t *argmax, float *gx, int64_t planes,
                            int64_t hw, int64_t howo);
void ns_cu_avg_pool(const float *x, float *y, int64_t planes, int64_t h, int64_t w, int64_t k,
                    int64_t stride, int64_t pad, int64_t ho, int64_t wo);
void ns_cu_avg_pool_bwd_acc(const float *gy, float *gx, int64_t planes, int64_t h, int64_t w,
                            int64_t k, int64_t stride, int64_t pad, int64_t ho, int64_t wo);

/* statistics and fused optimizers, cuda_multi.cu */
void ns_cu_norms(int n, const float *const *xs, const int64_t *lens, double *sumsq,
                 int64_t *nonfinite);
void ns_cu_act_stats(const float *x, int64_t rows, int64_t feat, int64_t inner, double *sum,
                     double *sumsq, int64_t *zeros, int64_t *dead_feats, int64_t *nonfinite);
void ns_cu_sgd_step(int n, const ns_optim_slot *slots, float momentum, float dampening,
                    bool nesterov, bool first_step, double *stats);
void ns_cu_adam_step(int n, const ns_optim_slot *slots, float beta1, float beta2, float eps,
                     bool decoupled_wd, float bias_corr1, float bias_corr2, double *stats);

#ifdef __cplusplus
}
#endif

#endif
