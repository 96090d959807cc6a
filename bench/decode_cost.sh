#!/bin/sh
# Decode cost per camera: CPU ms per second of video on each shared video, for
#   ffmpeg      `ffmpeg -threads 1 -i FILE -f null -` (the peer: decode only, no conversion)
#   itscam      `itscam watch FILE --decode-only --fast --decode-threads 1` in each skip mode
#               (none, nonref, keyframes), with no consumer (decode alone) and with a
#               consumer that takes 5 frames per second of video (a camera detecting at
#               5 fps: only those are converted to BGR), plus "every frame converted".
# All decode as fast as they can (not paced), on one decoder thread. CPU is user+system of
# the whole process from /usr/bin/time; each figure is the median of ROUNDS runs, the
# runs alternating between configurations so that drift hits them alike. Run it on a quiet
# machine (see `uptime`).
#
# usage: bench/decode_cost.sh [--rounds R] [--videos "a.mp4 b.mp4"] [--json-out FILE]
#   ITSCAM_CLI     the itscam binary (default build-rel/itscam, else build/itscam)
#   ITSCAM_SHARED  the shared data folder (default ../shared beside the checkout)
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SHARED=${ITSCAM_SHARED:-$ROOT/../shared}
ROUNDS=3 VIDEOS="" JSON_OUT=""
die() { echo "decode_cost.sh: $*" >&2; exit 2; }
while [ $# -gt 0 ]; do
  [ $# -ge 2 ] || die "$1 needs a value"
  case $1 in
    --rounds) ROUNDS=$2 ;; --videos) VIDEOS=$2 ;; --json-out) JSON_OUT=$2 ;;
    *) die "unknown option $1 (see the header of $0)" ;;
  esac
  shift 2
done
CLI=${ITSCAM_CLI:-}
if [ -z "$CLI" ]; then
  for c in "$ROOT/build-rel/itscam" "$ROOT/build/itscam"; do [ -x "$c" ] && CLI=$c && break; done
fi
[ -n "$CLI" ] && [ -x "$CLI" ] || die "build itscam (cmake -B build-rel -DCMAKE_BUILD_TYPE=Release) or set ITSCAM_CLI"
command -v ffmpeg >/dev/null || die "ffmpeg not found (scripts/setup.sh installs it)"
[ -x /usr/bin/time ] || die "/usr/bin/time not found (Debian package time; scripts/setup.sh installs it)"
[ -n "$VIDEOS" ] || VIDEOS=$(ls "$SHARED"/videos/*.mp4 2>/dev/null) || true
[ -n "$VIDEOS" ] || die "no videos in $SHARED/videos"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

# The configurations: name and command (FILE is replaced by the video).
CONFIGS="ffmpeg none none@5fps all_converted nonref nonref@5fps keyframes keyframes@5fps"
cmd_for() {  # config file
  case $1 in
    ffmpeg) echo "ffmpeg -nostdin -hide_banner -loglevel error -threads 1 -i $2 -f null -" ;;
    none) echo "$CLI watch $2 --decode-only --fast --decode-threads 1" ;;
    none@5fps) echo "$CLI watch $2 --decode-only --fast --decode-threads 1 --take-fps 5" ;;
    all_converted) echo "$CLI watch $2 --decode-only --fast --decode-threads 1 --take-every 1" ;;
    nonref) echo "$CLI watch $2 --decode-only --fast --decode-threads 1 --skip nonref" ;;
    nonref@5fps) echo "$CLI watch $2 --decode-only --fast --decode-threads 1 --skip nonref --take-fps 5" ;;
    keyframes) echo "$CLI watch $2 --decode-only --fast --decode-threads 1 --skip keyframes" ;;
    keyframes@5fps) echo "$CLI watch $2 --decode-only --fast --decode-threads 1 --skip keyframes --take-fps 5" ;;
  esac
}

echo "machine: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) cpus; load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "flags: $(grep -m1 -o -w -E 'avx2|avx512f|avx512_bf16|amx_tile|amx_bf16|amx_int8' /proc/cpuinfo | sort -u | tr '\n' ' ')"
echo "ffmpeg: $(ffmpeg -hide_banner -version | head -1 | cut -d' ' -f1-3); itscam: $CLI"
i=0
for v in $VIDEOS; do
  [ -f "$v" ] || die "$v not found"
  i=$((i + 1))
  dur=$(ffprobe -v error -show_entries format=duration -of csv=p=0 "$v")
  size=$(ffprobe -v error -select_streams v:0 -show_entries stream=width,height -of csv=s=x:p=0 "$v")
  echo "$i $(basename "$v" .mp4) $size $dur" >> "$TMP/videos"
  r=1
  while [ $r -le "$ROUNDS" ]; do
    for c in $CONFIGS; do
      # shellcheck disable=SC2046
      /usr/bin/time -f "%U %S" -o "$TMP/t" $(cmd_for "$c" "$v") > "$TMP/out" 2> "$TMP/err" ||
        die "$c on $v failed: $(cat "$TMP/err")"
      [ "$c" = ffmpeg ] || grep -q '"frames_decoded"' "$TMP/out" || die "$c on $v printed no summary"
      awk -v d="$dur" '{ printf "%.1f\n", ($1 + $2) * 1000 / d }' "$TMP/t" >> "$TMP/$i.$c"
      [ "$c" = ffmpeg ] || cp "$TMP/out" "$TMP/$i.$c.json"
    done
    r=$((r + 1))
  done
done

median() { sort -n "$1" | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
frames() { sed -n "s/.*\"$2\":\([0-9]*\).*/\1/p" "$1"; }

echo
echo "CPU ms per second of video (median of $ROUNDS); in brackets: itscam / ffmpeg"
printf '%-26s %9s %7s | %7s | %15s %9s %13s | %15s %11s | %15s %11s\n' video size frames ffmpeg \
  "itscam none" "@5fps" "all converted" "nonref" "@5fps" "keyframes" "@5fps"
[ -z "$JSON_OUT" ] || echo "[" > "$JSON_OUT"
sep=""
while read -r i name size dur; do
  for c in $CONFIGS; do eval "m_$(echo "$c" | tr '@' '_')=$(median "$TMP/$i.$c")"; done
  # shellcheck disable=SC2154
  ratio() { awk -v a="$1" -v b="$m_ffmpeg" 'BEGIN { printf "%.1f (%.2f)", a, a / b }'; }
  all=$(frames "$TMP/$i.none.json" frames_decoded)
  nr=$(frames "$TMP/$i.nonref.json" frames_decoded)
  kf=$(frames "$TMP/$i.keyframes.json" frames_decoded)
  # shellcheck disable=SC2154
  printf '%-26s %9s %7s | %7s | %15s %9s %13s | %15s %11s | %15s %11s\n' "$name" "$size" "$all" "$m_ffmpeg" \
    "$(ratio "$m_none")" "$m_none_5fps" "$m_all_converted" "$(ratio "$m_nonref")" "$m_nonref_5fps" \
    "$(ratio "$m_keyframes")" "$m_keyframes_5fps"
  echo "    decoded frames: none $all, nonref $nr, keyframes $kf"
  if [ -n "$JSON_OUT" ]; then
    printf '%s{"video":"%s","size":"%s","duration_s":%s,"frames":{"none":%s,"nonref":%s,"keyframes":%s},"cpu_ms_per_s":{"ffmpeg":%s,"none":%s,"none_5fps":%s,"all_converted":%s,"nonref":%s,"nonref_5fps":%s,"keyframes":%s,"keyframes_5fps":%s}}\n' \
      "$sep" "$name" "$size" "$dur" "$all" "$nr" "$kf" "$m_ffmpeg" "$m_none" "$m_none_5fps" "$m_all_converted" \
      "$m_nonref" "$m_nonref_5fps" "$m_keyframes" "$m_keyframes_5fps" >> "$JSON_OUT"
    sep=","
  fi
done < "$TMP/videos"
[ -z "$JSON_OUT" ] || echo "]" >> "$JSON_OUT"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
