/* Rule thresholds: names (= SQL parameter names), defaults, meanings, and parsing of
 * `--set name=value`. */
#include "diag/diag.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define OPT(field, def, integer, doc)                                                              \
    { #field, def, integer, doc, offsetof(ns_diag_opts, field) }

static const ns_diag_option options[] = {
    OPT(min_steps, 20, 1,
        "train steps a run (or a window) needs before trend rules judge it: vanishing-gradient, "
        "dead-relu, update-ratio (also the warm-up skipped by its soft band), "
        "loss-not-decreasing"),
    OPT(frozen_min_steps, 20, 1,
        "frozen-parameter: train steps in which a parameter never changed before it is reported"),
    OPT(transfer_min_frac, 0.5, 0,
        "device-mixing: fraction of all steps on which a forward moves data between devices"),
    OPT(grad_window, 50, 1,
        "vanishing-/exploding-gradient: train steps per window (vanishing looks at the last "
        "one)"),
    OPT(grad_rms_min, 1e-7, 0,
        "vanishing-gradient: gradient RMS (grad_norm/sqrt(numel)) below this on every step of "
        "the last window"),
    OPT(grad_growth, 10, 0,
        "exploding-gradient: a window's mean gradient norm this many times the mean of all "
        "earlier windows"),
    OPT(grad_norm_max, 1e3, 0, "exploding-gradient: any gradient L2 norm above this"),
    OPT(dead_relu_frac, 0.5, 0,
        "dead-relu: mean fraction of units zero for the whole batch above this"),
    OPT(dead_relu_window, 100, 1, "dead-relu: the last sampled train calls of a ReLU considered"),
    OPT(ratio_min, 1e-8, 0, "update-ratio: hard lower bound of update_norm/weight_norm"),
    OPT(ratio_max, 10, 0, "update-ratio: hard upper bound of update_norm/weight_norm"),
    OPT(ratio_hard_steps, 10, 1,
        "update-ratio: train steps outside the hard bounds before a parameter is reported"),
    OPT(ratio_low, 1e-6, 0, "update-ratio: lower edge of the usual band (around 1e-3)"),
    OPT(ratio_high, 0.1, 0, "update-ratio: upper edge of the usual band"),
    OPT(ratio_soft_frac, 0.5, 0,
        "update-ratio: fraction of train steps outside the usual band before reporting"),
    OPT(loss_window, 100, 1,
        "loss-not-decreasing: train steps averaged at the start and at the end of the run"),
    OPT(loss_min_drop, 0.01, 0,
        "loss-not-decreasing: relative drop of the mean loss expected between the two windows"),
};

#define N_OPTIONS (sizeof options / sizeof options[0])

const ns_diag_option *ns_diag_options(size_t *n) {
    *n = N_OPTIONS;
    return options;
}

void ns_diag_opts_default(ns_diag_opts *o) {
    memset(o, 0, sizeof *o);
    for (size_t i = 0; i < N_OPTIONS; i++)
        *(double *)((char *)o + options[i].offset) = options[i].def;
}

static const ns_diag_option *find_option(const char *name, size_t len) {
    for (size_t i = 0; i < N_OPTIONS; i++)
        if (strlen(options[i].name) == len && strncmp(options[i].name, name, len) == 0)
            return &options[i];
    return NULL;
}

int ns_diag_opts_get(const ns_diag_opts *o, const char *name, double *value) {
    const ns_diag_option *opt = find_option(name, strlen(name));
    if (!opt) return -1;
    *value = *(const double *)((const char *)o + opt->offset);
    return 0;
}

int ns_diag_opts_set(ns_diag_opts *o, const char *assignment, char *err, size_t errlen) {
    const char *eq = strchr(assignment, '=');
    if (!eq || eq == assignment) {
        snprintf(err, errlen, "option '%s' is not name=value", assignment);
        return -1;
    }
    const ns_diag_option *opt = find_option(assignment, (size_t)(eq - assignment));
    if (!opt) {
        snprintf(err, errlen, "unknown option '%.*s' (see nnscope rules --options)",
                 (int)(eq - assignment), assignment);
        return -1;
    }
    const char *text = eq + 1;
    char *end = NULL;
    errno = 0;
    double v = strtod(text, &end);
    if (*text == '\0' || *end != '\0' || errno == ERANGE || !isfinite(v)) {
        snprintf(err, errlen, "option %s: '%s' is not a number", opt->name, text);
        return -1;
    }
    if (v < 0) {
        snprintf(err, errlen, "option %s: %s is negative", opt->name, text);
        return -1;
    }
    if (opt->integer && v != floor(v)) {
        snprintf(err, errlen, "option %s: %s is not a whole number of steps", opt->name, text);
        return -1;
    }
    size_t nlen = strlen(opt->name);
    if (v < 1 && nlen > 7 && strcmp(opt->name + nlen - 7, "_window") == 0) {
        snprintf(err, errlen, "option %s: a window needs at least 1 step", opt->name);
        return -1;
    }
    *(double *)((char *)o + opt->offset) = v;
    return 0;
}
