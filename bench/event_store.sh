#!/bin/sh
# The event store's targets, measured while cameras run (issue 12): the writer's
# sustained events/s into SQLite (target >= 20,000/s) and a camera + time-range query's
# p95 over 1,000,000 stored events (target < 20 ms). test_events measures both; it runs
# once on a quiet machine and once while `itscam serve` detects on 4 file cameras at
# 5 fps (the shared videos, the 320 model), so the figures show what camera load costs.
# usage: bench/event_store.sh   (needs the Release build in build/)
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
CLI=${ITSCAM_CLI:-$ROOT/build/itscam}
TEV=${ITSCAM_TEST_EVENTS:-$ROOT/build/tests/test_events}
SHARED=${ITSCAM_SHARED:-$ROOT/../shared}
[ -x "$CLI" ] && [ -x "$TEV" ] || { echo "event_store.sh: build itscam and test_events first" >&2; exit 2; }
TMP=$(mktemp -d)
PID=
trap '[ -n "$PID" ] && kill $PID 2>/dev/null; rm -rf "$TMP"' EXIT
run() { "$TEV" 2>/dev/null | grep -E "writer throughput|query p95|p95" | sed "s/^/  $1: /"; }
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) CPUs"
echo "flags: $(grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -E '^(avx2|avx512f|avx512_bf16|amx_tile)$' | tr '\n' ' ')"
echo "quiet:"
run quiet
cat > "$TMP/cams.yaml" <<YAML
models:
  model: $SHARED/models/yolo11n-320-dynamic.onnx
storage:
  dir: $TMP/data
cameras:
  - {id: c1, url: $SHARED/videos/urban_road_cctv.mp4, detect: {fps: 5}}
  - {id: c2, url: $SHARED/videos/intersection_cctv.mp4, detect: {fps: 5}}
  - {id: c3, url: $SHARED/videos/highway_tunnel_webcam.mp4, detect: {fps: 5}}
  - {id: c4, url: $SHARED/videos/highway_overpass_720p.mp4, detect: {fps: 5}}
YAML
"$CLI" serve --config "$TMP/cams.yaml" --host 127.0.0.1 --port 0 > "$TMP/serve.log" 2>&1 &
PID=$!
sleep 8
echo "with 4 cameras detecting at 5 fps (same machine, same time):"
run cameras
kill $PID; wait $PID 2>/dev/null || true; PID=
