/* nnscope recorder, engine-independent half: a bounded in-memory queue of rows and one writer
 * thread that inserts them into SQLite (schema: hooks/schema.sql).
 *
 * The producer (the training thread) fills an ns_row with plain values and pushes it: the row is
 * copied into a preallocated slot and its strings into a preallocated text ring, so a push costs
 * a mutex and a few memcpy, never a malloc and never an SQLite call. The writer thread owns the
 * only SQLite connection: it drains the queue with prepared statements, one transaction per batch,
 * and commits at least every commit_ms (100 ms) and whenever a batch reaches batch_rows. Each
 * commit also sets runs.heartbeat_at, runs.last_step and runs.dropped; an idle writer still
 * commits a heartbeat every heartbeat_ms. The queue is bounded in rows and in time: it never holds
 * more than about max_lag_ms (300 ms) of the writer's work, so a row reaches the database within
 * about max_lag_ms + commit_ms of its push even on a loaded machine (a faster producer waits, or
 * drops rows under NS_QUEUE_DROP). The database is in WAL mode with synchronous=NORMAL: readers
 * open it read-only at any time, and a process killed at any moment leaves a consistent file
 * holding every row committed before the kill.
 *
 * When SQLite fails (disk full, I/O error, file removed...) recording stops: the message (path and
 * SQLite's error text) is reported once, every later push returns at once without blocking (the
 * row is counted as lost), and what was committed stays readable.
 *
 * Thread rules: one writer per run; push, flush, stats and error may be called from any thread
 * (rows from several producers interleave in push order); open and close from one thread. After a
 * fork() the child's copy of a writer drops every row (the writer thread does not exist there)
 * and close() only frees memory.
 */
#ifndef NNSCOPE_WRITER_H
#define NNSCOPE_WRITER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct ns_writer ns_writer;

/* SQL NULL for the nullable integer fields of ns_row. Nullable doubles use NAN (SQLite stores a
 * NaN as NULL in any case). ns_row_init() sets every nullable field to NULL. */
#define NS_NULL INT64_MIN

/* Longest string a row carries; longer strings are cut to this many bytes. */
#define NS_ROW_TEXT_MAX 4096

typedef enum { NS_QUEUE_BLOCK = 0, NS_QUEUE_DROP = 1 } ns_queue_policy;

typedef enum { NS_RUN_FINISHED = 0, NS_RUN_INTERRUPTED = 1, NS_RUN_FAILED = 2 } ns_run_status;

typedef enum {
    NS_ROW_MODULE = 1, /* modules: insert or replace (send again to update a module) */
    NS_ROW_PARAM,      /* params: insert or replace */
    NS_ROW_STEP,       /* steps */
    NS_ROW_PARAM_STAT, /* param_stats */
    NS_ROW_CALL,       /* module_calls */
    NS_ROW_CALL_BWD,   /* module_calls: set bwd_us / grad_out_norm of the row (step, seq) */
    NS_ROW_TRANSFER,   /* transfers */
    NS_ROW_EVENT,      /* events */
    NS_ROW_KERNEL,     /* kernels; the name is interned into strings by the writer */
    NS_ROW_RUN,        /* runs: update devices / cupti_status of this run */
} ns_row_kind;

/* One row for the writer. Strings are borrowed: push copies them, so they may point anywhere
 * (stack, reused buffers) and need to live only during the push. A NULL string is SQL NULL.
 * Integers marked "nullable" use NS_NULL, doubles use NAN, for NULL. Columns not listed (run_id,
 * events.id, params/modules defaults) are filled by the writer. Column meanings: schema.sql. */
typedef struct {
    ns_row_kind kind;
    union {
        struct {
            int64_t id;
            int64_t parent_id; /* nullable */
            const char *path, *type, *describe;
            int registered, created_in_forward;
            int64_t creator_id; /* nullable */
            int64_t n_params;
            int64_t first_step; /* nullable */
        } module;
        struct {
            int64_t id, module_id;
            const char *name, *kind, *shape; /* kind: "param" or "buffer" */
            int64_t numel;
            int requires_grad, in_optimizer;
            double lr; /* nullable */
        } param;
        struct {
            int64_t step;
            const char *phase;                       /* "train" or "eval" */
            int64_t epoch, samples;                  /* nullable */
            double loss, lr, wall_time, duration_us; /* wall_time: unix seconds, required */
            int64_t scope_bytes;                     /* nullable */
            int64_t dev_mem_in_use, dev_mem_cached, dev_mem_peak; /* nullable */
        } step;
        struct {
            int64_t step, param_id;
            double grad_norm, update_norm, weight_norm, ratio; /* nullable */
            int64_t nonfinite;
            const char *device;
        } param_stat;
        struct {
            int64_t step, module_id, seq;
            int64_t caller_id; /* nullable */
            const char *phase;
            int training, grad_enabled;
            const char *in_device, *param_device, *out_device, *in_shape, *out_shape;
            double fwd_us, bwd_us, grad_out_norm;               /* nullable */
            double out_mean, out_std, out_zero_frac, dead_frac; /* nullable */
            int64_t out_nonfinite;                              /* nullable */
        } call;
        struct {
            int64_t step, seq;
            double bwd_us, grad_out_norm; /* NAN: leave the column as it is */
        } call_bwd;
        struct {
            int64_t step;
            int64_t module_id; /* nullable */
            const char *src, *dst;
            int64_t bytes, count;
        } transfer;
        struct {
            int64_t step, module_id, param_id; /* nullable */
            const char *kind, *detail;
            double value;     /* nullable */
            double wall_time; /* unix seconds, required */
        } event;
        struct {
            int64_t step;
            int64_t module_id;               /* nullable */
            const char *phase, *kind, *name; /* kind: "kernel", "memcpy", "memset" */
            int64_t start_ns, end_ns;
            int64_t grid[3], block[3], stream, bytes; /* nullable */
        } kernel;
        struct {
            const char *devices, *cupti_status; /* NULL: leave the column as it is */
        } run;
    };
} ns_row;

/* Queue and writer settings. Zero numeric fields take the default shown after the ';'. */
typedef struct {
    ns_queue_policy policy; /* what a push into a full queue does; NS_QUEUE_BLOCK */
    int queue_rows;         /* queue capacity in rows, rounded up to a power of two; 65536 */
    size_t text_bytes;      /* capacity of the string ring; 0: 64 bytes per row, at least 1 MiB */
    int commit_ms;          /* commit rows at most this long after the first of a batch; 100 */
    int batch_rows;         /* also commit when a transaction holds this many rows; 16384 */
    int max_lag_ms;         /* bound on how far the writer may fall behind the program: the
                               queue also counts as full while it holds more rows than the
                               writer (as measured) inserts in this time, or while its oldest
                               row has waited this long. A crash then loses at most about
                               max_lag_ms + commit_ms of rows; 300; < 0: capacity only */
    int heartbeat_ms;       /* an idle writer still commits runs.heartbeat_at this often; 1000 */
    int busy_timeout_ms;    /* wait for another writer of the same file this long; 5000 */
    int64_t max_pages;      /* tests: PRAGMA max_page_count after the schema; 0: no limit */
    /* Called once, on the writer thread, with the message when recording stops; NULL prints it to
     * stderr. */
    void (*on_error)(const char *msg, void *ctx);
    void *on_error_ctx;
} ns_writer_opts;

/* What the runs row records about the program. NULL / 0 fields take the default shown. */
typedef struct {
    const char *command;        /* NULL: /proc/self/cmdline joined by spaces */
    const char *host;           /* NULL: gethostname() */
    int64_t pid;                /* 0: getpid() */
    const char *engine_version; /* NULL: this build's NS_VERSION */
    const char *devices;        /* NULL: "cpu" */
    int sample_every;           /* 0: 1 */
    double started_at;          /* 0: now (unix seconds) */
} ns_run_meta;

/* Counters of one writer (a consistent snapshot). */
typedef struct {
    uint64_t pushed;    /* rows accepted into the queue */
    uint64_t committed; /* rows whose transaction committed (rejected rows included) */
    uint64_t dropped;   /* rows refused by a full queue under NS_QUEUE_DROP (= runs.dropped) */
    uint64_t lost;      /* rows refused or discarded because recording had stopped */
    uint64_t rejected;  /* rows SQLite refused (constraint: a duplicate key); see first_reject */
    uint64_t commits;   /* transactions committed */
    char first_reject[160]; /* SQLite's message for the first rejected row, or "" */
} ns_writer_stats;

/* Fills o with the defaults documented in ns_writer_opts. */
void ns_writer_opts_default(ns_writer_opts *o);

/* Fills r with kind and every nullable field set to NULL (NS_NULL, NAN, NULL string), every other
 * field zero. */
void ns_row_init(ns_row *r, ns_row_kind kind);

/* Unix time in seconds (CLOCK_REALTIME), the clock of every wall_time column. */
double ns_wall_time(void);

/* Opens or creates the database at path, sets busy_timeout, journal_mode=WAL and
 * synchronous=NORMAL, creates the schema if missing (several runs share one file), inserts the
 * runs row (status 'running') and starts the writer thread. opts and meta may be NULL (defaults).
 * Returns the writer, which the caller ends with ns_writer_close(). On failure returns NULL and
 * writes one message naming path and SQLite's error into err (errlen bytes, may be 0); nothing
 * is printed. */
ns_writer *ns_writer_open(const char *path, const ns_writer_opts *opts, const ns_run_meta *meta,
                          char *err, size_t errlen);

/* The run's id (runs.id) in the database. */
int64_t ns_writer_run_id(const ns_writer *w);

/* The database path given to open (owned by w). */
const char *ns_writer_path(const ns_writer *w);

/* Queues a copy of row (strings included) for the writer thread. Never calls SQLite. Returns
 * true when queued. When the queue is full, NS_QUEUE_BLOCK waits for room and NS_QUEUE_DROP
 * returns false at once and counts the row in runs.dropped. Once recording has stopped (see
 * ns_writer_error) returns false at once. */
bool ns_writer_push(ns_writer *w, const ns_row *row);

/* Waits until every row pushed before the call is committed. Returns 0, or -1 when recording has
 * stopped (the rows not yet committed are lost). */
int ns_writer_flush(ns_writer *w);

/* The message that stopped recording ("nnscope: recording to PATH stopped after step N: SQLite's
 * error"), owned by w; NULL while recording is healthy. */
const char *ns_writer_error(const ns_writer *w);

/* Copies the writer's counters into s. */
void ns_writer_stats_get(ns_writer *w, ns_writer_stats *s);

/* Drains the queue, commits, writes ended_at, status ('finished', 'interrupted', 'failed'),
 * status_detail (detail, may be NULL) and, when recording had stopped, runs.record_error; stops
 * the writer thread, closes the database and frees w. Safe from an atexit() handler or another
 * thread; not from a signal handler (set a flag or write a self-pipe there). No push may run
 * concurrently or afterwards. Returns 0 when every pushed row (except drops) reached the
 * database, -1 when recording had stopped (or in a forked child). NULL is a no-op returning 0. */
int ns_writer_close(ns_writer *w, ns_run_status status, const char *detail);

#endif
