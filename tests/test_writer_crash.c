/* Crash safety of the recorder's writer: a child process records steps continuously and is
 * killed with SIGKILL at random moments. Each time the file must pass integrity_check, hold every
 * step up to at most one second before the kill (each step row carries its wall time) as a
 * gap-free prefix, and show the run as still 'running' with a recent heartbeat. The next run
 * opens the same file after the kill. NNSCOPE_CRASH_SEED=N repeats a sequence of moments. */
#include "test_writer_util.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

enum { PARAMS = 10 };

/* The freshness bound in seconds. Under valgrind (NNSCOPE_TEST_VALGRIND, about 50 times slower)
 * the writer's 100 ms commit cadence stretches with everything else, so the bound is scaled;
 * integrity, prefix and status are checked the same. */
static double bound_s(void) {
    return getenv("NNSCOPE_TEST_VALGRIND") ? 30.0 : 1.0;
}

static int setup(void **state) {
    (void)state;
    wt_mkdir();
    return 0;
}

static int teardown(void **state) {
    (void)state;
    wt_rmdir();
    return 0;
}

/* The child: one training-like loop, never returns. paced: a step per millisecond (a small
 * model); else as fast as the queue takes rows (the writer's worst case). */
static void child_record(const char *path, int ready_fd, bool paced) {
    char err[512];
    ns_writer *w = ns_writer_open(path, NULL, NULL, err, sizeof err);
    if (!w) {
        fprintf(stderr, "child: %s\n", err);
        _exit(3);
    }
    int64_t run = ns_writer_run_id(w);
    if (write(ready_fd, &run, sizeof run) != sizeof run) _exit(4);
    for (int64_t step = 0;; step++) {
        for (int p = 0; p < PARAMS; p++) wt_push_param_stat(w, step, p);
        wt_push_step(w, step); /* after its parameters: a committed step has all of them */
        if (paced) wt_sleep_ms(1);
    }
}

typedef struct {
    int delay_ms; /* after the child reported its run open; -1: right after fork */
    bool paced;
} kill_plan;

/* t_open: when the child reported its run open (its first step follows at once). */
static void check_after_kill(const char *path, int64_t run, double t_open, double t_kill,
                             bool opened) {
    sqlite3 *db = NULL;
    /* read-write, as the next run opens it: recovers the WAL the killed process left */
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 2000);
    assert_string_equal(wt_text(db, "PRAGMA integrity_check"), "ok");
    if (!opened) {
        sqlite3_close(db);
        return;
    }
    assert_string_equal(wt_text(db, "SELECT status FROM runs WHERE id=%lld", (long long)run),
                        "running");
    assert_string_equal(wt_text(db, "SELECT ended_at FROM runs WHERE id=%lld", (long long)run),
                        "<NULL>");
    int64_t n = wt_int(db, "SELECT count(*) FROM steps WHERE run_id=%lld", (long long)run);
    double last = wt_dbl(db, "SELECT max(wall_time) FROM steps WHERE run_id=%lld", (long long)run);
    double beat = wt_dbl(db, "SELECT heartbeat_at FROM runs WHERE id=%lld", (long long)run);
    print_message("  run %lld: %lld steps, last step %.3f s and heartbeat %.3f s before the kill\n",
                  (long long)run, (long long)n, t_kill - last, t_kill - beat);
    if (t_kill - t_open > bound_s()) { /* steps older than the bound existed: they are there */
        assert_true(n > 0);
        assert_true(last >= t_kill - bound_s());
    }
    assert_true(beat >= t_kill - bound_s());
    /* a gap-free prefix, every step with all its parameter rows */
    assert_int_equal(
        wt_int(db, "SELECT coalesce(max(step), -1) FROM steps WHERE run_id=%lld", (long long)run),
        n - 1);
    assert_int_equal(wt_int(db, "SELECT coalesce(last_step, -1) FROM runs WHERE id=%lld",
                            (long long)run) <= n - 1,
                     1);
    assert_int_equal(wt_int(db,
                            "SELECT count(*) FROM param_stats WHERE run_id=%lld AND step < %lld",
                            (long long)run, (long long)n),
                     n * PARAMS);
    sqlite3_close(db);
}

static void test_sigkill_at_random_moments(void **state) {
    (void)state;
    const char *env = getenv("NNSCOPE_CRASH_SEED");
    unsigned seed = env ? (unsigned)strtoul(env, NULL, 10) : (unsigned)time(NULL);
    print_message("  NNSCOPE_CRASH_SEED=%u\n", seed);
    srand(seed);
    kill_plan plan[] = {
        {-1, true},                   /* during open: schema, runs row */
        {30 + rand() % 150, true},    /* around the first commits */
        {1050 + rand() % 500, false}, /* flood: large transactions, checkpoints */
        {1050 + rand() % 700, true},  /* a small model's steady steps */
        {1300 + rand() % 700, false},
        {1100 + rand() % 600, true},
    };
    char path[600];
    snprintf(path, sizeof path, "%s", wt_path("crash.db"));
    for (size_t i = 0; i < sizeof plan / sizeof *plan; i++) {
        int fds[2];
        assert_int_equal(pipe(fds), 0);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            close(fds[0]);
            child_record(path, fds[1], plan[i].paced);
        }
        close(fds[1]);
        int64_t run = -1;
        bool opened = false;
        double t_open = 0;
        if (plan[i].delay_ms >= 0) {
            assert_int_equal(read(fds[0], &run, sizeof run), sizeof run);
            opened = true;
            t_open = ns_wall_time();
            wt_sleep_ms(plan[i].delay_ms);
        } else {
            wt_sleep_ms(rand() % 5);
        }
        double t_kill = ns_wall_time();
        assert_int_equal(kill(pid, SIGKILL), 0);
        int status;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
        close(fds[0]);
        if (opened)
            print_message("  kill %zu: %s, %d ms after the run opened\n", i,
                          plan[i].paced ? "paced" : "flood", plan[i].delay_ms);
        else
            print_message("  kill %zu: right after fork (during open)\n", i);
        check_after_kill(path, run, t_open, t_kill, opened);
    }
    /* and a normal run still works on the file afterwards */
    char err[512];
    ns_writer *w = ns_writer_open(path, NULL, NULL, err, sizeof err);
    if (!w) fail_msg("%s", err);
    for (int s = 0; s < 100; s++) assert_true(wt_push_step(w, s));
    int64_t run = ns_writer_run_id(w);
    assert_int_equal(ns_writer_close(w, NS_RUN_FINISHED, NULL), 0);
    sqlite3 *db = wt_ro(path);
    assert_int_equal(wt_int(db, "SELECT count(*) FROM steps WHERE run_id=%lld", (long long)run),
                     100);
    assert_int_equal(wt_int(db, "SELECT count(*) FROM runs WHERE status='running'"),
                     wt_int(db, "SELECT count(*) FROM runs") - 1);
    sqlite3_close(db);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sigkill_at_random_moments),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
