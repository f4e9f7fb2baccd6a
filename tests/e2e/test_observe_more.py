"""More of SPEC §8 end to end, on real binaries and loopback ports.

- SupervisorSlowSubscriberTest: 50 raw-socket clients (tiny SO_RCVBUF) of the
  supervisor's merged GET /api/events never read while two cli bots print
  400 KB per task: the test_events.SSE reader gets every stored event with no
  hive_seq gap, every task is done, the supervisor drops the sleepers (1 MiB
  behind; hive_event_subscribers via curl, sockets closed) and its RSS stays
  bounded.
- WorkerTimelineAtScaleTest: 10,000 tasks on one worker (WebSocket client with
  a window, http.client keep-alive, file queue, cancels), then every
  GET /api/timeline filter and pagination field, the /api/bot/<id>/timeline
  alias and its 400s, read with http.client and compared with a model of what
  was submitted; all still there after a clean restart and after SIGKILL.

Run: HIVE_BUILD_DIR=build /usr/bin/python3 tests/e2e/test_observe_more.py
"""

import asyncio
import datetime
import http.client
import json
import os
import re
import sys
import tempfile
import threading
import time
import unittest
import urllib.parse

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import websockets  # noqa: E402

from hive_e2e import (BOT, Worker, WorkerTestCase, proc_status, run_async,  # noqa: E402
                      wait_for)
import test_events  # noqa: E402
from test_events import SSE, TASK_END, asan_build, closed_by_server, rss_kb, sleepers  # noqa: E402
from test_observe import check_page, metric_sum, parse_metrics  # noqa: E402
from test_supervisor_front import Hive, stop_class_hive  # noqa: E402

SSEHUB_MAX_PENDING = 1 << 20   # common/ssehub.h: how far behind a subscriber may fall
OUTPUT_BYTES = 400000          # each task of the slow-subscriber test prints this much


class SupervisorSlowSubscriberTest(unittest.TestCase):
    """Fifty clients of the supervisor's /api/events that never read."""

    maxDiff = 4000
    BOTS = ["BOT-A", "BOT-B"]
    TASKS_PER_BOT = 25
    SLEEPERS = 50

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="hive-e2e-observe-more-")
        cmd = "yes aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa | head -c %d" % OUTPUT_BYTES
        adapter = "{type: cli, command: [/bin/sh, -c, '%s']}" % cmd
        self.hive = Hive(self.tmp, [{"id": b, "adapter": adapter} for b in self.BOTS])
        self.hive.start()
        self.sockets = []

    def tearDown(self):
        for s in self.sockets:
            s.close()
        stop_class_hive(self.hive, self.tmp, show=not getattr(self._outcome, "success", True))

    check_merge = test_events.HiveEventsTest.check_merge
    check_order = test_events.HiveEventsTest.check_order

    def subscribers(self):
        r = self.hive.get("/metrics")
        self.assertEqual(r.status, 200)
        return metric_sum(parse_metrics(r.body.decode()), "hive_event_subscribers")

    def submit(self, bot, command):
        r = self.hive.post("/bots/%s/api/task" % bot, {"command": command})
        self.assertEqual(r.status, 202, r)
        return r.json()["task_id"]

    def collect_ends(self, reader, want, timeout):
        """The reader's events until every task of WANT has ended."""
        got, ended = [], set()
        deadline = time.monotonic() + timeout
        while ended != want:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("%d of %d tasks ended on the reader's stream"
                                     % (len(ended), len(want)))
            e = reader.take(1, timeout=left)[0]
            got.append(e)
            if e[1] in TASK_END:
                ended.add((e[2]["bot_id"], e[2]["task_id"]))
        return got

    def test_sleepers_dropped_reader_and_tasks_unharmed(self):
        reader = SSE(self.hive.port)
        self.assertEqual(reader.status, 200)
        warm = self.submit("BOT-A", "warm up")
        self.collect_ends(reader, {("BOT-A", warm)}, 60)
        wait_for(lambda: self.subscribers() == 1 or None, 20, what="one subscriber")
        rss0 = rss_kb(self.hive.proc.pid)
        self.sockets += sleepers(self.hive.port, self.SLEEPERS)
        wait_for(lambda: self.subscribers() == self.SLEEPERS + 1 or None, 20,
                 what="%d subscribers" % (self.SLEEPERS + 1))
        ids = {b: [] for b in self.BOTS}
        for i in range(self.TASKS_PER_BOT):
            for b in self.BOTS:
                ids[b].append(self.submit(b, "%s task %d" % (b, i)))
        want = {(b, t) for b in self.BOTS for t in ids[b]}
        # 2 × 25 × 400 KB of output: some 20 MB per subscriber, 1 GB for
        # all 50 if the supervisor queued it.
        got = self.collect_ends(reader, want, 240)
        for b in self.BOTS:
            for t in ids[b]:
                st = self.hive.get("/bots/%s/api/task/%s" % (b, t)).json()
                self.assertEqual(st["state"], "done", (b, t, st))
        # The reader missed no stored event: hive_seq and each bot's seq run
        # without a gap, each task's life is whole ...
        self.check_merge(got)
        for b in self.BOTS:
            self.check_order([e for e in got if e[2].get("bot_id") == b], ids[b])
            ends = [d["task_id"] for i, t, d in got if t in TASK_END and d["bot_id"] == b]
            self.assertEqual(ends, ids[b])
        self.assertTrue(all(d["type"] == "task_completed" and d["success"]
                            for i, t, d in got if t in TASK_END))
        self.assertTrue(any(t == "task_output" for i, t, d in got), "no output streamed")
        # ... and what it saw is exactly what the supervisor stored meanwhile.
        mine = [(i, t, d.get("task_id")) for i, t, d in got if t not in test_events.LIVE]
        replay = SSE(self.hive.port, headers=["Last-Event-ID: %d" % (int(mine[0][0]) - 1)])
        again = [(i, t, d.get("task_id")) for i, t, d in replay.take(len(mine), 60)]
        self.assertEqual(again, mine)
        replay.close()
        # The sleepers were dropped by the supervisor (not by us hanging up).
        wait_for(lambda: self.subscribers() == 1 or None, 30, what="the sleepers dropped")
        peak = proc_status(self.hive.proc.pid, "VmHWM")  # the high-water mark
        if not asan_build():   # ASan's quarantine keeps freed memory: RSS says nothing there
            self.assertLess(peak, rss0 * 4 + 80 * 1024, (rss0, peak))
        log = self.hive.log_text()
        drops = re.findall(r"\[hive\] event stream of (\S+) dropped: (\d+) bytes behind", log)
        behind = [int(n) for peer, n in drops]
        self.assertEqual(len(behind), self.SLEEPERS, log[-3000:])
        # Each line names its client by address and port: one line per sleeper.
        self.assertEqual(sorted(peer for peer, n in drops),
                         sorted("127.0.0.1:%d" % c.getsockname()[1] for c in self.sockets))
        # Dropped once a bounded amount behind: what it had queued when it went
        # live (a few bytes) plus the hub's 1 MiB ceiling.
        self.assertTrue(all(n <= SSEHUB_MAX_PENDING + 64 * 1024 for n in behind), behind)
        self.assertEqual(closed_by_server(self.sockets), self.SLEEPERS)
        # The reader is still live.
        late = self.submit("BOT-B", "after the drops")
        self.collect_ends(reader, {("BOT-B", late)}, 60)
        reader.close()



def epoch(stamp):
    """Seconds of a "YYYY-MM-DDTHH:MM:SSZ" (or any ISO-8601 with a zone) time."""
    return datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


class Api:
    """GET on one keep-alive http.client connection, opened again when the
    server closed it between two requests."""

    def __init__(self, port):
        self.port = port
        self.conn = None

    def get(self, path):
        for attempt in (1, 2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
            try:
                self.conn.request("GET", path)
                r = self.conn.getresponse()
                body = r.read()
                return r.status, json.loads(body.decode("utf-8"))
            except (http.client.RemoteDisconnected, ConnectionError, BrokenPipeError):
                self.conn.close()
                self.conn = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def close(self):
        if self.conn is not None:
            self.conn.close()


class WorkerTimelineAtScaleTest(WorkerTestCase):
    """10,000 finished tasks on one worker, then every query of SPEC §8."""

    N_WS, N_HTTP, N_FILE, N_CANCEL = 8000, 1490, 500, 10
    TOTAL = N_WS + N_HTTP + N_FILE + N_CANCEL
    WINDOW = 200          # WebSocket tasks in flight

    def setUp(self):
        super().setUp()
        self.apis = []

    def tearDown(self):
        for a in self.apis:
            a.close()
        super().tearDown()

    def api(self, w):
        a = Api(w.port)
        self.apis.append(a)
        return a

    # --- making the entries

    def produce(self, w):
        """Run every task; the model {task_id: (source, success, error)} and
        each source's ids in the order they were queued."""
        model, order = {}, {"websocket": [], "http": [], "file": [], "cancel": []}
        # Cancelled while the bot is paused (started paused: nothing ran yet).
        for i in range(self.N_CANCEL):
            tid = "CX-%02d" % i
            w.submit("to be cancelled %d" % i, task_id=tid)
            r = w.post("/api/task/%s/cancel" % tid)
            self.assertEqual(r.status, 200, r)
            self.assertEqual(w.task(tid).json()["state"], "cancelled")
            model[tid] = ("http", False, "cancelled")
            order["cancel"].append(tid)
        self.assertEqual(w.post("/api/resume").status, 200)
        # The file tasks were dropped before the start; register them.
        for i in range(self.N_FILE):
            tid = "FL-%04d" % i
            model[tid] = ("file", i % 4 != 3, None if i % 4 != 3 else "mock failure requested")
            order["file"].append(tid)
        errors = []

        def http_client():
            try:
                c = http.client.HTTPConnection("127.0.0.1", w.port, timeout=60)
                for i in range(self.N_HTTP):
                    tid = "HT-%05d" % i
                    cmd = "http task %d%s" % (i, "\nMOCK-FAIL\n" if i % 5 == 4 else "")
                    c.request("POST", "/api/task", json.dumps({"command": cmd, "task_id": tid}),
                              {"Content-Type": "application/json"})
                    r = c.getresponse()
                    body = r.read()
                    if r.status != 202:
                        raise AssertionError("POST %s: %d %r" % (tid, r.status, body))
                    order["http"].append(tid)
                c.close()
            except BaseException as e:   # reported by the main thread
                errors.append(e)
        for i in range(self.N_HTTP):
            model["HT-%05d" % i] = ("http", i % 5 != 4,
                                    None if i % 5 != 4 else "mock failure requested")

        async def ws_client():
            async with websockets.connect(w.ws_url, max_size=None) as ws:
                sent = answered = 0
                results = {}

                async def sender():
                    nonlocal sent
                    while sent < self.N_WS:
                        if sent - answered >= self.WINDOW:
                            await asyncio.sleep(0.002)
                            continue
                        cmd = "ws task %d%s" % (sent, "\nMOCK-FAIL\n" if sent % 7 == 6 else "")
                        await ws.send(json.dumps({"type": "task", "command": cmd,
                                                  "task_id": "WS-%05d" % sent}))
                        sent += 1
                send = asyncio.ensure_future(sender())
                while answered < self.N_WS:
                    m = json.loads(await asyncio.wait_for(ws.recv(), 60))
                    if m["type"] == "ack":
                        order["websocket"].append(m["task_id"])
                    elif m["type"] == "response":
                        results[m["task_id"]] = m["success"]
                        answered += 1
                    elif m["type"] == "error":
                        raise AssertionError("WebSocket error: %r" % m)
                await send
                return results

        for i in range(self.N_WS):
            model["WS-%05d" % i] = ("websocket", i % 7 != 6,
                                    None if i % 7 != 6 else "mock failure requested")
        t = threading.Thread(target=http_client, daemon=True)
        t.start()
        results = run_async(ws_client(), 240)
        t.join(240)
        self.assertFalse(t.is_alive(), "the HTTP client did not finish")
        if errors:
            raise errors[0]
        self.assertEqual(results, {tid: m[1] for tid, m in model.items()
                                   if m[0] == "websocket"})
        self.assertEqual(order["websocket"], ["WS-%05d" % i for i in range(self.N_WS)])
        self.assertEqual(len(model), self.TOTAL)
        return model, order

    # --- reading it

    def page(self, api, query, path="/api/timeline"):
        status, body = api.get(path + ("?" + query if query else ""))
        self.assertEqual(status, 200, (query, body))
        self.assertRegex(body["timestamp"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
        return body

    def walk(self, api, query="", limit=1000, path="/api/timeline"):
        """Every entry of QUERY, page by page, each page checked."""
        out, offset, total = [], 0, None
        for _ in range(self.TOTAL // limit + 3):
            q = "limit=%d&offset=%d" % (limit, offset) + ("&" + query if query else "")
            page = self.page(api, q, path)
            if total is None:
                total = page["total_count"]
            check_page(self, page, total, limit, offset)
            self.assertEqual(page["bot_id"], BOT)
            out += page["entries"]
            if not page["has_more"]:
                self.assertEqual(len(out), total, query)
                return out
            offset += len(page["entries"])
        raise AssertionError("has_more never false for %r" % query)

    def ids(self, entries):
        return [e["task_id"] for e in entries]

    def check_entries(self, walk, model):
        self.assertEqual(len(walk), self.TOTAL)
        self.assertEqual(sorted(self.ids(walk)), sorted(model))
        stamp_re = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
        for e in walk:
            source, success, error = model[e["task_id"]]
            self.assertEqual((e["source"], e["success"], e["error"]), (source, success, error), e)
            self.assertEqual(e["bot_id"], BOT)
            self.assertEqual(e["files_modified"], [])
            self.assertRegex(e["timestamp"], stamp_re)
            self.assertIsInstance(e["duration_seconds"], (int, float))
            if error == "cancelled":
                self.assertEqual(e["response"], "")
            else:
                self.assertTrue(e["response"].startswith("# Mock response to %s\n" % e["task_id"]),
                                e)
        stamps = [e["timestamp"] for e in walk]
        self.assertEqual(stamps, sorted(stamps, reverse=True))   # newest first

    def test_ten_thousand_entries_every_query(self):
        # Paused from the start (so the cancels find their tasks queued), with
        # the file tasks already in the queue, oldest first by mtime.
        paths = Worker(self.tmp)   # only its paths: nothing started
        os.makedirs(os.path.dirname(paths.pause_file))
        open(paths.pause_file, "w").close()
        base = time.time() - 3600
        qdir = paths.queue_dir
        os.makedirs(qdir)
        for i in range(self.N_FILE):
            path = os.path.join(qdir, "FL-%04d.md" % i)
            with open(path, "w") as f:
                f.write("---\ntask_id: FL-%04d\n---\nfile task %d\n%s"
                        % (i, i, "MOCK-FAIL\n" if i % 4 == 3 else ""))
            os.utime(path, (base + i, base + i))
        w = self.new_worker("--mode", "hybrid", "--queue-max", "2000")
        model, order = self.produce(w)
        api = self.api(w)
        wait_for(lambda: self.page(api, "limit=1")["total_count"] == self.TOTAL or None, 240,
                 interval=0.2, what="%d timeline entries" % self.TOTAL)
        walk = self.walk(api)
        self.check_entries(walk, model)
        # Newest first is the reverse of the order they finished in: the
        # JSONL (append order), and each source's queue order.
        jsonl = w.path(".deia", "bot-logs", BOT + "-timeline.jsonl")
        with open(jsonl, encoding="utf-8") as f:
            appended = [json.loads(line)["task_id"] for line in f]
        self.assertEqual(self.ids(walk), appended[::-1])
        oldest_first = self.ids(walk)[::-1]
        for source, prefix in (("websocket", "WS-"), ("http", "HT-"), ("file", "FL-"),
                               ("cancel", "CX-")):
            self.assertEqual([t for t in oldest_first if t.startswith(prefix)], order[source],
                             source)
        self.check_pages(api, walk)
        self.check_filters(api, walk)
        self.check_times(api, walk)
        self.check_alias_and_400(api, walk)
        # Everything is still there after a clean stop and after SIGKILL.
        code, killed = w.stop()
        self.assertEqual((code, killed), (0, False))
        w2 = self.restart(w, "--mode", "hybrid")
        api2 = self.api(w2)
        self.assertEqual(self.walk(api2), walk)
        self.assertEqual(self.walk(api2, "source=file&success=false", limit=37),
                         [e for e in walk if e["source"] == "file" and not e["success"]])
        w2.kill()
        w3 = self.restart(w2, "--mode", "hybrid")
        api3 = self.api(w3)
        self.assertEqual(self.walk(api3), walk)
        self.assertEqual(self.walk(api3, "source=websocket&success=true", limit=999),
                         [e for e in walk if e["source"] == "websocket" and e["success"]])
        # And it goes on growing after them.
        last = w3.submit("after the restarts", task_id="AFTER-1")["task_id"]
        w3.wait_state(last, "done")
        top = self.page(api3, "limit=2")
        check_page(self, top, self.TOTAL + 1, 2, 0)
        self.assertEqual(self.ids(top["entries"]), [last, walk[0]["task_id"]])

    def check_pages(self, api, walk):
        total = len(walk)
        first = self.page(api, "")
        check_page(self, first, total, 100, 0)
        self.assertEqual(first["entries"], walk[:100])
        only_offset = self.page(api, "offset=%d" % (total - 50))
        check_page(self, only_offset, total, 100, total - 50)
        self.assertEqual(only_offset["entries"], walk[-50:])
        for limit, offset in ((1, 0), (1, 1), (1, total - 1), (1, total), (1000, 0),
                              (1000, 4321), (1000, total - 1000), (1000, total - 999),
                              (999, total - 500), (7, total - 4), (3, total), (5, total + 1),
                              (1000, total * 100), (50, 10 ** 12)):
            page = self.page(api, "limit=%d&offset=%d" % (limit, offset))
            check_page(self, page, total, limit, offset)
            self.assertEqual(page["entries"], walk[offset:offset + limit], (limit, offset))

    def check_filters(self, api, walk):
        sources = (None, "file", "http", "websocket")
        for source in sources:
            for success in (None, True, False):
                if source is None and success is None:
                    continue
                want = [e for e in walk if (source is None or e["source"] == source)
                        and (success is None or e["success"] == success)]
                self.assertTrue(want, (source, success))   # the mix has every class
                q = "&".join(x for x in (source and "source=" + source,
                                         success is not None and "success=%s"
                                         % str(success).lower()) if x)
                self.assertEqual(self.walk(api, q, limit=997), want, q)
                # A page from the middle, and one at the end, of the filtered list.
                mid = len(want) // 2
                page = self.page(api, "%s&limit=13&offset=%d" % (q, mid))
                check_page(self, page, len(want), 13, mid)
                self.assertEqual(page["entries"], want[mid:mid + 13], q)
                page = self.page(api, "%s&limit=10&offset=%d" % (q, len(want)))
                check_page(self, page, len(want), 10, len(want))

    def check_times(self, api, walk):
        stamps = sorted({e["timestamp"] for e in walk})
        self.assertGreaterEqual(len(stamps), 2, "every entry in one second")
        lo, hi = stamps[0], stamps[-1]
        mid = stamps[len(stamps) // 2]
        mid2 = stamps[(len(stamps) * 3) // 4]

        def expect(start=None, end=None, source=None, success=None):
            return [e for e in walk
                    if (start is None or epoch(e["timestamp"]) >= start)
                    and (end is None or epoch(e["timestamp"]) <= end)
                    and (source is None or e["source"] == source)
                    and (success is None or e["success"] == success)]

        def shifted(stamp, hours):
            """STAMP written in a zone HOURS east of UTC (the same instant)."""
            t = datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
            tz = datetime.timezone(datetime.timedelta(hours=hours))
            return t.astimezone(tz).isoformat()
        enc = urllib.parse.quote
        cases = [
            ("start_time=" + mid, expect(start=epoch(mid))),
            ("end_time=" + mid, expect(end=epoch(mid))),
            ("start_time=%s&end_time=%s" % (mid, mid), expect(epoch(mid), epoch(mid))),
            ("start_time=%s&end_time=%s" % (mid, mid2), expect(epoch(mid), epoch(mid2))),
            ("start_time=" + lo, walk),
            ("end_time=" + hi, walk),
            ("start_time=" + hi, expect(start=epoch(hi))),
            ("end_time=" + lo, expect(end=epoch(lo))),
            # A fraction: the entry's second counts as its time.
            ("start_time=" + mid.replace("Z", ".5Z"), expect(start=epoch(mid) + 0.5)),
            ("end_time=" + mid.replace("Z", ".5Z"), expect(end=epoch(mid) + 0.5)),
            # Other zones name the same instants.
            ("start_time=" + enc(shifted(mid, 2)), expect(start=epoch(mid))),
            ("end_time=" + enc(shifted(mid, -5)), expect(end=epoch(mid))),
            ("start_time=2000-01-01T00:00:00Z", walk),
            ("end_time=2000-01-01T00:00:00Z", []),
            ("start_time=2100-01-01T00:00:00Z", []),
            # Every filter at once.
            ("source=websocket&success=false&start_time=%s&end_time=%s" % (mid, mid2),
             expect(epoch(mid), epoch(mid2), "websocket", False)),
            ("source=http&success=true&start_time=" + mid, expect(epoch(mid), None, "http", True)),
            ("source=file&end_time=" + mid2, expect(None, epoch(mid2), "file")),
        ]
        for q, want in cases:
            self.assertEqual(self.ids(self.walk(api, q, limit=1000)), self.ids(want), q)
        q, want = cases[3]
        page = self.page(api, q + "&limit=5&offset=%d" % max(0, len(want) - 2))
        check_page(self, page, len(want), 5, max(0, len(want) - 2))
        self.assertEqual(page["entries"], want[max(0, len(want) - 2):])

    def check_alias_and_400(self, api, walk):
        alias = "/api/bot/%s/timeline" % BOT
        for q in ("", "limit=1000", "limit=1000&offset=9000", "source=file&limit=7&offset=3",
                  "success=false&limit=1000", "start_time=%s" % walk[len(walk) // 2]["timestamp"],
                  "offset=%d" % (len(walk) + 5)):
            a, b = self.page(api, q), self.page(api, q, alias)
            a.pop("timestamp")
            b.pop("timestamp")
            self.assertEqual(b, a, q)
        self.assertEqual(api.get("/api/bot/BOT-OTHER/timeline")[0], 404)
        bad = ["limit=0", "limit=1001", "limit=", "limit=-5", "limit=1e3", "limit=10.5",
               "limit=abc", "offset=-1", "offset=", "offset=x", "offset=1.5",
               "source=ftp", "source=", "source=HTTP,file", "success=maybe", "success=",
               "start_time=yesterday", "start_time=", "end_time=2026-13-01T00:00:00Z",
               "end_time=2026-02-30T00:00:00Z", "start_time=2026-12-03T25:00:00Z",
               "start_time=2026-12-03T10:00:00Z&end_time=2026-12-03T09:59:59Z",
               "source=file&success=true&limit=1001", "limit=1000&offset=-3"]
        for q in bad:
            for path in ("/api/timeline", alias):
                status, body = api.get(path + "?" + q)
                self.assertEqual(status, 400, (path, q, body))
                self.assertEqual(set(body), {"detail"}, (q, body))
                self.assertIsInstance(body["detail"], str)
        # The connection still serves after them.
        check_page(self, self.page(api, "limit=1000&offset=%d" % (len(walk) - 1)),
                   len(walk), 1000, len(walk) - 1)


if __name__ == "__main__":
    unittest.main(verbosity=2)
