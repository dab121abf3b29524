/* nnscope: read a training recording. `nnscope check|query|runs|rules|tui ...` */
#include "cli/cli.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#if __has_include("tui.h")
#include "tui.h"
#define CLI_HAVE_TUI 1
#else
#define CLI_HAVE_TUI 0
#endif

#ifndef NS_VERSION
#define NS_VERSION "unknown"
#endif

static const char usage[] =
    "usage: nnscope <command> [arguments]\n"
    "\n"
    "Reads the SQLite recording a program linked with nnscope writes when NNSCOPE_DB=path is\n"
    "set. Every command opens the file read-only and works on a live run too.\n"
    "\n"
    "commands:\n"
    "  check RUN.db   run the diagnostic rules; exit 1 when a finding is at or above --fail-on\n"
    "  query RUN.db \"SQL\"   run read-only SQL, print a table (--csv, --json)\n"
    "  runs RUN.db    list the runs in the file: status, steps, duration, findings, command\n"
    "  rules          list the rules; --sql ID prints one rule's SQL, --options the thresholds\n"
    "  tui RUN.db     live terminal view of a run\n"
    "\n"
    "`nnscope <command> --help` describes each command. Exit codes: 0 ok, 1 findings (check)\n"
    "or a failed SQL statement (query), 2 usage or file errors.\n";

void cli_error(const char *cmd, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "nnscope %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

int cli_parse_int(const char *text, int64_t *v) {
    char *end = NULL;
    errno = 0;
    long long x = strtoll(text, &end, 10);
    if (!*text || *end || errno) return -1;
    *v = x;
    return 0;
}

int cli_opt(const char *cmd, int argc, char **argv, int *i, const char *name, const char **value) {
    const char *a = argv[*i];
    size_t len = strlen(name);
    if (strncmp(a, name, len) != 0) return 0;
    if (a[len] == '=') {
        *value = a + len + 1;
        return 1;
    }
    if (a[len] != '\0') return 0;
    if (*i + 1 >= argc) {
        cli_error(cmd, "%s needs a value (see nnscope %s --help)", name, cmd);
        return -1;
    }
    *value = argv[++*i];
    return 1;
}

int cli_open(const char *cmd, const char *path, int need_recording, sqlite3 **db) {
    struct stat sb;
    *db = NULL;
    if (stat(path, &sb) != 0) {
        cli_error(cmd, "cannot open '%s': %s", path, strerror(errno));
        return -1;
    }
    if (S_ISDIR(sb.st_mode)) {
        cli_error(cmd, "cannot open '%s': it is a directory", path);
        return -1;
    }
    if (sqlite3_open_v2(path, db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        cli_error(cmd, "cannot open '%s': %s", path, *db ? sqlite3_errmsg(*db) : "out of memory");
        sqlite3_close(*db);
        *db = NULL;
        return -1;
    }
    sqlite3_busy_timeout(*db, 2000);
    /* The open is lazy: the first read tells whether this is a database at all. */
    int rc = sqlite3_exec(*db, "SELECT COUNT(*) FROM sqlite_master", NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        if (rc == SQLITE_NOTADB)
            cli_error(cmd, "'%s' is not a SQLite database (nor an nnscope recording)", path);
        else
            cli_error(cmd, "cannot read '%s': %s", path, sqlite3_errmsg(*db));
        sqlite3_close(*db);
        *db = NULL;
        return -1;
    }
    if (need_recording && !ns_diag_is_recording(*db)) {
        cli_error(cmd, "'%s' is a SQLite database but not an nnscope recording (no runs table)",
                  path);
        sqlite3_close(*db);
        *db = NULL;
        return -1;
    }
    return 0;
}

static int cli_tui(int argc, char **argv) {
#if CLI_HAVE_TUI
    return ns_tui_main(argc, argv);
#else
    (void)argc;
    (void)argv;
    cli_error("tui", "this build of nnscope has no terminal UI");
    return CLI_USAGE;
#endif
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fputs(usage, stderr);
        return CLI_USAGE;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        fputs(usage, stdout);
        return CLI_OK;
    }
    if (strcmp(cmd, "--version") == 0) {
        printf("nnscope %s (SQLite %s)\n", NS_VERSION, sqlite3_libversion());
        return CLI_OK;
    }
    if (strcmp(cmd, "check") == 0) return cli_check(argc - 1, argv + 1);
    if (strcmp(cmd, "query") == 0) return cli_query(argc - 1, argv + 1);
    if (strcmp(cmd, "runs") == 0) return cli_runs(argc - 1, argv + 1);
    if (strcmp(cmd, "rules") == 0) return cli_rules(argc - 1, argv + 1);
    if (strcmp(cmd, "tui") == 0) return cli_tui(argc - 1, argv + 1);
    fprintf(stderr, "nnscope: unknown command '%s'\n\n%s", cmd, usage);
    return CLI_USAGE;
}
