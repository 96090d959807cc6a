#!/bin/sh
# Accuracy: itscam detect --conf 0.001 over coco128, scored by the shared Ultralytics-style
# mAP tool, must be within 0.005 of ONNX Runtime's mAP50-95 (0.4757).
set -eu
CLI=$1
SRC=$2
SHARED=${ITSCAM_SHARED:-$SRC/../shared}
for f in "$SHARED/models/yolo11n.onnx" "$SHARED/coco128/images" "$SHARED/tools/yolo_map.py"; do
  [ -e "$f" ] || { echo "SKIP: $f is absent"; exit 77; }
done
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
"$CLI" detect --model "$SHARED/models/yolo11n.onnx" --conf 0.001 --output "$OUT/dets.json" "$SHARED/coco128/images"
/usr/bin/python3 "$SHARED/tools/yolo_map.py" "$OUT/dets.json" "$SHARED/coco128/labels" --json > "$OUT/map.json"
cat "$OUT/map.json"
/usr/bin/python3 - "$OUT/map.json" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
v = m.get("mAP50-95", m.get("map50_95"))
ref = 0.4757
print(f"mAP50-95 {v:.4f} (reference {ref}, difference {v - ref:+.4f})")
sys.exit(0 if abs(v - ref) <= 0.005 else 1)
PY
