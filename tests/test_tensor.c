/* Tensors: construction, ownership flags, ids, host copies, int32 tensors, shape strings,
 * devices, and the counter-based global random generator. */
#include "gradcheck.h"

#define D(...) NS_DIMS(__VA_ARGS__)

static int teardown(void **state) {
    (void)state;
    ns_scope_reset();
    return 0;
}

static void test_new_tensor_is_zeroed_long_lived_leaf(void **state) {
    (void)state;
    ns_tensor *t = ns_tensor_new(D(2, 3, 4, 5), NS_CPU);
    assert_int_equal(t->ndim, 4);
    assert_int_equal(t->numel, 120);
    assert_int_equal(t->shape[0], 2);
    assert_int_equal(t->shape[3], 5);
    assert_int_equal(t->device, NS_CPU);
    assert_int_equal(t->dtype, NS_F32);
    assert_true(t->persistent);
    assert_false(t->requires_grad);
    assert_null(t->grad);
    assert_null(t->grad_fn);
    assert_null(t->name);
    assert_null(t->base);
    for (int64_t i = 0; i < t->numel; i++) assert_true(t->data[i] == 0.0f);
    assert_int_equal((uintptr_t)t->data % 64, 0);
    assert_ptr_equal(ns_requires_grad(t, true), t);
    assert_true(t->requires_grad);
    ns_tensor_free(t);
    ns_tensor_free(NULL); /* a no-op */

    /* 0-D: one element; empty: zero elements. */
    ns_tensor *s = ns_tensor_new(0, NULL, NS_CPU);
    assert_int_equal(s->numel, 1);
    char buf[32];
    assert_string_equal(ns_shape_str(s, buf, sizeof buf), "scalar");
    ns_tensor *e = ns_tensor_new(D(3, 0), NS_CPU);
    assert_int_equal(e->numel, 0);
    ns_tensor_free(s);
    ns_tensor_free(e);
}

static void test_ids_are_unique(void **state) {
    (void)state;
    ns_tensor *a = ns_tensor_new(D(1), NS_CPU), *b = ns_tensor_new(D(1), NS_CPU);
    ns_tensor *c = ns_tmp(D(1), NS_CPU), *d = ns_tmp(D(1), NS_CPU);
    ns_tensor *v = ns_reshape(a, D(1, 1));
    uint64_t ids[5] = {a->id, b->id, c->id, d->id, v->id};
    for (int i = 0; i < 5; i++) {
        assert_true(ids[i] != 0);
        for (int j = 0; j < i; j++) assert_true(ids[i] != ids[j]);
    }
    assert_false(c->persistent);
    assert_ptr_equal(v->base, a);
    ns_tensor_free(a);
    ns_tensor_free(b);
}

static void test_host_copies_fill_and_copy(void **state) {
    (void)state;
    float src[6] = {1, 2, 3, 4, 5, 6}, dst[6] = {0};
    ns_tensor *t = ns_from_host(D(2, 3), src, NS_CPU);
    src[0] = 100; /* a copy, not a borrow */
    ns_tensor_get(t, dst);
    assert_true(dst[0] == 1.0f && dst[5] == 6.0f);
    ns_tensor *u = ns_tensor_new(D(6), NS_CPU);
    ns_tensor_set(u, src);
    assert_true(u->data[0] == 100.0f);
    ns_tensor_copy(u, t); /* same numel, different shape */
    for (int i = 0; i < 6; i++) assert_true(u->data[i] == (float)(i + 1));
    ns_tensor_fill(u, -2.5f);
    for (int i = 0; i < 6; i++) assert_true(u->data[i] == -2.5f);
    float one = 7.0f;
    GC_ASSERT_NEAR(ns_item(ns_from_host(D(1, 1), &one, NS_CPU)), 7.0, 0);
    ns_tensor_move(u, NS_CPU); /* already there: nothing changes */
    assert_true(u->data[0] == -2.5f);
    ns_tensor_free(u);
}

static void test_int32_tensors(void **state) {
    (void)state;
    int32_t lab[4] = {3, -1, 7, 2147483647};
    ns_tensor *t = ns_from_host_i32(D(4), lab, NS_CPU);
    assert_int_equal(t->dtype, NS_I32);
    lab[0] = 0;
    assert_int_equal(ns_i32(t)[0], 3);
    assert_int_equal(ns_i32(t)[3], 2147483647);
    ns_tensor *p = ns_tensor_new_i32(D(2, 2), NS_CPU);
    assert_int_equal(p->dtype, NS_I32);
    assert_true(p->persistent);
    for (int i = 0; i < 4; i++) assert_int_equal(ns_i32(p)[i], 0);
    ns_tensor_free(p);
    ns_tensor *q = ns_tmp_i32(D(3), NS_CPU);
    assert_int_equal(q->dtype, NS_I32);
    assert_int_equal(q->numel, 3);
}

static void test_shape_str_and_devices(void **state) {
    (void)state;
    char buf[64];
    ns_tensor *t = ns_tmp(D(128, 784), NS_CPU);
    assert_string_equal(ns_shape_str(t, buf, sizeof buf), "128x784");
    assert_string_equal(ns_shape_str(ns_tmp(D(7), NS_CPU), buf, sizeof buf), "7");
    char tiny[4];
    ns_shape_str(t, tiny, sizeof tiny); /* truncated, still terminated */
    assert_true(strlen(tiny) < sizeof tiny);

    assert_string_equal(ns_device_name(NS_CPU), "cpu");
    assert_string_equal(ns_device_name(NS_CUDA), "cuda:0");
    ns_device d = NS_CUDA;
    assert_true(ns_device_parse("cpu", &d) && d == NS_CPU);
    assert_true(ns_device_parse("cuda", &d) && d == NS_CUDA);
    d = NS_CPU;
    assert_true(ns_device_parse("cuda:0", &d) && d == NS_CUDA);
    assert_false(ns_device_parse("gpu", &d));
    assert_false(ns_device_parse("cuda:1", &d));
    assert_true(ns_device_available(NS_CPU, NULL, 0));
    char why[256] = "";
    if (!ns_device_available(NS_CUDA, why, sizeof why)) assert_true(strlen(why) > 0);
}

static void test_random_generator(void **state) {
    (void)state;
    /* Counter-based: a pure function of (seed, counter), in [0, 1). */
    assert_true(ns_rng_uniform(1, 2) == ns_rng_uniform(1, 2));
    assert_true(ns_rng_uniform(1, 2) != ns_rng_uniform(2, 2));
    assert_true(ns_rng_uniform(1, 2) != ns_rng_uniform(1, 3));
    double mean = 0;
    for (uint64_t i = 0; i < 100000; i++) {
        float u = ns_rng_uniform(42, i);
        assert_true(u >= 0.0f && u < 1.0f);
        mean += u;
    }
    GC_ASSERT_NEAR(mean / 100000, 0.5, 0.005);

    /* State: seed resets the counter; advance reserves draws; get/set round-trips. */
    ns_manual_seed(7);
    uint64_t s, c;
    ns_rng_get_state(&s, &c);
    assert_true(s == 7 && c == 0);
    assert_true(ns_rng_advance(10) == 0);
    assert_true(ns_rng_advance(5) == 10);
    ns_rng_get_state(&s, &c);
    assert_true(c == 15);

    /* uniform_ and normal_ are reproducible from the seed and consume the counter. */
    ns_tensor *a = ns_tensor_new(D(50000), NS_CPU), *b = ns_tensor_new(D(50000), NS_CPU);
    ns_manual_seed(3);
    ns_uniform_(a, -2.0f, 4.0f);
    ns_rng_get_state(&s, &c);
    assert_true(c == 50000);
    ns_manual_seed(3);
    ns_uniform_(b, -2.0f, 4.0f);
    assert_memory_equal(a->data, b->data, 50000 * sizeof(float));
    double m = 0, m2 = 0;
    for (int i = 0; i < 50000; i++) {
        assert_true(a->data[i] >= -2.0f && a->data[i] < 4.0f);
        m += a->data[i];
    }
    GC_ASSERT_NEAR(m / 50000, 1.0, 0.05);

    ns_manual_seed(5);
    ns_normal_(a, 1.5f, 2.0f);
    ns_rng_set_state(5, 0);
    ns_normal_(b, 1.5f, 2.0f);
    assert_memory_equal(a->data, b->data, 50000 * sizeof(float));
    m = 0;
    for (int i = 0; i < 50000; i++) {
        assert_true(isfinite(a->data[i]));
        m += a->data[i];
        m2 += (double)a->data[i] * a->data[i];
    }
    m /= 50000;
    double sd = sqrt(m2 / 50000 - m * m);
    GC_ASSERT_NEAR(m, 1.5, 0.05);
    GC_ASSERT_NEAR(sd, 2.0, 0.05);
    /* Different seeds, different values. */
    ns_manual_seed(6);
    ns_normal_(b, 1.5f, 2.0f);
    assert_memory_not_equal(a->data, b->data, 50000 * sizeof(float));
    ns_tensor_free(a);
    ns_tensor_free(b);
}

int main(void) {
    gc_install();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_new_tensor_is_zeroed_long_lived_leaf, teardown),
        cmocka_unit_test_teardown(test_ids_are_unique, teardown),
        cmocka_unit_test_teardown(test_host_copies_fill_and_copy, teardown),
        cmocka_unit_test_teardown(test_int32_tensors, teardown),
        cmocka_unit_test_teardown(test_shape_str_and_devices, teardown),
        cmocka_unit_test_teardown(test_random_generator, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
