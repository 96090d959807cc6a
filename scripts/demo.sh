#!/bin/sh
# The main job: install dependencies, build itscam (Release), detect objects in the shared
# sample images with YOLO11n (JSON on stdout, annotated JPEGs in out/), then start the
# server on loopback, send it the same image over HTTP and show its answer and metrics.
set -eu
cd "$(dirname "$0")/.."
sh scripts/setup.sh >&2
SHARED="${ITSCAM_SHARED:-$(cd .. && pwd)/shared}"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >&2
cmake --build build -j"$(nproc 2>/dev/null || echo 2)" >&2
./build/itscam detect --model "$SHARED/models/yolo11n.onnx" --save out "$SHARED/images"
echo "annotated images are in out/" >&2

LOG=$(mktemp)
./build/itscam serve --model "$SHARED/models/yolo11n.onnx" --host 127.0.0.1 --port 0 >"$LOG" 2>&1 &
SRV=$!
trap 'kill $SRV 2>/dev/null; rm -f "$LOG"' EXIT
i=0
until grep -q "itscam serve: ready" "$LOG"; do
  i=$((i + 1))
  if [ $i -gt 600 ] || ! kill -0 $SRV 2>/dev/null; then cat "$LOG" >&2; exit 1; fi
  sleep 0.1
done
URL=$(sed -n 's/.*listening on \(http:\/\/[0-9.:]*\).*/\1/p' "$LOG" | head -1)
echo "server: $URL; POST /v1/detect with bus.jpg:" >&2
curl -sS -H "Content-Type: image/jpeg" --data-binary "@$SHARED/images/bus.jpg" "$URL/v1/detect" >&2
echo >&2
./build/itscam performance status --url "$URL" >&2
kill -TERM $SRV
wait $SRV 2>/dev/null || true
trap - EXIT
rm -f "$LOG"
