"""What a worker's start makes on disk, and what its first task makes (SPEC §2, §3, §8).

On an ext4 without a journal each new inode costs a start dearly (a 1,000-bot
first `hive up` made 13 per bot), so a start makes only what it must: the lock,
the queue folder (inotify watches it) and the activity log (its startup line).
The rest is made by its first use, and until then absent reads as empty
everywhere:

- _realtime/: made by the first accepted HTTP or WebSocket task; _active/: by
  the first claim (a recovery finds nothing to recover without them);

- the events log (<BOT>-events.jsonl): /api/events replays nothing, an old
  cursor resyncs; made by the first stored event;
- the timeline (<BOT>-timeline.jsonl and .idx): /api/timeline is empty; made by
  the first finished task;
- _archive/, responses/.pending/<BOT>/ and the answers index
  responses/.index/<BOT>/: made by the first answer; GET /api/task/<id> of an
  unknown id is a 404 and an id is free;
- .deia/hive/run/<BOT>.procs (the record of what runs): made when a task's
  first process is about to run (a mock task runs none).

A kill -9 between a lazy creation and the first write leaves an empty file or
folder, which the next start takes as it always did; a kill after the first
answer but before its timeline entry leaves no timeline at all, and the next
start rebuilds the entry from the answer.

Run: HIVE_BUILD_DIR=build /usr/bin/python3 tests/e2e/test_lazy_layout.py
"""

import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hive_e2e import BOT, WorkerTestCase, main, wait_for  # noqa: E402
from test_events import SSE, TASK_END, stored  # noqa: E402


class LazyLayout(WorkerTestCase):

    def lazy_paths(self, w):
        """The files and folders a start does not make (made on first use)."""
        return {"events": w.path(".deia", "bot-logs", BOT + "-events.jsonl"),
                "timeline": w.path(".deia", "bot-logs", BOT + "-timeline.jsonl"),
                "timeline index": w.path(".deia", "bot-logs", BOT + "-timeline.idx"),
                "_active": w.sub("_active"),
                "_realtime": w.sub("_realtime"),
                "_archive": w.sub("_archive"),
                "pending": w.path(".deia", "hive", "responses", ".pending", BOT),
                "answers index": w.path(".deia", "hive", "responses", ".index", BOT),
                "run": w.path(".deia", "hive", "run"),
                "record": w.path(".deia", "hive", "run", BOT + ".procs")}

    def absent(self, w, *names):
        paths = self.lazy_paths(w)
        for name in names or paths:
            self.assertFalse(os.path.lexists(paths[name]), "%s made: %s" % (name, paths[name]))

    def test_a_start_makes_none_and_absent_reads_as_empty(self):
        w = self.new_worker()
        self.absent(w)
        # What a start does make, and why.
        for kept in (w.queue_dir, w.path(".deia", "hive", "locks", BOT + ".lock")):
            self.assertTrue(os.path.lexists(kept), kept)
        self.assertEqual([e["event_type"] for e in w.activity()], ["startup"])
        # Every reader takes the missing files for empty ones.
        t = w.get("/api/timeline").json()
        self.assertEqual((t["total_count"], t["entries"]), (0, []))
        self.assertEqual(w.get("/api/bot/%s/timeline" % BOT).json()["total_count"], 0)
        self.assertEqual(w.task("never-1").status, 404)
        s = SSE(w.port, "/api/events?since=0")
        self.assertEqual(s.status, 200)
        self.assertEqual(s.quiet(0.5), [])
        s.close()
        s = SSE(w.port, headers=["Last-Event-ID: 5"])  # a cursor from elsewhere
        self.assertEqual([t for i, t, d in s.take(1)], ["resync"])
        s.close()
        self.assertEqual(w.status()["tasks_processed"], 0)
        self.absent(w)  # the readers made nothing either
        # Nor does a clean stop, nor the next start.
        self.assertEqual(w.stop(), (0, False))
        self.absent(w)
        w2 = self.restart(w)
        self.absent(w2)
        self.assertEqual(w2.get("/api/timeline").json()["total_count"], 0)

    def test_the_first_task_makes_what_it_needs(self):
        w = self.new_worker()
        s = SSE(w.port, "/api/events?since=0")
        tid = w.submit("the first one")["task_id"]
        got = s.take_until(lambda e: e[1] in TASK_END)
        s.close()
        self.assertEqual(stored(got)[0], 1)
        w.wait_state(tid, "done")
        wait_for(lambda: w.get("/api/timeline").json()["total_count"] == 1 or None,
                 what="the timeline entry")
        paths = self.lazy_paths(w)
        for name in ("events", "timeline", "timeline index", "_active", "_realtime", "_archive",
                     "pending", "answers index"):
            self.assertTrue(os.path.lexists(paths[name]), "%s not made" % name)
        self.absent(w, "run", "record")  # a mock task starts no process
        self.assertEqual(w.listdir("_archive"), [tid + ".json"])
        self.assertEqual(os.listdir(paths["pending"]), [])
        self.assertEqual(os.listdir(paths["answers index"]), [tid])
        with open(paths["timeline index"], "rb") as f:
            self.assertEqual(f.read(8), b"HIVETL\0\1")
        # Everything works on them, across a kill -9 too.
        j = w.task(tid).json()
        self.assertEqual(j["state"], "done")
        self.assertIn("the first one", j["result"]["output"])
        self.assertEqual(w.submit("again", expect=409, task_id=tid)["state"], "done")
        cursor = stored(got)[0]
        w.kill()
        w2 = self.restart(w)
        self.assertEqual(w2.get("/api/timeline").json()["total_count"], 1)
        self.assertEqual(w2.task(tid).json()["state"], "done")
        self.assertEqual(w2.submit("again", expect=409, task_id=tid)["state"], "done")
        tid2 = w2.submit("the second one")["task_id"]
        w2.wait_state(tid2, "done")
        s = SSE(w2.port, headers=["Last-Event-ID: %d" % cursor])
        resumed = s.take_until(lambda e: e[2].get("task_id") == tid2 and e[1] in TASK_END)
        s.close()
        seqs = stored(resumed)
        self.assertEqual(seqs, list(range(cursor + 1, cursor + 1 + len(seqs))))
        self.assertEqual(len(w2.responses(tid)), 1)

    def test_the_first_process_makes_the_record(self):
        w = self.new_worker("--adapter-type", "cli", "--", "cat")
        self.absent(w, "run", "record")
        tid = w.submit("through cat")["task_id"]
        w.wait_state(tid, "done")
        record = self.lazy_paths(w)["record"]
        with open(record) as f:
            self.assertTrue(f.read().endswith("end\n"))
        self.assertEqual(w.stop(), (0, False))
        self.assertEqual(os.path.getsize(record), 0)  # emptied, kept for the next start

    def test_kill_between_creation_and_first_write(self):
        # What a worker killed right after each lazy creation leaves: empty
        # files and folders (and a half-built answers index).
        w = self.new_worker()
        w.kill()
        paths = self.lazy_paths(w)
        for name in ("events", "timeline"):
            open(paths[name], "w").close()
        for name in ("_active", "_realtime", "_archive", "pending", "run"):
            os.makedirs(paths[name])
        os.makedirs(paths["answers index"] + "~build")
        open(paths["record"], "w").close()
        w2 = self.restart(w)
        self.assertEqual(w2.get("/api/timeline").json()["total_count"], 0)
        tid = w2.submit("after the crash")["task_id"]
        w2.wait_state(tid, "done")
        wait_for(lambda: w2.get("/api/timeline").json()["total_count"] == 1 or None,
                 what="the timeline entry")
        self.assertEqual(w2.listdir("_archive"), [tid + ".json"])
        self.assertEqual(os.listdir(paths["answers index"]), [tid])
        self.assertFalse(os.path.lexists(paths["answers index"] + "~build"))
        s = SSE(w2.port, "/api/events?since=0")
        self.assertEqual(stored(s.take_until(lambda e: e[1] in TASK_END))[0], 1)
        s.close()

    def test_killed_before_the_first_timeline_entry(self):
        # The first answer is durable, its timeline entry never written: the
        # kill left no timeline at all. The next start puts the entry back.
        w = self.new_worker()
        tids = [w.submit("answer %d" % i)["task_id"] for i in range(3)]
        for tid in tids:
            w.wait_state(tid, "done")
        wait_for(lambda: w.get("/api/timeline").json()["total_count"] == 3 or None,
                 what="the timeline entries")
        before = w.get("/api/timeline").json()["entries"]
        w.kill()
        paths = self.lazy_paths(w)
        os.unlink(paths["timeline"])
        os.unlink(paths["timeline index"])
        w2 = self.restart(w)
        after = w2.get("/api/timeline").json()
        self.assertEqual(after["total_count"], 3)
        self.assertEqual([e["task_id"] for e in after["entries"]], [e["task_id"] for e in before])
        w2.stop()
        w3 = self.restart(w2)  # and not twice
        self.assertEqual(w3.get("/api/timeline").json()["total_count"], 3)


if __name__ == "__main__":
    main()
