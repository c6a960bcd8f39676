"""Which requesters the DHT pings back, and when (sans-I/O).

A node that sends us a request and is not an entry of our routing table is pinged back at the
datagram's source address, and enters the table when its pong arrives (see
:mod:`plexinode.dht.serving`). Every authenticated request counts, membership pings included.
Without a memory of past checks that rule repeats itself, for three reasons measured on 100
full nodes sharing one core (docs/benchmarks.md, "Overload"), where ping-backs were 3.8 of the
9.1 datagrams a node sent per second:

1. A requester in a full bucket's replacement cache is not an entry, so each of its requests
   drew a ping-back whose pong only refreshed its place in the cache (and asked again for a
   ping of the bucket's oldest entry). Once a network has more than about ``2k`` nodes the far
   buckets are full, and every member whose membership pings reach us from there was pinged
   back about once a second.
2. A ping-back is itself a request. A node that does not know us pings us back in turn, and if
   our pong reached it first our own check was already over: its ping drew a new one from us,
   whose ping drew a new one from it, and so on, two nodes in each other's replacement caches
   pinging each other back and forth.
3. Under load a ping-back times out. Forgotten at once, the requester's next request (the next
   membership ping, a second later) drew another, whose traffic added to the load that made
   it time out.

So a check is remembered, per node ID:

* one check per node at a time;
* after a check that was answered, none for ``holdoff`` seconds: the node answered one of our
  requests, so the table has taken it (it is then an entry and never checked) or kept it as a
  replacement, or refused it; asking again sooner teaches the table nothing that the liveness
  pings and the replies to our own lookups would not;
* after a check that failed, none for ``backoff`` seconds, doubling with each consecutive
  failure up to ``max_backoff``;
* and at most ``rate`` checks started per second (``burst`` at once) over all requesters, so a
  node whose checks multiply (a flood of fresh identities, a burst of joins) starts them at a
  bounded pace; the requesters skipped are checked at one of their later requests.

Memory is bounded: at most ``memory`` node IDs are remembered, the least recently checked
forgotten first; a forgotten node is checked again at its next request (one ping), so an
attacker who cycles through more identities than that gains one ping-back per identity per
cycle, within the rate.

Skipping the check of a requester that signed its request from an address already validated
(one that answered a request of ours) would save more, but is not safe: the source address of
a datagram is not covered by its signature, so anyone could plant their own ID at a validated
address of somebody else's.
"""

from __future__ import annotations

import collections
from typing import Final

from plexinode.identity import NodeId

#: Seconds without a new check of a node that answered one: the liveness interval
#: (``dht.liveness_interval``), the freshness the table keeps its entries at anyway.
HOLDOFF: Final = 900.0
#: Seconds without a new check of a node whose check failed, doubled per consecutive failure:
#: a node that timed out once because we (or it) were busy is tried again soon.
BACKOFF: Final = 30.0
#: The longest wait after failed checks.
MAX_BACKOFF: Final = 900.0
#: Checks started per second, over all requesters: each costs a ping and its pong, so 10 a
#: second is about five times the whole idle traffic of a member of a 100-node network.
RATE: Final = 10.0
#: Checks that may start at once: a burst of joins (every newcomer asks its neighbours about
#: its own ID) is checked in full, up to the serving queue (``MAX_PENDING_VERIFICATIONS``).
BURST: Final = 1024.0
#: Node IDs remembered.
MEMORY: Final = 4096

_MAX_DOUBLINGS: Final = 30


class Verifications:
    """The memory of ping-backs: whether a requester may be checked now, and what came of it.

    :meth:`begin` before a check (False: skip it), then exactly one of :meth:`cancel` (it was
    not sent after all) or :meth:`end` (it was answered, or not).

    Attributes:
        stats: ``started``, ``answered``, ``failed``, ``cancelled``, and the checks skipped:
            ``skipped_in_flight``, ``skipped_answered`` (within the hold-off of an answer),
            ``skipped_backoff`` (after failures), ``skipped_over_rate``.
    """

    __slots__ = (
        "_in_flight",
        "_memory",
        "_refilled",
        "_tokens",
        "backoff",
        "burst",
        "holdoff",
        "max_backoff",
        "memory",
        "rate",
        "stats",
    )

    def __init__(
        self,
        *,
        holdoff: float = HOLDOFF,
        backoff: float = BACKOFF,
        max_backoff: float = MAX_BACKOFF,
        rate: float = RATE,
        burst: float = BURST,
        memory: int = MEMORY,
    ) -> None:
        if min(holdoff, backoff, max_backoff, rate) < 0 or burst < 1 or memory < 1:
            raise ValueError("times and rate must be >= 0, burst and memory >= 1")
        self.holdoff = holdoff
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.rate = rate
        self.burst = burst
        self.memory = memory
        self.stats: collections.Counter[str] = collections.Counter()
        self._in_flight: set[NodeId] = set()
        # node -> (no new check before this time, consecutive failures); least recent first.
        self._memory: collections.OrderedDict[NodeId, tuple[float, int]] = collections.OrderedDict()
        self._tokens = burst
        self._refilled: float | None = None

    def __len__(self) -> int:
        """Node IDs remembered (checks in flight not included)."""
        return len(self._memory)

    def in_flight(self) -> int:
        """Checks begun and not ended or cancelled yet."""
        return len(self._in_flight)

    def begin(self, node_id: NodeId, now: float) -> bool:
        """Whether `node_id` may be checked now; if so, its check is in flight from now on."""
        if node_id in self._in_flight:
            self.stats["skipped_in_flight"] += 1
            return False
        remembered = self._memory.get(node_id)
        if remembered is not None and now < remembered[0]:
            self.stats["skipped_backoff" if remembered[1] else "skipped_answered"] += 1
            return False
        if self._refilled is not None:
            elapsed = max(0.0, now - self._refilled)
            self._tokens = min(self.burst, self._tokens + elapsed * self.rate)
        self._refilled = now
        if self._tokens < 1:
            self.stats["skipped_over_rate"] += 1
            return False
        self._tokens -= 1
        self._in_flight.add(node_id)
        self.stats["started"] += 1
        return True

    def cancel(self, node_id: NodeId) -> None:
        """A check begun was not sent (no room for it): no memory of it, its token back."""
        if node_id in self._in_flight:
            self._in_flight.discard(node_id)
            self._tokens = min(self.burst, self._tokens + 1)
            self.stats["cancelled"] += 1

    def end(self, node_id: NodeId, now: float, *, answered: bool) -> None:
        """The check of `node_id` is over: it was answered, or it failed."""
        self._in_flight.discard(node_id)
        if answered:
            failures, wait = 0, self.holdoff
            self.stats["answered"] += 1
        else:
            previous = self._memory.get(node_id)
            failures = 1 if previous is None else previous[1] + 1
            doublings = min(failures - 1, _MAX_DOUBLINGS)
            wait = min(self.max_backoff, self.backoff * 2.0**doublings)
            self.stats["failed"] += 1
        self._memory.pop(node_id, None)
        self._memory[node_id] = (now + wait, failures)
        if len(self._memory) > self.memory:
            self._memory.popitem(last=False)
