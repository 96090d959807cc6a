#!/bin/sh
# Camera efficiency, the cameras issue's target: with --find-max at 5 detect fps on the
# 320 dynamic-batch model over the shared videos, max_cameras x 5 should reach at least
# 0.75 x the offline throughput of `itscam bench --images` on the same model, precision
# and threads (decode, scheduling and output may cost at most a quarter of the capacity).
#
#  1. `itscam performance benchmark --find-max` (in process, file cameras, shedding off):
#     max_cameras, and the precision and threads it ran with;
#  2. `itscam bench --images` on the same model, precision and threads (all the camera
#     run's workers' threads, in one session) at the batch sizes
#     the camera run's scheduler forms (1 and its preferred 4 and 8); the best is the
#     offline throughput;
#  3. the ratio, with the CPU model and flags and the load average before and after
#     (other work on the machine lowers both figures; the ratio suffers less).
#
# usage: bench/cameras.sh [--model M] [--precision P] [--threads N] [--detect-fps F]
#                         [--sla-ms MS] [--duration S] [--warmup S] [--sources LIST]
#                         [--images DIR] [--max-cameras CAP]
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SHARED=${ITSCAM_SHARED:-$ROOT/../shared}
MODEL=$SHARED/models/yolo11n-320-dynamic.onnx
PREC=auto THREADS="" FPS=5 SLA=100 DUR=15 WARM=5 CAP=256
SOURCES=$(ls "$SHARED"/videos/*.mp4 2>/dev/null | tr '\n' ',' | sed 's/,$//')
IMAGES=$SHARED/coco128/images
[ -d "$IMAGES" ] || IMAGES=$SHARED/images
die() { echo "cameras.sh: $*" >&2; exit 2; }
while [ $# -gt 0 ]; do
  [ $# -ge 2 ] || die "$1 needs a value"
  case $1 in
    --model) MODEL=$2 ;; --precision) PREC=$2 ;; --threads) THREADS=$2 ;; --detect-fps) FPS=$2 ;;
    --sla-ms) SLA=$2 ;; --duration) DUR=$2 ;; --warmup) WARM=$2 ;; --sources) SOURCES=$2 ;;
    --images) IMAGES=$2 ;; --max-cameras) CAP=$2 ;;
    *) die "unknown option $1 (see the header of $0)" ;;
  esac
  shift 2
done
CLI=${ITSCAM_CLI:-$ROOT/build/itscam}
[ -x "$CLI" ] || die "build itscam first (cmake -B build -DCMAKE_BUILD_TYPE=Release && cmake --build build) or set ITSCAM_CLI"
[ -f "$MODEL" ] || die "$MODEL is absent"
[ -n "$SOURCES" ] || die "no videos in $SHARED/videos (give --sources)"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)

TH=""
[ -n "$THREADS" ] && TH="--threads $THREADS"
echo "1. find-max: $FPS detect fps, SLA p95 <= $SLA ms, $DUR s per probe after $WARM s warm-up" >&2
# shellcheck disable=SC2086
"$CLI" performance benchmark --find-max --max-cameras "$CAP" --detect-fps "$FPS" --sla-ms "$SLA" \
  --duration "$DUR" --warmup "$WARM" --model "$MODEL" --precision "$PREC" $TH --source "$SOURCES" --json \
  > "$TMP/cams.json"
# The offline peer gets every thread the camera run's workers had together (2 workers of 1
# thread on 2 cores -> one session of 2 threads): the same cores, its best shape.
P=$(python3 -c 'import json,sys; m=json.load(open(sys.argv[1]))["machine"]; print(m["precision"], m["threads"] * m["workers"], m["max_batch"])' "$TMP/cams.json")
set -- $P
PREC_USED=$1 THREADS_USED=$2 MB=$3
BATCHES=1
for b in 4 8; do [ "$b" -le "$MB" ] && BATCHES="$BATCHES,$b"; done

echo "2. offline: itscam bench --images $IMAGES --batch $BATCHES --precision $PREC_USED --threads $THREADS_USED" >&2
"$CLI" bench --model "$MODEL" --precision "$PREC_USED" --threads "$THREADS_USED" --batch "$BATCHES" \
  --images "$IMAGES" --duration 10 --json > "$TMP/offline.json"
LOAD1=$(cut -d' ' -f1-3 /proc/loadavg)

python3 - "$TMP/cams.json" "$TMP/offline.json" "$FPS" "$LOAD0" "$LOAD1" <<'PY'
import json, sys
c = json.load(open(sys.argv[1])); o = json.load(open(sys.argv[2])); fps = float(sys.argv[3])
m = c["machine"]
print("machine:   %s, %d logical CPUs, %d cores; flags: %s" % (m["cpu"], m["logical_cpus"], m["physical_cores"], m["flags"]))
print("engine:    %s; %s, %s, %d threads, max batch %d" % (m["isa"], m["backend"], m["precision"], m["threads"], m["max_batch"]))
print("load avg:  %s before, %s after (1, 5, 15 min)" % (sys.argv[4], sys.argv[5]))
print("find-max probes:")
for p in c["probes"]:
    l = p["latency_ms"]
    print("  %3d cameras: %7.2f detect fps, slowest camera %5.2f, p95 %s ms, p99 %s ms, CPU %s%%: %s" % (
        p["cameras"], p["detect_fps"], p["min_camera_detect_fps"], l["p95"], l["p99"], p["cpu_percent"],
        "pass" if p["pass"] else "fail (%s)" % p["why"]))
best = None
print("offline (itscam bench --images):")
for r in o["results"]:
    print("  batch %d: %.1f images/s (p50 %.1f ms per batch)" % (r["batch"], r["throughput_ips"], r["latency_ms"]["p50"]))
    if best is None or r["throughput_ips"] > best["throughput_ips"]: best = r
n = c["max_cameras"]; cap = n * fps; off = best["throughput_ips"]
t = c["totals"]["latency_ms"] if n else {"p95": None, "p99": None}
print("max_cameras: %d at %g fps = %.1f detections/s (p95 %s ms, p99 %s ms at that size)" % (n, fps, cap, t["p95"], t["p99"]))
print("offline:     %.1f images/s (batch %d)" % (off, best["batch"]))
print("ratio:       %.2f (target >= 0.75): %s" % (cap / off if off else 0, "met" if off and cap >= 0.75 * off else "not met"))
PY
