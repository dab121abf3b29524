/* Module tree: registration and its errors, walks and dotted names, counts, train/eval, to(),
 * requires_grad / zero_grad, repr (against PyTorch 1.13's exact text), labels and free. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "gradcheck.h"
#include "internal.h" /* ns_have_backward_hooks: checks that free forgets hooks */
#include "nnscope.h"

/* An expected error; the call stack is reset because the failing call never returned. */
#define EXPECT_ERROR(stmt)                                                                         \
    do {                                                                                           \
        GC_EXPECT_ERROR(stmt);                                                                     \
        ns_call_stack_reset();                                                                     \
    } while (0)

/* ------------------------------------------------------------------ event capture */

typedef struct {
    ns_event_kind kind;
    ns_module *module, *other;
    int64_t count;
    char detail[1024];
} ev_rec;

static ev_rec g_ev[256];
static int g_nev;

static void on_event(const ns_event *ev, void *ud) {
    (void)ud;
    if (g_nev >= 256) return;
    ev_rec *r = &g_ev[g_nev++];
    r->kind = ev->kind;
    r->module = ev->module;
    r->other = ev->other;
    r->count = ev->count;
    snprintf(r->detail, sizeof r->detail, "%s", ev->detail ? ev->detail : "");
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

/* ------------------------------------------------------------------ the guide's classifier */

typedef struct {
    ns_module base;
    ns_module *fc1, *bn1, *act, *drop, *fc2;
    ns_module *stray; /* a plain field, never registered (the silent failure) */
} Net;

static ns_tensor *net_forward(ns_module *self, ns_tensor *x) {
    Net *n = (Net *)self;
    x = ns_call(n->fc1, x);
    x = ns_call(n->bn1, x);
    x = ns_call(n->act, x);
    x = ns_call(n->drop, x);
    return ns_call(n->fc2, x);
}

static void net_destroy(ns_module *self) {
    ns_module_free(((Net *)self)->stray);
}

static Net *net_new(bool with_bn) {
    Net *n = calloc(1, sizeof *n);
    ns_module_init(&n->base, "Net", net_forward);
    n->base.destroy = net_destroy;
    n->fc1 = ns_linear_new(784, 256, true);
    ns_register_module(&n->base, "fc1", n->fc1);
    if (with_bn) {
        n->bn1 = ns_batchnorm1d_new(256);
        ns_register_module(&n->base, "bn1", n->bn1);
    }
    n->act = ns_relu_new();
    ns_register_module(&n->base, "act", n->act);
    n->drop = ns_dropout_new(0.3);
    ns_register_module(&n->base, "drop", n->drop);
    n->fc2 = ns_linear_new(256, 10, true);
    ns_register_module(&n->base, "fc2", n->fc2);
    return n;
}

static int setup(void **state) {
    (void)state;
    g_nev = 0;
    ns_call_stack_reset();
    ns_manual_seed(0);
    return 0;
}

/* ------------------------------------------------------------------ registration */

static void test_register_and_names(void **state) {
    (void)state;
    Net *n = net_new(true);
    int np = 0, nb = 0, nm = 0, nc = 0;
    ns_named_tensor *ps = ns_named_parameters(&n->base, &np);
    const char *want_p[] = {"fc1.weight", "fc1.bias",   "bn1.weight",
                            "bn1.bias",   "fc2.weight", "fc2.bias"};
    assert_int_equal(np, 6);
    for (int i = 0; i < np; i++) {
        assert_string_equal(ps[i].name, want_p[i]);
        assert_string_equal(ps[i].tensor->name, want_p[i]); /* tensors carry their dotted name */
        assert_true(ps[i].tensor->requires_grad);
    }
    assert_ptr_equal(ps[0].tensor, ns_as_linear(n->fc1)->weight);
    free(ps);
    ns_named_tensor *bs = ns_named_buffers(&n->base, &nb);
    const char *want_b[] = {"bn1.running_mean", "bn1.running_var", "bn1.num_batches_tracked"};
    assert_int_equal(nb, 3);
    for (int i = 0; i < nb; i++) {
        assert_string_equal(bs[i].name, want_b[i]);
        assert_false(bs[i].tensor->requires_grad);
    }
    free(bs);
    ns_named_module *ms = ns_named_modules(&n->base, &nm);
    const char *want_m[] = {"", "fc1", "bn1", "act", "drop", "fc2"};
    assert_int_equal(nm, 6);
    for (int i = 0; i < nm; i++) assert_string_equal(ms[i].name, want_m[i]);
    assert_ptr_equal(ms[0].module, &n->base);
    assert_ptr_equal(ms[5].module, n->fc2);
    free(ms);
    const ns_named_module *ch = ns_children(&n->base, &nc);
    assert_int_equal(nc, 5);
    assert_string_equal(ch[1].name, "bn1");
    assert_ptr_equal(n->fc2->parent, &n->base);
    assert_string_equal(n->fc2->name_in_parent, "fc2");
    assert_true(n->fc2->owned_by_parent);

    char buf[128];
    assert_string_equal(ns_module_path(n->fc2, buf, sizeof buf), "fc2");
    assert_string_equal(ns_module_path(&n->base, buf, sizeof buf), "");
    assert_ptr_equal(ns_module_root(n->fc2), &n->base);
    assert_ptr_equal(ns_module_get(&n->base, "bn1"), n->bn1);
    assert_ptr_equal(ns_module_get(&n->base, ""), &n->base);
    assert_null(ns_module_get(&n->base, "fc3"));
    assert_null(ns_module_get(&n->base, "fc1.x"));
    assert_ptr_equal(ns_module_tensor(&n->base, "bn1.running_var"),
                     ns_as_batchnorm(n->bn1)->running_var);
    assert_ptr_equal(ns_module_tensor(&n->base, "fc2.bias"), ns_as_linear(n->fc2)->bias);
    assert_null(ns_module_tensor(&n->base, "fc2.gamma"));
    assert_null(ns_module_tensor(&n->base, "fc9.bias"));
    assert_null(ns_module_tensor(&n->base, "fc2"));
    ns_module_free(&n->base);
}

/* Counts as PyTorch gives them: sum(p.numel() for p in model.parameters() if p.requires_grad). */
static void test_counts(void **state) {
    (void)state;
    Net *with = net_new(true), *without = net_new(false);
    /* Linear(784,256) + BatchNorm1d(256) + Linear(256,10): PyTorch 1.13 says 204,042; the two
     * Linear layers alone are 203,530. */
    assert_int_equal(ns_count_trainable(&with->base), 204042);
    assert_int_equal(ns_count_parameters(&with->base), 204042);
    assert_int_equal(ns_count_trainable(&without->base), 203530);
    ns_module_requires_grad(with->fc1, false); /* freeze fc1 */
    assert_int_equal(ns_count_trainable(&with->base), 204042 - 200960);
    assert_int_equal(ns_count_parameters(&with->base), 204042);
    assert_false(ns_as_linear(with->fc1)->bias->requires_grad);
    ns_module_requires_grad(&with->base, true);
    assert_int_equal(ns_count_trainable(&with->base), 204042);
    ns_module_free(&with->base);
    ns_module_free(&without->base);
}

/* Nested containers give PyTorch's dotted names: layers.0.weight, blocks.1.0.bias, ... */
typedef struct {
    ns_module base;
} Model;

static ns_tensor *model_forward(ns_module *self, ns_tensor *x) {
    (void)self;
    return x;
}

static ns_module *nested_new(void) {
    Model *m = calloc(1, sizeof *m);
    ns_module_init(&m->base, "Model", model_forward);
    ns_module *inner = ns_sequential_new(2, ns_linear_new(8, 8, false), ns_tanh_new());
    ns_module *layers = ns_sequential_new(3, ns_linear_new(4, 8, true), ns_relu_new(), inner);
    ns_module *blocks = ns_module_list_new();
    ns_module_list_append(blocks, ns_sequential_new(1, ns_linear_new(8, 8, true)));
    ns_module_list_append(blocks,
                          ns_sequential_new(2, ns_linear_new(8, 8, true), ns_sigmoid_new()));
    ns_module *heads = ns_module_dict_new();
    ns_module_dict_insert(heads, "cls", ns_linear_new(8, 3, true));
    ns_module_dict_insert(heads, "reg", ns_linear_new(8, 1, true));
    ns_register_module(&m->base, "layers", layers);
    ns_register_module(&m->base, "blocks", blocks);
    ns_register_module(&m->base, "heads", heads);
    return &m->base;
}

static void test_nested_container_names(void **state) {
    (void)state;
    ns_module *m = nested_new();
    int n = 0;
    ns_named_tensor *ps = ns_named_parameters(m, &n);
    const char *want_p[] = {"layers.0.weight",   "layers.0.bias",    "layers.2.0.weight",
                            "blocks.0.0.weight", "blocks.0.0.bias",  "blocks.1.0.weight",
                            "blocks.1.0.bias",   "heads.cls.weight", "heads.cls.bias",
                            "heads.reg.weight",  "heads.reg.bias"};
    assert_int_equal(n, 11);
    for (int i = 0; i < n; i++) {
        assert_string_equal(ps[i].name, want_p[i]);
        /* Named "0.weight" when the Sequential was built, renamed when it was registered. */
        assert_string_equal(ps[i].tensor->name, want_p[i]);
    }
    free(ps);
    ns_named_module *ms = ns_named_modules(m, &n);
    const char *want_m[] = {"",           "layers",     "layers.0",   "layers.1",
                            "layers.2",   "layers.2.0", "layers.2.1", "blocks",
                            "blocks.0",   "blocks.0.0", "blocks.1",   "blocks.1.0",
                            "blocks.1.1", "heads",      "heads.cls",  "heads.reg"};
    assert_int_equal(n, 16);
    for (int i = 0; i < n; i++) assert_string_equal(ms[i].name, want_m[i]);
    free(ms);
    ns_named_tensor *bs = ns_named_buffers(m, &n);
    assert_int_equal(n, 0);
    free(bs);

    ns_module *blocks = ns_module_get(m, "blocks"), *heads = ns_module_get(m, "heads");
    ns_module *layers = ns_module_get(m, "layers");
    assert_int_equal(ns_module_list_len(blocks), 2);
    assert_ptr_equal(ns_module_list_get(blocks, -1), ns_module_get(m, "blocks.1"));
    assert_ptr_equal(ns_module_list_get(blocks, 0), ns_module_get(m, "blocks.0"));
    assert_int_equal(ns_sequential_len(layers), 3);
    assert_ptr_equal(ns_sequential_get(layers, -1), ns_module_get(m, "layers.2"));
    assert_int_equal(ns_module_dict_len(heads), 2);
    assert_ptr_equal(ns_module_dict_get(heads, "reg"), ns_module_get(m, "heads.reg"));
    assert_null(ns_module_dict_get(heads, "box"));
    assert_ptr_equal(ns_module_tensor(m, "layers.2.0.weight"),
                     ns_as_linear(ns_module_get(m, "layers.2.0"))->weight);
    char buf[128];
    assert_string_equal(ns_module_path(ns_module_get(m, "blocks.1.1"), buf, sizeof buf),
                        "blocks.1.1");
    assert_string_equal(ns_module_label(ns_module_get(m, "blocks.1.0"), buf, sizeof buf),
                        "blocks.1.0 (Linear 8->8)");

    EXPECT_ERROR(ns_module_list_get(blocks, 2));
    GC_MSG_HAS("ModuleList: index 2 is out of range (length 2)");
    EXPECT_ERROR(ns_sequential_get(layers, -4));
    GC_MSG_HAS("Sequential: index -4 is out of range (length 3)");
    ns_module *dup = ns_linear_new(8, 3, true);
    EXPECT_ERROR(ns_module_dict_insert(heads, "cls", dup));
    GC_MSG_HAS("cannot register child module 'cls' on heads (ModuleDict 2 items)",
               "already has a child module named 'cls'");
    ns_module_free(dup);
    ns_tensor *x = ns_tmp(NS_DIMS(2, 8), NS_CPU);
    ns_tensor_fill(x, 1.0f);
    EXPECT_ERROR(ns_call(blocks, x));
    GC_MSG_HAS("blocks (ModuleList 2 items): ModuleList is not callable: it has no forward",
               "NotImplementedError");
    EXPECT_ERROR(ns_call(heads, x));
    GC_MSG_HAS("ModuleDict is not callable");
    ns_scope_reset();
    ns_module_free(m);
}

/* The uninitialised module: the C twin of forgetting super().__init__(). */
typedef struct {
    ns_module base;
    ns_module *fc1;
} Forgetful;

static void test_uninitialised_module(void **state) {
    (void)state;
    ns_hook_handle h = ns_register_event_hook(on_event, NULL);
    Forgetful *net = calloc(1, sizeof *net); /* ns_module_init() never called */
    net->fc1 = ns_linear_new(784, 256, true);
    g_nev = 0;
    EXPECT_ERROR(ns_register_module(&net->base, "fc1", net->fc1));
    GC_MSG_HAS("cannot register child 'fc1' (Linear) on &net->base",
               "&net->base was never initialised",
               "call ns_module_init() first (the counterpart of super().__init__())");
    const ev_rec *e = find_event(NS_EV_UNINITIALISED);
    assert_non_null(e);
    assert_string_equal(e->detail, gc_msg); /* the recorder stores the whole message */
    assert_null(e->module);                 /* the struct holds no valid data */

    ns_tensor *w = ns_tensor_new(NS_DIMS(3, 4), NS_CPU);
    EXPECT_ERROR(ns_register_parameter(&net->base, "weight", w));
    GC_MSG_HAS("cannot register parameter 'weight' [3x4] on &net->base",
               "call ns_module_init() first (the counterpart of super().__init__())");
    EXPECT_ERROR(ns_register_buffer(&net->base, "running_mean", w));
    GC_MSG_HAS("cannot register buffer 'running_mean' [3x4] on &net->base",
               "call ns_module_init() first");
    ns_tensor *x = ns_tmp(NS_DIMS(2, 784), NS_CPU);
    g_nev = 0;
    EXPECT_ERROR(ns_call(&net->base, x));
    GC_MSG_HAS("ns_call(&net->base): the module was never initialised",
               "call ns_module_init() first");
    assert_int_equal(count_events(NS_EV_UNINITIALISED), 1);

    /* An uninitialised child is refused too. */
    Net *ok = net_new(false);
    Forgetful *child = calloc(1, sizeof *child);
    EXPECT_ERROR(ns_register_module(&ok->base, "extra", &child->base));
    GC_MSG_HAS("cannot register child 'extra' on Net: the child module was never initialised");
    ns_hook_remove(h);
    ns_module_free(&ok->base);
    ns_tensor_free(w);
    ns_module_free(net->fc1);
    free(net);
    free(child);
    ns_scope_reset();
}

static void test_registration_errors(void **state) {
    (void)state;
    Net *n = net_new(true);
    ns_module *other = ns_linear_new(2, 2, true);
    EXPECT_ERROR(ns_register_module(&n->base, "fc1", other));
    GC_MSG_HAS("cannot register child module 'fc1' on Net: it already has a child module named "
               "'fc1'; names of children, parameters and buffers must be unique");
    ns_tensor *t = ns_tensor_new(NS_DIMS(2), NS_CPU);
    EXPECT_ERROR(ns_register_parameter(n->fc1, "weight", t));
    GC_MSG_HAS("cannot register parameter 'weight' on fc1 (Linear 784->256): it already has a "
               "parameter named 'weight'");
    EXPECT_ERROR(ns_register_buffer(n->bn1, "running_var", t));
    GC_MSG_HAS("already has a buffer named 'running_var'");
    EXPECT_ERROR(ns_register_module(&n->base, "a.b", other));
    GC_MSG_HAS("names can't contain \".\"");
    EXPECT_ERROR(ns_register_module(&n->base, "", other));
    GC_MSG_HAS("the name is empty");

    /* A module has one parent. */
    ns_module *holder = ns_sequential_new(0);
    EXPECT_ERROR(ns_register_module(holder, "0", n->fc1));
    GC_MSG_HAS("cannot register child '0' (Linear) on Sequential: it is already registered as "
               "fc1 (Linear 784->256); a module has one parent");
    /* No cycles. */
    ns_module *s = ns_sequential_new(1, ns_relu_new());
    ns_module *inner = ns_sequential_get(s, 0);
    EXPECT_ERROR(ns_register_module(inner, "loop", s));
    GC_MSG_HAS("a cycle");
    EXPECT_ERROR(ns_register_module(s, "self", s));
    GC_MSG_HAS("a cycle");
    /* Parameters are long-lived leaves, owned once. */
    ns_tensor *tmp = ns_tmp(NS_DIMS(3), NS_CPU);
    EXPECT_ERROR(ns_register_parameter(other, "extra", tmp));
    GC_MSG_HAS("cannot register parameter 'extra' [3] on Linear 2->2: it is a step-scope tensor",
               "create them with ns_tensor_new()");
    EXPECT_ERROR(ns_register_parameter(n->fc2, "tied", ns_as_linear(n->fc1)->weight));
    GC_MSG_HAS("that tensor is already registered in this model (in fc1 (Linear 784->256) as "
               "'fc1.weight')");
    EXPECT_ERROR(ns_register_module(&n->base, "null", NULL));
    GC_MSG_HAS("cannot register child 'null' on Net: the child is NULL");
    EXPECT_ERROR(ns_linear_new(0, 3, true));
    GC_MSG_HAS("Linear(in_features=0, out_features=3): both sizes must be at least 1");
    EXPECT_ERROR(ns_dropout_new(1.5));
    GC_MSG_HAS("Dropout(p=1.5): dropout probability has to be between 0 and 1");
    EXPECT_ERROR(ns_conv2d_new(1, 8, 3, 0, 1, true));
    GC_MSG_HAS("Conv2d(1, 8, kernel_size=3, stride=0, padding=1)");
    EXPECT_ERROR(ns_maxpool2d_new(2, 2, 2));
    GC_MSG_HAS("MaxPool2d(kernel_size=2, stride=2, padding=2)", "half the kernel size");
    ns_tensor_free(t);
    ns_module_free(other);
    ns_module_free(holder);
    ns_module_free(s);
    ns_module_free(&n->base);
    ns_scope_reset();
}

/* ------------------------------------------------------------------ modes and devices */

static void test_train_eval_propagation(void **state) {
    (void)state;
    Net *n = net_new(true);
    n->stray = ns_linear_new(10, 10, true); /* a plain field: PyTorch's list-of-layers mistake */
    ns_module *m = nested_new();
    ns_register_module(&n->base, "nested", m);
    assert_true(n->base.training && n->bn1->training && n->stray->training);
    ns_module_eval(&n->base);
    int k = 0;
    ns_named_module *ms = ns_named_modules(&n->base, &k);
    assert_int_equal(k, 6 + 16);
    for (int i = 0; i < k; i++) assert_false(ms[i].module->training);
    /* The unregistered module is not reached: the silent failure nnscope detects later. */
    assert_true(n->stray->training);
    ns_module_train(&n->base, true);
    for (int i = 0; i < k; i++) assert_true(ms[i].module->training);
    ns_module_eval(n->bn1); /* a subtree only */
    assert_false(n->bn1->training);
    assert_true(n->fc1->training && n->base.training);
    free(ms);
    ns_module_free(&n->base); /* frees stray through net_destroy */
}

static void test_to_device_cpu(void **state) {
    (void)state;
    Net *n = net_new(true);
    int np = 0;
    ns_named_tensor *ps = ns_named_parameters(&n->base, &np);
    uint64_t ids[16];
    float *data[16];
    for (int i = 0; i < np; i++) ids[i] = ps[i].tensor->id, data[i] = ps[i].tensor->data;
    /* CPU to CPU: a no-op that keeps ids and storage. */
    ns_module_to(&n->base, NS_CPU);
    for (int i = 0; i < np; i++) {
        assert_int_equal(ps[i].tensor->id, ids[i]);
        assert_ptr_equal(ps[i].tensor->data, data[i]);
        assert_int_equal(ps[i].tensor->device, NS_CPU);
    }
    if (!ns_device_available(NS_CUDA, NULL, 0)) {
        /* Without CUDA: one clear error, and the model stays where it was. */
        EXPECT_ERROR(ns_module_to(&n->base, NS_CUDA));
        GC_MSG_HAS("ns_module_to: cannot move Net to cuda:0");
        for (int i = 0; i < np; i++) assert_int_equal(ps[i].tensor->device, NS_CPU);
    }
    free(ps);
    ns_module_free(&n->base);
}

/* Needs a CUDA build and device: skipped otherwise. */
static void test_to_device_cuda(void **state) {
    (void)state;
    if (!ns_device_available(NS_CUDA, NULL, 0)) skip();
    Net *n = net_new(true);
    int np = 0, nb = 0;
    ns_named_tensor *ps = ns_named_parameters(&n->base, &np);
    ns_named_tensor *bs = ns_named_buffers(&n->base, &nb);
    uint64_t ids[16];
    for (int i = 0; i < np; i++) ids[i] = ps[i].tensor->id;
    float w0[4], rv0[4];
    ns_tensor_get(ps[0].tensor, w0);
    ns_tensor *x = ns_tmp(NS_DIMS(4, 784), NS_CPU);
    ns_tensor_fill(x, 0.5f);
    ns_backward(ns_sum(ns_call(&n->base, x)), NULL); /* creates grads and moves running stats */
    ns_scope_reset();
    ns_tensor_get(bs[1].tensor, rv0);
    /* Every parameter, grad and buffer moves in one call; ids and values stay. */
    ns_module_to(&n->base, NS_CUDA);
    for (int i = 0; i < np; i++) {
        assert_int_equal(ps[i].tensor->id, ids[i]);
        assert_int_equal(ps[i].tensor->device, NS_CUDA);
        assert_int_equal(ps[i].tensor->grad->device, NS_CUDA);
    }
    for (int i = 0; i < nb; i++) assert_int_equal(bs[i].tensor->device, NS_CUDA);
    ns_module_to(&n->base, NS_CPU);
    float w1[4], rv1[4];
    ns_tensor_get(ps[0].tensor, w1);
    ns_tensor_get(bs[1].tensor, rv1);
    assert_memory_equal(w0, w1, sizeof w0);
    assert_memory_equal(rv0, rv1, sizeof rv0);
    free(ps);
    free(bs);
    ns_scope_reset();
    ns_module_free(&n->base);
}

static void test_zero_grad(void **state) {
    (void)state;
    Net *n = net_new(true);
    ns_tensor *x = ns_tmp(NS_DIMS(4, 784), NS_CPU);
    gc_fill_uniform(x->data, x->numel, 7, -1, 1);
    ns_backward(ns_sum(ns_call(&n->base, x)), NULL);
    ns_tensor *g = ns_as_linear(n->fc1)->weight->grad;
    assert_non_null(g);
    float s = 0;
    for (int64_t i = 0; i < g->numel; i++) s += g->data[i] * g->data[i];
    assert_true(s > 0);
    ns_module_zero_grad(&n->base);
    int np = 0;
    ns_named_tensor *ps = ns_named_parameters(&n->base, &np);
    for (int i = 0; i < np; i++)
        for (int64_t j = 0; j < ps[i].tensor->numel; j++)
            assert_true(ps[i].tensor->grad->data[j] == 0.0f);
    free(ps);
    ns_scope_reset();
    ns_module_free(&n->base);
}

/* ------------------------------------------------------------------ repr and labels */

static void test_repr_matches_pytorch(void **state) {
    (void)state;
    Net *n = net_new(true);
    char *r = ns_module_repr(&n->base);
    /* print(repr(Net())) in PyTorch 1.13, same layers. */
    assert_string_equal(
        r, "Net(\n  (fc1): Linear(in_features=784, out_features=256, bias=True)\n  (bn1): "
           "BatchNorm1d(256, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)\n  "
           "(act): ReLU()\n  (drop): Dropout(p=0.3, inplace=False)\n  (fc2): "
           "Linear(in_features=256, out_features=10, bias=True)\n)");
    free(r);
    ns_module_free(&n->base);

    ns_module *list = ns_module_list_new();
    ns_module_list_append(list, ns_linear_new(8, 4, false));
    ns_module_list_append(list, ns_tanh_new());
    ns_module *dict = ns_module_dict_new();
    ns_module_dict_insert(dict, "a", ns_gelu_new());
    ns_module_dict_insert(dict, "b", ns_sigmoid_new());
    ns_module *s =
        ns_sequential_new(12, ns_conv2d_new(1, 8, 3, 1, 1, true), ns_batchnorm2d_new(8),
                          ns_relu_new(), ns_maxpool2d_new(2, 0, 0), ns_flatten_new(), list, dict,
                          ns_leaky_relu_new(0.2), ns_avgpool2d_new(2, 0, 0), ns_dropout_new(0.5),
                          ns_sequential_new(0), ns_conv2d_new(8, 4, 5, 2, 0, false));
    r = ns_module_repr(s);
    /* The same model built in PyTorch 1.13 (nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), ...)). */
    assert_string_equal(
        r, "Sequential(\n  (0): Conv2d(1, 8, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1))\n"
           "  (1): BatchNorm2d(8, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)\n"
           "  (2): ReLU()\n  (3): MaxPool2d(kernel_size=2, stride=2, padding=0, dilation=1, "
           "ceil_mode=False)\n  (4): Flatten(start_dim=1, end_dim=-1)\n  (5): ModuleList(\n    "
           "(0): Linear(in_features=8, out_features=4, bias=False)\n    (1): Tanh()\n  )\n  (6): "
           "ModuleDict(\n    (a): GELU(approximate='none')\n    (b): Sigmoid()\n  )\n  (7): "
           "LeakyReLU(negative_slope=0.2)\n  (8): AvgPool2d(kernel_size=2, stride=2, padding=0)\n "
           " (9): Dropout(p=0.5, inplace=False)\n  (10): Sequential()\n  (11): Conv2d(8, 4, "
           "kernel_size=(5, 5), stride=(2, 2), bias=False)\n)");
    free(r);
    int k = 0;
    ns_named_tensor *bs = ns_named_buffers(s, &k);
    assert_int_equal(k, 3);
    assert_string_equal(bs[2].name, "1.num_batches_tracked");
    assert_int_equal(bs[2].tensor->ndim, 0); /* 0-dim, like PyTorch */
    free(bs);
    r = ns_module_repr(ns_sequential_get(s, 7));
    assert_string_equal(r, "LeakyReLU(negative_slope=0.2)");
    free(r);
    ns_module *leaky = ns_leaky_relu_new(0.01);
    r = ns_module_repr(leaky);
    assert_string_equal(r, "LeakyReLU(negative_slope=0.01)");
    free(r);
    ns_module *bn = ns_batchnorm_new(2, 4, 1e-3, 0.01);
    r = ns_module_repr(bn);
    assert_string_equal(r, "BatchNorm1d(4, eps=0.001, momentum=0.01, affine=True, "
                           "track_running_stats=True)");
    free(r);
    ns_module_free(leaky);
    ns_module_free(bn);
    ns_module_free(s);
}

char *ns_py_float(double v, char *buf, size_t n); /* library-internal (src/layers) */

/* Python's repr(float), which every describe text uses; expected values from Python 3. */
static void test_python_float_repr(void **state) {
    (void)state;
    struct {
        double v;
        const char *want;
    } cases[] = {{0.1, "0.1"},
                 {1e-05, "1e-05"},
                 {100.0, "100.0"},
                 {1e16, "1e+16"},
                 {1e15, "1000000000000000.0"},
                 {0.0001, "0.0001"},
                 {123456789.0, "123456789.0"},
                 {0.5, "0.5"},
                 {0.3, "0.3"},
                 {1.0 / 3, "0.3333333333333333"},
                 {2.5e-7, "2.5e-07"},
                 {-0.01, "-0.01"},
                 {1e22, "1e+22"},
                 {12345678901234567.0, "1.2345678901234568e+16"},
                 {0.0, "0.0"},
                 {1.0, "1.0"}};
    char buf[64];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        assert_string_equal(ns_py_float(cases[i].v, buf, sizeof buf), cases[i].want);
}

static void test_labels(void **state) {
    (void)state;
    Net *n = net_new(true);
    char buf[256];
    assert_string_equal(ns_module_label(n->fc2, buf, sizeof buf), "fc2 (Linear 256->10)");
    assert_string_equal(ns_module_label(n->bn1, buf, sizeof buf), "bn1 (BatchNorm1d 256)");
    assert_string_equal(ns_module_label(n->drop, buf, sizeof buf), "drop (Dropout p=0.3)");
    assert_string_equal(ns_module_label(n->act, buf, sizeof buf), "act (ReLU)");
    assert_string_equal(ns_module_label(&n->base, buf, sizeof buf), "Net");
    ns_module *c = ns_conv2d_new(1, 8, 3, 1, 1, true);
    assert_string_equal(ns_module_label(c, buf, sizeof buf), "Conv2d 1->8 k3 s1 p1");
    ns_module_free(c);
    ns_module_free(&n->base);
}

/* ------------------------------------------------------------------ init events and free */

static void noop_backward_hook(ns_module *m, const ns_tensor *go, const ns_tensor *gi,
                               uint64_t call_id, void *ud) {
    (void)m, (void)go, (void)gi, (void)call_id, (void)ud;
}

static void test_created_and_freed_events(void **state) {
    (void)state;
    ns_hook_handle h = ns_register_event_hook(on_event, NULL);
    g_nev = 0;
    Net *n = net_new(true);
    n->stray = ns_linear_new(3, 3, true);
    assert_int_equal(count_events(NS_EV_MODULE_CREATED), 7);
    assert_ptr_equal(g_ev[0].module, &n->base); /* announced at ns_module_init() */
    assert_null(g_ev[0].other);                 /* no forward was running */
    assert_false(n->base.created_in_forward);
    assert_null(n->fc1->creator);
    assert_true(n->fc1->id > n->base.id); /* ids are unique and increasing */
    assert_int_equal(n->fc1->magic, NS_MODULE_MAGIC);

    /* Freeing forgets the module's own hooks. */
    ns_register_backward_hook(n->fc1, noop_backward_hook, NULL);
    void *fc1 = n->fc1;
    assert_true(ns_have_backward_hooks(fc1));
    g_nev = 0;
    ns_module_free(&n->base);
    assert_int_equal(count_events(NS_EV_MODULE_FREED), 7); /* root, 5 children, the stray */
    assert_ptr_equal(g_ev[0].module, (void *)n);           /* root first, while intact */
    assert_false(ns_have_backward_hooks(fc1));             /* compared, never dereferenced */
    ns_hook_remove(h);
}

int main(void) {
    gc_install();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_register_and_names, setup),
        cmocka_unit_test_setup(test_counts, setup),
        cmocka_unit_test_setup(test_nested_container_names, setup),
        cmocka_unit_test_setup(test_uninitialised_module, setup),
        cmocka_unit_test_setup(test_registration_errors, setup),
        cmocka_unit_test_setup(test_train_eval_propagation, setup),
        cmocka_unit_test_setup(test_to_device_cpu, setup),
        cmocka_unit_test_setup(test_to_device_cuda, setup),
        cmocka_unit_test_setup(test_zero_grad, setup),
        cmocka_unit_test_setup(test_repr_matches_pytorch, setup),
        cmocka_unit_test_setup(test_python_float_repr, setup),
        cmocka_unit_test_setup(test_labels, setup),
        cmocka_unit_test_setup(test_created_and_freed_events, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
