"""Membership-only nodes on the in-memory network: datagrams, streams and membership, no DHT.

Failure detection and dissemination do not depend on the DHT, and a node without one costs a
fraction of a full :class:`~plexinode.node.Node` to simulate, so the membership simulations run
hundreds of these. Each node runs in its own cancel scope: :meth:`Cluster.kill` stops it at
once and crashes its host (no goodbye, streams reset), as ``kill -9`` would.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import trio

from plexinode.identity import Identity, NodeId
from plexinode.membership.members import State
from plexinode.membership.service import MembershipService, Seed
from plexinode.membership.settings import MembershipSettings
from plexinode.net.address import Address
from plexinode.net.datagram import DatagramService
from plexinode.net.keyring import Keyring
from plexinode.net.settings import DatagramSettings, StreamSettings
from plexinode.net.streams import StreamService
from plexinode.net.transport import Transport
from plexinode.security.authority_service import AuthorityService
from plexinode.security.service import KeyringService
from plexinode.security.services import SecurityServices
from plexinode.storage import Database, open_database
from plexinode.testing.network import MemoryNetwork
from plexinode.testing.nodes import seeded_identity
from plexinode.testing.scheduling import wait_for

LAN = MembershipSettings()
DATAGRAM = DatagramSettings(request_timeout=0.5, retries=2)
STREAM = StreamSettings(handshake_timeout=2.0)
#: The network's name, for the authority of private networks with a root key.
NETWORK = "sim"


@dataclass(eq=False)
class MemberNode:
    """One simulated member; `membership` is set once it runs."""

    index: int
    identity: Identity
    host: str
    seeds: list[Seed]
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    membership: MembershipService = field(init=False)
    streams: StreamService = field(init=False)
    datagrams: DatagramService = field(init=False)
    #: Set when the cluster runs keyring services (its `keyrings` argument).
    keyring_service: KeyringService = field(init=False)
    #: Set when the cluster runs keyring services and the keyring has a root key.
    authority_service: AuthorityService | None = field(init=False, default=None)
    address: Address = field(init=False)
    stopped: trio.Event = field(default_factory=trio.Event)

    @property
    def node_id(self) -> NodeId:
        return self.identity.node_id

    def state_of(self, other: MemberNode) -> State | None:
        """What this node believes of `other` (None: not known)."""
        assert self.membership.table is not None
        view = self.membership.table.get(other.node_id)
        return None if view is None else view.state


class Cluster:
    """Member nodes on `net`, started in `nursery` (see :func:`member_cluster`)."""

    def __init__(
        self,
        net: MemoryNetwork,
        nursery: trio.Nursery,
        settings: MembershipSettings,
        seed: int,
        *,
        wrap: Callable[[int, Transport], Transport] | None = None,
        skew: dict[int, float] | None = None,
        keyrings: Callable[[int], Keyring] | None = None,
        databases: contextlib.AsyncExitStack | None = None,
    ) -> None:
        self.net = net
        #: Each node's database (kept across restarts, as its data dir would be), when the
        #: cluster runs with databases: then a restarted node comes back at a higher incarnation.
        self.databases: dict[int, Database] = {}
        self._database_stack = databases
        self.skew = skew or {}
        self._make_keyring = keyrings
        #: Each node's keyring (kept across restarts, as the data dir keeps it), when the
        #: cluster runs with keyrings.
        self.keyrings: dict[int, Keyring] = {}
        self.nursery = nursery
        self.settings = settings
        self.seed = seed
        self.wrap = wrap
        self.nodes: list[MemberNode] = []

    async def add(
        self,
        seeds: list[Seed] | None = None,
        *,
        index: int | None = None,
        host: str | None = None,
        settings: MembershipSettings | None = None,
    ) -> MemberNode:
        """Start a node (by default a new identity on a new host, seeded with the first node)."""
        index = len(self.nodes) if index is None else index
        if seeds is None:
            seeds = [Seed(self.nodes[0].address, self.nodes[0].node_id)] if self.nodes else []
        identity = seeded_identity(index, self.seed)
        node = MemberNode(index, identity, host or self.net.new_host(), seeds)
        await self.nursery.start(self._run, node, settings or self.settings)
        self.nodes.append(node)
        return node

    async def restart(self, old: MemberNode, *, new_host: bool = False) -> MemberNode:
        """Start `old`'s identity again on its host, or on a new one (after :meth:`kill`)."""
        await old.stopped.wait()
        others = [n for n in self.live() if n is not old]
        seeds = [Seed(n.address, n.node_id) for n in others[:3]]
        host = self.net.new_host() if new_host else old.host
        node = await self.add(seeds, index=old.index, host=host)
        self.nodes.remove(old)
        return node

    async def _run(
        self,
        node: MemberNode,
        settings: MembershipSettings,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        transport: Transport = self.net.transport(node.host)
        if self.wrap is not None:
            transport = self.wrap(node.index, transport)
        try:
            with node.scope:
                endpoint = await transport.bind(Address("0.0.0.0", 7420))
                node.address = endpoint.address

                def wall_clock() -> float:
                    # Read at every call: a test may step a node's clock while it runs.
                    return trio.current_time() + self.skew.get(node.index, 0.0)

                keyring = None
                if self._make_keyring is not None:
                    keyring = self.keyrings.setdefault(node.index, self._make_keyring(node.index))
                datagrams = DatagramService(
                    node.identity,
                    endpoint.datagrams,
                    DATAGRAM,
                    keyring=keyring,
                )
                streams = StreamService(
                    node.identity, endpoint.listener, transport, STREAM, keyring=keyring
                )
                node.streams = streams
                node.datagrams = datagrams
                db = None
                if self._database_stack is not None:
                    db = self.databases.get(node.index)
                    if db is None:
                        db = await self._database_stack.enter_async_context(open_database(None))
                        self.databases[node.index] = db
                node.membership = MembershipService(
                    datagrams,
                    streams,
                    settings,
                    advertise=lambda: endpoint.address,
                    seeds=lambda: node.seeds,
                    rng=random.Random(f"{self.seed}/{node.index}/{trio.current_time()}"),
                    db=db,
                    tags={"role": "sim"},
                    wall_clock=wall_clock,
                )
                async with trio.open_nursery() as nursery:
                    await nursery.start(datagrams.run)
                    await nursery.start(streams.run)
                    await nursery.start(node.membership.run)
                    if keyring is not None:
                        security = SecurityServices(
                            keyring,
                            NETWORK,
                            node.membership,
                            save=lambda keyring: None,
                            db=db,
                            wall_clock=wall_clock,
                            rng=lambda label: random.Random(
                                f"{self.seed}/{node.index}{label.decode()}"
                            ),
                        )
                        await security.start(nursery)
                        node.keyring_service = security.keyring
                        node.authority_service = security.authority
                    await node.membership.ready.wait()
                    task_status.started()
                    await trio.sleep_forever()
        finally:
            self.net.crash(node.host)
            node.stopped.set()

    def kill(self, node: MemberNode) -> None:
        """Stop `node` at once, with no goodbye (its host crashes)."""
        node.scope.cancel()

    def live(self) -> list[MemberNode]:
        """The nodes not killed."""
        return [n for n in self.nodes if not n.scope.cancel_called]

    def converged(self, nodes: list[MemberNode] | None = None) -> bool:
        """Whether every one of `nodes` (default: the live ones) sees all of them alive."""
        nodes = self.live() if nodes is None else nodes
        return all(a.state_of(b) is State.ALIVE for a in nodes for b in nodes)

    async def wait_converged(self, nodes: list[MemberNode] | None = None) -> float:
        """Sleep until :meth:`converged`; returns the simulated seconds it took."""
        return await wait_for(lambda: self.converged(nodes))


@contextlib.asynccontextmanager
async def member_cluster(
    net: MemoryNetwork,
    count: int,
    settings: MembershipSettings = LAN,
    *,
    seed: int = 0,
    wrap: Callable[[int, Transport], Transport] | None = None,
    skew: dict[int, float] | None = None,
    converge: bool = True,
    keyrings: Callable[[int], Keyring] | None = None,
    databases: bool = False,
) -> AsyncIterator[Cluster]:
    """`count` member nodes, each seeded with the first; yields once all see all alive (unless
    `converge` is false). Node `i`'s transport goes through ``wrap(i, transport)`` and its
    wall clock is ``skew[i]`` seconds off; with `keyrings`, node `i` starts with the keyring
    ``keyrings(i)`` and runs a keyring service; with `databases`, each node keeps an in-memory
    database across restarts. Every node is stopped on exit."""
    async with contextlib.AsyncExitStack() as stack, trio.open_nursery() as nursery:
        cluster = Cluster(
            net,
            nursery,
            settings,
            seed,
            wrap=wrap,
            skew=skew,
            keyrings=keyrings,
            databases=stack if databases else None,
        )
        for _ in range(count):
            await cluster.add()
        if converge:
            await cluster.wait_converged()
        yield cluster
        nursery.cancel_scope.cancel()
