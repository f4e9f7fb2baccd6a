"""Power cut: "done" is durable (issue 10 case 7; SPEC §3).

The worker runs on a small ext4 file system on a loop device. Right after a
task is reported done, the worker is frozen (SIGSTOP) and the loop device's
backing file is copied: the copy holds exactly the writes the file system
has issued to its device - everything an fsync/syncfs made durable - and
none of the file system's own dirty page cache, which a power cut loses.
ext4 is mounted with commit=60 so that its periodic journal commit (every
5 s by default) cannot make up for a missing sync during the test. The copy
is then checked as a machine would be after the cut: fsck -y, mount, and the
task must be answered (one response file) and must not run again when a
worker starts on it.

What this does not model: a disk's volatile write cache (the loop device
keeps every write it was given, flushed or not), and writes the kernel
still has in flight while the copy is read (the worker is stopped, but a
sync it started may still be writing; ext4's journal checksums reject a
torn transaction as a real power cut would).

Root only (losetup, mount); skips with the reason otherwise.

By hand, randomised: HIVE_POWERCUT_SNAPSHOTS=20 cuts at 20 random instants
under a stream of tasks and checks for each copy that every task reported
done before the cut is answered exactly once on the copy, and that every
task acknowledged (202) before the cut is answered exactly once after a
worker ran on the copy; the figures are printed.

Run: HIVE_BUILD_DIR=build HIVE_SOURCE_DIR=. /usr/bin/python3 tests/e2e/test_edges_powercut.py
"""

import http.client
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hive_e2e import BOT, Worker, WorkerTestCase, main, wait_for  # noqa: E402

IMAGE_MB = 48


def run(*argv, check=True):
    p = subprocess.run(list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=60)
    if check and p.returncode != 0:
        raise AssertionError("%s failed (%d): %s" % (" ".join(argv), p.returncode,
                                                     p.stdout.decode(errors="replace")))
    return p


def why_not_root():
    if os.geteuid() != 0:
        return "needs root (losetup, mount)"
    for tool in ("mkfs.ext4", "losetup", "mount", "umount", "fsck.ext4"):
        if not shutil.which(tool):
            return "needs %s" % tool
    return None


class Disk:
    """An ext4 image on a loop device, mounted; undone by close()."""

    def __init__(self, image, mnt, make=False):
        self.image, self.mnt, self.dev = image, mnt, None
        if make:
            with open(image, "wb") as f:
                f.truncate(IMAGE_MB << 20)
            run("mkfs.ext4", "-q", "-F", image)
        os.makedirs(mnt, exist_ok=True)
        self.dev = run("losetup", "--direct-io=on", "-f", "--show", image).stdout.decode().strip()
        try:
            run("mount", "-o", "commit=60", self.dev, mnt)
        except AssertionError:
            run("losetup", "-d", self.dev, check=False)
            self.dev = None
            raise

    def close(self):
        if self.dev:
            for _ in range(50):
                if run("umount", self.mnt, check=False).returncode == 0:
                    break
                time.sleep(0.1)
            run("losetup", "-d", self.dev, check=False)
            self.dev = None


def snapshot(image, copy):
    """The device's content now (the worker is frozen by the caller)."""
    shutil.copyfile(image, copy)
    # fsck as a reboot would; 1 = errors corrected, 0 = clean.
    rc = run("fsck.ext4", "-y", copy, check=False).returncode
    if rc not in (0, 1):
        raise AssertionError("fsck of the cut image returned %d" % rc)


def response_names(work_dir, task_id):
    d = os.path.join(work_dir, ".deia", "hive", "responses")
    pat = re.compile(r"^\d{4}-\d\d-\d\d-\d{4}-%s-[A-Za-z0-9._-]+-RESPONSE-%s-(complete|failed)"
                     r"(-\d+)?\.md$" % (re.escape(BOT), re.escape(task_id)))
    try:
        return [n for n in os.listdir(d) if pat.match(n)]
    except FileNotFoundError:
        return []


def get_state(port, task_id):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        c.request("GET", "/api/task/" + task_id)
        r = c.getresponse()
        body = r.read()
        return json.loads(body).get("state") if r.status == 200 else None
    finally:
        c.close()


def post_task(port, task_id):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        c.request("POST", "/api/task", body=json.dumps({"command": "cut " + task_id,
                                                        "task_id": task_id}),
                  headers={"Content-Type": "application/json"})
        r = c.getresponse()
        r.read()
        return r.status
    finally:
        c.close()


@unittest.skipIf(why_not_root(), why_not_root() or "")
class PowerCut(WorkerTestCase):

    def setUp(self):
        super().setUp()
        self.area = tempfile.mkdtemp(prefix="hive-powercut-")
        self.disks = []

    def tearDown(self):
        try:
            super().tearDown()       # stops every worker first
        finally:
            for d in reversed(self.disks):
                d.close()
            shutil.rmtree(self.area, ignore_errors=True)

    def disk(self, name, make=False, image=None):
        d = Disk(image or os.path.join(self.area, name + ".img"),
                 os.path.join(self.area, name), make=make)
        self.disks.append(d)
        return d

    def worker_on(self, disk, *args):
        wd = os.path.join(disk.mnt, "wd")
        os.makedirs(wd, exist_ok=True)
        w = Worker(wd)
        self.workers.append(w)
        w.start(*args)
        return w

    def check_copy(self, copy_image, name, done_before, acked_before):
        """Mount a cut image; return (missing answers of done tasks, tasks answered
        twice, acked tasks unanswered after a worker ran on it)."""
        d = self.disk(name, image=copy_image)
        wd = os.path.join(d.mnt, "wd")
        missing = [t for t in done_before if len(response_names(wd, t)) != 1]
        w = Worker(wd)
        self.workers.append(w)
        w.start()
        want = sorted(set(acked_before) | set(done_before))
        try:
            wait_for(lambda: all(response_names(wd, t) for t in want)
                     and w.status()["queue"]["realtime"] == 0
                     and w.status()["status"] == "idle", 30, what="the copy's worker idle")
        except AssertionError:
            pass
        time.sleep(0.3)
        twice = [t for t in want if len(response_names(wd, t)) > 1]
        lost = [t for t in want if len(response_names(wd, t)) == 0]
        ran_again = [t for t in done_before if "task %s done" % t in w.log_text()]
        w.stop()
        d.close()
        self.disks.remove(d)
        return missing, twice, lost, ran_again

    def test_done_survives_a_power_cut(self):
        disk = self.disk("live", make=True)
        w = self.worker_on(disk)
        w.submit("before the cut", task_id="PC-1")
        deadline = time.monotonic() + 20
        while get_state(w.port, "PC-1") != "done":
            self.assertLess(time.monotonic(), deadline, "PC-1 never done")
            time.sleep(0.002)
        os.kill(w.proc.pid, signal.SIGSTOP)      # the cut: nothing more reaches the disk
        copy = os.path.join(self.area, "cut.img")
        try:
            shutil.copyfile(disk.image, copy)
        finally:
            os.kill(w.proc.pid, signal.SIGCONT)
        rc = run("fsck.ext4", "-y", copy, check=False).returncode
        self.assertIn(rc, (0, 1), "fsck of the cut image")
        missing, twice, lost, ran_again = self.check_copy(copy, "copy", ["PC-1"], ["PC-1"])
        self.assertEqual(missing, [], "a task reported done has no response on the cut disk")
        self.assertEqual(twice, [], "answered twice")
        self.assertEqual(ran_again, [], "a task reported done ran again after the cut")

    @unittest.skipUnless(os.environ.get("HIVE_POWERCUT_SNAPSHOTS"),
                         "by hand: HIVE_POWERCUT_SNAPSHOTS=N")
    def test_random_cuts(self):
        n = int(os.environ["HIVE_POWERCUT_SNAPSHOTS"])
        disk = self.disk("live", make=True)
        w = self.worker_on(disk, "--mock-delay-ms", "15")
        lock = threading.Lock()
        acked, done, stop = [], set(), threading.Event()

        def client():
            k = 0
            while not stop.is_set():
                k += 1
                tid = "RND-%d" % k
                try:
                    with lock:
                        pending = [t for t in acked if t not in done]
                    if len(pending) < 50 and post_task(w.port, tid) == 202:
                        with lock:
                            acked.append(tid)
                    pending = pending[:20]   # the oldest: realtime tasks run in order
                    for t in pending:
                        if get_state(w.port, t) == "done":
                            with lock:
                                done.add(t)
                except OSError:
                    time.sleep(0.01)
        th = threading.Thread(target=client, daemon=True)
        th.start()
        cuts = []
        try:
            for i in range(n):
                time.sleep(random.uniform(0.05, 0.6))
                with lock:
                    os.kill(w.proc.pid, signal.SIGSTOP)
                    done_before, acked_before = sorted(done), list(acked)
                copy = os.path.join(self.area, "cut-%d.img" % i)
                try:
                    shutil.copyfile(disk.image, copy)
                finally:
                    os.kill(w.proc.pid, signal.SIGCONT)
                cuts.append((copy, done_before, acked_before))
        finally:
            stop.set()
            th.join(60)
        totals = {"snapshots": 0, "acked": 0, "done": 0, "missing": 0, "twice": 0, "lost": 0,
                  "ran_again": 0}
        problems = []
        for i, (copy, done_before, acked_before) in enumerate(cuts):
            rc = run("fsck.ext4", "-y", copy, check=False).returncode
            self.assertIn(rc, (0, 1), "fsck of cut %d" % i)
            missing, twice, lost, ran_again = self.check_copy(copy, "copy-%d" % i, done_before,
                                                              acked_before)
            os.unlink(copy)
            totals["snapshots"] += 1
            totals["acked"] += len(acked_before)
            totals["done"] += len(done_before)
            for key, val in (("missing", missing), ("twice", twice), ("lost", lost),
                             ("ran_again", ran_again)):
                totals[key] += len(val)
                if val:
                    problems.append("cut %d %s: %s" % (i, key, val[:5]))
        sys.stderr.write("power-cut figures: %s\n" % json.dumps(totals))
        self.assertEqual(problems, [])


if __name__ == "__main__":
    main()
