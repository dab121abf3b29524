/* nnscope modules: PyTorch's nn.Module contract in C.
 *
 *   typedef struct { ns_module base; ns_module *fc1, *fc2; } Net;   // base first
 *   ns_module_init(&net->base, "Net", net_forward);                 // super().__init__()
 *   net->fc1 = ns_linear_new(784, 256, true);
 *   ns_register_module(&net->base, "fc1", net->fc1);
 *   ns_tensor *y = ns_call(&net->base, x);                           // hooks, mode, call stack
 */
#ifndef NNSCOPE_MODULE_H
#define NNSCOPE_MODULE_H

#include "nnscope/core.h"

typedef struct ns_module ns_module;

/* Forward of a module: one input, one output (scope tensors). */
typedef ns_tensor *(*ns_forward_fn)(ns_module *self, ns_tensor *x);
/* Appends the constructor arguments shown by repr, e.g. "in_features=784, out_features=256". */
typedef void (*ns_describe_fn)(const ns_module *self, char *buf, size_t n);
/* Frees what the subclass owns beyond registered children/params/buffers. */
typedef void (*ns_destroy_fn)(ns_module *self);

typedef struct {
    char *name;
    ns_module *module;
} ns_named_module;
typedef struct {
    char *name;
    ns_tensor *tensor;
} ns_named_tensor;

#define NS_MODULE_MAGIC 0x6e736d6fu /* set by ns_module_init() */

struct ns_module {
    uint32_t magic;   /* NS_MODULE_MAGIC once initialised */
    const char *type; /* "Linear", "Net" (static string) */
    ns_forward_fn forward;
    ns_describe_fn describe;    /* optional: PyTorch's extra_repr() text */
    ns_describe_fn brief;       /* optional: short text for labels, "256->10" */
    ns_destroy_fn destroy;      /* optional */
    uint64_t id;                /* unique per process */
    bool training;              /* true after init (like PyTorch) */
    ns_module *parent;          /* set by registration */
    const char *name_in_parent; /* key under the parent ('fc1', '0') */
    ns_named_module *children;
    int n_children, cap_children;
    ns_named_tensor *params;
    int n_params, cap_params;
    ns_named_tensor *buffers;
    int n_buffers, cap_buffers;
    int n_own_hooks;    /* per-module hooks registered on it (internal) */
    ns_module *creator; /* module whose forward was running at init, else NULL */
    bool created_in_forward;
    bool owned_by_parent;       /* freed by the parent's ns_module_free() */
    bool unregistered_reported; /* NS_EV_UNREGISTERED_CALL already sent (internal) */
};

/* Initialises m (zeroes it first): type name, forward, training mode, a new id. The counterpart
 * of super().__init__(); must come before any registration. Notes whether another module's
 * forward is running (module created inside forward) and tells the event hooks. */
void ns_module_init(ns_module *m, const char *type, ns_forward_fn forward);

/* Registers child under name (PyTorch's self.name = module). The parent takes ownership (the
 * child must come from malloc/calloc, as every constructor's result does) and the dotted names
 * of the child's parameters and buffers are updated. Errors if m was never initialised
 * (naming the module expression and what was registered; NS_EV_UNINITIALISED first), if the
 * child is NULL or uninitialised, if name is empty, contains '.' or is taken by a child,
 * parameter or buffer of m, if child already has a parent, or if it would make a cycle. */
#define ns_register_module(m, name, child) ns_register_module_((m), (name), (child), #m)
void ns_register_module_(ns_module *m, const char *name, ns_module *child, const char *expr);
/* Registers a long-lived float tensor as parameter name (requires_grad set true); m owns it and
 * frees it with itself. t->name becomes the dotted name ("fc1.weight"), owned by the module.
 * Errors as above, and for scope tensors, non-leaves, int32 tensors and a tensor already
 * registered in the same tree (one owner; no weight tying). */
#define ns_register_parameter(m, name, t) ns_register_parameter_((m), (name), (t), #m)
void ns_register_parameter_(ns_module *m, const char *name, ns_tensor *t, const char *expr);
/* Registers a long-lived float tensor as buffer name (no grad; saved in state_dict); m owns it.
 * Same rules as parameters. */
#define ns_register_buffer(m, name, t) ns_register_buffer_((m), (name), (t), #m)
void ns_register_buffer_(ns_module *m, const char *name, ns_tensor *t, const char *expr);

/* Runs m's forward on x: checks m was initialised, pushes the call stack, runs global then
 * per-module forward-pre hooks, forward, forward hooks, and wires backward hooks.
 *
 * Backward hooks: when some backward hook applies to m, grad mode is on and the output requires
 * grad, the output is returned wrapped in a boundary view (same storage) whose backward notes
 * grad_out; when the input requires grad too, the forward sees the input wrapped the same way,
 * and the hooks fire when the gradient leaves through the input (grad_out, grad_in). When the
 * input does not require grad, the hooks fire as soon as grad_out is complete, with grad_in
 * NULL (PyTorch's full backward hooks do the same). Hooks registered after the forward ran do
 * not see that call. Forward hooks see the unwrapped input and output.
 *
 * The outermost call (empty call stack) reports dim 0 of x as the step's batch size. A call of
 * a module that is not reachable from the outermost running module (kept in a plain struct
 * field instead of being registered) still runs, and is reported once per module as
 * NS_EV_UNREGISTERED_CALL. Errors: m NULL or never initialised (naming the expression), a NULL
 * output, and whatever the forward reports. */
#define ns_call(m, x) ns_call_((m), (x), #m)
ns_tensor *ns_call_(ns_module *m, ns_tensor *x, const char *expr);
/* The same as a function (for function pointers): (ns_call)(m, x). */
ns_tensor *(ns_call)(ns_module *m, ns_tensor *x);

/* Forgets every module call in progress on this thread. For programs whose error handler
 * longjmps out of a forward: call it after the jump (tests do), since the calls that were
 * running never returned. Does not touch grad mode or the step scope. */
void ns_call_stack_reset(void);

/* Frees m, its registered children, parameters, buffers and hooks: tells the event hooks
 * (NS_EV_MODULE_FREED, while m is still intact), runs the subclass destroy, then frees the rest
 * and m itself, which must come from malloc/calloc. A registered child is freed by its parent
 * only (freeing it directly is a programmer error). NULL is a no-op. */
void ns_module_free(ns_module *m);

/* ---- walks (results are malloc'd arrays the caller frees with free(); names point into the
 * modules and stay valid while the tree lives, except the dotted names which are malloc'd as
 * part of the same block) */

/* Every parameter of the tree with its dotted name ("fc1.weight"), registration order. */
ns_named_tensor *ns_named_parameters(ns_module *m, int *n);
/* Every buffer with its dotted name ("bn1.running_mean"). */
ns_named_tensor *ns_named_buffers(ns_module *m, int *n);
/* m and every descendant with dotted paths ('' for m), pre-order. */
ns_named_module *ns_named_modules(ns_module *m, int *n);
/* Direct children in registration order (borrowed pointer, do not free). */
const ns_named_module *ns_children(ns_module *m, int *n);
/* Sum of numel over parameters with requires_grad. */
int64_t ns_count_trainable(ns_module *m);
/* Sum of numel over all parameters. */
int64_t ns_count_parameters(ns_module *m);
/* Dotted path of m under its root ('' for a root), into buf. */
char *ns_module_path(const ns_module *m, char *buf, size_t n);
/* The topmost registered ancestor of m (m itself when it has no parent). */
ns_module *ns_module_root(ns_module *m);
/* Sub-module at a dotted path, or NULL. */
ns_module *ns_module_get(ns_module *m, const char *path);
/* Parameter or buffer at a dotted path, or NULL. */
ns_tensor *ns_module_tensor(ns_module *m, const char *path);

/* ---- modes and devices */

/* Sets training mode on m and every registered descendant (train(true) / eval()). */
void ns_module_train(ns_module *m, bool on);
static inline void ns_module_eval(ns_module *m) {
    ns_module_train(m, false);
}
/* Moves every registered parameter, grad and buffer to dev in one call. */
void ns_module_to(ns_module *m, ns_device dev);
/* Sets requires_grad on every parameter of the tree (freeze / unfreeze). */
void ns_module_requires_grad(ns_module *m, bool on);
/* Zeroes the grads of every parameter of the tree. */
void ns_module_zero_grad(ns_module *m);

/* Prints the tree like print(model) in PyTorch into a malloc'd string. */
char *ns_module_repr(const ns_module *m);
/* Label of m for messages: "fc2 (Linear 256->10)" (path, then type and the brief text); a root:
 * "Net"; a module running inside a model it is not registered in: under its caller,
 * "enc.(unregistered Linear 3->5)". Writes into buf and returns it. */
char *ns_module_label(const ns_module *m, char *buf, size_t n);

/* ---- state_dict (safetensors files) */

typedef struct {
    char **missing; /* keys the model has and the file lacks */
    int n_missing;
    char **unexpected; /* keys the file has and the model lacks */
    int n_unexpected;
    char **mismatched; /* "key: model 256x784, file 256x700" */
    int n_mismatched;
} ns_load_report;

/* Writes every parameter and buffer under its dotted name as an F32 safetensors file
 * (atomically; copied to the host whatever the device). Returns false with err naming the file
 * on I/O errors. */
bool ns_save_state_dict(ns_module *m, const char *path, char *err, size_t errlen);
/* Loads a safetensors state_dict (values copied to each tensor's device). strict: any missing,
 * unexpected or shape-mismatched key makes it return false with err holding PyTorch's message
 * listing all of them ("Error(s) in loading state_dict for Net from <path>:\n\tMissing
 * key(s) ..."), and nothing is changed; non-strict: loads the keys that match and returns true.
 * Either way report (may be NULL; free with ns_load_report_free) gets the three lists and the
 * event hooks get NS_EV_STATE_DICT_LOAD (detail: JSON, count: number of problems). File errors
 * (missing, malformed) return false with err naming the file, report empty, no event. */
bool ns_load_state_dict(ns_module *m, const char *path, bool strict, ns_load_report *report,
                        char *err, size_t errlen);
/* Frees a report's lists. */
void ns_load_report_free(ns_load_report *r);

#endif
