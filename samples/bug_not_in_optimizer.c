/* bug_not_in_optimizer: a registered layer whose parameters the optimizer never got. The
 * PyTorch original of the mistake:
 *
 *   model = Net()                       # encoder: Linear-ReLU-Linear-ReLU, head: Linear(64, 10)
 *   opt = torch.optim.Adam(model.encoder.parameters(), lr=1e-3)   # <- BUG: model.parameters()
 *
 * The head is registered (it is in state_dict, to() moves it, eval() reaches it) and receives
 * gradients on every step, but no optimizer step ever touches it. Nothing fails: the encoder
 * learns to fit the head's random weights, the loss goes down and accuracy looks reasonable.
 * nnscope's frozen-parameter rule reports 'head': the optimizer does not hold its parameters.
 * Fix: build the optimizer from the whole model, ns_optim_params_of(model, &n). */
#include <stdio.h>
#include <stdlib.h>

#include "common.h"

typedef struct {
    ns_module base;
    ns_module *encoder, *head;
} Net;

static ns_tensor *net_forward(ns_module *self, ns_tensor *x) {
    Net *n = (Net *)self;
    return ns_call(n->head, ns_call(n->encoder, x));
}

static ns_module *net_new(void) {
    Net *n = calloc(1, sizeof *n);
    if (!n) abort();
    ns_module_init(&n->base, "Net", net_forward);
    n->encoder = ns_sequential_new(4, ns_linear_new(784, 256, true), ns_relu_new(),
                                   ns_linear_new(256, 64, true), ns_relu_new());
    ns_register_module(&n->base, "encoder", n->encoder);
    n->head = ns_linear_new(64, 10, true);
    ns_register_module(&n->base, "head", n->head);
    return &n->base;
}

int main(int argc, char **argv) {
    sample_opts o;
    int rc = sample_parse_args(argc, argv, "bug_not_in_optimizer",
                               "An encoder (Linear-ReLU-Linear-ReLU) and a Linear head on\n"
                               "Fashion-MNIST with Adam built from the encoder's parameters only\n"
                               "(the head never learns).",
                               &o);
    if (rc >= 0) return rc;
    sample_data d;
    if (!sample_data_load(&d, &o)) return 1;

    ns_manual_seed(o.seed);
    ns_module *model = net_new();
    sample_print_model(model);
    /* BUG: the encoder's parameters only; the head's are left out. */
    ns_optimizer *opt = sample_adam(((Net *)model)->encoder, o.lr);

    sample_fit(model, opt, &d, &o, NS_CPU);

    ns_optim_free(opt);
    ns_module_free(model);
    sample_data_free(&d);
    return 0;
}
