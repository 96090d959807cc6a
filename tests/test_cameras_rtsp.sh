#!/bin/sh
# Real RTSP cameras on loopback (../shared/tools/cams): kill and restart, stall, wrong
# credentials, and the other cameras unaffected. The checks live in rtsp_check.py.
# usage: test_cameras_rtsp.sh ITSCAM_CLI SOURCE_DIR
set -eu
command -v python3 >/dev/null 2>&1 || { echo "skip: python3 not found"; exit 77; }
exec python3 "$2/tests/rtsp_check.py" "$1" "$2"
