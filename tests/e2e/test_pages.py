"""End-to-end tests of hive's pages (SPEC.md §10) in a real browser.

Each test starts the real `hive up` (test_supervisor_front's Hive: mock and
cli bots on kernel-chosen loopback ports, a fresh temporary work dir) or a
standalone `hive-worker`, then runs one scenario of tests/browser/pages.mjs:
Debian's headless Chromium (/usr/bin/chromium) driven by playwright-core
(pinned in tests/browser/package-lock.json, installed by `scripts/deps
browser`). Tasks are sent with curl, effects checked through the API, every
request URL and console error of the page recorded. The scenario prints
`ASK restart-supervisor` when it needs the supervisor restarted under the open
page; this file does it and answers `ok`.

What each class needs: TestRoutes (curl) and TestPageUnit (the page against
tests/browser/fake_hive.py, a scripted SSE stand-in) need only this branch.
TestDashboard, TestPrintedUrls, TestToken and TestRender drive the real
programs and need the event stream of SPEC §8 (`/api/events` on the
supervisor and the workers, with `bot_state` and `task_output`), the timeline
routes, and, for TestDashboard, `POST /api/task/<id>/cancel` (SPEC §4).

The screenshot of the dashboard goes to $HIVE_BUILD_DIR/artifacts/dashboard.png
(CI's artefact). Measurements (first render of 200 bots, event → page delay)
are printed, not asserted.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from hive_e2e import BUILD_DIR, Worker, curl  # noqa: E402
from test_supervisor_front import HIVE_BIN, Hive, worker_log_dump  # noqa: E402

SOURCE_DIR = os.environ.get("HIVE_SOURCE_DIR",
                            os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
BROWSER_DIR = os.path.join(SOURCE_DIR, "tests", "browser")
SCRIPT = os.path.join(BROWSER_DIR, "pages.mjs")
CHROMIUM = "/usr/bin/chromium"
SCENARIO_TIMEOUT = 240
TOKEN = "pages-e2e-secret-7f3a"

# A cli bot whose task prints a first line, waits, then a last one: its
# output streams while it runs. "slow" tasks wait long enough to be
# interrupted or cancelled from the page.
STREAM_ADAPTER = ("{type: cli, command: [/bin/sh, -c, 'c=$(cat); echo \"first line of "
                  "$HIVE_TASK_ID\"; case \"$c\" in slow) sleep 30;; *) sleep 1.5;; esac; "
                  "echo last line']}")


def browser_ready():
    """Why the browser cannot run, or None."""
    if not os.path.exists(CHROMIUM):
        return "no %s: run scripts/deps browser" % CHROMIUM
    if not os.path.isdir(os.path.join(BROWSER_DIR, "node_modules", "playwright-core")):
        return "no playwright-core in tests/browser: run scripts/deps browser"
    if not shutil.which("node"):
        return "no node: run scripts/deps browser"
    return None


class PagesTestCase(unittest.TestCase):
    """Starts what a test needs and runs one browser scenario against it."""

    maxDiff = None

    def setUp(self):
        why = browser_ready()
        if why:
            self.fail(why)
        self.tmp = tempfile.mkdtemp(prefix="hive-e2e-pages-")
        self.hive = None
        self.worker = None

    def tearDown(self):
        if self.hive:
            self.hive.stop()
            self.assertEqual(self.hive.sanitizer_reports(), [], self.hive.log_text()[-3000:])
        if self.worker:
            self.worker.stop()
            self.worker.reap_children()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def start_hive(self, bots, token=None):
        """Hive.start, with time for every bot to start: 200 workers under
        ASan on a loaded 2-core machine took over its 20 s."""
        h = self.hive = Hive(self.tmp, bots, token=token)
        with open(h.log, "ab") as out:
            h.proc = subprocess.Popen([HIVE_BIN, "up", "-f", h.yaml], cwd=h.work_dir,
                                      stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                      env=h.env())
        h.wait_running(timeout=max(20.0, 0.6 * len(bots)))
        return h

    def hive_config(self, **extra):
        st = self.hive.status()
        cfg = {"url": self.hive.url, "token": self.hive.token,
               "bots": [{"id": b["id"], "url": b["url"], "proxy_url": b["proxy_url"]}
                        for b in st["bots"]]}
        cfg.update(extra)
        return cfg

    def restart_supervisor(self):
        self.hive.stop()
        self.hive.start()

    def run_scenario(self, name, cfg):
        """Run SCENARIO; answer its ASKs; fail with its output unless it passes."""
        env = dict(os.environ, HIVE_PAGES=json.dumps(cfg))
        proc = subprocess.Popen(["node", SCRIPT, name], cwd=BROWSER_DIR, env=env,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, bufsize=1)
        out = []
        timer = __import__("threading").Timer(SCENARIO_TIMEOUT, proc.kill)
        timer.start()
        try:
            for line in proc.stdout:
                out.append(line)
                sys.stderr.write("  [%s] %s" % (name, line))
                if line.startswith("ASK restart-supervisor"):
                    self.restart_supervisor()
                    proc.stdin.write("ok\n")
                    proc.stdin.flush()
            rc = proc.wait()
        finally:
            timer.cancel()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stdin.close()
            proc.stdout.close()
        text = "".join(out)
        if rc != 0:
            logs = worker_log_dump(self.hive) if self.hive else ""
            self.fail("scenario %s: exit %s\n%s\n%s" % (name, rc, text[-6000:], logs[-3000:]))
        return text


class TestRoutes(unittest.TestCase):
    """The page and login routes with curl (no browser): GET / on the
    supervisor, on a worker and through /bots/<id>/, the login cookie and
    where it is accepted, logout, and the guard and method rules on them."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="hive-e2e-pages-routes-")
        cls.hive = Hive(cls.tmp, [{"id": "BOT-001"}], token=TOKEN)
        cls.hive.start()
        cls.bot_url = cls.hive.bot("BOT-001")["url"]

    @classmethod
    def tearDownClass(cls):
        cls.hive.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def assert_page(self, r, where):
        self.assertEqual(r.status, 200, "%s: %r" % (where, r))
        self.assertTrue(r.header("content-type").startswith("text/html"), where)
        self.assertIn(b"<title>hive</title>", r.body, where)
        self.assertLessEqual(len(r.body), 100 * 1024, where)
        csp = r.header("content-security-policy") or ""
        self.assertIn("connect-src 'self'", csp, where)
        self.assertIn("script-src 'sha256-", csp, where)
        self.assertNotIn("unsafe-inline", csp, where)
        self.assertNotIn(TOKEN.encode(), r.body, where)

    def test_pages_need_no_token(self):
        """The page holds no data: served without the token everywhere."""
        self.assert_page(curl(self.hive.url + "/"), "supervisor /")
        self.assert_page(curl(self.bot_url + "/"), "worker /")
        self.assert_page(curl(self.hive.url + "/bots/BOT-001/"), "/bots/BOT-001/")
        self.assertEqual(curl(self.hive.url + "/", method="HEAD").status, 200)
        # Everything else still needs it.
        for url in (self.hive.url + "/status", self.bot_url + "/status",
                    self.hive.url + "/bots/BOT-001/status"):
            self.assertEqual(curl(url).status, 401, url)

    def test_login_cookie_logout(self):
        r = curl(self.hive.url + "/api/login", method="POST", body={"token": "wrong"})
        self.assertEqual(r.status, 401, r)
        self.assertIsNone(r.header("set-cookie"))
        r = curl(self.hive.url + "/api/login", method="POST", body={"token": TOKEN})
        self.assertEqual(r.status, 200, r)
        cookie = r.header("set-cookie")
        self.assertTrue(cookie.startswith("hive_token="), cookie)
        for attr in ("HttpOnly", "SameSite=Strict", "Path=/"):
            self.assertIn(attr, cookie)
        pair = cookie.split(";")[0]
        for url in (self.hive.url + "/status", self.bot_url + "/status",
                    self.hive.url + "/bots/BOT-001/status"):
            self.assertEqual(curl(url, headers=["Cookie: " + pair]).status, 200, url)
            self.assertEqual(curl(url, headers=["Cookie: hive_token=nope"]).status, 401, url)
        # The worker has its own login for its own page.
        r = curl(self.bot_url + "/api/login", method="POST", body={"token": TOKEN})
        self.assertEqual(r.status, 200, r)
        self.assertIn("HttpOnly", r.header("set-cookie"))
        r = curl(self.hive.url + "/api/logout", method="POST", body={})
        self.assertEqual(r.status, 200, r)
        self.assertIn("Max-Age=0", r.header("set-cookie"))

    def test_login_rules(self):
        url = self.hive.url + "/api/login"
        self.assertEqual(curl(url).status, 405)
        self.assertEqual(curl(url, method="POST", body='{"token":"%s"}' % TOKEN,
                              content_type="text/plain").status, 415)
        self.assertEqual(curl(url, method="POST", body="{nope").status, 400)
        self.assertEqual(curl(url, method="POST", body={"token": 5}).status, 400)
        # The Host/Origin guard applies to the page and the login as to all.
        self.assertEqual(curl(self.hive.url + "/", headers=["Host: evil.example"]).status, 403)
        r = curl(url, method="POST", body={"token": TOKEN}, headers=["Origin: http://evil.example"])
        self.assertEqual(r.status, 403)
        self.assertIsNone(r.header("set-cookie"))

    def test_login_without_a_token(self):
        """A hive without a token: the login says so and sets nothing."""
        w = Worker(self.tmp, bot="BOT-NOTOKEN")
        w.start()
        try:
            r = curl(w.url + "/api/login", method="POST", body={"token": "x"})
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.json()["token"], False)
            self.assertIsNone(r.header("set-cookie"))
        finally:
            w.stop()


class TestPageUnit(PagesTestCase):

    def test_page_against_a_scripted_stream(self):
        """The page alone, against tests/browser/fake_hive.py (an event stream
        as SPEC §8 words it): rows, feed, output shown as text, controls sent
        as JSON, a dropped stream resumed from its cursor, a resync, a reload
        that keeps the feed and the cursor."""
        fake = subprocess.Popen([sys.executable, os.path.join(BROWSER_DIR, "fake_hive.py"),
                                 SOURCE_DIR], stdout=subprocess.PIPE, text=True)
        try:
            port = int(fake.stdout.readline().split()[1])
            shot = os.path.join(BUILD_DIR, "artifacts", "page-unit.png")
            self.run_scenario("unit", {"url": "http://127.0.0.1:%d" % port, "token": None,
                                       "screenshot": shot})
        finally:
            fake.kill()
            fake.wait()
            fake.stdout.close()


class TestDashboard(PagesTestCase):

    def test_dashboard_live_controls_restart_screenshot(self):
        """Every bot with its state; a curl task in the feed and its streamed
        output in the bot view; SIGKILL of a worker shown live; every control
        button checked through the API; a supervisor restart resumed; a
        reload resumed from the kept cursor; no console error; screenshot."""
        self.start_hive([{"id": "BOT-001"}, {"id": "BOT-CLI", "adapter": STREAM_ADAPTER}])
        shot = os.path.join(BUILD_DIR, "artifacts", "dashboard.png")
        if os.path.exists(shot):
            os.unlink(shot)
        self.run_scenario("dashboard", self.hive_config(screenshot=shot))
        self.assertGreater(os.path.getsize(shot), 10000)


class TestPrintedUrls(PagesTestCase):

    def test_every_printed_url_opens_a_page(self):
        """The dashboard, each bot's direct URL and its /bots/<id>/ URL, as
        `hive up` prints them, each a working page (send, feed, timeline,
        pause/resume), with no console error."""
        self.start_hive([{"id": "BOT-001"}, {"id": "BOT-002"}])
        printed = re.findall(r"http://[0-9.:]+(?:/bots/[A-Za-z0-9_.-]+/|/)?",
                             self.hive.log_text())
        self.assertGreaterEqual(len(printed), 5, self.hive.log_text())
        self.run_scenario("urls", self.hive_config(printed=sorted(set(printed))))

    def test_standalone_worker_page(self):
        """A standalone hive-worker's GET / is the bot's page, working alone."""
        self.worker = Worker(self.tmp, bot="BOT-ALONE")
        self.worker.start()
        url = self.worker.url
        cfg = {"url": url, "token": None, "printed": [url + "/"],
               "bots": [{"id": "BOT-ALONE", "url": url, "proxy_url": None}]}
        self.run_scenario("urls", cfg)


class TestToken(PagesTestCase):

    def test_login_once_no_token_in_urls(self):
        """A hive with a token: the login form asks once (the dashboard, the
        proxied and the direct bot page all work after it), the token is in
        an HttpOnly SameSite=Strict cookie and in no request URL, logout
        clears it."""
        self.start_hive([{"id": "BOT-001"}, {"id": "BOT-002"}], token=TOKEN)
        self.run_scenario("token", self.hive_config())


class TestFetchStream(PagesTestCase):

    def test_fetch_stream_parses_the_events(self):
        """The supervisor's /api/events read in Chromium with fetch() and a
        stream reader (no EventSource), parsed by hand: a task sent with
        curl shows received → started → completed, ids = hive_seq, no gap."""
        self.start_hive([{"id": "BOT-001"}])
        text = self.run_scenario("fetchstream", self.hive_config())
        self.assertIn("fetch+stream:", text)


class TestRender(PagesTestCase):

    BOTS = int(os.environ.get("HIVE_PAGES_RENDER_BOTS", "200"))

    def test_first_render_measured(self):
        """Measured, not asserted: navigation start → every bot's row shown."""
        self.start_hive([{"id": "BOT-%03d" % i} for i in range(self.BOTS)])
        text = self.run_scenario("render", self.hive_config())
        self.assertIn("MEASURE first_render_ms", text)


if __name__ == "__main__":
    unittest.main()
