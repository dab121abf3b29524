/* A fake live run for the TUI tests: writes a recording the way the engine's recorder does
 * (schema from hooks/schema.sql, the tests' small model with an unregistered Linear, one
 * committed transaction per step, heartbeat updates), at a steady pace.
 *
 *   tui_writer RUN.db [--steps N] [--every-ms MS] [--delay-ms MS] [--finish]
 *                     [--run ID] [--append]
 *
 * --delay-ms waits before creating the file (the TUI must wait for it); --finish marks the
 * run finished at the end (else it stays 'running', like a killed process); --append adds
 * run ID (default 1) to an existing recording instead of creating a new file. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "test_tui_fixture.h"

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

int main(int argc, char **argv) {
    const char *path = NULL;
    long steps = 100, every = 50, delay = 0, run = 1;
    int finish = 0, append = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--steps") && i + 1 < argc)
            steps = atol(argv[++i]);
        else if (!strcmp(argv[i], "--every-ms") && i + 1 < argc)
            every = atol(argv[++i]);
        else if (!strcmp(argv[i], "--delay-ms") && i + 1 < argc)
            delay = atol(argv[++i]);
        else if (!strcmp(argv[i], "--run") && i + 1 < argc)
            run = atol(argv[++i]);
        else if (!strcmp(argv[i], "--finish"))
            finish = 1;
        else if (!strcmp(argv[i], "--append"))
            append = 1;
        else if (argv[i][0] != '-' && !path)
            path = argv[i];
        else {
            fprintf(stderr, "usage: tui_writer RUN.db [--steps N] [--every-ms MS] "
                            "[--delay-ms MS] [--finish] [--run ID] [--append]\n");
            return 2;
        }
    }
    if (!path || steps < 1 || every < 0 || delay < 0 || run < 1) {
        fprintf(stderr, "tui_writer: need RUN.db and non-negative numbers\n");
        return 2;
    }
    if (delay) sleep_ms(delay);
    sqlite3 *db = NULL;
    if (append) {
        if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK) {
            fprintf(stderr, "tui_writer: %s: %s\n", path, sqlite3_errmsg(db));
            sqlite3_close(db);
            return 1;
        }
        sqlite3_busy_timeout(db, 2000);
    } else {
        db = tfx_create(path);
        if (!db) return 1;
    }
    double t0 = tfx_now();
    char command[64];
    snprintf(command, sizeof command, "tui_writer (fake live run %ld)", run);
    tfx_run(db, run, "running", command, t0);
    tfx_model(db, run);
    for (long s = 0; s < steps; s++) {
        /* Wall times of real steps: the fixture spaces them 10 ms apart from t0. */
        tfx_steps(db, run, s, s, tfx_now() - 0.01 * (double)s);
        if (every) sleep_ms(every);
    }
    if (finish) tfx_finish(db, run, tfx_now());
    sqlite3_close(db);
    return 0;
}
