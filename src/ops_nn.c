/* Neural-network ops: transpose, axis reductions, softmax family, mse, dropout, batch norm,
 * conv2d (im2col + GEMM), pooling and concat. Forward and backward sit together. */
#include <math.h>
#include <string.h>

#include "internal.h"

static ns_tensor *G(ns_node *n) {
    return ns_grad_peek(n->out);
}

/* ------------------------------------------------------------------ transpose: (r,c) -> (c,r) */

static void transpose_bwd(ns_node *n) {
    ns_tensor *x = n->in[0], *gy = G(n);
    ns_be(x)->transpose(gy->data, ns_grad_of(x)->data, x->shape[1], x->shape[0], true);
}

ns_tensor *ns_transpose(ns_tensor *x) {
    ns_check_f32("transpose", x);
    if (x->ndim != 2) ns_op_error("transpose", 1, &x, "expected a 2-D tensor");
    ns_tensor *y = ns_tmp(NS_DIMS(x->shape[1], x->shape[0]), x->device);
    ns_be(x)->transpose(x->data, y->data, x->shape[0], x->shape[1], false);
    if (ns_needs_grad(1, &x)) ns_node_new("transpose", transpose_bwd, y, 1, &x);
    return y;
}

/* ------------------------------------------------------------------ sum/mean over one axis */

static void axis_split(ns_tensor *x, int axis, int64_t *outer, int64_t *len, int64_t *inner) {
    *outer = 1;
    *inner = 1;
    for (int i = 0; i < axis; i++) *outer *= x->shape[i];
    for (int i = axis + 1; i < x->ndim; i++) *inner *= x->shape[i];
    *len = x->shape[axis];
}

static void sum_axis_bwd(ns_node *n) {
    ns_tensor *x = n->in[0], *gy = G(n);
    ns_be(x)->expand_acc(gy->data, ns_grad_of(x)->data, n->i[0], n->i[1], n->i[2], n->f[0]);
}

static ns_tensor *reduce_axis(const char *op, ns_tensor *x, int axis, bool keepdim, bool mean) {
    ns_check_f32(op, x);
    if (axis < 0) axis += x->ndim;
    if (axis < 0 || axis >= x->ndim)
        ns_op_error(op, 1, &x, "axis out of range for a %d-D tensor", x->ndim);
    int64_t outer, len, inner;
    axis_split(x, axis, &outer, &len, &inner);
    if (mean && len == 0) ns_op_error(op, 1, &x, "mean over an empty axis");
    float scale = mean ? 1.0f / (float)len : 1.0f;
    int64_t shape[NS_MAX_DIMS];
    int nd = 0;
    for (int i = 0; i < x->ndim; i++) {
        if (i != axis)
            shape[nd++] = x->shape[i];
        else if (keepdim)
            shape[nd++] = 1;
    }
    if (nd == 0) shape[nd++] = 1;
    ns_tensor *y = ns_tmp(nd, shape, x->device);
    ns_be(x)->reduce(x->data, y->data, outer, len, inner, scale);
    if (ns_needs_grad(1, &x)) {
        ns_node *nd_ = ns_node_new(op, sum_axis_bwd, y, 1, &x);
        nd_->i[0] = outer;
        nd_->i[1] = len;
        nd_->i[2] = inner;
        nd_->f[0] = scale;
    }
    return y;
}

ns_tensor *ns_sum_axis(ns_tensor *x, int axis, bool keepdim) {
    return reduce_axis("sum_axis", x, axis, keepdim, false);
}

ns_tensor *ns_mean_axis(ns_tensor *x, int axis, bool keepdim) {
    return reduce_axis("mean_axis", x, axis, keepdim, true);
}

/* ------------------------------------------------------------------ softmax / log_softmax over the
 * last dim */

static void softmax_bwd(ns_node *n) {
    ns_tensor *x = n->in[0], *gy = G(n);
    int64_t cols = x->shape[x->ndim - 1];
    ns_be(x)->softmax_bwd_acc(n->out->data, gy->data, ns_grad_of(x)->data, x->numel / cols, cols,
                              n->i[0] != 0);
}

static ns_tensor *softmax(const char *op, ns_tensor *x, bool log) {
    ns_check_f32(op, x);
    if (x->ndim < 1 || x->shape[x->ndim - 1] == 0)
        ns_op_error(op, 1, &x, "expected a non-empty last dimension");
    int64_t cols = x->shape[x->ndim - 1];
    ns_tensor *y = ns_tmp_like(x);
    ns_be(x)->softmax(x->data, y->data, x->numel / cols, cols, log);
    if (ns_needs_grad(1, &x)) ns_node_new(op, softmax_bwd, y, 1, &x)->i[0] = log;
    return y;
}

ns_tensor *ns_softmax(ns_tensor *x) {
    return softmax("softmax", x, false);
}

ns_tensor *ns_log_softmax(ns_tensor *x) {
    return softmax("log_softmax", x, true);
}

/* ------------------------------------------------------------------ mse: mean((p - t)^2) -> (1) */

ns_tensor *ns_mse(ns_tensor *pred, ns_tensor *target) {
    ns_tensor *ts[2] = {pred, target};
    ns_check_f32("mse", pred);
    ns_check_f32("mse", target);
    ns_check_same_device("mse", 2, ts);
    bool same = pred->ndim == target->ndim;
    for (int i = 0; same && i < pred->ndim; i++) same = pred->shape[i] == target->shape[i];
    if (!same) ns_op_error("mse", 2, ts, "prediction and target shapes must match");
    if (pred->numel == 0) ns_op_error("mse", 2, ts, "mean of an empty tensor");
    ns_tensor *d = ns_sub(pred, target); /* records the tape */
    return ns_mean(ns_mul(d, d));
}

/* ------------------------------------------------------------------ dropout */

static void dropout_bwd(ns_node *n) {
    ns_tensor *x = n->in[0], *gy = G(n);
    if (n->f[0] >= 1.0f) { /* p = 1: the output was all zeros, so is the gradient */
        ns_grad_of(x);
        return;
    }
    ns_be(x)->dropout(gy->data, ns_grad_of(x)->data, x->numel, n->f[0], (uint64_t)n->i[0],
                      (uint64_t)n->i[1], true);
}

ns_tensor *ns_dropout(ns_tensor *x, float p, bool training) {
    ns_check_f32("dropout", x);
    if (!(p >= 0.0f && p <= 1.0f))
        ns_op_error("dropout", 1, &x, "probability must be in [0, 1], got %g", (double)p);
    if (!training || p == 0.0f) return x;
    ns_tensor *y = ns_tmp_like(x);
    uint64_t seed, c0;
    ns_rng_get_state(&seed, &c0);
    uint64_t counter = ns_rng_advance((uint64_t)x->numel);
    if (p >= 1.0f)
        ns_be(x)->fill(y->data, y->numel, 0.0f);
    else
        ns_be(x)->dropout(x->data, y->data, x->numel, p, seed, counter, false);
    if (ns_needs_grad(1, &x)) {
        ns_node *nd = ns_node_new("dropout", dropout_bwd, y, 1, &x);
        nd->f[0] = p;
        nd->i[0] = (int64_t)seed;
        nd->i[1] = (int64_t)counter;
    }
    return y;
}

/* ------------------------------------------------------------------ batch norm over dim 1 of
 * (N,C[,H,W]) */

static void bn_bwd(ns_node *n) {
    ns_tensor *x = n->in[0], *gamma = n->in[1], *beta = n->in[2], *gy = G(n);
    ns_tensor *mean = n->saved[0], *invstd = n->saved[1];
    float *gx = x->requires_grad ? ns_grad_of(x)->data : NULL;
    float *gg = gamma && gamma->requires_grad ? ns_grad_of(gamma)->data : NULL;
    float *gb = beta && beta->requires_grad ? ns_grad_of(beta)->data : NULL;
    ns_be(x)->bn_bwd_acc(x->data, mean->data, invstd->data, gamma ? gamma->data : NULL, gy->data,
                         gx, gg, gb, n->i[0], n->i[1], n->i[2], n->i[3] != 0);
}

ns_tensor *ns_batch_norm(ns_tensor *x, ns_tensor *gamma, ns_tensor *beta, ns_tensor *rmean,
                         ns_tensor *rvar, bool training, float momentum, float eps) {
    ns_tensor *ts[5] = {x, gamma, beta, rmean, rvar};
    ns_check_f32("batch_norm", x);
    ns_check_same_device("batch_norm", 5, ts);
    if (x->ndim != 2 && x->ndim != 4)
        ns_op_error("batch_norm", 1, &x, "expected a 2-D (N,C) or 4-D (N,C,H,W) input");
    int64_t N = x->shape[0], C = x->shape[1], inner = x->ndim == 4 ? x->shape[2] * x->shape[3] : 1;
    for (int i = 1; i < 5; i++)
        if (ts[i] && (ts[i]->ndim != 1 || ts[i]->shape[0] != C))
            ns_op_error("batch_norm", 5, ts,
                        "weight, bias and running statistics must have %lld "
                        "elements (one per channel)",
                        (long long)C);
    if (!training && (!rmean || !rvar))
        ns_op_error("batch_norm", 1, &x, "inference mode needs running_mean and running_var");
    if (training && N * inner <= 1)
        ns_op_error("batch_norm", 1, &x, "expected more than 1 value per channel when training");
    const ns_backend *be = ns_be(x);
    ns_tensor *mean = ns_tmp(NS_DIMS(C), x->device);
    ns_tensor *invstd = ns_tmp(NS_DIMS(C), x->device);
    if (training) {
        ns_tensor *var = ns_tmp(NS_DIMS(C), x->device);
        be->bn_stats(x->data, mean->data, var->data, N, C, inner);
        be->bn_invstd(var->data, invstd->data, C, eps);
        if (rmean && rvar)
            be->bn_update_running(rmean->data, rvar->data, mean->data, var->data, C, momentum,
                                  N * inner);
    } else {
        be->copy(mean->data, rmean->data, (size_t)C * 4);
        be->bn_invstd(rvar->data, invstd->data, C, eps);
    }
    ns_tensor *y = ns_tmp_like(x);
    be->bn_apply(x->data, mean->data, invstd->data, gamma ? gamma->data : NULL,
                 beta ? beta->data : NULL, y->data, N, C, inner);
    ns_tensor *ins[3] = {x, gamma, beta};
    if (ns_needs_grad(3, ins)) {
        ns_node *nd = ns_node_new("batch_norm", bn_bwd, y, 3, ins);
        nd->saved[0] = mean;
        nd->saved[1] = invstd;
        nd->i[0] = N;
        nd->i[1] = C;
        nd->i[2] = inner;
        nd->i[3] = training;
    }
    return y;
}

/* ------------------------------------------------------------------ conv2d: x(N,Cin,H,W)
 * w(Cout,Cin,k,k) b(Cout) */

static int64_t out_size(int64_t in, int64_t k, int64_t stride, int64_t pad) {
    return (in + 2 * pad - k) / stride + 1;
}

static void conv2d_bwd(ns_node *n) {
    ns_tensor *x = n->in[0], *w = n->in[1], *b = n->in[2], *gy = G(n), *col = n->saved[0];
    const ns_backend *be = ns_be(x);
    int64_t N = x->shape[0], cin = x->shape[1], H = x->shape[2], W = x->shape[3];
    int64_t cout = w->shape[0], k = w->shape[2], stride = n->i[0], pad = n->i[1];
    int64_t ho = gy->shape[2], wo = gy->shape[3], K = cin * k * k, P = ho * wo;
    float *gw = w->requires_grad ? ns_grad_of(w)->data : NULL;
    float *gx = x->requires_grad ? ns_grad_of(x)->data : NULL;
    ns_tensor *gcol = gx && col ? ns_tmp(NS_DIMS(K, P), x->device) : NULL;
    if (!col) /* the backend convolves whole batches (cuDNN) */
        be->conv2d_bwd_acc(x->data, w->data, gy->data, gx, gw, N, cin, H, W, cout, k, stride, pad,
                           ho, wo);
    for (int64_t i = 0; col && i < N; i++) {
        const float *gyi = gy->data + i * cout * P;
        /* gw (cout,K) += gy_i (cout,P) @ col_i(K,P)^T */
        if (gw) be->gemm(false, true, cout, K, P, 1.0f, gyi, col->data + i * K * P, 1.0f, gw);
        if (gx) {
            /* gcol (K,P) = w^T (K,cout) @ gy_i (cout,P) */
            be->gemm(true, false, K, P, cout, 1.0f, w->data, gyi, 0.0f, gcol->data);
            be->col2im_acc(gcol->data, gx + i * cin * H * W, cin, H, W, k, stride, pad, ho, wo);
        }
    }
    if (b && b->requires_grad) {
        ns_tensor *t1 = ns_tmp(NS_DIMS(cout * P), x->device);
        be->reduce(gy->data, t1->data, 1, N, cout * P, 1.0f);
        ns_tensor *t2 = ns_tmp(NS_DIMS(cout), x->device);
        be->reduce(t1->data, t2->data, cout, P, 1, 1.0f);
        be->axpy(1.0f, t2->data, ns_grad_of(b)->data, cout);
    }
}

ns_tensor *ns_conv2d(ns_tensor *x, ns_tensor *w, ns_tensor *b, int stride, int padding) {
    ns_tensor *ts[3] = {x, w, b};
    int nts = b ? 3 : 2;
    ns_check_f32("conv2d", x);
    ns_check_same_device("conv2d", nts, ts);
    if (x->ndim != 4 || w->ndim != 4)
        ns_op_error("conv2d", nts, ts, "expected input (N,C,H,W) and weight (Cout,Cin,k,k)");
    if (w->shape[2] != w->shape[3])
        ns_op_error("conv2d", nts, ts, "only square kernels are supported");
    if (x->shape[1] != w->shape[1])
        ns_op_error("conv2d", nts, ts, "input has %lld channels, expected %lld",
                    (long long)x->shape[1], (long long)w->shape[1]);
    if (stride < 1 || padding < 0)
        ns_op_error("conv2d", nts, ts, "invalid stride %d or padding %d", stride, padding);
    if (b && (b->ndim != 1 || b->shape[0] != w->shape[0]))
        ns_op_error("conv2d", nts, ts, "bias must have %lld elements", (long long)w->shape[0]);
    int64_t N = x->shape[0], cin = x->shape[1], H = x->shape[2], W = x->shape[3];
    int64_t cout = w->shape[0], k = w->shape[2];
    int64_t ho = out_size(H, k, stride, padding), wo = out_size(W, k, stride, padding);
    if (ho < 1 || wo < 1)
        ns_op_error("conv2d", nts, ts, "kernel %lld with padding %d is larger than the input",
                    (long long)k, padding);
    int64_t K = cin * k * k, P = ho * wo;
    const ns_backend *be = ns_be(x);
    ns_tensor *y = ns_tmp(NS_DIMS(N, cout, ho, wo), x->device);
    ns_tensor *col = NULL; /* im2col path: kept for the weight gradient */
    if (be->conv2d)
        be->conv2d(x->data, w->data, y->data, N, cin, H, W, cout, k, stride, padding, ho, wo);
    else
        col = ns_tmp(NS_DIMS(N, K, P), x->device);
    for (int64_t i = 0; col && i < N; i++) {
        float *ci = col->data + i * K * P;
        be->im2col(x->data + i * cin * H * W, ci, cin, H, W, k, stride, padding, ho, wo);
        be->gemm(false, false, cout, P, K, 1.0f, w->data, ci, 0.0f, y->data + i * cout * P);
    }
    if (b) be->bias_add(y->data, b->data, y->data, N, cout, P);
    if (ns_needs_grad(3, ts)) {
        ns_node *nd = ns_node_new("conv2d", conv2d_bwd, y, 3, ts);
        nd->saved[0] = col;
        nd->i[0] = stride;
        nd->i[1] = padding;
    }
    return y;
}

/* ------------------------------------------------------------------ pooling over (N,C,H,W) */

static void pool_dims(const char *op, ns_tensor *x, int k, int stride, int pad, int64_t *ho,
                      int64_t *wo) {
    ns_check_f32(op, x);
    if (x->ndim != 4) ns_op_error(op, 1, &x, "expected a 4-D (N,C,H,W) input");
    if (k < 1 || stride < 1 || pad < 0 || pad * 2 > k)
        ns_op_error(op, 1, &x,
                    "invalid kernel %d, stride %d or padding %d (padding must be at "
                    "most half the kernel)",
                    k, stride, pad);
    *ho = out_size(x->shape[2], k, stride, pad);
    *wo = out_size(x->shape[3], k, stride, pad);
    if (*ho < 1 || *wo < 1) ns_op_error(op, 1, &x, "kernel %d is larger than the input", k);
}

static void max_pool_bwd(ns_node *n) {
    ns_tensor *x = n->in[0], *gy = G(n);
    ns_be(x)->max_pool_bwd_acc(gy->data, ns_i32(n->saved[0]), ns_grad_of(x)->data,
                               x->shape[0] * x->shape[1], x->shape[2] * x->shape[3],
                               gy->shape[2] * gy->shape[3]);
}

ns_tensor *ns_max_pool2d(ns_tensor *x, int k, int stride, int pad) {
    int64_t ho, wo;
    pool_dims("max_pool2d", x, k, stride, pad, &ho, &wo);
    ns_tensor *y = ns_tmp(NS_DIMS(x->shape[0], x->shape[1], ho, wo), x->device);
    ns_tensor *am = ns_tmp_i32(y->ndim, y->shape, x->device);
    ns_be(x)->max_pool(x->data, y->data, ns_i32(am), x->shape[0] * x->shape[1], x->shape[2],
                       x->shape[3], k, stride, pad, ho, wo);
    if (ns_needs_grad(1, &x)) ns_node_new("max_pool2d", max_pool_bwd, y, 1, &x)->saved[0] = am;
    return y;
}

static void avg_pool_bwd(ns_node *n) {
    ns_tensor *x = n->in[0], *gy = G(n);
    ns_be(x)->avg_pool_bwd_acc(gy->data, ns_grad_of(x)->data, x->shape[0] * x->shape[1],
                               x->shape[2], x->shape[3], n->i[0], n->i[1], n->i[2], gy->shape[2],
                               gy->shape[3]);
}

ns_tensor *ns_avg_pool2d(ns_tensor *x, int k, int stride, int pad) {
    int64_t ho, wo;
    pool_dims("avg_pool2d", x, k, stride, pad, &ho, &wo);
    ns_tensor *y = ns_tmp(NS_DIMS(x->shape[0], x->shape[1], ho, wo), x->device);
    ns_be(x)->avg_pool(x->data, y->data, x->shape[0] * x->shape[1], x->shape[2], x->shape[3], k,
                       stride, pad, ho, wo);
    if (ns_needs_grad(1, &x)) {
        ns_node *nd = ns_node_new("avg_pool2d", avg_pool_bwd, y, 1, &x);
        nd->i[0] = k;
        nd->i[1] = stride;
        nd->i[2] = pad;
    }
    return y;
}

/* ------------------------------------------------------------------ concat along an axis */

static void concat_bwd(ns_node *n) {
    ns_tensor *gy = G(n);
    int64_t outer = n->i[0], inner = n->i[1], axis_total = n->i[2], off = 0;
    for (int t = 0; t < n->n_in; t++) {
        ns_tensor *x = n->in_many[t];
        int64_t len = x->shape[n->i[3]] * inner;
        if (x->requires_grad)
            ns_be(x)->copy_blocks(gy->data + off, axis_total * inner, ns_grad_of(x)->data, len,
                                  outer, len, true);
        off += len;
    }
}

ns_tensor *ns_concat(ns_tensor *const *xs, int n, int axis) {
    if (n < 1) ns_error("concat: expected at least one tensor");
    ns_tensor *x0 = xs[0];
    ns_check_f32("concat", x0);
    ns_check_same_device("concat", n, xs);
    if (axis < 0) axis += x0->ndim;
    if (axis < 0 || axis >= x0->ndim)
        ns_op_error("concat", 1, &x0, "axis out of range for a %d-D tensor", x0->ndim);
    int64_t total = 0;
    for (int t = 0; t < n; t++) {
        bool ok = xs[t]->ndim == x0->ndim && xs[t]->dtype == NS_F32;
        for (int d = 0; ok && d < x0->ndim; d++) ok = d == axis || xs[t]->shape[d] == x0->shape[d];
        if (!ok)
            ns_op_error("concat", n, xs, "tensor %d does not match tensor 0 outside axis %d", t,
                        axis);
        total += xs[t]->shape[axis];
    }
    int64_t outer, len, inner;
    axis_split(x0, axis, &outer, &len, &inner);
    int64_t shape[NS_MAX_DIMS];
    memcpy(shape, x0->shape, sizeof shape);
    shape[axis] = total;
    ns_tensor *y = ns_tmp(x0->ndim, shape, x0->device);
    int64_t off = 0;
    for (int t = 0; t < n; t++) {
        int64_t l = xs[t]->shape[axis] * inner;
        ns_be(x0)->copy_blocks(xs[t]->data, l, y->data + off, total * inner, outer, l, false);
        off += l;
    }
    if (ns_needs_grad(n, xs)) {
        ns_node *nd = ns_node_new("concat", concat_bwd, y, n, xs);
        if (!nd->in_many) {
            nd->in_many = ns_scope_alloc(sizeof(ns_tensor *) * (size_t)n);
            memcpy(nd->in_many, xs, sizeof(ns_tensor *) * (size_t)n);
        }
        nd->i[0] = outer;
        nd->i[1] = inner;
        nd->i[2] = total;
        nd->i[3] = axis;
    }
    return y;
}
