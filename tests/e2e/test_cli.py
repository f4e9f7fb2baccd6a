"""End-to-end tests of the `hive` command line as an operator uses it
(SPEC.md §1; issue 12): status exit codes and filters, --json, --watch,
control of several bots (restart/stop/start/pause/resume/interrupt, `all`),
`send -` from stdin, `send --wait` on every outcome, `logs` of several bots
merged in time with -n/--since/-f, and `--opt=value` on both programs.

Each class starts the real `hive up` (tests/e2e/test_supervisor_front.py's
Hive: free loopback ports, a temporary work dir) and drives it with the real
`hive` binary; the log tests that need exact times write the captured log
files themselves (the format the supervisor writes: the worker's logger
stamps each line "2026-12-03T22:01:13.123Z LEVEL [BOT] text"). Every process
started here is stopped by pid.
"""

import json
import os
import pty
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from hive_e2e import BUILD_DIR, wait_for  # noqa: E402
from test_supervisor_front import HIVE_BIN, Hive, worker_log_dump  # noqa: E402

WORKER_BIN = os.path.join(BUILD_DIR, "worker", "hive-worker")
TIMEOUT = 30.0
SLOW = "{type: mock, delay_ms: 60000}"   # a task that runs until something ends it


def run(args, hive=None, input=None, timeout=60, env=None, cwd=None):
    """Run `hive ARGS` (text); --file=hive.yaml appended for a hive."""
    argv = [HIVE_BIN] + list(args) + (["--file=" + hive.yaml] if hive else [])
    return subprocess.run(argv, cwd=cwd or (hive.work_dir if hive else None),
                          env=env or (hive.env() if hive else None), input=input,
                          stdin=None if input is not None else subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout,
                          text=True)


def popen(args, hive, **kw):
    return subprocess.Popen([HIVE_BIN] + list(args) + ["--file=" + hive.yaml],
                            cwd=hive.work_dir, env=hive.env(), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


def finish(proc, timeout=TIMEOUT):
    """Wait (bounded) for PROC; kill it if it overstays. Returns (rc, out, err)."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate(timeout=10)
        return None, out, err
    return proc.returncode, out, err


class CliCase(unittest.TestCase):
    """A hive shared by the tests of a class."""

    BOTS = [{"id": "BOT-001"}, {"id": "BOT-002", "adapter": SLOW}]
    maxDiff = 4000

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="hive-e2e-cli-")
        cls.hive = Hive(cls.tmp, cls.BOTS)
        try:
            cls.hive.start()
        except BaseException:
            cls.hive.stop()
            sys.stderr.write(cls.hive.log_text()[-4000:])
            raise

    @classmethod
    def tearDownClass(cls):
        code, killed = cls.hive.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)
        if killed:
            raise AssertionError("hive up did not exit after SIGTERM")

    def tearDown(self):
        if not getattr(self._outcome, "success", True):
            sys.stderr.write("---- hive up ----\n%s\n%s\n" % (self.hive.log_text()[-4000:],
                                                              worker_log_dump(self.hive)))
        # leave every bot running and unpaused for the next test
        run(["resume", "all"], self.hive)
        # `hive stop` returns once asked (202), not once stopped: a bot a test
        # stopped may still be finishing its task (its stop grace), and one
        # started now would be refused. Wait for it to be stopped first.
        wait_for(lambda: all(self.hive.bot(b)["state"] != "stopping" for b in self.hive.bots),
                 TIMEOUT, what="no bot stopping")
        for bot in self.hive.bots:
            if self.hive.bot(bot)["state"] in ("stopped", "fatal"):
                run(["start", bot], self.hive)
        self.hive.wait_running()

    def state(self, bot):
        return self.hive.bot(bot)["state"]

    def wait_state(self, bot, state):
        wait_for(lambda: self.state(bot) == state, TIMEOUT, what="%s %s" % (bot, state))

    def task_id(self, proc):
        """The id `send --wait` announces on stderr ("hive: task X queued")."""
        deadline = time.monotonic() + TIMEOUT
        seen = b""
        while time.monotonic() < deadline:
            ready, _, _ = select.select([proc.stderr], [], [], 0.5)
            if ready:
                chunk = os.read(proc.stderr.fileno(), 4096)
                if not chunk:
                    break
                seen += chunk
                m = re.search(rb"task (\S+) queued", seen)
                if m:
                    return m.group(1).decode()
        raise AssertionError("no task id announced: %r" % seen)


class StatusTest(CliCase):

    def test_exit_codes(self):
        """0 when every listed bot is running, 3 when one is not (systemctl is-active)."""
        self.assertEqual(run(["status"], self.hive).returncode, 0)
        self.assertEqual(run(["status", "BOT-001", "BOT-002"], self.hive).returncode, 0)
        p = run(["stop", "BOT-002"], self.hive)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.wait_state("BOT-002", "stopped")
        p = run(["status"], self.hive)
        self.assertEqual(p.returncode, 3, p.stdout + p.stderr)
        self.assertRegex(p.stdout, r"(?m)^BOT-002\s+stopped")
        p = run(["status", "BOT-001"], self.hive)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertNotIn("BOT-002", p.stdout)
        self.assertEqual(run(["status", "BOT-002"], self.hive).returncode, 3)
        self.assertEqual(run(["status", "BOT-001", "BOT-002"], self.hive).returncode, 3)
        p = run(["status", "NOPE"], self.hive)
        self.assertEqual(p.returncode, 3)
        self.assertIn("unknown bot NOPE", p.stderr)
        self.assertEqual(run(["start", "BOT-002"], self.hive).returncode, 0)
        self.wait_state("BOT-002", "running")
        self.assertEqual(run(["status"], self.hive).returncode, 0)

    def test_json_filtered(self):
        p = run(["status", "--json", "BOT-002"], self.hive)
        self.assertEqual(p.returncode, 0, p.stderr)
        st = json.loads(p.stdout)
        self.assertEqual([b["id"] for b in st["bots"]], ["BOT-002"])
        self.assertEqual(st["bots"][0]["state"], "running")
        self.assertEqual(st["hive"]["pid"], self.hive.proc.pid)

    def test_colour_on_a_terminal_only(self):
        def on_tty(extra_env):
            env = {k: v for k, v in self.hive.env().items() if k != "NO_COLOR"}
            env.update(extra_env)
            master, slave = pty.openpty()
            proc = subprocess.Popen([HIVE_BIN, "status", "--file=" + self.hive.yaml],
                                    cwd=self.hive.work_dir, env=env, stdin=subprocess.DEVNULL,
                                    stdout=slave, stderr=subprocess.DEVNULL)
            os.close(slave)
            out = b""
            try:
                while True:
                    ready, _, _ = select.select([master], [], [], TIMEOUT)
                    if not ready:
                        break
                    try:
                        chunk = os.read(master, 4096)
                    except OSError:  # EIO: the other side closed
                        break
                    if not chunk:
                        break
                    out += chunk
            finally:
                os.close(master)
                finish(proc)
            return out.decode()
        coloured = on_tty({})
        self.assertIn("\x1b[32mrunning", coloured)
        self.assertNotIn("\x1b[", on_tty({"NO_COLOR": "1"}))
        piped = run(["status"], self.hive).stdout
        self.assertIn("running", piped)
        self.assertNotIn("\x1b[", piped)

    def test_watch_redraws_in_place_on_a_terminal(self):
        master, slave = pty.openpty()
        proc = subprocess.Popen([HIVE_BIN, "status", "--watch", "--file=" + self.hive.yaml],
                                cwd=self.hive.work_dir, env=self.hive.env(),
                                stdin=subprocess.DEVNULL, stdout=slave,
                                stderr=subprocess.DEVNULL)
        os.close(slave)
        out = b""
        try:
            deadline = time.monotonic() + TIMEOUT
            while out.count(b"\x1b[H\x1b[2J") < 2 and time.monotonic() < deadline:
                ready, _, _ = select.select([master], [], [], 1)
                if ready:
                    try:
                        out += os.read(master, 4096)
                    except OSError:  # EIO: the program is gone
                        break
        finally:
            proc.kill()
            finish(proc)
            os.close(master)
        frames = out.split(b"\x1b[H\x1b[2J")
        self.assertGreaterEqual(len(frames), 3, out[-2000:])  # home + clear before each table
        self.assertIn(b"BOT-001", frames[1])

    def test_watch_colours_on_a_terminal_only(self):
        """--watch colours the states on a terminal, not with NO_COLOR, not in a pipe."""
        def watch(env, tty):
            master, slave = pty.openpty() if tty else os.pipe()
            proc = subprocess.Popen([HIVE_BIN, "status", "--watch", "--file=" + self.hive.yaml],
                                    cwd=self.hive.work_dir, env=env, stdin=subprocess.DEVNULL,
                                    stdout=slave, stderr=subprocess.DEVNULL)
            os.close(slave)
            out = b""
            try:
                deadline = time.monotonic() + TIMEOUT
                while out.count(b"BOT-002") < 2 and time.monotonic() < deadline:
                    ready, _, _ = select.select([master], [], [], 1)
                    if ready:
                        try:
                            chunk = os.read(master, 4096)
                        except OSError:
                            break
                        if not chunk:
                            break
                        out += chunk
            finally:
                proc.kill()
                finish(proc)
                os.close(master)
            self.assertGreaterEqual(out.count(b"BOT-002"), 2, out)  # two tables drawn
            return out
        env = {k: v for k, v in self.hive.env().items() if k != "NO_COLOR"}
        self.assertIn(b"\x1b[32mrunning", watch(env, True))
        self.assertNotIn(b"\x1b[32m", watch(dict(env, NO_COLOR="1"), True))
        self.assertNotIn(b"\x1b[", watch(env, False))

    def test_watch_redraws(self):
        proc = popen(["status", "--watch"], self.hive)
        try:
            frames = 0
            deadline = time.monotonic() + TIMEOUT
            while frames < 2 and time.monotonic() < deadline:
                line = proc.stdout.readline().decode()
                if not line:
                    break
                frames += line.startswith("ID ")
            self.assertEqual(frames, 2, "two tables within %s s" % TIMEOUT)
        finally:
            proc.kill()
            finish(proc)


class ControlTest(CliCase):

    def test_restart_many_and_all(self):
        old = {b: self.hive.bot(b)["pid"] for b in self.hive.bots}
        p = run(["restart", "BOT-001", "BOT-002"], self.hive)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stdout.count("restart accepted"), 2)
        for b in self.hive.bots:
            wait_for(lambda: self.hive.bot(b)["state"] == "running"
                     and self.hive.bot(b)["pid"] not in (None, old[b]), TIMEOUT,
                     what="%s restarted" % b)
        self.hive.note_children()
        p = run(["stop", "all"], self.hive)
        self.assertEqual(p.returncode, 0, p.stderr)
        for b in self.hive.bots:
            self.wait_state(b, "stopped")
        p = run(["start", "all"], self.hive)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.hive.wait_running()
        p = run(["stop", "BOT-001", "NOPE"], self.hive)
        self.assertEqual(p.returncode, 1)
        self.assertIn("NOPE", p.stderr)
        self.assertEqual(run(["stop", "all", "BOT-001"], self.hive).returncode, 2)

    def test_pause_resume(self):
        pause = os.path.join(self.hive.work_dir, ".deia", "hive", "controls", "BOT-001-PAUSE")
        p = run(["pause", "BOT-001"], self.hive)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("BOT-001: paused", p.stdout)
        self.assertTrue(os.path.exists(pause))
        self.assertEqual(self.hive.get("/bots/BOT-001/status").json()["status"], "paused")
        p = run(["resume", "all"], self.hive)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("BOT-001: resumed", p.stdout)
        self.assertFalse(os.path.exists(pause))
        self.assertNotEqual(self.hive.get("/bots/BOT-001/status").json()["status"], "paused")

    def test_interrupt(self):
        p = run(["interrupt", "BOT-001"], self.hive)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("nothing to interrupt", p.stdout)
        r = self.hive.post("/bots/BOT-002/api/task", {"command": "long", "task_id": "cli-int-1"})
        self.assertEqual(r.status, 202, r)
        wait_for(lambda: self.hive.get("/bots/BOT-002/api/task/cli-int-1").json()["state"]
                 == "running", TIMEOUT, what="task running")
        p = run(["interrupt", "BOT-002"], self.hive)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("BOT-002: interrupted", p.stdout)
        task = self.hive.wait_task("BOT-002", "cli-int-1")
        self.assertEqual(task["state"], "failed")
        self.assertIn("interrupted", task["result"]["error"])


class SendTest(CliCase):

    BOTS = [{"id": "BOT-001"}, {"id": "BOT-002", "adapter": SLOW},
            {"id": "BOT-003", "adapter": "{type: cli, command: [sh, -c, 'echo half; exit 3']}"}]

    def test_send_from_stdin(self):
        text = "first line from stdin\nsecond line: é\n"
        p = run(["send", "BOT-001", "-"], self.hive, input=text)
        self.assertEqual(p.returncode, 0, p.stderr)
        task_id = p.stdout.strip()
        body = self.hive.wait_response("BOT-001", task_id)
        self.assertIn("first line from stdin", body)
        self.assertIn("second line: é", body)
        p = run(["send", "BOT-001", "-", "--wait"], self.hive, input="waited on stdin\n")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("waited on stdin", p.stdout)
        p = run(["send", "BOT-001", "-"], self.hive, input="")
        self.assertEqual(p.returncode, 1)
        self.assertIn("empty", p.stderr)

    def test_wait_success_and_failure(self):
        p = run(["send", "--wait", "BOT-001", "all", "good"], self.hive)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("all good", p.stdout)
        p = run(["send", "--wait", "BOT-003", "doomed"], self.hive)
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        self.assertRegex(p.stderr, r"task \S+ failed: exit status 3")

    def test_wait_cancelled(self):
        proc = popen(["send", "--wait", "BOT-002", "to be cancelled"], self.hive)
        try:
            task_id = self.task_id(proc)
            r = self.hive.post("/bots/BOT-002/api/task/%s/cancel" % task_id)
            self.assertEqual(r.status, 200, r)
            rc, out, err = finish(proc)
            self.assertEqual(rc, 1, (out, err))
            self.assertIn(b"cancelled", err)
        finally:
            if proc.poll() is None:
                proc.kill()
                finish(proc)

    def test_wait_bot_stopped_under_it(self):
        proc = popen(["send", "--wait", "BOT-002", "outlived"], self.hive)
        try:
            self.task_id(proc)
            p = run(["stop", "BOT-002"], self.hive)
            self.assertEqual(p.returncode, 0, p.stderr)
            rc, out, err = finish(proc)
            self.assertEqual(rc, 1, (out, err))
        finally:
            if proc.poll() is None:
                proc.kill()
                finish(proc)

    def test_wait_hive_frozen(self):
        """A supervisor that stops answering (SIGSTOP) ends the wait: never for ever."""
        proc = popen(["send", "--wait", "BOT-002", "frozen"], self.hive)
        try:
            self.task_id(proc)
            os.kill(self.hive.proc.pid, signal.SIGSTOP)
            try:
                rc, out, err = finish(proc, timeout=90)
            finally:
                os.kill(self.hive.proc.pid, signal.SIGCONT)
            self.assertEqual(rc, 1, (out, err))
            self.assertIn(b"lost the hive", err)
        finally:
            if proc.poll() is None:
                proc.kill()
                finish(proc)
            r = self.hive.get("/bots/BOT-002/api/interrupt", method="POST", body={})
            self.assertIn(r.status, (200, 503))


class WatchEndsTest(unittest.TestCase):
    """`status --watch` stops by itself when the supervisor goes away."""

    def test_watch_ends_with_the_hive(self):
        tmp = tempfile.mkdtemp(prefix="hive-e2e-cli-watch-")
        hive = Hive(tmp, [{"id": "BOT-001"}])
        try:
            hive.start()
            proc = popen(["status", "--watch"], hive)
            line = ""
            deadline = time.monotonic() + TIMEOUT
            while not line.startswith("ID ") and time.monotonic() < deadline:
                line = proc.stdout.readline().decode()
            self.assertTrue(line.startswith("ID "))
            self.assertEqual(run(["down"], hive).returncode, 0)
            rc, out, err = finish(proc)
            self.assertEqual(rc, 3, err)
            self.assertIn(b"went away", err)
        finally:
            hive.stop()
            shutil.rmtree(tmp, ignore_errors=True)


def stamp(t):
    """The worker logger's stamp for Unix time T."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + ".%03dZ" % (int(t * 1000) % 1000)


class LogsTest(unittest.TestCase):
    """`hive logs` over captured log files (no hive needs to run to read them)."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="hive-e2e-cli-logs-")
        self.yaml = os.path.join(self.tmp, "hive.yaml")
        with open(self.yaml, "w") as f:
            f.write("hive: {name: logs, work_dir: ., listen: 127.0.0.1:1}\n"
                    "bots:\n  - {id: BOT-A, port: 2}\n  - {id: BOT-LONG, port: 3}\n")
        self.dir = os.path.join(self.tmp, ".deia", "hive", "logs")
        os.makedirs(self.dir)
        self.t0 = time.time() - 3600  # an hour ago
        self.write("BOT-A.log.1", [(0, "a0")])  # rotated: read first
        self.write("BOT-A.log", [(10, "a1"), (30, "a3"), (None, "a3 continued"), (50, "a5")])
        self.write("BOT-LONG.log", [(20, "b2"), (40, "b4"), (60, "b6")])

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def write(self, name, lines):
        with open(os.path.join(self.dir, name), "a") as f:
            for offset, text in lines:
                f.write(text + "\n" if offset is None else
                        "%s INFO [x] %s\n" % (stamp(self.t0 + offset), text))

    def texts(self, *args):
        p = subprocess.run([HIVE_BIN, "logs"] + list(args) + ["--file=" + self.yaml],
                           cwd=self.tmp, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           stdin=subprocess.DEVNULL, timeout=60, text=True)
        self.assertEqual(p.returncode, 0, p.stderr)
        return p.stdout.splitlines()

    def test_interleaved_in_time_order(self):
        out = self.texts()
        self.assertEqual([line.split(" | ")[0] for line in out],
                         ["BOT-A   ", "BOT-A   ", "BOT-LONG", "BOT-A   ", "BOT-A   ",
                          "BOT-LONG", "BOT-A   ", "BOT-LONG"])
        self.assertEqual(self.words(out), ["a0", "a1", "b2", "a3", "a3+", "b4", "a5", "b6"])
        self.assertEqual(out[4], "BOT-A    | a3 continued")
        self.assertEqual(self.texts("BOT-LONG", "BOT-A"), out)  # the same lines, named
        one = self.texts("BOT-LONG")   # one bot named: its lines as they are
        self.assertEqual([line.split()[-1] for line in one], ["b2", "b4", "b6"])
        self.assertNotIn(" | ", one[0])
        self.assertTrue(all(" | " not in x for x in self.texts("--no-prefix")))

    @staticmethod
    def words(lines):
        """The last word of each line ("a3+" for the unstamped continuation)."""
        return ["a3+" if line.endswith("continued") else line.split()[-1] for line in lines]

    def test_tail(self):
        # the last two lines of each bot, merged: BOT-A "a3 continued", "a5"; BOT-LONG "b4", "b6"
        self.assertEqual(self.words(self.texts("-n", "2")), ["a3+", "b4", "a5", "b6"])
        self.assertEqual(self.words(self.texts("--tail=1")), ["a5", "b6"])
        self.assertEqual(self.texts("-n", "0"), [])
        self.assertEqual(len(self.texts("--tail", "all")), 8)
        self.assertEqual(self.words(self.texts("BOT-A", "-n1")), ["a5"])

    def test_since(self):
        absolute = stamp(self.t0 + 35)[:19] + "Z"
        out = self.texts("--since", absolute)
        self.assertEqual([line.split()[-1] for line in out], ["b4", "a5", "b6"])
        self.assertEqual(self.texts("--since=" + absolute, "-n", "1"),
                         [out[1], out[2]])
        # relative: an hour ago minus 45 s is after b4 (t0+40) and before a5 (t0+50)
        rel = "%ds" % int(time.time() - (self.t0 + 45))
        self.assertEqual([line.split()[-1] for line in self.texts("--since", rel)], ["a5", "b6"])
        self.assertEqual(self.texts("--since", "1m"), [])
        p = subprocess.run([HIVE_BIN, "logs", "--since", "yesterday-ish", "--file=" + self.yaml],
                           cwd=self.tmp, capture_output=True, timeout=60, text=True)
        self.assertEqual(p.returncode, 2)

    def test_follow_all(self):
        proc = subprocess.Popen([HIVE_BIN, "logs", "-f", "-n", "1", "--file=" + self.yaml],
                                cwd=self.tmp, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                stdin=subprocess.DEVNULL)

        def lines(n):
            data = b""
            deadline = time.monotonic() + TIMEOUT
            while data.count(b"\n") < n and time.monotonic() < deadline:
                ready, _, _ = select.select([proc.stdout], [], [], 1)
                if ready:
                    chunk = os.read(proc.stdout.fileno(), 4096)
                    if not chunk:
                        break
                    data += chunk
            return [s.split(" | ")[0].strip() + ":" + s.split()[-1]
                    for s in data.decode().splitlines()]
        try:
            self.assertEqual(lines(2), ["BOT-A:a5", "BOT-LONG:b6"])  # then it follows
            self.write("BOT-LONG.log", [(70, "fresh-b")])
            self.write("BOT-A.log", [(80, "fresh-a")])
            self.assertEqual(lines(2), ["BOT-LONG:fresh-b", "BOT-A:fresh-a"])
            os.rename(os.path.join(self.dir, "BOT-A.log"), os.path.join(self.dir, "BOT-A.log.1"))
            self.write("BOT-A.log", [(90, "after-rotation")])
            self.assertEqual(lines(1), ["BOT-A:after-rotation"])
        finally:
            proc.kill()
            finish(proc)


class LiveLogsTest(CliCase):
    """The logs a running hive writes come out of `hive logs` for every bot."""

    BOTS = [{"id": "BOT-001"}, {"id": "BOT-002"}]

    def test_all_bots_prefixed(self):
        out = run(["logs"], self.hive).stdout
        for bot in self.hive.bots:
            self.assertRegex(out, r"(?m)^%s \| .*listening on" % bot)
        p = run(["logs", "-n", "1", "BOT-001"], self.hive)
        self.assertEqual(len(p.stdout.splitlines()), 1)


class OptEqualsTest(unittest.TestCase):
    """--opt=value works like --opt value on both programs."""

    def test_worker_opt_equals(self):
        tmp = tempfile.mkdtemp(prefix="hive-e2e-cli-opt-")
        proc = subprocess.Popen([WORKER_BIN, "BOT-OPT", "--port=0", "--mode=hybrid",
                                 "--work-dir=" + tmp, "--adapter-type=cli",
                                 "--adapter-cmd=sh -c cat", "--timeout=5", "--queue-max=3"],
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        try:
            line = b""
            deadline = time.monotonic() + TIMEOUT
            while b"listening on" not in line and time.monotonic() < deadline:
                line = proc.stderr.readline()
                if not line:
                    break
            self.assertIn(b"adapter cli", line)
            port = int(re.search(rb"127\.0\.0\.1:(\d+)", line).group(1))
            from hive_e2e import curl
            r = curl("http://127.0.0.1:%d/status" % port)
            self.assertEqual(r.json()["mode"], "hybrid")
        finally:
            proc.terminate()
            try:
                proc.wait(TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
            proc.stdout.close()
            proc.stderr.close()
            shutil.rmtree(tmp, ignore_errors=True)
        bad = subprocess.run([WORKER_BIN, "BOT-OPT", "--mode=sideways"], capture_output=True,
                             timeout=30, text=True)
        self.assertEqual(bad.returncode, 2)
        self.assertIn("invalid value for --mode: 'sideways'", bad.stderr)
        bad = subprocess.run([WORKER_BIN, "BOT-OPT", "--nope=1"], capture_output=True,
                             timeout=30, text=True)
        self.assertEqual(bad.returncode, 2)
        self.assertIn("unknown option --nope", bad.stderr)

    def test_hive_opt_equals(self):
        tmp = tempfile.mkdtemp(prefix="hive-e2e-cli-opt-")
        try:
            yaml = os.path.join(tmp, "other.yaml")
            with open(yaml, "w") as f:
                f.write("hive: {name: o, listen: 127.0.0.1:1}\nbots:\n  - {id: B1, port: 2}\n")
            p = subprocess.run([HIVE_BIN, "check", "--file=" + yaml], capture_output=True,
                               timeout=30, text=True, cwd=tmp)
            self.assertEqual(p.returncode, 0, p.stderr)
            os.makedirs(os.path.join(tmp, ".deia", "hive", "logs"))
            with open(os.path.join(tmp, ".deia", "hive", "logs", "B1.log"), "w") as f:
                f.write("%s INFO [B1] one\n%s INFO [B1] two\n" % (stamp(time.time() - 5),
                                                                 stamp(time.time() - 4)))
            p = subprocess.run([HIVE_BIN, "logs", "--file=" + yaml, "--tail=1", "--since=1h"],
                               capture_output=True, timeout=30, text=True, cwd=tmp)
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertRegex(p.stdout, r"^B1 \| .* two\n$")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    unittest.main(verbosity=2)
