#!/bin/sh
# `itscam serve` against hostile connections over raw loopback sockets: slow headers and
# bodies, per-address limits, reserved slots for probes, and request framing (RFC 9112).
# The checks live in conn_check.py.
# usage: test_conn.sh ITSCAM_CLI SOURCE_DIR
set -eu
command -v python3 >/dev/null 2>&1 || { echo "skip: python3 not found"; exit 77; }
exec python3 "$2/tests/conn_check.py" "$1" "$2"
