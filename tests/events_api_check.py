#!/usr/bin/env python3
"""The event store's HTTP API end to end: a real `itscam serve` over a store filled with
known events and occupancy samples by tests/events_tool (the library, through a second
SQLite connection, while the server runs):
  GET /v1/events: every filter against a count by hand, both orders, each page walk
    seeing every event once while events are inserted between pages, RFC 3339 and unix
    times, a 400 with a message for each bad argument;
  GET /v1/events/{id}: the listing's object, 404;
  GET /v1/events/{id}/snapshot.jpg: the JPEG's bytes; 404 for no snapshot, a deleted
    file, and stored paths that try to leave storage.dir/snapshots (.., absolute, a
    symbolic link);
  GET /v1/cameras/{id}/counts: line counts and zone occupancy per bucket against numbers
    worked out here, empty buckets, 404 only for a camera neither configured nor stored;
  GET /v1/events/stream with Last-Event-ID / last_event_id=: the stored events after
    the id that pass the filters, once each, oldest first; events inserted while the
    client is away come on the next resume.

usage: events_api_check.py ITSCAM_CLI SOURCE_DIR EVENTS_TOOL"""
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from itscam_serve import Checks, ServeProcess, locate  # noqa: E402

CLI, SRC, SHARED = locate(sys.argv)
TOOL = sys.argv[3]
MODEL = os.path.join(SHARED, "models", "yolo11n-320.onnx")
JPEG = os.path.join(SHARED, "images", "bus.jpg")
C = Checks()
T0 = 1714560000  # 2024-05-01T10:40:00Z, a multiple of 300
TYPES = ["line_cross", "zone_enter", "speeding", "line_cross"]
CLASSES = ["car", "bus", "truck"]


def tool(data, *args):
    out = subprocess.run([TOOL, DATA] + list(args), input=data, capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        raise RuntimeError("events_tool %s: %s" % (args, out.stderr))
    return out.stdout


def insert(events):
    ids = [int(x) for x in tool("".join(json.dumps(e) + "\n" for e in events), "events").split()]
    for e, i in zip(events, ids):
        e["id"] = i
    return ids


def make(i, camera):
    e = {"camera": camera, "type": TYPES[i % 4], "time": T0 + 10 * i + 0.25, "track_id": 1 + i % 40,
         "class_id": i % 3, "class": CLASSES[i % 3], "score": 0.5 + (i % 10) / 20.0, "box": [i, 2, i + 20, 40]}
    if e["type"] == "line_cross":
        e["details"] = {"line": "l%d" % (1 + i % 2), "direction": "a_to_b" if (i // 5) % 2 else "b_to_a"}
    else:
        e["details"] = {"zone": "z1"}
    return e


def get(srv, path, headers=None, timeout=30):
    r = urllib.request.Request(srv.url(path), headers=headers or {})
    try:
        with urllib.request.urlopen(r, timeout=timeout) as resp:
            raw = resp.read()
            ct = resp.headers.get("Content-Type", "")
            return resp.status, (json.loads(raw) if ct.startswith("application/json") else raw), resp.headers
    except urllib.error.HTTPError as e:
        raw = e.read()
        try:
            return e.code, json.loads(raw), e.headers
        except ValueError:
            return e.code, raw, e.headers


def walk(srv, query, limit, between=None):
    """Every page of /v1/events?query; returns the ids in the order seen."""
    seen, cursor, pages = [], None, 0
    while pages < 1000:
        q = query + "&limit=%d" % limit + ("&cursor=" + cursor if cursor else "")
        st, body, _ = get(srv, "/v1/events?" + q.lstrip("&"))
        if st != 200:
            C.check(False, "walk %s: %s %s" % (q, st, body))
            return seen
        seen += [e["id"] for e in body["events"]]
        C.check(len(body["events"]) <= limit, "a page holds at most limit events")
        cursor = body["next_cursor"]
        pages += 1
        if between:
            between()
        if cursor is None:
            return seen
    return seen


def sse_read(srv, path, headers, until_id, timeout=30):
    """(id, type, data) of each event until the one with id until_id (or a quiet
    timeout), and the names of other events (reset, dropped)."""
    out, other = [], []
    r = urllib.request.Request(srv.url(path), headers=headers)
    with urllib.request.urlopen(r, timeout=timeout) as resp:
        ev, eid, end = None, None, time.time() + timeout
        while time.time() < end:
            line = resp.readline().decode()
            if not line:
                break
            line = line.rstrip("\n")
            if line.startswith("event: "):
                ev = line[7:]
            elif line.startswith("id: "):
                eid = int(line[4:])
            elif line.startswith("data: "):
                if eid is not None:
                    out.append((eid, ev, json.loads(line[6:])))
                else:
                    other.append(ev)
            elif line == "":
                if eid is not None and eid >= until_id:
                    break
                ev, eid = None, None
    return out, other


def main():
    global DATA
    tmp = tempfile.mkdtemp(prefix="itscam-evapi-")
    DATA = os.path.join(tmp, "data")
    # The store exists before the server: 300 events on two cameras, occupancy samples.
    events = [make(i, "cam-a" if i % 5 else "cam-b") for i in range(300)]
    insert(events)
    occ = []
    for i in range(40):  # zone z1, every 15 s from T0: counts i % 7, and by class car: i % 3
        occ.append({"camera": "cam-a", "zone": "z1", "class": "", "time": T0 + 15 * i, "count": i % 7})
        occ.append({"camera": "cam-a", "zone": "z1", "class": "car", "time": T0 + 15 * i, "count": i % 3})
    tool("".join(json.dumps(o) + "\n" for o in occ), "occupancy")
    # Snapshots: one real, one whose file goes, and stored paths that try to get out.
    rel = tool("", "snapshot", "cam-a", "speeding", "7", str(T0 + 1)).strip()
    with open(JPEG, "rb") as f:
        jpeg = f.read()
    with open(os.path.join(DATA, rel), "wb") as f:
        f.write(jpeg)
    gone = tool("", "snapshot", "cam-a", "speeding", "8", str(T0 + 2)).strip()
    link = os.path.join(os.path.dirname(os.path.join(DATA, rel)), "link.jpg")
    os.symlink(os.path.join(DATA, "itscam.db"), link)
    snaps = [dict(make(2, "cam-a"), snapshot=s) for s in
             (rel, gone, "snapshots/../itscam.db", os.path.join(DATA, "itscam.db"),
              os.path.relpath(link, DATA), "snapshots/cam-a/../../itscam.db")]
    insert(snaps)
    os.unlink(os.path.join(DATA, gone))
    events += snaps

    cfg = os.path.join(tmp, "serve.yaml")
    with open(cfg, "w") as f:
        # The stored events are from 2024: no retention by age, or the server's first
        # pass would delete them all (which test_events covers).
        f.write("models:\n  model: %s\nstorage:\n  dir: %s\nevents:\n  retention_days: 0\ncameras:\n"
                "  - id: idle\n    url: rtsp://127.0.0.1:1/none\n    priority: low\n    enabled: false\n" % (MODEL, DATA))
    # (disabled: a camera that tries its URL stores camera_state events of its own, and
    # the walks below count exactly the events this test inserts)
    srv = ServeProcess(CLI, tmp, "--config", cfg)
    try:
        check_list(srv, events)
        check_pages(srv, events)
        check_one(srv, events, snaps, jpeg)
        check_counts(srv, events, occ)
        check_resume(srv, events)
    finally:
        srv.stop()
    C.finish()


def check_list(srv, events):
    st, body, _ = get(srv, "/v1/events")
    newest = sorted(events, key=lambda e: -e["id"])
    C.check(st == 200 and [e["id"] for e in body["events"]] == [e["id"] for e in newest[:100]] and
            isinstance(body["next_cursor"], str), "GET /v1/events: the newest 100 first, and a cursor")
    e0 = body["events"][0] if st == 200 else {}
    C.check(set(e0) == {"id", "camera", "type", "time", "track_id", "class_id", "class", "score", "box", "details",
                        "snapshot"}, "the event's JSON fields: %s" % sorted(e0))
    src = next((e for e in events if e["id"] == e0.get("id")), {})
    C.check(abs(e0.get("time", 0) - src.get("time", -1)) < 1e-6, "times keep their fraction: %s" % e0.get("time"))
    # Filters against counts by hand (times: since inclusive, until exclusive).
    since, until = T0 + 500, T0 + 2000
    iso_since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(since))
    iso_until = time.strftime("%Y-%m-%dT%H:%M:%S+02:00", time.gmtime(until + 7200))
    cases = [
        ("camera=cam-b", lambda e: e["camera"] == "cam-b"),
        ("type=speeding", lambda e: e["type"] == "speeding"),
        ("type=speeding,zone_enter&class=car", lambda e: e["type"] in ("speeding", "zone_enter") and e["class"] == "car"),
        ("class=bus,truck&camera=cam-a", lambda e: e["class"] in ("bus", "truck") and e["camera"] == "cam-a"),
        ("since=%d&until=%d" % (since, until), lambda e: since <= e["time"] < until),
        ("since=%s&until=%s" % (iso_since, iso_until.replace("+", "%2B")), lambda e: since <= e["time"] < until),
        ("since=%d.5" % since, lambda e: e["time"] >= since + 0.5),
        ("camera=cam-a&type=line_cross&since=%d" % since, lambda e: e["camera"] == "cam-a" and
         e["type"] == "line_cross" and e["time"] >= since),
        ("camera=nobody", lambda e: False),
    ]
    for q, pred in cases:
        want = sorted((e["id"] for e in events if pred(e)), reverse=True)
        got = walk(srv, "&" + q, 1000)
        C.check(got == want, "filter %s: %d events, by hand %d" % (q, len(got), len(want)))
    for q, what in (("limit=0", "limit"), ("limit=1001", "limit"), ("limit=ten", "limit"), ("since=yesterday", "since"),
                    ("since=2024-13-01T00:00:00Z", "since"), ("since=2024-02-30T00:00:00Z", "since"),
                    ("until=2024-05-01T10:00:00", "until"), ("until=2024-05-01T10:00:00+02:00", "%2B"), ("since=%d&until=%d" % (until, since), "before"),
                    ("order=up", "order"), ("cursor=zzz", "cursor"), ("cursor=a5&order=desc", "order"),
                    ("camera=Cam%20A", "camera"), ("type=Line-Cross", "type"), ("class=a,,b", "class"),
                    ("type=" + ",".join("t%d" % i for i in range(17)), "at most"), ("colour=red", "colour")):
        st, body, _ = get(srv, "/v1/events?" + q)
        C.check(st == 400 and what in body.get("error", ""), "400 naming %s for %s: %s %s" % (what, q, st, body))


def check_pages(srv, events):
    """Walk every page in both orders while events keep arriving between pages."""
    base = [e["id"] for e in events]
    added = []
    # One writer process for the whole walk: an insert between pages costs no start-up.
    writer = subprocess.Popen([TOOL, DATA, "each"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def more():
        writer.stdin.write(json.dumps(make(1000 + len(added), "cam-a")) + "\n")
        writer.stdin.flush()
        added.append(int(writer.stdout.readline()))

    for order in ("desc", "asc"):
        n0 = len(added)
        seen = walk(srv, "&order=" + order, 37, between=more)
        old = [i for i in seen if i in set(base)]
        C.check(sorted(old) == sorted(base) and len(old) == len(set(old)),
                "order=%s: each stored event once across %d pages (%d seen, %d stored)" %
                (order, len(seen) // 37 + 1, len(old), len(base)))
        C.check(seen == (sorted(seen) if order == "asc" else sorted(seen, reverse=True)), "order=%s: in id order" % order)
        new = [i for i in seen if i not in set(base)]
        if order == "desc":
            C.check(not new, "a newest-first walk never sees events newer than its first page")
        else:
            # Oldest first: the walk reaches its end after the inserts, so it sees them
            # all but the last (made after the last page).
            C.check(len(new) == len(set(new)) and set(new) <= set(added) and len(new) >= len(added) - n0 - 1,
                    "an oldest-first walk sees the events inserted meanwhile once: %d of %d" %
                    (len(new), len(added) - n0))
        base += added[n0:]
        events += [dict(make(1000 + n0 + k, "cam-a"), id=i) for k, i in enumerate(added[n0:])]
    writer.stdin.close()
    C.check(writer.wait(60) == 0, "the writer process ends well")


def check_one(srv, events, snaps, jpeg):
    e = events[10]
    st, body, _ = get(srv, "/v1/events/%d" % e["id"])
    st2, page, _ = get(srv, "/v1/events?limit=1&order=asc&cursor=a%d" % (e["id"] - 1))
    C.check(st == 200 and st2 == 200 and body == page["events"][0] and body["camera"] == e["camera"] and
            body["details"] == e["details"] and body["box"] == e["box"], "GET /v1/events/{id}: %s" % body)
    st, body, _ = get(srv, "/v1/events/999999999")
    C.check(st == 404 and "999999999" in body.get("error", ""), "an unknown id is 404: %s" % body)
    st, _, _ = get(srv, "/v1/events/abc")
    C.check(st == 404, "/v1/events/abc is no route")
    st, body, h = get(srv, "/v1/events/%d/snapshot.jpg" % snaps[0]["id"])
    C.check(st == 200 and h.get("Content-Type") == "image/jpeg" and body == jpeg and body[:2] == b"\xff\xd8",
            "snapshot.jpg: the JPEG (%s, %d bytes)" % (st, len(body) if isinstance(body, bytes) else -1))
    st, body, _ = get(srv, "/v1/events/%d/snapshot.jpg" % events[0]["id"])
    C.check(st == 404 and "no snapshot" in body.get("error", ""), "an event without a snapshot: 404 %s" % body)
    st, body, _ = get(srv, "/v1/events/%d/snapshot.jpg" % snaps[1]["id"])
    C.check(st == 404 and "gone" in body.get("error", ""), "a snapshot whose file is gone: 404 %s" % body)
    for s in snaps[2:]:
        st, body, _ = get(srv, "/v1/events/%d/snapshot.jpg" % s["id"])
        C.check(st == 404 and isinstance(body, dict) and "SQLite" not in json.dumps(body),
                "a stored path leaving snapshots/ is refused (%s): %s" % (s["snapshot"], st))
    st, _, _ = get(srv, "/v1/events/999999999/snapshot.jpg")
    C.check(st == 404, "snapshot of an unknown event: 404")
    C.check("snapshot refused" in srv.logtext(), "refused paths are logged")


def check_counts(srv, events, occ):
    since, until, b = T0, T0 + 3000, 300
    st, body, _ = get(srv, "/v1/cameras/cam-a/counts?since=%d&until=%d&bucket=%d" % (since, until, b))
    C.check(st == 200 and body["camera"] == "cam-a" and body["bucket_s"] == b and len(body["buckets"]) == 10 and
            [k["start"] for k in body["buckets"]] == [since + i * b for i in range(10)],
            "counts: every bucket of the range: %s" % (st if st != 200 else [k["start"] for k in body["buckets"]]))
    want = {}
    for e in events:
        if e["camera"] == "cam-a" and e["type"] == "line_cross" and since <= e["time"] < until:
            k = int((e["time"] - since) // b)
            d = want.setdefault(k, {}).setdefault(e["details"]["line"], {}).setdefault(
                e["class"], {"a_to_b": 0, "b_to_a": 0})
            d[e["details"]["direction"]] += 1
    got = {i: k["lines"] for i, k in enumerate(body.get("buckets", [])) if k["lines"]}
    C.check(got == {k: v for k, v in want.items()} and want, "line counts by bucket, line, class and direction")
    zw = {}
    for o in occ:
        k = int((o["time"] - since) // b)
        zw.setdefault(k, {}).setdefault(o["class"] or "all", []).append(o["count"])
    ok = True
    for k, by in zw.items():
        z = body["buckets"][k]["zones"].get("z1", {}) if st == 200 else {}
        for c, v in by.items():
            g = z.get(c)
            ok &= g is not None and g["samples"] == len(v) and g["max"] == max(v) and \
                abs(g["mean"] - sum(v) / len(v)) < 1e-3
    C.check(ok and zw, "zone occupancy per bucket: samples, mean, max (%s)" % body["buckets"][0]["zones"]
            if st == 200 else "counts answered")
    # Defaults: until now, since a day before; cameras with no data.
    st, body, _ = get(srv, "/v1/cameras/idle/counts")
    C.check(st == 200 and body["until"] - body["since"] == 86400 and abs(body["until"] - time.time()) < 60 and
            len(body["buckets"]) in (288, 289) and all(not k["lines"] and not k["zones"] for k in body["buckets"]),
            "a configured camera with nothing stored: empty buckets over the last 24 h")
    st, _, _ = get(srv, "/v1/cameras/cam-b/counts?since=%d&until=%d" % (since, until))
    C.check(st == 200, "a camera with stored events only (not configured) has counts")
    st, body, _ = get(srv, "/v1/cameras/nobody/counts")
    C.check(st == 404, "a camera neither configured nor stored: 404 %s" % body)
    for q, what in (("bucket=0", "bucket"), ("bucket=1.5", "bucket"), ("bucket=1&since=0&until=86400", "buckets"),
                    ("since=%d&until=%d" % (until, since), "before"), ("from=1", "from")):
        st, body, _ = get(srv, "/v1/cameras/cam-a/counts?" + q)
        C.check(st == 400 and what in body.get("error", ""), "counts 400 naming %s for %s: %s" % (what, q, body))


def check_resume(srv, events):
    cam_a = [e for e in events if e["camera"] == "cam-a" and e["type"] == "line_cross"]
    cam_a.sort(key=lambda e: e["id"])
    start = cam_a[20]["id"]
    want = [e["id"] for e in cam_a if e["id"] > start]
    got, other = sse_read(srv, "/v1/events/stream?camera=cam-a&type=line_cross", {"Last-Event-ID": str(start)},
                          want[-1])
    C.check([g[0] for g in got] == want and not other and all(g[1] == "line_cross" and g[2]["id"] == g[0]
                                                                 for g in got),
            "Last-Event-ID replays the stored events after it, once, in order: %d of %d" % (len(got), len(want)))
    last = got[-1][0] if got else start
    # Away: more events are stored; the next resume brings exactly those.
    extra = [make(2000 + i, "cam-a") for i in range(12)]
    insert(extra)
    want2 = [e["id"] for e in extra if e["type"] == "line_cross"]
    got2, other = sse_read(srv, "/v1/events/stream?camera=cam-a&type=line_cross&last_event_id=%d" % last, {},
                           want2[-1])
    C.check([g[0] for g in got2] == want2 and not other,
            "events stored while the client was away come once on resume: %s vs %s" % ([g[0] for g in got2], want2))
    # A class filter over every camera, from the start.
    want3 = [e["id"] for e in sorted(events + extra, key=lambda e: e["id"]) if e["class"] == "truck"]
    got3, _ = sse_read(srv, "/v1/events/stream?class=truck", {"Last-Event-ID": "0"}, want3[-1])
    C.check([g[0] for g in got3] == want3, "class filter on replay: %d of %d" % (len(got3), len(want3)))


if __name__ == "__main__":
    main()
