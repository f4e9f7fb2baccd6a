"""`hive export systemd` (SPEC §11): the roster as systemd units, tested the
way systemd would use them, without needing systemd as PID 1.

- Every generated unit passes `systemd-analyze verify` (system and --user
  units; a private unit path, --man=no; skipped with the printed reason where
  verify cannot run here).
- Each bot's ExecStart=, run under `systemd-socket-activate` with the socket
  unit's ListenStream= and FileDescriptorName=, the service's Environment=,
  WorkingDirectory= and WatchdogSec= (as WATCHDOG_USEC), and NOTIFY_SOCKET
  pointing at a datagram socket of the test: the worker answers /health on the
  handed-over socket, says READY=1 and WATCHDOG=1, and a task sent to it lands
  as a response file whose output shows the unit's environment reached the
  adapter.
- The front door's roster lists every bot as a remote bot on loopback (§11);
  once `url:` bots are in the build, `hive check` accepts it and the front
  door's ExecStart= fronts the socket-activated workers (until then that part
  is skipped with the reason).
- Output is deterministic; existing files are overwritten only with --force.
"""

import glob
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hive_e2e import BUILD_DIR, curl, wait_for  # noqa: E402

HIVE_BIN = os.path.join(BUILD_DIR, "supervisor", "hive")
WORKER_BIN = os.path.join(BUILD_DIR, "worker", "hive-worker")
ANALYZE = shutil.which("systemd-analyze")
ACTIVATE = shutil.which("systemd-socket-activate")
DEADLINE = 20.0


def free_port():
    """A loopback port the kernel had free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def unit_values(text, key):
    """Every value of KEY= in a unit file's text, in order."""
    return [m.group(1) for m in re.finditer(r"^%s=(.*)$" % re.escape(key), text, re.M)]


def unit_words(value):
    """A command line of ExecStart= (or one Environment= assignment) as systemd
    reads it: shell-like quoting with C escapes, %% and $$ made single."""
    words = shlex.split(value.replace("\\x", "\\\\x"))
    out = []
    for w in words:
        w = re.sub(r"\\x([0-9a-f]{2})", lambda m: chr(int(m.group(1), 16)), w)
        out.append(w.replace("%%", "%").replace("$$", "$"))
    return out


def timespan_usec(span):
    """A systemd time span as the exporter writes it ("3s", "1500ms")."""
    m = re.fullmatch(r"(\d+)(ms|s)", span)
    return int(m.group(1)) * (1000 if m.group(2) == "ms" else 1000000)


class ExportTest(unittest.TestCase):
    def setUp(self):
        for b in (HIVE_BIN, WORKER_BIN):
            if not os.path.exists(b):
                self.fail("not built: %s" % b)
        self.dir = tempfile.mkdtemp(prefix="hive-export-e2e-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.procs = []
        self.addCleanup(self.stop_procs)
        self.ports = {"BOT-001": free_port(), "BOT-002": free_port()}
        self.listen = free_port()
        self.roster = os.path.join(self.dir, "hive.yaml")
        with open(self.roster, "w") as f:
            f.write("hive:\n  name: exp\n  listen: 127.0.0.1:%d\n"
                    "defaults:\n  watchdog: 1\n  restart: {policy: on-failure, max_restarts: 3}\n"
                    "bots:\n"
                    "  - id: BOT-001\n    port: %d\n"
                    "  - id: BOT-002\n    port: %d\n    depends_on: [BOT-001]\n"
                    "    stop_signal: INT\n"
                    "    env: {EXPORT_X: \"a b $c 50%%\"}\n"
                    "    adapter:\n      type: cli\n"
                    "      command: [sh, -c, 'echo \"task=$HIVE_TASK_ID x=$EXPORT_X\"']\n"
                    % (self.listen, self.ports["BOT-001"], self.ports["BOT-002"]))
        self.out = os.path.join(self.dir, "units")

    # ------------------------------------------------------------ helpers

    def stop_procs(self):
        """SIGKILL the process group of each process we started that still
        runs (each was started in its own session, its group id its pid)."""
        for p in self.procs:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except OSError:
                    pass
                p.wait(timeout=DEADLINE)

    def export(self, *args, expect=0):
        p = subprocess.run([HIVE_BIN, "export", "systemd", "-f", self.roster, "-o", self.out]
                           + list(args), capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, expect, "hive export: rc %d\n%s%s"
                         % (p.returncode, p.stdout, p.stderr))
        return p

    def units(self):
        """{file name: text} of the output folder."""
        out = {}
        for path in sorted(glob.glob(os.path.join(self.out, "*"))):
            with open(path) as f:
                out[os.path.basename(path)] = f.read()
        return out

    def notify_socket(self):
        path = os.path.join(self.dir, "notify-%d.sock" % len(self.procs))
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        s.bind(path)
        s.settimeout(0.2)
        self.addCleanup(s.close)
        return s, path

    def verify_or_skip(self, user):
        """Skip (saying why) when systemd-analyze verify cannot run here: it
        is missing, or a trivially good unit does not pass."""
        if not ANALYZE:
            self.skipTest("systemd-analyze not installed (Debian package systemd)")
        probe = os.path.join(self.dir, "probe")
        os.makedirs(probe, exist_ok=True)
        with open(os.path.join(probe, "hive-probe.service"), "w") as f:
            f.write("[Unit]\nDescription=probe\n[Service]\nExecStart=/bin/true\n")
        p = self.analyze(probe, [os.path.join(probe, "hive-probe.service")], user)
        if p.returncode != 0:
            self.skipTest("systemd-analyze verify cannot run here: %s" % (p.stderr.strip()
                                                                          or p.returncode))

    def analyze(self, unit_dir, files, user):
        runtime = os.path.join(self.dir, "xdg-runtime")
        os.makedirs(runtime, mode=0o700, exist_ok=True)
        env = dict(os.environ, SYSTEMD_UNIT_PATH=unit_dir + ":", XDG_RUNTIME_DIR=runtime,
                   SYSTEMD_LOG_COLOR="0")
        cmd = [ANALYZE] + (["--user"] if user else []) + ["verify", "--man=no"] + files
        return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)

    def activate(self, bot, units):
        """Run BOT's ExecStart= as systemd would with its socket unit:
        (process, notify socket, work dir)."""
        prefix = "hive-exp-" + bot.replace("-", "\\x2d")
        service, sock = units[prefix + ".service"], units[prefix + ".socket"]
        argv = unit_words(unit_values(service, "ExecStart")[0])
        listen = unit_values(sock, "ListenStream")[0]
        fdname = unit_values(sock, "FileDescriptorName")[0]
        workdir = unit_values(service, "WorkingDirectory")[0]
        watchdog = timespan_usec(unit_values(service, "WatchdogSec")[0])
        nsock, npath = self.notify_socket()
        cmd = [ACTIVATE, "-l", listen, "--fdname=" + fdname, "-E", "NOTIFY_SOCKET=" + npath,
               "-E", "WATCHDOG_USEC=%d" % watchdog]
        for assignment in unit_values(service, "Environment"):
            cmd += ["-E", unit_words(assignment)[0]]
        log = open(os.path.join(self.dir, bot + ".log"), "w")
        self.addCleanup(log.close)
        p = subprocess.Popen(cmd + argv, cwd=workdir, stdout=log, stderr=subprocess.STDOUT,
                             start_new_session=True)
        self.procs.append(p)
        # Bound once it says so; a connection before would be refused.
        wait_for(lambda: "Listening on " in self.log(bot) or p.poll() is not None,
                 timeout=DEADLINE, what=bot + " socket bound")
        self.assertIsNone(p.poll(), self.log(bot))
        return p, nsock, workdir

    def read_notify(self, nsock, want, timeout=DEADLINE):
        """Datagrams until every state in WANT was seen; the set seen."""
        seen = set()
        deadline = time.monotonic() + timeout
        while not want <= seen and time.monotonic() < deadline:
            try:
                seen |= set(nsock.recv(4096).split(b"\n"))
            except socket.timeout:
                pass
        return seen

    def log(self, bot):
        with open(os.path.join(self.dir, bot + ".log"), errors="replace") as f:
            return f.read()

    # ------------------------------------------------------------ tests

    def test_files_deterministic_and_not_overwritten(self):
        p = self.export()
        names = ["hive-exp-BOT\\x2d001.service", "hive-exp-BOT\\x2d001.socket",
                 "hive-exp-BOT\\x2d002.service", "hive-exp-BOT\\x2d002.socket",
                 "hive-exp.service", "hive-exp.target", "hive-exp.yaml"]
        self.assertEqual(p.stdout.split(), [os.path.join(self.out, n) for n in names])
        first = self.units()
        self.assertEqual(sorted(first), names)
        # Without --force nothing is touched, and every file in the way is named.
        with open(os.path.join(self.out, names[0]), "a") as f:
            f.write("# a local edit\n")
        p = self.export(expect=1)
        for n in names:
            self.assertIn(os.path.join(self.out, n), p.stderr)
        self.assertIn("# a local edit", self.units()[names[0]])
        # --force writes the same bytes as the first time.
        self.export("--force")
        self.assertEqual(self.units(), first)
        service = first[names[2]]
        for line in ("Type=notify", "NotifyAccess=main", "WatchdogSec=1s", "Restart=on-failure",
                     "StartLimitBurst=4", "StartLimitIntervalSec=60s", "KillMode=control-group",
                     "KillSignal=SIGINT", "TimeoutStartSec=10s", "TimeoutStopSec=10s",
                     "Requires=hive-exp-BOT\\x2d002.socket", "Wants=hive-exp-BOT\\x2d001.service",
                     "WorkingDirectory=" + os.path.realpath(self.dir)):
            self.assertIn(line + "\n", service)
        self.assertIn("ListenStream=127.0.0.1:%d\n" % self.ports["BOT-002"], first[names[3]])

    def test_systemd_analyze_verify(self):
        for user in (False, True):
            with self.subTest(user=user):
                self.verify_or_skip(user)
                shutil.rmtree(self.out, True)
                self.export(*(["--user"] if user else []))
                files = sorted(glob.glob(os.path.join(self.out, "*.service"))
                               + glob.glob(os.path.join(self.out, "*.socket"))
                               + glob.glob(os.path.join(self.out, "*.target")))
                self.assertEqual(len(files), 6)
                p = self.analyze(self.out, files, user)
                self.assertEqual((p.returncode, p.stderr.strip()), (0, ""),
                                 "systemd-analyze verify:\n" + p.stdout + p.stderr)
                target = self.units()["hive-exp.target"]
                self.assertIn("WantedBy=%s\n" % ("default.target" if user
                                                 else "multi-user.target"), target)

    def test_exec_start_under_socket_activation(self):
        if not ACTIVATE:
            self.skipTest("systemd-socket-activate not installed (Debian package systemd)")
        self.export()
        units = self.units()
        for bot, port in sorted(self.ports.items()):
            with self.subTest(bot=bot):
                proc, nsock, workdir = self.activate(bot, units)
                # The first connection waits in the socket's backlog while
                # systemd-socket-activate execs the worker, as under systemd.
                r = curl("http://127.0.0.1:%d/health" % port)
                self.assertEqual(r.status, 200, self.log(bot))
                self.assertEqual(r.json()["bot_id"], bot)
                seen = self.read_notify(nsock, {b"READY=1", b"WATCHDOG=1"})
                self.assertLessEqual({b"READY=1", b"WATCHDOG=1"}, seen, self.log(bot))
                # Served on the handed-over socket: the worker bound nothing.
                self.assertIn("Listening on 127.0.0.1:%d as 3" % port, self.log(bot))
                task = "EXP-" + bot
                r = curl("http://127.0.0.1:%d/api/task" % port, method="POST",
                         body={"command": "hello from systemd", "task_id": task})
                self.assertEqual(r.status, 202, r.body)
                responses = os.path.join(workdir, ".deia", "hive", "responses")

                def landed():
                    return [n for n in os.listdir(responses) if task in n] \
                        if os.path.isdir(responses) else []
                names = wait_for(landed, timeout=DEADLINE, what="response of " + task)
                with open(os.path.join(responses, names[0])) as f:
                    text = f.read()
                self.assertIn("✓ SUCCESS", text)
                if bot == "BOT-002":
                    # Environment= and ExecStart= quoting reached the adapter intact.
                    self.assertIn("task=%s x=a b $c 50%%" % task, text)
                proc.send_signal(signal.SIGINT if bot == "BOT-002" else signal.SIGTERM)
                self.assertEqual(proc.wait(timeout=DEADLINE), 0, self.log(bot))

    def test_front_door_roster(self):
        self.export()
        import yaml
        with open(os.path.join(self.out, "hive-exp.yaml")) as f:
            front = yaml.safe_load(f)
        self.assertEqual(front["hive"]["name"], "exp")
        self.assertEqual(front["hive"]["listen"], "127.0.0.1:%d" % self.listen)
        self.assertEqual(front["hive"]["work_dir"], os.path.realpath(self.dir))
        self.assertEqual(front["bots"], [{"id": b, "url": "http://127.0.0.1:%d" % p}
                                         for b, p in sorted(self.ports.items())])
        service = self.units()["hive-exp.service"]
        self.assertEqual(unit_words(unit_values(service, "ExecStart")[0]),
                         [os.path.realpath(HIVE_BIN), "up", "-f",
                          os.path.join(os.path.realpath(self.out), "hive-exp.yaml")])
        self.assertIn("Type=notify\n", service)
        check = subprocess.run([HIVE_BIN, "check", "-f", os.path.join(self.out, "hive-exp.yaml")],
                               capture_output=True, text=True, timeout=30)
        if check.returncode != 0 and re.search(r"unknown key 'url'", check.stderr):
            self.skipTest("remote bots (url:, SPEC §11) are not in this build yet: "
                          + check.stderr.strip().splitlines()[0])
        self.assertEqual(check.returncode, 0, check.stdout + check.stderr)
        self.front_door_fronts_units(service)

    def front_door_fronts_units(self, service):
        """The front door's ExecStart= (hive up, READY=1 to its NOTIFY_SOCKET)
        fronts the socket-activated workers: a task through it lands."""
        if not ACTIVATE:
            self.skipTest("systemd-socket-activate not installed (Debian package systemd)")
        units = self.units()
        workers = [self.activate(bot, units) for bot in sorted(self.ports)]
        for bot, port in self.ports.items():
            self.assertEqual(curl("http://127.0.0.1:%d/health" % port).status, 200)
        nsock, npath = self.notify_socket()
        argv = unit_words(unit_values(service, "ExecStart")[0])
        env = dict(os.environ, NOTIFY_SOCKET=npath)
        log = open(os.path.join(self.dir, "front.log"), "w")
        self.addCleanup(log.close)
        front = subprocess.Popen(argv, cwd=workers[0][2], env=env, stdout=log,
                                 stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append(front)
        self.assertIn(b"READY=1", self.read_notify(nsock, {b"READY=1"}), self.log("front"))
        base = "http://127.0.0.1:%d" % self.listen
        r = curl(base + "/bots/BOT-001/api/task", method="POST",
                 body={"command": "via the front door", "task_id": "EXP-FRONT"})
        self.assertEqual(r.status, 202, r.body)
        wait_for(lambda: curl(base + "/bots/BOT-001/api/task/EXP-FRONT").json().get("state")
                 == "done", timeout=DEADLINE, what="EXP-FRONT done")
        front.send_signal(signal.SIGTERM)
        self.assertEqual(front.wait(timeout=DEADLINE), 0, self.log("front"))
        for p, _, _ in workers:
            p.send_signal(signal.SIGTERM)
            p.wait(timeout=DEADLINE)

    def test_hive_up_ready_under_systemd(self):
        """`hive up` as a Type=notify service: READY=1 once every autostart
        bot runs or has given up, with a STATUS= saying how many did not
        start — never a start that hangs until systemd kills the whole hive
        (TimeoutStartSec=) because one bot is fatal."""
        wrapper = os.path.join(self.dir, "worker.sh")
        with open(wrapper, "w") as f:
            f.write("#!/bin/sh\ncase \"$1\" in BAD) echo refused; exit 78 ;; esac\n"
                    "exec %s \"$@\"\n" % shlex.quote(WORKER_BIN))
        os.chmod(wrapper, 0o755)
        with open(self.roster, "w") as f:
            f.write("hive: {name: up, listen: 127.0.0.1:%d}\nbots:\n"
                    "  - {id: GOOD, port: %d}\n  - {id: BAD, port: %d}\n"
                    "  - {id: AFTER, port: %d, depends_on: [BAD]}\n"
                    "  - {id: LATER, port: %d, autostart: false}\n"
                    % (self.listen, free_port(), free_port(), free_port(), free_port()))
        nsock, npath = self.notify_socket()
        log = open(os.path.join(self.dir, "up.log"), "w")
        self.addCleanup(log.close)
        up = subprocess.Popen([HIVE_BIN, "up", "-f", self.roster], cwd=self.dir, stdout=log,
                              stderr=subprocess.STDOUT, start_new_session=True,
                              env=dict(os.environ, NOTIFY_SOCKET=npath, HIVE_WORKER_BIN=wrapper))
        self.procs.append(up)
        states = set()
        deadline = time.monotonic() + DEADLINE
        while not any(s.startswith(b"READY=1") for s in states) and time.monotonic() < deadline:
            try:
                states.add(nsock.recv(4096))
            except socket.timeout:
                self.assertIsNone(up.poll(), self.log("up"))
        ready = [s for s in states if s.startswith(b"READY=1")]
        self.assertTrue(ready, "hive up never said READY=1:\n" + self.log("up"))
        self.assertIn(b"STATUS=2 autostart bot(s) did not start", ready[0].split(b"\n"))
        status = curl("http://127.0.0.1:%d/status" % self.listen).json()
        by_id = {b["id"]: b["state"] for b in status["bots"]}
        self.assertEqual(by_id, {"GOOD": "running", "BAD": "fatal", "AFTER": "stopped",
                                 "LATER": "stopped"})
        up.send_signal(signal.SIGTERM)
        self.assertEqual(up.wait(timeout=DEADLINE), 0, self.log("up"))

    def test_ipv6_bind(self):
        with open(self.roster, "a") as f:
            f.write("  - id: BOT-003\n    port: %d\n    bind: \"::1\"\n" % free_port())
        self.export()
        self.assertRegex(self.units()["hive-exp.yaml"], r'url: "http://\[::1\]:\d+"')
        self.assertRegex(self.units()["hive-exp-BOT\\x2d003.socket"],
                         r"ListenStream=\[::1\]:\d+\n")

    def test_usage(self):
        p = subprocess.run([HIVE_BIN, "export", "launchd", "-f", self.roster],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 2)
        self.assertIn("unknown format", p.stderr)
        p = subprocess.run([HIVE_BIN, "export", "--help"], capture_output=True, text=True,
                           timeout=30)
        self.assertEqual(p.returncode, 0)
        self.assertIn("hive export systemd", p.stdout)


if __name__ == "__main__":
    unittest.main()
