"""hive-worker's files and durability end to end (SPEC §2, §3, §3.1, §6.2 stop).

File queue and response files, order of work, crash recovery (SIGKILL at any
moment loses no accepted task and yields exactly one response), adapter
timeouts, SIGTERM, the activity log.

Run: HIVE_BUILD_DIR=build-e2e /usr/bin/python3 tests/e2e/test_worker_durability.py
"""

import json
import os
import re
import shutil
import subprocess
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hive_e2e import (ACTIVITY_EVENTS, ACTIVITY_KEYS, BOT, WORKER_BIN, WorkerTestCase,  # noqa: E402
                      descendants, main, parse_response, run_async, wait_for, ws_recv_json)

ISO_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")


def started_order(w):
    return [e["task_id"] for e in w.activity() if e["event_type"] == "task_started"]


class FileTasks(WorkerTestCase):
    """§2.1 task files → §2.2 response files."""

    def check_layout(self, text, task_id, to, source, success):
        """The response text follows SPEC §2.2 line by line."""
        lines = text.split("\n")
        self.assertEqual(lines[0], "# RESPONSE: %s - %s" % (task_id,
                                                           "Complete" if success else "Failed"))
        self.assertEqual(lines[1], "")
        self.assertEqual(lines[2], "**From:** " + BOT)
        self.assertEqual(lines[3], "**To:** " + to)
        self.assertEqual(lines[4], "**Task:** " + task_id)
        self.assertEqual(lines[5], "**Source:** " + source)
        self.assertEqual(lines[6], "**Status:** " + ("\u2713 SUCCESS" if success
                                                    else "\u2717 FAILED"))
        self.assertRegex(lines[7], r"^\*\*Duration:\*\* \d+\.\d seconds$")
        self.assertRegex(lines[8], r"^\*\*Timestamp:\*\* \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
        self.assertEqual(lines[9], "")
        self.assertEqual(lines[10], "## Output")
        self.assertIn("\n\n## Files Modified\n\n- None\n", text)
        self.assertRegex(text, r"\n---\n\n\*\*Response generated:\*\* \S+\n$")
        self.assertEqual("\n## Error\n" in text, not success)

    def test_front_matter_task(self):
        w = self.new_worker()
        w.write_task("anything.md", "---\ntask_id: fm-1\nto: %s\nfrom: alice\npriority: P1\n"
                     "created_at: 2025-01-01T00:00:00Z\n---\nDo the front matter thing\n" % BOT)
        name, text = w.wait_response("fm-1")
        self.assertRegex(name, r"^\d{4}-\d\d-\d\d-\d{4}-%s-alice-RESPONSE-fm-1-complete\.md$"
                         % BOT)
        self.check_layout(text, "fm-1", "alice", "file", True)
        out = parse_response(text)["output"]
        self.assertIn("Do the front matter thing", out)
        self.assertNotIn("created_at", out, "the front matter is not part of the content")
        wait_for(lambda: w.listdir("_archive") == ["anything.md"], what="archived")
        self.assertEqual([n for n in os.listdir(w.queue_dir) if n.endswith(".md")], [])
        self.assertEqual(w.listdir("_active"), [])
        j = w.wait_state("fm-1", "done")
        self.assertEqual(j["source"], "file")
        self.assertEqual(j["result"]["response_file"], name)
        time.sleep(0.5)
        self.assertEqual(w.responses("fm-1"), [name])

    def test_markdown_form_task(self):
        w = self.new_worker()
        w.write_task("md-task-7.md", "# Fix the widget\n\n**from:** bob\n**Priority:** P0\n\n"
                     "Please fix it.\n")
        name, text = w.wait_response("md-task-7")
        self.assertIn("-%s-bob-RESPONSE-md-task-7-complete" % BOT, name)
        self.check_layout(text, "md-task-7", "bob", "file", True)
        self.assertIn("Fix the widget", parse_response(text)["output"])
        wait_for(lambda: w.listdir("_archive") == ["md-task-7.md"], what="archived")
        time.sleep(0.5)
        self.assertEqual(len(w.responses("md-task-7")), 1)

    def test_markdown_defaults_from_unknown(self):
        w = self.new_worker()
        w.write_task("plain.md", "just a line\n")
        name, text = w.wait_response("plain")
        self.assertIn("-%s-unknown-RESPONSE-plain-complete" % BOT, name)
        self.check_layout(text, "plain", "unknown", "file", True)

    def test_http_task_response(self):
        w = self.new_worker()
        tid = w.submit("over http")["task_id"]
        name, text = w.wait_response(tid)
        self.assertIn("-%s-user-RESPONSE-%s-complete" % (BOT, tid), name)
        self.check_layout(text, tid, "user", "http", True)
        wait_for(lambda: w.listdir("_archive") == [tid + ".json"], what="archived")
        self.assertEqual(w.listdir("_realtime"), [])
        time.sleep(0.3)
        self.assertEqual(len(w.responses(tid)), 1)

    def test_websocket_task_response(self):
        import websockets
        w = self.new_worker()

        async def go():
            async with websockets.connect(w.ws_url, open_timeout=10, ping_interval=None) as ws:
                await ws.send(json.dumps({"type": "task", "command": "over ws"}))
                return (await ws_recv_json(ws))["task_id"]
        tid = run_async(go())
        name, text = w.wait_response(tid)
        self.check_layout(text, tid, "user", "websocket", True)
        time.sleep(0.3)
        self.assertEqual(len(w.responses(tid)), 1)

    def test_failed_file_task(self):
        w = self.new_worker()
        w.write_task("will-fail.md", "---\ntask_id: ff-1\nfrom: carol\n---\nplease\nMOCK-FAIL\n")
        name, text = w.wait_response("ff-1")
        self.assertTrue(name.endswith("-carol-RESPONSE-ff-1-failed.md"), name)
        self.check_layout(text, "ff-1", "carol", "file", False)
        err = parse_response(text)["error"]
        self.assertTrue(err)
        wait_for(lambda: w.listdir("_archive") == ["will-fail.md"], what="archived")
        self.assertEqual(w.status()["tasks_failed"], 1)

    def check_unparseable(self, name, data):
        w = self.new_worker("--rescan", "0.3")
        stem = name[:-3]
        w.write_task(name, data)
        resp, text = w.wait_response(stem)
        self.assertTrue(resp.endswith("-failed.md"), resp)
        fields = parse_response(text)
        self.assertEqual(fields["Source"], "file")
        self.assertTrue(fields["has_error_section"])
        self.assertTrue(fields["error"])
        wait_for(lambda: w.listdir("_archive") == [name], what="archived")
        self.assertFalse(os.path.exists(os.path.join(w.queue_dir, name)))
        time.sleep(1.2)        # several rescans later: not retried
        self.assertEqual(w.responses(stem), [resp])
        self.assertEqual(w.listdir("_active"), [])
        self.assertTrue(w.alive())
        return w, resp, text

    def test_unterminated_front_matter_fails_once(self):
        self.check_unparseable("broken-fm.md", "---\ntask_id: x\nfrom: me\nno end marker\n")

    def test_invalid_utf8_fails_once(self):
        self.check_unparseable("bad-utf8.md", b"# Title\n\nbad bytes \xff\xfe here\n")

    def test_unparseable_task_response_addressed_to_unknown(self):
        """SPEC §2.1 default `from` is "unknown"; an unparseable task has no from."""
        w, resp, text = self.check_unparseable("nofrom.md", b"\x00\x01binary junk")
        self.assertIn("-%s-unknown-RESPONSE-nofrom-failed" % BOT, resp)
        self.assertEqual(parse_response(text)["To"], "unknown")

    def test_non_task_files_are_ignored(self):
        w = self.new_worker("--rescan", "0.3")
        os.makedirs(os.path.join(w.queue_dir, "sub"), exist_ok=True)
        w.write_task("notes.txt", "not a task\n")
        w.write_task(".hidden.md", "not a task\n")
        with open(os.path.join(w.queue_dir, "sub", "nested.md"), "w") as f:
            f.write("not a task either\n")
        w.write_task("real.md", "a task\n")
        w.wait_response("real")
        time.sleep(1.0)
        self.assertEqual(len(w.responses()), 1, w.responses())
        self.assertTrue(os.path.exists(os.path.join(w.queue_dir, "notes.txt")))
        self.assertTrue(os.path.exists(os.path.join(w.queue_dir, "sub", "nested.md")))

    def test_file_written_in_place_is_not_read_half_written(self):
        w = self.new_worker("--file-min-age", "1.0")
        path = os.path.join(w.queue_dir, "slow-writer.md")
        with open(path, "w") as f:
            f.write("Part one\n")
            f.flush()
            time.sleep(0.5)
            f.write("Part two\n")
        name, text = w.wait_response("slow-writer")
        out = parse_response(text)["output"]
        self.assertIn("Part one", out)
        self.assertIn("Part two", out)

    def test_task_dropped_while_running_is_picked_up(self):
        # "first" runs until the test lets it go, so it is surely still running
        # when "second" lands and while the worker queues it (a fixed delay
        # could be over before a loaded machine's poll saw "running").
        # Without an inotify instance (the per-user limit, reached when a
        # machine runs ~1000 bots as one user) the worker sees new files only
        # at its rescan, 30 s by default: longer than the waits here.
        gate = os.path.join(self.tmp, "let-first-finish")
        w = self.new_worker("--rescan", "1", "--adapter-type", "cli", "--", "sh", "-c",
                            'cat >/dev/null; if [ "$HIVE_TASK_ID" = first ]; then '
                            'while [ ! -e "$0" ]; do sleep 0.05; done; fi; echo done', gate)
        w.write_task("first.md", "first\n")
        w.wait_state("first", "running")
        w.write_task("second.md", "second\n")
        w.wait_state("second", "queued")
        self.assertEqual(w.task("first").json()["state"], "running")
        open(gate, "w").close()
        w.wait_response("first")
        w.wait_response("second")


class Order(WorkerTestCase):
    """§3: priority order of file tasks; realtime before file."""

    def test_file_priority_order(self):
        w = self.new_worker()
        os.makedirs(os.path.dirname(w.pause_file), exist_ok=True)
        open(w.pause_file, "w").close()
        wait_for(lambda: w.status()["status"] == "paused", what="paused")
        now = time.time()
        w.write_task("c-bad.md", "---\ntask_id: prio-bad\npriority: urgent\n---\nx\n",
                     mtime=now - 30)
        w.write_task("b-p2.md", "---\ntask_id: prio-p2\npriority: P2\n---\nx\n", mtime=now - 20)
        w.write_task("d-p2-newer.md", "---\ntask_id: prio-p2b\npriority: P2\n---\nx\n",
                     mtime=now - 10)
        w.write_task("a-p0.md", "---\ntask_id: prio-p0\npriority: P0\n---\nx\n", mtime=now - 5)
        w.write_task("e-p1.md", "# P1 task\n**Priority:** P1\n", mtime=now - 1)
        w.wait_status(lambda s: s["queue"]["file"] == 5, what="5 file tasks queued")
        time.sleep(0.3)
        self.assertEqual(w.responses(), [])
        os.unlink(w.pause_file)
        for tid in ("prio-bad", "prio-p2", "prio-p2b", "prio-p0", "e-p1"):
            w.wait_response(tid)
            w.wait_state(tid, ("done", "failed"))  # logged once durable (SPEC 2.3)
        self.assertEqual(started_order(w), ["prio-p0", "e-p1", "prio-p2", "prio-p2b",
                                            "prio-bad"])

    def test_realtime_before_file(self):
        w = self.new_worker()
        r = w.post("/api/pause")
        self.assertEqual(r.status, 200, r)
        w.write_task("file-first.md", "---\ntask_id: file-p0\npriority: P0\n---\nfile\n",
                     mtime=time.time() - 60)
        w.wait_status(lambda s: s["queue"]["file"] == 1, what="file task queued")
        w.submit("low realtime", task_id="rt-p2", priority="P2")
        w.submit("high realtime", task_id="rt-p0", priority="P0")
        self.assertEqual(w.post("/api/resume").status, 200)
        for tid in ("file-p0", "rt-p2", "rt-p0"):
            w.wait_response(tid)
            # Reported (and logged) once durable: a response file is there
            # a group commit earlier, and the next task's start is logged
            # after the end before it (SPEC 2.3).
            w.wait_state(tid, ("done",))
        self.assertEqual(started_order(w), ["rt-p0", "rt-p2", "file-p0"])

    def test_cooldown_between_tasks(self):
        w = self.new_worker("--cooldown", "1")
        w.submit("a", task_id="cool-a")
        w.submit("b", task_id="cool-b")
        w.wait_state("cool-b", "done", timeout=15)
        ev = {e["task_id"]: e for e in w.activity() if e["event_type"] in ("task_started",)}
        from datetime import datetime
        t = {k: datetime.strptime(v["timestamp"].rstrip("Z")[:26], "%Y-%m-%dT%H:%M:%S.%f")
             for k, v in ev.items()}
        self.assertGreaterEqual((t["cool-b"] - t["cool-a"]).total_seconds(), 0.9)

    def test_cli_only_mode_runs_files_without_a_port(self):
        w = self.new_worker("--mode", "cli-only", port=None, wait_listen=False)
        w.write_task("cli-only.md", "offline task\n")
        name, text = w.wait_response("cli-only")
        self.assertIn("**Source:** file", text)
        self.assertNotIn("listening on", w.log_text())

    def test_safety_net_rescan_follows_the_watch(self):
        # With inotify watching a local folder the rescan is only a guard
        # (300 s: an idle bot wakes for nothing); without a watch it is what
        # sees new files (30 s); --rescan is taken as given.
        w = self.new_worker()
        self.assertIn("queue folder: safety-net rescan every 300 s (inotify watches it)",
                      w.log_text())
        w.write_task("watched.md", "seen by inotify\n")
        w.wait_response("watched")
        w.stop()
        w = self.new_worker("--rescan", "0.5")
        self.assertIn("safety-net rescan every 0.5 s (--rescan)", w.log_text())
        w.stop()
        cc = shutil.which("cc") or shutil.which("gcc")
        if not cc:
            self.skipTest("no C compiler for the inotify shim")
        if "asan" in os.path.basename(os.path.abspath(os.path.join(WORKER_BIN, "../.."))):
            self.skipTest("LD_PRELOAD before the ASan runtime is refused")
        shim_c, shim = os.path.join(self.tmp, "noinotify.c"), os.path.join(self.tmp, "noinotify.so")
        with open(shim_c, "w") as f:
            f.write("#include <errno.h>\nint inotify_init1(int flags)\n"
                    "{ (void)flags; errno = EMFILE; return -1; }\n")
        subprocess.run([cc, "-shared", "-fPIC", "-o", shim, shim_c], check=True, timeout=60)
        w = self.new_worker(env={"LD_PRELOAD": shim})
        self.assertIn("queue folder: safety-net rescan every 30 s (no inotify watch)",
                      w.log_text())

    def test_websocket_only_mode_ignores_files(self):
        w = self.new_worker("--mode", "websocket-only", "--rescan", "0.3")
        w.write_task("ignored.md", "not for this mode\n")
        tid = w.submit("http still works")["task_id"]
        w.wait_response(tid)
        time.sleep(0.8)
        self.assertEqual(w.responses("ignored"), [])
        self.assertEqual(w.status()["mode"], "websocket-only")


class Crash(WorkerTestCase):
    """§3 durability: SIGKILL at any moment loses no accepted task, one response each."""

    def test_sigkill_during_running_http_task(self):
        args = ("--adapter-type", "cli", "--", "sleep", "2")
        w = self.new_worker(*args)
        tid = w.submit("survive me", task_id="crash-run")["task_id"]
        w.wait_state(tid, "running")
        self.assertEqual(w.listdir("_active"), [tid + ".json"])
        w.kill()
        self.assertEqual(w.responses(tid), [])
        w2 = self.restart(w, *args)
        j = w2.wait_state(tid, ("done", "failed"), timeout=15)
        self.assertEqual(j["state"], "done", j)
        self.assertEqual(j["source"], "http")
        time.sleep(0.5)
        self.assertEqual(len(w2.responses(tid)), 1, w2.responses())
        self.assertIn("**Source:** http", w2.read_response(w2.responses(tid)[0]))
        self.assertEqual(w2.listdir("_active"), [])
        self.assertEqual(w2.listdir("_realtime"), [])
        self.assertEqual(w2.listdir("_archive"), [tid + ".json"])
        # and a further restart runs nothing again
        w2.stop()
        w3 = self.restart(w2, *args)
        time.sleep(0.5)
        self.assertEqual(w3.status()["status"], "idle")
        self.assertEqual(len(w3.responses(tid)), 1)
        j = w3.task(tid).json()      # read back from the response file
        self.assertEqual(j["state"], "done", j)
        self.assertEqual(j["result"]["response_file"], w3.responses(tid)[0])

    def test_sigkill_during_running_file_task(self):
        args = ("--adapter-type", "cli", "--", "sleep", "2")
        w = self.new_worker(*args)
        w.write_task("crash-file.md", "---\ntask_id: crash-file\n---\nwork\n")
        w.wait_state("crash-file", "running")
        self.assertEqual(w.listdir("_active"), ["crash-file.md"])
        w.kill()
        w2 = self.restart(w, *args)
        w2.wait_response("crash-file", timeout=15)
        wait_for(lambda: w2.listdir("_archive") == ["crash-file.md"], what="archived")
        time.sleep(0.5)
        self.assertEqual(len(w2.responses("crash-file")), 1)
        self.assertEqual(w2.listdir("_active"), [])

    def test_sigkill_between_acceptance_and_start(self):
        import websockets
        w = self.new_worker()
        os.makedirs(os.path.dirname(w.pause_file), exist_ok=True)
        open(w.pause_file, "w").close()
        wait_for(lambda: w.status()["status"] == "paused", what="paused")
        tid = w.submit("accepted, not started", task_id="crash-acc")["task_id"]

        async def go():
            async with websockets.connect(w.ws_url, open_timeout=10, ping_interval=None) as ws:
                await ws.send(json.dumps({"type": "task", "command": "ws accepted",
                                          "task_id": "crash-ws"}))
                return await ws_recv_json(ws)
        ack = run_async(go())
        self.assertEqual(ack["type"], "ack")
        self.assertEqual(w.listdir("_realtime"), ["crash-acc.json", "crash-ws.json"])
        w.kill()
        os.unlink(w.pause_file)
        w2 = self.restart(w)
        for t in (tid, "crash-ws"):
            j = w2.wait_state(t, ("done", "failed"))
            self.assertEqual(j["state"], "done", j)
        time.sleep(0.3)
        self.assertEqual(len(w2.responses(tid)), 1)
        self.assertEqual(len(w2.responses("crash-ws")), 1)
        self.assertIn("**Source:** websocket", w2.read_response(w2.responses("crash-ws")[0]))
        self.assertEqual(w2.listdir("_realtime"), [])

    def test_sigkill_right_after_many_acks(self):
        """Every 202 is durable: kill right after a burst, all run after restart."""
        w = self.new_worker("--mock-delay-ms", "300")
        ids = [w.submit("burst %d" % i, task_id="burst-%d" % i)["task_id"] for i in range(8)]
        w.kill()
        w2 = self.restart(w)
        for tid in ids:
            w2.wait_response(tid)
        time.sleep(0.3)
        for tid in ids:
            self.assertEqual(len(w2.responses(tid)), 1, tid)


class Adapter(WorkerTestCase):
    """§3.1 cli adapter timeout."""

    def test_hanging_cli_adapter_times_out(self):
        w = self.new_worker("--adapter-type", "cli", "--timeout", "1", "--", "sleep", "60")
        tid = w.submit("hang", task_id="hang-1")["task_id"]
        w.wait_state(tid, "running")
        j = w.wait_state(tid, ("done", "failed"), timeout=15)
        self.assertEqual(j["state"], "failed", j)
        self.assertEqual(j["result"]["error"], "timed out after 1 s")
        name, text = w.wait_response(tid)
        self.assertTrue(name.endswith("-failed.md"))
        self.assertEqual(parse_response(text)["error"], "timed out after 1 s")
        wait_for(lambda: descendants(w.proc.pid) == [], timeout=5,
                 what="the adapter process to be gone")
        self.assertEqual(w.wait_status(lambda s: s["status"] == "idle")["status"], "idle")

    def test_cli_adapter_gets_content_and_env(self):
        w = self.new_worker("--adapter-type", "cli", "--", "sh", "-c",
                            'echo "id=$HIVE_TASK_ID bot=$HIVE_BOT_ID src=$HIVE_TASK_SOURCE"; cat')
        tid = w.submit("stdin content", task_id="env-1")["task_id"]
        j = w.wait_state(tid, "done")
        self.assertIn("id=env-1 bot=%s src=http" % BOT, j["result"]["output"])
        self.assertIn("stdin content", j["result"]["output"])

    def test_cli_nonzero_exit_fails_with_stderr(self):
        w = self.new_worker("--adapter-type", "cli", "--", "sh", "-c", "echo boom >&2; exit 3")
        tid = w.submit("x", task_id="exit-3")["task_id"]
        j = w.wait_state(tid, ("done", "failed"))
        self.assertEqual(j["state"], "failed")
        self.assertIn("boom", j["result"]["error"])

    def test_missing_cli_program_fails_task_not_worker(self):
        w = self.new_worker("--adapter-type", "cli", "--", "/nonexistent/program")
        tid = w.submit("x", task_id="noprog")["task_id"]
        j = w.wait_state(tid, ("done", "failed"))
        self.assertEqual(j["state"], "failed")
        self.assertTrue(j["result"]["error"])
        self.assertTrue(w.alive())


class Stop(WorkerTestCase):
    """SIGTERM: stop taking tasks, finish (or re-queue) the running one, exit 0."""

    def test_sigterm_lets_running_task_finish(self):
        w = self.new_worker("--mock-delay-ms", "2000", "--stop-grace", "8")
        tid = w.submit("finish me", task_id="term-1")["task_id"]
        w.wait_state(tid, "running")
        w.terminate()
        s = w.wait_status(lambda s: s["status"] == "stopping", timeout=5, what="stopping")
        self.assertEqual(s["current_task"]["task_id"], tid)
        r = w.post("/api/task", {"command": "too late"})
        self.assertEqual(r.status, 503, r)
        self.assertIn("detail", r.json())
        self.assertIsNotNone(r.header("retry-after"))
        self.assertEqual(w.wait_exit(), 0)
        names = w.responses(tid)
        self.assertEqual(len(names), 1, w.responses())
        self.assertTrue(names[0].endswith("-complete.md"))
        self.assertEqual(w.listdir("_realtime"), [])
        self.assertEqual(w.listdir("_active"), [])
        self.assertEqual(len(w.responses()), 1, "the refused task must leave no trace")

    def test_sigterm_past_grace_requeues_task(self):
        w = self.new_worker("--adapter-type", "cli", "--stop-grace", "0.5", "--",
                            "sleep", "30")
        tid = w.submit("too long", task_id="term-long")["task_id"]
        w.wait_state(tid, "running")
        w.terminate()
        self.assertEqual(w.wait_exit(timeout=10), 0)
        self.assertEqual(w.responses(tid), [])
        self.assertEqual(w.listdir("_realtime"), [tid + ".json"])
        self.assertEqual(w.listdir("_active"), [])
        w.reap_children()
        w2 = self.restart(w)      # mock adapter this time
        j = w2.wait_state(tid, ("done", "failed"))
        self.assertEqual(j["state"], "done", j)
        time.sleep(0.3)
        self.assertEqual(len(w2.responses(tid)), 1)

    def test_sigterm_idle_exits_0(self):
        w = self.new_worker()
        w.terminate()
        self.assertEqual(w.wait_exit(), 0)
        types = [e["event_type"] for e in w.activity()]
        self.assertEqual(types[0], "startup")
        self.assertEqual(types[-1], "shutdown")


class ActivityLog(WorkerTestCase):
    """§2.3: every line has the keys; the events of a task's life are there."""

    def test_activity_lines(self):
        w = self.new_worker()
        ok = w.submit("fine", task_id="act-ok")["task_id"]
        bad = w.submit("MOCK-FAIL", task_id="act-bad")["task_id"]
        w.write_task("act-file.md", "file task\n")
        for t in (ok, bad, "act-file"):
            w.wait_response(t)
        w.terminate()
        self.assertEqual(w.wait_exit(), 0)
        with open(w.activity_file, encoding="utf-8") as f:
            raw = [line for line in f.read().split("\n") if line]
        events = [json.loads(line) for line in raw]
        for e in events:
            self.assertEqual(set(e), ACTIVITY_KEYS, e)
            self.assertIn(e["event_type"], ACTIVITY_EVENTS, e)
            self.assertEqual(e["bot_id"], BOT)
            self.assertRegex(e["timestamp"], ISO_UTC)
            self.assertIsInstance(e["duration_seconds"], (int, float))
            self.assertIsInstance(e["context"], dict)
        types = [e["event_type"] for e in events]
        self.assertEqual(types[0], "startup")
        self.assertEqual(types[-1], "shutdown")

        def of(tid):
            return [(e["event_type"], e["source"]) for e in events if e["task_id"] == tid]
        self.assertEqual(of(ok), [("task_received", "http"), ("task_started", "http"),
                                  ("task_completed", "http")])
        self.assertEqual([t for t, _ in of(bad)], ["task_received", "task_started",
                                                   "task_failed"])
        failed = [e for e in events if e["task_id"] == bad and e["event_type"] == "task_failed"]
        self.assertTrue(failed[0]["error"])
        self.assertEqual(failed[0]["result"], "failure")
        self.assertIn(("task_started", "file"), of("act-file"))
        self.assertIn(("task_completed", "file"), of("act-file"))


if __name__ == "__main__":
    main()
