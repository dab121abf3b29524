#!/bin/sh
# End-to-end test of the live TUI in tmux against a live run.
#
#   tui_e2e.sh TUI WRITER
#
# TUI runs `nnscope tui` (tests/test_tui_cli.c, or e.g. "build/src/cli/nnscope tui"). WRITER
# records a run with an unregistered layer over a few seconds: by default the fake live run
# tests/test_tui_writer.c, called as `WRITER RUN.db --steps 300 --every-ms 40 --finish`; set
# TUI_E2E_WRITER_ARGS to call it otherwise (NNSCOPE_DB is exported too), e.g. for a sample:
#   TUI_E2E_WRITER_ARGS= tests/tui_e2e.sh "build/src/cli/nnscope tui" \
#       build/samples/bug_unregistered_layer
# The test starts the TUI before the file exists (it must wait), starts the writer, waits for
# the step counter to advance, checks the flagged unregistered module and the findings, sends
# j, Tab, Enter (detail of the first child's weight), 2 (findings), Enter, q, and checks the
# exit status and that the terminal left the alternate screen; then Ctrl-C, a crash (SIGSEGV),
# NO_COLOR at 80x24, a resize and the help. Skips (77) without tmux.
set -u
TUI=$1
WRITER=$2
command -v tmux >/dev/null 2>&1 || { echo "tmux is not installed: skipped"; exit 77; }

dir=$(mktemp -d /tmp/nstui-e2e.XXXXXX)
db=$dir/run.db
sock=$dir/tmux.sock
printf 'set -g remain-on-exit on\nset -g default-terminal screen-256color\n' >"$dir/tmux.conf"
T="tmux -S $sock -f $dir/tmux.conf"
wpid=
cleanup() {
    $T kill-server >/dev/null 2>&1
    [ -n "$wpid" ] && kill "$wpid" >/dev/null 2>&1
    rm -rf "$dir"
}
trap cleanup EXIT

capture() { $T capture-pane -p -t e2e >"$dir/pane.txt" 2>/dev/null; }
fail() {
    echo "FAIL: $*"
    echo "--- pane:"
    cat "$dir/pane.txt" 2>/dev/null
    exit 1
}
# wait_for REGEX SECONDS: until the pane shows REGEX.
wait_for() {
    n=0
    while [ "$n" -lt $(($2 * 10)) ]; do
        capture
        grep -q -- "$1" "$dir/pane.txt" && return 0
        sleep 0.1
        n=$((n + 1))
    done
    return 1
}
# wait_dead SECONDS: until the TUI has exited; prints its exit status as the shell saw it
# (128 + N for signal N), or "none". (The status comes from the wrapper shell: tmux's
# pane_dead_status is not reliable on every tmux.)
wait_dead() {
    n=0
    while [ "$n" -lt $(($1 * 10)) ]; do
        if [ -s "$dir/status" ]; then
            cat "$dir/status"
            return 0
        fi
        sleep 0.1
        n=$((n + 1))
    done
    echo none
}
# The TUI's pid: the only child of the pane's shell.
tui_pid() { ps -o pid= --ppid "$($T display -p -t e2e '#{pane_pid}')" | tr -d ' ' | head -n 1; }
step_shown() { sed -n 's/.* step \([0-9][0-9]*\) .*/\1/p' "$dir/pane.txt" | head -n 1; }
start_tui() {
    $T kill-session -t e2e >/dev/null 2>&1
    rm -f "$dir/status"
    $T new-session -d -s e2e -x "${W:-100}" -y "${H:-30}" \
        "env $ENVS LANG=C.UTF-8 LC_ALL=C.UTF-8 $TUI $db --interval 100; echo \$? >$dir/status" ||
        fail "tmux did not start"
}
ENVS=

# ---- 1. Live: wait for the file, follow the run, keys, q.
start_tui
wait_for "waiting for $db" 10 || fail "the TUI did not wait for the missing recording"
export NNSCOPE_DB="$db"
# shellcheck disable=SC2086 # word splitting of the arguments is wanted
if [ -n "${TUI_E2E_WRITER_ARGS+set}" ]; then
    $WRITER $TUI_E2E_WRITER_ARGS >"$dir/writer.log" 2>&1 &
else
    $WRITER "$db" --steps 300 --every-ms 40 --finish >"$dir/writer.log" 2>&1 &
fi
wpid=$!
wait_for " step [1-9]" 20 || fail "no step counter"
s1=$(step_shown)
sleep 1
capture
s2=$(step_shown)
[ -n "$s1" ] && [ -n "$s2" ] && [ "$s2" -gt "$s1" ] || fail "step counter did not advance ($s1 -> $s2)"
grep -q " running " "$dir/pane.txt" || fail "status is not 'running'"
grep -q "steps/s" "$dir/pane.txt" || fail "no steps/s"
grep "(unregistered Linear" "$dir/pane.txt" | grep -q "UNREG" || fail "unregistered module not flagged"
wait_for "findings: [1-9][0-9]* error" 15 || fail "the rules did not report the unregistered module"
# Colours: SGR colour codes on screen (none under NO_COLOR, section 4).
$T capture-pane -e -p -t e2e | grep -q "$(printf '\033')\[[0-9;]*3[1-6]m" || fail "no colours"
wait_for "UNREG unregis" 5 || fail "no rule id on the flagged module"

$T send-keys -t e2e j                      # from the root to its first child
$T send-keys -t e2e Tab                    # into that module's parameters
wait_for "^>weight" 5 || fail "Tab did not move into the parameters pane"
$T send-keys -t e2e Enter                  # detail of its weight
wait_for "gradient norm" 5 || fail "Enter did not open the detail screen"
grep -q "[.]weight  [0-9]" "$dir/pane.txt" || fail "detail is not about the weight"
grep -q "update/weight ratio" "$dir/pane.txt" || fail "no update ratio plot"
grep -q "activation zero fraction" "$dir/pane.txt" || fail "no activation plot"
grep -q "$(printf '\342\240')" "$dir/pane.txt" || fail "no braille plot characters"
$T send-keys -t e2e 2                      # findings
wait_for "ERROR  unregistered-module (" 5 || fail "findings screen"
$T send-keys -t e2e Enter
wait_for "Why it matters" 5 || fail "Enter did not open the explanation"
$T send-keys -t e2e q
status=$(wait_dead 5)
[ "$status" = 0 ] || fail "q: exit status $status"
[ "$($T display -p -t e2e '#{alternate_on}')" = 0 ] || fail "q left the terminal in the alternate screen"
wait "$wpid" || fail "the writer failed: $(cat "$dir/writer.log")"
wpid=

# ---- 2. Ctrl-C restores the terminal and exits cleanly.
start_tui
wait_for " finished " 10 || fail "finished run not shown"
$T send-keys -t e2e C-c
status=$(wait_dead 5)
[ "$status" = 0 ] || fail "Ctrl-C: exit status $status"
[ "$($T display -p -t e2e '#{alternate_on}')" = 0 ] || fail "Ctrl-C left the alternate screen on"

# ---- 3. A crash (SIGSEGV) still restores the terminal, and dies of the signal.
start_tui
wait_for " finished " 10 || fail "finished run not shown"
kill -SEGV "$(tui_pid)"
status=$(wait_dead 5)
[ "$status" = 139 ] || fail "SIGSEGV: the TUI did not die of the signal (status $status)"
[ "$($T display -p -t e2e '#{alternate_on}')" = 0 ] || fail "a crash left the alternate screen on"

# ---- 4. NO_COLOR and 80x24: still readable, flagged module still marked.
W=80 H=24 ENVS=NO_COLOR=1 start_tui
wait_for "UNREG" 10 || fail "80x24 NO_COLOR: no flagged module"
$T capture-pane -e -p -t e2e | grep -q "$(printf '\033')\[[0-9;]*3[1-6]m" && fail "NO_COLOR: colours"
grep -q " (model)" "$dir/pane.txt" || fail "80x24: no module tree"
$T resize-window -t e2e -x 130 -y 40
wait_for "(unregistered.*UNREG unregistered-mod" 5 || fail "no redraw after a resize"
$T send-keys -t e2e '?'
wait_for "any key closes this help" 5 || fail "? did not show the help"
$T send-keys -t e2e q
status=$(wait_dead 5)
[ "$status" = 0 ] || fail "80x24: exit status $status"
# ---- 5. Several runs in the file: the picker (fake writer only: it can append a run).
if [ -z "${TUI_E2E_WRITER_ARGS+set}" ]; then
    $WRITER "$db" --append --run 2 --steps 20 --every-ms 0 --finish >"$dir/writer.log" 2>&1 ||
        fail "the writer could not add run 2: $(cat "$dir/writer.log")"
    W=100 H=30 ENVS= start_tui
    wait_for "holds 2 runs: pick one with Enter" 10 || fail "no runs picker"
    $T send-keys -t e2e j Enter
    wait_for "run 2 of 2" 5 || fail "the picker did not open run 2"
    wait_for " step 19 " 5 || fail "run 2 not read"
    $T send-keys -t e2e q
    status=$(wait_dead 5)
    [ "$status" = 0 ] || fail "runs picker: exit status $status"
fi
echo "tui e2e: ok"
