/* Hook registry (global and per-owner hooks of every kind), engine events, and steps. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

enum kind { K_FWD_PRE, K_FWD, K_BWD, K_OPT_PRE, K_OPT_POST, K_EVENT };

typedef struct {
    ns_hook_handle id;
    enum kind kind;
    void *owner; /* module or optimizer; NULL = global */
    void (*fn)(void);
    void *ud;
} hook;

static hook *g_hooks;
static int g_n, g_cap;
static int g_running; /* > 0 while dispatching: removals are deferred */
static bool g_dirty;
static ns_hook_handle g_next = 1;
static int g_count[K_EVENT + 1];

static ns_hook_handle add(enum kind k, void *owner, void (*fn)(void), void *ud) {
    if (!fn) ns_error("hook registration: the hook function is NULL");
    if (g_n == g_cap) {
        int cap = g_cap ? g_cap * 2 : 16;
        hook *h = realloc(g_hooks, sizeof *h * (size_t)cap);
        if (!h) ns_error("out of memory registering a hook");
        g_hooks = h;
        g_cap = cap;
    }
    g_hooks[g_n] = (hook){g_next++, k, owner, fn, ud};
    g_count[k]++;
    if (owner && k <= K_BWD) ((ns_module *)owner)->n_own_hooks++;
    return g_hooks[g_n++].id;
}

static void compact(void) {
    if (g_running || !g_dirty) return;
    int j = 0;
    for (int i = 0; i < g_n; i++)
        if (g_hooks[i].fn) g_hooks[j++] = g_hooks[i];
    g_n = j;
    g_dirty = false;
}

static void drop(int i) {
    hook *h = &g_hooks[i];
    if (!h->fn) return;
    g_count[h->kind]--;
    if (h->owner && h->kind <= K_BWD) ((ns_module *)h->owner)->n_own_hooks--;
    h->fn = NULL;
    g_dirty = true;
}

void ns_hooks_reset_dispatch(void) {
    g_running = 0;
    compact();
}

void ns_hook_remove(ns_hook_handle id) {
    for (int i = 0; i < g_n; i++)
        if (g_hooks[i].id == id) drop(i);
    compact();
}

void ns_hooks_forget_owner(void *owner) {
    for (int i = 0; i < g_n; i++)
        if (g_hooks[i].owner == owner) drop(i);
    compact();
}

#define FN(f) ((void (*)(void))(f))

ns_hook_handle ns_register_forward_pre_hook_global(ns_forward_pre_hook fn, void *ud) {
    return add(K_FWD_PRE, NULL, FN(fn), ud);
}
ns_hook_handle ns_register_forward_hook_global(ns_forward_hook fn, void *ud) {
    return add(K_FWD, NULL, FN(fn), ud);
}
ns_hook_handle ns_register_backward_hook_global(ns_backward_hook fn, void *ud) {
    return add(K_BWD, NULL, FN(fn), ud);
}
ns_hook_handle ns_register_forward_pre_hook(ns_module *m, ns_forward_pre_hook fn, void *ud) {
    return add(K_FWD_PRE, m, FN(fn), ud);
}
ns_hook_handle ns_register_forward_hook(ns_module *m, ns_forward_hook fn, void *ud) {
    return add(K_FWD, m, FN(fn), ud);
}
ns_hook_handle ns_register_backward_hook(ns_module *m, ns_backward_hook fn, void *ud) {
    return add(K_BWD, m, FN(fn), ud);
}
ns_hook_handle ns_register_optim_pre_hook(struct ns_optimizer *opt, ns_optim_hook fn, void *ud) {
    return add(K_OPT_PRE, opt, FN(fn), ud);
}
ns_hook_handle ns_register_optim_post_hook(struct ns_optimizer *opt, ns_optim_hook fn, void *ud) {
    return add(K_OPT_POST, opt, FN(fn), ud);
}
ns_hook_handle ns_register_event_hook(ns_event_hook fn, void *ud) {
    return add(K_EVENT, NULL, FN(fn), ud);
}

/* Iterates hooks of kind k: global ones first, then those owned by owner (registration order
 * within each group). New hooks added during dispatch run from the next dispatch on. */
#define DISPATCH(k, OWNER_, TYPE, CALL)                                                            \
    do {                                                                                           \
        if (!g_count[k]) break;                                                                    \
        g_running++;                                                                               \
        int n_ = g_n;                                                                              \
        for (int pass_ = 0; pass_ < 2; pass_++) {                                                  \
            if (pass_ == 1 && !(OWNER_)) break;                                                    \
            for (int i_ = 0; i_ < n_; i_++) {                                                      \
                hook *h_ = &g_hooks[i_];                                                           \
                if (h_->kind != (k) || !h_->fn) continue;                                          \
                if (pass_ == 0 ? h_->owner != NULL : h_->owner != (void *)(OWNER_)) continue;      \
                TYPE f = (TYPE)h_->fn;                                                             \
                void *ud = h_->ud;                                                                 \
                CALL;                                                                              \
            }                                                                                      \
        }                                                                                          \
        g_running--;                                                                               \
        compact();                                                                                 \
    } while (0)

void ns_run_forward_pre_hooks(ns_module *m, ns_tensor *x) {
    DISPATCH(K_FWD_PRE, m, ns_forward_pre_hook, f(m, x, ud));
}

void ns_run_forward_hooks(ns_module *m, ns_tensor *x, ns_tensor *y) {
    DISPATCH(K_FWD, m, ns_forward_hook, f(m, x, y, ud));
}

void ns_run_backward_hooks(ns_module *m, const ns_tensor *gout, const ns_tensor *gin,
                           uint64_t call_id) {
    DISPATCH(K_BWD, m, ns_backward_hook, f(m, gout, gin, call_id, ud));
}

bool ns_have_backward_hooks(ns_module *m) {
    if (!g_count[K_BWD]) return false;
    for (int i = 0; i < g_n; i++)
        if (g_hooks[i].kind == K_BWD && g_hooks[i].fn &&
            (!g_hooks[i].owner || g_hooks[i].owner == m))
            return true;
    return false;
}

void ns_run_optim_hooks(struct ns_optimizer *opt, bool post) {
    /* Optimizer hooks registered with opt == NULL are global. */
    if (post)
        DISPATCH(K_OPT_POST, opt, ns_optim_hook, f(opt, ud));
    else
        DISPATCH(K_OPT_PRE, opt, ns_optim_hook, f(opt, ud));
}

/* ------------------------------------------------------------------ steps */

static int64_t g_step;
static int g_epoch;
static double g_loss = NAN;
static bool g_stepped;
static int64_t g_samples;

void ns_note_optimizer_step(double lr) {
    (void)lr;
    g_stepped = true;
}

void ns_note_samples(int64_t n) {
    if (!g_samples) g_samples = n;
}

void ns_record_autostart(void); /* hooks/recorder.c: NNSCOPE_DB */

void ns_emit_event(const ns_event *ev) {
    static bool started;
    if (!started) {
        started = true;
        ns_record_autostart();
    }
    if (ev->kind == NS_EV_BACKWARD_BEGIN && ev->tensor && ev->tensor->numel == 1)
        g_loss = ns_item(ev->tensor);
    DISPATCH(K_EVENT, (void *)NULL, ns_event_hook, f(ev, ud));
}

void ns_step_set_loss(double loss) {
    g_loss = loss;
}

void ns_set_epoch(int epoch) {
    g_epoch = epoch;
}

int64_t ns_step_index(void) {
    return g_step;
}

void ns_step_end(void) {
    ns_step_info info = {.phase = g_stepped ? "train" : "eval",
                         .step = g_step,
                         .epoch = g_epoch,
                         .loss = g_loss,
                         .samples = g_samples};
    ns_event ev = {.kind = NS_EV_STEP_END, .step = &info};
    ns_emit_event(&ev);
    ns_scope_reset();
    g_step++;
    g_loss = NAN;
    g_stepped = false;
    g_samples = 0;
}
