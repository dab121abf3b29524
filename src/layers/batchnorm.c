/* BatchNorm1d / BatchNorm2d: affine, running statistics as buffers, PyTorch's defaults. */
#include <assert.h>
#include <stdio.h>

#include "layers_internal.h"

/* x (N, C) or (N, C, H, W) -> same shape */
static ns_tensor *batchnorm_forward(ns_module *self, ns_tensor *x) {
    ns_batchnorm_layer *b = (ns_batchnorm_layer *)self;
    if (x->ndim != b->dims) {
        char s[64];
        ns_error("%s: expected a %dD input (%s), got %dD [%s]", self->type, b->dims,
                 b->dims == 2 ? "N, C" : "N, C, H, W", x->ndim, ns_shape_str(x, s, sizeof s));
    }
    ns_tensor *y = ns_batch_norm(x, b->weight, b->bias, b->running_mean, b->running_var,
                                 self->training, (float)b->momentum, (float)b->eps);
    /* PyTorch counts batches seen in training (used only when momentum is None). Updated in
     * place on the tensor's device: no host round trip. */
    if (self->training)
        ns_be(b->num_batches_tracked)
            ->affine(b->num_batches_tracked->data, b->num_batches_tracked->data, 1, 1.0f, 1.0f);
    return y;
}

static void batchnorm_describe(const ns_module *self, char *buf, size_t n) {
    const ns_batchnorm_layer *b = (const ns_batchnorm_layer *)self;
    char eps[32], mom[32];
    snprintf(buf, n, "%lld, eps=%s, momentum=%s, affine=True, track_running_stats=True",
             (long long)b->num_features, ns_py_float(b->eps, eps, sizeof eps),
             ns_py_float(b->momentum, mom, sizeof mom));
}

static void batchnorm_brief(const ns_module *self, char *buf, size_t n) {
    snprintf(buf, n, "%lld", (long long)((const ns_batchnorm_layer *)self)->num_features);
}

ns_module *ns_batchnorm_new(int dims, int64_t num_features, double eps, double momentum) {
    assert(dims == 2 || dims == 4);
    const char *type = dims == 2 ? "BatchNorm1d" : "BatchNorm2d";
    if (num_features < 1)
        ns_error("%s(%lld): num_features must be at least 1", type, (long long)num_features);
    if (!(eps > 0) || !(momentum >= 0 && momentum <= 1))
        ns_error("%s(%lld): eps must be > 0 and momentum in [0, 1] (got eps=%g, momentum=%g)", type,
                 (long long)num_features, eps, momentum);
    ns_batchnorm_layer *b = ns_layer_alloc(sizeof *b, type);
    ns_module_init(&b->base, type, batchnorm_forward);
    b->base.describe = batchnorm_describe;
    b->base.brief = batchnorm_brief;
    b->num_features = num_features;
    b->eps = eps;
    b->momentum = momentum;
    b->dims = dims;
    b->weight = ns_tensor_new(NS_DIMS(num_features), NS_CPU);
    ns_tensor_fill(b->weight, 1.0f);
    b->bias = ns_tensor_new(NS_DIMS(num_features), NS_CPU);
    b->running_mean = ns_tensor_new(NS_DIMS(num_features), NS_CPU);
    b->running_var = ns_tensor_new(NS_DIMS(num_features), NS_CPU);
    ns_tensor_fill(b->running_var, 1.0f);
    /* A 0-dim tensor like PyTorch's, so a state_dict loads on both sides without a size
     * mismatch (the dtype differs: F32 here, int64 there; load_state_dict converts). */
    b->num_batches_tracked = ns_tensor_new(0, (const int64_t[]){1}, NS_CPU);
    ns_register_parameter(&b->base, "weight", b->weight);
    ns_register_parameter(&b->base, "bias", b->bias);
    ns_register_buffer(&b->base, "running_mean", b->running_mean);
    ns_register_buffer(&b->base, "running_var", b->running_var);
    ns_register_buffer(&b->base, "num_batches_tracked", b->num_batches_tracked);
    return &b->base;
}

ns_module *ns_batchnorm1d_new(int64_t num_features) {
    return ns_batchnorm_new(2, num_features, 1e-5, 0.1);
}

ns_module *ns_batchnorm2d_new(int64_t num_features) {
    return ns_batchnorm_new(4, num_features, 1e-5, 0.1);
}

ns_batchnorm_layer *ns_as_batchnorm(ns_module *m) {
    assert(m && m->magic == NS_MODULE_MAGIC && m->forward == batchnorm_forward);
    return (ns_batchnorm_layer *)m;
}
