/* The recorder's engine side: hooks and events in, rows out to the writer thread's queue.
 *
 * Per module call the forward hooks note time, devices, shapes and (on sampled steps) output
 * statistics; backward times come from the autograd node observer, attributed to the call that
 * recorded each node; gradient-output norms from the backward hooks. Everything for a step is
 * buffered on the training thread and handed to the writer at ns_step_end(), so a step costs a
 * few dozen queue pushes and no SQLite call. */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cupti/ns_cupti.h"
#include "internal.h"
#include "nnscope/optim.h"
#include "nnscope/record.h"
#include "writer.h"

/* ------------------------------------------------------------------ state */

typedef struct {
    ns_module *m; /* NULL once freed */
    int64_t id;
    bool registered;
    char *path;
} known_module;

typedef struct {
    ns_tensor *t;
    int64_t id;
    int64_t module_id;
    bool buffer;
    bool in_opt;
    int opt_index;   /* index in the optimizer, -1 */
    float *snapshot; /* host copy at the last step end (buffers, params outside the optimizer) */
    char *name;      /* dotted name as written to params.name */
} known_tensor;

typedef struct {
    uint64_t call_id;
    int caller_idx; /* index of the enclosing call's record in this step, -1: outermost */
    int64_t module_id, caller_id;
    int64_t seq;
    bool training, grad_enabled;
    const char *in_dev, *out_dev, *param_dev;
    char in_shape[32], out_shape[32];
    double t0, fwd_us, bwd_us;
    double grad_out_norm; /* NAN: none */
    bool have_stats;
    double mean, std, zero_frac, dead_frac;
    int64_t nonfinite;
} call_rec;

typedef struct {
    int64_t module_id;
    ns_device src, dst;
    int64_t bytes, count;
} transfer_rec;

struct ns_recorder {
    ns_writer *w;
    ns_module *model;
    ns_optimizer *opt;
    ns_record_opts o;
    int64_t run_id;
    pthread_mutex_t lock; /* push vs close from the signal watcher */
    bool closed;
    bool described;    /* module tree written */
    char *fail_detail; /* first engine error message */
    char *close_err;   /* the writer's error, kept when the writer is closed */
    bool uninit_seen;

    known_module *mods;
    int n_mods, cap_mods;
    known_tensor *tens;
    int n_tens, cap_tens;

    call_rec *calls;
    int n_calls, cap_calls;
    int *cstack; /* indices of the calls in progress (innermost last) */
    int cdepth, cap_cstack;
    transfer_rec *xfers;
    int n_xfers, cap_xfers;
    bool step_sampled;
    bool in_model; /* the outermost call in progress belongs to the recorded model */
    /* A container's output is its last child's output: reuse the statistics. */
    const float *stats_of;
    int64_t stats_n, stats_rows, stats_feat;
    call_rec stats_cache;
    const float *gnorm_of;
    double gnorm_cache;
    bool nonfinite_reported;
    double t_last_step;

    ns_cupti *cupti; /* GPU kernel timings; NULL when CUPTI could not start */
    ns_hook_handle h[10];
    int n_h;
};

static ns_recorder *g_active;
static pthread_mutex_t g_active_lock = PTHREAD_MUTEX_INITIALIZER;

static double now_mono(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static double now_wall(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

#define GROW(arr, n, cap)                                                                          \
    do {                                                                                           \
        if ((n) == (cap)) {                                                                        \
            int c_ = (cap) ? (cap)*2 : 64;                                                         \
            void *p_ = realloc((arr), sizeof *(arr) * (size_t)c_);                                 \
            if (!p_) abort();                                                                      \
            (arr) = p_;                                                                            \
            (cap) = c_;                                                                            \
        }                                                                                          \
    } while (0)

/* ------------------------------------------------------------------ pushing rows */

static void push(ns_recorder *r, const ns_row *row) {
    pthread_mutex_lock(&r->lock);
    if (!r->closed) ns_writer_push(r->w, row);
    pthread_mutex_unlock(&r->lock);
}

static const char *dev_name(ns_device d) {
    return ns_device_name(d);
}

static void shape_text(const ns_tensor *t, char *buf, size_t n) {
    ns_shape_str(t, buf, n);
}

/* ------------------------------------------------------------------ modules and tensors */

static known_module *find_module(ns_recorder *r, int64_t id) {
    for (int i = r->n_mods - 1; i >= 0; i--)
        if (r->mods[i].id == id) return &r->mods[i];
    return NULL;
}

static known_tensor *find_tensor(ns_recorder *r, const ns_tensor *t) {
    for (int i = 0; i < r->n_tens; i++)
        if (r->tens[i].t == t) return &r->tens[i];
    return NULL;
}

static int opt_index_of(ns_recorder *r, const ns_tensor *t) {
    if (!r->opt) return -1;
    int n = ns_optim_num_params(r->opt);
    for (int i = 0; i < n; i++)
        if (ns_optim_param(r->opt, i) == t) return i;
    return -1;
}

static void put_tensor_row(ns_recorder *r, known_tensor *k, const char *name) {
    ns_row row;
    ns_row_init(&row, NS_ROW_PARAM);
    row.param.id = k->id;
    row.param.module_id = k->module_id;
    row.param.name = name;
    row.param.kind = k->buffer ? "buffer" : "param";
    char shape[64];
    shape_text(k->t, shape, sizeof shape);
    row.param.shape = shape;
    row.param.numel = k->t->numel;
    row.param.requires_grad = k->t->requires_grad;
    row.param.in_optimizer = k->in_opt;
    row.param.lr = k->opt_index >= 0 ? ns_optim_param_lr(r->opt, k->opt_index) : NAN;
    push(r, &row);
}

static float *snapshot_of(const ns_tensor *t, float *old) {
    float *s = old ? old : malloc((size_t)(t->numel ? t->numel : 1) * 4);
    if (!s) abort();
    ns_tensor_get(t, s);
    return s;
}

static void add_tensor(ns_recorder *r, ns_module *m, ns_tensor *t, const char *name, bool buffer) {
    if (find_tensor(r, t)) return;
    GROW(r->tens, r->n_tens, r->cap_tens);
    known_tensor *k = &r->tens[r->n_tens++];
    memset(k, 0, sizeof *k);
    k->t = t;
    k->id = (int64_t)t->id;
    k->module_id = (int64_t)m->id;
    k->buffer = buffer;
    k->opt_index = buffer ? -1 : opt_index_of(r, t);
    k->in_opt = k->opt_index >= 0;
    if (buffer || !k->in_opt) k->snapshot = snapshot_of(t, NULL);
    k->name = strdup(name);
    put_tensor_row(r, k, name);
}

/* Writes a module row and its own parameters/buffers. path NULL: unregistered. */
static void add_module(ns_recorder *r, ns_module *m, const char *path, int64_t parent_id,
                       bool registered) {
    if (find_module(r, (int64_t)m->id)) return;
    GROW(r->mods, r->n_mods, r->cap_mods);
    known_module *k = &r->mods[r->n_mods++];
    k->m = m;
    k->id = (int64_t)m->id;
    k->registered = registered;
    k->path = strdup(path);

    int64_t own = 0;
    for (int i = 0; i < m->n_params; i++) own += m->params[i].tensor->numel;
    char desc[512] = "";
    if (m->describe) m->describe(m, desc, sizeof desc);
    char line[600];
    snprintf(line, sizeof line, "%s(%s)", m->type ? m->type : "?", desc);

    ns_row row;
    ns_row_init(&row, NS_ROW_MODULE);
    row.module.id = k->id;
    row.module.parent_id = parent_id >= 0 ? parent_id : NS_NULL;
    row.module.path = k->path;
    row.module.type = m->type ? m->type : "?";
    row.module.describe = line;
    row.module.registered = registered;
    row.module.created_in_forward = m->created_in_forward;
    row.module.creator_id = m->creator ? (int64_t)m->creator->id : NS_NULL;
    row.module.n_params = own;
    row.module.first_step = ns_step_index();
    push(r, &row);

    char name[512];
    for (int i = 0; i < m->n_params; i++) {
        snprintf(name, sizeof name, "%s%s%s", path, *path ? "." : "", m->params[i].name);
        add_tensor(r, m, m->params[i].tensor, name, false);
    }
    for (int i = 0; i < m->n_buffers; i++) {
        snprintf(name, sizeof name, "%s%s%s", path, *path ? "." : "", m->buffers[i].name);
        add_tensor(r, m, m->buffers[i].tensor, name, true);
    }
    if (m->created_in_forward) {
        char cp[256] = "";
        if (m->creator) {
            known_module *c = find_module(r, (int64_t)m->creator->id);
            snprintf(cp, sizeof cp, "%s", c ? c->path : "?");
        }
        ns_row ev;
        ns_row_init(&ev, NS_ROW_EVENT);
        ev.event.step = ns_step_index();
        ev.event.kind = "module_created_in_forward";
        ev.event.module_id = k->id;
        ev.event.param_id = NS_NULL;
        ev.event.detail = cp;
        ev.event.value = NAN;
        ev.event.wall_time = ns_wall_time();
        push(r, &ev);
    }
}

static void describe_model(ns_recorder *r) {
    if (r->described || !r->model) return;
    r->described = true;
    int n = 0;
    ns_named_module *mods = ns_named_modules(r->model, &n);
    for (int i = 0; i < n; i++) {
        ns_module *m = mods[i].module;
        add_module(r, m, mods[i].name, m->parent && i ? (int64_t)m->parent->id : -1, true);
    }
    free(mods);
}

/* A module seen in a call that is not known yet: registered under the model after recording
 * started, or unregistered (run from a caller's forward without registration). */
static known_module *see_module(ns_recorder *r, ns_module *m, ns_module *caller) {
    known_module *k = find_module(r, (int64_t)m->id);
    if (k) return k;
    char path[512];
    if (r->model && ns_module_root(m) == r->model) {
        ns_module_path(m, path, sizeof path);
        add_module(r, m, path, m->parent ? (int64_t)m->parent->id : -1, true);
    } else {
        known_module *c = caller ? find_module(r, (int64_t)caller->id) : NULL;
        const char *cp = c ? c->path : "";
        char brief[64] = "";
        if (m->brief) m->brief(m, brief, sizeof brief);
        snprintf(path, sizeof path, "%s%s(unregistered %s%s%s #%llu)", cp, *cp ? "." : "",
                 m->type ? m->type : "?", *brief ? " " : "", brief, (unsigned long long)m->id);
        add_module(r, m, path, caller ? (int64_t)caller->id : -1, false);
    }
    return find_module(r, (int64_t)m->id);
}

/* ------------------------------------------------------------------ hooks */

static const char *param_device(const ns_module *m) {
    if (m->n_params == 0) return NULL;
    ns_device d = m->params[0].tensor->device;
    for (int i = 1; i < m->n_params; i++)
        if (m->params[i].tensor->device != d) return "mixed";
    return dev_name(d);
}

static void fwd_pre(ns_module *m, ns_tensor *x, void *ud) {
    ns_recorder *r = ud;
    const ns_call_info *ci = ns_current_call();
    if (!ci || ci->depth == 0) {
        if (!r->model) r->model = ns_module_root(m);
        /* Calls of another model (e.g. a fresh copy built to check a checkpoint) are not part
         * of this recording. */
        r->in_model = ns_module_root(m) == r->model;
    }
    if (!r->in_model) return;
    if (!r->described) describe_model(r);
    see_module(r, m, ci ? ci->caller : NULL);
    GROW(r->calls, r->n_calls, r->cap_calls);
    call_rec *c = &r->calls[r->n_calls++];
    memset(c, 0, sizeof *c);
    c->call_id = ci ? ci->call_id : 0;
    c->module_id = (int64_t)m->id;
    c->caller_id = ci && ci->caller ? (int64_t)ci->caller->id : -1;
    c->seq = r->n_calls - 1;
    c->caller_idx = r->cdepth ? r->cstack[r->cdepth - 1] : -1;
    GROW(r->cstack, r->cdepth, r->cap_cstack);
    r->cstack[r->cdepth++] = r->n_calls - 1;
    c->training = m->training;
    c->grad_enabled = ns_grad_enabled();
    c->in_dev = dev_name(x->device);
    c->param_dev = param_device(m);
    shape_text(x, c->in_shape, sizeof c->in_shape);
    c->grad_out_norm = NAN;
    c->bwd_us = NAN;
    ns_cupti_push(r->cupti, ns_step_index(), (int64_t)m->id, NS_PHASE_FORWARD);
    c->t0 = now_mono();
}

static call_rec *find_call(ns_recorder *r, uint64_t call_id) {
    /* calls are appended in call-id order within a step: binary search */
    int lo = 0, hi = r->n_calls - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (r->calls[mid].call_id == call_id) return &r->calls[mid];
        if (r->calls[mid].call_id < call_id)
            lo = mid + 1;
        else
            hi = mid - 1;
    }
    return NULL;
}

static void fwd_post(ns_module *m, ns_tensor *x, ns_tensor *y, void *ud) {
    ns_recorder *r = ud;
    (void)x;
    if (!r->in_model) return;
    ns_cupti_pop(r->cupti);
    if (r->cdepth) r->cdepth--;
    const ns_call_info *ci = ns_current_call();
    call_rec *c = ci ? find_call(r, ci->call_id) : NULL;
    if (!c) return;
    c->fwd_us = (now_mono() - c->t0) * 1e6;
    if (!y) return;
    c->out_dev = dev_name(y->device);
    shape_text(y, c->out_shape, sizeof c->out_shape);
    if (!r->step_sampled || y->dtype != NS_F32 || y->numel == 0) return;
    int64_t rows = y->ndim ? y->shape[0] : 1, feat = y->ndim > 1 ? y->shape[1] : 1;
    if (r->stats_of == y->data && r->stats_n == y->numel && r->stats_rows == rows &&
        r->stats_feat == feat) {
        c->have_stats = true;
        c->mean = r->stats_cache.mean;
        c->std = r->stats_cache.std;
        c->zero_frac = r->stats_cache.zero_frac;
        c->dead_frac = r->stats_cache.dead_frac;
        c->nonfinite = r->stats_cache.nonfinite;
        return;
    }
    int64_t rf = rows * feat, inner = rf ? y->numel / rf : 1;
    double s, ss;
    int64_t zeros, dead, bad;
    ns_be(y)->act_stats(y->data, rows, feat, inner, &s, &ss, &zeros, &dead, &bad);
    double n = (double)y->numel;
    c->have_stats = true;
    c->mean = s / n;
    double var = ss / n - c->mean * c->mean;
    c->std = sqrt(var > 0 ? var : 0);
    c->zero_frac = zeros / n;
    c->dead_frac = feat ? (double)dead / (double)feat : 0;
    c->nonfinite = bad;
    r->stats_of = y->data;
    r->stats_n = y->numel;
    r->stats_rows = rows;
    r->stats_feat = feat;
    r->stats_cache = *c;
    if (bad && !r->nonfinite_reported) {
        r->nonfinite_reported = true;
        ns_row ev;
        ns_row_init(&ev, NS_ROW_EVENT);
        ev.event.step = ns_step_index();
        ev.event.kind = "nonfinite";
        ev.event.module_id = (int64_t)m->id;
        ev.event.param_id = NS_NULL;
        ev.event.detail = "module output";
        ev.event.value = (double)bad;
        ev.event.wall_time = ns_wall_time();
        push(r, &ev);
    }
}

static void bwd_hook(ns_module *m, const ns_tensor *gout, const ns_tensor *gin, uint64_t call_id,
                     void *ud) {
    (void)m;
    (void)gin;
    ns_recorder *r = ud;
    call_rec *c = find_call(r, call_id);
    if (!c || !gout || isfinite(c->grad_out_norm)) return;
    if (r->gnorm_of == gout->data) {
        c->grad_out_norm = r->gnorm_cache;
        return;
    }
    double ss;
    int64_t bad;
    const float *p = gout->data;
    ns_be(gout)->norms(1, &p, &gout->numel, &ss, &bad);
    c->grad_out_norm = sqrt(ss);
    r->gnorm_of = gout->data;
    r->gnorm_cache = c->grad_out_norm;
}

/* Backward time of each node goes to the call that recorded it; inclusive times for outer
 * calls are summed at the step end. */
static _Thread_local double g_node_t0;
static void node_cb(const ns_node *n, bool after, void *ud) {
    ns_recorder *r = ud;
    if (!after) {
        ns_cupti_push(r->cupti, ns_step_index(), n->module ? (int64_t)n->module->id : -1,
                      NS_PHASE_BACKWARD);
        g_node_t0 = now_mono();
        return;
    }
    ns_cupti_pop(r->cupti);
    if (!n->call_id) return;
    call_rec *c = find_call(r, n->call_id);
    if (!c) return;
    double dt = (now_mono() - g_node_t0) * 1e6;
    c->bwd_us = isnan(c->bwd_us) ? dt : c->bwd_us + dt;
}

static void opt_post(ns_optimizer *opt, void *ud) {
    (void)opt;
    ns_cupti_pop(((ns_recorder *)ud)->cupti);
}

/* Marks which recorded parameters opt (may be NULL) holds; rewrites the params rows that
 * changed. Parameters outside the optimizer keep a snapshot for their update norm. */
static void adopt_optimizer(ns_recorder *r, ns_optimizer *opt) {
    r->opt = opt;
    for (int i = 0; i < r->n_tens; i++) {
        known_tensor *k = &r->tens[i];
        if (k->buffer) continue;
        bool was = k->in_opt;
        k->opt_index = opt_index_of(r, k->t);
        k->in_opt = k->opt_index >= 0;
        if (k->in_opt) {
            free(k->snapshot);
            k->snapshot = NULL;
        } else if (!k->snapshot) {
            k->snapshot = snapshot_of(k->t, NULL);
        }
        if (r->described && (k->in_opt || was)) put_tensor_row(r, k, k->name);
    }
}

/* The optimizer is being freed: stop reading it. The params rows keep saying what it held. */
static void forget_optimizer(ns_recorder *r) {
    r->opt = NULL;
    for (int i = 0; i < r->n_tens; i++) {
        known_tensor *k = &r->tens[i];
        if (k->buffer || !k->in_opt) continue;
        k->opt_index = -1;
        k->in_opt = false;
        if (!k->snapshot) k->snapshot = snapshot_of(k->t, NULL);
    }
}

static void opt_pre(ns_optimizer *opt, void *ud) {
    ns_recorder *r = ud;
    ns_cupti_push(r->cupti, ns_step_index(), -1, NS_PHASE_OPTIMIZER);
    /* Follow the optimizer that steps (a new one for a second phase replaces the first). */
    if (r->opt != opt) adopt_optimizer(r, opt);
}

/* ------------------------------------------------------------------ step end */

static double diff_norm(const float *a, const float *b, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = (double)a[i] - (double)b[i];
        s += d * d;
    }
    return sqrt(s);
}

static void tensor_norm(const ns_tensor *t, double *norm, int64_t *bad) {
    double ss = 0;
    const float *p = t->data;
    ns_be(t)->norms(1, &p, &t->numel, &ss, bad);
    *norm = sqrt(ss);
}

static void write_param_stats(ns_recorder *r, int64_t step, bool train) {
    float *tmp = NULL;
    int64_t tmp_n = 0;
    for (int i = 0; i < r->n_tens; i++) {
        known_tensor *k = &r->tens[i];
        if (!k->buffer && !train) continue;
        ns_row row;
        ns_row_init(&row, NS_ROW_PARAM_STAT);
        row.param_stat.step = step;
        row.param_stat.param_id = k->id;
        row.param_stat.grad_norm = NAN;
        row.param_stat.device = dev_name(k->t->device);
        ns_param_stats st;
        if (!k->buffer && k->in_opt && ns_optim_last_stats(r->opt, k->opt_index, &st) &&
            st.had_grad) {
            row.param_stat.grad_norm = st.grad_norm;
            row.param_stat.update_norm = st.update_norm;
            row.param_stat.weight_norm = st.weight_norm;
            row.param_stat.nonfinite = st.nonfinite;
        } else {
            int64_t bad = 0, gbad = 0;
            double wn;
            tensor_norm(k->t, &wn, &bad);
            row.param_stat.weight_norm = wn;
            if (!k->buffer && k->t->grad) {
                double gn;
                tensor_norm(k->t->grad, &gn, &gbad);
                row.param_stat.grad_norm = gn;
            }
            row.param_stat.nonfinite = bad + gbad;
            if (k->snapshot) {
                if (tmp_n < k->t->numel) {
                    free(tmp);
                    tmp = malloc((size_t)k->t->numel * 4);
                    if (!tmp) abort();
                    tmp_n = k->t->numel;
                }
                ns_tensor_get(k->t, tmp);
                row.param_stat.update_norm = diff_norm(tmp, k->snapshot, k->t->numel);
                memcpy(k->snapshot, tmp, (size_t)k->t->numel * 4);
            } else {
                row.param_stat.update_norm = 0; /* held by the optimizer, skipped this step */
            }
        }
        double w = row.param_stat.weight_norm;
        row.param_stat.ratio = w > 0 ? row.param_stat.update_norm / w : NAN;
        if (row.param_stat.nonfinite && !r->nonfinite_reported) {
            r->nonfinite_reported = true;
            ns_row ev;
            ns_row_init(&ev, NS_ROW_EVENT);
            ev.event.step = step;
            ev.event.kind = "nonfinite";
            ev.event.module_id = k->module_id;
            ev.event.param_id = k->id;
            ev.event.detail = "parameter or gradient";
            ev.event.value = (double)row.param_stat.nonfinite;
            ev.event.wall_time = ns_wall_time();
            push(r, &ev);
        }
        push(r, &row);
    }
    free(tmp);
}

static void write_calls(ns_recorder *r, int64_t step, const char *phase) {
    /* inclusive backward time: add each call's time to its callers' (calls are in order, a
     * caller precedes its callees, so walk backwards) */
    for (int i = r->n_calls - 1; i >= 0; i--) {
        call_rec *c = &r->calls[i];
        if (isnan(c->bwd_us) || c->caller_idx < 0) continue;
        call_rec *p = &r->calls[c->caller_idx];
        p->bwd_us = isnan(p->bwd_us) ? c->bwd_us : p->bwd_us + c->bwd_us;
    }
    r->cdepth = 0; /* calls abandoned by an error that was recovered from */
    for (int i = 0; i < r->n_calls; i++) {
        call_rec *c = &r->calls[i];
        ns_row row;
        ns_row_init(&row, NS_ROW_CALL);
        row.call.step = step;
        row.call.module_id = c->module_id;
        row.call.seq = c->seq;
        row.call.caller_id = c->caller_id >= 0 ? c->caller_id : NS_NULL;
        row.call.phase = phase;
        row.call.training = c->training;
        row.call.grad_enabled = c->grad_enabled;
        row.call.in_device = c->in_dev;
        row.call.param_device = c->param_dev;
        row.call.out_device = c->out_dev;
        row.call.in_shape = c->in_shape;
        row.call.out_shape = c->out_shape[0] ? c->out_shape : NULL;
        row.call.fwd_us = c->fwd_us;
        row.call.bwd_us = c->bwd_us;
        row.call.grad_out_norm = c->grad_out_norm;
        if (c->have_stats) {
            row.call.out_mean = c->mean;
            row.call.out_std = c->std;
            row.call.out_zero_frac = c->zero_frac;
            row.call.dead_frac = c->dead_frac;
            row.call.out_nonfinite = c->nonfinite;
        }
        push(r, &row);
    }
    r->n_calls = 0;
}

static void write_transfers(ns_recorder *r, int64_t step) {
    for (int i = 0; i < r->n_xfers; i++) {
        transfer_rec *t = &r->xfers[i];
        ns_row row;
        ns_row_init(&row, NS_ROW_TRANSFER);
        row.transfer.step = step;
        row.transfer.module_id = t->module_id >= 0 ? t->module_id : NS_NULL;
        row.transfer.src = dev_name(t->src);
        row.transfer.dst = dev_name(t->dst);
        row.transfer.bytes = t->bytes;
        row.transfer.count = t->count;
        push(r, &row);
    }
    r->n_xfers = 0;
}

static void step_end(ns_recorder *r, const ns_step_info *si) {
    if (!r->described) describe_model(r);
    bool train = !strcmp(si->phase, "train");
    double wall = now_wall();
    ns_row row;
    ns_row_init(&row, NS_ROW_STEP);
    row.step.step = si->step;
    row.step.phase = si->phase;
    row.step.epoch = si->epoch;
    row.step.loss = si->loss;
    row.step.lr = r->opt && ns_optim_num_groups(r->opt) > 0 ? ns_optim_group(r->opt, 0)->lr : NAN;
    row.step.samples = si->samples;
    row.step.wall_time = wall;
    row.step.duration_us = r->t_last_step > 0 ? (wall - r->t_last_step) * 1e6 : NAN;
    r->t_last_step = wall;
    size_t in_use = 0, cached = 0, peak = 0;
    ns_scope_stats(&in_use, NULL);
    row.step.scope_bytes = (int64_t)in_use;
    /* Ask the device backend only when this step ran on a device (no CUDA start-up otherwise). */
    bool on_dev = false;
    for (int i = 0; i < r->n_calls && !on_dev; i++)
        on_dev = (r->calls[i].in_dev && strcmp(r->calls[i].in_dev, "cpu")) ||
                 (r->calls[i].param_dev && strcmp(r->calls[i].param_dev, "cpu"));
    const ns_backend *dev = on_dev ? ns_backend_get(NS_CUDA) : NULL;
    if (dev && dev->mem_stats) {
        dev->mem_stats(&in_use, &cached, &peak);
        row.step.dev_mem_in_use = (int64_t)in_use;
        row.step.dev_mem_cached = (int64_t)cached;
        row.step.dev_mem_peak = (int64_t)peak;
    }
    write_calls(r, si->step, si->phase);
    write_param_stats(r, si->step, train);
    write_transfers(r, si->step);
    ns_cupti_step_end(r->cupti, si->step);
    r->stats_of = NULL; /* scope memory is reused by the next step */
    r->gnorm_of = NULL;
    push(r, &row); /* last: a committed step row means its details are committed too */
    r->step_sampled = (si->step + 1) % r->o.sample_every == 0;
}

/* ------------------------------------------------------------------ GPU activity */

static void put_event(ns_recorder *r, const char *kind, int64_t module_id, const char *detail,
                      double value);

static void gpu_sink(const ns_gpu_record *g, void *ud) {
    ns_recorder *r = ud;
    ns_row row;
    ns_row_init(&row, NS_ROW_KERNEL);
    row.kernel.step = g->step;
    row.kernel.module_id = g->module_id >= 0 ? g->module_id : NS_NULL;
    row.kernel.phase = ns_gpu_phase_name(g->phase);
    row.kernel.kind = g->kind;
    row.kernel.name = g->name;
    row.kernel.start_ns = (int64_t)g->start_ns;
    row.kernel.end_ns = (int64_t)g->end_ns;
    for (int i = 0; i < 3; i++) {
        row.kernel.grid[i] = g->grid[i];
        row.kernel.block[i] = g->block[i];
    }
    row.kernel.stream = g->stream;
    row.kernel.bytes = g->bytes >= 0 ? g->bytes : NS_NULL;
    push(r, &row);
}

static void start_cupti(ns_recorder *r) {
    char why[256] = "off (NNSCOPE_CUPTI=0 or opts.cupti = false)";
    if (r->o.cupti)
        r->cupti = ns_cupti_start(gpu_sink, r, ns_step_index(), r->o.cupti_every, why, sizeof why);
    ns_row row;
    ns_row_init(&row, NS_ROW_RUN);
    row.run.cupti_status = r->cupti ? "on" : why;
    push(r, &row);
}

static void stop_cupti(ns_recorder *r) {
    if (!r->cupti) return;
    ns_cupti_stats st;
    ns_cupti_stop(r->cupti, &st);
    r->cupti = NULL;
    char text[256];
    ns_cupti_stats_text(&st, text, sizeof text);
    put_event(r, "note", -1, text, NAN);
}

/* ------------------------------------------------------------------ events */

static void put_event(ns_recorder *r, const char *kind, int64_t module_id, const char *detail,
                      double value) {
    ns_row ev;
    ns_row_init(&ev, NS_ROW_EVENT);
    ev.event.step = ns_step_index();
    ev.event.kind = kind;
    ev.event.module_id = module_id >= 0 ? module_id : NS_NULL;
    ev.event.param_id = NS_NULL;
    ev.event.detail = detail;
    ev.event.value = value;
    ev.event.wall_time = ns_wall_time();
    push(r, &ev);
}

static void on_event(const ns_event *ev, void *ud) {
    ns_recorder *r = ud;
    switch (ev->kind) {
    case NS_EV_UNREGISTERED_CALL: {
        if (!r->in_model) break; /* a call inside another model: not part of this run */
        known_module *k = see_module(r, ev->module, ev->other);
        char cp[512] = "";
        if (ev->other) {
            known_module *c = find_module(r, (int64_t)ev->other->id);
            snprintf(cp, sizeof cp, "%s", c ? c->path : "?");
        }
        put_event(r, "unregistered_call", k ? k->id : (int64_t)ev->module->id, cp, NAN);
        break;
    }
    case NS_EV_TRANSFER: {
        int64_t mid = ev->module ? (int64_t)ev->module->id : -1;
        for (int i = 0; i < r->n_xfers; i++) {
            transfer_rec *t = &r->xfers[i];
            if (t->module_id == mid && t->src == ev->src && t->dst == ev->dst) {
                t->bytes += ev->bytes;
                t->count++;
                return;
            }
        }
        GROW(r->xfers, r->n_xfers, r->cap_xfers);
        r->xfers[r->n_xfers++] = (transfer_rec){mid, ev->src, ev->dst, ev->bytes, 1};
        break;
    }
    case NS_EV_STATE_DICT_LOAD:
        put_event(r, "state_dict_load", ev->module ? (int64_t)ev->module->id : -1, ev->detail,
                  (double)ev->count);
        break;
    case NS_EV_NONFINITE:
        if (!r->nonfinite_reported) {
            r->nonfinite_reported = true;
            put_event(r, "nonfinite", ev->module ? (int64_t)ev->module->id : -1, ev->detail,
                      (double)ev->count);
        }
        break;
    case NS_EV_UNINITIALISED:
        r->uninit_seen = true;
        put_event(r, "uninitialised_module", -1, ev->detail, NAN);
        if (!r->fail_detail && ev->detail) r->fail_detail = strdup(ev->detail);
        break;
    case NS_EV_ERROR:
        if (!r->fail_detail && ev->detail) r->fail_detail = strdup(ev->detail);
        if (!r->uninit_seen) put_event(r, "error", -1, ev->detail, NAN);
        ns_record_flush(r); /* the default handler exits next */
        break;
    case NS_EV_MODULE_FREED:
        for (int i = 0; i < r->n_mods; i++)
            if (r->mods[i].m == ev->module) r->mods[i].m = NULL;
        for (int i = 0; i < r->n_tens;) {
            if (r->tens[i].module_id == (int64_t)ev->module->id) {
                free(r->tens[i].snapshot);
                free(r->tens[i].name);
                r->tens[i] = r->tens[--r->n_tens];
            } else {
                i++;
            }
        }
        break;
    case NS_EV_BACKWARD_BEGIN: /* kernels between nodes (the seed gradient) are backward too */
        ns_cupti_push(r->cupti, ns_step_index(), -1, NS_PHASE_BACKWARD);
        break;
    case NS_EV_BACKWARD_END:
        ns_cupti_pop(r->cupti);
        break;
    case NS_EV_STEP_END:
        step_end(r, ev->step);
        break;
    case NS_EV_OPTIMIZER_FREED:
        if (r->opt == ev->optimizer) forget_optimizer(r);
        break;
    default:
        break;
    }
}

/* ------------------------------------------------------------------ signals and exit */

/* Closes the writer once (caller holds r->lock), keeping its error message. */
static void close_writer(ns_recorder *r, ns_run_status st, const char *detail) {
    if (r->closed) return;
    r->closed = true;
    const char *e = ns_writer_error(r->w);
    if (e) r->close_err = strdup(e);
    ns_writer_close(r->w, st, detail);
    r->w = NULL;
}

static int g_sig_pipe[2] = {-1, -1};
static pthread_t g_sig_thread;
static volatile sig_atomic_t g_sig_installed;
static struct sigaction g_old_int, g_old_term;

static void on_signal(int sig) {
    unsigned char b = (unsigned char)sig;
    if (write(g_sig_pipe[1], &b, 1) < 0) _exit(128 + sig);
}

/* Waits for SIGINT/SIGTERM (self-pipe), ends the run as interrupted, then lets the signal's
 * default action end the process. */
static void *sig_watcher(void *arg) {
    (void)arg;
    unsigned char b;
    while (read(g_sig_pipe[0], &b, 1) < 0 && errno == EINTR) {
    }
    int sig = b;
    pthread_mutex_lock(&g_active_lock);
    ns_recorder *r = g_active;
    if (r) {
        pthread_mutex_lock(&r->lock);
        close_writer(r, NS_RUN_INTERRUPTED, sig == SIGINT ? "SIGINT" : "SIGTERM");
        pthread_mutex_unlock(&r->lock);
    }
    pthread_mutex_unlock(&g_active_lock);
    sigaction(SIGINT, &g_old_int, NULL);
    sigaction(SIGTERM, &g_old_term, NULL);
    if ((sig == SIGINT ? g_old_int : g_old_term).sa_handler == SIG_IGN) return NULL;
    signal(sig, SIG_DFL);
    kill(getpid(), sig);
    return NULL;
}

static void install_signals(void) {
    if (g_sig_installed) return;
    if (pipe(g_sig_pipe) != 0) return;
    if (pthread_create(&g_sig_thread, NULL, sig_watcher, NULL) != 0) return;
    pthread_detach(g_sig_thread);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    /* Only where the disposition is the default: a SIGINT ignored by the shell (background jobs)
     * stays ignored, and a program's own handler keeps running (its run ends at exit). */
    sigaction(SIGINT, NULL, &g_old_int);
    sigaction(SIGTERM, NULL, &g_old_term);
    if (g_old_int.sa_handler == SIG_DFL) sigaction(SIGINT, &sa, NULL);
    if (g_old_term.sa_handler == SIG_DFL) sigaction(SIGTERM, &sa, NULL);
    g_sig_installed = 1;
}

static void at_exit(void) {
    ns_recorder *r = g_active;
    if (r) ns_record_close(r);
}

/* ------------------------------------------------------------------ open / close */

void ns_record_opts_default(ns_record_opts *o) {
    memset(o, 0, sizeof *o);
    o->sample_every = 1;
    o->queue_rows = 65536;
    o->commit_ms = 100;
    o->cupti = true;
    o->cupti_every = 1;
    const char *s = getenv("NNSCOPE_SAMPLE_EVERY");
    if (s && atoi(s) > 0) o->sample_every = atoi(s);
    s = getenv("NNSCOPE_QUEUE");
    if (s && !strcmp(s, "drop")) o->drop_when_full = true;
    s = getenv("NNSCOPE_CUPTI");
    if (s && !strcmp(s, "0")) o->cupti = false;
    s = getenv("NNSCOPE_CUPTI_EVERY");
    if (s && atoi(s) > 0) o->cupti_every = atoi(s);
}

static char *read_cmdline(void) {
    static char buf[4096];
    FILE *f = fopen("/proc/self/cmdline", "rb");
    size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
    if (f) fclose(f);
    for (size_t i = 0; i + 1 < n; i++)
        if (!buf[i]) buf[i] = ' ';
    buf[n] = 0;
    return buf;
}

ns_recorder *ns_record_open(const char *path, ns_module *model, ns_optimizer *opt,
                            const ns_record_opts *opts) {
    if (g_active) {
        fprintf(stderr, "nnscope: recording is already active; not opening %s\n", path);
        return NULL;
    }
    ns_recorder *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    if (opts)
        r->o = *opts;
    else
        ns_record_opts_default(&r->o);
    if (r->o.sample_every < 1) r->o.sample_every = 1;
    r->model = model ? ns_module_root(model) : NULL;
    r->opt = opt;
    pthread_mutex_init(&r->lock, NULL);

    char host[256] = "";
    gethostname(host, sizeof host - 1);
    char devices[256] = "cpu", why[256] = "";
    if (ns_device_available(NS_CUDA, why, sizeof why))
        snprintf(devices, sizeof devices, "cpu,cuda:0");
    ns_writer_opts wo;
    ns_writer_opts_default(&wo);
    wo.policy = r->o.drop_when_full ? NS_QUEUE_DROP : NS_QUEUE_BLOCK;
    wo.queue_rows = r->o.queue_rows;
    wo.commit_ms = r->o.commit_ms;
    ns_run_meta meta = {.command = read_cmdline(),
                        .host = host,
                        .pid = (int64_t)getpid(),
                        .engine_version = NS_VERSION,
                        .devices = devices,
                        .sample_every = r->o.sample_every};
    char err[512];
    r->w = ns_writer_open(path, &wo, &meta, err, sizeof err);
    if (!r->w) {
        fprintf(stderr, "nnscope: recording disabled: %s\n", err);
        pthread_mutex_destroy(&r->lock);
        free(r);
        return NULL;
    }
    r->run_id = ns_writer_run_id(r->w);
    r->step_sampled = ns_step_index() % r->o.sample_every == 0;
    r->h[r->n_h++] = ns_register_forward_pre_hook_global(fwd_pre, r);
    r->h[r->n_h++] = ns_register_forward_hook_global(fwd_post, r);
    r->h[r->n_h++] = ns_register_backward_hook_global(bwd_hook, r);
    r->h[r->n_h++] = ns_register_optim_pre_hook(NULL, opt_pre, r);
    r->h[r->n_h++] = ns_register_optim_post_hook(NULL, opt_post, r);
    r->h[r->n_h++] = ns_register_event_hook(on_event, r);
    ns_set_backward_node_callback(node_cb, r);
    start_cupti(r);
    if (r->model) describe_model(r);
    pthread_mutex_lock(&g_active_lock);
    g_active = r;
    pthread_mutex_unlock(&g_active_lock);
    install_signals();
    static bool atexit_done;
    if (!atexit_done) {
        atexit(at_exit);
        atexit_done = true;
    }
    return r;
}

void ns_record_close(ns_recorder *r) {
    if (!r) return;
    pthread_mutex_lock(&g_active_lock);
    if (g_active == r) g_active = NULL;
    pthread_mutex_unlock(&g_active_lock);
    for (int i = 0; i < r->n_h; i++) ns_hook_remove(r->h[i]);
    ns_set_backward_node_callback(NULL, NULL);
    stop_cupti(r);
    pthread_mutex_lock(&r->lock);
    close_writer(r, r->fail_detail ? NS_RUN_FAILED : NS_RUN_FINISHED, r->fail_detail);
    pthread_mutex_unlock(&r->lock);
    for (int i = 0; i < r->n_mods; i++) free(r->mods[i].path);
    for (int i = 0; i < r->n_tens; i++) {
        free(r->tens[i].snapshot);
        free(r->tens[i].name);
    }
    free(r->mods);
    free(r->tens);
    free(r->calls);
    free(r->cstack);
    free(r->xfers);
    free(r->fail_detail);
    free(r->close_err);
    pthread_mutex_destroy(&r->lock);
    free(r);
}

ns_recorder *ns_record_active(void) {
    return g_active;
}

int64_t ns_record_run_id(const ns_recorder *r) {
    return r->run_id;
}

void ns_record_flush(ns_recorder *r) {
    if (!r) return;
    pthread_mutex_lock(&r->lock);
    if (!r->closed) ns_writer_flush(r->w);
    pthread_mutex_unlock(&r->lock);
}

const char *ns_record_error(const ns_recorder *r) {
    if (!r) return NULL;
    return r->closed ? r->close_err : ns_writer_error(r->w);
}

/* NNSCOPE_DB=path: start recording at the first engine event of the process (module creation),
 * with the model and optimizer picked up when they first run. */
void ns_record_autostart(void) {
    static bool checked;
    if (checked) return;
    checked = true;
    const char *p = getenv("NNSCOPE_DB");
    if (!p || !*p) return;
    ns_record_open(p, NULL, NULL, NULL);
}
