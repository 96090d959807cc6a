#!/bin/sh
# Decode cost per camera: CPU ms per second of video on each shared video, for
#   ffmpeg      `ffmpeg -threads 1 -i FILE -f null -` (the peer: decode only, no conversion)
#   itscam      `itscam watch FILE --decode-only --fast --decode-threads 1` in each skip mode
#               (none, nonref, keyframes), with no consumer (decode alone: each frame
#               replaces the last in the slot, as while the detector is busy) and with a
#               consumer that takes 5 frames per second of video (a camera detecting at
#               5 fps: only those are converted to BGR), plus "every frame converted". The
#               consumer runs see every frame (a hand-over per frame that a live camera,
#               whose consumer is not waiting on it, does not pay).
# All decode as fast as they can (not paced), on one decoder thread. CPU is user+system of
# the whole process from /usr/bin/time; each figure is the median of ROUNDS runs, the
# runs alternating between configurations so that drift hits them alike. Each clip is first
# repeated (remuxed with -c copy into a temporary file, the same packets N times) to at
# least MIN_SECONDS of video, so that the 10 ms resolution of the timer and the start-up
# weigh little. Process start-up
# (loading the FFmpeg libraries: ~0.15 s of CPU for either program, a large part of a
# 11-47 s clip's cost) is measured too, as the same command stopped after one frame, and the
# "net" figures subtract it. Run it on a quiet machine (see `uptime`).
#
# usage: bench/decode_cost.sh [--rounds R] [--min-seconds S] [--videos "a.mp4 b.mp4"]
#                             [--json-out FILE]
#   ITSCAM_CLI     the itscam binary (default build-rel/itscam, else build/itscam)
#   ITSCAM_SHARED  the shared data folder (default ../shared beside the checkout)
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SHARED=${ITSCAM_SHARED:-$ROOT/../shared}
ROUNDS=3 VIDEOS="" JSON_OUT="" MIN_SECONDS=60
die() { echo "decode_cost.sh: $*" >&2; exit 2; }
while [ $# -gt 0 ]; do
  [ $# -ge 2 ] || die "$1 needs a value"
  case $1 in
    --rounds) ROUNDS=$2 ;; --min-seconds) MIN_SECONDS=$2 ;; --videos) VIDEOS=$2 ;; --json-out) JSON_OUT=$2 ;;
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
CONFIGS="ffmpeg_start itscam_start ffmpeg none nonref keyframes handover none@5fps all_converted nonref@5fps keyframes@5fps"
cmd_for() {  # config file
  case $1 in
    ffmpeg) echo "ffmpeg -nostdin -hide_banner -loglevel error -threads 1 -i $2 -f null -" ;;
    ffmpeg_start) echo "ffmpeg -nostdin -hide_banner -loglevel error -threads 1 -i $2 -frames:v 1 -f null -" ;;
    itscam_start) echo "$CLI watch $2 --decode-only --fast --decode-threads 1 --take-every 1 --max-frames 1" ;;
    none) echo "$CLI watch $2 --decode-only --fast --decode-threads 1" ;;
    handover) echo "$CLI watch $2 --decode-only --fast --decode-threads 1 --take-every 1000000000" ;;
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
  copies=$(awk -v d="$dur" -v m="$MIN_SECONDS" 'BEGIN { n = int(m / d); if (n * d < m) n++; print n < 1 ? 1 : n }')
  long="$TMP/$i.mp4"
  ffmpeg -nostdin -hide_banner -loglevel error -stream_loop $((copies - 1)) -i "$v" -c copy -y "$long" ||
    die "cannot repeat $v"
  dur=$(ffprobe -v error -show_entries format=duration -of csv=p=0 "$long")
  echo "$i $(basename "$v" .mp4)x$copies $size $dur" >> "$TMP/videos"
  v=$long
  r=1
  while [ $r -le "$ROUNDS" ]; do
    for c in $CONFIGS; do
      # shellcheck disable=SC2046
      /usr/bin/time -f "%U %S" -o "$TMP/t" $(cmd_for "$c" "$v") > "$TMP/out" 2> "$TMP/err" ||
        die "$c on $v failed: $(cat "$TMP/err")"
      case $c in ffmpeg*) ;; *) grep -q '"frames_decoded"' "$TMP/out" || die "$c on $v printed no summary" ;; esac
      awk '{ printf "%.3f\n", $1 + $2 }' "$TMP/t" >> "$TMP/$i.$c"
      cp "$TMP/out" "$TMP/$i.$c.json"
    done
    r=$((r + 1))
  done
done

median() { sort -n "$1" | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
frames() { sed -n "s/.*\"$2\":\([0-9]*\).*/\1/p" "$1"; }

echo
echo "CPU ms per second of video, whole process (median of $ROUNDS); in brackets: itscam / ffmpeg."
echo "none, nonref, keyframes: no consumer. Consumer columns: every frame handed over (lossless"
echo "file reading), base = none converted, then 5 per second of video converted, then all."
H='%-24s %8s %6s | %6s | %13s %13s %13s | %6s %6s %6s | %6s %6s\n'
printf "$H" video size frames ffmpeg "none" "nonref" "keyframes" base "@5fps" "all" "nonref" "key"
printf "$H" "" "" "" "" "" "" "" "" "" "" "@5fps" "@5fps"
[ -z "$JSON_OUT" ] || echo "[" > "$JSON_OUT"
sep=""
NET=""
while read -r i name size dur; do
  for c in $CONFIGS; do eval "m_$(echo "$c" | tr '@' '_')=$(median "$TMP/$i.$c")"; done
  # shellcheck disable=SC2154
  ms() { awk -v a="$1" -v d="$dur" 'BEGIN { printf "%.1f", a * 1000 / d }'; }
  # ms per second net of start-up: $1 the run's CPU s, $2 its program's start-up CPU s
  net() { awk -v a="$1" -v s="$2" -v d="$dur" 'BEGIN { printf "%.1f", (a - s) * 1000 / d }'; }
  ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%s (%.2f)", a, a / b }'; }
  all=$(frames "$TMP/$i.none.json" frames_decoded)
  nr=$(frames "$TMP/$i.nonref.json" frames_decoded)
  kf=$(frames "$TMP/$i.keyframes.json" frames_decoded)
  f=$(ms "$m_ffmpeg")
  printf "$H" "$name" "$size" "$all" "$f" "$(ratio "$(ms "$m_none")" "$f")" "$(ratio "$(ms "$m_nonref")" "$f")" \
    "$(ratio "$(ms "$m_keyframes")" "$f")" "$(ms "$m_handover")" "$(ms "$m_none_5fps")" "$(ms "$m_all_converted")" \
    "$(ms "$m_nonref_5fps")" "$(ms "$m_keyframes_5fps")"
  fn=$(net "$m_ffmpeg" "$m_ffmpeg_start")
  s=$m_itscam_start
  NET="$NET$(printf '%-24s %8s %9s | %6s | %13s %13s %13s | %6s %6s %6s | %6s %6s | %4.0f %4.0f' "$name" "$size" \
    "$nr/$kf" "$fn" "$(ratio "$(net "$m_none" "$s")" "$fn")" "$(ratio "$(net "$m_nonref" "$s")" "$fn")" \
    "$(ratio "$(net "$m_keyframes" "$s")" "$fn")" "$(net "$m_handover" "$s")" "$(net "$m_none_5fps" "$s")" \
    "$(net "$m_all_converted" "$s")" "$(net "$m_nonref_5fps" "$s")" "$(net "$m_keyframes_5fps" "$s")" \
    "$(awk -v a="$m_ffmpeg_start" 'BEGIN { print a * 1000 }')" "$(awk -v a="$s" 'BEGIN { print a * 1000 }')")
"
  if [ -n "$JSON_OUT" ]; then
    printf '%s{"video":"%s","size":"%s","duration_s":%s,"frames":{"none":%s,"nonref":%s,"keyframes":%s},"cpu_s":{' \
      "$sep" "$name" "$size" "$dur" "$all" "$nr" "$kf" >> "$JSON_OUT"
    csep=""
    for c in $CONFIGS; do
      printf '%s"%s":%s' "$csep" "$c" "$(median "$TMP/$i.$c")" >> "$JSON_OUT"
      csep=","
    done
    echo "}}" >> "$JSON_OUT"
    sep=","
  fi
done < "$TMP/videos"
[ -z "$JSON_OUT" ] || echo "]" >> "$JSON_OUT"
echo
echo "The same, net of process start-up (frames: decoded with nonref / keyframes; last: start-up CPU ms, ffmpeg and itscam)"
printf '%-24s %8s %9s | %6s | %13s %13s %13s | %6s %6s %6s | %6s %6s | %4s %4s\n' video size frames ffmpeg none \
  nonref keyframes base "@5fps" all "nr@5" "key@5" ffm its
printf '%s' "$NET"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
