/* The GPU activity collector's core: brackets, the activity buffer pool, the join of activity
 * records with their external correlation records, sampling and kernel names (collect.h). Plain
 * C: CUPTI itself is behind the backend (real.c), so everything here runs in the CPU tests.
 *
 * Attribution. Every bracket (step, module, phase) gets an external id; the backend pushes it on
 * CUPTI's per-thread correlation stack, and CUPTI then writes, for each API call made inside it,
 * an EXTERNAL_CORRELATION record (external id -> correlation id of the call). Kernel, memcpy and
 * memset records carry the correlation id of the call that launched them. The two kinds arrive
 * in any order, in any buffers: the correlation table (direct-mapped on the correlation id, which
 * CUPTI assigns in increasing order) remembers the last corr_slots calls, and activity records
 * whose correlation record has not been seen yet wait in the pending list for a few step ends
 * before they are delivered unmatched. Bracket ids are interned per step, so a step uses one id
 * per (module, phase) however often it is pushed.
 */
#include <assert.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "collect.h"

#define MAX_DEPTH 256     /* nested brackets followed; deeper ones are counted, not pushed */
#define INTERN_SLOTS 1024 /* per-step (module, phase) -> id table */

typedef struct {
    uint64_t id; /* 0: empty */
    int64_t step, module_id;
    ns_gpu_phase phase;
} bracket;

typedef struct {
    uint32_t corr;
    bool used;
    uint64_t ext;
} corr_slot;

typedef struct {
    ns_gpu_record rec; /* step, module_id and phase not yet known */
    uint32_t corr;
    int age; /* sampled step ends waited */
} pending;

typedef struct {
    uint64_t hash;
    char *mangled, *display; /* NULL mangled: empty slot */
} name_slot;

typedef struct {
    uint8_t *buf;
    size_t valid;
} done_buf;

struct ns_cupti {
    ns_cupti_backend be;
    ns_cupti_config cfg;
    ns_gpu_sink sink;
    void *ud;

    /* buffer pool: shared with CUPTI's threads, under lock */
    pthread_mutex_t lock;
    uint8_t *pool;
    int *free_list, n_free;
    done_buf *done;
    int n_done;
    int outstanding;        /* buffers handed to CUPTI and not yet back */
    uint64_t cupti_dropped; /* records CUPTI reported dropped */
    uint64_t denied;        /* buffer requests refused */
    done_buf *taken;        /* drain's private copy of done */

    /* brackets (collector's thread) */
    bracket *ctx;
    uint64_t ctx_mask, next_id;
    struct {
        int64_t module_id;
        int phase; /* -1: empty */
        uint64_t id;
    } intern[INTERN_SLOTS];
    int64_t intern_step;
    int n_intern;
    struct {
        uint64_t id;
        bool pushed;
    } stack[MAX_DEPTH], base;
    int depth, overflow;

    corr_slot *corr;
    uint32_t corr_mask;

    pending *pend;
    int n_pend;

    name_slot *names;
    size_t name_mask;
    int n_names;
    /* CUPTI passes the same name pointer for every launch of a kernel: a small cache by pointer
     * (checked with strcmp, which is cheaper than hashing) skips the hash table */
    struct {
        const char *ptr;
        const name_slot *slot;
    } recent[256];

    int64_t ending_step; /* the step step_end is ending (unmatched records go there) */
    ns_cupti_stats stats;
};

void ns_cupti_config_default(ns_cupti_config *cfg) {
    *cfg = (ns_cupti_config){.every_n_steps = 1,
                             .first_step = 0,
                             .n_buffers = 8,
                             .buffer_bytes = (size_t)4 << 20,
                             .corr_slots = 1 << 18,
                             .ctx_slots = 1 << 14,
                             .max_pending = 65536,
                             .pending_steps = 3,
                             .max_names = 8192};
}

const char *ns_gpu_phase_name(ns_gpu_phase phase) {
    switch (phase) {
    case NS_PHASE_FORWARD:
        return "forward";
    case NS_PHASE_BACKWARD:
        return "backward";
    case NS_PHASE_OPTIMIZER:
        return "optimizer";
    case NS_PHASE_OTHER:
        break;
    }
    return "other";
}

static bool pow2(int v) {
    return v > 0 && (v & (v - 1)) == 0;
}

static bool sampled(const ns_cupti *c, int64_t step) {
    int n = c->cfg.every_n_steps;
    return n <= 1 || (step % n + n) % n == 0;
}

/* ------------------------------------------------------------------ kernel names */

static uint64_t fnv1a(const char *s) {
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

/* True when s[i] ('<' or '>') belongs to an operator name (operator<, operator->, operator>>). */
static bool in_operator(const char *s, size_t i) {
    size_t k = i;
    while (k > 0 && (s[k - 1] == '<' || s[k - 1] == '>' || s[k - 1] == '-' || s[k - 1] == '=')) k--;
    return k >= 8 && !strncmp(s + k - 8, "operator", 8);
}

char *ns_kernel_display_name(const char *mangled) {
    char *full = ns_demangle(mangled);
    if (!full) full = strdup(mangled);
    if (!full) return NULL;
    size_t len = strlen(full);
    if (len <= NS_GPU_NAME_MAX) return full;
    /* nested template arguments (depth >= 2) become <...> */
    char *s = malloc(len + 1);
    if (!s) {
        free(full);
        return NULL;
    }
    size_t o = 0;
    int depth = 0;
    for (size_t i = 0; i < len; i++) {
        char ch = full[i];
        bool op = (ch == '<' || ch == '>') && in_operator(full, i);
        if (ch == '<' && !op) {
            if (++depth == 2) {
                memcpy(s + o, "<...>", 5);
                o += 5;
            }
            if (depth >= 2) continue;
        } else if (ch == '>' && !op && depth > 0) {
            if (depth-- >= 2) continue;
        } else if (depth >= 2) {
            continue;
        }
        s[o++] = ch;
    }
    s[o] = 0;
    free(full);
    if (o > NS_GPU_NAME_MAX) {
        /* still too long: cut, and tag with the mangled name's hash so names stay distinct */
        char tag[32];
        int tl = snprintf(tag, sizeof tag, " ...#%016" PRIx64, fnv1a(mangled));
        memcpy(s + NS_GPU_NAME_MAX - (size_t)tl, tag, (size_t)tl + 1);
    }
    return s;
}

/* The interned display name of a kernel (stable until stop). */
static const char *kernel_name(ns_cupti *c, const char *mangled) {
    if (!mangled || !*mangled) return "(unnamed kernel)";
    unsigned r = (unsigned)(((uintptr_t)mangled >> 3) * 0x9E3779B1u) >> 24;
    if (c->recent[r].ptr == mangled && !strcmp(c->recent[r].slot->mangled, mangled))
        return c->recent[r].slot->display;
    uint64_t h = fnv1a(mangled);
    size_t i = (size_t)h & c->name_mask;
    for (;; i = (i + 1) & c->name_mask) {
        name_slot *s = &c->names[i];
        if (!s->mangled) break;
        if (s->hash == h && !strcmp(s->mangled, mangled)) {
            c->recent[r].ptr = mangled;
            c->recent[r].slot = s;
            return s->display;
        }
    }
    if (c->n_names >= c->cfg.max_names) return "(kernel name table full)";
    char *m = strdup(mangled), *d = ns_kernel_display_name(mangled);
    if (!m || !d) {
        free(m);
        free(d);
        return "(out of memory)";
    }
    c->names[i] = (name_slot){.hash = h, .mangled = m, .display = d};
    c->n_names++;
    c->recent[r].ptr = mangled;
    c->recent[r].slot = &c->names[i];
    return d;
}

static const char *copy_name(ns_copy_kind k) {
    switch (k) {
    case NS_COPY_HTOD:
        return "memcpy HtoD";
    case NS_COPY_DTOH:
        return "memcpy DtoH";
    case NS_COPY_DTOD:
        return "memcpy DtoD";
    case NS_COPY_HTOH:
        return "memcpy HtoH";
    case NS_COPY_PTOP:
        return "memcpy PtoP";
    case NS_COPY_NONE:
        break;
    }
    return "memcpy";
}

/* ------------------------------------------------------------------ lifetime */

static void set_base(ns_cupti *c, int64_t step);

static void set_why(char *why, size_t whylen, const char *msg) {
    if (why && whylen) snprintf(why, whylen, "%s", msg);
}

ns_cupti *ns_cupti_new(const ns_cupti_backend *be, const ns_cupti_config *cfg, ns_gpu_sink sink,
                       void *ud, char *why, size_t whylen) {
    assert(be && be->push && be->pop && be->flush && be->walk && be->stop && sink);
    ns_cupti_config d;
    ns_cupti_config_default(&d);
    if (!cfg) cfg = &d;
    assert(pow2(cfg->corr_slots) && pow2(cfg->ctx_slots) && cfg->n_buffers > 0 &&
           cfg->buffer_bytes >= 1024 && cfg->buffer_bytes % 8 == 0 && cfg->max_names > 0 &&
           cfg->max_pending > 0);
    ns_cupti *c = calloc(1, sizeof *c);
    if (!c) {
        set_why(why, whylen, "out of memory for the CUPTI collector");
        return NULL;
    }
    c->be = *be;
    c->cfg = *cfg;
    if (c->cfg.every_n_steps < 1) c->cfg.every_n_steps = 1;
    c->sink = sink;
    c->ud = ud;
    pthread_mutex_init(&c->lock, NULL);
    size_t name_slots = 1;
    while (name_slots < (size_t)cfg->max_names * 2) name_slots <<= 1;
    size_t pool_bytes = ((size_t)cfg->n_buffers * cfg->buffer_bytes + 63) & ~(size_t)63;
    c->pool = aligned_alloc(64, pool_bytes); /* untouched pages cost nothing until CUPTI writes */
    c->free_list = malloc(sizeof *c->free_list * (size_t)cfg->n_buffers);
    c->done = malloc(sizeof *c->done * (size_t)cfg->n_buffers);
    c->taken = malloc(sizeof *c->taken * (size_t)cfg->n_buffers);
    c->ctx = calloc((size_t)cfg->ctx_slots, sizeof *c->ctx);
    c->corr = calloc((size_t)cfg->corr_slots, sizeof *c->corr);
    c->pend = malloc(sizeof *c->pend * (size_t)cfg->max_pending);
    c->names = calloc(name_slots, sizeof *c->names);
    if (!c->pool || !c->free_list || !c->done || !c->taken || !c->ctx || !c->corr || !c->pend ||
        !c->names) {
        char msg[128];
        snprintf(msg, sizeof msg, "out of memory for the CUPTI collector (%d x %zu-byte buffers)",
                 cfg->n_buffers, cfg->buffer_bytes);
        set_why(why, whylen, msg);
        free(c->pool);
        free(c->free_list);
        free(c->done);
        free(c->taken);
        free(c->ctx);
        free(c->corr);
        free(c->pend);
        free(c->names);
        pthread_mutex_destroy(&c->lock);
        free(c);
        return NULL;
    }
    for (int i = 0; i < cfg->n_buffers; i++) c->free_list[i] = cfg->n_buffers - 1 - i;
    c->n_free = cfg->n_buffers;
    c->ctx_mask = (uint64_t)cfg->ctx_slots - 1;
    c->corr_mask = (uint32_t)cfg->corr_slots - 1;
    c->name_mask = name_slots - 1;
    c->next_id = 1;
    c->intern_step = INT64_MIN;
    c->ending_step = cfg->first_step;
    set_base(c, cfg->first_step);
    return c;
}

/* ------------------------------------------------------------------ buffer pool */

uint8_t *ns_cupti_buffer_request(ns_cupti *c, size_t *size) {
    uint8_t *b = NULL;
    pthread_mutex_lock(&c->lock);
    if (c->n_free > 0) {
        b = c->pool + (size_t)c->free_list[--c->n_free] * c->cfg.buffer_bytes;
        c->outstanding++;
    } else {
        c->denied++;
    }
    pthread_mutex_unlock(&c->lock);
    *size = b ? c->cfg.buffer_bytes : 0;
    return b;
}

void ns_cupti_buffer_done(ns_cupti *c, uint8_t *buf, size_t valid, uint64_t dropped) {
    pthread_mutex_lock(&c->lock);
    c->cupti_dropped += dropped;
    size_t total = (size_t)c->cfg.n_buffers * c->cfg.buffer_bytes;
    bool ours = buf && buf >= c->pool && buf < c->pool + total &&
                (size_t)(buf - c->pool) % c->cfg.buffer_bytes == 0;
    if (ours && c->n_done < c->cfg.n_buffers) {
        c->done[c->n_done++] = (done_buf){buf, valid <= c->cfg.buffer_bytes ? valid : 0};
        c->outstanding--;
    }
    pthread_mutex_unlock(&c->lock);
}

/* Decodes every completed buffer and returns it to the pool. */
static void drain(ns_cupti *c) {
    pthread_mutex_lock(&c->lock);
    int n = c->n_done;
    memcpy(c->taken, c->done, sizeof *c->done * (size_t)n);
    c->n_done = 0;
    pthread_mutex_unlock(&c->lock);
    for (int i = 0; i < n; i++)
        if (c->taken[i].valid) c->be.walk(c, c->taken[i].buf, c->taken[i].valid, c->be.ud);
    pthread_mutex_lock(&c->lock);
    for (int i = 0; i < n; i++)
        c->free_list[c->n_free++] =
            (int)((size_t)(c->taken[i].buf - c->pool) / c->cfg.buffer_bytes);
    pthread_mutex_unlock(&c->lock);
}

/* ------------------------------------------------------------------ brackets */

static uint64_t bracket_id(ns_cupti *c, int64_t step, int64_t module_id, ns_gpu_phase phase) {
    if (c->intern_step != step) {
        for (int i = 0; i < INTERN_SLOTS; i++) c->intern[i].phase = -1;
        c->intern_step = step;
        c->n_intern = 0;
    }
    uint64_t h = ((uint64_t)module_id * 0x9E3779B97F4A7C15ULL) ^ (uint64_t)phase;
    uint64_t id = 0;
    unsigned i = (unsigned)(h >> 20) & (INTERN_SLOTS - 1);
    for (;; i = (i + 1) & (INTERN_SLOTS - 1)) {
        if (c->intern[i].phase < 0) break;
        if (c->intern[i].module_id == module_id && c->intern[i].phase == (int)phase) {
            id = c->intern[i].id;
            break;
        }
    }
    if (!id) {
        id = c->next_id++;
        if (c->n_intern < INTERN_SLOTS / 2) {
            c->intern[i].module_id = module_id;
            c->intern[i].phase = (int)phase;
            c->intern[i].id = id;
            c->n_intern++;
        }
    }
    /* (re)written at every push, so a bracket in use is never lost to older ones */
    c->ctx[id & c->ctx_mask] =
        (bracket){.id = id, .step = step, .module_id = module_id, .phase = phase};
    return id;
}

void ns_cupti_push(ns_cupti *c, int64_t step, int64_t module_id, ns_gpu_phase phase) {
    if (!c) return;
    if (c->depth == MAX_DEPTH) {
        c->overflow++;
        return;
    }
    uint64_t id = 0;
    bool pushed = false;
    if (sampled(c, step)) {
        id = bracket_id(c, step, module_id, phase);
        pushed = c->be.push(id, c->be.ud) == 0;
    }
    c->stack[c->depth].id = id;
    c->stack[c->depth++].pushed = pushed;
}

void ns_cupti_pop(ns_cupti *c) {
    if (!c) return;
    if (c->overflow) {
        c->overflow--;
        return;
    }
    if (c->depth == 0) return; /* opened before the hooks were installed */
    if (c->stack[--c->depth].pushed) c->be.pop(c->be.ud);
}

/* Replaces the bottom bracket (launches outside any push) with (step, -1, OTHER). Pushed in every
 * step, sampled or not, so records of unsampled steps are recognised and skipped. */
static void set_base(ns_cupti *c, int64_t step) {
    if (c->base.pushed) c->be.pop(c->be.ud);
    c->base.id = bracket_id(c, step, -1, NS_PHASE_OTHER);
    c->base.pushed = c->be.push(c->base.id, c->be.ud) == 0;
}

/* ------------------------------------------------------------------ records */

static void deliver(ns_cupti *c, ns_gpu_record *rec) {
    if (!sampled(c, rec->step)) {
        c->stats.skipped++;
        return;
    }
    if (!strcmp(rec->kind, "kernel"))
        c->stats.kernels++;
    else if (!strcmp(rec->kind, "memcpy"))
        c->stats.memcpys++;
    else
        c->stats.memsets++;
    c->sink(rec, c->ud);
}

/* The bracket of correlation id corr, or NULL when its correlation record is not (or no longer)
 * known. */
static const bracket *bracket_of(const ns_cupti *c, uint32_t corr) {
    const corr_slot *s = &c->corr[corr & c->corr_mask];
    if (!s->used || s->corr != corr) return NULL;
    const bracket *b = &c->ctx[s->ext & c->ctx_mask];
    return b->id == s->ext ? b : NULL;
}

static void attribute(ns_gpu_record *rec, const bracket *b) {
    rec->step = b->step;
    rec->module_id = b->module_id;
    rec->phase = b->phase;
}

void ns_cupti_record(ns_cupti *c, const ns_cupti_raw *r) {
    if (r->kind == NS_RAW_EXTERNAL) {
        c->corr[r->correlation & c->corr_mask] =
            (corr_slot){.corr = r->correlation, .used = true, .ext = r->external_id};
        return;
    }
    if (r->kind != NS_RAW_KERNEL && r->kind != NS_RAW_MEMCPY && r->kind != NS_RAW_MEMSET) {
        c->stats.ignored++;
        return;
    }
    const bracket *b = bracket_of(c, r->correlation);
    if (b && !sampled(c, b->step)) { /* the common case of sampling: no name work */
        c->stats.skipped++;
        return;
    }
    ns_gpu_record rec = {.step = c->ending_step,
                         .module_id = -1,
                         .phase = NS_PHASE_OTHER,
                         .start_ns = r->start_ns,
                         .end_ns = r->end_ns,
                         .stream = r->stream,
                         .device = r->device,
                         .bytes = r->bytes,
                         .copy_kind = NS_COPY_NONE};
    if (r->kind == NS_RAW_KERNEL) {
        rec.kind = "kernel";
        rec.name = kernel_name(c, r->name);
        memcpy(rec.grid, r->grid, sizeof rec.grid);
        memcpy(rec.block, r->block, sizeof rec.block);
        rec.bytes = -1;
    } else if (r->kind == NS_RAW_MEMCPY) {
        rec.kind = "memcpy";
        rec.copy_kind = r->copy_kind;
        rec.name = copy_name(r->copy_kind);
    } else {
        rec.kind = "memset";
        rec.name = "memset";
    }
    if (b) {
        attribute(&rec, b);
        deliver(c, &rec);
        return;
    }
    if (c->n_pend == c->cfg.max_pending) {
        c->stats.dropped++;
        return;
    }
    c->pend[c->n_pend++] = (pending){.rec = rec, .corr = r->correlation, .age = 0};
}

void ns_cupti_count_dropped(ns_cupti *c, uint64_t n) {
    c->stats.dropped += n;
}

/* Delivers the pending records whose correlation record has arrived; the others age by one
 * sampled step end (aging) and past pending_steps, or when final, go out unmatched under the step
 * being ended. */
static void settle_pending(ns_cupti *c, bool aging, bool final) {
    int kept = 0;
    for (int i = 0; i < c->n_pend; i++) {
        pending *p = &c->pend[i];
        const bracket *b = bracket_of(c, p->corr);
        if (b) {
            attribute(&p->rec, b);
            deliver(c, &p->rec);
            continue;
        }
        if (aging) p->age++;
        if (final || p->age > c->cfg.pending_steps) {
            p->rec.step = c->ending_step;
            if (sampled(c, p->rec.step)) c->stats.unmatched++;
            deliver(c, &p->rec);
            continue;
        }
        c->pend[kept++] = *p;
    }
    c->n_pend = kept;
}

/* ------------------------------------------------------------------ steps */

void ns_cupti_step_end(ns_cupti *c, int64_t step) {
    if (!c) return;
    bool flush = sampled(c, step);
    c->ending_step = step;
    if (flush) c->be.flush(false, c->be.ud);
    drain(c);
    settle_pending(c, flush, false);
    /* a step ended inside a bracket (unbalanced caller): keep the old bottom bracket, which
     * CUPTI's stack cannot reach now */
    if (c->depth == 0 && !c->overflow) set_base(c, step + 1);
    c->ending_step = step + 1;
}

void ns_cupti_stop(ns_cupti *c, ns_cupti_stats *final) {
    if (final) memset(final, 0, sizeof *final);
    if (!c) return;
    c->be.flush(true, c->be.ud);
    drain(c);
    while (c->depth > 0 || c->overflow) ns_cupti_pop(c);
    if (c->base.pushed) c->be.pop(c->be.ud);
    c->base.pushed = false;
    c->be.stop(c->be.ud); /* disables collection and flushes what is left */
    drain(c);
    settle_pending(c, true, true);
    if (final) ns_cupti_get_stats(c, final);
    pthread_mutex_lock(&c->lock);
    bool lent = c->outstanding > 0;
    pthread_mutex_unlock(&c->lock);
    /* a buffer CUPTI never gave back may still be written: the pool is then left allocated */
    if (!lent) free(c->pool);
    for (size_t i = 0; i <= c->name_mask; i++) {
        free(c->names[i].mangled);
        free(c->names[i].display);
    }
    free(c->names);
    free(c->free_list);
    free(c->done);
    free(c->taken);
    free(c->ctx);
    free(c->corr);
    free(c->pend);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

void ns_cupti_get_stats(const ns_cupti *c, ns_cupti_stats *out) {
    ns_cupti *m = (ns_cupti *)c; /* the lock is not part of the value */
    pthread_mutex_lock(&m->lock);
    *out = c->stats;
    out->dropped += c->cupti_dropped;
    out->buffers_denied = c->denied;
    pthread_mutex_unlock(&m->lock);
}

char *ns_cupti_stats_text(const ns_cupti_stats *st, char *out, size_t len) {
    ns_cupti_stats s = *st;
    snprintf(out, len,
             "cupti: %" PRIu64 " kernels, %" PRIu64 " memcpy, %" PRIu64 " memset, %" PRIu64
             " unmatched, %" PRIu64 " skipped, %" PRIu64 " dropped, %" PRIu64 " buffers denied",
             s.kernels, s.memcpys, s.memsets, s.unmatched, s.skipped, s.dropped, s.buffers_denied);
    return out;
}

#ifndef NS_HAVE_CUPTI
/* Builds without CUPTI: collection cannot start, and the recording says so. */
ns_cupti *ns_cupti_start(ns_gpu_sink sink, void *ud, int64_t first_step, int every_n_steps,
                         char *why, size_t whylen) {
    (void)sink;
    (void)ud;
    (void)first_step;
    (void)every_n_steps;
    set_why(why, whylen, "built without CUPTI");
    return NULL;
}
#endif
