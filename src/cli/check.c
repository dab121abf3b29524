/* nnscope check: run the rules over one run of a recording; the CI gate. */
#include "cli/cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char check_usage[] =
    "usage: nnscope check RUN.db [--run ID] [--fail-on error|warning|info|never]\n"
    "                     [--rules ID,ID...] [--format text|json|junit|github]\n"
    "                     [--set NAME=VALUE]...\n"
    "\n"
    "Runs the diagnostic rules over one run (default: the latest) and prints the findings\n"
    "grouped by severity, each with its module, steps, evidence and fix.\n"
    "\n"
    "  --run ID        the run to check (`nnscope runs RUN.db` lists them)\n"
    "  --fail-on SEV   exit 1 when a finding is at or above SEV (default: error);\n"
    "                  'never' always exits 0 when the check ran\n"
    "  --rules IDS     only these rules, comma-separated (`nnscope rules` lists them)\n"
    "  --format FMT    text (default), json, junit (XML for CI test reports) or github\n"
    "                  (::error / ::warning / ::notice workflow commands)\n"
    "  --set N=V       change a rule threshold (`nnscope rules --options` lists them)\n"
    "\n"
    "Exit codes: 0 nothing at or above --fail-on, 1 something is, 2 usage or file errors\n"
    "(missing file, not a SQLite database, not a recording, no such run, no runs).\n"
    "Text output is coloured when stdout is a terminal and NO_COLOR is not set.\n";

typedef struct {
    char *status, *detail, *command, *record_error;
    int64_t train, eval;
} run_meta;

static char *col_dup(sqlite3_stmt *st, int c) {
    const unsigned char *s = sqlite3_column_text(st, c);
    return s ? strdup((const char *)s) : NULL;
}

static void load_meta(sqlite3 *db, int64_t run, run_meta *m) {
    memset(m, 0, sizeof *m);
    m->train = m->eval = -1;
    sqlite3_stmt *st = NULL;
    const char *sql = "SELECT status, status_detail, command,"
                      " (SELECT COUNT(*) FROM steps WHERE run_id = r.id AND phase = 'train'),"
                      " (SELECT COUNT(*) FROM steps WHERE run_id = r.id AND phase = 'eval')"
                      " FROM runs r WHERE id = ?1";
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) return;
    sqlite3_bind_int64(st, 1, run);
    if (sqlite3_step(st) == SQLITE_ROW) {
        m->status = col_dup(st, 0);
        m->detail = col_dup(st, 1);
        m->command = col_dup(st, 2);
        m->train = sqlite3_column_int64(st, 3);
        m->eval = sqlite3_column_int64(st, 4);
    }
    sqlite3_finalize(st);
    /* runs.record_error came with a later schema: older files simply lack it. */
    if (sqlite3_prepare_v2(db, "SELECT record_error FROM runs WHERE id = ?1", -1, &st, NULL) ==
        SQLITE_OK) {
        sqlite3_bind_int64(st, 1, run);
        if (sqlite3_step(st) == SQLITE_ROW) m->record_error = col_dup(st, 0);
    }
    sqlite3_finalize(st);
}

static void free_meta(run_meta *m) {
    free(m->record_error);
    free(m->status);
    free(m->detail);
    free(m->command);
}

/* Comma-separated ids of the rules a --rules list selects, in table order (for reports). */
static char *selected_ids(const char *only) {
    if (!only) return NULL;
    size_t n, cap = 1;
    const ns_rule *r = ns_rules(&n);
    for (size_t i = 0; i < n; i++) cap += strlen(r[i].id) + 1;
    char *out = calloc(1, cap);
    if (!out) return NULL;
    for (size_t i = 0; i < n; i++) {
        const char *one = r[i].id;
        /* Selected when it appears in only as a whole comma/space-separated item. */
        size_t len = strlen(one);
        for (const char *p = only; (p = strstr(p, one)) != NULL; p += len) {
            int starts = p == only || p[-1] == ',' || p[-1] == ' ';
            int ends = p[len] == '\0' || p[len] == ',' || p[len] == ' ';
            if (starts && ends) {
                if (out[0]) strcat(out, ",");
                strcat(out, one);
                break;
            }
        }
    }
    return out;
}

int cli_check(int argc, char **argv) {
    const char *cmd = "check", *path = NULL, *run_text = NULL, *fail_text = "error";
    const char *only = NULL, *fmt_text = "text", *v = NULL;
    ns_diag_opts opts;
    ns_diag_opts_default(&opts);
    char err[512];
    for (int i = 1; i < argc; i++) {
        int m;
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fputs(check_usage, stdout);
            return CLI_OK;
        }
        if ((m = cli_opt(cmd, argc, argv, &i, "--run", &run_text)) != 0) {
            if (m < 0) return CLI_USAGE;
        } else if ((m = cli_opt(cmd, argc, argv, &i, "--fail-on", &fail_text)) != 0) {
            if (m < 0) return CLI_USAGE;
        } else if ((m = cli_opt(cmd, argc, argv, &i, "--rules", &only)) != 0) {
            if (m < 0) return CLI_USAGE;
        } else if ((m = cli_opt(cmd, argc, argv, &i, "--format", &fmt_text)) != 0) {
            if (m < 0) return CLI_USAGE;
        } else if ((m = cli_opt(cmd, argc, argv, &i, "--set", &v)) != 0) {
            if (m < 0) return CLI_USAGE;
            if (ns_diag_opts_set(&opts, v, err, sizeof err) != 0) {
                cli_error(cmd, "%s", err);
                return CLI_USAGE;
            }
        } else if (argv[i][0] == '-' && argv[i][1] != '\0') {
            cli_error(cmd, "unknown option '%s' (see nnscope check --help)", argv[i]);
            return CLI_USAGE;
        } else if (!path) {
            path = argv[i];
        } else {
            cli_error(cmd, "unexpected argument '%s' (one RUN.db at a time)", argv[i]);
            return CLI_USAGE;
        }
    }
    if (!path) {
        cli_error(cmd, "missing RUN.db (see nnscope check --help)");
        return CLI_USAGE;
    }
    ns_report_info info = {0};
    if (strcmp(fail_text, "never") == 0) {
        info.has_fail_on = 0;
    } else if (ns_severity_parse(fail_text, &info.fail_on) == 0) {
        info.has_fail_on = 1;
    } else {
        cli_error(cmd, "--fail-on must be error, warning, info or never, not '%s'", fail_text);
        return CLI_USAGE;
    }
    ns_report_format fmt;
    if (ns_report_format_parse(fmt_text, &fmt) != 0) {
        cli_error(cmd, "--format must be text, json, junit or github, not '%s'", fmt_text);
        return CLI_USAGE;
    }
    int64_t run = -1;
    if (run_text && (cli_parse_int(run_text, &run) != 0 || run < 0)) {
        cli_error(cmd, "--run needs a run id (a whole number), not '%s'", run_text);
        return CLI_USAGE;
    }
    /* Rule ids are checked before the file so a typo is reported as such. */
    if (only) {
        char *ids = selected_ids(only);
        for (const char *p = only; *p;) {
            while (*p == ',' || *p == ' ') p++;
            const char *e = p;
            while (*e && *e != ',' && *e != ' ') e++;
            if (e > p) {
                char id[128];
                snprintf(id, sizeof id, "%.*s", (int)(e - p), p);
                if (!ns_rule_find(id)) {
                    cli_error(cmd, "unknown rule '%s' (nnscope rules lists them)", id);
                    free(ids);
                    return CLI_USAGE;
                }
            }
            p = e;
        }
        if (!ids || !ids[0]) {
            cli_error(cmd, "--rules names no rule");
            free(ids);
            return CLI_USAGE;
        }
        free(ids);
    }

    sqlite3 *db = NULL;
    if (cli_open(cmd, path, 1, &db) != 0) return CLI_USAGE;
    if (!run_text) {
        run = ns_diag_latest_run(db);
        if (run < 0) {
            cli_error(cmd, "'%s' holds no runs yet", path);
            sqlite3_close(db);
            return CLI_USAGE;
        }
    }
    ns_finding *f = NULL;
    size_t n = 0;
    if (ns_diag_check(db, run, &opts, only, &f, &n, err, sizeof err) != 0) {
        cli_error(cmd, "%s: %s", path, err);
        sqlite3_close(db);
        return CLI_USAGE;
    }
    run_meta meta;
    load_meta(db, run, &meta);
    sqlite3_close(db);

    char *ids = selected_ids(only);
    const char *no_color = getenv("NO_COLOR");
    info.db_path = path;
    info.run_id = run;
    info.run_status = meta.status;
    info.run_detail = meta.detail;
    info.command = meta.command;
    info.record_error = meta.record_error;
    info.train_steps = meta.train;
    info.eval_steps = meta.eval;
    info.rules_run = ids;
    info.color = fmt == NS_FORMAT_TEXT && isatty(STDOUT_FILENO) && !(no_color && no_color[0]);
    int wrc = ns_report_write(stdout, fmt, &info, f, n);
    if (fflush(stdout) != 0) wrc = -1;
    size_t bad = info.has_fail_on ? ns_findings_count(f, n, info.fail_on) : 0;
    free(ids);
    free_meta(&meta);
    ns_findings_free(f, n);
    if (wrc != 0) {
        cli_error(cmd, "cannot write the report to stdout");
        return CLI_USAGE;
    }
    return bad ? CLI_FINDINGS : CLI_OK;
}
