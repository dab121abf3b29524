/* The CUPTI backend of the GPU activity collector: the only file that includes CUPTI, compiled
 * when the `cupti` feature finds it (NS_HAVE_CUPTI). It checks for a driver and a device, enables
 * the activity kinds, lends CUPTI the collector's buffers, pushes and pops external correlation
 * ids, and decodes CUPTI's records (ns_cupti_walk_cupti) into the neutral form collect.c joins.
 *
 * CUPTI's buffer callbacks carry no user pointer, so the running collector is a process global,
 * guarded by g_lock: CUPTI's threads hold it only while they hand a buffer over, and stop clears
 * it before the collector is freed, so a late callback finds no collector instead of freed memory.
 */
#include <cupti.h>
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "collect.h"

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static ns_cupti *g_active; /* receives CUPTI's buffers */
static bool g_busy;        /* a collector is running or starting */

/* Kinds enabled, in this order (disabled in reverse). External correlation records are written
 * only for API records, so RUNTIME and DRIVER are needed; DRIVER also covers launches made through
 * the driver API directly (cuBLASLt, cuLaunchKernel). */
static const struct {
    CUpti_ActivityKind kind;
    const char *name;
} kinds[] = {
    {CUPTI_ACTIVITY_KIND_EXTERNAL_CORRELATION, "EXTERNAL_CORRELATION"},
    {CUPTI_ACTIVITY_KIND_RUNTIME, "RUNTIME"},
    {CUPTI_ACTIVITY_KIND_DRIVER, "DRIVER"},
    {CUPTI_ACTIVITY_KIND_MEMCPY, "MEMCPY"},
    {CUPTI_ACTIVITY_KIND_MEMSET, "MEMSET"},
    {CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL, "CONCURRENT_KERNEL"},
};
#define N_KINDS (sizeof kinds / sizeof kinds[0])

/* ------------------------------------------------------------------ CUPTI callbacks */

/* Activity timestamps on CLOCK_MONOTONIC, the clock of the engine's own timings. */
static uint64_t CUPTIAPI monotonic_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void CUPTIAPI buffer_requested(uint8_t **buffer, size_t *size, size_t *max_records) {
    pthread_mutex_lock(&g_lock);
    *buffer = g_active ? ns_cupti_buffer_request(g_active, size) : NULL;
    pthread_mutex_unlock(&g_lock);
    if (!*buffer) *size = 0; /* CUPTI drops the records and counts them */
    *max_records = 0;        /* as many as fit */
}

static void CUPTIAPI buffer_completed(CUcontext ctx, uint32_t stream, uint8_t *buffer, size_t size,
                                      size_t valid) {
    (void)size;
    size_t dropped = 0;
    if (cuptiActivityGetNumDroppedRecords(ctx, stream, &dropped) != CUPTI_SUCCESS) dropped = 0;
    pthread_mutex_lock(&g_lock);
    if (g_active) ns_cupti_buffer_done(g_active, buffer, valid, dropped);
    pthread_mutex_unlock(&g_lock);
}

/* ------------------------------------------------------------------ decoding */

static ns_copy_kind copy_kind(uint8_t k) {
    switch (k) {
    case CUPTI_ACTIVITY_MEMCPY_KIND_HTOD:
    case CUPTI_ACTIVITY_MEMCPY_KIND_HTOA:
        return NS_COPY_HTOD;
    case CUPTI_ACTIVITY_MEMCPY_KIND_DTOH:
    case CUPTI_ACTIVITY_MEMCPY_KIND_ATOH:
        return NS_COPY_DTOH;
    case CUPTI_ACTIVITY_MEMCPY_KIND_DTOD:
    case CUPTI_ACTIVITY_MEMCPY_KIND_DTOA:
    case CUPTI_ACTIVITY_MEMCPY_KIND_ATOD:
    case CUPTI_ACTIVITY_MEMCPY_KIND_ATOA:
        return NS_COPY_DTOD;
    case CUPTI_ACTIVITY_MEMCPY_KIND_HTOH:
        return NS_COPY_HTOH;
    case CUPTI_ACTIVITY_MEMCPY_KIND_PTOP:
        return NS_COPY_PTOP;
    default:
        return NS_COPY_NONE;
    }
}

/* One CUPTI record in neutral form. Kernel records change version across CUDA 13.x (new fields
 * appended); only the fields common to every version are read, through the installed toolkit's
 * struct. */
static void decode(const CUpti_Activity *rec, ns_cupti_raw *r) {
    memset(r, 0, sizeof *r);
    r->kind = NS_RAW_OTHER;
    switch (rec->kind) {
    case CUPTI_ACTIVITY_KIND_KERNEL:
    case CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL: {
        const CUpti_ActivityKernel10 *k = (const CUpti_ActivityKernel10 *)rec;
        r->kind = NS_RAW_KERNEL;
        r->correlation = k->correlationId;
        r->start_ns = k->start;
        r->end_ns = k->end;
        r->grid[0] = k->gridX;
        r->grid[1] = k->gridY;
        r->grid[2] = k->gridZ;
        r->block[0] = k->blockX;
        r->block[1] = k->blockY;
        r->block[2] = k->blockZ;
        r->stream = k->streamId;
        r->device = k->deviceId;
        r->name = k->name;
        break;
    }
    case CUPTI_ACTIVITY_KIND_MEMCPY: {
        const CUpti_ActivityMemcpy6 *m = (const CUpti_ActivityMemcpy6 *)rec;
        r->kind = NS_RAW_MEMCPY;
        r->correlation = m->correlationId;
        r->start_ns = m->start;
        r->end_ns = m->end;
        r->stream = m->streamId;
        r->device = m->deviceId;
        r->bytes = (int64_t)m->bytes;
        r->copy_kind = copy_kind(m->copyKind);
        break;
    }
    case CUPTI_ACTIVITY_KIND_MEMSET: {
        const CUpti_ActivityMemset4 *m = (const CUpti_ActivityMemset4 *)rec;
        r->kind = NS_RAW_MEMSET;
        r->correlation = m->correlationId;
        r->start_ns = m->start;
        r->end_ns = m->end;
        r->stream = m->streamId;
        r->device = m->deviceId;
        r->bytes = (int64_t)m->bytes;
        break;
    }
    case CUPTI_ACTIVITY_KIND_EXTERNAL_CORRELATION: {
        const CUpti_ActivityExternalCorrelation *e = (const CUpti_ActivityExternalCorrelation *)rec;
        if (e->externalKind != CUPTI_EXTERNAL_CORRELATION_KIND_CUSTOM0) break;
        r->kind = NS_RAW_EXTERNAL;
        r->correlation = e->correlationId;
        r->external_id = e->externalId;
        break;
    }
    default:
        break;
    }
}

void ns_cupti_walk_cupti(ns_cupti *c, uint8_t *buf, size_t valid, void *ud) {
    (void)ud;
    CUpti_Activity *rec = NULL;
    for (;;) {
        CUptiResult res = cuptiActivityGetNextRecord(buf, valid, &rec);
        if (res == CUPTI_ERROR_MAX_LIMIT_REACHED) break;
        if (res != CUPTI_SUCCESS) { /* a corrupt buffer: the rest of it is lost */
            ns_cupti_count_dropped(c, 1);
            break;
        }
        ns_cupti_raw r;
        decode(rec, &r);
        ns_cupti_record(c, &r);
    }
}

/* ------------------------------------------------------------------ backend */

static int be_push(uint64_t id, void *ud) {
    (void)ud;
    return cuptiActivityPushExternalCorrelationId(CUPTI_EXTERNAL_CORRELATION_KIND_CUSTOM0, id) ==
                   CUPTI_SUCCESS
               ? 0
               : -1;
}

static int be_pop(void *ud) {
    (void)ud;
    return cuptiActivityPopExternalCorrelationId(CUPTI_EXTERNAL_CORRELATION_KIND_CUSTOM0, NULL) ==
                   CUPTI_SUCCESS
               ? 0
               : -1;
}

static void be_flush(bool forced, void *ud) {
    (void)ud;
    cuptiActivityFlushAll(forced ? CUPTI_ACTIVITY_FLAG_FLUSH_FORCED : 0);
}

static void disable_kinds(size_t n) {
    while (n > 0) cuptiActivityDisable(kinds[--n].kind);
}

static void be_stop(void *ud) {
    (void)ud;
    disable_kinds(N_KINDS);
    cuptiActivityFlushAll(CUPTI_ACTIVITY_FLAG_FLUSH_FORCED);
    pthread_mutex_lock(&g_lock);
    g_active = NULL;
    g_busy = false;
    pthread_mutex_unlock(&g_lock);
}

/* ------------------------------------------------------------------ start */

/* What a CUPTI error means for the user, after CUPTI's own name for it. */
static const char *hint(CUptiResult r) {
    switch (r) {
    case CUPTI_ERROR_INSUFFICIENT_PRIVILEGES:
    case CUPTI_ERROR_VIRTUALIZED_DEVICE_INSUFFICIENT_PRIVILEGES:
        return " (GPU profiling is restricted to administrators: run as root, give the container "
               "CAP_SYS_ADMIN, or load the NVIDIA driver with "
               "NVreg_RestrictProfilingToAdminUsers=0)";
    case CUPTI_ERROR_MULTIPLE_SUBSCRIBERS_NOT_SUPPORTED:
    case CUPTI_ERROR_HARDWARE_BUSY:
        return " (another profiler, such as Nsight Systems, is attached to this process)";
    case CUPTI_ERROR_NOT_COMPATIBLE:
    case CUPTI_ERROR_NOT_INITIALIZED:
        return " (the NVIDIA driver is older than this CUDA 13 CUPTI, or not usable)";
    default:
        return "";
    }
}

static void cupti_why(char *why, size_t whylen, const char *what, CUptiResult r) {
    const char *s = NULL;
    if (cuptiGetResultString(r, &s) != CUPTI_SUCCESS || !s) s = "unknown CUPTI error";
    snprintf(why, whylen, "CUPTI cannot start: %s failed with %s%s", what, s, hint(r));
}

typedef CUresult (*cu_init_fn)(unsigned int);
typedef CUresult (*cu_count_fn)(int *);
typedef CUresult (*cu_errname_fn)(CUresult, const char **);

/* True when the NVIDIA driver loads and sees a device; else why says which part is missing. The
 * driver library stays loaded (the CUDA backend uses it too). */
static bool driver_ready(char *why, size_t whylen) {
    void *h = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        const char *e = dlerror();
        snprintf(why, whylen, "no NVIDIA driver: libcuda.so.1 cannot be loaded (%s)",
                 e ? e : "not found");
        return false;
    }
    cu_init_fn init = (cu_init_fn)(uintptr_t)dlsym(h, "cuInit");
    cu_count_fn count = (cu_count_fn)(uintptr_t)dlsym(h, "cuDeviceGetCount");
    cu_errname_fn errname = (cu_errname_fn)(uintptr_t)dlsym(h, "cuGetErrorName");
    if (!init || !count) {
        snprintf(why, whylen, "the NVIDIA driver library libcuda.so.1 lacks cuInit");
        return false;
    }
    CUresult r = init(0);
    if (r != CUDA_SUCCESS) {
        const char *name = NULL;
        if (!errname || errname(r, &name) != CUDA_SUCCESS || !name) name = "an unknown error";
        if (r == CUDA_ERROR_NO_DEVICE)
            snprintf(why, whylen, "no CUDA device: the NVIDIA driver sees none (%s)", name);
        else
            snprintf(why, whylen, "the NVIDIA driver cannot initialise: cuInit failed with %s",
                     name);
        return false;
    }
    int n = 0;
    if (count(&n) != CUDA_SUCCESS || n <= 0) {
        snprintf(why, whylen, "no CUDA device: the NVIDIA driver sees none");
        return false;
    }
    return true;
}

ns_cupti *ns_cupti_start(ns_gpu_sink sink, void *ud, int64_t first_step, int every_n_steps,
                         char *why, size_t whylen) {
    char dummy[1];
    if (!why || !whylen) {
        why = dummy;
        whylen = sizeof dummy;
    }
    why[0] = 0;
    pthread_mutex_lock(&g_lock);
    bool busy = g_busy;
    g_busy = true;
    pthread_mutex_unlock(&g_lock);
    if (busy) {
        snprintf(why, whylen, "a CUPTI collector is already running in this process");
        return NULL;
    }
    ns_cupti *c = NULL;
    if (!driver_ready(why, whylen)) goto fail;
    CUptiResult r = cuptiActivityRegisterTimestampCallback(monotonic_ns);
    if (r != CUPTI_SUCCESS) {
        cupti_why(why, whylen, "cuptiActivityRegisterTimestampCallback", r);
        goto fail;
    }
    r = cuptiActivityRegisterCallbacks(buffer_requested, buffer_completed);
    if (r != CUPTI_SUCCESS) {
        cupti_why(why, whylen, "cuptiActivityRegisterCallbacks", r);
        goto fail;
    }
    ns_cupti_config cfg;
    ns_cupti_config_default(&cfg);
    cfg.every_n_steps = every_n_steps;
    cfg.first_step = first_step;
    ns_cupti_backend be = {.push = be_push,
                           .pop = be_pop,
                           .flush = be_flush,
                           .walk = ns_cupti_walk_cupti,
                           .stop = be_stop};
    c = ns_cupti_new(&be, &cfg, sink, ud, why, whylen);
    if (!c) goto fail;
    pthread_mutex_lock(&g_lock);
    g_active = c;
    pthread_mutex_unlock(&g_lock);
    for (size_t i = 0; i < N_KINDS; i++) {
        r = cuptiActivityEnable(kinds[i].kind);
        if (r != CUPTI_SUCCESS) {
            char what[64];
            snprintf(what, sizeof what, "enabling %s activity", kinds[i].name);
            char msg[512];
            cupti_why(msg, sizeof msg, what, r);
            ns_cupti_stop(c, NULL); /* disables the kinds, clears g_active and g_busy */
            snprintf(why, whylen, "%s", msg);
            return NULL;
        }
    }
    return c;
fail:
    pthread_mutex_lock(&g_lock);
    g_busy = false;
    pthread_mutex_unlock(&g_lock);
    return NULL;
}
