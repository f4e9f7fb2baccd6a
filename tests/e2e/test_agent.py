"""End-to-end tests of hive's agent bots (SPEC.md §12) with a fake `claude`.

tests/agents/fake-claude replays recorded streams of tests/agents/streams/
(written from Claude Code's documented stream-json format) instead of asking
a model, so every test here runs the real `hive-worker` (and `hive up`) with
the `claude` adapter end to end:

- text streaming and tool use: chunks and task_tool events in order on /ws and
  GET /api/events; tokens and cost in the response file, GET /api/task, the
  timeline, the task end event and /metrics (worker and supervisor, checked by
  promtool) — streams/text.jsonl;
- an error result and a killed stream (the CLI dies mid-line): failed tasks
  with a clear error, the worker unharmed — streams/error.jsonl, killed.jsonl;
- a usage limit (claude's error result with its reset time a second ahead):
  the task goes back unfailed, the bot pauses (bot_paused with the reason,
  /status paused_reason and paused_until), resumes by itself (bot_resumed),
  runs the task again, and there is exactly one response file; with
  `--auto-resume false` it stays paused until POST /api/resume — limit.jsonl;
  a plain `cli` command that prints "usage limit reached ... try again in 1 s";
- `session: continue`: the next task passes `--resume <previous session>`,
  the session is kept across a restart, POST /api/reset (and `hive reset
  BOT`) starts a new one; a session the CLI refuses runs the task fresh and
  says so in the output;
- a daily budget: 80 % gives a `warning` event, 100 % pauses the bot with
  "budget: $X of $Y used today", the next day (test clock moved with
  HIVE_TEST_CLOCK_FILE) resumes it — cheap.jsonl; the hive's budget
  (`hive: budget:`) pauses every bot, shown in the supervisor's /status and
  `hive status`, until the next day — text.jsonl;
- the codex and gemini presets read their documented output — codex.jsonl,
  gemini.json.
"""

import json
import os
import shutil
import sys
import tempfile
import time
import unittest

import websockets

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hive_e2e import (TASK_TIMEOUT, WorkerTestCase, main, parse_response,  # noqa: E402
                      run_async, wait_for, ws_recv_until)
from test_events import SSE, TASK_END  # noqa: E402
from test_observe import metric_sum, parse_metrics, promtool_check  # noqa: E402
from test_supervisor_front import Hive  # noqa: E402

SOURCE_DIR = os.environ.get(
    "HIVE_SOURCE_DIR", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
FAKE = os.path.abspath(os.path.join(SOURCE_DIR, "tests", "agents", "fake-claude"))
TEXT_OUTPUT = ("Let me look at the files first.\n\n"
               "The folder holds one file, README.md \u2014 \u00abdone\u00bb \u2713.")
TOKENS = {"input": 120, "output": 345, "cache_read": 15000, "cache_write": 2000}



def stored_session(path):
    """The session id stored at PATH (a reset stores null; the write is done
    off the worker's loop, so tests wait for it), or None."""
    try:
        with open(path) as f:
            return json.load(f).get("session_id")
    except (OSError, ValueError):
        return None

class AgentWorkerTest(WorkerTestCase):
    """A standalone worker with the claude adapter and the fake claude."""

    def setUp(self):
        super().setUp()
        self.state = os.path.join(self.tmp, "fake-state")
        os.makedirs(self.state)
        self.argv_log = os.path.join(self.tmp, "fake-argv.jsonl")
        self.clock = os.path.join(self.tmp, "clock")

    def agent(self, *args, env=None, **kw):
        e = {"FAKE_CLAUDE_LOG": self.argv_log, "FAKE_CLAUDE_STATE": self.state,
             "HIVE_TEST_CLOCK_FILE": self.clock}
        e.update(env or {})
        return self.new_worker("--adapter-type", "claude", "--model", "sonnet", *args, "--",
                               FAKE, env=e, **kw)

    def sse(self, w, path="/api/events"):
        """An event stream reader of W, closed at the end of the test."""
        s = SSE(w.port, path)
        self.addCleanup(s.sock.close)
        self.addCleanup(s.f.close)
        return s

    def runs(self):
        """The fake's runs so far: [{"argv": [...], "prompt": ...}]."""
        try:
            with open(self.argv_log) as f:
                return [json.loads(line) for line in f if line.strip()]
        except FileNotFoundError:
            return []

    def test_stream_chunks_tools_tokens_and_cost(self):
        w = self.agent()
        sse = self.sse(w)

        async def session():
            async with websockets.connect(w.ws_url) as ws:
                await ws.send(json.dumps({"type": "task", "command": "look around",
                                          "task_id": "t-text"}))
                return await ws_recv_until(ws, lambda m: m.get("type") == "response")
        got = run_async(session(), 60)
        kinds = [(m["type"], m.get("content") or m.get("name")) for m in got
                 if m["type"] in ("chunk", "task_tool")]
        self.assertEqual(kinds, [("chunk", "Let me look at the files first."),
                                 ("task_tool", "Bash"), ("task_tool", "Read"),
                                 ("chunk", "\n\n"),
                                 ("chunk", "The folder holds one file, README.md \u2014 "
                                           "\u00abdone\u00bb \u2713.")])
        tools = [m for m in got if m["type"] == "task_tool"]
        self.assertEqual([t["summary"] for t in tools], ["ls -la", "/tmp/README.md"])
        self.assertEqual(got[-1]["content"], TEXT_OUTPUT)
        self.assertTrue(got[-1]["success"])
        # The event stream: output and tool events in the same order.
        events = sse.take_until(lambda e: e[1] in TASK_END)
        seq = [(e[1], e[2].get("content") or e[2].get("name")) for e in events
               if e[1] in ("task_output", "task_tool")]
        self.assertEqual(seq, [("task_output" if k == "chunk" else k, v) for k, v in kinds])
        end = events[-1][2]
        self.assertEqual(end["tokens"], TOKENS)
        self.assertAlmostEqual(end["cost_usd"], 0.0123)
        self.assertNotIn("seq", [e for e in events if e[1] == "task_tool"][0][2],
                         "task_tool is live only, as task_output")
        # The response file: Tokens and Cost right after Duration.
        name, text = w.wait_response("t-text")
        lines = text.split("\n")
        i = [n for n, line in enumerate(lines) if line.startswith("**Duration:**")][0]
        self.assertEqual(lines[i + 1], "**Tokens:** in 120, out 345, cache read 15000, "
                                       "cache write 2000")
        self.assertEqual(lines[i + 2], "**Cost:** $0.0123")
        self.assertTrue(lines[i + 3].startswith("**Timestamp:**"))
        self.assertEqual(parse_response(text)["output"], TEXT_OUTPUT)
        # Read back by the worker (response_read_header) as any response.
        t = w.wait_state("t-text", "done")
        self.assertEqual(t["result"]["output"], TEXT_OUTPUT)
        self.assertAlmostEqual(t["result"]["duration_seconds"], 0.5, delta=5)
        # The timeline entry.
        entry = w.get("/api/timeline").json()["entries"][0]
        self.assertEqual(entry["tokens"], TOKENS)
        self.assertAlmostEqual(entry["cost_usd"], 0.0123)
        # /metrics.
        body = w.get("/metrics").body.decode()
        ok, out = promtool_check(body)
        self.assertTrue(ok, out)
        m = parse_metrics(body)
        for kind, n in TOKENS.items():
            self.assertEqual(metric_sum(m, "hive_tokens_total", kind=kind), n)
        self.assertAlmostEqual(metric_sum(m, "hive_cost_usd_total"), 0.0123)
        # The CLI was run as documented, the model passed, the task on stdin.
        run = self.runs()[0]
        self.assertEqual(run["argv"][:4], ["-p", "--output-format", "stream-json", "--verbose"])
        self.assertEqual(run["argv"][4:6], ["--model", "sonnet"])
        self.assertEqual(run["prompt"], "look around")

    def test_error_result_and_killed_stream_fail_clearly(self):
        w = self.agent()
        w.submit("STREAM: error", task_id="t-err")
        w.submit("STREAM: killed", task_id="t-killed")
        w.submit("after", task_id="t-after")
        _, text = w.wait_response("t-err")
        r = parse_response(text)
        self.assertIn("FAILED", r["Status"])
        self.assertEqual(r["error"], "agent error (error_max_turns): no message")
        self.assertEqual(r["Cost"], "$0.0020")
        _, text = w.wait_response("t-killed")
        r = parse_response(text)
        self.assertIn("FAILED", r["Status"])
        self.assertIn("the agent's stream ended without a result", r["error"])
        self.assertIn("killed by signal 9", r["error"])
        self.assertEqual(r["output"], "Starting the work")
        self.assertNotIn("Tokens", r)
        w.wait_response("t-after")
        self.assertTrue(w.alive())

    def test_recovered_timeline_entry_keeps_tokens_and_cost(self):
        """A power cut lost the timeline's last line (and its index): recovery
        rebuilds the entry from the response file, tokens and cost included."""
        w = self.agent()
        w.submit("hello", task_id="rec-1")
        wait_for(lambda: w.get("/api/timeline").json()["total_count"] == 1 or None)
        before = w.get("/api/timeline").json()["entries"][0]
        self.assertEqual(before["tokens"], TOKENS)
        w.stop()
        path = w.path(".deia", "bot-logs", w.bot + "-timeline.jsonl")
        open(path, "w").close()
        os.utime(path, (time.time() - 60, time.time() - 60))
        os.unlink(w.path(".deia", "bot-logs", w.bot + "-timeline.idx"))
        w2 = self.restart(w, "--adapter-type", "claude", "--", FAKE)
        after = w2.get("/api/timeline").json()["entries"]
        self.assertEqual([e["task_id"] for e in after], ["rec-1"])
        self.assertEqual(after[0]["tokens"], TOKENS)
        self.assertAlmostEqual(after[0]["cost_usd"], 0.0123)

    def test_usage_limit_requeues_pauses_and_resumes(self):
        w = self.agent()
        sse = self.sse(w)
        w.submit("LIMIT_ONCE: a\nRESET_IN: 2\nfirst", task_id="t-limit")
        w.submit("second", task_id="t-next")
        ev = sse.take_until(lambda e: e[1] == "bot_paused")[-1][2]
        self.assertIn("usage limit", ev["reason"])
        self.assertIn("until", ev)
        st = w.status()
        self.assertEqual(st["status"], "paused")
        self.assertIn("usage limit", st["paused_reason"])
        self.assertIsNotNone(st["paused_until"])
        self.assertEqual(w.responses("t-limit"), [])
        self.assertEqual(w.task("t-limit").json()["state"], "queued")
        sse.take_until(lambda e: e[1] == "bot_resumed")
        w.wait_response("t-limit")
        w.wait_response("t-next")
        time.sleep(0.5)
        self.assertEqual(len(w.responses("t-limit")), 1)
        self.assertEqual(len(w.responses("t-next")), 1)
        runs = [r["prompt"].splitlines()[-1] for r in self.runs()]
        self.assertEqual(runs, ["first", "first", "second"], "the limited task runs first again")
        self.assertIsNone(w.status()["paused_reason"])

    def test_usage_limit_while_stopping_leaves_the_task_queued(self):
        """A limit that comes while the worker stops (its grace lets the task end)
        is not a failed answer: the task stays queued and runs at the next start."""
        w = self.agent("--stop-grace", "8")
        w.submit("LIMIT_ONCE: stop\nDELAY: 1\nfirst", task_id="t-stop")
        w.wait_state("t-stop", ("running",))
        code, killed = w.stop()
        self.assertFalse(killed, "the worker stopped within its grace")
        self.assertIn("usage limit while the bot stops", w.log_text(), "the limit came in the grace")
        self.assertEqual(w.responses("t-stop"), [], "not answered as failed")
        w2 = self.restart(w, "--adapter-type", "claude", "--model", "sonnet", "--", FAKE,
                          env={"FAKE_CLAUDE_LOG": self.argv_log,
                               "FAKE_CLAUDE_STATE": self.state,
                               "HIVE_TEST_CLOCK_FILE": self.clock})
        name, _ = w2.wait_response("t-stop")
        self.assertIn("-complete.md", name)
        self.assertEqual(len(w2.responses("t-stop")), 1)

    def test_usage_limit_without_auto_resume_waits_for_resume(self):
        w = self.agent("--auto-resume", "false")
        w.submit("LIMIT_ONCE: b\nRESET_IN: 1\nx", task_id="t-manual")
        st = w.wait_status(lambda s: s["paused_reason"], what="paused")
        self.assertIsNone(st["paused_until"])
        time.sleep(2.5)
        self.assertEqual(w.status()["status"], "paused")
        self.assertEqual(w.responses("t-manual"), [])
        self.assertEqual(w.post("/api/resume").status, 200)
        w.wait_response("t-manual")
        self.assertEqual(len(self.runs()), 2)

    def test_plain_cli_limit_message_requeues(self):
        script = os.path.join(self.tmp, "limited.sh")
        with open(script, "w") as f:
            f.write("#!/bin/sh\nif [ ! -e %s/once ]; then touch %s/once; "
                    "echo 'Error: usage limit reached, try again in 1 s' >&2; exit 1; fi\n"
                    "echo done\n" % (self.state, self.state))
        os.chmod(script, 0o755)
        w = self.new_worker("--adapter-type", "cli", "--", script)
        # The pause lasts a second at most: polling /api/status for it can miss
        # it on a loaded machine, the event stream (opened first) cannot.
        sse = self.sse(w)
        w.submit("x", task_id="t-cli")
        paused = sse.take_until(lambda e: e[1] == "bot_paused")[-1][2]
        self.assertIn("usage limit", paused["reason"])
        sse.take_until(lambda e: e[1] == "bot_resumed")
        _, text = w.wait_response("t-cli")
        self.assertIn("SUCCESS", parse_response(text)["Status"])
        self.assertEqual(len(w.responses("t-cli")), 1)

    def test_limit_reset_just_passed_resumes_at_once(self):
        """A reset time already reached when the task is requeued ("try again
        in 1 s" read at the end of a second, here "in 0 s") lifts at once; it
        was taken for a limit without a time and held the bot 60 s."""
        script = os.path.join(self.tmp, "limited0.sh")
        with open(script, "w") as f:
            f.write("#!/bin/sh\nif [ ! -e %s/once0 ]; then touch %s/once0; "
                    "echo 'Error: usage limit reached, try again in 0 s' >&2; exit 1; fi\n"
                    "echo done\n" % (self.state, self.state))
        os.chmod(script, 0o755)
        w = self.new_worker("--adapter-type", "cli", "--", script)
        sse = self.sse(w)
        w.submit("x", task_id="t-late")
        paused = sse.take_until(lambda e: e[1] == "bot_paused")[-1][2]
        self.assertIn("try again in 0 s", paused["reason"])
        sse.take_until(lambda e: e[1] == "bot_resumed")
        _, text = w.wait_response("t-late")
        self.assertIn("SUCCESS", parse_response(text)["Status"])

    def test_session_continue_reset_and_restart(self):
        w = self.agent("--session", "continue")
        w.submit("one", task_id="s1")
        w.wait_response("s1")
        w.submit("two", task_id="s2")
        w.wait_response("s2")
        runs = self.runs()
        self.assertNotIn("--resume", runs[0]["argv"])
        path = os.path.join(self.tmp, ".deia", "hive", "sessions", w.bot + ".json")
        with open(path) as f:
            first = json.load(f)["session_id"]
        self.assertEqual(runs[1]["argv"][-2:], ["--resume", first])
        self.assertEqual(w.post("/api/reset").json()["status"], "reset")
        wait_for(lambda: stored_session(path) is None, what="the stored session forgotten")
        w.submit("three", task_id="s3")
        w.wait_response("s3")
        self.assertNotIn("--resume", self.runs()[2]["argv"])
        with open(path) as f:
            third = json.load(f)["session_id"]
        self.assertNotEqual(third, first)
        w.stop()
        w = self.restart(w, "--adapter-type", "claude", "--session", "continue", "--", FAKE,
                         env={"FAKE_CLAUDE_LOG": self.argv_log})
        w.submit("four", task_id="s4")
        w.wait_response("s4")
        self.assertEqual(self.runs()[3]["argv"][-2:], ["--resume", third])

    def test_refused_resume_runs_fresh_and_says_so(self):
        d = os.path.join(self.tmp, ".deia", "hive", "sessions")
        os.makedirs(d)
        with open(os.path.join(d, "BOT-E2E.json"), "w") as f:
            json.dump({"session_id": "gone-123"}, f)
        w = self.agent("--session", "continue")
        w.submit("hello", task_id="r1")
        _, text = w.wait_response("r1")
        r = parse_response(text)
        self.assertIn("SUCCESS", r["Status"])
        self.assertTrue(r["output"].startswith("[hive] The agent could not resume session "
                                               "gone-123"), r["output"])
        self.assertTrue(r["output"].endswith(TEXT_OUTPUT))
        runs = self.runs()
        self.assertEqual(runs[0]["argv"][-2:], ["--resume", "gone-123"])
        self.assertNotIn("--resume", runs[1]["argv"])
        self.assertEqual(len(w.responses("r1")), 1)

    def test_budget_warns_pauses_and_resumes_next_day(self):
        w = self.agent("--budget-usd", "1.00")
        sse = self.sse(w)
        for i in range(3):
            w.submit("STREAM: cheap\n%d" % i, task_id="b%d" % i)
        w.submit("STREAM: cheap\nlater", task_id="b3")
        warn = sse.take_until(lambda e: e[1] == "warning")[-1][2]
        self.assertIn("80% of the daily budget", warn["message"])
        paused = sse.take_until(lambda e: e[1] == "bot_paused")[-1][2]
        self.assertEqual(paused["reason"], "budget: $1.35 of $1.00 used today")
        for i in range(3):
            w.wait_response("b%d" % i)
        time.sleep(1)
        self.assertEqual(w.responses("b3"), [])
        st = w.status()
        self.assertEqual(st["paused_reason"], "budget: $1.35 of $1.00 used today")
        budget = os.path.join(self.tmp, ".deia", "hive", "budget", w.bot + ".json")
        with open(budget) as f:
            self.assertAlmostEqual(json.load(f)["usd"], 1.35)
        # A restart the same day stays paused.
        w.stop()
        w = self.restart(w, "--adapter-type", "claude", "--budget-usd", "1.00", "--", FAKE,
                         env={"FAKE_CLAUDE_LOG": self.argv_log,
                              "HIVE_TEST_CLOCK_FILE": self.clock})
        sse = self.sse(w)
        self.assertEqual(w.status()["paused_reason"], "budget: $1.35 of $1.00 used today")
        time.sleep(0.5)
        self.assertEqual(w.responses("b3"), [])
        # The next day.
        with open(self.clock, "w") as f:
            f.write("86400")
        sse.take_until(lambda e: e[1] == "bot_resumed")
        w.wait_response("b3")
        self.assertIsNone(w.status()["paused_reason"])

    def test_codex_and_gemini_presets(self):
        """The presets' output readers, on their documented formats (the
        recorded outputs stand in for the CLIs: the preset's own arguments
        follow `sh -c SCRIPT` and are ignored)."""
        streams = os.path.join(SOURCE_DIR, "tests", "agents", "streams")
        w = self.new_worker("--adapter-type", "codex", "--", "sh", "-c",
                            "cat %s/codex.jsonl" % streams, bot="BOT-CODEX")
        w.submit("x", task_id="c1")
        _, text = w.wait_response("c1")
        r = parse_response(text)
        self.assertIn("SUCCESS", r["Status"])
        self.assertEqual(r["output"], "The repository has a README.")
        self.assertEqual(r["Tokens"], "in 24763, out 122, cache read 24448, cache write 0")
        self.assertNotIn("Cost", r)
        w = self.new_worker("--adapter-type", "gemini", "--", "sh", "-c",
                            "cat %s/gemini.json" % streams, bot="BOT-GEMINI")
        w.submit("x", task_id="g1")
        _, text = w.wait_response("g1")
        r = parse_response(text)
        self.assertEqual(r["output"], "The capital of France is Paris.")
        self.assertEqual(r["Tokens"], "in 250, out 8, cache read 100, cache write 0")


class AgentHiveTest(unittest.TestCase):
    """`hive up` with two claude bots: the hive's metrics and `hive reset`."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="hive-e2e-agent-")
        self.log = os.path.join(self.tmp, "argv.jsonl")
        self.clock = os.path.join(self.tmp, "clock")
        os.environ["FAKE_CLAUDE_LOG"] = self.log
        os.environ["HIVE_TEST_CLOCK_FILE"] = self.clock
        self.hive = None

    def start(self, hive_extra=""):
        bots = [{"id": "BOT-A", "adapter": "{type: claude, command: [%s]}" % FAKE},
                {"id": "BOT-B", "adapter": "{type: claude, command: [%s]}" % FAKE}]
        self.hive = Hive(self.tmp, bots)
        self.hive.write_yaml(bots)
        with open(self.hive.yaml) as f:
            text = f.read()
        text = text.replace("  - id: BOT-A\n", "  - id: BOT-A\n    session: continue\n")
        with open(self.hive.yaml, "w") as f:
            f.write(text.replace("hive:\n", "hive:\n" + hive_extra, 1))
        self.hive.start()

    def tearDown(self):
        os.environ.pop("FAKE_CLAUDE_LOG", None)
        os.environ.pop("HIVE_TEST_CLOCK_FILE", None)
        if not self.hive:
            return
        code, killed = self.hive.stop()
        if not getattr(self._outcome, "success", True) or killed:
            sys.stderr.write(self.hive.log_text()[-6000:])
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.assertFalse(killed)

    def test_hive_metrics_and_reset(self):
        self.start()
        for bot in ("BOT-A", "BOT-B", "BOT-A"):
            r = self.hive.post("/bots/%s/api/task" % bot, {"command": "go"})
            self.assertEqual(r.status, 202, r)
        wait_for(lambda: self.hive.get("/api/timeline").json()["total_count"] == 3 or None,
                 TASK_TIMEOUT, what="3 tasks done")

        def scraped():
            body = self.hive.get("/metrics").body.decode()
            m = parse_metrics(body)
            return (body, m) if metric_sum(m, "hive_cost_usd_total") > 0.0368 else None
        body, m = wait_for(scraped, 15, interval=0.3, what="the hive's cost")
        ok, out = promtool_check(body)
        self.assertTrue(ok, out)
        self.assertAlmostEqual(metric_sum(m, "hive_cost_usd_total", bot="BOT-A"), 0.0246)
        self.assertAlmostEqual(metric_sum(m, "hive_cost_usd_total", bot="BOT-B"), 0.0123)
        self.assertEqual(metric_sum(m, "hive_tokens_total", bot="BOT-A", kind="cache_read"),
                         30000)
        self.assertEqual(metric_sum(m, "hive_tokens_total", kind="output"), 3 * 345)
        p = self.hive.cli("reset", "BOT-A")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("BOT-A: reset", p.stdout)
        wait_for(lambda: stored_session(os.path.join(self.tmp, ".deia", "hive", "sessions",
                                                     "BOT-A.json")) is None,
                 what="BOT-A's stored session forgotten")


    def test_hive_budget_pauses_every_bot_until_the_next_day(self):
        self.start("  budget: {usd_per_day: 0.02}\n")
        for bot in ("BOT-A", "BOT-B"):
            self.assertEqual(self.hive.post("/bots/%s/api/task" % bot,
                                            {"command": "go", "task_id": "h-" + bot}).status, 202)
        reason = "budget: hive $0.02 of $0.02 used today"
        for bot in ("BOT-A", "BOT-B"):
            wait_for(lambda: self.hive.get("/bots/%s/status" % bot).json()["paused_reason"]
                     == reason or None, TASK_TIMEOUT, what="%s paused by the hive budget" % bot)
        # The supervisor's /status and `hive status` show why.
        wait_for(lambda: self.hive.bot("BOT-B").get("paused_reason") == reason or None,
                 TASK_TIMEOUT, what="the supervisor's /status shows the reason")
        p = self.hive.cli("status")
        self.assertIn("paused: " + reason, p.stdout)
        self.assertEqual(self.hive.post("/bots/BOT-B/api/task",
                                        {"command": "later", "task_id": "h-later"}).status, 202)
        time.sleep(1.5)
        self.assertEqual(self.hive.responses("BOT-B", "h-later"), [])
        # A bot resumed by hand stays resumed across a restart of the supervisor
        # the same day (the old code paused it again), the others stay paused.
        p = self.hive.cli("resume", "BOT-A")
        self.assertEqual(p.returncode, 0, p.stderr)
        wait_for(lambda: self.hive.get("/bots/BOT-A/status").json()["paused_reason"] is None
                 or None, TASK_TIMEOUT, what="BOT-A resumed by hand")
        code, killed = self.hive.stop()
        self.assertFalse(killed)
        self.hive.start()
        time.sleep(3)  # the budget's ticks after the start
        self.assertIsNone(self.hive.get("/bots/BOT-A/status").json()["paused_reason"])
        self.assertEqual(self.hive.get("/bots/BOT-B/status").json()["paused_reason"], reason)
        with open(self.clock, "w") as f:
            f.write("86400")
        self.hive.wait_response("BOT-B", "h-later")
        self.assertIsNone(self.hive.get("/bots/BOT-A/status").json()["paused_reason"])


if __name__ == "__main__":
    main()
