#!/bin/sh
# The server's load table, in one run on one machine: `itscam serve` (max_batch 8) under
# `itscam performance benchmark` at 1, 4, 8, 16 and 64 closed-loop keep-alive clients
# (JPEG bytes in, detections out), and offline `itscam bench` at batch 1 for the p99 a
# lone request is compared with. The load generator runs at nice 19 so that it takes the
# CPU only when the server leaves it idle: on a small machine it would otherwise steal
# the server's cores and the table would measure the client.
# Prints: clients | img/s | p50 | p99 | mean batch | server queue ms, then the p99 at one
# client against offline batch 1 (target: at most +5 ms).
#
# usage: bench/server_load.sh [--model M] [--threads N] [--duration S] [--images DIR]
#                             [--clients LIST] [--max-batch N]
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SHARED=${ITSCAM_SHARED:-$ROOT/../shared}
MODEL=$SHARED/models/yolo11n.onnx
THREADS=2 DUR=15 IMAGES=$SHARED/images CLIENTS=1,4,8,16,64 MAXB=8
die() { echo "server_load.sh: $*" >&2; exit 2; }
while [ $# -gt 0 ]; do
  [ $# -ge 2 ] || die "$1 needs a value"
  case $1 in
    --model) MODEL=$2 ;; --threads) THREADS=$2 ;; --duration) DUR=$2 ;; --images) IMAGES=$2 ;;
    --clients) CLIENTS=$2 ;; --max-batch) MAXB=$2 ;;
    *) die "unknown option $1 (see the header of $0)" ;;
  esac
  shift 2
done
. "$ROOT/bench/lib.sh"

echo "offline: itscam bench --batch 1 --threads $THREADS" >&2
"$CLI" bench --model "$MODEL" --threads "$THREADS" --batch 1 --images "$IMAGES" --duration "$DUR" --json \
  > "$TMP/offline.json"

start_serve --model "$MODEL" --threads "$THREADS" --max-batch "$MAXB" \
  --batching.queue_limit_normal 4096 --timeout-ms 60000
echo "server: http://127.0.0.1:$PORT; clients $CLIENTS, $DUR s each, load generator at nice 19" >&2
nice -n 19 "$CLI" performance benchmark --url "http://127.0.0.1:$PORT" --images "$IMAGES" --warmup 3 \
  --concurrency "$CLIENTS" --duration "$DUR" --json > "$TMP/load.json"

/usr/bin/python3 - "$TMP" "$THREADS" "$MODEL" "$MAXB" <<'PY'
import json, os, sys
tmp, threads, model, maxb = sys.argv[1:5]
off = json.load(open(os.path.join(tmp, "offline.json")))["results"][0]
res = json.load(open(os.path.join(tmp, "load.json")))["results"]
print("model %s, %s inference threads, max_batch %s, one worker" % (os.path.basename(model), threads, maxb))
print("| clients | img/s | p50 ms | p99 ms | mean batch | server queue ms | errors |")
print("|---|---|---|---|---|---|---|")
for r in res:
    lat = r["latency_ms"]
    print("| %d | %.1f | %.1f | %.1f | %.1f | %.1f | %d |" % (r["concurrency"], r["throughput_rps"], lat["p50"],
          lat["p99"], r["batch_mean"], r["server_queue_ms"], r["errors"] + r["rejected"] + r["timeouts"]))
one = [r for r in res if r["concurrency"] == 1]
if one:
    d = one[0]["latency_ms"]["p99"] - off["latency_ms"]["p99"]
    print("p99 end to end, 1 client vs offline batch 1 p99: %.1f ms vs %.1f ms: %+.1f ms (target <= +5 ms)"
          % (one[0]["latency_ms"]["p99"], off["latency_ms"]["p99"], d))
PY
