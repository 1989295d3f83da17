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
#: A job attempt raised or timed out. Kwargs: ``job``, ``exception``, ``traceback`` (text),
#: ``state`` (retryable or discarded), ``duration``.
job_exception = Signal()
#: A leader plugin ran. Kwargs: ``plugin`` (name), ``result`` (dict of counts), ``duration``.
plugin_ran = Signal()
#: This node became leader or stopped being leader. Kwargs: ``node``, ``leader`` (bool).
leadership_changed = Signal()
