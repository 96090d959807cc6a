#!/bin/sh
# itscam watch end to end: a shared video as a camera prints one JSON line per detected
# frame, its detections carrying ByteTrack ids; a missing file and a file with no video
# fail with the reason and exit 1.
set -u
CLI=$1
SRC=$2
SHARED=${ITSCAM_SHARED:-$SRC/../shared}
V="$SHARED/videos/highway_tunnel_webcam.mp4"
M="$SHARED/models/yolo11n-320.onnx"
if [ ! -f "$V" ] || [ ! -f "$M" ]; then echo "SKIP: $V or $M absent"; exit 77; fi
fails=0 passes=0
ok() { passes=$((passes + 1)); }
bad() { fails=$((fails + 1)); echo "FAIL: $*"; }
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT

"$CLI" watch "$V" --model "$M" --fast --max-frames 5 >"$T/out" 2>"$T/err" && ok || { bad "watch exit $?"; cat "$T/err"; }
/usr/bin/python3 - "$T/out" <<'PY' && ok || bad "watch prints 5 JSON lines with detections and track ids"
import json, sys
lines = open(sys.argv[1]).read().splitlines()
assert len(lines) == 5, lines
prev = -1
for l in lines:
    d = json.loads(l)
    assert set(d) == {"frame", "captured_at", "latency_ms", "detections"}, d
    assert d["frame"] > prev and d["latency_ms"] >= 0 and d["captured_at"] > 1.6e12, d
    prev = d["frame"]
    for det in d["detections"]:
        assert set(det) == {"class_id", "class", "score", "box", "track_id"} and len(det["box"]) == 4, det
        assert det["track_id"] is None or (isinstance(det["track_id"], int) and det["track_id"] >= 1), det
assert sum(len(json.loads(l)["detections"]) for l in lines) > 0, "no detections at all"
# ByteTrack ids: some detections carry one, and a vehicle keeps its id from frame to frame
frames_of = {}
for l in lines:
    for det in json.loads(l)["detections"]:
        if det["track_id"] is not None:
            frames_of.setdefault(det["track_id"], set()).add(json.loads(l)["frame"])
assert frames_of, "no detection has a track_id"
assert max(len(f) for f in frames_of.values()) >= 3, frames_of
PY

"$CLI" watch "$V" --model "$M" --fps 5 --max-frames 3 >"$T/out" 2>"$T/err" && ok || bad "watch --fps exit $?"
[ "$(wc -l <"$T/out")" -eq 3 ] && ok || bad "--fps 5 --max-frames 3: $(wc -l <"$T/out") lines"

"$CLI" watch /nonexistent/cam.mp4 --model "$M" >"$T/out" 2>"$T/err"; rc=$?
[ $rc -eq 1 ] && grep -q "cam.mp4: not found" "$T/err" && ok || { bad "missing file: exit $rc"; cat "$T/err"; }
printf 'not a video' >"$T/x.mp4"
"$CLI" watch "$T/x.mp4" --model "$M" >"$T/out" 2>"$T/err"; rc=$?
[ $rc -eq 1 ] && grep -q "not a playable media file" "$T/err" && ok || { bad "not a video: exit $rc"; cat "$T/err"; }
"$CLI" watch rtsp://admin:s3cret@127.0.0.1:1/x --model "$M" >"$T/out" 2>"$T/err"; rc=$?
[ $rc -eq 1 ] && grep -q "rtsp://\*\*\*@127.0.0.1:1/x" "$T/err" && ! grep -q s3cret "$T/err" && ok ||
  { bad "refused rtsp: exit $rc, credentials hidden"; cat "$T/err"; }
# --decode-only: no model, one JSON summary; keyframes decode few, a 5 fps consumer takes
# about 5 per second of video (the clip is 15 s at 25 fps)
"$CLI" watch "$V" --decode-only --fast --take-fps 5 >"$T/none" 2>"$T/err" &&
"$CLI" watch "$V" --decode-only --fast --skip keyframes >"$T/key" 2>>"$T/err" && ok || { bad "decode-only exit"; cat "$T/err"; }
/usr/bin/python3 - "$T/none" "$T/key" <<'PY' && ok || bad "decode-only summaries"
import json, sys
a, k = (json.loads(open(f).read()) for f in sys.argv[1:3])
assert a["frames_decoded"] == 375 and 70 <= a["frames_taken"] <= 80 and a["cpu_s"] > 0, a
assert a["skip"] == "none" and k["skip"] == "keyframes", (a, k)
assert 0 < k["frames_decoded"] < 40 and k["frames_taken"] == 0 and k["packets_skipped"] > 300, k
PY
"$CLI" watch "$V" --decode-only --skip some >"$T/out" 2>"$T/err"; rc=$?
[ $rc -eq 2 ] && ok || bad "--skip some: exit $rc"
"$CLI" watch "$V" --decode-only --hwaccel vaapi >"$T/out" 2>"$T/err"; rc=$?
[ $rc -eq 1 ] && grep -q "decoder error: hwaccel: no hardware decoder (vaapi" "$T/err" && ok ||
  { [ $rc -eq 0 ] && echo "(vaapi present: decoded on it)" && ok; } || { bad "hwaccel vaapi: exit $rc"; cat "$T/err"; }
"$CLI" watch "$V" >"$T/out" 2>"$T/err"; rc=$?
[ $rc -eq 2 ] && ok || bad "watch without --model: exit $rc"

echo "$passes passed, $fails failed"
[ "$fails" -eq 0 ]
