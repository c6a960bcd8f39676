"""The DHT service: the life cycle and the public interface of the Kademlia DHT.

It joins the network through bootstrap addresses or, after a restart, through the contacts
persisted in SQLite, then runs its jobs in one nursery until cancelled. Each job is a class in
its own module, fed by this one and by the datagram service:

* :class:`~plexinode.dht.serving.Server` answers FIND_NODE, STORE and FIND_VALUE and pings back
  the requesters it does not know;
* :class:`~plexinode.dht.querying.Querier` runs lookups over d disjoint paths, and locates,
  resolves, gets and puts on top of them;
* :class:`~plexinode.dht.maintenance.Maintenance` keeps the routing table fresh (bucket
  refreshes, liveness pings, full buckets) and persists it;
* :class:`~plexinode.dht.publishing.Publisher` publishes our peer record and republishes the
  records we hold;
* :class:`~plexinode.dht.handoff.Handoff` hands records to nodes that join closer to their key.

The jobs share the sans-I/O cores this service owns: the routing table, the record store and the
replication state. Imports run one way: this module imports the jobs, the jobs import the cores
(and the querier, which the maintenance and publishing jobs run lookups through), never back.

Every authenticated reply to one of our requests teaches the routing table (:meth:`_learn`):
the replying node may enter it, a pong tells us the address we were seen at, a contact added
may be handed records, and a full bucket asks for a ping of its oldest entry.

Replay. The service and its jobs start their tasks in a fixed order and draw every random
choice from the one generator they are given; and nothing in the DHT iterates a set (or a dict
built from one) where the order matters: lists, dicts in insertion order and sorted sets only.
So a simulation's outcome follows from its seed alone, whatever ``PYTHONHASHSEED`` is.
"""

from __future__ import annotations

import collections
import logging
import random
from collections.abc import Callable, Sequence
from typing import Any

import trio

from plexinode.dht.contact import Contact
from plexinode.dht.handoff import Handoff
from plexinode.dht.lookup import LookupResult
from plexinode.dht.maintenance import Maintenance
from plexinode.dht.messages import FindNode
from plexinode.dht.publishing import Publisher
from plexinode.dht.querying import Querier
from plexinode.dht.record_types import PEER, default_registry, peer_addresses
from plexinode.dht.records import Record, RecordRegistry
from plexinode.dht.replication import Replication
from plexinode.dht.routing import Added, BucketFull, RoutingTable
from plexinode.dht.serving import VERIFY_WORKERS, Server
from plexinode.dht.settings import DhtSettings
from plexinode.dht.store import RecordStore
from plexinode.errors import PeerTimeout, RemoteProtocolError
from plexinode.identity import NodeId
from plexinode.net.address import Address
from plexinode.net.datagram import DatagramService, Reply
from plexinode.net.names import Resolver, SystemResolver, ip_version, resolve_all
from plexinode.storage import Database
from plexinode.wire.messages import Pong

log = logging.getLogger(__name__)

#: Bootstrap retries back off from 1 s, doubling, to at most this.
BOOTSTRAP_BACKOFF_MAX = 60.0


class DhtService:
    """Kademlia over the authenticated datagram service.

    Args:
        datagrams: The authenticated datagram service (and our identity).
        settings: The DHT's settings.
        request_timeout: The timeout of a request to a node with no RTT sample yet.
        bootstrap: Addresses to join through (names are resolved on each attempt).
        advertise: The addresses we are bound to (the routable ones are published).
        db: Where the routing table is persisted, if anywhere.
        rng: The generator of every random choice (seeded in simulations, so that they replay).
        clock: The clock records and the routing table are kept by.
        resolver: Resolves the bootstrap addresses that are names.

    Attributes:
        routing: The routing table.
        records: The records held.
        registry: The record types accepted.
        joined: Set once the node has joined: it knows at least one other node and has looked
            up its own ID (or, with no bootstrap address, found nobody to ask).
        refreshed: Set once the first bucket refresh after joining is over: the table then
            covers the ID space (each part of it that has nodes), not only our neighbourhood.
        remembered: The contacts saved by the last run (loaded at start): other services may
            try them while the DHT cannot reach them yet.
        bootstrap_addresses: The bootstrap addresses as last resolved (IP literals).
        invalid_from: Invalid records received, per sender (the input to reputation).
        record_stats: Counters of record maintenance (published, republished, handed off,
            expired, ...).
    """

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
        resolver: Resolver | None = None,
    ) -> None:
        self.datagrams = datagrams
        self.settings = settings
        self.node_id = datagrams.identity.node_id
        # A full bucket pings its oldest entry only if that was not heard from for a liveness
        # interval (as the liveness pings do): an entry heard from since is as good as alive.
        self.routing = RoutingTable(
            self.node_id, k=settings.k, fresh_for=settings.liveness_interval
        )
        self._bootstrap = tuple(bootstrap)
        self._resolver: Resolver = resolver or SystemResolver()
        #: The IP version of the bound address: a name resolves to addresses of that family.
        self._ip_version = ip_version(advertise[0].host) if advertise else None
        self.bootstrap_addresses: list[Address] = [
            a for a in self._bootstrap if ip_version(a.host) is not None
        ]
        self._rng = rng or random.Random()
        self._clock = clock
        self._nursery: trio.Nursery | None = None
        self.joined = trio.Event()
        self.remembered: list[Contact] = []
        self.refreshed = trio.Event()
        self.registry: RecordRegistry = default_registry()
        self.records = RecordStore(self.registry)
        self.record_stats: collections.Counter[str] = collections.Counter()
        replication = Replication(self.routing, datagrams.identity.public_key, k=settings.k)
        self._server = Server(
            datagrams, self.routing, self.records, replication, k=settings.k, clock=clock
        )
        self.invalid_from = self._server.invalid_from
        self._querier = Querier(
            datagrams,
            self.routing,
            self.records,
            replication,
            settings,
            request_timeout=request_timeout,
            clock=clock,
            note_invalid=self._server.note_invalid,
            record_stats=self.record_stats,
        )
        self._maintenance = Maintenance(
            datagrams,
            self.routing,
            self._querier,
            settings,
            db=db,
            rng=self._rng,
            clock=clock,
            joined=self.joined,
            refreshed=self.refreshed,
            record_stats=self.record_stats,
        )
        self._publisher = Publisher(
            datagrams,
            self.routing,
            self.records,
            replication,
            querier=self._querier,
            settings=settings,
            advertise=advertise,
            rng=self._rng,
            clock=clock,
            joined=self.joined,
            record_stats=self.record_stats,
        )
        self._handoff = Handoff(
            datagrams, self.records, replication, clock=clock, record_stats=self.record_stats
        )
        self._persisting = db is not None

    # -- life cycle ----------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve and maintain the DHT until cancelled."""
        self._server.register()
        # Every authenticated exchange teaches the table: replies to any of our requests (they
        # prove the node at that address), and requests (after a ping back, see serving).
        self.datagrams.observe(requests=self._server.maybe_verify, replies=self._learn)
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            nursery.start_soon(self._join)
            for _ in range(VERIFY_WORKERS):
                nursery.start_soon(self._server.verify_worker)
            nursery.start_soon(self._maintenance.refresh_loop)
            nursery.start_soon(self._maintenance.liveness_loop)
            nursery.start_soon(self._publisher.publish_loop)
            nursery.start_soon(self._publisher.republish_loop)
            nursery.start_soon(self._handoff.run)
            if self._persisting:
                nursery.start_soon(self._maintenance.persist_loop)

    async def _join(self) -> None:
        persisted = await self._maintenance.load_persisted()
        self.remembered = list(persisted)
        delay = 1.0
        while True:
            candidates = [c.address for c in persisted] + await self._resolve_bootstrap()
            if not persisted and not self._bootstrap and len(self.routing) == 0:
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

    async def _resolve_bootstrap(self) -> list[Address]:
        """The bootstrap addresses, names resolved again (DNS may have changed since)."""
        resolved, problems = await resolve_all(
            self._resolver, self._bootstrap, version=self._ip_version
        )
        for problem in problems:
            log.warning("bootstrap address %s", problem)
        self.bootstrap_addresses = resolved
        return resolved

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

    def _learn(self, reply: Reply) -> None:
        """A node answered our request: it may enter the routing table."""
        contact = Contact(reply.sender, reply.address)
        outcome = self.routing.observe(contact, self._clock(), rtt=reply.rtt)
        if isinstance(reply.message, Pong):
            self._publisher.note_observed(reply.message, reply.address)
        if isinstance(outcome, Added) and len(self.records):
            self._handoff.offer(contact)
        if isinstance(outcome, BucketFull) and self._nursery is not None:
            self._maintenance.check_oldest(self._nursery, outcome.oldest)

    # -- lookups and records (see querying) ----------------------------------------------------

    async def find_node(self, target: NodeId, *, paths: int | None = None) -> LookupResult:
        """Iterative lookup of `target` over `paths` disjoint paths (default: the setting)."""
        return await self._querier.find_node(target, paths=paths)

    async def closest_to(self, target: NodeId) -> tuple[Contact, ...]:
        """The k closest nodes to `target` (from a recent full lookup of it, or a new one)."""
        return await self._querier.closest_to(target)

    async def locate(self, node_id: NodeId, *, paths: int | None = None) -> LookupResult:
        """Find the node `node_id` itself: directly if it is a live contact, else over one
        lookup path, else over `paths` disjoint paths (see :meth:`Querier.locate
        <plexinode.dht.querying.Querier.locate>`)."""
        return await self._querier.locate(node_id, paths=paths)

    async def resolve(self, node_id: NodeId, *, fresh: bool = False) -> Contact | None:
        """The current address of `node_id`, or None if the DHT does not know it: from the
        routing table unless `fresh`, else by :meth:`locate`, else from its peer record."""
        return await self._querier.resolve(node_id, fresh=fresh)

    async def get(self, rtype: int, key: bytes) -> list[Record]:
        """Valid records of `rtype` under `key`, from the nodes closest to it (or ourselves)."""
        return await self._querier.get(rtype, key)

    async def put(self, record: Record) -> int:
        """Validate `record`, keep it, and store it on the k closest nodes; returns how many
        of them accepted it (or already held it)."""
        return await self._querier.put(record)

    # -- maintenance (see maintenance) ---------------------------------------------------------

    async def refresh_bucket(self, index: int) -> bool:
        """Look up a random ID in bucket `index`; True if it is still empty and nobody farther
        could be asked (see :meth:`Maintenance.refresh_bucket
        <plexinode.dht.maintenance.Maintenance.refresh_bucket>`)."""
        return await self._maintenance.refresh_bucket(index)

    async def persist(self) -> None:
        """Write the routing table to the database (replacing what was there)."""
        await self._maintenance.persist()

    # -- our own records (see publishing) ------------------------------------------------------

    def advertised_addresses(self) -> list[Address]:
        """The addresses our peer record announces: routable bound addresses, then those a
        quorum of other nodes reported seeing us at (most reported first)."""
        return self._publisher.addresses.advertised()

    def note_observed(self, pong: Pong, reporter: Address) -> None:
        """The node at `reporter` told us, in a pong, the address our datagram came from."""
        self._publisher.note_observed(pong, reporter)

    def next_seq(self) -> int:
        """A sequence number above every one this node used: Unix milliseconds, or more."""
        return self._publisher.next_seq()

    def record_ttl(self) -> int:
        """Lifetime of the records we sign: three republish intervals, within the type caps."""
        return self._publisher.record_ttl()

    # -- views ---------------------------------------------------------------------------------

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
            "own": int(self._publisher.publishing_peer),
            "addresses": [str(a) for a in self._publisher.published_addresses],
            "counters": dict(self.record_stats),
            "refused": dict(self.records.stats),
            "ping_backs": dict(self._server.verifications.stats),
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
