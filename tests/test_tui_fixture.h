/* Hand-made recordings for the TUI tests, the TUI benchmark and the fake live writer: the
 * schema comes from hooks/schema.sql (under $NNSCOPE_SOURCE_ROOT), the rows are written the
 * way RECORDING-SEMANTICS.md describes them (a step's rows first, its steps row last). */
#ifndef TEST_TUI_FIXTURE_H
#define TEST_TUI_FIXTURE_H

#include <stdint.h>

#include <sqlite3.h>

/* Creates (replacing) a database at path with the recording schema, in WAL mode. Returns a
 * writable connection, or NULL after printing why. */
sqlite3 *tfx_create(const char *path);

/* Runs SQL, aborting the test program with the message on failure. */
void tfx_exec(sqlite3 *db, const char *sql);

/* Inserts a runs row (status 'running', 'finished', ...). */
void tfx_run(sqlite3 *db, int64_t run_id, const char *status, const char *command,
             double started_at);

/* The small model used by the tests, in run run_id (module ids 1..6, param ids 1..10):
 *   1 ''    Net (root)         3 act  ReLU
 *   2 fc1   Linear 8->16       4 fc2  Linear 16->4
 *   5 (unregistered Linear #5) Linear 16->16, registered = 0, parent = the root, not in the
 *     optimizer (the bug_unregistered_layer shape)
 *   6 bn    BatchNorm1d(16)    weight, bias, buffers running_mean/running_var
 * plus an unregistered_call event for module 5. */
void tfx_model(sqlite3 *db, int64_t run_id);

/* Writes train steps from..to (inclusive) for the tfx_model model: param_stats, module_calls,
 * then the steps row, in one transaction; updates runs.last_step and heartbeat_at. Step s ends
 * at wall time t0 + 0.01 s. */
void tfx_steps(sqlite3 *db, int64_t run_id, int64_t from, int64_t to, double t0);

/* Marks a run finished (status, ended_at). */
void tfx_finish(sqlite3 *db, int64_t run_id, double ended_at);

/* Wall clock, unix seconds. */
double tfx_now(void);

#endif
