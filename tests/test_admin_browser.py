"""The admin in a real browser: Debian's chromium through chromium-driver (Selenium), against
a live server. Skipped, with the reason, where selenium, chromium or chromedriver is missing.

Screenshots go to ``.test-artifacts/admin/`` at the repository root.
"""

import gc
import shutil
import tempfile
import unittest
from pathlib import Path

from django.contrib.auth.models import User
from django.contrib.staticfiles.testing import StaticLiveServerTestCase
from django.test import modify_settings, override_settings
from django.utils import timezone

from django_jobs.models import Job, Producer
from django_jobs.runtime import node as runtime_node

from .admin_workers import AdminRetryWorker, MailWorker, make_job
from .helpers import wait_for_state
from .waits import time_limit

ARTIFACTS = Path(__file__).resolve().parent.parent / ".test-artifacts" / "admin"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
QUEUE = AdminRetryWorker.queue

try:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait
except ImportError:  # pragma: no cover
    webdriver = None

SKIP_REASON = ("selenium is not installed (pip install -e '.[test]')" if webdriver is None else
               "no chromium binary (apt-get install chromium)" if not CHROMIUM else
               "no chromedriver binary (apt-get install chromium-driver)" if not CHROMEDRIVER
               else None)


@unittest.skipIf(SKIP_REASON, SKIP_REASON or "")
@modify_settings(INSTALLED_APPS={"append": "django.contrib.staticfiles"})
@override_settings(STATIC_URL="/static/", DEBUG=False)
class AdminBrowserTests(StaticLiveServerTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.profile = tempfile.mkdtemp(prefix="django_jobs-chromium-")
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in ("--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync", "--no-first-run",
                     "--window-size=1280,900", f"--user-data-dir={cls.profile}"):
            options.add_argument(flag)
        try:
            cls.browser = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        except Exception:
            shutil.rmtree(cls.profile, ignore_errors=True)
            super().tearDownClass()
            raise
        cls.browser.implicitly_wait(0)
        # A page or script that never loads fails its test instead of hanging the suite.
        cls.browser.set_page_load_timeout(60)
        cls.browser.set_script_timeout(30)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)

    @classmethod
    def tearDownClass(cls):
        cls.browser.quit()
        shutil.rmtree(cls.profile, ignore_errors=True)
        super().tearDownClass()

    def setUp(self):
        User.objects.create_superuser("admin", "admin@example.com", "secret-pw")
        self.browser.delete_all_cookies()
        self.login()

    # -- helpers ------------------------------------------------------------------------------

    def open(self, path):
        self.browser.get(self.live_server_url + path)

    def wait_for(self, condition, timeout=5):
        return WebDriverWait(self.browser, timeout).until(condition)

    def css(self, selector):
        return self.browser.find_element(By.CSS_SELECTOR, selector)

    def all_css(self, selector):
        return self.browser.find_elements(By.CSS_SELECTOR, selector)

    def screenshot(self, name):
        path = ARTIFACTS / f"{name}.png"
        self.browser.save_screenshot(str(path))
        self.assertGreater(path.stat().st_size, 1000)

    def listed_ids(self):
        return [int(box.get_attribute("value"))
                for box in self.all_css('input[name="_selected_action"]')]

    def messages(self):
        return [li.text for li in self.all_css("ul.messagelist li")]

    def login(self):
        self.open("/admin/login/?next=/admin/")
        self.css("#id_username").send_keys("admin")
        self.css("#id_password").send_keys("secret-pw")
        self.css('input[type="submit"]').click()
        self.wait_for(EC.presence_of_element_located((By.ID, "user-tools")))

    def start_node(self):
        node = runtime_node.Node(queues={QUEUE: 2}, name="browser-node", plugins=False,
                                 grace=2.0)
        node.start()

        def stop():
            with time_limit(60, "the browser tests' node to stop"):
                node.stop()
            gc.collect()  # pool threads' connections (PostgreSQL drops the test database)

        self.addCleanup(stop)
        return node

    # -- tests --------------------------------------------------------------------------------

    def test_filter_search_and_read_errors(self):
        ada = make_job(MailWorker, {"email": "ada@example.com"}, state="discarded")
        bob = make_job(MailWorker, {"email": "bob@example.com"}, state="discarded")
        done = make_job(MailWorker, {"email": "eve@example.com"}, state="completed")
        self.open("/admin/django_jobs/job/")
        self.assertEqual(self.listed_ids(), [done.pk, bob.pk, ada.pk])
        self.assertEqual(self.css("link[href$='django_jobs/admin.css']").tag_name, "link")
        self.screenshot("01-job-browser")
        # Filter: the sidebar's "Discarded" link.
        self.browser.find_element(By.CSS_SELECTOR, "#changelist-filter a[href*='state=discarded']"
                                  ).click()
        self.wait_for(EC.url_contains("state=discarded"))
        self.assertEqual(self.listed_ids(), [bob.pk, ada.pk])
        badge = self.css(".jobs-state-discarded")
        self.assertNotEqual(badge.value_of_css_property("background-color"),
                            "rgba(0, 0, 0, 0)")  # the stylesheet is applied
        # Search on args, within the filter.
        box = self.css("#searchbar")
        box.send_keys("args.email:ada@example.com\n")
        self.wait_for(EC.url_contains("q=args.email"))
        self.assertEqual(self.listed_ids(), [ada.pk])
        self.screenshot("02-job-browser-filtered")
        # The job's page: every error with its traceback.
        self.css(f"a[href*='/django_jobs/job/{ada.pk}/change/']").click()
        pre = self.wait_for(EC.presence_of_element_located((By.CSS_SELECTOR,
                                                            "pre.jobs-traceback")))
        self.assertIn("ConnectionError: SMTP <server> refused", pre.text)
        self.assertIn("node-b", self.css("#panel-summary").text)
        self.screenshot("03-job-detail-errors")

    def test_retry_a_discarded_job_and_run_it(self):
        job = make_job(AdminRetryWorker, {"n": 1}, state="discarded")
        self.open(f"/admin/django_jobs/job/{job.pk}/change/")
        self.css("button.jobs-action-retry").click()
        self.wait_for(EC.presence_of_element_located((By.CSS_SELECTOR, "ul.messagelist")))
        self.assertEqual(self.messages(), ["Retried 1 job."])
        self.assertEqual(self.css("h1 .jobs-badge").text, "Available")
        self.assertEqual(Job.objects.get(pk=job.pk).state, "available")
        self.screenshot("04-job-retried")
        self.start_node()
        wait_for_state(job, "completed")
        self.browser.refresh()
        self.assertEqual(self.css("h1 .jobs-badge").text, "Completed")
        self.assertIn("browser-node", self.css("#panel-summary").text)
        self.assertEqual(Job.objects.get(pk=job.pk).attempt, 2)

    def test_pause_and_resume_a_queue(self):
        node = self.start_node()
        self.open("/admin/django_jobs/job/queues/")
        section = f"section[data-queue='{QUEUE}']"
        self.assertIn("browser-node", self.css(section).text)
        self.css(f"{section} button.jobs-pause").click()
        self.wait_for(EC.presence_of_element_located((By.CSS_SELECTOR, "ul.messagelist")))
        self.assertEqual(self.messages(),
                         [f"Paused queue '{QUEUE}' on every node (1 producers)."])
        self.assertEqual(self.css(f"{section} h2 .jobs-badge").text, "paused")
        self.assertTrue(node.producers[QUEUE].paused)  # this process's node, at once
        self.assertTrue(Producer.objects.get(queue=QUEUE).paused)  # and every other's row
        self.screenshot("05-queues-paused")
        self.css(f"{section} button.jobs-resume").click()
        self.wait_for(EC.text_to_be_present_in_element((By.CSS_SELECTOR, "ul.messagelist"),
                                                       "Resumed"))
        self.assertEqual(self.css(f"{section} h2 .jobs-badge").text, "running")
        self.assertFalse(node.producers[QUEUE].paused)
        self.assertFalse(Producer.objects.get(queue=QUEUE).paused)

    def test_dashboard(self):
        now = timezone.now()
        for i in range(30):
            done = now - timezone.timedelta(minutes=i * 2, seconds=5)
            make_job(MailWorker, {"n": i}, state="completed", completed_at=done,
                     attempted_at=done - timezone.timedelta(seconds=0.1 * i))
        for i in range(5):
            make_job(MailWorker, {"n": i}, state="discarded",
                     discarded_at=now - timezone.timedelta(minutes=i * 7))
        self.open("/admin/django_jobs/job/dashboard/?refresh=off")
        charts = self.all_css("svg.jobs-chart")
        self.assertEqual(len(charts), 4)
        self.assertGreater(charts[0].size["width"], 300)
        self.assertEqual(self.css(".jobs-total-completed").text, "30")
        self.assertEqual(self.css(".jobs-total-failed").text, "5")
        self.screenshot("06-dashboard")
        # The window selector.
        self.css("select[name='window'] option[value='6h']").click()
        self.css(".jobs-dashboard-controls button").click()
        self.wait_for(EC.url_contains("window=6h"))
        self.assertIn("last 6 hours", self.css("#chart-throughput svg title").get_attribute(
            "textContent"))
        # Dark mode: the admin's theme switch, our colours follow its variables.
        self.browser.execute_script("localStorage.setItem('theme', 'dark')")
        self.browser.refresh()
        background = self.browser.execute_script(
            "return getComputedStyle(document.body).backgroundColor")
        self.assertNotEqual(background, "rgb(255, 255, 255)")
        self.screenshot("07-dashboard-dark")
        self.browser.execute_script("localStorage.removeItem('theme')")
