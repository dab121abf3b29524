/* What the buggy samples share: the command line, Fashion-MNIST, one training epoch, one
 * evaluation pass and the printed lines. Nothing here hides a bug: model definitions, the
 * optimizer's parameter list and the train()/eval() switches stay in each sample's own file,
 * where a user would have written them.
 *
 * Every training step and every evaluation batch ends with ns_step_end() (evaluation batches
 * under no-grad, with their loss reported through ns_step_set_loss()), exactly like
 * samples/fashion_mlp.c, so a recording (NNSCOPE_DB=run.db) holds train and eval steps. */
#ifndef SAMPLES_COMMON_H
#define SAMPLES_COMMON_H

#include <stdbool.h>
#include <stdint.h>

#include "nnscope.h"
#include "nnscope/io.h"

/* Command-line options shared by every buggy sample. */
typedef struct {
    const char *name;    /* program name, for messages */
    int epochs;          /* --epochs N (default 1) */
    int64_t limit_steps; /* --limit-steps N: stop training after N steps in all; 0: no limit */
    uint64_t seed;       /* --seed N (default 0): initialisation, dropout and shuffling */
    const char *data;    /* --data DIR; NULL: ns_fashion_mnist_dir() */
    int64_t batch;       /* 128 */
    double lr;           /* Adam's learning rate, 1e-3 */
} sample_opts;

/* Parses --epochs, --limit-steps, --seed, --data and --help into *o (defaults above). about is
 * the sample's one-paragraph description for --help. Returns -1 when the program should go on,
 * else the exit status to return at once: 0 after --help (usage printed to stdout), 2 on a
 * usage error (one message naming the option printed to stderr). */
int sample_parse_args(int argc, char **argv, const char *name, const char *about, sample_opts *o);

/* Fashion-MNIST (normalised with mean 0.2860, std 0.3530), a shuffled training loader and the
 * host buffers for one batch. */
typedef struct {
    ns_dataset train, test;
    ns_loader *loader;
    float *xb;     /* batch*784 */
    int32_t *yb;   /* batch */
    float *logits; /* batch*10 */
    int64_t batch; /* training batch size */
    int64_t limit; /* from --limit-steps (0: none) */
    int64_t steps; /* training steps done so far */
} sample_data;

/* Loads both splits from o->data (or the default folder), seeds the loader with o->seed and
 * prints one line with the sizes. On failure prints one message naming the file and returns
 * false (*d is then empty and safe to free). */
bool sample_data_load(sample_data *d, const sample_opts *o);
/* Releases what sample_data_load() made. */
void sample_data_free(sample_data *d);

/* Mean loss and accuracy over an epoch or the test set. */
typedef struct {
    double loss, acc;
    int64_t steps;  /* steps run (training steps or evaluation batches) */
    double seconds; /* wall time */
} sample_result;

/* Trains model for one epoch of d's loader on device dev: for every batch zero the optimizer's
 * gradients, forward through ns_call(model, x), cross-entropy, ns_backward, ns_optim_step and
 * ns_step_end(). Does not touch the training mode (the caller's ns_module_train()). Stops early
 * when the --limit-steps budget is spent; returns false then (no further epoch should run). */
bool sample_train_epoch(ns_module *model, ns_optimizer *opt, sample_data *d, ns_device dev,
                        sample_result *r);

/* Runs the whole test set through model under no-grad in batches of 1000, one evaluation step
 * per batch (loss reported, ns_step_end()). Does not touch the training mode: the caller
 * decides (ns_module_eval() before it, as PyTorch's model.eval()). */
sample_result sample_evaluate(ns_module *model, sample_data *d, ns_device dev);

/* Adam (betas 0.9/0.999, eps 1e-8, no weight decay) over the parameters of m, at lr. */
ns_optimizer *sample_adam(ns_module *m, double lr);
/* The usual loop, for the samples whose bug is elsewhere: per epoch ns_set_epoch, train mode and
 * sample_train_epoch, then eval mode and sample_evaluate, and the epoch line; at the end the last
 * line `test_accuracy=0.XXXX`. Returns the last evaluation. */
sample_result sample_fit(ns_module *model, ns_optimizer *opt, sample_data *d, const sample_opts *o,
                         ns_device dev);
/* Prints the model as PyTorch's print(model) does and its trainable parameter count. */
void sample_print_model(ns_module *model);

/* Prints "epoch E/N  loss ...  train_acc ...  test_loss ...  test_acc ...  (S steps, T s)". */
void sample_print_epoch(int epoch, int epochs, const sample_result *train,
                        const sample_result *test);

#endif
