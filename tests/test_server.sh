#!/bin/sh
# `itscam serve` end to end over loopback sockets: every route and error, KServe v2 with
# the binary extension, priorities and queue limits under concurrent load, disconnects,
# tokens, TLS, reload and drain. The checks live in server_check.py.
# usage: test_server.sh ITSCAM_CLI SOURCE_DIR
set -eu
command -v python3 >/dev/null 2>&1 || { echo "skip: python3 not found"; exit 77; }
command -v curl >/dev/null 2>&1 || { echo "skip: curl not found"; exit 77; }
exec python3 "$2/tests/server_check.py" "$1" "$2"
