"""The sans-I/O record store: the records this node holds for the DHT, under hard limits.

The DHT service hands every record it receives (STORE requests, FIND_VALUE answers it wants to
cache, the node's own records) to :meth:`RecordStore.put` and answers FIND_VALUE from
:meth:`RecordStore.get`. The store does no I/O and reads no clock: every call takes ``now``
(Unix seconds). Persistence (SQLite) and republishing are the service's job; the store tells it
what changed (:class:`Stored` names the record it replaced) and what is due
(:meth:`RecordStore.records_to_republish`, :meth:`RecordStore.all_records`).

Invariants:

1. **Only valid records are held.** ``put`` runs :func:`~plexinode.dht.records.validate_record`
   first; the only record accepted without re-verification is one byte-for-byte equal to a
   record already held (replicas resend what we have all the time, and we checked it already).
2. **Slots.** A single-publisher type (``peer``) holds one record per ``(rtype, key)``; a
   multi-publisher type (``provider``) holds one per ``(rtype, key, publisher)`` and at most
   ``max_providers_per_key`` per ``(rtype, key)``, of which at most
   ``max_providers_per_subnet`` first came from one source network (a /24 or /48, given by
   the caller for records a peer sent). Within a slot the version that
   :func:`~plexinode.dht.records.newer` prefers wins, so every replica converges.
3. **Limits hold at all times**: at most ``max_records`` records, ``max_bytes`` encoded bytes
   (:attr:`Record.size`), ``max_per_publisher`` records per publisher. Replacing a record
   within its slot never counts against the record quotas, so a publisher at its quota can
   still update what it has.
4. **A limit refuses the newcomer; it never evicts a valid record.** When a key already has
   ``max_providers_per_key`` providers (or ``max_providers_per_subnet`` from the newcomer's
   network), or the store is full, a new record is refused
   (:class:`Refused`, counted in :attr:`RecordStore.stats`). The alternative, evicting the
   record that expires soonest, lets anyone with a few fresh identities push honest providers
   out of a key just by publishing records with the longest lifetime, over and over: a flood
   would *lose stored data*, which the design forbids. Refusing means a flood can only take
   room that was free; honest providers keep their place by republishing (a replacement within
   their slot), a reader needs only a few of 64 providers, and room frees as records expire.
   Expired records are swept (:meth:`RecordStore.expire`) before any refusal for lack of room.
5. **No O(n) work on put.** Records sit in a dict of slots per ``(rtype, key)``; expiry times in
   a heap with lazy deletion (an entry is dropped when popped if its record was replaced), which
   is rebuilt when stale entries outnumber live ones, so it stays O(n) in size and ``put`` stays
   O(log n). Only the periodic calls (:meth:`RecordStore.records_to_republish`,
   :meth:`RecordStore.all_records`) walk every record.

What the store cannot judge is the *rate* at which a peer sends records (each costs a
signature verification, about 50 µs) or how many identities an attacker runs: both belong to
the service's per-peer rate limits and reputation, which count the :class:`Refused` reasons.
"""

from __future__ import annotations

import collections
import heapq
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

from plexinode.dht.records import InvalidRecord, Record, RecordRegistry, newer, validate_record

#: Default cap on records held. Typical records are 150 to 300 bytes (880 at most), so this
#: is 15 to 30 MB of records, and bounds the per-record index overhead whatever their size; it
#: is room for this node's share of a large network (each key lives on k = 20 nodes).
DEFAULT_MAX_RECORDS: Final = 100_000

#: Default cap on records from one publisher: many times what an honest node publishes (its peer
#: record and the provider records of what it holds), far below what would let one identity
#: crowd out the others.
DEFAULT_MAX_PER_PUBLISHER: Final = 1_000

#: Default cap on the encoded bytes of all records (64 MiB): a fixed memory budget.
DEFAULT_MAX_BYTES: Final = 64 << 20

#: Default cap on providers per content key: a reader needs a few providers, not hundreds, and
#: the cap stops one key from taking a large share of the store.
DEFAULT_MAX_PROVIDERS_PER_KEY: Final = 64

#: Default cap on the providers of one key that came from one network (/24 for IPv4, /48 for
#: IPv6): identities are cheap, addresses are not, so filling a key's 64 slots takes eight
#: networks rather than one host with 64 identities. Honest providers of one key are spread
#: over the Internet; eight on one network still leave a reader plenty.
DEFAULT_MAX_PROVIDERS_PER_SUBNET: Final = 8

# Refusal reasons of the store itself (besides those of records.Reason).
PUBLISHER_OVER_QUOTA: Final = "publisher over quota"
STORE_FULL: Final = "store full"
KEY_FULL: Final = "too many providers for key"
KEY_TAKEN: Final = "key held by another publisher"
SUBNET_FULL: Final = "too many providers for key from one network"

#: The heap is rebuilt when it holds more than twice the live records plus this slack.
_HEAP_SLACK: Final = 1024

_KeyId = tuple[int, bytes]


@dataclass(frozen=True, slots=True)
class Stored:
    """The record is now held.

    Attributes:
        record: The record stored.
        replaced: The version it replaced (older, or expired), if any.
    """

    record: Record
    replaced: Record | None = None


@dataclass(frozen=True, slots=True)
class Unchanged:
    """The record is valid but not newer than the version held, which stays.

    Attributes:
        held: The version we keep (equal to the one offered, or newer).
    """

    held: Record


@dataclass(frozen=True, slots=True)
class Refused:
    """The record was not stored.

    Attributes:
        reason: A :class:`~plexinode.dht.records.Reason` when the record is invalid (the sender
            should pay for it), or one of the store's reasons (``PUBLISHER_OVER_QUOTA``,
            ``STORE_FULL``, ``KEY_FULL``, ``KEY_TAKEN``) when a limit was hit.
        invalid: True when the record itself was invalid.
    """

    reason: str
    invalid: bool = False


PutResult = Stored | Unchanged | Refused


class RecordStore:
    """Records held for the DHT, indexed by key, with per-publisher and total limits.

    Args:
        registry: The accepted record types.
        max_records: Most records held.
        max_per_publisher: Most records held from one publisher.
        max_bytes: Most encoded bytes held (sum of :attr:`Record.size`).
        max_providers_per_key: Most records of one multi-publisher type under one key.
        max_providers_per_subnet: Most records of one multi-publisher type under one key that
            came from one source network (see :meth:`put`).

    Attributes:
        stats: How many records were refused, by reason.
    """

    def __init__(
        self,
        registry: RecordRegistry,
        *,
        max_records: int = DEFAULT_MAX_RECORDS,
        max_per_publisher: int = DEFAULT_MAX_PER_PUBLISHER,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_providers_per_key: int = DEFAULT_MAX_PROVIDERS_PER_KEY,
        max_providers_per_subnet: int = DEFAULT_MAX_PROVIDERS_PER_SUBNET,
    ) -> None:
        self.registry = registry
        self.max_records = max_records
        self.max_per_publisher = max_per_publisher
        self.max_bytes = max_bytes
        self.max_providers_per_key = max_providers_per_key
        self.max_providers_per_subnet = max_providers_per_subnet
        self.stats: collections.Counter[str] = collections.Counter()
        # (rtype, key) -> publisher -> record. One entry per key for single-publisher types.
        self._by_key: dict[_KeyId, dict[bytes, Record]] = {}
        self._per_publisher: collections.Counter[bytes] = collections.Counter()
        # (expires_at, rtype, key, publisher); stale entries are skipped when popped.
        self._expiry: list[tuple[int, int, bytes, bytes]] = []
        self._count = 0
        self._bytes = 0
        # The source network of each multi-publisher record that came with one, and how many
        # records of each (rtype, key) came from each network.
        self._source: dict[tuple[int, bytes, bytes], str] = {}
        self._per_source: collections.Counter[tuple[int, bytes, str]] = collections.Counter()

    def __len__(self) -> int:
        return self._count

    @property
    def bytes_used(self) -> int:
        """Sum of :attr:`Record.size` over the records held."""
        return self._bytes

    def by_publisher_count(self, publisher: bytes) -> int:
        """How many records of `publisher` (a public key) are held."""
        return self._per_publisher[publisher]

    def put(self, record: Record, now: float, source: str | None = None) -> PutResult:
        """Validate `record` and store it if it is new or newer than the version held.

        Args:
            record: A record from a peer, the database or this node.
            now: Current Unix time in seconds.
            source: The network (/24 or /48) the record came from, for a record a peer sent
                (None: not counted per network). A multi-publisher record new to its slot is
                refused when ``max_providers_per_subnet`` records of its key came from that
                network; a new version keeps the network of the first.

        Returns:
            :class:`Stored`, :class:`Unchanged` (the version held is the same or newer), or
            :class:`Refused` with the reason (also counted in :attr:`stats`).
        """
        held = self._held(record)
        if held is not None and held == record and held.expires_at > now:
            return Unchanged(held)
        try:
            validate_record(record, now, self.registry)
        except InvalidRecord as exc:
            return self._refuse(exc.reason, invalid=True)
        if held is not None:
            if held.expires_at > now and not newer(record, held):
                return Unchanged(held)
            if self._bytes - held.size + record.size > self.max_bytes:
                return self._refuse(STORE_FULL)
            first_source = self._source.get(_slot_id(held))
            self._remove(held)
            return self._insert(record, replaced=held, source=first_source)
        reason = self._no_room(record, now, source)
        if reason is not None and self.expire(now):
            reason = self._no_room(record, now, source)
        if reason is not None:
            return self._refuse(reason)
        return self._insert(record, replaced=None, source=source)

    def get(self, rtype: int, key: bytes, now: float) -> list[Record]:
        """The unexpired records of type `rtype` under `key`.

        Freshest first (latest ``expires_at``), ties broken by publisher key, so every node
        answers the same list in the same order. A single-publisher type has at most one.
        """
        slot = self._by_key.get((rtype, key))
        if not slot:
            return []
        live = [r for r in slot.values() if r.expires_at > now]
        live.sort(key=lambda r: (-r.expires_at, r.publisher))
        return live

    def expire(self, now: float) -> int:
        """Drop every record that has expired at `now`; returns how many were dropped."""
        dropped = 0
        heap = self._expiry
        while heap and heap[0][0] <= now:
            expires_at, rtype, key, publisher = heapq.heappop(heap)
            slot = self._by_key.get((rtype, key))
            record = slot.get(publisher) if slot is not None else None
            if record is not None and record.expires_at == expires_at:
                self._remove(record)
                dropped += 1
        return dropped

    def records_to_republish(self, now: float, before: float) -> list[Record]:
        """Unexpired records that expire within `before` seconds, soonest first.

        The owner of a record republishes it (re-signed with a later expiry) before it lapses;
        filter on ``publisher`` for the node's own records. Walks every record: call it
        periodically, not per request.
        """
        horizon = now + before
        due = [r for r in self._iter_records() if now < r.expires_at <= horizon]
        due.sort(key=lambda r: (r.expires_at, r.rtype, r.key, r.publisher))
        return due

    def all_records(self) -> list[Record]:
        """A snapshot of every record held (expired ones included until :meth:`expire`).

        For persistence and for handing records to nodes that became closest to their key.
        """
        return list(self._iter_records())

    # -- internals -------------------------------------------------------------------------

    def _iter_records(self) -> Iterator[Record]:
        for slot in self._by_key.values():
            yield from slot.values()

    def _held(self, record: Record) -> Record | None:
        """The version held in `record`'s slot (None for a record too malformed to index)."""
        if type(record.rtype) is not int or type(record.key) is not bytes:
            return None
        slot = self._by_key.get((record.rtype, record.key))
        if slot is None or type(record.publisher) is not bytes:
            return None
        return slot.get(record.publisher)

    def _refuse(self, reason: str, *, invalid: bool = False) -> Refused:
        self.stats[reason] += 1
        return Refused(reason, invalid=invalid)

    def _no_room(self, record: Record, now: float, source: str | None) -> str | None:
        """Why a valid record with no version held cannot be added, or None."""
        rtype = self.registry.get(record.rtype)
        assert rtype is not None  # validated
        slot = self._by_key.get((record.rtype, record.key))
        if slot:
            if not rtype.multi_publisher:
                # Types bind keys to publishers, so this is a hash collision or a type bug.
                # Keep what we hold unless it is stale.
                other = next(iter(slot.values()))
                if other.expires_at > now:
                    return KEY_TAKEN
                self._remove(other)
            elif len(slot) >= self.max_providers_per_key:
                return KEY_FULL
        if (
            rtype.multi_publisher
            and source is not None
            and self._per_source[(record.rtype, record.key, source)]
            >= self.max_providers_per_subnet
        ):
            return SUBNET_FULL
        if self._per_publisher[record.publisher] >= self.max_per_publisher:
            return PUBLISHER_OVER_QUOTA
        if self._count >= self.max_records or self._bytes + record.size > self.max_bytes:
            return STORE_FULL
        return None

    def _insert(self, record: Record, *, replaced: Record | None, source: str | None) -> Stored:
        self._by_key.setdefault((record.rtype, record.key), {})[record.publisher] = record
        rtype = self.registry.get(record.rtype)
        if source is not None and rtype is not None and rtype.multi_publisher:
            self._source[_slot_id(record)] = source
            self._per_source[(record.rtype, record.key, source)] += 1
        self._per_publisher[record.publisher] += 1
        self._count += 1
        self._bytes += record.size
        heapq.heappush(
            self._expiry, (record.expires_at, record.rtype, record.key, record.publisher)
        )
        if len(self._expiry) > 2 * self._count + _HEAP_SLACK:
            self._expiry = [
                (r.expires_at, r.rtype, r.key, r.publisher) for r in self._iter_records()
            ]
            heapq.heapify(self._expiry)
        return Stored(record, replaced)

    def _remove(self, record: Record) -> None:
        key_id = (record.rtype, record.key)
        slot = self._by_key[key_id]
        del slot[record.publisher]
        if not slot:
            del self._by_key[key_id]
        self._per_publisher[record.publisher] -= 1
        if not self._per_publisher[record.publisher]:
            del self._per_publisher[record.publisher]
        self._count -= 1
        self._bytes -= record.size
        source = self._source.pop(_slot_id(record), None)
        if source is not None:
            counted = (record.rtype, record.key, source)
            self._per_source[counted] -= 1
            if not self._per_source[counted]:
                del self._per_source[counted]


def _slot_id(record: Record) -> tuple[int, bytes, bytes]:
    return (record.rtype, record.key, record.publisher)
