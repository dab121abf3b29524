/* Helpers shared by the recorder writer tests: a scratch directory, read-only queries, rows. */
#ifndef NNSCOPE_TEST_WRITER_UTIL_H
#define NNSCOPE_TEST_WRITER_UTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <time.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "writer.h"

/* A fresh directory under $TMPDIR (or /tmp), removed by wt_rmdir(). */
static char wt_dir[512];

static inline void wt_mkdir(void) {
    const char *t = getenv("TMPDIR");
    snprintf(wt_dir, sizeof wt_dir, "%s/nswriter-XXXXXX", t && *t ? t : "/tmp");
    assert_non_null(mkdtemp(wt_dir));
}

static inline void wt_rmdir(void) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", wt_dir);
    assert_int_equal(system(cmd), 0);
}

/* wt_dir/name in a static buffer (one at a time). */
static inline const char *wt_path(const char *name) {
    static char p[600];
    snprintf(p, sizeof p, "%s/%s", wt_dir, name);
    return p;
}

/* A read-only connection, as the TUI and the CLI open one. */
static inline sqlite3 *wt_ro(const char *path) {
    sqlite3 *db = NULL;
    int rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL);
    if (rc != SQLITE_OK) fail_msg("open %s: %s", path, sqlite3_errmsg(db));
    sqlite3_busy_timeout(db, 2000);
    return db;
}

static inline sqlite3_stmt *wt_prep(sqlite3 *db, const char *fmt, va_list ap) {
    char *sql = sqlite3_vmprintf(fmt, ap);
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        fail_msg("%s\n  in: %s", sqlite3_errmsg(db), sql);
    sqlite3_free(sql);
    return st;
}

/* First column of the first row as an integer; fails the test when there is no row. */
static inline int64_t wt_int(sqlite3 *db, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    sqlite3_stmt *st = wt_prep(db, fmt, ap);
    va_end(ap);
    int rc = sqlite3_step(st);
    if (rc != SQLITE_ROW)
        fail_msg("no row (%d: %s) for %s", rc, sqlite3_errmsg(db), sqlite3_sql(st));
    int64_t v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

/* First column as a double (NAN for NULL). */
static inline double wt_dbl(sqlite3 *db, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    sqlite3_stmt *st = wt_prep(db, fmt, ap);
    va_end(ap);
    int rc = sqlite3_step(st);
    if (rc != SQLITE_ROW)
        fail_msg("no row (%d: %s) for %s", rc, sqlite3_errmsg(db), sqlite3_sql(st));
    double v = sqlite3_column_type(st, 0) == SQLITE_NULL ? NAN : sqlite3_column_double(st, 0);
    sqlite3_finalize(st);
    return v;
}

/* First column as text into a static buffer; "<NULL>" for NULL. */
static inline const char *wt_text(sqlite3 *db, const char *fmt, ...) {
    static char buf[8192];
    va_list ap;
    va_start(ap, fmt);
    sqlite3_stmt *st = wt_prep(db, fmt, ap);
    va_end(ap);
    int rc = sqlite3_step(st);
    if (rc != SQLITE_ROW)
        fail_msg("no row (%d: %s) for %s", rc, sqlite3_errmsg(db), sqlite3_sql(st));
    const unsigned char *t = sqlite3_column_text(st, 0);
    snprintf(buf, sizeof buf, "%s", t ? (const char *)t : "<NULL>");
    sqlite3_finalize(st);
    return buf;
}

/* A train step row with the current wall time. */
static inline bool wt_push_step(ns_writer *w, int64_t step) {
    ns_row r;
    ns_row_init(&r, NS_ROW_STEP);
    r.step.step = step;
    r.step.phase = "train";
    r.step.loss = 1.0 / (double)(step + 1);
    r.step.wall_time = ns_wall_time();
    return ns_writer_push(w, &r);
}

static inline bool wt_push_param_stat(ns_writer *w, int64_t step, int64_t param) {
    ns_row r;
    ns_row_init(&r, NS_ROW_PARAM_STAT);
    r.param_stat.step = step;
    r.param_stat.param_id = param;
    r.param_stat.grad_norm = 0.5 + (double)param;
    r.param_stat.update_norm = 1e-3;
    r.param_stat.weight_norm = 2.0;
    r.param_stat.ratio = 5e-4;
    r.param_stat.device = "cpu";
    return ns_writer_push(w, &r);
}

static inline void wt_sleep_ms(int ms) {
    struct timespec t = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&t, &t) != 0) {
    }
}

static inline double wt_mono(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

#endif
