/* Conv2d(in_channels, out_channels, kernel_size, stride, padding, bias): square kernels. */
#include <assert.h>
#include <math.h>
#include <stdio.h>

#include "layers_internal.h"

/* x (N, Cin, H, W) -> (N, Cout, Ho, Wo) */
static ns_tensor *conv2d_forward(ns_module *self, ns_tensor *x) {
    ns_conv2d_layer *c = (ns_conv2d_layer *)self;
    return ns_conv2d(x, c->weight, c->bias, c->stride, c->padding);
}

/* PyTorch's _ConvNd.extra_repr: padding shown only when non-zero, bias only when absent. */
static void conv2d_describe(const ns_module *self, char *buf, size_t n) {
    const ns_conv2d_layer *c = (const ns_conv2d_layer *)self;
    int off = snprintf(buf, n, "%lld, %lld, kernel_size=(%d, %d), stride=(%d, %d)",
                       (long long)c->in_channels, (long long)c->out_channels, c->kernel_size,
                       c->kernel_size, c->stride, c->stride);
    if (c->padding && off >= 0 && (size_t)off < n)
        off += snprintf(buf + off, n - (size_t)off, ", padding=(%d, %d)", c->padding, c->padding);
    if (!c->bias && off >= 0 && (size_t)off < n)
        snprintf(buf + off, n - (size_t)off, ", bias=False");
}

static void conv2d_brief(const ns_module *self, char *buf, size_t n) {
    const ns_conv2d_layer *c = (const ns_conv2d_layer *)self;
    snprintf(buf, n, "%lld->%lld k%d s%d p%d", (long long)c->in_channels,
             (long long)c->out_channels, c->kernel_size, c->stride, c->padding);
}

ns_module *ns_conv2d_new(int64_t in_channels, int64_t out_channels, int kernel_size, int stride,
                         int padding, bool bias) {
    if (in_channels < 1 || out_channels < 1 || kernel_size < 1 || stride < 1 || padding < 0)
        ns_error("Conv2d(%lld, %lld, kernel_size=%d, stride=%d, padding=%d): channels, kernel size "
                 "and stride must be at least 1 and padding at least 0",
                 (long long)in_channels, (long long)out_channels, kernel_size, stride, padding);
    ns_conv2d_layer *c = ns_layer_alloc(sizeof *c, "Conv2d");
    ns_module_init(&c->base, "Conv2d", conv2d_forward);
    c->base.describe = conv2d_describe;
    c->base.brief = conv2d_brief;
    c->in_channels = in_channels;
    c->out_channels = out_channels;
    c->kernel_size = kernel_size;
    c->stride = stride;
    c->padding = padding;
    /* kaiming_uniform_(a=sqrt(5)) with fan_in = Cin*k*k: bound 1/sqrt(fan_in), bias the same. */
    double bound = 1.0 / sqrt((double)in_channels * kernel_size * kernel_size);
    c->weight =
        ns_uniform_param(NS_DIMS(out_channels, in_channels, kernel_size, kernel_size), bound);
    ns_register_parameter(&c->base, "weight", c->weight);
    if (bias) {
        c->bias = ns_uniform_param(NS_DIMS(out_channels), bound);
        ns_register_parameter(&c->base, "bias", c->bias);
    }
    return &c->base;
}

ns_conv2d_layer *ns_as_conv2d(ns_module *m) {
    assert(m && m->magic == NS_MODULE_MAGIC && m->forward == conv2d_forward);
    return (ns_conv2d_layer *)m;
}
