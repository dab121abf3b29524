/* bug_missing_eval: validation under no-grad with Dropout and BatchNorm left in training mode.
 * The PyTorch original of the mistake:
 *
 *   model = nn.Sequential(nn.Linear(784, 256), nn.BatchNorm1d(256), nn.ReLU(), nn.Dropout(0.3),
 *                         nn.Linear(256, 10))
 *   for epoch in range(epochs):
 *       model.train()
 *       for x, y in train_loader: ...
 *       with torch.no_grad():            # <- BUG: model.eval() is missing
 *           for x, y in test_loader: ...
 *
 * No-grad is not eval mode. Nothing fails and the test accuracy looks fine, only a little low
 * and different on every run: Dropout still zeroes 30% of the activations at random and
 * BatchNorm normalises each test batch with its own statistics, and it updates its running
 * statistics with test data, so the saved model changes each time it is evaluated.
 * nnscope's missing-eval-mode rule reports the BatchNorm1d '1' and the Dropout '3'.
 * Fix: ns_module_eval(model) before evaluating (and ns_module_train(model, true) after). */
#include <stdio.h>
#include <stdlib.h>

#include "common.h"

int main(int argc, char **argv) {
    sample_opts o;
    int rc = sample_parse_args(argc, argv, "bug_missing_eval",
                               "samples/fashion_mlp's model (Linear -> BatchNorm1d -> ReLU ->\n"
                               "Dropout(0.3) -> Linear) with Adam, evaluated under no-grad but\n"
                               "without eval mode.",
                               &o);
    if (rc >= 0) return rc;
    sample_data d;
    if (!sample_data_load(&d, &o)) return 1;

    ns_manual_seed(o.seed);
    ns_module *model =
        ns_sequential_new(5, ns_linear_new(784, 256, true), ns_batchnorm1d_new(256), ns_relu_new(),
                          ns_dropout_new(0.3), ns_linear_new(256, 10, true));
    sample_print_model(model);
    ns_optimizer *opt = sample_adam(model, o.lr);

    sample_result train, test = {0};
    bool more = true;
    for (int epoch = 0; epoch < o.epochs && more; epoch++) {
        ns_set_epoch(epoch);
        ns_module_train(model, true);
        more = sample_train_epoch(model, opt, &d, NS_CPU, &train);
        /* BUG: ns_module_eval(model) is missing; sample_evaluate() only turns grad off. */
        test = sample_evaluate(model, &d, NS_CPU);
        sample_print_epoch(epoch, o.epochs, &train, &test);
    }
    printf("test_accuracy=%.4f\n", test.acc);

    ns_optim_free(opt);
    ns_module_free(model);
    sample_data_free(&d);
    return 0;
}
