"""The gossip queue: which claims to piggyback on the next message, and how often.

SWIM disseminates membership changes by piggybacking them on the probe traffic that flows
anyway (section 4.1 of the paper), each one a limited number of times: enough that, with every
member passing it to a random member each period, it reaches everyone with high probability,
and no more, so the bandwidth stays flat. As in memberlist, the limit is
``retransmit_mult * ceil(log10(N + 1))`` transmissions per claim, with N the number of live
members.

Rules, in order:

1. **Newest first, least sent first.** Each message carries the claims sent the fewest times,
   newest first among equals: a fresh change overtakes old news.
2. **One claim per member.** A claim about a member replaces any queued claim about the same
   member (the table already decided which one wins; the queue only carries the winner).
3. **Bounded.** At most ``max_queued`` claims wait; beyond, the most-sent are dropped first
   (they have travelled the most), and the count of drops is kept. A flood of claims about
   invented members therefore costs a fixed amount of memory.
4. **Sized to fit.** :meth:`GossipQueue.take` fills a byte budget (what is left of a datagram)
   and never splits a claim.

The queue holds claims as they travel (signed wire structures, or their encodings in tests),
each with its encoded size: what travels is exactly what the member or the accuser signed.
"""

from __future__ import annotations

import bisect
import collections
import itertools
import math
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")

#: A take stops looking for a claim small enough for the room left after skipping this many
#: that were too big (the room left is then small, and the rest of the queue may be long).
MAX_SKIPPED = 32


def retransmit_limit(retransmit_mult: int, live_members: int) -> int:
    """How many times each claim is sent: ``mult * ceil(log10(N + 1))``, at least once."""
    return max(1, retransmit_mult * math.ceil(math.log10(max(live_members, 0) + 1)))


@dataclass(slots=True)
class _Queued(Generic[T]):
    subject: Hashable
    item: T
    size: int
    sent: int
    order: int  # higher is newer


class GossipQueue(Generic[T]):
    """Claims waiting to be piggybacked, each at most ``retransmit_limit`` times.

    Args:
        size: The encoded size of a claim, in bytes.
        retransmit_mult: Lambda, the multiplier of the retransmission limit.
        max_queued: Most claims held at once.
    """

    def __init__(
        self, size: Callable[[T], int], retransmit_mult: int = 4, max_queued: int = 1024
    ) -> None:
        if retransmit_mult < 1 or max_queued < 1:
            raise ValueError("retransmit_mult and max_queued must be >= 1")
        self._size = size
        self.retransmit_mult = retransmit_mult
        self.max_queued = max_queued
        self._by_subject: dict[Hashable, _Queued[T]] = {}
        # The queued claims by times sent: _levels[n] holds the orders of the claims sent n
        # times, ascending (so newest last), and _by_order finds the claim of an order. A take
        # walks the levels up from 0, each from its end, and stops as soon as the message is
        # full: its cost does not grow with the queue, which matters when a burst of joins
        # fills it (sorting the whole queue for every message did, measurably).
        self._levels: list[list[int]] = []
        self._by_order: dict[int, _Queued[T]] = {}
        self._order = itertools.count()
        #: Claims replaced by newer ones, dropped for room, or retired after their last send.
        self.stats: collections.Counter[str] = collections.Counter()

    def __len__(self) -> int:
        return len(self._by_subject)

    def _level(self, sent: int) -> list[int]:
        while len(self._levels) <= sent:
            self._levels.append([])
        return self._levels[sent]

    def _unlink(self, queued: _Queued[T]) -> None:
        level = self._levels[queued.sent]
        del level[bisect.bisect_left(level, queued.order)]
        del self._by_order[queued.order]
        del self._by_subject[queued.subject]

    def add(self, subject: Hashable, item: T) -> None:
        """Queue the claim about `subject` (a member, a state key), replacing any queued one
        about it."""
        old = self._by_subject.get(subject)
        if old is not None:
            self.stats["replaced"] += 1
            self._unlink(old)
        queued = _Queued(subject, item, self._size(item), 0, next(self._order))
        self._by_subject[subject] = queued
        self._by_order[queued.order] = queued
        self._level(0).append(queued.order)  # the newest order: the end keeps it sorted
        if len(self._by_subject) > self.max_queued:
            # The most sent, oldest among those: it has travelled the most.
            level = next(lvl for lvl in reversed(self._levels) if lvl)
            self._unlink(self._by_order[level[0]])
            self.stats["dropped_full"] += 1

    def take(self, budget: int, live_members: int, *, overhead: int = 0) -> list[T]:
        """The claims for one message: least sent first, newest first among equals, as many
        as fit in `budget` bytes counting `overhead` extra bytes per claim (its framing).

        Every claim taken counts one transmission; a claim that reached the retransmission
        limit leaves the queue.
        """
        limit = retransmit_limit(self.retransmit_mult, live_members)
        chosen: list[_Queued[T]] = []
        left = budget
        skipped = 0
        for level in self._levels:
            for order in reversed(level):
                if left <= overhead or skipped > MAX_SKIPPED:
                    break
                queued = self._by_order[order]
                size = queued.size + overhead
                if size <= left:
                    left -= size
                    chosen.append(queued)
                else:
                    skipped += 1
            if left <= overhead or skipped > MAX_SKIPPED:
                break
        for queued in chosen:
            level = self._levels[queued.sent]
            del level[bisect.bisect_left(level, queued.order)]
            queued.sent += 1
            if queued.sent >= limit:
                del self._by_order[queued.order]
                del self._by_subject[queued.subject]
                self.stats["retired"] += 1
            else:
                bisect.insort(self._level(queued.sent), queued.order)
        return [queued.item for queued in chosen]
