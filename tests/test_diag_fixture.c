/* Hand-built recordings for the diagnostics tests (see test_diag_fixture.h). */
#include "test_diag_fixture.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void die(const char *what, sqlite3 *db) {
    fprintf(stderr, "fixture: %s: %s\n", what, db ? sqlite3_errmsg(db) : "");
    abort();
}

sqlite3 *fx_open(void) {
    const char *root = getenv("NNSCOPE_SOURCE_ROOT");
    char path[4096];
    snprintf(path, sizeof path, "%s/hooks/schema.sql", root ? root : ".");
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        fprintf(stderr, "fixture: cannot read %s (set NNSCOPE_SOURCE_ROOT)\n", path);
        abort();
    }
    fseek(fp, 0, SEEK_END);
    long len = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    char *sql = malloc((size_t)len + 1);
    if (!sql || fread(sql, 1, (size_t)len, fp) != (size_t)len) die("read schema", NULL);
    sql[len] = '\0';
    fclose(fp);
    sqlite3 *db = NULL;
    if (sqlite3_open(":memory:", &db) != SQLITE_OK) die("open", db);
    if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK) die("schema", db);
    free(sql);
    return db;
}

void fx_exec(sqlite3 *db, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *sql = sqlite3_vmprintf(fmt, ap);
    va_end(ap);
    char *err = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK) {
        fprintf(stderr, "fixture: %s\n  in: %s\n", err, sql);
        abort();
    }
    sqlite3_free(sql);
}

int64_t fx_int(sqlite3 *db, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *sql = sqlite3_vmprintf(fmt, ap);
    va_end(ap);
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) die(sql, db);
    int64_t v = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0) : -1;
    sqlite3_finalize(st);
    sqlite3_free(sql);
    return v;
}

/* ------------------------------------------------------------------ healthy run */

static unsigned rng_state;

static double urand(void) { /* xorshift32, uniform in [0, 1) */
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 17;
    rng_state ^= rng_state << 5;
    return (rng_state >> 8) / 16777216.0;
}

typedef struct {
    int id, module;
    const char *name, *shape;
    int numel;
    double w0;     /* weight norm at init */
    double g;      /* typical gradient norm */
    int zero_init; /* BatchNorm bias */
    double upd;    /* update scale (1: Adam's usual; tiny when the gradient is rounding noise) */
} fx_param;

#define LIN_STD(fan_in) (1.0 / sqrt(3.0 * (fan_in)))

static int sqlite_step_done(sqlite3 *db, sqlite3_stmt *st) {
    int rc = sqlite3_step(st);
    if (rc != SQLITE_DONE) die("insert", db);
    sqlite3_reset(st);
    return 0;
}

static sqlite3_stmt *prep(sqlite3 *db, const char *sql) {
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) die(sql, db);
    return st;
}

int fx_healthy(sqlite3 *db, int64_t run, const fx_spec *spec) {
    static const struct {
        int id, parent;
        const char *path, *type, *describe;
        int n_params;
    } mods[] = {
        {FX_ROOT, -1, "", "MLP", "", 0},
        {FX_FC1, FX_ROOT, "fc1", "Linear", "in_features=784, out_features=256, bias=True", 200960},
        {FX_BN1, FX_ROOT, "bn1", "BatchNorm1d", "256, eps=1e-05, momentum=0.1", 512},
        {FX_RELU1, FX_ROOT, "relu1", "ReLU", "", 0},
        {FX_DROP1, FX_ROOT, "drop1", "Dropout", "p=0.3", 0},
        {FX_FC2, FX_ROOT, "fc2", "Linear", "in_features=256, out_features=128, bias=True", 32896},
        {FX_BN2, FX_ROOT, "bn2", "BatchNorm1d", "128, eps=1e-05, momentum=0.1", 256},
        {FX_RELU2, FX_ROOT, "relu2", "ReLU", "", 0},
        {FX_DROP2, FX_ROOT, "drop2", "Dropout", "p=0.3", 0},
        {FX_FC3, FX_ROOT, "fc3", "Linear", "in_features=128, out_features=10, bias=True", 1290},
    };
    /* fc1 and fc2 feed a BatchNorm, which subtracts the batch mean: their biases get only
     * rounding noise as gradient (a numpy run of this model: ~4e-9 and ~1e-17); Adam still turns
     * fc1.bias's noise into lr-sized steps, while fc2.bias's is below Adam's eps. */
    const fx_param params[] = {
        {FX_FC1_W, FX_FC1, "fc1.weight", "256x784", 200704, LIN_STD(784) * sqrt(200704.0), 0.4, 0,
         1},
        {FX_FC1_B, FX_FC1, "fc1.bias", "256", 256, LIN_STD(784) * 16, 4e-9, 0, 1},
        {FX_BN1_W, FX_BN1, "bn1.weight", "256", 256, 16, 0.05, 0, 1},
        {FX_BN1_B, FX_BN1, "bn1.bias", "256", 256, 0, 0.05, 1, 1},
        {FX_FC2_W, FX_FC2, "fc2.weight", "128x256", 32768, LIN_STD(256) * sqrt(32768.0), 0.5, 0, 1},
        {FX_FC2_B, FX_FC2, "fc2.bias", "128", 128, LIN_STD(256) * sqrt(128.0), 2e-17, 0, 1e-9},
        {FX_BN2_W, FX_BN2, "bn2.weight", "128", 128, sqrt(128.0), 0.06, 0, 1},
        {FX_BN2_B, FX_BN2, "bn2.bias", "128", 128, 0, 0.06, 1, 1},
        {FX_FC3_W, FX_FC3, "fc3.weight", "10x128", 1280, LIN_STD(128) * sqrt(1280.0), 0.8, 0, 1},
        {FX_FC3_B, FX_FC3, "fc3.bias", "10", 10, LIN_STD(128) * sqrt(10.0), 0.1, 0, 1},
    };
    static const struct {
        int id, module;
        const char *name, *shape;
        int numel;
    } buffers[] = {
        {FX_BN1_RM, FX_BN1, "bn1.running_mean", "256", 256},
        {FX_BN1_RV, FX_BN1, "bn1.running_var", "256", 256},
        {FX_BN1_NBT, FX_BN1, "bn1.num_batches_tracked", "", 1},
        {FX_BN2_RM, FX_BN2, "bn2.running_mean", "128", 128},
        {FX_BN2_RV, FX_BN2, "bn2.running_var", "128", 128},
        {FX_BN2_NBT, FX_BN2, "bn2.num_batches_tracked", "", 1},
    };
    const int nmods = (int)(sizeof mods / sizeof mods[0]);
    const int nparams = (int)(sizeof params / sizeof params[0]);
    const int nbuf = (int)(sizeof buffers / sizeof buffers[0]);
    const double lr = 1e-3, t0 = 1.7e9;
    const int total_train = spec->epochs * spec->train_per_epoch;
    rng_state = spec->seed ? spec->seed : 12345u;

    fx_exec(db, "BEGIN");
    fx_exec(db,
            "INSERT INTO runs (id, started_at, ended_at, heartbeat_at, status, command, host, "
            "pid, engine_version, devices, last_step) VALUES (%lld, %.3f, NULL, NULL, 'finished',"
            " './fashion_mlp --epochs %d', 'test', 4242, '0.1.0', 'cpu', NULL)",
            (long long)run, t0, spec->epochs);
    sqlite3_stmt *m = prep(db, "INSERT INTO modules (run_id, id, parent_id, path, type, "
                               "describe, registered, n_params, first_step) "
                               "VALUES (?1, ?2, ?3, ?4, ?5, ?6, 1, ?7, 0)");
    for (int i = 0; i < nmods; i++) {
        sqlite3_bind_int64(m, 1, run);
        sqlite3_bind_int(m, 2, mods[i].id);
        if (mods[i].parent < 0)
            sqlite3_bind_null(m, 3);
        else
            sqlite3_bind_int(m, 3, mods[i].parent);
        sqlite3_bind_text(m, 4, mods[i].path, -1, SQLITE_STATIC);
        sqlite3_bind_text(m, 5, mods[i].type, -1, SQLITE_STATIC);
        sqlite3_bind_text(m, 6, mods[i].describe, -1, SQLITE_STATIC);
        sqlite3_bind_int(m, 7, mods[i].n_params);
        sqlite_step_done(db, m);
    }
    sqlite3_finalize(m);
    sqlite3_stmt *p = prep(db, "INSERT INTO params (run_id, id, module_id, name, kind, shape, "
                               "numel, requires_grad, in_optimizer, lr) "
                               "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)");
    for (int i = 0; i < nparams + nbuf; i++) {
        int isbuf = i >= nparams;
        sqlite3_bind_int64(p, 1, run);
        sqlite3_bind_int(p, 2, isbuf ? buffers[i - nparams].id : params[i].id);
        sqlite3_bind_int(p, 3, isbuf ? buffers[i - nparams].module : params[i].module);
        sqlite3_bind_text(p, 4, isbuf ? buffers[i - nparams].name : params[i].name, -1,
                          SQLITE_STATIC);
        sqlite3_bind_text(p, 5, isbuf ? "buffer" : "param", -1, SQLITE_STATIC);
        sqlite3_bind_text(p, 6, isbuf ? buffers[i - nparams].shape : params[i].shape, -1,
                          SQLITE_STATIC);
        sqlite3_bind_int(p, 7, isbuf ? buffers[i - nparams].numel : params[i].numel);
        sqlite3_bind_int(p, 8, !isbuf);
        sqlite3_bind_int(p, 9, !isbuf);
        if (isbuf)
            sqlite3_bind_null(p, 10);
        else
            sqlite3_bind_double(p, 10, lr);
        sqlite_step_done(db, p);
    }
    sqlite3_finalize(p);

    sqlite3_stmt *ss = prep(db, "INSERT INTO steps (run_id, step, phase, epoch, loss, lr, "
                                "samples, wall_time, duration_us) "
                                "VALUES (?1, ?2, ?3, ?4, ?5, ?6, 128, ?7, ?8)");
    sqlite3_stmt *ps = prep(db, "INSERT INTO param_stats (run_id, step, param_id, grad_norm, "
                                "update_norm, weight_norm, ratio, nonfinite, device) "
                                "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 0, 'cpu')");
    sqlite3_stmt *mc = prep(
        db, "INSERT INTO module_calls (run_id, step, module_id, seq, caller_id, phase, training, "
            "grad_enabled, in_device, param_device, out_device, in_shape, out_shape, fwd_us, "
            "bwd_us, grad_out_norm, out_mean, out_std, out_zero_frac, dead_frac, out_nonfinite) "
            "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'cpu', ?9, 'cpu', ?10, ?11, ?12, ?13, ?14, "
            "?15, ?16, ?17, ?18, 0)");
    int step = 0, t = 0; /* t: train steps done */
    for (int e = 0; e < spec->epochs; e++) {
        for (int k = 0; k < spec->train_per_epoch + spec->eval_per_epoch; k++, step++) {
            int train = k < spec->train_per_epoch;
            if (train) t++;
            double frac = (double)t / (total_train > 0 ? total_train : 1);
            double loss = 0.32 + 1.98 * exp(-t / 150.0) + 0.06 * (urand() - 0.5);
            if (!train) loss = 0.36 + 1.9 * exp(-t / 150.0) + 0.02 * urand();
            sqlite3_bind_int64(ss, 1, run);
            sqlite3_bind_int(ss, 2, step);
            sqlite3_bind_text(ss, 3, train ? "train" : "eval", -1, SQLITE_STATIC);
            sqlite3_bind_int(ss, 4, e);
            sqlite3_bind_double(ss, 5, loss);
            sqlite3_bind_double(ss, 6, lr);
            sqlite3_bind_double(ss, 7, t0 + step * 0.012);
            sqlite3_bind_double(ss, 8, 12000.0);
            sqlite_step_done(db, ss);

            if (train) {
                /* Adam: per-element steps near lr at first, ~0.3 lr later. */
                double c = 0.3 + 0.6 * exp(-t / 50.0);
                for (int i = 0; i < nparams; i++) {
                    const fx_param *q = &params[i];
                    double g = q->g * (0.7 + 0.6 * urand()) * (1.0 + 0.5 * frac);
                    double upd = q->upd * lr * c * sqrt((double)q->numel) * (0.9 + 0.2 * urand());
                    double w = q->zero_init ? sqrt((double)q->numel) * lr *
                                                  (t < 20 ? t * 0.8 : 16 + 2.0 * sqrt(t - 20.0))
                                            : q->w0 * (1.0 + 0.3 * frac);
                    sqlite3_bind_int64(ps, 1, run);
                    sqlite3_bind_int(ps, 2, step);
                    sqlite3_bind_int(ps, 3, q->id);
                    sqlite3_bind_double(ps, 4, g);
                    sqlite3_bind_double(ps, 5, upd);
                    sqlite3_bind_double(ps, 6, w);
                    sqlite3_bind_double(ps, 7, upd / w);
                    sqlite_step_done(db, ps);
                }
            }
            for (int j = 0; j < nbuf; j++) {
                int nbt = j % 3 == 2;
                double upd = train ? (nbt ? 1.0 : 0.02 + 0.01 * urand()) : 0.0;
                double w = nbt ? (double)t : sqrt((double)buffers[j].numel) * (j % 3 ? 1.1 : 0.2);
                sqlite3_bind_int64(ps, 1, run);
                sqlite3_bind_int(ps, 2, step);
                sqlite3_bind_int(ps, 3, buffers[j].id);
                sqlite3_bind_null(ps, 4);
                sqlite3_bind_double(ps, 5, upd);
                sqlite3_bind_double(ps, 6, w);
                if (w > 0)
                    sqlite3_bind_double(ps, 7, upd / w);
                else
                    sqlite3_bind_null(ps, 7);
                sqlite_step_done(db, ps);
            }
            for (int i = 0; i < nmods; i++) {
                const char *type = mods[i].type;
                int relu = strcmp(type, "ReLU") == 0;
                int has_params = mods[i].n_params > 0;
                static const char *const in_shapes[] = {"128x784", "128x784", "128x256", "128x256",
                                                        "128x256", "128x256", "128x128", "128x128",
                                                        "128x128", "128x128"};
                static const char *const out_shapes[] = {"128x10",  "128x256", "128x256", "128x256",
                                                         "128x256", "128x128", "128x128", "128x128",
                                                         "128x128", "128x10"};
                sqlite3_bind_int64(mc, 1, run);
                sqlite3_bind_int(mc, 2, step);
                sqlite3_bind_int(mc, 3, mods[i].id);
                sqlite3_bind_int(mc, 4, i);
                if (i == 0)
                    sqlite3_bind_null(mc, 5);
                else
                    sqlite3_bind_int(mc, 5, FX_ROOT);
                sqlite3_bind_text(mc, 6, train ? "train" : "eval", -1, SQLITE_STATIC);
                sqlite3_bind_int(mc, 7, train);
                sqlite3_bind_int(mc, 8, train);
                if (has_params)
                    sqlite3_bind_text(mc, 9, "cpu", -1, SQLITE_STATIC);
                else
                    sqlite3_bind_null(mc, 9);
                sqlite3_bind_text(mc, 10, in_shapes[i], -1, SQLITE_STATIC);
                sqlite3_bind_text(mc, 11, out_shapes[i], -1, SQLITE_STATIC);
                sqlite3_bind_double(mc, 12, 50 + 100 * urand());
                if (train) {
                    sqlite3_bind_double(mc, 13, 80 + 100 * urand());
                    sqlite3_bind_double(mc, 14, 0.01 + 0.02 * urand());
                } else {
                    sqlite3_bind_null(mc, 13);
                    sqlite3_bind_null(mc, 14);
                }
                sqlite3_bind_double(mc, 15, relu ? 0.4 : 0.01 * (urand() - 0.5));
                sqlite3_bind_double(mc, 16, relu ? 0.6 : 1.0);
                sqlite3_bind_double(mc, 17, relu ? 0.5 + 0.05 * urand() : 0.0);
                sqlite3_bind_double(mc, 18, relu ? 0.02 * urand() : 0.0);
                sqlite_step_done(db, mc);
            }
        }
    }
    sqlite3_finalize(ss);
    sqlite3_finalize(ps);
    sqlite3_finalize(mc);
    fx_exec(db,
            "UPDATE runs SET ended_at = %.3f, heartbeat_at = %.3f, last_step = %d WHERE id = %lld",
            t0 + step * 0.012, t0 + step * 0.012, step - 1, (long long)run);
    fx_exec(db, "COMMIT");
    return step;
}

int fx_healthy_small(sqlite3 *db, int64_t run) {
    fx_spec s = {.epochs = 3, .train_per_epoch = 80, .eval_per_epoch = 5, .seed = 7};
    return fx_healthy(db, run, &s);
}

/* ------------------------------------------------------------------ findings */

ns_finding *fx_check(sqlite3 *db, int64_t run, const ns_diag_opts *opts, const char *only,
                     size_t *n) {
    ns_finding *f = NULL;
    char err[512] = "";
    if (ns_diag_check(db, run, opts, only, &f, n, err, sizeof err) != 0) {
        fprintf(stderr, "fixture: ns_diag_check failed: %s\n", err);
        abort();
    }
    return f;
}

const ns_finding *fx_find(const ns_finding *f, size_t n, const char *rule, const char *module,
                          int k) {
    for (size_t i = 0; i < n; i++) {
        if (strcmp(f[i].rule, rule) != 0) continue;
        if (module && (!f[i].module || strcmp(f[i].module, module) != 0)) continue;
        if (k-- == 0) return &f[i];
    }
    return NULL;
}

size_t fx_count(const ns_finding *f, size_t n, const char *rule, ns_severity min) {
    size_t c = 0;
    for (size_t i = 0; i < n; i++)
        if ((!rule || strcmp(f[i].rule, rule) == 0) && f[i].severity >= min) c++;
    return c;
}

void fx_dump(const ns_finding *f, size_t n) {
    for (size_t i = 0; i < n; i++)
        fprintf(stderr, "  [%s] %s module=%s param=%s steps=%lld..%lld\n    %s\n    %s\n",
                ns_severity_name(f[i].severity), f[i].rule, f[i].module ? f[i].module : "-",
                f[i].param ? f[i].param : "-", (long long)f[i].first_step,
                (long long)f[i].last_step, f[i].message, f[i].evidence);
}
