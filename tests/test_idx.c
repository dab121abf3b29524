/* idx(.gz) reader: round trips on generated files and every malformed case. */
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
#include <unistd.h>
#include <zlib.h>

#define IO_TEST_PREFIX "nsidx"
#include "io_test_util.h"

static void write_gz(const char *path, const void *b, size_t n) {
    gzFile f = gzopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(gzwrite(f, b, (unsigned)n), (int)n);
    assert_int_equal(gzclose(f), Z_OK);
}

/* Builds an idx file image: magic, big-endian dims, then `payload` bytes of a pattern.
 * Returns the malloc'd buffer; *len gets its size. */
static uint8_t *make_idx(uint8_t type, int ndim, const uint32_t *dims, size_t payload,
                         size_t *len) {
    *len = 4 + 4 * (size_t)ndim + payload;
    uint8_t *b = malloc(*len);
    assert_non_null(b);
    b[0] = 0, b[1] = 0, b[2] = type, b[3] = (uint8_t)ndim;
    for (int i = 0; i < ndim; i++) {
        b[4 + 4 * i] = (uint8_t)(dims[i] >> 24);
        b[5 + 4 * i] = (uint8_t)(dims[i] >> 16);
        b[6 + 4 * i] = (uint8_t)(dims[i] >> 8);
        b[7 + 4 * i] = (uint8_t)dims[i];
    }
    for (size_t i = 0; i < payload; i++) b[4 + 4 * (size_t)ndim + i] = (uint8_t)(i * 37 + 11);
    return b;
}

static void check_round_trip(bool gz, int ndim, const uint32_t *dims) {
    size_t numel = 1;
    for (int i = 0; i < ndim; i++) numel *= dims[i];
    size_t len;
    uint8_t *b = make_idx(0x08, ndim, dims, numel, &len);
    const char *p = path_of(gz ? "rt.gz" : "rt.raw");
    if (gz) {
        write_gz(p, b, len);
    } else {
        write_raw(p, b, len);
    }
    ns_idx idx;
    bool ok = ns_idx_load(p, &idx, err, sizeof err);
    if (!ok) fail_msg("%s", err);
    assert_int_equal(idx.ndim, ndim);
    for (int i = 0; i < ndim; i++) assert_int_equal(idx.dims[i], dims[i]);
    for (int i = ndim; i < NS_IO_MAX_DIMS; i++) assert_int_equal(idx.dims[i], 0);
    assert_int_equal(idx.numel, numel);
    assert_memory_equal(idx.data, b + 4 + 4 * ndim, numel);
    ns_idx_free(&idx);
    assert_null(idx.data);
    free(b);
}

static void test_round_trip_raw(void **state) {
    (void)state;
    uint32_t d3[] = {5, 3, 4}, d1[] = {17}, d4[] = {2, 3, 4, 5};
    check_round_trip(false, 3, d3);
    check_round_trip(false, 1, d1);
    check_round_trip(false, 4, d4);
}

static void test_round_trip_gz(void **state) {
    (void)state;
    uint32_t d3[] = {100, 28, 28}, d1[] = {100}, d2[] = {7, 9};
    check_round_trip(true, 3, d3);
    check_round_trip(true, 1, d1);
    check_round_trip(true, 2, d2);
}

/* A payload above the loader's first 1 MiB chunk exercises the growing buffer. */
static void test_round_trip_large_gz(void **state) {
    (void)state;
    uint32_t d[] = {3000, 28, 28};
    check_round_trip(true, 3, d);
}

/* Writes bytes to name (raw), loads it, expects failure and returns the message. */
static const char *load_fails(const char *name, const void *b, size_t n, bool gz) {
    const char *p = path_of(name);
    if (gz) {
        write_gz(p, b, n);
    } else {
        write_raw(p, b, n);
    }
    ns_idx idx;
    memset(&idx, 0x5a, sizeof idx);
    err[0] = '\0';
    assert_false(ns_idx_load(p, &idx, err, sizeof err));
    assert_int_equal(idx.ndim, 0);
    assert_null(idx.data);
    assert_contains(err, p); /* every message names the file */
    return err;
}

static void test_missing_file(void **state) {
    (void)state;
    ns_idx idx;
    const char *p = path_of("does-not-exist.gz");
    assert_false(ns_idx_load(p, &idx, err, sizeof err));
    assert_contains(err, p);
    assert_contains(err, "No such file");
}

static void test_short_magic(void **state) {
    (void)state;
    assert_contains(load_fails("empty", "", 0, false), "shorter than the 4-byte magic");
    assert_contains(load_fails("three", "\0\0\x08", 3, false), "3 bytes");
    assert_contains(load_fails("three.gz", "\0\0\x08", 3, true), "3 bytes");
}

static void test_bad_magic(void **state) {
    (void)state;
    uint32_t d[] = {4};
    size_t len;
    uint8_t *b = make_idx(0x08, 1, d, 4, &len);
    b[0] = 0x89;
    assert_contains(load_fails("badmagic", b, len, false), "not an idx file");
    const char *text = "hello, this is a text file\n";
    assert_contains(load_fails("text", text, strlen(text), false), "not an idx file");
    free(b);
}

static void test_unsupported_type(void **state) {
    (void)state;
    uint32_t d[] = {4};
    size_t len;
    uint8_t *b = make_idx(0x0D, 1, d, 16, &len);
    const char *m = load_fails("float", b, len, false);
    assert_contains(m, "0x0d");
    assert_contains(m, "float32");
    free(b);
}

static void test_bad_ndim(void **state) {
    (void)state;
    uint32_t d[] = {1, 1, 1, 1, 1};
    size_t len;
    uint8_t *b = make_idx(0x08, 0, d, 0, &len);
    assert_contains(load_fails("ndim0", b, len, false), "0 dimensions");
    free(b);
    b = make_idx(0x08, 5, d, 1, &len);
    assert_contains(load_fails("ndim5", b, len, false), "5 dimensions");
    free(b);
}

static void test_truncated_dims(void **state) {
    (void)state;
    uint32_t d[] = {2, 3, 4};
    size_t len;
    uint8_t *b = make_idx(0x08, 3, d, 24, &len);
    const char *m = load_fails("dims", b, 10, false); /* magic + 1.5 dims */
    assert_contains(m, "truncated idx header");
    assert_contains(m, "need 16 bytes, file has 10");
    free(b);
}

static void test_zero_dim(void **state) {
    (void)state;
    uint32_t d[] = {3, 0};
    size_t len;
    uint8_t *b = make_idx(0x08, 2, d, 0, &len);
    assert_contains(load_fails("zerodim", b, len, false), "dimension 1 is 0");
    free(b);
}

static void test_huge_dims(void **state) {
    (void)state;
    uint32_t d[] = {0xFFFFFFFFu, 0xFFFFFFFFu, 0xFFFFFFFFu};
    size_t len;
    uint8_t *b = make_idx(0x08, 3, d, 8, &len);
    assert_contains(load_fails("huge", b, len, false), "describe more than");
    free(b);
}

/* A header that claims ~100 MB over a 20-byte payload: refused as truncated, without the
 * reader trusting the claim (the buffer grows only as data arrives). */
static void test_lying_header(void **state) {
    (void)state;
    uint32_t d[] = {100000, 1000};
    size_t len;
    uint8_t *b = make_idx(0x08, 2, d, 20, &len);
    const char *m = load_fails("liar", b, len, false);
    assert_contains(m, "needs 100000000 payload bytes");
    assert_contains(m, "file has 20 (32 in all)");
    free(b);
}

static void test_truncated_payload(void **state) {
    (void)state;
    uint32_t d[] = {5, 3, 4};
    size_t len;
    uint8_t *b = make_idx(0x08, 3, d, 60, &len);
    const char *m = load_fails("trunc", b, len - 1, false);
    assert_contains(m, "truncated idx file");
    assert_contains(m, "shape 5x3x4 needs 60 payload bytes (76 in all), file has 59 (75 in all)");
    m = load_fails("trunc.gz", b, len - 7, true);
    assert_contains(m, "needs 60 payload bytes (76 in all), file has 53 (69 in all)");
    free(b);
}

static void test_trailing_data(void **state) {
    (void)state;
    uint32_t d[] = {5, 3, 4};
    size_t len;
    uint8_t *b = make_idx(0x08, 3, d, 63, &len); /* 3 bytes too many */
    const char *m = load_fails("trail", b, len, false);
    assert_contains(m, "trailing data");
    assert_contains(m, "needs 60 payload bytes (76 in all), file has 63 (79 in all)");
    m = load_fails("trail.gz", b, len, true);
    assert_contains(m, "file has 63 (79 in all)");
    free(b);
}

/* Writes a gzip file, then cuts its last `cut` bytes off. */
static void write_gz_cut(const char *path, const uint8_t *b, size_t n, size_t cut) {
    write_gz(path, b, n);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    uint8_t buf[8192];
    size_t got = fread(buf, 1, sizeof buf, f);
    fclose(f);
    assert_true(got > cut && got < sizeof buf);
    write_raw(path, buf, got - cut);
}

static void test_gzip_cut_short(void **state) {
    (void)state;
    uint32_t d[] = {10, 10};
    size_t len;
    uint8_t *b = make_idx(0x08, 2, d, 100, &len);
    ns_idx idx;
    /* Only the 8-byte trailer (CRC, size) is missing: the payload is complete. */
    const char *p = path_of("cut8.gz");
    write_gz_cut(p, b, len, 4);
    assert_false(ns_idx_load(p, &idx, err, sizeof err));
    assert_contains(err, p);
    assert_contains(err, "gzip");
    /* Deflate data missing too. */
    p = path_of("cut40.gz");
    write_gz_cut(p, b, len, 40);
    assert_false(ns_idx_load(p, &idx, err, sizeof err));
    assert_contains(err, p);
    free(b);
}

static void test_gzip_corrupt(void **state) {
    (void)state;
    uint32_t d[] = {10, 10};
    size_t len;
    uint8_t *b = make_idx(0x08, 2, d, 100, &len);
    const char *p = path_of("corrupt.gz");
    write_gz(p, b, len);
    FILE *f = fopen(p, "rb");
    uint8_t buf[8192];
    size_t got = fread(buf, 1, sizeof buf, f);
    fclose(f);
    buf[got - 6] ^= 0xFF; /* inside the CRC-32 trailer */
    write_raw(p, buf, got);
    ns_idx idx;
    assert_false(ns_idx_load(p, &idx, err, sizeof err));
    assert_contains(err, p);
    assert_contains(err, "read error");
    free(b);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_raw),      cmocka_unit_test(test_round_trip_gz),
        cmocka_unit_test(test_round_trip_large_gz), cmocka_unit_test(test_missing_file),
        cmocka_unit_test(test_short_magic),         cmocka_unit_test(test_bad_magic),
        cmocka_unit_test(test_unsupported_type),    cmocka_unit_test(test_bad_ndim),
        cmocka_unit_test(test_truncated_dims),      cmocka_unit_test(test_zero_dim),
        cmocka_unit_test(test_huge_dims),           cmocka_unit_test(test_lying_header),
        cmocka_unit_test(test_truncated_payload),   cmocka_unit_test(test_trailing_data),
        cmocka_unit_test(test_gzip_cut_short),      cmocka_unit_test(test_gzip_corrupt),
    };
    return cmocka_run_group_tests(tests, setup_dir, teardown_dir);
}
