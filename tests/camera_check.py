#!/usr/bin/env python3
"""`itscam serve` with cameras, end to end over loopback: cameras from the YAML file, the
environment and the API (POST, PATCH, DELETE), persisted in the store and back after a
restart (the database wins over the YAML; a deleted camera stays deleted), credentials
never shown, a bad URL failing with a reason while the others stream, detections on a
real model from the shared videos, the snapshot, MJPEG read by curl, Server-Sent Events
read by Python (and by a client that stops reading), and the itscam_camera_* metrics.

usage: camera_check.py ITSCAM_CLI SOURCE_DIR"""
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from itscam_serve import Checks, ServeProcess, locate  # noqa: E402

CLI, SRC, SHARED = locate(sys.argv)
MODEL = os.path.join(SHARED, "models", "yolo11n-320-dynamic.onnx")
V1 = os.path.join(SHARED, "videos", "urban_road_cctv.mp4")
V2 = os.path.join(SHARED, "videos", "intersection_cctv.mp4")
C = Checks()


def req(srv, method, path, body=None, timeout=30):
    data = json.dumps(body).encode() if body is not None else None
    r = urllib.request.Request(srv.url(path), data=data, method=method,
                               headers={"Content-Type": "application/json"} if data else {})
    try:
        with urllib.request.urlopen(r, timeout=timeout) as resp:
            raw = resp.read()
            return resp.status, (json.loads(raw) if raw and resp.headers.get("Content-Type", "").startswith(
                "application/json") else raw), resp.headers
    except urllib.error.HTTPError as e:
        raw = e.read()
        try:
            return e.code, json.loads(raw), e.headers
        except ValueError:
            return e.code, raw, e.headers


def wait_for(pred, timeout, step=0.25):
    end = time.time() + timeout
    while time.time() < end:
        v = pred()
        if v:
            return v
        time.sleep(step)
    return pred()


def camera(srv, cid):
    st, body, _ = req(srv, "GET", "/v1/cameras/" + cid)
    return body if st == 200 else None


def streaming_with_detections(srv, cid):
    c = camera(srv, cid)
    return c if c and c["state"] == "streaming" and c["frames"]["detected"] >= 5 else None


def main():
    tmp = tempfile.mkdtemp(prefix="itscam-cams-")
    data = os.path.join(tmp, "data")
    cfg = os.path.join(tmp, "cams.yaml")
    with open(cfg, "w") as f:
        f.write("""models:
  model: %s
storage:
  dir: %s
cameras:
  - id: road
    url: %s
    priority: high
    detect: {fps: 4}
  - id: junction
    url: %s
    detect: {fps: 3, conf: 0.3}
  - id: dead
    url: rtsp://admin:hunter2@127.0.0.1:1/stream
    priority: low
""" % (MODEL, data, V1, V2))
    env = {"ITSCAM__CAMERAS__ENVCAM__URL": V1, "ITSCAM__CAMERAS__ENVCAM__DETECT__FPS": "5"}
    srv = ServeProcess(CLI, tmp, "--config", cfg, "--log-level", "info", env=env)
    try:
        st, body, _ = req(srv, "GET", "/v1/cameras")
        C.check(st == 200 and {c["id"] for c in body["cameras"]} == {"road", "junction", "dead", "envcam"},
                "GET /v1/cameras lists the YAML and env cameras: %s" % body)
        road = wait_for(lambda: streaming_with_detections(srv, "road"), 60)
        C.check(road is not None, "camera road streams and detects")
        if road:
            C.check(road["priority"] == "high" and road["fps"]["target"] == 4, "road's priority and target fps")
            C.check(road["frames"]["dropped"]["skipped"] > 0, "frames beyond the detect fps are skipped")
            C.check(road["latency_ms"]["p95"] > 0 and road["latency_ms"]["p50"] <= road["latency_ms"]["p95"],
                    "capture-to-result latency percentiles")
            C.check(0 <= road["quality"]["score"] <= 1 and "degraded" in road["quality"], "quality fields")
            C.check(road["stream"]["width"] == 640, "stream size")
        dead = wait_for(lambda: (lambda c: c if c and c["state"] in ("failed", "reconnecting") and c["last_error"]
                                 else None)(camera(srv, "dead")), 30)
        C.check(dead is not None and "network" in dead["reason"], "a refused RTSP URL fails with reason network: %s" % dead)
        everything = json.dumps(req(srv, "GET", "/v1/cameras")[1]) + srv.logtext() + \
            urllib.request.urlopen(srv.url("/metrics"), timeout=30).read().decode()
        C.check("hunter2" not in everything, "the password is in no response, log line or metric")
        C.check(dead is None or "***@" in dead["url"], "the URL is shown redacted")

        # Create, conflict, patch, bad input, delete.
        st, body, _ = req(srv, "POST", "/v1/cameras", {"id": "api1", "url": V2, "priority": "low",
                                                       "detect": {"fps": 2}})
        C.check(st == 201 and body["id"] == "api1" and body["priority"] == "low", "POST creates a camera: %s %s" % (st, body))
        st, _, _ = req(srv, "POST", "/v1/cameras", {"id": "api1", "url": V2})
        C.check(st == 409, "POST of an existing id is 409")
        for bad, what in (({"id": "Bad Id", "url": V2}, "id"), ({"id": "x1", "url": V2, "detect": {"fps": 0}}, "fps"),
                          ({"id": "x2"}, "no url"), ({"id": "x3", "url": V2, "bogus": 1}, "unknown key"),
                          ({"id": "x4", "url": V2, "detect": {"model": "nope"}}, "unknown model")):
            st, body, _ = req(srv, "POST", "/v1/cameras", bad)
            C.check(st == 400 and "error" in body, "POST with %s is 400: %s %s" % (what, st, body))
        st, body, _ = req(srv, "PATCH", "/v1/cameras/api1", {"detect": {"fps": 1}, "priority": "critical"})
        C.check(st == 200 and body["priority"] == "critical" and body["fps"]["target"] == 1, "PATCH changes: %s" % body)
        st, _, _ = req(srv, "PATCH", "/v1/cameras/nope", {"enabled": False})
        C.check(st == 404, "PATCH of an unknown camera is 404")
        st, body, _ = req(srv, "PATCH", "/v1/cameras/road", {"enabled": False})
        C.check(st == 200 and body["state"] == "disabled", "PATCH disables a YAML camera")
        st, _, _ = req(srv, "DELETE", "/v1/cameras/junction")
        C.check(st == 204, "DELETE removes a YAML camera")
        st, _, _ = req(srv, "GET", "/v1/cameras/junction")
        C.check(st == 404, "a deleted camera is gone")
        st, _, h = req(srv, "PUT", "/v1/cameras/api1", {})
        C.check(st == 405 and "PATCH" in (h.get("Allow") or ""), "PUT is 405 with Allow: %s" % (h.get("Allow"),))

        # Live outputs of a streaming camera (api1, critical now).
        wait_for(lambda: streaming_with_detections(srv, "api1"), 60)
        st, img, h = req(srv, "GET", "/v1/cameras/api1/snapshot.jpg?annotate=1&height=240")
        C.check(st == 200 and isinstance(img, bytes) and img[:2] == b"\xff\xd8", "snapshot.jpg is a JPEG")
        mj = subprocess.run(["curl", "-s", "--max-time", "4", "-o", os.path.join(tmp, "m.mjpg"),
                             srv.url("/v1/cameras/api1/mjpeg?fps=5&height=180")], capture_output=True)
        with open(os.path.join(tmp, "m.mjpg"), "rb") as f:
            m = f.read()
        C.check(m.count(b"\xff\xd8") >= 2 and b"Content-Type: image/jpeg" in m,
                "curl reads MJPEG parts (%d bytes, curl rc %d)" % (len(m), mj.returncode))
        # SSE: detections events from the cameras, read by Python.
        events = []
        with urllib.request.urlopen(srv.url("/v1/events/stream?camera=envcam"), timeout=30) as resp:
            end = time.time() + 8
            ev = None
            while time.time() < end and len(events) < 12:
                line = resp.readline().decode().rstrip("\n")
                if line.startswith("event: "):
                    ev = line[7:]
                elif line.startswith("data: ") and ev == "detections":
                    events.append(json.loads(line[6:]))
        C.check(len(events) >= 1 and events[0]["camera"] == "envcam" and "detections" in events[0] and
                "latency_ms" in events[0] and "captured_at" in events[0], "SSE detections events: %s" % events[:1])
        dets = [d for e in events for d in e["detections"]]
        ids = [d["track_id"] for d in dets if d.get("track_id") is not None]
        # Every detection has the key; confirmed tracks give ids (persistence across frames
        # is test_track's, on scenes with known answers).
        C.check(all("track_id" in d for d in dets) and len(ids) > 0,
                "detections carry ByteTrack ids (null before a track is confirmed): %s" % ids[:20])
        # A client that stops reading does not stop the cameras.
        s = socket.create_connection(("127.0.0.1", srv.port))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.sendall(b"GET /v1/events/stream HTTP/1.1\r\nHost: x\r\n\r\n")
        before = camera(srv, "api1")["frames"]["detected"]
        time.sleep(3)
        after = camera(srv, "api1")["frames"]["detected"]
        C.check(after > before, "cameras keep detecting while an SSE client reads nothing")
        s.close()

        metrics = urllib.request.urlopen(srv.url("/metrics"), timeout=30).read().decode()
        for name in ("itscam_camera_state{camera=\"api1\",state=\"streaming\"} 1", "itscam_camera_fps{",
                     "itscam_camera_dropped_frames_total{", "itscam_camera_detected_frames_total{",
                     "itscam_camera_reconnects_total{", "itscam_camera_latency_seconds_bucket{",
                     "itscam_camera_quality_score{", "itscam_camera_shed_level{", "itscam_shed_step"):
            C.check(name in metrics, "metrics carry %s" % name)
        out = subprocess.run([CLI, "performance", "status", "--url", srv.url("")], capture_output=True, text=True,
                             timeout=60)
        C.check(out.returncode == 0 and "CAMERA" in out.stdout and "api1" in out.stdout and "streaming" in out.stdout,
                "performance status shows the camera table:\n%s%s" % (out.stdout, out.stderr))
        out = subprocess.run([CLI, "performance", "status", "--url", srv.url(""), "--format", "json"],
                             capture_output=True, text=True, timeout=60)
        C.check(out.returncode == 0 and any(c["id"] == "api1" for c in json.loads(out.stdout).get("cameras", [])),
                "performance status --format json carries the cameras")
    finally:
        rc = srv.stop()
        C.check(rc == 0, "the server stops cleanly (exit %s; sanitizers report here)" % rc)

    # Restart: the API's changes come back from the store; the deleted YAML camera stays deleted.
    srv = ServeProcess(CLI, tmp, "--config", cfg, env=env)
    try:
        st, body, _ = req(srv, "GET", "/v1/cameras")
        ids = {c["id"]: c for c in body["cameras"]}
        C.check("junction" not in ids, "a camera deleted through the API stays deleted after a restart")
        C.check("api1" in ids and ids["api1"]["priority"] == "critical" and ids["api1"]["fps"]["target"] == 1,
                "a camera made and patched through the API survives a restart")
        C.check("road" in ids and ids["road"]["enabled"] is False, "the stored change wins over the YAML")
    finally:
        rc = srv.stop()
        C.check(rc == 0, "the server stops cleanly (exit %s; sanitizers report here)" % rc)
    C.finish()


main()
