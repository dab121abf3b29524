/* User errors: every message names the op, the operands' shapes and devices, and says what was
 * expected. Device checks run before any kernel (the fake CUDA tensors here have no storage).
 * The default handler prints "nnscope: <msg>" and exits 1. */
#include <sys/wait.h>
#include <unistd.h>

#include "gradcheck.h"

#define D(...) NS_DIMS(__VA_ARGS__)

static int teardown(void **state) {
    (void)state;
    gc_free_all();
    return 0;
}

/* A header that claims to live on the GPU: a copy of a CPU tensor with .device changed and no
 * storage, so any kernel that ran before the device check would crash. */
static ns_tensor fake_cuda(const ns_tensor *cpu) {
    ns_tensor t = *cpu;
    t.device = NS_CUDA;
    t.data = NULL;
    t.grad = NULL;
    return t;
}

static void test_shape_mismatch_names_op_and_shapes(void **state) {
    (void)state;
    ns_tensor *a = gc_new(D(2, 3), 1, -1, 1, false), *b = gc_new(D(3, 2), 2, -1, 1, false);
    GC_EXPECT_ERROR(ns_add(a, b));
    GC_MSG_HAS("add", "shapes must match", "2x3", "3x2", "cpu");
    GC_EXPECT_ERROR(ns_sub(a, b));
    GC_MSG_HAS("sub", "2x3", "3x2");
    GC_EXPECT_ERROR(ns_mul(a, b));
    GC_MSG_HAS("mul", "2x3", "3x2");

    ns_tensor *c = gc_new(D(4, 5), 3, -1, 1, false);
    GC_EXPECT_ERROR(ns_matmul(a, c));
    GC_MSG_HAS("matmul", "inner dimensions differ (3 vs 4)", "2x3", "4x5");
    GC_EXPECT_ERROR(ns_matmul(a, gc_new(D(3), 4, -1, 1, false)));
    GC_MSG_HAS("matmul", "2-D", "2x3");

    ns_tensor *w = gc_new(D(5, 4), 5, -1, 1, false), *bias = gc_new(D(4), 6, -1, 1, false);
    GC_EXPECT_ERROR(ns_linear(a, w, NULL));
    GC_MSG_HAS("linear", "input has 3 features, expected 4", "2x3", "5x4");
    ns_tensor *x = gc_new(D(2, 4), 7, -1, 1, false);
    GC_EXPECT_ERROR(ns_linear(x, w, bias));
    GC_MSG_HAS("linear", "bias must have 5 elements", "2x4", "5x4", "[4] on cpu");

    GC_EXPECT_ERROR(ns_bias_add(a, bias));
    GC_MSG_HAS("bias_add", "one value per channel", "2x3", "4");
}

static void test_device_mismatch_names_both_devices(void **state) {
    (void)state;
    ns_tensor *a = gc_new(D(2, 3), 10, -1, 1, false), *b = gc_new(D(2, 3), 11, -1, 1, false);
    ns_tensor gb = fake_cuda(b);
    GC_EXPECT_ERROR(ns_add(a, &gb));
    GC_MSG_HAS("add", "same device", "cpu", "cuda:0", "2x3");
    GC_EXPECT_ERROR(ns_mul(&gb, a));
    GC_MSG_HAS("mul", "cuda:0 and cpu");

    ns_tensor *m = gc_new(D(3, 4), 12, -1, 1, false);
    ns_tensor gm = fake_cuda(m);
    GC_EXPECT_ERROR(ns_matmul(a, &gm));
    GC_MSG_HAS("matmul", "cpu and cuda:0", "2x3", "3x4");

    ns_tensor *w = gc_new(D(4, 3), 13, -1, 1, false), *bias = gc_new(D(4), 14, -1, 1, false);
    ns_tensor gw = fake_cuda(w), gbias = fake_cuda(bias);
    GC_EXPECT_ERROR(ns_linear(a, &gw, bias));
    GC_MSG_HAS("linear", "cpu and cuda:0", "[4x3] on cuda:0");
    GC_EXPECT_ERROR(ns_linear(a, w, &gbias));
    GC_MSG_HAS("linear", "cpu and cuda:0", "[4] on cuda:0");
    GC_EXPECT_ERROR(ns_bias_add(ns_linear(a, w, NULL), &gbias));
    GC_MSG_HAS("bias_add", "cpu and cuda:0");

    ns_tensor *x4 = gc_new(D(1, 2, 5, 5), 15, -1, 1, false);
    ns_tensor *k = gc_new(D(3, 2, 3, 3), 16, -1, 1, false);
    ns_tensor gk = fake_cuda(k);
    GC_EXPECT_ERROR(ns_conv2d(x4, &gk, NULL, 1, 0));
    GC_MSG_HAS("conv2d", "cpu and cuda:0", "1x2x5x5", "3x2x3x3");

    ns_tensor *ch = gc_new(D(2), 17, -1, 1, false);
    ns_tensor gch = fake_cuda(ch);
    GC_EXPECT_ERROR(ns_batch_norm(x4, &gch, NULL, NULL, NULL, true, 0.1f, 1e-5f));
    GC_MSG_HAS("batch_norm", "cpu and cuda:0");

    ns_tensor *xs[3] = {a, &gb, a};
    GC_EXPECT_ERROR(ns_concat(xs, 3, 0));
    GC_MSG_HAS("concat", "cpu and cuda:0");

    ns_tensor *lab = gc_new_labels(2, 3, 18);
    ns_tensor glab = fake_cuda(lab);
    GC_EXPECT_ERROR(ns_cross_entropy(a, &glab));
    GC_MSG_HAS("cross_entropy", "cpu and cuda:0");
}

/* mse is built from sub/mul/mean; its errors must still name the op the user called. */
static void test_mse_errors_name_mse(void **state) {
    (void)state;
    ns_tensor *a = gc_new(D(2, 3), 25, -1, 1, false), *b = gc_new(D(3, 2), 26, -1, 1, false);
    GC_EXPECT_ERROR(ns_mse(a, b));
    GC_MSG_HAS("2x3", "3x2");
    GC_MSG_HAS("mse");
    ns_tensor *c = gc_new(D(2, 3), 27, -1, 1, false);
    ns_tensor gc = fake_cuda(c);
    GC_EXPECT_ERROR(ns_mse(&gc, a));
    GC_MSG_HAS("cuda:0 and cpu");
    GC_MSG_HAS("mse");
}

static void test_bad_reshape(void **state) {
    (void)state;
    ns_tensor *x = gc_new(D(2, 3), 20, -1, 1, false);
    GC_EXPECT_ERROR(ns_reshape(x, D(4, 4)));
    GC_MSG_HAS("reshape", "[4x4] is invalid for 6 elements", "2x3");
    GC_EXPECT_ERROR(ns_reshape(x, D(4, -1)));
    GC_MSG_HAS("reshape", "[4x-1] is invalid for 6 elements");
    GC_EXPECT_ERROR(ns_reshape(x, D(-1, -1)));
    GC_MSG_HAS("reshape", "only one dimension can be -1");
    GC_EXPECT_ERROR(ns_reshape(x, D(-2, -3)));
    GC_MSG_HAS("reshape", "invalid size -2 in dim 0");
    GC_EXPECT_ERROR(ns_reshape(x, D(1, 1, 1, 2, 3)));
    GC_MSG_HAS("reshape", "1 to 4 dims, got 5");
}

static void test_cross_entropy_target_errors(void **state) {
    (void)state;
    ns_tensor *logits = gc_new(D(3, 5), 30, -1, 1, true);
    ns_tensor *t = gc_new_labels(3, 5, 31);
    ns_i32(t)[1] = 5;
    GC_EXPECT_ERROR(ns_cross_entropy(logits, t));
    GC_MSG_HAS("cross_entropy", "target 5 at row 1 is out of range for 5 classes", "3x5");
    ns_i32(t)[1] = 0;
    ns_i32(t)[2] = -1;
    GC_EXPECT_ERROR(ns_cross_entropy(logits, t));
    GC_MSG_HAS("cross_entropy", "target -1 at row 2");
    ns_i32(t)[2] = 4;
    ns_cross_entropy(logits, t); /* now valid */
    ns_tensor *ft = gc_new(D(3), 32, 0, 3, false);
    GC_EXPECT_ERROR(ns_cross_entropy(logits, ft));
    GC_MSG_HAS("cross_entropy", "int32 class indices of shape (3)");
    ns_tensor *t4 = gc_new_labels(4, 5, 33);
    GC_EXPECT_ERROR(ns_cross_entropy(logits, t4));
    GC_MSG_HAS("cross_entropy", "shape (3)", "3x5", "[4] on cpu");
    GC_EXPECT_ERROR(ns_cross_entropy(gc_new(D(15), 34, -1, 1, false), t));
    GC_MSG_HAS("cross_entropy", "(N, classes)");
}

static void test_nn_op_argument_errors(void **state) {
    (void)state;
    ns_tensor *x4 = gc_new(D(1, 2, 4, 4), 40, -1, 1, false);
    ns_tensor *k3 = gc_new(D(3, 3, 3, 3), 41, -1, 1, false);
    GC_EXPECT_ERROR(ns_conv2d(x4, k3, NULL, 1, 0));
    GC_MSG_HAS("conv2d", "input has 2 channels, expected 3", "1x2x4x4", "3x3x3x3");
    ns_tensor *k5 = gc_new(D(1, 2, 5, 5), 42, -1, 1, false);
    GC_EXPECT_ERROR(ns_conv2d(x4, k5, NULL, 1, 0));
    GC_MSG_HAS("conv2d", "larger than the input");
    ns_tensor *k2 = gc_new(D(1, 2, 2, 2), 43, -1, 1, false);
    GC_EXPECT_ERROR(ns_conv2d(x4, k2, NULL, 0, 0));
    GC_MSG_HAS("conv2d", "invalid stride 0");

    GC_EXPECT_ERROR(ns_max_pool2d(x4, 5, 1, 0));
    GC_MSG_HAS("max_pool2d", "kernel 5 is larger than the input");
    GC_EXPECT_ERROR(ns_avg_pool2d(x4, 2, 2, 2));
    GC_MSG_HAS("avg_pool2d", "padding must be at most half the kernel");
    GC_EXPECT_ERROR(ns_max_pool2d(gc_new(D(4, 4), 44, -1, 1, false), 2, 2, 0));
    GC_MSG_HAS("max_pool2d", "4-D", "4x4");

    ns_tensor *g3 = gc_new(D(3), 45, -1, 1, false);
    GC_EXPECT_ERROR(ns_batch_norm(x4, g3, NULL, NULL, NULL, true, 0.1f, 1e-5f));
    GC_MSG_HAS("batch_norm", "2 elements (one per channel)", "1x2x4x4", "[3] on cpu");
    GC_EXPECT_ERROR(ns_batch_norm(x4, NULL, NULL, NULL, NULL, false, 0.1f, 1e-5f));
    GC_MSG_HAS("batch_norm", "running_mean and running_var");
    GC_EXPECT_ERROR(ns_batch_norm(gc_new(D(1, 3), 46, -1, 1, false), NULL, NULL, NULL, NULL, true,
                                  0.1f, 1e-5f));
    GC_MSG_HAS("batch_norm", "more than 1 value per channel");

    ns_tensor *a = gc_new(D(2, 3), 47, -1, 1, false), *b = gc_new(D(2, 4), 48, -1, 1, false);
    ns_tensor *xs[2] = {a, b};
    GC_EXPECT_ERROR(ns_concat(xs, 2, 0));
    GC_MSG_HAS("concat", "tensor 1 does not match tensor 0 outside axis 0", "2x3", "2x4");
    GC_EXPECT_ERROR(ns_concat(xs, 2, 2));
    GC_MSG_HAS("concat", "axis out of range");

    GC_EXPECT_ERROR(ns_dropout(a, 1.5f, true));
    GC_MSG_HAS("dropout", "[0, 1], got 1.5");
    GC_EXPECT_ERROR(ns_sum_axis(a, 2, false));
    GC_MSG_HAS("sum_axis", "axis out of range for a 2-D tensor");
    GC_EXPECT_ERROR(ns_mean_axis(a, -3, true));
    GC_MSG_HAS("mean_axis", "axis out of range");
    GC_EXPECT_ERROR(ns_transpose(gc_new(D(2, 2, 2), 49, -1, 1, false)));
    GC_MSG_HAS("transpose", "2-D", "2x2x2");
    ns_tensor *lab = gc_new_labels(2, 2, 50);
    GC_EXPECT_ERROR(ns_relu(lab));
    GC_MSG_HAS("relu", "float32", "int32");
}

static void test_tensor_errors(void **state) {
    (void)state;
    GC_EXPECT_ERROR(ns_tmp(5, (const int64_t[]){1, 1, 1, 1, 1}, NS_CPU));
    GC_MSG_HAS("0 to 4 dims, got 5");
    GC_EXPECT_ERROR(ns_tensor_new(D(2, -3), NS_CPU));
    GC_MSG_HAS("ns_tensor_new", "negative size -3 in dim 1");
    ns_tensor *a = gc_new(D(2, 3), 60, -1, 1, false);
    GC_EXPECT_ERROR(ns_item(a));
    GC_MSG_HAS("ns_item", "6 elements [2x3]");
    GC_EXPECT_ERROR(ns_tensor_copy(a, gc_new(D(5), 61, -1, 1, false)));
    GC_MSG_HAS("ns_tensor_copy", "2x3", "5");
    /* A device that is not compiled in (or not present) is named with the reason. */
    char why[256] = "";
    if (!ns_device_available(NS_CUDA, why, sizeof why)) {
        assert_true(why[0] != 0);
        GC_EXPECT_ERROR(ns_tmp(D(2), NS_CUDA));
        GC_MSG_HAS("cuda:0", "not available", why);
    } else {
        ns_tensor *g = ns_tmp(D(2), NS_CUDA); /* a CUDA build on a GPU machine */
        assert_int_equal(g->device, NS_CUDA);
    }
    /* After any of these errors the engine keeps working. */
    assert_true(ns_grad_enabled());
    GC_ASSERT_NEAR(ns_item(ns_sum(a)),
                   a->data[0] + a->data[1] + a->data[2] + a->data[3] + a->data[4] + a->data[5],
                   1e-5);
}

/* Runs body in a child process with the default handler; returns its exit status and stderr. */
static int run_child(void (*body)(void), char *err, size_t errlen) {
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(fds[1], 2);
        close(fds[0]);
        body();
        _exit(0);
    }
    close(fds[1]);
    size_t n = 0;
    ssize_t r;
    while (n + 1 < errlen && (r = read(fds[0], err + n, errlen - 1 - n)) > 0) n += (size_t)r;
    err[n] = 0;
    close(fds[0]);
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static void child_default_handler(void) {
    ns_set_error_handler(NULL, NULL);
    ns_add(ns_tmp(D(2, 3), NS_CPU), ns_tmp(D(3, 2), NS_CPU));
}

static void returning_handler(const char *msg, void *ud) {
    (void)msg;
    (void)ud;
}

static void child_returning_handler(void) {
    ns_set_error_handler(returning_handler, NULL);
    ns_matmul(ns_tmp(D(2, 3), NS_CPU), ns_tmp(D(2, 3), NS_CPU));
}

static void test_default_handler_prints_and_exits(void **state) {
    (void)state;
    char err[4096];
    assert_int_equal(run_child(child_default_handler, err, sizeof err), 1);
    if (strncmp(err, "nnscope: add: ", 14) || !strstr(err, "2x3") || !strstr(err, "3x2"))
        fail_msg("default handler wrote: %s", err);
    assert_int_equal(run_child(child_returning_handler, err, sizeof err), 1);
    if (!strstr(err, "error handler returned")) fail_msg("after a returning handler: %s", err);
}

int main(void) {
    gc_install();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_shape_mismatch_names_op_and_shapes, teardown),
        cmocka_unit_test_teardown(test_device_mismatch_names_both_devices, teardown),
        cmocka_unit_test_teardown(test_mse_errors_name_mse, teardown),
        cmocka_unit_test_teardown(test_bad_reshape, teardown),
        cmocka_unit_test_teardown(test_cross_entropy_target_errors, teardown),
        cmocka_unit_test_teardown(test_nn_op_argument_errors, teardown),
        cmocka_unit_test_teardown(test_tensor_errors, teardown),
        cmocka_unit_test_teardown(test_default_handler_prints_and_exits, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
