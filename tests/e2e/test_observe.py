"""End-to-end tests of what hive shows of itself (SPEC.md §8 timeline, §9
metrics): the worker's and the supervisor's GET /api/timeline (every filter
and pagination field, the seed's /api/bot/<id>/timeline alias, 400s), the
WebSocket timeline /ws/bot/<id>/timeline (subscribe, initial_entries,
update, ping, errors), entries surviving restarts and re-appended at
recovery, and GET /metrics on both programs checked by Prometheus' own
`promtool check metrics`, compared with /status and the timeline, and
scraped by a real Prometheus queried through its HTTP API.

Pagination at a million entries is the unit suite's (check_timeline); here
a few hundred real mock tasks run through every door.
"""

import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import websockets  # noqa: E402

from hive_e2e import (WorkerTestCase, curl, run_async, wait_for, ws_frame,  # noqa: E402
                      ws_raw_handshake, ws_read_frame, ws_recv_json, ws_recv_until)
from test_supervisor_front import HIVE_BIN, Hive, free_ports  # noqa: E402

PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
ENTRY_KEYS = {"task_id", "bot_id", "source", "timestamp", "success", "response",
              "files_modified", "duration_seconds", "error"}
PAGE_KEYS = {"bot_id", "total_count", "entries_count", "offset", "limit", "has_more",
             "entries", "timestamp"}


def promtool_check(text):
    """promtool check metrics on TEXT: (ok, its output)."""
    p = subprocess.run([PROMTOOL, "check", "metrics"], input=text.encode(),
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
    return p.returncode == 0, p.stdout.decode()


def parse_metrics(text):
    """{(name, frozenset(labels.items())): value} of an exposition."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        series, value = line.rsplit(" ", 1)
        labels = {}
        if "{" in series:
            name, rest = series.split("{", 1)
            for part in rest.rstrip("}").split(","):
                k, v = part.split("=", 1)
                labels[k] = json.loads(v)
        else:
            name = series
        out[(name, frozenset(labels.items()))] = float(value)
    return out


def metric_sum(metrics, name, **match):
    return sum(v for (n, labels), v in metrics.items()
               if n == name and all(dict(labels).get(k) == x for k, x in match.items()))


def check_page(test, page, total, limit, offset):
    test.assertEqual(set(page), PAGE_KEYS)
    test.assertEqual(page["total_count"], total)
    test.assertEqual(page["limit"], limit)
    test.assertEqual(page["offset"], offset)
    test.assertEqual(page["entries_count"], len(page["entries"]))
    test.assertEqual(page["entries_count"], max(0, min(limit, total - offset)))
    test.assertEqual(page["has_more"], offset + len(page["entries"]) < total)
    for e in page["entries"]:
        test.assertTrue(ENTRY_KEYS <= set(e), e)
        test.assertRegex(e["timestamp"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


class WorkerTimelineTest(WorkerTestCase):
    """One worker, a few hundred tasks from every door."""

    def run_mix(self, w, n_http=240, n_fail=30, n_file=10, n_ws=10):
        ids = {"http": [], "fail": [], "file": [], "websocket": []}
        for i in range(n_http):
            ids["http"].append(w.submit("task %d" % i)["task_id"])
        for i in range(n_fail):
            ids["fail"].append(w.submit("bad %d\nMOCK-FAIL\n" % i)["task_id"])
        for i in range(n_file):
            tid = "FILE-%03d" % i
            w.write_task("%s.md" % tid, "---\ntask_id: %s\n---\nfile task %d\n" % (tid, i))
            ids["file"].append(tid)

        async def ws_tasks():
            async with websockets.connect("ws://127.0.0.1:%d/ws" % w.port) as ws:
                for i in range(n_ws):
                    await ws.send(json.dumps({"type": "task", "command": "ws %d" % i}))
                    got = await ws_recv_until(ws, lambda m: m.get("type") == "response")
                    ids["websocket"].append(got[-1]["task_id"])
        run_async(ws_tasks(), 60)
        total = n_http + n_fail + n_file + n_ws
        wait_for(lambda: w.get("/api/timeline?limit=1").json()["total_count"] == total or None,
                 60, what="%d timeline entries" % total)
        return ids, total

    def all_entries(self, w, query=""):
        out, offset = [], 0
        while True:
            page = w.get("/api/timeline?limit=1000&offset=%d%s" % (offset, query)).json()
            out += page["entries"]
            if not page["has_more"]:
                return out
            offset += len(page["entries"])

    def test_filters_pagination_alias_and_restart(self):
        w = self.new_worker()
        ids, total = self.run_mix(w)
        first = w.get("/api/timeline")
        self.assertEqual(first.status, 200)
        self.assertIn("application/json", first.header("content-type"))
        check_page(self, first.json(), total, 100, 0)
        self.assertEqual(first.json()["bot_id"], w.bot)
        everything = self.all_entries(w)
        self.assertEqual(len(everything), total)
        self.assertEqual(len({e["task_id"] for e in everything}), total)
        # Newest first: timestamps never increase down the list.
        stamps = [e["timestamp"] for e in everything]
        self.assertEqual(stamps, sorted(stamps, reverse=True))
        # Pages tile the list with no gap or overlap.
        for limit, offset in ((7, 0), (7, 7), (50, 260), (1000, 0), (1, total - 1), (5, total)):
            page = w.get("/api/timeline?limit=%d&offset=%d" % (limit, offset)).json()
            check_page(self, page, total, limit, offset)
            self.assertEqual([e["task_id"] for e in page["entries"]],
                             [e["task_id"] for e in everything[offset:offset + limit]])
        # source and success filters.
        for source, expect in (("http", ids["http"] + ids["fail"]), ("file", ids["file"]),
                               ("websocket", ids["websocket"])):
            got = self.all_entries(w, "&source=" + source)
            self.assertEqual(sorted(e["task_id"] for e in got), sorted(expect))
            self.assertTrue(all(e["source"] == source for e in got))
        failed = self.all_entries(w, "&success=false")
        self.assertEqual(sorted(e["task_id"] for e in failed), sorted(ids["fail"]))
        self.assertTrue(all(e["error"] == "mock failure requested" for e in failed))
        ok = w.get("/api/timeline?success=true&source=http&limit=3").json()
        check_page(self, ok, len(ids["http"]), 3, 0)
        # start_time / end_time, inclusive, whole seconds.
        mid = stamps[len(stamps) // 2]
        after = self.all_entries(w, "&start_time=" + mid)
        before = self.all_entries(w, "&end_time=" + mid)
        self.assertEqual(len(after), sum(s >= mid for s in stamps))
        self.assertEqual(len(before), sum(s <= mid for s in stamps))
        both = w.get("/api/timeline?start_time=%s&end_time=%s&limit=1000" % (mid, mid)).json()
        self.assertEqual(both["total_count"], stamps.count(mid))
        # The seed's alias is the same answer; another bot's id is not here.
        alias = w.get("/api/bot/%s/timeline?limit=1000" % w.bot).json()
        self.assertEqual(alias["entries"], everything[:1000])
        self.assertEqual(w.get("/api/bot/BOT-OTHER/timeline").status, 404)
        # The entry agrees with GET /api/task and the response file.
        e = [x for x in everything if x["task_id"] == ids["fail"][0]][0]
        task = w.task(ids["fail"][0]).json()
        self.assertFalse(e["success"])
        self.assertEqual(e["response"], task["result"]["output"])
        self.assertEqual(e["files_modified"], [])
        # The JSONL is there, one line per entry, for DEIA tools.
        path = w.path(".deia", "bot-logs", w.bot + "-timeline.jsonl")
        with open(path, encoding="utf-8") as f:
            self.assertEqual(len(f.read().splitlines()), total)
        # Entries survive a restart (and a kill -9).
        w.stop()
        w2 = self.restart(w)
        self.assertEqual(self.all_entries(w2), everything)
        w2.kill()
        w3 = self.restart(w2)
        self.assertEqual(self.all_entries(w3), everything)

    def test_bad_parameters_400(self):
        w = self.new_worker()
        for q in ("limit=0", "limit=1001", "limit=abc", "limit=-1", "offset=-1", "offset=x",
                  "source=ftp", "success=maybe", "start_time=yesterday", "end_time=2026-13-01",
                  "start_time=2026-12-03T10:00:00Z&end_time=2026-12-03T09:00:00Z"):
            r = w.get("/api/timeline?" + q)
            self.assertEqual(r.status, 400, q)
            self.assertIsInstance(r.json().get("detail"), str, q)
            self.assertEqual(w.get("/api/bot/%s/timeline?%s" % (w.bot, q)).status, 400, q)
        self.assertEqual(w.get("/api/timeline?limit=1000").status, 200)
        self.assertEqual(w.post("/api/timeline").status, 405)

    def test_recovery_reappends_missing_entries(self):
        w = self.new_worker()
        done = [w.submit("t %d" % i)["task_id"] for i in range(5)]
        wait_for(lambda: w.get("/api/timeline").json()["total_count"] == 5 or None, 20)
        w.stop()
        # A power cut lost the last two lines (and the index): the answers
        # are durable, so recovery puts them back, once.
        path = w.path(".deia", "bot-logs", w.bot + "-timeline.jsonl")
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines(True)
        with open(path, "w", encoding="utf-8") as f:
            f.write("".join(lines[:3]))
        os.utime(path, (time.time() - 60, time.time() - 60))
        os.unlink(w.path(".deia", "bot-logs", w.bot + "-timeline.idx"))
        w2 = self.restart(w)
        page = w2.get("/api/timeline").json()
        self.assertEqual(sorted(e["task_id"] for e in page["entries"]), sorted(done))
        w2.stop()
        w3 = self.restart(w2)   # and not twice
        self.assertEqual(w3.get("/api/timeline").json()["total_count"], 5)

    def test_websocket_timeline(self):
        w = self.new_worker()
        first = w.submit("before")["task_id"]
        w.wait_state(first, "done")
        w.submit("bad\nMOCK-FAIL\n")
        wait_for(lambda: w.get("/api/timeline").json()["total_count"] == 2 or None, 20)
        url = "ws://127.0.0.1:%d/ws/bot/%s/timeline" % (w.port, w.bot)

        async def session():
            async with websockets.connect(url) as ws:
                await ws.send(json.dumps({"type": "ping"}))
                self.assertEqual((await ws_recv_json(ws))["type"], "pong")
                for bad in ("{nope", json.dumps([1]), json.dumps({"type": "dance"}),
                            json.dumps({"type": "subscribe", "bot_id": w.bot,
                                        "filters": {"source": "ftp"}}),
                            json.dumps({"type": "subscribe", "bot_id": w.bot,
                                        "filters": {"success": "yes"}}),
                            json.dumps({"type": "subscribe", "bot_id": w.bot,
                                        "from_timestamp": "soon"}),
                            json.dumps({"type": "subscribe", "bot_id": "BOT-OTHER"})):
                    await ws.send(bad)
                    m = await ws_recv_json(ws)
                    self.assertEqual(m["type"], "error", bad)
                    self.assertEqual(m["error_code"], 400)
                    self.assertIsInstance(m["message"], str)
                await ws.send(json.dumps({"type": "subscribe", "bot_id": w.bot,
                                          "filters": {"success": True}}))
                m = await ws_recv_json(ws)
                self.assertEqual(m["type"], "subscribed")
                self.assertEqual(m["bot_id"], w.bot)
                self.assertEqual([e["task_id"] for e in m["initial_entries"]], [first])
                ok = w.submit("live")["task_id"]
                w.submit("live bad\nMOCK-FAIL\n")       # filtered out
                ok2 = w.submit("live 2")["task_id"]
                got = await ws_recv_until(ws, lambda x: x.get("type") == "update"
                                          and x["entry"]["task_id"] == ok2)
                updates = [x["entry"]["task_id"] for x in got if x["type"] == "update"]
                self.assertEqual(updates, [ok, ok2])
                self.assertTrue(ENTRY_KEYS <= set(got[-1]["entry"]))
                await ws.send(json.dumps({"type": "unsubscribe", "bot_id": w.bot}))
                self.assertEqual((await ws_recv_json(ws))["type"], "unsubscribed")
                quiet = w.submit("after unsubscribe")["task_id"]
                w.wait_state(quiet, "done")
                await ws.send(json.dumps({"type": "ping"}))
                self.assertEqual((await ws_recv_json(ws))["type"], "pong")
        run_async(session(), 60)
        r = curl("http://127.0.0.1:%d/ws/bot/BOT-OTHER/timeline" % w.port,
                 headers=("Connection: Upgrade", "Upgrade: websocket",
                          "Sec-WebSocket-Version: 13",
                          "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=="))
        self.assertEqual(r.status, 404)

    def test_websocket_timeline_keepalive(self):
        """The server pings an idle client; one that stays silent for two
        intervals is dropped (30 s and 60 s by default; shortened here)."""
        w = self.new_worker("--ws-ping-interval", "0.5")
        s, f, status = ws_raw_handshake(w.port, "/ws/bot/%s/timeline" % w.bot, timeout=10)
        self.assertEqual(status, 101)
        s.sendall(ws_frame(1, json.dumps({"type": "subscribe", "bot_id": w.bot})))
        op, data = ws_read_frame(f)
        self.assertEqual((op, json.loads(data)["type"]), (1, "subscribed"))
        t0 = time.monotonic()
        op, _ = ws_read_frame(f)
        self.assertEqual(op, 9)                   # the server's ping, unanswered
        ops = []
        try:
            while True:                           # then it gives up on us
                ops.append(ws_read_frame(f)[0])
                if ops[-1] == 8:
                    break
        except (EOFError, ConnectionResetError):
            pass
        self.assertLess(time.monotonic() - t0, 8)
        s.close()

    def test_metrics(self):
        w = self.new_worker()
        for i in range(6):
            w.submit("m %d" % i)
        for i in range(3):
            w.submit("f %d\nMOCK-FAIL\n" % i)
        w.wait_status(lambda s: s["tasks_processed"] == 9 and s["queue"]["realtime"] == 0)
        r = w.get("/metrics")
        self.assertEqual(r.status, 200)
        self.assertTrue(r.header("content-type").startswith("text/plain; version=0.0.4"))
        text = r.body.decode()
        ok, out = promtool_check(text)
        self.assertTrue(ok, out)
        m = parse_metrics(text)
        st = w.status()
        self.assertEqual(metric_sum(m, "hive_tasks_total", bot=w.bot), st["tasks_processed"])
        self.assertEqual(metric_sum(m, "hive_tasks_total", outcome="failure"), st["tasks_failed"])
        self.assertEqual(metric_sum(m, "hive_tasks_total", outcome="success", source="http"), 6)
        self.assertEqual(metric_sum(m, "hive_task_duration_seconds_count"), 9)
        self.assertEqual(metric_sum(m, "hive_task_duration_seconds_bucket", le="+Inf"), 9)
        self.assertEqual(metric_sum(m, "hive_queue_depth", kind="realtime"), 0)
        self.assertEqual(metric_sum(m, "hive_event_subscribers"), 0)
        for name in ("process_cpu_seconds_total", "process_resident_memory_bytes",
                     "process_open_fds", "process_start_time_seconds"):
            self.assertIn((name, frozenset()), m)
        self.assertLess(abs(m[("process_start_time_seconds", frozenset())] - time.time()), 600)
        # A paused bot's waiting tasks show in the queue families.
        self.assertEqual(w.post("/api/pause").status, 200)
        w.submit("waits")
        time.sleep(1.1)
        m = parse_metrics(w.get("/metrics").body.decode())
        self.assertEqual(metric_sum(m, "hive_queue_depth", kind="realtime"), 1)
        self.assertGreaterEqual(metric_sum(m, "hive_queue_oldest_age_seconds"), 1.0)


class SupervisorObserveTest(unittest.TestCase):
    """A hive of two mock bots: merged timeline, WebSocket timeline, metrics."""

    BOTS = [{"id": "BOT-001"}, {"id": "BOT-002"},
            # Streams two lines of output: task_output events, WebSocket progress.
            {"id": "BOT-CLI", "adapter": "{type: cli, command: [/bin/sh, -c, 'echo \"line one of "
             "$HIVE_TASK_ID\"; sleep 0.3; echo line two']}"}]

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="hive-e2e-observe-")
        self.hive = Hive(self.tmp, self.BOTS)
        self.hive.start()

    def tearDown(self):
        code, killed = self.hive.stop()
        failed = not getattr(self._outcome, "success", True)
        if failed or killed:
            sys.stderr.write(self.hive.log_text()[-6000:])
        reports = self.hive.sanitizer_reports()
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.assertFalse(killed, "hive up did not exit on SIGTERM")
        self.assertFalse(reports, "sanitizer report in hive output")
        self.assertEqual(code, 0)

    def submit(self, bot, command):
        r = self.hive.post("/bots/%s/api/task" % bot, {"command": command})
        self.assertEqual(r.status, 202, r)
        return r.json()["task_id"]

    def wait_total(self, n, query=""):
        return wait_for(lambda: (lambda p: p if p["total_count"] == n else None)(
            self.hive.get("/api/timeline?limit=1000" + query).json()), 30,
            what="%d entries on the supervisor's timeline" % n)

    def test_merged_timeline_and_bot_filter(self):
        one = [self.submit("BOT-001", "a %d" % i) for i in range(12)]
        two = [self.submit("BOT-002", "b %d" % i) for i in range(8)]
        two.append(self.submit("BOT-002", "bad\nMOCK-FAIL\n"))
        page = self.wait_total(21)
        check_page(self, page, 21, 1000, 0)
        self.assertIsNone(page["bot_id"])
        self.assertEqual(sorted(e["task_id"] for e in page["entries"]), sorted(one + two))
        stamps = [e["timestamp"] for e in page["entries"]]
        self.assertEqual(stamps, sorted(stamps, reverse=True))
        for bot, ids in (("BOT-001", one), ("BOT-002", two)):
            p = self.hive.get("/api/timeline?limit=1000&bot=" + bot).json()
            self.assertEqual(p["bot_id"], bot)
            self.assertEqual(sorted(e["task_id"] for e in p["entries"]), sorted(ids))
            self.assertTrue(all(e["bot_id"] == bot for e in p["entries"]))
            alias = self.hive.get("/api/bot/%s/timeline?limit=1000" % bot).json()
            self.assertEqual(alias["entries"], p["entries"])
            self.assertEqual(alias["bot_id"], bot)
        p = self.hive.get("/api/timeline?limit=5&offset=5").json()
        check_page(self, p, 21, 5, 5)
        self.assertEqual(p["entries"], page["entries"][5:10])
        failed = self.hive.get("/api/timeline?success=false").json()
        self.assertEqual([e["task_id"] for e in failed["entries"]], [two[-1]])
        self.assertEqual(self.hive.get("/api/timeline?limit=1001").status, 400)
        self.assertEqual(self.hive.get("/api/timeline?source=ftp").status, 400)
        self.assertEqual(self.hive.get("/api/bot/BOT-404/timeline").status, 404)
        # The bot's own worker answers the same entries through the proxy.
        via = self.hive.get("/bots/BOT-001/api/timeline?limit=1000").json()
        self.assertEqual(sorted(e["task_id"] for e in via["entries"]), sorted(one))

    def test_websocket_timeline(self):
        first = self.submit("BOT-001", "before")
        self.wait_total(1)
        url = "ws://127.0.0.1:%d/ws/bot/BOT-001/timeline" % self.hive.port

        async def session():
            async with websockets.connect(url) as ws:
                await ws.send(json.dumps({"type": "subscribe", "bot_id": "BOT-001"}))
                m = await ws_recv_json(ws)
                self.assertEqual(m["type"], "subscribed")
                self.assertEqual([e["task_id"] for e in m["initial_entries"]], [first])
                self.submit("BOT-002", "other bot")
                mine = self.submit("BOT-001", "live")
                got = await ws_recv_until(ws, lambda x: x.get("type") == "update")
                self.assertEqual(got[-1]["entry"]["task_id"], mine)
                self.assertEqual(got[-1]["entry"]["bot_id"], "BOT-001")
                await ws.send("not json")
                m = await ws_recv_json(ws)
                self.assertEqual((m["type"], m["error_code"]), ("error", 400))
                await ws.send(json.dumps({"type": "ping"}))
                self.assertEqual((await ws_recv_json(ws))["type"], "pong")
        run_async(session(), 60)

    def test_websocket_timeline_live_messages(self):
        """The supervisor's /ws/bot/<id>/timeline is fed by the events that
        come up the workers' channels: task_started, a progress per chunk of
        output, task_completed, then the entry's update — not only updates
        read later from the timeline files."""
        url = "ws://127.0.0.1:%d/ws/bot/BOT-CLI/timeline" % self.hive.port

        async def session():
            async with websockets.connect(url) as ws:
                await ws.send(json.dumps({"type": "subscribe", "bot_id": "BOT-CLI"}))
                self.assertEqual((await ws_recv_json(ws))["type"], "subscribed")
                self.submit("BOT-001", "another bot's task")
                tid = self.submit("BOT-CLI", "streamed")
                got = await ws_recv_until(ws, lambda x: x.get("type") == "update")
                kinds = [m["type"] for m in got]
                self.assertIn("task_started", kinds, got)
                self.assertIn("progress", kinds, got)
                self.assertIn("task_completed", kinds, got)
                self.assertLess(kinds.index("task_started"), kinds.index("progress"))
                self.assertLess(kinds.index("progress"), kinds.index("task_completed"))
                self.assertTrue(all(m.get("task_id", m.get("entry", {}).get("task_id")) == tid
                                    for m in got), got)
                text = "".join(m["message"] for m in got if m["type"] == "progress")
                self.assertIn("line one of " + tid, text)
                self.assertEqual(got[-1]["entry"]["task_id"], tid)
        run_async(session(), 60)

    def test_metrics_queue_and_subscribers_from_the_channel(self):
        """hive_queue_depth and hive_queue_oldest_age_seconds come from what
        each worker said up its channel and agree with /status;
        hive_event_subscribers counts the supervisor's SSE (python
        http.client) and WebSocket timeline (python3-websockets) clients."""
        self.assertEqual(self.hive.post("/bots/BOT-001/api/pause", {}).status, 200)
        for i in range(3):
            self.submit("BOT-001", "waits %d" % i)

        def queued():
            b = self.hive.bot("BOT-001")
            return b if b.get("queue", {}).get("realtime") == 3 else None
        wait_for(queued, 20, what="/status: 3 queued on BOT-001")
        time.sleep(0.2)
        m = self.scrape()
        st = {b["id"]: b for b in self.hive.status()["bots"]}
        for bot in ("BOT-001", "BOT-002"):
            for kind in ("realtime", "file"):
                self.assertEqual(metric_sum(m, "hive_queue_depth", bot=bot, kind=kind),
                                 st[bot]["queue"][kind], (bot, kind))
        self.assertGreater(metric_sum(m, "hive_queue_oldest_age_seconds", bot="BOT-001"), 0)
        self.assertEqual(metric_sum(m, "hive_queue_oldest_age_seconds", bot="BOT-002"), 0)
        self.assertEqual(metric_sum(m, "hive_event_subscribers"), 0)

        streams = []
        for _ in range(2):
            c = http.client.HTTPConnection("127.0.0.1", self.hive.port, timeout=10)
            c.request("GET", "/api/events")
            r = c.getresponse()
            self.assertEqual(r.status, 200)
            self.assertEqual(r.getheader("Content-Type"), "text/event-stream")
            streams.append((c, r))   # the response holds the stream open
        url = "ws://127.0.0.1:%d/ws/bot/BOT-002/timeline" % self.hive.port

        async def with_ws():
            async with websockets.connect(url) as ws:
                await ws.send(json.dumps({"type": "subscribe", "bot_id": "BOT-002"}))
                self.assertEqual((await ws_recv_json(ws))["type"], "subscribed")
                return metric_sum(self.scrape(), "hive_event_subscribers")
        self.assertEqual(run_async(with_ws(), 30), 3)
        for c, r in streams:
            r.close()
            c.close()
        wait_for(lambda: metric_sum(self.scrape(), "hive_event_subscribers") == 0 or None, 10,
                 what="no subscriber left")
        self.assertEqual(self.hive.post("/bots/BOT-001/api/resume", {}).status, 200)
        wait_for(lambda: metric_sum(self.scrape(), "hive_queue_depth", bot="BOT-001") == 0
                 or None, 20, what="the queue drained")

    def scrape(self):
        r = self.hive.get("/metrics")
        self.assertEqual(r.status, 200)
        text = r.body.decode()
        ok, out = promtool_check(text)
        self.assertTrue(ok, out + text[:2000])
        return parse_metrics(text)

    def test_metrics_agree_with_status_and_timeline(self):
        for i in range(5):
            self.submit("BOT-001", "ok %d" % i)
        for i in range(2):
            self.submit("BOT-001", "bad %d\nMOCK-FAIL\n" % i)
        for i in range(3):
            self.submit("BOT-002", "ok %d" % i)
        self.wait_total(10)
        # A worker killed and restarted: its own counters start again, the
        # hive's do not.
        pid = self.hive.bot("BOT-001")["pid"]
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: (lambda b: b["restarts"] >= 1 and b["state"] == "running"
                          and b["pid"] != pid)(self.hive.bot("BOT-001")) or None, 30,
                 what="BOT-001 restarted")
        self.hive.note_children()
        self.submit("BOT-001", "after restart")
        self.wait_total(11)

        def settled():
            m = self.scrape()
            return m if metric_sum(m, "hive_tasks_total") == 11 else None
        m = wait_for(settled, 10, interval=0.3, what="hive_tasks_total 11")
        st = self.hive.status()
        for b in st["bots"]:
            self.assertEqual(metric_sum(m, "hive_bot_up", bot=b["id"]),
                             1 if b["state"] == "running" else 0)
            self.assertEqual(metric_sum(m, "hive_bot_state", bot=b["id"], state=b["state"]), 1)
            self.assertEqual(metric_sum(m, "hive_bot_state", bot=b["id"]), 1)
            self.assertEqual(metric_sum(m, "hive_bot_restarts_total", bot=b["id"]),
                             b["restarts"])
            tl = self.hive.get("/api/bot/%s/timeline" % b["id"]).json()
            self.assertEqual(metric_sum(m, "hive_tasks_total", bot=b["id"]), tl["total_count"])
            self.assertEqual(metric_sum(m, "hive_task_duration_seconds_count", bot=b["id"]),
                             tl["total_count"])
        self.assertEqual(metric_sum(m, "hive_tasks_total", bot="BOT-001", outcome="failure"), 2)
        self.assertEqual(metric_sum(m, "hive_tasks_total", bot="BOT-001", outcome="success"), 6)
        # Eleven task POSTs went through the proxy with 202.
        self.assertGreaterEqual(metric_sum(m, "hive_proxy_requests_total", code="202"), 11)
        self.assertIn(("process_open_fds", frozenset()), m)
        # The worker's own /metrics through the proxy: this process' counts.
        wm = parse_metrics(self.hive.get("/bots/BOT-001/metrics").body.decode())
        self.assertEqual(metric_sum(wm, "hive_tasks_total"), 1)

    def final_events(self, since):
        """The final task events of the supervisor's stream after SINCE (a
        hive_seq), read until none is new for a moment: {bot: n}."""
        c = http.client.HTTPConnection("127.0.0.1", self.hive.port, timeout=2)
        c.request("GET", "/api/events?since=%d" % since)
        r = c.getresponse()
        counts, buf = {}, b""
        try:
            while True:
                chunk = r.fp.read1(65536)
                if not chunk:
                    break
                buf += chunk
        except (TimeoutError, OSError):
            pass
        c.close()
        for block in buf.decode().split("\n\n"):
            data = [l[5:].strip() for l in block.splitlines() if l.startswith("data:")]
            if data:
                d = json.loads(data[0])
                if d.get("type") in ("task_completed", "task_failed", "task_cancelled"):
                    counts[d["bot_id"]] = counts.get(d["bot_id"], 0) + 1
        return counts

    def test_counters_count_final_events_once(self):
        """hive_tasks_total counts the final events that came up the channels,
        once each: a worker's kill -9 and restart (it resumes from the
        supervisor's cursor) adds nothing twice; a supervisor restart starts
        the counters again (a Prometheus counter reset), it does not re-read
        the timelines (the old code counted the 7 earlier tasks again)."""
        for i in range(4):
            self.submit("BOT-001", "ok %d" % i)
        self.submit("BOT-001", "bad\nMOCK-FAIL\n")
        self.submit("BOT-002", "ok")
        self.wait_total(6)
        pid = self.hive.bot("BOT-001")["pid"]
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: (lambda b: b["state"] == "running" and b["pid"] != pid)(
            self.hive.bot("BOT-001")) or None, 30, what="BOT-001 restarted")
        self.hive.note_children()
        self.submit("BOT-001", "after the worker's restart")
        self.wait_total(7)
        m = wait_for(lambda: (lambda m: m if metric_sum(m, "hive_tasks_total") == 7 else None)(
            self.scrape()), 10, interval=0.3, what="hive_tasks_total 7")
        self.assertEqual(metric_sum(m, "hive_tasks_total", bot="BOT-001"), 6)
        self.assertEqual(metric_sum(m, "hive_tasks_total", bot="BOT-001", outcome="failure"), 1)
        self.assertEqual(metric_sum(m, "hive_task_duration_seconds_count", bot="BOT-001"), 6)
        self.assertEqual(metric_sum(m, "hive_tasks_total", bot="BOT-002"), 1)
        self.assertEqual(self.final_events(0), {"BOT-001": 6, "BOT-002": 1})
        # The supervisor restarted: the counters start again and count only
        # what this process merges.
        code, killed = self.hive.stop()
        self.assertEqual((code, killed), (0, False))
        self.hive.start()
        m = self.scrape()
        self.assertEqual(metric_sum(m, "hive_tasks_total"), 0)
        self.submit("BOT-002", "after the hive's restart")
        self.submit("BOT-002", "bad\nMOCK-FAIL\n")
        self.wait_total(9)
        m = wait_for(lambda: (lambda m: m if metric_sum(m, "hive_tasks_total") == 2 else None)(
            self.scrape()), 10, interval=0.3, what="hive_tasks_total 2")
        self.assertEqual(metric_sum(m, "hive_tasks_total", bot="BOT-002", outcome="failure"), 1)
        self.assertEqual(metric_sum(m, "hive_tasks_total", bot="BOT-001"), 0)
        # The timeline still has everything.
        self.assertEqual(self.hive.get("/api/bot/BOT-001/timeline").json()["total_count"], 6)

    def timeline_fds(self):
        """The supervisor's open fds on timeline files."""
        d = "/proc/%d/fd" % self.hive.proc.pid
        out = []
        for fd in os.listdir(d):
            try:
                target = os.readlink(os.path.join(d, fd))
            except OSError:
                continue
            if "-timeline." in target:
                out.append(target)
        return out

    def test_timelines_open_only_for_a_query(self):
        """The supervisor holds no bot's timeline until a query needs it (the
        old code kept every bot's open and re-read them on every tick)."""
        for bot in ("BOT-001", "BOT-002"):
            self.hive.wait_task(bot, self.submit(bot, "ok"))
        time.sleep(0.5)   # what the old code did after a task's end is done
        self.assertEqual(self.timeline_fds(), [])
        self.assertEqual(self.hive.get("/api/timeline").json()["total_count"], 2)
        self.assertTrue(self.timeline_fds())   # kept for the next query ...
        self.assertLessEqual(len(self.timeline_fds()), 3 * 2)   # three bots: .jsonl, .idx

    def test_real_prometheus_scrapes_the_hive(self):
        for i in range(4):
            self.submit("BOT-001", "p %d" % i)
        self.submit("BOT-002", "bad\nMOCK-FAIL\n")
        self.wait_total(5)
        prom_port = free_ports(1)[0]
        data = os.path.join(self.tmp, "prom-data")
        cfg = os.path.join(self.tmp, "prometheus.yml")
        with open(cfg, "w") as f:
            f.write("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                    "scrape_configs:\n  - job_name: hive\n    static_configs:\n"
                    "      - targets: ['127.0.0.1:%d']\n" % self.hive.port)
        log = open(os.path.join(self.tmp, "prometheus.log"), "wb")
        prom = subprocess.Popen([PROMETHEUS, "--config.file=" + cfg,
                                 "--storage.tsdb.path=" + data,
                                 "--web.listen-address=127.0.0.1:%d" % prom_port],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=self.tmp)
        try:
            def query(expr):
                url = "http://127.0.0.1:%d/api/v1/query?%s" % (
                    prom_port, urllib.parse.urlencode({"query": expr}))
                try:
                    with urllib.request.urlopen(url, timeout=5) as r:
                        body = json.load(r)
                except OSError:
                    return None
                res = body.get("data", {}).get("result", [])
                return res or None
            res = wait_for(lambda: query("sum(hive_tasks_total)"), 60, interval=0.5,
                           what="Prometheus to scrape hive_tasks_total")
            self.assertEqual(float(res[0]["value"][1]), 5)
            res = query('hive_tasks_total{bot="BOT-002",outcome="failure",source="http"}')
            self.assertEqual(float(res[0]["value"][1]), 1)
            up = query('up{job="hive"}')
            self.assertEqual(float(up[0]["value"][1]), 1)
        finally:
            prom.terminate()
            try:
                prom.wait(20)
            except subprocess.TimeoutExpired:
                prom.kill()
                prom.wait(10)
            log.close()


class TimelineLruTest(unittest.TestCase):
    """Thirty bots with timelines on disk, not started: a merged query opens
    them all and keeps only a few open after (the old code kept every one)."""

    N = 30

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="hive-e2e-observe-lru-")
        bots = [{"id": "BOT-%02d" % i} for i in range(self.N)]
        self.hive = Hive(self.tmp, bots)
        with open(self.hive.yaml) as f:
            text = f.read()
        with open(self.hive.yaml, "w") as f:
            f.write(text.replace("defaults:\n", "defaults:\n  autostart: false\n", 1))
        logs = os.path.join(self.tmp, ".deia", "bot-logs")
        os.makedirs(logs)
        for i, b in enumerate(bots):
            entry = {"task_id": "T-%02d" % i, "bot_id": b["id"], "source": "http",
                     "timestamp": "2026-01-01T00:00:%02d.000Z" % i, "success": True,
                     "response": "done", "files_modified": [], "duration_seconds": 0.1,
                     "error": None}
            with open(os.path.join(logs, b["id"] + "-timeline.jsonl"), "w") as f:
                f.write(json.dumps(entry) + "\n")
        with open(self.hive.log, "ab") as out:
            self.hive.proc = subprocess.Popen([HIVE_BIN, "up", "-f", self.hive.yaml],
                                              cwd=self.tmp, stdin=subprocess.DEVNULL,
                                              stdout=out, stderr=out, env=self.hive.env())
        def answering():
            try:
                return self.hive.get("/health").status == 200 or None
            except AssertionError:   # not listening yet
                return None
        wait_for(answering, 30, interval=0.1, what="hive up answering")

    def tearDown(self):
        code, killed = self.hive.stop()
        reports = self.hive.sanitizer_reports()
        if not getattr(self._outcome, "success", True) or killed or reports:
            sys.stderr.write(self.hive.log_text()[-6000:])
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.assertFalse(killed, "hive up did not exit on SIGTERM")
        self.assertEqual(reports, [])
        self.assertEqual(code, 0)

    def test_merged_query_then_a_few_kept(self):
        fds = SupervisorObserveTest.timeline_fds
        self.assertEqual(fds(self), [])
        page = self.hive.get("/api/timeline?limit=1000").json()
        self.assertEqual(page["total_count"], self.N)
        self.assertEqual(page["entries"][0]["task_id"], "T-%02d" % (self.N - 1))
        kept = {os.path.basename(p).split("-timeline")[0] for p in fds(self)}
        self.assertTrue(kept)
        self.assertLess(len(kept), self.N)
        # One bot's query: right answer, whatever was kept.
        page = self.hive.get("/api/bot/BOT-00/timeline").json()
        self.assertEqual([e["task_id"] for e in page["entries"]], ["T-00"])
        self.assertLess(len({os.path.basename(p).split("-timeline")[0] for p in fds(self)}),
                        self.N)


if __name__ == "__main__":
    unittest.main(verbosity=2)
