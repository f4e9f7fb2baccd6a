"""More of the event stream (SPEC §8), end to end, on real binaries:

- cancelled tasks (one queued, one running) end with `task_cancelled`, once
  and in order, on a worker's own stream and on the supervisor's merge;
- a task sent through the supervisor's proxy is told in full on the
  worker's own stream (and with the same seqs on the merge);
- a cursor older than what the supervisor keeps, or from the future, gets
  `event: resync` (the supervisor's log made to rotate by real tasks);
- Last-Event-ID resumes exactly after 200 tasks and a SIGKILL of a worker,
  and of the supervisor (checked against a reader that stayed connected).

Every stream is read by test_events.SSE (raw socket, WHATWG parsing);
tasks are sent and cancelled with curl (hive_e2e.curl).

Run: HIVE_BUILD_DIR=build /usr/bin/python3 tests/e2e/test_events_more.py
"""

import datetime
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hive_e2e import WorkerTestCase, curl, main, wait_for, write_atomic  # noqa: E402
from test_supervisor_front import HIVE_BIN, Hive  # noqa: E402
import test_events as te  # noqa: E402  (module import: its TestCases are not re-run here)

SSE, TASK_END, stored, check_lives = te.SSE, te.TASK_END, te.stored, te.check_lives
SHELL_ARGS = ("--adapter-type", "cli", "--", "sh", "-c", "{content}")
SHELL_YAML = '{type: cli, command: [sh, "-c", "{content}"]}'
EVLOG_FILE_MAX = 4 << 20  # common/evlog.h: a generation of an events file


def shape(events):
    """(type, task_id) of EVENTS, a run of one task's task_output as one."""
    out = []
    for i, t, d in events:
        key = (t, d.get("task_id"))
        if not (t == "task_output" and out and out[-1] == key):
            out.append(key)
    return out


def output_of(events, tid):
    return "".join(d["content"] for i, t, d in events
                   if t == "task_output" and d.get("task_id") == tid)


def without(d, *keys):
    return {k: v for k, v in d.items() if k not in keys}


def cancel(base_url, tid):
    return curl(base_url + "/api/task/%s/cancel" % tid, method="POST", body={}, timeout=20)


# The stored events of the cancel scenario, in order (SPEC §4 cancel, §8).
CANCEL_SHAPE = [("task_received", "run-x"), ("task_started", "run-x"),
                ("task_output", "run-x"),
                ("task_received", "queued-x"), ("task_cancelled", "queued-x"),
                ("task_cancelled", "run-x"),
                ("task_received", "after-x"), ("task_started", "after-x"),
                ("task_output", "after-x"), ("task_completed", "after-x")]


class CancelScenario:
    """A bot whose adapter is `sh -c {content}`: run-x prints and sleeps,
    queued-x waits behind it; queued-x then run-x are cancelled, after-x runs."""

    def run_cancel_scenario(self, submit, state, cancel_url, reader):
        submit("echo started; sleep 60", "run-x")
        head = reader.take_until(lambda e: e[1] == "task_output")  # it runs and has spoken
        submit("echo never", "queued-x")
        self.assertEqual(state("queued-x"), "queued")
        for tid in ("queued-x", "run-x"):
            r = cancel(cancel_url, tid)
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.json()["state"], "cancelled", r)
        submit("echo after", "after-x")
        got = head + reader.take_until(lambda e: e[1] in TASK_END
                                       and e[2]["task_id"] == "after-x")
        self.assertEqual(shape(got), CANCEL_SHAPE)
        self.assertEqual(output_of(got, "run-x"), "started\n")
        self.assertEqual(output_of(got, "after-x"), "after\n")
        ends = {d["task_id"]: d for i, t, d in got if t in TASK_END}
        for tid, excerpt in (("queued-x", ""), ("run-x", "started\n")):
            d = ends[tid]
            self.assertEqual((d["success"], d["error"], d["files_modified"], d["source"]),
                             (False, "cancelled", [], "http"), d)
            self.assertEqual(d["output_excerpt"], excerpt, d)
            self.assertTrue(d["response_file"].endswith("-failed.md"), d)
            self.assertIsInstance(d["duration_seconds"], (int, float))
        self.assertTrue(ends["after-x"]["success"])
        return got


class WorkerEventsMoreTest(WorkerTestCase, CancelScenario):
    """A hive-worker by itself; its own GET /api/events."""

    def test_cancelled_tasks_on_worker_stream(self):
        w = self.new_worker("--mode", "websocket-only", *SHELL_ARGS)
        s = SSE(w.port)
        got = self.run_cancel_scenario(
            lambda cmd, tid: w.submit(cmd, task_id=tid),
            lambda tid: w.task(tid).json()["state"], w.url, s)
        check_lives(self, got, ["run-x", "after-x"])  # seqs consecutive, id == seq
        self.assertEqual(len(stored(got)), 8)
        for tid in ("queued-x", "run-x"):
            ev = [d for i, t, d in got if t == "task_cancelled" and d["task_id"] == tid][0]
            self.assertEqual(w.responses(tid), [os.path.basename(ev["response_file"])])
        self.assertEqual(s.quiet(0.3), [])
        s.close()
        # The replay tells each stored event once, as the live stream did.
        again = SSE(w.port, "/api/events?since=%d" % (int(got[0][0]) - 1))
        replay = again.take(8)
        self.assertEqual(replay, [e for e in got if e[1] != "task_output"])
        self.assertEqual(again.quiet(0.3), [])
        again.close()

    def test_a_task_ends_before_the_next_starts(self):
        # SPEC 2.3: a task's end comes before the next task's task_started,
        # on the stream and in the activity log. The next task starts as soon
        # as an answer is written, before its group commit reports the end:
        # the new task's events wait for that end.
        w = self.new_worker("--mode", "websocket-only", "--mock-delay-ms", "50")
        ids = [w.submit("order %d" % i)["task_id"] for i in range(12)]
        w.wait_state(ids[-1], ("done",))
        reader = SSE(w.port, path="/api/events?since=0")
        got = reader.take_until(lambda e: e[1] in TASK_END and e[2]["task_id"] == ids[-1],
                                timeout=30)
        reader.close()
        lives = [(t, d["task_id"]) for i, t, d in got if t in ("task_started",) + TASK_END]
        want = []
        for tid in ids:
            want += [("task_started", tid), ("task_completed", tid)]
        self.assertEqual(lives, want)
        check_lives(self, got, ids)
        acts = [(a["event_type"], a.get("task_id")) for a in w.activity()
                if a["event_type"] in ("task_started", "task_completed")]
        self.assertEqual(acts, want)

    def test_resume_across_sigkill_200_tasks(self):
        w = self.new_worker("--mode", "websocket-only")
        witness = SSE(w.port)   # stays connected until the kill
        client = SSE(w.port)
        w.submit("before")
        cursor = int(client.take_until(lambda e: e[1] in TASK_END)[-1][0])
        client.close()
        ids = [w.submit("t%d" % i)["task_id"] for i in range(200)]
        seen = [e for e in witness.take_until(lambda e: e[1] in TASK_END
                                              and e[2]["task_id"] == ids[-1], timeout=60)
                if e[1] != "task_output" and int(e[0]) > cursor]
        w.kill()
        self.assertTrue(witness.closed.wait(10), "the stream outlived its worker")
        self.assertEqual([e for e in witness.quiet(0.2) if e[1] != "task_output"], [])
        w2 = self.restart(w, "--mode", "websocket-only")
        ids2 = [w2.submit("after %d" % i)["task_id"] for i in range(5)]
        w2.wait_state(ids2[-1], ("done",))
        client = SSE(w2.port, headers=["Last-Event-ID: %d" % cursor])
        got = client.take(3 * 205, timeout=60)
        self.assertEqual(client.quiet(0.5), [])  # no duplicate after the missed ones
        self.assertEqual(stored(got), list(range(cursor + 1, cursor + 616)))
        check_lives(self, got, ids + ids2)
        self.assertEqual([d["task_id"] for i, t, d in got if t == "task_received"], ids + ids2)
        self.assertEqual([d["task_id"] for i, t, d in got if t == "task_completed"], ids + ids2)
        # What the reader that never left saw before the kill, the resumed
        # one got too, the same.
        self.assertEqual(len(seen), 600)
        self.assertEqual(got[:600], seen)
        # Then live, without a gap.
        w2.submit("live")
        live = client.take_until(lambda e: e[1] in TASK_END)
        self.assertEqual(stored(live), [cursor + 616, cursor + 617, cursor + 618])
        for s in (witness, client):
            s.close()


class HiveCase(unittest.TestCase):
    """A hive of BOTS for each test (no tests of its own)."""

    BOTS = [{"id": "BOT-A"}, {"id": "BOT-B"}]
    maxDiff = 4000
    post_task = te.HiveEventsTest.post_task
    check_merge = te.HiveEventsTest.check_merge
    check_order = te.HiveEventsTest.check_order
    tearDown = te.HiveEventsTest.tearDown

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="hive-e2e-events-more-")
        self.hive = Hive(self.tmp, self.BOTS)
        self.seed()
        self.hive.start()

    def seed(self):
        """Files to lay down before the hive starts (none here)."""

    def state(self, bot, tid):
        return self.hive.get("/bots/%s/api/task/%s" % (bot, tid)).json().get("state")


class HiveEventsMoreTest(HiveCase, CancelScenario):
    """The supervisor's merged stream: BOT-A runs `sh -c {content}`, BOT-B
    the mock adapter."""

    BOTS = [{"id": "BOT-A", "adapter": SHELL_YAML}, {"id": "BOT-B"}]

    def test_cancelled_tasks_on_merged_stream(self):
        merged = SSE(self.hive.port)
        own = SSE(self.hive.bot_ports["BOT-A"])
        got = self.run_cancel_scenario(
            lambda cmd, tid: self.post_task("BOT-A", cmd, task_id=tid),
            lambda tid: self.state("BOT-A", tid), self.hive.url + "/bots/BOT-A", own)
        check_lives(self, [(i, t, dict(d, bot_id=te.BOT)) for i, t, d in got],
                    ["run-x", "after-x"])
        mgot = merged.take_until(lambda e: e[1] in TASK_END and e[2]["task_id"] == "after-x")
        self.assertEqual(merged.quiet(0.3), [])
        self.check_merge(mgot)
        self.assertEqual(shape(mgot), CANCEL_SHAPE)
        self.assertEqual({d["bot_id"] for i, t, d in mgot}, {"BOT-A"})
        # The merge tells the worker's events as they are, hive_seq added.
        self.assertEqual([without(d, "hive_seq") for i, t, d in mgot if t != "task_output"],
                         [d for i, t, d in got if t != "task_output"])
        self.assertEqual(output_of(mgot, "run-x"), "started\n")
        # Replayed from the merge's log: each once, the same.
        first = int(mgot[0][0])
        again = SSE(self.hive.port, "/api/events?since=%d" % (first - 1))
        self.assertEqual(again.take(8), [e for e in mgot if e[1] != "task_output"])
        self.assertEqual(again.quiet(0.3), [])
        for s in (merged, own, again):
            s.close()

    def test_proxied_task_on_worker_stream(self):
        own = SSE(self.hive.bot_ports["BOT-A"])
        merged = SSE(self.hive.port)
        tid = self.post_task("BOT-A", "printf 'one\\n'; sleep 0.5; printf 'two\\n'",
                             task_id="via-proxy")
        self.assertEqual(tid, "via-proxy")
        got = own.take_until(lambda e: e[1] in TASK_END)
        self.assertEqual(shape(got), [("task_received", tid), ("task_started", tid),
                                      ("task_output", tid), ("task_completed", tid)])
        self.assertGreaterEqual(sum(t == "task_output" for i, t, d in got), 2, got)  # as it came
        self.assertEqual(output_of(got, tid), "one\ntwo\n")
        check_lives(self, [(i, t, dict(d, bot_id=te.BOT)) for i, t, d in got], [tid])
        self.assertEqual({d["bot_id"] for i, t, d in got}, {"BOT-A"})
        rec, start, end = [d for i, t, d in got if t != "task_output"]
        self.assertEqual((rec["source"], rec["priority"], rec["position"]), ("http", "P0", 1))
        self.assertIn("started_at", start)
        self.assertEqual((end["success"], end["error"], end["output_excerpt"]),
                         (True, None, "one\ntwo\n"))
        self.assertTrue(end["response_file"].endswith("-complete.md"), end)
        self.assertEqual(own.quiet(0.3), [])
        # The merge has the same events under the same seqs.
        mgot = merged.take_until(lambda e: e[1] in TASK_END)
        self.check_merge(mgot)
        self.assertEqual([without(d, "hive_seq") for i, t, d in mgot if t != "task_output"],
                         [rec, start, end])
        for s in (own, merged):
            s.close()

    def test_output_the_channel_dropped_is_told(self):
        # The supervisor stopped while BOT-A prints 3 MB: the worker's
        # channel fills, and what does not fit is dropped (live only, as for
        # any reader that lags) -- but told on the merge as
        # task_output_dropped, in its place, so chunks + dropped = output.
        merged = SSE(self.hive.port, rcvbuf=16 << 20)
        loud, n = "loud-x", 3 << 20
        url = "http://127.0.0.1:%d/api/task/" % self.hive.bot_ports["BOT-A"]
        # `hive events` following the stream too: it prints the gap's size.
        follow = subprocess.Popen([HIVE_BIN, "events", "BOT-A", "--since", "0", "--file",
                                   self.hive.yaml], cwd=self.hive.work_dir, env=self.hive.env(),
                                  stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL, text=True)
        self.addCleanup(follow.wait, 10)
        self.addCleanup(follow.kill)
        bound = threading.Timer(90, follow.kill)  # a missing line fails, never hangs
        bound.start()
        self.addCleanup(bound.cancel)
        self.assertIn(" BOT-A bot_state ", follow.stdout.readline())  # connected
        self.hive.proc.send_signal(signal.SIGSTOP)
        try:
            self.post_task("BOT-A", "head -c %d /dev/zero | tr '\\0' a" % n, direct=True,
                           task_id=loud)
            self.post_task("BOT-A", "echo after", direct=True, task_id="after-x")
            wait_for(lambda: curl(url + "after-x").json().get("state") == "done", 60,
                     what="both tasks done while the supervisor is stopped")
        finally:
            self.hive.proc.send_signal(signal.SIGCONT)
        got = merged.take_until(lambda e: e[1] in TASK_END and e[2]["task_id"] == "after-x",
                                timeout=60)
        self.check_merge(got)
        self.check_order(got, [loud, "after-x"])
        every = [(i, d) for i, t, d in got if t == "task_output_dropped"]
        for i, d in every:  # live only: no seq, no hive_seq
            self.assertEqual(set(d), {"type", "bot_id", "timestamp", "task_id", "source",
                                      "dropped_events", "dropped_bytes"})
            self.assertEqual((d["type"], d["bot_id"], d["source"]),
                             ("task_output_dropped", "BOT-A", "http"))
            self.assertIn(d["task_id"], (loud, "after-x"))
            self.assertRegex(d["timestamp"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
            self.assertGreater(d["dropped_events"], 0)
        drops = [(i, d) for i, d in every if d["task_id"] == loud]
        self.assertTrue(drops, shape(got))
        # Each task's own: chunks + dropped = its output. The second task's
        # few bytes go up when the full channel still has room for them,
        # else they are told dropped too.
        for task, size in ((loud, n), ("after-x", len("after\n"))):
            self.assertEqual(len(output_of(got, task)) + sum(
                d["dropped_bytes"] for i, d in every if d["task_id"] == task), size, task)
        # In their place: after their task started, before it ended.
        kinds = [(t, d.get("task_id")) for i, t, d in got]
        for task in (loud, "after-x"):
            at = [k for k, x in enumerate(kinds) if x == ("task_output_dropped", task)]
            for k in at:
                self.assertLess(kinds.index(("task_started", task)), k)
                self.assertLess(k, kinds.index(("task_completed", task)))
        told = []
        while not told:
            line = follow.stdout.readline()
            self.assertTrue(line, "hive events ended without the gap")
            if " task_output_dropped %s " % loud in line:
                told.append(line)
        self.assertRegex(told[0], r" %d bytes in %d chunks not relayed" % (
            drops[0][1]["dropped_bytes"], drops[0][1]["dropped_events"]))
        follow.kill()
        # Never stored: the merge's log replays the rest, none of them.
        since = int(stored(got)[0]) - 1
        again = SSE(self.hive.port, "/api/events?since=%d" % since)
        want = [e for e in got if e[1] not in te.LIVE]
        self.assertEqual(again.take(len(want)), want)
        self.assertEqual(again.quiet(0.3), [])
        # Printed fast while the supervisor reads: whatever did not fit is
        # told, so the sum holds all the same. Half a MiB: with its framing
        # it stays under the 1 MiB a subscriber may be behind before the
        # supervisor drops it (SSEHUB_MAX_PENDING), so a reader thread that
        # a busy machine does not run for a while is not dropped (2 MiB was,
        # once, in CI).
        fast, m = "fast-x", 512 << 10
        self.post_task("BOT-A", "head -c %d /dev/zero | tr '\\0' b" % m, task_id=fast)
        got = merged.take_until(lambda e: e[1] in TASK_END and e[2]["task_id"] == fast,
                                timeout=60)
        self.check_order(got, [fast])
        self.assertEqual(len(output_of(got, fast))
                         + sum(d["dropped_bytes"] for i, t, d in got
                               if t == "task_output_dropped" and d["task_id"] == fast), m)
        # /metrics counts every drop told on the merge, of both tasks.
        told = [d for i, t, d in self.drops_seen(every, got)]
        body = curl("http://127.0.0.1:%d/metrics" % self.hive.port).body.decode()
        for name, key in (("hive_task_output_dropped_events_total", "dropped_events"),
                          ("hive_task_output_dropped_bytes_total", "dropped_bytes")):
            line = [x for x in body.splitlines() if x.startswith(name + '{bot="BOT-A"}')]
            self.assertEqual(len(line), 1, body)
            self.assertEqual(float(line[0].split()[-1]), sum(d[key] for d in told), line)
        for s in (merged, again):
            s.close()

    @staticmethod
    def drops_seen(first, got):
        """The task_output_dropped events of both tasks: FIRST as (i, d), GOT's as events."""
        return [(i, "task_output_dropped", d) for i, d in first] + \
            [e for e in got if e[1] == "task_output_dropped"]

    def test_a_task_rerun_after_its_worker_died_starts_again(self):
        # SIGKILL of BOT-A's worker while a task runs: the task is run again
        # when the worker is back (SPEC §3: nothing accepted is lost; the
        # poison rule counts such runs), and each run is told with its own
        # task_started (docs/api.md). The cut run has no end; the task ends
        # once. An HTTP task is not told task_received again, a file task is
        # (it is found again in the queue).
        merged = SSE(self.hive.port)
        cmd = ("if [ -e %s.mark ]; then echo second; else touch %s.mark; echo first; "
               "sleep 60; fi")
        queue_dir = os.path.join(self.tmp, ".deia", "hive", "tasks", "BOT-A")
        for tid, source in (("rerun-http", "http"), ("rerun-file", "file")):
            if source == "http":
                self.post_task("BOT-A", cmd % (tid, tid), task_id=tid)
            else:
                write_atomic(os.path.join(queue_dir, tid + ".md"), cmd % (tid, tid))
            got = merged.take_until(lambda e: e[1] == "task_output" and e[2]["task_id"] == tid)
            pid = self.hive.bot("BOT-A")["pid"]
            os.kill(pid, signal.SIGKILL)
            got += merged.take_until(lambda e: e[1] in TASK_END and e[2]["task_id"] == tid,
                                     timeout=60)
            self.check_merge(got)
            mine = [(t, d) for i, t, d in got if d.get("task_id") == tid]
            kinds = [t for t, d in mine if t != "task_output"]
            again = ["task_received"] if source == "file" else []
            self.assertEqual(kinds, ["task_received", "task_started"] + again
                             + ["task_started", "task_completed"], (tid, kinds))
            self.assertEqual(output_of(got, tid), "first\nsecond\n")
            starts = [d["started_at"] for t, d in mine if t == "task_started"]
            self.assertLess(starts[0], starts[1])  # the new run's own start
            self.assertEqual({d["source"] for t, d in mine}, {source})
            # The second run is the new worker's: after the restart began.
            order = [(t, d.get("state")) for i, t, d in got
                     if t in ("bot_state", "task_started") and d["bot_id"] == "BOT-A"]
            self.assertEqual(order[0], ("task_started", None))
            self.assertEqual(order[-1], ("task_started", None))
            self.assertIn(("bot_state", "starting"), order[1:-1], order)
            self.assertNotEqual(self.hive.bot("BOT-A")["pid"], pid)
            self.assertEqual(len(self.hive.responses("BOT-A", tid)), 1)
        # The worker's own stream, replayed from its file: the same, by seq.
        own = SSE(self.hive.bot_ports["BOT-A"], "/api/events?since=0")
        lives = own.take_until(lambda e: e[1] in TASK_END and e[2]["task_id"] == "rerun-file")
        self.assertEqual([(t, d["task_id"]) for i, t, d in lives],
                         [("task_received", "rerun-http"), ("task_started", "rerun-http"),
                          ("task_started", "rerun-http"), ("task_completed", "rerun-http"),
                          ("task_received", "rerun-file"), ("task_started", "rerun-file"),
                          ("task_received", "rerun-file"), ("task_started", "rerun-file"),
                          ("task_completed", "rerun-file")])
        self.assertEqual(stored(lives), list(range(1, 10)))
        for r in (merged, own):
            r.close()

    def test_resume_across_supervisor_sigkill_200_tasks(self):
        # 100 tasks merged while a reader watches; 100 more while the
        # supervisor is stopped (so only the workers' files hold their
        # events); SIGKILL of the stopped supervisor (the workers die with
        # it); 6 file tasks while it is down; a restart; one Last-Event-ID.
        witness = SSE(self.hive.port)   # stays connected until the kill
        client = SSE(self.hive.port)
        self.post_task("BOT-B", "before")
        cursor = int(client.take_until(lambda e: e[1] in TASK_END)[-1][0])
        client.close()
        tids = {"BOT-A": [], "BOT-B": []}
        for i in range(100):  # through the proxy, both bots at once
            bot = ("BOT-A", "BOT-B")[i % 2]
            tids[bot].append(self.post_task(bot, "echo t%d" % i))
        pending = {bot: set(ts) for bot, ts in tids.items()}

        def all_ended(e):
            if e[1] in TASK_END:
                pending[e[2]["bot_id"]].discard(e[2]["task_id"])
            return not any(pending.values())
        seen = [e for e in witness.take_until(all_ended, timeout=60)
                if e[1] != "task_output" and int(e[0]) > cursor]
        self.assertEqual(len(seen), 300)
        workers = [b["pid"] for b in self.hive.status()["bots"]]
        self.hive.proc.send_signal(signal.SIGSTOP)
        try:
            for i in range(100, 200):  # straight to the workers' ports
                bot = ("BOT-A", "BOT-B")[i % 2]
                tids[bot].append(self.post_task(bot, "echo t%d" % i, direct=True))
            for bot in tids:
                url = "http://127.0.0.1:%d/api/task/%s" % (self.hive.bot_ports[bot],
                                                          tids[bot][-1])
                wait_for(lambda: curl(url).json().get("state") == "done", 60,
                         what="%s's last task done while the supervisor is stopped" % bot)
        finally:
            self.hive.proc.kill()
        self.hive.proc.wait(10)
        self.assertTrue(witness.closed.wait(10), "the stream outlived its supervisor")
        self.assertEqual([e for e in witness.quiet(0.2) if e[1] != "task_output"], [])
        wait_for(lambda: not any(te.is_zombie_free(p) for p in workers), 20,
                 what="workers gone")
        for bot in tids:  # dropped in the queues while the hive is down
            for i in range(3):
                tid = "down-%s-%d" % (bot, i)
                write_atomic(os.path.join(self.tmp, ".deia", "hive", "tasks", bot,
                                          tid + ".md"), "echo %s" % tid)
                tids[bot].append(tid)
        self.hive.start()
        for bot in tids:
            self.hive.wait_task(bot, tids[bot][-1])
        resumed = SSE(self.hive.port, headers=["Last-Event-ID: %d" % cursor])
        pending = {bot: set(ts) for bot, ts in tids.items()}
        got = resumed.take_until(all_ended, timeout=60)
        self.assertEqual(resumed.quiet(0.5), [])  # nothing twice
        self.assertEqual(stored(got), list(range(cursor + 1, cursor + 1 + 3 * 206 + 4)))
        self.check_merge(got)           # hive_seq and each bot's seq without gap or repeat
        self.check_order(got, tids["BOT-A"] + tids["BOT-B"])
        for bot, ts in tids.items():
            mine = [(t, d["task_id"]) for i, t, d in got
                    if d["bot_id"] == bot and t != "bot_state"]
            self.assertEqual(len(mine), 3 * len(ts), (bot, mine[-6:]))
            self.assertEqual([x for t, x in mine if t == "task_received"][:100], ts[:100])
            self.assertEqual(sorted(x for t, x in mine if t == "task_completed"), sorted(ts))
            states = [d["state"] for i, t, d in got if t == "bot_state" and d["bot_id"] == bot]
            self.assertEqual(states, ["starting", "running"], (bot, states))
        # What the reader that stayed saw comes first, the same.
        self.assertEqual(got[:300], seen)
        # Then live, without a gap.
        last = int(got[-1][0])
        self.post_task("BOT-A", "echo live")
        live = [e for e in resumed.take_until(lambda e: e[1] in TASK_END) if e[1] != "task_output"]
        self.assertEqual(stored(live), [last + 1, last + 2, last + 3])
        for s in (witness, resumed):
            s.close()


class HiveResyncTest(HiveCase):
    """A supervisor whose events log (two generations of 4 MiB, see
    common/evlog.c) was filled by an earlier run; real tasks make it rotate."""

    HEADROOM = 12 * 1024

    def seed(self):
        """events.jsonl.1 (hive_seq 1..K) and events.jsonl (K+1..N) near full:
        the events of a bot an earlier roster had, as the merge wrote them."""
        d = os.path.join(self.tmp, ".deia", "hive")
        os.makedirs(d)
        self.seeded = {}
        n = 0

        def fill(path, limit):
            nonlocal n
            size = 0
            with open(path, "w") as f:
                while True:
                    k = n + 1
                    tid = "old-%d" % ((k - 1) // 3)
                    o = {"type": ("task_received", "task_started", "task_completed")[(k - 1) % 3],
                         "bot_id": "BOT-OLD", "timestamp": "2026-01-01T00:00:00Z",
                         "task_id": tid, "source": "file", "seq": k}
                    if o["type"] == "task_completed":
                        o.update(success=True, duration_seconds=0.1, error=None,
                                 files_modified=[], output_excerpt="x" * 1000,
                                 response_file="2026-01-01-0000-BOT-OLD-user-RESPONSE-%s"
                                               "-complete.md" % tid)
                    o["hive_seq"] = k
                    line = json.dumps(o, separators=(",", ":")) + "\n"
                    if size + len(line) > limit:
                        return
                    f.write(line)
                    size += len(line)
                    self.seeded[k] = o
                    n = k

        fill(os.path.join(d, "events.jsonl.1"), EVLOG_FILE_MAX - 4096)
        self.K = n
        fill(os.path.join(d, "events.jsonl"), EVLOG_FILE_MAX - self.HEADROOM)
        self.N = n

    def first_kept(self):
        """hive_seq of the first line of the older generation (the test's
        view of when the product rotated)."""
        with open(os.path.join(self.tmp, ".deia", "hive", "events.jsonl.1")) as f:
            return json.loads(f.readline())["hive_seq"]

    def first_event(self, cursor, how="header"):
        if how == "header":
            s = SSE(self.hive.port, headers=["Last-Event-ID: %d" % cursor])
        else:
            s = SSE(self.hive.port, "/api/events?since=%d" % cursor)
        self.assertEqual(s.status, 200)
        e = s.take(2)
        s.close()
        return e

    def check_resync(self, d, first, last, last_max=None):
        """A resync is an event like the others (SPEC §8): type, bot_id (null:
        it is about the whole merge, no bot's), timestamp (now, UTC, Z); and
        what is kept, FIRST to LAST (or up to LAST_MAX)."""
        if last_max is not None and last <= d.get("last_seq", 0) <= last_max:
            last = d["last_seq"]
        self.assertEqual(d, {"type": "resync", "bot_id": None, "timestamp": d.get("timestamp"),
                             "first_seq": first, "last_seq": last})
        self.assertRegex(d["timestamp"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
        when = datetime.datetime.fromisoformat(d["timestamp"].replace("Z", "+00:00"))
        self.assertLess(abs(when.timestamp() - time.time()), 60, d)

    def test_stale_and_future_cursors_resync(self):
        K, N = self.K, self.N
        # Everything seeded is kept: an old cursor resumes without a resync.
        e = self.first_event(1)
        self.assertEqual([(i, t) for i, t, d in e],
                         [("2", "task_started"), ("3", "task_completed")])
        self.assertEqual(e[1][2], self.seeded[3])
        e = self.first_event(K - 1)
        self.assertEqual([i for i, t, d in e], [str(K), str(K + 1)])
        # Real tasks until the log rotates: hive_seq 1..K are no longer kept.
        tids = []
        for i in range(100):
            if self.first_kept() != 1:
                break
            tids.append(self.post_task(("BOT-A", "BOT-B")[i % 2], "rotate %d " % i + "y" * 250))
            self.hive.wait_task(("BOT-A", "BOT-B")[i % 2], tids[-1])
        self.assertEqual(self.first_kept(), K + 1, "the supervisor's log did not rotate")
        # A cursor whose next event was dropped: resync, then all that is kept.
        s = SSE(self.hive.port, headers=["Last-Event-ID: %d" % (K - 1)])
        got = s.take_until(lambda e: e[1] == "task_completed" and e[2].get("task_id") == tids[-1],
                           timeout=60)
        rs_id, rs_type, rs = got[0]
        self.assertEqual((rs_id, rs_type, rs["type"]), ("", "resync", "resync"))
        body = [e for e in got[1:] if e[1] != "task_output"]
        self.assertEqual(stored(body), list(range(K + 1, K + 1 + len(body))))
        self.check_resync(rs, K + 1, N, int(body[-1][0]))
        self.assertEqual([d for i, t, d in body[:N - K]],
                         [self.seeded[k] for k in range(K + 1, N + 1)])  # as kept
        self.check_merge(got[1:])
        self.assertEqual(sorted(d["task_id"] for i, t, d in body if t == "task_completed"
                                and d["bot_id"] != "BOT-OLD"), sorted(tids))
        self.assertEqual(s.quiet(0.3), [])
        last = int(body[-1][0])
        self.post_task("BOT-B", "live after the resync")
        live = [e for e in s.take_until(lambda e: e[1] in TASK_END) if e[1] != "task_output"]
        self.assertEqual(stored(live), [last + 1, last + 2, last + 3])  # then live, no gap
        s.close()
        # The boundary: a cursor right before the oldest kept missed nothing.
        e = self.first_event(K)
        self.assertEqual([i for i, t, d in e], [str(K + 1), str(K + 2)])
        # The stale cursor as ?since=, and the first one of all.
        oldest = (str(K + 1), self.seeded[K + 1]["type"])
        for cursor, how in ((K - 1, "since"), (1, "header"), (1, "since")):
            e = self.first_event(cursor, how)
            self.assertEqual([(i, t) for i, t, d in e], [("", "resync"), oldest], (cursor, how))
            self.check_resync(e[0][2], K + 1, last + 3)
        # A cursor from the future (a log lost or replaced behind the client's
        # back): resync, then everything kept.
        e = self.first_event(last + 1000)
        self.assertEqual([(i, t) for i, t, d in e], [("", "resync"), oldest])
        self.check_resync(e[0][2], K + 1, last + 3)
        # A stream of one bot gets it too, the same: no bot's, the whole merge's.
        s = SSE(self.hive.port, "/api/events?bot=BOT-A&since=1")
        e = s.take(2)
        s.close()
        self.assertEqual(e[0][1], "resync")
        self.check_resync(e[0][2], K + 1, last + 3)
        self.assertEqual(e[1][2]["bot_id"], "BOT-A")


if __name__ == "__main__":
    main()
