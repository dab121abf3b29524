/* nnscope optimizers and training checkpoints: torch.optim's SGD, Adam and AdamW with parameter
 * groups and PyTorch 1.13's update rules and defaults, and one-file checkpoints that resume
 * training bit for bit.
 *
 *   int n;  ns_tensor **ps = ns_optim_params_of(model, &n);   // model.parameters()
 *   ns_optimizer *opt = ns_adam_new(ps, n, 1e-3, 0.9, 0.999, 1e-8, 0.0);
 *   free(ps);
 *   for (...) {
 *       ns_optim_zero_grad(opt);
 *       ns_backward(ns_cross_entropy(ns_call(model, x), y), NULL);
 *       ns_optim_step(opt);
 *       ns_step_end();
 *   }
 *   ns_optim_free(opt);
 *
 * Update rules (g = the parameter's .grad, w the parameter, per element):
 *   SGD:   g += wd*w;  with momentum: b = g on the parameter's first update, else
 *          b = momentum*b + (1-dampening)*g;  g = nesterov ? g + momentum*b : b;  w -= lr*g.
 *   Adam:  g += wd*w;  m = b1*m + (1-b1)*g;  v = b2*v + (1-b2)*g*g;  t = the parameter's step
 *          count;  w -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps).
 *   AdamW: w *= 1 - lr*wd first, then Adam without the g += wd*w term.
 *
 * The optimizer holds exactly the parameters it was given (the recorder asks which). A parameter
 * is skipped by a step, its state untouched, when it has requires_grad == false or no .grad yet
 * (never reached by a backward). Its state (momentum buffer, exp_avg, exp_avg_sq) is created, on
 * the parameter's device, by its first update; the updates run in the backend's fused
 * multi-tensor kernel, which also computes the per-parameter statistics of ns_optim_last_stats().
 *
 * Errors: invalid hyper-parameters (negative lr, betas outside [0,1), Nesterov without momentum,
 * ...), an empty parameter list, a parameter given twice or a tensor that is not a long-lived
 * float leaf are user errors reported through ns_error() with PyTorch's wording.
 */
#ifndef NNSCOPE_OPTIM_H
#define NNSCOPE_OPTIM_H

#include "nnscope/io.h"
#include "nnscope/module.h"

typedef struct ns_optimizer ns_optimizer;

typedef enum { NS_OPTIM_SGD, NS_OPTIM_ADAM, NS_OPTIM_ADAMW } ns_optim_kind;

/* The hyper-parameters of one parameter group (PyTorch's param_groups[g] dict). Fields that an
 * algorithm does not use are ignored. */
typedef struct {
    double lr;
    double weight_decay;
    double momentum, dampening; /* SGD */
    bool nesterov;              /* SGD */
    double beta1, beta2, eps;   /* Adam, AdamW */
} ns_optim_hparams;

/* Statistics of one parameter from the last ns_optim_step(), computed inside the fused update. */
typedef struct {
    bool had_grad;      /* false: the step skipped it (no grad / requires_grad off); rest 0 */
    double grad_norm;   /* L2 norm of .grad as the step found it (before weight decay) */
    double update_norm; /* ||w_after - w_before|| */
    double weight_norm; /* ||w_after|| */
    int64_t nonfinite;  /* elements that are NaN/Inf in .grad or in w_after */
} ns_param_stats;

/* ---- construction */

/* SGD(params, lr, momentum=0, dampening=0, weight_decay=0, nesterov=False). PyTorch requires lr
 * (no default); 0.01 is a common choice. The parameters form group 0; the array is copied (the
 * tensors stay owned by their module). Free with ns_optim_free(). */
ns_optimizer *ns_sgd_new(ns_tensor *const *params, int n, double lr, double momentum,
                         double dampening, double weight_decay, bool nesterov);
/* Adam(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0): the arguments in
 * brackets are PyTorch's defaults. weight_decay is L2 (added to the gradient). */
ns_optimizer *ns_adam_new(ns_tensor *const *params, int n, double lr, double beta1, double beta2,
                          double eps, double weight_decay);
/* AdamW(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2): decoupled weight
 * decay (w *= 1 - lr*weight_decay before the Adam update). */
ns_optimizer *ns_adamw_new(ns_tensor *const *params, int n, double lr, double beta1, double beta2,
                           double eps, double weight_decay);
/* Adds a parameter group (PyTorch's add_param_group) with its own lr and weight_decay; the
 * other hyper-parameters are copied from the constructor's arguments. Returns the group index.
 * Errors as for the constructors, and when a parameter is already held by another group. */
int ns_optim_add_group(ns_optimizer *opt, ns_tensor *const *params, int n, double lr,
                       double weight_decay);
/* Frees the optimizer and its state tensors (not the parameters). NULL is a no-op. */
void ns_optim_free(ns_optimizer *opt);

/* Every parameter of m in registration order (model.parameters()), as a malloc'd array the
 * caller frees with free(); *n receives the count. */
ns_tensor **ns_optim_params_of(ns_module *m, int *n);

/* ---- training */

/* One optimization step over every group: runs the optimizer pre-step hooks, updates each
 * parameter that has a grad (one fused backend call per group and device), records the
 * statistics, tells the step summary the lr of group 0, then runs the post-step hooks. */
void ns_optim_step(ns_optimizer *opt);
/* Sets the .grad of every held parameter to zero, keeping the tensors (PyTorch 1.13's default
 * zero_grad(set_to_none=False)). Parameters without a grad keep none. */
void ns_optim_zero_grad(ns_optimizer *opt);

/* ---- groups and hyper-parameters */

ns_optim_kind ns_optim_get_kind(const ns_optimizer *opt);
/* "SGD", "Adam" or "AdamW". */
const char *ns_optim_kind_name(const ns_optimizer *opt);
int ns_optim_num_groups(const ns_optimizer *opt);
/* The hyper-parameters of group g (0 <= g < num_groups), writable in place like
 * param_groups[g]['momentum'] = ...; values are checked again by the next step. */
ns_optim_hparams *ns_optim_group(ns_optimizer *opt, int g);
/* Sets the learning rate of group g, or of every group when g is -1 (what a scheduler does). */
void ns_optim_set_lr(ns_optimizer *opt, int g, double lr);
/* Number of completed ns_optim_step() calls. */
int64_t ns_optim_steps(const ns_optimizer *opt);

/* ---- the parameters held (for the recorder). Index i runs over all groups in order. */

/* Number of parameters held, over all groups. */
int ns_optim_num_params(const ns_optimizer *opt);
/* Parameter i (0 <= i < num_params). */
ns_tensor *ns_optim_param(const ns_optimizer *opt, int i);
/* The group of parameter i. */
int ns_optim_param_group(const ns_optimizer *opt, int i);
/* The learning rate that applies to parameter i (its group's lr). */
double ns_optim_param_lr(const ns_optimizer *opt, int i);
/* True when t is one of the parameters held. */
bool ns_optim_holds(const ns_optimizer *opt, const ns_tensor *t);
/* Fills *out with parameter i's statistics from the last step (all zero, had_grad false, before
 * the first step). Returns false when i is out of range. */
bool ns_optim_last_stats(const ns_optimizer *opt, int i, ns_param_stats *out);

/* ---- state (checkpoints) */

/* Number of state tensors per parameter (SGD 1: "momentum_buffer"; Adam/AdamW 2: "exp_avg",
 * "exp_avg_sq") and the name of state k. */
int ns_optim_num_states(const ns_optimizer *opt);
const char *ns_optim_state_name(const ns_optimizer *opt, int k);
/* State k of parameter i, or NULL while it does not exist (before the parameter's first update;
 * SGD without momentum never has one). Long-lived, owned by the optimizer. */
ns_tensor *ns_optim_state(const ns_optimizer *opt, int i, int k);
/* Updates applied to parameter i so far (Adam's state['step']). */
int64_t ns_optim_param_steps(const ns_optimizer *opt, int i);
/* Replaces parameter i's state: steps updates applied, and host copies of each state tensor
 * (numel floats each, ns_optim_num_states() entries; entries may be NULL to have no such state,
 * and states may be NULL when steps is 0). steps 0 with no states makes the parameter fresh. */
void ns_optim_set_param_state(ns_optimizer *opt, int i, int64_t steps, const float *const *states);
/* Sets the completed-step counter. */
void ns_optim_set_steps(ns_optimizer *opt, int64_t steps);

/* ---- training checkpoints
 *
 * One safetensors file (readable by PyTorch's safetensors) holding:
 *   model.<key>                 every parameter and buffer of the model (state_dict keys)
 *   optim.<g>.<state>.<name>    optimizer state of the parameter called <name> in the model
 *                               (or "param<i>" for one outside it) in group <g>
 * and, in __metadata__, as decimal strings: format, kind, steps, per-group hyper-parameters,
 * per-parameter step counts, epoch, global step, best metric, RNG state and the data-loader
 * state. Loading restores the model, the optimizer (hyper-parameters included) and the global
 * RNG, and returns the rest in ns_ckpt_meta, so resuming reproduces an uninterrupted run bit
 * for bit (restore the loader with ns_loader_set_state()). */
typedef struct {
    int64_t epoch;      /* epochs completed */
    int64_t step;       /* global training steps completed */
    double best_metric; /* best validation metric so far (NAN: none) */
    bool has_loader;    /* loader below is meaningful */
    ns_loader_state loader;
} ns_ckpt_meta;

/* Writes the checkpoint atomically. opt may be NULL (model only); meta may be NULL (zeros, no
 * loader). Returns false with err filled on I/O errors. */
bool ns_checkpoint_save(const char *path, ns_module *model, const ns_optimizer *opt,
                        const ns_ckpt_meta *meta, char *err, size_t errlen);
/* Loads a checkpoint into model (strictly: every key present, no extra, same shapes) and opt
 * (may be NULL; it must hold the same parameters in the same groups, of the same kind), restores
 * the global RNG and fills *meta (may be NULL). On any error (unreadable or corrupted file, not
 * a checkpoint, mismatching model or optimizer) returns false with err naming the file and the
 * problem, and changes nothing. */
bool ns_checkpoint_load(const char *path, ns_module *model, ns_optimizer *opt, ns_ckpt_meta *meta,
                        char *err, size_t errlen);

#endif
