#!/bin/sh
# itscam eval over coco128 with the 320 model must agree to 1e-4 with the shared
# yolo_map.py scoring itscam detect's --conf 0.001 output on the same images; and the
# command's argument errors exit 2, missing folders exit 1 with a message.
set -eu
CLI=$1
SRC=$2
SHARED=${ITSCAM_SHARED:-$SRC/../shared}
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT

# Error cases first: they need no shared data.
rc=0
"$CLI" eval --model m.onnx --images . 2>"$OUT/err" || rc=$?
[ "$rc" = 2 ] || { echo "FAIL: missing --labels exited $rc, expected 2"; exit 1; }
rc=0
"$CLI" eval --model m.onnx --images "$OUT/no-such-dir" --labels "$OUT" 2>"$OUT/err" || rc=$?
[ "$rc" = 1 ] || { echo "FAIL: missing images dir exited $rc, expected 1"; exit 1; }
grep -q "no-such-dir" "$OUT/err" || { echo "FAIL: no message naming the missing images dir:"; cat "$OUT/err"; exit 1; }
rc=0
"$CLI" eval --model m.onnx --images "$OUT" --labels "$OUT" --conf x 2>"$OUT/err" || rc=$?
[ "$rc" = 2 ] || { echo "FAIL: bad --conf exited $rc, expected 2"; exit 1; }
"$CLI" eval --help | grep -q -- "--labels" || { echo "FAIL: eval --help"; exit 1; }

MODEL=$SHARED/models/yolo11n-320.onnx
for f in "$MODEL" "$SHARED/coco128/images" "$SHARED/coco128/labels" "$SHARED/tools/yolo_map.py"; do
  [ -e "$f" ] || { echo "SKIP: $f is absent"; exit 77; }
done
"$CLI" eval --model "$MODEL" --images "$SHARED/coco128/images" --labels "$SHARED/coco128/labels" --json > "$OUT/eval.json"
"$CLI" detect --model "$MODEL" --conf 0.001 --output "$OUT/dets.json" "$SHARED/coco128/images"
/usr/bin/python3 "$SHARED/tools/yolo_map.py" "$OUT/dets.json" "$SHARED/coco128/labels" --json > "$OUT/map.json"
cat "$OUT/eval.json" "$OUT/map.json"
/usr/bin/python3 - "$OUT/eval.json" "$OUT/map.json" <<'PY'
import json, sys
e = json.load(open(sys.argv[1])); m = json.load(open(sys.argv[2]))
ok = True
for k in ("mAP50", "mAP50-95"):
    d = e[k] - m[k]
    print(f"{k}: itscam eval {e[k]:.6f}, yolo_map.py {m[k]:.6f}, difference {d:+.2e}")
    ok &= abs(d) <= 1e-4
for k in ("images", "labels", "classes"):
    if e[k] != m[k]:
        print(f"{k}: itscam eval {e[k]}, yolo_map.py {m[k]}"); ok = False
sys.exit(0 if ok else 1)
PY
