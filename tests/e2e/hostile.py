"""Shared parts of the hostile-client suites (issue 5, "Hostile clients"; SPEC.md §4, §5,
§6.3, §7): raw-socket attack helpers, the targets (one worker, or a hive whose front door
and proxy path are attacked), and the cases both suites run.

Every attack is made of raw bytes on a loopback socket, because the interesting requests
are the ones real clients refuse to send. After every case the attacked process must
still answer GET /status with 200, its bot must not have been restarted, and the
sentinel task (accepted, with a slow mock adapter, before any abuse) must still be known;
when the class ends the sentinel must have exactly one response file, and no file may
exist under the test's temporary root outside the expected .deia/ paths.

The expected status codes are SPEC.md's where it names one, otherwise what nginx gives
(1.21.1 and later: duplicate Content-Length, Transfer-Encoding with Content-Length and
whitespace before a header's colon are 400; an unsupported transfer coding is 501;
RFC 7230 §3.2.4 and §3.3.3 agree).

Every wait is bounded; the processes are stopped by pid by the targets' stop(). Run with
Debian's /usr/bin/python3; binaries come from $HIVE_BUILD_DIR.
"""

import base64
import errno
import http.client
import json
import os
import re
import select
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

from hive_e2e import (BUILD_DIR, SANITIZER_MARKERS, Worker, descendants, free_ports,  # noqa: E402
                      kill_exact, wait_for)

HIVE_BIN = os.path.join(BUILD_DIR, "supervisor", "hive")

# Small limits, so that timeouts and floods finish fast. max_body and max_message leave
# room for 100,000 nested brackets (deep JSON must be refused by the parser, not by size).
LIMITS = {"max_header": 4096, "max_body": 256 * 1024, "max_message": 256 * 1024,
          "max_connections": 50, "header_timeout": 1.0, "idle_timeout": 2.0}
MOCK_DELAY_MS = 1500          # the sentinel runs while the first cases attack
SENTINEL = "SENTINEL-1"
TASK_TIMEOUT = 30.0
START_TIMEOUT = 20.0
STOP_TIMEOUT = 20.0
MARK = "hostile-escape-%d" % os.getpid()   # in the ids that try to leave the folders
RESP_NAME_RE = re.compile(r"^[A-Za-z0-9._-]+$")


# ---------------------------------------------------------------- raw HTTP

class Resp:
    """One HTTP response parsed from raw bytes."""

    def __init__(self, status, reason, headers, body):
        self.status = status
        self.reason = reason
        self.headers = headers    # list of (lower-case name, value)
        self.body = body

    def header(self, name):
        for k, v in self.headers:
            if k == name.lower():
                return v
        return None

    def json(self):
        return json.loads(self.body.decode("utf-8"))

    def __repr__(self):
        return "<HTTP %d %s %r>" % (self.status, self.headers, self.body[:200])


def parse_responses(data):
    """Every complete response in DATA (Content-Length or chunked bodies); the rest of the
    bytes is returned as the second value."""
    out = []
    while data.startswith(b"HTTP/"):
        end = data.find(b"\r\n\r\n")
        if end < 0:
            break
        lines = data[:end].decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        status, reason = int(parts[1]), parts[2] if len(parts) > 2 else ""
        headers = []
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers.append((k.strip().lower(), v.strip()))
        rest = data[end + 4:]
        hd = dict(headers)
        if "chunked" in hd.get("transfer-encoding", "").lower():
            body = b""
            while True:
                nl = rest.find(b"\r\n")
                if nl < 0:
                    return out, data
                size = int(rest[:nl].split(b";")[0], 16)
                if size == 0:
                    rest = rest[nl + 2:]
                    trailer_end = rest.find(b"\r\n")
                    rest = rest[trailer_end + 2:] if trailer_end >= 0 else b""
                    break
                body += rest[nl + 2:nl + 2 + size]
                rest = rest[nl + 2 + size + 2:]
        else:
            n = int(hd.get("content-length", "0"))
            if status in (101, 204, 304) or 100 <= status < 200:
                n = 0
            if len(rest) < n:
                break
            body, rest = rest[:n], rest[n:]
        out.append(Resp(status, reason, headers, body))
        data = rest
    return out, data


class Exchange:
    """What came back for some raw bytes: the responses, whether the server closed the
    connection (and how long that took), and any trailing bytes."""

    def __init__(self, data, closed, elapsed, error=None):
        self.raw = data
        self.responses, self.rest = parse_responses(data)
        self.closed = closed
        self.elapsed = elapsed
        self.error = error

    @property
    def status(self):
        return self.responses[0].status if self.responses else None

    @property
    def first(self):
        return self.responses[0] if self.responses else None

    def __repr__(self):
        return "<exchange closed=%s after %.2f s, %d response(s): %r, rest %r%s>" % (
            self.closed, self.elapsed, len(self.responses), self.responses, self.rest[:120],
            ", error %r" % self.error if self.error else "")


def connect(port, timeout=5.0):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.settimeout(timeout)
    return s


def exchange(port, data, timeout=5.0, want=None):
    """Send DATA, then read until the server closes, TIMEOUT passes, or WANT complete
    responses have arrived."""
    t0 = time.monotonic()
    buf, closed, err = b"", False, None
    with connect(port, timeout) as s:
        try:
            s.sendall(data)
        except OSError as e:          # the server may refuse before reading it all
            err = e
        deadline = t0 + timeout
        while True:
            if want is not None and len(parse_responses(buf)[0]) >= want:
                break
            left = deadline - time.monotonic()
            if left <= 0:
                break
            s.settimeout(left)
            try:
                b = s.recv(65536)
            except socket.timeout:
                break
            except OSError as e:      # RST counts as closed
                closed, err = True, err or e
                break
            if not b:
                closed = True
                break
            buf += b
    return Exchange(buf, closed, time.monotonic() - t0, err)


def http_get(port, path, token=None, timeout=10.0, headers=None):
    """(status, body bytes) of one GET with the standard library's client."""
    h = dict(headers or {})
    if token:
        h["Authorization"] = "Bearer " + token
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", path, headers=h)
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def http_json(port, method, path, body=None, token=None, timeout=10.0):
    """(status, parsed JSON or None) of one request with a JSON body."""
    h = {}
    if token:
        h["Authorization"] = "Bearer " + token
    data = None
    if body is not None:
        data = body if isinstance(body, (bytes, str)) else json.dumps(body)
        h["Content-Type"] = "application/json"
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request(method, path, body=data, headers=h)
        r = c.getresponse()
        raw = r.read()
    finally:
        c.close()
    try:
        return r.status, json.loads(raw.decode("utf-8"))
    except ValueError:
        return r.status, None


def post_task_bytes(path, body, extra=b"", host=b"localhost"):
    """A raw POST of BODY (bytes) to PATH with Content-Length."""
    return (b"POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n%s"
            b"Content-Length: %d\r\n\r\n" % (path.encode(), host, extra, len(body))) + body


def chunked(body, size=None):
    """BODY in chunked encoding (one chunk, or chunks of SIZE bytes), terminated."""
    out = b""
    size = size or max(1, len(body))
    for i in range(0, len(body), size):
        part = body[i:i + size]
        out += b"%x\r\n%s\r\n" % (len(part), part)
    return out + b"0\r\n\r\n"


# ---------------------------------------------------------------- WebSocket, raw

def ws_open(port, path, headers=(), timeout=5.0):
    """A raw WebSocket handshake; (socket, buffered reader, status, headers dict)."""
    s = connect(port, timeout)
    key = base64.b64encode(os.urandom(16)).decode()
    names = {h.split(":", 1)[0].strip().lower() for h in headers}
    req = "GET %s HTTP/1.1\r\n" % path
    if "host" not in names:
        req += "Host: 127.0.0.1:%d\r\n" % port
    req += ("Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
            "Sec-WebSocket-Version: 13\r\n" % key)
    for h in headers:
        req += h + "\r\n"
    s.sendall((req + "\r\n").encode("latin-1"))
    f = s.makefile("rb")
    line = f.readline()
    if not line:
        s.close()
        raise EOFError("no answer to the upgrade")
    status = int(line.split()[1])
    hdrs = {}
    while True:
        h = f.readline()
        if h in (b"\r\n", b"\n", b""):
            break
        k, _, v = h.decode("latin-1").partition(":")
        hdrs[k.strip().lower()] = v.strip()
    if status != 101:
        n = int(hdrs.get("content-length", "0") or 0)
        if n:
            f.read(n)
    return s, f, status, hdrs


def frame(opcode, payload, fin=True, mask=True, rsv=0, length=None):
    """One client frame; LENGTH overrides the declared payload length."""
    if isinstance(payload, str):
        payload = payload.encode("utf-8")
    n = len(payload) if length is None else length
    head = bytes([(0x80 if fin else 0) | (rsv << 4) | opcode])
    mbit = 0x80 if mask else 0
    if n < 126:
        head += bytes([mbit | n])
    elif n < 65536:
        head += bytes([mbit | 126]) + struct.pack(">H", n)
    else:
        head += bytes([mbit | 127]) + struct.pack(">Q", n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def read_frame(f):
    h = f.read(2)
    if len(h) < 2:
        raise EOFError("connection closed")
    opcode, n = h[0] & 0x0F, h[1] & 0x7F
    if n == 126:
        n = struct.unpack(">H", f.read(2))[0]
    elif n == 127:
        n = struct.unpack(">Q", f.read(8))[0]
    data = f.read(n)
    if len(data) < n:
        raise EOFError("connection closed inside a frame")
    return opcode, data


def ws_outcome(s, f, timeout=6.0):
    """What the server does next: ("close", code), ("text", json), ("drop", None) when the
    connection ends without a close frame, or ("timeout", None). Pings and pongs are
    skipped."""
    s.settimeout(timeout)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            op, data = read_frame(f)
        except (EOFError, ConnectionResetError, BrokenPipeError):
            return ("drop", None)
        except socket.timeout:
            return ("timeout", None)
        if op == 8:
            return ("close", struct.unpack(">H", data[:2])[0] if len(data) >= 2 else None)
        if op in (9, 10):
            continue
        if op == 1:
            try:
                return ("text", json.loads(data.decode("utf-8")))
            except ValueError:
                return ("text", data)
        return ("opcode %d" % op, data)
    return ("timeout", None)


def ws_attack(port, path, data, timeout=6.0):
    """Open a WebSocket, send DATA (bytes or a list of them), return ws_outcome()."""
    s, f, status, _ = ws_open(port, path)
    with s:
        if status != 101:
            raise AssertionError("the upgrade of %s answered %d" % (path, status))
        try:
            for piece in data if isinstance(data, list) else [data]:
                s.sendall(piece)
        except OSError:
            pass
        return ws_outcome(s, f, timeout)


# ---------------------------------------------------------------- processes and files

def socket_count(pid):
    """Open sockets of PID (from /proc/PID/fd)."""
    n = 0
    try:
        names = os.listdir("/proc/%d/fd" % pid)
    except OSError:
        return None
    for name in names:
        try:
            if os.readlink("/proc/%d/fd/%s" % (pid, name)).startswith("socket:"):
                n += 1
        except OSError:
            pass
    return n


def stray_files(root, work_dir, bot, supervisor=False):
    """Paths under ROOT that should not exist: anything outside WORK_DIR, anything in
    WORK_DIR outside the DEIA layout (SPEC §2) and the harness's logs, and any file in
    the layout whose name is not sanitised to [A-Za-z0-9._-]."""
    b = re.escape(bot)
    files = [r"\.deia/hive/tasks/%s/(_realtime|_active|_archive)/[^/]+" % b,
             r"\.deia/hive/tasks/%s/[^/]+\.md" % b,
             r"\.deia/hive/tasks/\.e2e-[^/]+\.tmp",
             r"\.deia/hive/responses/[^/]+",
             r"\.deia/hive/responses/\.pending/%s/[^/]+" % b,
             r"\.deia/hive/responses/\.index/%s/[^/]+" % b,
             r"\.deia/hive/controls/%s-PAUSE" % b,
             r"\.deia/bot-logs/BOT-%s-activity\.jsonl" % b,
             r"\.deia/bot-logs/%s-events\.jsonl(\.1)?" % b,  # the bot's event stream (events.c)
             r"\.deia/bot-logs/%s-timeline\.(jsonl|idx)" % b,  # the bot's timeline (timeline.c)
             r"\.deia/hive/locks/%s\.lock" % b,
             r"\.deia/hive/run/%s\.procs" % b,  # what runs, for the next start (contain.c)
             r"worker-\d+\.stderr"]
    dirs = [r"\.deia", r"\.deia/hive", r"\.deia/hive/tasks", r"\.deia/hive/tasks/%s" % b,
            r"\.deia/hive/tasks/%s/(_realtime|_active|_archive)" % b,
            r"\.deia/hive/responses", r"\.deia/hive/responses/\.pending",
            r"\.deia/hive/responses/\.pending/%s" % b, r"\.deia/hive/responses/\.index",
            r"\.deia/hive/responses/\.index/%s" % b, r"\.deia/hive/controls", r"\.deia/bot-logs",
            r"\.deia/hive/locks", r"\.deia/hive/run"]
    if supervisor:
        files += [r"hive\.yaml", r"hive-up\.log", r"\.deia/hive/(hive\.lock|hive\.pid)",
                  r"\.deia/hive/\.?registry\.json[^/]*", r"\.deia/hive/logs/%s\.log[^/]*" % b,
                  r"\.deia/hive/logs/hive\.log[^/]*",  # the supervisor's own log
                  r"\.deia/hive/events\.jsonl(\.1|\.cursors)?"]  # the merged event stream (merge.c)
        dirs += [r"\.deia/hive/logs"]
    file_re = re.compile("^(%s)$" % "|".join(files))
    dir_re = re.compile("^(%s)$" % "|".join(dirs))
    bad = []
    for top, dnames, fnames in os.walk(root):
        for name in dnames + fnames:
            full = os.path.join(top, name)
            rel = os.path.relpath(full, work_dir)
            if rel == ".":
                continue
            if rel.startswith(".."):
                bad.append(full)
                continue
            is_dir = os.path.isdir(full) and not os.path.islink(full)
            if not (dir_re if is_dir else file_re).match(rel):
                bad.append(full)
            elif not is_dir and "/" in rel and rel.startswith(".deia/hive/") \
                    and not RESP_NAME_RE.match(name):
                bad.append(full)
            elif not is_dir and rel.startswith(".deia/hive/responses/.index/") and \
                    (not os.path.islink(full) or "/" in os.readlink(full)):
                bad.append(full)   # an index entry is a link to a plain response name
    for name in os.listdir(tempfile.gettempdir()):
        if MARK in name:
            bad.append(os.path.join(tempfile.gettempdir(), name))
    return sorted(bad)


# ---------------------------------------------------------------- targets

class WorkerTarget:
    """One hive-worker with the small LIMITS, attacked on its own port."""

    kind = "worker"

    def __init__(self, token=None, extra=()):
        self.root = tempfile.mkdtemp(prefix="hive-e2e-hostile-")
        self.work_dir = os.path.join(self.root, "work")
        os.makedirs(self.work_dir)
        self.token = token
        self.w = Worker(self.work_dir, "BOT-H")
        self.extra = list(extra)

    bot = "BOT-H"
    prefix = ""

    def start(self):
        args = ["--mock-delay-ms", str(MOCK_DELAY_MS),
                "--max-header", str(LIMITS["max_header"]),
                "--max-body", str(LIMITS["max_body"]),
                "--max-message", str(LIMITS["max_message"]),
                "--max-connections", str(LIMITS["max_connections"]),
                "--header-timeout", str(LIMITS["header_timeout"]),
                "--idle-timeout", str(LIMITS["idle_timeout"])] + self.extra
        if self.token:
            args += ["--token", self.token]
        self.w.start(*args)
        self.port = self.w.port
        self.bot_port = self.w.port
        self.pid = self.w.proc.pid
        return self

    @property
    def status_paths(self):
        return [(self.port, "/status")]

    def alive_problem(self):
        """None while the process is alive (no request made: it may be saturated)."""
        return self.problem()

    def problem(self):
        """None while the process is the one we started and is alive."""
        if not self.w.alive():
            return "hive-worker pid %d died (exit %s)" % (self.pid, self.w.proc.returncode)
        return None

    def responses(self, task_id):
        return self.w.responses(task_id)

    def logs(self):
        return self.w.all_logs()

    def stop(self):
        """Stop; a list of problems (slow stop, bad exit, sanitizer reports)."""
        problems = []
        was_alive = self.w.alive()
        code, killed = self.w.stop(STOP_TIMEOUT)
        if was_alive and killed:
            problems.append("hive-worker did not exit within %.0f s of SIGTERM" % STOP_TIMEOUT)
        elif was_alive and code != 0:
            problems.append("hive-worker exited %s after SIGTERM" % code)
        rep = self.w.sanitizer_reports()
        if rep:
            problems.append("sanitizer report in hive-worker output: %s" % ", ".join(rep))
        return problems

    def cleanup(self):
        shutil.rmtree(self.root, ignore_errors=True)


class HiveTarget:
    """`hive up` with one mock bot and the small LIMITS in hive.yaml; attacked on the
    front door, the proxy path being /bots/BOT-H/..."""

    kind = "supervisor"
    bot = "BOT-H"
    TOKEN_VAR = "HIVE_E2E_HOSTILE_TOKEN"

    def __init__(self, token=None, allowed_origins=()):
        self.root = tempfile.mkdtemp(prefix="hive-e2e-hostile-sup-")
        self.work_dir = os.path.join(self.root, "work")
        os.makedirs(self.work_dir)
        self.token = token
        self.port, self.bot_port = free_ports(2)
        self.prefix = "/bots/" + self.bot
        self.yaml = os.path.join(self.work_dir, "hive.yaml")
        self.log = os.path.join(self.work_dir, "hive-up.log")
        self.proc = None
        self.seen = []
        lines = ["hive:", "  name: hostile", "  work_dir: .",
                 "  listen: 127.0.0.1:%d" % self.port,
                 "  limits:",
                 "    max_header_bytes: %d" % LIMITS["max_header"],
                 "    max_body: %d" % LIMITS["max_body"],
                 "    max_message: %d" % LIMITS["max_message"],
                 "    max_connections: %d" % LIMITS["max_connections"],
                 "    header_timeout: %s" % LIMITS["header_timeout"],
                 "    idle_timeout: %s" % LIMITS["idle_timeout"]]
        if token:
            lines.append("  token_env: " + self.TOKEN_VAR)
        if allowed_origins:
            lines.append("  allowed_origins: [%s]" % ", ".join(allowed_origins))
        lines += ["defaults:", "  adapter: {type: mock, delay_ms: %d}" % MOCK_DELAY_MS,
                  "  stop_timeout: 3", "bots:",
                  "  - id: %s" % self.bot, "    port: %d" % self.bot_port]
        with open(self.yaml, "w") as f:
            f.write("\n".join(lines) + "\n")

    def env(self):
        e = dict(os.environ)
        for k in ("HIVE_TOKEN", self.TOKEN_VAR, "LISTEN_FDS", "LISTEN_PID", "NOTIFY_SOCKET"):
            e.pop(k, None)
        if self.token:
            e[self.TOKEN_VAR] = self.token
        e.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
        return e

    def start(self):
        if not os.path.exists(HIVE_BIN):
            raise AssertionError("hive not built: %s" % HIVE_BIN)
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen([HIVE_BIN, "up", "-f", self.yaml], cwd=self.work_dir,
                                         stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                         env=self.env())
        self.pid = self.proc.pid

        def running():
            if self.proc.poll() is not None:
                raise AssertionError("hive up exited with %s:\n%s"
                                     % (self.proc.returncode, self.logs()[-4000:]))
            try:
                st, body = http_get(self.port, "/status", self.token, timeout=2)
            except OSError:
                return None
            if st != 200:
                return None
            bots = json.loads(body)["bots"]
            return bots[0] if bots and bots[0]["state"] == "running" else None
        bot = wait_for(running, START_TIMEOUT, interval=0.1, what="%s running" % self.bot)
        self.bot_pid = bot["pid"]
        self.seen.extend(descendants(self.proc.pid))
        return self

    @property
    def status_paths(self):
        return [(self.port, "/status"), (self.port, self.prefix + "/status"),
                (self.bot_port, "/status")]

    def alive_problem(self):
        """None while the supervisor and its bot are alive (no request made)."""
        if self.proc.poll() is not None:
            return "hive up pid %d died (exit %s)" % (self.pid, self.proc.returncode)
        try:
            os.kill(self.bot_pid, 0)
        except OSError:
            return "the worker pid %d died" % self.bot_pid
        return None

    def problem(self):
        if self.proc.poll() is not None:
            return "hive up pid %d died (exit %s)" % (self.pid, self.proc.returncode)
        self.seen.extend(descendants(self.proc.pid))
        try:
            st, body = http_get(self.port, "/status", self.token, timeout=10)
        except OSError as e:
            return "GET /status of the supervisor failed: %r" % e
        if st != 200:
            return "GET /status of the supervisor answered %d" % st
        bot = json.loads(body)["bots"][0]
        if bot["state"] != "running" or bot["pid"] != self.bot_pid or bot["restarts"]:
            return "the bot was restarted or is down: %r (pid was %d)" % (bot, self.bot_pid)
        return None

    def responses(self, task_id):
        d = os.path.join(self.work_dir, ".deia", "hive", "responses")
        try:
            names = os.listdir(d)
        except FileNotFoundError:
            return []
        pat = re.compile(r"-%s-[A-Za-z0-9._-]+-RESPONSE-%s-(complete|failed)(-\d+)?\.md$"
                         % (re.escape(self.bot), re.escape(task_id)))
        return sorted(n for n in names if pat.search(n))

    def logs(self):
        out = []
        for path in [self.log] + sorted(
                os.path.join(self.work_dir, ".deia", "hive", "logs", n)
                for n in (os.listdir(os.path.join(self.work_dir, ".deia", "hive", "logs"))
                          if os.path.isdir(os.path.join(self.work_dir, ".deia", "hive",
                                                        "logs")) else [])):
            try:
                with open(path, "rb") as f:
                    out.append("---- %s ----\n%s" % (os.path.basename(path),
                                                     f.read().decode("utf-8", "replace")))
            except OSError:
                pass
        return "\n".join(out)

    def stop(self):
        problems = []
        if self.proc is None:
            return problems
        if self.proc.poll() is None:
            self.seen.extend(descendants(self.proc.pid))
            self.proc.send_signal(signal.SIGTERM)
            try:
                code = self.proc.wait(STOP_TIMEOUT)
                if code != 0:
                    problems.append("hive up exited %s after SIGTERM" % code)
            except subprocess.TimeoutExpired:
                problems.append("hive up did not exit within %.0f s of SIGTERM" % STOP_TIMEOUT)
                self.proc.kill()
                self.proc.wait(10)
        kill_exact(self.seen)
        text = self.logs()
        rep = [m for m in SANITIZER_MARKERS if m in text]
        if rep:
            problems.append("sanitizer report in hive output: %s" % ", ".join(rep))
        return problems

    def cleanup(self):
        shutil.rmtree(self.root, ignore_errors=True)


# ---------------------------------------------------------------- the shared cases

def post(path, body, extra=b""):
    if isinstance(body, dict):
        body = json.dumps(body).encode()
    if isinstance(body, str):
        body = body.encode("utf-8")
    return post_task_bytes(path, body, extra)


class HostileBase:
    """Mixed into a unittest.TestCase whose class sets T (a started target) in setUpClass
    via start_target()."""

    T = None
    maxDiff = 4000

    # ---- class life: the sentinel before, the accounting after

    @classmethod
    def start_target(cls, target):
        cls.T = target
        try:
            target.start()
            st, j = cls.api(target, "POST", "/api/task",
                            {"command": "sentinel accepted before the abuse",
                             "task_id": SENTINEL})
            if st != 202:
                raise AssertionError("the sentinel task was not accepted: %s %r" % (st, j))
        except BaseException:
            sys.stderr.write(target.logs()[-6000:])
            target.stop()
            target.cleanup()
            raise

    @staticmethod
    def api(target, method, path, body=None):
        return http_json(target.port, method, target.prefix + path, body, token=target.token)

    @classmethod
    def finish_target(cls):
        T = cls.T
        problems = []
        try:
            if T.problem() is None:
                try:
                    wait_for(lambda: (lambda r: r[0] == 200 and r[1]["state"] in ("done",
                                                                                  "failed"))(
                        cls.api(T, "GET", "/api/task/" + SENTINEL)),
                        TASK_TIMEOUT, interval=0.2, what="the sentinel task to finish")
                    names = wait_for(lambda: T.responses(SENTINEL), 5,
                                     what="the sentinel's response file")
                    time.sleep(0.3)
                    names = T.responses(SENTINEL)
                    if len(names) != 1:
                        problems.append("the sentinel has %d response files: %r"
                                        % (len(names), names))
                except AssertionError as e:
                    problems.append("the sentinel accepted before the abuse was lost: %s" % e)
            else:
                problems.append(T.problem())
            bad = stray_files(T.root, T.work_dir, T.bot, supervisor=T.kind == "supervisor")
            if bad:
                problems.append("stray files: %r" % bad)
        finally:
            problems += T.stop()
            if problems or os.environ.get("HIVE_E2E_VERBOSE"):
                sys.stderr.write("---- %s logs ----\n%s\n" % (cls.__name__, T.logs()[-12000:]))
            T.cleanup()
        if problems:
            raise AssertionError("after the abuse of %s: %s" % (cls.__name__, "; ".join(problems)))

    # ---- the check after every case

    def survived(self, what):
        """The attacked process (and its bot) still serve, nothing accepted is lost."""
        T = self.T
        problem = T.problem()
        self.assertIsNone(problem, "after %s: %s" % (what, problem))
        for port, path in T.status_paths:
            try:
                st, body = http_get(port, path, T.token, timeout=10)
            except OSError as e:
                self.fail("after %s: GET %s on port %d failed: %r" % (what, path, port, e))
            self.assertEqual(st, 200, "after %s: GET %s on port %d: %r" % (what, path, port,
                                                                          body[:200]))
        st, j = self.api(T, "GET", "/api/task/" + SENTINEL)
        self.assertEqual(st, 200, "after %s: the sentinel task is unknown: %r" % (what, j))
        self.assertIn(j["state"], ("queued", "running", "done"), "after %s: %r" % (what, j))

    def tearDown(self):
        self.survived("the whole test")

    def worker_task(self, task_id):
        """(status, json) of GET /api/task/ID asked of the worker directly."""
        return http_json(self.T.bot_port, "GET", "/api/task/" + task_id, token=self.T.token)

    def assert_no_task(self, task_id, what):
        st, j = self.worker_task(task_id)
        self.assertEqual(st, 404, "after %s the worker knows task %s: %r" % (what, task_id, j))
        self.assertEqual(self.T.responses(task_id), [], what)


class HostileCases(HostileBase):
    """The cases run against both targets (no token)."""

    # ---- slow clients

    def slowloris_paths(self):
        return [self.T.prefix + "/status"] + (["/status"] if self.T.prefix else [])

    def test_slowloris_headers_a_byte_at_a_time(self):
        """Headers dribbled slower than the header timeout: 408 or a close, never served,
        cut off about header_timeout after the first byte."""
        ht = LIMITS["header_timeout"]
        for path in self.slowloris_paths():
            with self.subTest(path=path):
                head = ("GET %s HTTP/1.1\r\nHost: localhost\r\nUser-Agent: slow\r\nX-Pad: %s\r\n\r\n"
                        % (path, "a" * 40)).encode()
                t0 = time.monotonic()
                got, closed = b"", False
                with connect(self.T.port, timeout=ht + 6) as s:
                    for i in range(len(head)):
                        try:
                            s.send(head[i:i + 1])
                        except OSError:
                            closed = True
                            break
                        r, _, _ = select.select([s], [], [], 0.25)
                        if r:
                            try:
                                b = s.recv(65536)
                            except OSError:
                                b = b""
                            got += b
                            closed = not b
                            break
                        if time.monotonic() - t0 > ht + 5:
                            break
                    if got and not closed:
                        got += exchange_rest(s, 3)
                elapsed = time.monotonic() - t0
                self.assertTrue(got or closed,
                                "a slowloris client was still connected after %.1f s" % elapsed)
                self.assertLess(elapsed, ht + 4, "cut off only after %.1f s" % elapsed)
                self.assertGreater(elapsed, ht * 0.7, "cut off too early (%.2f s)" % elapsed)
                if got:
                    self.assertRegex(got, rb"^HTTP/1\.1 408 ", got[:200])
                self.survived("slowloris on " + path)

    def test_slowloris_crowd_does_not_lock_out_clients(self):
        """More dribbling clients than max_connections: a real client still gets /status
        within a few header timeouts."""
        ht, n = LIMITS["header_timeout"], LIMITS["max_connections"] + 10
        socks = []
        for _ in range(n):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", self.T.port))
            socks.append(s)
        result = {}

        def client():
            time.sleep(0.3)
            t0 = time.monotonic()
            try:
                result["status"] = http_get(self.T.port, self.T.prefix + "/status",
                                            timeout=15)[0]
            except OSError as e:
                result["error"] = e
            result["elapsed"] = time.monotonic() - t0
        th = threading.Thread(target=client)
        th.start()
        served, line = 0, b"GET /status HTTP/1.1\r\nHost: localhost\r\nX-Slow: "
        deadline = time.monotonic() + 20
        sent = [0] * n
        try:
            while socks and time.monotonic() < deadline:
                for i, s in enumerate(socks):
                    if s is None:
                        continue
                    try:
                        b = line[sent[i]:sent[i] + 1] or b"a"
                        if s.send(b) == 1:
                            sent[i] += 1
                    except BlockingIOError:
                        pass
                    except OSError:
                        s.close()
                        socks[i] = None
                live = [s for s in socks if s is not None]
                if not live:
                    break
                r, _, _ = select.select(live, [], [], 0.25)
                for s in r:
                    try:
                        b = s.recv(65536)
                    except OSError:
                        b = b""
                    if b.startswith(b"HTTP/1.1 2"):
                        served += 1
                    i = socks.index(s)
                    s.close()
                    socks[i] = None
                if not th.is_alive() and time.monotonic() > deadline - 15:
                    break
        finally:
            for s in socks:
                if s is not None:
                    s.close()
            th.join(20)
        self.assertEqual(served, 0, "a slowloris client was served")
        self.assertEqual(result.get("status"), 200, result)
        self.assertLess(result["elapsed"], 4 * ht + 6, result)
        self.survived("%d slowloris clients" % n)

    def test_body_that_never_finishes(self):
        """A body announced and never completed: the connection is closed (or answered 408)
        after the timeout, and nothing is queued from it."""
        lim = max(LIMITS["header_timeout"], LIMITS["idle_timeout"])
        low = min(LIMITS["header_timeout"], LIMITS["idle_timeout"])
        path = (self.T.prefix + "/api/task").encode()
        cases = {
            "content-length": b"POST %s HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json"
                              b"\r\nContent-Length: 200\r\n\r\n{\"task_id\":\"NEVER-1\","
                              b"\"command\":\"" % path,
            "chunked": b"POST %s HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                       b"Transfer-Encoding: chunked\r\n\r\n" % path
                       + chunked(b'{"task_id":"NEVER-2","command":"abc"}')[:-5],
        }
        for name, data in cases.items():
            with self.subTest(framing=name):
                ex = exchange(self.T.port, data, timeout=lim + 6)
                self.assertTrue(ex.closed, "still open after %.1f s: %r" % (ex.elapsed, ex))
                self.assertLess(ex.elapsed, lim + 4, ex)
                self.assertGreater(ex.elapsed, low * 0.7, ex)
                # nginx buffers the body and answers 408 (or closes); through hive's
                # streaming proxy the worker's own idle timeout may fire first, and the
                # front door then answers 502 as the connection closes.
                ok = (408, 502) if self.T.prefix else (408,)
                for r in ex.responses:
                    self.assertIn(r.status, ok, ex)
                self.survived("a body that never finishes (%s)" % name)
        self.assert_no_task("NEVER-1", "unfinished bodies")
        self.assert_no_task("NEVER-2", "unfinished bodies")

    def test_thousand_idle_connections(self):
        """1,000 idle connections against max_connections 50: the process never holds more
        than its limit, refuses nobody (the rest wait in the backlog), survives, and serves
        /status to a new client once some of them close."""
        pid = self.T.pid
        base = socket_count(pid)
        socks = []
        try:
            for _ in range(1000):
                s = socket.socket()
                s.setblocking(False)
                err = s.connect_ex(("127.0.0.1", self.T.port))
                self.assertIn(err, (0, errno.EINPROGRESS, errno.EAGAIN), os.strerror(err))
                socks.append(s)
            peak = 0
            t_end = time.monotonic() + 1.5
            while time.monotonic() < t_end:
                n = socket_count(pid)
                self.assertIsNotNone(n, "the process died during the flood")
                peak = max(peak, n)
                time.sleep(0.1)
            self.assertIsNone(self.T.alive_problem())
            self.assertLessEqual(peak - base, LIMITS["max_connections"] + 4,
                                 "%d sockets open (%d before the flood)" % (peak, base))
            refused = [s for s in socks
                       if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == errno.ECONNREFUSED]
            self.assertEqual(len(refused), 0, "connections refused during the flood")
            # Most of them close; 40 stay, fewer than the limit.
            for s in socks[:-40]:
                s.close()
            socks = socks[-40:]
            t0 = time.monotonic()
            st, body = http_get(self.T.port, self.T.prefix + "/status", timeout=15)
            self.assertEqual(st, 200, body[:200])
            self.assertLess(time.monotonic() - t0, 12)
        finally:
            for s in socks:
                s.close()
        self.survived("1000 idle connections")

    # ---- sizes

    def test_oversized_request_line(self):
        """A request line over max_header: 414 (nginx) or 431 (SPEC's "headers too large"),
        as soon as the limit is passed, even if the line never ends."""
        n = LIMITS["max_header"] + 100
        cases = {"complete": ("GET %s/status?%s HTTP/1.1\r\nHost: localhost\r\n\r\n"
                              % (self.T.prefix, "q" * n)).encode(),
                 "never ends": ("GET %s/%s" % (self.T.prefix, "a" * (4 * n))).encode(),
                 "huge method": b"A" * (2 * n) + b" / HTTP/1.1\r\n\r\n"}
        for name, data in cases.items():
            with self.subTest(case=name):
                ex = exchange(self.T.port, data, timeout=LIMITS["header_timeout"] + 4, want=1)
                self.assertIn(ex.status, (414, 431) if name != "huge method"
                              else (400, 414, 431, 501), ex)
                self.survived("an oversized request line (%s)" % name)

    def test_oversized_headers(self):
        """Headers over max_header: 431, whether one big header, many small ones, or a
        head that never ends."""
        n = LIMITS["max_header"]
        path = self.T.prefix + "/status"
        cases = {"one big": "GET %s HTTP/1.1\r\nHost: localhost\r\nX-Big: %s\r\n\r\n" % (path, "b" * n),
                 "many small": "GET %s HTTP/1.1\r\nHost: localhost\r\n%s\r\n"
                               % (path, "".join("X-%d: y\r\n" % i for i in range(n // 6))),
                 "never ends": "GET %s HTTP/1.1\r\nHost: localhost\r\nX-Big: %s" % (path, "c" * 4 * n),
                 "big name": "GET %s HTTP/1.1\r\nHost: localhost\r\n%s: v\r\n\r\n" % (path, "N" * n)}
        for name, data in cases.items():
            with self.subTest(case=name):
                ex = exchange(self.T.port, data.encode(), timeout=LIMITS["header_timeout"] + 4,
                              want=1)
                self.assertEqual(ex.status, 431, ex)
                self.survived("oversized headers (%s)" % name)

    def test_oversized_body(self):
        """A body over max_body: 413, answered from the announced length without reading
        the body, with no 100 Continue; a chunked body is cut when it passes the limit."""
        big = LIMITS["max_body"] + 1
        path = (self.T.prefix + "/api/task").encode()
        head = (b"POST %s HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n" % path)
        with self.subTest(case="announced"):
            ex = exchange(self.T.port, head + b"Content-Length: %d\r\n\r\n" % big, want=1)
            self.assertEqual(ex.status, 413, ex)
            self.survived("an announced oversized body")
        with self.subTest(case="expect 100-continue"):
            ex = exchange(self.T.port, head + b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n"
                          % big, want=1)
            self.assertEqual(ex.status, 413, ex)
            self.assertNotIn(b"100 Continue", ex.raw)
            self.survived("an oversized body with Expect: 100-continue")
        with self.subTest(case="chunked"):
            body = json.dumps({"command": "x" * big, "task_id": "BIG-CHUNKED"}).encode()
            data = head + b"Transfer-Encoding: chunked\r\n\r\n" + chunked(body, 16384)
            ex = exchange(self.T.port, data, want=1, timeout=8)
            self.assertEqual(ex.status, 413, ex)
            self.assert_no_task("BIG-CHUNKED", "an oversized chunked body")
            self.survived("an oversized chunked body")
        with self.subTest(case="sent whole"):
            body = json.dumps({"command": "y" * big, "task_id": "BIG-WHOLE"}).encode()
            ex = exchange(self.T.port, post((self.T.prefix + "/api/task"), body), want=1,
                          timeout=8)
            self.assertEqual(ex.status, 413, ex)
            self.assert_no_task("BIG-WHOLE", "an oversized body")
            self.survived("an oversized body sent whole")

    # ---- WebSocket

    def ws_path(self):
        return self.T.prefix + "/ws"

    def check_ws(self, what, data, expected, alt=()):
        """Send DATA on a fresh WebSocket; the server must close with EXPECTED (or end the
        connection, when "drop" is in ALT)."""
        out = ws_attack(self.T.port, self.ws_path(), data)
        ok = out == ("close", expected) or out[0] in alt
        self.assertTrue(ok, "%s: expected close %s, got %r" % (what, expected, out))
        self.survived(what)

    def test_ws_message_too_big_1009(self):
        big = LIMITS["max_message"] + 1
        msg = json.dumps({"type": "task", "command": "z" * big, "task_id": "WS-BIG"})
        cases = {"one frame": frame(1, msg),
                 "announced 2^62 bytes": frame(1, b"{}", length=1 << 62)[:14] + b"x" * 16,
                 "fragments": [frame(1, msg[:big // 2], fin=False),
                               frame(0, msg[big // 2:], fin=True)],
                 "many small fragments": [frame(1, "x" * 60000, fin=False)]
                 + [frame(0, "x" * 60000, fin=False) for _ in range(big // 60000 + 1)]}
        for name, data in cases.items():
            with self.subTest(case=name):
                self.check_ws("a WebSocket message over max_message (%s)" % name, data, 1009)
        # Still sending when the server gives up: the close frame must reach the client
        # every time, not be lost to a reset (through a tunnel too).
        huge = frame(1, json.dumps({"type": "task", "command": "w" * 4 * big}))
        outcomes = [ws_attack(self.T.port, self.ws_path(), huge) for _ in range(20)]
        self.assertEqual([o for o in outcomes if o != ("close", 1009)], [],
                         "20 messages 4x over max_message")
        self.survived("20 messages 4x over max_message")
        self.assert_no_task("WS-BIG", "oversized WebSocket messages")

    def test_ws_invalid_utf8_1007(self):
        cases = {"0xff": b'{"type":"ping","x":"\xff"}',
                 "overlong": b'{"type":"ping","x":"\xc0\xaf"}',
                 "surrogate": b'{"type":"ping","x":"\xed\xa0\x80"}',
                 "over U+10FFFF": b'{"type":"ping","x":"\xf4\x90\x80\x80"}',
                 "truncated at the end": b'{"type":"ping"}\xe2\x82'}
        for name, payload in cases.items():
            with self.subTest(case=name):
                self.check_ws("invalid UTF-8 (%s)" % name, frame(1, payload), 1007)
        with self.subTest(case="split over fragments"):
            self.check_ws("invalid UTF-8 over fragments",
                          [frame(1, b'{"type":"ping","x":"\xe2\x82', fin=False),
                           frame(0, b'\x28"}')], 1007)
        with self.subTest(case="close reason"):
            self.check_ws("invalid UTF-8 in a close reason",
                          frame(8, struct.pack(">H", 1000) + b"\xff\xfe"), 1007)

    def test_ws_binary_1003(self):
        self.check_ws("a binary frame", frame(2, b"\x00\x01\x02binary"), 1003)
        self.check_ws("a fragmented binary message",
                      [frame(2, b"\x00\x01", fin=False), frame(0, b"\x02", fin=True)], 1003)

    def test_ws_unmasked_client_frames_1002(self):
        for name, data in {"text": frame(1, '{"type":"ping"}', mask=False),
                           "ping": frame(9, b"hi", mask=False),
                           "close": frame(8, struct.pack(">H", 1000), mask=False)}.items():
            with self.subTest(case=name):
                self.check_ws("an unmasked %s frame" % name, data, 1002)

    def test_ws_close_with_bad_code_1002(self):
        for code in (0, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535):
            with self.subTest(code=code):
                self.check_ws("a close frame with code %d" % code,
                              frame(8, struct.pack(">H", code)), 1002)
        with self.subTest(code="one byte"):
            self.check_ws("a close frame with a 1-byte payload", frame(8, b"\x03"), 1002)

    def test_ws_other_protocol_violations_1002(self):
        """Framing errors RFC 6455 says fail the connection: a 1002 close, or a drop."""
        cases = {"RSV1 without an extension": frame(1, '{"type":"ping"}', rsv=4),
                 "reserved opcode 3": frame(3, b"x"),
                 "reserved control opcode 11": frame(11, b"x"),
                 "control frame over 125 bytes": frame(9, b"p" * 126),
                 "fragmented ping": frame(9, b"p", fin=False),
                 "continuation with nothing to continue": frame(0, b"x"),
                 "new text inside a fragmented one": [frame(1, b'{"ty', fin=False),
                                                      frame(1, b'pe":"ping"}')],
                 "64-bit length with the top bit set": bytes([0x81, 0xFF])
                 + struct.pack(">Q", 1 << 63) + os.urandom(4)}
        for name, data in cases.items():
            with self.subTest(case=name):
                self.check_ws(name, data, 1002, alt=("drop",))

    def test_ws_foreign_origin_403(self):
        """An upgrade whose Origin is not the server's own (nor allowed) is refused 403;
        look-alike origins too. The server's own origin is the control."""
        port = self.T.port
        own = "http://127.0.0.1:%d" % port
        s, f, status, _ = ws_open(port, self.ws_path(), ["Origin: " + own])
        s.close()
        self.assertEqual(status, 101, "the server's own origin was refused")
        origins = ["http://evil.example", "null", "http://127.0.0.1:%d.evil.example" % port,
                   "http://127.0.0.1:%d@evil.example" % port, "http://evil.example/%s" % own,
                   "http://127.0.0.1:%d" % (port + 1 if port < 65535 else port - 1),
                   "file://", "chrome-extension://abcdef"]
        for origin in origins:
            with self.subTest(origin=origin):
                s, f, status, _ = ws_open(port, self.ws_path(), ["Origin: " + origin])
                s.close()
                self.assertEqual(status, 403, origin)
                self.survived("an upgrade from Origin %s" % origin)
        with self.subTest(origin="DNS rebinding: Host and Origin both evil.example"):
            s, f, status, _ = ws_open(port, self.ws_path(),
                                      ["Host: evil.example:%d" % port,
                                       "Origin: http://evil.example:%d" % port])
            s.close()
            self.assertEqual(status, 403, "a page on evil.example (DNS rebound to 127.0.0.1) "
                                          "opened a WebSocket")
            self.survived("a DNS-rebinding upgrade")

    # ---- ids, JSON

    def bad_ids(self):
        return ["..", ".", "../x", "../../" + MARK, "../" * 12 + "tmp/" + MARK,
                "/tmp/" + MARK, "a/b", MARK + "/..",
                "..\\" + MARK, "a\u0000b", MARK + "\u0000.md", "\u0000", "x" * 300,
                "%2e%2e%2f" + MARK, "a b", "\n" + MARK]

    def test_task_ids_that_try_to_escape(self):
        """Ids with `..`, `/`, NUL and 300 characters: 400 over HTTP, an error over
        WebSocket, 400/404 when asked for, and never a file anywhere."""
        path = self.T.prefix + "/api/task"
        for i, tid in enumerate(self.bad_ids()):
            with self.subTest(task_id=tid[:40], door="http"):
                st, j = http_json(self.T.port, "POST", path,
                                  {"command": "escape %d" % i, "task_id": tid})
                self.assertEqual((st, j), (400, {"detail": "invalid task_id"}))
                self.survived("POST with task_id %r" % tid[:40])
        s, f, status, _ = ws_open(self.T.port, self.ws_path())
        with s:
            self.assertEqual(status, 101)
            for tid in self.bad_ids():
                with self.subTest(task_id=tid[:40], door="websocket"):
                    s.sendall(frame(1, json.dumps({"type": "task", "command": "ws escape",
                                                   "task_id": tid})))
                    out = ws_outcome(s, f)
                    self.assertEqual(out[0], "text", out)
                    self.assertEqual(out[1].get("type"), "error", out)
        self.survived("WebSocket tasks with bad ids")
        for raw in ["..%2f..%2f" + MARK, "%2e%2e", "a%00b", "x" * 300, "..%5c" + MARK,
                    "%2F" + MARK, "../../status"]:
            with self.subTest(get=raw[:40]):
                ex = exchange(self.T.port, ("GET %s/api/task/%s HTTP/1.1\r\nHost: localhost\r\n"
                                            "Connection: close\r\n\r\n" % (self.T.prefix, raw)
                                            ).encode(), want=1)
                self.assertIn(ex.status, (400, 404), ex)
                if ex.status == 404 and ex.first.body:
                    self.assertNotIn(b"state", ex.first.body)
                self.survived("GET /api/task/%s" % raw[:40])
        bad = stray_files(self.T.root, self.T.work_dir, self.T.bot,
                          supervisor=self.T.kind == "supervisor")
        self.assertEqual(bad, [])
        for top, dnames, fnames in os.walk(self.T.root):
            for name in dnames + fnames:
                self.assertNotIn(MARK, name, os.path.join(top, name))

    def test_non_object_json(self):
        """JSON that is not an object: 400 with a detail over HTTP; an error message over
        WebSocket, and the connection stays usable."""
        bodies = ["[]", "[1, 2]", '[{"command": "in an array"}]', '"command"', "42", "null",
                  "true", "1e999", '"\\u0000"']
        for body in bodies:
            with self.subTest(http=body):
                st, j = http_json(self.T.port, "POST", self.T.prefix + "/api/task", body)
                self.assertEqual(st, 400, j)
                self.assertIsInstance(j, dict)
                self.assertIsInstance(j.get("detail"), str)
                self.survived("POST of %s" % body)
        s, f, status, _ = ws_open(self.T.port, self.ws_path())
        with s:
            self.assertEqual(status, 101)
            for body in bodies:
                with self.subTest(ws=body):
                    s.sendall(frame(1, body))
                    out = ws_outcome(s, f)
                    self.assertEqual(out[0], "text", out)
                    self.assertEqual(out[1].get("type"), "error", out)
            s.sendall(frame(1, '{"type":"ping"}'))
            out = ws_outcome(s, f)
            self.assertEqual(out[0], "text", out)
            self.assertEqual(out[1].get("type"), "pong", out)
        self.survived("non-object WebSocket messages")

    def test_deeply_nested_json(self):
        """100,000 levels of nesting: 400 (or a WebSocket error), no crash."""
        n = 100000
        bodies = {"open brackets": "[" * n,
                  "balanced brackets": "[" * n + "]" * n,
                  "open objects": '{"a":' * (n // 5 * 2),
                  "in a field": '{"command":"x","task_id":"DEEP-1","priority":' + "[" * n
                  + "]" * n + "}"}
        for name, body in bodies.items():
            with self.subTest(http=name):
                ex = exchange(self.T.port, post(self.T.prefix + "/api/task", body), want=1,
                              timeout=10)
                self.assertEqual(ex.status, 400, ex)
                self.survived("POST of deeply nested JSON (%s)" % name)
        self.assert_no_task("DEEP-1", "deeply nested JSON")
        s, f, status, _ = ws_open(self.T.port, self.ws_path())
        with s:
            self.assertEqual(status, 101)
            for name, body in bodies.items():
                with self.subTest(ws=name):
                    s.sendall(frame(1, body))
                    out = ws_outcome(s, f, timeout=10)
                    self.assertEqual(out[0], "text", out)
                    self.assertEqual(out[1].get("type"), "error", out)
        self.survived("deeply nested WebSocket messages")
        self.assert_no_task("DEEP-1", "deeply nested JSON")

    # ---- methods and request targets

    def test_unknown_methods(self):
        """Methods the server does not know: 400, 405 (with Allow) or 501, as nginx; a
        CONNECT never opens a tunnel."""
        path = self.T.prefix + "/status"
        for method in ("BREW", "PROPFIND", "brew", "G3T", "GET\x01", "M-SEARCH", "TRACE",
                       "PATCH", "X" * 100):
            with self.subTest(method=method[:20]):
                ex = exchange(self.T.port, ("%s %s HTTP/1.1\r\nHost: localhost\r\nConnection: close"
                                            "\r\n\r\n" % (method, path)).encode("latin-1"),
                              want=1)
                self.assertIn(ex.status, (400, 405, 501), ex)
                if ex.status == 405:
                    self.assertIsNotNone(ex.first.header("allow"), ex)
                self.survived("method %r" % method[:20])
        with self.subTest(method="CONNECT"):
            ex = exchange(self.T.port, b"CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: 127.0.0.1:22"
                                       b"\r\n\r\nSSH-2.0-x\r\n", want=1)
            self.assertIsNotNone(ex.status, ex)
            self.assertTrue(400 <= ex.status < 500 or ex.status == 501, ex)
            self.assertNotIn(b"SSH-", ex.raw)
            self.survived("CONNECT")

    def test_absolute_form_targets(self):
        """`GET http://host/path` is served as /path (RFC 7230 §5.3.2, as nginx), whatever
        the host and port in it: never forwarded anywhere else."""
        p = self.T.prefix + "/status"
        for target in ("http://127.0.0.1" + p, "http://127.0.0.1:%d%s" % (self.T.port, p),
                       "HTTP://EVIL.EXAMPLE:22" + p, "http://127.0.0.1:1" + p):
            with self.subTest(target=target):
                ex = exchange(self.T.port, ("GET %s HTTP/1.1\r\nHost: localhost\r\nConnection: close"
                                            "\r\n\r\n" % target).encode(), want=1)
                self.assertEqual(ex.status, 200, ex)
                self.assertIn(b'"status"', ex.first.body)
                self.survived("absolute-form " + target)
        # (/ is the page now, SPEC §10: an unknown path shows the 404 of this server.)
        with self.subTest(target="http://127.0.0.1:1/nope"):
            ex = exchange(self.T.port, b"GET http://127.0.0.1:1/nope HTTP/1.1\r\nHost: 127.0.0.1:1"
                                       b"\r\nConnection: close\r\n\r\n", want=1)
            self.assertEqual(ex.status, 404, ex)
            self.survived("absolute-form to another port")

    def test_asterisk_targets(self):
        """`OPTIONS *` gets an answer about the server (200/204) or is refused as nginx does
        (400), or 405/501; `*` with any other method is 400."""
        for method, ok in (("OPTIONS", (200, 204, 400, 405, 501)), ("GET", (400,)),
                           ("POST", (400,)), ("DELETE", (400,))):
            with self.subTest(method=method):
                ex = exchange(self.T.port, ("%s * HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n"
                                            "Connection: close\r\n\r\n" % method).encode(),
                              want=1)
                self.assertIn(ex.status, ok, ex)
                self.survived("%s *" % method)

    # ---- framing

    def test_duplicate_content_length(self):
        """Two Content-Length headers (equal or not), a list, or garbage: 400, and the
        body is never taken as a task."""
        path = self.T.prefix + "/api/task"
        for i, (lengths, note) in enumerate(((("%d", "%d"), "equal"),
                                             (("%d", "5"), "different"),
                                             (("%d, %d",), "a list"),
                                             (("+%d",), "a sign"),
                                             (("%d ",), "trailing junk x"),
                                             (("0x%x",), "hex"),
                                             (("99999999999999999999999",), "overflow"))):
            body = json.dumps({"command": "dup", "task_id": "DUP-CL-%d" % i}).encode()
            extra = b""
            for v in lengths:
                v = v.replace("%d", str(len(body))).replace("%x", "%x" % len(body))
                if note == "trailing junk x":
                    v = v + "x"
                extra += b"Content-Length: %s\r\n" % v.encode()
            data = (b"POST %s HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n%s\r\n"
                    % (path.encode(), extra)) + body
            with self.subTest(content_length=note):
                ex = exchange(self.T.port, data, want=1)
                self.assertEqual(ex.status, 400, ex)
                self.survived("Content-Length %s" % note)
                self.assert_no_task("DUP-CL-%d" % i, "Content-Length %s" % note)

    def test_transfer_encoding_with_content_length(self):
        """Transfer-Encoding and Content-Length together, in either order, or a
        Transfer-Encoding that is not plainly `chunked`: 400 (or 501 for an unknown
        coding), and the body is never taken as a task. `Transfer-Encoding : chunked`
        (space before the colon) is 400 (RFC 7230 §3.2.4; nginx)."""
        path = self.T.prefix + "/api/task"
        for i, (headers, ok) in enumerate((
                (["Content-Length: %d", "Transfer-Encoding: chunked"], (400,)),
                (["Transfer-Encoding: chunked", "Content-Length: %d"], (400,)),
                (["Transfer-Encoding: chunked", "Content-Length: 0"], (400,)),
                (["Transfer-Encoding : chunked"], (400,)),
                (["Transfer-Encoding : chunked", "Content-Length: %d"], (400,)),
                (["Content-Length : %d", "Transfer-Encoding: chunked"], (400,)),
                (["Transfer-Encoding: xchunked"], (400, 501)),
                (["Transfer-Encoding: chunked, identity"], (400, 501)),
                (["Transfer-Encoding: chunked", "Transfer-Encoding: identity"], (400, 501)),
                (["Transfer-Encoding:\x0bchunked"], (400, 501)))):
            tid = "TE-CL-%d" % i
            body = chunked(json.dumps({"command": "te", "task_id": tid}).encode())
            hdrs = "".join(h.replace("%d", str(len(body))) + "\r\n" for h in headers)
            data = ("POST %s HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n%s\r\n"
                    % (path, hdrs)).encode("latin-1") + body
            with self.subTest(headers=headers):
                ex = exchange(self.T.port, data, want=1, timeout=LIMITS["idle_timeout"] + 3)
                self.assertIn(ex.status, ok, ex)
                self.survived("framing %r" % headers)
                self.assert_no_task(tid, "framing %r" % headers)


def exchange_rest(s, timeout):
    """Whatever S still receives within TIMEOUT seconds, until it closes."""
    s.settimeout(timeout)
    out = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            b = s.recv(65536)
        except OSError:
            break
        if not b:
            break
        out += b
    return out


class TokenCases(HostileBase):
    """With a token set: every request without it or with a wrong one is 401; /health
    stays open. The target is started with token=TOKEN."""

    TOKEN = "hostile-s3cret-token"

    def paths(self):
        p = self.T.prefix
        return [p + "/status", p + "/api/task/" + SENTINEL, p + "/api/task/NOPE"] + (
            ["/status", "/bots/NOPE/status"] if p else [])

    def test_missing_or_wrong_token_401(self):
        tok = self.TOKEN
        auths = {"none": [], "empty": ["Authorization:"], "scheme only": ["Authorization: Bearer"],
                 "wrong": ["Authorization: Bearer wrong"],
                 "prefix": ["Authorization: Bearer " + tok[:-1]],
                 "longer": ["Authorization: Bearer " + tok + "x"],
                 "basic": ["Authorization: Basic " + base64.b64encode(
                     ("user:" + tok).encode()).decode()],
                 "token as scheme": ["Authorization: " + tok],
                 "NUL inside": ["Authorization: Bearer " + tok[:4] + "\x00" + tok[4:]],
                 "other header": ["X-Token: " + tok],
                 "cookie": ["Cookie: token=" + tok]}
        for path in self.paths():
            for name, headers in auths.items():
                with self.subTest(path=path, auth=name):
                    ex = exchange(self.T.port, ("GET %s HTTP/1.1\r\nHost: localhost\r\n%sConnection: "
                                                "close\r\n\r\n" % (path, "".join(
                                                    h + "\r\n" for h in headers))
                                                ).encode("latin-1"), want=1)
                    self.assertIn(ex.status, (400, 401) if name == "NUL inside" else (401,), ex)
            self.survived("requests for %s without the token" % path)
        for q in ("?token=wrong", "?token=", "?token=" + tok + "x", "?x=" + tok):
            with self.subTest(query=q):
                ex = exchange(self.T.port, ("GET %s/status%s HTTP/1.1\r\nHost: localhost\r\nConnection: "
                                            "close\r\n\r\n" % (self.T.prefix, q)).encode(),
                              want=1)
                self.assertEqual(ex.status, 401, ex)
        self.survived("requests with a wrong ?token=")

    def test_post_without_token_queues_nothing(self):
        path = self.T.prefix + "/api/task"
        for name, extra in {"none": b"", "wrong": b"Authorization: Bearer nope\r\n"}.items():
            with self.subTest(auth=name):
                ex = exchange(self.T.port, post(path, {"command": "no token",
                                                       "task_id": "NOTOKEN-" + name}, extra),
                              want=1)
                self.assertEqual(ex.status, 401, ex)
                self.survived("POST without the token (%s)" % name)
                self.assert_no_task("NOTOKEN-" + name, "POST without the token")
        for name in ("pause", "resume", "interrupt"):
            with self.subTest(control=name):
                ex = exchange(self.T.port, post(self.T.prefix + "/api/" + name, {}), want=1)
                self.assertEqual(ex.status, 401, ex)
        self.assertFalse(os.path.exists(os.path.join(self.T.work_dir, ".deia", "hive",
                                                     "controls", self.T.bot + "-PAUSE")))
        self.survived("controls without the token")

    def test_websocket_without_token_401(self):
        for q, headers in (("", []), ("?token=wrong", []), ("", ["Authorization: Bearer no"]),
                           ("?token=" + self.TOKEN + "x", [])):
            with self.subTest(query=q, headers=headers):
                s, f, status, _ = ws_open(self.T.port, self.T.prefix + "/ws" + q, headers)
                s.close()
                self.assertEqual(status, 401)
        s, f, status, _ = ws_open(self.T.port, self.T.prefix + "/ws?token=" + self.TOKEN)
        s.close()
        self.assertEqual(status, 101, "the right token was refused")
        self.survived("WebSocket upgrades without the token")

    def test_health_stays_open(self):
        """GET /health of the attacked process (and of the worker's own port) needs no
        token, and a wrong one does not hurt."""
        for port in sorted({self.T.port, self.T.bot_port}):
            with self.subTest(port=port):
                st, body = http_get(port, "/health")
                self.assertEqual(st, 200, body)
                st, body = http_get(port, "/health", headers={"Authorization": "Bearer no"})
                self.assertEqual(st, 200, body)
        self.survived("/health without the token")

    def test_absolute_form_does_not_skip_the_token(self):
        for target in ("http://127.0.0.1%s/status" % self.T.prefix,
                       "http://127.0.0.1/health/..%s/status" % self.T.prefix,
                       "%s/health/../status" % self.T.prefix,
                       "%s//status" % self.T.prefix, "%s/status?/health" % self.T.prefix,
                       "%s/status#/health" % self.T.prefix):
            with self.subTest(target=target):
                ex = exchange(self.T.port, ("GET %s HTTP/1.1\r\nHost: localhost\r\nConnection: close"
                                            "\r\n\r\n" % target).encode(), want=1)
                self.assertIn(ex.status, (200, 400, 401, 404), ex)
                if ex.status != 401:   # /health may answer; the status never
                    self.assertNotIn(b'"uptime_seconds"', ex.first.body, ex)
        self.survived("path tricks without the token")
