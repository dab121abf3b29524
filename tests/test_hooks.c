/* ns_call(): the call stack and caller, modules created inside a forward, calls of unregistered
 * modules, forward-pre / forward / backward hooks (order, removal, gradient values), error
 * messages that name the running module, and the step's batch size. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "gradcheck.h"
#include "internal.h" /* ns_module_current, tape nodes: checks what ns_call records */
#include "nnscope.h"

#define EXPECT_ERROR(stmt)                                                                         \
    do {                                                                                           \
        GC_EXPECT_ERROR(stmt);                                                                     \
        ns_call_stack_reset();                                                                     \
    } while (0)

/* ------------------------------------------------------------------ event capture */

typedef struct {
    ns_event_kind kind;
    ns_module *module, *other;
    int64_t samples;
} ev_rec;

static ev_rec g_ev[256];
static int g_nev;

static void on_event(const ns_event *ev, void *ud) {
    (void)ud;
    if (g_nev >= 256) return;
    g_ev[g_nev++] = (ev_rec){ev->kind, ev->module, ev->other, ev->step ? ev->step->samples : -1};
}

static int count_events(ns_event_kind k) {
    int n = 0;
    for (int i = 0; i < g_nev; i++) n += g_ev[i].kind == k;
    return n;
}

static const ev_rec *find_event(ns_event_kind k) {
    for (int i = 0; i < g_nev; i++)
        if (g_ev[i].kind == k) return &g_ev[i];
    return NULL;
}

/* A trace of what ran, as text: "Gpre:a Opre:a fwd:a ...". */
static char g_trace[1024];

static void trace(const char *fmt, ...) {
    size_t off = strlen(g_trace);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_trace + off, sizeof g_trace - off, fmt, ap);
    va_end(ap);
}

static int setup(void **state) {
    (void)state;
    g_nev = 0;
    g_trace[0] = 0;
    ns_call_stack_reset();
    ns_scope_reset();
    ns_set_grad_enabled(true);
    ns_manual_seed(0);
    return 0;
}

/* ------------------------------------------------------------------ a probe module */

/* Probe: records the call info seen inside its forward, then runs its registered children and
 * its plain-field "stray" module in order. */
typedef struct {
    ns_module base;
    const char *tag;
    ns_call_info seen;
    ns_module *seen_current;
    ns_module *stray;
} Probe;

static ns_tensor *probe_forward(ns_module *self, ns_tensor *x) {
    Probe *p = (Probe *)self;
    p->seen = *ns_current_call();
    p->seen_current = ns_module_current();
    trace("fwd:%s ", p->tag);
    for (int i = 0; i < self->n_children; i++) x = ns_call(self->children[i].module, x);
    if (p->stray) x = ns_call(p->stray, x);
    return x;
}

static void probe_destroy(ns_module *self) {
    ns_module_free(((Probe *)self)->stray);
}

static Probe *probe_new(const char *tag) {
    Probe *p = calloc(1, sizeof *p);
    ns_module_init(&p->base, "Probe", probe_forward);
    p->base.destroy = probe_destroy;
    p->tag = tag;
    return p;
}

static void test_call_stack_and_caller(void **state) {
    (void)state;
    Probe *root = probe_new("root"), *a = probe_new("a"), *b = probe_new("b");
    ns_register_module(&root->base, "a", &a->base);
    ns_register_module(&a->base, "b", &b->base);
    assert_null(ns_current_call());
    assert_null(ns_module_current());
    ns_tensor *x = ns_tmp(NS_DIMS(2, 3), NS_CPU);
    ns_tensor_fill(x, 1.0f);
    ns_tensor *y = ns_call(&root->base, x);
    assert_ptr_equal(y, x); /* no hooks: the forward's own result */
    assert_int_equal(root->seen.depth, 0);
    assert_null(root->seen.caller);
    assert_int_equal(a->seen.depth, 1);
    assert_ptr_equal(a->seen.caller, &root->base);
    assert_int_equal(b->seen.depth, 2);
    assert_ptr_equal(b->seen.caller, &a->base);
    assert_ptr_equal(b->seen_current, &b->base);
    assert_true(a->seen.call_id > root->seen.call_id);
    assert_true(b->seen.call_id > a->seen.call_id);
    assert_true(b->seen.t_start >= root->seen.t_start && root->seen.t_start > 0);
    assert_string_equal(g_trace, "fwd:root fwd:a fwd:b ");
    assert_null(ns_current_call()); /* popped */
    uint64_t first = root->seen.call_id;
    (ns_call)(&root->base, x); /* the function form */
    assert_true(root->seen.call_id > b->seen.call_id || root->seen.call_id > first);
    assert_null(ns_current_call());
    ns_module_free(&root->base);
}

/* Tape nodes know the module whose forward recorded them (recorder attribution). */
static void test_tape_nodes_name_module(void **state) {
    (void)state;
    ns_module *seq = ns_sequential_new(2, ns_linear_new(3, 4, true), ns_tanh_new());
    ns_tensor *x = ns_tmp(NS_DIMS(2, 3), NS_CPU);
    ns_tensor_fill(x, 0.5f);
    ns_tensor *y = ns_call(seq, x);
    assert_string_equal(y->grad_fn->op, "tanh");
    assert_ptr_equal(y->grad_fn->module, ns_sequential_get(seq, 1));
    assert_string_equal(y->grad_fn->in[0]->grad_fn->op, "linear");
    assert_ptr_equal(y->grad_fn->in[0]->grad_fn->module, ns_sequential_get(seq, 0));
    ns_scope_reset();
    ns_module_free(seq);
}

/* ------------------------------------------------------------------ created in forward */

typedef struct {
    ns_module base;
    ns_module *made; /* built by the forward each call (the C twin of nn.Linear in forward) */
} Builder;

static ns_tensor *builder_forward(ns_module *self, ns_tensor *x) {
    Builder *b = (Builder *)self;
    ns_module_free(b->made);
    b->made = ns_linear_new(x->shape[1], 2, true);
    return ns_call(b->made, x);
}

static void builder_destroy(ns_module *self) {
    ns_module_free(((Builder *)self)->made);
}

static void test_created_in_forward(void **state) {
    (void)state;
    ns_hook_handle h = ns_register_event_hook(on_event, NULL);
    Builder *b = calloc(1, sizeof *b);
    ns_module_init(&b->base, "Builder", builder_forward);
    b->base.destroy = builder_destroy;
    assert_false(b->base.created_in_forward);
    ns_tensor *x = ns_tmp(NS_DIMS(4, 3), NS_CPU);
    ns_tensor_fill(x, 1.0f);
    g_nev = 0;
    ns_tensor *y = ns_call(&b->base, x);
    GC_ASSERT_SHAPE(y, 4, 2);
    assert_true(b->made->created_in_forward);
    assert_ptr_equal(b->made->creator, &b->base);
    const ev_rec *e = find_event(NS_EV_MODULE_CREATED);
    assert_non_null(e);
    assert_ptr_equal(e->module, b->made);
    assert_ptr_equal(e->other, &b->base);
    /* Built inside and never registered: its call is also an unregistered call. */
    e = find_event(NS_EV_UNREGISTERED_CALL);
    assert_non_null(e);
    assert_ptr_equal(e->module, b->made);
    assert_ptr_equal(e->other, &b->base);
    /* A new layer every step: a new creation (and a new unregistered call) every step. */
    ns_module *first = b->made;
    g_nev = 0;
    ns_call(&b->base, x);
    assert_int_equal(count_events(NS_EV_MODULE_CREATED), 1);
    assert_int_equal(count_events(NS_EV_UNREGISTERED_CALL), 1);
    assert_int_equal(count_events(NS_EV_MODULE_FREED), 1);
    (void)first;
    /* Modules built outside any forward are not flagged. */
    ns_module *plain = ns_relu_new();
    assert_false(plain->created_in_forward);
    assert_null(plain->creator);
    ns_module_free(plain);
    ns_hook_remove(h);
    ns_scope_reset();
    ns_module_free(&b->base);
}

/* ------------------------------------------------------------------ unregistered calls */

static void test_unregistered_call_once_per_module(void **state) {
    (void)state;
    ns_hook_handle h = ns_register_event_hook(on_event, NULL);
    Probe *root = probe_new("root"), *enc = probe_new("enc");
    ns_register_module(&root->base, "enc", &enc->base);
    enc->stray = ns_linear_new(3, 5, true); /* plain field: runs, but not in the tree */
    ns_tensor *x = ns_tmp(NS_DIMS(2, 3), NS_CPU);
    ns_tensor_fill(x, 1.0f);
    g_nev = 0;
    ns_tensor *y = ns_call(&root->base, x);
    GC_ASSERT_SHAPE(y, 2, 5);
    assert_int_equal(count_events(NS_EV_UNREGISTERED_CALL), 1);
    const ev_rec *e = find_event(NS_EV_UNREGISTERED_CALL);
    assert_ptr_equal(e->module, enc->stray);
    assert_ptr_equal(e->other, &enc->base); /* the caller */
    ns_call(&root->base, x);
    ns_call(&root->base, x);
    assert_int_equal(count_events(NS_EV_UNREGISTERED_CALL), 1); /* once per module */
    /* Registered modules never raise it, and neither does an outermost call. */
    g_nev = 0;
    ns_call(enc->stray, x);
    assert_int_equal(count_events(NS_EV_UNREGISTERED_CALL), 0);

    /* An error inside the unregistered module names it under its caller. */
    ns_tensor *bad = ns_tmp(NS_DIMS(2, 4), NS_CPU);
    ns_tensor_fill(bad, 1.0f);
    ns_module_free(enc->stray);
    enc->stray = NULL;
    Probe *inner = probe_new("inner");
    ns_register_module(&inner->base, "lin", ns_linear_new(3, 5, true));
    enc->stray = &inner->base;
    EXPECT_ERROR(ns_call(&root->base, bad));
    GC_MSG_HAS("enc.(unregistered Probe).lin (Linear 3->5): linear: input has 4 features, "
               "expected 3");
    ns_hook_remove(h);
    ns_scope_reset();
    ns_module_free(&root->base);
}

/* ------------------------------------------------------------------ errors name the module */

typedef struct {
    ns_module base;
    ns_module *fc1, *fc2;
} Net;

/* Feeds fc2 a 300-feature tensor: the classic shape bug. */
static ns_tensor *bad_net_forward(ns_module *self, ns_tensor *x) {
    Net *n = (Net *)self;
    x = ns_call(n->fc1, x);
    ns_tensor *wrong = ns_tmp(NS_DIMS(x->shape[0], 300), x->device);
    ns_tensor_fill(wrong, 0.0f);
    return ns_call(n->fc2, wrong);
}

static ns_tensor *null_forward(ns_module *self, ns_tensor *x) {
    (void)self, (void)x;
    return NULL;
}

static void test_errors_name_the_module(void **state) {
    (void)state;
    Net *n = calloc(1, sizeof *n);
    ns_module_init(&n->base, "Net", bad_net_forward);
    n->fc1 = ns_linear_new(784, 256, true);
    n->fc2 = ns_linear_new(256, 10, true);
    ns_register_module(&n->base, "fc1", n->fc1);
    ns_register_module(&n->base, "fc2", n->fc2);
    ns_tensor *x = ns_tmp(NS_DIMS(8, 784), NS_CPU);
    ns_tensor_fill(x, 0.1f);
    GC_EXPECT_ERROR(ns_call(&n->base, x));
    /* The message starts with the module's label; the operands follow (error.c's format). */
    const char *want = "fc2 (Linear 256->10): linear: input has 300 features, expected 256 "
                       "(operands:";
    assert_true(strncmp(gc_msg, want, strlen(want)) == 0);
    GC_MSG_HAS("[8x300] on cpu", "fc2.weight", "[10x256] on cpu", "fc2.bias");
    /* The failing calls never returned; the error path resets the call stack before the
     * handler runs, so a handler that longjmps leaves it consistent. */
    assert_null(ns_current_call());
    ns_tensor *ok = ns_call(n->fc1, x); /* runs normally afterwards */
    GC_ASSERT_SHAPE(ok, 8, 256);

    ns_module *bn = ns_batchnorm1d_new(16);
    ns_register_module(n->fc2, "bn", bn); /* any module can hold children */
    ns_tensor *img = ns_tmp(NS_DIMS(2, 16, 3, 3), NS_CPU);
    EXPECT_ERROR(ns_call(bn, img));
    GC_MSG_HAS("fc2.bn (BatchNorm1d 16): BatchNorm1d: expected a 2D input (N, C), got 4D "
               "[2x16x3x3]");

    ns_module *nul = calloc(1, sizeof *nul);
    ns_module_init(nul, "Null", null_forward);
    EXPECT_ERROR(ns_call(nul, x));
    assert_string_equal(gc_msg, "Null: forward returned NULL");
    ns_module *abstract = calloc(1, sizeof *abstract);
    ns_module_init(abstract, "Abstract", NULL);
    EXPECT_ERROR(ns_call(abstract, x));
    GC_MSG_HAS("ns_call(abstract): Abstract has no forward function");
    ns_module *none = NULL;
    EXPECT_ERROR(ns_call(none, x));
    GC_MSG_HAS("ns_call(none): the module is NULL");
    EXPECT_ERROR(ns_call(nul, NULL));
    GC_MSG_HAS("ns_call(nul): the input of Null is NULL");
    ns_scope_reset();
    ns_module_free(nul);
    ns_module_free(abstract);
    ns_module_free(&n->base);
}

/* ------------------------------------------------------------------ forward hooks */

static void g_pre(ns_module *m, ns_tensor *in, void *ud) {
    (void)in;
    trace("Gpre%s:%s ", (const char *)ud, ((Probe *)m)->tag);
}
static void o_pre(ns_module *m, ns_tensor *in, void *ud) {
    (void)in;
    trace("Opre%s:%s ", (const char *)ud, ((Probe *)m)->tag);
}
static void g_fwd(ns_module *m, ns_tensor *in, ns_tensor *out, void *ud) {
    (void)in, (void)out;
    trace("Gfwd%s:%s ", (const char *)ud, ((Probe *)m)->tag);
}
static void o_fwd(ns_module *m, ns_tensor *in, ns_tensor *out, void *ud) {
    (void)in, (void)out;
    trace("Ofwd%s:%s ", (const char *)ud, ((Probe *)m)->tag);
}

static void test_forward_hook_order(void **state) {
    (void)state;
    Probe *root = probe_new("r"), *a = probe_new("a");
    ns_register_module(&root->base, "a", &a->base);
    /* Own hooks registered first: global ones still run first, as in PyTorch. */
    ns_hook_handle h[6];
    h[0] = ns_register_forward_pre_hook(&a->base, o_pre, "1");
    h[1] = ns_register_forward_hook(&a->base, o_fwd, "1");
    h[2] = ns_register_forward_pre_hook_global(g_pre, "1");
    h[3] = ns_register_forward_hook_global(g_fwd, "1");
    h[4] = ns_register_forward_pre_hook_global(g_pre, "2");
    h[5] = ns_register_forward_pre_hook(&a->base, o_pre, "2");
    ns_tensor *x = ns_tmp(NS_DIMS(1, 2), NS_CPU);
    ns_call(&root->base, x);
    assert_string_equal(g_trace, "Gpre1:r Gpre2:r fwd:r Gpre1:a Gpre2:a Opre1:a Opre2:a fwd:a "
                                 "Gfwd1:a Ofwd1:a Gfwd1:r ");
    /* Removal: the handle takes exactly that hook away. */
    ns_hook_remove(h[2]);
    ns_hook_remove(h[0]);
    ns_hook_remove(h[0]); /* twice: ignored */
    g_trace[0] = 0;
    ns_call(&root->base, x);
    assert_string_equal(g_trace, "Gpre2:r fwd:r Gpre2:a Opre2:a fwd:a Gfwd1:a Ofwd1:a Gfwd1:r ");
    for (int i = 0; i < 6; i++) ns_hook_remove(h[i]);
    g_trace[0] = 0;
    ns_call(&root->base, x);
    assert_string_equal(g_trace, "fwd:r fwd:a ");
    ns_scope_reset();
    ns_module_free(&root->base);
}

/* Hooks that remove themselves or another hook while running. */
static ns_hook_handle g_self_handle, g_victim_handle;

static void self_removing(ns_module *m, ns_tensor *in, void *ud) {
    (void)m, (void)in, (void)ud;
    trace("self ");
    ns_hook_remove(g_self_handle);
}
static void remover(ns_module *m, ns_tensor *in, void *ud) {
    (void)m, (void)in, (void)ud;
    trace("remover ");
    ns_hook_remove(g_victim_handle);
}
static void victim(ns_module *m, ns_tensor *in, void *ud) {
    (void)m, (void)in, (void)ud;
    trace("victim ");
}

static void test_hook_removal_inside_hook(void **state) {
    (void)state;
    Probe *p = probe_new("p");
    g_self_handle = ns_register_forward_pre_hook(&p->base, self_removing, NULL);
    ns_hook_handle r = ns_register_forward_pre_hook_global(remover, NULL);
    g_victim_handle = ns_register_forward_pre_hook(&p->base, victim, NULL);
    ns_tensor *x = ns_tmp(NS_DIMS(1, 2), NS_CPU);
    ns_call(&p->base, x);
    /* remover (global) runs first and removes victim before its turn; self runs once. */
    assert_string_equal(g_trace, "remover self fwd:p ");
    g_trace[0] = 0;
    ns_call(&p->base, x);
    assert_string_equal(g_trace, "remover fwd:p ");
    ns_hook_remove(r);
    ns_scope_reset();
    ns_module_free(&p->base);
}

/* ------------------------------------------------------------------ backward hooks */

typedef struct {
    int calls;
    char order[256];
    float gout[16], gin[16];
    int64_t n_gout, n_gin;
    bool gin_null;
    uint64_t call_id;
} bwd_seen;

static void bwd_hook(ns_module *m, const ns_tensor *gout, const ns_tensor *gin, uint64_t call_id,
                     void *ud) {
    bwd_seen *s = ud;
    s->calls++;
    char lab[128];
    size_t off = strlen(s->order);
    snprintf(s->order + off, sizeof s->order - off, "%s%s", off ? "," : "",
             ns_module_label(m, lab, sizeof lab));
    s->call_id = call_id;
    s->n_gout = gout->numel;
    if (gout->numel <= 16) ns_tensor_get(gout, s->gout);
    s->gin_null = gin == NULL;
    s->n_gin = gin ? gin->numel : 0;
    if (gin && gin->numel <= 16) ns_tensor_get(gin, s->gin);
}

static uint64_t g_fwd_call_id;
static void note_call_id(ns_module *m, ns_tensor *in, ns_tensor *out, void *ud) {
    (void)m, (void)in, (void)out, (void)ud;
    g_fwd_call_id = ns_current_call()->call_id;
}

/* Linear(3,2) with W = [[1,2,3],[4,5,6]], b = 0; x (2,3) requires grad; seed R (2,2).
 * grad_out = R, grad_in = R @ W, W.grad = R^T @ x. */
static void test_backward_hook_values(void **state) {
    (void)state;
    ns_module *lin = ns_linear_new(3, 2, true);
    const float w[6] = {1, 2, 3, 4, 5, 6}, xv[6] = {0.5f, -1, 2, 1, 0, -2};
    const float r[4] = {1, -2, 0.5f, 3};
    ns_tensor_set(ns_as_linear(lin)->weight, w);
    ns_tensor_fill(ns_as_linear(lin)->bias, 0.0f);
    bwd_seen seen = {0};
    ns_hook_handle h = ns_register_backward_hook(lin, bwd_hook, &seen);
    ns_hook_handle f = ns_register_forward_hook(lin, note_call_id, NULL);
    ns_tensor *x = ns_tensor_new(NS_DIMS(2, 3), NS_CPU);
    ns_tensor_set(x, xv);
    ns_requires_grad(x, true);
    ns_tensor *y = ns_call(lin, x);
    assert_string_equal(y->grad_fn->op, "module_output"); /* boundary view, same storage */
    assert_int_equal(seen.calls, 0);                      /* nothing before backward */
    ns_backward(y, ns_from_host(NS_DIMS(2, 2), r, NS_CPU));
    assert_int_equal(seen.calls, 1);
    assert_int_equal(seen.call_id, g_fwd_call_id);
    assert_int_equal(seen.n_gout, 4);
    assert_memory_equal(seen.gout, r, sizeof r);
    assert_false(seen.gin_null);
    assert_int_equal(seen.n_gin, 6);
    const double gin_want[6] = {1 - 8, 2 - 10, 3 - 12, 0.5 + 12, 1 + 15, 1.5 + 18};
    GC_ASSERT_CLOSE(seen.gin, gin_want, 6, 1e-6, 1e-6);
    float xg[6], wg[6];
    ns_tensor_get(x->grad, xg); /* the gradient still reaches the input */
    GC_ASSERT_CLOSE(xg, gin_want, 6, 1e-6, 1e-6);
    ns_tensor_get(ns_as_linear(lin)->weight->grad, wg); /* and the parameters */
    const double wg_want[6] = {1 * 0.5 + 0.5 * 1, -1, 2 - 1, -2 * 0.5 + 3, 2, -4 - 6};
    GC_ASSERT_CLOSE(wg, wg_want, 6, 1e-6, 1e-6);

    /* Input without grad: the hook fires at the output boundary with grad_in NULL. */
    ns_scope_reset();
    memset(&seen, 0, sizeof seen);
    ns_tensor *x2 = ns_from_host(NS_DIMS(2, 3), xv, NS_CPU);
    y = ns_call(lin, x2);
    ns_backward(y, ns_from_host(NS_DIMS(2, 2), r, NS_CPU));
    assert_int_equal(seen.calls, 1);
    assert_true(seen.gin_null);
    assert_memory_equal(seen.gout, r, sizeof r);

    /* Grad mode off: no boundary, no hook. */
    ns_scope_reset();
    bool prev = ns_set_grad_enabled(false);
    y = ns_call(lin, x);
    assert_null(y->grad_fn);
    ns_set_grad_enabled(prev);
    /* Hook removed: the forward returns the op's own output again. */
    ns_hook_remove(h);
    y = ns_call(lin, x);
    assert_string_equal(y->grad_fn->op, "linear");
    ns_hook_remove(f);
    ns_scope_reset();
    ns_tensor_free(x);
    ns_module_free(lin);
}

/* Order of backward hooks through nested modules: reverse of the forward when the gradient
 * leaves through the input; at the output boundary (before the inner modules) when the
 * input does not require grad. */
static void test_backward_hook_order_nested(void **state) {
    (void)state;
    ns_module *seq =
        ns_sequential_new(3, ns_linear_new(3, 4, true), ns_relu_new(), ns_linear_new(4, 2, true));
    bwd_seen seen = {0};
    ns_hook_handle h = ns_register_backward_hook_global(bwd_hook, &seen);
    ns_tensor *x = ns_tensor_new(NS_DIMS(2, 3), NS_CPU);
    gc_fill_uniform(x->data, x->numel, 3, -1, 1);
    ns_requires_grad(x, true);
    ns_backward(ns_sum(ns_call(seq, x)), NULL);
    assert_int_equal(seen.calls, 4);
    assert_string_equal(seen.order, "2 (Linear 4->2),1 (ReLU),0 (Linear 3->4),Sequential 3 items");
    assert_false(seen.gin_null);
    assert_int_equal(seen.n_gin, 6); /* the Sequential's grad_in is d/dx */
    float xg[6];
    ns_tensor_get(x->grad, xg);
    assert_memory_equal(seen.gin, xg, sizeof xg);

    ns_scope_reset();
    memset(&seen, 0, sizeof seen);
    ns_requires_grad(x, false);
    ns_backward(ns_sum(ns_call(seq, x)), NULL);
    assert_int_equal(seen.calls, 4);
    /* The first Linear's input is x too (no grad): it fires at its output boundary. */
    assert_string_equal(seen.order, "Sequential 3 items,2 (Linear 4->2),1 (ReLU),0 (Linear 3->4)");
    assert_true(seen.gin_null);
    ns_hook_remove(h);
    ns_scope_reset();
    ns_tensor_free(x);
    ns_module_free(seq);
}

static ns_hook_handle g_bwd_self;
static int g_bwd_self_calls;
static void bwd_self_removing(ns_module *m, const ns_tensor *gout, const ns_tensor *gin,
                              uint64_t call_id, void *ud) {
    (void)m, (void)gout, (void)gin, (void)call_id, (void)ud;
    g_bwd_self_calls++;
    ns_hook_remove(g_bwd_self);
}

static void test_backward_hook_removes_itself(void **state) {
    (void)state;
    ns_module *seq = ns_sequential_new(2, ns_linear_new(3, 3, true), ns_linear_new(3, 3, true));
    g_bwd_self = ns_register_backward_hook_global(bwd_self_removing, NULL);
    ns_tensor *x = ns_tmp(NS_DIMS(2, 3), NS_CPU);
    ns_tensor_fill(x, 1.0f);
    ns_backward(ns_sum(ns_call(seq, x)), NULL);
    assert_int_equal(g_bwd_self_calls, 1); /* removed during the pass: never again */
    ns_scope_reset();
    ns_tensor *y = ns_call(seq, x);
    assert_string_equal(y->grad_fn->op, "linear");
    ns_backward(ns_sum(y), NULL);
    assert_int_equal(g_bwd_self_calls, 1);
    ns_scope_reset();
    ns_module_free(seq);
}

/* ------------------------------------------------------------------ step samples */

static void test_outermost_call_sets_samples(void **state) {
    (void)state;
    ns_hook_handle h = ns_register_event_hook(on_event, NULL);
    ns_module *seq = ns_sequential_new(2, ns_linear_new(3, 3, true), ns_relu_new());
    ns_step_end(); /* close whatever earlier tests left open */
    ns_tensor *x = ns_tmp(NS_DIMS(32, 3), NS_CPU);
    ns_tensor_fill(x, 1.0f);
    g_nev = 0;
    ns_call(seq, x);
    ns_tensor *x2 = ns_tmp(NS_DIMS(7, 3), NS_CPU);
    ns_tensor_fill(x2, 1.0f);
    ns_call(seq, x2); /* a second outermost call in the step does not override the first */
    ns_step_end();
    const ev_rec *e = find_event(NS_EV_STEP_END);
    assert_non_null(e);
    assert_int_equal(e->samples, 32);
    ns_hook_remove(h);
    ns_module_free(seq);
}

int main(void) {
    gc_install();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_call_stack_and_caller, setup),
        cmocka_unit_test_setup(test_tape_nodes_name_module, setup),
        cmocka_unit_test_setup(test_created_in_forward, setup),
        cmocka_unit_test_setup(test_unregistered_call_once_per_module, setup),
        cmocka_unit_test_setup(test_errors_name_the_module, setup),
        cmocka_unit_test_setup(test_forward_hook_order, setup),
        cmocka_unit_test_setup(test_hook_removal_inside_hook, setup),
        cmocka_unit_test_setup(test_backward_hook_values, setup),
        cmocka_unit_test_setup(test_backward_hook_order_nested, setup),
        cmocka_unit_test_setup(test_backward_hook_removes_itself, setup),
        cmocka_unit_test_setup(test_outermost_call_sets_samples, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
