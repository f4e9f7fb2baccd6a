"""Remote bots across hosts, on one machine: network namespaces made by the
test (root only; skipped with the reason otherwise). Three "hosts" (namespaces
hive-t-<random>-h1..h3) each run a standalone hive-worker on its own 10.x
address; a fourth (…-f) runs `hive up` whose roster fronts them as remote
bots, over a veth pair per host. Addresses exist only inside the test's
namespaces, and everything is removed in the end.

Checked: tasks reach every host through the front door over HTTP and over
WebSocket; a host cut off (its link set down) is `unreachable` within
fall x interval (plus one check's timeout), comes back to `running` by itself
once the link is up, and every task that host accepted — before the cut and
during it, straight on the host — is merged into the front door's events,
each once. The TLS variant runs the same with https:// to every host (a TLS
terminator in each host's namespace, certificates from the test's own CA
naming each host's address); the front door's own listen is plain HTTP (TLS
there is not built yet), reached only from inside its namespace.

Run (as root): HIVE_BUILD_DIR=build /usr/bin/python3 tests/e2e/test_remote_netns.py
"""

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hive_e2e import BUILD_DIR, WORKER_BIN, main, read_jsonl, wait_for  # noqa: E402

HIVE_BIN = os.path.join(BUILD_DIR, "supervisor", "hive")
HOSTS = 3
BOT_PORT = 8001
INTERVAL, TIMEOUT, RISE, FALL = 0.5, 0.5, 2, 3


def run(*argv, check=True, timeout=20, **kw):
    return subprocess.run(list(argv), capture_output=True, timeout=timeout, check=check, **kw)


def why_not_possible():
    """None when namespaces can be made here, else the reason."""
    if os.geteuid() != 0:
        return "needs root (ip netns add)"
    if not shutil.which("ip"):
        return "no ip command (iproute2)"
    probe = "hive-t-probe-%s" % secrets.token_hex(3)
    r = run("ip", "netns", "add", probe, check=False)
    if r.returncode != 0:
        return "ip netns add refused: %s" % r.stderr.decode().strip()
    run("ip", "netns", "del", probe, check=False)
    return None


REASON = why_not_possible()


TERMINATOR = """
import asyncio, ssl, sys
cert, key, host, port, thost, tport = sys.argv[1:7]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
async def pipe(r, w):
    try:
        while True:
            data = await r.read(65536)
            if not data:
                break
            w.write(data)
            await w.drain()
    except (OSError, ConnectionError):
        pass
    finally:
        w.close()
async def handle(reader, writer):
    try:
        ur, uw = await asyncio.open_connection(thost, int(tport))
    except OSError:
        writer.close()
        return
    await asyncio.gather(pipe(reader, uw), pipe(ur, writer))
async def main():
    server = await asyncio.start_server(handle, host, int(port), ssl=ctx)
    print("ready", flush=True)
    await server.serve_forever()
asyncio.run(main())
"""
TLS_PORT = 8443


class Net:
    """The namespaces and links: front F, hosts H1..H3, a veth pair F<->Hn
    with 10.(base).n.1 on F's side and 10.(base).n.2 on the host's."""

    def __init__(self):
        self.tag = secrets.token_hex(3)
        self.base = 100 + secrets.randbelow(100)
        self.front = "hive-t-%s-f" % self.tag
        self.hosts = ["hive-t-%s-h%d" % (self.tag, n) for n in range(1, HOSTS + 1)]
        self.made = []

    def front_if(self, n):
        return "hf%s%d" % (self.tag, n)

    def host_addr(self, n):
        return "10.%d.%d.2" % (self.base, n)

    def up(self):
        for ns in [self.front] + self.hosts:
            run("ip", "netns", "add", ns)
            self.made.append(ns)
            run("ip", "-n", ns, "link", "set", "lo", "up")
        for n, ns in enumerate(self.hosts, 1):
            a, b = self.front_if(n), "hh%s%d" % (self.tag, n)
            run("ip", "link", "add", a, "netns", self.front, "type", "veth",
                "peer", "name", b, "netns", ns)
            run("ip", "-n", self.front, "addr", "add", "10.%d.%d.1/24" % (self.base, n), "dev", a)
            run("ip", "-n", ns, "addr", "add", "%s/24" % self.host_addr(n), "dev", b)
            run("ip", "-n", self.front, "link", "set", a, "up")
            run("ip", "-n", ns, "link", "set", b, "up")

    def cut(self, n, down=True):
        run("ip", "-n", self.front, "link", "set", self.front_if(n), "down" if down else "up")

    def down(self):
        for ns in reversed(self.made):  # a namespace takes its veth ends with it
            run("ip", "netns", "del", ns, check=False)
        self.made = []


@unittest.skipIf(REASON, "network namespaces: %s" % REASON)
class RemoteNetnsTest(unittest.TestCase):
    maxDiff = 4000
    TLS = False  # the variant below: TLS on every hop to the hosts

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="hive-e2e-netns-")
        self.net = Net()
        self.procs = []
        self.stopped = []
        try:
            self.net.up()
            self.tokens = ["tok-%d-%s" % (n, secrets.token_hex(4)) for n in range(1, HOSTS + 1)]
            for n, ns in enumerate(self.net.hosts, 1):
                self.start_worker(n, ns)
            self.start_front()
        except BaseException:
            self.tearDown()
            raise

    def tearDown(self):
        for p in self.stopped:
            try:
                os.kill(p, signal.SIGCONT)
            except OSError:
                pass
        for p in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(15)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        self.net.down()
        shutil.rmtree(self.tmp, ignore_errors=True)

    # --- processes
    def start_worker(self, n, ns):
        d = os.path.join(self.tmp, "h%d" % n)
        os.makedirs(d)
        addr = self.net.host_addr(n)
        log = open(os.path.join(d, "worker.log"), "ab")
        p = subprocess.Popen(
            ["ip", "netns", "exec", ns, WORKER_BIN, "H%d" % n, "--port", str(BOT_PORT),
             "--bind", addr, "--server-name", addr, "--token", self.tokens[n - 1],
             "--work-dir", d, "--adapter-type", "mock", "--file-min-age", "0.2"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=self.env())
        log.close()
        self.procs.append(p)
        wait_for(lambda: self.ns_curl(ns, "http://%s:%d/health" % (addr, BOT_PORT))[0] == 200,
                 timeout=20, what="worker H%d listening" % n)
        if self.TLS:
            self.start_terminator(n, ns, addr)

    def make_certs(self):
        """A CA, and per host a certificate naming its address."""
        if hasattr(self, "ca"):
            return
        self.ca = os.path.join(self.tmp, "ca.pem")

        def ossl(*args):
            run("openssl", *args, cwd=self.tmp, timeout=60)
        ossl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out",
             "ca.pem", "-subj", "/CN=hive netns CA", "-days", "2")
        for n in range(1, HOSTS + 1):
            with open(os.path.join(self.tmp, "h%d.ext" % n), "w") as f:
                f.write("subjectAltName=IP:%s\n" % self.net.host_addr(n))
            ossl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "h%d.key" % n, "-out",
                 "h%d.csr" % n, "-subj", "/CN=h%d" % n)
            ossl("x509", "-req", "-in", "h%d.csr" % n, "-CA", "ca.pem", "-CAkey", "ca.key",
                 "-CAcreateserial", "-out", "h%d.pem" % n, "-days", "2", "-extfile", "h%d.ext" % n)

    def start_terminator(self, n, ns, addr):
        """TLS on the host's address, in front of its worker (a host's TLS proxy)."""
        self.make_certs()
        c = lambda x: os.path.join(self.tmp, x)  # noqa: E731
        p = subprocess.Popen(["ip", "netns", "exec", ns, "/usr/bin/python3", "-c", TERMINATOR,
                              c("h%d.pem" % n), c("h%d.key" % n), addr, str(TLS_PORT), addr,
                              str(BOT_PORT)], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL)
        self.procs.append(p)
        self.assertEqual(p.stdout.readline().strip(), b"ready")

    def start_front(self):
        d = os.path.join(self.tmp, "front")
        os.makedirs(d)
        self.front_dir = d
        self.front_port = 8000
        lines = ["hive:", "  name: e2e-netns", "  work_dir: .",
                 "  listen: 127.0.0.1:%d" % self.front_port, "bots:"]
        for n in range(1, HOSTS + 1):
            url = ("https://%s:%d" % (self.net.host_addr(n), TLS_PORT) if self.TLS
                   else "http://%s:%d" % (self.net.host_addr(n), BOT_PORT))
            if self.TLS:
                lines += ["  - id: H%d" % n, "    ca: %s" % self.ca]
            else:
                lines += ["  - id: H%d" % n]
            lines += ["    url: %s" % url,
                      "    token_env: HIVE_NETNS_TOKEN_%d" % n,
                      "    health: {interval: %s, timeout: %s, rise: %d, fall: %d}"
                      % (INTERVAL, TIMEOUT, RISE, FALL)]
        with open(os.path.join(d, "hive.yaml"), "w") as f:
            f.write("\n".join(lines) + "\n")
        log = open(os.path.join(d, "up.log"), "ab")
        p = subprocess.Popen(["ip", "netns", "exec", self.net.front, HIVE_BIN, "up", "-f",
                              "hive.yaml"], cwd=d, stdin=subprocess.DEVNULL, stdout=log,
                             stderr=log, env=self.env())
        log.close()
        self.procs.append(p)
        wait_for(lambda: [b["state"] for b in self.status()["bots"]] == ["running"] * HOSTS,
                 timeout=30, what="every remote bot running")

    def env(self):
        e = dict(os.environ)
        for k in ("HIVE_TOKEN", "LISTEN_FDS", "LISTEN_PID", "NOTIFY_SOCKET"):
            e.pop(k, None)
        for n, t in enumerate(getattr(self, "tokens", []), 1):
            e["HIVE_NETNS_TOKEN_%d" % n] = t
        e.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
        return e

    # --- clients, run inside a namespace
    def ns_curl(self, ns, url, method="GET", body=None, token=None, timeout=5):
        argv = ["ip", "netns", "exec", ns, "curl", "-sS", "--noproxy", "*", "--max-time",
                str(timeout), "-X", method, "-o", "-", "-w", "\n%{http_code}"]
        if body is not None:
            argv += ["-H", "Content-Type: application/json", "--data-binary", json.dumps(body)]
        if token:
            argv += ["-H", "Authorization: Bearer " + token]
        r = run(*(argv + [url]), check=False, timeout=timeout + 10)
        out = r.stdout.decode()
        text, _, code = out.rpartition("\n")
        return int(code or 0), text

    def front(self, path, **kw):
        return self.ns_curl(self.net.front, "http://127.0.0.1:%d%s" % (self.front_port, path), **kw)

    def status(self):
        code, text = self.front("/status")
        if code != 200:
            return {"bots": []}
        return json.loads(text)

    def state(self, bot):
        return {b["id"]: b for b in self.status()["bots"]}[bot]["state"]

    def submit(self, bot, command):
        code, text = self.front("/bots/%s/api/task" % bot, method="POST", body={"command": command})
        self.assertEqual(code, 202, text)
        return json.loads(text)["task_id"]

    def merged(self):
        return read_jsonl(os.path.join(self.front_dir, ".deia", "hive", "events.jsonl"))

    def completed(self, bot):
        return [e["task_id"] for e in self.merged()
                if e.get("bot_id") == bot and e["type"] == "task_completed"]

    def ws_task(self, bot, command):
        """A task over the front door's WebSocket tunnel, from inside the front namespace."""
        script = (
            "import asyncio, json, sys, websockets\n"
            "async def go():\n"
            "    async with websockets.connect(sys.argv[1]) as ws:\n"
            "        await ws.send(json.dumps({'type': 'task', 'command': sys.argv[2]}))\n"
            "        while True:\n"
            "            m = json.loads(await asyncio.wait_for(ws.recv(), 20))\n"
            "            if m.get('type') == 'response':\n"
            "                print(json.dumps(m)); return\n"
            "asyncio.run(go())\n")
        url = "ws://127.0.0.1:%d/bots/%s/ws" % (self.front_port, bot)
        r = run("ip", "netns", "exec", self.net.front, "/usr/bin/python3", "-c", script, url,
                command, check=False, timeout=40)
        self.assertEqual(r.returncode, 0, r.stderr.decode())
        return json.loads(r.stdout.decode())

    # --- tests
    def test_tasks_reach_every_host_over_http_and_websocket(self):
        ids = {}
        for n in range(1, HOSTS + 1):
            ids["H%d" % n] = self.submit("H%d" % n, "over http to host %d" % n)
        for n in range(1, HOSTS + 1):
            m = self.ws_task("H%d" % n, "over ws to host %d" % n)
            self.assertTrue(m["success"])
            self.assertIn("over ws to host %d" % n, m["content"])
        for bot, task in ids.items():
            wait_for(lambda: task in self.completed(bot), timeout=20, what="%s merged" % bot)

    def test_host_cut_off_unreachable_then_back_nothing_lost(self):
        before = [self.submit("H2", "before the cut %d" % i) for i in range(3)]
        wait_for(lambda: set(before) <= set(self.completed("H2")), timeout=20,
                 what="tasks before the cut merged")
        self.net.cut(2)
        # How soon (fall x interval + timeout = 2 s here) is bench row 12's
        # figure; a tight wall-clock bound failed under ASan on a loaded CI
        # machine (6.9 s). The loose one catches checks that do not time out
        # (a kernel connect gives up only after ~2 minutes).
        t0 = time.monotonic()
        wait_for(lambda: self.state("H2") == "unreachable", timeout=30, what="H2 unreachable")
        self.assertLess(time.monotonic() - t0, 15)
        h2 = {b["id"]: b for b in self.status()["bots"]}["H2"]
        self.assertIn("/health", h2.get("reason") or "", h2)
        self.assertEqual(self.state("H1"), "running")
        self.assertEqual(self.front("/bots/H2/status")[0], 503)
        # Accepted on the host while the front door cannot see it.
        during = []
        for i in range(4):
            code, text = self.ns_curl(self.net.hosts[1],
                                      "http://%s:%d/api/task" % (self.net.host_addr(2), BOT_PORT),
                                      method="POST", body={"command": "during the cut %d" % i},
                                      token=self.tokens[1])
            self.assertEqual(code, 202, text)
            during.append(json.loads(text)["task_id"])
        self.net.cut(2, down=False)
        wait_for(lambda: self.state("H2") == "running", timeout=RISE * INTERVAL + 15,
                 what="H2 running again")
        wait_for(lambda: set(during) <= set(self.completed("H2")), timeout=30,
                 what="tasks accepted during the cut merged")
        evs = [e for e in self.merged() if e.get("bot_id") == "H2" and "seq" in e]
        seqs = [e["seq"] for e in evs]
        self.assertEqual(seqs, list(range(1, len(seqs) + 1)), "a gap or a repeat")
        done = [e["task_id"] for e in evs if e["type"] == "task_completed"]
        self.assertEqual(sorted(done), sorted(before + during))
        self.assertEqual(self.front("/bots/H2/status")[0], 200)


@unittest.skipIf(REASON, "network namespaces: %s" % REASON)
class RemoteNetnsTlsTest(RemoteNetnsTest):
    """The same across namespaces with https:// to every host (verified
    against the test's CA and each host's address)."""
    TLS = True


if __name__ == "__main__":
    if REASON:
        print("test_remote_netns: skipped: %s" % REASON)
    main()
