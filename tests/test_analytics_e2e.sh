#!/bin/sh
# Cameras to events end to end: tracking and analytics in `itscam serve` on a real video,
# events stored and served (/v1/events, snapshots, counts, SSE with Last-Event-ID).
# The checks live in analytics_check.py.
# usage: test_analytics_e2e.sh ITSCAM_CLI SOURCE_DIR
set -eu
command -v python3 >/dev/null 2>&1 || { echo "skip: python3 not found"; exit 77; }
exec python3 "$2/tests/analytics_check.py" "$1" "$2"
