/* The curses side of the TUI, and the only file that includes curses: starts and restores the
 * terminal, copies a grid to the screen, and turns terminal input into NS_KEY_* codes and
 * mouse clicks. */
#ifndef NS_TUI_TERM_H
#define NS_TUI_TERM_H

#include <stddef.h>

#include "grid.h"

/* What ns_tui_term_read returned besides a key. */
enum {
    NS_TERM_NONE = -1,   /* timeout: nothing to read */
    NS_TERM_RESIZE = -2, /* the terminal changed size */
    NS_TERM_MOUSE = -3   /* a click: position and double flag filled */
};

/* Starts curses on the controlling terminal (alternate screen, no echo, cbreak, keypad, mouse,
 * hidden cursor). color = 0 maps attributes to bold/reverse/underline only (NO_COLOR).
 * Returns 0, or -1 when the terminal cannot be used (err filled). */
int ns_tui_term_start(int color, char *err, size_t errlen);

/* Restores the terminal (endwin). Safe to call twice, and from a signal handler on the
 * crash path (best effort: endwin is not async-signal-safe, but the process is dying). */
void ns_tui_term_stop(void);

/* Restores the terminal and frees curses' screen (normal exit path; not for signal
 * handlers). */
void ns_tui_term_free(void);

/* Whether curses is active. */
int ns_tui_term_active(void);

/* Current terminal size. */
void ns_tui_term_size(int *w, int *h);

/* Copies the grid to the screen (curses sends only what changed). */
void ns_tui_term_present(const ns_grid *g);

/* Waits up to timeout_ms for input. Returns a key (printable ASCII or NS_KEY_*), or one of
 * NS_TERM_NONE / NS_TERM_RESIZE / NS_TERM_MOUSE (then *y, *x, *dbl describe the click; a
 * wheel turn returns NS_KEY_WHEEL_UP/DOWN). */
int ns_tui_term_read(int timeout_ms, int *y, int *x, int *dbl);

#endif
