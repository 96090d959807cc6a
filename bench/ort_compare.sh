#!/bin/sh
# itscam against ONNX Runtime 1.30 (CPU, npm onnxruntime-node) on the same model, input
# and thread count, alternating the two ROUNDS times, and print median latencies and the
# ratio. usage: bench/ort_compare.sh [MODEL] [THREADS] [ROUNDS] [ITSCAM_BACKEND]
set -eu
cd "$(dirname "$0")/.."
SHARED=${ITSCAM_SHARED:-$(cd .. && pwd)/shared}
MODEL=${1:-$SHARED/models/yolo11n.onnx}
THREADS=${2:-2}
ROUNDS=${3:-5}
BACKEND=${4:-cpu}
REPS=20
CLI=${ITSCAM_CLI:-build/itscam}
[ -x "$CLI" ] || { echo "build itscam first (cmake -B build -DCMAKE_BUILD_TYPE=Release && cmake --build build)"; exit 1; }
sh "$SHARED/tools/ort-setup.sh" >/dev/null
case "$MODEL" in
  *320*) IN=$SHARED/reference/raw/bus-320.input.f32; SHAPE=1,3,320,320 ;;
  *) IN=$SHARED/reference/raw/bus-640.input.f32; SHAPE=1,3,640,640 ;;
esac
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
: > "$TMP/ort"; : > "$TMP/its"
i=0
while [ $i -lt "$ROUNDS" ]; do
  node "$SHARED/tools/ort_run.js" "$MODEL" "$IN" "$SHAPE" "$TMP/out.f32" "$THREADS" "$REPS" |
    /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["median_ms"])' >> "$TMP/ort"
  "$CLI" bench --model "$MODEL" --backend "$BACKEND" --threads "$THREADS" --input "$IN" --warmup 3 \
    --iterations "$REPS" --json |
    /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["results"][0]["latency_ms"]["p50"])' >> "$TMP/its"
  i=$((i + 1))
done
/usr/bin/python3 - "$TMP/ort" "$TMP/its" "$MODEL" "$THREADS" "$BACKEND" <<'PY'
import sys, statistics, os, platform
ort = [float(x) for x in open(sys.argv[1])]; its = [float(x) for x in open(sys.argv[2])]
mo, mi = statistics.median(ort), statistics.median(its)
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
print(f"machine: {cpu}, {os.cpu_count()} logical CPUs; model {os.path.basename(sys.argv[3])}, batch 1, {sys.argv[4]} threads")
print(f"{'runtime':<28}{'median ms':>10}{'ratio':>8}")
print(f"{'onnxruntime 1.30 fp32':<28}{mo:>10.2f}{1.0:>8.2f}")
print(f"{'itscam ' + sys.argv[5] + ' fp32':<28}{mi:>10.2f}{mi / mo:>8.2f}")
PY
