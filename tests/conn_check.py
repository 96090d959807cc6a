#!/usr/bin/env python3
"""`itscam serve` against hostile and overloaded connections, over raw sockets on loopback.

Slow clients (headers trickled a byte at a time, bodies below the minimum rate), the
per-address connection limit, the reserved slots for health and metrics, and request
framing (RFC 9112: bad or conflicting Content-Length, Content-Length with chunked, an
oversized chunked body, pipelining with a half-close). Throughout, a fresh client's
/v1/detect must keep working.

usage: conn_check.py ITSCAM_CLI SOURCE_DIR"""
import os
import re
import resource
import shutil
import socket
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

# Several hundred sockets at once: raise the soft descriptor limit as far as allowed.
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
if soft < 4096 and (hard == resource.RLIM_INFINITY or hard > soft):
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(4096, hard) if hard != resource.RLIM_INFINITY else 4096, hard))
FDS = resource.getrlimit(resource.RLIMIT_NOFILE)[0]

CHECKS = Checks()
check = CHECKS.check
TMP = tempfile.mkdtemp(prefix="itscam-conn-")


class Server(ServeProcess):
    """An `itscam serve` of the 320 model on an ephemeral port."""

    def __init__(self, *args):
        super().__init__(CLI, TMP, "--model", MODEL, *args)

    def stop(self):
        rc = super().stop()
        check(rc == 0, "the server exits 0 on SIGTERM (%s): %s"
              % (self.p.returncode, open(self.log_path).read()[-800:]))


def connect(port, src="127.0.0.1", timeout=10):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.bind((src, 0))
    s.connect(("127.0.0.1", port))
    return s


def read_all(s, timeout=10):
    """Everything until the server closes (or the timeout)."""
    s.settimeout(timeout)
    out = b""
    end = time.time() + timeout
    try:
        while time.time() < end:
            d = s.recv(65536)
            if not d:
                break
            out += d
    except (socket.timeout, ConnectionResetError):
        pass
    return out


def parse_responses(data):
    """Split raw bytes into (status, headers, body) by Content-Length; the rest left over."""
    out = []
    while data:
        head, sep, rest = data.partition(b"\r\n\r\n")
        if not sep:
            break
        lines = head.split(b"\r\n")
        m = re.match(rb"HTTP/1\.[01] (\d{3}) ", lines[0])
        if not m:
            break
        hdrs = {}
        for ln in lines[1:]:
            k, _, v = ln.partition(b":")
            hdrs[k.strip().lower().decode()] = v.strip().decode()
        n = int(hdrs.get("content-length", "0"))
        out.append((int(m.group(1)), hdrs, rest[:n]))
        data = rest[n:]
    return out, data


def request(port, raw, timeout=30, src="127.0.0.1"):
    """Send one request (raw bytes, Connection: close) and return (status, headers, body, seconds)."""
    t0 = time.time()
    try:
        s = connect(port, src, timeout)
        s.sendall(raw)
        data = read_all(s, timeout)
        s.close()
    except OSError as e:
        return None, {}, str(e).encode(), time.time() - t0
    rs, _ = parse_responses(data)
    if not rs:
        return None, {}, data[:200], time.time() - t0
    return rs[0][0], rs[0][1], rs[0][2], time.time() - t0


def detect(port, timeout=30):
    return request(port, b"POST /v1/detect HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: image/jpeg\r\n"
                   b"Content-Length: %d\r\n\r\n" % len(BUS) + BUS, timeout)


def get(port, path, timeout=30):
    return request(port, b"GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % path.encode(), timeout)


def detect_ok(port, what):
    st, _, body, secs = detect(port)
    check(st == 200 and b'"detections"' in body, "%s: /v1/detect answered %s %r" % (what, st, body[:120]))
    return secs


# ---------------------------------------------------------------------------------------
# Server A: no per-address limit (every client here is 127.0.0.1), short deadlines.
HEADER_TIMEOUT = 4
A = Server("--server.max_connections_per_ip", "0", "--server.header_timeout_s", str(HEADER_TIMEOUT),
           "--server.min_body_rate", "2000", "--server.max_connections", "256", "--server.reserved_connections", "8",
           "--server.max_body_bytes", "2MiB")
try:
    detect_ok(A.port, "before the attack")

    # 1. ~300 connections trickling a header byte every 2 s, reopened as soon as dropped.
    n_trickle = min(300, max(50, FDS - 200))
    stop = threading.Event()
    stats = {"opened": 0, "dropped": 0}
    line = b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 200

    def trickler():
        socks = []
        while not stop.is_set():
            while len(socks) < n_trickle and not stop.is_set():
                try:
                    s = socket.socket()
                    s.setblocking(False)
                    s.connect_ex(("127.0.0.1", A.port))
                    socks.append([s, 0])
                    stats["opened"] += 1
                except OSError:
                    break
            for e in list(socks):
                try:
                    e[0].send(line[e[1]:e[1] + 1])
                    e[1] = (e[1] + 1) % len(line)
                except (BlockingIOError, InterruptedError):
                    pass
                except OSError:
                    e[0].close()
                    socks.remove(e)
                    stats["dropped"] += 1
            stop.wait(2)
        for e in socks:
            e[0].close()

    th = threading.Thread(target=trickler)
    th.start()
    time.sleep(HEADER_TIMEOUT + 3)  # every slot has been taken and the deadlines run
    worst = 0
    for i in range(3):
        st, _, body, secs = get(A.port, "/v2/health/ready")
        check(st == 200, "during the trickle: /v2/health/ready answered %s %r" % (st, body[:80]))
        worst = max(worst, secs, detect_ok(A.port, "during the trickle"))
        time.sleep(1)
    stop.set()
    th.join()
    check(worst < 10, "during the trickle fresh clients are served within 10 s (worst %.1f s)" % worst)
    check(stats["dropped"] > 0, "trickling connections are dropped (%d of %d opened)" % (stats["dropped"], stats["opened"]))
    print("trickle: %d connections opened, %d dropped by the server; fresh requests took at most %.2f s"
          % (stats["opened"], stats["dropped"], worst), flush=True)

    # 2. A body slower than the minimum rate is dropped after the grace period.
    s = connect(A.port)
    s.sendall(b"POST /v1/detect HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nContent-Length: 200000\r\n\r\n")
    t0 = time.time()
    closed = False
    while time.time() - t0 < HEADER_TIMEOUT + 10:
        try:
            s.sendall(b"x" * 100)
            s.settimeout(1)
            if s.recv(100) == b"":
                closed = True
                break
        except socket.timeout:
            continue
        except OSError:
            closed = True
            break
    s.close()
    check(closed and time.time() - t0 < HEADER_TIMEOUT + 8,
          "a body at 100 B/s is dropped (closed=%s after %.1f s)" % (closed, time.time() - t0))

    # 3. Reserved slots: every normal slot holds a slow upload; probes still get through.
    holders = []
    for _ in range(256):
        try:
            h = connect(A.port)
            h.sendall(b"POST /v1/detect HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nContent-Length: 200000\r\n\r\n"
                      + b"x" * 30000)  # 30000 B at 2000 B/s: 15 s past the grace, far from its deadline
            holders.append(h)
        except OSError:
            break
    time.sleep(1.0)
    st, _, body, _ = get(A.port, "/v2/health/ready", timeout=10)
    check(st == 200, "slots full: /v2/health/ready from a reserved slot answered %s %r" % (st, body[:80]))
    st, _, body, _ = get(A.port, "/metrics", timeout=10)
    check(st == 200 and b"itscam_" in body, "slots full: /metrics from a reserved slot answered %s" % st)
    m = re.search(rb'itscam_connections_dropped_total\{reason="header_timeout"\} ([0-9.e+]+)', body)
    check(m is not None and float(m.group(1)) > 0, "/metrics counts the connections dropped for header_timeout: %r"
          % (m.group(0) if m else None))
    m = re.search(rb'itscam_connections_open ([0-9.e+]+)', body)
    check(m is not None and float(m.group(1)) >= 200, "/metrics shows the open connections: %r" % (m.group(0) if m else None))
    st, hdrs, body, _ = detect(A.port, timeout=10)
    check(st == 503 and hdrs.get("retry-after") and hdrs.get("connection") == "close",
          "slots full: /v1/detect gets 503 with Retry-After and Connection: close: %s %s" % (st, hdrs))
    for h in holders:
        h.close()
    time.sleep(0.5)
    detect_ok(A.port, "after the slots are free again")
finally:
    A.stop()

# ---------------------------------------------------------------------------------------
# Server B: defaults but a small per-address limit and body limit; framing.
B = Server("--server.max_connections_per_ip", "4", "--server.max_body_bytes", "1MiB")
try:
    # 4. Per-address limit: the fifth connection from 127.0.0.1 is refused, 127.0.0.2 is not.
    held = []
    for _ in range(4):
        h = connect(B.port)
        h.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
        check(parse_responses(h.recv(1000))[0][0][0] == 200, "per-address: a held connection is served")
        held.append(h)
    st, _, body, _ = get(B.port, "/v2/health/live", timeout=5)
    check(st is None, "per-address: a fifth connection from 127.0.0.1 is refused (%s %r)" % (st, body[:40]))
    st, _, body, _ = request(B.port, b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                             timeout=5, src="127.0.0.2")
    check(st == 200, "per-address: 127.0.0.2 is still served (%s)" % st)
    for h in held:
        h.close()
    time.sleep(0.3)

    # 5. Framing: each gets exactly one well-formed answer, and nothing after it runs.
    trailer = b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n"
    cases = [
        ("Content-Length: -5", b"POST /v1/detect HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n", 400),
        ("Content-Length: abc", b"POST /v1/detect HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n", 400),
        ("two Content-Lengths", b"POST /v1/detect HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
         b"Content-Length: 3\r\nContent-Length: 5\r\n\r\nabcde" + trailer, 400),
        ("Content-Length with chunked", b"POST /v1/detect HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
         b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + trailer, 400),
        ("Transfer-Encoding: gzip", b"POST /v1/detect HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n" + trailer, 501),
    ]
    for name, raw, want in cases:
        s = connect(B.port)
        s.sendall(raw)
        data = read_all(s, 5)
        s.close()
        rs, rest = parse_responses(data)
        n_status = len(re.findall(rb"(?:^|\r\n)HTTP/1\.[01] \d{3} ", data))
        check(len(rs) == 1 and rs[0][0] == want and rest == b"" and n_status == 1,
              "%s: exactly one %d, nothing after it: %r" % (name, want, data[:400]))
        if rs:
            check(rs[0][1].get("connection") == "close", "%s: the connection closes" % name)

    # 6. A chunked body over the limit gets its 413 while it arrives.
    s = connect(B.port)
    s.sendall(b"POST /v1/detect HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nTransfer-Encoding: chunked\r\n\r\n")
    sent, data, t0 = 0, b"", time.time()
    s.settimeout(0.05)
    try:
        while sent < 50_000_000 and time.time() - t0 < 20:
            s.sendall(b"4000\r\n" + b"x" * 0x4000 + b"\r\n")
            sent += 0x4000
            try:
                d = s.recv(65536)
                data += d
                if not d or b"\r\n\r\n" in data:
                    break
            except socket.timeout:
                pass
    except OSError:
        pass
    data += read_all(s, 3)
    s.close()
    rs, _ = parse_responses(data)
    check(len(rs) == 1 and rs[0][0] == 413 and sent < 4_000_000,
          "chunked over the limit: 413 after %d bytes sent: %r" % (sent, data[:200]))

    # 7. Pipelined requests, then a half-close: every one is answered.
    s = connect(B.port)
    s.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n"
              b"POST /v1/detect HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(BUS)
              + BUS + b"GET /v2/health/ready HTTP/1.1\r\nHost: x\r\n\r\n")
    s.shutdown(socket.SHUT_WR)
    data = read_all(s, 30)
    s.close()
    rs, rest = parse_responses(data)
    check([r[0] for r in rs] == [200, 200, 200] and b'"detections"' in rs[1][2] if len(rs) == 3 else False,
          "pipelined + half-close: three answers: %r" % [(r[0], r[2][:60]) for r in rs])
    detect_ok(B.port, "after the framing cases")
finally:
    B.stop()

shutil.rmtree(TMP, ignore_errors=True)
CHECKS.finish()
