#!/bin/sh
# Run every libFuzzer target in BUILD/fuzz for SECONDS each, seeded with small inputs:
# the ONNX node-test models for the model loader, nothing for the image decoder, a
# configuration and camera definitions for the configuration reader, a short scene for
# the tracker's detections file, a small MOT pair for the tracking metrics.
# A crash leaves its input in the work folder and fails the run.
set -eu
BUILD=$1
SECONDS_EACH=${2:-30}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
found=0
for fz in "$BUILD"/fuzz/fuzz_*; do
  [ -x "$fz" ] || continue
  found=1
  name=$(basename "$fz")
  mkdir -p "$WORK/$name"
  if [ "$name" = fuzz_model ]; then
    for d in /usr/share/libonnx-testdata/data/node/test_conv_with_strides_padding \
             /usr/share/libonnx-testdata/data/node/test_maxpool_2d_pads \
             /usr/share/libonnx-testdata/data/node/test_resize_upsample_scales_nearest \
             /usr/share/libonnx-testdata/data/node/test_dynamicquantizelinear \
             /usr/share/libonnx-testdata/data/node/test_convinteger_with_padding; do
      [ -f "$d/model.onnx" ] && cp "$d/model.onnx" "$WORK/$name/$(basename "$d").onnx"
    done
  fi
  if [ "$name" = fuzz_request ]; then
    # Byte 0 picks the parser (0 multipart, 1 KServe JSON, 2 KServe with a 2-byte JSON length).
    printf '\000--XyZ\r\nContent-Disposition: form-data; name="file"; filename="a.jpg"\r\nContent-Type: image/jpeg\r\n\r\n\377\330\r\n--X\r\n--XyZ\r\nContent-Disposition: form-data; name="conf"\r\n\r\n0.5\r\n--XyZ--\r\n' >"$WORK/$name/multipart"
    printf '\001{"id":"r1","parameters":{"detections":true,"priority":"urgent","conf":0.3},"inputs":[{"name":"images","datatype":"FP32","shape":[1,2,2],"data":[[0,0.5],[1,2]]}],"outputs":[{"name":"output0","parameters":{"binary_data":true}}]}' >"$WORK/$name/kserve_json"
    printf '\002\134\000{"inputs":[{"name":"u","datatype":"UINT8","shape":[4],"parameters":{"binary_data_size":4}}]}\001\002\003\004' >"$WORK/$name/kserve_binary"
  fi
  if [ "$name" = fuzz_config ]; then
    # Byte 0 picks the parser (0 YAML configuration with cameras, 1 camera JSON, 2 camera JSON patch).
    printf '\000server:\n  port: 9000\nstorage: {dir: /tmp/x}\ncameras:\n  - id: gate_1\n    url: rtsp://u:p@cam/s\n    priority: high\n    enabled: false\n    detect: {fps: 2.5, classes: [0, 2], model: "m", conf: 0.4}\n  - {id: lobby, url: /v/a.mp4, loop: true, decode_skip: nonref}\n' >"$WORK/$name/yaml"
    printf '\001{"id":"gate_1","url":"rtsp://admin:pw@10.0.0.5/s","enabled":false,"priority":"critical","transport":"udp","loop":false,"realtime":false,"hwaccel":"vaapi","stall_timeout_s":2.5,"decode_skip":"keyframes","detect":{"fps":10,"model":"a","conf":0.3,"classes":[0,2,7],"fallback_model":"b"}}' >"$WORK/$name/create"
    printf '\002{"detect":{"fps":0.5,"conf":null,"classes":[]},"enabled":true,"id":"cam"}' >"$WORK/$name/patch"
    printf '\000cameras:\n  - id: road\n    url: /v.mp4\n    track: {track_buffer: 60, fuse_score: null}\n    coordinates: normalized\n    anchor: center\n    lines:\n      - {id: l1, points: [[0, 0.5], [1, 0.5]], direction: a_to_b, classes: [2], min_distance: 4}\n    zones:\n      - {id: z, polygon: [[0, 0], [1, 0], [1, 1], [0, 1]], dwell_alert_s: 1, stopped_speed: 2, stopped_s: 1, congestion_count: 1, congestion_s: 1}\n    calibration: {image: [[0, 0], [1, 0], [1, 1], [0, 1]], world: [[0, 0], [10, 0], [10, 50], [0, 50]]}\n    speed_limit_kmh: 30\n' >"$WORK/$name/analytics"
    printf '\002{"lines":[{"id":"a","points":[[0,300],[1280,310]]}],"zones":[{"id":"b","polygon":[[10,10],[500,20],[400,600]]}],"calibration":null}' >"$WORK/$name/patch_analytics"
  fi
  if [ "$name" = fuzz_track ]; then
    printf '{"width": 640, "height": 360, "frames": [{"frame": 0, "detections": [{"box": [10, 20, 50, 100], "score": 0.9, "class_id": 2}, {"box": [12, 22, 52, 98], "score": 0.15, "class_id": 0}]}, {"frame": 3, "detections": [{"box": [14, 20, 54, 100], "score": 0.3, "class_id": 2}]}]}' >"$WORK/$name/scene"
  fi
  if [ "$name" = fuzz_mot ]; then
    # Ground truth '|' predictions, MOTChallenge text.
    printf '1,1,10,10,50,80,1,-1,-1,-1\n1,2,100,20,40,60,1,-1,-1,-1\n2,1,12,10,50,80,1\n3 2 104 20 40 60\n|1,7,11,10,50,80,-1\n2,7,13,11,50,80,-1\n2,8,100,20,40,60,-1\n3,9,300,5,20,20,-1\n' >"$WORK/$name/seq"
  fi
  echo "fuzzing $name for ${SECONDS_EACH}s"
  "$fz" -max_total_time="$SECONDS_EACH" -max_len=65536 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$WORK/" "$WORK/$name" 2>"$WORK/$name.log" || {
    tail -50 "$WORK/$name.log"; echo "fuzz: $name failed"; exit 1; }
  grep -E "stat::number_of_executed_units" "$WORK/$name.log" || true
done
[ "$found" -eq 1 ] || { echo "fuzz: no targets in $BUILD/fuzz"; exit 1; }
echo "fuzz: 0 crashes"
