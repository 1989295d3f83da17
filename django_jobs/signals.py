"""Django signals sent by django_jobs (Oban's telemetry events).

Connect with ``@receiver(job_stopped)``; every signal is sent with ``sender`` = the worker
class (job signals) or the plugin/node object, and keyword arguments as listed. Receivers run
in the thread that ran the job or the plugin: keep them quick, and never raise (an exception
in a receiver is logged and ignored by the runtime).
"""

from django.dispatch import Signal

#: A job is about to run. Kwargs: ``job``.
job_started = Signal()
#: A job attempt ended. Kwargs: ``job``, ``state`` (the state it goes to: completed, retryable,
#: discarded, cancelled, scheduled for a snooze, available when put back at shutdown),
#: ``duration`` (seconds running), ``queue_time`` (seconds from scheduled_at to start),
#: ``result`` (what perform returned, or None).
job_stopped = Signal()
#: A running job reported its progress (``job.report_progress(value)``). Kwargs: ``job``,
#: ``progress`` (the value). Sent in the thread running the job, on every report (writes to
#: the database are throttled, signals are not). Sender: the worker class (the ``Job`` model
#: for a report made outside an attempt).
job_progress = Signal()
#: A job attempt raised or timed out. Kwargs: ``job``, ``exception``, ``traceback`` (text),
#: ``state`` (retryable or discarded), ``duration``.
job_exception = Signal()
#: The state of jobs changed: sent inside the database transaction that writes the change, after
#: the rows are written and before the commit, by every path that changes a job's state (acks
#: and snoozes, the lifeline, the stager, cancel, retry and delete from ``control`` and the
#: admin, the pruner, the testing helpers), never for the fetch (available -> executing) or an
#: insert. Kwargs: ``changes`` (a list of :class:`django_jobs.models.JobChange`: id, worker,
#: queue, meta, old and new state, new ``None`` for a deleted job) and ``using`` (the database
#: alias). Sender: the ``Job`` model. Receivers may write rows in the same transaction (release
#: the next job of a chain, insert a batch callback); an exception from a receiver rolls the
#: whole change back, so keep them small and correct. With no receiver connected, nothing is
#: read back and the hot paths stay one statement.
state_changed = Signal()
#: This node leads the cluster: sent by the leader node's leader thread about twice a second
#: (every ``LEADER_TICK``) while it holds the lease. Sender: the node. Kwargs: ``node``,
#: ``engine``, ``now``. The plugins (stager, lifeline, pruner, cron, and a project's own) are its
#: receivers; a receiver that raises is logged and never stops the others.
leader_tick = Signal()
#: A leader plugin ran. Sender: the plugin. Kwargs: ``plugin`` (name), ``result`` (dict of
#: counts), ``duration``, ``node`` (the node that leads).
plugin_ran = Signal()
#: This node became leader or stopped being leader. Kwargs: ``node``, ``leader`` (bool).
leadership_changed = Signal()
