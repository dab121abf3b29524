/* Every rule over hand-built recordings: run 1 is a healthy MLP training, run 2 the same run
 * with one silent failure planted the way the engine would record it. Each test asserts the
 * rule fires on the right module / parameter of run 2, that no other rule reports an error or
 * warning there, and that run 1 stays clean. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "test_diag_fixture.h"

#define HEALTHY 1
#define BUGGY 2

/* Two runs in one file: 1 stays healthy, 2 gets the bug. */
static sqlite3 *two_runs(void) {
    sqlite3 *db = fx_open();
    fx_healthy_small(db, HEALTHY);
    fx_healthy_small(db, BUGGY);
    return db;
}

/* Run 1 has no finding but the two notes on the biases of fc1 and fc2, which feed
 * BatchNorms and so get no gradient (redundant, not broken). */
static void assert_healthy_clean(sqlite3 *db) {
    size_t n;
    ns_finding *f = fx_check(db, HEALTHY, NULL, NULL, &n);
    const ns_finding *b1 = fx_find(f, n, "vanishing-gradient", "fc1", 0);
    const ns_finding *b2 = fx_find(f, n, "vanishing-gradient", "fc2", 0);
    if (n != 2 || !b1 || !b2) fx_dump(f, n);
    assert_int_equal(n, 2);
    assert_non_null(b1);
    assert_non_null(b2);
    assert_int_equal(b1->severity, NS_SEV_INFO);
    assert_string_equal(b1->param, "fc1.bias");
    assert_string_equal(b2->param, "fc2.bias");
    ns_findings_free(f, n);
}

/* Every finding of run 2 at or above warning belongs to rule. */
static void assert_only_rule(const ns_finding *f, size_t n, const char *rule) {
    for (size_t i = 0; i < n; i++) {
        if (f[i].severity >= NS_SEV_WARNING && strcmp(f[i].rule, rule) != 0) {
            fx_dump(f, n);
            fail_msg("unexpected %s finding from rule %s", ns_severity_name(f[i].severity),
                     f[i].rule);
        }
    }
}

static void assert_contains(const char *hay, const char *needle) {
    if (!hay || !strstr(hay, needle))
        fail_msg("'%s' does not contain '%s'", hay ? hay : "(null)", needle);
}

/* ------------------------------------------------------------------ healthy */

static void healthy_small_run_has_only_redundant_bias_notes(void **state) {
    (void)state;
    sqlite3 *db = fx_open();
    fx_healthy_small(db, HEALTHY);
    assert_healthy_clean(db);
    size_t n;
    ns_finding *f = fx_check(db, HEALTHY, NULL, "vanishing-gradient", &n);
    assert_int_equal(n, 2);
    assert_contains(f[0].message, "fc1.bias of Linear 'fc1' gets no gradient: the BatchNorm1d "
                                  "'bn1' right after it subtracts the batch mean");
    assert_contains(f[0].fix, "bias=False");
    ns_findings_free(f, n);
    sqlite3_close(db);
}

/* Without the BatchNorm after it, a bias whose gradient is that small has vanished. */
static void vanishing_bias_without_norm_after_it_is_warning(void **state) {
    (void)state;
    sqlite3 *db = two_runs();
    fx_exec(db, "DELETE FROM module_calls WHERE run_id = 2 AND module_id = 3");
    size_t n;
    ns_finding *f = fx_check(db, BUGGY, NULL, "vanishing-gradient", &n);
    const ns_finding *x = fx_find(f, n, "vanishing-gradient", "fc1", 0);
    assert_non_null(x);
    assert_int_equal(x->severity, NS_SEV_WARNING);
    assert_contains(x->message, "gradients of Linear 'fc1' have vanished");
    ns_findings_free(f, n);
    sqlite3_close(db);
}

/* The reference run of the issue: 5 epochs x 469 train steps of batch 128 plus 79 eval steps
 * per epoch; defaults must not raise an error or a warning, and checking stays fast. */
static void healthy_full_size_run_has_no_errors_or_warnings(void **state) {
    (void)state;
    sqlite3 *db = fx_open();
    fx_spec spec = {.epochs = 5, .train_per_epoch = 469, .eval_per_epoch = 79, .seed = 99};
    int steps = fx_healthy(db, HEALTHY, &spec);
    assert_int_equal(steps, 5 * (469 + 79));
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    size_t n;
    ns_finding *f = fx_check(db, HEALTHY, NULL, NULL, &n);
    clock_gettime(CLOCK_MONOTONIC, &b);
    double ms = (b.tv_sec - a.tv_sec) * 1e3 + (b.tv_nsec - a.tv_nsec) / 1e6;
    fprintf(stderr, "check of a %d-step run: %.0f ms, %zu findings\n", steps, ms, n);
    if (fx_count(f, n, NULL, NS_SEV_WARNING)) fx_dump(f, n);
    assert_int_equal(fx_count(f, n, NULL, NS_SEV_WARNING), 0);
    assert_true(ms < 10000);
    ns_findings_free(f, n);
    sqlite3_close(db);
}

/* ------------------------------------------------------------------ unregistered-module */

/* The model's forward calls a Linear kept in a plain struct field: rows as the engine writes
 * them (registered 0, parent = caller, params not in the optimizer, event once). */
static void plant_unregistered_linear(sqlite3 *db) {
    fx_exec(db, "INSERT INTO modules (run_id, id, parent_id, path, type, registered, n_params, "
                "first_step) VALUES (2, 20, 1, '(unregistered Linear #20)', 'Linear', 0, 110, 0)");
    fx_exec(db, "INSERT INTO params (run_id, id, module_id, name, shape, numel, requires_grad, "
                "in_optimizer) VALUES (2, 120, 20, 'weight', '10x10', 100, 1, 0), "
                "(2, 121, 20, 'bias', '10', 10, 1, 0)");
    fx_exec(db, "INSERT INTO param_stats (run_id, step, param_id, grad_norm, update_norm, "
                "weight_norm, ratio, device) SELECT 2, step, p.id, 0.1, 0, 1, 0, 'cpu' "
                "FROM steps, (SELECT 120 AS id UNION SELECT 121) p "
                "WHERE run_id = 2 AND phase = 'train'");
    fx_exec(db, "INSERT INTO module_calls (run_id, step, module_id, seq, caller_id, phase, "
                "training, grad_enabled) SELECT 2, step, 20, 10, 1, phase, phase = 'train', "
                "phase = 'train' FROM steps WHERE run_id = 2");
    fx_exec(db, "INSERT INTO events (run_id, step, kind, module_id, detail, wall_time) "
                "VALUES (2, 0, 'unregistered_call', 20, '', 0)");
}

static void unregistered_module_names_module_and_caller(void **state) {
    (void)state;
    sqlite3 *db = two_runs();
    plant_unregistered_linear(db);
    size_t n;
    ns_finding *f = fx_check(db, BUGGY, NULL, NULL, &n);
    const ns_finding *x = fx_find(f, n, "unregistered-module", NULL, 0);
    assert_non_null(x);
    assert_null(fx_find(f, n, "unregistered-module", NULL, 1));
    assert_int_equal(x->severity, NS_SEV_ERROR);
    assert_string_equal(x->module, "(unregistered Linear #20)");
    assert_int_equal(x->module_id, 20);
    assert_int_equal(x->first_step, 0);
    assert_contains(x->message, "inside the forward of '(model)'");
    assert_contains(x->message, "110 parameter values are never trained");
    assert_contains(x->fix, "ns_register_module");
    /* Its frozen parameters are this rule's, not frozen-parameter's. */
    assert_only_rule(f, n, "unregistered-module");
    ns_findings_free(f, n);
    assert_healthy_clean(db);
    sqlite3_close(db);
}

static void unregistered_module_reports_top_of_subtree_only(void **state) {
    (void)state;
    sqlite3 *db = two_runs();
    /* fc2 (registered) calls an unregistered Sequential 30 that calls its Linear 31. */
    fx_exec(db, "INSERT INTO modules (run_id, id, parent_id, path, type, registered, n_params) "
                "VALUES (2, 30, 6, 'fc2.(unregistered Sequential #30)', 'Sequential', 0, 0), "
                "(2, 31, 30, 'fc2.(unregistered Sequential #30).0', 'Linear', 0, 20)");
    fx_exec(db, "INSERT INTO params (run_id, id, module_id, name, shape, numel, requires_grad, "
                "in_optimizer) VALUES (2, 131, 31, 'weight', '4x5', 20, 1, 0)");
    fx_exec(db, "INSERT INTO param_stats (run_id, step, param_id, grad_norm, update_norm, "
                "weight_norm, ratio, device) SELECT 2, step, 131, 0.1, 0, 1, 0, 'cpu' "
                "FROM steps WHERE run_id = 2 AND phase = 'train'");
    fx_exec(db, "INSERT INTO module_calls (run_id, step, module_id, seq, caller_id, phase, "
                "training, grad_enabled) SELECT 2, step, 30, 20, 6, phase, 1, 1 "
                "FROM steps WHERE run_id = 2 AND phase = 'train'");
    fx_exec(db, "INSERT INTO module_calls (run_id, step, module_id, seq, caller_id, phase, "
                "training, grad_enabled) SELECT 2, step, 31, 21, 30, phase, 1, 1 "
                "FROM steps WHERE run_id = 2 AND phase = 'train'");
    size_t n;
    ns_finding *f = fx_check(db, BUGGY, NULL, NULL, &n);
    assert_int_equal(fx_count(f, n, "unregistered-module", NS_SEV_INFO), 1);
    const ns_finding *x = fx_find(f, n, "unregistered-module", NULL, 0);
    assert_int_equal(x->module_id, 30);
    assert_contains(x->message, "inside the forward of 'fc2'");
    assert_contains(x->evidence, "1 unregistered submodules");
    assert_contains(x->evidence, "20 parameter values, 0 held");
    assert_only_rule(f, n, "unregistered-module");
    ns_findings_free(f, n);
    sqlite3_close(db);
}

/* A second model run from the top level (not inside a forward) is not "unregistered"; its
 * parameters are judged by frozen-parameter like the main model's. */
static void separate_top_level_model_is_judged_by_frozen_parameter(void **state) {
    (void)state;
    sqlite3 *db = two_runs();
    fx_exec(db, "INSERT INTO modules (run_id, id, parent_id, path, type, registered, n_params) "
                "VALUES (2, 40, NULL, '(unregistered Head #40)', 'Head', 0, 0), "
                "(2, 41, 40, '(unregistered Head #40).fc', 'Linear', 0, 50)");
    fx_exec(db, "INSERT INTO params (run_id, id, module_id, name, shape, numel, requires_grad, "
                "in_optimizer) VALUES (2, 141, 41, 'fc.weight', '5x10', 50, 1, 0)");
    fx_exec(db, "INSERT INTO param_stats (run_id, step, param_id, grad_norm, update_norm, "
                "weight_norm, ratio, device) SELECT 2, step, 141, 0.1, 0, 1, 0, 'cpu' "
                "FROM steps WHERE run_id = 2 AND phase = 'train'");
    size_t n;
    ns_finding *f = fx_check(db, BUGGY, NULL, NULL, &n);
    assert_int_equal(fx_count(f, n, "unregistered-module", NS_SEV_INFO), 0);
    const ns_finding *x = fx_find(f, n, "frozen-parameter", NULL, 0);
    assert_non_null(x);
    assert_int_equal(x->module_id, 41);
    assert_int_equal(x->severity, NS_SEV_ERROR);
    assert_contains(x->message, "optimizer does not hold");
    ns_findings_free(f, n);
    sqlite3_close(db);
}

/* ------------------------------------------------------------------ module-created-in-forward */

static void created_in_forward_every_step_is_one_error_at_creator(void **state) {
    (void)state;
    sqlite3 *db = two_runs();
    /* The root's forward builds a Linear(10,10) on every train step. */
    fx_exec(db, "INSERT INTO modules (run_id, id, parent_id, path, type, registered, "
                "created_in_forward, creator_id, n_params, first_step) "
                "SELECT 2, 1000 + step, 1, printf('(unregistered Linear #%%d)', 1000 + step), "
                "'Linear', 0, 1, 1, 110, step FROM steps WHERE run_id = 2 AND phase = 'train'");
    fx_exec(db, "INSERT INTO params (run_id, id, module_id, name, shape, numel, requires_grad, "
                "in_optimizer) SELECT 2, 5000 + 2 * step, 1000 + step, 'weight', '10x10', 100, "
                "1, 0 FROM steps WHERE run_id = 2 AND phase = 'train'");
    fx_exec(db, "INSERT INTO param_stats (run_id, step, param_id, grad_norm, update_norm, "
                "weight_norm, ratio, device) SELECT 2, step, 5000 + 2 * step, 0.1, 0, 1, 0, "
                "'cpu' FROM steps WHERE run_id = 2 AND phase = 'train'");
    fx_exec(db, "INSERT INTO module_calls (run_id, step, module_id, seq, caller_id, phase, "
                "training, grad_enabled) SELECT 2, step, 1000 + step, 10, 1, 'train', 1, 1 "
                "FROM steps WHERE run_id = 2 AND phase = 'train'");
    int64_t ntrain = fx_int(db, "SELECT COUNT(*) FROM steps WHERE run_id = 2 AND phase = 'train'");
    size_t n;
    ns_finding *f = fx_check(db, BUGGY, NULL, NULL, &n);
    assert_int_equal(fx_count(f, n, "module-created-in-forward", NS_SEV_INFO), 1);
    const ns_finding *x = fx_find(f, n, "module-created-in-forward", "", 0);
    assert_non_null(x);
    assert_int_equal(x->severity, NS_SEV_ERROR);
    assert_int_equal(x->module_id, FX_ROOT);
    char want[64];
    snprintf(want, sizeof want, "builds a new Linear on every call (%lld built)",
             (long long)ntrain);
    assert_contains(x->message, want);
    assert_int_equal(x->first_step, 0);
    assert_only_rule(f, n, "module-created-in-forward");
    ns_findings_free(f, n);
    assert_healthy_clean(db);
    sqlite3_close(db);
}

static void created_in_forward_lazy_or_parameterless_is_info(void **state) {
    (void)state;
    sqlite3 *db = two_runs();
    /* fc2's forward built a registered Linear once, trained by the optimizer (lazy init). */
    fx_exec(db, "INSERT INTO modules (run_id, id, parent_id, path, type, registered, "
                "created_in_forward, creator_id, n_params, first_step) "
                "VALUES (2, 50, 6, 'fc2.lazy', 'Linear', 1, 1, 6, 20, 0)");
    fx_exec(db, "INSERT INTO params (run_id, id, module_id, name, shape, numel, requires_grad, "
                "in_optimizer, lr) VALUES (2, 150, 50, 'fc2.lazy.weight', '4x5', 20, 1, 1, 1e-3)");
    fx_exec(db, "INSERT INTO param_stats (run_id, step, param_id, grad_norm, update_norm, "
                "weight_norm, ratio, device) SELECT 2, step, 150, 0.1, 0.001, 1, 0.001, 'cpu' "
                "FROM steps WHERE run_id = 2 AND phase = 'train'");
    /* bn2's forward builds a parameterless ReLU on each of 3 calls. */
    fx_exec(db, "INSERT INTO modules (run_id, id, parent_id, path, type, registered, "
                "created_in_forward, creator_id, n_params, first_step) VALUES "
                "(2, 60, 7, 'bn2.(unregistered ReLU #60)', 'ReLU', 0, 1, 7, 0, 3), "
                "(2, 61, 7, 'bn2.(unregistered ReLU #61)', 'ReLU', 0, 1, 7, 0, 4), "
                "(2, 62, 7, 'bn2.(unregistered ReLU #62)', 'ReLU', 0, 1, 7, 0, 5)");
    size_t n;
    ns_finding *f = fx_check(db, BUGGY, NULL, NULL, &n);
    const ns_finding *lazy = fx_find(f, n, "module-created-in-forward", "fc2", 0);
    const ns_finding *relu = fx_find(f, n, "module-created-in-forward", "bn2", 0);
    assert_non_null(lazy);
    assert_non_null(relu);
    assert_int_equal(lazy->severity, NS_SEV_INFO);
    assert_contains(lazy->message, "once (lazy initialisation)");
    assert_int_equal(relu->severity, NS_SEV_INFO);
    assert_contains(relu->message, "(3 built); it has no parameters");
    assert_int_equal(fx_count(f, n, NULL, NS_SEV_WARNING), 0);
    ns_findings_free(f, n);
    sqlite3_close(db);
}

/* ------------------------------------------------------------------ uninitialised-module */

static void uninitialised_module_reports_engine_message(void **state) {
    (void)state;
    sqlite3 *db = two_runs();
    const char *msg = "ns_register_module: module 'net->head' (Head) was never initialised: "
                      "call ns_module_init() first (registering 'fc')";
    fx_exec(db, "UPDATE runs SET status = 'failed', status_detail = %Q WHERE id = 2", msg);
    fx_exec(db,
            "INSERT INTO events (run_id, step, kind, detail, wall_time) "
            "VALUES (2, NULL, 'uninitialised_module', %Q, 0)",
            msg);
    size_t n;
    ns_finding *f = fx_check(db, BUGGY, NULL, NULL, &n);
    const ns_finding *x = fx_find(f, n, "uninitialised-module", NULL, 0);
    assert_non_null(x);
    assert_int_equal(x->severity, NS_SEV_ERROR);
    assert_string_equal(x->message, msg);
    assert_contains(x->evidence, "status 'failed' before its first step");
    assert_only_rule(f, n, "uninitialised-module");
    ns_findings_free(f, n);
    assert_healthy_clean(db);
    sqlite3_close(db);
}

/* ------------------------------------------------------------------ frozen-parameter */

/* Makes module mid's parameters never change in run 2, with grad as given (SQL expr). */
static void freeze(sqlite3 *db, int mid, const char *grad) {
    fx_exec(db,
            "UPDATE param_stats SET update_norm = 0, ratio = 0, grad_norm = %s "
            "WHERE run_id = 2 AND param_id IN (SELECT id FROM params WHERE run_id = 2 "
            "AND module_id = %d AND kind = 'param')",
            grad, mid);
}

static void frozen_no_gradient_is_error_per_module(void **state) {
    (void)state;
    sqlite3 *db = two_runs();
    /* A detach after bn1 in the forward: fc1 and bn1 never get a .grad. */
    freeze(db, FX_FC1, "NULL");
    freeze(db, FX_BN1, "NULL");
    size_t n;
    ns_finding *f = fx_check(db, BUGGY, NULL, NULL, &n);
    assert_int_equal(fx_count(f, n, "frozen-parameter", NS_SEV_ERROR), 2);
    const ns_finding *a = fx_find(f, n, "frozen-parameter", "fc1", 0);
    const ns_finding *b = fx_find(f, n, "frozen-parameter", "bn1", 0);
    const ns_finding *c = fx_find(f, n, "frozen-parameter", "fc1", 1);
    assert_non_null(a);
    assert_non_null(b);
    assert_non_null(c);
    assert_int_equal(a->severity, NS_SEV_ERROR);
    assert_string_equal(a->param, "fc1.weight");
    assert_string_equal(b->param, "bn1.weight, bn1.bias");
    assert_contains(b->message, "no gradient ever reached them");
    /* fc1.bias feeds bn1: it never gets a gradient anyway, so it is only a note. */
    assert_int_equal(c->severity, NS_SEV_INFO);
    assert_string_equal(c->param, "fc1.bias");
    assert_contains(c->message, "has no effect");
    assert_contains(a->message, "no gradient ever reached it (the chain is broken between it and");
    assert_contains(a->evidence, "no .grad on any step");
    assert_contains(a->fix, "detach");
    assert_only_rule(f, n, "frozen-parameter");
    ns_findings_free(f, n);
    assert_healthy_clean(db);
    sqlite3_close(db);
}

static void frozen_not_in_optimizer_is_error(void **state) {
    (void)state;
    sqlite3 *db = two_runs();
    fx_exec(db, "UPDATE params SET in_optimizer = 0, lr = NULL WHERE run_id = 2 AND module_id = 6");
    freeze(db, FX_FC2, "grad_norm");
    size_t n;
    ns_finding *f = fx_check(db, BUGGY, NULL, NULL, &n);
    const ns_finding *x = fx_find(f, n, "frozen-parameter", "fc2", 0);
    assert_non_null(x);
    assert_int_equal(x->severity, NS_SEV_ERROR);
    assert_string_equal(x->param, "fc2.weight, fc2.bias");
    assert_contains(x->message, "the optimizer does not hold them");
    assert_contains(x->evidence, "gradient norm up to");
    assert_contains(x->fix, "optimizer");
    assert_int_equal(fx_count(f, n, "frozen-parameter", NS_SEV_INFO), 1);
    assert_only_rule(f, n, "frozen-parameter");
    ns_findings_free(f, n);
    sqlite3_close(db);
}

static void frozen_requires_grad_off_is_info(void **state) {
    (void)state;
    sqlite3 *db = two_runs();
    fx_exec(db, "UPDATE params SET requires_grad = 0 WHERE run_id = 2 AND module_id = 2");
    freeze(db, FX_FC1, "NULL");
    size_t n;
    ns_finding *f = fx_check(db, BUGGY, NULL, NULL, &n);
    const ns_finding *x = fx_find(f, n, "frozen-parameter", "fc1", 0);
    assert_non_null(x);
    assert_int_equal(x->severity, NS_SEV_INFO);
    assert_contains(x->message, "requires_grad is off");
    assert_int_equal(fx_count(f, n, NULL, NS_SEV_WARNING), 0);
    ns_findings_free(f, n);
    sqlite3_close(db);
}

static void frozen_zero_lr_is_warning(void **state) {
    (void)state;
    sqlite3 *db = two_runs();
    fx_exec(db, "UPDATE params SET lr = 0 WHERE run_id = 2 AND module_id = 10 AND kind = 'param'");
    freeze(db, FX_FC3, "grad_norm");
    size_t n;
    ns_finding *f = fx_check(db, BUGGY, NULL, NULL, &n);
    const ns_finding *x = fx_find(f, n, "frozen-parameter", "fc3", 0);
    assert_non_null(x);
    assert_int_equal(x->severity, NS_SEV_WARNING);
    assert_contains(x->message, "learning rate is 0");
    assert_only_rule(f, n, "frozen-parameter");
    ns_findings_free(f, n);
    sqlite3_close(db);
}

static void frozen_needs_min_steps(void **state) {
    (void)state;
    sqlite3 *db = fx_open();
    fx_spec s = {.epochs = 1, .train_per_epoch = 12, .eval_per_epoch = 0, .seed = 3};
    fx_healthy(db, BUGGY, &s);
    freeze(db, FX_FC3, "NULL");
    size_t n;
    ns_finding *f = fx_check(db, BUGGY, NULL, "frozen-parameter", &n);
    assert_int_equal(n, 0); /* 12 train steps < frozen_min_steps 20 */
    ns_findings_free(f, n);
    ns_diag_opts o;
    ns_diag_opts_default(&o);
    char err[128];
    assert_int_equal(ns_diag_opts_set(&o, "frozen_min_steps=10", err, sizeof err), 0);
    f = fx_check(db, BUGGY, &o, "frozen-parameter", &n);
    assert_int_equal(n, 1);
    assert_string_equal(f[0].module, "fc3");
    ns_findings_free(f, n);
    sqlite3_close(db);
}

/* ------------------------------------------------------------------ zero-trainable-parameters */

static void zero_trainable_when_optimizer_holds_nothing(void **state) {
    (void)state;
    sqlite3 *db = two_runs();
    fx_exec(db, "UPDATE params SET in_optimizer = 0, lr = NULL WHERE run_id = 2");
    fx_exec(db, "UPDATE param_stats SET update_norm = 0, ratio = 0 WHERE run_id = 2 AND "
                "param_id < 200");
    size_t n;
    ns_finding *f = fx_check(db, BUGGY, NULL, NULL, &n);
    const ns_finding *x = fx_find(f, n, "zero-trainable-parameters", "", 0);
    assert_non_null(x);
    assert_int_equal(x->severity, NS_SEV_ERROR);
    assert_int_equal(x->module_id, FX_ROOT);
    assert_contains(x->message, "the optimizer holds none of them");
    assert_contains(x->evidence, "10 parameters with 235,914 values");
    /* Not repeated per parameter by frozen-parameter. */
    assert_int_equal(fx_count(f, n, "frozen-parameter", NS_SEV_INFO), 0);
    assert_only_rule(f, n, "zero-trainable-parameters");
    ns_findings_free(f, n);
    assert_healthy_clean(db);
    sqlite3_close(db);
}

static void zero_trainable_when_everything_frozen(void **state) {
    (void)state;
    sqlite3 *db = two_runs();
    fx_exec(db, "UPDATE params SET requires_grad = 0 WHERE run_id = 2");
    size_t n;
    ns_finding *f = fx_check(db, BUGGY, NULL, "zero-trainable-parameters", &n);
    assert_int_equal(n, 1);
    assert_contains(f[0].message, "every parameter has requires_grad off");
    ns_findings_free(f, n);
    sqlite3_close(db);
}

/* ------------------------------------------------------------------ missing-eval-mode */

static void missing_eval_mode_flags_dropout_and_batchnorm(void **state) {
    (void)state;
    sqlite3 *db = two_runs();
    /* Validation under no-grad, but model.eval() was never called. */
    fx_exec(db, "UPDATE module_calls SET training = 1 WHERE run_id = 2 AND phase = 'eval'");
    fx_exec(db, "UPDATE param_stats SET update_norm = 0.015, ratio = 0.001 WHERE run_id = 2 "
                "AND param_id IN (200, 201, 203, 204) AND step IN "
                "(SELECT step FROM steps WHERE run_id = 2 AND phase = 'eval')");
    size_t n;
    ns_finding *f = fx_check(db, BUGGY, NULL, NULL, &n);
    assert_int_equal(fx_count(f, n, "missing-eval-mode", NS_SEV_ERROR), 4);
    const ns_finding *drop = fx_find(f, n, "missing-eval-mode", "drop1", 0);
    const ns_finding *bn = fx_find(f, n, "missing-eval-mode", "bn1", 0);
    assert_non_null(drop);
    assert_non_null(bn);
    assert_non_null(fx_find(f, n, "missing-eval-mode", "drop2", 0));
    assert_non_null(fx_find(f, n, "missing-eval-mode", "bn2", 0));
    assert_contains(drop->message, "Dropout 'drop1' ran in training mode during evaluation");
    assert_contains(bn->message, "running statistics changed on 15 evaluation steps");
    assert_contains(drop->evidence, "in 15 evaluation steps (80..");
    assert_int_equal(drop->first_step, 80);
    assert_contains(bn->fix, "ns_module_eval");
    /* ReLU and Linear have no mode: not reported. */
    assert_null(fx_find(f, n, "missing-eval-mode", "relu1", 0));
    assert_only_rule(f, n, "missing-eval-mode");
    ns_findings_free(f, n);
    assert_healthy_clean(db);
    sqlite3_close(db);
}

/* Steps without an optimizer step but with a backward (gradient accumulation) are training. */
static void missing_eval_mode_ignores_accumulation_steps(void **state) {
    (void)state;
    sqlite3 *db = two_runs();
    fx_exec(db, "UPDATE module_calls SET training = 1, grad_enabled = 1, bwd_us = 100 "
                "WHERE run_id = 2 AND phase = 'eval'");
    fx_exec(db, "UPDATE param_stats SET update_norm = 0.015 WHERE run_id = 2 AND param_id "
                "IN (200, 201) AND step IN (SELECT step FROM steps WHERE run_id = 2 AND "
                "phase = 'eval')");
    size_t n;
    ns_finding *f = fx_check(db, BUGGY, NULL, "missing-eval-mode", &n);
    if (n) fx_dump(f, n);
    assert_int_equal(n, 0);
    ns_findings_free(f, n);
    sqlite3_close(db);
}

/* ------------------------------------------------------------------ train-mode-not-restored */

static void train_mode_not_restored_after_evaluation(void **state) {
    (void)state;
    sqlite3 *db = two_runs();
    /* model.eval() for validation after epoch 0, no model.train() afterwards. */
    fx_exec(db, "UPDATE module_calls SET training = 0 WHERE run_id = 2 AND step >= 80");
    size_t n;
    ns_finding *f = fx_check(db, BUGGY, NULL, NULL, &n);
    assert_int_equal(fx_count(f, n, "train-mode-not-restored", NS_SEV_ERROR), 4);
    const ns_finding *x = fx_find(f, n, "train-mode-not-restored", "drop1", 0);
    assert_non_null(x);
    assert_int_equal(x->first_step, 85);
    assert_contains(x->message, "ran in eval mode during 160 train steps from step 85");
    assert_contains(x->message, "after the evaluation that ended at step 84");
    assert_contains(x->fix, "ns_module_train");
    assert_non_null(fx_find(f, n, "train-mode-not-restored", "bn2", 0));
    assert_only_rule(f, n, "train-mode-not-restored");
    ns_findings_free(f, n);
    assert_healthy_clean(db);
    sqlite3_close(db);
}

static void batchnorm_frozen_for_whole_run_is_info(void **state) {
    (void)state;
    sqlite3 *db = two_runs();
    fx_exec(db, "UPDATE module_calls SET training = 0 WHERE run_id = 2 AND module_id = 3");
    size_t n;
    ns_finding *f = fx_check(db, BUGGY, NULL, NULL, &n);
    const ns_finding *x = fx_find(f, n, "train-mode-not-restored", "bn1", 0);
    assert_non_null(x);
    assert_int_equal(x->severity, NS_SEV_INFO);
    assert_contains(x->message, "during all 240 train steps");
    assert_int_equal(fx_count(f, n, NULL, NS_SEV_WARNING), 0);
    ns_findings_free(f, n);
    sqlite3_close(db);
}

/* ------------------------------------------------------------------ device-mixing */

static void device_mixing_params_and_moves_in_forward(void **state) {
    (void)state;
    sqlite3 *db = two_runs();
    /* Model on cuda:0 except fc3 (created after the move), and the root's forward moves the
     * activations to the CPU and back on every step. */
    fx_exec(db, "UPDATE param_stats SET device = 'cuda:0' WHERE run_id = 2 AND param_id NOT IN "
                "(108, 109)");
    fx_exec(db, "UPDATE module_calls SET in_device = 'cuda:0', out_device = 'cuda:0', "
                "param_device = CASE WHEN param_device IS NULL THEN NULL ELSE 'cuda:0' END "
                "WHERE run_id = 2 AND module_id <> 10");
    fx_exec(db, "INSERT INTO transfers (run_id, step, module_id, src, dst, bytes) "
                "SELECT 2, step, 1, 'cuda:0', 'cpu', 65536 FROM steps WHERE run_id = 2");
    fx_exec(db, "INSERT INTO transfers (run_id, step, module_id, src, dst, bytes) "
                "SELECT 2, step, 1, 'cpu', 'cuda:0', 5120 FROM steps WHERE run_id = 2");
    /* Moving each batch to the GPU outside any forward is normal. */
    fx_exec(db, "INSERT INTO transfers (run_id, step, module_id, src, dst, bytes) "
                "SELECT 2, step, NULL, 'cpu', 'cuda:0', 401408 FROM steps WHERE run_id = 2");
    size_t n;
    ns_finding *f = fx_check(db, BUGGY, NULL, NULL, &n);
    assert_int_equal(fx_count(f, n, "device-mixing", NS_SEV_WARNING), 3);
    const ns_finding *p = fx_find(f, n, "device-mixing", "fc3", 0);
    assert_non_null(p);
    assert_string_equal(p->param, "fc3.weight, fc3.bias");
    assert_contains(p->message, "2 devices");
    assert_contains(p->message, "holds parameters on cpu");
    const ns_finding *t0 = fx_find(f, n, "device-mixing", "", 0);
    const ns_finding *t1 = fx_find(f, n, "device-mixing", "", 1);
    assert_non_null(t0);
    assert_non_null(t1);
    assert_contains(t0->message, "moves data cpu -> cuda:0 on 255 of 255 steps (5.0 KiB per step)");
    assert_contains(t1->message,
                    "moves data cuda:0 -> cpu on 255 of 255 steps (64.0 KiB per step)");
    assert_contains(t1->evidence, "255 moves, 16,711,680 bytes in all");
    assert_only_rule(f, n, "device-mixing");
    ns_findings_free(f, n);
    assert_healthy_clean(db);
    sqlite3_close(db);
}

static void device_mixing_input_on_other_device(void **state) {
    (void)state;
    sqlite3 *db = two_runs();
    fx_exec(db, "UPDATE module_calls SET param_device = 'cuda:0' WHERE run_id = 2 AND "
                "module_id = 2");
    size_t n;
    ns_finding *f = fx_check(db, BUGGY, NULL, "device-mixing", &n);
    assert_int_equal(n, 1);
    assert_string_equal(f[0].module, "fc1");
    assert_contains(f[0].message, "receives inputs on cpu while its parameters are on cuda:0");
    ns_findings_free(f, n);
    sqlite3_close(db);
}

/* ------------------------------------------------------------------ gradients */

static void vanishing_gradient_in_last_window(void **state) {
    (void)state;
    sqlite3 *db = two_runs();
    /* fc1.weight: norm 1e-5 over 200704 values (RMS 2.2e-8) for the last 60 train steps. */
    fx_exec(db, "UPDATE param_stats SET grad_norm = 1e-5 WHERE run_id = 2 AND param_id = 100 "
                "AND step IN (SELECT step FROM steps WHERE run_id = 2 AND phase = 'train' "
                "ORDER BY step DESC LIMIT 60)");
    size_t n;
    ns_finding *f = fx_check(db, BUGGY, NULL, NULL, &n);
    const ns_finding *x = fx_find(f, n, "vanishing-gradient", "fc1", 0);
    assert_non_null(x);
    assert_int_equal(x->severity, NS_SEV_WARNING);
    assert_string_equal(x->param, "fc1.weight");
    assert_contains(x->message, "RMS below 1e-07 on each of the last 50 train steps");
    assert_only_rule(f, n, "vanishing-gradient");
    ns_findings_free(f, n);
    assert_healthy_clean(db);
    sqlite3_close(db);
}

static void exploding_gradient_growth_and_threshold(void **state) {
    (void)state;
    sqlite3 *db = two_runs();
    /* fc3.weight gradients x30 from the 150th train step on; fc2.weight above 1e3 thrice. */
    fx_exec(db, "UPDATE param_stats SET grad_norm = grad_norm * 30 WHERE run_id = 2 AND "
                "param_id = 108 AND step IN (SELECT step FROM steps WHERE run_id = 2 AND "
                "phase = 'train' ORDER BY step LIMIT -1 OFFSET 150)");
    fx_exec(db, "UPDATE param_stats SET grad_norm = 5000 WHERE run_id = 2 AND param_id = 104 "
                "AND step IN (200, 201, 202)");
    size_t n;
    ns_finding *f = fx_check(db, BUGGY, NULL, NULL, &n);
    const ns_finding *g = fx_find(f, n, "exploding-gradient", "fc3", 0);
    assert_non_null(g);
    assert_null(fx_find(f, n, "exploding-gradient", "fc3", 1));
    assert_string_equal(g->param, "fc3.weight");
    assert_contains(g->message, "grew");
    /* Window 3 (train steps 150..199) holds the jump; its first step is step 155 (an eval
     * block of 5 came before). */
    assert_int_equal(g->first_step, 155);
    /* fc2's spike is both above the limit and a jump of its window's mean. */
    const ns_finding *b = fx_find(f, n, "exploding-gradient", "fc2", 0);
    assert_non_null(b);
    if (!strstr(b->message, "exploded")) b = fx_find(f, n, "exploding-gradient", "fc2", 1);
    assert_non_null(b);
    assert_contains(b->message, "norm up to 5e+03 (limit 1000) from step 200");
    assert_contains(b->evidence, "fc2.weight: norm above 1000 on 3 steps");
    assert_only_rule(f, n, "exploding-gradient");
    ns_findings_free(f, n);
    assert_healthy_clean(db);
    sqlite3_close(db);
}

/* ------------------------------------------------------------------ non-finite */

static void non_finite_names_first_step_and_innermost_module(void **state) {
    (void)state;
    sqlite3 *db = two_runs();
    /* From step 100 fc2's output (and so everything after it, the root's too) is NaN; the
     * weights follow one step later. */
    fx_exec(db, "UPDATE module_calls SET out_nonfinite = 1280 WHERE run_id = 2 AND step >= 100 "
                "AND module_id IN (1, 6, 7, 8, 9, 10)");
    fx_exec(db, "UPDATE param_stats SET nonfinite = 5 WHERE run_id = 2 AND step >= 101 AND "
                "param_id < 200");
    fx_exec(db, "INSERT INTO events (run_id, step, kind, module_id, detail, value, wall_time) "
                "VALUES (2, 100, 'nonfinite', 6, 'output of fc2', 1280, 0)");
    size_t n;
    ns_finding *f = fx_check(db, BUGGY, NULL, NULL, &n);
    const ns_finding *x = fx_find(f, n, "non-finite", NULL, 0);
    assert_non_null(x);
    assert_null(fx_find(f, n, "non-finite", NULL, 1));
    assert_int_equal(x->severity, NS_SEV_ERROR);
    assert_string_equal(x->module, "fc2");
    assert_int_equal(x->first_step, 100);
    assert_contains(x->message, "first non-finite value at step 100: the output of Linear 'fc2'");
    ns_findings_free(f, n);
    assert_healthy_clean(db);
    sqlite3_close(db);
}

static void non_finite_from_gradient_event(void **state) {
    (void)state;
    sqlite3 *db = two_runs();
    fx_exec(db, "INSERT INTO events (run_id, step, kind, param_id, detail, value, wall_time) "
                "VALUES (2, 50, 'nonfinite', 100, 'gradient of fc1.weight', 3, 0)");
    size_t n;
    ns_finding *f = fx_check(db, BUGGY, NULL, "non-finite", &n);
    assert_int_equal(n, 1);
    assert_int_equal(f[0].first_step, 50);
    assert_string_equal(f[0].module, "fc1");
    assert_string_equal(f[0].param, "fc1.weight");
    assert_contains(f[0].message, "gradient of fc1.weight (in 'fc1')");
    ns_findings_free(f, n);
    sqlite3_close(db);
}

/* ------------------------------------------------------------------ dead-relu */

static void dead_relu_over_window(void **state) {
    (void)state;
    sqlite3 *db = two_runs();
    fx_exec(db, "UPDATE module_calls SET dead_frac = 0.8, out_zero_frac = 0.9 WHERE run_id = 2 "
                "AND module_id = 4");
    size_t n;
    ns_finding *f = fx_check(db, BUGGY, NULL, NULL, &n);
    assert_int_equal(fx_count(f, n, "dead-relu", NS_SEV_INFO), 1);
    const ns_finding *x = fx_find(f, n, "dead-relu", "relu1", 0);
    assert_non_null(x);
    assert_int_equal(x->severity, NS_SEV_WARNING);
    assert_contains(x->message, "80% of its units");
    assert_contains(x->message, "last 100 train calls");
    assert_only_rule(f, n, "dead-relu");
    ns_findings_free(f, n);
    assert_healthy_clean(db);
    sqlite3_close(db);
}

/* ------------------------------------------------------------------ update-ratio */

static void update_ratio_hard_and_soft_bounds(void **state) {
    (void)state;
    sqlite3 *db = two_runs();
    /* fc2.weight: updates 50x the weights on 20 steps; fc1.weight and bn1.weight: 0.5 on every
     * step (outside the usual band); fc3.weight: no update (ratio 0) on 30 steps, ignored. */
    fx_exec(db, "UPDATE param_stats SET ratio = 50 WHERE run_id = 2 AND param_id = 104 AND "
                "step IN (SELECT step FROM steps WHERE run_id = 2 AND phase = 'train' "
                "ORDER BY step LIMIT 20 OFFSET 100)");
    fx_exec(db, "UPDATE param_stats SET ratio = 0.5 WHERE run_id = 2 AND param_id IN (100, 102)");
    fx_exec(db, "UPDATE param_stats SET ratio = 0, update_norm = 0 WHERE run_id = 2 AND "
                "param_id = 108 AND step IN (SELECT step FROM steps WHERE run_id = 2 AND "
                "phase = 'train' ORDER BY step LIMIT 30 OFFSET 100)");
    size_t n;
    ns_finding *f = fx_check(db, BUGGY, NULL, NULL, &n);
    const ns_finding *hard = fx_find(f, n, "update-ratio", "fc2", 0);
    assert_non_null(hard);
    assert_int_equal(hard->severity, NS_SEV_WARNING);
    assert_string_equal(hard->param, "fc2.weight");
    assert_contains(hard->message, "above 10 (updates larger than the weights) on 20 train steps");
    const ns_finding *w = fx_find(f, n, "update-ratio", "fc1", 0);
    const ns_finding *b = fx_find(f, n, "update-ratio", "bn1", 0);
    assert_non_null(w);
    assert_non_null(b);
    /* The weight matrix is a warning, the 1-D BatchNorm scale info. */
    assert_string_equal(w->param, "fc1.weight");
    assert_int_equal(w->severity, NS_SEV_WARNING);
    assert_contains(w->message, "mostly above the usual range [1e-06, 0.1] on 220 of 220");
    assert_string_equal(b->param, "bn1.weight");
    assert_int_equal(b->severity, NS_SEV_INFO);
    /* fc2.bias (ratio ~1e-12 under Adam's eps) feeds bn2: left to vanishing-gradient. */
    assert_null(fx_find(f, n, "update-ratio", "fc2", 1));
    assert_null(fx_find(f, n, "update-ratio", "fc3", 0));
    assert_only_rule(f, n, "update-ratio");
    ns_findings_free(f, n);
    assert_healthy_clean(db);
    sqlite3_close(db);
}

/* ------------------------------------------------------------------ loss-not-decreasing */

static void loss_flat_or_increasing(void **state) {
    (void)state;
    sqlite3 *db = two_runs();
    fx_exec(db, "UPDATE steps SET loss = 2.3 + (step %% 7) * 0.01 WHERE run_id = 2");
    size_t n;
    ns_finding *f = fx_check(db, BUGGY, NULL, NULL, &n);
    const ns_finding *x = fx_find(f, n, "loss-not-decreasing", "", 0);
    assert_non_null(x);
    assert_int_equal(x->severity, NS_SEV_WARNING);
    assert_contains(x->message, "the training loss did not decrease");
    assert_contains(x->message, "over the first 100 train steps");
    assert_only_rule(f, n, "loss-not-decreasing");
    ns_findings_free(f, n);
    fx_exec(db, "UPDATE steps SET loss = 1 + step * 0.05 WHERE run_id = 2");
    f = fx_check(db, BUGGY, NULL, "loss-not-decreasing", &n);
    assert_int_equal(n, 1);
    assert_contains(f[0].message, "the training loss increased");
    ns_findings_free(f, n);
    assert_healthy_clean(db);
    sqlite3_close(db);
}

static void loss_short_run_not_judged(void **state) {
    (void)state;
    sqlite3 *db = fx_open();
    fx_spec s = {.epochs = 1, .train_per_epoch = 15, .eval_per_epoch = 0, .seed = 5};
    fx_healthy(db, BUGGY, &s);
    fx_exec(db, "UPDATE steps SET loss = 2.3 WHERE run_id = 2");
    size_t n;
    ns_finding *f = fx_check(db, BUGGY, NULL, "loss-not-decreasing", &n);
    assert_int_equal(n, 0);
    ns_findings_free(f, n);
    sqlite3_close(db);
}

/* ------------------------------------------------------------------ state-dict-mismatch */

static void state_dict_mismatch_severities(void **state) {
    (void)state;
    sqlite3 *db = two_runs();
    fx_exec(db, "INSERT INTO events (run_id, step, kind, module_id, detail, value, wall_time) "
                "VALUES "
                "(2, 0, 'state_dict_load', 1, '{\"file\":\"a.safetensors\",\"strict\":0,"
                "\"missing\":[\"fc1.weight\",\"fc1.bias\"],\"unexpected\":[\"module.fc1.weight\","
                "\"module.fc1.bias\"],\"shape_mismatch\":[]}', 4, 0), "
                "(2, 1, 'state_dict_load', 1, '{\"file\":\"b.safetensors\",\"strict\":0,"
                "\"missing\":[\"fc3.weight\"],\"unexpected\":[],\"shape_mismatch\":[]}', 1, 0), "
                "(2, 2, 'state_dict_load', 1, '{\"file\":\"c.safetensors\",\"strict\":0,"
                "\"missing\":[],\"unexpected\":[\"extra\"],\"shape_mismatch\":[]}', 1, 0), "
                "(2, 3, 'state_dict_load', 1, '{\"file\":\"d.safetensors\",\"strict\":1,"
                "\"missing\":[],\"unexpected\":[],\"shape_mismatch\":[{\"key\":\"fc1.weight\","
                "\"expected\":\"256x784\",\"got\":\"128x784\"}]}', 1, 0), "
                "(2, 4, 'state_dict_load', 1, 'not json', 2, 0), "
                "(2, 5, 'state_dict_load', 1, '{\"file\":\"ok.safetensors\",\"strict\":1,"
                "\"missing\":[],\"unexpected\":[],\"shape_mismatch\":[]}', 0, 0)");
    size_t n;
    ns_finding *f = fx_check(db, BUGGY, NULL, "state-dict-mismatch", &n);
    if (n != 5) fx_dump(f, n);
    assert_int_equal(n, 5);
    /* Sorted: errors (steps 0, 3, 4), then the warning (1), then info (2). */
    assert_int_equal(f[0].first_step, 0);
    assert_int_equal(f[0].severity, NS_SEV_ERROR);
    assert_contains(f[0].message, "'a.safetensors' into '(model)': 2 missing keys, 2 unexpected");
    assert_contains(f[0].message, "prefix");
    assert_contains(f[0].evidence, "missing: fc1.weight, fc1.bias; unexpected: module.fc1.weight");
    assert_int_equal(f[1].first_step, 3);
    assert_contains(f[1].message, "strict loading 'd.safetensors'");
    assert_contains(f[1].evidence, "fc1.weight (model 256x784, file 128x784)");
    assert_int_equal(f[2].first_step, 4);
    assert_contains(f[2].message, "not json");
    assert_int_equal(f[3].severity, NS_SEV_WARNING);
    assert_contains(f[3].message, "keep their initial values");
    assert_int_equal(f[4].severity, NS_SEV_INFO);
    ns_findings_free(f, n);
    assert_healthy_clean(db);
    sqlite3_close(db);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(healthy_small_run_has_only_redundant_bias_notes),
        cmocka_unit_test(vanishing_bias_without_norm_after_it_is_warning),
        cmocka_unit_test(healthy_full_size_run_has_no_errors_or_warnings),
        cmocka_unit_test(unregistered_module_names_module_and_caller),
        cmocka_unit_test(unregistered_module_reports_top_of_subtree_only),
        cmocka_unit_test(separate_top_level_model_is_judged_by_frozen_parameter),
        cmocka_unit_test(created_in_forward_every_step_is_one_error_at_creator),
        cmocka_unit_test(created_in_forward_lazy_or_parameterless_is_info),
        cmocka_unit_test(uninitialised_module_reports_engine_message),
        cmocka_unit_test(frozen_no_gradient_is_error_per_module),
        cmocka_unit_test(frozen_not_in_optimizer_is_error),
        cmocka_unit_test(frozen_requires_grad_off_is_info),
        cmocka_unit_test(frozen_zero_lr_is_warning),
        cmocka_unit_test(frozen_needs_min_steps),
        cmocka_unit_test(zero_trainable_when_optimizer_holds_nothing),
        cmocka_unit_test(zero_trainable_when_everything_frozen),
        cmocka_unit_test(missing_eval_mode_flags_dropout_and_batchnorm),
        cmocka_unit_test(missing_eval_mode_ignores_accumulation_steps),
        cmocka_unit_test(train_mode_not_restored_after_evaluation),
        cmocka_unit_test(batchnorm_frozen_for_whole_run_is_info),
        cmocka_unit_test(device_mixing_params_and_moves_in_forward),
        cmocka_unit_test(device_mixing_input_on_other_device),
        cmocka_unit_test(vanishing_gradient_in_last_window),
        cmocka_unit_test(exploding_gradient_growth_and_threshold),
        cmocka_unit_test(non_finite_names_first_step_and_innermost_module),
        cmocka_unit_test(non_finite_from_gradient_event),
        cmocka_unit_test(dead_relu_over_window),
        cmocka_unit_test(update_ratio_hard_and_soft_bounds),
        cmocka_unit_test(loss_flat_or_increasing),
        cmocka_unit_test(loss_short_run_not_judged),
        cmocka_unit_test(state_dict_mismatch_severities),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
