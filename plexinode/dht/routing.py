"""The Kademlia routing table, sans I/O: k-buckets, replacement caches, liveness and RTT.

This is the table of Maymounkov & Mazières' Kademlia, hardened as in S/Kademlia and as BitTorrent's
Mainline DHT and libp2p learned to. It does no I/O and keeps no clock: the DHT service feeds it
what happened (a verified message from a node, a ping's outcome, a request that timed out) with
the time as ``now`` (a monotonic clock, trio's in production and MockClock in simulation), and it
answers with frozen result objects saying what changed and what the service must do next, like
h11's state machine. Everything here is deterministic for a given sequence of calls.

Why one file of more than 500 lines: the table is one state machine. Its invariants (below) each
span every event method: an observation, a ping result, a failure and a removal all move
entries, replacements, pending pings, subnet counts and activity times together, and whether an
invariant holds can only be seen with all of them in view. Half of the length is this text and
the documented result types, which belong beside the methods that return them.

Layout. Bucket ``i`` (0..255) holds the contacts whose XOR distance to our own ID lies in
``[2**i, 2**(i+1))``, see :func:`~plexinode.dht.contact.bucket_index`: bucket 255 covers the half
of the ID space farthest from us, bucket 0 the one ID next to us. Each bucket holds at most ``k``
live entries, ordered least recently seen first, and a replacement cache of at most
``replacement_size`` nodes that answered us while the bucket was full, oldest first. Buckets are
created on first use, so a table in a 10,000-node network allocates about 15 of them.

Invariants (checked after random operation sequences by ``tests/unit/test_routing.py``):

1. **No hearsay.** A contact enters the table (or its replacement cache) only through
   :meth:`RoutingTable.observe` or :meth:`RoutingTable.ping_result`, and the caller calls them only
   for authenticated traffic that the node sent *itself*: a reply or a request whose signature
   binds it to the node ID, from the address recorded. Contacts named in other nodes' FIND_NODE
   replies are lookup candidates, never table entries, so a liar cannot plant contacts in our
   table by talking about them.
2. **Never ourselves.** The table never contains ``own_id``.
3. **Placement.** Every entry and every replacement sits in bucket ``bucket_index(own_id, id)``;
   a node ID appears at most once in the whole table (entries and caches together).
4. **Bounds.** A bucket holds at most ``k`` entries and at most ``replacement_size``
   replacements, and a replacement cache is non-empty only while its bucket is full (every path
   that frees a slot promotes a replacement).
5. **Subnet diversity.** Among the public addresses of one bucket and its replacement cache
   together, at most ``subnet_limit`` share a /24 (IPv4) or /48 (IPv6). Counting the cache too
   means that a promotion can never break the limit, and an attacker with one subnet gets at most
   ``subnet_limit`` chances per bucket instead of a queue of them. Loopback, private, link-local
   and other non-public addresses are exempt, so LANs, loopback clusters and tests work.
6. **Order.** Within a bucket, entries are in order of ``last_seen`` (oldest first), provided
   ``now`` never decreases from one call to the next.

Eviction. Kademlia keeps old contacts over new ones, because a node that has been up long is
likely to stay up, and because it costs an attacker time to get in. When a new node answers us
and its bucket is full, :meth:`~RoutingTable.observe` puts it in the replacement cache and returns
:class:`BucketFull` naming the least recently seen entry; the service pings that entry and reports
the outcome with :meth:`~RoutingTable.ping_result`. Alive: it moves to the tail and the newcomer
waits in the cache. Dead: it is evicted and the most recent replacement takes its place. While that
ping is outstanding, further newcomers to the same bucket get :class:`PingPending` (they are cached
too, and no second ping is asked for), so a burst of newcomers costs one ping, not one each. A ping
that the service never reports (say it was cancelled) stops blocking after
``pending_ping_expiry`` seconds, when the next newcomer asks again. Any verified message from the
pinged entry meanwhile settles the question: it is alive. With ``fresh_for`` set, no ping is asked
for while even the least recently seen entry was heard from within that many seconds
(:class:`Cached`): it is as good as alive, and a ping would only move it to the tail. Without
that, every reply from a node in a full bucket's replacement cache (a membership ack, say) asked
for a ping of the next oldest entry, one after the other, in every full bucket.

Failures. :meth:`~RoutingTable.failed` counts consecutive timeouts; any verified message resets the
count. At ``max_failures`` the entry is *stale*. A stale entry is evicted at once if a replacement
is cached, and otherwise stays: dropping contacts that nothing can replace would only empty our
table while our own network is down (Kademlia's argument for never flushing a bucket). A stale
entry is the first to go when a newcomer arrives (it takes the stale entry's slot without a ping,
as in Mainline's BEP 5). Stale entries are still returned by :meth:`~RoutingTable.closest`, in plain
XOR order: keeping the table's answer a pure function of distance keeps it simple and testable; the
lookup, which sees ``Entry.stale`` and RTT-based timeouts, decides how much to trust them.

Round-trip times. Each entry keeps an RTT estimate by Jacobson/Karels (RFC 6298): a smoothed RTT
and a mean deviation, from which :meth:`~RoutingTable.timeout_for` derives a per-node request
timeout, so a lookup waits on a fast node for milliseconds, not for a fixed worst case.

Refresh. A bucket that has seen no activity (an entry added, refreshed or replaced, or a lookup
into its range reported with :meth:`~RoutingTable.touch_bucket`) for an interval is refreshed by
looking up a random ID in it (:meth:`~RoutingTable.random_id_in_bucket`).
:meth:`~RoutingTable.stale_buckets` only lists the buckets from our closest known neighbour's
outward (every index from the lowest non-empty one up to 255): a bucket nearer to us than our
closest neighbour is empty for a reason (such IDs are rare), and a lookup into it would only find
our own neighbourhood again, which the self-lookup already covers. In common-prefix-length terms,
as libp2p counts, these are the prefix lengths up to the highest one that is non-empty.
"""

from __future__ import annotations

import bisect
import enum
import logging
import math
import statistics
from collections import Counter
from collections.abc import Collection, Container, Iterator
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Final, TypeAlias

from plexinode.dht.contact import ID_BITS, Contact, is_public, is_routable, subnet
from plexinode.identity import NODE_ID_BYTES, NodeId
from plexinode.net.address import Address
from plexinode.randomness import Rng

log = logging.getLogger(__name__)

#: Bucket size. 20 as in Kademlia and Mainline: large enough that k nodes leaving at once is
#: unlikely, and FIND_NODE replies of 20 contacts still fit one datagram.
DEFAULT_K: Final = 20
#: At most this many public contacts per /24 (IPv4) or /48 (IPv6) in a bucket and its replacement
#: cache together. 2 as in the issue: several honest nodes behind one NAT'd subnet still fit, while
#: one operator with a subnet cannot fill a bucket (S/Kademlia's Sybil/eclipse defence).
DEFAULT_SUBNET_LIMIT: Final = 2
#: Consecutive request timeouts after which an entry is stale. 3, so that a single lost datagram
#: (links lose a few percent) never costs a good contact, yet a departed node is noticed within a
#: few requests.
DEFAULT_MAX_FAILURES: Final = 3
#: Seconds after which a :class:`BucketFull` ping that was never reported back stops blocking a
#: new one. Far above any request timeout (at most 5 s), so that it only fires when the service
#: lost the ping (e.g. cancelled it), never while the ping is legitimately in flight.
PENDING_PING_EXPIRY: Final = 60.0

#: Jacobson/Karels gains (RFC 6298 section 2): the smoothed RTT moves 1/8 of the way to each
#: sample, the mean deviation 1/4 of the way; the timeout is srtt + 4 * rttvar.
RTT_ALPHA: Final = 1 / 8
RTT_BETA: Final = 1 / 4
RTT_DEVIATIONS: Final = 4
#: Default clamp of :meth:`RoutingTable.timeout_for`. The floor keeps a string of very fast
#: replies from making the timeout shorter than scheduling jitter; the ceiling (the `kademlia`
#: package's fixed timeout) bounds how long a lookup waits on any one node.
DEFAULT_TIMEOUT_FLOOR: Final = 0.05
DEFAULT_TIMEOUT_CEILING: Final = 5.0

_BUCKETS: Final = ID_BITS


class RefusalReason(enum.StrEnum):
    """Why :meth:`RoutingTable.observe` refused a contact."""

    OWN_ID = "own_id"
    """The contact is this node."""
    UNROUTABLE = "unroutable"
    """Unspecified, multicast or broadcast IP, port 0, or a host name instead of an IP."""
    SUBNET_LIMIT = "subnet_limit"
    """The bucket (with its replacement cache) already holds ``subnet_limit`` from that subnet."""


@dataclass(frozen=True, slots=True)
class Added:
    """The contact is new and now in the table.

    Attributes:
        replaced: The stale entry it took the place of, if the bucket was full.
    """

    replaced: Contact | None = None


@dataclass(frozen=True, slots=True)
class Updated:
    """The contact was already in the table: last seen now, moved to the tail, failures reset.

    Attributes:
        previous_address: The address it had before, if this observation changed it.
    """

    previous_address: Address | None = None


@dataclass(frozen=True, slots=True)
class Refused:
    """The contact was not stored anywhere (counted in ``stats["refused.<reason>"]``).

    When the contact was already in the table (a refused address change), its entry is left as
    it was.
    """

    reason: RefusalReason


@dataclass(frozen=True, slots=True)
class BucketFull:
    """The bucket is full: the contact is in the replacement cache; the caller must ping `oldest`.

    Report the outcome with :meth:`RoutingTable.ping_result` (``oldest.node_id``, alive or not).
    """

    oldest: Contact


@dataclass(frozen=True, slots=True)
class PingPending:
    """The bucket is full and a ping of `oldest` is already outstanding: nothing to do.

    The contact waits in the replacement cache like the one that caused the ping.
    """

    oldest: Contact


@dataclass(frozen=True, slots=True)
class Cached:
    """The bucket is full and its least recently seen entry, `oldest`, was heard from within
    the table's ``fresh_for`` seconds: the contact waits in the replacement cache, no ping is
    needed."""

    oldest: Contact


Observation: TypeAlias = Added | Updated | Refused | BucketFull | PingPending | Cached


@dataclass(frozen=True, slots=True)
class Entry:
    """A read-only snapshot of one routing-table entry.

    Attributes:
        contact: The node and the address it was last verified at.
        bucket: The bucket it sits in.
        last_seen: When it last sent us verified traffic (the caller's clock).
        failures: Consecutive requests to it that timed out since then.
        stale: ``failures`` reached the table's ``max_failures``.
        srtt: Smoothed round-trip time in seconds, None before the first sample.
        rttvar: Round-trip time mean deviation in seconds, None before the first sample.
    """

    contact: Contact
    bucket: int
    last_seen: float
    failures: int
    stale: bool
    srtt: float | None
    rttvar: float | None


class _Record:
    """The mutable state of one entry or replacement."""

    __slots__ = ("contact", "failures", "last_seen", "rttvar", "srtt", "subnet")

    def __init__(self, contact: Contact, now: float, subnet_key: str | None) -> None:
        self.contact = contact
        self.last_seen = now
        self.failures = 0
        self.srtt: float | None = None
        self.rttvar: float | None = None
        #: The /24 or /48 of a public address; None for addresses exempt from the limit.
        self.subnet = subnet_key

    def copy(self) -> _Record:
        other = _Record(self.contact, self.last_seen, self.subnet)
        other.failures, other.srtt, other.rttvar = self.failures, self.srtt, self.rttvar
        return other

    def sample(self, rtt: float | None) -> None:
        """Fold one round-trip time sample into srtt/rttvar (RFC 6298 section 2)."""
        if rtt is None:
            return
        if not math.isfinite(rtt) or rtt < 0:
            raise ValueError(f"an RTT sample is a finite number of seconds >= 0, got {rtt!r}")
        if self.srtt is None or self.rttvar is None:
            self.srtt, self.rttvar = rtt, rtt / 2
        else:
            self.rttvar = (1 - RTT_BETA) * self.rttvar + RTT_BETA * abs(self.srtt - rtt)
            self.srtt = (1 - RTT_ALPHA) * self.srtt + RTT_ALPHA * rtt


class _Bucket:
    """One k-bucket: live entries, replacement cache and the ping it is waiting for."""

    __slots__ = ("entries", "pending", "pending_since", "replacements")

    def __init__(self) -> None:
        #: Least recently seen first (dicts keep insertion order: move to tail = pop + insert).
        self.entries: dict[NodeId, _Record] = {}
        #: Oldest first; the most recent replacement is the last item.
        self.replacements: dict[NodeId, _Record] = {}
        #: The entry a BucketFull asked the caller to ping, and when.
        self.pending: NodeId | None = None
        self.pending_since = 0.0

    def copy(self) -> _Bucket:
        other = _Bucket()
        other.entries = {i: r.copy() for i, r in self.entries.items()}
        other.replacements = {i: r.copy() for i, r in self.replacements.items()}
        other.pending, other.pending_since = self.pending, self.pending_since
        return other


class RoutingTable:
    """The k-bucket routing table of one node (see the module docstring for its invariants).

    Args:
        own_id: This node's ID; it is never stored.
        k: Bucket size.
        replacement_size: Replacement cache size per bucket; ``k`` when None.
        subnet_limit: Public contacts per /24 or /48 in one bucket and its cache together.
        max_failures: Consecutive timeouts after which an entry is stale.
        pending_ping_expiry: Seconds after which an unreported BucketFull ping is asked again.
        fresh_for: A full bucket whose oldest entry was heard from within this many seconds
            asks for no ping (:class:`Cached`); 0 (the default): always ask, as in Kademlia.

    Attributes:
        stats: Event counters: ``added``, ``updated``, ``address_changed``, ``bucket_full``,
            ``ping_pending``, ``replaced_stale``, ``evicted``, ``promoted``, ``stale``,
            ``replacement_dropped``, ``removed``, ``oldest_fresh`` and ``refused.<reason>`` for each
            :class:`RefusalReason`.

    Raises:
        ValueError: A size or limit is below 1, or the expiry is not positive.
    """

    __slots__ = (
        "_activity",
        "_buckets",
        "_own_int",
        "_size",
        "fresh_for",
        "k",
        "max_failures",
        "own_id",
        "pending_ping_expiry",
        "replacement_size",
        "stats",
        "subnet_limit",
    )

    def __init__(
        self,
        own_id: NodeId,
        *,
        k: int = DEFAULT_K,
        replacement_size: int | None = None,
        subnet_limit: int = DEFAULT_SUBNET_LIMIT,
        max_failures: int = DEFAULT_MAX_FAILURES,
        pending_ping_expiry: float = PENDING_PING_EXPIRY,
        fresh_for: float = 0.0,
    ) -> None:
        replacement_size = k if replacement_size is None else replacement_size
        for name, value in (
            ("k", k),
            ("replacement_size", replacement_size),
            ("subnet_limit", subnet_limit),
            ("max_failures", max_failures),
        ):
            if value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")
        if not pending_ping_expiry > 0:
            raise ValueError(f"pending_ping_expiry must be positive, got {pending_ping_expiry}")
        self.own_id = own_id
        self.k = k
        self.replacement_size = replacement_size
        self.subnet_limit = subnet_limit
        self.max_failures = max_failures
        self.pending_ping_expiry = pending_ping_expiry
        self.fresh_for = fresh_for
        self.stats: Counter[str] = Counter()
        self._own_int = int.from_bytes(own_id.raw, "big")
        self._buckets: dict[int, _Bucket] = {}
        #: Last activity per bucket index; a bucket never touched has none and is due a refresh.
        self._activity: dict[int, float] = {}
        self._size = 0

    def __repr__(self) -> str:
        return f"<RoutingTable own={self.own_id.short()} contacts={self._size}>"

    def copy(self) -> RoutingTable:
        """An independent copy: changing one never changes the other (contacts and node IDs,
        which are immutable, are shared). Much faster than ``copy.deepcopy``."""
        other = RoutingTable(
            self.own_id,
            k=self.k,
            replacement_size=self.replacement_size,
            subnet_limit=self.subnet_limit,
            max_failures=self.max_failures,
            pending_ping_expiry=self.pending_ping_expiry,
        )
        other.stats = Counter(self.stats)
        other._buckets = {index: bucket.copy() for index, bucket in self._buckets.items()}
        other._activity = dict(self._activity)
        other._size = self._size
        return other

    # -- Queries ------------------------------------------------------------------------------

    def __len__(self) -> int:
        """The number of entries (replacements not included)."""
        return self._size

    def __contains__(self, node_id: object) -> bool:
        """Whether `node_id` is an entry (replacements are not)."""
        return isinstance(node_id, NodeId) and self._find(node_id) is not None

    def has_room_for(self, node_id: NodeId) -> bool:
        """Whether :meth:`observe` could keep `node_id` if it answered us: it is already known
        (entry or replacement), or its bucket has a free slot, a stale entry, or a free place in
        its replacement cache. Lets the caller skip verifying a node the table would refuse.
        """
        bucket = self._buckets.get(self._index(node_id))
        if bucket is None or len(bucket.entries) < self.k:
            return True
        if node_id in bucket.entries or node_id in bucket.replacements:
            return True
        if len(bucket.replacements) < self.replacement_size:
            return True
        return any(r.failures >= self.max_failures for r in bucket.entries.values())

    def get(self, node_id: NodeId) -> Entry | None:
        """A snapshot of the entry for `node_id`, or None if it is not in the table."""
        record = self._find(node_id)
        return None if record is None else self._snapshot(self._index(node_id), record)

    def contacts(self) -> list[Contact]:
        """Every entry's contact, by bucket index, least recently seen first within a bucket."""
        return [record.contact for _, record in self._records()]

    def entries(self) -> list[Entry]:
        """Snapshots of every entry, in the order of :meth:`contacts`."""
        return [self._snapshot(index, record) for index, record in self._records()]

    def least_recently_seen(
        self, before: float, skip: Container[NodeId] = frozenset()
    ) -> Entry | None:
        """The live entry seen longest ago, if it was last seen before `before`; entries for
        in `skip` are passed over. Walks each bucket from its oldest entry, so the
        cost is the number of buckets plus the entries passed over, not the table's size."""
        best: tuple[int, _Record] | None = None
        for index, bucket in self._buckets.items():
            for record in bucket.entries.values():
                if record.last_seen >= before:
                    break  # in last_seen order: the rest of the bucket is newer
                if record.failures >= self.max_failures or record.contact.node_id in skip:
                    continue
                if best is None or record.last_seen < best[1].last_seen:
                    best = (index, record)
                break
        return None if best is None else self._snapshot(*best)

    def replacements(self, index: int) -> list[Contact]:
        """The replacement cache of bucket `index`, oldest first."""
        bucket = self._buckets.get(_check_index(index))
        return [] if bucket is None else [r.contact for r in bucket.replacements.values()]

    def bucket_sizes(self) -> dict[int, int]:
        """The number of entries of each non-empty bucket, by index."""
        return {i: len(b.entries) for i, b in sorted(self._buckets.items()) if b.entries}

    def closest(
        self,
        target: NodeId,
        count: int,
        *,
        exclude: Collection[NodeId] = (),
        live_only: bool = False,
    ) -> list[Contact]:
        """The `count` entries closest to `target` by XOR distance, closest first.

        Stale entries are included unless `live_only` (use it when answering other nodes: a
        contact that stopped answering us is no use to them); `exclude` lists IDs to leave out
        (the querier, say).

        Only as many buckets are read and sorted as the answer needs. With ``t = own ^ target``,
        every ID in bucket ``j`` has a distance to the target whose bits above ``j`` are those of
        ``t``, and whose bit ``j`` is ``1 ^ t_j``. So the distance ranges of two buckets never
        overlap, and the buckets can be visited in increasing distance: first every ``j`` with
        bit ``t_j`` set, from the highest down (the first of them is the target's own bucket,
        whose members all agree with the target on more bits), then every ``j`` with ``t_j``
        clear, from the lowest up. Only within one bucket (at most ``k`` entries) is a sort
        needed. A 10,000-node table answers from one or two buckets.
        """
        if count <= 0:
            return []
        excluded = exclude if isinstance(exclude, AbstractSet) else frozenset(exclude)
        target_int = int.from_bytes(target.raw, "big")
        t = self._own_int ^ target_int
        order = sorted(
            (index for index, bucket in self._buckets.items() if bucket.entries),
            key=lambda j: _BUCKETS - 1 - j if (t >> j) & 1 else _BUCKETS + j,
        )
        result: list[Contact] = []
        for index in order:
            candidates = [
                record.contact
                for node_id, record in self._buckets[index].entries.items()
                if node_id not in excluded
                and not (live_only and record.failures >= self.max_failures)
            ]
            if len(candidates) > 1:
                candidates.sort(key=lambda c: int.from_bytes(c.node_id.raw, "big") ^ target_int)
            result.extend(candidates[: count - len(result)])
            if len(result) >= count:
                break
        return result

    def timeout_for(
        self,
        node_id: NodeId,
        *,
        default: float,
        floor: float = DEFAULT_TIMEOUT_FLOOR,
        ceiling: float = DEFAULT_TIMEOUT_CEILING,
    ) -> float:
        """A request timeout for `node_id`: ``srtt + 4 * rttvar`` clamped to [floor, ceiling].

        Replacements count too. Returns `default` (unclamped) for a node with no RTT sample.
        """
        if floor > ceiling:
            raise ValueError(f"floor {floor} is above ceiling {ceiling}")
        record = self._find(node_id, replacements=True)
        if record is None or record.srtt is None or record.rttvar is None:
            return default
        return min(ceiling, max(floor, record.srtt + RTT_DEVIATIONS * record.rttvar))

    def median_rtt(self) -> float | None:
        """The median smoothed RTT over the entries that have one, or None if none has."""
        samples = [record.srtt for _, record in self._records() if record.srtt is not None]
        return statistics.median(samples) if samples else None

    # -- Events -------------------------------------------------------------------------------

    def observe(self, contact: Contact, now: float, *, rtt: float | None = None) -> Observation:
        """Record that `contact` sent us authenticated traffic itself, from its address.

        Call this only for traffic verified as coming from ``contact.node_id`` (see invariant 1),
        never for contacts named by others.

        Args:
            contact: The node and the address its traffic came from.
            now: The current time.
            rtt: The round-trip time, if this traffic answered a request of ours.

        Returns:
            What happened; on :class:`BucketFull` the caller must ping ``oldest`` and report it
            with :meth:`ping_result`.

        Raises:
            ValueError: `rtt` is negative or not finite.
        """
        node_id = contact.node_id
        index = self._index(node_id)
        if index < 0:
            return self._refuse(RefusalReason.OWN_ID, contact)
        bucket = self._buckets.get(index)
        record = None if bucket is None else bucket.entries.get(node_id)
        if bucket is not None and record is not None:
            return self._update(index, bucket, record, contact, now=now, rtt=rtt)
        verdict = _classify(contact.address)
        if isinstance(verdict, RefusalReason):
            return self._refuse(verdict, contact)
        if bucket is None:
            bucket = self._buckets[index] = _Bucket()
        return self._admit(index, bucket, contact, verdict, now=now, rtt=rtt)

    def ping_result(
        self, node_id: NodeId, alive: bool, now: float, *, rtt: float | None = None
    ) -> Contact | None:
        """Report the outcome of a ping that a :class:`BucketFull` asked for.

        Alive: the entry is refreshed like an :meth:`observe` (last seen now, moved to the tail,
        failures reset, `rtt` folded in). Dead: the entry is evicted and the most recent
        replacement promoted; with no replacement left (one may have been removed) it stays,
        marked stale. A dead result for an entry that is no longer the one pending (say it sent
        us a message while the ping was in flight, which proved it alive) only counts as one
        :meth:`failed` request. Unknown IDs are ignored.

        Returns:
            The promoted replacement, if one took the evicted entry's place.

        Raises:
            ValueError: `rtt` is negative or not finite.
        """
        index = self._index(node_id)
        bucket = self._buckets.get(index)
        if bucket is None:
            return None
        was_pending = bucket.pending == node_id
        if was_pending:
            bucket.pending = None
        record = bucket.entries.get(node_id)
        if record is None:
            return None
        if alive:
            record.sample(rtt)
            record.last_seen = now
            record.failures = 0
            del bucket.entries[node_id]
            bucket.entries[node_id] = record
            self._activity[index] = now
            return None
        if not was_pending:
            return self._fail(index, bucket, record, now)
        # The ping was the liveness check itself: one miss is enough to make the entry stale.
        was_stale = record.failures >= self.max_failures
        record.failures = max(record.failures + 1, self.max_failures)
        return self._evict_or_keep_stale(index, bucket, record, now, was_stale=was_stale)

    def failed(self, node_id: NodeId, now: float) -> None:
        """Record that a request to `node_id` timed out.

        At ``max_failures`` consecutive failures an entry is stale: it is evicted if a
        replacement is cached (the most recent one takes its place), otherwise kept. A
        replacement that reaches ``max_failures`` is dropped from its cache. Unknown IDs are
        ignored.
        """
        index = self._index(node_id)
        bucket = self._buckets.get(index)
        if bucket is None:
            return
        record = bucket.entries.get(node_id)
        if record is not None:
            self._fail(index, bucket, record, now)
            return
        cached = bucket.replacements.get(node_id)
        if cached is not None:
            cached.failures += 1
            if cached.failures >= self.max_failures:
                del bucket.replacements[node_id]
                self.stats["replacement_dropped"] += 1

    def remove(self, node_id: NodeId) -> bool:
        """Remove `node_id` from the table or its replacement cache (e.g. the node was banned).

        A removed entry's slot goes to the most recent replacement, if any.

        Returns:
            Whether the node was there.
        """
        index = self._index(node_id)
        bucket = self._buckets.get(index)
        if bucket is None:
            return False
        if bucket.replacements.pop(node_id, None) is not None:
            self.stats["removed"] += 1
            return True
        record = bucket.entries.get(node_id)
        if record is None:
            return False
        self._detach(bucket, record)
        self.stats["removed"] += 1
        log.debug("removed %s from bucket %d", node_id.short(), index)
        self._promote(index, bucket)
        return True

    # -- Refresh ------------------------------------------------------------------------------

    def touch_bucket(self, index: int, now: float) -> None:
        """Record activity in bucket `index` (e.g. a lookup for an ID in its range)."""
        self._activity[_check_index(index)] = now

    def stale_buckets(self, now: float, interval: float) -> list[int]:
        """The buckets due a refresh: no activity for `interval` seconds, or never any.

        Only the buckets from the lowest non-empty index up to 255 are considered (see
        "Refresh" in the module docstring); an empty table has none.
        """
        lowest = min((i for i, b in self._buckets.items() if b.entries), default=None)
        if lowest is None:
            return []
        never = -math.inf
        return [
            index
            for index in range(lowest, _BUCKETS)
            if now - self._activity.get(index, never) >= interval
        ]

    def random_id_in_bucket(self, index: int, rng: Rng) -> NodeId:
        """A uniformly random node ID that belongs in bucket `index` of this table."""
        _check_index(index)
        # The distance to us has bit `index` set and random bits below it, nothing above.
        offset = (1 << index) | (rng.getrandbits(index) if index else 0)
        return NodeId((self._own_int ^ offset).to_bytes(NODE_ID_BYTES, "big"))

    # -- Internals ----------------------------------------------------------------------------

    def _index(self, node_id: NodeId) -> int:
        # bucket_index() with our own ID already converted: this runs on every event.
        return (self._own_int ^ int.from_bytes(node_id.raw, "big")).bit_length() - 1

    def _find(self, node_id: NodeId, *, replacements: bool = False) -> _Record | None:
        bucket = self._buckets.get(self._index(node_id))
        if bucket is None:
            return None
        record = bucket.entries.get(node_id)
        if record is None and replacements:
            record = bucket.replacements.get(node_id)
        return record

    def _records(self) -> Iterator[tuple[int, _Record]]:
        for index, bucket in sorted(self._buckets.items()):
            for record in bucket.entries.values():
                yield index, record

    def _snapshot(self, index: int, record: _Record) -> Entry:
        return Entry(
            contact=record.contact,
            bucket=index,
            last_seen=record.last_seen,
            failures=record.failures,
            stale=record.failures >= self.max_failures,
            srtt=record.srtt,
            rttvar=record.rttvar,
        )

    def _refuse(self, reason: RefusalReason, contact: Contact) -> Refused:
        self.stats[f"refused.{reason.value}"] += 1
        log.debug("refused %s at %s: %s", contact.node_id.short(), contact.address, reason.value)
        return Refused(reason)

    def _crowded(self, bucket: _Bucket, subnet_key: str | None, *ignore: NodeId) -> bool:
        """Whether `subnet_key` already has ``subnet_limit`` members in the bucket and cache."""
        if subnet_key is None:
            return False
        members = 0
        for records in (bucket.entries, bucket.replacements):
            for node_id, record in records.items():
                if record.subnet == subnet_key and node_id not in ignore:
                    members += 1
        return members >= self.subnet_limit

    def _update(
        self,
        index: int,
        bucket: _Bucket,
        record: _Record,
        contact: Contact,
        *,
        now: float,
        rtt: float | None,
    ) -> Observation:
        previous = None
        if contact.address != record.contact.address:
            subnet_key = _classify(contact.address)
            if isinstance(subnet_key, RefusalReason):
                return self._refuse(subnet_key, contact)
            if self._crowded(bucket, subnet_key, contact.node_id):
                return self._refuse(RefusalReason.SUBNET_LIMIT, contact)
            previous = record.contact.address
            record.contact = contact
            record.subnet = subnet_key
            self.stats["address_changed"] += 1
            log.debug("%s moved from %s to %s", contact.node_id.short(), previous, contact.address)
        record.sample(rtt)
        record.last_seen = now
        record.failures = 0
        del bucket.entries[contact.node_id]
        bucket.entries[contact.node_id] = record
        if bucket.pending == contact.node_id:
            bucket.pending = None  # It just proved itself alive.
        self._activity[index] = now
        self.stats["updated"] += 1
        return Updated(previous)

    def _admit(
        self,
        index: int,
        bucket: _Bucket,
        contact: Contact,
        subnet_key: str | None,
        *,
        now: float,
        rtt: float | None,
    ) -> Observation:
        """A contact that is not an entry of its (existing) bucket: add, swap in or cache it."""
        node_id = contact.node_id
        stale = None
        if len(bucket.entries) >= self.k:
            stale = next(
                (r for r in bucket.entries.values() if r.failures >= self.max_failures), None
            )
        ignore = (node_id,) if stale is None else (node_id, stale.contact.node_id)
        if self._crowded(bucket, subnet_key, *ignore):
            return self._refuse(RefusalReason.SUBNET_LIMIT, contact)
        # A replacement that answers again keeps its RTT history.
        record = bucket.replacements.pop(node_id, None)
        if record is None:
            record = _Record(contact, now, subnet_key)
        else:
            record.contact, record.subnet, record.last_seen = contact, subnet_key, now
            record.failures = 0
        record.sample(rtt)

        if len(bucket.entries) < self.k or stale is not None:
            replaced = None
            if stale is not None:
                self._detach(bucket, stale)
                replaced = stale.contact
                self.stats["replaced_stale"] += 1
                log.debug(
                    "%s takes the place of stale %s in bucket %d",
                    node_id.short(),
                    replaced.node_id.short(),
                    index,
                )
            bucket.entries[node_id] = record
            self._size += 1
            self._activity[index] = now
            self.stats["added"] += 1
            return Added(replaced)

        bucket.replacements[node_id] = record
        if len(bucket.replacements) > self.replacement_size:
            del bucket.replacements[next(iter(bucket.replacements))]
            self.stats["replacement_dropped"] += 1
        if bucket.pending is not None and now - bucket.pending_since < self.pending_ping_expiry:
            self.stats["ping_pending"] += 1
            return PingPending(bucket.entries[bucket.pending].contact)
        oldest_record = next(iter(bucket.entries.values()))
        oldest = oldest_record.contact
        if now - oldest_record.last_seen < self.fresh_for:
            self.stats["oldest_fresh"] += 1
            return Cached(oldest)
        bucket.pending, bucket.pending_since = oldest.node_id, now
        self.stats["bucket_full"] += 1
        return BucketFull(oldest)

    def _fail(self, index: int, bucket: _Bucket, record: _Record, now: float) -> Contact | None:
        was_stale = record.failures >= self.max_failures
        record.failures += 1
        if record.failures < self.max_failures:
            return None
        return self._evict_or_keep_stale(index, bucket, record, now, was_stale=was_stale)

    def _evict_or_keep_stale(
        self, index: int, bucket: _Bucket, record: _Record, now: float, *, was_stale: bool
    ) -> Contact | None:
        node_id = record.contact.node_id
        if not bucket.replacements:
            if not was_stale:
                self.stats["stale"] += 1
                log.debug("%s is stale; no replacement in bucket %d", node_id.short(), index)
            return None
        self._detach(bucket, record)
        self.stats["evicted"] += 1
        log.debug("evicted %s from bucket %d", node_id.short(), index)
        promoted = self._promote(index, bucket)
        self._activity[index] = now
        return promoted

    def _detach(self, bucket: _Bucket, record: _Record) -> None:
        node_id = record.contact.node_id
        del bucket.entries[node_id]
        self._size -= 1
        if bucket.pending == node_id:
            bucket.pending = None

    def _promote(self, index: int, bucket: _Bucket) -> Contact | None:
        """Move the most recent replacement into the bucket's free slot, keeping the order."""
        if not bucket.replacements or len(bucket.entries) >= self.k:
            return None
        node_id, record = bucket.replacements.popitem()  # LIFO: the most recent.
        entries = bucket.entries
        if not entries or next(reversed(entries.values())).last_seen <= record.last_seen:
            entries[node_id] = record
        else:
            # It was seen before some entries: insert it in last_seen order (O(k), rare).
            records = list(entries.values())
            at = bisect.bisect_right([r.last_seen for r in records], record.last_seen)
            records.insert(at, record)
            bucket.entries = {r.contact.node_id: r for r in records}
        self._size += 1
        self.stats["promoted"] += 1
        log.debug("promoted %s into bucket %d", node_id.short(), index)
        return record.contact


def _check_index(index: int) -> int:
    if not 0 <= index < _BUCKETS:
        raise ValueError(f"bucket index must be in 0..{_BUCKETS - 1}, got {index}")
    return index


def _classify(address: Address) -> RefusalReason | str | None:
    """Why `address` cannot be stored, or else its subnet key (None: exempt from the limit)."""
    if not is_routable(address):
        return RefusalReason.UNROUTABLE
    return subnet(address) if is_public(address) else None
