"""End-to-end tests of SPEC §12's work routing and workspaces (issue 13):
pools and tags on the supervisor's POST /api/task and `hive send @POOL`.

Each class starts the real `hive up` on a fresh temporary work dir with cli
bots (`sh -c` scripts) and talks to it with curl and the `hive` CLI. Every
process started here is stopped by pid (the shared Hive helper).

Run: HIVE_BUILD_DIR=build /usr/bin/python3 tests/e2e/test_work.py
"""

import concurrent.futures
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hive_e2e import wait_for  # noqa: E402
from test_supervisor_front import Hive, worker_log_dump  # noqa: E402

TASK_TIMEOUT = 60.0


class WorkHive(Hive):
    """A Hive whose bots may carry more roster lines ("lines": [...])."""

    def __init__(self, work_dir, bots, defaults=(), token=None):
        self.defaults = list(defaults)
        super().__init__(work_dir, bots, token=token)

    def write_yaml(self, bots, extra=""):
        super().write_yaml(bots, extra)
        with open(self.yaml) as f:
            text = f.read()
        keys = {d.split(":", 1)[0] for d in self.defaults}
        out, section = [], None
        for line in text.splitlines():
            if not line.startswith(" "):
                section = line.rstrip(":")
            elif section == "defaults" and line.strip().split(":", 1)[0] in keys:
                continue  # replaced by ours
            out.append(line)
            if line == "defaults:":
                out += ["  " + d for d in self.defaults]
            if re.match(r"    port: \d+$", line):
                bot = [b for b in bots if out[-2] == "  - id: %s" % b["id"]]
                if bot:
                    out += ["    " + x for x in bot[0].get("lines", [])]
        with open(self.yaml, "w") as f:
            f.write("\n".join(out) + "\n")

    def all_responses(self, task_id):
        d = os.path.join(self.work_dir, ".deia", "hive", "responses")
        pat = re.compile(r"-RESPONSE-%s-(complete|failed)(-\d+)?\.md$" % re.escape(task_id))
        try:
            return [n for n in os.listdir(d) if pat.search(n)]
        except FileNotFoundError:
            return []


class HiveCase(unittest.TestCase):
    """One hive per class, stopped in tearDownClass with its logs on trouble."""

    BOTS = []
    DEFAULTS = []
    maxDiff = 4000

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="hive-e2e-work-")
        cls.hive = WorkHive(cls.tmp, cls.BOTS, cls.DEFAULTS)
        try:
            cls.hive.start()
        except BaseException:
            cls.hive.stop()
            sys.stderr.write(cls.hive.log_text()[-6000:])
            shutil.rmtree(cls.tmp, ignore_errors=True)
            raise

    @classmethod
    def tearDownClass(cls):
        code, killed = cls.hive.stop()
        reports = cls.hive.sanitizer_reports()
        if killed or reports or code not in (0, None) or os.environ.get("HIVE_E2E_VERBOSE"):
            sys.stderr.write("---- hive up log ----\n%s\n%s\n"
                             % (cls.hive.log_text()[-8000:], worker_log_dump(cls.hive)))
        shutil.rmtree(cls.tmp, ignore_errors=True)
        if killed or reports or code not in (0, None):
            raise AssertionError("hive up: exit %s, killed %s, sanitizer %s"
                                 % (code, killed, reports))

    def tearDown(self):
        self.hive.note_children()


SLOW = "{type: cli, command: [sh, -c, 'sleep 0.3; echo done-$HIVE_TASK_ID']}"


class PoolTest(HiveCase):
    """A pool of three, a pool of one, tags, a bot in no pool."""

    BOTS = [{"id": "P-1", "lines": ["pool: alpha"]},
            {"id": "P-2", "lines": ["pool: alpha"]},
            {"id": "P-3", "lines": ["pool: alpha", "tags: [gpu, big]"]},
            {"id": "S-1", "lines": ["pool: solo", "tags: [gpu]"]},
            {"id": "T-1", "lines": ["pool: tight", "queue_max: 1"]},
            {"id": "T-2", "lines": ["pool: tight", "queue_max: 1"]},
            {"id": "N-1"}]
    DEFAULTS = ["adapter: " + SLOW]

    def post_task(self, body):
        return self.hive.post("/api/task", body, timeout=30)

    def wait_answered_once(self, task_id):
        """The one response file of TASK_ID (fails on none in time or two)."""
        names = wait_for(lambda: self.hive.all_responses(task_id), TASK_TIMEOUT,
                         what="response of %s" % task_id)
        time.sleep(0.05)
        names = self.hive.all_responses(task_id)
        self.assertEqual(len(names), 1, "task %s answered %d times: %s"
                         % (task_id, len(names), names))
        return names[0]

    def test_pool_spreads_and_survives_a_sigkill(self):
        """30 tasks to a pool of 3: every idle bot gets work, a SIGKILL of one
        bot mid-run loses nothing, and each accepted task is answered once."""
        self.hive.wait_running()
        victim = self.hive.bot("P-2")["pid"]
        accepted, refused, lock = {}, [], threading.Lock()
        killed = threading.Event()

        def send(i):
            tid = "POOLT-%02d" % i
            r = self.post_task({"pool": "alpha", "command": "job %d" % i, "task_id": tid})
            with lock:
                if r.status == 202:
                    body = r.json()
                    self.assertEqual(body["task_id"], tid)
                    self.assertEqual(body["status"], "queued")
                    self.assertIn(body["bot_id"], ("P-1", "P-2", "P-3"))
                    accepted[tid] = body["bot_id"]
                    if len(accepted) == 12 and not killed.is_set():
                        killed.set()
                        os.kill(victim, signal.SIGKILL)
                else:
                    refused.append((tid, r.status, r.body))

        with concurrent.futures.ThreadPoolExecutor(6) as ex:
            list(ex.map(send, range(30)))
        self.assertTrue(killed.is_set())
        # Every bot of the pool got work while all were idle.
        first = [accepted[t] for t in sorted(accepted)][:12]
        self.assertEqual(set(accepted.values()), {"P-1", "P-2", "P-3"}, accepted)
        self.assertGreaterEqual(len(set(first)), 3, first)
        # Refusals may only be the exchanges the kill cut, and say so.
        for tid, status, body in refused:
            self.assertIn(status, (502, 503), (tid, status, body))
        self.assertGreaterEqual(len(accepted), 25, (accepted, refused))
        for tid, bot in accepted.items():
            name = self.wait_answered_once(tid)
            self.assertIn("-%s-" % bot, name)
        for tid, _status, _body in refused:  # never twice, even those
            time.sleep(0)
            self.assertLessEqual(len(self.hive.all_responses(tid)), 1)
        self.hive.wait_running()
        self.assertNotEqual(self.hive.bot("P-2")["pid"], victim)

    def test_tags_pick_a_bot_with_every_tag(self):
        self.hive.wait_running()
        for _ in range(3):
            r = self.post_task({"tags": ["gpu", "big"], "command": "t"})
            self.assertEqual(r.status, 202, r)
            self.assertEqual(r.json()["bot_id"], "P-3")
            self.assertTrue(r.json()["task_id"].startswith("HTTP-"))
        r = self.post_task({"pool": "solo", "tags": ["gpu"], "command": "t"})
        self.assertEqual((r.status, r.json()["bot_id"]), (202, "S-1"))
        r = self.post_task({"tags": ["gpu", "nope"], "command": "t"})
        self.assertEqual(r.status, 400, r)
        r = self.post_task({"pool": "alpha", "tags": ["gpu", "small"], "command": "t"})
        self.assertEqual(r.status, 400, r)

    def test_errors(self):
        self.hive.wait_running()
        r = self.post_task({"pool": "nope", "command": "x"})
        self.assertEqual(r.status, 400, r)
        self.assertIn("pool nope", r.json()["detail"])
        r = self.post_task({"command": "x"})
        self.assertEqual(r.status, 400, r)
        r = self.hive.post("/api/task", "{not json")
        self.assertEqual(r.status, 400, r)
        r = self.post_task({"pool": 5, "command": "x"})
        self.assertEqual(r.status, 400, r)
        r = self.hive.get("/api/task")
        self.assertEqual(r.status, 405, r)
        # The bot's own refusal of the task comes back with its bot_id.
        r = self.post_task({"pool": "solo"})
        self.assertEqual(r.status, 400, r)
        self.assertEqual(r.json()["bot_id"], "S-1")
        # A pool whose only bot is stopped.
        self.assertEqual(self.hive.cli("stop", "S-1").returncode, 0)
        try:
            wait_for(lambda: self.hive.bot("S-1")["state"] == "stopped", 20, what="S-1 stopped")
            r = self.post_task({"pool": "solo", "command": "x"})
            self.assertEqual(r.status, 503, r)
            self.assertEqual(r.json()["detail"], "no running bot in pool solo")
            self.assertIsNotNone(r.header("Retry-After"))
        finally:
            self.hive.cli("start", "S-1")
            self.hive.wait_running(["S-1"])

    def test_full_bots_are_skipped_then_429(self):
        """Both bots of a pool paused with a full queue: the task goes round
        both and the client hears 429 (nothing stored anywhere)."""
        self.hive.wait_running(["T-1", "T-2"])
        for b in ("T-1", "T-2"):
            self.assertEqual(self.hive.post("/bots/%s/api/pause" % b).status, 200)
        try:
            bots = []
            for i in range(2):
                r = self.post_task({"pool": "tight", "command": "x", "task_id": "TIGHT-%d" % i})
                self.assertEqual(r.status, 202, r)
                bots.append(r.json()["bot_id"])
            self.assertEqual(sorted(bots), ["T-1", "T-2"])
            r = self.post_task({"pool": "tight", "command": "x", "task_id": "TIGHT-X"})
            self.assertEqual(r.status, 429, r)
            self.assertIn("full", r.json()["detail"])
            for b in ("T-1", "T-2"):
                st = self.hive.get("/bots/%s/api/task/TIGHT-X" % b)
                self.assertEqual(st.status, 404, st)
        finally:
            for b in ("T-1", "T-2"):
                self.hive.post("/bots/%s/api/resume" % b)
        for i in range(2):
            self.wait_answered_once("TIGHT-%d" % i)

    def test_cli_send_at_pool(self):
        self.hive.wait_running()
        p = self.hive.cli("send", "@alpha", "hello", "there")
        self.assertEqual(p.returncode, 0, p.stderr)
        task_id, bot = p.stdout.split()
        self.assertIn(bot, ("P-1", "P-2", "P-3"))
        self.wait_answered_once(task_id)
        p = self.hive.cli("send", "--wait", "@alpha", "waited")
        self.assertEqual(p.returncode, 0, p.stderr)
        m = re.search(r"task (\S+) went to (P-\d)", p.stderr)
        self.assertTrue(m, p.stderr)
        self.assertEqual(p.stdout.strip(), "done-%s" % m.group(1))
        p = self.hive.cli("send", "@nope", "x")
        self.assertEqual(p.returncode, 1)
        self.assertIn("no bot is in pool nope", p.stderr)
        p = self.hive.cli("send", "@bad/name", "x")
        self.assertEqual(p.returncode, 2)


if __name__ == "__main__":
    unittest.main(verbosity=2)
