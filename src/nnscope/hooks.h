/* nnscope hooks: observe every module call, backward, optimizer step and engine event.
 * Global hooks run before a module's own hooks, as in PyTorch. Every registration returns a
 * handle; ns_hook_remove(handle) removes it (safe from inside a hook). */
#ifndef NNSCOPE_HOOKS_H
#define NNSCOPE_HOOKS_H

#include "nnscope/core.h"

struct ns_module;
struct ns_optimizer;

typedef uint64_t ns_hook_handle;

/* Before forward: the module and its input. */
typedef void (*ns_forward_pre_hook)(struct ns_module *m, ns_tensor *in, void *ud);
/* After forward: input and output. */
typedef void (*ns_forward_hook)(struct ns_module *m, ns_tensor *in, ns_tensor *out, void *ud);
/* Backward through a module call: grad_out = d(root)/d(output); grad_in = d(root)/d(input), NULL
 * when the input does not require grad. call_id matches ns_call_info.call_id of the forward. */
typedef void (*ns_backward_hook)(struct ns_module *m, const ns_tensor *grad_out,
                                 const ns_tensor *grad_in, uint64_t call_id, void *ud);
/* Optimizer pre-step / post-step. */
typedef void (*ns_optim_hook)(struct ns_optimizer *opt, void *ud);

typedef enum {
    NS_EV_MODULE_CREATED,    /* module; creator = running module or NULL */
    NS_EV_UNREGISTERED_CALL, /* module run while not reachable from the outermost module;
                                other = the caller */
    NS_EV_TRANSFER,          /* ns_to between devices: src, dst, bytes; module = running */
    NS_EV_STATE_DICT_LOAD,   /* module = root loaded into; detail = JSON report; count */
    NS_EV_NONFINITE,         /* first NaN/Inf seen: module, tensor, detail, count */
    NS_EV_ERROR,             /* a user error, before the handler runs; detail = message */
    NS_EV_UNINITIALISED,     /* a module used/registered before ns_module_init(); detail */
    NS_EV_MODULE_FREED,      /* module about to be freed */
    NS_EV_BACKWARD_BEGIN,    /* ns_backward starting: tensor = root */
    NS_EV_BACKWARD_END,      /* ns_backward done: tensor = root */
    NS_EV_STEP_END,          /* ns_step_end(): step info in ev->step */
    NS_EV_OPTIMIZER_FREED,   /* ns_optim_free(): optimizer = the one going away */
} ns_event_kind;

typedef struct {
    const char *phase; /* "train" when an optimizer step ran during the step, else "eval" */
    int64_t step;      /* 0-based step index of this process */
    int epoch;         /* from ns_set_epoch() */
    double loss;       /* NAN when unknown */
    int64_t samples;   /* batch size of the step (dim 0 of the first outermost call), 0 if none */
} ns_step_info;

typedef struct {
    ns_event_kind kind;
    struct ns_module *module;
    struct ns_module *other;
    const ns_tensor *tensor;
    ns_device src, dst;
    int64_t bytes;
    int64_t count;
    const char *detail;
    const ns_step_info *step;
    struct ns_optimizer *optimizer;
} ns_event;

typedef void (*ns_event_hook)(const ns_event *ev, void *ud);

/* Information about the module call in progress (for hooks). */
typedef struct {
    uint64_t call_id;         /* unique per call within the process */
    struct ns_module *caller; /* enclosing module or NULL */
    int depth;                /* 0 for the outermost call */
    double t_start;           /* monotonic seconds */
} ns_call_info;

/* Global hooks (all modules). */
ns_hook_handle ns_register_forward_pre_hook_global(ns_forward_pre_hook fn, void *ud);
ns_hook_handle ns_register_forward_hook_global(ns_forward_hook fn, void *ud);
ns_hook_handle ns_register_backward_hook_global(ns_backward_hook fn, void *ud);
/* Per-module hooks. */
ns_hook_handle ns_register_forward_pre_hook(struct ns_module *m, ns_forward_pre_hook fn, void *ud);
ns_hook_handle ns_register_forward_hook(struct ns_module *m, ns_forward_hook fn, void *ud);
ns_hook_handle ns_register_backward_hook(struct ns_module *m, ns_backward_hook fn, void *ud);
/* Optimizer hooks: opt NULL means every optimizer. */
ns_hook_handle ns_register_optim_pre_hook(struct ns_optimizer *opt, ns_optim_hook fn, void *ud);
ns_hook_handle ns_register_optim_post_hook(struct ns_optimizer *opt, ns_optim_hook fn, void *ud);
/* Engine events. */
ns_hook_handle ns_register_event_hook(ns_event_hook fn, void *ud);
/* Removes a hook registered by any of the above; unknown handles are ignored. */
void ns_hook_remove(ns_hook_handle h);

/* The call in progress of the innermost running module (NULL outside any forward). */
const ns_call_info *ns_current_call(void);

/* ---- steps */

/* Closes a training or evaluation step: reports NS_EV_STEP_END (the recorder writes the step)
 * and then releases the step scope (ns_scope_reset). */
void ns_step_end(void);
/* Reports the loss of the current step (eval steps; train steps take ns_backward's root). */
void ns_step_set_loss(double loss);
/* Sets the epoch number written with the following steps. */
void ns_set_epoch(int epoch);
/* Index of the step in progress (0-based). */
int64_t ns_step_index(void);

#endif
