/* Internals of the GPU activity collector (ns_cupti.h), shared by the collector core
 * (collect.c: attribution, buffer pool, sampling, names; plain C), the CUPTI backend (real.c: the
 * only file that includes CUPTI) and the tests, which drive the core through a fake backend with
 * synthetic records.
 *
 * Flow: CUPTI asks for a buffer (ns_cupti_buffer_request, any thread) and later hands it back
 * full (ns_cupti_buffer_done, any thread): both only touch the pool under a mutex. On the
 * collector's thread, step_end and stop take the completed buffers and let the backend decode
 * them (backend.walk), which passes every record to ns_cupti_record(); the core joins records
 * with their brackets and calls the sink. */
#ifndef NNSCOPE_CUPTI_COLLECT_H
#define NNSCOPE_CUPTI_COLLECT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ns_cupti.h"

/* One activity record in neutral form, as decoded by a backend. */
typedef enum {
    NS_RAW_KERNEL,
    NS_RAW_MEMCPY,
    NS_RAW_MEMSET,
    NS_RAW_EXTERNAL, /* external correlation: correlation -> external_id (our bracket id) */
    NS_RAW_OTHER,    /* any other kind: counted and ignored */
} ns_raw_kind;

typedef struct {
    ns_raw_kind kind;
    uint32_t correlation; /* CUPTI correlationId (of the launching API call) */
    uint64_t external_id; /* NS_RAW_EXTERNAL */
    uint64_t start_ns, end_ns;
    int32_t grid[3], block[3];
    uint32_t stream, device;
    int64_t bytes; /* memcpy, memset */
    ns_copy_kind copy_kind;
    const char *name; /* kernels: mangled name, valid during the call only */
} ns_cupti_raw;

/* What the core needs from CUPTI (or from a test). Every function gets ud. */
typedef struct {
    /* push / pop an external correlation id on the calling thread; 0 on success */
    int (*push)(uint64_t id, void *ud);
    int (*pop)(void *ud);
    /* ask CUPTI to complete buffers now (forced: even with records still in flight); buffers
     * come back through ns_cupti_buffer_done, during the call or later */
    void (*flush)(bool forced, void *ud);
    /* decode the valid bytes of a completed buffer: ns_cupti_record() for every record */
    void (*walk)(ns_cupti *c, uint8_t *buf, size_t valid, void *ud);
    /* disable collection (stop calls it after the final flush and before freeing) */
    void (*stop)(void *ud);
    void *ud;
} ns_cupti_backend;

/* Sizes of the collector's bounded tables. */
typedef struct {
    int every_n_steps;   /* deliver steps s with s % every_n_steps == 0; 1 */
    int64_t first_step;  /* the step in progress at start; 0 */
    int n_buffers;       /* activity buffers in the pool; 8 */
    size_t buffer_bytes; /* bytes per buffer (multiple of 8); 4 MiB */
    int corr_slots;      /* correlation id -> bracket table (power of two); 1 << 18 */
    int ctx_slots;       /* bracket ids remembered (power of two); 1 << 14 */
    int max_pending;     /* records waiting for their correlation record; 65536 */
    int pending_steps;   /* step ends a record may wait before it is delivered unmatched; 3 */
    int max_names;       /* distinct kernel names interned; 8192 */
} ns_cupti_config;

/* Fills cfg with the defaults above. */
void ns_cupti_config_default(ns_cupti_config *cfg);

/* Creates a collector over backend be (copied). Returns NULL when memory for the pool and tables
 * cannot be allocated, with the reason in why. Opens the bracket (first_step, -1, OTHER) through
 * be->push. ns_cupti_stop() frees it. */
ns_cupti *ns_cupti_new(const ns_cupti_backend *be, const ns_cupti_config *cfg, ns_gpu_sink sink,
                       void *ud, char *why, size_t whylen);

/* A free pool buffer (8-byte aligned, *size bytes) for CUPTI to fill, or NULL when every buffer
 * is in use (counted in buffers_denied; CUPTI then drops records and reports them). Any thread. */
uint8_t *ns_cupti_buffer_request(ns_cupti *c, size_t *size);

/* A buffer from ns_cupti_buffer_request, filled with valid bytes of records; dropped is the
 * number of records CUPTI could not store. Queued for the collector's thread. Any thread. */
void ns_cupti_buffer_done(ns_cupti *c, uint8_t *buf, size_t valid, uint64_t dropped);

/* One decoded record (backend.walk, on the collector's thread). */
void ns_cupti_record(ns_cupti *c, const ns_cupti_raw *r);

/* Counts records lost while decoding (a corrupt buffer). Collector's thread. */
void ns_cupti_count_dropped(ns_cupti *c, uint64_t n);

/* Demangles an Itanium C++ ABI name ("_Z...") the way c++filt prints it: a malloc'd string, or
 * NULL when name is not mangled or uses a construct this demangler does not know (the caller
 * keeps the mangled name). */
char *ns_demangle(const char *name);

/* The name a kernel is delivered with: demangled when possible, at most NS_GPU_NAME_MAX bytes
 * (see ns_cupti.h). A malloc'd string, NULL only when out of memory. */
char *ns_kernel_display_name(const char *mangled);

#ifdef NS_HAVE_CUPTI
/* The CUPTI decoder (real.c): walks a buffer filled by CUPTI with cuptiActivityGetNextRecord and
 * passes kernel, memcpy, memset and external correlation records to ns_cupti_record(). Works
 * without a GPU on hand-built buffers, which is how the tests drive the real decoding path. */
void ns_cupti_walk_cupti(ns_cupti *c, uint8_t *buf, size_t valid, void *ud);
#endif

#endif
