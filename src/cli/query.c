/* nnscope query: read-only SQL over a recording, printed as an aligned table, CSV or JSON. */
#include "cli/cli.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char query_usage[] =
    "usage: nnscope query RUN.db \"SQL\" [--csv | --json]\n"
    "\n"
    "Runs SQL over the recording, opened read-only (a statement that would write is refused),\n"
    "and prints each result as an aligned table (NULL shown as NULL), CSV (RFC 4180, NULL\n"
    "empty) or JSON (one array of objects per statement). Several statements separated by ';'\n"
    "run in order. Tables and views: see hooks/schema.sql; a rule's SQL: nnscope rules --sql ID\n"
    "(bind :run yourself, e.g. replace it with a run id).\n"
    "\n"
    "Exit codes: 0 ok, 1 a statement failed or was refused, 2 usage or file errors.\n";

typedef enum { OUT_TABLE, OUT_CSV, OUT_JSON } out_mode;

/* ------------------------------------------------------------------ table (buffered) */

typedef struct {
    char **cells; /* rows * ncol, NULL cell = SQL NULL */
    size_t rows, cap;
    int ncol;
} table;

static size_t text_width(const char *s) {
    size_t w = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if ((*p & 0xC0) != 0x80) w++; /* count UTF-8 lead bytes */
    return w;
}

static void pad(FILE *out, size_t n) {
    while (n--) fputc(' ', out);
}

static int print_table(sqlite3_stmt *st, FILE *out, char *err, size_t errlen) {
    table t = {0};
    t.ncol = sqlite3_column_count(st);
    int *numeric = calloc((size_t)t.ncol + 1, sizeof *numeric);
    size_t *w = calloc((size_t)t.ncol + 1, sizeof *w);
    int rc = SQLITE_OK;
    if (!numeric || !w) {
        free(numeric);
        free(w);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (int c = 0; c < t.ncol; c++) {
        numeric[c] = 1;
        w[c] = text_width(sqlite3_column_name(st, c));
    }
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (t.rows == t.cap) {
            size_t cap = t.cap ? t.cap * 2 : 64;
            char **p = realloc(t.cells, cap * (size_t)t.ncol * sizeof *p);
            if (!p) {
                rc = SQLITE_NOMEM;
                break;
            }
            t.cells = p;
            t.cap = cap;
        }
        for (int c = 0; c < t.ncol; c++) {
            int type = sqlite3_column_type(st, c);
            const char *s = (const char *)sqlite3_column_text(st, c);
            char *cell = type == SQLITE_NULL ? NULL : strdup(s ? s : "");
            if (type == SQLITE_TEXT || type == SQLITE_BLOB) numeric[c] = 0;
            t.cells[t.rows * (size_t)t.ncol + (size_t)c] = cell;
            size_t cw = cell ? text_width(cell) : 4;
            if (cw > w[c]) w[c] = cw;
        }
        t.rows++;
    }
    int ok = rc == SQLITE_DONE;
    if (!ok) snprintf(err, errlen, "%s", sqlite3_errmsg(sqlite3_db_handle(st)));
    if (ok && t.ncol > 0) {
        for (int c = 0; c < t.ncol; c++) {
            const char *name = sqlite3_column_name(st, c);
            if (c) fputs("  ", out);
            if (numeric[c]) pad(out, w[c] - text_width(name));
            fputs(name, out);
            if (!numeric[c] && c + 1 < t.ncol) pad(out, w[c] - text_width(name));
        }
        fputc('\n', out);
        for (int c = 0; c < t.ncol; c++) {
            if (c) fputs("  ", out);
            for (size_t k = 0; k < w[c]; k++) fputc('-', out);
        }
        fputc('\n', out);
        for (size_t r = 0; r < t.rows; r++) {
            for (int c = 0; c < t.ncol; c++) {
                const char *cell = t.cells[r * (size_t)t.ncol + (size_t)c];
                const char *s = cell ? cell : "NULL";
                if (c) fputs("  ", out);
                if (numeric[c]) pad(out, w[c] - text_width(s));
                fputs(s, out);
                if (!numeric[c] && c + 1 < t.ncol) pad(out, w[c] - text_width(s));
            }
            fputc('\n', out);
        }
        fprintf(out, "(%zu row%s)\n", t.rows, t.rows == 1 ? "" : "s");
    }
    for (size_t k = 0; k < t.rows * (size_t)t.ncol; k++) free(t.cells[k]);
    free(t.cells);
    free(numeric);
    free(w);
    return ok ? 0 : -1;
}

/* ------------------------------------------------------------------ CSV / JSON (streamed) */

static void csv_field(FILE *out, const char *s) {
    if (!strpbrk(s, ",\"\r\n")) {
        fputs(s, out);
        return;
    }
    fputc('"', out);
    for (; *s; s++) {
        if (*s == '"') fputc('"', out);
        fputc(*s, out);
    }
    fputc('"', out);
}

static int print_csv(sqlite3_stmt *st, FILE *out, char *err, size_t errlen) {
    int ncol = sqlite3_column_count(st), rc;
    for (int c = 0; c < ncol; c++) {
        if (c) fputc(',', out);
        csv_field(out, sqlite3_column_name(st, c));
    }
    if (ncol) fputs("\r\n", out);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        for (int c = 0; c < ncol; c++) {
            if (c) fputc(',', out);
            if (sqlite3_column_type(st, c) != SQLITE_NULL)
                csv_field(out, (const char *)sqlite3_column_text(st, c));
        }
        fputs("\r\n", out);
    }
    if (rc != SQLITE_DONE) {
        snprintf(err, errlen, "%s", sqlite3_errmsg(sqlite3_db_handle(st)));
        return -1;
    }
    return 0;
}

static void json_text(FILE *out, const char *s) {
    fputc('"', out);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(out, "\\%c", *p);
        else if (*p == '\n')
            fputs("\\n", out);
        else if (*p == '\r')
            fputs("\\r", out);
        else if (*p == '\t')
            fputs("\\t", out);
        else if (*p < 0x20)
            fprintf(out, "\\u%04x", *p);
        else
            fputc(*p, out);
    }
    fputc('"', out);
}

static int print_json(sqlite3_stmt *st, FILE *out, char *err, size_t errlen) {
    int ncol = sqlite3_column_count(st), rc;
    size_t rows = 0;
    fputc('[', out);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        fputs(rows++ ? ",\n {" : "\n {", out);
        for (int c = 0; c < ncol; c++) {
            if (c) fputs(", ", out);
            json_text(out, sqlite3_column_name(st, c));
            fputs(": ", out);
            switch (sqlite3_column_type(st, c)) {
            case SQLITE_NULL:
                fputs("null", out);
                break;
            case SQLITE_INTEGER:
                fprintf(out, "%lld", (long long)sqlite3_column_int64(st, c));
                break;
            case SQLITE_FLOAT: {
                double d = sqlite3_column_double(st, c);
                if (isfinite(d))
                    fprintf(out, "%.17g", d);
                else
                    fputs(d > 0 ? "\"Infinity\"" : "\"-Infinity\"", out);
                break;
            }
            case SQLITE_BLOB: {
                const unsigned char *b = sqlite3_column_blob(st, c);
                int len = sqlite3_column_bytes(st, c);
                fputc('"', out);
                for (int k = 0; k < len; k++) fprintf(out, "%02x", b[k]);
                fputc('"', out);
                break;
            }
            default:
                json_text(out, (const char *)sqlite3_column_text(st, c));
            }
        }
        fputc('}', out);
    }
    fputs(rows ? "\n]\n" : "]\n", out);
    if (rc != SQLITE_DONE) {
        snprintf(err, errlen, "%s", sqlite3_errmsg(sqlite3_db_handle(st)));
        return -1;
    }
    return 0;
}

/* First line of a statement, for error messages. */
static void excerpt(char *buf, size_t len, const char *sql) {
    while (*sql == ' ' || *sql == '\n' || *sql == '\t' || *sql == '\r') sql++;
    size_t n = strcspn(sql, "\n");
    if (n > 60) n = 60;
    snprintf(buf, len, "%.*s%s", (int)n, sql, sql[n] && sql[n] != '\n' ? "..." : "");
}

int cli_query(int argc, char **argv) {
    const char *cmd = "query", *path = NULL, *sql = NULL;
    out_mode mode = OUT_TABLE;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fputs(query_usage, stdout);
            return CLI_OK;
        } else if (strcmp(argv[i], "--csv") == 0) {
            mode = OUT_CSV;
        } else if (strcmp(argv[i], "--json") == 0) {
            mode = OUT_JSON;
        } else if (argv[i][0] == '-' && argv[i][1] == '-') {
            cli_error(cmd, "unknown option '%s' (see nnscope query --help)", argv[i]);
            return CLI_USAGE;
        } else if (!path) {
            path = argv[i];
        } else if (!sql) {
            sql = argv[i];
        } else {
            cli_error(cmd, "unexpected argument '%s' (quote the SQL as one argument)", argv[i]);
            return CLI_USAGE;
        }
    }
    if (!path || !sql) {
        cli_error(cmd, "usage: nnscope query RUN.db \"SQL\" [--csv|--json]");
        return CLI_USAGE;
    }
    sqlite3 *db = NULL;
    if (cli_open(cmd, path, 0, &db) != 0) return CLI_USAGE;

    int status = CLI_OK, nstmt = 0;
    char err[512];
    const char *tail = sql;
    while (tail && *tail) {
        sqlite3_stmt *st = NULL;
        const char *start = tail;
        if (sqlite3_prepare_v2(db, start, -1, &st, &tail) != SQLITE_OK) {
            char ex[96];
            excerpt(ex, sizeof ex, start);
            cli_error(cmd, "%s (in: %s)", sqlite3_errmsg(db), ex);
            status = CLI_FINDINGS;
            break;
        }
        if (!st) continue; /* whitespace or a comment */
        if (!sqlite3_stmt_readonly(st)) {
            char ex[96];
            excerpt(ex, sizeof ex, start);
            cli_error(cmd, "refused: '%s' would write, and %s is opened read-only", ex, path);
            sqlite3_finalize(st);
            status = CLI_FINDINGS;
            break;
        }
        if (nstmt++ && sqlite3_column_count(st) > 0) fputc('\n', stdout);
        int rc = mode == OUT_CSV    ? print_csv(st, stdout, err, sizeof err)
                 : mode == OUT_JSON ? print_json(st, stdout, err, sizeof err)
                                    : print_table(st, stdout, err, sizeof err);
        sqlite3_finalize(st);
        if (rc != 0) {
            cli_error(cmd, "%s", err);
            status = CLI_FINDINGS;
            break;
        }
    }
    sqlite3_close(db);
    if (fflush(stdout) != 0) {
        cli_error(cmd, "cannot write to stdout");
        return CLI_USAGE;
    }
    return status;
}
