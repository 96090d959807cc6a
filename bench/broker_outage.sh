#!/bin/sh
# Broker outage, the events issue's target: a 30 s outage of each broker loses 0 events.
# Events flow at RATE per second for SECONDS through the event writer into a fresh store
# (SQLite outbox); a real mosquitto and a real redis-server run on free loopback ports.
# mosquitto is killed (SIGKILL) at 10 s and restarted OUTAGE_S later; redis-server goes 5 s
# after mosquitto is back, for as long. The publishers keep their production settings
# (reconnection backoff 1 s doubling to 30 s, jittered), so the delays include waiting for
# the next reconnection attempt. An MQTT subscriber with a persistent session receives the
# events; Redis' stream ids give the time each entry was added.
# Prints one JSON line per broker: produced, delivered (distinct), lost, duplicates (re-sent
# after a reconnection), order, delay from the event's time to the broker (p50, max) and
# when the outbox was empty. Exit status 1 when an event was lost or out of order.
# The engine is test_publish's bench mode; any build of it serves (Release is closer to
# production, the sanitizer build works too).
# usage: bench/broker_outage.sh [SECONDS] [RATE] [OUTAGE_S]
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${ITSCAM_TEST_PUBLISH:-$ROOT/build/tests/test_publish}
[ -x "$BIN" ] || {
  echo "broker_outage.sh: build test_publish first (cmake --build build --target test_publish) or set ITSCAM_TEST_PUBLISH" >&2
  exit 2
}
SECS=${1:-90} RATE=${2:-500} OUTAGE=${3:-30}
OUT1=10
OUT2=$((OUT1 + OUTAGE + 5))
# An outage still running when the events stop ends as planned; then the outbox drains.
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) CPUs" >&2
echo "events: $RATE/s for $SECS s; mosquitto down ${OUT1}-$((OUT1 + OUTAGE)) s, redis-server down ${OUT2}-$((OUT2 + OUTAGE)) s" >&2
exec "$BIN" --bench "$SECS" "$RATE" "$OUTAGE" "$OUT1" "$OUT2"
