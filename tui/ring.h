/* Bounded metric histories for the TUI (one idea: memory never grows with the run's length).
 *
 * A ring holds at most `cap` points (x = step, v = value). Two modes:
 *   NS_RING_WINDOW      keeps the last cap points (sparklines: "the recent past");
 *   NS_RING_DOWNSAMPLE  keeps the whole history at decreasing resolution: when full, pairs of
 *                       points are merged (mean) and each stored point then covers twice as
 *                       many samples (detail plots and the loss curve).
 * Storage is allocated on the first push, so rings of modules that never get data cost
 * nothing. Missing values are NaN; a bucket's value is the mean of its finite samples, +inf
 * when it held only non-finite data samples, NaN when it held only missing ones. */
#ifndef NS_TUI_RING_H
#define NS_TUI_RING_H

#include <stddef.h>
#include <stdint.h>

typedef enum { NS_RING_WINDOW = 0, NS_RING_DOWNSAMPLE = 1 } ns_ring_mode;

typedef struct {
    double *v;      /* values, cap entries once allocated */
    int64_t *x;     /* step of the last sample in each point */
    int cap;        /* fixed capacity (even, >= 2) */
    int n;          /* stored points */
    int head;       /* window mode: index of the oldest point */
    int mode;       /* ns_ring_mode */
    int64_t stride; /* downsample mode: samples per stored point */
    /* downsample mode: the bucket being filled (not yet a stored point) */
    double acc;       /* sum of finite samples */
    int64_t acc_n;    /* samples in the bucket */
    int64_t acc_fin;  /* finite samples in the bucket */
    int64_t acc_inf;  /* non-finite (Inf) data samples in the bucket */
    int64_t acc_x;    /* step of the last sample */
    int64_t total;    /* samples pushed since init/clear */
    int alloc_failed; /* storage could not be allocated: pushes are dropped */
} ns_ring;

/* Sets up an empty ring of capacity cap (rounded up to even, at least 2). Allocates nothing;
 * storage comes with the first push. */
void ns_ring_init(ns_ring *r, int cap, ns_ring_mode mode);

/* Frees the storage; the ring is empty afterwards and can be reused. */
void ns_ring_free(ns_ring *r);

/* Forgets all points, keeping storage and mode. */
void ns_ring_clear(ns_ring *r);

/* Appends a sample. Window mode: a sample with the same x as the newest point replaces it.
 * Values: finite, NaN (missing) or +-Inf (non-finite data). If storage cannot be allocated
 * the sample is dropped and alloc_failed set. */
void ns_ring_push(ns_ring *r, int64_t x, double v);

/* Downsample mode, empty ring only: makes every stored point cover `stride` samples (for
 * seeding a ring with a sampled history, see ns_ring_push_point). */
void ns_ring_set_stride(ns_ring *r, int64_t stride);

/* Downsample mode: stores (x, v) as one completed point (a sample standing for a whole
 * bucket of the current stride). */
void ns_ring_push_point(ns_ring *r, int64_t x, double v);

/* Number of points readable with ns_ring_get (stored points plus a non-empty bucket). */
int ns_ring_len(const ns_ring *r);

/* Point i, 0 = oldest, i < ns_ring_len(r). */
void ns_ring_get(const ns_ring *r, int i, int64_t *x, double *v);

/* Newest value, NaN when empty. */
double ns_ring_last(const ns_ring *r);

/* Copies the last n values (oldest first) into out; returns how many were copied
 * (min(n, len)). */
int ns_ring_tail(const ns_ring *r, int n, double *out);

/* Resamples the whole ring into exactly n buckets of equal point counts (mean of finite
 * values, +inf if a bucket held only non-finite ones, NaN when empty) and returns n; when
 * the ring holds fewer than n points it copies them and returns len. x_out (may be NULL)
 * receives the step of each bucket's last point. */
int ns_ring_resample(const ns_ring *r, int n, double *out, int64_t *x_out);

/* Bytes of storage held (for memory accounting). */
size_t ns_ring_bytes(const ns_ring *r);

#endif
