"""Every Python sample of the documentation runs, on the test database (SQLite and PostgreSQL).

The pages are README.md and docs/*.md. Each page is one test (``test_page_<page>``); its
```` ```python ```` blocks run in order, so a renamed function or option breaks the build.

Conventions for writing samples (docs/index.md, "For contributors", says the same):

* **One namespace per page.** Blocks of a page run in order in the namespace of a real module,
  ``docs_samples.<page>`` (registered in ``sys.modules``): a block can define a worker and a
  later block enqueue it, and a worker defined there has an importable ``worker_path``
  (``docs_samples.workers_and_jobs.MailerWorker``), as ``runjobs`` needs.
* **File blocks.** A block whose first line is a comment naming a Python file, such as
  ``# myapp/workers.py``, is that file: it runs as the module ``myapp.workers`` (parent
  packages are made up), so ``from myapp.workers import MailerWorker`` works in later blocks
  and jobs store ``myapp.workers.MailerWorker``, as the text says. A later block naming the
  same file adds to it. Its public names are also copied into the page namespace. These
  modules are removed when the page ends, so two pages may each have their own
  ``myapp/workers.py``; a sample may not name a real module's file.
* **Settings blocks.** A block that assigns ``DJANGO_JOBS`` at top level, or whose first line
  is ``# settings.py`` (any ``.../settings.py``), is a settings module: it runs in a namespace
  of its own (``__file__`` set, for ``BASE_DIR = Path(__file__).resolve().parent.parent``;
  it sees the page's file modules through imports only), and its ``DJANGO_JOBS`` is validated
  by the package's own system checks: every ``django_jobs.*`` error or warning about it fails
  the page, with its check id. That ``DJANGO_JOBS`` then stays in force for the rest of the
  page. ``USE_TZ``, when the block sets it, must be True.
* **Test classes.** A ``unittest.TestCase`` subclass that a page defines (``JobsTestCase``,
  ``TransactionTestCase`` included) runs at the end of the page, after the rows the blocks
  wrote are rolled back (a test starts from empty tables), with the page's settings in force;
  its failures fail the page. When a file block made a ``urls`` module (``# myapp/urls.py``),
  they run with it as ``ROOT_URLCONF``, so ``self.client.post("/signup/")`` reaches the
  page's view. pytest-style functions are defined but not called.
* **Not Python.** Only ``python`` and ``py`` fences run. ``sh``, ``console``, ``text``,
  ``sql``, ``pycon`` and the rest are not Python samples. Do not put ``>>>`` sessions in a
  ``python`` block (it fails as invalid Python): write the call and an ``assert`` (or a
  comment) with its result.
* **Skipping.** A block that cannot run here (it needs a real mail server, another process,
  ...) is marked ``illustrative`` in its fence, ```` ```python title="illustrative" ````, or
  by ``<!-- docs-test: skip (why) -->`` on the line before the fence. Skipped blocks are
  counted and listed by ``test_skipped_blocks_are_few``, which fails past ``MAX_SKIPPED``:
  prefer a sample that runs (define the helper it calls; build jobs rather than run them).
* **Optional dependencies.** A block that needs a module django_jobs does not require (the
  ``django.tasks`` of Django 6.0+, say) names it in its fence,
  ```` ```python needs="django.tasks" ```` (several: ``needs="a, b"``). It runs where every
  module it names imports, and is otherwise reported as "not run here: needs django.tasks"
  (``test_skipped_blocks_are_few`` lists them) and counted apart from the skipped blocks: it
  is not a skip, since CI runs the suite where its modules import (Python 3.12 with Django
  6.1). Later blocks that use what it defines need the same mark.
* **What the database holds.** Each page's blocks run in one transaction, rolled back at
  their end, with no testing mode unless a settings block sets one: inserts write jobs and
  nothing runs them, as with no ``runjobs`` started. A sample that wants a job run says so
  (``drain_queue`` or ``perform_job`` from ``django_jobs.testing``). What a block prints is
  shown only when the page fails.

A failure names the page and the Markdown line of the block, and tracebacks point at the
Markdown file itself.
"""

from __future__ import annotations

import ast
import contextlib
import gc
import importlib
import io
import linecache
import re
import sys
import textwrap
import traceback
import types
import unittest
from dataclasses import dataclass, field
from pathlib import Path

from django.core import checks
from django.db import transaction
from django.test import TransactionTestCase, override_settings

from django_jobs.admin.panels import registered_panels, unregister_panel
from django_jobs.plugins.base import connected_plugins
from django_jobs import features, registry

ROOT = Path(__file__).resolve().parent.parent
#: The most blocks that may be skipped across all pages (each must say why it cannot run).
MAX_SKIPPED = 6
#: Package under which each page's namespace module lives.
PACKAGE = "docs_samples"

FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
SKIP_MARK = re.compile(r"<!--\s*docs-test:\s*skip\b.*-->")
NEEDS = re.compile(r"""\bneeds\s*=\s*(?:"(?P<double>[^"]*)"|'(?P<single>[^']*)'|(?P<bare>\S+))""")
MODULE_NAME = re.compile(r"^[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*$")
FILE_COMMENT = re.compile(r"^#\s*(?P<path>[A-Za-z_][\w/]*\.py)\s*(?:[-—(:].*)?$")
PYTHON_LANGUAGES = {"python", "py", "python3"}


@dataclass
class Block:
    """One fenced code block of a page."""

    page: str             # path relative to the repository root
    line: int             # 1-based line of the first line of code (after the fence)
    language: str
    info: str
    code: str
    skipped: bool = False
    skip_reason: str = ""
    #: Modules the block needs beyond django_jobs' requirements (``needs="..."`` in its fence).
    needs: tuple[str, ...] = ()

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"

    def missing(self) -> list[str]:
        """The modules of :attr:`needs` that do not import here (the block then does not run
        here; it is not a skip)."""
        missing = []
        for name in self.needs:
            try:
                importlib.import_module(name)
            except ImportError:
                missing.append(name)
        return missing

    @property
    def runs_here(self) -> bool:
        return not self.skipped and not self.missing()

    @property
    def file_path(self) -> str | None:
        """``myapp/workers.py`` when the block's first line names a Python file."""
        first = self.code.lstrip("\n").split("\n", 1)[0].strip()
        match = FILE_COMMENT.match(first)
        return match["path"] if match else None


@dataclass
class Page:
    path: str
    blocks: list[Block] = field(default_factory=list)

    @property
    def slug(self) -> str:
        return re.sub(r"\W", "_", Path(self.path).stem.lower())

    @property
    def python_blocks(self) -> list[Block]:
        return [b for b in self.blocks if b.language in PYTHON_LANGUAGES]


def parse_blocks(text: str, page: str) -> list[Block]:
    """The fenced code blocks of Markdown ``text``, with their line numbers and skip marks.

    A fence closes on a line of the same character, at least as long, with nothing after it
    (CommonMark). The indentation of the opening fence is removed from the block's lines (a
    block inside a list item)."""
    lines = text.split("\n")
    blocks: list[Block] = []
    index = 0
    while index < len(lines):
        match = FENCE.match(lines[index])
        if not match or (match["fence"][0] == "`" and "`" in match["info"]):
            index += 1
            continue
        indent, fence, info = match["indent"], match["fence"], match["info"].strip()
        previous = next((lines[i] for i in range(index - 1, -1, -1) if lines[i].strip()), "")
        start = index + 1
        end = start
        while end < len(lines):
            closing = lines[end].strip()
            if closing.startswith(fence[0] * len(fence)) and not closing.strip(fence[0]):
                break
            end += 1
        if end == len(lines):
            raise ValueError(f"{page}:{index + 1}: code fence {fence!r} is never closed")
        body = [line[len(indent):] if line.startswith(indent) else line.lstrip()
                for line in lines[start:end]]
        language = info.split(None, 1)[0].lower() if info else ""
        block = Block(page=page, line=start + 1, language=language, info=info,
                      code=textwrap.dedent("\n".join(body)) + "\n")
        if SKIP_MARK.search(previous):
            block.skipped, block.skip_reason = True, previous.strip()
        elif re.search(r"""title\s*=\s*["']illustrative["']""", info):
            block.skipped, block.skip_reason = True, info
        if needs := NEEDS.search(info):
            names = next(v for v in needs.group("double", "single", "bare") if v is not None)
            block.needs = tuple(n for n in re.split(r"[\s,]+", names) if n)
            bad = [n for n in block.needs if not MODULE_NAME.match(n)]
            if not block.needs or bad:
                raise ValueError(f"{page}:{index + 1}: needs= takes module names, such as "
                                 f'needs="django.tasks", not {needs.group(0)!r}')
        blocks.append(block)
        index = end + 1
    return blocks


def pages() -> list[Page]:
    """README.md, then docs/*.md in name order."""
    paths = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    found = []
    for path in paths:
        relative = str(path.relative_to(ROOT))
        found.append(Page(relative, parse_blocks(path.read_text(encoding="utf-8"), relative)))
    return found


class BlockFailed(AssertionError):
    """A sample raised: the message names its page and line, with the traceback."""


def sample_traceback(exc: BaseException) -> str:
    """The traceback of ``exc`` from the sample's own frame down (the runner's frames left
    out)."""
    tb = exc.__traceback__
    while tb is not None and not tb.tb_frame.f_code.co_filename.endswith(".md"):
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(exc), exc, tb))


def assigns_django_jobs(tree: ast.Module) -> bool:
    for node in tree.body:
        targets = (node.targets if isinstance(node, ast.Assign)
                   else [node.target] if isinstance(node, ast.AnnAssign) else [])
        if any(isinstance(t, ast.Name) and t.id == "DJANGO_JOBS" for t in targets):
            return True
    return False


class PageRun:
    """Runs the Python blocks of one page; see the module docstring for the conventions."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.module_name = f"{PACKAGE}.{page.slug}"
        self.created: list[str] = []
        #: What the blocks printed, shown when the page fails.
        self.output = io.StringIO()
        self.settings: list[override_settings] = []
        self.namespace = self._module(self.module_name).__dict__

    # -- modules ------------------------------------------------------------------------------

    def _module(self, name: str) -> types.ModuleType:
        """The module ``name`` in sys.modules, made (with its parent packages) if missing.

        Only modules this page made may be reused: a sample may not stand in for a module
        of the project or its dependencies."""
        module = sys.modules.get(name)
        if module is not None:
            if name in self.created:
                return module
            raise AssertionError(
                f"{self.page.path}: a sample names the file of {name}, which is a real module; "
                f"use another path (myapp/...)")
        parent, _, child = name.rpartition(".")
        if parent:
            self._module(parent)
        module = types.ModuleType(name)
        module.__path__ = []  # a package too, so that submodules can be made under it
        module.__file__ = f"<docs sample {name}>"
        sys.modules[name] = module
        self.created.append(name)
        if parent:
            setattr(sys.modules[parent], child, module)
        return module

    def cleanup(self) -> None:
        for settings in reversed(self.settings):
            settings.disable()
        for name in reversed(self.created):
            sys.modules.pop(name, None)
        self.namespace.clear()
        # Workers are registered weakly: let the page's go (the feature pipelines cache them
        # strongly, so drop that cache; it is rebuilt on the next use).
        features.reset_pipelines()
        gc.collect()
        registry.resolve_worker.cache_clear()

    # -- blocks -------------------------------------------------------------------------------

    def compile(self, block: Block) -> tuple[ast.Module, types.CodeType]:
        """The block compiled with the Markdown file as its file name and its own line
        numbers, so that tracebacks point at the page."""
        filename = str(ROOT / block.page)
        try:
            tree = ast.parse(block.code, filename=filename)
        except SyntaxError as exc:
            raise BlockFailed(f"{block.page}:{block.line + (exc.lineno or 1) - 1}: the "
                              f"python block at line {block.line} is not valid Python: "
                              f"{exc.msg}") from None
        ast.increment_lineno(tree, block.line - 1)
        linecache.checkcache(filename)
        return tree, compile(tree, filename, "exec")

    def run(self, block: Block) -> None:
        with contextlib.redirect_stdout(self.output):
            self._run(block)

    def _run(self, block: Block) -> None:
        tree, code = self.compile(block)
        path = block.file_path
        try:
            if assigns_django_jobs(tree) or (path and path.endswith("settings.py")):
                self.run_settings(block, code)
            elif path:
                module = self._module(path[:-3].replace("/", "."))
                exec(code, module.__dict__)
                self.namespace.update({k: v for k, v in module.__dict__.items()
                                       if not k.startswith("_")})
            else:
                exec(code, self.namespace)
        except BlockFailed:
            raise
        except BaseException as exc:  # SystemExit from a sample is a failure too
            if isinstance(exc, KeyboardInterrupt):
                raise
            raise BlockFailed(f"{block.where}: the python block at line {block.line} of "
                              f"{block.page} raised {type(exc).__name__}: {exc}\n\n"
                              f"{sample_traceback(exc)}") from None

    def run_settings(self, block: Block, code: types.CodeType) -> None:
        """A settings module: run it, validate its DJANGO_JOBS with the system checks, and
        keep that DJANGO_JOBS in force for the rest of the page."""
        path = block.file_path or "myproject/settings.py"
        namespace: dict = {"__name__": path[:-3].replace("/", "."),
                           "__file__": str(ROOT / "example" / path)}
        exec(code, namespace)
        if namespace.get("USE_TZ", True) is not True:
            raise BlockFailed(f"{block.where}: the settings sample sets USE_TZ = "
                              f"{namespace['USE_TZ']!r}; django_jobs needs True")
        if "DJANGO_JOBS" not in namespace:
            return
        problems = validate_settings(namespace["DJANGO_JOBS"], self.created)
        if problems:
            raise BlockFailed(f"{block.where}: the DJANGO_JOBS of the settings sample at line "
                              f"{block.line} of {block.page} fails the system checks:\n"
                              + "\n".join(problems))
        settings = override_settings(DJANGO_JOBS=namespace["DJANGO_JOBS"])
        settings.enable()
        self.settings.append(settings)

    def test_classes(self) -> list[type]:
        """TestCase subclasses the page defined (its own, not imported ones)."""
        modules = set(self.created)
        return [value for value in list(self.namespace.values())
                if isinstance(value, type) and issubclass(value, unittest.TestCase)
                and value.__module__ in modules]

    def urlconf(self) -> str | None:
        """The ``urls`` module a file block of the page made (``# myapp/urls.py``), if any."""
        return next((name for name in self.created if name.rpartition(".")[2] == "urls"), None)


def validate_settings(value, modules: list[str]) -> list[str]:
    """The ``django_jobs.*`` problems the system checks find with ``DJANGO_JOBS = value``.

    Worker-level checks (aliases, encryption) look at every worker alive in the process, the
    rest of the test suite's included: their messages count only when they name a worker of
    ``modules`` (the page's own)."""
    def ours(text: str) -> bool:
        return any(name.rpartition(".")[0] in modules
                   for name in re.findall(r"[A-Za-z_][\w.]*\.\w+", text))

    with override_settings(DJANGO_JOBS=value):
        found = checks.run_checks(include_deployment_checks=False)
    problems = []
    for message in found:
        if not (message.id or "").startswith("django_jobs."):
            continue
        if message.id in ("django_jobs.E010", "django_jobs.E011", "django_jobs.E013") \
                and not ours(message.msg):
            continue
        if message.id in ("django_jobs.W001", "django_jobs.W101"):
            # About the test run's own settings, not the sample: the test database's OPTIONS
            # (W001), the test settings' TASKS queues against the sample's QUEUES (W101).
            continue
        problems.append(f"  {message.id}: {message.msg}"
                        + (f" (hint: {message.hint})" if message.hint else ""))
    return problems


def run_test_classes(classes: list[type], page: Page, urlconf: str | None) -> None:
    """Run the TestCase classes a page defined (with the page's URLconf, if it has one);
    raise with every failure."""
    if not classes:
        return
    suite = unittest.TestSuite(unittest.defaultTestLoader.loadTestsFromTestCase(cls)
                               for cls in classes)
    result = unittest.TestResult()
    with override_settings(**({"ROOT_URLCONF": urlconf} if urlconf else {})):
        suite.run(result)
    broken = result.failures + result.errors
    if broken:
        raise BlockFailed(f"{page.path}: {len(broken)} of the {result.testsRun} tests its "
                          f"samples define failed:\n\n" + "\n".join(
                              f"{test.id()}:\n{text}" for test, text in broken))


def not_run_here(pages: list[Page]) -> list[str]:
    """One line per block that is not skipped but needs a module that does not import here."""
    return [f"  {b.where}: not run here: needs {', '.join(b.missing())}"
            for p in pages for b in p.python_blocks if not b.skipped and b.missing()]


def samples_summary(pages: list[Page]) -> str:
    """How many python blocks run here, are skipped (listed), and need a module missing here
    (listed apart: they run where it imports)."""
    blocks = [b for p in pages for b in p.python_blocks]
    skipped = [f"  {b.where}: {b.skip_reason}" for b in blocks if b.skipped]
    elsewhere = not_run_here(pages)
    text = (f"docs samples: {sum(b.runs_here for b in blocks)} python blocks run, "
            f"{len(skipped)} skipped, {len(elsewhere)} not run here")
    if skipped:
        text += "\nskipped:\n" + "\n".join(skipped)
    if elsewhere:
        text += "\nnot skipped, but not run here (they run where their modules import):\n" \
            + "\n".join(elsewhere)
    return text


def run_page(page: Page) -> int:
    """Run every Python block of ``page`` that is not skipped and whose ``needs`` import
    here; return how many ran."""
    runner = PageRun(page)
    ran = 0
    # What a page connects for the whole process (a leader plugin, an admin panel) is for that
    # page only: later tests must not run it.
    plugins_before = {plugin.name for plugin in connected_plugins()}
    panels_before = {panel.name for panel in registered_panels()}
    try:
        # The blocks' rows are rolled back before the page's test classes run: a test starts
        # from an empty table, as in a real project.
        with transaction.atomic():
            for block in page.python_blocks:
                if not block.runs_here:
                    continue
                runner.run(block)
                ran += 1
            transaction.set_rollback(True)
        run_test_classes(runner.test_classes(), page, runner.urlconf())
    except BlockFailed as exc:
        printed = runner.output.getvalue()
        if printed:
            raise BlockFailed(f"{exc}\n\nThe page's blocks printed:\n{printed}") from None
        raise
    finally:
        runner.cleanup()
        for plugin in connected_plugins():  # (built-in ones are rebuilt with new settings)
            if plugin.name not in plugins_before:
                plugin.disconnect()
        for panel in registered_panels():
            if panel.name not in panels_before:
                unregister_panel(panel.name)
    return ran


PAGES = pages()


class DocsSamplesTests(TransactionTestCase):
    """One test per page (added below): its Python blocks run in order.

    A ``TransactionTestCase``, so that the test classes a page defines run as they would in a
    project (a ``TestCase`` closes the connections when its class ends, which would end an
    enclosing test's transaction); the blocks themselves run in a transaction rolled back at
    the end of the page (:func:`run_page`)."""

    def test_skipped_blocks_are_few(self):
        skipped = [b for p in PAGES for b in p.python_blocks if b.skipped]
        listing = "\n".join(f"  {b.where}: {b.skip_reason}" for b in skipped)
        print(f"\n{samples_summary(PAGES)}", file=sys.stderr)
        self.assertLessEqual(len(skipped), MAX_SKIPPED,
                             f"{len(skipped)} python blocks are skipped (at most {MAX_SKIPPED}):"
                             f"\n{listing}\nMake them runnable instead.")

    def test_every_page_is_tested(self):
        names = {p.path for p in PAGES}
        self.assertIn("README.md", names)
        self.assertIn("docs/index.md", names)
        for page in PAGES:
            if page.python_blocks:
                self.assertTrue(hasattr(self, f"test_page_{page.slug}"), page.path)


class ReferenceTests(TransactionTestCase):
    """Reference pages that must follow the code, beyond their samples."""

    def test_settings_page_lists_every_key_with_its_default(self):
        from django_jobs.conf import DEFAULTS

        text = (ROOT / "docs" / "settings.md").read_text(encoding="utf-8")
        rows = dict(re.findall(r"^\| `([A-Z_]+)` \| `([^|]+)` \|", text, re.MULTILINE))
        self.assertEqual(set(rows), set(DEFAULTS), "docs/settings.md's table of keys")
        for key, shown in rows.items():
            self.assertEqual(ast.literal_eval(shown), DEFAULTS[key],
                             f"docs/settings.md shows the default of {key} as {shown}")


def _page_test(page: Page):
    def test(self):
        ran = run_page(page)
        self.assertEqual(ran, sum(b.runs_here for b in page.python_blocks))
        for line in not_run_here([page]):
            print(f"\n{line.strip()}", file=sys.stderr)

    test.__doc__ = f"The python blocks of {page.path} run."
    return test


for _page in PAGES:
    if _page.python_blocks:
        setattr(DocsSamplesTests, f"test_page_{_page.slug}", _page_test(_page))


class ExtractionTests(TransactionTestCase):
    """The runner itself: what it extracts, skips, and reports."""

    PAGE = textwrap.dedent("""\
        # A page

        ```python
        # myapp/workers.py
        from django_jobs import Worker


        class HelloWorker(Worker):
            def perform(self, job):
                return job.args["name"]
        ```

        Some text.

        ```sh
        python manage.py runjobs
        ```

        - In a list:

          ```python
          job = HelloWorker.enqueue({"name": "Ada"})
          assert job.worker == "myapp.workers.HelloWorker"
          ```

        <!-- docs-test: skip (needs a mail server) -->
        ```python
        send_real_mail()
        ```

        ```python title="illustrative"
        also_not_run()
        ```
        """)

    def page(self, text: str = PAGE) -> Page:
        return Page("docs/example.md", parse_blocks(text, "docs/example.md"))

    def test_blocks_languages_lines_and_skips(self):
        page = self.page()
        self.assertEqual([(b.language, b.line, b.skipped) for b in page.blocks],
                         [("python", 4, False), ("sh", 16, False), ("python", 22, False),
                          ("python", 28, True), ("python", 32, True)])
        self.assertEqual(page.blocks[0].file_path, "myapp/workers.py")
        self.assertTrue(page.blocks[2].code.startswith("job = HelloWorker"))
        self.assertIn("mail server", page.blocks[3].skip_reason)

    def test_a_page_runs_in_order_with_importable_workers(self):
        from django_jobs.models import Job

        # The second block asserts the job's worker path; the page's rows and modules are
        # gone after it.
        self.assertEqual(run_page(self.page()), 2)
        self.assertFalse(Job.objects.exists())
        self.assertNotIn("myapp.workers", sys.modules)

    def test_a_worker_in_the_page_namespace_has_an_importable_path(self):
        page = self.page("```python\nfrom django_jobs import Worker\n\n\nclass W(Worker):\n"
                         "    pass\n\n\nassert W.worker_path == 'docs_samples.example.W'\n"
                         "job = W.enqueue()\n```\n")
        self.assertEqual(run_page(page), 1)

    def test_a_failure_names_page_and_line(self):
        page = self.page("Text.\n\n```python\nx = 1\nundefined_name(x)\n```\n")
        with self.assertRaises(BlockFailed) as caught:
            run_page(page)
        message = str(caught.exception)
        self.assertIn("docs/example.md:4", message)
        self.assertIn("NameError", message)
        self.assertIn('example.md", line 5', message)  # the traceback points at the page

    def test_settings_samples_are_validated_by_the_checks(self):
        good = self.page('```python\nDJANGO_JOBS = {"QUEUES": {"default": 5}}\n```\n')
        self.assertEqual(run_page(good), 1)
        bad = self.page('```python\n# settings.py\nDJANGO_JOBS = {"QUEUS": {"a": 0},\n'
                        '               "PRUNER": {"max_age": -1}}\n```\n')
        with self.assertRaises(BlockFailed) as caught:
            run_page(bad)
        self.assertIn("django_jobs.E002", str(caught.exception))
        self.assertIn("django_jobs.E006", str(caught.exception))
        self.assertIn("docs/example.md:2", str(caught.exception))

    def test_test_classes_of_a_page_are_run(self):
        page = self.page("```python\nfrom django_jobs.testing import JobsTestCase\n\n\n"
                         "class T(JobsTestCase):\n    def test_it(self):\n"
                         "        self.assertEqual(1, 2)\n```\n")
        with self.assertRaises(BlockFailed) as caught:
            run_page(page)
        self.assertIn("1 of the 1 tests", str(caught.exception))

    def test_repl_sessions_are_not_python(self):
        page = self.page("```python\n>>> 1 + 1\n2\n```\n")
        with self.assertRaisesRegex(BlockFailed, "not valid Python"):
            run_page(page)

    NEEDS_PAGE = textwrap.dedent("""\
        ```python needs="json"
        import json

        assert json.loads("[1]") == [1]
        ```

        ```python needs="json, no_such_module_of_the_docs_test"
        raise AssertionError("runs only where every module it needs imports")
        ```

        ```py title="illustrative" needs='no_such_module_of_the_docs_test'
        also_not_run()
        ```

        ```python needs=json
        ran_last = True
        ```
        """)

    def test_needs_names_modules_in_the_fence(self):
        page = self.page(self.NEEDS_PAGE)
        self.assertEqual([b.needs for b in page.blocks],
                         [("json",), ("json", "no_such_module_of_the_docs_test"),
                          ("no_such_module_of_the_docs_test",), ("json",)])
        self.assertEqual([b.skipped for b in page.blocks], [False, False, True, False])
        self.assertEqual(page.blocks[1].missing(), ["no_such_module_of_the_docs_test"])
        self.assertEqual([b.runs_here for b in page.blocks], [True, False, False, True])

    def test_a_block_whose_module_is_missing_is_not_run_and_not_skipped(self):
        page = self.page(self.NEEDS_PAGE)
        # The second block would raise: it is not run, the others are.
        self.assertEqual(run_page(page), 2)
        self.assertEqual(not_run_here([page]), [
            "  docs/example.md:8: not run here: needs no_such_module_of_the_docs_test"])
        summary = samples_summary([page])
        self.assertTrue(summary.startswith(
            "docs samples: 2 python blocks run, 1 skipped, 1 not run here"), summary)
        skipped, elsewhere = summary.split("not skipped, but not run here")
        self.assertIn("docs/example.md:12: ", skipped)
        self.assertNotIn("docs/example.md:8", skipped)
        self.assertIn("docs/example.md:8: not run here: needs no_such_module", elsewhere)

    def test_a_block_whose_modules_import_runs(self):
        page = self.page('```python needs="json"\nundefined_name()\n```\n')
        with self.assertRaisesRegex(BlockFailed, "NameError"):
            run_page(page)

    def test_needs_takes_module_names(self):
        for info in ('needs=""', 'needs="django.tasks;rm"', "needs='3d'"):
            with self.subTest(info), self.assertRaisesRegex(ValueError, "needs= takes module"):
                parse_blocks(f"```python {info}\npass\n```\n", "docs/example.md")
