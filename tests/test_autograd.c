/* Autograd semantics: accumulation into leaves across backward calls (PyTorch), a tensor used
 * twice, per-pass gradients of intermediates, no-grad mode, detach, seeds for non-scalar roots,
 * and the errors of backward. */
#include "gradcheck.h"

#define D(...) NS_DIMS(__VA_ARGS__)

static bool all_equal(const float *a, const float *b, int64_t n, float scale_b) {
    for (int64_t i = 0; i < n; i++)
        if (a[i] != scale_b * b[i]) return false;
    return true;
}

/* A small classifier step: loss = CE(linear(tanh(linear(x, w1, b1)), w2, b2), y). */
static ns_tensor *mlp_loss(ns_tensor *x, ns_tensor *const *p, ns_tensor *y) {
    ns_tensor *h = ns_tanh(ns_linear(x, p[0], p[1]));
    return ns_cross_entropy(ns_linear(h, p[2], p[3]), y);
}

static void test_grads_accumulate_across_backward_calls(void **state) {
    (void)state;
    ns_tensor *p[4] = {gc_new(D(5, 4), 1, -1, 1, true), gc_new(D(5), 2, -1, 1, true),
                       gc_new(D(3, 5), 3, -1, 1, true), gc_new(D(3), 4, -1, 1, true)};
    ns_tensor *x = gc_new(D(6, 4), 5, -1, 1, false), *y = gc_new_labels(6, 3, 6);
    ns_backward(mlp_loss(x, p, y), NULL);
    float *g1[4];
    ns_tensor *grad_tensor[4];
    for (int i = 0; i < 4; i++) {
        assert_non_null(p[i]->grad);
        assert_true(p[i]->grad->persistent); /* leaves' grads are long-lived */
        grad_tensor[i] = p[i]->grad;
        g1[i] = gc_host(p[i]->grad);
    }
    assert_null(x->grad); /* does not require grad */
    ns_scope_reset();     /* leaf grads survive the step end */
    /* A second identical forward+backward without zeroing: grad = 2 * g1, exactly. */
    ns_backward(mlp_loss(x, p, y), NULL);
    for (int i = 0; i < 4; i++) {
        assert_ptr_equal(p[i]->grad, grad_tensor[i]); /* the same tensor, accumulated */
        assert_true(all_equal(p[i]->grad->data, g1[i], p[i]->numel, 2.0f));
    }
    /* A third backward over the same graph again (this engine keeps the graph for the step). */
    ns_scope_reset();
    ns_tensor *loss = mlp_loss(x, p, y);
    ns_backward(loss, NULL);
    ns_backward(loss, NULL);
    for (int i = 0; i < 4; i++) assert_true(all_equal(p[i]->grad->data, g1[i], p[i]->numel, 4.0f));
    /* zero_grad keeps the tensor and zeroes it. */
    for (int i = 0; i < 4; i++) {
        ns_zero_grad(p[i]);
        assert_ptr_equal(p[i]->grad, grad_tensor[i]);
        for (int64_t j = 0; j < p[i]->numel; j++) assert_true(p[i]->grad->data[j] == 0.0f);
        free(g1[i]);
    }
    ns_zero_grad(x); /* no grad: a no-op */
    ns_zero_grad(NULL);
    assert_null(x->grad);
}

static void test_tensor_used_twice_gets_summed_gradient(void **state) {
    (void)state;
    /* Leaf used twice: d/dx sum(a*x + b*x) = a + b. */
    ns_tensor *x = gc_new(D(2, 3), 10, -1, 1, true);
    ns_tensor *a = gc_new(D(2, 3), 11, -1, 1, false), *b = gc_new(D(2, 3), 12, -1, 1, false);
    ns_backward(ns_sum(ns_add(ns_mul(a, x), ns_mul(b, x))), NULL);
    for (int i = 0; i < 6; i++)
        GC_ASSERT_NEAR(x->grad->data[i], (double)a->data[i] + b->data[i], 1e-6);
    /* Intermediate used twice (pass-through then accumulation): d/dx sum(h + h*h), h = tanh x. */
    ns_zero_grad(x);
    ns_tensor *h = ns_tanh(x);
    ns_backward(ns_sum(ns_add(h, ns_mul(h, h))), NULL);
    for (int i = 0; i < 6; i++) {
        double t = tanh((double)x->data[i]);
        GC_ASSERT_NEAR(x->grad->data[i], (1 + 2 * t) * (1 - t * t), 1e-5);
    }
    /* The same intermediate as both operands of add and of sub. */
    ns_zero_grad(x);
    h = ns_tanh(x);
    ns_backward(ns_sum(ns_add(h, h)), NULL);
    for (int i = 0; i < 6; i++) {
        double t = tanh((double)x->data[i]);
        GC_ASSERT_NEAR(x->grad->data[i], 2 * (1 - t * t), 1e-5);
    }
    ns_zero_grad(x);
    h = ns_tanh(x);
    ns_backward(ns_sum(ns_add(ns_sub(h, h), ns_scale(x, 0.5f))), NULL);
    for (int i = 0; i < 6; i++) GC_ASSERT_NEAR(x->grad->data[i], 0.5, 1e-6);
}

static void test_intermediate_grads_are_per_pass(void **state) {
    (void)state;
    /* Two losses sharing h in one step: the second backward starts h's gradient from zero, so
     * x.grad = (1 - h^2) after the first and (1 + 2)(1 - h^2) after both. */
    ns_tensor *x = gc_new(D(4), 20, -1, 1, true);
    ns_tensor *h = ns_tanh(x);
    ns_tensor *l1 = ns_sum(h);
    ns_tensor *l2 = ns_sum(ns_scale(h, 2.0f));
    ns_backward(l1, NULL);
    for (int i = 0; i < 4; i++) {
        double t = tanh((double)x->data[i]);
        GC_ASSERT_NEAR(x->grad->data[i], 1 - t * t, 1e-6);
    }
    ns_backward(l2, NULL);
    for (int i = 0; i < 4; i++) {
        double t = tanh((double)x->data[i]);
        GC_ASSERT_NEAR(x->grad->data[i], 3 * (1 - t * t), 1e-5);
    }
}

static void test_requires_grad_propagates(void **state) {
    (void)state;
    ns_tensor *w = gc_new(D(3, 3), 30, -1, 1, true), *c = gc_new(D(3, 3), 31, -1, 1, false);
    ns_tensor *y = ns_add(w, c);
    assert_true(y->requires_grad);
    assert_non_null(y->grad_fn);
    ns_tensor *z = ns_mul(c, c);
    assert_false(z->requires_grad);
    assert_null(z->grad_fn);
    assert_null(w->grad_fn); /* leaves */
    /* Only leaves may change requires_grad. */
    GC_EXPECT_ERROR(ns_requires_grad(y, false));
    GC_MSG_HAS("ns_requires_grad", "leaf");
    /* A scope tensor can be a leaf too; its grad then lives in the scope. */
    ns_tensor *s = ns_requires_grad(ns_tmp(D(3), NS_CPU), true);
    ns_tensor_fill(s, 2.0f);
    ns_backward(ns_sum(ns_mul(s, s)), NULL);
    assert_non_null(s->grad);
    assert_false(s->grad->persistent);
    for (int i = 0; i < 3; i++) assert_true(s->grad->data[i] == 4.0f);
}

static void test_no_grad_records_nothing(void **state) {
    (void)state;
    assert_true(ns_grad_enabled());
    ns_tensor *w = gc_new(D(4, 3), 40, -1, 1, true), *b = gc_new(D(4), 41, -1, 1, true);
    ns_tensor *x = gc_new(D(2, 3), 42, -1, 1, true);
    bool prev = ns_set_grad_enabled(false);
    assert_true(prev);
    assert_false(ns_grad_enabled());
    ns_tensor *x4 = gc_new(D(2, 3, 4, 4), 43, -1, 1, true);
    ns_tensor *k = gc_new(D(2, 3, 3, 3), 44, -1, 1, true);
    ns_tensor *outs[] = {
        ns_linear(x, w, b),
        ns_matmul(x, ns_transpose(w)),
        ns_relu(ns_add(x, x)),
        ns_reshape(x, D(-1)),
        ns_sum(x),
        ns_mean_axis(x, 1, false),
        ns_softmax(x),
        ns_conv2d(x4, k, NULL, 1, 1),
        ns_max_pool2d(x4, 2, 2, 0),
        ns_batch_norm(x4, NULL, NULL, NULL, NULL, true, 0.1f, 1e-5f),
        ns_dropout(x, 0.5f, true),
        ns_concat((ns_tensor *[]){x, x}, 2, 0),
    };
    for (size_t i = 0; i < sizeof outs / sizeof outs[0]; i++) {
        assert_false(outs[i]->requires_grad);
        assert_null(outs[i]->grad_fn);
    }
    /* Nothing to backpropagate from. */
    GC_EXPECT_ERROR(ns_backward(outs[4], NULL));
    GC_MSG_HAS("does not require grad");
    assert_false(ns_set_grad_enabled(prev));
    assert_true(ns_grad_enabled());
    /* Grad mode back on: recorded again. */
    assert_true(ns_linear(x, w, b)->requires_grad);
    assert_null(w->grad);
}

static void test_detach_cuts_the_chain(void **state) {
    (void)state;
    ns_tensor *x = gc_new(D(5), 50, 0.2f, 1, true);
    /* d/dx sum(detach(tanh x) * x) = tanh x: no term through the detached factor. */
    ns_tensor *t = ns_tanh(x);
    ns_tensor *d = ns_detach(t);
    assert_false(d->requires_grad);
    assert_null(d->grad_fn);
    assert_ptr_equal(d->data, t->data);
    ns_backward(ns_sum(ns_mul(d, x)), NULL);
    for (int i = 0; i < 5; i++) GC_ASSERT_NEAR(x->grad->data[i], tanh((double)x->data[i]), 1e-6);
    /* Detached leaf: no gradient reaches it at all. */
    ns_tensor *w = gc_new(D(5), 51, -1, 1, true), *v = gc_new(D(5), 52, -1, 1, true);
    ns_backward(ns_sum(ns_mul(ns_detach(w), v)), NULL);
    assert_null(w->grad);
    for (int i = 0; i < 5; i++) assert_true(v->grad->data[i] == w->data[i]);
    /* A fully detached result cannot be backpropagated. */
    GC_EXPECT_ERROR(ns_backward(ns_sum(ns_detach(ns_mul(w, v))), NULL));
    GC_MSG_HAS("ns_backward", "does not require grad");
}

static void test_backward_of_non_scalar_needs_a_seed(void **state) {
    (void)state;
    ns_tensor *x = gc_new(D(2, 3), 60, -1, 1, true);
    ns_tensor *y = ns_scale(ns_tanh(x), 3.0f);
    GC_EXPECT_ERROR(ns_backward(y, NULL));
    GC_MSG_HAS("ns_backward", "one-element", "seed", "2x3");
    assert_string_equal(ns_last_error(), gc_msg);
    assert_null(x->grad); /* nothing happened */
    /* A seed of the wrong shape. */
    ns_tensor *bad = ns_tmp(D(3), NS_CPU);
    ns_tensor_fill(bad, 1.0f);
    GC_EXPECT_ERROR(ns_backward(y, bad));
    GC_MSG_HAS("ns_backward", "seed", "2x3", "3");
    /* With a seed: x.grad = seed * 3 (1 - tanh^2); the seed itself is left untouched. */
    float sv[6] = {1, -2, 0.5f, 0, 3, -1};
    ns_tensor *seed = ns_from_host(D(2, 3), sv, NS_CPU);
    ns_backward(y, seed);
    for (int i = 0; i < 6; i++) {
        double t = tanh((double)x->data[i]);
        GC_ASSERT_NEAR(x->grad->data[i], sv[i] * 3 * (1 - t * t), 1e-5);
        assert_true(seed->data[i] == sv[i]);
    }
    /* A seed through pass-through ops (add, reshape) must not be modified either. */
    ns_zero_grad(x);
    ns_tensor *r = ns_reshape(ns_add(ns_tanh(x), ns_tanh(x)), D(6));
    ns_tensor *seed6 = ns_from_host(D(6), sv, NS_CPU);
    ns_backward(r, seed6);
    for (int i = 0; i < 6; i++) {
        double t = tanh((double)x->data[i]);
        GC_ASSERT_NEAR(x->grad->data[i], sv[i] * 2 * (1 - t * t), 1e-5);
        assert_true(seed6->data[i] == sv[i]);
    }
    /* A one-element non-scalar-shaped root (1x1) needs no seed. */
    ns_tensor *one = ns_reshape(ns_sum(x), D(1, 1));
    ns_backward(one, NULL);
}

static void test_backward_from_a_leaf(void **state) {
    (void)state;
    /* The root itself is a leaf: its grad is the seed (1 for one element). */
    ns_tensor *s = gc_new(D(1), 70, -1, 1, true);
    ns_backward(s, NULL);
    assert_true(s->grad->data[0] == 1.0f);
    ns_backward(s, NULL);
    assert_true(s->grad->data[0] == 2.0f);
    ns_tensor *v = gc_new(D(3), 71, -1, 1, true);
    float sv[3] = {4, 5, 6};
    ns_backward(v, ns_from_host(D(3), sv, NS_CPU));
    for (int i = 0; i < 3; i++) assert_true(v->grad->data[i] == sv[i]);
    /* A leaf that does not require grad. */
    ns_tensor *c = gc_new(D(1), 72, -1, 1, false);
    GC_EXPECT_ERROR(ns_backward(c, NULL));
    GC_MSG_HAS("ns_backward", "does not require grad");
}

static void test_grad_reaches_leaf_through_views(void **state) {
    (void)state;
    /* A weight used through reshape and flatten gets a gradient of its own shape. */
    ns_tensor *w = gc_new(D(2, 6), 80, -1, 1, true);
    ns_tensor *r = ns_reshape(w, D(3, 4));
    ns_tensor *f = ns_flatten(ns_reshape(w, D(2, 3, 2)));
    ns_backward(ns_add(ns_sum(ns_scale(r, 2.0f)), ns_sum(f)), NULL);
    GC_ASSERT_SHAPE(w->grad, 2, 6);
    for (int i = 0; i < 12; i++) assert_true(w->grad->data[i] == 3.0f);
}

/* Every leaf that requires grad and takes part in the graph gets a gradient tensor from backward,
 * zero-filled when no value flows back (PyTorch: dropout with p = 1, relu of negatives, *0). */
static void test_leaf_in_graph_gets_zero_gradient(void **state) {
    (void)state;
    ns_tensor *a = gc_new(D(4), 90, 0.5f, 1, true), *b = gc_new(D(4), 91, -1, -0.5f, true);
    ns_backward(ns_sum(ns_relu(b)), NULL); /* all negative: zero gradient */
    assert_non_null(b->grad);
    for (int i = 0; i < 4; i++) assert_true(b->grad->data[i] == 0.0f);
    ns_backward(ns_sum(ns_dropout(a, 1.0f, true)), NULL);
    assert_non_null(a->grad);
    for (int i = 0; i < 4; i++) assert_true(a->grad->data[i] == 0.0f);
}

int main(void) {
    gc_install();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_grads_accumulate_across_backward_calls, gc_teardown),
        cmocka_unit_test_teardown(test_tensor_used_twice_gets_summed_gradient, gc_teardown),
        cmocka_unit_test_teardown(test_intermediate_grads_are_per_pass, gc_teardown),
        cmocka_unit_test_teardown(test_requires_grad_propagates, gc_teardown),
        cmocka_unit_test_teardown(test_no_grad_records_nothing, gc_teardown),
        cmocka_unit_test_teardown(test_detach_cuts_the_chain, gc_teardown),
        cmocka_unit_test_teardown(test_backward_of_non_scalar_needs_a_seed, gc_teardown),
        cmocka_unit_test_teardown(test_backward_from_a_leaf, gc_teardown),
        cmocka_unit_test_teardown(test_grad_reaches_leaf_through_views, gc_teardown),
        cmocka_unit_test_teardown(test_leaf_in_graph_gets_zero_gradient, gc_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
