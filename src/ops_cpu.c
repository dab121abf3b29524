/* The CPU backend: plain C loops (auto-vectorised) and OpenBLAS for GEMM. */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* ------------------------------------------------------------------ memory */

static void *cpu_alloc(size_t bytes) {
    return aligned_alloc(64, (bytes + 63) & ~(size_t)63);
}
static void cpu_free(void *p) {
    free(p);
}
static void cpu_memcpy(void *dst, const void *src, size_t bytes) {
    if (dst != src) memmove(dst, src, bytes);
}
static void cpu_fill(float *x, int64_t n, float v) {
    if (v == 0.0f && !signbit(v)) {
        memset(x, 0, (size_t)n * sizeof *x);
        return;
    }
    for (int64_t i = 0; i < n; i++) x[i] = v;
}
static void cpu_sync(void) {}

/* ------------------------------------------------------------------ gemm */

static void cpu_gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
                     const float *b, float beta, float *c) {
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                (int)m, (int)n, (int)k, alpha, a, ta ? (int)m : (int)k, b, tb ? (int)k : (int)n,
                beta, c, (int)n);
}

/* ------------------------------------------------------------------ elementwise */

static void cpu_binary(enum ns_binary_op op, const float *a, const float *b, float *y, int64_t n) {
    switch (op) {
    case NS_BIN_ADD:
        for (int64_t i = 0; i < n; i++) y[i] = a[i] + b[i];
        break;
    case NS_BIN_SUB:
        for (int64_t i = 0; i < n; i++) y[i] = a[i] - b[i];
        break;
    case NS_BIN_MUL:
        for (int64_t i = 0; i < n; i++) y[i] = a[i] * b[i];
        break;
    }
}

static void cpu_axpy(float alpha, const float *x, float *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] += alpha * x[i];
}

static void cpu_mul_acc(const float *a, const float *b, float *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] += a[i] * b[i];
}

static void cpu_affine(const float *x, float *y, int64_t n, float s, float t) {
    for (int64_t i = 0; i < n; i++) y[i] = x[i] * s + t;
}

static void cpu_unary(enum ns_unary_op op, const float *x, float *y, int64_t n, float alpha) {
    switch (op) {
    case NS_UN_RELU: /* branchless: a data-dependent branch mispredicts half the time */
        for (int64_t i = 0; i < n; i++) {
            uint32_t b;
            memcpy(&b, &x[i], 4);
            b &= -(uint32_t)(x[i] > 0.0f);
            memcpy(&y[i], &b, 4);
        }
        break;
    case NS_UN_LEAKY_RELU:
        for (int64_t i = 0; i < n; i++) y[i] = x[i] > 0.0f ? x[i] : alpha * x[i];
        break;
    case NS_UN_GELU:
        for (int64_t i = 0; i < n; i++)
            y[i] = 0.5f * x[i] * (1.0f + erff(x[i] * 0.70710678118654752f));
        break;
    case NS_UN_TANH:
        for (int64_t i = 0; i < n; i++) y[i] = tanhf(x[i]);
        break;
    case NS_UN_SIGMOID:
        for (int64_t i = 0; i < n; i++) y[i] = 1.0f / (1.0f + expf(-x[i]));
        break;
    }
}

static void cpu_unary_bwd_acc(enum ns_unary_op op, const float *x, const float *y, const float *gy,
                              float *gx, int64_t n, float alpha) {
    switch (op) {
    case NS_UN_RELU:
        for (int64_t i = 0; i < n; i++) {
            float g = gy[i]; /* unconditional loads let the compiler use blends */
            gx[i] += x[i] > 0.0f ? g : 0.0f;
        }
        break;
    case NS_UN_LEAKY_RELU:
        for (int64_t i = 0; i < n; i++) {
            float g = gy[i];
            gx[i] += x[i] > 0.0f ? g : alpha * g;
        }
        break;
    case NS_UN_GELU:
        for (int64_t i = 0; i < n; i++) {
            float cdf = 0.5f * (1.0f + erff(x[i] * 0.70710678118654752f));
            float pdf = 0.39894228040143268f * expf(-0.5f * x[i] * x[i]);
            gx[i] += gy[i] * (cdf + x[i] * pdf);
        }
        break;
    case NS_UN_TANH:
        for (int64_t i = 0; i < n; i++) gx[i] += gy[i] * (1.0f - y[i] * y[i]);
        break;
    case NS_UN_SIGMOID:
        for (int64_t i = 0; i < n; i++) gx[i] += gy[i] * y[i] * (1.0f - y[i]);
        break;
    }
}

/* ------------------------------------------------------------------ broadcasting */

static void cpu_bias_add(const float *x, const float *b, float *y, int64_t outer, int64_t c,
                         int64_t inner) {
    if (inner == 1) {
        for (int64_t o = 0; o < outer; o++)
            for (int64_t j = 0; j < c; j++) y[o * c + j] = x[o * c + j] + b[j];
        return;
    }
    for (int64_t o = 0; o < outer; o++)
        for (int64_t j = 0; j < c; j++) {
            const float *xs = x + (o * c + j) * inner;
            float *ys = y + (o * c + j) * inner;
            float bj = b[j];
            for (int64_t i = 0; i < inner; i++) ys[i] = xs[i] + bj;
        }
}

static void cpu_reduce(const float *x, float *y, int64_t outer, int64_t len, int64_t inner,
                       float scale) {
    for (int64_t o = 0; o < outer; o++) {
        float *yo = y + o * inner;
        if (inner == 1) {
            double s = 0;
            const float *xo = x + o * len;
            for (int64_t l = 0; l < len; l++) s += xo[l];
            yo[0] = (float)(s * scale);
            continue;
        }
        for (int64_t i = 0; i < inner; i++) yo[i] = 0.0f;
        for (int64_t l = 0; l < len; l++) {
            const float *xl = x + (o * len + l) * inner;
            for (int64_t i = 0; i < inner; i++) yo[i] += xl[i];
        }
        for (int64_t i = 0; i < inner; i++) yo[i] *= scale;
    }
}

static void cpu_expand_acc(const float *gy, float *gx, int64_t outer, int64_t len, int64_t inner,
                           float scale) {
    for (int64_t o = 0; o < outer; o++)
        for (int64_t l = 0; l < len; l++) {
            float *gl = gx + (o * len + l) * inner;
            const float *go = gy + o * inner;
            for (int64_t i = 0; i < inner; i++) gl[i] += scale * go[i];
        }
}

static void cpu_transpose(const float *x, float *y, int64_t rows, int64_t cols, bool acc) {
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++) {
            if (acc)
                y[c * rows + r] += x[r * cols + c];
            else
                y[c * rows + r] = x[r * cols + c];
        }
}

static void cpu_copy_blocks(const float *src, int64_t ss, float *dst, int64_t ds, int64_t rows,
                            int64_t len, bool acc) {
    for (int64_t r = 0; r < rows; r++) {
        if (acc) {
            for (int64_t j = 0; j < len; j++) dst[r * ds + j] += src[r * ss + j];
        } else {
            memcpy(dst + r * ds, src + r * ss, (size_t)len * 4);
        }
    }
}

/* ------------------------------------------------------------------ softmax and losses */

static void cpu_softmax(const float *x, float *y, int64_t rows, int64_t cols, bool log) {
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * cols;
        float *yr = y + r * cols;
        float mx = xr[0];
        for (int64_t c = 1; c < cols; c++) mx = xr[c] > mx ? xr[c] : mx;
        double s = 0;
        for (int64_t c = 0; c < cols; c++) s += exp((double)(xr[c] - mx));
        if (log) {
            float lse = mx + (float)logl(s);
            for (int64_t c = 0; c < cols; c++) yr[c] = xr[c] - lse;
        } else {
            float inv = (float)(1.0 / s);
            for (int64_t c = 0; c < cols; c++) yr[c] = expf(xr[c] - mx) * inv;
        }
    }
}

static void cpu_softmax_bwd_acc(const float *y, const float *gy, float *gx, int64_t rows,
                                int64_t cols, bool log) {
    for (int64_t r = 0; r < rows; r++) {
        const float *yr = y + r * cols, *gr = gy + r * cols;
        float *xr = gx + r * cols;
        double s = 0;
        if (log) {
            for (int64_t c = 0; c < cols; c++) s += gr[c];
            for (int64_t c = 0; c < cols; c++) xr[c] += gr[c] - expf(yr[c]) * (float)s;
        } else {
            for (int64_t c = 0; c < cols; c++) s += (double)gr[c] * yr[c];
            for (int64_t c = 0; c < cols; c++) xr[c] += yr[c] * (gr[c] - (float)s);
        }
    }
}

static int64_t cpu_cross_entropy(const float *logits, const int32_t *t, float *logp, float *loss,
                                 int64_t rows, int64_t cols) {
    for (int64_t r = 0; r < rows; r++)
        if (t[r] < 0 || t[r] >= cols) return r;
    cpu_softmax(logits, logp, rows, cols, true);
    double s = 0;
    for (int64_t r = 0; r < rows; r++) s -= logp[r * cols + t[r]];
    *loss = (float)(s / (double)rows);
    return -1;
}

static void cpu_cross_entropy_bwd_acc(const float *logp, const int32_t *t, const float *g_dev,
                                      float *gx, int64_t rows, int64_t cols) {
    float g = *g_dev / (float)rows;
    for (int64_t r = 0; r < rows; r++) {
        const float *lr = logp + r * cols;
        float *xr = gx + r * cols;
        for (int64_t c = 0; c < cols; c++) xr[c] += g * expf(lr[c]);
        xr[t[r]] -= g;
    }
}

/* AVX2 has a vector 32-bit multiply: worth a clone for the hash. */
__attribute__((target_clones("avx2", "default"))) static void
cpu_dropout(const float *x, float *y, int64_t n, float p, uint64_t seed, uint64_t counter,
            bool acc) {
    float scale = 1.0f / (1.0f - p);
    /* keep when (hash >> 8) >= p * 2^24, i.e. u >= p with u's 24-bit resolution */
    int32_t thr = (int32_t)(p * 16777216.0f);
    int64_t i = 0;
    while (i < n) {
        uint64_t c = counter + (uint64_t)i;
        uint32_t key = ns_rng_key(seed, (uint32_t)(c >> 32));
        uint32_t lo = (uint32_t)c;
        /* the key changes when the low 32 bits wrap */
        int64_t len = (int64_t)((uint64_t)UINT32_MAX - lo) + 1;
        if (len > n - i) len = n - i;
        const float *xs = x + i;
        float *ys = y + i;
        if (acc) {
            for (int64_t j = 0; j < len; j++) {
                int32_t h = (int32_t)(ns_fmix32((lo + (uint32_t)j) ^ key) >> 8);
                ys[j] += xs[j] * (h >= thr ? scale : 0.0f);
            }
        } else {
            for (int64_t j = 0; j < len; j++) {
                int32_t h = (int32_t)(ns_fmix32((lo + (uint32_t)j) ^ key) >> 8);
                ys[j] = xs[j] * (h >= thr ? scale : 0.0f); /* x * mask * scale, like PyTorch */
            }
        }
        i += len;
    }
}

/* ------------------------------------------------------------------ batch norm */

static void cpu_bn_stats(const float *x, float *mean, float *var, int64_t outer, int64_t c,
                         int64_t inner) {
    double cnt = (double)(outer * inner);
    if (inner == 1 && c <= 4096) { /* (N, C): walk rows, contiguous over channels */
        double s[4096], v[4096];
        for (int64_t j = 0; j < c; j++) s[j] = v[j] = 0;
        for (int64_t o = 0; o < outer; o++)
            for (int64_t j = 0; j < c; j++) s[j] += x[o * c + j];
        for (int64_t j = 0; j < c; j++) s[j] /= cnt;
        for (int64_t o = 0; o < outer; o++)
            for (int64_t j = 0; j < c; j++) {
                double d = x[o * c + j] - s[j];
                v[j] += d * d;
            }
        for (int64_t j = 0; j < c; j++) {
            mean[j] = (float)s[j];
            var[j] = (float)(v[j] / cnt);
        }
        return;
    }
    for (int64_t j = 0; j < c; j++) {
        double s = 0;
        for (int64_t o = 0; o < outer; o++) {
            const float *p = x + (o * c + j) * inner;
            for (int64_t i = 0; i < inner; i++) s += p[i];
        }
        double m = s / cnt, v = 0;
        for (int64_t o = 0; o < outer; o++) {
            const float *p = x + (o * c + j) * inner;
            for (int64_t i = 0; i < inner; i++) v += (p[i] - m) * (p[i] - m);
        }
        mean[j] = (float)m;
        var[j] = (float)(v / cnt);
    }
}

static void cpu_bn_apply(const float *x, const float *mean, const float *invstd, const float *gamma,
                         const float *beta, float *y, int64_t outer, int64_t c, int64_t inner) {
    if (inner == 1 && c <= 4096) {
        float s[4096], t[4096];
        for (int64_t j = 0; j < c; j++) {
            s[j] = invstd[j] * (gamma ? gamma[j] : 1.0f);
            t[j] = (beta ? beta[j] : 0.0f) - mean[j] * s[j];
        }
        for (int64_t o = 0; o < outer; o++)
            for (int64_t j = 0; j < c; j++) y[o * c + j] = x[o * c + j] * s[j] + t[j];
        return;
    }
    for (int64_t o = 0; o < outer; o++)
        for (int64_t j = 0; j < c; j++) {
            float s = invstd[j] * (gamma ? gamma[j] : 1.0f);
            float t = (beta ? beta[j] : 0.0f) - mean[j] * s;
            const float *xp = x + (o * c + j) * inner;
            float *yp = y + (o * c + j) * inner;
            for (int64_t i = 0; i < inner; i++) yp[i] = xp[i] * s + t;
        }
}

static void cpu_bn_update_running(float *rm, float *rv, const float *mean, const float *var,
                                  int64_t c, float momentum, int64_t count) {
    float unbias = count > 1 ? (float)count / (float)(count - 1) : 1.0f;
    for (int64_t j = 0; j < c; j++) {
        rm[j] = (1.0f - momentum) * rm[j] + momentum * mean[j];
        rv[j] = (1.0f - momentum) * rv[j] + momentum * var[j] * unbias;
    }
}

static void cpu_bn_invstd(const float *var, float *invstd, int64_t c, float eps) {
    for (int64_t j = 0; j < c; j++) invstd[j] = 1.0f / sqrtf(var[j] + eps);
}

static void cpu_bn_bwd_acc(const float *x, const float *mean, const float *invstd,
                           const float *gamma, const float *gy, float *gx, float *ggamma,
                           float *gbeta, int64_t outer, int64_t c, int64_t inner, bool training) {
    double cnt = (double)(outer * inner);
    if (inner == 1 && c <= 4096 && training) {
        double sg[4096], sgx[4096];
        float kk[4096], mg[4096], mgx[4096];
        for (int64_t j = 0; j < c; j++) sg[j] = sgx[j] = 0;
        for (int64_t o = 0; o < outer; o++)
            for (int64_t j = 0; j < c; j++) {
                float g = gy[o * c + j];
                sg[j] += g;
                sgx[j] += g * (x[o * c + j] - mean[j]) * invstd[j];
            }
        for (int64_t j = 0; j < c; j++) {
            if (ggamma) ggamma[j] += (float)sgx[j];
            if (gbeta) gbeta[j] += (float)sg[j];
            kk[j] = (gamma ? gamma[j] : 1.0f) * invstd[j];
            mg[j] = (float)(sg[j] / cnt);
            mgx[j] = (float)(sgx[j] / cnt);
        }
        if (!gx) return;
        for (int64_t o = 0; o < outer; o++)
            for (int64_t j = 0; j < c; j++) {
                float xh = (x[o * c + j] - mean[j]) * invstd[j];
                gx[o * c + j] += kk[j] * (gy[o * c + j] - mg[j] - xh * mgx[j]);
            }
        return;
    }
    for (int64_t j = 0; j < c; j++) {
        double sg = 0, sgx = 0; /* sum(gy), sum(gy * xhat) */
        for (int64_t o = 0; o < outer; o++) {
            const float *xp = x + (o * c + j) * inner, *gp = gy + (o * c + j) * inner;
            for (int64_t i = 0; i < inner; i++) {
                sg += gp[i];
                sgx += gp[i] * (xp[i] - mean[j]) * invstd[j];
            }
        }
        if (ggamma) ggamma[j] += (float)sgx;
        if (gbeta) gbeta[j] += (float)sg;
        if (!gx) continue;
        float g = gamma ? gamma[j] : 1.0f;
        float k = g * invstd[j];
        float mg = (float)(sg / cnt), mgx = (float)(sgx / cnt);
        for (int64_t o = 0; o < outer; o++) {
            const float *xp = x + (o * c + j) * inner, *gp = gy + (o * c + j) * inner;
            float *dp = gx + (o * c + j) * inner;
            if (training) {
                for (int64_t i = 0; i < inner; i++) {
                    float xh = (xp[i] - mean[j]) * invstd[j];
                    dp[i] += k * (gp[i] - mg - xh * mgx);
                }
            } else {
                for (int64_t i = 0; i < inner; i++) dp[i] += k * gp[i];
            }
        }
    }
}

/* ------------------------------------------------------------------ conv helpers, pooling */

static void cpu_im2col(const float *x, float *col, int64_t cin, int64_t h, int64_t w, int64_t k,
                       int64_t stride, int64_t pad, int64_t ho, int64_t wo) {
    for (int64_t c = 0; c < cin; c++)
        for (int64_t ki = 0; ki < k; ki++)
            for (int64_t kj = 0; kj < k; kj++) {
                float *row = col + ((c * k + ki) * k + kj) * ho * wo;
                for (int64_t oy = 0; oy < ho; oy++) {
                    int64_t iy = oy * stride - pad + ki;
                    for (int64_t ox = 0; ox < wo; ox++) {
                        int64_t ix = ox * stride - pad + kj;
                        row[oy * wo + ox] = (iy >= 0 && iy < h && ix >= 0 && ix < w)
                                                ? x[(c * h + iy) * w + ix]
                                                : 0.0f;
                    }
                }
            }
}

static void cpu_col2im_acc(const float *col, float *gx, int64_t cin, int64_t h, int64_t w,
                           int64_t k, int64_t stride, int64_t pad, int64_t ho, int64_t wo) {
    for (int64_t c = 0; c < cin; c++)
        for (int64_t ki = 0; ki < k; ki++)
            for (int64_t kj = 0; kj < k; kj++) {
                const float *row = col + ((c * k + ki) * k + kj) * ho * wo;
                for (int64_t oy = 0; oy < ho; oy++) {
                    int64_t iy = oy * stride - pad + ki;
                    if (iy < 0 || iy >= h) continue;
                    for (int64_t ox = 0; ox < wo; ox++) {
                        int64_t ix = ox * stride - pad + kj;
                        if (ix >= 0 && ix < w) gx[(c * h + iy) * w + ix] += row[oy * wo + ox];
                    }
                }
            }
}

static void cpu_max_pool(const float *x, float *y, int32_t *am, int64_t planes, int64_t h,
                         int64_t w, int64_t k, int64_t s, int64_t pad, int64_t ho, int64_t wo) {
    for (int64_t p = 0; p < planes; p++) {
        const float *xp = x + p * h * w;
        for (int64_t oy = 0; oy < ho; oy++)
            for (int64_t ox = 0; ox < wo; ox++) {
                float best = -INFINITY;
                int32_t bi = -1;
                for (int64_t ki = 0; ki < k; ki++) {
                    int64_t iy = oy * s - pad + ki;
                    if (iy < 0 || iy >= h) continue;
                    for (int64_t kj = 0; kj < k; kj++) {
                        int64_t ix = ox * s - pad + kj;
                        if (ix < 0 || ix >= w) continue;
                        float v = xp[iy * w + ix];
                        if (v > best || bi < 0 || isnan(v)) {
                            best = v;
                            bi = (int32_t)(iy * w + ix);
                        }
                    }
                }
                y[(p * ho + oy) * wo + ox] = best;
                am[(p * ho + oy) * wo + ox] = bi;
            }
    }
}

static void cpu_max_pool_bwd_acc(const float *gy, const int32_t *am, float *gx, int64_t planes,
                                 int64_t hw, int64_t howo) {
    for (int64_t p = 0; p < planes; p++)
        for (int64_t i = 0; i < howo; i++)
            if (am[p * howo + i] >= 0) gx[p * hw + am[p * howo + i]] += gy[p * howo + i];
}

/* avg_pool divides by k*k including padding (PyTorch's count_include_pad=True default). */
static void cpu_avg_pool(const float *x, float *y, int64_t planes, int64_t h, int64_t w, int64_t k,
                         int64_t s, int64_t pad, int64_t ho, int64_t wo) {
    float inv = 1.0f / (float)(k * k);
    for (int64_t p = 0; p < planes; p++)
        for (int64_t oy = 0; oy < ho; oy++)
            for (int64_t ox = 0; ox < wo; ox++) {
                float acc = 0;
                for (int64_t ki = 0; ki < k; ki++) {
                    int64_t iy = oy * s - pad + ki;
                    if (iy < 0 || iy >= h) continue;
                    for (int64_t kj = 0; kj < k; kj++) {
                        int64_t ix = ox * s - pad + kj;
                        if (ix >= 0 && ix < w) acc += x[(p * h + iy) * w + ix];
                    }
                }
                y[(p * ho + oy) * wo + ox] = acc * inv;
            }
}

static void cpu_avg_pool_bwd_acc(const float *gy, float *gx, int64_t planes, int64_t h, int64_t w,
                                 int64_t k, int64_t s, int64_t pad, int64_t ho, int64_t wo) {
    float inv = 1.0f / (float)(k * k);
    for (int64_t p = 0; p < planes; p++)
        for (int64_t oy = 0; oy < ho; oy++)
            for (int64_t ox = 0; ox < wo; ox++) {
                float g = gy[(p * ho + oy) * wo + ox] * inv;
                for (int64_t ki = 0; ki < k; ki++) {
                    int64_t iy = oy * s - pad + ki;
                    if (iy < 0 || iy >= h) continue;
                    for (int64_t kj = 0; kj < k; kj++) {
                        int64_t ix = ox * s - pad + kj;
                        if (ix >= 0 && ix < w) gx[(p * h + iy) * w + ix] += g;
                    }
                }
            }
}

/* ------------------------------------------------------------------ statistics */

/* Sum of squares of n floats with 16 independent float lanes (vectorised without -ffast-math),
 * folded into a double every 4096 elements. */
__attribute__((target_clones("avx2", "default"))) static double sumsq(const float *x, int64_t n) {
    double total = 0;
    for (int64_t b = 0; b < n; b += 4096) {
        int64_t e = b + 4096 < n ? b + 4096 : n, i = b;
        float acc[16] = {0};
        for (; i + 16 <= e; i += 16)
            for (int k = 0; k < 16; k++) acc[k] += x[i + k] * x[i + k];
        for (; i < e; i++) acc[0] += x[i] * x[i];
        for (int k = 0; k < 16; k++) total += acc[k];
    }
    return total;
}

static void cpu_norms(int n, const float *const *xs, const int64_t *lens, double *out,
                      int64_t *nonfinite) {
    for (int t = 0; t < n; t++) {
        out[t] = sumsq(xs[t], lens[t]);
        int64_t bad = 0;
        if (!isfinite(out[t]))
            for (int64_t i = 0; i < lens[t]; i++) bad += !isfinite(xs[t][i]);
        nonfinite[t] = bad;
    }
}

__attribute__((target_clones("avx2", "default"))) static void
cpu_act_stats(const float *x, int64_t rows, int64_t feat, int64_t inner, double *sum,
              double *sumsq_out, int64_t *zeros, int64_t *dead, int64_t *nonfinite) {
    /* One pass. Sums and zero counts in 16 register lanes (vectorised without -ffast-math),
     * folded into doubles per row; per feature only a "seen non-zero" flag. */
    enum { STACK = 4096, L = 16 };
    uint32_t stack_nz[STACK]; /* per feature: OR of |v|'s bits, zero while all values are 0 */
    uint32_t *nz = feat > STACK ? calloc((size_t)feat, sizeof *nz) : stack_nz;
    if (!nz) abort();
    if (feat <= STACK) memset(nz, 0, sizeof *nz * (size_t)feat);
    double s = 0, ss = 0;
    int64_t z = 0, fi = feat * inner;
    for (int64_t r = 0; r < rows; r++) {
        const float *p = x + r * fi;
        float as[L] = {0}, ass[L] = {0};
        int32_t az[L] = {0};
        if (inner == 1) {
            int64_t f = 0;
            for (; f + L <= feat; f += L)
                for (int k = 0; k < L; k++) {
                    float v = p[f + k];
                    uint32_t b;
                    memcpy(&b, &v, 4);
                    b &= 0x7FFFFFFFu;
                    as[k] += v;
                    ass[k] += v * v;
                    az[k] += b == 0;
                    nz[f + k] |= b;
                }
            for (; f < feat; f++) {
                float v = p[f];
                as[0] += v;
                ass[0] += v * v;
                az[0] += v == 0.0f;
                nz[f] |= v != 0.0f ? 1u : 0u;
            }
        } else {
            for (int64_t f = 0; f < feat; f++) {
                const float *q = p + f * inner;
                int32_t fz = 0;
                int64_t i = 0;
                for (; i + L <= inner; i += L)
                    for (int k = 0; k < L; k++) {
                        float v = q[i + k];
                        int32_t isz = v == 0.0f;
                        as[k] += v;
                        ass[k] += v * v;
                        az[k] += isz;
                        fz += isz;
                    }
                for (; i < inner; i++) {
                    float v = q[i];
                    as[0] += v;
                    ass[0] += v * v;
                    az[0] += v == 0.0f;
                    fz += v == 0.0f;
                }
                nz[f] |= fz != inner ? 1u : 0u;
            }
        }
        for (int k = 0; k < L; k++) {
            s += as[k];
            ss += ass[k];
            z += az[k];
        }
    }
    int64_t d = 0;
    for (int64_t f = 0; f < feat; f++) d += !nz[f];
    if (nz != stack_nz) free(nz);
    int64_t bad = 0;
    if (!isfinite(s) || !isfinite(ss))
        for (int64_t i = 0; i < rows * fi; i++) bad += !isfinite(x[i]);
    *sum = s;
    *sumsq_out = ss;
    *zeros = z;
    *dead = d;
    *nonfinite = bad;
}

/* Fused optimizer kernels live in optim_cpu.c. */
void ns_cpu_sgd_step(int n, const ns_optim_slot *slots, float momentum, float dampening,
                     bool nesterov, bool first_step, double *stats);
void ns_cpu_adam_step(int n, const ns_optim_slot *slots, float beta1, float beta2, float eps,
                      bool decoupled_wd, float bias_corr1, float bias_corr2, double *stats);

const ns_backend ns_cpu_backend = {
    .name = "cpu",
    .alloc = cpu_alloc,
    .free = cpu_free,
    .to_host = cpu_memcpy,
    .from_host = cpu_memcpy,
    .copy = cpu_memcpy,
    .fill = cpu_fill,
    .sync = cpu_sync,
    .gemm = cpu_gemm,
    .binary = cpu_binary,
    .axpy = cpu_axpy,
    .mul_acc = cpu_mul_acc,
    .affine = cpu_affine,
    .unary = cpu_unary,
    .unary_bwd_acc = cpu_unary_bwd_acc,
    .bias_add = cpu_bias_add,
    .reduce = cpu_reduce,
    .expand_acc = cpu_expand_acc,
    .transpose = cpu_transpose,
    .copy_blocks = cpu_copy_blocks,
    .softmax = cpu_softmax,
    .softmax_bwd_acc = cpu_softmax_bwd_acc,
    .cross_entropy = cpu_cross_entropy,
    .cross_entropy_bwd_acc = cpu_cross_entropy_bwd_acc,
    .dropout = cpu_dropout,
    .bn_stats = cpu_bn_stats,
    .bn_apply = cpu_bn_apply,
    .bn_update_running = cpu_bn_update_running,
    .bn_invstd = cpu_bn_invstd,
    .bn_bwd_acc = cpu_bn_bwd_acc,
    .im2col = cpu_im2col,
    .col2im_acc = cpu_col2im_acc,
    .max_pool = cpu_max_pool,
    .max_pool_bwd_acc = cpu_max_pool_bwd_acc,
    .avg_pool = cpu_avg_pool,
    .avg_pool_bwd_acc = cpu_avg_pool_bwd_acc,
    .norms = cpu_norms,
    .act_stats = cpu_act_stats,
    .sgd_step = ns_cpu_sgd_step,
    .adam_step = ns_cpu_adam_step,
};
