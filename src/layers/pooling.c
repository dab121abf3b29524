/* MaxPool2d / AvgPool2d over (N, C, H, W) with a square window. */
#include <stdio.h>

#include "layers_internal.h"

/* (N, C, H, W) -> (N, C, Ho, Wo) */
static ns_tensor *maxpool_forward(ns_module *self, ns_tensor *x) {
    ns_pool2d_layer *p = (ns_pool2d_layer *)self;
    return ns_max_pool2d(x, p->kernel_size, p->stride, p->padding);
}

static ns_tensor *avgpool_forward(ns_module *self, ns_tensor *x) {
    ns_pool2d_layer *p = (ns_pool2d_layer *)self;
    return ns_avg_pool2d(x, p->kernel_size, p->stride, p->padding);
}

static void maxpool_describe(const ns_module *self, char *buf, size_t n) {
    const ns_pool2d_layer *p = (const ns_pool2d_layer *)self;
    snprintf(buf, n, "kernel_size=%d, stride=%d, padding=%d, dilation=1, ceil_mode=False",
             p->kernel_size, p->stride, p->padding);
}

static void avgpool_describe(const ns_module *self, char *buf, size_t n) {
    const ns_pool2d_layer *p = (const ns_pool2d_layer *)self;
    snprintf(buf, n, "kernel_size=%d, stride=%d, padding=%d", p->kernel_size, p->stride,
             p->padding);
}

static void pool_brief(const ns_module *self, char *buf, size_t n) {
    const ns_pool2d_layer *p = (const ns_pool2d_layer *)self;
    snprintf(buf, n, "k%d s%d p%d", p->kernel_size, p->stride, p->padding);
}

static ns_module *pool_new(const char *type, ns_forward_fn fwd, ns_describe_fn describe, int k,
                           int stride, int padding) {
    if (stride == 0) stride = k;
    if (k < 1 || stride < 1 || padding < 0 || padding > k / 2)
        ns_error("%s(kernel_size=%d, stride=%d, padding=%d): kernel size and stride must be at "
                 "least 1, and padding between 0 and half the kernel size",
                 type, k, stride, padding);
    ns_pool2d_layer *p = ns_layer_alloc(sizeof *p, type);
    ns_module_init(&p->base, type, fwd);
    p->base.describe = describe;
    p->base.brief = pool_brief;
    p->kernel_size = k;
    p->stride = stride;
    p->padding = padding;
    return &p->base;
}

ns_module *ns_maxpool2d_new(int kernel_size, int stride, int padding) {
    return pool_new("MaxPool2d", maxpool_forward, maxpool_describe, kernel_size, stride, padding);
}

ns_module *ns_avgpool2d_new(int kernel_size, int stride, int padding) {
    return pool_new("AvgPool2d", avgpool_forward, avgpool_describe, kernel_size, stride, padding);
}
