"""End-to-end tests of HTTPS on the supervisor's front door (SPEC.md §6.3,
§7, §11: `hive: {listen, tls: {cert, key}}`).

A CA and a server certificate naming 127.0.0.1 are made with the `openssl`
command in a temporary dir; `hive up` serves the front door over TLS with
them. curl --cacert talks to the API and the proxy (HTTP and SSE), the
`websockets` package to a bot's WebSocket over WSS, and the `hive` CLI to the
hive with `hive.ca` set (and fails clearly with a CA that did not sign the
certificate). A plain-HTTP request and bytes that are no ClientHello get a
closed connection, and the door keeps serving.

X-Forwarded-For and X-Forwarded-Proto are read from a remote bot that echoes
the headers it gets (test_remote.Upstream).
"""

import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import websockets  # noqa: E402

from hive_e2e import free_ports, main, run_async, ws_recv_until  # noqa: E402
from test_remote import Upstream, make_certs  # noqa: E402
from test_supervisor_front import (HIVE_BIN, Hive, start_class_hive,  # noqa: E402
                                   stop_class_hive)


class TlsHive(Hive):
    """A hive whose front door speaks HTTPS with the certificates in CERTS."""

    def __init__(self, work_dir, bots, certs, remotes=None):
        self.certs = certs
        self.remotes = remotes or {}
        super().__init__(work_dir, bots)
        self.bots += list(self.remotes)   # started and waited for with the rest

    def write_yaml(self, bots, extra=""):
        extra += "".join("  - id: %s\n    url: %s\n" % r for r in self.remotes.items())
        super().write_yaml(bots, extra)
        with open(self.yaml) as f:
            text = f.read()
        c = lambda n: os.path.join(self.certs, n)  # noqa: E731
        tls = ("  ca: %s\n  tls: {cert: %s, key: %s}\n"
               % (c("ca.pem"), c("good.pem"), c("good.key")))
        text = text.replace("defaults:\n", tls + "defaults:\n", 1)
        with open(self.yaml, "w") as f:
            f.write(text)

    @property
    def url(self):
        return "https://127.0.0.1:%d" % self.port

    def tls_args(self):
        return ["--cacert", os.path.join(self.certs, "ca.pem")]

    def get(self, path, **kw):
        kw.setdefault("extra_args", self.tls_args())
        return super().get(path, **kw)

    def post(self, path, body=None, **kw):
        kw.setdefault("extra_args", self.tls_args())
        return super().post(path, body, **kw)


class TlsFrontTest(unittest.TestCase):
    """One hive with TLS on its front door, shared by the tests."""

    BOTS = [{"id": "BOT-001"}, {"id": "BOT-002"}]

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="hive-e2e-tls-front-")
        cls.certs = os.path.join(cls.tmp, "certs")
        os.makedirs(cls.certs)
        make_certs(cls.certs)
        d = os.path.join(cls.tmp, "hive")
        os.makedirs(d)
        cls.up = Upstream()   # a remote bot that echoes the headers it gets
        cls.hive = TlsHive(d, cls.BOTS, cls.certs, remotes={"F1": cls.up.url})
        try:
            start_class_hive(cls.hive, cls.tmp)
        except BaseException:
            cls.up.stop()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.up.stop()
        stop_class_hive(cls.hive, cls.tmp)

    def tearDown(self):
        self.hive.note_children()

    def ssl_context(self):
        return ssl.create_default_context(cafile=os.path.join(self.certs, "ca.pem"))

    def bad_ca_yaml(self):
        """hive.yaml with hive.ca a CA that did not sign the door's certificate."""
        other = os.path.join(self.tmp, "other-ca.pem")
        if not os.path.exists(other):
            subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                            "-keyout", os.path.join(self.tmp, "other-ca.key"), "-out", other,
                            "-subj", "/CN=another CA", "-days", "2"],
                           check=True, capture_output=True, timeout=60)
        with open(self.hive.yaml) as f:
            text = f.read()
        path = os.path.join(self.hive.work_dir, "bad-ca.yaml")
        with open(path, "w") as f:
            f.write(text.replace(os.path.join(self.certs, "ca.pem"), other))
        return path

    def cli_with(self, yaml, *args, timeout=30):
        return subprocess.run([HIVE_BIN] + list(args) + ["--file", yaml], cwd=self.hive.work_dir,
                              env=self.hive.env(), stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=timeout)

    # ---- the API and the proxy over HTTPS

    def test_health_and_status(self):
        r = self.hive.get("/health")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json(), {"status": "ok"})
        st = self.hive.status()
        self.assertEqual(st["hive"]["bots_running"], 3)   # BOT-001, BOT-002 and remote F1
        b = [x for x in st["bots"] if x["id"] == "BOT-001"][0]
        self.assertEqual(b["proxy_url"], "https://127.0.0.1:%d/bots/BOT-001/" % self.hive.port)

    def test_banner_prints_https(self):
        self.assertIn("supervisor https://127.0.0.1:%d/" % self.hive.port, self.hive.log_text())
        self.assertIn("https://127.0.0.1:%d/bots/BOT-002/" % self.hive.port,
                      self.hive.log_text())

    def test_untrusted_client_refused(self):
        """Without the CA, curl does not trust the door (it really is TLS)."""
        p = subprocess.run(["curl", "-sS", "--noproxy", "*", "--max-time", "10",
                            self.hive.url + "/health"], capture_output=True, text=True,
                           timeout=20)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("certificate", p.stderr)

    def test_forwarded_headers_say_https(self):
        """X-Forwarded-Proto is what the client spoke to the door (it said
        "http" on a TLS door before), X-Forwarded-For its address."""
        r = self.hive.get("/bots/F1/echo")
        self.assertEqual(r.status, 200, r)
        got = {}
        for name, value in r.json():
            got.setdefault(name.lower(), []).append(value)
        self.assertEqual(got["x-forwarded-proto"], ["https"])
        self.assertEqual(got["x-forwarded-for"], ["127.0.0.1"])

    def test_proxy_status_and_task(self):
        r = self.hive.get("/bots/BOT-001/status")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["bot_id"], "BOT-001")
        r = self.hive.post("/bots/BOT-002/api/task", {"command": "over https"})
        self.assertEqual(r.status, 202, r)
        done = self.hive.wait_task("BOT-002", r.json()["task_id"])
        self.assertEqual(done["state"], "done")

    def test_large_body_both_ways(self):
        """A body near the limit in, a whole page out: the relay's back-pressure
        loses nothing (the mock bot counts every byte of the command)."""
        text = "".join(chr(0x61 + i % 26) for i in range(900 * 1024))
        r = self.hive.post("/bots/BOT-001/api/task", {"command": text}, timeout=30)
        self.assertEqual(r.status, 202, r)
        done = self.hive.wait_task("BOT-001", r.json()["task_id"])
        self.assertIn("**Size:** %d bytes" % len(text), done["result"]["output"])
        page = self.hive.get("/")
        self.assertEqual(page.status, 200, page)
        self.assertEqual(len(page.body), int(page.header("content-length")))

    def test_guard_still_applies(self):
        """The Host rule sees the client, through the relay, as before."""
        r = self.hive.get("/status", headers=["Host: evil.example"])
        self.assertEqual(r.status, 403, r)

    def test_wss_task_round_trip(self):
        url = "wss://127.0.0.1:%d/bots/BOT-001/ws" % self.hive.port

        async def session():
            async with websockets.connect(url, ssl=self.ssl_context()) as ws:
                await ws.send(json.dumps({"type": "task", "command": "over WSS"}))
                return await ws_recv_until(ws, lambda m: m.get("type") == "response")
        msgs = run_async(session())
        self.assertTrue(msgs[-1]["success"], msgs)

    def test_events_sse_over_tls(self):
        p = subprocess.run(["curl", "-sS", "-N", "--noproxy", "*", "--max-time", "3"]
                           + self.hive.tls_args()
                           + [self.hive.url + "/api/events?since=0"],
                           capture_output=True, timeout=20)
        out = p.stdout.decode("utf-8", "replace")
        self.assertIn("event: bot_state", out, (p.returncode, p.stderr))
        self.assertIn('"running"', out)

    # ---- the CLI

    def test_cli_status_and_send_wait(self):
        p = self.hive.cli("status")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("BOT-001", p.stdout)
        p = self.hive.cli("send", "BOT-001", "from the cli", "--wait")
        self.assertEqual(p.returncode, 0, p.stderr + p.stdout)
        p = self.hive.cli("events", "--since", "0", "--count", "2", timeout=20)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("bot_state", p.stdout)

    def test_cli_wrong_ca_fails_clearly(self):
        bad = self.bad_ca_yaml()
        for args in (("status",), ("send", "BOT-001", "never", "--wait"), ("events",)):
            p = self.cli_with(bad, *args)
            self.assertEqual(p.returncode, 1, (args, p.stdout, p.stderr))
            self.assertIn("cannot talk HTTPS to the hive on 127.0.0.1:%d" % self.hive.port,
                          p.stderr)
            self.assertIn("certificate", p.stderr)
            self.assertNotIn("no hive is running", p.stderr)

    # ---- what is not TLS

    def read_until_close(self, sock):
        """What SOCK says before it closes (a reset is a close: the door drops
        a client whose bytes it did not read)."""
        data = b""
        while len(data) < 65536:
            try:
                chunk = sock.recv(4096)
            except ConnectionResetError:
                return data
            if not chunk:
                return data
            data += chunk
        return data

    def test_plain_http_gets_closed_connection(self):
        with socket.create_connection(("127.0.0.1", self.hive.port), timeout=10) as s:
            s.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            data = self.read_until_close(s)
        self.assertNotIn(b"HTTP/1.1", data)
        self.assertEqual(self.hive.get("/health").status, 200)

    def test_garbage_instead_of_client_hello(self):
        for junk in (b"\x16\x03\x01\xff\xff" + os.urandom(600), os.urandom(4096), b"\x00" * 10):
            with socket.create_connection(("127.0.0.1", self.hive.port), timeout=10) as s:
                try:
                    s.sendall(junk)
                except (ConnectionResetError, BrokenPipeError):
                    continue
                self.read_until_close(s)
        # A client that leaves in the middle of its handshake.
        raw = socket.create_connection(("127.0.0.1", self.hive.port), timeout=10)
        raw.sendall(b"\x16\x03\x01\x00\xc8\x01")
        raw.close()
        time.sleep(0.2)
        self.assertIsNone(self.hive.proc.poll())
        self.assertEqual(self.hive.get("/health").status, 200)


class TlsRosterTest(unittest.TestCase):
    """hive.tls in `hive check`: files readable, both given, exposure rule."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="hive-e2e-tls-roster-")
        make_certs(self.tmp)

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def check(self, hive_lines):
        path = os.path.join(self.tmp, "hive.yaml")
        with open(path, "w") as f:
            f.write("hive:\n" + "".join("  %s\n" % x for x in hive_lines)
                    + "defaults:\n  adapter: {type: mock}\nbots:\n  - id: B1\n    port: 1\n")
        env = {k: v for k, v in os.environ.items() if k != "HIVE_E2E_NOPE"}
        return subprocess.run([HIVE_BIN, "check", "-f", path], cwd=self.tmp, env=env,
                              capture_output=True, text=True, timeout=30)

    def test_ok_and_missing_files(self):
        p = self.check(["listen: 127.0.0.1:2", "tls: {cert: good.pem, key: good.key}"])
        self.assertEqual(p.returncode, 0, p.stderr)
        p = self.check(["listen: 127.0.0.1:2", "tls: {cert: good.pem, key: nope.key}"])
        self.assertEqual(p.returncode, 78)
        self.assertRegex(p.stderr, r"hive\.yaml:3:\d+: cannot read key .*nope\.key")
        p = self.check(["listen: 127.0.0.1:2", "tls: {cert: nope.pem, key: good.key}"])
        self.assertEqual(p.returncode, 78)
        self.assertRegex(p.stderr, r"hive\.yaml:3:\d+: cannot read cert .*nope\.pem")

    def test_both_needed(self):
        p = self.check(["listen: 127.0.0.1:2", "tls: {cert: good.pem}"])
        self.assertEqual(p.returncode, 78)
        self.assertIn("hive.yaml:3:8: tls needs both cert and key", p.stderr)

    def test_non_loopback_still_needs_token(self):
        p = self.check(["listen: 0.0.0.0:2", "tls: {cert: good.pem, key: good.key}",
                        "token_env: HIVE_E2E_NOPE"])
        self.assertEqual(p.returncode, 78, p.stderr)
        self.assertIn("binding 0.0.0.0 needs a token", p.stderr)
        self.assertNotIn("unknown key", p.stderr)

    def test_up_refuses_a_key_that_is_not_the_certs(self):
        path = os.path.join(self.tmp, "hive.yaml")
        with open(path, "w") as f:
            f.write("hive:\n  listen: 127.0.0.1:%d\n  tls: {cert: good.pem, key: wrong.key}\n"
                    "defaults:\n  adapter: {type: mock}\nbots:\n  - id: B1\n    port: %d\n"
                    % tuple(free_ports(2)))
        p = subprocess.run([HIVE_BIN, "up", "-f", path], cwd=self.tmp, capture_output=True,
                           text=True, timeout=30, stdin=subprocess.DEVNULL)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("wrong.key", p.stderr)


if __name__ == "__main__":
    main()
