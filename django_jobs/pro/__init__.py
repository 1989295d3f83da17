"""Worker features built on the job-feature seam (:mod:`django_jobs.features`), one module
each. They are registered when the app is ready, in pipeline order: database side first,
``perform``'s side last."""

from __future__ import annotations

from ..features import register_feature
from .aliases import Aliases
from .encrypted import Encrypted
from .hooks import Hooks, attach_hook, detach_hook
from .recorded import Recorded, fetch_recorded
from .structured import Structured


def register_builtin_features() -> None:
    """Register the built-in job features (once; a later call changes nothing)."""
    for feature in FEATURES:
        register_feature(feature)


#: The built-in features, in pipeline order (database side first): encryption seals last at
#: build and opens first at run, the schema casts the opened args, hooks see typed args and
#: the final state, and the recorded result is settled before the hooks see it.
FEATURES = (Aliases(), Encrypted(), Structured(), Hooks(), Recorded())

__all__ = ["FEATURES", "Aliases", "Encrypted", "Hooks", "Recorded", "Structured", "attach_hook",
           "detach_hook", "fetch_recorded", "register_builtin_features"]
