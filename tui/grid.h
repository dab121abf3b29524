/* The TUI's drawing surface: a grid of cells (one Unicode code point + a semantic attribute).
 * Every screen is drawn into a grid; the curses front end (term.c) copies the grid to the
 * terminal, and `--dump` prints it as text. Nothing here knows about curses or SQLite. */
#ifndef NS_TUI_GRID_H
#define NS_TUI_GRID_H

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>

/* Semantic attributes; term.c maps them to colours (or to bold/reverse under NO_COLOR). */
enum {
    NS_A_NORMAL = 0,
    NS_A_DIM,       /* secondary text, labels */
    NS_A_BOLD,      /* emphasis */
    NS_A_TITLE,     /* header bar */
    NS_A_TAB,       /* screen tab */
    NS_A_TABSEL,    /* current screen tab */
    NS_A_ERR,       /* error severity, failed status */
    NS_A_WARN,      /* warning severity, stale status */
    NS_A_INFO,      /* info severity */
    NS_A_OK,        /* finished status, healthy values */
    NS_A_UNREG,     /* unregistered / created-in-forward modules */
    NS_A_PLOT,      /* plot and sparkline glyphs */
    NS_A_STATUS,    /* bottom status bar */
    NS_A_COUNT_,    /* number of attributes (not an attribute) */
    NS_A_REV = 0x80 /* flag: reverse video (selection) */
};

typedef struct {
    uint32_t ch; /* code point; 0 never appears (blank is ' ') */
    uint8_t attr;
} ns_cell;

typedef struct {
    int w, h;
    ns_cell *c; /* h rows of w cells */
    int ascii;  /* 1: callers should draw with ASCII glyphs only */
} ns_grid;

/* Allocates a w x h grid of blanks (w, h >= 1). Returns 0, or -1 when out of memory. */
int ns_grid_init(ns_grid *g, int w, int h, int ascii);

/* Frees the cells. */
void ns_grid_free(ns_grid *g);

/* Resizes (contents become blank). Returns 0, or -1 when out of memory (grid unchanged). */
int ns_grid_resize(ns_grid *g, int w, int h);

/* Blanks every cell. */
void ns_grid_clear(ns_grid *g);

/* Sets one cell; out-of-range positions are ignored. */
void ns_grid_set(ns_grid *g, int y, int x, uint32_t ch, uint8_t attr);

/* Cell at (y, x); the caller guarantees the position is inside. */
ns_cell *ns_grid_at(ns_grid *g, int y, int x);

/* Writes UTF-8 text at (y, x), at most maxw columns (maxw < 0: to the right edge), clipped to
 * the grid. Control characters show as '?'. When the text does not fit and trunc is set, the
 * last column shows an ellipsis ('~' on ASCII grids). Returns the columns written. */
int ns_grid_put(ns_grid *g, int y, int x, int maxw, uint8_t attr, int trunc, const char *s);

/* printf-style ns_grid_put (truncating). */
int ns_grid_printf(ns_grid *g, int y, int x, int maxw, uint8_t attr, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

/* Writes text right-aligned so that it ends at column x_end (exclusive). Returns its start. */
int ns_grid_put_right(ns_grid *g, int y, int x_end, uint8_t attr, const char *s);

/* Fills w cells from (y, x) with ch. */
void ns_grid_fill(ns_grid *g, int y, int x, int w, uint32_t ch, uint8_t attr);

/* Sets the attribute of w cells (keeping their characters); or_flag adds NS_A_REV etc. */
void ns_grid_style(ns_grid *g, int y, int x, int w, uint8_t attr, uint8_t or_flag);

/* Draws a box border (Unicode light lines, or +-| on ASCII grids). */
void ns_grid_box(ns_grid *g, int y, int x, int h, int w, uint8_t attr);

/* Columns that UTF-8 text takes on the grid (one per code point). */
int ns_utf8_width(const char *s);

/* Decodes one UTF-8 code point from s (advancing *s); invalid bytes decode as U+FFFD. */
uint32_t ns_utf8_next(const char **s);

/* Encodes cp into buf (at least 5 bytes, NUL-terminated); returns the byte count. */
int ns_utf8_put(char *buf, uint32_t cp);

/* Row y as UTF-8 text without trailing blanks, into buf (cap bytes). Returns the length. */
int ns_grid_row_text(const ns_grid *g, int y, char *buf, int cap);

/* Writes the whole grid as UTF-8 text, one line per row, trailing blanks removed.
 * Returns 0, or -1 on a write error. */
int ns_grid_write(const ns_grid *g, FILE *out);

#endif
