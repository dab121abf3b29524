/* The TUI view model: rows in, tree/aggregates/groups out. See model.h. */
#include "model.h"

#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ id maps */

static uint64_t mix(int64_t key) {
    uint64_t x = (uint64_t)key;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return x;
}

static int map_get(const ns_tui_idmap *h, int64_t key) {
    if (!h->cap) return -1;
    for (uint64_t i = mix(key) & (uint64_t)(h->cap - 1);; i = (i + 1) & (uint64_t)(h->cap - 1)) {
        if (!h->vals[i]) return -1;
        if (h->keys[i] == key) return h->vals[i] - 1;
    }
}

static int map_put(ns_tui_idmap *h, int64_t key, int val) {
    if ((h->n + 1) * 2 > h->cap) {
        int cap = h->cap ? h->cap * 2 : 64;
        int64_t *keys = malloc(sizeof(int64_t) * (size_t)cap);
        int *vals = calloc((size_t)cap, sizeof(int));
        if (!keys || !vals) {
            free(keys);
            free(vals);
            return -1;
        }
        for (int i = 0; i < h->cap; i++) {
            if (!h->vals[i]) continue;
            uint64_t j = mix(h->keys[i]) & (uint64_t)(cap - 1);
            while (vals[j]) j = (j + 1) & (uint64_t)(cap - 1);
            keys[j] = h->keys[i];
            vals[j] = h->vals[i];
        }
        free(h->keys);
        free(h->vals);
        h->keys = keys;
        h->vals = vals;
        h->cap = cap;
    }
    uint64_t i = mix(key) & (uint64_t)(h->cap - 1);
    while (h->vals[i] && h->keys[i] != key) i = (i + 1) & (uint64_t)(h->cap - 1);
    if (!h->vals[i]) h->n++;
    h->keys[i] = key;
    h->vals[i] = val + 1;
    return 0;
}

static void map_free(ns_tui_idmap *h) {
    free(h->keys);
    free(h->vals);
    memset(h, 0, sizeof *h);
}

static size_t map_bytes(const ns_tui_idmap *h) {
    return (size_t)h->cap * (sizeof(int64_t) + sizeof(int));
}

/* Grows *arr (element size sz) to hold at least need elements. Returns 0 or -1. */
static int grow(void **arr, int *cap, int need, size_t sz) {
    if (need <= *cap) return 0;
    int c = *cap ? *cap : 16;
    while (c < need) c *= 2;
    void *p = realloc(*arr, (size_t)c * sz);
    if (!p) return -1;
    *arr = p;
    *cap = c;
    return 0;
}

static char *dup_or_null(const char *s) {
    return s ? strdup(s) : NULL;
}

static size_t str_bytes(const char *s) {
    return s ? strlen(s) + 1 : 0;
}

/* Copies src into dst (cap bytes), truncating; cheap when dst already holds it. */
static void copy_text(char *dst, size_t cap, const char *src) {
    if (!src) src = "";
    size_t n = strlen(src);
    if (n >= cap) n = cap - 1;
    if (memcmp(dst, src, n) == 0 && dst[n] == 0) return;
    memcpy(dst, src, n);
    dst[n] = 0;
}

/* ------------------------------------------------------------------ lifecycle */

void ns_tui_model_init(ns_tui_model *m) {
    memset(m, 0, sizeof *m);
    m->run_id = -1;
    m->first_step = m->last_step = -1;
    m->epoch = -1;
    m->stats_step = -1;
    m->last_loss = m->last_eval_loss = m->last_lr = m->last_wall = m->first_wall = NAN;
    ns_ring_init(&m->loss, NS_TUI_HIST_N, NS_RING_DOWNSAMPLE);
    ns_ring_init(&m->eval_loss, NS_TUI_HIST_N, NS_RING_DOWNSAMPLE);
    ns_ring_init(&m->walls, NS_TUI_RATE_N, NS_RING_WINDOW);
    ns_ring_init(&m->det.grad, NS_TUI_HIST_N, NS_RING_DOWNSAMPLE);
    ns_ring_init(&m->det.ratio, NS_TUI_HIST_N, NS_RING_DOWNSAMPLE);
    ns_ring_init(&m->det.wnorm, NS_TUI_HIST_N, NS_RING_DOWNSAMPLE);
    ns_ring_init(&m->det.zero, NS_TUI_HIST_N, NS_RING_DOWNSAMPLE);
    m->det.cursor = -1;
}

void ns_tui_run_clear(ns_tui_run *r) {
    free(r->status);
    free(r->status_detail);
    free(r->command);
    free(r->host);
    free(r->engine_version);
    free(r->devices);
    free(r->cupti_status);
    memset(r, 0, sizeof *r);
}

static void free_run_data(ns_tui_model *m) {
    for (int i = 0; i < m->nmods; i++) {
        ns_tui_mod *d = &m->mods[i];
        free(d->path);
        free(d->type);
        free(d->describe);
        ns_ring_free(&d->grad);
        ns_ring_free(&d->ratio);
        ns_ring_free(&d->zero);
    }
    free(m->mods);
    for (int i = 0; i < m->nparams; i++) {
        ns_tui_param *p = &m->params[i];
        free(p->name);
        free(p->shape);
        ns_ring_free(&p->grad);
        ns_ring_free(&p->ratio);
    }
    free(m->params);
    free(m->mod_params);
    free(m->touched);
    map_free(&m->mod_map);
    map_free(&m->param_map);
    for (int i = 0; i < m->nkernels; i++) free(m->kernels[i].name);
    free(m->kernels);
    free(m->kmods);
    map_free(&m->kernel_map);
    map_free(&m->kmod_map);
    ns_findings_free(m->find, m->nfind);
    free(m->groups);
    free(m->rows);
    ns_ring_free(&m->loss);
    ns_ring_free(&m->eval_loss);
    ns_ring_free(&m->walls);
    ns_ring_free(&m->det.grad);
    ns_ring_free(&m->det.ratio);
    ns_ring_free(&m->det.wnorm);
    ns_ring_free(&m->det.zero);
}

void ns_tui_model_reset_run(ns_tui_model *m) {
    ns_tui_run *runs = m->runs;
    int nruns = m->nruns;
    int64_t run_id = m->run_id;
    uint64_t gen = m->generation;
    free_run_data(m);
    ns_tui_model_init(m);
    m->runs = runs;
    m->nruns = nruns;
    m->run_id = run_id;
    m->generation = gen + 1;
}

void ns_tui_model_free(ns_tui_model *m) {
    free_run_data(m);
    for (int i = 0; i < m->nruns; i++) ns_tui_run_clear(&m->runs[i]);
    free(m->runs);
    ns_tui_model_init(m);
}

void ns_tui_model_set_runs(ns_tui_model *m, ns_tui_run *runs, int n) {
    for (int i = 0; i < m->nruns; i++) ns_tui_run_clear(&m->runs[i]);
    free(m->runs);
    m->runs = runs;
    m->nruns = n;
    m->generation++;
}

const ns_tui_run *ns_tui_model_run(const ns_tui_model *m) {
    for (int i = 0; i < m->nruns; i++)
        if (m->runs[i].id == m->run_id) return &m->runs[i];
    return NULL;
}

/* ------------------------------------------------------------------ rows in */

int ns_tui_model_add_module(ns_tui_model *m, int64_t id, int64_t parent_id, const char *path,
                            const char *type, const char *describe, int registered,
                            int created_in_forward, int64_t creator_id, int64_t n_params,
                            int64_t first_step) {
    if (map_get(&m->mod_map, id) >= 0) return -1;
    if (m->nmods >= NS_TUI_MAX_MODULES ||
        grow((void **)&m->mods, &m->capmods, m->nmods + 1, sizeof *m->mods) != 0) {
        m->mods_dropped++;
        return -2;
    }
    ns_tui_mod *d = &m->mods[m->nmods];
    memset(d, 0, sizeof *d);
    d->id = id;
    d->parent_id = parent_id;
    d->creator_id = creator_id;
    d->first_step = first_step;
    d->path = strdup(path ? path : "");
    d->type = strdup(type ? type : "?");
    d->describe = dup_or_null(describe);
    if (!d->path || !d->type || (describe && !d->describe) ||
        map_put(&m->mod_map, id, m->nmods) != 0) {
        free(d->path);
        free(d->type);
        free(d->describe);
        m->mods_dropped++;
        m->oom = 1;
        return -2;
    }
    d->name = d->path;
    d->registered = registered;
    d->created_in_forward = created_in_forward;
    d->n_params = n_params;
    d->mode = d->mode_any = -1;
    d->max_sev = -1;
    d->acc_step = -1;
    d->parent = d->first_child = d->next_sibling = -1;
    d->first_param = 0;
    ns_ring_init(&d->grad, NS_TUI_SPARK_N, NS_RING_WINDOW);
    ns_ring_init(&d->ratio, NS_TUI_SPARK_N, NS_RING_WINDOW);
    ns_ring_init(&d->zero, NS_TUI_SPARK_N, NS_RING_WINDOW);
    m->linked = 0;
    m->generation++;
    return m->nmods++;
}

int ns_tui_model_add_param(ns_tui_model *m, int64_t id, int64_t module_id, const char *name,
                           int is_buffer, const char *shape, int64_t numel, int requires_grad,
                           int in_optimizer, double lr) {
    if (map_get(&m->param_map, id) >= 0) return -1;
    if (m->nparams >= NS_TUI_MAX_PARAMS ||
        grow((void **)&m->params, &m->capparams, m->nparams + 1, sizeof *m->params) != 0) {
        m->params_dropped++;
        return -2;
    }
    ns_tui_param *p = &m->params[m->nparams];
    memset(p, 0, sizeof *p);
    p->id = id;
    p->module_id = module_id;
    p->module = -1;
    p->name = strdup(name ? name : "?");
    p->shape = strdup(shape ? shape : "");
    if (!p->name || !p->shape || map_put(&m->param_map, id, m->nparams) != 0) {
        free(p->name);
        free(p->shape);
        m->params_dropped++;
        m->oom = 1;
        return -2;
    }
    p->is_buffer = is_buffer;
    p->numel = numel;
    p->requires_grad = requires_grad;
    p->in_optimizer = in_optimizer;
    p->lr = lr;
    p->last_grad = p->last_update = p->last_weight = p->last_ratio = NAN;
    p->last_step = -1;
    p->max_sev = -1;
    ns_ring_init(&p->grad, NS_TUI_SPARK_N, NS_RING_WINDOW);
    ns_ring_init(&p->ratio, NS_TUI_SPARK_N, NS_RING_WINDOW);
    m->linked = 0;
    m->generation++;
    return m->nparams++;
}

int ns_tui_model_find_module(const ns_tui_model *m, int64_t id) {
    return map_get(&m->mod_map, id);
}

int ns_tui_model_find_param(const ns_tui_model *m, int64_t id) {
    return map_get(&m->param_map, id);
}

/* Shown name: the path below the parent's path, else its last component outside brackets
 * ("blocks.(unregistered Linear #7)" -> "(unregistered Linear #7)"). */
static const char *short_name(const ns_tui_model *m, const ns_tui_mod *d) {
    if (!d->path[0]) return "(model)";
    if (d->parent >= 0) {
        const char *pp = m->mods[d->parent].path;
        size_t n = strlen(pp);
        if (n == 0) return d->path;
        if (strncmp(d->path, pp, n) == 0 && d->path[n] == '.' && d->path[n + 1]) {
            return d->path + n + 1;
        }
    }
    const char *last = d->path;
    int nest = 0;
    for (const char *c = d->path; *c; c++) {
        if (*c == '(' || *c == '<' || *c == '[')
            nest++;
        else if ((*c == ')' || *c == '>' || *c == ']') && nest > 0)
            nest--;
        else if (*c == '.' && nest == 0 && c[1])
            last = c + 1;
    }
    return last;
}

void ns_tui_model_link(ns_tui_model *m) {
    for (int i = 0; i < m->nmods; i++) {
        ns_tui_mod *d = &m->mods[i];
        d->parent = d->parent_id >= 0 ? map_get(&m->mod_map, d->parent_id) : -1;
        if (d->parent == i) d->parent = -1;
        d->first_child = d->next_sibling = -1;
        d->nchildren = 0;
        d->tree_params = 0;
        d->nparams = 0;
        d->first_param = 0;
    }
    /* Depths; a parent cycle (bad data) makes the node a root. */
    for (int i = 0; i < m->nmods; i++) {
        int depth = 0, a = m->mods[i].parent;
        while (a >= 0 && depth <= m->nmods) {
            depth++;
            a = m->mods[a].parent;
        }
        if (depth > m->nmods) {
            m->mods[i].parent = -1;
            depth = 0;
        }
        m->mods[i].depth = depth;
    }
    for (int i = m->nmods - 1; i >= 0; i--) {
        ns_tui_mod *d = &m->mods[i];
        if (d->parent < 0) continue;
        ns_tui_mod *p = &m->mods[d->parent];
        d->next_sibling = p->first_child;
        p->first_child = i;
        p->nchildren++;
    }
    for (int i = 0; i < m->nmods; i++) {
        int64_t n = m->mods[i].n_params;
        for (int a = i, guard = 0; a >= 0 && guard <= m->nmods; a = m->mods[a].parent, guard++)
            m->mods[a].tree_params += n;
        m->mods[i].name = short_name(m, &m->mods[i]);
    }
    /* Params grouped by module (counting sort keeps id order inside a module). */
    int *mp = realloc(m->mod_params, sizeof(int) * (size_t)(m->nparams ? m->nparams : 1));
    if (!mp) {
        m->oom = 1;
        return;
    }
    m->mod_params = mp;
    for (int i = 0; i < m->nparams; i++) {
        ns_tui_param *p = &m->params[i];
        p->module = map_get(&m->mod_map, p->module_id);
        if (p->module >= 0) m->mods[p->module].nparams++;
    }
    int at = 0;
    for (int i = 0; i < m->nmods; i++) {
        m->mods[i].first_param = at;
        at += m->mods[i].nparams;
        m->mods[i].nparams = 0;
    }
    for (int i = 0; i < m->nparams; i++) {
        int mi = m->params[i].module;
        if (mi < 0) continue;
        ns_tui_mod *d = &m->mods[mi];
        m->mod_params[d->first_param + d->nparams++] = i;
    }
    m->linked = 1;
}

void ns_tui_model_add_step(ns_tui_model *m, int64_t step, int is_train, int64_t epoch, double loss,
                           double lr, double wall_time) {
    if (m->first_step < 0 || step < m->first_step) m->first_step = step;
    if (step > m->last_step) m->last_step = step;
    ns_ring *ring = is_train ? &m->loss : &m->eval_loss;
    if (m->sampled_stride > 0)
        ns_ring_push_point(ring, step, loss);
    else
        ns_ring_push(ring, step, loss);
    if (is_train) {
        m->n_train++;
        if (!isnan(loss)) m->last_loss = loss;
        if (!isnan(lr)) m->last_lr = lr;
    } else {
        m->n_eval++;
        if (!isnan(loss)) m->last_eval_loss = loss;
    }
    if (epoch >= 0) m->epoch = epoch;
    if (isnan(m->first_wall)) m->first_wall = wall_time;
    m->last_wall = wall_time;
    ns_ring_push(&m->walls, step, wall_time);
    m->generation++;
}

static void touch(ns_tui_model *m, int mi, int64_t step) {
    ns_tui_mod *d = &m->mods[mi];
    if (d->acc_step == step) return;
    d->acc_step = step;
    d->acc_g2 = d->acc_u2 = d->acc_w2 = 0;
    d->acc_gn = d->acc_nf = 0;
    if (grow((void **)&m->touched, &m->captouched, m->ntouched + 1, sizeof(int)) != 0) {
        m->oom = 1;
        return;
    }
    m->touched[m->ntouched++] = mi;
}

void ns_tui_model_flush_stats(ns_tui_model *m) {
    if (m->stats_step < 0) return;
    for (int i = 0; i < m->ntouched; i++) {
        ns_tui_mod *d = &m->mods[m->touched[i]];
        if (d->acc_step != m->stats_step) continue;
        double g = d->acc_gn > 0 ? sqrt(d->acc_g2) : NAN;
        double r = d->acc_w2 > 0 ? sqrt(d->acc_u2) / sqrt(d->acc_w2) : NAN;
        ns_ring_push(&d->grad, m->stats_step, g);
        ns_ring_push(&d->ratio, m->stats_step, r);
        d->nonfinite = d->acc_nf;
    }
    m->ntouched = 0;
    m->stats_step = -1;
    m->generation++;
}

void ns_tui_model_add_stat(ns_tui_model *m, int64_t step, int64_t param_id, double grad,
                           double update, double weight, double ratio, int64_t nonfinite,
                           const char *device) {
    if (!m->linked) ns_tui_model_link(m);
    if (m->stats_step != step) {
        ns_tui_model_flush_stats(m);
        m->stats_step = step;
    }
    int pi = map_get(&m->param_map, param_id);
    if (pi < 0) return;
    ns_tui_param *p = &m->params[pi];
    /* SQLite stores NaN as NULL: with a non-finite count, a NULL norm was NaN/Inf data. */
    if (nonfinite > 0 && isnan(grad) && p->requires_grad && !p->is_buffer) grad = INFINITY;
    if (nonfinite > 0 && isnan(weight)) weight = INFINITY;
    p->last_grad = grad;
    p->last_update = update;
    p->last_weight = weight;
    p->last_ratio = ratio;
    p->last_nonfinite = nonfinite;
    p->last_step = step;
    if (isfinite(update)) p->total_update += update;
    if (device) copy_text(p->device, sizeof p->device, device);
    ns_ring_push(&p->grad, step, grad);
    ns_ring_push(&p->ratio, step, ratio);
    if (p->is_buffer || p->module < 0) return;
    ns_tui_mod *own = &m->mods[p->module];
    if (!own->device[0] && device) copy_text(own->device, sizeof own->device, device);
    for (int a = p->module, guard = 0; a >= 0 && guard <= m->nmods;
         a = m->mods[a].parent, guard++) {
        touch(m, a, step);
        ns_tui_mod *d = &m->mods[a];
        if (!isnan(grad)) {
            d->acc_g2 += grad * grad;
            d->acc_gn++;
        }
        if (!isnan(update)) d->acc_u2 += update * update;
        if (!isnan(weight)) d->acc_w2 += weight * weight;
        if (a == p->module) d->acc_nf += nonfinite;
    }
}

void ns_tui_model_add_call(ns_tui_model *m, int64_t step, int64_t module_id, int train_phase,
                           int training, const char *device, double zero_frac) {
    int mi = map_get(&m->mod_map, module_id);
    if (mi < 0) return;
    ns_tui_mod *d = &m->mods[mi];
    if (device && device[0]) copy_text(d->device, sizeof d->device, device);
    if (train_phase) d->mode = training;
    d->mode_any = training;
    if (!isnan(zero_frac)) ns_ring_push(&d->zero, step, zero_frac);
    m->generation++;
}

unsigned ns_tui_event_bit(const char *kind) {
    static const struct {
        const char *name;
        unsigned bit;
    } kinds[] = {{"module_created_in_forward", NS_EV_CREATED},
                 {"unregistered_call", NS_EV_UNREG_CALL},
                 {"nonfinite", NS_EV_NONFINITE},
                 {"uninitialised_module", NS_EV_UNINIT},
                 {"state_dict_load", NS_EV_LOAD},
                 {"error", NS_EV_ERROR},
                 {"note", NS_EV_NOTE}};
    for (size_t i = 0; kind && i < sizeof kinds / sizeof kinds[0]; i++)
        if (strcmp(kind, kinds[i].name) == 0) return kinds[i].bit;
    return 0;
}

void ns_tui_model_add_event(ns_tui_model *m, int64_t id, int64_t step, const char *kind,
                            int64_t module_id, int64_t param_id, const char *detail, double value,
                            double wall_time) {
    int at;
    if (m->nevents < NS_TUI_EVENTS_N) {
        at = (m->events_head + m->nevents) % NS_TUI_EVENTS_N;
        m->nevents++;
    } else {
        at = m->events_head;
        m->events_head = (m->events_head + 1) % NS_TUI_EVENTS_N;
    }
    ns_tui_event *e = &m->events[at];
    e->id = id;
    e->step = step;
    e->module_id = module_id;
    e->param_id = param_id;
    copy_text(e->kind, sizeof e->kind, kind);
    copy_text(e->detail, sizeof e->detail, detail);
    e->value = value;
    e->wall_time = wall_time;
    m->events_total++;
    int mi = module_id >= 0 ? map_get(&m->mod_map, module_id) : -1;
    if (mi >= 0) m->mods[mi].events |= ns_tui_event_bit(kind);
    m->generation++;
}

const ns_tui_event *ns_tui_model_event(const ns_tui_model *m, int i) {
    if (i < 0 || i >= m->nevents) return NULL;
    return &m->events[(m->events_head + m->nevents - 1 - i) % NS_TUI_EVENTS_N];
}

static int phase_index(const char *phase) {
    if (!phase) return NS_KPH_OTHER;
    if (strcmp(phase, "forward") == 0) return NS_KPH_FORWARD;
    if (strcmp(phase, "backward") == 0) return NS_KPH_BACKWARD;
    if (strcmp(phase, "optimizer") == 0) return NS_KPH_OPTIMIZER;
    return NS_KPH_OTHER;
}

void ns_tui_model_add_kernel(ns_tui_model *m, int64_t module_id, const char *phase, int kind,
                             int64_t name_id, int64_t dur_ns, int64_t bytes) {
    m->kernel_rows++;
    if (kind == 1) {
        m->memcpy_bytes += bytes > 0 ? bytes : 0;
        m->memcpy_count++;
    }
    if (kind != 0) return;
    m->kernel_ns += dur_ns;
    int ki = map_get(&m->kernel_map, name_id);
    if (ki < 0) {
        if (grow((void **)&m->kernels, &m->capkernels, m->nkernels + 1, sizeof *m->kernels) ||
            map_put(&m->kernel_map, name_id, m->nkernels)) {
            m->oom = 1;
            return;
        }
        ki = m->nkernels++;
        memset(&m->kernels[ki], 0, sizeof m->kernels[ki]);
        m->kernels[ki].name_id = name_id;
    }
    ns_tui_kernel *k = &m->kernels[ki];
    k->launches++;
    k->total_ns += dur_ns;
    if (dur_ns > k->max_ns) k->max_ns = dur_ns;
    int mi = map_get(&m->kmod_map, module_id);
    if (mi < 0) {
        if (grow((void **)&m->kmods, &m->capkmods, m->nkmods + 1, sizeof *m->kmods) ||
            map_put(&m->kmod_map, module_id, m->nkmods)) {
            m->oom = 1;
            return;
        }
        mi = m->nkmods++;
        memset(&m->kmods[mi], 0, sizeof m->kmods[mi]);
        m->kmods[mi].module_id = module_id;
    }
    m->kmods[mi].ns[phase_index(phase)] += dur_ns;
    m->kmods[mi].launches++;
    m->generation++;
}

void ns_tui_model_set_kernel_name(ns_tui_model *m, int64_t name_id, const char *name) {
    int ki = map_get(&m->kernel_map, name_id);
    if (ki < 0 || m->kernels[ki].name) return;
    m->kernels[ki].name = strdup(name ? name : "?");
}

static int cmp_kernel(const void *a, const void *b) {
    const ns_tui_kernel *x = a, *y = b;
    if (x->total_ns != y->total_ns) return x->total_ns > y->total_ns ? -1 : 1;
    return x->name_id < y->name_id ? -1 : x->name_id > y->name_id;
}

static int64_t kmod_total(const ns_tui_kmod *k) {
    int64_t t = 0;
    for (int i = 0; i < NS_KPH_COUNT; i++) t += k->ns[i];
    return t;
}

static int cmp_kmod(const void *a, const void *b) {
    int64_t x = kmod_total(a), y = kmod_total(b);
    if (x != y) return x > y ? -1 : 1;
    int64_t ia = ((const ns_tui_kmod *)a)->module_id, ib = ((const ns_tui_kmod *)b)->module_id;
    return ia < ib ? -1 : ia > ib;
}

void ns_tui_model_sort_kernels(ns_tui_model *m) {
    /* qsort's pointer must not be NULL even for zero elements */
    if (m->nkernels) qsort(m->kernels, (size_t)m->nkernels, sizeof *m->kernels, cmp_kernel);
    if (m->nkmods) qsort(m->kmods, (size_t)m->nkmods, sizeof *m->kmods, cmp_kmod);
    for (int i = 0; i < m->nkernels; i++) map_put(&m->kernel_map, m->kernels[i].name_id, i);
    for (int i = 0; i < m->nkmods; i++) map_put(&m->kmod_map, m->kmods[i].module_id, i);
}

/* ------------------------------------------------------------------ detail, status */

void ns_tui_model_detail_target(ns_tui_model *m, ns_tui_detail_kind kind, int64_t id) {
    ns_tui_detail *d = &m->det;
    if (d->kind == (int)kind && d->id == id) return;
    d->kind = (int)kind;
    d->id = id;
    d->cursor = -1;
    d->nsources = 0;
    ns_ring_clear(&d->grad);
    ns_ring_clear(&d->ratio);
    ns_ring_clear(&d->wnorm);
    ns_ring_clear(&d->zero);
    m->generation++;
}

double ns_tui_model_steps_per_sec(const ns_tui_model *m) {
    int n = ns_ring_len(&m->walls);
    if (n < 2) return NAN;
    int64_t s0, s1;
    double t0, t1;
    ns_ring_get(&m->walls, 0, &s0, &t0);
    ns_ring_get(&m->walls, n - 1, &s1, &t1);
    if (!(t1 > t0) || s1 <= s0) return NAN;
    return (double)(s1 - s0) / (t1 - t0);
}

const char *ns_tui_model_status(const ns_tui_model *m, double now, double stale_after) {
    const ns_tui_run *r = ns_tui_model_run(m);
    if (!r) return "-";
    const char *st = r->status ? r->status : "running";
    if (strcmp(st, "running") != 0) return st;
    double last = r->started_at;
    if (!isnan(r->heartbeat_at) && (isnan(last) || r->heartbeat_at > last)) last = r->heartbeat_at;
    if (!isnan(m->last_wall) && (isnan(last) || m->last_wall > last)) last = m->last_wall;
    if (!isnan(last) && now - last > stale_after) return "stale";
    return "running";
}

size_t ns_tui_model_mem(const ns_tui_model *m) {
    size_t b = sizeof *m;
    b += (size_t)m->capmods * sizeof *m->mods;
    for (int i = 0; i < m->nmods; i++) {
        const ns_tui_mod *d = &m->mods[i];
        b += str_bytes(d->path) + str_bytes(d->type) + str_bytes(d->describe);
        b += ns_ring_bytes(&d->grad) + ns_ring_bytes(&d->ratio) + ns_ring_bytes(&d->zero);
    }
    b += (size_t)m->capparams * sizeof *m->params;
    for (int i = 0; i < m->nparams; i++) {
        const ns_tui_param *p = &m->params[i];
        b += str_bytes(p->name) + str_bytes(p->shape);
        b += ns_ring_bytes(&p->grad) + ns_ring_bytes(&p->ratio);
    }
    b += (size_t)(m->mod_params ? m->nparams : 0) * sizeof(int);
    b += (size_t)m->captouched * sizeof(int);
    b += map_bytes(&m->mod_map) + map_bytes(&m->param_map);
    b += map_bytes(&m->kernel_map) + map_bytes(&m->kmod_map);
    b += (size_t)m->nruns * sizeof *m->runs;
    for (int i = 0; i < m->nruns; i++) {
        const ns_tui_run *r = &m->runs[i];
        b += str_bytes(r->status) + str_bytes(r->status_detail) + str_bytes(r->command) +
             str_bytes(r->host) + str_bytes(r->engine_version) + str_bytes(r->devices) +
             str_bytes(r->cupti_status);
    }
    b += ns_ring_bytes(&m->loss) + ns_ring_bytes(&m->eval_loss) + ns_ring_bytes(&m->walls);
    b += ns_ring_bytes(&m->det.grad) + ns_ring_bytes(&m->det.ratio);
    b += ns_ring_bytes(&m->det.wnorm) + ns_ring_bytes(&m->det.zero);
    b += (size_t)m->capkernels * sizeof *m->kernels + (size_t)m->capkmods * sizeof *m->kmods;
    for (int i = 0; i < m->nkernels; i++) b += str_bytes(m->kernels[i].name);
    b += m->nfind * (sizeof *m->find + sizeof *m->groups);
    for (size_t i = 0; i < m->nfind; i++) {
        const ns_finding *f = &m->find[i];
        b += str_bytes(f->module) + str_bytes(f->param) + str_bytes(f->message) +
             str_bytes(f->evidence);
    }
    b += (size_t)m->caprows * sizeof *m->rows;
    return b;
}
