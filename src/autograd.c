/* Tape autograd: nodes recorded in creation order (a topological order), replayed in reverse
 * by ns_backward(). Tape nodes live in the step scope; the tape is cleared by ns_scope_reset().
 *
 * Gradients: a leaf's .grad is long-lived and accumulates across backward calls (PyTorch
 * semantics). A non-leaf's .grad belongs to one backward pass (grad_pass), so a second
 * backward in the same step starts from zero for intermediates. Unlike PyTorch, the graph is
 * kept until the step ends, so backward may run twice over it without retain_graph. */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static _Thread_local bool g_grad_enabled = true;
static _Thread_local ns_node **g_tape;
static _Thread_local size_t g_tape_n, g_tape_cap;
static _Thread_local uint32_t g_pass = 1;
static _Thread_local uint64_t g_seq;
static ns_backward_node_cb g_node_cb;
static void *g_node_cb_ud;

void ns_set_backward_node_callback(ns_backward_node_cb cb, void *ud) {
    g_node_cb = cb;
    g_node_cb_ud = ud;
}

void ns_tape_reset(void);
void ns_tape_reset(void) {
    g_tape_n = 0;
}

bool ns_grad_enabled(void) {
    return g_grad_enabled;
}

bool ns_set_grad_enabled(bool on) {
    bool prev = g_grad_enabled;
    g_grad_enabled = on;
    return prev;
}

bool ns_needs_grad(int n, ns_tensor *const *ins) {
    if (!g_grad_enabled) return false;
    for (int i = 0; i < n; i++)
        if (ins[i] && ins[i]->requires_grad) return true;
    return false;
}

ns_node *ns_node_new(const char *op, ns_backward_fn fn, ns_tensor *out, int n,
                     ns_tensor *const *ins) {
    ns_node *nd = ns_scope_alloc(sizeof *nd);
    memset(nd, 0, sizeof *nd);
    nd->op = op;
    nd->backward = fn;
    nd->out = out;
    nd->n_in = n;
    if (n <= NS_NODE_MAX_IN) {
        for (int i = 0; i < n; i++) nd->in[i] = ins[i];
    } else {
        nd->in_many = ns_scope_alloc(sizeof(ns_tensor *) * (size_t)n);
        memcpy(nd->in_many, ins, sizeof(ns_tensor *) * (size_t)n);
    }
    nd->module = ns_module_current();
    const ns_call_info *ci = ns_current_call();
    nd->call_id = ci ? ci->call_id : 0;
    nd->seq = g_seq++;
    out->requires_grad = true;
    out->grad_fn = nd;
    if (g_tape_n == g_tape_cap) {
        size_t cap = g_tape_cap ? g_tape_cap * 2 : 1024;
        ns_node **t = realloc(g_tape, cap * sizeof *t);
        if (!t) ns_error("out of memory growing the autograd tape");
        g_tape = t;
        g_tape_cap = cap;
    }
    g_tape[g_tape_n++] = nd;
    return nd;
}

static bool is_leaf(const ns_tensor *t) {
    return t->grad_fn == NULL;
}

ns_tensor *ns_grad_peek(ns_tensor *t) {
    if (is_leaf(t)) return t->grad;
    return t->grad_pass == g_pass ? t->grad : NULL;
}

ns_tensor *ns_grad_of(ns_tensor *t) {
    if (!t->requires_grad) return NULL;
    if (is_leaf(t)) {
        if (!t->grad) {
            if (t->persistent) {
                t->grad = ns_tensor_new(t->ndim, t->shape, t->device);
            } else {
                t->grad = ns_zeros_like_tmp(t);
            }
        }
        return t->grad;
    }
    if (t->grad_pass != g_pass || !t->grad) {
        t->grad = ns_zeros_like_tmp(t);
        t->grad_pass = g_pass;
    }
    return t->grad;
}

void ns_grad_pass_through(ns_tensor *t, ns_tensor *g) {
    if (!t->requires_grad) return;
    if (!is_leaf(t) && ns_grad_peek(t) == NULL && g->numel == t->numel && g->device == t->device) {
        t->grad = ns_view_of(g, t->ndim, t->shape);
        t->grad_pass = g_pass;
        return;
    }
    ns_tensor *dst = ns_grad_of(t);
    ns_be(t)->axpy(1.0f, g->data, dst->data, t->numel);
}

void ns_zero_grad(ns_tensor *t) {
    if (t && t->grad) ns_tensor_fill(t->grad, 0.0f);
}

void ns_backward(ns_tensor *root, const ns_tensor *seed) {
    if (!root->requires_grad)
        ns_op_error("ns_backward", 1, &root,
                    "the tensor does not require grad and has no grad_fn (was it computed under "
                    "no-grad, or from tensors that do not require grad?)");
    if (!seed && root->numel != 1)
        ns_op_error("ns_backward", 1, &root,
                    "grad can be implicitly created only for one-element outputs; pass a seed "
                    "gradient of the same shape");
    if (seed && (seed->numel != root->numel || seed->device != root->device)) {
        ns_tensor *ts[2] = {root, (ns_tensor *)seed};
        ns_op_error("ns_backward", 2, ts,
                    "the seed gradient must match the root's shape and "
                    "device");
    }
    g_pass++;
    ns_event ev = {.kind = NS_EV_BACKWARD_BEGIN, .tensor = root};
    ns_emit_event(&ev);
    ns_tensor *g = ns_grad_of(root);
    const ns_backend *be = ns_be(root);
    if (seed)
        be->axpy(1.0f, seed->data, g->data, root->numel);
    else {
        float one = 1.0f;
        if (is_leaf(root)) {
            ns_tensor *o = ns_from_host(1, (const int64_t[]){1}, &one, root->device);
            be->axpy(1.0f, o->data, g->data, 1);
        } else {
            be->from_host(g->data, &one, 4);
        }
    }
    /* Only nodes up to the root's own node can contribute. */
    size_t end = g_tape_n;
    if (root->grad_fn) {
        while (end > 0 && g_tape[end - 1] != root->grad_fn) end--;
    } else {
        end = 0;
    }
    for (size_t i = end; i-- > 0;) {
        ns_node *nd = g_tape[i];
        if (!ns_grad_peek(nd->out)) continue;
        if (g_node_cb) g_node_cb(nd, false, g_node_cb_ud);
        nd->backward(nd);
        if (g_node_cb) g_node_cb(nd, true, g_node_cb_ud);
    }
    ev.kind = NS_EV_BACKWARD_END;
    ns_emit_event(&ev);
}
