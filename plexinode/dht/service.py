"""The DHT service: the trio driver around the routing table and the lookup core.

It serves FIND_NODE from the routing table, runs iterative lookups over d disjoint paths, keeps
the table fresh, and joins the network through bootstrap addresses or, after a restart, through
the contacts persisted in SQLite.

Who enters the routing table: only a node that answered one of *our* authenticated requests
(its reply is signed by the key its ID is derived from, addressed to us, and matched on request
ID, address and node ID). A node that sends us a request is not added on that basis alone: the
source address of a datagram is not covered by anything the sender proves, so we ping it back
at that address first (``VERIFY_WORKERS`` pings at a time from a queue of at most
``MAX_PENDING_VERIFICATIONS``; when the queue is full, new requesters wait for a later
request) and add it
when the pong arrives. Contacts in other nodes' replies are only ever candidates to query.

Timeouts adapt to measured round trips: each request to a known contact waits
``RoutingTable.timeout_for`` (smoothed RTT + 4 deviations, clamped), and a lookup declares a
query *slow* after twice the median RTT of the table, which frees its slot so the path can ask
the next candidate instead of waiting; a late answer is still used.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import logging
import math
import random
from collections.abc import Callable, Sequence
from typing import Any

import trio

from plexinode.dht.contact import Contact, bucket_index, distance, is_public, is_routable, subnet
from plexinode.dht.lookup import Lookup, LookupResult, LookupStats
from plexinode.dht.messages import (
    FindNode,
    FindValue,
    Nodes,
    Store,
    StoreResult,
    Value,
    fit_contacts,
    fit_records,
)
from plexinode.dht.records import (
    PEER,
    PEER_MAX_ADDRESSES,
    PEER_MAX_TTL,
    InvalidRecord,
    Record,
    RecordRegistry,
    default_registry,
    make_peer_record,
    peer_addresses,
    validate_record,
)
from plexinode.dht.routing import Added, BucketFull, RoutingTable
from plexinode.dht.settings import DhtSettings
from plexinode.dht.store import RecordStore, Refused, Stored, Unchanged
from plexinode.errors import DecodeError, PeerTimeout, RemoteProtocolError
from plexinode.identity import NodeId
from plexinode.net.address import Address
from plexinode.net.datagram import DatagramService, Inbound, Reply
from plexinode.storage import Database
from plexinode.wire.messages import Ping, Pong
from plexinode.wire.schema import Message

log = logging.getLogger(__name__)

#: Requesters being pinged back at once; beyond this, new requesters are not verified (yet).
VERIFY_WORKERS = 32
#: Requesters waiting to be pinged back. A burst of joins (every new node asks its neighbours
#: about its own ID) must not be skipped, or the newcomers stay unknown to exactly the nodes
#: that lookups for them converge on; the cap bounds memory under a flood of fresh identities.
MAX_PENDING_VERIFICATIONS = 1024
#: The routing table is written to SQLite this often (and on shutdown).
PERSIST_INTERVAL = 60.0
#: Bootstrap retries back off from 1 s, doubling, to at most this.
BOOTSTRAP_BACKOFF_MAX = 60.0
#: Contacts loaded from the database at start (the most recently seen first).
MAX_PERSISTED = 500
#: An address others see us at is advertised once this many distinct nodes reported it: one
#: node alone cannot make us publish an address of its choosing.
OBSERVED_QUORUM = 2
#: Reported addresses remembered (those with the fewest reporters are forgotten first), and
#: reporters remembered per address.
MAX_OBSERVED = 16
MAX_REPORTERS = 8
#: Contacts pinged right after joining, to learn the address the network sees us at.
ADDRESS_PROBES = 4
#: Records handed to one newly added contact at most, and new contacts waiting for a handoff.
MAX_HANDOFF_RECORDS = 64
MAX_PENDING_HANDOFFS = 256
#: Senders of invalid records remembered (see DhtService.invalid_from).
MAX_INVALID_SENDERS = 4096
#: Least time between two liveness pings (see _liveness_loop), whatever the table size.
MIN_LIVENESS_TICK = 1.0
#: How long the "k-th closest distance" of a record's key is reused (see _records_for).
RADIUS_MAX_AGE = 60.0
#: A change of advertised addresses is published after this delay, so that a burst of reports
#: makes one new record rather than several.
ADDRESS_CHANGE_DELAY = 1.0
#: A store right after a full (d-path) lookup of the same key reuses its k closest for this
#: long: publishing our peer record right after joining would otherwise repeat the join's own
#: lookup of our ID, the largest part of what joining costs the network.
CLOSEST_REUSE = 30.0
#: A bucket left empty by its refresh, with no farther contact to ask, is refreshed again
#: after this many seconds, then after twice as long each time, up to the refresh interval.
EMPTY_BUCKET_RETRY = 30.0
#: How many recent lookups' closest sets are kept for that reuse.
MAX_RECENT_CLOSEST = 64

RecordMaker = Callable[[int, float], Record]
RecordId = tuple[int, bytes, bytes]  # (rtype, key, publisher)


class DhtService:
    """Kademlia over the authenticated datagram service."""

    def __init__(
        self,
        datagrams: DatagramService,
        settings: DhtSettings,
        *,
        request_timeout: float = 2.0,
        bootstrap: Sequence[Address] = (),
        advertise: Sequence[Address] = (),
        db: Database | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], float] = trio.current_time,
    ) -> None:
        self.datagrams = datagrams
        self.settings = settings
        self.node_id = datagrams.identity.node_id
        self.routing = RoutingTable(self.node_id, k=settings.k)
        self._bootstrap = tuple(bootstrap)
        self._db = db
        self._rng = rng or random.Random()
        self._clock = clock
        self._request_timeout = request_timeout
        self._verifying: set[NodeId] = set()
        self._verify_send, self._verify_receive = trio.open_memory_channel[Contact](
            MAX_PENDING_VERIFICATIONS
        )
        self._pinging_oldest: set[NodeId] = set()
        self._nursery: trio.Nursery | None = None
        #: Set once the node has joined: it knows at least one other node and has looked
        #: up its own ID (or, with no bootstrap address, found nobody to ask).
        self.joined = trio.Event()
        #: The contacts saved by the last run (loaded at start): other services may try them
        #: while the DHT cannot reach them yet.
        self.remembered: list[Contact] = []
        #: Set once the first bucket refresh after joining is over: the table then covers the
        #: ID space (each part of it that has nodes), not only our own neighbourhood.
        self.refreshed = trio.Event()
        self.registry: RecordRegistry = default_registry()
        self.records = RecordStore(self.registry)
        #: Invalid records received, per sender (the input to reputation, a later issue);
        #: at most MAX_INVALID_SENDERS, the least recently offending forgotten first.
        self.invalid_from: collections.Counter[NodeId] = collections.Counter()
        #: Counters of record maintenance (published, republished, handed off, expired).
        self.record_stats: collections.Counter[str] = collections.Counter()
        # Addresses we are reachable at: the bound ones that are routable (not 0.0.0.0), and
        # those other nodes report in their pongs (with their reporters, for the quorum).
        self._bound = tuple(a for a in advertise if is_routable(a))
        self._observed: collections.OrderedDict[Address, set[str]] = collections.OrderedDict()
        self._published_addresses: tuple[Address, ...] = ()
        self._addresses_changed = trio.Event()
        # Records this node owns and keeps alive, by (rtype, key): how to make a fresh one.
        self._owned: dict[tuple[int, bytes], RecordMaker] = {}
        self._last_seq = 0
        # When each held record was last stored here or republished by us (the paper's
        # optimisation: a record someone else just republished need not be republished).
        self._touched: dict[RecordId, float] = {}
        self._radius: dict[RecordId, tuple[int, int, float]] = {}
        self._recent_closest: collections.OrderedDict[NodeId, tuple[float, tuple[Contact, ...]]]
        self._recent_closest = collections.OrderedDict()
        self._handoff_send, self._handoff_receive = trio.open_memory_channel[Contact](
            MAX_PENDING_HANDOFFS
        )

    # -- life cycle ----------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve and maintain the DHT until cancelled."""
        self.datagrams.on(FindNode, self._on_find_node)
        self.datagrams.on(Store, self._on_store)
        self.datagrams.on(FindValue, self._on_find_value)
        # Every authenticated exchange teaches the table: replies to any of our requests (they
        # prove the node at that address), and requests (after a ping back, see _maybe_verify).
        self.datagrams.observe(requests=self._maybe_verify, replies=self._learn)
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            nursery.start_soon(self._join)
            for _ in range(VERIFY_WORKERS):
                nursery.start_soon(self._verify_worker)
            nursery.start_soon(self._refresh_loop)
            nursery.start_soon(self._liveness_loop)
            nursery.start_soon(self._publish_loop)
            nursery.start_soon(self._republish_loop)
            nursery.start_soon(self._handoff_worker)
            if self._db is not None:
                nursery.start_soon(self._persist_loop)

    async def _join(self) -> None:
        persisted = await self._load_persisted()
        self.remembered = list(persisted)
        delay = 1.0
        while True:
            candidates = [c.address for c in persisted] + list(self._bootstrap)
            if not candidates and len(self.routing) == 0:
                log.info("no bootstrap address: waiting for other nodes to contact this one")
                self.joined.set()
                return
            await self.bootstrap(candidates, persisted)
            if len(self.routing) > 0:
                log.info("joined the DHT: %d contacts", len(self.routing))
                self.joined.set()
                # Written now, not at the first persist interval: a node killed in its first
                # minute can then still rejoin without its bootstrap addresses.
                await self.persist()
                return
            log.warning("bootstrap found nobody; retrying in %.0fs", delay)
            await trio.sleep(delay)
            delay = min(delay * 2, BOOTSTRAP_BACKOFF_MAX)

    async def bootstrap(self, addresses: Sequence[Address], known: Sequence[Contact] = ()) -> int:
        """Contact `addresses` (and `known` contacts), then look up our own ID; returns contacts."""
        known_ids = {c.address: c.node_id for c in known}
        async with trio.open_nursery() as nursery:
            for address in dict.fromkeys(addresses):
                nursery.start_soon(self._ask_for_self, address, known_ids.get(address))
        if len(self.routing) > 0:
            await self.find_node(self.node_id)
        return len(self.routing)

    async def _ask_for_self(self, address: Address, node_id: NodeId | None) -> None:
        try:
            await self.datagrams.request(address, FindNode(self.node_id.raw), node_id=node_id)
        except (PeerTimeout, RemoteProtocolError) as exc:
            log.debug("bootstrap contact %s: %s", address, exc)

    # -- serving -------------------------------------------------------------------------------

    async def _on_find_node(self, inbound: Inbound) -> Message:
        assert isinstance(inbound.message, FindNode)
        target = NodeId(inbound.message.target)
        closest = self.routing.closest(
            target, self.settings.k, exclude=(inbound.sender,), live_only=True
        )
        return Nodes(fit_contacts(closest))

    async def _on_store(self, inbound: Inbound) -> Message:
        assert isinstance(inbound.message, Store)
        record = inbound.message.record
        now = self._clock()
        outcome = self.records.put(record, now)
        if isinstance(outcome, Stored):
            self._touched[_record_id(record)] = now
            return StoreResult(True, outcome.record.seq, "")
        if isinstance(outcome, Unchanged):
            if outcome.held.seq == record.seq:
                self._touched[_record_id(record)] = now  # someone else republished it
            return StoreResult(False, outcome.held.seq, "newer version held")
        assert isinstance(outcome, Refused)
        if outcome.invalid:
            self._note_invalid(inbound.sender)
            raise InvalidRecord(outcome.reason, "refused")  # an `error` INVALID reply
        return StoreResult(False, 0, outcome.reason[:64])

    async def _on_find_value(self, inbound: Inbound) -> Message:
        assert isinstance(inbound.message, FindValue)
        query = inbound.message
        held = self.records.get(query.rtype, query.key, self._clock())
        if held:
            return Value(fit_records(held), ())
        closest = self.routing.closest(
            NodeId(query.key), self.settings.k, exclude=(inbound.sender,), live_only=True
        )
        return Value((), fit_contacts(closest))

    def _maybe_verify(self, inbound: Inbound) -> None:
        """Ping back a requester we do not know, at the address it wrote from."""
        sender = inbound.sender
        if sender in self.routing or sender in self._verifying or not is_routable(inbound.address):
            return
        if not self.routing.has_room_for(sender):
            self.routing.stats["verify_skipped_full"] += 1  # the table would not keep it
            return
        try:
            self._verify_send.send_nowait(Contact(sender, inbound.address))
        except trio.WouldBlock:
            self.routing.stats["verify_queue_full"] += 1
            return
        self._verifying.add(sender)

    async def _verify_worker(self) -> None:
        async for contact in self._verify_receive:
            try:
                await self.datagrams.request(
                    contact.address, Ping(), node_id=contact.node_id, retries=1
                )
            except (PeerTimeout, RemoteProtocolError):
                pass
            finally:
                self._verifying.discard(contact.node_id)

    # -- learning ------------------------------------------------------------------------------

    def _learn(self, reply: Reply) -> None:
        """A node answered our request: it may enter the routing table."""
        contact = Contact(reply.sender, reply.address)
        outcome = self.routing.observe(contact, self._clock(), rtt=reply.rtt)
        if isinstance(reply.message, Pong):
            self.note_observed(reply.message, reply.address)
        if isinstance(outcome, Added) and len(self.records):
            try:
                self._handoff_send.send_nowait(contact)
            except trio.WouldBlock:
                self.record_stats["handoff_queue_full"] += 1
        if isinstance(outcome, BucketFull) and self._nursery is not None:
            oldest = outcome.oldest
            if oldest.node_id not in self._pinging_oldest:
                self._pinging_oldest.add(oldest.node_id)
                self._nursery.start_soon(self._ping_oldest, oldest)

    async def _ping_oldest(self, oldest: Contact) -> None:
        try:
            reply = await self.datagrams.request(
                oldest.address, Ping(), node_id=oldest.node_id, retries=1
            )
            self.routing.ping_result(oldest.node_id, True, self._clock(), rtt=reply.rtt)
        except (PeerTimeout, RemoteProtocolError):
            self.routing.ping_result(oldest.node_id, False, self._clock())
        finally:
            self._pinging_oldest.discard(oldest.node_id)

    # -- lookups -------------------------------------------------------------------------------

    async def find_node(self, target: NodeId, *, paths: int | None = None) -> LookupResult:
        """Iterative lookup of `target` over `paths` disjoint paths (default: the setting)."""
        paths = paths or self.settings.paths
        result = await self._lookup(target, FindNode(target.raw), paths=paths)
        if paths >= self.settings.paths and result.closest:
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
            self.record_stats["closest_reused"] += 1
            return recent[1]
        return (await self.find_node(target)).closest

    async def get(self, rtype: int, key: bytes) -> list[Record]:
        """Valid records of `rtype` under `key`, from the nodes closest to it (or ourselves)."""
        now = self._clock()
        local = self.records.get(rtype, key, now)
        result = await self._lookup(NodeId(key), FindValue(rtype, key))
        found = list(result.value) if isinstance(result.value, tuple) else []
        return local + [r for r in found if r not in local]

    async def put(self, record: Record) -> int:
        """Validate `record`, keep it, and store it on the k closest nodes; returns how many
        of them accepted it (or already held it)."""
        now = self._clock()
        outcome = self.records.put(record, now)
        if isinstance(outcome, Refused):
            raise InvalidRecord(outcome.reason, "refused by this node")
        self._touched[_record_id(record)] = now
        return await self._store_on_closest(record)

    async def _store_on_closest(self, record: Record) -> int:
        closest = await self.closest_to(NodeId(record.key))
        accepted = 0

        async def store_on(contact: Contact) -> None:
            nonlocal accepted
            try:
                reply = await self.datagrams.request(
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
        paths = paths or self.settings.paths
        request = FindNode(node_id.raw)
        # Every stage starts from the table as it was: the nodes that answered an earlier
        # stage enter the table, and if they are liars close to the target, seeding the
        # disjoint paths with them would hand the liars paths they did not have to capture.
        seeds = self.routing.closest(node_id, self.settings.k)
        stages: list[LookupResult] = []
        entry = self.routing.get(node_id)
        if entry is not None and not entry.stale:
            stages.append(await self._ask_directly(entry.contact))
        if not (stages and stages[-1].found_target):
            stages.append(await self._lookup(node_id, request, paths=1, seeds=seeds))
        if not stages[-1].found_target and paths > 1:
            stages.append(await self._lookup(node_id, request, paths=paths, seeds=seeds))
        return _merged(stages)

    async def _ask_directly(self, contact: Contact) -> LookupResult:
        """Stage 1 of :meth:`locate`: one ping to a known contact (its signed pong, matched on
        its node ID and address, proves it is there; no contact list is needed)."""
        started = trio.current_time()
        found = True
        try:
            await self.datagrams.request(
                contact.address,
                Ping(),
                node_id=contact.node_id,
                attempt_timeout=self.routing.timeout_for(
                    contact.node_id, default=self._request_timeout
                ),
                retries=0,
            )
        except (PeerTimeout, RemoteProtocolError):
            found = False
            self.routing.failed(contact.node_id, self._clock())
        stats = LookupStats.direct(found, trio.current_time() - started)
        closest = (contact,) if found else ()
        return LookupResult(contact.node_id, closest, found, None, None, stats)

    async def _lookup(
        self,
        target: NodeId,
        request: Message,
        *,
        paths: int | None = None,
        seeds: Sequence[Contact] | None = None,
    ) -> LookupResult:
        if seeds is None:
            seeds = self.routing.closest(target, self.settings.k)
        lookup = Lookup(
            target,
            seeds,
            own_id=self.node_id,
            k=self.settings.k,
            alpha=self.settings.alpha,
            paths=paths or self.settings.paths,
            find_value=isinstance(request, FindValue),
        )
        send, receive = trio.open_memory_channel[tuple[str, NodeId, Any]](math.inf)
        # When each query in flight counts as slow (on trio's clock): the lookup then stops
        # waiting for it and asks someone else, but still takes its answer if it comes.
        slow_at: dict[NodeId, float] = {}
        async with trio.open_nursery() as nursery:
            while not lookup.done:
                for query in lookup.next_queries(self._clock()):
                    slow_at[query.contact.node_id] = trio.current_time() + self._soft_timeout()
                    nursery.start_soon(self._query, query.contact, request, send)
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
        median = self.routing.median_rtt()
        if median is None:
            return self._request_timeout / 2
        return min(max(2 * median, 0.02), self._request_timeout)

    async def _query(
        self,
        contact: Contact,
        request: Message,
        events: trio.MemorySendChannel[tuple[str, NodeId, Any]],
    ) -> None:
        timeout = self.routing.timeout_for(contact.node_id, default=self._request_timeout)
        try:
            reply = await self.datagrams.request(
                contact.address,
                request,
                node_id=contact.node_id,
                attempt_timeout=timeout,
                retries=1,
            )
        except (PeerTimeout, RemoteProtocolError):
            self.routing.failed(contact.node_id, self._clock())
            events.send_nowait(("fail", contact.node_id, None))
            return
        contacts: list[Contact] = []
        records: tuple[Record, ...] = ()
        message = reply.message
        if isinstance(message, Nodes | Value):
            difficulty = self.settings.id_difficulty
            for wire_contact in message.contacts:
                try:
                    candidate = wire_contact.to_contact()
                except DecodeError:
                    continue
                if difficulty and not candidate.node_id.meets(difficulty):
                    self.routing.stats["ignored_id_puzzle"] += 1
                    continue
                contacts.append(candidate)
        if isinstance(message, Value) and isinstance(request, FindValue):
            records = self._valid_records(message.records, request, reply.sender)
            if message.records and not records:
                # Only invalid records: this node lied or is broken; do not use its answer.
                events.send_nowait(("fail", contact.node_id, None))
                return
        events.send_nowait(("ok", contact.node_id, (contacts, records)))

    def _note_invalid(self, sender: NodeId) -> None:
        """Count an invalid record from `sender`, keeping at most MAX_INVALID_SENDERS (the
        least recently offending forgotten first): fresh identities are cheap to make."""
        count = self.invalid_from.pop(sender, 0) + 1
        self.invalid_from[sender] = count
        if len(self.invalid_from) > MAX_INVALID_SENDERS:
            del self.invalid_from[next(iter(self.invalid_from))]

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
                validate_record(record, now, self.registry)
            except InvalidRecord as exc:
                self._note_invalid(sender)
                log.debug("invalid record from %s: %s", sender.short(), exc)
                continue
            valid.append(record)
        return tuple(valid)

    async def resolve(self, node_id: NodeId, *, fresh: bool = False) -> Contact | None:
        """The current address of `node_id`, or None if the DHT does not know it.

        From the routing table unless `fresh`; else :meth:`locate` (the node itself answers:
        directly if the table knows it, else through one lookup path, then through all); else
        one FIND_VALUE lookup for the node's signed peer record, whose newest valid version
        gives the address (callers still authenticate the node when they contact it).
        """
        if not fresh:
            entry = self.routing.get(node_id)
            if entry is not None:
                return entry.contact
        result = await self.locate(node_id)
        for contact in result.closest:
            if contact.node_id == node_id:
                return contact
        result = await self._lookup(node_id, FindValue(PEER, node_id.raw))
        for contact in result.closest:
            if contact.node_id == node_id:
                return contact
        if result.value_from is not None and result.value_from.node_id == node_id:
            return result.value_from
        records = list(result.value) if isinstance(result.value, tuple) else []
        records += self.records.get(PEER, node_id.raw, self._clock())
        if not records:
            return None
        newest = max(records, key=lambda r: r.seq)
        return Contact(node_id, peer_addresses(newest)[0])

    # -- maintenance ---------------------------------------------------------------------------

    async def _refresh_loop(self) -> None:
        # The first pass runs right after joining: as in the Kademlia paper, a new node refreshes
        # every bucket farther than its closest neighbour (a never-touched bucket is stale). That
        # fills its table across the ID space, and every node it asks learns of it in turn.
        # A bucket that stayed empty with nobody farther to ask is tried again after
        # EMPTY_BUCKET_RETRY seconds, then twice as long each time up to the interval: its nodes
        # may only have been joining at the same time as we did.
        await self.joined.wait()
        interval = self.settings.refresh_interval
        empty: dict[int, tuple[int, float]] = {}  # bucket -> (tries, when to try again)
        next_pass = self._clock()
        while True:
            now = self._clock()
            due = {i for i, (_, at) in empty.items() if at <= now}
            if now >= next_pass:
                due.update(self.routing.stale_buckets(now, interval))
                next_pass = now + interval / 4 + self._rng.random() * interval / 4
            for index in sorted(due):
                if not await self.refresh_bucket(index):
                    empty.pop(index, None)
                    continue
                tries = empty.get(index, (0, 0.0))[0] + 1
                delay = min(interval, EMPTY_BUCKET_RETRY * 2 ** (tries - 1))
                empty[index] = (tries, self._clock() + delay)
            self.refreshed.set()
            wake = min([next_pass, *(at for _, at in empty.values())])
            await trio.sleep(max(0.0, wake - self._clock()))

    async def refresh_bucket(self, index: int) -> bool:
        """Look up a random ID in bucket `index`, so that the nodes in that part of the ID
        space (whoever answers) can enter the table. Returns True if the bucket is still empty
        and nobody farther could be asked (worth trying again soon).

        One path: a refresh only needs to meet nodes; nothing trusts its result, so the
        protection of disjoint paths would cost four times the traffic for nothing.

        If the bucket is still empty, ``alpha`` contacts of the farther buckets are asked too,
        and a lookup follows from any node they name in the bucket's range. That closes a hole
        a lookup alone cannot: when many nodes join at once through one bootstrap node, a group
        of nodes close to each other can end up knowing nobody in a neighbouring part of the ID
        space, and a lookup into it, which asks the closest nodes known first, then only ever
        meets the same group. Nodes of the farther buckets lie in other parts of the ID space,
        whose tables cover both. A bucket that is empty because its range has no node costs
        only those few extra queries.
        """
        target = self.routing.random_id_in_bucket(index, self._rng)
        await self.find_node(target, paths=1)
        self.routing.touch_bucket(index, self._clock())
        if self.routing.bucket_sizes().get(index):
            return False
        farther = [e.contact for e in self.routing.entries() if e.bucket > index and not e.stale]
        if not farther:
            return True
        self.routing.stats["refresh_from_farther"] += 1
        asked = self._rng.sample(farther, min(len(farther), self.settings.alpha))
        inside: dict[NodeId, Contact] = {}
        send, receive = trio.open_memory_channel[tuple[str, NodeId, Any]](len(asked))
        async with trio.open_nursery() as nursery:
            for contact in asked:
                nursery.start_soon(self._query, contact, FindNode(target.raw), send)
            for _ in asked:
                kind, _, payload = await receive.receive()
                if kind == "ok":
                    for contact in payload[0]:
                        if bucket_index(self.node_id, contact.node_id) == index:
                            inside[contact.node_id] = contact
        if inside:
            seeds = list(inside.values())[: self.settings.k]
            await self._lookup(target, FindNode(target.raw), paths=1, seeds=seeds)
        return False

    # -- records we own: our peer record, and any a service asks us to keep published --------

    def advertised_addresses(self) -> list[Address]:
        """The addresses our peer record announces: routable bound addresses, then those at
        least OBSERVED_QUORUM nodes reported seeing us at (most reported first)."""
        addresses = list(self._bound)
        reported = sorted(
            (a for a, who in self._observed.items() if len(who) >= OBSERVED_QUORUM),
            key=lambda a: -len(self._observed[a]),
        )
        for address in reported:
            if address not in addresses:
                addresses.append(address)
        return addresses[:PEER_MAX_ADDRESSES]

    def note_observed(self, pong: Pong, reporter: Address) -> None:
        """The node at `reporter` told us, in a pong, the address our datagram came from.

        Reports count per *witness*: the reporter's /24 (IPv4) or /48 (IPv6) for a public
        address, its address and port otherwise (loopback and LANs). Identities are cheap, so
        OBSERVED_QUORUM reports must come from that many networks, not just that many keys.
        """
        witness = subnet(reporter) if is_public(reporter) else str(reporter)
        address = Address(pong.observed_host, pong.observed_port)
        if not is_routable(address):
            return
        reporters = self._observed.get(address)
        if reporters is None:
            if len(self._observed) >= MAX_OBSERVED:
                # Forget the address with the fewest reporters (the oldest of those), so that
                # one node inventing addresses cannot flush those that others confirmed.
                fewest = min(self._observed, key=lambda a: len(self._observed[a]))
                del self._observed[fewest]
            reporters = self._observed[address] = set()
        else:
            self._observed.move_to_end(address)
        if len(reporters) < MAX_REPORTERS:
            reporters.add(witness)
        if tuple(self.advertised_addresses()) != self._published_addresses:
            self._addresses_changed.set()

    def keep_published(self, rtype: int, key: bytes, make: RecordMaker) -> None:
        """Publish a record this node owns now and keep it alive: ``make(seq, now)`` must return
        a freshly signed record of `rtype` under `key` (seq and now are supplied)."""
        self._owned[(rtype, key)] = make

    def next_seq(self) -> int:
        """A sequence number above every one this node used: Unix milliseconds, or more."""
        self._last_seq = max(self._last_seq + 1, int(self._clock() * 1000))
        return self._last_seq

    def record_ttl(self) -> int:
        """Lifetime of the records we sign: three republish intervals, within the type caps."""
        return max(1, min(PEER_MAX_TTL, int(3 * self.settings.republish_interval)))

    def _make_peer_record(self, seq: int, now: float) -> Record:
        return make_peer_record(
            self.datagrams.identity, self._published_addresses, seq, now, self.record_ttl()
        )

    async def _probe_addresses(self) -> None:
        """Ping a few contacts: their pongs tell us the address the network sees us at."""

        async def probe(contact: Contact) -> None:
            with contextlib.suppress(PeerTimeout, RemoteProtocolError):
                await self.datagrams.request(
                    contact.address, Ping(), node_id=contact.node_id, retries=1
                )

        async with trio.open_nursery() as nursery:
            for contact in self.routing.closest(self.node_id, ADDRESS_PROBES):
                nursery.start_soon(probe, contact)

    async def _publish_loop(self) -> None:
        """Publish our own records after joining, every republish interval, and (for the peer
        record) soon after our advertised addresses change."""
        await self.joined.wait()
        if not self._bound:
            await self._probe_addresses()
        interval = self.settings.republish_interval
        while True:
            self._addresses_changed = trio.Event()
            addresses = tuple(self.advertised_addresses())
            if addresses:
                self._published_addresses = addresses
                self._owned[(PEER, self.node_id.raw)] = self._make_peer_record
            else:
                log.info("no address to publish yet (no node has reported seeing us)")
            for make in list(self._owned.values()):
                record = make(self.next_seq(), self._clock())
                try:
                    stored_on = await self.put(record)
                except InvalidRecord as exc:  # a maker's bug: keep the others going
                    log.warning("own record of type %d refused: %s", record.rtype, exc)
                    continue
                self.record_stats["published"] += 1
                log.debug("published record type %d on %d nodes", record.rtype, stored_on)
            with trio.move_on_after(interval * (0.9 + 0.2 * self._rng.random())):
                await self._addresses_changed.wait()
                await trio.sleep(ADDRESS_CHANGE_DELAY)

    # -- records others own: expiry, republishing, handing over to closer nodes ---------------

    async def _republish_loop(self) -> None:
        """Drop expired records; store the others again on the k closest nodes (which change
        as nodes come and go) unless somebody did so within the last interval."""
        interval = self.settings.republish_interval
        own = self.datagrams.identity.public_key
        while True:
            await trio.sleep(interval * (0.25 + 0.1 * self._rng.random()))
            now = self._clock()
            self.record_stats["expired"] += self.records.expire(now)
            live = {_record_id(r) for r in self.records.all_records()}
            for gone in [i for i in self._touched if i not in live]:
                del self._touched[gone]
            for gone in [i for i in self._radius if i not in live]:
                del self._radius[gone]
            for record in self.records.all_records():
                rid = _record_id(record)
                if record.publisher == own or self._touched.get(rid, 0.0) > now - interval:
                    continue
                if record.expires_at <= self._clock():
                    continue
                self._touched[rid] = self._clock()
                await self._store_on_closest(record)
                self.record_stats["republished"] += 1

    async def _handoff_worker(self) -> None:
        """Give a newly added contact the records it is now among the k closest nodes to
        (and we are too): the Kademlia paper's rule, so records follow their keys as nodes
        join, without waiting for the next republish."""
        async for contact in self._handoff_receive:
            records = self._records_for(contact)
            for record in records[:MAX_HANDOFF_RECORDS]:
                try:
                    await self.datagrams.request(
                        contact.address, Store(record), node_id=contact.node_id, retries=1
                    )
                except (PeerTimeout, RemoteProtocolError):
                    break
                self.record_stats["handed_off"] += 1

    def _records_for(self, contact: Contact) -> list[Record]:
        """Held records to hand to `contact`: it is among the k closest nodes to their key
        that we know, and we are the closest of all we know (the paper's rule, so that only
        one holder sends each record instead of all k).

        The distances of the closest and the k-th closest contacts to a key are cached per
        record for RADIUS_MAX_AGE: this runs for every contact added to the table, and a sort
        of the table per record each time would dominate a busy node's CPU.
        """
        now = self._clock()
        own_id = int.from_bytes(self.node_id.raw, "big")
        their_id = int.from_bytes(contact.node_id.raw, "big")
        out = []
        for record in self.records.all_records():
            if record.expires_at <= now:
                continue
            key = int.from_bytes(record.key, "big")
            nearest, radius = self._radius_of(record, contact.node_id, now)
            qualifies = (key ^ own_id) < nearest and (key ^ their_id) < radius
            # (publisher_id is a hash: checked last, only for records that qualify)
            if qualifies and record.publisher_id != contact.node_id:
                out.append(record)
        return out

    def _radius_of(self, record: Record, newcomer: NodeId, now: float) -> tuple[int, int]:
        """The distances to `record`'s key of the closest and of the k-th closest contacts we
        know besides `newcomer` (cached; "infinite" while we know fewer than k)."""
        rid = _record_id(record)
        cached = self._radius.get(rid)
        if cached is not None and cached[2] > now - RADIUS_MAX_AGE:
            return cached[0], cached[1]
        key = NodeId(record.key)
        closest = self.routing.closest(key, self.settings.k, exclude=(newcomer,))
        infinite = 1 << 256
        nearest = distance(closest[0].node_id, key) if closest else infinite
        radius = distance(closest[-1].node_id, key) if len(closest) >= self.settings.k else infinite
        self._radius[rid] = (nearest, radius, now)
        return nearest, radius

    async def _liveness_loop(self) -> None:
        """Ping, one at a time, the contacts not heard from for a liveness interval.

        The pace spreads a full table over the interval. A contact that answers is seen again
        (the reply observer updates it); one that does not is marked stale at once (three
        attempts were made), which takes it out of our answers to other nodes and lets a
        cached replacement take its place.
        """
        await self.joined.wait()
        interval = self.settings.liveness_interval
        # The contacts pinged within the last interval, oldest first.
        checked: collections.OrderedDict[NodeId, float] = collections.OrderedDict()
        while True:
            pace = max(MIN_LIVENESS_TICK, interval / max(1, len(self.routing)))
            await trio.sleep(pace * (0.5 + self._rng.random()))
            now = self._clock()
            while checked and next(iter(checked.values())) < now - interval:
                checked.popitem(last=False)
            entry = self.routing.least_recently_seen(now - interval, skip=checked)
            if entry is None:
                continue
            contact = entry.contact
            checked[contact.node_id] = now
            checked.move_to_end(contact.node_id)
            self.record_stats["liveness_pings"] += 1
            try:
                await self.datagrams.request(
                    contact.address, Ping(), node_id=contact.node_id, retries=2
                )
            except (PeerTimeout, RemoteProtocolError):
                self.record_stats["liveness_failures"] += 1
                for _ in range(self.routing.max_failures):
                    self.routing.failed(contact.node_id, self._clock())

    async def _load_persisted(self) -> list[Contact]:
        if self._db is None:
            return []
        rows = await self._db.execute(
            "SELECT node_id, host, port FROM dht_contacts ORDER BY last_seen DESC LIMIT ?",
            (MAX_PERSISTED,),
        )
        contacts = []
        for raw, host, port in rows:
            try:
                contacts.append(Contact(NodeId(bytes(raw)), Address(str(host), int(port))))
            except (ValueError, TypeError):
                continue
        return contacts

    async def persist(self) -> None:
        """Write the routing table to the database (replacing what was there)."""
        if self._db is None:
            return
        rows = [
            (
                entry.contact.node_id.raw,
                entry.contact.address.host,
                entry.contact.address.port,
                entry.last_seen,
            )
            for entry in self.routing.entries()
        ]

        def write(conn: Any) -> None:
            conn.execute("DELETE FROM dht_contacts")
            conn.executemany(
                "INSERT INTO dht_contacts (node_id, host, port, last_seen) VALUES (?, ?, ?, ?)",
                rows,
            )

        await self._db.write(write)

    async def _persist_loop(self) -> None:
        try:
            while True:
                await trio.sleep(PERSIST_INTERVAL)
                await self.persist()
        finally:
            with trio.CancelScope(shield=True):
                await self.persist()

    def describe(self, record: Record) -> dict[str, Any]:
        """A record as `plexinode dht get` shows it."""
        rtype = self.registry.get(record.rtype)
        doc: dict[str, Any] = {
            "type": rtype.name if rtype is not None else str(record.rtype),
            "key": record.key.hex(),
            "publisher": str(record.publisher_id),
            "seq": record.seq,
            "expires_at": record.expires_at,
            "expires_in_s": round(record.expires_at - self._clock(), 1),
        }
        if record.rtype == PEER:
            doc["addresses"] = [str(a) for a in peer_addresses(record)]
        else:
            doc["value"] = record.value.hex()
        return doc

    def records_summary(self) -> dict[str, Any]:
        """Record counters for `status`."""
        return {
            "held": len(self.records),
            "own": len(self._owned),
            "addresses": [str(a) for a in self._published_addresses],
            "counters": dict(self.record_stats),
        }

    def peers(self) -> list[dict[str, Any]]:
        """The routing table for `plexinode peers`."""
        return [
            {
                "node_id": str(entry.contact.node_id),
                "address": str(entry.contact.address),
                "last_seen": entry.last_seen,
            }
            for entry in self.routing.entries()
        ]


def _record_id(record: Record) -> RecordId:
    return (record.rtype, record.key, record.publisher)


def _merged(stages: Sequence[LookupResult]) -> LookupResult:
    """One result for lookups run one after another: the last one's findings, every one's
    costs (queries, failures, time and the like summed; hops are those of the last stage)."""
    last = stages[-1]
    if len(stages) == 1:
        return last
    totals: dict[str, Any] = {}
    for name in (f.name for f in dataclasses.fields(LookupStats)):
        values = [getattr(stage.stats, name) for stage in stages]
        if name in ("target_hops", "value_hops", "max_hops"):
            totals[name] = values[-1]
        elif name == "budget_exhausted":
            totals[name] = any(values)
        else:
            totals[name] = sum(values)
    return dataclasses.replace(last, stats=LookupStats(**totals))
