/* bench_fashion: training speed of samples/fashion_mlp's model and recipe against PyTorch.
 *
 * Linear(784,256) -> BatchNorm1d(256) -> ReLU -> Dropout(0.3) -> Linear(256,10), Adam lr 1e-3,
 * cross-entropy, batch 128, one thread (OpenBLAS and torch). Each step is what the sample does:
 * batch to a tensor, zero_grad, forward, loss, backward, optimizer step, ns_step_end(). The data
 * is a pool of 20 batches: the first 2560 Fashion-MNIST training images (normalised like the
 * sample) when installed, else synthetic values; it is written to a temporary file that the
 * PyTorch side (bench_fashion_torch.py) reads, so both train on the same bytes.
 *
 * Timing: WARMUP steps, then ROUNDS rounds of STEPS steps; steps/s is the best round by the
 * wall clock (the least disturbed by other processes on a shared machine), all rounds are
 * printed; steps per CPU second (process CPU time, best round) are printed too, as a figure less
 * sensitive to other load. Nothing is
 * asserted: it reports, ending with `nnscope/pytorch = X.XXx (target >= 1.3x)` when
 * /usr/bin/python3 has torch.
 *
 * usage: bench_fashion [--warmup N] [--steps N] [--rounds N] [--torch-script PATH] [--no-torch]
 */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "nnscope.h"
#include "nnscope/io.h"

#define BATCH 128
#define POOL 20

static double clock_s(clockid_t id) {
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Fills the pool from Fashion-MNIST, or synthetically; returns a description of the source. */
static const char *make_data(float *x, int32_t *y) {
    int64_t n = (int64_t)POOL * BATCH;
    ns_dataset ds;
    char err[512];
    if (ns_fashion_mnist_load(NULL, true, 0.2860f, 0.3530f, &ds, err, sizeof err)) {
        memcpy(x, ds.images, sizeof(float) * 784 * (size_t)n);
        memcpy(y, ds.labels, sizeof(int32_t) * (size_t)n);
        ns_dataset_free(&ds);
        return "Fashion-MNIST (first 2560 training images)";
    }
    /* x_i = frac(i * 2654435761 / 2^32) * 2 - 1, label_j = (j * 7 + j / 3) % 10 */
    for (int64_t i = 0; i < n * 784; i++)
        x[i] =
            (float)((double)(((uint64_t)i * 2654435761u) % 4294967296u) / 4294967296.0 * 2.0 - 1.0);
    for (int64_t j = 0; j < n; j++) y[j] = (int32_t)((j * 7 + j / 3) % 10);
    return "synthetic (Fashion-MNIST not installed)";
}

static double best(const double *r, int n) {
    double b = 0;
    for (int i = 0; i < n; i++) b = r[i] > b ? r[i] : b;
    return b;
}

int main(int argc, char **argv) {
    int warmup = 20, steps = 100, rounds = 3;
    const char *script = NULL;
    bool torch = true;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--no-torch")) {
            torch = false;
        } else if (i + 1 < argc && !strcmp(argv[i], "--warmup")) {
            warmup = atoi(argv[++i]);
        } else if (i + 1 < argc && !strcmp(argv[i], "--steps")) {
            steps = atoi(argv[++i]);
        } else if (i + 1 < argc && !strcmp(argv[i], "--rounds")) {
            rounds = atoi(argv[++i]);
        } else if (i + 1 < argc && !strcmp(argv[i], "--torch-script")) {
            script = argv[++i];
        } else {
            fprintf(stderr, "usage: bench_fashion [--warmup N] [--steps N] [--rounds N] "
                            "[--torch-script PATH] [--no-torch]\n");
            return 2;
        }
    }
    if (warmup < 0 || steps < 1 || rounds < 1 || rounds > 100) {
        fprintf(stderr, "bench_fashion: invalid --warmup/--steps/--rounds\n");
        return 2;
    }
    openblas_set_num_threads(1);

    float *x = malloc(sizeof(float) * 784 * POOL * BATCH);
    int32_t *y = malloc(sizeof(int32_t) * POOL * BATCH);
    if (!x || !y) return 1;
    const char *source = make_data(x, y);

    ns_manual_seed(0);
    ns_module *model =
        ns_sequential_new(5, ns_linear_new(784, 256, true), ns_batchnorm1d_new(256), ns_relu_new(),
                          ns_dropout_new(0.3), ns_linear_new(256, 10, true));
    int np;
    ns_tensor **ps = ns_optim_params_of(model, &np);
    ns_optimizer *opt = ns_adam_new(ps, np, 1e-3, 0.9, 0.999, 1e-8, 0.0);
    free(ps);
    ns_module_train(model, true);

    int64_t k = 0;
    float last_loss = 0;
    double rates[100], cpu_rates[100];
    for (int r = -1; r < rounds; r++) {
        int n = r < 0 ? warmup : steps;
        double t0 = clock_s(CLOCK_MONOTONIC), c0 = clock_s(CLOCK_PROCESS_CPUTIME_ID);
        for (int s = 0; s < n; s++, k++) {
            int64_t b = k % POOL;
            ns_tensor *xt = ns_from_host(NS_DIMS(BATCH, 784), x + b * BATCH * 784, NS_CPU);
            ns_tensor *yt = ns_from_host_i32(NS_DIMS(BATCH), y + b * BATCH, NS_CPU);
            ns_optim_zero_grad(opt);
            ns_tensor *loss = ns_cross_entropy(ns_call(model, xt), yt);
            ns_backward(loss, NULL);
            ns_optim_step(opt);
            if (s == n - 1) last_loss = ns_item(loss);
            ns_step_end();
        }
        if (r >= 0) {
            rates[r] = (double)n / (clock_s(CLOCK_MONOTONIC) - t0);
            cpu_rates[r] = (double)n / (clock_s(CLOCK_PROCESS_CPUTIME_ID) - c0);
        }
    }
    double ours = best(rates, rounds), ours_cpu = best(cpu_rates, rounds);
    printf("bench_fashion: MLP 784-256(BN,ReLU,Dropout)-10, Adam, batch %d, 1 thread\n", BATCH);
    printf("data: %s\n", source);
    printf("nnscope: %d warm-up steps, %d rounds of %d steps: rounds", warmup, rounds, steps);
    for (int r = 0; r < rounds; r++) printf(" %.1f", rates[r]);
    printf(" steps/s; loss %.4f\n", last_loss);
    printf("nnscope_steps_per_s=%.2f\n", ours);
    printf("nnscope_steps_per_cpu_s=%.2f\n", ours_cpu);
    fflush(stdout);

    int rc = 0;
    char tmpl[512] = "";
    if (torch) {
        char path[1024];
        const char *root = getenv("NNSCOPE_SOURCE_ROOT");
        if (!script) {
            snprintf(path, sizeof path, "%s/tests/bench/bench_fashion_torch.py",
                     root && *root ? root : ".");
            script = path;
        }
        const char *base = getenv("TMPDIR");
        snprintf(tmpl, sizeof tmpl, "%s/nsbench-XXXXXX", base && *base ? base : "/tmp");
        int fd = mkstemp(tmpl);
        FILE *f = fd >= 0 ? fdopen(fd, "wb") : NULL;
        bool ok = f && fwrite(x, sizeof(float) * 784, POOL * BATCH, f) == POOL * BATCH &&
                  fwrite(y, sizeof(int32_t), POOL * BATCH, f) == POOL * BATCH;
        if (f && fclose(f)) ok = false;
        if (access("/usr/bin/python3", X_OK) || access(script, R_OK) || !ok) {
            printf("pytorch: not run (%s)\n", !ok                    ? "cannot write the data file"
                                              : access(script, R_OK) ? "script not found"
                                                                     : "no /usr/bin/python3");
        } else {
            char cmd[2048];
            snprintf(cmd, sizeof cmd,
                     "OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 /usr/bin/python3 '%s' '%s' %d %d "
                     "%d",
                     script, tmpl, warmup, steps, rounds);
            FILE *p = popen(cmd, "r");
            double theirs = 0, theirs_cpu = 0;
            char line[1024];
            while (p && fgets(line, sizeof line, p)) {
                fputs(line, stdout);
                sscanf(line, "pytorch_steps_per_s=%lf", &theirs);
                sscanf(line, "pytorch_steps_per_cpu_s=%lf", &theirs_cpu);
            }
            if (!p || pclose(p) != 0) {
                printf("pytorch: the script failed\n");
            } else if (theirs > 0) {
                printf("per CPU second (less sensitive to other processes): nnscope %.1f, "
                       "pytorch %.1f steps/s: %.2fx\n",
                       ours_cpu, theirs_cpu, theirs_cpu > 0 ? ours_cpu / theirs_cpu : 0.0);
                printf("nnscope %.1f steps/s, pytorch %.1f steps/s (wall clock, best round)\n",
                       ours, theirs);
                printf("nnscope/pytorch = %.2fx (target >= 1.3x)\n", ours / theirs);
            }
        }
        if (tmpl[0]) unlink(tmpl);
    }
    ns_optim_free(opt);
    ns_module_free(model);
    free(x);
    free(y);
    return rc;
}
