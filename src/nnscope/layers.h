/* nnscope layers and containers: PyTorch's torch.nn layers with the same names, arguments,
 * defaults, initialisation, parameter names and repr text.
 *
 * Every constructor returns a heap-allocated ns_module* (free it with ns_module_free(), or let
 * the parent free it once it is registered). The typed structs below embed ns_module first, so
 * a layer's fields are reachable through the ns_as_*() casts, which assert the module's type:
 *
 *   ns_module *fc1 = ns_linear_new(784, 256, true);
 *   ns_tensor *w = ns_as_linear(fc1)->weight;          // also ns_module_tensor(fc1, "weight")
 *
 * Initialisation (PyTorch's reset_parameters()): Linear and Conv2d weights are
 * kaiming_uniform_(a=sqrt(5)), i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in)), and their biases
 * U(-1/sqrt(fan_in), 1/sqrt(fan_in)), drawn with ns_uniform_() from the global generator (seed
 * it with ns_manual_seed()); weight first, then bias. BatchNorm: weight 1, bias 0,
 * running_mean 0, running_var 1, num_batches_tracked 0.
 *
 * Constructor arguments a user can get wrong (sizes <= 0, p outside [0,1]) are reported with
 * ns_error() naming the layer and the argument.
 */
#ifndef NNSCOPE_LAYERS_H
#define NNSCOPE_LAYERS_H

#include "nnscope/module.h"

/* ------------------------------------------------------------------ Linear
 * x (N, in_features) -> (N, out_features). Parameters "weight" (out, in), "bias" (out). */
typedef struct {
    ns_module base;
    int64_t in_features, out_features;
    ns_tensor *weight; /* (out_features, in_features) */
    ns_tensor *bias;   /* (out_features) or NULL */
} ns_linear_layer;

/* Linear(in_features, out_features, bias=bias). */
ns_module *ns_linear_new(int64_t in_features, int64_t out_features, bool bias);

/* ------------------------------------------------------------------ Conv2d
 * x (N, Cin, H, W) -> (N, Cout, Ho, Wo), square kernel, same stride/padding on both axes.
 * Parameters "weight" (Cout, Cin, k, k), "bias" (Cout). */
typedef struct {
    ns_module base;
    int64_t in_channels, out_channels;
    int kernel_size, stride, padding;
    ns_tensor *weight; /* (out_channels, in_channels, k, k) */
    ns_tensor *bias;   /* (out_channels) or NULL */
} ns_conv2d_layer;

/* Conv2d(in_channels, out_channels, kernel_size, stride, padding, bias). stride >= 1,
 * padding >= 0. */
ns_module *ns_conv2d_new(int64_t in_channels, int64_t out_channels, int kernel_size, int stride,
                         int padding, bool bias);

/* ------------------------------------------------------------------ BatchNorm1d / BatchNorm2d
 * Over dim 1 of (N, C) [BatchNorm1d] or (N, C, H, W) [BatchNorm2d]. Parameters "weight" (C) = 1,
 * "bias" (C) = 0; buffers "running_mean" (C) = 0, "running_var" (C) = 1 and
 * "num_batches_tracked" () = 0, so state_dict keys match PyTorch's. Difference from PyTorch:
 * num_batches_tracked is a 0-dim F32 tensor holding the count (PyTorch: a 0-dim
 * int64); it is exact up to 2^24 batches. In training mode each call uses batch statistics, updates
 * the running statistics with momentum (unbiased variance) and adds 1 to num_batches_tracked; in
 * eval mode the running statistics are used. */
typedef struct {
    ns_module base;
    int64_t num_features;
    double eps;      /* 1e-5 (double, like PyTorch's Python float, so repr prints 1e-05) */
    double momentum; /* 0.1 */
    int dims;        /* 2 for BatchNorm1d inputs (N,C), 4 for BatchNorm2d inputs (N,C,H,W) */
    ns_tensor *weight, *bias;
    ns_tensor *running_mean, *running_var, *num_batches_tracked;
} ns_batchnorm_layer;

/* BatchNorm1d(num_features): eps 1e-5, momentum 0.1, affine, track_running_stats. */
ns_module *ns_batchnorm1d_new(int64_t num_features);
/* BatchNorm2d(num_features): eps 1e-5, momentum 0.1, affine, track_running_stats. */
ns_module *ns_batchnorm2d_new(int64_t num_features);
/* Either of the above with explicit eps and momentum. dims is 2 (1d) or 4 (2d). */
ns_module *ns_batchnorm_new(int dims, int64_t num_features, double eps, double momentum);

/* ------------------------------------------------------------------ Dropout
 * Inverted dropout with probability p while training (scales kept values by 1/(1-p)); the
 * identity in eval mode. */
typedef struct {
    ns_module base;
    double p;
} ns_dropout_layer;

/* Dropout(p), 0 <= p <= 1. */
ns_module *ns_dropout_new(double p);

/* ------------------------------------------------------------------ activations, Flatten
 * Stateless; no parameters. */
typedef struct {
    ns_module base;
    double negative_slope;
} ns_leaky_relu_layer;

/* ReLU(). */
ns_module *ns_relu_new(void);
/* LeakyReLU(negative_slope) (PyTorch's default slope is 0.01). */
ns_module *ns_leaky_relu_new(double negative_slope);
/* GELU() (exact erf form, approximate='none'). */
ns_module *ns_gelu_new(void);
/* Tanh(). */
ns_module *ns_tanh_new(void);
/* Sigmoid(). */
ns_module *ns_sigmoid_new(void);
/* Flatten() (start_dim=1, end_dim=-1): (N, ...) -> (N, prod(...)). */
ns_module *ns_flatten_new(void);

/* ------------------------------------------------------------------ pooling
 * (N, C, H, W) -> (N, C, Ho, Wo) with a square window. */
typedef struct {
    ns_module base;
    int kernel_size, stride, padding;
} ns_pool2d_layer;

/* MaxPool2d(kernel_size, stride, padding); stride 0 means stride = kernel_size (PyTorch's
 * default stride=None). */
ns_module *ns_maxpool2d_new(int kernel_size, int stride, int padding);
/* AvgPool2d(kernel_size, stride, padding) (count_include_pad=True); stride 0 = kernel_size. */
ns_module *ns_avgpool2d_new(int kernel_size, int stride, int padding);

/* ------------------------------------------------------------------ containers
 * Items are registered children named "0", "1", ... (Sequential, ModuleList) or by key
 * (ModuleDict), so walks, state_dict keys ("layers.0.weight"), train/eval and to() reach them.
 * The container owns its items. */

/* Sequential(m0, m1, ...): forward runs each item with ns_call() in order. n items follow
 * (ns_module*); NULL items are errors. */
ns_module *ns_sequential_new(int n, ...);
/* Appends item as the next index ("n"). */
void ns_sequential_append(ns_module *seq, ns_module *item);
/* Number of items. */
int ns_sequential_len(const ns_module *seq);
/* Item i (0 <= i < len; negative i counts from the end like Python), or an error. */
ns_module *ns_sequential_get(ns_module *seq, int i);

/* ModuleList(): a registered list of modules. Calling it (ns_call) is an error, as in PyTorch
 * (NotImplementedError: ModuleList has no forward): run its items one by one. */
ns_module *ns_module_list_new(void);
/* Appends item as the next index. */
void ns_module_list_append(ns_module *list, ns_module *item);
/* Item i (negative i counts from the end), or an error naming the index and the length. */
ns_module *ns_module_list_get(ns_module *list, int i);
/* Number of items. */
int ns_module_list_len(const ns_module *list);

/* ModuleDict(): modules registered under string keys (insertion order kept). Calling it is an
 * error, as in PyTorch. */
ns_module *ns_module_dict_new(void);
/* Registers item under key. A key already present is an error (PyTorch would replace the
 * module; here the old one may still be referenced by the caller, so nnscope refuses). */
void ns_module_dict_insert(ns_module *dict, const char *key, ns_module *item);
/* The module under key, or NULL. */
ns_module *ns_module_dict_get(ns_module *dict, const char *key);
/* Number of items. */
int ns_module_dict_len(const ns_module *dict);

/* ------------------------------------------------------------------ typed access
 * Each asserts that m is a module of that type (programmer error otherwise) and casts. */
ns_linear_layer *ns_as_linear(ns_module *m);
ns_conv2d_layer *ns_as_conv2d(ns_module *m);
ns_batchnorm_layer *ns_as_batchnorm(ns_module *m); /* BatchNorm1d or BatchNorm2d */
ns_dropout_layer *ns_as_dropout(ns_module *m);

#endif
