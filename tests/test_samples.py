#!/usr/bin/python3
"""Records one sample with NNSCOPE_DB and checks what `nnscope check` says about it.

usage: test_samples.py NNSCOPE_EXE SAMPLE_NAME SAMPLE_EXE

Each buggy sample must train without any error (exit 0, per-epoch loss and accuracy, last line
test_accuracy=0.XXXX), and `nnscope check RUN.db --format json` must report the sample's rule
at the sample's module, and no other rule at error or warning level. The correct sample
(fashion_mlp) must get no error and no warning at all. bug_uninitialised_module must stop with
the engine's message and exit 1, and its recording must still be flagged. bug_device_mixing
exits 77 without a usable CUDA device: the test is then skipped (77), saying why.

Skipped (77) when Fashion-MNIST is not installed ($NNSCOPE_DATA or
/usr/share/datasets/fashion-mnist).
"""
import json
import os
import re
import sqlite3
import subprocess
import sys
import tempfile

SKIP = 77
# Enough train steps for every rule's window: frozen_min_steps and min_steps are 20 by default
# (docs/rules.md), loss-not-decreasing then compares the first and last 30 steps.
STEPS = 60
TIMEOUT = 300

# name -> what the run must look like. 'findings': (rule, severity, module, message part, count)
# where module is an exact path ('' is the model itself), a compiled regex, or None (no module);
# count is how many findings match (None: at least one). Every error or warning finding must
# match one of them.
UNREG = re.compile(r"^\(unregistered Linear (256->256 )?#\d+\)$")
CASES = {
    "fashion_mlp": {"rc": 0, "status": "finished", "findings": []},
    "bug_layer_in_forward": {
        "rc": 0, "status": "finished",
        "findings": [("module-created-in-forward", "error", "",
                      "builds a new Linear on every call", 1)]},
    "bug_unregistered_layer": {
        "rc": 0, "status": "finished",
        "findings": [("unregistered-module", "error", UNREG,
                      "runs inside the forward of '(model)' but is not registered under it", 2)]},
    "bug_detached_forward": {
        "rc": 0, "status": "finished",
        "findings": [("frozen-parameter", "error", "body.0", "no gradient ever reached them", 1)]},
    "bug_not_in_optimizer": {
        "rc": 0, "status": "finished",
        "findings": [("frozen-parameter", "error", "head", "the optimizer does not hold them", 1)]},
    "bug_missing_eval": {
        "rc": 0, "status": "finished",
        "findings": [("missing-eval-mode", "error", "1",
                      "BatchNorm1d '1' ran in training mode during evaluation", 1),
                     ("missing-eval-mode", "error", "3",
                      "Dropout '3' ran in training mode during evaluation", 1)]},
    "bug_device_mixing": {
        "rc": 0, "status": "finished",
        "findings": [("device-mixing", "warning", "head", "parameters live on 2 devices", 1),
                     ("device-mixing", "warning", "", "moves data", None)]},
    "bug_uninitialised_module": {
        "rc": 1, "status": "failed",
        "findings": [("uninitialised-module", "error", None,
                      "&r->base was never initialised", 1)]},
}

failures = []


def fail(msg):
    failures.append(msg)
    print("FAIL: " + msg)


def run(cmd, env=None, timeout=TIMEOUT):
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    return p.returncode, p.stdout, p.stderr


def module_matches(want, got):
    if want is None:
        return got is None
    if isinstance(want, re.Pattern):
        return got is not None and want.match(got) is not None
    return got == want


def show(want):
    if want is None:
        return "(no module)"
    if isinstance(want, re.Pattern):
        return "/" + want.pattern + "/"
    return repr(want)


def check_usage(name, exe):
    """The shared command line: --help, usage errors (2) and a missing dataset (1)."""
    rc, out, _ = run([exe, "--help"])
    if rc != 0 or "--limit-steps" not in out or "--epochs" not in out:
        fail(f"{name} --help: exit {rc}, output {out!r}")
    for bad in (["--epochs", "0"], ["--limit-steps", "x"], ["--bogus"], ["stray"], ["--seed"]):
        rc, _, err = run([exe] + bad)
        if rc != 2 or not err.strip():
            fail(f"{name} {' '.join(bad)}: expected a usage error (2) with a message, got {rc}")


def check_missing_data(name, exe, tmp):
    nowhere = os.path.join(tmp, "nowhere")
    rc, _, err = run([exe, "--data", nowhere])
    if rc != 1 or "nowhere" not in err:
        fail(f"{name} --data {nowhere}: expected exit 1 naming the folder, got {rc}: {err!r}")


def main():
    if len(sys.argv) != 4:
        print(__doc__)
        return 2
    cli, name, exe = sys.argv[1:]
    case = CASES[name]
    data = os.environ.get("NNSCOPE_DATA") or "/usr/share/datasets/fashion-mnist"
    needed = ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
              "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]
    if not all(os.path.isfile(os.path.join(data, f)) for f in needed):
        print(f"skip: Fashion-MNIST not found in {data} (apt-get install dataset-fashion-mnist)")
        return SKIP

    with tempfile.TemporaryDirectory(prefix="nssamples-") as tmp:
        db = os.path.join(tmp, "run.db")
        env = dict(os.environ, NNSCOPE_DB=db)
        cmd = [exe, "--limit-steps", str(STEPS)]
        if name == "fashion_mlp":
            cmd += ["--save", os.path.join(tmp, "m.safetensors")]
        else:
            check_usage(name, exe)
        rc, out, err = run(cmd, env=env)
        print(f"$ NNSCOPE_DB={db} {' '.join(cmd)}  -> exit {rc}")
        print(out + err)
        if name == "bug_device_mixing" and rc == SKIP:
            print(f"skip: {name} needs a CUDA build and device: {out.strip() or err.strip()}")
            if not (out.strip() or err.strip()):
                fail("exit 77 without an explanation")
                return 1
            return SKIP

        if rc != case["rc"]:
            fail(f"{name}: exit status {rc}, expected {case['rc']}")
        if case["rc"] == 0:
            lines = out.strip().splitlines()
            if not lines or not re.fullmatch(r"test_accuracy=0\.\d{4}", lines[-1]):
                fail(f"{name}: last line {lines[-1] if lines else ''!r}")
            if not re.search(rf"^epoch 1/\d+ .*loss \d+\.\d+ .*\({STEPS} steps", out, re.M):
                fail(f"{name}: no 'epoch 1/N ... loss ... ({STEPS} steps' line")
            acc = float(lines[-1].split("=")[1]) if lines and "=" in lines[-1] else 0.0
            if acc <= 0.5:
                fail(f"{name}: test accuracy {acc} after {STEPS} steps: training looks broken,"
                     " not silently wrong")
            if name != "fashion_mlp":
                check_missing_data(name, exe, tmp)
        else:
            if "nnscope: " not in err or "was never initialised" not in err \
                    or "ns_module_init()" not in err:
                fail(f"{name}: stderr lacks the engine's message: {err!r}")
            if "test_accuracy=" in out:
                fail(f"{name}: should stop before training")

        if not os.path.exists(db):
            fail(f"{name}: no recording at {db}")
            return 1
        # The recording itself: one run, its status, and train + eval steps.
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        runs = con.execute("SELECT id, status FROM runs").fetchall()
        phases = dict(con.execute("SELECT phase, COUNT(*) FROM steps GROUP BY phase").fetchall())
        con.close()
        if len(runs) != 1 or runs[0][1] != case["status"]:
            fail(f"{name}: runs {runs}, expected one '{case['status']}' run")
        if case["rc"] == 0:
            if phases.get("train") != STEPS or not phases.get("eval"):
                fail(f"{name}: steps by phase {phases}, expected {STEPS} train and some eval")

        rc, out, err = run([cli, "check", db, "--format", "json"])
        print(f"$ nnscope check {db} --format json  -> exit {rc}")
        print(out + err)
        try:
            report = json.loads(out)
        except ValueError as e:
            fail(f"nnscope check did not print JSON ({e})")
            return 1
        expect_rc = 1 if any(f[1] == "error" for f in case["findings"]) else 0
        if rc != expect_rc:
            fail(f"nnscope check exit {rc}, expected {expect_rc}")
        if report.get("status") != case["status"]:
            fail(f"report status {report.get('status')!r}, expected {case['status']!r}")
        found = report.get("findings", [])
        for rule, sev, module, text, count in case["findings"]:
            hits = [f for f in found if f["rule"] == rule and f["severity"] == sev
                    and module_matches(module, f["module"]) and text in f["message"]]
            if (count is None and not hits) or (count is not None and len(hits) != count):
                fail(f"{name}: expected {count or 'some'} {sev} {rule} at {show(module)} "
                     f"saying '{text}', found {len(hits)}")
        for f in found:
            if f["severity"] not in ("error", "warning"):
                continue
            if not any(f["rule"] == rule and f["severity"] == sev
                       and module_matches(module, f["module"])
                       for rule, sev, module, _, _ in case["findings"]):
                fail(f"{name}: unexpected {f['severity']} {f['rule']} at {f['module']!r}: "
                     f"{f['message']}")
    if failures:
        print(f"{len(failures)} failure(s)")
        return 1
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
