"""Hostile clients against one hive-worker (issue 5; SPEC.md §4, §5, §7).

The worker runs with small limits (tests/e2e/hostile.py: LIMITS) and a slow mock adapter;
a sentinel task is accepted before any abuse. Each case below attacks the worker's own
port with raw bytes, then checks that GET /status still answers 200 and the sentinel is
still known; when the class ends the sentinel has exactly one response file and nothing
was written outside the expected .deia/ paths (hostile.py: HostileBase).

The well-behaved API (status codes for ordinary mistakes, WebSocket message flow) is
test_worker_api.py's and test_worker_ws.py's; the cases here are the abusive ones.
"""

import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from hive_e2e import wait_for  # noqa: E402
from hostile import (RESP_NAME_RE, HostileCases, TokenCases, WorkerTarget,  # noqa: E402
                     stray_files)

FILE_MARK = "filedrop-escape-%d" % os.getpid()


class WorkerHostile(HostileCases, unittest.TestCase):
    """Every shared hostile case, plus file drops with hostile ids."""

    @classmethod
    def setUpClass(cls):
        cls.start_target(WorkerTarget())

    @classmethod
    def tearDownClass(cls):
        cls.finish_target()

    def test_file_tasks_with_hostile_ids_stay_in_their_folders(self):
        """Task files whose task_id/from hold `..`, `/`, NUL or 300 characters: each gets
        exactly one response file, named with [A-Za-z0-9._-] only, in responses/."""
        w = self.T.w
        before = set(w.responses())
        files = {
            "escape.md": "---\ntask_id: ../../%s-id\nfrom: ../../%s-from\n---\nescape\n"
                         % (FILE_MARK, FILE_MARK),
            "long.md": "---\ntask_id: %s\nfrom: /tmp/%s\npriority: P1\n---\nlong\n"
                       % ("L" * 300, FILE_MARK),
            "nul.md": b"---\ntask_id: nul\x00%s\nfrom: me\n---\nnul\n" % FILE_MARK.encode(),
            "markdown.md": "**From:** ../../../%s\n**To:** /etc/passwd\n\nmarkdown form\n"
                           % FILE_MARK,
        }
        for name, text in files.items():
            w.write_task(name, text)

        def done():
            left = [n for n in os.listdir(w.queue_dir) if n.endswith(".md")]
            new = set(w.responses()) - before
            return new if not left and len(new) >= len(files) else None
        new = wait_for(done, 30, interval=0.1, what="a response for every dropped file")
        time.sleep(0.5)
        new = set(w.responses()) - before
        self.assertEqual(len(new), len(files), sorted(new))
        for name in new:
            self.assertRegex(name, RESP_NAME_RE)
            self.assertLessEqual(len(name), 255)
        self.assertEqual(sorted(n for n in w.listdir("_archive") if n in files), sorted(files))
        self.assertEqual(stray_files(self.T.root, self.T.work_dir, self.T.bot), [])
        self.survived("task files with hostile ids")


class WorkerToken(TokenCases, unittest.TestCase):
    """A worker with --token."""

    @classmethod
    def setUpClass(cls):
        cls.start_target(WorkerTarget(token=TokenCases.TOKEN))

    @classmethod
    def tearDownClass(cls):
        cls.finish_target()


if __name__ == "__main__":
    unittest.main(verbosity=2)
