"""Encrypted args (django_jobs.pro.encrypted): AES-256-GCM at rest, opened only for perform.

The row never holds the plaintext (read raw, with a cursor), perform gets it; signals, logs
and error entries never see it; tampered, truncated, moved and unsealed rows fail their attempt
with a DecryptionError and never run perform; rotation (an old key listed second still opens
its jobs; ``manage.py jobs reencrypt`` moves jobs to the first key and seals plain ones); a
missing key fails that job alone; uniqueness by args refused, by meta working; checks E012 and
E013 without key material; the admin never shows the plaintext. Together with structured args
and recorded results on one worker. In inline mode, ``perform_job``, ``drain_queue`` and a
real ``runjobs`` child.

The test settings list one key, KEY_A (tests.settings.JOBS_TEST_KEY); SecretWorker's callable
gives [KEY_B, KEY_A]; KEY_C is nobody's.
"""

import base64
import decimal
import io
import json
import logging

from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test import SimpleTestCase, TestCase, TransactionTestCase, override_settings
from django.urls import reverse

from django_jobs import fetch_recorded, insert_all, signals
from django_jobs.checks import check_encryption
from django_jobs.exceptions import InvalidJobError
from django_jobs.execution.executor import execute
from django_jobs.execution.inline import as_fetched
from django_jobs.execution.interrupt import NodeShutdown, Running
from django_jobs.models import Job
from django_jobs.pro.encrypted import (SEALED, DecryptionError, key_id, open_sealed,
                                       parse_key, reencrypt_jobs, seal)
from django_jobs.testing import drain_queue, perform_job, with_testing_mode

from . import pro_workers
from .helpers import describe_jobs, reload
from .pro_workers import (KEY_A, KEY_B, KEY_C, QUEUE, BoxKeyWorker, OtherSealedWorker,
                          SealedWorker, SecretWorker, SettingsSecretWorker, definition_error,
                          digest)
from .processes import RunjobsMixin, run_django
from .waits import in_thread, join_all, wait_until

#: What must never be written: the secret of SealedWorker jobs, a card number of
#: SettingsSecretWorker jobs.
SECRET = "s3cr3t-Pa55phrase-7f3a"
CARD = "4111222233334444"
SEALED_WORKER = SealedWorker.worker_path
KID_A, KID_B, KID_C = key_id(parse_key(KEY_A)), key_id(parse_key(KEY_B)), key_id(parse_key(KEY_C))


def keys_setting(*keys):
    """override_settings with these ENCRYPTION_KEYS (the rest of DJANGO_JOBS kept)."""
    return override_settings(DJANGO_JOBS={**settings.DJANGO_JOBS, "ENCRYPTION_KEYS": list(keys)})


def raw_row(job) -> str:
    """The job's whole row as the database returns it to a plain cursor, as text."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM django_jobs_job WHERE id = %s", [job.pk])
        return repr(cursor.fetchone())


def raw_args(job) -> dict:
    with connection.cursor() as cursor:
        cursor.execute("SELECT args FROM django_jobs_job WHERE id = %s", [job.pk])
        value = cursor.fetchone()[0]
    return json.loads(value) if isinstance(value, str) else value


def set_args(job, args) -> None:
    Job.objects.filter(pk=job.pk).update(args=args)


def sealed_bytes(job) -> bytes:
    return base64.b64decode(raw_args(job)[SEALED]["data"])


def with_data(job, data: bytes | str) -> dict:
    """The job's sealed args with their data replaced."""
    args = raw_args(job)
    args[SEALED]["data"] = data if isinstance(data, str) else base64.b64encode(data).decode()
    return args


#: Ways a stored row goes bad: name -> (how to break the job, what its error says).
def tamper(job):
    raw = bytearray(sealed_bytes(job))
    raw[20] ^= 0x01
    set_args(job, with_data(job, bytes(raw)))


def truncate_short(job):
    set_args(job, with_data(job, sealed_bytes(job)[:20]))


def truncate_tail(job):
    set_args(job, with_data(job, sealed_bytes(job)[:-4]))


def not_base64(job):
    set_args(job, with_data(job, "%%% not base64 %%%"))


def move(job):
    Job.objects.filter(pk=job.pk).update(worker=OtherSealedWorker.worker_path)


def unseal(job):
    set_args(job, {"secret": "plain-" + SECRET[:4]})


def lost_key(job):
    set_args(job, seal({"secret": SECRET}, parse_key(KEY_C), SEALED_WORKER))


BREAKAGES = {
    "tampered": (tamper, f"the sealed args failed authentication with key {KID_A} (the row "
                         f"was altered, or moved from another worker)"),
    "truncated": (truncate_short, "the sealed args are truncated (the row was altered)"),
    "truncated tail": (truncate_tail, f"failed authentication with key {KID_A}"),
    "not base64": (not_base64, "the sealed args are not valid base64 (the row was altered)"),
    "moved": (move, f"the sealed args failed authentication with key {KID_A} (the row was "
                     f"altered, or moved from another worker)"),
    "unsealed": (unseal, "are not encrypted (inserted before the worker was?"),
    "lost key": (lost_key, f"this job was sealed with key '{KID_C}', which is not among the "
                           f"keys of {SEALED_WORKER} (known: {KID_A})"),
}


def break_jobs(count_ok: int = 2):
    """SealedWorker jobs: ``count_ok`` good ones, then one broken each way of BREAKAGES."""
    good = [SealedWorker.enqueue({"secret": SECRET, "n": i}) for i in range(count_ok)]
    broken = {}
    for name, (breakage, _message) in BREAKAGES.items():
        job = SealedWorker.enqueue({"secret": SECRET, "case": name})
        breakage(job)
        broken[name] = job
    return good, broken


def assert_decryption_failed(test, job, message) -> None:
    """``job`` failed one attempt with a DecryptionError saying ``message``; nothing was
    recorded (perform never ran) and nothing written shows the secret."""
    test.assertEqual((job.state, job.attempt, len(job.errors)), ("retryable", 1, 1))
    error = job.errors[0]["error"]
    test.assertIn("DecryptionError: ", error)
    test.assertIn(message, error)
    test.assertNotIn("recorded", job.meta)
    test.assertNotIn(SECRET, raw_row(job))


def assert_ran(test, job, secret=SECRET) -> None:
    """``job`` (SealedWorker) completed with perform seeing ``secret`` in the clear, and its row
    does not hold it."""
    test.assertEqual(job.state, "completed", job.errors)
    test.assertEqual(fetch_recorded(job), {"sha256": digest(secret)})
    test.assertNotIn(secret, raw_row(job))
    test.assertEqual(set(raw_args(job)), {SEALED})


class QuietFailures:
    def setUp(self):
        super().setUp()
        pro_workers.SEEN.clear()
        logger = logging.getLogger("django_jobs.executor")
        level = logger.level
        logger.setLevel(logging.ERROR)
        self.addCleanup(logger.setLevel, level)


class Capture:
    """Connects to job_started, job_stopped and job_exception; keeps the text of what each
    receiver was given (the job's args as they were at that moment)."""

    SIGNALS = ("job_started", "job_stopped", "job_exception")

    def __init__(self, test):
        self.seen: list[str] = []
        for name in self.SIGNALS:
            signal = getattr(signals, name)
            signal.connect(self.receive, dispatch_uid=f"capture-{name}")
            test.addCleanup(signal.disconnect, dispatch_uid=f"capture-{name}")

    def receive(self, sender, **kwargs):
        job = kwargs["job"]
        self.seen.append(repr({"args": job.args, "meta": job.meta, "errors": job.errors,
                               **{k: v for k, v in kwargs.items() if k != "job"}}))


class SealingTests(QuietFailures, TestCase):
    def test_the_row_never_holds_the_plaintext(self):
        job = SealedWorker.enqueue({"secret": SECRET, "note": "visible?"})
        self.assertEqual(set(job.args), {SEALED})
        self.assertEqual(job.args[SEALED]["key"], KID_A)
        row = raw_row(job)
        for text in (SECRET, "visible?", "secret", "note"):
            self.assertNotIn(text, row)
        self.assertEqual(set(raw_args(job)[SEALED]), {"key", "data"})
        # A random nonce: the same args never seal the same way twice.
        other = SealedWorker.enqueue({"secret": SECRET, "note": "visible?"})
        self.assertNotEqual(raw_args(job)[SEALED]["data"], raw_args(other)[SEALED]["data"])
        # insert_all seals too.
        (batched,) = insert_all([SealedWorker.new({"secret": SECRET})])
        self.assertNotIn(SECRET, raw_row(batched))

    def test_the_seal_opens_with_the_key_and_worker_path_only(self):
        job = SealedWorker.enqueue({"secret": SECRET})
        key = parse_key(KEY_A)
        self.assertEqual(open_sealed(raw_args(job), [key], SEALED_WORKER), {"secret": SECRET})
        with self.assertRaises(DecryptionError):
            open_sealed(raw_args(job), [key], OtherSealedWorker.worker_path)

    def test_perform_gets_the_plaintext_and_the_row_stays_sealed_after_running(self):
        job = SealedWorker.enqueue({"secret": SECRET, "n": 1})
        self.assertEqual(drain_queue(QUEUE)["completed"], 1)
        self.assertEqual(pro_workers.SEEN, [{"secret": SECRET, "n": 1}])
        assert_ran(self, reload(job))

    def test_signals_logs_and_errors_never_see_the_plaintext(self):
        capture = Capture(self)
        done = SealedWorker.enqueue({"secret": SECRET})
        failed = SealedWorker.enqueue({"secret": SECRET, "fail": True})
        last = SealedWorker.enqueue({"secret": SECRET, "fail": True}, max_attempts=1)
        tampered = SealedWorker.enqueue({"secret": SECRET})
        tamper(tampered)
        logging.getLogger("django_jobs.executor").setLevel(logging.NOTSET)  # the parent's
        with self.assertLogs("django_jobs", level="DEBUG") as logs:
            counts = drain_queue(QUEUE)
        self.assertEqual((counts["completed"], counts["failed"], counts["discarded"]),
                         (1, 2, 1))
        self.assertEqual(len(pro_workers.SEEN), 3, "perform saw the plaintext")
        self.assertEqual(len(capture.seen), 4 + 4 + 3)  # started, stopped, exception
        for text in capture.seen:
            self.assertNotIn(SECRET, text)
            self.assertIn(SEALED, text)  # the sealed args are what receivers get
        self.assertTrue(logs.records)
        for record in logs.records:
            self.assertNotIn(SECRET, record.getMessage())
            self.assertNotIn(SECRET, str(record.exc_info or ""))
        for job in (done, failed, last, tampered):
            self.assertNotIn(SECRET, raw_row(job))
        self.assertIn("RuntimeError: failing on purpose", reload(failed).errors[0]["error"])
        self.assertEqual(reload(last).state, "discarded")

    def test_a_job_interrupted_by_shutdown_is_stopped_with_sealed_args(self):
        capture = Capture(self)
        job = SealedWorker.new({"secret": SECRET, "hold": 10})
        as_fetched(job, ["test", "shutdown"])
        running = Running(job)
        outcomes = []
        thread = in_thread(lambda: outcomes.append(execute(running, reset=False)))
        wait_until(lambda: pro_workers.SEEN and running.active, 10,
                   what="the encrypted job to be running")
        self.assertTrue(running.interrupt(NodeShutdown))
        join_all([thread], 10, what="the interrupted job")
        self.assertEqual(outcomes[0][0].state, "available")
        self.assertEqual(len(capture.seen), 2)
        for text in capture.seen:
            self.assertNotIn(SECRET, text)

    def test_an_args_mismatch_of_an_encrypted_job_does_not_quote_the_plaintext(self):
        capture = Capture(self)
        job = SettingsSecretWorker.enqueue({"card": CARD, "amount": "1.00"})
        set_args(job, seal({"card": int(CARD), "amount": "1.00"}, parse_key(KEY_A),
                           SettingsSecretWorker.worker_path))
        self.assertEqual(drain_queue(QUEUE)["failed"], 1)
        job = reload(job)
        self.assertIn("ArgsMismatch", job.errors[0]["error"])
        self.assertNotIn(CARD, raw_row(job))
        for text in capture.seen:
            self.assertNotIn(CARD, text)

    def test_broken_rows_fail_their_attempt_and_never_run_perform(self):
        good, broken = break_jobs()
        counts = drain_queue(QUEUE)
        self.assertEqual((counts["completed"], counts["failed"]), (2, len(BREAKAGES)))
        self.assertEqual(len(pro_workers.SEEN), 2, "perform ran only for the good jobs")
        for job in good:
            assert_ran(self, reload(job))
        for name, job in broken.items():
            with self.subTest(name):
                assert_decryption_failed(self, reload(job), BREAKAGES[name][1])

    def test_perform_job_of_a_broken_row_raises_decryption_error(self):
        job = SealedWorker.enqueue({"secret": SECRET})
        self.assertEqual(perform_job(reload(job)), {"sha256": digest(SECRET)})
        tamper(job)
        with self.assertRaisesMessage(DecryptionError, "failed authentication"):
            perform_job(reload(job))
        self.assertEqual(len(pro_workers.SEEN), 1)

    def test_a_key_swapped_for_another_known_key_fails(self):
        job = SecretWorker.enqueue({"secret": SECRET}, meta={"ref": 1})
        args = raw_args(job)
        self.assertEqual(args[SEALED]["key"], KID_B)
        args[SEALED]["key"] = KID_A
        set_args(job, args)
        drain_queue(QUEUE)
        self.assertIn(f"failed authentication with key {KID_A}", reload(job).errors[0]["error"])


class KeyTests(QuietFailures, TestCase):
    """Rotation, missing keys and key callables."""

    def test_jobs_sealed_with_an_old_key_listed_second_still_run(self):
        old = SealedWorker.enqueue({"secret": SECRET, "n": "old"})
        with keys_setting(KEY_B, KEY_A):
            new = SealedWorker.enqueue({"secret": SECRET, "n": "new"})
            self.assertEqual((raw_args(old)[SEALED]["key"], raw_args(new)[SEALED]["key"]),
                             (KID_A, KID_B))
            self.assertEqual(drain_queue(QUEUE)["completed"], 2)
        assert_ran(self, reload(old))
        assert_ran(self, reload(new))
        # A callable's keys rotate the same way: SecretWorker lists [KEY_B, KEY_A].
        rotated = SecretWorker.enqueue({"secret": "rotated"}, meta={"ref": "r"})
        set_args(rotated, seal({"secret": "rotated"}, parse_key(KEY_A),
                               SecretWorker.worker_path))
        self.assertEqual(drain_queue(QUEUE)["completed"], 1)
        self.assertEqual(fetch_recorded(reload(rotated)), {"secret": "rotated"})

    def test_a_missing_key_fails_that_job_alone(self):
        sealed_with_a = [SealedWorker.enqueue({"secret": SECRET, "n": i}) for i in range(2)]
        with keys_setting(KEY_B):
            fresh = SealedWorker.enqueue({"secret": SECRET, "n": "fresh"})
            settings_secret = SettingsSecretWorker.enqueue({"card": CARD, "amount": "3"})
            other = SecretWorker.enqueue({"secret": "other"}, meta={"ref": 2})
            counts = drain_queue(QUEUE)
        self.assertEqual((counts["completed"], counts["failed"]), (3, 2))
        for job in sealed_with_a:
            assert_decryption_failed(self, reload(job), f"sealed with key '{KID_A}', which "
                                                        f"is not among the keys of "
                                                        f"{SEALED_WORKER} (known: {KID_B})")
        assert_ran(self, reload(fresh))
        self.assertEqual(fetch_recorded(reload(settings_secret))["last4"], CARD[-4:])
        self.assertEqual(fetch_recorded(reload(other)), {"secret": "other"})

    def test_no_key_at_all_refuses_new_jobs_and_fails_stored_ones(self):
        job = SealedWorker.enqueue({"secret": SECRET})
        with keys_setting():
            with self.assertRaisesMessage(InvalidJobError, f"{SEALED_WORKER} is encrypted but "
                                          f"DJANGO_JOBS['ENCRYPTION_KEYS'] gives no key"):
                SealedWorker.new({"secret": SECRET})
            drain_queue(QUEUE)
        assert_decryption_failed(self, reload(job), "DJANGO_JOBS['ENCRYPTION_KEYS'] gives "
                                                    "no key")
        self.assertEqual(Job.objects.count(), 1)

    def test_a_key_callable(self):
        self.addCleanup(pro_workers.KEY_BOX.update, keys=[KEY_A])
        job = BoxKeyWorker.enqueue({"secret": SECRET})
        self.assertEqual(raw_args(job)[SEALED]["key"], KID_A)
        pro_workers.KEY_BOX["keys"] = KEY_B  # one key, not a list
        other = BoxKeyWorker.enqueue({"secret": SECRET})
        self.assertEqual(raw_args(other)[SEALED]["key"], KID_B)
        pro_workers.KEY_BOX["keys"] = []
        with self.assertRaisesMessage(InvalidJobError, "the key callable "
                                      "tests.pro_workers.box_keys gives no key"):
            BoxKeyWorker.new({"secret": SECRET})
        pro_workers.KEY_BOX["keys"] = [KEY_B]
        counts = drain_queue(QUEUE)
        self.assertEqual((counts["completed"], counts["failed"]), (1, 1))
        self.assertEqual(reload(other).state, "completed")
        self.assertIn(f"sealed with key '{KID_A}'", reload(job).errors[0]["error"])

    def test_reencrypt_moves_jobs_to_the_first_key_and_seals_plain_ones(self):
        on_a = [SealedWorker.enqueue({"secret": SECRET, "n": i}) for i in range(3)]
        plain = SealedWorker.enqueue({"secret": SECRET, "n": "plain"})
        set_args(plain, {"secret": SECRET, "n": "plain"})  # stored before it was encrypted
        lost = SealedWorker.enqueue({"secret": SECRET, "n": "lost"})
        lost_key(lost)
        lost_args = raw_args(lost)
        settings_job = SettingsSecretWorker.enqueue({"card": CARD, "amount": "5"})
        with keys_setting(KEY_B, KEY_A):
            already = SealedWorker.enqueue({"secret": SECRET, "n": "already"})
            out = io.StringIO()
            with self.assertRaisesMessage(CommandError, "1 jobs could not be opened (missing "
                                          "key or altered row)"):
                call_command("jobs", "reencrypt", "--batch", "2", stdout=out)
            self.assertIn("sealed 1 stored in plain text", out.getvalue())
            self.assertIn("1 already current", out.getvalue())
            self.assertNotIn(SECRET, out.getvalue())
        for job in (*on_a, plain, settings_job, already):
            self.assertEqual(raw_args(job)[SEALED]["key"], KID_B, job.args)
            self.assertNotIn(SECRET, raw_row(job))
        self.assertEqual(raw_args(lost), lost_args, "a job that cannot be opened is left alone")
        # Once moved, the old key can go.
        with keys_setting(KEY_B):
            counts = drain_queue(QUEUE)
            self.assertEqual((counts["completed"], counts["failed"]), (6, 1))
        for job in (*on_a, plain, already):
            assert_ran(self, reload(job))
        self.assertEqual(fetch_recorded(reload(settings_job)),
                         {"last4": CARD[-4:], "amount": decimal.Decimal("5")})

    def test_reencrypt_with_everything_current_reports_success(self):
        SealedWorker.enqueue({"secret": SECRET})
        out = io.StringIO()
        call_command("jobs", "reencrypt", stdout=out)
        self.assertIn("resealed 0 with the first key, sealed 0 stored in plain text, "
                      "1 already current", out.getvalue())
        with keys_setting(KEY_B, KEY_A):
            self.assertEqual(reencrypt_jobs(), {"resealed": 1, "sealed": 0, "current": 0,
                                                "failed": 0})


class UniquenessTests(TestCase):
    def test_unique_by_args_is_refused_at_class_definition(self):
        for unique in ({"period": 60}, {"fields": ["args", "worker"]},
                       {"fields": ["args"], "keys": ["id"]}):
            with self.subTest(unique=unique):
                message = definition_error("UniqueArgsSealedWorker",
                                           {"encrypted": True, "unique": unique})
                self.assertIn("UniqueArgsSealedWorker", message)
                self.assertIn("an encrypted worker cannot be unique by args (the stored args "
                              "are ciphertext); make it unique by meta keys", message)

    def test_unique_by_args_is_refused_per_job(self):
        with self.assertRaisesMessage(InvalidJobError, "is encrypted: its jobs cannot be "
                                                       "unique by args (use meta keys)"):
            SealedWorker.new({"secret": SECRET}, unique={"period": 60})

    def test_unique_by_meta_works(self):
        first = SecretWorker.enqueue({"secret": "a"}, meta={"ref": 1})
        again = SecretWorker.enqueue({"secret": "b"}, meta={"ref": 1})
        other = SecretWorker.enqueue({"secret": "a"}, meta={"ref": 2})
        self.assertFalse(first.conflict)
        self.assertTrue(again.conflict)
        self.assertEqual(again.pk, first.pk)
        self.assertFalse(other.conflict)
        self.assertEqual(Job.objects.count(), 2)
        per_job = SealedWorker.enqueue({"secret": SECRET}, meta={"k": 1},
                                       unique={"fields": ["worker", "meta"], "keys": ["k"]})
        duplicate = SealedWorker.enqueue({"secret": "x"}, meta={"k": 1},
                                         unique={"fields": ["worker", "meta"], "keys": ["k"]})
        self.assertEqual((duplicate.conflict, duplicate.pk), (True, per_job.pk))


#: Keys that look like keys but are not (their text must never show in a message).
SHORT_KEY = base64.b64encode(bytes(range(100, 116))).decode()
BAD_BASE64 = KEY_B[:-3] + "!?="


class CheckTests(SimpleTestCase):
    def messages(self, errors) -> str:
        return "\n".join(f"{e.id} {e.msg} {e.hint}" for e in errors)

    def assertNoKeyMaterial(self, errors):
        text = self.messages(errors)
        for key in (KEY_A, KEY_B, KEY_C, SHORT_KEY, BAD_BASE64):
            self.assertNotIn(key, text)
            self.assertNotIn(key[:12], text)
            self.assertNotIn(base64.b64decode(key.replace("!?", "AA"))[:8].hex(), text)

    def test_the_test_settings_are_valid(self):
        self.assertEqual(check_encryption(), [])

    def test_e012_malformed_keys(self):
        cases = {
            "not a list": ("abc", ["must be a list of base64 keys, not a str"]),
            "a dict": ({"a": KEY_A}, ["must be a list of base64 keys, not a dict"]),
            "bad base64": ([KEY_A, BAD_BASE64], ["['ENCRYPTION_KEYS'][1] is not valid base64"]),
            "wrong length": ([SHORT_KEY], ["['ENCRYPTION_KEYS'][0] is 16 bytes once decoded; "
                                           "AES-256 needs 32"]),
            "not text": ([KEY_A, 12345], ["['ENCRYPTION_KEYS'][1] must be 32 bytes in base64 "
                                          "text, not a int"]),
            "empty": ([""], ["['ENCRYPTION_KEYS'][0] must be 32 bytes in base64 text"]),
            "duplicate": ([KEY_A, KEY_B, KEY_A], ["lists the same key twice"]),
            "duplicate, url-safe": ([KEY_B, KEY_B.replace("+", "-").replace("/", "_")],
                                    ["lists the same key twice"]),
        }
        for name, (keys, expected) in cases.items():
            with self.subTest(name), keys_setting(*keys) if isinstance(keys, list) else \
                    override_settings(DJANGO_JOBS={**settings.DJANGO_JOBS,
                                                   "ENCRYPTION_KEYS": keys}):
                errors = [e for e in check_encryption() if e.id == "django_jobs.E012"]
                self.assertEqual(len(errors), len(expected), self.messages(errors))
                for error, text in zip(errors, expected, strict=True):
                    self.assertIn(text, error.msg)
                    self.assertTrue(error.is_serious())
                self.assertNoKeyMaterial(check_encryption())

    def test_e013_encrypted_worker_without_a_key(self):
        with keys_setting():
            errors = check_encryption()
        names = {e.msg.split(":")[0] for e in errors}
        self.assertEqual({e.id for e in errors}, {"django_jobs.E013"})
        for worker in (SealedWorker, OtherSealedWorker, SettingsSecretWorker):
            self.assertIn(f"Encrypted worker {worker.worker_path}", names)
        self.assertNotIn(f"Encrypted worker {SecretWorker.worker_path}", names,
                         "SecretWorker has keys of its own")
        self.assertIn("DJANGO_JOBS['ENCRYPTION_KEYS'] gives no key", self.messages(errors))
        with keys_setting(SHORT_KEY):
            errors = check_encryption()
        self.assertEqual({e.id for e in errors}, {"django_jobs.E012", "django_jobs.E013"})
        self.assertNoKeyMaterial(errors)

    def test_e013_key_callable_without_a_usable_key(self):
        self.addCleanup(pro_workers.KEY_BOX.update, keys=[KEY_A])
        for keys, text in (([], "the key callable tests.pro_workers.box_keys gives no key"),
                           ([SHORT_KEY], "key 0 of the key callable tests.pro_workers.box_keys "
                                         "is 16 bytes once decoded"),
                           (None, "must be 32 bytes in base64 text, not a NoneType")):
            pro_workers.KEY_BOX["keys"] = keys
            with self.subTest(keys=keys):
                errors = check_encryption()
                self.assertEqual([e.id for e in errors], ["django_jobs.E013"])
                self.assertIn(f"Encrypted worker {BoxKeyWorker.worker_path}: {text}"
                              if keys == [] else text, errors[0].msg)
                self.assertNoKeyMaterial(errors)

    def test_e013_key_callable_that_raises(self):
        self.addCleanup(pro_workers.KEY_BOX.update, keys=[KEY_A])
        pro_workers.KEY_BOX["keys"] = KeyError("JOBS_KEY")
        errors = check_encryption()
        self.assertEqual([e.id for e in errors], ["django_jobs.E013"])


class AdminTests(QuietFailures, TestCase):
    """The list, the detail page and the search never show the plaintext."""

    def setUp(self):
        super().setUp()
        self.client.force_login(User.objects.create_superuser("admin", "a@example.com", "pw"))
        self.list_url = reverse("admin:django_jobs_job_changelist")

    def get(self, url, **params) -> str:
        response = self.client.get(url, params)
        self.assertEqual(response.status_code, 200)
        self.response = response
        return response.content.decode()

    def test_list_and_search_show_the_key_id_only(self):
        jobs = [SealedWorker.enqueue({"secret": SECRET, "n": i}, meta={"order": i})
                for i in range(3)]
        SettingsSecretWorker.enqueue({"card": CARD, "amount": "9.99"})
        html = self.get(self.list_url)
        self.assertIn(f"encrypted (key {KID_A})", html)
        self.assertEqual(html.count(f"encrypted (key {KID_A})"), 4)
        for text in (SECRET, CARD, "9.99"):
            self.assertNotIn(text, html)
        # Searching by worker, by meta: the rows show, the secret does not.
        html = self.get(self.list_url, q="SealedWorker")
        self.assertEqual(self.response.context["cl"].result_count, 3)
        self.assertNotIn(SECRET, html)
        html = self.get(self.list_url, q="meta.order:1")
        self.assertEqual([j.pk for j in self.response.context["cl"].result_list],
                         [jobs[1].pk])
        self.assertNotIn(SECRET, html)
        # The args are ciphertext: searching them finds nothing (and shows nothing).
        self.get(self.list_url, q=f"args.secret:{SECRET}")
        self.assertEqual(self.response.context["cl"].result_count, 0)
        html = self.get(self.list_url, q=f"args.card:{CARD}")
        self.assertEqual(self.response.context["cl"].result_count, 0)

    def test_the_job_page_shows_the_key_id_only(self):
        job = SettingsSecretWorker.enqueue({"card": CARD, "amount": "9.99"})
        failed = SealedWorker.enqueue({"secret": SECRET, "fail": True})
        broken = SealedWorker.enqueue({"secret": SECRET})
        tamper(broken)
        drain_queue(QUEUE)
        for each in (job, failed, broken):
            html = self.get(reverse("admin:django_jobs_job_change", args=[each.pk]))
            self.assertIn(f"Encrypted with key <code>{KID_A}</code>", html)
            for text in (SECRET, CARD):
                self.assertNotIn(text, html)
        html = self.get(reverse("admin:django_jobs_job_change", args=[broken.pk]))
        self.assertIn("DecryptionError", html)
        html = self.get(reverse("admin:django_jobs_job_change", args=[job.pk]))
        self.assertIn("Recorded result", html)
        # What perform returned is recorded, and shown (its own choice: the last 4 digits).
        self.assertIn("&#x27;last4&#x27;: &#x27;4444&#x27;", html)


class TogetherTests(QuietFailures, TestCase):
    """SettingsSecretWorker: encrypted, structured and recorded on one worker."""

    ARGS = {"card": CARD, "amount": "12.30"}
    RESULT = {"last4": "4444", "amount": decimal.Decimal("12.30")}

    def test_validated_before_sealing(self):
        with self.assertRaises(ValidationError) as caught:
            SettingsSecretWorker.enqueue({"card": "", "amount": "lots", "cvv": "123"})
        self.assertEqual(sorted(caught.exception.messages), [
            'amount: "lots" is not a finite decimal', "card: this field is required",
            "cvv: unknown field (fields: card, amount)"])
        self.assertEqual(Job.objects.count(), 0)
        with self.assertRaises(ValidationError):
            insert_all([SettingsSecretWorker.new(self.ARGS),
                        SettingsSecretWorker.new({"card": CARD})])
        self.assertEqual(Job.objects.count(), 0)

    def test_sealed_then_opened_cast_and_recorded(self):
        job = SettingsSecretWorker.enqueue(self.ARGS)
        self.assertEqual(set(raw_args(job)), {SEALED})
        self.assertEqual(open_sealed(raw_args(job), [parse_key(KEY_A)],
                                     SettingsSecretWorker.worker_path),
                         {"card": CARD, "amount": "12.30"})  # the schema's stored form
        self.assertEqual(drain_queue(QUEUE)["completed"], 1)
        job = reload(job)
        self.assertEqual(fetch_recorded(job), self.RESULT)
        self.assertNotIn(CARD, raw_row(job))
        self.assertEqual(set(job.args), {SEALED})

    def test_perform_job(self):
        self.assertEqual(perform_job(SettingsSecretWorker, self.ARGS), self.RESULT)
        self.assertEqual(perform_job(SealedWorker, {"secret": SECRET}),
                         {"sha256": digest(SECRET)})
        with self.assertRaises(ValidationError):
            perform_job(SettingsSecretWorker, {"card": CARD})

    @with_testing_mode("inline")
    def test_inline_mode(self):
        job = SettingsSecretWorker.enqueue(self.ARGS)
        self.assertEqual(job.state, "completed", job.errors)
        self.assertEqual(job.result, self.RESULT)
        self.assertEqual(fetch_recorded(job), self.RESULT)
        self.assertEqual(set(job.args), {SEALED}, "the sealed args are put back")
        sealed = SealedWorker.enqueue({"secret": SECRET})
        self.assertEqual(sealed.result, {"sha256": digest(SECRET)})
        self.assertEqual(pro_workers.SEEN, [{"secret": SECRET}])
        self.assertNotIn(SECRET, repr(sealed.args))
        self.assertEqual(Job.objects.count(), 0)


class RunjobsTests(QuietFailures, RunjobsMixin, TransactionTestCase):
    def test_runjobs_opens_good_rows_and_fails_broken_ones_alone(self):
        good, broken = break_jobs(count_ok=3)
        together = SettingsSecretWorker.enqueue({"card": CARD, "amount": "12.30"})
        rotated = SecretWorker.enqueue({"secret": "rotated"}, meta={"ref": "r"})
        set_args(rotated, seal({"secret": "rotated"}, parse_key(KEY_A),
                               SecretWorker.worker_path))  # the old key, listed second
        ids = [job.pk for job in (*good, *broken.values(), together, rotated)]
        node = self.start_runjobs("encrypted", "--queue", f"{QUEUE}=4")
        watched = Job.objects.filter(pk__in=ids)
        wait_until(lambda: watched.filter(state__in=["completed", "retryable"]).count()
                   == len(ids), 30, what="the encrypted jobs to complete or fail",
                   describe=lambda: self.runjobs_report(describe_jobs(watched)))
        self.assertTrue(node.alive(), self.runjobs_report("the node died"))
        self.stop_runjobs(node, within=30)

        for job in good:
            assert_ran(self, reload(job))
        for name, job in broken.items():
            with self.subTest(name):
                assert_decryption_failed(self, reload(job), BREAKAGES[name][1])
        self.assertEqual(fetch_recorded(reload(together)),
                         {"last4": "4444", "amount": decimal.Decimal("12.30")})
        self.assertNotIn(CARD, raw_row(together))
        self.assertEqual(fetch_recorded(reload(rotated)), {"secret": "rotated"})
        log = node.log()
        self.assertIn("started", log)
        self.assertNotIn(SECRET, log)
        self.assertNotIn(CARD, log)

    def test_manage_py_jobs_reencrypt_moves_stored_jobs_to_the_first_key(self):
        job = SecretWorker.enqueue({"secret": "rotated"}, meta={"ref": "cli"})
        set_args(job, seal({"secret": "rotated"}, parse_key(KEY_A), SecretWorker.worker_path))
        result = run_django("jobs", "reencrypt", timeout=60)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(raw_args(job)[SEALED]["key"], KID_B, result.stdout)
