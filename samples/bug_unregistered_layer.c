/* bug_unregistered_layer: residual blocks kept in a plain C array instead of a ModuleList. The
 * PyTorch original of the mistake:
 *
 *   class Net(nn.Module):
 *       def __init__(self):
 *           super().__init__()
 *           self.fc_in = nn.Linear(784, 256)
 *           self.blocks = [nn.Linear(256, 256) for _ in range(2)]   # <- BUG: nn.ModuleList
 *           self.head = nn.Linear(256, 10)
 *       def forward(self, x):
 *           h = F.relu(self.fc_in(x))
 *           for block in self.blocks:
 *               h = h + F.relu(block(h))
 *           return self.head(h)
 *
 * The blocks run through ns_call() like any other layer, but the model does not know them:
 * their parameters are in no ns_optim_params_of() list (so the optimizer never updates them),
 * in no state_dict, and ns_module_to() / ns_module_eval() never reach them. Nothing fails: the
 * skip connections carry the signal past the random blocks, fc_in and the head learn around
 * them and the loss goes down. The hint is in plain sight but easy to miss: print(model) lists
 * fc_in and head only, and the trainable parameter count (203,530) lacks the blocks' 131,584.
 * nnscope's unregistered-module rule reports both blocks and the model that calls them.
 * Fix: a ModuleList (ns_module_list_new(), ns_module_list_append()) registered as "blocks". */
#include <stdio.h>
#include <stdlib.h>

#include "common.h"

#define N_BLOCKS 2

typedef struct {
    ns_module base;
    ns_module *fc_in;
    ns_module *blocks[N_BLOCKS]; /* BUG: a plain array, never registered */
    ns_module *head;
} Net;

static ns_tensor *net_forward(ns_module *self, ns_tensor *x) {
    Net *n = (Net *)self;
    ns_tensor *h = ns_relu(ns_call(n->fc_in, x));
    for (int i = 0; i < N_BLOCKS; i++) h = ns_add(h, ns_relu(ns_call(n->blocks[i], h)));
    return ns_call(n->head, h);
}

/* The model does not own what it did not register: free the array's layers by hand. */
static void net_destroy(ns_module *self) {
    Net *n = (Net *)self;
    for (int i = 0; i < N_BLOCKS; i++) ns_module_free(n->blocks[i]);
}

static ns_module *net_new(void) {
    Net *n = calloc(1, sizeof *n);
    if (!n) abort();
    ns_module_init(&n->base, "Net", net_forward);
    n->base.destroy = net_destroy;
    n->fc_in = ns_linear_new(784, 256, true);
    ns_register_module(&n->base, "fc_in", n->fc_in);
    for (int i = 0; i < N_BLOCKS; i++) n->blocks[i] = ns_linear_new(256, 256, true);
    n->head = ns_linear_new(256, 10, true);
    ns_register_module(&n->base, "head", n->head);
    return &n->base;
}

int main(int argc, char **argv) {
    sample_opts o;
    int rc = sample_parse_args(argc, argv, "bug_unregistered_layer",
                               "Linear(784,256) -> ReLU -> 2 residual Linear(256,256) blocks ->\n"
                               "Linear(256,10) on Fashion-MNIST with Adam, the blocks held in a\n"
                               "plain C array instead of a ModuleList (never trained).",
                               &o);
    if (rc >= 0) return rc;
    sample_data d;
    if (!sample_data_load(&d, &o)) return 1;

    ns_manual_seed(o.seed);
    ns_module *model = net_new();
    sample_print_model(model);
    ns_optimizer *opt = sample_adam(model, o.lr); /* fc_in and head only */

    sample_fit(model, opt, &d, &o, NS_CPU);

    ns_optim_free(opt);
    ns_module_free(model);
    sample_data_free(&d);
    return 0;
}
