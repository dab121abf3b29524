/* Tensors, the per-thread step scope (arena), devices and the global random generator. */
#include <assert.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* ------------------------------------------------------------------ devices */

#ifdef NS_HAVE_CUDA
const ns_backend *ns_cuda_backend_get(char *why, size_t whylen);
#endif

const ns_backend *ns_backend_get(int device) {
    if (device == NS_CPU) return &ns_cpu_backend;
#ifdef NS_HAVE_CUDA
    if (device == NS_CUDA) return ns_cuda_backend_get(NULL, 0);
#endif
    return NULL;
}

const char *ns_device_name(ns_device d) {
    return d == NS_CPU ? "cpu" : d == NS_CUDA ? "cuda:0" : "?";
}

bool ns_device_parse(const char *s, ns_device *out) {
    if (!strcmp(s, "cpu"))
        *out = NS_CPU;
    else if (!strcmp(s, "cuda") || !strcmp(s, "cuda:0"))
        *out = NS_CUDA;
    else
        return false;
    return true;
}

bool ns_device_available(ns_device d, char *why, size_t whylen) {
    if (d == NS_CPU) return true;
#ifdef NS_HAVE_CUDA
    if (d == NS_CUDA) return ns_cuda_backend_get(why, whylen) != NULL;
#endif
    if (why) snprintf(why, whylen, "this nnscope was built without the CUDA backend");
    return false;
}

const ns_backend *ns_be(const ns_tensor *t) {
    const ns_backend *be = ns_backend_get(t->device);
    if (!be) {
        char why[256] = "";
        ns_device_available(t->device, why, sizeof why);
        ns_error("device %s is not available: %s", ns_device_name(t->device), why);
    }
    return be;
}

/* ------------------------------------------------------------------ scope arena */

#define ALIGN 64
typedef struct block {
    struct block *next;
    size_t size, used;
    char *mem;
} block;

typedef struct devbuf { /* device memory owned by the scope, freed at reset */
    struct devbuf *next;
    const ns_backend *be;
    void *p;
} devbuf;

typedef struct {
    block *head;   /* current block first */
    size_t total;  /* bytes reserved across blocks */
    size_t in_use; /* bytes handed out since the last reset */
    devbuf *dev;
} arena;

static _Thread_local arena g_arena;

void ns_tape_reset(void);

static block *block_new(size_t size) {
    block *b = malloc(sizeof *b);
    if (!b) return NULL;
    b->mem = aligned_alloc(ALIGN, size);
    if (!b->mem) {
        free(b);
        return NULL;
    }
    b->size = size;
    b->used = 0;
    b->next = NULL;
    return b;
}

void *ns_scope_alloc(size_t size) {
    arena *a = &g_arena;
    size = (size + ALIGN - 1) & ~(size_t)(ALIGN - 1);
    if (size == 0) size = ALIGN;
    block *b = a->head;
    if (!b || b->used + size > b->size) {
        size_t want = a->total ? a->total : (size_t)1 << 20;
        if (want < size) want = size;
        block *nb = block_new(want);
        if (!nb) ns_error("out of memory: the step scope could not grow by %zu bytes", want);
        nb->next = a->head;
        a->head = nb;
        a->total += want;
        b = nb;
    }
    void *p = b->mem + b->used;
    b->used += size;
    a->in_use += size;
    return p;
}

void ns_scope_reset(void) {
    arena *a = &g_arena;
    ns_tape_reset();
    for (devbuf *d = a->dev; d; d = d->next) d->be->free(d->p);
    a->dev = NULL;
    if (a->head && a->head->next) {
        /* Several blocks were needed: replace them by one that holds a whole step. */
        size_t total = a->total;
        for (block *b = a->head; b;) {
            block *n = b->next;
            free(b->mem);
            free(b);
            b = n;
        }
        a->head = block_new(total);
        if (!a->head) ns_error("out of memory: cannot reserve %zu bytes for the step scope", total);
        a->total = total;
    }
    if (a->head) a->head->used = 0;
    a->in_use = 0;
}

void ns_scope_stats(size_t *in_use, size_t *reserved) {
    if (in_use) *in_use = g_arena.in_use;
    if (reserved) *reserved = g_arena.total;
}

/* ------------------------------------------------------------------ tensors */

static atomic_uint_fast64_t g_next_id = 1;

static int64_t shape_numel(const char *what, int ndim, const int64_t *shape) {
    if (ndim < 0 || ndim > NS_MAX_DIMS)
        ns_error("%s: tensors have 0 to %d dims, got %d", what, NS_MAX_DIMS, ndim);
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0)
            ns_error("%s: negative size %lld in dim %d", what, (long long)shape[i], i);
        n *= shape[i];
    }
    return n;
}

static void init_header(ns_tensor *t, int ndim, const int64_t *shape, int64_t numel, ns_device dev,
                        ns_dtype dtype) {
    memset(t, 0, sizeof *t);
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++) t->shape[i] = shape[i];
    t->numel = numel;
    t->device = dev;
    t->dtype = dtype;
    t->id = atomic_fetch_add(&g_next_id, 1);
}

static ns_tensor *new_persistent(int ndim, const int64_t *shape, ns_device dev, ns_dtype dt) {
    int64_t numel = shape_numel("ns_tensor_new", ndim, shape);
    ns_tensor *t = malloc(sizeof *t);
    if (!t) ns_error("out of memory allocating a tensor header");
    init_header(t, ndim, shape, numel, dev, dt);
    t->persistent = true;
    t->owns_data = true;
    const ns_backend *be = ns_be(t);
    size_t bytes = (size_t)(numel ? numel : 1) * 4;
    t->data = be->alloc(bytes);
    if (!t->data) ns_error("out of memory: %zu bytes on %s", bytes, ns_device_name(dev));
    be->fill(t->data, numel, 0.0f);
    return t;
}

ns_tensor *ns_tensor_new(int ndim, const int64_t *shape, ns_device dev) {
    return new_persistent(ndim, shape, dev, NS_F32);
}

ns_tensor *ns_tensor_new_i32(int ndim, const int64_t *shape, ns_device dev) {
    return new_persistent(ndim, shape, dev, NS_I32);
}

void ns_tensor_free(ns_tensor *t) {
    if (!t) return;
    assert(t->persistent && "ns_tensor_free on a scope tensor");
    if (t->grad) ns_tensor_free(t->grad);
    if (t->owns_data && t->data) ns_backend_get(t->device)->free(t->data);
    free(t);
}

static ns_tensor *new_tmp(int ndim, const int64_t *shape, ns_device dev, ns_dtype dt) {
    int64_t numel = shape_numel("ns_tmp", ndim, shape);
    ns_tensor *t = ns_scope_alloc(sizeof *t);
    init_header(t, ndim, shape, numel, dev, dt);
    size_t bytes = (size_t)(numel ? numel : 1) * 4;
    if (dev == NS_CPU) {
        t->data = ns_scope_alloc(bytes);
    } else {
        const ns_backend *be = ns_be(t);
        t->data = be->alloc(bytes);
        if (!t->data) ns_error("out of memory: %zu bytes on %s", bytes, ns_device_name(dev));
        devbuf *d = ns_scope_alloc(sizeof *d);
        d->be = be;
        d->p = t->data;
        d->next = g_arena.dev;
        g_arena.dev = d;
    }
    return t;
}

ns_tensor *ns_tmp(int ndim, const int64_t *shape, ns_device dev) {
    return new_tmp(ndim, shape, dev, NS_F32);
}

ns_tensor *ns_tmp_i32(int ndim, const int64_t *shape, ns_device dev) {
    return new_tmp(ndim, shape, dev, NS_I32);
}

ns_tensor *ns_tmp_like(const ns_tensor *x) {
    return new_tmp(x->ndim, x->shape, x->device, x->dtype);
}

ns_tensor *ns_zeros_like_tmp(const ns_tensor *x) {
    ns_tensor *t = ns_tmp_like(x);
    ns_be(t)->fill(t->data, t->numel, 0.0f);
    return t;
}

ns_tensor *ns_view_of(ns_tensor *x, int ndim, const int64_t *shape) {
    ns_tensor *t = ns_scope_alloc(sizeof *t);
    init_header(t, ndim, shape, x->numel, x->device, x->dtype);
    t->data = x->data;
    t->base = x->base ? x->base : x;
    return t;
}

ns_tensor *ns_from_host(int ndim, const int64_t *shape, const float *src, ns_device dev) {
    ns_tensor *t = ns_tmp(ndim, shape, dev);
    ns_tensor_set(t, src);
    return t;
}

ns_tensor *ns_from_host_i32(int ndim, const int64_t *shape, const int32_t *src, ns_device dev) {
    ns_tensor *t = ns_tmp_i32(ndim, shape, dev);
    ns_be(t)->from_host(t->data, src, (size_t)t->numel * 4);
    return t;
}

void ns_tensor_set(ns_tensor *t, const float *src) {
    ns_be(t)->from_host(t->data, src, (size_t)t->numel * 4);
}

void ns_tensor_get(const ns_tensor *t, float *dst) {
    ns_be(t)->to_host(dst, t->data, (size_t)t->numel * 4);
}

void ns_tensor_fill(ns_tensor *t, float v) {
    ns_be(t)->fill(t->data, t->numel, v);
}

void ns_tensor_copy(ns_tensor *dst, const ns_tensor *src) {
    if (dst->numel != src->numel) {
        char a[64], b[64];
        ns_error("ns_tensor_copy: sizes differ (%s vs %s)", ns_shape_str(dst, a, sizeof a),
                 ns_shape_str(src, b, sizeof b));
    }
    size_t bytes = (size_t)src->numel * 4;
    if (dst->device == src->device)
        ns_be(dst)->copy(dst->data, src->data, bytes);
    else if (src->device == NS_CPU)
        ns_be(dst)->from_host(dst->data, src->data, bytes);
    else if (dst->device == NS_CPU)
        ns_be(src)->to_host(dst->data, src->data, bytes);
    else
        ns_error("ns_tensor_copy: no path from %s to %s", ns_device_name(src->device),
                 ns_device_name(dst->device));
}

void ns_tensor_move(ns_tensor *t, ns_device dev) {
    assert(t->persistent);
    if (t->device == dev) return;
    ns_tensor tmp = *t;
    tmp.device = dev;
    const ns_backend *be = ns_be(&tmp);
    size_t bytes = (size_t)(t->numel ? t->numel : 1) * 4;
    float *p = be->alloc(bytes);
    if (!p)
        ns_error("out of memory moving %s to %s", t->name ? t->name : "a tensor",
                 ns_device_name(dev));
    tmp.data = p;
    ns_tensor_copy(&tmp, t);
    if (t->owns_data) ns_backend_get(t->device)->free(t->data);
    t->data = p;
    t->device = dev;
    t->owns_data = true;
    if (t->grad) ns_tensor_move(t->grad, dev);
}

float ns_item(const ns_tensor *t) {
    if (t->dtype != NS_F32)
        ns_error("ns_item: the tensor holds int32 values, read them with ns_i32()");
    if (t->numel != 1) {
        char s[64];
        ns_error("ns_item: tensor has %lld elements [%s], expected one", (long long)t->numel,
                 ns_shape_str(t, s, sizeof s));
    }
    float v;
    ns_be(t)->to_host(&v, t->data, 4);
    return v;
}

ns_tensor *ns_requires_grad(ns_tensor *t, bool on) {
    if (t->grad_fn) ns_error("ns_requires_grad: only leaf tensors can change requires_grad");
    t->requires_grad = on;
    return t;
}

/* ------------------------------------------------------------------ random numbers */

static uint64_t g_seed, g_counter;

void ns_manual_seed(uint64_t seed) {
    g_seed = seed;
    g_counter = 0;
}

void ns_rng_get_state(uint64_t *seed, uint64_t *counter) {
    *seed = g_seed;
    *counter = g_counter;
}

void ns_rng_set_state(uint64_t seed, uint64_t counter) {
    g_seed = seed;
    g_counter = counter;
}

uint64_t ns_rng_advance(uint64_t n) {
    uint64_t c = g_counter;
    g_counter += n;
    return c;
}

static void fill_host_then_copy(ns_tensor *t, float *host) {
    if (t->device == NS_CPU) return;
    ns_tensor_set(t, host);
    free(host);
}

void ns_uniform_(ns_tensor *t, float lo, float hi) {
    float *h = t->device == NS_CPU ? t->data : malloc((size_t)t->numel * 4);
    if (!h) ns_error("out of memory");
    uint64_t c = ns_rng_advance((uint64_t)t->numel);
    for (int64_t i = 0; i < t->numel; i++)
        h[i] = lo + (hi - lo) * ns_rng_uniform(g_seed, c + (uint64_t)i);
    fill_host_then_copy(t, h);
}

void ns_normal_(ns_tensor *t, float mean, float std) {
    float *h = t->device == NS_CPU ? t->data : malloc((size_t)t->numel * 4);
    if (!h) ns_error("out of memory");
    uint64_t c = ns_rng_advance(2 * (uint64_t)t->numel);
    for (int64_t i = 0; i < t->numel; i++) {
        double u1 = ns_rng_uniform(g_seed, c + 2 * (uint64_t)i);
        double u2 = ns_rng_uniform(g_seed, c + 2 * (uint64_t)i + 1);
        if (u1 < 1e-12) u1 = 1e-12;
        h[i] = mean + std * (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
    }
    fill_host_then_copy(t, h);
}
