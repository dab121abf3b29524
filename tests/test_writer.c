/* The recorder's queue and SQLite writer thread (hooks/writer.h), without the engine: schema,
 * exact round trips, runs sharing a file, flush, both queue-full policies, heartbeat, close
 * statuses (atexit after SIGTERM included), disk full, unwritable paths, concurrent readers. */
#include "test_writer_util.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/wait.h>
#include <unistd.h>

#include "schema_sql.h"

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

/* Loop sizes, shorter under valgrind (NNSCOPE_TEST_VALGRIND). */
static int scaled(int n) {
    return getenv("NNSCOPE_TEST_VALGRIND") ? n / 10 : n;
}

static ns_writer *open_or_fail(const char *path, const ns_writer_opts *o, const ns_run_meta *m) {
    char err[1024] = "";
    ns_writer *w = ns_writer_open(path, o, m, err, sizeof err);
    if (!w) fail_msg("ns_writer_open: %s", err);
    return w;
}

/* A connection that takes the write lock, so the writer cannot drain its queue. */
static sqlite3 *hold_write_lock(const char *path) {
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    assert_int_equal(sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
    return db;
}

static void release_write_lock(sqlite3 *db) {
    assert_int_equal(sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
}

/* ---------------------------------------------------------------- schema and run row */

static void test_schema_created(void **state) {
    (void)state;
    const char *path = wt_path("schema.db");
    ns_writer_opts o;
    ns_writer_opts_default(&o);
    o.policy = NS_QUEUE_DROP;
    ns_run_meta m = {.command = "train --epochs 1", .devices = "cpu,cuda:0", .sample_every = 5};
    double t0 = ns_wall_time();
    ns_writer *w = open_or_fail(path, &o, &m);
    assert_int_equal(ns_writer_run_id(w), 1);
    assert_string_equal(ns_writer_path(w), path);
    assert_null(ns_writer_error(w));
    assert_int_equal(ns_writer_close(w, NS_RUN_FINISHED, NULL), 0);
    double t1 = ns_wall_time();

    sqlite3 *db = wt_ro(path);
    static const char *tables[] = {"strings",     "runs",         "modules",   "params", "steps",
                                   "param_stats", "module_calls", "transfers", "events", "kernels"};
    static const char *views[] = {"param_changes", "module_activity",    "loss_curve",
                                  "param_summary", "gpu_time_by_module", "top_kernels",
                                  "copy_volume"};
    for (size_t i = 0; i < sizeof tables / sizeof *tables; i++)
        assert_int_equal(wt_int(db,
                                "SELECT count(*) FROM sqlite_master WHERE type='table' AND "
                                "name=%Q",
                                tables[i]),
                         1);
    for (size_t i = 0; i < sizeof views / sizeof *views; i++) {
        assert_int_equal(wt_int(db,
                                "SELECT count(*) FROM sqlite_master WHERE type='view' AND name=%Q",
                                views[i]),
                         1);
        wt_int(db, "SELECT count(*) FROM %s", views[i]); /* every view compiles */
    }
    assert_int_equal(wt_int(db, "SELECT count(*) FROM sqlite_master WHERE type='table'"),
                     sizeof tables / sizeof *tables);
    assert_string_equal(wt_text(db, "PRAGMA journal_mode"), "wal");
    assert_int_equal(wt_int(db, "PRAGMA user_version"), 1);

    char host[256] = "";
    gethostname(host, sizeof host - 1);
    assert_string_equal(wt_text(db, "SELECT status FROM runs WHERE id=1"), "finished");
    assert_string_equal(wt_text(db, "SELECT command FROM runs WHERE id=1"), "train --epochs 1");
    assert_string_equal(wt_text(db, "SELECT host FROM runs WHERE id=1"), host);
    assert_int_equal(wt_int(db, "SELECT pid FROM runs WHERE id=1"), getpid());
    assert_string_equal(wt_text(db, "SELECT engine_version FROM runs WHERE id=1"), NS_VERSION);
    assert_string_equal(wt_text(db, "SELECT devices FROM runs WHERE id=1"), "cpu,cuda:0");
    assert_string_equal(wt_text(db, "SELECT queue_policy FROM runs WHERE id=1"), "drop");
    assert_int_equal(wt_int(db, "SELECT sample_every FROM runs WHERE id=1"), 5);
    assert_int_equal(wt_int(db, "SELECT dropped FROM runs WHERE id=1"), 0);
    assert_string_equal(wt_text(db, "SELECT status_detail FROM runs WHERE id=1"), "<NULL>");
    assert_string_equal(wt_text(db, "SELECT record_error FROM runs WHERE id=1"), "<NULL>");
    double started = wt_dbl(db, "SELECT started_at FROM runs WHERE id=1");
    double ended = wt_dbl(db, "SELECT ended_at FROM runs WHERE id=1");
    assert_true(started >= t0 - 0.01 && started <= ended && ended <= t1 + 0.01);
    assert_true(wt_dbl(db, "SELECT heartbeat_at FROM runs WHERE id=1") >= started);
    sqlite3_close(db);

    /* defaults: the command line of this test program, block policy, sample_every 1 */
    w = open_or_fail(path, NULL, NULL);
    assert_int_equal(ns_writer_run_id(w), 2);
    assert_int_equal(ns_writer_close(w, NS_RUN_FINISHED, NULL), 0);
    db = wt_ro(path);
    assert_non_null(strstr(wt_text(db, "SELECT command FROM runs WHERE id=2"), "test_writer"));
    assert_string_equal(wt_text(db, "SELECT queue_policy FROM runs WHERE id=2"), "block");
    assert_string_equal(wt_text(db, "SELECT devices FROM runs WHERE id=2"), "cpu");
    assert_int_equal(wt_int(db, "SELECT sample_every FROM runs WHERE id=2"), 1);
    sqlite3_close(db);
}

/* The writer creates the schema from hooks/schema.sql itself, byte for byte. */
static void test_schema_is_the_file(void **state) {
    (void)state;
    const char *root = getenv("NNSCOPE_SOURCE_ROOT");
    assert_non_null(root);
    char path[4096];
    snprintf(path, sizeof path, "%s/hooks/schema.sql", root);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    static char buf[1 << 17];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    assert_string_equal(buf, ns_schema_sql);
}

/* A file made before runs.record_error existed is recorded into after adding the column. */
static void test_old_file_gets_new_column(void **state) {
    (void)state;
    const char *path = wt_path("old.db");
    ns_writer *w = open_or_fail(path, NULL, NULL);
    assert_int_equal(ns_writer_close(w, NS_RUN_FINISHED, NULL), 0);
    /* rebuild runs as the schema had it: the same text up to cupti_status, the last column */
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    char sql[4096];
    snprintf(sql, sizeof sql, "%s", wt_text(db, "SELECT sql FROM sqlite_master WHERE name='runs'"));
    char *last = strstr(sql, "cupti_status   TEXT,");
    assert_non_null(last);
    strcpy(last, "cupti_status TEXT)");
    assert_int_equal(sqlite3_exec(db, "DROP TABLE runs", NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(
        wt_int(db, "SELECT count(*) FROM pragma_table_info('runs') WHERE name='record_error'"), 0);
    sqlite3_close(db);
    w = open_or_fail(path, NULL, NULL);
    assert_true(wt_push_step(w, 0));
    assert_int_equal(ns_writer_close(w, NS_RUN_FINISHED, NULL), 0);
    db = wt_ro(path);
    assert_int_equal(wt_int(db, "SELECT count(*) FROM runs WHERE record_error IS NULL"), 1);
    assert_string_equal(wt_text(db, "SELECT status FROM runs"), "finished");
    assert_int_equal(wt_int(db, "SELECT count(*) FROM steps WHERE run_id=1"), 1);
    sqlite3_close(db);
}

/* ---------------------------------------------------------------- round trip */

static void test_round_trip(void **state) {
    (void)state;
    const char *path = wt_path("roundtrip.db");
    ns_writer *w = open_or_fail(path, NULL, NULL);
    int64_t run = ns_writer_run_id(w);
    ns_row r;
    char buf[64];

    ns_row_init(&r, NS_ROW_MODULE); /* sent twice: the second replaces the first */
    r.module.id = 7, r.module.path = "fc1", r.module.type = "Linear", r.module.registered = 0;
    assert_true(ns_writer_push(w, &r));
    r.module.parent_id = 1,
    r.module.describe = "Linear(in_features=784, out_features=256, bias=True)";
    r.module.registered = 1, r.module.n_params = 200960, r.module.first_step = 0;
    assert_true(ns_writer_push(w, &r));
    ns_row_init(&r, NS_ROW_MODULE);
    r.module.id = 1, r.module.path = "", r.module.type = "Net 'quoted' \"x\" \xc3\xa9";
    r.module.registered = 1, r.module.created_in_forward = 1, r.module.creator_id = 9;
    assert_true(ns_writer_push(w, &r));

    ns_row_init(&r, NS_ROW_PARAM);
    r.param.id = 3, r.param.module_id = 7, r.param.name = "fc1.weight", r.param.shape = "256x784";
    r.param.numel = 200704, r.param.requires_grad = 1, r.param.in_optimizer = 1, r.param.lr = 0.1;
    assert_true(ns_writer_push(w, &r));
    ns_row_init(&r, NS_ROW_PARAM);
    r.param.id = 4, r.param.module_id = 7, r.param.name = "bn.running_mean",
    r.param.kind = "buffer", r.param.shape = "256", r.param.numel = 256;
    assert_true(ns_writer_push(w, &r));

    ns_row_init(&r, NS_ROW_STEP);
    r.step.step = 0, r.step.phase = "train", r.step.epoch = 2, r.step.loss = 2.302585092994046;
    r.step.lr = 1e-300, r.step.samples = 64, r.step.wall_time = 1700000000.123456;
    r.step.duration_us = 1234.5;
    assert_true(ns_writer_push(w, &r));
    ns_row_init(&r, NS_ROW_STEP); /* everything optional left NULL; wall_time from the writer */
    r.step.step = 1, r.step.phase = "eval";
    double before = ns_wall_time();
    assert_true(ns_writer_push(w, &r));

    ns_row_init(&r, NS_ROW_PARAM_STAT);
    r.param_stat.step = 0, r.param_stat.param_id = 3, r.param_stat.grad_norm = INFINITY;
    r.param_stat.update_norm = -0.0, r.param_stat.weight_norm = 123456.789;
    r.param_stat.ratio = 0.1 + 0.2, r.param_stat.nonfinite = 17, r.param_stat.device = "cuda:0";
    assert_true(ns_writer_push(w, &r));
    ns_row_init(&r, NS_ROW_PARAM_STAT);
    r.param_stat.step = 0, r.param_stat.param_id = 4, r.param_stat.device = "cpu";
    assert_true(ns_writer_push(w, &r));

    ns_row_init(&r, NS_ROW_CALL);
    r.call.step = 0, r.call.module_id = 7, r.call.seq = 3, r.call.caller_id = 1;
    r.call.phase = "train", r.call.training = 1, r.call.grad_enabled = 1;
    r.call.in_device = "cpu", r.call.param_device = "cpu", r.call.out_device = "cuda:0";
    r.call.in_shape = "64x784", r.call.out_shape = "64x256", r.call.fwd_us = 55.25;
    r.call.out_mean = 0.125, r.call.out_std = 1.5, r.call.out_zero_frac = 0.5;
    r.call.dead_frac = 0.25, r.call.out_nonfinite = 0;
    assert_true(ns_writer_push(w, &r));
    ns_row_init(&r, NS_ROW_CALL_BWD);
    r.call_bwd.step = 0, r.call_bwd.seq = 3, r.call_bwd.bwd_us = 99.5;
    r.call_bwd.grad_out_norm = 0.75;
    assert_true(ns_writer_push(w, &r));
    ns_row_init(&r, NS_ROW_CALL_BWD); /* NAN leaves grad_out_norm as it is */
    r.call_bwd.step = 0, r.call_bwd.seq = 3, r.call_bwd.bwd_us = 100.5;
    assert_true(ns_writer_push(w, &r));

    ns_row_init(&r, NS_ROW_TRANSFER);
    r.transfer.step = 0, r.transfer.module_id = 7, r.transfer.src = "cpu",
    r.transfer.dst = "cuda:0";
    r.transfer.bytes = 200704 * 4;
    assert_true(ns_writer_push(w, &r));

    ns_row_init(&r, NS_ROW_EVENT);
    r.event.step = 0, r.event.kind = "unregistered_call", r.event.module_id = 7;
    r.event.detail = "net.<unregistered Linear#7>", r.event.value = 3, r.event.wall_time = 1.5;
    assert_true(ns_writer_push(w, &r));
    static char long_detail[NS_ROW_TEXT_MAX + 500];
    memset(long_detail, 'x', sizeof long_detail - 1);
    long_detail[NS_ROW_TEXT_MAX - 1] = '\xc3'; /* a 2-byte character across the cut */
    long_detail[NS_ROW_TEXT_MAX] = '\xa9';
    ns_row_init(&r, NS_ROW_EVENT);
    r.event.kind = "note", r.event.detail = long_detail;
    assert_true(ns_writer_push(w, &r));

    const char *names[] = {"sgemm_128x64_nn", "elementwise_add", "sgemm_128x64_nn"};
    for (int i = 0; i < 3; i++) {
        ns_row_init(&r, NS_ROW_KERNEL);
        r.kernel.step = 0, r.kernel.module_id = i == 1 ? NS_NULL : 7, r.kernel.phase = "forward";
        r.kernel.name = names[i], r.kernel.start_ns = 1000000000000LL + i;
        r.kernel.end_ns = 1000000005000LL + i, r.kernel.grid[0] = 32, r.kernel.block[0] = 256;
        r.kernel.stream = 7;
        assert_true(ns_writer_push(w, &r));
    }
    ns_row_init(&r, NS_ROW_KERNEL);
    r.kernel.step = 0, r.kernel.phase = "other", r.kernel.kind = "memcpy", r.kernel.bytes = 4096;
    r.kernel.start_ns = 5, r.kernel.end_ns = 6;
    assert_true(ns_writer_push(w, &r));

    ns_row_init(&r, NS_ROW_RUN);
    r.run.cupti_status = "off: CUPTI_ERROR_INSUFFICIENT_PRIVILEGES";
    assert_true(ns_writer_push(w, &r));

    /* strings are copied at push: the caller may reuse its buffers at once */
    snprintf(buf, sizeof buf, "phase-will-change");
    ns_row_init(&r, NS_ROW_EVENT);
    r.event.kind = buf, r.event.wall_time = 2.0;
    assert_true(ns_writer_push(w, &r));
    snprintf(buf, sizeof buf, "garbage");

    assert_int_equal(ns_writer_flush(w), 0);
    double after = ns_wall_time();

    sqlite3 *db = wt_ro(path);
    assert_int_equal(wt_int(db, "SELECT count(*) FROM modules"), 2);
    assert_int_equal(wt_int(db, "SELECT registered FROM modules WHERE id=7"), 1);
    assert_int_equal(wt_int(db, "SELECT parent_id FROM modules WHERE id=7"), 1);
    assert_int_equal(wt_int(db, "SELECT n_params FROM modules WHERE id=7"), 200960);
    assert_int_equal(wt_int(db, "SELECT first_step FROM modules WHERE id=7"), 0);
    assert_string_equal(wt_text(db, "SELECT describe FROM modules WHERE id=7"),
                        "Linear(in_features=784, out_features=256, bias=True)");
    assert_string_equal(wt_text(db, "SELECT path FROM modules WHERE id=1"), "");
    assert_string_equal(wt_text(db, "SELECT type FROM modules WHERE id=1"),
                        "Net 'quoted' \"x\" \xc3\xa9");
    assert_string_equal(wt_text(db, "SELECT parent_id FROM modules WHERE id=1"), "<NULL>");
    assert_int_equal(wt_int(db, "SELECT created_in_forward FROM modules WHERE id=1"), 1);
    assert_int_equal(wt_int(db, "SELECT creator_id FROM modules WHERE id=1"), 9);
    assert_int_equal(wt_int(db, "SELECT count(*) FROM modules WHERE run_id=%lld", (long long)run),
                     2);

    assert_string_equal(wt_text(db, "SELECT kind FROM params WHERE id=3"), "param");
    assert_string_equal(wt_text(db, "SELECT shape FROM params WHERE id=3"), "256x784");
    assert_int_equal(wt_int(db, "SELECT numel FROM params WHERE id=3"), 200704);
    assert_true(wt_dbl(db, "SELECT lr FROM params WHERE id=3") == 0.1);
    assert_string_equal(wt_text(db, "SELECT kind FROM params WHERE id=4"), "buffer");
    assert_true(isnan(wt_dbl(db, "SELECT lr FROM params WHERE id=4")));
    assert_int_equal(wt_int(db, "SELECT requires_grad + in_optimizer FROM params WHERE id=4"), 0);

    assert_true(wt_dbl(db, "SELECT loss FROM steps WHERE step=0") == 2.302585092994046);
    assert_true(wt_dbl(db, "SELECT lr FROM steps WHERE step=0") == 1e-300);
    assert_true(wt_dbl(db, "SELECT wall_time FROM steps WHERE step=0") == 1700000000.123456);
    assert_true(wt_dbl(db, "SELECT duration_us FROM steps WHERE step=0") == 1234.5);
    assert_int_equal(wt_int(db, "SELECT epoch * 1000 + samples FROM steps WHERE step=0"), 2064);
    assert_string_equal(wt_text(db, "SELECT phase FROM steps WHERE step=1"), "eval");
    assert_int_equal(wt_int(db, "SELECT count(*) FROM steps WHERE step=1 AND loss IS NULL AND lr "
                                "IS NULL AND epoch IS NULL AND samples IS NULL AND duration_us IS "
                                "NULL"),
                     1);
    double wt = wt_dbl(db, "SELECT wall_time FROM steps WHERE step=1");
    assert_true(wt >= before - 0.01 && wt <= after + 0.01);
    assert_int_equal(wt_int(db, "SELECT last_step FROM runs WHERE id=%lld", (long long)run), 1);

    assert_true(isinf(wt_dbl(db, "SELECT grad_norm FROM param_stats WHERE param_id=3")));
    assert_true(wt_dbl(db, "SELECT update_norm FROM param_stats WHERE param_id=3") == 0.0);
    assert_true(wt_dbl(db, "SELECT weight_norm FROM param_stats WHERE param_id=3") == 123456.789);
    assert_true(wt_dbl(db, "SELECT ratio FROM param_stats WHERE param_id=3") == 0.1 + 0.2);
    assert_int_equal(wt_int(db, "SELECT nonfinite FROM param_stats WHERE param_id=3"), 17);
    assert_string_equal(wt_text(db, "SELECT device FROM param_stats WHERE param_id=3"), "cuda:0");
    assert_int_equal(wt_int(db, "SELECT count(*) FROM param_stats WHERE param_id=4 AND grad_norm "
                                "IS NULL AND update_norm IS NULL AND weight_norm IS NULL AND "
                                "ratio IS NULL AND nonfinite = 0"),
                     1);
    assert_string_equal(wt_text(db, "SELECT name FROM param_changes ORDER BY name LIMIT 1"),
                        "bn.running_mean");

    assert_string_equal(wt_text(db, "SELECT printf('%%d %%d %%d %%s %%d %%d %%s %%s %%s %%s %%s', "
                                    "module_id, seq, caller_id, phase, training, grad_enabled, "
                                    "in_device, param_device, out_device, in_shape, out_shape) "
                                    "FROM module_calls"),
                        "7 3 1 train 1 1 cpu cpu cuda:0 64x784 64x256");
    assert_true(wt_dbl(db, "SELECT fwd_us FROM module_calls") == 55.25);
    assert_true(wt_dbl(db, "SELECT bwd_us FROM module_calls") == 100.5);
    assert_true(wt_dbl(db, "SELECT grad_out_norm FROM module_calls") == 0.75);
    assert_true(wt_dbl(db, "SELECT out_mean + out_std + out_zero_frac + dead_frac FROM "
                           "module_calls") == 2.375);
    assert_int_equal(wt_int(db, "SELECT out_nonfinite FROM module_calls"), 0);

    assert_string_equal(wt_text(db, "SELECT printf('%%d %%s %%s %%d %%d', module_id, src, dst, "
                                    "bytes, count) FROM transfers"),
                        "7 cpu cuda:0 802816 1");

    assert_string_equal(wt_text(db, "SELECT detail FROM events WHERE kind='unregistered_call'"),
                        "net.<unregistered Linear#7>");
    assert_true(wt_dbl(db, "SELECT value + wall_time FROM events WHERE kind='unregistered_call'") ==
                4.5);
    assert_string_equal(wt_text(db, "SELECT param_id FROM events WHERE kind='unregistered_call'"),
                        "<NULL>");
    /* cut to NS_ROW_TEXT_MAX bytes, backing off the split character */
    assert_int_equal(
        wt_int(db, "SELECT length(CAST(detail AS BLOB)) FROM events WHERE kind='note'"),
        NS_ROW_TEXT_MAX - 1);
    assert_true(wt_dbl(db, "SELECT wall_time FROM events WHERE kind='note'") >= before - 0.01);
    assert_int_equal(wt_int(db, "SELECT count(*) FROM events WHERE kind='phase-will-change'"), 1);

    assert_int_equal(wt_int(db, "SELECT count(*) FROM strings"), 2);
    assert_int_equal(wt_int(db, "SELECT count(DISTINCT name_id) FROM kernels WHERE kind='kernel'"),
                     2);
    assert_string_equal(wt_text(db, "SELECT name FROM top_kernels ORDER BY launches DESC LIMIT 1"),
                        "sgemm_128x64_nn");
    assert_int_equal(wt_int(db, "SELECT launches FROM top_kernels ORDER BY launches DESC LIMIT 1"),
                     2);
    assert_string_equal(wt_text(db, "SELECT printf('%%d %%d %%d %%d %%s %%s %%s', start_ns, "
                                    "end_ns, grid_x, block_x, grid_y, stream, bytes) FROM kernels "
                                    "WHERE name_id IS NOT NULL ORDER BY start_ns LIMIT 1"),
                        "1000000000000 1000000005000 32 256  7 ");
    assert_string_equal(wt_text(db, "SELECT printf('%%s %%d %%s', phase, bytes, name_id) FROM "
                                    "kernels WHERE kind='memcpy'"),
                        "other 4096 ");
    assert_string_equal(wt_text(db, "SELECT cupti_status FROM runs WHERE id=%lld", (long long)run),
                        "off: CUPTI_ERROR_INSUFFICIENT_PRIVILEGES");
    assert_string_equal(wt_text(db, "SELECT devices FROM runs WHERE id=%lld", (long long)run),
                        "cpu");
    sqlite3_close(db);

    ns_writer_stats s;
    ns_writer_stats_get(w, &s);
    assert_int_equal(s.rejected, 0);
    assert_int_equal(s.pushed, s.committed);
    assert_int_equal(ns_writer_close(w, NS_RUN_FINISHED, NULL), 0);
}

/* A row SQLite refuses (a duplicate key) is skipped and counted; recording goes on. */
static void test_rejected_row_counted(void **state) {
    (void)state;
    const char *path = wt_path("reject.db");
    ns_writer *w = open_or_fail(path, NULL, NULL);
    assert_true(wt_push_step(w, 0));
    assert_true(wt_push_step(w, 0));
    assert_true(wt_push_step(w, 1));
    assert_int_equal(ns_writer_flush(w), 0);
    ns_writer_stats s;
    ns_writer_stats_get(w, &s);
    assert_int_equal(s.rejected, 1);
    assert_non_null(strstr(s.first_reject, "UNIQUE constraint failed: steps"));
    assert_null(ns_writer_error(w));
    assert_int_equal(ns_writer_close(w, NS_RUN_FINISHED, NULL), 0);
    sqlite3 *db = wt_ro(path);
    assert_int_equal(wt_int(db, "SELECT count(*) FROM steps"), 2);
    sqlite3_close(db);
}

/* ---------------------------------------------------------------- runs, flush */

typedef struct {
    const char *path;
    int steps;
    int64_t run;
    int rc;
} runner_arg;

static void *runner(void *p) {
    runner_arg *a = p;
    char err[512];
    ns_writer *w = ns_writer_open(a->path, NULL, NULL, err, sizeof err);
    if (!w) {
        fprintf(stderr, "%s\n", err);
        a->rc = -1;
        return NULL;
    }
    a->run = ns_writer_run_id(w);
    for (int i = 0; i < a->steps; i++) {
        wt_push_param_stat(w, i, 1);
        wt_push_step(w, i);
    }
    a->rc = ns_writer_close(w, NS_RUN_FINISHED, NULL);
    return NULL;
}

static void test_several_runs_one_file(void **state) {
    (void)state;
    const char *path = wt_path("shared.db");
    for (int k = 0; k < 3; k++) {
        ns_writer *w = open_or_fail(path, NULL, NULL);
        assert_int_equal(ns_writer_run_id(w), k + 1);
        for (int i = 0; i <= k * 10; i++) assert_true(wt_push_step(w, i));
        assert_int_equal(ns_writer_close(w, NS_RUN_FINISHED, NULL), 0);
    }
    /* two processes' worth of writers at once: each waits for the other's transactions */
    const int steps = scaled(20000);
    runner_arg a[2] = {{.path = path, .steps = steps}, {.path = path, .steps = steps}};
    pthread_t t[2];
    for (int i = 0; i < 2; i++) pthread_create(&t[i], NULL, runner, &a[i]);
    for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
    assert_int_equal(a[0].rc, 0);
    assert_int_equal(a[1].rc, 0);
    assert_true(a[0].run != a[1].run && a[0].run > 3 && a[1].run > 3);

    sqlite3 *db = wt_ro(path);
    assert_int_equal(wt_int(db, "SELECT count(*) FROM runs WHERE status='finished'"), 5);
    for (int k = 0; k < 3; k++) {
        assert_int_equal(wt_int(db, "SELECT count(*) FROM steps WHERE run_id=%d", k + 1),
                         k * 10 + 1);
        assert_int_equal(wt_int(db, "SELECT last_step FROM runs WHERE id=%d", k + 1), k * 10);
    }
    for (int i = 0; i < 2; i++) {
        assert_int_equal(
            wt_int(db, "SELECT count(*) FROM steps WHERE run_id=%lld", (long long)a[i].run), steps);
        assert_int_equal(
            wt_int(db, "SELECT count(*) FROM param_stats WHERE run_id=%lld", (long long)a[i].run),
            steps);
    }
    sqlite3_close(db);
}

static void test_flush(void **state) {
    (void)state;
    const char *path = wt_path("flush.db");
    ns_writer_opts o;
    ns_writer_opts_default(&o);
    o.commit_ms = 5000; /* only flush can make the rows visible within this test */
    o.heartbeat_ms = 5000;
    ns_writer *w = open_or_fail(path, &o, NULL);
    sqlite3 *db = wt_ro(path);
    double t0 = wt_mono();
    assert_int_equal(ns_writer_flush(w), 0); /* nothing pending: returns at once */
    for (int i = 0; i < 10; i++) assert_true(wt_push_step(w, i));
    assert_int_equal(ns_writer_flush(w), 0);
    assert_int_equal(wt_int(db, "SELECT count(*) FROM steps"), 10);
    assert_int_equal(wt_int(db, "SELECT last_step FROM runs"), 9);
    for (int i = 10; i < 15; i++) assert_true(wt_push_step(w, i));
    assert_int_equal(ns_writer_flush(w), 0);
    assert_int_equal(wt_int(db, "SELECT count(*) FROM steps"), 15);
    assert_true(wt_mono() - t0 < 2.0); /* the flushes did not wait for commit_ms */
    ns_writer_stats s;
    ns_writer_stats_get(w, &s);
    assert_int_equal(s.pushed, 15);
    assert_int_equal(s.committed, 15);
    assert_int_equal(s.commits, 2);
    /* without a flush, nothing is visible before commit_ms */
    assert_true(wt_push_step(w, 15));
    wt_sleep_ms(50);
    assert_int_equal(wt_int(db, "SELECT count(*) FROM steps"), 15);
    assert_int_equal(ns_writer_close(w, NS_RUN_FINISHED, NULL), 0);
    assert_int_equal(wt_int(db, "SELECT count(*) FROM steps"), 16);
    sqlite3_close(db);
}

/* ---------------------------------------------------------------- queue full */

typedef struct {
    ns_writer *w;
    int n;
    atomic_int done;
} pusher_arg;

static void *pusher(void *p) {
    pusher_arg *a = p;
    for (int i = 0; i < a->n; i++) {
        assert_true(wt_push_step(a->w, i));
        atomic_fetch_add(&a->done, 1);
    }
    return NULL;
}

static void test_queue_full_block(void **state) {
    (void)state;
    const char *path = wt_path("block.db");
    ns_writer_opts o;
    ns_writer_opts_default(&o);
    o.queue_rows = 16;
    ns_writer *w = open_or_fail(path, &o, NULL);
    sqlite3 *lock = hold_write_lock(path);
    pusher_arg a = {.w = w, .n = 100};
    atomic_init(&a.done, 0);
    pthread_t t;
    pthread_create(&t, NULL, pusher, &a);
    wt_sleep_ms(300);
    assert_int_equal(atomic_load(&a.done), 16); /* waits for room, nothing dropped */
    release_write_lock(lock);
    pthread_join(t, NULL);
    assert_int_equal(atomic_load(&a.done), 100);
    assert_int_equal(ns_writer_flush(w), 0);
    ns_writer_stats s;
    ns_writer_stats_get(w, &s);
    assert_int_equal(s.dropped, 0);
    assert_int_equal(s.committed, 100);
    assert_int_equal(ns_writer_close(w, NS_RUN_FINISHED, NULL), 0);
    sqlite3 *db = wt_ro(path);
    assert_int_equal(wt_int(db, "SELECT count(*) FROM steps"), 100);
    assert_int_equal(wt_int(db, "SELECT dropped FROM runs"), 0);
    sqlite3_close(db);
}

static void test_queue_full_drop(void **state) {
    (void)state;
    const char *path = wt_path("drop.db");
    ns_writer_opts o;
    ns_writer_opts_default(&o);
    o.queue_rows = 16;
    o.policy = NS_QUEUE_DROP;
    ns_writer *w = open_or_fail(path, &o, NULL);
    sqlite3 *lock = hold_write_lock(path);
    int accepted = 0;
    double t0 = wt_mono();
    for (int i = 0; i < 100; i++) accepted += wt_push_step(w, i);
    assert_true(wt_mono() - t0 < 1.0); /* never waited */
    assert_int_equal(accepted, 16);
    release_write_lock(lock);
    assert_int_equal(ns_writer_flush(w), 0);
    ns_writer_stats s;
    ns_writer_stats_get(w, &s);
    assert_int_equal(s.dropped, 84);
    assert_int_equal(s.pushed, 16);
    sqlite3 *db = wt_ro(path);
    assert_int_equal(wt_int(db, "SELECT dropped FROM runs"), 84); /* written by the commit */
    assert_int_equal(wt_int(db, "SELECT count(*) FROM steps"), 16);
    assert_int_equal(wt_int(db, "SELECT max(step) FROM steps"), 15);
    /* room again: rows are accepted */
    assert_true(wt_push_step(w, 100));
    assert_int_equal(ns_writer_close(w, NS_RUN_FINISHED, NULL), 0);
    assert_int_equal(wt_int(db, "SELECT dropped FROM runs"), 84);
    assert_int_equal(wt_int(db, "SELECT count(*) FROM steps"), 17);
    sqlite3_close(db);
}

/* A queue whose oldest row waited max_lag_ms counts as full, however much room it has: a slow
 * writer cannot fall behind the program without bound. */
static void test_queue_full_by_age(void **state) {
    (void)state;
    const char *path = wt_path("age.db");
    ns_writer_opts o;
    ns_writer_opts_default(&o);
    o.policy = NS_QUEUE_DROP;
    o.max_lag_ms = 200;
    ns_writer *w = open_or_fail(path, &o, NULL);
    sqlite3 *lock = hold_write_lock(path);
    for (int i = 0; i < 5; i++) assert_true(wt_push_step(w, i));
    wt_sleep_ms(350);
    assert_false(wt_push_step(w, 5)); /* 5 rows in a 65536-row queue, but 350 ms old */
    release_write_lock(lock);
    assert_int_equal(ns_writer_flush(w), 0);
    assert_true(wt_push_step(w, 6));
    ns_writer_stats s;
    ns_writer_stats_get(w, &s);
    assert_int_equal(s.dropped, 1);
    assert_int_equal(ns_writer_close(w, NS_RUN_FINISHED, NULL), 0);
    sqlite3 *db = wt_ro(path);
    assert_int_equal(wt_int(db, "SELECT count(*) FROM steps"), 6);
    assert_int_equal(wt_int(db, "SELECT dropped FROM runs"), 1);
    sqlite3_close(db);
}

/* ---------------------------------------------------------------- heartbeat, close */

static void test_heartbeat(void **state) {
    (void)state;
    const char *path = wt_path("heartbeat.db");
    ns_writer_opts o;
    ns_writer_opts_default(&o);
    o.heartbeat_ms = 100;
    ns_writer *w = open_or_fail(path, &o, NULL);
    sqlite3 *db = wt_ro(path);
    double h0 = wt_dbl(db, "SELECT heartbeat_at FROM runs");
    assert_true(isnan(wt_dbl(db, "SELECT last_step FROM runs")));
    wt_sleep_ms(350); /* idle: the heartbeat still moves */
    double h1 = wt_dbl(db, "SELECT heartbeat_at FROM runs");
    assert_true(h1 > h0 + 0.15);
    /* rows are committed within commit_ms without a flush, the heartbeat with them */
    double t0 = wt_mono();
    for (int i = 0; i < 5; i++) assert_true(wt_push_step(w, i));
    while (wt_int(db, "SELECT count(*) FROM steps") < 5 && wt_mono() - t0 < 5.0) wt_sleep_ms(5);
    double waited = wt_mono() - t0;
    assert_int_equal(wt_int(db, "SELECT count(*) FROM steps"), 5);
    assert_true(waited < 0.1 + 0.4); /* commit_ms plus slack for a loaded machine */
    assert_int_equal(wt_int(db, "SELECT last_step FROM runs"), 4);
    double h2 = wt_dbl(db, "SELECT heartbeat_at FROM runs");
    assert_true(h2 >= h1 && h2 >= wt_dbl(db, "SELECT max(wall_time) FROM steps"));
    assert_int_equal(ns_writer_close(w, NS_RUN_FINISHED, NULL), 0);
    sqlite3_close(db);
}

static void test_close_statuses(void **state) {
    (void)state;
    const char *path = wt_path("status.db");
    static const struct {
        ns_run_status st;
        const char *detail, *name;
    } cases[] = {
        {NS_RUN_FINISHED, NULL, "finished"},
        {NS_RUN_INTERRUPTED, "SIGINT", "interrupted"},
        {NS_RUN_FAILED, "ns_linear: input 64x785 does not match weight 256x784", "failed"}};
    for (int i = 0; i < 3; i++) {
        ns_writer *w = open_or_fail(path, NULL, NULL);
        assert_true(wt_push_step(w, 0));
        assert_int_equal(ns_writer_close(w, cases[i].st, cases[i].detail), 0);
    }
    assert_int_equal(ns_writer_close(NULL, NS_RUN_FINISHED, NULL), 0);
    sqlite3 *db = wt_ro(path);
    for (int i = 0; i < 3; i++) {
        assert_string_equal(wt_text(db, "SELECT status FROM runs WHERE id=%d", i + 1),
                            cases[i].name);
        assert_string_equal(wt_text(db, "SELECT status_detail FROM runs WHERE id=%d", i + 1),
                            cases[i].detail ? cases[i].detail : "<NULL>");
        assert_int_equal(
            wt_int(db,
                   "SELECT ended_at >= started_at AND ended_at = heartbeat_at FROM runs "
                   "WHERE id=%d",
                   i + 1),
            1);
        assert_int_equal(wt_int(db, "SELECT count(*) FROM steps WHERE run_id=%d", i + 1), 1);
    }
    sqlite3_close(db);
}

/* The path the engine glue will take: SIGTERM sets a flag, the program exits, an atexit handler
 * closes the run as 'interrupted'. Runs in a child process. */
static ns_writer *child_writer;
static volatile sig_atomic_t child_stop;
static void child_on_term(int sig) {
    (void)sig;
    child_stop = 1;
}
static void child_atexit(void) {
    ns_writer_close(child_writer, NS_RUN_INTERRUPTED, "SIGTERM");
}

static void test_close_interrupted_from_atexit(void **state) {
    (void)state;
    const char *path = wt_path("atexit.db");
    int ready[2], count[2];
    assert_int_equal(pipe(ready), 0);
    assert_int_equal(pipe(count), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct sigaction sa = {0};
        sa.sa_handler = child_on_term;
        sigaction(SIGTERM, &sa, NULL);
        char err[512];
        child_writer = ns_writer_open(path, NULL, NULL, err, sizeof err);
        if (!child_writer) _exit(3);
        atexit(child_atexit);
        int n = 0;
        if (write(ready[1], "r", 1) != 1) _exit(4);
        while (!child_stop) {
            wt_push_step(child_writer, n++);
            wt_sleep_ms(1);
        }
        if (write(count[1], &n, sizeof n) != sizeof n) _exit(5);
        exit(0);
    }
    char c;
    assert_int_equal(read(ready[0], &c, 1), 1);
    wt_sleep_ms(250);
    assert_int_equal(kill(pid, SIGTERM), 0);
    int n = -1, status = 0;
    assert_int_equal(read(count[0], &n, sizeof n), sizeof n);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    for (int i = 0; i < 2; i++) close(ready[i]), close(count[i]);
    assert_true(n > 10);
    sqlite3 *db = wt_ro(path);
    assert_string_equal(wt_text(db, "SELECT status FROM runs"), "interrupted");
    assert_string_equal(wt_text(db, "SELECT status_detail FROM runs"), "SIGTERM");
    assert_int_equal(wt_int(db, "SELECT count(*) FROM steps"), n); /* nothing lost */
    assert_int_equal(wt_int(db, "SELECT last_step FROM runs"), n - 1);
    sqlite3_close(db);
}

/* A forked child (a data-loader worker, a subprocess) inherits the writer but not its thread:
 * its pushes return at once and its close only frees memory; the parent records on. */
static void test_fork_child_does_not_block(void **state) {
    (void)state;
    const char *path = wt_path("fork.db");
    ns_writer_opts o;
    ns_writer_opts_default(&o);
    o.queue_rows = 16; /* a child that queued rows would fill this and block */
    ns_writer *w = open_or_fail(path, &o, NULL);
    assert_true(wt_push_step(w, 0));
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int refused = 0;
        for (int i = 1000; i < 1100; i++) refused += !wt_push_step(w, i);
        int rc = ns_writer_flush(w);
        int closed = ns_writer_close(w, NS_RUN_FINISHED, NULL);
        _exit(refused == 100 && rc == -1 && closed == -1 ? 0 : 1);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    for (int i = 1; i < 50; i++) assert_true(wt_push_step(w, i));
    assert_int_equal(ns_writer_close(w, NS_RUN_FINISHED, NULL), 0);
    sqlite3 *db = wt_ro(path);
    assert_int_equal(wt_int(db, "SELECT count(*) FROM steps"), 50);
    assert_int_equal(wt_int(db, "SELECT max(step) FROM steps"), 49);
    assert_string_equal(wt_text(db, "SELECT status FROM runs"), "finished");
    sqlite3_close(db);
}

/* ---------------------------------------------------------------- failures */

static atomic_int errors_seen;
static char error_text[1024];
static void on_error(const char *msg, void *ctx) {
    (void)ctx;
    atomic_fetch_add(&errors_seen, 1);
    snprintf(error_text, sizeof error_text, "%s", msg);
}

static void test_disk_full(void **state) {
    (void)state;
    const char *p = wt_path("full.db");
    char path[600];
    snprintf(path, sizeof path, "%s", p);
    ns_writer *w = open_or_fail(path, NULL, NULL);
    for (int i = 0; i < 500; i++) assert_true(wt_push_step(w, i));
    assert_int_equal(ns_writer_close(w, NS_RUN_FINISHED, NULL), 0);
    sqlite3 *db = wt_ro(path);
    int64_t pages = wt_int(db, "PRAGMA page_count");
    sqlite3_close(db);

    ns_writer_opts o;
    ns_writer_opts_default(&o);
    o.max_pages = pages + 8; /* the file may grow by 8 pages, then SQLite reports it full */
    o.queue_rows = 64;       /* block policy with a small queue: must not block after the stop */
    o.on_error = on_error;
    atomic_init(&errors_seen, 0);
    w = open_or_fail(path, &o, NULL);
    int64_t run = ns_writer_run_id(w);
    char detail[300];
    memset(detail, 'd', sizeof detail - 1);
    detail[sizeof detail - 1] = '\0';
    int i = 0;
    for (; i < 200000 && !ns_writer_error(w); i++) {
        ns_row r;
        ns_row_init(&r, NS_ROW_EVENT);
        r.event.step = i, r.event.kind = "note", r.event.detail = detail;
        ns_writer_push(w, &r);
        wt_push_step(w, i);
        if (i % 50 == 49) ns_writer_flush(w);
    }
    char msg[1024];
    assert_non_null(ns_writer_error(w));
    snprintf(msg, sizeof msg, "%s", ns_writer_error(w));
    assert_non_null(strstr(msg, path));
    assert_non_null(strstr(msg, "database or disk is full"));
    assert_non_null(strstr(msg, "training goes on"));
    /* the producer goes on without waiting; rows are refused and counted */
    double t0 = wt_mono();
    for (int k = 0; k < 100000; k++) assert_false(wt_push_step(w, i + k));
    assert_true(wt_mono() - t0 < 1.0);
    assert_int_equal(ns_writer_flush(w), -1);
    ns_writer_stats s;
    ns_writer_stats_get(w, &s);
    assert_true(s.lost >= 100000);
    assert_true(s.commits > 0);
    assert_int_equal(ns_writer_close(w, NS_RUN_FINISHED, NULL), -1);
    assert_int_equal(atomic_load(&errors_seen), 1); /* one message */
    assert_string_equal(error_text, msg);

    db = wt_ro(path);
    assert_string_equal(wt_text(db, "PRAGMA integrity_check"), "ok");
    assert_int_equal(wt_int(db, "SELECT count(*) FROM steps WHERE run_id=1"), 500);
    int64_t n = wt_int(db, "SELECT count(*) FROM steps WHERE run_id=%lld", (long long)run);
    assert_true(n > 0);
    assert_int_equal(wt_int(db, "SELECT max(step) FROM steps WHERE run_id=%lld", (long long)run),
                     n - 1); /* a prefix: every committed step, in order */
    assert_int_equal(wt_int(db, "SELECT count(*) FROM events WHERE run_id=%lld AND step < %lld",
                            (long long)run, (long long)n),
                     n);
    sqlite3_close(db);
}

static void expect_open_fails(const char *path, const char *why) {
    char err[1024] = "";
    ns_writer *w = ns_writer_open(path, NULL, NULL, err, sizeof err);
    if (w) fail_msg("opened %s", path);
    if (!strstr(err, path) || !strstr(err, why) || strncmp(err, "nnscope: cannot record to ", 26))
        fail_msg("message for %s: '%s' (expected '%s')", path, err, why);
}

static void test_unwritable_path(void **state) {
    (void)state;
    /* a directory nobody may create files in (root included) */
    expect_open_fails("/sys/nnscope-writer-test.db", "unable to open database file");
    /* a missing directory, and a regular file used as a directory */
    char path[700];
    snprintf(path, sizeof path, "%s/no/such/dir/run.db", wt_dir);
    expect_open_fails(path, "unable to open database file");
    snprintf(path, sizeof path, "%s", wt_path("plain"));
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("not a directory\n", f);
    fclose(f);
    strcat(path, "/run.db");
    expect_open_fails(path, "unable to open database file");
    /* a file that is not a database: nothing is written into it */
    snprintf(path, sizeof path, "%s", wt_path("notes.txt"));
    f = fopen(path, "w");
    assert_non_null(f);
    for (int i = 0; i < 200; i++) fputs("these are my notes, not a database\n", f);
    fclose(f);
    expect_open_fails(path, "file is not a database");
    f = fopen(path, "r");
    char line[100];
    assert_non_null(fgets(line, sizeof line, f));
    fclose(f);
    assert_string_equal(line, "these are my notes, not a database\n");
    /* no buffer for the message is fine */
    assert_null(ns_writer_open("/sys/nnscope-writer-test.db", NULL, NULL, NULL, 0));
}

/* ---------------------------------------------------------------- concurrent readers */

typedef struct {
    const char *path;
    int64_t target; /* stop once this many steps are visible */
    atomic_bool stop, done;
    long iterations, errors;
    int64_t last_count;
    char first_error[256];
} reader_arg;

/* The TUI's loop: read-only connection, short read transactions, data_version polling. */
static void read_loop(reader_arg *a, int (*stopped)(reader_arg *)) {
    sqlite3 *db = NULL;
    if (sqlite3_open_v2(a->path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        snprintf(a->first_error, sizeof a->first_error, "open: %s", sqlite3_errmsg(db));
        a->errors++;
        return;
    }
    sqlite3_busy_timeout(db, 1000);
    static const char *sql[] = {
        "SELECT count(*), max(step) FROM steps",
        "SELECT count(*), sum(grad_norm) FROM param_stats WHERE run_id = (SELECT max(id) FROM runs)"
        " AND step > (SELECT coalesce(max(last_step), 0) - 50 FROM runs)",
        "SELECT step, loss FROM loss_curve WHERE run_id = (SELECT max(id) FROM runs) ORDER BY step"
        " DESC LIMIT 10",
        "SELECT max(heartbeat_at), max(last_step) FROM runs",
        "PRAGMA data_version",
    };
    while (a->last_count < a->target && !stopped(a)) {
        for (size_t i = 0; i < sizeof sql / sizeof *sql; i++) {
            sqlite3_stmt *st = NULL;
            int rc = sqlite3_prepare_v2(db, sql[i], -1, &st, NULL);
            while (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
                if (i == 0) {
                    int64_t c = sqlite3_column_int64(st, 0);
                    if (c < a->last_count) {
                        rc = SQLITE_INTERNAL;
                        snprintf(a->first_error, sizeof a->first_error, "count went back");
                    }
                    a->last_count = c;
                }
            }
            if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
                if (!a->errors++ && !a->first_error[0])
                    snprintf(a->first_error, sizeof a->first_error, "%s: %d %s", sql[i], rc,
                             sqlite3_errmsg(db));
            }
            sqlite3_finalize(st);
        }
        a->iterations++;
        wt_sleep_ms(1); /* a busy TUI, not a spinning one: leave the cores to the writer */
    }
    sqlite3_close(db);
    atomic_store(&a->done, true);
}

static int thread_stopped(reader_arg *a) {
    return atomic_load(&a->stop);
}
static void *reader_thread(void *p) {
    read_loop(p, thread_stopped);
    return NULL;
}
static int stop_fd = -1;
static int process_stopped(reader_arg *a) {
    (void)a;
    char c;
    return read(stop_fd, &c, 1) != -1 || errno != EAGAIN;
}

static void test_concurrent_readers(void **state) {
    (void)state;
    const char *p = wt_path("live.db");
    char path[600];
    snprintf(path, sizeof path, "%s", p);
    /* the file exists with its schema before the readers start */
    ns_writer *w0 = open_or_fail(path, NULL, NULL);
    assert_int_equal(ns_writer_close(w0, NS_RUN_FINISHED, NULL), 0);

    /* a reader process, forked while this process runs no other thread */
    int go[2], result[2];
    assert_int_equal(pipe(go), 0);
    assert_int_equal(pipe(result), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(go[1]);
        fcntl(go[0], F_SETFL, O_NONBLOCK);
        stop_fd = go[0];
        reader_arg a = {.path = path, .target = scaled(30000)};
        read_loop(&a, process_stopped);
        if (write(result[1], &a, sizeof a) != sizeof a) _exit(2);
        _exit(0);
    }
    close(go[0]);
    reader_arg ta = {.path = path, .target = scaled(30000)};
    atomic_init(&ta.stop, false);
    atomic_init(&ta.done, false);
    pthread_t t;
    pthread_create(&t, NULL, reader_thread, &ta);

    ns_writer_opts o;
    ns_writer_opts_default(&o);
    o.on_error = on_error;
    atomic_init(&errors_seen, 0);
    ns_writer *w = open_or_fail(path, &o, NULL);
    int64_t run = ns_writer_run_id(w);
    const int steps = scaled(30000);
    for (int i = 0; i < steps; i++) {
        for (int k = 0; k < 5; k++) assert_true(wt_push_param_stat(w, i, k));
        assert_true(wt_push_step(w, i));
        if (i % (steps / 10) == steps / 10 - 1) wt_sleep_ms(20); /* readers see many commits */
    }
    assert_int_equal(ns_writer_flush(w), 0);
    assert_null(ns_writer_error(w));
    ns_writer_stats s;
    ns_writer_stats_get(w, &s);
    assert_int_equal(s.rejected, 0);
    assert_int_equal(ns_writer_close(w, NS_RUN_FINISHED, NULL), 0);
    assert_int_equal(atomic_load(&errors_seen), 0);

    /* the readers stop by themselves once they see every step; a stuck one is stopped after
     * 60 s and fails on its count */
    int status = 0;
    pid_t got = 0;
    for (double t0 = wt_mono(); wt_mono() - t0 < 60.0; wt_sleep_ms(10)) {
        if (!got) got = waitpid(pid, &status, WNOHANG);
        if (got && atomic_load(&ta.done)) break;
    }
    atomic_store(&ta.stop, true);
    pthread_join(t, NULL);
    close(go[1]); /* EOF stops the reader process */
    reader_arg pa;
    assert_int_equal(read(result[0], &pa, sizeof pa), sizeof pa);
    if (!got) got = waitpid(pid, &status, 0);
    assert_int_equal(got, pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    close(result[0]);
    close(result[1]);

    reader_arg *all[2] = {&ta, &pa};
    for (int i = 0; i < 2; i++) {
        if (all[i]->errors)
            fail_msg("reader %d: %ld errors, first: %s", i, all[i]->errors, all[i]->first_error);
        assert_true(all[i]->iterations > 5);
        assert_int_equal(all[i]->last_count, steps);
    }
    sqlite3 *db = wt_ro(path);
    assert_int_equal(wt_int(db, "SELECT count(*) FROM steps WHERE run_id=%lld", (long long)run),
                     steps);
    assert_int_equal(
        wt_int(db, "SELECT count(*) FROM param_stats WHERE run_id=%lld", (long long)run),
        5 * steps);
    sqlite3_close(db);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_schema_created),
        cmocka_unit_test(test_schema_is_the_file),
        cmocka_unit_test(test_old_file_gets_new_column),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_rejected_row_counted),
        cmocka_unit_test(test_several_runs_one_file),
        cmocka_unit_test(test_flush),
        cmocka_unit_test(test_queue_full_block),
        cmocka_unit_test(test_queue_full_drop),
        cmocka_unit_test(test_queue_full_by_age),
        cmocka_unit_test(test_heartbeat),
        cmocka_unit_test(test_close_statuses),
        cmocka_unit_test(test_close_interrupted_from_atexit),
        cmocka_unit_test(test_fork_child_does_not_block),
        cmocka_unit_test(test_disk_full),
        cmocka_unit_test(test_unwritable_path),
        cmocka_unit_test(test_concurrent_readers),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
