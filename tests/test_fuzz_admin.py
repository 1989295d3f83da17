"""Fuzzed admin requests (hypothesis), as a logged-in superuser: the job list's search syntax
and filters, the other django_jobs change lists, and the pages of jobs whose columns hold
odd values (written straight into the table, as no API would). Every response is a page
(200), a redirect (302) or a clear refusal (400) — never a server error. Examples are fixed
(see tests/fuzz.py)."""

from __future__ import annotations

from django.contrib.admin.utils import quote
from django.contrib.auth.models import User
from django.db.models import JSONField, Value
from django.urls import reverse
from hypothesis import example, given, strategies as st
from django.test import TestCase as DjangoTestCase
from hypothesis.extra.django import TestCase

from django_jobs.admin import register_panel, unregister_panel
from django_jobs.models import Job

from .admin_workers import MailWorker, ReportWorker, make_job
from .fuzz import fuzz_settings, json_values, refusals

CHANGELIST = reverse("admin:django_jobs_job_changelist")
OK = (200, 302, 400)

#: Text a browser can send: no lone surrogates (a URL's percent-encoding is UTF-8 bytes, and
#: Django decodes what is not UTF-8 as U+FFFD).
url_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=16)
url_hostile = st.sampled_from(["\x00", "-1", "99999999999999999999999", "1.5", "²", "٣", "'",
                               '"', "%", "_", "\\", "[1,", "{}", "null", "NaN", "1e999",
                               "<script>alert(1)</script>", "a b", "available", "mailers"])
url_values = st.one_of(url_text, url_hostile)

#: Search terms: the syntax (field prefixes, args/meta paths, quotes) with odd values.
TERMS = st.one_of(
    url_values,
    st.tuples(st.sampled_from(["args.", "meta.", "args.a.", "meta.x-y."]),
              st.sampled_from(["a", "n", "0", "__class__", "a__b", "-", "x.y", "ü"]),
              url_values).map(lambda t: f"{t[0]}{t[1]}:{t[2]}"),
    st.tuples(st.sampled_from(["worker", "queue", "tag", "state", "node", "id", "chunk",
                               "unknown"]), url_values).map(lambda t: f"{t[0]}:{t[1]}"),
    st.sampled_from(['"', "'", 'args.name:"Ada Lovelace"', "args.n:" + "9" * 5000,
                     "args.a:[1,2", 'meta.m:{"x":1}', "args.x:NaN", "args.x:-Infinity"]),
)
SEARCHES = st.lists(TERMS, max_size=4).map(" ".join)
#: Parameters of the job list: its filters, Django's own (order, page, all, popup), a batch,
#: and lookups it does not offer.
PARAMS = st.dictionaries(
    st.sampled_from(["state", "queue", "worker", "tag", "node", "priority", "time", "o", "p",
                     "all", "e", "batch", "chain", "id", "_popup", "_to_field",
                     "worker__regex", "args__a", "meta__has_key", "pk__in", "bogus"]),
    url_values, max_size=4)


def superuser() -> User:
    # No password: hashing one per example would cost most of the test's time.
    return User.objects.create(username="fuzz-admin", is_staff=True, is_superuser=True)


class JobListFuzzTests(TestCase):
    """Each example runs in its own transaction, rolled back after it (hypothesis' TestCase:
    setUp would run once for all examples, so each example logs in and makes its jobs)."""

    def given_jobs(self):
        self.client.force_login(superuser())
        make_job(MailWorker, {"email": "ada@example.com", "n": 5, "a": {"b": "x"}},
                 meta={"x-y": [1, 2], "m": {"x": 1}}, tags=["vip"])
        make_job(ReportWorker, {"day": "2026-01-01"}, state="discarded")

    @fuzz_settings(120)
    @given(q=SEARCHES, params=PARAMS)
    @example(q="args.x:NaN args.y:1e999", params={})
    @example(q="²", params={"priority": "²"})
    @example(q="id:² chunk:٣", params={})
    @example(q="tag:\x00", params={"state": "\x00"})
    @example(q="", params={"worker__regex": "("})
    @example(q="", params={"batch": "\x00"})
    def test_the_job_list_answers_any_search_and_filters(self, q, params):
        self.given_jobs()
        response = self.client.get(CHANGELIST, {**params, "q": q})
        self.assertIn(response.status_code, OK, (q, params))
        if "\x00" in q + "".join(params) + "".join(params.values()):
            self.assertEqual(response.status_code, 400)

    @fuzz_settings(60)
    @given(page=st.sampled_from(["batch", "cronentry", "producer", "peer"]), q=url_values,
           params=st.dictionaries(st.sampled_from(
               ["o", "p", "paused__exact", "source__exact", "queue", "queue__exact",
                "name__regex", "id__gt", "bogus"]), url_values, max_size=3))
    def test_the_other_lists_answer_any_search_and_filters(self, page, q, params):
        self.given_jobs()
        url = reverse(f"admin:django_jobs_{page}_changelist")
        self.assertIn(self.client.get(url, {**params, "q": q}).status_code, OK)

    @fuzz_settings(40)
    @given(page=st.sampled_from(["job", "batch", "cronentry", "producer", "peer"]),
           object_id=url_values)
    def test_object_pages_answer_any_id(self, page, object_id):
        self.given_jobs()
        url = reverse(f"admin:django_jobs_{page}_changelist") + f"{quote(object_id)}/change/"
        self.assertIn(self.client.get(url).status_code, (*OK, 404))


#: Meta keys the job page's panels read, each given any JSON value.
PANEL_KEYS = ["batch_id", "batch_callback", "chain_id", "cron", "cron_name", "cron_expr",
              "cron_tz", "cron_slot", "deadline_at", "deadline_force", "recorded", "return",
              "encrypted", "structured", "other"]
stored_json = json_values(8).filter(lambda value: not refusals(value))
#: A batch or chain id: what the table's 64-character columns take (build refuses others).
column_id = st.one_of(st.none(), st.text(max_size=64), st.integers(), st.booleans())
PANEL_VALUES = {**dict.fromkeys(PANEL_KEYS, stored_json), "batch_id": column_id,
                "chain_id": column_id}


def stored(value: object) -> object:
    """``value`` for a JSON column that may not be NULL: JSON's null for None."""
    return Value(None, JSONField()) if value is None else value


class OddRowPageTests(TestCase):
    @fuzz_settings(100)
    @given(meta=st.one_of(st.fixed_dictionaries({}, optional=PANEL_VALUES), stored_json),
           args=stored_json, tags=stored_json, errors=stored_json,
           attempted_by=st.one_of(st.none(), stored_json),
           state=st.sampled_from(["available", "executing", "retryable", "completed",
                                  "discarded", "cancelled", "scheduled", "suspended"]))
    @example(meta={"batch_id": {"not": "a string"}}, args={}, tags=[], errors=[],
             attempted_by=None, state="available")
    @example(meta={"batch_id": "a&b=c#d"}, args={}, tags=[], errors=[], attempted_by=None,
             state="available")
    @example(meta={"cron": True, "cron_name": "x&y"}, args=[], tags={}, errors="oops",
             attempted_by=["node", "p", "not a leader id"], state="executing")
    def test_a_job_page_renders_whatever_its_row_holds(self, meta, args, tags, errors,
                                                       attempted_by, state):
        self.client.force_login(superuser())
        job = make_job(MailWorker, {"email": "x@example.com"})
        Job.objects.filter(pk=job.pk).update(
            meta=stored(meta), args=stored(args), tags=stored(tags), errors=stored(errors),
            attempted_by=attempted_by, state=state)
        page = reverse("admin:django_jobs_job_change", args=[job.pk])
        self.assertEqual(self.client.get(page).status_code, 200)
        self.assertEqual(self.client.get(CHANGELIST).status_code, 200)


class BrokenPanelTests(DjangoTestCase):
    def test_a_panel_that_raises_or_lacks_its_template_shows_its_error(self):
        def raising(request, job):
            raise RuntimeError("panel bug")

        register_panel("raising", title="Raising", template="admin/django_jobs/panels/json.html",
                       context=raising)
        register_panel("missing", title="Missing", template="myapp/no_such_panel.html")
        self.addCleanup(unregister_panel, "raising")
        self.addCleanup(unregister_panel, "missing")
        self.client.force_login(superuser())
        job = make_job(MailWorker, {"email": "x@example.com"})
        with self.assertLogs("django_jobs.admin", "ERROR"):
            response = self.client.get(reverse("admin:django_jobs_job_change", args=[job.pk]))
        self.assertEqual(response.status_code, 200)
        self.assertContains(response, "This panel could not be shown: RuntimeError: panel bug")
        self.assertContains(response, "This panel could not be shown: TemplateDoesNotExist")
        self.assertContains(response, "x@example.com")  # the other panels are there
