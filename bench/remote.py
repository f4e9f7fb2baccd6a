"""Row 12 of scripts/bench: 3 remote hosts x 100 bots through one front door
(issue 14, "Seen at scale", last bullet).

Three network namespaces ("hosts") each run `hive up` with BOTS mock bots
bound on the host's own address; a fourth namespace runs the front door,
whose roster lists every one of them as a remote bot (`url:`), over one veth
pair per host (10.B.n.1 on the front's side, 10.B.n.2 on the host's). All
addresses exist only inside the bench's namespaces.

Measured, from inside the front door's namespace, with the same client (wrk,
--latency, the same connections and seconds):
  (a) proxy overhead: p99 of `GET /bots/<id>/status` through the front door
      minus p99 of `GET /status` on that worker directly (target <= 1 ms);
      also the front door's p99 with every request to the next of all
      3 x BOTS bots (a figure), and side by side in the same run the same
      request through nginx (Debian's, in the front's namespace, proxying to
      the same worker with a kept-alive upstream and the same headers): what
      a user would put in front instead;
  (b) a lost host: host 1's link set down; seconds until the front door's
      /status shows every bot of that host `unreachable` (target <= 5 s, with
      health {interval: 1, timeout: 500ms, fall: 3}).

Root only (ip netns add): otherwise the row is skipped with the reason.
Every loop is bounded; processes are stopped by their pid and anything left
in the bench's own namespaces is killed by the pids `ip netns pids` lists
before the namespaces are deleted, failure or not.

Standalone: bench/remote.py [--quick] [--build build]
"""
import datetime
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import time

HOSTS = 3
HOST_API = 8000   # each host hive's own port (loopback of its namespace)
FRONT = 8000      # the front door (loopback of the front namespace)
NGINX = 8080      # nginx beside it, the same proxy job for one bot (side by side)
INTERVAL, TIMEOUT, RISE, FALL = 1.0, 0.5, 2, 3
TOKEN_VAR = "HIVE_BENCH_REMOTE_TOKEN"


CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_ticks(pid):
    """utime + stime of PID (`ip netns exec` execs the program: same pid)."""
    with open("/proc/%d/stat" % pid) as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return int(rest[11]) + int(rest[12])


def sh(*argv, check=True, timeout=30):
    return subprocess.run(list(argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          timeout=timeout, check=check)


def why_not_possible():
    """None when network namespaces can be made here, else the reason."""
    if os.geteuid() != 0:
        return "needs root (ip netns add)"
    for tool in ("ip", "wrk", "curl"):
        if not shutil.which(tool):
            return "no %s command" % tool
    probe = "hive-b-probe-%s" % secrets.token_hex(3)
    r = sh("ip", "netns", "add", probe, check=False)
    if r.returncode != 0:
        return "ip netns add refused: %s" % r.stderr.decode().strip()
    sh("ip", "netns", "del", probe, check=False)
    return None


class Net:
    """Namespaces hive-b-<tag>-f (front) and -h1..h3, a veth pair per host."""

    def __init__(self):
        self.tag = secrets.token_hex(3)
        self.base = 100 + secrets.randbelow(100)
        self.front = "hive-b-%s-f" % self.tag
        self.hosts = ["hive-b-%s-h%d" % (self.tag, n) for n in range(1, HOSTS + 1)]
        self.made = []

    def front_if(self, n):
        return "bf%s%d" % (self.tag, n)

    def host_addr(self, n):
        return "10.%d.%d.2" % (self.base, n)

    def up(self):
        for ns in [self.front] + self.hosts:
            sh("ip", "netns", "add", ns)
            self.made.append(ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        for n, ns in enumerate(self.hosts, 1):
            a, b = self.front_if(n), "bh%s%d" % (self.tag, n)
            sh("ip", "link", "add", a, "netns", self.front, "type", "veth", "peer", "name", b,
               "netns", ns)
            sh("ip", "-n", self.front, "addr", "add", "10.%d.%d.1/24" % (self.base, n), "dev", a)
            sh("ip", "-n", ns, "addr", "add", "%s/24" % self.host_addr(n), "dev", b)
            sh("ip", "-n", self.front, "link", "set", a, "up")
            sh("ip", "-n", ns, "link", "set", b, "up")

    def cut(self, n, down=True):
        sh("ip", "-n", self.front, "link", "set", self.front_if(n), "down" if down else "up")

    def down(self):
        """Kill what still runs in our namespaces (by pid), then delete them."""
        for ns in self.made:
            r = sh("ip", "netns", "pids", ns, check=False)
            for pid in r.stdout.decode().split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (OSError, ValueError):
                    pass
        for ns in reversed(self.made):
            sh("ip", "netns", "del", ns, check=False)
        self.made = []


class Bench:
    def __init__(self, hive_bin, bots, seconds, log):
        self.hive_bin = hive_bin
        self.bots = bots
        self.seconds = seconds
        self.log = log
        self.net = Net()
        self.tmp = tempfile.mkdtemp(prefix="hive-bench-remote-")
        self.token = "bench-" + secrets.token_hex(8)
        self.procs = []

    def env(self):
        e = dict(os.environ, NO_PROXY="*")
        for k in ("HIVE_TOKEN", "LISTEN_FDS", "LISTEN_PID", "NOTIFY_SOCKET", "http_proxy"):
            e.pop(k, None)
        e[TOKEN_VAR] = self.token
        return e

    def bot_id(self, n, i):
        return "H%dB%03d" % (n, i)

    def curl(self, ns, url, token=False, timeout=5):
        argv = ["ip", "netns", "exec", ns, "curl", "-sS", "--noproxy", "*", "--max-time",
                str(timeout), "-o", "-", "-w", "\n%{http_code}"]
        if token:
            argv += ["-H", "Authorization: Bearer " + self.token]
        r = sh(*(argv + [url]), check=False, timeout=timeout + 10)
        text, _, code = r.stdout.decode().rpartition("\n")
        return int(code or 0), text

    def status(self, ns, token=False):
        code, text = self.curl(ns, "http://127.0.0.1:%d/status" % HOST_API, token=token)
        try:
            return json.loads(text) if code == 200 else None
        except ValueError:
            return None

    def wait(self, what, cond, timeout):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if cond():
                return time.monotonic()
            time.sleep(0.1)
        raise RuntimeError("%s: not within %.0f s" % (what, timeout))

    def start(self, ns, d, lines):
        os.makedirs(d)
        with open(os.path.join(d, "hive.yaml"), "w") as f:
            f.write("\n".join(lines) + "\n")
        log = open(os.path.join(d, "up.log"), "ab")
        p = subprocess.Popen(["ip", "netns", "exec", ns, self.hive_bin, "up", "-f", "hive.yaml"],
                             cwd=d, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                             env=self.env())
        log.close()
        self.procs.append(p)
        return p

    def start_host(self, n):
        addr = self.net.host_addr(n)
        lines = ["hive:", "  name: bench-h%d" % n, "  work_dir: .",
                 "  listen: 127.0.0.1:%d" % HOST_API, "  token_env: %s" % TOKEN_VAR,
                 "  server_names: [%s]" % addr,
                 "defaults: {bind: %s}" % addr, "bots:"]
        lines += ["  - id: %s" % self.bot_id(n, i) for i in range(1, self.bots + 1)]
        self.start(self.net.hosts[n - 1], os.path.join(self.tmp, "h%d" % n), lines)

    def start_front(self):
        lines = ["hive:", "  name: bench-front", "  work_dir: .",
                 "  listen: 127.0.0.1:%d" % FRONT, "bots:"]
        for n in range(1, HOSTS + 1):
            for i in range(1, self.bots + 1):
                lines += ["  - id: %s" % self.bot_id(n, i),
                          "    url: http://%s:%d" % (self.net.host_addr(n), HOST_API + i),
                          "    token_env: %s" % TOKEN_VAR,
                          "    health: {interval: %s, timeout: %s, rise: %d, fall: %d}"
                          % (INTERVAL, TIMEOUT, RISE, FALL)]
        return self.start(self.net.front, os.path.join(self.tmp, "front"), lines)

    def start_nginx(self, addr, port, bot):
        """nginx (Debian's) in the front namespace, proxying /bots/BOT/ to the
        worker at ADDR:PORT the way the front door does: HTTP/1.1 kept alive
        upstream, the bot's token and the same X-Forwarded-* headers added.
        None when nginx is not installed."""
        nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx")
                                          else None)
        if not nginx:
            return None
        prefix = os.path.join(self.tmp, "nginx")
        os.makedirs(os.path.join(prefix, "tmp"))
        conf = os.path.join(prefix, "nginx.conf")
        t = os.path.join(prefix, "tmp")
        with open(conf, "w") as f:
            f.write("""worker_processes 1;
daemon off;
master_process on;
pid %(p)s/nginx.pid;
error_log %(p)s/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path %(t)s/body; proxy_temp_path %(t)s/proxy;
    fastcgi_temp_path %(t)s/fastcgi; uwsgi_temp_path %(t)s/uwsgi; scgi_temp_path %(t)s/scgi;
    keepalive_requests 100000000;
    upstream bot { server %(addr)s:%(port)d; keepalive 64; keepalive_requests 100000000; }
    server {
        listen 127.0.0.1:%(listen)d;
        location /bots/%(bot)s/ {
            proxy_pass http://bot/;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header Authorization "Bearer %(token)s";
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Host $http_host;
            proxy_set_header X-Forwarded-Proto $scheme;
        }
    }
}
""" % {"p": prefix, "t": t, "addr": addr, "port": port, "listen": NGINX, "bot": bot,
               "token": self.token})
        log = open(os.path.join(prefix, "stderr.log"), "ab")
        p = subprocess.Popen(["ip", "netns", "exec", self.net.front, nginx, "-p", prefix + "/",
                              "-c", conf], stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        log.close()
        self.procs.append(p)
        url = "http://127.0.0.1:%d/bots/%s/status" % (NGINX, bot)
        self.wait("nginx answering", lambda: self.curl(self.net.front, url)[0] == 200, 20)
        return url

    def states(self):
        st = self.status(self.net.front)
        return {b["id"]: b["state"] for b in st["bots"]} if st else {}

    def wrk(self, url, token=False, script=None):
        """wrk --latency from inside the front namespace: p50/p99 ms, requests, errors."""
        argv = ["ip", "netns", "exec", self.net.front, "wrk", "-t1", "-c4",
                "-d%ds" % self.seconds, "--timeout", "5s", "--latency"]
        if token:
            argv += ["-H", "Authorization: Bearer " + self.token]
        if script:
            argv += ["-s", script]
        r = sh(*(argv + [url]), check=False, timeout=self.seconds + 30)
        out = r.stdout.decode()
        m = re.search(r"(\d+) requests in", out)
        if r.returncode != 0 or not m:
            raise RuntimeError("wrk %s failed: %s" % (url, (out + r.stderr.decode())[-400:]))
        res = {"requests": int(m.group(1)), "non2xx": 0}
        for pct in ("50", "99"):
            m = re.search(r"^\s+%s%%\s+([\d.]+)(us|ms|s)" % pct, out, re.M)
            res["p" + pct] = float(m.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[m.group(2)]
        m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        if m:
            res["non2xx"] = int(m.group(1))
        if res["non2xx"]:
            raise RuntimeError("wrk %s: %d of %d answers not 2xx"
                               % (url, res["non2xx"], res["requests"]))
        return res

    def run(self, reps):
        """The measurements; a dict of lists (one value per repetition)."""
        self.net.up()
        total = HOSTS * self.bots
        t0 = time.monotonic()
        for n in range(1, HOSTS + 1):
            self.start_host(n)
        for n, ns in enumerate(self.net.hosts, 1):
            self.wait("host %d: %d bots running" % (n, self.bots),
                      lambda: ((self.status(ns, True) or {}).get("hive", {})
                               .get("bots_running")) == self.bots, 120)
        self.log("  12: %d bots running on %d hosts after %.1f s"
                 % (total, HOSTS, time.monotonic() - t0))
        self.front_pid = self.start_front().pid
        self.wait("front door: %d remote bots running" % total,
                  lambda: list(self.states().values()).count("running") == total, 120)
        bot = self.bot_id(1, 1)
        direct = "http://%s:%d/status" % (self.net.host_addr(1), HOST_API + 1)
        front = "http://127.0.0.1:%d/bots/%s/status" % (FRONT, bot)
        script = os.path.join(self.tmp, "rotate.lua")
        with open(script, "w") as f:
            ids = ", ".join('"%s"' % self.bot_id(n, i) for n in range(1, HOSTS + 1)
                            for i in range(1, self.bots + 1))
            f.write("local ids = {%s}\nlocal i = 0\nrequest = function()\n"
                    "  i = i %% #ids + 1\n"
                    "  return wrk.format(\"GET\", \"/bots/\" .. ids[i] .. \"/status\")\nend\n"
                    % ids)
        out = {"direct_p99": [], "front_p99": [], "overhead_p99": [], "direct_p50": [],
               "front_p50": [], "rotate_p99": [], "lost_s": [],
               "lost_first_s": [], "lost_last_s": [], "front_cpu_us": [],
               "nginx_p99": [], "nginx_p50": [], "nginx_overhead_p99": []}
        ngx = self.start_nginx(self.net.host_addr(1), HOST_API + 1, bot)
        if not ngx:
            self.log("  12: nginx not installed: no side-by-side proxy figures")
        self.wrk(direct, token=True)   # warm-up: connections, pools, caches
        self.wrk(front)
        if ngx:
            self.wrk(ngx)
        for _ in range(reps):
            d = self.wrk(direct, token=True)
            c0 = cpu_ticks(self.front_pid)
            f = self.wrk(front)
            out["front_cpu_us"].append((cpu_ticks(self.front_pid) - c0) / CLK_TCK * 1e6
                                       / max(1, f["requests"]))
            r = self.wrk("http://127.0.0.1:%d/" % FRONT, script=script)
            out["direct_p99"].append(d["p99"])
            out["front_p99"].append(f["p99"])
            out["direct_p50"].append(d["p50"])
            out["front_p50"].append(f["p50"])
            out["overhead_p99"].append(f["p99"] - d["p99"])
            out["rotate_p99"].append(r["p99"])
            if ngx:
                g = self.wrk(ngx)
                out["nginx_p99"].append(g["p99"])
                out["nginx_p50"].append(g["p50"])
                out["nginx_overhead_p99"].append(g["p99"] - d["p99"])
        # (b) once: host 1 cut off.
        mine = [self.bot_id(1, i) for i in range(1, self.bots + 1)]
        self.net.cut(1)
        t_cut, wall_cut = time.monotonic(), time.time()
        def lost():
            st = self.states()   # one poll for all of them
            return all(st.get(b) == "unreachable" for b in mine)
        seen = self.wait("host 1's bots unreachable", lost, 30)
        out["lost_s"].append(seen - t_cut)
        # When the supervisor itself marked each (its log, no polling in it).
        marks = self.transitions(wall_cut, "H1B")
        if len(marks) != self.bots:
            raise RuntimeError("%d of %d running -> unreachable lines in the front's log"
                               % (len(marks), self.bots))
        out["lost_first_s"].append(marks[0])
        out["lost_last_s"].append(marks[-1])
        others = self.states()
        still = sum(1 for b, s in others.items() if s == "running" and not b.startswith("H1"))
        if still != total - self.bots:
            raise RuntimeError("%d bots of the other hosts running after the cut, not %d"
                               % (still, total - self.bots))
        return out

    def transitions(self, since, prefix):
        """Seconds after SINCE (wall clock) at which the front door's log says
        each bot named PREFIX... went running -> unreachable, sorted."""
        with open(os.path.join(self.tmp, "front", "up.log"), "rb") as f:
            log = f.read().decode("utf-8", "replace")
        out = []
        for m in re.finditer(r"^(\S+)Z \w+ \[hive\] %s\S*: running -> unreachable" % prefix,
                             log, re.M):
            t = datetime.datetime.fromisoformat(m.group(1)).replace(tzinfo=datetime.timezone.utc)
            out.append(t.timestamp() - since)
        return sorted(out)

    def close(self):
        for p in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in reversed(self.procs):
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.net.down()
        shutil.rmtree(self.tmp, ignore_errors=True)


def m12_remote(res, build_dir, reps, quick, log):
    """12: 3 remote hosts x 100 bots (x 10 with --quick) through one front door."""
    what = "3 remote hosts x 100 bots through one front door"
    reason = why_not_possible()
    if reason:
        log("12 skipped: " + reason)
        res.skip("12", what, reason)
        return
    bots = 10 if quick else 100
    b = Bench(os.path.join(build_dir, "supervisor", "hive"), bots, 1 if quick else 5, log)
    try:
        out = b.run(reps)
    finally:
        b.close()
    n = "%d x %d bots, wrk -c4 in the front's namespace" % (HOSTS, bots)
    res.target("12", "proxy overhead p99: front door minus worker direct, GET status (%s)" % n,
               out["overhead_p99"], "<=", 1.0, "ms")
    res.figure("12", "GET status p99, worker direct", "ms", out["direct_p99"])
    res.figure("12", "GET /bots/<id>/status p99, through the front door", "ms", out["front_p99"])
    if out["nginx_p99"]:
        res.figure("12", "the same through nginx in the same run (keep-alive upstream, same "
                   "headers): p99 minus worker direct", "ms", out["nginx_overhead_p99"])
        res.figure("12", "GET /bots/<id>/status p99, through nginx", "ms", out["nginx_p99"])
        res.figure("12", "GET /bots/<id>/status p50, through nginx", "ms", out["nginx_p50"])
    else:
        res.skip("12", "nginx side by side", "nginx is not installed")
    res.figure("12", "GET status p50, worker direct", "ms", out["direct_p50"])
    res.figure("12", "GET /bots/<id>/status p50, through the front door", "ms", out["front_p50"])
    res.figure("12", "front door supervisor CPU per proxied GET status (its whole process: "
               "proxy, and the checks of %d bots meanwhile)" % (HOSTS * bots), "µs",
               out["front_cpu_us"])
    res.figure("12", "front door p99, each request to the next of all %d bots" % (HOSTS * bots),
               "ms", out["rotate_p99"])
    res.target("12", "host link down → its %d bots unreachable in the front's /status "
               "(health interval 1 s, fall 3; polled)" % bots, out["lost_s"], "<=", 5.0, "s")
    res.figure("12", "host link down → the first of its bots unreachable, the supervisor's "
               "own log", "s", out["lost_first_s"])
    res.figure("12", "host link down → the last of its bots unreachable, the supervisor's "
               "own log", "s", out["lost_last_s"])


if __name__ == "__main__":
    import argparse
    import sys

    class Res:
        def figure(self, mid, name, unit, values, note=""):
            print("%s %s: %s %s" % (mid, name, " ".join("%.3f" % v for v in values), unit))

        def target(self, mid, name, values, op, limit, unit="", note=""):
            self.figure(mid, name + " (target %s %g)" % (op, limit), unit, values)

        def skip(self, mid, what, reason):
            print("%s %s: skipped: %s" % (mid, what, reason))

    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--build", default="build")
    ap.add_argument("--reps", type=int, default=3)
    a = ap.parse_args()
    m12_remote(Res(), os.path.abspath(a.build), 1 if a.quick else a.reps, a.quick,
               lambda m: sys.stderr.write(m + "\n"))
