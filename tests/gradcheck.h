/* Test support for nnscope unit tests (header-only; it includes <cmocka.h> and nnscope.h):
 *
 *  - error capture: gc_install() sets an nnscope error handler that longjmps back into the test,
 *    so GC_EXPECT_ERROR(stmt) can run a statement that must fail and the test can then assert on
 *    gc_msg (the full message). An error outside GC_EXPECT_ERROR fails the running test.
 *  - gc_check(): a central finite-difference gradient check of any op or op chain.
 *  - small helpers: deterministic random tensors (never touching the global generator), a pool
 *    of long-lived tensors freed at once, host copies.
 *
 * Gradient check (gc_check). The function under test maps long-lived input tensors to an output
 * tensor y. The scalar checked is L = sum_k R[k] * y[k], R a fixed pseudo-random projection in
 * [-1, 1] (R = 1 for one-element outputs). The analytic gradient is the engine's: ns_backward(y,
 * R) (or ns_backward(y, NULL) for a one-element y, which checks the implicit seed). The numeric
 * gradient of every element j of every input that requires grad is the central difference
 *
 *     dL/dx_j ~= (L(x_j + h) - L(x_j - h)) / (x_j+h - (x_j-h))   evaluated in double from the
 *                                                                   float32 outputs,
 *
 * with the perturbed values rounded to float32 and the denominator taken from the rounded values.
 * Tolerance (documented defaults, GC_EPS / GC_ATOL / GC_RTOL):
 *
 *     |analytic - numeric| <= atol + rtol * |numeric|,   h = 1e-3, atol = 1e-3, rtol = 1e-2.
 *
 * Why these: float32 outputs carry ~6e-8 relative rounding; summed over the few hundred outputs
 * of a test-sized op and divided by 2h = 2e-3 that is a numeric error of ~1e-4, well inside
 * atol; truncation error of the central difference is O(h^2 f''') ~ 1e-6. A wrong backward
 * (missing term, wrong sign, wrong index) is off by O(1) and fails by orders of magnitude.
 * Inputs must stay at least 2h away from kinks (relu/leaky_relu at 0, max-pool ties): see
 * gc_fill_away() and gc_fill_distinct() (pooling).
 *
 * GC_VERBOSE=1 in the environment prints, per check, the worst |analytic - numeric| as a
 * fraction of its tolerance (the margin each op has).
 *
 * Contract for the function under test: deterministic (re-seed the generator inside, e.g. for
 * dropout), uses only long-lived tensors (ns_tensor_new) or tensors it creates itself, because
 * gc_check() resets the step scope between evaluations. Entries of in[] may be NULL (an absent
 * bias) and are passed through to the function unchanged. The numeric evaluations run in no-grad
 * mode, so they also pin that the no-grad forward equals the recorded one.
 */
#ifndef NS_TESTS_GRADCHECK_H
#define NS_TESTS_GRADCHECK_H

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "nnscope.h"

#define GC_EPS 1e-3
#define GC_ATOL 1e-3
#define GC_RTOL 1e-2

/* ------------------------------------------------------------------ error capture */

static jmp_buf *gc_jmp;   /* set while a GC_EXPECT_ERROR statement runs */
static char gc_msg[2048]; /* the last captured message */

static inline void gc_error_handler(const char *msg, void *ud) {
    (void)ud;
    snprintf(gc_msg, sizeof gc_msg, "%s", msg);
    if (gc_jmp) longjmp(*gc_jmp, 1);
    /* An error nobody expected: fail the running test (cmocka longjmps out of it). */
    fail_msg("unexpected nnscope error: %s", msg);
}

/* Installs the capturing handler (call once in main, before the tests run). */
static inline void gc_install(void) {
    ns_set_error_handler(gc_error_handler, NULL);
}

/* Runs stmt, which must report an nnscope error; fails the test if it returns normally. After
 * it, gc_msg holds the message. The step scope is left as the failing op left it. */
#define GC_EXPECT_ERROR(stmt)                                                                      \
    do {                                                                                           \
        jmp_buf gc_jb_;                                                                            \
        gc_msg[0] = 0;                                                                             \
        gc_jmp = &gc_jb_;                                                                          \
        if (setjmp(gc_jb_) == 0) {                                                                 \
            stmt;                                                                                  \
            gc_jmp = NULL;                                                                         \
            fail_msg("expected an nnscope error from: %s", #stmt);                                 \
        }                                                                                          \
        gc_jmp = NULL;                                                                             \
    } while (0)

/* Fails unless the last captured message contains every one of the NULL-terminated strings. */
static inline void gc_msg_has_(const char *file, int line, ...) {
    va_list ap;
    va_start(ap, line);
    for (const char *s = va_arg(ap, const char *); s; s = va_arg(ap, const char *)) {
        if (!strstr(gc_msg, s)) {
            va_end(ap);
            fail_msg("%s:%d: error message lacks \"%s\": %s", file, line, s, gc_msg);
        }
    }
    va_end(ap);
}
#define GC_MSG_HAS(...) gc_msg_has_(__FILE__, __LINE__, __VA_ARGS__, (const char *)NULL)

/* ------------------------------------------------------------------ deterministic data */

/* Uniform in [lo, hi) from a private stream (seed), so tests do not move the global generator. */
static inline void gc_fill_uniform(float *x, int64_t n, uint64_t seed, float lo, float hi) {
    for (int64_t i = 0; i < n; i++)
        x[i] = lo + (hi - lo) * ns_rng_uniform(seed ^ 0x5eedu, (uint64_t)i);
}

/* Values with lo <= |v| < hi and a random sign: keeps inputs away from kinks at 0. */
static inline void gc_fill_away(float *x, int64_t n, uint64_t seed, float lo, float hi) {
    for (int64_t i = 0; i < n; i++) {
        float u = ns_rng_uniform(seed ^ 0xa11au, 2 * (uint64_t)i);
        float s = ns_rng_uniform(seed ^ 0xa11au, 2 * (uint64_t)i + 1) < 0.5f ? -1.0f : 1.0f;
        x[i] = s * (lo + (hi - lo) * u);
    }
}

/* A permutation of {0, step, 2*step, ...} scaled around zero: all values distinct by step (so
 * no max-pool ties within 2h when step > 2h). */
static inline void gc_fill_distinct(float *x, int64_t n, uint64_t seed, float step) {
    for (int64_t i = 0; i < n; i++) x[i] = (float)(i - n / 2) * step;
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)(ns_rng_uniform(seed ^ 0xd15cu, (uint64_t)i) * (float)(i + 1));
        if (j > i) j = i;
        float t = x[i];
        x[i] = x[j];
        x[j] = t;
    }
}

/* ------------------------------------------------------------------ a pool of long-lived tensors
 */

#define GC_POOL_MAX 64
static ns_tensor *gc_pool[GC_POOL_MAX];
static int gc_pool_n;

/* A long-lived CPU tensor filled uniformly in [lo, hi), kept in the pool (gc_free_all). */
static inline ns_tensor *gc_new(int ndim, const int64_t *shape, uint64_t seed, float lo, float hi,
                                bool requires_grad) {
    ns_tensor *t = ns_tensor_new(ndim, shape, NS_CPU);
    assert_true(gc_pool_n < GC_POOL_MAX);
    gc_pool[gc_pool_n++] = t;
    gc_fill_uniform(t->data, t->numel, seed, lo, hi);
    ns_requires_grad(t, requires_grad);
    return t;
}

/* A long-lived int32 tensor with values in [0, classes), kept in the pool. */
static inline ns_tensor *gc_new_labels(int64_t n, int classes, uint64_t seed) {
    ns_tensor *t = ns_tensor_new_i32(1, (const int64_t[]){n}, NS_CPU);
    assert_true(gc_pool_n < GC_POOL_MAX);
    gc_pool[gc_pool_n++] = t;
    for (int64_t i = 0; i < n; i++)
        ns_i32(t)[i] = (int32_t)(ns_rng_uniform(seed ^ 0x1abeu, (uint64_t)i) * (float)classes);
    return t;
}

/* Frees every pooled tensor and resets the scope (use as a cmocka teardown or at test end). */
static inline void gc_free_all(void) {
    ns_scope_reset();
    for (int i = 0; i < gc_pool_n; i++) ns_tensor_free(gc_pool[i]);
    gc_pool_n = 0;
}

static inline int gc_teardown(void **state) {
    (void)state;
    gc_free_all();
    ns_set_grad_enabled(true);
    return 0;
}

/* ------------------------------------------------------------------ gradient check */

typedef ns_tensor *(*gc_fn)(ns_tensor *const *in, void *ud);

typedef struct {
    double eps, atol, rtol; /* 0: the defaults above */
} gc_opts;

/* L = sum R*y in double, R the projection used for the analytic seed. */
static inline double gc_project(const ns_tensor *y, const float *r) {
    float *h = malloc((size_t)y->numel * sizeof *h);
    assert_non_null(h);
    ns_tensor_get(y, h);
    double s = 0;
    for (int64_t k = 0; k < y->numel; k++) s += (double)h[k] * (double)r[k];
    free(h);
    return s;
}

/* Compares the analytic gradient of every input with requires_grad against central differences
 * (see the top of this file). what names the check in failure messages. Returns the number of
 * elements out of tolerance (0 on success; failures are printed, at most 8 per input) and fails
 * the test when an input requiring grad received no gradient at all. */
static inline int gc_check_opts(const char *what, gc_fn fn, void *ud, ns_tensor *const *in, int n,
                                gc_opts o) {
    double eps = o.eps > 0 ? o.eps : GC_EPS, atol = o.atol > 0 ? o.atol : GC_ATOL;
    double rtol = o.rtol > 0 ? o.rtol : GC_RTOL;
    int bad = 0;
    double worst = 0; /* max of |analytic - numeric| / (atol + rtol |numeric|) */

    /* Analytic pass. */
    ns_scope_reset();
    bool prev = ns_set_grad_enabled(true);
    for (int i = 0; i < n; i++) ns_zero_grad(in[i]);
    ns_tensor *y = fn(in, ud);
    assert_non_null(y);
    assert_true(y->requires_grad);
    int64_t ny = y->numel;
    float *r = malloc((size_t)ny * sizeof *r);
    assert_non_null(r);
    if (ny == 1) {
        r[0] = 1.0f;
        ns_backward(y, NULL);
    } else {
        gc_fill_uniform(r, ny, 0xc0ffee, -1.0f, 1.0f);
        ns_backward(y, ns_from_host(y->ndim, y->shape, r, y->device));
    }
    float **ga = calloc((size_t)n, sizeof *ga);
    assert_non_null(ga);
    for (int i = 0; i < n; i++) {
        if (!in[i] || !in[i]->requires_grad) continue;
        if (!in[i]->grad) fail_msg("%s: input %d requires grad but received none", what, i);
        ga[i] = malloc((size_t)in[i]->numel * sizeof(float));
        assert_non_null(ga[i]);
        ns_tensor_get(in[i]->grad, ga[i]);
    }

    /* Numeric pass, in no-grad mode. */
    ns_set_grad_enabled(false);
    for (int i = 0; i < n; i++) {
        if (!in[i] || !in[i]->requires_grad) continue;
        ns_tensor *x = in[i];
        float *host = malloc((size_t)x->numel * sizeof *host);
        assert_non_null(host);
        ns_tensor_get(x, host);
        int shown = 0;
        for (int64_t j = 0; j < x->numel; j++) {
            float orig = host[j];
            float xp = (float)(orig + eps), xm = (float)(orig - eps);
            host[j] = xp;
            ns_tensor_set(x, host);
            ns_scope_reset();
            double lp = gc_project(fn(in, ud), r);
            host[j] = xm;
            ns_tensor_set(x, host);
            ns_scope_reset();
            double lm = gc_project(fn(in, ud), r);
            host[j] = orig;
            ns_tensor_set(x, host);
            double num = (lp - lm) / ((double)xp - (double)xm);
            double ana = ga[i][j];
            double ratio = fabs(ana - num) / (atol + rtol * fabs(num));
            if (ratio > worst || ratio != ratio) worst = ratio;
            if (!(fabs(ana - num) <= atol + rtol * fabs(num))) {
                bad++;
                if (shown++ < 8)
                    print_message("gradcheck %s: input %d element %lld: analytic %.6g numeric "
                                  "%.6g\n",
                                  what, i, (long long)j, ana, num);
            }
        }
        free(host);
    }
    ns_scope_reset();
    ns_set_grad_enabled(prev);
    if (getenv("GC_VERBOSE"))
        print_message("gradcheck %-40s worst error / tolerance %.3f\n", what, worst);
    for (int i = 0; i < n; i++) free(ga[i]);
    free(ga);
    free(r);
    return bad;
}

static inline int gc_check(const char *what, gc_fn fn, void *ud, ns_tensor *const *in, int n) {
    return gc_check_opts(what, fn, ud, in, n, (gc_opts){0, 0, 0});
}

/* Asserts that a gradient check passes. */
#define GC_ASSERT(what, fn, ud, in, n) assert_int_equal(gc_check((what), (fn), (ud), (in), (n)), 0)

/* ------------------------------------------------------------------ comparisons */

/* Fails unless |got[i] - want[i]| <= atol + rtol*|want[i]| for every i (prints the first). */
static inline void gc_assert_close_(const char *file, int line, const float *got,
                                    const double *want, int64_t n, double atol, double rtol) {
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - want[i]);
        if (!(d <= atol + rtol * fabs(want[i])))
            fail_msg("%s:%d: element %lld: got %.9g, want %.9g (|diff| %.3g)", file, line,
                     (long long)i, (double)got[i], want[i], d);
    }
}
#define GC_ASSERT_CLOSE(got, want, n, atol, rtol)                                                  \
    gc_assert_close_(__FILE__, __LINE__, (got), (want), (n), (atol), (rtol))

/* Fails unless |got - want| <= tol (doubles; cmocka's assert_float_equal casts to float). */
static inline void gc_assert_near_(const char *file, int line, double got, double want,
                                   double tol) {
    if (!(fabs(got - want) <= tol))
        fail_msg("%s:%d: got %.9g, want %.9g (tolerance %.3g)", file, line, got, want, tol);
}
#define GC_ASSERT_NEAR(got, want, tol) gc_assert_near_(__FILE__, __LINE__, (got), (want), (tol))

/* A malloc'd host copy of t's values (caller frees). */
static inline float *gc_host(const ns_tensor *t) {
    float *h = malloc((size_t)(t->numel ? t->numel : 1) * sizeof *h);
    assert_non_null(h);
    ns_tensor_get(t, h);
    return h;
}

/* Fails unless t has exactly the given shape. */
static inline void gc_assert_shape_(const char *file, int line, const ns_tensor *t, int ndim,
                                    const int64_t *shape) {
    char got[64];
    ns_shape_str(t, got, sizeof got);
    if (t->ndim != ndim)
        fail_msg("%s:%d: shape %s has %d dims, want %d", file, line, got, t->ndim, ndim);
    for (int i = 0; i < ndim; i++)
        if (t->shape[i] != shape[i])
            fail_msg("%s:%d: shape %s differs in dim %d (want %lld)", file, line, got, i,
                     (long long)shape[i]);
}
#define GC_ASSERT_SHAPE(t, ...) gc_assert_shape_(__FILE__, __LINE__, (t), NS_DIMS(__VA_ARGS__))

#endif
