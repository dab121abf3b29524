/* Minimal CBLAS for GPU machines without OpenBLAS (tests/gpu/pack.sh builds it into the carried
 * sysroot as "openblas"): the two entry points nnscope uses, row-major only. The CPU side of the
 * GPU checks (reference results, data loading) is small, so a plain blocked loop is enough. */
#ifndef NS_CBLAS_SHIM_H
#define NS_CBLAS_SHIM_H

enum CBLAS_ORDER { CblasRowMajor = 101, CblasColMajor = 102 };
enum CBLAS_TRANSPOSE { CblasNoTrans = 111, CblasTrans = 112, CblasConjTrans = 113 };

/* C = alpha op(A) op(B) + beta C (row-major only; column-major aborts). */
void cblas_sgemm(enum CBLAS_ORDER order, enum CBLAS_TRANSPOSE ta, enum CBLAS_TRANSPOSE tb, int m,
                 int n, int k, float alpha, const float *a, int lda, const float *b, int ldb,
                 float beta, float *c, int ldc);
/* Accepted and ignored (single-threaded). */
void openblas_set_num_threads(int n);

#endif
