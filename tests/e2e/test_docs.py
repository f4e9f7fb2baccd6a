"""The user reference stays complete: every roster key of config/roster.c's
field tables, every hive-worker option of worker/options.c and every `hive`
subcommand and option of cli/client.c and supervisor/main.c is documented
both in docs/ and in the man pages (hive.yaml(5), hive-worker(1), hive(1)).
The lists come from parsing the sources, so a key or option added to the code
without its documentation fails here. Also: docs/ links only inside the
repository, every link resolves, and the man pages format without warnings.
"""

import glob
import os
import re
import shutil
import subprocess
import unittest

SOURCE_DIR = os.environ.get("HIVE_SOURCE_DIR",
                            os.path.dirname(os.path.dirname(os.path.dirname(
                                os.path.abspath(__file__)))))
DOCS = os.path.join(SOURCE_DIR, "docs")


def read(*parts):
    with open(os.path.join(SOURCE_DIR, *parts), encoding="utf-8") as f:
        return f.read()


def code(*parts):
    """A C source with its comments removed (they quote options in prose)."""
    return re.sub(r"/\*.*?\*/", "", read(*parts), flags=re.S)


def man_text(name):
    """A man page's source with roff escapes undone: \\fB..\\fR dropped, \\- as -."""
    text = read("docs", "man", name)
    text = re.sub(r"\\f[BIRP]", "", text)
    return text.replace("\\-", "-").replace("\\(em", "-")


def mentions(text, word):
    """WORD appears in TEXT as a whole word (dashes and underscores are part of words)."""
    return re.search(r"(?<![\w-])%s(?![\w-])" % re.escape(word), text) is not None


def roster_keys():
    """{table: [keys]} from config/roster.c's `static const struct roster_field X[]`."""
    src = code("config", "roster.c")
    tables = {}
    for m in re.finditer(r"static const struct roster_field (\w+)\[\] = \{(.*?)\n\};", src, re.S):
        tables[m.group(1)] = re.findall(r'ROSTER_FIELD\("([a-z_]+)"', m.group(2))
    return tables


def worker_options():
    """Every "--option" literal of worker/options.c (its usage text and tables)."""
    opts = set(re.findall(r'"(--[a-z][a-z-]*)', code("worker", "options.c")))
    return sorted(opts)


def hive_commands():
    """The subcommands: the client's table and those main.c runs itself."""
    client = code("cli", "client.c")
    main = code("supervisor", "main.c")
    table = re.search(r"client_commands\[\] = \{(.*?)\n\};", client, re.S).group(1)
    names = re.findall(r'\{\s*"([a-z]+)",\s*"hive ', table)
    names += re.findall(r'strcmp\(cmd, "([a-z]+)"\)', main)
    return sorted(set(names) - {"help"})


def hive_options():
    """The long options of every `struct option` table of the hive program."""
    opts = set()
    for path in (("cli", "client.c"), ("supervisor", "main.c")):
        opts |= set(re.findall(r'\{"([a-z][a-z-]*)",\s*(?:no|required|optional)_argument',
                               code(*path)))
    return sorted("--" + o for o in opts)


class ParsedTest(unittest.TestCase):
    """The parsers above find what they should (so the checks below are not empty)."""

    def test_sources_parsed(self):
        tables = roster_keys()
        self.assertIn("roster_bot_fields", tables)
        self.assertIn("port", tables["roster_bot_fields"])
        self.assertIn("max_restarts", sum(tables.values(), []))
        self.assertGreaterEqual(len(sum(tables.values(), [])), 30)
        self.assertIn("--port", worker_options())
        self.assertIn("--log-level", worker_options())
        self.assertIn("logs", hive_commands())
        self.assertIn("up", hive_commands())
        self.assertIn("--since", hive_options())


class RosterDocsTest(unittest.TestCase):

    def test_every_key_documented(self):
        md = read("docs", "roster.md")
        man = man_text("hive.yaml.5")
        missing = []
        for table, keys in roster_keys().items():
            for key in keys:
                if "`%s`" % key not in md:
                    missing.append("docs/roster.md: %s (%s)" % (key, table))
                if not mentions(man, key):
                    missing.append("hive.yaml.5: %s (%s)" % (key, table))
        self.assertEqual(missing, [])


class WorkerDocsTest(unittest.TestCase):

    def test_every_option_documented(self):
        md = read("docs", "cli.md")
        man = man_text("hive-worker.1")
        missing = []
        for opt in worker_options():
            if not re.search(r"`%s[ `=]" % re.escape(opt), md):
                missing.append("docs/cli.md: " + opt)
            if not mentions(man, opt):
                missing.append("hive-worker.1: " + opt)
        self.assertEqual(missing, [])

    def test_help_lists_every_option(self):
        """worker --help (the usage text in options.c) names every option it parses."""
        src = read("worker", "options.c")
        usage = re.search(r"options_usage_text\[\] =(.*?);\n", src, re.S).group(1)
        self.assertEqual([o for o in worker_options() if o not in usage], [])


class HiveDocsTest(unittest.TestCase):

    def test_every_command_documented(self):
        md = read("docs", "cli.md")
        man = man_text("hive.1")
        usage = re.search(r"main_usage_text\[\] =(.*?);\n", read("supervisor", "main.c"),
                          re.S).group(1)
        missing = []
        for cmd in hive_commands():
            if not re.search(r"`hive (\S+\|)?%s[ `|]" % re.escape(cmd), md):
                missing.append("docs/cli.md: hive " + cmd)
            if not mentions(man, cmd):
                missing.append("hive.1: " + cmd)
            if not mentions(usage, cmd):
                missing.append("hive --help: " + cmd)
        self.assertEqual(missing, [])

    def test_every_option_documented(self):
        md = read("docs", "cli.md")
        man = man_text("hive.1")
        missing = []
        for opt in hive_options():
            if not re.search(r"`%s[ `=]" % re.escape(opt), md):
                missing.append("docs/cli.md: " + opt)
            if not mentions(man, opt):
                missing.append("hive.1: " + opt)
        self.assertEqual(missing, [])


class LinksTest(unittest.TestCase):

    def test_links_stay_inside(self):
        bad = []
        files = glob.glob(os.path.join(DOCS, "*.md")) + [os.path.join(SOURCE_DIR, "README.md")]
        for path in files:
            with open(path, encoding="utf-8") as f:
                text = f.read()
            if path.endswith("README.md") and os.path.dirname(path) == SOURCE_DIR:
                m = re.search(r"^## Documentation\n(.*?)(?=^## )", text, re.S | re.M)
                self.assertIsNotNone(m, "README.md has no Documentation section")
                text = m.group(1)
            for target in re.findall(r"\]\(([^)\s]+)\)", text):
                base = target.split("#")[0]
                where = os.path.normpath(os.path.join(os.path.dirname(path), base))
                if re.match(r"[a-z]+:", target) or not where.startswith(SOURCE_DIR + os.sep) \
                        or not os.path.exists(where):
                    bad.append("%s: %s" % (os.path.relpath(path, SOURCE_DIR), target))
            if "../shared" in text or "SPEC.md" in text:
                bad.append("%s names a file outside the repository" % path)
        self.assertEqual(bad, [])

    def test_readme_links_docs(self):
        readme = read("README.md")
        for doc in ("docs/cli.md", "docs/roster.md", "docs/api.md", "docs/install.md"):
            self.assertIn("](%s)" % doc, readme)


@unittest.skipUnless(shutil.which("groff"), "groff is not installed")
class ManFormatTest(unittest.TestCase):

    def test_pages_format_cleanly(self):
        for page in ("hive.1", "hive-worker.1", "hive.yaml.5"):
            p = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-z",
                                os.path.join(DOCS, "man", page)],
                               capture_output=True, timeout=60, text=True,
                               env=dict(os.environ, LC_ALL="C.UTF-8"))
            self.assertEqual((p.returncode, p.stderr), (0, ""), page)


if __name__ == "__main__":
    unittest.main(verbosity=2)
