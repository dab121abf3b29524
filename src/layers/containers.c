/* Containers: Sequential, ModuleList, ModuleDict. Items are registered children ("0", "1", ...
 * or the dict keys), so every walk, mode switch, move and state_dict reaches them. */
#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "layers_internal.h"

/* Runs every item in order. */
static ns_tensor *sequential_forward(ns_module *self, ns_tensor *x) {
    for (int i = 0; i < self->n_children; i++) x = (ns_call)(self->children[i].module, x);
    return x;
}

/* ModuleList and ModuleDict have no forward, as in PyTorch. */
static ns_tensor *no_forward(ns_module *self, ns_tensor *x) {
    (void)x;
    ns_error("%s is not callable: it has no forward (PyTorch: NotImplementedError: Module [%s] is "
             "missing the required \"forward\" function); call its items with ns_call() instead",
             self->type, self->type);
}

/* Label text: "layers (Sequential 3 items)"; nothing for an empty container. */
static void brief_len(const ns_module *self, char *buf, size_t n) {
    if (self->n_children)
        snprintf(buf, n, "%d items", self->n_children);
    else if (n)
        buf[0] = 0;
}

static void append_indexed(ns_module *c, ns_module *item, const char *type) {
    char key[16];
    snprintf(key, sizeof key, "%d", c->n_children);
    if (!item) ns_error("%s: item %s is NULL", type, key);
    ns_register_module(c, key, item);
}

static int index_of(ns_module *c, int i, const char *type) {
    int n = c->n_children;
    int j = i < 0 ? i + n : i;
    if (j < 0 || j >= n) ns_error("%s: index %d is out of range (length %d)", type, i, n);
    return j;
}

ns_module *ns_sequential_new(int n, ...) {
    assert(n >= 0);
    ns_module *s = ns_layer_alloc(sizeof *s, "Sequential");
    ns_module_init(s, "Sequential", sequential_forward);
    s->brief = brief_len;
    va_list ap;
    va_start(ap, n);
    for (int i = 0; i < n; i++) append_indexed(s, va_arg(ap, ns_module *), "Sequential");
    va_end(ap);
    return s;
}

void ns_sequential_append(ns_module *seq, ns_module *item) {
    assert(seq && seq->forward == sequential_forward);
    append_indexed(seq, item, "Sequential");
}

int ns_sequential_len(const ns_module *seq) {
    assert(seq && seq->forward == sequential_forward);
    return seq->n_children;
}

ns_module *ns_sequential_get(ns_module *seq, int i) {
    assert(seq && seq->forward == sequential_forward);
    return seq->children[index_of(seq, i, "Sequential")].module;
}

static bool is_list(const ns_module *m) {
    return m && m->forward == no_forward && !strcmp(m->type, "ModuleList");
}

static bool is_dict(const ns_module *m) {
    return m && m->forward == no_forward && !strcmp(m->type, "ModuleDict");
}

ns_module *ns_module_list_new(void) {
    ns_module *l = ns_layer_alloc(sizeof *l, "ModuleList");
    ns_module_init(l, "ModuleList", no_forward);
    l->brief = brief_len;
    return l;
}

void ns_module_list_append(ns_module *list, ns_module *item) {
    assert(is_list(list));
    append_indexed(list, item, "ModuleList");
}

ns_module *ns_module_list_get(ns_module *list, int i) {
    assert(is_list(list));
    return list->children[index_of(list, i, "ModuleList")].module;
}

int ns_module_list_len(const ns_module *list) {
    assert(is_list(list));
    return list->n_children;
}

ns_module *ns_module_dict_new(void) {
    ns_module *d = ns_layer_alloc(sizeof *d, "ModuleDict");
    ns_module_init(d, "ModuleDict", no_forward);
    d->brief = brief_len;
    return d;
}

void ns_module_dict_insert(ns_module *dict, const char *key, ns_module *item) {
    assert(is_dict(dict));
    if (!item) ns_error("ModuleDict: the module for key '%s' is NULL", key ? key : "(null)");
    ns_register_module(dict, key, item);
}

ns_module *ns_module_dict_get(ns_module *dict, const char *key) {
    assert(is_dict(dict));
    for (int i = 0; i < dict->n_children; i++)
        if (!strcmp(dict->children[i].name, key)) return dict->children[i].module;
    return NULL;
}

int ns_module_dict_len(const ns_module *dict) {
    assert(is_dict(dict));
    return dict->n_children;
}
