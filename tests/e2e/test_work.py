"""End-to-end tests of SPEC §12's work routing and workspaces (issue 13):
pools and tags on the supervisor's POST /api/task and `hive send @POOL`;
a bot's own git worktree, the files a task modified (response file,
timeline, events), `hive prune`; stalls (task_stalled and its metric).

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
from hive_e2e import read_jsonl, wait_for  # noqa: E402
from test_supervisor_front import (HIVE_BIN, Hive, start_class_hive,  # noqa: E402
                                   stop_class_hive)

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
    def prepare(cls, work_dir):
        """Make the work dir ready before the hive starts."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="hive-e2e-work-")
        cls.prepare(cls.tmp)
        cls.hive = WorkHive(cls.tmp, cls.BOTS, cls.DEFAULTS)
        start_class_hive(cls.hive, cls.tmp)

    @classmethod
    def tearDownClass(cls):
        stop_class_hive(cls.hive, cls.tmp)

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


def git(cwd, *args):
    """Run git ARGS in CWD (a fixed identity); its stdout."""
    p = subprocess.run(["git", "-c", "user.email=e2e@hive", "-c", "user.name=e2e"] + list(args),
                       cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       timeout=30)
    if p.returncode != 0:
        raise AssertionError("git %s: %s" % (" ".join(args), p.stderr))
    return p.stdout


def files_section(text):
    """The paths of a response file's "## Files Modified" section."""
    m = re.search(r"\n## Files Modified\n\n(.*?)\n\n(## Error|---)", text, re.S)
    if not m:
        raise AssertionError("no Files Modified section in:\n" + text)
    lines = m.group(1).split("\n")
    for line in lines:
        if not line.startswith("- "):
            raise AssertionError("bad line %r in:\n%s" % (line, text))
    return [line[2:] for line in lines]


def stored_events(work_dir, bot):
    """The bot's stored events (its events file), as dicts."""
    return read_jsonl(os.path.join(work_dir, ".deia", "bot-logs", "%s-events.jsonl" % bot))


WRITER = ("{type: cli, command: [sh, -c, 'echo $HIVE_TASK_ID > f-$HIVE_TASK_ID.txt; "
          "echo more >> README; pwd']}")
COMMITTER = ("{type: cli, command: [sh, -c, 'echo c > c-$HIVE_TASK_ID.txt && git add -A && "
             "git -c user.email=b@hive -c user.name=b commit -qm $HIVE_TASK_ID && echo ok']}")
PLAIN = "{type: cli, command: [sh, -c, 'mkdir -p sub && echo p > \"sub/plain $HIVE_TASK_ID.txt\"']}"
SILENT = "{type: cli, command: [sh, -c, 'echo a; sleep 1.6; echo b; sleep 1.6; echo c']}"


class ManyWorktreesTest(HiveCase):
    """Eight bots with worktrees of one repository start at once: each gets
    its worktree. Their prunes and adds used to interleave, and one bot's
    prune removed another's half-made entry (.git/worktrees/ID without its
    gitdir): that bot went fatal ("could not open .git/worktrees/WT-1/gitdir",
    seen in CI). The start itself is the test: setUpClass waits for every bot
    to run."""

    BOTS = [{"id": "MW-%d" % i, "adapter": "{type: mock}",
             "lines": ["workspace: {git_worktree: agents}"]} for i in range(8)]

    @classmethod
    def prepare(cls, work_dir):
        WorkspaceTest.prepare(work_dir)

    def test_every_bot_has_its_worktree(self):
        for b in self.BOTS:
            self.assertEqual(self.hive.bot(b["id"])["state"], "running")
            wt = os.path.join(self.hive.work_dir, ".deia", "hive", "worktrees", b["id"])
            self.assertTrue(os.path.isfile(os.path.join(wt, "README")), wt)
        out = subprocess.run(["git", "-C", self.hive.work_dir, "worktree", "list"],
                             capture_output=True, text=True, check=True).stdout
        self.assertEqual(sum("[agents/MW-" in ln for ln in out.splitlines()), 8, out)


class WorkspaceTest(HiveCase):
    """A git work dir: bots with worktrees, one without, one that stalls."""

    BOTS = [{"id": "WT-1", "adapter": WRITER, "lines": ["workspace: {git_worktree: agents}"]},
            {"id": "WT-C", "adapter": COMMITTER, "lines": ["workspace: {git_worktree: agents}"]},
            {"id": "ST-1", "adapter": SILENT, "lines": ["stall_after: 0.6"]}]

    @classmethod
    def prepare(cls, work_dir):
        git(work_dir, "init", "-q", ".")
        with open(os.path.join(work_dir, "README"), "w") as f:
            f.write("hello\n")
        git(work_dir, "add", "README")
        git(work_dir, "commit", "-qm", "init")

    def worktree(self, bot):
        return os.path.join(self.hive.work_dir, ".deia", "hive", "worktrees", bot)

    def run_task(self, bot, task_id):
        r = self.hive.post("/bots/%s/api/task" % bot, {"command": "x", "task_id": task_id})
        self.assertEqual(r.status, 202, r)
        return self.hive.wait_response(bot, task_id)

    def timeline_files(self, bot, task_id):
        """files_modified of TASK_ID's timeline entry (waited for, as the event)."""
        def find():
            r = self.hive.get("/bots/%s/api/timeline" % bot)
            self.assertEqual(r.status, 200, r)
            for e in r.json()["entries"]:
                if e["task_id"] == task_id:
                    return e
            return None
        return wait_for(find, 10, what="timeline entry of %s" % task_id)["files_modified"]

    def event_files(self, bot, task_id):
        """files_modified of TASK_ID's task_completed event (waited for: the
        event follows the response file once the answer is durable)."""
        def find():
            for e in stored_events(self.hive.work_dir, bot):
                if e["type"] == "task_completed" and e.get("task_id") == task_id:
                    return e
            return None
        return wait_for(find, 10, what="task_completed of %s" % task_id)["files_modified"]

    def test_worktree_bot_lists_its_modified_files(self):
        self.hive.wait_running()
        wt = self.worktree("WT-1")
        text = self.run_task("WT-1", "WT-A")
        self.assertIn(wt, text)  # the adapter ran in its worktree (pwd)
        self.assertTrue(os.path.isfile(os.path.join(wt, ".git")))
        self.assertIn("agents/WT-1", git(self.hive.work_dir, "branch", "--list", "agents/WT-1"))
        self.assertEqual(sorted(files_section(text)), ["README", "f-WT-A.txt"])
        self.assertEqual(sorted(self.event_files("WT-1", "WT-A")), ["README", "f-WT-A.txt"])
        self.assertEqual(sorted(self.timeline_files("WT-1", "WT-A")), ["README", "f-WT-A.txt"])
        # The main checkout is untouched; the next task is not blamed for
        # f-WT-A.txt, dirty before it and left alone.
        self.assertFalse(os.path.exists(os.path.join(self.hive.work_dir, "f-WT-A.txt")))
        text = self.run_task("WT-1", "WT-B")
        self.assertEqual(sorted(files_section(text)), ["README", "f-WT-B.txt"])
        # GET /api/task reads the response back whole
        r = self.hive.get("/bots/WT-1/api/task/WT-B")
        self.assertEqual(r.json()["state"], "done", r)
        self.assertIn(wt, r.json()["result"]["output"])

    def test_commits_made_by_the_task_are_listed(self):
        self.hive.wait_running()
        text = self.run_task("WT-C", "WC-1")
        self.assertIn("**Status:** ✓ SUCCESS", text)
        self.assertEqual(files_section(text), ["c-WC-1.txt"])
        self.assertIn("WC-1", git(self.worktree("WT-C"), "log", "--oneline", "-1"))

    def test_restart_keeps_the_worktree_and_prune_removes_it(self):
        self.hive.wait_running()
        wt = self.worktree("WT-1")
        wait_for(lambda: os.path.isdir(wt), 10, what="worktree")
        with open(os.path.join(wt, "keep.txt"), "w") as f:
            f.write("mine\n")
        self.assertEqual(self.hive.cli("restart", "WT-1").returncode, 0)
        time.sleep(0.5)
        self.hive.wait_running(["WT-1"])
        self.assertTrue(os.path.exists(os.path.join(wt, "keep.txt")))
        # A running bot is refused.
        p = self.hive.cli("prune", "WT-1")
        self.assertEqual(p.returncode, 1)
        self.assertIn("stop it first", p.stderr)
        self.assertTrue(os.path.isdir(wt))
        self.assertEqual(self.hive.cli("stop", "WT-1").returncode, 0)
        try:
            wait_for(lambda: self.hive.bot("WT-1")["state"] == "stopped", 20, what="stopped")
            p = self.hive.cli("prune", "WT-1")  # uncommitted changes: git refuses
            self.assertEqual(p.returncode, 1, p.stderr)
            self.assertTrue(os.path.isdir(wt))
            p = self.hive.cli("prune", "--force", "WT-1")
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertFalse(os.path.exists(wt))
            self.assertNotIn(wt, git(self.hive.work_dir, "worktree", "list"))
            self.assertIn("agents/WT-1", git(self.hive.work_dir, "branch", "--list"))
            p = self.hive.cli("prune", "WT-1")
            self.assertEqual(p.returncode, 1)
            self.assertIn("no worktree", p.stderr)
        finally:
            self.hive.cli("start", "WT-1")
            self.hive.wait_running(["WT-1"])
        self.assertTrue(os.path.isfile(os.path.join(wt, ".git")))  # made again
        self.assertFalse(os.path.exists(os.path.join(wt, "keep.txt")))

    def test_stall_event_and_metric(self):
        self.hive.wait_running()
        text = self.run_task("ST-1", "ST-A")
        self.assertIn("**Status:** ✓ SUCCESS", text)  # stalled, not killed
        stalls = [e for e in stored_events(self.hive.work_dir, "ST-1")
                  if e["type"] == "task_stalled" and e["task_id"] == "ST-A"]
        self.assertEqual(len(stalls), 2, stalls)  # one per silence
        for e in stalls:
            self.assertEqual(e["source"], "http")
            self.assertGreaterEqual(e["silent_seconds"], 0.6)
            self.assertIsInstance(e["seq"], int)
        m = self.hive.get("/bots/ST-1/metrics").body.decode()
        self.assertIn('hive_tasks_stalled_total{bot="ST-1"} 2', m)
        wait_for(lambda: 'hive_tasks_stalled_total{bot="ST-1"} 2'
                 in self.hive.get("/metrics").body.decode(), 10, what="supervisor metric")
        self.assertIn('hive_tasks_stalled_total{bot="WT-1"} 0', self.hive.get("/metrics").body.decode())


class PlainCheckoutTest(WorkspaceTest):
    """No worktree, no new roster key: a cli bot whose folder is a git
    checkout lists what its task changed (before issue 13: always "- None")."""

    BOTS = [{"id": "PL-1", "adapter": PLAIN}]

    def test_plain_checkout_lists_files_too(self):
        self.hive.wait_running()
        with open(os.path.join(self.hive.work_dir, "dirty-before.txt"), "w") as f:
            f.write("not the task's\n")
        text = self.run_task("PL-1", "PL-A")
        self.assertEqual(files_section(text), ["sub/plain PL-A.txt"])
        self.assertEqual(self.event_files("PL-1", "PL-A"), ["sub/plain PL-A.txt"])
        self.assertEqual(self.timeline_files("PL-1", "PL-A"), ["sub/plain PL-A.txt"])

    def test_recovered_timeline_entry_keeps_its_files(self):
        """A power cut lost the timeline (and its index): the entry rebuilt from
        the response file lists the same files modified."""
        self.hive.wait_running()
        self.run_task("PL-1", "PL-R")
        self.assertEqual(self.timeline_files("PL-1", "PL-R"), ["sub/plain PL-R.txt"])
        code, killed = self.hive.stop()
        self.assertFalse(killed)
        logs = os.path.join(self.hive.work_dir, ".deia", "bot-logs")
        open(os.path.join(logs, "PL-1-timeline.jsonl"), "w").close()
        os.unlink(os.path.join(logs, "PL-1-timeline.idx"))
        self.hive.start()
        self.hive.wait_running()
        self.assertEqual(self.timeline_files("PL-1", "PL-R"), ["sub/plain PL-R.txt"])


    # the worktree and stall tests belong to WorkspaceTest's hive
    test_worktree_bot_lists_its_modified_files = None
    test_commits_made_by_the_task_are_listed = None
    test_restart_keeps_the_worktree_and_prune_removes_it = None
    test_stall_event_and_metric = None


class CheckTest(unittest.TestCase):
    """A workspace needs a git work dir: `hive check` says so at the key."""

    def test_not_a_git_repository(self):
        tmp = tempfile.mkdtemp(prefix="hive-e2e-work-check-")
        try:
            path = os.path.join(tmp, "hive.yaml")
            with open(path, "w") as f:
                f.write("hive:\n  work_dir: .\nbots:\n  - id: W-1\n"
                        "    workspace: {git_worktree: agents}\n"
                        "  - id: W-2\n    workspace: {git_worktree: 'a..b'}\n")
            p = subprocess.run([HIVE_BIN, "check", "-f", path], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, timeout=30)
            self.assertEqual(p.returncode, 78)
            self.assertIn("hive.yaml:5:31: git_worktree needs the work dir", p.stdout + p.stderr)
            self.assertIn("git repository", p.stdout + p.stderr)
            self.assertIn("hive.yaml:7:31: bad branch prefix 'a..b'", p.stdout + p.stderr)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    unittest.main(verbosity=2)
