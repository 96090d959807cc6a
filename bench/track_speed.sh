#!/bin/sh
# Tracking speed, the tracking issue's target: with 100 detections per frame, tracking
# (and, once wired, analytics) at most 0.3 ms per frame per camera. A synthetic scene of
# 100 objects moving with jitter and random scores (a fixed seed) over 600 frames of
# 1280x720 is replayed through `itscam track --timing`, which times the tracker alone
# per frame (not the JSON around it).
# usage: bench/track_speed.sh [FRAMES] [OBJECTS]
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
CLI=${ITSCAM_CLI:-$ROOT/build/itscam}
[ -x "$CLI" ] || { echo "track_speed.sh: build itscam first (or set ITSCAM_CLI)" >&2; exit 2; }
FRAMES=${1:-600} OBJS=${2:-100}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
python3 - "$TMP/dets.json" "$FRAMES" "$OBJS" <<'PY'
import json, random, sys
random.seed(1)
W, H = 1280, 720
path, frames_n, objs_n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
objs = [[random.uniform(0, W), random.uniform(0, H), random.uniform(-6, 6), random.uniform(-4, 4),
         random.uniform(20, 80), random.uniform(20, 60), random.choice([0, 2, 5, 7])] for _ in range(objs_n)]
frames = []
for f in range(frames_n):
    dets = []
    for o in objs:
        o[0] = (o[0] + o[2]) % W
        o[1] = (o[1] + o[3]) % H
        x1, y1 = o[0] + random.gauss(0, 1.5), o[1] + random.gauss(0, 1.5)
        dets.append({"box": [x1, y1, x1 + o[4], y1 + o[5]], "score": round(random.uniform(0.05, 0.95), 3),
                     "class_id": o[6]})
    frames.append({"frame": f, "detections": dets})
json.dump({"width": W, "height": H, "frames": frames}, open(path, "w"))
PY
"$CLI" track --detections "$TMP/dets.json" --timing --output "$TMP/tracks.json"
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) CPUs" >&2
