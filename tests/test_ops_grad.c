/* Gradient checks (central finite differences, tests/gradcheck.h) for every differentiable op
 * of nnscope/core.h, for every input that can require grad. Tolerances: gradcheck.h defaults
 * (h 1e-3, |analytic - numeric| <= 1e-3 + 1e-2 |numeric|) unless a test says otherwise. */
#include "gradcheck.h"

#define D(...) NS_DIMS(__VA_ARGS__)

typedef struct {
    int axis, stride, pad, k, n;
    bool keepdim, training;
    float p, s;
    ns_tensor *aux[4]; /* running stats, labels */
} args;

/* ------------------------------------------------------------------ GEMM family */

static ns_tensor *f_matmul(ns_tensor *const *in, void *ud) {
    (void)ud;
    return ns_matmul(in[0], in[1]);
}

static void test_grad_matmul(void **state) {
    (void)state;
    ns_tensor *in[2] = {gc_new(D(3, 4), 1, -1, 1, true), gc_new(D(4, 5), 2, -1, 1, true)};
    GC_ASSERT("matmul", f_matmul, NULL, in, 2);
    /* Only one operand requiring grad: the other branch must be skipped cleanly. */
    ns_requires_grad(in[0], false);
    GC_ASSERT("matmul (b only)", f_matmul, NULL, in, 2);
    float *ga = gc_host(in[0]->grad); /* zeroed by gc_check, untouched by backward */
    for (int i = 0; i < 12; i++) assert_true(ga[i] == 0.0f);
    free(ga);
    ns_requires_grad(in[0], true);
    ns_requires_grad(in[1], false);
    GC_ASSERT("matmul (a only)", f_matmul, NULL, in, 2);
}

static ns_tensor *f_linear(ns_tensor *const *in, void *ud) {
    (void)ud;
    return ns_linear(in[0], in[1], in[2]);
}

static void test_grad_linear(void **state) {
    (void)state;
    ns_tensor *in[3] = {gc_new(D(4, 5), 3, -1, 1, true), gc_new(D(3, 5), 4, -1, 1, true),
                        gc_new(D(3), 5, -1, 1, true)};
    GC_ASSERT("linear", f_linear, NULL, in, 3);
    ns_tensor *nob[3] = {in[0], in[1], NULL};
    GC_ASSERT("linear without bias", f_linear, NULL, nob, 3);
    ns_requires_grad(in[0], false); /* first layer: no input gradient */
    GC_ASSERT("linear (weights only)", f_linear, NULL, in, 3);
}

/* ------------------------------------------------------------------ elementwise and scalar */

static ns_tensor *f_add(ns_tensor *const *in, void *ud) {
    (void)ud;
    return ns_add(in[0], in[1]);
}
static ns_tensor *f_sub(ns_tensor *const *in, void *ud) {
    (void)ud;
    return ns_sub(in[0], in[1]);
}
static ns_tensor *f_mul(ns_tensor *const *in, void *ud) {
    (void)ud;
    return ns_mul(in[0], in[1]);
}

static void test_grad_binary(void **state) {
    (void)state;
    ns_tensor *in[2] = {gc_new(D(3, 4), 6, -2, 2, true), gc_new(D(3, 4), 7, -2, 2, true)};
    GC_ASSERT("add", f_add, NULL, in, 2);
    GC_ASSERT("sub", f_sub, NULL, in, 2);
    GC_ASSERT("mul", f_mul, NULL, in, 2);
    ns_tensor *in4[2] = {gc_new(D(2, 3, 2, 2), 8, -2, 2, true),
                         gc_new(D(2, 3, 2, 2), 9, -2, 2, true)};
    GC_ASSERT("mul 4-D", f_mul, NULL, in4, 2);
    ns_requires_grad(in4[0], false);
    GC_ASSERT("sub (b only)", f_sub, NULL, in4, 2);
}

/* The same tensor as both operands: the gradients of the two uses add up. */
static void test_grad_binary_same_operand(void **state) {
    (void)state;
    ns_tensor *x = gc_new(D(3, 4), 10, -2, 2, true);
    ns_tensor *in[2] = {x, x};
    GC_ASSERT("add(x, x)", f_add, NULL, in, 1);
    GC_ASSERT("mul(x, x)", f_mul, NULL, in, 1);
    GC_ASSERT("sub(x, x)", f_sub, NULL, in, 1);
}

static ns_tensor *f_scale(ns_tensor *const *in, void *ud) {
    return ns_scale(in[0], ((args *)ud)->s);
}
static ns_tensor *f_add_scalar(ns_tensor *const *in, void *ud) {
    return ns_add_scalar(in[0], ((args *)ud)->s);
}

static void test_grad_scalar_ops(void **state) {
    (void)state;
    ns_tensor *in[1] = {gc_new(D(2, 5), 11, -2, 2, true)};
    args a = {.s = -1.75f};
    GC_ASSERT("scale", f_scale, &a, in, 1);
    a.s = 0.3f;
    GC_ASSERT("add_scalar", f_add_scalar, &a, in, 1);
}

static ns_tensor *f_bias_add(ns_tensor *const *in, void *ud) {
    (void)ud;
    return ns_bias_add(in[0], in[1]);
}

static void test_grad_bias_add(void **state) {
    (void)state;
    ns_tensor *in2[2] = {gc_new(D(4, 3), 12, -1, 1, true), gc_new(D(3), 13, -1, 1, true)};
    GC_ASSERT("bias_add 2-D", f_bias_add, NULL, in2, 2);
    ns_tensor *in4[2] = {gc_new(D(2, 3, 2, 3), 14, -1, 1, true), gc_new(D(3), 15, -1, 1, true)};
    GC_ASSERT("bias_add 4-D", f_bias_add, NULL, in4, 2);
    ns_requires_grad(in4[0], false);
    GC_ASSERT("bias_add 4-D (bias only)", f_bias_add, NULL, in4, 2);
}

/* ------------------------------------------------------------------ views and layout */

static ns_tensor *f_reshape(ns_tensor *const *in, void *ud) {
    (void)ud;
    return ns_reshape(in[0], D(4, -1));
}
static ns_tensor *f_reshape_tanh(ns_tensor *const *in, void *ud) {
    (void)ud; /* a view in the middle of a chain */
    return ns_tanh(ns_reshape(ns_scale(in[0], 2.0f), D(3, 8)));
}
static ns_tensor *f_flatten(ns_tensor *const *in, void *ud) {
    (void)ud;
    return ns_flatten(in[0]);
}
static ns_tensor *f_transpose(ns_tensor *const *in, void *ud) {
    (void)ud;
    return ns_transpose(in[0]);
}
static ns_tensor *f_transpose_matmul(ns_tensor *const *in, void *ud) {
    (void)ud; /* x^T x: x used twice, once through the transpose */
    return ns_matmul(ns_transpose(in[0]), in[0]);
}

static void test_grad_views(void **state) {
    (void)state;
    ns_tensor *x = gc_new(D(2, 3, 4), 16, -1, 1, true);
    GC_ASSERT("reshape", f_reshape, NULL, &x, 1);
    GC_ASSERT("reshape in a chain", f_reshape_tanh, NULL, &x, 1);
    ns_tensor *x4 = gc_new(D(2, 3, 2, 2), 17, -1, 1, true);
    GC_ASSERT("flatten", f_flatten, NULL, &x4, 1);
    ns_tensor *m = gc_new(D(3, 5), 18, -1, 1, true);
    GC_ASSERT("transpose", f_transpose, NULL, &m, 1);
    GC_ASSERT("transpose then matmul", f_transpose_matmul, NULL, &m, 1);
}

static ns_tensor *f_concat(ns_tensor *const *in, void *ud) {
    return ns_concat(in, 3, ((args *)ud)->axis);
}

static ns_tensor *f_concat5(ns_tensor *const *in, void *ud) {
    (void)ud; /* more inputs than a tape node holds inline */
    return ns_concat(in, 5, 1);
}

static void test_grad_concat(void **state) {
    (void)state;
    /* 3-D inputs (2,3,4) that differ in the concatenated axis only. */
    for (int axis = 0; axis < 3; axis++) {
        int64_t s0[3] = {2, 3, 4}, s1[3] = {2, 3, 4}, s2[3] = {2, 3, 4};
        s1[axis] = 1;
        s2[axis] = 3;
        ns_tensor *in[3] = {gc_new(3, s0, 20 + (uint64_t)axis, -1, 1, true),
                            gc_new(3, s1, 30 + (uint64_t)axis, -1, 1, true),
                            gc_new(3, s2, 40 + (uint64_t)axis, -1, 1, true)};
        args a = {.axis = axis};
        char what[64];
        snprintf(what, sizeof what, "concat axis %d", axis);
        GC_ASSERT(what, f_concat, &a, in, 3);
        if (axis == 2) {
            a.axis = -1;
            GC_ASSERT("concat axis -1", f_concat, &a, in, 3);
            ns_requires_grad(in[1], false); /* a middle input without grad */
            GC_ASSERT("concat, middle input constant", f_concat, &a, in, 3);
        }
    }
    ns_tensor *five[5];
    for (int i = 0; i < 5; i++) five[i] = gc_new(D(2, 1 + i % 2), 45 + (uint64_t)i, -1, 1, true);
    GC_ASSERT("concat of 5", f_concat5, NULL, five, 5);
}

/* ------------------------------------------------------------------ reductions */

static ns_tensor *f_sum(ns_tensor *const *in, void *ud) {
    (void)ud;
    return ns_sum(in[0]);
}
static ns_tensor *f_mean(ns_tensor *const *in, void *ud) {
    (void)ud;
    return ns_mean(in[0]);
}
static ns_tensor *f_sum_axis(ns_tensor *const *in, void *ud) {
    args *a = ud;
    return ns_sum_axis(in[0], a->axis, a->keepdim);
}
static ns_tensor *f_mean_axis(ns_tensor *const *in, void *ud) {
    args *a = ud;
    return ns_mean_axis(in[0], a->axis, a->keepdim);
}

static void test_grad_reductions(void **state) {
    (void)state;
    ns_tensor *x = gc_new(D(2, 3, 4), 50, -1, 1, true);
    GC_ASSERT("sum", f_sum, NULL, &x, 1);
    GC_ASSERT("mean", f_mean, NULL, &x, 1);
    for (int axis = -1; axis < 3; axis++)
        for (int keep = 0; keep < 2; keep++) {
            args a = {.axis = axis, .keepdim = keep};
            char what[64];
            snprintf(what, sizeof what, "sum_axis %d keepdim %d", axis, keep);
            GC_ASSERT(what, f_sum_axis, &a, &x, 1);
            snprintf(what, sizeof what, "mean_axis %d keepdim %d", axis, keep);
            GC_ASSERT(what, f_mean_axis, &a, &x, 1);
        }
    ns_tensor *x4 = gc_new(D(2, 2, 3, 2), 51, -1, 1, true);
    for (int axis = 0; axis < 4; axis++) {
        args a = {.axis = axis, .keepdim = true};
        GC_ASSERT("mean_axis 4-D", f_mean_axis, &a, &x4, 1);
    }
}

/* ------------------------------------------------------------------ activations */

static ns_tensor *f_relu(ns_tensor *const *in, void *ud) {
    (void)ud;
    return ns_relu(in[0]);
}
static ns_tensor *f_leaky_relu(ns_tensor *const *in, void *ud) {
    return ns_leaky_relu(in[0], ((args *)ud)->s);
}
static ns_tensor *f_gelu(ns_tensor *const *in, void *ud) {
    (void)ud;
    return ns_gelu(in[0]);
}
static ns_tensor *f_tanh(ns_tensor *const *in, void *ud) {
    (void)ud;
    return ns_tanh(in[0]);
}
static ns_tensor *f_sigmoid(ns_tensor *const *in, void *ud) {
    (void)ud;
    return ns_sigmoid(in[0]);
}

static void test_grad_activations(void **state) {
    (void)state;
    /* |x| in [0.05, 3): at least 50 h away from the kink at 0. */
    ns_tensor *x = gc_new(D(4, 6), 60, -1, 1, true);
    gc_fill_away(x->data, x->numel, 60, 0.05f, 3.0f);
    GC_ASSERT("relu", f_relu, NULL, &x, 1);
    args a = {.s = 0.1f};
    GC_ASSERT("leaky_relu 0.1", f_leaky_relu, &a, &x, 1);
    a.s = -0.5f;
    GC_ASSERT("leaky_relu -0.5", f_leaky_relu, &a, &x, 1);
    GC_ASSERT("gelu", f_gelu, NULL, &x, 1);
    GC_ASSERT("tanh", f_tanh, NULL, &x, 1);
    GC_ASSERT("sigmoid", f_sigmoid, NULL, &x, 1);
}

/* ------------------------------------------------------------------ softmax family and losses */

static ns_tensor *f_softmax(ns_tensor *const *in, void *ud) {
    (void)ud;
    return ns_softmax(in[0]);
}
static ns_tensor *f_log_softmax(ns_tensor *const *in, void *ud) {
    (void)ud;
    return ns_log_softmax(in[0]);
}
static ns_tensor *f_cross_entropy(ns_tensor *const *in, void *ud) {
    return ns_cross_entropy(in[0], ((args *)ud)->aux[0]);
}
static ns_tensor *f_cross_entropy_scaled(ns_tensor *const *in, void *ud) {
    /* An upstream gradient other than 1 reaches the fused loss's backward. */
    return ns_scale(ns_cross_entropy(in[0], ((args *)ud)->aux[0]), -2.5f);
}
static ns_tensor *f_mse(ns_tensor *const *in, void *ud) {
    (void)ud;
    return ns_mse(in[0], in[1]);
}

static void test_grad_softmax(void **state) {
    (void)state;
    ns_tensor *x = gc_new(D(3, 5), 70, -3, 3, true);
    GC_ASSERT("softmax", f_softmax, NULL, &x, 1);
    GC_ASSERT("log_softmax", f_log_softmax, NULL, &x, 1);
    ns_tensor *x3 = gc_new(D(2, 2, 4), 71, -3, 3, true);
    GC_ASSERT("softmax 3-D", f_softmax, NULL, &x3, 1);
    GC_ASSERT("log_softmax 3-D", f_log_softmax, NULL, &x3, 1);
}

static void test_grad_losses(void **state) {
    (void)state;
    args a = {.aux = {gc_new_labels(6, 5, 72)}};
    ns_tensor *logits = gc_new(D(6, 5), 73, -3, 3, true);
    GC_ASSERT("cross_entropy", f_cross_entropy, &a, &logits, 1);
    GC_ASSERT("cross_entropy scaled", f_cross_entropy_scaled, &a, &logits, 1);
    ns_tensor *in[2] = {gc_new(D(4, 3), 74, -1, 1, true), gc_new(D(4, 3), 75, -1, 1, true)};
    GC_ASSERT("mse", f_mse, NULL, in, 2);
    ns_requires_grad(in[1], false);
    GC_ASSERT("mse (prediction only)", f_mse, NULL, in, 2);
}

/* ------------------------------------------------------------------ dropout */

static ns_tensor *f_dropout(ns_tensor *const *in, void *ud) {
    args *a = ud;
    ns_rng_set_state(1234, 5000); /* the same mask on every evaluation */
    return ns_dropout(in[0], a->p, a->training);
}

static void test_grad_dropout(void **state) {
    (void)state;
    ns_tensor *x = gc_new(D(6, 8), 80, -1, 1, true);
    args a = {.p = 0.4f, .training = true};
    GC_ASSERT("dropout p=0.4", f_dropout, &a, &x, 1);
    /* The mask of this (seed, counter) keeps some and drops some elements. */
    ns_tensor *y = f_dropout(&x, &a);
    float *h = gc_host(y);
    int zeros = 0;
    for (int64_t i = 0; i < y->numel; i++) zeros += h[i] == 0.0f;
    free(h);
    assert_true(zeros > 5 && zeros < 43);
    a.training = false;
    GC_ASSERT("dropout eval (identity)", f_dropout, &a, &x, 1);
}

/* ------------------------------------------------------------------ batch norm */

static ns_tensor *f_batch_norm(ns_tensor *const *in, void *ud) {
    args *a = ud;
    return ns_batch_norm(in[0], in[1], in[2], a->aux[0], a->aux[1], a->training, 0.1f, 1e-5f);
}

static void bn_case(const char *what, int ndim, const int64_t *shape, bool training, bool affine,
                    uint64_t seed) {
    int64_t C = shape[1];
    ns_tensor *in[3] = {gc_new(ndim, shape, seed, -2, 2, true),
                        affine ? gc_new(1, &C, seed + 1, 0.5f, 1.5f, true) : NULL,
                        affine ? gc_new(1, &C, seed + 2, -0.5f, 0.5f, true) : NULL};
    args a = {.training = training};
    if (!training) {
        a.aux[0] = gc_new(1, &C, seed + 3, -0.5f, 0.5f, false);
        a.aux[1] = gc_new(1, &C, seed + 4, 0.5f, 2.0f, false);
    }
    GC_ASSERT(what, f_batch_norm, &a, in, 3);
}

static void test_grad_batch_norm(void **state) {
    (void)state;
    bn_case("batch_norm train 2-D", 2, (const int64_t[]){6, 3}, true, true, 90);
    bn_case("batch_norm train 4-D", 4, (const int64_t[]){2, 3, 2, 3}, true, true, 91);
    bn_case("batch_norm eval 2-D", 2, (const int64_t[]){6, 3}, false, true, 92);
    bn_case("batch_norm eval 4-D", 4, (const int64_t[]){2, 3, 2, 3}, false, true, 93);
    bn_case("batch_norm train, no affine", 4, (const int64_t[]){2, 3, 2, 2}, true, false, 94);
    bn_case("batch_norm eval, no affine", 2, (const int64_t[]){5, 2}, false, false, 95);
}

/* ------------------------------------------------------------------ conv2d and pooling */

static ns_tensor *f_conv2d(ns_tensor *const *in, void *ud) {
    args *a = ud;
    return ns_conv2d(in[0], in[1], in[2], a->stride, a->pad);
}

static void conv_case(const char *what, int64_t n, int64_t cin, int64_t h, int64_t w, int64_t cout,
                      int64_t k, int stride, int pad, bool bias, uint64_t seed) {
    ns_tensor *in[3] = {gc_new(D(n, cin, h, w), seed, -1, 1, true),
                        gc_new(D(cout, cin, k, k), seed + 1, -1, 1, true),
                        bias ? gc_new(D(cout), seed + 2, -1, 1, true) : NULL};
    args a = {.stride = stride, .pad = pad};
    GC_ASSERT(what, f_conv2d, &a, in, 3);
}

static void test_grad_conv2d(void **state) {
    (void)state;
    conv_case("conv2d 3x3 s1 p0", 2, 2, 5, 5, 3, 3, 1, 0, true, 100);
    conv_case("conv2d 3x3 s2 p1", 2, 2, 5, 5, 3, 3, 2, 1, true, 101);
    conv_case("conv2d 3x3 s2 p1 non-square", 1, 2, 6, 5, 2, 3, 2, 1, true, 102);
    conv_case("conv2d 1x1 no bias", 2, 3, 3, 4, 2, 1, 1, 0, false, 103);
    conv_case("conv2d 2x2 s1 p1", 1, 1, 4, 3, 2, 2, 1, 1, true, 104);
}

static ns_tensor *f_max_pool(ns_tensor *const *in, void *ud) {
    args *a = ud;
    return ns_max_pool2d(in[0], a->k, a->stride, a->pad);
}
static ns_tensor *f_avg_pool(ns_tensor *const *in, void *ud) {
    args *a = ud;
    return ns_avg_pool2d(in[0], a->k, a->stride, a->pad);
}

static void test_grad_pools(void **state) {
    (void)state;
    /* Values distinct by 0.01 = 10 h: no window has two maxima within the perturbation. */
    ns_tensor *x = gc_new(D(2, 2, 6, 5), 110, 0, 1, true);
    gc_fill_distinct(x->data, x->numel, 110, 0.01f);
    const int cfg[][3] = {{2, 2, 0}, {3, 2, 1}, {3, 1, 1}, {2, 1, 1}};
    for (size_t c = 0; c < sizeof cfg / sizeof cfg[0]; c++) {
        args a = {.k = cfg[c][0], .stride = cfg[c][1], .pad = cfg[c][2]};
        char what[64];
        snprintf(what, sizeof what, "max_pool2d k%d s%d p%d", a.k, a.stride, a.pad);
        GC_ASSERT(what, f_max_pool, &a, &x, 1);
        snprintf(what, sizeof what, "avg_pool2d k%d s%d p%d", a.k, a.stride, a.pad);
        GC_ASSERT(what, f_avg_pool, &a, &x, 1);
    }
}

/* ------------------------------------------------------------------ device move and chains */

static ns_tensor *f_to_cpu(ns_tensor *const *in, void *ud) {
    (void)ud;
    return ns_to(in[0], NS_CPU);
}
static ns_tensor *f_to_cpu_chain(ns_tensor *const *in, void *ud) {
    (void)ud;
    return ns_tanh(ns_to(ns_scale(in[0], 1.5f), NS_CPU));
}

static void test_grad_to_cpu(void **state) {
    (void)state;
    ns_tensor *x = gc_new(D(3, 4), 120, -1, 1, true);
    assert_ptr_equal(ns_to(x, NS_CPU), x); /* already there: the same tensor */
    GC_ASSERT("to(cpu)", f_to_cpu, NULL, &x, 1);
    GC_ASSERT("to(cpu) in a chain", f_to_cpu_chain, NULL, &x, 1);
}

/* A two-layer classifier with a residual-style reuse: every path through the graph at once. */
static ns_tensor *f_mlp(ns_tensor *const *in, void *ud) {
    args *a = ud;
    ns_tensor *h = ns_gelu(ns_linear(in[0], in[1], in[2]));
    h = ns_add(h, ns_mul(h, ns_sigmoid(h))); /* h used three times */
    ns_tensor *logits = ns_linear(h, in[3], in[4]);
    return ns_cross_entropy(logits, a->aux[0]);
}

static void test_grad_mlp_chain(void **state) {
    (void)state;
    ns_tensor *in[5] = {gc_new(D(5, 6), 130, -1, 1, true), gc_new(D(4, 6), 131, -1, 1, true),
                        gc_new(D(4), 132, -1, 1, true), gc_new(D(3, 4), 133, -1, 1, true),
                        gc_new(D(3), 134, -1, 1, true)};
    args a = {.aux = {gc_new_labels(5, 3, 135)}};
    GC_ASSERT("mlp chain", f_mlp, &a, in, 5);
}

static ns_tensor *f_cnn(ns_tensor *const *in, void *ud) {
    args *a = ud;
    ns_tensor *h = ns_conv2d(in[0], in[1], in[2], 1, 1);
    h = ns_batch_norm(h, in[3], in[4], NULL, NULL, true, 0.1f, 1e-5f);
    h = ns_avg_pool2d(ns_tanh(h), 2, 2, 0);
    return ns_cross_entropy(ns_flatten(h), a->aux[0]);
}

static void test_grad_cnn_chain(void **state) {
    (void)state;
    ns_tensor *in[5] = {gc_new(D(3, 2, 4, 4), 140, -1, 1, true),
                        gc_new(D(2, 2, 3, 3), 141, -1, 1, true), gc_new(D(2), 142, -1, 1, true),
                        gc_new(D(2), 143, 0.5f, 1.5f, true), gc_new(D(2), 144, -1, 1, true)};
    args a = {.aux = {gc_new_labels(3, 8, 145)}};
    GC_ASSERT("cnn chain", f_cnn, &a, in, 5);
}

/* The harness itself: a graph that hides one path from autograd (detach) must fail the check
 * (analytic x, numeric 2x), and an exact one must pass. */
static ns_tensor *f_half_detached(ns_tensor *const *in, void *ud) {
    (void)ud;
    return ns_mul(ns_detach(in[0]), in[0]);
}

static void test_gradcheck_detects_wrong_gradient(void **state) {
    (void)state;
    ns_tensor *x = gc_new(D(3, 4), 150, 0.5f, 1.5f, true);
    assert_int_equal(gc_check("x*detach(x) (must fail)", f_half_detached, NULL, &x, 1), 12);
    ns_tensor *in[2] = {x, x};
    assert_int_equal(gc_check("x*x", f_mul, NULL, in, 1), 0);
}

int main(void) {
    gc_install();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_gradcheck_detects_wrong_gradient, gc_teardown),
        cmocka_unit_test_teardown(test_grad_matmul, gc_teardown),
        cmocka_unit_test_teardown(test_grad_linear, gc_teardown),
        cmocka_unit_test_teardown(test_grad_binary, gc_teardown),
        cmocka_unit_test_teardown(test_grad_binary_same_operand, gc_teardown),
        cmocka_unit_test_teardown(test_grad_scalar_ops, gc_teardown),
        cmocka_unit_test_teardown(test_grad_bias_add, gc_teardown),
        cmocka_unit_test_teardown(test_grad_views, gc_teardown),
        cmocka_unit_test_teardown(test_grad_concat, gc_teardown),
        cmocka_unit_test_teardown(test_grad_reductions, gc_teardown),
        cmocka_unit_test_teardown(test_grad_activations, gc_teardown),
        cmocka_unit_test_teardown(test_grad_softmax, gc_teardown),
        cmocka_unit_test_teardown(test_grad_losses, gc_teardown),
        cmocka_unit_test_teardown(test_grad_dropout, gc_teardown),
        cmocka_unit_test_teardown(test_grad_batch_norm, gc_teardown),
        cmocka_unit_test_teardown(test_grad_conv2d, gc_teardown),
        cmocka_unit_test_teardown(test_grad_pools, gc_teardown),
        cmocka_unit_test_teardown(test_grad_to_cpu, gc_teardown),
        cmocka_unit_test_teardown(test_grad_mlp_chain, gc_teardown),
        cmocka_unit_test_teardown(test_grad_cnn_chain, gc_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
