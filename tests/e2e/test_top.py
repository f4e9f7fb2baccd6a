"""End-to-end tests of `hive top` (issue 12): the live terminal view of the
bots and of their running tasks' output, driven by the supervisor's event
stream. Each test runs the real `hive top` on a pseudo-terminal against a
real `hive up` (test_supervisor_front.py's Hive: free loopback ports, a
temporary work dir) and reads what it draws; it checks that the terminal is
given back as it was (the alternate screen left, echo and line mode back)
on `q` and on SIGTERM, that SIGWINCH redraws at the new width, that colours
follow NO_COLOR, and that without a terminal one snapshot is printed. Every
process started here is stopped by pid.
"""

import fcntl
import os
import pty
import re
import select
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import termios
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from hive_e2e import wait_for  # noqa: E402
from test_supervisor_front import HIVE_BIN, Hive, worker_log_dump  # noqa: E402

TIMEOUT = 30.0
ENTER_ALT = b"\x1b[?1049h"
LEAVE_ALT = b"\x1b[?1049l"
# A task that prints two lines, then runs until it is interrupted; the
# second line's text is computed by the shell, so it appears nowhere but in
# the task's output.
TALKER = '{type: cli, command: [sh, -c, "echo first; echo marker-$((40+2)); exec sleep 60"]}'


# Echoes the task (without a final newline: a line still being written) and
# runs on: the task's own text is its output.
ECHO = '{type: cli, command: [sh, -c, "cat; exec sleep 60"]}'


class TopOnATerminal:
    """One `hive top` on a pty: what it drew so far, keys, signals, size."""

    def __init__(self, hive, env=None, cols=120, rows=40):
        self.master, slave = pty.openpty()
        self.set_size(cols, rows)
        self.before = termios.tcgetattr(self.master)
        self.proc = subprocess.Popen([HIVE_BIN, "top", "--file=" + hive.yaml],
                                     cwd=hive.work_dir, env=env or hive.env(), stdin=slave,
                                     stdout=slave, stderr=slave, start_new_session=True)
        os.close(slave)
        self.out = b""

    def set_size(self, cols, rows):
        fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def read_until(self, predicate, timeout=TIMEOUT, what="output"):
        """Read what top draws until PREDICATE(all output) holds."""
        deadline = time.monotonic() + timeout
        while not predicate(self.out):
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("hive top: no %s within %.0f s; drew:\n%r"
                                     % (what, timeout, self.out[-3000:]))
            ready, _, _ = select.select([self.master], [], [], min(left, 1.0))
            if ready:
                try:
                    chunk = os.read(self.master, 65536)
                except OSError:  # EIO: top is gone
                    raise AssertionError("hive top exited (%s) before %s; drew:\n%r"
                                         % (self.proc.poll(), what, self.out[-3000:]))
                self.out += chunk

    def drain(self):
        """Read what is left once top has exited (bounded)."""
        for _ in range(100):
            ready, _, _ = select.select([self.master], [], [], 0.2)
            if not ready:
                return
            try:
                chunk = os.read(self.master, 65536)
            except OSError:
                return
            if not chunk:
                return
            self.out += chunk

    def wait_exit(self):
        try:
            return self.proc.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
            raise AssertionError("hive top did not exit; drew:\n%r" % self.out[-3000:])

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        os.close(self.master)


class TopTest(unittest.TestCase):
    BOTS = [{"id": "BOT-001"}, {"id": "BOT-TALK", "adapter": TALKER},
            {"id": "BOT-ECHO", "adapter": ECHO}]

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="hive-e2e-top-")
        cls.hive = Hive(cls.tmp, cls.BOTS)
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
        if killed or code not in (0, None) or os.environ.get("HIVE_E2E_VERBOSE"):
            sys.stderr.write("---- hive up log ----\n%s\n%s\n"
                             % (cls.hive.log_text()[-8000:], worker_log_dump(cls.hive)))
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def tearDown(self):
        self.hive.note_children()

    def top(self, **kw):
        t = TopOnATerminal(self.hive, **kw)
        self.addCleanup(t.close)
        return t

    def assert_terminal_restored(self, t):
        self.assertIn(ENTER_ALT, t.out)
        self.assertIn(LEAVE_ALT, t.out[t.out.rindex(ENTER_ALT):])  # left the alternate screen
        self.assertIn(b"\x1b[?25h", t.out[t.out.rindex(ENTER_ALT):])  # cursor shown again
        after = termios.tcgetattr(t.master)
        self.assertEqual(after[3] & (termios.ICANON | termios.ECHO),
                         t.before[3] & (termios.ICANON | termios.ECHO))
        self.assertEqual(after, t.before)

    def test_shows_bots_and_running_output_then_quits_on_q(self):
        t = self.top()
        t.read_until(lambda o: ENTER_ALT in o and b"BOT-TALK" in o.split(ENTER_ALT)[-1]
                     and b"BOT-001" in o.split(ENTER_ALT)[-1], what="the bots")
        screen = t.out.split(ENTER_ALT)[-1]
        self.assertIn(b"running", screen)
        self.assertIn(str(self.hive.bot("BOT-001")["pid"]).encode(), screen)
        # termios as top set it: no echo, no line mode, while it runs
        self.assertFalse(termios.tcgetattr(t.master)[3] & (termios.ICANON | termios.ECHO))
        r = self.hive.post("/bots/BOT-TALK/api/task", {"command": "talk", "task_id": "T-TOP-1"})
        self.assertEqual(r.status, 202, r)
        try:
            t.read_until(lambda o: b"marker-42" in o, what="the task's output line")
            t.read_until(lambda o: b"T-TOP-1" in o, what="the running task's id")
            # A top started later counts the task's time from its start, not its own.
            time.sleep(2.2)
            snap = subprocess.run([HIVE_BIN, "top", "--file=" + self.hive.yaml],
                                  cwd=self.hive.work_dir, env=self.hive.env(),
                                  stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  timeout=TIMEOUT, text=True).stdout
            took = re.search(r"T-TOP-1 \((\d+)s\)", snap)
            self.assertTrue(took, snap)
            self.assertGreaterEqual(int(took.group(1)), 2, snap)
        finally:
            self.hive.post("/bots/BOT-TALK/api/interrupt")
        os.write(t.master, b"q")
        self.assertEqual(t.wait_exit(), 0)
        t.drain()
        self.assert_terminal_restored(t)

    def test_output_cannot_drive_the_terminal(self):
        """A task's output is shown with its control characters replaced: an escape
        in it (here: set the window title; clear the screen) never reaches the
        terminal. A line still being written is shown too."""
        t = self.top()
        t.read_until(lambda o: b"BOT-ECHO" in o.split(ENTER_ALT)[-1], what="the bots")
        evil = "evil\x1b]0;PWNED\x07title\x1b[2Jend"
        r = self.hive.post("/bots/BOT-ECHO/api/task", {"command": evil, "task_id": "T-EVIL"})
        self.assertEqual(r.status, 202, r)
        try:
            t.read_until(lambda o: b"evil ]0;PWNED title [2Jend" in o, what="the sanitised line")
        finally:
            self.hive.post("/bots/BOT-ECHO/api/interrupt")
        self.assertNotIn(b"\x1b]0;PWNED", t.out)
        self.assertNotIn(b"\x1b[2Jend", t.out)
        os.write(t.master, b"q")
        self.assertEqual(t.wait_exit(), 0)

    def test_sigterm_restores_the_terminal(self):
        t = self.top()
        t.read_until(lambda o: b"BOT-001" in o.split(ENTER_ALT)[-1], what="the bots")
        os.kill(t.proc.pid, signal.SIGTERM)
        self.assertEqual(t.wait_exit(), 0)
        t.drain()
        self.assert_terminal_restored(t)

    def test_follows_a_bot_state_change(self):
        t = self.top()
        t.read_until(lambda o: b"BOT-001" in o.split(ENTER_ALT)[-1], what="the bots")
        r = self.hive.post("/api/bots/BOT-001/stop")
        self.assertEqual(r.status, 202, r)
        try:
            t.read_until(lambda o: b"stopped" in o, what="BOT-001 stopped")
        finally:
            self.hive.post("/api/bots/BOT-001/start")
            wait_for(lambda: self.hive.bot("BOT-001")["state"] == "running", timeout=TIMEOUT,
                     what="BOT-001 running again")
        os.write(t.master, b"q")
        self.assertEqual(t.wait_exit(), 0)

    def test_sigwinch_redraws_at_the_new_width(self):
        t = self.top(cols=120)
        t.read_until(lambda o: b"bots running" in o, what="the header")
        mark = len(t.out)
        t.set_size(24, 40)
        os.kill(t.proc.pid, signal.SIGWINCH)
        # the next frames are cut at 24 columns: the header's end is gone
        t.read_until(lambda o: o.count(b"\x1b[H", mark) >= 3, what="frames after resizing")
        frame = t.out[mark:].split(b"\x1b[H")[-2]
        self.assertIn(b"hive e2e-front on", frame)
        self.assertNotIn(b"bots running", frame)
        os.write(t.master, b"q")
        self.assertEqual(t.wait_exit(), 0)

    def test_colours_and_no_color(self):
        t = self.top()
        t.read_until(lambda o: b"\x1b[32mrunning" in o, what="running in green")
        os.write(t.master, b"q")
        self.assertEqual(t.wait_exit(), 0)
        env = dict(self.hive.env(), NO_COLOR="1")
        t = self.top(env=env)
        t.read_until(lambda o: o.count(b"BOT-TALK") >= 2, what="two frames")
        self.assertNotIn(b"\x1b[32m", t.out)
        self.assertNotIn(b"\x1b[1m", t.out)
        os.write(t.master, b"q")
        self.assertEqual(t.wait_exit(), 0)

    def test_without_a_terminal_prints_one_snapshot(self):
        p = subprocess.run([HIVE_BIN, "top", "--file=" + self.hive.yaml], cwd=self.hive.work_dir,
                           env=self.hive.env(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=TIMEOUT)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertNotIn(b"\x1b", p.stdout)
        lines = p.stdout.decode().splitlines()
        self.assertTrue(lines[0].startswith("hive e2e-front on"), lines)
        self.assertIn("STATE", lines[2])
        self.assertTrue(any(line.startswith("BOT-001") and "running" in line for line in lines),
                        lines)
        self.assertNotIn("reconnecting", p.stdout.decode())  # a snapshot follows no stream

    def test_no_hive_says_so(self):
        tmp = tempfile.mkdtemp(prefix="hive-e2e-top-none-")
        self.addCleanup(shutil.rmtree, tmp, True)
        idle = Hive(tmp, [{"id": "BOT-001"}])  # written, never started
        p = subprocess.run([HIVE_BIN, "top", "--file=" + idle.yaml], cwd=tmp, env=idle.env(),
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=TIMEOUT, text=True)
        self.assertEqual(p.returncode, 1, p)
        self.assertIn("127.0.0.1:%d" % idle.port, p.stderr)


if __name__ == "__main__":
    unittest.main()
