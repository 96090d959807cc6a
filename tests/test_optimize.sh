#!/bin/sh
# `itscam performance optimize` end to end: a tiny sweep (table and JSON), each choice
# consistent with its strategy's rule, the written configuration accepted by
# `itscam config --check`, and PUT/GET /v1/admin/scheduler on a running server (tokens,
# 401/403/400, values applied). The checks live in optimize_check.py.
# usage: test_optimize.sh ITSCAM_CLI SOURCE_DIR
set -eu
command -v python3 >/dev/null 2>&1 || { echo "skip: python3 not found"; exit 77; }
exec python3 "$2/tests/optimize_check.py" "$1" "$2"
