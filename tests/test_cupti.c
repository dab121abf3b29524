/* The GPU activity collector (hooks/cupti/) on the CPU: attribution, record ordering across
 * buffers, copies, sampling, the buffer pool and kernel names, driven by a simulated CUPTI.
 *
 * The simulator plays CUPTI's part: a per-thread external-id stack fed by the collector's push and
 * pop, correlation ids for every "API call", an EXTERNAL_CORRELATION record (when a bracket is
 * open) and an API record per call into an API buffer, and the kernel / memcpy / memset records
 * into a device buffer, both buffers taken from and handed back to the collector's pool exactly as
 * CUPTI does. In CUPTI builds the records are the toolkit's own structs (CUpti_ActivityKernel10,
 * ...) decoded by the real decoder (cuptiActivityGetNextRecord needs no GPU); in builds without
 * CUPTI they are the collector's neutral records. Also pins ns_cupti_start() failing with a clear
 * reason on a machine without an NVIDIA driver, and the demangler against c++filt's output. */
#include <dlfcn.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "collect.h"

#ifdef NS_HAVE_CUPTI
#include <cupti_activity.h>
#endif

/* ------------------------------------------------------------------ the simulated CUPTI */

#define MAX_LAUNCH 4096

typedef enum { L_KERNEL, L_MEMCPY, L_MEMSET } launch_kind;

typedef struct {
    uint8_t *buf;
    size_t size, used;
    uint64_t dropped;       /* records that found no buffer, reported with the next completion */
    uint64_t dropped_total; /* all of them */
} stream_buf;

typedef struct {
    ns_cupti *c;
    uint64_t stack[64];
    int depth;
    int pushes, pops, failed_pushes;
    bool fail_push;
    uint64_t pushed_ids[256];
    int n_pushed_ids;
    uint32_t next_corr;
    uint64_t clock;
    stream_buf api, dev;
    bool hold_api;   /* flush completes the device buffer only (correlation records late) */
    bool dev_first;  /* flush completes the device buffer before the API buffer */
    bool other_kind; /* correlation records of another external kind (ignored) */
    int flushes, forced_flushes;
    bool stopped;
    /* ground truth of every launch */
    struct {
        int64_t step, module_id;
        ns_gpu_phase phase;
        uint64_t dur;
        bool attributed;
    } truth[MAX_LAUNCH];
    int n_launch;
    int64_t cur_step;
} sim;

static sim S;

/* The records the sink received. */
typedef struct {
    ns_gpu_record rec;
    char name[NS_GPU_NAME_MAX + 1];
} got_rec;
static got_rec got[MAX_LAUNCH];
static int n_got;

static void sink(const ns_gpu_record *rec, void *ud) {
    assert_ptr_equal(ud, &S);
    assert_true(n_got < MAX_LAUNCH);
    got[n_got].rec = *rec;
    snprintf(got[n_got].name, sizeof got[n_got].name, "%s", rec->name);
    n_got++;
}

/* Hands b's buffer back, with the records dropped since the last completion (CUPTI reports
 * drops with the next buffer it completes). */
static void complete(stream_buf *b) {
    if (!b->buf) return;
    ns_cupti_buffer_done(S.c, b->buf, b->used, b->dropped);
    b->buf = NULL;
    b->used = 0;
    b->dropped = 0;
}

/* Room for n bytes in stream b: completes a full buffer and asks the pool for a new one, as
 * CUPTI does; NULL when the pool has none (the record is dropped and counted). */
static uint8_t *room(stream_buf *b, size_t n) {
    if (b->buf && b->used + n > b->size) complete(b);
    if (!b->buf) {
        b->buf = ns_cupti_buffer_request(S.c, &b->size);
        b->used = 0;
        if (!b->buf) {
            b->dropped++;
            b->dropped_total++;
            return NULL;
        }
    }
    uint8_t *p = b->buf + b->used;
    b->used += n;
    return p;
}

#ifdef NS_HAVE_CUPTI
/* Real CUPTI records, laid out back to back as CUPTI writes them. */
static void put_external(uint32_t corr, uint64_t ext) {
    CUpti_ActivityExternalCorrelation e;
    memset(&e, 0, sizeof e);
    e.kind = CUPTI_ACTIVITY_KIND_EXTERNAL_CORRELATION;
    e.externalKind = S.other_kind ? CUPTI_EXTERNAL_CORRELATION_KIND_CUSTOM1
                                  : CUPTI_EXTERNAL_CORRELATION_KIND_CUSTOM0;
    e.externalId = ext;
    e.correlationId = corr;
    uint8_t *p = room(&S.api, sizeof e);
    if (p) memcpy(p, &e, sizeof e);
}

static void put_api(uint32_t corr) {
    CUpti_ActivityAPI a;
    memset(&a, 0, sizeof a);
    a.kind = CUPTI_ACTIVITY_KIND_RUNTIME;
    a.correlationId = corr;
    a.cbid = 211; /* cudaLaunchKernel */
    uint8_t *p = room(&S.api, sizeof a);
    if (p) memcpy(p, &a, sizeof a);
}

static void put_activity(launch_kind k, uint32_t corr, const char *name, uint64_t start,
                         uint64_t end, int64_t bytes, ns_copy_kind ck) {
    if (k == L_KERNEL) {
        CUpti_ActivityKernel10 r;
        memset(&r, 0, sizeof r);
        r.kind = CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL;
        r.correlationId = corr;
        r.start = start;
        r.end = end;
        r.gridX = 4;
        r.gridY = 2;
        r.gridZ = 1;
        r.blockX = 256;
        r.blockY = 1;
        r.blockZ = 1;
        r.streamId = 7;
        r.deviceId = 0;
        r.name = name;
        uint8_t *p = room(&S.dev, sizeof r);
        if (p) memcpy(p, &r, sizeof r);
    } else if (k == L_MEMCPY) {
        static const uint8_t cupti_kind[] = {
            [NS_COPY_NONE] = CUPTI_ACTIVITY_MEMCPY_KIND_UNKNOWN,
            [NS_COPY_HTOD] = CUPTI_ACTIVITY_MEMCPY_KIND_HTOD,
            [NS_COPY_DTOH] = CUPTI_ACTIVITY_MEMCPY_KIND_DTOH,
            [NS_COPY_DTOD] = CUPTI_ACTIVITY_MEMCPY_KIND_DTOD,
            [NS_COPY_HTOH] = CUPTI_ACTIVITY_MEMCPY_KIND_HTOH,
            [NS_COPY_PTOP] = CUPTI_ACTIVITY_MEMCPY_KIND_PTOP,
        };
        CUpti_ActivityMemcpy6 r;
        memset(&r, 0, sizeof r);
        r.kind = CUPTI_ACTIVITY_KIND_MEMCPY;
        r.copyKind = cupti_kind[ck];
        r.bytes = (uint64_t)bytes;
        r.start = start;
        r.end = end;
        r.streamId = 7;
        r.correlationId = corr;
        uint8_t *p = room(&S.dev, sizeof r);
        if (p) memcpy(p, &r, sizeof r);
    } else {
        CUpti_ActivityMemset4 r;
        memset(&r, 0, sizeof r);
        r.kind = CUPTI_ACTIVITY_KIND_MEMSET;
        r.bytes = (uint64_t)bytes;
        r.start = start;
        r.end = end;
        r.streamId = 7;
        r.correlationId = corr;
        uint8_t *p = room(&S.dev, sizeof r);
        if (p) memcpy(p, &r, sizeof r);
    }
}

static void walk(ns_cupti *c, uint8_t *buf, size_t valid, void *ud) {
    ns_cupti_walk_cupti(c, buf, valid, ud);
}
#else
/* Builds without CUPTI: the collector's neutral records, back to back. */
static void put_raw(stream_buf *b, const ns_cupti_raw *r) {
    uint8_t *p = room(b, sizeof *r);
    if (p) memcpy(p, r, sizeof *r);
}

static void put_external(uint32_t corr, uint64_t ext) {
    ns_cupti_raw r = {.kind = S.other_kind ? NS_RAW_OTHER : NS_RAW_EXTERNAL,
                      .correlation = corr,
                      .external_id = ext};
    put_raw(&S.api, &r);
}

static void put_api(uint32_t corr) {
    ns_cupti_raw r = {.kind = NS_RAW_OTHER, .correlation = corr};
    put_raw(&S.api, &r);
}

static void put_activity(launch_kind k, uint32_t corr, const char *name, uint64_t start,
                         uint64_t end, int64_t bytes, ns_copy_kind ck) {
    ns_cupti_raw r = {.kind = k == L_KERNEL   ? NS_RAW_KERNEL
                              : k == L_MEMCPY ? NS_RAW_MEMCPY
                                              : NS_RAW_MEMSET,
                      .correlation = corr,
                      .start_ns = start,
                      .end_ns = end,
                      .grid = {4, 2, 1},
                      .block = {256, 1, 1},
                      .stream = 7,
                      .bytes = k == L_KERNEL ? 0 : bytes,
                      .copy_kind = ck,
                      .name = name};
    put_raw(&S.dev, &r);
}

static void walk(ns_cupti *c, uint8_t *buf, size_t valid, void *ud) {
    (void)ud;
    for (size_t off = 0; off + sizeof(ns_cupti_raw) <= valid; off += sizeof(ns_cupti_raw)) {
        ns_cupti_raw r;
        memcpy(&r, buf + off, sizeof r);
        ns_cupti_record(c, &r);
    }
}
#endif

/* One API call launching one activity of duration dur, as CUPTI records it. */
static void launch(launch_kind k, const char *name, uint64_t dur, int64_t bytes, ns_copy_kind ck) {
    uint32_t corr = S.next_corr++;
    if (S.depth > 0) put_external(corr, S.stack[S.depth - 1]);
    put_api(corr);
    uint64_t start = S.clock;
    S.clock += dur + 100;
    put_activity(k, corr, name, start, start + dur, bytes, ck);
    assert_true(S.n_launch < MAX_LAUNCH);
    S.truth[S.n_launch].dur = dur;
    S.n_launch++;
}

static void kernel(const char *name, uint64_t dur) {
    launch(L_KERNEL, name, dur, 0, NS_COPY_NONE);
}

/* An API call with no GPU activity (cudaGetLastError): only its records. */
static void api_call(void) {
    uint32_t corr = S.next_corr++;
    if (S.depth > 0) put_external(corr, S.stack[S.depth - 1]);
    put_api(corr);
}

static int sim_push(uint64_t id, void *ud) {
    assert_ptr_equal(ud, &S);
    if (S.fail_push) {
        S.failed_pushes++;
        return -1;
    }
    assert_true(S.depth < 64);
    S.stack[S.depth++] = id;
    S.pushes++;
    if (S.n_pushed_ids < 256) S.pushed_ids[S.n_pushed_ids++] = id;
    return 0;
}

static int sim_pop(void *ud) {
    assert_ptr_equal(ud, &S);
    assert_true(S.depth > 0);
    S.depth--;
    S.pops++;
    return 0;
}

static void sim_complete_all(void) {
    if (S.dev_first) {
        complete(&S.dev);
        if (!S.hold_api) complete(&S.api);
    } else {
        if (!S.hold_api) complete(&S.api);
        complete(&S.dev);
    }
}

static void sim_flush(bool forced, void *ud) {
    assert_ptr_equal(ud, &S);
    if (forced)
        S.forced_flushes++;
    else
        S.flushes++;
    sim_complete_all();
}

static void sim_stop(void *ud) {
    assert_ptr_equal(ud, &S);
    S.stopped = true;
    S.hold_api = false;
    sim_complete_all();
}

static ns_cupti *start_sim(int every_n, int n_buffers, size_t buffer_bytes, int pending_steps) {
    memset(&S, 0, sizeof S);
    n_got = 0;
    S.next_corr = 1000;
    S.clock = 1000000;
    ns_cupti_backend be = {.push = sim_push,
                           .pop = sim_pop,
                           .flush = sim_flush,
                           .walk = walk,
                           .stop = sim_stop,
                           .ud = &S};
    ns_cupti_config cfg;
    ns_cupti_config_default(&cfg);
    cfg.every_n_steps = every_n;
    cfg.n_buffers = n_buffers;
    cfg.buffer_bytes = buffer_bytes;
    cfg.corr_slots = 1 << 12;
    cfg.ctx_slots = 1 << 8;
    cfg.max_pending = 512;
    cfg.pending_steps = pending_steps;
    cfg.max_names = 64;
    char why[128] = "";
    S.c = ns_cupti_new(&be, &cfg, sink, &S, why, sizeof why);
    assert_non_null(S.c);
    assert_int_equal(S.depth, 1); /* the bottom bracket of step 0 */
    return S.c;
}

/* Launch bookkeeping: marks the last launch with what it must be attributed to. */
static void expect_last(int64_t step, int64_t module_id, ns_gpu_phase phase) {
    S.truth[S.n_launch - 1].step = step;
    S.truth[S.n_launch - 1].module_id = module_id;
    S.truth[S.n_launch - 1].phase = phase;
    S.truth[S.n_launch - 1].attributed = true;
}

static void push(int64_t step, int64_t module, ns_gpu_phase phase) {
    ns_cupti_push(S.c, step, module, phase);
}

static void assert_got(int i, int64_t step, int64_t module, ns_gpu_phase phase) {
    assert_true(i < n_got);
    if (got[i].rec.step != step || got[i].rec.module_id != module || got[i].rec.phase != phase)
        fail_msg("record %d (%s): got step %lld module %lld %s, want step %lld module %lld %s", i,
                 got[i].name, (long long)got[i].rec.step, (long long)got[i].rec.module_id,
                 ns_gpu_phase_name(got[i].rec.phase), (long long)step, (long long)module,
                 ns_gpu_phase_name(phase));
}

/* ------------------------------------------------------------------ attribution */

/* A training step as the recorder brackets it: nested module calls (the innermost wins), work
 * outside any module, backward nodes, the optimizer. */
static void test_attribution_innermost_module_and_phase(void **state) {
    (void)state;
    start_sim(1, 4, 64 * 1024, 3);
    push(0, 1, NS_PHASE_FORWARD); /* Sequential */
    push(0, 2, NS_PHASE_FORWARD); /* Linear inside it */
    kernel("_Z11gemm_kernelPKfS0_Pfiii", 5000);
    api_call();
    kernel("_Z8bias_addPfPKfll", 700);
    ns_cupti_pop(S.c);
    push(0, 3, NS_PHASE_FORWARD); /* ReLU */
    kernel("relu_kernel", 300);
    ns_cupti_pop(S.c);
    kernel("_Z8bias_addPfPKfll", 650); /* in the Sequential itself */
    ns_cupti_pop(S.c);
    kernel("ce_rows_kernel", 900); /* loss: outside any module */
    push(0, -1, NS_PHASE_BACKWARD);
    push(0, 3, NS_PHASE_BACKWARD);
    kernel("relu_bwd_kernel", 310);
    ns_cupti_pop(S.c);
    push(0, 2, NS_PHASE_BACKWARD);
    kernel("_Z11gemm_kernelPKfS0_Pfiii", 5100);
    ns_cupti_pop(S.c);
    kernel("ce_bwd_kernel", 400); /* backward outside a module node */
    ns_cupti_pop(S.c);
    push(0, -1, NS_PHASE_OPTIMIZER);
    kernel("adam_kernel", 1200);
    ns_cupti_pop(S.c);
    assert_int_equal(S.depth, 1);
    /* the same (module, phase) pushed again in a step reuses its external id */
    assert_int_equal(S.pushed_ids[2], S.pushed_ids[1] + 1); /* ids: base, Sequential, Linear */
    push(0, 2, NS_PHASE_FORWARD);
    assert_int_equal(S.stack[S.depth - 1], S.pushed_ids[2]);
    ns_cupti_pop(S.c);
    ns_cupti_step_end(S.c, 0);

    assert_int_equal(n_got, 9);
    int64_t want_mod[] = {2, 2, 3, 1, -1, 3, 2, -1, -1};
    ns_gpu_phase want_ph[] = {NS_PHASE_FORWARD,  NS_PHASE_FORWARD,  NS_PHASE_FORWARD,
                              NS_PHASE_FORWARD,  NS_PHASE_OTHER,    NS_PHASE_BACKWARD,
                              NS_PHASE_BACKWARD, NS_PHASE_BACKWARD, NS_PHASE_OPTIMIZER};
    for (int i = 0; i < 9; i++) assert_got(i, 0, want_mod[i], want_ph[i]);
    assert_string_equal(got[0].name,
                        "gemm_kernel(float const*, float const*, float*, int, int, int)");
    assert_string_equal(got[1].name, "bias_add(float*, float const*, long, long)");
    assert_ptr_equal(got[1].rec.name, got[3].rec.name); /* interned once */
    assert_string_equal(got[2].name, "relu_kernel");    /* extern "C" names stay as they are */
    assert_string_equal(got[0].rec.kind, "kernel");
    assert_int_equal(got[0].rec.grid[0], 4);
    assert_int_equal(got[0].rec.grid[1], 2);
    assert_int_equal(got[0].rec.block[0], 256);
    assert_int_equal(got[0].rec.stream, 7);
    assert_int_equal(got[0].rec.bytes, -1);
    assert_int_equal(got[0].rec.end_ns - got[0].rec.start_ns, 5000);
    ns_cupti_stats st;
    ns_cupti_get_stats(S.c, &st);
    assert_int_equal(st.kernels, 9);
    assert_int_equal(st.unmatched, 0);
    assert_int_equal(st.dropped, 0);
    assert_int_equal(st.ignored, 10); /* one API record per call */
    ns_cupti_stop(S.c, NULL);
    assert_true(S.stopped);
    assert_int_equal(S.depth, 0); /* every push popped, the bottom bracket too */
}

/* Launches after a step end belong to the next step; outside brackets to (step, -1, other). */
static void test_steps_and_bottom_bracket(void **state) {
    (void)state;
    start_sim(1, 4, 64 * 1024, 3);
    kernel("k_a", 100); /* before any push: step 0 */
    ns_cupti_step_end(S.c, 0);
    assert_int_equal(S.depth, 1);
    kernel("k_b", 100); /* step 1 now */
    push(1, 5, NS_PHASE_FORWARD);
    kernel("k_c", 100);
    ns_cupti_pop(S.c);
    ns_cupti_step_end(S.c, 1);
    assert_int_equal(n_got, 3);
    assert_got(0, 0, -1, NS_PHASE_OTHER);
    assert_got(1, 1, -1, NS_PHASE_OTHER);
    assert_got(2, 1, 5, NS_PHASE_FORWARD);
    /* a step ended inside a bracket keeps CUPTI's stack balanced */
    push(2, 6, NS_PHASE_FORWARD);
    ns_cupti_step_end(S.c, 2);
    kernel("k_d", 100);
    ns_cupti_pop(S.c);
    ns_cupti_step_end(S.c, 3);
    assert_int_equal(S.depth, 1);
    assert_got(3, 2, 6, NS_PHASE_FORWARD);
    /* a pop without a push (hooks installed mid-call) is ignored */
    int pops0 = S.pops;
    ns_cupti_pop(S.c);
    assert_int_equal(S.pops, pops0);
    assert_int_equal(S.depth, 1);
    /* a push CUPTI refused is not popped */
    S.fail_push = true;
    push(4, 7, NS_PHASE_FORWARD);
    S.fail_push = false;
    int pops = S.pops;
    ns_cupti_pop(S.c);
    assert_int_equal(S.pops, pops);
    assert_int_equal(S.failed_pushes, 1);
    ns_cupti_stop(S.c, NULL);
    assert_int_equal(S.depth, 0);
}

/* ------------------------------------------------------------------ ordering */

/* Kernel records before their correlation records (device buffer completed first), and
 * correlation records a step late: attributed all the same, to their own step. */
static void test_records_in_any_order_across_buffers(void **state) {
    (void)state;
    start_sim(1, 8, 4096, 3);
    S.dev_first = true;
    push(0, 1, NS_PHASE_FORWARD);
    for (int i = 0; i < 40; i++) { /* several buffers of each stream */
        kernel("_Z4stepv", 1000 + (uint64_t)i);
        expect_last(0, 1, NS_PHASE_FORWARD);
    }
    ns_cupti_pop(S.c);
    ns_cupti_step_end(S.c, 0);
    assert_int_equal(n_got, 40);
    for (int i = 0; i < 40; i++) assert_got(i, 0, 1, NS_PHASE_FORWARD);

    S.hold_api = true; /* correlation records of step 1 arrive after step 2 */
    push(1, 2, NS_PHASE_BACKWARD);
    kernel("_Z4stepv", 500);
    ns_cupti_pop(S.c);
    ns_cupti_step_end(S.c, 1);
    assert_int_equal(n_got, 40); /* waiting */
    S.hold_api = false;
    push(2, 3, NS_PHASE_OPTIMIZER);
    kernel("_Z4stepv", 600);
    ns_cupti_pop(S.c);
    ns_cupti_step_end(S.c, 2);
    assert_int_equal(n_got, 42);
    for (int i = 40; i < 42; i++) {
        if (got[i].rec.end_ns - got[i].rec.start_ns == 500)
            assert_got(i, 1, 2, NS_PHASE_BACKWARD);
        else
            assert_got(i, 2, 3, NS_PHASE_OPTIMIZER);
    }
    ns_cupti_stats st;
    ns_cupti_get_stats(S.c, &st);
    assert_int_equal(st.unmatched, 0);
    ns_cupti_stop(S.c, NULL);
}

/* A record whose correlation record never comes is delivered after pending_steps sampled step
 * ends, unattributed, and counted. */
static void test_lost_correlation_delivered_unmatched(void **state) {
    (void)state;
    start_sim(1, 8, 4096, 2);
    S.hold_api = true;
    push(0, 1, NS_PHASE_FORWARD);
    kernel("_Z4lostv", 100);
    ns_cupti_pop(S.c);
    ns_cupti_buffer_done(S.c, S.api.buf, 0, 0); /* the API buffer comes back empty */
    S.api.buf = NULL;
    S.api.used = 0;
    ns_cupti_step_end(S.c, 0);
    ns_cupti_step_end(S.c, 1);
    assert_int_equal(n_got, 0);
    ns_cupti_step_end(S.c, 2); /* third sampled step end: waited more than 2 */
    assert_int_equal(n_got, 1);
    assert_got(0, 2, -1, NS_PHASE_OTHER);
    assert_string_equal(got[0].name, "lost()");
    ns_cupti_stats st;
    ns_cupti_get_stats(S.c, &st);
    assert_int_equal(st.unmatched, 1);
    assert_int_equal(st.kernels, 1);
    S.hold_api = false;
    ns_cupti_stop(S.c, NULL);
}

/* A bracket forgotten because many newer ones took its slot (ctx_slots = 256 here) never lends
 * its slot's new owner to an old record: the record goes out unmatched, not misattributed. */
static void test_forgotten_bracket_not_misattributed(void **state) {
    (void)state;
    start_sim(1, 8, 64 * 1024, 1);
    S.hold_api = true;
    push(0, 1, NS_PHASE_FORWARD);
    kernel("_Z3oldv", 100);
    ns_cupti_pop(S.c);
    ns_cupti_step_end(S.c, 0);
    for (int64_t m = 100; m < 400; m++) { /* 300 new brackets in step 1 */
        push(1, m, NS_PHASE_FORWARD);
        ns_cupti_pop(S.c);
    }
    S.hold_api = false;
    ns_cupti_step_end(S.c, 1); /* the old correlation record arrives now */
    assert_int_equal(n_got, 1);
    assert_got(0, 1, -1, NS_PHASE_OTHER);
    ns_cupti_stats st;
    ns_cupti_get_stats(S.c, &st);
    assert_int_equal(st.unmatched, 1);
    ns_cupti_stop(S.c, NULL);
}

/* Records still in flight at stop are flushed (forced) and delivered. */
static void test_stop_delivers_everything(void **state) {
    (void)state;
    start_sim(1, 4, 64 * 1024, 3);
    push(0, 1, NS_PHASE_FORWARD);
    kernel("_Z2k1v", 10);
    ns_cupti_pop(S.c);
    S.hold_api = true;
    push(0, 2, NS_PHASE_FORWARD);
    kernel("_Z2k2v", 20);
    ns_cupti_pop(S.c);
    ns_cupti_stats fin;
    ns_cupti_stop(S.c, &fin); /* sim_stop releases the held API buffer */
    assert_int_equal(S.forced_flushes, 1);
    assert_int_equal(n_got, 2);
    assert_int_equal(fin.kernels, 2); /* the final counters include what stop delivered */
    assert_int_equal(fin.unmatched, 0);
    for (int i = 0; i < 2; i++)
        assert_got(i, 0, got[i].rec.end_ns - got[i].rec.start_ns == 10 ? 1 : 2, NS_PHASE_FORWARD);
}

/* ------------------------------------------------------------------ copies, kinds */

static void test_memcpy_bytes_and_kinds(void **state) {
    (void)state;
    start_sim(1, 4, 64 * 1024, 3);
    launch(L_MEMCPY, NULL, 800, 401408, NS_COPY_HTOD); /* the batch, outside modules */
    push(0, 4, NS_PHASE_FORWARD);
    launch(L_MEMCPY, NULL, 90, 512, NS_COPY_DTOD);
    launch(L_MEMSET, NULL, 40, 1024, NS_COPY_NONE);
    ns_cupti_pop(S.c);
    launch(L_MEMCPY, NULL, 30, 4, NS_COPY_DTOH); /* loss.item() */
    launch(L_MEMCPY, NULL, 30, 8, NS_COPY_PTOP);
    ns_cupti_step_end(S.c, 0);
    assert_int_equal(n_got, 5);
    assert_string_equal(got[0].rec.kind, "memcpy");
    assert_string_equal(got[0].name, "memcpy HtoD");
    assert_int_equal(got[0].rec.bytes, 401408);
    assert_int_equal(got[0].rec.copy_kind, NS_COPY_HTOD);
    assert_got(0, 0, -1, NS_PHASE_OTHER);
    assert_string_equal(got[1].name, "memcpy DtoD");
    assert_int_equal(got[1].rec.bytes, 512);
    assert_got(1, 0, 4, NS_PHASE_FORWARD);
    assert_string_equal(got[2].rec.kind, "memset");
    assert_string_equal(got[2].name, "memset");
    assert_int_equal(got[2].rec.bytes, 1024);
    assert_int_equal(got[2].rec.copy_kind, NS_COPY_NONE);
    assert_got(2, 0, 4, NS_PHASE_FORWARD);
    assert_string_equal(got[3].name, "memcpy DtoH");
    assert_int_equal(got[3].rec.copy_kind, NS_COPY_DTOH);
    assert_int_equal(got[3].rec.bytes, 4);
    assert_string_equal(got[4].name, "memcpy PtoP");
    ns_cupti_stats st;
    ns_cupti_get_stats(S.c, &st);
    assert_int_equal(st.memcpys, 4);
    assert_int_equal(st.memsets, 1);
    assert_int_equal(st.kernels, 0);
    char line[256];
    ns_cupti_stats_text(&st, line, sizeof line);
    assert_string_equal(line, "cupti: 0 kernels, 4 memcpy, 1 memset, 0 unmatched, 0 skipped, "
                              "0 dropped, 0 buffers denied");
    ns_cupti_stop(S.c, NULL);
}

/* Records of other kinds (API calls, correlation records of another external kind) are read
 * and ignored: nothing is attributed through them. */
static void test_ignored_record_kinds(void **state) {
    (void)state;
    start_sim(1, 4, 64 * 1024, 1);
    S.other_kind = true;
    push(0, 9, NS_PHASE_FORWARD);
    kernel("_Z1kv", 100);
    api_call();
    ns_cupti_pop(S.c);
    ns_cupti_step_end(S.c, 0);
    assert_int_equal(n_got, 0);
    ns_cupti_step_end(S.c, 1); /* waited more than pending_steps = 1 */
    assert_int_equal(n_got, 1);
    assert_got(0, 1, -1, NS_PHASE_OTHER); /* never matched */
    ns_cupti_stats st;
    ns_cupti_get_stats(S.c, &st);
    assert_int_equal(st.ignored, 4); /* 2 API records + 2 correlation records of CUSTOM1 */
    assert_int_equal(st.unmatched, 1);
    ns_cupti_stop(S.c, NULL);
}

/* ------------------------------------------------------------------ sums */

/* Per-module sums of a step add up to the step's total GPU time, and each bracket's sum is the
 * time of the kernels launched in it (exact: integer nanoseconds). */
static void test_module_sums_equal_step_total(void **state) {
    (void)state;
    start_sim(1, 8, 16 * 1024, 3);
    uint64_t seed = 42;
    for (int64_t step = 0; step < 4; step++) {
        S.dev_first = step % 2;
        for (int call = 0; call < 30; call++) {
            seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
            int64_t module = (int64_t)(seed >> 60) % 5; /* 0..4; 4 means outside */
            ns_gpu_phase ph = (ns_gpu_phase)((seed >> 50) % 3);
            if (module < 4) push(step, module, ph);
            int n = 1 + (int)((seed >> 40) % 3);
            for (int k = 0; k < n; k++) {
                kernel("_Z6kernelv", 100 + (seed >> 30) % 5000);
                if (module < 4)
                    expect_last(step, module, ph);
                else
                    expect_last(step, -1, NS_PHASE_OTHER);
            }
            if (module < 4) ns_cupti_pop(S.c);
        }
        ns_cupti_step_end(S.c, step);
    }
    ns_cupti_stop(S.c, NULL);
    assert_int_equal(n_got, S.n_launch);
    for (int64_t step = 0; step < 4; step++) {
        uint64_t total_truth = 0, total_got = 0;
        for (int i = 0; i < S.n_launch; i++)
            if (S.truth[i].step == step) total_truth += S.truth[i].dur;
        for (int i = 0; i < n_got; i++)
            if (got[i].rec.step == step) total_got += got[i].rec.end_ns - got[i].rec.start_ns;
        assert_int_equal(total_got, total_truth);
        uint64_t sum_modules = 0;
        for (int64_t m = -1; m < 4; m++)
            for (int ph = 0; ph < 4; ph++) {
                uint64_t t = 0, g = 0;
                for (int i = 0; i < S.n_launch; i++)
                    if (S.truth[i].step == step && S.truth[i].module_id == m &&
                        (int)S.truth[i].phase == ph)
                        t += S.truth[i].dur;
                for (int i = 0; i < n_got; i++)
                    if (got[i].rec.step == step && got[i].rec.module_id == m &&
                        (int)got[i].rec.phase == ph)
                        g += got[i].rec.end_ns - got[i].rec.start_ns;
                assert_int_equal(g, t);
                sum_modules += g;
            }
        assert_int_equal(sum_modules, total_truth);
    }
}

/* ------------------------------------------------------------------ sampling */

/* Every 2nd step: only steps 0, 2, 4 reach the sink; module brackets of other steps never reach
 * CUPTI (only the bottom bracket, so their records are recognised and skipped); the buffers are
 * flushed at sampled step ends only. */
static void test_sampling_every_n_steps(void **state) {
    (void)state;
    start_sim(2, 8, 16 * 1024, 3);
    for (int64_t step = 0; step < 5; step++) {
        int pushes = S.pushes;
        push(step, 1, NS_PHASE_FORWARD);
        kernel("_Z1fv", 100);
        ns_cupti_pop(S.c);
        kernel("_Z1gv", 100); /* outside */
        assert_int_equal(S.pushes - pushes, step % 2 == 0 ? 1 : 0);
        int flushes = S.flushes;
        ns_cupti_step_end(S.c, step);
        assert_int_equal(S.flushes - flushes, step % 2 == 0 ? 1 : 0);
    }
    ns_cupti_stats st;
    ns_cupti_get_stats(S.c, &st);
    assert_int_equal(st.skipped, 4); /* steps 1 and 3 */
    ns_cupti_stop(S.c, NULL);
    assert_int_equal(n_got, 6);
    for (int i = 0; i < n_got; i++) {
        assert_int_equal(got[i].rec.step % 2, 0);
        assert_int_equal(got[i].rec.module_id, strcmp(got[i].name, "f()") ? -1 : 1);
    }
}

/* ------------------------------------------------------------------ buffer pool */

/* With every buffer lent out and none handed back, requests are refused and records dropped and
 * counted; collection resumes once buffers return; nothing crashes, nothing is counted twice. */
static void test_buffer_pool_exhaustion(void **state) {
    (void)state;
    start_sim(1, 2, 1024, 3); /* 2 buffers of 1 KiB: a handful of records each */
    push(0, 1, NS_PHASE_FORWARD);
    for (int i = 0; i < 60; i++) kernel("_Z1kv", 10);
    ns_cupti_pop(S.c);
    ns_cupti_stats st;
    ns_cupti_get_stats(S.c, &st);
    assert_true(st.buffers_denied > 0);
    assert_true(S.dev.dropped_total > 0);
    ns_cupti_step_end(S.c, 0); /* drains: the buffers come back to the pool */
    assert_true(n_got > 0 && n_got < 60);
    push(1, 2, NS_PHASE_FORWARD);
    kernel("_Z1kv", 10);
    ns_cupti_pop(S.c);
    ns_cupti_step_end(S.c, 1); /* these completions report the drops */
    ns_cupti_get_stats(S.c, &st);
    assert_int_equal(st.dropped, S.dev.dropped_total + S.api.dropped_total);
    assert_got(n_got - 1, 1, 2, NS_PHASE_FORWARD);
    ns_cupti_stats fin;
    ns_cupti_stop(S.c, &fin);
    /* every kernel record that found a buffer is delivered once (those whose correlation
     * record was dropped, unmatched, at stop) */
    assert_int_equal((uint64_t)n_got, 61 - S.dev.dropped_total);
    assert_int_equal(fin.kernels, (uint64_t)n_got);
    assert_int_equal(fin.dropped, S.dev.dropped_total + S.api.dropped_total);
}

/* ------------------------------------------------------------------ start */

/* On a machine without an NVIDIA driver (this one, in CI), start fails and says why. */
static void test_start_reports_why(void **state) {
    (void)state;
    char why[256] = "unchanged";
    ns_cupti *c = ns_cupti_start(sink, &S, 0, 1, why, sizeof why);
#ifdef NS_HAVE_CUPTI
    void *drv = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!drv) {
        assert_null(c);
        if (!strstr(why, "no NVIDIA driver") || !strstr(why, "libcuda.so.1"))
            fail_msg("why does not name the missing driver: '%s'", why);
    } else if (c) { /* a GPU machine: it starts, and a second one is refused */
        char why2[256];
        assert_null(ns_cupti_start(sink, &S, 0, 1, why2, sizeof why2));
        assert_non_null(strstr(why2, "already running"));
        ns_cupti_stop(c, NULL);
    } else {
        assert_true(strlen(why) > 10); /* driver present, CUPTI refused: the reason is given */
        assert_string_not_equal(why, "unchanged");
    }
#else
    assert_null(c);
    assert_string_equal(why, "built without CUPTI");
#endif
}

/* ------------------------------------------------------------------ names */

static const struct {
    const char *mangled, *want;
} names[] = {
    /* the CUDA backend's kernels as nvcc 13 names them */
    {"_Z11fill_kernelPflf", "fill_kernel(float*, long, float)"},
    {"_Z16reduce_rows_warpPKfPfllb", "reduce_rows_warp(float const*, float*, long, long, bool)"},
    {"_Z14ns_each_kernelIZ8launch_xPKfPflEUllE_EvlT_",
     "void ns_each_kernel<launch_x(float const*, float*, long)::{lambda(long)#1}>(long, "
     "launch_x(float const*, float*, long)::{lambda(long)#1})"},
    {"_Z2tkIfLi256ELb1EEvPKT_PS0_", "void tk<float, 256, true>(float const*, float*)"},
    {"_Z2tkIdLin3ELb0EEvPKT_PS0_", "void tk<double, -3, false>(double const*, double*)"},
    {"_ZN2nn6detail2k2IjEEvNS0_1PET_",
     "void nn::detail::k2<unsigned int>(nn::detail::P, unsigned int)"},
    /* cuBLAS */
    {"_Z11scal_kernelIffLi1ELb0ELi6ELi5ELi5ELi3EEv21cublasTransposeParamsIT0_EPKT_PS3_PKS1_",
     "void scal_kernel<float, float, 1, false, 6, 5, 5, 3>(cublasTransposeParams<float>, float "
     "const*, float*, float const*)"},
    {"_Z18sgemm_largek_lds64ILb1ELb0ELi5ELi5ELi4ELi4ELi4ELi34EEvPfPKfS2_iiiiiiS2_S2_ffiiPiS3_",
     "void sgemm_largek_lds64<true, false, 5, 5, 4, 4, 4, 34>(float*, float const*, float const*, "
     "int, int, int, int, int, int, float const*, float const*, float, float, int, int, int*, "
     "int*)"},
    {"_ZN8internal5gemvx6kernelIiiffffLb0ELb1ELb1ELb0ELi6ELb0E18cublasGemvParamsExIi30cublasGemvT"
     "ensorStridedBatchedIKfES5_S3_IfEfEEENSt9enable_ifIXntT5_EvE4typeET11_",
     "std::enable_if<!(false), void>::type internal::gemvx::kernel<int, int, float, float, float, "
     "float, false, true, true, false, 6, false, cublasGemvParamsEx<int, "
     "cublasGemvTensorStridedBatched<float const>, cublasGemvTensorStridedBatched<float const>, "
     "cublasGemvTensorStridedBatched<float>, float> >(cublasGemvParamsEx<int, "
     "cublasGemvTensorStridedBatched<float const>, cublasGemvTensorStridedBatched<float const>, "
     "cublasGemvTensorStridedBatched<float>, float>)"},
    /* grammar corners */
    {"_Z1fIJifEEvDpT_", "void f<int, float>(int, float)"},
    {"_Z1fILl5ELm6ELx7ELy8ELc65ELs3EEvv", "void f<5l, 6ul, 7ll, 8ull, (char)65, (short)3>()"},
    {"_Z1fPA10_f", "f(float (*) [10])"},
    {"_Z1fRA10_Kf", "f(float const (&) [10])"},
    {"_Z1fM1AFivE", "f(int (A::*)())"},
    {"_Z1fPKFivE", "f(int (*)() const)"},
    {"_ZN12_GLOBAL__N_13fooEv", "(anonymous namespace)::foo()"},
    {"_ZNSt3__16vectorIiNS_9allocatorIiEEE9push_backEOi",
     "std::__1::vector<int, std::__1::allocator<int> >::push_back(int&&)"},
    {"_ZNK1A1fEv", "A::f() const"},
    {"_ZN1AD1Ev", "A::~A()"},
    {"_ZN1AplERKS_", "A::operator+(A const&)"},
    {"_Z1fIPFvvEEvT_", "void f<void (*)()>(void (*)())"},
    {"_Z1fIN1a1bEEvT_S2_", "void f<a::b>(a::b, a::b)"},
    {"_Z1fDv4_f", "f(float __vector(4))"},
    {"_Z3fooi.constprop.0", "foo(int) [clone .constprop.0]"},
    {"_ZSt7forwardIRmEOT_RNSt16remove_referenceIS1_E4typeE",
     "unsigned long& std::forward<unsigned long&>(std::remove_reference<unsigned long&>::type&)"},
};

static void test_demangle_like_cxxfilt(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char *d = ns_demangle(names[i].mangled);
        if (!d || strcmp(d, names[i].want))
            fail_msg("ns_demangle(%s)\n  got  %s\n  want %s", names[i].mangled, d ? d : "(null)",
                     names[i].want);
        free(d);
    }
    /* not mangled, or beyond this demangler: NULL, and the caller keeps the name */
    const char *keep[] = {"relu_kernel",
                          "sm90_xmma_gemm_f32f32_tf32f32_f32_nn_n_tilesize128x128x32",
                          "_Z",
                          "_Z3fo",
                          "_Z1fIXsrT_1xEEvv",
                          "_ZTV1A",
                          "_Z1fS12_",
                          "_Z1fT_"};
    for (size_t i = 0; i < sizeof keep / sizeof keep[0]; i++) {
        char *d = ns_demangle(keep[i]);
        if (d) fail_msg("ns_demangle(%s) should fail, got %s", keep[i], d);
    }
    char *k = ns_kernel_display_name("relu_kernel");
    assert_string_equal(k, "relu_kernel");
    free(k);
    /* every prefix and every single-character damage of real names: no crash, no overrun */
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        size_t len = strlen(names[i].mangled);
        char *buf = malloc(len + 1);
        assert_non_null(buf);
        for (size_t n = 0; n <= len; n++) {
            memcpy(buf, names[i].mangled, n);
            buf[n] = 0;
            free(ns_demangle(buf));
        }
        for (size_t j = 2; j < len; j++) {
            memcpy(buf, names[i].mangled, len + 1);
            const char *subst = "0EIST_9Z";
            for (const char *s = subst; *s; s++) {
                buf[j] = *s;
                free(ns_demangle(buf));
            }
        }
        free(buf);
    }
}

/* Names past NS_GPU_NAME_MAX: nested template arguments elided, then cut with a distinct tag. */
static void test_long_names_shortened(void **state) {
    (void)state;
    /* a template nested 3 deep with many arguments, like cutlass kernels */
    char m[8192], inner[4096];
    size_t o = 0;
    o += (size_t)snprintf(inner + o, sizeof inner - o, "N7cutlass4gemm5ShapeI");
    for (int i = 0; i < 400; i++) o += (size_t)snprintf(inner + o, sizeof inner - o, "Li%dE", i);
    snprintf(inner + o, sizeof inner - o, "EE");
    snprintf(m, sizeof m, "_Z6KernelIN7cutlass4conv6kernelI%sEEEvv", inner);
    char *full = ns_demangle(m);
    assert_non_null(full);
    assert_true(strlen(full) > NS_GPU_NAME_MAX);
    free(full);
    char *s = ns_kernel_display_name(m);
    assert_non_null(s);
    assert_true(strlen(s) <= NS_GPU_NAME_MAX);
    assert_string_equal(s, "void Kernel<cutlass::conv::kernel<...> >()");
    free(s);
    /* too long even then (a plain identifier of 2000 characters): cut and tagged */
    char a[2100], b[2100];
    memset(a, 'x', 2000);
    a[2000] = 0;
    memcpy(b, a, 2001);
    b[1999] = 'y';
    char *sa = ns_kernel_display_name(a), *sb = ns_kernel_display_name(b);
    assert_int_equal(strlen(sa), NS_GPU_NAME_MAX);
    assert_int_equal(strlen(sb), NS_GPU_NAME_MAX);
    assert_non_null(strstr(sa, " ...#"));
    assert_string_not_equal(sa, sb);
    free(sa);
    free(sb);
    /* operator names are not template brackets */
    char *op = ns_kernel_display_name("_ZN1AlsEi");
    assert_string_equal(op, "A::operator<<(int)");
    free(op);
}

/* The name table is bounded: past max_names, kernels get a fixed name instead of growing it. */
static void test_name_table_bounded(void **state) {
    (void)state;
    start_sim(1, 8, 64 * 1024, 3);
    static char nm[80][32];
    for (int i = 0; i < 80; i++) {
        snprintf(nm[i], sizeof nm[i], "kernel_%d", i);
        kernel(nm[i], 10);
    }
    ns_cupti_step_end(S.c, 0);
    assert_int_equal(n_got, 80);
    assert_string_equal(got[63].name, "kernel_63");
    assert_string_equal(got[64].name, "(kernel name table full)");
    ns_cupti_stop(S.c, NULL);
}

/* A name pointer CUPTI reuses for another kernel (a module unloaded and another loaded at the
 * same address) gets the new kernel's name, not the cached one. */
static void test_name_pointer_reused(void **state) {
    (void)state;
    start_sim(1, 8, 64 * 1024, 3);
    static char name[32];
    strcpy(name, "_Z5firstv");
    kernel(name, 10);
    kernel(name, 10);
    ns_cupti_step_end(S.c, 0);
    strcpy(name, "_Z6secondv");
    kernel(name, 10);
    ns_cupti_step_end(S.c, 1);
    ns_cupti_stop(S.c, NULL);
    assert_int_equal(n_got, 3);
    assert_string_equal(got[0].name, "first()");
    assert_ptr_equal(got[0].rec.name, got[1].rec.name);
    assert_string_equal(got[2].name, "second()");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_attribution_innermost_module_and_phase),
        cmocka_unit_test(test_steps_and_bottom_bracket),
        cmocka_unit_test(test_records_in_any_order_across_buffers),
        cmocka_unit_test(test_lost_correlation_delivered_unmatched),
        cmocka_unit_test(test_forgotten_bracket_not_misattributed),
        cmocka_unit_test(test_stop_delivers_everything),
        cmocka_unit_test(test_memcpy_bytes_and_kinds),
        cmocka_unit_test(test_ignored_record_kinds),
        cmocka_unit_test(test_module_sums_equal_step_total),
        cmocka_unit_test(test_sampling_every_n_steps),
        cmocka_unit_test(test_buffer_pool_exhaustion),
        cmocka_unit_test(test_start_reports_why),
        cmocka_unit_test(test_demangle_like_cxxfilt),
        cmocka_unit_test(test_long_names_shortened),
        cmocka_unit_test(test_name_table_bounded),
        cmocka_unit_test(test_name_pointer_reused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
