/* Drawing: the view model and UI state rendered into a grid (grid.h). The same code serves the
 * curses front end and `--dump`; nothing here knows how the numbers were obtained (fetch.c)
 * or how the grid reaches the terminal (term.c). */
#ifndef NS_TUI_DRAW_H
#define NS_TUI_DRAW_H

#include <stddef.h>

#include "grid.h"
#include "model.h"
#include "ui.h"

/* What the frame needs besides the model and the UI state. */
typedef struct {
    const char *path; /* recording shown */
    int src_state;    /* ns_tui_src_state (fetch.h) */
    const char *src_err;
    double now;         /* wall clock, unix seconds (ages, stale status) */
    int kernels_done;   /* every kernels row has been read */
    int64_t want_run;   /* --run ID, -1 none */
    int rules_busy;     /* a rules pass is in flight */
    double stale_after; /* seconds without a heartbeat before "stale" */
} ns_tui_frame;

/* Draws a whole frame into g (header, tabs, the current screen, status bar, overlays) and
 * records the layout in ui (panes, tabs) for paging and mouse clicks. Rebuilds m's tree rows.
 * Works from 40x10 up; below that it draws a "terminal too small" line. */
void ns_tui_draw(ns_grid *g, ns_tui_model *m, ns_tui_ui *ui, const ns_tui_frame *f);

/* Screens (draw_*.c): each fills rows y .. y+h-1 of g. */
void ns_tui_draw_modules(ns_grid *g, ns_tui_model *m, ns_tui_ui *ui, int y, int h);
void ns_tui_draw_findings(ns_grid *g, ns_tui_model *m, ns_tui_ui *ui, int y, int h);
void ns_tui_draw_detail(ns_grid *g, ns_tui_model *m, ns_tui_ui *ui, int y, int h);
void ns_tui_draw_gpu(ns_grid *g, ns_tui_model *m, ns_tui_ui *ui, const ns_tui_frame *f, int y,
                     int h);

/* Number formats shared by the screens (buf gets at most cap bytes, NUL-terminated):
 * a compact float ("0.0123", "1.2e-05", "inf", "-" for NaN), a count ("812", "1.2K", "3.4M"),
 * and an age ("0.4s", "12s", "3m05s", "2h10m"). Each returns buf. */
char *ns_tui_fmt_num(char *buf, size_t cap, double v);
char *ns_tui_fmt_count(char *buf, size_t cap, int64_t n);
char *ns_tui_fmt_age(char *buf, size_t cap, double seconds);

/* Attribute for a severity (NS_A_ERR / NS_A_WARN / NS_A_INFO) and its upper-case label. */
uint8_t ns_tui_sev_attr(int sev);
const char *ns_tui_sev_label(int sev);

/* Draws text word-wrapped into the w x h box at (y, x), skipping the first `skip` wrapped
 * lines; honours '\n'. Returns the number of wrapped lines the whole text takes. */
int ns_tui_draw_wrapped(ns_grid *g, int y, int x, int w, int h, int skip, uint8_t attr,
                        const char *text);

/* Keeps a list's selection visible: returns the new first visible item. */
int ns_tui_scroll(int top, int sel, int count, int h);

/* Marks row y of a list as selected over [x, x+w): '>' marker in column x and reverse video
 * when the pane has the focus (bold otherwise). */
void ns_tui_mark_selected(ns_grid *g, int y, int x, int w, int focused);

#endif
