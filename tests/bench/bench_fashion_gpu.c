/* bench_fashion_gpu: the training step of samples/fashion_mlp on the GPU, against PyTorch eager
 * on the same GPU in the same run.
 *
 * Linear(784,256) -> BatchNorm1d(256) -> ReLU -> Dropout(0.3) -> Linear(256,10), Adam lr 1e-3,
 * cross-entropy, batch 128. A step is what the sample does on --device cuda: upload the batch
 * from host memory, zero_grad, forward, loss, backward, fused Adam step, read the loss back
 * (one synchronisation), ns_step_end(). PyTorch does the same (batch.to('cuda') from pageable
 * memory, loss.item()). The data is a pool of 20 batches (the first 2560 Fashion-MNIST training
 * images, or synthetic values without the dataset) written to a temporary file that
 * bench_fashion_gpu_torch.py reads, so both sides train on the same bytes.
 *
 * Timing: WARMUP steps, then ROUNDS rounds of STEPS steps; the best round counts. Also printed:
 * cudaMalloc calls during the timed rounds (the caching allocator's steady state: expect 0) and
 * the allocator's in-use / cached / peak bytes. Ends with
 *   ratio nnscope/pytorch steps per second = X.XX (target >= 1.00)
 * Exit status: 0 measured, 77 no GPU (one-line reason), 1 error.
 *
 * usage: bench_fashion_gpu [--warmup N] [--steps N] [--rounds N] [--torch-script PATH]
 *                          [--python PATH] [--no-torch]
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "nnscope.h"
#include "nnscope/io.h"
#ifdef NS_HAVE_CUDA
#include "ns_cuda.h"
#endif

#define BATCH 128
#define POOL 20

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

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
    for (int64_t i = 0; i < n * 784; i++)
        x[i] =
            (float)((double)(((uint64_t)i * 2654435761u) % 4294967296u) / 4294967296.0 * 2.0 - 1.0);
    for (int64_t j = 0; j < n; j++) y[j] = (int32_t)((j * 7 + j / 3) % 10);
    return "synthetic (Fashion-MNIST not found)";
}

/* Runs the PyTorch side; returns its best steps/s, or 0 (reason printed). */
static double run_torch(const char *python, const char *script, const char *data, int warmup,
                        int steps, int rounds) {
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "'%s' '%s' '%s' %d %d %d 2>&1", python, script, data, warmup, steps,
             rounds);
    FILE *p = popen(cmd, "r");
    if (!p) {
        printf("pytorch: cannot run %s\n", python);
        return 0;
    }
    char line[1024];
    double rate = 0;
    while (fgets(line, sizeof line, p)) {
        printf("  %s", line);
        if (!strncmp(line, "pytorch_steps_per_s=", 20)) rate = atof(line + 20);
    }
    int rc = pclose(p);
    if (rc != 0 && rate == 0) printf("pytorch: exit status %d\n", rc);
    return rate;
}

int main(int argc, char **argv) {
    int warmup = 50, steps = 200, rounds = 5;
    const char *script = NULL, *python = "/usr/bin/python3";
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
        } else if (i + 1 < argc && !strcmp(argv[i], "--python")) {
            python = argv[++i];
        } else {
            fprintf(stderr, "usage: bench_fashion_gpu [--warmup N] [--steps N] [--rounds N] "
                            "[--torch-script PATH] [--python PATH] [--no-torch]\n");
            return 1;
        }
    }
    if (steps < 1 || rounds < 1 || rounds > 100 || warmup < 0) {
        fprintf(stderr, "bench_fashion_gpu: need steps >= 1, 1 <= rounds <= 100, warmup >= 0\n");
        return 1;
    }
    char why[256] = "";
    if (!ns_device_available(NS_CUDA, why, sizeof why)) {
        printf("SKIP bench_fashion_gpu: %s\n", why);
        return 77;
    }
    int64_t n = (int64_t)POOL * BATCH;
    float *x = malloc(sizeof(float) * 784 * (size_t)n);
    int32_t *y = malloc(sizeof(int32_t) * (size_t)n);
    if (!x || !y) {
        fprintf(stderr, "bench_fashion_gpu: out of memory\n");
        return 1;
    }
    const char *src = make_data(x, y);
#ifdef NS_HAVE_CUDA
    printf("device: %s\n", ns_cuda_device_desc());
#endif
    printf("data: %s; batch %d; warmup %d, %d rounds of %d steps\n", src, BATCH, warmup, rounds,
           steps);

    ns_manual_seed(0);
    ns_module *model =
        ns_sequential_new(5, ns_linear_new(784, 256, true), ns_batchnorm1d_new(256), ns_relu_new(),
                          ns_dropout_new(0.3), ns_linear_new(256, 10, true));
    ns_module_to(model, NS_CUDA);
    ns_module_train(model, true);
    int np;
    ns_tensor **params = ns_optim_params_of(model, &np);
    ns_optimizer *opt = ns_adam_new(params, np, 1e-3, 0.9, 0.999, 1e-8, 0.0);
    free(params);

    float last = 0;
    int64_t k = 0;
#define STEP()                                                                                     \
    do {                                                                                           \
        int64_t b = k++ % POOL;                                                                    \
        ns_tensor *xt = ns_from_host(NS_DIMS(BATCH, 784), x + b * BATCH * 784, NS_CUDA);           \
        ns_tensor *yt = ns_from_host_i32(NS_DIMS(BATCH), y + b * BATCH, NS_CUDA);                  \
        ns_optim_zero_grad(opt);                                                                   \
        ns_tensor *loss = ns_cross_entropy(ns_call(model, xt), yt);                                \
        ns_backward(loss, NULL);                                                                   \
        ns_optim_step(opt);                                                                        \
        last = ns_item(loss);                                                                      \
        ns_step_end();                                                                             \
    } while (0)
    for (int i = 0; i < warmup; i++) STEP();
    double rates[100], best = 0;
#ifdef NS_HAVE_CUDA
    uint64_t raw0 = ns_cuda_mem_raw_allocs();
#endif
    for (int r = 0; r < rounds; r++) {
        double t0 = now();
        for (int i = 0; i < steps; i++) STEP();
        rates[r] = steps / (now() - t0);
        if (rates[r] > best) best = rates[r];
    }
    printf("nnscope_rounds=");
    for (int r = 0; r < rounds; r++) printf("%s%.1f", r ? "," : "", rates[r]);
    printf("\nnnscope_loss=%.4f\n", (double)last);
#ifdef NS_HAVE_CUDA
    size_t in_use, cached, peak;
    ns_cuda_mem_stats(&in_use, &cached, &peak);
    printf("allocator: %llu cudaMalloc calls during the timed rounds; in use %.2f MB, cached "
           "%.2f MB, peak %.2f MB\n",
           (unsigned long long)(ns_cuda_mem_raw_allocs() - raw0), (double)in_use / 1e6,
           (double)cached / 1e6, (double)peak / 1e6);
#endif
    printf("nnscope_steps_per_s=%.1f (%.1f us/step)\n", best, 1e6 / best);

    if (!isfinite(last)) {
        fprintf(stderr, "bench_fashion_gpu: the loss is not finite\n");
        return 1;
    }
    if (torch && script) {
        char path[] = "/tmp/nsbenchgpu-XXXXXX";
        int fd = mkstemp(path);
        FILE *f = fd >= 0 ? fdopen(fd, "wb") : NULL;
        if (!f || fwrite(x, sizeof(float), 784 * (size_t)n, f) != 784 * (size_t)n ||
            fwrite(y, sizeof(int32_t), (size_t)n, f) != (size_t)n || fclose(f)) {
            fprintf(stderr, "bench_fashion_gpu: cannot write %s\n", path);
            return 1;
        }
        printf("pytorch (same GPU, same data):\n");
        double t = run_torch(python, script, path, warmup, steps, rounds);
        unlink(path);
        if (t > 0)
            printf("ratio nnscope/pytorch steps per second = %.2f (target >= 1.00: nnscope's step "
                   "time at most PyTorch eager's)\n",
                   best / t);
        else
            printf("ratio nnscope/pytorch: not measured (PyTorch with CUDA unavailable)\n");
    }
    ns_optim_free(opt);
    ns_module_free(model);
    free(x);
    free(y);
    return 0;
}
