/* The recorder's SQLite writer thread (see writer.h). Every SQLite call on the connection happens
 * in ns_writer_open() (before the thread starts) or on the writer thread. */
#include "writer.h"

#include <assert.h>
#include <math.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "queue.h"
#include "schema_sql.h"

#ifndef NS_VERSION
#define NS_VERSION "unknown"
#endif

/* Every statement the writer runs, by name. Parameter ?1 is the run id, bound once, except in
 * the two strings statements. */
enum {
    SQL_MODULE,
    SQL_PARAM,
    SQL_STEP,
    SQL_PARAM_STAT,
    SQL_CALL,
    SQL_CALL_BWD,
    SQL_TRANSFER,
    SQL_EVENT,
    SQL_KERNEL,
    SQL_RUN_SET,
    SQL_STRING_ADD,
    SQL_STRING_GET,
    SQL_BEAT,
    SQL_END,
    SQL_RECORD_ERROR,
    SQL_BEGIN,
    SQL_COMMIT,
    SQL_N
};
static const char *const sql_text[SQL_N] = {
    [SQL_MODULE] = "INSERT OR REPLACE INTO modules (run_id, id, parent_id, path, type, describe,"
                   " registered, created_in_forward, creator_id, n_params, first_step)"
                   " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    [SQL_PARAM] = "INSERT OR REPLACE INTO params (run_id, id, module_id, name, kind, shape, numel,"
                  " requires_grad, in_optimizer, lr)"
                  " VALUES (?1, ?2, ?3, ?4, COALESCE(?5, 'param'), ?6, ?7, ?8, ?9, ?10)",
    [SQL_STEP] = "INSERT INTO steps (run_id, step, phase, epoch, loss, lr, samples, wall_time,"
                 " duration_us, scope_bytes, dev_mem_in_use, dev_mem_cached, dev_mem_peak)"
                 " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
    [SQL_PARAM_STAT] = "INSERT INTO param_stats (run_id, step, param_id, grad_norm, update_norm,"
                       " weight_norm, ratio, nonfinite, device)"
                       " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    [SQL_CALL] = "INSERT INTO module_calls (run_id, step, module_id, seq, caller_id, phase,"
                 " training, grad_enabled, in_device, param_device, out_device, in_shape,"
                 " out_shape, fwd_us, bwd_us, grad_out_norm, out_mean, out_std, out_zero_frac,"
                 " dead_frac, out_nonfinite) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10,"
                 " ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21)",
    [SQL_CALL_BWD] = "UPDATE module_calls SET bwd_us = COALESCE(?4, bwd_us),"
                     " grad_out_norm = COALESCE(?5, grad_out_norm)"
                     " WHERE run_id = ?1 AND step = ?2 AND seq = ?3",
    [SQL_TRANSFER] = "INSERT INTO transfers (run_id, step, module_id, src, dst, bytes, count)"
                     " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    [SQL_EVENT] = "INSERT INTO events (run_id, step, kind, module_id, param_id, detail, value,"
                  " wall_time) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    [SQL_KERNEL] = "INSERT INTO kernels (run_id, step, module_id, phase, kind, name_id, start_ns,"
                   " end_ns, grid_x, grid_y, grid_z, block_x, block_y, block_z, stream, bytes)"
                   " VALUES (?1, ?2, ?3, ?4, COALESCE(?5, 'kernel'), ?6, ?7, ?8, ?9, ?10, ?11,"
                   " ?12, ?13, ?14, ?15, ?16)",
    [SQL_RUN_SET] = "UPDATE runs SET devices = COALESCE(?2, devices),"
                    " cupti_status = COALESCE(?3, cupti_status) WHERE id = ?1",
    [SQL_STRING_ADD] = "INSERT OR IGNORE INTO strings (s) VALUES (?1)",
    [SQL_STRING_GET] = "SELECT id FROM strings WHERE s = ?1",
    [SQL_BEAT] = "UPDATE runs SET heartbeat_at = ?2, last_step = COALESCE(?3, last_step),"
                 " dropped = ?4 WHERE id = ?1",
    [SQL_END] = "UPDATE runs SET ended_at = ?2, heartbeat_at = ?2, status = ?3,"
                " status_detail = ?4, dropped = ?5, last_step = COALESCE(?6, last_step),"
                " record_error = COALESCE(?7, record_error) WHERE id = ?1",
    [SQL_RECORD_ERROR] = "UPDATE runs SET record_error = ?2 WHERE id = ?1",
    [SQL_BEGIN] = "BEGIN IMMEDIATE",
    [SQL_COMMIT] = "COMMIT",
};
static const char sql_run_new[] =
    "INSERT INTO runs (started_at, heartbeat_at, command, host, pid, engine_version, devices,"
    " queue_policy, sample_every) VALUES (?1, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)";

static const char *const status_name[] = {"finished", "interrupted", "failed"};

/* Kernel names already in the strings table: name -> id, open addressing. Writer thread only. */
typedef struct {
    uint64_t hash;
    char *s;
    int64_t id;
} intern_slot;

struct ns_writer {
    ns_queue q;
    char *path;
    sqlite3 *db;
    sqlite3_stmt *st[SQL_N];
    ns_writer_opts opts;
    int64_t run_id;
    unsigned fork_gen; /* fork_gen at open: a child process sees another value */
    pthread_t thread;

    /* writer thread state */
    int64_t last_step;      /* highest step inserted; NS_NULL before the first step row */
    int64_t last_committed; /* highest step committed */
    intern_slot *names;
    size_t names_cap, names_n;

    /* set by the writer thread, read by others */
    atomic_bool failed;
    char errmsg[768];
    atomic_uint_least64_t rejected, commits;
    char first_reject[160];

    /* set by close() before it wakes the writer */
    ns_run_status end_status;
    char *end_detail;
    bool end_written;
};

/* ---------------------------------------------------------------- small helpers */

static atomic_uint fork_gen;
static sqlite3 *volatile forked_db; /* see ns_writer_close() */
static pthread_once_t fork_once = PTHREAD_ONCE_INIT;
static void on_fork_child(void) {
    atomic_fetch_add(&fork_gen, 1);
}
static void install_fork_handler(void) {
    pthread_atfork(NULL, NULL, on_fork_child);
}

double ns_wall_time(void) {
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static struct timespec mono_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t;
}

static struct timespec add_ms(struct timespec t, int ms) {
    t.tv_sec += ms / 1000;
    t.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (t.tv_nsec >= 1000000000L) t.tv_sec++, t.tv_nsec -= 1000000000L;
    return t;
}

static double ms_since(struct timespec t) {
    struct timespec n = mono_now();
    return (double)(n.tv_sec - t.tv_sec) * 1e3 + (double)(n.tv_nsec - t.tv_nsec) * 1e-6;
}

void ns_writer_opts_default(ns_writer_opts *o) {
    memset(o, 0, sizeof *o);
    o->policy = NS_QUEUE_BLOCK;
    o->queue_rows = 65536;
    o->commit_ms = 100;
    o->batch_rows = 16384;
    o->heartbeat_ms = 1000;
    o->busy_timeout_ms = 5000;
    o->max_lag_ms = 300;
}

void ns_row_init(ns_row *r, ns_row_kind kind) {
    memset(r, 0, sizeof *r);
    r->kind = kind;
    switch (kind) {
    case NS_ROW_MODULE:
        r->module.parent_id = r->module.creator_id = r->module.first_step = NS_NULL;
        break;
    case NS_ROW_PARAM:
        r->param.lr = NAN;
        break;
    case NS_ROW_STEP:
        r->step.epoch = r->step.samples = r->step.scope_bytes = NS_NULL;
        r->step.dev_mem_in_use = r->step.dev_mem_cached = r->step.dev_mem_peak = NS_NULL;
        r->step.loss = r->step.lr = r->step.wall_time = r->step.duration_us = NAN;
        break;
    case NS_ROW_PARAM_STAT:
        r->param_stat.grad_norm = r->param_stat.update_norm = NAN;
        r->param_stat.weight_norm = r->param_stat.ratio = NAN;
        break;
    case NS_ROW_CALL:
        r->call.caller_id = r->call.out_nonfinite = NS_NULL;
        r->call.fwd_us = r->call.bwd_us = r->call.grad_out_norm = NAN;
        r->call.out_mean = r->call.out_std = r->call.out_zero_frac = r->call.dead_frac = NAN;
        break;
    case NS_ROW_CALL_BWD:
        r->call_bwd.bwd_us = r->call_bwd.grad_out_norm = NAN;
        break;
    case NS_ROW_TRANSFER:
        r->transfer.module_id = NS_NULL;
        r->transfer.count = 1;
        break;
    case NS_ROW_EVENT:
        r->event.step = r->event.module_id = r->event.param_id = NS_NULL;
        r->event.value = r->event.wall_time = NAN;
        break;
    case NS_ROW_KERNEL:
        r->kernel.module_id = r->kernel.stream = r->kernel.bytes = NS_NULL;
        for (int i = 0; i < 3; i++) r->kernel.grid[i] = r->kernel.block[i] = NS_NULL;
        break;
    case NS_ROW_RUN:
        break;
    }
}

static void bind_i(sqlite3_stmt *s, int i, int64_t v) {
    if (v == NS_NULL)
        sqlite3_bind_null(s, i);
    else
        sqlite3_bind_int64(s, i, v);
}
static void bind_d(sqlite3_stmt *s, int i, double v) {
    if (isnan(v))
        sqlite3_bind_null(s, i);
    else
        sqlite3_bind_double(s, i, v);
}
/* Row strings live in the queue's text ring until the row is released, after its step. */
static void bind_t(sqlite3_stmt *s, int i, const char *v) {
    if (!v)
        sqlite3_bind_null(s, i);
    else
        sqlite3_bind_text(s, i, v, -1, SQLITE_STATIC);
}

/* Runs a prepared statement that returns no rows. Returns SQLITE_OK or the error code. */
static int run_stmt(sqlite3_stmt *s) {
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    return rc == SQLITE_DONE || rc == SQLITE_ROW ? SQLITE_OK : rc;
}

/* ---------------------------------------------------------------- kernel name interning */

static uint64_t hash_str(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h | 1; /* 0 marks an empty slot */
}

/* The strings.id of s, inserting it when new. Returns SQLITE_OK or the error code. */
static int intern(ns_writer *w, const char *s, int64_t *id) {
    uint64_t h = hash_str(s);
    if (w->names_cap) {
        for (size_t i = h & (w->names_cap - 1);; i = (i + 1) & (w->names_cap - 1)) {
            intern_slot *e = &w->names[i];
            if (!e->hash) break;
            if (e->hash == h && strcmp(e->s, s) == 0) {
                *id = e->id;
                return SQLITE_OK;
            }
        }
    }
    sqlite3_stmt *add = w->st[SQL_STRING_ADD], *get = w->st[SQL_STRING_GET];
    bind_t(add, 1, s);
    int rc = run_stmt(add);
    if (rc != SQLITE_OK) return rc;
    if (sqlite3_changes(w->db) == 1) {
        *id = sqlite3_last_insert_rowid(w->db);
    } else {
        bind_t(get, 1, s);
        rc = sqlite3_step(get);
        *id = rc == SQLITE_ROW ? sqlite3_column_int64(get, 0) : NS_NULL;
        sqlite3_reset(get);
        if (rc != SQLITE_ROW) return rc == SQLITE_DONE ? SQLITE_INTERNAL : rc;
    }
    if (2 * (w->names_n + 1) > w->names_cap) {
        size_t cap = w->names_cap ? 2 * w->names_cap : 256;
        intern_slot *t = calloc(cap, sizeof *t);
        if (!t) return SQLITE_OK; /* the cache is an optimisation */
        for (size_t j = 0; j < w->names_cap; j++) {
            intern_slot *e = &w->names[j];
            if (!e->hash) continue;
            size_t k = e->hash & (cap - 1);
            while (t[k].hash) k = (k + 1) & (cap - 1);
            t[k] = *e;
        }
        free(w->names);
        w->names = t;
        w->names_cap = cap;
    }
    char *copy = strdup(s);
    if (!copy) return SQLITE_OK;
    size_t k = h & (w->names_cap - 1);
    while (w->names[k].hash) k = (k + 1) & (w->names_cap - 1);
    w->names[k] = (intern_slot){h, copy, *id};
    w->names_n++;
    return SQLITE_OK;
}

/* ---------------------------------------------------------------- rows */

/* Binds and runs the statement of one row. Returns SQLITE_OK or the error code. */
static int insert_row(ns_writer *w, const ns_row *r) {
    sqlite3_stmt *s;
    switch (r->kind) {
    case NS_ROW_MODULE:
        s = w->st[SQL_MODULE];
        bind_i(s, 2, r->module.id);
        bind_i(s, 3, r->module.parent_id);
        bind_t(s, 4, r->module.path);
        bind_t(s, 5, r->module.type);
        bind_t(s, 6, r->module.describe);
        bind_i(s, 7, r->module.registered);
        bind_i(s, 8, r->module.created_in_forward);
        bind_i(s, 9, r->module.creator_id);
        bind_i(s, 10, r->module.n_params);
        bind_i(s, 11, r->module.first_step);
        break;
    case NS_ROW_PARAM:
        s = w->st[SQL_PARAM];
        bind_i(s, 2, r->param.id);
        bind_i(s, 3, r->param.module_id);
        bind_t(s, 4, r->param.name);
        bind_t(s, 5, r->param.kind);
        bind_t(s, 6, r->param.shape);
        bind_i(s, 7, r->param.numel);
        bind_i(s, 8, r->param.requires_grad);
        bind_i(s, 9, r->param.in_optimizer);
        bind_d(s, 10, r->param.lr);
        break;
    case NS_ROW_STEP:
        s = w->st[SQL_STEP];
        bind_i(s, 2, r->step.step);
        bind_t(s, 3, r->step.phase);
        bind_i(s, 4, r->step.epoch);
        bind_d(s, 5, r->step.loss);
        bind_d(s, 6, r->step.lr);
        bind_i(s, 7, r->step.samples);
        bind_d(s, 8, isnan(r->step.wall_time) ? ns_wall_time() : r->step.wall_time);
        bind_d(s, 9, r->step.duration_us);
        bind_i(s, 10, r->step.scope_bytes);
        bind_i(s, 11, r->step.dev_mem_in_use);
        bind_i(s, 12, r->step.dev_mem_cached);
        bind_i(s, 13, r->step.dev_mem_peak);
        if (w->last_step == NS_NULL || r->step.step > w->last_step) w->last_step = r->step.step;
        break;
    case NS_ROW_PARAM_STAT:
        s = w->st[SQL_PARAM_STAT];
        bind_i(s, 2, r->param_stat.step);
        bind_i(s, 3, r->param_stat.param_id);
        bind_d(s, 4, r->param_stat.grad_norm);
        bind_d(s, 5, r->param_stat.update_norm);
        bind_d(s, 6, r->param_stat.weight_norm);
        bind_d(s, 7, r->param_stat.ratio);
        bind_i(s, 8, r->param_stat.nonfinite);
        bind_t(s, 9, r->param_stat.device);
        break;
    case NS_ROW_CALL:
        s = w->st[SQL_CALL];
        bind_i(s, 2, r->call.step);
        bind_i(s, 3, r->call.module_id);
        bind_i(s, 4, r->call.seq);
        bind_i(s, 5, r->call.caller_id);
        bind_t(s, 6, r->call.phase);
        bind_i(s, 7, r->call.training);
        bind_i(s, 8, r->call.grad_enabled);
        bind_t(s, 9, r->call.in_device);
        bind_t(s, 10, r->call.param_device);
        bind_t(s, 11, r->call.out_device);
        bind_t(s, 12, r->call.in_shape);
        bind_t(s, 13, r->call.out_shape);
        bind_d(s, 14, r->call.fwd_us);
        bind_d(s, 15, r->call.bwd_us);
        bind_d(s, 16, r->call.grad_out_norm);
        bind_d(s, 17, r->call.out_mean);
        bind_d(s, 18, r->call.out_std);
        bind_d(s, 19, r->call.out_zero_frac);
        bind_d(s, 20, r->call.dead_frac);
        bind_i(s, 21, r->call.out_nonfinite);
        break;
    case NS_ROW_CALL_BWD:
        s = w->st[SQL_CALL_BWD];
        bind_i(s, 2, r->call_bwd.step);
        bind_i(s, 3, r->call_bwd.seq);
        bind_d(s, 4, r->call_bwd.bwd_us);
        bind_d(s, 5, r->call_bwd.grad_out_norm);
        break;
    case NS_ROW_TRANSFER:
        s = w->st[SQL_TRANSFER];
        bind_i(s, 2, r->transfer.step);
        bind_i(s, 3, r->transfer.module_id);
        bind_t(s, 4, r->transfer.src);
        bind_t(s, 5, r->transfer.dst);
        bind_i(s, 6, r->transfer.bytes);
        bind_i(s, 7, r->transfer.count);
        break;
    case NS_ROW_EVENT:
        s = w->st[SQL_EVENT];
        bind_i(s, 2, r->event.step);
        bind_t(s, 3, r->event.kind);
        bind_i(s, 4, r->event.module_id);
        bind_i(s, 5, r->event.param_id);
        bind_t(s, 6, r->event.detail);
        bind_d(s, 7, r->event.value);
        bind_d(s, 8, isnan(r->event.wall_time) ? ns_wall_time() : r->event.wall_time);
        break;
    case NS_ROW_KERNEL: {
        int64_t name_id = NS_NULL;
        if (r->kernel.name) {
            int rc = intern(w, r->kernel.name, &name_id);
            if (rc != SQLITE_OK) return rc;
        }
        s = w->st[SQL_KERNEL];
        bind_i(s, 2, r->kernel.step);
        bind_i(s, 3, r->kernel.module_id);
        bind_t(s, 4, r->kernel.phase);
        bind_t(s, 5, r->kernel.kind);
        bind_i(s, 6, name_id);
        bind_i(s, 7, r->kernel.start_ns);
        bind_i(s, 8, r->kernel.end_ns);
        for (int i = 0; i < 3; i++) {
            bind_i(s, 9 + i, r->kernel.grid[i]);
            bind_i(s, 12 + i, r->kernel.block[i]);
        }
        bind_i(s, 15, r->kernel.stream);
        bind_i(s, 16, r->kernel.bytes);
        break;
    }
    case NS_ROW_RUN:
        s = w->st[SQL_RUN_SET];
        bind_t(s, 2, r->run.devices);
        bind_t(s, 3, r->run.cupti_status);
        break;
    default:
        assert(!"unknown ns_row kind");
        return SQLITE_MISUSE;
    }
    return run_stmt(s);
}

/* A row SQLite refuses on its own (a duplicate key, a NULL in a NOT NULL column) is skipped and
 * counted; any other error stops recording. */
static bool row_error_is_local(int rc) {
    int base = rc & 0xff;
    return base == SQLITE_CONSTRAINT || base == SQLITE_MISMATCH || base == SQLITE_TOOBIG;
}

/* ---------------------------------------------------------------- transactions */

static int begin(ns_writer *w) {
    return run_stmt(w->st[SQL_BEGIN]);
}

/* Writes the heartbeat into the open transaction and commits it; rows before upto are then in
 * the database. */
static int commit(ns_writer *w, uint64_t upto) {
    uint64_t pushed, committed, dropped, lost;
    ns_queue_counts(&w->q, &pushed, &committed, &dropped, &lost);
    sqlite3_stmt *s = w->st[SQL_BEAT];
    bind_d(s, 2, ns_wall_time());
    bind_i(s, 3, w->last_step);
    bind_i(s, 4, (int64_t)dropped);
    int rc = run_stmt(s);
    if (rc == SQLITE_OK) rc = run_stmt(w->st[SQL_COMMIT]);
    if (rc != SQLITE_OK) return rc;
    w->last_committed = w->last_step;
    atomic_fetch_add(&w->commits, 1);
    ns_queue_committed(&w->q, upto);
    return SQLITE_OK;
}

/* The last lines of the run row; best effort once recording failed. */
static int write_end(ns_writer *w) {
    uint64_t pushed, committed, dropped, lost;
    ns_queue_counts(&w->q, &pushed, &committed, &dropped, &lost);
    sqlite3_stmt *s = w->st[SQL_END];
    bind_d(s, 2, ns_wall_time());
    bind_t(s, 3, status_name[w->end_status]);
    bind_t(s, 4, w->end_detail);
    bind_i(s, 5, (int64_t)dropped);
    bind_i(s, 6, w->last_committed);
    bind_t(s, 7, atomic_load(&w->failed) ? w->errmsg : NULL);
    int rc = begin(w);
    if (rc == SQLITE_OK) {
        rc = run_stmt(s);
        if (rc == SQLITE_OK) rc = run_stmt(w->st[SQL_COMMIT]);
        if (rc != SQLITE_OK) sqlite3_exec(w->db, "ROLLBACK", NULL, NULL, NULL);
    }
    return rc;
}

/* Recording stops: one message, the queue refuses rows from now on, the open transaction is
 * rolled back; what was committed stays. */
static void fail(ns_writer *w) {
    int sys = sqlite3_system_errno(w->db);
    char step[48] = "before the first step";
    if (w->last_committed != NS_NULL)
        snprintf(step, sizeof step, "after step %lld", (long long)w->last_committed);
    snprintf(w->errmsg, sizeof w->errmsg,
             "nnscope: recording to %s stopped %s: %s%s%s%s; training goes on unrecorded, the "
             "rows committed so far stay readable",
             w->path, step, sqlite3_errmsg(w->db), sys ? " (" : "", sys ? strerror(sys) : "",
             sys ? ")" : "");
    if (!sqlite3_get_autocommit(w->db)) sqlite3_exec(w->db, "ROLLBACK", NULL, NULL, NULL);
    atomic_store(&w->failed, true);
    ns_queue_stop(&w->q);
    if (w->opts.on_error)
        w->opts.on_error(w->errmsg, w->opts.on_error_ctx);
    else
        fprintf(stderr, "%s\n", w->errmsg);
    /* leave the reason in the run row if the file still takes a small update */
    sqlite3_stmt *s = w->st[SQL_RECORD_ERROR];
    bind_t(s, 2, w->errmsg);
    run_stmt(s);
}

static void *writer_main(void *arg) {
    ns_writer *w = arg;
    ns_queue *q = &w->q;
    bool in_txn = false;
    uint64_t txn_rows = 0, seq = 0; /* rows before seq are inserted and released */
    struct timespec txn_start = mono_now(), last_commit = txn_start;
    int rc = SQLITE_OK;
    /* the writer's speed, measured over its busy time, sizes the queue (ns_queue_set_rate) */
    double busy_ms = 0;
    uint64_t busy_rows = 0;

    for (;;) {
        struct timespec deadline = in_txn ? add_ms(txn_start, w->opts.commit_ms)
                                          : add_ms(last_commit, w->opts.heartbeat_ms);
        ns_queue_take t;
        ns_queue_wait(q, &deadline, !in_txn, &t);
        if (atomic_load(&w->failed)) {
            if (t.closing) break;
            continue;
        }
        assert(t.first == seq);
        uint64_t end = t.first + t.n;
        bool busy = false;
        struct timespec work_start = mono_now();
        uint64_t work_from = seq;
        while (seq < end) {
            if (!in_txn) {
                rc = begin(w);
                /* another writer of the file held it past busy_timeout: try again later */
                if ((rc & 0xff) == SQLITE_BUSY) {
                    busy = true;
                    break;
                }
                if (rc != SQLITE_OK) goto failed;
                in_txn = true;
                txn_rows = 0;
                txn_start = mono_now();
            }
            uint64_t from = seq, chunk = end - seq < 1024 ? end : seq + 1024;
            for (; seq < chunk; seq++) {
                rc = insert_row(w, ns_queue_row(q, seq));
                if (rc == SQLITE_OK) continue;
                if (!row_error_is_local(rc)) goto failed;
                if (atomic_load(&w->rejected) == 0) /* only this thread counts rejects */
                    snprintf(w->first_reject, sizeof w->first_reject, "%s", sqlite3_errmsg(w->db));
                atomic_fetch_add(&w->rejected, 1);
            }
            ns_queue_release(q, seq);
            txn_rows += seq - from;
            if (txn_rows >= (uint64_t)w->opts.batch_rows ||
                ms_since(txn_start) >= w->opts.commit_ms) {
                rc = commit(w, seq);
                if (rc != SQLITE_OK) goto failed;
                in_txn = false;
                last_commit = mono_now();
            }
        }
        if (busy) continue;
        if (seq > work_from) {
            busy_ms += ms_since(work_start);
            busy_rows += seq - work_from;
            if (busy_ms >= 200) {
                ns_queue_set_rate(q, (double)busy_rows * 1e3 / busy_ms);
                busy_ms = 0;
                busy_rows = 0;
            }
        }
        if (in_txn && (t.flush || t.closing || ms_since(txn_start) >= w->opts.commit_ms)) {
            rc = commit(w, seq);
            if (rc != SQLITE_OK) goto failed;
            in_txn = false;
            last_commit = mono_now();
        } else if (!in_txn && !t.closing && ms_since(last_commit) >= w->opts.heartbeat_ms) {
            rc = begin(w);
            if ((rc & 0xff) == SQLITE_BUSY) continue;
            if (rc == SQLITE_OK) rc = commit(w, seq);
            if (rc != SQLITE_OK) goto failed;
            last_commit = mono_now();
        }
        if (t.closing && seq == end && !in_txn) {
            w->end_written = write_end(w) == SQLITE_OK;
            return NULL;
        }
        continue;
    failed:
        fail(w);
        in_txn = false;
    }
    /* recording had stopped: still try to mark how the run ended */
    w->end_written = write_end(w) == SQLITE_OK;
    return NULL;
}

/* ---------------------------------------------------------------- public API */

/* argv of this process joined by spaces, or NULL. */
static char *read_cmdline(void) {
    FILE *f = fopen("/proc/self/cmdline", "rb");
    if (!f) return NULL;
    char *buf = malloc(4097);
    size_t n = buf ? fread(buf, 1, 4096, f) : 0;
    fclose(f);
    if (!buf || n == 0) {
        free(buf);
        return NULL;
    }
    while (n > 0 && buf[n - 1] == '\0') n--;
    for (size_t i = 0; i < n; i++)
        if (buf[i] == '\0') buf[i] = ' ';
    buf[n] = '\0';
    return buf;
}

static void set_err(char *err, size_t errlen, const char *path, sqlite3 *db, const char *what) {
    if (!errlen) return;
    int sys = db ? sqlite3_system_errno(db) : 0;
    snprintf(err, errlen, "nnscope: cannot record to %s: %s%s%s%s", path,
             what ? what
             : db ? sqlite3_errmsg(db)
                  : "out of memory",
             sys ? " (" : "", sys ? strerror(sys) : "", sys ? ")" : "");
}

/* Pragmas, schema and the runs row, on the caller's thread before the writer starts. Returns
 * SQLITE_OK, or the error code with the message in err. */
static int setup_db(ns_writer *w, const ns_run_meta *meta, char *err, size_t errlen) {
    sqlite3 *db = w->db;
    sqlite3_busy_timeout(db, w->opts.busy_timeout_ms);
    /* busy_timeout first: switching to WAL takes a lock another process may hold */
    sqlite3_stmt *s;
    int rc = sqlite3_prepare_v2(db, "PRAGMA journal_mode=WAL", -1, &s, NULL);
    if (rc != SQLITE_OK) goto fail;
    rc = sqlite3_step(s);
    bool wal =
        rc == SQLITE_ROW && sqlite3_stricmp((const char *)sqlite3_column_text(s, 0), "wal") == 0;
    sqlite3_finalize(s);
    if (rc != SQLITE_ROW) goto fail;
    if (!wal) {
        set_err(err, errlen, w->path, NULL,
                "the file system does not support SQLite's WAL mode (needed for live readers)");
        return SQLITE_ERROR;
    }
    rc = sqlite3_exec(db,
                      "PRAGMA synchronous=NORMAL; PRAGMA cache_size=-16384;"
                      " PRAGMA journal_size_limit=67108864;",
                      NULL, NULL, NULL);
    if (rc != SQLITE_OK) goto fail;

    rc = sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
    if (rc != SQLITE_OK) goto fail;
    rc = sqlite3_exec(db, ns_schema_sql, NULL, NULL, NULL);
    /* files made before runs.record_error existed get the column (CREATE IF NOT EXISTS kept
     * their old runs table) */
    if (rc == SQLITE_OK &&
        sqlite3_prepare_v2(db, "SELECT record_error FROM runs", -1, &s, NULL) != SQLITE_OK)
        rc = sqlite3_exec(db, "ALTER TABLE runs ADD COLUMN record_error TEXT", NULL, NULL, NULL);
    else if (rc == SQLITE_OK)
        sqlite3_finalize(s);
    char *cmd = NULL;
    if (rc == SQLITE_OK) rc = sqlite3_prepare_v2(db, sql_run_new, -1, &s, NULL);
    if (rc == SQLITE_OK) {
        char host[256] = "";
        if (!meta->host) gethostname(host, sizeof host - 1);
        if (!meta->command) cmd = read_cmdline();
        bind_d(s, 1, meta->started_at > 0 ? meta->started_at : ns_wall_time());
        bind_t(s, 2, meta->command ? meta->command : cmd);
        bind_t(s, 3, meta->host ? meta->host : host[0] ? host : NULL);
        bind_i(s, 4, meta->pid ? meta->pid : (int64_t)getpid());
        bind_t(s, 5, meta->engine_version ? meta->engine_version : NS_VERSION);
        bind_t(s, 6, meta->devices ? meta->devices : "cpu");
        bind_t(s, 7, w->opts.policy == NS_QUEUE_DROP ? "drop" : "block");
        bind_i(s, 8, meta->sample_every > 0 ? meta->sample_every : 1);
        rc = sqlite3_step(s);
        rc = rc == SQLITE_DONE ? SQLITE_OK : rc;
        sqlite3_finalize(s);
        free(cmd);
    }
    if (rc == SQLITE_OK) {
        w->run_id = sqlite3_last_insert_rowid(db);
        rc = sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
    }
    if (rc != SQLITE_OK) {
        set_err(err, errlen, w->path, db, NULL); /* before ROLLBACK replaces the message */
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
        return rc;
    }
    if (w->opts.max_pages > 0) {
        char sql[64];
        snprintf(sql, sizeof sql, "PRAGMA max_page_count=%lld", (long long)w->opts.max_pages);
        rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
        if (rc != SQLITE_OK) goto fail;
    }
    for (int i = 0; i < SQL_N; i++) {
        rc = sqlite3_prepare_v3(db, sql_text[i], -1, SQLITE_PREPARE_PERSISTENT, &w->st[i], NULL);
        if (rc != SQLITE_OK) goto fail;
        if (strstr(sql_text[i], "?1") && i != SQL_STRING_ADD && i != SQL_STRING_GET)
            sqlite3_bind_int64(w->st[i], 1, w->run_id);
    }
    return SQLITE_OK;
fail:
    set_err(err, errlen, w->path, db, NULL);
    return rc;
}

static void close_db(ns_writer *w) {
    for (int i = 0; i < SQL_N; i++) sqlite3_finalize(w->st[i]);
    sqlite3_close_v2(w->db);
    w->db = NULL;
}

static void writer_free(ns_writer *w) {
    for (size_t i = 0; i < w->names_cap; i++) free(w->names[i].s);
    free(w->names);
    ns_queue_free(&w->q);
    free(w->end_detail);
    free(w->path);
    free(w);
}

ns_writer *ns_writer_open(const char *path, const ns_writer_opts *opts, const ns_run_meta *meta,
                          char *err, size_t errlen) {
    assert(path);
    pthread_once(&fork_once, install_fork_handler);
    ns_run_meta no_meta = {0};
    ns_writer *w = calloc(1, sizeof *w);
    if (!w) {
        set_err(err, errlen, path, NULL, NULL);
        return NULL;
    }
    if (opts)
        w->opts = *opts;
    else
        ns_writer_opts_default(&w->opts);
    ns_writer_opts d;
    ns_writer_opts_default(&d);
    if (w->opts.queue_rows <= 0) w->opts.queue_rows = d.queue_rows;
    if (w->opts.commit_ms <= 0) w->opts.commit_ms = d.commit_ms;
    if (w->opts.batch_rows <= 0) w->opts.batch_rows = d.batch_rows;
    if (w->opts.heartbeat_ms <= 0) w->opts.heartbeat_ms = d.heartbeat_ms;
    if (w->opts.busy_timeout_ms <= 0) w->opts.busy_timeout_ms = d.busy_timeout_ms;
    if (w->opts.max_lag_ms == 0) w->opts.max_lag_ms = d.max_lag_ms;
    if (w->opts.max_lag_ms < 0) w->opts.max_lag_ms = 0;
    size_t text = w->opts.text_bytes ? w->opts.text_bytes : (size_t)w->opts.queue_rows * 64;
    if (text < ((size_t)1 << 20) && !w->opts.text_bytes) text = (size_t)1 << 20;
    w->path = strdup(path);
    w->last_step = w->last_committed = NS_NULL;
    w->fork_gen = atomic_load(&fork_gen);
    atomic_init(&w->failed, false);
    atomic_init(&w->rejected, 0);
    atomic_init(&w->commits, 0);
    /* wake the writer for a quarter of the queue, so producers rarely wait on a full one */
    uint64_t wake = (uint64_t)w->opts.queue_rows / 4;
    if (!w->path || ns_queue_init(&w->q, w->opts.queue_rows, text, w->opts.policy,
                                  wake > 4096 ? 4096 : wake, w->opts.max_lag_ms) != 0) {
        set_err(err, errlen, path, NULL, NULL);
        free(w->path);
        free(w);
        return NULL;
    }

    int rc = sqlite3_open_v2(
        path, &w->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK)
        set_err(err, errlen, path, w->db, NULL);
    else
        rc = setup_db(w, meta ? meta : &no_meta, err, errlen);
    if (rc == SQLITE_OK) {
        /* the writer thread takes no signals: SIGINT and friends go to the program's threads */
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        rc = pthread_create(&w->thread, NULL, writer_main, w) == 0 ? SQLITE_OK : SQLITE_ERROR;
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (rc != SQLITE_OK) set_err(err, errlen, path, NULL, "cannot start the writer thread");
    }
    if (rc != SQLITE_OK) {
        close_db(w);
        writer_free(w);
        return NULL;
    }
    return w;
}

int64_t ns_writer_run_id(const ns_writer *w) {
    return w->run_id;
}

const char *ns_writer_path(const ns_writer *w) {
    return w->path;
}

bool ns_writer_push(ns_writer *w, const ns_row *row) {
    if (w->fork_gen != atomic_load_explicit(&fork_gen, memory_order_relaxed)) {
        atomic_fetch_add_explicit(&w->q.lost, 1, memory_order_relaxed);
        return false;
    }
    return ns_queue_push(&w->q, row) == 0;
}

int ns_writer_flush(ns_writer *w) {
    if (w->fork_gen != atomic_load(&fork_gen)) return -1;
    return ns_queue_flush(&w->q);
}

const char *ns_writer_error(const ns_writer *w) {
    return atomic_load((atomic_bool *)&w->failed) ? w->errmsg : NULL;
}

void ns_writer_stats_get(ns_writer *w, ns_writer_stats *s) {
    memset(s, 0, sizeof *s);
    if (w->fork_gen == atomic_load(&fork_gen))
        ns_queue_counts(&w->q, &s->pushed, &s->committed, &s->dropped, &s->lost);
    else
        s->lost = atomic_load(&w->q.lost);
    s->commits = atomic_load(&w->commits);
    s->rejected = atomic_load(&w->rejected);
    if (s->rejected) snprintf(s->first_reject, sizeof s->first_reject, "%s", w->first_reject);
}

int ns_writer_close(ns_writer *w, ns_run_status status, const char *detail) {
    if (!w) return 0;
    if (w->fork_gen != atomic_load(&fork_gen)) {
        /* a forked child: the thread and the connection belong to the parent. SQLite forbids
         * using (even closing) a connection across fork(): keep it, reachable, and move on. */
        forked_db = w->db;
        for (size_t i = 0; i < w->names_cap; i++) free(w->names[i].s);
        free(w->names);
        free(w->q.slots);
        free(w->q.meta);
        free(w->q.text);
        free(w->path);
        free(w);
        return -1;
    }
    assert(status >= NS_RUN_FINISHED && status <= NS_RUN_FAILED);
    w->end_status = status;
    w->end_detail = detail ? strdup(detail) : NULL;
    ns_queue_close(&w->q);
    pthread_join(w->thread, NULL);
    int rc = atomic_load(&w->failed) || !w->end_written ? -1 : 0;
    close_db(w);
    writer_free(w);
    return rc;
}
