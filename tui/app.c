/* ns_tui_main: arguments, the live loop (poll, rules, draw, keys) and --dump. See tui.h. */
#include "tui.h"

#include <errno.h>
#include <langinfo.h>
#include <locale.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "draw.h"
#include "fetch.h"
#include "model.h"
#include "rules.h"
#include "term.h"
#include "ui.h"

#define STALE_AFTER_S 10.0 /* running, but no heartbeat for this long: "stale" */
#define RULES_GAP_S 2.0    /* at most one rules pass per this many seconds */
#define DUMP_RULES_S 20.0  /* --dump stops a rules pass after this long */

typedef struct {
    const char *path;
    int64_t run; /* -1: choose */
    int dump, screen, width, height, ascii, interval_ms;
} opts;

static double wall_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void usage(FILE *out) {
    fprintf(out, "usage: nnscope tui RUN.db [--run ID] [--interval MS] [--ascii]\n"
                 "       nnscope tui RUN.db --dump [--screen N] [--width W --height H] [--run ID] "
                 "[--ascii]\n"
                 "\n"
                 "Live view of a recording; works on running, finished and crashed runs.\n"
                 "  --run ID       show this run (default: the only run, else a picker)\n"
                 "  --interval MS  refresh interval (default 200)\n"
                 "  --ascii        ASCII characters only (default when the locale is not UTF-8)\n"
                 "  --dump         print one frame as text and exit (no terminal needed)\n"
                 "  --screen N     1 Modules, 2 Findings, 3 Detail, 4 GPU kernels, 0 runs picker\n"
                 "  --width W, --height H   frame size for --dump (default 100x30)\n"
                 "Keys: arrows/j/k, PgUp/PgDn, Enter, Tab, 1-4, / filter, s sort, p pause, ? help, "
                 "q quit. NO_COLOR disables colours.\n");
}

/* Parses a whole number in [lo, hi]; returns 0 or -1. */
static int parse_int(const char *s, long long lo, long long hi, long long *out) {
    if (!s || !*s) return -1;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

static int parse_args(int argc, char **argv, opts *o) {
    memset(o, 0, sizeof *o);
    o->run = -1;
    o->screen = 1;
    o->width = 100;
    o->height = 30;
    o->interval_ms = 200;
    static const struct {
        const char *name;
        long long lo, hi;
    } num_opts[] = {{"--run", 0, INT64_MAX},
                    {"--screen", 0, 4},
                    {"--width", 20, 1000},
                    {"--height", 8, 1000},
                    {"--interval", 20, 60000}};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 1;
        }
        if (!strcmp(a, "--dump")) {
            o->dump = 1;
            continue;
        }
        if (!strcmp(a, "--ascii")) {
            o->ascii = 1;
            continue;
        }
        size_t k = 0, nk = sizeof num_opts / sizeof num_opts[0];
        const char *val = NULL;
        for (; k < nk; k++) {
            size_t n = strlen(num_opts[k].name);
            if (!strcmp(a, num_opts[k].name)) {
                if (i + 1 >= argc) {
                    fprintf(stderr, "nnscope tui: %s needs a value\n", a);
                    return 2;
                }
                val = argv[++i];
                break;
            }
            if (!strncmp(a, num_opts[k].name, n) && a[n] == '=') {
                val = a + n + 1;
                break;
            }
        }
        if (k < nk) {
            long long v;
            if (parse_int(val, num_opts[k].lo, num_opts[k].hi, &v) != 0) {
                fprintf(stderr, "nnscope tui: %s: '%s' is not a whole number in %lld..%lld\n",
                        num_opts[k].name, val, num_opts[k].lo, num_opts[k].hi);
                return 2;
            }
            switch (k) {
            case 0:
                o->run = v;
                break;
            case 1:
                o->screen = (int)v;
                break;
            case 2:
                o->width = (int)v;
                break;
            case 3:
                o->height = (int)v;
                break;
            default:
                o->interval_ms = (int)v;
                break;
            }
            continue;
        }
        if (a[0] == '-' && a[1]) {
            fprintf(stderr, "nnscope tui: unknown option '%s'\n", a);
            usage(stderr);
            return 2;
        }
        if (o->path) {
            fprintf(stderr, "nnscope tui: one recording at a time ('%s' and '%s')\n", o->path, a);
            return 2;
        }
        o->path = a;
    }
    if (!o->path) {
        fprintf(stderr, "nnscope tui: which recording? (RUN.db)\n");
        usage(stderr);
        return 2;
    }
    return 0;
}

static int64_t latest_run(const ns_tui_model *m) {
    int64_t id = -1;
    for (int i = 0; i < m->nruns; i++)
        if (m->runs[i].id > id) id = m->runs[i].id;
    return id;
}

static int has_run(const ns_tui_model *m, int64_t id) {
    for (int i = 0; i < m->nruns; i++)
        if (m->runs[i].id == id) return 1;
    return 0;
}

/* The module a one-shot frame should select: the module of the worst finding, else the
 * first module (tree order) holding parameters. -1 when there is no module. */
static int focus_module(ns_tui_model *m) {
    for (size_t g = 0; g < m->ngroups; g++) {
        for (size_t i = m->groups[g].first; i < m->groups[g].first + m->groups[g].count; i++) {
            int mi =
                m->find[i].module_id >= 0 ? ns_tui_model_find_module(m, m->find[i].module_id) : -1;
            if (mi >= 0) return mi;
        }
    }
    ns_tui_model_build_rows(m, NS_SORT_TREE, NULL);
    for (int r = 0; r < m->nrows; r++)
        if (m->mods[m->rows[r].mod].nparams > 0) return m->rows[r].mod;
    return m->nrows > 0 ? m->rows[0].mod : -1;
}

/* Points the model's detail target at what the UI shows and reads its history. */
static void sync_detail(ns_tui_source *src, ns_tui_model *m, ns_tui_ui *ui) {
    int64_t id;
    ns_tui_detail_kind kind = ns_tui_ui_detail_target(ui, m, &id);
    ns_tui_model_detail_target(m, kind, id);
    ns_tui_source_detail(src, m);
}

/* ------------------------------------------------------------------ --dump */

static int run_dump(const opts *o) {
    struct stat sb;
    if (stat(o->path, &sb) != 0) {
        fprintf(stderr, "nnscope tui: %s: %s\n", o->path, strerror(errno));
        return 1;
    }
    ns_tui_source *src = ns_tui_source_new(o->path);
    ns_tui_model m;
    ns_tui_ui ui;
    ns_grid g = {0};
    int rc = 1;
    ns_tui_model_init(&m);
    ns_tui_ui_init(&ui);
    if (!src) {
        fprintf(stderr, "nnscope tui: out of memory\n");
        goto done;
    }
    if (ns_tui_source_poll(src, &m, 1) < 0) {
        fprintf(stderr, "nnscope tui: %s\n", ns_tui_source_error(src));
        goto done;
    }
    if (ns_tui_source_state(src) != NS_SRC_READY) {
        fprintf(stderr, "nnscope tui: %s: no nnscope recording in it yet\n", o->path);
        goto done;
    }
    int64_t run = o->run >= 0 ? o->run : latest_run(&m);
    if (run < 0 || !has_run(&m, run)) {
        if (run < 0)
            fprintf(stderr, "nnscope tui: %s: holds no run yet\n", o->path);
        else
            fprintf(stderr, "nnscope tui: %s: no run %lld in it\n", o->path, (long long)run);
        goto done;
    }
    ns_tui_source_select_run(src, &m, run);
    for (int i = 0; i < 1000; i++) {
        int r = ns_tui_source_poll(src, &m, 0);
        if (r < 0) {
            fprintf(stderr, "nnscope tui: %s\n", ns_tui_source_error(src));
            goto done;
        }
        if (r == 0) break;
    }
    ns_tui_rules_run(ns_tui_source_db(src), run, &m, DUMP_RULES_S);
    ui.screen = o->screen;
    int mi = focus_module(&m);
    if (mi >= 0) {
        ui.sel_mod = m.mods[mi].id;
        if (o->screen == NS_SCR_DETAIL) ns_tui_ui_open_detail(&ui, &m, mi, -1);
    }
    if (o->screen == NS_SCR_FINDINGS && m.nfind) {
        ns_tui_ui_finding_rows(&ui, &m);
        ui.find_sel = ui.nfrows > 1 ? 1 : 0; /* the first finding, under its rule's header */
        ui.find_open = 1;
    }
    if (o->screen == NS_SCR_DETAIL) sync_detail(src, &m, &ui);
    if (o->screen == NS_SCR_GPU)
        while (ns_tui_source_kernels(src, &m, 100000) > 0) {
        }
    if (ns_grid_init(&g, o->width, o->height, o->ascii) != 0) {
        fprintf(stderr, "nnscope tui: out of memory\n");
        goto done;
    }
    ns_tui_frame f = {o->path,
                      (int)ns_tui_source_state(src),
                      ns_tui_source_error(src),
                      wall_now(),
                      ns_tui_source_kernels_done(src),
                      o->run,
                      0,
                      STALE_AFTER_S};
    ns_tui_draw(&g, &m, &ui, &f);
    if (ns_grid_write(&g, stdout) != 0 || fflush(stdout) != 0) {
        fprintf(stderr, "nnscope tui: writing the frame: %s\n", strerror(errno));
        goto done;
    }
    rc = 0;
done:
    ns_grid_free(&g);
    ns_tui_ui_free(&ui);
    ns_tui_model_free(&m);
    ns_tui_source_free(src);
    return rc;
}

/* ------------------------------------------------------------------ live */

static volatile sig_atomic_t stop_requested;

static void on_stop(int sig) {
    (void)sig;
    stop_requested = 1;
}

static void on_crash(int sig) {
    ns_tui_term_stop();
    signal(sig, SIG_DFL);
    raise(sig);
}

static void restore_at_exit(void) {
    ns_tui_term_stop();
}

static const int stop_signals[] = {SIGINT, SIGTERM, SIGHUP};
static const int crash_signals[] = {SIGSEGV, SIGABRT, SIGBUS, SIGFPE, SIGILL};
#define NSTOP (int)(sizeof stop_signals / sizeof stop_signals[0])
#define NCRASH (int)(sizeof crash_signals / sizeof crash_signals[0])

static void install_signals(struct sigaction *saved) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sigemptyset(&sa.sa_mask);
    sa.sa_handler = on_stop; /* no SA_RESTART: a pending read returns at once */
    for (int i = 0; i < NSTOP; i++) sigaction(stop_signals[i], &sa, &saved[i]);
    sa.sa_handler = on_crash;
    sa.sa_flags = SA_RESETHAND | SA_NODEFER;
    for (int i = 0; i < NCRASH; i++) sigaction(crash_signals[i], &sa, &saved[NSTOP + i]);
}

static void restore_signals(const struct sigaction *saved) {
    for (int i = 0; i < NSTOP; i++) sigaction(stop_signals[i], &saved[i], NULL);
    for (int i = 0; i < NCRASH; i++) sigaction(crash_signals[i], &saved[NSTOP + i], NULL);
}

static int run_live(const opts *o, int ascii, int color) {
    ns_tui_source *src = ns_tui_source_new(o->path);
    if (!src) {
        fprintf(stderr, "nnscope tui: out of memory\n");
        return 1;
    }
    ns_tui_rules *rules = ns_tui_rules_new(o->path);
    ns_tui_model m;
    ns_tui_ui ui;
    ns_grid g = {0};
    ns_tui_model_init(&m);
    ns_tui_ui_init(&ui);
    struct sigaction saved[NSTOP + NCRASH];
    static int atexit_done;
    if (!atexit_done) atexit_done = !atexit(restore_at_exit);
    stop_requested = 0;
    install_signals(saved);
    char err[256];
    int rc = 0;
    if (ns_tui_term_start(color, err, sizeof err) != 0) {
        restore_signals(saved);
        fprintf(stderr, "nnscope tui: %s\n", err);
        rc = 1;
        goto done;
    }
    int w, h;
    ns_tui_term_size(&w, &h);
    if (ns_grid_init(&g, w > 0 ? w : 80, h > 0 ? h : 24, ascii) != 0) {
        rc = 1;
        goto stop;
    }
    double next_poll = 0;
    int rules_dirty = 0, picker_offered = 0;
    if (!rules) snprintf(m.rules_err, sizeof m.rules_err, "rules unavailable (no thread)");
    while (!ui.quit && !stop_requested) {
        double t = mono_ms();
        if (!ui.paused && t >= next_poll) {
            next_poll = t + o->interval_ms;
            int changed = ns_tui_source_poll(src, &m, 0);
            if (changed > 0) rules_dirty = 1;
            if (ns_tui_source_state(src) == NS_SRC_READY && m.run_id < 0) {
                int64_t pick = -1;
                if (o->run >= 0 && has_run(&m, o->run))
                    pick = o->run;
                else if (o->run < 0 && m.nruns == 1)
                    pick = m.runs[0].id;
                else if (o->run < 0 && m.nruns > 1 && !picker_offered) {
                    ui.screen = NS_SCR_RUNS;
                    picker_offered = 1;
                }
                if (pick >= 0) {
                    ns_tui_source_select_run(src, &m, pick);
                    ns_tui_source_poll(src, &m, 1);
                    rules_dirty = 1;
                }
            }
            if (ui.screen == NS_SCR_GPU && (changed > 0 || !ns_tui_source_kernels_done(src)))
                ns_tui_source_kernels(src, &m, 50000);
        }
        if (ui.picked_run >= 0) {
            int64_t pick = ui.picked_run;
            ui.picked_run = -1;
            if (pick != m.run_id || ui.screen == NS_SCR_RUNS) {
                ns_tui_model_set_findings(&m, NULL, 0);
                if (pick != m.run_id) {
                    ns_tui_source_select_run(src, &m, pick);
                    ns_tui_source_poll(src, &m, 1);
                    ui.sel_mod = ui.det_mod = INT64_MIN;
                    ui.find_sel = ui.find_top = ui.mod_top = 0;
                    rules_dirty = 1;
                }
                ui.screen = NS_SCR_MODULES;
            }
        }
        double now = wall_now();
        if (rules && m.run_id >= 0 && !ui.paused &&
            ns_tui_rules_due(rules, rules_dirty, now, RULES_GAP_S)) {
            if (ns_tui_rules_request(rules, m.run_id, now)) rules_dirty = 0;
        }
        if (rules) ns_tui_rules_collect(rules, &m);
        if (ui.screen == NS_SCR_DETAIL && m.run_id >= 0) sync_detail(src, &m, &ui);
        ns_tui_term_size(&w, &h);
        if (w > 0 && h > 0 && (w != g.w || h != g.h)) ns_grid_resize(&g, w, h);
        ns_tui_frame f = {o->path,
                          (int)ns_tui_source_state(src),
                          ns_tui_source_error(src),
                          now,
                          ns_tui_source_kernels_done(src),
                          o->run,
                          0,
                          STALE_AFTER_S};
        f.rules_busy = rules && m.rules_state == 0;
        ns_tui_draw(&g, &m, &ui, &f);
        ns_tui_term_present(&g);
        int wait = ui.paused ? 500 : (int)(next_poll - mono_ms());
        if (wait < 10) wait = 10;
        int y = 0, x = 0, dbl = 0;
        int key = ns_tui_term_read(wait, &y, &x, &dbl);
        int before = ui.screen;
        if (key == NS_TERM_MOUSE)
            ns_tui_ui_click(&ui, &m, y, x, dbl);
        else if (key >= 0)
            ns_tui_ui_key(&ui, &m, key);
        if (ui.screen == NS_SCR_GPU && before != NS_SCR_GPU) next_poll = 0;
    }
stop:
    ns_tui_term_free();
    restore_signals(saved);
done:
    ns_tui_rules_free(rules);
    ns_grid_free(&g);
    ns_tui_ui_free(&ui);
    ns_tui_model_free(&m);
    ns_tui_source_free(src);
    return rc;
}

int ns_tui_main(int argc, char **argv) {
    opts o;
    int rc = parse_args(argc, argv, &o);
    if (rc != 0) return rc == 1 ? 0 : rc;
    if (o.dump) return run_dump(&o);
    if (!isatty(STDIN_FILENO) || !isatty(STDOUT_FILENO)) {
        fprintf(stderr, "nnscope tui: needs a terminal (use --dump for a text frame)\n");
        return 1;
    }
    /* Wide characters need the user's character set; numbers keep the C locale. */
    char *old = setlocale(LC_CTYPE, NULL);
    char saved[128];
    snprintf(saved, sizeof saved, "%s", old ? old : "C");
    setlocale(LC_CTYPE, "");
    int utf8 = strcmp(nl_langinfo(CODESET), "UTF-8") == 0;
    const char *nc = getenv("NO_COLOR");
    rc = run_live(&o, o.ascii || !utf8, !(nc && nc[0]));
    setlocale(LC_CTYPE, saved);
    return rc;
}
