/* Caching allocator bookkeeping (plain C, no CUDA): size classes, per-class free lists, a
 * pointer -> block table and statistics, over a backing allocator given as two callbacks.
 *
 * The CUDA backend (kernels/cuda_mem.cu) backs it with cudaMalloc/cudaFree; the unit tests
 * (tests/test_cuda_logic.c) with a fake that counts calls. A freed block goes to the free list
 * of its class and is handed out again for the next request of that class, so a training loop
 * that allocates the same sizes every step stops calling the backing allocator after its first
 * step. Not thread-safe: the caller serialises (cuda_mem.cu holds a mutex). */
#ifndef NS_ALLOC_LOGIC_H
#define NS_ALLOC_LOGIC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Requests up to NS_ALLOC_SMALL bytes round up to a multiple of NS_ALLOC_GRANULE; larger ones
 * to a multiple of a quarter of their leading power of two (at most 25% slack). */
#define NS_ALLOC_GRANULE 512
#define NS_ALLOC_SMALL ((size_t)1 << 20)
#define NS_ALLOC_NCLASSES (int)(NS_ALLOC_SMALL / NS_ALLOC_GRANULE + 4 * 44 + 4)

typedef struct {
    void *(*raw_alloc)(size_t bytes, void *ud); /* NULL when out of memory */
    void (*raw_free)(void *p, void *ud);
    void *ud;
} ns_alloc_backing;

typedef struct {
    size_t in_use;        /* class bytes handed out and not yet returned */
    size_t cached;        /* class bytes held in free lists */
    size_t peak;          /* maximum of in_use since creation or the last reset_peak */
    uint64_t requests;    /* ns_alloc_get calls that returned memory */
    uint64_t hits;        /* ... served from a free list */
    uint64_t raw_allocs;  /* backing allocations */
    uint64_t raw_frees;   /* backing frees */
    uint64_t oom_retries; /* backing allocations retried after releasing the cache */
} ns_alloc_stats;

typedef struct ns_alloc ns_alloc;

/* The size class (bytes actually reserved) of a request; 0 bytes counts as 1. */
size_t ns_alloc_class_size(size_t bytes);
/* Index of the class of a request, in [0, NS_ALLOC_NCLASSES). */
int ns_alloc_class_index(size_t bytes);

/* New allocator over backing (copied). NULL when host memory is exhausted. */
ns_alloc *ns_alloc_new(const ns_alloc_backing *backing);
/* Returns every block (cached and in use) to the backing allocator and frees a. NULL: no-op. */
void ns_alloc_free_all(ns_alloc *a);
/* A block of at least bytes. Served from the class's free list when possible; else from the
 * backing allocator, and if that fails, once more after releasing the whole cache. NULL when
 * still out of memory (or host memory for the bookkeeping ran out). */
void *ns_alloc_get(ns_alloc *a, size_t bytes);
/* Returns p (from ns_alloc_get, not yet returned) to its class's free list. NULL: no-op.
 * Unknown or already returned pointers are programmer errors (assert). */
void ns_alloc_put(ns_alloc *a, void *p);
/* Class size of a live block p (0 when p is unknown or free). */
size_t ns_alloc_size_of(const ns_alloc *a, const void *p);
/* Returns every cached (free) block to the backing allocator. */
void ns_alloc_release_cached(ns_alloc *a);
/* Current statistics. */
void ns_alloc_get_stats(const ns_alloc *a, ns_alloc_stats *out);
/* Sets peak to the current in_use. */
void ns_alloc_reset_peak(ns_alloc *a);

#ifdef __cplusplus
}
#endif

#endif
