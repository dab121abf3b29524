#!/usr/bin/env bash
# Prepares build-gpu-carry/ on a development machine (one with meson, ninja, pkg-config and the
# -dev packages), for tests/gpu/run.sh on a GPU machine that may lack them (no apt there):
#
#   build-gpu-carry/fashion-mnist/   the dataset (the sample's accuracy check needs it)
#   build-gpu-carry/bin/ninja        a ninja binary
#   build-gpu-carry/sysroot/         SQLite and zlib headers + static libraries, and a minimal
#                                    CBLAS standing in for OpenBLAS (tests/gpu/shim)
#   build-gpu-carry/build/           a meson build dir configured here against that sysroot with
#                                    -Dcuda=enabled; run.sh builds the GPU targets in it with the
#                                    carried ninja when meson is missing on the GPU machine.
#                                    Absolute paths of this checkout are replaced by @NS_ROOT@.
# About 35 MB. Run it from the repo root right before the GPU run (the build dir reflects the
# sources at packing time), then hand build-gpu-carry to the GPU machine with the checkout (the
# device tool's `carry`). usage: bash tests/gpu/pack.sh
set -euo pipefail
root=$(pwd)
[ -f "$root/meson.build" ] && [ -d "$root/kernels" ] || { echo "pack.sh: run from the repo root"; exit 2; }
carry=$root/build-gpu-carry
data=${NNSCOPE_DATA:-/usr/share/datasets/fashion-mnist}
need() { command -v "$1" >/dev/null || { echo "pack.sh: $1 is needed here"; exit 1; }; }
need meson; need ninja; need pkg-config; need cc; need ar

rm -rf "$carry"
mkdir -p "$carry/bin" "$carry/sysroot/include/sqlite" "$carry/sysroot/include/zlib" \
         "$carry/sysroot/include/cblas" "$carry/sysroot/lib" "$carry/pc"

if [ -f "$data/train-images-idx3-ubyte.gz" ]; then
    mkdir -p "$carry/fashion-mnist"
    cp "$data"/*-ubyte.gz "$carry/fashion-mnist/"
else
    echo "pack.sh: warning: Fashion-MNIST not found in $data; the GPU run will skip the accuracy check"
fi
cp "$(command -v ninja)" "$carry/bin/ninja"

# sysroot: static libraries, so nothing needs LD_LIBRARY_PATH on the GPU machine
libdir=$(pkg-config --variable=libdir sqlite3)
cp "$(pkg-config --variable=includedir sqlite3)/sqlite3.h" "$carry/sysroot/include/sqlite/"
cp "$libdir/libsqlite3.a" "$carry/sysroot/lib/"
zinc=$(pkg-config --variable=includedir zlib)
cp "$zinc/zlib.h" "$zinc/zconf.h" "$carry/sysroot/include/zlib/"
cp "$(pkg-config --variable=libdir zlib)/libz.a" "$carry/sysroot/lib/"
cp "$root/tests/gpu/shim/cblas.h" "$carry/sysroot/include/cblas/"
cc -O2 -c "$root/tests/gpu/shim/cblas_shim.c" -o "$carry/sysroot/lib/cblas_shim.o"
ar rcs "$carry/sysroot/lib/libopenblas_shim.a" "$carry/sysroot/lib/cblas_shim.o"
rm "$carry/sysroot/lib/cblas_shim.o"
sr=$carry/sysroot
cat > "$carry/pc/sqlite3.pc" <<EOF
Name: sqlite3
Description: SQLite (carried, static)
Version: $(pkg-config --modversion sqlite3)
Cflags: -I$sr/include/sqlite
Libs: $sr/lib/libsqlite3.a -lm -ldl -lpthread
EOF
cat > "$carry/pc/zlib.pc" <<EOF
Name: zlib
Description: zlib (carried, static)
Version: $(pkg-config --modversion zlib)
Cflags: -I$sr/include/zlib
Libs: $sr/lib/libz.a
EOF
cat > "$carry/pc/openblas.pc" <<EOF
Name: openblas
Description: minimal CBLAS standing in for OpenBLAS (tests/gpu/shim)
Version: 0.0-shim
Cflags: -I$sr/include/cblas
Libs: $sr/lib/libopenblas_shim.a
EOF

# A build dir against the sysroot. python3 must resolve to /usr/bin/python3 (present on the GPU
# machine), not to a per-user shim.
PATH=/usr/bin:/bin:/usr/local/bin PKG_CONFIG_PATH="$carry/pc" \
    meson setup "$carry/build" -Dcuda=enabled >"$carry/meson-setup.log" 2>&1 ||
    { cat "$carry/meson-setup.log"; echo "pack.sh: meson setup failed"; exit 1; }
targets="tests/test_cuda_ops samples/fashion_mlp tests/bench_fashion_gpu"
if ninja -C "$carry/build" -t commands $targets | grep -q 'meson --internal\|/meson '; then
    echo "pack.sh: warning: the GPU targets' commands call meson; the carried build needs it"
fi
sed -i "s#$root#@NS_ROOT@#g" "$carry/build/build.ninja"
echo "$targets" > "$carry/targets"
du -sh "$carry"
echo "pack.sh: ready. Hand $carry to the GPU machine with the checkout; run: bash tests/gpu/run.sh"
