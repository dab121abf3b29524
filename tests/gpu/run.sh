#!/usr/bin/env bash
# GPU verification of the CUDA backend, one command, from the repo root on a machine with an
# NVIDIA GPU (sm_90 or newer), CUDA 13 in /usr/local/cuda and /usr/bin/python3 with PyTorch:
#
#   bash tests/gpu/run.sh
#
#   0. inventory: GPU, nvcc, compilers, meson/ninja/pkg-config, libraries, PyTorch, dataset;
#      prints what is missing
#   1. builds the CUDA targets: with meson + ninja into build-gpu/ when the machine has them and
#      every library; else with the carried ninja in build-gpu-carry/build (made by
#      `bash tests/gpu/pack.sh` on a development machine: see that script)
#   2. tests/test_cuda_ops: every op forward and backward on CPU vs GPU (documented tolerances),
#      the kernel-table entries, cuDNN convolution, the allocator, modules trained on both devices
#   3. samples/fashion_mlp --device cuda: test accuracy must reach 0.87
#   4. tests/bench/bench_fashion_gpu: the sample's training step, nnscope vs PyTorch eager on the
#      same GPU, printing the ratio
#   5. tests/gpu/cupti_check.sh: CUPTI kernel rows attributed to modules and phases, per-module
#      sums vs the step's GPU time, collection on/off overhead (1-2 more minutes)
#
# Stages 1-4 within 5 minutes (each stage has a time limit). Logs go to $OUT when set, else
# build-gpu/logs. NNSCOPE_GPU_BUILD=carry forces the carried build (to test it), =meson the
# meson one. Exit status: 0 when every stage passed, 1 otherwise.
set -u
root=$(pwd)
if [ ! -f "$root/meson.build" ] || [ ! -d "$root/kernels" ]; then
    echo "run.sh: run from the nnscope repo root (bash tests/gpu/run.sh)"
    exit 2
fi
logs=${OUT:-$root/build-gpu/logs}
mkdir -p "$logs"
exec > >(tee -a "$logs/run.log") 2>&1
t_start=$(date +%s)
elapsed() { echo $(($(date +%s) - t_start)); }
section() { printf '\n==== %s  [%ss]\n' "$*" "$(elapsed)"; }
declare -a summary
note() { summary+=("$1"); }
carry=$root/build-gpu-carry
export PATH="$PATH:/usr/local/cuda/bin"

# ------------------------------------------------------------------ 0. inventory
section "0. machine and tools"
if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv,noheader ||
        echo "nvidia-smi: query failed"
else
    echo "nvidia-smi: missing"
fi
missing=()
have() { command -v "$1" >/dev/null 2>&1; }
for t in cc g++ ar python3 meson ninja pkg-config; do
    if have "$t"; then printf '  %-12s %s\n' "$t" "$(command -v "$t")"; else printf '  %-12s MISSING\n' "$t"; missing+=("$t"); fi
done
if [ -x /usr/local/cuda/bin/nvcc ]; then
    printf '  %-12s %s\n' nvcc "$(/usr/local/cuda/bin/nvcc --version | tail -n 2 | head -n 1)"
else
    printf '  %-12s MISSING (/usr/local/cuda/bin/nvcc)\n' nvcc
    missing+=(nvcc)
fi
libs_ok=true
for p in openblas zlib sqlite3 ncursesw cmocka; do
    if have pkg-config && pkg-config --exists "$p"; then
        printf '  %-12s %s\n' "$p" "$(pkg-config --modversion "$p")"
    else
        printf '  %-12s MISSING (development files)\n' "$p"
        missing+=("$p")
        libs_ok=false
    fi
done
py=/usr/bin/python3
[ -x "$py" ] || py=$(command -v python3 || echo python3)
torch_line=$("$py" -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")' 2>&1 | tail -n 1)
printf '  %-12s %s (%s)\n' pytorch "$torch_line" "$py"
data=""
for d in "${NNSCOPE_DATA:-}" "$carry/fashion-mnist" /usr/share/datasets/fashion-mnist; do
    if [ -n "$d" ] && [ -f "$d/train-images-idx3-ubyte.gz" ] && [ -f "$d/t10k-labels-idx1-ubyte.gz" ]; then
        data=$d
        break
    fi
done
printf '  %-12s %s\n' dataset "${data:-MISSING (set NNSCOPE_DATA, or carry build-gpu-carry/fashion-mnist from tests/gpu/pack.sh)}"
[ ${#missing[@]} -gt 0 ] && echo "missing here: ${missing[*]}"

# ------------------------------------------------------------------ 1. build
section "1. build"
targets="tests/test_cuda_ops samples/fashion_mlp tests/bench_fashion_gpu"
bdir=""
how=${NNSCOPE_GPU_BUILD:-auto}
if [ "$how" != carry ] && have meson && have ninja && { $libs_ok || [ "$how" = meson ]; } && have cc; then
    echo "meson + ninja: build-gpu (-Dcuda=enabled)"
    if [ ! -f "$root/build-gpu/build.ninja" ]; then
        timeout 120 meson setup "$root/build-gpu" -Dcuda=enabled >"$logs/meson-setup.log" 2>&1 ||
            { tail -n 30 "$logs/meson-setup.log"; echo "meson setup failed (log: $logs/meson-setup.log)"; }
    fi
    [ -f "$root/build-gpu/build.ninja" ] && bdir=$root/build-gpu && ninja_bin=ninja
elif [ "$how" != meson ] && [ -f "$carry/build/build.ninja" ] && [ -x "$carry/bin/ninja" ]; then
    echo "fallback: the carried build dir build-gpu-carry/build (packed with tests/gpu/pack.sh)"
    sed -i "s#@NS_ROOT@#$root#g" "$carry/build/build.ninja"
    touch "$carry/build/build.ninja" # newer than every meson.build: no regeneration (needs meson)
    bdir=$carry/build
    ninja_bin=$carry/bin/ninja
else
    echo "cannot build: this machine lacks ${missing[*]}, and build-gpu-carry/ is absent."
    echo "On a development machine run 'bash tests/gpu/pack.sh' and hand build-gpu-carry/ over with"
    echo "the checkout (it carries ninja, a configured build dir, SQLite/zlib and a CBLAS shim)."
fi
build_ok=false
if [ -n "$bdir" ]; then
    t0=$(date +%s)
    if timeout 240 "$ninja_bin" -C "$bdir" -j"$(nproc)" $targets >"$logs/build.log" 2>&1; then
        build_ok=true
        echo "built $targets in $(($(date +%s) - t0))s (log: $logs/build.log)"
    else
        tail -n 40 "$logs/build.log"
        echo "build failed after $(($(date +%s) - t0))s (log: $logs/build.log)"
    fi
fi
$build_ok && note "build                     PASS ($bdir)" || note "build                     FAIL"

# ------------------------------------------------------------------ 2. cross-backend test
section "2. cross-backend test (every op, table entries, cuDNN, allocator, modules)"
if $build_ok; then
    timeout 120 "$bdir/tests/test_cuda_ops" >"$logs/test_cuda_ops.log" 2>&1
    rc=$?
    grep -v '^  ok ' "$logs/test_cuda_ops.log" | tail -n 60
    echo "(every check: $logs/test_cuda_ops.log)"
    summary_line=$(grep '^test_cuda_ops:' "$logs/test_cuda_ops.log" | tail -n 1)
    case $rc in
    0) note "test_cuda_ops             PASS ($summary_line)" ;;
    77) note "test_cuda_ops             SKIPPED: $(head -n 1 "$logs/test_cuda_ops.log")" ;;
    *) note "test_cuda_ops             FAIL (exit $rc; ${summary_line:-crashed})" ;;
    esac
else
    note "test_cuda_ops             not run (no build)"
fi

# ------------------------------------------------------------------ 3. the sample on the GPU
section "3. samples/fashion_mlp --device cuda (test accuracy >= 0.87)"
if $build_ok && [ -n "$data" ]; then
    t0=$(date +%s)
    NNSCOPE_DATA=$data timeout 150 "$bdir/samples/fashion_mlp" --device cuda \
        --save "$logs/fashion_mlp.safetensors" >"$logs/fashion_mlp.log" 2>&1
    rc=$?
    cat "$logs/fashion_mlp.log" | grep -v '^  ' | tail -n 12
    acc=$(grep '^test_accuracy=' "$logs/fashion_mlp.log" | tail -n 1 | sed 's/test_accuracy=//')
    if [ $rc -eq 0 ] && [ -n "$acc" ] && awk -v a="$acc" 'BEGIN { exit !(a >= 0.87) }'; then
        note "fashion_mlp --device cuda PASS (test accuracy $acc, $(($(date +%s) - t0))s)"
    else
        note "fashion_mlp --device cuda FAIL (exit $rc, test accuracy ${acc:-none})"
    fi
elif $build_ok; then
    note "fashion_mlp --device cuda not run (Fashion-MNIST missing)"
else
    note "fashion_mlp --device cuda not run (no build)"
fi

# ------------------------------------------------------------------ 4. benchmark
section "4. benchmark: training step, nnscope vs PyTorch eager on the same GPU"
if $build_ok; then
    NNSCOPE_DATA=${data:-/nonexistent} timeout 150 "$bdir/tests/bench_fashion_gpu" \
        --torch-script "$root/tests/bench/bench_fashion_gpu_torch.py" --python "$py" \
        >"$logs/bench_fashion_gpu.log" 2>&1
    rc=$?
    cat "$logs/bench_fashion_gpu.log"
    ratio=$(grep '^ratio ' "$logs/bench_fashion_gpu.log" | sed 's/.*= \([0-9.]*\).*/\1/')
    if [ $rc -eq 0 ] && [ -n "$ratio" ]; then
        note "benchmark                 ratio nnscope/pytorch steps/s = $ratio (target >= 1.00)"
    else
        note "benchmark                 FAIL (exit $rc, no ratio)"
    fi
else
    note "benchmark                 not run (no build)"
fi

# ------------------------------------------------------------------ 5. CUPTI kernel timings
section "5. CUPTI: kernels attributed to modules, per-module sums, collection overhead"
if $build_ok && [ -n "$data" ]; then
    timeout 200 bash "$root/tests/gpu/cupti_check.sh" "$bdir" "$data" "$logs/cupti" \
        >"$logs/cupti_check.log" 2>&1
    cat "$logs/cupti_check.log"
    last=$(tail -n 1 "$logs/cupti_check.log")
    case $last in
    "cupti_check: PASS"*) note "cupti                     ${last#cupti_check: }" ;;
    *) note "cupti                     FAIL (${last:-no output})" ;;
    esac
else
    note "cupti                     not run (no build or no data)"
fi

# ------------------------------------------------------------------ summary
section "summary"
status=0
for s in "${summary[@]}"; do
    echo "  $s"
    case $s in *FAIL* | *"not run"* | *SKIPPED*) status=1 ;; esac
done
echo "total $(elapsed)s; logs in $logs"
exit $status
