"""The node: one trio nursery that owns every service.

:meth:`Node.run` binds the endpoint (UDP and TCP on one port), opens the database, and starts
each service with ``nursery.start`` so that start-up order and readiness are explicit::

    Node.run ── nursery
                 ├── DatagramService.run   authenticated datagrams, request/response
                 ├── StreamService.run     secure streams (handshake, protocol routing)
                 ├── DhtService.run        Kademlia: routing table, lookups, bootstrap
                 ├── MembershipService.run SWIM/Lifeguard: members, failure detection, gossip
                 └── AdminServer.run       Unix socket for the CLI (real nodes only)

The node is ready when every service has started: it logs ``node ready``, the admin socket
exists, and ``READY=1`` goes to systemd when ``NOTIFY_SOCKET`` is set. :meth:`Node.stop` (from
the admin ``stop`` command or a signal) cancels the nursery; each service closes its sockets
on the way out and the database is checkpointed and closed last.
"""

from __future__ import annotations

import json
import logging
import os
import random
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio

from plexinode import __version__
from plexinode.admin.server import AdminServer
from plexinode.config import Settings
from plexinode.datadir import DB_NAME, socket_path
from plexinode.dht.contact import Contact
from plexinode.dht.records import PEER
from plexinode.dht.service import DhtService
from plexinode.errors import AdminError, HandshakeError, IdentityError, PeerTimeout
from plexinode.identity import NODE_ID_BYTES, Identity, NodeId
from plexinode.membership.invite import InviteError, make_invite, parse_invite
from plexinode.membership.service import MembershipService, Seed
from plexinode.net import echo
from plexinode.net.address import Address
from plexinode.net.datagram import DatagramService
from plexinode.net.keyring import (
    NETWORK_KEY_BYTES,
    Keyring,
    key_id,
    parse_key,
    save_keyring,
)
from plexinode.net.streams import StreamService
from plexinode.net.transport import Transport
from plexinode.security.rotation import KEYS_TAG, RESERVED_STATE_PREFIX, keys_tag
from plexinode.security.service import KeyringService
from plexinode.storage import Database, open_database
from plexinode.wire.messages import Ping

log = logging.getLogger(__name__)

#: Tags the node sets itself: its version, its storage quota in bytes (what it can hold of
#: others' shares) and its network key ids. The operator sets any other (``plexinode tags``).
RESERVED_TAGS = frozenset({"version", "capacity", KEYS_TAG})
#: The meta row that keeps the operator's tags, as a JSON object.
OPERATOR_TAGS = "member_tags"


def notify_ready() -> None:
    """Tell systemd (``Type=notify``) that the node is ready, if NOTIFY_SOCKET is set."""
    target = os.environ.get("NOTIFY_SOCKET")
    if not target:
        return
    if target.startswith("@"):
        target = "\0" + target[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(target)
            sock.sendall(b"READY=1")
    except OSError as exc:
        log.warning("cannot notify systemd at %s: %s", target, exc)


class Node:
    """One plexinode node.

    Args:
        identity: the node's key pair.
        settings: effective configuration.
        transport: the real network or an in-memory one.
        data_dir: where the database and the admin socket live; None runs with an in-memory
            database and no admin socket (simulations).
        wall_clock: the clock used for datagram counters (simulations pass trio's clock).
        membership: False runs the node without the membership service (simulations of the
            DHT alone, where it would only add cost).
        keyring: The network's keys (default: the open network named by ``settings.network``).
    """

    def __init__(
        self,
        identity: Identity,
        settings: Settings,
        transport: Transport,
        *,
        data_dir: Path | None = None,
        wall_clock: Callable[[], float] = time.time,
        config_rows: list[dict[str, Any]] | None = None,
        membership: bool = True,
        keyring: Keyring | None = None,
    ) -> None:
        difficulty = settings.dht.id_difficulty
        if not identity.node_id.meets(difficulty):
            raise IdentityError(
                f"this node's ID does not solve the network's {difficulty}-bit ID puzzle "
                "(dht.id_difficulty): the identity was made for a network with a lower setting"
            )
        self.identity = identity
        self.settings = settings
        self.transport = transport
        self.data_dir = data_dir
        self._wall_clock = wall_clock
        self._config_rows = config_rows or []
        self._with_membership = membership
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
        self._keyring_service: KeyringService | None = None
        self._db: Database | None = None
        self.admin: AdminServer | None = None

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

    def stop(self) -> None:
        """Ask the node to shut down gracefully; :meth:`run` returns soon after."""
        self._stop.set()

    async def run(
        self, *, task_status: trio.TaskStatus[Address] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Run every service until :meth:`stop` or cancellation."""
        db_path = self.data_dir / DB_NAME if self.data_dir is not None else None
        async with open_database(db_path) as db:
            self._db = db
            endpoint = await self.transport.bind(self.settings.listen)
            self.address = endpoint.address
            try:
                async with trio.open_nursery() as nursery:
                    await self._start_services(nursery, endpoint)
                    self._started_at = trio.current_time()
                    log.info(
                        "node ready: %s on udp+tcp %s%s",
                        self.node_id,
                        self.address,
                        f", admin socket {self.admin.path}" if self.admin else "",
                    )
                    notify_ready()
                    task_status.started(self.address)
                    await self._stop.wait()
                    log.info("node stopping")
                    nursery.cancel_scope.cancel()
            finally:
                with trio.CancelScope(shield=True):
                    await endpoint.aclose()
                self._datagrams = self._streams = self._dht = self._membership = None
                self._keyring_service = None
                self._db = None
        log.info("node stopped")

    async def _start_services(self, nursery: trio.Nursery, endpoint: Any) -> None:
        difficulty = self.settings.dht.id_difficulty
        self._datagrams = DatagramService(
            self.identity,
            endpoint.datagrams,
            self.settings.datagram,
            wall_clock=self._wall_clock,
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
            # Seeded by the node ID so that simulations replay exactly.
            rng=random.Random(self.node_id.raw),
            clock=self._wall_clock,
        )
        await nursery.start(self._dht.run)
        if self._with_membership:
            await self._start_membership(nursery, difficulty)
        if self.data_dir is not None:
            self.admin = AdminServer(socket_path(self.data_dir))
            self._register_admin_commands(self.admin)
            await nursery.start(self.admin.run)

    async def _operator_tags(self) -> dict[str, str]:
        """The tags set with ``plexinode tags set``, kept in the database across restarts."""
        if self._db is None:
            return {}
        rows = await self._db.execute("SELECT value FROM meta WHERE key = ?", (OPERATOR_TAGS,))
        if not rows:
            return {}
        try:
            stored = json.loads(bytes(rows[0][0]))
        except ValueError:
            log.warning("ignoring unreadable stored tags")
            return {}
        if not isinstance(stored, dict):
            return {}
        return {str(k): str(v) for k, v in stored.items() if k not in RESERVED_TAGS}

    async def set_tag(self, key: str, value: str | None) -> dict[str, str]:
        """``tags set KEY VALUE`` / ``tags rm KEY``: change one of this node's tags at run time
        (a new incarnation, gossiped to every member) and keep it for later starts. Returns
        the node's tags.

        Raises:
            AdminError: A tag the node sets itself, or tags that no longer fit a claim.
        """
        if key in RESERVED_TAGS:
            raise AdminError(
                f"the {key!r} tag is set by the node itself "
                f"(reserved: {', '.join(sorted(RESERVED_TAGS))})"
            )
        tags = self.membership.tags
        if value is None:
            if key not in tags:
                raise AdminError(f"this node has no {key!r} tag")
            del tags[key]
        else:
            tags[key] = value
        try:
            self.membership.set_tags(tags)
        except ValueError as exc:
            raise AdminError(str(exc)) from None
        if self._db is not None:
            own = {k: v for k, v in tags.items() if k not in RESERVED_TAGS}
            await self._db.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                (OPERATOR_TAGS, json.dumps(own, sort_keys=True).encode()),
            )
        return self.membership.tags

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
            rng=random.Random(self.node_id.raw + b"/membership"),
            tags=tags,
            id_difficulty=difficulty,
            wall_clock=self._wall_clock,
        )
        await nursery.start(self._membership.run)
        self._keyring_service = KeyringService(
            self.keyring,
            self._membership,
            save=self._save_keyring,
            db=self._db,
            wall_clock=self._wall_clock,
            rng=random.Random(self.node_id.raw + b"/keyring"),
        )
        await nursery.start(self._keyring_service.run)

    def _save_keyring(self, keyring: Keyring) -> None:
        if self.data_dir is not None:
            save_keyring(self.data_dir, keyring)

    @property
    def keyring_service(self) -> KeyringService:
        """The keyring service (only while running with membership)."""
        if self._keyring_service is None:
            raise RuntimeError("node is not running")
        return self._keyring_service

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
        return seeds + [Seed(address) for address in self.settings.bootstrap]

    def invite(self, expires: float) -> dict[str, Any]:
        """A signed invite token to this node's network, valid for `expires` seconds."""
        addresses = self.dht.advertised_addresses()
        try:
            invite = make_invite(
                self.identity,
                self.settings.network,
                self.keyring.primary if self.keyring.private else b"",
                addresses,
                int(self._wall_clock() + expires),
            )
        except InviteError as exc:
            raise AdminError(str(exc)) from None
        return {
            "token": invite.encode(),
            "network": invite.network,
            "expires_at": invite.expires_at,
            "addresses": [str(a) for a in invite.bootstrap()],
        }

    async def join(self, token: str) -> dict[str, Any]:
        """Join the network of an invite token: through the inviter only (its node ID is in the
        token), for the DHT and membership; the DHT then keeps the contacts it made."""
        try:
            invite = parse_invite(token, self._wall_clock())
        except InviteError as exc:
            raise AdminError(str(exc)) from None
        if invite.network != self.settings.network:
            raise AdminError(
                f"this node belongs to network {self.settings.network!r} and the invite is for "
                f"{invite.network!r}: use a new data dir (`start --join TOKEN`) to join it"
            )
        if invite.network_key and invite.network_key not in self.keyring:
            # A private network's key: accept it, and send with it unless we already had
            # private keys of our own (then an operator rotates them deliberately).
            was_private = self.keyring.private
            try:
                self.keyring.install(invite.network_key)
            except ValueError as exc:
                raise AdminError(str(exc)) from None
            if not was_private:
                self.keyring.use(invite.network_key)
            if self.data_dir is not None:
                save_keyring(self.data_dir, self.keyring)
        inviter = invite.inviter_id
        addresses = invite.bootstrap()
        known = [Contact(inviter, address) for address in addresses]
        contacts = await self.dht.bootstrap(addresses, known)
        if contacts == 0:
            raise AdminError(f"the inviter ({inviter.short()}) did not answer at {addresses}")
        await self.dht.persist()
        await self.membership.join([Seed(address, inviter) for address in addresses])
        return {
            "network": invite.network,
            "bootstrapped": contacts,
            "members": self.membership.counts()["alive"],
        }

    def network_key(self, action: str, key_text: object, *, force: bool = False) -> dict[str, Any]:
        """``network key list|install|use|remove``: each step is run here and written to the
        network's key plan, which every member then carries out (module
        plexinode.security.rotation); the answer shows the progress."""
        service = self.keyring_service
        if action != "list":
            if not isinstance(key_text, str):
                raise AdminError(f"network key {action} needs a key")
            key = self._find_key(key_text, installing=action == "install")
            try:
                if action == "install":
                    service.install(key)
                elif action == "use":
                    service.use(key, force=force)
                elif action == "remove":
                    service.remove(key)
                else:
                    raise AdminError(f"unknown network key action {action!r}")
            except ValueError as exc:
                raise AdminError(str(exc)) from None
        return {
            "network": self.settings.network,
            "private": self.keyring.private,
            **service.describe(),
        }

    def revoke(self, node_text: object) -> dict[str, Any]:
        """``network revoke NODE_ID``: no member hands that node a network key again."""
        try:
            node_id = NodeId.parse(str(node_text))
            self.keyring_service.revoke(node_id)
        except (IdentityError, ValueError) as exc:
            raise AdminError(str(exc)) from None
        return {"revoked": str(node_id)}

    def _find_key(self, text: str, *, installing: bool) -> bytes:
        text = text.strip().lower()
        if installing or len(text) == 2 * NETWORK_KEY_BYTES:
            try:
                return parse_key(text)
            except ValueError as exc:
                raise AdminError(str(exc)) from None
        matches = [k for k in self.keyring if key_id(k) == text]
        if not matches:
            raise AdminError(f"no installed key has the id {text!r} (see `network key list`)")
        return matches[0]

    async def leave(self) -> dict[str, Any]:
        """Leave the network gracefully (members see ``left``), then stop."""
        told = await self.membership.leave()
        self.stop()
        return {"left": True, "acknowledged_by": told}

    # -- ping ----------------------------------------------------------------------------------

    async def ping(
        self, address: Address | None, *, node_id: NodeId | None = None, via: str = "datagram"
    ) -> dict[str, Any]:
        """Authenticate the node at `address` and measure the round-trip time.

        Over datagrams, the ping is signed by us and the pong by them (and bound to our ID);
        over a stream, both sides complete the mutual handshake and then echo one frame
        (plexinode.net.echo). With no address, `node_id` is found through the DHT first.

        Raises:
            ValueError: Neither an address nor a node ID, or an unknown transport `via`.
        """
        if address is None:
            if node_id is None:
                raise ValueError("ping needs an address or a node ID")
            try:
                return await self.ping(await self._resolve(node_id), node_id=node_id, via=via)
            except (PeerTimeout, HandshakeError, OSError):
                # The table's address may be stale (the node moved or restarted elsewhere):
                # look its peer record up afresh before giving up.
                fresh = await self._resolve(node_id, fresh=True)
                return await self.ping(fresh, node_id=node_id, via=via)
        if via == "datagram":
            return await echo.ping_datagram(self.datagrams, address, node_id)
        if via != "stream":
            raise ValueError(f"unknown ping transport {via!r}")
        return await echo.ping_stream(self.streams, address, node_id)

    async def dht_get(self, type_name: str, key_text: str) -> dict[str, Any]:
        """The valid records of a type under a key, from this node and the network.

        `key_text` is a node ID for peer records, 64 hex digits (32 bytes) for others.
        """
        rtype = next((t for t in self.dht.registry.types() if t.name == type_name), None)
        if rtype is None:
            names = ", ".join(t.name for t in self.dht.registry.types())
            raise AdminError(f"unknown record type {type_name!r} (known: {names})")
        if rtype.code == PEER:
            try:
                key = NodeId.parse(key_text).raw
            except IdentityError as exc:
                raise AdminError(str(exc)) from None
        else:
            try:
                key = bytes.fromhex(key_text)
            except ValueError:
                key = b""
            if len(key) != NODE_ID_BYTES:
                raise AdminError(f"a {rtype.name} key is {NODE_ID_BYTES} bytes: 64 hex digits")
        records = await self.dht.get(rtype.code, key)
        return {"records": [self.dht.describe(r) for r in sorted(records, key=lambda r: -r.seq)]}

    async def _resolve(self, node_id: NodeId, *, fresh: bool = False) -> Address:
        contact = await self.dht.resolve(node_id, fresh=fresh)
        if contact is None:
            raise PeerTimeout(f"node {node_id} was not found in the DHT")
        return contact.address

    # -- admin ---------------------------------------------------------------------------------

    async def status(self) -> dict[str, Any]:
        """The node's status, as `plexinode status --json` prints it."""
        used = await self._db.size_bytes() if self._db is not None else 0
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
                else {"alive": 1, "suspect": 0, "dead": 0, "left": 0}
            ),
            "storage": {"used_bytes": used, "quota_bytes": self.settings.storage.quota_bytes},
            "pid": os.getpid(),
            "data_dir": str(self.data_dir) if self.data_dir else None,
            "datagrams": datagrams.get("counters", {}),
            "streams": dict(self._streams.stats) if self._streams else {},
            "dht": self._dht.records_summary() if self._dht else {},
            "membership": self._membership.summary() if self._membership else {},
            "keyring": dict(self._keyring_service.stats) if self._keyring_service else {},
        }

    def _register_admin_commands(self, admin: AdminServer) -> None:
        async def status(_args: dict[str, Any]) -> Any:
            return await self.status()

        async def node_id(_args: dict[str, Any]) -> Any:
            return {"node_id": str(self.node_id)}

        async def stop(_args: dict[str, Any]) -> Any:
            self.stop()
            return {"stopped": True, "pid": os.getpid()}

        async def config(_args: dict[str, Any]) -> Any:
            return self._config_rows

        async def peers(_args: dict[str, Any]) -> Any:
            return self.dht.peers()

        async def dht_get(args: dict[str, Any]) -> Any:
            return await self.dht_get(str(args.get("type", "")), str(args.get("key", "")))

        async def ping(args: dict[str, Any]) -> Any:
            target = args.get("address")
            wanted = args.get("node_id")
            expected = NodeId.parse(wanted) if isinstance(wanted, str) else None
            if not isinstance(target, str) and expected is None:
                raise AdminError("ping needs an address or a node ID")
            via = str(args.get("via", "datagram"))
            try:
                address = Address.parse(target) if isinstance(target, str) else None
            except ValueError as exc:
                raise AdminError(str(exc)) from None
            try:
                return await self.ping(address, node_id=expected, via=via)
            except OSError as exc:
                raise AdminError(f"cannot reach {address}: {exc.strerror or exc}") from None

        async def members(_args: dict[str, Any]) -> Any:
            service = self.membership
            return [service.describe(m) for m in service.members()]

        async def leave(_args: dict[str, Any]) -> Any:
            return await self.leave()

        async def network_keys(args: dict[str, Any]) -> Any:
            return self.network_key(
                str(args.get("action", "list")), args.get("key"), force=args.get("force") is True
            )

        async def revoke(args: dict[str, Any]) -> Any:
            return self.revoke(args.get("node_id", ""))

        async def invite(args: dict[str, Any]) -> Any:
            expires = args.get("expires", 86_400.0)
            if not isinstance(expires, int | float) or not 0 < expires <= 30 * 86_400:
                raise AdminError("expires must be above 0 and at most 30 days")
            return self.invite(float(expires))

        async def join(args: dict[str, Any]) -> Any:
            return await self.join(str(args.get("token", "")))

        async def state_set(args: dict[str, Any]) -> Any:
            key, value = str(args.get("key", "")), args.get("value")
            if value is not None and not isinstance(value, str):
                raise AdminError("a state value is text")
            if key.startswith(RESERVED_STATE_PREFIX):
                raise AdminError(
                    f"keys under {RESERVED_STATE_PREFIX!r} are the node's own "
                    "(see `network key` and `network revoke`)"
                )
            try:
                entry = self.membership.set_state(key, None if value is None else value.encode())
            except ValueError as exc:
                raise AdminError(str(exc)) from None
            return self.membership.describe_entry(entry)

        async def tags_set(args: dict[str, Any]) -> Any:
            key, value = args.get("key"), args.get("value")
            if not isinstance(key, str) or not (value is None or isinstance(value, str)):
                raise AdminError("a tag is a text key and a text value")
            return await self.set_tag(key, value)

        async def tags_list(_args: dict[str, Any]) -> Any:
            return self.membership.tags

        async def state_list(_args: dict[str, Any]) -> Any:
            service = self.membership
            return [service.describe_entry(e) for e in service.state.entries()]

        for name, handler in {
            "status": status,
            "id": node_id,
            "stop": stop,
            "config": config,
            "ping": ping,
            "peers": peers,
            "dht_get": dht_get,
            "members": members,
            "leave": leave,
            "state_set": state_set,
            "invite": invite,
            "network_key": network_keys,
            "revoke": revoke,
            "join": join,
            "state_list": state_list,
            "tags_set": tags_set,
            "tags_list": tags_list,
        }.items():
            admin.command(name, handler)
