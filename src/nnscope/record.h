/* nnscope recorder: streams what the engine sees into a SQLite database (schema:
 * hooks/schema.sql) through a background writer thread. The training thread never calls SQLite.
 *
 * With no code change: NNSCOPE_DB=run.db ./program records the first model that runs (the
 * outermost module of the first ns_call) and the optimizer that steps it. Other variables:
 * NNSCOPE_SAMPLE_EVERY=N (activation statistics every N steps, default 1), NNSCOPE_QUEUE=block|drop
 * (what a full queue does, default block), NNSCOPE_CUPTI=0 (no GPU kernel timings),
 * NNSCOPE_CUPTI_EVERY=N (GPU kernel timings every N steps, default 1).
 */
#ifndef NNSCOPE_RECORD_H
#define NNSCOPE_RECORD_H

#include "nnscope/module.h"

struct ns_optimizer;
typedef struct ns_recorder ns_recorder;

typedef struct {
    int sample_every;    /* activation statistics (module_calls.out_*) every N steps; 1 */
    bool drop_when_full; /* false: a full queue blocks the training thread (nothing lost);
                            true: rows are dropped and counted in runs.dropped */
    int queue_rows;      /* capacity of the in-memory queue in rows; 65536 */
    int commit_ms;       /* the writer commits at least this often; 100 */
    bool cupti;          /* GPU kernel timings in CUDA builds; true */
    int cupti_every;     /* collect kernels every N steps; 1 */
} ns_record_opts;

/* Fills o with the defaults above, then applies the NNSCOPE_* environment variables. */
void ns_record_opts_default(ns_record_opts *o);

/* Starts recording model (and opt, which may be NULL and is then picked up when an optimizer
 * first steps) into path; several runs can share one file. On failure prints one message and
 * returns NULL: training goes on unrecorded. opts may be NULL (defaults). Only one recorder is
 * active at a time. */
ns_recorder *ns_record_open(const char *path, ns_module *model, struct ns_optimizer *opt,
                            const ns_record_opts *opts);
/* Ends the run as 'finished' (flushes, closes the file) and frees r. NULL is a no-op. */
void ns_record_close(ns_recorder *r);
/* The active recorder, or NULL. */
ns_recorder *ns_record_active(void);
/* The run's id in the database (runs.id). */
int64_t ns_record_run_id(const ns_recorder *r);
/* Blocks until every row produced so far is committed (tests and readers in the same process). */
void ns_record_flush(ns_recorder *r);
/* The message that stopped recording (disk full, unwritable path), or NULL while healthy. */
const char *ns_record_error(const ns_recorder *r);

#endif
