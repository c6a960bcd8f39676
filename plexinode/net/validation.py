"""Source-address validation and the reply budget of unvalidated sources (sans-I/O).

The source address of a datagram is not covered by its signature: anyone can send a request
in a victim's name from a forged address, and have us answer the victim. Unchecked, a small
request that draws a large reply makes us an amplifier (a 176-byte ``find-node`` drew 1,025
bytes and a ping-back). The rule, QUIC's (RFC 9000 section 8): until an address is
**validated**, everything we send to it because of a datagram it sent (the reply, a ping-back)
is at most :data:`AMPLIFICATION_FACTOR` times that datagram's size.

An address is validated once we have evidence that whoever signs as the sender really receives
datagrams there: it answered a request we sent to that address (its signed reply matches our
random 64-bit request ID, which only a receiver of our request can know). The DHT's ping-back
of an unknown requester is such a request, so after one exchange both sides are validated.
Validated addresses are kept in a bounded set that forgets them after a while (least recently
confirmed first), so the state is bounded whatever arrives.

Replies to an unvalidated source are shortened to fit (fewer contacts, no record, no gossip)
rather than dropped, so an honest first contact still makes progress; and a requester whose
request may draw a large reply pads it while the responder has not validated it yet, so that
an honest first contact gets a full answer (see docs/decisions.md, "Replies to unvalidated
addresses"). A requester knows a responder has validated it when it answered a request of that
responder's: :class:`Validation` keeps those addresses too.
"""

from __future__ import annotations

import collections
from typing import Final, Generic, TypeVar

#: Most bytes sent to an unvalidated address per byte received from it (QUIC's factor).
AMPLIFICATION_FACTOR: Final = 3

#: A validated address is trusted this long after it last proved itself (an hour: addresses of
#: peers change rarely, and a peer we talk to proves itself again at every exchange).
VALIDATED_TTL: Final = 3600.0
#: The addresses whose requests we answered are believed to have validated us for half that,
#: so that a requester stops padding only while the responder surely still remembers it.
VALIDATES_US_TTL: Final = VALIDATED_TTL / 2
#: Addresses remembered in each set (about 150 bytes each): far more than the peers a node talks
#: to within an hour; beyond it, the least recently confirmed is forgotten (it pays again with
#: one padded request or one shortened reply).
MAX_ADDRESSES: Final = 65_536

#: The size a request that may draw a full datagram is padded to while the responder has not
#: validated us: its reply (at most MAX_DATAGRAM) and a one-attempt ping-back (166 bytes) fit
#: in AMPLIFICATION_FACTOR times it: (1,200 + 166) / 3 = 455.3, rounded up to 456.
PADDED_REQUEST_BYTES: Final = 456

A = TypeVar("A")


class ExpiringSet(Generic[A]):
    """A bounded set whose members are forgotten `ttl` after they were last added.

    Args:
        ttl: Seconds a member stays after its last :meth:`add`.
        max_size: Most members; adding one more forgets the least recently added.
    """

    __slots__ = ("_added", "max_size", "ttl")

    def __init__(self, ttl: float, max_size: int = MAX_ADDRESSES) -> None:
        if ttl <= 0 or max_size < 1:
            raise ValueError("ttl must be > 0 and max_size >= 1")
        self.ttl = ttl
        self.max_size = max_size
        # member -> when it was last added; least recently added first.
        self._added: collections.OrderedDict[A, float] = collections.OrderedDict()

    def __len__(self) -> int:
        return len(self._added)

    def add(self, member: A, now: float) -> None:
        """Add `member` (or renew it) at `now`."""
        self._added[member] = now
        self._added.move_to_end(member)
        self._expire(now)
        if len(self._added) > self.max_size:
            self._added.popitem(last=False)

    def contains(self, member: A, now: float) -> bool:
        """Whether `member` was added less than `ttl` before `now`."""
        self._expire(now)
        return member in self._added

    def _expire(self, now: float) -> None:
        added = self._added
        while added and next(iter(added.values())) + self.ttl <= now:
            added.popitem(last=False)


class Validation(Generic[A]):
    """What this node knows of which addresses are validated, both ways.

    Attributes:
        validated: Addresses that answered a request we sent there.
        validates_us: Addresses whose requests we answered (they have validated us).
    """

    __slots__ = ("validated", "validates_us")

    def __init__(self, max_size: int = MAX_ADDRESSES) -> None:
        self.validated: ExpiringSet[A] = ExpiringSet(VALIDATED_TTL, max_size)
        self.validates_us: ExpiringSet[A] = ExpiringSet(VALIDATES_US_TTL, max_size)

    def budget(self, address: A, received: int, now: float) -> int | None:
        """Bytes we may send to `address` because of a datagram of `received` bytes from it:
        None (no limit) if it is validated, else AMPLIFICATION_FACTOR times `received`."""
        if self.validated.contains(address, now):
            return None
        return AMPLIFICATION_FACTOR * received

    def padding(self, address: A, request_bytes: int, now: float) -> int:
        """Bytes to add to a request of `request_bytes` to `address` (which may answer with a
        full datagram) so that its answer is not shortened: none once it has validated us."""
        if self.validates_us.contains(address, now):
            return 0
        return max(0, PADDED_REQUEST_BYTES - request_bytes)
