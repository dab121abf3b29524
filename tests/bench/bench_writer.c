/* Benchmark (not a test): throughput of the recorder's queue + SQLite writer thread.
 *
 * One producer thread pushes N rows as fast as the queue takes them: per step, one param_stats
 * row per parameter (40) and one module_calls row per module call (40), the mix a full recording
 * of a mid-size model produces. Reports rows committed per second, from the first push to the end
 * of the flush that makes the last row durable (the figure the 200,000 rows/s target is
 * about), then the cost of one push on the training thread when the queue has room.
 * No assertions on time.
 *   usage: bench_writer [rows (default 1000000)] [database path (default $TMPDIR/...)]
 */
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "writer.h"

enum { PARAMS = 40, CALLS = 40 };

static double cpu_now(clockid_t clock) {
    struct timespec t;
    clock_gettime(clock, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void remove_db(const char *path) {
    char p[4200];
    unlink(path);
    snprintf(p, sizeof p, "%s-wal", path);
    unlink(p);
    snprintf(p, sizeof p, "%s-shm", path);
    unlink(p);
}

static void fill_stat(ns_row *r, int64_t step, int64_t param) {
    ns_row_init(r, NS_ROW_PARAM_STAT);
    r->param_stat.step = step;
    r->param_stat.param_id = param;
    r->param_stat.grad_norm = 0.01 * (double)(param + 1) + 1e-6 * (double)step;
    r->param_stat.update_norm = 1e-4 * (double)(param + 1);
    r->param_stat.weight_norm = 3.0 + 1e-3 * (double)param;
    r->param_stat.ratio = r->param_stat.update_norm / r->param_stat.weight_norm;
    r->param_stat.device = "cpu";
}

static void fill_call(ns_row *r, int64_t step, int64_t seq) {
    ns_row_init(r, NS_ROW_CALL);
    r->call.step = step;
    r->call.module_id = seq + 1;
    r->call.seq = seq;
    r->call.caller_id = 0;
    r->call.phase = "train";
    r->call.training = 1;
    r->call.grad_enabled = 1;
    r->call.in_device = r->call.param_device = r->call.out_device = "cpu";
    r->call.in_shape = "128x784";
    r->call.out_shape = "128x256";
    r->call.fwd_us = 12.5 + (double)seq;
    r->call.bwd_us = 20.25;
    r->call.grad_out_norm = 0.125;
    r->call.out_mean = 0.5;
    r->call.out_std = 0.25;
    r->call.out_zero_frac = 0.4;
    r->call.dead_frac = 0.01;
    r->call.out_nonfinite = 0;
}

/* Pushes rows [first, first + n) of the mix; returns false when the writer refused one. */
static bool push_rows(ns_writer *w, int64_t first, int64_t n) {
    ns_row r;
    for (int64_t i = first; i < first + n; i++) {
        int64_t step = i / (PARAMS + CALLS), k = i % (PARAMS + CALLS);
        if (k < PARAMS)
            fill_stat(&r, step, k);
        else
            fill_call(&r, step, k - PARAMS);
        if (!ns_writer_push(w, &r)) return false;
    }
    return true;
}

int main(int argc, char **argv) {
    int64_t n = argc > 1 ? atoll(argv[1]) : 1000000;
    char def[4096];
    const char *tmp = getenv("TMPDIR");
    snprintf(def, sizeof def, "%s/nnscope-bench-writer-%d.db", tmp && *tmp ? tmp : "/tmp",
             (int)getpid());
    const char *path = argc > 2 ? argv[2] : def;
    if (n <= 0) {
        fprintf(stderr, "usage: bench_writer [rows] [database path]\n");
        return 2;
    }
    remove_db(path);

    char err[1024];
    ns_writer *w = ns_writer_open(path, NULL, NULL, err, sizeof err);
    if (!w) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    double t0 = now(), c0 = cpu_now(CLOCK_PROCESS_CPUTIME_ID),
           p0 = cpu_now(CLOCK_THREAD_CPUTIME_ID);
    bool ok = push_rows(w, 0, n);
    double t_push = now();
    ok = ok && ns_writer_flush(w) == 0;
    double t1 = now(), c1 = cpu_now(CLOCK_PROCESS_CPUTIME_ID),
           p1 = cpu_now(CLOCK_THREAD_CPUTIME_ID);
    ns_writer_stats s;
    ns_writer_stats_get(w, &s);
    if (!ok || s.committed != (uint64_t)n) {
        fprintf(stderr, "bench_writer: %s\n",
                ns_writer_error(w) ? ns_writer_error(w) : "rows lost");
        ns_writer_close(w, NS_RUN_FAILED, NULL);
        return 1;
    }
    double secs = t1 - t0;
    printf("writer: %lld rows in %.2f s = %.0f rows/s (target 200000)\n", (long long)n, secs,
           (double)n / secs);
    printf("  %llu commits, %.2f s pushing (the producer waits when the queue is full), "
           "%.3f s to flush the rest\n",
           (unsigned long long)s.commits, t_push - t0, t1 - t_push);
    printf("  CPU per row: writer thread %.2f us, producer %.2f us (%.2f s CPU in %.2f s)\n",
           ((c1 - c0) - (p1 - p0)) * 1e6 / (double)n, (p1 - p0) * 1e6 / (double)n, c1 - c0, secs);
    ns_writer_close(w, NS_RUN_FINISHED, NULL);
    struct stat st;
    if (stat(path, &st) == 0)
        printf("  database %.1f MB, %.0f bytes per row\n", (double)st.st_size / 1e6,
               (double)st.st_size / (double)n);

    /* the training thread's cost: pushes into a queue with room (the writer keeps up) */
    ns_writer_opts o;
    ns_writer_opts_default(&o);
    o.queue_rows = 1 << 17;
    w = ns_writer_open(path, &o, NULL, err, sizeof err);
    if (!w) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    const int64_t burst = 50000;
    double best = 1e9;
    for (int round = 0; round < 5; round++) {
        double a = now();
        push_rows(w, round * burst * 2, burst);
        double b = now();
        ns_writer_flush(w);
        if ((b - a) / (double)burst < best) best = (b - a) / (double)burst;
    }
    printf("  push: %.0f ns per row on the producer thread (queue with room, best of 5 x %lld)\n",
           best * 1e9, (long long)burst);
    ns_writer_close(w, NS_RUN_FINISHED, NULL);
    remove_db(path);
    return 0;
}
