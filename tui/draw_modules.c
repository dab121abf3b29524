/* Screen 1, Modules: the module tree (top pane) and the selected module's parameters
 * (bottom pane). See draw.h. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "draw.h"
#include "spark.h"

/* Column widths of the tree for a terminal width. */
typedef struct {
    int name, type, dev, mode, params, spark, gval, ratio, flags;
} cols;

static void columns(int w, cols *c) {
    c->type = 9;
    c->dev = 6;
    c->mode = 5;
    c->params = 6;
    c->spark = w >= 130 ? 16 : w >= 100 ? 12 : 8;
    c->gval = w >= 100 ? 7 : 0;
    c->ratio = 7;
    int fixed = 1 + (c->type + 1) + (c->dev + 1) + (c->mode + 1) + (c->params + 1) +
                (c->spark + 1) + (c->gval ? c->gval + 1 : 0) + (c->ratio + 1);
    int rest = w - fixed;
    c->name = rest * 5 / 8;
    if (c->name > 44) c->name = 44;
    if (c->name < 12) c->name = 12;
    c->flags = rest - c->name - 1;
    if (c->flags < 4) c->flags = 4;
}

/* Marker words for what the modules table and events say (drawn before rule ids). */
static void markers(const ns_tui_mod *d, char *buf, size_t cap) {
    snprintf(buf, cap, "%s%s%s", !d->registered ? "UNREG " : "",
             d->created_in_forward ? "FWD " : "",
             d->nonfinite > 0 || (d->events & NS_EV_NONFINITE) ? "NaN " : "");
}

/* Device of a module: its own (calls, params), else its children's when they agree ("mixed"
 * when they do not), "-" when nothing is known. */
static const char *module_device(const ns_tui_model *m, int mi, int depth) {
    const ns_tui_mod *d = &m->mods[mi];
    if (d->device[0]) return d->device;
    if (depth > 8) return "-";
    const char *dev = NULL;
    for (int c = d->first_child; c >= 0; c = m->mods[c].next_sibling) {
        const char *cd = module_device(m, c, depth + 1);
        if (!strcmp(cd, "-")) continue;
        if (dev && strcmp(dev, cd)) return "mixed";
        dev = cd;
    }
    return dev ? dev : "-";
}

static uint8_t module_attr(const ns_tui_mod *d) {
    if (d->max_sev >= 0) return ns_tui_sev_attr(d->max_sev);
    if (!d->registered || d->created_in_forward) return NS_A_UNREG;
    if (d->nonfinite > 0 || (d->events & NS_EV_NONFINITE)) return NS_A_ERR;
    return NS_A_NORMAL;
}

/* Tree glyphs of a row ("│ ├─" ...) and the fold marker, into buf. */
static void tree_prefix(const ns_tui_model *m, const ns_tui_row *r, int ascii, char *buf,
                        size_t cap) {
    const ns_tui_mod *d = &m->mods[r->mod];
    size_t len = 0;
    buf[0] = 0;
    int depth = r->depth > 24 ? 24 : r->depth;
    for (int l = 1; l < depth; l++) {
        int more = l - 1 < 64 && ((r->more >> (l - 1)) & 1);
        const char *s = more ? (ascii ? "| " : "\u2502 ") : "  ";
        len += (size_t)snprintf(buf + len, cap - len, "%s", s);
        if (len >= cap) return;
    }
    if (depth >= 1) {
        const char *s = r->last ? (ascii ? "`-" : "\u2514\u2500") : (ascii ? "|-" : "\u251c\u2500");
        len += (size_t)snprintf(buf + len, cap - len, "%s", s);
        if (len >= cap) return;
    }
    if (d->first_child >= 0) {
        const char *s = d->collapsed ? (ascii ? ">" : "\u25b8") : (ascii ? "v" : "\u25be");
        snprintf(buf + len, cap - len, "%s ", s);
    } else if (depth == 0) {
        snprintf(buf + len, cap - len, "  ");
    }
}

static void draw_tree(ns_grid *g, ns_tui_model *m, ns_tui_ui *ui, int y, int h, const cols *c) {
    char buf[256], num[32];
    int x = 1;
    /* Column titles. */
    ns_grid_put(g, y, x, c->name, NS_A_DIM, 1, "module");
    x += c->name + 1;
    ns_grid_put(g, y, x, c->type, NS_A_DIM, 1, "type");
    x += c->type + 1;
    ns_grid_put(g, y, x, c->dev, NS_A_DIM, 1, "device");
    x += c->dev + 1;
    ns_grid_put(g, y, x, c->mode, NS_A_DIM, 1, "mode");
    x += c->mode + 1;
    ns_grid_put_right(g, y, x + c->params, NS_A_DIM, "params");
    x += c->params + 1;
    ns_grid_put(g, y, x, c->spark, NS_A_DIM, 1, c->spark >= 9 ? "grad norm" : "grad");
    x += c->spark + 1;
    if (c->gval) {
        ns_grid_put_right(g, y, x + c->gval, NS_A_DIM, "grad");
        x += c->gval + 1;
    }
    ns_grid_put_right(g, y, x + c->ratio, NS_A_DIM, "upd/w");
    x += c->ratio + 1;
    ns_grid_put(g, y, x, c->flags, NS_A_DIM, 1, "flags");
    if (m->mods_dropped) {
        char more[64];
        snprintf(more, sizeof more, " +%lld modules not kept ", (long long)m->mods_dropped);
        ns_grid_put_right(g, y, g->w, NS_A_WARN, more);
    }

    int lh = h - 1, sel = ns_tui_ui_mod_row(ui, m);
    ui->mod_top = ns_tui_scroll(ui->mod_top, sel < 0 ? 0 : sel, m->nrows, lh);
    ui->panes[0] = (ns_tui_pane){y + 1, 0, lh, g->w, ui->mod_top, m->nrows};
    if (m->nrows == 0) {
        ns_grid_put(g, y + 1, 2, -1, NS_A_DIM, 1,
                    ui->filter[0] ? "no module matches the filter (Esc clears it)"
                                  : "no modules recorded yet");
        return;
    }
    for (int i = 0; i < lh && ui->mod_top + i < m->nrows; i++) {
        int ri = ui->mod_top + i, yy = y + 1 + i;
        const ns_tui_row *r = &m->rows[ri];
        const ns_tui_mod *d = &m->mods[r->mod];
        uint8_t attr = module_attr(d);
        x = 1;
        tree_prefix(m, r, g->ascii, buf, sizeof buf);
        int px = ns_grid_put(g, yy, x, c->name, NS_A_DIM, 0, buf);
        ns_grid_put(g, yy, x + px, c->name - px, attr, 1, d->name);
        x += c->name + 1;
        ns_grid_put(g, yy, x, c->type, attr == NS_A_NORMAL ? NS_A_NORMAL : attr, 1, d->type);
        x += c->type + 1;
        ns_grid_put(g, yy, x, c->dev, NS_A_NORMAL, 1, module_device(m, r->mod, 0));
        x += c->dev + 1;
        int mode = d->mode >= 0 ? d->mode : d->mode_any;
        ns_grid_put(g, yy, x, c->mode, mode == 0 ? NS_A_WARN : NS_A_NORMAL, 1,
                    mode < 0 ? "-"
                    : mode   ? "train"
                             : "eval");
        x += c->mode + 1;
        ns_grid_put_right(g, yy, x + c->params, NS_A_NORMAL,
                          d->tree_params ? ns_tui_fmt_count(num, sizeof num, d->tree_params) : "-");
        x += c->params + 1;
        double v[64];
        int n = ns_ring_tail(&d->grad, c->spark < 64 ? c->spark : 64, v);
        ns_spark_draw(g, yy, x, c->spark, v, n, NS_A_PLOT);
        x += c->spark + 1;
        if (c->gval) {
            ns_grid_put_right(g, yy, x + c->gval, NS_A_NORMAL,
                              ns_tui_fmt_num(num, sizeof num, ns_ring_last(&d->grad)));
            x += c->gval + 1;
        }
        double ratio = ns_ring_last(&d->ratio);
        if (isnan(ratio))
            snprintf(num, sizeof num, "-");
        else
            snprintf(num, sizeof num, "%.1e", ratio);
        ns_grid_put_right(g, yy, x + c->ratio, ratio == 0 ? NS_A_WARN : NS_A_NORMAL, num);
        x += c->ratio + 1;
        markers(d, buf, sizeof buf);
        int fx =
            ns_grid_put(g, yy, x, c->flags,
                        d->registered && !d->created_in_forward ? NS_A_ERR : NS_A_UNREG, 1, buf);
        ns_grid_put(g, yy, x + fx, c->flags - fx,
                    d->max_sev >= 0 ? ns_tui_sev_attr(d->max_sev) : NS_A_NORMAL, 1, d->flags);
        if (ri == sel) ns_tui_mark_selected(g, yy, 0, g->w, ui->focus == 0);
    }
}

static const char *param_state(const ns_tui_param *p, uint8_t *attr) {
    *attr = NS_A_NORMAL;
    if (p->is_buffer) return "buffer";
    if (!p->requires_grad) return "frozen";
    if (!p->in_optimizer) {
        *attr = NS_A_WARN;
        return "NOT IN OPT";
    }
    return "opt";
}

static void draw_params(ns_grid *g, ns_tui_model *m, ns_tui_ui *ui, int y, int h, int mi) {
    char buf[NS_TUI_FLAGS_LEN + 8], num[32];
    const ns_tui_mod *d = &m->mods[mi];
    /* Title rule: the module and its repr. */
    ns_grid_fill(g, y, 0, g->w, g->ascii ? '-' : 0x2500, NS_A_DIM);
    int x = 1 + ns_grid_printf(g, y, 1, -1, NS_A_BOLD, " %s ", d->path[0] ? d->path : "(model)");
    if (d->describe)
        x += ns_grid_printf(g, y, x, g->w - x - 1, NS_A_DIM, "%s ", d->describe);
    else
        x += ns_grid_printf(g, y, x, g->w - x - 1, NS_A_DIM, "%s ", d->type);
    if (!d->registered || d->created_in_forward)
        ns_grid_printf(g, y, x, g->w - x - 1, NS_A_UNREG, " %s%s",
                       !d->registered ? "not registered in the model " : "",
                       d->created_in_forward ? "created inside a forward " : "");
    int lh = h - 2;
    if (lh <= 0) return;
    int nw = g->w >= 100 ? 26 : 16, sw = g->w >= 100 ? 12 : 8;
    x = 1;
    ns_grid_put(g, y + 1, x, nw, NS_A_DIM, 1, "parameter");
    x += nw + 1;
    ns_grid_put(g, y + 1, x, 10, NS_A_DIM, 1, "shape");
    x += 11;
    ns_grid_put_right(g, y + 1, x + 6, NS_A_DIM, "numel");
    x += 7;
    ns_grid_put(g, y + 1, x, sw, NS_A_DIM, 1, sw >= 9 ? "grad norm" : "grad");
    x += sw + 1;
    ns_grid_put_right(g, y + 1, x + 8, NS_A_DIM, "grad");
    x += 9;
    ns_grid_put_right(g, y + 1, x + 7, NS_A_DIM, "upd/w");
    x += 8;
    ns_grid_put(g, y + 1, x, 10, NS_A_DIM, 1, "state");
    x += 11;
    ns_grid_put(g, y + 1, x, -1, NS_A_DIM, 1, "flags");
    if (ui->param_sel >= d->nparams) ui->param_sel = d->nparams > 0 ? d->nparams - 1 : 0;
    ui->param_top = ns_tui_scroll(ui->param_top, ui->param_sel, d->nparams, lh);
    ui->panes[1] = (ns_tui_pane){y + 2, 0, lh, g->w, ui->param_top, d->nparams};
    if (d->nparams == 0) {
        ns_grid_put(g, y + 2, 2, -1, NS_A_DIM, 1,
                    d->tree_params ? "no parameters of its own (its children hold them)"
                                   : "no parameters");
        return;
    }
    size_t plen = strlen(d->path);
    for (int i = 0; i < lh && ui->param_top + i < d->nparams; i++) {
        int pi = m->mod_params[d->first_param + ui->param_top + i], yy = y + 2 + i;
        const ns_tui_param *p = &m->params[pi];
        const char *name = p->name;
        if (plen && !strncmp(name, d->path, plen) && name[plen] == '.') name += plen + 1;
        uint8_t attr = p->max_sev >= 0 ? ns_tui_sev_attr(p->max_sev) : NS_A_NORMAL, sattr;
        x = 1;
        ns_grid_put(g, yy, x, nw, attr, 1, name);
        x += nw + 1;
        ns_grid_put(g, yy, x, 10, NS_A_NORMAL, 1, p->shape);
        x += 11;
        ns_grid_put_right(g, yy, x + 6, NS_A_NORMAL, ns_tui_fmt_count(num, sizeof num, p->numel));
        x += 7;
        double v[64];
        int n = ns_ring_tail(&p->grad, sw, v);
        ns_spark_draw(g, yy, x, sw, v, n, NS_A_PLOT);
        x += sw + 1;
        ns_grid_put_right(g, yy, x + 8, NS_A_NORMAL, ns_tui_fmt_num(num, sizeof num, p->last_grad));
        x += 9;
        if (isnan(p->last_ratio))
            snprintf(num, sizeof num, "-");
        else
            snprintf(num, sizeof num, "%.1e", p->last_ratio);
        ns_grid_put_right(g, yy, x + 7, NS_A_NORMAL, num);
        x += 8;
        const char *st = param_state(p, &sattr);
        ns_grid_put(g, yy, x, 10, sattr, 1, st);
        x += 11;
        snprintf(buf, sizeof buf, "%s%s", p->last_nonfinite > 0 ? "NaN " : "", p->flags);
        ns_grid_put(g, yy, x, g->w - x, attr == NS_A_NORMAL ? NS_A_ERR : attr, 1, buf);
        if (ui->param_top + i == ui->param_sel)
            ns_tui_mark_selected(g, yy, 0, g->w, ui->focus == 1);
    }
}

void ns_tui_draw_modules(ns_grid *g, ns_tui_model *m, ns_tui_ui *ui, int y, int h) {
    cols c;
    columns(g->w, &c);
    ns_tui_model_build_rows(m, ui->sort, ui->filter);
    int mi = ns_tui_ui_mod_index(ui, m);
    int np = mi >= 0 ? m->mods[mi].nparams : 0;
    int maxp = h / 3 > 2 ? h / 3 : 2;
    int ph = (np < 2 ? 2 : np > maxp ? maxp : np) + 2; /* rule + titles + rows */
    if (mi < 0) ph = 0;
    draw_tree(g, m, ui, y, h - ph, &c);
    if (mi >= 0) draw_params(g, m, ui, y + h - ph, ph, mi);
    if (mi < 0 && ui->focus == 1) ui->focus = 0;
}
