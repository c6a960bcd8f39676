"""Querying the DHT: iterative lookups, locating and resolving nodes, getting and putting records.

This is the trio driver of the lookup core (:mod:`plexinode.dht.lookup`): it sends the queries a
:class:`~plexinode.dht.lookup.Lookup` asks for, over the authenticated datagram service, and
feeds it every reply, failure and slow answer.

Timeouts adapt to measured round trips: each request to a known contact waits
``RoutingTable.timeout_for`` (smoothed RTT + 4 deviations, clamped), and a lookup declares a
query *slow* after twice the median RTT of the table, which frees its slot so the path can ask
the next candidate instead of waiting; a late answer is still used.

Replies are checked before the core sees them: contacts that do not decode, or whose IDs fail
the network's ID puzzle, are dropped, and records that are invalid or do not answer the
question asked are dropped and counted against their sender; a reply made only of invalid
records counts as a failed query.
"""

from __future__ import annotations

import collections
import logging
import math
from collections.abc import Callable, Sequence
from typing import Any, Final

import trio

from plexinode.dht.contact import Contact
from plexinode.dht.lookup import Lookup, LookupResult, LookupStats, merge_stages
from plexinode.dht.messages import FindNode, FindValue, Nodes, Store, StoreResult, Value
from plexinode.dht.record_types import PEER, peer_addresses
from plexinode.dht.records import InvalidRecord, Record, validate_record
from plexinode.dht.replication import Replication
from plexinode.dht.routing import RoutingTable
from plexinode.dht.settings import DhtSettings
from plexinode.dht.store import RecordStore, Refused
from plexinode.errors import DecodeError, PeerTimeout, RemoteProtocolError
from plexinode.identity import NodeId
from plexinode.net.datagram import DatagramService
from plexinode.wire.messages import Ping
from plexinode.wire.schema import Message

log = logging.getLogger(__name__)

#: A store right after a full (d-path) lookup of the same key reuses its k closest for this
#: long: publishing our peer record right after joining would otherwise repeat the join's own
#: lookup of our ID, the largest part of what joining costs the network.
CLOSEST_REUSE: Final = 30.0
#: How many recent lookups' closest sets are kept for that reuse.
MAX_RECENT_CLOSEST: Final = 64

#: What a query task reports to its lookup: ("ok", node, (contacts, records)) or ("fail", ...).
QueryEvent = tuple[str, NodeId, Any]


class Querier:
    """Lookups over the network, and the operations built on them.

    Args:
        datagrams: The authenticated datagram service.
        routing: The routing table lookups start from (and report failures to).
        records: Our record store (``get`` includes what it holds; ``put`` keeps a copy).
        replication: Told when we store a record, for the republish choice.
        settings: k, alpha, paths and the ID puzzle.
        request_timeout: The timeout of a request to a node with no RTT sample yet.
        clock: The clock records and the routing table are judged by.
        note_invalid: Called with the sender of each invalid record received.
        record_stats: The service's record counters (``closest_reused`` is counted here).
    """

    def __init__(
        self,
        datagrams: DatagramService,
        routing: RoutingTable,
        records: RecordStore,
        replication: Replication,
        settings: DhtSettings,
        *,
        request_timeout: float,
        clock: Callable[[], float],
        note_invalid: Callable[[NodeId], None],
        record_stats: collections.Counter[str],
    ) -> None:
        self._datagrams = datagrams
        self._routing = routing
        self._records = records
        self._replication = replication
        self._settings = settings
        self._request_timeout = request_timeout
        self._clock = clock
        self._note_invalid = note_invalid
        self._record_stats = record_stats
        self._recent_closest: collections.OrderedDict[NodeId, tuple[float, tuple[Contact, ...]]] = (
            collections.OrderedDict()
        )

    # -- node lookups ----------------------------------------------------------------------------

    async def find_node(self, target: NodeId, *, paths: int | None = None) -> LookupResult:
        """Iterative lookup of `target` over `paths` disjoint paths (default: the setting)."""
        paths = paths or self._settings.paths
        result = await self.lookup(target, FindNode(target.raw), paths=paths)
        if paths >= self._settings.paths and result.closest:
            self._recent_closest[target] = (self._clock(), result.closest)
            self._recent_closest.move_to_end(target)
            while len(self._recent_closest) > MAX_RECENT_CLOSEST:
                self._recent_closest.popitem(last=False)
        return result

    async def closest_to(self, target: NodeId) -> tuple[Contact, ...]:
        """The k closest nodes to `target`: from a full lookup of it in the last CLOSEST_REUSE
        seconds, else from a new one."""
        recent = self._recent_closest.get(target)
        if recent is not None and self._clock() - recent[0] <= CLOSEST_REUSE:
            self._record_stats["closest_reused"] += 1
            return recent[1]
        return (await self.find_node(target)).closest

    async def locate(self, node_id: NodeId, *, paths: int | None = None) -> LookupResult:
        """Find the node `node_id` itself (its signed answer is the proof), as cheaply as the
        network allows, in up to three stages whose costs are summed in the result's stats:

        1. if it is a live contact of our routing table, ask it directly (one ping);
        2. else, or if it did not answer, a lookup over one path;
        3. if that did not reach it, a lookup over `paths` disjoint paths (default: the
           setting), so that S/Kademlia's protection against liars is paid for only when a
           single path failed.

        A liar cannot make a stage succeed (only the target's own reply counts), only make it
        fail, which moves on to the next stage.
        """
        paths = paths or self._settings.paths
        request = FindNode(node_id.raw)
        # Every stage starts from the table as it was: the nodes that answered an earlier
        # stage enter the table, and if they are liars close to the target, seeding the
        # disjoint paths with them would hand the liars paths they did not have to capture.
        seeds = self._routing.closest(node_id, self._settings.k)
        stages: list[LookupResult] = []
        entry = self._routing.get(node_id)
        if entry is not None and not entry.stale:
            stages.append(await self._ask_directly(entry.contact))
        if not (stages and stages[-1].found_target):
            stages.append(await self.lookup(node_id, request, paths=1, seeds=seeds))
        if not stages[-1].found_target and paths > 1:
            stages.append(await self.lookup(node_id, request, paths=paths, seeds=seeds))
        return merge_stages(stages)

    async def _ask_directly(self, contact: Contact) -> LookupResult:
        """Stage 1 of :meth:`locate`: one ping to a known contact (its signed pong, matched on
        its node ID and address, proves it is there; no contact list is needed)."""
        started = trio.current_time()
        found = True
        try:
            await self._datagrams.request(
                contact.address,
                Ping(),
                node_id=contact.node_id,
                attempt_timeout=self._routing.timeout_for(
                    contact.node_id, default=self._request_timeout
                ),
                retries=0,
            )
        except (PeerTimeout, RemoteProtocolError):
            found = False
            self._routing.failed(contact.node_id, self._clock())
        stats = LookupStats.direct(found, trio.current_time() - started)
        closest = (contact,) if found else ()
        return LookupResult(contact.node_id, closest, found, None, None, stats)

    async def resolve(self, node_id: NodeId, *, fresh: bool = False) -> Contact | None:
        """The current address of `node_id`, or None if the DHT does not know it.

        From the routing table unless `fresh`; else :meth:`locate` (the node itself answers:
        directly if the table knows it, else through one lookup path, then through all); else
        one FIND_VALUE lookup for the node's signed peer record, whose newest valid version
        gives the address (callers still authenticate the node when they contact it).
        """
        if not fresh:
            entry = self._routing.get(node_id)
            if entry is not None:
                return entry.contact
        result = await self.locate(node_id)
        for contact in result.closest:
            if contact.node_id == node_id:
                return contact
        result = await self.lookup(node_id, FindValue(PEER, node_id.raw))
        for contact in result.closest:
            if contact.node_id == node_id:
                return contact
        if result.value_from is not None and result.value_from.node_id == node_id:
            return result.value_from
        records = list(result.value) if isinstance(result.value, tuple) else []
        records += self._records.get(PEER, node_id.raw, self._clock())
        if not records:
            return None
        newest = max(records, key=lambda r: r.seq)
        return Contact(node_id, peer_addresses(newest)[0])

    # -- records ---------------------------------------------------------------------------------

    async def get(self, rtype: int, key: bytes) -> list[Record]:
        """Valid records of `rtype` under `key`, from the nodes closest to it (or ourselves)."""
        now = self._clock()
        local = self._records.get(rtype, key, now)
        result = await self.lookup(NodeId(key), FindValue(rtype, key))
        found = list(result.value) if isinstance(result.value, tuple) else []
        return local + [r for r in found if r not in local]

    async def put(self, record: Record) -> int:
        """Validate `record`, keep it, and store it on the k closest nodes; returns how many
        of them accepted it (or already held it)."""
        now = self._clock()
        outcome = self._records.put(record, now)
        if isinstance(outcome, Refused):
            raise InvalidRecord(outcome.reason, "refused by this node")
        self._replication.touched(record, now)
        return await self.store_on_closest(record)

    async def store_on_closest(self, record: Record) -> int:
        """Store `record` on the k closest nodes to its key; returns how many accepted it (or
        already held it or a newer version)."""
        closest = await self.closest_to(NodeId(record.key))
        accepted = 0

        async def store_on(contact: Contact) -> None:
            nonlocal accepted
            try:
                reply = await self._datagrams.request(
                    contact.address, Store(record), node_id=contact.node_id
                )
            except (PeerTimeout, RemoteProtocolError) as exc:
                log.debug("store on %s failed: %s", contact.node_id.short(), exc)
                return
            if isinstance(reply.message, StoreResult) and (
                reply.message.stored or reply.message.held_seq >= record.seq
            ):
                accepted += 1

        async with trio.open_nursery() as nursery:
            for contact in closest:
                nursery.start_soon(store_on, contact)
        return accepted

    # -- the lookup driver -----------------------------------------------------------------------

    async def lookup(
        self,
        target: NodeId,
        request: Message,
        *,
        paths: int | None = None,
        seeds: Sequence[Contact] | None = None,
    ) -> LookupResult:
        """Run one :class:`~plexinode.dht.lookup.Lookup` of `target` with `request` (FIND_NODE,
        or FIND_VALUE for a value lookup) from `seeds` (default: the k closest contacts)."""
        if seeds is None:
            seeds = self._routing.closest(target, self._settings.k)
        lookup = Lookup(
            target,
            seeds,
            own_id=self._routing.own_id,
            k=self._settings.k,
            alpha=self._settings.alpha,
            paths=paths or self._settings.paths,
            find_value=isinstance(request, FindValue),
        )
        send, receive = trio.open_memory_channel[QueryEvent](math.inf)
        # When each query in flight counts as slow (on trio's clock): the lookup then stops
        # waiting for it and asks someone else, but still takes its answer if it comes.
        slow_at: dict[NodeId, float] = {}
        async with trio.open_nursery() as nursery:
            while not lookup.done:
                for query in lookup.next_queries(self._clock()):
                    slow_at[query.contact.node_id] = trio.current_time() + self._soft_timeout()
                    nursery.start_soon(self.query, query.contact, request, send)
                if not slow_at:
                    break
                event = None
                with trio.move_on_at(min(slow_at.values())):
                    event = await receive.receive()
                now = self._clock()
                if event is None:
                    late = trio.current_time()
                    for node_id in [n for n, at in slow_at.items() if at <= late]:
                        slow_at[node_id] = math.inf
                        lookup.on_slow(node_id, now)
                    continue
                kind, node_id, payload = event
                slow_at.pop(node_id, None)
                if kind == "ok":
                    contacts, records = payload
                    lookup.on_response(node_id, contacts, now, value=records or None)
                else:
                    lookup.on_failure(node_id, now)
            nursery.cancel_scope.cancel()
        return lookup.result()

    def _soft_timeout(self) -> float:
        median = self._routing.median_rtt()
        if median is None:
            return self._request_timeout / 2
        return min(max(2 * median, 0.02), self._request_timeout)

    async def query(
        self,
        contact: Contact,
        request: Message,
        events: trio.MemorySendChannel[QueryEvent],
    ) -> None:
        """Send `request` to `contact` and report the checked outcome on `events`."""
        timeout = self._routing.timeout_for(contact.node_id, default=self._request_timeout)
        try:
            reply = await self._datagrams.request(
                contact.address,
                request,
                node_id=contact.node_id,
                attempt_timeout=timeout,
                retries=1,
            )
        except (PeerTimeout, RemoteProtocolError):
            self._routing.failed(contact.node_id, self._clock())
            events.send_nowait(("fail", contact.node_id, None))
            return
        contacts: list[Contact] = []
        records: tuple[Record, ...] = ()
        message = reply.message
        if isinstance(message, Nodes | Value):
            difficulty = self._settings.id_difficulty
            for wire_contact in message.contacts:
                try:
                    candidate = wire_contact.to_contact()
                except DecodeError:
                    continue
                if difficulty and not candidate.node_id.meets(difficulty):
                    self._routing.stats["ignored_id_puzzle"] += 1
                    continue
                contacts.append(candidate)
        if isinstance(message, Value) and isinstance(request, FindValue):
            records = self._valid_records(message.records, request, reply.sender)
            if message.records and not records:
                # Only invalid records: this node lied or is broken; do not use its answer.
                events.send_nowait(("fail", contact.node_id, None))
                return
        events.send_nowait(("ok", contact.node_id, (contacts, records)))

    def _valid_records(
        self, records: Sequence[Record], request: FindValue, sender: NodeId
    ) -> tuple[Record, ...]:
        """Records that are valid and answer the question asked; the rest cost the sender."""
        now = self._clock()
        valid = []
        for record in records:
            try:
                if record.rtype != request.rtype or record.key != request.key:
                    raise InvalidRecord("bad value", "not the record asked for")
                validate_record(record, now, self._records.registry)
            except InvalidRecord as exc:
                self._note_invalid(sender)
                log.debug("invalid record from %s: %s", sender.short(), exc)
                continue
            valid.append(record)
        return tuple(valid)
