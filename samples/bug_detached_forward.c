/* bug_detached_forward: the gradient chain is cut inside forward, so the first layer never
 * learns. The PyTorch original of the mistake:
 *
 *   class Net(nn.Module):
 *       def __init__(self):
 *           super().__init__()
 *           self.body = nn.Sequential(nn.Linear(784, 256), nn.ReLU())
 *           self.head = nn.Linear(256, 10)
 *       def forward(self, x):
 *           h = self.body(x)
 *           self.features = h.detach()          # kept for a plot ...
 *           return self.head(self.features)     # ... and the detached copy flows on   <- BUG
 *
 * Nothing fails: the head learns on the random features of the untrained body, the loss goes
 * down and test accuracy lands near 0.8, a little below what the model can do. The body's
 * weights never change. nnscope's frozen-parameter rule reports 'body.0': no gradient ever
 * reached it. Fix: return ns_call(self->head, h) and detach only the copy that is logged. */
#include <stdio.h>
#include <stdlib.h>

#include "common.h"

typedef struct {
    ns_module base;
    ns_module *body, *head;
    ns_tensor *features; /* the last batch's features, for a histogram (not drawn here) */
} Net;

static ns_tensor *net_forward(ns_module *self, ns_tensor *x) {
    Net *n = (Net *)self;
    ns_tensor *h = ns_call(n->body, x);
    n->features = ns_detach(h);           /* a copy for the plot: fine so far ... */
    return ns_call(n->head, n->features); /* BUG: ... but the copy, not h, goes on */
}

static ns_module *net_new(void) {
    Net *n = calloc(1, sizeof *n);
    if (!n) abort();
    ns_module_init(&n->base, "Net", net_forward);
    n->body = ns_sequential_new(2, ns_linear_new(784, 256, true), ns_relu_new());
    ns_register_module(&n->base, "body", n->body);
    n->head = ns_linear_new(256, 10, true);
    ns_register_module(&n->base, "head", n->head);
    return &n->base;
}

int main(int argc, char **argv) {
    sample_opts o;
    int rc = sample_parse_args(argc, argv, "bug_detached_forward",
                               "Linear(784,256) -> ReLU -> Linear(256,10) on Fashion-MNIST with\n"
                               "Adam, whose forward detaches the features before the head (the\n"
                               "first layer never learns).",
                               &o);
    if (rc >= 0) return rc;
    sample_data d;
    if (!sample_data_load(&d, &o)) return 1;

    ns_manual_seed(o.seed);
    ns_module *model = net_new();
    sample_print_model(model);
    ns_optimizer *opt = sample_adam(model, o.lr);

    sample_fit(model, opt, &d, &o, NS_CPU);

    ns_optim_free(opt);
    ns_module_free(model);
    sample_data_free(&d);
    return 0;
}
