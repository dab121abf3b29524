#!/usr/bin/env bash
# The main job (run by `bash tools/setup.sh demo` after the build): train the Fashion-MNIST
# classifier and one buggy sample with recording on, print `nnscope check` for both runs, then
# open the TUI on the buggy run (a --dump frame when stdout is not a terminal).
#
# Environment: EPOCHS (default 5) for fashion_mlp, DEMO_DB (default runs/demo.db),
# BUG (default bug_unregistered_layer).
set -euo pipefail
cd "$(dirname "$0")/.."

epochs=${EPOCHS:-5}
db=${DEMO_DB:-runs/demo.db}
bug=${BUG:-bug_unregistered_layer}
nnscope=build/src/cli/nnscope
mkdir -p "$(dirname "$db")"
rm -f "$db" "$db-wal" "$db-shm"

echo "== 1/4  samples/fashion_mlp, $epochs epochs, recording to $db"
NNSCOPE_DB=$db build/samples/fashion_mlp --epochs "$epochs" --save runs/fashion_mlp.safetensors
echo
echo "== 2/4  samples/$bug (trains without any error), recording to the same file"
NNSCOPE_DB=$db "build/samples/$bug"
echo
echo "== 3/4  what nnscope says"
"$nnscope" runs "$db"
echo
good=$(mktemp)
bad=$(mktemp)
trap 'rm -f "$good" "$bad"' EXIT
"$nnscope" check "$db" --run 1 >"$good" || true
"$nnscope" check "$db" --run 2 >"$bad" || true
cols=$(tput cols 2>/dev/null || echo 80)
if [ "$cols" -ge 200 ]; then
    pr -m -t -w "$cols" "$good" "$bad"
else
    echo "---- run 1: fashion_mlp ----"
    cat "$good"
    echo
    echo "---- run 2: $bug ----"
    cat "$bad"
fi
echo
echo "== 4/4  nnscope tui $db --run 2"
if [ -t 0 ] && [ -t 1 ]; then
    echo "(q to leave)"
    sleep 1
    "$nnscope" tui "$db" --run 2
else
    "$nnscope" tui "$db" --run 2 --dump --width 100 --height 32
fi
