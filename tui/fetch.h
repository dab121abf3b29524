/* Data extraction for the TUI: reads a recording (read-only) into the view model.
 *
 * Follows a live run cheaply: each poll asks `PRAGMA data_version` whether another connection
 * committed; only then does it open one short read transaction and read the rows newer than
 * what the model holds (module/param ids above the last seen, steps after the last closed
 * step, events after the last id). Per-step tables are read only up to the newest closed step
 * (the steps row is written last for a step), and on the first read only the last
 * NS_TUI_SPARK_N steps of param_stats/module_calls are read: the frame cost does not grow
 * with the run's length. */
#ifndef NS_TUI_FETCH_H
#define NS_TUI_FETCH_H

#include <sqlite3.h>

#include "model.h"

typedef struct ns_tui_source ns_tui_source;

typedef enum {
    NS_SRC_NO_FILE = 0,   /* the file does not exist (yet) */
    NS_SRC_NOT_READY = 1, /* the file exists but holds no recording tables yet */
    NS_SRC_READY = 2,     /* tables present: runs and data can be read */
    NS_SRC_ERROR = 3      /* not a recording, or an SQLite error (ns_tui_source_error) */
} ns_tui_src_state;

/* Creates a source for the recording at path (copied). Opens nothing yet: the file may
 * appear later. Returns NULL when out of memory. */
ns_tui_source *ns_tui_source_new(const char *path);

/* Closes the connection and frees the source. s may be NULL. */
void ns_tui_source_free(ns_tui_source *s);

/* Polls the file: opens it once it exists, and when it changed since the last poll (or
 * `force`) reads the runs list and the new rows of run m->run_id (when >= 0) into m.
 * Returns 1 when m changed, 0 when there was nothing new, -1 on an error (the state becomes
 * NS_SRC_ERROR and ns_tui_source_error says why, naming the file). */
int ns_tui_source_poll(ns_tui_source *s, ns_tui_model *m, int force);

/* Current state (see ns_tui_src_state). */
ns_tui_src_state ns_tui_source_state(const ns_tui_source *s);

/* The last error message ("" when none). */
const char *ns_tui_source_error(const ns_tui_source *s);

/* Shows run_id from now on: drops m's run data and restarts the incremental reads. The next
 * poll reads the run. */
void ns_tui_source_select_run(ns_tui_source *s, ns_tui_model *m, int64_t run_id);

/* Reads the history rows of m->det's target newer than what its rings hold (up to the last
 * closed step). Returns 1 when rows were added, 0 when none, -1 on an error. */
int ns_tui_source_detail(ns_tui_source *s, ns_tui_model *m);

/* Reads up to max_rows new kernels rows of the shown run into m (and the names they use).
 * Returns 1 when more rows remain, 0 when caught up, -1 on an error. */
int ns_tui_source_kernels(ns_tui_source *s, ns_tui_model *m, int max_rows);

/* Whether every kernels row of the run has been read once (ns_tui_source_kernels). */
int ns_tui_source_kernels_done(const ns_tui_source *s);

/* The read-only connection (NULL until the file is open), e.g. to run rules on it. */
sqlite3 *ns_tui_source_db(ns_tui_source *s);

#endif
