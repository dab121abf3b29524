/* View-model tests of the TUI: rings, sparkline scaling, tree building, sorting, filtering,
 * finding grouping, incremental refresh and bounded memory, key handling. */
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
#include <malloc.h>

#include "draw.h"
#include "fetch.h"
#include "grid.h"
#include "model.h"
#include "ring.h"
#include "spark.h"
#include "test_tui_fixture.h"
#include "ui.h"

/* ------------------------------------------------------------------ rings */

static void ring_window_keeps_the_last_points(void **state) {
    (void)state;
    ns_ring r;
    ns_ring_init(&r, 32, NS_RING_WINDOW);
    assert_int_equal(ns_ring_len(&r), 0);
    assert_true(isnan(ns_ring_last(&r)));
    assert_int_equal(ns_ring_bytes(&r), 0); /* nothing allocated before the first push */
    for (int i = 0; i < 100; i++) ns_ring_push(&r, i, i * 2.0);
    assert_int_equal(ns_ring_len(&r), 32);
    int64_t x;
    double v;
    ns_ring_get(&r, 0, &x, &v);
    assert_int_equal(x, 68);
    assert_float_equal(v, 136.0, 1e-12);
    ns_ring_get(&r, 31, &x, &v);
    assert_int_equal(x, 99);
    double tail[5];
    assert_int_equal(ns_ring_tail(&r, 5, tail), 5);
    assert_float_equal(tail[0], 190.0, 1e-12);
    assert_float_equal(tail[4], 198.0, 1e-12);
    /* The same step again replaces the newest point instead of adding one. */
    ns_ring_push(&r, 99, -1.0);
    assert_int_equal(ns_ring_len(&r), 32);
    assert_float_equal(ns_ring_last(&r), -1.0, 0);
    ns_ring_free(&r);
}

static void ring_downsample_covers_the_whole_run_in_bounded_space(void **state) {
    (void)state;
    ns_ring r;
    ns_ring_init(&r, 64, NS_RING_DOWNSAMPLE);
    ns_ring_push(&r, 0, 0.0);
    size_t bytes = ns_ring_bytes(&r);
    assert_true(bytes > 0);
    for (int i = 1; i < 10000; i++) ns_ring_push(&r, i, (double)i);
    assert_true(ns_ring_len(&r) <= 65);
    assert_true(ns_ring_len(&r) >= 32);
    assert_int_equal(ns_ring_bytes(&r), bytes); /* no growth */
    int64_t x0, xn;
    double v0, vn;
    ns_ring_get(&r, 0, &x0, &v0);
    ns_ring_get(&r, ns_ring_len(&r) - 1, &xn, &vn);
    assert_true(x0 < 10000 / 32); /* the start of the run is still there */
    assert_int_equal(xn, 9999);   /* and the newest sample */
    /* A bucket is the mean of its samples: the first covers 0..stride-1. */
    assert_float_equal(v0, (double)(r.stride - 1) / 2.0, 1e-9);
    /* Missing samples do not pull the mean; a bucket of only Inf stays Inf. */
    ns_ring g;
    ns_ring_init(&g, 4, NS_RING_DOWNSAMPLE);
    for (int i = 0; i < 4; i++) ns_ring_push(&g, i, i % 2 ? NAN : 4.0);
    for (int i = 4; i < 8; i++) ns_ring_push(&g, i, INFINITY);
    double v;
    ns_ring_get(&g, 0, NULL, &v);
    assert_float_equal(v, 4.0, 0);
    ns_ring_get(&g, ns_ring_len(&g) - 1, NULL, &v);
    assert_true(isinf(v));
    ns_ring_free(&g);
    double out[10];
    int64_t xs[10];
    assert_int_equal(ns_ring_resample(&r, 10, out, xs), 10);
    for (int i = 1; i < 10; i++) assert_true(out[i] > out[i - 1]);
    assert_int_equal(xs[9], 9999);
    ns_ring_free(&r);
}

/* ------------------------------------------------------------------ sparklines */

static void spark_levels_scale_min_to_max(void **state) {
    (void)state;
    double v[8] = {0, 1, 2, 3, 4, 5, 6, 7};
    int lv[8];
    double lo, hi;
    assert_true(ns_spark_range(v, 8, 0, &lo, &hi));
    assert_float_equal(lo, 0, 0);
    assert_float_equal(hi, 7, 0);
    ns_spark_levels(v, 8, lo, hi, 8, 0, lv);
    assert_int_equal(lv[0], 0);
    assert_int_equal(lv[7], 7);
    for (int i = 1; i < 8; i++) assert_true(lv[i] >= lv[i - 1]);
    /* Flat series sit in the middle; NaN is blank; Inf is the overflow marker. */
    double flat[3] = {5, 5, 5}, odd[3] = {NAN, INFINITY, 1};
    ns_spark_levels(flat, 3, 5, 5, 8, 0, lv);
    assert_int_equal(lv[0], 4);
    assert_int_equal(lv[2], 4);
    ns_spark_levels(odd, 3, 0, 2, 8, 0, lv);
    assert_int_equal(lv[0], -1);
    assert_int_equal(lv[1], 8);
    assert_int_equal(lv[2], 4);
    assert_int_equal(ns_spark_glyph(-1, 0), ' ');
    assert_int_equal(ns_spark_glyph(8, 0), '!');
    assert_int_equal(ns_spark_glyph(0, 0), 0x2581);
    assert_int_equal(ns_spark_glyph(7, 0), 0x2588);
    assert_int_equal(ns_spark_glyph(0, 1), '_');
    assert_int_equal(ns_spark_glyph(7, 1), '#');
    /* Log scale: decades map evenly, non-positive values are blank. */
    double decades[4] = {1e-4, 1e-3, 1e-2, 0};
    assert_true(ns_spark_range(decades, 4, 1, &lo, &hi));
    assert_float_equal(lo, -4, 1e-12);
    assert_float_equal(hi, -2, 1e-12);
    ns_spark_levels(decades, 4, lo, hi, 8, 1, lv);
    assert_int_equal(lv[0], 0);
    assert_int_equal(lv[1], 4);
    assert_int_equal(lv[2], 7);
    assert_int_equal(lv[3], -1);
    double wide[3] = {1e-5, 1e-3, 1e-2}; /* three decades: a log axis */
    assert_true(ns_plot_wants_log(wide, 3));
    assert_false(ns_plot_wants_log(decades, 3)); /* two: linear */
    assert_false(ns_plot_wants_log(v, 8));
}

static void spark_draw_is_right_aligned_in_both_charsets(void **state) {
    (void)state;
    ns_grid g;
    assert_int_equal(ns_grid_init(&g, 20, 2, 0), 0);
    double v[4] = {1, 2, 3, 4};
    ns_spark_draw(&g, 0, 0, 10, v, 4, NS_A_PLOT);
    assert_int_equal(ns_grid_at(&g, 0, 5)->ch, ' ');
    assert_int_equal(ns_grid_at(&g, 0, 6)->ch, 0x2581);
    assert_int_equal(ns_grid_at(&g, 0, 9)->ch, 0x2588);
    ns_grid_free(&g);
    assert_int_equal(ns_grid_init(&g, 20, 2, 1), 0);
    ns_spark_draw(&g, 0, 0, 10, v, 4, NS_A_PLOT);
    char line[64];
    ns_grid_row_text(&g, 0, line, sizeof line);
    assert_string_equal(line, "      _-+#");
    /* More values than cells: the newest win. */
    double many[30];
    for (int i = 0; i < 30; i++) many[i] = i < 20 ? 100 : i;
    ns_spark_draw(&g, 1, 0, 10, many, 30, NS_A_PLOT);
    ns_grid_row_text(&g, 1, line, sizeof line);
    assert_string_equal(line, "__.-:=+*##");
    ns_grid_free(&g);
}

static void plot_draws_braille_or_ascii_lines(void **state) {
    (void)state;
    double v[40];
    for (int i = 0; i < 40; i++) v[i] = (double)i;
    ns_grid g;
    assert_int_equal(ns_grid_init(&g, 20, 4, 0), 0);
    double lo, hi;
    int lg;
    assert_int_equal(ns_plot_draw(&g, 0, 0, 4, 20, v, 40, NS_A_PLOT, &lo, &hi, &lg), 0);
    assert_float_equal(lo, 0, 0);
    assert_float_equal(hi, 39, 0);
    assert_int_equal(lg, 0);
    /* A rising line: bottom-left and top-right cells hold braille dots. */
    assert_true(ns_grid_at(&g, 3, 0)->ch >= 0x2800 && ns_grid_at(&g, 3, 0)->ch <= 0x28FF);
    assert_true(ns_grid_at(&g, 0, 19)->ch > 0x2800 && ns_grid_at(&g, 0, 19)->ch <= 0x28FF);
    assert_int_equal(ns_grid_at(&g, 0, 0)->ch, ' ');
    ns_grid_free(&g);
    assert_int_equal(ns_grid_init(&g, 20, 4, 1), 0);
    assert_int_equal(ns_plot_draw(&g, 0, 0, 4, 20, v, 20, NS_A_PLOT, NULL, NULL, NULL), 0);
    assert_int_equal(ns_grid_at(&g, 3, 0)->ch, '*');
    assert_int_equal(ns_grid_at(&g, 0, 19)->ch, '*');
    /* Nothing finite: nothing drawn, reported. */
    double nan2[2] = {NAN, NAN};
    assert_int_equal(ns_plot_draw(&g, 0, 0, 4, 20, nan2, 2, NS_A_PLOT, NULL, NULL, NULL), 1);
    ns_grid_free(&g);
}

/* ------------------------------------------------------------------ tree */

/* Root 10 with children 30 (blocks, children 40 and 50) and 20 (head); 60 has an unknown
 * parent and becomes a root; 70 is unregistered under blocks. Added out of id order. */
static void small_tree(ns_tui_model *m) {
    ns_tui_model_init(m);
    assert_true(ns_tui_model_add_module(m, 30, 10, "blocks", "Sequential", NULL, 1, 0, -1, 0, 0) >=
                0);
    assert_true(ns_tui_model_add_module(m, 10, -1, "", "Net", NULL, 1, 0, -1, 0, 0) >= 0);
    assert_true(ns_tui_model_add_module(m, 50, 30, "blocks.1", "Linear", NULL, 1, 0, -1, 20, 0) >=
                0);
    assert_true(ns_tui_model_add_module(m, 40, 30, "blocks.0", "Linear", NULL, 1, 0, -1, 100, 0) >=
                0);
    assert_true(ns_tui_model_add_module(m, 20, 10, "head", "Linear", NULL, 1, 0, -1, 7, 0) >= 0);
    assert_true(ns_tui_model_add_module(m, 60, 999, "ghost", "Linear", NULL, 1, 0, -1, 1, 0) >= 0);
    assert_true(ns_tui_model_add_module(m, 70, 30, "blocks.(unregistered Linear #70)", "Linear",
                                        NULL, 0, 0, -1, 3, 0) >= 0);
    /* The same id twice is ignored. */
    assert_int_equal(ns_tui_model_add_module(m, 40, 30, "dup", "X", NULL, 1, 0, -1, 0, 0), -1);
    ns_tui_model_link(m);
}

static const char *row_path(const ns_tui_model *m, int r) {
    return m->mods[m->rows[r].mod].path;
}

static void tree_rows_follow_parents_with_indentation(void **state) {
    (void)state;
    ns_tui_model m;
    small_tree(&m);
    assert_int_equal(ns_tui_model_build_rows(&m, NS_SORT_TREE, NULL), 7);
    const char *want[] = {
        "", "head", "blocks", "blocks.0", "blocks.1", "blocks.(unregistered Linear #70)", "ghost"};
    const int depth[] = {0, 1, 1, 2, 2, 2, 0};
    for (int i = 0; i < 7; i++) {
        assert_string_equal(row_path(&m, i), want[i]);
        assert_int_equal(m.rows[i].depth, depth[i]);
    }
    /* Shown names: relative to the parent; the root is "(model)"; unregistered keep theirs. */
    assert_string_equal(m.mods[m.rows[0].mod].name, "(model)");
    assert_string_equal(m.mods[m.rows[3].mod].name, "0");
    assert_string_equal(m.mods[m.rows[5].mod].name, "(unregistered Linear #70)");
    assert_int_equal(m.mods[m.rows[5].mod].registered, 0);
    /* Last-sibling flags and the continuation bits drawn as vertical lines. */
    assert_false(m.rows[1].last); /* head has blocks after it */
    assert_true(m.rows[2].last);
    assert_true(m.rows[5].last);
    assert_int_equal(m.rows[3].more, 0); /* blocks is the last child: no line beside it */
    /* Subtree parameter counts. */
    assert_int_equal(m.mods[m.rows[2].mod].tree_params, 123);
    assert_int_equal(m.mods[m.rows[0].mod].tree_params, 130);
    /* Collapsing blocks hides its three children; unknown ids are not found. */
    m.mods[ns_tui_model_find_module(&m, 30)].collapsed = 1;
    assert_int_equal(ns_tui_model_build_rows(&m, NS_SORT_TREE, NULL), 4);
    assert_string_equal(row_path(&m, 3), "ghost");
    assert_int_equal(ns_tui_model_find_module(&m, 12345), -1);
    ns_tui_model_free(&m);
}

static void tree_continuation_lines_mark_open_ancestors(void **state) {
    (void)state;
    ns_tui_model m;
    ns_tui_model_init(&m);
    ns_tui_model_add_module(&m, 1, -1, "", "Net", NULL, 1, 0, -1, 0, 0);
    ns_tui_model_add_module(&m, 2, 1, "a", "Seq", NULL, 1, 0, -1, 0, 0);
    ns_tui_model_add_module(&m, 3, 2, "a.x", "Linear", NULL, 1, 0, -1, 0, 0);
    ns_tui_model_add_module(&m, 4, 1, "b", "Linear", NULL, 1, 0, -1, 0, 0);
    assert_int_equal(ns_tui_model_build_rows(&m, NS_SORT_TREE, NULL), 4);
    /* a.x sits under a, which has a later sibling (b): bit 0 set. */
    assert_string_equal(row_path(&m, 2), "a.x");
    assert_int_equal(m.rows[2].more, 1);
    ns_tui_model_free(&m);
}

static void tree_sorting_orders_siblings_by_key(void **state) {
    (void)state;
    ns_tui_model m;
    small_tree(&m);
    /* Gradients: blocks.1 larger than blocks.0; head largest of the root's children. */
    int p1 = ns_tui_model_add_param(&m, 1, 40, "blocks.0.weight", 0, "10x10", 100, 1, 1, 0.1);
    int p2 = ns_tui_model_add_param(&m, 2, 50, "blocks.1.weight", 0, "4x5", 20, 1, 1, 0.1);
    int p3 = ns_tui_model_add_param(&m, 3, 20, "head.weight", 0, "7", 7, 1, 1, 0.1);
    assert_true(p1 >= 0 && p2 >= 0 && p3 >= 0);
    ns_tui_model_link(&m);
    ns_tui_model_add_stat(&m, 1, 1, 0.1, 0.001, 1, 0.001, 0, "cpu");
    ns_tui_model_add_stat(&m, 1, 2, 0.3, 0.001, 1, 0.001, 0, "cpu");
    ns_tui_model_add_stat(&m, 1, 3, 5.0, 0.001, 1, 0.001, 0, "cpu");
    ns_tui_model_flush_stats(&m);
    ns_tui_model_build_rows(&m, NS_SORT_GRAD, NULL);
    assert_string_equal(row_path(&m, 1), "head");     /* 5.0 before blocks' sqrt(0.1) */
    assert_string_equal(row_path(&m, 3), "blocks.1"); /* 0.3 before 0.1 */
    assert_string_equal(row_path(&m, 4), "blocks.0");
    assert_string_equal(row_path(&m, 5), "blocks.(unregistered Linear #70)"); /* no grad: last */
    /* The parent aggregates its subtree: sqrt(0.1^2 + 0.3^2). */
    int bi = ns_tui_model_find_module(&m, 30);
    assert_float_equal(ns_ring_last(&m.mods[bi].grad), sqrt(0.1 * 0.1 + 0.3 * 0.3), 1e-12);
    ns_tui_model_build_rows(&m, NS_SORT_NAME, NULL);
    assert_string_equal(row_path(&m, 1), "blocks");
    assert_string_equal(row_path(&m, 2), "blocks.(unregistered Linear #70)"); /* '(' < '0' */
    assert_string_equal(row_path(&m, 3), "blocks.0");
    assert_string_equal(row_path(&m, 5), "head");
    ns_tui_model_build_rows(&m, NS_SORT_PARAMS, NULL);
    assert_string_equal(row_path(&m, 1), "blocks"); /* 123 before head's 7 */
    assert_string_equal(row_path(&m, 2), "blocks.0");
    /* Flags sort: the unregistered module comes first among its siblings. */
    ns_tui_model_build_rows(&m, NS_SORT_FLAGS, NULL);
    assert_string_equal(row_path(&m, 1), "blocks");
    assert_string_equal(row_path(&m, 2), "blocks.(unregistered Linear #70)");
    assert_string_equal(row_path(&m, 3), "blocks.0");
    assert_string_equal(ns_tui_sort_name(NS_SORT_RATIO), "ratio");
    ns_tui_model_free(&m);
}

static void tree_filter_keeps_matches_and_their_ancestors(void **state) {
    (void)state;
    ns_tui_model m;
    small_tree(&m);
    assert_int_equal(ns_tui_model_build_rows(&m, NS_SORT_TREE, "BLOCKS.1"), 3);
    assert_string_equal(row_path(&m, 0), "");
    assert_string_equal(row_path(&m, 1), "blocks");
    assert_string_equal(row_path(&m, 2), "blocks.1");
    /* Type names match too. */
    assert_int_equal(ns_tui_model_build_rows(&m, NS_SORT_TREE, "sequential"), 2);
    assert_int_equal(ns_tui_model_build_rows(&m, NS_SORT_TREE, "no such thing"), 0);
    assert_int_equal(ns_tui_model_build_rows(&m, NS_SORT_TREE, ""), 7);
    ns_tui_model_free(&m);
}

/* ------------------------------------------------------------------ findings */

static ns_finding make_finding(const char *rule, ns_severity sev, int64_t module_id,
                               const char *module, const char *param, int64_t first) {
    ns_finding f;
    memset(&f, 0, sizeof f);
    f.rule = rule;
    f.severity = sev;
    f.module_id = module_id;
    f.module = module ? strdup(module) : NULL;
    f.param = param ? strdup(param) : NULL;
    f.first_step = first;
    f.last_step = first + 10;
    f.message = strdup("message");
    f.evidence = strdup("evidence");
    return f;
}

static void findings_group_by_rule_worst_first(void **state) {
    (void)state;
    ns_tui_model m;
    small_tree(&m);
    ns_tui_model_add_param(&m, 1, 40, "blocks.0.weight", 0, "10x10", 100, 1, 1, 0.1);
    ns_tui_model_add_param(&m, 2, 40, "blocks.0.bias", 0, "10", 10, 1, 1, 0.1);
    ns_tui_model_link(&m);
    ns_finding *f = calloc(5, sizeof *f);
    f[0] = make_finding("update-ratio", NS_SEV_WARNING, 40, "blocks.0", NULL, 5);
    f[1] = make_finding("unregistered-module", NS_SEV_ERROR, 70, "blocks.(unregistered Linear #70)",
                        NULL, 0);
    f[2] = make_finding("frozen-parameter", NS_SEV_INFO, -1, "blocks.0", "blocks.0.bias", 3);
    f[3] = make_finding("update-ratio", NS_SEV_ERROR, 20, "head", NULL, 1);
    f[4] = make_finding("update-ratio", NS_SEV_WARNING, 40, "blocks.0", NULL, 2);
    ns_tui_model_set_findings(&m, f, 5);
    assert_int_equal(m.nfind, 5);
    assert_int_equal(m.ngroups, 3);
    /* Groups: worst severity first, then rule id. */
    assert_string_equal(m.groups[0].rule, "unregistered-module");
    assert_string_equal(m.groups[1].rule, "update-ratio");
    assert_int_equal(m.groups[1].sev, NS_SEV_ERROR);
    assert_int_equal(m.groups[1].count, 3);
    assert_string_equal(m.groups[2].rule, "frozen-parameter");
    /* Inside a group: severity desc, then first step; findings of a rule are contiguous. */
    const ns_finding *g1 = &m.find[m.groups[1].first];
    assert_int_equal(g1[0].severity, NS_SEV_ERROR);
    assert_int_equal(g1[1].first_step, 2);
    assert_int_equal(g1[2].first_step, 5);
    for (size_t i = 0; i < m.groups[1].count; i++) assert_string_equal(g1[i].rule, "update-ratio");
    /* Counts by severity. */
    assert_int_equal(m.sev_count[NS_SEV_ERROR], 2);
    assert_int_equal(m.sev_count[NS_SEV_WARNING], 2);
    assert_int_equal(m.sev_count[NS_SEV_INFO], 1);
    /* Module flags: by id, or by path when the finding has no id; each rule once. */
    const ns_tui_mod *b0 = &m.mods[ns_tui_model_find_module(&m, 40)];
    assert_string_equal(b0->flags, "frozen-parameter,update-ratio");
    assert_int_equal(b0->max_sev, NS_SEV_WARNING);
    assert_int_equal(b0->nfindings, 3);
    const ns_tui_mod *u = &m.mods[ns_tui_model_find_module(&m, 70)];
    assert_string_equal(u->flags, "unregistered-module");
    assert_int_equal(u->max_sev, NS_SEV_ERROR);
    assert_int_equal(m.mods[ns_tui_model_find_module(&m, 30)].max_sev, -1);
    /* Parameter flags. */
    assert_string_equal(m.params[ns_tui_model_find_param(&m, 2)].flags, "frozen-parameter");
    assert_string_equal(m.params[ns_tui_model_find_param(&m, 1)].flags, "");
    /* The findings list of the UI: a header per rule, then its findings; filter hides. */
    ns_tui_ui ui;
    ns_tui_ui_init(&ui);
    assert_int_equal(ns_tui_ui_finding_rows(&ui, &m), 8);
    assert_int_equal(ui.frows[0].finding, -1);
    assert_int_equal(ui.frows[1].finding, (int)m.groups[0].first);
    snprintf(ui.filter, sizeof ui.filter, "head");
    assert_int_equal(ns_tui_ui_finding_rows(&ui, &m), 2);
    ns_tui_ui_free(&ui);
    /* Replacing the findings clears the old flags. */
    ns_tui_model_set_findings(&m, NULL, 0);
    assert_string_equal(m.mods[ns_tui_model_find_module(&m, 40)].flags, "");
    assert_int_equal(m.sev_count[NS_SEV_ERROR], 0);
    ns_tui_model_free(&m);
}

/* ------------------------------------------------------------------ incremental refresh */

static char *tmp_db(const char *tag) {
    static char path[256];
    snprintf(path, sizeof path, "/tmp/nstui-%s-%d.db", tag, (int)getpid());
    return path;
}

static void remove_db(const char *path) {
    char side[300];
    unlink(path);
    snprintf(side, sizeof side, "%s-wal", path);
    unlink(side);
    snprintf(side, sizeof side, "%s-shm", path);
    unlink(side);
}

static void refresh_reads_only_new_rows(void **state) {
    (void)state;
    const char *path = tmp_db("incr");
    sqlite3 *w = tfx_create(path);
    assert_non_null(w);
    double t0 = tfx_now();
    tfx_run(w, 1, "running", "./train", t0);
    tfx_model(w, 1);
    tfx_steps(w, 1, 0, 9, t0);

    ns_tui_source *src = ns_tui_source_new(path);
    ns_tui_model m;
    ns_tui_model_init(&m);
    assert_int_equal(ns_tui_source_poll(src, &m, 0), 1);
    assert_int_equal(ns_tui_source_state(src), NS_SRC_READY);
    assert_int_equal(m.nruns, 1);
    assert_int_equal(m.nmods, 0); /* no run selected yet: runs only */
    ns_tui_source_select_run(src, &m, 1);
    assert_int_equal(ns_tui_source_poll(src, &m, 0), 1);
    assert_int_equal(m.nmods, 6);
    assert_int_equal(m.nparams, 10);
    assert_int_equal(m.n_train, 10);
    assert_int_equal(m.last_step, 9);
    int fc1 = ns_tui_model_find_module(&m, 2);
    assert_int_equal(ns_ring_len(&m.mods[fc1].grad), 10);
    assert_string_equal(m.mods[fc1].device, "cpu");
    assert_int_equal(m.mods[fc1].mode, 1);
    assert_int_equal(m.nevents, 1);
    assert_true(m.mods[ns_tui_model_find_module(&m, 5)].events & NS_EV_UNREG_CALL);

    /* Nothing committed since: the poll reads nothing and the model does not change. */
    uint64_t gen = m.generation;
    assert_int_equal(ns_tui_source_poll(src, &m, 0), 0);
    assert_int_equal(m.generation, gen);

    /* Five more steps: exactly five more points, nothing read twice. */
    tfx_steps(w, 1, 10, 14, t0);
    assert_int_equal(ns_tui_source_poll(src, &m, 0), 1);
    assert_int_equal(m.n_train, 15);
    assert_int_equal(ns_ring_len(&m.mods[fc1].grad), 15);
    assert_int_equal(ns_ring_len(&m.loss), 15);
    assert_int_equal(m.nevents, 1);

    /* A step whose steps row is not committed yet is not read (its rows may be partial). */
    tfx_exec(w, "INSERT INTO param_stats (run_id, step, param_id, grad_norm, update_norm, "
                "weight_norm, ratio, device) VALUES (1, 15, 1, 9.0, 0.1, 1.0, 0.1, 'cpu')");
    ns_tui_source_poll(src, &m, 0);
    assert_int_equal(m.last_step, 14);
    assert_float_equal(m.params[ns_tui_model_find_param(&m, 1)].last_grad,
                       0.5 * exp(-14 / 200.0) * 1.1, 1e-12);

    /* A module and a parameter that appear later are picked up and linked. */
    tfx_exec(w, "INSERT INTO modules (run_id, id, parent_id, path, type, registered, "
                "created_in_forward, creator_id, n_params, first_step) VALUES "
                "(1, 9, 1, '(unregistered Linear #9)', 'Linear', 0, 1, 1, 4, 15);"
                "INSERT INTO params (run_id, id, module_id, name, shape, numel, requires_grad, "
                "in_optimizer) VALUES (1, 20, 9, '(unregistered Linear #9).weight', '2x2', 4, 1,"
                " 0);"
                "DELETE FROM param_stats WHERE step = 15");
    tfx_steps(w, 1, 15, 15, t0);
    assert_int_equal(ns_tui_source_poll(src, &m, 0), 1);
    assert_int_equal(m.nmods, 7);
    int nm = ns_tui_model_find_module(&m, 9);
    assert_true(nm >= 0);
    assert_int_equal(m.mods[nm].parent, ns_tui_model_find_module(&m, 1));
    assert_int_equal(m.mods[nm].created_in_forward, 1);
    assert_int_equal(m.mods[nm].nparams, 1);
    assert_int_equal(m.last_step, 15);
    assert_int_equal(m.n_train, 16);

    /* Another run in the file: listed; selecting it resets the run data. */
    tfx_run(w, 2, "running", "./train --again", t0 + 100);
    assert_int_equal(ns_tui_source_poll(src, &m, 0), 1);
    assert_int_equal(m.nruns, 2);
    ns_tui_source_select_run(src, &m, 2);
    assert_int_equal(m.nmods, 0);
    assert_int_equal(ns_tui_source_poll(src, &m, 0), 1);
    assert_int_equal(m.nmods, 0);
    assert_int_equal(m.last_step, -1);

    ns_tui_model_free(&m);
    ns_tui_source_free(src);
    sqlite3_close(w);
    remove_db(path);
}

static void first_read_is_bounded_by_the_sparkline_window(void **state) {
    (void)state;
    const char *path = tmp_db("cold");
    sqlite3 *w = tfx_create(path);
    assert_non_null(w);
    double t0 = tfx_now() - 100;
    tfx_run(w, 1, "running", "./train", t0);
    tfx_model(w, 1);
    tfx_steps(w, 1, 0, 499, t0);
    /* An evaluation after training: 20 eval steps (no parameter rows). */
    for (int s = 500; s < 520; s++) {
        char sql[200];
        snprintf(sql, sizeof sql,
                 "INSERT INTO steps (run_id, step, phase, loss, wall_time) VALUES (1, %d, "
                 "'eval', 0.5, %.3f)",
                 s, t0 + 0.01 * s);
        tfx_exec(w, sql);
    }
    ns_tui_source *src = ns_tui_source_new(path);
    ns_tui_model m;
    ns_tui_model_init(&m);
    ns_tui_source_select_run(src, &m, 1);
    assert_int_equal(ns_tui_source_poll(src, &m, 0), 1);
    /* The loss curve covers the whole run, the sparklines only the last train steps. */
    assert_int_equal(m.n_train, 500);
    assert_int_equal(m.n_eval, 20);
    assert_int_equal(m.loss.total, 500);
    const ns_tui_param *p = &m.params[ns_tui_model_find_param(&m, 1)];
    assert_int_equal(p->grad.total, NS_TUI_SPARK_N);
    assert_int_equal(p->last_step, 499);
    /* The detail reads the whole history of its target, once, then only new steps. */
    ns_tui_model_detail_target(&m, NS_DETAIL_PARAM, 1);
    assert_int_equal(ns_tui_source_detail(src, &m), 1);
    assert_int_equal(m.det.grad.total, 500);
    assert_int_equal(m.det.zero.total, 500);
    assert_int_equal(ns_tui_source_detail(src, &m), 0);
    tfx_steps(w, 1, 520, 521, t0);
    ns_tui_source_poll(src, &m, 0);
    assert_int_equal(ns_tui_source_detail(src, &m), 1);
    assert_int_equal(m.det.grad.total, 502);
    /* Module detail: own parameters, root of summed squares per step. */
    ns_tui_model_detail_target(&m, NS_DETAIL_MODULE, 2);
    assert_int_equal(m.det.grad.total, 0);
    assert_int_equal(ns_tui_source_detail(src, &m), 1);
    assert_int_equal(m.det.nsources, 2);
    double g1 = 0.5 * exp(-521 / 200.0) * 1.1, g2 = 0.5 * exp(-521 / 200.0) * 1.2;
    assert_float_equal(ns_ring_last(&m.det.grad), sqrt(g1 * g1 + g2 * g2), 1e-9);
    /* The stale status: running, heartbeat long ago. */
    assert_string_equal(ns_tui_model_status(&m, tfx_now(), 10), "running");
    assert_string_equal(ns_tui_model_status(&m, tfx_now() + 60, 10), "stale");
    tfx_finish(w, 1, tfx_now());
    ns_tui_source_poll(src, &m, 0);
    assert_string_equal(ns_tui_model_status(&m, tfx_now() + 60, 10), "finished");
    assert_true(ns_tui_model_steps_per_sec(&m) > 99 && ns_tui_model_steps_per_sec(&m) < 101);
    ns_tui_model_free(&m);
    ns_tui_source_free(src);
    sqlite3_close(w);
    remove_db(path);
}

static void waits_for_a_file_that_does_not_exist_yet(void **state) {
    (void)state;
    const char *path = tmp_db("late");
    remove_db(path);
    ns_tui_source *src = ns_tui_source_new(path);
    ns_tui_model m;
    ns_tui_model_init(&m);
    assert_int_equal(ns_tui_source_poll(src, &m, 0), 0);
    assert_int_equal(ns_tui_source_state(src), NS_SRC_NO_FILE);
    /* An empty file (the writer just created it): not ready yet, no error. */
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fclose(f);
    assert_int_equal(ns_tui_source_poll(src, &m, 0), 0);
    assert_int_equal(ns_tui_source_state(src), NS_SRC_NOT_READY);
    ns_tui_source_free(src);
    /* The schema arrives: ready. */
    sqlite3 *w = tfx_create(path);
    tfx_run(w, 1, "running", "./train", tfx_now());
    src = ns_tui_source_new(path);
    assert_int_equal(ns_tui_source_poll(src, &m, 0), 1);
    assert_int_equal(ns_tui_source_state(src), NS_SRC_READY);
    assert_int_equal(m.nruns, 1);
    ns_tui_source_free(src);
    sqlite3_close(w);
    /* A database of something else: an error that names the file. */
    remove_db(path);
    sqlite3 *o;
    assert_int_equal(sqlite3_open(path, &o), SQLITE_OK);
    tfx_exec(o, "CREATE TABLE runs (x); CREATE TABLE other (y)");
    sqlite3_close(o);
    src = ns_tui_source_new(path);
    assert_int_equal(ns_tui_source_poll(src, &m, 0), -1);
    assert_int_equal(ns_tui_source_state(src), NS_SRC_ERROR);
    assert_non_null(strstr(ns_tui_source_error(src), path));
    assert_non_null(strstr(ns_tui_source_error(src), "not an nnscope recording"));
    ns_tui_source_free(src);
    ns_tui_model_free(&m);
    remove_db(path);
}

static void a_new_file_at_the_same_path_is_followed(void **state) {
    (void)state;
    const char *path = tmp_db("replace");
    sqlite3 *w = tfx_create(path);
    assert_non_null(w);
    double t0 = tfx_now();
    tfx_run(w, 1, "finished", "./first", t0);
    tfx_model(w, 1);
    tfx_steps(w, 1, 0, 99, t0);
    ns_tui_source *src = ns_tui_source_new(path);
    ns_tui_model m;
    ns_tui_model_init(&m);
    ns_tui_source_select_run(src, &m, 1);
    assert_int_equal(ns_tui_source_poll(src, &m, 0), 1);
    assert_int_equal(m.last_step, 99);
    sqlite3_close(w);
    /* A new training run recreates the file: the old connection would never see it. */
    w = tfx_create(path);
    tfx_run(w, 1, "running", "./second", t0 + 10);
    tfx_model(w, 1);
    tfx_steps(w, 1, 0, 4, t0 + 10);
    assert_int_equal(ns_tui_source_poll(src, &m, 0), 1);
    assert_int_equal(m.last_step, 4);
    assert_int_equal(m.n_train, 5);
    assert_string_equal(ns_tui_model_run(&m)->command, "./second");
    /* The file disappears: waiting again, nothing stale kept. */
    sqlite3_close(w);
    remove_db(path);
    assert_int_equal(ns_tui_source_poll(src, &m, 0), 0);
    assert_int_equal(ns_tui_source_state(src), NS_SRC_NO_FILE);
    assert_int_equal(m.nruns, 0);
    assert_int_equal(m.nmods, 0);
    ns_tui_model_free(&m);
    ns_tui_source_free(src);
}

static size_t heap_in_use(void) {
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks + mi.hblkhd;
}

static void memory_stays_bounded_while_following_a_growing_run(void **state) {
    (void)state;
    const char *path = tmp_db("mem");
    sqlite3 *w = tfx_create(path);
    assert_non_null(w);
    double t0 = tfx_now();
    tfx_run(w, 1, "running", "./train", t0);
    tfx_model(w, 1);
    ns_tui_source *src = ns_tui_source_new(path);
    ns_tui_model m;
    ns_tui_model_init(&m);
    ns_tui_ui ui;
    ns_tui_ui_init(&ui);
    ns_grid g;
    assert_int_equal(ns_grid_init(&g, 100, 30, 0), 0);
    ns_tui_source_select_run(src, &m, 1);
    /* Warm up past every ring's capacity (loss rings hold 4096 points), then follow 4000 more
     * steps, refreshing and drawing after every 20 like a live session. */
    tfx_steps(w, 1, 0, 4999, t0);
    ns_tui_source_poll(src, &m, 0);
    /* A sampled first read still fills the sparklines with the last steps. */
    assert_int_equal(m.params[ns_tui_model_find_param(&m, 1)].grad.total, NS_TUI_SPARK_N);
    assert_int_equal(m.params[ns_tui_model_find_param(&m, 1)].last_step, 4999);
    ns_tui_model_detail_target(&m, NS_DETAIL_MODULE, 2);
    ns_tui_source_detail(src, &m);
    ns_tui_frame f = {path, NS_SRC_READY, "", tfx_now(), 1, -1, 0, 10};
    ns_tui_draw(&g, &m, &ui, &f);
    size_t model_warm = ns_tui_model_mem(&m), heap_warm = heap_in_use();
    size_t model_max = model_warm;
    int64_t step = 5000;
    for (int i = 0; i < 200; i++) {
        tfx_steps(w, 1, step, step + 19, t0);
        step += 20;
        assert_int_equal(ns_tui_source_poll(src, &m, 0), 1);
        ns_tui_source_detail(src, &m);
        ns_tui_draw(&g, &m, &ui, &f);
        size_t now = ns_tui_model_mem(&m);
        if (now > model_max) model_max = now;
    }
    assert_int_equal(m.last_step, 8999);
    /* The first read sampled the 5000 steps (every 8th: at most NS_TUI_COLD_N reads), the
     * loss curve still spans the whole run and stands for every step. */
    assert_int_equal(m.n_train, 5000 / 8 + 4000);
    assert_int_equal(m.loss.total, 9000);
    int64_t x0;
    ns_ring_get(&m.loss, 0, &x0, NULL);
    assert_true(x0 < 64);
    /* The model holds exactly as much as after warm-up; the process heap (SQLite's page
     * cache included) moved by less than 1 MiB. */
    assert_int_equal(model_max, model_warm);
    size_t heap_end = heap_in_use();
    assert_true(heap_end < heap_warm + (1u << 20));
    assert_true(ns_ring_len(&m.loss) <= NS_TUI_HIST_N + 1);
    assert_int_equal(ns_ring_len(&m.mods[ns_tui_model_find_module(&m, 2)].grad), NS_TUI_SPARK_N);
    ns_grid_free(&g);
    ns_tui_ui_free(&ui);
    ns_tui_model_free(&m);
    ns_tui_source_free(src);
    sqlite3_close(w);
    remove_db(path);
}

static void module_cap_counts_rows_it_does_not_keep(void **state) {
    (void)state;
    ns_tui_model m;
    ns_tui_model_init(&m);
    for (int i = 0; i < NS_TUI_MAX_MODULES; i++)
        assert_true(ns_tui_model_add_module(&m, i, i ? 0 : -1, i ? "x" : "", "L", NULL, 1, 0, -1, 0,
                                            0) >= 0);
    assert_int_equal(
        ns_tui_model_add_module(&m, NS_TUI_MAX_MODULES, 0, "y", "L", NULL, 1, 0, -1, 0, 0), -2);
    assert_int_equal(m.mods_dropped, 1);
    assert_int_equal(m.nmods, NS_TUI_MAX_MODULES);
    ns_tui_model_free(&m);
}

/* ------------------------------------------------------------------ keys */

static void keys_move_focus_open_detail_and_quit(void **state) {
    (void)state;
    ns_tui_model m;
    small_tree(&m);
    ns_tui_model_add_param(&m, 1, 10, "w", 0, "1", 1, 1, 1, 0.1);
    ns_tui_model_add_param(&m, 2, 20, "head.weight", 0, "7", 7, 1, 1, 0.1);
    ns_tui_model_add_param(&m, 3, 20, "head.bias", 0, "1", 1, 1, 1, 0.1);
    ns_tui_model_link(&m);
    ns_tui_ui ui;
    ns_tui_ui_init(&ui);
    ns_tui_ui_key(&ui, &m, 'j'); /* row 1: head */
    assert_int_equal(ui.sel_mod, 20);
    ns_tui_ui_key(&ui, &m, NS_KEY_TAB);
    assert_int_equal(ui.focus, 1);
    ns_tui_ui_key(&ui, &m, NS_KEY_DOWN); /* head.bias */
    assert_int_equal(ui.param_sel, 1);
    ns_tui_ui_key(&ui, &m, NS_KEY_ENTER);
    assert_int_equal(ui.screen, NS_SCR_DETAIL);
    int64_t id;
    assert_int_equal(ns_tui_ui_detail_target(&ui, &m, &id), NS_DETAIL_PARAM);
    assert_int_equal(id, 3);
    ns_tui_ui_key(&ui, &m, NS_KEY_HOME); /* the module itself */
    assert_int_equal(ns_tui_ui_detail_target(&ui, &m, &id), NS_DETAIL_MODULE);
    assert_int_equal(id, 20);
    ns_tui_ui_key(&ui, &m, '1');
    assert_int_equal(ui.screen, NS_SCR_MODULES);
    /* Fold with Left, unfold with Right. */
    ns_tui_ui_key(&ui, &m, 'j'); /* blocks */
    assert_int_equal(ui.sel_mod, 30);
    ns_tui_ui_key(&ui, &m, NS_KEY_LEFT);
    assert_int_equal(m.nrows, 4);
    ns_tui_ui_key(&ui, &m, NS_KEY_RIGHT);
    assert_int_equal(m.nrows, 7);
    /* Sort cycles; filter edits live and Esc restores. */
    ns_tui_ui_key(&ui, &m, 's');
    assert_int_equal(ui.sort, NS_SORT_NAME);
    assert_non_null(strstr(ui.msg, "name"));
    ns_tui_ui_key(&ui, &m, '/');
    ns_tui_ui_key(&ui, &m, 'h');
    ns_tui_ui_key(&ui, &m, 'e');
    assert_string_equal(ui.filter, "he");
    assert_int_equal(m.nrows, 2);
    ns_tui_ui_key(&ui, &m, NS_KEY_ESC);
    assert_string_equal(ui.filter, "");
    assert_int_equal(ui.editing, 0);
    /* Pause, help, quit (q quits from the help too). */
    ns_tui_ui_key(&ui, &m, 'p');
    assert_int_equal(ui.paused, 1);
    ns_tui_ui_key(&ui, &m, '?');
    assert_int_equal(ui.help, 1);
    ns_tui_ui_key(&ui, &m, 'x');
    assert_int_equal(ui.help, 0);
    assert_int_equal(ui.quit, 0);
    ns_tui_ui_key(&ui, &m, 'q');
    assert_int_equal(ui.quit, 1);
    ns_tui_ui_free(&ui);
    ns_tui_model_free(&m);
}

static void runs_picker_keys_pick_a_run(void **state) {
    (void)state;
    ns_tui_model m;
    ns_tui_model_init(&m);
    ns_tui_run *runs = calloc(3, sizeof *runs);
    for (int i = 0; i < 3; i++) {
        runs[i].id = 10 + i;
        runs[i].status = strdup("finished");
        runs[i].started_at = runs[i].ended_at = runs[i].heartbeat_at = NAN;
    }
    ns_tui_model_set_runs(&m, runs, 3);
    ns_tui_ui ui;
    ns_tui_ui_init(&ui);
    ui.screen = NS_SCR_RUNS;
    /* No run chosen yet: screen keys stay on the picker. */
    ns_tui_ui_key(&ui, &m, '1');
    assert_int_equal(ui.screen, NS_SCR_RUNS);
    ns_tui_ui_key(&ui, &m, 'j');
    ns_tui_ui_key(&ui, &m, 'j');
    ns_tui_ui_key(&ui, &m, 'j'); /* clamps at the last run */
    assert_int_equal(ui.picked_run, -1);
    ns_tui_ui_key(&ui, &m, NS_KEY_ENTER);
    assert_int_equal(ui.picked_run, 12);
    /* 'r' reopens the picker once a run is shown. */
    m.run_id = 12;
    ui.screen = NS_SCR_MODULES;
    ns_tui_ui_key(&ui, &m, 'r');
    assert_int_equal(ui.screen, NS_SCR_RUNS);
    ns_tui_ui_free(&ui);
    ns_tui_model_free(&m);
}

static void mouse_click_selects_the_row_under_it(void **state) {
    (void)state;
    ns_tui_model m;
    small_tree(&m);
    ns_tui_ui ui;
    ns_tui_ui_init(&ui);
    ns_grid g;
    assert_int_equal(ns_grid_init(&g, 80, 24, 0), 0);
    ns_tui_run *runs = calloc(1, sizeof *runs);
    runs[0].id = 1;
    runs[0].status = strdup("running");
    runs[0].started_at = runs[0].ended_at = runs[0].heartbeat_at = NAN;
    ns_tui_model_set_runs(&m, runs, 1);
    m.run_id = 1;
    ns_tui_frame f = {"x.db", NS_SRC_READY, "", tfx_now(), 1, -1, 0, 10};
    ns_tui_draw(&g, &m, &ui, &f);
    /* The tree pane starts under the column titles; row 2 of it is "blocks". */
    ns_tui_ui_click(&ui, &m, ui.panes[0].y + 2, 10, 0);
    assert_int_equal(ui.sel_mod, 30);
    /* A click on the Findings tab switches screens. */
    ns_tui_ui_click(&ui, &m, ui.tabs_y, ui.tab_x[NS_SCR_FINDINGS] + 1, 0);
    assert_int_equal(ui.screen, NS_SCR_FINDINGS);
    ns_grid_free(&g);
    ns_tui_ui_free(&ui);
    ns_tui_model_free(&m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(ring_window_keeps_the_last_points),
        cmocka_unit_test(ring_downsample_covers_the_whole_run_in_bounded_space),
        cmocka_unit_test(spark_levels_scale_min_to_max),
        cmocka_unit_test(spark_draw_is_right_aligned_in_both_charsets),
        cmocka_unit_test(plot_draws_braille_or_ascii_lines),
        cmocka_unit_test(tree_rows_follow_parents_with_indentation),
        cmocka_unit_test(tree_continuation_lines_mark_open_ancestors),
        cmocka_unit_test(tree_sorting_orders_siblings_by_key),
        cmocka_unit_test(tree_filter_keeps_matches_and_their_ancestors),
        cmocka_unit_test(findings_group_by_rule_worst_first),
        cmocka_unit_test(refresh_reads_only_new_rows),
        cmocka_unit_test(first_read_is_bounded_by_the_sparkline_window),
        cmocka_unit_test(waits_for_a_file_that_does_not_exist_yet),
        cmocka_unit_test(a_new_file_at_the_same_path_is_followed),
        cmocka_unit_test(memory_stays_bounded_while_following_a_growing_run),
        cmocka_unit_test(module_cap_counts_rows_it_does_not_keep),
        cmocka_unit_test(keys_move_focus_open_detail_and_quit),
        cmocka_unit_test(runs_picker_keys_pick_a_run),
        cmocka_unit_test(mouse_click_selects_the_row_under_it),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
