/* Module tree (PyTorch's nn.Module contract): init, registration of children / parameters /
 * buffers, walks with dotted names, modes, devices, repr and labels; ns_call() and the
 * per-thread call stack that error messages, the tape and the recorder read. */
#include <assert.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"

static atomic_uint_fast64_t g_next_module_id = 1;
static atomic_uint_fast64_t g_next_call_id = 1;

/* ------------------------------------------------------------------ small helpers */

static char *xstrdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *p = malloc(n);
    if (!p) ns_error("out of memory copying the name '%s'", s);
    return memcpy(p, s, n);
}

/* Grows *arr (elements of size elem) so that one more fits. */
static void grow(void **arr, int n, int *cap, size_t elem) {
    if (n < *cap) return;
    int c = *cap ? *cap * 2 : 4;
    void *p = realloc(*arr, elem * (size_t)c);
    if (!p) ns_error("out of memory registering a module member");
    *arr = p;
    *cap = c;
}

/* A growable string for repr and paths. */
typedef struct {
    char *s;
    size_t n, cap;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t len) {
    if (b->n + len + 1 > b->cap) {
        size_t c = b->cap ? b->cap * 2 : 256;
        while (c < b->n + len + 1) c *= 2;
        char *p = realloc(b->s, c);
        if (!p) ns_error("out of memory building a module description");
        b->s = p;
        b->cap = c;
    }
    memcpy(b->s + b->n, s, len);
    b->n += len;
    b->s[b->n] = 0;
}

static void sb_str(sbuf *b, const char *s) {
    sb_put(b, s, strlen(s));
}

/* ------------------------------------------------------------------ call stack
 * Frames live in fixed blocks that never move, so ns_current_call() pointers stay valid for
 * the whole call even when nested calls add blocks. */

typedef struct {
    ns_module *m;
    ns_call_info info;
} frame;

#define FRAMES_PER_BLOCK 64
static _Thread_local frame **g_blocks;
static _Thread_local int g_nblocks;
static _Thread_local int g_depth;

static frame *frame_at(int d) {
    return &g_blocks[d / FRAMES_PER_BLOCK][d % FRAMES_PER_BLOCK];
}

static frame *push_frame(void) {
    if (g_depth / FRAMES_PER_BLOCK >= g_nblocks) {
        frame **b = realloc(g_blocks, sizeof *b * (size_t)(g_nblocks + 1));
        if (!b) ns_error("out of memory growing the module call stack");
        g_blocks = b;
        g_blocks[g_nblocks] = malloc(sizeof(frame) * FRAMES_PER_BLOCK);
        if (!g_blocks[g_nblocks]) ns_error("out of memory growing the module call stack");
        g_nblocks++;
    }
    return frame_at(g_depth++);
}

void ns_call_stack_reset(void) {
    g_depth = 0;
}

const ns_call_info *ns_current_call(void) {
    return g_depth ? &frame_at(g_depth - 1)->info : NULL;
}

ns_module *ns_module_current(void) {
    return g_depth ? frame_at(g_depth - 1)->m : NULL;
}

static double monotonic_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ------------------------------------------------------------------ init */

void ns_module_init(ns_module *m, const char *type, ns_forward_fn forward) {
    assert(m && type);
    /* No check for a second init: m may be uninitialised malloc memory, which must not be read. */
    memset(m, 0, sizeof *m);
    m->magic = NS_MODULE_MAGIC;
    m->type = type;
    m->forward = forward;
    m->training = true;
    m->id = atomic_fetch_add(&g_next_module_id, 1);
    ns_module *cur = ns_module_current();
    if (cur) {
        m->created_in_forward = true;
        m->creator = cur;
    }
    ns_event ev = {.kind = NS_EV_MODULE_CREATED, .module = m, .other = cur};
    ns_emit_event(&ev);
}

/* Reports a module used before ns_module_init(): NS_EV_UNINITIALISED with the full message
 * (module NULL: the struct holds no valid data), then the error. */
static _Noreturn void uninitialised(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static _Noreturn void uninitialised(const char *fmt, ...) {
    char body[1024], ctx[512], full[1600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(body, sizeof body, fmt, ap);
    va_end(ap);
    const char *where = ns_module_context(ctx, sizeof ctx);
    snprintf(full, sizeof full, "%s%s%s", where ? where : "", where ? ": " : "", body);
    ns_event ev = {.kind = NS_EV_UNINITIALISED, .detail = full};
    ns_emit_event(&ev);
    ns_error("%s", body);
}

#define INIT_FIX "call ns_module_init() first (the counterpart of super().__init__())"

/* ------------------------------------------------------------------ paths and labels */

static size_t path_into(const ns_module *m, char *buf, size_t n) {
    if (!m->parent) {
        if (n) buf[0] = 0;
        return 0;
    }
    size_t off = path_into(m->parent, buf, n);
    int w = snprintf(buf + (off < n ? off : n), off < n ? n - off : 0, "%s%s", off ? "." : "",
                     m->name_in_parent);
    return off + (size_t)(w > 0 ? w : 0);
}

char *ns_module_path(const ns_module *m, char *buf, size_t n) {
    assert(buf && n);
    path_into(m, buf, n);
    return buf;
}

ns_module *ns_module_root(ns_module *m) {
    while (m->parent) m = m->parent;
    return m;
}

/* "Linear 256->10": type plus the module's brief text. */
static void type_desc(const ns_module *m, char *buf, size_t n) {
    char brief[160] = "";
    if (m->brief) m->brief(m, brief, sizeof brief);
    snprintf(buf, n, "%s%s%s", m->type, brief[0] ? " " : "", brief);
}

/* The path of m as a user reads it. Registered modules: their dotted path. A module whose root
 * is running inside a model without being registered in it is shown under its caller, like the
 * recorder's paths: "blocks.(unregistered Linear 256->10)" (root caller: no prefix). */
static void display_path(const ns_module *m, int below, sbuf *out) {
    ns_module *r = ns_module_root((ns_module *)m);
    char rel[512];
    ns_module_path(m, rel, sizeof rel);
    int at = -1;
    /* Only frames below `below` can hold the root: the recursion goes strictly down the stack. */
    for (int d = below - 1; d > 0; d--)
        if (frame_at(d)->m == r) {
            at = d;
            break;
        }
    if (at > 0 && r != ns_module_root(frame_at(0)->m)) {
        display_path(frame_at(at - 1)->m, at, out);
        char td[256];
        type_desc(r, td, sizeof td);
        if (out->n) sb_str(out, ".");
        sb_str(out, "(unregistered ");
        sb_str(out, td);
        sb_str(out, ")");
        if (rel[0]) {
            sb_str(out, ".");
            sb_str(out, rel);
        }
        return;
    }
    sb_str(out, rel);
}

char *ns_module_label(const ns_module *m, char *buf, size_t n) {
    assert(buf && n);
    sbuf p = {0};
    sb_str(&p, "");
    display_path(m, g_depth, &p);
    char td[256];
    type_desc(m, td, sizeof td);
    if (!p.n)
        snprintf(buf, n, "%s", td);
    else if (!m->parent)
        snprintf(buf, n, "%s", p.s); /* unregistered root: type shown */
    else
        snprintf(buf, n, "%s (%s)", p.s, td);
    free(p.s);
    return buf;
}

const char *ns_module_context(char *buf, size_t n) {
    if (!g_depth) return NULL;
    return ns_module_label(frame_at(g_depth - 1)->m, buf, n);
}

/* ------------------------------------------------------------------ registration */

/* Sets the dotted names of every parameter and buffer under m (after m got a new place). The
 * names are owned by the registering module; see ns_register_parameter_. */
static void rename_tensors(ns_module *m) {
    char path[512];
    ns_module_path(m, path, sizeof path);
    for (int pass = 0; pass < 2; pass++) {
        ns_named_tensor *arr = pass ? m->buffers : m->params;
        int cnt = pass ? m->n_buffers : m->n_params;
        for (int i = 0; i < cnt; i++) {
            size_t len = strlen(path) + strlen(arr[i].name) + 2;
            char *s = malloc(len);
            if (!s) ns_error("out of memory naming a parameter");
            snprintf(s, len, "%s%s%s", path, path[0] ? "." : "", arr[i].name);
            free((char *)arr[i].tensor->name);
            arr[i].tensor->name = s;
        }
    }
    for (int i = 0; i < m->n_children; i++) rename_tensors(m->children[i].module);
}

/* Errors unless name is a valid, unused member name of m. */
static void check_name(ns_module *m, const char *name, const char *what) {
    char lab[512];
    if (!name || !name[0])
        ns_error("cannot register a %s on %s: the name is empty (PyTorch: KeyError)", what,
                 ns_module_label(m, lab, sizeof lab));
    if (strchr(name, '.'))
        ns_error("cannot register %s '%s' on %s: names can't contain \".\" (PyTorch: KeyError)",
                 what, name, ns_module_label(m, lab, sizeof lab));
    const char *kind = NULL;
    for (int i = 0; i < m->n_children && !kind; i++)
        if (!strcmp(m->children[i].name, name)) kind = "child module";
    for (int i = 0; i < m->n_params && !kind; i++)
        if (!strcmp(m->params[i].name, name)) kind = "parameter";
    for (int i = 0; i < m->n_buffers && !kind; i++)
        if (!strcmp(m->buffers[i].name, name)) kind = "buffer";
    if (kind)
        ns_error("cannot register %s '%s' on %s: it already has a %s named '%s'; names of "
                 "children, parameters and buffers must be unique",
                 what, name, ns_module_label(m, lab, sizeof lab), kind, name);
}

static bool tree_holds_tensor(const ns_module *m, const ns_tensor *t, const ns_module **owner) {
    for (int i = 0; i < m->n_params; i++)
        if (m->params[i].tensor == t) return *owner = m, true;
    for (int i = 0; i < m->n_buffers; i++)
        if (m->buffers[i].tensor == t) return *owner = m, true;
    for (int i = 0; i < m->n_children; i++)
        if (tree_holds_tensor(m->children[i].module, t, owner)) return true;
    return false;
}

void ns_register_module_(ns_module *m, const char *name, ns_module *child, const char *expr) {
    char lab[512], lab2[512];
    const char *nm = name ? name : "(null)";
    if (!m) ns_error("cannot register child '%s' on %s: the module pointer is NULL", nm, expr);
    if (m->magic != NS_MODULE_MAGIC) {
        if (child && child->magic == NS_MODULE_MAGIC)
            uninitialised(
                "cannot register child '%s' (%s) on %s: %s was never initialised; " INIT_FIX, nm,
                child->type, expr, expr);
        uninitialised("cannot register child '%s' on %s: %s was never initialised; " INIT_FIX, nm,
                      expr, expr);
    }
    if (!child)
        ns_error("cannot register child '%s' on %s: the child is NULL", nm,
                 ns_module_label(m, lab, sizeof lab));
    if (child->magic != NS_MODULE_MAGIC)
        uninitialised("cannot register child '%s' on %s: the child module was never initialised; "
                      "call ns_module_init() on it first (the counterpart of super().__init__())",
                      nm, ns_module_label(m, lab, sizeof lab));
    check_name(m, name, "child module");
    if (child->parent)
        ns_error("cannot register child '%s' (%s) on %s: it is already registered as %s; a module "
                 "has one parent",
                 name, child->type, ns_module_label(m, lab, sizeof lab),
                 ns_module_label(child, lab2, sizeof lab2));
    for (const ns_module *a = m; a; a = a->parent)
        if (a == child)
            ns_error("cannot register child '%s' (%s) on %s: the child is that module or one of "
                     "its ancestors (a cycle)",
                     name, child->type, ns_module_label(m, lab, sizeof lab));
    grow((void **)&m->children, m->n_children, &m->cap_children, sizeof *m->children);
    char *copy = xstrdup(name);
    m->children[m->n_children++] = (ns_named_module){copy, child};
    child->parent = m;
    child->name_in_parent = copy;
    child->owned_by_parent = true;
    rename_tensors(child);
}

static void register_tensor(ns_module *m, const char *name, ns_tensor *t, const char *expr,
                            bool buffer) {
    const char *what = buffer ? "buffer" : "parameter";
    const char *nm = name ? name : "(null)";
    char lab[512], shape[64] = "";
    if (!m) ns_error("cannot register %s '%s' on %s: the module pointer is NULL", what, nm, expr);
    if (t) ns_shape_str(t, shape, sizeof shape);
    if (m->magic != NS_MODULE_MAGIC)
        uninitialised("cannot register %s '%s'%s%s%s on %s: %s was never initialised; " INIT_FIX,
                      what, nm, t ? " [" : "", shape, t ? "]" : "", expr, expr);
    ns_module_label(m, lab, sizeof lab);
    if (!t) ns_error("cannot register %s '%s' on %s: the tensor is NULL", what, nm, lab);
    if (!t->persistent)
        ns_error("cannot register %s '%s' [%s] on %s: it is a step-scope tensor (an op result or "
                 "ns_tmp()); %ss must be long-lived: create them with ns_tensor_new()",
                 what, nm, shape, lab, what);
    if (t->dtype != NS_F32)
        ns_error("cannot register %s '%s' [%s] on %s: %ss must be float32 tensors", what, nm, shape,
                 lab, what);
    if (t->grad_fn)
        ns_error("cannot register %s '%s' [%s] on %s: it is not a leaf tensor", what, nm, shape,
                 lab);
    check_name(m, name, what);
    const ns_module *owner = NULL;
    if (tree_holds_tensor(ns_module_root(m), t, &owner)) {
        char lab2[512];
        ns_error("cannot register %s '%s' [%s] on %s: that tensor is already registered in this "
                 "model (in %s as '%s'); a tensor has one owner",
                 what, name, shape, lab, ns_module_label(owner, lab2, sizeof lab2),
                 t->name ? t->name : "?");
    }
    ns_named_tensor **arr = buffer ? &m->buffers : &m->params;
    int *cnt = buffer ? &m->n_buffers : &m->n_params;
    int *cap = buffer ? &m->cap_buffers : &m->cap_params;
    grow((void **)arr, *cnt, cap, sizeof **arr);
    (*arr)[(*cnt)++] = (ns_named_tensor){xstrdup(name), t};
    t->requires_grad = !buffer;
    /* From here on the module owns t->name (a caller's earlier name is not freed). */
    t->name = NULL;
    char path[512];
    ns_module_path(m, path, sizeof path);
    size_t len = strlen(path) + strlen(name) + 2;
    char *s = malloc(len);
    if (!s) ns_error("out of memory naming a parameter");
    snprintf(s, len, "%s%s%s", path, path[0] ? "." : "", name);
    t->name = s;
}

void ns_register_parameter_(ns_module *m, const char *name, ns_tensor *t, const char *expr) {
    register_tensor(m, name, t, expr, false);
}

void ns_register_buffer_(ns_module *m, const char *name, ns_tensor *t, const char *expr) {
    register_tensor(m, name, t, expr, true);
}

/* ------------------------------------------------------------------ free */

static void free_tree(ns_module *m) {
    ns_event ev = {.kind = NS_EV_MODULE_FREED, .module = m};
    ns_emit_event(&ev);
    if (m->destroy) m->destroy(m);
    for (int i = 0; i < m->n_children; i++) {
        ns_module *c = m->children[i].module;
        c->parent = NULL;
        free_tree(c);
        free(m->children[i].name);
    }
    for (int pass = 0; pass < 2; pass++) {
        ns_named_tensor *arr = pass ? m->buffers : m->params;
        int cnt = pass ? m->n_buffers : m->n_params;
        for (int i = 0; i < cnt; i++) {
            free((char *)arr[i].tensor->name);
            arr[i].tensor->name = NULL;
            ns_tensor_free(arr[i].tensor);
            free(arr[i].name);
        }
    }
    ns_hooks_forget_owner(m);
    free(m->children);
    free(m->params);
    free(m->buffers);
    m->magic = 0; /* a later use reads as "never initialised" instead of garbage */
    free(m);
}

void ns_module_free(ns_module *m) {
    if (!m) return;
    assert(m->magic == NS_MODULE_MAGIC && "ns_module_free on a module that is not initialised");
    assert(!m->parent && "ns_module_free on a registered child: free its root instead");
    for (int d = 0; d < g_depth; d++)
        assert(frame_at(d)->m != m && "ns_module_free on a running module");
    free_tree(m);
}

/* ------------------------------------------------------------------ walks */

typedef struct {
    bool fill;
    int n;
    size_t chars;
    ns_named_tensor *tout;
    ns_named_module *mout;
    char *str;
} collect;

/* Appends prefix.name (or name when prefix is empty) as a collected entry name. */
static char *collect_name(collect *c, const char *prefix, const char *name) {
    size_t len = strlen(prefix) + (prefix[0] && name[0] ? 1 : 0) + strlen(name) + 1;
    c->chars += len;
    if (!c->fill) return NULL;
    char *s = c->str;
    snprintf(s, len, "%s%s%s", prefix, prefix[0] && name[0] ? "." : "", name);
    c->str += len;
    return s;
}

static char *child_prefix(const char *prefix, const char *name) {
    size_t len = strlen(prefix) + strlen(name) + 2;
    char *s = malloc(len);
    if (!s) ns_error("out of memory walking a module tree");
    snprintf(s, len, "%s%s%s", prefix, prefix[0] ? "." : "", name);
    return s;
}

/* PyTorch order: named_modules() pre-order, and each module's own tensors in registration
 * order. */
static void collect_tensors(ns_module *m, const char *prefix, bool buffers, collect *c) {
    ns_named_tensor *arr = buffers ? m->buffers : m->params;
    int cnt = buffers ? m->n_buffers : m->n_params;
    for (int i = 0; i < cnt; i++) {
        char *s = collect_name(c, prefix, arr[i].name);
        if (c->fill) c->tout[c->n] = (ns_named_tensor){s, arr[i].tensor};
        c->n++;
    }
    for (int i = 0; i < m->n_children; i++) {
        char *p = child_prefix(prefix, m->children[i].name);
        collect_tensors(m->children[i].module, p, buffers, c);
        free(p);
    }
}

static void collect_modules(ns_module *m, const char *prefix, collect *c) {
    char *s = collect_name(c, prefix, "");
    if (c->fill) c->mout[c->n] = (ns_named_module){s, m};
    c->n++;
    for (int i = 0; i < m->n_children; i++) {
        char *p = child_prefix(prefix, m->children[i].name);
        collect_modules(m->children[i].module, p, c);
        free(p);
    }
}

static void *walk(ns_module *m, int kind, int *n) {
    assert(m && m->magic == NS_MODULE_MAGIC);
    size_t elem = kind == 2 ? sizeof(ns_named_module) : sizeof(ns_named_tensor);
    collect c = {0};
    if (kind == 2)
        collect_modules(m, "", &c);
    else
        collect_tensors(m, "", kind == 1, &c);
    size_t head = elem * (size_t)c.n;
    char *block = malloc(head + c.chars + 1);
    if (!block) ns_error("out of memory walking a module tree");
    collect f = {.fill = true, .str = block + head};
    f.tout = (ns_named_tensor *)(void *)block;
    f.mout = (ns_named_module *)(void *)block;
    if (kind == 2)
        collect_modules(m, "", &f);
    else
        collect_tensors(m, "", kind == 1, &f);
    if (n) *n = f.n;
    return block;
}

ns_named_tensor *ns_named_parameters(ns_module *m, int *n) {
    return walk(m, 0, n);
}

ns_named_tensor *ns_named_buffers(ns_module *m, int *n) {
    return walk(m, 1, n);
}

ns_named_module *ns_named_modules(ns_module *m, int *n) {
    return walk(m, 2, n);
}

const ns_named_module *ns_children(ns_module *m, int *n) {
    *n = m->n_children;
    return m->children;
}

static int64_t count_params(const ns_module *m, bool trainable_only) {
    int64_t s = 0;
    for (int i = 0; i < m->n_params; i++)
        if (!trainable_only || m->params[i].tensor->requires_grad) s += m->params[i].tensor->numel;
    for (int i = 0; i < m->n_children; i++)
        s += count_params(m->children[i].module, trainable_only);
    return s;
}

int64_t ns_count_trainable(ns_module *m) {
    return count_params(m, true);
}

int64_t ns_count_parameters(ns_module *m) {
    return count_params(m, false);
}

ns_module *ns_module_get(ns_module *m, const char *path) {
    if (!path) return m;
    while (*path) {
        const char *dot = strchr(path, '.');
        size_t len = dot ? (size_t)(dot - path) : strlen(path);
        ns_module *next = NULL;
        for (int i = 0; i < m->n_children && !next; i++)
            if (strlen(m->children[i].name) == len && !strncmp(m->children[i].name, path, len))
                next = m->children[i].module;
        if (!next) return NULL;
        m = next;
        path += len;
        if (*path == '.') path++;
    }
    return m;
}

ns_tensor *ns_module_tensor(ns_module *m, const char *path) {
    if (!path || !*path) return NULL;
    const char *dot = strrchr(path, '.');
    const char *leaf = dot ? dot + 1 : path;
    if (dot) {
        size_t len = (size_t)(dot - path);
        char *prefix = malloc(len + 1);
        if (!prefix) ns_error("out of memory");
        memcpy(prefix, path, len);
        prefix[len] = 0;
        m = ns_module_get(m, prefix);
        free(prefix);
        if (!m) return NULL;
    }
    for (int i = 0; i < m->n_params; i++)
        if (!strcmp(m->params[i].name, leaf)) return m->params[i].tensor;
    for (int i = 0; i < m->n_buffers; i++)
        if (!strcmp(m->buffers[i].name, leaf)) return m->buffers[i].tensor;
    return NULL;
}

/* ------------------------------------------------------------------ modes and devices */

void ns_module_train(ns_module *m, bool on) {
    m->training = on;
    for (int i = 0; i < m->n_children; i++) ns_module_train(m->children[i].module, on);
}

static void move_tree(ns_module *m, ns_device dev) {
    for (int i = 0; i < m->n_params; i++) ns_tensor_move(m->params[i].tensor, dev);
    for (int i = 0; i < m->n_buffers; i++) ns_tensor_move(m->buffers[i].tensor, dev);
    for (int i = 0; i < m->n_children; i++) move_tree(m->children[i].module, dev);
}

void ns_module_to(ns_module *m, ns_device dev) {
    char why[256] = "", lab[512];
    /* Check first, so a failure leaves the model where it was instead of half moved. */
    if (!ns_device_available(dev, why, sizeof why))
        ns_error("ns_module_to: cannot move %s to %s: %s", ns_module_label(m, lab, sizeof lab),
                 ns_device_name(dev), why);
    move_tree(m, dev);
}

void ns_module_requires_grad(ns_module *m, bool on) {
    for (int i = 0; i < m->n_params; i++) ns_requires_grad(m->params[i].tensor, on);
    for (int i = 0; i < m->n_children; i++) ns_module_requires_grad(m->children[i].module, on);
}

void ns_module_zero_grad(ns_module *m) {
    for (int i = 0; i < m->n_params; i++) ns_zero_grad(m->params[i].tensor);
    for (int i = 0; i < m->n_children; i++) ns_module_zero_grad(m->children[i].module);
}

/* ------------------------------------------------------------------ repr
 * PyTorch's Module.__repr__: "Type(" + extra_repr on one line when there are no children,
 * else one line per extra_repr line and per child "(name): <child repr indented by 2>" each
 * indented by 2, then ")". */

static void repr_into(const ns_module *m, sbuf *out) {
    char extra[1024] = "";
    if (m->describe) m->describe(m, extra, sizeof extra);
    sb_str(out, m->type);
    sb_str(out, "(");
    if (!m->n_children) {
        sb_str(out, extra);
        sb_str(out, ")");
        return;
    }
    if (extra[0]) {
        sb_str(out, "\n  ");
        for (const char *p = extra; *p; p++) sb_str(out, *p == '\n' ? "\n  " : (char[]){*p, 0});
    }
    for (int i = 0; i < m->n_children; i++) {
        sbuf child = {0};
        sb_str(&child, "");
        repr_into(m->children[i].module, &child);
        sb_str(out, "\n  (");
        sb_str(out, m->children[i].name);
        sb_str(out, "): ");
        for (const char *p = child.s; *p; p++) {
            const char *nl = strchr(p, '\n');
            size_t len = nl ? (size_t)(nl - p) : strlen(p);
            sb_put(out, p, len);
            p += len;
            if (!*p) break;
            sb_str(out, "\n  ");
        }
        free(child.s);
    }
    sb_str(out, "\n)");
}

char *ns_module_repr(const ns_module *m) {
    sbuf out = {0};
    sb_str(&out, "");
    repr_into(m, &out);
    return out.s;
}

/* ------------------------------------------------------------------ ns_call */

/* One module call with backward hooks: shared by its two boundary nodes (scope memory). */
typedef struct {
    ns_module *m;
    uint64_t call_id;
    bool has_in;
    ns_tensor *grad_out;
} boundary_call;

/* Output boundary: notes grad_out (complete here: every consumer of the output was recorded
 * later on the tape) and passes it on. Without an input boundary the hooks fire now. */
static void out_boundary_bwd(ns_node *n) {
    boundary_call *bc = n->aux;
    ns_tensor *g = ns_grad_peek(n->out);
    bc->grad_out = g;
    if (!bc->has_in) ns_run_backward_hooks(bc->m, g, NULL, bc->call_id);
    ns_grad_pass_through(n->in[0], g);
}

/* Input boundary: the gradient leaving the module through its input; fires the hooks. */
static void in_boundary_bwd(ns_node *n) {
    boundary_call *bc = n->aux;
    ns_tensor *g = ns_grad_peek(n->out);
    ns_run_backward_hooks(bc->m, bc->grad_out, g, bc->call_id);
    ns_grad_pass_through(n->in[0], g);
}

static ns_tensor *boundary(ns_tensor *t, const char *op, ns_backward_fn fn, boundary_call *bc) {
    ns_tensor *v = ns_view_of(t, t->ndim, t->shape);
    ns_node *nd = ns_node_new(op, fn, v, 1, &t);
    nd->aux = bc;
    return v;
}

ns_tensor *ns_call_(ns_module *m, ns_tensor *x, const char *expr) {
    if (!m) ns_error("ns_call(%s): the module is NULL", expr);
    if (m->magic != NS_MODULE_MAGIC)
        uninitialised("ns_call(%s): the module was never initialised; " INIT_FIX, expr);
    char lab[512];
    if (!x)
        ns_error("ns_call(%s): the input of %s is NULL", expr, ns_module_label(m, lab, sizeof lab));
    if (!m->forward)
        ns_error("ns_call(%s): %s has no forward function (pass one to ns_module_init())", expr,
                 ns_module_label(m, lab, sizeof lab));
    int depth = g_depth;
    ns_module *caller = depth ? frame_at(depth - 1)->m : NULL;
    if (depth == 0 && x->ndim >= 1) ns_note_samples(x->shape[0]);
    frame *f = push_frame();
    f->m = m;
    f->info = (ns_call_info){.call_id = atomic_fetch_add(&g_next_call_id, 1),
                             .caller = caller,
                             .depth = depth,
                             .t_start = monotonic_s()};
    if (depth > 0 && !m->unregistered_reported &&
        ns_module_root(m) != ns_module_root(frame_at(0)->m)) {
        m->unregistered_reported = true;
        ns_event ev = {.kind = NS_EV_UNREGISTERED_CALL, .module = m, .other = caller};
        ns_emit_event(&ev);
    }
    ns_run_forward_pre_hooks(m, x);
    boundary_call *bc = NULL;
    ns_tensor *in = x;
    if (ns_grad_enabled() && ns_have_backward_hooks(m)) {
        bc = ns_scope_alloc(sizeof *bc);
        *bc = (boundary_call){.m = m, .call_id = f->info.call_id};
        if (x->requires_grad && x->dtype == NS_F32) {
            in = boundary(x, "module_input", in_boundary_bwd, bc);
            bc->has_in = true;
        }
    }
    ns_tensor *y = m->forward(m, in);
    if (!y) ns_error("forward returned NULL");
    ns_run_forward_hooks(m, x, y);
    if (bc && y->requires_grad) y = boundary(y, "module_output", out_boundary_bwd, bc);
    assert(g_depth == depth + 1 && "module call stack out of balance");
    g_depth = depth;
    return y;
}

ns_tensor *(ns_call)(ns_module *m, ns_tensor *x) {
    return ns_call_(m, x, "module");
}
