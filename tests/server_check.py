#!/usr/bin/env python3
"""End-to-end tests of `itscam serve` over real sockets on loopback.

Clients: curl (routes, multipart, TLS, tokens) and Python's http.client / raw sockets
(concurrency, priorities, disconnects, KServe's binary extension). Detections from the
server are compared with `itscam detect` on the same image, raw KServe outputs with ONNX
Runtime's reference tensors from ../shared.

usage: server_check.py ITSCAM_CLI SOURCE_DIR"""
import http.client
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from itscam_serve import Checks, ServeProcess, locate  # noqa: E402

CLI, SRC, SHARED = locate(sys.argv)
MODELS = os.path.join(SHARED, "models")
IMAGES = os.path.join(SHARED, "images")

CHECKS = Checks()
check = CHECKS.check


TMP = tempfile.mkdtemp(prefix="itscam-server-")
MDIR = os.path.join(TMP, "models")
os.mkdir(MDIR)
for m in ("yolo11n.onnx", "yolo11n-320.onnx"):
    os.symlink(os.path.join(MODELS, m), os.path.join(MDIR, m))
BUS = open(os.path.join(IMAGES, "bus.jpg"), "rb").read()
ZIDANE = open(os.path.join(IMAGES, "zidane.jpg"), "rb").read()


class Server(ServeProcess):
    """An `itscam serve` process on an ephemeral port; its log goes to a file."""

    def __init__(self, *args, env=None, wait_ready=True, scheme="http"):
        super().__init__(CLI, TMP, *args, env=env, wait_ready=wait_ready, scheme=scheme)

    def req(self, method, path, body=None, headers=None, timeout=120):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        data = r.read()
        hdrs = dict((k.lower(), v) for k, v in r.getheaders())
        c.close()
        return r.status, hdrs, data

    def json(self, method, path, body=None, headers=None):
        st, h, d = self.req(method, path, body, headers)
        try:
            return st, json.loads(d.decode()) if d else None
        except ValueError:
            return st, {"_raw": d[:200]}


def curl(*args):
    r = subprocess.run(["curl", "-sS", "-o", "-", "-w", "\n%{http_code}"] + list(args), capture_output=True)
    out = r.stdout.decode(errors="replace")
    body, _, code = out.rpartition("\n")
    return int(code or 0), body


def cli_detect(model, image):
    r = subprocess.run([CLI, "detect", "--model", model, image], capture_output=True, check=True)
    doc = json.loads(r.stdout)
    return doc["results"][0]["detections"] if "results" in doc else doc[0]["detections"]


def same_dets(a, b, tol=0.02):
    if len(a) != len(b):
        return False
    for x, y in zip(a, b):
        if x["class_id"] != y["class_id"] or abs(x["score"] - y["score"]) > 1e-4:
            return False
        if any(abs(p - q) > tol for p, q in zip(x["box"], y["box"])):
            return False
    return True


def rel_l2(a, b):
    num = sum((x - y) ** 2 for x, y in zip(a, b))
    den = sum(y * y for y in b)
    return (num / den) ** 0.5


# ---------------------------------------------------------------------------------
print("== routes, detection and KServe on a models directory", flush=True)
srv = Server("--models", MDIR, "--max-batch", "4", "--workers", "1", "--threads", "2",
             "--batching.max_delay_ms_normal", "5")
try:
    for path, key in (("/v2", "name"), ("/v2/health/live", "live"), ("/health", "live"),
                      ("/v2/health/ready", "ready"), ("/ready", "ready")):
        st, j = srv.json("GET", path)
        check(st == 200 and j and j.get(key), "GET %s -> %s %s" % (path, st, j))
    st, j = srv.json("GET", "/v1/models")
    names = [m["name"] for m in j["models"]] if st == 200 else []
    check(names == ["yolo11n", "yolo11n-320"], "/v1/models lists both models: %s" % names)
    m640 = [m for m in j["models"] if m["name"] == "yolo11n"][0]
    check(m640["input"] == [-1, 3, 640, 640] and m640["classes"] == 80 and m640["precision"] == "fp32"
          and m640["backend"] == "cpu" and m640["ready"] is True, "/v1/models fields: %s" % m640)
    st, j = srv.json("GET", "/v2/models/yolo11n")
    check(st == 200 and j["inputs"][0]["shape"] == [-1, 3, 640, 640] and j["outputs"][0]["shape"] == [-1, 84, 8400]
          and j["inputs"][0]["datatype"] == "FP32", "model metadata: %s" % j)
    st, _ = srv.json("GET", "/v2/models/yolo11n/versions/1/ready")
    check(st == 200, "versioned ready")
    st, j = srv.json("GET", "/v2/models/nope/ready")
    check(st == 404 and "unknown model" in j["error"], "unknown model ready -> 404 %s" % j)

    # Warm-up covers the first request: its preprocess (letterbox of a 1280x720 frame into
    # the 320 input) allocates nothing new, so it is no outlier next to the second one.
    # Relative, with slack, so that a slow sanitizer build does not make it flaky.
    pre = []
    for _ in range(2):
        st, j = srv.json("POST", "/v1/detect?model=yolo11n-320", ZIDANE, {"Content-Type": "image/jpeg"})
        pre.append(j["timings_ms"]["preprocess"] if st == 200 else 1e9)
    check(pre[0] < max(20.0, 4 * pre[1]), "first request's preprocess %.1f ms is no outlier (second %.1f ms)" % tuple(pre))

    # /v1/detect agrees with `itscam detect` on the same model and image.
    ref320 = cli_detect(os.path.join(MDIR, "yolo11n-320.onnx"), os.path.join(IMAGES, "bus.jpg"))
    ref640 = cli_detect(os.path.join(MDIR, "yolo11n.onnx"), os.path.join(IMAGES, "bus.jpg"))
    st, j = srv.json("POST", "/v1/detect?model=yolo11n-320", BUS, {"Content-Type": "image/jpeg"})
    check(st == 200 and same_dets(j["detections"], ref320), "/v1/detect 320 == itscam detect")
    check(st == 200 and j["width"] == 810 and j["height"] == 1080 and j["model"] == "yolo11n-320"
          and set(j["timings_ms"]) == {"queue", "decode", "preprocess", "inference", "postprocess", "total"},
          "/v1/detect fields: %s" % {k: v for k, v in (j or {}).items() if k != "detections"})
    st, j = srv.json("POST", "/predict?model=yolo11n", BUS, {"Content-Type": "image/jpeg"})
    check(st == 200 and same_dets(j["detections"], ref640), "/predict 640 == itscam detect")
    code, body = curl("-F", "file=@%s;type=image/jpeg" % os.path.join(IMAGES, "bus.jpg"),
                      srv.url("/v1/detect?model=yolo11n"))
    check(code == 200 and same_dets(json.loads(body)["detections"], ref640), "multipart /v1/detect (curl -F)")
    code, body = curl("-F", "file=@%s" % os.path.join(IMAGES, "bus.jpg"), "-F",
                      "file=@%s" % os.path.join(IMAGES, "zidane.jpg"), srv.url("/v1/detect/batch?model=yolo11n"))
    res = json.loads(body).get("results", []) if code == 200 else []
    check(code == 200 and len(res) == 2 and res[0]["filename"] == "bus.jpg" and same_dets(res[0]["detections"], ref640)
          and res[1]["width"] == 1280, "multipart /v1/detect/batch with two files")
    # Sizes run are 1 and 4 here (max_batch 4; preferred 8 dropped): 2 images run as 1 + 1.
    check(code == 200 and all(r["batch_size"] in (1, 4) for r in res), "only warmed batch sizes run: %s"
          % [r["batch_size"] for r in res])
    code, body = curl("-F", "file=@%s" % os.path.join(IMAGES, "zidane.jpg"), srv.url("/predict/batch"))
    check(code == 200 and len(json.loads(body)["results"]) == 1, "/predict/batch alias, default model")
    # Query parameters.
    st, j = srv.json("POST", "/v1/detect?model=yolo11n&classes=0", BUS, {"Content-Type": "image/jpeg"})
    check(st == 200 and j["detections"] and all(d["class_id"] == 0 for d in j["detections"]), "classes=0")
    st, j = srv.json("POST", "/v1/detect?model=yolo11n&max_det=1", BUS, {"Content-Type": "image/jpeg"})
    check(st == 200 and len(j["detections"]) == 1, "max_det=1")
    st, j = srv.json("POST", "/v1/detect?model=yolo11n&max_det=1000", BUS, {"Content-Type": "image/jpeg"})
    check(st == 200, "max_det=1000 accepted (the config's range, 1..10000): %s" % st)
    st, j = srv.json("POST", "/v1/detect?max_det=10001", BUS, {"Content-Type": "image/jpeg"})
    check(st == 400 and "[1,10000]" in j["error"], "max_det=10001 -> 400: %s" % j)
    st, j = srv.json("POST", "/v1/detect?model=yolo11n&conf=0.8", BUS, {"Content-Type": "image/jpeg"})
    check(st == 200 and all(d["score"] > 0.8 for d in j["detections"]) and len(j["detections"]) < len(ref640),
          "conf=0.8")

    # Errors.
    st, j = srv.json("POST", "/v1/detect?conf=2", BUS, {"Content-Type": "image/jpeg"})
    check(st == 400 and "conf" in j["error"], "bad conf -> 400 %s" % j)
    st, j = srv.json("POST", "/v1/detect?priority=whenever", BUS, {"Content-Type": "image/jpeg"})
    check(st == 400 and "priority" in j["error"], "bad priority -> 400")
    st, j = srv.json("POST", "/v1/detect", b"hello", {"Content-Type": "text/plain"})
    check(st == 415 and "content type" in j["error"], "text/plain -> 415 %s" % j)
    st, j = srv.json("POST", "/v1/detect", b"\xff\xd8\xff\xe0garbage" * 10, {"Content-Type": "image/jpeg"})
    check(st == 422 and "decode" in j["error"], "corrupt JPEG -> 422 with the reason: %s" % j)
    st, j = srv.json("POST", "/v1/detect?model=nope", BUS, {"Content-Type": "image/jpeg"})
    check(st == 404 and "nope" in j["error"], "unknown model -> 404")
    st, j = srv.json("GET", "/v1/detect")
    check(st == 405, "GET /v1/detect -> 405")
    st, h, _ = srv.req("PUT", "/v1/backend")
    check(st == 405 and h.get("allow") == "GET, POST", "PUT /v1/backend -> 405, Allow: GET, POST (%s %s)" % (st, h.get("allow")))
    st, j = srv.json("GET", "/nothing/here")
    check(st == 404, "unknown route -> 404")
    st, j = srv.json("POST", "/v2/models/yolo11n-320/infer", b'{"inputs": [ {"name": ', {"Content-Type": "application/json"})
    check(st == 400 and re.search(r"byte \d+", j["error"]), "malformed JSON -> 400 with the position: %s" % j)
    st, j = srv.json("POST", "/v1/detect", b"", {"Content-Type": "image/jpeg"})
    check(st == 400, "empty body -> 400")

    # KServe v2 infer: JSON tensors against ONNX Runtime's reference output.
    raw_in = open(os.path.join(SHARED, "reference", "raw", "bus-320.input.f32"), "rb").read()
    ref_out = struct.unpack("<%df" % (84 * 2100), open(os.path.join(SHARED, "reference", "raw",
                                                                     "bus-320.yolo11n-320.output.f32"), "rb").read())
    xs = struct.unpack("<%df" % (3 * 320 * 320), raw_in)
    req = {"id": "r1", "inputs": [{"name": "images", "datatype": "FP32", "shape": [1, 3, 320, 320], "data": list(xs)}]}
    st, j = srv.json("POST", "/v2/models/yolo11n-320/infer", json.dumps(req).encode(), {"Content-Type": "application/json"})
    ok = st == 200 and j["id"] == "r1" and j["outputs"][0]["shape"] == [1, 84, 2100]
    check(ok and rel_l2(j["outputs"][0]["data"], ref_out) < 1e-5, "KServe JSON FP32 infer matches ORT")
    # Binary extension both ways.
    hdr = json.dumps({"inputs": [{"name": "images", "datatype": "FP32", "shape": [1, 3, 320, 320],
                                  "parameters": {"binary_data_size": len(raw_in)}}],
                      "parameters": {"binary_data_output": True}}).encode()
    st, h, d = srv.req("POST", "/v2/models/yolo11n-320/infer", hdr + raw_in,
                       {"Inference-Header-Content-Length": str(len(hdr)), "Content-Type": "application/octet-stream"})
    ok = st == 200 and "inference-header-content-length" in h
    if ok:
        jl = int(h["inference-header-content-length"])
        meta = json.loads(d[:jl])
        out = struct.unpack("<%df" % (84 * 2100), d[jl:])
        ok = meta["outputs"][0]["parameters"]["binary_data_size"] == 84 * 2100 * 4 and rel_l2(out, ref_out) < 1e-5
    check(ok, "KServe binary tensor extension in and out matches ORT (status %s)" % st)
    # detections: true on the FP32 tensor (already letterboxed: boxes in input pixels).
    req["parameters"] = {"detections": True}
    st, j = srv.json("POST", "/v2/models/yolo11n-320/infer", json.dumps(req).encode())
    check(st == 200 and j["outputs"][0]["name"] == "detections" and j["outputs"][0]["shape"][1] == 7
          and len(j["detections"][0]) == len(ref320), "KServe detections: true on FP32 input")
    # max_det: tensors and images take the same range, past the configured default of 300.
    many = {"conf": 0.0001, "iou": 0.99, "max_det": 1000}
    st, j = srv.json("POST", "/v1/detect?model=yolo11n-320&conf=0.0001&iou=0.99&max_det=1000", BUS,
                     {"Content-Type": "image/jpeg"})
    n_img = len(j["detections"]) if st == 200 else -1
    req["parameters"] = dict(many, detections=True)
    st, j = srv.json("POST", "/v2/models/yolo11n-320/infer", json.dumps(req).encode())
    n_ten = len(j["detections"][0]) if st == 200 else -1
    check(300 < n_img <= 1000 and 300 < n_ten <= 1000,
          "max_det=1000 gives over 300 boxes on an image (%d) and on a tensor (%d)" % (n_img, n_ten))
    # UINT8 HWC image tensor: a grey frame with nothing in it, two at once.
    img = bytes([114]) * (200 * 300 * 3)
    hdr = json.dumps({"inputs": [{"name": "image", "datatype": "UINT8", "shape": [2, 200, 300, 3],
                                  "parameters": {"binary_data_size": 2 * len(img)}}],
                      "parameters": {"detections": True}}).encode()
    st, h, d = srv.req("POST", "/v2/models/yolo11n/infer", hdr + img + img, {"Inference-Header-Content-Length": str(len(hdr))})
    j = json.loads(d) if st == 200 else {}
    check(st == 200 and len(j.get("detections", [])) == 2, "KServe UINT8 [N,H,W,3] image tensor with detections")
    st, j = srv.json("POST", "/v2/models/yolo11n-320/infer",
                     json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 3, 2, 2],
                                             "data": [0.0] * 12}]}).encode())
    check(st == 400 and "shape" in j["error"], "KServe wrong input shape -> 400 %s" % j)

    # Body limit with a chunked upload (no Content-Length) and with one.
    s = socket.create_connection(("127.0.0.1", srv.port))
    s.sendall(b"POST /v1/detect HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n"
              % (33 * 1024 * 1024))
    head = s.recv(4096)
    s.close()
    check(head.startswith(b"HTTP/1.1 413"), "33 MiB Content-Length -> 413 before the body is sent: %r" % head[:40])
    big = os.path.join(TMP, "big.bin")
    with open(big, "wb") as f:
        f.write(b"\0" * (33 * 1024 * 1024))
    code, body = curl("-H", "Transfer-Encoding: chunked", "-H", "Content-Type: image/jpeg", "--data-binary", "@" + big,
                      srv.url("/v1/detect"))
    check(code == 413, "33 MiB chunked upload -> 413 (got %s)" % code)
    os.unlink(big)

    # A client that disconnects mid-upload, and one that leaves while its job is queued.
    s = socket.create_connection(("127.0.0.1", srv.port))
    s.sendall(b"POST /v1/detect HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nContent-Length: 100000\r\n\r\n" + BUS[:5000])
    s.close()
    s = socket.create_connection(("127.0.0.1", srv.port))
    s.sendall(b"POST /v1/detect/batch?model=yolo11n HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n"
              % len(BUS) + BUS)
    s.close()
    time.sleep(0.5)
    st, j = srv.json("POST", "/v1/detect?model=yolo11n-320", BUS, {"Content-Type": "image/jpeg"})
    check(st == 200 and same_dets(j["detections"], ref320), "serving goes on after clients disconnect")

    # Metrics.
    st, h, d = srv.req("GET", "/metrics")
    text = d.decode()
    check(st == 200 and h.get("content-type", "").startswith("text/plain"), "/metrics content type")
    for name in ("itscam_requests_total", "itscam_request_duration_seconds_bucket", "itscam_queue_duration_seconds_sum",
                 "itscam_decode_duration_seconds_count", "itscam_preprocess_duration_seconds_count",
                 "itscam_inference_duration_seconds_count", "itscam_postprocess_duration_seconds_count",
                 "itscam_batch_size_bucket", "itscam_queue_depth", "itscam_inflight_requests",
                 "itscam_sla_violations_total", "itscam_sla_seconds", "itscam_process_cpu_seconds_total",
                 "itscam_process_resident_memory_bytes", "itscam_build_info", "itscam_model_ready"):
        check(name in text, "/metrics has %s" % name)
    m = re.search(r'itscam_requests_total\{route="/v1/detect",model="yolo11n-320",code="200"\} (\d+)', text)
    check(m and int(m.group(1)) >= 2, "request counter by route, model and code")
    check(re.search(r'itscam_requests_total\{route="/v1/detect",model="[^"]*",code="415"\} 1', text) is not None,
          "415 counted")
    check(re.search(r'itscam_requests_total\{route="/v2/models/\{model\}/infer",model="yolo11n-320",code="200"\} \d+', text)
          is not None, "the route label is the route's pattern")
    check('model="nope"' not in text, "unknown model names stay out of the labels")

    # The operator commands against the live server.
    r = subprocess.run([CLI, "performance", "status", "--url", srv.url(""), "--format", "json"], capture_output=True)
    check(r.returncode == 0 and json.loads(r.stdout), "performance status --format json: %s" % r.stderr[-300:])
    r = subprocess.run([CLI, "performance", "status", "--url", srv.url(""), "--detailed"], capture_output=True)
    check(r.returncode == 0 and b"yolo11n" in r.stdout, "performance status --detailed")
    r = subprocess.run([CLI, "performance", "monitor", "--url", srv.url(""), "--interval", "1", "--duration", "2"],
                       capture_output=True)
    check(r.returncode == 0 and r.stdout, "performance monitor")
    r = subprocess.run([CLI, "performance", "benchmark", "--url", srv.url(""), "--concurrency", "1,4", "--duration", "3",
                        "--warmup", "1", "--images", IMAGES, "--model", "yolo11n-320", "--json"], capture_output=True)
    ok = r.returncode == 0
    if ok:
        b = json.loads(r.stdout)["results"]
        ok = len(b) == 2 and all(x["ok"] > 0 and x["errors"] == 0 for x in b)
    check(ok, "performance benchmark: %s %s" % (r.stdout[-400:], r.stderr[-400:]))
    r = subprocess.run([CLI, "performance", "status", "--url", "http://127.0.0.1:1"], capture_output=True)
    check(r.returncode != 0 and b"127.0.0.1:1" in r.stderr, "performance status on a dead URL fails clearly")

    # SIGHUP reloads while requests are in flight: none is lost.
    results = []

    def client():
        # Requests before, during and after the swap.
        deadline = time.time() + 120
        while time.time() < deadline and "reloaded" not in srv.logtext():
            results.append(srv.req("POST", "/v1/detect?model=yolo11n-320", BUS, {"Content-Type": "image/jpeg"})[0])
        for _ in range(2):
            results.append(srv.req("POST", "/v1/detect?model=yolo11n-320", BUS, {"Content-Type": "image/jpeg"})[0])

    th = [threading.Thread(target=client) for _ in range(3)]
    for t in th:
        t.start()
    time.sleep(0.2)
    srv.p.send_signal(signal.SIGHUP)
    for t in th:
        t.join()
    check(len(results) >= 6 and all(c == 200 for c in results), "requests across a SIGHUP reload all succeed: %s" % results)
    check("reloaded" in srv.logtext(), "SIGHUP reload logged")
finally:
    rc = srv.stop()
check(rc == 0, "SIGTERM exits 0 (got %s)" % rc)

# ---------------------------------------------------------------------------------
print("== KServe tensors from separate requests share batches", flush=True)
# The 320 model with a dynamic batch (its batch-1 output is yolo11n-320's, so the same ORT
# reference holds). max_batch 2 runs sizes 1 and 2, so two tensors queued together make a
# batch; the server sees only these tensors, so every batch above 1 is theirs.
srv = Server("--model", os.path.join(MODELS, "yolo11n-320-dynamic.onnx"), "--max-batch", "2", "--workers", "1",
             "--threads", "2")
try:
    def batch_hist():
        text = srv.req("GET", "/metrics")[2].decode()
        le1 = re.search(r'itscam_batch_size_bucket\{model="yolo11n-320-dynamic",le="1"\} (\d+)', text)
        cnt = re.search(r'itscam_batch_size_count\{model="yolo11n-320-dynamic"\} (\d+)', text)
        return (int(le1.group(1)) if le1 else 0, int(cnt.group(1)) if cnt else 0)

    hdr = json.dumps({"inputs": [{"name": "images", "datatype": "FP32", "shape": [1, 3, 320, 320],
                                  "parameters": {"binary_data_size": len(raw_in)}}],
                      "parameters": {"binary_data_output": True}}).encode()
    outs = {}

    def ks_client(k):
        st, h, d = srv.req("POST", "/v2/models/yolo11n-320-dynamic/infer", hdr + raw_in,
                           {"Inference-Header-Content-Length": str(len(hdr)), "Content-Type": "application/octet-stream"})
        jl = int(h.get("inference-header-content-length", "0"))
        outs[k] = (st, rel_l2(struct.unpack("<%df" % (84 * 2100), d[jl:]), ref_out) if st == 200 else 1.0)

    before = batch_hist()
    multi = 0
    for attempt in range(3):  # the bursts' timing is the OS's: a few tries, not a flake
        th = [threading.Thread(target=ks_client, args=((attempt, k),)) for k in range(12)]
        for t in th:
            t.start()
        for t in th:
            t.join()
        after = batch_hist()
        multi = (after[1] - after[0]) - (before[1] - before[0])
        if multi >= 1:
            break
    check(outs and all(v[0] == 200 and v[1] < 1e-5 for v in outs.values()),
          "%d concurrent KServe FP32 requests match ORT: %s" % (len(outs), sorted(set(outs.values()))))
    check(multi >= 1, "concurrent KServe FP32 tensors ran in batches > 1 (%d such batches; histogram %s -> %s)"
          % (multi, before, after))
finally:
    rc = srv.stop()
check(rc == 0, "SIGTERM exits 0 (got %s)" % rc)

# ---------------------------------------------------------------------------------
print("== priorities, queue limits, timeouts, drain", flush=True)
srv = Server("--model", os.path.join(MDIR, "yolo11n.onnx"), "--max-batch", "2", "--workers", "1", "--threads", "2",
             "--batching.preferred_batch", "2", "--batching.queue_limit_batch", "6",
             "--batching.max_delay_ms_batch", "100")
try:
    # Saturate with batch-level requests, then send urgent ones: urgent jobs jump the queue.
    out = {}
    lock = threading.Lock()

    def send(tag, prio, extra=""):
        st, j = srv.json("POST", "/v1/detect?priority=%s%s" % (prio, extra), BUS, {"Content-Type": "image/jpeg"})
        with lock:
            out[tag] = (st, j, time.time())

    th = [threading.Thread(target=send, args=("b%d" % i, "batch")) for i in range(10)]
    for t in th:
        t.start()
    # Send the urgent ones while batch jobs are still queued (a fixed sleep lost the race
    # on a fast machine: the batch queue had drained before the urgent jobs came).
    deadline = time.time() + 10
    while time.time() < deadline:
        m = re.search(r'itscam_queue_depth\{model="yolo11n",priority="batch"\} (\d+)', srv.req("GET", "/metrics")[2].decode())
        if m and int(m.group(1)) >= 4:
            break
        time.sleep(0.005)
    ut = [threading.Thread(target=send, args=("u%d" % i, "urgent")) for i in range(2)]
    for t in ut:
        t.start()
    for t in th + ut:
        t.join()
    codes = sorted(v[0] for k, v in out.items() if k.startswith("b"))
    check(503 in codes and 200 in codes, "batch queue limit: some 503, some 200: %s" % codes)
    u_done = max(out["u%d" % i][2] for i in range(2))
    b_ok = [v for k, v in out.items() if k.startswith("b") and v[0] == 200]
    check(all(out["u%d" % i][0] == 200 for i in range(2)), "urgent requests succeed under saturation")
    later = [v for v in b_ok if v[2] > u_done]
    check(len(later) >= 1, "urgent requests finish before queued batch requests (%d batch ones after)" % len(later))
    uq = max(out["u%d" % i][1]["timings_ms"]["queue"] for i in range(2))
    bq = max(v[1]["timings_ms"]["queue"] for v in b_ok)
    check(uq < bq, "urgent queue time %.1f ms < batch queue time %.1f ms" % (uq, bq))
    # 503 carries Retry-After.
    st, h, d = 0, {}, b""
    for attempt in range(3):  # a slot may free while the request is decoded: then try again
        th = [threading.Thread(target=send, args=("x%d" % i, "batch")) for i in range(16)]
        for t in th:
            t.start()
        # Wait until the batch queue is full (requests are decoded before they queue).
        deadline = time.time() + 30
        while time.time() < deadline:
            m = re.search(r'itscam_queue_depth\{model="yolo11n",priority="batch"\} (\d+)', srv.req("GET", "/metrics")[2].decode())
            if m and int(m.group(1)) >= 6:
                break
            time.sleep(0.01)
        st, h, d = srv.req("POST", "/v1/detect?priority=batch", BUS, {"Content-Type": "image/jpeg"})
        for t in th:
            t.join()
        if st == 503:
            break
    check(st == 503 and "retry-after" in h, "a full queue answers 503 with Retry-After at once (%s)" % st)
    # Timeouts: a 1 ms deadline behind a busy worker expires with 504.
    th = [threading.Thread(target=send, args=("y%d" % i, "normal")) for i in range(4)]
    for t in th:
        t.start()
    time.sleep(0.05)
    st, j = srv.json("POST", "/v1/detect?timeout_ms=1", BUS, {"Content-Type": "image/jpeg"})
    for t in th:
        t.join()
    check(st == 504 and "timed out" in j["error"], "expired request -> 504 (%s %s)" % (st, j))
    # Order within a level: FIFO.
    order = []

    def fifo(i):
        st, j = srv.json("POST", "/v1/detect?priority=normal", BUS, {"Content-Type": "image/jpeg"})
        order.append((time.time(), i))

    th = []
    for i in range(4):
        t = threading.Thread(target=fifo, args=(i,))
        t.start()
        th.append(t)
        time.sleep(0.03)
    for t in th:
        t.join()
    finished = [i for _, i in sorted(order)]
    check(finished[0] in (0, 1) and finished[-1] in (2, 3), "requests of one level keep their order: %s" % finished)
    # SIGTERM drains requests in flight.
    th = [threading.Thread(target=send, args=("d%d" % i, "normal")) for i in range(3)]
    for t in th:
        t.start()
    time.sleep(0.1)
    srv.p.send_signal(signal.SIGTERM)
    for t in th:
        t.join()
    check(all(out["d%d" % i][0] == 200 for i in range(3)), "SIGTERM drains: requests in flight answered 200: %s"
          % [out["d%d" % i][0] for i in range(3)])
    rc = srv.p.wait(60)
    check(rc == 0, "drained server exits 0")
finally:
    srv.stop()

# Past the drain timeout, queued requests are answered 503 at once and the server exits.
srv = Server("--model", os.path.join(MDIR, "yolo11n.onnx"), "--max-batch", "1", "--server.drain_timeout_s", "0")
try:
    out = {}
    th = [threading.Thread(target=send, args=("q%d" % i, "normal")) for i in range(12)]
    for t in th:
        t.start()
    deadline = time.time() + 30
    while time.time() < deadline:
        m = re.search(r'itscam_queue_depth\{model="yolo11n",priority="normal"\} (\d+)', srv.req("GET", "/metrics")[2].decode())
        if m and int(m.group(1)) >= 6:
            break
        time.sleep(0.01)
    t0 = time.time()
    srv.p.send_signal(signal.SIGTERM)
    for t in th:
        t.join()
    rc = srv.p.wait(60)
    codes = sorted(v[0] for v in out.values())
    msgs = [v[1].get("error", "") for v in out.values() if v[0] == 503]
    check(rc == 0 and len(codes) == 12 and set(codes) <= {200, 503} and 503 in codes
          and all("shutting down" in m for m in msgs),
          "drain timeout: every request answered (200 or 503), exit 0 in %.1f s: %s" % (time.time() - t0, codes))
finally:
    srv.stop()

# ---------------------------------------------------------------------------------
print("== tokens, TLS, readiness during warm-up, configuration errors", flush=True)
tokens = os.path.join(TMP, "tokens")
with open(tokens, "w") as f:
    f.write("# operators\nsecret-token-1\n")
srv = Server("--model", os.path.join(MDIR, "yolo11n-320.onnx"), "--tokens", tokens)
try:
    code, _ = curl(srv.url("/v1/models"))
    check(code == 401, "no token -> 401")
    code, _ = curl("-H", "Authorization: Bearer wrong-token", srv.url("/v1/models"))
    check(code == 401, "wrong token -> 401")
    code, _ = curl("-H", "Authorization: Bearer secret-token-1", srv.url("/v1/models"))
    check(code == 200, "right token -> 200")
    code, _ = curl(srv.url("/v2/health/ready"))
    check(code == 200, "health needs no token")
    code, _ = curl(srv.url("/v2/models/zzz%d/nothing" % os.getpid()))
    check(code == 401, "an unknown path without a token -> 401, not 404: %d" % code)
    code, _ = curl("-H", "Authorization: Bearer secret-token-1", srv.url("/v2/models/zzz/nothing"))
    check(code == 404, "an unknown path with a token -> 404: %d" % code)
    code, _ = curl("-X", "DELETE", srv.url("/v1/models"))
    check(code == 401, "a wrong method on a protected route without a token -> 401: %d" % code)
    code, _ = curl("-X", "POST", srv.url("/v2/health/ready"))
    check(code == 405, "a wrong method on a health route -> 405 without a token: %d" % code)
    code, _ = curl("-X", "POST", srv.url("/v1/models/reload"))
    check(code == 401, "reload needs a token")
    code, _ = curl("-X", "POST", "-H", "Authorization: Bearer secret-token-1", srv.url("/v1/models/reload"))
    check(code == 200, "reload with a token")
    r = subprocess.run([CLI, "performance", "status", "--url", srv.url(""), "--token", "secret-token-1"],
                       capture_output=True)
    check(r.returncode == 0, "performance status with --token")
finally:
    srv.stop()

# Slow clients are dropped after connection_timeout_s; at most max_connections at once.
srv = Server("--model", os.path.join(MDIR, "yolo11n-320.onnx"), "--server.connection_timeout_s", "3",
             "--server.max_connections", "3", "--server.reserved_connections", "0",
             "--server.http_threads", "1")
try:
    s = socket.create_connection(("127.0.0.1", srv.port))
    s.sendall(b"POST /v1/detect HTTP/1.1\r\nHost: x\r\n")  # and then nothing
    s.settimeout(10)
    t0 = time.time()
    try:
        data = s.recv(100)
    except (ConnectionResetError, socket.timeout):
        data = b""
    check(data == b"" and 2 < time.time() - t0 < 8, "a slow client is dropped after the timeout (%.1f s)" % (time.time() - t0))
    s.close()
    conns = [socket.create_connection(("127.0.0.1", srv.port)) for _ in range(3)]
    for c in conns:  # each connection is accepted and in use (keep-alive) before the extra one
        c.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        c.recv(1000)
    extra = socket.create_connection(("127.0.0.1", srv.port))
    extra.settimeout(1)  # well inside the 3 s idle timeout of the three others
    try:
        extra.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        got = extra.recv(100)
    except (ConnectionResetError, BrokenPipeError, socket.timeout):
        got = b""
    check(not got.startswith(b"HTTP/1.1 200"), "a connection beyond max_connections is refused: %r" % got[:20])
    for c in conns + [extra]:
        c.close()
    time.sleep(0.2)
    st, _ = srv.json("GET", "/health")
    check(st == 200, "serving after the connection limit was hit")
finally:
    srv.stop()

if shutil.which("openssl"):
    key, crt = os.path.join(TMP, "key.pem"), os.path.join(TMP, "cert.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", crt, "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    srv = Server("--model", os.path.join(MDIR, "yolo11n-320.onnx"), "--tls-cert", crt, "--tls-key", key, scheme="https")
    try:
        code, body = curl("--cacert", crt, "--data-binary", "@" + os.path.join(IMAGES, "bus.jpg"), "-H",
                          "Content-Type: image/jpeg", srv.url("/v1/detect"))
        check(code == 200 and json.loads(body)["detections"], "TLS: /v1/detect over https")
        code, _ = curl("http://127.0.0.1:%d/health" % srv.port)
        check(code != 200, "TLS: plain http is refused")
    finally:
        srv.stop()
else:
    print("note: openssl not found, TLS not tested")

# Readiness is false during warm-up (32 batch sizes of the 640 model take a while).
srv = Server("--model", os.path.join(MDIR, "yolo11n.onnx"), "--max-batch", "12", "--batching.preferred_batch", "12",
             wait_ready=False)
try:
    st, j = srv.json("GET", "/v2/health/ready")
    st_live, _ = srv.json("GET", "/v2/health/live")
    st_det, _ = srv.json("POST", "/v1/detect", BUS, {"Content-Type": "image/jpeg"})
    check(st == 503 and st_live == 200 and st_det == 503, "during warm-up: live 200, ready %s, detect %s" % (st, st_det))
    srv.wait_ready()
    st, j = srv.json("GET", "/v2/health/ready")
    check(st == 200, "ready after warm-up")
finally:
    srv.stop()

# ---------------------------------------------------------------------------------
print("== backend cuda: CPU fallback, circuit breaker through fault injection, manual switch", flush=True)
srv = Server("--model", os.path.join(MDIR, "yolo11n-320.onnx"), "--backend", "cuda", "--breaker.open_ms", "300",
             env={"ITSCAM_FAULT": "cuda:emulate,fail_after=4,fail_count=30"})
try:
    codes = []
    for i in range(40):
        st, j = srv.json("POST", "/v1/detect", BUS, {"Content-Type": "image/jpeg"})
        codes.append(st)
        if st == 200 and not same_dets(j["detections"], ref320):
            codes[-1] = "wrong"
        if i == 25:
            time.sleep(0.4)  # let the breaker half-open
    check(codes == [200] * 40, "every request answered while the GPU fails: %s" % codes)
    st, h, d = srv.req("GET", "/metrics")
    text = d.decode()
    check('itscam_breaker_transitions_total{backend="cuda",from="closed",to="open"} 1' in text,
          "closed -> open counted in /metrics")
    check(re.search(r'itscam_breaker_transitions_total\{backend="cuda",from="open",to="half_open"\} [1-9]', text)
          is not None, "open -> half_open counted")
    check(re.search(r'itscam_backend_failures_total\{backend="cuda",kind="error"\} (\d+)', text) is not None,
          "failures counted")
    check(re.search(r'itscam_backend_fallback_runs_total\{backend="cuda"\} [1-9]', text) is not None,
          "fallback runs counted")
    check(re.search(r'itscam_breaker_state\{model="yolo11n-320",backend="cuda"\} [0-2]', text) is not None,
          "breaker state per model")
    st, j = srv.json("GET", "/v1/backend")
    check(st == 200 and j["backend"] == "cuda" and j["breaker"]["state"] in ("open", "half_open", "closed")
          and j["breaker"]["config"]["open_ms"] == 300, "GET /v1/backend: %s" % j)
    st, j = srv.json("POST", "/v1/backend", b'{"force_cpu": true}')
    check(st == 200 and j["breaker"]["forced_cpu"] is True and j["breaker"]["state"] == "open", "force to the CPU")
    st, j = srv.json("POST", "/v1/detect", BUS, {"Content-Type": "image/jpeg"})
    st2, jb = srv.json("GET", "/v1/backend")
    check(st == 200 and jb["models"][0]["active_backend"] == "cpu", "forced: served by the cpu backend")
    st, j = srv.json("POST", "/v1/backend", b'{"force_cpu": false}')
    check(st == 200 and j["breaker"]["state"] == "closed" and not j["breaker"]["forced_cpu"], "back to the GPU")
    st, j = srv.json("POST", "/v1/backend", b'{"force": 1}')
    check(st == 400, "bad switch request -> 400")
    r = subprocess.run([CLI, "performance", "status", "--url", srv.url("")], capture_output=True)
    check(r.returncode == 0 and b"BREAKER" in r.stdout, "performance status shows the breaker: %s" % r.stdout[-300:])
finally:
    srv.stop()
# No GPU and no emulation: served from the CPU, said once; --no-fallback refuses to start.
srv = Server("--model", os.path.join(MDIR, "yolo11n-320.onnx"), "--backend", "cuda")
try:
    st, j = srv.json("POST", "/v1/detect", BUS, {"Content-Type": "image/jpeg"})
    gpu_here = "no usable GPU" not in srv.logtext() and "not compiled in" not in srv.logtext()
    check(st == 200, "backend cuda on this machine serves")
    if not gpu_here:
        check(srv.logtext().count("serving from the cpu backend") == 1, "the fallback is said once")
finally:
    srv.stop()
if not gpu_here:
    r = subprocess.run([CLI, "serve", "--model", os.path.join(MDIR, "yolo11n-320.onnx"), "--backend", "cuda",
                        "--no-fallback", "--port", "0", "--host", "127.0.0.1"], capture_output=True, timeout=120)
    check(r.returncode == 1 and b"cuda" in r.stderr and b"fallback" in r.stderr, "--no-fallback without a GPU fails: %s"
          % r.stderr[-300:])

bad = os.path.join(TMP, "bad.yaml")
with open(bad, "w") as f:
    f.write("server:\n  port: 8080\nbatching:\n  max_bacth: 4\n")
r = subprocess.run([CLI, "serve", "--config", bad, "--model", os.path.join(MDIR, "yolo11n-320.onnx")], capture_output=True)
check(r.returncode == 2 and b"bad.yaml:4" in r.stderr and b"max_bacth" in r.stderr,
      "unknown config key reported with file:line: %s" % r.stderr)
r = subprocess.run([CLI, "serve", "--model", os.path.join(MDIR, "yolo11n-320.onnx")], capture_output=True,
                   env=dict(os.environ, ITSCAM__SERVER__PORT="http"))
check(r.returncode == 2 and b"ITSCAM__SERVER__PORT" in r.stderr, "bad env value reported: %s" % r.stderr)
r = subprocess.run([CLI, "serve", "--model", os.path.join(TMP, "missing.onnx"), "--port", "0"], capture_output=True)
check(r.returncode == 1 and b"missing.onnx" in r.stderr, "missing model fails the start: %s" % r.stderr[-200:])

shutil.rmtree(TMP, ignore_errors=True)
CHECKS.finish()
