#!/usr/bin/env bash
# GPU check of the CUPTI kernel timings (issue 8), a fragment for tests/gpu/run.sh. On a machine
# with an NVIDIA GPU, from the repo root, after the build:
#
#   bash tests/gpu/cupti_check.sh BUILD_DIR DATA_DIR [LOG_DIR]
#
# BUILD_DIR holds samples/fashion_mlp built with -Dcuda=enabled (CUPTI on by default there);
# DATA_DIR is Fashion-MNIST; logs and the recordings go to LOG_DIR (default BUILD_DIR/cupti-logs).
#
#   1. records samples/fashion_mlp --device cuda with NNSCOPE_DB (CUPTI on) and checks the
#      recording with SQL (python3's sqlite3): runs.cupti_status is 'on'; real kernels appear in
#      every training step (cuBLAS GEMMs among them); every GEMM of forward and backward is
#      attributed to a Linear module; every Linear and BatchNorm1d has forward and backward GPU
#      time; the optimizer's kernels are in the optimizer phase; no record lost its correlation
#      (the recorder's 'cupti:' note); per step, the per-module sums (gpu_time_by_module) add up
#      to the GPU's busy time (union of kernel intervals) within 5%; the host-to-device copy
#      volume covers the batch.
#   2. overhead: the same training, recorded with kernel collection on and off (NNSCOPE_CUPTI=0),
#      alternated off/on/off/on in separate processes; steps/s of the second (warm) epoch; prints
#      the ratio, target: collection on is at most 5% slower.
#
# About 1-2 minutes (6 runs of the sample, 60 s limit each). Prints "cupti_check: PASS ..." or
# "cupti_check: FAIL ..." last. Exit 0 pass, 1 fail, 2 usage.
set -u
if [ $# -lt 2 ]; then
    echo "usage: bash tests/gpu/cupti_check.sh BUILD_DIR DATA_DIR [LOG_DIR]"
    exit 2
fi
bdir=$1
data=$2
logs=${3:-$bdir/cupti-logs}
exe=$bdir/samples/fashion_mlp
py=/usr/bin/python3
[ -x "$py" ] || py=$(command -v python3 || echo python3)
mkdir -p "$logs"
if [ ! -x "$exe" ]; then
    echo "cupti_check: FAIL: $exe not built"
    exit 1
fi
fails=()

# ------------------------------------------------------------------ 1. the recording
# --limit-steps 700: epoch 1 (469 steps of 128) and 231 steps of epoch 2.
run() { # run NAME CUPTI(0|1) RECORD(0|1)
    local name=$1 db=$logs/$1.db
    rm -f "$db" "$db-wal" "$db-shm"
    local env=(NNSCOPE_DATA="$data")
    [ "$3" = 1 ] && env+=(NNSCOPE_DB="$db")
    [ "$2" = 0 ] && env+=(NNSCOPE_CUPTI=0)
    env "${env[@]}" timeout 60 "$exe" --device cuda --epochs 2 --limit-steps 700 \
        --save "$logs/$name.safetensors" >"$logs/$name.log" 2>&1
    local rc=$?
    [ $rc -eq 0 ] || { echo "  $name: exit $rc"; tail -n 5 "$logs/$name.log"; }
    return $rc
}

echo "-- recording with CUPTI on ($logs/cupti_on.db)"
if run cupti_on 1 1; then
    "$py" - "$logs/cupti_on.db" <<'EOF' || fails+=("recording checks")
import sqlite3, sys, re
db = sqlite3.connect("file:%s?mode=ro" % sys.argv[1], uri=True)
q = lambda sql, *a: db.execute(sql, a).fetchall()
bad = []
def check(ok, what):
    print("  %-4s %s" % ("ok" if ok else "FAIL", what))
    if not ok: bad.append(what)

run_id, status = q("SELECT id, cupti_status FROM runs ORDER BY id DESC LIMIT 1")[0]
check(status == "on", "runs.cupti_status is 'on' (got %r)" % status)
train = [r[0] for r in q("SELECT step FROM steps WHERE run_id=? AND phase='train' ORDER BY step", run_id)]
rows = q("""SELECT k.step, k.module_id, k.phase, k.kind, s.s, k.start_ns, k.end_ns, m.type,
                   m.path, k.bytes
            FROM kernels k LEFT JOIN strings s ON s.id = k.name_id
            LEFT JOIN modules m ON m.run_id = k.run_id AND m.id = k.module_id
            WHERE k.run_id = ?""", run_id)
tset = set(train)
kern = [r for r in rows if r[3] == "kernel" and r[0] in tset]
print("  %d training steps, %d kernel rows in them, %d rows in all" % (len(train), len(kern), len(rows)))
with_k = {r[0] for r in kern}
check(len(train) > 0 and len(with_k) >= 0.95 * len(train),
      "kernels recorded in %d of %d training steps (>= 95%%)" % (len(with_k), len(train)))
gemm = [r for r in kern if r[4] and re.search("gemm|Gemm|GEMM", r[4])]
check(len(gemm) > 0, "cuBLAS GEMM kernels appear (%d)" % len(gemm))
fb_gemm = [r for r in gemm if r[2] in ("forward", "backward")]
off = [r for r in fb_gemm if r[7] != "Linear"]
check(fb_gemm and not off, "every forward/backward GEMM is attributed to a Linear (%d of %d)"
      % (len(fb_gemm) - len(off), len(fb_gemm)))
orphans = [r for r in rows if r[1] is not None and r[7] is None]
check(not orphans, "every module_id names a recorded module (%d do not)" % len(orphans))
mods = q("SELECT id, path, type FROM modules WHERE run_id=? AND type IN ('Linear','BatchNorm1d')", run_id)
for mid, path, typ in mods:
    phases = {r[2] for r in kern if r[1] == mid}
    check({"forward", "backward"} <= phases, "%s (%s) has forward and backward GPU time (phases %s)"
          % (path, typ, sorted(phases)))
opt_steps = {r[0] for r in kern if r[2] == "optimizer"}
check(len(opt_steps) >= 0.95 * len(train), "optimizer kernels in %d of %d training steps"
      % (len(opt_steps), len(train)))
notes = q("SELECT detail FROM events WHERE run_id=? AND kind='note' AND detail LIKE 'cupti:%'", run_id)
if notes:
    print("  " + notes[-1][0])
    m = re.search(r"(\d+) unmatched", notes[-1][0]); d = re.search(r"(\d+) dropped", notes[-1][0])
    check(m and int(m.group(1)) == 0 and d and int(d.group(1)) == 0,
          "no record lost its correlation or was dropped")
else:
    check(False, "the recorder's 'cupti:' note (ns_cupti_stats_text) is in events")
# per-module sums vs the GPU's busy time, per training step
worst = 0.0
for step in train:
    iv = sorted((r[5], r[6]) for r in kern if r[0] == step)
    busy, cur_s, cur_e = 0, None, None
    for s, e in iv:
        if cur_e is None or s > cur_e:
            if cur_e is not None: busy += cur_e - cur_s
            cur_s, cur_e = s, e
        else:
            cur_e = max(cur_e, e)
    if cur_e is not None: busy += cur_e - cur_s
    mod_sum = q("SELECT COALESCE(SUM(gpu_us), 0) FROM gpu_time_by_module WHERE run_id=? AND step=?",
                run_id, step)[0][0] * 1000.0
    if busy > 0: worst = max(worst, abs(mod_sum - busy) / busy)
check(worst <= 0.05, "per-module sums vs GPU busy time per step: worst difference %.2f%% (<= 5%%)"
      % (100 * worst))
# host-to-device copies cover each batch (x: 784 floats, y: one int32 per sample)
short = 0
for step, samples in q("SELECT step, samples FROM steps WHERE run_id=? AND phase='train'", run_id):
    htod = sum(r[9] or 0 for r in rows if r[0] == step and r[3] == "memcpy" and r[4] == "memcpy HtoD")
    if samples and htod < samples * (784 * 4 + 4): short += 1
check(short == 0, "HtoD copy volume covers the batch in every training step (%d short)" % short)
# what the GPU time of a training step is made of
tot = sum(r[6] - r[5] for r in kern) or 1
for ph in ("forward", "backward", "optimizer", "other"):
    t = sum(r[6] - r[5] for r in kern if r[2] == ph)
    out = sum(r[6] - r[5] for r in kern if r[2] == ph and r[1] is None)
    print("  %-9s %5.1f%% of kernel time (%.1f%% outside any module)" % (ph, 100.0 * t / tot, 100.0 * out / tot))
print("  top kernels:")
for name, launches, total_us, avg_us in q(
        "SELECT name, launches, total_us, avg_us FROM top_kernels WHERE run_id=? LIMIT 8", run_id):
    print("    %9.1f us %6d x %7.2f us  %s" % (total_us, launches, avg_us, (name or "?")[:100]))
sys.exit(1 if bad else 0)
EOF
else
    fails+=("recorded run")
fi

# ------------------------------------------------------------------ 2. overhead
echo "-- overhead: kernel collection off vs on, alternated, steps/s of epoch 2"
warm() { sed -n 's/^epoch 2\/2 .* \([0-9.]*\) steps\/s.*/\1/p' "$logs/$1.log"; }
off=()
on=()
for i in 1 2; do
    run "overhead_off_$i" 0 1 && off+=("$(warm "overhead_off_$i")")
    run "overhead_on_$i" 1 1 && on+=("$(warm "overhead_on_$i")")
done
run overhead_norecord 1 0 && norec=$(warm overhead_norecord) || norec=""
echo "  recorded, collection off: ${off[*]:-none} steps/s"
echo "  recorded, collection on:  ${on[*]:-none} steps/s"
echo "  not recorded:             ${norec:-none} steps/s"
if [ ${#off[@]} -eq 2 ] && [ ${#on[@]} -eq 2 ]; then
    verdict=$(awk -v a="${off[0]}" -v b="${off[1]}" -v c="${on[0]}" -v d="${on[1]}" 'BEGIN {
        off = (a > b ? a : b); on = (c > d ? c : d)   # best of two each: least disturbed
        slow = off / on - 1
        printf "collection on is %.1f%% slower than off (best of 2: %.1f vs %.1f steps/s; target <= 5%%)", 100 * slow, on, off
        exit !(slow <= 0.05) }')
    ok=$?
    echo "  $verdict"
    [ $ok -eq 0 ] || fails+=("overhead")
else
    echo "  overhead not measured (a run failed)"
    fails+=("overhead runs")
fi

if [ ${#fails[@]} -eq 0 ]; then
    echo "cupti_check: PASS (${verdict:-})"
    exit 0
fi
echo "cupti_check: FAIL: ${fails[*]} (logs: $logs)"
exit 1
