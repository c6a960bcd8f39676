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
import logging
import math
import random
from collections.abc import Callable, Sequence
from typing import Any

import trio

from plexinode.config import DhtSettings
from plexinode.dht.contact import Contact, is_routable
from plexinode.dht.lookup import Lookup, LookupResult
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
    InvalidRecord,
    Record,
    RecordRegistry,
    default_registry,
    validate_record,
)
from plexinode.dht.routing import BucketFull, RoutingTable
from plexinode.dht.store import RecordStore, Refused, Stored, Unchanged
from plexinode.errors import DecodeError, PeerTimeout, RemoteProtocolError
from plexinode.identity import NodeId
from plexinode.net.address import Address
from plexinode.net.datagram import DatagramService, Inbound, Reply
from plexinode.storage import Database
from plexinode.wire.messages import Ping
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


class DhtService:
    """Kademlia over the authenticated datagram service."""

    def __init__(
        self,
        datagrams: DatagramService,
        settings: DhtSettings,
        *,
        request_timeout: float = 2.0,
        bootstrap: Sequence[Address] = (),
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
        self.joined = trio.Event()
        self.registry: RecordRegistry = default_registry()
        self.records = RecordStore(self.registry)
        #: Invalid records received, per sender (the input to reputation, a later issue).
        self.invalid_from: collections.Counter[NodeId] = collections.Counter()

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
            if self._db is not None:
                nursery.start_soon(self._persist_loop)

    async def _join(self) -> None:
        persisted = await self._load_persisted()
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
        closest = self.routing.closest(target, self.settings.k, exclude=(inbound.sender,))
        return Nodes(fit_contacts(closest))

    async def _on_store(self, inbound: Inbound) -> Message:
        assert isinstance(inbound.message, Store)
        outcome = self.records.put(inbound.message.record, self._clock())
        if isinstance(outcome, Stored):
            return StoreResult(True, outcome.record.seq, "")
        if isinstance(outcome, Unchanged):
            return StoreResult(False, outcome.held.seq, "newer version held")
        assert isinstance(outcome, Refused)
        if outcome.invalid:
            self.invalid_from[inbound.sender] += 1
            raise InvalidRecord(outcome.reason, "refused")  # an `error` INVALID reply
        return StoreResult(False, 0, outcome.reason[:64])

    async def _on_find_value(self, inbound: Inbound) -> Message:
        assert isinstance(inbound.message, FindValue)
        query = inbound.message
        held = self.records.get(query.rtype, query.key, self._clock())
        if held:
            return Value(fit_records(held), ())
        closest = self.routing.closest(
            NodeId(query.key), self.settings.k, exclude=(inbound.sender,)
        )
        return Value((), fit_contacts(closest))

    def _maybe_verify(self, inbound: Inbound) -> None:
        """Ping back a requester we do not know, at the address it wrote from."""
        sender = inbound.sender
        if sender in self.routing or sender in self._verifying or not is_routable(inbound.address):
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
        return await self._lookup(target, FindNode(target.raw), paths=paths)

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
        outcome = self.records.put(record, self._clock())
        if isinstance(outcome, Refused):
            raise InvalidRecord(outcome.reason, "refused by this node")
        result = await self.find_node(NodeId(record.key))
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
            for contact in result.closest:
                nursery.start_soon(store_on, contact)
        return accepted

    async def _lookup(
        self, target: NodeId, request: Message, *, paths: int | None = None
    ) -> LookupResult:
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
        in_flight = 0
        async with trio.open_nursery() as nursery:
            while not lookup.done:
                for query in lookup.next_queries(self._clock()):
                    in_flight += 1
                    nursery.start_soon(self._query, query.contact, request, send)
                if in_flight == 0:
                    break
                kind, node_id, payload = await receive.receive()
                now = self._clock()
                if kind == "slow":
                    lookup.on_slow(node_id, now)
                    continue
                in_flight -= 1
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
        finished = False

        async def mark_slow() -> None:
            await trio.sleep(self._soft_timeout())
            if not finished:
                events.send_nowait(("slow", contact.node_id, None))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(mark_slow)
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
                finished = True
                self.routing.failed(contact.node_id, self._clock())
                events.send_nowait(("fail", contact.node_id, None))
                nursery.cancel_scope.cancel()
                return
            finished = True
            nursery.cancel_scope.cancel()
        contacts: list[Contact] = []
        records: tuple[Record, ...] = ()
        message = reply.message
        if isinstance(message, Nodes | Value):
            for wire_contact in message.contacts:
                try:
                    contacts.append(wire_contact.to_contact())
                except DecodeError:
                    continue
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
                validate_record(record, now, self.registry)
            except InvalidRecord as exc:
                self.invalid_from[sender] += 1
                log.debug("invalid record from %s: %s", sender.short(), exc)
                continue
            valid.append(record)
        return tuple(valid)

    async def resolve(self, node_id: NodeId) -> Contact | None:
        """The current address of `node_id`: from the table, else by a lookup."""
        entry = self.routing.get(node_id)
        if entry is not None:
            return entry.contact
        result = await self.find_node(node_id)
        for contact in result.closest:
            if contact.node_id == node_id:
                return contact
        return None

    # -- maintenance ---------------------------------------------------------------------------

    async def _refresh_loop(self) -> None:
        # The first pass runs right after joining: as in the Kademlia paper, a new node refreshes
        # every bucket farther than its closest neighbour (a never-touched bucket is stale). That
        # fills its table across the ID space, and every node it asks learns of it in turn.
        await self.joined.wait()
        interval = self.settings.refresh_interval
        while True:
            for index in self.routing.stale_buckets(self._clock(), interval):
                target = self.routing.random_id_in_bucket(index, self._rng)
                # One path: a refresh only needs to meet the nodes in that part of the ID space
                # (every node that answers may enter the table); nothing trusts its result, so
                # the protection of disjoint paths would cost four times the traffic for nothing.
                await self.find_node(target, paths=1)
                self.routing.touch_bucket(index, self._clock())
            await trio.sleep(interval / 4 + self._rng.random() * interval / 4)

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
