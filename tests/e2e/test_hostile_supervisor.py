"""Hostile clients against the supervisor's front door and its proxy (issue 5; SPEC.md
§4-§7).

`hive up` runs one mock bot (slow, so the sentinel task accepted before any abuse is
still running while the first cases attack) with small limits in hive.yaml
(tests/e2e/hostile.py: LIMITS). Every shared case attacks the front door, through the
proxy path /bots/BOT-H/... (and the front door's own /status where the case allows);
after each one GET /status of the supervisor, GET /bots/BOT-H/status and the worker's own
/status still answer 200, the bot was not restarted, and the sentinel is still known.

The cases only a proxy has: request smuggling (the worker must see exactly the requests
the front door accepted, and no client may get another request's answer), bodies that
stop or vanish half-way through the proxy, upgrades that fail.
"""

import json
import os
import socket
import struct
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from hive_e2e import read_jsonl, wait_for  # noqa: E402
from hostile import (LIMITS, HiveTarget, HostileCases, TokenCases, chunked,  # noqa: E402
                     connect, exchange, http_get, http_json, post)


def hidden_request(task_id):
    """A request for the worker's own path, to be smuggled inside another one."""
    body = json.dumps({"command": "smuggled", "task_id": task_id}).encode()
    return (b"POST /api/task HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body)) + body


class SupervisorHostile(HostileCases, unittest.TestCase):
    """Every shared hostile case through the front door, plus the proxy's own."""

    @classmethod
    def setUpClass(cls):
        cls.start_target(HiveTarget())

    @classmethod
    def tearDownClass(cls):
        cls.finish_target()

    # ---- what the worker saw

    def received(self):
        """task_received events in the worker's activity log, by task id."""
        path = os.path.join(self.T.work_dir, ".deia", "bot-logs", "BOT-" + self.T.bot + "-activity.jsonl")
        return [ev.get("task_id") for ev in read_jsonl(path)
                if ev.get("event_type") == "task_received"]

    def victims(self, what):
        """Ordinary clients after an attack get their own answers, not a smuggled one's
        (the proxy reuses worker connections)."""
        for i in range(4):
            st, body = http_get(self.T.port, self.T.prefix + "/health")
            self.assertEqual(st, 200, "victim %d after %s: %r" % (i, what, body))
            j = json.loads(body)
            self.assertEqual(j.get("status"), "ok", "victim %d after %s got %r" % (i, what, j))
            self.assertEqual(j.get("bot_id"), self.T.bot)

    # ---- smuggling

    def test_request_smuggling_through_the_proxy(self):
        """Requests built so that a front door and a worker that disagree on where a body
        ends would see a second, hidden request: the worker must receive exactly the
        tasks the front door accepted, and nobody gets the hidden request's answer."""
        p = (self.T.prefix + "/api/task").encode()
        head = b"POST %s HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n" % p

        def visible(tid):
            return json.dumps({"command": "visible", "task_id": tid}).encode()

        variants = []   # (name, bytes, hidden id, ids the worker must accept)

        def add(name, build, legit=()):
            hid = "SMUG-%d" % (len(variants) + 1)
            variants.append((name, build(hidden_request(hid)), hid, list(legit)))

        add("CL.TE", lambda h: head + b"Content-Length: %d\r\nTransfer-Encoding: chunked\r\n\r\n"
            % (len(h) + 5) + b"0\r\n\r\n" + h)
        add("TE.CL", lambda h: head + b"Transfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n"
            + chunked(h))
        add("TE with a space before the colon, hidden in the decoded body",
            lambda h: head + b"Transfer-Encoding : chunked\r\n\r\n" + chunked(b"0\r\n\r\n" + h))
        add("TE with a space before the colon, and CL",
            lambda h: head + b"Content-Length: %d\r\nTransfer-Encoding : chunked\r\n\r\n"
            % (len(h) + 5) + b"0\r\n\r\n" + h)
        add("CL with a space before the colon, and TE",
            lambda h: head + b"Content-Length : %d\r\nTransfer-Encoding: chunked\r\n\r\n"
            % (len(h) + 5) + b"0\r\n\r\n" + h)
        add("TE folded over two lines",
            lambda h: head + b"Transfer-Encoding: identity\r\n chunked\r\n\r\n"
            + chunked(b"0\r\n\r\n" + h))
        add("two TE headers", lambda h: head + b"Transfer-Encoding: chunked\r\n"
            b"Transfer-Encoding: identity\r\n\r\n" + chunked(b"0\r\n\r\n" + h))
        add("TE after a tab, and CL", lambda h: head + b"Transfer-Encoding:\tchunked\r\n"
            b"Content-Length: %d\r\n\r\n" % (len(h) + 5) + b"0\r\n\r\n" + h)
        add("TE in capitals with a space before the colon",
            lambda h: head + b"TRANSFER-ENCODING : CHUNKED\r\n\r\n" + chunked(b"0\r\n\r\n" + h))
        add("GET with a body", lambda h: b"GET %s/status HTTP/1.1\r\nHost: localhost\r\n"
            b"Content-Length: %d\r\n\r\n" % (self.T.prefix.encode(), len(h)) + h)
        add("chunked, then a pipelined request for the worker's own path",
            lambda h: head + b"Transfer-Encoding: chunked\r\n\r\n" + chunked(visible("SMUG-VIS"))
            + h, legit=["SMUG-VIS"])
        add("an upgrade the worker refuses (no key), then raw bytes",
            lambda h: b"GET %s/ws HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\n"
            b"Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\r\n" % self.T.prefix.encode()
            + h)
        add("an upgrade with a version the worker refuses, then raw bytes",
            lambda h: b"GET %s/ws HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\n"
            b"Upgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Version: 1337\r\n\r\n" % self.T.prefix.encode() + h)
        add("an upgrade to something else, then raw bytes",
            lambda h: b"GET %s/status HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\n"
            b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n"
            % self.T.prefix.encode() + h)

        for name, data, hid, legit in variants:
            with self.subTest(variant=name):
                before = self.received()
                # The victims come right after the first answer: a smuggled request's
                # answer waiting on a pooled worker connection would be theirs.
                ex = exchange(self.T.port, data, timeout=LIMITS["idle_timeout"] + 2,
                              want=1 + len(legit))
                self.victims(name)
                for r in ex.responses:
                    self.assertNotIn(hid.encode(), r.body, "the hidden request was answered "
                                     "(%s): %r" % (name, ex))
                    self.assertTrue(r.status < 500 or r.status == 501, "%s: %r" % (name, ex))
                self.assert_no_task(hid, "smuggling (%s)" % name)
                got = self.received()[len(before):]
                self.assertEqual(got, legit, "%s: the worker received %r" % (name, got))
                self.survived("smuggling (%s)" % name)
        self.assertNotIn("SMUG-1", self.received())

    # ---- bodies that stop half-way through the proxy

    def check_next_request_is_clean(self, what, tid):
        """The next proxied task arrives whole and alone."""
        before = self.received()
        st, j = http_json(self.T.port, "POST", self.T.prefix + "/api/task",
                          {"command": "clean after %s" % what, "task_id": tid})
        self.assertEqual(st, 202, j)
        self.assertEqual(j["task_id"], tid)
        self.victims(what)
        self.assertEqual(self.received()[len(before):], [tid])
        wait_for(lambda: (lambda r: r[0] == 200 and r[1]["state"] == "done")(
            self.worker_task(tid)), 30, interval=0.2, what="task %s done" % tid)
        out = self.worker_task(tid)[1]["result"]["output"]
        self.assertIn("clean after %s" % what, out)

    def test_unfinished_body_through_the_proxy_leaves_no_half_request(self):
        """A body that stops half-way: the connection is closed after the timeout, the
        worker connection that carried the half body is not reused for anyone else, and
        no task comes of it."""
        before = self.received()
        data = post(self.T.prefix + "/api/task", b'{"command":"half","task_id":"HALF-1"}'
                    + b" " * 200)[:-150]
        ex = exchange(self.T.port, data, timeout=LIMITS["idle_timeout"] + 6)
        self.assertTrue(ex.closed, ex)
        self.assertLess(ex.elapsed, max(LIMITS.values()) + 4, ex)
        for r in ex.responses:
            self.assertIn(r.status, (408, 502, 504), ex)
        self.assertEqual(self.received()[len(before):], [])
        self.assert_no_task("HALF-1", "a half body")
        self.survived("a half body through the proxy")
        self.check_next_request_is_clean("a half body", "AFTER-HALF")

    def test_client_gone_mid_body_through_the_proxy(self):
        """The client vanishes half-way through a body (FIN, then RST): nothing is queued
        and the next client is served cleanly."""
        for i, how in enumerate(("fin", "rst")):
            with self.subTest(how=how):
                before = self.received()
                data = post(self.T.prefix + "/api/task",
                            b'{"command":"gone","task_id":"GONE-%d"}' % i + b" " * 5000)[:-4000]
                s = connect(self.T.port)
                s.sendall(data)
                time.sleep(0.2)
                if how == "rst":
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                s.close()
                time.sleep(0.3)
                self.assertEqual(self.received()[len(before):], [])
                self.assert_no_task("GONE-%d" % i, "a client gone mid-body")
                self.survived("a client gone mid-body (%s)" % how)
                self.check_next_request_is_clean("a client gone (%s)" % how, "AFTER-GONE-%d" % i)

    def test_front_door_own_endpoints_take_no_abuse(self):
        """The supervisor's own API with bodies it does not expect: errors, not crashes,
        and never a control action taken on garbage."""
        cases = [("POST", "/api/bots/NOPE/restart", "[" * 100000),
                 ("POST", "/api/bots/NOPE/restart", "[1, 2]"),
                 ("POST", "/api/bots/" + "x" * 300 + "/restart", "{}"),
                 ("POST", "/api/bots/../restart", "{}"),
                 ("POST", "/api/bots/BOT-H%00/restart", "{}"),
                 ("POST", "/bots/%2e%2e/status", None),
                 ("GET", "/bots/" + "y" * 300 + "/status", None),
                 ("GET", "/bots/BOT-H%2f..%2f..%2fstatus", None)]
        for method, path, body in cases:
            with self.subTest(method=method, path=path[:40]):
                data = post(path, body) if body is not None else (
                    "%s %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n" % (method, path)
                ).encode()
                ex = exchange(self.T.port, data, want=1, timeout=10)
                self.assertIsNotNone(ex.status, ex)
                self.assertTrue(400 <= ex.status < 500, ex)
                self.survived("%s %s" % (method, path[:40]))


class SupervisorToken(TokenCases, unittest.TestCase):
    """A hive with token_env set: the front door, the proxy path and the worker's own
    port all want the token."""

    @classmethod
    def setUpClass(cls):
        cls.start_target(HiveTarget(token=TokenCases.TOKEN))

    @classmethod
    def tearDownClass(cls):
        cls.finish_target()

    def test_worker_port_needs_the_token_too(self):
        for path in ("/status", "/api/task/" + "SENTINEL-1"):
            with self.subTest(path=path):
                st, body = http_get(self.T.bot_port, path)
                self.assertEqual(st, 401, body)
                st, body = http_get(self.T.bot_port, path, token="wrong")
                self.assertEqual(st, 401, body)
        self.assertEqual(http_get(self.T.bot_port, "/health")[0], 200)
        self.survived("the worker's port without the token")

    def test_control_api_without_token(self):
        for path in ("/api/bots/BOT-H/restart", "/api/bots/BOT-H/stop", "/api/reload",
                     "/api/shutdown"):
            with self.subTest(path=path):
                ex = exchange(self.T.port, post(path, {}), want=1)
                self.assertEqual(ex.status, 401, ex)
                ex = exchange(self.T.port, post(path, {}, b"Authorization: Bearer nope\r\n"),
                              want=1)
                self.assertEqual(ex.status, 401, ex)
        time.sleep(0.3)
        self.survived("control requests without the token")


if __name__ == "__main__":
    unittest.main(verbosity=2)
