/* The nnscope command: shared helpers of the subcommands (opening a recording, errors). */
#ifndef NNSCOPE_CLI_H
#define NNSCOPE_CLI_H

#include <stdint.h>

#include <sqlite3.h>

#include "diag/diag.h"

/* Exit codes of every subcommand. */
enum { CLI_OK = 0, CLI_FINDINGS = 1, CLI_USAGE = 2 };

/* Prints "nnscope CMD: message" to stderr. */
void cli_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Opens path read-only (never creates it) and checks it is a SQLite database; with
 * need_recording also that it holds the nnscope tables. On failure prints one line naming the
 * file (missing, a directory, not a SQLite database, not a recording) and returns -1. */
int cli_open(const char *cmd, const char *path, int need_recording, sqlite3 **db);

/* Parses a whole decimal int64 (no sign needed); returns 0, or -1. */
int cli_parse_int(const char *text, int64_t *v);

/* Matches "--name value" and "--name=value" at argv[*i]; sets *value and advances *i past what
 * it consumed. Returns 1 on a match, 0 when argv[*i] is another argument, -1 when the value is
 * missing (error printed). */
int cli_opt(const char *cmd, int argc, char **argv, int *i, const char *name, const char **value);

/* Subcommands: argv[0] is the subcommand name. Return the process exit code. */
int cli_check(int argc, char **argv);
int cli_query(int argc, char **argv);
int cli_runs(int argc, char **argv);
int cli_rules(int argc, char **argv);

#endif
