#!/bin/sh
# Tracking speed, the tracking issue's target: with 100 detections per frame, tracking
# and analytics at most 0.3 ms per frame per camera. A synthetic scene of 100 objects
# moving with jitter and random scores (a fixed seed) over 600 frames of 1280x720 is
# replayed through `itscam track --timing --camera-config`, which times the tracker and
# then the camera's analytics (4 lines, 4 zones with every alert on, a calibration and a
# speed limit, through the pipeline's event path) per frame, not the JSON around them.
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
cat > "$TMP/cam.yaml" <<'YAML'
cameras:
  - id: bench
    url: none
    lines:
      - {id: l1, points: [[0, 180], [1280, 180]], direction: a_to_b}
      - {id: l2, points: [[0, 360], [1280, 360]]}
      - {id: l3, points: [[0, 540], [1280, 540]], direction: b_to_a}
      - {id: l4, points: [[640, 0], [640, 720]]}
    zones:
      - {id: z1, polygon: [[0, 0], [640, 0], [640, 360], [0, 360]], dwell_alert_s: 5, stopped_speed: 3, stopped_s: 5, congestion_count: 20, congestion_s: 2}
      - {id: z2, polygon: [[640, 0], [1280, 0], [1280, 360], [640, 360]], dwell_alert_s: 5, stopped_speed: 3, stopped_s: 5, congestion_count: 20, congestion_s: 2}
      - {id: z3, polygon: [[0, 360], [640, 360], [640, 720], [0, 720]], dwell_alert_s: 5, stopped_speed: 3, stopped_s: 5, congestion_count: 20, congestion_s: 2}
      - {id: z4, polygon: [[640, 360], [1280, 360], [1280, 720], [640, 720], [900, 500]], dwell_alert_s: 5, stopped_speed: 3, stopped_s: 5, congestion_count: 20, congestion_s: 2}
    calibration:
      image: [[400, 200], [880, 200], [1280, 720], [0, 720]]
      world: [[0, 0], [12, 0], [12, 80], [0, 80]]
    speed_limit_kmh: 50
YAML
"$CLI" track --detections "$TMP/dets.json" --timing --camera-config "$TMP/cam.yaml" --output "$TMP/tracks.json"
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) CPUs" >&2
