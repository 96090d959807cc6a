#!/bin/sh
# `itscam serve` under abuse and repeated operations, over loopback sockets: made-up
# paths and model names against /metrics, the series cap, coalesced reloads and the
# resident memory across them. The checks live in ops_check.py.
# usage: test_ops.sh ITSCAM_CLI SOURCE_DIR
set -eu
command -v python3 >/dev/null 2>&1 || { echo "skip: python3 not found"; exit 77; }
exec python3 "$2/tests/ops_check.py" "$1" "$2"
