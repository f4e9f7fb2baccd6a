"""End to end, issue 10's edges of the worker's process-level promises
(SPEC.md §1, §2.3, §6.2):

- case 8: a supervisor stopped with SIGSTOP (Ctrl-Z) freezes no worker: the
  WATCHDOG=1 datagrams that its full notify socket cannot take are dropped, the
  worker's log lines that its full stderr pipe cannot take are dropped (and
  counted), the workers keep serving meanwhile, and once continued the
  supervisor gives every worker a fresh watchdog period before judging it;
- case 5: one worker per bot per work dir: a second one is refused at start
  with exit 78 naming the holder; under `hive up` a worker restarted after a
  SIGKILL takes the lock at once, and no adapter holds it;
- case 19 (log): a newline in a task id cannot forge a line of the log;
- every line the worker logs at WARN is also a `warning` activity event;
- an idle worker wakes for nothing: with a watchdog of 1 s it sends no
  WATCHDOG=1 while it has no task (the supervisor sees in /proc that its loop
  waits in epoll_wait) and is not restarted; a task wakes it and runs; a
  worker stopped with SIGSTOP is still killed at its watchdog.

Run with /usr/bin/python3; the binaries come from $HIVE_BUILD_DIR.
"""

import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from hive_e2e import WorkerTestCase, proc_status, write_atomic  # noqa: E402
from test_supervisor_lifecycle import (WORKER_BIN, Hive, http_get, proc_stat,  # noqa: E402
                                       read_text, wait_for)


def health_ok(port, timeout=2.0):
    """True when the worker on PORT answers GET /health within TIMEOUT."""
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        c.request("GET", "/health")
        ok = c.getresponse().status == 200
        c.close()
        return ok
    except OSError:
        return False


def post_tasks(port, ids, timeout=3.0):
    """POST a mock task per id over one keep-alive connection; the ids accepted."""
    accepted = []
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        for task_id in ids:
            c.request("POST", "/api/task", json.dumps({"command": "hi", "task_id": task_id}),
                      {"Content-Type": "application/json"})
            r = c.getresponse()
            r.read()
            if r.status == 202:
                accepted.append(task_id)
    except OSError:
        pass
    finally:
        c.close()
    return accepted


def task_state(port, task_id, timeout=2.0):
    code, body = http_get("http://127.0.0.1:%d/api/task/%s" % (port, task_id), timeout)
    return body.get("state") if code == 200 and body else None


class StoppedSupervisorTest(unittest.TestCase):
    """Case 8: `hive up` stopped with SIGSTOP, then continued."""

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="hive-edges-notify-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.stopped = []

    def tearDown(self):
        for pid in self.stopped:  # never leave a process stopped
            try:
                os.kill(pid, signal.SIGCONT)
            except OSError:
                pass

    def stop(self, pid):
        os.kill(pid, signal.SIGSTOP)
        self.stopped.append(pid)

    def cont(self, pid):
        os.kill(pid, signal.SIGCONT)

    def up(self, bots, defaults):
        hive = Hive(self, self.dir, bots, defaults=defaults)
        hive.start()
        entries = hive.wait_running([b["id"] for b in bots])
        return hive, {i: e["pid"] for i, e in entries.items()}

    def test_sigstop_of_the_supervisor_freezes_no_worker(self):
        # A watchdog of 1 s: each worker sends WATCHDOG=1 twice a second, and
        # the notify socket's queue (net.unix.max_dgram_qlen, 10 here) is full
        # after a few seconds of a stopped supervisor.
        bots = [{"id": "BOT-N1"}, {"id": "BOT-N2"}]
        hive, pids = self.up(bots, {"watchdog": 1})
        self.stop(hive.proc.pid)
        deadline = time.monotonic() + 8.0
        served = 0
        while time.monotonic() < deadline:
            for b in bots:
                self.assertTrue(health_ok(hive.ports[b["id"]]),
                                "%s stopped answering /health while the supervisor was "
                                "stopped" % b["id"])
                served += 1
            time.sleep(0.5)
        self.cont(hive.proc.pid)
        time.sleep(4.0)  # several watchdog periods after the supervisor came back
        for b in bots:
            entry = hive.bot(b["id"])
            self.assertEqual(entry["status"], "running", entry)
            self.assertEqual(entry["pid"], pids[b["id"]], "%s was restarted" % b["id"])
            self.assertTrue(health_ok(hive.ports[b["id"]]))
        self.assertNotIn("watchdog timeout", hive.log())
        self.assertGreater(served, 0)

    def test_full_log_pipe_while_the_supervisor_is_stopped(self):
        # Without a watchdog the only path left is the worker's stderr: a pipe
        # to the stopped supervisor's log capture (64 KiB). Every task logs a
        # line; 700 tasks with long ids are well over 64 KiB.
        bots = [{"id": "BOT-L1"}]
        hive, pids = self.up(bots, {"watchdog": 0, "queue_max": 1000})
        port = hive.ports["BOT-L1"]
        self.stop(hive.proc.pid)
        ids = ["LOG-%04d-%s" % (i, "x" * 50) for i in range(700)]
        accepted = post_tasks(port, ids)
        self.assertEqual(len(accepted), len(ids), "tasks refused or the worker hung")
        wait_for(lambda: task_state(port, ids[-1]) == "done", 30, "the last task done")
        self.assertTrue(health_ok(port))
        self.cont(hive.proc.pid)
        log_path = os.path.join(self.dir, ".deia", "hive", "logs", "BOT-L1.log")
        wait_for(lambda: "log line(s) dropped" in read_text(log_path) or
                 health_ok(port) and post_tasks(port, ["AFTER-%d" % time.monotonic_ns()]) and
                 "log line(s) dropped" in read_text(log_path), 20,
                 "the worker saying how many log lines it dropped")
        self.assertEqual(hive.bot("BOT-L1")["pid"], pids["BOT-L1"])

    def test_a_stopped_supervisor_judges_no_worker_on_that_time(self):
        # The worker is stopped a moment before the supervisor, so no
        # WATCHDOG=1 of it waits in the socket; the supervisor is continued
        # long after the worker's watchdog expired, and the worker half a
        # second later. Judged on the time it was not running itself, the
        # supervisor would kill it at once; it must give a fresh period.
        bots = [{"id": "BOT-G1"}, {"id": "BOT-G2"}]
        hive, pids = self.up(bots, {"watchdog": 2})
        worker = pids["BOT-G1"]
        self.stop(worker)
        self.stop(hive.proc.pid)
        time.sleep(5.0)
        self.cont(hive.proc.pid)
        time.sleep(0.5)
        self.assertIsNotNone(proc_stat(worker), "the worker was killed as the supervisor "
                             "came back:\n" + hive.log())
        self.cont(worker)
        time.sleep(5.0)
        entry = hive.bot("BOT-G1")
        self.assertEqual(entry["pid"], worker, "the worker was killed: %s" % entry)
        self.assertEqual(entry["status"], "running")
        self.assertNotIn("watchdog timeout", hive.log())


def sleeps(pid):
    """Voluntary context switches of PID's main thread: one per wake-up."""
    return proc_status(pid, "voluntary_ctxt_switches")


class IdleWatchdogTest(unittest.TestCase):
    """An idle worker under a watchdog sleeps; a stuck one is still judged."""

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="hive-edges-idle-")
        self.addCleanup(shutil.rmtree, self.dir, True)

    def test_an_idle_worker_wakes_for_nothing_and_a_stopped_one_is_killed(self):
        hive = Hive(self, self.dir, [{"id": "IDLE"}], defaults={"watchdog": 1})
        hive.start()
        pid = hive.wait_running(["IDLE"])["IDLE"]["pid"]
        port = hive.ports["IDLE"]
        time.sleep(1.5)  # its last keep-alive: the supervisor said it looks itself
        before = sleeps(pid)
        time.sleep(4.0)  # eight half-periods: eight WATCHDOG=1 before
        woke = sleeps(pid) - before
        self.assertLessEqual(woke, 2, "an idle worker woke %d times in 4 s" % woke)
        entry = hive.bot("IDLE")
        self.assertEqual((entry["status"], entry["pid"]), ("running", pid), entry)
        # Work wakes it, and it keeps its keep-alives while the task runs.
        self.assertEqual(post_tasks(port, ["T1"]), ["T1"])
        wait_for(lambda: task_state(port, "T1") == "done", 20, "T1 done")
        self.assertEqual(hive.bot("IDLE")["pid"], pid)
        self.assertNotIn("watchdog timeout", hive.log())
        # Stopped where it waited: not waiting for work, judged.
        os.kill(pid, signal.SIGSTOP)
        try:
            wait_for(lambda: "IDLE: SIGKILL to pid %d (watchdog timeout)" % pid in hive.log(),
                     15, "the stopped worker killed at its watchdog")
        finally:
            try:
                os.kill(pid, signal.SIGCONT)
            except OSError:
                pass
        hive.wait_state("IDLE", "running", pred=lambda e: e["pid"] != pid)


class BotLockTest(WorkerTestCase):
    """Case 5: one worker per bot per work dir."""

    def test_second_worker_is_refused_naming_the_holder(self):
        first = self.new_worker("--adapter-type", "cli", "--", "sh", "-c", "sleep 2; echo once")
        first.submit("run me once", task_id="ONCE")
        first.wait_state("ONCE", ("running",))
        second = self.new_worker(wait_listen=False)
        code = second.wait_exit(10)
        self.assertEqual(code, 78, second.log_text())
        self.assertIn("pid %d" % first.proc.pid, second.log_text())
        first.wait_state("ONCE", ("done",))
        time.sleep(1.0)
        self.assertEqual(len(first.responses("ONCE")), 1, first.responses("ONCE"))
        # Once the first is gone, the bot is free again.
        first.stop()
        third = self.new_worker()
        self.assertTrue(third.alive())

    def test_supervised_worker_relocks_after_sigkill_and_adapters_never_hold_it(self):
        d = tempfile.mkdtemp(prefix="hive-edges-lock-")
        self.addCleanup(shutil.rmtree, d, True)
        bots = [{"id": "BOT-K1", "adapter": {"type": "cli",
                                             "command": ["sh", "-c", "sleep 30"]}}]
        hive = Hive(self, d, bots)
        hive.start()
        pid = hive.wait_running(["BOT-K1"])["BOT-K1"]["pid"]
        lock = os.path.realpath(os.path.join(d, ".deia", "hive", "locks", "BOT-K1.lock"))
        port = hive.ports["BOT-K1"]
        self.assertEqual(len(post_tasks(port, ["LONG"])), 1)
        wait_for(lambda: task_state(port, "LONG") == "running", 10, "task running")

        def holders():
            out = []
            for name in os.listdir("/proc"):
                if not name.isdigit():
                    continue
                try:
                    for fd in os.listdir("/proc/%s/fd" % name):
                        if os.readlink("/proc/%s/fd/%s" % (name, fd)) == lock:
                            out.append(int(name))
                except OSError:
                    pass
            return out
        self.assertEqual(holders(), [pid], "only the worker holds the lock")
        # A standalone worker for the same bot and work dir is refused.
        p = subprocess.run([WORKER_BIN, "BOT-K1", "--work-dir", d], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=20)
        self.assertEqual(p.returncode, 78, p.stdout.decode())
        self.assertIn("pid %d" % pid, p.stdout.decode())
        # SIGKILL: the restarted worker takes the lock at once.
        os.kill(pid, signal.SIGKILL)
        entry = hive.wait_state("BOT-K1", "running", pred=lambda b: b["pid"] != pid)
        self.assertEqual(holders(), [entry["pid"]])
        self.assertNotIn("already served", read_text(
            os.path.join(d, ".deia", "hive", "logs", "BOT-K1.log")))


class LogAndWarningTest(WorkerTestCase):
    """Case 19 (log part) and WARN lines as `warning` activity events."""

    def test_newlines_in_a_task_id_cannot_forge_log_lines(self):
        w = self.new_worker()
        forged = "FORGED 2026-01-01T00:00:00.000Z ERROR [%s] injected" % w.bot
        text = "---\ntask_id: \"evil\\n%s\"\nfrom: \"me\\n%s\"\n---\nhello\n" % (forged, forged)
        write_atomic(os.path.join(w.queue_dir, "evil.md"), text)
        wait_for(lambda: w.responses() or None, 20, "an answer to the task file")
        time.sleep(0.3)
        for line in w.log_text().splitlines():
            self.assertFalse(line.startswith("FORGED"), "a forged log line: %r" % line)
        # The id is no valid id (a line break): the task is answered failed
        # under its file's stem, and what the id held never becomes a line.
        self.assertTrue(w.responses("evil"), "answered under the file's stem")

    def test_warn_lines_are_warning_events(self):
        w = self.new_worker("--adapter-type", "cli", "--stop-grace", "0.5", "--",
                            "sh", "-c", "sleep 30")
        w.submit("long", task_id="LEFT")
        w.wait_state("LEFT", ("running",))
        code, _ = w.stop()
        self.assertEqual(code, 0)
        self.assertRegex(w.log_text(), r"WARN .*did not finish within")
        warnings = [e for e in w.activity() if e["event_type"] == "warning"]
        self.assertTrue(any("did not finish within" in (e.get("result") or "")
                            for e in warnings), w.activity())
        for e in warnings:
            self.assertEqual(e["bot_id"], w.bot)
            self.assertEqual(e["operation"], "Warning")


if __name__ == "__main__":
    unittest.main(verbosity=2)
