"""A stand-in for the supervisor's API, for the unit-level test of the page
only (tests/browser/pages.mjs `unit`): it serves the page from pages/ the way
pages/embed.cmake inlines it, a /status of two bots, and an event stream
exactly as SPEC §8 words it (id: cursor, event: type, data: JSON; resync),
with events it makes up from the controls it is sent. It records every
request, so the test can check what the page asked for. The real programs are
tested by tests/e2e/test_pages.py's other classes.

Usage: python3 fake_hive.py SOURCE_DIR  (prints "listening PORT")
"""

import json
import queue
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SRC = sys.argv[1] if len(sys.argv) > 1 else "."
BOTS = ["BOT-A", "BOT-B"]
lock = threading.Lock()
log = []             # every request: method, path, content type, last-event-id
subscribers = []     # queues of the open event streams
seq = {"n": 0, "hive": 0, "bots": {b: 0 for b in BOTS}}
state = {b: {"state": "running", "pid": 1000 + i, "restarts": 0} for i, b in enumerate(BOTS)}


def page():
    with open(SRC + "/pages/index.html") as f:
        html = f.read()
    with open(SRC + "/pages/hive.css") as f:
        css = f.read()
    with open(SRC + "/pages/hive.js") as f:
        js = f.read()
    html = html.replace('<link rel="stylesheet" href="hive.css">', "<style>" + css + "</style>")
    return html.replace('<script src="hive.js"></script>', "<script>" + js + "</script>")


def now():
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())


def emit(type_, bot, **fields):
    """Number an event as SPEC §8 does and send it to every stream."""
    with lock:
        seq["n"] += 1
        ev = dict(type=type_, bot_id=bot, timestamp=now(), **fields)
        if type_ == "bot_state":
            seq["hive"] += 1
            ev["hive_seq"] = seq["hive"]
        elif type_ not in ("task_output", "task_output_dropped", "resync"):
            seq["bots"][bot] += 1
            ev["seq"] = seq["bots"][bot]
        cursor = "c%d" % seq["n"]
        for q in subscribers:
            q.put((cursor, type_, ev))


def run_task(bot, tid):
    emit("task_received", bot, task_id=tid, source="http", priority="P0", position=1)
    time.sleep(0.1)
    emit("task_started", bot, task_id=tid, source="http", started_at=now())
    emit("task_output", bot, task_id=tid, source="http", content="first <b>line</b>\n")
    time.sleep(0.3)
    emit("task_output_dropped", bot, task_id=tid, source="http", dropped_events=2,
         dropped_bytes=1234)
    emit("task_output", bot, task_id=tid, source="http", content="second line\n")
    emit("task_completed", bot, task_id=tid, source="http", success=True, duration_seconds=0.4,
         response_file="x.md", error=None, files_modified=[], output_excerpt="first line")


def restart(bot):
    state[bot]["pid"] += 100
    state[bot]["restarts"] += 1
    for s in ("backoff", "starting", "running"):
        state[bot]["state"] = s
        emit("bot_state", bot, state=s, pid=state[bot]["pid"], reason=None,
             restarts=state[bot]["restarts"])
        time.sleep(0.2)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def send(self, code, body, ctype="application/json"):
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def record(self):
        with lock:
            log.append({"method": self.command, "path": self.path,
                        "type": self.headers.get("Content-Type"),
                        "last_event_id": self.headers.get("Last-Event-ID")})

    def do_GET(self):
        self.record()
        path = self.path.split("?")[0]
        if path == "/" or (path.startswith("/bots/") and path.count("/") == 3 and path.endswith("/")):
            return self.send(200, page(), "text/html; charset=utf-8")  # the dashboard, a bot page
        if path == "/status":
            bots = [dict(id=b, port=9000 + i, url="http://127.0.0.1:%d" % (9000 + i),
                         proxy_url="/bots/%s/" % b, uptime_seconds=5, reason=None,
                         last_exit=None, **state[b]) for i, b in enumerate(BOTS)]
            return self.send(200, {"hive": {"name": "demo", "pid": 1, "version": "0",
                                            "uptime_seconds": 1, "listen": "127.0.0.1:0",
                                            "bots_total": 2, "bots_running": 2}, "bots": bots})
        if path.startswith("/bots/") and path.endswith("/status"):
            bot = path.split("/")[2]
            return self.send(200, {"bot_id": bot, "status": "idle", "tasks_processed": 3,
                                   "tasks_failed": 1, "current_task": None,
                                   "queue": {"realtime": 0, "file": 0}, "pid": 1, "mode": "hybrid"})
        if path == "/api/timeline" or path.endswith("/api/timeline"):
            return self.send(200, {"bot_id": None, "total_count": 1, "entries_count": 1,
                                   "offset": 0, "limit": 50, "has_more": False, "entries": [
                                       {"task_id": "OLD-1", "bot_id": "BOT-A", "source": "file",
                                        "timestamp": "2026-12-03T10:00:00Z", "success": True,
                                        "response": "old output", "files_modified": [],
                                        "duration_seconds": 1.5, "error": None}]})
        if path == "/api/events":
            return self.stream()
        if path.startswith("/bots/") and path.endswith("/api/events"):
            return self.stream(path.split("/")[2])  # a bot's own stream
        if path == "/_fake/log":
            with lock:
                return self.send(200, log)
        self.send(404, {"detail": "Not Found"})

    def stream(self, bot=None):
        q = queue.Queue()
        q.bot = bot
        with lock:
            subscribers.append(q)
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()
        try:
            self.wfile.write(b": hello\n\n")
            self.wfile.flush()
            while True:
                item = q.get()
                if item is None:
                    break
                cursor, type_, ev = item
                if q.bot and (ev.get("bot_id") != q.bot or type_ == "bot_state"):
                    continue
                head = "event: %s\n" % type_ if type_ == "resync" else "id: %s\nevent: %s\n" % (cursor, type_)
                self.wfile.write((head + "data: %s\n\n" % json.dumps(ev)).encode())
                self.wfile.flush()
        except OSError:
            pass
        finally:
            with lock:
                subscribers.remove(q)
        self.close_connection = True

    def do_POST(self):
        self.record()
        n = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(n) or b"{}")
        parts = self.path.split("/")
        if self.path == "/_fake/drop":          # close every stream: the page must resume
            with lock:
                for q in subscribers:
                    q.put(None)
            return self.send(200, {})
        if self.path == "/_fake/resync":
            emit("resync", "")
            return self.send(200, {})
        if self.path.startswith("/bots/") and self.path.endswith("/api/task"):
            tid = body.get("task_id") or "HTTP-%08x" % seq["n"]
            threading.Thread(target=run_task, args=(parts[2], tid), daemon=True).start()
            return self.send(202, {"status": "queued", "task_id": tid, "position": 1})
        if self.path.startswith("/bots/") and parts[-1] in ("pause", "resume"):
            if parts[-1] == "pause":  # as a bot that paused itself says why (SPEC §12)
                emit("bot_paused", parts[2], reason="budget: $1.00 of $1.00 used today")
            else:
                emit("bot_resumed", parts[2])
            return self.send(200, {"status": parts[-1] + "d"})
        if self.path.startswith("/api/bots/") and parts[-1] == "restart":
            threading.Thread(target=restart, args=(parts[3],), daemon=True).start()
            return self.send(202, {"status": "accepted"})
        self.send(200, {"status": "ok"})


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print("listening %d" % server.server_address[1], flush=True)
    server.serve_forever()
