/* state_dict as safetensors: bit-identical round trip of parameters and buffers, the keys and
 * shapes written, strict and non-strict loads with missing / unexpected / shape-mismatched keys
 * (PyTorch's message, the report and the recorder event), and file errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "gradcheck.h"
#include "nnscope.h"
#include "nnscope/io.h"

static char g_dir[512];

static const char *tmp_path(const char *name) {
    static char buf[4][700];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", g_dir, name);
    return buf[k];
}

/* ------------------------------------------------------------------ event capture */

static int g_loads;
static int64_t g_count;
static char g_detail[4096];

static void on_event(const ns_event *ev, void *ud) {
    (void)ud;
    if (ev->kind != NS_EV_STATE_DICT_LOAD) return;
    g_loads++;
    g_count = ev->count;
    snprintf(g_detail, sizeof g_detail, "%s", ev->detail);
}

static int setup(void **state) {
    (void)state;
    g_loads = 0;
    g_count = -1;
    g_detail[0] = 0;
    ns_call_stack_reset();
    ns_scope_reset();
    ns_manual_seed(0);
    return 0;
}

/* ------------------------------------------------------------------ models */

typedef struct {
    ns_module base;
    ns_module *fc1, *bn1, *act, *drop, *fc2;
} Net;

static ns_tensor *net_forward(ns_module *self, ns_tensor *x) {
    Net *n = (Net *)self;
    x = ns_call(n->fc1, x);
    if (n->bn1) x = ns_call(n->bn1, x);
    x = ns_call(n->act, x);
    x = ns_call(n->drop, x);
    return ns_call(n->fc2, x);
}

static Net *net_new(int64_t in, int64_t hidden, bool bn, uint64_t seed) {
    ns_manual_seed(seed);
    Net *n = calloc(1, sizeof *n);
    ns_module_init(&n->base, "Net", net_forward);
    n->fc1 = ns_linear_new(in, hidden, true);
    ns_register_module(&n->base, "fc1", n->fc1);
    if (bn) {
        n->bn1 = ns_batchnorm1d_new(hidden);
        ns_register_module(&n->base, "bn1", n->bn1);
    }
    n->act = ns_relu_new();
    ns_register_module(&n->base, "act", n->act);
    n->drop = ns_dropout_new(0.3);
    ns_register_module(&n->base, "drop", n->drop);
    n->fc2 = ns_linear_new(hidden, 3, true);
    ns_register_module(&n->base, "fc2", n->fc2);
    return n;
}

/* A flat host copy of every parameter and buffer, in walk order. */
static float *snapshot(ns_module *m, int64_t *total) {
    int np = 0, nb = 0;
    ns_named_tensor *ps = ns_named_parameters(m, &np), *bs = ns_named_buffers(m, &nb);
    int64_t n = 0;
    for (int i = 0; i < np; i++) n += ps[i].tensor->numel;
    for (int i = 0; i < nb; i++) n += bs[i].tensor->numel;
    float *h = malloc((size_t)n * sizeof *h), *p = h;
    for (int i = 0; i < np; i++) ns_tensor_get(ps[i].tensor, p), p += ps[i].tensor->numel;
    for (int i = 0; i < nb; i++) ns_tensor_get(bs[i].tensor, p), p += bs[i].tensor->numel;
    free(ps);
    free(bs);
    *total = n;
    return h;
}

/* ------------------------------------------------------------------ round trip */

static void test_round_trip_bit_identical(void **state) {
    (void)state;
    Net *a = net_new(20, 16, true, 1);
    /* Move the running statistics and num_batches_tracked away from their defaults. */
    ns_tensor *x = ns_tensor_new(NS_DIMS(8, 20), NS_CPU); /* outlives the scope resets */
    gc_fill_uniform(x->data, x->numel, 5, -2, 2);
    for (int i = 0; i < 3; i++) ns_call(&a->base, x);
    ns_scope_reset();
    char err[512] = "";
    const char *path = tmp_path("rt.safetensors");
    assert_true(ns_save_state_dict(&a->base, path, err, sizeof err));

    /* The file holds PyTorch's keys and shapes. */
    ns_st_file f;
    assert_true(ns_safetensors_read(path, &f, err, sizeof err));
    const char *keys[] = {"bn1.bias",         "bn1.num_batches_tracked",
                          "bn1.running_mean", "bn1.running_var",
                          "bn1.weight",       "fc1.bias",
                          "fc1.weight",       "fc2.bias",
                          "fc2.weight"};
    assert_int_equal(f.n, 9);
    for (int i = 0; i < 9; i++) assert_non_null(ns_st_find(&f, keys[i]));
    const ns_st_tensor *nbt = ns_st_find(&f, "bn1.num_batches_tracked");
    assert_int_equal(nbt->ndim, 0);
    assert_true(nbt->data[0] == 3.0f);
    const ns_st_tensor *w1 = ns_st_find(&f, "fc1.weight");
    assert_int_equal(w1->ndim, 2);
    assert_int_equal(w1->shape[0], 16);
    assert_int_equal(w1->shape[1], 20);
    ns_st_file_free(&f);

    Net *b = net_new(20, 16, true, 99); /* other weights */
    int64_t na, nb;
    float *sa = snapshot(&a->base, &na), *sb0 = snapshot(&b->base, &nb);
    assert_int_equal(na, nb);
    assert_memory_not_equal(sa, sb0, (size_t)na * sizeof(float));
    ns_hook_handle h = ns_register_event_hook(on_event, NULL);
    ns_load_report r;
    assert_true(ns_load_state_dict(&b->base, path, true, &r, err, sizeof err));
    assert_int_equal(r.n_missing + r.n_unexpected + r.n_mismatched, 0);
    ns_load_report_free(&r);
    float *sb = snapshot(&b->base, &nb);
    assert_memory_equal(sa, sb, (size_t)na * sizeof(float)); /* bit-identical, buffers too */
    assert_int_equal(g_loads, 1);
    assert_int_equal(g_count, 0);
    char want[1024];
    snprintf(
        want, sizeof want,
        "{\"file\":\"%s\",\"strict\":1,\"missing\":[],\"unexpected\":[],\"shape_mismatch\":[]}",
        path);
    assert_string_equal(g_detail, want);

    /* Same outputs in eval mode. */
    ns_module_eval(&a->base);
    ns_module_eval(&b->base);
    ns_tensor *ya = ns_call(&a->base, x), *yb = ns_call(&b->base, x);
    assert_memory_equal(ya->data, yb->data, (size_t)ya->numel * sizeof(float));
    ns_hook_remove(h);
    free(sa);
    free(sb0);
    free(sb);
    ns_scope_reset();
    ns_tensor_free(x);
    ns_module_free(&a->base);
    ns_module_free(&b->base);
}

/* ------------------------------------------------------------------ mismatches */

/* A file for a model whose fc1 took 7 features, with no fc2 but an fc3 and a stray buffer. */
static const char *write_mismatched_file(void) {
    static float zeros[64], ones[64];
    for (int i = 0; i < 64; i++) ones[i] = 1.0f;
    ns_st_tensor ts[4] = {
        {"fc1.weight", 2, {6, 7}, zeros},
        {"fc1.bias", 1, {6}, ones},
        {"fc3.weight", 2, {3, 6}, zeros},
        {"extra.buffer", 1, {2}, zeros},
    };
    const char *path = tmp_path("mismatch.safetensors");
    char err[256];
    assert_true(ns_safetensors_write(path, ts, 4, NULL, NULL, 0, err, sizeof err));
    return path;
}

static void test_strict_reports_everything_and_changes_nothing(void **state) {
    (void)state;
    const char *path = write_mismatched_file();
    Net *n = net_new(8, 6, false, 3);
    int64_t total;
    float *before = snapshot(&n->base, &total);
    ns_hook_handle h = ns_register_event_hook(on_event, NULL);
    ns_load_report r;
    char err[2048];
    assert_false(ns_load_state_dict(&n->base, path, true, &r, err, sizeof err));
    char want[2048];
    snprintf(want, sizeof want,
             "Error(s) in loading state_dict for Net from %s:\n"
             "\tMissing key(s) in state_dict: \"fc2.weight\", \"fc2.bias\". \n"
             "\tUnexpected key(s) in state_dict: \"extra.buffer\", \"fc3.weight\". \n"
             "\tsize mismatch for fc1.weight: copying a param with shape [6, 7] from checkpoint, "
             "the shape in current model is [6, 8].",
             path);
    assert_string_equal(err, want);
    assert_int_equal(r.n_missing, 2);
    assert_string_equal(r.missing[0], "fc2.weight");
    assert_string_equal(r.missing[1], "fc2.bias");
    assert_int_equal(r.n_unexpected, 2);
    assert_string_equal(r.unexpected[0], "extra.buffer");
    assert_string_equal(r.unexpected[1], "fc3.weight");
    assert_int_equal(r.n_mismatched, 1);
    assert_string_equal(r.mismatched[0], "fc1.weight: model 6x8, file 6x7");
    ns_load_report_free(&r);
    assert_null(r.missing);
    float *after = snapshot(&n->base, &total);
    assert_memory_equal(before, after, (size_t)total * sizeof(float)); /* fc1.bias untouched */
    assert_int_equal(g_loads, 1);
    assert_int_equal(g_count, 5);
    snprintf(want, sizeof want,
             "{\"file\":\"%s\",\"strict\":1,\"missing\":[\"fc2.weight\",\"fc2.bias\"],"
             "\"unexpected\":[\"extra.buffer\",\"fc3.weight\"],\"shape_mismatch\":[{\"key\":"
             "\"fc1.weight\",\"expected\":\"6x8\",\"got\":\"6x7\"}]}",
             path);
    assert_string_equal(g_detail, want);
    /* A NULL report is fine. */
    assert_false(ns_load_state_dict(&n->base, path, true, NULL, err, sizeof err));
    ns_hook_remove(h);
    free(before);
    free(after);
    ns_module_free(&n->base);
}

static void test_non_strict_loads_what_matches(void **state) {
    (void)state;
    const char *path = write_mismatched_file();
    Net *n = net_new(8, 6, false, 3);
    float w_before[48], fc2_before[18];
    ns_tensor_get(ns_as_linear(n->fc1)->weight, w_before);
    ns_tensor_get(ns_as_linear(n->fc2)->weight, fc2_before);
    ns_hook_handle h = ns_register_event_hook(on_event, NULL);
    ns_load_report r;
    char err[512] = "";
    assert_true(ns_load_state_dict(&n->base, path, false, &r, err, sizeof err));
    assert_string_equal(err, "");
    assert_int_equal(r.n_missing, 2);
    assert_int_equal(r.n_unexpected, 2);
    assert_int_equal(r.n_mismatched, 1);
    assert_string_equal(r.mismatched[0], "fc1.weight: model 6x8, file 6x7");
    ns_load_report_free(&r);
    float bias[6], w_after[48], fc2_after[18];
    ns_tensor_get(ns_as_linear(n->fc1)->bias, bias);
    for (int i = 0; i < 6; i++) assert_true(bias[i] == 1.0f); /* the matching key loaded */
    ns_tensor_get(ns_as_linear(n->fc1)->weight, w_after);
    assert_memory_equal(w_before, w_after, sizeof w_before); /* the mismatched one did not */
    ns_tensor_get(ns_as_linear(n->fc2)->weight, fc2_after);
    assert_memory_equal(fc2_before, fc2_after, sizeof fc2_before);
    assert_int_equal(g_count, 5);
    assert_non_null(strstr(g_detail, "\"strict\":0,"));
    ns_hook_remove(h);
    ns_module_free(&n->base);
}

/* Missing keys come in PyTorch's state_dict order: per module parameters, then buffers. */
static void test_missing_keys_in_state_dict_order(void **state) {
    (void)state;
    Net *n = net_new(4, 5, true, 1);
    static const float zeros[3] = {0, 0, 0};
    ns_st_tensor ts[1] = {{"fc2.bias", 1, {3}, zeros}};
    const char *path = tmp_path("partial.safetensors");
    char err[2048];
    assert_true(ns_safetensors_write(path, ts, 1, NULL, NULL, 0, err, sizeof err));
    ns_load_report r;
    assert_false(ns_load_state_dict(&n->base, path, true, &r, err, sizeof err));
    const char *want[] = {"fc1.weight",
                          "fc1.bias",
                          "bn1.weight",
                          "bn1.bias",
                          "bn1.running_mean",
                          "bn1.running_var",
                          "bn1.num_batches_tracked",
                          "fc2.weight"};
    assert_int_equal(r.n_missing, 8);
    for (int i = 0; i < 8; i++) assert_string_equal(r.missing[i], want[i]);
    assert_null(strstr(err, "Unexpected"));
    assert_null(strstr(err, "size mismatch"));
    ns_load_report_free(&r);
    ns_module_free(&n->base);
}

/* ------------------------------------------------------------------ file errors */

static void test_file_errors(void **state) {
    (void)state;
    Net *n = net_new(4, 5, true, 1);
    int64_t total;
    float *before = snapshot(&n->base, &total);
    ns_hook_handle h = ns_register_event_hook(on_event, NULL);
    char err[512];
    ns_load_report r;
    const char *missing = tmp_path("does-not-exist.safetensors");
    assert_false(ns_load_state_dict(&n->base, missing, true, &r, err, sizeof err));
    assert_non_null(strstr(err, missing));
    assert_int_equal(r.n_missing + r.n_unexpected + r.n_mismatched, 0);
    const char *junk = tmp_path("junk.safetensors");
    FILE *fp = fopen(junk, "wb");
    assert_non_null(fp);
    fputs("this is not a safetensors file at all", fp);
    fclose(fp);
    assert_false(ns_load_state_dict(&n->base, junk, false, NULL, err, sizeof err));
    assert_non_null(strstr(err, junk));
    assert_int_equal(g_loads, 0); /* file errors are not load reports */
    float *after = snapshot(&n->base, &total);
    assert_memory_equal(before, after, (size_t)total * sizeof(float));
    const char *nodir = tmp_path("no-such-dir/model.safetensors");
    assert_false(ns_save_state_dict(&n->base, nodir, err, sizeof err));
    assert_non_null(strstr(err, "no-such-dir"));
    ns_hook_remove(h);
    free(before);
    free(after);
    ns_module_free(&n->base);
}

static int group_setup(void **state) {
    (void)state;
    const char *root = getenv("NNSCOPE_BUILD_ROOT");
    snprintf(g_dir, sizeof g_dir, "%s/test-state-dict-XXXXXX", root && *root ? root : "/tmp");
    return mkdtemp(g_dir) ? 0 : -1;
}

static int group_teardown(void **state) {
    (void)state;
    const char *names[] = {"rt.safetensors", "mismatch.safetensors", "partial.safetensors",
                           "junk.safetensors"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) unlink(tmp_path(names[i]));
    rmdir(g_dir);
    return 0;
}

int main(void) {
    gc_install();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_round_trip_bit_identical, setup),
        cmocka_unit_test_setup(test_strict_reports_everything_and_changes_nothing, setup),
        cmocka_unit_test_setup(test_non_strict_loads_what_matches, setup),
        cmocka_unit_test_setup(test_missing_keys_in_state_dict_order, setup),
        cmocka_unit_test_setup(test_file_errors, setup),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
