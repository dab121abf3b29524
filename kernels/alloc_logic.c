/* Caching allocator bookkeeping: size classes, free lists, pointer table, statistics. */
#include "alloc_logic.h"

#include <assert.h>
#include <stdlib.h>

typedef struct block {
    void *p;
    size_t size; /* class size */
    int cls;
    bool used;
    struct block *next_free;
} block;

struct ns_alloc {
    ns_alloc_backing be;
    block *free_head[NS_ALLOC_NCLASSES];
    /* Open-addressing table p -> block (linear probing, capacity a power of two, no removals
     * except by rebuilding). */
    block **table;
    size_t cap, count, tombs; /* capacity, live entries, tombstones */
    ns_alloc_stats st;
};

/* ------------------------------------------------------------------ size classes */

static int floor_log2(size_t v) {
    int e = 0;
    while (v >>= 1) e++;
    return e;
}

size_t ns_alloc_class_size(size_t bytes) {
    if (bytes == 0) bytes = 1;
    if (bytes <= NS_ALLOC_SMALL)
        return (bytes + NS_ALLOC_GRANULE - 1) / NS_ALLOC_GRANULE * NS_ALLOC_GRANULE;
    size_t q = (size_t)1 << (floor_log2(bytes) - 2); /* quarter of the leading power of two */
    return (bytes + q - 1) / q * q;
}

int ns_alloc_class_index(size_t bytes) {
    size_t s = ns_alloc_class_size(bytes);
    if (s <= NS_ALLOC_SMALL) return (int)(s / NS_ALLOC_GRANULE) - 1;
    int e = floor_log2(s);             /* s = 2^e * (1 + q/4), q in 0..3 */
    int q = (int)((s >> (e - 2)) & 3); /* quarter steps above 2^e */
    return (int)(NS_ALLOC_SMALL / NS_ALLOC_GRANULE) + (e - 20) * 4 + q - 1;
}

/* ------------------------------------------------------------------ pointer table
 * Linear probing. Released blocks leave a tombstone (lookups continue past it, inserts may
 * reuse it); growth rehashes the live entries and drops the tombstones. */

static block g_tomb;
#define TOMB (&g_tomb)

static size_t hash_ptr(const void *p, size_t cap) {
    uint64_t h = (uint64_t)(uintptr_t)p;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return (size_t)h & (cap - 1);
}

static size_t table_slot(const ns_alloc *a, const void *p) {
    for (size_t i = hash_ptr(p, a->cap);; i = (i + 1) & (a->cap - 1)) {
        block *b = a->table[i];
        if (!b || (b != TOMB && b->p == p)) return i;
    }
}

static block *table_find(const ns_alloc *a, const void *p) {
    return a->cap ? a->table[table_slot(a, p)] : NULL;
}

/* Inserts b (its pointer is not in the table) into the first free or dead slot; true when that
 * slot held a tombstone. */
static bool table_put(block **table, size_t cap, block *b) {
    size_t i = hash_ptr(b->p, cap);
    while (table[i] && table[i] != TOMB) i = (i + 1) & (cap - 1);
    bool reused = table[i] == TOMB;
    table[i] = b;
    return reused;
}

/* Makes room for one more entry: (live + tombstones + 1) <= cap / 2. */
static bool table_reserve(ns_alloc *a) {
    if (2 * (a->count + a->tombs + 1) <= a->cap) return true;
    size_t cap = 256;
    while (cap < 4 * (a->count + 1)) cap *= 2;
    block **t = calloc(cap, sizeof *t);
    if (!t) return false;
    for (size_t i = 0; i < a->cap; i++)
        if (a->table[i] && a->table[i] != TOMB) table_put(t, cap, a->table[i]);
    free(a->table);
    a->table = t;
    a->cap = cap;
    a->tombs = 0;
    return true;
}

/* ------------------------------------------------------------------ allocator */

ns_alloc *ns_alloc_new(const ns_alloc_backing *backing) {
    assert(backing && backing->raw_alloc && backing->raw_free);
    ns_alloc *a = calloc(1, sizeof *a);
    if (a) a->be = *backing;
    return a;
}

void ns_alloc_free_all(ns_alloc *a) {
    if (!a) return;
    for (size_t i = 0; i < a->cap; i++)
        if (a->table[i] && a->table[i] != TOMB) {
            a->be.raw_free(a->table[i]->p, a->be.ud);
            free(a->table[i]);
        }
    free(a->table);
    free(a);
}

void ns_alloc_release_cached(ns_alloc *a) {
    for (int c = 0; c < NS_ALLOC_NCLASSES; c++) {
        for (block *b = a->free_head[c], *n; b; b = n) {
            n = b->next_free;
            a->table[table_slot(a, b->p)] = TOMB;
            a->count--;
            a->tombs++;
            a->be.raw_free(b->p, a->be.ud);
            a->st.raw_frees++;
            a->st.cached -= b->size;
            free(b);
        }
        a->free_head[c] = NULL;
    }
}

void *ns_alloc_get(ns_alloc *a, size_t bytes) {
    int c = ns_alloc_class_index(bytes);
    block *b = a->free_head[c];
    if (b) {
        a->free_head[c] = b->next_free;
        a->st.cached -= b->size;
        a->st.hits++;
    } else {
        size_t size = ns_alloc_class_size(bytes);
        if (!table_reserve(a)) return NULL;
        b = malloc(sizeof *b);
        if (!b) return NULL;
        b->p = a->be.raw_alloc(size, a->be.ud);
        if (!b->p && a->st.cached) {
            a->st.oom_retries++;
            ns_alloc_release_cached(a);
            b->p = a->be.raw_alloc(size, a->be.ud);
        }
        if (!b->p) {
            free(b);
            return NULL;
        }
        a->st.raw_allocs++;
        b->size = size;
        b->cls = c;
        if (table_put(a->table, a->cap, b)) a->tombs--;
        a->count++;
    }
    b->used = true;
    b->next_free = NULL;
    a->st.requests++;
    a->st.in_use += b->size;
    if (a->st.in_use > a->st.peak) a->st.peak = a->st.in_use;
    return b->p;
}

void ns_alloc_put(ns_alloc *a, void *p) {
    if (!p) return;
    block *b = table_find(a, p);
    assert(b && "ns_alloc_put: pointer not from this allocator");
    assert(b->used && "ns_alloc_put: block returned twice");
    b->used = false;
    b->next_free = a->free_head[b->cls];
    a->free_head[b->cls] = b;
    a->st.in_use -= b->size;
    a->st.cached += b->size;
}

size_t ns_alloc_size_of(const ns_alloc *a, const void *p) {
    block *b = table_find(a, p);
    return b && b->used ? b->size : 0;
}

void ns_alloc_get_stats(const ns_alloc *a, ns_alloc_stats *out) {
    *out = a->st;
}

void ns_alloc_reset_peak(ns_alloc *a) {
    a->st.peak = a->st.in_use;
}
