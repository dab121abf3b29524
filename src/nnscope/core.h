/* nnscope core: devices, errors, tensors, the step scope, autograd and ops.
 *
 * Ownership in one sentence: tensors made by ns_tensor_new() are long-lived and freed with
 * ns_tensor_free(); every tensor an op returns (and every ns_tmp()) belongs to the current
 * step scope and is released all at once by ns_scope_reset() / ns_step_end().
 */
#ifndef NNSCOPE_CORE_H
#define NNSCOPE_CORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define NS_MAX_DIMS 4

/* Shape literal helper: ns_tmp(NS_DIMS(128, 784), NS_CPU) passes ndim and a shape array. */
#define NS_DIMS(...)                                                                               \
    (int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), (const int64_t[]) {                 \
        __VA_ARGS__                                                                                \
    }

typedef enum { NS_CPU = 0, NS_CUDA = 1, NS_NUM_DEVICES = 2 } ns_device;
typedef enum { NS_F32 = 0, NS_I32 = 1 } ns_dtype;

struct ns_node;
struct ns_module;

typedef struct ns_tensor ns_tensor;
struct ns_tensor {
    float *data; /* NS_I32 tensors: read through ns_i32() */
    int64_t shape[NS_MAX_DIMS];
    int ndim;
    int64_t numel;
    ns_device device;
    ns_dtype dtype;
    uint64_t id;      /* unique per process */
    const char *name; /* parameters: dotted name once registered, else NULL */
    bool requires_grad;
    bool persistent;         /* ns_tensor_new(): long-lived; else owned by the scope */
    ns_tensor *grad;         /* leaves: long-lived, created by the first backward */
    struct ns_node *grad_fn; /* op that produced it (NULL for leaves / no-grad) */
    ns_tensor *base;         /* views: the tensor whose storage this shares */
    uint32_t grad_pass;      /* internal: backward pass that owns a non-leaf grad */
    bool owns_data;          /* internal */
};

/* ------------------------------------------------------------------ devices */

/* "cpu" or "cuda:0". */
const char *ns_device_name(ns_device d);
/* Parses "cpu" / "cuda" / "cuda:0"; false on anything else. */
bool ns_device_parse(const char *s, ns_device *out);
/* True when the backend for d is compiled in and usable on this machine; why says why not. */
bool ns_device_available(ns_device d, char *why, size_t whylen);

/* ------------------------------------------------------------------ errors */

/* A user-error handler. It must not return (longjmp or exit); if it does, the process exits 1. */
typedef void (*ns_error_handler)(const char *msg, void *ud);
/* Installs h (NULL restores the default: print "nnscope: <msg>" to stderr and exit(1)). */
void ns_set_error_handler(ns_error_handler h, void *ud);
/* Reports a user error: prefixes the running module path, tells the event hooks, then calls the
 * handler. Never returns. */
_Noreturn void ns_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* The last message passed to the handler (empty when none). */
const char *ns_last_error(void);
/* Formats a shape as "128x784" into buf; returns buf. */
char *ns_shape_str(const ns_tensor *t, char *buf, size_t n);

/* ------------------------------------------------------------------ tensors */

/* Long-lived zero-filled tensor (parameters, optimizer state). Free with ns_tensor_free(). */
ns_tensor *ns_tensor_new(int ndim, const int64_t *shape, ns_device dev);
/* Long-lived int32 tensor (class indices). */
ns_tensor *ns_tensor_new_i32(int ndim, const int64_t *shape, ns_device dev);
/* Frees a long-lived tensor and its grad. NULL is a no-op. Scope tensors must not be freed. */
void ns_tensor_free(ns_tensor *t);
/* Uninitialised float tensor owned by the current scope. */
ns_tensor *ns_tmp(int ndim, const int64_t *shape, ns_device dev);
/* Uninitialised int32 tensor owned by the current scope. */
ns_tensor *ns_tmp_i32(int ndim, const int64_t *shape, ns_device dev);
/* Scope tensor on dev holding a copy of n host floats laid out as shape. */
ns_tensor *ns_from_host(int ndim, const int64_t *shape, const float *src, ns_device dev);
/* Scope int32 tensor on dev holding a copy of host int32 values. */
ns_tensor *ns_from_host_i32(int ndim, const int64_t *shape, const int32_t *src, ns_device dev);
/* Copies numel floats from host memory into t (any device). */
void ns_tensor_set(ns_tensor *t, const float *src);
/* Copies t's numel floats to host memory dst (any device). */
void ns_tensor_get(const ns_tensor *t, float *dst);
/* Fills t with v. */
void ns_tensor_fill(ns_tensor *t, float v);
/* Copies src's values into dst (same numel; devices may differ). Not recorded on the tape. */
void ns_tensor_copy(ns_tensor *dst, const ns_tensor *src);
/* Moves a long-lived tensor's storage (and its grad) to dev in place; ids stay. */
void ns_tensor_move(ns_tensor *t, ns_device dev);
/* Int32 view of an NS_I32 tensor's data. */
static inline int32_t *ns_i32(const ns_tensor *t) {
    return (int32_t *)(void *)t->data;
}
/* The single value of a one-element tensor (copied to the host if needed). */
float ns_item(const ns_tensor *t);
/* Sets t.requires_grad (leaves only); returns t. */
ns_tensor *ns_requires_grad(ns_tensor *t, bool on);
/* Fills t with uniform values in [lo, hi) from the global generator (see ns_manual_seed). */
void ns_uniform_(ns_tensor *t, float lo, float hi);
/* Fills t with normal values (mean, std) from the global generator. */
void ns_normal_(ns_tensor *t, float mean, float std);

/* ------------------------------------------------------------------ random numbers */

/* Seeds the global generator (initialisation, dropout masks). Default seed 0. */
void ns_manual_seed(uint64_t seed);
/* The generator's state (seed, counter) for checkpoints. */
void ns_rng_get_state(uint64_t *seed, uint64_t *counter);
/* Restores a state saved by ns_rng_get_state(). */
void ns_rng_set_state(uint64_t seed, uint64_t counter);
/* Reserves n draws from the global stream and returns the first counter value. */
uint64_t ns_rng_advance(uint64_t n);
/* Counter-based random numbers: the same (seed, counter) gives the same value on every backend.
 * u = fmix32(lo32(counter) ^ key(seed, hi32(counter))) / 2^32, with MurmurHash3's 32-bit
 * finaliser; the key is constant over 2^32 consecutive counters, so kernels compute it once and
 * the per-element work is a few 32-bit multiplies and shifts (vectorised on CPUs). */
static inline uint32_t ns_fmix32(uint32_t h) {
    h ^= h >> 16;
    h *= 0x85EBCA6Bu;
    h ^= h >> 13;
    h *= 0xC2B2AE35u;
    h ^= h >> 16;
    return h;
}
static inline uint32_t ns_rng_key(uint64_t seed, uint32_t counter_hi) {
    return ns_fmix32((uint32_t)seed ^
                     ns_fmix32((uint32_t)(seed >> 32) ^ ns_fmix32(counter_hi + 0x9E3779B9u)));
}
/* Uniform float in [0,1) with 24 random bits. */
static inline float ns_rng_uniform(uint64_t seed, uint64_t counter) {
    uint32_t k = ns_rng_key(seed, (uint32_t)(counter >> 32));
    return (float)(ns_fmix32((uint32_t)counter ^ k) >> 8) * (1.0f / 16777216.0f);
}

/* ------------------------------------------------------------------ scope */

/* Releases every scope tensor and tape node of this thread (keeps the memory for reuse).
 * Tensors returned by ops before this call must not be used after it. */
void ns_scope_reset(void);
/* Bytes the scope currently holds (in use, reserved) — for leak tests and the recorder. */
void ns_scope_stats(size_t *in_use, size_t *reserved);

/* ------------------------------------------------------------------ autograd */

/* Grad mode of this thread (true by default). */
bool ns_grad_enabled(void);
/* Sets grad mode and returns the previous value (no_grad: prev = ns_set_grad_enabled(false)). */
bool ns_set_grad_enabled(bool on);
/* Backpropagates from root. root must be a one-element tensor unless seed (same shape as root)
 * is given. Gradients accumulate into the .grad of leaves that require grad. */
void ns_backward(ns_tensor *root, const ns_tensor *seed);
/* Sets every element of t->grad to zero (keeps the tensor); no-op without a grad. */
void ns_zero_grad(ns_tensor *t);

/* ------------------------------------------------------------------ ops
 * Every op: checks shapes/devices (one clear error naming op, shapes, devices and module),
 * computes through the tensor's backend, and records a tape node when grad mode is on and an
 * input requires grad. Shapes in the comments use N batch, C channels/features. */

/* (m,k) @ (k,n) -> (m,n). */
ns_tensor *ns_matmul(ns_tensor *a, ns_tensor *b);
/* x (N,in) @ w(out,in)^T + b(out) -> (N,out); b may be NULL. */
ns_tensor *ns_linear(ns_tensor *x, ns_tensor *w, ns_tensor *b);
/* Elementwise a+b, a-b, a*b; same shape. */
ns_tensor *ns_add(ns_tensor *a, ns_tensor *b);
ns_tensor *ns_sub(ns_tensor *a, ns_tensor *b);
ns_tensor *ns_mul(ns_tensor *a, ns_tensor *b);
/* x*s and x+s. */
ns_tensor *ns_scale(ns_tensor *x, float s);
ns_tensor *ns_add_scalar(ns_tensor *x, float s);
/* x (N,C[,H,W]) + b (C) broadcast over every dim but 1. */
ns_tensor *ns_bias_add(ns_tensor *x, ns_tensor *b);
/* View with a new shape (one dim may be -1). Shares storage. */
ns_tensor *ns_reshape(ns_tensor *x, int ndim, const int64_t *shape);
/* (N, ...) -> (N, prod(...)). */
ns_tensor *ns_flatten(ns_tensor *x);
/* 2-D transpose (copy). */
ns_tensor *ns_transpose(ns_tensor *x);
/* Sum / mean of all elements -> shape (1). */
ns_tensor *ns_sum(ns_tensor *x);
ns_tensor *ns_mean(ns_tensor *x);
/* Sum / mean over one axis; keepdim keeps it as size 1. */
ns_tensor *ns_sum_axis(ns_tensor *x, int axis, bool keepdim);
ns_tensor *ns_mean_axis(ns_tensor *x, int axis, bool keepdim);
/* Activations. gelu is the exact (erf) form, PyTorch's default. */
ns_tensor *ns_relu(ns_tensor *x);
ns_tensor *ns_leaky_relu(ns_tensor *x, float negative_slope);
ns_tensor *ns_gelu(ns_tensor *x);
ns_tensor *ns_tanh(ns_tensor *x);
ns_tensor *ns_sigmoid(ns_tensor *x);
/* Softmax / log-softmax over the last dim. */
ns_tensor *ns_softmax(ns_tensor *x);
ns_tensor *ns_log_softmax(ns_tensor *x);
/* Mean cross-entropy of logits (N,C) against int32 class indices (N) -> (1). */
ns_tensor *ns_cross_entropy(ns_tensor *logits, ns_tensor *target);
/* Mean squared error -> (1). */
ns_tensor *ns_mse(ns_tensor *pred, ns_tensor *target);
/* Inverted dropout: in training zeroes with probability p and scales by 1/(1-p); the mask is
 * drawn from the global counter-based generator. Identity when !training or p == 0. */
ns_tensor *ns_dropout(ns_tensor *x, float p, bool training);
/* Batch normalisation over dim 1 of (N,C) or (N,C,H,W). training: batch statistics, and the
 * running buffers (may be NULL) are updated with momentum (unbiased variance, like PyTorch);
 * else the running statistics are used. gamma/beta may be NULL (affine=False). */
ns_tensor *ns_batch_norm(ns_tensor *x, ns_tensor *gamma, ns_tensor *beta, ns_tensor *running_mean,
                         ns_tensor *running_var, bool training, float momentum, float eps);
/* x (N,Cin,H,W), w (Cout,Cin,kh,kw), b (Cout) or NULL -> (N,Cout,Ho,Wo). */
ns_tensor *ns_conv2d(ns_tensor *x, ns_tensor *w, ns_tensor *b, int stride, int padding);
/* Pooling over (N,C,H,W) with a square window. */
ns_tensor *ns_max_pool2d(ns_tensor *x, int kernel, int stride, int padding);
ns_tensor *ns_avg_pool2d(ns_tensor *x, int kernel, int stride, int padding);
/* Concatenates n tensors along axis (other dims equal). */
ns_tensor *ns_concat(ns_tensor *const *xs, int n, int axis);
/* Same values, cut from the tape. */
ns_tensor *ns_detach(ns_tensor *x);
/* Copy on another device; differentiable (the gradient moves back) and reported to the event
 * hooks as a transfer. Returns x itself when it is already on dev. */
ns_tensor *ns_to(ns_tensor *x, ns_device dev);

#endif
