/* Training checkpoints: model state, optimizer state, epoch, best metric, RNG and data-loader
 * state in one safetensors file (layout in nnscope/optim.h). Loading checks everything before
 * changing anything, so a bad file leaves the model and the optimizer as they were. */
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "nnscope/io.h"
#include "nnscope/optim.h"

#define CKPT_FORMAT "nnscope.checkpoint"
#define CKPT_VERSION "1"

/* ------------------------------------------------------------------ small helpers */

static char *xstrdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *p = malloc(n);
    if (!p) ns_error("out of memory writing a checkpoint");
    return memcpy(p, s, n);
}

static char *fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));
static char *fmt(const char *f, ...) {
    va_list ap;
    va_start(ap, f);
    int n = vsnprintf(NULL, 0, f, ap);
    va_end(ap);
    char *p = malloc((size_t)n + 1);
    if (!p) ns_error("out of memory writing a checkpoint");
    va_start(ap, f);
    vsnprintf(p, (size_t)n + 1, f, ap);
    va_end(ap);
    return p;
}

static bool fail(char *err, size_t errlen, const char *f, ...)
    __attribute__((format(printf, 3, 4)));
static bool fail(char *err, size_t errlen, const char *f, ...) {
    if (err && errlen) {
        va_list ap;
        va_start(ap, f);
        vsnprintf(err, errlen, f, ap);
        va_end(ap);
    }
    return false;
}

/* Growable lists of owned strings (keys, metadata) and of tensors to write. */
typedef struct {
    char **s;
    int n, cap;
} strs;

static void strs_push(strs *l, char *s) {
    if (l->n == l->cap) {
        int cap = l->cap ? l->cap * 2 : 32;
        char **p = realloc(l->s, sizeof *p * (size_t)cap);
        if (!p) ns_error("out of memory writing a checkpoint");
        l->s = p;
        l->cap = cap;
    }
    l->s[l->n++] = s;
}

static void strs_free(strs *l) {
    for (int i = 0; i < l->n; i++) free(l->s[i]);
    free(l->s);
}

typedef struct {
    ns_st_tensor *t;
    float **host;
    int n, cap;
    strs names;
} tlist;

static void tlist_add(tlist *l, char *name, const ns_tensor *t) {
    if (l->n == l->cap) {
        int cap = l->cap ? l->cap * 2 : 32;
        ns_st_tensor *p = realloc(l->t, sizeof *p * (size_t)cap);
        if (p) l->t = p;
        float **h = realloc(l->host, sizeof *h * (size_t)cap);
        if (h) l->host = h;
        if (!p || !h) ns_error("out of memory writing a checkpoint");
        l->cap = cap;
    }
    strs_push(&l->names, name);
    float *h = malloc(sizeof *h * (size_t)(t->numel ? t->numel : 1));
    if (!h) ns_error("out of memory copying '%s' for a checkpoint", name);
    if (t->numel) ns_tensor_get(t, h); /* any device */
    ns_st_tensor *st = &l->t[l->n];
    memset(st, 0, sizeof *st);
    st->name = name;
    st->ndim = t->ndim;
    for (int d = 0; d < t->ndim; d++) st->shape[d] = t->shape[d];
    st->data = h;
    l->host[l->n++] = h;
}

static void tlist_free(tlist *l) {
    for (int i = 0; i < l->n; i++) free(l->host[i]);
    free(l->host);
    free(l->t);
    strs_free(&l->names);
}

/* The model's parameters then buffers with their dotted names. */
typedef struct {
    ns_named_tensor *params, *buffers;
    int np, nb;
} model_tensors;

static model_tensors model_list(ns_module *m) {
    model_tensors mt;
    mt.params = ns_named_parameters(m, &mt.np);
    mt.buffers = ns_named_buffers(m, &mt.nb);
    return mt;
}

static ns_named_tensor *mt_get(const model_tensors *mt, int i) {
    return i < mt->np ? &mt->params[i] : &mt->buffers[i - mt->np];
}

static void mt_free(model_tensors *mt) {
    free(mt->params);
    free(mt->buffers);
}

/* Name of optimizer parameter i: its dotted name in the model, or "param<i>". */
static char *opt_param_name(const model_tensors *mt, const ns_optimizer *opt, int i) {
    ns_tensor *p = ns_optim_param(opt, i);
    for (int j = 0; j < mt->np; j++)
        if (mt->params[j].tensor == p) return xstrdup(mt->params[j].name);
    return fmt("param%d", i);
}

/* ------------------------------------------------------------------ save */

static void meta_add(strs *keys, strs *vals, char *k, char *v) {
    strs_push(keys, k);
    strs_push(vals, v);
}

bool ns_checkpoint_save(const char *path, ns_module *model, const ns_optimizer *opt,
                        const ns_ckpt_meta *meta, char *err, size_t errlen) {
    assert(path && model && model->magic == NS_MODULE_MAGIC);
    ns_ckpt_meta none = {.best_metric = NAN};
    if (!meta) meta = &none;
    tlist ts = {0};
    strs mk = {0}, mv = {0};
    model_tensors mt = model_list(model);

    for (int i = 0; i < mt.np + mt.nb; i++) {
        ns_named_tensor *e = mt_get(&mt, i);
        tlist_add(&ts, fmt("model.%s", e->name), e->tensor);
    }

    meta_add(&mk, &mv, xstrdup("format"), xstrdup(CKPT_FORMAT));
    meta_add(&mk, &mv, xstrdup("format_version"), xstrdup(CKPT_VERSION));
    meta_add(&mk, &mv, xstrdup("epoch"), fmt("%" PRId64, meta->epoch));
    meta_add(&mk, &mv, xstrdup("step"), fmt("%" PRId64, meta->step));
    meta_add(&mk, &mv, xstrdup("best_metric"), fmt("%.17g", meta->best_metric));
    uint64_t seed, counter;
    ns_rng_get_state(&seed, &counter);
    meta_add(&mk, &mv, xstrdup("rng.seed"), fmt("%" PRIu64, seed));
    meta_add(&mk, &mv, xstrdup("rng.counter"), fmt("%" PRIu64, counter));
    if (meta->has_loader) {
        char buf[512];
        ns_loader_state_format(&meta->loader, buf, sizeof buf);
        meta_add(&mk, &mv, xstrdup("loader"), xstrdup(buf));
    }

    if (opt) {
        meta_add(&mk, &mv, xstrdup("optim.kind"), xstrdup(ns_optim_kind_name(opt)));
        meta_add(&mk, &mv, xstrdup("optim.steps"), fmt("%" PRId64, ns_optim_steps(opt)));
        int ng = ns_optim_num_groups(opt);
        meta_add(&mk, &mv, xstrdup("optim.groups"), fmt("%d", ng));
        for (int g = 0; g < ng; g++) {
            const ns_optim_hparams *h = ns_optim_group((ns_optimizer *)opt, g);
            int count = 0;
            for (int i = 0; i < ns_optim_num_params(opt); i++)
                count += ns_optim_param_group(opt, i) == g;
            meta_add(&mk, &mv, fmt("optim.%d.params", g), fmt("%d", count));
            meta_add(&mk, &mv, fmt("optim.%d.lr", g), fmt("%.17g", h->lr));
            meta_add(&mk, &mv, fmt("optim.%d.weight_decay", g), fmt("%.17g", h->weight_decay));
            if (ns_optim_get_kind(opt) == NS_OPTIM_SGD) {
                meta_add(&mk, &mv, fmt("optim.%d.momentum", g), fmt("%.17g", h->momentum));
                meta_add(&mk, &mv, fmt("optim.%d.dampening", g), fmt("%.17g", h->dampening));
                meta_add(&mk, &mv, fmt("optim.%d.nesterov", g), fmt("%d", h->nesterov ? 1 : 0));
            } else {
                meta_add(&mk, &mv, fmt("optim.%d.beta1", g), fmt("%.17g", h->beta1));
                meta_add(&mk, &mv, fmt("optim.%d.beta2", g), fmt("%.17g", h->beta2));
                meta_add(&mk, &mv, fmt("optim.%d.eps", g), fmt("%.17g", h->eps));
            }
        }
        for (int i = 0; i < ns_optim_num_params(opt); i++) {
            char *name = opt_param_name(&mt, opt, i);
            int g = ns_optim_param_group(opt, i);
            meta_add(&mk, &mv, fmt("optim.%d.step.%s", g, name),
                     fmt("%" PRId64, ns_optim_param_steps(opt, i)));
            for (int k = 0; k < ns_optim_num_states(opt); k++) {
                const ns_tensor *s = ns_optim_state(opt, i, k);
                if (s)
                    tlist_add(&ts, fmt("optim.%d.%s.%s", g, ns_optim_state_name(opt, k), name), s);
            }
            free(name);
        }
    }

    bool ok = ns_safetensors_write(path, ts.t, ts.n, (const char *const *)mk.s,
                                   (const char *const *)mv.s, mk.n, err, errlen);
    tlist_free(&ts);
    strs_free(&mk);
    strs_free(&mv);
    mt_free(&mt);
    return ok;
}

/* ------------------------------------------------------------------ load */

static bool meta_i64(const ns_st_file *f, const char *path, const char *key, int64_t lo,
                     int64_t *out, char *err, size_t errlen) {
    const char *v = ns_st_meta(f, key);
    if (!v) return fail(err, errlen, "%s: checkpoint metadata lacks '%s'", path, key);
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (errno || end == v || *end || x < lo)
        return fail(err, errlen, "%s: checkpoint metadata '%s' is not a valid integer: '%.64s'",
                    path, key, v);
    *out = x;
    return true;
}

static bool meta_u64(const ns_st_file *f, const char *path, const char *key, uint64_t *out,
                     char *err, size_t errlen) {
    const char *v = ns_st_meta(f, key);
    if (!v) return fail(err, errlen, "%s: checkpoint metadata lacks '%s'", path, key);
    char *end;
    errno = 0;
    unsigned long long x = strtoull(v, &end, 10);
    if (errno || end == v || *end || v[0] == '-')
        return fail(err, errlen, "%s: checkpoint metadata '%s' is not a valid integer: '%.64s'",
                    path, key, v);
    *out = x;
    return true;
}

static bool meta_f64(const ns_st_file *f, const char *path, const char *key, double *out, char *err,
                     size_t errlen) {
    const char *v = ns_st_meta(f, key);
    if (!v) return fail(err, errlen, "%s: checkpoint metadata lacks '%s'", path, key);
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (end == v || *end)
        return fail(err, errlen, "%s: checkpoint metadata '%s' is not a number: '%.64s'", path, key,
                    v);
    *out = x;
    return true;
}

static bool same_shape(const ns_tensor *t, const ns_st_tensor *s) {
    if (t->ndim != s->ndim) return false;
    for (int d = 0; d < t->ndim; d++)
        if (t->shape[d] != s->shape[d]) return false;
    return true;
}

/* Appends to a bounded problem list "a, b, c" (the message stays readable). */
typedef struct {
    char buf[1024];
    int n;
} problems;

static void note(problems *p, const char *what) {
    size_t len = strlen(p->buf);
    if (p->n++ < 8)
        snprintf(p->buf + len, sizeof p->buf - len, "%s%s", len ? ", " : "", what);
    else if (p->n == 9)
        snprintf(p->buf + len, sizeof p->buf - len, ", ...");
}

/* What a load will apply once every check passed. */
typedef struct {
    const ns_st_tensor **model; /* per model tensor */
    int64_t *steps;             /* per optimizer param */
    const ns_st_tensor *(*state)[2];
    ns_optim_hparams *hp;
    int64_t opt_steps;
} plan;

static bool check_optimizer(const ns_st_file *f, const char *path, const model_tensors *mt,
                            ns_optimizer *opt, bool *used, plan *pl, char *err, size_t errlen) {
    const char *kind = ns_st_meta(f, "optim.kind");
    if (!kind)
        return fail(err, errlen, "%s: the checkpoint holds no optimizer state (saved without one)",
                    path);
    if (strcmp(kind, ns_optim_kind_name(opt)))
        return fail(err, errlen, "%s: the checkpoint holds %s state, the optimizer is %s", path,
                    kind, ns_optim_kind_name(opt));
    int64_t ng;
    if (!meta_i64(f, path, "optim.steps", 0, &pl->opt_steps, err, errlen)) return false;
    if (!meta_i64(f, path, "optim.groups", 1, &ng, err, errlen)) return false;
    if (ng != ns_optim_num_groups(opt))
        return fail(err, errlen,
                    "%s: the checkpoint's optimizer has %lld parameter groups, this "
                    "one %d",
                    path, (long long)ng, ns_optim_num_groups(opt));
    bool sgd = ns_optim_get_kind(opt) == NS_OPTIM_SGD;
    for (int g = 0; g < ng; g++) {
        char key[64];
        int64_t count, nest = 0;
        int have = 0;
        for (int i = 0; i < ns_optim_num_params(opt); i++)
            have += ns_optim_param_group(opt, i) == g;
        snprintf(key, sizeof key, "optim.%d.params", g);
        if (!meta_i64(f, path, key, 0, &count, err, errlen)) return false;
        if (count != have)
            return fail(err, errlen,
                        "%s: group %d of the checkpoint's optimizer has %lld "
                        "parameters, this one %d",
                        path, g, (long long)count, have);
        ns_optim_hparams *h = &pl->hp[g];
        *h = *ns_optim_group(opt, g);
        struct {
            const char *name;
            double *dst;
        } fs[] = {{"lr", &h->lr},
                  {"weight_decay", &h->weight_decay},
                  {sgd ? "momentum" : "beta1", sgd ? &h->momentum : &h->beta1},
                  {sgd ? "dampening" : "beta2", sgd ? &h->dampening : &h->beta2},
                  {sgd ? NULL : "eps", &h->eps}};
        for (size_t q = 0; q < sizeof fs / sizeof fs[0]; q++) {
            if (!fs[q].name) continue;
            snprintf(key, sizeof key, "optim.%d.%s", g, fs[q].name);
            if (!meta_f64(f, path, key, fs[q].dst, err, errlen)) return false;
        }
        if (sgd) {
            snprintf(key, sizeof key, "optim.%d.nesterov", g);
            if (!meta_i64(f, path, key, 0, &nest, err, errlen)) return false;
            h->nesterov = nest != 0;
        }
    }
    problems missing = {0};
    for (int i = 0; i < ns_optim_num_params(opt); i++) {
        char *name = opt_param_name(mt, opt, i);
        int g = ns_optim_param_group(opt, i);
        char *key = fmt("optim.%d.step.%s", g, name);
        bool ok = meta_i64(f, path, key, 0, &pl->steps[i], err, errlen);
        free(key);
        const ns_tensor *p = ns_optim_param(opt, i);
        for (int k = 0; ok && k < ns_optim_num_states(opt); k++) {
            key = fmt("optim.%d.%s.%s", g, ns_optim_state_name(opt, k), name);
            const ns_st_tensor *s = ns_st_find(f, key);
            pl->state[i][k] = s;
            if (s) {
                used[s - f->tensors] = true;
                if (!same_shape(p, s)) {
                    char want[64];
                    ns_shape_str(p, want, sizeof want);
                    ok = fail(err, errlen,
                              "%s: '%s' has %lld elements in the checkpoint, the "
                              "parameter is %s",
                              path, key, (long long)ns_st_numel(s), want);
                }
            } else if (!sgd && pl->steps[i] > 0) {
                note(&missing, key);
            }
            free(key);
        }
        free(name);
        if (!ok) return false;
    }
    if (missing.n)
        return fail(err, errlen, "%s: optimizer state missing from the checkpoint: %s", path,
                    missing.buf);
    return true;
}

bool ns_checkpoint_load(const char *path, ns_module *model, ns_optimizer *opt, ns_ckpt_meta *meta,
                        char *err, size_t errlen) {
    assert(path && model && model->magic == NS_MODULE_MAGIC);
    if (err && errlen) err[0] = 0;
    ns_st_file f;
    if (!ns_safetensors_read(path, &f, err, errlen)) return false;
    model_tensors mt = model_list(model);
    int nm = mt.np + mt.nb, np = opt ? ns_optim_num_params(opt) : 0;
    plan pl = {0};
    pl.model = calloc((size_t)nm + 1, sizeof *pl.model);
    pl.steps = calloc((size_t)np + 1, sizeof *pl.steps);
    pl.state = calloc((size_t)np + 1, sizeof *pl.state);
    pl.hp = calloc((size_t)(opt ? ns_optim_num_groups(opt) : 0) + 1, sizeof *pl.hp);
    bool *used = calloc((size_t)f.n + 1, sizeof *used);
    if (!pl.model || !pl.steps || !pl.state || !pl.hp || !used)
        ns_error("out of memory loading %s", path);

    ns_ckpt_meta m = {0};
    uint64_t seed = 0, counter = 0;
    bool ok = true;
    const char *format = ns_st_meta(&f, "format");
    const char *version = ns_st_meta(&f, "format_version");
    if (!format || strcmp(format, CKPT_FORMAT))
        ok = fail(err, errlen,
                  "%s: not an nnscope training checkpoint (no format '%s' in "
                  "__metadata__; a plain state_dict loads with ns_load_state_dict())",
                  path, CKPT_FORMAT);
    else if (!version || strcmp(version, CKPT_VERSION))
        ok = fail(err, errlen,
                  "%s: checkpoint format version '%s' is not supported (this nnscope "
                  "reads version %s)",
                  path, version ? version : "(none)", CKPT_VERSION);
    ok = ok && meta_i64(&f, path, "epoch", 0, &m.epoch, err, errlen) &&
         meta_i64(&f, path, "step", 0, &m.step, err, errlen) &&
         meta_f64(&f, path, "best_metric", &m.best_metric, err, errlen) &&
         meta_u64(&f, path, "rng.seed", &seed, err, errlen) &&
         meta_u64(&f, path, "rng.counter", &counter, err, errlen);
    const char *loader = ns_st_meta(&f, "loader");
    if (ok && loader) {
        char why[256];
        m.has_loader = ns_loader_state_parse(loader, &m.loader, why, sizeof why);
        if (!m.has_loader)
            ok = fail(err, errlen, "%s: checkpoint metadata 'loader': %s", path, why);
    }

    /* Model: strict, every problem listed. */
    if (ok) {
        problems missing = {0}, unexpected = {0}, shapes = {0};
        for (int i = 0; i < nm; i++) {
            ns_named_tensor *e = mt_get(&mt, i);
            char *key = fmt("model.%s", e->name);
            const ns_st_tensor *s = ns_st_find(&f, key);
            if (!s) {
                note(&missing, e->name);
            } else {
                used[s - f.tensors] = true;
                if (same_shape(e->tensor, s)) {
                    pl.model[i] = s;
                } else {
                    char want[64], line[256];
                    ns_shape_str(e->tensor, want, sizeof want);
                    snprintf(line, sizeof line, "%s (model %s, file %lld elements)", e->name, want,
                             (long long)ns_st_numel(s));
                    note(&shapes, line);
                }
            }
            free(key);
        }
        for (int j = 0; j < f.n; j++)
            if (!used[j] && !strncmp(f.tensors[j].name, "model.", 6))
                note(&unexpected, f.tensors[j].name + 6);
        if (missing.n || unexpected.n || shapes.n)
            ok = fail(err, errlen, "%s: the checkpoint does not fit the model %s:%s%s%s%s%s%s",
                      path, model->type, missing.n ? " missing keys: " : "", missing.buf,
                      unexpected.n ? "; unexpected keys: " : "", unexpected.buf,
                      shapes.n ? "; shape mismatches: " : "", shapes.buf);
    }
    if (ok && opt) ok = check_optimizer(&f, path, &mt, opt, used, &pl, err, errlen);
    if (ok) {
        problems unexpected = {0};
        for (int j = 0; j < f.n; j++) {
            const char *nmj = f.tensors[j].name;
            bool optim = !strncmp(nmj, "optim.", 6);
            if (!used[j] && (!optim || opt)) note(&unexpected, nmj);
        }
        if (unexpected.n)
            ok = fail(err, errlen, "%s: unexpected tensors in the checkpoint: %s", path,
                      unexpected.buf);
    }

    if (ok) {
        for (int i = 0; i < nm; i++)
            if (pl.model[i]->data) ns_tensor_set(mt_get(&mt, i)->tensor, pl.model[i]->data);
        if (opt) {
            for (int g = 0; g < ns_optim_num_groups(opt); g++) *ns_optim_group(opt, g) = pl.hp[g];
            for (int i = 0; i < np; i++) {
                const float *st[2] = {pl.state[i][0] ? pl.state[i][0]->data : NULL,
                                      pl.state[i][1] ? pl.state[i][1]->data : NULL};
                ns_optim_set_param_state(opt, i, pl.steps[i], st);
            }
            ns_optim_set_steps(opt, pl.opt_steps);
        }
        ns_rng_set_state(seed, counter);
        if (meta) *meta = m;
    }
    free(pl.model);
    free(pl.steps);
    free(pl.state);
    free(pl.hp);
    free(used);
    mt_free(&mt);
    ns_st_file_free(&f);
    return ok;
}
