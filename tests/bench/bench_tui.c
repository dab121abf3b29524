/* TUI frame cost on a large recording: 200 parameters x 5000 steps = 1,000,000 param_stats
 * rows (plus 505,000 module_calls and the schema's indexes), generated here.
 *
 * A frame = poll the database (PRAGMA data_version, incremental reads) + build the tree rows +
 * draw the Modules screen into a 100x30 grid (everything but the terminal write). Measured:
 *   cold      the first frame of a fresh connection (median of 5; the budget is 20 ms)
 *   live      a frame after the writer appended one step (301 rows), median of 60
 *   idle      a frame with nothing new
 *   detail    the first Detail frame of a module (its whole 5000-step history)
 *   rules     one diagnostics pass (runs on a worker thread in the TUI, not in a frame)
 * Wall and CPU time are printed (the CPU figure is steadier on a busy machine). Exits 1 when
 * the median wall time of the cold or live frame exceeds 20 ms.
 *
 *   meson test -C build --benchmark --suite tui -v      (or run build/tests/bench_tui)
 *   build/tests/bench_tui --rules                       (adds the rules pass)
 * NSTUI_BENCH_KEEP=1 keeps the generated database (its path is printed). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "draw.h"
#include "fetch.h"
#include "grid.h"
#include "model.h"
#include "rules.h"
#include "test_tui_fixture.h"
#include "ui.h"

#define NMODS 100 /* Linear layers, each with weight and bias */
#define NSTEPS 5000
#define BUDGET_MS 20.0

static double ms_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static double cpu_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static double last_cpu; /* CPU time of the last frame() */

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return v[n / 2];
}

static sqlite3_stmt *prep(sqlite3 *db, const char *sql) {
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
        fprintf(stderr, "bench_tui: %s\n", sqlite3_errmsg(db));
        exit(1);
    }
    return st;
}

static void step_ok(sqlite3_stmt *st) {
    if (sqlite3_step(st) != SQLITE_DONE) {
        fprintf(stderr, "bench_tui: insert failed: %s\n", sqlite3_errmsg(sqlite3_db_handle(st)));
        exit(1);
    }
    sqlite3_reset(st);
}

/* Writes steps from..to (rows of a step first, its steps row last, like the recorder). */
static void write_steps(sqlite3 *db, int from, int to, double t0) {
    sqlite3_stmt *ps = prep(db, "INSERT INTO param_stats (run_id, step, param_id, grad_norm, "
                                "update_norm, weight_norm, ratio, nonfinite, device) "
                                "VALUES (1, ?, ?, ?, ?, ?, ?, 0, 'cpu')");
    sqlite3_stmt *mc = prep(db, "INSERT INTO module_calls (run_id, step, module_id, seq, caller_id,"
                                " phase, training, grad_enabled, in_device, param_device, "
                                "out_device, fwd_us, bwd_us, out_zero_frac) VALUES (1, ?, ?, ?, 1,"
                                " 'train', 1, 1, 'cpu', 'cpu', 'cpu', 10, 20, ?)");
    sqlite3_stmt *st = prep(db, "INSERT INTO steps (run_id, step, phase, epoch, loss, lr, samples,"
                                " wall_time, duration_us) VALUES (1, ?, 'train', ?, ?, 0.01, 64, ?,"
                                " 5000)");
    tfx_exec(db, "BEGIN");
    for (int s = from; s <= to; s++) {
        for (int p = 1; p <= 2 * NMODS; p++) {
            double w = 1 + 0.01 * p, g = 0.3 * exp(-s / 1000.0) * (1 + 0.001 * p), u = 1e-3 * w;
            sqlite3_bind_int(ps, 1, s);
            sqlite3_bind_int(ps, 2, p);
            sqlite3_bind_double(ps, 3, g);
            sqlite3_bind_double(ps, 4, u);
            sqlite3_bind_double(ps, 5, w);
            sqlite3_bind_double(ps, 6, u / w);
            step_ok(ps);
        }
        for (int m = 2; m <= NMODS + 1; m++) {
            sqlite3_bind_int(mc, 1, s);
            sqlite3_bind_int(mc, 2, m);
            sqlite3_bind_int(mc, 3, m - 1);
            sqlite3_bind_double(mc, 4, 0.3);
            step_ok(mc);
        }
        sqlite3_bind_int(st, 1, s);
        sqlite3_bind_int(st, 2, s / 500);
        sqlite3_bind_double(st, 3, 2.0 * exp(-s / 2000.0));
        sqlite3_bind_double(st, 4, t0 + 0.005 * s);
        step_ok(st);
    }
    char sql[128];
    snprintf(sql, sizeof sql, "UPDATE runs SET last_step = %d, heartbeat_at = %.3f WHERE id = 1",
             to, tfx_now());
    tfx_exec(db, sql);
    tfx_exec(db, "COMMIT");
    sqlite3_finalize(ps);
    sqlite3_finalize(mc);
    sqlite3_finalize(st);
}

static void build_db(const char *path, double t0) {
    sqlite3 *db = tfx_create(path);
    if (!db) exit(1);
    tfx_exec(db, "PRAGMA cache_size = -65536");
    tfx_run(db, 1, "running", "bench_tui (200 params x 5000 steps)", t0);
    tfx_exec(db, "BEGIN");
    tfx_exec(db, "INSERT INTO modules (run_id, id, parent_id, path, type, registered, n_params) "
                 "VALUES (1, 1, NULL, '', 'Sequential', 1, 0)");
    sqlite3_stmt *mo = prep(db, "INSERT INTO modules (run_id, id, parent_id, path, type, describe,"
                                " registered, n_params) VALUES (1, ?, 1, ?, 'Linear', "
                                "'Linear(in_features=64, out_features=64, bias=True)', 1, 4160)");
    sqlite3_stmt *pa = prep(db, "INSERT INTO params (run_id, id, module_id, name, kind, shape, "
                                "numel, requires_grad, in_optimizer, lr) VALUES (1, ?, ?, ?, "
                                "'param', ?, ?, 1, 1, 0.01)");
    for (int m = 2; m <= NMODS + 1; m++) {
        char path_[32], name[48];
        snprintf(path_, sizeof path_, "%d", m - 2);
        sqlite3_bind_int(mo, 1, m);
        sqlite3_bind_text(mo, 2, path_, -1, SQLITE_TRANSIENT);
        step_ok(mo);
        for (int k = 0; k < 2; k++) {
            snprintf(name, sizeof name, "%d.%s", m - 2, k ? "bias" : "weight");
            sqlite3_bind_int(pa, 1, 2 * (m - 2) + k + 1);
            sqlite3_bind_int(pa, 2, m);
            sqlite3_bind_text(pa, 3, name, -1, SQLITE_TRANSIENT);
            sqlite3_bind_text(pa, 4, k ? "64" : "64x64", -1, SQLITE_STATIC);
            sqlite3_bind_int(pa, 5, k ? 64 : 4096);
            step_ok(pa);
        }
    }
    sqlite3_finalize(mo);
    sqlite3_finalize(pa);
    tfx_exec(db, "COMMIT");
    write_steps(db, 0, NSTEPS - 1, t0);
    tfx_exec(db, "PRAGMA wal_checkpoint(TRUNCATE)");
    sqlite3_close(db);
}

typedef struct {
    ns_tui_source *src;
    ns_tui_model m;
    ns_tui_ui ui;
    ns_grid g;
    ns_tui_frame f;
} viewer;

static void viewer_open(viewer *v, const char *path) {
    v->src = ns_tui_source_new(path);
    ns_tui_model_init(&v->m);
    ns_tui_ui_init(&v->ui);
    ns_grid_init(&v->g, 100, 30, 0);
    v->f = (ns_tui_frame){path, NS_SRC_READY, "", tfx_now(), 1, 1, 0, 10};
    ns_tui_source_select_run(v->src, &v->m, 1);
}

static void viewer_close(viewer *v) {
    ns_grid_free(&v->g);
    ns_tui_ui_free(&v->ui);
    ns_tui_model_free(&v->m);
    ns_tui_source_free(v->src);
}

/* One frame as the live loop makes it (minus the terminal write). */
static double frame(viewer *v) {
    double t = ms_now(), c = cpu_ms();
    if (ns_tui_source_poll(v->src, &v->m, 0) < 0) {
        fprintf(stderr, "bench_tui: %s\n", ns_tui_source_error(v->src));
        exit(1);
    }
    if (v->ui.screen == NS_SCR_DETAIL) {
        int64_t id;
        ns_tui_detail_kind k = ns_tui_ui_detail_target(&v->ui, &v->m, &id);
        ns_tui_model_detail_target(&v->m, k, id);
        ns_tui_source_detail(v->src, &v->m);
    }
    v->f.now = tfx_now();
    ns_tui_draw(&v->g, &v->m, &v->ui, &v->f);
    last_cpu = cpu_ms() - c;
    return ms_now() - t;
}

int main(int argc, char **argv) {
    /* --rules also times one diagnostics pass (slow on this size: not in the default run). */
    int with_rules = argc > 1 && !strcmp(argv[1], "--rules");
    char path[128];
    snprintf(path, sizeof path, "/tmp/nstui-bench-%d.db", (int)getpid());
    double t0 = tfx_now() - 60;
    double tb = ms_now();
    build_db(path, t0);
    printf(
        "bench_tui: %d param_stats rows (%d params x %d steps), %d module_calls; built in %.1f s\n",
        2 * NMODS * NSTEPS, 2 * NMODS, NSTEPS, NMODS * NSTEPS, (ms_now() - tb) / 1e3);

    double cold[5], cold_cpu[5];
    for (int i = 0; i < 5; i++) {
        viewer v;
        viewer_open(&v, path);
        cold[i] = frame(&v);
        cold_cpu[i] = last_cpu;
        if (v.m.nmods != NMODS + 1 || v.m.last_step != NSTEPS - 1) {
            fprintf(stderr, "bench_tui: the frame did not read the run (%d modules, step %lld)\n",
                    v.m.nmods, (long long)v.m.last_step);
            return 1;
        }
        viewer_close(&v);
    }
    double cold_max = 0;
    for (int i = 0; i < 5; i++) cold_max = cold[i] > cold_max ? cold[i] : cold_max;
    double cold_med = median(cold, 5);

    /* Live: one viewer follows a writer that appends one step per frame. */
    viewer v;
    viewer_open(&v, path);
    frame(&v);
    sqlite3 *w;
    sqlite3_open(path, &w);
    sqlite3_busy_timeout(w, 2000);
    enum { NLIVE = 60 };
    double live[NLIVE], live_cpu[NLIVE], idle[NLIVE];
    for (int i = 0; i < NLIVE; i++) {
        write_steps(w, NSTEPS + i, NSTEPS + i, t0);
        live[i] = frame(&v);
        live_cpu[i] = last_cpu;
        idle[i] = frame(&v);
    }
    if (v.m.last_step != NSTEPS + NLIVE - 1) {
        fprintf(stderr, "bench_tui: live frames missed steps (at %lld)\n",
                (long long)v.m.last_step);
        return 1;
    }
    double live_max = 0;
    for (int i = 0; i < NLIVE; i++) live_max = live[i] > live_max ? live[i] : live_max;
    double live_med = median(live, NLIVE), live_p95 = live[(int)(NLIVE * 0.95)];
    double idle_med = median(idle, NLIVE);

    /* Detail: the first frame of a module's whole history, then a live one. */
    ns_tui_ui_open_detail(&v.ui, &v.m, ns_tui_model_find_module(&v.m, 50), -1);
    double det_cold = frame(&v), det_cold_cpu = last_cpu;
    write_steps(w, NSTEPS + NLIVE, NSTEPS + NLIVE, t0);
    double det_live = frame(&v);

    /* One rules pass (the TUI runs these on a worker thread, at most every 2 s). */
    double tr = ms_now();
    int rules_rc = with_rules ? ns_tui_rules_run(ns_tui_source_db(v.src), 1, &v.m, 0) : 0;
    double rules_ms = ms_now() - tr;
    size_t mem = ns_tui_model_mem(&v.m);

    printf("cold first frame:   %6.2f ms median of 5 (max %.2f; CPU %.2f ms)   budget %.0f ms\n",
           cold_med, cold_max, median(cold_cpu, 5), BUDGET_MS);
    printf("live frame +1 step: %6.2f ms median of %d (p95 %.2f, max %.2f; CPU %.2f ms; 301 new "
           "rows each)\n",
           live_med, NLIVE, live_p95, live_max, median(live_cpu, NLIVE));
    printf("idle frame:         %6.2f ms median (nothing new: data_version unchanged)\n", idle_med);
    printf("detail, first frame of a %d-step module history: %.2f ms (CPU %.2f); next live "
           "frame %.2f ms\n",
           NSTEPS + NLIVE, det_cold, det_cold_cpu, det_live);
    if (with_rules)
        printf("rules pass: %.0f ms (%s, %zu findings; worker thread, not part of a frame)\n",
               rules_ms, rules_rc == 0 ? "ok" : v.m.rules_err, v.m.nfind);
    printf("view model: %.1f KiB\n", (double)mem / 1024.0);

    viewer_close(&v);
    sqlite3_close(w);
    char side[160];
    if (getenv("NSTUI_BENCH_KEEP")) {
        printf("kept %s\n", path);
        return 0;
    }
    unlink(path);
    snprintf(side, sizeof side, "%s-wal", path);
    unlink(side);
    snprintf(side, sizeof side, "%s-shm", path);
    unlink(side);
    if (cold_med > BUDGET_MS || live_med > BUDGET_MS) {
        fprintf(stderr, "bench_tui: over the %.0f ms frame budget\n", BUDGET_MS);
        return 1;
    }
    return 0;
}
