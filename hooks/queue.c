/* The recorder's bounded queue (see queue.h). */
#include "queue.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

static uint64_t pow2_at_least(uint64_t n) {
    uint64_t p = 1;
    while (p < n) p <<= 1;
    return p;
}

int ns_queue_init(ns_queue *q, int rows, size_t text_bytes, ns_queue_policy policy,
                  uint64_t wake_rows, int max_lag_ms) {
    memset(q, 0, sizeof *q);
    q->cap = pow2_at_least(rows > 1 ? (uint64_t)rows : 2);
    q->mask = q->cap - 1;
    q->text_cap = pow2_at_least(text_bytes > 65536 ? text_bytes : 65536);
    q->slots = malloc(q->cap * sizeof *q->slots);
    q->meta = malloc(q->cap * sizeof *q->meta);
    q->text = malloc(q->text_cap);
    if (!q->slots || !q->meta || !q->text) {
        ns_queue_free(q);
        return -1;
    }
    /* touch every page now, so that no push takes a page fault on the training thread */
    memset(q->slots, 0, q->cap * sizeof *q->slots);
    memset(q->meta, 0, q->cap * sizeof *q->meta);
    memset(q->text, 0, q->text_cap);
    q->policy = policy;
    q->max_lag_ms = max_lag_ms > 0 ? max_lag_ms : 0;
    q->limit = q->max_lag_ms && q->cap > 8192 ? 8192 : q->cap;
    q->wake_rows = wake_rows < 1 ? 1 : wake_rows > q->cap ? q->cap : wake_rows;
    atomic_init(&q->stopped, false);
    atomic_init(&q->lost, 0);
    pthread_mutex_init(&q->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&q->work, &ca);
    pthread_condattr_destroy(&ca);
    pthread_cond_init(&q->space, NULL);
    pthread_cond_init(&q->done, NULL);
    return 0;
}

void ns_queue_free(ns_queue *q) {
    if (q->slots && q->meta && q->text) {
        pthread_mutex_destroy(&q->mu);
        pthread_cond_destroy(&q->work);
        pthread_cond_destroy(&q->space);
        pthread_cond_destroy(&q->done);
    }
    free(q->slots);
    free(q->meta);
    free(q->text);
    q->slots = NULL;
    q->meta = NULL;
    q->text = NULL;
}

/* The string fields of a row: fills f with their addresses, returns how many. */
static int row_texts(ns_row *r, const char ***f) {
    int n = 0;
    switch (r->kind) {
    case NS_ROW_MODULE:
        f[n++] = &r->module.path, f[n++] = &r->module.type, f[n++] = &r->module.describe;
        break;
    case NS_ROW_PARAM:
        f[n++] = &r->param.name, f[n++] = &r->param.kind, f[n++] = &r->param.shape;
        break;
    case NS_ROW_STEP:
        f[n++] = &r->step.phase;
        break;
    case NS_ROW_PARAM_STAT:
        f[n++] = &r->param_stat.device;
        break;
    case NS_ROW_CALL:
        f[n++] = &r->call.phase, f[n++] = &r->call.in_device, f[n++] = &r->call.param_device;
        f[n++] = &r->call.out_device, f[n++] = &r->call.in_shape, f[n++] = &r->call.out_shape;
        break;
    case NS_ROW_CALL_BWD:
        break;
    case NS_ROW_TRANSFER:
        f[n++] = &r->transfer.src, f[n++] = &r->transfer.dst;
        break;
    case NS_ROW_EVENT:
        f[n++] = &r->event.kind, f[n++] = &r->event.detail;
        break;
    case NS_ROW_KERNEL:
        f[n++] = &r->kernel.phase, f[n++] = &r->kernel.kind, f[n++] = &r->kernel.name;
        break;
    case NS_ROW_RUN:
        f[n++] = &r->run.devices, f[n++] = &r->run.cupti_status;
        break;
    }
    assert(n <= 6);
    return n;
}

/* Length of s as stored: at most NS_ROW_TEXT_MAX bytes, never ending inside a UTF-8 sequence. */
static size_t text_len(const char *s) {
    size_t n = strnlen(s, NS_ROW_TEXT_MAX + 1);
    if (n <= NS_ROW_TEXT_MAX) return n;
    n = NS_ROW_TEXT_MAX;
    while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80) n--;
    return n;
}

static int64_t coarse_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static bool has_room(const ns_queue *q, uint64_t need, int64_t now, uint64_t *skip) {
    if (q->head - q->tail >= q->limit) return false;
    if (q->max_lag_ms && q->head > q->tail &&
        now - q->meta[q->tail & q->mask].pushed_ms > q->max_lag_ms)
        return false;
    uint64_t off = q->text_head & (q->text_cap - 1);
    *skip = off + need > q->text_cap ? q->text_cap - off : 0; /* strings never wrap */
    return q->text_head + *skip + need - q->text_tail <= q->text_cap;
}

int ns_queue_push(ns_queue *q, const ns_row *row) {
    if (atomic_load_explicit(&q->stopped, memory_order_acquire)) {
        atomic_fetch_add_explicit(&q->lost, 1, memory_order_relaxed);
        return 2;
    }
    ns_row tmp = *row;
    const char **f[6];
    size_t len[6];
    int nf = row_texts(&tmp, f);
    uint64_t need = 0;
    for (int i = 0; i < nf; i++) {
        len[i] = *f[i] ? text_len(*f[i]) : 0;
        need += *f[i] ? len[i] + 1 : 0;
    }

    pthread_mutex_lock(&q->mu);
    uint64_t skip = 0;
    int64_t now = coarse_ms();
    while (!has_room(q, need, now, &skip)) {
        if (atomic_load_explicit(&q->stopped, memory_order_relaxed)) break;
        if (q->policy == NS_QUEUE_DROP) {
            q->dropped++;
            pthread_mutex_unlock(&q->mu);
            return 1;
        }
        if (q->writer_sleeping) {
            q->writer_sleeping = false;
            pthread_cond_signal(&q->work);
        }
        q->producers_waiting++;
        pthread_cond_wait(&q->space, &q->mu);
        q->producers_waiting--;
        now = coarse_ms();
    }
    if (atomic_load_explicit(&q->stopped, memory_order_relaxed)) {
        pthread_mutex_unlock(&q->mu);
        atomic_fetch_add_explicit(&q->lost, 1, memory_order_relaxed);
        return 2;
    }
    char *p = q->text + ((q->text_head + skip) & (q->text_cap - 1));
    for (int i = 0; i < nf; i++) {
        if (!*f[i]) continue;
        memcpy(p, *f[i], len[i]);
        p[len[i]] = '\0';
        *f[i] = p;
        p += len[i] + 1;
    }
    q->text_head += skip + need;
    uint64_t slot = q->head & q->mask;
    q->slots[slot] = tmp;
    q->meta[slot].text_end = q->text_head;
    q->meta[slot].pushed_ms = now;
    q->head++;
    uint64_t waiting = q->head - q->tail;
    if (q->writer_sleeping && (waiting >= q->wake_rows || (q->writer_idle && waiting == 1))) {
        q->writer_sleeping = false;
        pthread_cond_signal(&q->work);
    }
    pthread_mutex_unlock(&q->mu);
    return 0;
}

int ns_queue_flush(ns_queue *q) {
    pthread_mutex_lock(&q->mu);
    uint64_t target = q->head;
    if (q->flush_target < target) q->flush_target = target;
    if (q->committed < target && q->writer_sleeping) {
        q->writer_sleeping = false;
        pthread_cond_signal(&q->work);
    }
    while (q->committed < target && !atomic_load_explicit(&q->stopped, memory_order_relaxed))
        pthread_cond_wait(&q->done, &q->mu);
    int rc = atomic_load_explicit(&q->stopped, memory_order_relaxed) ? -1 : 0;
    pthread_mutex_unlock(&q->mu);
    return rc;
}

void ns_queue_close(ns_queue *q) {
    pthread_mutex_lock(&q->mu);
    q->closing = true;
    pthread_cond_signal(&q->work);
    pthread_mutex_unlock(&q->mu);
}

static bool before(const struct timespec *a, const struct timespec *b) {
    return a->tv_sec < b->tv_sec || (a->tv_sec == b->tv_sec && a->tv_nsec < b->tv_nsec);
}

void ns_queue_wait(ns_queue *q, const struct timespec *deadline, bool idle, ns_queue_take *t) {
    pthread_mutex_lock(&q->mu);
    for (;;) {
        if (q->closing) break;
        if (atomic_load_explicit(&q->stopped, memory_order_relaxed)) {
            /* nothing left to write: only close matters */
            pthread_cond_wait(&q->work, &q->mu);
            continue;
        }
        uint64_t waiting = q->head - q->tail;
        if (waiting >= q->wake_rows || q->flush_target > q->committed) break;
        if (waiting > 0 && q->producers_waiting > 0) break; /* the queue is full for them */
        if (idle && waiting > 0) break;
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (!before(&now, deadline)) break;
        q->writer_sleeping = true;
        q->writer_idle = idle;
        int rc = pthread_cond_timedwait(&q->work, &q->mu, deadline);
        q->writer_sleeping = false;
        if (rc == ETIMEDOUT) break;
    }
    t->first = q->tail;
    t->n = q->head - q->tail;
    t->flush = q->flush_target > q->committed;
    t->closing = q->closing;
    pthread_mutex_unlock(&q->mu);
}

void ns_queue_release(ns_queue *q, uint64_t upto) {
    pthread_mutex_lock(&q->mu);
    assert(upto > q->tail && upto <= q->head);
    q->tail = upto;
    q->text_tail = q->meta[(upto - 1) & q->mask].text_end;
    pthread_cond_broadcast(&q->space);
    pthread_mutex_unlock(&q->mu);
}

void ns_queue_set_rate(ns_queue *q, double rows_per_s) {
    if (!q->max_lag_ms) return;
    double n = rows_per_s * (double)q->max_lag_ms * 1e-3;
    uint64_t limit = n < 1024 ? 1024 : n > (double)q->cap ? q->cap : (uint64_t)n;
    pthread_mutex_lock(&q->mu);
    if (limit > q->limit) pthread_cond_broadcast(&q->space);
    q->limit = limit < q->cap ? limit : q->cap;
    pthread_mutex_unlock(&q->mu);
}

void ns_queue_committed(ns_queue *q, uint64_t upto) {
    pthread_mutex_lock(&q->mu);
    q->committed = upto;
    if (q->flush_target > 0) pthread_cond_broadcast(&q->done);
    pthread_mutex_unlock(&q->mu);
}

void ns_queue_stop(ns_queue *q) {
    pthread_mutex_lock(&q->mu);
    atomic_store_explicit(&q->stopped, true, memory_order_release);
    /* released but uncommitted rows went down with the rolled-back transaction */
    atomic_fetch_add_explicit(&q->lost, q->head - q->committed, memory_order_relaxed);
    q->tail = q->head;
    q->text_tail = q->text_head;
    pthread_cond_broadcast(&q->space);
    pthread_cond_broadcast(&q->done);
    pthread_mutex_unlock(&q->mu);
}

void ns_queue_counts(ns_queue *q, uint64_t *pushed, uint64_t *committed, uint64_t *dropped,
                     uint64_t *lost) {
    pthread_mutex_lock(&q->mu);
    *pushed = q->head;
    *committed = q->committed;
    *dropped = q->dropped;
    *lost = atomic_load_explicit(&q->lost, memory_order_relaxed);
    pthread_mutex_unlock(&q->mu);
}
