"""Shared harness of hive's end-to-end tests (SPEC.md §1-§5, §7).

Everything here starts the real `hive-worker` binary on a kernel-chosen
loopback port (`--port 0`, the port is read from the worker's
"listening on http://127.0.0.1:PORT" log line) in a fresh temporary work dir,
and talks to it the way users do: curl for HTTP, the `websockets` package for
WebSocket, raw sockets only for malformed or pipelined HTTP.

Every wait is bounded by a deadline. Every process a test starts is stopped by
pid in tearDown (SIGTERM, bounded wait, SIGKILL), and so are the adapter
processes it left behind. Run with Debian's /usr/bin/python3 (it has
python3-websockets); the binary comes from $HIVE_BUILD_DIR/worker/hive-worker.
"""

import asyncio
import base64
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
import time
import unittest

BUILD_DIR = os.environ.get(
    "HIVE_BUILD_DIR",
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "build-e2e"))
WORKER_BIN = os.path.join(BUILD_DIR, "worker", "hive-worker")
CURL = shutil.which("curl") or "/usr/bin/curl"

BOT = "BOT-E2E"
START_TIMEOUT = 15.0      # the worker must say "listening on" within this (ASan is slower)
STOP_TIMEOUT = 15.0       # SIGTERM → exit, before we fall back to SIGKILL
TASK_TIMEOUT = 20.0       # a task must reach the awaited state within this

LISTEN_RE = re.compile(r"listening on http://127\.0\.0\.1:(\d+)")
HEX8 = r"[0-9a-f]{8}"
ACTIVITY_KEYS = {"timestamp", "bot_id", "event_type", "operation", "result",
                 "duration_seconds", "error", "task_id", "source", "context"}
ACTIVITY_EVENTS = {"startup", "shutdown", "task_received", "task_started",
                   "task_completed", "task_failed", "warning", "error"}
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                     "ThreadSanitizer", "UndefinedBehaviorSanitizer")


# ---------------------------------------------------------------- small utilities

def wait_for(predicate, timeout=TASK_TIMEOUT, interval=0.05, what="condition"):
    """Poll PREDICATE until it returns a truthy value; AssertionError at the deadline."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = predicate()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError("timed out after %.1f s waiting for %s (last: %r)"
                                 % (timeout, what, last))
        time.sleep(interval)


def read_jsonl(path):
    """The complete lines of a JSON-lines file another process is appending
    to, as dicts. A reader can meet the tail of a line whose write is still
    under way: a line with no newline yet is left for the next read."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return []
    lines = data.split(b"\n")[:-1]
    return [json.loads(line) for line in lines if line.strip()]


def proc_status(pid, field, default=None):
    """The number of FIELD ("VmRSS", "VmHWM", "voluntary_ctxt_switches"...)
    in /proc/PID/status; DEFAULT when it has none (AssertionError if None)."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    if default is None:
        raise AssertionError("no %s for pid %d" % (field, pid))
    return default


def write_atomic(path, data, mtime=None):
    """Write DATA (str or bytes) elsewhere, then rename it in (SPEC §2.1
    writers); with MTIME, the file has that time before it is there."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    d = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(prefix=".e2e-", suffix=".tmp", dir=os.path.dirname(d))
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    if mtime is not None:
        os.utime(tmp, (mtime, mtime))
    os.rename(tmp, path)


def _proc_children_map():
    """{ppid: [(pid, starttime)]} of every process visible in /proc."""
    out = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name, "rb") as f:
                stat = f.read().decode("latin-1")
        except OSError:
            continue
        rest = stat[stat.rfind(")") + 2:].split()
        ppid, start = int(rest[1]), rest[19]
        out.setdefault(ppid, []).append((int(name), start))
    return out


def descendants(pid):
    """(pid, starttime) of every live descendant of PID."""
    tree = _proc_children_map()
    found, todo = [], [pid]
    while todo:
        for child in tree.get(todo.pop(), []):
            found.append(child)
            todo.append(child[0])
    return found


def _starttime(pid):
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            stat = f.read().decode("latin-1")
        return stat[stat.rfind(")") + 2:].split()[19]
    except OSError:
        return None


def kill_exact(procs):
    """SIGKILL each (pid, starttime) that is still the same process."""
    for pid, start in procs:
        if _starttime(pid) == start:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


# ---------------------------------------------------------------- HTTP via curl

class Response:
    def __init__(self, status, headers, body, time_total):
        self.status = status
        self.headers = headers      # lower-case name -> value (last wins)
        self.body = body            # bytes
        self.time_total = time_total

    def json(self):
        return json.loads(self.body.decode("utf-8"))

    def header(self, name):
        return self.headers.get(name.lower())

    def __repr__(self):
        return "<HTTP %s %r %r>" % (self.status, self.headers, self.body[:300])


def curl(url, method="GET", body=None, content_type="application/json", headers=(),
         token=None, timeout=10.0, extra_args=()):
    """One HTTP request with curl. BODY: str/bytes/dict (dict → JSON)."""
    tmp = tempfile.mkdtemp(prefix="hive-e2e-curl-")
    try:
        hfile, bfile = os.path.join(tmp, "h"), os.path.join(tmp, "b")
        args = [CURL, "-sS", "--noproxy", "*", "--max-time", str(timeout), "-X", method,
                "-D", hfile, "-o", bfile, "-w", "%{http_code} %{time_total}"]
        if method == "HEAD":
            args = [a for a in args if a not in ("-X", "HEAD")] + ["-I"]
        if body is not None:
            if isinstance(body, dict):
                body = json.dumps(body)
            if isinstance(body, str):
                body = body.encode("utf-8")
            dfile = os.path.join(tmp, "d")
            with open(dfile, "wb") as f:
                f.write(body)
            args += ["--data-binary", "@" + dfile]
            if content_type is not None:
                args += ["-H", "Content-Type: " + content_type]
            else:
                args += ["-H", "Content-Type:"]   # remove curl's form content type
        elif content_type is not None and method == "POST":
            args += ["-H", "Content-Type: " + content_type]
        if token is not None:
            args += ["-H", "Authorization: Bearer " + token]
        for h in headers:
            args += ["-H", h]
        args += list(extra_args) + [url]
        p = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=timeout + 5)
        out = p.stdout.decode().split()
        status = int(out[0]) if out else 0
        if p.returncode != 0 and status == 0:
            raise AssertionError("curl %s %s failed (rc %d): %s"
                                 % (method, url, p.returncode, p.stderr.decode().strip()))
        hdrs = {}
        try:
            with open(hfile, "rb") as f:
                raw = f.read().decode("latin-1")
            blocks = [b for b in raw.split("\r\n\r\n") if b.startswith("HTTP/")]
            if blocks:
                for line in blocks[-1].split("\r\n")[1:]:
                    if ":" in line:
                        k, v = line.split(":", 1)
                        hdrs[k.strip().lower()] = v.strip()
        except OSError:
            pass
        try:
            with open(bfile, "rb") as f:
                data = f.read()
        except OSError:
            data = b""
        return Response(status, hdrs, data, float(out[1]) if len(out) > 1 else 0.0)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------- raw HTTP

def free_ports(n):
    """N distinct loopback ports the kernel chose and that were free a moment
    ago (all bound at once, so never the same port twice, then closed)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def raw_connect(port, timeout=5.0):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.settimeout(timeout)
    return s


def read_http_response(f):
    """Read one response from the buffered socket file F: (status, headers, body)."""
    line = f.readline()
    if not line:
        raise EOFError("connection closed before a response")
    parts = line.decode("latin-1").split(" ", 2)
    status = int(parts[1])
    version = parts[0]
    headers = {}
    while True:
        h = f.readline()
        if not h:
            raise EOFError("connection closed inside the headers")
        if h in (b"\r\n", b"\n"):
            break
        k, v = h.decode("latin-1").split(":", 1)
        headers[k.strip().lower()] = v.strip()
    n = int(headers.get("content-length", "0"))
    body = f.read(n) if n else b""
    if len(body) != n:
        raise EOFError("short body")
    return status, headers, body, version


def raw_exchange(port, data, count=1, timeout=5.0):
    """Send DATA in one write and read COUNT responses in order."""
    with raw_connect(port, timeout) as s:
        s.sendall(data)
        f = s.makefile("rb")
        return [read_http_response(f) for _ in range(count)]


def read_until_close(sock, limit=1 << 20):
    chunks = []
    while sum(map(len, chunks)) < limit:
        try:
            b = sock.recv(65536)
        except (ConnectionResetError, socket.timeout):
            break
        if not b:
            break
        chunks.append(b)
    return b"".join(chunks)


# ---------------------------------------------------------------- raw WebSocket frames

def ws_raw_handshake(port, path="/ws", origin=None, timeout=5.0):
    """Open a raw WebSocket (for frames the websockets client cannot send)."""
    s = raw_connect(port, timeout)
    key = base64.b64encode(os.urandom(16)).decode()
    req = ("GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
           "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n"
           % (path, port, key))
    if origin:
        req += "Origin: %s\r\n" % origin
    s.sendall((req + "\r\n").encode())
    f = s.makefile("rb")
    line = f.readline()
    status = int(line.split()[1])
    while f.readline() not in (b"\r\n", b"\n", b""):
        pass
    return s, f, status


def ws_frame(opcode, payload, fin=True):
    """A masked client frame."""
    if isinstance(payload, str):
        payload = payload.encode("utf-8")
    head = bytes([(0x80 if fin else 0) | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack(">H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack(">Q", n)
    mask = os.urandom(4)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def ws_read_frame(f):
    """(opcode, payload) of the next server frame."""
    h = f.read(2)
    if len(h) < 2:
        raise EOFError("connection closed")
    opcode, n = h[0] & 0x0F, h[1] & 0x7F
    if n == 126:
        n = struct.unpack(">H", f.read(2))[0]
    elif n == 127:
        n = struct.unpack(">Q", f.read(8))[0]
    return opcode, f.read(n)


def ws_read_message(f, skip_control=True):
    """Next text message (JSON-decoded) or ('close', code)."""
    while True:
        op, data = ws_read_frame(f)
        if op == 8:
            return ("close", struct.unpack(">H", data[:2])[0] if len(data) >= 2 else None)
        if op in (9, 10) and skip_control:
            continue
        if op == 1:
            return json.loads(data.decode("utf-8"))
        raise AssertionError("unexpected opcode %d" % op)


# ---------------------------------------------------------------- websockets client

def run_async(coro, timeout=30.0):
    """Run an asyncio coroutine with an overall deadline."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def ws_recv_json(ws, timeout=10.0):
    msg = await asyncio.wait_for(ws.recv(), timeout)
    return json.loads(msg)


async def ws_recv_until(ws, pred, timeout=TASK_TIMEOUT):
    """Collect messages until PRED(message) is true; returns the whole list."""
    got = []
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError("no matching WebSocket message in time; got %r" % got)
        m = await ws_recv_json(ws, left)
        got.append(m)
        if pred(m):
            return got


# ---------------------------------------------------------------- the worker

class Worker:
    """One hive-worker process on a temporary work dir."""

    def __init__(self, work_dir, bot=BOT):
        self.work_dir = work_dir
        self.bot = bot
        self.proc = None
        self.port = None
        self.logs = []
        self.returncode = None
        self._children = []

    # --- paths
    def path(self, *parts):
        return os.path.join(self.work_dir, *parts)

    @property
    def queue_dir(self):
        return self.path(".deia", "hive", "tasks", self.bot)

    def sub(self, name):
        return os.path.join(self.queue_dir, name)

    @property
    def responses_dir(self):
        return self.path(".deia", "hive", "responses")

    @property
    def pause_file(self):
        return self.path(".deia", "hive", "controls", self.bot + "-PAUSE")

    @property
    def activity_file(self):
        return self.path(".deia", "bot-logs", "BOT-" + self.bot + "-activity.jsonl")

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.port

    @property
    def ws_url(self):
        return "ws://127.0.0.1:%d/ws" % self.port

    # --- process control
    def start(self, *args, env=None, wait_listen=True, port=0, work_dir_flag=True):
        """Start the worker with ARGS; wait for its listening line."""
        if not os.path.exists(WORKER_BIN):
            raise AssertionError("hive-worker not built: %s" % WORKER_BIN)
        argv = [WORKER_BIN, self.bot]
        if port is not None:
            argv += ["--port", str(port)]
        if work_dir_flag:
            argv += ["--work-dir", self.work_dir]
        args = list(args)
        if "--stop-grace" not in args:
            argv += ["--stop-grace", "1"]
        if "--file-min-age" not in args:
            argv += ["--file-min-age", "0.2"]
        argv += args
        e = dict(os.environ)
        e.pop("HIVE_TOKEN", None)
        e.pop("HIVE_SUPERVISOR_PID", None)
        e.pop("LISTEN_FDS", None)
        e.pop("LISTEN_PID", None)
        e.pop("NOTIFY_SOCKET", None)
        e.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
        if env:
            e.update(env)
        log = os.path.join(self.work_dir, "worker-%d.stderr" % (len(self.logs) + 1))
        self.logs.append(log)
        self.port = None
        self.returncode = None
        with open(log, "wb") as err:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                                         cwd=self.work_dir, env=e)
        if wait_listen:
            self.wait_listening()
        return self

    def log_text(self, which=-1):
        try:
            with open(self.logs[which], "rb") as f:
                return f.read().decode("utf-8", "replace")
        except (OSError, IndexError):
            return ""

    def all_logs(self):
        return "".join(self.log_text(i) for i in range(len(self.logs)))

    def wait_listening(self, timeout=START_TIMEOUT):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = LISTEN_RE.search(self.log_text())
            if m:
                self.port = int(m.group(1))
                return self.port
            if self.proc.poll() is not None:
                raise AssertionError("hive-worker exited with %s before listening:\n%s"
                                     % (self.proc.returncode, self.log_text()))
            time.sleep(0.02)
        raise AssertionError("hive-worker did not report its port in %.0f s:\n%s"
                             % (timeout, self.log_text()))

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def wait_exit(self, timeout=STOP_TIMEOUT):
        try:
            self.returncode = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        return self.returncode

    def _note_children(self):
        if self.alive():
            self._children.extend(descendants(self.proc.pid))

    def terminate(self):
        """Send SIGTERM (the caller waits)."""
        self._note_children()
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)

    def stop(self, timeout=STOP_TIMEOUT):
        """SIGTERM, bounded wait, SIGKILL fallback. Returns (exit code, needed_kill)."""
        if self.proc is None:
            return None, False
        if not self.alive():
            self.returncode = self.proc.returncode
            self.reap_children()
            return self.returncode, False
        self.terminate()
        code = self.wait_exit(timeout)
        killed = False
        if code is None:
            killed = True
            self.kill()
            code = self.returncode
        self.reap_children()
        return code, killed

    def kill(self):
        """SIGKILL the worker, and the adapter processes it had (its group dies with it,
        as under the supervisor)."""
        if self.proc is None:
            return
        self._note_children()
        if self.alive():
            self.proc.kill()
        try:
            self.returncode = self.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass
        self.reap_children()

    def reap_children(self):
        kill_exact(self._children)
        self._children = []

    # --- HTTP helpers
    def http(self, method, path, body=None, **kw):
        return curl(self.url + path, method=method, body=body, **kw)

    def get(self, path, **kw):
        return self.http("GET", path, **kw)

    def post(self, path, body=None, **kw):
        return self.http("POST", path, body if body is not None else {}, **kw)

    def status(self, **kw):
        r = self.get("/status", **kw)
        if r.status != 200:
            raise AssertionError("GET /status: %r" % r)
        return r.json()

    def submit(self, command, expect=202, **fields):
        body = dict(fields)
        body["command"] = command
        r = self.post("/api/task", body)
        if expect is not None and r.status != expect:
            raise AssertionError("POST /api/task %r: expected %d, got %r" % (body, expect, r))
        return r.json() if r.body else {}

    def task(self, task_id):
        return self.get("/api/task/" + task_id)

    def wait_state(self, task_id, states, timeout=TASK_TIMEOUT):
        if isinstance(states, str):
            states = (states,)

        def check():
            r = self.task(task_id)
            if r.status == 200 and r.json().get("state") in states:
                return r.json()
            return None
        return wait_for(check, timeout, what="task %s in state %s" % (task_id, states))

    def wait_status(self, pred, timeout=TASK_TIMEOUT, what="status"):
        return wait_for(lambda: (lambda s: s if pred(s) else None)(self.status()), timeout,
                        what=what)

    # --- files
    def write_task(self, name, text, mtime=None):
        """Drop a task file into the queue (written elsewhere, renamed in)."""
        os.makedirs(self.queue_dir, exist_ok=True)
        dst = os.path.join(self.queue_dir, name)
        # The time is set before the rename: a running worker may claim the
        # file (move it to _active/) as soon as it is in the queue.
        write_atomic(dst, text, mtime)
        return dst

    def responses(self, task_id=None):
        """Response file names (of TASK_ID when given), sorted."""
        try:
            names = sorted(n for n in os.listdir(self.responses_dir) if not n.startswith("."))
        except FileNotFoundError:
            return []
        if task_id is None:
            return names
        pat = re.compile(r"^\d{4}-\d{2}-\d{2}-\d{4}-%s-[A-Za-z0-9._-]+-RESPONSE-%s-(complete|failed)"
                         r"(-\d+)?\.md$" % (re.escape(self.bot), re.escape(task_id)))
        return [n for n in names if pat.match(n)]

    def read_response(self, name):
        with open(os.path.join(self.responses_dir, name), "rb") as f:
            return f.read().decode("utf-8")

    def wait_response(self, task_id, timeout=TASK_TIMEOUT):
        """Wait for the response of TASK_ID; returns (name, text)."""
        names = wait_for(lambda: self.responses(task_id), timeout,
                         what="a response file for %s" % task_id)
        return names[0], self.read_response(names[0])

    def listdir(self, sub):
        try:
            return sorted(os.listdir(self.sub(sub)))
        except FileNotFoundError:
            return []

    def activity(self):
        return read_jsonl(self.activity_file)

    def sanitizer_reports(self):
        text = self.all_logs()
        return [m for m in SANITIZER_MARKERS if m in text]


def parse_response(text):
    """Split a SPEC §2.2 response file into its fields and sections."""
    lines = text.split("\n")
    out = {"title": lines[0]}
    for line in lines:
        m = re.match(r"^\*\*([A-Za-z ]+):\*\* ?(.*)$", line)
        if m and m.group(1) not in out:
            out[m.group(1)] = m.group(2)
    out["has_error_section"] = "\n## Error\n" in text
    m = re.search(r"\n## Output\n\n(.*?)\n\n## Files Modified\n", text, re.S)
    out["output"] = m.group(1) if m else None
    m = re.search(r"\n## Error\n\n(.*?)\n\n---\n", text, re.S)
    out["error"] = m.group(1) if m else None
    return out


# ---------------------------------------------------------------- test base class

class WorkerTestCase(unittest.TestCase):
    """Gives each test fresh temp dirs and stops every worker it started."""

    maxDiff = 4000

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="hive-e2e-")
        self.workers = []

    def new_worker(self, *args, work_dir=None, bot=BOT, **kw):
        w = Worker(work_dir or self.tmp, bot)
        self.workers.append(w)
        w.start(*args, **kw)
        return w

    def restart(self, old, *args, **kw):
        """A new worker process on OLD's work dir (OLD must be dead)."""
        w = Worker(old.work_dir, old.bot)
        w.logs = list(old.logs)
        self.workers.append(w)
        w.start(*args, **kw)
        return w

    def tearDown(self):
        problems = []
        for w in self.workers:
            if w.proc is None:
                continue
            was_alive = w.alive()
            code, killed = w.stop()
            if was_alive and killed:
                problems.append("worker pid %d did not exit within %.0f s of SIGTERM"
                                % (w.proc.pid, STOP_TIMEOUT))
            elif was_alive and code != 0:
                problems.append("worker pid %d exited %s after SIGTERM (expected 0)"
                                % (w.proc.pid, code))
            rep = w.sanitizer_reports()
            if rep:
                problems.append("sanitizer report in worker output: %s" % ", ".join(rep))
        failed = not getattr(self._outcome, "success", True) or problems
        if failed or os.environ.get("HIVE_E2E_VERBOSE"):
            for w in self.workers:
                for i, log in enumerate(w.logs):
                    sys.stderr.write("---- %s worker log %s ----\n%s\n"
                                     % (self.id(), log, w.log_text(i)[-6000:]))
        shutil.rmtree(self.tmp, ignore_errors=True)
        if problems:
            self.fail("; ".join(problems))


def main():
    unittest.main(verbosity=2)
