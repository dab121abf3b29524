/* `nnscope tui RUN.db --dump`: one frame as text, checked for content (not byte-exact) at
 * several sizes, with and without --ascii, on every screen, plus the error paths. Drives
 * ns_tui_main with argv exactly as the CLI does. */
#include <fcntl.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "grid.h"
#include "test_tui_fixture.h"
#include "tui.h"

static char db_path[256];

typedef struct {
    int rc;
    char *out, *err;
} result;

static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return strdup("");
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    size_t got = fread(s, 1, (size_t)n, f);
    s[got] = 0;
    fclose(f);
    return s;
}

/* Runs ns_tui_main("tui", args..., NULL) with stdout and stderr captured. */
static result run(const char *first, ...) {
    char *argv[32];
    int argc = 0;
    argv[argc++] = "tui";
    va_list ap;
    va_start(ap, first);
    for (const char *a = first; a && argc < 31; a = va_arg(ap, const char *))
        argv[argc++] = (char *)a;
    va_end(ap);
    argv[argc] = NULL;
    char outp[300], errp[300];
    snprintf(outp, sizeof outp, "%s.out", db_path);
    snprintf(errp, sizeof errp, "%s.err", db_path);
    fflush(stdout);
    fflush(stderr);
    int so = dup(1), se = dup(2);
    int fo = open(outp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    int fe = open(errp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    dup2(fo, 1);
    dup2(fe, 2);
    result r;
    r.rc = ns_tui_main(argc, argv);
    fflush(stdout);
    fflush(stderr);
    dup2(so, 1);
    dup2(se, 2);
    close(so);
    close(se);
    close(fo);
    close(fe);
    r.out = slurp(outp);
    r.err = slurp(errp);
    unlink(outp);
    unlink(errp);
    return r;
}

static void result_free(result *r) {
    free(r->out);
    free(r->err);
}

/* The line of text holding needle, copied into buf ("" when absent). */
static const char *line_with(const char *text, const char *needle, char *buf, size_t cap) {
    const char *hit = strstr(text, needle);
    buf[0] = 0;
    if (!hit) return buf;
    const char *start = hit;
    while (start > text && start[-1] != '\n') start--;
    const char *end = strchr(hit, '\n');
    size_t n = end ? (size_t)(end - start) : strlen(start);
    if (n >= cap) n = cap - 1;
    memcpy(buf, start, n);
    buf[n] = 0;
    return buf;
}

/* Every line has at most w columns and there are exactly h lines. */
static void assert_frame_size(const char *text, int w, int h) {
    int lines = 0;
    const char *p = text;
    while (*p) {
        const char *end = strchr(p, '\n');
        assert_non_null(end);
        char buf[8192];
        size_t n = (size_t)(end - p);
        assert_true(n < sizeof buf);
        memcpy(buf, p, n);
        buf[n] = 0;
        assert_true(ns_utf8_width(buf) <= w);
        lines++;
        p = end + 1;
    }
    assert_int_equal(lines, h);
}

static int has_non_ascii(const char *s) {
    for (; *s; s++)
        if ((unsigned char)*s >= 0x80) return 1;
    return 0;
}

static int setup(void **state) {
    (void)state;
    snprintf(db_path, sizeof db_path, "/tmp/nstui-dump-%d.db", (int)getpid());
    sqlite3 *db = tfx_create(db_path);
    if (!db) return -1;
    double t0 = tfx_now() - 30;
    tfx_run(db, 1, "running", "./bug_unregistered_layer --epochs 1", t0);
    tfx_model(db, 1);
    tfx_steps(db, 1, 0, 299, t0);
    tfx_finish(db, 1, t0 + 3);
    sqlite3_close(db);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    char side[300];
    unlink(db_path);
    snprintf(side, sizeof side, "%s-wal", db_path);
    unlink(side);
    snprintf(side, sizeof side, "%s-shm", db_path);
    unlink(side);
    return 0;
}

static void modules_at_80x24_show_the_tree_and_the_flagged_module(void **state) {
    (void)state;
    result r = run(db_path, "--dump", "--width", "80", "--height", "24", NULL);
    assert_int_equal(r.rc, 0);
    assert_string_equal(r.err, "");
    assert_frame_size(r.out, 80, 24);
    char line[1024];
    /* Header: command, status, step, severity counts. */
    assert_non_null(strstr(r.out, "./bug_unregistered_layer"));
    assert_non_null(strstr(r.out, " finished "));
    assert_non_null(strstr(r.out, "step 299"));
    assert_non_null(strstr(r.out, "findings: 1 error  0 warnings  0 info"));
    /* The tree: every module, indented under the root with tree glyphs. */
    assert_non_null(strstr(r.out, "\u25be (model)"));
    assert_non_null(strstr(r.out, "\u251c\u2500fc1"));
    assert_non_null(strstr(r.out, "\u251c\u2500fc2"));
    assert_non_null(strstr(r.out, "\u2514\u2500bn"));
    assert_non_null(strstr(r.out, "act"));
    /* The unregistered module is in place, marked, flagged and selected. */
    line_with(r.out, "(unregistered Lin", line, sizeof line);
    assert_non_null(strstr(line, "UNREG"));
    assert_non_null(strstr(line, "unre"));
    assert_true(line[0] == '>');
    line_with(r.out, "fc1 ", line, sizeof line);
    assert_null(strstr(line, "UNREG"));
    assert_non_null(strstr(line, "train"));
    /* Gradient sparklines use block characters. */
    assert_non_null(strstr(line, "\u2588"));
    /* Its parameters pane says they are not trained. */
    assert_non_null(strstr(r.out, "NOT IN OPT"));
    result_free(&r);
}

static void wider_frames_show_full_names_and_rule_ids(void **state) {
    (void)state;
    result r = run(db_path, "--dump", "--width", "160", "--height", "48", NULL);
    assert_int_equal(r.rc, 0);
    assert_frame_size(r.out, 160, 48);
    char line[2048];
    line_with(r.out, "(unregistered Linear #5) ", line, sizeof line);
    assert_non_null(strstr(line, "UNREG unregistered-module"));
    assert_non_null(strstr(r.out, "Linear(in_features=16, out_features=16, bias=True)"));
    assert_non_null(strstr(r.out, "not registered in the model"));
    /* The gradient value column appears from 100 columns. */
    assert_non_null(strstr(r.out, "grad norm"));
    line_with(r.out, "fc2 ", line, sizeof line);
    assert_non_null(strstr(line, "1.0e-03"));
    result_free(&r);
}

static void ascii_frames_hold_only_ascii(void **state) {
    (void)state;
    const char *sizes[][2] = {{"80", "24"}, {"100", "30"}, {"132", "43"}};
    for (int i = 0; i < 3; i++) {
        for (int screen = 1; screen <= 4; screen++) {
            char sc[4];
            snprintf(sc, sizeof sc, "%d", screen);
            result r = run(db_path, "--dump", "--ascii", "--screen", sc, "--width", sizes[i][0],
                           "--height", sizes[i][1], NULL);
            assert_int_equal(r.rc, 0);
            assert_false(has_non_ascii(r.out));
            assert_frame_size(r.out, atoi(sizes[i][0]), atoi(sizes[i][1]));
            if (screen == 1) {
                assert_non_null(strstr(r.out, "v (model)"));
                assert_non_null(strstr(r.out, "|-fc1"));
                assert_non_null(strstr(r.out, "`-bn"));
                char line[1024];
                line_with(r.out, "(unregistered Lin", line, sizeof line);
                assert_non_null(strstr(line, "UNREG"));
                assert_non_null(strstr(line, "#")); /* sparkline top level */
            }
            if (screen == 3) assert_non_null(strstr(r.out, "*"));
            result_free(&r);
        }
    }
}

static void findings_screen_explains_the_selected_finding(void **state) {
    (void)state;
    result r = run(db_path, "--dump", "--screen", "2", "--width", "100", "--height", "40", NULL);
    assert_int_equal(r.rc, 0);
    assert_frame_size(r.out, 100, 40);
    char line[1024];
    line_with(r.out, "unregistered-module (1)", line, sizeof line);
    assert_non_null(strstr(line, "ERROR"));
    assert_non_null(strstr(r.out, "(unregistered Linear #5)"));
    assert_non_null(strstr(r.out, "steps 0-299"));
    assert_non_null(strstr(r.out, "Why it matters:"));
    assert_non_null(strstr(r.out, "Evidence:"));
    assert_non_null(strstr(r.out, "nnscope rules --sql unregistered-module"));
    assert_non_null(strstr(r.out, "2 Findings (1)"));
    result_free(&r);
}

static void detail_screen_plots_four_histories(void **state) {
    (void)state;
    result r = run(db_path, "--dump", "--screen", "3", "--width", "100", "--height", "40", NULL);
    assert_int_equal(r.rc, 0);
    assert_frame_size(r.out, 100, 40);
    assert_non_null(strstr(r.out, "gradient norm"));
    assert_non_null(strstr(r.out, "update/weight ratio"));
    assert_non_null(strstr(r.out, "weight norm"));
    assert_non_null(strstr(r.out, "activation zero fraction"));
    assert_non_null(strstr(r.out, "steps 0-299"));
    /* Braille plots, and the module's parameters to pick from. */
    int braille = 0;
    for (const char *p = r.out; *p;) {
        uint32_t cp = ns_utf8_next(&p);
        if (cp > 0x2800 && cp <= 0x28FF) braille++;
    }
    assert_true(braille > 50);
    assert_non_null(strstr(r.out, "   weight"));
    assert_non_null(strstr(r.out, "   bias"));
    result_free(&r);
    /* 80x24 still shows all four plots. */
    r = run(db_path, "--dump", "--screen", "3", "--width", "80", "--height", "24", NULL);
    assert_int_equal(r.rc, 0);
    assert_non_null(strstr(r.out, "gradient norm"));
    assert_non_null(strstr(r.out, "activation zero fraction"));
    result_free(&r);
}

static void gpu_screen_says_when_there_are_no_timings_and_lists_kernels(void **state) {
    (void)state;
    result r = run(db_path, "--dump", "--screen", "4", NULL);
    assert_int_equal(r.rc, 0);
    assert_non_null(strstr(r.out, "No GPU timings were recorded for this run."));
    assert_non_null(strstr(r.out, "off (CPU build)"));
    result_free(&r);
    sqlite3 *db;
    assert_int_equal(sqlite3_open(db_path, &db), SQLITE_OK);
    tfx_exec(db, "INSERT INTO strings (id, s) VALUES (1, 'sgemm_128x64_nn'), (2, 'relu_fwd');"
                 "INSERT INTO kernels (run_id, step, module_id, phase, kind, name_id, start_ns, "
                 "end_ns) VALUES (1, 0, 2, 'forward', 'kernel', 1, 0, 3000000),"
                 "(1, 0, 2, 'backward', 'kernel', 1, 0, 5000000),"
                 "(1, 0, 3, 'forward', 'kernel', 2, 0, 1000000),"
                 "(1, 0, NULL, 'optimizer', 'kernel', 2, 0, 500000);"
                 "INSERT INTO kernels (run_id, step, phase, kind, start_ns, end_ns, bytes) "
                 "VALUES (1, 0, 'other', 'memcpy', 0, 100, 4096)");
    sqlite3_close(db);
    r = run(db_path, "--dump", "--screen", "4", "--width", "100", "--height", "30", NULL);
    assert_int_equal(r.rc, 0);
    char line[1024];
    line_with(r.out, "sgemm_128x64_nn", line, sizeof line);
    assert_non_null(strstr(line, "8.000")); /* total ms */
    assert_non_null(strstr(line, "84.2%"));
    line_with(r.out, "fc1 ", line, sizeof line);
    assert_non_null(strstr(line, "3.000"));
    assert_non_null(strstr(line, "5.000"));
    assert_non_null(strstr(r.out, "(optimizer/other)"));
    assert_non_null(strstr(r.out, "memcpy: 1 copies"));
    result_free(&r);
    assert_int_equal(sqlite3_open(db_path, &db), SQLITE_OK);
    tfx_exec(db, "DELETE FROM kernels; DELETE FROM strings");
    sqlite3_close(db);
}

static void several_runs_pick_the_latest_or_the_one_asked_for(void **state) {
    (void)state;
    sqlite3 *db;
    assert_int_equal(sqlite3_open(db_path, &db), SQLITE_OK);
    /* Run 2 is running but its heartbeat is a minute old: stale. */
    tfx_run(db, 2, "running", "./second_run", tfx_now() - 60);
    sqlite3_close(db);
    result r = run(db_path, "--dump", NULL);
    assert_int_equal(r.rc, 0);
    assert_non_null(strstr(r.out, "run 2 of 2"));
    assert_non_null(strstr(r.out, " stale "));
    assert_non_null(strstr(r.out, "no modules recorded yet"));
    result_free(&r);
    r = run(db_path, "--dump", "--run", "1", NULL);
    assert_int_equal(r.rc, 0);
    assert_non_null(strstr(r.out, "run 1 of 2"));
    assert_non_null(strstr(r.out, "fc1"));
    result_free(&r);
    r = run(db_path, "--dump", "--screen=0", NULL);
    assert_int_equal(r.rc, 0);
    assert_non_null(strstr(r.out, "holds 2 runs"));
    assert_non_null(strstr(r.out, "./second_run"));
    assert_non_null(strstr(r.out, "./bug_unregistered_layer"));
    result_free(&r);
    assert_int_equal(sqlite3_open(db_path, &db), SQLITE_OK);
    tfx_exec(db, "DELETE FROM runs WHERE id = 2");
    sqlite3_close(db);
}

static void errors_name_the_file_and_usage_errors_return_2(void **state) {
    (void)state;
    result r = run("/tmp/nstui-no-such-file.db", "--dump", NULL);
    assert_int_equal(r.rc, 1);
    assert_non_null(strstr(r.err, "/tmp/nstui-no-such-file.db"));
    assert_string_equal(r.out, "");
    result_free(&r);
    r = run(db_path, "--dump", "--run", "99", NULL);
    assert_int_equal(r.rc, 1);
    assert_non_null(strstr(r.err, "no run 99"));
    result_free(&r);
    r = run(db_path, "--dump", "--screen", "7", NULL);
    assert_int_equal(r.rc, 2);
    assert_non_null(strstr(r.err, "--screen"));
    result_free(&r);
    r = run(db_path, "--dump", "--bogus", NULL);
    assert_int_equal(r.rc, 2);
    assert_non_null(strstr(r.err, "--bogus"));
    result_free(&r);
    r = run("--dump", NULL);
    assert_int_equal(r.rc, 2);
    result_free(&r);
    r = run(db_path, "--help", NULL);
    assert_int_equal(r.rc, 0);
    assert_non_null(strstr(r.out, "usage: nnscope tui"));
    result_free(&r);
    /* Not a recording. */
    char other[300];
    snprintf(other, sizeof other, "%s.other", db_path);
    unlink(other);
    sqlite3 *db;
    assert_int_equal(sqlite3_open(other, &db), SQLITE_OK);
    tfx_exec(db, "CREATE TABLE t (x)");
    sqlite3_close(db);
    r = run(other, "--dump", NULL);
    assert_int_equal(r.rc, 1);
    assert_non_null(strstr(r.err, other));
    result_free(&r);
    /* Not even SQLite. */
    FILE *f = fopen(other, "wb");
    fputs("this is not a database, just text that is long enough to have a header....\n"
          "more text more text more text more text more text more text more text\n",
          f);
    fclose(f);
    r = run(other, "--dump", NULL);
    assert_int_equal(r.rc, 1);
    assert_non_null(strstr(r.err, other));
    result_free(&r);
    unlink(other);
    /* Live mode needs a terminal; run() points stdout at a file. */
    r = run(db_path, NULL);
    assert_int_equal(r.rc, 1);
    assert_non_null(strstr(r.err, "--dump"));
    result_free(&r);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(modules_at_80x24_show_the_tree_and_the_flagged_module),
        cmocka_unit_test(wider_frames_show_full_names_and_rule_ids),
        cmocka_unit_test(ascii_frames_hold_only_ascii),
        cmocka_unit_test(findings_screen_explains_the_selected_finding),
        cmocka_unit_test(detail_screen_plots_four_histories),
        cmocka_unit_test(gpu_screen_says_when_there_are_no_timings_and_lists_kernels),
        cmocka_unit_test(several_runs_pick_the_latest_or_the_one_asked_for),
        cmocka_unit_test(errors_name_the_file_and_usage_errors_return_2),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
