#!/bin/sh
# itscam watch --camera-config: tracking and analytics on a shared video read with --fast.
# Every detection has a track_id key; event lines come as they happen; the last line's
# totals per line, class and direction equal the line_cross and wrong_way events printed;
# a bad zone in the file is refused with its file, line and key.
# usage: test_watch_analytics.sh ITSCAM_CLI SOURCE_DIR
set -eu
CLI=$1
SHARED=${ITSCAM_SHARED:-$2/../shared}
MODEL=$SHARED/models/yolo11n-320.onnx
VIDEO=$SHARED/videos/urban_road_cctv.mp4
[ -f "$MODEL" ] && [ -f "$VIDEO" ] || { echo "skip: $MODEL or $VIDEO not found"; exit 77; }
command -v python3 >/dev/null 2>&1 || { echo "skip: python3 not found"; exit 77; }
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
cat > "$T/cam.yaml" <<YAML
track:
  track_buffer: 30
cameras:
  - id: road
    url: unused
    coordinates: normalized
    lines:
      - {id: mid, points: [[0, 0.55], [1, 0.55]], direction: a_to_b}
    zones:
      - {id: all, polygon: [[0, 0], [1, 0], [1, 1], [0, 1]]}
YAML
"$CLI" watch --model "$MODEL" --camera-config "$T/cam.yaml" --fast --max-frames 120 "$VIDEO" > "$T/out.jsonl"
python3 - "$T/out.jsonl" <<'PY'
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
frames = [l for l in lines if "frame" in l]
events = [l["event"] for l in lines if "event" in l]
totals = lines[-1].get("totals")
bad = []
if len(frames) != 120: bad.append("%d frame lines, want 120" % len(frames))
if not all("track_id" in d for f in frames for d in f["detections"]): bad.append("a detection without track_id")
if not any(d["track_id"] for f in frames for d in f["detections"]): bad.append("no track ids at all")
if not totals: bad.append("no totals line last")
starts = [e for e in events if e["type"] == "track_start"]
ends = [e for e in events if e["type"] == "track_end"]
if not starts or len(starts) != len(ends): bad.append("track_start %d vs track_end %d" % (len(starts), len(ends)))
want = {}
for e in events:
    if e["type"] in ("line_cross", "wrong_way"):
        k = want.setdefault(e["class"], {"a_to_b": 0, "b_to_a": 0})
        k[e["details"]["direction"]] += 1
got = totals["lines"]["mid"] if totals else {}
if got != want: bad.append("totals %s, events say %s" % (got, want))
if any(e["type"] == "line_cross" and e["details"]["direction"] != "a_to_b" for e in events):
    bad.append("a line_cross against the allowed direction (should be wrong_way)")
print("watch: %d frames, %d events, totals %s" % (len(frames), len(events), totals))
for b in bad: print("FAIL:", b)
sys.exit(1 if bad else 0)
PY
printf 'cameras:\n  - id: road\n    url: x\n    zones:\n      - id: z\n        polygon: [[0, 0], [1, 1]]\n' > "$T/bad.yaml"
if "$CLI" watch --model "$MODEL" --camera-config "$T/bad.yaml" "$VIDEO" > /dev/null 2> "$T/err"; then
    echo "FAIL: a two-point zone was accepted"; exit 1
fi
grep -q "bad.yaml:6: cameras\[0\].zones\[0\].polygon: must be a list of 3 to 64 points" "$T/err" || {
    echo "FAIL: unexpected error: $(cat "$T/err")"; exit 1; }
echo "test_watch_analytics: ok"
