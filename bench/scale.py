#!/usr/bin/python3
"""Measure `hive up` at scale (issue 14): N mock bots on ports BASE+1..BASE+N
(below the ephemeral range), in a fresh work dir.

    bench/scale.py N [--base 21000] [--listen 20999] [--build build] [--idle 10]

Prints one line: N, seconds from `hive up` to every bot running (polled on the
front door's /status every 20 ms), seconds to the front door's first answer,
supervisor RSS (MiB) once all run, the supervisor's idle CPU (% of a core over
--idle seconds, all running) and the whole hive's (supervisor + workers), and
seconds `hive down` takes until the supervisor has exited."""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request


def ticks(pid):
    """utime + stime of PID in clock ticks; 0 when it is gone (a restart)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            rest = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(rest[11]) + int(rest[12])


def rss_mib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return 0.0


def status(port):
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d/status" % port, timeout=2) as r:
            return json.load(r)
    except Exception:
        return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("n", type=int)
    ap.add_argument("--base", type=int, default=21000)
    ap.add_argument("--listen", type=int, default=20999)
    ap.add_argument("--build", default="build")
    ap.add_argument("--idle", type=float, default=10.0)
    ap.add_argument("--keep", action="store_true", help="keep the work dir (hive.err) and say where")
    a = ap.parse_args()
    hive_bin = os.path.abspath(os.path.join(a.build, "supervisor", "hive"))
    work = tempfile.mkdtemp(prefix="hive-scale-")
    roster = os.path.join(work, "hive.yaml")
    with open(roster, "w") as f:
        f.write("hive: {name: scale, work_dir: ., listen: 127.0.0.1:%d, base_port: %d}\n"
                "bots:\n" % (a.listen, a.base))
        for i in range(a.n):
            f.write("  - id: B%04d\n" % i)
    env = dict(os.environ, NO_PROXY="*")
    env.pop("http_proxy", None)
    t0 = time.monotonic()
    p = subprocess.Popen([hive_bin, "up", "-f", roster], cwd=work, stdout=subprocess.DEVNULL,
                         stderr=open(os.path.join(work, "hive.err"), "wb"), env=env)
    first = up = None
    try:
        while time.monotonic() - t0 < 120:
            s = status(a.listen)
            now = time.monotonic() - t0
            if s and first is None:
                first = now
            if s and s["hive"]["bots_running"] == a.n:
                up = now
                break
            if p.poll() is not None:
                raise SystemExit("hive exited: %s" % open(os.path.join(work, "hive.err")).read()[-2000:])
            time.sleep(0.02)
        rss = rss_mib(p.pid)
        pids = [b["pid"] for b in status(a.listen)["bots"] if b["pid"]]
        hz = os.sysconf("SC_CLK_TCK")
        c0, w0 = ticks(p.pid), sum(ticks(q) for q in pids)
        time.sleep(a.idle)
        c1, w1 = ticks(p.pid), sum(ticks(q) for q in pids)
        idle_sup = 100.0 * (c1 - c0) / hz / a.idle
        idle_all = 100.0 * (c1 - c0 + w1 - w0) / hz / a.idle
        t1 = time.monotonic()
        subprocess.run([hive_bin, "down", "-f", roster], cwd=work, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=60)
        p.wait(timeout=60)
        down = time.monotonic() - t1
        killed = open(os.path.join(work, "hive.err")).read().count("not ready within")
        print("N=%d up=%.2fs first_answer=%.2fs rss=%.1fMiB idle_cpu_supervisor=%.2f%% "
              "idle_cpu_hive=%.2f%% down=%.2fs not_ready_kills=%d"
              % (a.n, up or -1, first or -1, rss, idle_sup, idle_all, down, killed))
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        if a.keep:
            print("work dir kept:", work)
        else:
            shutil.rmtree(work, True)


if __name__ == "__main__":
    main()
