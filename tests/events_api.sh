#!/bin/sh
# The event store's HTTP API end to end (events_api_check.py).
# usage: events_api.sh ITSCAM_CLI SOURCE_DIR EVENTS_TOOL
set -eu
command -v python3 >/dev/null 2>&1 || { echo "skip: python3 not found"; exit 77; }
exec python3 "$2/tests/events_api_check.py" "$1" "$2" "$3"
