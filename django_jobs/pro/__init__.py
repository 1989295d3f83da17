"""Worker features built on the job-feature seam (:mod:`django_jobs.features`), one module
each. They are registered when the app is ready, in pipeline order: database side first,
``perform``'s side last."""

from __future__ import annotations

from ..features import register_feature
from ..plugins.base import connected_plugins
from .aliases import Aliases
from .batch import BatchFeature, BatchSweep, BatchWorker, all_batch_jobs, stream_batch_jobs
from .chain import Chain, ChainSweep
from .deadline import Deadline
from .encrypted import Encrypted
from .hooks import Hooks, attach_hook, detach_hook
from .recorded import Recorded, fetch_recorded
from .structured import Structured


def register_builtin_features() -> None:
    """Register the built-in job features (once; a later call changes nothing)."""
    for feature in FEATURES:
        register_feature(feature)
    connected = {p.name for p in connected_plugins()}
    for plugin in (ChainSweep, BatchSweep):
        if plugin.name not in connected:
            plugin().connect()


#: The built-in features, in pipeline order (database side first): a job past its deadline is
#: cancelled before anything is opened; encryption seals last at build and opens first at run;
#: the chain id is taken from the args the schema normalised, before they are sealed; the
#: schema casts the opened args; hooks see typed args and the final state; the recorded result
#: is settled before the hooks see it.
FEATURES = (Aliases(), Deadline(), Encrypted(), Chain(), BatchFeature(), Structured(), Hooks(),
            Recorded())

__all__ = [
    "FEATURES",
    "Aliases",
    "BatchFeature",
    "BatchSweep",
    "BatchWorker",
    "Chain",
    "ChainSweep",
    "Deadline",
    "Encrypted",
    "Hooks",
    "Recorded",
    "Structured",
    "all_batch_jobs",
    "attach_hook",
    "detach_hook",
    "fetch_recorded",
    "register_builtin_features",
    "stream_batch_jobs",
]
