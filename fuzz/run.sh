#!/bin/sh
# Run every libFuzzer target in BUILD/fuzz for SECONDS each, seeded with small inputs:
# the ONNX node-test models for the model loader, nothing for the image decoder.
# A crash leaves its input in the work folder and fails the run.
set -eu
BUILD=$1
SECONDS_EACH=${2:-30}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
found=0
for fz in "$BUILD"/fuzz/fuzz_*; do
  [ -x "$fz" ] || continue
  found=1
  name=$(basename "$fz")
  mkdir -p "$WORK/$name"
  if [ "$name" = fuzz_model ]; then
    for d in /usr/share/libonnx-testdata/data/node/test_conv_with_strides_padding \
             /usr/share/libonnx-testdata/data/node/test_maxpool_2d_pads \
             /usr/share/libonnx-testdata/data/node/test_resize_upsample_scales_nearest \
             /usr/share/libonnx-testdata/data/node/test_dynamicquantizelinear \
             /usr/share/libonnx-testdata/data/node/test_convinteger_with_padding; do
      [ -f "$d/model.onnx" ] && cp "$d/model.onnx" "$WORK/$name/$(basename "$d").onnx"
    done
  fi
  echo "fuzzing $name for ${SECONDS_EACH}s"
  "$fz" -max_total_time="$SECONDS_EACH" -max_len=65536 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$WORK/" "$WORK/$name" 2>"$WORK/$name.log" || {
    tail -50 "$WORK/$name.log"; echo "fuzz: $name failed"; exit 1; }
  grep -E "stat::number_of_executed_units" "$WORK/$name.log" || true
done
[ "$found" -eq 1 ] || { echo "fuzz: no targets in $BUILD/fuzz"; exit 1; }
echo "fuzz: 0 crashes"
