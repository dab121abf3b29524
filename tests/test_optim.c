/* Optimizers: SGD (plain, momentum, dampening, Nesterov, weight decay), Adam and AdamW updates
 * over three steps against values computed here in double with PyTorch 1.13's formulas; parameter
 * groups; skipped parameters (requires_grad off, no grad) and per-parameter step counts;
 * zero_grad; the statistics of the last step against direct computation; hooks; the state
 * accessors; PyTorch's constructor errors; and a small model trained end to end.
 *
 * The tensors have 21 elements so that both the 8-lane vector code and the scalar tail of the
 * CPU kernels are checked.
 *
 * Tolerance: float32 updates against double references, |got - want| <= 2e-6 * max(1, |want|).
 * The hyper-parameters are chosen so that every term matters by far more than that: eps = 0.1
 * (the placement of eps changes the update by ~1e-2), dampening 0.5 (the first-step buffer
 * initialisation changes it by ~1e-2), gradients of both signs and several magnitudes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "gradcheck.h"
#include "nnscope.h"

/* 21 elements: two 8-lane blocks of the vectorised kernels and a 5-element scalar tail. */
#define N 21
#define STEPS 3

static float W0[N];
static float G[STEPS][N]; /* a different gradient for each step */

/* Weights and gradients of both signs and several magnitudes (set up once in main). */
static void init_values(void) {
    for (int i = 0; i < N; i++) {
        W0[i] = (float)(((i * 37) % 29) / 7.0 - 2.0);
        for (int s = 0; s < STEPS; s++)
            G[s][i] = (float)((((i + 3 * s) * 53) % 31) / 10.0 - 1.5) * (i % 3 ? 1.0f : 0.1f);
    }
}

static ns_tensor *param_new(const float *w) {
    ns_tensor *t = ns_requires_grad(ns_tensor_new(NS_DIMS(N), NS_CPU), true);
    ns_tensor_set(t, w);
    return t;
}

/* Gives p the gradient g (creating p->grad like a backward would). */
static void set_grad(ns_tensor *p, const float *g) {
    if (!p->grad) p->grad = ns_tensor_new(p->ndim, p->shape, p->device);
    ns_tensor_set(p->grad, g);
}

static void assert_close(const float *got, const double *want, int n, const char *what) {
    for (int i = 0; i < n; i++) {
        double tol = 2e-6 * fmax(1.0, fabs(want[i]));
        if (!(fabs((double)got[i] - want[i]) <= tol))
            fail_msg("%s[%d]: got %.9g, want %.9g (tolerance %.2g)", what, i, (double)got[i],
                     want[i], tol);
    }
}

/* ------------------------------------------------------------------ SGD */

typedef struct {
    double lr, momentum, dampening, wd;
    bool nesterov;
} sgd_case;

/* torch/optim/sgd.py (_single_tensor_sgd) in double. */
static void sgd_reference(const sgd_case *c, double *w) {
    double buf[N];
    for (int s = 0; s < STEPS; s++)
        for (int i = 0; i < N; i++) {
            double d = G[s][i];
            if (c->wd != 0) d += c->wd * w[i];
            if (c->momentum != 0) {
                buf[i] = s == 0 ? d : c->momentum * buf[i] + (1 - c->dampening) * d;
                d = c->nesterov ? d + c->momentum * buf[i] : buf[i];
            }
            w[i] -= c->lr * d;
        }
}

static void check_sgd(const sgd_case *c) {
    ns_tensor *p = param_new(W0);
    ns_optimizer *opt = ns_sgd_new(&p, 1, c->lr, c->momentum, c->dampening, c->wd, c->nesterov);
    for (int s = 0; s < STEPS; s++) {
        set_grad(p, G[s]);
        ns_optim_step(opt);
    }
    double want[N];
    for (int i = 0; i < N; i++) want[i] = W0[i];
    sgd_reference(c, want);
    assert_close(p->data, want, N, "sgd weight");
    assert_int_equal(ns_optim_param_steps(opt, 0), STEPS);
    assert_int_equal(ns_optim_steps(opt), STEPS);
    /* The momentum buffer exists exactly when momentum is used. */
    assert_true((ns_optim_state(opt, 0, 0) != NULL) == (c->momentum != 0));
    ns_optim_free(opt);
    ns_tensor_free(p);
}

static void test_sgd_plain(void **state) {
    (void)state;
    check_sgd(&(sgd_case){.lr = 0.1});
}

static void test_sgd_momentum(void **state) {
    (void)state;
    check_sgd(&(sgd_case){.lr = 0.1, .momentum = 0.9});
}

static void test_sgd_dampening(void **state) {
    (void)state;
    /* The first step initialises the buffer to the gradient itself, not (1-dampening)*grad. */
    check_sgd(&(sgd_case){.lr = 0.1, .momentum = 0.9, .dampening = 0.5});
}

static void test_sgd_nesterov(void **state) {
    (void)state;
    check_sgd(&(sgd_case){.lr = 0.05, .momentum = 0.8, .nesterov = true});
}

static void test_sgd_weight_decay(void **state) {
    (void)state;
    check_sgd(&(sgd_case){.lr = 0.1, .wd = 0.2});
    check_sgd(&(sgd_case){.lr = 0.1, .momentum = 0.9, .wd = 0.2});
    check_sgd(&(sgd_case){.lr = 0.1, .momentum = 0.9, .wd = 0.2, .nesterov = true});
}

/* ------------------------------------------------------------------ Adam / AdamW */

typedef struct {
    double lr, b1, b2, eps, wd;
    bool adamw;
} adam_case;

/* torch/optim/adam.py and adamw.py (_single_tensor_*) in double; t counts from 1. */
static void adam_reference(const adam_case *c, double *w, double *m, double *v, int steps,
                           int first_step) {
    for (int s = first_step; s < first_step + steps; s++) {
        int t = s - first_step + 1;
        double bc1 = 1 - pow(c->b1, t), bc2 = 1 - pow(c->b2, t);
        for (int i = 0; i < N; i++) {
            double g = G[s][i];
            if (c->adamw)
                w[i] *= 1 - c->lr * c->wd;
            else if (c->wd != 0)
                g += c->wd * w[i];
            m[i] = c->b1 * m[i] + (1 - c->b1) * g;
            v[i] = c->b2 * v[i] + (1 - c->b2) * g * g;
            double denom = sqrt(v[i]) / sqrt(bc2) + c->eps;
            w[i] -= c->lr / bc1 * m[i] / denom;
        }
    }
}

static void check_adam(const adam_case *c) {
    ns_tensor *p = param_new(W0);
    ns_optimizer *opt = c->adamw ? ns_adamw_new(&p, 1, c->lr, c->b1, c->b2, c->eps, c->wd)
                                 : ns_adam_new(&p, 1, c->lr, c->b1, c->b2, c->eps, c->wd);
    for (int s = 0; s < STEPS; s++) {
        set_grad(p, G[s]);
        ns_optim_step(opt);
    }
    double w[N], m[N] = {0}, v[N] = {0};
    for (int i = 0; i < N; i++) w[i] = W0[i];
    adam_reference(c, w, m, v, STEPS, 0);
    assert_close(p->data, w, N, "adam weight");
    assert_close(ns_optim_state(opt, 0, 0)->data, m, N, "exp_avg");
    assert_close(ns_optim_state(opt, 0, 1)->data, v, N, "exp_avg_sq");
    assert_string_equal(ns_optim_state_name(opt, 0), "exp_avg");
    assert_string_equal(ns_optim_state_name(opt, 1), "exp_avg_sq");
    assert_int_equal(ns_optim_param_steps(opt, 0), STEPS);
    ns_optim_free(opt);
    ns_tensor_free(p);
}

static void test_adam(void **state) {
    (void)state;
    check_adam(&(adam_case){.lr = 0.01, .b1 = 0.9, .b2 = 0.999, .eps = 0.1});
    check_adam(&(adam_case){.lr = 0.05, .b1 = 0.5, .b2 = 0.8, .eps = 1e-3});
    check_adam(&(adam_case){.lr = 1e-3, .b1 = 0.9, .b2 = 0.999, .eps = 1e-8}); /* defaults */
}

static void test_adam_weight_decay(void **state) {
    (void)state;
    check_adam(&(adam_case){.lr = 0.01, .b1 = 0.9, .b2 = 0.999, .eps = 0.1, .wd = 0.5});
}

static void test_adamw(void **state) {
    (void)state;
    check_adam(
        &(adam_case){.lr = 0.01, .b1 = 0.9, .b2 = 0.999, .eps = 0.1, .wd = 0.5, .adamw = true});
    check_adam(&(adam_case){
        .lr = 1e-3, .b1 = 0.9, .b2 = 0.999, .eps = 1e-8, .wd = 1e-2, .adamw = true}); /* defaults */
}

/* ------------------------------------------------------------------ groups, skipping */

static void test_param_groups(void **state) {
    (void)state;
    ns_tensor *a = param_new(W0), *b = param_new(W0), *c = param_new(W0);
    ns_optimizer *opt = ns_sgd_new(&a, 1, 0.1, 0.0, 0.0, 0.0, false);
    ns_tensor *bc[2] = {b, c};
    assert_int_equal(ns_optim_add_group(opt, bc, 2, 0.01, 0.5), 1);
    assert_int_equal(ns_optim_num_groups(opt), 2);
    assert_int_equal(ns_optim_num_params(opt), 3);
    assert_ptr_equal(ns_optim_param(opt, 0), a);
    assert_ptr_equal(ns_optim_param(opt, 2), c);
    assert_int_equal(ns_optim_param_group(opt, 1), 1);
    assert_true(ns_optim_param_lr(opt, 0) == 0.1 && ns_optim_param_lr(opt, 2) == 0.01);
    assert_true(ns_optim_holds(opt, b));
    ns_tensor *other = param_new(W0);
    assert_false(ns_optim_holds(opt, other));
    assert_false(ns_optim_holds(opt, NULL));

    set_grad(a, G[0]);
    set_grad(b, G[0]);
    set_grad(c, G[0]);
    ns_optim_step(opt);
    double wa[N], wb[N];
    for (int i = 0; i < N; i++) {
        wa[i] = W0[i] - 0.1 * G[0][i];
        wb[i] = W0[i] - 0.01 * (G[0][i] + 0.5 * W0[i]);
    }
    assert_close(a->data, wa, N, "group 0");
    assert_close(b->data, wb, N, "group 1");
    assert_close(c->data, wb, N, "group 1");

    /* set_lr: one group, then all (a scheduler). */
    ns_optim_set_lr(opt, 1, 0.2);
    assert_true(ns_optim_param_lr(opt, 1) == 0.2 && ns_optim_param_lr(opt, 0) == 0.1);
    ns_optim_set_lr(opt, -1, 0.3);
    assert_true(ns_optim_param_lr(opt, 0) == 0.3 && ns_optim_param_lr(opt, 2) == 0.3);
    /* Group hyper-parameters are writable like param_groups[g]['momentum']. */
    ns_optim_group(opt, 0)->momentum = 0.5;
    assert_true(ns_optim_group(opt, 0)->momentum == 0.5 && ns_optim_group(opt, 1)->momentum == 0);
    ns_optim_free(opt);
    ns_tensor_free(a);
    ns_tensor_free(b);
    ns_tensor_free(c);
    ns_tensor_free(other);
}

static void test_skipped_params(void **state) {
    (void)state;
    ns_tensor *live = param_new(W0), *frozen = param_new(W0), *nograd = param_new(W0);
    ns_tensor *ps[3] = {live, frozen, nograd};
    ns_optimizer *opt = ns_adam_new(ps, 3, 0.01, 0.9, 0.999, 0.1, 0.0);
    set_grad(live, G[0]);
    set_grad(frozen, G[0]);
    ns_requires_grad(frozen, false); /* has a grad, but requires_grad is off */
    ns_optim_step(opt);
    assert_memory_equal(frozen->data, W0, sizeof W0);
    assert_memory_equal(nograd->data, W0, sizeof W0);
    assert_null(ns_optim_state(opt, 1, 0));
    assert_null(ns_optim_state(opt, 2, 0));
    assert_int_equal(ns_optim_param_steps(opt, 1), 0);
    assert_int_equal(ns_optim_param_steps(opt, 2), 0);
    assert_null(nograd->grad);
    ns_param_stats st;
    assert_true(ns_optim_last_stats(opt, 1, &st));
    assert_false(st.had_grad);
    assert_true(st.grad_norm == 0 && st.update_norm == 0 && st.weight_norm == 0);
    assert_true(ns_optim_last_stats(opt, 0, &st));
    assert_true(st.had_grad);
    assert_false(ns_optim_last_stats(opt, 3, &st));

    /* From the second step on, nograd gets a gradient: its own step count starts at 1, so its
     * bias corrections are those of a first step (PyTorch keeps state['step'] per parameter). */
    set_grad(nograd, G[1]);
    set_grad(live, G[1]);
    ns_optim_step(opt);
    set_grad(nograd, G[2]);
    set_grad(live, G[2]);
    ns_optim_step(opt);
    adam_case c = {.lr = 0.01, .b1 = 0.9, .b2 = 0.999, .eps = 0.1};
    double w[N], m[N] = {0}, v[N] = {0};
    for (int i = 0; i < N; i++) w[i] = W0[i];
    adam_reference(&c, w, m, v, 2, 1);
    assert_close(nograd->data, w, N, "late parameter");
    for (int i = 0; i < N; i++) w[i] = W0[i], m[i] = v[i] = 0;
    adam_reference(&c, w, m, v, 3, 0);
    assert_close(live->data, w, N, "live parameter");
    assert_int_equal(ns_optim_param_steps(opt, 0), 3);
    assert_int_equal(ns_optim_param_steps(opt, 2), 2);
    assert_memory_equal(frozen->data, W0, sizeof W0);
    ns_optim_free(opt);
    ns_tensor_free(live);
    ns_tensor_free(frozen);
    ns_tensor_free(nograd);
}

static void test_zero_grad(void **state) {
    (void)state;
    ns_tensor *a = param_new(W0), *b = param_new(W0);
    ns_tensor *ps[2] = {a, b};
    ns_optimizer *opt = ns_sgd_new(ps, 2, 0.1, 0.9, 0.0, 0.0, false);
    set_grad(a, G[0]);
    ns_tensor *g = a->grad;
    ns_optim_zero_grad(opt);
    assert_ptr_equal(a->grad, g); /* set_to_none=False: the tensor is kept */
    for (int i = 0; i < N; i++) assert_true(a->grad->data[i] == 0.0f);
    assert_null(b->grad);
    /* A zero gradient still steps (PyTorch with set_to_none=False): momentum carries on. */
    set_grad(a, G[0]);
    ns_optim_step(opt);
    float after1[N];
    memcpy(after1, a->data, sizeof after1);
    ns_optim_zero_grad(opt);
    ns_optim_step(opt);
    double want[N];
    for (int i = 0; i < N; i++) want[i] = (double)after1[i] - 0.1 * 0.9 * G[0][i];
    assert_close(a->data, want, N, "momentum after zero_grad");
    ns_optim_free(opt);
    ns_tensor_free(a);
    ns_tensor_free(b);
}

/* ------------------------------------------------------------------ statistics */

static double norm_of(const float *x, int n) {
    double s = 0;
    for (int i = 0; i < n; i++) s += (double)x[i] * x[i];
    return sqrt(s);
}

static void check_stats(ns_optimizer *opt, ns_tensor *p, const float *grad) {
    float before[N];
    memcpy(before, p->data, sizeof before);
    set_grad(p, grad);
    ns_optim_step(opt);
    float delta[N];
    for (int i = 0; i < N; i++) delta[i] = p->data[i] - before[i];
    ns_param_stats st;
    assert_true(ns_optim_last_stats(opt, 0, &st));
    assert_true(st.had_grad);
    assert_true(fabs(st.grad_norm - norm_of(grad, N)) <= 1e-6 * norm_of(grad, N));
    assert_true(fabs(st.update_norm - norm_of(delta, N)) <= 1e-6 * norm_of(delta, N) + 1e-12);
    assert_true(fabs(st.weight_norm - norm_of(p->data, N)) <= 1e-6 * norm_of(p->data, N));
    assert_int_equal(st.nonfinite, 0);
}

static void test_stats(void **state) {
    (void)state;
    ns_tensor *p = param_new(W0);
    ns_optimizer *opt = ns_sgd_new(&p, 1, 0.1, 0.9, 0.0, 0.1, false);
    for (int s = 0; s < STEPS; s++) check_stats(opt, p, G[s]);
    ns_optim_free(opt);
    ns_optimizer *adam = ns_adamw_new(&p, 1, 0.01, 0.9, 0.999, 1e-8, 0.1);
    for (int s = 0; s < STEPS; s++) check_stats(adam, p, G[s]);

    /* Non-finite gradients are counted (and poison the weights they touch). */
    float bad[N];
    memcpy(bad, G[0], sizeof bad);
    bad[0] = NAN; /* in a vectorised block */
    bad[2] = INFINITY;
    bad[N - 1] = -INFINITY; /* in the scalar tail */
    set_grad(p, bad);
    ns_optim_step(adam);
    ns_param_stats st;
    ns_optim_last_stats(adam, 0, &st);
    assert_int_equal(st.nonfinite, 3);
    assert_true(st.had_grad);
    ns_optim_free(adam);

    /* Stats over a tensor longer than the kernel's blocks and lanes (tails included). */
    int64_t n = 5000 + 3;
    ns_tensor *big = ns_requires_grad(ns_tensor_new(NS_DIMS(n), NS_CPU), true);
    big->grad = ns_tensor_new(NS_DIMS(n), NS_CPU);
    double gg = 0, ww = 0, dd = 0;
    float *w0 = malloc(sizeof(float) * (size_t)n);
    for (int64_t i = 0; i < n; i++) {
        big->data[i] = w0[i] = (float)sin((double)i);
        big->grad->data[i] = (float)cos((double)i * 0.37);
    }
    ns_optimizer *sgd = ns_sgd_new(&big, 1, 0.25, 0.0, 0.0, 0.0, false);
    ns_optim_step(sgd);
    for (int64_t i = 0; i < n; i++) {
        double g = big->grad->data[i], d = (double)big->data[i] - w0[i];
        gg += g * g;
        dd += d * d;
        ww += (double)big->data[i] * big->data[i];
    }
    ns_optim_last_stats(sgd, 0, &st);
    assert_true(fabs(st.grad_norm - sqrt(gg)) <= 1e-5 * sqrt(gg));
    assert_true(fabs(st.update_norm - sqrt(dd)) <= 1e-5 * sqrt(dd));
    assert_true(fabs(st.weight_norm - sqrt(ww)) <= 1e-5 * sqrt(ww));
    free(w0);
    ns_optim_free(sgd);
    ns_tensor_free(big);
    ns_tensor_free(p);
}

/* ------------------------------------------------------------------ hooks */

typedef struct {
    char log[64];
    float seen_w;
    int64_t steps_seen;
} hook_log;

static void pre_hook(ns_optimizer *opt, void *ud) {
    hook_log *l = ud;
    strcat(l->log, "pre,");
    l->seen_w = ns_optim_param(opt, 0)->data[0];
    l->steps_seen = ns_optim_steps(opt);
}

static void post_hook(ns_optimizer *opt, void *ud) {
    hook_log *l = ud;
    strcat(l->log, "post,");
    l->seen_w = ns_optim_param(opt, 0)->data[0];
    ns_param_stats st;
    ns_optim_last_stats(opt, 0, &st);
    assert_true(st.had_grad); /* the statistics are ready when post hooks run */
}

static void global_hook(ns_optimizer *opt, void *ud) {
    (void)opt;
    strcat(((hook_log *)ud)->log, "global,");
}

static void test_hooks(void **state) {
    (void)state;
    ns_tensor *p = param_new(W0);
    ns_optimizer *opt = ns_sgd_new(&p, 1, 0.1, 0.0, 0.0, 0.0, false);
    hook_log l = {0}, lp = {0};
    ns_hook_handle h1 = ns_register_optim_pre_hook(opt, pre_hook, &lp);
    ns_hook_handle h2 = ns_register_optim_post_hook(opt, post_hook, &l);
    ns_hook_handle h3 = ns_register_optim_pre_hook(NULL, global_hook, &l);
    set_grad(p, G[0]);
    ns_optim_step(opt);
    assert_string_equal(lp.log, "pre,");
    assert_true(lp.seen_w == W0[0]); /* before the update */
    assert_int_equal(lp.steps_seen, 0);
    assert_string_equal(l.log, "global,post,");
    assert_true(l.seen_w == (float)(W0[0] - 0.1 * G[0][0])); /* after it */
    ns_hook_remove(h1);
    ns_hook_remove(h2);
    ns_hook_remove(h3);
    l.log[0] = lp.log[0] = 0;
    ns_optim_step(opt);
    assert_string_equal(l.log, "");
    assert_string_equal(lp.log, "");
    /* Freeing the optimizer forgets its hooks. */
    ns_register_optim_post_hook(opt, post_hook, &l);
    ns_optim_free(opt);
    opt = ns_sgd_new(&p, 1, 0.1, 0.0, 0.0, 0.0, false);
    ns_optim_step(opt);
    assert_string_equal(l.log, "");
    ns_optim_free(opt);
    ns_tensor_free(p);
}

/* ------------------------------------------------------------------ state accessors */

static void test_state_roundtrip(void **state) {
    (void)state;
    /* Copying step counts and moments into a fresh optimizer continues identically. */
    ns_tensor *a = param_new(W0), *b = param_new(W0);
    ns_optimizer *oa = ns_adam_new(&a, 1, 0.01, 0.9, 0.999, 0.1, 0.0);
    ns_optimizer *ob = ns_adam_new(&b, 1, 0.01, 0.9, 0.999, 0.1, 0.0);
    set_grad(a, G[0]);
    ns_optim_step(oa);
    set_grad(a, G[1]);
    ns_optim_step(oa);
    float m[N], v[N];
    ns_tensor_get(ns_optim_state(oa, 0, 0), m);
    ns_tensor_get(ns_optim_state(oa, 0, 1), v);
    const float *st[2] = {m, v};
    ns_tensor_set(b, a->data);
    ns_optim_set_param_state(ob, 0, ns_optim_param_steps(oa, 0), st);
    ns_optim_set_steps(ob, ns_optim_steps(oa));
    set_grad(a, G[2]);
    set_grad(b, G[2]);
    ns_optim_step(oa);
    ns_optim_step(ob);
    assert_memory_equal(a->data, b->data, sizeof(float) * N);
    assert_int_equal(ns_optim_steps(ob), 3);
    /* steps 0 and no state: fresh again. */
    ns_optim_set_param_state(ob, 0, 0, NULL);
    assert_null(ns_optim_state(ob, 0, 0));
    assert_int_equal(ns_optim_param_steps(ob, 0), 0);
    ns_optim_free(oa);
    ns_optim_free(ob);
    ns_tensor_free(a);
    ns_tensor_free(b);
}

/* ------------------------------------------------------------------ errors */

static void test_errors(void **state) {
    (void)state;
    ns_tensor *p = param_new(W0);
    GC_EXPECT_ERROR(ns_sgd_new(&p, 1, -0.1, 0, 0, 0, false));
    assert_non_null(strstr(gc_msg, "Invalid learning rate: -0.1"));
    GC_EXPECT_ERROR(ns_sgd_new(&p, 1, 0.1, -0.5, 0, 0, false));
    assert_non_null(strstr(gc_msg, "Invalid momentum value: -0.5"));
    GC_EXPECT_ERROR(ns_sgd_new(&p, 1, 0.1, 0, 0, -1, false));
    assert_non_null(strstr(gc_msg, "Invalid weight_decay value: -1"));
    GC_EXPECT_ERROR(ns_sgd_new(&p, 1, 0.1, 0, 0, 0, true));
    assert_non_null(strstr(gc_msg, "Nesterov momentum requires a momentum and zero dampening"));
    GC_EXPECT_ERROR(ns_sgd_new(&p, 1, 0.1, 0.9, 0.1, 0, true));
    assert_non_null(strstr(gc_msg, "Nesterov momentum requires a momentum and zero dampening"));
    GC_EXPECT_ERROR(ns_adam_new(&p, 1, 1e-3, 1.0, 0.999, 1e-8, 0));
    assert_non_null(strstr(gc_msg, "Invalid beta parameter at index 0: 1"));
    GC_EXPECT_ERROR(ns_adamw_new(&p, 1, 1e-3, 0.9, -0.1, 1e-8, 0.01));
    assert_non_null(strstr(gc_msg, "Invalid beta parameter at index 1: -0.1"));
    GC_EXPECT_ERROR(ns_adam_new(&p, 1, 1e-3, 0.9, 0.999, -1e-8, 0));
    assert_non_null(strstr(gc_msg, "Invalid epsilon value"));
    GC_EXPECT_ERROR(ns_adam_new(&p, 1, NAN, 0.9, 0.999, 1e-8, 0));
    assert_non_null(strstr(gc_msg, "Invalid learning rate"));
    GC_EXPECT_ERROR(ns_adam_new(&p, 0, 1e-3, 0.9, 0.999, 1e-8, 0));
    assert_non_null(strstr(gc_msg, "optimizer got an empty parameter list"));
    ns_tensor *twice[2] = {p, p};
    GC_EXPECT_ERROR(ns_adam_new(twice, 2, 1e-3, 0.9, 0.999, 1e-8, 0));
    assert_non_null(strstr(gc_msg, "appear more than once"));
    ns_tensor *tmp = ns_tmp(NS_DIMS(N), NS_CPU);
    GC_EXPECT_ERROR(ns_adam_new(&tmp, 1, 1e-3, 0.9, 0.999, 1e-8, 0));
    assert_non_null(strstr(gc_msg, "can't optimize a non-leaf Tensor"));

    ns_optimizer *opt = ns_sgd_new(&p, 1, 0.1, 0.0, 0.0, 0.0, false);
    GC_EXPECT_ERROR(ns_optim_add_group(opt, &p, 1, 0.1, 0.0));
    assert_non_null(strstr(gc_msg, "appear more than once"));
    assert_int_equal(ns_optim_num_groups(opt), 1);
    GC_EXPECT_ERROR(ns_optim_set_lr(opt, -1, -2.0));
    assert_non_null(strstr(gc_msg, "Invalid learning rate: -2"));
    /* Hyper-parameters written in place are checked by the next step, before any update. */
    ns_optim_group(opt, 0)->nesterov = true;
    set_grad(p, G[0]);
    GC_EXPECT_ERROR(ns_optim_step(opt));
    assert_non_null(strstr(gc_msg, "Nesterov"));
    assert_memory_equal(p->data, W0, sizeof W0);
    ns_optim_free(opt);
    ns_tensor_free(p);
    ns_scope_reset();
}

/* ------------------------------------------------------------------ end to end */

static void test_trains_a_model(void **state) {
    (void)state;
    /* Linear(3 -> 1) fitted to y = 2a - b + 0.5c + 1 with Adam and MSE through autograd. */
    ns_manual_seed(3);
    ns_module *lin = ns_linear_new(3, 1, true);
    int np;
    ns_tensor **ps = ns_optim_params_of(lin, &np);
    assert_int_equal(np, 2);
    assert_ptr_equal(ps[0], ns_as_linear(lin)->weight);
    ns_optimizer *opt = ns_adam_new(ps, np, 0.05, 0.9, 0.999, 1e-8, 0.0);
    free(ps);
    float x[8 * 3], y[8];
    for (int i = 0; i < 8; i++) {
        for (int j = 0; j < 3; j++)
            x[i * 3 + j] = (float)((i * 7 + j * 3 + i * j * 5) % 11) / 5.0f - 1.0f;
        y[i] = 2 * x[i * 3] - x[i * 3 + 1] + 0.5f * x[i * 3 + 2] + 1;
    }
    double first = 0, last = 0;
    for (int s = 0; s < 400; s++) {
        ns_tensor *xt = ns_from_host(NS_DIMS(8, 3), x, NS_CPU);
        ns_tensor *yt = ns_from_host(NS_DIMS(8, 1), y, NS_CPU);
        ns_optim_zero_grad(opt);
        ns_tensor *loss = ns_mse(ns_call(lin, xt), yt);
        ns_backward(loss, NULL);
        ns_optim_step(opt);
        if (s == 0) first = ns_item(loss);
        last = ns_item(loss);
        ns_step_end();
    }
    assert_true(first > 0.5);
    assert_true(last < 1e-4);
    float w[3];
    ns_tensor_get(ns_as_linear(lin)->weight, w);
    assert_true(fabs(w[0] - 2) < 0.02 && fabs(w[1] + 1) < 0.02 && fabs(w[2] - 0.5) < 0.02);
    ns_optim_free(opt);
    ns_module_free(lin);
}

/* The vectorised bulk and the scalar tail compute identical values: elements 8..14 repeat
 * elements 0..6 (a block of 8 lanes), the tail 16..22 repeats them again. */
static void test_vector_and_scalar_paths_agree(void **state) {
    (void)state;
    enum { M = 23 };
    float w[M], g[M];
    for (int i = 0; i < M; i++) {
        w[i] = W0[i % 8];
        g[i] = G[1][i % 8] * 3.0f;
    }
    for (int kind = 0; kind < 4; kind++) {
        ns_tensor *p = ns_requires_grad(ns_tensor_new(NS_DIMS(M), NS_CPU), true);
        ns_tensor_set(p, w);
        p->grad = ns_tensor_new(NS_DIMS(M), NS_CPU);
        ns_tensor_set(p->grad, g);
        ns_optimizer *opt = kind == 0   ? ns_adam_new(&p, 1, 0.01, 0.9, 0.999, 1e-3, 0.1)
                            : kind == 1 ? ns_adamw_new(&p, 1, 0.01, 0.9, 0.999, 1e-3, 0.1)
                            : kind == 2 ? ns_sgd_new(&p, 1, 0.1, 0.9, 0.3, 0.1, false)
                                        : ns_sgd_new(&p, 1, 0.1, 0.9, 0.0, 0.1, true);
        for (int s = 0; s < 3; s++) ns_optim_step(opt);
        for (int i = 0; i < 7; i++) {
            assert_memory_equal(&p->data[i], &p->data[i + 8], sizeof(float));
            assert_memory_equal(&p->data[i], &p->data[i + 16], sizeof(float));
        }
        ns_optim_free(opt);
        ns_tensor_free(p);
    }
}

/* Every CPU code path (NNSCOPE_CPU_SIMD caps the vector width: AVX-512, AVX2, scalar) computes
 * bit-identical weights and states, so runs and resumed checkpoints do not depend on the CPU. */
static void test_simd_levels_agree(void **state) {
    (void)state;
    enum { M = 53 }; /* 3 x 16 lanes + a tail of 5 */
    static const char *levels[] = {"avx512", "avx2", "none"};
    float ref[4][3 * M];
    for (int lv = 0; lv < 3; lv++) {
        setenv("NNSCOPE_CPU_SIMD", levels[lv], 1);
        for (int kind = 0; kind < 4; kind++) {
            ns_tensor *p = ns_requires_grad(ns_tensor_new(NS_DIMS(M), NS_CPU), true);
            p->grad = ns_tensor_new(NS_DIMS(M), NS_CPU);
            for (int i = 0; i < M; i++) p->data[i] = W0[i % N] + 0.01f * (float)i;
            ns_optimizer *opt = kind == 0   ? ns_adam_new(&p, 1, 0.01, 0.9, 0.999, 1e-3, 0.1)
                                : kind == 1 ? ns_adamw_new(&p, 1, 0.01, 0.9, 0.999, 1e-3, 0.1)
                                : kind == 2 ? ns_sgd_new(&p, 1, 0.1, 0.9, 0.3, 0.1, false)
                                            : ns_sgd_new(&p, 1, 0.1, 0.9, 0.0, 0.1, true);
            for (int s = 0; s < 3; s++) {
                for (int i = 0; i < M; i++) p->grad->data[i] = G[s][i % N] * (1.0f + 0.03f * i);
                ns_optim_step(opt);
            }
            float got[3 * M];
            memcpy(got, p->data, sizeof(float) * M);
            ns_tensor_get(ns_optim_state(opt, 0, 0), got + M);
            if (kind < 2)
                ns_tensor_get(ns_optim_state(opt, 0, 1), got + 2 * M);
            else
                memset(got + 2 * M, 0, sizeof(float) * M);
            if (lv == 0)
                memcpy(ref[kind], got, sizeof got);
            else if (memcmp(ref[kind], got, sizeof got))
                fail_msg("optimizer %d: NNSCOPE_CPU_SIMD=%s differs from the widest path", kind,
                         levels[lv]);
            ns_optim_free(opt);
            ns_tensor_free(p);
        }
    }
    unsetenv("NNSCOPE_CPU_SIMD");
}

int main(void) {
    gc_install();
    init_values();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sgd_plain),
        cmocka_unit_test(test_sgd_momentum),
        cmocka_unit_test(test_sgd_dampening),
        cmocka_unit_test(test_sgd_nesterov),
        cmocka_unit_test(test_sgd_weight_decay),
        cmocka_unit_test(test_adam),
        cmocka_unit_test(test_adam_weight_decay),
        cmocka_unit_test(test_adamw),
        cmocka_unit_test(test_param_groups),
        cmocka_unit_test(test_skipped_params),
        cmocka_unit_test(test_zero_grad),
        cmocka_unit_test(test_stats),
        cmocka_unit_test(test_hooks),
        cmocka_unit_test(test_state_roundtrip),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_trains_a_model),
        cmocka_unit_test(test_vector_and_scalar_paths_agree),
        cmocka_unit_test(test_simd_levels_agree),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
