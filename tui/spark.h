/* Sparklines and history plots drawn into a grid (Unicode blocks and braille, or ASCII).
 *
 * Scaling: the range is taken from the finite values shown (min..max); a flat series sits on
 * the middle level; missing values (NaN) are blank and non-finite data (Inf) is drawn as '!'
 * so that it stands out. Plots switch to a log10 axis by themselves when every value is
 * positive and the range spans more than two decades (gradient norms often do). */
#ifndef NS_TUI_SPARK_H
#define NS_TUI_SPARK_H

#include "grid.h"

#define NS_SPARK_LEVELS 8 /* glyph levels of a sparkline cell */

/* Range of the finite values of v (positive ones only, as log10, when logscale). Returns 1
 * and fills lo <= hi, or 0 when there is no such value. */
int ns_spark_range(const double *v, int n, int logscale, double *lo, double *hi);

/* Maps each value to a level 0..levels-1 over [lo, hi] (log10 units when logscale):
 * out = -1 for NaN (and for values <= 0 on a log scale), `levels` for +-Inf; values outside
 * the range clamp; when hi - lo is negligible every finite value maps to levels / 2. */
void ns_spark_levels(const double *v, int n, double lo, double hi, int levels, int logscale,
                     int *out);

/* The glyph of a level (see ns_spark_levels) on a Unicode or ASCII grid. */
uint32_t ns_spark_glyph(int level, int ascii);

/* Draws the last min(n, w) values of v (oldest first) as a sparkline ending at column x+w-1
 * (right-aligned: the newest value is always in the last column), auto-scaled. */
void ns_spark_draw(ns_grid *g, int y, int x, int w, const double *v, int n, uint8_t attr);

/* Whether ns_plot_draw would use a log axis for these values. */
int ns_plot_wants_log(const double *v, int n);

/* Draws a line plot of v (n points, oldest first, spread over the full width) into the
 * h x w box at (y, x): braille dots (2x4 per cell) on Unicode grids, '*' and '|' on ASCII
 * ones. The axis range used is returned in lo/hi (log10 units when *logscale is set on
 * return). Returns 0, or 1 when no value could be plotted. */
int ns_plot_draw(ns_grid *g, int y, int x, int h, int w, const double *v, int n, uint8_t attr,
                 double *lo, double *hi, int *logscale);

#endif
