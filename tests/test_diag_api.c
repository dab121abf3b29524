/* The diag API: the rule table and its SQL contract, options, errors, ordering, and the four
 * report formats. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "test_diag_fixture.h"

static void assert_contains(const char *hay, const char *needle) {
    if (!hay || !strstr(hay, needle))
        fail_msg("'%s' does not contain '%s'", hay ? hay : "(null)", needle);
}

static void assert_not_contains(const char *hay, const char *needle) {
    if (hay && strstr(hay, needle)) fail_msg("'%s' contains '%s'", hay, needle);
}

/* ------------------------------------------------------------------ rule table */

static void rule_table_lists_the_issue_rules(void **state) {
    (void)state;
    static const char *const ids[] = {
        "unregistered-module",
        "module-created-in-forward",
        "uninitialised-module",
        "frozen-parameter",
        "zero-trainable-parameters",
        "missing-eval-mode",
        "train-mode-not-restored",
        "device-mixing",
        "vanishing-gradient",
        "exploding-gradient",
        "non-finite",
        "dead-relu",
        "update-ratio",
        "loss-not-decreasing",
        "state-dict-mismatch",
    };
    size_t n;
    const ns_rule *r = ns_rules(&n);
    assert_int_equal(n, sizeof ids / sizeof ids[0]);
    for (size_t i = 0; i < n; i++) {
        assert_string_equal(r[i].id, ids[i]);
        assert_ptr_equal(ns_rule_find(ids[i]), &r[i]);
        assert_true(strlen(r[i].title) > 10 && !strchr(r[i].title, '\n'));
        assert_true(strlen(r[i].explain) > 100);
        assert_true(strlen(r[i].fix) > 20);
        assert_non_null(strstr(r[i].sql, "SELECT"));
    }
    assert_null(ns_rule_find("no-such-rule"));
    assert_null(ns_rule_find("dead"));
}

/* Every rule's SQL prepares against hooks/schema.sql, returns the finding columns, and takes
 * only :run and option names; every option is used by some rule. */
static void rule_sql_follows_the_contract(void **state) {
    (void)state;
    static const char *const cols[] = {"severity",  "module_id", "module",   "param", "first_step",
                                       "last_step", "message",   "evidence", "fix"};
    sqlite3 *db = fx_open();
    size_t n, no;
    const ns_rule *r = ns_rules(&n);
    const ns_diag_option *opt = ns_diag_options(&no);
    ns_diag_opts o;
    ns_diag_opts_default(&o);
    for (size_t i = 0; i < n; i++) {
        sqlite3_stmt *st = NULL;
        if (sqlite3_prepare_v2(db, r[i].sql, -1, &st, NULL) != SQLITE_OK)
            fail_msg("rule %s: %s", r[i].id, sqlite3_errmsg(db));
        assert_int_equal(sqlite3_column_count(st), 9);
        for (int c = 0; c < 9; c++) assert_string_equal(sqlite3_column_name(st, c), cols[c]);
        assert_true(sqlite3_stmt_readonly(st));
        for (int k = 1; k <= sqlite3_bind_parameter_count(st); k++) {
            const char *name = sqlite3_bind_parameter_name(st, k);
            double v;
            assert_non_null(name);
            assert_int_equal(name[0], ':');
            if (strcmp(name, ":run") != 0 && ns_diag_opts_get(&o, name + 1, &v) != 0)
                fail_msg("rule %s: unknown parameter %s", r[i].id, name);
            assert_true(ns_rule_uses_option(&r[i], name + 1));
        }
        sqlite3_finalize(st);
        assert_true(ns_rule_uses_option(&r[i], "run"));
    }
    for (size_t k = 0; k < no; k++) {
        int used = 0;
        for (size_t i = 0; i < n; i++) used |= ns_rule_uses_option(&r[i], opt[k].name);
        if (!used) fail_msg("option %s is used by no rule", opt[k].name);
    }
    sqlite3_close(db);
}

static void rule_uses_option_skips_comments_and_strings(void **state) {
    (void)state;
    ns_rule r = {"x",
                 NS_SEV_INFO,
                 "t",
                 "e",
                 "f",
                 "-- :min_steps here\nSELECT ':grad_window', 'it''s :ratio_min', :loss_window, "
                 ":loss_window_x, :run"};
    assert_false(ns_rule_uses_option(&r, "min_steps"));
    assert_false(ns_rule_uses_option(&r, "grad_window"));
    assert_false(ns_rule_uses_option(&r, "ratio_min"));
    assert_true(ns_rule_uses_option(&r, "loss_window"));
    assert_true(ns_rule_uses_option(&r, "run"));
    assert_false(ns_rule_uses_option(&r, "loss"));
}

/* ------------------------------------------------------------------ options */

static void options_have_documented_defaults(void **state) {
    (void)state;
    size_t n;
    const ns_diag_option *opt = ns_diag_options(&n);
    ns_diag_opts o;
    ns_diag_opts_default(&o);
    assert_int_equal(n, sizeof(ns_diag_opts) / sizeof(double));
    for (size_t i = 0; i < n; i++) {
        double v = -1;
        assert_int_equal(ns_diag_opts_get(&o, opt[i].name, &v), 0);
        assert_true(v == opt[i].def);
        assert_true(strlen(opt[i].doc) > 20);
    }
    assert_true(o.grad_rms_min == 1e-7);
    assert_true(o.ratio_min == 1e-8 && o.ratio_max == 10);
    assert_true(o.dead_relu_frac == 0.5 && o.grad_growth == 10);
    double v;
    assert_int_equal(ns_diag_opts_get(&o, "nope", &v), -1);
}

static void options_set_parses_and_rejects(void **state) {
    (void)state;
    ns_diag_opts o;
    ns_diag_opts_default(&o);
    char err[256];
    assert_int_equal(ns_diag_opts_set(&o, "grad_window=25", err, sizeof err), 0);
    assert_true(o.grad_window == 25);
    assert_int_equal(ns_diag_opts_set(&o, "ratio_min=1e-9", err, sizeof err), 0);
    assert_true(o.ratio_min == 1e-9);
    assert_int_equal(ns_diag_opts_set(&o, "nope=1", err, sizeof err), -1);
    assert_contains(err, "unknown option 'nope'");
    assert_int_equal(ns_diag_opts_set(&o, "grad_window=abc", err, sizeof err), -1);
    assert_contains(err, "'abc' is not a number");
    assert_int_equal(ns_diag_opts_set(&o, "grad_window=", err, sizeof err), -1);
    assert_int_equal(ns_diag_opts_set(&o, "ratio_max=-1", err, sizeof err), -1);
    assert_contains(err, "negative");
    assert_int_equal(ns_diag_opts_set(&o, "min_steps=2.5", err, sizeof err), -1);
    assert_contains(err, "whole number");
    assert_int_equal(ns_diag_opts_set(&o, "loss_window=0", err, sizeof err), -1);
    assert_contains(err, "at least 1 step");
    assert_int_equal(ns_diag_opts_set(&o, "grad_window", err, sizeof err), -1);
    assert_contains(err, "name=value");
    assert_int_equal(ns_diag_opts_set(&o, "=3", err, sizeof err), -1);
    assert_int_equal(ns_diag_opts_set(&o, "ratio_max=inf", err, sizeof err), -1);
    assert_true(o.grad_window == 25); /* failed sets leave values alone */
}

/* ------------------------------------------------------------------ check */

static void check_reports_user_errors(void **state) {
    (void)state;
    ns_finding *f = (ns_finding *)1;
    size_t n = 99;
    char err[256];
    sqlite3 *plain = NULL;
    assert_int_equal(sqlite3_open(":memory:", &plain), SQLITE_OK);
    assert_int_equal(ns_diag_check(plain, 1, NULL, NULL, &f, &n, err, sizeof err), -1);
    assert_contains(err, "not an nnscope recording");
    assert_null(f);
    assert_int_equal(n, 0);
    assert_int_equal(ns_diag_latest_run(plain), -1);
    assert_false(ns_diag_is_recording(plain));
    sqlite3_close(plain);

    sqlite3 *db = fx_open();
    assert_true(ns_diag_is_recording(db));
    assert_int_equal(ns_diag_latest_run(db), -1);
    assert_int_equal(ns_diag_check(db, 7, NULL, NULL, &f, &n, err, sizeof err), -1);
    assert_contains(err, "no run 7");
    fx_healthy_small(db, 3);
    fx_healthy_small(db, 5);
    assert_int_equal(ns_diag_latest_run(db), 5);
    assert_int_equal(ns_diag_check(db, 3, NULL, "dead-relu,bogus", &f, &n, err, sizeof err), -1);
    assert_contains(err, "unknown rule 'bogus'");
    assert_int_equal(ns_diag_check(db, 3, NULL, " , ", &f, &n, err, sizeof err), -1);
    assert_contains(err, "no rule named");
    sqlite3_close(db);
}

/* A run with findings of every severity, for ordering and reports. */
static sqlite3 *mixed_run(void) {
    sqlite3 *db = fx_open();
    fx_healthy_small(db, 1);
    /* error at step 100: non-finite output of fc2 */
    fx_exec(db, "UPDATE module_calls SET out_nonfinite = 3 WHERE run_id = 1 AND step = 100 AND "
                "module_id = 6");
    /* error at step 0: fc1 never receives a gradient */
    fx_exec(db, "UPDATE param_stats SET grad_norm = NULL, update_norm = 0, ratio = 0 "
                "WHERE run_id = 1 AND param_id IN (100, 101)");
    /* warning: relu2 dead */
    fx_exec(db, "UPDATE module_calls SET dead_frac = 0.9 WHERE run_id = 1 AND module_id = 8");
    /* info: bn2 frozen in eval mode for the whole run */
    fx_exec(db, "UPDATE module_calls SET training = 0 WHERE run_id = 1 AND module_id = 7");
    return db;
}

static void check_sorts_by_severity_then_step(void **state) {
    (void)state;
    sqlite3 *db = mixed_run();
    size_t n;
    ns_finding *f = fx_check(db, 1, NULL, NULL, &n);
    assert_true(n >= 4);
    for (size_t i = 1; i < n; i++) {
        assert_true(f[i - 1].severity >= f[i].severity);
        if (f[i - 1].severity == f[i].severity)
            assert_true((uint64_t)f[i - 1].first_step <= (uint64_t)f[i].first_step);
    }
    assert_string_equal(f[0].rule, "frozen-parameter");
    assert_string_equal(f[1].rule, "non-finite");
    assert_int_equal(f[1].first_step, 100);
    assert_int_equal(f[n - 1].severity, NS_SEV_INFO);
    assert_int_equal(ns_findings_count(f, n, NS_SEV_ERROR), 2);
    assert_int_equal(ns_findings_count(f, n, NS_SEV_INFO), n);
    ns_findings_free(f, n);

    f = fx_check(db, 1, NULL, "dead-relu, train-mode-not-restored", &n);
    assert_int_equal(n, 2);
    assert_string_equal(f[0].rule, "dead-relu");
    assert_string_equal(f[0].module, "relu2");
    assert_string_equal(f[1].rule, "train-mode-not-restored");
    ns_findings_free(f, n);
    ns_findings_free(NULL, 0);
    sqlite3_close(db);
}

/* A caller's open transaction is left open (the TUI reads inside its own). */
static void check_inside_callers_transaction(void **state) {
    (void)state;
    sqlite3 *db = mixed_run();
    fx_exec(db, "BEGIN");
    size_t n;
    ns_finding *f = fx_check(db, 1, NULL, "dead-relu", &n);
    assert_int_equal(n, 1);
    assert_int_equal(sqlite3_get_autocommit(db), 0);
    fx_exec(db, "COMMIT");
    ns_findings_free(f, n);
    sqlite3_close(db);
}

static void severity_and_format_names(void **state) {
    (void)state;
    ns_severity s;
    assert_int_equal(ns_severity_parse("warning", &s), 0);
    assert_int_equal(s, NS_SEV_WARNING);
    assert_int_equal(ns_severity_parse("fatal", &s), -1);
    assert_string_equal(ns_severity_name(NS_SEV_ERROR), "error");
    assert_string_equal(ns_severity_name(NS_SEV_INFO), "info");
    ns_report_format fmt;
    assert_int_equal(ns_report_format_parse("junit", &fmt), 0);
    assert_int_equal(fmt, NS_FORMAT_JUNIT);
    assert_int_equal(ns_report_format_parse("xml", &fmt), -1);
}

/* ------------------------------------------------------------------ reports */

static char *render(ns_report_format fmt, const ns_report_info *in, const ns_finding *f, size_t n) {
    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    assert_non_null(out);
    assert_int_equal(ns_report_write(out, fmt, in, f, n), 0);
    fclose(out);
    return buf;
}

/* Two hand-made findings with characters every format must escape. */
static void sample_findings(ns_finding f[2]) {
    memset(f, 0, 2 * sizeof *f);
    f[0] = (ns_finding){"unregistered-module",
                        NS_SEV_ERROR,
                        "net.<x>",
                        3,
                        NULL,
                        0,
                        9,
                        "a \"quoted\" & <tagged>\nline, 100%: done\x01",
                        "steps 0..9",
                        "fix it"};
    f[1] = (ns_finding){"dead-relu", NS_SEV_INFO, "",          1,  "fc1.weight",
                        -1,          -1,          "info here", "", "nothing"};
}

static ns_report_info sample_info(void) {
    ns_report_info in = {0};
    in.db_path = "run.db";
    in.run_id = 4;
    in.run_status = "finished";
    in.command = "./train --lr 1e-3";
    in.train_steps = 10;
    in.eval_steps = 2;
    in.has_fail_on = 1;
    in.fail_on = NS_SEV_ERROR;
    return in;
}

static void report_text_groups_by_severity(void **state) {
    (void)state;
    ns_finding f[2];
    sample_findings(f);
    ns_report_info in = sample_info();
    char *s = render(NS_FORMAT_TEXT, &in, f, 2);
    assert_contains(s, "run.db, run 4 (finished), 10 train + 2 eval steps");
    assert_contains(s, "command: ./train --lr 1e-3");
    assert_contains(s, "1 error\n");
    assert_contains(s, "error [unregistered-module] a \"quoted\"");
    assert_contains(s, "    module:   net.<x>\n    steps:    steps 0..9\n");
    assert_contains(s, "    module:   (model)  param: fc1.weight\n    steps:    -\n");
    assert_contains(s, "    fix:      fix it\n");
    assert_true(strstr(s, "1 error\n") < strstr(s, "1 info\n"));
    assert_contains(s, "1 error, 0 warnings, 1 info from 15 rules: FAILED (1 at or above error)");
    assert_not_contains(s, "\033[");
    free(s);
    in.color = 1;
    in.fail_on = NS_SEV_WARNING;
    s = render(NS_FORMAT_TEXT, &in, f, 2);
    assert_contains(s, "\033[1;31merror\033[0m [unregistered-module]");
    free(s);
    in.color = 0;
    in.has_fail_on = 0;
    s = render(NS_FORMAT_TEXT, &in, NULL, 0);
    assert_contains(s, "no findings: 0 errors, 0 warnings, 0 info from 15 rules (--fail-on never)");
    free(s);
}

static void report_json_escapes(void **state) {
    (void)state;
    ns_finding f[2];
    sample_findings(f);
    ns_report_info in = sample_info();
    in.rules_run = "unregistered-module,dead-relu";
    char *s = render(NS_FORMAT_JSON, &in, f, 2);
    assert_contains(s, "\"message\": \"a \\\"quoted\\\" & <tagged>\\nline, 100%: done\\u0001\"");
    assert_contains(s, "\"rules\": [\"unregistered-module\", \"dead-relu\"]");
    assert_contains(s, "\"failed\": true");
    assert_contains(s, "\"counts\": {\"error\": 1, \"warning\": 0, \"info\": 1}");
    assert_contains(s, "\"first_step\": null, \"last_step\": null");
    assert_contains(s, "\"module\": \"\", \"module_id\": 1, \"param\": \"fc1.weight\"");
    free(s);
}

static void report_junit_one_case_per_rule(void **state) {
    (void)state;
    ns_finding f[2];
    sample_findings(f);
    ns_report_info in = sample_info();
    char *s = render(NS_FORMAT_JUNIT, &in, f, 2);
    assert_contains(s, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>");
    assert_contains(s, "tests=\"15\" failures=\"1\"");
    assert_contains(s, "<testcase classname=\"nnscope.check\" name=\"device-mixing\"/>");
    assert_contains(s, "<failure type=\"error\" message=\"a &quot;quoted&quot; &amp; "
                       "&lt;tagged&gt;&#10;line, 100%: done\">");
    assert_contains(s, "module: net.&lt;x&gt;");
    assert_not_contains(s, "\x01");
    /* The info finding is below --fail-on: listed, not a failure. */
    assert_contains(s, "<system-out>[info] info here");
    size_t cases = 0;
    for (const char *p = s; (p = strstr(p, "<testcase ")) != NULL; p++) cases++;
    assert_int_equal(cases, 15);
    free(s);
}

static void report_github_workflow_commands(void **state) {
    (void)state;
    ns_finding f[2];
    sample_findings(f);
    ns_report_info in = sample_info();
    char *s = render(NS_FORMAT_GITHUB, &in, f, 2);
    assert_contains(s, "::error title=nnscope unregistered-module%3A net.<x>::a \"quoted\" & "
                       "<tagged>%0Aline, 100%25: done");
    assert_contains(s, "%0Afix: fix it\n");
    assert_contains(s,
                    "::notice title=nnscope dead-relu%3A (model)::info here%0A-%0Afix: nothing\n");
    assert_contains(s, "1 errors, 0 warnings, 1 info: FAILED");
    free(s);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(rule_table_lists_the_issue_rules),
        cmocka_unit_test(rule_sql_follows_the_contract),
        cmocka_unit_test(rule_uses_option_skips_comments_and_strings),
        cmocka_unit_test(options_have_documented_defaults),
        cmocka_unit_test(options_set_parses_and_rejects),
        cmocka_unit_test(check_reports_user_errors),
        cmocka_unit_test(check_sorts_by_severity_then_step),
        cmocka_unit_test(check_inside_callers_transaction),
        cmocka_unit_test(severity_and_format_names),
        cmocka_unit_test(report_text_groups_by_severity),
        cmocka_unit_test(report_json_escapes),
        cmocka_unit_test(report_junit_one_case_per_rule),
        cmocka_unit_test(report_github_workflow_commands),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
