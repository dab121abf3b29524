/* UI state of the TUI (screen, selection, focus, filter, sort, pause) and what keys and mouse
 * clicks do to it. No curses here: term.c translates terminal keys into NS_KEY_* codes, and
 * the tests drive ns_tui_ui_key directly. */
#ifndef NS_TUI_UI_H
#define NS_TUI_UI_H

#include <stdint.h>

#include "model.h"

typedef enum {
    NS_SCR_RUNS = 0, /* runs picker (several runs in the file) */
    NS_SCR_MODULES = 1,
    NS_SCR_FINDINGS = 2,
    NS_SCR_DETAIL = 3,
    NS_SCR_GPU = 4,
    NS_SCR_COUNT_
} ns_tui_screen;

/* Keys ns_tui_ui_key understands: printable ASCII as itself, the rest as below. */
enum {
    NS_KEY_UP = 0x110000,
    NS_KEY_DOWN,
    NS_KEY_LEFT,
    NS_KEY_RIGHT,
    NS_KEY_PGUP,
    NS_KEY_PGDN,
    NS_KEY_HOME,
    NS_KEY_END,
    NS_KEY_ENTER,
    NS_KEY_TAB,
    NS_KEY_BTAB,
    NS_KEY_ESC,
    NS_KEY_BACKSPACE,
    NS_KEY_WHEEL_UP,
    NS_KEY_WHEEL_DOWN
};

/* A list pane as laid out by the last frame: rows y .. y+h-1 show items top .. top+h-1. */
typedef struct {
    int y, x, h, w;
    int top;   /* first item shown */
    int count; /* items in the list */
} ns_tui_pane;

/* One row of the findings list: a rule group header (finding = -1) or one finding. */
typedef struct {
    int group;   /* index into model.groups */
    int finding; /* index into model.find, -1 for the group header */
} ns_tui_frow;

typedef struct {
    int screen; /* ns_tui_screen */
    int focus;  /* pane with the keyboard: 0 (main list) or 1 (second pane) */
    /* modules screen */
    int64_t sel_mod; /* selected module id; INT64_MIN: the first row */
    int mod_top;
    int param_sel, param_top; /* params pane of the selected module */
    ns_tui_sort sort;
    /* findings screen */
    int find_sel, find_top;
    int find_open; /* explanation pane shown */
    int explain_top;
    ns_tui_frow *frows; /* built by ns_tui_ui_finding_rows */
    int nfrows, capfrows;
    /* detail screen: module det_mod itself (det_sel 0) or its det_sel-th param */
    int64_t det_mod;
    int det_sel, det_top, plot_top;
    /* gpu screen */
    int gpu_top[2];
    /* runs picker */
    int run_sel, run_top;
    int64_t picked_run; /* set by Enter in the picker; -1 none (the app consumes it) */
    /* modes */
    char filter[64];
    int editing; /* typing a filter */
    char filter_saved[64];
    int paused, help, quit;
    char msg[160]; /* transient status message */
    /* layout of the last frame (draw.c), for paging and mouse clicks */
    ns_tui_pane panes[2];
    int tabs_y;
    int tab_x[NS_SCR_COUNT_], tab_w[NS_SCR_COUNT_];
} ns_tui_ui;

/* Initial state: modules screen, first row selected, tree order. */
void ns_tui_ui_init(ns_tui_ui *ui);

/* Frees what the state owns. */
void ns_tui_ui_free(ns_tui_ui *ui);

/* Applies one key (printable ASCII or NS_KEY_*). Rebuilds m's tree rows as needed. */
void ns_tui_ui_key(ns_tui_ui *ui, ns_tui_model *m, int key);

/* Applies a mouse click at screen cell (y, x); dbl = double click (acts as Enter). */
void ns_tui_ui_click(ns_tui_ui *ui, ns_tui_model *m, int y, int x, int dbl);

/* Index of the selected module in m->rows (0 when the selection is gone), -1 with no rows.
 * Keeps ui->sel_mod pointing at a module that is shown. */
int ns_tui_ui_mod_row(ns_tui_ui *ui, const ns_tui_model *m);

/* Index of the selected module in m->mods, -1 when none. */
int ns_tui_ui_mod_index(ns_tui_ui *ui, const ns_tui_model *m);

/* Rebuilds ui->frows from m's groups (filtered by ui->filter). Returns the row count. */
int ns_tui_ui_finding_rows(ns_tui_ui *ui, const ns_tui_model *m);

/* The detail target for the current state: module or parameter id. Returns the kind. */
ns_tui_detail_kind ns_tui_ui_detail_target(const ns_tui_ui *ui, const ns_tui_model *m, int64_t *id);

/* Opens the detail screen on module index mi (param_sel -1: the module, else its param). */
void ns_tui_ui_open_detail(ns_tui_ui *ui, const ns_tui_model *m, int mi, int param_sel);

#endif
