/* UI state and key handling: see ui.h. */
#include "ui.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

void ns_tui_ui_init(ns_tui_ui *ui) {
    memset(ui, 0, sizeof *ui);
    ui->screen = NS_SCR_MODULES;
    ui->sel_mod = INT64_MIN;
    ui->det_mod = INT64_MIN;
    ui->picked_run = -1;
    ui->sort = NS_SORT_TREE;
}

void ns_tui_ui_free(ns_tui_ui *ui) {
    free(ui->frows);
    ui->frows = NULL;
    ui->nfrows = ui->capfrows = 0;
}

static int clampi(int v, int lo, int hi) {
    if (v > hi) v = hi;
    if (v < lo) v = lo;
    return v;
}

static int page(const ns_tui_ui *ui, int pane) {
    int h = ui->panes[pane].h;
    return h > 1 ? h - 1 : 10;
}

static void rebuild_rows(ns_tui_ui *ui, ns_tui_model *m) {
    ns_tui_model_build_rows(m, ui->sort, ui->filter);
}

int ns_tui_ui_mod_row(ns_tui_ui *ui, const ns_tui_model *m) {
    if (m->nrows == 0) return -1;
    if (ui->sel_mod != INT64_MIN) {
        for (int i = 0; i < m->nrows; i++)
            if (m->mods[m->rows[i].mod].id == ui->sel_mod) return i;
    }
    ui->sel_mod = m->mods[m->rows[0].mod].id;
    return 0;
}

int ns_tui_ui_mod_index(ns_tui_ui *ui, const ns_tui_model *m) {
    int r = ns_tui_ui_mod_row(ui, m);
    return r < 0 ? -1 : m->rows[r].mod;
}

static const char *sev_word(ns_severity s) {
    return s == NS_SEV_ERROR ? "error" : s == NS_SEV_WARNING ? "warning" : "info";
}

static int finding_matches(const ns_finding *f, const char *filter) {
    const char *fields[] = {f->rule, f->module, f->param, f->message, sev_word(f->severity)};
    size_t n = strlen(filter);
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        if (!fields[i]) continue;
        for (const char *c = fields[i]; *c; c++)
            if (strncasecmp(c, filter, n) == 0) return 1;
    }
    return 0;
}

int ns_tui_ui_finding_rows(ns_tui_ui *ui, const ns_tui_model *m) {
    int need = (int)(m->ngroups + m->nfind);
    if (need > ui->capfrows) {
        ns_tui_frow *r = realloc(ui->frows, sizeof *r * (size_t)need);
        if (!r) return ui->nfrows = 0;
        ui->frows = r;
        ui->capfrows = need;
    }
    int n = 0;
    for (size_t g = 0; g < m->ngroups; g++) {
        const ns_tui_fgroup *gr = &m->groups[g];
        int head = n;
        ui->frows[n++] = (ns_tui_frow){(int)g, -1};
        int kept = 0;
        for (size_t i = gr->first; i < gr->first + gr->count; i++) {
            if (ui->filter[0] && !finding_matches(&m->find[i], ui->filter)) continue;
            ui->frows[n++] = (ns_tui_frow){(int)g, (int)i};
            kept++;
        }
        if (!kept) n = head; /* the filter hid every finding of this rule */
    }
    return ui->nfrows = n;
}

ns_tui_detail_kind ns_tui_ui_detail_target(const ns_tui_ui *ui, const ns_tui_model *m,
                                           int64_t *id) {
    int mi = ui->det_mod != INT64_MIN ? ns_tui_model_find_module(m, ui->det_mod) : -1;
    if (mi < 0) {
        *id = -1;
        return NS_DETAIL_NONE;
    }
    const ns_tui_mod *d = &m->mods[mi];
    if (ui->det_sel > 0 && ui->det_sel <= d->nparams && m->mod_params) {
        *id = m->params[m->mod_params[d->first_param + ui->det_sel - 1]].id;
        return NS_DETAIL_PARAM;
    }
    *id = d->id;
    return NS_DETAIL_MODULE;
}

void ns_tui_ui_open_detail(ns_tui_ui *ui, const ns_tui_model *m, int mi, int param_sel) {
    if (mi < 0 || mi >= m->nmods) return;
    ui->det_mod = m->mods[mi].id;
    ui->det_sel = param_sel < 0 ? 0 : param_sel + 1;
    ui->det_top = 0;
    ui->plot_top = 0;
    ui->screen = NS_SCR_DETAIL;
    ui->focus = 0;
}

static void set_msg(ns_tui_ui *ui, const char *text) {
    snprintf(ui->msg, sizeof ui->msg, "%s", text);
}

/* Moves a selection index by delta within [0, count). */
static int move(int sel, int delta, int count) {
    if (count <= 0) return 0;
    return clampi(sel + delta, 0, count - 1);
}

static int nav_delta(const ns_tui_ui *ui, int pane, int key) {
    switch (key) {
    case NS_KEY_UP:
    case 'k':
        return -1;
    case NS_KEY_DOWN:
    case 'j':
        return 1;
    case NS_KEY_WHEEL_UP:
        return -3;
    case NS_KEY_WHEEL_DOWN:
        return 3;
    case NS_KEY_PGUP:
        return -page(ui, pane);
    case NS_KEY_PGDN:
        return page(ui, pane);
    case NS_KEY_HOME:
    case 'g':
        return -1000000000;
    case NS_KEY_END:
    case 'G':
        return 1000000000;
    default:
        return 0;
    }
}

static void modules_key(ns_tui_ui *ui, ns_tui_model *m, int key) {
    int row = ns_tui_ui_mod_row(ui, m);
    if (row < 0) return;
    int mi = m->rows[row].mod;
    ns_tui_mod *d = &m->mods[mi];
    int delta = nav_delta(ui, ui->focus, key);
    if (ui->focus == 1) {
        if (delta)
            ui->param_sel = move(ui->param_sel, delta, d->nparams);
        else if (key == NS_KEY_ENTER && d->nparams > 0)
            ns_tui_ui_open_detail(ui, m, mi, clampi(ui->param_sel, 0, d->nparams - 1));
        return;
    }
    if (delta) {
        int r = move(row, delta, m->nrows);
        if (r != row) {
            ui->sel_mod = m->mods[m->rows[r].mod].id;
            ui->param_sel = ui->param_top = 0;
        }
        return;
    }
    switch (key) {
    case NS_KEY_ENTER:
        ns_tui_ui_open_detail(ui, m, mi, -1);
        break;
    case NS_KEY_LEFT:
    case 'h':
    case '-':
        if (d->first_child >= 0 && !d->collapsed)
            d->collapsed = 1;
        else if (d->parent >= 0)
            ui->sel_mod = m->mods[d->parent].id;
        break;
    case NS_KEY_RIGHT:
    case 'l':
    case '+':
        if (d->first_child >= 0) d->collapsed = 0;
        break;
    case ' ':
        if (d->first_child >= 0) d->collapsed = !d->collapsed;
        break;
    case 's': {
        ui->sort = (ns_tui_sort)((ui->sort + 1) % NS_SORT_COUNT_);
        char text[64];
        snprintf(text, sizeof text, "sort: %s", ns_tui_sort_name(ui->sort));
        set_msg(ui, text);
        break;
    }
    default:
        break;
    }
    rebuild_rows(ui, m);
}

static void findings_key(ns_tui_ui *ui, ns_tui_model *m, int key) {
    int n = ns_tui_ui_finding_rows(ui, m);
    int delta = nav_delta(ui, ui->focus, key);
    if (ui->focus == 1 && ui->find_open) {
        if (delta) {
            ui->explain_top = clampi(ui->explain_top + delta, 0, 1000);
        } else if (key == NS_KEY_ENTER || key == NS_KEY_ESC) {
            ui->find_open = 0;
            ui->focus = 0;
        }
        return;
    }
    if (delta) {
        int s = move(ui->find_sel, delta, n);
        if (s != ui->find_sel) ui->explain_top = 0;
        ui->find_sel = s;
        return;
    }
    if (key == NS_KEY_ENTER && n > 0) {
        ui->find_open = !ui->find_open;
        ui->explain_top = 0;
    } else if (key == NS_KEY_ESC) {
        ui->find_open = 0;
    } else if (key == 'm' && n > 0) {
        /* Jump to the finding's module on the modules screen. */
        const ns_tui_frow *r = &ui->frows[clampi(ui->find_sel, 0, n - 1)];
        if (r->finding >= 0 && m->find[r->finding].module_id >= 0 &&
            ns_tui_model_find_module(m, m->find[r->finding].module_id) >= 0) {
            ui->sel_mod = m->find[r->finding].module_id;
            ui->screen = NS_SCR_MODULES;
            ui->focus = 0;
        }
    }
}

static void detail_key(ns_tui_ui *ui, ns_tui_model *m, int key) {
    int mi = ui->det_mod != INT64_MIN ? ns_tui_model_find_module(m, ui->det_mod) : -1;
    int delta = nav_delta(ui, ui->focus, key);
    if (ui->focus == 1) {
        if (delta) ui->plot_top = clampi(ui->plot_top + (delta > 0 ? 1 : -1), 0, 3);
        return;
    }
    if (mi < 0) return;
    if (delta)
        ui->det_sel = move(ui->det_sel, delta, m->mods[mi].nparams + 1);
    else if (key == NS_KEY_LEFT || key == 'h') {
        if (m->mods[mi].parent >= 0) {
            ui->det_mod = m->mods[m->mods[mi].parent].id;
            ui->det_sel = 0;
        }
    } else if (key == NS_KEY_ENTER) {
        ui->sel_mod = ui->det_mod;
        ui->screen = NS_SCR_MODULES;
        ui->focus = ui->det_sel > 0 ? 1 : 0;
        ui->param_sel = ui->det_sel > 0 ? ui->det_sel - 1 : 0;
    }
}

static void runs_key(ns_tui_ui *ui, ns_tui_model *m, int key) {
    int delta = nav_delta(ui, 0, key);
    if (delta)
        ui->run_sel = move(ui->run_sel, delta, m->nruns);
    else if (key == NS_KEY_ENTER && m->nruns > 0)
        ui->picked_run = m->runs[clampi(ui->run_sel, 0, m->nruns - 1)].id;
}

static void filter_key(ns_tui_ui *ui, int key) {
    size_t len = strlen(ui->filter);
    if (key == NS_KEY_ENTER) {
        ui->editing = 0;
    } else if (key == NS_KEY_ESC) {
        ui->editing = 0;
        snprintf(ui->filter, sizeof ui->filter, "%s", ui->filter_saved);
    } else if (key == NS_KEY_BACKSPACE) {
        if (len > 0) ui->filter[len - 1] = 0;
    } else if (key >= 0x20 && key < 0x7F && len + 1 < sizeof ui->filter) {
        ui->filter[len] = (char)key;
        ui->filter[len + 1] = 0;
    }
}

void ns_tui_ui_key(ns_tui_ui *ui, ns_tui_model *m, int key) {
    rebuild_rows(ui, m);
    if (ui->editing) {
        filter_key(ui, key);
        rebuild_rows(ui, m);
        ui->find_sel = 0;
        return;
    }
    if (ui->help) {
        if (key == 'q') ui->quit = 1;
        ui->help = 0;
        return;
    }
    ui->msg[0] = 0;
    switch (key) {
    case 'q':
        ui->quit = 1;
        return;
    case '?':
        ui->help = 1;
        return;
    case 'p':
        ui->paused = !ui->paused;
        set_msg(ui, ui->paused ? "paused: p resumes" : "resumed");
        return;
    case '/':
        ui->editing = 1;
        snprintf(ui->filter_saved, sizeof ui->filter_saved, "%s", ui->filter);
        return;
    case NS_KEY_TAB:
    case NS_KEY_BTAB:
        if (ui->screen == NS_SCR_FINDINGS && !ui->find_open) ui->find_open = 1;
        if (ui->screen != NS_SCR_RUNS) ui->focus = !ui->focus;
        return;
    case '1':
    case '2':
    case '3':
    case '4':
        if (ui->screen == NS_SCR_RUNS && m->run_id < 0) return;
        ui->screen = key - '0';
        ui->focus = 0;
        if (ui->screen == NS_SCR_DETAIL && ui->det_mod == INT64_MIN) {
            int mi = ns_tui_ui_mod_index(ui, m);
            if (mi >= 0) ns_tui_ui_open_detail(ui, m, mi, -1);
        }
        return;
    case 'r':
        if (m->nruns > 1) {
            ui->screen = NS_SCR_RUNS;
            ui->focus = 0;
        }
        return;
    case NS_KEY_ESC:
        if (ui->filter[0] && !(ui->screen == NS_SCR_FINDINGS && ui->find_open)) {
            ui->filter[0] = 0;
            rebuild_rows(ui, m);
            return;
        }
        break;
    default:
        break;
    }
    switch (ui->screen) {
    case NS_SCR_RUNS:
        runs_key(ui, m, key);
        break;
    case NS_SCR_MODULES:
        modules_key(ui, m, key);
        break;
    case NS_SCR_FINDINGS:
        findings_key(ui, m, key);
        break;
    case NS_SCR_DETAIL:
        detail_key(ui, m, key);
        break;
    case NS_SCR_GPU: {
        int d = nav_delta(ui, ui->focus, key);
        if (d) ui->gpu_top[ui->focus] = clampi(ui->gpu_top[ui->focus] + d, 0, 100000);
        break;
    }
    default:
        break;
    }
}

void ns_tui_ui_click(ns_tui_ui *ui, ns_tui_model *m, int y, int x, int dbl) {
    if (y == ui->tabs_y) {
        for (int s = 1; s < NS_SCR_COUNT_; s++) {
            if (x >= ui->tab_x[s] && x < ui->tab_x[s] + ui->tab_w[s]) {
                ns_tui_ui_key(ui, m, '0' + s);
                return;
            }
        }
        return;
    }
    for (int p = 0; p < 2; p++) {
        ns_tui_pane *pn = &ui->panes[p];
        if (pn->h <= 0 || y < pn->y || y >= pn->y + pn->h || x < pn->x || x >= pn->x + pn->w)
            continue;
        ui->focus = p;
        int item = pn->top + (y - pn->y);
        if (item >= pn->count) return;
        switch (ui->screen) {
        case NS_SCR_RUNS:
            ui->run_sel = item;
            break;
        case NS_SCR_MODULES:
            if (p == 0) {
                rebuild_rows(ui, m);
                if (item < m->nrows) ui->sel_mod = m->mods[m->rows[item].mod].id;
                ui->param_sel = 0;
            } else {
                ui->param_sel = item;
            }
            break;
        case NS_SCR_FINDINGS:
            if (p == 0) ui->find_sel = item;
            break;
        case NS_SCR_DETAIL:
            if (p == 0) ui->det_sel = item;
            break;
        default:
            break;
        }
        if (dbl) ns_tui_ui_key(ui, m, NS_KEY_ENTER);
        return;
    }
}
