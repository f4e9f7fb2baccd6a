"""End to end: `hive up` supervising real workers (SPEC.md §1, §2, §6).

Each test writes a hive.yaml with kernel-chosen free loopback ports into a fresh
temporary work dir, starts `$HIVE_BUILD_DIR/supervisor/hive up` there, and
watches it the way a user or a DEIA tool does: `.deia/hive/registry.json`, each
worker's own `GET /status`, the captured logs under `.deia/hive/logs/`, and `GET /status` on the hive's
`listen` port (the front door).

The fd store (a worker's inotify instance kept by the supervisor across its
crashes) is checked from /proc: which descriptors each process holds, and with
kcmp(2) whether two of them are the same open file (every inotify instance
shows the same anon inode, so inode numbers cannot tell them apart).

Misbehaving workers are played by a small shell wrapper set as HIVE_WORKER_BIN:
it crashes, exits 78, never says READY=1, never sends WATCHDOG=1, ignores
SIGTERM, floods its output or plays with the fd store, depending on the bot
id, and runs the real hive-worker otherwise.

Every wait is bounded by a deadline; every process started here is killed by
pid (and start time) in tearDown. Run with /usr/bin/python3.
"""

import ctypes
import errno
import fcntl
import http.client
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hive_e2e import free_ports  # noqa: E402

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
      STORE*) exec /usr/bin/python3 -c 'import ctypes, os, signal, socket, sys, time
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    libc = ctypes.CDLL(None)
    to = "\\0" + os.environ["NOTIFY_SOCKET"][1:]
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    def store(name, fd):
        rights = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fd.to_bytes(4, sys.byteorder))]
        s.sendmsg([b"FDSTORE=1\\nFDNAME=" + name + b"\\n"], rights, 0, to)
    a, b, c = libc.inotify_init1(0), libc.inotify_init1(0), libc.inotify_init1(0)
    for fd in (a, b, c):
        libc.inotify_add_watch(fd, b".", 0x100)
    r, w = os.pipe()
    store(b"inotify", a)
    store(b"inotify", b)
    store(b"other", c)
    store(b"inotify", r)
    print("stored", a, b, c, r, flush=True)
    s.sendto(b"READY=1", to)
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


# ---------------------------------------------------------------- descriptors

LIBC = ctypes.CDLL(None, use_errno=True)
SYS_KCMP = {"x86_64": 312, "aarch64": 272}.get(os.uname().machine)
SYS_PIDFD_GETFD = 438
KCMP_FILE = 0
INOTIFY = "anon_inode:inotify"

# Execs argv[3:] with descriptors placed as argv[1] says ("3=7,4=9": our fd 7
# on its fd 3, ...), inheritable; argv[2] "listen" also sets LISTEN_PID to the
# process that execs (how a service manager hands over sockets).
PLACE_FDS = textwrap.dedent("""\
    import fcntl, os, sys
    pairs = [p.split("=") for p in sys.argv[1].split(",")]
    high = [(int(t), fcntl.fcntl(int(f), fcntl.F_DUPFD, 30)) for t, f in pairs]
    for target, fd in high:
        os.dup2(fd, target)
        os.close(fd)
    for fd in {int(f) for _, f in pairs} - {target for target, _ in high}:
        os.close(fd)
    if sys.argv[2] == "listen":
        os.environ["LISTEN_PID"] = str(os.getpid())
    os.execv(sys.argv[3], sys.argv[3:])
    """)


def fds_of(pid):
    """{fd: link target} of PID's open descriptors."""
    out = {}
    base = "/proc/%d/fd" % pid
    for name in os.listdir(base):
        try:
            out[int(name)] = os.readlink(os.path.join(base, name))
        except OSError:
            pass
    return out


def inotify_fds(pid):
    """PID's inotify instances, sorted."""
    return sorted(fd for fd, target in fds_of(pid).items() if target == INOTIFY)


def same_file(pid1, fd1, pid2, fd2):
    """True when FD1 of PID1 and FD2 of PID2 are one open file (kcmp(2))."""
    r = LIBC.syscall(SYS_KCMP, pid1, pid2, KCMP_FILE, fd1, fd2)
    if r < 0:
        e = ctypes.get_errno()
        raise OSError(e, "kcmp: %s" % os.strerror(e))
    return r == 0


def holds_file(pid, fd, holder):
    """True when HOLDER has FD of PID open among its descriptors. One of them
    that closes while we look (a file the supervisor reads and closes: the
    registry, a worker's /proc entries) is not it."""
    for h in fds_of(holder):
        try:
            if same_file(pid, fd, holder, h):
                return True
        except OSError as e:
            if e.errno != errno.EBADF:
                raise
    return False


def socket_inode(pid, fd):
    """The inode of socket FD of PID, or None when FD is no socket."""
    try:
        target = os.readlink("/proc/%d/fd/%d" % (pid, fd))
    except OSError:
        return None
    return int(target[8:-1]) if target.startswith("socket:[") else None


def socket_inodes(pid):
    """The inodes of every socket PID holds."""
    return {i for i in (socket_inode(pid, fd) for fd in fds_of(pid)) if i is not None}


def unix_sockets():
    """{inode: (path, state, listening)} from /proc/net/unix ("@name" for
    abstract ones; an accepted socket shows its listener's name)."""
    out = {}
    with open("/proc/net/unix") as f:
        next(f)
        for line in f:
            cols = line.split()
            flags, state, inode = int(cols[3], 16), cols[5], int(cols[6])
            out[inode] = (cols[7] if len(cols) > 7 else "", state, bool(flags & 0x10000))
    return out


def tcp_established():
    """Inodes of every established TCP socket (IPv4 and IPv6)."""
    out = set()
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(name) as f:
                next(f)
                out |= {int(c[9]) for c in (line.split() for line in f) if c[3] == "01"}
        except OSError:
            pass
    return out


def require_kcmp(test, pid):
    """Skip TEST when kcmp(2) cannot compare our descriptors with PID's."""
    if SYS_KCMP is None:
        test.skipTest("kcmp: unknown syscall number on %s" % os.uname().machine)
    try:
        same_file(os.getpid(), 0, pid, 0)
    except OSError as e:
        test.skipTest("kcmp(2) unavailable here: %s" % e)


def grab_fd(test, pid, fd):
    """Our own reference to FD of PID (pidfd_getfd), closed at cleanup."""
    pidfd = os.pidfd_open(pid)
    try:
        mine = LIBC.syscall(SYS_PIDFD_GETFD, pidfd, fd, 0)
        if mine < 0:
            e = ctypes.get_errno()
            test.skipTest("pidfd_getfd unavailable here: %s" % os.strerror(e))
    finally:
        os.close(pidfd)
    test.addCleanup(os.close, mine)
    return mine


def inotify_new(test, flags=os.O_CLOEXEC):
    """A new inotify instance of our own, closed at cleanup."""
    fd = LIBC.inotify_init1(flags)
    if fd < 0:
        test.fail("inotify_init1: %s" % os.strerror(ctypes.get_errno()))
    test.addCleanup(os.close, fd)
    return fd


def proc_env(pid):
    """PID's environment at exec."""
    with open("/proc/%d/environ" % pid, "rb") as f:
        items = f.read().decode("utf-8", "replace").split("\0")
    return dict(i.split("=", 1) for i in items if "=" in i)


def responses_for(work_dir, task_id):
    """Response file names of TASK_ID in WORK_DIR."""
    d = os.path.join(work_dir, ".deia", "hive", "responses")
    try:
        return sorted(n for n in os.listdir(d) if "-RESPONSE-%s-" % task_id in n)
    except FileNotFoundError:
        return []


def drop_task(work_dir, bot_id, task_id):
    """Write a task file elsewhere and rename it into BOT_ID's queue."""
    queue = os.path.join(work_dir, ".deia", "hive", "tasks", bot_id)
    os.makedirs(queue, exist_ok=True)
    tmp = os.path.join(work_dir, ".%s.tmp" % task_id)
    with open(tmp, "w") as f:
        f.write("---\ntask_id: %s\nfrom: e2e\n---\nanswer me once\n" % task_id)
    os.rename(tmp, os.path.join(queue, task_id + ".md"))


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

    def start(self, stdout=None, inherit=None, nofile=None):
        """`hive up` in the foreground; stderr (the supervisor's log) to a file.
        INHERIT {target fd: our fd}: descriptors it inherits (not close-on-exec).
        NOFILE (soft, hard): its RLIMIT_NOFILE."""
        self.out_path = os.path.join(self.work_dir, "hive.out")
        self.err_path = os.path.join(self.work_dir, "hive.err")
        self.err_file = open(self.err_path, "wb")
        self.out_file = open(self.out_path, "wb") if stdout is None else None
        argv = [HIVE_BIN, "up", "-f", self.roster]
        if inherit:
            spec = ",".join("%d=%d" % kv for kv in inherit.items())
            argv = ["/usr/bin/python3", "-c", PLACE_FDS, spec, "-"] + argv
        self.proc = subprocess.Popen(argv, cwd=self.work_dir, env=self.env,
                                     stdin=subprocess.DEVNULL, stdout=self.out_file or stdout,
                                     stderr=self.err_file, pass_fds=list((inherit or {}).values()),
                                     preexec_fn=nofile and (lambda: resource.setrlimit(
                                         resource.RLIMIT_NOFILE, nofile)))
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

    def test_planted_fifo_and_symlinks_at_its_logs_hold_up_nothing(self):
        """SPEC §7: a FIFO at a bot's captured log and symlinks at the events log
        and hive.log are replaced by files of the hive's own: `hive up` starts
        the bot, and nothing is written through a link."""
        hive = Hive(self, self.dir, [{"id": "BOT-P"}])
        os.makedirs(hive.path("logs"))
        bot_log, events, hive_log = (hive.path("logs", "BOT-P.log"), hive.path("events.jsonl"),
                                     hive.path("logs", "hive.log"))
        os.mkfifo(bot_log)
        outside = os.path.join(self.dir, "outside.txt")
        with open(outside, "w") as f:
            f.write("precious\n")
        os.symlink(outside, events)
        os.symlink(outside, hive_log)
        hive.start()
        hive.wait_running(["BOT-P"], timeout=10)

        def plain(path):  # checked before a read: a read of the FIFO would wait
            return os.path.isfile(path) and not os.path.islink(path)
        wait_for(lambda: plain(bot_log) and "listening on" in read_text(bot_log), 10,
                 "the bot's own lines in a new BOT-P.log")
        wait_for(lambda: plain(events) and "BOT-P" in read_text(events), 10,
                 "the bot's events in a new events.jsonl")
        self.assertTrue(plain(hive_log), hive_log)
        self.assertEqual(read_text(outside), "precious\n", "nothing written through a link")
        self.assertIn("was a FIFO", hive.log())
        self.assertIn("was a symlink", hive.log())

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

    def assert_answered_once(self, work_dir, task_id):
        """TASK_ID gets one response file, and no second one comes after it."""
        wait_for(lambda: responses_for(work_dir, task_id), 20, "a response to %s" % task_id)
        time.sleep(0.5)
        self.assertEqual(len(responses_for(work_dir, task_id)), 1,
                         responses_for(work_dir, task_id))

    def answer_to_dropped_task(self, bot, task_id):
        """Drop TASK_ID in BOT's queue: the text of its one response."""
        drop_task(self.dir, bot, task_id)
        self.assert_answered_once(self.dir, task_id)
        name = responses_for(self.dir, task_id)[0]
        return read_text(os.path.join(self.dir, ".deia", "hive", "responses", name))

    def assert_only_handed_over(self, hive_pid, worker, listen_fd=None):
        """WORKER shares no open file with the supervisor but its listening
        socket on fd 3, its private proxy socket on fd 4 and its inotify
        instance (the fd store's copy); the others are its own (stdout/stderr
        are the write end of a pipe the supervisor holds the read end of: two
        files)."""
        sup = fds_of(hive_pid)
        own = inotify_fds(worker)
        for fd, target in sorted(fds_of(worker).items()):
            shared = [h for h in sup if same_file(hive_pid, h, worker, fd)]
            if fd == 3:
                self.assertEqual(len(shared), 1, "fd 3 is not the supervisor's socket")
                if listen_fd is not None:
                    self.assertEqual(shared, [listen_fd])
            elif fd == 4:
                self.assertEqual(len(shared), 1, "fd 4 is not the supervisor's proxy socket")
            elif fd in own:
                self.assertEqual(len(shared), 1, "inotify fd %d not in the fd store" % fd)
                self.assertEqual(sup[shared[0]], INOTIFY)
            else:
                self.assertEqual(shared, [], "worker fd %d (%s) leaked from the supervisor"
                                 % (fd, target))

    def test_fd_store_keeps_inotify_across_crashes_only(self):
        again = {"policy": "always", "max_restarts": 100, "window": 60}
        bots = [{"id": "BOT-F", "restart": again}, {"id": "BOT-G", "restart": again},
                {"id": "BOT-N", "restart": {"policy": "never"}}]
        hive = Hive(self, self.dir, bots)
        # Descriptors the supervisor inherited without close-on-exec, one on
        # fd 4: none of them may reach a worker.
        r, w = os.pipe()
        self.addCleanup(os.close, r)
        self.addCleanup(os.close, w)
        hive.start(inherit={4: w, 9: w})
        up = hive.wait_running([b["id"] for b in bots])
        sup = hive.proc.pid
        require_kcmp(self, sup)
        self.assertTrue(same_file(os.getpid(), w, sup, 4) and same_file(os.getpid(), w, sup, 9))

        # One instance per bot in the supervisor: each its worker's own.
        self.assertEqual(len(inotify_fds(sup)), 3, fds_of(sup))
        stored = {}
        for bot_id, entry in up.items():
            worker = entry["pid"]
            self.assertEqual(len(inotify_fds(worker)), 1, fds_of(worker))
            match = [h for h in inotify_fds(sup)
                     if same_file(sup, h, worker, inotify_fds(worker)[0])]
            self.assertEqual(len(match), 1, "%s: its instance is not stored once" % bot_id)
            stored[bot_id] = match[0]
            env = proc_env(worker)
            self.assertEqual((env.get("LISTEN_FDS"), env.get("LISTEN_FDNAMES")),
                             ("3", "listen:proxy:chan"))
            self.assert_only_handed_over(sup, worker)
        self.assertEqual(len(set(stored.values())), 3)

        # SIGKILL: the replacement gets the very instance back as fd 5 and
        # makes none of its own. A task dropped while it was down, and one
        # dropped after, are each answered once.
        first = up["BOT-F"]["pid"]
        mine = grab_fd(self, sup, stored["BOT-F"])
        os.kill(first, signal.SIGKILL)
        drop_task(self.dir, "BOT-F", "T-DOWN")
        back = hive.wait_state("BOT-F", "running", pred=lambda b: b["pid"] != first)
        second = back["pid"]
        env = proc_env(second)
        self.assertEqual((env.get("LISTEN_FDS"), env.get("LISTEN_FDNAMES")),
                         ("4", "listen:proxy:inotify:chan"))
        self.assertEqual(inotify_fds(second), [5], fds_of(second))
        self.assertTrue(same_file(os.getpid(), mine, second, 5),
                        "the restarted worker has a new inotify instance")
        self.assertEqual(len(inotify_fds(sup)), 3, fds_of(sup))
        self.assertTrue(any(same_file(os.getpid(), mine, sup, h) for h in inotify_fds(sup)))
        self.assert_only_handed_over(sup, second)
        self.assert_answered_once(self.dir, "T-DOWN")
        drop_task(self.dir, "BOT-F", "T-AFTER")
        self.assert_answered_once(self.dir, "T-AFTER")

        # A descriptor offered by anyone but the bot's worker is not kept.
        spoof = inotify_new(self)
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            name = env["NOTIFY_SOCKET"]
            rights = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, spoof.to_bytes(4, sys.byteorder))]
            s.sendmsg([b"FDSTORE=1\nFDNAME=inotify\n"], rights, 0, "\0" + name[1:])
        hive.front_status()  # a loop pass after the datagram was queued
        self.assertEqual(len(inotify_fds(sup)), 3, fds_of(sup))
        self.assertFalse(holds_file(os.getpid(), spoof, sup))

        # SIGTERM from outside: the worker sends FDSTOREREMOVE=1 on its way
        # out, so its replacement starts on a new instance (and stores it).
        os.kill(second, signal.SIGTERM)
        back = hive.wait_state("BOT-F", "running", pred=lambda b: b["pid"] != second)
        third = back["pid"]
        self.assertEqual(proc_env(third).get("LISTEN_FDS"), "3")
        self.assertEqual(len(inotify_fds(third)), 1)
        self.assertFalse(same_file(os.getpid(), mine, third, inotify_fds(third)[0]))
        self.assertEqual(len(inotify_fds(sup)), 3, fds_of(sup))
        self.assertFalse(any(same_file(os.getpid(), mine, sup, h) for h in inotify_fds(sup)))
        self.assert_only_handed_over(sup, third)

        # A bot that is not restarted (policy never) lets go once it is gone.
        os.kill(up["BOT-N"]["pid"], signal.SIGKILL)
        hive.wait_state("BOT-N", "stopped")
        self.assertEqual(len(inotify_fds(sup)), 2, fds_of(sup))

        # `hive restart`: on purpose, so the next worker starts afresh.
        g = hive.bot("BOT-G")["pid"]
        old_g = grab_fd(self, g, inotify_fds(g)[0])
        rc, out, err = hive.run("restart", "-f", hive.roster, "BOT-G")
        self.assertEqual(rc, 0, err)
        back = hive.wait_state("BOT-G", "running", pred=lambda b: b["pid"] != g)
        self.assertEqual(proc_env(back["pid"]).get("LISTEN_FDS"), "3")
        self.assertFalse(same_file(os.getpid(), old_g, back["pid"],
                                   inotify_fds(back["pid"])[0]))
        self.assertFalse(any(same_file(os.getpid(), old_g, sup, h) for h in inotify_fds(sup)))

        # `hive stop`: the supervisor lets go as the stop begins.
        f = grab_fd(self, third, inotify_fds(third)[0])
        rc, out, err = hive.run("stop", "-f", hive.roster, "BOT-F")
        self.assertEqual(rc, 0, err)
        self.assertFalse(any(same_file(os.getpid(), f, sup, h) for h in inotify_fds(sup)),
                         "BOT-F's instance still stored after `hive stop`")
        hive.wait_state("BOT-F", "stopped")
        self.assertEqual(len(inotify_fds(sup)), 1, fds_of(sup))

        # Shutdown: every stored instance goes with it.
        hive.signal(signal.SIGTERM)
        self.assertEqual(hive.wait_exit(), 0, hive.log())
        self.assertNotIn("not keeping", hive.log())

    def test_proxy_reaches_the_worker_over_its_private_socket(self):
        hive = Hive(self, self.dir, [{"id": "BOT-P"}])
        hive.start()
        worker = hive.wait_running(["BOT-P"])["BOT-P"]["pid"]
        sup = hive.proc.pid
        require_kcmp(self, sup)
        self.assertEqual(proc_env(worker).get("LISTEN_FDNAMES"), "listen:proxy:chan")
        # fd 4: a listening abstract Unix socket, the supervisor's own.
        unix = unix_sockets()
        name, _, listening = unix.get(socket_inode(worker, 4), ("", "", False))
        self.assertTrue(listening and name.startswith("@"), (name, listening))
        held = [h for h in fds_of(sup) if same_file(sup, h, worker, 4)]
        self.assertEqual(len(held), 1, "the proxy socket is not the supervisor's")

        # Proxied requests on one client connection: all reach the worker
        # through that socket, on one kept-alive connection, none over TCP.
        conn = http.client.HTTPConnection("127.0.0.1", hive.listen_port, timeout=5)
        self.addCleanup(conn.close)

        def get_status():
            conn.request("GET", "/bots/BOT-P/status")
            r = conn.getresponse()
            return r.status, json.loads(r.read())
        for _ in range(20):
            code, body = get_status()
            self.assertEqual((code, body["bot_id"]), (200, "BOT-P"))
        unix = unix_sockets()
        mine = socket_inodes(worker)
        accepted = [i for i in mine if unix.get(i, ("", "", True))[:2] == (name, "03")]
        self.assertEqual(len(accepted), 1, "worker sockets: %r" % {i: unix.get(i) for i in mine})
        self.assertEqual(mine & tcp_established(), set(), "a TCP connection reached the worker")

        # SIGKILL: the replacement serves the very same socket.
        os.kill(worker, signal.SIGKILL)
        back = hive.wait_state("BOT-P", "running", pred=lambda b: b["pid"] != worker)["pid"]
        self.assertTrue(same_file(sup, held[0], back, 4), "a new proxy socket after the restart")
        code, body = get_status()
        self.assertEqual((code, body["bot_id"]), (200, "BOT-P"))
        self.assertEqual(socket_inodes(back) & tcp_established(), set())
        hive.signal(signal.SIGTERM)
        self.assertEqual(hive.wait_exit(), 0, hive.log())

    def test_open_files_limit_raised_for_us_not_for_adapters(self):
        # 20 bots need more than 64 descriptors in the supervisor (socket,
        # proxy socket, stored inotify instance and log pipe each): started
        # with a soft limit of 64, it raises its own to the hard one; workers
        # start with the 64 the user set and raise theirs; adapters get 64.
        soft, hard = 64, 4096
        if resource.getrlimit(resource.RLIMIT_NOFILE)[1] < hard:
            self.skipTest("hard open-files limit below %d here" % hard)
        bots = [{"id": "LIM-%02d" % i} for i in range(20)]
        bots[0]["adapter"] = {"type": "cli", "command": ["/bin/sh", "-c", "ulimit -Sn"]}
        hive = Hive(self, self.dir, bots)
        hive.start(nofile=(soft, hard))
        up = hive.wait_running([b["id"] for b in bots])

        def limits(pid):
            with open("/proc/%d/limits" % pid) as f:
                line = [l for l in f if l.startswith("Max open files")][0]
            return tuple(int(x) for x in line.split()[3:5])
        self.assertEqual(limits(hive.proc.pid), (hard, hard))
        for entry in up.values():
            self.assertEqual(limits(entry["pid"]), (hard, hard))
            self.assertEqual(proc_env(entry["pid"]).get("LISTEN_FDS"), "3")
        text = self.answer_to_dropped_task("LIM-00", "T-ULIMIT")
        self.assertRegex(text, r"\n%d\n" % soft, text)
        hive.signal(signal.SIGTERM)
        self.assertEqual(hive.wait_exit(), 0, hive.log())

    def test_cpu_slice_default_once_started_for_us_workers_and_adapters(self):
        # While it starts bots from its queue the supervisor asks for the
        # kernel's shortest slice (a start's vfork child inherits it and gets
        # a CPU at once). Once they are started it has the default again,
        # and its workers, which inherited the short one, have taken the
        # default back, and so their adapters run with it, as this test does.
        def slice_of(pid="self"):
            with open("/proc/%s/sched" % pid) as f:
                for line in f:
                    if line.startswith("se.slice "):
                        return int(line.split(":")[1])
            return None
        ours = slice_of()
        if ours is None:
            self.skipTest("this kernel has no EEVDF slices (/proc/self/sched has no se.slice)")
        bots = [{"id": "SL-%d" % i} for i in range(1, 5)]
        bots.append({"id": "SL-CLI", "adapter": {
            "type": "cli", "command": ["/bin/sh", "-c", "grep ^se.slice /proc/self/sched"]}})
        hive = Hive(self, self.dir, bots)
        hive.start()
        up = hive.wait_running([b["id"] for b in bots])
        self.assertEqual(slice_of(hive.proc.pid), ours)
        for entry in up.values():
            self.assertEqual(slice_of(entry["pid"]), ours)
        text = self.answer_to_dropped_task("SL-CLI", "T-SLICE")
        self.assertRegex(text, r"se\.slice\s+:\s+%d\n" % ours, text)
        # The worker's sync thread, which the task's acceptance and answer
        # waited on, asks for the shortest (worker/syncer.c); its loop keeps
        # the default.
        pid = up["SL-CLI"]["pid"]
        threads = {}
        for tid in os.listdir("/proc/%d/task" % pid):
            with open("/proc/%d/task/%s/comm" % (pid, tid)) as f:
                threads[f.read().strip()] = slice_of("%d/task/%s" % (pid, tid))
        self.assertEqual(threads.get("hive-sync"), 100000, threads)
        self.assertEqual(threads.get("hive-worker"), ours, threads)
        hive.signal(signal.SIGTERM)
        self.assertEqual(hive.wait_exit(), 0, hive.log())

    def test_fd_store_keeps_one_and_lets_go_as_a_stop_begins(self):
        # STORE-1 stores inotify instance A, then B, offers C named "other"
        # and a pipe named "inotify", then ignores SIGTERM and never asks for
        # its instance back.
        hive = Hive(self, self.dir, [{"id": "STORE-1", "stop_timeout": 1}],
                    env={"HIVE_WORKER_BIN": self.wrapper()})
        hive.start()
        fake = hive.wait_running(["STORE-1"])["STORE-1"]["pid"]
        sup = hive.proc.pid
        require_kcmp(self, sup)
        log = hive.path("logs", "STORE-1.log")
        line = wait_for(lambda: [l for l in read_text(log).splitlines() if "stored" in l], 10,
                        "the fake worker's fds")[0]
        a, b, c, r = (int(x) for x in line.split()[1:5])
        kept = inotify_fds(sup)
        self.assertEqual(len(kept), 1, fds_of(sup))
        self.assertTrue(same_file(sup, kept[0], fake, b), "the newer instance is not the one kept")
        self.assertFalse(any(same_file(sup, h, fake, a) for h in fds_of(sup)), "A still held")
        self.assertFalse(any(same_file(sup, h, fake, c) for h in fds_of(sup)), "C kept")
        self.assertFalse(any(same_file(sup, h, fake, r) for h in fds_of(sup)), "the pipe kept")
        self.assertEqual(hive.log().count("STORE-1: not keeping what worker pid %d passed" % fake),
                         2, hive.log())

        # `hive stop`: let go at once, while the worker still holds B.
        rc, out, err = hive.run("stop", "-f", hive.roster, "STORE-1")
        self.assertEqual(rc, 0, err)
        self.assertEqual(inotify_fds(sup), [], "the instance outlived the stop request")
        self.assertIsNotNone(proc_stat(fake), "the worker was gone already: nothing proven")
        hive.wait_state("STORE-1", "stopped")
        hive.signal(signal.SIGTERM)
        self.assertEqual(hive.wait_exit(), 0, hive.log())

    def start_activated(self, fds, names, work_dir, bot_id="BOT-W"):
        """hive-worker BOT_ID started with FDS on 3, 4, ... (LISTEN_FDS,
        LISTEN_FDNAMES=NAMES) and no supervisor; returns (Popen, log path)."""
        env = {k: v for k, v in os.environ.items()
               if k not in ("NOTIFY_SOCKET", "FDSTORE", "HIVE_SUPERVISOR_PID", "HIVE_TOKEN",
                            "WATCHDOG_USEC", "LISTEN_PID")}
        env.update(LISTEN_FDS=str(len(fds)), LISTEN_FDNAMES=names)
        log = os.path.join(self.dir, "%s.log" % bot_id)
        with open(log, "wb") as out:
            spec = ",".join("%d=%d" % (3 + i, fd) for i, fd in enumerate(fds))
            p = subprocess.Popen(["/usr/bin/python3", "-c", PLACE_FDS, spec, "listen",
                                  WORKER_BIN, bot_id, "--work-dir", work_dir,
                                  "--file-min-age", "0.2", "--stop-grace", "1"],
                                 stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=env,
                                 pass_fds=fds)

        def stop():
            if p.poll() is None:
                p.kill()
                p.wait(10)
        self.addCleanup(stop)
        wait_for(lambda: "listening on" in read_text(log) or p.poll() is not None, UP_TIMEOUT,
                 "the worker listening")
        self.assertIsNone(p.poll(), read_text(log))
        return p, log

    def stop_activated(self, p, log):
        p.send_signal(signal.SIGTERM)
        self.assertEqual(p.wait(STOP_TIMEOUT), 0, read_text(log))
        for m in SANITIZER_MARKERS:
            self.assertNotIn(m, read_text(log))

    def listener(self):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        self.addCleanup(s.close)
        return s

    def test_worker_adopts_an_inherited_inotify_instance(self):
        require_kcmp(self, os.getpid())
        work = os.path.join(self.dir, "work")
        other = os.path.join(self.dir, "elsewhere")
        os.makedirs(other)
        # Blocking, and watching a folder that is none of the worker's.
        ino = inotify_new(self)
        self.assertEqual(LIBC.inotify_add_watch(ino, other.encode(), 0x100), 1)  # IN_CREATE
        sock = self.listener()
        p, log = self.start_activated([sock.fileno(), ino], "listen:inotify", work)
        self.assertTrue(same_file(os.getpid(), ino, p.pid, 4), "fd 4 not used")
        self.assertEqual(inotify_fds(p.pid), [4], fds_of(p.pid))
        self.assertTrue(fcntl.fcntl(ino, fcntl.F_GETFL) & os.O_NONBLOCK, "left blocking")
        drop_task(work, "BOT-W", "T-ADOPTED")
        self.assert_answered_once(work, "T-ADOPTED")

        # An event of the foreign watch is ignored, and that watch removed.
        def marks():
            with open("/proc/self/fdinfo/%d" % ino) as f:
                return [line for line in f if line.startswith("inotify wd:")]
        self.assertTrue(any(line.startswith("inotify wd:1 ") for line in marks()), marks())
        open(os.path.join(other, "x"), "w").close()
        wait_for(lambda: not any(line.startswith("inotify wd:1 ") for line in marks()), 5,
                 "the foreign watch removed")
        drop_task(work, "BOT-W", "T-STILL")
        self.assert_answered_once(work, "T-STILL")
        self.assertIsNone(p.poll())
        self.stop_activated(p, log)

    def test_worker_adopts_only_what_listen_fdnames_says(self):
        require_kcmp(self, os.getpid())
        # LISTEN_FDNAMES that do not name fd 4 "inotify": the worker makes its
        # own instance and leaves ours alone.
        for i, names in enumerate(("listen:inotify:extra", "listen", "listen:inotifyx",
                                   "inotify:listen", "listen:")):
            work = os.path.join(self.dir, "work-%d" % i)
            ino = inotify_new(self)
            p, log = self.start_activated([self.listener().fileno(), ino], names, work,
                                          bot_id="BOT-N%d" % i)
            mine = [fd for fd in inotify_fds(p.pid) if same_file(os.getpid(), ino, p.pid, fd)]
            self.assertEqual(mine, [4], names)
            self.assertEqual(len(inotify_fds(p.pid)), 2, (names, fds_of(p.pid)))
            self.assertNotIn("not an inotify instance", read_text(log))
            self.stop_activated(p, log)

    def test_worker_refuses_a_false_inotify_descriptor(self):
        require_kcmp(self, os.getpid())
        work = os.path.join(self.dir, "work")
        r, w = os.pipe()
        self.addCleanup(os.close, r)
        self.addCleanup(os.close, w)
        sock = self.listener()
        p, log = self.start_activated([sock.fileno(), r], "listen:inotify", work)
        wait_for(lambda: "not an inotify instance" in read_text(log), 5, "the warning")
        worker_fds = fds_of(p.pid)
        self.assertFalse(any(same_file(os.getpid(), r, p.pid, fd) for fd in worker_fds),
                         "the false descriptor was kept: %r" % worker_fds)
        self.assertEqual(len(inotify_fds(p.pid)), 1, worker_fds)
        drop_task(work, "BOT-W", "T-FRESH")
        self.assert_answered_once(work, "T-FRESH")
        self.stop_activated(p, log)

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
