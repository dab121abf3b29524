/* bug_uninitialised_module: a custom module whose constructor registers a child before calling
 * ns_module_init(). Unlike the other samples this one is loud by design. The PyTorch original:
 *
 *   class Residual(nn.Module):
 *       def __init__(self, width):
 *           self.fc = nn.Linear(width, width)   # <- BUG: before super().__init__()
 *           super().__init__()
 *
 * PyTorch stops with "cannot assign module before Module.__init__() call"; nnscope stops the
 * same way, at the registration, with one message naming the module expression and the fix,
 * and exits 1. With NNSCOPE_DB set, the recorder stores that message before the process ends,
 * so the failed run's database says what happened: nnscope's uninitialised-module rule reports
 * it. Fix: ns_module_init(&r->base, "Residual", residual_forward) as the constructor's first
 * line (ns_module_init() zeroes the struct, so nothing may be stored in it before). */
#include <stdio.h>
#include <stdlib.h>

#include "common.h"

typedef struct {
    ns_module base;
    ns_module *fc;
} Residual;

/* x + relu(fc(x)) */
static ns_tensor *residual_forward(ns_module *self, ns_tensor *x) {
    Residual *r = (Residual *)self;
    return ns_add(x, ns_relu(ns_call(r->fc, x)));
}

static ns_module *residual_new(int64_t width) {
    Residual *r = calloc(1, sizeof *r);
    if (!r) abort();
    r->fc = ns_linear_new(width, width, true);
    ns_register_module(&r->base, "fc", r->fc); /* BUG: registered before ns_module_init() */
    ns_module_init(&r->base, "Residual", residual_forward);
    return &r->base;
}

int main(int argc, char **argv) {
    sample_opts o;
    int rc = sample_parse_args(argc, argv, "bug_uninitialised_module",
                               "Linear(784,256) -> ReLU -> Residual(256) -> Linear(256,10) on\n"
                               "Fashion-MNIST, where Residual's constructor registers its layer\n"
                               "before ns_module_init(): the engine stops with its message and\n"
                               "exits 1 while the model is being built.",
                               &o);
    if (rc >= 0) return rc;
    sample_data d;
    if (!sample_data_load(&d, &o)) return 1;

    ns_manual_seed(o.seed);
    ns_module *model = ns_sequential_new(4, ns_linear_new(784, 256, true), ns_relu_new(),
                                         residual_new(256), ns_linear_new(256, 10, true));
    sample_print_model(model);
    ns_optimizer *opt = sample_adam(model, o.lr);

    sample_fit(model, opt, &d, &o, NS_CPU);

    ns_optim_free(opt);
    ns_module_free(model);
    sample_data_free(&d);
    return 0;
}
