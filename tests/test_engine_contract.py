"""The engine contract suite (:mod:`django_jobs.contract`) against our engines.

The suite runs against the engine of the database this test run uses (``get_engine()``: SQLite,
or PostgreSQL with ``DATABASE_URL``), and CI runs the test suite once per database, so one set
of tests checks both engines, as a third-party engine's project runs it against its own
(docs/engines.md). tests/test_engine_registration.py runs it against an engine registered
with ``register_engine``.
"""

from django_jobs.contract import *  # noqa: F403
