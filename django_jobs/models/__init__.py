from .batch import Batch
from .cron import CronEntry, CronSource
from .job import (FINISHED_AT, FINISHED_STATES, STATE_BITS, Job, JobChange, JobState, error_entry,
                  unique_key_after, unique_key_sql)
from .peer import Peer
from .producer import Producer, QueueCommand

__all__ = [
                  "FINISHED_AT",
                  "FINISHED_STATES",
                  "STATE_BITS",
                  "Batch",
                  "CronEntry",
                  "CronSource",
                  "Job",
                  "JobChange",
                  "JobState",
                  "Peer",
                  "Producer",
                  "QueueCommand",
                  "error_entry",
                  "unique_key_after",
                  "unique_key_sql",
]
