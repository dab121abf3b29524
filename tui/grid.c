/* The character grid the TUI draws into: see grid.h. */
#include "grid.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

int ns_grid_init(ns_grid *g, int w, int h, int ascii) {
    assert(w >= 1 && h >= 1);
    g->c = malloc(sizeof(ns_cell) * (size_t)w * (size_t)h);
    if (!g->c) return -1;
    g->w = w;
    g->h = h;
    g->ascii = ascii;
    ns_grid_clear(g);
    return 0;
}

void ns_grid_free(ns_grid *g) {
    free(g->c);
    g->c = NULL;
    g->w = g->h = 0;
}

int ns_grid_resize(ns_grid *g, int w, int h) {
    assert(w >= 1 && h >= 1);
    ns_cell *c = malloc(sizeof(ns_cell) * (size_t)w * (size_t)h);
    if (!c) return -1;
    free(g->c);
    g->c = c;
    g->w = w;
    g->h = h;
    ns_grid_clear(g);
    return 0;
}

void ns_grid_clear(ns_grid *g) {
    size_t n = (size_t)g->w * (size_t)g->h;
    for (size_t i = 0; i < n; i++) {
        g->c[i].ch = ' ';
        g->c[i].attr = NS_A_NORMAL;
    }
}

ns_cell *ns_grid_at(ns_grid *g, int y, int x) {
    assert(y >= 0 && y < g->h && x >= 0 && x < g->w);
    return &g->c[(size_t)y * (size_t)g->w + (size_t)x];
}

void ns_grid_set(ns_grid *g, int y, int x, uint32_t ch, uint8_t attr) {
    if (y < 0 || y >= g->h || x < 0 || x >= g->w) return;
    ns_cell *c = ns_grid_at(g, y, x);
    c->ch = ch;
    c->attr = attr;
}

uint32_t ns_utf8_next(const char **sp) {
    const unsigned char *s = (const unsigned char *)*sp;
    uint32_t cp;
    int extra;
    if (s[0] < 0x80) {
        *sp += 1;
        return s[0];
    } else if ((s[0] & 0xE0) == 0xC0) {
        cp = s[0] & 0x1F;
        extra = 1;
    } else if ((s[0] & 0xF0) == 0xE0) {
        cp = s[0] & 0x0F;
        extra = 2;
    } else if ((s[0] & 0xF8) == 0xF0) {
        cp = s[0] & 0x07;
        extra = 3;
    } else {
        *sp += 1;
        return 0xFFFD;
    }
    for (int i = 1; i <= extra; i++) {
        if ((s[i] & 0xC0) != 0x80) {
            *sp += i;
            return 0xFFFD;
        }
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    *sp += 1 + extra;
    return cp;
}

int ns_utf8_put(char *buf, uint32_t cp) {
    int n;
    if (cp < 0x80) {
        buf[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        buf[0] = (char)(0xC0 | (cp >> 6));
        buf[1] = (char)(0x80 | (cp & 0x3F));
        n = 2;
    } else if (cp < 0x10000) {
        buf[0] = (char)(0xE0 | (cp >> 12));
        buf[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        buf[2] = (char)(0x80 | (cp & 0x3F));
        n = 3;
    } else {
        buf[0] = (char)(0xF0 | (cp >> 18));
        buf[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
        buf[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
        buf[3] = (char)(0x80 | (cp & 0x3F));
        n = 4;
    }
    buf[n] = 0;
    return n;
}

int ns_utf8_width(const char *s) {
    int w = 0;
    while (*s) {
        ns_utf8_next(&s);
        w++;
    }
    return w;
}

int ns_grid_put(ns_grid *g, int y, int x, int maxw, uint8_t attr, int trunc, const char *s) {
    if (y < 0 || y >= g->h || !s) return 0;
    int limit = g->w - x;
    if (maxw >= 0 && maxw < limit) limit = maxw;
    if (limit <= 0) return 0;
    int total = ns_utf8_width(s);
    int cut = trunc && total > limit;
    int room = cut ? limit - 1 : limit;
    int col = 0;
    while (*s && col < room) {
        uint32_t cp = ns_utf8_next(&s);
        if (cp < 0x20 || cp == 0x7F || (cp >= 0x80 && cp < 0xA0)) cp = '?';
        if (g->ascii && cp >= 0x80) cp = '?';
        if (x + col >= 0) ns_grid_set(g, y, x + col, cp, attr);
        col++;
    }
    if (cut) {
        ns_grid_set(g, y, x + col, g->ascii ? '~' : 0x2026, attr);
        col++;
    }
    return col;
}

int ns_grid_printf(ns_grid *g, int y, int x, int maxw, uint8_t attr, const char *fmt, ...) {
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    return ns_grid_put(g, y, x, maxw, attr, 1, buf);
}

int ns_grid_put_right(ns_grid *g, int y, int x_end, uint8_t attr, const char *s) {
    int w = ns_utf8_width(s);
    int x = x_end - w;
    if (x < 0) x = 0;
    ns_grid_put(g, y, x, x_end - x, attr, 1, s);
    return x;
}

void ns_grid_fill(ns_grid *g, int y, int x, int w, uint32_t ch, uint8_t attr) {
    for (int i = 0; i < w; i++) ns_grid_set(g, y, x + i, ch, attr);
}

void ns_grid_style(ns_grid *g, int y, int x, int w, uint8_t attr, uint8_t or_flag) {
    if (y < 0 || y >= g->h) return;
    for (int i = 0; i < w; i++) {
        if (x + i < 0 || x + i >= g->w) continue;
        ns_cell *c = ns_grid_at(g, y, x + i);
        c->attr = (uint8_t)(attr | or_flag);
    }
}

void ns_grid_box(ns_grid *g, int y, int x, int h, int w, uint8_t attr) {
    if (h < 2 || w < 2) return;
    uint32_t hz = g->ascii ? '-' : 0x2500, vt = g->ascii ? '|' : 0x2502;
    uint32_t tl = g->ascii ? '+' : 0x250C, tr = g->ascii ? '+' : 0x2510;
    uint32_t bl = g->ascii ? '+' : 0x2514, br = g->ascii ? '+' : 0x2518;
    ns_grid_fill(g, y, x + 1, w - 2, hz, attr);
    ns_grid_fill(g, y + h - 1, x + 1, w - 2, hz, attr);
    for (int i = 1; i < h - 1; i++) {
        ns_grid_set(g, y + i, x, vt, attr);
        ns_grid_set(g, y + i, x + w - 1, vt, attr);
    }
    ns_grid_set(g, y, x, tl, attr);
    ns_grid_set(g, y, x + w - 1, tr, attr);
    ns_grid_set(g, y + h - 1, x, bl, attr);
    ns_grid_set(g, y + h - 1, x + w - 1, br, attr);
}

int ns_grid_row_text(const ns_grid *g, int y, char *buf, int cap) {
    assert(cap > 0);
    int last = g->w - 1;
    const ns_cell *row = &g->c[(size_t)y * (size_t)g->w];
    while (last >= 0 && row[last].ch == ' ') last--;
    int len = 0;
    for (int x = 0; x <= last; x++) {
        char enc[5];
        int n = ns_utf8_put(enc, row[x].ch);
        if (len + n >= cap) break;
        memcpy(buf + len, enc, (size_t)n);
        len += n;
    }
    buf[len] = 0;
    return len;
}

int ns_grid_write(const ns_grid *g, FILE *out) {
    size_t cap = (size_t)g->w * 4 + 2;
    char *line = malloc(cap);
    if (!line) return -1;
    int rc = 0;
    for (int y = 0; y < g->h && rc == 0; y++) {
        int n = ns_grid_row_text(g, y, line, (int)cap - 1);
        line[n++] = '\n';
        if (fwrite(line, 1, (size_t)n, out) != (size_t)n) rc = -1;
    }
    free(line);
    return rc;
}
