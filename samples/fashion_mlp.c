/* fashion_mlp: the Fashion-MNIST classifier of the PyTorch guide nnscope is built around, done
 * right. The PyTorch original:
 *
 *   model = nn.Sequential(nn.Linear(784, 256), nn.BatchNorm1d(256), nn.ReLU(), nn.Dropout(0.3),
 *                         nn.Linear(256, 10))
 *   opt = torch.optim.Adam(model.parameters(), lr=1e-3)
 *   for epoch in range(5):
 *       model.train()
 *       for x, y in train_loader:                      # batch 128, shuffled
 *           opt.zero_grad(); loss = F.cross_entropy(model(x), y); loss.backward(); opt.step()
 *       model.eval()
 *       with torch.no_grad(): ... test accuracy ...
 *   torch.save(model.state_dict(), "fashion_mlp.pt")   # here: safetensors
 *
 * Parameter names are PyTorch's for a Sequential: 0.weight, 0.bias, 1.weight, 1.running_mean, ...
 * Every training step and every evaluation batch ends with ns_step_end(), where the recorder
 * (NNSCOPE_DB=run.db) closes its step row.
 *
 * Exit status: 0 success, 1 runtime error (data, files, accuracy check), 2 usage. */
#include <cblas.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "nnscope.h"
#include "nnscope/io.h"

#define MEAN 0.2860f
#define STD 0.3530f
#define EVAL_BATCH 1000

typedef struct {
    int epochs;
    int64_t batch;
    double lr;
    uint64_t seed;
    int threads;
    const char *data; /* NULL: ns_fashion_mnist_dir() */
    const char *save;
    int64_t limit_steps; /* 0: no limit */
    ns_device device;
} options;

static void usage(FILE *f) {
    fprintf(f,
            "usage: fashion_mlp [options]\n"
            "Trains Linear(784,256) -> BatchNorm1d -> ReLU -> Dropout(0.3) -> Linear(256,10) on\n"
            "Fashion-MNIST with Adam, then checks a saved and reloaded state_dict.\n"
            "  --epochs N        epochs (default 5)\n"
            "  --batch N         batch size (default 128)\n"
            "  --lr X            Adam learning rate (default 1e-3)\n"
            "  --seed N          initialisation, dropout and shuffling seed (default 0)\n"
            "  --threads N       OpenBLAS threads (default 1)\n"
            "  --data DIR        Fashion-MNIST folder (default $NNSCOPE_DATA or\n"
            "                    /usr/share/datasets/fashion-mnist)\n"
            "  --save PATH       state_dict file (default fashion_mlp.safetensors)\n"
            "  --limit-steps N   stop training after N steps in all (tests)\n"
            "  --device D        cpu or cuda (default cpu)\n"
            "  --help            this text\n");
}

static bool parse_i64(const char *s, int64_t lo, int64_t *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < lo) return false;
    *out = v;
    return true;
}

/* Returns 0 on success, 2 on a usage error (message printed), -1 for --help. */
static int parse_args(int argc, char **argv, options *o) {
    *o = (options){.epochs = 5,
                   .batch = 128,
                   .lr = 1e-3,
                   .seed = 0,
                   .threads = 1,
                   .save = "fashion_mlp.safetensors",
                   .device = NS_CPU};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) return -1;
        if (i + 1 >= argc || strncmp(a, "--", 2)) {
            fprintf(stderr, "fashion_mlp: %s '%s'\n",
                    strncmp(a, "--", 2) ? "unexpected argument" : "missing value for", a);
            return 2;
        }
        const char *v = argv[++i];
        int64_t n;
        bool ok = true;
        if (!strcmp(a, "--epochs")) {
            ok = parse_i64(v, 1, &n) && n <= 100000;
            o->epochs = (int)n;
        } else if (!strcmp(a, "--batch")) {
            ok = parse_i64(v, 1, &n) && n <= 60000;
            o->batch = n;
        } else if (!strcmp(a, "--lr")) {
            char *end;
            o->lr = strtod(v, &end);
            ok = end != v && !*end && o->lr > 0 && isfinite(o->lr);
        } else if (!strcmp(a, "--seed")) {
            ok = parse_i64(v, 0, &n);
            o->seed = (uint64_t)n;
        } else if (!strcmp(a, "--threads")) {
            ok = parse_i64(v, 1, &n) && n <= 1024;
            o->threads = (int)n;
        } else if (!strcmp(a, "--data")) {
            o->data = v;
        } else if (!strcmp(a, "--save")) {
            o->save = v;
        } else if (!strcmp(a, "--limit-steps")) {
            ok = parse_i64(v, 1, &n);
            o->limit_steps = n;
        } else if (!strcmp(a, "--device")) {
            ok = ns_device_parse(v, &o->device);
        } else {
            fprintf(stderr, "fashion_mlp: unknown option '%s' (see --help)\n", a);
            return 2;
        }
        if (!ok) {
            fprintf(stderr, "fashion_mlp: invalid value '%s' for %s (see --help)\n", v, a);
            return 2;
        }
    }
    return 0;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static ns_module *build_model(void) {
    return ns_sequential_new(5, ns_linear_new(784, 256, true), ns_batchnorm1d_new(256),
                             ns_relu_new(), ns_dropout_new(0.3), ns_linear_new(256, 10, true));
}

static int64_t count_correct(const float *logits, const int32_t *y, int64_t n) {
    int64_t correct = 0;
    for (int64_t r = 0; r < n; r++) {
        const float *l = logits + r * 10;
        int best = 0;
        for (int c = 1; c < 10; c++)
            if (l[c] > l[best]) best = c;
        correct += best == y[r];
    }
    return correct;
}

/* Test accuracy under no-grad; each batch is one evaluation step (loss reported). When out is
 * given, the logits of every sample are copied there. */
static double evaluate(ns_module *model, const ns_dataset *ds, ns_device dev, float *out) {
    bool prev = ns_set_grad_enabled(false);
    int64_t correct = 0;
    float logits[EVAL_BATCH * 10];
    for (int64_t b = 0; b < ds->n; b += EVAL_BATCH) {
        int64_t nb = ds->n - b < EVAL_BATCH ? ds->n - b : EVAL_BATCH;
        ns_tensor *x = ns_from_host(NS_DIMS(nb, 784), ds->images + b * 784, dev);
        ns_tensor *y = ns_from_host_i32(NS_DIMS(nb), ds->labels + b, dev);
        ns_tensor *z = ns_call(model, x);
        ns_step_set_loss(ns_item(ns_cross_entropy(z, y)));
        ns_tensor_get(z, logits);
        correct += count_correct(logits, ds->labels + b, nb);
        if (out) memcpy(out + b * 10, logits, sizeof(float) * (size_t)(nb * 10));
        ns_step_end();
    }
    ns_set_grad_enabled(prev);
    return (double)correct / (double)ds->n;
}

static char *with_commas(int64_t v, char *buf, size_t n) {
    char raw[32];
    snprintf(raw, sizeof raw, "%" PRId64, v);
    size_t len = strlen(raw), j = 0;
    for (size_t i = 0; i < len && j + 2 < n; i++) {
        if (i && (len - i) % 3 == 0) buf[j++] = ',';
        buf[j++] = raw[i];
    }
    buf[j] = 0;
    return buf;
}

int main(int argc, char **argv) {
    options o;
    int rc = parse_args(argc, argv, &o);
    if (rc < 0) {
        usage(stdout);
        return 0;
    }
    if (rc) return rc;
    char why[256] = "";
    if (!ns_device_available(o.device, why, sizeof why)) {
        fprintf(stderr, "fashion_mlp: device %s is not available: %s\n", ns_device_name(o.device),
                why);
        return 1;
    }
    openblas_set_num_threads(o.threads);

    char err[1024];
    ns_dataset train, test;
    if (!ns_fashion_mnist_load(o.data, true, MEAN, STD, &train, err, sizeof err) ||
        !ns_fashion_mnist_load(o.data, false, MEAN, STD, &test, err, sizeof err)) {
        fprintf(stderr, "fashion_mlp: %s\n", err);
        return 1;
    }
    printf("Fashion-MNIST: %" PRId64 " train, %" PRId64 " test images; device %s, %d thread%s\n",
           train.n, test.n, ns_device_name(o.device), o.threads, o.threads == 1 ? "" : "s");

    ns_manual_seed(o.seed);
    ns_module *model = build_model();
    ns_module_to(model, o.device);
    char *repr = ns_module_repr(model);
    printf("%s\n", repr);
    free(repr);
    int np;
    ns_tensor **params = ns_optim_params_of(model, &np);
    ns_optimizer *opt = ns_adam_new(params, np, o.lr, 0.9, 0.999, 1e-8, 0.0);
    free(params);

    ns_loader *ld = ns_loader_new(&train, o.batch, true, o.seed, false);
    float *xb = malloc(sizeof(float) * 784 * (size_t)o.batch);
    int32_t *yb = malloc(sizeof(int32_t) * (size_t)o.batch);
    float *logits = malloc(sizeof(float) * 10 * (size_t)o.batch);
    if (!ld || !xb || !yb || !logits) {
        fprintf(stderr, "fashion_mlp: out of memory\n");
        return 1;
    }

    int64_t steps = 0;
    double test_acc = 0;
    bool limited = false;
    for (int epoch = 0; epoch < o.epochs && !limited; epoch++) {
        ns_set_epoch(epoch);
        ns_module_train(model, true);
        double loss_sum = 0, t0 = now();
        int64_t seen = 0, correct = 0, nsteps = 0, nb;
        while ((nb = ns_loader_next(ld, xb, yb)) > 0) {
            ns_tensor *x = ns_from_host(NS_DIMS(nb, 784), xb, o.device);
            ns_tensor *y = ns_from_host_i32(NS_DIMS(nb), yb, o.device);
            ns_optim_zero_grad(opt);
            ns_tensor *z = ns_call(model, x);
            ns_tensor *loss = ns_cross_entropy(z, y);
            ns_backward(loss, NULL);
            ns_optim_step(opt);
            loss_sum += ns_item(loss) * (double)nb;
            ns_tensor_get(z, logits);
            correct += count_correct(logits, yb, nb);
            seen += nb;
            nsteps++;
            ns_step_end();
            if (o.limit_steps && ++steps >= o.limit_steps) {
                limited = true;
                break;
            }
        }
        double dt = now() - t0;
        ns_module_eval(model);
        test_acc = evaluate(model, &test, o.device, NULL);
        printf("epoch %d/%d  loss %.4f  train_acc %.4f  test_acc %.4f  %.1f steps/s (%" PRId64
               " steps)\n",
               epoch + 1, o.epochs, loss_sum / (double)seen, (double)correct / (double)seen,
               test_acc, (double)nsteps / dt, nsteps);
        fflush(stdout);
    }

    /* The guide's epilogue: eval(), test accuracy under no-grad, save, reload into a fresh
     * model strictly, eval(), and the outputs must be identical. */
    ns_module_eval(model);
    float *out_a = malloc(sizeof(float) * 10 * (size_t)test.n);
    float *out_b = malloc(sizeof(float) * 10 * (size_t)test.n);
    if (!out_a || !out_b) {
        fprintf(stderr, "fashion_mlp: out of memory\n");
        return 1;
    }
    test_acc = evaluate(model, &test, o.device, out_a);
    if (!ns_save_state_dict(model, o.save, err, sizeof err)) {
        fprintf(stderr, "fashion_mlp: %s\n", err);
        return 1;
    }
    ns_module *fresh = build_model();
    ns_module_to(fresh, o.device);
    if (!ns_load_state_dict(fresh, o.save, true, NULL, err, sizeof err)) {
        fprintf(stderr, "fashion_mlp: %s\n", err);
        return 1;
    }
    ns_module_eval(fresh);
    double acc_b = evaluate(fresh, &test, o.device, out_b);
    if (memcmp(out_a, out_b, sizeof(float) * 10 * (size_t)test.n) || acc_b != test_acc) {
        fprintf(stderr,
                "fashion_mlp: the model reloaded from %s gives different outputs on the test "
                "set\n",
                o.save);
        return 1;
    }
    char count[32];
    printf("saved the state_dict to %s; a fresh model loaded from it strictly gives identical "
           "outputs on all %" PRId64 " test images\n",
           o.save, test.n);
    printf("trainable parameters: %s\n",
           with_commas(ns_count_trainable(model), count, sizeof count));
    printf("test_accuracy=%.4f\n", test_acc);

    free(out_a);
    free(out_b);
    free(xb);
    free(yb);
    free(logits);
    ns_loader_free(ld);
    ns_optim_free(opt);
    ns_module_free(model);
    ns_module_free(fresh);
    ns_dataset_free(&train);
    ns_dataset_free(&test);
    return 0;
}
