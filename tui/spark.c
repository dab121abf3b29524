/* Sparklines and braille/ASCII plots: see spark.h. */
#include "spark.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const uint32_t blocks[NS_SPARK_LEVELS] = {0x2581, 0x2582, 0x2583, 0x2584,
                                                 0x2585, 0x2586, 0x2587, 0x2588};
static const char ascii_ramp[NS_SPARK_LEVELS + 1] = "_.-:=+*#";

int ns_spark_range(const double *v, int n, int logscale, double *lo, double *hi) {
    int found = 0;
    for (int i = 0; i < n; i++) {
        double x = v[i];
        if (!isfinite(x)) continue;
        if (logscale) {
            if (x <= 0) continue;
            x = log10(x);
        }
        if (!found || x < *lo) *lo = x;
        if (!found || x > *hi) *hi = x;
        found = 1;
    }
    return found;
}

void ns_spark_levels(const double *v, int n, double lo, double hi, int levels, int logscale,
                     int *out) {
    double span = hi - lo;
    int flat = !(span > 1e-12 * (fabs(hi) + fabs(lo)) && span > 0);
    for (int i = 0; i < n; i++) {
        double x = v[i];
        if (isnan(x)) {
            out[i] = -1;
            continue;
        }
        if (isinf(x)) {
            out[i] = levels;
            continue;
        }
        if (logscale) {
            if (x <= 0) {
                out[i] = -1;
                continue;
            }
            x = log10(x);
        }
        if (flat) {
            out[i] = levels / 2;
            continue;
        }
        int l = (int)floor((x - lo) / span * levels);
        if (l < 0) l = 0;
        if (l >= levels) l = levels - 1;
        out[i] = l;
    }
}

uint32_t ns_spark_glyph(int level, int ascii) {
    if (level < 0) return ' ';
    if (level >= NS_SPARK_LEVELS) return '!';
    return ascii ? (uint32_t)ascii_ramp[level] : blocks[level];
}

void ns_spark_draw(ns_grid *g, int y, int x, int w, const double *v, int n, uint8_t attr) {
    if (w <= 0) return;
    if (n > w) {
        v += n - w;
        n = w;
    }
    int lv[512];
    if (n > 512) {
        v += n - 512;
        n = 512;
    }
    double lo = 0, hi = 0;
    ns_spark_range(v, n, 0, &lo, &hi);
    ns_spark_levels(v, n, lo, hi, NS_SPARK_LEVELS, 0, lv);
    int start = x + w - n;
    for (int i = 0; i < n; i++) {
        uint8_t a = lv[i] >= NS_SPARK_LEVELS ? NS_A_ERR : attr;
        ns_grid_set(g, y, start + i, ns_spark_glyph(lv[i], g->ascii), a);
    }
}

int ns_plot_wants_log(const double *v, int n) {
    double lo, hi;
    int any = 0;
    for (int i = 0; i < n; i++) {
        if (!isfinite(v[i])) continue;
        if (v[i] <= 0) return 0;
        any = 1;
    }
    if (!any || !ns_spark_range(v, n, 1, &lo, &hi)) return 0;
    return hi - lo > 2.0;
}

/* Braille dot bit for the pixel (px in 0..1, py in 0..3) of one cell. */
static uint8_t braille_bit(int px, int py) {
    static const uint8_t bits[2][4] = {{0x01, 0x02, 0x04, 0x40}, {0x08, 0x10, 0x20, 0x80}};
    return bits[px][py];
}

/* Sets pixel (px, py) of the plot: a braille dot, or on ASCII grids '*' for a data point and
 * '|' for a connecting line (points win over lines). */
static void dot(uint8_t *cells, int w, int sx, int sy, int ascii, int px, int py, int point) {
    uint8_t *c = &cells[(size_t)(py / sy) * (size_t)w + (size_t)(px / sx)];
    if (ascii)
        *c = (uint8_t)(point || *c == '*' ? '*' : '|');
    else
        *c |= braille_bit(px % sx, py % sy);
}

int ns_plot_draw(ns_grid *g, int y, int x, int h, int w, const double *v, int n, uint8_t attr,
                 double *lo_out, double *hi_out, int *log_out) {
    if (h <= 0 || w <= 0) return 1;
    int logscale = ns_plot_wants_log(v, n);
    double lo, hi;
    if (!ns_spark_range(v, n, logscale, &lo, &hi)) {
        if (lo_out) *lo_out = NAN;
        if (hi_out) *hi_out = NAN;
        if (log_out) *log_out = 0;
        return 1;
    }
    if (lo_out) *lo_out = lo;
    if (hi_out) *hi_out = hi;
    if (log_out) *log_out = logscale;
    int sx = g->ascii ? 1 : 2, sy = g->ascii ? 1 : 4;
    int pw = w * sx, ph = h * sy;
    /* Pixel rows of the points (-1: missing, -2: non-finite). */
    int *py = malloc(sizeof(int) * (size_t)(n > 0 ? n : 1));
    uint8_t *cells = calloc((size_t)w * (size_t)h, 1);
    uint8_t *inf_col = calloc((size_t)w, 1);
    if (!py || !cells || !inf_col) {
        free(py);
        free(cells);
        free(inf_col);
        return 1;
    }
    double span = hi - lo;
    for (int i = 0; i < n; i++) {
        double val = v[i];
        if (isnan(val) || (logscale && val <= 0)) {
            py[i] = -1;
            continue;
        }
        if (isinf(val)) {
            py[i] = -2;
            continue;
        }
        if (logscale) val = log10(val);
        double f = span > 0 ? (val - lo) / span : 0.5;
        py[i] = (ph - 1) - (int)lround(f * (ph - 1));
    }
    int prev_x = -1, prev_y = -1;
    for (int i = 0; i < n; i++) {
        int px = n > 1 ? (int)((int64_t)i * (pw - 1) / (n - 1)) : pw - 1;
        if (py[i] == -2) inf_col[px / sx] = 1;
        if (py[i] < 0) {
            prev_x = -1; /* a gap breaks the line */
            continue;
        }
        if (prev_x >= 0 && px > prev_x) {
            /* Connect to the previous point: column cx covers the rise from cx to cx + 1. */
            for (int cx = prev_x; cx < px; cx++) {
                int ya = prev_y + (py[i] - prev_y) * (cx - prev_x) / (px - prev_x);
                int yb = prev_y + (py[i] - prev_y) * (cx + 1 - prev_x) / (px - prev_x);
                int ylo = ya < yb ? ya : yb, yhi = ya < yb ? yb : ya;
                for (int yy = ylo; yy <= yhi; yy++) dot(cells, w, sx, sy, g->ascii, cx, yy, 0);
            }
        }
        dot(cells, w, sx, sy, g->ascii, px, py[i], 1);
        prev_x = px;
        prev_y = py[i];
    }
    for (int r = 0; r < h; r++) {
        for (int c = 0; c < w; c++) {
            uint8_t b = cells[(size_t)r * (size_t)w + (size_t)c];
            if (r == 0 && inf_col[c]) {
                ns_grid_set(g, y + r, x + c, '!', NS_A_ERR);
                continue;
            }
            if (!b) continue;
            ns_grid_set(g, y + r, x + c, g->ascii ? b : 0x2800u + b, attr);
        }
    }
    free(py);
    free(cells);
    free(inf_col);
    return 0;
}
