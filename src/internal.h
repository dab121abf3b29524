/* Library-internal declarations shared by src/ files (not installed, not for users). */
#ifndef NS_INTERNAL_H
#define NS_INTERNAL_H

#include "backend.h"
#include "nnscope.h"

/* ---- scope arena (tensor.c) */

/* size bytes from the scope arena, 64-byte aligned, uninitialised. */
void *ns_scope_alloc(size_t size);
/* Scope tensor sharing x's storage with a new shape (no copy). */
ns_tensor *ns_view_of(ns_tensor *x, int ndim, const int64_t *shape);
/* Backend of a tensor's device (errors if the device is not compiled in). */
const ns_backend *ns_be(const ns_tensor *t);
/* Scope tensor like x (same shape/device), uninitialised / zeroed. */
ns_tensor *ns_tmp_like(const ns_tensor *x);
ns_tensor *ns_zeros_like_tmp(const ns_tensor *x);

/* ---- autograd (autograd.c) */

typedef struct ns_node ns_node;
typedef void (*ns_backward_fn)(ns_node *n);

#define NS_NODE_MAX_IN 4
struct ns_node {
    const char *op;          /* op name for messages */
    ns_backward_fn backward; /* reads n->out->grad, accumulates into inputs' grads */
    ns_tensor *out;
    ns_tensor *in[NS_NODE_MAX_IN];
    int n_in;
    ns_tensor **in_many; /* ops with more inputs (concat): n_in entries, in[] unused */
    ns_tensor *saved[3]; /* op-specific */
    float f[4];
    int64_t i[8];
    void *aux;
    struct ns_module *module; /* innermost module running when recorded */
    uint64_t call_id;         /* ns_call_info.call_id of that module's call (0: none) */
    uint64_t seq;
};

/* Observer of backward: called before (after = false) and after each node's backward runs. The
 * recorder times module backward passes and attributes GPU kernels with it. One at a time. */
typedef void (*ns_backward_node_cb)(const ns_node *n, bool after, void *ud);
void ns_set_backward_node_callback(ns_backward_node_cb cb, void *ud);

/* True when an op with these inputs must record a node (grad mode on and any input needs it). */
bool ns_needs_grad(int n, ns_tensor *const *ins);
/* Records a node producing out from inputs; sets out->requires_grad and out->grad_fn. */
ns_node *ns_node_new(const char *op, ns_backward_fn fn, ns_tensor *out, int n,
                     ns_tensor *const *ins);
/* The gradient buffer of t for the current backward pass, created zeroed on first use (scope
 * memory for non-leaves, long-lived for leaves). NULL when t does not require grad. */
ns_tensor *ns_grad_of(ns_tensor *t);
/* The gradient of t in the current pass if one was created, else NULL. */
ns_tensor *ns_grad_peek(ns_tensor *t);
/* Makes t's gradient in the current pass alias g when t has none yet (no copy), else adds g.
 * Used by view-like ops and module boundaries. */
void ns_grad_pass_through(ns_tensor *t, ns_tensor *g);

/* ---- errors and checks (error.c) */

/* ns_error with "op: " prefix and the operands' shapes/devices appended. */
_Noreturn void ns_op_error(const char *op, int n, ns_tensor *const *ts, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Errors unless every tensor is on the same device (names the op and each tensor). */
void ns_check_same_device(const char *op, int n, ns_tensor *const *ts);
/* Errors unless t is float32. */
void ns_check_f32(const char *op, ns_tensor *t);

/* ---- module context (module.c) */

/* Path and description of the innermost running module ("fc2 (Linear 256->10)"), or NULL. */
const char *ns_module_context(char *buf, size_t n);
/* Innermost running module, or NULL. */
struct ns_module *ns_module_current(void);

/* ---- hooks and steps (hooks.c) */
/* Delivers an engine event to every event hook (and notes loss/phase for the step). */
void ns_emit_event(const ns_event *ev);
/* Runs global then m's own hooks of each kind. */
void ns_run_forward_pre_hooks(struct ns_module *m, ns_tensor *x);
void ns_run_forward_hooks(struct ns_module *m, ns_tensor *x, ns_tensor *y);
void ns_run_backward_hooks(struct ns_module *m, const ns_tensor *gout, const ns_tensor *gin,
                           uint64_t call_id);
void ns_run_optim_hooks(struct ns_optimizer *opt, bool post);
/* True when some backward hook (global, or m's own) is registered. */
bool ns_have_backward_hooks(struct ns_module *m);
/* Forgets a dispatch interrupted by a longjmp out of an error handler. */
void ns_hooks_reset_dispatch(void);
/* Drops every per-module hook of m (module free). */
void ns_hooks_forget_owner(void *owner);
/* Notes for the step summary: an optimizer stepped; the batch size of an outermost call. */
void ns_note_optimizer_step(double lr);
void ns_note_samples(int64_t n);

#endif
