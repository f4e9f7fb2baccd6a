"""End to end: the edges of adapters (issue 10 cases 9, 14 and 18; SPEC §3.1).

- No process of a task outlives it: an adapter
  `sh -c 'sleep A & setsid sleep B & sleep C'` (A, B, C: durations unique to
  the test, the marker that /proc is scanned for); the worker SIGKILLed under
  `hive up`, then the supervisor SIGKILLed: nothing with the marker is left.
  The same for a standalone worker SIGKILLed and started again, with the
  cgroup mechanism (when the machine has it) and with the fallback
  (HIVE_CONTAIN=subreaper). Which mechanism ran is printed; where the machine
  gives a cgroup v2, the test asserts the task's processes were in one.
- Output is UTF-8: 300 KB of 中 written through a 64 KiB pipe (reads cut
  characters) reaches a WebSocket client as non-null chunks whose join is the
  output; `GET /api/task/<id>` keeps `result` for binary output.
- A cli adapter gets none of the hive's hand-over variables (HIVE_TOKEN, the
  roster's token_env variable, NOTIFY_SOCKET, LISTEN_*, WATCHDOG_*, FDSTORE).

Every process a test starts is killed by pid in cleanup, and every cgroup it
made is killed and removed. Run with /usr/bin/python3.
"""

import json
import os
import random
import signal
import stat
import subprocess
import sys
import time

import websockets

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hive_e2e import (BUILD_DIR, SANITIZER_MARKERS, WorkerTestCase, curl, free_ports, main,  # noqa: E402
                      run_async, wait_for, ws_recv_json)

HIVE_BIN = os.path.join(BUILD_DIR, "supervisor", "hive")
UP_TIMEOUT = 20.0
GONE_TIMEOUT = 10.0


# ---------------------------------------------------------------- processes and cgroups

def marker_args():
    """Three sleep durations no other process has: the task's marker."""
    base = "%d%06d" % (3000 + os.getpid() % 1000, random.randrange(10 ** 6))
    return ["%s.%d" % (base, i) for i in (1, 2, 3)]


def orphan_command(marks):
    """The adapter: a background sleep, a setsid one (escapes the group), a foreground one."""
    return ["sh", "-c", "sleep %s & setsid sleep %s & sleep %s" % tuple(marks)]


def marked(marks):
    """{pid: cgroup v2 path} of live processes running `sleep <one of MARKS>`."""
    found = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % name, "rb") as f:
                argv = f.read().split(b"\0")
            with open("/proc/%s/stat" % name, "rb") as f:
                stat = f.read().decode("latin-1")
        except OSError:
            continue
        if stat[stat.rfind(")") + 2] == "Z":
            continue
        if len(argv) >= 2 and argv[1].decode("latin-1") in marks:
            found[int(name)] = own_cgroup(int(name))
    return found


def own_cgroup(pid):
    try:
        with open("/proc/%d/cgroup" % pid) as f:
            for line in f:
                if line.startswith("0::"):
                    return line[3:].strip()
    except OSError:
        pass
    return None


def cgroup2_mount():
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            if right.startswith("cgroup2 "):
                return left.split()[4]
    return None


def kill_pids(pids):
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def remove_cgroups(pred):
    """Kill and remove every cgroup (deepest first) whose name satisfies PRED."""
    mnt = cgroup2_mount()
    if not mnt:
        return
    hits = []
    for root, dirs, _ in os.walk(mnt):
        for d in dirs:
            if pred(d):
                hits.append(os.path.join(root, d))
    for top in hits:
        try:
            with open(os.path.join(top, "cgroup.kill"), "w") as f:
                f.write("1")
        except OSError:
            pass
    time.sleep(0.2)
    for top in hits:
        for root, dirs, _ in sorted(os.walk(top), key=lambda t: -len(t[0])):
            try:
                os.rmdir(root)
            except OSError:
                pass


def fnv1a64(text):
    h = 1469598103934665603
    for b in text.encode():
        h = ((h ^ b) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return h


def cgroup_usable():
    """True when this process can make a killable cgroup v2 under its own (what hive
    needs for the cgroup mechanism); the probe is removed again."""
    mnt = cgroup2_mount()
    own = own_cgroup(os.getpid())
    if not mnt or own is None:
        return False
    probe = os.path.join(mnt + ("" if own == "/" else own), "hive-probe-%d" % os.getpid())
    try:
        os.mkdir(probe)
    except OSError:
        return False
    try:
        return os.access(os.path.join(probe, "cgroup.kill"), os.W_OK)
    finally:
        os.rmdir(probe)


def mechanism(log):
    """Which containment a log line says is in force."""
    if "task processes: cgroup v2" in log or "bot processes: cgroup v2" in log:
        return "cgroup v2"
    if "subreaper" in log:
        return "subreaper fallback"
    return "unknown (%s)" % ("no containment line" if log else "no log")


def read(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


# ---------------------------------------------------------------- a hive under test

class Hive:
    """One `hive up` in WORK_DIR with one bot; killed by pid in cleanup."""

    def __init__(self, test, work_dir, bot, adapter, env=None, hive_extra=None):
        self.test, self.work_dir, self.bot = test, work_dir, bot
        self.listen, self.port = free_ports(2)
        doc = {"hive": dict({"name": "edges", "work_dir": ".",
                             "listen": "127.0.0.1:%d" % self.listen}, **(hive_extra or {})),
               "defaults": {"stop_timeout": 2},
               "bots": [{"id": bot, "port": self.port, "adapter": adapter}]}
        self.roster = os.path.join(work_dir, "hive.yaml")
        with open(self.roster, "w") as f:
            json.dump(doc, f)
        self.env = dict(os.environ, **(env or {}))
        for name in ("HIVE_TOKEN", "NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID",
                     "HIVE_SUPERVISOR_PID", "HIVE_CONTAIN"):
            self.env.pop(name, None)
        self.env.update(env or {})
        self.err_path = os.path.join(work_dir, "hive-%d.err" % time.monotonic_ns())
        self.workers = set()
        self.proc = None

    def start(self):
        with open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen([HIVE_BIN, "up", "-f", self.roster], cwd=self.work_dir,
                                         env=self.env, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=err)
        self.test.addCleanup(self.kill)

    def log(self):
        return read(self.err_path)

    def worker_pid(self):
        """The bot's running worker's pid (from registry.json), or None."""
        try:
            with open(os.path.join(self.work_dir, ".deia", "hive", "registry.json")) as f:
                b = json.load(f)["bots"].get(self.bot)
        except (OSError, ValueError, KeyError):
            return None
        if b and b.get("status") == "running" and b.get("pid"):
            self.workers.add(b["pid"])
            return b["pid"]
        return None

    def wait_running(self):
        def check():
            if self.proc.poll() is not None:
                raise AssertionError("hive exited %s:\n%s" % (self.proc.returncode, self.log()))
            return self.worker_pid()
        return wait_for(check, UP_TIMEOUT, what="%s running" % self.bot)

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        kill_pids(self.workers)
        tree = "hive-%016x" % fnv1a64(os.path.realpath(self.work_dir))
        remove_cgroups(lambda name: name == tree)
        logs = os.path.join(self.work_dir, ".deia", "hive", "logs")
        texts = [self.log()] + [read(os.path.join(logs, n))
                                for n in (os.listdir(logs) if os.path.isdir(logs) else [])]
        for m in SANITIZER_MARKERS:
            for t in texts:
                self.test.assertNotIn(m, t, "sanitizer report in the hive's logs")


def drop_task(work_dir, bot, task_id, text="run the adapter\n"):
    queue = os.path.join(work_dir, ".deia", "hive", "tasks", bot)
    os.makedirs(queue, exist_ok=True)
    tmp = os.path.join(work_dir, ".%s.tmp" % task_id)
    with open(tmp, "w") as f:
        f.write("---\ntask_id: %s\n---\n%s" % (task_id, text))
    os.rename(tmp, os.path.join(queue, task_id + ".md"))


# ---------------------------------------------------------------- the tests

class Orphans(WorkerTestCase):
    """No process of a task outlives it (SPEC §3.1)."""

    def setUp(self):
        super().setUp()
        self.marks = marker_args()
        self.addCleanup(lambda: kill_pids(marked(self.marks)))
        self.addCleanup(remove_cgroups, self.ours)
        self.bot = "BOT-ORPH%04d" % random.randrange(10 ** 4)
        self.tree = "hive-%016x" % fnv1a64(os.path.realpath(self.tmp))
        self.want_cgroup = cgroup_usable()

    def ours(self, name):
        return name == self.tree or name.startswith("hive-%s-" % self.bot)

    def wait_three(self, what):
        return wait_for(lambda: (lambda m: m if len(m) == 3 else None)(marked(self.marks)),
                        UP_TIMEOUT, what=what)

    def assert_contained(self, procs, log, bot_dir):
        mech = mechanism(log)
        print("\n  [%s] containment: %s; task cgroups: %s"
              % (self.id().rsplit(".", 1)[-1], mech, sorted(set(procs.values()))),
              file=sys.stderr)
        if self.want_cgroup:
            self.assertEqual(mech, "cgroup v2", "the machine gives a cgroup v2: %s" % log)
            for pid, cg in procs.items():
                self.assertIn(bot_dir, cg or "", "pid %d is not in the bot's cgroup" % pid)

    def assert_all_gone(self, pids=None, what="the task's processes"):
        def gone():
            left = marked(self.marks)
            if pids is not None:
                left = {p: c for p, c in left.items() if p in pids}
            return not left and "none"
        try:
            wait_for(gone, GONE_TIMEOUT, what=what + " gone")
        except AssertionError:
            self.fail("%s outlived it: %r" % (what, marked(self.marks)))

    def test_hive_worker_then_supervisor_sigkilled(self):
        self.hive_worker_then_supervisor(None)

    def test_hive_fallback_subreaper(self):
        """Without cgroups: the restarted worker ends what the killed one left (its
        record), and a worker whose supervisor died ends its task's processes."""
        self.want_cgroup = False
        hive = self.hive_worker_then_supervisor({"HIVE_CONTAIN": "subreaper"})
        self.assertIn("fallback", hive.log())

    def hive_worker_then_supervisor(self, env):
        hive = Hive(self, self.tmp, self.bot, {"type": "cli", "command": orphan_command(self.marks)},
                    env=env)
        hive.start()
        wpid = hive.wait_running()
        drop_task(self.tmp, self.bot, "ORPH-1")
        first = self.wait_three("the task's three sleeps")
        self.assert_contained(first, hive.log(), "/%s/%s" % (self.tree, self.bot))
        os.kill(wpid, signal.SIGKILL)
        self.assert_all_gone(set(first), "the task of a SIGKILLed worker")
        # The restarted worker runs the task again: then the supervisor dies.
        wait_for(lambda: (hive.worker_pid() or 0) not in (0, wpid), UP_TIMEOUT,
                 what="a new worker")
        second = self.wait_three("the re-run task's sleeps")
        self.assertFalse(set(first) & set(second))
        hive.proc.kill()
        hive.proc.wait(timeout=10)
        self.assert_all_gone(None, "the task of a SIGKILLed supervisor")
        # The next start finds the tree the killed supervisor left and ends
        # it: a process put in the bot's old cgroup is killed.
        mnt = cgroup2_mount()
        stray = None
        if "bot processes: cgroup v2" in hive.log():
            # Empty now, its tree may already be gone: the `hive up` of a test
            # running beside this one removes a dead hive's empty cgroups. So
            # the bot's cgroup is made again when missing (made by us, it has
            # no owner recorded, and with the stray in it, it is not empty).
            bot_cg = os.path.join(mnt + own_cgroup(os.getpid()).rstrip("/"), self.tree, self.bot)
            self.marks.append(self.marks[0] + "4")
            stray = subprocess.Popen(["sleep", self.marks[-1]])
            for attempt in range(5):
                try:
                    os.makedirs(bot_cg, exist_ok=True)
                    with open(os.path.join(bot_cg, "cgroup.procs"), "w") as f:
                        f.write(str(stray.pid))
                    break
                except FileNotFoundError:  # swept between the two
                    if attempt == 4:
                        raise
        hive2 = Hive(self, self.tmp, self.bot, {"type": "mock"})
        hive2.start()
        if stray:
            self.assertIsNotNone(wait_for(lambda: stray.poll() is not None or None,
                                          GONE_TIMEOUT, what="the stray process killed"))
        wait_for(lambda: "bot processes:" in hive2.log(), UP_TIMEOUT, what="hive2's start")
        wait_for(lambda: "-> running" in hive2.log(), UP_TIMEOUT,
                 what="hive2's bot running")
        if stray:
            leftovers = [r for r, d, _ in os.walk(mnt) if os.path.basename(r) == self.tree]
            self.assertEqual(len(leftovers), 1, leftovers)
            hive2.proc.send_signal(signal.SIGTERM)
            hive2.proc.wait(timeout=20)
            self.assertFalse(os.path.isdir(leftovers[0]), "the hive's cgroup outlived it")
        return hive

    def standalone(self, env):
        cmd = orphan_command(self.marks)
        w = self.new_worker("--mode", "cli-only", "--adapter-type", "cli", "--", *cmd, port=None,
                            wait_listen=False, env=env, bot=self.bot)
        wait_for(lambda: "watching the file queue" in w.log_text(), UP_TIMEOUT,
                 what="the worker's start")
        drop_task(self.tmp, w.bot, "ORPH-2")
        first = self.wait_three("the task's three sleeps")
        self.assert_contained(first, w.log_text(), "/hive-%s-%d/" % (w.bot, w.proc.pid))
        # The record of what runs, for the next start: written in place, one
        # file (inode) from start to start, ended by a line "end".
        record = os.path.join(self.tmp, ".deia", "hive", "run", w.bot + ".procs")
        ino = os.stat(record).st_ino
        self.assertTrue(read(record).endswith("end\n"), read(record))
        w.proc.kill()
        w.proc.wait(timeout=10)
        w2 = self.restart(w, "--mode", "cli-only", "--adapter-type", "cli", "--", *cmd,
                          port=None, wait_listen=False, env=env)
        self.assert_all_gone(set(first), "the task of a SIGKILLed standalone worker")
        # The re-run task is ended with a clean stop too.
        self.wait_three("the re-run task's sleeps")
        self.assertEqual(os.stat(record).st_ino, ino, "the record was made anew")
        self.assertTrue(read(record).endswith("end\n"), read(record))
        w2.proc.send_signal(signal.SIGTERM)
        w2.proc.wait(timeout=20)
        self.assert_all_gone(None, "the task of a stopped standalone worker")
        st = os.stat(record)
        self.assertEqual((st.st_ino, st.st_size), (ino, 0), "a clean stop empties the record")
        return w2

    def test_standalone_worker_sigkilled_and_restarted(self):
        self.standalone(None)

    def test_standalone_worker_fallback_subreaper(self):
        self.want_cgroup = False
        w = self.standalone({"HIVE_CONTAIN": "subreaper"})
        self.assertIn("fallback: child subreaper", w.all_logs())


class StaleCgroups(WorkerTestCase):
    """A supervisor or a standalone worker SIGKILLed cannot remove its cgroup
    (the next start in the same work dir does); the next `hive up` of any
    work dir beside it removes what is left empty, whose recorded owner no
    longer runs."""

    def setUp(self):
        super().setUp()
        if not cgroup_usable():
            self.skipTest("no killable cgroup v2 for this process here")
        self.parent = cgroup2_mount() + own_cgroup(os.getpid()).rstrip("/")

    def tree_of(self, work_dir):
        return os.path.join(self.parent, "hive-%016x" % fnv1a64(os.path.realpath(work_dir)))

    def populated(self, cg):
        try:
            return "populated 1" in read(os.path.join(cg, "cgroup.events"))
        except OSError:
            return False

    def up_in(self, name, bot):
        """A running `hive up` of one mock BOT in a new folder NAME of tmp."""
        work_dir = os.path.join(self.tmp, name)
        os.makedirs(work_dir)
        h = Hive(self, work_dir, bot, {"type": "mock"})
        h.start()
        h.wait_running()
        return h

    def test_a_killed_hives_tree_goes_at_the_next_up_beside_it(self):
        first = os.path.join(self.tmp, "first")
        a = self.up_in("first", "BOT-SWEEPA")
        tree = self.tree_of(first)
        self.addCleanup(remove_cgroups, lambda name: name == os.path.basename(tree))
        self.assertTrue(os.path.isdir(tree))
        a.proc.kill()
        a.proc.wait(timeout=10)
        # Its worker follows it (it watches its supervisor); then the tree is
        # empty, and nothing of hive is left to remove it.
        # (The `hive up` of a test running beside this one may remove it
        # first: that is the same sweep.)
        wait_for(lambda: not self.populated(tree) or None, GONE_TIMEOUT, what="tree emptied")
        b = self.up_in("second", "BOT-SWEEPB")
        self.assertFalse(os.path.exists(tree), "the killed hive's empty tree is still there")
        self.assertTrue(os.path.isdir(self.tree_of(b.work_dir)), "the running hive's own tree")

    def test_a_killed_standalone_workers_cgroup_goes_at_an_up_beside_it(self):
        bot = "BOT-SWEEP%04d" % random.randrange(10 ** 4)
        self.addCleanup(remove_cgroups, lambda name: name.startswith("hive-%s-" % bot))
        w = self.new_worker(bot=bot)
        mine = os.path.join(self.parent, "hive-%s-%d" % (bot, w.proc.pid))
        self.assertTrue(os.path.isdir(mine), mine)
        w.kill()
        self.up_in("hive", "BOT-SWEEPC")
        self.assertFalse(os.path.exists(mine), "the killed worker's empty cgroup is still there")

    def test_a_removed_tree_is_made_again(self):
        """An idle hive's tree taken for a dead one's (a sweep that cannot see
        its pid) is made again at the next start of a bot."""
        h = Hive(self, self.tmp, "BOT-SWEEPD", {"type": "mock"})
        h.start()
        first = h.wait_running()
        tree = self.tree_of(self.tmp)
        self.addCleanup(remove_cgroups, lambda name: name == os.path.basename(tree))
        api = "http://127.0.0.1:%d/api/bots/BOT-SWEEPD/" % h.listen
        self.assertIn(curl(api + "stop", method="POST").status, (200, 202))
        wait_for(lambda: not self.populated(tree) or None, GONE_TIMEOUT, what="tree emptied")
        for root, dirs, _ in sorted(os.walk(tree), key=lambda t: -len(t[0])):
            os.rmdir(root)
        self.assertIn(curl(api + "start", method="POST").status, (200, 202))
        pid = wait_for(lambda: (lambda p: p if p and p != first and own_cgroup(p) else None)(
            h.worker_pid()), UP_TIMEOUT, what="the bot running again")
        self.assertIn("/%s/BOT-SWEEPD/" % os.path.basename(tree), own_cgroup(pid))
        self.assertIn("had been removed by another process; made again", h.log())


class Record(WorkerTestCase):
    """The record of what runs (.deia/hive/run/<BOT>.procs) is written in place but
    never through a link: a symlink or a FIFO planted there is replaced."""

    def test_planted_symlink_and_fifo_replaced(self):
        run = os.path.join(self.tmp, ".deia", "hive", "run")
        os.makedirs(run, exist_ok=True)
        outside = os.path.join(self.tmp, "outside.txt")
        with open(outside, "w") as f:
            f.write("keep me\n")
        for plant in ("symlink", "fifo"):
            bot = "BOT-REC%s" % plant.upper()
            record = os.path.join(run, bot + ".procs")
            if plant == "symlink":
                os.symlink(outside, record)
            else:
                os.mkfifo(record)
            w = self.new_worker("--mode", "cli-only", "--adapter-type", "mock", port=None,
                                wait_listen=False, bot=bot)
            wait_for(lambda: "watching the file queue" in w.log_text(), UP_TIMEOUT,
                     what="the worker's start")
            st = os.lstat(record)
            self.assertTrue(stat.S_ISREG(st.st_mode), "%s: the record is no plain file" % plant)
            self.assertTrue(read(record).endswith("end\n"), read(record))
            self.assertEqual(read(outside), "keep me\n", "written through the " + plant)
            w.proc.send_signal(signal.SIGTERM)
            w.proc.wait(timeout=20)


class Utf8Output(WorkerTestCase):
    """Output is UTF-8 text; chunks and results are never null (SPEC §3.1, §4, §5)."""

    def test_websocket_chunks_of_split_characters(self):
        text = "中" * 100000  # 300 KB: the 64 KiB pipe reads cut characters
        prog = "import sys; sys.stdout.buffer.write(%r.encode()*100000)" % "中"
        w = self.new_worker("--adapter-type", "cli", "--", sys.executable, "-c", prog)

        async def go():
            async with websockets.connect("ws://127.0.0.1:%d/ws" % w.port, max_size=None,
                                          ping_interval=None, open_timeout=10) as ws:
                await ws.send(json.dumps({"type": "task", "command": "cjk"}))
                got = []
                while True:
                    m = await ws_recv_json(ws, 20)
                    got.append(m)
                    if m is None or m.get("type") == "response":
                        return got
        msgs = run_async(go(), 60)
        self.assertNotIn(None, msgs, "a null message")
        chunks = [m for m in msgs if m["type"] == "chunk"]
        self.assertGreater(len(chunks), 1)
        for c in chunks:
            self.assertIsInstance(c["content"], str, c)
        self.assertEqual("".join(c["content"] for c in chunks), text)
        self.assertEqual(msgs[-1]["content"], text)
        self.assertTrue(msgs[-1]["success"])

    def test_get_task_keeps_result_for_binary_output(self):
        w = self.new_worker("--adapter-type", "cli", "--", "printf", "\\377\\376abc\\344\\270")
        tid = w.submit("binary please")["task_id"]
        w.wait_state(tid, ("done", "failed"))
        body = w.task(tid).json()
        self.assertIn("result", body, body)
        self.assertEqual(body["result"]["output"], "\ufffd\ufffdabc\ufffd")
        self.assertTrue(body["result"]["success"])

    def test_hive_send_wait_returns_for_binary_output(self):
        bot = "BOT-BIN%04d" % random.randrange(10 ** 4)
        hive = Hive(self, self.tmp, bot,
                    {"type": "cli", "command": ["printf", "\\377\\376abc\\344\\270"]})
        hive.start()
        hive.wait_running()
        wait_for(lambda: "-> running" in hive.log(), UP_TIMEOUT,
                 what="the bot running")
        try:
            p = subprocess.run([HIVE_BIN, "send", bot, "binary please", "--wait"],
                               cwd=self.tmp, env=hive.env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, timeout=20)
        except subprocess.TimeoutExpired:
            self.fail("hive send --wait never returned")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stdout.decode("utf-8"), "\ufffd\ufffdabc\ufffd\n")
        hive.proc.send_signal(signal.SIGTERM)
        hive.proc.wait(timeout=20)


class OutOfMemory(WorkerTestCase):
    """A task's process killed by the kernel's OOM killer is answered as
    out of memory, not only as "killed by signal 9": a standalone worker in
    a cgroup v1 memory group of the test's own with a 64 MiB limit (what
    `memory_max` makes on a host whose memory controller is on cgroup v1),
    a cli adapter that fills 512 MiB. The worker, far smaller, is not the
    one killed and answers. (On a cgroup v2 host the supervisor's
    memory.oom.group ends the worker with its task instead:
    test_roster_keys.)"""

    def test_adapter_oom_killed_is_answered_as_out_of_memory(self):
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from test_roster_keys import controller_dir
        parent = controller_dir("memory")
        if not parent:
            self.skipTest("no writable cgroup v1 memory group here (cgroup v2 only, or not root)")
        group = os.path.join(parent, "hive-e2e-oom-%d" % os.getpid())
        os.mkdir(group)
        self.addCleanup(os.rmdir, group)   # after tearDown has stopped the worker
        with open(os.path.join(group, "memory.limit_in_bytes"), "w") as f:
            f.write(str(64 << 20))
        memsw = os.path.join(group, "memory.memsw.limit_in_bytes")
        if os.path.exists(memsw):
            with open(memsw, "w") as f:
                f.write(str(64 << 20))
        # "eat" fills 512 MiB; anything else only sleeps (to be killed by us).
        prog = ("import sys, time\n"
                "if 'eat' in sys.stdin.read():\n"
                "    b = b'x' * (512 << 20)\n"
                "time.sleep(30)\n")
        w = self.new_worker("--adapter-type", "cli", "--", sys.executable, "-c", prog)
        with open(os.path.join(group, "cgroup.procs"), "w") as f:
            f.write(str(w.proc.pid))
        tid = w.submit("eat")["task_id"]
        w.wait_state(tid, ("done", "failed"), timeout=60)
        body = w.task(tid).json()
        self.assertEqual(body["state"], "failed", body)
        self.assertEqual(body["result"]["error"], "out of memory (killed by signal 9)", body)
        self.assertTrue(w.alive())
        # A SIGKILL from elsewhere, with no OOM kill since the task began, is
        # told as the signal alone.
        tid = w.submit("sleep")["task_id"]
        children = "/proc/%d/task/%d/children" % (w.proc.pid, w.proc.pid)
        wait_for(lambda: read(children).split(), 20, what="the adapter started")
        os.kill(int(read(children).split()[0]), signal.SIGKILL)
        w.wait_state(tid, ("done", "failed"), timeout=60)
        self.assertEqual(w.task(tid).json()["result"]["error"], "killed by signal 9")


class HandOver(WorkerTestCase):
    """A cli adapter under `hive up` gets none of the hand-over variables (SPEC §3.1)."""

    def test_adapter_environment_scrubbed(self):
        bot = "BOT-ENV%04d" % random.randrange(10 ** 4)
        hive = Hive(self, self.tmp, bot, {"type": "cli", "command": ["env"]},
                    env={"EDGES_TOKEN": "s3cret-token", "FDSTORE": "9",
                         "WATCHDOG_PID": "1", "LISTEN_FDNAMES": "x"},
                    hive_extra={"token_env": "EDGES_TOKEN"})
        hive.start()
        hive.wait_running()
        auth = ("Authorization: Bearer s3cret-token",)
        r = curl("http://127.0.0.1:%d/api/task" % hive.port, "POST",
                 json.dumps({"command": "env please", "task_id": "ENV-1"}), headers=auth)
        self.assertEqual(r.status, 202, r)

        def done():
            b = curl("http://127.0.0.1:%d/api/task/ENV-1" % hive.port, headers=auth).json()
            return b if b.get("state") in ("done", "failed") else None
        body = wait_for(done, UP_TIMEOUT, what="ENV-1 answered")
        env = dict(line.split("=", 1) for line in body["result"]["output"].splitlines()
                   if "=" in line)
        self.assertEqual(env.get("HIVE_TASK_ID"), "ENV-1")
        for name in env:
            self.assertFalse(name.startswith(("LISTEN_", "WATCHDOG_")), name)
        for name in ("HIVE_TOKEN", "EDGES_TOKEN", "NOTIFY_SOCKET", "FDSTORE"):
            self.assertNotIn(name, env)
        self.assertNotIn("s3cret-token", body["result"]["output"])


if __name__ == "__main__":
    main()
