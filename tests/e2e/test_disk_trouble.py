"""A response write that fails leaves the task queued, logged, and answered later
(issue 5, "Disk trouble"; SPEC §3 durability, §2.2 exactly one response).

Each test runs one hive-worker (mock adapter) whose .deia/hive/responses/ is a
mount of its own: a 64 KiB tmpfs filled up with a dot file (dot files are not
responses), or a read-only bind mount (chmod does not stop root). While the
folder cannot take a response, a submitted task must stay queued or running:
no response file, no pending file left, the error in the worker's log and
activity log, /status still answering. Once the space is freed (or the mount
is writable again) the task completes with exactly one response file that GET
/api/task/<id> names. Also across a SIGKILL and a SIGTERM of the worker while
the disk is full.

Needs root (mount); every test skips with the reason when mounting is not
permitted. Every mount is undone in cleanup (lazy unmount as a last resort).

Run: HIVE_BUILD_DIR=build /usr/bin/python3 tests/e2e/test_disk_trouble.py
"""

import errno
import os
import shutil
import subprocess
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hive_e2e import BOT, WorkerTestCase, main, wait_for  # noqa: E402

FILLER = ".chaos-filler"        # a dot file: never taken for a response
WRITE_ERROR = "cannot write the response of task %s"
SETTLE = 2.5                    # > 2 retries of the worker's 1 s response-write retry


def run(*argv):
    return subprocess.run(list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, timeout=30)


class DiskMounts:
    """A responses folder on a mount of the test's own (a small tmpfs, a read-only
    bind): mixed in before a test case class whose tearDown stops its workers."""

    def setUp(self):
        super().setUp()
        self.responses = os.path.join(self.tmp, ".deia", "hive", "responses")
        os.makedirs(self.responses)
        self.mounted = 0

    def tearDown(self):
        # Workers first (WorkerTestCase stops and checks them), then the mounts, then
        # what the base class could not remove under a mount.
        try:
            super().tearDown()
        finally:
            self.unmount_all()
            shutil.rmtree(self.tmp, ignore_errors=True)

    # --- mounts
    def mount(self, *argv):
        if os.geteuid() != 0:
            self.skipTest("disk trouble needs root to mount a tmpfs or a read-only bind mount")
        p = run("mount", *argv)
        if p.returncode != 0:
            self.skipTest("mount is not permitted here (mount %s: %s)"
                          % (" ".join(argv), p.stdout.decode(errors="replace").strip()))
        self.mounted += 1

    def unmount_all(self):
        while self.mounted > 0:
            p = run("umount", self.responses)
            if p.returncode != 0:
                time.sleep(0.2)
                p = run("umount", self.responses)
            if p.returncode != 0:
                p = run("umount", "-l", self.responses)
            if p.returncode != 0:
                sys.stderr.write("cannot unmount %s: %s\n" % (self.responses, p.stdout))
                break
            self.mounted -= 1

    def mount_small_tmpfs(self):
        self.mount("-t", "tmpfs", "-o", "size=64k,mode=0755", "tmpfs", self.responses)

    def mount_read_only(self):
        self.mount("--bind", self.responses, self.responses)
        p = run("mount", "-o", "remount,bind,ro", self.responses)
        if p.returncode != 0:
            self.skipTest("read-only remount not permitted: %s" % p.stdout.decode().strip())

    def make_writable(self):
        p = run("mount", "-o", "remount,bind,rw", self.responses)
        self.assertEqual(p.returncode, 0, p.stdout)

    def fill(self):
        """Fill the tmpfs to the last byte; returns the bytes written."""
        path = os.path.join(self.responses, FILLER)
        n = 0
        with open(path, "wb", buffering=0) as f:
            chunk = b"x" * 4096
            while True:
                try:
                    n += f.write(chunk)
                except OSError as e:
                    if e.errno != errno.ENOSPC:
                        raise
                    break
            for size in (512, 64, 1):     # the last partial page too
                while True:
                    try:
                        n += f.write(b"x" * size)
                    except OSError as e:
                        if e.errno != errno.ENOSPC:
                            raise
                        break
        with self.assertRaises(OSError) as cm:
            with open(os.path.join(self.responses, ".probe"), "wb") as f:
                f.write(b"y" * 4096)
                f.flush()
        self.assertEqual(cm.exception.errno, errno.ENOSPC)
        try:
            os.unlink(os.path.join(self.responses, ".probe"))
        except FileNotFoundError:
            pass
        return n

    def free(self):
        os.unlink(os.path.join(self.responses, FILLER))


class DiskTrouble(DiskMounts, WorkerTestCase):

    # --- checks
    def names(self):
        return sorted(os.listdir(self.responses))

    def assert_unanswered(self, w, task_ids):
        """No response (nor leftover pending file) for TASK_IDS; each still queued or
        running; /status answers."""
        # Dot files are not responses (a pending file may exist for an instant while
        # the worker retries); anything else would be an answer that should not exist.
        answers = [n for n in self.names() if not n.startswith(".")]
        self.assertEqual(answers, [], "responses written to a full or read-only folder")
        for tid in task_ids:
            r = w.task(tid)
            self.assertEqual(r.status, 200, "GET /api/task/%s: %r" % (tid, r))
            self.assertIn(r.json()["state"], ("queued", "running"),
                          "task %s while the response cannot be written: %r" % (tid, r.json()))
        for _ in range(3):
            st = w.status()
            self.assertEqual(st["bot_id"], BOT)
            self.assertEqual(w.get("/health").status, 200)

    def assert_error_logged(self, w, tid, log_index=-1):
        wait_for(lambda: WRITE_ERROR % tid in w.log_text(log_index), 15,
                 what="the worker logging its failed response write for %s" % tid)
        # A full disk passes: a warning (SPEC §3: transient failures leave
        # the task waiting); a read-only folder is an error.
        wait_for(lambda: [e for e in w.activity() if e["event_type"] in ("warning", "error")
                          and e.get("task_id") == tid], 5,
                 what="a warning or error event for %s in the activity log" % tid)

    def assert_answered_once(self, w, tid):
        name, _ = w.wait_response(tid, timeout=20)
        j = w.wait_state(tid, ("done", "failed"))
        time.sleep(1.2)                    # a second write would come within a retry
        got = w.responses(tid)
        self.assertEqual(got, [name], "responses of %s: %r" % (tid, got))
        self.assertEqual(j["result"]["response_file"], name)
        self.assertEqual(j["state"], "done")
        with open(os.path.join(self.responses, name), encoding="utf-8") as f:
            text = f.read()
        self.assertIn("**Task:** %s\n" % tid, text)
        self.assertRegex(text, r"\n\*\*Response generated:\*\* \S+\n$")

    def assert_no_pending(self):
        folder = os.path.join(self.responses, ".pending", BOT)
        left = sorted(os.listdir(folder)) if os.path.isdir(folder) else []
        self.assertEqual(left, [], "pending response files left behind")

    # --- tests
    def test_full_tmpfs_keeps_tasks_until_space_is_freed(self):
        self.mount_small_tmpfs()
        w = self.new_worker()
        self.fill()
        w.submit("written to a full disk", task_id="DISK-1")
        w.write_task("DISK-F1.md", "---\ntask_id: DISK-F1\nfrom: disk\n---\nfile task\n")
        self.assert_error_logged(w, "DISK-1")
        time.sleep(SETTLE)
        self.assert_unanswered(w, ["DISK-1"])
        # The worker still accepts work, and keeps it queued behind the stuck answer.
        w.submit("second, behind the first", task_id="DISK-2")
        self.assertEqual(w.task("DISK-2").json()["state"], "queued")
        self.assertIn("DISK-F1.md", w.listdir(""))
        st = w.status()
        self.assertEqual((st.get("current_task") or {}).get("task_id"), "DISK-1", st)
        self.assertEqual(w.proc.poll(), None)
        self.free()
        for tid in ("DISK-1", "DISK-2", "DISK-F1"):
            self.assert_answered_once(w, tid)
        self.assert_no_pending()
        self.assertEqual(w.listdir("_active"), [])
        self.assertEqual(w.listdir("_realtime"), [])

    def test_read_only_folder_keeps_task_until_writable(self):
        self.mount_read_only()
        w = self.new_worker()
        w.submit("written to a read-only folder", task_id="RO-1")
        self.assert_error_logged(w, "RO-1")
        self.assertIn("Read-only file system", w.log_text())
        time.sleep(SETTLE)
        self.assert_unanswered(w, ["RO-1"])
        self.make_writable()
        self.assert_answered_once(w, "RO-1")
        self.assert_no_pending()

    def test_sigkill_while_full_then_free(self):
        self.mount_small_tmpfs()
        w = self.new_worker()
        self.fill()
        w.submit("killed while the disk is full", task_id="KILL-1")
        self.assert_error_logged(w, "KILL-1")
        w.kill()
        w2 = self.restart(w)
        # Recovery runs it again; the answer still cannot be written.
        self.assert_error_logged(w2, "KILL-1")
        time.sleep(SETTLE)
        self.assert_unanswered(w2, ["KILL-1"])
        self.free()
        self.assert_answered_once(w2, "KILL-1")
        self.assert_no_pending()
        self.assertEqual(w2.listdir("_active"), [])

    def test_sigterm_while_full_leaves_task_queued(self):
        self.mount_small_tmpfs()
        w = self.new_worker()
        self.fill()
        w.submit("stopped while the disk is full", task_id="TERM-1")
        self.assert_error_logged(w, "TERM-1")
        code, killed = w.stop()
        self.assertFalse(killed, "the worker ignored SIGTERM while its answer was stuck")
        self.assertEqual(code, 0)
        self.assertEqual([n for n in self.names() if not n.startswith(".")], [])
        self.assertIn("TERM-1.json", w.listdir("_active") + w.listdir("_realtime"))
        self.free()
        w2 = self.restart(w)
        self.assert_answered_once(w2, "TERM-1")
        self.assert_no_pending()


class InterruptedResponseWrite(WorkerTestCase):
    """A worker killed while it writes a response leaves a pending file that is empty or
    half-written (store.c: open O_CREAT|O_TRUNC, write, fdatasync, link). Recovery must
    not take that for an answer: the task runs again and gets one complete response.
    These are the states `scripts/chaos` produced (seed 2: CH-000299 archived with no
    response, and an empty ...-unknown-RESPONSE-unknown-failed.md)."""

    def leave_interrupted_write(self, task_id, pending_text):
        active = os.path.join(self.tmp, ".deia", "hive", "tasks", BOT, "_active")
        responses = os.path.join(self.tmp, ".deia", "hive", "responses")
        os.makedirs(active)
        os.makedirs(responses)
        with open(os.path.join(active, task_id + ".json"), "w") as f:
            f.write('{"task_id":"%s","command":"run me again","priority":"P0","from":"user",'
                    '"source":"http","accepted_ns":1}' % task_id)
        with open(os.path.join(responses, ".%s--%s.json.pending" % (BOT, task_id)), "w") as f:
            f.write(pending_text)

    def check_rerun(self, task_id):
        w = self.new_worker()
        name, text = w.wait_response(task_id, timeout=10)
        self.assertRegex(text, r"\n\*\*Response generated:\*\* \S+\n$",
                         "the response of %s is not a complete one: %r" % (task_id, text))
        self.assertIn("run me again", text)
        time.sleep(1.0)
        self.assertEqual(w.responses(task_id), [name])
        self.assertEqual(w.responses(), [name], "other response files appeared")
        self.assertEqual(w.task(task_id).json()["state"], "done")
        self.assertEqual(w.listdir("_active"), [])

    def test_empty_pending_file_is_not_an_answer(self):
        self.leave_interrupted_write("HALF-0", "")
        self.check_rerun("HALF-0")

    def test_half_written_pending_file_is_not_an_answer(self):
        self.leave_interrupted_write("HALF-1", "# RESPONSE: HALF-1 - Complete\n\n**From:** %s\n"
                                     "**To:** user\n**Task:** HALF-1\n**Sou" % BOT)
        self.check_rerun("HALF-1")


if __name__ == "__main__":
    main()
