#!/bin/sh
# itscam eval-track end to end: argument errors exit 2; a malformed file exits 1 naming
# file:line; on ../shared/mot the JSON output (every sequence of a group in one call, with
# OVERALL) reproduces every value of expected.json, checked by Python from the file itself.
set -eu
CLI=$1
SRC=$2
SHARED=${ITSCAM_SHARED:-$SRC/../shared}
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT

rc=0
"$CLI" eval-track --gt a.txt 2>"$OUT/err" || rc=$?
[ "$rc" = 2 ] || { echo "FAIL: --gt without --pred exited $rc, expected 2"; exit 1; }
rc=0
"$CLI" eval-track --gt a.txt --pred b.txt --iou 2 2>"$OUT/err" || rc=$?
[ "$rc" = 2 ] || { echo "FAIL: --iou 2 exited $rc, expected 2"; exit 1; }
"$CLI" eval-track --help | grep -q "MOTP_pymotmetrics" || { echo "FAIL: eval-track --help"; exit 1; }
"$CLI" help | grep -q "eval-track" || { echo "FAIL: eval-track missing from itscam help"; exit 1; }
printf '1,1,10,10,50,50,1\n2,1,10,10,fifty,50,1\n' > "$OUT/bad.txt"
printf '1,1,10,10,50,50,1\n' > "$OUT/ok.txt"
rc=0
"$CLI" eval-track --gt "$OUT/ok.txt" --pred "$OUT/bad.txt" 2>"$OUT/err" || rc=$?
[ "$rc" = 1 ] || { echo "FAIL: malformed file exited $rc, expected 1"; exit 1; }
grep -q "bad.txt:2: field 5 (width) is not a number" "$OUT/err" || { echo "FAIL: message:"; cat "$OUT/err"; exit 1; }
rc=0
"$CLI" eval-track --gt "$OUT/missing.txt" --pred "$OUT/ok.txt" 2>"$OUT/err" || rc=$?
[ "$rc" = 1 ] && grep -q "missing.txt" "$OUT/err" || { echo "FAIL: missing file: rc $rc"; cat "$OUT/err"; exit 1; }
# Identical files: a perfect score.
"$CLI" eval-track --gt "$OUT/ok.txt" --pred "$OUT/ok.txt" --json > "$OUT/same.json"
/usr/bin/python3 -c '
import json, sys
m = json.load(open(sys.argv[1]))["overall"]["metrics"]
assert m["MOTA"] == 1 and m["IDF1"] == 1 and m["HOTA"] == 1, m' "$OUT/same.json"

EXP=$SHARED/mot/expected.json
[ -e "$EXP" ] || { echo "SKIP: $EXP is absent"; exit 77; }
/usr/bin/python3 - "$CLI" "$SHARED/mot" <<'PY'
import json, os, subprocess, sys
cli, mot = sys.argv[1], sys.argv[2]
exp = json.load(open(os.path.join(mot, "expected.json")))
n = bad = 0
for g in exp["groups"]:
    args = [cli, "eval-track", "--json"]
    for s in g["sequences"]:
        d = os.path.join(mot, g["dir"], s)
        args += ["--gt", os.path.join(d, "gt.txt"), "--pred", os.path.join(d, "test.txt")]
    out = json.loads(subprocess.run(args, check=True, capture_output=True, text=True).stdout)
    got = {s["name"]: s["metrics"] for s in out["sequences"]}
    got["OVERALL"] = out["overall"]["metrics"]
    for seq, metrics in g["expected"].items():
        for name, e in metrics.items():
            v = got[seq].get(e["mine"])
            n += 1
            if v is None or abs(v - e["value"]) > e["atol"]:
                bad += 1
                print(f"FAIL {g['name']} {seq} {name}: got {v}, want {e['value']} (atol {e['atol']})")
print(f"eval-track: {n - bad} of {n} expected values reproduced")
sys.exit(1 if bad or n < 84 else 0)
PY
