"""Publishing records: our own peer record, and the records we hold for others.

Our peer record announces the addresses others reach us at: the routable addresses we are bound
to, and those a quorum of other nodes reported seeing us at (the core,
:class:`~plexinode.dht.observed.ObservedAddresses`, decides which). A node bound to 0.0.0.0 pings
a few contacts right after joining, since their pongs are what tell it its address. The record
is published after joining, again every republish interval (re-signed, with a lifetime of three
intervals), and soon after the advertised addresses change.

The records we hold for others are dropped when they expire and stored again on the k closest
nodes every republish interval (which nodes are closest changes as nodes come and go), unless
somebody did so within the interval: the choice is the core's,
:class:`~plexinode.dht.replication.Replication`.
"""

from __future__ import annotations

import collections
import contextlib
import logging
from collections.abc import Callable, Sequence
from typing import Final

import trio

from plexinode.dht.contact import Contact
from plexinode.dht.observed import ObservedAddresses
from plexinode.dht.querying import Querier
from plexinode.dht.record_types import PEER_MAX_TTL, make_peer_record
from plexinode.dht.records import InvalidRecord, Record
from plexinode.dht.replication import Replication
from plexinode.dht.routing import RoutingTable
from plexinode.dht.settings import DhtSettings
from plexinode.dht.store import RecordStore
from plexinode.errors import PeerTimeout, RemoteProtocolError
from plexinode.net.address import Address
from plexinode.net.datagram import DatagramService
from plexinode.randomness import Rng
from plexinode.wire.messages import Ping, Pong

log = logging.getLogger(__name__)

#: Contacts pinged right after joining, to learn the address the network sees us at.
ADDRESS_PROBES: Final = 4
#: A change of advertised addresses is published after this delay, so that a burst of reports
#: makes one new record rather than several.
ADDRESS_CHANGE_DELAY: Final = 1.0


class Publisher:
    """Our peer record and the republishing of held records: the owner runs
    :meth:`publish_loop` and :meth:`republish_loop`, and reports every pong with
    :meth:`note_observed`.

    Args:
        datagrams: The authenticated datagram service (and our identity).
        routing: The contacts probed for our address.
        records: The record store whose records are republished and expired.
        replication: The republish choice.
        querier: Stores records on the k closest nodes.
        settings: The republish interval.
        advertise: The addresses we are bound to.
        rng: The seeded generator of the loops' jitter.
        clock: The clock records are signed and judged by.
        joined: Set once the node has joined; publishing starts then.
        record_stats: The service's counters (``published``, ``republished``, ``expired``).
    """

    def __init__(
        self,
        datagrams: DatagramService,
        routing: RoutingTable,
        records: RecordStore,
        replication: Replication,
        *,
        querier: Querier,
        settings: DhtSettings,
        advertise: Sequence[Address],
        rng: Rng,
        clock: Callable[[], float],
        joined: trio.Event,
        record_stats: collections.Counter[str],
    ) -> None:
        self._datagrams = datagrams
        self._routing = routing
        self._records = records
        self._replication = replication
        self._querier = querier
        self._settings = settings
        self._rng = rng
        self._clock = clock
        self._joined = joined
        self._record_stats = record_stats
        self.addresses = ObservedAddresses(advertise)
        #: The addresses of the peer record last published (none before the first).
        self.published_addresses: tuple[Address, ...] = ()
        #: Whether our peer record is published (and kept alive) yet.
        self.publishing_peer = False
        self._addresses_changed = trio.Event()
        self._last_seq = 0

    # -- our own records -------------------------------------------------------------------------

    def note_observed(self, pong: Pong, reporter: Address) -> None:
        """The node at `reporter` told us, in a pong, the address our datagram came from; the
        peer record is published again soon if that changes the advertised addresses."""
        self.addresses.report(Address(pong.observed_host, pong.observed_port), reporter)
        if tuple(self.addresses.advertised()) != self.published_addresses:
            self._addresses_changed.set()

    def next_seq(self) -> int:
        """A sequence number above every one this node used: Unix milliseconds, or more."""
        self._last_seq = max(self._last_seq + 1, int(self._clock() * 1000))
        return self._last_seq

    def record_ttl(self) -> int:
        """Lifetime of the records we sign: three republish intervals, within the type caps."""
        return max(1, min(PEER_MAX_TTL, int(3 * self._settings.republish_interval)))

    def _make_peer_record(self, seq: int, now: float) -> Record:
        return make_peer_record(
            self._datagrams.identity, self.published_addresses, seq, now, self.record_ttl()
        )

    async def _probe_addresses(self) -> None:
        """Ping a few contacts: their pongs tell us the address the network sees us at."""

        async def probe(contact: Contact) -> None:
            with contextlib.suppress(PeerTimeout, RemoteProtocolError):
                await self._datagrams.request(
                    contact.address, Ping(), node_id=contact.node_id, retries=1
                )

        async with trio.open_nursery() as nursery:
            for contact in self._routing.closest(self._routing.own_id, ADDRESS_PROBES):
                nursery.start_soon(probe, contact)

    async def publish_loop(self) -> None:
        """Publish our peer record after joining, every republish interval, and soon after our
        advertised addresses change."""
        await self._joined.wait()
        if not self.addresses.bound:
            await self._probe_addresses()
        interval = self._settings.republish_interval
        while True:
            self._addresses_changed = trio.Event()
            addresses = tuple(self.addresses.advertised())
            if addresses:
                self.published_addresses = addresses
                self.publishing_peer = True
            else:
                log.info("no address to publish yet (no node has reported seeing us)")
            if self.publishing_peer:
                record = self._make_peer_record(self.next_seq(), self._clock())
                try:
                    stored_on = await self._querier.put(record)
                except InvalidRecord as exc:
                    log.warning("own peer record refused: %s", exc)
                else:
                    self._record_stats["published"] += 1
                    log.debug("published our peer record on %d nodes", stored_on)
            with trio.move_on_after(interval * (0.9 + 0.2 * self._rng.random())):
                await self._addresses_changed.wait()
                await trio.sleep(ADDRESS_CHANGE_DELAY)

    # -- records others own ----------------------------------------------------------------------

    async def republish_loop(self) -> None:
        """Drop expired records; store the others again on the k closest nodes (which change
        as nodes come and go) unless somebody did so within the last interval."""
        interval = self._settings.republish_interval
        while True:
            await trio.sleep(interval * (0.25 + 0.1 * self._rng.random()))
            now = self._clock()
            self._record_stats["expired"] += self._records.expire(now)
            self._replication.forget_gone(self._records.all_records())
            for record in self._records.all_records():
                if not self._replication.republish_due(
                    record, quiet_since=now - interval, now=self._clock()
                ):
                    continue
                self._replication.touched(record, self._clock())
                await self._querier.store_on_closest(record)
                self._record_stats["republished"] += 1
