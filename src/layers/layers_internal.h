/* Helpers shared by the layer files (library-internal). */
#ifndef NS_LAYERS_INTERNAL_H
#define NS_LAYERS_INTERNAL_H

#include <stddef.h>

#include "internal.h"

/* Writes v as Python's repr(float) does (shortest round-trip digits; "0.3", "1e-05", "2.0"),
 * so describe texts match PyTorch's extra_repr. Returns buf. */
char *ns_py_float(double v, char *buf, size_t n);

/* calloc(1, size) that reports running out of memory as an error naming what. */
void *ns_layer_alloc(size_t size, const char *what);

/* Long-lived parameter tensor initialised U(-bound, bound) from the global generator. */
ns_tensor *ns_uniform_param(int ndim, const int64_t *shape, double bound);

#endif
