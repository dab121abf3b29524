/* nnscope diagnostics: rules that read a recording (SQLite) and report silent training
 * failures as findings. Every rule is one SQL statement over the tables of hooks/schema.sql, so
 * users can read it (`nnscope rules --sql ID`) and run it themselves with the same parameters.
 *
 * Contract of a rule's SQL: named parameters are :run (the run id) and option names from
 * ns_diag_options() (":frozen_min_steps", ...). Each result row is one finding with the columns
 *   severity   'error' | 'warning' | 'info'
 *   module_id  INTEGER or NULL
 *   module     module path or NULL ('' is the root model, shown as '(model)')
 *   param      parameter name(s) or NULL
 *   first_step, last_step  INTEGER or NULL
 *   message    one line naming the module
 *   evidence   steps and values
 *   fix        NULL (the rule's fix hint) or a hint specific to this finding
 * Nothing here links the engine: only SQLite. */
#ifndef NNSCOPE_DIAG_H
#define NNSCOPE_DIAG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <sqlite3.h>

typedef enum { NS_SEV_INFO = 0, NS_SEV_WARNING = 1, NS_SEV_ERROR = 2 } ns_severity;

typedef struct {
    const char *id;       /* 'unregistered-module' */
    ns_severity severity; /* default severity (a rule may emit lower/higher per finding) */
    const char *title;    /* one line */
    const char *explain;  /* one paragraph */
    const char *fix;      /* fix hint */
    const char *sql;      /* the SQL users can read/run (with :run and threshold params) */
} ns_rule;

typedef struct {
    const char *rule; /* rule id (static) */
    ns_severity severity;
    char *module;                  /* module path or NULL ('' is the root model) */
    int64_t module_id;             /* -1 if none */
    char *param;                   /* parameter name(s) or NULL */
    int64_t first_step, last_step; /* -1 if n/a */
    char *message;                 /* one line: what is wrong, naming the module */
    char *evidence;                /* steps and values ('' when none) */
    const char *fix;               /* fix hint; owned by the finding array (freed with it) */
} ns_finding;

/* Every threshold the rules use. Names, defaults and meanings: ns_diag_options(), and
 * docs/rules.md. Counts are whole numbers stored as double. */
typedef struct {
    double min_steps;         /* train steps a run needs before trend rules judge it */
    double frozen_min_steps;  /* train steps without any change before a parameter is frozen */
    double transfer_min_frac; /* device-mixing: fraction of steps with moves inside a forward */
    double grad_window;       /* train steps per window (vanishing/exploding gradients) */
    double grad_rms_min;      /* vanishing: gradient RMS below this over the last window */
    double grad_growth;       /* exploding: window mean / mean of the earlier windows */
    double grad_norm_max;     /* exploding: any gradient L2 norm above this */
    double dead_relu_frac;    /* dead-relu: fraction of dead units */
    double dead_relu_window;  /* dead-relu: sampled train calls considered (the last ones) */
    double ratio_min;         /* update-ratio: hard lower bound */
    double ratio_max;         /* update-ratio: hard upper bound */
    double ratio_hard_steps;  /* update-ratio: steps outside the hard bounds before reporting */
    double ratio_low;         /* update-ratio: soft band around 1e-3, lower edge */
    double ratio_high;        /* update-ratio: soft band upper edge */
    double ratio_soft_frac;   /* update-ratio: fraction of steps outside the soft band */
    double loss_window;       /* loss-not-decreasing: train steps averaged at each end */
    double loss_min_drop;     /* loss-not-decreasing: relative drop expected */
} ns_diag_opts;

/* Describes one option: its name (also the SQL parameter name without ':'), default and
 * meaning. */
typedef struct {
    const char *name;
    double def;
    int integer; /* 1: a count (whole number) */
    const char *doc;
    size_t offset; /* of the double in ns_diag_opts */
} ns_diag_option;

/* Fills o with the documented defaults. */
void ns_diag_opts_default(ns_diag_opts *o);

/* The option table (static), n set to its length. */
const ns_diag_option *ns_diag_options(size_t *n);

/* Sets one option from "name=value" text. Returns 0, or -1 with err filled (unknown name,
 * not a number, negative value, or a count that is not a whole number). */
int ns_diag_opts_set(ns_diag_opts *o, const char *assignment, char *err, size_t errlen);

/* Value of option `name` in o; returns 0, or -1 when no such option. */
int ns_diag_opts_get(const ns_diag_opts *o, const char *name, double *value);

/* The rule table (static, in report order), n set to its length. */
const ns_rule *ns_rules(size_t *n);

/* The rule with this id, or NULL. */
const ns_rule *ns_rule_find(const char *id);

/* 1 when rule r's SQL names the parameter :name (an option name or "run"), else 0. Comments
 * and string literals in the SQL are skipped. */
int ns_rule_uses_option(const ns_rule *r, const char *name);

/* Runs the rules (all, or the comma-separated ids in only) for run_id over an open db, in one
 * read transaction when the connection is in autocommit mode. Findings are sorted by severity
 * desc, then first_step, then rule id; *out is malloc'd and owned by the caller
 * (ns_findings_free), NULL with *n = 0 when nothing was found. o NULL means defaults.
 * Returns 0, or -1 with err filled: unknown rule id, no such run, a database that is not an
 * nnscope recording, or the SQLite error of the rule that failed. */
int ns_diag_check(sqlite3 *db, int64_t run_id, const ns_diag_opts *o, const char *only,
                  ns_finding **out, size_t *n, char *err, size_t errlen);

/* Frees n findings and their strings, and the array. f may be NULL. */
void ns_findings_free(ns_finding *f, size_t n);

/* Id of the latest run (highest id) in db; -1 when none or when db has no runs table. */
int64_t ns_diag_latest_run(sqlite3 *db);

/* 1 when db holds the nnscope tables (runs, modules, params, steps ...), else 0. */
int ns_diag_is_recording(sqlite3 *db);

/* "error" / "warning" / "info". */
const char *ns_severity_name(ns_severity s);

/* Parses "error"/"warning"/"info" into *s; returns 0, or -1 for anything else. */
int ns_severity_parse(const char *text, ns_severity *s);

/* Count findings at or above severity min. */
size_t ns_findings_count(const ns_finding *f, size_t n, ns_severity min);

/* ------------------------------------------------------------------ report formats */

typedef enum {
    NS_FORMAT_TEXT = 0,
    NS_FORMAT_JSON = 1,
    NS_FORMAT_JUNIT = 2,
    NS_FORMAT_GITHUB = 3
} ns_report_format;

/* What a report says about the run besides its findings. */
typedef struct {
    const char *db_path;      /* file name shown in reports */
    int64_t run_id;           /* the run checked */
    const char *run_status;   /* runs.status or NULL */
    const char *run_detail;   /* runs.status_detail or NULL */
    const char *command;      /* runs.command or NULL */
    const char *record_error; /* runs.record_error (recording stopped early) or NULL */
    int64_t train_steps;      /* -1 when unknown */
    int64_t eval_steps;       /* -1 when unknown */
    const char *rules_run;    /* comma-separated ids of the rules that ran (NULL: all) */
    int has_fail_on;          /* 0: --fail-on never */
    ns_severity fail_on;      /* findings at/above this fail the check */
    int color;                /* text format: ANSI severity colours */
} ns_report_info;

/* Parses "text"/"json"/"junit"/"github"; returns 0, or -1. */
int ns_report_format_parse(const char *text, ns_report_format *fmt);

/* Writes the findings in the given format to out. JSON is one object; JUnit is one
 * <testsuite> with one <testcase> per rule that ran and a <failure> per finding at/above
 * fail_on (findings below it are listed in <system-out>); github prints one workflow command
 * per finding (::error / ::warning / ::notice). Returns 0, or -1 on a write error. */
int ns_report_write(FILE *out, ns_report_format fmt, const ns_report_info *info,
                    const ns_finding *f, size_t n);

#endif
