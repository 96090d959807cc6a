#!/bin/sh
# itscam performance benchmark --cameras end to end on the shared videos: bad flags exit 2
# before any work, a short run prints the report the issue specifies (every key, sane
# values), --find-max with a small cap reports its probes and max_cameras, and the table
# form prints. No performance assertions: speed belongs to bench/cameras.sh.
set -u
CLI=$1
SRC=$2
SHARED=${ITSCAM_SHARED:-$SRC/../shared}
PY=/usr/bin/python3
fails=0 passes=0
ok() { passes=$((passes + 1)); }
bad() { fails=$((fails + 1)); echo "FAIL: $*"; }
expect() { # expect CODE DESC CMD...
  want=$1; desc=$2; shift 2
  "$@" >"$T/out" 2>"$T/err"; got=$?
  if [ "$got" -eq "$want" ]; then ok; else bad "$desc: exit $got, wanted $want"; cat "$T/err"; fi
}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT

M="$SHARED/models/yolo11n-320-dynamic.onnx"
V1="$SHARED/videos/intersection_cctv.mp4"
V2="$SHARED/videos/urban_road_cctv.mp4"
for f in "$M" "$V1" "$V2"; do [ -f "$f" ] || { echo "SKIP: $f is absent"; exit 77; }; done

expect 0 "performance --help" "$CLI" performance --help
for opt in --cameras --streams --source --detect-fps --find-max --sla-ms --max-batch --workers; do
  grep -q -- "$opt" "$T/out" && ok || bad "performance --help lists $opt"
done

B="$CLI performance benchmark"
expect 2 "--cameras 0" $B --cameras 0 --source "$V1" --model "$M"
expect 2 "--cameras 257" $B --cameras 257 --source "$V1" --model "$M"
expect 2 "--detect-fps 0" $B --cameras 1 --detect-fps 0 --source "$V1" --model "$M"
expect 2 "--duration x" $B --cameras 1 --duration x --source "$V1" --model "$M"
expect 2 "--precision fp64" $B --cameras 1 --precision fp64 --source "$V1" --model "$M"
expect 2 "a missing source" $B --cameras 1 --source "$T/nothing.mp4" --model "$M"
grep -q "nothing.mp4" "$T/err" && ok || bad "the message names the missing source"
expect 2 "an empty source list" $B --cameras 1 --source , --model "$M"
expect 2 "an unknown flag" $B --cameras 1 --source "$V1" --model "$M" --frobnicate
expect 2 "--url does not apply" $B --cameras 1 --source "$V1" --model "$M" --url http://x
expect 2 "--cameras above --max-cameras" $B --cameras 4 --max-cameras 2 --find-max --source "$V1" --model "$M"
expect 1 "a model that is not one" $B --cameras 1 --source "$V1" --model "$V1" --duration 1 --warmup 0

check_json() { # check_json FILE CAMERAS FIND_MAX
  $PY - "$@" <<'PY'
import json, math, sys
d = json.load(open(sys.argv[1])); n = int(sys.argv[2]); find_max = sys.argv[3] == "1"
keys = {"cameras", "sla_ms", "detect_fps_target", "duration_s", "model", "results", "totals", "machine"}
if find_max: keys |= {"max_cameras", "probes"}
assert set(d) == keys, sorted(d)
assert d["cameras"] == n and d["sla_ms"] == 100 and d["detect_fps_target"] == 5, d
assert d["model"].endswith("yolo11n-320-dynamic.onnx") and d["duration_s"] > 0, d
def lat(l, need):
    assert set(l) == {"p50", "p95", "p99"}, l
    if need or l["p50"] is not None:
        assert 0 < l["p50"] <= l["p95"] <= l["p99"] < 60000, l
rs = d["results"]
assert [r["id"] for r in rs] == ["bench%d" % i for i in range(n)], rs
for r in rs:
    assert set(r) == {"id", "detect_fps", "decoded_fps", "dropped", "latency_ms"}, sorted(r)
    assert set(r["dropped"]) == {"skipped", "stale", "queue_full"}, r
    assert all(isinstance(v, int) and v >= 0 for v in r["dropped"].values()), r
    assert 0 <= r["detect_fps"] <= 6.5 and r["decoded_fps"] > 0, r
    lat(r["latency_ms"], False)
t = d["totals"]
assert set(t) == {"detect_fps", "latency_ms", "cpu_percent", "rss_bytes", "failed", "cache_hits"}, sorted(t)
assert t["detect_fps"] > 0 and abs(t["detect_fps"] - sum(r["detect_fps"] for r in rs)) < 0.1, t
lat(t["latency_ms"], True)
assert t["cpu_percent"] > 0 and t["rss_bytes"] > 1 << 20 and t["failed"] == 0 and t["cache_hits"] == 0, t
m = d["machine"]
assert set(m) == {"cpu", "flags", "logical_cpus", "physical_cores", "isa", "backend", "precision", "threads",
                  "workers", "max_batch"}, sorted(m)
assert m["cpu"] and m["logical_cpus"] >= m["physical_cores"] >= 1 and m["threads"] >= 1 and 1 <= m["workers"] <= max(1, m["physical_cores"]), m
assert m["precision"] in ("fp32", "bf16", "int8") and m["backend"] == "cpu", m
if find_max:
    p = d["probes"]
    assert 1 <= len(p) <= 2 and 0 <= d["max_cameras"] <= 2, d
    for q in p:
        assert set(q) - {"why"} == {"cameras", "pass", "detect_fps", "min_camera_detect_fps", "latency_ms",
                                    "cpu_percent", "rss_bytes"}, sorted(q)
        assert ("why" in q) == (not q["pass"]), q
    assert d["max_cameras"] == max([q["cameras"] for q in p if q["pass"]] or [0]), d
PY
}

expect 0 "2 cameras, JSON" $B --cameras 2 --source "$V1,$V2" --model "$M" --duration 3 --warmup 1 --max-batch 4 --json
check_json "$T/out" 2 0 && ok || { bad "the camera report's fields"; cat "$T/out"; }
grep -q "cpu .*max batch 4.*; 1 s warmup, 3 s measured per run; 2 sources" "$T/err" && ok || bad "the run says what it runs"

# --streams (the alias) with --find-max: probes of 1 then 2 cameras at most. The SLA is
# generous so the result does not depend on this machine's speed; it may still be 0..2.
expect 0 "--find-max" $B --streams 1 --find-max --max-cameras 2 --sla-ms 10000 --source "$V1" --model "$M" \
  --duration 2 --warmup 1 --max-batch 2 --json
sed -i 's/"sla_ms":10000\(\.0\)*/"sla_ms":100/' "$T/out"
MAXC=$($PY -c 'import json,sys; print(json.load(open(sys.argv[1]))["max_cameras"])' "$T/out" 2>/dev/null || echo -1)
if [ "$MAXC" -ge 1 ]; then check_json "$T/out" "$MAXC" 1 && ok || { bad "the find-max report"; cat "$T/out"; }
elif [ "$MAXC" -eq 0 ]; then echo "note: no probe passed on this machine"; ok
else bad "the find-max report is JSON"; cat "$T/out"; fi
grep -q "^cameras   1: detect" "$T/err" && ok || bad "find-max prints a line per probe"

echo "test_camera_bench: $passes passed, $fails failed"
[ "$fails" -eq 0 ]
