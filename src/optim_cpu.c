/* CPU fused optimizer kernels (the sgd_step / adam_step entries of the CPU backend table).
 *
 * One pass over each parameter reads w, g and the state once, writes w and the state, and
 * accumulates the recorder's statistics on the way: sum of g^2, sum of (w_new - w_old)^2 and
 * sum of w_new^2 (float partial sums per block of BLOCK elements, added into doubles). NaN/Inf
 * make those sums non-finite, so the exact non-finite count needs a second look only then.
 *
 * The per-element arithmetic follows PyTorch 1.13's single-tensor implementations
 * (torch/optim/sgd.py, adam.py, adamw.py) in float32, operation by operation. On x86-64 CPUs
 * with AVX-512F (16 lanes) or AVX2 (8 lanes) the bulk runs vectorised: the same correctly
 * rounded operations in the same order as the scalar code (no FMA), so every path gives
 * identical weights; only the order of the statistics' partial sums differs. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define HAVE_X86_SIMD 1
#endif

#define BLOCK 2048 /* elements summed in float before being added to a double */

#define INLINE static inline __attribute__((always_inline))

/* Running statistics of one tensor. */
typedef struct {
    double gg, dd, ww;
    float fg, fd, fw; /* the current block's scalar partial sums */
} sums;

INLINE void acc_scalar(sums *s, float g, float dw, float wn) {
    s->fg += g * g;
    s->fd += dw * dw;
    s->fw += wn * wn;
}

INLINE void flush_scalar(sums *s) {
    s->gg += s->fg;
    s->dd += s->fd;
    s->ww += s->fw;
    s->fg = s->fd = s->fw = 0;
}

/* Elements where g or w is NaN/Inf; only called when a sum is not finite. */
static int64_t count_nonfinite(const float *g, const float *w, int64_t n) {
    int64_t bad = 0;
    for (int64_t i = 0; i < n; i++) bad += !isfinite(g[i]) || !isfinite(w[i]);
    return bad;
}

static void finish(double *st, sums *s, const float *g, const float *w, int64_t n) {
    flush_scalar(s);
    st[0] = s->gg;
    st[1] = s->dd;
    st[2] = s->ww;
    st[3] = (isfinite(s->gg) && isfinite(s->ww)) ? 0.0 : (double)count_nonfinite(g, w, n);
}

enum simd { SIMD_NONE, SIMD_AVX2, SIMD_AVX512 };

/* The widest vector code this CPU runs. NNSCOPE_CPU_SIMD=none|avx2 caps it (tests use it to
 * check that every path computes the same weights; read at each step, it costs one getenv). */
static enum simd simd_level(void) {
    const char *cap = getenv("NNSCOPE_CPU_SIMD");
    enum simd max = SIMD_AVX512;
    if (cap && !strcmp(cap, "none")) max = SIMD_NONE;
    if (cap && !strcmp(cap, "avx2")) max = SIMD_AVX2;
#ifdef HAVE_X86_SIMD
    if (max >= SIMD_AVX512 && __builtin_cpu_supports("avx512f")) return SIMD_AVX512;
    if (max >= SIMD_AVX2 && __builtin_cpu_supports("avx2")) return SIMD_AVX2;
#endif
    return SIMD_NONE;
}

#ifdef HAVE_X86_SIMD
/* The vector loops are written once, as macros instantiated for AVX2 (V = __m256, P = _mm256,
 * 8 lanes) and AVX-512F (__m512, _mm512, 16 lanes). Each does the first n - n % LANES
 * elements and returns that count; the scalar code does the rest. */
#define HSUM(V, P, LANES, x, out)                                                                  \
    do {                                                                                           \
        float t_[LANES];                                                                           \
        P##_storeu_ps(t_, x);                                                                      \
        for (int k_ = 0; k_ < LANES; k_++) out += t_[k_];                                          \
    } while (0)
#endif

/* ------------------------------------------------------------------ SGD
 * d = g (+ wd*w);  b = first ? d : momentum*b + (1-dampening)*d;  d = nesterov ? d + momentum*b
 * : b;  w = w - lr*d.  The flags are compile-time constants at each call of the always_inline
 * bodies, so every variant is a straight loop. */

typedef struct {
    float momentum, damp, lr, wd;
    bool nesterov, first, use_mom, use_wd;
} sgd_args;

INLINE void sgd_elem(const sgd_args a, float *w, float *buf, const float *g, int64_t i, sums *s) {
    float gi = g[i], wi = w[i];
    float d = a.use_wd ? gi + a.wd * wi : gi;
    if (a.use_mom) {
        float b = a.first ? d : buf[i] * a.momentum + a.damp * d;
        buf[i] = b;
        d = a.nesterov ? d + a.momentum * b : b;
    }
    float wn = wi - a.lr * d;
    w[i] = wn;
    acc_scalar(s, gi, wn - wi, wn);
}

INLINE void sgd_scalar(const sgd_args a, float *w, float *buf, const float *g, int64_t from,
                       int64_t n, sums *s) {
    for (int64_t i0 = from; i0 < n; i0 += BLOCK) {
        int64_t end = i0 + BLOCK < n ? i0 + BLOCK : n;
        for (int64_t i = i0; i < end; i++) sgd_elem(a, w, buf, g, i, s);
        flush_scalar(s);
    }
}

#ifdef HAVE_X86_SIMD
#define SGD_VEC(NAME, TARGET, V, P, LANES)                                                         \
    __attribute__((target(TARGET))) INLINE int64_t NAME(const sgd_args a, float *w, float *buf,    \
                                                        const float *g, int64_t n, sums *s) {      \
        const V mom = P##_set1_ps(a.momentum), damp = P##_set1_ps(a.damp);                         \
        const V lr = P##_set1_ps(a.lr), wd = P##_set1_ps(a.wd);                                    \
        int64_t nv = n - n % LANES;                                                                \
        for (int64_t i0 = 0; i0 < nv; i0 += BLOCK) {                                               \
            int64_t end = i0 + BLOCK < nv ? i0 + BLOCK : nv;                                       \
            V sg = P##_setzero_ps(), sd = sg, sw = sg;                                             \
            for (int64_t i = i0; i < end; i += LANES) {                                            \
                V gi = P##_loadu_ps(g + i), wi = P##_loadu_ps(w + i);                              \
                V d = a.use_wd ? P##_add_ps(gi, P##_mul_ps(wd, wi)) : gi;                          \
                if (a.use_mom) {                                                                   \
                    V b = a.first ? d                                                              \
                                  : P##_add_ps(P##_mul_ps(P##_loadu_ps(buf + i), mom),             \
                                               P##_mul_ps(damp, d));                               \
                    P##_storeu_ps(buf + i, b);                                                     \
                    d = a.nesterov ? P##_add_ps(d, P##_mul_ps(mom, b)) : b;                        \
                }                                                                                  \
                V wn = P##_sub_ps(wi, P##_mul_ps(lr, d)), dw = P##_sub_ps(wn, wi);                 \
                P##_storeu_ps(w + i, wn);                                                          \
                sg = P##_add_ps(sg, P##_mul_ps(gi, gi));                                           \
                sd = P##_add_ps(sd, P##_mul_ps(dw, dw));                                           \
                sw = P##_add_ps(sw, P##_mul_ps(wn, wn));                                           \
            }                                                                                      \
            HSUM(V, P, LANES, sg, s->gg);                                                          \
            HSUM(V, P, LANES, sd, s->dd);                                                          \
            HSUM(V, P, LANES, sw, s->ww);                                                          \
        }                                                                                          \
        return nv;                                                                                 \
    }

SGD_VEC(sgd_vec_avx2, "avx2", __m256, _mm256, 8)
SGD_VEC(sgd_vec_avx512, "avx512f", __m512, _mm512, 16)
#endif

INLINE void sgd_one_generic(const ns_optim_slot *sl, const sgd_args a, double *st) {
    sums s = {0};
    sgd_scalar(a, sl->w, sl->s1, sl->g, 0, sl->n, &s);
    finish(st, &s, sl->g, sl->w, sl->n);
}

#ifdef HAVE_X86_SIMD
#define SGD_ONE(NAME, TARGET, VEC)                                                                 \
    __attribute__((target(TARGET))) INLINE void NAME(const ns_optim_slot *sl, const sgd_args a,    \
                                                     double *st) {                                 \
        sums s = {0};                                                                              \
        int64_t done = VEC(a, sl->w, sl->s1, sl->g, sl->n, &s);                                    \
        sgd_scalar(a, sl->w, sl->s1, sl->g, done, sl->n, &s);                                      \
        finish(st, &s, sl->g, sl->w, sl->n);                                                       \
    }
SGD_ONE(sgd_one_avx2, "avx2", sgd_vec_avx2)
SGD_ONE(sgd_one_avx512, "avx512f", sgd_vec_avx512)
#endif

#define SGD_VARIANTS(ATTR, FN, ONE)                                                                \
    ATTR static void FN(const ns_optim_slot *sl, sgd_args a, double *st) {                         \
        if (!a.use_mom) {                                                                          \
            if (a.use_wd)                                                                          \
                ONE(sl, (sgd_args){0, 0, a.lr, a.wd, false, false, false, true}, st);              \
            else                                                                                   \
                ONE(sl, (sgd_args){0, 0, a.lr, 0, false, false, false, false}, st);                \
        } else if (a.first) {                                                                      \
            if (a.nesterov)                                                                        \
                ONE(sl, (sgd_args){a.momentum, a.damp, a.lr, a.wd, true, true, true, a.use_wd},    \
                    st);                                                                           \
            else                                                                                   \
                ONE(sl, (sgd_args){a.momentum, a.damp, a.lr, a.wd, false, true, true, a.use_wd},   \
                    st);                                                                           \
        } else {                                                                                   \
            if (a.nesterov)                                                                        \
                ONE(sl, (sgd_args){a.momentum, a.damp, a.lr, a.wd, true, false, true, a.use_wd},   \
                    st);                                                                           \
            else                                                                                   \
                ONE(sl, (sgd_args){a.momentum, a.damp, a.lr, a.wd, false, false, true, a.use_wd},  \
                    st);                                                                           \
        }                                                                                          \
    }                                                                                              \
    ATTR static void FN(const ns_optim_slot *sl, sgd_args a, double *st)

/* The variants without and with AVX2 (the trailing prototype takes the semicolon). */
SGD_VARIANTS(, sgd_generic, sgd_one_generic);
#ifdef HAVE_X86_SIMD
SGD_VARIANTS(__attribute__((target("avx2"))), sgd_with_avx2, sgd_one_avx2);
SGD_VARIANTS(__attribute__((target("avx512f"))), sgd_with_avx512, sgd_one_avx512);
#endif

void ns_cpu_sgd_step(int n, const ns_optim_slot *slots, float momentum, float dampening,
                     bool nesterov, bool first_step, double *stats);
void ns_cpu_sgd_step(int n, const ns_optim_slot *slots, float momentum, float dampening,
                     bool nesterov, bool first_step, double *stats) {
    enum simd simd = simd_level();
    for (int t = 0; t < n; t++) {
        const ns_optim_slot *s = &slots[t];
        double *st = stats + 4 * t;
        if (!s->g) {
            st[0] = st[1] = st[2] = st[3] = 0;
            continue;
        }
        sgd_args a = {
            momentum,         1.0f - dampening,       s->lr, s->weight_decay, nesterov, first_step,
            momentum != 0.0f, s->weight_decay != 0.0f};
#ifdef HAVE_X86_SIMD
        if (simd == SIMD_AVX512) {
            sgd_with_avx512(s, a, st);
            continue;
        }
        if (simd == SIMD_AVX2) {
            sgd_with_avx2(s, a, st);
            continue;
        }
#endif
        (void)simd;
        sgd_generic(s, a, st);
    }
}

/* ------------------------------------------------------------------ Adam / AdamW
 * Adam: d = g + wd*w;  AdamW: w = w*(1 - lr*wd), d = g.  m = m*b1 + (1-b1)*d;
 * v = v*b2 + (1-b2)*d*d;  w = w - step_size * (m / (sqrt(v)/sqrt(bc2) + eps)),
 * step_size = lr/bc1. */

typedef struct {
    float beta1, beta2, a1, a2, eps, wd, decay, step_size, bc2_sqrt;
    bool decoupled, use_wd;
} adam_args;

INLINE void adam_elem(const adam_args a, float *w, float *m, float *v, const float *g, int64_t i,
                      sums *s) {
    float gi = g[i], w0 = w[i], wi = w0, d = gi;
    if (a.use_wd) {
        if (a.decoupled)
            wi = wi * a.decay; /* AdamW: param.mul_(1 - lr * weight_decay) */
        else
            d = gi + a.wd * wi; /* Adam: grad = grad.add(param, alpha=weight_decay) */
    }
    float mi = m[i] * a.beta1 + a.a1 * d;
    float vi = v[i] * a.beta2 + a.a2 * d * d;
    m[i] = mi;
    v[i] = vi;
    float denom = __builtin_sqrtf(vi) / a.bc2_sqrt + a.eps;
    float wn = wi - a.step_size * (mi / denom);
    w[i] = wn;
    acc_scalar(s, gi, wn - w0, wn);
}

INLINE void adam_scalar(const adam_args a, float *w, float *m, float *v, const float *g,
                        int64_t from, int64_t n, sums *s) {
    for (int64_t i0 = from; i0 < n; i0 += BLOCK) {
        int64_t end = i0 + BLOCK < n ? i0 + BLOCK : n;
        for (int64_t i = i0; i < end; i++) adam_elem(a, w, m, v, g, i, s);
        flush_scalar(s);
    }
}

#ifdef HAVE_X86_SIMD
#define ADAM_VEC(NAME, TARGET, V, P, LANES)                                                        \
    __attribute__((target(TARGET))) INLINE int64_t NAME(                                           \
        const adam_args a, float *w, float *m, float *v, const float *g, int64_t n, sums *s) {     \
        const V b1 = P##_set1_ps(a.beta1), b2 = P##_set1_ps(a.beta2);                              \
        const V a1 = P##_set1_ps(a.a1), a2 = P##_set1_ps(a.a2);                                    \
        const V eps = P##_set1_ps(a.eps), wd = P##_set1_ps(a.wd);                                  \
        const V decay = P##_set1_ps(a.decay), step = P##_set1_ps(a.step_size);                     \
        const V bc2 = P##_set1_ps(a.bc2_sqrt);                                                     \
        int64_t nv = n - n % LANES;                                                                \
        for (int64_t i0 = 0; i0 < nv; i0 += BLOCK) {                                               \
            int64_t end = i0 + BLOCK < nv ? i0 + BLOCK : nv;                                       \
            V sg = P##_setzero_ps(), sd = sg, sw = sg;                                             \
            for (int64_t i = i0; i < end; i += LANES) {                                            \
                V gi = P##_loadu_ps(g + i), w0 = P##_loadu_ps(w + i), wi = w0, d = gi;             \
                if (a.use_wd) {                                                                    \
                    if (a.decoupled)                                                               \
                        wi = P##_mul_ps(wi, decay);                                                \
                    else                                                                           \
                        d = P##_add_ps(gi, P##_mul_ps(wd, wi));                                    \
                }                                                                                  \
                V mi = P##_add_ps(P##_mul_ps(P##_loadu_ps(m + i), b1), P##_mul_ps(a1, d));         \
                V vi = P##_add_ps(P##_mul_ps(P##_loadu_ps(v + i), b2),                             \
                                  P##_mul_ps(P##_mul_ps(a2, d), d));                               \
                P##_storeu_ps(m + i, mi);                                                          \
                P##_storeu_ps(v + i, vi);                                                          \
                V denom = P##_add_ps(P##_div_ps(P##_sqrt_ps(vi), bc2), eps);                       \
                V wn = P##_sub_ps(wi, P##_mul_ps(step, P##_div_ps(mi, denom)));                    \
                V dw = P##_sub_ps(wn, w0);                                                         \
                P##_storeu_ps(w + i, wn);                                                          \
                sg = P##_add_ps(sg, P##_mul_ps(gi, gi));                                           \
                sd = P##_add_ps(sd, P##_mul_ps(dw, dw));                                           \
                sw = P##_add_ps(sw, P##_mul_ps(wn, wn));                                           \
            }                                                                                      \
            HSUM(V, P, LANES, sg, s->gg);                                                          \
            HSUM(V, P, LANES, sd, s->dd);                                                          \
            HSUM(V, P, LANES, sw, s->ww);                                                          \
        }                                                                                          \
        return nv;                                                                                 \
    }

ADAM_VEC(adam_vec_avx2, "avx2", __m256, _mm256, 8)
ADAM_VEC(adam_vec_avx512, "avx512f", __m512, _mm512, 16)
#endif

INLINE void adam_one_generic(const ns_optim_slot *sl, const adam_args a, double *st) {
    sums s = {0};
    adam_scalar(a, sl->w, sl->s1, sl->s2, sl->g, 0, sl->n, &s);
    finish(st, &s, sl->g, sl->w, sl->n);
}

#ifdef HAVE_X86_SIMD
#define ADAM_ONE(NAME, TARGET, VEC)                                                                \
    __attribute__((target(TARGET))) INLINE void NAME(const ns_optim_slot *sl, const adam_args a,   \
                                                     double *st) {                                 \
        sums s = {0};                                                                              \
        int64_t done = VEC(a, sl->w, sl->s1, sl->s2, sl->g, sl->n, &s);                            \
        adam_scalar(a, sl->w, sl->s1, sl->s2, sl->g, done, sl->n, &s);                             \
        finish(st, &s, sl->g, sl->w, sl->n);                                                       \
    }
ADAM_ONE(adam_one_avx2, "avx2", adam_vec_avx2)
ADAM_ONE(adam_one_avx512, "avx512f", adam_vec_avx512)
#endif

#define ADAM_VARIANTS(ATTR, FN, ONE)                                                               \
    ATTR static void FN(const ns_optim_slot *sl, adam_args a, double *st) {                        \
        if (!a.use_wd) {                                                                           \
            a.decoupled = false;                                                                   \
            ONE(sl, a, st);                                                                        \
        } else if (a.decoupled) {                                                                  \
            a.use_wd = a.decoupled = true;                                                         \
            ONE(sl, a, st);                                                                        \
        } else {                                                                                   \
            a.use_wd = true;                                                                       \
            a.decoupled = false;                                                                   \
            ONE(sl, a, st);                                                                        \
        }                                                                                          \
    }                                                                                              \
    ATTR static void FN(const ns_optim_slot *sl, adam_args a, double *st)

ADAM_VARIANTS(, adam_generic, adam_one_generic);
#ifdef HAVE_X86_SIMD
ADAM_VARIANTS(__attribute__((target("avx2"))), adam_with_avx2, adam_one_avx2);
ADAM_VARIANTS(__attribute__((target("avx512f"))), adam_with_avx512, adam_one_avx512);
#endif

void ns_cpu_adam_step(int n, const ns_optim_slot *slots, float beta1, float beta2, float eps,
                      bool decoupled_wd, float bias_corr1, float bias_corr2, double *stats);
void ns_cpu_adam_step(int n, const ns_optim_slot *slots, float beta1, float beta2, float eps,
                      bool decoupled_wd, float bias_corr1, float bias_corr2, double *stats) {
    /* PyTorch: step_size = lr / bias_correction1; denom = sqrt(v) / sqrt(bias_correction2) + eps */
    float bc2_sqrt = sqrtf(bias_corr2);
    enum simd simd = simd_level();
    for (int t = 0; t < n; t++) {
        const ns_optim_slot *s = &slots[t];
        double *st = stats + 4 * t;
        if (!s->g) {
            st[0] = st[1] = st[2] = st[3] = 0;
            continue;
        }
        adam_args a = {beta1,
                       beta2,
                       1.0f - beta1,
                       1.0f - beta2,
                       eps,
                       s->weight_decay,
                       1.0f - s->lr * s->weight_decay,
                       s->lr / bias_corr1,
                       bc2_sqrt,
                       decoupled_wd,
                       s->weight_decay != 0.0f};
#ifdef HAVE_X86_SIMD
        if (simd == SIMD_AVX512) {
            adam_with_avx512(s, a, st);
            continue;
        }
        if (simd == SIMD_AVX2) {
            adam_with_avx2(s, a, st);
            continue;
        }
#endif
        (void)simd;
        adam_generic(s, a, st);
    }
}
