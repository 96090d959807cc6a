#!/bin/sh
# The server against the engine, in one run on one machine:
#  1. offline `itscam bench` (batch 1 latency, batch 8 throughput) on the same model,
#     precision and threads;
#  2. `itscam serve` with max_batch 8, loaded by `itscam performance benchmark` at
#     concurrency 1 and 16 (JPEG bytes in, detections out);
#  3. urgent traffic alone, then urgent traffic while batch-priority traffic saturates
#     the server.
# Prints a table of the three figures the server issue asks for, with their ratios.
#
# usage: bench/server_bench.sh [--model M] [--precision P] [--calib FILE] [--threads N]
#                              [--duration S] [--images DIR]
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SHARED=${ITSCAM_SHARED:-$ROOT/../shared}
MODEL=$SHARED/models/yolo11n.onnx
PREC=fp32 CALIB="" THREADS=2 DUR=20 IMAGES=$SHARED/images
die() { echo "server_bench.sh: $*" >&2; exit 2; }
while [ $# -gt 0 ]; do
  [ $# -ge 2 ] || die "$1 needs a value"
  case $1 in
    --model) MODEL=$2 ;; --precision) PREC=$2 ;; --calib) CALIB=$2 ;; --threads) THREADS=$2 ;;
    --duration) DUR=$2 ;; --images) IMAGES=$2 ;;
    *) die "unknown option $1 (see the header of $0)" ;;
  esac
  shift 2
done
. "$ROOT/bench/lib.sh"
CAL=""
[ -n "$CALIB" ] && CAL="--calib $CALIB"

echo "offline: itscam bench --batch 1,8 --precision $PREC --threads $THREADS --images $IMAGES" >&2
# shellcheck disable=SC2086
"$CLI" bench --model "$MODEL" --precision "$PREC" $CAL --threads "$THREADS" --batch 1,8 --images "$IMAGES" \
  --duration "$DUR" --json > "$TMP/offline.json"

# shellcheck disable=SC2086
start_serve --model "$MODEL" --precision "$PREC" $CAL --threads "$THREADS" --workers 1 --max-batch 8 \
  --batching.preferred_batch 8 --batching.queue_limit_batch 4096 \
  --batching.queue_limit_urgent 4096 --batching.queue_limit_normal 4096 --timeout-ms 60000
echo "server: $URL" >&2

PB() { "$CLI" performance benchmark --url "$URL" --images "$IMAGES" --warmup 3 --json "$@"; }
echo "server: concurrency 1 and 16" >&2
PB --concurrency 1,16 --duration "$DUR" > "$TMP/c.json"
echo "server: urgent alone" >&2
PB --concurrency 1 --priority urgent --duration "$DUR" > "$TMP/u0.json"
echo "server: urgent under batch-priority saturation" >&2
PB --concurrency 16 --priority batch --duration $((DUR + 8)) > "$TMP/bg.json" &
BG=$!
sleep 5
PB --concurrency 1 --priority urgent --duration "$DUR" > "$TMP/u1.json"
wait "$BG"

/usr/bin/python3 - "$TMP" "$PREC" "$THREADS" "$MODEL" <<'EOF'
import json, os, sys
tmp, prec, threads, model = sys.argv[1:5]
off = {r["batch"]: r for r in json.load(open(os.path.join(tmp, "offline.json")))["results"]}
c = {r["concurrency"]: r for r in json.load(open(os.path.join(tmp, "c.json")))["results"]}
u0 = json.load(open(os.path.join(tmp, "u0.json")))["results"][0]
u1 = json.load(open(os.path.join(tmp, "u1.json")))["results"][0]
bg = json.load(open(os.path.join(tmp, "bg.json")))["results"][0]
print("model %s, precision %s, %s threads, server max_batch 8, one worker" % (os.path.basename(model), prec, threads))
print("| figure | server | offline / reference | ratio | target |")
print("|---|---|---|---|---|")
r = c[16]["throughput_rps"] / off[8]["throughput_ips"]
print("| throughput, concurrency 16 vs offline batch 8 | %.1f img/s (batch mean %.1f) | %.1f img/s | %.2f | >= 0.90 |"
      % (c[16]["throughput_rps"], c[16]["batch_mean"], off[8]["throughput_ips"], r))
d = c[1]["latency_ms"]["p99"] - off[1]["latency_ms"]["p99"]
print("| p99 end to end, concurrency 1 vs offline batch 1 p99 | %.1f ms | %.1f ms | %+.1f ms | <= +5 ms |"
      % (c[1]["latency_ms"]["p99"], off[1]["latency_ms"]["p99"], d))
print("| urgent p95 under batch saturation vs urgent alone | %.1f ms | %.1f ms | %.2f | <= 2.00 |"
      % (u1["latency_ms"]["p95"], u0["latency_ms"]["p95"], u1["latency_ms"]["p95"] / u0["latency_ms"]["p95"]))
print("| batch-priority traffic meanwhile | %.1f req/s ok, %d rejected, %d timeouts, p95 %.0f ms | | | waits or is refused |"
      % (bg["throughput_rps"], bg["rejected"], bg["timeouts"], bg["latency_ms"]["p95"]))
print("offline stages (ms, batch 1): %s" % json.dumps(off[1].get("stages_ms", {})))
print("server at concurrency 16: queue %.1f ms, inference %.1f ms per request" % (c[16]["server_queue_ms"], c[16]["server_inference_ms"]))
EOF
