#!/usr/bin/env python3
"""Drives the built `nnscope` command: exit codes, the four check formats, read-only query,
runs listing, rules. usage: test_cli.py PATH/TO/nnscope   (NNSCOPE_SOURCE_ROOT must be set)

Recordings are written here with Python's sqlite3 from hooks/schema.sql: a small healthy run
and variants with one planted failure, the rows following docs/RECORDING-SEMANTICS.md.
"""
import csv
import io
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET

NNSCOPE = os.path.abspath(sys.argv[1])
SCHEMA = open(os.path.join(os.environ['NNSCOPE_SOURCE_ROOT'], 'hooks', 'schema.sql')).read()
RULES = ['unregistered-module', 'module-created-in-forward', 'uninitialised-module',
         'frozen-parameter', 'zero-trainable-parameters', 'missing-eval-mode',
         'train-mode-not-restored', 'device-mixing', 'vanishing-gradient', 'exploding-gradient',
         'non-finite', 'dead-relu', 'update-ratio', 'loss-not-decreasing', 'state-dict-mismatch']
FAILED = []


def check(cond, what):
    if not cond:
        FAILED.append(what)
        print('FAIL:', what, file=sys.stderr)


def run(*args, env=None):
    e = dict(os.environ)
    e.update(env or {})
    p = subprocess.run([NNSCOPE, *args], capture_output=True, text=True, env=e, timeout=60)
    return p.returncode, p.stdout, p.stderr


def add_run(db, run_id, status='finished', heartbeat=None, train=60, bug=None):
    """Linear(4,3) + ReLU + Linear(3,2) trained for `train` steps, then one eval step; bug
    'frozen': the optimizer does not hold fc's parameters; 'dead': the ReLU is dead."""
    t0 = 1.7e9
    db.execute("INSERT INTO runs (id, started_at, ended_at, heartbeat_at, status, command) "
               "VALUES (?, ?, ?, ?, ?, ?)",
               (run_id, t0, t0 + 95 if status != 'running' else None,
                heartbeat if heartbeat is not None else t0 + 95, status,
                './tiny --bug %s' % bug))
    db.executemany("INSERT INTO modules (run_id, id, parent_id, path, type, registered, "
                   "n_params) VALUES (?, ?, ?, ?, ?, 1, ?)",
                   [(run_id, 1, None, '', 'Tiny', 0), (run_id, 2, 1, 'fc', 'Linear', 15),
                    (run_id, 3, 1, 'act', 'ReLU', 0), (run_id, 4, 1, 'out', 'Linear', 8)])
    in_opt = 0 if bug == 'frozen' else 1
    db.executemany("INSERT INTO params (run_id, id, module_id, name, shape, numel, "
                   "requires_grad, in_optimizer, lr) VALUES (?, ?, 2, ?, ?, ?, 1, ?, ?)",
                   [(run_id, 10, 'fc.weight', '3x4', 12, in_opt, 1e-3 if in_opt else None),
                    (run_id, 11, 'fc.bias', '3', 3, in_opt, 1e-3 if in_opt else None)])
    db.executemany("INSERT INTO params (run_id, id, module_id, name, shape, numel, "
                   "requires_grad, in_optimizer, lr) VALUES (?, ?, 4, ?, ?, ?, 1, 1, 1e-3)",
                   [(run_id, 12, 'out.weight', '2x3', 6), (run_id, 13, 'out.bias', '2', 2)])
    for s in range(train + 1):
        phase = 'train' if s < train else 'eval'
        db.execute("INSERT INTO steps (run_id, step, phase, epoch, loss, lr, samples, wall_time)"
                   " VALUES (?, ?, ?, 0, ?, 1e-3, 8, ?)",
                   (run_id, s, phase, 2.0 * 0.97 ** s + 0.1, t0 + s))
        if phase == 'train':
            for pid, w in ((10, 1.0), (11, 0.3), (12, 0.8), (13, 0.2)):
                upd = 0.0 if bug == 'frozen' and pid < 12 else 2e-3
                db.execute("INSERT INTO param_stats (run_id, step, param_id, grad_norm, "
                           "update_norm, weight_norm, ratio, device) "
                           "VALUES (?, ?, ?, 0.2, ?, ?, ?, 'cpu')",
                           (run_id, s, pid, upd, w, upd / w))
        train_flag = 1 if phase == 'train' else 0
        dead = 0.9 if bug == 'dead' else 0.0
        db.execute("INSERT INTO module_calls (run_id, step, module_id, seq, caller_id, phase, "
                   "training, grad_enabled, dead_frac, out_nonfinite) "
                   "VALUES (?, ?, 2, 0, 1, ?, ?, ?, 0, 0)", (run_id, s, phase, train_flag,
                                                            train_flag))
        db.execute("INSERT INTO module_calls (run_id, step, module_id, seq, caller_id, phase, "
                   "training, grad_enabled, dead_frac, out_nonfinite) "
                   "VALUES (?, ?, 3, 1, 1, ?, ?, ?, ?, 0)", (run_id, s, phase, train_flag,
                                                            train_flag, dead))
        db.execute("INSERT INTO module_calls (run_id, step, module_id, seq, caller_id, phase, "
                   "training, grad_enabled, dead_frac, out_nonfinite) "
                   "VALUES (?, ?, 4, 2, 1, ?, ?, ?, 0, 0)", (run_id, s, phase, train_flag,
                                                            train_flag))


def make_db(path, runs, wal=False):
    db = sqlite3.connect(path)
    if wal:
        db.execute('PRAGMA journal_mode=WAL')
    db.executescript(SCHEMA)
    for r in runs:
        add_run(db, **r)
    db.commit()
    db.close()


def main():
    tmp = tempfile.mkdtemp(prefix='nnscope-cli-')
    healthy = os.path.join(tmp, 'healthy.db')
    frozen = os.path.join(tmp, 'frozen.db')
    dead = os.path.join(tmp, 'dead.db')
    many = os.path.join(tmp, 'many.db')
    make_db(healthy, [dict(run_id=1)], wal=True)
    make_db(frozen, [dict(run_id=1), dict(run_id=2, bug='frozen')])
    make_db(dead, [dict(run_id=1, bug='dead')])
    now = time.time()
    make_db(many, [dict(run_id=1), dict(run_id=2, bug='frozen', status='failed'),
                   dict(run_id=3, status='running', heartbeat=now - 3600),
                   dict(run_id=4, status='running', heartbeat=now + 5)])

    # ---- help and dispatch
    rc, out, _ = run('--help')
    check(rc == 0 and 'check RUN.db' in out and 'query RUN.db' in out, '--help')
    rc, _, err = run()
    check(rc == 2 and 'usage' in err, 'no arguments: usage, exit 2')
    rc, _, err = run('frobnicate')
    check(rc == 2 and "unknown command 'frobnicate'" in err, 'unknown command')
    for cmd in ('check', 'query', 'runs', 'rules'):
        rc, out, _ = run(cmd, '--help')
        check(rc == 0 and out.startswith('usage: nnscope ' + cmd), cmd + ' --help')

    # ---- check: exit codes
    rc, out, err = run('check', healthy)
    check(rc == 0 and 'no findings' in out and 'passed' in out, 'healthy run: exit 0 (%d %s)' % (rc, err))
    check('\033[' not in out, 'no colour when stdout is not a terminal')
    rc, out, _ = run('check', frozen)  # latest run = 2
    check(rc == 1 and '[frozen-parameter]' in out and 'run 2' in out, 'frozen run: exit 1')
    check("module:   fc  param: fc.weight, fc.bias" in out, 'text names module and params')
    check('fix:' in out and 'evidence:' in out, 'text shows evidence and fix')
    db = sqlite3.connect(dead)
    db.execute("UPDATE runs SET record_error = 'disk full' WHERE id = 1")
    db.commit()
    db.close()
    rc, out, _ = run('check', dead)
    check('recording stopped early: disk full' in out, 'check shows runs.record_error')
    rc, out, _ = run('check', dead, '--format', 'json')
    check(json.loads(out)['record_error'] == 'disk full', 'json: record_error')
    rc, out, _ = run('check', frozen, '--run', '1')
    check(rc == 0, '--run 1 selects the healthy run')
    rc, _, _ = run('check', frozen, '--fail-on', 'never')
    check(rc == 0, '--fail-on never')
    rc, out, _ = run('check', dead)
    check(rc == 0 and '[dead-relu]' in out, 'warning only: exit 0 with default --fail-on error')
    rc, _, _ = run('check', dead, '--fail-on', 'warning')
    check(rc == 1, '--fail-on warning: exit 1')
    rc, _, _ = run('check', dead, '--fail-on=warning', '--set', 'dead_relu_frac=0.95')
    check(rc == 0, '--set raises the dead-relu threshold')
    rc, out, _ = run('check', frozen, '--rules', 'dead-relu,loss-not-decreasing')
    check(rc == 0 and 'from 2 rules' in out, '--rules limits the rules run')

    # ---- check: usage and file errors, exit 2, one line naming the problem
    notdb = os.path.join(tmp, 'notes.txt')
    with open(notdb, 'w') as f:
        f.write('this is not a database\n' * 100)
    plain = os.path.join(tmp, 'plain.db')
    sqlite3.connect(plain).execute('CREATE TABLE t (x)').connection.close()
    empty = os.path.join(tmp, 'empty.db')
    make_db(empty, [])
    missing = os.path.join(tmp, 'missing.db')
    cases = [
        ((missing,), 'No such file or directory'),
        ((tmp,), 'is a directory'),
        ((notdb,), 'is not a SQLite database'),
        ((plain,), 'not an nnscope recording'),
        ((empty,), 'holds no runs'),
        ((frozen, '--run', '99'), 'no run 99'),
        ((frozen, '--run', 'x'), '--run needs a run id'),
        ((frozen, '--fail-on', 'fatal'), '--fail-on must be'),
        ((frozen, '--format', 'xml'), '--format must be'),
        ((frozen, '--rules', 'dead-relu,bogus'), "unknown rule 'bogus'"),
        ((frozen, '--set', 'bogus=1'), "unknown option 'bogus'"),
        ((frozen, '--set', 'grad_window=abc'), 'not a number'),
        ((frozen, '--frob'), "unknown option '--frob'"),
        ((frozen, healthy), 'unexpected argument'),
        ((frozen, '--run'), '--run needs a value'),
        ((), 'missing RUN.db'),
    ]
    for args, msg in cases:
        rc, out, err = run('check', *args)
        check(rc == 2 and msg in err and err.count('\n') == 1 and out == '',
              'check %s: exit 2 with "%s" (got %d: %r)' % (' '.join(args), msg, rc, err))
    check(not os.path.exists(missing), 'a missing file is not created')

    # ---- check: formats
    rc, out, _ = run('check', frozen, '--format', 'json')
    doc = json.loads(out)
    check(rc == 1 and doc['run'] == 2 and doc['failed'] is True, 'json: run and verdict')
    check(doc['rules'] == RULES, 'json: every rule listed in order')
    f0 = doc['findings'][0]
    check(f0['rule'] == 'frozen-parameter' and f0['severity'] == 'error' and
          f0['module'] == 'fc' and f0['param'] == 'fc.weight, fc.bias' and
          f0['first_step'] == 0 and f0['last_step'] == 59, 'json: finding fields')
    check(doc['counts']['error'] == 1, 'json: counts')
    rc, out, _ = run('check', healthy, '--format', 'json')
    check(rc == 0 and json.loads(out)['findings'] == [], 'json: empty findings')
    check(subprocess.run([sys.executable, '-m', 'json.tool'], input=out, text=True,
                         capture_output=True).returncode == 0, 'json.tool accepts the output')

    rc, out, _ = run('check', frozen, '--format', 'junit')
    root = ET.fromstring(out)
    suite = root.find('testsuite')
    cases_ = suite.findall('testcase')
    check(rc == 1 and root.tag == 'testsuites' and len(cases_) == 15, 'junit: 15 testcases')
    failed = [c.get('name') for c in cases_ if c.find('failure') is not None]
    check(failed == ['frozen-parameter'] and suite.get('failures') == '1', 'junit: one failure')
    rc, out, _ = run('check', dead, '--format', 'junit')
    suite = ET.fromstring(out).find('testsuite')
    check(rc == 0 and suite.get('failures') == '0', 'junit: warnings below --fail-on pass')
    dr = [c for c in suite.findall('testcase') if c.get('name') == 'dead-relu'][0]
    check(dr.find('failure') is None and 'act' in dr.find('system-out').text,
          'junit: findings below --fail-on go to system-out')
    rc, out, _ = run('check', dead, '--format', 'junit', '--fail-on', 'warning',
                     '--rules', 'dead-relu')
    suite = ET.fromstring(out).find('testsuite')
    check(rc == 1 and suite.get('tests') == '1' and suite.get('failures') == '1',
          'junit: --rules and --fail-on warning')

    rc, out, _ = run('check', frozen, '--format', 'github')
    lines = out.splitlines()
    check(rc == 1 and lines[0].startswith('::error title=nnscope frozen-parameter%3A fc::'),
          'github: ::error workflow command (%r)' % lines[:1])
    check('%0Afix: ' in lines[0], 'github: fix on the same command')
    rc, out, _ = run('check', dead, '--format', 'github')
    check(out.startswith('::warning title=nnscope dead-relu%3A act::'), 'github: ::warning')

    # ---- query
    rc, out, _ = run('query', frozen, 'SELECT id, status, command FROM runs ORDER BY id')
    lines = out.splitlines()
    check(rc == 0 and lines[0].split() == ['id', 'status', 'command'], 'query: header')
    check(set(lines[1]) == {'-', ' '} and lines[-1] == '(2 rows)', 'query: rule line and count')
    check(lines[2].index('finished') == lines[0].index('status'), 'query: columns aligned')
    rc, out, _ = run('query', frozen, 'SELECT name, numel, lr FROM params WHERE run_id = 2',
                     '--csv')
    rows = list(csv.reader(io.StringIO(out)))
    check(rc == 0 and rows[0] == ['name', 'numel', 'lr'] and rows[1] == ['fc.weight', '12', ''],
          'query --csv (NULL empty)')
    rc, out, _ = run('query', frozen, "SELECT 1 AS a, 'x\"y' AS b, NULL AS c, 0.5 AS d",
                     '--json')
    check(rc == 0 and json.loads(out) == [{'a': 1, 'b': 'x"y', 'c': None, 'd': 0.5}],
          'query --json')
    rc, out, _ = run('query', frozen, 'SELECT 1 AS one; SELECT 2 AS two')
    check(rc == 0 and 'one' in out and 'two' in out, 'query: several statements')
    for sql in ('DELETE FROM runs', 'DROP TABLE steps',
                "INSERT INTO runs (id, started_at) VALUES (9, 0)", 'SELECT 1; DELETE FROM runs'):
        rc, out, err = run('query', frozen, sql)
        check(rc == 1 and 'opened read-only' in err, 'query refuses %r (%d %r)' % (sql, rc, err))
    n = sqlite3.connect(frozen).execute('SELECT COUNT(*) FROM runs').fetchone()[0]
    check(n == 2, 'the refused writes changed nothing')
    rc, _, err = run('query', frozen, 'SELEC nonsense')
    check(rc == 1 and 'syntax error' in err, 'query: SQL error exits 1')
    rc, _, err = run('query', missing, 'SELECT 1')
    check(rc == 2 and 'No such file' in err, 'query: missing file exits 2')
    rc, _, err = run('query', frozen)
    check(rc == 2, 'query: missing SQL exits 2')

    # ---- runs
    rc, out, err = run('runs', many)
    lines = out.splitlines()
    check(rc == 0 and len(lines) == 5, 'runs: header + 4 runs (%r)' % err)
    byid = {int(l.split()[0]): l.split() for l in lines[1:]}
    check(byid[1][1] == 'finished' and byid[1][2] == '60+1', 'runs: status and steps')
    check(byid[2][1] == 'failed' and byid[2][4] == '1', 'runs: failed run with 1 error')
    check(byid[3][1] == 'stale', 'runs: running with an old heartbeat is stale')
    check(byid[4][1] == 'running', 'runs: running with a fresh heartbeat')
    check(byid[1][3] == '1m35s' and './tiny' in lines[1], 'runs: duration and command')
    rc, _, err = run('runs', notdb)
    check(rc == 2 and 'not a SQLite database' in err, 'runs: not a database')

    # ---- rules
    rc, out, _ = run('rules')
    check(rc == 0 and all(r in out for r in RULES), 'rules lists every rule')
    rc, out, _ = run('rules', 'missing-eval-mode')
    check(rc == 0 and 'ns_module_eval' in out and 'SQL: nnscope rules --sql' in out,
          'rules ID explains')
    rc, out, _ = run('rules', '--options')
    for name in ('min_steps', 'frozen_min_steps', 'grad_rms_min', 'ratio_max', 'loss_window'):
        check(name in out, 'rules --options lists ' + name)
    rc, sql, _ = run('rules', '--sql', 'frozen-parameter')
    check(rc == 0 and sql.lstrip().startswith('-- frozen-parameter'), 'rules --sql prints SQL')
    # The printed SQL runs as is with the documented parameters and finds the same thing.
    db = sqlite3.connect(frozen)
    rows = db.execute(sql, {'run': 2, 'frozen_min_steps': 20}).fetchall()
    check(len(rows) == 1 and rows[0][0] == 'error' and rows[0][2] == 'fc', 'rule SQL runs as is')
    rc, _, err = run('rules', '--sql', 'nope')
    check(rc == 2 and "unknown rule 'nope'" in err, 'rules --sql unknown rule')

    if FAILED:
        print('%d CLI checks failed' % len(FAILED), file=sys.stderr)
        return 1
    print('all CLI checks passed')
    return 0


if __name__ == '__main__':
    sys.exit(main())
