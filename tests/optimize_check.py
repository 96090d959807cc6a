#!/usr/bin/env python3
"""`itscam performance optimize` and the admin route it applies settings through.

No speed is asserted: the sweep's numbers only have to be present and consistent with
the strategy's rule (recomputed here from the JSON), so the test holds on a noisy
machine and under sanitizers.

usage: optimize_check.py ITSCAM_CLI SOURCE_DIR"""
import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from itscam_serve import Checks, ServeProcess, locate  # noqa: E402

CLI, SRC, SHARED = locate(sys.argv)
DYN = os.path.join(SHARED, "models", "yolo11n-320-dynamic.onnx")
STATIC = os.path.join(SHARED, "models", "yolo11n-320.onnx")
if not os.path.isfile(DYN):
    print("skip: %s not found" % DYN)
    sys.exit(77)
CHECKS = Checks()
check = CHECKS.check
TMP = tempfile.mkdtemp(prefix="itscam-optimize-")
TOKEN = "optimize-test-token-1"
TINY = ["--threads", "1", "--workers", "1", "--iterations", "2", "--warmup", "0"]


def run(*args, env=None):
    e = dict(os.environ)
    e.pop("ITSCAM_TOKEN", None)
    e.update(env or {})
    r = subprocess.run([CLI] + list(args), capture_output=True, env=e, timeout=300, cwd=TMP)
    return r.returncode, r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace")


def optimize(*args, env=None):
    return run("performance", "optimize", *args, env=env)


def config_ok(path):
    rc, out, err = run("config", "--check", path)
    return check(rc == 0 and out.strip() == "%s: ok" % path, "config --check %s: %s %s" % (path, out, err))


def expected_pick(rows, strategy, sla):
    """The rule of each strategy (README), on the rows that ran."""
    ok = [i for i, r in enumerate(rows) if "error" not in r]
    p99 = lambda i: rows[i]["latency_ms"]["p99"]
    ips = lambda i: rows[i]["throughput_ips"]
    if strategy == "latency_optimized":
        b1 = [i for i in ok if rows[i]["batch"] == 1] or ok
        return min(p99(i) for i in b1), "p99"
    within = [i for i in ok if p99(i) <= sla]
    if not within:
        return min(p99(i) for i in ok), "p99"
    if strategy == "throughput_optimized":
        return max(ips(i) for i in within), "ips"
    best_ips, best_p99 = max(ips(i) for i in within), min(p99(i) for i in within)
    if strategy == "memory_optimized":
        near = [i for i in within if ips(i) >= 0.9 * best_ips]
        return min(rows[i]["mem_bytes"] for i in near), "mem"
    return max(ips(i) / best_ips * best_p99 / p99(i) for i in within), "score"


def value_of(row, kind, rows, sla):
    if kind == "p99":
        return row["latency_ms"]["p99"]
    if kind == "ips":
        return row["throughput_ips"]
    if kind == "mem":
        return row["mem_bytes"]
    within = [r for r in rows if "error" not in r and r["latency_ms"]["p99"] <= sla]
    best_ips = max(r["throughput_ips"] for r in within)
    best_p99 = min(r["latency_ms"]["p99"] for r in within)
    return row["throughput_ips"] / best_ips * best_p99 / row["latency_ms"]["p99"]


# ---- arguments -------------------------------------------------------------------------
rc, out, _ = optimize("--help")
check(rc == 0, "optimize --help exits 0")
for opt in ("--strategy", "--sla-ms", "--precisions", "--batches", "--threads", "--workers", "--calib",
            "--images", "--url", "--token", "--iterations", "--duration", "balanced", "memory_optimized"):
    check(opt in out, "optimize --help names %s" % opt)
rc, out, _ = run("performance", "--help")
check(rc == 0 and "optimize" in out, "performance --help lists optimize")
for args, what in ((["--model", DYN], "no --strategy"),
                   (["--strategy", "fastest", "--model", DYN], "unknown strategy"),
                   (["--strategy", "balanced"], "no --model"),
                   (["--strategy", "balanced", "--model", DYN, "--precisions", "int8"], "int8 without --calib"),
                   (["--strategy", "balanced", "--model", DYN, "--precisions", "fp64"], "unknown precision"),
                   (["--strategy", "balanced", "--model", DYN, "--batches", "0"], "batch 0"),
                   (["--strategy", "balanced", "--model", DYN, "--iterations", "2", "--duration", "1"],
                    "--iterations with --duration"),
                   (["--strategy", "balanced", "--model", DYN, "--url", "http://127.0.0.1:1"], "--url without a token"),
                   (["--strategy", "balanced", "--model", DYN, "--sla-ms", "-5"], "negative SLA")):
    rc, _, err = optimize(*args)
    check(rc == 2, "optimize with %s exits 2 (got %d: %s)" % (what, rc, err.strip()[-200:]))

# ---- a tiny sweep, JSON --------------------------------------------------------------
cfg = os.path.join(TMP, "opt.yaml")
rc, out, err = optimize("--strategy", "throughput_optimized", "--model", DYN, "--batches", "1,2", *TINY,
                        "--output", cfg, "--json")
check(rc == 0, "optimize --json exits 0: %s" % err[-500:])
doc = json.loads(out) if rc == 0 else {}
rows = doc.get("results", [])
precs = sorted(set(r["precision"] for r in rows))
check("fp32" in precs and "int8" not in precs, "fp32 swept, int8 not without --calib: %s" % precs)
check(len(rows) == 2 * len(precs), "one row per precision x batch (%d rows for %s)" % (len(rows), precs))
check(any(s["what"] == "int8" and "--calib" in s["why"] for s in doc.get("skipped", [])),
      "int8 is skipped with the reason: %s" % doc.get("skipped"))
check("int8: skipped: no --calib" in err, "the skip is printed: %s" % err[-300:])
for r in rows:
    check("error" not in r, "row ran: %s" % r)
    if "error" in r:
        continue
    check(r["latency_ms"]["p50"] > 0 and r["latency_ms"]["p99"] >= r["latency_ms"]["p50"], "latencies: %s" % r)
    check(r["throughput_ips"] > 0 and r["mem_bytes"] >= 0, "throughput and memory: %s" % r)
    check(r["meets_sla"] == (r["latency_ms"]["p99"] <= doc["sla_ms"]), "meets_sla: %s" % r)
chosen = [i for i, r in enumerate(rows) if r.get("chosen")]
check(chosen == [doc.get("chosen")], "exactly the chosen row is marked: %s vs %s" % (chosen, doc.get("chosen")))
if rows and chosen:
    want, kind = expected_pick(rows, "throughput_optimized", doc["sla_ms"])
    check(abs(value_of(rows[chosen[0]], kind, rows, doc["sla_ms"]) - want) < 1e-9,
          "throughput_optimized picked the most images/s within the SLA")
check(doc.get("config") == cfg and os.path.isfile(cfg), "config written to --output")
config_ok(cfg)
text = open(cfg).read() if os.path.isfile(cfg) else ""
best = rows[chosen[0]] if rows and chosen else {}
for key, val in (("precision", '"%s"' % best.get("precision")), ("threads", str(best.get("threads"))),
                 ("workers", str(best.get("workers"))), ("max_batch", str(best.get("batch")))):
    check("\n  %s: %s\n" % (key, val) in text, "config has %s: %s" % (key, val))
for section in ("server:", "models:", "batching:", "detection:", "metrics:", "events:", "publish:"):
    check("\n%s\n" % section in text, "config is complete: has %s" % section)
check('model: "%s"' % os.path.realpath(DYN) in text, "config names the model by absolute path")
check(doc.get("restart_required", {}).get("workers") == best.get("workers"), "restart_required lists workers")
check(set(doc.get("runtime", {})) == {"max_delay_ms", "preferred_batch", "queue_limit"}, "runtime settings listed")
check(doc.get("applied") is None, "nothing applied without --url")

# Every strategy picks by its rule, on one more tiny sweep per strategy (two rows each).
for strategy in ("latency_optimized", "balanced", "memory_optimized"):
    path = os.path.join(TMP, strategy + ".yaml")
    rc, out, err = optimize("--strategy", strategy, "--model", DYN, "--precisions", "fp32", "--batches", "1,2",
                            *TINY, "--output", path, "--json", "--sla-ms", "1000")
    if not check(rc == 0, "%s exits 0: %s" % (strategy, err[-300:])):
        continue
    d = json.loads(out)
    want, kind = expected_pick(d["results"], strategy, d["sla_ms"])
    got = value_of(d["results"][d["chosen"]], kind, d["results"], d["sla_ms"])
    check(abs(got - want) < 1e-9, "%s picked by its rule (%s %s vs %s)" % (strategy, kind, got, want))
    if strategy == "latency_optimized":
        check(d["results"][d["chosen"]]["batch"] == 1, "latency_optimized runs batch 1")
    config_ok(path)

# ---- table output; a static-batch model skips the batches it cannot run ---------------
path = os.path.join(TMP, "static.yaml")
rc, out, err = optimize("--strategy", "latency_optimized", "--model", STATIC, "--precisions", "fp32",
                        "--batches", "1,2", *TINY, "--output", path)
check(rc == 0, "table run exits 0: %s" % err[-300:])
lines = out.splitlines()
check(any(l.split()[:1] == ["prec"] for l in lines), "table has a header: %s" % out)
marked = [l for l in lines if l.startswith("* ")]
check(len(marked) == 1 and marked[0].split()[1:3] == ["fp32", "1"], "one row marked *: %s" % marked)
check("batch 2: skipped: the model's batch is fixed at 1" in err, "static model: batch 2 skipped: %s" % err[-300:])
check("needs a restart" in out and "models.precision=fp32" in out, "says what needs a restart: %s" % out[-400:])
check("wrote %s" % path in out, "says where the file went")
config_ok(path)

# ---- the admin route ----------------------------------------------------------------
tokens = os.path.join(TMP, "tokens")
with open(tokens, "w") as f:
    f.write(TOKEN + "\n")


def req(srv, method, path, body=None, token=None):
    c = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=60)
    h = {"Content-Type": "application/json"}
    if token:
        h["Authorization"] = "Bearer " + token
    c.request(method, path, body=None if body is None else (body if isinstance(body, str) else json.dumps(body)),
              headers=h)
    r = c.getresponse()
    data = r.read()
    c.close()
    try:
        return r.status, json.loads(data) if data else None
    except ValueError:
        return r.status, {"_raw": data[:200]}


ROUTE = "/v1/admin/scheduler"
common = ["--model", DYN, "--threads", "1", "--workers", "1", "--max-batch", "4",
          "--storage.dir", os.path.join(TMP, "data")]
srv = ServeProcess(CLI, TMP, *common, "--tokens", tokens)
try:
    st, _ = req(srv, "GET", ROUTE)
    check(st == 401, "GET without a token: 401 (got %d)" % st)
    st, before = req(srv, "GET", ROUTE, token=TOKEN)
    check(st == 200, "GET with the token: 200 (got %d)" % st)
    check(before.get("max_batch") == 4 and before.get("max_delay_ms", {}).get("urgent") == 10,
          "GET shows the configured values: %s" % before)
    check(len(before.get("models", [])) == 1 and before["models"][0]["preferred_batch"] == [4],
          "GET shows each model's scheduler (preferred [4, 8] bounded by max_batch 4): %s" % before.get("models"))
    change = {"max_delay_ms": {"urgent": 3, "normal": 20}, "preferred_batch": [2, 4], "queue_limit": {"batch": 50}}
    st, _ = req(srv, "PUT", ROUTE, change)
    check(st == 401, "PUT without a token: 401 (got %d)" % st)
    st, _ = req(srv, "PUT", ROUTE, change, token="not-the-token-at-all")
    check(st == 401, "PUT with a wrong token: 401 (got %d)" % st)
    for body, says in (({"max_delay_ms": {"urgent": -1}}, "max_delay_ms_urgent"),
                       ({"max_delay_ms": {"urgent": 99999}}, "max_delay_ms_urgent"),
                       ({"max_delay_ms": {"later": 5}}, "unknown priority"),
                       ({"queue_limit": {"normal": 0}}, "queue_limit_normal"),
                       ({"queue_limit": {"normal": "many"}}, "integer"),
                       ({"preferred_batch": [4, 2]}, "ascending"),
                       ({"preferred_batch": [8]}, "max_batch"),
                       ({"workers": 2}, "restart"),
                       ({"precision": "bf16"}, "restart"),
                       ({"frobnicate": 1}, "unknown key"),
                       ({}, "nothing to change"),
                       ('{"max_delay_ms": ', "malformed JSON")):
        st, ans = req(srv, "PUT", ROUTE, body, token=TOKEN)
        msg = (ans or {}).get("error", "")
        check(st == 400 and says in msg, "PUT %s: 400 saying %r (got %d: %s)" % (body, says, st, msg))
    st, same = req(srv, "GET", ROUTE, token=TOKEN)
    check(same == before, "refused changes changed nothing")
    st, ans = req(srv, "PUT", ROUTE, change, token=TOKEN)
    check(st == 200, "PUT with the token: 200 (got %d: %s)" % (st, ans))
    st, now = req(srv, "GET", ROUTE, token=TOKEN)
    check(now.get("max_delay_ms") == {"urgent": 3, "normal": 20, "batch": 100}, "GET reflects delays: %s" % now)
    check(now.get("preferred_batch") == [2, 4], "GET reflects preferred sizes: %s" % now)
    check(now.get("queue_limit") == {"urgent": 64, "normal": 256, "batch": 50}, "GET reflects queue limits: %s" % now)
    m = (now.get("models") or [{}])[0]
    check(m.get("max_delay_ms") == now.get("max_delay_ms") and m.get("preferred_batch") == [2, 4] and
          m.get("queue_limit") == now.get("queue_limit"), "the model's scheduler runs with them: %s" % m)
    # Requests still work after the change.
    with open(os.path.join(SHARED, "images", "bus.jpg"), "rb") as f:
        bus = f.read()
    c = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=120)
    c.request("POST", "/v1/detect", body=bus, headers={"Content-Type": "image/jpeg", "Authorization": "Bearer " + TOKEN})
    r = c.getresponse()
    r.read()
    c.close()
    check(r.status == 200, "detect after the change: 200 (got %d)" % r.status)
    # The settings survive a reload (new schedulers get them).
    st, _ = req(srv, "POST", "/v1/models/reload", token=TOKEN)
    check(st == 200, "reload: 200 (got %d)" % st)
    st, after = req(srv, "GET", ROUTE, token=TOKEN)
    check((after.get("models") or [{}])[0].get("max_delay_ms") == {"urgent": 3, "normal": 20, "batch": 100},
          "settings kept across a reload: %s" % after.get("models"))

    # optimize --url applies its run-time part; a wrong token is refused and said so.
    url = "http://127.0.0.1:%d" % srv.port
    path = os.path.join(TMP, "applied.yaml")
    rc, out, err = optimize("--strategy", "balanced", "--model", DYN, "--precisions", "fp32", "--batches", "1,2",
                            *TINY, "--output", path, "--url", url, "--token", TOKEN, "--json")
    check(rc == 0, "optimize --url exits 0: %s" % err[-400:])
    d = json.loads(out) if rc == 0 else {}
    check((d.get("applied") or {}).get("ok") is True, "applied: %s" % d.get("applied"))
    st, now = req(srv, "GET", ROUTE, token=TOKEN)
    rt = d.get("runtime", {})
    check(rt and all(now.get(k) == rt[k] for k in rt), "the server runs the chosen settings: %s vs %s" % (now, rt))
    config_ok(path)
    rc, out, err = optimize("--strategy", "balanced", "--model", DYN, "--precisions", "fp32", "--batches", "1",
                            *TINY, "--output", path, "--url", url, "--token", "wrong-token-123")
    check(rc == 1 and "401" in err and "not applied" in err, "a wrong token is refused: %d %s" % (rc, err[-300:]))
    check("wrote %s" % path in out, "the file is written even so")
finally:
    srv.stop()

# A server without tokens reads the settings but refuses to change them (403).
srv = ServeProcess(CLI, TMP, *common)
try:
    st, _ = req(srv, "GET", ROUTE)
    check(st == 200, "GET without tokens configured: 200 (got %d)" % st)
    st, ans = req(srv, "PUT", ROUTE, {"max_delay_ms": {"urgent": 1}})
    check(st == 403 and "tokens_file" in (ans or {}).get("error", ""), "PUT without tokens configured: 403 (got %d)" % st)
finally:
    srv.stop()

shutil.rmtree(TMP, ignore_errors=True)
CHECKS.finish()
