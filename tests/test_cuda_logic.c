/* CPU unit tests of the CUDA backend's plain-C logic (kernels/): the caching allocator's
 * bookkeeping over a fake backing allocator, the launch plans (grid sizes, tails, warp rows,
 * transpose tiles, multi-tensor chunks, act_stats splits), the GEMM row-major -> column-major
 * mapping, and the per-element functions the kernels run, each swept over every index on the
 * CPU and compared bit for bit with the CPU backend (src/ops_cpu.c, src/optim_cpu.c).
 * Runs in every build, with or without CUDA. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "alloc_logic.h"
#include "backend.h"
#include "elem.h"
#include "launch.h"
#include "nnscope.h"

/* ------------------------------------------------------------------ helpers */

static uint64_t g_rng = 0x1234567;
static float frand(float lo, float hi) {
    g_rng = g_rng * 6364136223846793005ull + 1442695040888963407ull;
    return lo + (hi - lo) * (float)(g_rng >> 40) * (1.0f / 16777216.0f);
}
static float *rand_vec(int64_t n, float lo, float hi) {
    float *v = malloc(sizeof(float) * (size_t)(n ? n : 1));
    assert_non_null(v);
    for (int64_t i = 0; i < n; i++) v[i] = frand(lo, hi);
    return v;
}
static float *dup_vec(const float *v, int64_t n) {
    float *d = malloc(sizeof(float) * (size_t)(n ? n : 1));
    assert_non_null(d);
    memcpy(d, v, sizeof(float) * (size_t)n);
    return d;
}
/* Bitwise equality (NaN == NaN when the bits agree). */
static void assert_same_bits(const float *a, const float *b, int64_t n, const char *what) {
    for (int64_t i = 0; i < n; i++)
        if (memcmp(&a[i], &b[i], 4))
            fail_msg("%s: element %lld differs: %.9g vs %.9g", what, (long long)i, (double)a[i],
                     (double)b[i]);
}
static const ns_backend *cpu(void) {
    return &ns_cpu_backend;
}

/* ------------------------------------------------------------------ allocator: fake backing */

typedef struct {
    int64_t allocs, frees, outstanding;
    size_t bytes, budget; /* budget 0: unlimited */
} fake;

/* The allocator passes class sizes; the fake remembers each block's size to track bytes. */
typedef struct {
    void *p;
    size_t n;
} rec;
static rec g_recs[4096];
static int g_nrecs;

static void *fake_alloc(size_t bytes, void *ud) {
    fake *f = ud;
    if (f->budget && f->bytes + bytes > f->budget) return NULL;
    void *p = malloc(bytes);
    if (!p) return NULL;
    memset(p, 0xAB, bytes < 64 ? bytes : 64);
    assert_true(g_nrecs < 4096);
    g_recs[g_nrecs++] = (rec){p, bytes};
    f->allocs++;
    f->outstanding++;
    f->bytes += bytes;
    return p;
}
static void fake_free(void *p, void *ud) {
    fake *f = ud;
    for (int i = 0; i < g_nrecs; i++)
        if (g_recs[i].p == p) {
            f->bytes -= g_recs[i].n;
            g_recs[i] = g_recs[--g_nrecs];
            f->frees++;
            f->outstanding--;
            free(p);
            return;
        }
    fail_msg("fake_free: unknown pointer %p", p);
}

static ns_alloc *fake_new(fake *f) {
    memset(f, 0, sizeof *f);
    g_nrecs = 0;
    ns_alloc_backing be = {fake_alloc, fake_free, f};
    ns_alloc *a = ns_alloc_new(&be);
    assert_non_null(a);
    return a;
}

/* Size classes: 512-byte steps up to 1 MiB, then quarter-octave steps; indices are dense,
 * monotone and in range; the slack is bounded. */
static void test_alloc_size_classes(void **state) {
    (void)state;
    assert_int_equal(ns_alloc_class_size(0), 512);
    assert_int_equal(ns_alloc_class_size(1), 512);
    assert_int_equal(ns_alloc_class_size(512), 512);
    assert_int_equal(ns_alloc_class_size(513), 1024);
    assert_int_equal(ns_alloc_class_size(1 << 20), 1 << 20);
    assert_int_equal(ns_alloc_class_size((1 << 20) + 1), (1 << 20) + (1 << 18));
    assert_int_equal(ns_alloc_class_size(3 << 20), 3 << 20);
    assert_int_equal(ns_alloc_class_size((3 << 20) + 1), (7 << 19));
    assert_int_equal(ns_alloc_class_size((size_t)1 << 33), (size_t)1 << 33);
    assert_int_equal(ns_alloc_class_index(1), 0);
    assert_int_equal(ns_alloc_class_index(1 << 20), 2047);
    assert_int_equal(ns_alloc_class_index((1 << 20) + 1), 2048);
    assert_int_equal(ns_alloc_class_index(2 << 20), 2051);
    int prev = -1;
    size_t prev_size = 0;
    for (size_t b = 1; b < ((size_t)1 << 40); b = b < 4096 ? b + 97 : b + b / 7 + 1) {
        size_t s = ns_alloc_class_size(b);
        int idx = ns_alloc_class_index(b);
        assert_true(s >= b);
        assert_true(s <= b + b / 4 + 512);
        assert_true(idx >= 0 && idx < NS_ALLOC_NCLASSES);
        assert_true(s % 512 == 0);
        assert_true(idx >= prev);
        if (idx == prev) assert_int_equal(s, prev_size); /* one size per index */
        if (s == prev_size) assert_int_equal(idx, prev);
        prev = idx;
        prev_size = s;
    }
    assert_true(ns_alloc_class_index((size_t)1 << 62) < NS_ALLOC_NCLASSES);
}

/* A training loop allocating the same sizes every step calls the backing allocator only in its
 * first step; in_use returns to zero at every step end; peak and cached are exact. */
static void test_alloc_steady_state(void **state) {
    (void)state;
    fake f;
    ns_alloc *a = fake_new(&f);
    const size_t sizes[] = {128 * 784 * 4, 128 * 256 * 4,  256 * 4, 256 * 4, 128 * 10 * 4, 4, 4,
                            128 * 256 * 4, 1000 * 784 * 4, 3};
    enum { N = sizeof sizes / sizeof sizes[0] };
    size_t total = 0;
    for (int i = 0; i < N; i++) total += ns_alloc_class_size(sizes[i]);
    void *p[N];
    for (int step = 0; step < 5; step++) {
        for (int i = 0; i < N; i++) {
            p[i] = ns_alloc_get(a, sizes[i]);
            assert_non_null(p[i]);
            assert_int_equal(ns_alloc_size_of(a, p[i]), ns_alloc_class_size(sizes[i]));
            memset(p[i], i, sizes[i]); /* the whole request is usable */
        }
        for (int i = 0; i < N; i++)
            for (int j = i + 1; j < N; j++) assert_ptr_not_equal(p[i], p[j]);
        ns_alloc_stats st;
        ns_alloc_get_stats(a, &st);
        assert_int_equal(st.in_use, total);
        assert_int_equal(st.cached, 0);
        for (int i = N - 1; i >= 0; i--) ns_alloc_put(a, p[i]);
        ns_alloc_get_stats(a, &st);
        assert_int_equal(st.in_use, 0);
        assert_int_equal(st.cached, total);
        assert_int_equal(st.peak, total);
        assert_int_equal(st.raw_allocs, N); /* only the first step reached the backing */
        assert_int_equal(st.requests, (uint64_t)N * (step + 1));
        assert_int_equal(st.hits, (uint64_t)N * step);
        assert_int_equal(f.allocs, N);
    }
    ns_alloc_reset_peak(a);
    ns_alloc_stats st;
    ns_alloc_get_stats(a, &st);
    assert_int_equal(st.peak, 0);
    ns_alloc_free_all(a);
    assert_int_equal(f.outstanding, 0);
}

/* Same class -> the block just returned is reused (LIFO); a different class is not. */
static void test_alloc_reuse_by_class(void **state) {
    (void)state;
    fake f;
    ns_alloc *a = fake_new(&f);
    void *x = ns_alloc_get(a, 1000);
    ns_alloc_put(a, x);
    void *y = ns_alloc_get(a, 1024); /* same 1024-byte class */
    assert_ptr_equal(x, y);
    void *z = ns_alloc_get(a, 1025); /* next class: fresh block */
    assert_ptr_not_equal(z, y);
    assert_int_equal(f.allocs, 2);
    assert_int_equal(ns_alloc_size_of(a, z), 1536);
    ns_alloc_put(a, y);
    assert_int_equal(ns_alloc_size_of(a, y), 0); /* free blocks have no live size */
    ns_alloc_put(a, NULL);                       /* no-op */
    ns_alloc_free_all(a);
    assert_int_equal(f.outstanding, 0);
    ns_alloc_free_all(NULL);
}

/* Out of memory: the cache is released and the request retried once; a request that still
 * does not fit returns NULL and leaves the allocator consistent. */
static void test_alloc_oom_releases_cache(void **state) {
    (void)state;
    fake f;
    ns_alloc *a = fake_new(&f);
    f.budget = 8 << 20;
    void *big = ns_alloc_get(a, 6 << 20);
    assert_non_null(big);
    ns_alloc_put(a, big);                   /* cached, class 6 MiB */
    void *other = ns_alloc_get(a, 5 << 20); /* different class: 6+5 > 8 -> release, retry */
    assert_non_null(other);
    ns_alloc_stats st;
    ns_alloc_get_stats(a, &st);
    assert_int_equal(st.oom_retries, 1);
    assert_int_equal(st.cached, 0);
    assert_int_equal(st.raw_frees, 1);
    assert_int_equal(f.outstanding, 1);
    assert_null(ns_alloc_get(a, 4 << 20)); /* 5 + 4 > 8 and nothing cached */
    ns_alloc_get_stats(a, &st);
    assert_int_equal(st.in_use, 5 << 20);
    assert_int_equal(st.requests, 2);
    ns_alloc_put(a, other);
    ns_alloc_free_all(a);
    assert_int_equal(f.outstanding, 0);
}

/* Many blocks (table growth), then release_cached with some blocks still in use, three times
 * over (the backing allocator hands the same addresses out again): the live blocks are still
 * found afterwards, the released ones went back to the backing allocator. */
static void test_alloc_release_keeps_live_blocks(void **state) {
    (void)state;
    fake f;
    ns_alloc *a = fake_new(&f);
    enum { N = 1500 };
    void **p = malloc(sizeof(void *) * N);
    assert_non_null(p);
    for (int cycle = 0; cycle < 3; cycle++) {
        for (int i = 0; i < N; i++) {
            p[i] = ns_alloc_get(a, (size_t)((i + cycle) % 37 + 1) * 700);
            assert_non_null(p[i]);
        }
        for (int i = 0; i < N; i += 2) ns_alloc_put(a, p[i]);
        ns_alloc_release_cached(a);
        ns_alloc_stats st;
        ns_alloc_get_stats(a, &st);
        assert_int_equal(st.cached, 0);
        assert_int_equal(f.outstanding, N / 2);
        for (int i = 1; i < N; i += 2)
            assert_int_equal(ns_alloc_size_of(a, p[i]),
                             ns_alloc_class_size((size_t)((i + cycle) % 37 + 1) * 700));
        for (int i = 1; i < N; i += 2) ns_alloc_put(a, p[i]);
        ns_alloc_get_stats(a, &st);
        assert_int_equal(st.in_use, 0);
        /* reuse from the free lists after the tombstones */
        void *q = ns_alloc_get(a, 700);
        assert_non_null(q);
        assert_int_equal(ns_alloc_size_of(a, q), 1024);
        ns_alloc_put(a, q);
        ns_alloc_release_cached(a);
        assert_int_equal(f.outstanding, 0);
        ns_alloc_get_stats(a, &st);
        assert_int_equal(st.raw_frees, st.raw_allocs);
    }
    ns_alloc_free_all(a);
    assert_int_equal(f.outstanding, 0);
    free(p);
}

/* ------------------------------------------------------------------ launch plans */

/* Emulates the kernels' grid-stride loop: every index in [0, n) visited exactly once. */
static void test_grid_1d_covers_every_index(void **state) {
    (void)state;
    assert_int_equal(ns_grid_1d(0, 256, 8192), 0);
    assert_int_equal(ns_grid_1d(1, 256, 8192), 1);
    assert_int_equal(ns_grid_1d(256, 256, 8192), 1);
    assert_int_equal(ns_grid_1d(257, 256, 8192), 2);
    assert_int_equal(ns_grid_1d((int64_t)1 << 40, 256, 8192), 8192);
    const int64_t ns[] = {1, 255, 256, 257, 8191, 100000, 256 * 64 + 3};
    for (size_t t = 0; t < sizeof ns / sizeof ns[0]; t++) {
        int64_t n = ns[t];
        int blocks = ns_grid_1d(n, 256, 64); /* small cap: exercises the loop */
        unsigned char *seen = calloc((size_t)n, 1);
        assert_non_null(seen);
        for (int b = 0; b < blocks; b++)
            for (int th = 0; th < 256; th++)
                for (int64_t i = (int64_t)b * 256 + th; i < n; i += (int64_t)blocks * 256)
                    seen[i]++;
        for (int64_t i = 0; i < n; i++) assert_int_equal(seen[i], 1);
        free(seen);
    }
}

static void test_warp_rows_plan(void **state) {
    (void)state;
    ns_rows_plan p = ns_plan_warp_rows(0, 256);
    assert_int_equal(p.blocks, 0);
    for (int64_t rows = 1; rows < 100; rows += 7) {
        p = ns_plan_warp_rows(rows, 256);
        assert_int_equal(p.rows_per_block, 8);
        assert_true((int64_t)p.blocks * p.rows_per_block >= rows);
        assert_true((int64_t)(p.blocks - 1) * p.rows_per_block < rows);
    }
}

/* The transpose kernel's tiling, emulated (including the grid.y cap loop), equals the CPU's
 * transpose, plain and accumulating. */
static void emulate_transpose(const float *x, float *y, int64_t rows, int64_t cols, bool acc) {
    int gx, gy;
    ns_plan_transpose(rows, cols, &gx, &gy);
    for (int bx = 0; bx < gx; bx++)
        for (int by = 0; by < gy; by++)
            for (int64_t r0 = (int64_t)by * NS_TILE; r0 < rows; r0 += (int64_t)gy * NS_TILE)
                for (int j = 0; j < NS_TILE; j++)
                    for (int tx = 0; tx < NS_TILE; tx++) {
                        int64_t c = (int64_t)bx * NS_TILE + j, r = r0 + tx;
                        if (r < rows && c < cols) {
                            if (acc)
                                y[c * rows + r] += x[r * cols + c];
                            else
                                y[c * rows + r] = x[r * cols + c];
                        }
                    }
}

static void test_transpose_tiles(void **state) {
    (void)state;
    const int64_t shapes[][2] = {{1, 1}, {33, 65}, {64, 32}, {7, 1000}, {65535 * 32 + 40, 1}};
    for (size_t t = 0; t < sizeof shapes / sizeof shapes[0]; t++) {
        int64_t r = shapes[t][0], c = shapes[t][1], n = r * c;
        float *x = rand_vec(n, -1, 1), *y0 = rand_vec(n, -1, 1), *y1 = dup_vec(y0, n);
        for (int acc = 0; acc < 2; acc++) {
            cpu()->transpose(x, y0, r, c, acc);
            emulate_transpose(x, y1, r, c, acc);
            assert_same_bits(y0, y1, n, "transpose");
        }
        int gx, gy;
        ns_plan_transpose(r, c, &gx, &gy);
        assert_true(gy <= 65535);
        free(x);
        free(y0);
        free(y1);
    }
}

/* Column-major reference GEMM (what cuBLAS computes) fed with ns_gemm_to_colmajor's arguments
 * gives the row-major result of the CPU backend, for every transpose combination. */
static void colmajor_gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha,
                          const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                          float *C, int64_t ldc) {
    for (int64_t j = 0; j < N; j++)
        for (int64_t i = 0; i < M; i++) {
            double s = 0;
            for (int64_t l = 0; l < K; l++) {
                float a = ta ? A[l + i * lda] : A[i + l * lda];
                float b = tb ? B[j + l * ldb] : B[l + j * ldb];
                s += (double)a * b;
            }
            C[i + j * ldc] = (float)(alpha * s + beta * C[i + j * ldc]);
        }
}

static void test_gemm_colmajor_mapping(void **state) {
    (void)state;
    const int64_t dims[][3] = {{3, 5, 7}, {1, 9, 4}, {16, 1, 3}, {13, 11, 1}};
    for (size_t d = 0; d < sizeof dims / sizeof dims[0]; d++)
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++) {
                int64_t m = dims[d][0], n = dims[d][1], k = dims[d][2];
                float *a = rand_vec(m * k, -1, 1), *b = rand_vec(k * n, -1, 1);
                float *c0 = rand_vec(m * n, -1, 1), *c1 = dup_vec(c0, m * n);
                cpu()->gemm(ta, tb, m, n, k, 0.75f, a, b, 0.5f, c0);
                ns_gemm_cm g = ns_gemm_to_colmajor(ta, tb, m, n, k);
                assert_int_equal(g.M, n);
                assert_int_equal(g.N, m);
                colmajor_gemm(g.trans_first, g.trans_second, g.M, g.N, g.K, 0.75f, b, g.ld_first, a,
                              g.ld_second, 0.5f, c1, g.ldc);
                for (int64_t i = 0; i < m * n; i++) assert_float_equal(c0[i], c1[i], 1e-5);
                free(a);
                free(b);
                free(c0);
                free(c1);
            }
}

/* Chunks cover each active, non-empty tensor exactly once, in order, a tensor's chunks
 * consecutive; skipped tensors get none. */
static void test_multi_tensor_plan(void **state) {
    (void)state;
    const int64_t lens[] = {0, 1, 8192, 8193, 100000, 5, 3 * 8192, 7};
    const bool active[] = {true, true, true, true, false, true, true, true};
    enum { N = sizeof lens / sizeof lens[0] };
    int64_t count = ns_mt_count(N, lens, active, NS_MT_CHUNK);
    assert_int_equal(count, 0 + 1 + 1 + 2 + 0 + 1 + 3 + 1);
    assert_int_equal(ns_mt_count(N, lens, NULL, NS_MT_CHUNK), count + 13);
    ns_mt_chunk *ch = malloc(sizeof *ch * (size_t)count);
    int32_t first[N], nch[N];
    assert_int_equal(ns_mt_plan(N, lens, active, NS_MT_CHUNK, ch, first, nch), count);
    for (int i = 0; i < N; i++) {
        if (!active[i] || !lens[i]) {
            assert_int_equal(nch[i], 0);
            continue;
        }
        int64_t next = 0;
        for (int c = first[i]; c < first[i] + nch[i]; c++) {
            assert_int_equal(ch[c].slot, i);
            assert_int_equal(ch[c].start, next);
            assert_true(ch[c].len >= 1 && ch[c].len <= NS_MT_CHUNK);
            next += ch[c].len;
        }
        assert_int_equal(next, lens[i]);
    }
    free(ch);
}

static void test_act_stats_plan(void **state) {
    (void)state;
    const int64_t rows[] = {0, 1, 127, 128, 129, 4096, 60000, 10000000};
    for (size_t t = 0; t < sizeof rows / sizeof rows[0]; t++) {
        ns_act_plan p = ns_plan_act_stats(rows[t], 70);
        assert_int_equal(p.gx, 3);
        assert_true(p.gy >= 1 && p.gy <= NS_ACT_MAX_SPLITS);
        int64_t r = rows[t] > 0 ? rows[t] : 1;
        assert_true((int64_t)p.gy * p.rows_per_split >= r);
        assert_true((int64_t)(p.gy - 1) * p.rows_per_split < r);
    }
    assert_int_equal(ns_plan_act_stats(10, 0).gx, 0);
}

/* ns_k_pool_range returns exactly the outputs whose windows contain the input position. */
static void test_pool_range(void **state) {
    (void)state;
    for (int64_t k = 1; k <= 5; k++)
        for (int64_t s = 1; s <= 3; s++)
            for (int64_t pad = 0; pad <= k / 2; pad++)
                for (int64_t in = k; in <= 9; in++) {
                    int64_t nout = (in + 2 * pad - k) / s + 1;
                    for (int64_t i = 0; i < in; i++) {
                        int64_t lo, hi;
                        ns_k_pool_range(i, k, s, pad, nout, &lo, &hi);
                        for (int64_t o = 0; o < nout; o++) {
                            bool inside = o * s - pad <= i && i <= o * s - pad + k - 1;
                            assert_int_equal(inside, o >= lo && o < hi);
                        }
                    }
                }
}

/* ------------------------------------------------------------------ element math vs the CPU */

static void test_enum_values_match_backend(void **state) {
    (void)state;
    assert_int_equal(NS_K_BIN_ADD, NS_BIN_ADD);
    assert_int_equal(NS_K_BIN_SUB, NS_BIN_SUB);
    assert_int_equal(NS_K_BIN_MUL, NS_BIN_MUL);
    assert_int_equal(NS_K_UN_RELU, NS_UN_RELU);
    assert_int_equal(NS_K_UN_LEAKY_RELU, NS_UN_LEAKY_RELU);
    assert_int_equal(NS_K_UN_GELU, NS_UN_GELU);
    assert_int_equal(NS_K_UN_TANH, NS_UN_TANH);
    assert_int_equal(NS_K_UN_SIGMOID, NS_UN_SIGMOID);
}

/* The device copy of the counter-based generator draws the engine's numbers. */
static void test_rng_matches_engine(void **state) {
    (void)state;
    const uint64_t seeds[] = {0, 1, 42, 0xFFFFFFFFFFFFFFFFull, 0x9E3779B97F4A7C15ull};
    for (size_t s = 0; s < sizeof seeds / sizeof seeds[0]; s++)
        for (uint64_t c = 0; c < 200000; c += 1 + c / 3) {
            float a = ns_k_uniform(seeds[s], c), b = ns_rng_uniform(seeds[s], c);
            assert_memory_equal(&a, &b, 4);
            float e = ns_k_uniform(seeds[s], UINT64_MAX - c),
                  f = ns_rng_uniform(seeds[s], UINT64_MAX - c);
            assert_memory_equal(&e, &f, 4);
        }
}

static void test_dropout_mask_matches_cpu(void **state) {
    (void)state;
    int64_t n = 10007;
    float *x = rand_vec(n, -2, 2), *y0 = rand_vec(n, -1, 1), *y1 = dup_vec(y0, n);
    const float ps[] = {0.1f, 0.3f, 0.5f, 0.9f};
    for (size_t t = 0; t < 4; t++)
        for (int acc = 0; acc < 2; acc++) {
            float p = ps[t], scale = 1.0f / (1.0f - p);
            cpu()->dropout(x, y0, n, p, 77, 1000 * t, acc);
            for (int64_t i = 0; i < n; i++) {
                float v = x[i] * ns_k_dropout_keep(77, 1000 * t, i, p, scale);
                y1[i] = acc ? y1[i] + v : v;
            }
            assert_same_bits(y0, y1, n, "dropout");
        }
    free(x);
    free(y0);
    free(y1);
}

/* Inputs with the special values every elementwise op must agree on. */
static float *special_vec(int64_t n) {
    float *v = rand_vec(n, -6, 6);
    const float sp[] = {0.0f,   -0.0f,    1e-30f,    -1e-30f, 30.0f, -30.0f, 1e30f,
                        -1e30f, INFINITY, -INFINITY, NAN,     1.0f,  -1.0f};
    for (size_t i = 0; i < sizeof sp / sizeof sp[0] && (int64_t)i < n; i++) v[i] = sp[i];
    return v;
}

static void test_elementwise_matches_cpu(void **state) {
    (void)state;
    int64_t n = 4099;
    float *a = special_vec(n), *b = rand_vec(n, -3, 3), *gy = rand_vec(n, -1, 1);
    float *y0 = malloc(sizeof(float) * (size_t)n), *y1 = malloc(sizeof(float) * (size_t)n);
    for (int op = NS_BIN_ADD; op <= NS_BIN_MUL; op++) {
        cpu()->binary(op, a, b, y0, n);
        for (int64_t i = 0; i < n; i++) y1[i] = ns_k_binary(op, a[i], b[i]);
        assert_same_bits(y0, y1, n, "binary");
    }
    for (int op = NS_UN_RELU; op <= NS_UN_SIGMOID; op++) {
        cpu()->unary(op, a, y0, n, 0.01f);
        for (int64_t i = 0; i < n; i++) y1[i] = ns_k_unary(op, a[i], 0.01f);
        assert_same_bits(y0, y1, n, "unary");
        float *out = dup_vec(y0, n);
        float *g0 = rand_vec(n, -1, 1), *g1 = dup_vec(g0, n);
        cpu()->unary_bwd_acc(op, a, out, gy, g0, n, 0.01f);
        for (int64_t i = 0; i < n; i++) g1[i] += ns_k_unary_grad(op, a[i], out[i], gy[i], 0.01f);
        assert_same_bits(g0, g1, n, "unary_bwd_acc");
        free(out);
        free(g0);
        free(g1);
    }
    free(a);
    free(b);
    free(gy);
    free(y0);
    free(y1);
}

/* bias_add, expand_acc, reduce (inner > 1, bitwise), copy_blocks (acc) index math. */
static void test_broadcast_index_math(void **state) {
    (void)state;
    const int64_t shapes[][3] = {{1, 5, 1}, {3, 4, 7}, {2, 1, 9}, {5, 3, 2}};
    for (size_t t = 0; t < sizeof shapes / sizeof shapes[0]; t++) {
        int64_t o = shapes[t][0], l = shapes[t][1], in = shapes[t][2], n = o * l * in;
        float *x = rand_vec(n, -1, 1), *b = rand_vec(l, -1, 1);
        float *y0 = malloc(sizeof(float) * (size_t)n), *y1 = malloc(sizeof(float) * (size_t)n);
        cpu()->bias_add(x, b, y0, o, l, in);
        for (int64_t i = 0; i < n; i++) y1[i] = x[i] + b[ns_k_channel(i, l, in)];
        assert_same_bits(y0, y1, n, "bias_add");

        float *gy = rand_vec(o * in, -1, 1);
        float *g0 = rand_vec(n, -1, 1), *g1 = dup_vec(g0, n);
        cpu()->expand_acc(gy, g0, o, l, in, 0.25f);
        for (int64_t i = 0; i < n; i++) g1[i] += 0.25f * gy[ns_k_expand_src(i, l, in)];
        assert_same_bits(g0, g1, n, "expand_acc");

        if (in > 1) {
            float *r0 = malloc(sizeof(float) * (size_t)(o * in)),
                  *r1 = malloc(sizeof(float) * (size_t)(o * in));
            cpu()->reduce(x, r0, o, l, in, 0.5f);
            for (int64_t i = 0; i < o * in; i++) r1[i] = ns_k_reduce_inner(x, i, l, in, 0.5f);
            assert_same_bits(r0, r1, o * in, "reduce");
            free(r0);
            free(r1);
        }

        /* copy_blocks: (rows=o, len=in) out of rows of stride l*in into rows of stride in+3 */
        int64_t ss = l * in, ds = in + 3;
        float *d0 = rand_vec(o * ds, -1, 1), *d1 = dup_vec(d0, o * ds);
        cpu()->copy_blocks(x, ss, d0, ds, o, in, true);
        for (int64_t i = 0; i < o * in; i++) {
            int64_t s, d;
            ns_k_block_offsets(i, in, ss, ds, &s, &d);
            d1[d] += x[s];
        }
        assert_same_bits(d0, d1, o * ds, "copy_blocks");
        free(x);
        free(b);
        free(y0);
        free(y1);
        free(gy);
        free(g0);
        free(g1);
        free(d0);
        free(d1);
    }
}

static void test_bn_apply_matches_cpu(void **state) {
    (void)state;
    int64_t o = 3, c = 5, in = 4, n = o * c * in;
    float *x = rand_vec(n, -2, 2), *mean = rand_vec(c, -1, 1), *is = rand_vec(c, 0.5f, 2);
    float *gamma = rand_vec(c, 0.5f, 1.5f), *beta = rand_vec(c, -1, 1);
    float *y0 = malloc(sizeof(float) * (size_t)n), *y1 = malloc(sizeof(float) * (size_t)n);
    for (int affine = 0; affine < 2; affine++) {
        const float *g = affine ? gamma : NULL, *bt = affine ? beta : NULL;
        cpu()->bn_apply(x, mean, is, g, bt, y0, o, c, in);
        for (int64_t i = 0; i < n; i++) y1[i] = ns_k_bn_apply(x, mean, is, g, bt, i, c, in);
        assert_same_bits(y0, y1, n, "bn_apply");
    }
    free(x);
    free(mean);
    free(is);
    free(gamma);
    free(beta);
    free(y0);
    free(y1);
}

/* im2col and the col2im gather over several geometries (stride, padding, odd sizes). */
static void test_im2col_col2im_match_cpu(void **state) {
    (void)state;
    const int64_t geo[][5] = {/* cin, h, w, k, stride; pad from 0 to k/2 */
                              {1, 5, 5, 3, 1}, {2, 7, 6, 3, 2}, {3, 8, 8, 5, 3},
                              {2, 4, 9, 1, 1}, {1, 6, 6, 2, 2}, {2, 9, 7, 4, 3}};
    for (size_t t = 0; t < sizeof geo / sizeof geo[0]; t++)
        for (int64_t pad = 0; pad <= geo[t][3] / 2; pad++) {
            ns_k_conv_geom g = {geo[t][0], geo[t][1], geo[t][2], geo[t][3], geo[t][4], pad, 0, 0};
            g.ho = (g.h + 2 * pad - g.k) / g.stride + 1;
            g.wo = (g.w + 2 * pad - g.k) / g.stride + 1;
            int64_t nx = g.cin * g.h * g.w, ncol = g.cin * g.k * g.k * g.ho * g.wo;
            float *x = rand_vec(nx, -1, 1);
            float *c0 = malloc(sizeof(float) * (size_t)ncol),
                  *c1 = malloc(sizeof(float) * (size_t)ncol);
            cpu()->im2col(x, c0, g.cin, g.h, g.w, g.k, g.stride, pad, g.ho, g.wo);
            for (int64_t i = 0; i < ncol; i++) c1[i] = ns_k_im2col(x, i, g);
            assert_same_bits(c0, c1, ncol, "im2col");
            float *gx0 = rand_vec(nx, -1, 1), *gx1 = dup_vec(gx0, nx);
            cpu()->col2im_acc(c0, gx0, g.cin, g.h, g.w, g.k, g.stride, pad, g.ho, g.wo);
            for (int64_t i = 0; i < nx; i++) gx1[i] = ns_k_col2im(c0, gx1[i], i, g);
            assert_same_bits(gx0, gx1, nx, "col2im_acc");
            free(x);
            free(c0);
            free(c1);
            free(gx0);
            free(gx1);
        }
}

static void test_pooling_matches_cpu(void **state) {
    (void)state;
    const int64_t geo[][4] = {
        /* h, w, k, stride */ {4, 4, 2, 2}, {7, 5, 3, 2}, {6, 6, 3, 1}, {9, 8, 4, 3}, {5, 5, 5, 1}};
    int64_t planes = 3;
    for (size_t t = 0; t < sizeof geo / sizeof geo[0]; t++)
        for (int64_t pad = 0; pad <= geo[t][2] / 2; pad++) {
            ns_k_pool_geom g = {geo[t][0], geo[t][1], geo[t][2], geo[t][3], pad, 0, 0};
            g.ho = (g.h + 2 * pad - g.k) / g.stride + 1;
            g.wo = (g.w + 2 * pad - g.k) / g.stride + 1;
            int64_t nx = planes * g.h * g.w, ny = planes * g.ho * g.wo;
            float *x = rand_vec(nx, -1, 1);
            x[3] = NAN;            /* NaN wins in its windows */
            x[nx - 1] = x[nx - 2]; /* ties keep the first */
            float *y0 = malloc(sizeof(float) * (size_t)ny),
                  *y1 = malloc(sizeof(float) * (size_t)ny);
            int32_t *a0 = malloc(sizeof(int32_t) * (size_t)ny),
                    *a1 = malloc(sizeof(int32_t) * (size_t)ny);
            cpu()->max_pool(x, y0, a0, planes, g.h, g.w, g.k, g.stride, pad, g.ho, g.wo);
            for (int64_t i = 0; i < ny; i++) ns_k_max_pool(x, i, g, y1, a1);
            assert_same_bits(y0, y1, ny, "max_pool");
            assert_memory_equal(a0, a1, sizeof(int32_t) * (size_t)ny);

            float *gy = rand_vec(ny, -1, 1), *gx0 = rand_vec(nx, -1, 1), *gx1 = dup_vec(gx0, nx);
            cpu()->max_pool_bwd_acc(gy, a0, gx0, planes, g.h * g.w, g.ho * g.wo);
            for (int64_t p = 0; p < planes; p++)
                ns_k_max_pool_bwd_plane(gy, a1, gx1, p, g.h * g.w, g.ho * g.wo);
            assert_same_bits(gx0, gx1, nx, "max_pool_bwd_acc");

            x[3] = 0.5f;
            cpu()->avg_pool(x, y0, planes, g.h, g.w, g.k, g.stride, pad, g.ho, g.wo);
            for (int64_t i = 0; i < ny; i++) y1[i] = ns_k_avg_pool(x, i, g);
            assert_same_bits(y0, y1, ny, "avg_pool");
            cpu()->avg_pool_bwd_acc(gy, gx0, planes, g.h, g.w, g.k, g.stride, pad, g.ho, g.wo);
            for (int64_t i = 0; i < nx; i++) gx1[i] = ns_k_avg_pool_bwd(gy, gx1[i], i, g);
            assert_same_bits(gx0, gx1, nx, "avg_pool_bwd_acc");
            free(x);
            free(y0);
            free(y1);
            free(a0);
            free(a1);
            free(gy);
            free(gx0);
            free(gx1);
        }
}

/* ------------------------------------------------------------------ fused optimizers vs the CPU */

#define OPT_N 5000

typedef struct {
    float *w, *g, *s1, *s2;
} opt_bufs;

static opt_bufs opt_make(bool bad) {
    opt_bufs b = {rand_vec(OPT_N, -1, 1), rand_vec(OPT_N, -0.1f, 0.1f),
                  rand_vec(OPT_N, -0.01f, 0.01f), rand_vec(OPT_N, 0, 0.001f)};
    if (bad) {
        b.g[17] = NAN;
        b.g[4000] = INFINITY;
    }
    return b;
}
static opt_bufs opt_dup(opt_bufs a) {
    opt_bufs b = {dup_vec(a.w, OPT_N), dup_vec(a.g, OPT_N), dup_vec(a.s1, OPT_N),
                  dup_vec(a.s2, OPT_N)};
    return b;
}
static void opt_free(opt_bufs b) {
    free(b.w);
    free(b.g);
    free(b.s1);
    free(b.s2);
}
static void check_stats(const double *cpu_st, const double *st) {
    for (int k = 0; k < 3; k++) {
        if (!isfinite(cpu_st[k])) {
            assert_false(isfinite(st[k]));
            continue;
        }
        assert_true(fabs(cpu_st[k] - st[k]) <= 1e-5 * fabs(cpu_st[k]) + 1e-30);
    }
    assert_int_equal((int64_t)cpu_st[3], (int64_t)st[3]);
}

/* Every SGD variant (momentum, dampening, nesterov, first step, weight decay): the element
 * function updates weights and momentum buffers bit for bit like ns_cpu_sgd_step; its
 * statistics agree to summation order; non-finite counts are exact. */
static void test_sgd_elem_matches_cpu(void **state) {
    (void)state;
    for (int variant = 0; variant < 32; variant++) {
        float momentum = (variant & 1) ? 0.9f : 0.0f, damp = (variant & 2) ? 0.1f : 0.0f;
        bool nesterov = (variant & 4) && momentum != 0.0f && damp == 0.0f, first = variant & 8;
        float wd = (variant & 16) ? 1e-2f : 0.0f;
        opt_bufs c = opt_make(variant == 31), k = opt_dup(c);
        ns_optim_slot slot = {c.w, c.g, c.s1, NULL, OPT_N, 0.05f, wd};
        double cpu_st[4], st[4] = {0, 0, 0, 0};
        cpu()->sgd_step(1, &slot, momentum, damp, nesterov, first, cpu_st);
        ns_k_sgd a = {momentum,
                      1.0f - damp,
                      0.05f,
                      wd,
                      nesterov && momentum != 0.0f,
                      first && momentum != 0.0f,
                      momentum != 0.0f,
                      wd != 0.0f};
        for (int64_t i = 0; i < OPT_N; i++) {
            float out[3];
            st[3] += ns_k_sgd_elem(&a, k.w, k.s1, k.g, i, out);
            st[0] += out[0];
            st[1] += out[1];
            st[2] += out[2];
        }
        assert_same_bits(c.w, k.w, OPT_N, "sgd weights");
        assert_same_bits(c.s1, k.s1, OPT_N, "sgd momentum buffer");
        check_stats(cpu_st, st);
        opt_free(c);
        opt_free(k);
    }
}

/* Adam and AdamW, with and without weight decay, at steps 1 and 10. */
static void test_adam_elem_matches_cpu(void **state) {
    (void)state;
    for (int variant = 0; variant < 8; variant++) {
        bool decoupled = variant & 1, bad = variant == 7;
        float wd = (variant & 2) ? 0.01f : 0.0f;
        int t = (variant & 4) ? 10 : 1;
        float bc1 = (float)(1.0 - pow(0.9, t)), bc2 = (float)(1.0 - pow(0.999, t));
        opt_bufs c = opt_make(bad), k = opt_dup(c);
        ns_optim_slot slot = {c.w, c.g, c.s1, c.s2, OPT_N, 1e-3f, wd};
        double cpu_st[4], st[4] = {0, 0, 0, 0};
        cpu()->adam_step(1, &slot, 0.9f, 0.999f, 1e-8f, decoupled, bc1, bc2, cpu_st);
        ns_k_adam a = ns_k_adam_args(0.9f, 0.999f, 1e-8f, decoupled, bc1, sqrtf(bc2), 1e-3f, wd);
        for (int64_t i = 0; i < OPT_N; i++) {
            float out[3];
            st[3] += ns_k_adam_elem(&a, k.w, k.s1, k.s2, k.g, i, out);
            st[0] += out[0];
            st[1] += out[1];
            st[2] += out[2];
        }
        assert_same_bits(c.w, k.w, OPT_N, "adam weights");
        assert_same_bits(c.s1, k.s1, OPT_N, "adam exp_avg");
        assert_same_bits(c.s2, k.s2, OPT_N, "adam exp_avg_sq");
        check_stats(cpu_st, st);
        opt_free(c);
        opt_free(k);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_alloc_size_classes),
        cmocka_unit_test(test_alloc_steady_state),
        cmocka_unit_test(test_alloc_reuse_by_class),
        cmocka_unit_test(test_alloc_oom_releases_cache),
        cmocka_unit_test(test_alloc_release_keeps_live_blocks),
        cmocka_unit_test(test_grid_1d_covers_every_index),
        cmocka_unit_test(test_warp_rows_plan),
        cmocka_unit_test(test_transpose_tiles),
        cmocka_unit_test(test_gemm_colmajor_mapping),
        cmocka_unit_test(test_multi_tensor_plan),
        cmocka_unit_test(test_act_stats_plan),
        cmocka_unit_test(test_pool_range),
        cmocka_unit_test(test_enum_values_match_backend),
        cmocka_unit_test(test_rng_matches_engine),
        cmocka_unit_test(test_dropout_mask_matches_cpu),
        cmocka_unit_test(test_elementwise_matches_cpu),
        cmocka_unit_test(test_broadcast_index_math),
        cmocka_unit_test(test_bn_apply_matches_cpu),
        cmocka_unit_test(test_im2col_col2im_match_cpu),
        cmocka_unit_test(test_pooling_matches_cpu),
        cmocka_unit_test(test_sgd_elem_matches_cpu),
        cmocka_unit_test(test_adam_elem_matches_cpu),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
