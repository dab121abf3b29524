/* The per-device kernel table. ops*.c check shapes, build the tape and call these; a backend
 * (CPU in src/ops_cpu*.c, CUDA in kernels/) fills one table. Pointers are device pointers of
 * that backend. All tensors are contiguous row-major float32 unless an int32 type is named.
 * "acc" kernels accumulate (+=) into their output; the others overwrite. */
#ifndef NS_BACKEND_H
#define NS_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum ns_binary_op { NS_BIN_ADD, NS_BIN_SUB, NS_BIN_MUL };
enum ns_unary_op { NS_UN_RELU, NS_UN_LEAKY_RELU, NS_UN_GELU, NS_UN_TANH, NS_UN_SIGMOID };

/* One parameter tensor for a fused optimizer update. */
typedef struct {
    float *w;       /* weights, updated in place */
    const float *g; /* gradient (NULL: no gradient this step) */
    float *s1, *s2; /* state: SGD momentum buffer in s1; Adam exp_avg in s1, exp_avg_sq in s2 */
    int64_t n;
    float lr, weight_decay;
} ns_optim_slot;

typedef struct ns_backend {
    const char *name;
    /* memory */
    void *(*alloc)(size_t bytes); /* NULL on out-of-memory */
    void (*free)(void *p);
    void (*to_host)(void *dst, const void *src, size_t bytes);   /* device -> host */
    void (*from_host)(void *dst, const void *src, size_t bytes); /* host -> device */
    void (*copy)(void *dst, const void *src, size_t bytes);      /* device -> device */
    void (*fill)(float *x, int64_t n, float v);
    void (*sync)(void); /* wait for queued work */

    /* C(m,n) = alpha * op(A) op(B) + beta * C, row-major; op(A) is (m,k), op(B) is (k,n). */
    void (*gemm)(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                 const float *a, const float *b, float beta, float *c);

    /* elementwise */
    void (*binary)(enum ns_binary_op op, const float *a, const float *b, float *y, int64_t n);
    void (*axpy)(float alpha, const float *x, float *y, int64_t n);       /* y += alpha*x */
    void (*mul_acc)(const float *a, const float *b, float *y, int64_t n); /* y += a*b */
    void (*affine)(const float *x, float *y, int64_t n, float scale, float shift); /* y=x*s+t */
    void (*unary)(enum ns_unary_op op, const float *x, float *y, int64_t n, float alpha);
    /* gx += dy/dx * gy, given input x and output y */
    void (*unary_bwd_acc)(enum ns_unary_op op, const float *x, const float *y, const float *gy,
                          float *gx, int64_t n, float alpha);

    /* broadcasting over a (outer, len, inner) view */
    void (*bias_add)(const float *x, const float *b, float *y, int64_t outer, int64_t c,
                     int64_t inner);
    /* y[o,i] = scale * sum_l x[o,l,i] (overwrites) */
    void (*reduce)(const float *x, float *y, int64_t outer, int64_t len, int64_t inner,
                   float scale);
    /* gx[o,l,i] += scale * gy[o,i] */
    void (*expand_acc)(const float *gy, float *gx, int64_t outer, int64_t len, int64_t inner,
                       float scale);
    /* y (cols, rows) = x (rows, cols)^T; acc: y += */
    void (*transpose)(const float *x, float *y, int64_t rows, int64_t cols, bool acc);
    /* Copies rows blocks of len floats: dst[r*dst_stride + j] (+)= src[r*src_stride + j]. */
    void (*copy_blocks)(const float *src, int64_t src_stride, float *dst, int64_t dst_stride,
                        int64_t rows, int64_t len, bool acc);

    /* softmax family over the last dim of (rows, cols) */
    void (*softmax)(const float *x, float *y, int64_t rows, int64_t cols, bool log);
    void (*softmax_bwd_acc)(const float *y, const float *gy, float *gx, int64_t rows, int64_t cols,
                            bool log);
    /* Fused log-softmax + NLL: writes logp (rows,cols) and the mean loss to *loss_dev (one float
     * on the device); returns the index of the first target outside [0,cols), or -1. */
    int64_t (*cross_entropy)(const float *logits, const int32_t *target, float *logp,
                             float *loss_dev, int64_t rows, int64_t cols);
    /* gx += g/rows * (softmax - onehot(target)); g read from the device pointer g_dev. */
    void (*cross_entropy_bwd_acc)(const float *logp, const int32_t *target, const float *g_dev,
                                  float *gx, int64_t rows, int64_t cols);

    /* dropout with the counter-based mask u(seed, counter + i) >= p, scale 1/(1-p) */
    void (*dropout)(const float *x, float *y, int64_t n, float p, uint64_t seed, uint64_t counter,
                    bool acc);

    /* batch norm over (outer=N, c, inner=H*W). Training: mean/invstd (c) are written;
     * inference: they are read (invstd = 1/sqrt(var+eps)). gamma/beta may be NULL. */
    void (*bn_stats)(const float *x, float *mean, float *var_biased, int64_t outer, int64_t c,
                     int64_t inner);
    void (*bn_apply)(const float *x, const float *mean, const float *invstd, const float *gamma,
                     const float *beta, float *y, int64_t outer, int64_t c, int64_t inner);
    /* running = (1-m)*running + m*batch (var: unbiased from biased with count). */
    void (*bn_update_running)(float *rmean, float *rvar, const float *mean, const float *var_b,
                              int64_t c, float momentum, int64_t count);
    /* invstd[c] = 1/sqrt(var[c] + eps) */
    void (*bn_invstd)(const float *var, float *invstd, int64_t c, float eps);
    /* Training-mode backward: gx += ..., ggamma += sum(gy*xhat), gbeta += sum(gy). Any of
     * gx/ggamma/gbeta may be NULL. */
    void (*bn_bwd_acc)(const float *x, const float *mean, const float *invstd, const float *gamma,
                       const float *gy, float *gx, float *ggamma, float *gbeta, int64_t outer,
                       int64_t c, int64_t inner, bool training);

    /* im2col for one image (cin,h,w) -> (cin*k*k, ho*wo); col2im accumulates back. */
    void (*im2col)(const float *x, float *col, int64_t cin, int64_t h, int64_t w, int64_t k,
                   int64_t stride, int64_t pad, int64_t ho, int64_t wo);
    void (*col2im_acc)(const float *col, float *gx, int64_t cin, int64_t h, int64_t w, int64_t k,
                       int64_t stride, int64_t pad, int64_t ho, int64_t wo);

    /* Optional whole-batch convolution (NULL: ns_conv2d uses im2col + gemm per image). No bias:
     * y (n,cout,ho,wo) = conv(x (n,cin,h,w), wt (cout,cin,k,k)). */
    void (*conv2d)(const float *x, const float *wt, float *y, int64_t n, int64_t cin, int64_t h,
                   int64_t w, int64_t cout, int64_t k, int64_t stride, int64_t pad, int64_t ho,
                   int64_t wo);
    /* gx += dL/dx, gwt += dL/dwt given gy; gx or gwt may be NULL. Set together with conv2d. */
    void (*conv2d_bwd_acc)(const float *x, const float *wt, const float *gy, float *gx, float *gwt,
                           int64_t n, int64_t cin, int64_t h, int64_t w, int64_t cout, int64_t k,
                           int64_t stride, int64_t pad, int64_t ho, int64_t wo);

    /* pooling over (planes = N*C, h, w); max stores argmax (int32 index into the plane) */
    void (*max_pool)(const float *x, float *y, int32_t *argmax, int64_t planes, int64_t h,
                     int64_t w, int64_t k, int64_t stride, int64_t pad, int64_t ho, int64_t wo);
    void (*max_pool_bwd_acc)(const float *gy, const int32_t *argmax, float *gx, int64_t planes,
                             int64_t hw, int64_t howo);
    void (*avg_pool)(const float *x, float *y, int64_t planes, int64_t h, int64_t w, int64_t k,
                     int64_t stride, int64_t pad, int64_t ho, int64_t wo);
    void (*avg_pool_bwd_acc)(const float *gy, float *gx, int64_t planes, int64_t h, int64_t w,
                             int64_t k, int64_t stride, int64_t pad, int64_t ho, int64_t wo);

    /* Multi-tensor statistics for the recorder: out[i] = {sum of squares, count of
     * NaN/Inf} of tensor i. n tensors, host arrays of device pointers. */
    void (*norms)(int n, const float *const *xs, const int64_t *lens, double *sumsq,
                  int64_t *nonfinite);
    /* Activation statistics of one output (rows = dim 0, feat = dim 1, inner = rest):
     * sum, sum of squares, zero count, count of features zero for every row and position,
     * non-finite count. */
    void (*act_stats)(const float *x, int64_t rows, int64_t feat, int64_t inner, double *sum,
                      double *sumsq, int64_t *zeros, int64_t *dead_feats, int64_t *nonfinite);

    /* Fused multi-tensor optimizer updates (one launch for all tensors on a GPU). For each slot
     * i, stats[4*i + 0..3] receive: sum of grad^2, sum of (w_new - w_old)^2, sum of w_new^2,
     * count of NaN/Inf in grad or w_new. Slots with g == NULL are skipped (stats zero). */
    void (*sgd_step)(int n, const ns_optim_slot *slots, float momentum, float dampening,
                     bool nesterov, bool first_step, double *stats);
    void (*adam_step)(int n, const ns_optim_slot *slots, float beta1, float beta2, float eps,
                      bool decoupled_wd, float bias_corr1, float bias_corr2, double *stats);

    /* Optional: the device allocator's bytes in use, cached in free lists, and peak (the
     * recorder writes them per step). NULL for the CPU. */
    void (*mem_stats)(size_t *in_use, size_t *cached, size_t *peak);
} ns_backend;

/* The table for a device; NULL when that backend is not compiled in. */
const ns_backend *ns_backend_get(int device);
/* The CPU table (src/ops_cpu.c). */
extern const ns_backend ns_cpu_backend;

#endif
