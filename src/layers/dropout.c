/* Dropout(p): inverted dropout while training, identity in eval mode. */
#include <assert.h>
#include <stdio.h>

#include "layers_internal.h"

static ns_tensor *dropout_forward(ns_module *self, ns_tensor *x) {
    return ns_dropout(x, (float)((ns_dropout_layer *)self)->p, self->training);
}

static void dropout_describe(const ns_module *self, char *buf, size_t n) {
    char p[32];
    snprintf(buf, n, "p=%s, inplace=False",
             ns_py_float(((const ns_dropout_layer *)self)->p, p, sizeof p));
}

static void dropout_brief(const ns_module *self, char *buf, size_t n) {
    char p[32];
    snprintf(buf, n, "p=%s", ns_py_float(((const ns_dropout_layer *)self)->p, p, sizeof p));
}

ns_module *ns_dropout_new(double p) {
    if (!(p >= 0 && p <= 1))
        ns_error("Dropout(p=%g): dropout probability has to be between 0 and 1", p);
    ns_dropout_layer *d = ns_layer_alloc(sizeof *d, "Dropout");
    ns_module_init(&d->base, "Dropout", dropout_forward);
    d->base.describe = dropout_describe;
    d->base.brief = dropout_brief;
    d->p = p;
    return &d->base;
}

ns_dropout_layer *ns_as_dropout(ns_module *m) {
    assert(m && m->magic == NS_MODULE_MAGIC && m->forward == dropout_forward);
    return (ns_dropout_layer *)m;
}
