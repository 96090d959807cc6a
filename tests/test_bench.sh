#!/bin/sh
# itscam bench and itscam calibrate end to end: the JSON report has every field (synthetic
# and --images modes), bad flags exit 2, and a calibration table is written and loadable.
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

M="$SHARED/models/yolo11n-320.onnx"
[ -f "$M" ] || { echo "SKIP: $M is absent"; exit 77; }
[ -f "$SHARED/images/bus.jpg" ] || { echo "SKIP: $SHARED/images/bus.jpg is absent"; exit 77; }

expect 0 "bench --help" "$CLI" bench --help
for opt in --precision --calib --images --duration --json; do
  grep -q -- "$opt" "$T/out" && ok || bad "bench --help lists $opt"
done
expect 0 "calibrate --help" "$CLI" calibrate --help
grep -q "percentile" "$T/out" && grep -q "outlier" "$T/out" && ok || bad "calibrate --help explains the method"

# Bad flags: exit 2 before any work.
expect 2 "bench without a model" "$CLI" bench --iterations 2
expect 2 "bench unknown flag" "$CLI" bench --model "$M" --frobnicate
expect 2 "bench --batch 0" "$CLI" bench --model "$M" --batch 0
expect 2 "bench --batch 1,x" "$CLI" bench --model "$M" --batch 1,x
expect 2 "bench --iterations 0" "$CLI" bench --model "$M" --iterations 0
expect 2 "bench --duration -1" "$CLI" bench --model "$M" --duration -1
expect 2 "bench --precision fp64" "$CLI" bench --model "$M" --precision fp64
expect 2 "bench --input with --images" "$CLI" bench --model "$M" --input x.f32 --images "$SHARED/images"
expect 2 "detect --precision fp64" "$CLI" detect --model "$M" --precision fp64 "$SHARED/images/bus.jpg"
expect 2 "eval --precision fp64" "$CLI" eval --model "$M" --precision fp64 --images "$SHARED/images" --labels "$T"
expect 2 "calibrate --method foo" "$CLI" calibrate --model "$M" --images "$SHARED/images" --method foo
expect 2 "calibrate without --images" "$CLI" calibrate --model "$M"
expect 2 "calibrate --count 0" "$CLI" calibrate --model "$M" --images "$SHARED/images" --count 0
expect 2 "calibrate --backend foo" "$CLI" calibrate --model "$M" --images "$SHARED/images" --backend foo
expect 2 "calibrate --threads 0" "$CLI" calibrate --model "$M" --images "$SHARED/images" --threads 0

check_json() { # check_json FILE MODE BATCHES
  $PY - "$1" "$2" "$3" <<'PY'
import json, sys
d = json.load(open(sys.argv[1])); mode = sys.argv[2]; batches = [int(b) for b in sys.argv[3].split(",")]
rs = d["results"]
assert list(d) == ["results"] and [r["batch"] for r in rs] == batches, d
for r in rs:
    assert set(r) == {"backend", "precision", "batch", "threads", "latency_ms", "throughput_ips", "stages_ms",
                      "peak_rss_bytes", "isa", "active_backend"} | ({"gpu_memory_bytes", "gpu_memory_total_bytes",
                      "data_movement_per_run"} & set(r)), sorted(r)
    # the cpu backend counts its data movement; whole, non-negative counts per run
    m = r.get("data_movement_per_run")
    assert (m is not None) == (r["active_backend"] == "cpu"), r
    assert m is None or (set(m) == {"reorders", "copies", "conversions"} and all(v >= 0 for v in m.values())), m
    assert r["precision"] == "fp32" and isinstance(r["threads"], int) and r["threads"] >= 0, r
    l = r["latency_ms"]; s = r["stages_ms"]
    assert set(l) == {"p50", "p90", "p95", "p99"} and 0 < l["p50"] <= l["p90"] <= l["p95"] <= l["p99"], l
    assert set(s) == {"decode", "preprocess", "inference", "postprocess"} and s["inference"] > 0, s
    assert r["throughput_ips"] > 0 and r["peak_rss_bytes"] > 1 << 20 and r["isa"], r
    if mode == "synthetic":
        assert s["decode"] == 0 and s["preprocess"] == 0 and s["postprocess"] == 0, s
    else:
        assert s["decode"] > 0 and s["preprocess"] > 0 and s["postprocess"] > 0, s
        assert sum(s.values()) <= l["p99"] * 1.05 + 1, (s, l)
PY
}
expect 0 "bench --json" "$CLI" bench --model "$M" --iterations 2 --warmup 1 --json
check_json "$T/out" synthetic 1 && ok || bad "bench --json fields"
expect 0 "bench --json --backend ref" "$CLI" bench --model "$M" --backend ref --threads 1 --iterations 2 --warmup 0 --json
check_json "$T/out" synthetic 1 && ok || bad "bench --json fields (ref)"
expect 0 "bench --images" "$CLI" bench --model "$M" --images "$SHARED/images" --batch 1,2 --iterations 2 --warmup 1 --json
check_json "$T/out" images 1,2 && ok || bad "bench --images fields"
expect 0 "bench table" "$CLI" bench --model "$M" --iterations 2 --warmup 0
grep -q "p50 ms" "$T/out" && ok || bad "bench prints a table"
expect 1 "bench --images on an empty folder" "$CLI" bench --model "$M" --images "$T"

# Calibration on two images writes a table the library loads (--calib loads it even at fp32).
expect 0 "calibrate" "$CLI" calibrate --model "$M" --images "$SHARED/images" --count 2 --out "$T/calib.json"
$PY -c "
import json; d=json.load(open('$T/calib.json'))
assert d['method']=='percentile' and d['images']==2 and d['model']=='yolo11n-320.onnx', d
assert len(d['ranges'])>100 and all(lo<=hi for lo,hi in d['ranges'].values())" && ok || bad "calibration table content"
grep -q "2/2 images" "$T/err" && ok || bad "calibrate reports progress"
# the default is the cpu backend where it is compiled in; --backend ref the ref kernels
if "$CLI" version 2>&1 | grep -q "cpu"; then
  grep -q "on the cpu backend" "$T/err" && ok || bad "calibrate runs on the cpu backend: $(head -n 1 "$T/err")"
fi
expect 0 "calibrate --backend ref" "$CLI" calibrate --model "$M" --images "$SHARED/images" --count 1 --backend ref --out "$T/calib-ref.json"
grep -q "on the ref kernels" "$T/err" && ok || bad "calibrate --backend ref runs the ref kernels"
expect 0 "bench --calib" "$CLI" bench --model "$M" --calib "$T/calib.json" --iterations 1 --warmup 0 --json
expect 0 "detect --calib" "$CLI" detect --model "$M" --precision fp32 --calib "$T/calib.json" "$SHARED/images/bus.jpg"
printf '{"ranges":{"x":[2,1]}}' > "$T/broken.json"
expect 1 "bench with a broken table" "$CLI" bench --model "$M" --calib "$T/broken.json" --iterations 1
grep -q "broken.json" "$T/err" && grep -q "lo > hi" "$T/err" && ok || bad "the error names the table and the problem"
expect 0 "precision auto" "$CLI" bench --model "$M" --precision auto --iterations 1 --warmup 0 --json
grep -q "precision auto:" "$T/err" && ok || bad "auto says what it picked"

echo "test_bench: $passes passed, $fails failed"
[ "$fails" -eq 0 ]
