/* Findings for the TUI: the diagnostics rules (src/diag) run on a worker thread with its own
 * read-only connection, because a rules pass costs far more than a frame. The app asks for a
 * pass when data changed and the last one is old enough (ns_tui_rules_due), and collects the
 * result into the view model when it is ready. --dump runs them inline (ns_tui_rules_run). */
#ifndef NS_TUI_RULES_H
#define NS_TUI_RULES_H

#include <sqlite3.h>

#include "model.h"

typedef struct ns_tui_rules ns_tui_rules;

/* Starts the worker for the recording at path (copied). Returns NULL when the thread or
 * memory cannot be had (the TUI then shows no findings and says so). */
ns_tui_rules *ns_tui_rules_new(const char *path);

/* Stops the worker (interrupting a pass in flight) and frees everything. r may be NULL. */
void ns_tui_rules_free(ns_tui_rules *r);

/* Queues a pass over run_id unless one is in flight. Returns 1 when queued, else 0. */
int ns_tui_rules_request(ns_tui_rules *r, int64_t run_id, double now);

/* Whether a pass should be requested at wall-clock time now: the data changed since the last
 * request (`changed`), nothing is in flight, and at least max(min_gap, 4 x last duration)
 * seconds passed since the last request. */
int ns_tui_rules_due(ns_tui_rules *r, int changed, double now, double min_gap);

/* Moves a finished pass into m (when it was for m->run_id): findings, duration, error.
 * Returns 1 when m changed, else 0. */
int ns_tui_rules_collect(ns_tui_rules *r, ns_tui_model *m);

/* Runs the rules over run_id on db now and stores the result in m; a pass still running after
 * budget_s seconds (<= 0: no limit) is interrupted. Returns 0, or -1 (the error, or the
 * budget running out, is in m->rules_err). */
int ns_tui_rules_run(sqlite3 *db, int64_t run_id, ns_tui_model *m, double budget_s);

#endif
