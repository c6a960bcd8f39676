"""Keeping the routing table fresh: bucket refreshes, liveness pings, full buckets, persistence.

Refresh. The first pass runs right after joining: as in the Kademlia paper, a new node refreshes
every bucket farther than its closest neighbour (a never-touched bucket is stale). That fills its
table across the ID space, and every node it asks learns of it in turn. Later passes refresh the
buckets that saw no activity for the refresh interval. A bucket that stayed empty with nobody
farther to ask is tried again after ``EMPTY_BUCKET_RETRY`` seconds, then twice as long each time
up to the interval: its nodes may only have been joining at the same time as we did.

Liveness. The contacts not heard from for a liveness interval are pinged one at a time, at a pace
that spreads a full table over the interval; one that does not answer is marked stale at once.

Full buckets. When a newcomer finds its bucket full, the table asks for a ping of the bucket's
oldest entry (Kademlia keeps old contacts over new ones); :meth:`Maintenance.check_oldest` sends
it and reports the outcome.

Persistence. The table is written to SQLite every ``PERSIST_INTERVAL`` and on shutdown, and the
contacts saved by the last run are read back at start, so that a restarted node can rejoin
without its bootstrap addresses.
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from typing import Any, Final

import trio

from plexinode.dht.contact import Contact, bucket_index
from plexinode.dht.messages import FindNode
from plexinode.dht.querying import Querier, QueryEvent
from plexinode.dht.routing import RoutingTable
from plexinode.dht.settings import DhtSettings
from plexinode.errors import PeerTimeout, RemoteProtocolError
from plexinode.identity import NodeId
from plexinode.net.address import Address
from plexinode.net.datagram import DatagramService
from plexinode.randomness import Rng
from plexinode.storage import Database
from plexinode.wire.messages import Ping

#: The routing table is written to SQLite this often (and on shutdown).
PERSIST_INTERVAL: Final = 60.0
#: Contacts loaded from the database at start (the most recently seen first).
MAX_PERSISTED: Final = 500
#: Least time between two liveness pings (see Maintenance.liveness_loop), whatever the table
#: size.
MIN_LIVENESS_TICK: Final = 1.0
#: A bucket left empty by its refresh, with no farther contact to ask, is refreshed again
#: after this many seconds, then after twice as long each time, up to the refresh interval.
EMPTY_BUCKET_RETRY: Final = 30.0


class Maintenance:
    """The routing table's upkeep: the owner runs :meth:`refresh_loop`, :meth:`liveness_loop`
    and (with a database) :meth:`persist_loop`, and calls :meth:`check_oldest` for every
    full bucket the table reports.

    Args:
        datagrams: The authenticated datagram service.
        routing: The routing table kept fresh.
        querier: The lookups a refresh runs.
        settings: k, alpha and the refresh and liveness intervals.
        db: Where the table is saved, if anywhere.
        rng: The seeded generator of jitter and random refresh targets.
        clock: The clock the routing table is kept by.
        joined: Set once the node has joined; the loops start then.
        refreshed: Set here once the first refresh pass is over.
        record_stats: The service's counters (``liveness_pings``, ``liveness_failures``).
    """

    def __init__(
        self,
        datagrams: DatagramService,
        routing: RoutingTable,
        querier: Querier,
        settings: DhtSettings,
        *,
        db: Database | None,
        rng: Rng,
        clock: Callable[[], float],
        joined: trio.Event,
        refreshed: trio.Event,
        record_stats: collections.Counter[str],
    ) -> None:
        self._datagrams = datagrams
        self._routing = routing
        self._querier = querier
        self._settings = settings
        self._db = db
        self._rng = rng
        self._clock = clock
        self._joined = joined
        self._refreshed = refreshed
        self._record_stats = record_stats
        self._pinging_oldest: set[NodeId] = set()

    # -- refresh ---------------------------------------------------------------------------------

    async def refresh_loop(self) -> None:
        """Refresh stale buckets, and buckets found empty sooner (see the module docstring)."""
        await self._joined.wait()
        interval = self._settings.refresh_interval
        empty: dict[int, tuple[int, float]] = {}  # bucket -> (tries, when to try again)
        next_pass = self._clock()
        while True:
            now = self._clock()
            due = {i for i, (_, at) in empty.items() if at <= now}
            if now >= next_pass:
                due.update(self._routing.stale_buckets(now, interval))
                next_pass = now + interval / 4 + self._rng.random() * interval / 4
            for index in sorted(due):
                if not await self.refresh_bucket(index):
                    empty.pop(index, None)
                    continue
                tries = empty.get(index, (0, 0.0))[0] + 1
                delay = min(interval, EMPTY_BUCKET_RETRY * 2 ** (tries - 1))
                empty[index] = (tries, self._clock() + delay)
            self._refreshed.set()
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
        target = self._routing.random_id_in_bucket(index, self._rng)
        await self._querier.find_node(target, paths=1)
        self._routing.touch_bucket(index, self._clock())
        if self._routing.bucket_sizes().get(index):
            return False
        farther = [e.contact for e in self._routing.entries() if e.bucket > index and not e.stale]
        if not farther:
            return True
        self._routing.stats["refresh_from_farther"] += 1
        asked = self._rng.sample(farther, min(len(farther), self._settings.alpha))
        inside: dict[NodeId, Contact] = {}
        send, receive = trio.open_memory_channel[QueryEvent](len(asked))
        async with trio.open_nursery() as nursery:
            for contact in asked:
                nursery.start_soon(self._querier.query, contact, FindNode(target.raw), send)
            for _ in asked:
                kind, _, payload = await receive.receive()
                if kind == "ok":
                    for contact in payload[0]:
                        if bucket_index(self._routing.own_id, contact.node_id) == index:
                            inside[contact.node_id] = contact
        if inside:
            seeds = list(inside.values())[: self._settings.k]
            await self._querier.lookup(target, FindNode(target.raw), paths=1, seeds=seeds)
        return False

    # -- liveness --------------------------------------------------------------------------------

    async def liveness_loop(self) -> None:
        """Ping, one at a time, the contacts not heard from for a liveness interval.

        The pace spreads a full table over the interval. A contact that answers is seen again
        (the reply observer updates it); one that does not is marked stale at once (three
        attempts were made), which takes it out of our answers to other nodes and lets a
        cached replacement take its place.
        """
        await self._joined.wait()
        interval = self._settings.liveness_interval
        # The contacts pinged within the last interval, oldest first.
        checked: collections.OrderedDict[NodeId, float] = collections.OrderedDict()
        while True:
            pace = max(MIN_LIVENESS_TICK, interval / max(1, len(self._routing)))
            await trio.sleep(pace * (0.5 + self._rng.random()))
            now = self._clock()
            while checked and next(iter(checked.values())) < now - interval:
                checked.popitem(last=False)
            entry = self._routing.least_recently_seen(now - interval, skip=checked)
            if entry is None:
                continue
            contact = entry.contact
            checked[contact.node_id] = now
            checked.move_to_end(contact.node_id)
            self._record_stats["liveness_pings"] += 1
            try:
                await self._datagrams.request(
                    contact.address, Ping(), node_id=contact.node_id, retries=2
                )
            except (PeerTimeout, RemoteProtocolError):
                self._record_stats["liveness_failures"] += 1
                for _ in range(self._routing.max_failures):
                    self._routing.failed(contact.node_id, self._clock())

    def check_oldest(self, nursery: trio.Nursery, oldest: Contact) -> None:
        """Ping `oldest`, the entry a full bucket asked about, in `nursery` (once at a time)."""
        if oldest.node_id not in self._pinging_oldest:
            self._pinging_oldest.add(oldest.node_id)
            nursery.start_soon(self._ping_oldest, oldest)

    async def _ping_oldest(self, oldest: Contact) -> None:
        try:
            reply = await self._datagrams.request(
                oldest.address, Ping(), node_id=oldest.node_id, retries=1
            )
            self._routing.ping_result(oldest.node_id, True, self._clock(), rtt=reply.rtt)
        except (PeerTimeout, RemoteProtocolError):
            self._routing.ping_result(oldest.node_id, False, self._clock())
        finally:
            self._pinging_oldest.discard(oldest.node_id)

    # -- persistence -----------------------------------------------------------------------------

    async def load_persisted(self) -> list[Contact]:
        """The contacts the last run saved, the most recently seen first."""
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
            for entry in self._routing.entries()
        ]

        def write(conn: Any) -> None:
            conn.execute("DELETE FROM dht_contacts")
            conn.executemany(
                "INSERT INTO dht_contacts (node_id, host, port, last_seen) VALUES (?, ?, ?, ?)",
                rows,
            )

        await self._db.write(write)

    async def persist_loop(self) -> None:
        """Persist every PERSIST_INTERVAL, and once more when cancelled."""
        try:
            while True:
                await trio.sleep(PERSIST_INTERVAL)
                await self.persist()
        finally:
            with trio.CancelScope(shield=True):
                await self.persist()
