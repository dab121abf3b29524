/* Per-element math and index math of the CUDA kernels, in plain C.
 *
 * Each function computes one output element (or updates one parameter element) exactly as the
 * CPU backend (src/ops_cpu.c, src/optim_cpu.c) does, operation by operation, so that:
 *   - the kernels in kernels/ *.cu files are thin grid-stride loops around these functions, and
 *   - tests/test_cuda_logic.c runs the same functions over every index on the CPU and checks
 *     them bit for bit against the CPU backend (index math, tails, padding, accumulation order).
 * On the GPU the only remaining differences are the math library (expf, erff, tanhf: a few ulp)
 * and reduction order; the kernels are compiled with --fmad=false so a*b+c is not contracted.
 *
 * Gradients that the CPU scatters (col2im, avg/max-pool backward) are computed here as gathers
 * in the CPU's accumulation order: no atomics, deterministic, bitwise equal to the CPU. */
#ifndef NS_CUDA_ELEM_H
#define NS_CUDA_ELEM_H

#include <math.h>
#include <stdint.h>

#include "launch.h"

/* Values of enum ns_unary_op / ns_binary_op (src/backend.h); test_cuda_logic pins them. */
#define NS_K_BIN_ADD 0
#define NS_K_BIN_SUB 1
#define NS_K_BIN_MUL 2
#define NS_K_UN_RELU 0
#define NS_K_UN_LEAKY_RELU 1
#define NS_K_UN_GELU 2
#define NS_K_UN_TANH 3
#define NS_K_UN_SIGMOID 4

/* ------------------------------------------------------------------ random numbers */

/* The engine's counter-based uniform in [0,1) (ns_rng_uniform in src/nnscope/core.h:
 * fmix32(lo32(counter) ^ key(seed, hi32(counter))) >> 8, over 2^24), callable from device code.
 * core.h's functions are host-only static inlines, hence the copy; test_cuda_logic checks that
 * both draw the same numbers, so a change on one side fails the CPU tests. */
NS_HD static inline uint32_t ns_k_fmix32(uint32_t h) {
    h ^= h >> 16;
    h *= 0x85EBCA6Bu;
    h ^= h >> 13;
    h *= 0xC2B2AE35u;
    h ^= h >> 16;
    return h;
}

NS_HD static inline float ns_k_uniform(uint64_t seed, uint64_t counter) {
    uint32_t key = ns_k_fmix32(
        (uint32_t)seed ^
        ns_k_fmix32((uint32_t)(seed >> 32) ^ ns_k_fmix32((uint32_t)(counter >> 32) + 0x9E3779B9u)));
    return (float)(ns_k_fmix32((uint32_t)counter ^ key) >> 8) * (1.0f / 16777216.0f);
}

/* Dropout factor of element i: scale or 0. */
NS_HD static inline float ns_k_dropout_keep(uint64_t seed, uint64_t counter, int64_t i, float p,
                                            float scale) {
    return ns_k_uniform(seed, counter + (uint64_t)i) >= p ? scale : 0.0f;
}

/* ------------------------------------------------------------------ elementwise */

NS_HD static inline float ns_k_binary(int op, float a, float b) {
    return op == NS_K_BIN_ADD ? a + b : op == NS_K_BIN_SUB ? a - b : a * b;
}

NS_HD static inline float ns_k_unary(int op, float x, float alpha) {
    switch (op) {
    case NS_K_UN_RELU:
        return x > 0.0f ? x : 0.0f;
    case NS_K_UN_LEAKY_RELU:
        return x > 0.0f ? x : alpha * x;
    case NS_K_UN_GELU:
        return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
    case NS_K_UN_TANH:
        return tanhf(x);
    default:
        return 1.0f / (1.0f + expf(-x));
    }
}

/* The term added to gx: dy/dx * gy, given input x and output y. */
NS_HD static inline float ns_k_unary_grad(int op, float x, float y, float gy, float alpha) {
    switch (op) {
    case NS_K_UN_RELU:
        return x > 0.0f ? gy : 0.0f;
    case NS_K_UN_LEAKY_RELU:
        return x > 0.0f ? gy : alpha * gy;
    case NS_K_UN_GELU: {
        float cdf = 0.5f * (1.0f + erff(x * 0.70710678118654752f));
        float pdf = 0.39894228040143268f * expf(-0.5f * x * x);
        return gy * (cdf + x * pdf);
    }
    case NS_K_UN_TANH:
        return gy * (1.0f - y * y);
    default:
        return gy * y * (1.0f - y);
    }
}

/* ------------------------------------------------------------------ broadcasting views */

/* Channel of element idx in an (outer, c, inner) view. */
NS_HD static inline int64_t ns_k_channel(int64_t idx, int64_t c, int64_t inner) {
    return (idx / inner) % c;
}

/* expand_acc: the gy element (o, i) that feeds gx element idx of (outer, len, inner). */
NS_HD static inline int64_t ns_k_expand_src(int64_t idx, int64_t len, int64_t inner) {
    return (idx / (len * inner)) * inner + idx % inner;
}

/* copy_blocks: element idx of a (rows, len) block walk -> source and destination offsets. */
NS_HD static inline void ns_k_block_offsets(int64_t idx, int64_t len, int64_t src_stride,
                                            int64_t dst_stride, int64_t *src, int64_t *dst) {
    int64_t r = idx / len, j = idx % len;
    *src = r * src_stride + j;
    *dst = r * dst_stride + j;
}

/* reduce with inner > 1: output (o, i) summed over l in order, in float like the CPU. */
NS_HD static inline float ns_k_reduce_inner(const float *x, int64_t idx, int64_t len, int64_t inner,
                                            float scale) {
    int64_t o = idx / inner, i = idx % inner;
    const float *p = x + o * len * inner + i;
    float s = 0.0f;
    for (int64_t l = 0; l < len; l++) s += p[l * inner];
    return s * scale;
}

/* ------------------------------------------------------------------ batch norm */

/* y = x * s + t with s = invstd*gamma, t = beta - mean*s, for element idx of (outer, c, inner). */
NS_HD static inline float ns_k_bn_apply(const float *x, const float *mean, const float *invstd,
                                        const float *gamma, const float *beta, int64_t idx,
                                        int64_t c, int64_t inner) {
    int64_t j = ns_k_channel(idx, c, inner);
    float s = invstd[j] * (gamma ? gamma[j] : 1.0f);
    float t = (beta ? beta[j] : 0.0f) - mean[j] * s;
    return x[idx] * s + t;
}

/* ------------------------------------------------------------------ convolution helpers */

typedef struct {
    int64_t cin, h, w, k, stride, pad, ho, wo;
} ns_k_conv_geom;

/* Value of col[idx] for col (cin*k*k, ho*wo) of one image x (cin, h, w). */
NS_HD static inline float ns_k_im2col(const float *x, int64_t idx, ns_k_conv_geom g) {
    int64_t P = g.ho * g.wo;
    int64_t row = idx / P, pix = idx % P;
    int64_t oy = pix / g.wo, ox = pix % g.wo;
    int64_t kj = row % g.k, ki = (row / g.k) % g.k, c = row / (g.k * g.k);
    int64_t iy = oy * g.stride - g.pad + ki, ix = ox * g.stride - g.pad + kj;
    return (iy >= 0 && iy < g.h && ix >= 0 && ix < g.w) ? x[(c * g.h + iy) * g.w + ix] : 0.0f;
}

/* New value of gx[idx] (gx (cin, h, w)) after col2im accumulation: acc is the old value; the
 * col entries that map to this pixel are added in the CPU's order (ki, kj increasing). */
NS_HD static inline float ns_k_col2im(const float *col, float acc, int64_t idx, ns_k_conv_geom g) {
    int64_t ix = idx % g.w, iy = (idx / g.w) % g.h, c = idx / (g.w * g.h);
    int64_t P = g.ho * g.wo;
    for (int64_t ki = 0; ki < g.k; ki++) {
        int64_t ny = iy + g.pad - ki; /* = oy * stride */
        if (ny < 0 || ny % g.stride) continue;
        int64_t oy = ny / g.stride;
        if (oy >= g.ho) continue;
        for (int64_t kj = 0; kj < g.k; kj++) {
            int64_t nx = ix + g.pad - kj;
            if (nx < 0 || nx % g.stride) continue;
            int64_t ox = nx / g.stride;
            if (ox >= g.wo) continue;
            acc += col[((c * g.k + ki) * g.k + kj) * P + oy * g.wo + ox];
        }
    }
    return acc;
}

/* ------------------------------------------------------------------ pooling over planes */

typedef struct {
    int64_t h, w, k, stride, pad, ho, wo;
} ns_k_pool_geom;

/* Max pool output idx (over planes*ho*wo): writes the maximum and its plane index (-1 when the
 * window holds no input pixel). NaN wins, like the CPU. */
NS_HD static inline void ns_k_max_pool(const float *x, int64_t idx, ns_k_pool_geom g, float *y,
                                       int32_t *am) {
    int64_t ox = idx % g.wo, oy = (idx / g.wo) % g.ho, p = idx / (g.wo * g.ho);
    const float *xp = x + p * g.h * g.w;
    float best = -INFINITY;
    int32_t bi = -1;
    for (int64_t ki = 0; ki < g.k; ki++) {
        int64_t iy = oy * g.stride - g.pad + ki;
        if (iy < 0 || iy >= g.h) continue;
        for (int64_t kj = 0; kj < g.k; kj++) {
            int64_t ix = ox * g.stride - g.pad + kj;
            if (ix < 0 || ix >= g.w) continue;
            float v = xp[iy * g.w + ix];
            if (v > best || bi < 0 || isnan(v)) {
                best = v;
                bi = (int32_t)(iy * g.w + ix);
            }
        }
    }
    y[idx] = best;
    am[idx] = bi;
}

/* Avg pool output idx (divides by k*k, padding included like PyTorch's default). */
NS_HD static inline float ns_k_avg_pool(const float *x, int64_t idx, ns_k_pool_geom g) {
    int64_t ox = idx % g.wo, oy = (idx / g.wo) % g.ho, p = idx / (g.wo * g.ho);
    float inv = 1.0f / (float)(g.k * g.k), acc = 0;
    for (int64_t ki = 0; ki < g.k; ki++) {
        int64_t iy = oy * g.stride - g.pad + ki;
        if (iy < 0 || iy >= g.h) continue;
        for (int64_t kj = 0; kj < g.k; kj++) {
            int64_t ix = ox * g.stride - g.pad + kj;
            if (ix >= 0 && ix < g.w) acc += x[(p * g.h + iy) * g.w + ix];
        }
    }
    return acc * inv;
}

/* Output range [lo, hi) along one axis whose windows contain input position i. */
NS_HD static inline void ns_k_pool_range(int64_t i, int64_t k, int64_t stride, int64_t pad,
                                         int64_t nout, int64_t *lo, int64_t *hi) {
    /* o*stride - pad <= i <= o*stride - pad + k - 1 */
    int64_t a = i + pad - k + 1; /* o*stride >= a */
    int64_t l = a <= 0 ? 0 : ns_cdiv(a, stride);
    int64_t h = (i + pad) / stride + 1; /* o*stride <= i + pad */
    *lo = l;
    *hi = h < nout ? h : nout;
}

/* New gx[idx] (over planes*h*w) after avg-pool backward: the CPU's scatter order is output
 * (oy, ox) increasing, so the gather adds in that order. */
NS_HD static inline float ns_k_avg_pool_bwd(const float *gy, float acc, int64_t idx,
                                            ns_k_pool_geom g) {
    int64_t ix = idx % g.w, iy = (idx / g.w) % g.h, p = idx / (g.w * g.h);
    float inv = 1.0f / (float)(g.k * g.k);
    int64_t y0, y1, x0, x1;
    ns_k_pool_range(iy, g.k, g.stride, g.pad, g.ho, &y0, &y1);
    ns_k_pool_range(ix, g.k, g.stride, g.pad, g.wo, &x0, &x1);
    for (int64_t oy = y0; oy < y1; oy++)
        for (int64_t ox = x0; ox < x1; ox++) acc += gy[(p * g.ho + oy) * g.wo + ox] * inv;
    return acc;
}

/* Max-pool backward for one plane, in the CPU's order (outputs increasing). One thread per
 * plane: windows may overlap, and this keeps the sums deterministic without atomics. */
NS_HD static inline void ns_k_max_pool_bwd_plane(const float *gy, const int32_t *am, float *gx,
                                                 int64_t p, int64_t hw, int64_t howo) {
    for (int64_t i = 0; i < howo; i++)
        if (am[p * howo + i] >= 0) gx[p * hw + am[p * howo + i]] += gy[p * howo + i];
}

/* ------------------------------------------------------------------ fused optimizers */

/* Per-slot constants of an SGD update (flags are per call, lr/wd per slot). */
typedef struct {
    float momentum, damp, lr, wd; /* damp = 1 - dampening */
    int nesterov, first, use_mom, use_wd;
} ns_k_sgd;

/* Updates w[i] (and buf[i]); out = {g^2, (w_new - w_old)^2, w_new^2}; returns 1 when g or w_new
 * is NaN/Inf. Same operations as sgd_elem in src/optim_cpu.c. */
NS_HD static inline int ns_k_sgd_elem(const ns_k_sgd *a, float *w, float *buf, const float *g,
                                      int64_t i, float out[3]) {
    float gi = g[i], wi = w[i];
    float d = a->use_wd ? gi + a->wd * wi : gi;
    if (a->use_mom) {
        float b = a->first ? d : buf[i] * a->momentum + a->damp * d;
        buf[i] = b;
        d = a->nesterov ? d + a->momentum * b : b;
    }
    float wn = wi - a->lr * d, dw = wn - wi;
    w[i] = wn;
    out[0] = gi * gi;
    out[1] = dw * dw;
    out[2] = wn * wn;
    return !isfinite(gi) || !isfinite(wn);
}

/* Per-slot constants of an Adam/AdamW update. */
typedef struct {
    float beta1, beta2, a1, a2, eps, wd, decay, step_size, bc2_sqrt;
    int decoupled, use_wd;
} ns_k_adam;

/* Fills the per-slot constants exactly as ns_cpu_adam_step does. */
static inline ns_k_adam ns_k_adam_args(float beta1, float beta2, float eps, int decoupled,
                                       float bias_corr1, float bc2_sqrt, float lr, float wd) {
    ns_k_adam a;
    a.beta1 = beta1;
    a.beta2 = beta2;
    a.a1 = 1.0f - beta1;
    a.a2 = 1.0f - beta2;
    a.eps = eps;
    a.wd = wd;
    a.decay = 1.0f - lr * wd;
    a.step_size = lr / bias_corr1;
    a.bc2_sqrt = bc2_sqrt;
    a.decoupled = decoupled && wd != 0.0f;
    a.use_wd = wd != 0.0f;
    return a;
}

/* Updates w[i], m[i], v[i]; out and the return value as ns_k_sgd_elem. Same operations as
 * adam_elem in src/optim_cpu.c. */
NS_HD static inline int ns_k_adam_elem(const ns_k_adam *a, float *w, float *m, float *v,
                                       const float *g, int64_t i, float out[3]) {
    float gi = g[i], w0 = w[i], wi = w0, d = gi;
    if (a->use_wd) {
        if (a->decoupled)
            wi = wi * a->decay;
        else
            d = gi + a->wd * wi;
    }
    float mi = m[i] * a->beta1 + a->a1 * d;
    float vi = v[i] * a->beta2 + a->a2 * d * d;
    m[i] = mi;
    v[i] = vi;
    float denom = sqrtf(vi) / a->bc2_sqrt + a->eps;
    float wn = wi - a->step_size * (mi / denom), dw = wn - w0;
    w[i] = wn;
    out[0] = gi * gi;
    out[1] = dw * dw;
    out[2] = wn * wn;
    return !isfinite(gi) || !isfinite(wn);
}

#endif
