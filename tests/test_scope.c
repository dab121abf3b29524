/* The step scope: what it hands out, what a reset releases, that a training loop of 10,000
 * steps holds a constant reservation and a flat RSS, and that long-lived tensors (with grads)
 * are freed completely (the valgrind set-up checks the last part: `meson test --setup valgrind
 * --suite core`). Under valgrind (NNSCOPE_TEST_VALGRIND set by that set-up) the loop runs 500
 * steps, since memcheck is ~50x slower; every assertion still runs. */
#include <fcntl.h>
#include <unistd.h>

#include "gradcheck.h"

#define D(...) NS_DIMS(__VA_ARGS__)

static int teardown(void **state) {
    (void)state;
    gc_free_all();
    return 0;
}

static void test_reset_releases_everything_and_keeps_the_memory(void **state) {
    (void)state;
    ns_scope_reset();
    size_t used, reserved;
    ns_scope_stats(&used, &reserved);
    assert_int_equal(used, 0);
    ns_tensor *a = ns_tmp(D(10), NS_CPU);
    ns_tensor *b = ns_tmp(D(3, 7), NS_CPU);
    assert_int_equal((uintptr_t)a->data % 64, 0);
    assert_int_equal((uintptr_t)b->data % 64, 0);
    assert_false(a->persistent);
    size_t used2, reserved2;
    ns_scope_stats(&used2, &reserved2);
    assert_true(used2 >= 10 * 4 + 21 * 4);
    assert_true(reserved2 >= used2);
    ns_scope_reset();
    size_t used3, reserved3;
    ns_scope_stats(&used3, &reserved3);
    assert_int_equal(used3, 0);
    assert_int_equal(reserved3, reserved2); /* kept for the next step */
    /* The next step gets the same memory back. */
    ns_tensor *a2 = ns_tmp(D(10), NS_CPU);
    assert_ptr_equal(a2, a);
}

static void test_growth_is_consolidated_into_one_block(void **state) {
    (void)state;
    ns_scope_reset();
    size_t used, r0, r1, r2;
    ns_scope_stats(NULL, &r0);
    /* A step that needs several times the current reservation. */
    for (int i = 0; i < 8; i++) ns_tmp(D((int64_t)(r0 / 4 / 2) + 1000), NS_CPU);
    ns_scope_stats(&used, &r1);
    assert_true(r1 > r0);
    assert_true(r1 >= used);
    ns_scope_reset();
    ns_scope_stats(&used, &r2);
    assert_int_equal(used, 0);
    assert_int_equal(r2, r1);
    /* The same step again fits without growing. */
    for (int i = 0; i < 8; i++) ns_tmp(D((int64_t)(r0 / 4 / 2) + 1000), NS_CPU);
    ns_scope_stats(NULL, &r2);
    assert_int_equal(r2, r1);
    ns_scope_reset();
}

static void test_step_end_resets_the_scope(void **state) {
    (void)state;
    int64_t s0 = ns_step_index();
    ns_tmp(D(100), NS_CPU);
    ns_step_end();
    size_t used;
    ns_scope_stats(&used, NULL);
    assert_int_equal(used, 0);
    assert_true(ns_step_index() == s0 + 1);
}

/* Resident set size in bytes (/proc/self/statm, second field). Read with open/read into a stack
 * buffer: fopen's heap buffer would itself grow RSS under ASan's quarantine. */
static size_t rss_bytes(void) {
    char buf[128];
    int fd = open("/proc/self/statm", O_RDONLY);
    assert_true(fd >= 0);
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    assert_true(n > 0);
    buf[n] = 0;
    unsigned long size = 0, resident = 0;
    assert_int_equal(sscanf(buf, "%lu %lu", &size, &resident), 2);
    return (size_t)resident * (size_t)sysconf(_SC_PAGESIZE);
}

static void test_ten_thousand_steps_hold_constant_memory(void **state) {
    (void)state;
    const int steps = getenv("NNSCOPE_TEST_VALGRIND") ? 500 : 10000;
    /* 32-64-10 MLP on a fixed batch of 16, plain SGD written here. */
    ns_tensor *p[4] = {
        gc_new(D(64, 32), 1, -0.18f, 0.18f, true), gc_new(D(64), 2, -0.1f, 0.1f, true),
        gc_new(D(10, 64), 3, -0.12f, 0.12f, true), gc_new(D(10), 4, -0.1f, 0.1f, true)};
    ns_tensor *x = gc_new(D(16, 32), 5, -1, 1, false), *y = gc_new_labels(16, 10, 6);
    ns_scope_reset();
    size_t reserved_ref = 0, rss_ref = 0, rss_max = 0;
    double first_loss = 0, loss = 0;
    for (int step = 0; step < steps; step++) {
        for (int i = 0; i < 4; i++) ns_zero_grad(p[i]);
        ns_tensor *h = ns_relu(ns_linear(x, p[0], p[1]));
        ns_tensor *l = ns_cross_entropy(ns_linear(ns_dropout(h, 0.1f, true), p[2], p[3]), y);
        loss = ns_item(l);
        if (step == 0) first_loss = loss;
        ns_backward(l, NULL);
        for (int i = 0; i < 4; i++)
            for (int64_t j = 0; j < p[i]->numel; j++) p[i]->data[j] -= 0.05f * p[i]->grad->data[j];
        ns_scope_reset();
        size_t used, reserved;
        ns_scope_stats(&used, &reserved);
        assert_int_equal(used, 0);
        if (step == 2) {
            reserved_ref = reserved;
        } else if (step > 2 && reserved != reserved_ref) {
            fail_msg("step %d: scope reservation changed from %zu to %zu bytes", step, reserved_ref,
                     reserved);
        }
        if (step == 100) rss_ref = rss_bytes();
        if (step > 100 && step % 100 == 0) {
            size_t r = rss_bytes();
            if (r > rss_max) rss_max = r;
        }
    }
    size_t rss_end = rss_bytes();
    if (rss_end > rss_max) rss_max = rss_end;
    /* Flat: at most 256 KiB above the level at step 100 (the step itself needs ~40 KiB). */
    if (rss_max > rss_ref + 256 * 1024)
        fail_msg("RSS grew from %zu to %zu bytes over %d steps", rss_ref, rss_max, steps);
    print_message("scope: %d steps, reserved %zu bytes, RSS %zu -> %zu bytes, loss %.4f -> "
                  "%.4f\n",
                  steps, reserved_ref, rss_ref, rss_end, first_loss, loss);
    /* The loop really trained (the scope handed out valid memory every step). */
    assert_true(loss < 0.5 * first_loss);
}

static void test_long_lived_tensors_free_completely(void **state) {
    (void)state;
    /* Parameters with grads created by backward, freed by hand: valgrind sees no leak. */
    for (int i = 0; i < 200; i++) {
        ns_tensor *w = ns_requires_grad(ns_tensor_new(D(8, 4), NS_CPU), true);
        ns_tensor *b = ns_requires_grad(ns_tensor_new(D(8), NS_CPU), true);
        ns_tensor *lab = ns_tensor_new_i32(D(3), NS_CPU);
        ns_uniform_(w, -1, 1);
        ns_tensor *x = ns_tmp(D(3, 4), NS_CPU);
        ns_tensor_fill(x, 0.5f);
        ns_backward(ns_cross_entropy(ns_linear(x, w, b), lab), NULL);
        assert_non_null(w->grad);
        assert_non_null(b->grad);
        ns_scope_reset();
        ns_tensor_free(w);
        ns_tensor_free(b);
        ns_tensor_free(lab);
    }
}

int main(void) {
    gc_install();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_reset_releases_everything_and_keeps_the_memory, teardown),
        cmocka_unit_test_teardown(test_growth_is_consolidated_into_one_block, teardown),
        cmocka_unit_test_teardown(test_step_end_resets_the_scope, teardown),
        cmocka_unit_test_teardown(test_ten_thousand_steps_hold_constant_memory, teardown),
        cmocka_unit_test_teardown(test_long_lived_tensors_free_completely, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
