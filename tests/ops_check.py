#!/usr/bin/env python3
"""Operations under abuse, over real sockets on loopback: clients that make up paths and
model names cannot grow /metrics (issue 10, item 3), and model reloads coalesce and
return the resident memory to a steady level (item 8). A client keeps checking that
/v1/detect answers correctly meanwhile.

usage: ops_check.py ITSCAM_CLI SOURCE_DIR"""
import http.client
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from itscam_serve import Checks, ServeProcess, locate  # noqa: E402

CLI, SRC, SHARED = locate(sys.argv)
MODEL = os.path.join(SHARED, "models", "yolo11n-320.onnx")
BUS = open(os.path.join(SHARED, "images", "bus.jpg"), "rb").read()
TMP = tempfile.mkdtemp(prefix="itscam-ops-")
CHECKS = Checks()
check = CHECKS.check


class Server(ServeProcess):
    """An `itscam serve` of the 320 model on an ephemeral port."""

    def __init__(self, *args):
        super().__init__(CLI, TMP, "--model", MODEL, *args)

    def conn(self, timeout=120):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def req(self, method, path, body=None, headers=None, c=None):
        own = c is None
        c = c or self.conn()
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        data = r.read()
        if own:
            c.close()
        return r.status, data

    def detect(self, c=None):
        st, d = self.req("POST", "/v1/detect", BUS, {"Content-Type": "image/jpeg"}, c)
        return st, json.loads(d) if st == 200 else d

    def metric(self, name, labels=""):
        _, d = self.req("GET", "/metrics")
        total = 0.0
        for line in d.decode().splitlines():
            if line.startswith(name + "{" + labels) or line == name or line.startswith(name + " "):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def rss_mb(self):
        return self.status_kb("VmRSS") / 1024.0


class DetectWatch:
    """A keep-alive client that runs /v1/detect in a loop and checks every answer is the
    reference one (same number of detections, same classes)."""

    def __init__(self, srv, ref):
        self.srv, self.ref, self.ok, self.bad, self.stop_ev = srv, ref, 0, [], threading.Event()
        self.t = threading.Thread(target=self.run)
        self.t.start()

    def run(self):
        c = self.srv.conn()
        while not self.stop_ev.is_set():
            try:
                st, j = self.srv.detect(c)
            except Exception as e:  # noqa: BLE001 - any failure is a finding
                self.bad.append(repr(e))
                c = self.srv.conn()
                continue
            if st == 200 and classes(j) == self.ref:
                self.ok += 1
            else:
                self.bad.append((st, str(j)[:200]))
            time.sleep(0.05)

    def end(self, what):
        self.stop_ev.set()
        self.t.join()
        check(self.ok > 0 and not self.bad, "%s: /v1/detect kept answering correctly (%d ok, bad %s)"
              % (what, self.ok, self.bad[:3]))
        return self.ok


def classes(j):
    return sorted(d["class_id"] for d in j["detections"])


def rand_name(rng):
    return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789-_.") for _ in range(rng.randint(4, 40)))


# ---- 3: label flooding ------------------------------------------------------------------
print("== /metrics under 1500 made-up paths and model names", flush=True)
srv = Server("--threads", "1")
st, j = srv.detect()
check(st == 200 and len(j["detections"]) > 0, "detect works: %s" % st)
REF = classes(j) if st == 200 else []
srv.req("GET", "/nope")  # every label set an attacker can reach once, before measuring
srv.req("POST", "/v2/models/nope/infer", b"{}", {"Content-Type": "application/json"})
srv.req("GET", "/v2/models/nope/zzz")
srv.req("GET", "/v2/models/nope")
srv.req("POST", "/v1/detect?model=nope", BUS)
srv.req("GET", "/metrics")
_, m0 = srv.req("GET", "/metrics")
watch = DetectWatch(srv, REF)
rng = random.Random(10)
codes = {}


def flood(k):
    c = srv.conn()
    for i in range(375):
        name = rand_name(rng)
        path, method, body = [("/v2/models/%s/zzz" % name, "GET", None),
                              ("/v2/models/%s/infer" % name, "POST", b"{}"),
                              ("/%s/%s" % (name, rand_name(rng)), "GET", None),
                              ("/v1/detect?model=%s" % name, "POST", BUS),
                              ("/v2/models/%s" % name, "GET", None)][(i + k) % 5]
        try:
            st, _ = srv.req(method, path, body, {"Content-Type": "application/octet-stream"}, c)
        except Exception:  # noqa: BLE001 - the server may close after an error
            c = srv.conn()
            st = "error"
        codes[st] = codes.get(st, 0) + 1


threads = [threading.Thread(target=flood, args=(k,)) for k in range(4)]
for t in threads:
    t.start()
for t in threads:
    t.join()
_, m1 = srv.req("GET", "/metrics")
watch.end("label flooding")
print("  codes %s; /metrics %d -> %d bytes" % (codes, len(m0), len(m1)), flush=True)
check(set(codes) <= {404, 405, 400, 415}, "made-up routes and models get 404/405/4xx: %s" % codes)
# Latency histogram buckets of the same label sets fill in; a new series would add
# 1-2 KB per name, 1500 names megabytes.
check(len(m1) < len(m0) + 4096, "/metrics stayed small: %d -> %d bytes" % (len(m0), len(m1)))
check('="_overflow"' not in m1.decode(), "no family reached its cap")
check(srv.stop() == 0, "clean stop")

# ---- the cap itself, and 8: reloads ------------------------------------------------------
print("== a cap of 4 series per family, then 20 reloads (12 concurrent)", flush=True)
srv = Server("--threads", "1", "--metrics.max_series_per_family", "4")
srv.detect()
for p in ("/a", "/metrics", "/v1/models", "/v2", "/v2/health/live", "/v1/backend"):
    srv.req("GET", p)
_, m = srv.req("GET", "/metrics")
m = m.decode()
check('itscam_requests_total{route="_overflow",model="_overflow",code="_overflow"}' in m,
      "a full family counts into its _overflow series")
check(srv.metric("itscam_metrics_series_dropped_total", 'family="itscam_requests_total"') >= 2,
      "folded updates are counted per family")
check(len(re.findall(r"^itscam_requests_total\{", m, re.M)) == 5, "4 series + overflow")

watch = DetectWatch(srv, REF)
loads0 = srv.metric("itscam_model_reloads_total")
rss = []


def reload_ok():
    st, d = srv.req("POST", "/v1/models/reload")
    return st == 200 and b"yolo11n-320" in d


def concurrent_reloads(n):
    res = []
    bar = threading.Barrier(n)

    def one():
        bar.wait()
        res.append(reload_ok())
    ts = [threading.Thread(target=one) for _ in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return res


t0 = time.time()
res = concurrent_reloads(8)
loads1 = srv.metric("itscam_model_reloads_total")
check(all(res) and len(res) == 8, "8 concurrent reloads answered 200 with the models: %s" % res)
check(loads1 - loads0 <= 2, "8 concurrent reloads ran %d load(s), not 8" % (loads1 - loads0))
rss.append(srv.rss_mb())
for i in range(8):
    check(reload_ok(), "sequential reload %d" % i)
    rss.append(srv.rss_mb())
res = concurrent_reloads(4)
check(all(res), "4 more concurrent reloads")
rss.append(srv.rss_mb())
loads2 = srv.metric("itscam_model_reloads_total")
check(loads2 - loads0 <= 12 and loads2 - loads0 >= 9, "loads: %d for 20 requests" % (loads2 - loads0))
check(srv.metric("itscam_model_reloads_total", 'result="error"') == 0, "no reload failed")
check("requests answered by one load" in srv.logtext(), "the log says when requests shared a load")
watch.end("reloads")
# The first reload's level is the steady one: later ones may not add up. ASan's
# quarantine holds freed memory for a while, hence the margin (plain builds stay flat).
bound = rss[0] * (1.6 if "ASAN_OPTIONS" in os.environ else 1.25) + 64
print("  %d loads for 20 requests in %.1f s; RSS after each (MB): %s"
      % (loads2 - loads0, time.time() - t0, " ".join("%.0f" % r for r in rss)), flush=True)
check(max(rss[1:]) <= bound, "RSS stays within %.0f MB of the first reload's %.0f MB: max %.0f"
      % (bound - rss[0], rss[0], max(rss[1:])))
check(srv.stop() == 0, "clean stop after reloads")

CHECKS.finish()
