#!/usr/bin/env python3
"""A camera's tracks, counts and incidents through `itscam serve`, over real sockets: one
file camera with a line, a zone and event snapshots; its events must reach SSE with store
ids, the store (/v1/events, paged), the snapshot route (a real JPEG), the counts route
(occupancy samples), the camera API and the metrics; an SSE client that reconnects with
Last-Event-ID must get exactly the stored events it missed, in order; events survive a
restart.

usage: analytics_check.py ITSCAM_CLI SOURCE_DIR"""
import json
import os
import socket
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from itscam_serve import Checks, ServeProcess, locate  # noqa: E402

CLI, SRC, SHARED = locate(sys.argv)
MODEL = os.path.join(SHARED, "models", "yolo11n-320-dynamic.onnx")
VIDEO = os.path.join(SHARED, "videos", "urban_road_cctv.mp4")
C = Checks()


def get(srv, path, timeout=30):
    with urllib.request.urlopen(srv.url(path), timeout=timeout) as r:
        raw = r.read()
        return r.status, r.headers.get("Content-Type", ""), raw


def get_json(srv, path):
    return json.loads(get(srv, path)[2])


def sse(srv, path, n_events, timeout, last_id=None):
    """Read SSE until n_events stored events (with an id) came; [(id, type, data)]."""
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=timeout)
    hdr = "GET %s HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n" % path
    if last_id is not None:
        hdr += "Last-Event-ID: %d\r\n" % last_id
    s.sendall((hdr + "\r\n").encode())
    buf, out, end = b"", [], time.time() + timeout
    while len(out) < n_events and time.time() < end:
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            break
        if not chunk:
            break
        buf += chunk
        while b"\n\n" in buf:
            block, buf = buf.split(b"\n\n", 1)
            ev = {"id": None, "event": None, "data": None}
            for line in block.decode(errors="replace").split("\n"):
                for key in ev:
                    if line.startswith(key + ": "):
                        ev[key] = line[len(key) + 2:]
            if ev["id"] and ev["data"]:
                # chunked transfer framing may precede the first field; ids are digits
                digits = "".join(ch for ch in ev["id"] if ch.isdigit())
                out.append((int(digits), ev["event"], json.loads(ev["data"])))
    s.close()
    return out


def main():
    tmp = tempfile.mkdtemp(prefix="itscam-an-")
    data = os.path.join(tmp, "data")
    cfg = os.path.join(tmp, "cams.yaml")
    with open(cfg, "w") as f:
        f.write("""models:
  model: %s
storage:
  dir: %s
track:
  track_buffer: 30
events:
  snapshots: zone_enter
  occupancy_every_s: 1
cameras:
  - id: road
    url: %s
    detect: {fps: 5}
    coordinates: normalized
    lines:
      - {id: mid, points: [[0, 0.55], [1, 0.55]]}
    zones:
      - {id: all, polygon: [[0, 0], [1, 0], [1, 1], [0, 1]]}
""" % (MODEL, data, VIDEO))
    srv = ServeProcess(CLI, tmp, "--config", cfg)
    try:
        # Live: stored events arrive on SSE with their store ids, in increasing order.
        live = sse(srv, "/v1/events/stream?camera=road&type=track_start,zone_enter", 6, 60)
        ids = [i for i, _, _ in live]
        C.check(len(live) >= 6, "SSE carried %d track_start/zone_enter events with ids" % len(live))
        C.check(ids == sorted(ids) and len(set(ids)) == len(ids), "SSE ids increase: %s" % ids[:8])
        C.check(all(t in ("track_start", "zone_enter") and d["camera"] == "road" and d["track_id"] >= 1
                    and d["class"] for _, t, d in live), "filtered SSE events carry camera, track and class")
        # Stored: the same events, paged through /v1/events.
        time.sleep(1)
        seen, cursor, pages = [], "", 0
        while pages < 100:
            q = "/v1/events?camera=road&type=track_start,zone_enter&limit=3&order=asc" + (
                "&cursor=" + cursor if cursor else "")
            page = get_json(srv, q)
            seen += [e["id"] for e in page["events"]]
            pages += 1
            cursor = page.get("next_cursor")
            if not cursor:
                break
        C.check(set(ids) <= set(seen), "every SSE event is in the store (%d stored, %d pages)" % (len(seen), pages))
        C.check(seen == sorted(seen) and len(seen) == len(set(seen)), "pages hold each event once, in order")
        # A zone_enter keeps a snapshot: a real JPEG through the API.
        enters = get_json(srv, "/v1/events?camera=road&type=zone_enter&limit=5")["events"]
        snap = [e for e in enters if e["snapshot"]]
        C.check(snap, "zone_enter events have snapshots")
        if snap:
            st, ctype, body = get(srv, "/v1/events/%d/snapshot.jpg" % snap[0]["id"])
            C.check(st == 200 and ctype == "image/jpeg" and body[:3] == b"\xff\xd8\xff",
                    "snapshot.jpg is a JPEG (%d bytes)" % len(body))
            one = get_json(srv, "/v1/events/%d" % snap[0]["id"])
            C.check(one["id"] == snap[0]["id"] and one["details"].get("zone") == "all", "event by id, with its zone")
        # Resume: read some, drop the connection, come back with Last-Event-ID.
        first = sse(srv, "/v1/events/stream?camera=road&type=track_start", 2, 60)
        C.check(len(first) == 2, "resume: two events before the disconnect")
        if len(first) == 2:
            last = first[-1][0]
            time.sleep(3)  # events happen while the client is away
            again = sse(srv, "/v1/events/stream?camera=road&type=track_start", 3, 60, last_id=last)
            stored = [e["id"] for e in get_json(
                srv, "/v1/events?camera=road&type=track_start&order=asc&limit=1000")["events"] if e["id"] > last]
            got = [i for i, _, _ in again][:3]
            C.check(len(got) == 3 and got == stored[:3],
                    "Last-Event-ID %d resumes with the stored events after it: %s vs %s" % (last, got, stored[:3]))
        # The camera API and the counts route.
        cam = get_json(srv, "/v1/cameras/road")
        an = cam.get("analytics", {})
        C.check(an.get("events", 0) > 0 and an["zones"][0]["id"] == "all" and an["lines"][0]["id"] == "mid",
                "camera API shows analytics: %s" % {k: an.get(k) for k in ("lines", "zones", "events")})
        C.check(cam["config"]["lines"][0]["points"] == [[0, 0.55], [1, 0.55]], "camera config shows its line")
        counts = get_json(srv, "/v1/cameras/road/counts?bucket=60&since=%d" % (time.time() - 600))
        occ = [b["zones"].get("all") for b in counts["buckets"] if b["zones"].get("all")]
        C.check(occ, "counts route has zone occupancy samples")
        metrics = get(srv, "/metrics")[2].decode()
        C.check("itscam_events_stored_total " in metrics and 'itscam_zone_occupancy{camera="road",zone="all"}'
                in metrics and 'itscam_line_crossings_total{camera="road",line="mid",direction="a_to_b"}' in metrics,
                "event metrics are exported")
    finally:
        srv.stop()
    # After a restart: the history is still there, and the cameras' last tracks ended.
    srv = ServeProcess(CLI, tmp, "--config", cfg)
    try:
        ends = get_json(srv, "/v1/events?camera=road&type=track_end&limit=5")["events"]
        C.check(ends, "track_end events were written when the server stopped")
        C.check(get_json(srv, "/v1/events?camera=road&limit=1")["events"], "events survive a restart")
    finally:
        srv.stop()
    C.finish()


if __name__ == "__main__":
    main()
