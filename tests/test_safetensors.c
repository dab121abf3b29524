/* safetensors: round trips, the reference writer's exact layout, atomic writes, every malformed
 * file the reader must reject, and a fuzz loop of truncations and byte flips.
 *
 * Also a helper for tests/data/st_interop.py (cross-checks against Python):
 *   test_safetensors --write-sample PATH   writes the sample file (same recipe as the script)
 *   test_safetensors --dump PATH           prints a file's content: "T <name hex> <ndim> <dims>
 *                                          : <float bits hex>..." and "M <key hex> <value hex>"
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "nnscope/io.h"

#include <dirent.h>
#include <ftw.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#define IO_TEST_PREFIX "nsst"
#include "io_test_util.h"

/* Reads a whole file; *n gets its size. Caller frees. */
static uint8_t *read_bytes(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc((size_t)len + 1);
    assert_non_null(b);
    assert_int_equal(fread(b, 1, (size_t)len, f), (size_t)len);
    fclose(f);
    *n = (size_t)len;
    return b;
}

static uint32_t bits_of(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static float float_of(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* ---- the sample shared with tests/data/st_interop.py ----------------------------------- */

static float s_weight[12], s_bias[3], s_scalar[1], s_x4[8], s_name[1];
static const char *const s_meta_keys[] = {"format", "epoch", "note"};
static const char *const s_meta_vals[] = {"pt", "3",
                                          "quote\" backslash\\ tab\t newline\n \xc3\xbc"};

/* Fills ts[6] with the sample tensors, deliberately not in name order. */
static void sample(ns_st_tensor ts[6]) {
    for (int k = 0; k < 12; k++) s_weight[k] = (float)(k - 5) * 0.375f;
    s_bias[0] = -0.0f, s_bias[1] = float_of(1), s_bias[2] = 3.4028235e38f;
    s_scalar[0] = 7.0f;
    for (int k = 0; k < 8; k++) s_x4[k] = 1.0f / (float)(k + 1);
    s_name[0] = INFINITY;
    ts[0] = (ns_st_tensor){"layer.weight", 2, {3, 4}, s_weight};
    ts[1] = (ns_st_tensor){"layer.bias", 1, {3}, s_bias};
    ts[2] = (ns_st_tensor){"bn.num_batches", 0, {0}, s_scalar};
    ts[3] = (ns_st_tensor){"empty", 2, {0, 3}, NULL};
    ts[4] = (ns_st_tensor){"x4", 4, {2, 1, 2, 2}, s_x4};
    ts[5] = (ns_st_tensor){"n\xc3\xa4me", 1, {1}, s_name};
}

static void hex(FILE *out, const char *s) {
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) fprintf(out, "%02x", *p);
    if (!*s) fprintf(out, "-");
}

static int tool_main(int argc, char **argv) {
    char e[512];
    if (argc == 3 && strcmp(argv[1], "--write-sample") == 0) {
        ns_st_tensor ts[6];
        sample(ts);
        if (!ns_safetensors_write(argv[2], ts, 6, s_meta_keys, s_meta_vals, 3, e, sizeof e)) {
            fprintf(stderr, "%s\n", e);
            return 1;
        }
        return 0;
    }
    if (argc == 3 && strcmp(argv[1], "--dump") == 0) {
        ns_st_file f;
        if (!ns_safetensors_read(argv[2], &f, e, sizeof e)) {
            fprintf(stderr, "%s\n", e);
            return 1;
        }
        for (int i = 0; i < f.n; i++) {
            const ns_st_tensor *t = &f.tensors[i];
            printf("T ");
            hex(stdout, t->name);
            printf(" %d", t->ndim);
            for (int d = 0; d < t->ndim; d++) printf(" %lld", (long long)t->shape[d]);
            printf(" :");
            for (int64_t k = 0; k < ns_st_numel(t); k++) printf(" %08x", bits_of(t->data[k]));
            printf("\n");
        }
        for (int i = 0; i < f.n_meta; i++) {
            printf("M ");
            hex(stdout, f.meta_keys[i]);
            printf(" ");
            hex(stdout, f.meta_vals[i]);
            printf("\n");
        }
        ns_st_file_free(&f);
        return 0;
    }
    fprintf(stderr, "usage: %s [--write-sample PATH | --dump PATH]\n", argv[0]);
    return 2;
}

/* ---- round trips and layout ------------------------------------------------------------- */

static void test_round_trip_with_metadata(void **state) {
    (void)state;
    ns_st_tensor ts[6];
    sample(ts);
    const char *p = path_of("rt.safetensors");
    if (!ns_safetensors_write(p, ts, 6, s_meta_keys, s_meta_vals, 3, err, sizeof err))
        fail_msg("%s", err);
    ns_st_file f;
    if (!ns_safetensors_read(p, &f, err, sizeof err)) fail_msg("%s", err);
    assert_int_equal(f.n, 6);
    /* file order is name order (the reference writer's sort) */
    static const char *const order[] = {"bn.num_batches", "empty",       "layer.bias",
                                        "layer.weight",   "n\xc3\xa4me", "x4"};
    for (int i = 0; i < 6; i++) assert_string_equal(f.tensors[i].name, order[i]);
    for (int i = 0; i < 6; i++) {
        const ns_st_tensor *t = ns_st_find(&f, ts[i].name);
        assert_non_null(t);
        assert_int_equal(t->ndim, ts[i].ndim);
        for (int d = 0; d < t->ndim; d++) assert_int_equal(t->shape[d], ts[i].shape[d]);
        assert_int_equal(ns_st_numel(t), ns_st_numel(&ts[i]));
        assert_true(((uintptr_t)t->data & 3) == 0);
        for (int64_t k = 0; k < ns_st_numel(t); k++)
            assert_int_equal(bits_of(t->data[k]), bits_of(ts[i].data[k])); /* bit-exact */
    }
    assert_int_equal(ns_st_numel(ns_st_find(&f, "bn.num_batches")), 1);
    assert_int_equal(ns_st_numel(ns_st_find(&f, "empty")), 0);
    assert_null(ns_st_find(&f, "missing"));
    assert_int_equal(f.n_meta, 3);
    assert_string_equal(f.meta_keys[0], "epoch"); /* sorted */
    assert_string_equal(f.meta_keys[1], "format");
    assert_string_equal(f.meta_keys[2], "note");
    assert_string_equal(ns_st_meta(&f, "epoch"), "3");
    assert_string_equal(ns_st_meta(&f, "note"), s_meta_vals[2]);
    assert_null(ns_st_meta(&f, "nope"));
    ns_st_file_free(&f);
    assert_null(f.tensors);
    ns_st_file_free(&f); /* twice is harmless */
}

/* The header is byte-for-byte what the reference writer produces. */
static void test_reference_layout(void **state) {
    (void)state;
    float a[2] = {1.0f, -2.0f}, b[1] = {0.5f};
    ns_st_tensor ts[2] = {{"z", 1, {2}, a}, {"a\"b", 0, {0}, b}};
    const char *k[] = {"k"}, *v[] = {"v\x01"};
    const char *p = path_of("layout.safetensors");
    assert_true(ns_safetensors_write(p, ts, 2, k, v, 1, err, sizeof err));
    size_t n;
    uint8_t *bytes = read_bytes(p, &n);
    const char *want = "{\"__metadata__\":{\"k\":\"v\\u0001\"},"
                       "\"a\\\"b\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]},"
                       "\"z\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}";
    size_t wl = strlen(want), hl = (wl + 7) / 8 * 8;
    assert_int_equal(n, 8 + hl + 12);
    uint64_t len = 0;
    for (int i = 7; i >= 0; i--) len = (len << 8) | bytes[i];
    assert_int_equal(len, hl);
    assert_memory_equal(bytes + 8, want, wl);
    for (size_t i = wl; i < hl; i++) assert_int_equal(bytes[8 + i], ' ');
    static const uint8_t data[12] = {0, 0, 0, 0x3f, 0, 0, 0x80, 0x3f, 0, 0, 0, 0xc0}; /* LE */
    assert_memory_equal(bytes + 8 + hl, data, 12);
    free(bytes);

    /* no tensors, no metadata: "{}" padded to 8 */
    p = path_of("empty.safetensors");
    assert_true(ns_safetensors_write(p, NULL, 0, NULL, NULL, 0, err, sizeof err));
    bytes = read_bytes(p, &n);
    assert_int_equal(n, 16);
    assert_memory_equal(bytes, "\x08\0\0\0\0\0\0\0{}      ", 16);
    free(bytes);
    ns_st_file f;
    assert_true(ns_safetensors_read(p, &f, err, sizeof err));
    assert_int_equal(f.n, 0);
    assert_int_equal(f.n_meta, 0);
    ns_st_file_free(&f);
}

/* ---- writer errors and atomicity --------------------------------------------------------- */

/* No leftover temporary files in the test folder. */
static void assert_no_temp_files(void) {
    DIR *d = opendir(tmpdir);
    assert_non_null(d);
    struct dirent *e;
    while ((e = readdir(d)))
        if (strstr(e->d_name, ".tmp-")) fail_msg("temporary file left behind: %s", e->d_name);
    closedir(d);
}

static void test_write_errors(void **state) {
    (void)state;
    float a[4] = {1, 2, 3, 4};
    const char *p = path_of("werr.safetensors");
    ns_st_tensor dup[2] = {{"w", 1, {4}, a}, {"w", 1, {2}, a}};
    assert_false(ns_safetensors_write(p, dup, 2, NULL, NULL, 0, err, sizeof err));
    assert_contains(err, p);
    assert_contains(err, "duplicate tensor name 'w'");
    ns_st_tensor one[1] = {{"w", 5, {1, 1, 1, 1}, a}};
    assert_false(ns_safetensors_write(p, one, 1, NULL, NULL, 0, err, sizeof err));
    assert_contains(err, "'w' has 5 dimensions");
    one[0] = (ns_st_tensor){"w", 2, {2, -2}, a};
    assert_false(ns_safetensors_write(p, one, 1, NULL, NULL, 0, err, sizeof err));
    assert_contains(err, "negative dimension -2");
    one[0] = (ns_st_tensor){"__metadata__", 1, {4}, a};
    assert_false(ns_safetensors_write(p, one, 1, NULL, NULL, 0, err, sizeof err));
    assert_contains(err, "reserved");
    one[0] = (ns_st_tensor){"bad\xff", 1, {4}, a};
    assert_false(ns_safetensors_write(p, one, 1, NULL, NULL, 0, err, sizeof err));
    assert_contains(err, "not valid UTF-8");
    one[0] = (ns_st_tensor){"w", 1, {4}, a};
    const char *k[] = {"a", "a"}, *v[] = {"1", "2"};
    assert_false(ns_safetensors_write(p, one, 1, k, v, 2, err, sizeof err));
    assert_contains(err, "duplicate metadata key 'a'");
    assert_int_equal(access(p, F_OK), -1); /* nothing was created */

    assert_false(ns_safetensors_write(path_of("no/such/dir.safetensors"), one, 1, NULL, NULL, 0,
                                      err, sizeof err));
    assert_contains(err, "no/such/dir.safetensors");
    assert_contains(err, "No such file or directory");
    assert_no_temp_files();
}

/* A write that fails half way (here: the file-size limit, standing in for a full disk) reports
 * the path and errno text and leaves the previous file exactly as it was. */
static void test_failed_write_keeps_old_file(void **state) {
    (void)state;
    const char *p = path_of("keep.safetensors");
    float small[4] = {1, 2, 3, 4};
    ns_st_tensor one = {"w", 1, {4}, small};
    assert_true(ns_safetensors_write(p, &one, 1, NULL, NULL, 0, err, sizeof err));
    size_t n0;
    uint8_t *before = read_bytes(p, &n0);

    enum { BIG = 100000 };
    float *big = calloc(BIG, sizeof(float));
    assert_non_null(big);
    ns_st_tensor large = {"w", 1, {BIG}, big};
    struct rlimit old, lim;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    lim = old;
    lim.rlim_cur = 65536;
    void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    bool ok = ns_safetensors_write(p, &large, 1, NULL, NULL, 0, err, sizeof err);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    signal(SIGXFSZ, prev);
    assert_false(ok);
    assert_contains(err, p);
    assert_contains(err, "write failed: File too large");

    size_t n1;
    uint8_t *after = read_bytes(p, &n1);
    assert_int_equal(n0, n1);
    assert_memory_equal(before, after, n0);
    assert_no_temp_files();

    /* renaming over a folder fails too: the folder stays, the temporary file goes */
    const char *d = path_of("adir.safetensors");
    assert_int_equal(mkdir(d, 0755), 0);
    assert_false(ns_safetensors_write(d, &one, 1, NULL, NULL, 0, err, sizeof err));
    assert_contains(err, d);
    assert_contains(err, "Is a directory");
    assert_no_temp_files();
    rmdir(d);
    free(before);
    free(after);
    free(big);
}

/* ---- malformed files ------------------------------------------------------------------- */

/* Writes 8-byte length + header + data_len bytes of data (length = strlen(header) unless
 * hlen_override >= 0). */
static const char *make_file(const char *name, const char *header, size_t data_len,
                             int64_t hlen_override) {
    size_t hl = strlen(header);
    size_t n = 8 + hl + data_len;
    uint8_t *b = calloc(1, n);
    assert_non_null(b);
    uint64_t len = hlen_override >= 0 ? (uint64_t)hlen_override : hl;
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)(len >> (8 * i));
    memcpy(b + 8, header, hl);
    for (size_t i = 0; i < data_len; i++) b[8 + hl + i] = (uint8_t)i;
    const char *p = path_of(name);
    write_raw(p, b, n);
    free(b);
    return p;
}

static void expect_reject(const char *p, const char *what) {
    ns_st_file f;
    memset(&f, 0x5a, sizeof f);
    err[0] = '\0';
    if (ns_safetensors_read(p, &f, err, sizeof err)) fail_msg("accepted %s (%s)", p, what);
    assert_int_equal(f.n, 0);
    assert_null(f.tensors);
    assert_contains(err, p);
    assert_contains(err, what);
}

static void expect_accept(const char *p) {
    ns_st_file f;
    if (!ns_safetensors_read(p, &f, err, sizeof err)) fail_msg("rejected %s: %s", p, err);
    ns_st_file_free(&f);
}

#define T(name, extra) "\"" name "\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":" extra "}"

static void test_reject_not_safetensors(void **state) {
    (void)state;
    ns_st_file f;
    assert_false(ns_safetensors_read(path_of("missing.safetensors"), &f, err, sizeof err));
    assert_contains(err, "missing.safetensors: cannot open: No such file or directory");

    write_raw(path_of("zero"), "", 0);
    expect_reject(path_of("zero"), "0 bytes, less than the 8-byte header length");
    write_raw(path_of("five"), "\x02\0\0\0\0", 5);
    expect_reject(path_of("five"), "5 bytes");

    static const uint8_t png[] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0,    0,    0,
                                  13,   'I', 'H', 'D', 'R',  0,    0,    0,    1,    0,    0,
                                  0,    1,   8,   6,   0,    0,    0,    0x1f, 0x15, 0xc4, 0x89};
    write_raw(path_of("image.png"), png, sizeof png);
    expect_reject(path_of("image.png"), "not a safetensors file");
    const char *text = "This is a text file, not tensors.\nSecond line.\n";
    write_raw(path_of("notes.txt"), text, strlen(text));
    expect_reject(path_of("notes.txt"), "not a safetensors file");
    expect_reject(tmpdir, "not a regular file");

    /* a small length whose header is not JSON */
    expect_reject(make_file("bracket", "[1, 2, 3]      ", 0, -1), "does not start with '{'");
    expect_reject(make_file("emptyhdr", "", 4, -1), "does not start with '{'");
}

static void test_reject_header_length(void **state) {
    (void)state;
    expect_reject(make_file("huge", "{}", 0, 200000000), "over the 100 MB limit");
    expect_reject(make_file("huge2", "{}", 0, 100000001), "over the 100 MB limit");
    expect_reject(make_file("long", "{}      ", 16, 1000),
                  "header length 1000 but only 24 bytes follow it");
}

static void test_reject_truncated(void **state) {
    (void)state;
    ns_st_tensor ts[6];
    sample(ts);
    const char *p = path_of("full.safetensors");
    assert_true(ns_safetensors_write(p, ts, 6, s_meta_keys, s_meta_vals, 3, err, sizeof err));
    size_t n;
    uint8_t *b = read_bytes(p, &n);
    const char *q = path_of("cut.safetensors");
    write_raw(q, b, n - 1); /* one data byte missing */
    expect_reject(q, "past the end of the");
    write_raw(q, b, 40); /* inside the header */
    expect_reject(q, "truncated or not a safetensors file");
    write_raw(q, b, 7);
    expect_reject(q, "less than the 8-byte header length");
    free(b);
}

static void test_reject_json(void **state) {
    (void)state;
    static const struct {
        const char *header, *what;
    } cases[] = {
        {"{\"a\":", "invalid JSON in safetensors header: unexpected end of input at byte 5"},
        {"{\"w\":{},}", "expected a string key"},
        {"{\"w\":1 \"x\":2}", "expected ',' or '}'"},
        {"{\"w\":[1,2,]}", "unexpected character"},
        {"{\"w\":01}", "leading zero"},
        {"{\"w\":NaN}", "unexpected character"},
        {"{\"w\":-}", "invalid number"},
        {"{\"w\":1.}", "invalid number"},
        {"{\"w\":tru}", "invalid literal"},
        {"{'w':1}", "expected a string key"},
        {"{/*c*/}", "expected a string key"},
        {"{\"w\":\"a\tb\"}", "control character in string"},
        {"{\"w\":\"\\x\"}", "invalid escape"},
        {"{\"w\":\"\\ud800\"}", "lone high surrogate"},
        {"{\"w\":\"\\udc00\"}", "lone low surrogate"},
        {"{\"w\":\"\\ud800\\u0041\"}", "invalid surrogate pair"},
        {"{\"w\":\"\\u12G4\"}", "invalid hex digit"},
        {"{\"w\":\"abc}", "unterminated string"},
        {"{} {}", "unexpected data after the JSON value"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        expect_reject(make_file("json", cases[i].header, 0, -1), cases[i].what);
    char deep[200] = "{\"a\":";
    for (int i = 0; i < 70; i++) strcat(deep, "[");
    for (int i = 0; i < 70; i++) strcat(deep, "]");
    strcat(deep, "}");
    expect_reject(make_file("deep", deep, 0, -1), "nesting too deep");
    expect_reject(make_file("lead", " {}", 0, -1), "does not start with '{'");
    /* 4.2 million values in 8.4 MB: refused before the DOM grows past its cap */
    size_t count = ((size_t)1 << 22) + 10, hl = 8 + 2 * count;
    char *many = malloc(hl + 1);
    assert_non_null(many);
    memcpy(many, "{\"a\":[", 6);
    for (size_t i = 0; i < count; i++) memcpy(many + 6 + 2 * i, "0,", 2);
    memcpy(many + 6 + 2 * count - 1, "]}", 3);
    expect_reject(make_file("many", many, 0, -1), "too many JSON values");
    free(many);
    expect_reject(make_file("utf8", "{\"\xc3\x28\":1}", 0, -1), "not valid UTF-8");
    expect_reject(make_file("utf8b", "{\"\xed\xa0\x80\":1}", 0, -1), "not valid UTF-8");
    expect_reject(make_file("notobj", "{\"w\":[1]}", 0, -1), "not a JSON object");
}

static void test_reject_schema(void **state) {
    (void)state;
    static const struct {
        const char *header;
        size_t data;
        const char *what;
    } cases[] = {
        {"{\"w\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4,
         "tensor 'w' has dtype F16; only F32 tensors are supported"},
        {"{\"w\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[0,8]}}", 8,
         "tensor 'w' has dtype I64"},
        {"{\"w\":{\"dtype\":\"Q7\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1,
         "tensor 'w' has unknown dtype 'Q7'"},
        {"{\"w\":{\"dtype\":7,\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "dtype is not a string"},
        {"{\"w\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1],\"data_offsets\":[0,4]}}", 4,
         "tensor 'w' has 5 dimensions; at most 4"},
        {"{\"w\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4,
         "shape entry 0 is not a non-negative integer"},
        {"{\"w\":{\"dtype\":\"F32\",\"shape\":[1.0],\"data_offsets\":[0,4]}}", 4,
         "shape entry 0 is not a non-negative integer"},
        {"{\"w\":{\"dtype\":\"F32\",\"shape\":\"2\",\"data_offsets\":[0,8]}}", 8,
         "shape is not an array"},
        {"{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,4]}}", 4,
         "shape is too large"},
        {"{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0]}}", 8,
         "data_offsets is not a pair"},
        {"{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8,8]}}", 8,
         "data_offsets is not a pair"},
        {"{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,18446744073709551616]}}", 8,
         "data_offsets is not a pair"},
        {"{\"w\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8, "lacks the field 'data_offsets'"},
        {"{\"w\":{\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "lacks the field 'dtype'"},
        {"{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8],\"x\":1}}", 8,
         "tensor 'w' has unknown field 'x'"},
        {"{\"w\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8,
         "field 'dtype' twice"},
        {"{" T("w", "[0,8]") "," T("w", "[8,16]") "}", 16, "duplicate tensor name 'w'"},
        {"{\"__metadata__\":{\"a\":\"1\",\"a\":\"2\"}}", 0, "duplicate metadata key 'a'"},
        {"{\"__metadata__\":{},\"__metadata__\":{}}", 0, "duplicate '__metadata__'"},
        {"{\"__metadata__\":{\"a\":1}}", 0, "metadata value for 'a' is not a string"},
        {"{\"__metadata__\":[]}", 0, "'__metadata__' is not a JSON object"},
        {"{\"a\\u0000b\":{}}", 0, "NUL character"},
        {"{\"__metadata__\":{\"k\":\"a\\u0000\"}}", 0, "NUL character"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        expect_reject(make_file("schema", cases[i].header, cases[i].data, -1), cases[i].what);
}

static void test_reject_offsets(void **state) {
    (void)state;
    static const struct {
        const char *header;
        size_t data;
        const char *what;
    } cases[] = {
        {"{" T("w", "[0,8]") "}", 4,
         "tensor 'w' has data_offsets [0, 8] past the end of the "
         "4-byte data buffer"},
        {"{" T("w", "[8,0]") "}", 8, "tensor 'w' has reversed data_offsets [8, 0]"},
        {"{" T("w", "[0,12]") "}", 12,
         "tensor 'w' has shape [2] (8 bytes as F32) but data_offsets [0, 12] span 12 bytes"},
        {"{" T("a", "[0,8]") "," T("b", "[4,12]") "}", 12,
         "tensor 'b' data_offsets [4, 12] overlap tensor 'a' [0, 8]"},
        {"{" T("a", "[0,8]") "," T("b", "[0,8]") "}", 8, "overlap"},
        {"{" T("a", "[0,8]") "," T("b", "[12,20]") "}", 20,
         "data bytes [8, 12) belong to no tensor (gap before 'b')"},
        {"{" T("a", "[4,12]") "}", 12, "data bytes [0, 4) belong to no tensor"},
        {"{" T("a", "[0,8]") "}", 12,
         "the data buffer has 12 bytes but the tensors cover 8 (trailing bytes)"},
        {"{}", 4, "the data buffer has 4 bytes but the tensors cover 0"},
        {"{" T("w", "[0,18446744073709551615]") "}", 8, "past the end"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        expect_reject(make_file("offsets", cases[i].header, cases[i].data, -1), cases[i].what);
}

/* What the reference accepts and other writers produce: unpadded or whitespace-padded headers,
 * tensors listed in any order, escapes, zero-size tensors sharing an offset. */
static void test_accept_variants(void **state) {
    (void)state;
    expect_accept(make_file("v1", "{" T("b", "[8,16]") "," T("a", "[0,8]") "}", 16, -1));
    expect_accept(make_file("v2", "{}\n\t\r ", 0, -1));
    expect_accept(make_file("v3",
                            "{ \"__metadata__\" : { } , \"e\" : {\"dtype\":\"F32\",\"shape\":[0],"
                            "\"data_offsets\":[0,0]}, \"f\": {\"dtype\":\"F32\",\"shape\":[3,0],"
                            "\"data_offsets\":[0,0]}}",
                            0, -1));
    const char *p = make_file("v4",
                              "{\"\\ud83d\\ude00\\/\\u00e9\":{\"dtype\":\"F32\",\"shape\":[],"
                              "\"data_offsets\":[0,4]}}",
                              4, -1);
    ns_st_file f;
    if (!ns_safetensors_read(p, &f, err, sizeof err)) fail_msg("%s", err);
    const ns_st_tensor *t = ns_st_find(&f, "\xf0\x9f\x98\x80/\xc3\xa9");
    assert_non_null(t);
    assert_int_equal(t->ndim, 0);
    assert_int_equal(bits_of(t->data[0]), 0x03020100u);
    ns_st_file_free(&f);
}

/* ---- fuzz ---------------------------------------------------------------------------------- */

static uint64_t fuzz_rng = 0x243F6A8885A308D3ull;

static uint64_t fuzz_next(void) {
    fuzz_rng ^= fuzz_rng << 13;
    fuzz_rng ^= fuzz_rng >> 7;
    fuzz_rng ^= fuzz_rng << 17;
    return fuzz_rng;
}

/* Random truncations and byte flips of a valid file never crash or read out of bounds (run
 * under valgrind or ASan to see the latter), and whatever is accepted is self-consistent. */
static void test_fuzz(void **state) {
    (void)state;
    ns_st_tensor ts[6];
    sample(ts);
    const char *p = path_of("fuzz-src.safetensors");
    assert_true(ns_safetensors_write(p, ts, 6, s_meta_keys, s_meta_vals, 3, err, sizeof err));
    size_t n;
    uint8_t *orig = read_bytes(p, &n);
    uint8_t *b = malloc(n);
    const char *q = path_of("fuzz.safetensors");
    int accepted = 0, rejected = 0;
    for (int it = 0; it < 3000; it++) {
        memcpy(b, orig, n);
        size_t len = n;
        int mode = (int)(fuzz_next() % 4);
        if (mode == 0) {
            len = (size_t)(fuzz_next() % n);
        } else {
            int flips = 1 + (int)(fuzz_next() % 4);
            for (int k = 0; k < flips; k++) {
                /* mostly inside the length and header, where the parsing is */
                size_t at =
                    mode == 3 ? (size_t)(fuzz_next() % n) : (size_t)(fuzz_next() % (n - 60));
                b[at] =
                    mode == 1 ? (uint8_t)fuzz_next() : (uint8_t)(b[at] ^ (1u << (fuzz_next() % 8)));
            }
        }
        write_raw(q, b, len);
        ns_st_file f;
        if (ns_safetensors_read(q, &f, err, sizeof err)) {
            accepted++;
            volatile float sink = 0;
            int64_t total = 0;
            for (int i = 0; i < f.n; i++) {
                assert_true(f.tensors[i].ndim >= 0 && f.tensors[i].ndim <= 4);
                int64_t m = ns_st_numel(&f.tensors[i]);
                total += m;
                for (int64_t k = 0; k < m; k++) sink += f.tensors[i].data[k];
            }
            (void)sink; /* the reads are the point: ASan/valgrind see any out-of-bounds one */
            assert_true(8 + total * 4 <= (int64_t)len);
            for (int i = 0; i < f.n_meta; i++) assert_non_null(f.meta_vals[i]);
            ns_st_file_free(&f);
        } else {
            rejected++;
            assert_non_null(strstr(err, q));
        }
    }
    /* flips in data bytes and in JSON whitespace-free spots both occur */
    assert_true(accepted > 100);
    assert_true(rejected > 1000);
    free(b);
    free(orig);
}

int main(int argc, char **argv) {
    if (argc > 1) return tool_main(argc, argv);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_with_metadata),
        cmocka_unit_test(test_reference_layout),
        cmocka_unit_test(test_write_errors),
        cmocka_unit_test(test_failed_write_keeps_old_file),
        cmocka_unit_test(test_reject_not_safetensors),
        cmocka_unit_test(test_reject_header_length),
        cmocka_unit_test(test_reject_truncated),
        cmocka_unit_test(test_reject_json),
        cmocka_unit_test(test_reject_schema),
        cmocka_unit_test(test_reject_offsets),
        cmocka_unit_test(test_accept_variants),
        cmocka_unit_test(test_fuzz),
    };
    return cmocka_run_group_tests(tests, setup_dir, teardown_dir);
}
