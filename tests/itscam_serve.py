"""What every server test script shares: where the CLI and ../shared are, and an `itscam serve` process on an ephemeral
loopback port, its log in a file, started and waited for until it listens (and, by
default, until it reports ready), stopped with a signal. Scripts subclass it for their
own request helpers."""
import os
import re
import signal
import subprocess
import sys
import time


def locate(argv):
    """(cli, source dir, shared dir) from `SCRIPT ITSCAM_CLI SOURCE_DIR` and
    ITSCAM_SHARED (default: ../shared beside the source); exits 77 (skipped) when the
    shared models are absent."""
    cli, src = argv[1], argv[2]
    shared = os.environ.get("ITSCAM_SHARED") or os.path.join(os.path.dirname(os.path.abspath(src)), "shared")
    if not os.path.isfile(os.path.join(shared, "models", "yolo11n-320.onnx")):
        print("skip: ../shared/models not found")
        sys.exit(77)
    return cli, src, shared


class Checks:
    """Counts checks, prints each failure at once, and ends the script with the line
    CTest and CI read: "N passed, M failed" (exit 1 when any failed)."""

    def __init__(self):
        self.passed = 0
        self.failed = 0

    def check(self, cond, what):
        if cond:
            self.passed += 1
        else:
            self.failed += 1
            print("FAIL:", what, flush=True)
        return cond

    def finish(self):
        print("%d passed, %d failed" % (self.passed, self.failed))
        sys.exit(1 if self.failed else 0)


class ServeProcess:
    def __init__(self, cli, tmp, *args, env=None, wait_ready=True, scheme="http", timeout=300):
        self.log_path = os.path.join(tmp, "server-%d.log" % time.time_ns())
        self.log = open(self.log_path, "w")
        e = dict(os.environ)
        e.update(env or {})
        self.p = subprocess.Popen([cli, "serve", "--host", "127.0.0.1", "--port", "0"] + list(args),
                                  stdout=self.log, stderr=subprocess.STDOUT, env=e)
        self.port = None
        self.scheme = scheme
        deadline = time.time() + timeout
        while time.time() < deadline and self.port is None:
            if self.p.poll() is not None:
                raise RuntimeError("server exited early:\n" + self.logtext())
            m = re.search(r"listening on https?://[0-9.]+:(\d+)", self.logtext())
            if m:
                self.port = int(m.group(1))
            time.sleep(0.05)
        if self.port is None:
            raise RuntimeError("server did not start:\n" + self.logtext())
        if wait_ready:
            self.wait_ready(timeout)

    def wait_ready(self, timeout=300):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if "itscam serve: ready" in self.logtext():
                return
            if self.p.poll() is not None:
                raise RuntimeError("server exited:\n" + self.logtext())
            time.sleep(0.1)
        raise RuntimeError("server not ready:\n" + self.logtext())

    def url(self, path):
        return "%s://127.0.0.1:%d%s" % (self.scheme, self.port, path)

    def logtext(self):
        with open(self.log_path) as f:
            return f.read()

    def status_kb(self, field):
        """A field of /proc/PID/status in kB (VmRSS, VmHWM); -1 when absent."""
        with open("/proc/%d/status" % self.p.pid) as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        return -1

    def stop(self, sig=signal.SIGTERM, timeout=60):
        if self.p.poll() is None:
            self.p.send_signal(sig)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self.log.close()
        return self.p.returncode
