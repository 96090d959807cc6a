#!/bin/sh
# Resident memory of `itscam serve` after warm-up next to the peak of offline
# `itscam bench` at the same batch size, model and threads: what a server costs beyond
# the engine. Prints one line per figure and the difference.
#
# usage: bench/serve_rss.sh [--model M] [--max-batch N] [--threads N] [--precision P]
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SHARED=${ITSCAM_SHARED:-$ROOT/../shared}
MODEL=$SHARED/models/yolo11n.onnx MB=8 THREADS=2 PREC=fp32
die() { echo "serve_rss.sh: $*" >&2; exit 2; }
while [ $# -gt 0 ]; do
  [ $# -ge 2 ] || die "$1 needs a value"
  case $1 in
    --model) MODEL=$2 ;; --max-batch) MB=$2 ;; --threads) THREADS=$2 ;; --precision) PREC=$2 ;;
    *) die "unknown option $1 (see the header of $0)" ;;
  esac
  shift 2
done
. "$ROOT/bench/lib.sh"

"$CLI" bench --model "$MODEL" --precision "$PREC" --threads "$THREADS" --batch "$MB" --duration 3 --json > "$TMP/b.json"
BENCH=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["results"][0]["peak_rss_bytes"])' "$TMP/b.json")

start_serve --model "$MODEL" --precision "$PREC" --threads "$THREADS" --max-batch "$MB"
sleep 1
SERVE=$(awk '/^VmRSS:/ {print $2 * 1024}' "/proc/$SRV/status")
echo "bench --batch $MB peak RSS:     $((BENCH / 1048576)) MiB"
echo "serve --max-batch $MB RSS after warm-up: $((SERVE / 1048576)) MiB"
echo "difference:                     $(((SERVE - BENCH) / 1048576)) MiB (target <= 32 MiB)"
