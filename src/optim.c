/* Optimizers: SGD, Adam and AdamW over parameter groups. This file keeps the bookkeeping
 * (groups, per-parameter state and step counts, statistics, hooks); the arithmetic runs in the
 * backend's fused multi-tensor kernels (optim_cpu.c on the CPU, kernels/ on CUDA). */
#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "nnscope/optim.h"

typedef struct {
    ns_tensor *p;
    int group;
    int64_t steps;       /* updates applied to this parameter */
    ns_tensor *state[2]; /* SGD: momentum_buffer; Adam: exp_avg, exp_avg_sq */
    ns_param_stats stats;
} param;

struct ns_optimizer {
    ns_optim_kind kind;
    ns_optim_hparams defaults; /* the constructor's arguments */
    ns_optim_hparams *groups;
    int n_groups;
    param *ps; /* grouped: group 0's parameters first, then group 1's, ... */
    int n, cap;
    int64_t steps;
    /* scratch for one fused call, reused across steps */
    ns_optim_slot *slots;
    int *slot_param;
    double *slot_stats;
    bool *done;
    int scratch_cap;
};

static const char *const state_names[3][2] = {
    {"momentum_buffer", NULL}, {"exp_avg", "exp_avg_sq"}, {"exp_avg", "exp_avg_sq"}};

/* ------------------------------------------------------------------ checks */

/* PyTorch's constructor checks (ValueError texts), run at construction and before each step
 * since the hyper-parameters are writable. */
static void check_hparams(ns_optim_kind kind, const ns_optim_hparams *h, int g) {
    const char *k = kind == NS_OPTIM_SGD ? "SGD" : kind == NS_OPTIM_ADAM ? "Adam" : "AdamW";
    if (!(h->lr >= 0.0)) ns_error("%s (group %d): Invalid learning rate: %g", k, g, h->lr);
    if (!(h->weight_decay >= 0.0))
        ns_error("%s (group %d): Invalid weight_decay value: %g", k, g, h->weight_decay);
    if (kind == NS_OPTIM_SGD) {
        if (!(h->momentum >= 0.0))
            ns_error("%s (group %d): Invalid momentum value: %g", k, g, h->momentum);
        if (!isfinite(h->dampening))
            ns_error("%s (group %d): Invalid dampening value: %g", k, g, h->dampening);
        if (h->nesterov && (h->momentum <= 0.0 || h->dampening != 0.0))
            ns_error("%s (group %d): Nesterov momentum requires a momentum and zero dampening", k,
                     g);
    } else {
        if (!(h->eps >= 0.0)) ns_error("%s (group %d): Invalid epsilon value: %g", k, g, h->eps);
        if (!(h->beta1 >= 0.0 && h->beta1 < 1.0))
            ns_error("%s (group %d): Invalid beta parameter at index 0: %g", k, g, h->beta1);
        if (!(h->beta2 >= 0.0 && h->beta2 < 1.0))
            ns_error("%s (group %d): Invalid beta parameter at index 1: %g", k, g, h->beta2);
    }
}

static int find_param(const ns_optimizer *opt, const ns_tensor *t) {
    for (int i = 0; i < opt->n; i++)
        if (opt->ps[i].p == t) return i;
    return -1;
}

static void grow_scratch(ns_optimizer *opt, int need) {
    if (need <= opt->scratch_cap) return;
    int cap = need < 16 ? 16 : need;
    ns_optim_slot *s = realloc(opt->slots, sizeof *s * (size_t)cap);
    if (s) opt->slots = s;
    int *sp = realloc(opt->slot_param, sizeof *sp * (size_t)cap);
    if (sp) opt->slot_param = sp;
    double *st = realloc(opt->slot_stats, sizeof *st * 4 * (size_t)cap);
    if (st) opt->slot_stats = st;
    bool *d = realloc(opt->done, sizeof *d * (size_t)cap);
    if (d) opt->done = d;
    if (!s || !sp || !st || !d) ns_error("out of memory growing the optimizer");
    opt->scratch_cap = cap;
}

/* ------------------------------------------------------------------ construction */

/* Checks a group before anything is allocated (errors longjmp out of the caller). opt may be
 * NULL (a constructor's first group). */
static void check_group(const ns_optimizer *opt, ns_optim_kind kind, ns_tensor *const *params,
                        int n, const ns_optim_hparams *h) {
    const char *k = kind == NS_OPTIM_SGD ? "SGD" : kind == NS_OPTIM_ADAM ? "Adam" : "AdamW";
    int g = opt ? opt->n_groups : 0;
    if (n <= 0 || !params) ns_error("%s: optimizer got an empty parameter list", k);
    check_hparams(kind, h, g);
    for (int i = 0; i < n; i++) {
        ns_tensor *t = params[i];
        if (!t) ns_error("%s: parameter %d of group %d is NULL", k, i, g);
        const char *nm = t->name ? t->name : "(unnamed)";
        if (!t->persistent || t->grad_fn)
            ns_error("%s: can't optimize a non-leaf Tensor (parameter %d '%s' of group %d is a "
                     "step-scope tensor; parameters come from ns_tensor_new())",
                     k, i, nm, g);
        if (t->dtype != NS_F32)
            ns_error("%s: parameter %d '%s' of group %d is not float32", k, i, nm, g);
        bool dup = opt && find_param(opt, t) >= 0;
        for (int q = 0; q < i && !dup; q++) dup = params[q] == t;
        if (dup)
            ns_error("%s: some parameters appear more than once ('%s'); a parameter may belong to "
                     "one parameter group only, once",
                     k, nm);
    }
}

static int add_group(ns_optimizer *opt, ns_tensor *const *params, int n,
                     const ns_optim_hparams *h) {
    check_group(opt, opt->kind, params, n, h);
    ns_optim_hparams *g = realloc(opt->groups, sizeof *g * (size_t)(opt->n_groups + 1));
    if (!g) ns_error("out of memory adding a parameter group");
    opt->groups = g;
    g[opt->n_groups] = *h;
    if (opt->n + n > opt->cap) {
        int cap = opt->cap ? opt->cap : 16;
        while (cap < opt->n + n) cap *= 2;
        param *p = realloc(opt->ps, sizeof *p * (size_t)cap);
        if (!p) ns_error("out of memory adding a parameter group");
        opt->ps = p;
        opt->cap = cap;
    }
    for (int i = 0; i < n; i++) opt->ps[opt->n++] = (param){.p = params[i], .group = opt->n_groups};
    grow_scratch(opt, opt->n);
    return opt->n_groups++;
}

static ns_optimizer *optim_new(ns_optim_kind kind, ns_tensor *const *params, int n,
                               const ns_optim_hparams *h) {
    check_group(NULL, kind, params, n, h);
    ns_optimizer *opt = calloc(1, sizeof *opt);
    if (!opt) ns_error("out of memory creating an optimizer");
    opt->kind = kind;
    opt->defaults = *h;
    add_group(opt, params, n, h);
    return opt;
}

ns_optimizer *ns_sgd_new(ns_tensor *const *params, int n, double lr, double momentum,
                         double dampening, double weight_decay, bool nesterov) {
    ns_optim_hparams h = {.lr = lr,
                          .weight_decay = weight_decay,
                          .momentum = momentum,
                          .dampening = dampening,
                          .nesterov = nesterov};
    return optim_new(NS_OPTIM_SGD, params, n, &h);
}

ns_optimizer *ns_adam_new(ns_tensor *const *params, int n, double lr, double beta1, double beta2,
                          double eps, double weight_decay) {
    ns_optim_hparams h = {
        .lr = lr, .weight_decay = weight_decay, .beta1 = beta1, .beta2 = beta2, .eps = eps};
    return optim_new(NS_OPTIM_ADAM, params, n, &h);
}

ns_optimizer *ns_adamw_new(ns_tensor *const *params, int n, double lr, double beta1, double beta2,
                           double eps, double weight_decay) {
    ns_optim_hparams h = {
        .lr = lr, .weight_decay = weight_decay, .beta1 = beta1, .beta2 = beta2, .eps = eps};
    return optim_new(NS_OPTIM_ADAMW, params, n, &h);
}

int ns_optim_add_group(ns_optimizer *opt, ns_tensor *const *params, int n, double lr,
                       double weight_decay) {
    assert(opt);
    ns_optim_hparams h = opt->defaults;
    h.lr = lr;
    h.weight_decay = weight_decay;
    return add_group(opt, params, n, &h);
}

void ns_optim_free(ns_optimizer *opt) {
    if (!opt) return;
    ns_event ev = {.kind = NS_EV_OPTIMIZER_FREED, .optimizer = opt};
    ns_emit_event(&ev); /* the recorder stops reading its statistics */
    ns_hooks_forget_owner(opt);
    for (int i = 0; i < opt->n; i++) {
        ns_tensor_free(opt->ps[i].state[0]);
        ns_tensor_free(opt->ps[i].state[1]);
    }
    free(opt->ps);
    free(opt->groups);
    free(opt->slots);
    free(opt->slot_param);
    free(opt->slot_stats);
    free(opt->done);
    free(opt);
}

ns_tensor **ns_optim_params_of(ns_module *m, int *n) {
    assert(m && n);
    ns_named_tensor *np = ns_named_parameters(m, n);
    ns_tensor **ps = malloc(sizeof *ps * (size_t)(*n + 1));
    if (!ps) ns_error("out of memory listing the parameters");
    for (int i = 0; i < *n; i++) ps[i] = np[i].tensor;
    free(np);
    return ps;
}

/* ------------------------------------------------------------------ step */

static int num_states(ns_optim_kind k) {
    return k == NS_OPTIM_SGD ? 1 : 2;
}

/* The state tensors parameter pr needs for this update, created zeroed on its device (or moved
 * there when the parameter moved since). */
static void ensure_state(ns_optimizer *opt, param *pr, bool momentum) {
    int ns = opt->kind == NS_OPTIM_SGD ? (momentum ? 1 : 0) : 2;
    for (int k = 0; k < ns; k++) {
        if (!pr->state[k])
            pr->state[k] = ns_tensor_new(pr->p->ndim, pr->p->shape, pr->p->device);
        else if (pr->state[k]->device != pr->p->device)
            ns_tensor_move(pr->state[k], pr->p->device);
    }
}

static bool has_grad(const param *pr) {
    return pr->p->requires_grad && pr->p->grad;
}

/* Key of the fused call a parameter joins: same device, and the same step count (Adam's bias
 * corrections) or the same first-update flag (SGD's momentum buffer initialisation). */
static bool same_call(const ns_optimizer *opt, const param *a, const param *b) {
    if (a->p->device != b->p->device) return false;
    if (opt->kind == NS_OPTIM_SGD) return (a->state[0] == NULL) == (b->state[0] == NULL);
    return a->steps == b->steps;
}

static void step_group(ns_optimizer *opt, int g, int first, int end) {
    const ns_optim_hparams *h = &opt->groups[g];
    bool sgd = opt->kind == NS_OPTIM_SGD;
    bool momentum = sgd && h->momentum != 0.0;
    for (int i = first; i < end; i++) {
        opt->done[i] = !has_grad(&opt->ps[i]);
        if (opt->done[i]) opt->ps[i].stats = (ns_param_stats){0};
    }
    for (int i = first; i < end; i++) {
        if (opt->done[i]) continue;
        param *lead = &opt->ps[i];
        /* The call's key is read before ensure_state creates the buffers. */
        bool fresh = sgd ? lead->state[0] == NULL : lead->steps == 0;
        int64_t t = lead->steps + 1;
        int ns = 0;
        for (int j = i; j < end; j++) {
            param *pr = &opt->ps[j];
            if (opt->done[j] || !same_call(opt, lead, pr)) continue;
            opt->done[j] = true;
            opt->slot_param[ns] = j;
            ns_tensor *p = pr->p;
            if (p->grad->device != p->device || p->grad->numel != p->numel)
                ns_error("%s: the grad of '%s' does not match it (%s %lld vs %s %lld)",
                         ns_optim_kind_name(opt), p->name ? p->name : "(unnamed)",
                         ns_device_name(p->grad->device), (long long)p->grad->numel,
                         ns_device_name(p->device), (long long)p->numel);
            opt->slots[ns++] = (ns_optim_slot){.w = p->data,
                                               .g = p->grad->data,
                                               .n = p->numel,
                                               .lr = (float)h->lr,
                                               .weight_decay = (float)h->weight_decay};
        }
        /* States are created after the key was used by same_call(). */
        for (int s = 0; s < ns; s++) {
            param *pr = &opt->ps[opt->slot_param[s]];
            ensure_state(opt, pr, momentum);
            opt->slots[s].s1 = pr->state[0] ? pr->state[0]->data : NULL;
            opt->slots[s].s2 = pr->state[1] ? pr->state[1]->data : NULL;
        }
        const ns_backend *be = ns_be(lead->p);
        if (sgd) {
            be->sgd_step(ns, opt->slots, (float)h->momentum, (float)h->dampening, h->nesterov,
                         fresh, opt->slot_stats);
        } else {
            /* Bias corrections in double, as PyTorch computes them in Python floats. */
            double bc1 = 1.0 - pow(h->beta1, (double)t), bc2 = 1.0 - pow(h->beta2, (double)t);
            be->adam_step(ns, opt->slots, (float)h->beta1, (float)h->beta2, (float)h->eps,
                          opt->kind == NS_OPTIM_ADAMW, (float)bc1, (float)bc2, opt->slot_stats);
        }
        for (int s = 0; s < ns; s++) {
            param *pr = &opt->ps[opt->slot_param[s]];
            const double *st = opt->slot_stats + 4 * s;
            pr->steps++;
            pr->stats = (ns_param_stats){.had_grad = true,
                                         .grad_norm = sqrt(st[0]),
                                         .update_norm = sqrt(st[1]),
                                         .weight_norm = sqrt(st[2]),
                                         .nonfinite = (int64_t)st[3]};
        }
    }
}

void ns_optim_step(ns_optimizer *opt) {
    assert(opt);
    ns_run_optim_hooks(opt, false);
    for (int g = 0; g < opt->n_groups; g++) check_hparams(opt->kind, &opt->groups[g], g);
    int first = 0;
    for (int g = 0; g < opt->n_groups; g++) {
        int end = first;
        while (end < opt->n && opt->ps[end].group == g) end++;
        step_group(opt, g, first, end);
        first = end;
    }
    opt->steps++;
    ns_note_optimizer_step(opt->groups[0].lr);
    ns_run_optim_hooks(opt, true);
}

void ns_optim_zero_grad(ns_optimizer *opt) {
    assert(opt);
    for (int i = 0; i < opt->n; i++) ns_zero_grad(opt->ps[i].p);
}

/* ------------------------------------------------------------------ accessors */

ns_optim_kind ns_optim_get_kind(const ns_optimizer *opt) {
    return opt->kind;
}

const char *ns_optim_kind_name(const ns_optimizer *opt) {
    return opt->kind == NS_OPTIM_SGD ? "SGD" : opt->kind == NS_OPTIM_ADAM ? "Adam" : "AdamW";
}

int ns_optim_num_groups(const ns_optimizer *opt) {
    return opt->n_groups;
}

ns_optim_hparams *ns_optim_group(ns_optimizer *opt, int g) {
    assert(g >= 0 && g < opt->n_groups);
    return &opt->groups[g];
}

void ns_optim_set_lr(ns_optimizer *opt, int g, double lr) {
    assert(g >= -1 && g < opt->n_groups);
    if (!(lr >= 0.0)) ns_error("%s: Invalid learning rate: %g", ns_optim_kind_name(opt), lr);
    for (int i = 0; i < opt->n_groups; i++)
        if (g < 0 || i == g) opt->groups[i].lr = lr;
}

int64_t ns_optim_steps(const ns_optimizer *opt) {
    return opt->steps;
}

void ns_optim_set_steps(ns_optimizer *opt, int64_t steps) {
    assert(steps >= 0);
    opt->steps = steps;
}

int ns_optim_num_params(const ns_optimizer *opt) {
    return opt->n;
}

ns_tensor *ns_optim_param(const ns_optimizer *opt, int i) {
    assert(i >= 0 && i < opt->n);
    return opt->ps[i].p;
}

int ns_optim_param_group(const ns_optimizer *opt, int i) {
    assert(i >= 0 && i < opt->n);
    return opt->ps[i].group;
}

double ns_optim_param_lr(const ns_optimizer *opt, int i) {
    assert(i >= 0 && i < opt->n);
    return opt->groups[opt->ps[i].group].lr;
}

bool ns_optim_holds(const ns_optimizer *opt, const ns_tensor *t) {
    return t && find_param(opt, t) >= 0;
}

bool ns_optim_last_stats(const ns_optimizer *opt, int i, ns_param_stats *out) {
    if (i < 0 || i >= opt->n) return false;
    *out = opt->ps[i].stats;
    return true;
}

int ns_optim_num_states(const ns_optimizer *opt) {
    return num_states(opt->kind);
}

const char *ns_optim_state_name(const ns_optimizer *opt, int k) {
    assert(k >= 0 && k < num_states(opt->kind));
    return state_names[opt->kind][k];
}

ns_tensor *ns_optim_state(const ns_optimizer *opt, int i, int k) {
    assert(i >= 0 && i < opt->n && k >= 0 && k < num_states(opt->kind));
    return opt->ps[i].state[k];
}

int64_t ns_optim_param_steps(const ns_optimizer *opt, int i) {
    assert(i >= 0 && i < opt->n);
    return opt->ps[i].steps;
}

void ns_optim_set_param_state(ns_optimizer *opt, int i, int64_t steps, const float *const *states) {
    assert(i >= 0 && i < opt->n && steps >= 0);
    param *pr = &opt->ps[i];
    pr->steps = steps;
    for (int k = 0; k < num_states(opt->kind); k++) {
        const float *src = states ? states[k] : NULL;
        if (!src) {
            ns_tensor_free(pr->state[k]);
            pr->state[k] = NULL;
            continue;
        }
        if (!pr->state[k])
            pr->state[k] = ns_tensor_new(pr->p->ndim, pr->p->shape, pr->p->device);
        else if (pr->state[k]->device != pr->p->device)
            ns_tensor_move(pr->state[k], pr->p->device);
        ns_tensor_set(pr->state[k], src);
    }
}
