/* curses front end: see term.h. */
#define _XOPEN_SOURCE_EXTENDED 1
#include "term.h"

#include <curses.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <wchar.h>

#include "ui.h"

static volatile sig_atomic_t active;
static SCREEN *screen;
static attr_t attrs[NS_A_COUNT_];

static void setup_attrs(int color) {
    if (color && has_colors()) {
        start_color();
        use_default_colors();
        static const struct {
            int attr, fg, bg;
            attr_t extra;
        } pairs[] = {
            {NS_A_TITLE, COLOR_BLACK, COLOR_CYAN, A_BOLD},
            {NS_A_TAB, COLOR_WHITE, COLOR_BLUE, 0},
            {NS_A_TABSEL, COLOR_BLACK, COLOR_GREEN, A_BOLD},
            {NS_A_ERR, COLOR_RED, -1, A_BOLD},
            {NS_A_WARN, COLOR_YELLOW, -1, A_BOLD},
            {NS_A_INFO, COLOR_CYAN, -1, 0},
            {NS_A_OK, COLOR_GREEN, -1, 0},
            {NS_A_UNREG, COLOR_MAGENTA, -1, A_BOLD},
            {NS_A_PLOT, COLOR_CYAN, -1, 0},
            {NS_A_STATUS, COLOR_BLACK, COLOR_WHITE, 0},
        };
        for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
            init_pair((short)(i + 1), (short)pairs[i].fg, (short)pairs[i].bg);
            attrs[pairs[i].attr] = COLOR_PAIR((int)(i + 1)) | pairs[i].extra;
        }
        attrs[NS_A_NORMAL] = A_NORMAL;
        attrs[NS_A_DIM] = A_DIM;
        attrs[NS_A_BOLD] = A_BOLD;
        return;
    }
    attrs[NS_A_NORMAL] = A_NORMAL;
    attrs[NS_A_DIM] = A_DIM;
    attrs[NS_A_BOLD] = A_BOLD;
    attrs[NS_A_TITLE] = A_REVERSE | A_BOLD;
    attrs[NS_A_TAB] = A_REVERSE;
    attrs[NS_A_TABSEL] = A_BOLD | A_UNDERLINE;
    attrs[NS_A_ERR] = A_BOLD;
    attrs[NS_A_WARN] = A_BOLD;
    attrs[NS_A_INFO] = A_NORMAL;
    attrs[NS_A_OK] = A_NORMAL;
    attrs[NS_A_UNREG] = A_BOLD | A_UNDERLINE;
    attrs[NS_A_PLOT] = A_NORMAL;
    attrs[NS_A_STATUS] = A_REVERSE;
}

int ns_tui_term_start(int color, char *err, size_t errlen) {
    screen = newterm(NULL, stdout, stdin);
    if (!screen) {
        snprintf(err, errlen, "cannot start the terminal (TERM=%s)",
                 getenv("TERM") ? getenv("TERM") : "unset");
        return -1;
    }
    active = 1;
    cbreak();
    noecho();
    nonl();
    keypad(stdscr, TRUE);
    curs_set(0);
    set_escdelay(25);
    mousemask(BUTTON1_CLICKED | BUTTON1_DOUBLE_CLICKED | BUTTON4_PRESSED | BUTTON5_PRESSED, NULL);
    mouseinterval(200);
    setup_attrs(color);
    return 0;
}

void ns_tui_term_stop(void) {
    if (!active) return;
    active = 0;
    endwin();
}

void ns_tui_term_free(void) {
    ns_tui_term_stop();
    if (screen) delscreen(screen);
    screen = NULL;
}

int ns_tui_term_active(void) {
    return active;
}

void ns_tui_term_size(int *w, int *h) {
    getmaxyx(stdscr, *h, *w);
}

void ns_tui_term_present(const ns_grid *g) {
    int sw, sh;
    getmaxyx(stdscr, sh, sw);
    wchar_t run[1024];
    for (int y = 0; y < g->h && y < sh; y++) {
        int x = 0;
        const ns_cell *row = &g->c[(size_t)y * (size_t)g->w];
        int w = g->w < sw ? g->w : sw;
        while (x < w) {
            uint8_t a = row[x].attr;
            int n = 0, start = x;
            /* The bottom-right cell would scroll the screen: leave it out. */
            int end = y == sh - 1 && w == sw ? w - 1 : w;
            while (x < end && row[x].attr == a && n < 1023) run[n++] = (wchar_t)row[x++].ch;
            if (n == 0) break;
            run[n] = 0;
            attr_t at = attrs[a & 0x7F] | (a & NS_A_REV ? A_REVERSE : 0);
            attrset(at);
            mvaddnwstr(y, start, run, n);
        }
    }
    attrset(A_NORMAL);
    wnoutrefresh(stdscr);
    doupdate();
}

int ns_tui_term_read(int timeout_ms, int *y, int *x, int *dbl) {
    timeout(timeout_ms);
    wint_t ch;
    int r = get_wch(&ch);
    if (r == ERR) return NS_TERM_NONE;
    if (r == KEY_CODE_YES) {
        switch (ch) {
        case KEY_UP:
            return NS_KEY_UP;
        case KEY_DOWN:
            return NS_KEY_DOWN;
        case KEY_LEFT:
            return NS_KEY_LEFT;
        case KEY_RIGHT:
            return NS_KEY_RIGHT;
        case KEY_PPAGE:
            return NS_KEY_PGUP;
        case KEY_NPAGE:
            return NS_KEY_PGDN;
        case KEY_HOME:
            return NS_KEY_HOME;
        case KEY_END:
            return NS_KEY_END;
        case KEY_ENTER:
            return NS_KEY_ENTER;
        case KEY_BTAB:
            return NS_KEY_BTAB;
        case KEY_BACKSPACE:
            return NS_KEY_BACKSPACE;
        case KEY_RESIZE:
            return NS_TERM_RESIZE;
        case KEY_MOUSE: {
            MEVENT ev;
            if (getmouse(&ev) != OK) return NS_TERM_NONE;
            if (ev.bstate & BUTTON4_PRESSED) return NS_KEY_WHEEL_UP;
            if (ev.bstate & BUTTON5_PRESSED) return NS_KEY_WHEEL_DOWN;
            *y = ev.y;
            *x = ev.x;
            *dbl = (ev.bstate & BUTTON1_DOUBLE_CLICKED) != 0;
            return NS_TERM_MOUSE;
        }
        default:
            return NS_TERM_NONE;
        }
    }
    switch (ch) {
    case '\n':
    case '\r':
        return NS_KEY_ENTER;
    case '\t':
        return NS_KEY_TAB;
    case 27:
        return NS_KEY_ESC;
    case 127:
    case 8:
        return NS_KEY_BACKSPACE;
    default:
        return ch >= 0x20 && ch < 0x7F ? (int)ch : NS_TERM_NONE;
    }
}
