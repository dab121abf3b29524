/* Diagnostics rules on a worker thread: see rules.h. */
#include "rules.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct ns_tui_rules {
    char *path;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int quit;
    sqlite3 *db; /* the worker's connection (for sqlite3_interrupt) */
    /* request */
    int pending;
    int64_t run_id;
    /* in flight / result */
    int busy;
    int done;
    int64_t done_run;
    ns_finding *find;
    size_t nfind;
    int rc;
    char err[256];
    double ms;
    double finished_at;
    /* scheduling (app thread only) */
    double requested_at;
    double last_ms;
};

static double mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static double wall_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *worker(void *arg) {
    ns_tui_rules *r = arg;
    sqlite3 *db = NULL;
    pthread_mutex_lock(&r->mu);
    for (;;) {
        while (!r->pending && !r->quit) pthread_cond_wait(&r->cv, &r->mu);
        if (r->quit) break;
        int64_t run_id = r->run_id;
        r->pending = 0;
        r->busy = 1;
        pthread_mutex_unlock(&r->mu);

        ns_finding *f = NULL;
        size_t n = 0;
        char err[256] = "";
        int rc = 0;
        double t0 = mono_ms();
        if (!db) {
            if (sqlite3_open_v2(r->path, &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL) !=
                SQLITE_OK) {
                snprintf(err, sizeof err, "%s: %s", r->path, db ? sqlite3_errmsg(db) : "no memory");
                sqlite3_close(db);
                db = NULL;
                rc = -1;
            } else {
                sqlite3_busy_timeout(db, 2000);
                pthread_mutex_lock(&r->mu);
                r->db = db;
                pthread_mutex_unlock(&r->mu);
            }
        }
        if (db) rc = ns_diag_check(db, run_id, NULL, NULL, &f, &n, err, sizeof err);
        double ms = mono_ms() - t0;

        pthread_mutex_lock(&r->mu);
        ns_findings_free(r->find, r->nfind);
        r->find = f;
        r->nfind = n;
        r->rc = rc;
        snprintf(r->err, sizeof r->err, "%s", err);
        r->ms = ms;
        r->finished_at = wall_now();
        r->done_run = run_id;
        r->done = 1;
        r->busy = 0;
    }
    r->db = NULL;
    pthread_mutex_unlock(&r->mu);
    sqlite3_close(db);
    return NULL;
}

ns_tui_rules *ns_tui_rules_new(const char *path) {
    ns_tui_rules *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->path = strdup(path);
    r->requested_at = -1e300;
    if (!r->path) {
        free(r);
        return NULL;
    }
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    if (pthread_create(&r->thread, NULL, worker, r) != 0) {
        pthread_mutex_destroy(&r->mu);
        pthread_cond_destroy(&r->cv);
        free(r->path);
        free(r);
        return NULL;
    }
    return r;
}

void ns_tui_rules_free(ns_tui_rules *r) {
    if (!r) return;
    pthread_mutex_lock(&r->mu);
    r->quit = 1;
    /* A pass can take long on a big recording: stop it rather than wait for it. */
    if (r->busy && r->db) sqlite3_interrupt(r->db);
    pthread_cond_signal(&r->cv);
    pthread_mutex_unlock(&r->mu);
    pthread_join(r->thread, NULL);
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->cv);
    ns_findings_free(r->find, r->nfind);
    free(r->path);
    free(r);
}

int ns_tui_rules_request(ns_tui_rules *r, int64_t run_id, double now) {
    int queued = 0;
    pthread_mutex_lock(&r->mu);
    if (!r->busy && !r->pending) {
        r->pending = 1;
        r->run_id = run_id;
        queued = 1;
        pthread_cond_signal(&r->cv);
    }
    pthread_mutex_unlock(&r->mu);
    if (queued) r->requested_at = now;
    return queued;
}

int ns_tui_rules_due(ns_tui_rules *r, int changed, double now, double min_gap) {
    if (!changed) return 0;
    double gap = 4 * r->last_ms / 1000.0;
    if (gap < min_gap) gap = min_gap;
    if (now - r->requested_at < gap) return 0;
    pthread_mutex_lock(&r->mu);
    int idle = !r->busy && !r->pending;
    pthread_mutex_unlock(&r->mu);
    return idle;
}

int ns_tui_rules_collect(ns_tui_rules *r, ns_tui_model *m) {
    pthread_mutex_lock(&r->mu);
    if (!r->done) {
        pthread_mutex_unlock(&r->mu);
        return 0;
    }
    ns_finding *f = r->find;
    size_t n = r->nfind;
    int rc = r->rc, ours = r->done_run == m->run_id;
    r->find = NULL;
    r->nfind = 0;
    r->done = 0;
    r->last_ms = r->ms;
    if (ours) {
        m->rules_ms = r->ms;
        m->rules_at = r->finished_at;
        m->rules_state = rc == 0 ? 1 : -1;
        snprintf(m->rules_err, sizeof m->rules_err, "%s", rc == 0 ? "" : r->err);
    }
    pthread_mutex_unlock(&r->mu);
    if (!ours || rc != 0) {
        ns_findings_free(f, n);
        if (ours) m->generation++;
        return ours;
    }
    ns_tui_model_set_findings(m, f, n);
    return 1;
}

/* Progress handler: non-zero (interrupt) once the deadline (monotonic ms) has passed. */
static int past_deadline(void *arg) {
    return mono_ms() > *(const double *)arg;
}

int ns_tui_rules_run(sqlite3 *db, int64_t run_id, ns_tui_model *m, double budget_s) {
    ns_finding *f = NULL;
    size_t n = 0;
    double t0 = mono_ms(), deadline = t0 + budget_s * 1e3;
    if (budget_s > 0) sqlite3_progress_handler(db, 10000, past_deadline, &deadline);
    int rc = ns_diag_check(db, run_id, NULL, NULL, &f, &n, m->rules_err, sizeof m->rules_err);
    if (budget_s > 0) sqlite3_progress_handler(db, 0, NULL, NULL);
    m->rules_ms = mono_ms() - t0;
    if (rc != 0 && budget_s > 0 && mono_ms() > deadline)
        snprintf(m->rules_err, sizeof m->rules_err,
                 "the rules took longer than %.0f s on this recording and were stopped; "
                 "`nnscope check` runs them without a limit",
                 budget_s);
    m->rules_at = wall_now();
    if (rc != 0) {
        m->rules_state = -1;
        ns_findings_free(f, n);
        m->generation++;
        return -1;
    }
    m->rules_state = 1;
    m->rules_err[0] = 0;
    ns_tui_model_set_findings(m, f, n);
    return 0;
}
