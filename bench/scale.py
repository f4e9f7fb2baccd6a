#!/usr/bin/python3
"""Measure `hive up` at scale (issue 14): N mock bots on ports BASE+1..BASE+N
(below the ephemeral range), in a fresh work dir.

    bench/scale.py N [--base 21000] [--listen 20999] [--build build] [--idle 10]

Prints one line: N, seconds from `hive up` to every bot running (polled on the
front door's /status every 20 ms), seconds to the front door's first answer,
supervisor RSS (MiB) once all run, the supervisor's idle CPU (% of a core over
--idle seconds, all running) and the whole hive's (supervisor + workers), and
seconds `hive down` takes until the supervisor has exited.

With --verify it also checks, once all run, what issue 14 saw go wrong at
1,000 bots: how many bots have their queue's inotify watch (the supervisor's
/status says so per bot), how often registry.json is rewritten while the hive
idles (it must be on change only), and how long a file task dropped into the
queues of --files bots waits until it starts (inotify: milliseconds; the 30 s
rescan would show)."""
import argparse
import json
import os
import shutil
import subprocess
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


def status(port, tries=1):
    """The front door's /status, or None (TRIES attempts of 10 s each)."""
    for _ in range(tries):
        try:
            with urllib.request.urlopen("http://127.0.0.1:%d/status" % port, timeout=10) as r:
                return json.load(r)
        except Exception:
            pass
    return None


def registry_writes(path, seconds):
    """How many times PATH was replaced or rewritten over SECONDS (sampled every 50 ms)."""
    def key():
        try:
            st = os.stat(path)
            return (st.st_ino, st.st_mtime_ns)
        except OSError:
            return None
    n, last, end = 0, key(), time.monotonic() + seconds
    while time.monotonic() < end:
        time.sleep(0.05)
        k = key()
        if k != last:
            n, last = n + 1, k
    return n


def task_start_ms(work, bot, t0, timeout=60.0):
    """ms from T0 until BOT's activity log shows task SCALE-<bot> started."""
    log = os.path.join(work, ".deia", "bot-logs", "BOT-%s-activity.jsonl" % bot)
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            with open(log) as f:
                if any('"task_started"' in l and '"SCALE-%s"' % bot in l for l in f):
                    return (time.monotonic() - t0) * 1e3
        except OSError:
            pass
        time.sleep(0.002)
    return None


def verify(a, work):
    """Print the --verify lines (see the module's doc)."""
    st = status(a.listen)
    # A bot without its watch says so in its /status reason (supervisor/hive.c).
    nowatch = [b["id"] for b in st["bots"] if "no inotify watch" in (b.get("reason") or "")]
    print("watches: %d of %d bots (without: %s)" % (len(st["bots"]) - len(nowatch), len(st["bots"]),
                                                   " ".join(nowatch[:10]) or "none"))
    reg = os.path.join(work, ".deia", "hive", "registry.json")
    print("registry.json rewrites over 10 s of idling: %d" % registry_writes(reg, 10.0))
    step = max(1, a.n // a.files)
    waits = []
    for i in range(0, a.n, step)[:a.files]:
        bot = "B%04d" % i
        q = os.path.join(work, ".deia", "hive", "tasks", bot)
        tmp = os.path.join(work, ".scale-%s.md" % bot)
        with open(tmp, "w") as f:
            f.write("---\ntask_id: SCALE-%s\n---\nhello\n" % bot)
        t0 = time.monotonic()
        os.rename(tmp, os.path.join(q, "scale.md"))
        waits.append(task_start_ms(work, bot, t0))
    got = sorted(w for w in waits if w is not None)
    print("file task renamed in → started, %d bots: p50 %.1f ms, max %.1f ms, never: %d"
          % (len(waits), got[len(got) // 2] if got else -1, got[-1] if got else -1,
             len(waits) - len(got)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("n", type=int)
    ap.add_argument("--base", type=int, default=21000)
    ap.add_argument("--listen", type=int, default=20999)
    ap.add_argument("--build", default="build")
    ap.add_argument("--idle", type=float, default=10.0)
    ap.add_argument("--keep", action="store_true", help="keep the work dir (hive.err) and say where")
    ap.add_argument("--verify", action="store_true", help="watches, registry writes, file task starts")
    ap.add_argument("--files", type=int, default=20, help="bots given a file task with --verify")
    ap.add_argument("--timeout", type=float, default=120.0, help="bound of hive up → all running")
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
        while time.monotonic() - t0 < a.timeout:
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
        if up is None:
            raise SystemExit("not all %d bots running after %.0f s" % (a.n, a.timeout))
        pids = [b["pid"] for b in status(a.listen, 3)["bots"] if b["pid"]]
        hz = os.sysconf("SC_CLK_TCK")
        c0, w0 = ticks(p.pid), sum(ticks(q) for q in pids)
        time.sleep(a.idle)
        c1, w1 = ticks(p.pid), sum(ticks(q) for q in pids)
        idle_sup = 100.0 * (c1 - c0) / hz / a.idle
        idle_all = 100.0 * (c1 - c0 + w1 - w0) / hz / a.idle
        if a.verify:
            verify(a, work)
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
