"""The door over the engine's primitives: ``transition`` filters on ``only_from``, writes
plain values, expressions and per-job values, deletes, follows the ``unique_key`` and
finished-timestamp rules, and sends ``state_changed`` with the changes it made.

The door (:mod:`django_jobs.transitions`) decides; these tests check that what it decided is
what the engine's ``lock_jobs``, ``update_jobs``, ``update_each`` and ``delete_jobs`` wrote.
"""

from __future__ import annotations

from django.db.models import F, Value
from django.db.models.functions import Greatest
from django.test import TestCase
from django.utils import timezone

from .. import signals
from ..models import FINISHED_AT, STATE_BITS, Job, JobChange, JobState, error_entry
from ..transitions import WRITE_CHUNK, transition
from .support import (FINAL, FINISHED_COLUMNS, NOT_FINAL, QUEUE, EngineMixin, ago, claim,
                      count_statements, enqueue, fresh, kinds, later, put, reload, states)
from .watching import no_receivers, receive_changes

class TransitionTests(EngineMixin, TestCase):
    def test_only_from_filters_and_returns_the_count(self):
        available = enqueue(3)
        [scheduled] = put(enqueue(start=10), "scheduled", scheduled_at=later(60))
        [completed] = put(enqueue(start=20), "completed", completed_at=ago(5))
        everything = [*available, scheduled, completed]
        count = transition([j.pk for j in everything], "cancelled",
                           only_from=["available", "scheduled"])
        self.assertEqual(count, 4)
        self.assertEqual(states(everything), ["cancelled"] * 4 + ["completed"])
        self.assertEqual(reload(completed).completed_at, completed.completed_at)
        # Nothing left to change: writing it again changes nothing.
        self.assertEqual(transition([j.pk for j in everything], "cancelled",
                                    only_from=["available", "scheduled"]), 0)

    def test_queryset_target(self):
        mine = enqueue(2)
        [other] = enqueue(queue="other")
        count = transition(Job.objects.filter(queue=QUEUE), "suspended",
                           only_from=["available"])
        self.assertEqual(count, 2)
        self.assertEqual(states([*mine, other]), ["suspended", "suspended", "available"])

    def test_values_plain_and_expressions(self):
        jobs = put(enqueue(2, max_attempts=3), "discarded", attempt=3, discarded_at=ago(5))
        [low] = put(enqueue(max_attempts=3, start=5), "discarded", attempt=1,
                    discarded_at=ago(5))
        at = later(10)
        entry = error_entry(3, at, "an error")
        count = transition([*(j.pk for j in jobs), low.pk], "available",
                           only_from=["discarded"], columns={
                               "scheduled_at": at, "errors": [entry],
                               "max_attempts": Greatest(F("max_attempts"),
                                                        F("attempt") + 1),
                               "priority": F("priority") + Value(2)})
        self.assertEqual(count, 3)
        for row in fresh(jobs):
            self.assertEqual((row.state, row.scheduled_at, row.errors, row.max_attempts,
                              row.priority), ("available", at, [entry], 4, 2))
        self.assertEqual(reload(low).max_attempts, 3)

    def test_each_sets_values_per_job(self):
        jobs = claim(3)
        at = timezone.now()
        each = {job.pk: {"errors": [error_entry(1, at, f"error {i}")],
                         "scheduled_at": later(i + 1, at)} for i, job in enumerate(jobs)}
        count = transition(None, "retryable", only_from=["executing"], per_job=each)
        self.assertEqual(count, 3)
        for i, row in enumerate(fresh(jobs)):
            self.assertEqual(row.state, "retryable")
            self.assertEqual(row.errors, each[row.pk]["errors"])
            self.assertEqual(row.scheduled_at, later(i + 1, at))

    def test_each_with_shared_plain_values(self):
        jobs = claim(2)
        at = timezone.now()
        count = transition(
            None, "available", only_from=["executing"],
            columns={"scheduled_at": at, "attempt": 0, "priority": 4},
            per_job={job.pk: {"errors": [error_entry(1, at, f"back {job.pk}")]} for job in jobs})
        self.assertEqual(count, 2)
        for row in fresh(jobs):
            self.assertEqual((row.state, row.scheduled_at, row.attempt, row.priority),
                             ("available", at, 0, 4))
            self.assertEqual(row.errors[0]["error"], f"back {row.pk}")

    def test_each_with_shared_json_values(self):
        jobs = put(claim(2), "executing", errors=[error_entry(1, ago(5), "old")])
        at = timezone.now()
        count = transition(
            None, "retryable", only_from=["executing"],
            columns={"errors": [], "meta": {"shared": True}},
            per_job={job.pk: {"scheduled_at": later(i, at)} for i, job in enumerate(jobs)})
        self.assertEqual(count, 2)
        for i, row in enumerate(fresh(jobs)):
            self.assertEqual((row.state, row.errors, row.meta, row.scheduled_at),
                             ("retryable", [], {"shared": True}, later(i, at)))

    def test_each_leaves_jobs_outside_only_from(self):
        jobs = claim(3)
        [cancelled] = put(jobs[1:2], "cancelled", cancelled_at=ago(1))
        each = {job.pk: {"errors": [error_entry(1, timezone.now(), "x")]} for job in jobs}
        self.assertEqual(transition(None, "retryable", only_from=["executing"],
                                    per_job=each), 2)
        self.assertEqual(states(jobs), ["retryable", "cancelled", "retryable"])
        self.assertEqual(reload(cancelled).errors, [])
        self.assertEqual(transition(None, "retryable", only_from=["executing"],
                                    per_job={}), 0)

    def test_each_is_one_statement_per_write_chunk(self):
        jobs = claim(WRITE_CHUNK + 1)
        each = {job.pk: {"meta": {"i": i}} for i, job in enumerate(jobs)}
        with no_receivers(), count_statements() as statements:
            count = transition(None, "completed", only_from=["executing"],
                               per_job=each)
        self.assertEqual(count, WRITE_CHUNK + 1)
        self.assertEqual(kinds(statements), ["UPDATE", "UPDATE"])
        self.assertEqual(dict(Job.objects.filter(state="completed").values_list("pk", "meta")),
                         {pk: values["meta"] for pk, values in each.items()})

    def test_state_none_deletes(self):
        jobs = put(enqueue(3), "completed", completed_at=ago(5))
        [running] = claim()
        count = transition([*(j.pk for j in jobs), running.pk], None,
                           only_from=FINAL)
        self.assertEqual(count, 3)
        self.assertEqual(states([*jobs, running]), [None, None, None, "executing"])
        self.assertEqual(transition(Job.objects.all(), None, only_from=FINAL), 0)

    def test_unique_key_kept_only_while_the_new_state_is_a_unique_state(self):
        unique = {"period": "infinity", "states": ["available", "scheduled", "executing",
                                                   "completed"]}
        for n, state in enumerate(JobState.values):
            with self.subTest(state=state):
                [job] = enqueue(unique=unique, start=n)
                self.assertIsNotNone(job.unique_key)
                transition([job.pk], state, only_from=["available"])
                row = reload(job)
                self.assertEqual(row.state, state)
                kept = job.unique_key if job.unique_states & STATE_BITS[state] else None
                self.assertEqual((row.unique_key, row.unique_slot), (kept, kept))
        # A job that gave up its key never gets it back (it cannot collide with a new holder).
        [job] = enqueue(unique=unique, start=100)
        transition([job.pk], "cancelled", only_from=["available"])
        transition([job.pk], "available", only_from=["cancelled"])
        self.assertEqual((reload(job).state, reload(job).unique_key), ("available", None))
        # Through each too.
        [job] = claim(queue="each", unique={"period": "infinity",
                                            "states": ["available", "executing"]})
        transition(None, "completed", only_from=["executing"],
                   per_job={job.pk: {"meta": {}}})
        self.assertIsNone(reload(job).unique_key)

    def test_final_state_sets_its_timestamp_and_clears_the_others(self):
        stamped = {column: ago(100) for column in FINISHED_COLUMNS}
        for state in FINAL:
            for given in (None, ago(30)):
                with self.subTest(state=state, given=given):
                    [job] = put(enqueue(), "suspended", **stamped)
                    values = {FINISHED_AT[state]: given} if given else {}
                    before = timezone.now()
                    transition([job.pk], state, only_from=["suspended"],
                               columns=values)
                    after = timezone.now()
                    row = reload(job)
                    for column in FINISHED_COLUMNS:
                        if column != FINISHED_AT[state]:
                            self.assertIsNone(getattr(row, column), column)
                    if given:
                        self.assertEqual(getattr(row, FINISHED_AT[state]), given)
                    else:
                        self.assertTrue(before <= getattr(row, FINISHED_AT[state]) <= after)
                    self.assertEqual(row.finished_at, getattr(row, FINISHED_AT[state]))

    def test_non_final_state_clears_every_finished_timestamp(self):
        stamped = {column: ago(100) for column in FINISHED_COLUMNS}
        for state in NOT_FINAL:
            with self.subTest(state=state):
                [job] = put(enqueue(), "completed", **stamped)
                transition([job.pk], state, only_from=["completed"])
                row = reload(job)
                self.assertEqual(row.state, state)
                self.assertEqual([getattr(row, c) for c in FINISHED_COLUMNS], [None] * 3)
                self.assertIsNone(row.finished_at)

    def test_finished_timestamps_through_each(self):
        jobs = claim(2)
        at = ago(3)
        transition(None, "discarded", only_from=["executing"],
                   per_job={job.pk: {"discarded_at": at} for job in jobs})
        for row in fresh(jobs):
            self.assertEqual((row.state, row.discarded_at, row.completed_at, row.cancelled_at),
                             ("discarded", at, None, None))


class TransitionSignalTests(EngineMixin, TestCase):
    def change(self, job, old, new, meta=None) -> JobChange:
        return JobChange(job.pk, job.worker, job.queue, job.meta if meta is None else meta,
                         old, new)

    def test_without_receivers_nothing_is_read_back(self):
        jobs = enqueue(3)
        with no_receivers():
            self.assertFalse(signals.state_changed.has_listeners())
            with count_statements() as statements:
                count = transition(Job.objects.filter(queue=QUEUE), "cancelled",
                                   only_from=["available"])
        self.assertEqual(count, 3)
        self.assertEqual(kinds(statements), ["UPDATE"])
        self.assertEqual(states(jobs), ["cancelled"] * 3)

    def test_queryset_target_sends_one_signal_with_the_changes(self):
        jobs = enqueue(2, meta={"m": 1})
        [scheduled] = put(enqueue(start=5), "scheduled", scheduled_at=later(60))
        put(enqueue(start=9), "completed", completed_at=ago(1))
        calls = receive_changes(self)
        count = transition(Job.objects.filter(queue=QUEUE), "cancelled",
                           only_from=["available", "scheduled"])
        self.assertEqual(count, 3)
        self.assertEqual(len(calls), 1)
        self.assertIs(calls[0].sender, Job)
        self.assertEqual(calls[0].using, self.engine.alias)
        self.assertTrue(calls[0].atomic)
        self.assertEqual(sorted(calls[0].changes, key=lambda c: c.id), [
            self.change(jobs[0], "available", "cancelled"),
            self.change(jobs[1], "available", "cancelled"),
            self.change(scheduled, "scheduled", "cancelled")])

    def test_id_target_reports_the_meta_after_the_change(self):
        jobs = enqueue(2, meta={"m": 1})
        calls = receive_changes(self)
        transition([j.pk for j in jobs], "suspended", only_from=["available"],
                   columns={"meta": {"m": 2}})
        self.assertEqual(len(calls), 1)
        self.assertEqual(sorted(calls[0].changes, key=lambda c: c.id),
                         [self.change(job, "available", "suspended", {"m": 2}) for job in jobs])
        self.assertEqual([row.meta for row in fresh(jobs)], [{"m": 2}] * 2)

    def test_nothing_changed_no_signal(self):
        [job] = put(enqueue(), "completed", completed_at=ago(1))
        calls = receive_changes(self)
        self.assertEqual(transition([job.pk], "cancelled",
                                    only_from=["available"]), 0)
        self.assertEqual(transition(None, "cancelled", only_from=["available"],
                                    per_job={job.pk: {"meta": {}}}), 0)
        self.assertEqual(transition(None, "cancelled", only_from=["available"],
                                    per_job={job.pk: {"meta": {}}},
                                    held={job.pk: job}), 0)
        self.assertEqual(transition([job.pk], None, only_from=["available"]), 0)
        self.assertEqual(calls, [])
        self.assertEqual(reload(job).state, "completed")

    def test_delete_reports_new_state_none(self):
        jobs = put(enqueue(2), "completed", completed_at=ago(1))
        [running] = claim()
        calls = receive_changes(self)
        count = transition([*(j.pk for j in jobs), running.pk], None,
                           only_from=FINAL)
        self.assertEqual(count, 2)
        self.assertEqual(len(calls), 1)
        self.assertEqual(sorted(calls[0].changes, key=lambda c: c.id),
                         [self.change(job, "completed", None) for job in jobs])
        self.assertEqual(states([*jobs, running]), [None, None, "executing"])

    def test_each_without_known_reads_the_jobs(self):
        jobs = claim(3, meta={"m": 0})
        [cancelled] = put(jobs[2:], "cancelled", cancelled_at=ago(1))
        calls = receive_changes(self)
        each = {job.pk: {"meta": {"m": i}} for i, job in enumerate(jobs)}
        count = transition(None, "completed", only_from=["executing"], per_job=each)
        self.assertEqual(count, 2)
        self.assertEqual(len(calls), 1)
        self.assertEqual(sorted(calls[0].changes, key=lambda c: c.id), [
            self.change(jobs[0], "executing", "completed", {"m": 0}),
            self.change(jobs[1], "executing", "completed", {"m": 1})])
        self.assertEqual(states(jobs), ["completed", "completed", "cancelled"])
        self.assertEqual(reload(cancelled).meta, {"m": 0})

    def test_each_with_known_reports_only_the_jobs_that_changed(self):
        jobs = claim(3, meta={"m": 0})
        put(jobs[1:2], "cancelled", cancelled_at=ago(1))
        calls = receive_changes(self)
        at = timezone.now()
        each = {job.pk: {"errors": [error_entry(1, at, "x")]} for job in jobs}
        count = transition(None, "retryable", only_from=["executing"], per_job=each,
                           held={job.pk: job for job in jobs})
        self.assertEqual(count, 2)
        self.assertEqual(len(calls), 1)
        self.assertEqual(sorted(calls[0].changes, key=lambda c: c.id), [
            self.change(jobs[0], "executing", "retryable"),
            self.change(jobs[2], "executing", "retryable")])
        self.assertEqual(states(jobs), ["retryable", "cancelled", "retryable"])

    def test_one_signal_per_call_whatever_the_chunks(self):
        jobs = claim(WRITE_CHUNK + 2)
        calls = receive_changes(self)
        transition(None, "completed", only_from=["executing"],
                   per_job={job.pk: {"meta": {}} for job in jobs},
                   held={job.pk: job for job in jobs})
        self.assertEqual(len(calls), 1)
        self.assertEqual(sorted(c.id for c in calls[0].changes), sorted(j.pk for j in jobs))

    def test_receiver_sees_the_change_written(self):
        jobs = enqueue(2)
        seen = []
        receive_changes(self, lambda changes: seen.extend(states(jobs)))
        transition([j.pk for j in jobs], "cancelled", only_from=["available"])
        self.assertEqual(seen, ["cancelled", "cancelled"])
