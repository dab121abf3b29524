/* bug_device_mixing: one layer left on the CPU while the rest of the model runs on the GPU, and
 * the forward copies activations back and forth on every step. The PyTorch original:
 *
 *   model = Net()                          # body: Linear-ReLU-Linear-ReLU, head: Linear(128, 10)
 *   model.body.to("cuda")                  # <- BUG: model.to("cuda")
 *   def forward(self, x):                  # x on the GPU
 *       h = self.body(x).cpu()             # added to silence "expected all tensors to be on
 *       return self.head(h).cuda()         # the same device"
 *
 * Nothing fails and the losses are exactly those of a model kept on one device; every step
 * pays for two device copies and the head runs on the slow device. nnscope's device-mixing
 * rule reports the parameters on two devices ('head' on cpu) and the copies the model's
 * forward makes on every step (bytes per step). Fix: ns_module_to(model, NS_CUDA) once, after
 * every layer is registered, and no ns_to() inside forward.
 *
 * CUDA builds only: without a usable CUDA device it says why and exits 77 (the skip status of
 * test harnesses). */
#include <stdio.h>
#include <stdlib.h>

#include "common.h"

typedef struct {
    ns_module base;
    ns_module *body, *head;
} Net;

static ns_tensor *net_forward(ns_module *self, ns_tensor *x) {
    Net *n = (Net *)self;
    ns_tensor *h = ns_to(ns_call(n->body, x), NS_CPU); /* BUG: copies to make the devices */
    return ns_to(ns_call(n->head, h), x->device);      /* match, on every step */
}

static ns_module *net_new(void) {
    Net *n = calloc(1, sizeof *n);
    if (!n) abort();
    ns_module_init(&n->base, "Net", net_forward);
    n->body = ns_sequential_new(4, ns_linear_new(784, 256, true), ns_relu_new(),
                                ns_linear_new(256, 128, true), ns_relu_new());
    ns_register_module(&n->base, "body", n->body);
    n->head = ns_linear_new(128, 10, true);
    ns_register_module(&n->base, "head", n->head);
    return &n->base;
}

int main(int argc, char **argv) {
    sample_opts o;
    int rc = sample_parse_args(argc, argv, "bug_device_mixing",
                               "An MLP on Fashion-MNIST with Adam whose body runs on the GPU and\n"
                               "whose head was left on the CPU, with copies inside forward (CUDA\n"
                               "builds only; exits 77 without a usable CUDA device).",
                               &o);
    if (rc >= 0) return rc;
    char why[256] = "";
    if (!ns_device_available(NS_CUDA, why, sizeof why)) {
        printf("bug_device_mixing: needs a CUDA device, and %s is not usable here: %s\n",
               ns_device_name(NS_CUDA), why);
        return 77;
    }
    sample_data d;
    if (!sample_data_load(&d, &o)) return 1;

    ns_manual_seed(o.seed);
    ns_module *model = net_new();
    ns_module_to(((Net *)model)->body, NS_CUDA); /* BUG: the body only; the head stays behind */
    sample_print_model(model);
    ns_optimizer *opt = sample_adam(model, o.lr);

    sample_fit(model, opt, &d, &o, NS_CUDA);

    ns_optim_free(opt);
    ns_module_free(model);
    sample_data_free(&d);
    return 0;
}
