"""Answers at their edges (issue 10, cases 6, 13, 15 and 20; SPEC §3, §4, §5).

- Ids are idempotency keys: a realtime submission whose id this bot has
  queued (a file task included), running or already answered (before a
  restart too) gets 409 {"detail","task_id","state"}; over WebSocket an error
  message with status_code 409 and the state. File tasks stay files: two task
  files naming one id are two tasks, each answered once.
- GET /api/task/<id> of an id answered twice (two file tasks) gives the
  newest answer, after a restart too.
- Memory stays bounded: finished tasks' outputs are read back from their
  response files, not kept (30 tasks of 8 MB output; RSS growth measured from
  /proc, far below what keeping them costs).
- A look-up by id reads the bot's index, never the shared responses folder:
  a response file dropped there by hand is not found, and with 20,000 files
  present 20 look-ups of unknown ids make no getdents call (counted by
  strace when it can attach; skipped with the reason otherwise).

Run: HIVE_BUILD_DIR=build /usr/bin/python3 tests/e2e/test_edges_answers.py
"""

import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hive_e2e import (BOT, WorkerTestCase, main, proc_status, run_async, wait_for,  # noqa: E402
                      ws_recv_json)

try:
    import websockets
except ImportError:  # pragma: no cover - Debian's python3 has it
    websockets = None

MB8 = 8_000_000


def response_text(bot, task_id, output, to="user"):
    """A whole response file as hive writes one (SPEC §2.2)."""
    return ("# RESPONSE: %s - Complete\n\n**From:** %s\n**To:** %s\n**Task:** %s\n"
            "**Source:** http\n**Status:** \u2713 SUCCESS\n**Duration:** 0.1 seconds\n"
            "**Timestamp:** 2026-01-01T00:00:00.000Z\n\n## Output\n\n%s\n\n"
            "## Files Modified\n\n- None\n\n---\n\n"
            "**Response generated:** 2026-01-01T00:00:00\n" % (task_id, bot, to, task_id, output))


def vm_rss_kib(pid):
    return proc_status(pid, "VmRSS")


class IdempotencyKeys(WorkerTestCase):
    """SPEC §3: an id is an idempotency key; §4 409 {"detail","task_id","state"}."""

    def assert_409(self, w, task_id, state):
        r = w.post("/api/task", {"command": "again", "task_id": task_id})
        self.assertEqual(r.status, 409, r)
        body = r.json()
        self.assertEqual(body.get("task_id"), task_id, body)
        self.assertEqual(body.get("state"), state, body)
        self.assertIn(task_id, body.get("detail", ""), body)
        return body

    def test_409_for_a_queued_file_task(self):
        w = self.new_worker()
        self.assertEqual(w.post("/api/pause").status, 200)
        w.write_task("filedup.md", "---\ntask_id: file-dup\nfrom: alice\n---\nrun once\n")
        w.wait_state("file-dup", "queued")
        self.assert_409(w, "file-dup", "queued")
        self.assertEqual(w.status()["queue"]["realtime"], 0)
        self.assertEqual(w.post("/api/resume").status, 200)
        j = w.wait_state("file-dup", "done")
        self.assertEqual(j["source"], "file", j)
        time.sleep(0.5)
        self.assertEqual(len(w.responses("file-dup")), 1, w.responses())
        self.assertEqual(w.status()["tasks_processed"], 1)

    def test_409_for_a_running_task(self):
        w = self.new_worker("--mock-delay-ms", "1500")
        w.submit("first", task_id="run-dup")
        w.wait_state("run-dup", "running")
        self.assert_409(w, "run-dup", "running")
        w.wait_state("run-dup", "done")
        time.sleep(0.3)
        self.assertEqual(len(w.responses("run-dup")), 1, w.responses())

    def test_409_for_an_answered_task_also_after_a_restart(self):
        w = self.new_worker()
        w.submit("first", task_id="ans-dup")
        w.submit("MOCK-FAIL", task_id="ans-fail")
        w.wait_state("ans-dup", "done")
        w.wait_state("ans-fail", "failed")
        self.assert_409(w, "ans-dup", "done")
        self.assert_409(w, "ans-fail", "failed")
        self.assertEqual(w.stop(), (0, False))
        w2 = self.restart(w)
        self.assert_409(w2, "ans-dup", "done")
        self.assert_409(w2, "ans-fail", "failed")
        # A killed worker too: the index is on disk, not in memory.
        w2.kill()
        w3 = self.restart(w2)
        self.assert_409(w3, "ans-dup", "done")
        time.sleep(0.3)
        self.assertEqual(len(w3.responses("ans-dup")), 1, w3.responses())
        self.assertEqual(len(w3.responses("ans-fail")), 1, w3.responses())
        self.assertEqual(w3.status()["tasks_processed"], 0)

    def test_websocket_409_with_the_state(self):
        if websockets is None:
            self.skipTest("python3-websockets is not installed")
        w = self.new_worker()
        w.submit("first", task_id="ws-ans")
        w.wait_state("ws-ans", "done")

        async def go():
            async with websockets.connect(w.ws_url, open_timeout=10, close_timeout=5,
                                          ping_interval=None) as ws:
                await ws.send(json.dumps({"type": "task", "command": "b", "task_id": "ws-ans"}))
                err = await ws_recv_json(ws)
                await ws.send(json.dumps({"type": "ping"}))
                pong = await ws_recv_json(ws)
                return err, pong
        err, pong = run_async(go())
        self.assertEqual(err.get("type"), "error", err)
        self.assertEqual(err.get("status_code"), 409, err)
        self.assertEqual(err.get("state"), "done", err)
        self.assertEqual(err.get("task_id"), "ws-ans", err)
        self.assertIn("ws-ans", err.get("message", ""), err)
        self.assertEqual(pong.get("type"), "pong", pong)
        time.sleep(0.3)
        self.assertEqual(len(w.responses("ws-ans")), 1, w.responses())


class ReusedIds(WorkerTestCase):
    """Two task files naming one id: two tasks, two answers; GET gives the newest."""

    def test_file_tasks_of_one_id_answered_twice_newest_read_back(self):
        # The two answers must share the minute, so that the first answer's
        # name ("...-zeta-...") sorts after the newest's ("...-alpha-..."):
        # whoever picks the greatest name reads the older answer.
        now = time.time()
        if now % 60 > 45:
            time.sleep(61 - now % 60)
        w = self.new_worker("--mock-delay-ms", "200")
        t0 = time.time() - 100
        w.write_task("reuse-a.md", "---\ntask_id: reused\nfrom: zeta\n---\nFIRST-RUN\n", mtime=t0)
        w.write_task("reuse-b.md", "---\ntask_id: reused\nfrom: alpha\n---\nSECOND-RUN\n",
                     mtime=t0 + 1)
        names = wait_for(lambda: len(w.responses("reused")) == 2 and w.responses("reused"),
                         what="two responses for the reused id")
        newest = [n for n in names if "-alpha-" in n]
        self.assertEqual(len(newest), 1, names)
        self.assertTrue(any("-zeta-" in n for n in names), names)

        def check(worker):
            r = worker.task("reused")
            self.assertEqual(r.status, 200, r)
            j = r.json()
            self.assertEqual(j["state"], "done", j)
            self.assertEqual(j["source"], "file", j)
            self.assertEqual(j["result"]["response_file"], newest[0], j)
            self.assertIn("SECOND-RUN", j["result"]["output"], j)
            self.assertNotIn("FIRST-RUN", j["result"]["output"], j)
        wait_for(lambda: w.status()["tasks_processed"] == 2, what="both tasks reported")
        check(w)
        self.assertEqual(w.stop(), (0, False))
        w2 = self.restart(w, "--mock-delay-ms", "200")
        check(w2)
        # The index removed by hand is rebuilt, and says the same.
        w2.kill()
        shutil.rmtree(os.path.join(w2.responses_dir, ".index"))
        w3 = self.restart(w2, "--mock-delay-ms", "200")
        check(w3)
        self.assertEqual(sorted(w3.responses("reused")), sorted(names))


class BoundedMemory(WorkerTestCase):
    """SPEC §3: memory per worker stays bounded whatever the tasks print."""

    def test_outputs_are_not_kept_in_memory(self):
        big = os.path.join(self.tmp, "big.txt")
        with open(big, "wb") as f:
            f.write((b"0123456789abcdef" * 4096 + b"\n") * (MB8 // 65537 + 1))
        # ASan keeps freed memory in a quarantine (256 MiB by default): keep
        # it small so RSS shows what the worker holds.
        asan = os.environ.get("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
        env = {"ASAN_OPTIONS": asan + ":quarantine_size_mb=8"}
        w = self.new_worker("--adapter-type", "cli", "--", "head", "-c", str(MB8), big, env=env)

        def run(first, count):
            for i in range(first, first + count):
                w.submit("x", task_id="big-%d" % i)
            wait_for(lambda: w.status()["tasks_processed"] == first + count - 1, timeout=120,
                     what="%d tasks done" % (first + count - 1))
        run(1, 5)
        before = vm_rss_kib(w.proc.pid)
        run(6, 25)
        after = vm_rss_kib(w.proc.pid)
        if os.environ.get("HIVE_E2E_VERBOSE"):
            sys.stderr.write("RSS after 5 tasks %d KiB, after 30 %d KiB\n" % (before, after))
        # Keeping the 25 further outputs would add 25 x 8 MB = 195 MiB.
        self.assertLess(after - before, 48 * 1024,
                        "RSS grew from %d KiB to %d KiB over 25 tasks of 8 MB output"
                        % (before, after))
        # The outputs are read back from the response files, whole.
        for tid in ("big-1", "big-30"):
            j = w.task(tid).json()
            self.assertEqual(j["state"], "done", j)
            self.assertEqual(len(j["result"]["output"]), MB8, tid)
        with open(big, "rb") as f:
            self.assertEqual(j["result"]["output"].encode(), f.read(MB8))


class LookupsDoNotScan(WorkerTestCase):
    """A look-up by id reads the bot's index (one readlinkat), not the shared folder."""

    def test_a_response_file_dropped_by_hand_is_not_looked_for(self):
        w = self.new_worker()
        w.submit("real", task_id="real-1")
        w.wait_state("real-1", "done")
        name = "2026-01-01-0000-%s-user-RESPONSE-ghost-complete.md" % BOT
        with open(os.path.join(w.responses_dir, name), "w") as f:
            f.write(response_text(BOT, "ghost", "boo"))
        self.assertEqual(w.task("ghost").status, 404)
        self.assertEqual(w.task("real-1").status, 200)
        # Nor is it an answer of this bot for the idempotency check.
        w.submit("not a ghost", task_id="ghost")
        w.wait_state("ghost", "done")
        self.assertNotIn("boo", w.task("ghost").json()["result"]["output"])

    def test_unknown_ids_make_no_getdents_with_20000_files(self):
        strace = shutil.which("strace")
        if not strace:
            self.skipTest("strace is not installed")
        responses = os.path.join(self.tmp, ".deia", "hive", "responses")
        os.makedirs(responses)
        for i in range(20000):
            name = "2026-01-01-0000-BOT-OTHER-user-RESPONSE-T%05d-complete.md" % i
            open(os.path.join(responses, name), "w").close()
        w = self.new_worker()
        out = os.path.join(self.tmp, "strace.out")
        tracer = subprocess.Popen([strace, "-f", "-c", "-o", out, "-e",
                                   "trace=getdents64,getdents", "-p", str(w.proc.pid)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            # strace says "Process N attached" once it traces (a line per thread).
            attached = b""
            deadline = time.monotonic() + 10
            while b"attached" not in attached and time.monotonic() < deadline:
                ready, _, _ = select.select([tracer.stderr], [], [], 0.2)
                if ready:
                    chunk = os.read(tracer.stderr.fileno(), 4096)
                    if not chunk:
                        break
                    attached += chunk
            if b"attached" not in attached:
                self.skipTest("strace cannot attach here: %r" % attached[-300:])
            lookups = 20
            for i in range(lookups):
                self.assertEqual(w.task("missing-%d" % i).status, 404)
            self.assertEqual(w.get("/health").status, 200)
        finally:
            if tracer.poll() is None:
                tracer.send_signal(signal.SIGINT)
            try:
                tracer.wait(10)
            except subprocess.TimeoutExpired:
                tracer.kill()
                tracer.wait()
            tracer.stderr.close()
        with open(out) as f:
            summary = f.read()
        calls = 0
        for line in summary.splitlines():
            m = re.match(r"^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(getdents64|getdents)$",
                         line)
            if m:
                calls += int(m.group(1))
        # A scan of 20,000 names takes dozens of getdents per look-up; the
        # slow queue rescan may add one or two in the window.
        self.assertLess(calls, lookups, summary)


if __name__ == "__main__":
    main()
