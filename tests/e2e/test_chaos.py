"""CI's chaos run (issue 5): `scripts/chaos --short` against $HIVE_BUILD_DIR.

About 1,000 tasks through every door (proxied HTTP and WebSocket, direct HTTP,
file drops renamed in and written in place slowly) while workers and adapter
children are SIGKILLed every 200-500 ms, workers are starved of file
descriptors for moments, and the supervisor is SIGKILLed and restarted once;
one bot's adapter splits UTF-8 characters across writes and leaves
grandchildren behind (one in a session of its own). Passes when the driver exits 0 with nothing lost, nothing
duplicated, every answer agreeing with GET /api/task/<id>, and nothing left
running. The driver and everything it checks are described in scripts/chaos.

The seed is random and printed (CHAOS-RESULT line); HIVE_CHAOS_SEED=S repeats a
run's choices (not its timing). HIVE_CHAOS_ARGS adds driver options.
"""

import json
import os
import shlex
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.environ.get("HIVE_SOURCE_DIR", os.path.join(HERE, "..", ".."))
BUILD_DIR = os.environ.get("HIVE_BUILD_DIR", os.path.join(SOURCE_DIR, "build"))
CHAOS = os.path.join(SOURCE_DIR, "scripts", "chaos")
RUN_TIMEOUT = 240   # the driver bounds itself well below this (its final wait is 60 s)


class ChaosShort(unittest.TestCase):
    def test_short_chaos_loses_and_duplicates_nothing(self):
        for b in (os.path.join(BUILD_DIR, "supervisor", "hive"),
                  os.path.join(BUILD_DIR, "worker", "hive-worker")):
            if not os.access(b, os.X_OK):
                self.fail("not built: %s" % b)
        fd, out_json = tempfile.mkstemp(prefix="hive-chaos-", suffix=".json")
        os.close(fd)
        try:
            argv = ["/usr/bin/python3", CHAOS, "--short", "--build-dir", BUILD_DIR,
                    "--json", out_json]
            if os.environ.get("HIVE_CHAOS_SEED"):
                argv += ["--seed", os.environ["HIVE_CHAOS_SEED"]]
            argv += shlex.split(os.environ.get("HIVE_CHAOS_ARGS", ""))
            p = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, timeout=RUN_TIMEOUT)
            output = p.stdout.decode("utf-8", "replace")
            sys.stderr.write(output)
            try:
                with open(out_json) as f:
                    res = json.load(f)
            except (OSError, ValueError):
                self.fail("scripts/chaos wrote no result (exit %d):\n%s"
                          % (p.returncode, output[-4000:]))
        finally:
            os.unlink(out_json)
        where = "\n(seed %s; driver output above)" % res.get("seed")
        self.assertEqual(res["lost"], 0, "accepted tasks lost" + where)
        self.assertEqual(res["duplicated"], 0, "tasks answered more than once" + where)
        self.assertEqual(res["mismatch"], 0, "GET /api/task/<id> disagrees" + where)
        self.assertEqual(res["stray"], 0, "responses nobody asked for" + where)
        self.assertEqual(res["torn"], 0, "task files read half-written" + where)
        self.assertEqual(res["utf8_mangled"], 0, "UTF-8 split across writes mangled" + where)
        self.assertGreater(res["utf8_checked"], 0, "no UTF-8 output checked" + where)
        self.assertEqual(res["sanitizer_reports"], 0, "sanitizer reports in the logs" + where)
        self.assertEqual(res["leftover_processes"], 0, "processes left behind" + where)
        self.assertEqual(res["findings"], [], "findings" + where)
        self.assertTrue(res["settled"], "the hive did not settle in time" + where)
        self.assertEqual(p.returncode, 0, "scripts/chaos failed" + where)
        # The run must have been a real one: most tasks in, real chaos on the way.
        self.assertGreaterEqual(res["accepted"], res["tasks"] * 0.9, where)
        self.assertEqual(res["accepted"], res["responded"], where)
        self.assertGreaterEqual(res["worker_kills"], 10, where)
        self.assertEqual(res["supervisor_restarts"], 1, where)
        if "--no-fd-bursts" not in os.environ.get("HIVE_CHAOS_ARGS", ""):
            self.assertGreaterEqual(res["fd_bursts"], 1, where)
        for door, n in res["doors"].items():
            self.assertGreater(n, 0, "door %s unused%s" % (door, where))


if __name__ == "__main__":
    unittest.main()
