from .job import FINISHED_STATES, STATE_BITS, Job, JobState
from .peer import Peer
from .producer import Producer

__all__ = ["FINISHED_STATES", "STATE_BITS", "Job", "JobState", "Peer", "Producer"]
