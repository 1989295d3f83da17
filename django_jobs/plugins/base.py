"""Leader plugins: periodic cluster-wide work that only the leader does."""

from __future__ import annotations

import datetime
from typing import Any

from ..engines import Engine


class Plugin:
    """A periodic task of the leader. ``run`` returns counts for the ``plugin_ran`` signal."""

    name = ""
    #: Seconds between runs.
    interval: float = 1.0

    def run(self, engine: Engine, now: datetime.datetime) -> dict[str, Any]:
        raise NotImplementedError
