# Shared by the bench/ scripts that start a server (sourced, not run): the CLI to use, a
# temporary folder removed on exit with the server killed, and start_serve, which starts
# `itscam serve` on a free loopback port and waits until it reports ready.
# Needs ROOT and die() from the caller.
CLI=${ITSCAM_CLI:-$ROOT/build/itscam}
[ -x "$CLI" ] || die "build itscam first (cmake -B build && cmake --build build) or set ITSCAM_CLI"
TMP=$(mktemp -d)
SRV=""
cleanup() { [ -n "$SRV" ] && kill "$SRV" 2>/dev/null; wait 2>/dev/null; rm -rf "$TMP"; }
trap cleanup EXIT

# start_serve ARGS...: sets SRV (its pid), PORT and URL; the log is $TMP/serve.log.
start_serve() {
  "$CLI" serve --host 127.0.0.1 --port 0 "$@" > "$TMP/serve.log" 2>&1 &
  SRV=$!
  _i=0
  until grep -q "itscam serve: ready" "$TMP/serve.log"; do
    _i=$((_i + 1)); [ $_i -lt 1200 ] || die "the server did not get ready: $(cat "$TMP/serve.log")"
    kill -0 "$SRV" 2>/dev/null || die "the server exited: $(cat "$TMP/serve.log")"
    sleep 0.1
  done
  PORT=$(sed -n 's/.*listening on http:\/\/[0-9.]*:\([0-9]*\).*/\1/p' "$TMP/serve.log" | head -1)
  URL=http://127.0.0.1:$PORT
}
