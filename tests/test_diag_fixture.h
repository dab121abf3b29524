/* Hand-built recordings for the diagnostics tests: the rows the engine writes (see
 * docs/RECORDING-SEMANTICS.md) for a healthy MLP run, which tests then edit with SQL to plant
 * one silent failure at a time. */
#ifndef NNSCOPE_TEST_DIAG_FIXTURE_H
#define NNSCOPE_TEST_DIAG_FIXTURE_H

#include <stddef.h>
#include <stdint.h>

#include <sqlite3.h>

#include "diag/diag.h"

/* Module ids of the healthy model: an MLP 784-256-128-10 with BatchNorm, ReLU, Dropout(0.3).
 * Paths: '' (root 'MLP'), fc1, bn1, relu1, drop1, fc2, bn2, relu2, drop2, fc3. */
enum {
    FX_ROOT = 1,
    FX_FC1,
    FX_BN1,
    FX_RELU1,
    FX_DROP1,
    FX_FC2,
    FX_BN2,
    FX_RELU2,
    FX_DROP2,
    FX_FC3,
};
/* Parameter ids: 100 + 2*k for the weight, 101 + 2*k for the bias of the k-th layer with
 * parameters (fc1 0, bn1 1, fc2 2, bn2 3, fc3 4). Buffers: 200 + 3*j (+0 running_mean,
 * +1 running_var, +2 num_batches_tracked) for bn1 (j 0) and bn2 (j 1). */
enum {
    FX_FC1_W = 100,
    FX_FC1_B,
    FX_BN1_W,
    FX_BN1_B,
    FX_FC2_W,
    FX_FC2_B,
    FX_BN2_W,
    FX_BN2_B,
    FX_FC3_W,
    FX_FC3_B,
    FX_BN1_RM = 200,
    FX_BN1_RV,
    FX_BN1_NBT,
    FX_BN2_RM,
    FX_BN2_RV,
    FX_BN2_NBT,
};

typedef struct {
    int epochs;
    int train_per_epoch; /* train steps per epoch (batch 128) */
    int eval_per_epoch;  /* eval steps after each epoch (model.eval(), no-grad) */
    unsigned seed;
} fx_spec;

/* An in-memory database holding hooks/schema.sql (read from $NNSCOPE_SOURCE_ROOT). Aborts the
 * test on failure. */
sqlite3 *fx_open(void);

/* Writes run `run` (ids as above) of a healthy training: Adam lr 1e-3, loss falling from 2.3,
 * gradient norms and update ratios like a numpy run of the same model (including the
 * noise-only gradients of fc1.bias and fc2.bias, which feed BatchNorms), eval steps with the
 * model in eval mode under no-grad. Returns the number of steps written; step numbers are 0.. in
 * train/eval order. */
int fx_healthy(sqlite3 *db, int64_t run, const fx_spec *spec);

/* Small default: 3 epochs x 80 train steps + 5 eval steps each (255 steps). */
int fx_healthy_small(sqlite3 *db, int64_t run);

/* Runs SQL (sqlite3_mprintf-style: %q, %Q allowed) and asserts it succeeded. */
void fx_exec(sqlite3 *db, const char *fmt, ...);

/* Scalar integer result of a query (sqlite3_mprintf-style). */
int64_t fx_int(sqlite3 *db, const char *fmt, ...);

/* ns_diag_check with default options (opts NULL) or the given ones; asserts success. */
ns_finding *fx_check(sqlite3 *db, int64_t run, const ns_diag_opts *opts, const char *only,
                     size_t *n);

/* The k-th finding (0-based) of rule with module path `module` (NULL: any module), or NULL. */
const ns_finding *fx_find(const ns_finding *f, size_t n, const char *rule, const char *module,
                          int k);

/* Number of findings of rule (NULL: any) at or above severity min. */
size_t fx_count(const ns_finding *f, size_t n, const char *rule, ns_severity min);

/* Prints findings to stderr (for failing tests). */
void fx_dump(const ns_finding *f, size_t n);

#endif
