/* Screen 3, Detail (history plots of a module or parameter) and screen 4, GPU kernels.
 * See draw.h. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "draw.h"
#include "fetch.h"
#include "spark.h"

static void draw_targets(ns_grid *g, ns_tui_model *m, ns_tui_ui *ui, int y, int h, int w, int mi) {
    const ns_tui_mod *d = &m->mods[mi];
    int n = d->nparams + 1;
    ns_grid_put(g, y, 1, w - 1, NS_A_DIM, 1, "module / parameter");
    if (ui->det_sel >= n) ui->det_sel = n - 1;
    ui->det_top = ns_tui_scroll(ui->det_top, ui->det_sel, n, h - 1);
    ui->panes[0] = (ns_tui_pane){y + 1, 0, h - 1, w, ui->det_top, n};
    size_t plen = strlen(d->path);
    for (int i = 0; i < h - 1 && ui->det_top + i < n; i++) {
        int item = ui->det_top + i, yy = y + 1 + i;
        if (item == 0) {
            ns_grid_put(g, yy, 1, w - 1, NS_A_BOLD, 1, d->path[0] ? d->path : "(model)");
        } else {
            const ns_tui_param *p = &m->params[m->mod_params[d->first_param + item - 1]];
            const char *name = p->name;
            if (plen && !strncmp(name, d->path, plen) && name[plen] == '.') name += plen + 1;
            ns_grid_printf(g, yy, 1, w - 1,
                           p->max_sev >= 0 ? ns_tui_sev_attr(p->max_sev) : NS_A_NORMAL, "  %s%s",
                           name, p->is_buffer ? " (buffer)" : "");
        }
        if (item == ui->det_sel) ns_tui_mark_selected(g, yy, 0, w, ui->focus == 0);
    }
}

/* One labelled plot of a ring: label row, then h rows of plot with the axis range left. */
static void draw_plot(ns_grid *g, int y, int x, int h, int w, const char *label, const ns_ring *r,
                      const char *empty) {
    char a[32], b[32], c[32];
    int n = ns_ring_len(r);
    int lx = x + ns_grid_put(g, y, x, -1, NS_A_BOLD, 0, label);
    if (n == 0) {
        ns_grid_put(g, y, lx + 2, w - (lx - x) - 2, NS_A_DIM, 1, empty);
        return;
    }
    int axis = 9, pw = w - axis;
    if (pw < 4 || h < 1) return;
    double v[512];
    int64_t xs[512];
    int want = pw * (g->ascii ? 1 : 2);
    if (want > 512) want = 512;
    int k = ns_ring_resample(r, want, v, xs);
    double lo, hi;
    int logscale = 0;
    int none = ns_plot_draw(g, y + 1, x + axis, h, pw, v, k, NS_A_PLOT, &lo, &hi, &logscale);
    int64_t first_x, last_x;
    ns_ring_get(r, 0, &first_x, NULL);
    ns_ring_get(r, n - 1, &last_x, NULL);
    ns_grid_printf(g, y, lx, w - (lx - x), NS_A_DIM, "  last %s  steps %lld-%lld%s",
                   ns_tui_fmt_num(c, sizeof c, ns_ring_last(r)), (long long)first_x,
                   (long long)last_x, logscale ? "  log scale" : "");
    if (none) {
        ns_grid_put(g, y + 1, x + axis, pw, NS_A_DIM, 1, "no finite values");
        return;
    }
    ns_grid_put_right(g, y + 1, x + axis - 1, NS_A_DIM,
                      ns_tui_fmt_num(a, sizeof a, logscale ? pow(10, hi) : hi));
    if (h > 1)
        ns_grid_put_right(g, y + h, x + axis - 1, NS_A_DIM,
                          ns_tui_fmt_num(b, sizeof b, logscale ? pow(10, lo) : lo));
}

static void draw_events(ns_grid *g, const ns_tui_model *m, int64_t module_id, int y, int x, int h,
                        int w) {
    int shown = 0;
    for (int i = 0; i < m->nevents && shown < h - 1; i++) {
        const ns_tui_event *e = ns_tui_model_event(m, i);
        if (e->module_id != module_id) continue;
        if (shown == 0) ns_grid_put(g, y, x, w, NS_A_BOLD, 1, "events");
        ns_grid_printf(g, y + 1 + shown, x, w, !strcmp(e->kind, "note") ? NS_A_DIM : NS_A_WARN,
                       "step %lld  %s  %s", (long long)e->step, e->kind, e->detail);
        shown++;
    }
}

void ns_tui_draw_detail(ns_grid *g, ns_tui_model *m, ns_tui_ui *ui, int y, int h) {
    int mi = ui->det_mod != INT64_MIN ? ns_tui_model_find_module(m, ui->det_mod) : -1;
    if (mi < 0) {
        int sel = ns_tui_ui_mod_index(ui, m);
        if (sel >= 0) ns_tui_ui_open_detail(ui, m, sel, -1);
        mi = sel;
    }
    if (mi < 0) {
        ns_grid_put(g, y + 1, 2, -1, NS_A_DIM, 1, "no modules recorded yet");
        return;
    }
    const ns_tui_mod *d = &m->mods[mi];
    int lw = g->w >= 100 ? 30 : 22;
    draw_targets(g, m, ui, y, h, lw, mi);
    for (int i = 0; i < h; i++) ns_grid_set(g, y + i, lw, g->ascii ? '|' : 0x2502, NS_A_DIM);
    int x = lw + 2, w = g->w - x - 1;
    int64_t id;
    ns_tui_detail_kind kind = ns_tui_ui_detail_target(ui, m, &id);
    const ns_tui_detail *det = &m->det;
    char title[256];
    const ns_tui_param *p = NULL;
    if (kind == NS_DETAIL_PARAM) {
        int pi = ns_tui_model_find_param(m, id);
        p = pi >= 0 ? &m->params[pi] : NULL;
    }
    if (p) {
        snprintf(title, sizeof title, "%s  %s  %s  %s%s", p->name, p->shape,
                 p->device[0] ? p->device : "",
                 p->is_buffer        ? "buffer"
                 : !p->requires_grad ? "frozen"
                 : p->in_optimizer   ? "in optimizer"
                                     : "NOT in the optimizer",
                 p->flags[0] ? "  " : "");
        int tx = x + ns_grid_put(g, y, x, w, NS_A_BOLD, 1, title);
        ns_grid_put(g, y, tx, w - (tx - x), ns_tui_sev_attr(p->max_sev), 1, p->flags);
    } else {
        snprintf(title, sizeof title, "%s  %s  %s", d->path[0] ? d->path : "(model)", d->type,
                 d->device[0] ? d->device : "");
        int tx = x + ns_grid_put(g, y, x, w, NS_A_BOLD, 1, title);
        if (d->flags[0])
            ns_grid_printf(g, y, tx, w - (tx - x), ns_tui_sev_attr(d->max_sev), "  %s", d->flags);
    }
    const char *noparam = det->nsources == 0 && kind == NS_DETAIL_MODULE
                              ? "no parameters of its own: pick a child or a parameter"
                              : "no data yet";
    struct {
        const char *label;
        const ns_ring *r;
        const char *empty;
    } plots[4] = {
        {"gradient norm", &det->grad, noparam},
        {"update/weight ratio", &det->ratio, noparam},
        {"weight norm", &det->wnorm, noparam},
        {p ? "activation zero fraction (module)" : "activation zero fraction", &det->zero,
         "no sampled outputs"},
    };
    int avail = h - 1;
    int nev = 0;
    for (int i = 0; i < m->nevents; i++) nev += ns_tui_model_event(m, i)->module_id == d->id;
    int evh = nev && avail >= 20 ? (nev + 1 < 5 ? nev + 1 : 5) : 0;
    avail -= evh;
    int per = avail / 4, first = 0, count = 4;
    if (per < 3) {
        /* Too short for four plots: show what fits, starting at plot_top (Tab, j/k). */
        count = avail / 3 > 0 ? avail / 3 : 1;
        per = avail / count;
        first = ui->plot_top > 4 - count ? 4 - count : ui->plot_top;
    }
    ui->panes[1] = (ns_tui_pane){y + 1, x, avail, w, first, 4};
    for (int i = 0; i < count; i++) {
        int py = y + 1 + i * per;
        draw_plot(g, py, x, per - 1, w, plots[first + i].label, plots[first + i].r,
                  plots[first + i].empty);
    }
    if (evh) draw_events(g, m, d->id, y + 1 + avail, x, evh, w);
}

/* ------------------------------------------------------------------ GPU kernels */

static const char *kmod_name(const ns_tui_model *m, int64_t module_id) {
    if (module_id < 0) return "(optimizer/other)";
    int mi = ns_tui_model_find_module(m, module_id);
    if (mi < 0) return "(unknown module)";
    return m->mods[mi].path[0] ? m->mods[mi].path : "(model)";
}

void ns_tui_draw_gpu(ns_grid *g, ns_tui_model *m, ns_tui_ui *ui, const ns_tui_frame *f, int y,
                     int h) {
    const ns_tui_run *r = ns_tui_model_run(m);
    char a[32], b[32], c[32], d[32], e[32];
    if (m->kernel_rows == 0) {
        if (!f->kernels_done) {
            ns_grid_put(g, y + 1, 2, -1, NS_A_DIM, 1, "reading GPU timings...");
            return;
        }
        ns_grid_put(g, y + 1, 2, -1, NS_A_BOLD, 1, "No GPU timings were recorded for this run.");
        ns_grid_printf(g, y + 3, 2, -1, NS_A_DIM, "CUPTI: %s",
                       r && r->cupti_status ? r->cupti_status : "not recorded");
        ns_grid_put(g, y + 4, 2, -1, NS_A_DIM, 1,
                    "Kernel timings come from CUPTI in CUDA builds (see the cupti build option).");
        return;
    }
    double total_ms = (double)m->kernel_ns / 1e6;
    int th = h / 2, nw = g->w - 44;
    if (nw < 16) nw = 16;
    ns_grid_printf(g, y, 1, -1, NS_A_BOLD, "Top kernels by GPU time  (%s ms in %lld rows%s)",
                   ns_tui_fmt_num(a, sizeof a, total_ms), (long long)m->kernel_rows,
                   f->kernels_done ? "" : ", reading...");
    ns_grid_printf(g, y + 1, 1, -1, NS_A_DIM, "%-*.*s %9s %11s %10s %6s", nw, nw, "kernel",
                   "launches", "total ms", "avg us", "share");
    int lh = th - 2;
    if (ui->gpu_top[0] > m->nkernels - lh) ui->gpu_top[0] = m->nkernels - lh;
    if (ui->gpu_top[0] < 0) ui->gpu_top[0] = 0;
    ui->panes[0] = (ns_tui_pane){y + 2, 0, lh, g->w, ui->gpu_top[0], m->nkernels};
    for (int i = 0; i < lh && ui->gpu_top[0] + i < m->nkernels; i++) {
        const ns_tui_kernel *k = &m->kernels[ui->gpu_top[0] + i];
        int yy = y + 2 + i;
        ns_grid_put(g, yy, 1, nw, NS_A_NORMAL, 1, k->name ? k->name : "?");
        ns_grid_printf(g, yy, 2 + nw, -1, NS_A_NORMAL, "%9lld %11s %10s %5.1f%%",
                       (long long)k->launches,
                       ns_tui_fmt_num(a, sizeof a, (double)k->total_ns / 1e6),
                       ns_tui_fmt_num(b, sizeof b, (double)k->total_ns / 1e3 / (double)k->launches),
                       m->kernel_ns ? 100.0 * (double)k->total_ns / (double)m->kernel_ns : 0.0);
    }
    int y2 = y + th, h2 = h - th;
    int mw = g->w - 56;
    if (mw < 14) mw = 14;
    ns_grid_put(g, y2, 1, -1, NS_A_BOLD, 1, "GPU time by module and phase (ms)");
    if (m->memcpy_count)
        ns_grid_printf(g, y2, 36, -1, NS_A_DIM, "  memcpy: %lld copies, %s bytes",
                       (long long)m->memcpy_count, ns_tui_fmt_count(a, sizeof a, m->memcpy_bytes));
    ns_grid_printf(g, y2 + 1, 1, -1, NS_A_DIM, "%-*.*s %10s %10s %10s %10s %10s", mw, mw, "module",
                   "forward", "backward", "optimizer", "other", "total");
    int lh2 = h2 - 2;
    if (ui->gpu_top[1] > m->nkmods - lh2) ui->gpu_top[1] = m->nkmods - lh2;
    if (ui->gpu_top[1] < 0) ui->gpu_top[1] = 0;
    ui->panes[1] = (ns_tui_pane){y2 + 2, 0, lh2, g->w, ui->gpu_top[1], m->nkmods};
    for (int i = 0; i < lh2 && ui->gpu_top[1] + i < m->nkmods; i++) {
        const ns_tui_kmod *k = &m->kmods[ui->gpu_top[1] + i];
        int yy = y2 + 2 + i;
        int64_t t = 0;
        for (int p = 0; p < NS_KPH_COUNT; p++) t += k->ns[p];
        ns_grid_put(g, yy, 1, mw, NS_A_NORMAL, 1, kmod_name(m, k->module_id));
        ns_grid_printf(g, yy, 2 + mw, -1, NS_A_NORMAL, "%10s %10s %10s %10s %10s",
                       ns_tui_fmt_num(a, sizeof a, (double)k->ns[NS_KPH_FORWARD] / 1e6),
                       ns_tui_fmt_num(b, sizeof b, (double)k->ns[NS_KPH_BACKWARD] / 1e6),
                       ns_tui_fmt_num(c, sizeof c, (double)k->ns[NS_KPH_OPTIMIZER] / 1e6),
                       ns_tui_fmt_num(d, sizeof d, (double)k->ns[NS_KPH_OTHER] / 1e6),
                       ns_tui_fmt_num(e, sizeof e, (double)t / 1e6));
    }
}
