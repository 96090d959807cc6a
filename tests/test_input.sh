#!/bin/sh
# Hostile inputs to `itscam serve` over loopback sockets: decompression bombs against the
# decode budget (peak RSS watched), non-finite and unknown KServe tensors, outputs and
# versions, and lenient query and KServe parameters. The checks live in input_check.py.
# usage: test_input.sh ITSCAM_CLI SOURCE_DIR
set -eu
command -v python3 >/dev/null 2>&1 || { echo "skip: python3 not found"; exit 77; }
exec python3 "$2/tests/input_check.py" "$1" "$2"
