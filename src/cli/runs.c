/* nnscope runs: the runs of a recording with status, steps, duration, findings and command. */
#include "cli/cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* A run still marked 'running' whose writer has not committed for this long is shown as
 * 'stale' (killed with SIGKILL, or the machine went away). */
#define STALE_AFTER_S 30.0

static const char runs_usage[] =
    "usage: nnscope runs RUN.db\n"
    "\n"
    "Lists the runs recorded in the file: id, status, train+eval steps, duration, findings of\n"
    "`nnscope check` with default thresholds (errors/warnings/info) and the command line.\n"
    "Status is finished, interrupted, failed, running, or stale: marked running, but its\n"
    "writer's heartbeat is more than 30 s old (the process was killed or is hung).\n"
    "\n"
    "Exit codes: 0 ok, 2 usage or file errors.\n";

static void duration_text(char *buf, size_t len, double s) {
    if (s < 0)
        snprintf(buf, len, "-");
    else if (s < 60)
        snprintf(buf, len, "%.1fs", s);
    else if (s < 3600)
        snprintf(buf, len, "%dm%02ds", (int)(s / 60), (int)s % 60);
    else
        snprintf(buf, len, "%dh%02dm", (int)(s / 3600), (int)(s / 60) % 60);
}

int cli_runs(int argc, char **argv) {
    const char *cmd = "runs", *path = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fputs(runs_usage, stdout);
            return CLI_OK;
        } else if (argv[i][0] == '-' && argv[i][1] != '\0') {
            cli_error(cmd, "unknown option '%s' (see nnscope runs --help)", argv[i]);
            return CLI_USAGE;
        } else if (!path) {
            path = argv[i];
        } else {
            cli_error(cmd, "unexpected argument '%s'", argv[i]);
            return CLI_USAGE;
        }
    }
    if (!path) {
        cli_error(cmd, "missing RUN.db (see nnscope runs --help)");
        return CLI_USAGE;
    }
    sqlite3 *db = NULL;
    if (cli_open(cmd, path, 1, &db) != 0) return CLI_USAGE;
    const char *sql = "SELECT r.id, r.status, r.started_at, r.ended_at, r.heartbeat_at, r.command,"
                      " (SELECT COUNT(*) FROM steps s WHERE s.run_id = r.id AND s.phase = 'train'),"
                      " (SELECT COUNT(*) FROM steps s WHERE s.run_id = r.id AND s.phase = 'eval'),"
                      " (SELECT MAX(wall_time) FROM steps s WHERE s.run_id = r.id)"
                      " FROM runs r ORDER BY r.id";
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
        cli_error(cmd, "%s: %s", path, sqlite3_errmsg(db));
        sqlite3_close(db);
        return CLI_USAGE;
    }
    typedef struct {
        int64_t id, train, eval;
        char *state, *command;
        double started, last;
    } row;
    row *rows = NULL;
    size_t nrows = 0, cap = 0;
    double now = (double)time(NULL);
    int rc, status = CLI_OK;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (nrows == cap) {
            cap = cap ? cap * 2 : 16;
            row *p = realloc(rows, cap * sizeof *p);
            if (!p) {
                rc = SQLITE_NOMEM;
                break;
            }
            rows = p;
        }
        row *r = &rows[nrows++];
        const char *stat = (const char *)sqlite3_column_text(st, 1);
        const char *command = (const char *)sqlite3_column_text(st, 5);
        int has_end = sqlite3_column_type(st, 3) != SQLITE_NULL;
        int has_beat = sqlite3_column_type(st, 4) != SQLITE_NULL;
        int has_step = sqlite3_column_type(st, 8) != SQLITE_NULL;
        double beat = sqlite3_column_double(st, 4);
        r->id = sqlite3_column_int64(st, 0);
        r->started = sqlite3_column_double(st, 2);
        r->last = has_end    ? sqlite3_column_double(st, 3)
                  : has_beat ? beat
                  : has_step ? sqlite3_column_double(st, 8)
                             : r->started;
        r->train = sqlite3_column_int64(st, 6);
        r->eval = sqlite3_column_int64(st, 7);
        r->command = strdup(command ? command : "");
        if (stat && strcmp(stat, "running") == 0 &&
            now - (has_beat ? beat : r->started) > STALE_AFTER_S)
            stat = "stale";
        r->state = strdup(stat ? stat : "?");
    }
    if (rc != SQLITE_DONE) {
        cli_error(cmd, "%s: %s", path, sqlite3_errmsg(db));
        status = CLI_USAGE;
    }
    sqlite3_finalize(st);
    st = NULL;
    if (status == CLI_OK) {
        printf("%4s  %-11s  %13s  %8s  %6s  %8s  %4s  %s\n", "id", "status", "steps(tr+ev)",
               "duration", "errors", "warnings", "info", "command");
        if (nrows == 0) printf("(no runs)\n");
    }
    for (size_t i = 0; status == CLI_OK && i < nrows; i++) {
        row *r = &rows[i];
        char dur[32], steps[48], errs[24] = "?", warns[24] = "?", infos[24] = "?", err[512];
        duration_text(dur, sizeof dur, r->last - r->started);
        snprintf(steps, sizeof steps, "%lld+%lld", (long long)r->train, (long long)r->eval);
        ns_finding *f = NULL;
        size_t n = 0;
        if (ns_diag_check(db, r->id, NULL, NULL, &f, &n, err, sizeof err) == 0) {
            size_t e = ns_findings_count(f, n, NS_SEV_ERROR);
            size_t w = ns_findings_count(f, n, NS_SEV_WARNING) - e;
            snprintf(errs, sizeof errs, "%zu", e);
            snprintf(warns, sizeof warns, "%zu", w);
            snprintf(infos, sizeof infos, "%zu", n - e - w);
            ns_findings_free(f, n);
        } else {
            cli_error(cmd, "run %lld: %s", (long long)r->id, err);
        }
        printf("%4lld  %-11s  %13s  %8s  %6s  %8s  %4s  %s\n", (long long)r->id,
               r->state ? r->state : "?", steps, dur, errs, warns, infos,
               r->command ? r->command : "");
    }
    for (size_t i = 0; i < nrows; i++) {
        free(rows[i].state);
        free(rows[i].command);
    }
    free(rows);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return status;
}
