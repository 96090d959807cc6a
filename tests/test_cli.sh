#!/bin/sh
# The itscam command end to end: help, version, detect with options, annotated output,
# and errors on stderr with a non-zero exit.
set -u
CLI=$1
SRC=$2
SHARED=${ITSCAM_SHARED:-$SRC/../shared}
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

expect 0 "help" "$CLI" --help
grep -q "detect" "$T/out" && grep -q "backends:" "$T/out" && ok || bad "help lists commands and backends"
expect 0 "version" "$CLI" version
grep -q "ref" "$T/out" && ok || bad "version lists the ref backend"
expect 0 "detect --help" "$CLI" detect --help
grep -q -- "--max-det" "$T/out" && ok || bad "detect --help lists options"
expect 2 "unknown command" "$CLI" frobnicate
expect 2 "detect without a model" "$CLI" detect "$SHARED/images/bus.jpg"
expect 2 "bad --conf" "$CLI" detect --model x.onnx --conf abc "$SHARED/images/bus.jpg"
expect 1 "missing model" "$CLI" detect --model /nonexistent.onnx "$SHARED/images/bus.jpg"
grep -q "nonexistent.onnx" "$T/err" && ok || bad "the error names the missing model"
printf 'garbage' > "$T/bad.onnx"
expect 1 "garbage model" "$CLI" detect --model "$T/bad.onnx" "$SHARED/images/bus.jpg"
grep -q "bad.onnx" "$T/err" && ok || bad "the error names the bad model"

M="$SHARED/models/yolo11n-320.onnx"
if [ -f "$M" ]; then
  expect 0 "detect bus" "$CLI" detect --model "$M" --save "$T/ann" "$SHARED/images/bus.jpg"
  /usr/bin/python3 -c "
import json,sys; d=json.load(open('$T/out')); r=d['results'][0]
assert r['image']=='bus.jpg' and r['width']==810 and r['height']==1080, r
assert len(r['detections'])>=4 and set(r['detections'][0])=={'class_id','class','score','box'}, r
" && ok || bad "detect JSON layout"
  [ -s "$T/ann/bus.jpg" ] && ok || bad "--save writes an annotated JPEG"
  expect 0 "class filter" "$CLI" detect --model "$M" --classes 5 "$SHARED/images/bus.jpg"
  /usr/bin/python3 -c "
import json; d=json.load(open('$T/out'))['results'][0]['detections']
assert d and all(x['class_id']==5 for x in d), d" && ok || bad "--classes keeps only class 5"
  expect 0 "max-det" "$CLI" detect --model "$M" --max-det 1 --backend ref "$SHARED/images/bus.jpg"
  /usr/bin/python3 -c "
import json; d=json.load(open('$T/out'))['results'][0]['detections']; assert len(d)==1, d" && ok || bad "--max-det 1"
  printf 'xx' > "$T/broken.jpg"
  expect 1 "a corrupt image among good ones" "$CLI" detect --model "$M" "$T/broken.jpg" "$SHARED/images/zidane.jpg"
  /usr/bin/python3 -c "
import json; r=json.load(open('$T/out'))['results']; assert len(r)==1 and r[0]['image']=='zidane.jpg', r" && ok || bad "good images still reported"
  grep -q "broken.jpg" "$T/err" && ok || bad "the error names the corrupt image"
fi
echo "test_cli: $passes passed, $fails failed"
[ "$fails" -eq 0 ]
