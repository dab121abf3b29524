/* state_dict as safetensors files: every parameter and buffer under its dotted name, copied
 * to/from the host whatever the tensor's device. The file format lives in src/io; this file
 * maps module trees onto it and reports load mismatches the way PyTorch does. */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "nnscope/io.h"

/* ------------------------------------------------------------------ keys in PyTorch's order */

typedef struct {
    char *key;
    ns_tensor *t;
} entry;

typedef struct {
    entry *e;
    int n, cap;
} entries;

static void add_entry(entries *es, const char *prefix, const char *name, ns_tensor *t) {
    if (es->n == es->cap) {
        int cap = es->cap ? es->cap * 2 : 32;
        entry *p = realloc(es->e, sizeof *p * (size_t)cap);
        if (!p) ns_error("out of memory listing the state_dict");
        es->e = p;
        es->cap = cap;
    }
    size_t len = strlen(prefix) + strlen(name) + 2;
    char *k = malloc(len);
    if (!k) ns_error("out of memory listing the state_dict");
    snprintf(k, len, "%s%s%s", prefix, prefix[0] ? "." : "", name);
    es->e[es->n++] = (entry){k, t};
}

/* Module.state_dict() order: a module's parameters, then its buffers, then each child. */
static void gather(ns_module *m, const char *prefix, entries *es) {
    for (int i = 0; i < m->n_params; i++)
        add_entry(es, prefix, m->params[i].name, m->params[i].tensor);
    for (int i = 0; i < m->n_buffers; i++)
        add_entry(es, prefix, m->buffers[i].name, m->buffers[i].tensor);
    for (int i = 0; i < m->n_children; i++) {
        size_t len = strlen(prefix) + strlen(m->children[i].name) + 2;
        char *p = malloc(len);
        if (!p) ns_error("out of memory listing the state_dict");
        snprintf(p, len, "%s%s%s", prefix, prefix[0] ? "." : "", m->children[i].name);
        gather(m->children[i].module, p, es);
        free(p);
    }
}

static void entries_free(entries *es) {
    for (int i = 0; i < es->n; i++) free(es->e[i].key);
    free(es->e);
}

/* ------------------------------------------------------------------ save */

bool ns_save_state_dict(ns_module *m, const char *path, char *err, size_t errlen) {
    assert(m && m->magic == NS_MODULE_MAGIC && path);
    entries es = {0};
    gather(m, "", &es);
    ns_st_tensor *ts = calloc((size_t)es.n + 1, sizeof *ts);
    float **host = calloc((size_t)es.n + 1, sizeof *host);
    bool ok = ts && host;
    if (!ok && err && errlen)
        snprintf(err, errlen, "%s: out of memory preparing the state_dict", path);
    for (int i = 0; ok && i < es.n; i++) {
        ns_tensor *t = es.e[i].t;
        ts[i].name = es.e[i].key;
        ts[i].ndim = t->ndim;
        for (int d = 0; d < t->ndim; d++) ts[i].shape[d] = t->shape[d];
        if (t->numel) {
            host[i] = malloc((size_t)t->numel * sizeof(float));
            if (!host[i]) {
                if (err && errlen)
                    snprintf(err, errlen, "%s: out of memory copying '%s' to the host", path,
                             es.e[i].key);
                ok = false;
                break;
            }
            ns_tensor_get(t, host[i]); /* any device: copied to the host */
        }
        ts[i].data = host[i];
    }
    if (ok) ok = ns_safetensors_write(path, ts, es.n, NULL, NULL, 0, err, errlen);
    for (int i = 0; host && i < es.n; i++) free(host[i]);
    free(host);
    free(ts);
    entries_free(&es);
    return ok;
}

/* ------------------------------------------------------------------ load */

static bool same_shape(const ns_tensor *t, const ns_st_tensor *s) {
    if (t->ndim != s->ndim) return false;
    for (int d = 0; d < t->ndim; d++)
        if (t->shape[d] != s->shape[d]) return false;
    return true;
}

/* "256x784" ("scalar" for 0 dims), as ns_shape_str() writes tensors. */
static void st_shape_str(const ns_st_tensor *s, char *buf, size_t n) {
    size_t off = 0;
    buf[0] = 0;
    if (!s->ndim) snprintf(buf, n, "scalar");
    for (int d = 0; d < s->ndim && off < n; d++)
        off += (size_t)snprintf(buf + off, n - off, d ? "x%lld" : "%lld", (long long)s->shape[d]);
}

/* PyTorch's "[256, 784]" (torch.Size without the prefix); "[]" for 0 dims. */
static void py_shape(int ndim, const int64_t *shape, char *buf, size_t n) {
    size_t off = (size_t)snprintf(buf, n, "[");
    for (int d = 0; d < ndim && off < n; d++)
        off += (size_t)snprintf(buf + off, n - off, d ? ", %lld" : "%lld", (long long)shape[d]);
    if (off < n) snprintf(buf + off, n - off, "]");
}

/* Growable text for the error message and the event JSON. */
typedef struct {
    char *s;
    size_t n, cap;
} text;

static void put(text *t, const char *s) {
    size_t len = strlen(s);
    if (t->n + len + 1 > t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 512;
        while (cap < t->n + len + 1) cap *= 2;
        char *p = realloc(t->s, cap);
        if (!p) ns_error("out of memory reporting a state_dict load");
        t->s = p;
        t->cap = cap;
    }
    memcpy(t->s + t->n, s, len + 1);
    t->n += len;
}

static void put_json_str(text *t, const char *s) {
    put(t, "\"");
    for (; *s; s++) {
        char c[8] = {*s, 0};
        if (*s == '"' || *s == '\\')
            snprintf(c, sizeof c, "\\%c", *s);
        else if ((unsigned char)*s < 0x20)
            snprintf(c, sizeof c, "\\u%04x", (unsigned char)*s);
        put(t, c);
    }
    put(t, "\"");
}

static char *xstrdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *p = malloc(n);
    if (!p) ns_error("out of memory reporting a state_dict load");
    return memcpy(p, s, n);
}

static void push_str(char ***arr, int *n, const char *s) {
    char **p = realloc(*arr, sizeof *p * (size_t)(*n + 1));
    if (!p) ns_error("out of memory reporting a state_dict load");
    *arr = p;
    p[(*n)++] = xstrdup(s);
}

void ns_load_report_free(ns_load_report *r) {
    if (!r) return;
    for (int i = 0; i < r->n_missing; i++) free(r->missing[i]);
    for (int i = 0; i < r->n_unexpected; i++) free(r->unexpected[i]);
    for (int i = 0; i < r->n_mismatched; i++) free(r->mismatched[i]);
    free(r->missing);
    free(r->unexpected);
    free(r->mismatched);
    memset(r, 0, sizeof *r);
}

bool ns_load_state_dict(ns_module *m, const char *path, bool strict, ns_load_report *report,
                        char *err, size_t errlen) {
    assert(m && m->magic == NS_MODULE_MAGIC && path);
    if (report) memset(report, 0, sizeof *report);
    if (err && errlen) err[0] = 0;
    ns_st_file f;
    if (!ns_safetensors_read(path, &f, err, errlen)) return false;

    entries es = {0};
    gather(m, "", &es);
    const ns_st_tensor **match = calloc((size_t)es.n + 1, sizeof *match);
    bool *used = calloc((size_t)f.n + 1, sizeof *used);
    if (!match || !used) ns_error("out of memory loading %s", path);

    ns_load_report r = {0};
    text json = {0}, miss = {0}, unexp = {0}, size = {0};
    put(&json, "{\"file\":");
    put_json_str(&json, path);
    put(&json, strict ? ",\"strict\":1,\"missing\":[" : ",\"strict\":0,\"missing\":[");
    put(&miss, "");
    put(&unexp, "");
    put(&size, "");
    for (int i = 0; i < es.n; i++) {
        const ns_st_tensor *s = ns_st_find(&f, es.e[i].key);
        if (s) used[s - f.tensors] = true;
        if (!s) {
            push_str(&r.missing, &r.n_missing, es.e[i].key);
            if (r.n_missing > 1) put(&json, ",");
            put_json_str(&json, es.e[i].key);
            put(&miss, r.n_missing > 1 ? ", \"" : "\"");
            put(&miss, es.e[i].key);
            put(&miss, "\"");
        } else if (!same_shape(es.e[i].t, s)) {
            (void)0; /* listed below, after missing and unexpected */
        } else {
            match[i] = s;
        }
    }
    put(&json, "],\"unexpected\":[");
    for (int j = 0; j < f.n; j++) {
        if (used[j]) continue;
        push_str(&r.unexpected, &r.n_unexpected, f.tensors[j].name);
        if (r.n_unexpected > 1) put(&json, ",");
        put_json_str(&json, f.tensors[j].name);
        put(&unexp, r.n_unexpected > 1 ? ", \"" : "\"");
        put(&unexp, f.tensors[j].name);
        put(&unexp, "\"");
    }
    put(&json, "],\"shape_mismatch\":[");
    for (int i = 0; i < es.n; i++) {
        const ns_st_tensor *s = ns_st_find(&f, es.e[i].key);
        if (!s || match[i]) continue;
        char want[64], got[64], pw[96], pg[96], line[512];
        ns_shape_str(es.e[i].t, want, sizeof want);
        st_shape_str(s, got, sizeof got);
        snprintf(line, sizeof line, "%s: model %s, file %s", es.e[i].key, want, got);
        push_str(&r.mismatched, &r.n_mismatched, line);
        if (r.n_mismatched > 1) put(&json, ",");
        put(&json, "{\"key\":");
        put_json_str(&json, es.e[i].key);
        snprintf(line, sizeof line, ",\"expected\":\"%s\",\"got\":\"%s\"}", want, got);
        put(&json, line);
        py_shape(es.e[i].t->ndim, es.e[i].t->shape, pw, sizeof pw);
        py_shape(s->ndim, s->shape, pg, sizeof pg);
        snprintf(line, sizeof line,
                 "\n\tsize mismatch for %s: copying a param with shape %s from checkpoint, the "
                 "shape in current model is %s.",
                 es.e[i].key, pg, pw);
        put(&size, line);
    }
    put(&json, "]}");
    int problems = r.n_missing + r.n_unexpected + r.n_mismatched;

    bool ok = !(strict && problems);
    if (ok) {
        for (int i = 0; i < es.n; i++)
            if (match[i] && es.e[i].t->numel) ns_tensor_set(es.e[i].t, match[i]->data);
    } else if (err && errlen) {
        /* PyTorch's text: missing, then unexpected, then each size mismatch. */
        char type[128];
        snprintf(type, sizeof type, "%s", m->type);
        snprintf(err, errlen, "Error(s) in loading state_dict for %s from %s:%s%s%s%s%s%s%s", type,
                 path, r.n_missing ? "\n\tMissing key(s) in state_dict: " : "", miss.s,
                 r.n_missing ? ". " : "",
                 r.n_unexpected ? "\n\tUnexpected key(s) in state_dict: " : "", unexp.s,
                 r.n_unexpected ? ". " : "", size.s);
    }

    ns_event ev = {.kind = NS_EV_STATE_DICT_LOAD, .module = m, .detail = json.s, .count = problems};
    ns_emit_event(&ev);

    if (report)
        *report = r;
    else
        ns_load_report_free(&r);
    free(json.s);
    free(miss.s);
    free(unexp.s);
    free(size.s);
    free(match);
    free(used);
    entries_free(&es);
    ns_st_file_free(&f);
    return ok;
}
