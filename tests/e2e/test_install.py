"""The package: `cpack -G DEB` on the build tree makes a .deb whose Depends
name the runtime libraries, and whose files, unpacked with `dpkg -x` into a
temporary folder (no root, nothing installed on the machine), run: the
extracted `hive --version`, `hive-worker --help`, `hive check` on the example
roster; the bash completion, man pages and example units are where
`cmake --install` puts them (GNUInstallDirs under /usr); the example units
pass `systemd-analyze verify`. `cmake --install` into a temporary prefix is
checked on its own.

The package tests are skipped, with the reason printed, when cpack or
dpkg-deb is missing.
"""

import glob
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from hive_e2e import BUILD_DIR  # noqa: E402

SOURCE_DIR = os.environ.get("HIVE_SOURCE_DIR",
                            os.path.dirname(os.path.dirname(os.path.dirname(
                                os.path.abspath(__file__)))))
RUNTIME_LIBS = ("libevent-core", "libjansson", "libyaml", "libssl", "libhttp-parser", "libwslay")


def missing_tools():
    return [t for t in ("cpack", "dpkg-deb") if not shutil.which(t)]


@unittest.skipIf(missing_tools(), "cannot build a .deb here: %s not installed"
                 % " and ".join(missing_tools()))
class DebTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="hive-e2e-deb-")
        config = os.path.join(BUILD_DIR, "CPackConfig.cmake")
        if not os.path.exists(config):
            raise AssertionError("no CPackConfig.cmake in %s: the build has no packaging rules"
                                 % BUILD_DIR)
        out = os.path.join(cls.tmp, "out")
        p = subprocess.run(["cpack", "-G", "DEB", "--config", config, "-B", out],
                           cwd=BUILD_DIR, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=280, text=True)
        debs = glob.glob(os.path.join(out, "hive_*.deb"))
        if p.returncode != 0 or len(debs) != 1:
            raise AssertionError("cpack failed (%d):\n%s" % (p.returncode, p.stdout[-4000:]))
        cls.deb = debs[0]
        cls.root = os.path.join(cls.tmp, "root")
        subprocess.run(["dpkg-deb", "-x", cls.deb, cls.root], check=True, timeout=60)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def path(self, *parts):
        return os.path.join(self.root, "usr", *parts)

    def field(self, name):
        return subprocess.run(["dpkg-deb", "-f", self.deb, name], stdout=subprocess.PIPE,
                              check=True, timeout=30, text=True).stdout.strip()

    def test_control(self):
        self.assertEqual(self.field("Package"), "hive")
        depends = self.field("Depends")
        for lib in RUNTIME_LIBS:
            self.assertIn(lib, depends)
        self.assertNotIn("-dev", depends)

    def test_binaries_run(self):
        hive, worker = self.path("bin", "hive"), self.path("bin", "hive-worker")
        p = subprocess.run([hive, "--version"], capture_output=True, timeout=30, text=True)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertRegex(p.stdout, r"^hive \d+\.\d+\.\d+")
        p = subprocess.run([worker, "--help"], capture_output=True, timeout=30, text=True)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("usage: hive-worker BOT-ID", p.stdout)
        example = self.path("share", "doc", "hive", "examples", "hive.yaml")
        p = subprocess.run([hive, "check", "-f", example], capture_output=True, timeout=30,
                           text=True)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("ok: hive demo, 3 bot(s)", p.stdout)

    def test_files_in_place(self):
        for name in ("hive", "hive-worker"):
            completion = self.path("share", "bash-completion", "completions", name)
            with open(completion) as f:
                self.assertIn("complete -F _hive hive", f.read())
        for page in ("man1/hive.1", "man1/hive-worker.1", "man5/hive.yaml.5"):
            with open(self.path("share", "man", page)) as f:
                self.assertTrue(f.read().startswith(".\\\""), page)
        for unit in ("hive.service", "hive-worker@.service", "hive-worker@.socket"):
            self.assertTrue(os.path.exists(self.path("share", "doc", "hive", "examples", unit)))
        for doc in ("index.md", "cli.md", "roster.md", "api.md", "from-deia.md",
                    "from-supervisord-pm2-compose.md", "install.md"):
            self.assertTrue(os.path.exists(self.path("share", "doc", "hive", doc)), doc)

    def test_completion_offers_bots(self):
        """The installed completion completes subcommands and the roster's bot ids."""
        if not shutil.which("bash"):
            self.skipTest("no bash")
        example = self.path("share", "doc", "hive", "examples", "hive.yaml")
        script = self.path("share", "bash-completion", "completions", "hive")
        probe = ('source "$1"; PATH="$2:$PATH"\n'
                 'COMP_WORDS=(hive re); COMP_CWORD=1; _hive; echo "${COMPREPLY[*]}"\n'
                 'COMP_WORDS=(hive logs --file "$3" BOT-00); COMP_CWORD=4; _hive; '
                 'echo "${COMPREPLY[*]}"\n'
                 'COMP_WORDS=(hive status --w); COMP_CWORD=2; _hive; echo "${COMPREPLY[*]}"\n'
                 'COMP_WORDS=(hive-worker B --mo); COMP_CWORD=2; _hive_worker; '
                 'echo "${COMPREPLY[*]}"\n'
                 'COMP_WORDS=(hive ""); COMP_CWORD=1; _hive; echo "${COMPREPLY[*]}"\n'
                 'COMP_WORDS=(hive export s); COMP_CWORD=2; _hive; echo "${COMPREPLY[*]}"\n'
                 'COMP_WORDS=(hive events --); COMP_CWORD=2; _hive; echo "${COMPREPLY[*]}"\n'
                 'COMP_WORDS=(hive cancel --file "$3" BOT-00); COMP_CWORD=4; _hive; '
                 'echo "${COMPREPLY[*]}"\n')
        p = subprocess.run(["bash", "-c", probe, "probe", script, self.path("bin"), example],
                           capture_output=True, timeout=30, text=True)
        self.assertEqual(p.returncode, 0, p.stderr)
        lines = p.stdout.splitlines()
        self.assertEqual(sorted(lines[0].split()), ["reload", "reset", "restart", "resume"])
        self.assertEqual(sorted(lines[1].split()), ["BOT-001", "BOT-002", "BOT-003"])
        self.assertEqual(sorted(lines[2].split()), ["--watch"])
        self.assertEqual(sorted(lines[3].split()), ["--mock-delay-ms", "--mode", "--model"])
        for command in ("up", "down", "status", "send", "restart", "stop", "start", "pause",
                        "resume", "interrupt", "cancel", "reload", "logs", "events", "top",
                        "check", "export", "reset", "prune"):  # every command of SPEC §1, §11, §12
            self.assertIn(command, lines[4].split())
        self.assertEqual(lines[5].split(), ["systemd"])
        self.assertEqual(sorted(lines[6].split()), ["--count", "--file", "--help", "--since"])
        self.assertEqual(sorted(lines[7].split()), ["BOT-001", "BOT-002", "BOT-003"])

    def test_units_verify(self):
        """The example units pass `systemd-analyze verify` (ExecStart pointed at the
        extracted binaries; the templates instantiated as BOT-001)."""
        if not shutil.which("systemd-analyze"):
            self.skipTest("systemd-analyze is not installed")
        units = os.path.join(self.tmp, "units")
        os.makedirs(units, exist_ok=True)
        names = {"hive.service": "hive.service",
                 "hive-worker@.service": "hive-worker@BOT-001.service",
                 "hive-worker@.socket": "hive-worker@BOT-001.socket"}
        for src, dst in names.items():
            with open(self.path("share", "doc", "hive", "examples", src)) as f:
                text = f.read().replace("/usr/bin/", self.path("bin") + "/")
            with open(os.path.join(units, dst), "w") as f:
                f.write(text)
        p = subprocess.run(["systemd-analyze", "verify", "--man=no"]
                           + [os.path.join(units, n) for n in names.values()],
                           capture_output=True, timeout=60, text=True)
        self.assertEqual((p.returncode, p.stdout + p.stderr), (0, ""))


class CmakeInstallTest(unittest.TestCase):
    """`cmake --install` of the build tree into a temporary prefix."""

    def test_install_layout(self):
        if not shutil.which("cmake"):
            self.skipTest("cmake is not installed")
        tmp = tempfile.mkdtemp(prefix="hive-e2e-install-")
        try:
            p = subprocess.run(["cmake", "--install", BUILD_DIR, "--prefix", tmp],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120,
                               text=True)
            self.assertEqual(p.returncode, 0, p.stdout[-3000:])
            for rel in ("bin/hive", "bin/hive-worker",
                        "share/bash-completion/completions/hive",
                        "share/bash-completion/completions/hive-worker",
                        "share/man/man1/hive.1", "share/man/man1/hive-worker.1",
                        "share/man/man5/hive.yaml.5", "share/doc/hive/cli.md",
                        "share/doc/hive/examples/hive.service",
                        "share/doc/hive/examples/hive.yaml"):
                self.assertTrue(os.path.exists(os.path.join(tmp, rel)), rel)
            self.assertTrue(os.access(os.path.join(tmp, "bin", "hive"), os.X_OK))
            # the installed completion knows the commands added since, `top` among them
            probe = ('source "$1"; for w in t ca ev ex res pr; do COMP_WORDS=(hive $w); '
                     'COMP_CWORD=1; _hive; echo "${COMPREPLY[*]}"; done')
            p = subprocess.run(["bash", "-c", probe, "probe",
                                os.path.join(tmp, "share/bash-completion/completions/hive")],
                               capture_output=True, timeout=30, text=True)
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertEqual([sorted(x.split()) for x in p.stdout.splitlines()],
                             [["top"], ["cancel"], ["events"], ["export"],
                              ["reset", "restart", "resume"], ["prune"]])
            p = subprocess.run([os.path.join(tmp, "bin", "hive"), "--version"],
                               capture_output=True, timeout=30, text=True)
            self.assertEqual(p.returncode, 0, p.stderr)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    unittest.main(verbosity=2)
