/* The GPU activity collector's own CPU cost, without a GPU: a bracket (push + pop) as the
 * recorder opens one per module call and backward node, and the handling of one launch's records
 * (correlation record, API record, kernel record: decode, join, name lookup, delivery). In CUPTI
 * builds the records are CUPTI's own structs read by the real decoder; CUPTI's own cost on the GPU
 * side is not included (tests/gpu/cupti_check.sh measures the whole). Prints ns per operation. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "collect.h"

#ifdef NS_HAVE_CUPTI
#include <cupti_activity.h>
#endif

static uint64_t last_id; /* the bracket id pushed last */
static int nop_push(uint64_t id, void *ud) {
    (void)ud;
    last_id = id;
    return 0;
}
static int nop_pop(void *ud) {
    (void)ud;
    return 0;
}
static void nop_flush(bool forced, void *ud) {
    (void)forced;
    (void)ud;
}
static void nop_stop(void *ud) {
    (void)ud;
}

static uint64_t delivered, checksum;
static void sink(const ns_gpu_record *r, void *ud) {
    (void)ud;
    delivered++;
    checksum += r->end_ns - r->start_ns + (uint64_t)r->module_id;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static const char *names[] = {
    "_Z18sgemm_largek_lds64ILb1ELb0ELi5ELi5ELi4ELi4ELi4ELi34EEvPfPKfS2_iiiiiiS2_S2_ffiiPiS3_",
    "_Z14ns_each_kernelIZ8launch_xPKfPflEUllE_EvlT_", "_Z15bn_stats_kernelPKfPfS1_lll",
    "_Z14softmax_kernelPKfPfllb", "relu_kernel"};

#ifdef NS_HAVE_CUPTI
#define WALK ns_cupti_walk_cupti
static size_t put_launch(uint8_t *p, uint32_t corr, uint64_t ext, int i) {
    CUpti_ActivityExternalCorrelation e;
    memset(&e, 0, sizeof e);
    e.kind = CUPTI_ACTIVITY_KIND_EXTERNAL_CORRELATION;
    e.externalKind = CUPTI_EXTERNAL_CORRELATION_KIND_CUSTOM0;
    e.externalId = ext;
    e.correlationId = corr;
    CUpti_ActivityAPI a;
    memset(&a, 0, sizeof a);
    a.kind = CUPTI_ACTIVITY_KIND_RUNTIME;
    a.correlationId = corr;
    CUpti_ActivityKernel10 k;
    memset(&k, 0, sizeof k);
    k.kind = CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL;
    k.correlationId = corr;
    k.start = 1000u * (uint64_t)i;
    k.end = k.start + 500;
    k.name = names[i % 5];
    memcpy(p, &e, sizeof e);
    memcpy(p + sizeof e, &a, sizeof a);
    memcpy(p + sizeof e + sizeof a, &k, sizeof k);
    return sizeof e + sizeof a + sizeof k;
}
#else
static void raw_walk(ns_cupti *c, uint8_t *buf, size_t valid, void *ud) {
    (void)ud;
    for (size_t off = 0; off + sizeof(ns_cupti_raw) <= valid; off += sizeof(ns_cupti_raw))
        ns_cupti_record(c, (const ns_cupti_raw *)(const void *)(buf + off));
}
#define WALK raw_walk
static size_t put_launch(uint8_t *p, uint32_t corr, uint64_t ext, int i) {
    ns_cupti_raw r[3] = {
        {.kind = NS_RAW_EXTERNAL, .correlation = corr, .external_id = ext},
        {.kind = NS_RAW_OTHER, .correlation = corr},
        {.kind = NS_RAW_KERNEL,
         .correlation = corr,
         .start_ns = 1000u * (uint64_t)i,
         .end_ns = 1000u * (uint64_t)i + 500,
         .name = names[i % 5]},
    };
    memcpy(p, r, sizeof r);
    return sizeof r;
}
#endif

int main(void) {
    ns_cupti_backend be = {
        .push = nop_push, .pop = nop_pop, .flush = nop_flush, .walk = WALK, .stop = nop_stop};
    ns_cupti_config cfg;
    ns_cupti_config_default(&cfg);
    char why[128];
    ns_cupti *c = ns_cupti_new(&be, &cfg, sink, NULL, why, sizeof why);
    if (!c) {
        fprintf(stderr, "bench_cupti: %s\n", why);
        return 1;
    }
    /* brackets: 40 module calls per step, 25000 steps */
    const int steps = 25000, per_step = 40;
    double t0 = now();
    for (int s = 0; s < steps; s++) {
        for (int m = 0; m < per_step; m++) {
            ns_cupti_push(c, s, m, NS_PHASE_FORWARD);
            ns_cupti_pop(c);
        }
        ns_cupti_step_end(c, s);
    }
    double t_br = (now() - t0) / ((double)steps * per_step) * 1e9;

    /* records: full buffers of launches made inside one bracket of the step */
    size_t bytes = cfg.buffer_bytes;
    int launches = 0, launches_warm = 0;
    double t_rec = 0;
    uint32_t corr = 1;
    for (int round = 0; round < 40; round++) { /* 20 rounds to warm the tables, 20 timed */
        int64_t step = steps + round;
        if (round == 20) launches_warm = launches;
        ns_cupti_push(c, step, 7, NS_PHASE_BACKWARD);
        uint64_t ext = last_id;
        ns_cupti_pop(c);
        size_t got;
        uint8_t *buf = ns_cupti_buffer_request(c, &got);
        if (!buf) return 1;
        size_t used = 0;
        while (used + 512 < bytes) used += put_launch(buf + used, corr++, ext, launches++);
        ns_cupti_buffer_done(c, buf, used, 0);
        t0 = now();
        ns_cupti_step_end(c, step);
        if (round >= 20) t_rec += now() - t0;
    }
    int timed = launches - launches_warm;
    ns_cupti_stats st;
    ns_cupti_stop(c, &st);
    printf("bracket (push + pop, sampled step):   %6.1f ns\n", t_br);
    printf("launch records (correlation + API + kernel: decode, join, deliver): %6.1f ns "
           "per launch (%d timed launches; in all %llu delivered, %llu unmatched)\n",
           t_rec / timed * 1e9, timed, (unsigned long long)st.kernels,
           (unsigned long long)st.unmatched);
    return delivered == st.kernels && checksum ? 0 : 1;
}
