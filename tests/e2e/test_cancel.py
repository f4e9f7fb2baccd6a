"""End to end: cancel (SPEC §4 `POST /api/task/<id>/cancel`, issue 13 "Cancel").

A worker whose cli adapter is `sh -c {content}` runs each task's text as a
shell script, so one test holds the bot busy with `sleep` while another task
waits in a queue. Checked:

- a queued realtime task and a queued file task leave their queues without
  running: 200 with state `cancelled`, one response `...-failed.md` whose
  error is `cancelled`, the task file archived (file) or gone from
  _realtime/ (realtime), `task_failed` with error `cancelled` in the activity
  log, no `task_started`;
- a running task `sh -c 'sleep A & setsid sleep B & sleep C'` (A, B, C: a
  marker unique to the test) has its whole tree killed: after the 200 no
  process with the marker is left within 2 s (/proc scanned);
- 404 unknown id, 409 after done (state `done`), 409 twice cancelled (state
  `cancelled`), 400 invalid id, 405 GET, 415 a non-JSON body, an empty body
  without Content-Type accepted (what `curl -X POST` sends), 503 stopping;
- GET says `cancelled` after a restart too, and a second cancel or a
  resubmission of the id still gets 409 `cancelled`;
- a worker SIGKILLed right after the cancel's 200 never runs the task;
- through the supervisor's proxy and with `hive cancel BOT ID`;
- a cancel whose answer cannot be written (the responses folder a full
  tmpfs, as tests/e2e/test_disk_trouble.py makes it) is not answered until
  the answer is written and durable, then exactly once.

Every process a test starts is stopped by pid. Run with /usr/bin/python3.
"""

import os
import signal
import subprocess
import sys
import tempfile
import threading
import unittest

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hive_e2e import (WorkerTestCase, curl, main, parse_response, wait_for,  # noqa: E402
                      write_atomic)
from test_edges_processes import marked, marker_args  # noqa: E402
from test_supervisor_front import HIVE_BIN, Hive  # noqa: E402
import test_disk_trouble as disk  # noqa: E402

SHELL = ("--adapter-type", "cli", "--", "sh", "-c", "{content}")


class CancelCase(WorkerTestCase):
    """One worker, `sh -c {content}` as the adapter; the helpers, no tests."""

    def start(self, *extra, **kw):
        return self.new_worker(*extra, *SHELL, **kw)

    def busy(self, w, task_id="blocker", script="sleep 60"):
        """Make the bot busy with a running task."""
        w.submit(script, task_id=task_id)
        w.wait_state(task_id, ("running",))

    def cancel(self, w, task_id, **kw):
        kw.setdefault("body", {})
        return curl(w.url + "/api/task/%s/cancel" % task_id, method="POST", timeout=20, **kw)

    def assert_cancelled_answer(self, w, task_id, source):
        names = w.responses(task_id)
        self.assertEqual(len(names), 1, names)
        self.assertTrue(names[0].endswith("-failed.md"), names)
        resp = parse_response(w.read_response(names[0]))
        self.assertEqual(resp["error"], "cancelled")
        self.assertEqual(resp["Source"], source)
        self.assertIn("FAILED", resp["Status"])
        got = w.task(task_id)
        self.assertEqual(got.status, 200, got)
        j = got.json()
        self.assertEqual(j["state"], "cancelled", j)
        self.assertEqual(j["result"]["error"], "cancelled")
        self.assertFalse(j["result"]["success"])
        self.assertEqual(j["result"]["response_file"], names[0])
        events = [e for e in w.activity() if e.get("task_id") == task_id]
        kinds = [e["event_type"] for e in events]
        self.assertIn("task_failed", kinds, events)
        self.assertEqual([e["error"] for e in events if e["event_type"] == "task_failed"],
                         ["cancelled"])
        return kinds


class CancelWorkerTest(CancelCase):

    def test_cancel_queued_realtime(self):
        w = self.start()
        self.busy(w)
        marker = os.path.join(self.tmp, "ran-queued")
        w.submit("touch %s" % marker, task_id="queued-rt")
        self.assertEqual(w.task("queued-rt").json()["state"], "queued")
        r = self.cancel(w, "queued-rt")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["state"], "cancelled")
        self.assertEqual(r.json()["result"]["error"], "cancelled")
        kinds = self.assert_cancelled_answer(w, "queued-rt", "http")
        self.assertNotIn("task_started", kinds)
        self.assertEqual([n for n in w.listdir("_realtime") if "queued-rt" in n], [])
        self.assertEqual([n for n in w.listdir("_active") if "queued-rt" in n], [])
        self.assertEqual(w.task("blocker").json()["state"], "running")  # untouched
        self.assertEqual(self.cancel(w, "blocker").status, 200)
        w.wait_status(lambda s: s["status"] == "idle" and s["queue"]["realtime"] == 0)
        self.assertFalse(os.path.exists(marker), "a cancelled task ran")

    def test_cancel_queued_file(self):
        w = self.start()
        self.busy(w)
        marker = os.path.join(self.tmp, "ran-file")
        write_atomic(os.path.join(w.queue_dir, "queued-file.md"),
                     "---\ntask_id: queued-file\n---\ntouch %s\n" % marker)
        w.wait_state("queued-file", ("queued",))
        r = self.cancel(w, "queued-file")
        self.assertEqual(r.status, 200, r)
        kinds = self.assert_cancelled_answer(w, "queued-file", "file")
        self.assertNotIn("task_started", kinds)
        self.assertFalse(os.path.exists(os.path.join(w.queue_dir, "queued-file.md")))
        self.assertIn("queued-file.md", w.listdir("_archive"))
        self.assertNotIn("queued-file.md", w.listdir("_active"))
        self.assertEqual(self.cancel(w, "blocker").status, 200)
        w.wait_status(lambda s: s["status"] == "idle" and s["queue"]["file"] == 0)
        self.assertFalse(os.path.exists(marker), "a cancelled file task ran")

    def test_cancel_running_kills_tree(self):
        w = self.start()
        marks = marker_args()
        self.addCleanup(lambda: [os.kill(p, signal.SIGKILL) for p in marked(marks)])
        w.submit("sleep %s & setsid sleep %s & sleep %s" % tuple(marks), task_id="tree")
        wait_for(lambda: len(marked(marks)) == 3, what="the task's three sleeps")
        r = self.cancel(w, "tree", body=None, content_type=None)  # as `curl -X POST`
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["state"], "cancelled")
        # SPEC §3.1: no process of a task outlives it; the cancel is over
        # within 2 s (the answer itself comes once the task is answered).
        wait_for(lambda: not marked(marks), timeout=2.0, what="the task's processes gone")
        kinds = self.assert_cancelled_answer(w, "tree", "http")
        self.assertIn("task_started", kinds)
        self.assertEqual(w.status()["status"], "idle")

    def test_errors(self):
        w = self.start("--stop-grace", "5")
        self.assertEqual(self.cancel(w, "nobody").status, 404)
        self.assertEqual(self.cancel(w, ".bad").status, 400)
        r = curl(w.url + "/api/task/x/cancel")
        self.assertEqual(r.status, 405, r)
        self.assertEqual(r.header("Allow"), "POST")
        w.submit("echo done-here", task_id="finished")
        w.wait_state("finished", ("done",))
        r = self.cancel(w, "finished")
        self.assertEqual(r.status, 409, r)
        self.assertEqual(r.json()["state"], "done")
        self.assertEqual(r.json()["task_id"], "finished")
        self.busy(w)
        r = self.cancel(w, "blocker", body="cancel please", content_type="text/plain")
        self.assertEqual(r.status, 415, r)
        self.assertEqual(self.cancel(w, "blocker", content_type=None, body="x").status, 415)
        self.assertEqual(w.task("blocker").json()["state"], "running")
        self.assertEqual(self.cancel(w, "blocker").status, 200)
        r = self.cancel(w, "blocker")
        self.assertEqual(r.status, 409, r)
        self.assertEqual(r.json()["state"], "cancelled")
        # 503 while stopping: the running task holds the stop for its grace.
        self.busy(w, "holder")
        w.proc.send_signal(signal.SIGTERM)
        wait_for(lambda: w.status().get("status") == "stopping", what="stopping")
        r = self.cancel(w, "holder")
        self.assertEqual(r.status, 503, r)

    def test_cancelled_after_restart(self):
        w = self.start()
        self.busy(w)
        w.submit("echo never", task_id="kept")
        self.assertEqual(self.cancel(w, "kept").status, 200)
        w.stop()
        w2 = self.restart(w, *SHELL)
        got = w2.task("kept").json()
        self.assertEqual(got["state"], "cancelled", got)
        self.assertEqual(got["result"]["error"], "cancelled")
        r = self.cancel(w2, "kept")
        self.assertEqual(r.status, 409, r)
        self.assertEqual(r.json()["state"], "cancelled")
        j = w2.submit("echo again", expect=409, task_id="kept")
        self.assertEqual(j["state"], "cancelled")
        self.assertEqual(len(w2.responses("kept")), 1)

    def test_never_runs_after_sigkill(self):
        w = self.start()
        # The blocker holds the bot until the cancel is in (a fixed sleep lost
        # that race on a loaded machine), and ends at once when run again.
        go = os.path.join(self.tmp, "go")
        self.busy(w, script="while [ ! -e %s ]; do sleep 0.05; done" % go)
        marker = os.path.join(self.tmp, "ran-after-kill")
        w.submit("touch %s" % marker, task_id="doomed")
        r = self.cancel(w, "doomed")
        self.assertEqual(r.status, 200, r)
        open(go, "w").close()
        w.kill()
        w2 = self.restart(w, *SHELL)
        # The blocker (running at the kill) runs again; the cancelled task
        # must not, whatever comes after it.
        w2.submit("true", task_id="after")
        w2.wait_state("after", ("done",))
        self.assertFalse(os.path.exists(marker), "the cancelled task ran after a restart")
        self.assertEqual(w2.task("doomed").json()["state"], "cancelled")
        self.assertEqual(len(w2.responses("doomed")), 1)


class CancelDiskFullTest(disk.DiskMounts, CancelCase):
    """The cancel's answer waits for a full disk (test_disk_trouble's mounts)."""

    def test_cancel_answered_once_written(self):
        self.mount_small_tmpfs()
        w = self.start()
        self.busy(w)
        w.submit("echo never", task_id="full-cancel")
        self.fill()
        got = []
        t = threading.Thread(target=lambda: got.append(self.cancel(w, "full-cancel")))
        t.start()
        try:
            wait_for(lambda: disk.WRITE_ERROR % "full-cancel" in w.log_text(), 15,
                     what="the cancelled answer's write failing")
            t.join(2.5)   # > 2 retries of the 1 s response-write retry
            self.assertEqual(got, [], "the cancel was answered before its response was written")
            self.assertEqual([n for n in os.listdir(self.responses) if "full-cancel" in n], [])
        finally:
            self.free()
            t.join(30)
        self.assertEqual(len(got), 1)
        self.assertEqual(got[0].status, 200, got[0])
        self.assertEqual(got[0].json()["state"], "cancelled")
        self.assert_cancelled_answer(w, "full-cancel", "http")
        self.assertEqual(self.cancel(w, "blocker").status, 200)


class CancelHiveTest(unittest.TestCase):
    """Through the supervisor's proxy, and `hive cancel`."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="hive-e2e-cancel-")
        cls.hive = Hive(cls.tmp, [{"id": "BOT-001",
                                   "adapter": '{type: cli, command: [sh, "-c", "{content}"]}'}])
        try:
            cls.hive.start()
        except BaseException:
            cls.hive.stop()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.hive.stop()

    def hive_cmd(self, *args):
        return subprocess.run([HIVE_BIN, *args, "--file=" + self.hive.yaml], cwd=self.tmp,
                              env=self.hive.env(), stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              timeout=60)

    def submit(self, command, task_id):
        r = self.hive.post("/bots/BOT-001/api/task", {"command": command, "task_id": task_id})
        self.assertEqual(r.status, 202, r)

    def state(self, task_id):
        return self.hive.get("/bots/BOT-001/api/task/" + task_id).json().get("state")

    def test_proxy_and_cli(self):
        self.submit("sleep 60", "hive-blocker")
        wait_for(lambda: self.state("hive-blocker") == "running", what="running")
        self.submit("echo never", "hive-queued")
        r = self.hive.post("/bots/BOT-001/api/task/hive-queued/cancel")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["state"], "cancelled")
        p = self.hive_cmd("cancel", "BOT-001", "hive-blocker")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("BOT-001: hive-blocker cancelled", p.stdout)
        self.assertEqual(self.state("hive-blocker"), "cancelled")
        p = self.hive_cmd("cancel", "BOT-001", "hive-blocker")
        self.assertEqual(p.returncode, 1, p.stdout)
        self.assertIn("cancelled", p.stderr)
        p = self.hive_cmd("cancel", "BOT-001", "no-such-task")
        self.assertEqual(p.returncode, 1, p.stdout)
        p = self.hive_cmd("cancel", "BOT-001")
        self.assertEqual(p.returncode, 2, p.stdout)


if __name__ == "__main__":
    main()
