"""The queues page, the cron page, the dashboard, and a custom AdminSite."""

import datetime
import re
from zoneinfo import ZoneInfo

from django.contrib import admin as django_admin
from django.contrib.auth.models import User
from django.test import Client, TestCase, override_settings
from django.urls import path, reverse
from django.utils import timezone

from django_jobs.admin import CronEntryAdmin, JobAdmin
from django_jobs.admin.charts import line_chart, nice_ceiling
from django_jobs.admin.dashboard import dashboard_data, percentile
from django_jobs.models import CronEntry, CronSource, Job, Producer

from .admin_workers import MailWorker, ReportWorker, make_job, make_producer, staff_user

QUEUES = reverse("admin:django_jobs_job_queues")
DASHBOARD = reverse("admin:django_jobs_job_dashboard")
CRON = reverse("admin:django_jobs_cronentry_changelist")

custom_site = django_admin.AdminSite(name="ops")
custom_site.register(Job, JobAdmin)
custom_site.register(CronEntry, CronEntryAdmin)
urlpatterns = [path("ops/", custom_site.urls), path("admin/", django_admin.site.urls)]


class AdminTestCase(TestCase):
    def setUp(self):
        self.admin = User.objects.create_superuser("admin", "a@example.com", "pw")
        self.client.force_login(self.admin)

    def messages(self, response) -> list[str]:
        return [str(m) for m in response.context["messages"]]


class QueuesPageTests(AdminTestCase):
    def test_counts_by_state_and_nodes(self):
        for state in ("available", "available", "completed", "discarded"):
            make_job(MailWorker, state=state)
        a = str(make_producer("mailers", "node-a", limit=5).uuid)
        b = str(make_producer("mailers", "node-b", limit=7, paused=True).uuid)
        make_job(MailWorker, state="executing", attempted_by=["node-a", a])
        make_job(MailWorker, state="executing", attempted_by=["node-b", b])
        make_job(MailWorker, state="executing", attempted_by=["node-b", b])
        make_job(ReportWorker, state="scheduled")
        with self.assertNumQueries(5):  # session, user, and 3 for the page however many queues
            response = self.client.get(QUEUES)
        html = response.content.decode()
        mailers = re.search(r'<section[^>]*data-queue="mailers".*?</section>', html, re.S)[0]
        for state, n in {"available": 2, "executing": 3, "completed": 1, "discarded": 1,
                         "scheduled": 0}.items():
            self.assertRegex(mailers, rf'jobs-count-{state}"><a [^>]*>{n}</a>')
        self.assertIn("paused on some nodes", mailers)
        node_a = re.search(r'data-node="node-a">(.*?)</tr>', mailers, re.S)[1]
        node_b = re.search(r'data-node="node-b">(.*?)</tr>', mailers, re.S)[1]
        self.assertIn("<td>node-a</td><td>1</td><td>5</td>", node_a)
        self.assertIn("<td>node-b</td><td>2</td><td>7</td>", node_b)
        self.assertIn(">paused<", node_b)
        # Queues from settings and from jobs appear even with no node.
        default = re.search(r'<section[^>]*data-queue="default".*?</section>', html, re.S)[0]
        self.assertIn('jobs-count-scheduled"><a href="/admin/django_jobs/job/?queue=default'
                      '&amp;state=scheduled">1</a>', default)
        self.assertIn("No node runs this queue now.", default)

    def test_worker_processes_of_one_node_each_count_their_own_jobs(self):
        first = str(make_producer("mailers", "web-1", limit=4).uuid)
        second = str(make_producer("mailers", "web-1", limit=4).uuid)
        make_job(MailWorker, state="executing", attempted_by=["web-1", first])
        for _ in range(3):
            make_job(MailWorker, state="executing", attempted_by=["web-1", second])
        html = self.client.get(QUEUES).content.decode()
        rows = re.findall(r'data-node="web-1">(.*?)</tr>', html, re.S)
        self.assertEqual(sorted(re.search(r"<td>web-1</td><td>(\d+)</td><td>4</td>", row)[1]
                                for row in rows), ["1", "3"])

    def test_pause_resume_scale_reach_every_node(self):
        a = make_producer("mailers", "node-a", limit=5)
        b = make_producer("mailers", "node-b", limit=5)
        other = make_producer("default", "node-a", limit=5)

        def rows():
            return {p.pk: (p.paused, p.limit) for p in Producer.objects.all()}

        response = self.client.post(QUEUES, {"queue": "mailers", "action": "pause"}, follow=True)
        self.assertEqual(self.messages(response),
                         ["Paused queue 'mailers' on every node (2 producers)."])
        self.assertEqual(rows(), {a.pk: (True, 5), b.pk: (True, 5), other.pk: (False, 5)})
        self.assertContains(response, "Resume everywhere")
        self.client.post(QUEUES, {"queue": "mailers", "action": "resume", "node": "node-b"},
                         follow=True)
        self.assertEqual(rows()[b.pk], (False, 5))
        self.assertEqual(rows()[a.pk], (True, 5))
        self.client.post(QUEUES, {"queue": "mailers", "action": "resume"}, follow=True)
        response = self.client.post(QUEUES, {"queue": "mailers", "action": "scale",
                                             "limit": "12"}, follow=True)
        self.assertEqual(self.messages(response),
                         ["Scaled queue 'mailers' to 12 on every node (2 producers)."])
        self.assertEqual(rows(), {a.pk: (False, 12), b.pk: (False, 12), other.pk: (False, 5)})
        for bad in ("0", "many"):
            response = self.client.post(QUEUES, {"queue": "mailers", "action": "scale",
                                                 "limit": bad}, follow=True)
            self.assertEqual(len(self.messages(response)), 1)
            self.assertIn("limit must be", self.messages(response)[0])
        self.assertEqual(rows()[a.pk], (False, 12))

    def test_control_needs_permission_and_csrf(self):
        producer = make_producer("mailers", "node-a")
        viewer = Client()
        viewer.force_login(staff_user("viewer", "view_job"))
        page = viewer.get(QUEUES)
        self.assertEqual(page.status_code, 200)
        self.assertNotContains(page, "Pause everywhere")
        self.assertEqual(viewer.post(QUEUES, {"queue": "mailers", "action": "pause"})
                         .status_code, 403)
        strict = Client(enforce_csrf_checks=True)
        strict.force_login(staff_user("operator", "view_job", "control_queues"))
        self.assertContains(strict.get(QUEUES), "Pause everywhere")
        self.assertEqual(strict.post(QUEUES, {"queue": "mailers", "action": "pause"})
                         .status_code, 403)
        self.assertFalse(Producer.objects.get(pk=producer.pk).paused)
        nobody = Client()
        nobody.force_login(staff_user("nobody"))
        self.assertEqual(nobody.get(QUEUES).status_code, 403)


class CronPageTests(AdminTestCase):
    def entry(self, **fields):
        values = {"name": "report", "expression": "0 9 * * *", "timezone": "Asia/Tokyo",
                  "worker": "tests.admin_workers.ReportWorker"}
        return CronEntry.objects.create(**{**values, **fields})

    def test_next_and_last_run_in_the_entry_time_zone(self):
        entry = self.entry(last_slot_at=datetime.datetime(2026, 1, 1, 0, 0, tzinfo=datetime.UTC))
        self.entry(name="boot", expression="@reboot", timezone="UTC")
        self.entry(name="settings", source=CronSource.SETTINGS, paused=True)
        html = self.client.get(CRON).content.decode()
        local = entry.next_run().astimezone(ZoneInfo("Asia/Tokyo"))
        self.assertEqual(local.hour, 9)
        self.assertIn(f'{local:%Y-%m-%d} 09:00 JST</time>', html)
        self.assertIn("2026-01-01 09:00 JST</time>", html)  # last run, 00:00 UTC
        self.assertIn("at cluster start", html)
        self.assertRegex(html, r'field-next_run">paused<')

    def test_pause_and_resume(self):
        entry = self.entry()
        response = self.client.post(CRON, {"action": "pause_entries",
                                           "_selected_action": [entry.pk]}, follow=True)
        self.assertEqual(self.messages(response), ["Paused 1 cron entry."])
        self.assertTrue(CronEntry.objects.get(pk=entry.pk).paused)
        before = timezone.now()
        self.client.post(CRON, {"action": "resume_entries", "_selected_action": [entry.pk]})
        entry.refresh_from_db()
        self.assertFalse(entry.paused)
        # Resumed from now: the runs missed while paused are not caught up.
        self.assertGreaterEqual(entry.last_slot_at, before)

    def test_dynamic_entries_are_edited_with_validation(self):
        add = reverse("admin:django_jobs_cronentry_add")
        data = {"name": "hourly", "expression": "0 25 * * *", "timezone": "UTC",
                "worker": "tests.admin_workers.ReportWorker", "args": "{}", "options": "{}",
                "catch_up": "0"}
        response = self.client.post(add, data)
        self.assertEqual(response.status_code, 200)
        self.assertContains(response, "errornote")
        self.assertRegex(response.content.decode(), r"hour.*0.*23")  # names field and range
        self.assertFalse(CronEntry.objects.exists())
        response = self.client.post(add, {**data, "expression": "0 * * * *"})
        self.assertEqual(response.status_code, 302)
        entry = CronEntry.objects.get()
        self.assertEqual((entry.expression, entry.source), ("0 * * * *", CronSource.DATABASE))
        response = self.client.post(add, {**data, "name": "x", "worker": "no.such.Worker"})
        self.assertContains(response, "errornote")

    def test_settings_entries_only_pause(self):
        entry = self.entry(source=CronSource.SETTINGS)
        change = reverse("admin:django_jobs_cronentry_change", args=[entry.pk])
        html = self.client.get(change).content.decode()
        self.assertIn('name="paused"', html)
        self.assertNotIn('name="expression"', html)
        self.client.post(change, {"paused": "on"})
        entry.refresh_from_db()
        self.assertTrue(entry.paused)
        self.assertEqual(entry.expression, "0 9 * * *")
        self.assertIsNone(entry.last_slot_at)
        before = timezone.now()
        self.client.post(change, {})  # unticked: resumed, from now
        entry.refresh_from_db()
        self.assertFalse(entry.paused)
        self.assertGreaterEqual(entry.last_slot_at, before)


class DashboardTests(AdminTestCase):
    def test_data_per_minute_by_queue(self):
        now = timezone.now().replace(second=30, microsecond=0)
        for minutes_ago, queue, seconds in ((0, "mailers", 1), (0, "mailers", 3),
                                            (2, "default", 10), (90, "default", 1)):
            done = now - datetime.timedelta(minutes=minutes_ago)
            make_job(state="completed", queue=queue, completed_at=done,
                     attempted_at=done - datetime.timedelta(seconds=seconds))
        make_job(state="discarded", queue="mailers", discarded_at=now)
        make_job(state="retryable", queue="default",
                 attempted_at=now - datetime.timedelta(minutes=1))
        data = dashboard_data("1h", now=now)
        self.assertEqual(len(data["x_labels"]), 60)
        self.assertEqual(data["completed"]["mailers"][-1], 2)
        self.assertEqual(data["completed"]["default"][-3], 1)
        self.assertEqual(sum(data["completed"]["default"]), 1)  # 90 min ago is outside
        self.assertEqual(data["failed"]["mailers"][-1], 1)
        self.assertEqual(data["failed"]["default"][-2], 1)
        self.assertEqual((data["total_completed"], data["total_failed"]), (3, 2))
        stats = {row["queue"]: row for row in data["durations"]}
        self.assertEqual((stats["mailers"]["p50"], stats["mailers"]["p99"]), (1.0, 3.0))
        self.assertEqual(stats["default"]["count"], 1)
        wide = dashboard_data("24h", now=now)
        self.assertEqual(len(wide["x_labels"]), 96)
        self.assertEqual(sum(wide["completed"]["default"]), 2)

    def test_page(self):
        make_job(state="completed", queue="mailers")
        make_job(state="discarded")
        with self.assertNumQueries(6):  # session, user, completed, 2 failed, durations
            response = self.client.get(DASHBOARD, {"window": "15m", "refresh": "5"})
        html = response.content.decode()
        self.assertEqual(html.count('<svg class="jobs-chart"'), 4)
        self.assertIn('<meta http-equiv="refresh" content="5">', html)
        self.assertIn('<option value="15m" selected>', html)
        self.assertRegex(html, r'jobs-total-completed">1<')
        self.assertRegex(html, r'jobs-total-failed">1<')
        # Nothing comes from another site: every src/href is local.
        for url in re.findall(r'(?:src|href)="([^"]+)"', html):
            self.assertFalse(url.startswith(("http:", "https:", "//")), url)
        off = self.client.get(DASHBOARD, {"refresh": "off", "window": "bogus"})
        self.assertNotContains(off, 'http-equiv="refresh"')
        self.assertContains(off, '<option value="1h" selected>')


class ChartTests(TestCase):
    def test_nice_ceiling(self):
        self.assertEqual([nice_ceiling(v) for v in (0, 0.3, 1, 3, 7, 11, 240, 999)],
                         [1, 0.5, 1, 5, 10, 20, 250, 1000])

    def test_line_chart(self):
        svg = str(line_chart("A <title>", ["10:00", "10:01", "10:02"],
                             [("ok", [0, 8, 2]), ("<bad>", [1, 1, 1])]))
        self.assertIn("A &lt;title&gt;", svg)
        self.assertIn("&lt;bad&gt;", svg)
        self.assertNotIn("<bad>", svg)
        self.assertEqual(svg.count("<polyline"), 2)
        # 8 is the peak: its point sits on the top grid line (y = 12).
        self.assertIn(",12.0", re.search(r'points="([^"]+)"', svg)[1])
        self.assertIn("<strong>10</strong>", svg)  # the legend's total


@override_settings(ROOT_URLCONF=__name__)
class CustomSiteTests(AdminTestCase):
    def test_pages_come_with_the_model_admin(self):
        make_job(state="discarded")
        make_producer("mailers", "node-a")
        for name in ("changelist", "queues", "dashboard"):
            url = reverse(f"ops:django_jobs_job_{name}")
            self.assertTrue(url.startswith("/ops/"))
            response = self.client.get(url)
            self.assertEqual(response.status_code, 200, name)
            self.assertContains(response, 'href="/ops/django_jobs/job/queues/"')
            self.assertNotContains(response, 'href="/admin/')
        job = Job.objects.get()
        response = self.client.get(reverse("ops:django_jobs_job_change", args=[job.pk]))
        self.assertContains(response, f'action="/ops/django_jobs/job/{job.pk}/act/retry/"')
        response = self.client.post(f"/ops/django_jobs/job/{job.pk}/act/retry/")
        self.assertRedirects(response, f"/ops/django_jobs/job/{job.pk}/change/")
        self.assertEqual(Job.objects.get().state, "available")


class PercentileTests(TestCase):
    def test_nearest_rank(self):
        values = list(range(1, 101))
        self.assertEqual([percentile(values, p) for p in (50, 95, 99, 100)], [50, 95, 99, 100])
        self.assertEqual(percentile([], 50), 0.0)
        self.assertEqual(percentile([3.0], 99), 3.0)
