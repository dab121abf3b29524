/* The frame around the screens: header, tabs, status bar, help, waiting and runs picker.
 * See draw.h. */
#include "draw.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "fetch.h"
#include "spark.h"

#define HEADER_ROWS 4 /* three header lines and the tab bar */

char *ns_tui_fmt_num(char *buf, size_t cap, double v) {
    double a = fabs(v);
    if (isnan(v))
        snprintf(buf, cap, "-");
    else if (isinf(v))
        snprintf(buf, cap, v > 0 ? "inf" : "-inf");
    else if (v == 0)
        snprintf(buf, cap, "0");
    else if (a < 1e-3 || a >= 1e5)
        snprintf(buf, cap, "%.1e", v);
    else if (a < 1)
        snprintf(buf, cap, "%.4f", v);
    else if (a < 100)
        snprintf(buf, cap, "%.3f", v);
    else
        snprintf(buf, cap, "%.1f", v);
    return buf;
}

char *ns_tui_fmt_count(char *buf, size_t cap, int64_t n) {
    double a = (double)n;
    if (n < 1000)
        snprintf(buf, cap, "%lld", (long long)n);
    else if (a < 999950)
        snprintf(buf, cap, "%.1fK", a / 1e3);
    else if (a < 999950000)
        snprintf(buf, cap, "%.1fM", a / 1e6);
    else
        snprintf(buf, cap, "%.1fG", a / 1e9);
    return buf;
}

char *ns_tui_fmt_age(char *buf, size_t cap, double s) {
    if (isnan(s))
        snprintf(buf, cap, "-");
    else if (s < 0)
        snprintf(buf, cap, "0s");
    else if (s < 10)
        snprintf(buf, cap, "%.1fs", s);
    else if (s < 60)
        snprintf(buf, cap, "%.0fs", s);
    else if (s < 3600)
        snprintf(buf, cap, "%dm%02ds", (int)(s / 60), (int)fmod(s, 60));
    else if (s < 86400 * 2)
        snprintf(buf, cap, "%dh%02dm", (int)(s / 3600), (int)fmod(s / 60, 60));
    else
        snprintf(buf, cap, "%dd", (int)(s / 86400));
    return buf;
}

uint8_t ns_tui_sev_attr(int sev) {
    return sev == NS_SEV_ERROR ? NS_A_ERR : sev == NS_SEV_WARNING ? NS_A_WARN : NS_A_INFO;
}

const char *ns_tui_sev_label(int sev) {
    return sev == NS_SEV_ERROR ? "ERROR" : sev == NS_SEV_WARNING ? "WARNING" : "INFO";
}

int ns_tui_scroll(int top, int sel, int count, int h) {
    if (h <= 0) return 0;
    if (sel < top) top = sel;
    if (sel >= top + h) top = sel - h + 1;
    if (top > count - h) top = count - h;
    if (top < 0) top = 0;
    return top;
}

void ns_tui_mark_selected(ns_grid *g, int y, int x, int w, int focused) {
    ns_grid_set(g, y, x, '>', NS_A_BOLD);
    for (int i = 0; i < w; i++) {
        if (x + i >= g->w || y >= g->h || y < 0) break;
        ns_cell *c = ns_grid_at(g, y, x + i);
        if (focused)
            c->attr |= NS_A_REV;
        else if ((c->attr & 0x7F) == NS_A_NORMAL)
            c->attr = NS_A_BOLD;
    }
}

int ns_tui_draw_wrapped(ns_grid *g, int y, int x, int w, int h, int skip, uint8_t attr,
                        const char *text) {
    if (w <= 0 || !text) return 0;
    int line = 0;
    const char *p = text;
    char buf[1024];
    while (*p) {
        /* One wrapped line: up to w columns, broken at the last space when possible. */
        const char *start = p, *brk = NULL, *q = p;
        int cols = 0;
        while (*q && *q != '\n' && cols < w) {
            if (*q == ' ') brk = q;
            ns_utf8_next(&q);
            cols++;
        }
        const char *end = q;
        if (*q && *q != '\n' && cols == w && brk && brk > start) end = brk;
        size_t n = (size_t)(end - start);
        if (n >= sizeof buf) n = sizeof buf - 1;
        memcpy(buf, start, n);
        buf[n] = 0;
        if (line >= skip && line - skip < h) ns_grid_put(g, y + line - skip, x, w, attr, 0, buf);
        line++;
        p = end;
        if (*p == '\n' || *p == ' ') p++;
    }
    return line;
}

/* ------------------------------------------------------------------ header */

static uint8_t status_attr(const char *st) {
    if (!strcmp(st, "running")) return NS_A_OK;
    if (!strcmp(st, "finished")) return NS_A_INFO;
    if (!strcmp(st, "failed")) return NS_A_ERR;
    return NS_A_WARN; /* interrupted, stale */
}

static void draw_header(ns_grid *g, ns_tui_model *m, ns_tui_ui *ui, const ns_tui_frame *f) {
    const ns_tui_run *r = ns_tui_model_run(m);
    char a[64], b[64];
    int w = g->w, x;
    /* Line 0: what is shown. */
    ns_grid_fill(g, 0, 0, w, ' ', NS_A_TITLE);
    x = ns_grid_printf(g, 0, 0, w, NS_A_TITLE, " nnscope  %s", f->path);
    if (r) {
        x += ns_grid_printf(g, 0, x, w - x, NS_A_TITLE, "  run %lld%s", (long long)r->id,
                            m->nruns > 1 ? (snprintf(a, sizeof a, " of %d", m->nruns), a) : "");
        if (r->command && r->command[0])
            ns_grid_printf(g, 0, x, w - x, NS_A_TITLE, "  $ %s", r->command);
    }
    if (!r) return;
    /* Line 1: status, progress, speed, age, device. */
    const char *st = ns_tui_model_status(m, f->now, f->stale_after);
    snprintf(a, sizeof a, " %s ", st);
    x = 1 + ns_grid_put(g, 1, 1, -1, (uint8_t)(status_attr(st) | NS_A_REV), 0, a) + 1;
    if (!strcmp(st, "stale")) {
        x += ns_grid_put(g, 1, x, -1, NS_A_WARN, 0, "(running, no heartbeat) ");
    } else if (r->status_detail && r->status_detail[0] && strcmp(st, "running")) {
        x += ns_grid_printf(g, 1, x, 40, NS_A_DIM, "%s ", r->status_detail);
    }
    x += ns_grid_printf(g, 1, x, -1, NS_A_BOLD, "step %lld",
                        (long long)(m->last_step >= 0 ? m->last_step : 0));
    if (m->epoch >= 0)
        x += ns_grid_printf(g, 1, x, -1, NS_A_NORMAL, "  epoch %lld", (long long)m->epoch);
    double sps = ns_tui_model_steps_per_sec(m);
    if (!isnan(sps)) x += ns_grid_printf(g, 1, x, -1, NS_A_NORMAL, "  %.1f steps/s", sps);
    if (!isnan(m->last_wall)) {
        if (!strcmp(st, "running") || !strcmp(st, "stale"))
            x += ns_grid_printf(g, 1, x, -1, NS_A_NORMAL, "  last step %s ago",
                                ns_tui_fmt_age(a, sizeof a, f->now - m->last_wall));
        else if (!isnan(r->ended_at))
            x += ns_grid_printf(g, 1, x, -1, NS_A_NORMAL, "  ended %s ago",
                                ns_tui_fmt_age(a, sizeof a, f->now - r->ended_at));
    }
    if (r->devices && r->devices[0]) x += ns_grid_printf(g, 1, x, -1, NS_A_DIM, "  %s", r->devices);
    if (ui->paused) ns_grid_put_right(g, 1, w - 1, NS_A_WARN | NS_A_REV, " PAUSED ");
    /* Line 2: loss sparkline, findings by severity. */
    char fnd[128];
    uint8_t fattr = NS_A_NORMAL;
    if (m->rules_state == 0)
        snprintf(fnd, sizeof fnd, "findings: %s",
                 f->rules_busy ? "checking..." : "not checked yet");
    else if (m->rules_state < 0) {
        snprintf(fnd, sizeof fnd, "findings: rules failed (see 2)");
        fattr = NS_A_ERR;
    } else
        snprintf(fnd, sizeof fnd, "findings: %zu error%s  %zu warning%s  %zu info",
                 m->sev_count[NS_SEV_ERROR], m->sev_count[NS_SEV_ERROR] == 1 ? "" : "s",
                 m->sev_count[NS_SEV_WARNING], m->sev_count[NS_SEV_WARNING] == 1 ? "" : "s",
                 m->sev_count[NS_SEV_INFO]);
    int fx = w - 1 - ns_utf8_width(fnd);
    x = 1 + ns_grid_printf(g, 2, 1, -1, NS_A_NORMAL, "loss %s",
                           ns_tui_fmt_num(b, sizeof b, m->last_loss));
    if (!isnan(m->last_eval_loss) && fx - x > 30)
        x += ns_grid_printf(g, 2, x, -1, NS_A_DIM, " (eval %s)",
                            ns_tui_fmt_num(b, sizeof b, m->last_eval_loss));
    int sw = fx - x - 3;
    if (sw > 40) sw = 40;
    if (sw >= 4) {
        double v[64];
        int n = ns_ring_resample(&m->loss, sw < 64 ? sw : 64, v, NULL);
        ns_spark_draw(g, 2, x + 1, n, v, n, NS_A_PLOT);
    }
    if (fx > x) {
        int fx0 = ns_grid_put(g, 2, fx, -1, fattr, 0, "findings: ");
        if (m->rules_state == 1) {
            int cx = fx + fx0;
            for (int s = NS_SEV_ERROR; s >= NS_SEV_INFO; s--) {
                char part[48];
                size_t c = m->sev_count[s];
                snprintf(part, sizeof part, "%zu %s%s", c,
                         s == NS_SEV_ERROR     ? "error"
                         : s == NS_SEV_WARNING ? "warning"
                                               : "info",
                         c == 1 || s == NS_SEV_INFO ? "" : "s");
                cx += ns_grid_put(g, 2, cx, -1, c ? ns_tui_sev_attr(s) : NS_A_DIM, 0, part);
                if (s > NS_SEV_INFO) cx += ns_grid_put(g, 2, cx, -1, NS_A_NORMAL, 0, "  ");
            }
        } else {
            ns_grid_put(g, 2, fx + fx0, -1, fattr, 0, fnd + strlen("findings: "));
        }
    }
}

static void draw_tabs(ns_grid *g, ns_tui_model *m, ns_tui_ui *ui) {
    static const char *names[NS_SCR_COUNT_] = {"Runs", "Modules", "Findings", "Detail", "GPU"};
    int y = HEADER_ROWS - 1, x = 0;
    ns_grid_fill(g, y, 0, g->w, ' ', NS_A_TAB);
    ui->tabs_y = y;
    for (int s = 1; s < NS_SCR_COUNT_; s++) {
        char label[48];
        if (s == NS_SCR_FINDINGS && m->nfind)
            snprintf(label, sizeof label, " %d %s (%zu) ", s, names[s], m->nfind);
        else
            snprintf(label, sizeof label, " %d %s ", s, names[s]);
        uint8_t a = s == ui->screen ? NS_A_TABSEL : NS_A_TAB;
        ui->tab_x[s] = x;
        ui->tab_w[s] = ns_grid_put(g, y, x, -1, a, 0, label);
        x += ui->tab_w[s] + 1;
    }
    char right[128] = "";
    if (ui->screen == NS_SCR_MODULES)
        snprintf(right, sizeof right, "sort %s%s%s ", ns_tui_sort_name(ui->sort),
                 ui->filter[0] ? "  filter " : "", ui->filter);
    else if (ui->filter[0])
        snprintf(right, sizeof right, "filter %s ", ui->filter);
    if (right[0] && g->w - x > ns_utf8_width(right)) ns_grid_put_right(g, y, g->w, NS_A_TAB, right);
}

static void draw_status(ns_grid *g, ns_tui_ui *ui) {
    int y = g->h - 1;
    ns_grid_fill(g, y, 0, g->w, ' ', NS_A_STATUS);
    if (ui->editing) {
        int x = ns_grid_printf(g, y, 0, -1, NS_A_STATUS, " filter: %s", ui->filter);
        ns_grid_set(g, y, x, '_', NS_A_STATUS | NS_A_REV);
        ns_grid_put_right(g, y, g->w, NS_A_STATUS, "Enter keep  Esc cancel ");
        return;
    }
    if (ui->msg[0]) {
        ns_grid_printf(g, y, 0, -1, NS_A_STATUS, " %s", ui->msg);
        return;
    }
    static const char *hints[NS_SCR_COUNT_] = {
        " Enter pick run  j/k move  q quit  ? help",
        " q quit  ? help  Tab pane  Enter detail  +/- fold  / filter  s sort  p pause",
        " q quit  ? help  Enter explain  Tab pane  m module  / filter  p pause",
        " q quit  ? help  j/k target  h parent  Enter back  Tab plots  p pause",
        " q quit  ? help  Tab pane  j/k scroll  p pause"};
    ns_grid_put(g, y, 0, -1, NS_A_STATUS, 1, hints[ui->screen]);
}

static void draw_help(ns_grid *g) {
    static const char *lines[] = {
        "Keys",
        "",
        "1 2 3 4      Modules, Findings, Detail, GPU kernels",
        "r            runs picker (when the file holds several runs)",
        "Up/Down j/k  move          PgUp/PgDn  page    g/G  top/end",
        "Enter        open (module/param detail, finding explanation)",
        "Tab          switch pane   Left/Right h/l  fold/unfold tree",
        "/            filter (Esc clears)      s  sort modules",
        "p            pause live updates       q  quit",
        "",
        "Flags: UNREG not registered in the model, FWD created inside a",
        "forward, NaN non-finite values; then the ids of firing rules.",
        "Mouse: click selects, double click opens, wheel scrolls.",
        "",
        "any key closes this help",
    };
    int n = (int)(sizeof lines / sizeof lines[0]);
    int w = 68 < g->w - 2 ? 68 : g->w - 2, h = n + 2 < g->h - 2 ? n + 2 : g->h - 2;
    int y = (g->h - h) / 2, x = (g->w - w) / 2;
    for (int i = 0; i < h; i++) ns_grid_fill(g, y + i, x, w, ' ', NS_A_NORMAL);
    ns_grid_box(g, y, x, h, w, NS_A_BOLD);
    for (int i = 0; i < n && i < h - 2; i++)
        ns_grid_put(g, y + 1 + i, x + 2, w - 4, i == 0 ? NS_A_BOLD : NS_A_NORMAL, 1, lines[i]);
}

static void draw_message(ns_grid *g, int y, int h, uint8_t attr, const char *text) {
    int lines = ns_tui_draw_wrapped(g, 0, 0, g->w - 4, 0, 0, attr, text);
    int top = y + (h - lines) / 2;
    ns_tui_draw_wrapped(g, top < y ? y : top, 2, g->w - 4, h, 0, attr, text);
}

static void draw_runs(ns_grid *g, ns_tui_model *m, ns_tui_ui *ui, const char *path, int y, int h) {
    char buf[96];
    ns_grid_printf(g, y, 1, -1, NS_A_BOLD, "%s holds %d runs: pick one with Enter", path, m->nruns);
    ns_grid_printf(g, y + 1, 0, -1, NS_A_DIM, "   %5s  %-19s  %-11s  %8s  %s", "run", "started",
                   "status", "steps", "command");
    int lh = h - 2;
    ui->run_sel = ui->run_sel < 0 ? 0 : ui->run_sel >= m->nruns ? m->nruns - 1 : ui->run_sel;
    ui->run_top = ns_tui_scroll(ui->run_top, ui->run_sel, m->nruns, lh);
    ui->panes[0] = (ns_tui_pane){y + 2, 0, lh, g->w, ui->run_top, m->nruns};
    ui->panes[1] = (ns_tui_pane){0, 0, 0, 0, 0, 0};
    for (int i = 0; i < lh && ui->run_top + i < m->nruns; i++) {
        const ns_tui_run *r = &m->runs[ui->run_top + i];
        char when[32] = "-";
        if (!isnan(r->started_at)) {
            time_t t = (time_t)r->started_at;
            struct tm tm;
            localtime_r(&t, &tm);
            strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", &tm);
        }
        snprintf(buf, sizeof buf, "%lld", (long long)(r->last_step >= 0 ? r->last_step + 1 : 0));
        const char *st = r->status ? r->status : "?";
        int yy = y + 2 + i;
        int x =
            ns_grid_printf(g, yy, 0, -1, NS_A_NORMAL, "   %5lld  %-19s  ", (long long)r->id, when);
        x += ns_grid_printf(g, yy, x, 11, status_attr(st), "%-11s", st);
        ns_grid_printf(g, yy, x, -1, NS_A_NORMAL, "  %8s  %s", buf, r->command ? r->command : "");
        if (ui->run_top + i == ui->run_sel) ns_tui_mark_selected(g, yy, 0, g->w, 1);
    }
}

void ns_tui_draw(ns_grid *g, ns_tui_model *m, ns_tui_ui *ui, const ns_tui_frame *f) {
    ns_grid_clear(g);
    ui->panes[0] = ui->panes[1] = (ns_tui_pane){0, 0, 0, 0, 0, 0};
    if (g->w < 40 || g->h < 10) {
        ns_grid_put(g, 0, 0, -1, NS_A_WARN, 1, "nnscope tui: terminal too small (need 40x10)");
        return;
    }
    draw_header(g, m, ui, f);
    int y = HEADER_ROWS, h = g->h - HEADER_ROWS - 1;
    char text[700];
    if (f->src_state != NS_SRC_READY) {
        if (f->src_state == NS_SRC_NO_FILE)
            snprintf(text, sizeof text, "waiting for %s... (it does not exist yet; q quits)",
                     f->path);
        else if (f->src_state == NS_SRC_NOT_READY)
            snprintf(text, sizeof text, "waiting for the recording to start in %s...", f->path);
        else
            snprintf(text, sizeof text, "%s", f->src_err && f->src_err[0] ? f->src_err : "error");
        draw_message(g, y, h, f->src_state == NS_SRC_ERROR ? NS_A_ERR : NS_A_BOLD, text);
        draw_status(g, ui);
        return;
    }
    if (ui->screen == NS_SCR_RUNS && m->nruns > 0) {
        draw_tabs(g, m, ui);
        draw_runs(g, m, ui, f->path, y, h);
    } else if (!ns_tui_model_run(m)) {
        if (m->nruns == 0)
            snprintf(text, sizeof text, "waiting for a run to start in %s...", f->path);
        else
            snprintf(text, sizeof text, "run %lld is not in %s (it holds %d run%s): waiting...",
                     (long long)f->want_run, f->path, m->nruns, m->nruns == 1 ? "" : "s");
        draw_message(g, y, h, NS_A_BOLD, text);
    } else {
        draw_tabs(g, m, ui);
        switch (ui->screen) {
        case NS_SCR_FINDINGS:
            ns_tui_draw_findings(g, m, ui, y, h);
            break;
        case NS_SCR_DETAIL:
            ns_tui_draw_detail(g, m, ui, y, h);
            break;
        case NS_SCR_GPU:
            ns_tui_draw_gpu(g, m, ui, f, y, h);
            break;
        default:
            ns_tui_draw_modules(g, m, ui, y, h);
            break;
        }
    }
    draw_status(g, ui);
    if (ui->help) draw_help(g);
}
