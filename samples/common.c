/* Shared plumbing of the buggy samples (see common.h). */
#include "common.h"

#include <cblas.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MEAN 0.2860f
#define STD 0.3530f
#define EVAL_BATCH 1000
#define PIXELS 784
#define CLASSES 10

static void usage(FILE *f, const char *name, const char *about) {
    fprintf(f,
            "usage: %s [options]\n"
            "%s\n"
            "  --epochs N        epochs (default 1)\n"
            "  --limit-steps N   stop training after N steps in all (tests)\n"
            "  --seed N          initialisation, dropout and shuffling seed (default 0)\n"
            "  --data DIR        Fashion-MNIST folder (default $NNSCOPE_DATA or\n"
            "                    /usr/share/datasets/fashion-mnist)\n"
            "  --help            this text\n"
            "Record the run with NNSCOPE_DB=run.db, then: nnscope check run.db\n",
            name, about);
}

static bool parse_i64(const char *s, int64_t lo, int64_t hi, int64_t *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) return false;
    *out = v;
    return true;
}

int sample_parse_args(int argc, char **argv, const char *name, const char *about, sample_opts *o) {
    *o = (sample_opts){.name = name, .epochs = 1, .batch = 128, .lr = 1e-3};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout, name, about);
            return 0;
        }
        if (strncmp(a, "--", 2)) {
            fprintf(stderr, "%s: unexpected argument '%s' (see --help)\n", name, a);
            return 2;
        }
        if (strcmp(a, "--epochs") && strcmp(a, "--limit-steps") && strcmp(a, "--seed") &&
            strcmp(a, "--data")) {
            fprintf(stderr, "%s: unknown option '%s' (see --help)\n", name, a);
            return 2;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "%s: missing value for %s\n", name, a);
            return 2;
        }
        const char *v = argv[++i];
        int64_t n = 0;
        bool ok = true;
        if (!strcmp(a, "--epochs")) {
            ok = parse_i64(v, 1, 100000, &n);
            o->epochs = (int)n;
        } else if (!strcmp(a, "--limit-steps")) {
            ok = parse_i64(v, 1, INT64_MAX, &n);
            o->limit_steps = n;
        } else if (!strcmp(a, "--seed")) {
            ok = parse_i64(v, 0, INT64_MAX, &n);
            o->seed = (uint64_t)n;
        } else {
            o->data = v;
        }
        if (!ok) {
            fprintf(stderr, "%s: invalid value '%s' for %s (see --help)\n", name, v, a);
            return 2;
        }
    }
    return -1;
}

bool sample_data_load(sample_data *d, const sample_opts *o) {
    memset(d, 0, sizeof *d);
    openblas_set_num_threads(1); /* like fashion_mlp's default: steady timings on shared cores */
    char err[1024];
    if (!ns_fashion_mnist_load(o->data, true, MEAN, STD, &d->train, err, sizeof err) ||
        !ns_fashion_mnist_load(o->data, false, MEAN, STD, &d->test, err, sizeof err)) {
        fprintf(stderr, "%s: %s\n", o->name, err);
        sample_data_free(d);
        return false;
    }
    d->batch = o->batch;
    d->limit = o->limit_steps;
    d->loader = ns_loader_new(&d->train, o->batch, true, o->seed, false);
    d->xb = malloc(sizeof(float) * PIXELS * (size_t)o->batch);
    d->yb = malloc(sizeof(int32_t) * (size_t)o->batch);
    d->logits = malloc(sizeof(float) * CLASSES * (size_t)o->batch);
    if (!d->loader || !d->xb || !d->yb || !d->logits) {
        fprintf(stderr, "%s: out of memory\n", o->name);
        sample_data_free(d);
        return false;
    }
    printf("Fashion-MNIST: %" PRId64 " train, %" PRId64 " test images\n", d->train.n, d->test.n);
    return true;
}

void sample_data_free(sample_data *d) {
    ns_loader_free(d->loader);
    free(d->xb);
    free(d->yb);
    free(d->logits);
    ns_dataset_free(&d->train);
    ns_dataset_free(&d->test);
    memset(d, 0, sizeof *d);
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int64_t count_correct(const float *logits, const int32_t *y, int64_t n) {
    int64_t correct = 0;
    for (int64_t r = 0; r < n; r++) {
        const float *l = logits + r * CLASSES;
        int best = 0;
        for (int c = 1; c < CLASSES; c++)
            if (l[c] > l[best]) best = c;
        correct += best == y[r];
    }
    return correct;
}

bool sample_train_epoch(ns_module *model, ns_optimizer *opt, sample_data *d, ns_device dev,
                        sample_result *r) {
    double t0 = now(), loss_sum = 0;
    int64_t seen = 0, correct = 0, steps = 0, nb;
    bool more = true;
    while ((nb = ns_loader_next(d->loader, d->xb, d->yb)) > 0) {
        ns_tensor *x = ns_from_host(NS_DIMS(nb, PIXELS), d->xb, dev);
        ns_tensor *y = ns_from_host_i32(NS_DIMS(nb), d->yb, dev);
        ns_optim_zero_grad(opt);
        ns_tensor *z = ns_call(model, x);
        ns_tensor *loss = ns_cross_entropy(z, y);
        ns_backward(loss, NULL);
        ns_optim_step(opt);
        loss_sum += ns_item(loss) * (double)nb;
        ns_tensor_get(z, d->logits);
        correct += count_correct(d->logits, d->yb, nb);
        seen += nb;
        steps++;
        ns_step_end();
        if (d->limit && ++d->steps >= d->limit) {
            more = false;
            break;
        }
    }
    *r = (sample_result){.loss = seen ? loss_sum / (double)seen : NAN,
                         .acc = seen ? (double)correct / (double)seen : NAN,
                         .steps = steps,
                         .seconds = now() - t0};
    return more;
}

sample_result sample_evaluate(ns_module *model, sample_data *d, ns_device dev) {
    double t0 = now(), loss_sum = 0;
    int64_t correct = 0, steps = 0;
    static float logits[EVAL_BATCH * CLASSES];
    const ns_dataset *ds = &d->test;
    bool prev = ns_set_grad_enabled(false);
    for (int64_t b = 0; b < ds->n; b += EVAL_BATCH) {
        int64_t nb = ds->n - b < EVAL_BATCH ? ds->n - b : EVAL_BATCH;
        ns_tensor *x = ns_from_host(NS_DIMS(nb, PIXELS), ds->images + b * PIXELS, dev);
        ns_tensor *y = ns_from_host_i32(NS_DIMS(nb), ds->labels + b, dev);
        ns_tensor *z = ns_call(model, x);
        double loss = ns_item(ns_cross_entropy(z, y));
        ns_step_set_loss(loss);
        loss_sum += loss * (double)nb;
        ns_tensor_get(z, logits);
        correct += count_correct(logits, ds->labels + b, nb);
        steps++;
        ns_step_end();
    }
    ns_set_grad_enabled(prev);
    return (sample_result){.loss = loss_sum / (double)ds->n,
                           .acc = (double)correct / (double)ds->n,
                           .steps = steps,
                           .seconds = now() - t0};
}

void sample_print_model(ns_module *model) {
    char *repr = ns_module_repr(model);
    printf("%s\ntrainable parameters: %" PRId64 "\n", repr, ns_count_trainable(model));
    free(repr);
}

void sample_print_epoch(int epoch, int epochs, const sample_result *train,
                        const sample_result *test) {
    printf("epoch %d/%d  loss %.4f  train_acc %.4f  test_loss %.4f  test_acc %.4f  (%" PRId64
           " steps, %.1f s)\n",
           epoch + 1, epochs, train->loss, train->acc, test->loss, test->acc, train->steps,
           train->seconds);
    fflush(stdout);
}

sample_result sample_fit(ns_module *model, ns_optimizer *opt, sample_data *d, const sample_opts *o,
                         ns_device dev) {
    sample_result train, test = {0};
    bool more = true;
    for (int epoch = 0; epoch < o->epochs && more; epoch++) {
        ns_set_epoch(epoch);
        ns_module_train(model, true);
        more = sample_train_epoch(model, opt, d, dev, &train);
        ns_module_eval(model);
        test = sample_evaluate(model, d, dev);
        sample_print_epoch(epoch, o->epochs, &train, &test);
    }
    printf("test_accuracy=%.4f\n", test.acc);
    return test;
}

ns_optimizer *sample_adam(ns_module *m, double lr) {
    int np;
    ns_tensor **ps = ns_optim_params_of(m, &np);
    ns_optimizer *opt = ns_adam_new(ps, np, lr, 0.9, 0.999, 1e-8, 0.0);
    free(ps);
    return opt;
}
