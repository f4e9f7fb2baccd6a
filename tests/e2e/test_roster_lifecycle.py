"""End to end: the roster's lifecycle keys (issue 12) and a hive that starts
its bots while it serves (issue 14), against a real `hive up`.

- depends_on: a bot starts only once its dependencies are running; the order
  is read from the supervisor's log (each "stopped -> starting" and
  "starting -> running" line) and from the workers' start times in /proc.
- autostart: false: declared, left stopped by `hive up`, started by
  POST /api/bots/<id>/start (what `hive start BOT` sends); `hive up`'s own
  READY=1 (read here from a NOTIFY_SOCKET made by the test) waits for the
  autostart bots only.
- depends_on cycles and unknown ids: `hive check` and `hive up` refuse them
  with file:line:column and exit 78.
- stop_signal: the worker logs the signal it got ("Interrupt received").
- start_timeout and watchdog from the roster reach the worker (a worker that
  never says READY=1 is killed at the roster's start_timeout; WATCHDOG_USEC
  in its environment).
- a worker whose file queue has no inotify watch (an LD_PRELOAD shim makes
  inotify_init1 fail as the per-user limit would) is shown in /status and
  warned about in the log.
- 300 bots: the front door answers /health and /status while bots are still
  waiting for their turn to be spawned.

Helpers (Hive, wait_for, ...) come from test_supervisor_lifecycle.py. Every
wait is bounded; every process started here is killed by pid in cleanup.
Run with /usr/bin/python3.
"""

import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import unittest

from test_supervisor_lifecycle import (HIVE_BIN, WORKER_BIN, UP_TIMEOUT, Hive, http_get,
                                       proc_env, proc_stat, read_text, wait_for)


def post(port, path):
    """POST PATH on the front door; the status code."""
    p = subprocess.run(["curl", "-sS", "--noproxy", "*", "--max-time", "5", "-o", "/dev/null",
                        "-w", "%{http_code}", "-X", "POST", "-H", "Content-Type: application/json",
                        "-d", "{}", "http://127.0.0.1:%d%s" % (port, path)],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=10)
    return int(p.stdout or 0)


def log_index(text, pattern):
    """Offset of the first match of PATTERN in TEXT; AssertionError when none."""
    m = re.search(pattern, text)
    if not m:
        raise AssertionError("no %r in the supervisor log:\n%s" % (pattern, text[-3000:]))
    return m.start()


class RosterLifecycleTest(unittest.TestCase):

    def setUp(self):
        for b in (HIVE_BIN, WORKER_BIN):
            if not os.path.exists(b):
                self.fail("not built: %s" % b)
        self.dir = tempfile.mkdtemp(prefix="hive-roster-e2e-")
        self.addCleanup(shutil.rmtree, self.dir, True)

    def notify_socket(self):
        """A datagram socket standing in for systemd's NOTIFY_SOCKET."""
        path = os.path.join(self.dir, "notify.sock")
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        s.bind(path)
        s.settimeout(0.1)
        self.addCleanup(s.close)
        return s, path

    def test_depends_on_order_autostart_and_ready(self):
        bots = [{"id": "APP", "depends_on": ["API"]},
                {"id": "API", "depends_on": ["DB"]},
                {"id": "DB"},
                {"id": "LATER", "autostart": False, "depends_on": ["DB"]}]
        sock, path = self.notify_socket()
        hive = Hive(self, self.dir, bots, env={"NOTIFY_SOCKET": path})
        hive.start()
        ready_at = None
        deadline = time.monotonic() + UP_TIMEOUT
        while ready_at is None and time.monotonic() < deadline:
            hive.alive()
            try:
                if b"READY=1" in sock.recv(4096).split(b"\n"):
                    ready_at = {i: (hive.bot(i) or {}).get("status") for i in hive.ports}
            except socket.timeout:
                pass
        self.assertIsNotNone(ready_at, "hive up never said READY=1:\n" + hive.log())
        running = hive.wait_running(["APP", "API", "DB"])
        # READY=1 came once the autostart bots ran, without waiting for LATER.
        # (The registry is rewritten at the end of the loop pass, so it may
        # lag the datagram by a pass: running or about to be.)
        self.assertEqual(hive.bot("LATER")["status"], "stopped")
        self.assertIsNone(hive.bot("LATER")["pid"])
        log = hive.log()
        self.assertLess(log_index(log, r"every autostart bot is running"), len(log))
        # Each bot was spawned only after its dependency was running.
        for first, then in (("DB", "API"), ("API", "APP")):
            self.assertLess(log_index(log, first + r": starting -> running"),
                            log_index(log, then + r": stopped -> starting"),
                            "%s spawned before %s ran" % (then, first))
        starts = {i: int(proc_stat(running[i]["pid"])[1]) for i in ("DB", "API", "APP")}
        self.assertLessEqual(starts["DB"], starts["API"])
        self.assertLessEqual(starts["API"], starts["APP"])
        # Still stopped a while later: autostart: false is never started by up.
        time.sleep(0.5)
        self.assertEqual(hive.bot("LATER")["status"], "stopped")
        # Started on request, after its dependency (already running).
        self.assertEqual(post(hive.listen_port, "/api/bots/LATER/start"), 202)
        hive.wait_state("LATER", "running")
        # A stop of the dependency does not stop LATER; a restart of LATER waits for nothing.
        hive.signal(2)
        self.assertEqual(hive.wait_exit(), 0)

    def test_start_of_a_bot_starts_its_dependencies(self):
        bots = [{"id": "TOP", "autostart": False, "depends_on": ["MID"]},
                {"id": "MID", "autostart": False, "depends_on": ["LOW"]},
                {"id": "LOW", "autostart": False}]
        hive = Hive(self, self.dir, bots)
        hive.start()
        wait_for(lambda: hive.alive() and "autostart: false" in hive.log(), UP_TIMEOUT,
                 "the note on autostart: false")
        self.assertEqual(post(hive.listen_port, "/api/bots/TOP/start"), 202)
        hive.wait_running(["TOP", "MID", "LOW"])
        log = hive.log()
        self.assertLess(log_index(log, r"LOW: starting -> running"),
                        log_index(log, r"MID: stopped -> starting"))
        self.assertLess(log_index(log, r"MID: starting -> running"),
                        log_index(log, r"TOP: stopped -> starting"))

    def test_cycles_and_unknown_dependencies_are_refused(self):
        roster = os.path.join(self.dir, "hive.yaml")
        with open(roster, "w") as f:
            f.write("hive: {listen: 127.0.0.1:1}\n"
                    "bots:\n"
                    "  - {id: A, port: 2, depends_on: [B]}\n"
                    "  - {id: B, port: 3, depends_on: [A]}\n"
                    "  - {id: C, port: 4, depends_on: [NOPE], stop_signal: STOP}\n")
        for cmd in (["check"], ["up"]):
            p = subprocess.run([HIVE_BIN] + cmd + ["-f", roster], cwd=self.dir,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=15)
            out = p.stdout.decode() + p.stderr.decode()
            self.assertEqual(p.returncode, 78, out)
            self.assertIn("hive.yaml:4:35: dependency cycle: A -> B -> A", out)
            self.assertIn("hive.yaml:5:35: bot 'C' depends on unknown bot 'NOPE'", out)
            self.assertIn("hive.yaml:5:55: unknown stop_signal 'STOP'", out)

    def test_stop_signal_reaches_the_worker(self):
        bots = [{"id": "SOFT", "stop_signal": "INT"}, {"id": "PLAIN"}]
        hive = Hive(self, self.dir, bots)
        hive.start()
        hive.wait_running(["SOFT", "PLAIN"])
        for bot in ("SOFT", "PLAIN"):
            self.assertEqual(post(hive.listen_port, "/api/bots/%s/stop" % bot), 202)
            hive.wait_state(bot, "stopped")
        logs = {b: read_text(os.path.join(self.dir, ".deia", "hive", "logs", b + ".log"))
                for b in ("SOFT", "PLAIN")}
        self.assertIn("Interrupt received; stopping", logs["SOFT"])
        self.assertNotIn("Terminated received", logs["SOFT"])
        self.assertIn("Terminated received; stopping", logs["PLAIN"])

    def test_start_timeout_and_watchdog_from_the_roster(self):
        wrapper = os.path.join(self.dir, "mute.sh")
        with open(wrapper, "w") as f:
            f.write("#!/bin/sh\ncase \"$1\" in MUTE*) unset NOTIFY_SOCKET ;; esac\n"
                    "exec %s \"$@\"\n" % os.path.abspath(WORKER_BIN))
        os.chmod(wrapper, 0o755)
        bots = [{"id": "MUTE", "start_timeout": 1, "restart": {"policy": "never"}},
                {"id": "DOG", "watchdog": 7}]
        hive = Hive(self, self.dir, bots, env={"HIVE_WORKER_BIN": wrapper})
        hive.start()
        dog = hive.wait_state("DOG", "running")
        self.assertEqual(proc_env(dog["pid"]).get("WATCHDOG_USEC"), "7000000")
        mute = hive.wait_state("MUTE", "stopped", pred=lambda b: b["reason"])
        self.assertIn("not ready within 1 s", mute["reason"])

    def test_a_worker_without_an_inotify_watch_is_shown(self):
        # A worker that gets no inotify instance (what the per-user limit does
        # to bots past ~127) says so with its READY=1; /status shows it.
        shim_c = os.path.join(self.dir, "noinotify.c")
        shim = os.path.join(self.dir, "noinotify.so")
        with open(shim_c, "w") as f:
            f.write("#include <errno.h>\nint inotify_init1(int flags)\n"
                    "{ (void)flags; errno = EMFILE; return -1; }\n")
        cc = shutil.which("cc") or shutil.which("gcc")
        if not cc:
            self.skipTest("no C compiler for the inotify shim")
        subprocess.run([cc, "-shared", "-fPIC", "-o", shim, shim_c], check=True, timeout=60)
        if "asan" in os.path.basename(os.path.abspath(os.path.join(WORKER_BIN, "../.."))):
            self.skipTest("LD_PRELOAD before the ASan runtime is refused")
        wrapper = os.path.join(self.dir, "nowatch.sh")
        with open(wrapper, "w") as f:
            f.write("#!/bin/sh\ncase \"$1\" in NOWATCH*) export LD_PRELOAD=%s ;; esac\n"
                    "exec %s \"$@\"\n" % (shim, os.path.abspath(WORKER_BIN)))
        os.chmod(wrapper, 0o755)
        hive = Hive(self, self.dir, [{"id": "NOWATCH"}, {"id": "FINE"}],
                    env={"HIVE_WORKER_BIN": wrapper})
        hive.start()
        hive.wait_running(["NOWATCH", "FINE"])
        bots = {b["id"]: b for b in hive.front_status()["bots"]}
        self.assertIn("no inotify watch (Too many open files)", bots["NOWATCH"]["reason"] or "")
        self.assertFalse(bots["FINE"]["reason"])
        self.assertIn("NOWATCH: worker pid %d has no inotify watch" % bots["NOWATCH"]["pid"],
                      hive.log())

    def test_front_door_serves_while_300_bots_start(self):
        bots = [{"id": "B%03d" % i} for i in range(300)]
        early = None
        for attempt in range(3):
            # 301 kernel-chosen ports: another program may take one meanwhile;
            # then `hive up` refuses at once (exit 78) and we try new ones.
            hive = Hive(self, self.dir, bots, defaults={"watchdog": 0})
            hive.start()
            early = self.early_status(hive)
            if early is not None or "is already in use" not in hive.log():
                break
        self.assertIsNotNone(early, "the front door never answered")
        # Answered while some bots had not even been spawned yet: the hive
        # starts them a slice per loop pass and serves in between.
        unspawned = [b["id"] for b in early["bots"] if b["state"] == "stopped" and not b["pid"]]
        self.assertTrue(unspawned, "every bot was spawned before the front door answered: %r"
                        % [(b["id"], b["state"]) for b in early["bots"][:5]])
        wait_for(lambda: hive.alive() and http_get(
            "http://127.0.0.1:%d/status" % hive.listen_port, timeout=5)[1]["hive"]["bots_running"]
            == 300, 120, "all 300 running", interval=0.5)
        self.assertNotIn("not ready within", hive.log())

    def early_status(self, hive):
        """The front door's first /status, or None when the hive exited 78 first."""
        early = None
        deadline = time.monotonic() + 60
        while early is None and time.monotonic() < deadline:
            if hive.proc.poll() == 78:
                hive.proc.wait()
                return None
            hive.alive()
            code, body = http_get("http://127.0.0.1:%d/health" % hive.listen_port, timeout=2)
            if code != 200:
                time.sleep(0.01)
                continue
            code, body = http_get("http://127.0.0.1:%d/status" % hive.listen_port, timeout=2)
            self.assertEqual(code, 200)
            early = body
        return early


if __name__ == "__main__":
    unittest.main(verbosity=2)
