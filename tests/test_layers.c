/* Layers: PyTorch's default initialisation, output shapes, every layer's gradient through
 * ns_call by central finite differences (inputs and parameters), BatchNorm running statistics
 * against hand computation, Dropout in training and eval mode.
 *
 * Gradient tolerance: gradcheck.h's documented defaults (h = 1e-3, |analytic - numeric| <=
 * 1e-3 + 1e-2 * |numeric|, float32 forward, double accumulation of the projected output).
 * Inputs of kinked layers (ReLU, LeakyReLU) stay >= 0.05 away from the kink and max-pool
 * inputs are distinct by 0.01, both well beyond 2h, so the differences never cross a kink. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "gradcheck.h"
#include "nnscope.h"

static int setup(void **state) {
    (void)state;
    ns_call_stack_reset();
    ns_scope_reset();
    ns_set_grad_enabled(true);
    ns_manual_seed(0);
    return 0;
}

/* ------------------------------------------------------------------ initialisation */

static void check_uniform_init(const ns_tensor *t, double bound, uint64_t seed, uint64_t c0) {
    float *h = gc_host(t);
    double lo = 1e9, hi = -1e9, sum = 0;
    for (int64_t i = 0; i < t->numel; i++) {
        /* Exactly the global generator's draws, in order. */
        float want = (float)-bound + (float)(2 * bound) * ns_rng_uniform(seed, c0 + (uint64_t)i);
        assert_true(h[i] == want);
        assert_true(h[i] >= -bound && h[i] < bound);
        lo = fmin(lo, h[i]);
        hi = fmax(hi, h[i]);
        sum += h[i];
    }
    if (t->numel >= 1000) { /* a large sample spans the range and centres on 0 */
        assert_true(lo < -0.98 * bound && hi > 0.98 * bound);
        assert_true(fabs(sum / (double)t->numel) < 0.05 * bound);
    }
    free(h);
}

/* kaiming_uniform_(a=sqrt(5)) = U(-1/sqrt(fan_in), 1/sqrt(fan_in)); bias the same bound; weight
 * drawn before bias. */
static void test_default_init(void **state) {
    (void)state;
    ns_manual_seed(42);
    ns_module *lin = ns_linear_new(784, 256, true);
    check_uniform_init(ns_as_linear(lin)->weight, 1.0 / 28.0, 42, 0);
    check_uniform_init(ns_as_linear(lin)->bias, 1.0 / 28.0, 42, 784 * 256);
    ns_module *conv = ns_conv2d_new(3, 8, 3, 1, 1, true);
    double cb = 1.0 / sqrt(27.0);
    check_uniform_init(ns_as_conv2d(conv)->weight, cb, 42, 784 * 256 + 256);
    check_uniform_init(ns_as_conv2d(conv)->bias, cb, 42, 784 * 256 + 256 + 8 * 27);
    GC_ASSERT_SHAPE(ns_as_conv2d(conv)->weight, 8, 3, 3, 3);
    /* Same seed, same weights; another seed, other weights. */
    ns_manual_seed(42);
    ns_module *again = ns_linear_new(784, 256, true);
    assert_memory_equal(ns_as_linear(again)->weight->data, ns_as_linear(lin)->weight->data,
                        784 * 256 * sizeof(float));
    ns_manual_seed(43);
    ns_module *other = ns_linear_new(784, 256, true);
    assert_memory_not_equal(ns_as_linear(other)->weight->data, ns_as_linear(lin)->weight->data,
                            784 * 256 * sizeof(float));
    ns_module *nobias = ns_linear_new(4, 2, false);
    assert_null(ns_as_linear(nobias)->bias);
    assert_null(ns_module_tensor(nobias, "bias"));

    ns_module *bn = ns_batchnorm1d_new(5);
    ns_batchnorm_layer *b = ns_as_batchnorm(bn);
    assert_true(b->eps == 1e-5 && b->momentum == 0.1 && b->dims == 2);
    for (int i = 0; i < 5; i++) {
        assert_true(b->weight->data[i] == 1.0f && b->bias->data[i] == 0.0f);
        assert_true(b->running_mean->data[i] == 0.0f && b->running_var->data[i] == 1.0f);
    }
    assert_int_equal(b->num_batches_tracked->ndim, 0);
    assert_true(b->num_batches_tracked->data[0] == 0.0f);
    ns_module *bn2 = ns_batchnorm2d_new(3);
    assert_int_equal(ns_as_batchnorm(bn2)->dims, 4);
    ns_module_free(bn);
    ns_module_free(bn2);
    ns_module_free(lin);
    ns_module_free(conv);
    ns_module_free(again);
    ns_module_free(other);
    ns_module_free(nobias);
}

static void test_output_shapes(void **state) {
    (void)state;
    ns_set_grad_enabled(false);
    ns_tensor *img = ns_tmp(NS_DIMS(2, 1, 28, 28), NS_CPU);
    ns_tensor_fill(img, 0.5f);
    struct {
        ns_module *m;
        int64_t shape[4];
        int ndim;
    } cases[] = {
        {ns_conv2d_new(1, 8, 3, 1, 1, true), {2, 8, 28, 28}, 4},
        {ns_conv2d_new(1, 8, 3, 2, 0, false), {2, 8, 13, 13}, 4},
        {ns_maxpool2d_new(2, 0, 0), {2, 1, 14, 14}, 4},
        {ns_avgpool2d_new(3, 1, 1), {2, 1, 28, 28}, 4},
        {ns_maxpool2d_new(3, 2, 1), {2, 1, 14, 14}, 4},
        {ns_flatten_new(), {2, 784}, 2},
        {ns_sequential_new(3, ns_conv2d_new(1, 4, 5, 1, 0, true), ns_maxpool2d_new(2, 0, 0),
                           ns_flatten_new()),
         {2, 4 * 12 * 12},
         2},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ns_tensor *y = ns_call(cases[i].m, img);
        gc_assert_shape_(__FILE__, __LINE__, y, cases[i].ndim, cases[i].shape);
        ns_module_free(cases[i].m);
    }
    ns_scope_reset();
}

/* ------------------------------------------------------------------ gradients */

static ns_tensor *call_module(ns_tensor *const *in, void *ud) {
    return ns_call((ns_module *)ud, in[0]);
}

/* Dropout draws its mask from the global generator: re-seed so every evaluation uses one mask. */
static ns_tensor *call_reseeded(ns_tensor *const *in, void *ud) {
    ns_manual_seed(1234);
    return ns_call((ns_module *)ud, in[0]);
}

/* Checks d/d(x) and d/d(every parameter) of module m at input x. */
static void check_module_grad(const char *what, ns_module *m, ns_tensor *x, gc_fn fn) {
    int np = 0;
    ns_named_tensor *ps = ns_named_parameters(m, &np);
    ns_tensor *in[16];
    in[0] = x;
    for (int i = 0; i < np; i++) in[1 + i] = ps[i].tensor;
    assert_int_equal(gc_check(what, fn, m, in, 1 + np), 0);
    free(ps);
}

/* Random non-trivial values for every parameter (BatchNorm's 1/0 defaults hide mistakes). */
static void randomise_params(ns_module *m, uint64_t seed) {
    int np = 0;
    ns_named_tensor *ps = ns_named_parameters(m, &np);
    for (int i = 0; i < np; i++)
        gc_fill_uniform(ps[i].tensor->data, ps[i].tensor->numel, seed + (uint64_t)i, -1.5f, 1.5f);
    free(ps);
}

static void test_grad_linear(void **state) {
    (void)state;
    ns_module *lin = ns_linear_new(5, 4, true), *nob = ns_linear_new(5, 3, false);
    ns_tensor *x = gc_new(NS_DIMS(3, 5), 1, -1, 1, true);
    check_module_grad("Linear(5,4)", lin, x, call_module);
    check_module_grad("Linear(5,3,bias=False)", nob, x, call_module);
    ns_module_free(lin);
    ns_module_free(nob);
    gc_free_all();
}

static void test_grad_conv2d(void **state) {
    (void)state;
    ns_module *c1 = ns_conv2d_new(2, 3, 3, 1, 1, true);
    ns_module *c2 = ns_conv2d_new(2, 3, 3, 2, 0, false);
    ns_tensor *x = gc_new(NS_DIMS(2, 2, 5, 5), 2, -1, 1, true);
    check_module_grad("Conv2d(2,3,3,padding=1)", c1, x, call_module);
    ns_tensor *x2 = gc_new(NS_DIMS(1, 2, 6, 6), 3, -1, 1, true);
    check_module_grad("Conv2d(2,3,3,stride=2,bias=False)", c2, x2, call_module);
    ns_module_free(c1);
    ns_module_free(c2);
    gc_free_all();
}

static void test_grad_batchnorm(void **state) {
    (void)state;
    ns_module *bn1 = ns_batchnorm1d_new(4), *bn2 = ns_batchnorm2d_new(3);
    randomise_params(bn1, 10);
    randomise_params(bn2, 20);
    ns_tensor *x = gc_new(NS_DIMS(6, 4), 4, -2, 2, true);
    check_module_grad("BatchNorm1d(4) train", bn1, x, call_module);
    ns_tensor *x2 = gc_new(NS_DIMS(2, 3, 3, 3), 5, -2, 2, true);
    check_module_grad("BatchNorm2d(3) train", bn2, x2, call_module);
    /* Eval mode: the running statistics are constants. */
    gc_fill_uniform(ns_as_batchnorm(bn1)->running_mean->data, 4, 30, -0.5f, 0.5f);
    gc_fill_uniform(ns_as_batchnorm(bn1)->running_var->data, 4, 31, 0.5f, 2.0f);
    ns_module_eval(bn1);
    check_module_grad("BatchNorm1d(4) eval", bn1, x, call_module);
    ns_module_free(bn1);
    ns_module_free(bn2);
    gc_free_all();
}

static void test_grad_dropout(void **state) {
    (void)state;
    ns_module *d = ns_dropout_new(0.4);
    ns_tensor *x = gc_new(NS_DIMS(4, 6), 6, -1, 1, true);
    check_module_grad("Dropout(0.4) train", d, x, call_reseeded);
    ns_module_eval(d);
    check_module_grad("Dropout(0.4) eval", d, x, call_reseeded);
    ns_module_free(d);
    gc_free_all();
}

static void test_grad_activations(void **state) {
    (void)state;
    ns_tensor *away = gc_new(NS_DIMS(3, 7), 7, 0, 1, true);
    gc_fill_away(away->data, away->numel, 7, 0.05f, 2.0f);
    ns_tensor *x = gc_new(NS_DIMS(3, 7), 8, -3, 3, true);
    ns_module *relu = ns_relu_new(), *leaky = ns_leaky_relu_new(0.1), *gelu = ns_gelu_new();
    ns_module *tanh_ = ns_tanh_new(), *sig = ns_sigmoid_new();
    check_module_grad("ReLU", relu, away, call_module);
    check_module_grad("LeakyReLU(0.1)", leaky, away, call_module);
    check_module_grad("GELU", gelu, x, call_module);
    check_module_grad("Tanh", tanh_, x, call_module);
    check_module_grad("Sigmoid", sig, x, call_module);
    /* The layer passes its slope to the op: y = 0.1 x for x < 0. */
    ns_tensor *y = ns_call(leaky, away);
    for (int64_t i = 0; i < away->numel; i++) {
        float v = away->data[i];
        assert_true(y->data[i] == (v > 0 ? v : 0.1f * v));
    }
    ns_module_free(relu);
    ns_module_free(leaky);
    ns_module_free(gelu);
    ns_module_free(tanh_);
    ns_module_free(sig);
    gc_free_all();
}

static void test_grad_flatten_and_pooling(void **state) {
    (void)state;
    ns_module *flat = ns_flatten_new();
    ns_tensor *x = gc_new(NS_DIMS(2, 3, 2, 2), 9, -1, 1, true);
    check_module_grad("Flatten", flat, x, call_module);
    ns_tensor *d = gc_new(NS_DIMS(1, 2, 4, 4), 10, 0, 1, true);
    gc_fill_distinct(d->data, d->numel, 10, 0.01f);
    ns_module *mp = ns_maxpool2d_new(2, 0, 0), *mp3 = ns_maxpool2d_new(3, 1, 1);
    ns_module *ap = ns_avgpool2d_new(2, 0, 0), *ap3 = ns_avgpool2d_new(3, 1, 1);
    check_module_grad("MaxPool2d(2)", mp, d, call_module);
    check_module_grad("MaxPool2d(3,1,1)", mp3, d, call_module);
    check_module_grad("AvgPool2d(2)", ap, x, call_module);
    check_module_grad("AvgPool2d(3,1,1)", ap3, d, call_module);
    ns_module_free(flat);
    ns_module_free(mp);
    ns_module_free(mp3);
    ns_module_free(ap);
    ns_module_free(ap3);
    gc_free_all();
}

/* A small CNN through Sequential: every parameter of every layer at once. */
static void test_grad_sequential(void **state) {
    (void)state;
    ns_module *net = ns_sequential_new(6, ns_conv2d_new(1, 2, 3, 1, 1, true), ns_batchnorm2d_new(2),
                                       ns_tanh_new(), ns_avgpool2d_new(2, 0, 0), ns_flatten_new(),
                                       ns_linear_new(2 * 2 * 2, 3, true));
    randomise_params(ns_sequential_get(net, 1), 40);
    ns_tensor *x = gc_new(NS_DIMS(3, 1, 4, 4), 11, -1, 1, true);
    check_module_grad("Sequential(Conv2d, BatchNorm2d, Tanh, AvgPool2d, Flatten, Linear)", net, x,
                      call_module);
    ns_module_free(net);
    gc_free_all();
}

/* ------------------------------------------------------------------ BatchNorm statistics */

/* BatchNorm1d(3) on a known batch: batch statistics, running_mean = 0.9*rm + 0.1*mean,
 * running_var = 0.9*rv + 0.1*var_unbiased, num_batches_tracked += 1 per training call; eval
 * uses and keeps the running statistics. */
static void test_batchnorm_running_stats(void **state) {
    (void)state;
    ns_module *m = ns_batchnorm1d_new(3);
    ns_batchnorm_layer *bn = ns_as_batchnorm(m);
    const float w[3] = {1.5f, -0.5f, 2.0f}, b[3] = {0.25f, 1.0f, -1.0f};
    ns_tensor_set(bn->weight, w);
    ns_tensor_set(bn->bias, b);
    const float xv[12] = {1, 2, 3, 2, 4, 6, 3, 6, 9, 6, -4, 2}; /* (4,3) */
    ns_tensor *x = ns_from_host(NS_DIMS(4, 3), xv, NS_CPU);
    double rm[3] = {0, 0, 0}, rv[3] = {1, 1, 1};
    for (int step = 1; step <= 2; step++) {
        ns_tensor *y = ns_call(m, x);
        for (int c = 0; c < 3; c++) {
            double mean = 0, ss = 0;
            for (int n = 0; n < 4; n++) mean += xv[n * 3 + c];
            mean /= 4;
            for (int n = 0; n < 4; n++) ss += (xv[n * 3 + c] - mean) * (xv[n * 3 + c] - mean);
            double var_b = ss / 4, var_u = ss / 3;
            rm[c] = 0.9 * rm[c] + 0.1 * mean;
            rv[c] = 0.9 * rv[c] + 0.1 * var_u;
            double yw[4];
            float yg[4];
            for (int n = 0; n < 4; n++) {
                yw[n] = (xv[n * 3 + c] - mean) / sqrt(var_b + 1e-5) * w[c] + b[c];
                yg[n] = y->data[n * 3 + c];
            }
            GC_ASSERT_CLOSE(yg, yw, 4, 1e-5, 1e-5);
        }
        float got_m[3], got_v[3];
        ns_tensor_get(bn->running_mean, got_m);
        ns_tensor_get(bn->running_var, got_v);
        GC_ASSERT_CLOSE(got_m, rm, 3, 1e-6, 1e-6);
        GC_ASSERT_CLOSE(got_v, rv, 3, 1e-6, 1e-6);
        assert_true(ns_item(bn->num_batches_tracked) == (float)step);
    }
    /* Eval: normalised with the running statistics, which stay as they are. */
    ns_module_eval(m);
    ns_tensor *y = ns_call(m, x);
    for (int c = 0; c < 3; c++) {
        double yw[4];
        float yg[4];
        for (int n = 0; n < 4; n++) {
            yw[n] = (xv[n * 3 + c] - rm[c]) / sqrt(rv[c] + 1e-5) * w[c] + b[c];
            yg[n] = y->data[n * 3 + c];
        }
        GC_ASSERT_CLOSE(yg, yw, 4, 1e-5, 1e-5);
    }
    float got_m[3];
    ns_tensor_get(bn->running_mean, got_m);
    GC_ASSERT_CLOSE(got_m, rm, 3, 1e-6, 1e-6);
    assert_true(ns_item(bn->num_batches_tracked) == 2.0f);
    /* Training on a batch of one sample per channel fails, as in PyTorch. */
    ns_module_train(m, true);
    GC_EXPECT_ERROR(ns_call(m, ns_from_host(NS_DIMS(1, 3), xv, NS_CPU)));
    GC_MSG_HAS("BatchNorm1d 3", "expected more than 1 value per channel when training");
    ns_call_stack_reset();
    ns_scope_reset();
    ns_module_free(m);
}

/* BatchNorm2d: statistics over N, H and W per channel; unbiased count N*H*W. */
static void test_batchnorm2d_running_stats(void **state) {
    (void)state;
    ns_module *m = ns_batchnorm2d_new(2);
    ns_batchnorm_layer *bn = ns_as_batchnorm(m);
    float xv[2 * 2 * 3];
    gc_fill_uniform(xv, 12, 50, -2, 2);
    ns_tensor *x = ns_from_host(NS_DIMS(2, 2, 3, 1), xv, NS_CPU);
    ns_call(m, x);
    double rm[2], rv[2];
    for (int c = 0; c < 2; c++) {
        double mean = 0, ss = 0;
        for (int n = 0; n < 2; n++)
            for (int k = 0; k < 3; k++) mean += xv[n * 6 + c * 3 + k];
        mean /= 6;
        for (int n = 0; n < 2; n++)
            for (int k = 0; k < 3; k++)
                ss += (xv[n * 6 + c * 3 + k] - mean) * (xv[n * 6 + c * 3 + k] - mean);
        rm[c] = 0.1 * mean;
        rv[c] = 0.9 + 0.1 * ss / 5;
    }
    float got_m[2], got_v[2];
    ns_tensor_get(bn->running_mean, got_m);
    ns_tensor_get(bn->running_var, got_v);
    GC_ASSERT_CLOSE(got_m, rm, 2, 1e-6, 1e-6);
    GC_ASSERT_CLOSE(got_v, rv, 2, 1e-6, 1e-6);
    ns_scope_reset();
    ns_module_free(m);
}

/* ------------------------------------------------------------------ Dropout modes */

static void test_dropout_train_vs_eval(void **state) {
    (void)state;
    ns_module *d = ns_dropout_new(0.3);
    int64_t n = 20000;
    ns_tensor *x = ns_tmp(NS_DIMS(n / 100, 100), NS_CPU);
    ns_tensor_fill(x, 1.0f);
    ns_tensor *y = ns_call(d, x);
    int64_t zeros = 0;
    for (int64_t i = 0; i < n; i++) {
        if (y->data[i] == 0.0f)
            zeros++;
        else
            assert_true(fabsf(y->data[i] - 1.0f / 0.7f) < 1e-6f); /* kept values scaled */
    }
    /* 20000 Bernoulli(0.3) draws: sd 65, so +-0.015 is more than 4 sd. */
    assert_true(fabs((double)zeros / (double)n - 0.3) < 0.015);
    ns_tensor *y2 = ns_call(d, x);
    assert_memory_not_equal(y->data, y2->data, (size_t)n * sizeof(float)); /* fresh mask */
    ns_module_eval(d);
    ns_tensor *ye = ns_call(d, x);
    assert_memory_equal(ye->data, x->data, (size_t)n * sizeof(float)); /* identity */
    ns_module *d0 = ns_dropout_new(0.0);
    ns_tensor *y0 = ns_call(d0, x);
    assert_memory_equal(y0->data, x->data, (size_t)n * sizeof(float));
    ns_scope_reset();
    ns_module_free(d);
    ns_module_free(d0);
}

int main(void) {
    gc_install();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_default_init, setup),
        cmocka_unit_test_setup(test_output_shapes, setup),
        cmocka_unit_test_setup(test_grad_linear, setup),
        cmocka_unit_test_setup(test_grad_conv2d, setup),
        cmocka_unit_test_setup(test_grad_batchnorm, setup),
        cmocka_unit_test_setup(test_grad_dropout, setup),
        cmocka_unit_test_setup(test_grad_activations, setup),
        cmocka_unit_test_setup(test_grad_flatten_and_pooling, setup),
        cmocka_unit_test_setup(test_grad_sequential, setup),
        cmocka_unit_test_setup(test_batchnorm_running_stats, setup),
        cmocka_unit_test_setup(test_batchnorm2d_running_stats, setup),
        cmocka_unit_test_setup(test_dropout_train_vs_eval, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
