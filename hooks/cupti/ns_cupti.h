/* nnscope GPU activity collector: CUPTI kernel, memcpy and memset records attributed to the
 * module call and phase (forward, backward, optimizer) that launched them. See docs/cupti.md.
 *
 * The recorder brackets engine work with ns_cupti_push()/ns_cupti_pop() (each module call, each
 * backward node, the optimizer step); every CUDA launch inside the innermost bracket is tied to
 * it through CUPTI's external correlation ids. At each step end, ns_cupti_step_end() asks CUPTI
 * for the completed activity buffers, joins the records with their brackets and hands each one to
 * the sink, on the calling thread. Nothing is written from CUPTI's own threads.
 *
 * Thread rules: start, push, pop, step_end and stop on one thread (the training thread: CUPTI's
 * correlation stack is per thread; kernels launched from other threads are delivered with module
 * -1 and phase NS_PHASE_OTHER).
 *
 * The header is plain C and does not include CUPTI: it is the same in builds without CUPTI, where
 * ns_cupti_start() returns NULL with the reason "built without CUPTI".
 */
#ifndef NNSCOPE_CUPTI_H
#define NNSCOPE_CUPTI_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    NS_PHASE_FORWARD = 0,
    NS_PHASE_BACKWARD = 1,
    NS_PHASE_OPTIMIZER = 2,
    NS_PHASE_OTHER = 3, /* outside any bracket: loss, zero_grad, data copies, lost correlation */
} ns_gpu_phase;

typedef enum {
    NS_COPY_NONE = 0, /* not a memcpy, or a kind CUPTI does not classify */
    NS_COPY_HTOD = 1,
    NS_COPY_DTOH = 2,
    NS_COPY_DTOD = 3,
    NS_COPY_HTOH = 4,
    NS_COPY_PTOP = 5, /* peer to peer (another device) */
} ns_copy_kind;

/* Longest kernel name delivered (bytes, without the NUL). Longer demangled names are shortened:
 * nested template arguments become <...>, and past that the name is cut and tagged with a hash of
 * the mangled name so two kernels never share a name. */
#define NS_GPU_NAME_MAX 1024

/* One GPU activity, attributed. Strings are static or interned by the collector: they stay valid
 * until ns_cupti_stop(). */
typedef struct {
    int64_t step;      /* the step whose bracket launched it */
    int64_t module_id; /* innermost module (ns_module.id), -1: none (optimizer, outside, lost) */
    ns_gpu_phase phase;
    const char *kind; /* "kernel", "memcpy" or "memset" (the kernels.kind column) */
    const char *name; /* demangled kernel name; "memcpy HtoD", "memset"... for the others */
    uint64_t start_ns, end_ns; /* CLOCK_MONOTONIC nanoseconds, the clock of the engine's hooks */
    int32_t grid[3], block[3]; /* kernels; 0 otherwise */
    uint32_t stream;           /* CUPTI stream id */
    int64_t bytes;             /* memcpy and memset: bytes moved or set; -1 for kernels */
    ns_copy_kind copy_kind;    /* memcpy direction */
    uint32_t device;           /* CUDA device ordinal */
} ns_gpu_record;

/* Receives each record; called only from ns_cupti_step_end() and ns_cupti_stop(), on their
 * thread. rec and its strings are valid during the call (strings: until ns_cupti_stop()). */
typedef void (*ns_gpu_sink)(const ns_gpu_record *rec, void *ud);

typedef struct ns_cupti ns_cupti;

/* Counters since start (a consistent snapshot on the collector's thread). */
typedef struct {
    uint64_t kernels, memcpys, memsets; /* records delivered to the sink */
    uint64_t unmatched;      /* delivered with module -1 / NS_PHASE_OTHER: correlation not found */
    uint64_t skipped;        /* records of steps outside the sampling interval, not delivered */
    uint64_t dropped;        /* records lost: CUPTI had no buffer, or the pending list was full */
    uint64_t buffers_denied; /* buffer requests refused because every pool buffer was in use */
    uint64_t ignored;        /* records of other kinds (API calls, ...), read and ignored */
} ns_cupti_stats;

/* Starts collecting kernels (concurrent kernel kind), memcpy and memset records, with runtime and
 * driver API records and external correlation, into a preallocated buffer pool. Records of step
 * s are delivered when s % every_n_steps == 0 (every_n_steps < 1 means 1); first_step is the
 * index of the step in progress (ns_step_index()). sink receives each record (see ns_gpu_sink).
 * Returns NULL when collection cannot start, with one line saying why in why (whylen bytes): the
 * build has no CUPTI, there is no NVIDIA driver or no device, CUPTI refuses (insufficient
 * privileges, another profiler attached), or a collector is already running. Training goes on
 * either way; the recorder stores why in runs.cupti_status. */
ns_cupti *ns_cupti_start(ns_gpu_sink sink, void *ud, int64_t first_step, int every_n_steps,
                         char *why, size_t whylen);

/* Opens a bracket: launches on this thread until the matching pop belong to (step, module_id,
 * phase); module_id -1 for none. Brackets nest; the innermost wins. Cheap (no allocation); in
 * steps outside the sampling interval it does not reach CUPTI at all. c may be NULL (no-op). */
void ns_cupti_push(ns_cupti *c, int64_t step, int64_t module_id, ns_gpu_phase phase);

/* Closes the innermost bracket. A pop without a push (hooks registered in the middle of a module
 * call) is ignored. c may be NULL (no-op). */
void ns_cupti_pop(ns_cupti *c);

/* Ends step: asks CUPTI for every completed buffer (cuptiActivityFlushAll) when the step is
 * sampled, delivers the records gathered so far to the sink, and opens step + 1: launches outside
 * any bracket from now on belong to (step + 1, -1, NS_PHASE_OTHER). Records of kernels still
 * running are delivered at a later step end (with their own step). c may be NULL (no-op). */
void ns_cupti_step_end(ns_cupti *c, int64_t step);

/* Flushes everything (forced), delivers it, disables collection and frees c. When final is not
 * NULL it receives the counters of the whole collection, records delivered by this call included.
 * NULL c is a no-op (final is then zeroed). */
void ns_cupti_stop(ns_cupti *c, ns_cupti_stats *final);

/* Counters since start. */
void ns_cupti_get_stats(const ns_cupti *c, ns_cupti_stats *out);

/* One line for the recording (an events 'note'): "cupti: 120 kernels, 4 memcpy, 2 memset,
 * 0 unmatched, 0 skipped, 0 dropped, 0 buffers denied". Returns out. */
char *ns_cupti_stats_text(const ns_cupti_stats *s, char *out, size_t len);

/* "forward", "backward", "optimizer", "other": the kernels.phase column. */
const char *ns_gpu_phase_name(ns_gpu_phase phase);

#endif
