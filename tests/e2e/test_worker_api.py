"""hive-worker's HTTP API end to end (SPEC §1 hive-worker, §4, §7), with curl.

Run: HIVE_BUILD_DIR=build-e2e /usr/bin/python3 tests/e2e/test_worker_api.py
"""

import base64
import hashlib
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hive_e2e import (BOT, HEX8, WORKER_BIN, WorkerTestCase, main, raw_connect,  # noqa: E402
                      raw_exchange, read_http_response, read_until_close, wait_for)

ISO_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")


class CommandLine(WorkerTestCase):
    """§1: --help, --version, usage errors, exit codes 2 and 78."""

    def run_worker(self, *args, env=None, timeout=15):
        e = dict(os.environ)
        e.pop("HIVE_TOKEN", None)
        if env:
            e.update(env)
        return subprocess.run([WORKER_BIN] + list(args), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, timeout=timeout, env=e, cwd=self.tmp,
                              stdin=subprocess.DEVNULL)

    def test_help_exits_0(self):
        p = self.run_worker("--help")
        self.assertEqual(p.returncode, 0, p.stderr)
        out = p.stdout.decode()
        self.assertIn("usage", out.lower())
        for flag in ("--port", "--mode", "--work-dir", "--adapter-type", "--adapter-cmd",
                     "--cooldown", "--timeout", "--queue-max", "--bind"):
            self.assertIn(flag, out)

    def test_version_exits_0(self):
        p = self.run_worker("--version")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertRegex(p.stdout.decode(), r"^hive-worker \d+\.\d+\.\d+")

    def test_bad_option_exits_2(self):
        p = self.run_worker(BOT, "--no-such-option", "1", "--port", "0", "--work-dir", self.tmp)
        self.assertEqual(p.returncode, 2, p.stderr)
        self.assertIn("--no-such-option", p.stderr.decode())

    def test_bad_values_exit_2(self):
        for args in (["--port", "abc"], ["--port", "70000"], ["--mode", "turbo"],
                     ["--adapter-type", "gpt"], ["--timeout", "-1"]):
            with self.subTest(args=args):
                p = self.run_worker(BOT, "--work-dir", self.tmp, *args)
                self.assertEqual(p.returncode, 2, p.stderr)

    def test_missing_and_invalid_bot_id_exit_2(self):
        p = self.run_worker("--port", "0", "--work-dir", self.tmp)
        self.assertEqual(p.returncode, 2, p.stderr)
        p = self.run_worker("../evil", "--port", "0", "--work-dir", self.tmp)
        self.assertEqual(p.returncode, 2, p.stderr)
        self.assertFalse(os.path.exists(os.path.join(self.tmp, ".deia")))

    def test_cli_adapter_without_command_exits_2(self):
        p = self.run_worker(BOT, "--port", "0", "--work-dir", self.tmp, "--adapter-type", "cli")
        self.assertEqual(p.returncode, 2, p.stderr)

    def test_non_loopback_bind_without_token_exits_78(self):
        p = self.run_worker(BOT, "--port", "0", "--work-dir", self.tmp, "--bind", "0.0.0.0")
        self.assertEqual(p.returncode, 78, p.stderr)
        self.assertIn("token", p.stderr.decode().lower())

    def test_port_in_use_exits_78_with_clear_message(self):
        blocker = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            blocker.bind(("127.0.0.1", 0))
            blocker.listen(1)
            port = blocker.getsockname()[1]
            p = self.run_worker(BOT, "--port", str(port), "--work-dir", self.tmp)
            self.assertEqual(p.returncode, 78, p.stderr)
            err = p.stderr.decode().lower()
            self.assertIn(str(port), err)
            self.assertIn("in use", err)
        finally:
            blocker.close()


class StatusAndHealth(WorkerTestCase):
    """GET /status and GET /health fields and types."""

    def test_status_fields_idle(self):
        w = self.new_worker()
        s = w.status()
        self.assertEqual(s["bot_id"], BOT)
        self.assertEqual(s["status"], "idle")
        self.assertEqual(s["mode"], "hybrid")
        self.assertEqual(s["port"], w.port)
        self.assertEqual(s["pid"], w.proc.pid)
        self.assertIsInstance(s["uptime_seconds"], (int, float))
        self.assertGreaterEqual(s["uptime_seconds"], 0)
        self.assertIsInstance(s["tasks_processed"], int)
        self.assertIsInstance(s["tasks_failed"], int)
        self.assertIsNone(s["current_task"])
        self.assertEqual(s["queue"], {"realtime": 0, "file": 0})
        self.assertRegex(s["timestamp"], ISO_UTC)
        self.assertIsInstance(s["version"], str)
        for key in ("bot_id", "status", "mode", "port", "pid", "uptime_seconds",
                    "tasks_processed", "tasks_failed", "current_task", "queue", "timestamp",
                    "version"):
            self.assertIn(key, s)

    def test_status_busy_with_current_task_and_counters(self):
        w = self.new_worker("--mock-delay-ms", "1500")
        tid = w.submit("slow one", task_id="busy-1")["task_id"]
        s = w.wait_status(lambda s: s["status"] == "busy", what="busy")
        self.assertEqual(s["current_task"]["task_id"], tid)
        self.assertEqual(s["current_task"]["source"], "http")
        self.assertRegex(s["current_task"]["started_at"], ISO_UTC)
        w.wait_state(tid, "done")
        w.submit("MOCK-FAIL", task_id="busy-2")
        w.wait_state("busy-2", "failed")
        s = w.wait_status(lambda s: s["status"] == "idle", what="idle")
        self.assertEqual(s["tasks_processed"], 2)
        self.assertEqual(s["tasks_failed"], 1)
        self.assertIsNone(s["current_task"])

    def test_status_paused(self):
        w = self.new_worker()
        r = w.post("/api/pause")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(w.status()["status"], "paused")

    def test_health(self):
        w = self.new_worker()
        r = w.get("/health")
        self.assertEqual(r.status, 200, r)
        self.assertTrue(r.header("content-type").startswith("application/json"), r)
        h = r.json()
        self.assertEqual(h["status"], "ok")
        self.assertEqual(h["bot_id"], BOT)
        self.assertRegex(h["timestamp"], ISO_UTC)

    def test_head_has_no_body(self):
        w = self.new_worker()
        with raw_connect(w.port) as s:
            f = s.makefile("rb")
            s.sendall(b"HEAD /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
            line = f.readline()
            self.assertRegex(line, rb"^HTTP/1\.1 200 ")
            while f.readline() not in (b"\r\n", b""):
                pass
            # no body follows: the next answer on the connection starts right away
            s.sendall(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
            status, _, body, _ = read_http_response(f)
            self.assertEqual(status, 200)
            self.assertEqual(json.loads(body)["status"], "ok")

    def test_status_fast_while_a_task_runs(self):
        """The one speed assertion the issue asks for: /status is not blocked by a task."""
        w = self.new_worker("--mock-delay-ms", "3000")
        tid = w.submit("three seconds")["task_id"]
        w.wait_state(tid, "running")
        times = []
        for _ in range(7):
            r = w.get("/status")
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.json()["status"], "busy")
            times.append(r.time_total)
        self.assertEqual(w.task(tid).json()["state"], "running",
                         "the 3 s task should still be running while we measured")
        self.assertLess(statistics.median(times), 0.1, "GET /status times: %r" % times)

    def test_status_fast_while_a_cli_task_runs(self):
        w = self.new_worker("--adapter-type", "cli", "--", "sleep", "3")
        tid = w.submit("x")["task_id"]
        w.wait_state(tid, "running")
        times = [w.get("/status").time_total for _ in range(7)]
        self.assertLess(statistics.median(times), 0.1, "GET /status times: %r" % times)
        w.post("/api/interrupt")


class SubmitTask(WorkerTestCase):
    """POST /api/task: 202 and every error of §4."""

    def test_202_fields_and_default_id(self):
        w = self.new_worker()
        r = w.post("/api/task", {"command": "hello"})
        self.assertEqual(r.status, 202, r)
        j = r.json()
        self.assertEqual(j["status"], "queued")
        self.assertRegex(j["task_id"], r"^HTTP-" + HEX8 + "$")
        self.assertIsInstance(j["position"], int)
        self.assertIsInstance(j["message"], str)
        self.assertRegex(j["timestamp"], ISO_UTC)

    def test_202_with_given_id_and_fields(self):
        w = self.new_worker()
        j = w.submit("hello", task_id="my.task-1", priority="P1", **{"from": "alice"})
        self.assertEqual(j["task_id"], "my.task-1")
        name, text = w.wait_response("my.task-1")
        self.assertIn("-%s-alice-RESPONSE-my.task-1-complete" % BOT, name)

    def test_default_ids_are_unique(self):
        w = self.new_worker()
        ids = {w.submit("x%d" % i)["task_id"] for i in range(5)}
        self.assertEqual(len(ids), 5)

    def test_400_command_is_required(self):
        w = self.new_worker()
        for body in ({}, {"command": ""}, {"task_id": "abc"}, {"command": None}):
            with self.subTest(body=body):
                r = w.post("/api/task", body)
                self.assertEqual(r.status, 400, r)
                self.assertEqual(r.json(), {"detail": "command is required"})

    def test_400_invalid_json(self):
        w = self.new_worker()
        for body in ("{", "not json", '{"command": "x",}', "[1, 2]", '"text"', "", "\xff"):
            with self.subTest(body=body):
                r = w.post("/api/task", body)
                self.assertEqual(r.status, 400, r)
                self.assertEqual(r.json(), {"detail": "invalid JSON"})
        # ... and the server still serves a valid request from the same kind of client
        r = w.post("/api/task", {"command": "still fine"})
        self.assertEqual(r.status, 202, r)

    def test_400_invalid_json_then_valid_on_same_connection(self):
        w = self.new_worker()
        bad = b"{nope"
        good = json.dumps({"command": "after bad"}).encode()
        req = b""
        for body in (bad, good):
            req += (b"POST /api/task HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\n\r\n" % len(body)) + body
        (s1, _, b1, _), (s2, _, b2, _) = raw_exchange(w.port, req, count=2)
        self.assertEqual(s1, 400, b1)
        self.assertEqual(json.loads(b1), {"detail": "invalid JSON"})
        self.assertEqual(s2, 202, b2)
        self.assertEqual(json.loads(b2)["status"], "queued")

    def test_400_invalid_task_id(self):
        w = self.new_worker()
        for tid in ("../x", "a/b", "x" * 300, "x" * 65, "", "sp ace", "é", 42,
                    ["a"], {"a": 1}):
            with self.subTest(task_id=tid):
                r = w.post("/api/task", {"command": "x", "task_id": tid})
                self.assertEqual(r.status, 400, r)
                self.assertEqual(r.json(), {"detail": "invalid task_id"})
        self.assertEqual(w.listdir("_realtime"), [])
        self.assertEqual(w.responses(), [])
        # 64 characters is still fine
        r = w.post("/api/task", {"command": "x", "task_id": "y" * 64})
        self.assertEqual(r.status, 202, r)

    def test_400_invalid_task_id_with_nul(self):
        """A JSON-valid id holding U+0000 is an invalid task_id (not "invalid JSON"), and
        must never be truncated to its valid prefix "a"."""
        w = self.new_worker()
        r = w.post("/api/task", '{"command": "x", "task_id": "a\\u0000b"}')
        self.assertEqual(r.status, 400, r)
        self.assertEqual(r.json(), {"detail": "invalid task_id"})
        self.assertEqual(w.task("a").status, 404)

    def test_409_duplicate_id_while_queued_or_running(self):
        w = self.new_worker("--mock-delay-ms", "2000")
        w.submit("first", task_id="dup-run")
        w.wait_state("dup-run", "running")
        w.submit("second", task_id="dup-queued")
        for tid in ("dup-run", "dup-queued"):
            with self.subTest(task_id=tid):
                r = w.post("/api/task", {"command": "again", "task_id": tid})
                self.assertEqual(r.status, 409, r)
                self.assertIn(tid, r.json()["detail"])
        self.assertEqual(w.status()["queue"]["realtime"], 1)

    def test_id_not_reused_after_the_task_finished(self):
        """An id is an idempotency key (SPEC §3): answered is not accepted again."""
        w = self.new_worker()
        w.submit("first", task_id="again-1")
        w.wait_state("again-1", "done")
        r = w.post("/api/task", {"command": "second", "task_id": "again-1"})
        self.assertEqual(r.status, 409, r)
        self.assertEqual(r.json()["state"], "done", r)
        time.sleep(0.3)
        self.assertEqual(len(w.responses("again-1")), 1, w.responses())

    def test_413_body_over_max_body(self):
        w = self.new_worker("--max-body", "1000")
        r = w.post("/api/task", {"command": "x" * 5000})
        self.assertEqual(r.status, 413, r)
        self.assertIn("detail", r.json())
        # a body just below the limit is accepted, and the server still serves
        r = w.post("/api/task", {"command": "y" * 900})
        self.assertEqual(r.status, 202, r)

    def test_415_post_without_json_content_type(self):
        w = self.new_worker()
        for ct in ("text/plain", "application/x-www-form-urlencoded", None,
                   "application/jsonx"):
            with self.subTest(content_type=ct):
                r = w.post("/api/task", '{"command": "x"}', content_type=ct)
                self.assertEqual(r.status, 415, r)
                self.assertIn("detail", r.json())
        r = w.post("/api/pause", "{}", content_type="text/plain")
        self.assertEqual(r.status, 415, r)
        self.assertFalse(os.path.exists(w.pause_file))
        r = w.post("/api/task", '{"command": "x"}', content_type="application/json; charset=utf-8")
        self.assertEqual(r.status, 202, r)

    def test_429_queue_full_with_retry_after(self):
        w = self.new_worker("--queue-max", "2", "--mock-delay-ms", "3000")
        first = w.submit("running")["task_id"]
        w.wait_state(first, "running")
        w.submit("queued 1")
        w.submit("queued 2")
        r = w.post("/api/task", {"command": "one too many"})
        self.assertEqual(r.status, 429, r)
        self.assertEqual(r.json(), {"detail": "Task queue full - too many pending tasks"})
        self.assertIsNotNone(r.header("retry-after"), r)
        self.assertRegex(r.header("retry-after"), r"^\d+$")
        self.assertEqual(w.status()["queue"]["realtime"], 2)
        self.assertEqual(len(w.listdir("_realtime")), 2)

    def test_431_headers_too_large(self):
        w = self.new_worker()
        r = w.get("/status", headers=["X-Big: " + "a" * 20000])
        self.assertEqual(r.status, 431, r)
        r = w.get("/status", headers=["X-Small: " + "a" * 1000])
        self.assertEqual(r.status, 200, r)

    def test_431_respects_max_header(self):
        w = self.new_worker("--max-header", "2048")
        r = w.get("/status", headers=["X-Big: " + "a" * 3000])
        self.assertEqual(r.status, 431, r)
        self.assertEqual(w.get("/health").status, 200)


class Routing(WorkerTestCase):
    """404 and 405 with Allow."""

    def test_404_unknown_path(self):
        w = self.new_worker()
        for path in ("/nope", "/api", "/api/tasks", "/status/x", "//"):  # "/": the page
            with self.subTest(path=path):
                r = w.get(path)
                self.assertEqual(r.status, 404, r)
                self.assertEqual(r.json(), {"detail": "Not Found"})

    def test_404_unknown_task_id(self):
        w = self.new_worker()
        r = w.task("NO-SUCH-TASK")
        self.assertEqual(r.status, 404, r)
        self.assertEqual(r.json(), {"detail": "Not Found"})

    def test_get_task_with_bad_id_is_refused(self):
        w = self.new_worker()
        r = w.get("/api/task/a/b")
        self.assertIn(r.status, (400, 404), r)
        r = w.get("/api/task/" + "z" * 300)
        self.assertIn(r.status, (400, 404), r)

    def test_405_with_allow(self):
        w = self.new_worker()
        cases = [("GET", "/api/task", "POST"), ("DELETE", "/status", "GET"),
                 ("POST", "/status", "GET"), ("PUT", "/health", "GET"),
                 ("GET", "/api/pause", "POST"), ("GET", "/api/resume", "POST"),
                 ("GET", "/api/interrupt", "POST"), ("DELETE", "/api/task/x", "GET")]
        for method, path, allowed in cases:
            with self.subTest(method=method, path=path):
                r = w.http(method, path)
                self.assertEqual(r.status, 405, r)
                self.assertIsNotNone(r.header("allow"), r)
                self.assertIn(allowed, [a.strip() for a in r.header("allow").split(",")])
                self.assertIn("detail", r.json())


class TaskStates(WorkerTestCase):
    """GET /api/task/<id>: queued, running, done, failed and the result fields."""

    def test_states_and_result_fields(self):
        w = self.new_worker("--mock-delay-ms", "1000")
        a = w.submit("task A", task_id="state-a")["task_id"]
        b = w.submit("task B", task_id="state-b")["task_id"]
        ja = w.wait_state(a, "running")
        self.assertEqual(ja["source"], "http")
        self.assertNotIn("result", ja)
        jb = w.task(b).json()
        self.assertEqual(jb["state"], "queued", jb)
        self.assertEqual(jb["task_id"], b)
        self.assertEqual(jb["source"], "http")
        self.assertNotIn("result", jb)
        done = w.wait_state(a, ("done", "failed"))
        self.assertEqual(done["state"], "done", done)
        res = done["result"]
        self.assertIs(res["success"], True)
        self.assertIsInstance(res["output"], str)
        self.assertIn("task A", res["output"])
        self.assertIsNone(res["error"])
        self.assertIsInstance(res["duration_seconds"], (int, float))
        self.assertGreaterEqual(res["duration_seconds"], 0.5)
        self.assertIsInstance(res["response_file"], str)
        self.assertIn(res["response_file"], w.responses(a))
        w.wait_state(b, "done")

    def test_failed_state(self):
        w = self.new_worker()
        tid = w.submit("please\nMOCK-FAIL\n", task_id="state-fail")["task_id"]
        j = w.wait_state(tid, ("done", "failed"))
        self.assertEqual(j["state"], "failed", j)
        self.assertIs(j["result"]["success"], False)
        self.assertIsInstance(j["result"]["error"], str)
        self.assertTrue(j["result"]["error"])
        self.assertTrue(j["result"]["response_file"].endswith("-failed.md"), j)
        self.assertIn(j["result"]["response_file"], w.responses(tid))

    def test_queued_while_paused(self):
        w = self.new_worker()
        w.post("/api/pause")
        tid = w.submit("wait for resume", task_id="paused-1")["task_id"]
        self.assertEqual(w.task(tid).json()["state"], "queued")


class Controls(WorkerTestCase):
    """pause/resume/interrupt."""

    def test_pause_resume(self):
        w = self.new_worker()
        r = w.post("/api/pause")
        self.assertEqual(r.status, 200, r)
        self.assertTrue(os.path.exists(w.pause_file))
        tid = w.submit("held back")["task_id"]
        time.sleep(0.7)
        self.assertEqual(w.task(tid).json()["state"], "queued")
        self.assertEqual(w.responses(tid), [])
        self.assertEqual(w.status()["queue"]["realtime"], 1)
        r = w.post("/api/resume")
        self.assertEqual(r.status, 200, r)
        self.assertFalse(os.path.exists(w.pause_file))
        w.wait_state(tid, "done")
        self.assertEqual(len(w.responses(tid)), 1)

    def test_pause_file_dropped_by_hand(self):
        w = self.new_worker()
        os.makedirs(os.path.dirname(w.pause_file), exist_ok=True)
        with open(w.pause_file, "w") as f:
            f.write("")
        wait_for(lambda: w.status()["status"] == "paused", what="paused")
        tid = w.submit("held")["task_id"]
        time.sleep(0.5)
        self.assertEqual(w.task(tid).json()["state"], "queued")
        os.unlink(w.pause_file)
        w.wait_state(tid, "done", timeout=10)

    def test_interrupt_cli_task(self):
        w = self.new_worker("--adapter-type", "cli", "--adapter-cmd", "sleep", "30")
        tid = w.submit("long")["task_id"]
        w.wait_state(tid, "running")
        t0 = time.monotonic()
        r = w.post("/api/interrupt")
        self.assertEqual(r.status, 200, r)
        j = w.wait_state(tid, ("done", "failed"), timeout=10)
        self.assertLess(time.monotonic() - t0, 10)
        self.assertEqual(j["state"], "failed", j)
        self.assertEqual(j["result"]["error"], "interrupted")
        name, text = w.wait_response(tid)
        self.assertTrue(name.endswith("-failed.md"), name)
        self.assertIn("interrupted", text)
        # the bot is free again
        self.assertEqual(w.wait_status(lambda s: s["status"] == "idle")["status"], "idle")

    def test_interrupt_when_idle(self):
        w = self.new_worker()
        r = w.post("/api/interrupt")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(w.status()["tasks_failed"], 0)


class Connections(WorkerTestCase):
    """Keep-alive, pipelining, HTTP/1.0, malformed requests."""

    def test_pipelining_answers_in_order(self):
        w = self.new_worker()
        body = json.dumps({"command": "pipelined", "task_id": "pipe-1"}).encode()
        req = (b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n"
               b"POST /api/task HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
               b"Content-Length: %d\r\n\r\n%s"
               b"GET /status HTTP/1.1\r\nHost: localhost\r\n\r\n"
               b"GET /nope HTTP/1.1\r\nHost: localhost\r\n\r\n") % (len(body), body)
        answers = raw_exchange(w.port, req, count=4)
        (s1, _, b1, _), (s2, _, b2, _), (s3, _, b3, _), (s4, _, b4, _) = answers
        self.assertEqual(s1, 200)
        self.assertEqual(json.loads(b1)["status"], "ok")
        self.assertEqual(s2, 202, b2)
        self.assertEqual(json.loads(b2)["task_id"], "pipe-1")
        self.assertEqual(s3, 200)
        self.assertIn("uptime_seconds", json.loads(b3))
        self.assertEqual(s4, 404)

    def test_keep_alive_serial_requests(self):
        w = self.new_worker()
        with raw_connect(w.port) as s:
            f = s.makefile("rb")
            for i in range(3):
                s.sendall(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
                status, headers, body, version = read_http_response(f)
                self.assertEqual(status, 200)
                self.assertEqual(version, "HTTP/1.1")
                self.assertNotEqual(headers.get("connection", "").lower(), "close")

    def test_http_1_0(self):
        w = self.new_worker()
        with raw_connect(w.port) as s:
            s.sendall(b"GET /health HTTP/1.0\r\n\r\n")
            data = read_until_close(s)
        self.assertRegex(data, rb"^HTTP/1\.[01] 200 ")
        body = data.split(b"\r\n\r\n", 1)[1]
        self.assertEqual(json.loads(body)["status"], "ok")
        r = w.get("/status", extra_args=["--http1.0"])
        self.assertEqual(r.status, 200, r)
        r = w.post("/api/task", {"command": "over 1.0"}, extra_args=["--http1.0"])
        self.assertEqual(r.status, 202, r)

    def test_malformed_request_gets_400_and_server_keeps_serving(self):
        w = self.new_worker()
        for junk in (b"GARBAGE\r\n\r\n", b"GET / HTTP/9.9 extra\r\n\r\n",
                     b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40):
            with raw_connect(w.port) as s:
                s.sendall(junk)
                data = read_until_close(s)
            if data:
                self.assertRegex(data, rb"^HTTP/1\.[01] 4\d\d ")
        self.assertEqual(w.get("/health").status, 200)

    def test_half_sent_request_does_not_block_others(self):
        w = self.new_worker()
        with raw_connect(w.port) as s:
            s.sendall(b"GET /status HTTP/1.1\r\nHost: localhost\r\n")   # never finished
            for _ in range(3):
                self.assertEqual(w.get("/health").status, 200)

    def test_header_timeout_closes_slow_client(self):
        w = self.new_worker("--header-timeout", "1")
        with raw_connect(w.port, timeout=8) as s:
            s.sendall(b"GET /status HTTP/1.1\r\n")
            t0 = time.monotonic()
            data = read_until_close(s)
            self.assertLess(time.monotonic() - t0, 7.5, "not closed after the header timeout")
        if data:
            self.assertRegex(data, rb"^HTTP/1\.[01] 408 ")


class Auth(WorkerTestCase):
    """§7 bearer token."""

    def check_token(self, w, token):
        for path in ("/status", "/api/task/x"):
            with self.subTest(path=path, token=None):
                r = w.get(path)
                self.assertEqual(r.status, 401, r)
                self.assertIn("detail", r.json())
            with self.subTest(path=path, token="wrong"):
                self.assertEqual(w.get(path, token="wrong").status, 401)
        r = w.post("/api/task", {"command": "x"})
        self.assertEqual(r.status, 401, r)
        r = w.post("/api/task", {"command": "x"}, token=token + "x")
        self.assertEqual(r.status, 401, r)
        self.assertEqual(w.listdir("_realtime"), [])
        self.assertEqual(w.get("/health").status, 200)
        self.assertEqual(w.get("/status", token=token).status, 200)
        r = w.post("/api/task", {"command": "x"}, token=token)
        self.assertEqual(r.status, 202, r)

    def test_401_with_token_flag(self):
        w = self.new_worker("--token", "s3cret-token")
        self.check_token(w, "s3cret-token")

    def test_401_with_hive_token_env(self):
        w = self.new_worker(env={"HIVE_TOKEN": "env-token"})
        self.check_token(w, "env-token")


class LeanStart(WorkerTestCase):
    """What a worker does not pay for until it needs it (issue 14): libcrypto is
    mapped at the first WebSocket handshake, the sync thread starts with the
    first task to make durable."""

    @staticmethod
    def maps_libcrypto(pid):
        with open("/proc/%d/maps" % pid) as f:
            return "libcrypto" in f.read()

    @staticmethod
    def threads(pid):
        with open("/proc/%d/status" % pid) as f:
            return int(re.search(r"^Threads:\s+(\d+)", f.read(), re.M).group(1))

    def ws_accept(self, port):
        """A raw handshake; the Sec-WebSocket-Accept header the worker sent."""
        s = raw_connect(port)
        try:
            key = base64.b64encode(os.urandom(16)).decode()
            s.sendall(("GET /ws HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
                       "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                       "Sec-WebSocket-Version: 13\r\n\r\n" % (port, key)).encode())
            f = s.makefile("rb")
            self.assertIn(b" 101 ", f.readline())
            accept = None
            for line in iter(f.readline, b"\r\n"):
                name, _, value = line.decode().partition(":")
                if name.strip().lower() == "sec-websocket-accept":
                    accept = value.strip()
            guid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
            want = base64.b64encode(hashlib.sha1((key + guid).encode()).digest()).decode()
            return accept, want
        finally:
            s.close()

    def test_libcrypto_and_sync_thread_come_with_first_use(self):
        w = self.new_worker()
        self.assertEqual(w.status()["status"], "idle")
        self.assertFalse(self.maps_libcrypto(w.proc.pid), "libcrypto mapped at start")
        self.assertEqual(self.threads(w.proc.pid), 1, "a thread besides the loop at start")
        t = w.submit("lean start")["task_id"]
        self.assertEqual(w.wait_state(t, ("done", "failed"))["state"], "done")
        self.assertEqual(self.threads(w.proc.pid), 2)
        accept, want = self.ws_accept(w.port)
        self.assertEqual(accept, want)
        self.assertTrue(self.maps_libcrypto(w.proc.pid))
        accept, want = self.ws_accept(w.port)  # loaded once, still right
        self.assertEqual(accept, want)


if __name__ == "__main__":
    main()
