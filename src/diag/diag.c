/* Running the rules: bind :run and the thresholds, collect one finding per result row, sort. */
#include "diag/diag.h"

#include <assert.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

const char *ns_severity_name(ns_severity s) {
    switch (s) {
    case NS_SEV_ERROR:
        return "error";
    case NS_SEV_WARNING:
        return "warning";
    case NS_SEV_INFO:
        return "info";
    }
    return "?";
}

int ns_severity_parse(const char *text, ns_severity *s) {
    if (strcmp(text, "error") == 0)
        *s = NS_SEV_ERROR;
    else if (strcmp(text, "warning") == 0)
        *s = NS_SEV_WARNING;
    else if (strcmp(text, "info") == 0)
        *s = NS_SEV_INFO;
    else
        return -1;
    return 0;
}

size_t ns_findings_count(const ns_finding *f, size_t n, ns_severity min) {
    size_t c = 0;
    for (size_t i = 0; i < n; i++)
        if (f[i].severity >= min) c++;
    return c;
}

static void seterr(char *err, size_t errlen, const char *fmt, ...) {
    if (!err || errlen == 0) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

int ns_diag_is_recording(sqlite3 *db) {
    static const char *const need[] = {"runs",        "modules",      "params",    "steps",
                                       "param_stats", "module_calls", "transfers", "events"};
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1", -1,
                           &st, NULL) != SQLITE_OK)
        return 0;
    int ok = 1;
    for (size_t i = 0; ok && i < sizeof need / sizeof need[0]; i++) {
        sqlite3_reset(st);
        sqlite3_bind_text(st, 1, need[i], -1, SQLITE_STATIC);
        ok = sqlite3_step(st) == SQLITE_ROW;
    }
    sqlite3_finalize(st);
    return ok;
}

int64_t ns_diag_latest_run(sqlite3 *db) {
    sqlite3_stmt *st = NULL;
    int64_t id = -1;
    if (sqlite3_prepare_v2(db, "SELECT MAX(id) FROM runs", -1, &st, NULL) != SQLITE_OK) return -1;
    if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL)
        id = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return id;
}

static char *dup_text(sqlite3_stmt *st, int col) {
    if (col < 0 || sqlite3_column_type(st, col) == SQLITE_NULL) return NULL;
    const char *s = (const char *)sqlite3_column_text(st, col);
    return strdup(s ? s : "");
}

static int64_t int_or(sqlite3_stmt *st, int col, int64_t dflt) {
    if (col < 0 || sqlite3_column_type(st, col) == SQLITE_NULL) return dflt;
    return sqlite3_column_int64(st, col);
}

/* Binds :run and every option the statement names. Returns 0, or -1 (unknown parameter). */
static int bind_params(sqlite3_stmt *st, int64_t run_id, const ns_diag_opts *o, const char *rule,
                       char *err, size_t errlen) {
    int np = sqlite3_bind_parameter_count(st);
    for (int i = 1; i <= np; i++) {
        const char *name = sqlite3_bind_parameter_name(st, i);
        double v;
        if (!name || (name[0] != ':' && name[0] != '$' && name[0] != '@')) {
            seterr(err, errlen, "rule %s: unnamed SQL parameter %d", rule, i);
            return -1;
        }
        if (strcmp(name + 1, "run") == 0) {
            sqlite3_bind_int64(st, i, run_id);
        } else if (ns_diag_opts_get(o, name + 1, &v) == 0) {
            sqlite3_bind_double(st, i, v);
        } else {
            seterr(err, errlen, "rule %s: unknown SQL parameter %s", rule, name);
            return -1;
        }
    }
    return 0;
}

typedef struct {
    ns_finding *f;
    size_t n, cap;
} findings;

static int push(findings *fs, const ns_finding *x) {
    if (fs->n == fs->cap) {
        size_t cap = fs->cap ? fs->cap * 2 : 16;
        ns_finding *p = realloc(fs->f, cap * sizeof *p);
        if (!p) return -1;
        fs->f = p;
        fs->cap = cap;
    }
    fs->f[fs->n++] = *x;
    return 0;
}

static void finding_clear(ns_finding *f) {
    free(f->module);
    free(f->param);
    free(f->message);
    free(f->evidence);
    free((char *)f->fix);
}

/* Runs one rule and appends its findings. */
static int run_rule(sqlite3 *db, const ns_rule *r, int64_t run_id, const ns_diag_opts *o,
                    findings *fs, char *err, size_t errlen) {
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, r->sql, -1, &st, NULL) != SQLITE_OK) {
        seterr(err, errlen, "rule %s: %s", r->id, sqlite3_errmsg(db));
        return -1;
    }
    if (bind_params(st, run_id, o, r->id, err, errlen) != 0) {
        sqlite3_finalize(st);
        return -1;
    }
    enum { SEV, MID, MOD, PARAM, FIRST, LAST, MSG, EVID, FIX, NCOL };
    static const char *const names[NCOL] = {"severity", "module_id",  "module",
                                            "param",    "first_step", "last_step",
                                            "message",  "evidence",   "fix"};
    int col[NCOL];
    for (int k = 0; k < NCOL; k++) {
        col[k] = -1;
        for (int c = 0; c < sqlite3_column_count(st); c++)
            if (strcmp(sqlite3_column_name(st, c), names[k]) == 0) col[k] = c;
    }
    /* A rule without these columns is a bug in the table, not the user's doing. */
    assert(col[SEV] >= 0 && col[MSG] >= 0);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        ns_finding f = {0};
        f.rule = r->id;
        const char *sev = (const char *)sqlite3_column_text(st, col[SEV]);
        if (!sev || ns_severity_parse(sev, &f.severity) != 0) f.severity = r->severity;
        f.module = dup_text(st, col[MOD]);
        f.module_id = int_or(st, col[MID], -1);
        f.param = dup_text(st, col[PARAM]);
        f.first_step = int_or(st, col[FIRST], -1);
        f.last_step = int_or(st, col[LAST], -1);
        f.message = dup_text(st, col[MSG]);
        f.evidence = dup_text(st, col[EVID]);
        char *fix = dup_text(st, col[FIX]);
        f.fix = fix ? fix : strdup(r->fix);
        if (!f.message) f.message = strdup(r->title);
        if (!f.evidence) f.evidence = strdup("");
        if (!f.message || !f.evidence || !f.fix || push(fs, &f) != 0) {
            finding_clear(&f);
            sqlite3_finalize(st);
            seterr(err, errlen, "rule %s: out of memory", r->id);
            return -1;
        }
    }
    if (rc != SQLITE_DONE) {
        seterr(err, errlen, "rule %s: %s", r->id, sqlite3_errmsg(db));
        sqlite3_finalize(st);
        return -1;
    }
    sqlite3_finalize(st);
    return 0;
}

static int rule_index(const ns_rule *r) {
    size_t n;
    return (int)(r - ns_rules(&n));
}

static int cmp_finding(const void *a, const void *b) {
    const ns_finding *x = a, *y = b;
    if (x->severity != y->severity) return x->severity > y->severity ? -1 : 1;
    /* Steps unknown (-1) go last within a severity. */
    uint64_t sx = (uint64_t)x->first_step, sy = (uint64_t)y->first_step;
    if (sx != sy) return sx < sy ? -1 : 1;
    int ix = rule_index(ns_rule_find(x->rule)), iy = rule_index(ns_rule_find(y->rule));
    if (ix != iy) return ix < iy ? -1 : 1;
    if (x->module_id != y->module_id) return x->module_id < y->module_id ? -1 : 1;
    return strcmp(x->message, y->message);
}

/* Parses only into a selection flag per rule. Returns 0, or -1 on an unknown id. */
static int select_rules(const char *only, unsigned char *sel, size_t nrules, char *err,
                        size_t errlen) {
    size_t n;
    const ns_rule *rules = ns_rules(&n);
    assert(n == nrules);
    if (!only) {
        memset(sel, 1, nrules);
        return 0;
    }
    memset(sel, 0, nrules);
    const char *p = only;
    int any = 0;
    while (*p) {
        while (*p == ',' || *p == ' ') p++;
        const char *e = p;
        while (*e && *e != ',' && *e != ' ') e++;
        if (e > p) {
            size_t len = (size_t)(e - p), i;
            for (i = 0; i < n; i++)
                if (strlen(rules[i].id) == len && strncmp(rules[i].id, p, len) == 0) break;
            if (i == n) {
                seterr(err, errlen, "unknown rule '%.*s' (nnscope rules lists them)", (int)len, p);
                return -1;
            }
            sel[i] = 1;
            any = 1;
        }
        p = e;
    }
    if (!any) {
        seterr(err, errlen, "no rule named in '%s'", only);
        return -1;
    }
    return 0;
}

static int run_exists(sqlite3 *db, int64_t run_id, char *err, size_t errlen) {
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, "SELECT 1 FROM runs WHERE id = ?1", -1, &st, NULL) != SQLITE_OK) {
        seterr(err, errlen, "%s", sqlite3_errmsg(db));
        return -1;
    }
    sqlite3_bind_int64(st, 1, run_id);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc == SQLITE_ROW) return 0;
    if (rc == SQLITE_DONE)
        seterr(err, errlen, "no run %lld in this database", (long long)run_id);
    else
        seterr(err, errlen, "%s", sqlite3_errmsg(db));
    return -1;
}

int ns_diag_check(sqlite3 *db, int64_t run_id, const ns_diag_opts *o, const char *only,
                  ns_finding **out, size_t *n, char *err, size_t errlen) {
    *out = NULL;
    *n = 0;
    ns_diag_opts defaults;
    if (!o) {
        ns_diag_opts_default(&defaults);
        o = &defaults;
    }
    size_t nrules;
    const ns_rule *rules = ns_rules(&nrules);
    unsigned char sel[64];
    assert(nrules <= sizeof sel);
    if (select_rules(only, sel, nrules, err, errlen) != 0) return -1;

    /* One read transaction: every rule sees the same snapshot of a live recording, and the
     * snapshot is released at once so the writer's checkpoints are not held back. */
    int own_txn = sqlite3_get_autocommit(db);
    if (own_txn && sqlite3_exec(db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK) {
        seterr(err, errlen, "%s", sqlite3_errmsg(db));
        return -1;
    }
    int rc = 0;
    if (!ns_diag_is_recording(db)) {
        seterr(err, errlen, "not an nnscope recording (no runs/modules/params tables)");
        rc = -1;
    } else if (run_exists(db, run_id, err, errlen) != 0) {
        rc = -1;
    }
    findings fs = {0};
    for (size_t i = 0; rc == 0 && i < nrules; i++)
        if (sel[i]) rc = run_rule(db, &rules[i], run_id, o, &fs, err, errlen);
    if (own_txn) sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
    if (rc != 0) {
        ns_findings_free(fs.f, fs.n);
        return -1;
    }
    if (fs.n > 1) qsort(fs.f, fs.n, sizeof *fs.f, cmp_finding);
    *out = fs.f;
    *n = fs.n;
    return 0;
}

void ns_findings_free(ns_finding *f, size_t n) {
    if (!f) return;
    for (size_t i = 0; i < n; i++) finding_clear(&f[i]);
    free(f);
}
