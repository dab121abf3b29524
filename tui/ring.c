/* Bounded metric histories: see ring.h. */
#include "ring.h"

#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

void ns_ring_init(ns_ring *r, int cap, ns_ring_mode mode) {
    memset(r, 0, sizeof *r);
    if (cap < 2) cap = 2;
    r->cap = cap + (cap & 1);
    r->mode = mode;
    r->stride = 1;
}

void ns_ring_free(ns_ring *r) {
    free(r->v);
    free(r->x);
    ns_ring_init(r, r->cap, (ns_ring_mode)r->mode);
}

void ns_ring_clear(ns_ring *r) {
    double *v = r->v;
    int64_t *x = r->x;
    int cap = r->cap, mode = r->mode;
    ns_ring_init(r, cap, (ns_ring_mode)mode);
    r->v = v;
    r->x = x;
}

static int ensure(ns_ring *r) {
    if (r->v) return 0;
    if (r->alloc_failed) return -1;
    r->v = malloc(sizeof(double) * (size_t)r->cap);
    r->x = malloc(sizeof(int64_t) * (size_t)r->cap);
    if (!r->v || !r->x) {
        free(r->v);
        free(r->x);
        r->v = NULL;
        r->x = NULL;
        r->alloc_failed = 1;
        return -1;
    }
    return 0;
}

/* Mean of two stored points, keeping "only non-finite" (inf) and "missing" (NaN) meanings. */
static double merge2(double a, double b) {
    int fa = isfinite(a), fb = isfinite(b);
    if (fa && fb) return 0.5 * (a + b);
    if (fa) return a;
    if (fb) return b;
    if (isinf(a) || isinf(b)) return INFINITY;
    return NAN;
}

static double bucket_value(const ns_ring *r) {
    if (r->acc_fin > 0) return r->acc / (double)r->acc_fin;
    if (r->acc_inf > 0) return INFINITY;
    return NAN;
}

/* Appends a completed bucket; a full ring then halves its resolution at once, so that every
 * stored point always covers the same number of samples (equal-weight merges). */
static void store(ns_ring *r, int64_t x, double v) {
    r->v[r->n] = v;
    r->x[r->n] = x;
    r->n++;
    if (r->n == r->cap) {
        for (int i = 0; i < r->cap / 2; i++) {
            r->v[i] = merge2(r->v[2 * i], r->v[2 * i + 1]);
            r->x[i] = r->x[2 * i + 1];
        }
        r->n = r->cap / 2;
        r->stride *= 2;
    }
}

void ns_ring_push(ns_ring *r, int64_t x, double v) {
    if (ensure(r) != 0) return;
    r->total++;
    if (r->mode == NS_RING_WINDOW) {
        if (r->n > 0) {
            int newest = (r->head + r->n - 1) % r->cap;
            if (r->x[newest] == x) {
                r->v[newest] = v;
                return;
            }
        }
        if (r->n < r->cap) {
            int at = (r->head + r->n) % r->cap;
            r->v[at] = v;
            r->x[at] = x;
            r->n++;
        } else {
            r->v[r->head] = v;
            r->x[r->head] = x;
            r->head = (r->head + 1) % r->cap;
        }
        return;
    }
    if (isfinite(v)) {
        r->acc += v;
        r->acc_fin++;
    } else if (isinf(v)) {
        r->acc_inf++;
    }
    r->acc_n++;
    r->acc_x = x;
    if (r->acc_n >= r->stride) {
        store(r, r->acc_x, bucket_value(r));
        r->acc = 0;
        r->acc_n = r->acc_fin = r->acc_inf = 0;
    }
}

void ns_ring_set_stride(ns_ring *r, int64_t stride) {
    assert(r->mode == NS_RING_DOWNSAMPLE && r->n == 0 && r->acc_n == 0 && stride >= 1);
    r->stride = stride;
}

void ns_ring_push_point(ns_ring *r, int64_t x, double v) {
    assert(r->mode == NS_RING_DOWNSAMPLE);
    if (ensure(r) != 0) return;
    r->total += r->stride;
    store(r, x, v);
}

int ns_ring_len(const ns_ring *r) {
    return r->n + (r->mode == NS_RING_DOWNSAMPLE && r->acc_n > 0 ? 1 : 0);
}

void ns_ring_get(const ns_ring *r, int i, int64_t *x, double *v) {
    assert(i >= 0 && i < ns_ring_len(r));
    if (r->mode == NS_RING_WINDOW) {
        int at = (r->head + i) % r->cap;
        if (x) *x = r->x[at];
        if (v) *v = r->v[at];
        return;
    }
    if (i < r->n) {
        if (x) *x = r->x[i];
        if (v) *v = r->v[i];
        return;
    }
    if (x) *x = r->acc_x;
    if (v) *v = bucket_value(r);
}

double ns_ring_last(const ns_ring *r) {
    int len = ns_ring_len(r);
    double v = NAN;
    if (len > 0) ns_ring_get(r, len - 1, NULL, &v);
    return v;
}

int ns_ring_tail(const ns_ring *r, int n, double *out) {
    int len = ns_ring_len(r);
    if (n > len) n = len;
    for (int i = 0; i < n; i++) ns_ring_get(r, len - n + i, NULL, &out[i]);
    return n;
}

int ns_ring_resample(const ns_ring *r, int n, double *out, int64_t *x_out) {
    int len = ns_ring_len(r);
    if (n <= 0) return 0;
    if (len <= n) {
        for (int i = 0; i < len; i++) ns_ring_get(r, i, x_out ? &x_out[i] : NULL, &out[i]);
        return len;
    }
    for (int b = 0; b < n; b++) {
        int lo = (int)((int64_t)b * len / n), hi = (int)((int64_t)(b + 1) * len / n);
        double sum = 0;
        int fin = 0, inf = 0;
        int64_t x = 0;
        for (int i = lo; i < hi; i++) {
            double v;
            ns_ring_get(r, i, &x, &v);
            if (isfinite(v)) {
                sum += v;
                fin++;
            } else if (isinf(v)) {
                inf++;
            }
        }
        out[b] = fin ? sum / fin : (inf ? INFINITY : NAN);
        if (x_out) x_out[b] = x;
    }
    return n;
}

size_t ns_ring_bytes(const ns_ring *r) {
    return r->v ? (size_t)r->cap * (sizeof(double) + sizeof(int64_t)) : 0;
}
