/* Screen 2, Findings: grouped by rule, coloured by severity; Enter opens the explanation,
 * evidence and fix of the selected finding (or of the rule, on a group line). See draw.h. */
#include <stdio.h>
#include <string.h>

#include "draw.h"

static void steps_text(const ns_finding *f, char *buf, size_t cap) {
    if (f->first_step < 0 && f->last_step < 0)
        snprintf(buf, cap, "-");
    else if (f->last_step < 0 || f->last_step == f->first_step)
        snprintf(buf, cap, "step %lld", (long long)f->first_step);
    else
        snprintf(buf, cap, "steps %lld-%lld", (long long)f->first_step, (long long)f->last_step);
}

static const char *module_text(const ns_finding *f) {
    if (!f->module) return "-";
    return f->module[0] ? f->module : "(model)";
}

static void draw_list(ns_grid *g, ns_tui_model *m, ns_tui_ui *ui, int y, int h) {
    char buf[64];
    int n = ui->nfrows;
    if (ui->find_sel >= n) ui->find_sel = n > 0 ? n - 1 : 0;
    ui->find_top = ns_tui_scroll(ui->find_top, ui->find_sel, n, h);
    ui->panes[0] = (ns_tui_pane){y, 0, h, g->w, ui->find_top, n};
    int mw = g->w >= 100 ? 30 : 20;
    for (int i = 0; i < h && ui->find_top + i < n; i++) {
        const ns_tui_frow *r = &ui->frows[ui->find_top + i];
        const ns_tui_fgroup *gr = &m->groups[r->group];
        int yy = y + i;
        if (r->finding < 0) {
            const ns_rule *rule = ns_rule_find(gr->rule);
            int x = 1 + ns_grid_printf(g, yy, 1, -1, ns_tui_sev_attr(gr->sev) | NS_A_REV, " %s ",
                                       ns_tui_sev_label(gr->sev));
            x += ns_grid_printf(g, yy, x + 1, -1, NS_A_BOLD, "%s (%zu)", gr->rule ? gr->rule : "?",
                                gr->count) +
                 1;
            if (rule && rule->title)
                ns_grid_printf(g, yy, x + 2, g->w - x - 2, NS_A_DIM, "%s", rule->title);
        } else {
            const ns_finding *f = &m->find[r->finding];
            uint8_t a = ns_tui_sev_attr(f->severity);
            ns_grid_put(g, yy, 3, 1, a, 0, g->ascii ? "*" : "\u25cf");
            ns_grid_put(g, yy, 5, mw, a, 1, module_text(f));
            steps_text(f, buf, sizeof buf);
            ns_grid_put(g, yy, 6 + mw, 16, NS_A_DIM, 1, buf);
            ns_grid_put(g, yy, 23 + mw, g->w - 23 - mw, NS_A_NORMAL, 1,
                        f->message ? f->message : "");
        }
        if (ui->find_top + i == ui->find_sel) ns_tui_mark_selected(g, yy, 0, g->w, ui->focus == 0);
    }
}

/* The explanation text of a row: the finding's specifics, then the rule's why, fix and SQL. */
static void explanation(const ns_tui_model *m, const ns_tui_frow *r, char *buf, size_t cap) {
    const ns_tui_fgroup *gr = &m->groups[r->group];
    const ns_rule *rule = ns_rule_find(gr->rule);
    size_t len = 0;
#define ADD(...)                                                                                   \
    do {                                                                                           \
        if (len < cap) len += (size_t)snprintf(buf + len, cap - len, __VA_ARGS__);                 \
    } while (0)
    if (r->finding >= 0) {
        const ns_finding *f = &m->find[r->finding];
        char steps[64];
        steps_text(f, steps, sizeof steps);
        ADD("%s\n", f->message ? f->message : "");
        ADD("module: %s   param: %s   %s\n\n", module_text(f), f->param ? f->param : "-", steps);
        if (rule && rule->explain) ADD("Why it matters: %s\n\n", rule->explain);
        ADD("Evidence: %s\n\n", f->evidence && f->evidence[0] ? f->evidence : "(none recorded)");
        const char *fix = f->fix ? f->fix : rule ? rule->fix : NULL;
        if (fix) ADD("Fix: %s\n\n", fix);
    } else {
        ADD("%s: %zu finding%s\n\n", gr->rule ? gr->rule : "?", gr->count,
            gr->count == 1 ? "" : "s");
        if (rule && rule->title) ADD("%s\n\n", rule->title);
        if (rule && rule->explain) ADD("Why it matters: %s\n\n", rule->explain);
        if (rule && rule->fix) ADD("Fix: %s\n\n", rule->fix);
    }
    ADD("The rule is SQL over the recording: nnscope rules --sql %s", gr->rule ? gr->rule : "?");
#undef ADD
}

static void draw_explain(ns_grid *g, ns_tui_model *m, ns_tui_ui *ui, int y, int h) {
    if (ui->nfrows == 0 || h < 3) return;
    const ns_tui_frow *r = &ui->frows[ui->find_sel];
    const ns_tui_fgroup *gr = &m->groups[r->group];
    int sev = r->finding >= 0 ? (int)m->find[r->finding].severity : (int)gr->sev;
    ns_grid_box(g, y, 0, h, g->w, ui->focus == 1 ? NS_A_BOLD : NS_A_DIM);
    ns_grid_printf(g, y, 2, g->w - 4, ns_tui_sev_attr(sev) | NS_A_REV, " %s %s ",
                   ns_tui_sev_label(sev), gr->rule ? gr->rule : "?");
    static char text[8192];
    explanation(m, r, text, sizeof text);
    int total = ns_tui_draw_wrapped(g, 0, 0, g->w - 4, 0, 0, NS_A_NORMAL, text);
    if (ui->explain_top > total - (h - 2)) ui->explain_top = total - (h - 2);
    if (ui->explain_top < 0) ui->explain_top = 0;
    ns_tui_draw_wrapped(g, y + 1, 2, g->w - 4, h - 2, ui->explain_top, NS_A_NORMAL, text);
    ui->panes[1] = (ns_tui_pane){y + 1, 1, h - 2, g->w - 2, ui->explain_top, total};
    if (total > h - 2)
        ns_grid_printf(g, y + h - 1, g->w - 14, 12, NS_A_DIM, " %d/%d ", ui->explain_top + 1,
                       total);
}

void ns_tui_draw_findings(ns_grid *g, ns_tui_model *m, ns_tui_ui *ui, int y, int h) {
    int n = ns_tui_ui_finding_rows(ui, m);
    if (n == 0) {
        if (m->rules_state == 0)
            ns_grid_put(g, y + 1, 2, -1, NS_A_DIM, 1, "The rules have not run yet.");
        else if (m->rules_state < 0)
            ns_tui_draw_wrapped(g, y + 1, 2, g->w - 4, h - 1, 0, NS_A_ERR, m->rules_err);
        else if (m->nfind && ui->filter[0])
            ns_grid_put(g, y + 1, 2, -1, NS_A_DIM, 1, "No finding matches the filter.");
        else
            ns_grid_put(g, y + 1, 2, -1, NS_A_OK, 1, "No findings: every rule passed.");
        if (m->rules_state == 1)
            ns_grid_printf(g, y + 3, 2, -1, NS_A_DIM, "rules ran in %.0f ms", m->rules_ms);
        ui->focus = 0;
        ui->find_open = 0;
        return;
    }
    /* With the explanation open the list keeps what it needs, at most half the screen. */
    int lh = h;
    if (ui->find_open) {
        lh = n + 1 < h / 2 ? n + 1 : h / 2;
        if (lh < 3) lh = 3;
    }
    draw_list(g, m, ui, y, lh);
    if (ui->find_open)
        draw_explain(g, m, ui, y + lh, h - lh);
    else if (ui->focus == 1)
        ui->focus = 0;
}
