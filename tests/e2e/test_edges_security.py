"""End to end: a web page cannot drive local bots, and a stopped bot's port answers
(issue 10, cases 16 and 27; SPEC §6.2, §7).

Case 16 (DNS rebinding): a page whose own name resolves to 127.0.0.1 sends requests
with `Host: attacker.example`; a page anywhere sends `Origin: http://attacker.example`.
Both must be refused with 403 on every request (not only WebSocket upgrades) on the
supervisor's port, through its proxy and on a worker's own port; a name in
`server_names` and an origin in `allowed_origins` pass, the latter with CORS answers.

Case 27: while a bot is `stopped` or `fatal` the supervisor answers on the bot's port
itself (503 naming the state) instead of leaving connections hanging, and the worker
serves the port again after `hive start`.

A real `hive up` (the Hive class of test_supervisor_lifecycle.py) and a standalone
`hive-worker` (hive_e2e.Worker) on kernel-chosen loopback ports. Every wait is bounded.
Run with /usr/bin/python3.
"""

import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from hive_e2e import Worker  # noqa: E402
from test_supervisor_lifecycle import HIVE_BIN, WORKER_BIN, Hive, wait_for  # noqa: E402

SERVER_NAME = "hive.test"
ALLOWED = "http://app.test:3000"
EVIL_HOST = "attacker.example"
EVIL_ORIGIN = "http://attacker.example"
BOT = "BOT-001"


class GuardedHive(Hive):
    """A Hive whose roster lists an allowed origin and, with NAMES, a server name."""

    names = True

    def write_roster(self, bots=None):
        super().write_roster(bots)
        with open(self.roster) as f:
            doc = json.load(f)
        if self.names:
            doc["hive"]["server_names"] = [SERVER_NAME]
        doc["hive"]["allowed_origins"] = [ALLOWED]
        tmp = self.roster + ".tmp"
        with open(tmp, "w") as f:
            json.dump(doc, f, indent=2)
        os.rename(tmp, self.roster)


def request(port, method, path, host=None, origin=None, body=None, headers=None,
            content_type="application/json", timeout=5.0):
    """One request on a fresh connection: (status, headers dict lower-cased, body bytes)."""
    h = {"Host": host or "127.0.0.1:%d" % port}
    if origin is not None:
        h["Origin"] = origin
    if body is not None:
        body = json.dumps(body).encode() if isinstance(body, dict) else body
        if content_type:
            h["Content-Type"] = content_type
    h.update(headers or {})
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=h)
        r = conn.getresponse()
        data = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, data
    finally:
        conn.close()


def detail(body):
    return json.loads(body.decode())["detail"]


class Rebinding(unittest.TestCase):
    """Case 16 on one hive: the door, the proxy and the worker's own port. The
    hostile tests use a roster the old hive reads too (no server_names), so that
    they show the old hive answering them."""

    names = False

    def setUp(self):
        for b in (HIVE_BIN, WORKER_BIN):
            if not os.path.exists(b):
                self.fail("not built: %s" % b)
        self.dir = tempfile.mkdtemp(prefix="hive-sec-e2e-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.hive = GuardedHive(self, self.dir, [{"id": BOT}])
        self.hive.names = self.names
        self.hive.write_roster()
        self.hive.start()
        self.hive.wait_running([BOT])
        self.front = self.hive.listen_port
        self.port = self.hive.ports[BOT]
        status, _, body = request(self.port, "POST", "/api/task",
                                  body={"command": "hello", "task_id": "known-1"})
        self.assertEqual(status, 202, body)

    # (port, method, path, body) of every kind of request a page would want to make;
    # the control requests last, so that each of the others is tried on a running bot
    # even where they are not refused (the old hive).
    def targets(self):
        f, w = self.front, self.port
        return [
            (w, "POST", "/api/task", {"command": "evil"}),
            (w, "GET", "/api/task/known-1", None),
            (w, "GET", "/status", None),
            (w, "GET", "/health", None),
            (f, "GET", "/status", None),
            (f, "GET", "/health", None),
            (f, "POST", "/bots/%s/api/task" % BOT, {"command": "evil"}),
            (f, "GET", "/bots/%s/api/task/known-1" % BOT, None),
            (f, "GET", "/bots/%s/status" % BOT, None),
            (w, "POST", "/api/pause", {}),
            (f, "POST", "/bots/%s/api/pause" % BOT, {}),
            (f, "POST", "/api/bots/%s/stop" % BOT, {}),
        ]

    def assert_untouched(self):
        """Nothing a refused request asked for happened."""
        self.assertEqual(self.hive.bot(BOT)["status"], "running")
        status, _, body = request(self.port, "GET", "/status")
        self.assertEqual(status, 200)
        self.assertEqual(json.loads(body)["status"], "idle")   # not paused
        status, _, body = request(self.port, "GET", "/api/task/known-1")
        self.assertEqual(status, 200)
        self.assertFalse(os.path.exists(os.path.join(self.dir, ".deia", "hive", "tasks", BOT,
                                                     "PAUSE")))

    def test_hostile_host_is_refused_everywhere(self):
        for port, method, path, body in self.targets():
            for host in (EVIL_HOST, "%s:%d" % (EVIL_HOST, port), "127.0.0.1.%s" % EVIL_HOST):
                with self.subTest(port=port, method=method, path=path, host=host):
                    status, _, data = request(port, method, path, host=host, body=body)
                    self.assertEqual(status, 403, data)
                    self.assertIn("host", detail(data))
        self.assert_untouched()

    def test_hostile_origin_is_refused_everywhere(self):
        for port, method, path, body in self.targets():
            for origin in (EVIL_ORIGIN, "null", "http://127.0.0.1:1"):
                with self.subTest(port=port, method=method, path=path, origin=origin):
                    status, hdrs, data = request(port, method, path, origin=origin, body=body)
                    self.assertEqual(status, 403, data)
                    self.assertIn("origin", detail(data))
                    self.assertNotIn("access-control-allow-origin", hdrs)
        self.assert_untouched()

    def test_rebinding_with_both_headers(self):
        """The page's name in Host and in Origin: same-origin for the browser."""
        for port, method, path, body in self.targets():
            with self.subTest(port=port, path=path):
                host = "%s:%d" % (EVIL_HOST, port)
                status, _, data = request(port, method, path, host=host,
                                          origin="http://" + host, body=body)
                self.assertEqual(status, 403, data)
        self.assert_untouched()

    def test_websocket_upgrade_with_hostile_host(self):
        for port, path in ((self.front, "/bots/%s/ws" % BOT), (self.port, "/ws")):
            with self.subTest(port=port):
                status, _, _ = request(port, "GET", path, host=EVIL_HOST, headers={
                    "Upgrade": "websocket", "Connection": "Upgrade",
                    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
                    "Sec-WebSocket-Version": "13"})
                self.assertEqual(status, 403)

    def test_listed_origin_gets_cors(self):
        for port, prefix in ((self.front, "/bots/%s" % BOT), (self.port, "")):
            with self.subTest(port=port, what="preflight"):
                status, hdrs, data = request(port, "OPTIONS", prefix + "/api/task", origin=ALLOWED,
                                             headers={
                                                 "Access-Control-Request-Method": "POST",
                                                 "Access-Control-Request-Headers":
                                                     "authorization, content-type"})
                self.assertEqual(status, 204, data)
                self.assertEqual(hdrs.get("access-control-allow-origin"), ALLOWED)
                self.assertIn("POST", hdrs.get("access-control-allow-methods", ""))
                allow = hdrs.get("access-control-allow-headers", "").lower()
                self.assertIn("authorization", allow)
                self.assertIn("content-type", allow)
                self.assertIn("access-control-max-age", hdrs)
                self.assertIn("Origin", hdrs.get("vary", ""))
            with self.subTest(port=port, what="POST and GET"):
                task_id = "cors-%d" % port
                status, hdrs, data = request(port, "POST", prefix + "/api/task", origin=ALLOWED,
                                             body={"command": "hi", "task_id": task_id})
                self.assertEqual(status, 202, data)
                self.assertEqual(hdrs.get("access-control-allow-origin"), ALLOWED)
                self.assertIn("Origin", hdrs.get("vary", ""))
                status, hdrs, data = request(port, "GET", prefix + "/api/task/" + task_id,
                                             origin=ALLOWED)
                self.assertEqual(status, 200, data)
                self.assertEqual(hdrs.get("access-control-allow-origin"), ALLOWED)
        status, hdrs, _ = request(self.front, "GET", "/status", origin=ALLOWED)
        self.assertEqual(status, 200)
        self.assertEqual(hdrs.get("access-control-allow-origin"), ALLOWED)
        # A preflight of an origin not listed gets no CORS answer.
        status, hdrs, _ = request(self.port, "OPTIONS", "/api/task", origin=EVIL_ORIGIN,
                                  headers={"Access-Control-Request-Method": "POST"})
        self.assertEqual(status, 403)
        self.assertNotIn("access-control-allow-origin", hdrs)

    def test_post_without_json_is_415(self):
        for port, path in ((self.front, "/api/bots/%s/stop" % BOT), (self.front, "/api/reload"),
                           (self.front, "/bots/%s/api/task" % BOT),
                           (self.front, "/bots/%s/api/pause" % BOT),
                           (self.port, "/api/task"), (self.port, "/api/pause")):
            for ctype in ("text/plain", "application/x-www-form-urlencoded", None):
                with self.subTest(port=port, path=path, ctype=ctype):
                    status, _, data = request(port, "POST", path, content_type=ctype,
                                              body=b'{"command": "x"}')
                    self.assertEqual(status, 415, data)
        self.assert_untouched()


class ServerNames(Rebinding):
    """The same hive with `server_names` in its roster: the listed name passes and
    everything hostile is still refused (the inherited tests run again)."""

    names = True

    def test_listed_server_name_passes(self):
        for port, path in ((self.front, "/status"), (self.front, "/bots/%s/status" % BOT),
                           (self.port, "/status"), (self.port, "/health")):
            for host in (SERVER_NAME, "%s:%d" % (SERVER_NAME, port), "localhost:%d" % port,
                         "[::1]:%d" % port):
                with self.subTest(port=port, path=path, host=host):
                    status, _, data = request(port, "GET", path, host=host)
                    self.assertEqual(status, 200, data)
        # The page of the hive itself, under its listed name: its own origin.
        host = "%s:%d" % (SERVER_NAME, self.front)
        status, hdrs, data = request(self.front, "POST", "/bots/%s/api/task" % BOT, host=host,
                                     origin="http://" + host, body={"command": "mine"})
        self.assertEqual(status, 202, data)
        self.assertNotIn("access-control-allow-origin", hdrs)


class WorkerFlags(unittest.TestCase):
    """`hive-worker --server-name` (both spellings, repeatable) on its own."""

    def test_server_name_flag(self):
        d = tempfile.mkdtemp(prefix="hive-sec-e2e-")
        self.addCleanup(shutil.rmtree, d, True)
        w = Worker(d)
        w.start("--server-name=bots.test", "--server-name", "other.test",
                "--allowed-origin=http://page.test")
        self.addCleanup(w.stop)
        for host, want in (("bots.test", 200), ("bots.test:%d" % w.port, 200),
                           ("OTHER.test.", 200), ("127.0.0.1:%d" % w.port, 200),
                           (EVIL_HOST, 403), ("bots.test.%s" % EVIL_HOST, 403)):
            with self.subTest(host=host):
                status, _, data = request(w.port, "GET", "/status", host=host)
                self.assertEqual(status, want, data)
        status, hdrs, _ = request(w.port, "GET", "/status", origin="http://page.test")
        self.assertEqual(status, 200)
        self.assertEqual(hdrs.get("access-control-allow-origin"), "http://page.test")

NETNS_SCRIPT = r"""
import http.client, json, os, subprocess, sys, time
hive_bin, worker_bin, work = sys.argv[1:4]
subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
subprocess.run(["ip", "addr", "add", "10.9.9.9/32", "dev", "lo"], check=True)
env = dict(os.environ, HIVE_TOKEN="sekrit")
procs, out = [], {}
def get(port, path, host, addr="10.9.9.9"):
    for _ in range(200):
        try:
            c = http.client.HTTPConnection(addr, port, timeout=5)
            c.request("GET", path, headers={"Host": host, "Authorization": "Bearer sekrit"})
            r = c.getresponse()
            r.read()
            c.close()
            return r.status
        except OSError:
            time.sleep(0.05)
    return 0
try:
    for port, bind in ((18001, "10.9.9.9"), (18002, "0.0.0.0")):
        d = os.path.join(work, str(port))
        os.makedirs(d)
        procs.append(subprocess.Popen([worker_bin, "BOT-N", "--port", str(port), "--bind", bind,
                                       "--work-dir", d], env=env, stderr=subprocess.DEVNULL))
    with open(os.path.join(work, "hive.yaml"), "w") as f:
        json.dump({"hive": {"listen": "10.9.9.9:18000", "token_env": "HIVE_TOKEN",
                            "work_dir": work},
                   "defaults": {"bind": "10.9.9.9"},
                   "bots": [{"id": "BOT-001", "port": 18003}]}, f)
    procs.append(subprocess.Popen([hive_bin, "up", "-f", os.path.join(work, "hive.yaml")],
                                  env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    out["bound own"] = get(18001, "/status", "10.9.9.9:18001")
    out["bound other"] = get(18001, "/status", "10.9.9.10:18001")
    out["bound evil"] = get(18001, "/status", "attacker.example:18001")
    out["wildcard own"] = get(18002, "/status", "10.9.9.9:18002")
    out["wildcard evil"] = get(18002, "/status", "attacker.example")
    out["front own"] = get(18000, "/status", "10.9.9.9:18000")
    out["front evil"] = get(18000, "/status", "attacker.example")
    for _ in range(200):
        out["proxied own"] = get(18000, "/bots/BOT-001/status", "10.9.9.9:18000")
        if out["proxied own"] != 503:
            break
        time.sleep(0.05)
    out["proxied evil"] = get(18000, "/bots/BOT-001/status", "attacker.example:18000")
    out["bot port own"] = get(18003, "/status", "10.9.9.9:18003")
finally:
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            p.kill()
print(json.dumps(out))
"""


class NonLoopbackBind(unittest.TestCase):
    """A server bound to a non-loopback address (10.9.9.9 on the loopback device of a
    network namespace made here) answers to its own address as Host, a wildcard-bound
    one to the address the client reached, and the proxy still reaches its workers;
    foreign names are still refused. Needs root (unshare -n); skips otherwise."""

    def test_own_address_passes(self):
        if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("ip"):
            self.skipTest("needs root, unshare and ip for a network namespace")
        d = tempfile.mkdtemp(prefix="hive-sec-e2e-")
        self.addCleanup(shutil.rmtree, d, True)
        p = subprocess.run(["unshare", "-n", "/usr/bin/python3", "-c", NETNS_SCRIPT,
                            os.path.abspath(HIVE_BIN), os.path.abspath(WORKER_BIN), d],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
        if p.returncode != 0 and b"Operation not permitted" in p.stderr:
            self.skipTest("no network namespace here: %s" % p.stderr.decode().strip())
        self.assertEqual(p.returncode, 0, p.stderr.decode())
        got = json.loads(p.stdout.decode().strip().splitlines()[-1])
        self.assertEqual(got, {"bound own": 200, "bound other": 403, "bound evil": 403,
                               "wildcard own": 200, "wildcard evil": 403,
                               "front own": 200, "front evil": 403,
                               "proxied own": 200, "proxied evil": 403,
                               "bot port own": 200})


WRAPPER = """#!/bin/sh
case "$1" in
  CONF*) echo "conf bot: exiting 78" >&2; exit 78 ;;
esac
exec %s "$@"
"""


class StoppedPort(unittest.TestCase):
    """Case 27: the supervisor answers on a stopped or fatal bot's port."""

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="hive-sec-e2e-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        wrapper = os.path.join(self.dir, "worker-wrapper.sh")
        with open(wrapper, "w") as f:
            f.write(WRAPPER % os.path.abspath(WORKER_BIN))
        os.chmod(wrapper, 0o755)
        self.hive = Hive(self, self.dir, [{"id": BOT}, {"id": "CONF-001"}],
                         env={"HIVE_WORKER_BIN": wrapper})
        self.hive.start()
        self.hive.wait_running([BOT])

    def control(self, action, bot=BOT):
        status, _, data = request(self.hive.listen_port, "POST",
                                  "/api/bots/%s/%s" % (bot, action), body={})
        self.assertEqual(status, 202, data)

    def assert_503(self, port, state):
        """Answered (not left hanging) with 503 naming the state, several times."""
        for method, path in (("GET", "/status"), ("GET", "/health"), ("POST", "/api/task")):
            with self.subTest(port=port, path=path):
                status, hdrs, data = request(port, method, path, timeout=3.0,
                                             body={"command": "x"} if method == "POST" else None)
                self.assertEqual(status, 503, data)
                self.assertTrue(detail(data).startswith("bot %s is %s" % (
                    BOT if port == self.hive.ports[BOT] else "CONF-001", state)), data)
        # The Host rule holds there too.
        status, _, _ = request(port, "GET", "/status", host=EVIL_HOST, timeout=3.0)
        self.assertEqual(status, 403)

    def test_stopped_bot_answers_503_then_serves_again(self):
        port = self.hive.ports[BOT]
        self.control("stop")
        self.hive.wait_state(BOT, "stopped")
        self.assert_503(port, "stopped")
        status, _, data = request(port, "GET", "/status", timeout=3.0)
        self.assertEqual(detail(data), "bot %s is stopped" % BOT)
        self.control("start")
        self.hive.wait_running([BOT])

        def served():
            status, _, data = request(port, "GET", "/status", timeout=3.0)
            return status == 200 and json.loads(data)["bot_id"] == BOT
        wait_for(served, 10.0, "the worker serving its port again")
        status, _, data = request(port, "POST", "/api/task", body={"command": "back"})
        self.assertEqual(status, 202, data)
        # And once more: stop, 503, start.
        self.control("stop")
        self.hive.wait_state(BOT, "stopped")
        self.assert_503(port, "stopped")
        self.control("start")
        self.hive.wait_running([BOT])
        wait_for(served, 10.0, "the worker serving its port again")

    def test_fatal_bot_answers_503(self):
        self.hive.wait_state("CONF-001", "fatal")
        self.assert_503(self.hive.ports["CONF-001"], "fatal")


if __name__ == "__main__":
    unittest.main()
