/* The recorder's bounded queue: a ring of fixed-size row slots plus a ring of text for their
 * strings, both allocated once, and the hand-over between producers and the one writer thread
 * (wake-ups, flush targets, close, stop). Internal to hooks/: see writer.h for the public API.
 *
 * Rows are numbered by a sequence: [tail, head) are queued, [0, committed) are in the database.
 * The writer takes a snapshot of [tail, head), inserts those rows, releases them in order (which
 * frees their slots and text) and reports commits; producers only write free slots, so the
 * writer reads its snapshot without holding the lock.
 */
#ifndef NNSCOPE_QUEUE_H
#define NNSCOPE_QUEUE_H

#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#include "writer.h"

/* Per slot: where its strings end in the text ring, and when it was pushed. */
typedef struct {
    uint64_t text_end; /* text_head after the row's strings were copied */
    int64_t pushed_ms; /* CLOCK_MONOTONIC_COARSE, milliseconds */
} ns_queue_meta;

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t work;  /* the writer waits here */
    pthread_cond_t space; /* producers wait for room (NS_QUEUE_BLOCK) */
    pthread_cond_t done;  /* flush() waits for commits */

    ns_row *slots; /* cap rows; strings point into text */
    ns_queue_meta *meta;
    uint64_t cap, mask; /* power of two */
    char *text;         /* text ring, text_cap bytes (power of two) */
    uint64_t text_cap, text_head, text_tail;

    uint64_t head, tail, committed, flush_target;
    uint64_t wake_rows; /* a sleeping writer is woken when this many rows wait */
    int64_t max_lag_ms; /* the queue is also full while its oldest row is older than this */
    uint64_t limit;     /* ... or holds more rows than the writer inserts in max_lag_ms */
    ns_queue_policy policy;
    bool closing;
    bool writer_sleeping;  /* in ns_queue_wait */
    bool writer_idle;      /* sleeping with no transaction open: wake it for the first row */
    int producers_waiting; /* blocked in push: the writer must not sleep on queued rows */
    atomic_bool stopped;   /* recording stopped: producers return at once */

    uint64_t dropped;           /* full queue, NS_QUEUE_DROP */
    atomic_uint_least64_t lost; /* refused or discarded after the stop */
} ns_queue;

/* What the writer found on waking: rows [first, first + n) to insert, and why it woke. */
typedef struct {
    uint64_t first, n;
    bool flush;   /* a flush() waits: commit what was inserted */
    bool closing; /* close() was called: drain, commit and finish */
} ns_queue_take;

/* Allocates the rings (rows rounded up to a power of two, text_bytes likewise, at least 64 KiB).
 * The queue counts as full when it holds rows rows or its text ring has no room, and, unless
 * max_lag_ms is 0, when it holds more rows than the writer inserts in max_lag_ms (see
 * ns_queue_set_rate; 8192 rows until the first measurement) or its oldest row has waited longer
 * than max_lag_ms: a slow writer then slows the producer (or drops rows) instead of falling
 * behind the program without bound. Returns 0, or -1 when memory is short. */
int ns_queue_init(ns_queue *q, int rows, size_t text_bytes, ns_queue_policy policy,
                  uint64_t wake_rows, int max_lag_ms);
/* Frees the rings; no thread may use q any more. */
void ns_queue_free(ns_queue *q);

/* Producer side. Copies row and its strings into the queue. Returns 0 when queued, 1 when the
 * queue was full under NS_QUEUE_DROP (counted in dropped), 2 when recording has stopped (counted
 * in lost). */
int ns_queue_push(ns_queue *q, const ns_row *row);
/* Waits until every row queued before the call is committed. 0, or -1 once stopped. */
int ns_queue_flush(ns_queue *q);
/* Asks the writer to drain, commit and finish. */
void ns_queue_close(ns_queue *q);

/* Writer side. Sleeps until wake_rows rows wait, a flush or close is requested, the first row
 * arrives while idle (idle: no transaction open), or deadline (CLOCK_MONOTONIC) passes; then
 * fills t with a snapshot. */
void ns_queue_wait(ns_queue *q, const struct timespec *deadline, bool idle, ns_queue_take *t);
/* The row with sequence number seq (inside the writer's snapshot). */
static inline const ns_row *ns_queue_row(const ns_queue *q, uint64_t seq) {
    return &q->slots[seq & q->mask];
}
/* Frees every row before upto (in order); wakes blocked producers. */
void ns_queue_release(ns_queue *q, uint64_t upto);
/* The writer measured that it inserts rows_per_s: the queue takes at most max_lag_ms of that
 * work (at least 1024 rows, at most its capacity). */
void ns_queue_set_rate(ns_queue *q, double rows_per_s);
/* Records that every row before upto is committed; wakes flush() callers. */
void ns_queue_committed(ns_queue *q, uint64_t upto);
/* Recording stopped: drops what is queued (counted in lost), makes every later push and flush
 * return at once, wakes everybody. */
void ns_queue_stop(ns_queue *q);
/* Copies the counters (pushed = head, committed, dropped, lost) under the lock. */
void ns_queue_counts(ns_queue *q, uint64_t *pushed, uint64_t *committed, uint64_t *dropped,
                     uint64_t *lost);

#endif
