/* bug_layer_in_forward: a layer built inside forward, so it starts from fresh random weights
 * on every call and never learns. The PyTorch original of the mistake:
 *
 *   class Net(nn.Module):
 *       def __init__(self):
 *           super().__init__()
 *           self.fc1 = nn.Linear(784, 256)
 *           self.head = nn.Linear(256, 10)
 *       def forward(self, x):
 *           h = F.relu(self.fc1(x))
 *           h = h + F.relu(nn.Linear(256, 256)(h))   # residual adapter   <- BUG: built here
 *           return self.head(h)
 *
 * In C the adapter has to live until backward, so the forward keeps it in a struct field and
 * frees the previous one (without that the program would also leak 257 KB a step). Nothing
 * fails: the adapter only adds noise on top of a skip connection, fc1 and the head learn
 * around it, and the loss goes down. Its parameters are in no optimizer and no state_dict,
 * and every step pays for building it. nnscope's module-created-in-forward rule reports the
 * model, whose forward builds a new Linear on every call. Fix: build the adapter once in
 * net_new() and register it (ns_register_module(&n->base, "adapter", ...)). */
#include <stdio.h>
#include <stdlib.h>

#include "common.h"

typedef struct {
    ns_module base;
    ns_module *fc1, *head;
    ns_module *adapter; /* rebuilt by every forward; the previous one is freed there */
} Net;

static ns_tensor *net_forward(ns_module *self, ns_tensor *x) {
    Net *n = (Net *)self;
    ns_tensor *h = ns_relu(ns_call(n->fc1, x));
    ns_module_free(n->adapter);
    n->adapter = ns_linear_new(256, 256, true); /* BUG: a new layer on every call */
    h = ns_add(h, ns_relu(ns_call(n->adapter, h)));
    return ns_call(n->head, h);
}

static void net_destroy(ns_module *self) {
    ns_module_free(((Net *)self)->adapter);
}

static ns_module *net_new(void) {
    Net *n = calloc(1, sizeof *n);
    if (!n) abort();
    ns_module_init(&n->base, "Net", net_forward);
    n->base.destroy = net_destroy;
    n->fc1 = ns_linear_new(784, 256, true);
    ns_register_module(&n->base, "fc1", n->fc1);
    n->head = ns_linear_new(256, 10, true);
    ns_register_module(&n->base, "head", n->head);
    return &n->base;
}

int main(int argc, char **argv) {
    sample_opts o;
    int rc = sample_parse_args(argc, argv, "bug_layer_in_forward",
                               "Linear(784,256) -> ReLU -> (+ a residual Linear(256,256) adapter)\n"
                               "-> Linear(256,10) on Fashion-MNIST with Adam, the adapter built\n"
                               "anew inside every forward (never trained).",
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
