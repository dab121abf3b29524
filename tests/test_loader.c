/* Datasets from idx files, Fashion-MNIST paths, and the seeded, resumable data loader.
 *
 * `test_loader --fashion` runs only the check on the real Fashion-MNIST files and exits 77
 * (skipped) when they are not installed. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "nnscope/io.h"

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#define IO_TEST_PREFIX "nsloader"
#include "io_test_util.h"

/* Writes a gzip idx file of unsigned bytes. */
static void write_idx(const char *path, int ndim, const uint32_t *dims, const uint8_t *payload) {
    size_t numel = 1;
    uint8_t head[4 + 16] = {0, 0, 0x08, (uint8_t)ndim};
    for (int i = 0; i < ndim; i++) {
        numel *= dims[i];
        head[4 + 4 * i] = (uint8_t)(dims[i] >> 24);
        head[5 + 4 * i] = (uint8_t)(dims[i] >> 16);
        head[6 + 4 * i] = (uint8_t)(dims[i] >> 8);
        head[7 + 4 * i] = (uint8_t)dims[i];
    }
    gzFile f = gzopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(gzwrite(f, head, 4 + 4 * (unsigned)ndim), 4 + 4 * ndim);
    if (numel) assert_int_equal(gzwrite(f, payload, (unsigned)numel), (int)numel);
    assert_int_equal(gzclose(f), Z_OK);
}

/* A 7-sample, 4x3 image set with labels i % 10 (pixel values cover 0 and 255). */
static void write_small_set(const char *images, const char *labels, int n_labels,
                            uint8_t bad_label_at3) {
    uint8_t px[7 * 12], lb[8];
    for (int i = 0; i < 7 * 12; i++) px[i] = (uint8_t)(i * 29 % 256);
    px[0] = 0, px[1] = 255;
    for (int i = 0; i < 8; i++) lb[i] = (uint8_t)(i % 10);
    if (bad_label_at3) lb[3] = bad_label_at3;
    uint32_t di[] = {7, 4, 3}, dl[] = {(uint32_t)n_labels};
    write_idx(images, 3, di, px);
    write_idx(labels, 1, dl, lb);
}

static void test_dataset_normalised(void **state) {
    (void)state;
    const char *im = path_of("im.gz"), *lb = path_of("lb.gz");
    write_small_set(im, lb, 7, 0);
    ns_dataset ds;
    const float mean = 0.2860f, std = 0.3530f;
    if (!ns_dataset_load_idx(im, lb, mean, std, 10, &ds, err, sizeof err)) fail_msg("%s", err);
    assert_int_equal(ds.n, 7);
    assert_int_equal(ds.rows, 4);
    assert_int_equal(ds.cols, 3);
    assert_int_equal(ds.num_classes, 10);
    assert_true(ds.owned);
    for (int i = 0; i < 7 * 12; i++) {
        uint8_t v = (uint8_t)(i * 29 % 256);
        if (i == 0) v = 0;
        if (i == 1) v = 255;
        float want = ((float)v / 255.0f - mean) / std;
        assert_memory_equal(&ds.images[i], &want, sizeof want); /* bit-exact */
    }
    assert_true(ds.images[1] > 2.02f && ds.images[1] < 2.03f); /* (1 - 0.286) / 0.353 */
    for (int i = 0; i < 7; i++) assert_int_equal(ds.labels[i], i % 10);
    ns_dataset_free(&ds);
    assert_null(ds.images);
}

static void test_dataset_count_mismatch(void **state) {
    (void)state;
    const char *im = path_of("im2.gz"), *lb = path_of("lb2.gz");
    write_small_set(im, lb, 6, 0);
    ns_dataset ds;
    assert_false(ns_dataset_load_idx(im, lb, 0.0f, 1.0f, 10, &ds, err, sizeof err));
    assert_contains(err, im);
    assert_contains(err, lb);
    assert_contains(err, "has 7 images but");
    assert_contains(err, "has 6 labels");
    assert_null(ds.images);
}

static void test_dataset_label_range(void **state) {
    (void)state;
    const char *im = path_of("im3.gz"), *lb = path_of("lb3.gz");
    write_small_set(im, lb, 7, 10);
    ns_dataset ds;
    assert_false(ns_dataset_load_idx(im, lb, 0.0f, 1.0f, 10, &ds, err, sizeof err));
    assert_contains(err, lb);
    assert_contains(err, "label 10 at index 3 is out of range [0, 10)");
    /* The same file is fine with 11 classes. */
    assert_true(ns_dataset_load_idx(im, lb, 0.0f, 1.0f, 11, &ds, err, sizeof err));
    ns_dataset_free(&ds);
}

static void test_dataset_wrong_ranks(void **state) {
    (void)state;
    const char *im = path_of("im4.gz"), *lb = path_of("lb4.gz");
    write_small_set(im, lb, 7, 0);
    ns_dataset ds;
    /* labels passed as images and the other way round */
    assert_false(ns_dataset_load_idx(lb, im, 0.0f, 1.0f, 10, &ds, err, sizeof err));
    assert_contains(err, lb);
    assert_contains(err, "1 dimensions; expected 3");
    assert_false(ns_dataset_load_idx(im, im, 0.0f, 1.0f, 10, &ds, err, sizeof err));
    assert_contains(err, "3 dimensions; expected 1");
    assert_false(ns_dataset_load_idx(im, lb, 0.5f, 0.0f, 10, &ds, err, sizeof err));
    assert_contains(err, "std > 0");
}

static void test_fashion_dir_and_env(void **state) {
    (void)state;
    unsetenv("NNSCOPE_DATA");
    assert_string_equal(ns_fashion_mnist_dir(), "/usr/share/datasets/fashion-mnist");
    char dir[400];
    snprintf(dir, sizeof dir, "%s/fm", tmpdir);
    assert_int_equal(mkdir(dir, 0755), 0);
    char im[512], lb[512];
    snprintf(im, sizeof im, "%s/t10k-images-idx3-ubyte.gz", dir);
    snprintf(lb, sizeof lb, "%s/t10k-labels-idx1-ubyte.gz", dir);
    write_small_set(im, lb, 7, 0);
    setenv("NNSCOPE_DATA", dir, 1);
    assert_string_equal(ns_fashion_mnist_dir(), dir);
    ns_dataset ds;
    if (!ns_fashion_mnist_load(NULL, false, 0.0f, 1.0f, &ds, err, sizeof err)) fail_msg("%s", err);
    assert_int_equal(ds.n, 7);
    ns_dataset_free(&ds);
    /* The train split is absent: the message names the file it looked for. */
    assert_false(ns_fashion_mnist_load(NULL, true, 0.0f, 1.0f, &ds, err, sizeof err));
    assert_contains(err, "/fm/train-images-idx3-ubyte.gz");
    assert_contains(err, "No such file");
    /* An explicit dir wins over the environment. */
    setenv("NNSCOPE_DATA", "/nonexistent", 1);
    assert_true(ns_fashion_mnist_load(dir, false, 0.0f, 1.0f, &ds, err, sizeof err));
    ns_dataset_free(&ds);
    setenv("NNSCOPE_DATA", "", 1);
    assert_string_equal(ns_fashion_mnist_dir(), "/usr/share/datasets/fashion-mnist");
    unsetenv("NNSCOPE_DATA");
}

/* ---- loader ---------------------------------------------------------------------------- */

enum { R = 2, C = 3 };

/* A dataset whose sample i has every pixel equal to i and label i % 10. */
static ns_dataset make_ds(int64_t n) {
    ns_dataset ds = {.n = n, .rows = R, .cols = C, .num_classes = 10, .owned = true};
    ds.images = malloc((size_t)(n ? n : 1) * R * C * sizeof(float));
    ds.labels = malloc((size_t)(n ? n : 1) * sizeof(int32_t));
    assert_non_null(ds.images);
    assert_non_null(ds.labels);
    for (int64_t i = 0; i < n; i++) {
        for (int k = 0; k < R * C; k++) ds.images[i * R * C + k] = (float)i;
        ds.labels[i] = (int32_t)(i % 10);
    }
    return ds;
}

/* Serves one batch (at most 512 samples), checks that x and y agree, and writes the sample ids into
 * ids. */
static int64_t next_ids(ns_loader *ld, int64_t *ids) {
    float x[512 * R * C];
    int32_t y[512];
    int64_t b = ns_loader_next(ld, x, y);
    assert_true(b <= 512);
    for (int64_t k = 0; k < b; k++) {
        ids[k] = (int64_t)x[k * R * C];
        for (int j = 0; j < R * C; j++) assert_true(x[k * R * C + j] == (float)ids[k]);
        assert_int_equal(y[k], ids[k] % 10);
    }
    return b;
}

/* Collects one whole epoch (until the 0 return) into ids; returns the sample count. */
static int64_t epoch_ids(ns_loader *ld, int64_t *ids, int64_t *batches) {
    int64_t total = 0, b;
    *batches = 0;
    while ((b = next_ids(ld, ids + total)) > 0) {
        total += b;
        ++*batches;
    }
    return total;
}

static void test_sequential_batches(void **state) {
    (void)state;
    ns_dataset ds = make_ds(10);
    ns_loader *ld = ns_loader_new(&ds, 4, false, 0, false);
    assert_non_null(ld);
    assert_int_equal(ns_loader_batches_per_epoch(ld), 3);
    int64_t ids[16];
    for (int epoch = 0; epoch < 2; epoch++) {
        assert_int_equal(next_ids(ld, ids), 4);
        assert_int_equal(next_ids(ld, ids + 4), 4);
        assert_int_equal(next_ids(ld, ids + 8), 2);
        assert_int_equal(next_ids(ld, ids + 10), 0);
        for (int i = 0; i < 10; i++) assert_int_equal(ids[i], i);
        assert_int_equal(ns_loader_get_state(ld).epoch, (uint64_t)epoch + 1);
    }
    ns_loader_free(ld);

    ld = ns_loader_new(&ds, 4, false, 0, true); /* drop_last */
    assert_int_equal(ns_loader_batches_per_epoch(ld), 2);
    assert_int_equal(next_ids(ld, ids), 4);
    assert_int_equal(next_ids(ld, ids), 4);
    assert_int_equal(next_ids(ld, ids), 0);
    assert_int_equal(next_ids(ld, ids), 4);
    assert_int_equal(ids[0], 0);
    ns_loader_free(ld);

    ld = ns_loader_new(&ds, 11, false, 0, true);
    assert_int_equal(ns_loader_batches_per_epoch(ld), 0);
    assert_int_equal(next_ids(ld, ids), 0);
    assert_int_equal(next_ids(ld, ids), 0);
    ns_loader_free(ld);
    ns_dataset_free(&ds);
}

/* The permutation recipe documented in io.h, pinned by values from an independent Python
 * implementation of it: changing the recipe would silently change resumed runs. */
static void test_shuffle_pinned(void **state) {
    (void)state;
    ns_dataset ds = make_ds(10);
    static const int64_t seed42_e0[] = {7, 3, 8, 9, 5, 6, 4, 1, 0, 2};
    static const int64_t seed42_e1[] = {6, 3, 8, 9, 4, 0, 1, 7, 2, 5};
    static const int64_t seed7_e3[] = {9, 2, 3, 0, 6, 5, 4, 7, 1, 8};
    ns_loader *ld = ns_loader_new(&ds, 10, true, 42, false);
    int64_t ids[16], nb;
    assert_int_equal(epoch_ids(ld, ids, &nb), 10);
    assert_memory_equal(ids, seed42_e0, sizeof seed42_e0);
    assert_int_equal(epoch_ids(ld, ids, &nb), 10);
    assert_memory_equal(ids, seed42_e1, sizeof seed42_e1);
    ns_loader_free(ld);
    ld = ns_loader_new(&ds, 4, true, 7, false);
    for (int e = 0; e < 3; e++) epoch_ids(ld, ids, &nb);
    assert_int_equal(epoch_ids(ld, ids, &nb), 10);
    assert_int_equal(nb, 3);
    assert_memory_equal(ids, seed7_e3, sizeof seed7_e3);
    ns_loader_free(ld);
    ns_dataset_free(&ds);
}

static void test_shuffle_properties(void **state) {
    (void)state;
    enum { N = 1000 };
    ns_dataset ds = make_ds(N);
    static int64_t a[3][N], b[N];
    int64_t nb;
    ns_loader *ld = ns_loader_new(&ds, 64, true, 123, false);
    for (int e = 0; e < 3; e++) {
        assert_int_equal(epoch_ids(ld, a[e], &nb), N);
        assert_int_equal(nb, 16);
        /* every sample exactly once */
        char seen[N] = {0};
        for (int i = 0; i < N; i++) seen[a[e][i]]++;
        for (int i = 0; i < N; i++) assert_int_equal(seen[i], 1);
    }
    assert_memory_not_equal(a[0], a[1], sizeof a[0]);
    assert_memory_not_equal(a[1], a[2], sizeof a[0]);
    int fixed = 0;
    for (int i = 0; i < N; i++) fixed += a[0][i] == i;
    assert_true(fixed < 10); /* a real shuffle (about 1 fixed point expected) */
    ns_loader_free(ld);

    /* same seed, same sequence; another seed, another */
    ld = ns_loader_new(&ds, 100, true, 123, false);
    assert_int_equal(epoch_ids(ld, b, &nb), N);
    assert_memory_equal(b, a[0], sizeof b);
    ns_loader_free(ld);
    ld = ns_loader_new(&ds, 64, true, 124, false);
    assert_int_equal(epoch_ids(ld, b, &nb), N);
    assert_memory_not_equal(b, a[0], sizeof b);
    ns_loader_free(ld);

    /* drop_last with shuffle: the dropped samples differ per epoch */
    ld = ns_loader_new(&ds, 300, true, 5, true);
    assert_int_equal(epoch_ids(ld, a[0], &nb), 900);
    assert_int_equal(nb, 3);
    assert_int_equal(epoch_ids(ld, a[1], &nb), 900);
    assert_memory_not_equal(a[0], a[1], 900 * sizeof(int64_t));
    ns_loader_free(ld);
    ns_dataset_free(&ds);
}

static void assert_state_equal(const ns_loader_state *a, const ns_loader_state *b) {
    assert_true(a->seed == b->seed);
    assert_true(a->epoch == b->epoch);
    assert_int_equal(a->position, b->position);
    assert_int_equal(a->n, b->n);
    assert_int_equal(a->batch_size, b->batch_size);
    assert_int_equal(a->shuffle, b->shuffle);
    assert_int_equal(a->drop_last, b->drop_last);
}

/* Saving the state mid-epoch (through its text form, as a checkpoint would) and restoring it
 * in a fresh loader gives exactly the batches the original serves next, across epochs. */
static void check_resume(int64_t n, int64_t bs, bool drop_last, int stop_after_batches) {
    ns_dataset ds = make_ds(n);
    ns_loader *a = ns_loader_new(&ds, bs, true, 99, drop_last);
    int64_t ids[64], ids2[64];
    for (int i = 0; i < stop_after_batches; i++) next_ids(a, ids);
    ns_loader_state st = ns_loader_get_state(a);
    char text[200];
    int len = ns_loader_state_format(&st, text, sizeof text);
    assert_true(len > 0 && len < (int)sizeof text);
    ns_loader_state back;
    if (!ns_loader_state_parse(text, &back, err, sizeof err)) fail_msg("%s", err);
    assert_state_equal(&back, &st);

    ns_loader *b = ns_loader_new(&ds, bs, true, 1234 /* overwritten */, drop_last);
    next_ids(b, ids2); /* b is somewhere else entirely before the restore */
    if (!ns_loader_set_state(b, &back, err, sizeof err)) fail_msg("%s", err);
    for (int i = 0; i < 40; i++) {
        int64_t ka = next_ids(a, ids), kb = next_ids(b, ids2);
        assert_int_equal(ka, kb);
        assert_memory_equal(ids, ids2, (size_t)ka * sizeof(int64_t));
    }
    ns_loader_state sa = ns_loader_get_state(a), sb = ns_loader_get_state(b);
    assert_state_equal(&sa, &sb);
    ns_loader_free(a);
    ns_loader_free(b);
    ns_dataset_free(&ds);
}

static void test_resume_equality(void **state) {
    (void)state;
    check_resume(103, 10, false, 14); /* epoch 1, mid-epoch */
    check_resume(103, 10, false, 11); /* right after the epoch-end 0 */
    check_resume(103, 10, true, 7);
    check_resume(103, 10, false, 0); /* before anything */
    check_resume(5, 64, false, 3);   /* batch larger than the dataset */
}

static void test_state_errors(void **state) {
    (void)state;
    ns_dataset ds = make_ds(50);
    ns_loader *ld = ns_loader_new(&ds, 8, true, 1, false);
    ns_loader_state st = ns_loader_get_state(ld), bad;
    assert_int_equal(st.n, 50);
    assert_int_equal(st.batch_size, 8);
    assert_int_equal(st.seed, 1);

    bad = st, bad.n = 51;
    assert_false(ns_loader_set_state(ld, &bad, err, sizeof err));
    assert_contains(err, "dataset of 51 samples, this loader has 50");
    bad = st, bad.batch_size = 16;
    assert_false(ns_loader_set_state(ld, &bad, err, sizeof err));
    assert_contains(err, "batch size 16, this loader uses 8");
    bad = st, bad.shuffle = false;
    assert_false(ns_loader_set_state(ld, &bad, err, sizeof err));
    assert_contains(err, "shuffle=0 drop_last=0, this loader has shuffle=1 drop_last=0");
    bad = st, bad.drop_last = true;
    assert_false(ns_loader_set_state(ld, &bad, err, sizeof err));
    assert_contains(err, "drop_last=1");
    bad = st, bad.position = 51;
    assert_false(ns_loader_set_state(ld, &bad, err, sizeof err));
    assert_contains(err, "position 51 is outside the epoch");
    ns_loader_state now = ns_loader_get_state(ld);
    assert_state_equal(&now, &st); /* unchanged by the failures */

    char text[200];
    ns_loader_state big = {
        .seed = UINT64_MAX, .epoch = 7, .position = 3, .n = 50, .batch_size = 8, .shuffle = true};
    ns_loader_state_format(&big, text, sizeof text);
    assert_string_equal(text, "seed=18446744073709551615 epoch=7 position=3 n=50 batch_size=8 "
                              "shuffle=1 drop_last=0");
    assert_true(ns_loader_state_parse(text, &st, err, sizeof err));
    assert_state_equal(&st, &big);

    static const char *const bad_texts[] = {
        "",
        "seed=1 epoch=2 position=3 n=4 batch_size=2",
        "seed=1 epoch=2 position=3 n=4 batch_size=0 shuffle=1 drop_last=0",
        "seed=1 epoch=2 position=-3 n=4 batch_size=2 shuffle=1 drop_last=0",
        "seed=1 epoch=2 position=3 n=4 batch_size=2 shuffle=1 drop_last=0 ",
        "seed=1 epoch=2 position=3 n=4 batch_size=2 shuffle=1 drop_last=0x",
        "seed=1 epoch=2 position=3 n=4 batch_size=2 shuffle=2 drop_last=0",
        "seed=18446744073709551616 epoch=2 position=3 n=4 batch_size=2 shuffle=1 drop_last=0",
        "epoch=2 seed=1 position=3 n=4 batch_size=2 shuffle=1 drop_last=0",
        "seed= 1 epoch=2 position=3 n=4 batch_size=2 shuffle=1 drop_last=0",
    };
    for (size_t i = 0; i < sizeof bad_texts / sizeof *bad_texts; i++) {
        if (ns_loader_state_parse(bad_texts[i], &st, err, sizeof err))
            fail_msg("accepted '%s'", bad_texts[i]);
        assert_contains(err, "invalid loader state");
    }
    ns_loader_free(ld);
    ns_dataset_free(&ds);
}

static void test_slice(void **state) {
    (void)state;
    ns_dataset ds = make_ds(20), val;
    ns_dataset_slice(&ds, 15, 20, &val);
    assert_int_equal(val.n, 5);
    assert_false(val.owned);
    ns_loader *ld = ns_loader_new(&val, 5, false, 0, false);
    int64_t ids[8];
    assert_int_equal(next_ids(ld, ids), 5);
    for (int i = 0; i < 5; i++) assert_int_equal(ids[i], 15 + i);
    ns_loader_free(ld);
    ns_dataset_free(&val); /* frees nothing */
    assert_true(ds.images[19 * R * C] == 19.0f);
    ns_dataset_free(&ds);
}

/* ---- the real data set ------------------------------------------------------------------ */

static void test_real_fashion_mnist(void **state) {
    (void)state;
    ns_dataset tr, te;
    if (!ns_fashion_mnist_load(NULL, true, 0.2860f, 0.3530f, &tr, err, sizeof err))
        fail_msg("%s", err);
    if (!ns_fashion_mnist_load(NULL, false, 0.2860f, 0.3530f, &te, err, sizeof err))
        fail_msg("%s", err);
    assert_int_equal(tr.n, 60000);
    assert_int_equal(te.n, 10000);
    assert_int_equal(tr.rows, 28);
    assert_int_equal(tr.cols, 28);
    int64_t counts[10] = {0};
    for (int64_t i = 0; i < tr.n; i++) {
        assert_in_range(tr.labels[i], 0, 9);
        counts[tr.labels[i]]++;
    }
    for (int c = 0; c < 10; c++) assert_int_equal(counts[c], 6000); /* balanced classes */
    for (int64_t i = 0; i < te.n; i++) assert_in_range(te.labels[i], 0, 9);
    /* normalised pixel mean over the training set is about 0 (0.2860 is the dataset mean) */
    double sum = 0;
    int64_t total = tr.n * 28 * 28;
    for (int64_t i = 0; i < total; i++) sum += tr.images[i];
    double m = sum / (double)total;
    assert_true(m > -0.01 && m < 0.01);
    ns_dataset_free(&tr);
    ns_dataset_free(&te);
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "--fashion") == 0) {
        char p[600];
        snprintf(p, sizeof p, "%s/train-images-idx3-ubyte.gz", ns_fashion_mnist_dir());
        if (access(p, R_OK) != 0) {
            printf("skip: Fashion-MNIST not found at %s (apt-get install dataset-fashion-mnist)\n",
                   ns_fashion_mnist_dir());
            return 77;
        }
        const struct CMUnitTest real[] = {cmocka_unit_test(test_real_fashion_mnist)};
        return cmocka_run_group_tests(real, NULL, NULL);
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dataset_normalised),
        cmocka_unit_test(test_dataset_count_mismatch),
        cmocka_unit_test(test_dataset_label_range),
        cmocka_unit_test(test_dataset_wrong_ranks),
        cmocka_unit_test(test_fashion_dir_and_env),
        cmocka_unit_test(test_sequential_batches),
        cmocka_unit_test(test_shuffle_pinned),
        cmocka_unit_test(test_shuffle_properties),
        cmocka_unit_test(test_resume_equality),
        cmocka_unit_test(test_state_errors),
        cmocka_unit_test(test_slice),
    };
    return cmocka_run_group_tests(tests, setup_dir, teardown_dir);
}
