"""End to end: the roster's process keys under a real `hive up` (issue 12).

cwd, env, env_file, ${VAR} interpolation and include: are seen by a cli
adapter that prints its environment and folder (`sh -c 'env; pwd'`); user:
in /proc/<pid>/status of the worker (root only); memory_max by a bot whose
adapter allocates past it and is killed by the OOM killer, the restart
saying `out of memory` (only where a memory controller is writable);
log.max_bytes/backups by the rotated files; SIGUSR1 by a log moved away and
made again. Each test fails on a hive without these keys (exit 78: unknown
key). Every wait is bounded; the processes started are killed by pid.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_supervisor_lifecycle import (CURL, HIVE_BIN, WORKER_BIN, Hive,  # noqa: E402
                                       http_get, read_text, wait_for)
from hive_e2e import read_jsonl  # noqa: E402

TASK_TIMEOUT = 30.0


def w_answers(h):
    """The response files of H's work dir."""
    d = os.path.join(h.work_dir, ".deia", "hive", "responses")
    return [n for n in os.listdir(d) if not n.startswith(".")] if os.path.isdir(d) else []


def post_task(port, command, task_id):
    """POST /api/task to a worker; the HTTP status."""
    p = subprocess.run([CURL, "-sS", "--noproxy", "*", "--max-time", "5", "-o", "/dev/null",
                        "-w", "%{http_code}", "-H", "Content-Type: application/json",
                        "-d", json.dumps({"command": command, "task_id": task_id}),
                        "http://127.0.0.1:%d/api/task" % port],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=10)
    return int(p.stdout.decode() or 0)


def task_result(port, task_id, timeout=TASK_TIMEOUT):
    """Wait for TASK_ID to finish on the worker at PORT; its result."""
    def done():
        code, body = http_get("http://127.0.0.1:%d/api/task/%s" % (port, task_id))
        return body["result"] if code == 200 and body.get("state") in ("done", "failed") else None
    return wait_for(done, timeout, "task %s" % task_id)


def env_lines(output):
    """NAME=value lines of `env` output as a dict."""
    return dict(line.split("=", 1) for line in output.splitlines() if "=" in line)


def memory_controller_usable():
    """(True, "") when a memory controller is ours to write, as hive looks
    for one (cgroup v2 offering it with a writable subtree_control, or our
    group of a cgroup v1 memory hierarchy writable); else (False, why)."""
    mounts = {}
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fstype, _, opts = (right.split() + ["", "", ""])[:3]
            mnt = left.split()[4]
            if fstype == "cgroup2":
                mounts["v2"] = mnt
            elif fstype == "cgroup" and "memory" in opts.split(","):
                mounts["v1"] = mnt
    paths = {}
    with open("/proc/self/cgroup") as f:
        for line in f:
            _, ctrl, path = line.rstrip("\n").split(":", 2)
            if ctrl == "":
                paths["v2"] = path
            elif "memory" in ctrl.split(","):
                paths["v1"] = path
    if "v2" in mounts and "v2" in paths:
        d = mounts["v2"] + paths["v2"].rstrip("/")
        ctl = read_text(os.path.join(d, "cgroup.controllers")).split()
        if "memory" in ctl and os.access(os.path.join(d, "cgroup.subtree_control"), os.W_OK):
            return True, ""
    if "v1" in mounts and "v1" in paths:
        d = mounts["v1"] + paths["v1"].rstrip("/")
        if os.access(d, os.W_OK):
            return True, ""
    return False, "neither cgroup v2 nor a writable cgroup v1 memory hierarchy"


def controller_mount(controller):
    """The mount point of the cgroup v1 hierarchy of CONTROLLER, or None."""
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            parts = right.split()
            if len(parts) >= 3 and parts[0] == "cgroup" and controller in parts[2].split(","):
                return left.split()[4]
    return None


def controller_dir(controller):
    """Our writable cgroup v1 group of CONTROLLER, or None."""
    mnt = controller_mount(controller)
    with open("/proc/self/cgroup") as f:
        for line in f:
            _, ctrl, path = line.rstrip("\n").split(":", 2)
            if mnt and controller in ctrl.split(","):
                d = mnt + path.rstrip("/")
                return d if os.access(d, os.W_OK) else None
    return None


class RosterKeys(unittest.TestCase):
    def setUp(self):
        for b in (HIVE_BIN, WORKER_BIN):
            if not os.path.exists(b):
                self.fail("not built: %s" % b)
        self.dir = tempfile.mkdtemp(prefix="hive-keys-e2e-")
        self.addCleanup(shutil.rmtree, self.dir, True)

    def hive(self, bots, text=None, env=None):
        """A Hive for BOTS whose hive.yaml is TEXT (formatted with listen and
        the bots' ports) when given."""
        h = Hive(self, self.dir, bots, env=env)
        if text is not None:
            with open(h.roster, "w") as f:
                f.write(text.format(listen=h.listen_port, **h.ports))
        return h

    def test_env_env_file_cwd_interpolation_include(self):
        os.makedirs(os.path.join(self.dir, "sub"))
        os.makedirs(os.path.join(self.dir, "more"))
        with open(os.path.join(self.dir, "vars.env"), "w") as f:
            f.write("# bot variables\nFILE_ONLY=f1\nOVER=from-file\nexport QUOTED=\"a b\"\n")
        with open(os.path.join(self.dir, "more", "inc.env"), "w") as f:
            f.write("INC_FILE=inc-file\n")
        with open(os.path.join(self.dir, "more", "bots.yaml"), "w") as f:
            f.write("bots:\n  - id: INC1\n    port: ${HIVE_T_INC_PORT}\n"
                    "    env_file: inc.env\n"
                    "    adapter: {type: cli, command: [sh, -c, 'env; pwd']}\n")
        h = self.hive([{"id": "ENV1"}, {"id": "INC1"}], text=(
            "hive: {{name: e2e, work_dir: ., listen: '127.0.0.1:{listen}'}}\n"
            "include: [more/bots.yaml]\n"
            "defaults: {{stop_timeout: 5}}\n"
            "bots:\n"
            "  - id: ENV1\n"
            "    port: {ENV1}\n"
            "    cwd: sub\n"
            "    env_file: vars.env\n"
            "    env: {{FROM_ENV: '${{HIVE_T_X}}', OVER: from-env, DOLLAR: 'a$$b',\n"
            "           DEF: '${{HIVE_T_UNSET:-dflt}}'}}\n"
            "    adapter: {{type: cli, command: [sh, -c, 'env; pwd']}}\n"))
        h.env["HIVE_T_X"] = "from-hive-env"
        h.env["HIVE_T_INC_PORT"] = str(h.ports["INC1"])
        h.env.pop("HIVE_T_UNSET", None)
        h.start()
        h.wait_running(["ENV1", "INC1"])
        self.assertEqual(post_task(h.ports["ENV1"], "hello", "T-ENV1"), 202)
        self.assertEqual(post_task(h.ports["INC1"], "hello", "T-INC1"), 202)
        out = task_result(h.ports["ENV1"], "T-ENV1")["output"]
        env = env_lines(out)
        self.assertEqual(env.get("FROM_ENV"), "from-hive-env", out)
        self.assertEqual(env.get("FILE_ONLY"), "f1", out)
        self.assertEqual(env.get("OVER"), "from-env", "env wins over env_file")
        self.assertEqual(env.get("QUOTED"), "a b", out)
        self.assertEqual(env.get("DOLLAR"), "a$b", out)
        self.assertEqual(env.get("DEF"), "dflt", out)
        self.assertEqual(out.strip().splitlines()[-1], os.path.join(os.path.realpath(self.dir), "sub"))
        inc = task_result(h.ports["INC1"], "T-INC1")["output"]
        self.assertEqual(env_lines(inc).get("INC_FILE"), "inc-file", inc)
        self.assertEqual(inc.strip().splitlines()[-1], os.path.realpath(self.dir), "default cwd")

    def test_errors_name_the_included_file(self):
        os.makedirs(os.path.join(self.dir, "more"))
        with open(os.path.join(self.dir, "more", "bots.yaml"), "w") as f:
            f.write("bots:\n  - id: X1\n    cwd: ${HIVE_T_NOPE}\n")
        h = self.hive([{"id": "A"}], text="include: [more/bots.yaml]\nbots: []\n")
        h.env.pop("HIVE_T_NOPE", None)
        rc, out, err = h.run("check", "-f", h.roster)
        self.assertEqual(rc, 78, err)
        self.assertIn("more/bots.yaml:3:10: variable HIVE_T_NOPE is not set", err)

    def test_user_drop(self):
        if os.geteuid() != 0:
            self.skipTest("user: needs hive to run as root (this test runs as uid %d)"
                          % os.geteuid())
        import pwd
        nobody = pwd.getpwnam("nobody")
        os.chmod(self.dir, 0o755)  # mkdtemp's 0700 would keep that user out
        h = self.hive([{"id": "USR1", "user": "nobody"}])
        h.start()
        entry = h.wait_state("USR1", "running")
        status = read_text("/proc/%d/status" % entry["pid"])
        uid_line = [line for line in status.splitlines() if line.startswith("Uid:")][0]
        self.assertEqual(uid_line.split()[1:], [str(nobody.pw_uid)] * 4, status)
        gid_line = [line for line in status.splitlines() if line.startswith("Gid:")][0]
        self.assertEqual(gid_line.split()[1:], [str(nobody.pw_gid)] * 4, status)
        # The bot works as that user: a task is answered.
        self.assertEqual(post_task(h.ports["USR1"], "hi", "T-USR"), 202)
        self.assertTrue(task_result(h.ports["USR1"], "T-USR")["success"])

    def test_clients_work_as_another_user_on_a_roster_with_user(self):
        """Host checks (root for `user:`, the user database, cgroups) belong to
        the commands that start bots: a non-root `hive status`, `send` or
        `logs` on a roster with `user:` reaches the hive; a non-root `hive
        check` still refuses it at file:line:column."""
        if os.geteuid() != 0 or not shutil.which("setpriv"):
            self.skipTest("needs root (to start the hive with user:) and setpriv")
        os.chmod(self.dir, 0o755)  # mkdtemp's 0700 would keep that user out
        h = self.hive([{"id": "USR2", "user": "nobody"}, {"id": "PLAIN"}])
        h.start()
        h.wait_running(["USR2", "PLAIN"])
        os.chmod(h.roster, 0o644)

        def as_nobody(*args):
            p = subprocess.run(["setpriv", "--reuid", "nobody", "--regid", "nogroup",
                                "--clear-groups", HIVE_BIN] + list(args) + ["--file=" + h.roster],
                               cwd="/", env=h.env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, timeout=30, text=True)
            return p.returncode, p.stdout, p.stderr
        rc, out, err = as_nobody("status")
        self.assertEqual(rc, 0, err)
        self.assertIn("USR2", out)
        self.assertRegex(out, r"PLAIN\s+running")
        rc, out, err = as_nobody("send", "PLAIN", "hello")
        self.assertEqual(rc, 0, err)
        rc, out, err = as_nobody("check")
        self.assertEqual(rc, 78, out)
        line = [n for n, text in enumerate(read_text(h.roster).splitlines(), 1)
                if '"user"' in text][0]
        self.assertRegex(err, r"hive\.yaml:%d:\d+: 'user' needs hive to run as root "
                         r"\(it runs as uid \d+\)" % line)
        # The supervisor's reload runs the host checks too: an unknown user is refused.
        h.write_roster(h.bots + [{"id": "GHOST", "user": "no-such-user-xyz"}])
        rc, out, err = h.run("reload", "--file=" + h.roster)
        self.assertEqual(rc, 78, out)
        self.assertIn("unknown user 'no-such-user-xyz' (no such user on this host)", err)

    def test_memory_max_oom_restarts_with_reason(self):
        usable, why = memory_controller_usable()
        if not usable:
            self.skipTest("no writable memory controller here: %s" % why)
        hog = "b = bytearray(512 << 20); import time; time.sleep(30)"
        h = self.hive([{"id": "OOM1", "memory_max": "64M",
                        "adapter": {"type": "cli", "command": ["/usr/bin/python3", "-c", hog]}}])
        h.start()
        first = h.wait_state("OOM1", "running")["pid"]
        # The limit is the kernel's: the worker's memory cgroup (v2, or v1 on a
        # hybrid host) is the bot's own, with 64 MiB written into it.
        groups = {}
        for line in read_text("/proc/%d/cgroup" % first).splitlines():
            _, ctrl, path = line.split(":", 2)
            for c in (ctrl.split(",") if ctrl else ["v2"]):
                groups[c] = path
        v1 = "memory" in groups and bool(controller_mount("memory"))
        if v1:
            bot_group = groups["memory"]
            limit = controller_mount("memory") + bot_group + "/memory.limit_in_bytes"
        else:
            # cgroup v2: each start of the worker has a cgroup of its own
            # (run-<n>) inside the bot's, which holds the limit.
            self.assertRegex(groups["v2"], r"/OOM1/run-\d+$")
            bot_group = groups["v2"].rsplit("/", 1)[0]
            v2 = [line.split()[4] for line in read_text("/proc/self/mountinfo").splitlines()
                  if " - cgroup2 " in line][0]
            limit = v2 + bot_group + "/memory.max"
        self.assertTrue(bot_group.endswith("/OOM1"), groups)
        self.assertEqual(read_text(limit).strip(), str(64 << 20), limit)
        self.assertEqual(post_task(h.ports["OOM1"], "eat", "T-OOM"), 202)

        def oom_reason():
            h.alive()
            return [e for e in read_jsonl(events)
                    if e.get("type") == "bot_state" and e.get("bot_id") == "OOM1"
                    and e.get("reason") == "out of memory"]
        # The task is queued again after each kill, so the bot meets the OOM
        # killer again and again. Its reason is the bot's between kill and
        # ready, which a restart at the floor makes a few milliseconds: the
        # bot_state events of the hive's stream keep every one of them.
        events = os.path.join(h.work_dir, ".deia", "hive", "events.jsonl")
        wait_for(oom_reason, 40, "a bot_state event with reason: out of memory")
        code, body = http_get("http://127.0.0.1:%d/status" % h.listen_port)
        bot = [b for b in body["bots"] if b["id"] == "OOM1"][0]
        self.assertEqual(bot["last_exit"].get("signal"), 9, bot)
        wait_for(lambda: h.alive() and "out of memory" in h.log(), 10, "the kill in the log")
        self.assertIn("OOM1: running -> ", h.log())
        line = [x for x in h.log().splitlines() if "out of memory" in x and "->" in x][0]
        self.assertIn("out of memory", line)
        second = h.wait_state("OOM1", "running", pred=lambda b: b["pid"] != first)["pid"]
        self.assertNotEqual(first, second)
        # The task meets the OOM killer at each of its three runs: each death
        # is told as one. (Under cgroup v1 the supervisor ends the worker at
        # the group's OOM event, before the kernel kills anything, and the
        # group's oom_kill count did not always move: the second death was
        # told as "killed by signal 9".)
        wait_for(lambda: len(w_answers(h)) == 1, 30, "the task failed after its third death")
        answer = read_text(os.path.join(h.work_dir, ".deia", "hive", "responses",
                                        w_answers(h)[0]))
        # Under cgroup v1 the kernel kills the hog as the group's OOM event
        # reaches the supervisor: a worker that reaps its adapter before the
        # supervisor's SIGKILL lands answers the third run itself (seen once
        # in CI), as out of memory (the group's oom_kill count moved while
        # the task ran), and is ended a moment later. Under v2
        # (memory.oom.group) the fourth start answers it as poison.
        reasons = ["worker died 3 times while running this task"]
        if v1:
            reasons.append("out of memory (killed by signal 9)")
        self.assertTrue(any(r in answer for r in reasons), answer)

        def backoffs():
            return [e["reason"] for e in read_jsonl(events)
                    if e.get("type") == "bot_state" and e.get("bot_id") == "OOM1"
                    and e.get("state") == "backoff"]
        if reasons[0] in answer:
            wait_for(lambda: len(backoffs()) >= 3, 10, "the third death's backoff")
            self.assertEqual(backoffs(), ["out of memory"] * 3, backoffs())
        else:
            # The run that answered is ended all the same; every death told
            # is an OOM, and there were at most three.
            def settled():
                states = [e["state"] for e in read_jsonl(events)
                          if e.get("type") == "bot_state" and e.get("bot_id") == "OOM1"]
                return (states[-1:] == ["running"]
                        and states.count("running") == states.count("backoff") + 1)
            wait_for(settled, 10, "the bot running again after its last death")
            told = backoffs()
            self.assertTrue(1 <= len(told) <= 3 and set(told) == {"out of memory"}, told)

    def test_cpu_and_tasks_limits_in_the_bots_cgroup(self):
        usable = [c for c in ("cpu", "pids") if controller_dir(c)]
        if len(usable) < 2:
            self.skipTest("no writable cgroup v1 cpu and pids hierarchies here (a hybrid host "
                          "checks them; the cgroup v2 files are set the same way)")
        h = self.hive([{"id": "LIM1", "cpu_max": "50%", "tasks_max": 64}])
        h.start()
        pid = h.wait_state("LIM1", "running")["pid"]
        groups = dict((ctrl, path) for _, ctrl, path in
                      (line.split(":", 2) for line in read_text("/proc/%d/cgroup" % pid)
                       .splitlines()))
        found = {}
        for ctrl, path in groups.items():
            for c in ctrl.split(","):
                found[c] = path
        self.assertTrue(found["cpu"].endswith("/LIM1"), found)
        self.assertTrue(found["pids"].endswith("/LIM1"), found)
        cpu = controller_mount("cpu") + found["cpu"]
        pids = controller_mount("pids") + found["pids"]
        self.assertEqual(read_text(cpu + "/cpu.cfs_quota_us").strip(), "50000")
        self.assertEqual(read_text(cpu + "/cpu.cfs_period_us").strip(), "100000")
        self.assertEqual(read_text(pids + "/pids.max").strip(), "64")

    def test_log_rotation_by_max_bytes(self):
        h = self.hive([{"id": "LOG1", "log": {"max_bytes": "1k", "backups": 2}}])
        h.start()
        h.wait_running(["LOG1"])
        log = h.path("logs", "LOG1.log")
        for i in range(40):
            self.assertEqual(post_task(h.ports["LOG1"], "x", "T-%d" % i), 202)
        task_result(h.ports["LOG1"], "T-39")
        wait_for(lambda: os.path.exists(log + ".2"), 20, "LOG1.log.2")
        self.assertFalse(os.path.exists(log + ".3"), "backups: 2 keeps two")
        for p in (log, log + ".1", log + ".2"):
            self.assertLessEqual(os.path.getsize(p), 1024, p)

    def test_sigusr1_reopens_logs(self):
        h = self.hive([{"id": "RO1"}])
        h.start()
        h.wait_running(["RO1"])
        log = h.path("logs", "RO1.log")
        self.assertEqual(post_task(h.ports["RO1"], "x", "T-A"), 202)
        task_result(h.ports["RO1"], "T-A")
        wait_for(lambda: "T-A" in read_text(log), 10, "T-A in RO1.log")
        os.rename(log, log + ".old")
        hive_log = h.path("logs", "hive.log")
        os.rename(hive_log, hive_log + ".old")
        h.signal(signal.SIGUSR1)
        wait_for(lambda: "reopened" in read_text(hive_log), 10, "hive.log made again")
        self.assertEqual(post_task(h.ports["RO1"], "x", "T-B"), 202)
        task_result(h.ports["RO1"], "T-B")
        wait_for(lambda: "T-B" in read_text(log), 10, "T-B in a new RO1.log")
        self.assertNotIn("T-B", read_text(log + ".old"))
        self.assertIn("hive e2e started", read_text(hive_log + ".old"))

    def test_stop_timeout_ends_in_sigkill(self):
        """stop_timeout: a worker that does not stop on its stop_signal (here: frozen
        with SIGSTOP, so SIGTERM stays pending) is SIGKILLed once stop_timeout has
        passed, not before; the bot is then stopped."""
        h = self.hive([{"id": "HUNG", "stop_timeout": 3}])
        h.start()
        pid = h.wait_state("HUNG", "running")["pid"]

        def state():
            code, body = http_get("http://127.0.0.1:%d/status" % h.listen_port)
            return [b for b in body["bots"] if b["id"] == "HUNG"][0]["state"]
        os.kill(pid, signal.SIGSTOP)
        try:
            p = subprocess.run([HIVE_BIN, "stop", "HUNG", "--file=" + h.roster], env=h.env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
            self.assertEqual(p.returncode, 0, p.stderr)
            time.sleep(1.0)
            self.assertEqual(state(), "stopping", "stopped before stop_timeout")
            wait_for(lambda: state() == "stopped", 20, "HUNG stopped after stop_timeout")
        finally:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
        self.assertIn("HUNG: SIGKILL to pid %d (still running after SIGTERM)" % pid, h.log())

    def test_max_restarts_has_no_small_cap(self):
        """max_restarts: any positive number (it was capped at 100)."""
        h = self.hive([{"id": "MANY", "restart": {"policy": "always", "max_restarts": 100000,
                                                 "window": 60}}])
        rc, out, err = h.run("check", "-f", h.roster)
        self.assertEqual(rc, 0, err)
        self.assertIn("MANY", out)


if __name__ == "__main__":
    unittest.main()
