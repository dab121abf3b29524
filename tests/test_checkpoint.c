/* Training checkpoints: the file's layout, a round trip of model, optimizer, RNG and metadata,
 * bit-for-bit resumption (train 2K steps without stopping vs stop at K, load into a fresh model
 * and optimizer, continue K: every weight, buffer and optimizer state equal under memcmp), and
 * rejection of corrupted or mismatching files without changing anything. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "gradcheck.h"
#include "nnscope.h"
#include "nnscope/io.h"

#define IN 12
#define HID 16
#define CLS 4
#define NDATA 100
#define BATCH 16
#define K 20 /* save after K steps, then K more (spans epochs: 7 batches per epoch) */

static char g_dir[256];
static char err[2048];
static float g_images[NDATA * IN];
static int32_t g_labels[NDATA];
static ns_dataset g_ds;

static const char *path_of(const char *name) {
    static char buf[4][512];
    static int k;
    char *p = buf[k++ % 4];
    snprintf(p, 512, "%s/%s", g_dir, name);
    return p;
}

static int setup(void **state) {
    (void)state;
    const char *base = getenv("TMPDIR");
    snprintf(g_dir, sizeof g_dir, "%s/nsckpt-XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(g_dir)) return -1;
    for (int i = 0; i < NDATA; i++) {
        float s = 0;
        for (int j = 0; j < IN; j++) {
            float v = (float)(((i * 31 + j * 17 + i * j * 7) % 23) / 11.0 - 1.0);
            g_images[i * IN + j] = v;
            s += v * (float)(j % 3 - 1);
        }
        g_labels[i] = (int32_t)((s > 0) * 2 + (g_images[i * IN] > 0));
    }
    g_ds = (ns_dataset){.n = NDATA,
                        .rows = 3,
                        .cols = 4,
                        .num_classes = CLS,
                        .images = g_images,
                        .labels = g_labels,
                        .owned = false};
    return 0;
}

static int teardown(void **state) {
    (void)state;
    const char *names[] = {"a.ckpt",   "b.ckpt",       "trunc.ckpt", "plain.safetensors",
                           "bad.ckpt", "nostate.ckpt", "noopt.ckpt"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) unlink(path_of(names[i]));
    return rmdir(g_dir);
}

/* ------------------------------------------------------------------ model, optimizer, training */

static ns_module *make_model(uint64_t seed, int64_t hidden) {
    ns_manual_seed(seed);
    return ns_sequential_new(5, ns_linear_new(IN, hidden, true), ns_batchnorm1d_new(hidden),
                             ns_relu_new(), ns_dropout_new(0.3), ns_linear_new(hidden, CLS, true));
}

/* Two groups: the first Linear (lr 1e-2), the rest (lr 3e-3, weight decay). */
static ns_optimizer *make_opt(ns_module *m, ns_optim_kind kind) {
    int n;
    ns_tensor **ps = ns_optim_params_of(m, &n);
    ns_optimizer *opt;
    if (kind == NS_OPTIM_SGD)
        opt = ns_sgd_new(ps, 2, 1e-2, 0.9, 0.0, 0.0, true);
    else if (kind == NS_OPTIM_ADAM)
        opt = ns_adam_new(ps, 2, 1e-2, 0.9, 0.999, 1e-8, 0.0);
    else
        opt = ns_adamw_new(ps, 2, 1e-2, 0.9, 0.999, 1e-8, 0.01);
    ns_optim_add_group(opt, ps + 2, n - 2, 3e-3, 1e-3);
    free(ps);
    return opt;
}

static void train(ns_module *m, ns_optimizer *opt, ns_loader *ld, int steps) {
    float x[BATCH * IN];
    int32_t y[BATCH];
    ns_module_train(m, true);
    for (int s = 0; s < steps; s++) {
        int64_t nb = ns_loader_next(ld, x, y);
        if (!nb) nb = ns_loader_next(ld, x, y); /* next epoch */
        ns_tensor *xt = ns_from_host(NS_DIMS(nb, IN), x, NS_CPU);
        ns_tensor *yt = ns_from_host_i32(NS_DIMS(nb), y, NS_CPU);
        ns_optim_zero_grad(opt);
        ns_backward(ns_cross_entropy(ns_call(m, xt), yt), NULL);
        ns_optim_step(opt);
        ns_step_end();
    }
}

/* Every float of the model (parameters, buffers) and of the optimizer state, concatenated. */
typedef struct {
    float *v;
    size_t n;
} snapshot;

static void snap_add(snapshot *s, const ns_tensor *t) {
    s->v = realloc(s->v, sizeof(float) * (s->n + (size_t)t->numel + 1));
    assert_non_null(s->v);
    ns_tensor_get(t, s->v + s->n);
    s->n += (size_t)t->numel;
}

static snapshot snap(ns_module *m, const ns_optimizer *opt) {
    snapshot s = {0};
    int n;
    ns_named_tensor *ps = ns_named_parameters(m, &n);
    for (int i = 0; i < n; i++) snap_add(&s, ps[i].tensor);
    free(ps);
    ns_named_tensor *bs = ns_named_buffers(m, &n);
    for (int i = 0; i < n; i++) snap_add(&s, bs[i].tensor);
    free(bs);
    for (int i = 0; opt && i < ns_optim_num_params(opt); i++)
        for (int k = 0; k < ns_optim_num_states(opt); k++)
            if (ns_optim_state(opt, i, k)) snap_add(&s, ns_optim_state(opt, i, k));
    return s;
}

static bool snap_equal(const snapshot *a, const snapshot *b) {
    return a->n == b->n && !memcmp(a->v, b->v, sizeof(float) * a->n);
}

/* ------------------------------------------------------------------ round trip and layout */

static void test_round_trip(void **state) {
    (void)state;
    ns_module *m = make_model(1, HID);
    ns_optimizer *opt = make_opt(m, NS_OPTIM_ADAM);
    ns_loader *ld = ns_loader_new(&g_ds, BATCH, true, 7, false);
    train(m, opt, ld, 9);
    ns_optim_set_lr(opt, 1, 2.5e-3); /* a scheduler moved it: the checkpoint keeps it */
    ns_ckpt_meta meta = {.epoch = 1, .step = 9, .best_metric = 0.8125, .has_loader = true};
    meta.loader = ns_loader_get_state(ld);
    uint64_t seed, counter;
    ns_rng_get_state(&seed, &counter);
    assert_true(ns_checkpoint_save(path_of("a.ckpt"), m, opt, &meta, err, sizeof err));

    /* The file: safetensors with the documented keys and metadata. */
    ns_st_file f;
    assert_true(ns_safetensors_read(path_of("a.ckpt"), &f, err, sizeof err));
    assert_non_null(ns_st_find(&f, "model.0.weight"));
    assert_non_null(ns_st_find(&f, "model.1.running_var"));
    assert_non_null(ns_st_find(&f, "model.1.num_batches_tracked"));
    assert_non_null(ns_st_find(&f, "optim.0.exp_avg.0.weight"));
    assert_non_null(ns_st_find(&f, "optim.1.exp_avg_sq.4.bias"));
    assert_string_equal(ns_st_meta(&f, "format"), "nnscope.checkpoint");
    assert_string_equal(ns_st_meta(&f, "epoch"), "1");
    assert_string_equal(ns_st_meta(&f, "optim.kind"), "Adam");
    assert_string_equal(ns_st_meta(&f, "optim.1.step.4.weight"), "9");
    assert_string_equal(ns_st_meta(&f, "optim.1.lr"), "0.0025000000000000001");
    char want[32];
    snprintf(want, sizeof want, "%llu", (unsigned long long)counter);
    assert_string_equal(ns_st_meta(&f, "rng.counter"), want);
    ns_st_file_free(&f);

    /* Into a fresh model and optimizer (other init, other RNG). */
    ns_module *m2 = make_model(99, HID);
    ns_optimizer *o2 = make_opt(m2, NS_OPTIM_ADAM);
    ns_manual_seed(12345);
    ns_ckpt_meta got;
    assert_true(ns_checkpoint_load(path_of("a.ckpt"), m2, o2, &got, err, sizeof err));
    snapshot a = snap(m, opt), b = snap(m2, o2);
    assert_true(snap_equal(&a, &b));
    assert_int_equal(got.epoch, 1);
    assert_int_equal(got.step, 9);
    assert_true(got.best_metric == 0.8125);
    assert_true(got.has_loader);
    assert_true(got.loader.seed == meta.loader.seed && got.loader.epoch == meta.loader.epoch &&
                got.loader.position == meta.loader.position && got.loader.n == meta.loader.n &&
                got.loader.batch_size == meta.loader.batch_size && got.loader.shuffle &&
                !got.loader.drop_last);
    assert_true(meta.loader.position > 0);
    assert_true(ns_optim_param_lr(o2, 3) == 2.5e-3);
    assert_int_equal(ns_optim_steps(o2), 9);
    for (int i = 0; i < ns_optim_num_params(o2); i++)
        assert_int_equal(ns_optim_param_steps(o2, i), 9);
    uint64_t s2, c2;
    ns_rng_get_state(&s2, &c2);
    assert_true(s2 == seed && c2 == counter);

    /* Without metadata or optimizer: model only, best_metric NaN round-trips. */
    assert_true(ns_checkpoint_save(path_of("noopt.ckpt"), m, NULL, NULL, err, sizeof err));
    assert_true(ns_checkpoint_load(path_of("noopt.ckpt"), m2, NULL, &got, err, sizeof err));
    assert_true(isnan(got.best_metric));
    assert_false(got.has_loader);

    free(a.v);
    free(b.v);
    ns_loader_free(ld);
    ns_optim_free(opt);
    ns_optim_free(o2);
    ns_module_free(m);
    ns_module_free(m2);
}

/* ------------------------------------------------------------------ bit-for-bit resume */

static void check_resume(ns_optim_kind kind) {
    /* A: 2K steps without stopping, saving at K. */
    ns_module *ma = make_model(1, HID);
    ns_optimizer *oa = make_opt(ma, kind);
    ns_loader *la = ns_loader_new(&g_ds, BATCH, true, 7, false);
    train(ma, oa, la, K);
    ns_ckpt_meta meta = {.epoch = 2, .step = K, .best_metric = 0.5, .has_loader = true};
    meta.loader = ns_loader_get_state(la);
    assert_true(ns_checkpoint_save(path_of("b.ckpt"), ma, oa, &meta, err, sizeof err));
    train(ma, oa, la, K);
    snapshot sa = snap(ma, oa);

    /* B: a fresh process state (other init and RNG), loads at K and continues K steps. */
    ns_module *mb = make_model(42, HID);
    ns_optimizer *ob = make_opt(mb, kind);
    ns_loader *lb = ns_loader_new(&g_ds, BATCH, true, 1234, false);
    ns_manual_seed(777);
    ns_ckpt_meta got;
    assert_true(ns_checkpoint_load(path_of("b.ckpt"), mb, ob, &got, err, sizeof err));
    assert_true(ns_loader_set_state(lb, &got.loader, err, sizeof err));
    train(mb, ob, lb, K);
    snapshot sb = snap(mb, ob);
    assert_true(sa.n > 600);
    assert_true(snap_equal(&sa, &sb));

    /* C: the same with the dropout stream shifted by one draw must differ, so the equality above
     * is not vacuous (the RNG restore matters). */
    ns_module *mc = make_model(42, HID);
    ns_optimizer *oc = make_opt(mc, kind);
    ns_loader *lc = ns_loader_new(&g_ds, BATCH, true, 7, false);
    assert_true(ns_checkpoint_load(path_of("b.ckpt"), mc, oc, &got, err, sizeof err));
    assert_true(ns_loader_set_state(lc, &got.loader, err, sizeof err));
    uint64_t seed, counter;
    ns_rng_get_state(&seed, &counter);
    ns_rng_set_state(seed, counter + 1);
    train(mc, oc, lc, K);
    snapshot sc = snap(mc, oc);
    assert_false(snap_equal(&sa, &sc));

    free(sa.v);
    free(sb.v);
    free(sc.v);
    ns_loader_free(la);
    ns_loader_free(lb);
    ns_loader_free(lc);
    ns_optim_free(oa);
    ns_optim_free(ob);
    ns_optim_free(oc);
    ns_module_free(ma);
    ns_module_free(mb);
    ns_module_free(mc);
}

static void test_resume_adam(void **state) {
    (void)state;
    check_resume(NS_OPTIM_ADAM);
}

static void test_resume_adamw(void **state) {
    (void)state;
    check_resume(NS_OPTIM_ADAMW);
}

static void test_resume_sgd_nesterov(void **state) {
    (void)state;
    check_resume(NS_OPTIM_SGD);
}

/* ------------------------------------------------------------------ corrupted and mismatching */

/* Copies the first bytes of src to dst. */
static void truncate_copy(const char *src, const char *dst, long keep) {
    FILE *in = fopen(src, "rb"), *out = fopen(dst, "wb");
    assert_non_null(in);
    assert_non_null(out);
    char *buf = malloc((size_t)keep);
    assert_int_equal(fread(buf, 1, (size_t)keep, in), (size_t)keep);
    fwrite(buf, 1, (size_t)keep, out);
    free(buf);
    fclose(in);
    fclose(out);
}

/* Rewrites src to dst, dropping tensor drop (may be NULL) and setting metadata key to val. */
static void rewrite(const char *src, const char *dst, const char *drop, const char *key,
                    const char *val) {
    ns_st_file f;
    assert_true(ns_safetensors_read(src, &f, err, sizeof err));
    ns_st_tensor *ts = calloc((size_t)f.n, sizeof *ts);
    int n = 0;
    for (int i = 0; i < f.n; i++)
        if (!drop || strcmp(f.tensors[i].name, drop)) ts[n++] = f.tensors[i];
    const char **vals = calloc((size_t)f.n_meta, sizeof *vals);
    for (int i = 0; i < f.n_meta; i++)
        vals[i] = key && !strcmp(f.meta_keys[i], key) ? val : f.meta_vals[i];
    assert_true(ns_safetensors_write(dst, ts, n, f.meta_keys, vals, f.n_meta, err, sizeof err));
    free(ts);
    free(vals);
    ns_st_file_free(&f);
}

static long file_size(const char *p) {
    FILE *f = fopen(p, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fclose(f);
    return n;
}

#define EXPECT_LOAD_FAILS(path, model, opt, needle)                                                \
    do {                                                                                           \
        err[0] = 0;                                                                                \
        assert_false(ns_checkpoint_load((path), (model), (opt), NULL, err, sizeof err));           \
        if (!strstr(err, (needle))) fail_msg("expected \"%s\" in \"%s\"", (needle), err);          \
    } while (0)

static void test_bad_files(void **state) {
    (void)state;
    ns_module *m = make_model(1, HID);
    ns_optimizer *opt = make_opt(m, NS_OPTIM_ADAM);
    ns_loader *ld = ns_loader_new(&g_ds, BATCH, true, 7, false);
    train(m, opt, ld, 3);
    ns_ckpt_meta meta = {.epoch = 0, .step = 3, .best_metric = 0.1};
    char good[512], bad[512];
    snprintf(good, sizeof good, "%s", path_of("a.ckpt"));
    snprintf(bad, sizeof bad, "%s", path_of("bad.ckpt"));
    assert_true(ns_checkpoint_save(good, m, opt, &meta, err, sizeof err));

    /* The target: other weights; nothing may change when a load fails. */
    ns_module *t = make_model(5, HID);
    ns_optimizer *to = make_opt(t, NS_OPTIM_ADAM);
    train(t, to, ld, 1);
    /* Mismatching models and optimizers for the end (models are built first: building seeds the
     * generator). */
    ns_module *wide = make_model(1, HID + 1);
    ns_module *longer = make_model(1, HID);
    ns_sequential_append(longer, ns_linear_new(CLS, 2, false));
    ns_optimizer *sgd = make_opt(t, NS_OPTIM_SGD);
    int n;
    ns_tensor **ps = ns_optim_params_of(t, &n);
    ns_optimizer *one = ns_adam_new(ps, n, 1e-3, 0.9, 0.999, 1e-8, 0.0);
    free(ps);
    ns_manual_seed(4242);
    ns_rng_advance(17);
    uint64_t seed, counter;
    ns_rng_get_state(&seed, &counter);
    snapshot before = snap(t, to);

    EXPECT_LOAD_FAILS(path_of("missing.ckpt"), t, to, "missing.ckpt");
    truncate_copy(good, path_of("trunc.ckpt"), file_size(good) / 2);
    EXPECT_LOAD_FAILS(path_of("trunc.ckpt"), t, to, "trunc.ckpt");
    truncate_copy(good, path_of("trunc.ckpt"), 5);
    EXPECT_LOAD_FAILS(path_of("trunc.ckpt"), t, to, "trunc.ckpt");

    assert_true(ns_save_state_dict(m, path_of("plain.safetensors"), err, sizeof err));
    EXPECT_LOAD_FAILS(path_of("plain.safetensors"), t, to, "not an nnscope training checkpoint");

    rewrite(good, bad, NULL, "epoch", "abc");
    EXPECT_LOAD_FAILS(bad, t, to, "'epoch' is not a valid integer: 'abc'");
    rewrite(good, bad, NULL, "rng.counter", "-5");
    EXPECT_LOAD_FAILS(bad, t, to, "'rng.counter' is not a valid integer");
    rewrite(good, bad, NULL, "format_version", "7");
    EXPECT_LOAD_FAILS(bad, t, to, "version '7' is not supported");
    rewrite(good, bad, NULL, "optim.0.lr", "fast");
    EXPECT_LOAD_FAILS(bad, t, to, "'optim.0.lr' is not a number: 'fast'");
    rewrite(good, bad, NULL, "optim.1.step.4.bias", "");
    EXPECT_LOAD_FAILS(bad, t, to, "'optim.1.step.4.bias' is not a valid integer");
    rewrite(good, bad, NULL, "optim.groups", "3");
    EXPECT_LOAD_FAILS(bad, t, to, "has 3 parameter groups, this one 2");
    rewrite(good, bad, "optim.0.exp_avg.0.weight", NULL, NULL);
    EXPECT_LOAD_FAILS(bad, t, to,
                      "optimizer state missing from the checkpoint: "
                      "optim.0.exp_avg.0.weight");
    rewrite(good, bad, "model.1.running_mean", NULL, NULL);
    EXPECT_LOAD_FAILS(bad, t, to, "missing keys: 1.running_mean");
    /* A broken loader state. */
    assert_true(ns_checkpoint_save(
        bad, m, opt, &(ns_ckpt_meta){.has_loader = true, .loader = ns_loader_get_state(ld)}, err,
        sizeof err));
    rewrite(bad, bad, NULL, "loader", "seed=1 epoch=x");
    EXPECT_LOAD_FAILS(bad, t, to, "'loader'");

    /* Mismatching model and optimizer. */
    EXPECT_LOAD_FAILS(good, wide, NULL, "shape mismatches: 0.weight (model 17x12, file 192");
    EXPECT_LOAD_FAILS(good, longer, NULL, "missing keys: 5.weight");
    assert_true(ns_checkpoint_save(path_of("noopt.ckpt"), longer, NULL, NULL, err, sizeof err));
    EXPECT_LOAD_FAILS(path_of("noopt.ckpt"), t, NULL, "unexpected keys: 5.weight");
    EXPECT_LOAD_FAILS(good, t, sgd, "holds Adam state, the optimizer is SGD");
    EXPECT_LOAD_FAILS(good, t, one, "has 2 parameter groups, this one 1");
    assert_true(ns_checkpoint_save(path_of("nostate.ckpt"), m, NULL, NULL, err, sizeof err));
    EXPECT_LOAD_FAILS(path_of("nostate.ckpt"), t, to, "holds no optimizer state");

    snapshot after = snap(t, to);
    assert_true(snap_equal(&before, &after));
    uint64_t s2, c2;
    ns_rng_get_state(&s2, &c2);
    assert_true(s2 == seed && c2 == counter);
    assert_int_equal(ns_optim_steps(to), 1);

    /* And the good file still loads. */
    assert_true(ns_checkpoint_load(good, t, to, NULL, err, sizeof err));

    free(before.v);
    free(after.v);
    ns_loader_free(ld);
    ns_optim_free(opt);
    ns_optim_free(to);
    ns_optim_free(sgd);
    ns_optim_free(one);
    ns_module_free(m);
    ns_module_free(t);
    ns_module_free(wide);
    ns_module_free(longer);
}

int main(void) {
    gc_install();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),   cmocka_unit_test(test_resume_adam),
        cmocka_unit_test(test_resume_adamw), cmocka_unit_test(test_resume_sgd_nesterov),
        cmocka_unit_test(test_bad_files),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
