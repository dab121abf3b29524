/* Forward outputs of the core ops against naive references computed in the test (double
 * precision): GEMM / linear against triple loops, elementwise and scalar ops, bias broadcast,
 * views, reductions over all elements and per axis, activations (gelu against the erf formula),
 * softmax / log-softmax / cross-entropy / mse against double formulas, concat. The NN ops with
 * windows and statistics (conv, pooling, batch norm, dropout) are in test_ops_nn.c. */
#include "gradcheck.h"

#define D(...) NS_DIMS(__VA_ARGS__)

/* A scope tensor with deterministic values in [lo, hi). */
static ns_tensor *rnd(int ndim, const int64_t *shape, uint64_t seed, float lo, float hi) {
    ns_tensor *t = ns_tmp(ndim, shape, NS_CPU);
    gc_fill_uniform(t->data, t->numel, seed, lo, hi);
    return t;
}

static int teardown(void **state) {
    (void)state;
    ns_scope_reset();
    return 0;
}

/* ------------------------------------------------------------------ GEMM family */

static void test_matmul_matches_triple_loop(void **state) {
    (void)state;
    /* Several shapes, non-square ones and degenerate 1-wide ones included. */
    const int64_t shapes[][3] = {{1, 1, 1},   {3, 5, 7},   {7, 5, 3},     {17, 33, 9},
                                 {64, 1, 32}, {1, 64, 20}, {128, 78, 10}, {33, 65, 31}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int64_t m = shapes[s][0], k = shapes[s][1], n = shapes[s][2];
        ns_tensor *a = rnd(D(m, k), 10 + s, -1, 1), *b = rnd(D(k, n), 20 + s, -1, 1);
        ns_tensor *y = ns_matmul(a, b);
        GC_ASSERT_SHAPE(y, m, n);
        double *want = malloc((size_t)(m * n) * sizeof *want);
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < n; j++) {
                double acc = 0;
                for (int64_t l = 0; l < k; l++)
                    acc += (double)a->data[i * k + l] * b->data[l * n + j];
                want[i * n + j] = acc;
            }
        GC_ASSERT_CLOSE(y->data, want, m * n, 1e-5 * (double)k, 1e-5);
        free(want);
        ns_scope_reset();
    }
}

static void test_linear_matches_loop(void **state) {
    (void)state;
    int64_t N = 9, in = 13, out = 6;
    ns_tensor *x = rnd(D(N, in), 30, -1, 1), *w = rnd(D(out, in), 31, -1, 1);
    ns_tensor *b = rnd(D(out), 32, -1, 1);
    for (int with_bias = 0; with_bias < 2; with_bias++) {
        ns_tensor *y = ns_linear(x, w, with_bias ? b : NULL);
        GC_ASSERT_SHAPE(y, N, out);
        double want[9 * 6];
        for (int64_t i = 0; i < N; i++)
            for (int64_t o = 0; o < out; o++) {
                double acc = with_bias ? b->data[o] : 0.0;
                for (int64_t l = 0; l < in; l++)
                    acc += (double)x->data[i * in + l] * w->data[o * in + l];
                want[i * out + o] = acc;
            }
        GC_ASSERT_CLOSE(y->data, want, N * out, 1e-5, 1e-5);
    }
}

/* ------------------------------------------------------------------ elementwise and scalar */

static void test_elementwise_and_scalar_ops(void **state) {
    (void)state;
    ns_tensor *a = rnd(D(2, 3, 4), 40, -2, 2), *b = rnd(D(2, 3, 4), 41, -2, 2);
    ns_tensor *ys[5] = {ns_add(a, b), ns_sub(a, b), ns_mul(a, b), ns_scale(a, -2.5f),
                        ns_add_scalar(a, 0.75f)};
    for (int k = 0; k < 5; k++) GC_ASSERT_SHAPE(ys[k], 2, 3, 4);
    for (int64_t i = 0; i < a->numel; i++) {
        float x = a->data[i], z = b->data[i];
        assert_true(ys[0]->data[i] == x + z);
        assert_true(ys[1]->data[i] == x - z);
        assert_true(ys[2]->data[i] == x * z);
        assert_true(ys[3]->data[i] == x * -2.5f);
        assert_true(ys[4]->data[i] == x + 0.75f);
    }
    /* Inputs are untouched (no op writes in place). */
    float *a2 = gc_host(a);
    for (int64_t i = 0; i < a->numel; i++) assert_true(a2[i] == a->data[i]);
    free(a2);
}

static void test_bias_add_broadcasts_over_dim1(void **state) {
    (void)state;
    ns_tensor *x2 = rnd(D(3, 4), 42, -1, 1), *b4 = rnd(D(4), 43, -1, 1);
    ns_tensor *y2 = ns_bias_add(x2, b4);
    for (int64_t i = 0; i < 3; i++)
        for (int64_t c = 0; c < 4; c++)
            assert_true(y2->data[i * 4 + c] == x2->data[i * 4 + c] + b4->data[c]);
    ns_tensor *x4 = rnd(D(2, 3, 2, 5), 44, -1, 1), *b3 = rnd(D(3), 45, -1, 1);
    ns_tensor *y4 = ns_bias_add(x4, b3);
    GC_ASSERT_SHAPE(y4, 2, 3, 2, 5);
    for (int64_t i = 0; i < x4->numel; i++) {
        int64_t c = (i / 10) % 3;
        assert_true(y4->data[i] == x4->data[i] + b3->data[c]);
    }
}

/* ------------------------------------------------------------------ views */

static void test_reshape_flatten_transpose_detach(void **state) {
    (void)state;
    ns_tensor *x = rnd(D(2, 3, 4), 46, -1, 1);
    ns_tensor *r = ns_reshape(x, D(4, -1));
    GC_ASSERT_SHAPE(r, 4, 6);
    assert_ptr_equal(r->data, x->data); /* a view shares storage */
    assert_int_equal(r->numel, 24);
    GC_ASSERT_SHAPE(ns_reshape(x, D(-1)), 24);
    GC_ASSERT_SHAPE(ns_reshape(x, D(1, 2, 12, 1)), 1, 2, 12, 1);
    ns_tensor *f = ns_flatten(rnd(D(5, 2, 3, 2), 47, -1, 1));
    GC_ASSERT_SHAPE(f, 5, 12);
    GC_ASSERT_SHAPE(ns_flatten(rnd(D(7), 48, -1, 1)), 7, 1);

    ns_tensor *m = rnd(D(3, 5), 49, -1, 1);
    ns_tensor *t = ns_transpose(m);
    GC_ASSERT_SHAPE(t, 5, 3);
    assert_ptr_not_equal(t->data, m->data); /* a copy */
    for (int64_t i = 0; i < 3; i++)
        for (int64_t j = 0; j < 5; j++) assert_true(t->data[j * 3 + i] == m->data[i * 5 + j]);

    ns_tensor *d = ns_detach(m);
    GC_ASSERT_SHAPE(d, 3, 5);
    assert_ptr_equal(d->data, m->data);
    assert_false(d->requires_grad);
    assert_null(d->grad_fn);
}

/* ------------------------------------------------------------------ reductions */

static void test_sum_and_mean_all(void **state) {
    (void)state;
    ns_tensor *x = rnd(D(3, 7, 5), 50, -1, 2);
    double s = 0;
    for (int64_t i = 0; i < x->numel; i++) s += x->data[i];
    ns_tensor *ys = ns_sum(x), *ym = ns_mean(x);
    GC_ASSERT_SHAPE(ys, 1);
    GC_ASSERT_SHAPE(ym, 1);
    GC_ASSERT_NEAR(ns_item(ys), s, 1e-4);
    GC_ASSERT_NEAR(ns_item(ym), s / 105.0, 1e-6);
}

/* Reference sum over one axis of a 4-D (or lower) tensor. */
static void ref_sum_axis(const ns_tensor *x, int axis, double *out) {
    int64_t outer = 1, inner = 1, len = x->shape[axis];
    for (int i = 0; i < axis; i++) outer *= x->shape[i];
    for (int i = axis + 1; i < x->ndim; i++) inner *= x->shape[i];
    for (int64_t o = 0; o < outer; o++)
        for (int64_t i = 0; i < inner; i++) {
            double acc = 0;
            for (int64_t l = 0; l < len; l++) acc += x->data[(o * len + l) * inner + i];
            out[o * inner + i] = acc;
        }
}

static void test_sum_mean_axis_every_axis(void **state) {
    (void)state;
    ns_tensor *x = rnd(D(2, 3, 4, 5), 51, -1, 1);
    double want[120];
    for (int axis = 0; axis < 4; axis++) {
        ref_sum_axis(x, axis, want);
        int64_t n = 120 / x->shape[axis];
        for (int keep = 0; keep < 2; keep++) {
            ns_tensor *s = ns_sum_axis(x, axis, keep);
            ns_tensor *m = ns_mean_axis(x, axis - 4, keep); /* negative axis: same axis */
            int64_t shape[4];
            int nd = 0;
            for (int i = 0; i < 4; i++)
                if (i != axis || keep) shape[nd++] = i == axis ? 1 : x->shape[i];
            gc_assert_shape_(__FILE__, __LINE__, s, nd, shape);
            gc_assert_shape_(__FILE__, __LINE__, m, nd, shape);
            GC_ASSERT_CLOSE(s->data, want, n, 1e-5, 1e-5);
            double wm[120];
            for (int64_t i = 0; i < n; i++) wm[i] = want[i] / (double)x->shape[axis];
            GC_ASSERT_CLOSE(m->data, wm, n, 1e-6, 1e-5);
        }
    }
    /* Reducing the only axis of a 1-D tensor gives one element. */
    ns_tensor *v = rnd(D(6), 52, -1, 1);
    GC_ASSERT_SHAPE(ns_sum_axis(v, 0, false), 1);
    GC_ASSERT_SHAPE(ns_sum_axis(v, 0, true), 1);
}

/* ------------------------------------------------------------------ activations */

static void test_activations_match_formulas(void **state) {
    (void)state;
    ns_tensor *x = rnd(D(4, 50), 53, -6, 6);
    x->data[0] = 0.0f;
    x->data[1] = -0.0f;
    x->data[2] = 30.0f; /* saturation */
    x->data[3] = -30.0f;
    int64_t n = x->numel;
    ns_tensor *y[6] = {
        ns_relu(x),   ns_leaky_relu(x, 0.01f), ns_leaky_relu(x, 0.2f), ns_gelu(x), ns_tanh(x),
        ns_sigmoid(x)};
    double *w = malloc((size_t)n * sizeof *w);
    for (int k = 0; k < 6; k++) {
        for (int64_t i = 0; i < n; i++) {
            double v = x->data[i];
            switch (k) {
            case 0:
                w[i] = v > 0 ? v : 0;
                break;
            case 1:
                w[i] = v > 0 ? v : 0.01 * v;
                break;
            case 2:
                w[i] = v > 0 ? v : 0.2 * v;
                break;
            case 3:
                w[i] = 0.5 * v * (1.0 + erf(v / sqrt(2.0)));
                break;
            case 4:
                w[i] = tanh(v);
                break;
            default:
                w[i] = 1.0 / (1.0 + exp(-v));
                break;
            }
        }
        GC_ASSERT_CLOSE(y[k]->data, w, n, 1e-6, 1e-6);
        for (int64_t i = 0; i < n; i++) assert_true(isfinite(y[k]->data[i]));
    }
    free(w);
}

/* ------------------------------------------------------------------ softmax family and losses */

static void ref_log_softmax(const float *x, double *out, int64_t rows, int64_t cols) {
    for (int64_t r = 0; r < rows; r++) {
        double mx = x[r * cols];
        for (int64_t c = 1; c < cols; c++) mx = fmax(mx, x[r * cols + c]);
        double s = 0;
        for (int64_t c = 0; c < cols; c++) s += exp(x[r * cols + c] - mx);
        for (int64_t c = 0; c < cols; c++) out[r * cols + c] = x[r * cols + c] - mx - log(s);
    }
}

static void test_softmax_and_log_softmax(void **state) {
    (void)state;
    ns_tensor *x = rnd(D(2, 3, 7), 54, -5, 5);
    for (int c = 0; c < 7; c++) x->data[c] = 1000.0f + (float)c; /* stability: huge logits */
    for (int c = 0; c < 7; c++) x->data[7 + c] = -1000.0f - (float)c;
    double ls[42], sm[42];
    ref_log_softmax(x->data, ls, 6, 7);
    for (int i = 0; i < 42; i++) sm[i] = exp(ls[i]);
    ns_tensor *ys = ns_softmax(x), *yl = ns_log_softmax(x);
    GC_ASSERT_SHAPE(ys, 2, 3, 7);
    GC_ASSERT_SHAPE(yl, 2, 3, 7);
    GC_ASSERT_CLOSE(ys->data, sm, 42, 1e-7, 1e-5);
    GC_ASSERT_CLOSE(yl->data, ls, 42, 1e-5, 1e-5);
    for (int r = 0; r < 6; r++) {
        double s = 0;
        for (int c = 0; c < 7; c++) s += ys->data[r * 7 + c];
        GC_ASSERT_NEAR(s, 1.0, 1e-5);
    }
}

static void test_cross_entropy_matches_formula(void **state) {
    (void)state;
    int64_t N = 8, C = 10;
    ns_tensor *x = rnd(D(N, C), 55, -4, 4);
    int32_t lab[8] = {0, 9, 3, 3, 5, 1, 7, 2};
    ns_tensor *t = ns_from_host_i32(D(N), lab, NS_CPU);
    double ls[80], want = 0;
    ref_log_softmax(x->data, ls, N, C);
    for (int64_t r = 0; r < N; r++) want -= ls[r * C + lab[r]];
    want /= (double)N;
    ns_tensor *y = ns_cross_entropy(x, t);
    GC_ASSERT_SHAPE(y, 1);
    GC_ASSERT_NEAR(ns_item(y), want, 1e-5);
    /* Uniform logits: loss = log(C). */
    ns_tensor *u = ns_tmp(D(N, C), NS_CPU);
    ns_tensor_fill(u, 3.0f);
    GC_ASSERT_NEAR(ns_item(ns_cross_entropy(u, t)), log(10.0), 1e-5);
}

static void test_mse_matches_formula(void **state) {
    (void)state;
    ns_tensor *p = rnd(D(5, 3), 56, -2, 2), *q = rnd(D(5, 3), 57, -2, 2);
    double want = 0;
    for (int i = 0; i < 15; i++) want += pow((double)p->data[i] - q->data[i], 2);
    want /= 15.0;
    ns_tensor *y = ns_mse(p, q);
    GC_ASSERT_SHAPE(y, 1);
    GC_ASSERT_NEAR(ns_item(y), want, 1e-5);
    GC_ASSERT_NEAR(ns_item(ns_mse(p, p)), 0.0, 0.0);
}

/* ------------------------------------------------------------------ concat */

static void test_concat_every_axis(void **state) {
    (void)state;
    for (int axis = 0; axis < 3; axis++) {
        int64_t s0[3] = {2, 3, 4}, s1[3] = {2, 3, 4}, s2[3] = {2, 3, 4};
        s1[axis] = 1;
        s2[axis] = 2;
        ns_tensor *xs[3] = {rnd(3, s0, 60, -1, 1), rnd(3, s1, 61, -1, 1), rnd(3, s2, 62, -1, 1)};
        ns_tensor *y = ns_concat(xs, 3, axis);
        int64_t total = s0[axis] + s1[axis] + s2[axis];
        int64_t ys[3] = {2, 3, 4};
        ys[axis] = total;
        gc_assert_shape_(__FILE__, __LINE__, y, 3, ys);
        /* Element (i,j,k) of y comes from the input whose range holds the axis index. */
        for (int64_t i = 0; i < ys[0]; i++)
            for (int64_t j = 0; j < ys[1]; j++)
                for (int64_t k = 0; k < ys[2]; k++) {
                    int64_t idx[3] = {i, j, k}, a = idx[axis];
                    int src = 0;
                    while (a >= xs[src]->shape[axis]) a -= xs[src++]->shape[axis];
                    idx[axis] = a;
                    const ns_tensor *s = xs[src];
                    float want = s->data[(idx[0] * s->shape[1] + idx[1]) * s->shape[2] + idx[2]];
                    assert_true(y->data[(i * ys[1] + j) * ys[2] + k] == want);
                }
    }
    /* One input: a copy. More inputs than a tape node holds inline (5 > 4). */
    ns_tensor *one = rnd(D(2, 2), 63, -1, 1);
    ns_tensor *c1 = ns_concat(&one, 1, 0);
    GC_ASSERT_SHAPE(c1, 2, 2);
    ns_tensor *five[5];
    for (int i = 0; i < 5; i++) {
        five[i] = ns_tmp(D(1, 2), NS_CPU);
        ns_tensor_fill(five[i], (float)i);
    }
    ns_tensor *c5 = ns_concat(five, 5, 0);
    GC_ASSERT_SHAPE(c5, 5, 2);
    for (int i = 0; i < 10; i++) assert_true(c5->data[i] == (float)(i / 2));
}

int main(void) {
    gc_install();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_matmul_matches_triple_loop, teardown),
        cmocka_unit_test_teardown(test_linear_matches_loop, teardown),
        cmocka_unit_test_teardown(test_elementwise_and_scalar_ops, teardown),
        cmocka_unit_test_teardown(test_bias_add_broadcasts_over_dim1, teardown),
        cmocka_unit_test_teardown(test_reshape_flatten_transpose_detach, teardown),
        cmocka_unit_test_teardown(test_sum_and_mean_all, teardown),
        cmocka_unit_test_teardown(test_sum_mean_axis_every_axis, teardown),
        cmocka_unit_test_teardown(test_activations_match_formulas, teardown),
        cmocka_unit_test_teardown(test_softmax_and_log_softmax, teardown),
        cmocka_unit_test_teardown(test_cross_entropy_matches_formula, teardown),
        cmocka_unit_test_teardown(test_mse_matches_formula, teardown),
        cmocka_unit_test_teardown(test_concat_every_axis, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
