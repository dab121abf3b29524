/* GEMM through cuBLAS: row-major C = alpha op(A) op(B) + beta C computed as the column-major
 * C^T = op(B)^T op(A)^T (argument mapping in launch.h, ns_gemm_to_colmajor). FP32 by default;
 * TF32 tensor-core math on request. */
#include <assert.h>
#include <limits.h>
#include <stdatomic.h>

#include "cuda_internal.h"
#include "launch.h"
#include "ns_cuda.h"

static atomic_bool g_tf32;

void ns_cuda_set_tf32(bool on) {
    atomic_store(&g_tf32, on);
    if (ns_cublas_handle)
        cublasCheck(ns_cublas.SetMathMode(ns_cublas_handle,
                                          on ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH));
}

bool ns_cuda_tf32(void) {
    return atomic_load(&g_tf32);
}

void ns_cu_gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                const float *a, const float *b, float beta, float *c) {
    if (m == 0 || n == 0) return;
    ns_gemm_cm g = ns_gemm_to_colmajor(trans_a, trans_b, m, n, k);
    assert(g.M <= INT_MAX && g.N <= INT_MAX && g.K <= INT_MAX && g.ld_first <= INT_MAX &&
           g.ld_second <= INT_MAX);
    /* k == 0: C = beta C; cuBLAS handles it, but needs valid leading dimensions >= 1. */
    int ldf = g.ld_first > 0 ? (int)g.ld_first : 1, lds = g.ld_second > 0 ? (int)g.ld_second : 1;
    cublasCheck(ns_cublas.Sgemm(ns_cublas_handle, g.trans_first ? CUBLAS_OP_T : CUBLAS_OP_N,
                                g.trans_second ? CUBLAS_OP_T : CUBLAS_OP_N, (int)g.M, (int)g.N,
                                (int)g.K, &alpha, b, ldf, a, lds, &beta, c, (int)g.ldc));
}
