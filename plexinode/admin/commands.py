"""The admin command table: each command's typed request, run against the node.

Every command is one method of :class:`AdminCommands` that takes its request (checked by
plexinode.admin.requests before it gets here) and returns its result (plexinode.admin.results);
:meth:`AdminCommands.register` adapts them to the admin server, which speaks maps. A method
only gathers what the request needs from the node, runs it through the node or one of its
services, and turns the refusals it can expect (a ``ValueError`` from a service, an address
that cannot be reached) into the one line the CLI prints::

    admin.sock ─► AdminServer ─► Request.parse(args) ─► AdminCommands.<command>(request)
                                                          └─► Node / its services ─► Result
               ◄── {"ok": true, "result": Result.to_result()} ◄───────────────────────┘

The node knows nothing of this table (it sits below the admin floor); the daemon builds the
table beside the node it runs.
"""

from __future__ import annotations

import os

from plexinode.admin.backup_commands import BackupCommands
from plexinode.admin.requests import (
    AuthorityInfoRequest,
    AuthoritySubmitRequest,
    DhtGetRequest,
    InviteRequest,
    JoinRequest,
    NetworkKeyRequest,
    NoArguments,
    PingRequest,
    ResolveRequest,
    StateSetRequest,
    TagsSetRequest,
)
from plexinode.admin.results import (
    AuthorityAdded,
    AuthorityInfo,
    Document,
    Invited,
    Joined,
    Left,
    NetworkKeys,
    NodeIdResult,
    PingResult,
    Records,
    Resolved,
    Rows,
    Status,
    Stopped,
)
from plexinode.admin.server import AdminServer, Handler
from plexinode.admin.typed import typed
from plexinode.errors import AdminError
from plexinode.net.certificates import ADMIN
from plexinode.node import RESERVED_TAGS, Node
from plexinode.security.authority_service import AuthorityService


class AdminCommands:
    """The commands a running node answers on its admin socket.

    Args:
        node: the node (its services are looked up at each command: they exist only while it
            runs).
        config: the ``config`` answer: the node's effective settings and where each came from
            (plexinode.admin.results.config_rows), fixed when the daemon loaded them.
    """

    def __init__(self, node: Node, *, config: Rows | None = None) -> None:
        self.node = node
        self.config = config or Rows(())

    def register(self, server: AdminServer) -> None:
        """Serve every command on `server`."""
        table: dict[str, Handler] = {
            "status": typed("status", NoArguments, self.status),
            "id": typed("id", NoArguments, self.node_id),
            "stop": typed("stop", NoArguments, self.stop),
            "config": typed("config", NoArguments, self.show_config),
            "ping": typed("ping", PingRequest, self.ping),
            "peers": typed("peers", NoArguments, self.peers),
            "dht_get": typed("dht_get", DhtGetRequest, self.dht_get),
            "members": typed("members", NoArguments, self.members),
            "leave": typed("leave", NoArguments, self.leave),
            "state_set": typed("state_set", StateSetRequest, self.state_set),
            "state_list": typed("state_list", NoArguments, self.state_list),
            "invite": typed("invite", InviteRequest, self.invite),
            "join": typed("join", JoinRequest, self.join),
            "network_key": typed("network_key", NetworkKeyRequest, self.network_key),
            "authority_info": typed("authority_info", AuthorityInfoRequest, self.authority_info),
            "authority_submit": typed(
                "authority_submit", AuthoritySubmitRequest, self.authority_submit
            ),
            "tags_set": typed("tags_set", TagsSetRequest, self.tags_set),
            "tags_list": typed("tags_list", NoArguments, self.tags_list),
            "resolve": typed("resolve", ResolveRequest, self.resolve),
        }
        table |= BackupCommands(self.node).table()
        for name, handler in table.items():
            server.command(name, handler)

    # -- the node --------------------------------------------------------------------------------

    async def status(self, _: NoArguments) -> Status:
        """The node's status (``plexinode status``)."""
        return Status.from_map(await self.node.status(), where="the node's status")

    async def node_id(self, _: NoArguments) -> NodeIdResult:
        """This node's ID."""
        return NodeIdResult(str(self.node.node_id))

    async def stop(self, _: NoArguments) -> Stopped:
        """Stop the node gracefully; it answers first."""
        self.node.stop()
        return Stopped(stopped=True, pid=os.getpid())

    async def show_config(self, _: NoArguments) -> Rows:
        """The effective settings (``plexinode config show`` on a running node)."""
        return self.config

    async def resolve(self, request: ResolveRequest) -> Resolved:
        """The node IDs this node knows (itself, the members, the DHT's routing table and the
        contacts of its last run) that begin with a prefix: how the CLI accepts a short ID
        wherever it takes a node ID."""
        dht = self.node.dht
        known = [self.node.node_id]
        known += [m.node_id for m in self.node.membership.members()]
        known += [e.contact.node_id for e in dht.routing.entries()]
        known += [c.node_id for c in dht.remembered]
        return Resolved(tuple(request.matches(known)))

    async def ping(self, request: PingRequest) -> PingResult:
        """Authenticate another node and measure the round trip."""
        try:
            report = await self.node.ping(
                request.address, node_id=request.node_id, options=request.options
            )
        except OSError as exc:
            raise AdminError(f"cannot reach {request.address}: {exc.strerror or exc}") from None
        return PingResult.from_map(report, where="the node's ping report")

    # -- the DHT ---------------------------------------------------------------------------------

    async def peers(self, _: NoArguments) -> Rows:
        """The DHT routing table."""
        return Rows(tuple(self.node.dht.peers()))

    async def dht_get(self, request: DhtGetRequest) -> Records:
        """The valid records of a type under a key, from this node and the network."""
        dht = self.node.dht
        code, key = request.record_key(dht.registry.types())
        records = sorted(await dht.get(code, key), key=lambda r: -r.seq)
        return Records(tuple(dht.describe(r) for r in records))

    # -- membership and the cluster state ------------------------------------------------------

    async def members(self, _: NoArguments) -> Rows:
        """The members of the network, as this node believes them."""
        service = self.node.membership
        members = service.members()
        rows = [service.describe(m) for m in members]
        keys = self.node.keyring_service
        for row, member in zip(rows, members, strict=True):
            if keys.revoked(member.node_id):
                row["state"] = "revoked"  # whatever its claims say, the network keeps it out
        return Rows(tuple(rows))

    async def leave(self, _: NoArguments) -> Left:
        """Leave the network gracefully, then stop."""
        return Left.from_map(await self.node.leave(), where="the node's leave report")

    async def state_set(self, request: StateSetRequest) -> Document:
        """Write (or delete) a key of the cluster state."""
        service = self.node.membership
        if request.value is None:
            current = service.state.get(request.key)
            if current is None or current.deleted:
                raise AdminError(f"the cluster state has no key {request.key!r}")
        try:
            entry = service.set_state(request.key, request.encoded)
        except ValueError as exc:
            raise AdminError(str(exc)) from None
        return Document(service.describe_entry(entry))

    async def state_list(self, _: NoArguments) -> Rows:
        """Every entry of the cluster state, deleted ones included."""
        service = self.node.membership
        return Rows(tuple(service.describe_entry(e) for e in service.state.entries()))

    async def tags_set(self, request: TagsSetRequest) -> Document:
        """Set or remove one of this node's tags; it is gossiped, and kept across restarts."""
        tags = request.apply(self.node.membership.tags, RESERVED_TAGS)
        try:
            await self.node.set_tags(tags)
        except ValueError as exc:
            raise AdminError(str(exc)) from None
        return Document(self.node.membership.tags)

    async def tags_list(self, _: NoArguments) -> Document:
        """This node's tags."""
        return Document(self.node.membership.tags)

    # -- invites and the network's keys ----------------------------------------------------------

    async def invite(self, request: InviteRequest) -> Invited:
        """A ticket (private network) or an invite token (open network) to join through this
        node."""
        invite = await self.node.invite(request.expires)
        return Invited(
            token=invite.encode(),
            expires=float(invite.expires_at),
            network=invite.network,
            addresses=tuple(str(a) for a in invite.bootstrap()),
        )

    async def join(self, request: JoinRequest) -> Joined:
        """Join the network of an invite token now, through the inviter."""
        contacts = await self.node.join(request.token)
        return Joined(
            network=self.node.settings.network,
            bootstrapped=contacts,
            members=self.node.membership.counts()["alive"],
        )

    async def network_key(self, request: NetworkKeyRequest) -> NetworkKeys:
        """``network key list|install|use|remove``: each step is run here and written to the
        network's key plan, which every member then carries out (plexinode.security.rotation);
        the answer shows the progress."""
        service = self.node.keyring_service
        if request.action != "list":
            key = request.find_key(self.node.keyring)
            authority = self._authority()  # keys are rotated on private networks only
            if not authority.holds(self.node.identity.public_key, ADMIN):
                raise AdminError(
                    "this node does not hold the admin role, so members would ignore its key "
                    "plan: grant it the role for the rotation, e.g. `plexinode network grant "
                    f"admin {self.node.node_id} --expires 1h` (with the root key)"
                )
            try:
                if request.action == "install":
                    service.install(key)
                elif request.action == "use":
                    service.use(key, force=request.force)
                else:
                    service.remove(key)
            except ValueError as exc:
                raise AdminError(str(exc)) from None
        return NetworkKeys(
            network=self.node.settings.network,
            private=self.node.keyring.private,
            keyring=service.describe(),
        )

    def _authority(self) -> AuthorityService:
        service = self.node.authority_service
        if service is None:
            raise AdminError(
                f"network {self.node.settings.network!r} is open (it has no root key): admin "
                "keys, grants, revocations and key rotations are for private networks made "
                "with `plexinode init --network`"
            )
        return service

    async def authority_info(self, request: AuthorityInfoRequest) -> AuthorityInfo:
        """The network's name and root key (empty without one), and the public key of the node
        asked about."""
        service = self.node.authority_service
        if service is None:
            return AuthorityInfo(self.node.settings.network, "", "")
        authority = service.authority
        public_key = b""
        if request.node_id is not None:
            found = (
                self.node.identity.public_key
                if request.node_id == self.node.node_id
                else self.node.membership.evidence.public_key(request.node_id)
            )
            if found is None:
                raise AdminError(
                    f"this node has not heard from {request.node_id} (it knows a node's key "
                    "once it has seen the node as a member)"
                )
            public_key = found
        return AuthorityInfo(authority.network, authority.root.hex(), public_key.hex())

    async def authority_submit(self, request: AuthoritySubmitRequest) -> AuthorityAdded:
        """Keep and spread statements the CLI signed with an admin key. A grant to a revoked
        key is refused here: it would be kept, and change nothing (a revocation holds for
        good), so the admin is told rather than shown a success."""
        authority = self._authority()
        encoded, refused = [], []
        for data in request.encoded():
            if authority.grants_revoked_key(data):
                refused.append("its subject is revoked for good: a grant changes nothing")
            else:
                encoded.append(data)
        added = await authority.add(encoded, source="the admin socket")
        return AuthorityAdded(len(added.new), (*refused, *added.refused))
