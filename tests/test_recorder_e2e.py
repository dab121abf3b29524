#!/usr/bin/env python3
"""The recorder glue end to end on the real sample: samples/fashion_mlp recorded with NNSCOPE_DB
(no code change), read back with Python's sqlite3.

  1. A short run (40 training steps, then the sample's evaluation, save, strict reload into a
     fresh model and its evaluation), read live by a read-only connection polling with
     busy_timeout 0 (any lock conflict would raise at once): no SQLITE_BUSY, and the finished
     database answers what the issue asks (which parameters changed, by how much, at each step;
     which modules ran in which mode) with the sample's own numbers (mean training loss as
     printed, batch sizes, phases, eval() used correctly, the fresh model not recorded).
  2. SIGKILL at three moments: integrity_check ok, status 'running', the last committed step
     ended at most one second before the kill, heartbeat too.
  3. SIGINT: the process dies by SIGINT, the run is 'interrupted', steps contiguous.

usage: test_recorder_e2e.py path/to/fashion_mlp
Exit 77 (skipped) when Fashion-MNIST is not installed.
"""
import os
import re
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time

FAILS = []


def check(cond, what):
    if not cond:
        FAILS.append(what)
        print("FAIL:", what)


def ro(path):
    return sqlite3.connect("file:%s?mode=ro" % path, uri=True, timeout=0.0, isolation_level=None)


def one(db, sql, *args):
    row = db.execute(sql, args).fetchone()
    return row[0] if row else None


def start(exe, db, tmp, *args):
    env = dict(os.environ, NNSCOPE_DB=db, NNSCOPE_CUPTI="0")
    out = open(os.path.join(tmp, "out-%s.txt" % os.path.basename(db)), "w+")
    p = subprocess.Popen([exe, "--save", os.path.join(tmp, "m.safetensors")] + list(args),
                         env=env, stdout=out, stderr=subprocess.STDOUT)
    return p, out


def wait_steps(db, n, limit=60.0):
    """Polls the database until it holds n steps; returns the wall time when it did."""
    t0 = time.time()
    while time.time() - t0 < limit:
        if os.path.exists(db):
            try:
                c = ro(db)
                k = one(c, "SELECT COUNT(*) FROM steps") or 0
                c.close()
                if k >= n:
                    return time.time()
            except sqlite3.OperationalError:
                pass  # not created yet
        time.sleep(0.02)
    raise RuntimeError("no %d steps in %s after %.0f s" % (n, db, limit))


def full_run(exe, tmp):
    db = os.path.join(tmp, "full.db")
    p, out = start(exe, db, tmp, "--limit-steps", "40", "--epochs", "1")
    wait_steps(db, 1)
    reader = ro(db)
    polls = busy = changes = 0
    last_dv = None
    held = False
    t0 = time.time()
    while p.poll() is None and time.time() - t0 < 120:
        try:
            dv = one(reader, "PRAGMA data_version")
            one(reader, "SELECT MAX(step) FROM steps")
            reader.execute("SELECT * FROM module_activity").fetchall()
            one(reader, "SELECT SUM(update_norm) FROM param_stats")
            if last_dv is not None and dv != last_dv:
                changes += 1
            last_dv = dv
            if not held and time.time() - t0 > 0.3:  # one read transaction held for 0.5 s
                held = True
                reader.execute("BEGIN")
                a = one(reader, "SELECT COUNT(*) FROM steps")
                time.sleep(0.5)
                check(one(reader, "SELECT COUNT(*) FROM steps") == a, "snapshot moved in a read txn")
                reader.execute("COMMIT")
        except sqlite3.OperationalError as e:
            if "locked" in str(e) or "busy" in str(e):
                busy += 1
            else:
                raise
        polls += 1
        time.sleep(0.005)
    reader.close()
    rc = p.wait()
    out.seek(0)
    text = out.read()
    out.close()
    print("reader: %d polls, %d data_version changes, %d busy" % (polls, changes, busy))
    check(rc == 0, "fashion_mlp exit status %d:\n%s" % (rc, text))
    check(busy == 0, "the reader got SQLITE_BUSY %d times" % busy)
    check(polls > 10 and changes >= 1, "reader saw too little (%d polls, %d changes)" % (polls, changes))

    d = ro(db)
    check(one(d, "SELECT COUNT(*) FROM runs") == 1, "one run")
    check(one(d, "SELECT status FROM runs") == "finished", "status finished")
    check(one(d, "SELECT pid FROM runs") == p.pid, "pid")
    check("fashion_mlp" in (one(d, "SELECT command FROM runs") or ""), "command")
    check(one(d, "SELECT record_error FROM runs") is None, "no record_error")
    mods = d.execute("SELECT path, type, registered FROM modules ORDER BY path").fetchall()
    check(mods == [("", "Sequential", 1), ("0", "Linear", 1), ("1", "BatchNorm1d", 1),
                   ("2", "ReLU", 1), ("3", "Dropout", 1), ("4", "Linear", 1)],
          "modules (the fresh reload model must not appear): %r" % mods)
    params = d.execute("SELECT name, kind, shape, in_optimizer, lr FROM params ORDER BY name").fetchall()
    check(params == [("0.bias", "param", "256", 1, 1e-3), ("0.weight", "param", "256x784", 1, 1e-3),
                     ("1.bias", "param", "256", 1, 1e-3),
                     ("1.num_batches_tracked", "buffer", "scalar", 0, None),
                     ("1.running_mean", "buffer", "256", 0, None),
                     ("1.running_var", "buffer", "256", 0, None),
                     ("1.weight", "param", "256", 1, 1e-3), ("4.bias", "param", "10", 1, 1e-3),
                     ("4.weight", "param", "10x256", 1, 1e-3)],
          "params: %r" % params)
    # steps: 40 train (epoch 0, batch 128), then 3 x 10 evaluation batches of 1000
    phases = [r[0] for r in d.execute("SELECT phase FROM steps ORDER BY step")]
    check(phases == ["train"] * 40 + ["eval"] * 30, "phases: %r" % phases)
    check(one(d, "SELECT COUNT(*) FROM steps WHERE phase='train' AND samples=128 AND epoch=0 "
                 "AND lr=0.001 AND loss > 0") == 40, "train step rows")
    check(one(d, "SELECT COUNT(*) FROM steps WHERE phase='eval' AND samples=1000 AND loss > 0") == 30,
          "eval step rows")
    m = re.search(r"epoch 1/1\s+loss (\d+\.\d+)", text)
    check(m is not None, "epoch line in the output")
    if m:
        avg = one(d, "SELECT AVG(loss) FROM steps WHERE phase='train'")
        check("%.4f" % avg == m.group(1), "mean train loss %.6f vs printed %s" % (avg, m.group(1)))
    # which parameters changed, by how much, at each step
    check(one(d, "SELECT COUNT(*) FROM param_changes WHERE step < 40 AND grad_norm > 0 AND "
                 "update_norm > 0 AND weight_norm > 0 AND device='cpu'") == 40 * 6,
          "every parameter moved on every train step")
    check(one(d, "SELECT COUNT(*) FROM param_stats s JOIN params p ON p.id=s.param_id "
                 "WHERE p.kind='buffer' AND s.step < 40 AND s.update_norm > 0") == 40 * 3,
          "BatchNorm buffers moved on every train step")
    check(one(d, "SELECT COUNT(*) FROM param_stats WHERE step >= 40") == 30 * 3,
          "eval steps: buffer rows only")
    check(one(d, "SELECT MAX(update_norm) FROM param_stats WHERE step >= 40") == 0,
          "eval() used: buffers untouched on eval steps")
    # which modules ran in which mode
    act = d.execute("SELECT path, phase, training, grad_enabled, calls FROM module_activity "
                    "ORDER BY path, phase").fetchall()
    exp = []
    for path in ["", "0", "1", "2", "3", "4"]:
        exp += [(path, "eval", 0, 0, 20), (path, "train", 1, 1, 40)]
    check(act == exp, "module_activity: %r" % act)
    check(one(d, "SELECT COUNT(*) FROM module_calls WHERE phase='train' AND bwd_us IS NOT NULL "
                 "AND grad_out_norm > 0") == 240, "train calls have backward times and grad norms")
    check(one(d, "SELECT COUNT(*) FROM module_calls WHERE phase='eval' AND (bwd_us IS NOT NULL OR "
                 "grad_out_norm IS NOT NULL)") == 0, "eval calls have no backward")
    check(one(d, "SELECT COUNT(*) FROM module_calls a JOIN module_calls b ON a.step=b.step "
                 "AND a.seq=0 AND b.seq=5 WHERE a.phase='train' AND a.grad_out_norm=b.grad_out_norm "
                 "AND a.out_mean=b.out_mean") == 40,
          "the Sequential and its last Linear share the logits' numbers")
    check(one(d, "SELECT COUNT(*) FROM module_calls WHERE step >= 60") == 0,
          "the fresh model's evaluation is not recorded")
    ev = d.execute("SELECT kind, json_extract(detail,'$.strict'), value FROM events "
                   "WHERE kind <> 'note'").fetchall()
    check(ev == [("state_dict_load", 1, 0.0)], "events: %r" % ev)
    d.close()


def kill_run(exe, tmp, delay, sig):
    db = os.path.join(tmp, "kill-%s-%.1f.db" % (sig, delay))
    p, out = start(exe, db, tmp, "--epochs", "5")
    wait_steps(db, 1)
    time.sleep(delay)
    t_kill = time.time()
    p.send_signal(sig)
    rc = p.wait()
    out.close()
    check(rc == -sig, "%s after %.1f s: exit %d" % (signal.Signals(sig).name, delay, rc))
    d = ro(db)
    check(one(d, "PRAGMA integrity_check") == "ok", "integrity_check")
    n = one(d, "SELECT COUNT(*) FROM steps")
    check(n > 0 and one(d, "SELECT MAX(step) FROM steps") == n - 1, "steps contiguous (%d)" % n)
    check(one(d, "SELECT last_step FROM runs") == n - 1, "runs.last_step")
    # a committed step row comes with its details: train steps 6 calls and 9 parameter rows,
    # evaluation batches 6 calls (0 once the fresh model runs) and the 3 buffer rows
    whole = one(d, "SELECT COUNT(*) FROM (SELECT phase, (SELECT COUNT(*) FROM module_calls c "
                   "WHERE c.step=s.step) AS calls, (SELECT COUNT(*) FROM param_stats p "
                   "WHERE p.step=s.step) AS stats FROM steps s) WHERE NOT ((phase='train' AND "
                   "calls=6 AND stats=9) OR (phase='eval' AND calls IN (0, 6) AND stats=3))")
    check(whole == 0, "%d committed steps lack their rows" % whole)
    last = one(d, "SELECT MAX(wall_time) FROM steps")
    status = one(d, "SELECT status FROM runs")
    if sig == signal.SIGKILL:
        started = one(d, "SELECT started_at FROM runs")
        hb = one(d, "SELECT heartbeat_at FROM runs")
        print("SIGKILL after %.1f s: %d steps, last step %.3f s before the kill, heartbeat %.3f s"
              % (delay, n, t_kill - last, t_kill - hb))
        check(status == "running", "status %s after SIGKILL" % status)
        check(one(d, "SELECT ended_at FROM runs") is None, "ended_at NULL after SIGKILL")
        if t_kill - started > 1.2:
            check(last >= t_kill - 1.0, "last step %.3f s before the kill" % (t_kill - last))
            check(hb >= t_kill - 1.0, "heartbeat %.3f s before the kill" % (t_kill - hb))
    else:
        print("%s after %.1f s: %d steps, status %s" % (signal.Signals(sig).name, delay, n, status))
        check(status == "interrupted", "status %s" % status)
        check(one(d, "SELECT status_detail FROM runs") == signal.Signals(sig).name, "status_detail")
        check(one(d, "SELECT ended_at FROM runs") is not None, "ended_at")
        check(last >= t_kill - 0.5, "steps up to the signal (last %.3f s before)" % (t_kill - last))
    d.close()


def main():
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    exe = sys.argv[1]
    data = os.environ.get("NNSCOPE_DATA", "/usr/share/datasets/fashion-mnist")
    if not os.path.exists(os.path.join(data, "train-images-idx3-ubyte.gz")):
        print("skip: Fashion-MNIST not found in %s" % data)
        return 77
    with tempfile.TemporaryDirectory(prefix="nsrec-e2e-") as tmp:
        full_run(exe, tmp)
        for delay in (0.1, 1.5, 3.0):
            kill_run(exe, tmp, delay, signal.SIGKILL)
        kill_run(exe, tmp, 1.0, signal.SIGINT)
    if FAILS:
        print("%d check(s) failed" % len(FAILS))
        return 1
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
