/* Launch configuration and index planning of the CUDA kernels, in plain C.
 *
 * Everything here is a small pure function compiled both by nvcc (host side of kernels/ *.cu files)
 * and by the C compiler (tests/test_cuda_logic.c), so the grid sizes, tail handling, GEMM
 * argument mapping and multi-tensor chunk tables the GPU uses are unit-tested on the CPU.
 * Nothing here touches CUDA. */
#ifndef NS_CUDA_LAUNCH_H
#define NS_CUDA_LAUNCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __CUDACC__
#define NS_HD __host__ __device__
#else
#define NS_HD
#endif

/* Threads per block of the elementwise kernels, and the grid cap: beyond it the kernels loop
 * (grid-stride), so any n is covered with at most NS_CUDA_MAX_BLOCKS blocks. */
#define NS_CUDA_BLOCK 256
#define NS_CUDA_MAX_BLOCKS 8192
/* Elements per block of the multi-tensor kernels (optimizer updates, norms). */
#define NS_MT_CHUNK 8192
/* act_stats: a block covers NS_ACT_COLS consecutive columns and NS_ACT_LANES row lanes; rows
 * are split across grid.y so a thread handles about NS_ACT_ROWS_PER_THREAD rows. */
#define NS_ACT_COLS 32
#define NS_ACT_LANES 8
#define NS_ACT_ROWS_PER_THREAD 16
#define NS_ACT_MAX_SPLITS 1024

/* ceil(a / b) for a >= 0, b > 0. */
NS_HD static inline int64_t ns_cdiv(int64_t a, int64_t b) {
    return (a + b - 1) / b;
}

/* Blocks for a grid-stride loop over n items with `block` threads: 0 when n == 0 (no launch),
 * else min(ceil(n / block), max_blocks). */
static inline int ns_grid_1d(int64_t n, int block, int max_blocks) {
    if (n <= 0) return 0;
    int64_t b = ns_cdiv(n, block);
    return b > max_blocks ? max_blocks : (int)b;
}

/* Warp-per-row kernels (softmax family, cross-entropy): rows handled by each block and the
 * number of blocks (0 when rows == 0). threads must be a multiple of 32. */
typedef struct {
    int blocks, threads, rows_per_block;
} ns_rows_plan;

static inline ns_rows_plan ns_plan_warp_rows(int64_t rows, int threads) {
    ns_rows_plan p;
    p.threads = threads;
    p.rows_per_block = threads / 32;
    p.blocks = rows <= 0 ? 0 : (int)ns_cdiv(rows, p.rows_per_block);
    return p;
}

/* Tiled transpose of a (rows, cols) matrix with 32x32 tiles: grid.x over column tiles, grid.y
 * over row tiles (grid.y is limited to 65535, so rows beyond 65535 tiles loop in-kernel). */
#define NS_TILE 32
static inline void ns_plan_transpose(int64_t rows, int64_t cols, int *gx, int *gy) {
    int64_t tx = ns_cdiv(cols, NS_TILE), ty = ns_cdiv(rows, NS_TILE);
    *gx = (int)tx;
    *gy = (int)(ty > 65535 ? 65535 : ty);
}

/* ------------------------------------------------------------------ GEMM mapping
 * The table's GEMM is row-major: C(m,n) = alpha op(A) op(B) + beta C. cuBLAS is column-major;
 * a row-major (r,c) matrix is the column-major (c,r) matrix, so C^T = op(B)^T op(A)^T is
 * computed: cuBLAS's first operand is B, its second A, and its (M,N,K) are (n,m,k). */
typedef struct {
    bool trans_first, trans_second; /* op of B, op of A */
    int64_t M, N, K;                /* cuBLAS dimensions: n, m, k */
    int64_t ld_first, ld_second, ldc;
} ns_gemm_cm;

static inline ns_gemm_cm ns_gemm_to_colmajor(bool trans_a, bool trans_b, int64_t m, int64_t n,
                                             int64_t k) {
    ns_gemm_cm g;
    g.trans_first = trans_b;
    g.trans_second = trans_a;
    g.M = n;
    g.N = m;
    g.K = k;
    g.ld_first = trans_b ? k : n;  /* B stored (n,k) row-major if transposed, else (k,n) */
    g.ld_second = trans_a ? m : k; /* A stored (k,m) row-major if transposed, else (m,k) */
    g.ldc = n;
    return g;
}

/* ------------------------------------------------------------------ multi-tensor chunks
 * One launch updates (or measures) many tensors: the host lists chunks of at most chunk
 * elements, each chunk one block. A tensor's chunks are consecutive; its first chunk index and
 * count let the last block to finish reduce that tensor's per-chunk partial sums in order
 * (deterministic results, one launch). */
typedef struct {
    int32_t slot; /* tensor index */
    int32_t len;  /* elements in this chunk (1..chunk) */
    int64_t start;
} ns_mt_chunk;

/* Number of chunks for tensors of lengths lens[0..n) (active[i] == false or lens[i] == 0: none). */
static inline int64_t ns_mt_count(int n, const int64_t *lens, const bool *active, int64_t chunk) {
    int64_t total = 0;
    for (int i = 0; i < n; i++)
        if ((!active || active[i]) && lens[i] > 0) total += ns_cdiv(lens[i], chunk);
    return total;
}

/* Fills out[0..count) (count = ns_mt_count(...)) and, per tensor, first[i] (index of its first
 * chunk) and nchunks[i] (0 for skipped tensors). Returns count. */
static inline int64_t ns_mt_plan(int n, const int64_t *lens, const bool *active, int64_t chunk,
                                 ns_mt_chunk *out, int32_t *first, int32_t *nchunks) {
    int64_t c = 0;
    for (int i = 0; i < n; i++) {
        first[i] = (int32_t)c;
        nchunks[i] = 0;
        if ((active && !active[i]) || lens[i] <= 0) continue;
        for (int64_t s = 0; s < lens[i]; s += chunk) {
            out[c].slot = i;
            out[c].start = s;
            out[c].len = (int32_t)(lens[i] - s < chunk ? lens[i] - s : chunk);
            c++;
            nchunks[i]++;
        }
    }
    return c;
}

/* ------------------------------------------------------------------ act_stats plan
 * x viewed as (rows, cols) with cols = feat * inner. grid.x covers NS_ACT_COLS columns per
 * block; grid.y splits the rows into `splits` ranges of rows_per_split rows. */
typedef struct {
    int gx, gy;
    int64_t rows_per_split;
} ns_act_plan;

static inline ns_act_plan ns_plan_act_stats(int64_t rows, int64_t cols) {
    ns_act_plan p;
    p.gx = cols <= 0 ? 0 : (int)ns_cdiv(cols, NS_ACT_COLS);
    int64_t want = ns_cdiv(rows > 0 ? rows : 1, (int64_t)NS_ACT_LANES * NS_ACT_ROWS_PER_THREAD);
    if (want > NS_ACT_MAX_SPLITS) want = NS_ACT_MAX_SPLITS;
    if (want < 1) want = 1;
    p.rows_per_split = ns_cdiv(rows > 0 ? rows : 1, want);
    p.gy = (int)ns_cdiv(rows > 0 ? rows : 1, p.rows_per_split);
    return p;
}

#endif
