"""The door's transactions and acks: a receiver's writes commit with the change and its
exception rolls the change back; ``ack`` writes a batch of outcomes in as few statements as
their groups, and reports the attempt before and after every change."""

from __future__ import annotations

from django.test import TestCase, TransactionTestCase
from django.utils import timezone

from ..engines import get_engine
from ..models import FINISHED_AT, FINISHED_STATES, Job, JobChange, error_entry
from ..outcome import Outcome
from ..transitions import ack, transition
from .support import (BY, FINISHED_COLUMNS, QUEUE, EngineMixin, ago, claim, count_statements,
                      enqueue, fresh, kinds, later, put, read_elsewhere, reload, row_values,
                      states)
from .watching import Refused, no_receivers, receive_changes
from .workers import ContractWorker

class TransitionAtomicityTests(EngineMixin, TransactionTestCase):
    """The signal is sent inside the transaction that writes the change."""

    def release(self, changes):
        """What a receiver such as a chain does: insert a job for each change."""
        for change in changes:
            ContractWorker.enqueue({"after": change.id}, queue="released")

    def released(self) -> list:
        return sorted(Job.objects.filter(queue="released").values_list("args__after",
                                                                       flat=True))

    def test_receiver_writes_commit_with_the_change(self):
        jobs = enqueue(2)
        elsewhere = []

        def receiver(changes):
            self.release(changes)
            elsewhere.append(read_elsewhere(jobs[0].pk))

        calls = receive_changes(self, receiver)
        transition(Job.objects.filter(queue=QUEUE), "cancelled",
                   only_from=["available"])
        self.assertTrue(calls[0].atomic)
        # Inside the receiver the change was not committed yet: another connection saw the
        # old state. Afterwards both the change and the receiver's rows are there.
        self.assertEqual(elsewhere, ["available"])
        self.assertEqual(read_elsewhere(jobs[0].pk), "cancelled")
        self.assertEqual(self.released(), sorted(j.pk for j in jobs))

    def test_receiver_that_raises_rolls_back_the_change(self):
        jobs = enqueue(2)

        def refuse(changes):
            self.release(changes)
            raise Refused("no")

        receive_changes(self, refuse)
        with self.assertRaises(Refused):
            transition([j.pk for j in jobs], "cancelled", only_from=["available"])
        with self.assertRaises(Refused):
            transition(Job.objects.filter(queue=QUEUE), None,
                       only_from=["available"])
        self.assertEqual(states(jobs), ["available", "available"])
        self.assertEqual(self.released(), [])

    def test_receiver_that_raises_rolls_back_each_and_ack(self):
        jobs = claim(2)

        def refuse(changes):
            self.release(changes)
            raise Refused("no")

        receive_changes(self, refuse)
        at = timezone.now()
        with self.assertRaises(Refused):
            transition(None, "completed", only_from=["executing"],
                       per_job={job.pk: {"meta": {"x": 1}} for job in jobs},
                       held={job.pk: job for job in jobs})
        with self.assertRaises(Refused):
            transition(None, "completed", only_from=["executing"],
                       per_job={job.pk: {"meta": {"x": 1}} for job in jobs})
        with self.assertRaises(Refused):
            ack([Outcome(jobs[0].pk, "completed", at, job=jobs[0]),
                Outcome(jobs[1].pk, "discarded", at, {"errors": []}, jobs[1])])
        self.assertEqual(states(jobs), ["executing", "executing"])
        self.assertEqual([row.meta for row in fresh(jobs)], [{}, {}])
        self.assertEqual(self.released(), [])


# == ack =========================================================================================


class AckTests(EngineMixin, TestCase):
    def test_completed_in_bulk_with_and_without_meta(self):
        jobs = claim(4, unique={"period": "infinity"})
        at = timezone.now()
        ack([Outcome(jobs[0].pk, "completed", at, job=jobs[0]),
            Outcome(jobs[1].pk, "completed", at, {"meta": {"r": 1}}, jobs[1]),
            Outcome(jobs[2].pk, "completed", at),
            Outcome(jobs[3].pk, "completed", at, {"meta": {"r": 3}})])
        rows = fresh(jobs)
        for row in rows:
            self.assertEqual((row.state, row.completed_at, row.cancelled_at, row.discarded_at),
                             ("completed", at, None, None))
            self.assertEqual(row.attempt, 1)
            self.assertIsNotNone(row.unique_key)  # completed is one of its unique states
        self.assertEqual([row.meta for row in rows], [{}, {"r": 1}, {}, {"r": 3}])

    def test_failures_snoozes_cancels_discards_and_put_backs(self):
        jobs = claim(6, max_attempts=3, meta={"m": 1})
        at = ago(2)
        retry_at, snooze_at = later(30, at), later(60, at)
        entries = [[error_entry(1, at, f"error {i}")] for i in range(6)]
        ack([
            Outcome(jobs[0].pk, "retryable", at, {"scheduled_at": retry_at,
                                                  "errors": entries[0]}, jobs[0]),
            Outcome(jobs[1].pk, "scheduled", at, {"scheduled_at": snooze_at, "max_attempts": 4,
                                                  "meta": {"m": 1, "snoozed": 1}}, jobs[1]),
            Outcome(jobs[2].pk, "cancelled", at, {"errors": entries[2]}, jobs[2]),
            Outcome(jobs[3].pk, "discarded", at, {"errors": entries[3]}, jobs[3]),
            Outcome(jobs[4].pk, "available", at, {"attempt": 0, "errors": entries[4]}, jobs[4]),
            Outcome(jobs[5].pk, "completed", at, job=jobs[5]),
        ])
        retryable, snoozed, cancelled, discarded, put_back, completed = fresh(jobs)
        self.assertEqual((retryable.state, retryable.scheduled_at, retryable.errors,
                          retryable.attempt), ("retryable", retry_at, entries[0], 1))
        self.assertEqual((snoozed.state, snoozed.scheduled_at, snoozed.max_attempts,
                          snoozed.meta), ("scheduled", snooze_at, 4, {"m": 1, "snoozed": 1}))
        self.assertEqual((cancelled.state, cancelled.cancelled_at, cancelled.errors),
                         ("cancelled", at, entries[2]))
        self.assertEqual((discarded.state, discarded.discarded_at, discarded.errors),
                         ("discarded", at, entries[3]))
        self.assertEqual((put_back.state, put_back.attempt, put_back.errors),
                         ("available", 0, entries[4]))
        self.assertEqual((completed.state, completed.completed_at), ("completed", at))
        for row in (retryable, snoozed, put_back):
            self.assertIsNone(row.finished_at)
        for row in (cancelled, discarded, completed):
            self.assertEqual([c for c in FINISHED_COLUMNS if getattr(row, c)],
                             [FINISHED_AT[row.state]])

    def test_an_outcome_that_changes_only_the_state(self):
        jobs = claim(2)
        at = timezone.now()
        ack([Outcome(jobs[0].pk, "retryable", at, job=jobs[0]),
            Outcome(jobs[1].pk, "retryable", at, job=jobs[1])])
        self.assertEqual(states(jobs), ["retryable", "retryable"])

    def test_a_job_no_longer_executing_is_untouched(self):
        jobs = claim(2)
        transition([jobs[0].pk], "cancelled", only_from=["executing"])
        cancelled_at = reload(jobs[0]).cancelled_at
        at = timezone.now()
        ack([Outcome(job.pk, "completed", at, {"meta": {"done": 1}}, job)
            for job in jobs])
        cancelled, completed = fresh(jobs)
        self.assertEqual((cancelled.state, cancelled.cancelled_at, cancelled.completed_at,
                          cancelled.meta), ("cancelled", cancelled_at, None, {}))
        self.assertEqual((completed.state, completed.meta), ("completed", {"done": 1}))

    def test_writing_the_same_outcomes_twice_changes_nothing(self):
        jobs = claim(3)
        at = timezone.now()
        outcomes = [Outcome(jobs[0].pk, "completed", at, job=jobs[0]),
                    Outcome(jobs[1].pk, "retryable", at, {"scheduled_at": later(5, at),
                                                          "errors": [error_entry(1, at, "x")]},
                            jobs[1]),
                    Outcome(jobs[2].pk, "discarded", at, {"errors": []}, jobs[2])]
        ack(outcomes)
        first = [row_values(row) for row in fresh(jobs)]
        calls = receive_changes(self)
        ack([Outcome(o.job_id, o.state, later(1, at), o.changes, o.job)
            for o in outcomes])
        self.assertEqual([row_values(row) for row in fresh(jobs)], first)
        self.assertEqual(calls, [])

    def test_a_batch_of_completed_jobs_is_one_statement(self):
        jobs = claim(50)
        at = timezone.now()
        outcomes = [Outcome(job.pk, "completed", at, job=job) for job in jobs]
        with no_receivers(), count_statements() as statements:
            ack(outcomes)
        self.assertEqual(kinds(statements), ["UPDATE"], statements)
        self.assertEqual(Job.objects.filter(state="completed", completed_at=at).count(), 50)

    def test_signal_reports_each_group(self):
        jobs = claim(3, meta={"m": 0})
        calls = receive_changes(self)
        at = timezone.now()
        ack([Outcome(jobs[0].pk, "completed", at, job=jobs[0]),
            Outcome(jobs[1].pk, "completed", at, {"meta": {"m": 1}}, jobs[1]),
            Outcome(jobs[2].pk, "discarded", at, {"errors": []})])
        changes = sorted((c for call in calls for c in call.changes), key=lambda c: c.id)
        # One per group: completions (with or without a meta change) and discards.
        self.assertEqual(len(calls), 2)
        self.assertEqual(changes, [
            JobChange(jobs[0].pk, jobs[0].worker, QUEUE, {"m": 0}, "executing", "completed"),
            JobChange(jobs[1].pk, jobs[1].worker, QUEUE, {"m": 1}, "executing", "completed"),
            JobChange(jobs[2].pk, jobs[2].worker, QUEUE, {"m": 0}, "executing", "discarded")])

    def test_nothing_to_ack(self):
        with count_statements() as statements:
            ack([])
        self.assertEqual(statements, [])


class AttemptReportTests(EngineMixin, TestCase):
    """Each change says the job's attempt number before and after it (what batches count
    attempts by), on every path through the door."""

    def reported(self, calls):
        return {c.id: (c.old_attempt, c.attempt) for call in calls for c in call.changes}

    def test_acks_put_backs_and_deletes_report_the_attempt(self):
        done, back = claim(2)
        calls = receive_changes(self, attempts=True)
        now = timezone.now()
        ack([Outcome(done.pk, "completed", now, job=done),
            Outcome(back.pk, "available", now, {"attempt": 0, "errors": []},
                    back)])
        self.assertEqual(self.reported(calls), {done.pk: (1, 1), back.pk: (1, 0)})
        calls.clear()
        transition([done.pk], None, only_from=FINISHED_STATES)
        self.assertEqual(self.reported(calls), {done.pk: (1, 1)})

    def test_a_put_back_of_a_second_attempt(self):
        put(enqueue(max_attempts=5), "available", attempt=1)
        [job] = get_engine().fetch_jobs(QUEUE, 1, BY, timezone.now())
        self.assertEqual(job.attempt, 2)
        calls = receive_changes(self, attempts=True)
        ack([Outcome(job.pk, "available", timezone.now(),
            {"attempt": 1, "errors": []}, job)])
        self.assertEqual(self.reported(calls), {job.pk: (2, 1)})

    def test_changes_of_rows_the_caller_does_not_hold(self):
        [job] = put(enqueue(max_attempts=5), "retryable", attempt=3)
        calls = receive_changes(self, attempts=True)
        transition([job.pk], "available", only_from=["retryable"])
        self.assertEqual(self.reported(calls), {job.pk: (3, 3)})
        calls.clear()
        transition([job.pk], "cancelled", only_from=["available"],
                   per_job={job.pk: {"attempt": 4}})
        self.assertEqual(self.reported(calls), {job.pk: (3, 4)})
