"""The event stream (SPEC §8) end to end, on the worker and on the supervisor:
every task from every door (file, HTTP, WebSocket, through the proxy) told in
order on GET /api/events, resume by cursor (after 200 tasks, across a SIGKILL
of the worker and of the supervisor), resync for a cursor older than what is
kept, filters, subscribers that never read (dropped, never slowing the task
or the others), /status fed by the channel, and `hive events`.

Run: HIVE_BUILD_DIR=build /usr/bin/python3 tests/e2e/test_events.py
"""

import asyncio
import http.client
import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import shutil
import tempfile
import time
import unittest

import websockets

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hive_e2e import (BOT, TASK_TIMEOUT, WORKER_BIN, WorkerTestCase, curl, main,  # noqa: E402
                      proc_status, run_async, wait_for)
from test_supervisor_front import Hive, worker_log_dump  # noqa: E402

TASK_END = ("task_completed", "task_failed", "task_cancelled")
# Live only, no id: a task's output, and on the supervisor's merge the output
# a worker's channel had no room for.
LIVE = ("task_output", "task_output_dropped")


class SSE:
    """A reader of one event stream (raw socket + the WHATWG parsing rules),
    in a thread: events land in a queue as (id, type, data-dict)."""

    def __init__(self, port, path="/api/events", headers=(), rcvbuf=0):
        # RCVBUF: a receive buffer that big, for a reader of megabytes of
        # output on a busy machine: the server drops a subscriber a bounded
        # amount behind, and a stalled test thread must not be one.
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            try:
                self.sock.setsockopt(socket.SOL_SOCKET, 33, rcvbuf)  # SO_RCVBUFFORCE (root)
            except OSError:
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(10)
        self.sock.connect(("127.0.0.1", port))
        req = "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n" % path
        for h in headers:
            req += h + "\r\n"
        self.sock.sendall((req + "\r\n").encode())
        self.f = self.sock.makefile("rb")
        self.status = int(self.f.readline().split()[1])
        self.headers = {}
        while True:
            line = self.f.readline().decode().strip()
            if not line:
                break
            k, v = line.split(":", 1)
            self.headers[k.strip().lower()] = v.strip()
        self.events = queue.Queue()
        self.comments = 0
        self.closed = threading.Event()
        if self.status == 200:
            self.sock.settimeout(None)
            threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        ev_id, ev_type, data = "", None, []
        try:
            for raw in self.f:
                line = raw.decode().rstrip("\n").rstrip("\r")
                if line == "":
                    if data:
                        self.events.put((ev_id, ev_type or "message", json.loads("\n".join(data))))
                    ev_type, data = None, []
                elif line.startswith(":"):
                    self.comments += 1
                else:
                    name, _, value = line.partition(":")
                    value = value[1:] if value.startswith(" ") else value
                    if name == "id":
                        ev_id = value
                    elif name == "event":
                        ev_type = value
                    elif name == "data":
                        data.append(value)
        except (OSError, ValueError):
            pass
        self.closed.set()

    def take(self, n, timeout=TASK_TIMEOUT):
        """The next N events (fails if they do not come)."""
        out, deadline = [], time.time() + timeout
        while len(out) < n:
            left = deadline - time.time()
            if left <= 0:
                raise AssertionError("got %d of %d events: %s" % (len(out), n, out[-5:]))
            try:
                out.append(self.events.get(timeout=left))
            except queue.Empty:
                pass
        return out

    def take_until(self, pred, timeout=TASK_TIMEOUT):
        """Events up to and including the first for which PRED is true."""
        out, deadline = [], time.time() + timeout
        while True:
            left = deadline - time.time()
            if left <= 0:
                raise AssertionError("no matching event%s; got %s" % (
                    " (the server ended the stream)" if self.closed.is_set() else "",
                    [(i, t, dict(d, content=d["content"][:40]) if "content" in d else d)
                     for i, t, d in out[-5:]]))
            try:
                e = self.events.get(timeout=left)
            except queue.Empty:
                continue
            out.append(e)
            if pred(e):
                return out

    def quiet(self, seconds=0.5):
        """The events that arrive within SECONDS (for 'nothing more')."""
        out, end = [], time.time() + seconds
        while time.time() < end:
            try:
                out.append(self.events.get(timeout=max(0.01, end - time.time())))
            except queue.Empty:
                pass
        return out

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


def parse_sse_text(text):
    """Events of a whole SSE text (WHATWG rules, enough for hive's streams):
    a list of (id, type, data-dict)."""
    out, ev_id, ev_type, data = [], "", None, []
    for line in text.replace("\r\n", "\n").split("\n"):
        if not line:
            if data:
                out.append((ev_id, ev_type or "message", json.loads("\n".join(data))))
            ev_type, data = None, []
            continue
        if line.startswith(":"):
            continue
        k, _, v = line.partition(":")
        v = v[1:] if v.startswith(" ") else v
        if k == "id":
            ev_id = v
        elif k == "event":
            ev_type = v
        elif k == "data":
            data.append(v)
    return out


def stored(events):
    """The events that carry a seq (all but the LIVE ones), as seq ints."""
    return [int(i) for i, t, d in events if t not in LIVE]


def check_lives(testcase, events, task_ids):
    """Each task's events in EVENTS: received → started → output* → end, each
    stored one with id == seq, consecutive across the stream."""
    seqs = stored(events)
    testcase.assertEqual(seqs, list(range(seqs[0], seqs[0] + len(seqs))), "seq gap or duplicate")
    for i, t, d in events:
        testcase.assertEqual(d["type"], t)
        testcase.assertEqual(d["bot_id"], BOT)
        if t == "task_output":
            testcase.assertNotIn("seq", d)  # live only: no id line of its own
        else:
            testcase.assertEqual(d["seq"], int(i))
    for tid in task_ids:
        mine = [t for i, t, d in events if d.get("task_id") == tid]
        testcase.assertGreaterEqual(len(mine), 3, (tid, mine))
        testcase.assertEqual(mine[0], "task_received", (tid, mine))
        testcase.assertEqual(mine[1], "task_started", (tid, mine))
        testcase.assertIn(mine[-1], TASK_END, (tid, mine))
        testcase.assertEqual(set(mine[2:-1]) - {"task_output"}, set(), (tid, mine))


class EventStreamTest(WorkerTestCase):

    def test_every_door_in_order(self):
        w = self.new_worker("--mode", "hybrid")
        s = SSE(w.port)
        self.assertEqual(s.status, 200)
        self.assertTrue(s.headers["content-type"].startswith("text/event-stream"))
        ids = [w.submit("via http")["task_id"]]
        w.write_task("from-file.md", "via the file queue")
        ids.append("from-file")

        async def ws_task():
            async with websockets.connect("ws://127.0.0.1:%d/ws" % w.port) as ws:
                await ws.send(json.dumps({"type": "task", "command": "via ws", "task_id": "WS-one"}))
                kinds = []
                while True:
                    m = json.loads(await asyncio.wait_for(ws.recv(), 20))
                    kinds.append(m["type"])
                    if m["type"] == "response":
                        return kinds
        kinds = run_async(ws_task())
        self.assertEqual(kinds[0], "ack")
        self.assertEqual(kinds[1], "started")
        self.assertEqual(kinds[-1], "response")
        ids.append("WS-one")
        ids.append(w.submit("MOCK-FAIL\nfails")["task_id"])
        got = []
        ends = 0
        while ends < 4:
            e = s.take(1)[0]
            got.append(e)
            ends += e[1] in TASK_END
        check_lives(self, got, ids)
        by = {d["task_id"]: d for i, t, d in got if t in TASK_END}
        self.assertEqual({d["task_id"]: d["source"] for d in by.values()},
                         {ids[0]: "http", "from-file": "file", "WS-one": "websocket",
                          ids[3]: "http"})
        self.assertEqual(by[ids[3]]["type"], "task_failed")
        self.assertFalse(by[ids[3]]["success"])
        self.assertEqual(by[ids[0]]["files_modified"], [])
        self.assertIn("via http", by[ids[0]]["output_excerpt"])
        self.assertTrue(by[ids[0]]["response_file"].endswith("-complete.md"))
        rec = [d for i, t, d in got if t == "task_received" and d["task_id"] == ids[0]][0]
        self.assertEqual(rec["position"], 1)
        self.assertEqual(rec["priority"], "P0")
        # The activity log keeps its own vocabulary (SPEC §2.3).
        act = [e["event_type"] for e in w.activity() if e.get("task_id") == ids[3]]
        self.assertEqual(act, ["task_received", "task_started", "task_failed"])
        s.close()

    def test_resume_after_200_tasks(self):
        w = self.new_worker("--mode", "websocket-only")
        s = SSE(w.port)
        w.submit("one")
        first = s.take_until(lambda e: e[1] in TASK_END)
        cursor = first[-1][0]
        s.close()
        ids = [w.submit("task %d" % i)["task_id"] for i in range(200)]
        w.wait_state(ids[-1], ("done",))
        s2 = SSE(w.port, headers=["Last-Event-ID: " + cursor])
        got = s2.take(600)  # replayed: no task_output (never stored)
        self.assertEqual(stored(got), list(range(int(cursor) + 1, int(cursor) + 601)))
        self.assertEqual(s2.quiet(0.5), [])
        # Then live, without a gap.
        w.submit("live")
        live = s2.take_until(lambda e: e[1] in TASK_END)
        self.assertEqual(stored(live)[0], int(cursor) + 601)
        s2.close()
        # ?since= does the same as the header.
        s3 = SSE(w.port, "/api/events?since=%d" % (int(cursor) + 597))
        self.assertEqual(stored(s3.take(6)), list(range(int(cursor) + 598, int(cursor) + 604)))
        s3.close()

    def test_resume_across_sigkill(self):
        w = self.new_worker("--mode", "websocket-only")
        s = SSE(w.port)
        w.submit("before")
        cursor = s.take_until(lambda e: e[1] in TASK_END)[-1][0]
        s.close()
        ids = [w.submit("t%d" % i)["task_id"] for i in range(20)]
        w.wait_state(ids[-1], ("done",))
        w.kill()
        w2 = self.restart(w, "--mode", "websocket-only")
        ids2 = [w2.submit("after %d" % i)["task_id"] for i in range(5)]
        w2.wait_state(ids2[-1], ("done",))
        s2 = SSE(w2.port, headers=["Last-Event-ID: " + cursor])
        got = s2.take(75)
        self.assertEqual(stored(got), list(range(int(cursor) + 1, int(cursor) + 76)))
        self.assertEqual([d["task_id"] for i, t, d in got if t == "task_received"], ids + ids2)
        self.assertEqual(s2.quiet(0.5), [])
        s2.close()

    def test_old_cursor_resyncs(self):
        logs = os.path.join(self.tmp, ".deia", "bot-logs")
        os.makedirs(logs)
        with open(os.path.join(logs, BOT + "-events.jsonl"), "w") as f:
            for seq in range(500, 510):
                f.write(json.dumps({"type": "bot_paused", "bot_id": BOT, "seq": seq,
                                    "timestamp": "2026-01-01T00:00:00Z"}) + "\n")
            f.write('{"type":"bot_paused","se')  # a line cut by a crash
        w = self.new_worker("--mode", "websocket-only")
        s = SSE(w.port, headers=["Last-Event-ID: 10"])
        got = s.take(11)
        self.assertEqual(got[0][1], "resync")
        self.assertEqual(got[0][0], "")
        self.assertEqual(stored(got[1:]), list(range(500, 510)))
        s.close()
        # The cut line is gone; numbering continues after 509.
        s = SSE(w.port)
        w.submit("x")
        self.assertEqual(stored(s.take_until(lambda e: e[1] in TASK_END)), [510, 511, 512])
        s.close()
        # A cursor that is current gets no resync; one from the future does.
        s = SSE(w.port, "/api/events?since=512")
        self.assertEqual(s.quiet(0.3), [])
        s.close()
        s = SSE(w.port, "/api/events?since=99999")
        self.assertEqual(s.take(1)[0][1], "resync")
        s.close()
        s = SSE(w.port, "/api/events?since=banana")
        self.assertEqual(s.status, 400)

    def test_filters_and_pause_events(self):
        w = self.new_worker("--mode", "websocket-only")
        only = SSE(w.port, "/api/events?type=task_completed,bot_paused")
        other = SSE(w.port, "/api/events?bot=BOT-OTHER")
        mine = SSE(w.port, "/api/events?bot=" + BOT + "&type=task_started")
        tid = w.submit("x")["task_id"]
        # Done first: a pause asked while the task still runs is told before
        # the task's end (its end waits for the answer's commit), as it should
        # be; this test is about filters, so it keeps the order fixed (a
        # slow ASan run of CI saw bot_paused first).
        w.wait_state(tid, "done")
        self.assertEqual(w.post("/api/pause").status, 200)
        self.assertEqual(w.post("/api/resume").status, 200)
        got = only.take(2)
        self.assertEqual([t for i, t, d in got], ["task_completed", "bot_paused"])
        self.assertEqual(got[0][2]["task_id"], tid)
        self.assertEqual([t for i, t, d in mine.take(1)], ["task_started"])
        self.assertEqual(other.quiet(0.5), [])
        everything = SSE(w.port, "/api/events?since=0")
        types = [t for i, t, d in everything.take(5)]
        self.assertEqual(types, ["task_received", "task_started", "task_completed",
                                 "bot_paused", "bot_resumed"])
        for s in (only, other, mine, everything):
            s.close()

    def test_stream_outlives_idle_timeout_with_keepalives(self):
        w = self.new_worker("--mode", "websocket-only", "--idle-timeout", "1")
        s = SSE(w.port)
        time.sleep(16)  # the 15 s keepalive comment, 16 idle timeouts later
        self.assertGreaterEqual(s.comments, 2)  # the opening comment and a keepalive
        self.assertFalse(s.closed.is_set())
        w.submit("late")
        self.assertEqual(s.take_until(lambda e: e[1] in TASK_END)[-1][1], "task_completed")
        s.close()

    def test_readers_that_never_read_are_dropped(self):
        w = self.new_worker("--mode", "websocket-only", "--adapter-type", "cli",
                            "--adapter-cmd", "sh", "-c", "head -c 300000 /dev/zero | tr '\\0' a")
        reader = SSE(w.port)
        w.submit("warm")
        reader.take_until(lambda e: e[1] in TASK_END)
        rss0 = rss_kb(w.proc.pid)
        sleeping = sleepers(w.port, 50)
        time.sleep(0.5)
        ids = [w.submit("t%d" % i)["task_id"] for i in range(40)]
        got = reader.take_until(lambda e: e[1] in TASK_END and e[2]["task_id"] == ids[-1],
                                timeout=120)
        ends = [d["task_id"] for i, t, d in got if t in TASK_END]
        self.assertEqual(ends, ids)  # the reader missed nothing
        rss1 = rss_kb(w.proc.pid)
        # 50 × 40 × 300 KB would be 600 MB queued; dropped at 1 MiB each.
        # (ASan keeps freed memory in quarantine: RSS says nothing there.)
        if not asan_build():
            self.assertLess(rss1, rss0 * 4 + 80 * 1024, (rss0, rss1))
        dropped = closed_by_server(sleeping)
        # The log names each dropped client with its port (several local
        # clients share the address).
        named = re.findall(r"event stream of (\S+) dropped: \d+ bytes behind", w.log_text())
        self.assertEqual(sorted(named),
                         sorted("127.0.0.1:%d" % c.getsockname()[1] for c in sleeping))
        for c in sleeping:
            c.close()
        self.assertEqual(dropped, 50)
        reader.close()

    def test_open_streams_end_with_the_worker(self):
        w = self.new_worker("--mode", "websocket-only")
        streams = [SSE(w.port) for _ in range(3)]
        w.submit("x")
        streams[0].take_until(lambda e: e[1] in TASK_END)
        code, killed = w.stop()
        self.assertEqual((code, killed), (0, False))
        for s in streams:
            self.assertTrue(s.closed.wait(5), "stream not ended")
        self.assertEqual(w.sanitizer_reports(), [])


class HiveEventsTest(unittest.TestCase):
    """The supervisor's merged stream, each test on a hive of its own."""

    maxDiff = 4000

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="hive-e2e-events-")
        self.hive = Hive(self.tmp, [{"id": "BOT-A"}, {"id": "BOT-B"}])
        self.hive.start()

    def tearDown(self):
        code, killed = self.hive.stop()
        reports = self.hive.sanitizer_reports()
        if not getattr(self._outcome, "success", True) or killed or reports:
            sys.stderr.write("---- hive up log ----\n%s\n%s\n"
                             % (self.hive.log_text()[-6000:], worker_log_dump(self.hive)))
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.assertFalse(killed, "hive up did not stop on SIGTERM")
        self.assertEqual(reports, [])

    def post_task(self, bot, command, direct=False, **fields):
        body = dict(fields, command=command)
        if direct:
            r = curl("http://127.0.0.1:%d/api/task" % self.hive.bot_ports[bot], "POST",
                     json.dumps(body))
        else:
            r = self.hive.post("/bots/%s/api/task" % bot, body)
        self.assertEqual(r.status, 202, r.body)
        return r.json()["task_id"]

    def check_merge(self, events):
        """hive ids consecutive; each bot's stored events with seqs consecutive."""
        ids = stored(events)
        self.assertEqual(ids, list(range(ids[0], ids[0] + len(ids))), "hive_seq gap/duplicate")
        per_bot = {}
        for i, t, d in events:
            if t in LIVE:
                self.assertNotIn("hive_seq", d)
                continue
            self.assertEqual(d["hive_seq"], int(i))
            if t != "bot_state":
                per_bot.setdefault(d["bot_id"], []).append(d["seq"])
        for bot, seqs in per_bot.items():
            self.assertEqual(seqs, list(range(seqs[0], seqs[0] + len(seqs))), bot)
        return per_bot

    def check_order(self, events, tids):
        """Each task of TIDS: received → started → output* → its end."""
        for tid in tids:
            mine = [t for i, t, d in events if d.get("task_id") == tid]
            self.assertGreaterEqual(len(mine), 3, (tid, mine))
            self.assertEqual(mine[:2], ["task_received", "task_started"], (tid, mine))
            self.assertIn(mine[-1], TASK_END, (tid, mine))
            self.assertEqual(set(mine[2:-1]) - set(LIVE), set(), (tid, mine))

    def test_stream_clients_curl_and_http_client(self):
        """The supervisor's stream read by the clients people use: `curl -N`
        (with ?since=0, a time-bounded run) and python's http.client reading
        the chunked answer as it comes; both see each task's events in order
        with the same ids, and http.client resumes with Last-Event-ID."""
        tids = [self.post_task("BOT-A", "one"), self.post_task("BOT-B", "two")]
        conn = http.client.HTTPConnection("127.0.0.1", self.hive.port, timeout=20)
        conn.request("GET", "/api/events?since=0")
        resp = conn.getresponse()
        self.assertEqual(resp.status, 200)
        self.assertTrue(resp.getheader("Content-Type").startswith("text/event-stream"))
        curl_out = os.path.join(self.tmp, "curl.out")
        with open(curl_out, "wb") as out:
            cp = subprocess.Popen(["curl", "-sN", "--max-time", "6",
                                   "http://127.0.0.1:%d/api/events?since=0" % self.hive.port],
                                  stdout=out, stderr=subprocess.DEVNULL)
        tids.append(self.post_task("BOT-A", "three"))
        text = ""
        deadline = time.monotonic() + TASK_TIMEOUT
        while time.monotonic() < deadline:
            text += resp.read1(65536).decode()
            got = parse_sse_text(text[:text.rfind("\n\n") + 2])
            if sum(1 for i, t, d in got if t in TASK_END) >= 3:
                break
        self.check_order(got, tids)
        self.check_merge(got)
        resp.close()
        conn.close()
        cp.wait(timeout=20)
        with open(curl_out) as f:
            by_curl = parse_sse_text(f.read())
        self.check_order(by_curl, tids)
        self.check_merge(by_curl)
        ids = [i for i, t, d in got if t != "task_output"]  # output: no id of its own
        self.assertEqual([i for i, t, d in by_curl if t != "task_output"][:len(ids)], ids)
        # Resume after the first task's end: exactly what followed it.
        cut = next(i for i, t, d in got if t in TASK_END)
        conn = http.client.HTTPConnection("127.0.0.1", self.hive.port, timeout=20)
        conn.request("GET", "/api/events", headers={"Last-Event-ID": cut})
        resp = conn.getresponse()
        text = ""
        want = [i for i in ids if int(i) > int(cut)]
        def ids_in(text):
            return [i for i, t, d in parse_sse_text(text[:text.rfind("\n\n") + 2])
                    if t != "task_output"]
        while len(ids_in(text)) < len(want):
            text += resp.read1(65536).decode()
        again = ids_in(text)
        self.assertEqual(again[:len(want)], want)
        resp.close()
        conn.close()

    def test_every_door_through_the_supervisor(self):
        s = SSE(self.hive.port)
        ids = {"BOT-A": [], "BOT-B": []}
        ids["BOT-A"].append(self.post_task("BOT-A", "proxied http"))
        ids["BOT-B"].append(self.post_task("BOT-B", "direct http", direct=True))
        queue_dir = os.path.join(self.tmp, ".deia", "hive", "tasks", "BOT-A")
        with open(os.path.join(queue_dir, ".tmp-file-task"), "w") as f:
            f.write("from the file queue")
        os.rename(os.path.join(queue_dir, ".tmp-file-task"),
                  os.path.join(queue_dir, "file-task.md"))
        ids["BOT-A"].append("file-task")

        async def ws_task():
            uri = "ws://127.0.0.1:%d/bots/BOT-B/ws" % self.hive.port
            async with websockets.connect(uri) as ws:
                await ws.send(json.dumps({"type": "task", "command": "ws", "task_id": "WS-B1"}))
                while json.loads(await asyncio.wait_for(ws.recv(), 20))["type"] != "response":
                    pass
        run_async(ws_task())
        ids["BOT-B"].append("WS-B1")
        got, ends = [], 0
        while ends < 4:
            e = s.take(1)[0]
            got.append(e)
            ends += e[1] in TASK_END
        self.check_merge(got)
        for bot, tids in ids.items():
            for tid in tids:
                mine = [t for i, t, d in got if d.get("task_id") == tid and d["bot_id"] == bot]
                self.assertEqual(mine[:2], ["task_received", "task_started"], (tid, mine))
                self.assertEqual(mine[-1], "task_completed", (tid, mine))
                self.assertEqual(set(mine[2:-1]) - {"task_output"}, set())
        # /status carries what the workers sent up the channel.
        st = {b["id"]: b for b in self.hive.status()["bots"]}
        wait_for(lambda: self.hive.status()["bots"][0]["tasks_processed"] == 2, 10,
                 what="BOT-A's count")
        self.assertEqual(st["BOT-B"]["queue"], {"realtime": 0, "file": 0})
        self.assertIn("current_task", st["BOT-B"])
        # Filters: one bot.
        only = SSE(self.hive.port, "/api/events?since=0&bot=BOT-B&type=task_completed")
        self.assertEqual([d["task_id"] for i, t, d in only.take(2)], ids["BOT-B"])
        self.assertEqual(only.quiet(0.3), [])
        only.close()
        s.close()

    def test_resume_across_kills(self):
        s = SSE(self.hive.port, "/api/events?since=0")
        first = s.take_until(lambda e: e[1] == "bot_state" and e[2]["state"] == "running"
                             and e[2]["bot_id"] == "BOT-B")
        cursor = first[-1][0]
        s.close()
        # 200 tasks while nobody listens.
        tids = [self.post_task("BOT-A", "t%d" % i, direct=True) for i in range(200)]
        self.hive.wait_task("BOT-A", tids[-1])
        # A worker killed: restarted, numbering continues.
        pid = self.hive.bot("BOT-A")["pid"]
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: self.hive.bot("BOT-A")["state"] == "running"
                 and self.hive.bot("BOT-A")["pid"] != pid, 20, what="BOT-A back")
        tids.append(self.post_task("BOT-A", "after the worker's kill", direct=True))
        self.hive.wait_task("BOT-A", tids[-1])
        s2 = SSE(self.hive.port, headers=["Last-Event-ID: " + cursor])
        got = s2.take_until(lambda e: e[1] == "task_completed" and e[2]["task_id"] == tids[-1])
        self.assertEqual(int(got[0][0]), int(cursor) + 1)
        self.check_merge(got)
        done = [d["task_id"] for i, t, d in got if t == "task_completed"]
        self.assertEqual(done, tids)
        states = [d["state"] for i, t, d in got if t == "bot_state"]
        self.assertTrue({"starting", "backoff"} & set(states), states)  # the restart
        self.assertIn("running", states)
        cursor2 = got[-1][0]
        s2.close()
        # The supervisor killed (its workers die with it), tasks dropped while
        # it is down, then it is started again: the cursor still resumes.
        workers = [b["pid"] for b in self.hive.status()["bots"]]
        self.hive.proc.kill()
        self.hive.proc.wait(10)
        wait_for(lambda: not any(is_zombie_free(p) for p in workers), 20, what="workers gone")
        queue_dir = os.path.join(self.tmp, ".deia", "hive", "tasks", "BOT-B")
        for i in range(3):
            with open(os.path.join(queue_dir, "down-%d.md" % i), "w") as f:
                f.write("dropped while the hive was down %d" % i)
        self.hive.start()
        for i in range(3):
            self.hive.wait_task("BOT-B", "down-%d" % i)
        s3 = SSE(self.hive.port, headers=["Last-Event-ID: " + cursor2])
        got3 = s3.take_until(lambda e: e[1] == "task_completed" and e[2]["task_id"] == "down-2")
        self.assertEqual(int(got3[0][0]), int(cursor2) + 1)
        merged = self.check_merge(got + got3)
        self.assertEqual(sorted(d["task_id"] for i, t, d in got3 if t == "task_completed"),
                         ["down-0", "down-1", "down-2"])
        self.assertIn("BOT-B", merged)
        s3.close()

    def test_stopped_supervisor_blocks_no_worker(self):
        s = SSE(self.hive.port, "/api/events?since=0")
        cursor = s.take_until(lambda e: e[1] == "bot_state" and e[2]["state"] == "running"
                              and e[2]["bot_id"] == "BOT-B")[-1][0]
        s.close()
        # Ctrl-Z of the supervisor: the channel fills, the worker goes on.
        self.hive.proc.send_signal(signal.SIGSTOP)
        try:
            bot_url = "http://127.0.0.1:%d" % self.hive.bot_ports["BOT-A"]
            tids = []
            for i in range(300):
                r = curl(bot_url + "/api/task", "POST",
                         json.dumps({"command": "while stopped %d " % i + "x" * 400}))
                self.assertEqual(r.status, 202, r.body)
                tids.append(r.json()["task_id"])
            wait_for(lambda: curl(bot_url + "/api/task/" + tids[-1]).json().get("state")
                     == "done", 60, what="the last task done while the supervisor is stopped")
        finally:
            self.hive.proc.send_signal(signal.SIGCONT)
        # Then everything reaches the merge, once and in order.
        s2 = SSE(self.hive.port, headers=["Last-Event-ID: " + cursor])
        got = s2.take_until(lambda e: e[1] == "task_completed" and e[2]["task_id"] == tids[-1],
                            timeout=60)
        self.check_merge(got)
        self.assertEqual([d["task_id"] for i, t, d in got if t == "task_completed"], tids)
        s2.close()
        with open(os.path.join(self.tmp, ".deia", "hive", "logs", "BOT-A.log")) as f:
            log = f.read()
        self.assertIn("events wait in the events file", log)  # it did fall behind
        self.assertIn("channel caught up", log)

    def test_hive_events_cli(self):
        # A stream still open when the hive stops (tearDown): ended cleanly,
        # nothing leaked (the ASan build checks).
        self.open_stream = SSE(self.hive.port)
        self.post_task("BOT-A", "for the cli")
        wait_for(lambda: len(SSE_lines(self.hive)) >= 1, 10, what="events stored")
        r = self.hive.cli("events", "BOT-A", "--since", "0", "--count", "5")
        self.assertEqual(r.returncode, 0, r.stderr)
        lines = r.stdout.splitlines()
        self.assertEqual(len(lines), 5, r.stdout)
        self.assertTrue(all(" BOT-A " in ln for ln in lines), r.stdout)
        self.assertIn("bot_state starting", lines[0])
        self.assertTrue(any("task_completed" in ln and " ok " in ln for ln in lines), r.stdout)
        st = self.hive.cli("status")
        self.assertEqual(st.returncode, 0, st.stderr)
        row = [ln for ln in st.stdout.splitlines() if ln.startswith("BOT-A ")][0]
        self.assertEqual(row.split()[6], "1", st.stdout)  # TASKS, from the channel
        bad = self.hive.cli("events", "--since", "x")
        self.assertEqual(bad.returncode, 2)


def SSE_lines(hive):
    path = os.path.join(hive.work_dir, ".deia", "hive", "events.jsonl")
    try:
        with open(path) as f:
            return [ln for ln in f if '"task_completed"' in ln]
    except FileNotFoundError:
        return []


def is_zombie_free(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def asan_build():
    with open(WORKER_BIN, "rb") as f:
        return b"__asan_init" in f.read()


def rss_kb(pid):
    return proc_status(pid, "VmRSS", 0)


def sleepers(port, n):
    """N clients of PORT's GET /api/events (4 KiB receive buffers) that never read."""
    socks = []
    for _ in range(n):
        c = socket.socket()
        c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        c.connect(("127.0.0.1", port))
        c.sendall(b"GET /api/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        socks.append(c)
    return socks


def closed_by_server(socks):
    """How many of SOCKS the server closed (read to the end within 10 s each)."""
    closed = 0
    for c in socks:
        c.settimeout(10)
        try:
            while c.recv(1 << 20):
                pass
            closed += 1
        except ConnectionResetError:
            closed += 1
        except socket.timeout:
            pass
    return closed


if __name__ == "__main__":
    main()
