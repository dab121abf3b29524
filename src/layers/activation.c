/* Stateless layers: ReLU, LeakyReLU, GELU, Tanh, Sigmoid, Flatten. */
#include <stdio.h>

#include "layers_internal.h"

static ns_tensor *relu_forward(ns_module *self, ns_tensor *x) {
    (void)self;
    return ns_relu(x);
}

static ns_tensor *gelu_forward(ns_module *self, ns_tensor *x) {
    (void)self;
    return ns_gelu(x);
}

static ns_tensor *tanh_forward(ns_module *self, ns_tensor *x) {
    (void)self;
    return ns_tanh(x);
}

static ns_tensor *sigmoid_forward(ns_module *self, ns_tensor *x) {
    (void)self;
    return ns_sigmoid(x);
}

/* (N, ...) -> (N, prod(...)) */
static ns_tensor *flatten_forward(ns_module *self, ns_tensor *x) {
    (void)self;
    return ns_flatten(x);
}

static ns_tensor *leaky_relu_forward(ns_module *self, ns_tensor *x) {
    return ns_leaky_relu(x, (float)((ns_leaky_relu_layer *)self)->negative_slope);
}

static void leaky_relu_describe(const ns_module *self, char *buf, size_t n) {
    char s[32];
    snprintf(buf, n, "negative_slope=%s",
             ns_py_float(((const ns_leaky_relu_layer *)self)->negative_slope, s, sizeof s));
}

static void gelu_describe(const ns_module *self, char *buf, size_t n) {
    (void)self;
    snprintf(buf, n, "approximate='none'");
}

static void flatten_describe(const ns_module *self, char *buf, size_t n) {
    (void)self;
    snprintf(buf, n, "start_dim=1, end_dim=-1");
}

static ns_module *simple(const char *type, ns_forward_fn fwd, ns_describe_fn describe) {
    ns_module *m = ns_layer_alloc(sizeof *m, type);
    ns_module_init(m, type, fwd);
    m->describe = describe;
    return m;
}

ns_module *ns_relu_new(void) {
    return simple("ReLU", relu_forward, NULL);
}

ns_module *ns_gelu_new(void) {
    return simple("GELU", gelu_forward, gelu_describe);
}

ns_module *ns_tanh_new(void) {
    return simple("Tanh", tanh_forward, NULL);
}

ns_module *ns_sigmoid_new(void) {
    return simple("Sigmoid", sigmoid_forward, NULL);
}

ns_module *ns_flatten_new(void) {
    return simple("Flatten", flatten_forward, flatten_describe);
}

ns_module *ns_leaky_relu_new(double negative_slope) {
    ns_leaky_relu_layer *l = ns_layer_alloc(sizeof *l, "LeakyReLU");
    ns_module_init(&l->base, "LeakyReLU", leaky_relu_forward);
    l->base.describe = leaky_relu_describe;
    l->negative_slope = negative_slope;
    return &l->base;
}
