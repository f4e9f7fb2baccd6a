"""The store's and engine's promises at their edges (issue 10; SPEC §2, §2.1-§2.3, §3, §7).

One regression test per case of issue 10 that the store/engine owns (the
number is the issue's): each one failed on the binaries of f183974.

Run: HIVE_BUILD_DIR=build HIVE_SOURCE_DIR=. /usr/bin/python3 tests/e2e/test_edges_store.py
"""

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import http.client

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hive_e2e import (BOT, WorkerTestCase, main, parse_response, run_async,  # noqa: E402
                      wait_for, ws_recv_json, ws_recv_until)


def post_raw(w, body_bytes, timeout=60):
    """POST /api/task with a body of any size (curl's argv is not needed)."""
    c = http.client.HTTPConnection("127.0.0.1", w.port, timeout=timeout)
    try:
        c.request("POST", "/api/task", body=body_bytes,
                  headers={"Content-Type": "application/json"})
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def events(w, kind, task_id=None):
    return [e for e in w.activity() if e["event_type"] == kind
            and (task_id is None or e.get("task_id") == task_id)]


def kill_and_wait(w):
    w.proc.send_signal(signal.SIGKILL)
    w.proc.wait(10)



def build_shim(test, source, name):
    """SOURCE compiled as TEST.tmp/NAME.so, for LD_PRELOAD; skips TEST without a compiler."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if not cc:
        test.skipTest("no C compiler for the %s shim" % name)
    src = os.path.join(test.tmp, name + ".c")
    so = os.path.join(test.tmp, name + ".so")
    with open(src, "w") as f:
        f.write(source)
    subprocess.run([cc, "-shared", "-fPIC", "-o", so, src, "-ldl"], check=True)
    return so

def preload_env(so, **env):
    """The environment of a worker run with the shim SO preloaded, and ENV.
    The shim comes before ASan's runtime: ASan is told that is fine."""
    env.update(LD_PRELOAD=so,
               ASAN_OPTIONS="verify_asan_link_order=0:detect_leaks=1:abort_on_error=0")
    return env


class Ids(WorkerTestCase):
    """Case 1: ids starting with a dot are refused at every door."""

    def test_leading_dot_refused_over_http(self):
        w = self.new_worker()
        for bad in (".x", ".x.tmp", "..", "a b", "x" * 65):
            r = w.post("/api/task", {"command": "hi", "task_id": bad})
            self.assertEqual(r.status, 400, bad)
            self.assertEqual(r.json()["detail"], "invalid task_id")
        w.submit("hi", task_id="a.b_c-9")
        w.wait_state("a.b_c-9", "done")
        self.assertEqual(w.listdir("_realtime"), [])

    def test_leading_dot_refused_over_websocket(self):
        import websockets
        w = self.new_worker()

        async def go():
            async with websockets.connect(w.ws_url, open_timeout=10, ping_interval=None) as ws:
                await ws.send(json.dumps({"type": "task", "command": "hi", "task_id": ".x"}))
                return await ws_recv_json(ws)
        msg = run_async(go())
        self.assertEqual(msg["type"], "error", msg)

    def test_file_task_with_dot_id_answered_failed(self):
        w = self.new_worker()
        w.write_task("dotted.md", "---\ntask_id: .hidden\n---\nbody\n")
        name, text = w.wait_response("dotted")
        self.assertIn("-failed.md", name)
        self.assertIn("invalid task_id", parse_response(text)["error"])
        wait_for(lambda: w.listdir("_archive") == ["dotted.md"], what="archived")


class Sizes(WorkerTestCase):
    """Case 2: whatever was accepted comes back, whatever its size."""

    def test_17_mib_realtime_task_recovered(self):
        w = self.new_worker("--max-body", str(40 << 20))
        self.assertEqual(w.post("/api/pause").status, 200)
        body = json.dumps({"command": "a" * (17 << 20), "task_id": "BIG-1"}).encode()
        status, _ = post_raw(w, body)
        self.assertEqual(status, 202)
        kill_and_wait(w)
        os.unlink(w.pause_file)
        w2 = self.restart(w, "--max-body", str(40 << 20))
        j = w2.wait_state("BIG-1", ("done", "failed"), timeout=60)
        self.assertEqual(j["state"], "done", j)

    def test_17_mib_file_task_runs(self):
        w = self.new_worker()
        w.write_task("huge.md", "**From:** big\n\n" + "b" * (17 << 20) + "\n")
        name, text = w.wait_response("huge", timeout=60)
        self.assertIn("-complete.md", name, parse_response(text)["error"])


class Transient(WorkerTestCase):
    """Case 3: out of descriptors, a task waits; it never fails for it."""

    def test_emfile_holds_tasks_until_descriptors_are_back(self):
        w = self.new_worker("--adapter-type", "cli", "--", "cat")
        self.assertEqual(w.post("/api/pause").status, 200)
        w.submit("realtime one", task_id="FD-1")
        w.write_task("fd-file.md", "file one\n")
        wait_for(lambda: w.status()["queue"]["file"] == 1, what="file task queued")
        pid = w.proc.pid
        soft, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
        used = len(os.listdir("/proc/%d/fd" % pid))
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (used, hard))
        try:
            os.unlink(w.pause_file)   # inotify tells the worker; no descriptor needed
            wait_for(lambda: "waits and runs once that passes" in w.log_text(), 10,
                     what="the worker holding the task")
            time.sleep(1.5)           # a retry or two while still short
            self.assertEqual(w.responses(), [], "no task may fail for a missing descriptor")
        finally:
            resource.prlimit(pid, resource.RLIMIT_NOFILE, (soft, hard))
        for tid in ("FD-1", "fd-file"):
            name, text = w.wait_response(tid)
            self.assertIn("-complete.md", name, parse_response(text)["error"])
        self.assertTrue(events(w, "warning"), "a warning event for the held task")

    def test_file_written_in_place_while_short_of_descriptors_is_seen(self):
        """A file written in place is seen by inotify, found too young, and
        looked at again half a second later. When that look cannot open the
        folder (EMFILE), it must be tried again, not left to the safety-net
        rescan (300 s). Found by scripts/chaos (seed 1980832775): a task
        written slowly sat in its queue through the 60 s settle."""
        w = self.new_worker()
        path = os.path.join(w.queue_dir, "fd-young.md")
        pid = w.proc.pid
        soft, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
        with open(path, "w") as f:
            f.write("written in place\n")
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (0, hard))
        try:
            time.sleep(1.5)           # the young-file look (0.5 s) falls in here
            self.assertEqual(w.responses(), [])
        finally:
            resource.prlimit(pid, resource.RLIMIT_NOFILE, (soft, hard))
        name, text = w.wait_response("fd-young", timeout=10)
        self.assertIn("-complete.md", name, parse_response(text)["error"])


    def test_submission_without_descriptors_gets_503_retry_after(self):
        """A realtime task the worker cannot store was never accepted: 503 with
        Retry-After (a resource that comes back), not 500; the retry is accepted."""
        w = self.new_worker()
        conn = http.client.HTTPConnection("127.0.0.1", w.port, timeout=10)
        body = json.dumps({"command": "x", "task_id": "NOFD-1"})
        hdrs = {"Content-Type": "application/json"}
        conn.request("GET", "/health")
        conn.getresponse().read()         # the connection is open before the limit
        pid = w.proc.pid
        soft, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
        used = len(os.listdir("/proc/%d/fd" % pid))
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (used, hard))
        try:
            conn.request("POST", "/api/task", body, hdrs)
            r = conn.getresponse()
            data = json.loads(r.read())
        finally:
            resource.prlimit(pid, resource.RLIMIT_NOFILE, (soft, hard))
        conn.close()
        self.assertEqual(r.status, 503, data)
        self.assertEqual(r.getheader("Retry-After"), "1")
        self.assertIn("cannot store the task", data["detail"])
        self.assertEqual(w.task("NOFD-1").status, 404, "a refused task is not held")
        w.submit("x", task_id="NOFD-1")
        name, text = w.wait_response("NOFD-1")
        self.assertIn("-complete.md", name, parse_response(text)["error"])


RECOVERY_GATE_SHIM = r"""
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
/* The worker's first look at _active/ (recovery's first step) waits while
 * the gate file exists, saying so with a folder (no descriptor). */
DIR *opendir(const char *name)
{
    const char *g = getenv("HIVE_TEST_RECOVERY_GATE");
    size_t n = strlen(name);
    if (g && n > 8 && strcmp(name + n - 8, "/_active") == 0 && access(g, F_OK) == 0) {
        char reached[4096];
        snprintf(reached, sizeof reached, "%s.reached", g);
        mkdir(reached, 0700);
        for (int i = 0; i < 3000 && access(g, F_OK) == 0; i++)
            usleep(10000);
    }
    return ((DIR *(*)(const char *))dlsym(RTLD_NEXT, "opendir"))(name);
}
"""


class RecoveryShortage(WorkerTestCase):
    """Recovery at start short of descriptors: what a killed worker left in
    _active/ and _realtime/ (accepted, not answered) is recovered as soon as
    descriptors are back, each task answered exactly once. It was skipped
    (opendir failed with EMFILE) and waited for the next restart.

    The limit is lowered across the moment of recovery: the worker raises its
    soft limit to the hard one first thing, and a hard limit cannot be raised
    again without CAP_SYS_RESOURCE, so it cannot be started with a tiny one.
    A shim holds its first opendir of _active/ while the test lowers its soft
    limit to the descriptors it holds (prlimit); every open of recovery then
    fails with a real EMFILE until the test gives the limit back."""

    def build_shim(self):
        return build_shim(self, RECOVERY_GATE_SHIM, "gate")

    def test_recovery_short_of_descriptors_is_tried_again(self):
        so = self.build_shim()
        w = self.new_worker()
        self.assertEqual(w.post("/api/pause").status, 200)
        for tid in ("REC-Q", "REC-RUN"):
            w.submit("left " + tid, task_id=tid)
        w.write_task("rec-file.md", "left running\n")
        wait_for(lambda: w.status()["queue"]["file"] == 1, what="file task queued")
        kill_and_wait(w)
        # As the killed worker would have left them running: claimed.
        os.makedirs(w.sub("_active"), exist_ok=True)  # made by a worker's first claim
        os.rename(w.sub("_realtime/REC-RUN.json"), w.sub("_active/REC-RUN.json"))
        os.rename(w.sub("rec-file.md"), w.sub("_active/rec-file.md"))
        os.unlink(w.pause_file)
        gate = os.path.join(self.tmp, "gate")
        open(gate, "w").close()
        w2 = self.restart(w, env=preload_env(so, HIVE_TEST_RECOVERY_GATE=gate),
                          wait_listen=False)
        try:
            wait_for(lambda: os.path.isdir(gate + ".reached"), 20, what="recovery starting")
            pid = w2.proc.pid
            soft, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
            used = len(os.listdir("/proc/%d/fd" % pid))
            resource.prlimit(pid, resource.RLIMIT_NOFILE, (used, hard))
            try:
                os.unlink(gate)
                w2.wait_listening()   # recovery has run, short of descriptors
                self.assertEqual(w2.responses(), [])
            finally:
                resource.prlimit(pid, resource.RLIMIT_NOFILE, (soft, hard))
        finally:
            if os.path.exists(gate):
                os.unlink(gate)
        for tid in ("REC-Q", "REC-RUN", "rec-file"):
            name, text = w2.wait_response(tid, timeout=15)
            self.assertIn("-complete.md", name, parse_response(text)["error"])
        self.assertIn("recovery: ", w2.log_text(), "recovery was short of descriptors")
        wait_for(lambda: w2.listdir("_active") == [], what="nothing left claimed")
        self.assertEqual(w2.listdir("_realtime"), [])
        for tid in ("REC-Q", "REC-RUN", "rec-file"):
            self.assertEqual(len(w2.responses(tid)), 1, tid)


RECOVERY_SHORT_SHIM = r"""
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
/* Recovery's look at _active/ meets "Too many open files" while the file
 * $HIVE_TEST_SHORT exists; every other open works as ever. */
DIR *opendir(const char *name)
{
    const char *g = getenv("HIVE_TEST_SHORT");
    size_t n = strlen(name);
    if (g && n > 8 && strcmp(name + n - 8, "/_active") == 0 && access(g, F_OK) == 0) {
        errno = EMFILE;
        return NULL;
    }
    return ((DIR *(*)(const char *))dlsym(RTLD_NEXT, "opendir"))(name);
}
"""


class RecoveryWindow(WorkerTestCase):
    """While recovery is unfinished, a submission is refused (503 with
    Retry-After), at both doors: until the last run's tasks are read back,
    an id cannot be checked against them. It was accepted: a new task with the
    id of one the killed worker was running (in _active/, not yet read back)
    was taken as new, and the id had two tasks."""

    def test_submission_during_unfinished_recovery_is_refused(self):
        so = build_shim(self, RECOVERY_SHORT_SHIM, "short")
        w = self.new_worker()
        self.assertEqual(w.post("/api/pause").status, 200)
        w.submit("left first", task_id="WIN-1")
        kill_and_wait(w)
        # As the killed worker would have left it running: claimed.
        os.makedirs(w.sub("_active"), exist_ok=True)  # made by a worker's first claim
        os.rename(w.sub("_realtime/WIN-1.json"), w.sub("_active/WIN-1.json"))
        os.unlink(w.pause_file)
        short = os.path.join(self.tmp, "short")
        open(short, "w").close()
        w2 = self.restart(w, env=preload_env(so, HIVE_TEST_SHORT=short))
        try:
            wait_for(lambda: "recovery: " in w2.log_text(), what="recovery short of descriptors")
            for tid in ("WIN-1", "WIN-2"):
                r = w2.post("/api/task", {"command": "second " + tid, "task_id": tid})
                self.assertEqual(r.status, 503, r)
                self.assertIn("recovering", r.json()["detail"])
                self.assertEqual(r.header("Retry-After"), "1", r)

            async def over_ws():
                import websockets
                async with websockets.connect(w2.ws_url, open_timeout=10, ping_interval=None) as ws:
                    await ws.send(json.dumps({"type": "task", "task_id": "WIN-1",
                                              "command": "second over ws"}))
                    return await ws_recv_until(ws, lambda m: m.get("type") == "error", 10)
            err = run_async(over_ws())[-1]
            self.assertEqual(err.get("status_code"), 503, err)
            self.assertIn("recovering", err["message"])
            self.assertEqual(w2.responses(), [])
        finally:
            os.unlink(short)
        name, text = w2.wait_response("WIN-1", timeout=15)
        self.assertIn("left first", text)
        self.assertNotIn("second WIN-1", text)
        w2.submit("after", task_id="WIN-2")
        w2.wait_response("WIN-2")
        self.assertEqual(len(w2.responses("WIN-1")), 1)
        self.assertEqual(w2.post("/api/task", {"command": "again", "task_id": "WIN-1"}).status,
                         409)


class Folders(WorkerTestCase):
    """Case 4: a folder of the layout removed at runtime is made again."""

    def test_archive_removed(self):
        w = self.new_worker()
        w.submit("x", task_id="ARC-0")  # _archive/ is made by the first answer
        w.wait_state("ARC-0", "done")
        shutil.rmtree(w.sub("_archive"))
        w.submit("x", task_id="ARC-1")
        w.wait_state("ARC-1", "done")
        self.assertEqual(w.listdir("_archive"), ["ARC-1.json"])
        self.assertEqual(w.listdir("_active"), [])
        w.stop()
        w2 = self.restart(w)
        time.sleep(1.0)
        self.assertEqual(len(w2.responses("ARC-1")), 1)

    def test_active_removed(self):
        w = self.new_worker()
        w.submit("x", task_id="ACT-0")  # _active/ is made by the first claim
        w.wait_state("ACT-0", "done")
        os.rmdir(w.sub("_active"))
        w.submit("x", task_id="ACT-1")
        self.assertEqual(w.wait_state("ACT-1", ("done", "failed"))["state"], "done")

    def test_realtime_removed(self):
        w = self.new_worker()
        w.submit("x", task_id="RT-0")  # _realtime/ is made by the first accepted task
        w.wait_state("RT-0", "done")
        os.rmdir(w.sub("_realtime"))
        w.submit("x", task_id="RT-1")
        w.wait_state("RT-1", "done")

    def test_file_task_makes_active_not_realtime(self):
        # A fresh worker's first file task makes _active/ (the claim) and
        # leaves _realtime/ unmade; a file task is answered as ever.
        w = self.new_worker()
        self.assertFalse(os.path.lexists(w.sub("_active")))
        self.assertFalse(os.path.lexists(w.sub("_realtime")))
        w.write_task("first-file.md", "a file task first\n")
        w.wait_response("first-file", timeout=10)
        self.assertTrue(os.path.isdir(w.sub("_active")))
        self.assertEqual(w.listdir("_active"), [])
        self.assertFalse(os.path.lexists(w.sub("_realtime")))

    def test_queue_folder_removed_is_watched_again(self):
        w = self.new_worker("--rescan", "3600")
        shutil.rmtree(w.queue_dir)
        wait_for(lambda: os.path.isdir(w.queue_dir), 5, what="the queue folder made again")
        time.sleep(0.2)
        w.write_task("again.md", "after the removal\n")
        w.wait_response("again", timeout=5)


class NotRegular(WorkerTestCase):
    """Case 10 (and 17's queue half): only regular files are tasks."""

    def test_fifo_over_a_queued_task_blocks_nothing(self):
        w = self.new_worker()
        self.assertEqual(w.post("/api/pause").status, 200)
        w.write_task("victim.md", "a task\n")
        wait_for(lambda: w.status()["queue"]["file"] == 1, what="queued")
        fifo = os.path.join(self.tmp, "fifo")
        os.mkfifo(fifo)
        os.rename(fifo, w.sub("victim.md"))
        os.unlink(w.pause_file)
        w.submit("after the fifo", task_id="AFTER-FIFO")
        w.wait_state("AFTER-FIFO", "done", timeout=10)
        self.assertEqual(w.get("/health", timeout=3).status, 200)
        self.assertEqual(w.responses("victim"), [])
        wait_for(lambda: [e for e in events(w, "warning") if "victim.md" in (e.get("error") or "")],
                 5, what="a warning naming the FIFO")
        time.sleep(0.5)
        self.assertEqual(len([e for e in events(w, "warning")
                              if "victim.md" in (e.get("error") or "")]), 1, "warned once")
        self.assertTrue(os.path.exists(w.sub("victim.md")), "left alone")

    def test_symlink_in_queue_not_followed(self):
        w = self.new_worker()
        outside = os.path.join(self.tmp, "secret.md")
        with open(outside, "w") as f:
            f.write("SECRET CONTENT\n")
        os.symlink(outside, w.sub("link.md"))
        w.write_task("real.md", "real task\n")
        w.wait_response("real")
        time.sleep(0.5)
        self.assertEqual(w.responses("link"), [])
        for n in w.responses():
            self.assertNotIn("SECRET CONTENT", w.read_response(n))
        self.assertTrue(os.path.islink(w.sub("link.md")))


class Poison(WorkerTestCase):
    """Case 11: a task that kills its worker 3 times is answered failed."""

    ADAPTER = ("--adapter-type", "cli", "--", "sh", "-c",
               'case "$HIVE_TASK_ID" in POISON*) kill -9 $PPID; sleep 5;; esac; echo ran')

    def test_poison_task_answered_after_three_deaths(self):
        w = self.new_worker(*self.ADAPTER)
        self.assertEqual(w.post("/api/pause").status, 200)
        w.submit("boom", task_id="POISON-1")
        w.submit("fine", task_id="BEHIND-1", priority="P5")
        os.unlink(w.pause_file)
        for _ in range(3):            # deaths 1, 2, 3: the third start answers it
            w.wait_exit(10)
            self.assertIsNotNone(w.returncode, "the task kills its worker")
            w = self.restart(w, *self.ADAPTER)
        name, text = w.wait_response("POISON-1", timeout=10)
        self.assertIn("-failed.md", name)
        self.assertEqual(parse_response(text)["error"],
                         "worker died 3 times while running this task")
        name, _ = w.wait_response("BEHIND-1", timeout=10)
        self.assertIn("-complete.md", name)
        # The answer is the commit point; archiving the task and dropping
        # the poison's death markers follow it.
        wait_for(lambda: w.listdir("_active") == [], 10, what="_active/ emptied")
        w.stop()
        w2 = self.restart(w, *self.ADAPTER)
        time.sleep(1.0)
        self.assertTrue(w2.alive())
        self.assertEqual(len(w2.responses("POISON-1")), 1)


SHIM = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <unistd.h>
static void gate(void)
{
    const char *g = getenv("HIVE_TEST_SYNC_GATE");
    for (int i = 0; g && i < 3000 && access(g, F_OK) == 0; i++)
        usleep(10000);
}
int syncfs(int fd) { gate(); return ((int (*)(int))dlsym(RTLD_NEXT, "syncfs"))(fd); }
int fsync(int fd) { gate(); return ((int (*)(int))dlsym(RTLD_NEXT, "fsync"))(fd); }
int fdatasync(int fd) { gate(); return ((int (*)(int))dlsym(RTLD_NEXT, "fdatasync"))(fd); }
"""


class SyncOffLoop(WorkerTestCase):
    """Case 12: a sync that takes long blocks no request."""

    def build_shim(self):
        return build_shim(self, SHIM, "shim")

    def test_health_answers_while_a_sync_hangs(self):
        if "asan" in os.environ.get("HIVE_BUILD_DIR", ""):
            self.skipTest("LD_PRELOAD beside ASan")
        so = self.build_shim()
        gate = os.path.join(self.tmp, "gate")
        w = self.new_worker(env={"LD_PRELOAD": so, "HIVE_TEST_SYNC_GATE": gate})
        open(gate, "w").close()
        result = {}
        t = threading.Thread(target=lambda: result.update(
            r=w.post("/api/task", {"command": "x", "task_id": "SYNC-1"}, timeout=40)))
        t.start()
        try:
            time.sleep(0.5)
            self.assertTrue(t.is_alive(), "the 202 waits for its sync")
            r = w.get("/health", timeout=3)
            self.assertEqual(r.status, 200)
            self.assertEqual(w.get("/status", timeout=3).status, 200)
        finally:
            os.unlink(gate)
            t.join(45)
        self.assertEqual(result["r"].status, 202)
        w.wait_state("SYNC-1", "done")


class StopWhileAnAnswerSyncs(WorkerTestCase):
    """The stop's grace runs out for a running task while the answer of the
    task before it is still being made durable: the running one is left
    queued and freed, and the answer that lands afterwards must not reach it
    (its events waited behind that answer). fuzz_json_task found this under
    ASan: a heap-use-after-free in events_activity; in an ASan build the old
    code aborts here."""

    def test_answer_lands_after_the_grace_freed_the_next_task(self):
        so = build_shim(self, SHIM, "shim")
        gate = os.path.join(self.tmp, "gate")
        w = self.new_worker("--stop-grace", "0.5", "--adapter-type", "cli", "--",
                            "sh", "-c", "{content}",
                            env=preload_env(so, HIVE_TEST_SYNC_GATE=gate))
        for tid, cmd in (("ANS-A", "sleep 1; echo a"), ("RUN-B", "sleep 30")):
            self.assertEqual(w.post("/api/task", {"command": cmd, "task_id": tid}).status, 202)
        open(gate, "w").close()  # A's answer waits in its sync from now on
        w.wait_state("RUN-B", "running")  # B started while A's answer syncs
        self.assertNotIn(w.get("/api/task/ANS-A").json().get("state"), ("done", "failed"),
                         "A's answer went through before the gate: nothing was tested")
        w.proc.send_signal(signal.SIGTERM)
        time.sleep(1.5)  # the grace ran out: B was left queued and freed
        self.assertTrue(w.alive(), "the worker must wait for A's answer")
        os.unlink(gate)
        code = w.proc.wait(30)
        self.assertEqual(w.sanitizer_reports(), [], w.all_logs()[-3000:])
        self.assertEqual(code, 0, w.all_logs()[-3000:])
        self.assertEqual(len(w.responses("ANS-A")), 1)
        self.assertEqual(w.responses("RUN-B"), [])


class Symlinks(WorkerTestCase):
    """Case 17: nothing is written through a link the worker did not make."""

    def test_symlink_at_pending_temp_name(self):
        victim = os.path.join(self.tmp, "victim.txt")
        with open(victim, "w") as f:
            f.write("precious\n")
        w = self.new_worker()
        pend = w.path(".deia", "hive", "responses", ".pending", BOT)
        os.makedirs(pend, exist_ok=True)
        os.symlink(victim, os.path.join(pend, "SYM-1.json.pending.tmp"))
        w.submit("x", task_id="SYM-1")
        w.wait_state("SYM-1", "done")
        with open(victim) as f:
            self.assertEqual(f.read(), "precious\n")
        self.assertEqual(len(w.responses("SYM-1")), 1)

    def test_symlinked_layout_folder_refused_at_start(self):
        elsewhere = tempfile.mkdtemp(prefix="hive-e2e-elsewhere-")
        self.addCleanup(shutil.rmtree, elsewhere, True)
        q = os.path.join(self.tmp, ".deia", "hive", "tasks", BOT)
        os.makedirs(q)
        os.symlink(elsewhere, os.path.join(q, "_archive"))
        w = self.new_worker(wait_listen=False)
        self.assertEqual(w.wait_exit(10), 78)
        self.assertIn("symlink", w.log_text())
        self.assertEqual(os.listdir(elsewhere), [])


class PlantedLogs(WorkerTestCase):
    """SPEC §7: a symlink or FIFO planted where a log of the worker belongs (its
    activity log, events log, timeline) is replaced by a file of its own: nothing
    is written through the link, and a FIFO holds up no start."""

    LOGS = {"activity": "BOT-%s-activity.jsonl", "events": "%s-events.jsonl",
            "timeline": "%s-timeline.jsonl"}

    def planted(self, log, plant):
        """A worker started once (so its layout is made), stopped, PLANT(path)
        done at LOG's path, and started again without waiting for it."""
        w = self.new_worker()
        w.submit("before", task_id="BEFORE-1")
        w.wait_response("BEFORE-1")
        w.stop()
        path = w.path(".deia", "bot-logs", self.LOGS[log] % BOT)
        if os.path.lexists(path):
            os.unlink(path)
        plant(path)
        w = self.restart(w, wait_listen=False)
        w.wait_listening(timeout=8)
        self.assertEqual(w.get("/health", timeout=3).status, 200)
        return w, path

    def answered_into(self, w, path, task_id):
        """TASK_ID is answered, and the file at PATH is a regular one that names it."""
        w.submit("a task after the plant", task_id=task_id)
        w.wait_response(task_id)

        def logged():
            with open(path, "rb") as f:
                return task_id.encode() in f.read()
        wait_for(lambda: not os.path.islink(path) and os.path.isfile(path) and logged(), 10,
                 what="%s as a regular file holding %s" % (path, task_id))

    def symlink_case(self, log):
        outside = os.path.join(self.tmp, "outside.txt")
        with open(outside, "w") as f:
            f.write("precious\n")
        w, path = self.planted(log, lambda p: os.symlink(outside, p))
        self.answered_into(w, path, "LINKED-1")
        time.sleep(0.3)
        with open(outside) as f:
            self.assertEqual(f.read(), "precious\n", "nothing written through the link")
        self.assertIn("was a symlink", w.log_text())

    def fifo_case(self, log):
        w, path = self.planted(log, os.mkfifo)
        self.answered_into(w, path, "FIFO-1")
        self.assertIn("was a FIFO", w.log_text())

    def test_symlink_at_activity_log(self):
        self.symlink_case("activity")

    def test_symlink_at_events_log(self):
        self.symlink_case("events")

    def test_symlink_at_timeline(self):
        self.symlink_case("timeline")

    def test_fifo_at_activity_log(self):
        self.fifo_case("activity")

    def test_fifo_at_events_log(self):
        self.fifo_case("events")

    def test_fifo_at_timeline(self):
        self.fifo_case("timeline")


class Headers(WorkerTestCase):
    """Case 19: no input forges a header line."""

    def test_newlines_in_from(self):
        w = self.new_worker()
        forged = "evil\n**Task:** FORGED\n**Status:** \u2713 SUCCESS\r\x1b[2J"
        w.submit("x", task_id="HDR-1", **{"from": forged})
        w.wait_state("HDR-1", "done")
        text = w.read_response(w.responses("HDR-1")[0])
        lines = text.split("\n")
        self.assertEqual(lines[4], "**Task:** HDR-1")
        self.assertTrue(lines[3].startswith("**To:** evil "), lines[3])
        self.assertEqual([ln for ln in lines if ln.startswith("**Task:**")], ["**Task:** HDR-1"])
        self.assertNotIn("\r", text.split("## Output")[0])
        self.assertNotIn("\x1b", text.split("## Output")[0])


    def test_newline_in_a_task_file_name(self):
        w = self.new_worker()
        w.write_task("nl\n**Status:** forged.md", "body\n")
        name = wait_for(lambda: [n for n in w.responses() if "RESPONSE-nl_" in n], 10,
                        what="the response of the oddly named file")[0]
        lines = w.read_response(name).split("\n")
        self.assertEqual(lines[0], "# RESPONSE: nl___Status____forged - Failed")
        self.assertEqual(lines[4], "**Task:** nl___Status____forged")
        self.assertEqual([ln for ln in lines if ln.startswith("**Status:**")],
                         ["**Status:** \u2717 FAILED"])
        self.assertNotIn("\ntask nl\n", w.log_text())


class Suffixes(WorkerTestCase):
    """Case 20: the -N suffix does not run out."""

    def test_1001st_answer_of_a_minute(self):
        w = self.new_worker()
        os.makedirs(w.responses_dir, exist_ok=True)
        now = time.time()
        for t in (now, now + 60):
            base = "%s-%s-user-RESPONSE-SUF-1-complete" % (
                time.strftime("%Y-%m-%d-%H%M", time.localtime(t)), BOT)
            for n in range(1, 1001):
                name = base + (".md" if n == 1 else "-%d.md" % n)
                open(os.path.join(w.responses_dir, name), "w").close()
        w.submit("x", task_id="SUF-1")
        j = w.wait_state("SUF-1", "done", timeout=10)
        self.assertTrue(j["result"]["response_file"].endswith("-1001.md"), j)


class Priority(WorkerTestCase):
    """Case 22: the priority is the digit right after P."""

    def test_deia_blocking_priority_runs_first(self):
        w = self.new_worker()
        self.assertEqual(w.post("/api/pause").status, 200)
        w.write_task("normal.md", "**Priority:** P2\n\nnormal\n", mtime=time.time() - 100)
        w.write_task("blocking.md", "**Priority:** P0 (BLOCKING - PROCESS ISSUE)\n\nurgent\n")
        w.write_task("nodigit.md", "**Priority:** high\n\nlast\n", mtime=time.time() - 200)
        wait_for(lambda: w.status()["queue"]["file"] == 3, what="three queued")
        os.unlink(w.pause_file)
        for tid in ("normal", "blocking", "nodigit"):
            w.wait_response(tid)
            w.wait_state(tid, ("done",))  # logged once durable (SPEC 2.3)
        order = [e["task_id"] for e in w.activity() if e["event_type"] == "task_started"]
        self.assertEqual(order, ["blocking", "normal", "nodigit"])


class ReceivedEvents(WorkerTestCase):
    """SPEC §2.3: every task's task_received comes before its task_started."""

    def test_file_task_received_before_started(self):
        w = self.new_worker()
        w.write_task("seen.md", "hello\n")
        w.wait_response("seen")
        kinds = [e["event_type"] for e in w.activity() if e.get("task_id") == "seen"]
        self.assertIn("task_received", kinds)
        self.assertLess(kinds.index("task_received"), kinds.index("task_started"))


if __name__ == "__main__":
    main()
