/* Data extraction: SQL over the recording into the view model. See fetch.h. */
#include "fetch.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Every statement the TUI runs, by name. ?1 is always the run id. The history queries name
 * the schema's (run_id, param_id|module_id, step) indexes: without statistics SQLite prefers
 * the step-major primary key and would scan every step of every parameter. */
enum {
    Q_TABLES,
    Q_RUNS,
    Q_MOD_COUNT,
    Q_MODS,
    Q_PARAM_COUNT,
    Q_PARAMS,
    Q_STEP_MAX,
    Q_STEP_MIN,
    Q_TRAIN_BACK,
    Q_STEPS,
    Q_STEPS_SAMPLED,
    Q_STATS,
    Q_CALLS,
    Q_EVENTS,
    Q_KERNELS,
    Q_STRING,
    Q_DET_MODULE,
    Q_DET_PARAM,
    Q_DET_ZERO,
    Q_COUNT
};

static const struct {
    const char *name, *sql;
} queries[Q_COUNT] = {
    [Q_TABLES] = {"tables", "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN "
                            "('runs', 'modules', 'params', 'steps', 'param_stats', "
                            "'module_calls', 'events', 'kernels', 'strings')"},
    [Q_RUNS] = {"runs", "SELECT id, started_at, ended_at, heartbeat_at, status, status_detail, "
                        "command, host, pid, engine_version, devices, dropped, sample_every, "
                        "last_step, cupti_status FROM runs ORDER BY id"},
    [Q_MOD_COUNT] = {"module_count", "SELECT count(*), max(id) FROM modules WHERE run_id = ?1"},
    [Q_MODS] = {"modules", "SELECT id, parent_id, path, type, describe, registered, "
                           "created_in_forward, creator_id, n_params, first_step "
                           "FROM modules WHERE run_id = ?1 AND id > ?2 ORDER BY id"},
    [Q_PARAM_COUNT] = {"param_count", "SELECT count(*), max(id) FROM params WHERE run_id = ?1"},
    [Q_PARAMS] = {"params", "SELECT id, module_id, name, kind, shape, numel, requires_grad, "
                            "in_optimizer, lr FROM params WHERE run_id = ?1 AND id > ?2 "
                            "ORDER BY id"},
    [Q_STEP_MAX] = {"step_max", "SELECT max(step) FROM steps WHERE run_id = ?1"},
    [Q_STEP_MIN] = {"step_min", "SELECT min(step) FROM steps WHERE run_id = ?1"},
    /* The (?3 + 1)-th last train step at or before ?2 (sparklines count train steps). */
    [Q_TRAIN_BACK] = {"train_back", "SELECT step FROM steps WHERE run_id = ?1 AND step <= ?2 "
                                    "AND phase = 'train' ORDER BY step DESC LIMIT 1 OFFSET ?3"},
    [Q_STEPS] = {"steps", "SELECT step, phase, epoch, loss, lr, wall_time FROM steps "
                          "WHERE run_id = ?1 AND step > ?2 AND step <= ?3 ORDER BY step"},
    /* Steps ?2, ?2 + ?4, ... <= ?3 by primary-key lookups (a long run's first read). */
    [Q_STEPS_SAMPLED] = {"steps_sampled",
                         "WITH RECURSIVE k (s) AS (SELECT ?2 UNION ALL SELECT s + ?4 FROM k "
                         "WHERE s + ?4 <= ?3) SELECT st.step, st.phase, st.epoch, st.loss, st.lr, "
                         "st.wall_time FROM k JOIN steps st ON st.run_id = ?1 AND st.step = k.s "
                         "ORDER BY st.step"},
    [Q_STATS] = {"param_stats",
                 "SELECT step, param_id, grad_norm, update_norm, weight_norm, ratio, nonfinite, "
                 "device FROM param_stats WHERE run_id = ?1 AND step > ?2 AND step <= ?3 "
                 "ORDER BY step, param_id"},
    [Q_CALLS] = {"module_calls", "SELECT step, module_id, phase, training, "
                                 "COALESCE(param_device, out_device, in_device), out_zero_frac "
                                 "FROM module_calls WHERE run_id = ?1 AND step > ?2 AND step <= ?3 "
                                 "ORDER BY step, seq"},
    [Q_EVENTS] = {"events", "SELECT id, step, kind, module_id, param_id, detail, value, "
                            "wall_time FROM events WHERE id > ?2 AND run_id = ?1 "
                            "ORDER BY id LIMIT 10000"},
    [Q_KERNELS] = {"kernels", "SELECT rowid, module_id, phase, kind, name_id, end_ns - start_ns, "
                              "bytes FROM kernels WHERE rowid > ?2 AND run_id = ?1 "
                              "ORDER BY rowid LIMIT ?3"},
    [Q_STRING] = {"string", "SELECT s FROM strings WHERE id = ?1"},
    /* History of one module or parameter. The steps come from the (run_id, id, step) index
     * alone (every ?6-th step counting from ?5 on a sampled first read), then each row is
     * one primary-key lookup: the table is step-major, so a parameter's rows are spread
     * over the whole file and reading them all would cost one page per step. */
    [Q_DET_MODULE] = {"detail_module",
                      "WITH p AS MATERIALIZED (SELECT id FROM params WHERE run_id = ?1 "
                      "AND module_id = ?2 AND kind = 'param'), "
                      "k AS MATERIALIZED (SELECT DISTINCT step FROM param_stats INDEXED BY "
                      "param_stats_param WHERE run_id = ?1 AND param_id IN (SELECT id FROM p) "
                      "AND step > ?3 AND step <= ?4 AND (step - ?5) % ?6 = ?6 - 1) "
                      "SELECT s.step, sum(s.grad_norm * s.grad_norm), count(s.grad_norm), "
                      "sum(s.update_norm * s.update_norm), sum(s.weight_norm * s.weight_norm), "
                      "sum(s.nonfinite) FROM k JOIN param_stats s ON s.run_id = ?1 "
                      "AND s.step = k.step AND s.param_id IN (SELECT id FROM p) "
                      "GROUP BY s.step ORDER BY s.step"},
    [Q_DET_PARAM] = {"detail_param",
                     "WITH k AS MATERIALIZED (SELECT step FROM param_stats INDEXED BY "
                     "param_stats_param WHERE run_id = ?1 AND param_id = ?2 AND step > ?3 "
                     "AND step <= ?4 AND (step - ?5) % ?6 = ?6 - 1) "
                     "SELECT s.step, s.grad_norm, s.update_norm, s.weight_norm, s.ratio, "
                     "s.nonfinite FROM k JOIN param_stats s ON s.run_id = ?1 "
                     "AND s.step = k.step AND s.param_id = ?2 ORDER BY s.step"},
    [Q_DET_ZERO] = {"detail_zero",
                    "WITH k AS MATERIALIZED (SELECT DISTINCT step FROM module_calls INDEXED BY "
                    "module_calls_module WHERE run_id = ?1 AND module_id = ?2 AND step > ?3 "
                    "AND step <= ?4 AND (step - ?5) % ?6 = ?6 - 1) "
                    "SELECT c.step, avg(c.out_zero_frac) FROM k JOIN module_calls c INDEXED BY "
                    "module_calls_module ON c.run_id = ?1 AND c.module_id = ?2 "
                    "AND c.step = k.step WHERE c.out_zero_frac IS NOT NULL "
                    "GROUP BY c.step ORDER BY c.step"},
};

struct ns_tui_source {
    char *path;
    sqlite3 *db;
    sqlite3_stmt *st[Q_COUNT];
    int prepared;
    ns_tui_src_state state;
    char err[512];
    int64_t data_version;
    int have_version;
    int dirty; /* read again at the next poll even without a new commit */
    dev_t dev; /* the file that is open: a new file at the path is reopened */
    ino_t ino;
    /* incremental cursors of the shown run */
    int64_t run_id;
    int64_t mods_max, params_max; /* highest id read; INT64_MIN: none */
    int64_t closed;               /* last closed step read; -1 none */
    int64_t events_max;
    int64_t kern_rowid;
    int kern_done;
};

ns_tui_source *ns_tui_source_new(const char *path) {
    ns_tui_source *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->path = strdup(path);
    if (!s->path) {
        free(s);
        return NULL;
    }
    s->run_id = -1;
    ns_tui_source_select_run(s, NULL, -1);
    return s;
}

static void close_db(ns_tui_source *s) {
    for (int i = 0; i < Q_COUNT; i++) {
        sqlite3_finalize(s->st[i]);
        s->st[i] = NULL;
    }
    s->prepared = 0;
    if (s->db) sqlite3_close(s->db);
    s->db = NULL;
    s->have_version = 0;
}

void ns_tui_source_free(ns_tui_source *s) {
    if (!s) return;
    close_db(s);
    free(s->path);
    free(s);
}

ns_tui_src_state ns_tui_source_state(const ns_tui_source *s) {
    return s->state;
}

const char *ns_tui_source_error(const ns_tui_source *s) {
    return s->err;
}

sqlite3 *ns_tui_source_db(ns_tui_source *s) {
    return s->db;
}

int ns_tui_source_kernels_done(const ns_tui_source *s) {
    return s->kern_done;
}

void ns_tui_source_select_run(ns_tui_source *s, ns_tui_model *m, int64_t run_id) {
    s->run_id = run_id;
    s->mods_max = s->params_max = INT64_MIN;
    s->closed = -1;
    s->events_max = 0;
    s->kern_rowid = 0;
    s->kern_done = 0;
    s->dirty = 1;
    if (m) {
        m->run_id = run_id;
        ns_tui_model_reset_run(m);
    }
}

static int fail(ns_tui_source *s, const char *what) {
    snprintf(s->err, sizeof s->err, "%s: %s: %s", s->path, what,
             s->db ? sqlite3_errmsg(s->db) : "cannot open");
    s->state = NS_SRC_ERROR;
    s->dirty = 1; /* try again at the next poll: the cause may pass */
    return -1;
}

static double col_double(sqlite3_stmt *st, int i) {
    return sqlite3_column_type(st, i) == SQLITE_NULL ? NAN : sqlite3_column_double(st, i);
}

static int64_t col_int(sqlite3_stmt *st, int i) {
    return sqlite3_column_type(st, i) == SQLITE_NULL ? -1 : sqlite3_column_int64(st, i);
}

static const char *col_text(sqlite3_stmt *st, int i) {
    return (const char *)sqlite3_column_text(st, i);
}

static char *col_dup(sqlite3_stmt *st, int i) {
    const char *t = col_text(st, i);
    return t ? strdup(t) : NULL;
}

static int open_db(ns_tui_source *s) {
    struct stat sb;
    if (stat(s->path, &sb) != 0) {
        s->state = NS_SRC_NO_FILE;
        return 0;
    }
    /* One thread uses this connection: no per-call mutex (it is most of a row's cost). */
    if (sqlite3_open_v2(s->path, &s->db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL) !=
        SQLITE_OK) {
        int rc = fail(s, "cannot open");
        close_db(s);
        return rc;
    }
    s->dev = sb.st_dev;
    s->ino = sb.st_ino;
    sqlite3_busy_timeout(s->db, 1000);
    /* The TUI reads each new page about once: a small cache keeps its memory flat. */
    sqlite3_exec(s->db, "PRAGMA cache_size = -512", NULL, NULL, NULL);
    s->state = NS_SRC_NOT_READY;
    return 0;
}

/* Checks for the recording's tables and prepares the statements once they are there.
 * Returns 1 ready, 0 not yet, -1 error. */
static int prepare(ns_tui_source *s) {
    if (s->prepared) return 1;
    sqlite3_stmt *t = NULL;
    if (sqlite3_prepare_v2(s->db, queries[Q_TABLES].sql, -1, &t, NULL) != SQLITE_OK)
        return fail(s, "cannot read the schema (not an SQLite database?)");
    int rc = sqlite3_step(t);
    int n = rc == SQLITE_ROW ? sqlite3_column_int(t, 0) : -1;
    sqlite3_finalize(t);
    if (rc != SQLITE_ROW) return fail(s, "cannot read the schema (not an SQLite database?)");
    if (n == 0) return 0;
    if (n < 9) {
        snprintf(s->err, sizeof s->err,
                 "%s: not an nnscope recording (only %d of its 9 tables are present)", s->path, n);
        s->state = NS_SRC_ERROR;
        return -1;
    }
    for (int i = 0; i < Q_COUNT; i++) {
        int rc = sqlite3_prepare_v3(s->db, queries[i].sql, -1, SQLITE_PREPARE_PERSISTENT, &s->st[i],
                                    NULL);
        if (rc != SQLITE_OK && strstr(queries[i].sql, "INDEXED BY")) {
            /* The history indexes of schema.sql are missing: same query, any plan. */
            char sql[2048];
            snprintf(sql, sizeof sql, "%s", queries[i].sql);
            for (char *ib; (ib = strstr(sql, "INDEXED BY")) != NULL;) {
                char *end = strchr(ib + strlen("INDEXED BY "), ' ');
                memmove(ib, end, strlen(end) + 1);
            }
            rc = sqlite3_prepare_v3(s->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &s->st[i], NULL);
        }
        if (rc != SQLITE_OK) {
            char what[96];
            snprintf(what, sizeof what, "not an nnscope recording (query '%s')", queries[i].name);
            rc = fail(s, what);
            for (int j = 0; j <= i; j++) {
                sqlite3_finalize(s->st[j]);
                s->st[j] = NULL;
            }
            return rc;
        }
    }
    s->prepared = 1;
    return 1;
}

static sqlite3_stmt *bind6(ns_tui_source *s, int q, int64_t a, int64_t b, int64_t c, int64_t d,
                           int64_t e, int64_t f) {
    sqlite3_stmt *st = s->st[q];
    sqlite3_reset(st);
    int n = sqlite3_bind_parameter_count(st);
    int64_t v[6] = {a, b, c, d, e, f};
    for (int i = 0; i < n && i < 6; i++) sqlite3_bind_int64(st, i + 1, v[i]);
    return st;
}

static sqlite3_stmt *bind(ns_tui_source *s, int q, int64_t a, int64_t b, int64_t c, int64_t d) {
    return bind6(s, q, a, b, c, d, 0, 1);
}

static int read_runs(ns_tui_source *s, ns_tui_model *m) {
    sqlite3_stmt *st = bind(s, Q_RUNS, 0, 0, 0, 0);
    ns_tui_run *runs = NULL;
    int n = 0, cap = 0, rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (n == cap) {
            cap = cap ? cap * 2 : 4;
            ns_tui_run *r = realloc(runs, sizeof *runs * (size_t)cap);
            if (!r) break;
            runs = r;
        }
        ns_tui_run *r = &runs[n++];
        memset(r, 0, sizeof *r);
        r->id = sqlite3_column_int64(st, 0);
        r->started_at = col_double(st, 1);
        r->ended_at = col_double(st, 2);
        r->heartbeat_at = col_double(st, 3);
        r->status = col_dup(st, 4);
        r->status_detail = col_dup(st, 5);
        r->command = col_dup(st, 6);
        r->host = col_dup(st, 7);
        r->pid = col_int(st, 8);
        r->engine_version = col_dup(st, 9);
        r->devices = col_dup(st, 10);
        r->dropped = col_int(st, 11);
        r->sample_every = col_int(st, 12);
        r->last_step = col_int(st, 13);
        r->cupti_status = col_dup(st, 14);
    }
    sqlite3_reset(st);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
        for (int i = 0; i < n; i++) ns_tui_run_clear(&runs[i]);
        free(runs);
        return fail(s, "reading runs");
    }
    ns_tui_model_set_runs(m, runs, n);
    return 0;
}

/* New module rows: ids above the last seen; when the count still differs (rows inserted
 * with lower ids), one full pass that skips the known ones. */
static int read_modules(ns_tui_source *s, ns_tui_model *m, int *added) {
    sqlite3_stmt *st = bind(s, Q_MOD_COUNT, s->run_id, 0, 0, 0);
    if (sqlite3_step(st) != SQLITE_ROW) return fail(s, "counting modules");
    int64_t count = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    for (int pass = 0; pass < 2; pass++) {
        /* Over the cap the count cannot match: do not re-read the table every poll. */
        if (count == m->nmods + m->mods_dropped || (pass == 1 && m->mods_dropped)) break;
        int64_t after = pass == 0 ? s->mods_max : INT64_MIN;
        st = bind(s, Q_MODS, s->run_id, after, 0, 0);
        int rc;
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
            int64_t id = sqlite3_column_int64(st, 0);
            if (id > s->mods_max) s->mods_max = id;
            if (ns_tui_model_add_module(m, id, col_int(st, 1), col_text(st, 2), col_text(st, 3),
                                        col_text(st, 4), sqlite3_column_int(st, 5),
                                        sqlite3_column_int(st, 6), col_int(st, 7),
                                        sqlite3_column_int64(st, 8), col_int(st, 9)) >= 0)
                (*added)++;
        }
        sqlite3_reset(st);
        if (rc != SQLITE_DONE) return fail(s, "reading modules");
    }
    return 0;
}

static int read_params(ns_tui_source *s, ns_tui_model *m, int *added) {
    sqlite3_stmt *st = bind(s, Q_PARAM_COUNT, s->run_id, 0, 0, 0);
    if (sqlite3_step(st) != SQLITE_ROW) return fail(s, "counting params");
    int64_t count = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    for (int pass = 0; pass < 2; pass++) {
        if (count == m->nparams + m->params_dropped || (pass == 1 && m->params_dropped)) break;
        int64_t after = pass == 0 ? s->params_max : INT64_MIN;
        st = bind(s, Q_PARAMS, s->run_id, after, 0, 0);
        int rc;
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
            int64_t id = sqlite3_column_int64(st, 0);
            if (id > s->params_max) s->params_max = id;
            const char *kind = col_text(st, 3);
            if (ns_tui_model_add_param(m, id, sqlite3_column_int64(st, 1), col_text(st, 2),
                                       kind && strcmp(kind, "buffer") == 0, col_text(st, 4),
                                       sqlite3_column_int64(st, 5), sqlite3_column_int(st, 6),
                                       sqlite3_column_int(st, 7), col_double(st, 8)) >= 0)
                (*added)++;
        }
        sqlite3_reset(st);
        if (rc != SQLITE_DONE) return fail(s, "reading params");
    }
    return 0;
}

/* Steps, param_stats and module_calls in (s->closed, newest closed step]. */
static int read_steps(ns_tui_source *s, ns_tui_model *m, int *added) {
    sqlite3_stmt *st = bind(s, Q_STEP_MAX, s->run_id, 0, 0, 0);
    if (sqlite3_step(st) != SQLITE_ROW) return fail(s, "reading steps");
    int64_t closed = col_int(st, 0);
    sqlite3_reset(st);
    if (closed <= s->closed) return 0;
    int rc = SQLITE_DONE;
    int64_t lo_steps = s->closed, lo_stats = s->closed;
    if (s->closed < 0) {
        /* First read: sparklines need the last NS_TUI_SPARK_N train steps only, and a long loss
         * history is sampled to at most NS_TUI_COLD_N steps (every stride-th one, the loss
         * ring then keeps that spacing), so the cost does not grow with the run. */
        lo_stats = closed - NS_TUI_SPARK_N;
        st = bind(s, Q_STEP_MIN, s->run_id, 0, 0, 0);
        if (sqlite3_step(st) != SQLITE_ROW) return fail(s, "reading steps");
        int64_t first = col_int(st, 0), span = closed - first + 1, stride = 1;
        sqlite3_reset(st);
        st = bind(s, Q_TRAIN_BACK, s->run_id, closed, NS_TUI_SPARK_N - 1, 0);
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) lo_stats = sqlite3_column_int64(st, 0) - 1;
        sqlite3_reset(st);
        if (rc != SQLITE_ROW && rc != SQLITE_DONE) return fail(s, "reading steps");
        if (lo_stats < first - 1 || rc == SQLITE_DONE) lo_stats = first - 1;
        rc = SQLITE_DONE;
        while (span / stride > NS_TUI_COLD_N) stride *= 2;
        lo_steps = first - 1;
        if (stride > 1) {
            int64_t end = first + (span / stride) * stride - 1;
            ns_ring_set_stride(&m->loss, stride);
            ns_ring_set_stride(&m->eval_loss, stride);
            m->sampled_stride = stride;
            st = bind(s, Q_STEPS_SAMPLED, s->run_id, first + stride - 1, end, stride);
            while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                const char *phase = col_text(st, 1);
                ns_tui_model_add_step(m, sqlite3_column_int64(st, 0),
                                      phase && !strcmp(phase, "train"), col_int(st, 2),
                                      col_double(st, 3), col_double(st, 4), col_double(st, 5));
                (*added)++;
            }
            sqlite3_reset(st);
            m->sampled_stride = 0;
            if (rc != SQLITE_DONE) return fail(s, "reading steps");
            lo_steps = end;
        }
    }
    st = bind(s, Q_STEPS, s->run_id, lo_steps, closed, 0);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *phase = col_text(st, 1);
        ns_tui_model_add_step(m, sqlite3_column_int64(st, 0), phase && !strcmp(phase, "train"),
                              col_int(st, 2), col_double(st, 3), col_double(st, 4),
                              col_double(st, 5));
        (*added)++;
    }
    sqlite3_reset(st);
    if (rc != SQLITE_DONE) return fail(s, "reading steps");
    st = bind(s, Q_STATS, s->run_id, lo_stats, closed, 0);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        ns_tui_model_add_stat(m, sqlite3_column_int64(st, 0), sqlite3_column_int64(st, 1),
                              col_double(st, 2), col_double(st, 3), col_double(st, 4),
                              col_double(st, 5), sqlite3_column_int64(st, 6), col_text(st, 7));
    }
    sqlite3_reset(st);
    ns_tui_model_flush_stats(m);
    if (rc != SQLITE_DONE) return fail(s, "reading param_stats");
    st = bind(s, Q_CALLS, s->run_id, lo_stats, closed, 0);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *phase = col_text(st, 2);
        ns_tui_model_add_call(m, sqlite3_column_int64(st, 0), sqlite3_column_int64(st, 1),
                              phase && !strcmp(phase, "train"), sqlite3_column_int(st, 3),
                              col_text(st, 4), col_double(st, 5));
    }
    sqlite3_reset(st);
    if (rc != SQLITE_DONE) return fail(s, "reading module_calls");
    s->closed = closed;
    return 0;
}

static int read_events(ns_tui_source *s, ns_tui_model *m, int *added) {
    sqlite3_stmt *st = bind(s, Q_EVENTS, s->run_id, s->events_max, 0, 0);
    int rc, n = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        int64_t id = sqlite3_column_int64(st, 0);
        s->events_max = id;
        ns_tui_model_add_event(m, id, col_int(st, 1), col_text(st, 2), col_int(st, 3),
                               col_int(st, 4), col_text(st, 5), col_double(st, 6),
                               col_double(st, 7));
        n++;
    }
    sqlite3_reset(st);
    if (rc != SQLITE_DONE) return fail(s, "reading events");
    if (n == 10000) s->dirty = 1; /* more remain: continue at the next poll */
    *added += n;
    return 0;
}

int ns_tui_source_poll(ns_tui_source *s, ns_tui_model *m, int force) {
    struct stat sb;
    if (s->db && (stat(s->path, &sb) != 0 || sb.st_ino != s->ino || sb.st_dev != s->dev)) {
        /* The file was removed or replaced (a new recording at the same path): start over
         * on the new file, same run id. */
        close_db(s);
        ns_tui_source_select_run(s, m, s->run_id);
        ns_tui_model_set_runs(m, NULL, 0);
        s->state = NS_SRC_NO_FILE;
    }
    if (!s->db) {
        if (open_db(s) != 0) return -1;
        if (!s->db) return 0;
    }
    sqlite3_stmt *pv = NULL;
    int64_t dv = 0;
    if (sqlite3_prepare_v2(s->db, "PRAGMA data_version", -1, &pv, NULL) != SQLITE_OK ||
        sqlite3_step(pv) != SQLITE_ROW) {
        sqlite3_finalize(pv);
        return fail(s, "cannot read (not an SQLite database?)");
    }
    dv = sqlite3_column_int64(pv, 0);
    sqlite3_finalize(pv);
    if (s->have_version && dv == s->data_version && !s->dirty && !force) return 0;
    if (sqlite3_exec(s->db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK) return fail(s, "BEGIN");
    int rc = prepare(s);
    int changed = 0;
    s->dirty = 0;
    if (rc == 1) {
        s->state = NS_SRC_READY;
        rc = read_runs(s, m);
        changed = 1;
        if (rc == 0 && s->run_id >= 0 && ns_tui_model_run(m)) {
            int added = 0;
            rc = read_modules(s, m, &added);
            if (rc == 0) rc = read_params(s, m, &added);
            if (rc == 0 && !m->linked) ns_tui_model_link(m);
            if (rc == 0) rc = read_steps(s, m, &added);
            if (rc == 0) rc = read_events(s, m, &added);
        }
    }
    sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL);
    if (rc < 0) return -1;
    s->data_version = dv;
    s->have_version = 1;
    if (rc == 0 && !s->prepared) s->state = NS_SRC_NOT_READY;
    if (s->state != NS_SRC_ERROR) s->err[0] = 0;
    return changed;
}

/* Pushes one history row into the detail rings: as a plain sample, or (sampled first read)
 * as a point standing for a whole bucket. */
static void detail_push(ns_ring *r, int64_t step, double v, int sampled) {
    if (sampled)
        ns_ring_push_point(r, step, v);
    else
        ns_ring_push(r, step, v);
}

/* Reads the detail rows of steps (from, upto] whose offset from `base` is stride-1 modulo
 * stride (every step when stride is 1). Returns the rows read, or -1. */
static int detail_rows(ns_tui_source *s, ns_tui_model *m, int64_t zmod, int64_t from, int64_t upto,
                       int64_t base, int64_t stride) {
    ns_tui_detail *d = &m->det;
    int sampled = stride > 1, rc, n = 0;
    sqlite3_stmt *st;
    if (d->kind == NS_DETAIL_MODULE) {
        st = bind6(s, Q_DET_MODULE, s->run_id, d->id, from, upto, base, stride);
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
            int64_t step = sqlite3_column_int64(st, 0);
            double g2 = col_double(st, 1), u2 = col_double(st, 3), w2 = col_double(st, 4);
            int64_t ng = sqlite3_column_int64(st, 2), nf = col_int(st, 5);
            double g = ng > 0 ? sqrt(g2) : (nf > 0 ? INFINITY : NAN);
            detail_push(&d->grad, step, g, sampled);
            detail_push(&d->ratio, step, w2 > 0 ? sqrt(u2) / sqrt(w2) : NAN, sampled);
            detail_push(&d->wnorm, step, isnan(w2) ? NAN : sqrt(w2), sampled);
            n++;
        }
    } else {
        st = bind6(s, Q_DET_PARAM, s->run_id, d->id, from, upto, base, stride);
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
            int64_t step = sqlite3_column_int64(st, 0), nf = col_int(st, 5);
            double g = col_double(st, 1);
            if (isnan(g) && nf > 0) g = INFINITY;
            detail_push(&d->grad, step, g, sampled);
            detail_push(&d->ratio, step, col_double(st, 4), sampled);
            detail_push(&d->wnorm, step, col_double(st, 3), sampled);
            n++;
        }
    }
    sqlite3_reset(st);
    if (rc != SQLITE_DONE) return fail(s, "reading the detail history");
    st = bind6(s, Q_DET_ZERO, s->run_id, zmod, from, upto, base, stride);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        detail_push(&d->zero, sqlite3_column_int64(st, 0), col_double(st, 1), sampled);
        n++;
    }
    sqlite3_reset(st);
    if (rc != SQLITE_DONE) return fail(s, "reading the activation history");
    return n;
}

int ns_tui_source_detail(ns_tui_source *s, ns_tui_model *m) {
    ns_tui_detail *d = &m->det;
    if (!s->prepared || d->kind == NS_DETAIL_NONE || s->run_id < 0) return 0;
    int64_t upto = m->last_step;
    if (upto <= d->cursor) return 0;
    int64_t zmod = d->id;
    if (d->kind == NS_DETAIL_PARAM) {
        int pi = ns_tui_model_find_param(m, d->id);
        zmod = pi >= 0 ? m->params[pi].module_id : -1;
    }
    if (sqlite3_exec(s->db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK) return fail(s, "BEGIN");
    int added = 0, n = 0;
    if (d->cursor < 0 && m->first_step >= 0) {
        /* First read of a long history: every stride-th step only (the step ends a bucket of
         * stride steps), so the cost is bounded whatever the run's length; the rings keep
         * that spacing for the steps that follow. */
        int64_t first = m->first_step, span = upto - first + 1, stride = 1;
        while (span / stride > NS_TUI_COLD_N) stride *= 2;
        if (stride > 1) {
            int64_t end = first + (span / stride) * stride - 1;
            ns_ring_set_stride(&d->grad, stride);
            ns_ring_set_stride(&d->ratio, stride);
            ns_ring_set_stride(&d->wnorm, stride);
            ns_ring_set_stride(&d->zero, stride);
            n = detail_rows(s, m, zmod, first - 1, end, first, stride);
            if (n >= 0) {
                added += n;
                d->cursor = end;
            }
        }
    }
    if (n >= 0 && upto > d->cursor) {
        n = detail_rows(s, m, zmod, d->cursor, upto, 0, 1);
        if (n >= 0) added += n;
    }
    sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL);
    if (n < 0) return -1;
    d->cursor = upto;
    if (d->kind == NS_DETAIL_MODULE) {
        int mi = ns_tui_model_find_module(m, d->id);
        d->nsources = 0;
        if (mi >= 0 && m->linked) {
            for (int i = 0; i < m->mods[mi].nparams; i++)
                d->nsources += !m->params[m->mod_params[m->mods[mi].first_param + i]].is_buffer;
        }
    } else {
        d->nsources = 1;
    }
    if (added) m->generation++;
    return added > 0;
}

int ns_tui_source_kernels(ns_tui_source *s, ns_tui_model *m, int max_rows) {
    if (!s->prepared || s->run_id < 0) return 0;
    if (sqlite3_exec(s->db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK) return fail(s, "BEGIN");
    sqlite3_stmt *st = bind(s, Q_KERNELS, s->run_id, s->kern_rowid, max_rows, 0);
    int rc, n = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        s->kern_rowid = sqlite3_column_int64(st, 0);
        const char *kind = col_text(st, 3);
        int k = !kind || !strcmp(kind, "kernel") ? 0 : (!strcmp(kind, "memcpy") ? 1 : 2);
        ns_tui_model_add_kernel(m, col_int(st, 1), col_text(st, 2), k, col_int(st, 4),
                                sqlite3_column_int64(st, 5), col_int(st, 6));
        n++;
    }
    sqlite3_reset(st);
    if (rc == SQLITE_DONE) {
        /* Names of kernels seen for the first time. */
        sqlite3_stmt *q = s->st[Q_STRING];
        for (int i = 0; i < m->nkernels; i++) {
            if (m->kernels[i].name) continue;
            sqlite3_reset(q);
            sqlite3_bind_int64(q, 1, m->kernels[i].name_id);
            if (sqlite3_step(q) == SQLITE_ROW)
                ns_tui_model_set_kernel_name(m, m->kernels[i].name_id, col_text(q, 0));
            else
                ns_tui_model_set_kernel_name(m, m->kernels[i].name_id, "(unnamed)");
        }
        sqlite3_reset(q);
        ns_tui_model_sort_kernels(m);
    }
    sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL);
    if (rc != SQLITE_DONE) return fail(s, "reading kernels");
    s->kern_done = n < max_rows;
    return n >= max_rows;
}
