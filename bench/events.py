"""bench/events.py: scripts/bench's rows of issue 11 (events, timeline, metrics, pages).

Imported by scripts/bench, which calls run(bench, run_dir, settings, results,
only) with its own module as BENCH (its Hive, Worker, Procs, cpu_seconds,
log, ... are reused, not copied). The rows, all with id "E" + a letter:

  E1 fan-out: 1,000 SSE subscribers (bench/sseload.c, epoll) on the
     supervisor's /api/events?type=task_output; a `cli` bot runs
     bench/ticker.py, whose every line carries its write time, so the delay
     adapter write → each subscriber's receipt is exact. In the same run
     node `ws` (bench/ws-broadcast.js) broadcasts the same messages to 1,000
     WebSocket clients (sseload -w): CPU per delivered event side by side.
     Then 10,000 subscribers: delay and supervisor memory per subscriber.
  E2 event overhead: mock tasks/s on one worker with 100 subscribers of its
     /api/events attached vs none, alternating in the same run.
  E3 timeline: build/bench/bench-timeline (bench/timeline.c) at 1,000,000
     entries (--quick: 20,000): a filtered page of 100, the index rebuild.
  E4 /metrics of 1,000 running mock bots (--quick: 100) under a real
     `hive up` (ports below the ephemeral range), one task each: supervisor
     CPU per scrape, and its memory and fds at that size.
  E5 dashboard: tests/browser/pages.mjs `bench` scenario in headless
     Chromium against a hive of 200 bots: first render (Performance API) and
     event → visible in the page. Skipped, with the reason, without
     Chromium or playwright-core.

Every process is started through BENCH.Procs and stopped by its pid.
"""

import http.client
import json
import os
import resource
import select
import shutil
import socket
import subprocess
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
IDS = {"E1", "E2", "E3", "E4", "E5"}


class Sizes:
    """The loads of these rows; --quick keeps them all under a minute."""

    def __init__(self, quick):
        self.fan_subs = 200 if quick else 1000
        self.fan_big = 2000 if quick else 10000
        self.fan_ticks = 40 if quick else 250
        self.fan_gap_ms = 20
        self.fan_reps = 1 if quick else 3
        self.over_subs = 100
        self.over_reps = 1 if quick else 5  # a median of 5 pairs: one pair swings 0.6-1.5x here
        # conns, window, rounds each: the rounds are a ceiling, the seconds
        # end the load (quick: 25 rounds were 100 tasks, ~40 ms of work, a
        # ratio of noise and CPU figures of 10 ms clock ticks)
        self.over_load = (4, 16, 2500)
        self.over_seconds = 1.5 if quick else 6
        self.tl_entries = 20000 if quick else 1000000
        self.metrics_bots = 100 if quick else 1000
        self.metrics_scrapes = 20 if quick else 100
        self.page_bots = 200
        self.page_events = 5 if quick else 20


# ------------------------------------------------------------------ helpers

def raise_nofile():
    """The soft RLIMIT_NOFILE up to the hard one: 10,000 subscribers need it,
    here and in the processes started from here (the supervisor raises its
    own as well)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def compile_sseload(B):
    """cc -O2 bench/sseload.c into build/bench/ (when out of date)."""
    src, out = os.path.join(HERE, "sseload.c"), os.path.join(B.BENCH_BIN, "sseload")
    if os.path.exists(out) and os.path.getmtime(out) >= os.path.getmtime(src):
        return out
    r = subprocess.run(["cc", "-O2", "-Wall", "-Wextra", "-D_GNU_SOURCE", "-o", out, src],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if r.returncode != 0:
        raise RuntimeError("cannot compile %s: %s" % (src, r.stdout.decode()[-2000:]))
    return out


def ws_modules():
    """None when bench/node_modules has the pinned ws (installed now with
    npm ci when missing), else why the node reference cannot run."""
    if not shutil.which("node") or not shutil.which("npm"):
        return "no node/npm (scripts/deps browser installs them)"
    with open(os.path.join(HERE, "package-lock.json")) as f:
        want = json.load(f)["packages"]["node_modules/ws"]["version"]
    have = None
    try:
        with open(os.path.join(HERE, "node_modules", "ws", "package.json")) as f:
            have = json.load(f)["version"]
    except (OSError, ValueError, KeyError):
        pass
    if have != want:
        r = subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--ignore-scripts"],
                           cwd=HERE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=300)
        if r.returncode != 0:
            return "npm ci in bench/ failed: " + r.stdout.decode()[-300:]
    return None


class Sub:
    """One sseload process: N subscribers, READY once all are connected."""

    def __init__(self, B, exe, port, path, conns, ticks, timeout, ws=False, log_path=None):
        args = [exe] + (["-w"] if ws else []) + [str(port), path, str(conns), str(ticks),
                                                 str(timeout)]
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=open(log_path or os.devnull, "ab"))
        B.Procs.live.append(self.proc)
        self.B = B
        line = self._line(max(30.0, conns / 200.0))
        if line != "READY":
            B.Procs.stop(self.proc)
            raise RuntimeError("sseload %d subscribers on :%d%s: %r" % (conns, port, path, line))

    def _line(self, timeout):
        end = time.monotonic() + timeout
        buf = b""
        while time.monotonic() < end:
            r, _, _ = select.select([self.proc.stdout], [], [], 0.2)
            if r:
                c = os.read(self.proc.stdout.fileno(), 1)
                if not c:
                    break
                if c == b"\n":
                    return buf.decode()
                buf += c
        return buf.decode() or None

    def result(self, timeout, stop=False):
        """Its JSON report (after SIGTERM when STOP)."""
        if stop:
            self.proc.terminate()
        try:
            out, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.B.Procs.stop(self.proc)
            raise RuntimeError("sseload did not finish")
        try:
            return json.loads(out.decode().strip().splitlines()[-1])
        except (IndexError, ValueError):
            raise RuntimeError("sseload said %r" % out[-300:])


def post_task(port, bot, task_id, command="go"):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("POST", "/bots/%s/api/task" % bot,
              json.dumps({"command": command, "task_id": task_id}),
              {"Content-Type": "application/json"})
    r = c.getresponse()
    body = r.read()
    c.close()
    if r.status != 202:
        raise RuntimeError("POST task: %d %s" % (r.status, body[:200]))


def make_hive(B, run, name, bots, bot_yaml="", hive_yaml="", start_timeout=60.0, listen=None,
              running=None):
    """BENCH.Hive with lines added under `hive:` (limits) and `defaults:`.
    LISTEN: a port taken with the bots' in one free_ports() call (two calls
    may hand out the same port). RUNNING: how many bots to wait for (all)."""
    class EventsHive(B.Hive):
        def __init__(self):
            self.dir = run.mkdir(name)
            self.listen = listen or B.free_ports(1)[0]
            self.bot_ids = [b for b, _ in bots]
            lines = ["hive:", "  name: bench", "  work_dir: .",
                     "  listen: 127.0.0.1:%d" % self.listen]
            lines += ["  " + l for l in hive_yaml.splitlines() if l.strip()]
            lines += ["defaults:", "  mode: hybrid", "  queue_max: 1000000",
                      "  restart: {policy: always, max_restarts: 100, window: 60}"]
            lines += ["  " + l for l in (bot_yaml or "adapter: {type: mock}").splitlines()
                      if l.strip()]
            lines.append("bots:")
            for bid, port in bots:
                lines += ["  - id: %s" % bid, "    port: %d" % port]
            self.yaml = os.path.join(self.dir, "hive.yaml")
            with open(self.yaml, "w") as f:
                f.write("\n".join(lines) + "\n")
            self.worker_ids = {}
            self.t_spawn = time.monotonic()
            self.proc = B.Procs.spawn([B.HIVE_BIN, "up", "-f", self.yaml],
                                      os.path.join(self.dir, "hive.out"), cwd=self.dir)
            self.pid = self.proc.pid
            self.conn = None
            try:
                self.up_seconds = self.wait_running(len(bots) if running is None else running,
                                                    start_timeout, 0.05)
            except Exception:
                self.stop()
                raise
    return EventsHive()


def pct(values, p):
    v = sorted(values)
    return v[min(len(v) - 1, int(p / 100.0 * (len(v) - 1) + 0.5))] if v else None


# ------------------------------------------------------------------ E1 fan-out

def fan_hive_once(B, h, exe, n, z, tag):
    """N subscribers on the supervisor, one ticker task: (report, cpu s, rss KiB delta)."""
    rss0 = B.rss_kib(h.pid) or 0
    sub = Sub(B, exe, h.listen, "/api/events?type=task_output", n, z.fan_ticks,
              60 + n / 100.0, log_path=os.path.join(h.dir, "sseload.log"))
    try:
        time.sleep(0.3)
        rss1 = B.rss_kib(h.pid) or 0
        c0 = B.cpu_seconds([h.pid])
        post_task(h.listen, B.BOT, "FANOUT-%s" % tag)
        r = sub.result(60 + z.fan_ticks * z.fan_gap_ms / 1000.0 * 4 + n / 100.0)
        cpu = B.cpu_seconds([h.pid]) - c0
    finally:
        B.Procs.stop(sub.proc)
    if r["ticks_everyone"] < z.fan_ticks:
        raise RuntimeError("%d subscribers: only %d of %d ticks reached every one (%s)"
                           % (n, r["ticks_everyone"], z.fan_ticks, json.dumps(r)))
    return r, cpu, rss1 - rss0


def fan_node_once(B, run, exe, n, z):
    """The same ticks broadcast by node ws to N clients: (report, node cpu s)."""
    d = run.mkdir("ws-broadcast")
    port = B.free_ports(1)[0]
    node = subprocess.Popen(["node", os.path.join(HERE, "ws-broadcast.js"), str(port)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=open(os.path.join(d, "node.log"), "ab"), cwd=HERE)
    B.Procs.live.append(node)
    ticker = None
    try:
        r, _, _ = select.select([node.stdout], [], [], 20)
        if not r or b"LISTENING" not in node.stdout.readline():
            raise RuntimeError("ws-broadcast.js did not start: " + B.tail(os.path.join(d, "node.log")))
        sub = Sub(B, exe, port, "/", n, z.fan_ticks, 60 + n / 100.0, ws=True,
                  log_path=os.path.join(d, "sseload.log"))
        try:
            time.sleep(0.3)
            c0 = B.cpu_seconds([node.pid])
            ticker = subprocess.Popen(["/usr/bin/python3", os.path.join(HERE, "ticker.py"),
                                       str(z.fan_ticks), str(z.fan_gap_ms), "--json", B.BOT],
                                      stdin=subprocess.DEVNULL, stdout=node.stdin)
            B.Procs.live.append(ticker)
            rep = sub.result(60 + z.fan_ticks * z.fan_gap_ms / 1000.0 * 4 + n / 100.0)
            cpu = B.cpu_seconds([node.pid]) - c0
        finally:
            B.Procs.stop(sub.proc)
    finally:
        if ticker:
            B.Procs.stop(ticker)
        B.Procs.stop(node)
    if rep["ticks_everyone"] < z.fan_ticks:
        raise RuntimeError("node ws: only %d of %d ticks reached every client"
                           % (rep["ticks_everyone"], z.fan_ticks))
    return rep, cpu


def e1_fanout(B, run, s, res, z):
    exe = compile_sseload(B)
    hard = raise_nofile()
    why_node = ws_modules()
    ticker = "[/usr/bin/python3, %s, '%d', '%d']" % (os.path.join(HERE, "ticker.py"),
                                                      z.fan_ticks, z.fan_gap_ms)
    ports = B.free_ports(2)
    h = make_hive(B, run, "fanout", [(B.BOT, ports[1])], listen=ports[0],
                  bot_yaml="adapter: {type: cli, command: %s}" % ticker,
                  hive_yaml="limits: {max_connections: %d}" % (z.fan_big + 100))
    last99, deliv99, cpu_us, node_us, node99 = [], [], [], [], []
    try:
        for rep in range(z.fan_reps):
            B.log("E1: fan-out %d subscribers, rep %d/%d" % (z.fan_subs, rep + 1, z.fan_reps))
            r, cpu, _ = fan_hive_once(B, h, exe, z.fan_subs, z, "%d" % rep)
            last99.append(r["last_p99_ms"])
            deliv99.append(r["delivery_p99_ms"])
            cpu_us.append(cpu / r["deliveries"] * 1e6)
            if why_node is None:
                B.log("E1: node ws broadcast to %d clients, rep %d/%d"
                      % (z.fan_subs, rep + 1, z.fan_reps))
                nr, ncpu = fan_node_once(B, run, exe, z.fan_subs, z)
                node_us.append(ncpu / nr["deliveries"] * 1e6)
                node99.append(nr["last_p99_ms"])
        big = None
        if z.fan_big + 200 <= hard:   # the client and the supervisor: one each
            B.log("E1: fan-out %d subscribers" % z.fan_big)
            big = fan_hive_once(B, h, exe, z.fan_big, z, "big")
    finally:
        h.stop()
    n, t = z.fan_subs, z.fan_ticks
    res.target("E1", "fan-out: cli adapter line → last of %d SSE subscribers p99 (%d ticks %d ms "
               "apart)" % (n, t, z.fan_gap_ms), last99, "<=", 25.0, "ms")
    res.figure("E1", "fan-out: every delivery p99, %d subscribers" % n, "ms", deliv99)
    res.figure("E1", "supervisor CPU per delivered event, %d subscribers" % n, "µs/msg", cpu_us)
    if why_node is None:
        res.figure("E1", "node ws broadcast (bench/ws-broadcast.js), same ticks: CPU per "
                   "delivered message, %d clients" % n, "µs/msg", node_us)
        res.figure("E1", "node ws: ticker line → last of %d clients p99" % n, "ms", node99)
        res.target("E1", "supervisor CPU per event ÷ node ws'", [
            B.ratio(a, b) for a, b in zip(cpu_us, node_us)], "<=", 1.0)
    else:
        res.skip("E1", "node ws broadcast reference", why_node)
    if big:
        r, cpu, rss = big
        res.figure("E1", "fan-out: line → last of %d SSE subscribers p99" % z.fan_big, "ms",
                   [r["last_p99_ms"]])
        res.figure("E1", "supervisor CPU per delivered event, %d subscribers" % z.fan_big,
                   "µs/msg", [cpu / r["deliveries"] * 1e6])
        res.figure("E1", "supervisor memory per subscriber (RSS growth ÷ %d)" % z.fan_big,
                   "KiB", [rss / float(z.fan_big)])
    else:
        res.skip("E1", "%d subscribers" % z.fan_big,
                 "RLIMIT_NOFILE hard limit %d is too low" % hard)


# ------------------------------------------------------------------ E2 overhead

def tmpfs_dir():
    """/dev/shm when it is a tmpfs, else None."""
    try:
        with open("/proc/self/mounts") as f:
            for line in f:
                parts = line.split()
                if len(parts) > 2 and parts[1] == "/dev/shm" and parts[2] == "tmpfs":
                    return "/dev/shm"
    except OSError:
        pass
    return None


def e2_overhead(B, run, s, res, z):
    """The workers' folders on a tmpfs when there is one: the events' cost
    apart from the disk's. On this VM's journal-less root ext4 a file made
    within minutes of mass deletions costs a walk past every freed inode
    (RunDir), and the deletions of the run before moved the bare rate 2.5x
    between runs; on a tmpfs the bare task is also cheaper, so the same
    event cost is a larger share of it.

    On the tmpfs each worker's folder is removed once its run is over: with
    the 10,000 answers of each run before still there, each run was slower
    than the one before (six bare runs in a row: 4,706 → 4,056 tasks/s), so
    the second of a pair was handicapped and 3 of the 5 pairs put the
    subscribers second (the median read ~0.93× for what was ~0.90× with
    each run on an empty tmpfs). Deleting on a tmpfs costs the next run
    nothing; on a disk the folders stay (RunDir)."""
    shm = tmpfs_dir()
    erun = B.RunDir(run.keep, base=shm) if shm else run
    try:
        _e2_overhead(B, erun, res, z, "tmpfs" if shm else "the bench's folder",
                     fresh=bool(shm) and not run.keep)
    finally:
        if erun is not run:
            erun.remove()


def _e2_overhead(B, run, res, z, where, fresh):
    exe = compile_sseload(B)
    bare, subbed, ratios, got = [], [], [], []
    cpu = {0: [], 100: []}
    conns, window, rounds = z.over_load
    for rep in range(z.over_reps):
        pair = {}
        order = (0, 100) if rep % 2 == 0 else (100, 0)    # alternate which goes first
        for n in order:
            B.log("E2: mock tasks with %d subscribers, rep %d/%d" % (n, rep + 1, z.over_reps))
            w = B.Worker(run, "overhead-%d" % n)
            sub = None
            try:
                if n:
                    sub = Sub(B, exe, w.port, "/api/events", n, 1, z.over_seconds + 120,
                              log_path=os.path.join(w.dir, "sseload.log"))
                c0 = B.cpu_seconds([w.pid])
                r = B.wsload(w.port, "/ws", conns, rounds, window, prefix="O%d%d" % (rep, n),
                             duration=z.over_seconds)
                cpu[n].append((B.cpu_seconds([w.pid]) - c0) / max(1, r["responses"]) * 1e6)
                pair[n] = r["rt_per_s"]
                if sub:
                    rep_sub = sub.result(30, stop=True)
                    if rep_sub["subs_lost"] or rep_sub["bytes"] < n * r["responses"] * 100:
                        raise RuntimeError("subscribers did not get the events: %s"
                                           % json.dumps(rep_sub))
                    got.append(rep_sub["bytes"] / float(n))
            finally:
                if sub:
                    B.Procs.stop(sub.proc)
                w.stop()
                if fresh:
                    shutil.rmtree(w.dir, ignore_errors=True)
        bare.append(pair[0])
        subbed.append(pair[100])
        ratios.append(B.ratio(pair[100], pair[0]))
    res.figure("E2", "mock tasks/s, no subscriber (%d conns x %d in flight, up to %g s; "
               "work dirs on %s)" % (conns, window, z.over_seconds, where), "tasks/s", bare)
    res.figure("E2", "mock tasks/s, %d subscribers of the worker's /api/events" % z.over_subs,
               "tasks/s", subbed, "each got %s KiB" % " ".join("%.0f" % (g / 1024) for g in got))
    res.figure("E2", "worker CPU per task, no subscriber", "µs", cpu[0])
    res.figure("E2", "worker CPU per task, %d subscribers" % z.over_subs, "µs", cpu[100])
    res.target("E2", "tasks/s with %d subscribers ÷ without" % z.over_subs, ratios, ">=", 0.9)


# ------------------------------------------------------------------ E3 timeline

def e3_timeline(B, run, s, res, z):
    exe = os.path.join(B.BENCH_BIN, "bench-timeline")
    if not os.access(exe, os.X_OK):
        raise RuntimeError("build/bench/bench-timeline is not built (scripts/build normal)")
    B.log("E3: timeline of %d entries" % z.tl_entries)
    d = run.mkdir("timeline")
    r = subprocess.run([exe, str(z.tl_entries), d], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=3600)
    if r.returncode != 0:
        raise RuntimeError("bench-timeline: %s" % r.stderr.decode()[-500:])
    data = json.loads(r.stdout.decode().strip().splitlines()[-1])
    pages = {(p["query"], p["bots"]): p for p in data["pages"]}
    filt = pages[("source=http&success=false&limit=100", 1)]
    newest = pages[("limit=100", 1)]
    n = "{:,}".format(z.tl_entries)
    res.target("E3", "timeline: filtered page of 100 (source=http&success=false) of %s, median"
               % n, [filt["median_ms"]], "<=", 10.0, "ms", "p99 %.2f ms" % filt["p99_ms"])
    res.figure("E3", "timeline: newest page of 100 of %s, median" % n, "ms",
               [newest["median_ms"]], "p99 %.2f ms" % newest["p99_ms"])
    res.figure("E3", "timeline: index rebuilt from the JSONL of %s entries (%.0f MB)"
               % (n, data["jsonl_bytes"] / 1e6), "ms", [data["rebuild_ms"]])
    res.figure("E3", "timeline: append one entry", "µs", [data["append_us_wall"]])


# ------------------------------------------------------------------ E4 /metrics

def scrape_cpu(B, h, scrapes, idle_s=2.0):
    """Supervisor CPU ms per GET /metrics over SCRAPES, wall ms, series, bytes.
    The supervisor's own background CPU (its workers' watchdog datagrams),
    measured for IDLE_S before, is taken out."""
    i0, t0 = B.cpu_seconds([h.pid]), time.monotonic()
    time.sleep(idle_s)
    idle_rate = (B.cpu_seconds([h.pid]) - i0) / (time.monotonic() - t0)
    c = http.client.HTTPConnection("127.0.0.1", h.listen, timeout=30)
    size = 0
    for _ in range(3):     # warm: the scrape buffer grows once
        c.request("GET", "/metrics")
        size = len(c.getresponse().read())
    c0 = B.cpu_seconds([h.pid])
    t0 = time.monotonic()
    for _ in range(scrapes):
        c.request("GET", "/metrics")
        r = c.getresponse()
        body = r.read()
        if r.status != 200:
            raise RuntimeError("/metrics: %d" % r.status)
    spent = time.monotonic() - t0
    wall = spent / scrapes * 1e3
    cpu = max(0.0, B.cpu_seconds([h.pid]) - c0 - idle_rate * spent) / scrapes * 1e3
    c.close()
    series = sum(1 for line in body.decode().splitlines() if line and line[0] != "#")
    return cpu, wall, series, size


def fixed_ports(n, base=40000):
    """N loopback ports free now, from BASE up, none in the kernel's
    ephemeral range (ip_local_port_range): kernel-chosen ports of other
    programs never collide with them. When BASE..BASE+N would reach into the
    range (on this machine it is 32768-60999), they are taken just below it."""
    lo, hi = (int(x) for x in open("/proc/sys/net/ipv4/ip_local_port_range").read().split())
    if base + n + 200 > lo and base <= hi:
        base = lo - n - 200
    if base < 1024:
        raise RuntimeError("no room for %d ports below the ephemeral range %d-%d" % (n, lo, hi))
    socks, port = [], base
    try:
        while len(socks) < n and port < lo:
            sk = socket.socket()
            sk.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sk.bind(("127.0.0.1", port))
                socks.append(sk)
            except OSError:
                sk.close()     # in use: the next one
            port += 1
        if len(socks) < n:
            raise RuntimeError("only %d free ports in %d..%d" % (len(socks), base, lo - 1))
        return [sk.getsockname()[1] for sk in socks]
    finally:
        for sk in socks:
            sk.close()


def proc_rss_fds(pid):
    """(VmRSS in MiB, open fds, of them on timeline files) of PID."""
    rss = 0.0
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) / 1024.0
    fds = tl = 0
    for fd in os.listdir("/proc/%d/fd" % pid):
        fds += 1
        try:
            tl += "-timeline." in os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            pass
    return rss, fds, tl


def metrics_sum(port, name):
    """The sum of every series of NAME on GET /metrics."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    c.request("GET", "/metrics")
    body = c.getresponse().read().decode()
    c.close()
    return sum(float(line.rsplit(" ", 1)[1]) for line in body.splitlines()
               if line.startswith(name + "{") or line.startswith(name + " "))


def e4_metrics(B, run, s, res, z):
    """1,000 running mock bots (--quick: 100) under a real `hive up`, ports
    below the ephemeral range: all started and running, one task on each so
    every counter series has a value, then the supervisor's CPU per scrape
    (utime+stime over K scrapes ÷ K, its idle rate taken out), and its
    memory and fds at that size (before and after a merged timeline query,
    which opens every bot's timeline and keeps a few)."""
    raise_nofile()
    n = z.metrics_bots
    B.log("E4: /metrics of %d running mock bots (hive up)" % n)
    ports = fixed_ports(n + 1)
    bots = [("BOT-%04d" % (i + 1), p) for i, p in enumerate(ports[1:])]
    h = make_hive(B, run, "metrics-running", bots, start_timeout=max(120.0, n * 0.3),
                  listen=ports[0])
    try:
        up = h.up_seconds
        t0 = time.monotonic()
        for i, (bid, _) in enumerate(bots):
            post_task(h.listen, bid, "E4-%04d" % i)
        deadline = time.monotonic() + 120
        while metrics_sum(h.listen, "hive_tasks_total") < n:
            if time.monotonic() > deadline:
                raise RuntimeError("hive_tasks_total did not reach %d" % n)
            time.sleep(0.5)
        tasks_s = time.monotonic() - t0
        time.sleep(1)   # what the tasks' ends set off settles
        rss, fds, tl = proc_rss_fds(h.pid)
        cpu, wall, series, size = scrape_cpu(B, h, z.metrics_scrapes)
        c = http.client.HTTPConnection("127.0.0.1", h.listen, timeout=60)
        c.request("GET", "/api/timeline?limit=100")
        r = c.getresponse()
        page = json.loads(r.read())
        c.close()
        if r.status != 200 or page["total_count"] != n:
            raise RuntimeError("/api/timeline: %d, total_count %s" % (r.status,
                                                                     page.get("total_count")))
        rss2, fds2, tl2 = proc_rss_fds(h.pid)
    finally:
        h.stop()
    res.target("E4", "/metrics of %d running mock bots (hive up, one task each): supervisor "
               "CPU per scrape" % n, [cpu], "<=", 10.0, "ms",
               "%d series, %.0f KB, %.1f ms wall; all running in %.0f s, %d tasks counted in "
               "%.0f s" % (series, size / 1e3, wall, up, n, tasks_s))
    res.figure("E4", "supervisor of %d running bots: RSS, idle after the tasks" % n, "MiB", [rss],
               "%d fds, %d on timeline files" % (fds, tl))
    res.figure("E4", "supervisor of %d running bots: RSS after a merged /api/timeline" % n,
               "MiB", [rss2], "%d fds, %d on timeline files" % (fds2, tl2))


# ------------------------------------------------------------------ E5 dashboard

def browser_reason():
    browser = os.path.join(ROOT, "tests", "browser")
    if not os.path.exists("/usr/bin/chromium"):
        return "no /usr/bin/chromium (scripts/deps browser)"
    if not os.path.isdir(os.path.join(browser, "node_modules", "playwright-core")):
        return "no playwright-core in tests/browser (scripts/deps browser)"
    if not shutil.which("node"):
        return "no node (scripts/deps browser)"
    return None


def e5_dashboard(B, run, s, res, z):
    why = browser_reason()
    if why:
        for what in ("dashboard first render", "event → page"):
            res.skip("E5", what, why)
        return
    n = z.page_bots
    B.log("E5: dashboard of %d bots in headless Chromium" % n)
    ports = B.free_ports(n + 1)
    bots = [("BOT-%03d" % i, p) for i, p in enumerate(ports[1:])]
    h = make_hive(B, run, "pages", bots, start_timeout=60 + n * 0.2, listen=ports[0])
    try:
        st = h.status()
        cfg = {"url": "http://127.0.0.1:%d" % h.listen, "token": None, "events": z.page_events,
               "bots": [{"id": b["id"], "url": b["url"], "proxy_url": b["proxy_url"]}
                        for b in st["bots"]]}
        env = dict(os.environ, HIVE_PAGES=json.dumps(cfg))
        r = subprocess.run(["node", "pages.mjs", "bench"], cwd=os.path.join(ROOT, "tests", "browser"),
                           env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=300)
    finally:
        h.stop()
    out = r.stdout.decode()
    if r.returncode != 0:
        raise RuntimeError("pages.mjs bench: " + out[-800:])
    m = {}
    for line in out.splitlines():
        if line.startswith("MEASURE "):
            parts = line.split()
            m[parts[1]] = float(parts[2])
        elif "first render parts" in line:
            B.log("E5: " + line.strip())
    res.target("E5", "dashboard of %d bots, headless Chromium: navigation start → every row "
               "(Performance API)" % n, [m["first_render_ms"]], "<=", 300.0, "ms")
    if "reload_render_ms" in m:
        res.figure("E5", "dashboard of %d bots loaded again in the same browser: navigation "
                   "start → every row, median of 3 reloads" % n, "ms", [m["reload_render_ms"]])
    res.target("E5", "event → visible in the dashboard, p50 of %d (task_received's time → "
               "its feed line painted)" % z.page_events, [m["event_to_page_p50_ms"]], "<=",
               250.0, "ms", "p99 %.0f ms; POST sent → shown p50 %.0f ms"
               % (m["event_to_page_p99_ms"], m["post_to_page_p50_ms"]))


# ------------------------------------------------------------------ entry

def run(B, run_dir, s, res, only):
    """The rows of ONLY that are ours, each guarded like scripts/bench's own."""
    z = Sizes(s.quick)
    steps = (("E1", "E1 fan-out", e1_fanout, True), ("E2", "E2 event overhead", e2_overhead, False),
             ("E3", "E3 timeline", e3_timeline, False), ("E4", "E4 /metrics", e4_metrics, True),
             ("E5", "E5 dashboard", e5_dashboard, True))
    for mid, what, fn, needs_hive in steps:
        if mid not in only and "E" not in only:
            continue
        if needs_hive and B.HIVE_SKIP["reason"]:
            res.skip(mid, what, B.HIVE_SKIP["reason"])
            continue
        B.guarded(res, what, fn, B, run_dir, s, res, z)
