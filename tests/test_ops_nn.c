/* Forward outputs of the windowed and statistical NN ops against direct references: conv2d
 * against a 7-loop direct convolution, batch norm against a two-pass formula (running statistics
 * with momentum and the unbiased variance, inference with running statistics), max / avg pooling
 * against direct loops (padding; avg counts the padding like PyTorch's default), and dropout's
 * statistics, scaling and reproducibility. */
#include "gradcheck.h"

#define D(...) NS_DIMS(__VA_ARGS__)

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

/* ------------------------------------------------------------------ conv2d */

/* Direct convolution: y[n,co,oy,ox] = b[co] + sum_{ci,ky,kx} x[n,ci,oy*s-p+ky,ox*s-p+kx] w[...] */
static void ref_conv2d(const ns_tensor *x, const ns_tensor *w, const ns_tensor *b, int s, int p,
                       int64_t ho, int64_t wo, double *y) {
    int64_t N = x->shape[0], cin = x->shape[1], H = x->shape[2], W = x->shape[3];
    int64_t cout = w->shape[0], k = w->shape[2];
    for (int64_t n = 0; n < N; n++)
        for (int64_t co = 0; co < cout; co++)
            for (int64_t oy = 0; oy < ho; oy++)
                for (int64_t ox = 0; ox < wo; ox++) {
                    double acc = b ? b->data[co] : 0.0;
                    for (int64_t ci = 0; ci < cin; ci++)
                        for (int64_t ky = 0; ky < k; ky++)
                            for (int64_t kx = 0; kx < k; kx++) {
                                int64_t iy = oy * s - p + ky, ix = ox * s - p + kx;
                                if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
                                acc += (double)x->data[((n * cin + ci) * H + iy) * W + ix] *
                                       w->data[((co * cin + ci) * k + ky) * k + kx];
                            }
                    y[((n * cout + co) * ho + oy) * wo + ox] = acc;
                }
}

static void test_conv2d_matches_direct_convolution(void **state) {
    (void)state;
    /* N, Cin, H, W, Cout, k, stride, pad, bias */
    const int cfg[][9] = {{2, 3, 7, 9, 4, 3, 1, 0, 1}, {2, 3, 7, 9, 4, 3, 2, 1, 1},
                          {1, 2, 8, 8, 3, 5, 1, 2, 0}, {3, 4, 5, 6, 2, 1, 1, 0, 1},
                          {1, 1, 6, 5, 2, 3, 3, 1, 1}, {2, 2, 4, 4, 3, 4, 2, 2, 0}};
    for (size_t c = 0; c < sizeof cfg / sizeof cfg[0]; c++) {
        const int *q = cfg[c];
        ns_tensor *x = rnd(D(q[0], q[1], q[2], q[3]), 10 + c, -1, 1);
        ns_tensor *w = rnd(D(q[4], q[1], q[5], q[5]), 20 + c, -1, 1);
        ns_tensor *b = q[8] ? rnd(D(q[4]), 30 + c, -1, 1) : NULL;
        int s = q[6], p = q[7];
        int64_t ho = (q[2] + 2 * p - q[5]) / s + 1, wo = (q[3] + 2 * p - q[5]) / s + 1;
        ns_tensor *y = ns_conv2d(x, w, b, s, p);
        GC_ASSERT_SHAPE(y, q[0], q[4], ho, wo);
        double *want = malloc((size_t)y->numel * sizeof *want);
        ref_conv2d(x, w, b, s, p, ho, wo, want);
        GC_ASSERT_CLOSE(y->data, want, y->numel, 1e-5, 1e-5);
        free(want);
        ns_scope_reset();
    }
}

/* ------------------------------------------------------------------ batch norm */

/* Two-pass statistics of channel c over (N, C, inner): mean, then the biased variance. */
static void ref_bn_stats(const ns_tensor *x, int64_t c, double *mean, double *var) {
    int64_t N = x->shape[0], C = x->shape[1], inner = x->numel / (N * C);
    double s = 0, v = 0;
    for (int64_t n = 0; n < N; n++)
        for (int64_t i = 0; i < inner; i++) s += x->data[(n * C + c) * inner + i];
    *mean = s / (double)(N * inner);
    for (int64_t n = 0; n < N; n++)
        for (int64_t i = 0; i < inner; i++) {
            double d = x->data[(n * C + c) * inner + i] - *mean;
            v += d * d;
        }
    *var = v / (double)(N * inner);
}

static void bn_train_case(int ndim, const int64_t *shape, uint64_t seed) {
    ns_tensor *x = rnd(ndim, shape, seed, -3, 5);
    int64_t N = shape[0], C = shape[1], inner = x->numel / (N * C), cnt = N * inner;
    ns_tensor *g = rnd(D(C), seed + 1, 0.5f, 1.5f), *b = rnd(D(C), seed + 2, -1, 1);
    ns_tensor *rm = ns_tensor_new(D(C), NS_CPU), *rv = ns_tensor_new(D(C), NS_CPU);
    ns_tensor_fill(rv, 1.0f); /* PyTorch's initial running_var */
    const float eps = 1e-5f, mom = 0.1f;
    double *want = malloc((size_t)x->numel * sizeof *want);
    double erm[16] = {0}, erv[16];
    for (int64_t c = 0; c < C; c++) erv[c] = 1.0;
    for (int step = 0; step < 2; step++) {
        ns_tensor *y = ns_batch_norm(x, g, b, rm, rv, true, mom, eps);
        gc_assert_shape_(__FILE__, __LINE__, y, ndim, shape);
        for (int64_t c = 0; c < C; c++) {
            double m, v;
            ref_bn_stats(x, c, &m, &v);
            for (int64_t n = 0; n < N; n++)
                for (int64_t i = 0; i < inner; i++) {
                    int64_t at = (n * C + c) * inner + i;
                    want[at] = (x->data[at] - m) / sqrt(v + eps) * g->data[c] + b->data[c];
                }
            /* running = (1 - momentum) running + momentum batch, var unbiased (n / (n - 1)). */
            erm[c] = (1 - mom) * erm[c] + mom * m;
            erv[c] = (1 - mom) * erv[c] + mom * v * (double)cnt / (double)(cnt - 1);
        }
        GC_ASSERT_CLOSE(y->data, want, x->numel, 1e-4, 1e-4);
        GC_ASSERT_CLOSE(rm->data, erm, C, 1e-5, 1e-5);
        GC_ASSERT_CLOSE(rv->data, erv, C, 1e-5, 1e-5);
    }
    /* Training output has zero mean and unit (biased) variance per channel before the affine. */
    ns_tensor *y0 = ns_batch_norm(x, NULL, NULL, NULL, NULL, true, mom, eps);
    for (int64_t c = 0; c < C; c++) {
        double m, v;
        ref_bn_stats(y0, c, &m, &v);
        GC_ASSERT_NEAR(m, 0.0, 1e-5);
        GC_ASSERT_NEAR(v, 1.0, 1e-3);
    }
    /* Inference: the running statistics, nothing updated. */
    float rm_before[16], rv_before[16];
    ns_tensor_get(rm, rm_before);
    ns_tensor_get(rv, rv_before);
    ns_tensor *ye = ns_batch_norm(x, g, b, rm, rv, false, mom, eps);
    for (int64_t at = 0; at < x->numel; at++) {
        int64_t c = (at / inner) % C;
        want[at] =
            (x->data[at] - rm->data[c]) / sqrt((double)rv->data[c] + eps) * g->data[c] + b->data[c];
    }
    GC_ASSERT_CLOSE(ye->data, want, x->numel, 1e-4, 1e-4);
    for (int64_t c = 0; c < C; c++) {
        assert_true(rm->data[c] == rm_before[c]);
        assert_true(rv->data[c] == rv_before[c]);
    }
    free(want);
    ns_tensor_free(rm);
    ns_tensor_free(rv);
}

static void test_batch_norm_matches_two_pass_formula(void **state) {
    (void)state;
    bn_train_case(2, (const int64_t[]){16, 5}, 40);
    bn_train_case(4, (const int64_t[]){3, 4, 5, 6}, 50);
    bn_train_case(4, (const int64_t[]){1, 2, 3, 3}, 60); /* one image: statistics over H*W */
}

/* ------------------------------------------------------------------ pooling */

static void ref_pool(const ns_tensor *x, int k, int s, int p, int64_t ho, int64_t wo, bool max,
                     double *y) {
    int64_t planes = x->shape[0] * x->shape[1], H = x->shape[2], W = x->shape[3];
    for (int64_t pl = 0; pl < planes; pl++)
        for (int64_t oy = 0; oy < ho; oy++)
            for (int64_t ox = 0; ox < wo; ox++) {
                double acc = max ? -INFINITY : 0.0;
                for (int64_t ky = 0; ky < k; ky++)
                    for (int64_t kx = 0; kx < k; kx++) {
                        int64_t iy = oy * s - p + ky, ix = ox * s - p + kx;
                        if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
                        double v = x->data[(pl * H + iy) * W + ix];
                        acc = max ? fmax(acc, v) : acc + v;
                    }
                y[(pl * ho + oy) * wo + ox] = max ? acc : acc / (double)(k * k);
            }
}

static void test_pools_match_direct_loops(void **state) {
    (void)state;
    ns_tensor *x = rnd(D(2, 3, 7, 6), 70, -2, 1); /* mostly negative: padding must not win max */
    const int cfg[][3] = {{2, 2, 0}, {3, 2, 1}, {3, 1, 1}, {2, 1, 0}, {4, 3, 2}, {3, 3, 0}};
    for (size_t c = 0; c < sizeof cfg / sizeof cfg[0]; c++) {
        int k = cfg[c][0], s = cfg[c][1], p = cfg[c][2];
        int64_t ho = (7 + 2 * p - k) / s + 1, wo = (6 + 2 * p - k) / s + 1;
        double *want = malloc((size_t)(6 * ho * wo) * sizeof *want);
        ns_tensor *ym = ns_max_pool2d(x, k, s, p);
        GC_ASSERT_SHAPE(ym, 2, 3, ho, wo);
        ref_pool(x, k, s, p, ho, wo, true, want);
        GC_ASSERT_CLOSE(ym->data, want, ym->numel, 0, 0);
        ns_tensor *ya = ns_avg_pool2d(x, k, s, p);
        GC_ASSERT_SHAPE(ya, 2, 3, ho, wo);
        ref_pool(x, k, s, p, ho, wo, false, want);
        GC_ASSERT_CLOSE(ya->data, want, ya->numel, 1e-6, 1e-5);
        free(want);
    }
}

/* ------------------------------------------------------------------ dropout */

static void test_dropout_statistics_and_reproducibility(void **state) {
    (void)state;
    const int64_t n = 200000;
    ns_tensor *x = ns_tmp(D(n), NS_CPU);
    gc_fill_away(x->data, n, 80, 0.5f, 2.0f); /* no zero inputs: a zero output means dropped */
    const float ps[] = {0.1f, 0.5f, 0.8f};
    for (int k = 0; k < 3; k++) {
        float p = ps[k];
        ns_manual_seed(99);
        uint64_t seed, c0;
        ns_rng_get_state(&seed, &c0);
        ns_tensor *y = ns_dropout(x, p, true);
        uint64_t s1, c1;
        ns_rng_get_state(&s1, &c1);
        assert_true(c1 == c0 + (uint64_t)n); /* one draw per element */
        int64_t dropped = 0;
        for (int64_t i = 0; i < n; i++) {
            if (y->data[i] == 0.0f) {
                dropped++;
            } else {
                /* Kept values scaled by 1/(1-p) (inverted dropout). */
                GC_ASSERT_NEAR(y->data[i], x->data[i] / (1.0 - p),
                               1e-5 * fabs(x->data[i] / (1.0 - p)));
            }
        }
        /* Binomial(n, p): 5 standard deviations. */
        double frac = (double)dropped / (double)n, sd = sqrt(p * (1 - p) / (double)n);
        if (fabs(frac - p) > 5 * sd) fail_msg("dropout p=%g dropped %.5f", (double)p, frac);
        /* The same (seed, counter) gives the same mask; the next call a different one. */
        ns_rng_set_state(seed, c0);
        ns_tensor *y2 = ns_dropout(x, p, true);
        assert_memory_equal(y->data, y2->data, (size_t)n * sizeof(float));
        ns_tensor *y3 = ns_dropout(x, p, true);
        assert_memory_not_equal(y->data, y3->data, (size_t)n * sizeof(float));
        /* The mask is the documented counter-based generator: keep iff u(seed, c0+i) >= p. */
        for (int64_t i = 0; i < 1000; i++)
            assert_true((y->data[i] != 0.0f) == (ns_rng_uniform(seed, c0 + (uint64_t)i) >= p));
        ns_scope_reset();
        x = ns_tmp(D(n), NS_CPU);
        gc_fill_away(x->data, n, 80, 0.5f, 2.0f);
    }
    /* Evaluation mode and p = 0: identity (the same values), no draws. */
    uint64_t s0, c0, s1, c1;
    ns_rng_get_state(&s0, &c0);
    ns_tensor *e = ns_dropout(x, 0.5f, false);
    ns_tensor *z = ns_dropout(x, 0.0f, true);
    ns_rng_get_state(&s1, &c1);
    assert_true(c1 == c0);
    assert_memory_equal(e->data, x->data, (size_t)n * sizeof(float));
    assert_memory_equal(z->data, x->data, (size_t)n * sizeof(float));
    /* p = 1 zeroes everything (PyTorch), finite. */
    ns_tensor *all = ns_dropout(x, 1.0f, true);
    for (int64_t i = 0; i < n; i++) assert_true(all->data[i] == 0.0f);
}

int main(void) {
    gc_install();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_conv2d_matches_direct_convolution, teardown),
        cmocka_unit_test_teardown(test_batch_norm_matches_two_pass_formula, teardown),
        cmocka_unit_test_teardown(test_pools_match_direct_loops, teardown),
        cmocka_unit_test_teardown(test_dropout_statistics_and_reproducibility, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
