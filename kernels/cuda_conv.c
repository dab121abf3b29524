/* conv2d through cuDNN's convolution API (cudnn_cnn.h: cudnnConvolutionForward,
 * ...BackwardData, ...BackwardFilter), whole batch per call. cuDNN 9 marks this API deprecated
 * (in favour of the C++-only frontend / the verbose backend graph API) but ships and supports
 * it; it is loaded with dlopen on first use. Descriptors and chosen algorithms are cached per
 * geometry. Math: FP32 (CUDNN_FMA_MATH) unless TF32 is switched on, like the GEMMs. */
#include <assert.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_internal.h"
#include "ns_cuda.h"

bool ns_cuda_conv2d_available(char *why, size_t whylen) {
    return ns_cu_load_cudnn(why, whylen);
}

#ifdef NS_HAVE_CUDNN

#define CACHE 16

typedef struct {
    int64_t key[9]; /* n, cin, h, w, cout, k, stride, pad, tf32 */
    bool used;
    cudnnTensorDescriptor_t x, y;
    cudnnFilterDescriptor_t w;
    cudnnConvolutionDescriptor_t conv;
    cudnnConvolutionFwdAlgo_t fwd;
    cudnnConvolutionBwdDataAlgo_t bwd_data;
    cudnnConvolutionBwdFilterAlgo_t bwd_filter;
    size_t ws_fwd, ws_data, ws_filter;
} plan;

static plan g_cache[CACHE];
static int g_next;

static void load_or_die(void) {
    char why[256];
    if (!ns_cu_load_cudnn(why, sizeof why)) {
        fprintf(stderr, "nnscope: conv2d on CUDA needs cuDNN: %s\n", why);
        exit(1);
    }
}

/* The plan for a geometry: the caller holds ns_cu_lock(). */
static plan *get_plan(const int64_t key[9]) {
    for (int i = 0; i < CACHE; i++)
        if (g_cache[i].used && !memcmp(g_cache[i].key, key, sizeof g_cache[i].key))
            return &g_cache[i];
    plan *p = &g_cache[g_next];
    g_next = (g_next + 1) % CACHE;
    if (!p->used) {
        cudnnCheck(ns_cudnn.CreateTensorDescriptor(&p->x));
        cudnnCheck(ns_cudnn.CreateTensorDescriptor(&p->y));
        cudnnCheck(ns_cudnn.CreateFilterDescriptor(&p->w));
        cudnnCheck(ns_cudnn.CreateConvolutionDescriptor(&p->conv));
    }
    memcpy(p->key, key, sizeof p->key);
    p->used = true;
    int n = (int)key[0], cin = (int)key[1], h = (int)key[2], w = (int)key[3], cout = (int)key[4];
    int k = (int)key[5], stride = (int)key[6], pad = (int)key[7];
    int ho = (h + 2 * pad - k) / stride + 1, wo = (w + 2 * pad - k) / stride + 1;
    cudnnCheck(
        ns_cudnn.SetTensor4dDescriptor(p->x, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, n, cin, h, w));
    cudnnCheck(
        ns_cudnn.SetTensor4dDescriptor(p->y, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, n, cout, ho, wo));
    cudnnCheck(
        ns_cudnn.SetFilter4dDescriptor(p->w, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, cout, cin, k, k));
    cudnnCheck(ns_cudnn.SetConvolution2dDescriptor(p->conv, pad, pad, stride, stride, 1, 1,
                                                   CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
    cudnnCheck(
        ns_cudnn.SetConvolutionMathType(p->conv, key[8] ? CUDNN_TENSOR_OP_MATH : CUDNN_FMA_MATH));

    /* Heuristic choice (no benchmarking): the first algorithm that works; for the backward
     * passes the first deterministic one, so gradients are reproducible run to run. */
    int got = 0;
    cudnnConvolutionFwdAlgoPerf_t fp[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
    cudnnCheck(ns_cudnn.GetConvolutionForwardAlgorithm_v7(
        ns_cudnn_handle, p->x, p->w, p->conv, p->y, CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &got, fp));
    p->fwd = CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM;
    for (int i = 0; i < got; i++)
        if (fp[i].status == CUDNN_STATUS_SUCCESS) {
            p->fwd = fp[i].algo;
            break;
        }
    cudnnConvolutionBwdDataAlgoPerf_t dp[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
    cudnnCheck(ns_cudnn.GetConvolutionBackwardDataAlgorithm_v7(
        ns_cudnn_handle, p->w, p->y, p->conv, p->x, CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, &got,
        dp));
    p->bwd_data = CUDNN_CONVOLUTION_BWD_DATA_ALGO_1;
    for (int i = 0; i < got; i++)
        if (dp[i].status == CUDNN_STATUS_SUCCESS && dp[i].determinism == CUDNN_DETERMINISTIC) {
            p->bwd_data = dp[i].algo;
            break;
        }
    cudnnConvolutionBwdFilterAlgoPerf_t wp[CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT];
    cudnnCheck(ns_cudnn.GetConvolutionBackwardFilterAlgorithm_v7(
        ns_cudnn_handle, p->x, p->y, p->conv, p->w, CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT, &got,
        wp));
    p->bwd_filter = CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1;
    for (int i = 0; i < got; i++)
        if (wp[i].status == CUDNN_STATUS_SUCCESS && wp[i].determinism == CUDNN_DETERMINISTIC) {
            p->bwd_filter = wp[i].algo;
            break;
        }
    cudnnCheck(ns_cudnn.GetConvolutionForwardWorkspaceSize(ns_cudnn_handle, p->x, p->w, p->conv,
                                                           p->y, p->fwd, &p->ws_fwd));
    cudnnCheck(ns_cudnn.GetConvolutionBackwardDataWorkspaceSize(
        ns_cudnn_handle, p->w, p->y, p->conv, p->x, p->bwd_data, &p->ws_data));
    cudnnCheck(ns_cudnn.GetConvolutionBackwardFilterWorkspaceSize(
        ns_cudnn_handle, p->x, p->y, p->conv, p->w, p->bwd_filter, &p->ws_filter));
    return p;
}

static void make_key(int64_t key[9], int64_t n, int64_t cin, int64_t h, int64_t w, int64_t cout,
                     int64_t k, int64_t stride, int64_t pad, int64_t ho, int64_t wo) {
    assert(n <= INT_MAX && cin <= INT_MAX && h <= INT_MAX && w <= INT_MAX && cout <= INT_MAX);
    assert(ho == (h + 2 * pad - k) / stride + 1 && wo == (w + 2 * pad - k) / stride + 1);
    (void)ho;
    (void)wo;
    int64_t v[9] = {n, cin, h, w, cout, k, stride, pad, ns_cuda_tf32()};
    memcpy(key, v, sizeof v);
}

void ns_cuda_conv2d(const float *x, const float *wt, float *y, int64_t n, int64_t cin, int64_t h,
                    int64_t w, int64_t cout, int64_t k, int64_t stride, int64_t pad, int64_t ho,
                    int64_t wo) {
    if (n * cout * ho * wo == 0) return;
    load_or_die();
    int64_t key[9];
    make_key(key, n, cin, h, w, cout, k, stride, pad, ho, wo);
    ns_cu_lock();
    plan *p = get_plan(key);
    void *ws = p->ws_fwd ? ns_cu_buffer(NS_BUF_CONV_WS, p->ws_fwd) : NULL;
    float one = 1.0f, zero = 0.0f;
    cudnnCheck(ns_cudnn.ConvolutionForward(ns_cudnn_handle, &one, p->x, x, p->w, wt, p->conv,
                                           p->fwd, ws, p->ws_fwd, &zero, p->y, y));
    ns_cu_unlock();
}

void ns_cuda_conv2d_bwd_acc(const float *x, const float *wt, const float *gy, float *gx, float *gwt,
                            int64_t n, int64_t cin, int64_t h, int64_t w, int64_t cout, int64_t k,
                            int64_t stride, int64_t pad, int64_t ho, int64_t wo) {
    if ((!gx && !gwt) || n * cout * ho * wo == 0) return;
    load_or_die();
    int64_t key[9];
    make_key(key, n, cin, h, w, cout, k, stride, pad, ho, wo);
    ns_cu_lock();
    plan *p = get_plan(key);
    float one = 1.0f;
    if (gx) {
        void *ws = p->ws_data ? ns_cu_buffer(NS_BUF_CONV_WS, p->ws_data) : NULL;
        cudnnCheck(ns_cudnn.ConvolutionBackwardData(ns_cudnn_handle, &one, p->w, wt, p->y, gy,
                                                    p->conv, p->bwd_data, ws, p->ws_data, &one,
                                                    p->x, gx));
    }
    if (gwt) {
        void *ws = p->ws_filter ? ns_cu_buffer(NS_BUF_CONV_WS, p->ws_filter) : NULL;
        cudnnCheck(ns_cudnn.ConvolutionBackwardFilter(ns_cudnn_handle, &one, p->x, x, p->y, gy,
                                                      p->conv, p->bwd_filter, ws, p->ws_filter,
                                                      &one, p->w, gwt));
    }
    ns_cu_unlock();
}

#else /* !NS_HAVE_CUDNN: the entry points exist and explain themselves */

static _Noreturn void no_cudnn(void) {
    fprintf(stderr, "nnscope: conv2d on CUDA needs cuDNN: this nnscope was built without it\n");
    exit(1);
}

void ns_cuda_conv2d(const float *x, const float *wt, float *y, int64_t n, int64_t cin, int64_t h,
                    int64_t w, int64_t cout, int64_t k, int64_t stride, int64_t pad, int64_t ho,
                    int64_t wo) {
    (void)x, (void)wt, (void)y, (void)n, (void)cin, (void)h, (void)w, (void)cout, (void)k;
    (void)stride, (void)pad, (void)ho, (void)wo;
    no_cudnn();
}

void ns_cuda_conv2d_bwd_acc(const float *x, const float *wt, const float *gy, float *gx, float *gwt,
                            int64_t n, int64_t cin, int64_t h, int64_t w, int64_t cout, int64_t k,
                            int64_t stride, int64_t pad, int64_t ho, int64_t wo) {
    (void)x, (void)wt, (void)gy, (void)gx, (void)gwt, (void)n, (void)cin, (void)h, (void)w;
    (void)cout, (void)k, (void)stride, (void)pad, (void)ho, (void)wo;
    no_cudnn();
}

#endif
