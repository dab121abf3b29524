#!/bin/sh
# Runs samples/fashion_mlp end to end on a few steps: it must train, evaluate, save, reload
# strictly with identical outputs, and end with "test_accuracy=0.XXXX". Also pins the usage
# exit code (2). Skipped (77) when Fashion-MNIST is not installed.
# usage: test_fashion_mlp.sh path/to/fashion_mlp
set -u
exe=$1
dir=${NNSCOPE_DATA:-/usr/share/datasets/fashion-mnist}
if [ ! -f "$dir/train-images-idx3-ubyte.gz" ] || [ ! -f "$dir/t10k-labels-idx1-ubyte.gz" ]; then
    echo "skip: Fashion-MNIST not found in $dir (apt-get install dataset-fashion-mnist)"
    exit 77
fi
tmp=$(mktemp -d "${TMPDIR:-/tmp}/nsfashion-XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT

"$exe" --limit-steps 30 --epochs 2 --save "$tmp/m.safetensors" >"$tmp/out" 2>&1
rc=$?
cat "$tmp/out"
[ $rc -eq 0 ] || { echo "FAIL: exit status $rc"; exit 1; }
last=$(tail -n 1 "$tmp/out")
echo "$last" | grep -Eq '^test_accuracy=0\.[0-9]{4}$' || { echo "FAIL: last line '$last'"; exit 1; }
grep -q '^trainable parameters: 204,042$' "$tmp/out" || { echo "FAIL: parameter count"; exit 1; }
grep -q 'identical outputs' "$tmp/out" || { echo "FAIL: reload check missing"; exit 1; }
grep -Eq '^epoch 1/2 .*\(30 steps\)$' "$tmp/out" || { echo "FAIL: --limit-steps not honoured"; exit 1; }
[ -s "$tmp/m.safetensors" ] || { echo "FAIL: no state_dict written"; exit 1; }
# 30 steps of Adam already beat chance (0.10) by far.
acc=$(echo "$last" | sed 's/test_accuracy=//')
awk -v a="$acc" 'BEGIN { exit !(a > 0.5) }' || { echo "FAIL: accuracy $acc after 30 steps"; exit 1; }

"$exe" --epochs 0 >/dev/null 2>&1
[ $? -eq 2 ] || { echo "FAIL: --epochs 0 should be a usage error (2)"; exit 1; }
"$exe" --bogus >/dev/null 2>&1
[ $? -eq 2 ] || { echo "FAIL: an unknown option should be a usage error (2)"; exit 1; }
"$exe" --help | grep -q -- '--limit-steps' || { echo "FAIL: --help"; exit 1; }
"$exe" --data "$tmp/nowhere" >"$tmp/err" 2>&1
[ $? -eq 1 ] || { echo "FAIL: a missing dataset should exit 1"; exit 1; }
grep -q nowhere "$tmp/err" || { echo "FAIL: the error should name the folder"; cat "$tmp/err"; exit 1; }
echo "ok"
