"""End to end: `hive up` supervising real workers (SPEC.md §1, §2, §6).

Each test writes a hive.yaml with kernel-chosen free loopback ports into a fresh
temporary work dir, starts `$HIVE_BUILD_DIR/supervisor/hive up` there, and
watches it the way a user or a DEIA tool does: `.deia/hive/registry.json`, each
worker's own `GET /status`, the captured logs under `.deia/hive/logs/`, and `GET /status` on the hive's
`listen` port (the front door).

Misbehaving workers are played by a small shell wrapper set as HIVE_WORKER_BIN:
it crashes, exits 78, never says READY=1, never sends WATCHDOG=1, ignores
SIGTERM or floods its output, depending on the bot id, and runs the real hive-worker otherwise.

Every wait is bounded by a deadline; every process started here is killed by
pid (and start time) in tearDown. Run with /usr/bin/python3.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import textwrap
import threading
import time
import unittest

BUILD_DIR = os.environ.get(
    "HIVE_BUILD_DIR",
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "build"))
HIVE_BIN = os.path.join(BUILD_DIR, "supervisor", "hive")
WORKER_BIN = os.path.join(BUILD_DIR, "worker", "hive-worker")
CURL = shutil.which("curl") or "/usr/bin/curl"

UP_TIMEOUT = 20.0    # every bot running (ASan builds are slower)
STOP_TIMEOUT = 20.0  # the supervisor gone after SIGINT/SIGTERM
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")

# The misbehaving workers, chosen by bot id ($1); everything else is real.
WRAPPER = textwrap.dedent("""\
    #!/bin/sh
    case "$1" in
      CRASH*) echo "crash bot: exiting 1" >&2; exit 1 ;;
      CONF*) echo "conf bot: exiting 78" >&2; exit 78 ;;
      MUTE*) unset NOTIFY_SOCKET ;;
      HANG*) unset WATCHDOG_USEC ;;
      STUBBORN*) exec /usr/bin/python3 -c 'import os, signal, socket, time
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    name = os.environ["NOTIFY_SOCKET"]
    socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).sendto(b"READY=1", "\\0" + name[1:])
    time.sleep(600)' ;;
      FLOOD*)
        head -c 40000 /dev/zero | tr '\\0' 'y'; echo
        head -c 11534336 /dev/zero | tr '\\0' 'x' | fold -w 1023; echo ;;
    esac
    exec "%s" "$@"
    """)


# ---------------------------------------------------------------- small utilities

def wait_for(predicate, timeout, what, interval=0.05):
    """Poll PREDICATE until truthy; AssertionError at the deadline."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError("timed out after %.1f s waiting for %s (last: %r)"
                         % (timeout, what, last))


def read_text(path):
    """The file at PATH as text, or "" when it is not there."""
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def free_ports(n):
    """N distinct ports that were free a moment ago."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def proc_stat(pid):
    """(pgid, starttime) of PID, or None when it is gone (zombies count as gone)."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            stat = f.read().decode("latin-1")
    except OSError:
        return None
    rest = stat[stat.rfind(")") + 2:].split()
    if rest[0] == "Z":
        return None
    return int(rest[2]), rest[19]


def processes_in_groups(pgids):
    """Pids of live processes whose process group is one of PGIDS."""
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = proc_stat(int(name))
            if st and st[0] in pgids:
                found.append(int(name))
    return found


def http_get(url, timeout=5.0):
    """(status, parsed JSON or None) of GET URL with curl; status 0 when unreachable."""
    p = subprocess.run([CURL, "-sS", "--noproxy", "*", "--max-time", str(timeout),
                        "-w", "\n%{http_code}", url],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout + 5)
    body, _, code = p.stdout.decode("utf-8", "replace").rpartition("\n")
    try:
        return int(code or 0), json.loads(body) if body else None
    except ValueError:
        return int(code or 0), None


def can_connect(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        return True
    except OSError:
        return False


class ConnectLoop(threading.Thread):
    """Connects to PORT over and over, counting connect() failures."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.port = port
        self.stop = threading.Event()
        self.attempts = 0
        self.errors = []

    def run(self):
        while not self.stop.is_set():
            self.attempts += 1
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=5).close()
            except OSError as e:
                self.errors.append(repr(e))
            time.sleep(0.005)


# ---------------------------------------------------------------- a hive under test

class Hive:
    """One `hive up` in a temporary work dir."""

    def __init__(self, test, work_dir, bots, defaults=None, env=None):
        self.test = test
        self.work_dir = work_dir
        self.listen_port, *ports = free_ports(len(bots) + 1)
        self.ports = dict(zip([b["id"] for b in bots], ports))
        self.bots = bots
        self.defaults = defaults or {}
        self.env = dict(os.environ, **(env or {}))
        self.proc = None
        self.seen = {}   # worker pid -> starttime, every worker ever seen
        self.write_roster()

    @property
    def roster(self):
        return os.path.join(self.work_dir, "hive.yaml")

    def path(self, *parts):
        return os.path.join(self.work_dir, ".deia", "hive", *parts)

    def write_roster(self, bots=None):
        """Write hive.yaml (JSON is YAML) with BOTS, giving new ids a free port."""
        bots = self.bots if bots is None else bots
        for b in bots:
            if b["id"] not in self.ports:
                self.ports[b["id"]] = free_ports(1)[0]
        doc = {"hive": {"name": "e2e", "work_dir": ".",
                        "listen": "127.0.0.1:%d" % self.listen_port},
               "defaults": dict({"stop_timeout": 5}, **self.defaults),
               "bots": [dict(b, port=self.ports[b["id"]]) for b in bots]}
        tmp = self.roster + ".tmp"
        with open(tmp, "w") as f:
            json.dump(doc, f, indent=2)
        os.rename(tmp, self.roster)

    def run(self, *args, timeout=15.0):
        """`hive ARGS` to completion: (rc, stdout, stderr)."""
        p = subprocess.run([HIVE_BIN] + list(args), cwd=self.work_dir, env=self.env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
        return p.returncode, p.stdout.decode(), p.stderr.decode()

    def start(self, stdout=None):
        """`hive up` in the foreground; stderr (the supervisor's log) to a file."""
        self.out_path = os.path.join(self.work_dir, "hive.out")
        self.err_path = os.path.join(self.work_dir, "hive.err")
        self.err_file = open(self.err_path, "wb")
        self.out_file = open(self.out_path, "wb") if stdout is None else None
        self.proc = subprocess.Popen([HIVE_BIN, "up", "-f", self.roster], cwd=self.work_dir,
                                     env=self.env, stdin=subprocess.DEVNULL,
                                     stdout=self.out_file or stdout, stderr=self.err_file)
        self.test.addCleanup(self.kill)

    def log(self):
        return read_text(self.err_path)

    def registry(self):
        try:
            with open(self.path("registry.json")) as f:
                bots = json.load(f)["bots"]
        except (OSError, ValueError, KeyError):
            return {}
        for b in bots.values():
            if b.get("pid") and b["pid"] not in self.seen:
                st = proc_stat(b["pid"])
                if st:
                    self.seen[b["pid"]] = st[1]
        return bots

    def bot(self, bot_id):
        return self.registry().get(bot_id)

    def alive(self):
        if self.proc.poll() is not None:
            raise AssertionError("hive exited early with %s:\n%s"
                                 % (self.proc.returncode, self.log()))
        return True

    def wait_state(self, bot_id, state, timeout=UP_TIMEOUT, pred=None):
        """Wait for BOT_ID to be in STATE (and PRED(entry)); returns its entry."""
        def check():
            self.alive()
            b = self.bot(bot_id)
            return b if b and b["status"] == state and (pred is None or pred(b)) else None
        return wait_for(check, timeout, "%s %s" % (bot_id, state))

    def wait_running(self, ids, timeout=UP_TIMEOUT):
        return {i: self.wait_state(i, "running", timeout) for i in ids}

    def front_status(self):
        """GET /status on listen (SPEC §6.3)."""
        code, body = http_get("http://127.0.0.1:%d/status" % self.listen_port, timeout=3)
        self.test.assertEqual(code, 200, "GET /status on listen")
        return body

    def signal(self, sig):
        self.proc.send_signal(sig)

    def wait_exit(self, timeout=STOP_TIMEOUT):
        return self.proc.wait(timeout=timeout)

    def kill(self):
        """tearDown: the supervisor and any worker it left, by pid and start time."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        for pid, start in self.seen.items():
            st = proc_stat(pid)
            if st and st[1] == start:
                try:
                    os.killpg(pid, signal.SIGKILL)
                except OSError:
                    pass
        for f in (getattr(self, "err_file", None), getattr(self, "out_file", None)):
            if f:
                f.close()
        if getattr(self, "err_path", None):
            text = self.log()
            for m in SANITIZER_MARKERS:
                self.test.assertNotIn(m, text, "sanitizer report in the supervisor log")


# ---------------------------------------------------------------- the tests

class SupervisorTest(unittest.TestCase):

    def setUp(self):
        for b in (HIVE_BIN, WORKER_BIN):
            if not os.path.exists(b):
                self.fail("not built: %s" % b)
        self.dir = tempfile.mkdtemp(prefix="hive-sup-e2e-")
        self.addCleanup(shutil.rmtree, self.dir, True)

    def wrapper(self):
        path = os.path.join(self.dir, "worker-wrapper.sh")
        with open(path, "w") as f:
            f.write(WRAPPER % os.path.abspath(WORKER_BIN))
        os.chmod(path, 0o755)
        return path

    def test_check_reports_every_error_with_its_position(self):
        bad = os.path.join(self.dir, "hive.yaml")
        with open(bad, "w") as f:
            f.write("hive:\n  name: x\n  colour: blue\nbots:\n  - id: 'bad id'\n"
                    "  - id: OK-1\n    port: notaport\n")
        p = subprocess.run([HIVE_BIN, "check", "-f", bad], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=10)
        err = p.stderr.decode()
        self.assertEqual(p.returncode, 78, err)
        self.assertIn(bad + ":3:3:", err)   # the unknown key
        self.assertIn(bad + ":5:", err)     # the bad id
        self.assertIn(bad + ":7:", err)     # the bad port
        # `hive up` refuses the same roster the same way, starting nothing.
        p = subprocess.run([HIVE_BIN, "up", "-f", bad], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=10, cwd=self.dir)
        self.assertEqual(p.returncode, 78)
        self.assertIn(bad + ":3:3:", p.stderr.decode())
        # A good roster: a summary with every bot and port.
        hive = Hive(self, self.dir, [{"id": "BOT-A"}, {"id": "BOT-B"}])
        rc, out, err = hive.run("check", "-f", hive.roster)
        self.assertEqual(rc, 0, err)
        for bot_id, port in hive.ports.items():
            self.assertRegex(out, r"%s\s+port %d" % (bot_id, port))

    def test_lifecycle_restart_reload_and_ctrl_c(self):
        bots = [{"id": "BOT-001"}, {"id": "BOT-002"}, {"id": "BOT-003"}]
        hive = Hive(self, self.dir, bots)
        hive.start()
        up = hive.wait_running(["BOT-001", "BOT-002", "BOT-003"])
        for bot_id, entry in up.items():
            code, st = http_get("http://127.0.0.1:%d/status" % hive.ports[bot_id])
            self.assertEqual(code, 200)
            self.assertEqual(st["bot_id"], bot_id)
            self.assertEqual(entry["port"], hive.ports[bot_id])
            self.assertEqual(entry["restarts"], 0)
        with open(hive.out_path) as f:
            banner = f.read()
        for bot_id, port in hive.ports.items():
            self.assertIn("http://127.0.0.1:%d" % port, banner)
            self.assertIn("http://127.0.0.1:%d/bots/%s/" % (hive.listen_port, bot_id), banner)
        pgids = {hive.proc.pid} | {e["pid"] for e in up.values()}

        # The worker's own output is captured into its log file.
        log = hive.path("logs", "BOT-001.log")
        wait_for(lambda: "listening on" in read_text(log), 10,
                 "BOT-001.log")

        # SIGKILL a worker while a client keeps connecting: it comes back with a
        # new pid, one restart counted, and no connection was ever refused.
        old = up["BOT-002"]["pid"]
        loop = ConnectLoop(hive.ports["BOT-002"])
        loop.start()
        time.sleep(0.2)
        os.kill(old, signal.SIGKILL)
        back = hive.wait_state("BOT-002", "running", pred=lambda b: b["pid"] != old)
        time.sleep(0.3)
        loop.stop.set()
        loop.join(10)
        self.assertEqual(back["restarts"], 1)
        self.assertEqual(loop.errors, [], "connect() failed during the restart")
        self.assertGreater(loop.attempts, 10)
        pgids.add(back["pid"])
        code, st = http_get("http://127.0.0.1:%d/status" % hive.ports["BOT-002"])
        self.assertEqual((code, st["bot_id"]), (200, "BOT-002"))
        b2 = [b for b in hive.front_status()["bots"] if b["id"] == "BOT-002"][0]
        self.assertEqual((b2["state"], b2["restarts"], b2["pid"]), ("running", 1, back["pid"]))
        self.assertEqual(b2["last_exit"].get("signal"), 9)
        # Within 10 s of its start it waits a backoff; after a healthy run
        # (10 s up) it is restarted at once.
        self.assertRegex(hive.log(), r"BOT-002: running -> (backoff|starting) \(killed by signal 9")

        # Reload: BOT-003 removed, BOT-004 added, BOT-001 and BOT-002 untouched.
        keep = {i: hive.bot(i)["pid"] for i in ("BOT-001", "BOT-002")}
        gone_pid = up["BOT-003"]["pid"]
        hive.write_roster([{"id": "BOT-001"}, {"id": "BOT-002"}, {"id": "BOT-004"}])
        hive.signal(signal.SIGHUP)
        added = hive.wait_state("BOT-004", "running")
        pgids.add(added["pid"])
        wait_for(lambda: "BOT-003" not in hive.registry(), 10, "BOT-003 dropped")
        wait_for(lambda: proc_stat(gone_pid) is None, 10, "BOT-003's worker gone")
        for i, pid in keep.items():
            self.assertEqual(hive.bot(i)["pid"], pid, "%s was restarted by the reload" % i)
        wait_for(lambda: not can_connect(hive.ports["BOT-003"]), 5, "BOT-003's port closed")
        code, st = http_get("http://127.0.0.1:%d/status" % hive.ports["BOT-004"])
        self.assertEqual((code, st["bot_id"]), (200, "BOT-004"))

        # A roster that no longer validates changes nothing.
        hive.write_roster([{"id": "BOT-001", "colour": "blue"}, {"id": "BOT-002"}])
        hive.signal(signal.SIGHUP)
        wait_for(lambda: "reload refused" in hive.log(), 10, "the refused reload")
        self.assertEqual(set(hive.registry()), {"BOT-001", "BOT-002", "BOT-004"})

        # Ctrl-C: exit 0, and nothing of the hive is left.
        hive.signal(signal.SIGINT)
        self.assertEqual(hive.wait_exit(), 0, hive.log())
        left = wait_for(lambda: not processes_in_groups(pgids) or None, 5,
                        "no process left in the hive's groups", interval=0.1)
        self.assertTrue(left)
        self.assertFalse(os.path.exists(hive.path("hive.pid")))
        self.assertIn("every bot is stopped", hive.log())

    def test_port_in_use_is_refused_before_anything_starts(self):
        hive = Hive(self, self.dir, [{"id": "BOT-A"}, {"id": "BOT-B"}])
        taken = socket.socket()
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        taken.bind(("127.0.0.1", hive.ports["BOT-B"]))
        taken.listen(1)
        self.addCleanup(taken.close)
        rc, out, err = hive.run("up", "-f", hive.roster)
        self.assertEqual(rc, 78, err)
        self.assertIn("BOT-B", err)
        self.assertIn(str(hive.ports["BOT-B"]), err)
        self.assertFalse(os.path.exists(hive.path("logs", "BOT-A.log")),
                         "a worker started before the refusal")
        self.assertFalse(can_connect(hive.ports["BOT-A"]))

    def test_failing_workers_end_fatal_while_others_serve(self):
        restart = {"policy": "always", "max_restarts": 2, "window": 60}
        bots = [{"id": "GOOD-1"},
                {"id": "CRASH-1", "restart": restart},
                {"id": "CONF-1"},
                {"id": "MUTE-1", "start_timeout": 1, "restart": dict(restart, max_restarts=0)},
                {"id": "HANG-1", "watchdog": 1, "restart": dict(restart, max_restarts=1)},
                {"id": "STUBBORN-1", "stop_timeout": 1},
                {"id": "FLOOD-1"}]
        hive = Hive(self, self.dir, bots, env={"HIVE_WORKER_BIN": self.wrapper()})
        # stdout is a pipe nobody reads: the echo must drop, never block.
        hive.start(stdout=subprocess.PIPE)
        self.addCleanup(lambda: hive.proc.stdout and hive.proc.stdout.close())
        crash = hive.wait_state("CRASH-1", "fatal")
        self.assertEqual(crash["restarts"], 2)
        self.assertIn("more than 2 restarts within 60 s (last: exit status 1)", crash["reason"])
        conf = hive.wait_state("CONF-1", "fatal")
        self.assertIn("exit status 78", conf["reason"])
        self.assertEqual(conf["restarts"], 0)
        mute = hive.wait_state("MUTE-1", "fatal")
        self.assertIn("not ready within 1 s", mute["reason"])
        hang = hive.wait_state("HANG-1", "fatal")
        self.assertIn("watchdog timeout", hang["reason"])
        hive.wait_running(["GOOD-1", "FLOOD-1", "STUBBORN-1"], timeout=40)
        for bot_id in ("GOOD-1", "FLOOD-1"):
            code, st = http_get("http://127.0.0.1:%d/status" % hive.ports[bot_id])
            self.assertEqual((code, st["bot_id"]), (200, bot_id))
        with open(hive.path("logs", "CRASH-1.log")) as f:
            self.assertEqual(f.read().count("crash bot: exiting 1"), 3)

        # The flood went to the log whole, rotated at 10 MiB, long lines cut.
        logs = hive.path("logs", "FLOOD-1.log")
        wait_for(lambda: "listening on" in read_text(logs), 20,
                 "the flooding worker's own lines")
        self.assertTrue(os.path.exists(logs + ".1"))
        lines = []
        for p in (logs + ".1", logs):
            with open(p) as f:
                lines += f.read().splitlines()
        ys = [len(line) for line in lines if line.startswith("y")]
        self.assertEqual(ys, [16384, 16384, 40000 - 2 * 16384])
        xs = sum(len(line) for line in lines if line.startswith("x"))
        self.assertEqual(xs, 11534336)
        self.assertLessEqual(os.path.getsize(logs + ".1"), 10 * 1024 * 1024)

        front = {b["id"]: b for b in hive.front_status()["bots"]}
        self.assertEqual(front["CRASH-1"]["state"], "fatal")
        self.assertIn("more than 2 restarts", front["CRASH-1"]["reason"])
        self.assertEqual(front["GOOD-1"]["state"], "running")
        # SIGTERM: all stop; the one that ignores it is killed at its stop timeout.
        hive.signal(signal.SIGTERM)
        self.assertEqual(hive.wait_exit(), 0, hive.log())
        self.assertRegex(hive.log(), r"STUBBORN-1: SIGKILL to pid \d+ \(still running after SIGTERM")
        self.assertIn("STUBBORN-1: stopping -> stopped (killed by signal 9)", hive.log())

    def test_detached_hive_pidfile_and_lock(self):
        hive = Hive(self, self.dir, [{"id": "BOT-D"}])
        rc, out, err = hive.run("up", "-d", "-f", hive.roster)
        self.assertEqual(rc, 0, err)
        self.assertIn("http://127.0.0.1:%d" % hive.ports["BOT-D"], out)
        pid = int(read_text(hive.path("hive.pid")))
        start = proc_stat(pid)[1]
        self.addCleanup(lambda: proc_stat(pid) and proc_stat(pid)[1] == start
                        and os.kill(pid, signal.SIGKILL))
        entry = wait_for(lambda: (hive.bot("BOT-D") or {}).get("status") == "running"
                         and hive.bot("BOT-D"), UP_TIMEOUT, "BOT-D running")
        hive.seen[entry["pid"]] = proc_stat(entry["pid"])[1]
        self.addCleanup(hive.kill)
        # A second hive on the same work dir is refused, in either mode.
        for args in (("up", "-d"), ("up",)):
            rc, out, err = hive.run(*args, "-f", hive.roster)
            self.assertEqual(rc, 1, err)
            self.assertIn("already running", err)
        wait_for(lambda: "BOT-D: starting -> running" in read_text(hive.path("logs", "hive.log")),
                 10, "hive.log")
        os.kill(pid, signal.SIGTERM)
        wait_for(lambda: proc_stat(pid) is None, STOP_TIMEOUT, "the daemon gone")
        wait_for(lambda: proc_stat(entry["pid"]) is None, 5, "its worker gone")
        self.assertFalse(os.path.exists(hive.path("hive.pid")))
        text = read_text(hive.path("logs", "hive.log"))
        for m in SANITIZER_MARKERS:
            self.assertNotIn(m, text)


if __name__ == "__main__":
    unittest.main(verbosity=2)
