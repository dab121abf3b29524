/* Recording overhead: the fashion_mlp model and recipe (Linear-BatchNorm1d-ReLU-Dropout-Linear,
 * Adam 1e-3, batch 128, one thread), trained in alternating blocks with full recording on
 * (every step, every parameter, every module call) and off, side by side in one process.
 * Prints the median steps/s of each and the overhead; target: at most 3%.
 *
 *   bench_record [--rounds R] [--steps S] [--db PATH] [--sample-every N]
 * (--sample-every N: activation statistics every N steps; the default 1 is full recording)
 */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "nnscope.h"
#include "nnscope/optim.h"
#include "nnscope/record.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

int main(int argc, char **argv) {
    int rounds = 7, steps = 150, sample_every = 1;
    const char *db = "bench_record.db";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--rounds") && i + 1 < argc)
            rounds = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--steps") && i + 1 < argc)
            steps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--db") && i + 1 < argc)
            db = argv[++i];
        else if (!strcmp(argv[i], "--sample-every") && i + 1 < argc)
            sample_every = atoi(argv[++i]);
        else {
            fprintf(
                stderr,
                "usage: bench_record [--rounds R] [--steps S] [--db PATH] [--sample-every N]\n");
            return 2;
        }
    }
    openblas_set_num_threads(1);
    unlink(db);
    ns_manual_seed(0);
    ns_module *net =
        ns_sequential_new(5, ns_linear_new(784, 256, true), ns_batchnorm1d_new(256), ns_relu_new(),
                          ns_dropout_new(0.3), ns_linear_new(256, 10, true));
    int np = 0;
    ns_tensor **params = ns_optim_params_of(net, &np);
    ns_optimizer *opt = ns_adam_new(params, np, 1e-3, 0.9, 0.999, 1e-8, 0.0);
    free(params);

    /* Synthetic data shaped like normalised Fashion-MNIST: 16 fixed batches. */
    enum { B = 128, NB = 16 };
    float *x = malloc(sizeof(float) * B * 784 * NB);
    int32_t *y = malloc(sizeof(int32_t) * B * NB);
    srand(1);
    for (int i = 0; i < B * 784 * NB; i++) x[i] = (float)rand() / RAND_MAX * 2.0f - 1.0f;
    for (int i = 0; i < B * NB; i++) y[i] = rand() % 10;

    int64_t k = 0;
    double *on = calloc((size_t)rounds, sizeof *on), *off = calloc((size_t)rounds, sizeof *off);
    double *con = calloc((size_t)rounds, sizeof *con), *coff = calloc((size_t)rounds, sizeof *coff);
    for (int r = -1; r < rounds; r++) { /* round -1 warms up both paths */
        for (int rec = 0; rec < 2; rec++) {
            ns_recorder *R = NULL;
            if (rec) {
                ns_record_opts o;
                ns_record_opts_default(&o);
                o.sample_every = sample_every;
                R = ns_record_open(db, net, opt, &o);
                if (!R) return 1;
            }
            double t0 = now(), c0 = cpu_now();
            for (int s = 0; s < steps; s++, k++) {
                int b = (int)(k % NB);
                ns_tensor *xb = ns_from_host(NS_DIMS(B, 784), x + (size_t)b * B * 784, NS_CPU);
                ns_tensor *yb = ns_from_host_i32(NS_DIMS(B), y + (size_t)b * B, NS_CPU);
                ns_optim_zero_grad(opt);
                ns_tensor *loss = ns_cross_entropy(ns_call(net, xb), yb);
                ns_backward(loss, NULL);
                ns_optim_step(opt);
                ns_step_end();
            }
            double rate = steps / (now() - t0), crate = steps / (cpu_now() - c0);
            if (rec) ns_record_close(R);
            if (r >= 0) {
                (rec ? on : off)[r] = rate;
                (rec ? con : coff)[r] = crate;
            }
        }
    }
    double mon = median(on, rounds), moff = median(off, rounds);
    printf("recording off: %.1f steps/s (median of %d blocks of %d steps)\n", moff, rounds, steps);
    printf("recording on:  %.1f steps/s (every step, every parameter, every module call)\n", mon);
    double cmon = median(con, rounds), cmoff = median(coff, rounds);
    printf("training-thread CPU time per step: off %.3f ms, on %.3f ms (+%.2f%%): the cost the "
           "recorder adds to the training thread, immune to other load on the machine\n",
           1e3 / cmoff, 1e3 / cmon, (cmoff / cmon - 1.0) * 100.0);
    printf("recording overhead = %.2f%% of steps/s (target <= 3%%)\n", (1.0 - mon / moff) * 100.0);
    unlink(db);
    free(on);
    free(off);
    free(con);
    free(coff);
    free(x);
    free(y);
    ns_optim_free(opt);
    ns_module_free(net);
    return 0;
}
