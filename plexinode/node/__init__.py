"""The node: one trio nursery that owns every service.

:meth:`Node.run` binds the endpoint (UDP and TCP on one port), opens the database, and starts
each service with ``nursery.start`` so that start-up order and readiness are explicit::

    Node.run ── nursery
                 ├── DatagramService.run   authenticated datagrams, request/response
                 ├── StreamService.run     secure streams (handshake, protocol routing)
                 ├── DhtService.run        Kademlia: routing table, lookups, bootstrap
                 ├── ShardService.run      the holder's end of shards/1, expired leases dropped
                 ├── MembershipService.run SWIM/Lifeguard: members, failure detection, gossip
                 ├── SecurityServices      the network's key plan, carried out on this node;
                 │                         a private network's grants and revocations
                 └── beside ...            what the caller runs beside the node, started last
                                           (the daemon's admin socket)

The node is ready when every service, and everything started beside it, has started: it logs
``node ready`` (debug level) and ``Node.run`` reports its address to ``task_status``.
:meth:`Node.stop` (the admin ``stop`` command or a signal) cancels the nursery; each service
closes its sockets on the way out and the database is checkpointed and closed last.

Besides the nursery, the node offers what needs several of its services at once: pinging a
node (found through the DHT when only its ID is known), joining a network from an invite
token, leaving it, its tags, and its status, for the admin commands (plexinode.admin.commands).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, Final

import trio

from plexinode import __version__
from plexinode.config import Settings
from plexinode.datadir import DB_NAME
from plexinode.dht.service import DhtService
from plexinode.errors import (
    IdentityError,
    NameNotResolved,
    PeerTimeout,
    PlexinodeError,
    WrongNode,
)
from plexinode.identity import Identity, NodeId
from plexinode.membership.invite import Invite
from plexinode.membership.members import State
from plexinode.membership.operator_tags import load_operator_tags, save_operator_tags
from plexinode.membership.service import MembershipService, Seed
from plexinode.net import echo
from plexinode.net.address import Address
from plexinode.net.datagram import DatagramService
from plexinode.net.keyring import Keyring, remember_private, save_keyring
from plexinode.net.names import Resolver, SystemResolver, listen_address
from plexinode.net.pinging import NoAnswer, Pinger, PingOptions
from plexinode.net.streams import StreamService
from plexinode.net.transport import Endpoint, Transport
from plexinode.node import joining
from plexinode.security.authority_service import AuthorityService
from plexinode.security.rotation import KEYS_TAG, keys_tag
from plexinode.security.service import KeyringService
from plexinode.security.services import SecurityServices
from plexinode.security.tickets import Ticket
from plexinode.shards.backups import BackupService
from plexinode.shards.catalog import Catalog
from plexinode.shards.dht_records import BackupRecords
from plexinode.shards.placing import Peer
from plexinode.shards.secret import BackupSecret
from plexinode.shards.service import ShardService
from plexinode.shards.share_open import open_share_store
from plexinode.storage import Database, open_database
from plexinode.wire.messages import Ping

log = logging.getLogger(__name__)

#: Tags the node sets itself: its version, its storage quota in bytes (what it can hold of
#: others' shares) and its network key ids. The operator sets any other (``plexinode tags``).
RESERVED_TAGS: Final = frozenset({"version", "capacity", KEYS_TAG})
#: How long a stopping node waits for members to acknowledge its stopped claim.
STOP_ANNOUNCE_TIMEOUT: Final = 2.0

#: Something the node starts in its nursery, after its own services, with ``nursery.start``:
#: an async function that calls ``task_status.started()`` once it serves.
Beside = Callable[..., Awaitable[object]]


class Node:
    """One plexinode node.

    Args:
        identity: the node's key pair.
        settings: effective configuration.
        transport: the real network or an in-memory one.
        data_dir: where the database and the network keys live; None runs with an in-memory
            database and keeps the keys in memory only (simulations).
        wall_clock: the clock used for records, claims and invites
            (simulations pass trio's clock).
        membership: False runs the node without the membership service (simulations of the
            DHT alone, where it would only add cost).
        keyring: The network's keys (default: the open network named by ``settings.network``).
        resolver: Resolves the host names of ``listen``, ``bootstrap`` and ``ping`` (default:
            the operating system's).
        backup_secret: The owner's backup secret (plexinode.shards.secret), for the backup
            services (default: a new one, kept in memory only: simulations).
    """

    def __init__(
        self,
        identity: Identity,
        settings: Settings,
        transport: Transport,
        *,
        data_dir: Path | None = None,
        wall_clock: Callable[[], float] = time.time,
        membership: bool = True,
        keyring: Keyring | None = None,
        resolver: Resolver | None = None,
        backup_secret: BackupSecret | None = None,
    ) -> None:
        difficulty = settings.dht.id_difficulty
        if not identity.node_id.meets(difficulty):
            raise IdentityError(
                f"this node's ID does not solve the network's {difficulty}-bit ID puzzle "
                "(dht.id_difficulty): the identity was made for a network with a lower setting"
            )
        self.identity = identity
        self.backup_secret = backup_secret or BackupSecret.generate()
        self.settings = settings
        self.transport = transport
        self.data_dir = data_dir
        self._wall_clock = wall_clock
        self._with_membership = membership
        self._resolver: Resolver = resolver or SystemResolver()
        #: The network's keys; changes (``network key ...``) apply to datagrams and streams
        #: at once, and are saved in the data dir.
        self.keyring = keyring or Keyring.open(settings.network)
        self._stop = trio.Event()
        self._started_at: float | None = None
        self.address: Address | None = None
        self._datagrams: DatagramService | None = None
        self._streams: StreamService | None = None
        self._dht: DhtService | None = None
        self._membership: MembershipService | None = None
        self._security: SecurityServices | None = None
        self._shards: ShardService | None = None
        self._backups: BackupService | None = None
        self._db: Database | None = None

    @property
    def node_id(self) -> NodeId:
        """This node's ID."""
        return self.identity.node_id

    @property
    def datagrams(self) -> DatagramService:
        """The datagram service (only while running)."""
        if self._datagrams is None:
            raise RuntimeError("node is not running")
        return self._datagrams

    @property
    def streams(self) -> StreamService:
        """The stream service (only while running)."""
        if self._streams is None:
            raise RuntimeError("node is not running")
        return self._streams

    @property
    def dht(self) -> DhtService:
        """The DHT service (only while running)."""
        if self._dht is None:
            raise RuntimeError("node is not running")
        return self._dht

    @property
    def membership(self) -> MembershipService:
        """The membership service (only while running)."""
        if self._membership is None:
            raise RuntimeError("node is not running")
        return self._membership

    @property
    def keyring_service(self) -> KeyringService:
        """The keyring service (only while running with membership)."""
        if self._security is None:
            raise RuntimeError("node is not running")
        return self._security.keyring

    @property
    def authority_service(self) -> AuthorityService | None:
        return None if self._security is None else self._security.authority

    @property
    def backups(self) -> BackupService:
        """The owner's backup service (only while running with a data dir)."""
        if self._backups is None:
            raise RuntimeError("node is not running with a data dir")
        return self._backups

    def _backup_peers(self) -> list[Peer]:
        """The live members other than this node, for placement."""
        if self._membership is None:
            return []
        return [
            Peer(m.node_id, m.address, m.tags.get("zone", ""))
            for m in self._membership.members()
            if m.node_id != self.node_id and self._membership.state_of(m) is State.ALIVE
        ]

    def stop(self) -> None:
        """Ask the node to shut down gracefully; :meth:`run` returns soon after."""
        self._stop.set()

    async def run(
        self,
        *,
        beside: Sequence[Beside] = (),
        task_status: trio.TaskStatus[Address] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Run every service until :meth:`stop` or cancellation.

        Args:
            beside: started in the node's nursery after its own services, in order, with
                ``nursery.start`` (e.g. the admin socket): the node is ready once they are.
            task_status: receives the node's bound address once it is ready.
        """
        db_path = self.data_dir / DB_NAME if self.data_dir is not None else None
        async with open_database(db_path) as db:
            self._db = db
            await self._keep_private()
            try:
                listen = await listen_address(self._resolver, self.settings.listen)
            except NameNotResolved as exc:
                raise NameNotResolved(f"cannot listen on {self.settings.listen}: {exc}") from None
            endpoint = await self.transport.bind(listen)
            self.address = endpoint.address
            try:
                async with trio.open_nursery() as nursery:
                    await self._start_services(nursery, endpoint)
                    for start in beside:
                        await nursery.start(start)
                    self._started_at = trio.current_time()
                    log.debug("node ready: %s on udp+tcp %s", self.node_id, self.address)
                    task_status.started(self.address)
                    await self._stop.wait()
                    log.info("node stopping")
                    if self._membership is not None:
                        # A planned stop: members list this node "stopped", not dead.
                        with trio.move_on_after(STOP_ANNOUNCE_TIMEOUT):
                            await self._membership.announce_stop()
                    nursery.cancel_scope.cancel()
            finally:
                with trio.CancelScope(shield=True):
                    await endpoint.aclose()
                self._datagrams = self._streams = self._dht = self._membership = None
                self._security = self._shards = self._backups = None
                self._db = None
        log.info("node stopped")

    async def _start_services(self, nursery: trio.Nursery, endpoint: Endpoint) -> None:
        difficulty = self.settings.dht.id_difficulty
        self._datagrams = DatagramService(
            self.identity,
            endpoint.datagrams,
            self.settings.datagram,
            id_difficulty=difficulty,
            keyring=self.keyring,
        )
        self._datagrams.on(Ping, echo.answer_ping)
        await nursery.start(self._datagrams.run)
        self._streams = StreamService(
            self.identity,
            endpoint.listener,
            self.transport,
            self.settings.stream,
            id_difficulty=difficulty,
            keyring=self.keyring,
        )
        self._streams.on(echo.ECHO_PROTOCOL, echo.serve_echo)
        await nursery.start(self._streams.run)
        assert self._db is not None
        self._dht = DhtService(
            self._datagrams,
            self.settings.dht,
            request_timeout=self.settings.datagram.request_timeout,
            bootstrap=self.settings.bootstrap,
            advertise=(endpoint.address,),
            db=self._db,
            # From the OS on a real network; seeded by the node ID in simulations (transport).
            rng=self.transport.rng(self.node_id.raw),
            clock=self._wall_clock,
            resolver=self._resolver,
        )
        await nursery.start(self._dht.run)
        if self.data_dir is not None:  # simulations (no data dir) hold no shares
            storage = self.settings.storage
            store = await open_share_store(
                self._db,
                self.data_dir,
                capacity=storage.quota_bytes,
                owner_quota=storage.owner_quota_bytes,
                clock=self._wall_clock,
            )
            records = BackupRecords(self._dht, self.identity, wall_clock=self._wall_clock)
            self._shards = ShardService(
                self._streams, store, wall_clock=self._wall_clock, records=records
            )
            await nursery.start(self._shards.run)
            self._backups = BackupService(
                identity=self.identity,
                secret=self.backup_secret.raw,
                catalog=Catalog(self._db),
                streams=self._streams,
                peers=self._backup_peers,
                locate=self._resolve,
                wall_clock=self._wall_clock,
                records=records,
            )
            nursery.start_soon(self._backups.renew_loop)
        if self._with_membership:
            await self._start_membership(nursery, difficulty)

    async def _start_membership(self, nursery: trio.Nursery, difficulty: int) -> None:
        tags = {
            **await self._operator_tags(),
            "version": __version__,
            "capacity": str(self.settings.storage.quota_bytes),
            # The keys tag from the start, so that the keyring service need not announce it.
            KEYS_TAG: keys_tag(self.keyring),
        }
        self._membership = MembershipService(
            self.datagrams,
            self.streams,
            self.settings.membership,
            advertise=self._member_address,
            seeds=self._member_seeds,
            db=self._db,
            rng=self.transport.rng(self.node_id.raw + b"/membership"),
            tags=tags,
            id_difficulty=difficulty,
            wall_clock=self._wall_clock,
        )
        await nursery.start(self._membership.run)
        if self._shards is not None:  # repairs follow membership's view of the holders
            await nursery.start(self._shards.start_repairs, self._membership, self._resolve)
        self._security = SecurityServices(
            self.keyring,
            self.settings.network,
            self._membership,
            save=self._save_keyring,
            db=self._db,
            wall_clock=self._wall_clock,
            rng=lambda label: self.transport.rng(self.node_id.raw + label),
        )
        await self._security.start(nursery)

    def _save_keyring(self, keyring: Keyring) -> None:
        if self.data_dir is not None:
            save_keyring(self.data_dir, keyring)

    def _member_address(self) -> Address | None:
        """Our address for membership: the first the DHT advertises (bound, or observed)."""
        addresses = self.dht.advertised_addresses()
        return addresses[0] if addresses else None

    def _member_seeds(self) -> list[Seed]:
        """Nodes to join membership through: the DHT's contacts (or, while it has none, those
        of the last run), then the bootstrap list."""
        contacts = [e.contact for e in self.dht.routing.entries()]
        if not contacts:  # e.g. back after missing a key rotation: the last run's contacts
            contacts = self.dht.remembered
        seeds = [Seed(c.address, c.node_id) for c in contacts]
        return seeds + [Seed(address) for address in self.dht.bootstrap_addresses]

    async def _keep_private(self) -> None:
        if self._db is not None:
            await remember_private(self._db, self.keyring, self.settings.network)

    # -- tags ----------------------------------------------------------------------------------

    async def _operator_tags(self) -> dict[str, str]:
        """The tags set with ``plexinode tags set``, kept in the database across restarts."""
        return {} if self._db is None else await load_operator_tags(self._db, RESERVED_TAGS)

    async def set_tags(self, tags: dict[str, str]) -> None:
        """Replace this node's tags at run time (a new incarnation, gossiped to every member),
        and keep the operator's (all but :data:`RESERVED_TAGS`) for later starts. The same tags
        again change nothing: no new incarnation, nothing gossiped.

        Raises:
            ValueError: The tags do not fit a claim (nothing changes).
        """
        if tags == self.membership.tags:
            return
        self.membership.set_tags(tags)
        if self._db is not None:
            await save_operator_tags(self._db, tags, RESERVED_TAGS)

    # -- invites (plexinode.node.joining) ------------------------------------------------------

    async def invite(self, expires: float) -> Invite | Ticket:
        """A way in through this node, valid for `expires` seconds (see `joining.invite`)."""
        return await joining.invite(self, expires)

    async def join(self, token: str) -> int:
        """Join the network of an invite token or a ticket (see `joining.join`)."""
        return await joining.join(self, token)

    async def leave(self) -> dict[str, Any]:
        """Leave the network gracefully (members see ``left``), then stop."""
        told = await self.membership.leave()
        self.stop()
        return {"left": True, "acknowledged_by": told}

    # -- ping ----------------------------------------------------------------------------------

    async def ping(
        self,
        address: Address | None,
        *,
        node_id: NodeId | None = None,
        options: PingOptions | None = None,
    ) -> dict[str, Any]:
        """Authenticate the node at `address` and measure the round trip (plexinode.net.pinging:
        rounds, names, and why a ping failed).

        With no address, `node_id` is found through the DHT first; if the address the routing
        table gives does not answer (or another node does), its peer record is looked up afresh.

        Raises:
            ValueError: Neither an address nor a node ID.
            PeerTimeout: `node_id` was not found in the DHT.
            PlexinodeError: The ping failed (one line saying why; see Pinger.ping).
        """
        pinger = Pinger(self.datagrams, self.streams, self._resolver, self._bound_address())
        if address is not None:
            return await pinger.ping(address, node_id, options)
        if node_id is None:
            raise ValueError("ping needs an address or a node ID")
        if node_id == self.node_id:
            raise PlexinodeError(f"{node_id} is this node's own ID")
        known = await self._resolve(node_id)
        try:
            return await pinger.ping(known, node_id, options)
        except (NoAnswer, WrongNode):
            fresh = await self._resolve(node_id, fresh=True)
            if fresh == known:
                raise
            return await pinger.ping(fresh, node_id, options)

    def _bound_address(self) -> Address:
        if self.address is None:
            raise RuntimeError("node is not running")
        return self.address

    async def _resolve(self, node_id: NodeId, *, fresh: bool = False) -> Address:
        contact = await self.dht.resolve(node_id, fresh=fresh)
        if contact is None:
            raise PeerTimeout(f"node {node_id} was not found in the DHT")
        return contact.address

    # -- status --------------------------------------------------------------------------------

    async def status(self) -> dict[str, Any]:
        """The node's status, as `plexinode status --json` prints it."""
        database = await self._db.size_bytes() if self._db is not None else 0
        shards = self._shards.status() if self._shards else {}
        datagrams = self._datagrams.summary() if self._datagrams else {}
        uptime = trio.current_time() - self._started_at if self._started_at is not None else 0.0
        return {
            "node_id": str(self.node_id),
            "version": __version__,
            "network": self.settings.network,
            "address": str(self.address) if self.address else None,
            "uptime_s": round(uptime, 3),
            "peers": len(self._dht.routing) if self._dht else 0,
            "members": (
                self._membership.counts()
                if self._membership
                else {"alive": 1, "suspect": 0, "dead": 0, "left": 0, "stopped": 0}
            ),
            "storage": {
                "used_bytes": shards.get("held_bytes", 0),
                "quota_bytes": self.settings.storage.quota_bytes,
                "database_bytes": database,
                "repair_backlog": shards.get("repair_backlog", 0),
            },
            "shards": shards,
            "pid": os.getpid(),
            "data_dir": str(self.data_dir) if self.data_dir else None,
            "datagrams": datagrams.get("counters", {}),
            "streams": self._streams.summary() if self._streams else {},
            "dht": self._dht.records_summary() if self._dht else {},
            "membership": self._membership.summary() if self._membership else {},
            **(self._security.status() if self._security else {"keyring": {}, "authority": {}}),
        }
