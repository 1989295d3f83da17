"""Worker features built on the job-feature seam (:mod:`django_jobs.features`), one module
each. They are registered when the app is ready, in pipeline order: database side first,
``perform``'s side last."""

from __future__ import annotations

from ..features import register_feature
from .aliases import Aliases
from .hooks import Hooks, attach_hook, detach_hook


def register_builtin_features() -> None:
    """Register the built-in job features (once; a later call changes nothing)."""
    for feature in FEATURES:
        register_feature(feature)


#: The built-in features, in pipeline order.
FEATURES = (Aliases(), Hooks())

__all__ = ["FEATURES", "Aliases", "Hooks", "attach_hook", "detach_hook",
           "register_builtin_features"]
