/* The CUDA kernel table (src/backend.h) and its start-up. The entries live in cuda_mem.cu
 * (memory), cuda_blas.c (GEMM), cuda_elem.cu, cuda_softmax.cu, cuda_nn.cu and cuda_multi.cu. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>

#include "cuda_internal.h"
#include "ns_cuda.h"

/* Not const: the cuDNN convolution entries are filled in at start-up when cuDNN loads. */
static ns_backend cuda_backend = {
    .name = "cuda",
    .alloc = ns_cu_alloc,
    .free = ns_cu_free,
    .to_host = ns_cu_to_host,
    .from_host = ns_cu_from_host,
    .copy = ns_cu_copy,
    .fill = ns_cu_fill,
    .sync = ns_cu_sync,
    .gemm = ns_cu_gemm,
    .binary = ns_cu_binary,
    .axpy = ns_cu_axpy,
    .mul_acc = ns_cu_mul_acc,
    .affine = ns_cu_affine,
    .unary = ns_cu_unary,
    .unary_bwd_acc = ns_cu_unary_bwd_acc,
    .bias_add = ns_cu_bias_add,
    .reduce = ns_cu_reduce,
    .expand_acc = ns_cu_expand_acc,
    .transpose = ns_cu_transpose,
    .copy_blocks = ns_cu_copy_blocks,
    .softmax = ns_cu_softmax,
    .softmax_bwd_acc = ns_cu_softmax_bwd_acc,
    .cross_entropy = ns_cu_cross_entropy,
    .cross_entropy_bwd_acc = ns_cu_cross_entropy_bwd_acc,
    .dropout = ns_cu_dropout,
    .bn_stats = ns_cu_bn_stats,
    .bn_apply = ns_cu_bn_apply,
    .bn_update_running = ns_cu_bn_update_running,
    .bn_invstd = ns_cu_bn_invstd,
    .bn_bwd_acc = ns_cu_bn_bwd_acc,
    .im2col = ns_cu_im2col,
    .col2im_acc = ns_cu_col2im_acc,
    .max_pool = ns_cu_max_pool,
    .max_pool_bwd_acc = ns_cu_max_pool_bwd_acc,
    .avg_pool = ns_cu_avg_pool,
    .avg_pool_bwd_acc = ns_cu_avg_pool_bwd_acc,
    .norms = ns_cu_norms,
    .act_stats = ns_cu_act_stats,
    .sgd_step = ns_cu_sgd_step,
    .adam_step = ns_cu_adam_step,
    .mem_stats = ns_cuda_mem_stats,
};

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static atomic_bool g_ok;
static char g_why[256];

static void start(void) {
    bool ok = ns_cu_init(g_why, sizeof g_why);
    char why[256];
    if (ok && ns_cuda_conv2d_available(why, sizeof why)) {
        cuda_backend.conv2d = ns_cuda_conv2d;
        cuda_backend.conv2d_bwd_acc = ns_cuda_conv2d_bwd_acc;
    }
    atomic_store(&g_ok, ok);
}

const ns_backend *ns_cuda_backend_get(char *why, size_t whylen) {
    if (atomic_load_explicit(&g_ok, memory_order_acquire)) return &cuda_backend;
    pthread_once(&g_once, start);
    if (atomic_load(&g_ok)) return &cuda_backend;
    if (why && whylen) snprintf(why, whylen, "%s", g_why);
    return NULL;
}
