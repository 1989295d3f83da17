"""The engine contract suite: what :class:`django_jobs.engines.base.Engine` promises, as tests
any engine can run (as River's ``riverdrivertest.Exercise`` runs against every driver).

Every test runs against the engine :func:`django_jobs.engines.get_engine` returns for the
default database: the engine registered for its ``connection.vendor`` (ours for SQLite and
PostgreSQL, or yours, registered with :func:`django_jobs.engines.register_engine`). A test that
only makes sense where the engine has a capability (``has_listen_notify``, row locks) skips
itself elsewhere and says why. To run the whole suite, import it into a test module of your
project::

    from django_jobs.contract import *  # noqa: F403

or take the test case classes from :func:`contract_tests` to build a suite of your own. The
tests need a migrated test database (Django's test runner makes one) with ``django_jobs`` in
``INSTALLED_APPS``; they insert jobs of :class:`~django_jobs.contract.workers.ContractWorker`
and leave nothing behind.

The modules, by what they check: :mod:`.services` (capabilities and small services),
:mod:`.inserting`, :mod:`.fetching` (and ``serialize``), :mod:`.primitives` (the door's
primitives), :mod:`.door` and :mod:`.acks` (the door's behaviour over them), :mod:`.leader`
(leadership and the leader's statements), :mod:`.notify` (waking producers, announcing).
"""

from __future__ import annotations

from django.test import SimpleTestCase

from .acks import AckTests, AttemptReportTests, TransitionAtomicityTests
from .door import TransitionSignalTests, TransitionTests
from .fetching import ConcurrentFetchTests, FetchTests, SerializeTests
from .inserting import InsertTests
from .leader import LeadershipRaceTests, LeadershipTests
from .notify import NotifyTests
from .primitives import (DeleteJobsTests, LockJobsLockTests, LockJobsTests, UpdateEachTests,
                         UpdateJobsTests)
from .services import BusyTests, CapabilityTests, ServiceTests

__all__ = [
    "AckTests", "AttemptReportTests", "BusyTests", "CapabilityTests", "ConcurrentFetchTests",
    "DeleteJobsTests", "FetchTests", "InsertTests", "LeadershipRaceTests", "LeadershipTests",
    "LockJobsLockTests", "LockJobsTests", "NotifyTests",
    "SerializeTests", "ServiceTests", "TransitionAtomicityTests",
    "TransitionSignalTests", "TransitionTests", "UpdateEachTests", "UpdateJobsTests",
]


def contract_tests() -> tuple[type[SimpleTestCase], ...]:
    """Every test case class of the contract, in the order of the modules above: capabilities
    first, then inserting, fetching, the door's primitives and the door, leadership,
    notifications."""
    return (CapabilityTests, ServiceTests, BusyTests, InsertTests, FetchTests,
            ConcurrentFetchTests, SerializeTests, LockJobsTests, LockJobsLockTests,
            UpdateJobsTests, DeleteJobsTests, UpdateEachTests, TransitionTests,
            TransitionSignalTests, TransitionAtomicityTests, AckTests, AttemptReportTests,
            LeadershipTests, LeadershipRaceTests, NotifyTests)
