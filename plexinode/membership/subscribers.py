"""Membership events for the services that follow them (trio): a memory channel each.

A subscriber must keep reading: beyond its buffer, new events are dropped for it (and counted
in the membership counters as ``events_dropped``) rather than stalling membership for
everyone. Closing its channel unsubscribes it.
"""

from __future__ import annotations

import collections
from typing import Final

import trio

from plexinode.membership.beliefs import Event

#: Events buffered per subscriber, by default.
EVENT_BUFFER: Final = 1024


class Subscribers:
    """The channels membership events go to.

    Args:
        stats: The membership counters (``events_dropped``).
    """

    def __init__(self, stats: collections.Counter[str]) -> None:
        self._stats = stats
        self._channels: list[trio.MemorySendChannel[Event]] = []

    def subscribe(self, buffer: int = EVENT_BUFFER) -> trio.MemoryReceiveChannel[Event]:
        """A new channel of every event from now on, holding up to `buffer` unread."""
        send, receive = trio.open_memory_channel[Event](buffer)
        self._channels.append(send)
        return receive

    def publish(self, event: Event) -> None:
        """Hand `event` to every subscriber that has room for it."""
        for channel in list(self._channels):
            try:
                channel.send_nowait(event)
            except trio.WouldBlock:
                self._stats["events_dropped"] += 1
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._channels.remove(channel)
