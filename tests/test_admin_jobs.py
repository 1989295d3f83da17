"""The job browser: columns, filters, search, sorting, query counts, counts on big tables,
the detail page and its panels, and the job actions with their permissions."""

import datetime
import re
import unittest

from django.contrib.auth.models import User
from django.db import connection
from django.test import Client, TestCase
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from django_jobs.admin import panels
from django_jobs.admin.paginator import EstimatedCountPaginator, planner_estimate
from django_jobs.admin.search import search_q
from django_jobs.models import Job

from .admin_workers import MailWorker, ReportWorker, TextWorker, make_job, staff_user

CHANGELIST = reverse("admin:django_jobs_job_changelist")


def change_url(job):
    return reverse("admin:django_jobs_job_change", args=[job.pk])


def act_url(job, name):
    return reverse("admin:django_jobs_job_act", args=[job.pk, name])


def listed_ids(response) -> list[int]:
    return [int(pk) for pk in re.findall(r'name="_selected_action" value="(\d+)"',
                                         response.content.decode())]


class AdminTestCase(TestCase):
    def setUp(self):
        self.admin = User.objects.create_superuser("admin", "a@example.com", "pw")
        self.client.force_login(self.admin)


class ChangeListTests(AdminTestCase):
    def test_columns(self):
        job = make_job(MailWorker, {"email": "ada@example.com"}, state="discarded")
        response = self.client.get(CHANGELIST)
        self.assertEqual(response.status_code, 200)
        row = re.search(rf'<tr>.*?value="{job.pk}".*?</tr>', response.content.decode(), re.S)
        html = row.group(0)
        self.assertIn('title="tests.admin_workers.MailWorker">MailWorker<', html)
        self.assertIn("mailers", html)
        self.assertIn('class="jobs-badge jobs-state-discarded">Discarded<', html)
        self.assertIn("1/20", html)
        self.assertIn("discarded", html)  # the time column names the state's own time
        self.assertIn("ago", html)
        self.assertIn("{&quot;email&quot;: &quot;ada@example.com&quot;}", html)
        # The queue / dashboard links and our stylesheet are on the page.
        self.assertContains(response, reverse("admin:django_jobs_job_queues"))
        self.assertContains(response, reverse("admin:django_jobs_job_dashboard"))
        self.assertContains(response, "django_jobs/admin.css")

    def test_time_column_follows_the_state(self):
        scheduled = make_job(state="scheduled")
        executing = make_job(state="executing")
        response = self.client.get(CHANGELIST).content.decode()
        self.assertRegex(response, rf'value="{scheduled.pk}".*?scheduled in ', )
        self.assertRegex(response, re.compile(rf'value="{executing.pk}".*?attempted \d', re.S))

    def test_filters(self):
        mail = make_job(MailWorker, {"email": "x"}, state="completed", tags=["vip"])
        report = make_job(ReportWorker, {"day": 1}, state="discarded", priority=5)
        old = make_job(ReportWorker, {"day": 2},
                       inserted_at=timezone.now() - datetime.timedelta(days=8))
        cases = {
            "state=completed": [mail.pk],
            "queue=mailers": [mail.pk],
            "worker=tests.admin_workers.ReportWorker": [old.pk, report.pk],
            "tag=vip": [mail.pk],
            "tag=reports": [old.pk, report.pk],
            "node=node-b": [report.pk],
            "priority=5": [report.pk],
            "time=old": [old.pk],
            "time=1h": [report.pk, mail.pk],
        }
        for query, expected in cases.items():
            with self.subTest(query):
                response = self.client.get(f"{CHANGELIST}?{query}")
                self.assertEqual(response.status_code, 200)
                self.assertEqual(listed_ids(response), expected)
        # The filter sidebar offers the values seen on recent jobs and producers.
        page = self.client.get(CHANGELIST).content.decode()
        for choice in ("?tag=vip", "?node=node-b", "?queue=mailers",
                       "?worker=tests.admin_workers.MailWorker", "?state=suspended"):
            self.assertIn(choice, page)

    def test_search(self):
        ada = make_job(MailWorker, {"email": "ada@example.com", "user": {"id": 7}},
                       meta={"source": "signup"})
        bob = make_job(MailWorker, {"email": "bob@example.com", "user": {"id": "8"}},
                       tags=["vip"])
        report = make_job(ReportWorker, {"day": "2026-01-31"}, state="completed")
        cases = {
            "args.email:ada@example.com": [ada.pk],
            "args.user.id:7": [ada.pk],
            "args.user.id:8": [bob.pk],   # the string "8" matches too
            "meta.source:signup": [ada.pk],
            "worker:Report": [report.pk],
            "queue:mailers": [bob.pk, ada.pk],
            "tag:vip": [bob.pk],
            "state:completed": [report.pk],
            "node:node-a": [report.pk],
            str(bob.pk): [bob.pk],
            "mailworker": [bob.pk, ada.pk],
            "queue:mailers tag:vip": [bob.pk],
            'args.day:"2026-01-31"': [report.pk],
            "args.email:nobody": [],
        }
        for term, expected in cases.items():
            with self.subTest(term):
                response = self.client.get(CHANGELIST, {"q": term})
                self.assertEqual(response.status_code, 200)
                self.assertEqual(listed_ids(response), expected)
                self.assertEqual(list(Job.objects.filter(search_q(term))
                                      .values_list("pk", flat=True)), expected)

    def test_bad_search_term_is_reported(self):
        make_job()
        response = self.client.get(CHANGELIST, {"q": "id:abc"}, follow=True)
        self.assertEqual(listed_ids(response), [])
        self.assertContains(response, "Search term id: needs a number, not &#x27;abc&#x27;")

    def test_sorting(self):
        a = make_job(MailWorker, state="completed", attempt=2, max_attempts=5)
        b = make_job(ReportWorker, state="discarded")
        c = make_job(MailWorker, state="scheduled")
        columns = ["action_checkbox", "id", "worker_name", "queue", "state_badge", "attempts",
                   "priority", "relevant_time", "args_preview"]

        def order(field, descending=False):
            index = columns.index(field)
            return listed_ids(self.client.get(CHANGELIST,
                                              {"o": f"{'-' if descending else ''}{index}"}))

        self.assertEqual(order("attempts", descending=True)[0], a.pk)
        self.assertEqual(order("queue"), [b.pk, c.pk, a.pk])  # default < mailers, then -id
        self.assertEqual(order("worker_name")[0], c.pk)       # ...MailWorker < ...ReportWorker
        self.assertEqual(order("relevant_time", descending=True)[0], c.pk)  # in an hour

    def test_constant_queries_per_page(self):
        def queries():
            self.client.get(CHANGELIST)  # warm the session and content types
            with CaptureQueriesContext(connection) as captured:
                response = self.client.get(CHANGELIST, {"q": "queue:mailers"})
            self.assertEqual(response.status_code, 200)
            return len(captured)

        for i in range(3):
            make_job(MailWorker, {"n": i}, state="completed", tags=[f"t{i}"])
        few = queries()
        for i in range(40):
            make_job(MailWorker, {"n": i}, state=["completed", "discarded"][i % 2],
                     tags=[f"t{i}"])
        self.assertEqual(queries(), few)
        # session, user, filter sample, producers, count, rows: nothing per row.
        with self.assertNumQueries(few):
            self.client.get(CHANGELIST, {"q": "queue:mailers"})
        self.assertLessEqual(few, 8)


class PaginatorTests(TestCase):
    def test_exact_below_the_threshold(self):
        for i in range(5):
            make_job(args={"n": i})
        paginator = EstimatedCountPaginator(Job.objects.all(), 2)
        self.assertEqual(paginator.count, 5)
        self.assertFalse(paginator.estimated)
        self.assertEqual(paginator.num_pages, 3)

    def test_sqlite_has_no_estimate(self):
        if connection.vendor != "sqlite":
            self.skipTest("SQLite only")
        self.assertIsNone(planner_estimate(Job.objects.all()))

    def test_postgresql_estimates_past_the_threshold(self):
        if connection.vendor != "postgresql":
            self.skipTest("PostgreSQL's planner gives the estimate")
        for i in range(300):
            make_job(args={"n": i})
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE django_jobs_job")
        estimate = planner_estimate(Job.objects.all())
        self.assertGreater(estimate, 150)
        self.assertLess(estimate, 600)
        paginator = EstimatedCountPaginator(Job.objects.all(), 50)
        paginator.threshold = 100
        with CaptureQueriesContext(connection) as captured:
            count = paginator.count
        self.assertEqual(count, estimate)
        self.assertTrue(paginator.estimated)
        self.assertFalse(any("COUNT(" in q["sql"].upper() for q in captured))
        # A selective filter stays exact: the planner expects few rows.
        few = EstimatedCountPaginator(Job.objects.filter(args__n=3), 50)
        few.threshold = 100
        self.assertEqual(few.count, 1)
        self.assertFalse(few.estimated)

    def test_changelist_says_when_the_count_is_estimated(self):
        if connection.vendor != "postgresql":
            self.skipTest("PostgreSQL's planner gives the estimate")
        for i in range(120):
            make_job(args={"n": i})
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE django_jobs_job")
        self.client.force_login(User.objects.create_superuser("admin", "a@b.c", "pw"))
        original = EstimatedCountPaginator.threshold
        EstimatedCountPaginator.threshold = 10
        self.addCleanup(setattr, EstimatedCountPaginator, "threshold", original)
        response = self.client.get(CHANGELIST)
        self.assertContains(response, "an estimate from PostgreSQL")
        self.assertEqual(len(listed_ids(response)), 50)


class DetailTests(AdminTestCase):
    def test_times_to_come_read_as_times_to_come(self):
        later = timezone.now() + datetime.timedelta(minutes=10, seconds=30)
        job = make_job(MailWorker, state="retryable", scheduled_at=later)
        html = self.client.get(change_url(job)).content.decode()
        scheduled = re.search(r"<dt>Scheduled</dt><dd>(.*?)</dd>", html, re.S)[1]
        self.assertIn("(in 10\xa0minutes)", scheduled)
        inserted = re.search(r"<dt>Inserted</dt><dd>(.*?)</dd>", html, re.S)[1]
        self.assertIn("\xa0minutes ago)", inserted)

    def test_everything_about_a_failed_job(self):
        job = make_job(MailWorker, {"email": "ada@example.com"}, state="retryable",
                       meta={"trace": "abc"}, tags=["vip"])
        Job.objects.filter(pk=job.pk).update(errors=[
            {"at": "2026-01-01T10:00:00+00:00", "attempt": 1, "error": "first <failure>"},
            {"at": "2026-01-01T10:05:00+00:00", "attempt": 2, "error": "Traceback ...\nBoom"}],
            attempt=2)
        response = self.client.get(change_url(job))
        self.assertEqual(response.status_code, 200)
        html = response.content.decode()
        # Every error, latest first, with its traceback in <pre>, escaped.
        self.assertIn('<pre class="jobs-traceback">first &lt;failure&gt;</pre>', html)
        self.assertIn('<pre class="jobs-traceback">Traceback ...\nBoom</pre>', html)
        self.assertLess(html.index("Boom"), html.index("first &lt;failure&gt;"))
        self.assertInHTML("<dt>Attempt</dt><dd>2 of 20</dd>", html)
        self.assertIn("node-a", html)
        self.assertIn("&quot;email&quot;: &quot;ada@example.com&quot;", html)
        self.assertIn("&quot;trace&quot;: &quot;abc&quot;", html)
        self.assertInHTML("<li>vip</li>", html)
        for label in ("Inserted", "Scheduled", "Attempted"):
            self.assertIn(f"<dt>{label}</dt>", html)
        # Read-only: no form fields, no save button.
        self.assertNotIn("<input type=\"text\"", html)
        self.assertNotIn('name="_save"', html)
        self.assertEqual(self.client.post(change_url(job), {"state": "completed"}).status_code,
                         405)

    def test_cron_origin(self):
        job = make_job(meta={"cron": True, "cron_name": "nightly", "cron_expr": "0 3 * * *",
                             "cron_tz": "Europe/Paris", "cron_slot": "2026-01-01T02:00:00"})
        response = self.client.get(change_url(job))
        self.assertContains(response, 'id="panel-cron"')
        self.assertContains(response, "0 3 * * *")
        self.assertContains(response, "Europe/Paris")
        self.assertContains(response, reverse("admin:django_jobs_cronentry_changelist")
                            + "?q=nightly")
        plain = make_job()
        self.assertNotContains(self.client.get(change_url(plain)), 'id="panel-cron"')

    def test_chunk_panel(self):
        leader = make_job(TextWorker, {"to": "1"}, state="completed")
        member = make_job(TextWorker, {"to": "2"}, state="completed",
                          attempted_by=["node-a", "p1", leader.pk])
        fresh = make_job(TextWorker, {"to": "3"})
        html = self.client.get(change_url(member)).content.decode()
        self.assertIn('id="panel-chunk"', html)
        self.assertIn(f'<a href="{change_url(leader)}">#{leader.pk}</a>', html)
        self.assertIn(f"{CHANGELIST}?q=chunk:{leader.pk}", html)
        html = self.client.get(change_url(leader)).content.decode()
        self.assertIn("this job led its last attempt", html)
        self.assertIn(f"{CHANGELIST}?q=chunk:{leader.pk}", html)
        self.assertIn("not run yet", self.client.get(change_url(fresh)).content.decode())
        # A pruned leader: its id, no link.
        Job.objects.filter(pk=leader.pk).delete()
        html = self.client.get(change_url(member)).content.decode()
        self.assertIn(f"#{leader.pk} <span class=\"quiet\">(pruned)</span>", html)
        # Not a chunk worker, or a worker this process cannot import: no panel.
        self.assertNotContains(self.client.get(change_url(make_job())), 'id="panel-chunk"')
        lost = make_job()
        Job.objects.filter(pk=lost.pk).update(worker="gone.module.Worker")
        response = self.client.get(change_url(lost))
        self.assertEqual(response.status_code, 200)
        self.assertNotContains(response, 'id="panel-chunk"')
        # The search the panel links to: the leader and its members, nothing else.
        other = make_job(TextWorker, {"to": "4"}, state="completed",
                         attempted_by=["node-a", "p1", fresh.pk])
        ids = listed_ids(self.client.get(CHANGELIST, {"q": f"chunk:{leader.pk}"}))
        self.assertEqual(ids, [member.pk])
        ids = listed_ids(self.client.get(CHANGELIST, {"q": f"chunk:{fresh.pk}"}))
        self.assertEqual(ids, [other.pk, fresh.pk])

    def test_a_feature_adds_a_panel_without_touching_the_template(self):
        self.addCleanup(panels.unregister_panel, "audit")
        panels.register_panel(
            "audit", title="Audit trail", order=15,
            template="admin/django_jobs/panels/json.html",
            context=lambda request, job: {"json": f"result of {job.pk}"}
            if job.state == "completed" else None)
        done = make_job(state="completed")
        html = self.client.get(change_url(done)).content.decode()
        self.assertIn("Audit trail", html)
        self.assertIn(f"result of {done.pk}", html)
        # In order: after the summary (10), before the errors (20) and args (30).
        self.assertLess(html.index('id="panel-summary"'), html.index('id="panel-audit"'))
        self.assertLess(html.index('id="panel-audit"'), html.index('id="panel-args"'))
        waiting = make_job()
        self.assertNotContains(self.client.get(change_url(waiting)), "Audit trail")

    def test_missing_job(self):
        response = self.client.get(reverse("admin:django_jobs_job_change", args=[999999]))
        self.assertRedirects(response, reverse("admin:index"))


class ActionTests(TestCase):
    def post_action(self, client, action, jobs):
        return client.post(CHANGELIST, {"action": action,
                                        "_selected_action": [j.pk for j in jobs]}, follow=True)

    def login(self, *perms):
        client = Client()
        name = "u-" + "-".join(perms or ["none"])
        user = User.objects.filter(username=name).first() or staff_user(name, "view_job", *perms)
        client.force_login(user)
        return client

    def messages(self, response) -> list[str]:
        return [str(m) for m in response.context["messages"]]

    def test_retry(self):
        discarded = make_job(state="discarded")
        executing = make_job(state="executing")
        response = self.post_action(self.login("retry_job"), "retry_jobs",
                                    [discarded, executing])
        self.assertEqual(Job.objects.get(pk=discarded.pk).state, "available")
        self.assertEqual(Job.objects.get(pk=discarded.pk).max_attempts, 3)
        self.assertEqual(Job.objects.get(pk=executing.pk).state, "executing")
        self.assertEqual(self.messages(response),
                         ["Retried 1 job. 1 job skipped (available or executing)."])

    def test_cancel_includes_executing_jobs(self):
        executing = make_job(state="executing")
        scheduled = make_job(state="scheduled")
        done = make_job(state="completed")
        response = self.post_action(self.login("cancel_job"), "cancel_jobs",
                                    [executing, scheduled, done])
        states = dict(Job.objects.values_list("pk", "state"))
        self.assertEqual([states[executing.pk], states[scheduled.pk], states[done.pk]],
                         ["cancelled", "cancelled", "completed"])
        self.assertEqual(self.messages(response),
                         ["Cancelled 2 jobs. 1 job skipped (already finished)."])

    def test_run_now(self):
        scheduled = make_job(state="scheduled")
        retryable = make_job(state="retryable")
        done = make_job(state="completed")
        before = timezone.now()
        self.post_action(self.login("run_job"), "run_jobs_now", [scheduled, retryable, done])
        for job in (scheduled, retryable):
            fresh = Job.objects.get(pk=job.pk)
            self.assertEqual(fresh.state, "available")
            self.assertGreaterEqual(fresh.scheduled_at, before)
            self.assertLess(fresh.scheduled_at, before + datetime.timedelta(seconds=5))
        self.assertEqual(Job.objects.get(pk=done.pk).state, "completed")

    def test_delete_keeps_executing_jobs(self):
        executing = make_job(state="executing")
        done = make_job(state="completed")
        response = self.post_action(self.login("delete_job"), "delete_jobs", [executing, done])
        self.assertEqual(list(Job.objects.values_list("pk", flat=True)), [executing.pk])
        self.assertEqual(self.messages(response),
                         ["Deleted 1 job. 1 job skipped (executing: cancel them first)."])

    def test_each_action_needs_its_own_permission(self):
        make_job()
        expected = {"retry_job": "retry_jobs", "cancel_job": "cancel_jobs",
                    "run_job": "run_jobs_now", "delete_job": "delete_jobs"}
        for perm, action in expected.items():
            with self.subTest(perm):
                html = self.login(perm).get(CHANGELIST).content.decode()
                offered = set(re.findall(r'<option value="(\w+)"', html)) - {""}
                self.assertEqual(offered, {action})
        self.assertNotIn('name="action"', self.login().get(CHANGELIST).content.decode())
        # Posting an action one may not take changes nothing.
        job = make_job(state="discarded")
        self.post_action(self.login("cancel_job"), "retry_jobs", [job])
        self.assertEqual(Job.objects.get(pk=job.pk).state, "discarded")
        self.assertNotIn("delete_selected", self.login("delete_job").get(CHANGELIST)
                         .content.decode())

    def test_detail_buttons_follow_permissions_and_state(self):
        discarded = make_job(state="discarded")
        html = self.login("retry_job", "cancel_job").get(change_url(discarded)).content.decode()
        self.assertIn(act_url(discarded, "retry"), html)
        self.assertNotIn(act_url(discarded, "cancel"), html)  # finished: nothing to cancel
        self.assertNotIn(act_url(discarded, "delete"), html)  # no permission
        executing = make_job(state="executing")
        html = self.login("delete_job", "cancel_job", "run_job").get(
            change_url(executing)).content.decode()
        self.assertIn(act_url(executing, "cancel"), html)
        self.assertNotIn(act_url(executing, "delete"), html)
        self.assertNotIn(act_url(executing, "run"), html)

    def test_detail_actions_post_only_with_permission_and_csrf(self):
        job = make_job(state="discarded")
        client = self.login("retry_job")
        self.assertEqual(client.get(act_url(job, "retry")).status_code, 405)
        self.assertEqual(client.post(act_url(job, "cancel")).status_code, 403)
        self.assertEqual(client.post(act_url(job, "nonsense")).status_code, 403)
        strict = Client(enforce_csrf_checks=True)
        strict.force_login(User.objects.get(username="u-retry_job"))
        self.assertEqual(strict.post(act_url(job, "retry")).status_code, 403)
        self.assertEqual(Job.objects.get(pk=job.pk).state, "discarded")
        response = client.post(act_url(job, "retry"), follow=True)
        self.assertRedirects(response, change_url(job))
        self.assertEqual(Job.objects.get(pk=job.pk).state, "available")
        self.assertEqual(self.messages(response), ["Retried 1 job."])

    def test_changelist_actions_need_csrf(self):
        job = make_job(state="discarded")
        strict = Client(enforce_csrf_checks=True)
        strict.force_login(staff_user("csrf", "view_job", "retry_job"))
        response = strict.post(CHANGELIST, {"action": "retry_jobs", "_selected_action": [job.pk]})
        self.assertEqual(response.status_code, 403)
        self.assertEqual(Job.objects.get(pk=job.pk).state, "discarded")

    def test_delete_from_the_detail_page(self):
        job = make_job(state="completed")
        client = self.login("delete_job")
        response = client.post(act_url(job, "delete"))
        self.assertRedirects(response, CHANGELIST)
        self.assertFalse(Job.objects.filter(pk=job.pk).exists())
        executing = make_job(state="executing")
        response = client.get(reverse("admin:django_jobs_job_delete", args=[executing.pk]),
                              follow=True)
        self.assertContains(response, "is executing: cancel it first")
        self.assertTrue(Job.objects.filter(pk=executing.pk).exists())


if __name__ == "__main__":  # pragma: no cover
    unittest.main()
