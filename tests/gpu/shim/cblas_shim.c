/* Minimal CBLAS (see cblas.h): row-major SGEMM with op(B) packed once so the inner loop runs
 * over contiguous memory. */
#include "cblas.h"

#include <stdio.h>
#include <stdlib.h>

void openblas_set_num_threads(int n) {
    (void)n;
}

void cblas_sgemm(enum CBLAS_ORDER order, enum CBLAS_TRANSPOSE ta, enum CBLAS_TRANSPOSE tb, int m,
                 int n, int k, float alpha, const float *a, int lda, const float *b, int ldb,
                 float beta, float *c, int ldc) {
    if (order != CblasRowMajor) {
        fprintf(stderr, "cblas shim: only row-major GEMM is implemented\n");
        abort();
    }
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) c[i * ldc + j] = beta == 0.0f ? 0.0f : beta * c[i * ldc + j];
    if (k == 0 || alpha == 0.0f) return;
    float *pb = malloc(sizeof(float) * (size_t)k * (size_t)n); /* op(B) as (k, n) */
    if (!pb) {
        fprintf(stderr, "cblas shim: out of memory\n");
        abort();
    }
    for (int l = 0; l < k; l++)
        for (int j = 0; j < n; j++)
            pb[(size_t)l * n + j] = tb == CblasNoTrans ? b[l * ldb + j] : b[j * ldb + l];
    for (int i = 0; i < m; i++) {
        float *ci = c + (size_t)i * ldc;
        for (int l = 0; l < k; l++) {
            float av = alpha * (ta == CblasNoTrans ? a[i * lda + l] : a[l * lda + i]);
            const float *bl = pb + (size_t)l * n;
            for (int j = 0; j < n; j++) ci[j] += av * bl[j];
        }
    }
    free(pb);
}
