#!/usr/bin/env bash
# nnscope set-up and entry points for a fresh Debian 12 machine (run as root).
#
#   bash tools/setup.sh demo   install what is missing, build, train the Fashion-MNIST sample and
#                              one buggy sample with recording on, show `nnscope check` for both
#                              and open the TUI on the buggy run (a --dump frame without a tty)
#   bash tools/setup.sh test   the same set-up, then the whole test suite: the normal build and
#                              an ASan+UBSan build
#   bash tools/setup.sh build  set-up and build only
set -euo pipefail
cd "$(dirname "$0")/.."

mode=${1:-demo}
case "$mode" in
demo | test | build) ;;
-h | --help)
    sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'
    exit 0
    ;;
*)
    echo "usage: bash tools/setup.sh [demo|test|build]" >&2
    exit 2
    ;;
esac

# ---- packages: install only what is missing; silent when everything is present
pkgs=(meson ninja-build pkg-config gcc libc6-dev python3 libopenblas-dev zlib1g-dev
    libsqlite3-dev libncurses-dev libcmocka-dev dataset-fashion-mnist tmux python3-numpy)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "setup: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# ---- build
jobs=$(nproc)
if [ ! -f build/build.ninja ]; then
    meson setup build --buildtype=release >/dev/null
fi
ninja -C build -j"$jobs" >/dev/null || ninja -C build -j1

case "$mode" in
build) exit 0 ;;
test)
    meson test -C build --print-errorlogs --num-processes "$jobs"
    if [ ! -f build-asan/build.ninja ]; then
        meson setup build-asan --buildtype=debug -Db_sanitize=address,undefined -Db_lundef=false \
            -Dcuda=disabled >/dev/null
    fi
    ninja -C build-asan -j"$jobs" >/dev/null || ninja -C build-asan -j1
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
        meson test -C build-asan --print-errorlogs --num-processes "$jobs" --timeout-multiplier 4
    ;;
demo)
    exec bash tools/demo.sh
    ;;
esac
