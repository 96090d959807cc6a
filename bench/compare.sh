#!/bin/sh
# itscam against ONNX Runtime 1.30 (CPU, npm onnxruntime-node) on the same model, input and
# thread count: batch-1 latency and batch-8 throughput, ORT fp32 versus itscam fp32, bf16
# and int8, alternating the runtimes ROUNDS times so that drift hits both alike.
#
# usage: bench/compare.sh [--model M] [--threads N] [--rounds R] [--reps N] [--reps8 N]
#                         [--backend B] [--precisions "fp32 bf16 int8"] [--batches "1 8"]
#                         [--calib FILE] [--json-out FILE]
#   ITSCAM_CLI     the itscam binary (default build/itscam, else build-bench/itscam)
#   ITSCAM_SHARED  the shared data folder (default ../shared beside the checkout)
# int8 needs a calibration table: --calib FILE, else one is built with
# `itscam calibrate --count 32` on coco128 into a temporary file. A precision this CPU
# cannot run is skipped with the reason. Only the peer's npm install may use the network.
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SHARED=${ITSCAM_SHARED:-$ROOT/../shared}
MODEL=$SHARED/models/yolo11n.onnx
THREADS=2 ROUNDS=3 REPS=20 REPS8=5 BACKEND=cpu PRECS="fp32 bf16 int8" BATCHES="1 8" CALIB="" JSON_OUT=""
die() { echo "compare.sh: $*" >&2; exit 2; }
while [ $# -gt 0 ]; do
  [ $# -ge 2 ] || die "$1 needs a value"
  case $1 in
    --model) MODEL=$2 ;; --threads) THREADS=$2 ;; --rounds) ROUNDS=$2 ;; --reps) REPS=$2 ;;
    --reps8) REPS8=$2 ;; --backend) BACKEND=$2 ;; --precisions) PRECS=$2 ;; --batches) BATCHES=$2 ;;
    --calib) CALIB=$2 ;; --json-out) JSON_OUT=$2 ;;
    *) die "unknown option $1 (see the header of $0)" ;;
  esac
  shift 2
done
CLI=${ITSCAM_CLI:-}
if [ -z "$CLI" ]; then
  for c in "$ROOT/build/itscam" "$ROOT/build-bench/itscam"; do [ -x "$c" ] && { CLI=$c; break; }; done
fi
[ -n "$CLI" ] && [ -x "$CLI" ] || { echo "build itscam first (cmake -B build -DCMAKE_BUILD_TYPE=Release && cmake --build build) or set ITSCAM_CLI"; exit 1; }
[ -f "$MODEL" ] || { echo "compare.sh: $MODEL is absent"; exit 1; }
PY=/usr/bin/python3
sh "$SHARED/tools/ort-setup.sh" >/dev/null || { echo "compare.sh: could not install the ONNX Runtime peer"; exit 1; }

case "$MODEL" in
  *320*) IN=$SHARED/reference/raw/bus-320.input.f32; HW=320,320 ;;
  *) IN=$SHARED/reference/raw/bus-640.input.f32; HW=640,640 ;;
esac
[ -f "$IN" ] || { echo "compare.sh: $IN is absent"; exit 1; }
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
# The batch-8 input: the same letterboxed frame 8 times, as itscam bench --input repeats it.
for i in 1 2 3 4 5 6 7 8; do cat "$IN"; done > "$TMP/in8.f32"
: > "$TMP/rows"; : > "$TMP/skipped"

# Which precisions run here. A mode the CPU lacks fails at session creation ("cannot run").
PROBE="--model $MODEL --backend $BACKEND --threads $THREADS --input $IN --iterations 1 --warmup 0 --json"
RUN_PRECS=""
for p in $PRECS; do
  extra=""
  if [ "$p" = int8 ]; then
    if [ -z "$CALIB" ] && ! "$CLI" bench $PROBE --precision int8 >/dev/null 2>"$TMP/err" && grep -q "cannot run" "$TMP/err"; then
      echo "$p: skipped: $(tail -n 1 "$TMP/err")" | tee -a "$TMP/skipped"; continue
    fi
    if [ -z "$CALIB" ]; then
      echo "calibrating int8 on 32 coco128 images (cpu backend, fp32, about 0.15 s per 640 image on 2 cores)..." >&2
      "$CLI" calibrate --model "$MODEL" --images "$SHARED/coco128/images" --count 32 --threads "$THREADS" \
        --out "$TMP/calib.json" 2>"$TMP/err" ||
        { echo "$p: skipped: calibration failed: $(tail -n 1 "$TMP/err")" | tee -a "$TMP/skipped"; continue; }
      CALIB=$TMP/calib.json
    fi
    extra="--calib $CALIB"
  fi
  if "$CLI" bench $PROBE --precision "$p" $extra > "$TMP/probe-$p.json" 2>"$TMP/err"; then
    RUN_PRECS="$RUN_PRECS $p"
  else
    echo "$p: skipped: $(tail -n 1 "$TMP/err")" | tee -a "$TMP/skipped"
  fi
done

median_of() { $PY -c 'import json,sys; print(json.load(sys.stdin)["median_ms"])'; }
p50_of() { $PY -c 'import json,sys; print(json.load(sys.stdin)["results"][0]["latency_ms"]["p50"])'; }
r=1
while [ $r -le "$ROUNDS" ]; do
  for b in $BATCHES; do
    reps=$REPS; [ "$b" = 1 ] || reps=$REPS8
    ms=$(node "$SHARED/tools/ort_run.js" "$MODEL" "$([ "$b" = 1 ] && echo "$IN" || echo "$TMP/in8.f32")" "$b,3,$HW" \
      "$TMP/out.f32" "$THREADS" "$reps" | median_of)
    echo "onnxruntime fp32 $b $r $ms" >> "$TMP/rows"
    for p in $RUN_PRECS; do
      extra=""; [ "$p" = int8 ] && extra="--calib $CALIB"
      ms=$("$CLI" bench --model "$MODEL" --backend "$BACKEND" --threads "$THREADS" --precision "$p" $extra \
        --input "$IN" --batch "$b" --warmup 2 --iterations "$reps" --json | p50_of)
      echo "itscam $p $b $r $ms" >> "$TMP/rows"
    done
  done
  r=$((r + 1))
done

ISA=$($PY -c 'import json,sys; print(json.load(open(sys.argv[1]))["results"][0]["isa"])' "$TMP/probe-fp32.json" 2>/dev/null || echo "?")
# data movement per inference of each precision, from its probe run (itscam bench counters)
for p in $RUN_PRECS; do
  $PY -c 'import json,sys
m = json.load(open(sys.argv[1]))["results"][0].get("data_movement_per_run")
if m: print("%s: per inference %.0f layout reorders, %.0f same-layout copies, %.0f type conversions" % (sys.argv[2], m["reorders"], m["copies"], m["conversions"]))' "$TMP/probe-$p.json" "$p" >> "$TMP/moves" 2>/dev/null || true
done
$PY - "$TMP/rows" "$TMP/skipped" "$MODEL" "$THREADS" "$ROUNDS" "$BACKEND" "$ISA" "$JSON_OUT" <<'PY'
import json, os, statistics, sys
rows_f, skipped_f, model, threads, rounds, backend, isa, json_out = sys.argv[1:]
runs = {}
for line in open(rows_f):
    rt, prec, b, _, ms = line.split()
    runs.setdefault((rt, prec, int(b)), []).append(float(ms))
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "unknown CPU")
flags = next((l.split(":", 1)[1].split() for l in open("/proc/cpuinfo") if l.startswith("flags")), [])
isa_flags = " ".join(f for f in flags if f in ("avx2", "fma") or f.startswith(("avx512", "amx", "avx_vnni")))
machine = f"{cpu}, {os.cpu_count()} logical CPUs, flags {isa_flags or 'none of avx2/avx512/amx'}; {backend} backend: {isa}"
print(f"machine: {machine}")
print(f"model {os.path.basename(model)}, {threads} threads, median over {rounds} rounds (each a median of its runs)")
print("ratio: batch 1 latency / ORT fp32 latency (lower is better); batch 8 throughput / ORT fp32 throughput (higher is better)")
print(f"{'runtime':<14}{'precision':<10}{'batch':>5}{'median ms':>11}{'img/s':>9}{'ratio':>8}")
out = []
for (rt, prec, b), v in sorted(runs.items(), key=lambda kv: (kv[0][2], kv[0][0] != "onnxruntime", kv[0][1])):
    ms = statistics.median(v)
    ips = b * 1000.0 / ms
    ref = statistics.median(runs[("onnxruntime", "fp32", b)])
    ratio = ms / ref if b == 1 else ref / ms  # throughput ratio = (b/ms) / (b/ref)
    print(f"{rt:<14}{prec:<10}{b:>5}{ms:>11.2f}{ips:>9.1f}{ratio:>8.2f}")
    out.append({"runtime": rt, "precision": prec, "batch": b, "median_latency_ms": round(ms, 3),
                "throughput_ips": round(ips, 2), "ratio_to_ort_fp32": round(ratio, 3)})
skipped = [l.strip() for l in open(skipped_f) if l.strip()]
for s in skipped: print(s)
moves_f = os.path.join(os.path.dirname(rows_f), "moves")
if os.path.exists(moves_f): print(open(moves_f).read(), end="")
if json_out:
    with open(json_out, "w") as f:
        json.dump({"machine": {"cpu": cpu, "logical_cpus": os.cpu_count(), "backend": backend, "isa": isa},
                   "model": os.path.basename(model), "threads": int(threads), "rounds": int(rounds),
                   "rows": out, "skipped": skipped}, f, indent=1)
        f.write("\n")
PY
