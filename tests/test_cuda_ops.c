/* Cross-backend test of the CUDA backend: every op forward and backward on the CPU and on the
 * GPU with the same inputs, the kernel-table entries the ops do not reach (multi-tensor norms,
 * activation statistics, fused optimizers, GEMM flags, cuDNN convolution), the caching
 * allocator's steady state, and modules trained on both devices from the same initialisation.
 * Needs a GPU: exits 77 with a one-line reason when CUDA is unavailable (or not compiled in).
 *
 * Plain C with its own checks (no cmocka), so tests/gpu/run.sh can build it on a GPU machine
 * that lacks cmocka. One line per check; exit 1 when any check fails.
 *
 * Tolerances (|gpu - cpu| <= atol + rtol * |cpu|, per element), and why:
 *   exact (0)       dropout masks, pooling indices, copies, views, concat, moves, SGD/Adam weight
 *                   and state updates: same operations in the same order (--fmad=false), IEEE
 *                   sqrt and division on both sides.
 *   1e-6 + 1e-6     elementwise ops using expf/erff/tanhf (CUDA's math library is within 2 ulp).
 *   1e-5 + 1e-5     softmax family, cross-entropy, reductions, batch norm (double accumulators
 *                   in a different order; results rounded to float).
 *   1e-4 + 1e-4     GEMM-based ops (matmul, linear, conv2d): cuBLAS/cuDNN and OpenBLAS sum the
 *                   k products in different orders; inputs in [-1,1], k <= 800.
 *   2e-2 relative   GEMM with TF32 on (10-bit mantissa inputs).
 *   1e-3 + 1e-3     parameters after 5-10 training steps of a module (differences compound;
 *                   Adam amplifies them where |grad| is near eps, so runs stay short).
 * Statistics (norms, act_stats, optimizer stats): relative 1e-5; counts exact. */
#include <math.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "nnscope.h"
#ifdef NS_HAVE_CUDA
#include "ns_cuda.h"
#endif

static int g_checks, g_fails;
static uint64_t g_rng = 12345;

static float frand(float lo, float hi) {
    g_rng = g_rng * 6364136223846793005ull + 1442695040888963407ull;
    return lo + (hi - lo) * (float)(g_rng >> 40) * (1.0f / 16777216.0f);
}

static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "test_cuda_ops: out of memory\n");
        exit(1);
    }
    return p;
}

/* ------------------------------------------------------------------ checks */

static bool check_f(const char *what, const float *ref, const float *got, int64_t n, double atol,
                    double rtol) {
    double worst = 0, worst_excess = -1;
    int64_t at = -1;
    for (int64_t i = 0; i < n; i++) {
        if (isnan(ref[i]) && isnan(got[i])) continue;
        double d = fabs((double)ref[i] - (double)got[i]);
        if (isinf(ref[i]) && ref[i] == got[i]) d = 0;
        if (isnan(d)) d = INFINITY;
        double excess = d - (atol + rtol * fabs((double)ref[i]));
        if (d > worst) worst = d;
        if (excess > worst_excess) {
            worst_excess = excess;
            at = i;
        }
    }
    bool ok = worst_excess <= 0 || n == 0;
    g_checks++;
    if (!ok) g_fails++;
    if (ok)
        printf("  ok    %-44s n=%-8lld max|d|=%.2e\n", what, (long long)n, worst);
    else
        printf("  FAIL  %-44s n=%-8lld max|d|=%.2e at %lld: cpu %.9g gpu %.9g (tol %.0e+%.0e|x|)\n",
               what, (long long)n, worst, (long long)at, (double)ref[at], (double)got[at], atol,
               rtol);
    return ok;
}

static void check_d(const char *what, double ref, double got, double rtol) {
    double d = fabs(ref - got);
    bool ok =
        (isnan(ref) && isnan(got)) || (isinf(ref) && ref == got) || d <= rtol * fabs(ref) + 1e-30;
    g_checks++;
    if (!ok) g_fails++;
    printf("  %s  %-44s cpu %.10g gpu %.10g\n", ok ? "ok  " : "FAIL", what, ref, got);
}

static void check_i(const char *what, int64_t ref, int64_t got) {
    g_checks++;
    if (ref != got) g_fails++;
    printf("  %s  %-44s cpu %lld gpu %lld\n", ref == got ? "ok  " : "FAIL", what, (long long)ref,
           (long long)got);
}

static void check_true(const char *what, bool ok, const char *detail) {
    g_checks++;
    if (!ok) g_fails++;
    printf("  %s  %-44s %s\n", ok ? "ok  " : "FAIL", what, detail);
}

static float *host_of(const ns_tensor *t) {
    float *h = xmalloc(sizeof(float) * (size_t)t->numel);
    ns_tensor_get(t, h);
    return h;
}

/* ------------------------------------------------------------------ op runner */

/* Inputs of one op: host values and a long-lived copy on each device. */
typedef struct {
    ns_tensor *t[2]; /* [0] CPU, [1] CUDA */
    bool i32;
} input;

static input mk(int ndim, const int64_t *shape, float lo, float hi, bool grad) {
    input in = {{NULL, NULL}, false};
    in.t[0] = ns_tensor_new(ndim, shape, NS_CPU);
    float *h = xmalloc(sizeof(float) * (size_t)in.t[0]->numel);
    for (int64_t i = 0; i < in.t[0]->numel; i++) h[i] = frand(lo, hi);
    ns_tensor_set(in.t[0], h);
    in.t[1] = ns_tensor_new(ndim, shape, NS_CUDA);
    ns_tensor_set(in.t[1], h);
    free(h);
    ns_requires_grad(in.t[0], grad);
    ns_requires_grad(in.t[1], grad);
    return in;
}

static input mk_labels(int64_t n, int classes) {
    input in = {{NULL, NULL}, true};
    int32_t *h = xmalloc(sizeof(int32_t) * (size_t)n);
    for (int64_t i = 0; i < n; i++) h[i] = (int32_t)(frand(0, 1) * (float)classes) % classes;
    for (int d = 0; d < 2; d++) {
        in.t[d] = ns_tensor_new_i32(NS_DIMS(n), d ? NS_CUDA : NS_CPU);
        ns_tensor_set(in.t[d], (const float *)(const void *)h);
    }
    free(h);
    return in;
}

static void drop(input *in, int n) {
    for (int i = 0; i < n; i++) {
        ns_tensor_free(in[i].t[0]);
        ns_tensor_free(in[i].t[1]);
    }
}

typedef ns_tensor *(*op_fn)(ns_tensor **x, const void *ctx);

/* Runs fn on both devices (same RNG state), backpropagates the same random seed gradient, and
 * compares the outputs, every input's gradient and every input's value afterwards (ops that
 * update buffers in place, like batch norm's running statistics). */
static void run_op(const char *name, int n, input *in, op_fn fn, const void *ctx, double atol,
                   double rtol) {
    printf("%s\n", name);
    float *out[2] = {NULL, NULL}, *grads[2][6], *vals[2][6];
    int64_t out_n = 0;
    for (int d = 0; d < 2; d++) {
        ns_tensor *x[6];
        for (int i = 0; i < n; i++) {
            x[i] = in[i].t[d];
            ns_zero_grad(x[i]);
        }
        ns_rng_set_state(2024, 77);
        ns_tensor *y = fn(x, ctx);
        out[d] = host_of(y);
        out_n = y->numel;
        if (y->requires_grad) {
            uint64_t saved = g_rng;
            g_rng = 999; /* same seed gradient on both devices */
            float *s = xmalloc(sizeof(float) * (size_t)y->numel);
            for (int64_t i = 0; i < y->numel; i++) s[i] = frand(-1, 1);
            g_rng = saved;
            ns_tensor *seed = ns_from_host(y->ndim, y->shape, s, y->device);
            free(s);
            ns_backward(y, seed);
        }
        for (int i = 0; i < n; i++) {
            grads[d][i] = x[i]->grad && !in[i].i32 ? host_of(x[i]->grad) : NULL;
            vals[d][i] = in[i].i32 ? NULL : host_of(x[i]);
        }
        ns_scope_reset();
    }
    check_f("forward", out[0], out[1], out_n, atol, rtol);
    for (int i = 0; i < n; i++) {
        char what[64];
        if (grads[0][i] || grads[1][i]) {
            snprintf(what, sizeof what, "grad of input %d", i);
            if (!grads[0][i] || !grads[1][i])
                check_true(what, false, "gradient on one device only");
            else
                check_f(what, grads[0][i], grads[1][i], in[i].t[0]->numel, atol, rtol);
        }
        if (vals[0][i]) {
            snprintf(what, sizeof what, "input %d after the op", i);
            check_f(what, vals[0][i], vals[1][i], in[i].t[0]->numel, atol, rtol);
        }
        free(grads[0][i]);
        free(grads[1][i]);
        free(vals[0][i]);
        free(vals[1][i]);
    }
    free(out[0]);
    free(out[1]);
}

/* ------------------------------------------------------------------ op bodies */

static ns_tensor *f_matmul(ns_tensor **x, const void *c) {
    (void)c;
    return ns_matmul(x[0], x[1]);
}
static ns_tensor *f_linear(ns_tensor **x, const void *c) {
    return ns_linear(x[0], x[1], c ? x[2] : NULL);
}
static ns_tensor *f_add(ns_tensor **x, const void *c) {
    (void)c;
    return ns_add(x[0], x[1]);
}
static ns_tensor *f_sub(ns_tensor **x, const void *c) {
    (void)c;
    return ns_sub(x[0], x[1]);
}
static ns_tensor *f_mul(ns_tensor **x, const void *c) {
    (void)c;
    return ns_mul(x[0], x[1]);
}
static ns_tensor *f_scale_shift(ns_tensor **x, const void *c) {
    (void)c;
    return ns_add_scalar(ns_scale(x[0], -1.5f), 0.25f);
}
static ns_tensor *f_bias_add(ns_tensor **x, const void *c) {
    (void)c;
    return ns_bias_add(x[0], x[1]);
}
static ns_tensor *f_views(ns_tensor **x, const void *c) {
    (void)c; /* (4,6,5) -> (24,5) -> flatten (4,30) -> transpose (30,4) */
    ns_tensor *r = ns_reshape(x[0], NS_DIMS(24, 5));
    ns_tensor *f = ns_flatten(ns_reshape(r, NS_DIMS(4, 6, 5)));
    return ns_transpose(ns_mul(f, f));
}
static ns_tensor *f_sum(ns_tensor **x, const void *c) {
    (void)c;
    return ns_add(ns_sum(x[0]), ns_mean(x[0]));
}
static ns_tensor *f_sum_axis(ns_tensor **x, const void *c) {
    const int *axis = c;
    return ns_sum_axis(x[0], *axis, *axis == 1);
}
static ns_tensor *f_mean_axis(ns_tensor **x, const void *c) {
    const int *axis = c;
    return ns_mean_axis(x[0], *axis, false);
}
static ns_tensor *f_unary(ns_tensor **x, const void *c) {
    switch (*(const int *)c) {
    case 0:
        return ns_relu(x[0]);
    case 1:
        return ns_leaky_relu(x[0], 0.1f);
    case 2:
        return ns_gelu(x[0]);
    case 3:
        return ns_tanh(x[0]);
    default:
        return ns_sigmoid(x[0]);
    }
}
static ns_tensor *f_softmax(ns_tensor **x, const void *c) {
    return c ? ns_log_softmax(x[0]) : ns_softmax(x[0]);
}
static ns_tensor *f_ce(ns_tensor **x, const void *c) {
    (void)c;
    return ns_cross_entropy(x[0], x[1]);
}
static ns_tensor *f_mse(ns_tensor **x, const void *c) {
    (void)c;
    return ns_mse(x[0], x[1]);
}
static ns_tensor *f_dropout(ns_tensor **x, const void *c) {
    return ns_dropout(x[0], *(const float *)c, true);
}
typedef struct {
    bool training, affine, running;
} bn_ctx;
static ns_tensor *f_bn(ns_tensor **x, const void *c) {
    const bn_ctx *b = c;
    return ns_batch_norm(x[0], b->affine ? x[1] : NULL, b->affine ? x[2] : NULL,
                         b->running ? x[3] : NULL, b->running ? x[4] : NULL, b->training, 0.1f,
                         1e-5f);
}
typedef struct {
    int stride, pad;
    bool bias;
} conv_ctx;
static ns_tensor *f_conv(ns_tensor **x, const void *c) {
    const conv_ctx *k = c;
    return ns_conv2d(x[0], x[1], k->bias ? x[2] : NULL, k->stride, k->pad);
}
typedef struct {
    int k, stride, pad;
    bool max;
} pool_ctx;
static ns_tensor *f_pool(ns_tensor **x, const void *c) {
    const pool_ctx *p = c;
    return p->max ? ns_max_pool2d(x[0], p->k, p->stride, p->pad)
                  : ns_avg_pool2d(x[0], p->k, p->stride, p->pad);
}
static ns_tensor *f_concat(ns_tensor **x, const void *c) {
    return ns_concat(x, 3, *(const int *)c);
}
static ns_tensor *f_detach(ns_tensor **x, const void *c) {
    (void)c;
    return ns_mul(x[0], ns_detach(ns_mul(x[0], x[0])));
}
/* A round trip through the other device: differentiable moves both ways. */
static ns_tensor *f_round_trip(ns_tensor **x, const void *c) {
    (void)c;
    ns_device other = x[0]->device == NS_CPU ? NS_CUDA : NS_CPU;
    ns_tensor *y = ns_tanh(ns_to(x[0], other));
    return ns_mul(ns_to(y, x[0]->device), x[0]);
}

static void test_ops(void) {
    for (int t = 0; t < 3; t++) {
        const int64_t d[3][3] = {{7, 13, 5}, {128, 784, 256}, {1, 33, 1}};
        input in[2] = {mk(NS_DIMS(d[t][0], d[t][1]), -1, 1, true),
                       mk(NS_DIMS(d[t][1], d[t][2]), -1, 1, true)};
        run_op(t == 0   ? "matmul 7x13 @ 13x5"
               : t == 1 ? "matmul 128x784 @ 784x256"
                        : "matmul 1x33 @ 33x1",
               2, in, f_matmul, NULL, 1e-4, 1e-4);
        drop(in, 2);
    }
    {
        input in[3] = {mk(NS_DIMS(128, 256), -1, 1, true), mk(NS_DIMS(10, 256), -0.1f, 0.1f, true),
                       mk(NS_DIMS(10), -0.1f, 0.1f, true)};
        run_op("linear 128x256 -> 10, bias", 3, in, f_linear, "bias", 1e-4, 1e-4);
        run_op("linear 128x256 -> 10, no bias", 2, in, f_linear, NULL, 1e-4, 1e-4);
        drop(in, 3);
    }
    {
        input in[2] = {mk(NS_DIMS(3, 1001), -2, 2, true), mk(NS_DIMS(3, 1001), -2, 2, true)};
        run_op("add", 2, in, f_add, NULL, 0, 0);
        run_op("sub", 2, in, f_sub, NULL, 0, 0);
        run_op("mul", 2, in, f_mul, NULL, 0, 0);
        run_op("scale and add_scalar", 1, in, f_scale_shift, NULL, 0, 0);
        run_op("mse", 2, in, f_mse, NULL, 1e-5, 1e-5);
        run_op("detach", 1, in, f_detach, NULL, 0, 0);
        run_op("to(other device) and back", 1, in, f_round_trip, NULL, 1e-6, 1e-6);
        drop(in, 2);
    }
    {
        input in[2] = {mk(NS_DIMS(8, 5), -1, 1, true), mk(NS_DIMS(5), -1, 1, true)};
        run_op("bias_add (N,C)", 2, in, f_bias_add, NULL, 0, 0);
        drop(in, 2);
        input in4[2] = {mk(NS_DIMS(4, 3, 5, 6), -1, 1, true), mk(NS_DIMS(3), -1, 1, true)};
        run_op("bias_add (N,C,H,W)", 2, in4, f_bias_add, NULL, 1e-6, 1e-6);
        drop(in4, 2);
    }
    {
        input in[1] = {mk(NS_DIMS(4, 6, 5), -1, 1, true)};
        run_op("reshape, flatten, transpose", 1, in, f_views, NULL, 0, 0);
        run_op("sum + mean", 1, in, f_sum, NULL, 1e-5, 1e-5);
        static const int axes[3] = {0, 1, 2};
        for (int a = 0; a < 3; a++) {
            char name[64];
            snprintf(name, sizeof name, "sum_axis %d", a);
            run_op(name, 1, in, f_sum_axis, &axes[a], 1e-5, 1e-5);
            snprintf(name, sizeof name, "mean_axis %d", a);
            run_op(name, 1, in, f_mean_axis, &axes[a], 1e-5, 1e-5);
        }
        drop(in, 1);
        input big[1] = {mk(NS_DIMS(3, 70000), -1, 1, true)}; /* long rows: block-per-row path */
        run_op("sum_axis 1 of 3x70000", 1, big, f_sum_axis, &axes[1], 1e-4, 1e-5);
        run_op("sum + mean of 210000", 1, big, f_sum, NULL, 1e-4, 1e-5);
        drop(big, 1);
    }
    {
        static const int ops[5] = {0, 1, 2, 3, 4};
        static const char *names[5] = {"relu", "leaky_relu", "gelu", "tanh", "sigmoid"};
        input in[1] = {mk(NS_DIMS(17, 301), -6, 6, true)};
        for (int u = 0; u < 5; u++) run_op(names[u], 1, in, f_unary, &ops[u], 1e-6, 1e-6);
        drop(in, 1);
    }
    {
        const int64_t shapes[3][2] = {{128, 10}, {5, 1000}, {3, 1}};
        for (int s = 0; s < 3; s++) {
            input in[2] = {mk(NS_DIMS(shapes[s][0], shapes[s][1]), -8, 8, true),
                           mk_labels(shapes[s][0], (int)shapes[s][1])};
            char name[64];
            snprintf(name, sizeof name, "softmax %lldx%lld", (long long)shapes[s][0],
                     (long long)shapes[s][1]);
            run_op(name, 1, in, f_softmax, NULL, 1e-5, 1e-5);
            snprintf(name, sizeof name, "log_softmax %lldx%lld", (long long)shapes[s][0],
                     (long long)shapes[s][1]);
            run_op(name, 1, in, f_softmax, "log", 1e-5, 1e-5);
            snprintf(name, sizeof name, "cross_entropy %lldx%lld", (long long)shapes[s][0],
                     (long long)shapes[s][1]);
            run_op(name, 2, in, f_ce, NULL, 1e-5, 1e-5);
            drop(in, 2);
        }
    }
    {
        static const float ps[3] = {0.3f, 0.9f, 1.0f};
        input in[1] = {mk(NS_DIMS(64, 1000), -1, 1, true)};
        for (int p = 0; p < 3; p++) {
            char name[64];
            snprintf(name, sizeof name, "dropout p=%.1f (same mask)", (double)ps[p]);
            run_op(name, 1, in, f_dropout, &ps[p], 0, 0);
        }
        drop(in, 1);
    }
    {
        const bn_ctx cases[4] = {
            {true, true, true}, {true, false, false}, {false, true, true}, {false, false, true}};
        const char *names[4] = {"training, affine, running", "training, plain", "eval, affine",
                                "eval, plain"};
        for (int dims = 2; dims <= 4; dims += 2)
            for (int c = 0; c < 4; c++) {
                input in[5] = {dims == 2 ? mk(NS_DIMS(128, 256), -2, 3, true)
                                         : mk(NS_DIMS(16, 8, 7, 9), -2, 3, true),
                               mk(NS_DIMS(dims == 2 ? 256 : 8), 0.5f, 1.5f, true),
                               mk(NS_DIMS(dims == 2 ? 256 : 8), -0.5f, 0.5f, true),
                               mk(NS_DIMS(dims == 2 ? 256 : 8), -0.1f, 0.1f, false),
                               mk(NS_DIMS(dims == 2 ? 256 : 8), 0.5f, 2.0f, false)};
                char name[96];
                snprintf(name, sizeof name, "batch_norm %dd %s", dims == 2 ? 1 : 2, names[c]);
                run_op(name, 5, in, f_bn, &cases[c], 1e-5, 1e-5);
                drop(in, 5);
            }
    }
    {
        const conv_ctx cases[4] = {{1, 1, true}, {2, 2, false}, {1, 0, true}, {3, 1, true}};
        const int ks[4] = {3, 5, 1, 3};
        for (int c = 0; c < 4; c++) {
            input in[3] = {mk(NS_DIMS(4, 3, 13, 11), -1, 1, true),
                           mk(NS_DIMS(6, 3, ks[c], ks[c]), -0.5f, 0.5f, true),
                           mk(NS_DIMS(6), -0.5f, 0.5f, true)};
            char name[64];
            snprintf(name, sizeof name, "conv2d k%d s%d p%d%s", ks[c], cases[c].stride,
                     cases[c].pad, cases[c].bias ? " bias" : "");
            run_op(name, cases[c].bias ? 3 : 2, in, f_conv, &cases[c], 1e-4, 1e-4);
            drop(in, 3);
        }
    }
    {
        const pool_ctx cases[4] = {
            {2, 2, 0, true}, {3, 2, 1, true}, {2, 2, 0, false}, {3, 1, 1, false}};
        for (int c = 0; c < 4; c++) {
            input in[1] = {mk(NS_DIMS(4, 5, 12, 9), -1, 1, true)};
            char name[64];
            snprintf(name, sizeof name, "%s_pool2d k%d s%d p%d", cases[c].max ? "max" : "avg",
                     cases[c].k, cases[c].stride, cases[c].pad);
            run_op(name, 1, in, f_pool, &cases[c], 1e-6, 1e-6);
            drop(in, 1);
        }
    }
    {
        static const int axes[2] = {0, 1};
        input in[3] = {mk(NS_DIMS(3, 4, 5), -1, 1, true), mk(NS_DIMS(3, 4, 5), -1, 1, true),
                       mk(NS_DIMS(3, 4, 5), -1, 1, false)};
        run_op("concat axis 0", 3, in, f_concat, &axes[0], 0, 0);
        run_op("concat axis 1", 3, in, f_concat, &axes[1], 0, 0);
        drop(in, 3);
    }
}

/* ------------------------------------------------------------------ table entries the ops do not
 * reach */

static float *dev_copy(const ns_backend *be, const float *h, int64_t n) {
    float *d = be->alloc((size_t)(n ? n : 1) * 4);
    if (n) be->from_host(d, h, (size_t)n * 4);
    return d;
}

static void test_table_entries(void) {
    const ns_backend *cpu = ns_backend_get(NS_CPU), *gpu = ns_backend_get(NS_CUDA);
    printf("norms: 40 tensors in one launch\n");
    {
        enum { N = 40 };
        int64_t lens[N];
        float *h[N];
        const float *xc[N], *xg[N];
        for (int i = 0; i < N; i++) {
            lens[i] = i == 5 ? 0 : (int64_t)(frand(0, 1) * 30000) + (i % 3 == 0 ? 100000 : 1);
            h[i] = xmalloc(sizeof(float) * (size_t)(lens[i] ? lens[i] : 1));
            for (int64_t j = 0; j < lens[i]; j++) h[i][j] = frand(-1, 1);
            if (i == 7) h[i][3] = NAN;
            if (i == 9) h[i][0] = h[i][lens[i] - 1] = INFINITY;
            xc[i] = h[i];
            xg[i] = dev_copy(gpu, h[i], lens[i]);
        }
        double sc[N], sg[N];
        int64_t bc[N], bg[N];
        cpu->norms(N, xc, lens, sc, bc);
        gpu->norms(N, xg, lens, sg, bg);
        for (int i = 0; i < N; i++) {
            char what[64];
            snprintf(what, sizeof what, "sumsq of tensor %d (n=%lld)", i, (long long)lens[i]);
            check_d(what, sc[i], sg[i], 1e-5);
            snprintf(what, sizeof what, "non-finite count of tensor %d", i);
            check_i(what, bc[i], bg[i]);
            gpu->free((void *)xg[i]);
            free(h[i]);
        }
    }
    printf("act_stats\n");
    {
        const int64_t shapes[3][3] = {{128, 256, 1}, {64, 32, 784}, {60000, 10, 1}};
        for (int s = 0; s < 3; s++) {
            int64_t r = shapes[s][0], f = shapes[s][1], in = shapes[s][2], n = r * f * in;
            float *h = xmalloc(sizeof(float) * (size_t)n);
            for (int64_t i = 0; i < n; i++) {
                int64_t feat = (i / in) % f;
                h[i] = feat % 5 == 0 ? 0.0f : frand(-1, 1) > 0 ? frand(0, 2) : 0.0f; /* dead: f%5 */
            }
            if (s == 1) h[12345] = NAN;
            float *d = dev_copy(gpu, h, n);
            double sc, ssc, sg, ssg;
            int64_t zc, dc, bc, zg, dg, bg;
            cpu->act_stats(h, r, f, in, &sc, &ssc, &zc, &dc, &bc);
            gpu->act_stats(d, r, f, in, &sg, &ssg, &zg, &dg, &bg);
            char what[80];
            snprintf(what, sizeof what, "act sum %lldx%lldx%lld", (long long)r, (long long)f,
                     (long long)in);
            check_d(what, sc, sg, 1e-5);
            check_d("act sum of squares", ssc, ssg, 1e-5);
            check_i("act zeros", zc, zg);
            check_i("act dead features", dc, dg);
            check_i("act non-finite", bc, bg);
            gpu->free(d);
            free(h);
        }
    }
    printf("fused optimizers: 12 slots (one without a gradient, one empty, one with NaN)\n");
    for (int kind = 0; kind < 4; kind++) {
        enum { N = 12 };
        ns_optim_slot sc[N], sg[N];
        float *hw[N], *hg[N], *hs1[N], *hs2[N];
        for (int i = 0; i < N; i++) {
            int64_t n = i == 4 ? 0 : (int64_t)(frand(0, 1) * 20000) + (i == 0 ? 200000 : 1);
            hw[i] = xmalloc(sizeof(float) * (size_t)(n + 1));
            hg[i] = xmalloc(sizeof(float) * (size_t)(n + 1));
            hs1[i] = xmalloc(sizeof(float) * (size_t)(n + 1));
            hs2[i] = xmalloc(sizeof(float) * (size_t)(n + 1));
            for (int64_t j = 0; j < n; j++) {
                hw[i][j] = frand(-1, 1);
                hg[i][j] = frand(-0.1f, 0.1f);
                hs1[i][j] = frand(-0.01f, 0.01f);
                hs2[i][j] = frand(0, 1e-3f);
            }
            if (i == 6 && n > 10) hg[i][10] = NAN;
            float lr = i % 2 ? 1e-2f : 3e-3f, wd = i % 3 ? 0.0f : 1e-2f;
            sc[i] = (ns_optim_slot){hw[i], i == 2 ? NULL : hg[i], hs1[i], hs2[i], n, lr, wd};
            sg[i] = (ns_optim_slot){dev_copy(gpu, hw[i], n),
                                    i == 2 ? NULL : dev_copy(gpu, hg[i], n),
                                    dev_copy(gpu, hs1[i], n),
                                    dev_copy(gpu, hs2[i], n),
                                    n,
                                    lr,
                                    wd};
        }
        double stc[4 * N], stg[4 * N];
        const char *kname[4] = {"SGD", "SGD momentum nesterov", "Adam", "AdamW"};
        for (int step = 1; step <= 3; step++) {
            if (kind == 0) {
                cpu->sgd_step(N, sc, 0.0f, 0.0f, false, step == 1, stc);
                gpu->sgd_step(N, sg, 0.0f, 0.0f, false, step == 1, stg);
            } else if (kind == 1) {
                cpu->sgd_step(N, sc, 0.9f, 0.0f, true, step == 1, stc);
                gpu->sgd_step(N, sg, 0.9f, 0.0f, true, step == 1, stg);
            } else {
                float bc1 = (float)(1 - pow(0.9, step)), bc2 = (float)(1 - pow(0.999, step));
                cpu->adam_step(N, sc, 0.9f, 0.999f, 1e-8f, kind == 3, bc1, bc2, stc);
                gpu->adam_step(N, sg, 0.9f, 0.999f, 1e-8f, kind == 3, bc1, bc2, stg);
            }
        }
        printf("%s, 3 steps\n", kname[kind]);
        for (int i = 0; i < N; i++) {
            int64_t n = sc[i].n;
            float *w = xmalloc(sizeof(float) * (size_t)(n + 1));
            char what[80];
            gpu->to_host(w, sg[i].w, (size_t)n * 4);
            snprintf(what, sizeof what, "%s slot %d weights (exact)", kname[kind], i);
            check_f(what, hw[i], w, n, 0, 0);
            gpu->to_host(w, sg[i].s1, (size_t)n * 4);
            snprintf(what, sizeof what, "%s slot %d state 1 (exact)", kname[kind], i);
            check_f(what, hs1[i], w, kind == 0 ? 0 : n, 0, 0);
            if (kind >= 2) {
                gpu->to_host(w, sg[i].s2, (size_t)n * 4);
                snprintf(what, sizeof what, "%s slot %d state 2 (exact)", kname[kind], i);
                check_f(what, hs2[i], w, n, 0, 0);
            }
            const char *sn[4] = {"grad^2", "update^2", "weight^2", "non-finite"};
            for (int k = 0; k < 4; k++) {
                snprintf(what, sizeof what, "%s slot %d %s", kname[kind], i, sn[k]);
                if (k == 3)
                    check_i(what, (int64_t)stc[4 * i + k], (int64_t)stg[4 * i + k]);
                else
                    check_d(what, stc[4 * i + k], stg[4 * i + k], 1e-5);
            }
            free(w);
            gpu->free(sg[i].w);
            if (sg[i].g) gpu->free((void *)sg[i].g);
            gpu->free(sg[i].s1);
            gpu->free(sg[i].s2);
            free(hw[i]);
            free(hg[i]);
            free(hs1[i]);
            free(hs2[i]);
        }
    }
    printf("gemm through the table: transposes, alpha, beta\n");
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            int64_t m = 37, n = 29, k = 301;
            float *a = xmalloc(sizeof(float) * (size_t)(m * k)),
                  *b = xmalloc(sizeof(float) * (size_t)(k * n));
            float *c = xmalloc(sizeof(float) * (size_t)(m * n)),
                  *r = xmalloc(sizeof(float) * (size_t)(m * n));
            for (int64_t i = 0; i < m * k; i++) a[i] = frand(-1, 1);
            for (int64_t i = 0; i < k * n; i++) b[i] = frand(-1, 1);
            for (int64_t i = 0; i < m * n; i++) c[i] = frand(-1, 1);
            float *da = dev_copy(gpu, a, m * k), *db = dev_copy(gpu, b, k * n),
                  *dc = dev_copy(gpu, c, m * n);
            cpu->gemm(ta, tb, m, n, k, 0.5f, a, b, 0.25f, c);
            gpu->gemm(ta, tb, m, n, k, 0.5f, da, db, 0.25f, dc);
            gpu->to_host(r, dc, (size_t)(m * n) * 4);
            char what[64];
            snprintf(what, sizeof what, "gemm ta=%d tb=%d alpha=0.5 beta=0.25", ta, tb);
            check_f(what, c, r, m * n, 1e-4, 1e-4);
#ifdef NS_HAVE_CUDA
            if (ta == 0 && tb == 0) {
                ns_cuda_set_tf32(true);
                gpu->from_host(dc, r, (size_t)(m * n) * 4);
                memcpy(c, r, sizeof(float) * (size_t)(m * n));
                cpu->gemm(false, false, m, n, k, 1.0f, a, b, 0.0f, c);
                gpu->gemm(false, false, m, n, k, 1.0f, da, db, 0.0f, dc);
                gpu->to_host(r, dc, (size_t)(m * n) * 4);
                check_f("gemm with TF32 on (rtol 2e-2 of sqrt(k))", c, r, m * n,
                        2e-2 * sqrt(k) / 10, 2e-2);
                ns_cuda_set_tf32(false);
            }
#endif
            gpu->free(da);
            gpu->free(db);
            gpu->free(dc);
            free(a);
            free(b);
            free(c);
            free(r);
        }
}

/* ------------------------------------------------------------------ cuDNN convolution */

static void test_cudnn_conv(void) {
#ifdef NS_HAVE_CUDA
    char why[256];
    if (!ns_cuda_conv2d_available(why, sizeof why)) {
        check_true("cuDNN convolution available", false, why);
        return;
    }
    printf("cuDNN conv2d vs the CPU's im2col + GEMM (whole batch)\n");
    const int64_t cases[3][4] = {
        /* k, stride, pad, cin */ {3, 1, 1, 3}, {5, 2, 2, 8}, {1, 1, 0, 16}};
    for (int c = 0; c < 3; c++) {
        int64_t k = cases[c][0], s = cases[c][1], p = cases[c][2], cin = cases[c][3];
        int64_t n = 8, h = 28, w = 28, cout = 16, ho = (h + 2 * p - k) / s + 1,
                wo = (w + 2 * p - k) / s + 1;
        input in[2] = {mk(NS_DIMS(n, cin, h, w), -1, 1, true),
                       mk(NS_DIMS(cout, cin, k, k), -0.5f, 0.5f, true)};
        ns_tensor *y = ns_conv2d(in[0].t[0], in[1].t[0], NULL, (int)s, (int)p);
        float *seed = xmalloc(sizeof(float) * (size_t)y->numel);
        for (int64_t i = 0; i < y->numel; i++) seed[i] = frand(-1, 1);
        ns_backward(y, ns_from_host(y->ndim, y->shape, seed, NS_CPU));
        float *yc = host_of(y), *gxc = host_of(in[0].t[0]->grad), *gwc = host_of(in[1].t[0]->grad);
        ns_tensor *yg = ns_tmp(NS_DIMS(n, cout, ho, wo), NS_CUDA);
        ns_tensor *sg = ns_from_host(NS_DIMS(n, cout, ho, wo), seed, NS_CUDA);
        ns_tensor *gx = ns_tensor_new(NS_DIMS(n, cin, h, w), NS_CUDA);
        ns_tensor *gw = ns_tensor_new(NS_DIMS(cout, cin, k, k), NS_CUDA);
        ns_cuda_conv2d(in[0].t[1]->data, in[1].t[1]->data, yg->data, n, cin, h, w, cout, k, s, p,
                       ho, wo);
        ns_cuda_conv2d_bwd_acc(in[0].t[1]->data, in[1].t[1]->data, sg->data, gx->data, gw->data, n,
                               cin, h, w, cout, k, s, p, ho, wo);
        float *yh = host_of(yg), *gxh = host_of(gx), *gwh = host_of(gw);
        char what[80];
        snprintf(what, sizeof what, "cudnn conv k%lld s%lld p%lld forward", (long long)k,
                 (long long)s, (long long)p);
        check_f(what, yc, yh, y->numel, 1e-4, 1e-4);
        check_f("cudnn conv grad input", gxc, gxh, gx->numel, 1e-4, 1e-4);
        check_f("cudnn conv grad weight", gwc, gwh, gw->numel, 1e-3, 1e-4);
        free(seed);
        free(yc);
        free(gxc);
        free(gwc);
        free(yh);
        free(gxh);
        free(gwh);
        ns_tensor_free(gx);
        ns_tensor_free(gw);
        drop(in, 2);
        ns_scope_reset();
    }
#endif
}

/* ------------------------------------------------------------------ errors the user can cause */

static jmp_buf g_jmp;
static void on_error(const char *msg, void *ud) {
    (void)msg;
    (void)ud;
    longjmp(g_jmp, 1);
}

static void test_user_errors(void) {
    printf("user errors on the GPU\n");
    ns_set_error_handler(on_error, NULL);
    input a = mk(NS_DIMS(4, 10), -1, 1, false), b = mk(NS_DIMS(4, 10), -1, 1, false);
    if (!setjmp(g_jmp)) {
        ns_add(a.t[0], b.t[1]);
        check_true("mixing devices is an error", false, "no error");
    } else {
        const char *m = ns_last_error();
        check_true("mixing devices names both devices", strstr(m, "cpu") && strstr(m, "cuda"), m);
    }
    ns_scope_reset();
    int32_t labels[4] = {1, 2, 12, 3};
    if (!setjmp(g_jmp)) {
        ns_tensor *y = ns_from_host_i32(NS_DIMS(4), labels, NS_CUDA);
        ns_cross_entropy(a.t[1], y);
        check_true("cross_entropy target out of range", false, "no error");
    } else {
        const char *m = ns_last_error();
        check_true("cross_entropy names the bad target", strstr(m, "12") && strstr(m, "row 2"), m);
    }
    ns_scope_reset();
    ns_set_error_handler(NULL, NULL);
    ns_tensor_free(a.t[0]);
    ns_tensor_free(a.t[1]);
    ns_tensor_free(b.t[0]);
    ns_tensor_free(b.t[1]);
}

/* ------------------------------------------------------------------ modules on the GPU */

static ns_module *mlp(void) {
    return ns_sequential_new(5, ns_linear_new(784, 256, true), ns_batchnorm1d_new(256),
                             ns_relu_new(), ns_dropout_new(0.3), ns_linear_new(256, 10, true));
}

static ns_module *convnet(void) {
    return ns_sequential_new(
        9, ns_conv2d_new(1, 8, 3, 1, 1, true), ns_batchnorm2d_new(8), ns_relu_new(),
        ns_maxpool2d_new(2, 2, 0), ns_conv2d_new(8, 16, 3, 1, 1, false), ns_gelu_new(),
        ns_avgpool2d_new(2, 2, 0), ns_flatten_new(), ns_linear_new(16 * 7 * 7, 10, true));
}

/* Trains the same model (same seed) on both devices with the same batches and dropout masks;
 * compares losses, optimizer statistics, every parameter and buffer, then checks state_dict
 * interchange and moving back to the CPU. */
static void train_both(const char *name, ns_module *(*make)(void), bool conv, bool adam,
                       int steps) {
    printf("module %s: %d steps with %s on both devices\n", name, steps,
           adam ? "Adam" : "SGD momentum");
    ns_module *m[2];
    ns_optimizer *opt[2];
    for (int d = 0; d < 2; d++) {
        ns_manual_seed(7);
        m[d] = make();
        ns_module_to(m[d], d ? NS_CUDA : NS_CPU);
        int np;
        ns_tensor **ps = ns_optim_params_of(m[d], &np);
        opt[d] = adam ? ns_adam_new(ps, np, 1e-3, 0.9, 0.999, 1e-8, 1e-4)
                      : ns_sgd_new(ps, np, 0.05, 0.9, 0.0, 1e-4, false);
        free(ps);
    }
    int64_t B = 32, feat = 784;
    float *x = xmalloc(sizeof(float) * (size_t)(B * feat));
    int32_t *y = xmalloc(sizeof(int32_t) * (size_t)B);
    float loss[2][64];
    for (int step = 0; step < steps; step++) {
        for (int64_t i = 0; i < B * feat; i++) x[i] = frand(-1, 1);
        for (int64_t i = 0; i < B; i++) y[i] = (int32_t)(frand(0, 10)) % 10;
        for (int d = 0; d < 2; d++) {
            ns_device dev = d ? NS_CUDA : NS_CPU;
            ns_rng_set_state(99, (uint64_t)step * 1000000);
            ns_tensor *xt = conv ? ns_from_host(NS_DIMS(B, 1, 28, 28), x, dev)
                                 : ns_from_host(NS_DIMS(B, feat), x, dev);
            ns_tensor *yt = ns_from_host_i32(NS_DIMS(B), y, dev);
            ns_optim_zero_grad(opt[d]);
            ns_tensor *l = ns_cross_entropy(ns_call(m[d], xt), yt);
            ns_backward(l, NULL);
            ns_optim_step(opt[d]);
            loss[d][step] = ns_item(l);
            ns_scope_reset();
        }
    }
    check_f("training losses", loss[0], loss[1], steps, 1e-4, 1e-4);
    int np;
    for (int i = 0; i < ns_optim_num_params(opt[0]); i++) {
        ns_param_stats a, b;
        ns_optim_last_stats(opt[0], i, &a);
        ns_optim_last_stats(opt[1], i, &b);
        char what[96];
        snprintf(what, sizeof what, "param %d grad norm (last step)", i);
        check_d(what, a.grad_norm, b.grad_norm, 1e-3);
        snprintf(what, sizeof what, "param %d update norm (last step)", i);
        check_d(what, a.update_norm, b.update_norm, 1e-2);
    }
    ns_named_tensor *pc = ns_named_parameters(m[0], &np), *pg = ns_named_parameters(m[1], &np);
    for (int i = 0; i < np; i++) {
        float *a = host_of(pc[i].tensor), *b = host_of(pg[i].tensor);
        char what[96];
        snprintf(what, sizeof what, "parameter %s", pc[i].name);
        check_f(what, a, b, pc[i].tensor->numel, 1e-3, 1e-3);
        free(a);
        free(b);
    }
    free(pc);
    free(pg);
    ns_named_tensor *bc = ns_named_buffers(m[0], &np), *bg = ns_named_buffers(m[1], &np);
    for (int i = 0; i < np; i++) {
        float *a = host_of(bc[i].tensor), *b = host_of(bg[i].tensor);
        char what[96];
        snprintf(what, sizeof what, "buffer %s", bc[i].name);
        if (bc[i].tensor->dtype == NS_F32) check_f(what, a, b, bc[i].tensor->numel, 1e-3, 1e-3);
        free(a);
        free(b);
    }
    free(bc);
    free(bg);

    /* state_dict written from the GPU model, read into a fresh CPU model: eval outputs agree */
    char path[512], err[512];
    const char *dir = getenv("OUT") ? getenv("OUT") : "/tmp";
    snprintf(path, sizeof path, "%s/test_cuda_ops_%s.safetensors", dir, name);
    bool saved = ns_save_state_dict(m[1], path, err, sizeof err);
    check_true("state_dict saved from the GPU model", saved, saved ? path : err);
    ns_manual_seed(1234);
    ns_module *fresh = make();
    bool loaded = saved && ns_load_state_dict(fresh, path, true, NULL, err, sizeof err);
    check_true("state_dict loaded into a CPU model", loaded, loaded ? "strict" : err);
    remove(path);
    ns_module_eval(m[1]);
    ns_module_eval(fresh);
    bool prev = ns_set_grad_enabled(false);
    ns_tensor *xg = conv ? ns_from_host(NS_DIMS(B, 1, 28, 28), x, NS_CUDA)
                         : ns_from_host(NS_DIMS(B, feat), x, NS_CUDA);
    ns_tensor *xc = conv ? ns_from_host(NS_DIMS(B, 1, 28, 28), x, NS_CPU)
                         : ns_from_host(NS_DIMS(B, feat), x, NS_CPU);
    float *og = host_of(ns_call(m[1], xg)), *oc = host_of(ns_call(fresh, xc));
    check_f("eval outputs: GPU model vs its state_dict on the CPU", oc, og, B * 10, 1e-4, 1e-4);
    /* moving the GPU model back to the CPU gives the same outputs */
    ns_module_to(m[1], NS_CPU);
    float *ob = host_of(ns_call(m[1], xc));
    check_f("eval outputs after to(cpu)", og, ob, B * 10, 1e-4, 1e-4);
    ns_set_grad_enabled(prev);
    ns_scope_reset();
    free(og);
    free(oc);
    free(ob);
    free(x);
    free(y);
    for (int d = 0; d < 2; d++) {
        ns_optim_free(opt[d]);
        ns_module_free(m[d]);
    }
    ns_module_free(fresh);
}

/* The caching allocator: identical training steps make no cudaMalloc after the first ones, and
 * every scope tensor is returned at the step end. */
static void test_allocator_steady_state(void) {
#ifdef NS_HAVE_CUDA
    printf("caching allocator in a training loop\n");
    ns_manual_seed(3);
    ns_module *m = mlp();
    ns_module_to(m, NS_CUDA);
    int np;
    ns_tensor **ps = ns_optim_params_of(m, &np);
    ns_optimizer *opt = ns_adam_new(ps, np, 1e-3, 0.9, 0.999, 1e-8, 0.0);
    free(ps);
    float *x = xmalloc(sizeof(float) * 128 * 784);
    int32_t y[128];
    for (int i = 0; i < 128 * 784; i++) x[i] = frand(-1, 1);
    for (int i = 0; i < 128; i++) y[i] = i % 10;
    size_t base_in_use = 0, in_use, cached, peak;
    uint64_t raw_after[6];
    for (int step = 0; step < 6; step++) {
        if (step == 0) ns_cuda_mem_stats(&base_in_use, NULL, NULL);
        ns_optim_zero_grad(opt);
        ns_tensor *l = ns_cross_entropy(ns_call(m, ns_from_host(NS_DIMS(128, 784), x, NS_CUDA)),
                                        ns_from_host_i32(NS_DIMS(128), y, NS_CUDA));
        ns_backward(l, NULL);
        ns_optim_step(opt);
        (void)ns_item(l);
        ns_scope_reset();
        raw_after[step] = ns_cuda_mem_raw_allocs();
    }
    ns_cuda_mem_stats(&in_use, &cached, &peak);
    char d[160];
    snprintf(d, sizeof d, "cudaMalloc calls after steps 2..6: %llu %llu %llu %llu %llu",
             (unsigned long long)raw_after[1], (unsigned long long)raw_after[2],
             (unsigned long long)raw_after[3], (unsigned long long)raw_after[4],
             (unsigned long long)raw_after[5]);
    check_true("no cudaMalloc in the steady state", raw_after[5] == raw_after[2], d);
    snprintf(d, sizeof d, "in use %zu (grads and optimizer state: %zu), cached %zu, peak %zu",
             in_use, in_use - base_in_use, cached, peak);
    check_true("scope memory returned at the step end", cached > 0 && peak > in_use, d);
    ns_cuda_empty_cache();
    ns_cuda_mem_stats(NULL, &cached, NULL);
    check_true("empty_cache releases the cache", cached == 0, "cached 0");
    free(x);
    ns_optim_free(opt);
    ns_module_free(m);
#endif
}

int main(void) {
    char why[256] = "";
    if (!ns_device_available(NS_CUDA, why, sizeof why)) {
        printf("SKIP test_cuda_ops: %s\n", why);
        return 77;
    }
#ifdef NS_HAVE_CUDA
    printf("device: %s\n", ns_cuda_device_desc());
#endif
    test_ops();
    test_table_entries();
    test_cudnn_conv();
    test_user_errors();
    train_both("mlp_adam", mlp, false, true, 10);
    train_both("mlp_sgd", mlp, false, false, 10);
    train_both("convnet_sgd", convnet, true, false, 5);
    test_allocator_steady_state();
    printf("test_cuda_ops: %d checks, %d failed\n", g_checks, g_fails);
    return g_fails ? 1 : 0;
}
