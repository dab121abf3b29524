/* Benchmark (not a test): a 784-256-10 MLP forward+backward at batch 128 on one thread, against
 * a plain cblas_sgemm loop of exactly the same GEMM shapes in the same run.
 *
 * Engine step: zero grads, h = relu(linear(x, w1, b1)), logits = linear(h, w2, b2),
 * loss = cross_entropy(logits, y), backward, scope reset. Its GEMMs (row-major, as the engine
 * issues them):
 *   fc1 forward      y1 (128x256) = x (128x784) w1^T
 *   fc2 forward      y2 (128x10)  = h (128x256) w2^T
 *   fc2 input grad   gh (128x256) = gy2 (128x10) w2
 *   fc2 weight grad  gw2 (10x256) += gy2^T h
 *   fc1 weight grad  gw1 (256x784) += gy1^T x       (no input grad for fc1: x needs none)
 * FLOPs per step = sum of 2*M*N*K over these = 2*128*(2*784*256 + 3*256*10) = 104,726,528.
 * Both rates divide that count by the measured time, so the ratio is the share of the step the
 * engine spends outside pure GEMM work (elementwise ops, reductions, bookkeeping).
 *
 * Timing: warm-up, then short alternating rounds of engine and GEMM-only steps; each side reports
 * its best round (the least disturbed by other processes on a shared machine), and the median of
 * the per-round ratios is printed as a cross-check. No assertions on time.
 *   usage: bench_mlp_gemm [iterations per round (default 20)] [rounds (default 15)]
 */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "nnscope.h"

#define N 128
#define IN 784
#define HID 256
#define OUT 10

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static ns_tensor *param(int ndim, const int64_t *shape, float bound) {
    ns_tensor *t = ns_requires_grad(ns_tensor_new(ndim, shape, NS_CPU), true);
    ns_uniform_(t, -bound, bound);
    return t;
}

typedef struct {
    ns_tensor *w1, *b1, *w2, *b2, *x, *y;
} mlp;

static float engine_step(mlp *m) {
    ns_zero_grad(m->w1);
    ns_zero_grad(m->b1);
    ns_zero_grad(m->w2);
    ns_zero_grad(m->b2);
    ns_tensor *h = ns_relu(ns_linear(m->x, m->w1, m->b1));
    ns_tensor *loss = ns_cross_entropy(ns_linear(h, m->w2, m->b2), m->y);
    ns_backward(loss, NULL);
    float l = ns_item(loss);
    ns_scope_reset();
    return l;
}

typedef struct {
    float *x, *w1, *w2, *y1, *y2, *gy2, *gh, *gw1, *gw2;
} gemm_bufs;

static void gemm_step(gemm_bufs *g) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, HID, IN, 1.0f, g->x, IN, g->w1, IN,
                0.0f, g->y1, HID);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, OUT, HID, 1.0f, g->y1, HID, g->w2, HID,
                0.0f, g->y2, OUT);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, HID, OUT, 1.0f, g->gy2, OUT, g->w2,
                HID, 0.0f, g->gh, HID);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, OUT, HID, N, 1.0f, g->gy2, OUT, g->y1, HID,
                1.0f, g->gw2, HID);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, HID, IN, N, 1.0f, g->gh, HID, g->x, IN,
                1.0f, g->gw1, IN);
}

static float *buf(size_t n, float v) {
    float *p = aligned_alloc(64, ((n * sizeof(float)) + 63) / 64 * 64);
    if (!p) {
        fprintf(stderr, "bench_mlp_gemm: out of memory\n");
        exit(1);
    }
    for (size_t i = 0; i < n; i++) p[i] = v * (float)((i % 13) + 1) / 13.0f;
    return p;
}

int main(int argc, char **argv) {
    int iters = argc > 1 ? atoi(argv[1]) : 20, rounds = argc > 2 ? atoi(argv[2]) : 15;
    if (iters < 1 || rounds < 1 || rounds > 1000) {
        fprintf(stderr, "usage: bench_mlp_gemm [iterations per round] [rounds]\n");
        return 2;
    }
    openblas_set_num_threads(1);

    ns_manual_seed(0);
    mlp m = {
        .w1 = param(NS_DIMS(HID, IN), 0.0357f), /* 1/sqrt(784): PyTorch's Linear bound */
        .b1 = param(NS_DIMS(HID), 0.0357f),
        .w2 = param(NS_DIMS(OUT, HID), 0.0625f),
        .b2 = param(NS_DIMS(OUT), 0.0625f),
        .x = ns_tensor_new(NS_DIMS(N, IN), NS_CPU),
        .y = ns_tensor_new_i32(NS_DIMS(N), NS_CPU),
    };
    ns_uniform_(m.x, 0.0f, 1.0f);
    for (int i = 0; i < N; i++) ns_i32(m.y)[i] = i % OUT;

    gemm_bufs g = {buf(N * IN, 0.5f),   buf(HID * IN, 0.02f), buf(OUT * HID, 0.05f),
                   buf(N * HID, 0),     buf(N * OUT, 0),      buf(N * OUT, 0.01f),
                   buf(N * HID, 0.01f), buf(HID * IN, 0),     buf(OUT * HID, 0)};

    const double flops = 2.0 * N * (2.0 * IN * HID + 3.0 * HID * OUT);
    float loss = 0;
    for (int i = 0; i < 20; i++) {
        loss = engine_step(&m);
        gemm_step(&g);
    }
    double best_e = 1e30, best_g = 1e30, ratios[1000];
    for (int r = 0; r < rounds; r++) {
        double t0 = now();
        for (int i = 0; i < iters; i++) loss = engine_step(&m);
        double t1 = now();
        for (int i = 0; i < iters; i++) gemm_step(&g);
        double t2 = now();
        if ((t1 - t0) / iters < best_e) best_e = (t1 - t0) / iters;
        if ((t2 - t1) / iters < best_g) best_g = (t2 - t1) / iters;
        ratios[r] = (t2 - t1) / (t1 - t0);
    }
    qsort(ratios, (size_t)rounds, sizeof ratios[0], cmp_double);
    double ge = flops / best_e * 1e-9, gg = flops / best_g * 1e-9;
    printf("mlp 784-256-10, batch %d, 1 thread, %d rounds x %d iterations (best round)\n", N,
           rounds, iters);
    printf("GEMM FLOPs per step: %.0f (5 GEMMs)\n", flops);
    printf("engine fwd+bwd: %8.3f ms/step  %7.2f GFLOP/s  (loss %.4f)\n", best_e * 1e3, ge,
           (double)loss);
    printf("cblas_sgemm:    %8.3f ms/step  %7.2f GFLOP/s\n", best_g * 1e3, gg);
    printf("median per-round engine/gemm: %.0f%%\n", 100.0 * ratios[rounds / 2]);
    printf("engine/gemm = %.0f%% (target >= 85%%)\n", 100.0 * ge / gg);

    ns_tensor_free(m.w1);
    ns_tensor_free(m.b1);
    ns_tensor_free(m.w2);
    ns_tensor_free(m.b2);
    ns_tensor_free(m.x);
    ns_tensor_free(m.y);
    free(g.x);
    free(g.w1);
    free(g.w2);
    free(g.y1);
    free(g.y2);
    free(g.gy2);
    free(g.gh);
    free(g.gw1);
    free(g.gw2);
    return 0;
}
