#!/bin/sh
# `itscam serve` with cameras end to end: configuration, the camera API and its store,
# live outputs (snapshot, MJPEG, SSE) and metrics. The checks live in camera_check.py.
# usage: test_cameras.sh ITSCAM_CLI SOURCE_DIR
set -eu
command -v python3 >/dev/null 2>&1 || { echo "skip: python3 not found"; exit 77; }
command -v curl >/dev/null 2>&1 || { echo "skip: curl not found"; exit 77; }
exec python3 "$2/tests/camera_check.py" "$1" "$2"
