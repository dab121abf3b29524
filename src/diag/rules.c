/* The rule table: id, default severity, title, explanation, fix hint and SQL (embedded from
 * rules/<id>.sql). Report order is the order below. */
#include "diag/diag.h"

#include <string.h>

#include "rules_sql.h"

static const ns_rule rules[] = {
    {
        "unregistered-module",
        NS_SEV_ERROR,
        "a module runs inside the model's forward but is not registered under it",
        "A module kept in a plain struct field or C array and run with ns_call() works in the "
        "forward pass, but the model does not know it: ns_named_parameters() skips its "
        "parameters, so an optimizer built from the model never updates them, state_dict files "
        "do not save them and ns_module_to() does not move them. The loss still goes down a "
        "little (the rest of the model learns around the random layer), so nothing looks wrong. "
        "PyTorch users hit the same with a Python list of layers instead of nn.ModuleList.",
        "Register the module under its caller with ns_register_module(parent, \"name\", m) in the "
        "caller's constructor (use a Sequential or ModuleList-style container for a list of "
        "layers), then build the optimizer from the model's parameters.",
        ns_sql_unregistered_module,
    },
    {
        "module-created-in-forward",
        NS_SEV_ERROR,
        "a module is built inside a forward",
        "A layer constructed inside forward() gets fresh random parameters on every call: it is "
        "never trained (the optimizer was built before it existed), never saved, and every step "
        "pays for the allocation. The model still produces outputs and the loss may still move, "
        "because the other layers adapt. A layer built once inside the first forward (lazy "
        "initialisation) is only reported as info when the optimizer holds its parameters.",
        "Build the layer once in the module's constructor and register it with "
        "ns_register_module(); the forward should only call it.",
        ns_sql_module_created_in_forward,
    },
    {
        "uninitialised-module",
        NS_SEV_ERROR,
        "a module was used before ns_module_init()",
        "Every module struct must start with ns_module_init() (the C counterpart of "
        "super().__init__()) before anything is registered into it or it is called. The engine "
        "stops at once when that is missing; the recorder stores the engine's message first, so "
        "the failed run's database says which module and which call.",
        "Call ns_module_init(&self->base, \"Type\", forward) at the top of the module's "
        "constructor, before registering children or parameters.",
        ns_sql_uninitialised_module,
    },
    {
        "frozen-parameter",
        NS_SEV_ERROR,
        "a parameter never changed during training",
        "A parameter whose weights stayed exactly the same over every train step did not learn. "
        "The rule says why: requires_grad is off (info: an intentional freeze), the optimizer "
        "does not hold it (error), no gradient ever reached it, i.e. the chain between it and the "
        "loss is broken, for instance by a detach or a no-grad section inside a forward (error), "
        "or its learning rate is 0 (warning). The run trains without any error and the loss "
        "decreases because the other parameters learn. The bias of a layer that feeds a "
        "BatchNorm never gets a gradient by construction; it is reported as info.",
        "Follow the reason: pass the parameter to the optimizer, remove the detach / no-grad "
        "section between it and the loss, or give its parameter group a learning rate above 0.",
        ns_sql_frozen_parameter,
    },
    {
        "zero-trainable-parameters",
        NS_SEV_ERROR,
        "training ran with no trainable parameter",
        "Optimizer steps ran, but no parameter both requires grad and is held by the optimizer, "
        "so nothing can learn: the loss only moves with the data.",
        "Build the optimizer from the model's parameters after the model is complete, and check "
        "that the model is not frozen (ns_module_requires_grad(model, true)).",
        ns_sql_zero_trainable_parameters,
    },
    {
        "missing-eval-mode",
        NS_SEV_ERROR,
        "evaluation ran Dropout or BatchNorm in training mode",
        "Evaluation forwards (grad disabled, or steps without an optimizer step and without a "
        "backward) that run Dropout or BatchNorm in training mode give wrong and noisy results: "
        "dropout zeroes activations at random and BatchNorm normalises with the statistics of the "
        "evaluation batch. BatchNorm in training mode also updates its running statistics with "
        "evaluation data, which changes the model the next evaluation or the saved checkpoint "
        "uses.",
        "Call ns_module_eval(model) before evaluating, and ns_module_train(model, true) when "
        "training resumes; evaluate under no-grad.",
        ns_sql_missing_eval_mode,
    },
    {
        "train-mode-not-restored",
        NS_SEV_ERROR,
        "training continued with modules left in eval mode",
        "After an evaluation switched the model to eval mode, training went on without switching "
        "back: Dropout no longer drops and BatchNorm normalises with its frozen running "
        "statistics, so later epochs train a different model than the first one did, with no "
        "error. A module that is in eval mode during every train step is reported as info, since "
        "freezing BatchNorm is sometimes intended.",
        "Call ns_module_train(model, true) at the start of every training epoch (after each "
        "evaluation).",
        ns_sql_train_mode_not_restored,
    },
    {
        "device-mixing",
        NS_SEV_WARNING,
        "the model's work is split across devices",
        "Parameters of one model on more than one device, a forward that moves tensors between "
        "devices on most steps, or a module given inputs on another device than its parameters: "
        "the run works, but every step pays for the copies (the bytes per step are shown) and "
        "the slow device sets the pace. Usually one layer was created after the model was moved, "
        "or a forward moves data to fix a device error.",
        "Move the whole model once with ns_module_to(model, device) after every layer is "
        "registered, and move each input batch to that device before calling the model.",
        ns_sql_device_mixing,
    },
    {
        "vanishing-gradient",
        NS_SEV_WARNING,
        "gradients have vanished",
        "A parameter whose gradient root-mean-square stayed below grad_rms_min (1e-7) on each of "
        "the last grad_window train steps gets almost no learning signal: with SGD it barely "
        "moves, with Adam its updates are driven by noise. Typical causes are saturated "
        "activations (sigmoid/tanh), a deep stack without normalisation or residual connections, "
        "or dead ReLUs upstream. The RMS (grad_norm / sqrt(numel)) bounds the mean absolute "
        "gradient from above. One case is only info: the bias of a layer whose output goes "
        "straight into a BatchNorm gets no gradient by construction (the norm subtracts the "
        "batch mean), so that bias is redundant rather than broken.",
        "Use ReLU-family activations with normalisation (BatchNorm) or residual connections, "
        "check the initialisation, and look for dead-relu findings upstream.",
        ns_sql_vanishing_gradient,
    },
    {
        "exploding-gradient",
        NS_SEV_WARNING,
        "gradients are exploding",
        "A gradient norm above grad_norm_max, or a window of grad_window train steps whose mean "
        "gradient norm is grad_growth (10) times the mean of all earlier windows, means the "
        "optimisation is becoming unstable: updates overshoot and the loss soon turns NaN. The "
        "first window is ignored because gradients settle during the first steps.",
        "Lower the learning rate, add gradient clipping or warm-up, and check the loss scale "
        "(reduction 'sum' instead of 'mean' multiplies gradients by the batch size).",
        ns_sql_exploding_gradient,
    },
    {
        "non-finite",
        NS_SEV_ERROR,
        "NaN or Inf appeared",
        "Once a NaN or Inf enters the weights, every later step is meaningless, yet a C program "
        "keeps running and prints 'nan' losses (or nothing at all). The rule names the first "
        "step and the innermost module whose output held a non-finite value (or the first "
        "gradient / weight that did), which is where to look.",
        "Look at the named module's input and parameters at that step: log/sqrt/division of "
        "zero or negative values, a learning rate too high, or overflow in a custom op. Lower the "
        "learning rate or add clipping, and clamp inputs to log/sqrt.",
        ns_sql_non_finite,
    },
    {
        "dead-relu",
        NS_SEV_WARNING,
        "most units of a ReLU are dead",
        "A ReLU unit whose output is zero for every sample of the batch passes no gradient, so "
        "the weights feeding it stop learning; once most units of a layer are dead the layer's "
        "capacity is gone. Usually caused by a learning rate that is too high, a large negative "
        "bias, or a bad initialisation.",
        "Lower the learning rate, initialise with He/Kaiming (the Linear default), put BatchNorm "
        "before the ReLU, or use LeakyReLU.",
        ns_sql_dead_relu,
    },
    {
        "update-ratio",
        NS_SEV_WARNING,
        "updates are too large or too small relative to the weights",
        "The ratio of a parameter's update norm to its weight norm shows how fast it learns; "
        "around 1e-3 per step is the usual range. Ratios above ratio_max (10) or below "
        "ratio_min (1e-8), the defaults of SageMaker Debugger's rule, on several steps mean the "
        "learning rate is far off for that parameter. A weight matrix whose ratio stays outside "
        "[ratio_low, ratio_high] on most steps is a warning; biases and norm scales are only "
        "reported as info, as Adam moves them relatively more. Biases of layers that feed a "
        "BatchNorm are left out (their gradient is rounding noise; see vanishing-gradient).",
        "Adjust the learning rate (or give the parameter its own parameter group); for ratios "
        "that are too small, look for vanishing gradients first.",
        ns_sql_update_ratio,
    },
    {
        "loss-not-decreasing",
        NS_SEV_WARNING,
        "the training loss did not go down",
        "The mean training loss over the last loss_window train steps is not loss_min_drop "
        "(1%) below the mean over the first loss_window steps. The model is not learning: "
        "learning rate far off, nothing trainable, labels not matching the inputs, or a loss "
        "computed on the wrong tensors.",
        "Check the other findings first (frozen or unregistered parameters), then the learning "
        "rate and that the labels match the inputs.",
        ns_sql_loss_not_decreasing,
    },
    {
        "state-dict-mismatch",
        NS_SEV_ERROR,
        "a checkpoint did not fit the model",
        "A state_dict load found keys the model has and the file lacks (missing: those "
        "parameters keep their initial values), keys only the file has (unexpected: ignored), or "
        "tensors of another shape. A non-strict load accepts all of these silently and training "
        "or evaluation then runs on a partly random model.",
        "Load with strict mode on, or compare the key lists shown: a prefix such as 'module.' to "
        "strip, a renamed layer, or a checkpoint from another architecture.",
        ns_sql_state_dict_mismatch,
    },
};

const ns_rule *ns_rules(size_t *n) {
    *n = sizeof rules / sizeof rules[0];
    return rules;
}

const ns_rule *ns_rule_find(const char *id) {
    for (size_t i = 0; i < sizeof rules / sizeof rules[0]; i++)
        if (strcmp(rules[i].id, id) == 0) return &rules[i];
    return NULL;
}

int ns_rule_uses_option(const ns_rule *r, const char *name) {
    size_t len = strlen(name);
    for (const char *p = r->sql; *p; p++) {
        if (p[0] == '-' && p[1] == '-') {
            while (*p && *p != '\n') p++;
            if (!*p) break;
        } else if (*p == '\'') {
            for (p++; *p && !(p[0] == '\'' && p[1] != '\''); p += (p[0] == '\'' ? 2 : 1)) {
            }
            if (!*p) break;
        } else if (*p == ':' && strncmp(p + 1, name, len) == 0) {
            char c = p[1 + len];
            if (!(c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                  (c >= '0' && c <= '9')))
                return 1;
        }
    }
    return 0;
}
