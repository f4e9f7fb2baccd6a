"""End to end, issue 10's DEIA compatibility points (21-26): DEIA's own tools
run against hive's files and APIs.

- 21: registry.json as DEIA's ServiceRegistry reads it. Its stale check (in
  deia/services/registry.py, cleanup_stale_entries, run by every
  ServiceRegistry() it constructs: the dashboard's /api/bots, Bot Commander)
  is re-implemented below from its source: an entry is removed when its pid
  is not alive, or when `datetime.fromisoformat(last_heartbeat)` is older than
  naive local `datetime.now()` minus 300 s, or when that comparison raises (a
  zone-aware time against a naive now is a TypeError). hive's bots must pass
  it, a DEIA entry must survive hive's writes, and an idle hive does not
  rewrite the file every second;
- 22: `**Priority:** P0 (BLOCKING - PROCESS ISSUE)` runs first, as in DEIA;
- 23: the activity log is `.deia/bot-logs/BOT-<BOT-ID>-activity.jsonl`, the
  name DEIA's BotActivityLogger reads;
- 24: `/status` `uptime_seconds` is an integer (HTTP and WebSocket);
- 25: `hive-worker BOT-00001` (DEIA's `run_single_bot.py BOT-00001`) runs the
  file queue (cli-only) instead of exiting 2;
- 26: WebSocket replies come in the order of the client's messages.

Run with /usr/bin/python3; the binaries come from $HIVE_BUILD_DIR.
"""

import json
import os
import shutil
import sys
import tempfile
import time
import unittest
from datetime import datetime, timedelta

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from hive_e2e import (WorkerTestCase, ws_frame, ws_raw_handshake,  # noqa: E402
                      ws_read_message, write_atomic)
from test_supervisor_lifecycle import Hive, wait_for  # noqa: E402

DEIA_STALE_SECONDS = 300  # ServiceRegistry.cleanup_stale_entries(timeout_seconds=300)


def deia_pid_exists(pid):
    """psutil.pid_exists, as DEIA calls it."""
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def deia_cleanup_stale_entries(registry, timeout_seconds=DEIA_STALE_SECONDS):
    """DEIA's ServiceRegistry.cleanup_stale_entries on a loaded registry dict:
    the ids it removes (REGISTRY is modified as DEIA would)."""
    bots = registry.get("bots", {})
    removed = []
    cutoff_time = datetime.now() - timedelta(seconds=timeout_seconds)
    for bot_id, info in list(bots.items()):
        pid = info.get("pid")
        if pid == -1:
            continue
        is_alive = False
        if pid:
            try:
                is_alive = deia_pid_exists(pid)
            except Exception:
                is_alive = False
        last_heartbeat = info.get("last_heartbeat")
        if last_heartbeat:
            try:
                hb_time = datetime.fromisoformat(last_heartbeat)
                is_stale = hb_time < cutoff_time
            except Exception:
                is_stale = True
        else:
            is_stale = True
        if not is_alive or is_stale:
            removed.append(bot_id)
            del bots[bot_id]
    return removed


def deia_register(path, bot_id, port):
    """DEIA's ServiceRegistry.register: load, add, save in place (not atomic)."""
    try:
        with open(path, encoding="utf-8") as f:
            registry = json.load(f)
    except (OSError, ValueError):
        registry = {"bots": {}}
    now = datetime.now().isoformat()
    registry.setdefault("bots", {})[bot_id] = {
        "port": port, "pid": os.getpid(), "repo": bot_id.split("-")[0], "status": "starting",
        "registered_at": now, "last_heartbeat": now}
    registry["updated_at"] = datetime.now().isoformat()
    with open(path, "w", encoding="utf-8") as f:
        json.dump(registry, f, indent=2)
    return registry["bots"][bot_id]


def load(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


class RegistryTest(unittest.TestCase):
    """21: registry.json shared with DEIA's tools."""

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="hive-edges-deia-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.path = os.path.join(self.dir, ".deia", "hive", "registry.json")
        os.makedirs(os.path.dirname(self.path))

    def test_deia_sees_hive_bots_alive_and_keeps_its_own_entries(self):
        foreign = deia_register(self.path, "deiasolutions-CLAUDE-CODE-001", 8999)
        bots = [{"id": "BOT-D1"}, {"id": "BOT-D2"}]
        hive = Hive(self, self.dir, bots)
        hive.start()
        hive.wait_running(["BOT-D1", "BOT-D2"])
        reg = load(self.path)
        self.assertEqual(reg["bots"]["deiasolutions-CLAUDE-CODE-001"], foreign,
                         "hive dropped or rewrote DEIA's entry")
        for b in ("BOT-D1", "BOT-D2"):
            e = reg["bots"][b]
            for key in ("registered_at", "last_heartbeat"):
                # DEIA's format: naive local time, as datetime.now().isoformat().
                t = datetime.fromisoformat(e[key])
                self.assertIsNone(t.tzinfo, e[key])
                self.assertLess(abs((t - datetime.now()).total_seconds()), 60, e[key])
            self.assertIsNone(datetime.fromisoformat(reg["updated_at"]).tzinfo)
        removed = deia_cleanup_stale_entries(reg)
        self.assertEqual(removed, [], "DEIA's stale check dropped: %s" % removed)
        self.assertEqual(set(reg["bots"]),
                         {"BOT-D1", "BOT-D2", "deiasolutions-CLAUDE-CODE-001"})
        # A DEIA bot registering while the hive runs, then a hive write (a
        # restart is a state change): both DEIA entries stay as DEIA wrote them.
        late = deia_register(self.path, "deiasolutions-CLAUDE-CODE-002", 8998)
        old_pid = hive.bot("BOT-D1")["pid"]
        rc, out, err = hive.run("restart", "BOT-D1")
        self.assertEqual(rc, 0, err)
        hive.wait_state("BOT-D1", "running", pred=lambda e: e["pid"] != old_pid)
        reg = load(self.path)
        self.assertEqual(reg["bots"]["deiasolutions-CLAUDE-CODE-001"], foreign)
        self.assertEqual(reg["bots"]["deiasolutions-CLAUDE-CODE-002"], late)
        self.assertEqual(deia_cleanup_stale_entries(reg), [])
        # The hive stops: its own entries go, DEIA's stay.
        hive.signal(2)
        self.assertEqual(hive.wait_exit(), 0)
        reg = load(self.path)
        self.assertEqual(set(reg["bots"]),
                         {"deiasolutions-CLAUDE-CODE-001", "deiasolutions-CLAUDE-CODE-002"})

    def test_an_idle_hive_does_not_rewrite_the_registry(self):
        # Heartbeats twice a second; the file changes only on a state change
        # (and at a slow refresh, well inside DEIA's 300 s).
        hive = Hive(self, self.dir, [{"id": "BOT-I1"}], defaults={"watchdog": 0.5})
        hive.start()
        hive.wait_running(["BOT-I1"])
        time.sleep(1.0)
        before = os.stat(self.path)
        time.sleep(3.5)
        after = os.stat(self.path)
        self.assertEqual((before.st_ino, before.st_mtime_ns), (after.st_ino, after.st_mtime_ns),
                         "registry.json rewritten while nothing changed")
        self.assertEqual(deia_cleanup_stale_entries(load(self.path)), [])


class WorkerCompatTest(WorkerTestCase):
    """22-26 on a standalone worker."""

    def test_activity_log_has_deias_name(self):
        w = self.new_worker()
        w.submit("hello", task_id="NAMED")
        w.wait_state("NAMED", ("done",))
        logs = os.path.join(self.tmp, ".deia", "bot-logs")
        self.assertTrue(os.path.exists(os.path.join(logs, "BOT-%s-activity.jsonl" % w.bot)),
                        os.listdir(logs))
        self.assertFalse(os.path.exists(os.path.join(logs, "%s-activity.jsonl" % w.bot)))
        types = [e["event_type"] for e in w.activity()]
        self.assertIn("startup", types)
        self.assertIn("task_completed", types)

    def test_uptime_seconds_is_an_integer(self):
        w = self.new_worker()
        time.sleep(1.2)
        s = w.status()
        self.assertIs(type(s["uptime_seconds"]), int, s)
        self.assertGreaterEqual(s["uptime_seconds"], 1)
        sock, f, status = ws_raw_handshake(w.port)
        self.assertEqual(status, 101)
        try:
            sock.sendall(ws_frame(1, json.dumps({"type": "status"})))
            m = ws_read_message(f)
            self.assertEqual(m["type"], "status")
            self.assertIs(type(m["uptime_seconds"]), int, m)
        finally:
            sock.close()

    def test_bot_id_alone_runs_the_file_queue(self):
        w = self.new_worker(port=None, wait_listen=False)
        wait_for(lambda: "watching the file queue" in w.log_text() or not w.alive(), 15,
                 "the worker running or gone")
        self.assertTrue(w.alive(), "exited %s: %s" % (w.proc.poll(), w.log_text()))
        self.assertIn("mode cli-only", w.log_text())
        write_atomic(os.path.join(w.queue_dir, "ALONE.md"), "**From:** deia\n\nhello\n")
        wait_for(lambda: w.responses("ALONE"), 20, what="the file task answered")

    def test_websocket_replies_in_message_order(self):
        w = self.new_worker()
        sock, f, status = ws_raw_handshake(w.port)
        self.assertEqual(status, 101)
        try:
            for i in range(5):
                # One write: the ping is read while the task is being stored.
                sock.sendall(ws_frame(1, json.dumps({"type": "task", "command": "x",
                                                     "task_id": "ORDER-%d" % i})) +
                             ws_frame(1, json.dumps({"type": "ping"})) +
                             ws_frame(1, json.dumps({"type": "status"})))
                got = []
                while len(got) < 3:
                    m = ws_read_message(f)
                    if m["type"] in ("started", "chunk", "response"):
                        continue
                    got.append(m["type"])
                self.assertEqual(got, ["ack", "pong", "status"], "round %d" % i)
        finally:
            sock.close()

    def test_blocking_p0_runs_first(self):
        os.makedirs(os.path.dirname(os.path.join(self.tmp, ".deia", "hive", "controls", "x")))
        with open(os.path.join(self.tmp, ".deia", "hive", "controls", "BOT-E2E-PAUSE"), "w"):
            pass
        w = self.new_worker()
        tasks = [("LATER", "P2"), ("BLOCKER", "P0 (BLOCKING - PROCESS ISSUE)"), ("SOON", "P1")]
        now = time.time()
        for i, (name, prio) in enumerate(tasks):
            path = os.path.join(w.queue_dir, name + ".md")
            write_atomic(path, "# %s\n\n**From:** deia\n**To:** %s\n**Priority:** %s\n\nwork\n"
                         % (name, w.bot, prio))
            os.utime(path, (now - 60 + i, now - 60 + i))
        w.post("/api/resume")
        wait_for(lambda: all(w.responses(n) for n, _ in tasks), 30, what="all answered")
        for name, _ in tasks:  # reported (and logged) once durable, after the files
            w.wait_state(name, ("done",))
        started = [e["task_id"] for e in w.activity() if e["event_type"] == "task_started"]
        self.assertEqual(started, ["BLOCKER", "SOON", "LATER"])


if __name__ == "__main__":
    unittest.main(verbosity=2)
