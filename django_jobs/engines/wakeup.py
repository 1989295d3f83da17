"""In-process wake-ups: producers register here; inserts made in this process wake them."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable

_lock = threading.Lock()
_listeners: dict[str, list[Callable[[], None]]] = {}


def register(queue: str, wake: Callable[[], None]) -> None:
    with _lock:
        _listeners.setdefault(queue, []).append(wake)


def unregister(queue: str, wake: Callable[[], None]) -> None:
    with _lock:
        if wake in _listeners.get(queue, []):
            _listeners[queue].remove(wake)


def listening(queue: str) -> bool:
    """Whether anything in this process waits for inserts into ``queue`` (a lock-free
    peek: a waiter registering meanwhile also looks at the table itself)."""
    return bool(_listeners.get(queue))


def wake_local(queues: Iterable[str]) -> None:
    """Wake the producers of ``queues`` running in this process, if any."""
    with _lock:
        callbacks = [cb for queue in queues for cb in _listeners.get(queue, ())]
    for callback in callbacks:
        callback()
