#!/usr/bin/python3
"""Side-by-side rows of scripts/bench (issue 14): hive, supervisord and PM2 each
supervising the very same `hive-worker` binary, measured the same way.

Every manager is driven from the outside and judged by what a client sees:

- restart: a bot's worker is SIGKILLed 20 times under bench/connloop; each kill
  is timed until the bot's port answers `GET /status` with a new pid (the
  worker's own pid field), and connloop counts refused connections. The floor
  is the same binary started bare (`hive-worker ID --port P`): spawn → its
  port answering `GET /health`.
- scale: N bots on ports BASE+1..BASE+N (below the ephemeral range): start →
  every port answering `GET /health` (for hive first its READY=1 on a
  NOTIFY_SOCKET of ours, as systemd's Type=notify sees it, then its `/status`
  saying all running), the manager's RSS, the CPU of manager + workers while
  idle, and stop → every worker gone.

supervisord (Debian `supervisor`) runs with a private config, socket, pid file
and log folder under the run folder; PM2 (npm, pinned in bench/package.json and
its lock) with a private PM2_HOME. Nothing here touches the machine's own
supervisord or ~/.pm2. Each manager's run is bounded in time; a peer that
needs more than a bound at one N is skipped at the next, and the row says so.
"""
import json
import os
import selectors
import shutil
import signal
import socket
import statistics
import subprocess
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PM2_BIN = os.path.join(HERE, "node_modules", ".bin", "pm2")
SUPERVISORD = shutil.which("supervisord") or "/usr/bin/supervisord"
SUPERVISORCTL = shutil.which("supervisorctl") or "/usr/bin/supervisorctl"
CLK_TCK = os.sysconf("SC_CLK_TCK")


# ------------------------------------------------------------------ probes

def raw_get(port, path, timeout=5.0):
    """Body of `GET PATH` (HTTP/1.0) on 127.0.0.1:PORT, or None when refused/failed."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(("127.0.0.1", port))
        s.sendall(b"GET %s HTTP/1.0\r\n\r\n" % path.encode())
        chunks = []
        while True:
            b = s.recv(65536)
            if not b:
                break
            chunks.append(b)
        data = b"".join(chunks)
        if not data.startswith(b"HTTP/1.") or b" 200 " not in data[:16]:
            return None
        return data.split(b"\r\n\r\n", 1)[1]
    except OSError:
        return None
    finally:
        s.close()


def worker_pid(port):
    """The pid a worker reports on its port's /status, or None."""
    body = raw_get(port, "/status")
    try:
        return json.loads(body)["pid"] if body else None
    except (ValueError, KeyError):
        return None


def wait_new_pid(port, old, timeout):
    """Poll PORT until its worker answers with a pid other than OLD; that pid."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        pid = worker_pid(port)
        if pid and pid != old:
            return pid
        time.sleep(0.0005)
    raise RuntimeError("port %d: no new worker within %.0f s" % (port, timeout))


def all_answering(ports, timeout, alive_fn=None, interval=0.1):
    """Seconds until every port of PORTS answers GET /health, polled in rounds of
    non-blocking connects (one socket per port still waiting); ALIVE_FN says
    whether the manager still runs."""
    t0 = time.monotonic()
    pending = set(ports)
    while pending:
        if alive_fn and not alive_fn():
            raise RuntimeError("the manager exited")
        if time.monotonic() - t0 > timeout:
            raise RuntimeError("%d of %d ports not answering after %.0f s"
                               % (len(pending), len(ports), timeout))
        pending -= health_round(pending, 0.5)
        if pending:
            time.sleep(interval)
    return time.monotonic() - t0


def health_round(ports, wait):
    """The ports of PORTS that answer GET /health within WAIT seconds (all at once)."""
    sel = selectors.DefaultSelector()
    socks = {}
    for p in ports:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        if s.connect_ex(("127.0.0.1", p)) not in (0, 115):   # 115: EINPROGRESS
            s.close()
            continue
        socks[s] = [p, b"", False]
        sel.register(s, selectors.EVENT_WRITE)
    ok = set()
    end = time.monotonic() + wait
    while socks and time.monotonic() < end:
        for key, ev in sel.select(max(0.0, end - time.monotonic())):
            s = key.fileobj
            st = socks[s]
            try:
                if ev & selectors.EVENT_WRITE and not st[2]:
                    s.send(b"GET /health HTTP/1.0\r\n\r\n")
                    st[2] = True
                    sel.modify(s, selectors.EVENT_READ)
                    continue
                b = s.recv(4096)
            except OSError:
                b = b""
            if b:
                st[1] += b
                continue
            if st[1].startswith(b"HTTP/1.") and b" 200 " in st[1][:16]:
                ok.add(st[0])
            sel.unregister(s)
            s.close()
            del socks[s]
    for s in socks:
        s.close()
    sel.close()
    return ok


def run_seconds(pids):
    """CPU time of PIDS in seconds from the scheduler's own nanosecond count
    (/proc/PID/task/*/schedstat), else utime+stime. Ticks are charged whole
    to whoever runs when the timer fires, and an idle worker wakes exactly on
    a timer: over 1,000 idle workers ticks read ~1.4x the scheduler's count."""
    total = 0
    for pid in pids:
        try:
            for tid in os.listdir("/proc/%d/task" % pid):
                with open("/proc/%d/task/%s/schedstat" % (pid, tid)) as f:
                    total += int(f.read().split()[0])
        except (OSError, IndexError, ValueError):
            return ticks(pids)
    return total / 1e9


def ticks(pids):
    """utime+stime of PIDS in seconds (gone processes count 0)."""
    total = 0
    for pid in pids:
        try:
            with open("/proc/%d/stat" % pid, "rb") as f:
                rest = f.read().decode("latin-1").rsplit(")", 1)[1].split()
            total += int(rest[11]) + int(rest[12])
        except (OSError, IndexError):
            pass
    return total / CLK_TCK


def rss_mib(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def alive(pid):
    """True while PID exists and is not a zombie."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            return f.read().decode("latin-1").rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_gone(pids, timeout):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if not any(alive(p) for p in pids):
            return True
        time.sleep(0.005)
    return False


# ------------------------------------------------------------------ managers

class Manager:
    """One process manager running BOTS = [(id, port)] of hive-worker in DIR."""

    name = "?"

    def __init__(self, env, dirpath, bots):
        self.env, self.dir, self.bots = env, dirpath, bots
        self.ports = [p for _, p in bots]
        self.proc = None
        self.log = open(os.path.join(dirpath, "manager.out"), "ab")

    def worker_argv(self, bid, port):
        return [self.env.worker_bin, bid, "--port", str(port), "--work-dir", self.dir,
                "--adapter-type", "mock"]

    def run(self, args, timeout=120, **kw):
        return subprocess.run(args, stdin=subprocess.DEVNULL, stdout=self.log,
                              stderr=subprocess.STDOUT, timeout=timeout, **kw)

    def worker_pids(self):
        """The pid each bot's port reports (None for a bot that does not answer)."""
        return [worker_pid(p) for p in self.ports]

    def manager_alive(self):
        return self.proc is None or self.proc.poll() is None

    def close(self):
        """Stop everything this manager started, bounded; by pid only."""
        pids = [p for p in self.worker_pids_cached if p] if hasattr(self, "worker_pids_cached") else []
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        for p in pids:
            if alive(p):
                try:
                    os.kill(p, signal.SIGKILL)
                except OSError:
                    pass
        self.log.close()


class HiveManager(Manager):
    name = "hive"

    def start(self):
        lines = ["hive: {name: peers, work_dir: ., listen: 127.0.0.1:%d}" % self.env.listen_port,
                 "defaults:", "  mode: hybrid", "  adapter: {type: mock}",
                 "  restart: {policy: always, max_restarts: 1000, window: 60}", "bots:"]
        for bid, port in self.bots:
            lines += ["  - id: %s" % bid, "    port: %d" % port]
        self.yaml = os.path.join(self.dir, "hive.yaml")
        with open(self.yaml, "w") as f:
            f.write("\n".join(lines) + "\n")
        # Its READY=1 (sent once every autostart bot runs) comes to a socket
        # of ours, as to systemd's: polling a 1,000-bot /status every 50 ms
        # instead cost the supervisor ~7 ms and python ~5 ms a call, load on
        # the very two cores whose up is measured.
        self.notify_path = os.path.join(self.dir, "notify.sock")
        if os.path.exists(self.notify_path):  # an earlier up in this folder
            os.unlink(self.notify_path)
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(self.notify_path)
        self.ready = False
        env = dict(os.environ, NOTIFY_SOCKET=self.notify_path)
        self.proc = subprocess.Popen([self.env.hive_bin, "up", "-f", self.yaml], cwd=self.dir,
                                     stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=subprocess.STDOUT, env=env)

    def manager_pids(self):
        return [self.proc.pid]

    def all_running(self):
        """True once the supervisor said READY=1 (waiting up to 50 ms for it)
        and its own /status says every bot is running."""
        if not self.ready:
            self.notify.settimeout(0.05)
            try:
                self.ready = b"READY=1" in self.notify.recv(4096).split(b"\n")
            except (socket.timeout, BlockingIOError):
                return False
            if not self.ready:
                return False
        body = raw_get(self.env.listen_port, "/status", 2.0)
        try:
            return bool(body) and json.loads(body)["hive"]["bots_running"] == len(self.bots)
        except (ValueError, KeyError):
            return False

    def close(self):
        super().close()
        if getattr(self, "notify", None):
            self.notify.close()
            self.notify = None

    def stop(self):
        self.run([self.env.hive_bin, "down", "-f", self.yaml], cwd=self.dir)
        self.proc.wait(120)


class Supervisord(Manager):
    name = "supervisord"

    def start(self):
        self.conf = os.path.join(self.dir, "supervisord.conf")
        sock = os.path.join(self.dir, "supervisor.sock")
        logs = os.path.join(self.dir, "logs")
        os.makedirs(logs, exist_ok=True)
        out = ["[unix_http_server]", "file=%s" % sock, "",
               "[supervisord]", "nodaemon=true", "logfile=%s/supervisord.log" % logs,
               "pidfile=%s/supervisord.pid" % self.dir, "childlogdir=%s" % logs,
               "minfds=%d" % (4 * len(self.bots) + 1024), "",
               "[rpcinterface:supervisor]",
               "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
               "", "[supervisorctl]", "serverurl=unix://%s" % sock, ""]
        for bid, port in self.bots:
            # startsecs=0: RUNNING as soon as it is spawned (supervisord's
            # default waits 1 s); the judge is the port answering anyway.
            out += ["[program:%s]" % bid, "command=%s" % " ".join(self.worker_argv(bid, port)),
                    "directory=%s" % self.dir, "autostart=true", "autorestart=true",
                    "startsecs=0", "startretries=1000", "stopwaitsecs=10",
                    "stdout_logfile=%s/%s.log" % (logs, bid), "redirect_stderr=true", ""]
        with open(self.conf, "w") as f:
            f.write("\n".join(out))
        self.proc = subprocess.Popen([SUPERVISORD, "-c", self.conf], cwd=self.dir,
                                     stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=subprocess.STDOUT)

    def manager_pids(self):
        return [self.proc.pid]

    def all_running(self):
        return True

    def stop(self):
        self.run([SUPERVISORCTL, "-c", self.conf, "shutdown"], timeout=300)
        self.proc.wait(300)


class PM2(Manager):
    name = "PM2"

    def start(self):
        self.home = os.path.join(self.dir, "pm2-home")
        os.makedirs(self.home, exist_ok=True)
        self.penv = dict(os.environ, PM2_HOME=self.home, PM2_DISCRETE_MODE="true")
        apps = [{"name": bid, "script": self.env.worker_bin,
                 "args": self.worker_argv(bid, port)[1:], "interpreter": "none",
                 "cwd": self.dir, "autorestart": True, "restart_delay": 0,
                 "max_restarts": 1000, "min_uptime": 0,
                 "out_file": os.path.join(self.home, "%s.log" % bid),
                 "error_file": os.path.join(self.home, "%s.log" % bid)} for bid, port in self.bots]
        self.eco = os.path.join(self.dir, "ecosystem.json")
        with open(self.eco, "w") as f:
            json.dump({"apps": apps}, f)
        # `pm2 start` starts the daemon (God) and returns once it has launched the apps.
        self.run([PM2_BIN, "start", self.eco], env=self.penv, timeout=600)

    def manager_pids(self):
        try:
            with open(os.path.join(self.home, "pm2.pid")) as f:
                return [int(f.read().strip())]
        except (OSError, ValueError):
            return []

    def all_running(self):
        return True

    def stop(self):
        self.run([PM2_BIN, "kill"], env=self.penv, timeout=600)

    def close(self):
        pids = self.manager_pids()
        super().close()
        for p in pids:
            if alive(p):
                try:
                    os.kill(p, signal.SIGKILL)
                except OSError:
                    pass


# ------------------------------------------------------------------ environment

class Env:
    """Binaries, run folder and the helpers' settings shared by every row."""

    def __init__(self, run_dir, build_dir, connloop, quick, base_port=21000):
        self.run_dir = run_dir
        # Ports used: base-10 .. base+max size (below the ephemeral range by
        # default); two benches at once need different bases.
        self.base_port = base_port
        self.worker_bin = os.path.join(build_dir, "worker", "hive-worker")
        self.hive_bin = os.path.join(build_dir, "supervisor", "hive")
        self.connloop = connloop
        self.quick = quick
        self.listen_port = base_port - 1

    def reasons(self):
        """{manager: reason it is skipped} for the peers that are not installed."""
        out = {}
        if not os.access(SUPERVISORD, os.X_OK):
            out["supervisord"] = "supervisord not installed (scripts/deps bench)"
        if not os.access(PM2_BIN, os.X_OK):
            out["PM2"] = "bench/node_modules has no pm2 (scripts/deps bench)"
        if not os.access(self.hive_bin, os.X_OK):
            out["hive"] = "build/supervisor/hive is not built"
        return out

    def folder(self, name):
        d = os.path.join(self.run_dir, name)
        os.makedirs(d, exist_ok=True)
        return d


MANAGERS = (HiveManager, PM2, Supervisord)


def start_manager(env, cls, tag, bots, timeout):
    """A started manager whose bots all answer; (manager, seconds to that)."""
    m = cls(env, env.folder("%s-%s" % (cls.name, tag)), bots)
    t0 = time.monotonic()
    try:
        m.start()
        end = t0 + timeout
        # hive's own word first (its /status, every 50 ms): a round of
        # connects to every port is load of its own on the machine measured.
        while not m.all_running():
            if time.monotonic() > end or not m.manager_alive():
                raise RuntimeError("%s: not all running after %.0f s" % (cls.name, timeout))
            time.sleep(0.05)
        all_answering(m.ports, max(1.0, end - time.monotonic()), m.manager_alive)
        up = time.monotonic() - t0
        m.worker_pids_cached = m.worker_pids()
        return m, up
    except BaseException:
        m.close()
        raise


# ------------------------------------------------------------------ restart

def floor_start(env, port, times):
    """Spawn → /health answering of the bare worker, TIMES starts; ms each."""
    out = []
    d = env.folder("floor")
    for i in range(times):
        t0 = time.monotonic()
        p = subprocess.Popen([env.worker_bin, "FLOOR", "--port", str(port), "--work-dir", d,
                              "--adapter-type", "mock"], stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            while raw_get(port, "/health") is None:
                if p.poll() is not None or time.monotonic() - t0 > 10:
                    raise RuntimeError("bare worker did not answer (exit %s)" % p.poll())
                time.sleep(0.0002)
            out.append((time.monotonic() - t0) * 1e3)
        finally:
            p.kill()
            p.wait(5)
    return out


def restart_kills(env, m, kills, spacing):
    """SIGKILL the first bot's worker KILLS times; (ms to a new pid each, connloop)."""
    port = m.ports[0]
    loop = subprocess.Popen([env.connloop, str(port), "900"], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)
    times = []
    try:
        time.sleep(0.2)
        for _ in range(kills):
            old = worker_pid(port)
            if not old:
                old = wait_new_pid(port, None, 30)
            t0 = time.monotonic()
            os.kill(old, signal.SIGKILL)
            wait_new_pid(port, old, 30)
            times.append((time.monotonic() - t0) * 1e3)
            time.sleep(spacing)
    finally:
        loop.send_signal(signal.SIGTERM)
        out = loop.communicate(timeout=15)[0]
    return times, json.loads(out.decode().strip().splitlines()[-1])


def pct(values, q):
    """The Q-quantile of VALUES (nearest rank)."""
    v = sorted(values)
    return v[min(len(v) - 1, max(0, int(round(q * (len(v) - 1)))))]


def m_restart(env, res, log, mid="9"):
    """Restart after SIGKILL, side by side, with the bare worker as the floor."""
    kills = int(os.environ.get("PEERS_KILLS", 0)) or (3 if env.quick else 20)
    spacing = 0.3 if env.quick else 10.5
    skip = env.reasons()
    fl = floor_start(env, env.base_port - 10, 5 if env.quick else 20)
    floor50 = statistics.median(fl)
    res.figure(mid, "bare hive-worker: spawn → /health answers (%d starts) p50" % len(fl), "ms",
               [floor50], "p90 %.1f ms" % pct(fl, 0.9))
    p50 = {}
    for cls in MANAGERS:
        if cls.name in skip:
            res.skip(mid, "%s restart" % cls.name, skip[cls.name])
            continue
        log("%s: %s, %d SIGKILLs %.1f s apart" % (mid, cls.name, kills, spacing))
        m, _ = start_manager(env, cls, "restart", [("R001", env.base_port - 9)], 60)
        try:
            times, cl = restart_kills(env, m, kills, spacing)
        finally:
            try:
                m.stop()
            except Exception:   # noqa: BLE001 - close() below is the bound
                pass
            m.close()
        p50[cls.name] = statistics.median(times)
        res.figure(mid, "%s: kill → port answers with a new pid, p50" % cls.name, "ms",
                   [p50[cls.name]], "p90 %.1f ms; refused %d, reset %d, answered %d; each: %s"
                   % (pct(times, 0.9), cl["refused"], cl["reset"], cl["ok"],
                      " ".join("%.1f" % t for t in times)))
        if cls.name == "hive":
            res.target(mid, "hive: refused connections", [cl["refused"]], "<=", 0, "count")
    if "hive" in p50 and env.quick:
        # 0.3 s apart, hive's restart backoff (SPEC 6.2) is what shows: no target.
        res.figure(mid, "hive restart p50 − bare start p50 (quick: backoff included)", "ms",
                   [p50["hive"] - floor50])
    elif "hive" in p50:
        res.target(mid, "hive restart p50 − bare start p50", [p50["hive"] - floor50], "<=", 2.0,
                   "ms")
        peers = [v for k, v in p50.items() if k != "hive"]
        if peers:
            res.target(mid, "hive restart p50 / faster peer's", [p50["hive"] / min(peers)],
                       "<=", 0.5, "x")


# ------------------------------------------------------------------ scale

def scale_one(env, cls, n, idle_s, bound):
    """One manager with N bots: dict of up, rss, idle CPU, down."""
    bots = [("S%04d" % i, env.base_port + 1 + i) for i in range(n)]
    m, up = start_manager(env, cls, "scale%d" % n, bots, bound)
    try:
        mpids = m.manager_pids()
        wpids = [p for p in m.worker_pids_cached if p]
        rss = sum(rss_mib(p) or 0 for p in mpids)
        # CPU seconds the manager spent to get there (it started with the
        # run): the steadier figure on a shared machine than the wall time.
        cpu_up = ticks(mpids)
        # Idle is what a hive costs once it has settled: the workers read their
        # queues' headers after READY=1, so the window starts a little later.
        time.sleep(1.0 if env.quick else 5.0)
        c0 = run_seconds(mpids + wpids)
        time.sleep(idle_s)
        idle = (run_seconds(mpids + wpids) - c0) / idle_s * 100
        t0 = time.monotonic()
        m.stop()
        if not wait_gone(wpids + mpids, bound):
            raise RuntimeError("%s: workers still alive %.0f s after stop" % (cls.name, bound))
        down = time.monotonic() - t0
    finally:
        m.close()
    # The same bots up again in the same folder: what an operator's next
    # `up` costs, once the manager's files of each bot exist (a first start
    # also makes them: 13 inodes a bot for hive, on a file system where each
    # new inode may cost far more than the start itself; bench/README.md).
    m, again = start_manager(env, cls, "scale%d" % n, bots, bound)
    try:
        pids = m.manager_pids() + [p for p in m.worker_pids_cached if p]
        m.stop()
        if not wait_gone(pids, bound):
            raise RuntimeError("%s: workers still alive %.0f s after stop" % (cls.name, bound))
    finally:
        m.close()
    return {"up": up, "rss": rss, "idle": idle, "down": down, "cpu_up": cpu_up, "again": again}


def m_scale(env, res, log, mid="10"):
    """N = 200, 500, 1,000 bots under each manager (quick: 50)."""
    sizes = getattr(env, "sizes", None) or ([50] if env.quick else [200, 500, 1000])
    idle_s = 2 if env.quick else 30
    bound = 60 if env.quick else 180
    skip = env.reasons()
    for cls in MANAGERS:
        if cls.name in skip:
            res.skip(mid, "%s scale" % cls.name, skip[cls.name])
            continue
        slow = None
        for n in sizes:
            if slow:
                res.skip(mid, "%s, %d bots" % (cls.name, n), slow)
                continue
            log("%s: %s with %d bots" % (mid, cls.name, n))
            try:
                r = scale_one(env, cls, n, idle_s, bound)
            except Exception as e:   # noqa: BLE001 - one manager's failure is a row
                res.skip(mid, "%s, %d bots" % (cls.name, n), "did not finish: %s" % e)
                slow = "skipped after %d bots did not finish" % n
                continue
            name = "%s, %d bots" % (cls.name, n)
            if cls.name == "hive" and n == 1000:
                res.target(mid, name + ": up → all running (first up, new work dir)", [r["up"]],
                           "<", 1.5, "s")
                res.target(mid, name + ": up again → all running (same work dir)", [r["again"]],
                           "<", 1.5, "s")
                res.target(mid, name + ": supervisor RSS", [r["rss"]], "<", 20.0, "MiB")
                res.target(mid, name + ": idle CPU, manager + workers", [r["idle"]], "<", 1.0,
                           "% of a core")
                res.target(mid, name + ": down", [r["down"]], "<", 2.0, "s")
            else:
                res.figure(mid, name + ": up → all answering", "s", [r["up"]],
                           "load average %.1f" % os.getloadavg()[0])
                res.figure(mid, name + ": up again → all answering (same folder)", "s",
                           [r["again"]])
                res.figure(mid, name + ": manager RSS", "MiB", [r["rss"]])
                res.figure(mid, name + ": idle CPU, manager + workers", "% of a core",
                           [r["idle"]])
                res.figure(mid, name + ": down", "s", [r["down"]])
            res.figure(mid, name + ": manager CPU from start to all up", "s", [r["cpu_up"]])
            if cls.name != "hive" and r["up"] + r["down"] > 60 and not env.quick:
                slow = "skipped: %d bots took %.0f s up + %.0f s down" % (n, r["up"], r["down"])


def run_all(env, res, log, only):
    """The rows of measurements 9 (restart) and 10 (scale) that ONLY asks for."""
    for mid, fn in (("9", m_restart), ("10", m_scale)):
        if mid in only:
            try:
                fn(env, res, log, mid)
            except Exception as e:   # noqa: BLE001 - a failure is recorded, the bench goes on
                res.fail("%s peers" % mid, "%s: %s" % (type(e).__name__, e))


class _Rows:
    """Prints rows as they come, for running this module by itself."""

    def figure(self, mid, name, unit, values, note=""):
        print("%s | %s | %s %s | %s" % (mid, name, " ".join("%.2f" % v for v in values), unit, note),
              flush=True)

    def target(self, mid, name, values, op, limit, unit="x", note=""):
        self.figure(mid, name, unit, values, "target %s %g %s" % (op, limit, note))

    def skip(self, mid, what, reason):
        print("%s | %s | skipped: %s" % (mid, what, reason), flush=True)

    def fail(self, what, err):
        print("FAILED %s: %s" % (what, err), flush=True)


def main():
    """bench/peers.py [--quick] [--only 9,10] [--managers hive,PM2,supervisord] [--sizes 200,500]"""
    import argparse
    import sys
    import tempfile
    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", default="9,10")
    ap.add_argument("--managers", default="hive,PM2,supervisord")
    ap.add_argument("--sizes", help="bot counts of 10 (default 200,500,1000; quick 50)")
    ap.add_argument("--build-dir", default=os.path.join(os.path.dirname(HERE), "build"))
    ap.add_argument("--connloop", default=None)
    ap.add_argument("--base-port", type=int, default=21000,
                    help="ports base-10 .. base+N are used (default 21000)")
    a = ap.parse_args()
    global MANAGERS
    MANAGERS = tuple(c for c in (HiveManager, PM2, Supervisord) if c.name in a.managers.split(","))
    run = tempfile.mkdtemp(prefix="hive-peers-")
    connloop = a.connloop or os.path.join(a.build_dir, "bench", "connloop")
    if not os.access(connloop, os.X_OK):
        connloop = os.path.join(run, "connloop")
        subprocess.run(["cc", "-O2", "-o", connloop, os.path.join(HERE, "connloop.c")], check=True)
    env = Env(run, os.path.abspath(a.build_dir), connloop, a.quick, a.base_port)
    if a.sizes:
        env.sizes = [int(x) for x in a.sizes.split(",")]
    try:
        run_all(env, _Rows(), lambda m: sys.stderr.write("[peers] %s\n" % m), set(a.only.split(",")))
    finally:
        shutil.rmtree(run, True)


if __name__ == "__main__":
    main()
