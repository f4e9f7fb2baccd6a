"""The file queue at scale (issue 14): a worker restarted with tens of
thousands of queued task files says READY=1 without reading them first, and
still hands them out in SPEC §2.1's order (priority digit, then modification
time, then name).

Neither test times anything: the first counts, with strace, the queued files
the worker opened before its READY=1 datagram; the second compares the order
the tasks started in with the order §2.1 gives.
"""
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import unittest

from hive_e2e import (WORKER_BIN, WorkerTestCase, Worker, descendants, kill_exact, wait_for)

STRACE = shutil.which("strace")
QUEUED = int(os.environ.get("E2E_QUEUED", 20000))


def fill_queue(queue_dir, names_priorities_mtimes):
    """Write plain-markdown task files straight into the queue, then date them."""
    os.makedirs(queue_dir, exist_ok=True)
    for name, priority, mtime in names_priorities_mtimes:
        path = os.path.join(queue_dir, name)
        with open(path, "w") as f:
            f.write("# Task %s\n\n**From:** e2e\n**Priority:** %s\n\nsay hello\n"
                    % (name[:-3], priority))
        os.utime(path, (mtime, mtime))


def spec_order(items):
    """§2.1: priority digit (none: last), then mtime, then name."""
    def rank(p):
        return int(p[1]) if len(p) > 1 and p[0] in "Pp" and p[1].isdigit() else 10
    return [n for n, p, m in sorted(items, key=lambda x: (rank(x[1]), x[2], x[0]))]


class QueueIndexTest(WorkerTestCase):

    @unittest.skipUnless(STRACE, "strace is not installed (scripts/deps)")
    def test_queued_files_are_not_read_before_ready(self):
        w = Worker(self.tmp)
        self.workers.append(w)
        now = time.time() - QUEUED - 3600   # all in the past: none is "young"
        fill_queue(w.queue_dir, [("T%05d.md" % i, "P%d" % (i % 4), now + i) for i in range(QUEUED)])
        os.makedirs(os.path.dirname(w.pause_file), exist_ok=True)
        open(w.pause_file, "w").close()   # nothing runs: only the start is looked at
        sock_path = os.path.join(self.tmp, "notify.sock")
        ns = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        ns.bind(sock_path)
        ns.settimeout(120)
        self.addCleanup(ns.close)
        trace = os.path.join(self.tmp, "strace.out")
        env = dict(os.environ, NOTIFY_SOCKET=sock_path)
        for k in ("LISTEN_FDS", "LISTEN_PID", "HIVE_TOKEN"):
            env.pop(k, None)
        err = open(os.path.join(self.tmp, "worker.err"), "wb")
        self.addCleanup(err.close)
        st = subprocess.Popen([STRACE, "-f", "-qq", "-s", "4096", "-o", trace,
                               "-e", "trace=open,openat,sendmsg,sendto", WORKER_BIN, w.bot,
                               "--port", "0", "--work-dir", self.tmp, "--stop-grace", "1"],
                              stdin=subprocess.DEVNULL, stdout=err, stderr=err, env=env)
        self.addCleanup(lambda: st.poll() is None and (st.kill(), st.wait(10)))
        # Runs first (cleanups are LIFO): the traced worker itself, by pid,
        # so a failed test leaves no worker behind a killed strace.
        self.addCleanup(lambda: kill_exact(descendants(st.pid)))
        got = b""
        while b"READY=1" not in got:
            got = ns.recv(4096)
        worker = wait_for(lambda: descendants(st.pid), 10, what="the traced worker")
        # It serves at once; the files are read after READY (the index).
        with open(os.path.join(self.tmp, "worker.err")) as f:
            w.port = int(f.read().split("listening on http://127.0.0.1:")[1].split()[0])
        self.assertEqual(w.get("/health").status, 200)
        os.kill(worker[0][0], signal.SIGTERM)
        st.wait(60)
        kill_exact(worker)
        task_open = re.compile(r'open(at)?\(.*"(?:[^"]*/)?T\d{5}\.md"')
        before = 0
        with open(trace, errors="replace") as f:
            for line in f:
                if "READY=1" in line and ("sendmsg(" in line or "sendto(" in line):
                    break
                if task_open.search(line):
                    before += 1
            else:
                self.fail("no READY=1 in the trace")
        # A bound that does not grow with the queue: the old worker read all
        # 20,000 files before READY=1.
        self.assertLess(before, 10, "%d queued task files were opened before READY=1" % before)

    def test_order_is_kept_across_index_slices(self):
        w = Worker(self.tmp)
        self.workers.append(w)
        base = time.time() - 3600
        prios = ["P0", "P1 (BLOCKING - PROCESS ISSUE)", "P3", "high", "P2"]
        # 700 files: more than two slices of the index; mtimes tie in pairs so
        # that the name decides between them.
        items = [("N%04d.md" % ((i * 7919) % 700), prios[i % 5], base + (i // 2))
                 for i in range(700)]
        fill_queue(w.queue_dir, items)
        w.start("--adapter-type", "mock")
        want = spec_order(items)[:40]

        def started():
            ids = [e["task_id"] for e in w.activity() if e["event_type"] == "task_started"]
            return ids if len(ids) >= 40 else None
        ids = wait_for(started, 120, what="40 tasks started")
        self.assertEqual(ids[:40], [n[:-3] for n in want])


if __name__ == "__main__":
    unittest.main()
