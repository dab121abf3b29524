/* Hand-made recordings for the TUI tests: see test_tui_fixture.h. */
#include "test_tui_fixture.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

double tfx_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void tfx_exec(sqlite3 *db, const char *sql) {
    char *err = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK) {
        fprintf(stderr, "fixture SQL failed: %s\n  %s\n", err ? err : "?", sql);
        abort();
    }
}

static char *read_schema(void) {
    const char *root = getenv("NNSCOPE_SOURCE_ROOT");
    char path[4096];
    snprintf(path, sizeof path, "%s/hooks/schema.sql", root ? root : ".");
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "cannot open %s (set NNSCOPE_SOURCE_ROOT to the source tree)\n", path);
        return NULL;
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    if (s && fread(s, 1, (size_t)n, f) != (size_t)n) {
        free(s);
        s = NULL;
    }
    if (s) s[n] = 0;
    fclose(f);
    return s;
}

sqlite3 *tfx_create(const char *path) {
    char side[4200];
    unlink(path);
    snprintf(side, sizeof side, "%s-wal", path);
    unlink(side);
    snprintf(side, sizeof side, "%s-shm", path);
    unlink(side);
    char *schema = read_schema();
    if (!schema) return NULL;
    sqlite3 *db = NULL;
    if (sqlite3_open(path, &db) != SQLITE_OK) {
        fprintf(stderr, "%s: %s\n", path, sqlite3_errmsg(db));
        sqlite3_close(db);
        free(schema);
        return NULL;
    }
    sqlite3_busy_timeout(db, 2000);
    tfx_exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA cache_size=-256");
    tfx_exec(db, schema);
    free(schema);
    return db;
}

void tfx_run(sqlite3 *db, int64_t run_id, const char *status, const char *command,
             double started_at) {
    char *sql = sqlite3_mprintf(
        "INSERT INTO runs (id, started_at, heartbeat_at, status, command, host, pid, "
        "engine_version, devices, cupti_status) VALUES (%lld, %.6f, %.6f, %Q, %Q, 'testhost', "
        "4242, '0.1.0', 'cpu', 'off (CPU build)')",
        (long long)run_id, started_at, started_at, status, command);
    tfx_exec(db, sql);
    sqlite3_free(sql);
}

void tfx_model(sqlite3 *db, int64_t run_id) {
    char sql[8192];
    snprintf(
        sql, sizeof sql,
        "BEGIN;"
        "INSERT INTO modules (run_id, id, parent_id, path, type, describe, registered, n_params,"
        " first_step) VALUES"
        " (%1$lld, 1, NULL, '', 'Net', 'Net()', 1, 0, 0),"
        " (%1$lld, 2, 1, 'fc1', 'Linear', 'Linear(in_features=8, out_features=16, bias=True)',"
        "  1, 144, 0),"
        " (%1$lld, 3, 1, 'act', 'ReLU', 'ReLU()', 1, 0, 0),"
        " (%1$lld, 4, 1, 'fc2', 'Linear', 'Linear(in_features=16, out_features=4, bias=True)',"
        "  1, 68, 0),"
        " (%1$lld, 6, 1, 'bn', 'BatchNorm1d', 'BatchNorm1d(16, eps=1e-05, momentum=0.1)', 1, 32,"
        "  0);"
        "INSERT INTO modules (run_id, id, parent_id, path, type, describe, registered, n_params,"
        " first_step) VALUES (%1$lld, 5, 1, '(unregistered Linear #5)', 'Linear',"
        " 'Linear(in_features=16, out_features=16, bias=True)', 0, 272, 0);"
        "INSERT INTO params (run_id, id, module_id, name, kind, shape, numel, requires_grad,"
        " in_optimizer, lr) VALUES"
        " (%1$lld, 1, 2, 'fc1.weight', 'param', '16x8', 128, 1, 1, 0.01),"
        " (%1$lld, 2, 2, 'fc1.bias', 'param', '16', 16, 1, 1, 0.01),"
        " (%1$lld, 3, 4, 'fc2.weight', 'param', '4x16', 64, 1, 1, 0.01),"
        " (%1$lld, 4, 4, 'fc2.bias', 'param', '4', 4, 1, 1, 0.01),"
        " (%1$lld, 5, 5, '(unregistered Linear #5).weight', 'param', '16x16', 256, 1, 0, NULL),"
        " (%1$lld, 6, 5, '(unregistered Linear #5).bias', 'param', '16', 16, 1, 0, NULL),"
        " (%1$lld, 7, 6, 'bn.weight', 'param', '16', 16, 1, 1, 0.01),"
        " (%1$lld, 8, 6, 'bn.bias', 'param', '16', 16, 1, 1, 0.01),"
        " (%1$lld, 9, 6, 'bn.running_mean', 'buffer', '16', 16, 0, 0, NULL),"
        " (%1$lld, 10, 6, 'bn.running_var', 'buffer', '16', 16, 0, 0, NULL);"
        "INSERT INTO events (run_id, step, kind, module_id, detail, wall_time) VALUES"
        " (%1$lld, 0, 'unregistered_call', 5, '(model)', 0);"
        "COMMIT;",
        (long long)run_id);
    tfx_exec(db, sql);
}

void tfx_steps(sqlite3 *db, int64_t run_id, int64_t from, int64_t to, double t0) {
    sqlite3_stmt *ps, *mc, *st, *hb;
    const char *ps_sql = "INSERT INTO param_stats (run_id, step, param_id, grad_norm, update_norm,"
                         " weight_norm, ratio, nonfinite, device) VALUES (?,?,?,?,?,?,?,0,'cpu')";
    const char *mc_sql = "INSERT INTO module_calls (run_id, step, module_id, seq, caller_id, "
                         "phase, training, grad_enabled, in_device, param_device, out_device, "
                         "fwd_us, bwd_us, out_zero_frac) VALUES (?,?,?,?,?,'train',1,1,'cpu',"
                         "?,'cpu',12.5,20.0,?)";
    const char *st_sql = "INSERT INTO steps (run_id, step, phase, epoch, loss, lr, samples, "
                         "wall_time, duration_us) VALUES (?,?,'train',?,?,0.01,32,?,10000)";
    const char *hb_sql = "UPDATE runs SET last_step = ?, heartbeat_at = ? WHERE id = ?";
    if (sqlite3_prepare_v2(db, ps_sql, -1, &ps, NULL) ||
        sqlite3_prepare_v2(db, mc_sql, -1, &mc, NULL) ||
        sqlite3_prepare_v2(db, st_sql, -1, &st, NULL) ||
        sqlite3_prepare_v2(db, hb_sql, -1, &hb, NULL)) {
        fprintf(stderr, "fixture prepare: %s\n", sqlite3_errmsg(db));
        abort();
    }
    tfx_exec(db, "BEGIN");
    for (int64_t s = from; s <= to; s++) {
        for (int p = 1; p <= 10; p++) {
            int buffer = p >= 9, unreg = p == 5 || p == 6;
            double w = 1.0 + 0.1 * p + 0.001 * (double)s;
            double g = buffer ? NAN : 0.5 * exp(-(double)s / 200.0) * (1 + 0.1 * p);
            double u = unreg ? 0.0 : buffer ? 0.0005 : 1e-3 * w;
            sqlite3_reset(ps);
            sqlite3_bind_int64(ps, 1, run_id);
            sqlite3_bind_int64(ps, 2, s);
            sqlite3_bind_int(ps, 3, p);
            if (isnan(g))
                sqlite3_bind_null(ps, 4);
            else
                sqlite3_bind_double(ps, 4, g);
            sqlite3_bind_double(ps, 5, u);
            sqlite3_bind_double(ps, 6, w);
            sqlite3_bind_double(ps, 7, u / w);
            if (sqlite3_step(ps) != SQLITE_DONE) abort();
        }
        static const int order[] = {2, 5, 6, 3, 4};
        for (int i = 0; i < 5; i++) {
            int mod = order[i];
            sqlite3_reset(mc);
            sqlite3_bind_int64(mc, 1, run_id);
            sqlite3_bind_int64(mc, 2, s);
            sqlite3_bind_int(mc, 3, mod);
            sqlite3_bind_int(mc, 4, i + 1);
            sqlite3_bind_int(mc, 5, 1);
            if (mod == 3)
                sqlite3_bind_null(mc, 6);
            else
                sqlite3_bind_text(mc, 6, "cpu", -1, SQLITE_STATIC);
            sqlite3_bind_double(mc, 7, mod == 3 ? 0.4 + 0.1 * sin((double)s / 10) : 0.0);
            if (sqlite3_step(mc) != SQLITE_DONE) abort();
        }
        sqlite3_reset(st);
        sqlite3_bind_int64(st, 1, run_id);
        sqlite3_bind_int64(st, 2, s);
        sqlite3_bind_int64(st, 3, s / 100);
        sqlite3_bind_double(st, 4, 2.3 * exp(-(double)s / 300.0) + 0.05);
        sqlite3_bind_double(st, 5, t0 + 0.01 * (double)s);
        if (sqlite3_step(st) != SQLITE_DONE) abort();
    }
    sqlite3_bind_int64(hb, 1, to);
    sqlite3_bind_double(hb, 2, tfx_now());
    sqlite3_bind_int64(hb, 3, run_id);
    if (sqlite3_step(hb) != SQLITE_DONE) abort();
    tfx_exec(db, "COMMIT");
    sqlite3_finalize(ps);
    sqlite3_finalize(mc);
    sqlite3_finalize(st);
    sqlite3_finalize(hb);
}

void tfx_finish(sqlite3 *db, int64_t run_id, double ended_at) {
    char *sql = sqlite3_mprintf("UPDATE runs SET status = 'finished', ended_at = %.6f, "
                                "heartbeat_at = %.6f WHERE id = %lld",
                                ended_at, ended_at, (long long)run_id);
    tfx_exec(db, sql);
    sqlite3_free(sql);
}
