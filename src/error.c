/* User-error reporting: one message with op, shapes, devices and module path, one handler. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static ns_error_handler g_handler;
static void *g_handler_ud;
static _Thread_local char g_last[2048];
static _Thread_local int g_in_error;

void ns_set_error_handler(ns_error_handler h, void *ud) {
    g_handler = h;
    g_handler_ud = ud;
}

const char *ns_last_error(void) {
    return g_last;
}

char *ns_shape_str(const ns_tensor *t, char *buf, size_t n) {
    size_t off = 0;
    buf[0] = 0;
    for (int i = 0; i < t->ndim && off < n; i++)
        off += (size_t)snprintf(buf + off, n - off, i ? "x%lld" : "%lld", (long long)t->shape[i]);
    if (t->ndim == 0) snprintf(buf, n, "scalar");
    return buf;
}

static _Noreturn void deliver(const char *body) {
    char ctx[512];
    const char *where = ns_module_context(ctx, sizeof ctx);
    if (where)
        snprintf(g_last, sizeof g_last, "%s: %s", where, body);
    else
        snprintf(g_last, sizeof g_last, "%s", body);
    if (!g_in_error) {
        /* Tell the event hooks (the recorder stores the message before the process exits). */
        g_in_error = 1;
        ns_event ev = {.kind = NS_EV_ERROR, .detail = g_last};
        ns_emit_event(&ev);
        g_in_error = 0;
    }
    /* A handler may longjmp out: leave the call stack and hook dispatch consistent. */
    ns_call_stack_reset();
    ns_hooks_reset_dispatch();
    if (g_handler) {
        g_handler(g_last, g_handler_ud);
        fprintf(stderr, "nnscope: error handler returned; exiting\n");
    } else {
        fprintf(stderr, "nnscope: %s\n", g_last);
    }
    exit(1);
}

void ns_error(const char *fmt, ...) {
    char body[1536];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(body, sizeof body, fmt, ap);
    va_end(ap);
    deliver(body);
}

void ns_op_error(const char *op, int n, ns_tensor *const *ts, const char *fmt, ...) {
    char body[1536];
    size_t off = (size_t)snprintf(body, sizeof body, "%s: ", op);
    va_list ap;
    va_start(ap, fmt);
    off += (size_t)vsnprintf(body + off, sizeof body - off, fmt, ap);
    va_end(ap);
    for (int i = 0; i < n && off < sizeof body; i++) {
        char s[64];
        if (!ts[i]) continue;
        off += (size_t)snprintf(body + off, sizeof body - off, "%s%s%s[%s] on %s",
                                i ? ", " : " (operands: ", ts[i]->name ? ts[i]->name : "",
                                ts[i]->name ? " " : "", ns_shape_str(ts[i], s, sizeof s),
                                ns_device_name(ts[i]->device));
    }
    if (n > 0 && off < sizeof body) snprintf(body + off, sizeof body - off, ")");
    deliver(body);
}

void ns_check_same_device(const char *op, int n, ns_tensor *const *ts) {
    for (int i = 1; i < n; i++)
        if (ts[i] && ts[0] && ts[i]->device != ts[0]->device)
            ns_op_error(op, n, ts,
                        "expected all tensors on the same device, got %s and %s; move one with "
                        "ns_to() or ns_module_to()",
                        ns_device_name(ts[0]->device), ns_device_name(ts[i]->device));
}

void ns_check_f32(const char *op, ns_tensor *t) {
    if (t->dtype != NS_F32) ns_op_error(op, 1, &t, "expected a float32 tensor, got int32");
}
