/* Core ops: GEMM family, elementwise, scalar, broadcasting bias, views, reductions to a scalar,
 * activations, cross-entropy, detach and device moves. Each op's forward and backward sit
 * together; shapes in the comment above. The neural-network ops are in ops_nn.c. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

static ns_tensor *G(ns_node *n) { /* gradient flowing into the node's output */
    return ns_grad_peek(n->out);
}

/* ------------------------------------------------------------------ matmul: (m,k)@(k,n)->(m,n) */

static void matmul_bwd(ns_node *n) {
    ns_tensor *a = n->in[0], *b = n->in[1], *gy = G(n);
    const ns_backend *be = ns_be(a);
    int64_t m = a->shape[0], k = a->shape[1], nn = b->shape[1];
    if (a->requires_grad)
        be->gemm(false, true, m, k, nn, 1.0f, gy->data, b->data, 1.0f, ns_grad_of(a)->data);
    if (b->requires_grad)
        be->gemm(true, false, k, nn, m, 1.0f, a->data, gy->data, 1.0f, ns_grad_of(b)->data);
}

ns_tensor *ns_matmul(ns_tensor *a, ns_tensor *b) {
    ns_tensor *ts[2] = {a, b};
    ns_check_f32("matmul", a);
    ns_check_f32("matmul", b);
    ns_check_same_device("matmul", 2, ts);
    if (a->ndim != 2 || b->ndim != 2) ns_op_error("matmul", 2, ts, "expected two 2-D tensors");
    if (a->shape[1] != b->shape[0])
        ns_op_error("matmul", 2, ts, "inner dimensions differ (%lld vs %lld)",
                    (long long)a->shape[1], (long long)b->shape[0]);
    ns_tensor *y = ns_tmp(NS_DIMS(a->shape[0], b->shape[1]), a->device);
    ns_be(a)->gemm(false, false, a->shape[0], b->shape[1], a->shape[1], 1.0f, a->data, b->data,
                   0.0f, y->data);
    if (ns_needs_grad(2, ts)) ns_node_new("matmul", matmul_bwd, y, 2, ts);
    return y;
}

/* ------------------------------------------------------------------ linear: x(N,in) w(out,in)
 * b(out) */

static void linear_bwd(ns_node *n) {
    ns_tensor *x = n->in[0], *w = n->in[1], *b = n->in[2], *gy = G(n);
    const ns_backend *be = ns_be(x);
    int64_t N = x->shape[0], in = x->shape[1], out = w->shape[0];
    if (x->requires_grad)
        be->gemm(false, false, N, in, out, 1.0f, gy->data, w->data, 1.0f, ns_grad_of(x)->data);
    if (w->requires_grad)
        be->gemm(true, false, out, in, N, 1.0f, gy->data, x->data, 1.0f, ns_grad_of(w)->data);
    if (b && b->requires_grad) {
        ns_tensor *t = ns_tmp(NS_DIMS(out), b->device);
        be->reduce(gy->data, t->data, 1, N, out, 1.0f);
        be->axpy(1.0f, t->data, ns_grad_of(b)->data, out);
    }
}

ns_tensor *ns_linear(ns_tensor *x, ns_tensor *w, ns_tensor *b) {
    ns_tensor *ts[3] = {x, w, b};
    ns_check_f32("linear", x);
    ns_check_same_device("linear", b ? 3 : 2, ts);
    if (x->ndim != 2 || w->ndim != 2)
        ns_op_error("linear", b ? 3 : 2, ts,
                    "expected input (N, in_features) and weight "
                    "(out_features, in_features)");
    if (x->shape[1] != w->shape[1])
        ns_op_error("linear", b ? 3 : 2, ts, "input has %lld features, expected %lld",
                    (long long)x->shape[1], (long long)w->shape[1]);
    if (b && (b->ndim != 1 || b->shape[0] != w->shape[0]))
        ns_op_error("linear", 3, ts, "bias must have %lld elements", (long long)w->shape[0]);
    int64_t N = x->shape[0], out = w->shape[0];
    ns_tensor *y = ns_tmp(NS_DIMS(N, out), x->device);
    const ns_backend *be = ns_be(x);
    be->gemm(false, true, N, out, x->shape[1], 1.0f, x->data, w->data, 0.0f, y->data);
    if (b) be->bias_add(y->data, b->data, y->data, N, out, 1);
    if (ns_needs_grad(3, ts)) ns_node_new("linear", linear_bwd, y, 3, ts);
    return y;
}

/* ------------------------------------------------------------------ elementwise a (op) b, same
 * shape */

static void check_same_shape(const char *op, ns_tensor *a, ns_tensor *b) {
    ns_tensor *ts[2] = {a, b};
    ns_check_f32(op, a);
    ns_check_f32(op, b);
    ns_check_same_device(op, 2, ts);
    bool same = a->ndim == b->ndim;
    for (int i = 0; same && i < a->ndim; i++) same = a->shape[i] == b->shape[i];
    if (!same) ns_op_error(op, 2, ts, "shapes must match");
}

static void add_bwd(ns_node *n) {
    ns_tensor *gy = G(n);
    float sign = n->f[0];
    if (n->in[0]->requires_grad) ns_grad_pass_through(n->in[0], gy);
    if (n->in[1]->requires_grad)
        ns_be(gy)->axpy(sign, gy->data, ns_grad_of(n->in[1])->data, gy->numel);
}

static ns_tensor *add_sub(const char *op, ns_tensor *a, ns_tensor *b, float sign) {
    check_same_shape(op, a, b);
    ns_tensor *y = ns_tmp_like(a);
    ns_be(a)->binary(sign > 0 ? NS_BIN_ADD : NS_BIN_SUB, a->data, b->data, y->data, a->numel);
    ns_tensor *ts[2] = {a, b};
    if (ns_needs_grad(2, ts)) ns_node_new(op, add_bwd, y, 2, ts)->f[0] = sign;
    return y;
}

ns_tensor *ns_add(ns_tensor *a, ns_tensor *b) {
    return add_sub("add", a, b, 1.0f);
}

ns_tensor *ns_sub(ns_tensor *a, ns_tensor *b) {
    return add_sub("sub", a, b, -1.0f);
}

static void mul_bwd(ns_node *n) {
    ns_tensor *a = n->in[0], *b = n->in[1], *gy = G(n);
    const ns_backend *be = ns_be(a);
    if (a->requires_grad) be->mul_acc(gy->data, b->data, ns_grad_of(a)->data, a->numel);
    if (b->requires_grad) be->mul_acc(gy->data, a->data, ns_grad_of(b)->data, b->numel);
}

ns_tensor *ns_mul(ns_tensor *a, ns_tensor *b) {
    check_same_shape("mul", a, b);
    ns_tensor *y = ns_tmp_like(a);
    ns_be(a)->binary(NS_BIN_MUL, a->data, b->data, y->data, a->numel);
    ns_tensor *ts[2] = {a, b};
    if (ns_needs_grad(2, ts)) ns_node_new("mul", mul_bwd, y, 2, ts);
    return y;
}

/* ------------------------------------------------------------------ scalar ops: x*s, x+s */

static void scalar_bwd(ns_node *n) {
    ns_tensor *x = n->in[0], *gy = G(n);
    ns_be(x)->axpy(n->f[0], gy->data, ns_grad_of(x)->data, x->numel);
}

static ns_tensor *affine(const char *op, ns_tensor *x, float s, float t) {
    ns_check_f32(op, x);
    ns_tensor *y = ns_tmp_like(x);
    ns_be(x)->affine(x->data, y->data, x->numel, s, t);
    if (ns_needs_grad(1, &x)) ns_node_new(op, scalar_bwd, y, 1, &x)->f[0] = s;
    return y;
}

ns_tensor *ns_scale(ns_tensor *x, float s) {
    return affine("scale", x, s, 0.0f);
}

ns_tensor *ns_add_scalar(ns_tensor *x, float s) {
    return affine("add_scalar", x, 1.0f, s);
}

/* ------------------------------------------------------------------ bias_add: x(N,C,...) + b(C) */

static void bias_add_bwd(ns_node *n) {
    ns_tensor *x = n->in[0], *b = n->in[1], *gy = G(n);
    const ns_backend *be = ns_be(x);
    int64_t N = n->i[0], C = n->i[1], inner = n->i[2];
    if (x->requires_grad) ns_grad_pass_through(x, gy);
    if (b->requires_grad) {
        ns_tensor *t1 = ns_tmp(NS_DIMS(C * inner), x->device);
        be->reduce(gy->data, t1->data, 1, N, C * inner, 1.0f);
        ns_tensor *t2 = ns_tmp(NS_DIMS(C), x->device);
        be->reduce(t1->data, t2->data, C, inner, 1, 1.0f);
        be->axpy(1.0f, t2->data, ns_grad_of(b)->data, C);
    }
}

ns_tensor *ns_bias_add(ns_tensor *x, ns_tensor *b) {
    ns_tensor *ts[2] = {x, b};
    ns_check_f32("bias_add", x);
    ns_check_same_device("bias_add", 2, ts);
    if (x->ndim < 2 || b->ndim != 1 || b->shape[0] != x->shape[1])
        ns_op_error("bias_add", 2, ts, "bias must be 1-D with one value per channel (dim 1)");
    int64_t N = x->shape[0], C = x->shape[1], NC = N * C, inner = NC ? x->numel / NC : 0;
    ns_tensor *y = ns_tmp_like(x);
    ns_be(x)->bias_add(x->data, b->data, y->data, N, C, inner);
    if (ns_needs_grad(2, ts)) {
        ns_node *nd = ns_node_new("bias_add", bias_add_bwd, y, 2, ts);
        nd->i[0] = N;
        nd->i[1] = C;
        nd->i[2] = inner;
    }
    return y;
}

/* ------------------------------------------------------------------ views */

static void view_bwd(ns_node *n) {
    ns_tensor *x = n->in[0], *gy = G(n);
    ns_grad_pass_through(x, ns_view_of(gy, x->ndim, x->shape));
}

ns_tensor *ns_reshape(ns_tensor *x, int ndim, const int64_t *shape) {
    if (ndim < 1 || ndim > NS_MAX_DIMS)
        ns_op_error("reshape", 1, &x, "new shape must have 1 to %d dims, got %d", NS_MAX_DIMS,
                    ndim);
    int64_t s[NS_MAX_DIMS], known = 1;
    int infer = -1;
    for (int i = 0; i < ndim; i++) {
        s[i] = shape[i];
        if (shape[i] == -1) {
            if (infer >= 0) ns_op_error("reshape", 1, &x, "only one dimension can be -1");
            infer = i;
        } else if (shape[i] < 0) {
            ns_op_error("reshape", 1, &x, "invalid size %lld in dim %d", (long long)shape[i], i);
        } else {
            known *= shape[i];
        }
    }
    if (infer >= 0) s[infer] = known ? x->numel / known : 0;
    int64_t total = 1;
    for (int i = 0; i < ndim; i++) total *= s[i];
    if (total != x->numel || (infer >= 0 && known && x->numel % known)) {
        char buf[64] = "";
        size_t off = 0;
        for (int i = 0; i < ndim; i++)
            off += (size_t)snprintf(buf + off, sizeof buf - off, i ? "x%lld" : "%lld",
                                    (long long)shape[i]);
        ns_op_error("reshape", 1, &x, "shape [%s] is invalid for %lld elements", buf,
                    (long long)x->numel);
    }
    ns_tensor *y = ns_view_of(x, ndim, s);
    if (ns_needs_grad(1, &x)) ns_node_new("reshape", view_bwd, y, 1, &x);
    return y;
}

ns_tensor *ns_flatten(ns_tensor *x) {
    if (x->ndim < 1) ns_op_error("flatten", 1, &x, "expected at least 1 dim");
    return ns_reshape(x, NS_DIMS(x->shape[0], -1));
}

static void detach_bwd(ns_node *n) {
    (void)n; /* never recorded */
}

ns_tensor *ns_detach(ns_tensor *x) {
    (void)detach_bwd;
    ns_tensor *y = ns_view_of(x, x->ndim, x->shape);
    y->requires_grad = false;
    return y;
}

/* ------------------------------------------------------------------ sum / mean of everything ->
 * (1) */

static void sum_bwd(ns_node *n) {
    ns_tensor *x = n->in[0], *gy = G(n);
    ns_be(x)->expand_acc(gy->data, ns_grad_of(x)->data, 1, x->numel, 1, n->f[0]);
}

static ns_tensor *sum_all(const char *op, ns_tensor *x, float scale) {
    ns_check_f32(op, x);
    ns_tensor *y = ns_tmp(NS_DIMS(1), x->device);
    ns_be(x)->reduce(x->data, y->data, 1, x->numel, 1, scale);
    if (ns_needs_grad(1, &x)) ns_node_new(op, sum_bwd, y, 1, &x)->f[0] = scale;
    return y;
}

ns_tensor *ns_sum(ns_tensor *x) {
    return sum_all("sum", x, 1.0f);
}

ns_tensor *ns_mean(ns_tensor *x) {
    if (x->numel == 0) ns_op_error("mean", 1, &x, "mean of an empty tensor");
    return sum_all("mean", x, 1.0f / (float)x->numel);
}

/* ------------------------------------------------------------------ activations (elementwise) */

static void unary_bwd(ns_node *n) {
    ns_tensor *x = n->in[0], *gy = G(n);
    ns_be(x)->unary_bwd_acc((enum ns_unary_op)n->i[0], x->data, n->out->data, gy->data,
                            ns_grad_of(x)->data, x->numel, n->f[0]);
}

static ns_tensor *unary(const char *op, enum ns_unary_op u, ns_tensor *x, float alpha) {
    ns_check_f32(op, x);
    ns_tensor *y = ns_tmp_like(x);
    ns_be(x)->unary(u, x->data, y->data, x->numel, alpha);
    if (ns_needs_grad(1, &x)) {
        ns_node *nd = ns_node_new(op, unary_bwd, y, 1, &x);
        nd->i[0] = u;
        nd->f[0] = alpha;
    }
    return y;
}

ns_tensor *ns_relu(ns_tensor *x) {
    return unary("relu", NS_UN_RELU, x, 0.0f);
}
ns_tensor *ns_leaky_relu(ns_tensor *x, float slope) {
    return unary("leaky_relu", NS_UN_LEAKY_RELU, x, slope);
}
ns_tensor *ns_gelu(ns_tensor *x) {
    return unary("gelu", NS_UN_GELU, x, 0.0f);
}
ns_tensor *ns_tanh(ns_tensor *x) {
    return unary("tanh", NS_UN_TANH, x, 0.0f);
}
ns_tensor *ns_sigmoid(ns_tensor *x) {
    return unary("sigmoid", NS_UN_SIGMOID, x, 0.0f);
}

/* ------------------------------------------------------------------ cross-entropy: logits(N,C),
 * target(N) int32 -> (1) */

static void ce_bwd(ns_node *n) {
    ns_tensor *x = n->in[0], *gy = G(n);
    ns_be(x)->cross_entropy_bwd_acc(n->saved[0]->data, ns_i32(n->in[1]), gy->data,
                                    ns_grad_of(x)->data, x->shape[0], x->shape[1]);
}

ns_tensor *ns_cross_entropy(ns_tensor *logits, ns_tensor *target) {
    ns_tensor *ts[2] = {logits, target};
    ns_check_f32("cross_entropy", logits);
    ns_check_same_device("cross_entropy", 2, ts);
    if (logits->ndim != 2)
        ns_op_error("cross_entropy", 2, ts, "expected logits of shape (N, classes)");
    if (target->dtype != NS_I32 || target->ndim != 1 || target->shape[0] != logits->shape[0])
        ns_op_error("cross_entropy", 2, ts,
                    "expected int32 class indices of shape (%lld), one per row of the logits",
                    (long long)logits->shape[0]);
    int64_t N = logits->shape[0], C = logits->shape[1];
    if (N == 0) ns_op_error("cross_entropy", 2, ts, "empty batch");
    ns_tensor *logp = ns_tmp_like(logits);
    ns_tensor *y = ns_tmp(NS_DIMS(1), logits->device);
    const ns_backend *be = ns_be(logits);
    int64_t bad = be->cross_entropy(logits->data, ns_i32(target), logp->data, y->data, N, C);
    if (bad >= 0) {
        int32_t v;
        be->to_host(&v, ns_i32(target) + bad, 4);
        ns_op_error("cross_entropy", 2, ts,
                    "target %d at row %lld is out of range for %lld "
                    "classes",
                    v, (long long)bad, (long long)C);
    }
    if (ns_needs_grad(1, &logits)) ns_node_new("cross_entropy", ce_bwd, y, 2, ts)->saved[0] = logp;
    return y;
}

/* ------------------------------------------------------------------ to(device): differentiable
 * move */

static void to_bwd(ns_node *n) {
    ns_tensor *x = n->in[0], *gy = G(n);
    ns_tensor *g = ns_tmp_like(x);
    ns_tensor_copy(g, gy);
    ns_grad_pass_through(x, g);
}

ns_tensor *ns_to(ns_tensor *x, ns_device dev) {
    if (x->device == dev) return x;
    ns_tensor *y =
        x->dtype == NS_I32 ? ns_tmp_i32(x->ndim, x->shape, dev) : ns_tmp(x->ndim, x->shape, dev);
    ns_tensor_copy(y, x);
    ns_event ev = {.kind = NS_EV_TRANSFER,
                   .module = ns_module_current(),
                   .tensor = x,
                   .src = x->device,
                   .dst = dev,
                   .bytes = x->numel * 4};
    ns_emit_event(&ev);
    if (x->dtype == NS_F32 && ns_needs_grad(1, &x)) ns_node_new("to", to_bwd, y, 1, &x);
    return y;
}
