"""The membership service's nursery, as its handlers and jobs start tasks in it while it may be
closing.

Membership's request handlers (``member-ping``, ``member-ping-req`` and gossip datagrams, the
``member-ping/1`` stream) run in the nurseries of the datagram and stream services, not in
membership's own. When the node stops, every nursery is cancelled at once, so a request that
arrives (or was already being handled) while membership's nursery is closing may still want to
start a task there: a ping on behalf of a ``member-ping-req``, or saving the incarnation of a
refutation. trio refuses that once the nursery has closed ("Nursery is closed to new
arrivals"), which used to end the handler with a traceback in the log.

:class:`Tasks` is told when the nursery is closing: the service's own task, which waits in the
nursery's body, calls :meth:`Tasks.close` on its way out when it is cancelled, before the
nursery can close. From then on requests are dropped quietly and tasks are not started, and both
are counted (:data:`DROPPED_STOPPING`, shown in ``status`` under ``membership.claims``). It is
the service's own task rather than a watcher task of its own, because simulations replay from
trio's seeded scheduler, and one more task per node changes every run.
"""

from __future__ import annotations

import collections
from collections.abc import Awaitable, Callable
from typing import Any, Final

import trio

#: The counter of requests dropped, and tasks not started, while the service was stopping.
DROPPED_STOPPING: Final = "dropped_stopping"


class Tasks:
    """Starts tasks in the membership service's nursery until it begins to close.

    Args:
        stats: The service's counters (:data:`DROPPED_STOPPING` is counted there).
    """

    def __init__(self, stats: collections.Counter[str]) -> None:
        self._stats = stats
        self._nursery: trio.Nursery | None = None
        self._stopping = False

    def open(self, nursery: trio.Nursery) -> None:
        """Start tasks in `nursery` from now on, until :meth:`close`."""
        self._nursery = nursery

    def close(self) -> None:
        """The nursery is being cancelled: start nothing more in it (called by the task that
        waits in the nursery's body, before the nursery can close)."""
        self._stopping = True

    @property
    def stopping(self) -> bool:
        """True once the nursery is being cancelled (the node is stopping)."""
        return self._stopping

    def drop_if_stopping(self) -> bool:
        """For a request handler: True (and counted) if the request must be dropped because
        the service is stopping."""
        if self._stopping:
            self._stats[DROPPED_STOPPING] += 1
        return self._stopping

    def start_soon(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> bool:
        """Start ``fn(*args)`` in the nursery (:meth:`open` first); False (and counted) if it
        is closing."""
        assert self._nursery is not None, "Tasks.open() first"
        if self._stopping:
            self._stats[DROPPED_STOPPING] += 1
            return False
        self._nursery.start_soon(fn, *args)
        return True
