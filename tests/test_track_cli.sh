#!/bin/sh
# itscam track end to end: the input and output JSON formats, a scene with known ids
# (two objects, one hidden for a while), the settings' flags, and the errors (usage: exit 2;
# unreadable or malformed detections: exit 1 with a message naming the file and the place).
set -u
CLI=$1
fails=0 passes=0
ok() { passes=$((passes + 1)); }
bad() { fails=$((fails + 1)); echo "FAIL: $*"; }
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT

# Object A (class 2) moves right on every frame; object B (class 0) is visible on frames
# 0-9, hidden for 40 frames (more than track_buffer 30), back on 50-59. Frames 20-29 are
# absent from the file: a gap counts as frames without detections, so A is lost there too
# (10 frames) and keeps its id. A low-score (0.15) object C never starts a track.
/usr/bin/python3 - "$T/dets.json" <<'PY'
import json, sys
frames = []
for f in list(range(0, 20)) + list(range(30, 60)):
    d = [{"box": [10 + 3 * f, 20, 50 + 3 * f, 100], "score": 0.9, "class_id": 2}]
    if f < 10 or f >= 50:
        d.insert(0, {"box": [400, 200, 460, 260], "score": 0.7, "class_id": 0})
    d.append({"box": [600, 10, 630, 40], "score": 0.15, "class_id": 5})
    frames.append({"frame": f, "detections": d})
json.dump({"width": 640, "height": 360, "frames": frames}, open(sys.argv[1], "w"))
PY

"$CLI" track --detections "$T/dets.json" >"$T/out.json" 2>"$T/err" && ok || { bad "track exit $?"; cat "$T/err"; }
/usr/bin/python3 - "$T/out.json" "$T/dets.json" <<'PY' && ok || bad "default run: formats and ids"
import json, sys
out = json.load(open(sys.argv[1])); inp = json.load(open(sys.argv[2]))
assert set(out) == {"frames"}, out.keys()
assert [f["frame"] for f in out["frames"]] == [f["frame"] for f in inp["frames"]]
for fo, fi in zip(out["frames"], inp["frames"]):
    assert set(fo) == {"frame", "tracks"}, fo
    for t in fo["tracks"]:
        assert set(t) == {"track_id", "box", "score", "class_id", "det_index"}, t
        d = fi["detections"][t["det_index"]]
        assert t["score"] == d["score"] and t["class_id"] == d["class_id"], (t, d)
        assert len(t["box"]) == 4 and all(abs(a - b) < 6 for a, b in zip(t["box"], d["box"])), (t, d)
        assert d["score"] > 0.2, "the low-score object never has a track"
ids = {}
for f in out["frames"]:
    for t in f["tracks"]:
        ids.setdefault(t["class_id"], set()).add(t["track_id"])
# frame 0 activates A and B at once (B is first in the list: id 1, A id 2); A keeps 2
# through the gap; B comes back after 40 frames as a new, unconfirmed track (id 3, shown
# from frame 51).
assert ids == {2: {2}, 0: {1, 3}}, ids
f50 = [f for f in out["frames"] if f["frame"] == 50][0]["tracks"]
f51 = [f for f in out["frames"] if f["frame"] == 51][0]["tracks"]
assert [t["track_id"] for t in f50] == [2] and sorted(t["track_id"] for t in f51) == [2, 3], (f50, f51)
PY

# A longer buffer keeps B's id; --frame-rate 15 halves the buffer (A then loses its id in
# the 10-frame gap only with a buffer under 10: --track-buffer 16 at 15 fps is 8 frames).
"$CLI" track --detections "$T/dets.json" --track-buffer 60 --output "$T/long.json" 2>"$T/err" && ok || { bad "--track-buffer 60 exit $?"; cat "$T/err"; }
"$CLI" track --detections "$T/dets.json" --track-buffer 16 --frame-rate 15 >"$T/short.json" 2>"$T/err" && ok || bad "--frame-rate exit $?"
"$CLI" track --detections "$T/dets.json" --new-track-thresh 0.95 --track-high-thresh 0.5 --track-low-thresh 0.05 \
  --match-thresh 0.7 --fuse-score 0 --fuse-score-low 1 >"$T/none.json" 2>"$T/err" && ok || bad "all flags exit $?"
/usr/bin/python3 - "$T/long.json" "$T/short.json" "$T/none.json" <<'PY' && ok || bad "flags change the ids as expected"
import json, sys
def ids(p):
    r = {}
    for f in json.load(open(p))["frames"]:
        for t in f["tracks"]:
            r.setdefault(t["class_id"], set()).add(t["track_id"])
    return r
assert ids(sys.argv[1]) == {2: {2}, 0: {1}}, ids(sys.argv[1])
s = ids(sys.argv[2])
assert len(s[2]) == 2 and len(s[0]) == 2, s
assert ids(sys.argv[3]) == {}, ids(sys.argv[3])
PY

# Usage errors: exit 2.
rc=0; "$CLI" track >/dev/null 2>"$T/err" || rc=$?
[ "$rc" = 2 ] && grep -q -- "--detections" "$T/err" && ok || bad "no --detections: exit $rc"
for args in "--match-thresh x" "--match-thresh 1.5" "--fuse-score 2" "--bogus 1"; do
  rc=0; "$CLI" track --detections "$T/dets.json" $args >/dev/null 2>"$T/err" || rc=$?
  [ "$rc" = 2 ] && ok || { bad "'$args' exited $rc, expected 2"; cat "$T/err"; }
done
"$CLI" track --help | grep -q -- "--track-high-thresh" && ok || bad "track --help"
"$CLI" help track | grep -q -- "--new-track-thresh" && ok || bad "help track"
"$CLI" --help | grep -q "track" && ok || bad "track in the command list"

# Unreadable and malformed files: exit 1, the file and the place named.
rc=0; "$CLI" track --detections "$T/absent.json" >/dev/null 2>"$T/err" || rc=$?
[ "$rc" = 1 ] && grep -q "absent.json" "$T/err" && ok || bad "missing file: exit $rc: $(cat "$T/err")"
check_bad() { # JSON, expected fragment of the message
  printf '%s' "$1" >"$T/bad.json"
  rc=0; "$CLI" track --detections "$T/bad.json" >/dev/null 2>"$T/err" || rc=$?
  if [ "$rc" = 1 ] && grep -q "bad.json" "$T/err" && grep -qF -- "$2" "$T/err"; then ok
  else bad "malformed input ($2): exit $rc: $(cat "$T/err")"; fi
}
check_bad '{"width": 640, "height": 360, "frames": [' "line 1"
check_bad '{"width": 640, "frames": []}' "height: missing"
check_bad '{"width": 640, "height": 360, "frames": [{"frame": 0, "detections": [{"box": [0, 0, 10, 10], "score": 0.5, "class_id": -1}]}]}' \
  "frames[0].detections[0].class_id: -1 is outside"
check_bad '{"width": 640, "height": 360, "frames": [{"frame": 3, "detections": []}, {"frame": 2, "detections": []}]}' \
  "frames[1].frame: 2 does not follow 3"
check_bad '{"width": 640, "height": 360, "frames": [{"frame": 0, "detections": [{"box": [0, 0, "a", 10], "score": 0.5, "class_id": 1}]}]}' \
  "frames[0].detections[0].box[2]: not a number"

# An empty list of frames is fine.
printf '{"width": 1, "height": 1, "frames": []}' >"$T/empty.json"
"$CLI" track --detections "$T/empty.json" >"$T/out" 2>"$T/err" && \
  /usr/bin/python3 -c 'import json,sys; assert json.load(open(sys.argv[1])) == {"frames": []}' "$T/out" && ok || bad "empty frames"

echo "test_track_cli: $passes passed, $fails failed"
[ "$fails" = 0 ]
