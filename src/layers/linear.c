/* Linear(in_features, out_features, bias): y = x W^T + b, PyTorch's init and repr. */
#include <assert.h>
#include <math.h>
#include <stdio.h>

#include "layers_internal.h"

/* x (N, in) -> (N, out) */
static ns_tensor *linear_forward(ns_module *self, ns_tensor *x) {
    ns_linear_layer *l = (ns_linear_layer *)self;
    return ns_linear(x, l->weight, l->bias);
}

static void linear_describe(const ns_module *self, char *buf, size_t n) {
    const ns_linear_layer *l = (const ns_linear_layer *)self;
    snprintf(buf, n, "in_features=%lld, out_features=%lld, bias=%s", (long long)l->in_features,
             (long long)l->out_features, l->bias ? "True" : "False");
}

static void linear_brief(const ns_module *self, char *buf, size_t n) {
    const ns_linear_layer *l = (const ns_linear_layer *)self;
    snprintf(buf, n, "%lld->%lld", (long long)l->in_features, (long long)l->out_features);
}

ns_module *ns_linear_new(int64_t in_features, int64_t out_features, bool bias) {
    if (in_features < 1 || out_features < 1)
        ns_error("Linear(in_features=%lld, out_features=%lld): both sizes must be at least 1",
                 (long long)in_features, (long long)out_features);
    ns_linear_layer *l = ns_layer_alloc(sizeof *l, "Linear");
    ns_module_init(&l->base, "Linear", linear_forward);
    l->base.describe = linear_describe;
    l->base.brief = linear_brief;
    l->in_features = in_features;
    l->out_features = out_features;
    /* kaiming_uniform_(a=sqrt(5)): bound = sqrt(6 / ((1 + 5) * fan_in)) = 1/sqrt(fan_in). */
    double bound = 1.0 / sqrt((double)in_features);
    l->weight = ns_uniform_param(NS_DIMS(out_features, in_features), bound);
    ns_register_parameter(&l->base, "weight", l->weight);
    if (bias) {
        l->bias = ns_uniform_param(NS_DIMS(out_features), bound);
        ns_register_parameter(&l->base, "bias", l->bias);
    }
    return &l->base;
}

ns_linear_layer *ns_as_linear(ns_module *m) {
    assert(m && m->magic == NS_MODULE_MAGIC && m->forward == linear_forward);
    return (ns_linear_layer *)m;
}
