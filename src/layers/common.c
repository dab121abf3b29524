/* Helpers shared by the layers: Python float formatting for repr, allocation, init. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "layers_internal.h"

char *ns_py_float(double v, char *buf, size_t n) {
    if (isnan(v)) return snprintf(buf, n, "nan"), buf;
    if (isinf(v)) return snprintf(buf, n, v < 0 ? "-inf" : "inf"), buf;
    if (v == 0) return snprintf(buf, n, signbit(v) ? "-0.0" : "0.0"), buf;
    /* Shortest %e form that reads back as v: digits d0.d1d2... and exponent e. */
    char sci[40];
    for (int prec = 0; prec < 17; prec++) {
        snprintf(sci, sizeof sci, "%.*e", prec, v);
        if (strtod(sci, NULL) == v) break;
    }
    const char *p = sci;
    bool neg = *p == '-';
    if (neg) p++;
    char digits[24];
    int nd = 0;
    for (; *p && *p != 'e'; p++)
        if (*p != '.') digits[nd++] = *p;
    while (nd > 1 && digits[nd - 1] == '0') nd--;
    digits[nd] = 0;
    int e = atoi(p + 1);
    char out[64];
    size_t o = 0;
    if (neg) out[o++] = '-';
    if (e >= -4 && e < 16) { /* Python's repr switches to exponents outside this range */
        if (e < 0) {
            out[o++] = '0';
            out[o++] = '.';
            for (int i = 0; i < -e - 1; i++) out[o++] = '0';
            for (int i = 0; i < nd; i++) out[o++] = digits[i];
        } else {
            for (int i = 0; i <= e; i++) out[o++] = i < nd ? digits[i] : '0';
            out[o++] = '.';
            if (nd > e + 1)
                for (int i = e + 1; i < nd; i++) out[o++] = digits[i];
            else
                out[o++] = '0';
        }
        out[o] = 0;
    } else {
        out[o++] = digits[0];
        if (nd > 1) {
            out[o++] = '.';
            for (int i = 1; i < nd; i++) out[o++] = digits[i];
        }
        snprintf(out + o, sizeof out - o, "e%c%02d", e < 0 ? '-' : '+', e < 0 ? -e : e);
    }
    snprintf(buf, n, "%s", out);
    return buf;
}

void *ns_layer_alloc(size_t size, const char *what) {
    void *p = calloc(1, size);
    if (!p) ns_error("out of memory creating a %s", what);
    return p;
}

ns_tensor *ns_uniform_param(int ndim, const int64_t *shape, double bound) {
    ns_tensor *t = ns_tensor_new(ndim, shape, NS_CPU);
    ns_uniform_(t, (float)-bound, (float)bound);
    return t;
}
