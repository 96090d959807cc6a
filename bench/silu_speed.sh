#!/bin/sh
# SiLU speed: ns/element of each variant of src/backend/cpu/silu.c (f32, bf16 and the
# fused u8 requantization; the threaded calls with 2 threads) next to oneDNN's
# eltwise_swish (forward inference, in place, f32 and bf16), at 64 KiB (16384 floats,
# L1/L2) and 6.4 MB (1.6M floats, the largest yolo11n activation at 640), with 1 and 2
# OpenMP threads. The input is refilled before each call, outside the timing; median
# and minimum over the repetitions. Built here at -O2 from the two source files alone
# (silu.c needs nothing else of itscam), unless SILU_BENCH_BIN names a built test_silu.
# usage: bench/silu_speed.sh
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${SILU_BENCH_BIN:-}
if [ -z "$BIN" ]; then
  TMP=$(mktemp -d)
  trap 'rm -rf "$TMP"' EXIT
  BIN=$TMP/silu_bench
  ${CC:-cc} -O2 -std=c11 -D_GNU_SOURCE -DITSCAM_HAVE_CPU -DITSCAM_SOURCE_DIR="\"$ROOT\"" \
    -I"$ROOT/src" -I"$ROOT/tests" "$ROOT/src/backend/cpu/silu.c" "$ROOT/tests/test_silu.c" \
    -o "$BIN" -ldnnl -lm -ldl
fi
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) CPUs" >&2
"$BIN" --bench
