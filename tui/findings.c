/* Findings in the view model: grouping by rule, severity counts, module/param flags.
 * See model.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"

static int strcmp_null(const char *a, const char *b) {
    if (!a || !b) return a ? 1 : (b ? -1 : 0);
    return strcmp(a, b);
}

static int cmp_finding(const void *a, const void *b) {
    const ns_finding *x = a, *y = b;
    int c = strcmp_null(x->rule, y->rule);
    if (c) return c;
    if (x->severity != y->severity) return x->severity > y->severity ? -1 : 1;
    if (x->first_step != y->first_step) return x->first_step < y->first_step ? -1 : 1;
    return strcmp_null(x->module, y->module);
}

static int cmp_group(const void *a, const void *b) {
    const ns_tui_fgroup *x = a, *y = b;
    if (x->sev != y->sev) return x->sev > y->sev ? -1 : 1;
    return strcmp_null(x->rule, y->rule);
}

size_t ns_tui_group_findings(ns_finding *f, size_t n, ns_tui_fgroup *groups) {
    if (n == 0) return 0;
    if (n > 1) qsort(f, n, sizeof *f, cmp_finding);
    size_t ng = 0;
    for (size_t i = 0; i < n; i++) {
        if (ng == 0 || strcmp_null(groups[ng - 1].rule, f[i].rule) != 0) {
            groups[ng].rule = f[i].rule;
            groups[ng].sev = f[i].severity;
            groups[ng].first = i;
            groups[ng].count = 0;
            ng++;
        }
        ns_tui_fgroup *g = &groups[ng - 1];
        g->count++;
        if (f[i].severity > g->sev) g->sev = f[i].severity;
    }
    if (ng > 1) qsort(groups, ng, sizeof *groups, cmp_group);
    return ng;
}

/* Appends rule to a comma-separated flag text unless present. */
static void add_flag(char *flags, size_t cap, const char *rule) {
    if (!rule || !rule[0]) return;
    size_t rl = strlen(rule);
    for (const char *c = flags; (c = strstr(c, rule)) != NULL; c += rl) {
        if ((c == flags || c[-1] == ',') && (c[rl] == ',' || c[rl] == 0)) return;
    }
    size_t len = strlen(flags);
    snprintf(flags + len, cap - len, "%s%s", len ? "," : "", rule);
}

/* Whether the comma/space separated list names contains name as a whole item. */
static int names_contain(const char *names, const char *name) {
    size_t n = strlen(name);
    for (const char *c = names; (c = strstr(c, name)) != NULL; c++) {
        int start = c == names || c[-1] == ',' || c[-1] == ' ';
        int end = c[n] == 0 || c[n] == ',' || c[n] == ' ';
        if (start && end) return 1;
    }
    return 0;
}

void ns_tui_model_set_findings(ns_tui_model *m, ns_finding *f, size_t n) {
    ns_findings_free(m->find, m->nfind);
    free(m->groups);
    m->find = f;
    m->nfind = n;
    m->groups = n ? malloc(sizeof *m->groups * n) : NULL;
    m->ngroups = 0;
    if (n && !m->groups)
        m->oom = 1;
    else
        m->ngroups = ns_tui_group_findings(f, n, m->groups);
    memset(m->sev_count, 0, sizeof m->sev_count);
    if (!m->linked) ns_tui_model_link(m);
    for (int i = 0; i < m->nmods; i++) {
        m->mods[i].flags[0] = 0;
        m->mods[i].max_sev = -1;
        m->mods[i].nfindings = 0;
    }
    for (int i = 0; i < m->nparams; i++) {
        m->params[i].flags[0] = 0;
        m->params[i].max_sev = -1;
    }
    for (size_t i = 0; i < n; i++) {
        ns_finding *x = &f[i];
        if ((int)x->severity >= 0 && x->severity <= NS_SEV_ERROR) m->sev_count[x->severity]++;
        int mi = x->module_id >= 0 ? ns_tui_model_find_module(m, x->module_id) : -1;
        if (mi < 0 && x->module) {
            for (int j = 0; j < m->nmods && mi < 0; j++)
                if (strcmp(m->mods[j].path, x->module) == 0) mi = j;
        }
        if (mi >= 0) {
            ns_tui_mod *d = &m->mods[mi];
            add_flag(d->flags, sizeof d->flags, x->rule);
            if ((int)x->severity > d->max_sev) d->max_sev = (int)x->severity;
            d->nfindings++;
        }
        if (!x->param || !x->param[0]) continue;
        int lo = 0, hi = m->nparams;
        int *idx = NULL;
        if (mi >= 0) {
            lo = 0;
            hi = m->mods[mi].nparams;
            idx = &m->mod_params[m->mods[mi].first_param];
        }
        for (int j = lo; j < hi; j++) {
            ns_tui_param *p = &m->params[idx ? idx[j] : j];
            if (!names_contain(x->param, p->name)) continue;
            add_flag(p->flags, sizeof p->flags, x->rule);
            if ((int)x->severity > p->max_sev) p->max_sev = (int)x->severity;
        }
    }
    m->generation++;
}
