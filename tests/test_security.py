"""The security pass: admin permissions and CSRF on every action, escaping on every page,
encrypted args never in clear outside the worker, no pickle where data is read back, SQL only
with parameters. What django_jobs promises here is in SECURITY.md."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

from django.contrib.auth.models import User
from django.db import connection
from django.test import Client, TestCase, TransactionTestCase
from django.urls import reverse

import django_jobs
from django_jobs.models import Batch, CronEntry, Job, JobState, Producer
from django_jobs.testing import drain_queue

from .admin_workers import MailWorker, make_job, make_producer, staff_user
from .pro_workers import QUEUE as PRO_QUEUE, RecordedWorker, SealedWorker
from .processes import REPO, RunjobsMixin, run_django
from .waits import wait_until

PACKAGE = REPO / "django_jobs"
CHANGELIST = reverse("admin:django_jobs_job_changelist")
QUEUES = reverse("admin:django_jobs_job_queues")
DASHBOARD = reverse("admin:django_jobs_job_dashboard")
BATCHES = reverse("admin:django_jobs_batch_changelist")
CRON = reverse("admin:django_jobs_cronentry_changelist")
XSS = "<script>alert(1)</script>"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"


def job_page(job) -> str:
    return reverse("admin:django_jobs_job_change", args=[job.pk])


def act(job, name: str) -> str:
    return reverse("admin:django_jobs_job_act", args=[job.pk, name])


def snapshot(job) -> tuple:
    """What an action would change: the job's state, attempt, times and existence."""
    row = Job.objects.filter(pk=job.pk).values_list(
        "state", "attempt", "scheduled_at", "cancelled_at", "discarded_at").first()
    return row


class PermissionTests(TestCase):
    def setUp(self):
        self.failed = make_job(MailWorker, {"email": "perm@example.com"}, state="discarded")
        self.waiting = make_job(MailWorker, {"email": "later@example.com"}, state="scheduled")
        self.producer = make_producer("mailers", "node-a", limit=5)
        self.batch = Batch.objects.create(id="batch-1", members=1)
        self.entry = CronEntry.objects.create(name="nightly", expression="0 3 * * *",
                                              worker="tests.admin_workers.ReportWorker")

    def pages(self) -> list[str]:
        return [CHANGELIST, job_page(self.failed), QUEUES, DASHBOARD, BATCHES,
                reverse("admin:django_jobs_batch_change", args=[self.batch.pk]), CRON,
                reverse("admin:django_jobs_cronentry_change", args=[self.entry.pk]),
                reverse("admin:django_jobs_producer_changelist"),
                reverse("admin:django_jobs_peer_changelist")]

    def test_staff_without_job_permissions_sees_nothing(self):
        client = Client()
        client.force_login(staff_user("nobody"))
        for url in self.pages():
            with self.subTest(url=url):
                response = client.get(url)
                self.assertIn(response.status_code, (302, 403), url)
                self.assertNotIn("perm@example.com", response.content.decode())
        index = client.get(reverse("admin:index")).content.decode()
        self.assertNotIn("django_jobs", index)  # not even the app's name on the index

    def test_anonymous_users_are_sent_to_log_in(self):
        for url in self.pages():
            with self.subTest(url=url):
                response = Client().get(url)
                self.assertEqual(response.status_code, 302)
                self.assertIn(reverse("admin:login"), response["Location"])

    def test_a_view_only_user_sees_but_cannot_act(self):
        client = Client()
        client.force_login(staff_user("viewer", "view_job", "view_batch", "view_cronentry",
                                      "view_producer"))
        for url in self.pages()[:8]:
            with self.subTest(url=url):
                self.assertEqual(client.get(url).status_code, 200)
        page = client.get(job_page(self.failed)).content.decode()
        for name in ("retry", "cancel", "run", "delete"):
            self.assertNotIn(act(self.failed, name), page)
        before = {job.pk: snapshot(job) for job in (self.failed, self.waiting)}
        for job in (self.failed, self.waiting):
            for name in ("retry", "cancel", "run", "delete"):
                with self.subTest(job=job.state, action=name):
                    self.assertEqual(client.post(act(job, name)).status_code, 403)
        for action in ("retry_jobs", "cancel_jobs", "run_jobs_now", "delete_jobs",
                       "delete_selected"):
            with self.subTest(action=action):
                client.post(CHANGELIST, {"action": action, "_selected_action": [
                    self.failed.pk, self.waiting.pk], "post": "yes"})
        delete = reverse("admin:django_jobs_job_delete", args=[self.failed.pk])
        self.assertEqual(client.post(delete, {"post": "yes"}).status_code, 403)
        self.assertEqual({job.pk: snapshot(job) for job in (self.failed, self.waiting)},
                         before)
        for form in ({"queue": "mailers", "action": "pause"},
                     {"queue": "mailers", "action": "resume"},
                     {"queue": "mailers", "action": "scale", "limit": "50"}):
            with self.subTest(form=form):
                self.assertEqual(client.post(QUEUES, form).status_code, 403)
        self.producer.refresh_from_db()
        self.assertEqual((self.producer.paused, self.producer.limit), (False, 5))
        client.post(CRON, {"action": "pause_entries", "_selected_action": [self.entry.pk]})
        change = reverse("admin:django_jobs_cronentry_change", args=[self.entry.pk])
        self.assertEqual(client.post(change, {"paused": "on"}).status_code, 403)
        self.entry.refresh_from_db()
        self.assertFalse(self.entry.paused)

    def test_each_action_needs_its_own_permission(self):
        client = Client()
        client.force_login(staff_user("retrier", "view_job", "retry_job"))
        self.assertEqual(client.post(act(self.waiting, "cancel")).status_code, 403)
        self.assertEqual(client.post(act(self.waiting, "run")).status_code, 403)
        self.assertEqual(client.post(act(self.failed, "delete")).status_code, 403)
        self.assertEqual(Job.objects.get(pk=self.waiting.pk).state, JobState.SCHEDULED)
        self.assertEqual(client.post(act(self.failed, "retry")).status_code, 302)
        self.assertEqual(Job.objects.get(pk=self.failed.pk).state, JobState.AVAILABLE)


class CsrfTests(TestCase):
    """Every POST of the admin, without its CSRF token, from a superuser: refused (403),
    nothing changed."""

    def setUp(self):
        self.client = Client(enforce_csrf_checks=True)
        self.client.force_login(User.objects.create_superuser("root", "r@example.com", "pw"))
        self.failed = make_job(MailWorker, {"email": "x@example.com"}, state="discarded")
        self.waiting = make_job(MailWorker, {"email": "y@example.com"}, state="scheduled")
        self.producer = make_producer("mailers", "node-a", limit=5)
        self.entry = CronEntry.objects.create(name="nightly", expression="0 3 * * *",
                                              worker="tests.admin_workers.ReportWorker")

    def test_no_post_without_the_token(self):
        before = {job.pk: snapshot(job) for job in (self.failed, self.waiting)}
        posts = [(act(job, name), {}) for job in (self.failed, self.waiting)
                 for name in ("retry", "cancel", "run", "delete")]
        posts += [(CHANGELIST, {"action": action, "_selected_action": [self.failed.pk,
                                                                       self.waiting.pk]})
                  for action in ("retry_jobs", "cancel_jobs", "run_jobs_now", "delete_jobs")]
        posts += [(reverse("admin:django_jobs_job_delete", args=[self.failed.pk]),
                   {"post": "yes"})]
        posts += [(QUEUES, {"queue": "mailers", "action": action, "limit": "50"})
                  for action in ("pause", "resume", "scale")]
        posts += [(CRON, {"action": "pause_entries", "_selected_action": [self.entry.pk]}),
                  (reverse("admin:django_jobs_cronentry_change", args=[self.entry.pk]),
                   {"name": "renamed", "expression": "* * * * *", "timezone": "UTC",
                    "worker": "tests.admin_workers.ReportWorker", "args": "{}",
                    "options": "{}", "catch_up": "0", "paused": "on"}),
                  (reverse("admin:django_jobs_cronentry_delete", args=[self.entry.pk]),
                   {"post": "yes"})]
        for url, data in posts:
            with self.subTest(url=url, data=data):
                response = self.client.post(url, data)
                self.assertEqual(response.status_code, 403)
                self.assertIn(b"CSRF", response.content)
        self.assertEqual({job.pk: snapshot(job) for job in (self.failed, self.waiting)},
                         before)
        self.producer.refresh_from_db()
        self.assertEqual((self.producer.paused, self.producer.limit), (False, 5))
        self.entry.refresh_from_db()
        self.assertEqual((self.entry.name, self.entry.paused), ("nightly", False))

    def test_with_the_token_the_same_post_works(self):
        page = self.client.get(job_page(self.failed)).content.decode()
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)[1]
        response = self.client.post(act(self.failed, "retry"), {"csrfmiddlewaretoken": token})
        self.assertEqual(response.status_code, 302)
        self.assertEqual(Job.objects.get(pk=self.failed.pk).state, JobState.AVAILABLE)


class EscapingTests(TestCase):
    """A job whose every field holds a script tag: each page shows it as text."""

    def setUp(self):
        self.client.force_login(User.objects.create_superuser("root", "r@example.com", "pw"))

    def assertEscaped(self, url: str) -> str:
        response = self.client.get(url)
        self.assertEqual(response.status_code, 200, url)
        html = response.content.decode()
        self.assertNotIn(XSS, html, url)
        self.assertNotIn("<script>alert", html, url)
        return html

    def test_args_meta_errors_tags_worker_queue_and_result_show_as_text(self):
        job = make_job(MailWorker, {"email": XSS, XSS: [XSS]}, state="discarded",
                       meta={"note": XSS, "batch_id": XSS, "cron": True, "cron_name": XSS,
                             "deadline_at": XSS},
                       tags=[XSS], errors=[{"at": XSS, "attempt": 1, "error": XSS}],
                       attempted_by=[XSS, XSS])
        Job.objects.filter(pk=job.pk).update(worker=f"tests.{XSS}.Worker", queue=XSS)
        Batch.objects.update_or_create(id=XSS, defaults=dict(
            callback_worker=XSS, callback_queue=XSS, callback_args={"x": XSS},
            callback_meta={"y": XSS}, members=1))
        recorded = RecordedWorker.enqueue({"value": XSS})
        self.assertEqual(drain_queue(PRO_QUEUE)["completed"], 1)
        list_html = self.assertEscaped(CHANGELIST)
        self.assertIn(ESCAPED, list_html)
        for url in (f"{CHANGELIST}?q=args.email:{XSS}", f"{CHANGELIST}?queue={XSS}",
                    f"{CHANGELIST}?tag={XSS}"):
            self.assertIn(ESCAPED, self.assertEscaped(url))
        page = self.assertEscaped(job_page(job))
        # worker, queue, args, meta, tags, errors, node, batch and cron panels
        self.assertGreaterEqual(page.count(ESCAPED), 8, page)
        result = self.assertEscaped(job_page(recorded))
        self.assertIn("alert(1)", result)  # the recorded result is shown, escaped
        self.assertIn(ESCAPED, self.assertEscaped(BATCHES))
        self.assertIn(ESCAPED, self.assertEscaped(
            reverse("admin:django_jobs_batch_change", args=[XSS])))
        self.assertIn(ESCAPED, self.assertEscaped(DASHBOARD))
        self.assertIn(ESCAPED, self.assertEscaped(QUEUES))

    def test_cron_entries_show_as_text(self):
        CronEntry.objects.create(name=XSS, expression="0 3 * * *", worker=XSS,
                                 args={"x": XSS})
        self.assertIn(ESCAPED, self.assertEscaped(CRON))
        entry = CronEntry.objects.get(name=XSS)
        self.assertIn(ESCAPED, self.assertEscaped(
            reverse("admin:django_jobs_cronentry_change", args=[entry.pk])))


#: The secret every encrypted job below is given; no output may hold it.
MARKER = "s3cr3t-MARKER-7f1c"


class EncryptedArgsTests(RunjobsMixin, TransactionTestCase):
    """Encrypted args are plaintext only inside ``perform``: not in the row, the admin, the
    ``jobs`` command's output, or the log of a node (at DEBUG) that runs, fails and retries
    them."""

    def test_the_secret_never_leaves_the_worker(self):
        ok = SealedWorker.enqueue({"secret": MARKER})
        failing = SealedWorker.enqueue({"secret": MARKER, "fail": True},
                                       meta={"ref": "plain meta is plain"})
        with connection.cursor() as cursor:
            cursor.execute("SELECT args, meta, errors FROM django_jobs_job")
            stored = repr(cursor.fetchall())
        self.assertNotIn(MARKER, stored)
        node = self.start_runjobs("sealed", "--queue", f"{PRO_QUEUE}=2", "-v", "3")
        wait_until(lambda: Job.objects.get(pk=ok.pk).state == JobState.COMPLETED and
                   Job.objects.get(pk=failing.pk).state == JobState.RETRYABLE, 60,
                   what="the sealed jobs to run", describe=lambda: self.runjobs_report(""))
        self.stop_runjobs(node, within=30)
        log = node.log()
        self.assertIn("failing on purpose", log + json.dumps(
            Job.objects.get(pk=failing.pk).errors))  # the node did run and fail it
        self.assertNotIn(MARKER, log)
        with connection.cursor() as cursor:
            cursor.execute("SELECT * FROM django_jobs_job")
            self.assertNotIn(MARKER, repr(cursor.fetchall()))

        admin = Client()
        admin.force_login(User.objects.create_superuser("root", "r@example.com", "pw"))
        for url in (CHANGELIST, job_page(ok), job_page(failing), QUEUES, DASHBOARD):
            with self.subTest(url=url):
                response = admin.get(url)
                self.assertEqual(response.status_code, 200)
                self.assertNotIn(MARKER, response.content.decode())
        # Sealed args cannot be searched (the search box shows only what was typed).
        for q in (MARKER, f"args.secret:{MARKER}"):
            response = admin.get(CHANGELIST, {"q": q})
            self.assertEqual(list(response.context["cl"].result_list), [])

        outputs = [run_django("jobs", *command, timeout=60) for command in (
            ["stats"], ["batches"], ["chains"], ["cron", "list"],
            ["reencrypt"], ["retry", str(failing.pk)])]
        for result in outputs:
            with self.subTest(command=result.args):
                self.assertEqual(result.returncode, 0, result.stderr)
                self.assertNotIn(MARKER, result.stdout + result.stderr)


# -- the source: no pickle, parameterised SQL ---------------------------------------------------

def package_sources() -> list[tuple[Path, str, ast.Module]]:
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) > 50, files  # the scan reads the package, not an empty folder
    return [(path, path.read_text(), ast.parse(path.read_text())) for path in files]


#: Modules that deserialise into arbitrary objects (or run code) and must not be imported.
UNSAFE_MODULES = {"pickle", "cPickle", "_pickle", "marshal", "shelve", "dill", "cloudpickle",
                  "jsonpickle", "joblib"}


def deserialisers(name: str, tree: ast.Module) -> list[str]:
    """Imports of UNSAFE_MODULES, ``pickle/marshal/yaml/shelve .load(s)`` calls and
    ``eval``/``exec`` in one module's tree."""
    found = []
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and \
                node.func.id == "__import__" and node.args and \
                isinstance(node.args[0], ast.Constant):
            names = [node.args[0].value]
        found += [f"{name}:{node.lineno} imports {module}" for module in names
                  if module.split(".")[0] in UNSAFE_MODULES]
        if isinstance(node, ast.Attribute) and node.attr in ("loads", "load") and \
                isinstance(node.value, ast.Name) and node.value.id in (
                    "pickle", "marshal", "yaml", "shelve"):
            found.append(f"{name}:{node.lineno} calls {node.value.id}.{node.attr}")
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and \
                node.func.id in ("eval", "exec"):
            found.append(f"{name}:{node.lineno} calls {node.func.id}")
    return found


class NoPickleTests(TestCase):
    def test_the_package_imports_no_deserialiser_of_objects(self):
        found = [hit for path, _, tree in package_sources()
                 for hit in deserialisers(str(path.relative_to(REPO)), tree)]
        self.assertEqual(found, [])

    def test_the_scan_finds_what_it_looks_for(self):
        tree = ast.parse("import pickle\nfrom marshal import loads\nimport yaml\n"
                         "yaml.load(x)\n__import__('dill')\neval('1')\n")
        self.assertEqual(sorted(deserialisers("m", tree)), [
            "m:1 imports pickle", "m:2 imports marshal", "m:4 calls yaml.load",
            "m:5 imports dill", "m:6 calls eval"])


#: Text that makes a string SQL.
SQL_WORDS = re.compile(r"\b(SELECT|INSERT INTO|UPDATE|DELETE FROM|WHERE|LISTEN|NOTIFY|COPY|"
                       r"RETURNING|VALUES)\b")

#: Every value interpolated into SQL text in the package (f-string, %, format, replace), by
#: file, with why it is safe: each is read and verified to be a constant, placeholders, or an
#: identifier from the code (a model's columns, a quoted name), never a value from a job, a
#: request or settings. A new interpolation fails the test until it is checked and listed.
SAFE_INTERPOLATIONS = {
    "django_jobs/engines/base.py": {
        "', '.join([row] * len(part))": "one '(%s, ...)' placeholder group per row",
        "columns": "quote_name() of Job's concrete columns",
        "table": "quote_name() of Job's db_table",
        "tail": "one of two constant clauses",
        "sql": "the ORM compiler's own statement (its values are in params)",
        "quote('id')": "quote_name of a constant column",
        "quote('queue')": "quote_name of a constant column",
    },
    "django_jobs/engines/postgresql.py": {
        "self._columns_sql": "Job's concrete column names, quoted",
        "self.channel": "the constant NOTIFY channel name",
        'unique_key_sql("job.")': "a constant SQL expression over Job's columns",
        "unique_key_sql('job.')": "the same",
        "', '.join(arrays)": "unnest(%s::type[]) placeholders, types from a constant map",
        "', '.join(names)": "Job field names (checked against Job's fields)",
        "', '.join(sets)": "column = placeholder or v.column, names from Job's fields",
        "arrays": "unnest(%s::type[]) placeholders",
        "values": "%s placeholders",
    },
    "django_jobs/engines/sqlite.py": {
        "unique_key_sql()": "a constant SQL expression over Job's columns"},
    "django_jobs/models/batch.py": {
        "', '.join(['%s'] * len(ids))": "%s placeholders",
        "_APPLY_SETS": "constant SET list over the batch counter columns",
        "_COLUMNS": "constant column list",
        "rows": "(%s, ...) placeholder groups",
    },
    "django_jobs/pro/chain_queries.py": {"placeholders": "%s placeholders"},
    "django_jobs/contract/services.py": {
        "', '.join(columns)": "Job's concrete column names (the engine contract suite)"},
    "django_jobs/contract/support.py": {
        "test.engine.vendor": "a skip message that names LISTEN/NOTIFY, not SQL"},
    "django_jobs/contract/watching.py": {
        "channel": "the runtime's constant channel names (the engine contract suite)"},
    "django_jobs/plugins/pruner.py": {
        "states": "FINISHED_STATES, constants of the code, quoted (asserted alphabetic)"},
    "django_jobs/runtime/notifier.py": {"CONTROL_CHANNEL": "a constant channel name",
                                        "INSERT_CHANNEL": "a constant channel name"},
}
#: Statements executed from a variable, not a literal, by file: what the variable holds.
SAFE_STATEMENT_VARIABLES = {
    "django_jobs/engines/base.py": {"sql": "built in the same function from the parts above, "
                                           "or a constant (the lease upsert)"},
    "django_jobs/engines/postgresql.py": {
        "sql": "fetch_statement / update_each: constants, placeholders and field names",
        "self._insert_unique_sql": "a constant INSERT over Job's columns",
        "self._insert_one_sql": "a constant INSERT over Job's columns",
    },
    "django_jobs/plugins/pruner.py": {
        "sql": "the ORM compiler's statement (values in params), on SQLite with INDEXED BY the "
               "constant name of the prune index"},
}


def _segment(source: str, node: ast.AST) -> str:
    return ast.get_source_segment(source, node) or ast.dump(node)


def sql_interpolations() -> tuple[dict[str, set[str]], dict[str, set[str]], list[str]]:
    """(interpolated expressions in SQL text, statement variables, unsafe constructions) by
    file."""
    interpolated: dict[str, set[str]] = {}
    variables: dict[str, set[str]] = {}
    unsafe: list[str] = []
    for path, source, tree in package_sources():
        name = str(path.relative_to(REPO))
        for node in ast.walk(tree):
            if isinstance(node, ast.JoinedStr):
                text = "".join(v.value for v in node.values if isinstance(v, ast.Constant))
                if SQL_WORDS.search(text):
                    interpolated.setdefault(name, set()).update(
                        _segment(source, v.value) for v in node.values
                        if isinstance(v, ast.FormattedValue))
            elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod) and \
                    isinstance(node.left, ast.Constant) and isinstance(node.left.value, str) \
                    and SQL_WORDS.search(node.left.value):
                unsafe.append(f"{name}:{node.lineno} formats SQL with %")
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                target = node.func.value
                is_sql_text = isinstance(target, ast.Constant) and isinstance(
                    target.value, str) and SQL_WORDS.search(target.value)
                if node.func.attr == "format" and is_sql_text:
                    unsafe.append(f"{name}:{node.lineno} formats SQL with str.format")
                if node.func.attr == "replace" and is_sql_text:
                    # "...{only}...".replace("{only}", X): X is interpolated
                    interpolated.setdefault(name, set()).add(_segment(source, node.args[1]))
                statement = node.func.attr in ("execute", "executemany") or (
                    node.func.attr == "copy" and isinstance(target, ast.Name)
                    and target.id == "cursor")  # COPY ... FROM STDIN; not copy.copy()
                if statement and node.args and \
                        not isinstance(node.args[0], (ast.Constant, ast.JoinedStr)):
                    variables.setdefault(name, set()).add(_segment(source, node.args[0]))
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and \
                    node.func.id == "RawSQL" and node.args:
                sql = node.args[0]
                if isinstance(sql, ast.JoinedStr):
                    interpolated.setdefault(name, set()).update(
                        _segment(source, v.value) for v in sql.values
                        if isinstance(v, ast.FormattedValue))
                elif not isinstance(sql, ast.Constant):
                    unsafe.append(f"{name}:{node.lineno} builds RawSQL from a variable")
    return interpolated, variables, unsafe


class ParameterisedSqlTests(TestCase):
    def test_sql_text_interpolates_only_verified_identifiers_and_placeholders(self):
        interpolated, variables, unsafe = sql_interpolations()
        self.assertEqual(unsafe, [])
        unlisted = {name: sorted(found - set(SAFE_INTERPOLATIONS.get(name, {})))
                    for name, found in interpolated.items()}
        self.assertEqual({k: v for k, v in unlisted.items() if v}, {},
                         "SQL built from values not verified safe: check each (no value from "
                         "a job, a request or settings may reach SQL text) and list it")
        unlisted = {name: sorted(found - set(SAFE_STATEMENT_VARIABLES.get(name, {})))
                    for name, found in variables.items()}
        self.assertEqual({k: v for k, v in unlisted.items() if v}, {})

    def test_the_safe_lists_name_only_what_is_there(self):
        # A stale entry would let a future, unchecked interpolation of that name through.
        interpolated, variables, _ = sql_interpolations()
        for listed, found in ((SAFE_INTERPOLATIONS, interpolated),
                              (SAFE_STATEMENT_VARIABLES, variables)):
            for name, entries in listed.items():
                self.assertEqual(sorted(set(entries) - found.get(name, set())), [], name)

    def test_the_scan_flags_a_value_formatted_into_sql(self):
        source = ('def f(cursor, queue):\n'
                  '    cursor.execute(f"SELECT id FROM t WHERE queue = \'{queue}\'")\n'
                  '    cursor.execute("DELETE FROM t WHERE id = %s" % queue)\n')
        tree = ast.parse(source)
        joined = [n for n in ast.walk(tree) if isinstance(n, ast.JoinedStr)]
        mod = [n for n in ast.walk(tree) if isinstance(n, ast.BinOp)]
        self.assertEqual([_segment(source, v.value) for v in joined[0].values
                          if isinstance(v, ast.FormattedValue)], ["queue"])
        self.assertTrue(SQL_WORDS.search(mod[0].left.value))


class InsertedValuesAreDataTests(TestCase):
    def test_sql_in_args_queue_and_search_is_data(self):
        hostile = "x'); DELETE FROM django_jobs_job; --"
        job = django_jobs.insert(MailWorker.new({"email": hostile}, queue=hostile,
                                                tags=[hostile], meta={hostile: hostile}))
        row = Job.objects.get(pk=job.pk)
        self.assertEqual((row.args["email"], row.queue, row.tags), (hostile, hostile,
                                                                    [hostile]))
        client = Client()
        client.force_login(User.objects.create_superuser("root", "r@example.com", "pw"))
        for q in (hostile, f"args.email:{hostile}", f'queue:"{hostile}"', f"tag:{hostile}"):
            self.assertEqual(client.get(CHANGELIST, {"q": q}).status_code, 200)
        self.assertEqual(client.post(QUEUES, {"queue": hostile, "action": "pause"})
                         .status_code, 302)
        self.assertEqual(Job.objects.count(), 1)
        self.assertEqual(Producer.objects.count(), 0)
