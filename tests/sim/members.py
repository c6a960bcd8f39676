"""Membership-only nodes on the in-memory network: datagrams, streams and membership, no DHT.

Failure detection and dissemination do not depend on the DHT, and a node without one costs a
fraction of a full :class:`~plexinode.node.Node` to simulate, so the membership simulations run
hundreds of these. Each node runs in its own cancel scope: :meth:`Cluster.kill` stops it at
once and crashes its host (no goodbye, streams reset), as ``kill -9`` would.
"""

from __future__ import annotations

import collections
import contextlib
import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Protocol

import trio

from plexinode.identity import Identity, NodeId
from plexinode.membership.members import Died, Event, Joined, Left, MemberView, State, Suspected
from plexinode.membership.service import MembershipService, Seed
from plexinode.membership.settings import MembershipSettings
from plexinode.net.address import Address
from plexinode.net.datagram import DatagramService
from plexinode.net.keyring import Keyring
from plexinode.net.settings import DatagramSettings, StreamSettings
from plexinode.net.streams import StreamService
from plexinode.net.transport import DatagramSocket, Endpoint, Transport
from plexinode.security.service import KeyringService
from plexinode.storage import Database, open_database
from plexinode.testing.network import MemoryNetwork
from tests.sim.helpers import WrappedEndpoint, seeded_identity

LAN = MembershipSettings()
DATAGRAM = DatagramSettings(request_timeout=0.5, retries=2)
STREAM = StreamSettings(handshake_timeout=2.0)


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
    """Member nodes on `net`, started in `nursery`."""

    def __init__(
        self,
        net: MemoryNetwork,
        nursery: trio.Nursery,
        settings: MembershipSettings,
        seed: int,
        wrap: Callable[[int, Transport], Transport] | None,
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
                offset = self.skew.get(node.index, 0.0)
                keyring = None
                if self._make_keyring is not None:
                    keyring = self.keyrings.setdefault(node.index, self._make_keyring(node.index))
                datagrams = DatagramService(
                    node.identity,
                    endpoint.datagrams,
                    DATAGRAM,
                    wall_clock=lambda: trio.current_time() + offset,
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
                    wall_clock=lambda: trio.current_time() + offset,
                )
                async with trio.open_nursery() as nursery:
                    await nursery.start(datagrams.run)
                    await nursery.start(streams.run)
                    await nursery.start(node.membership.run)
                    if keyring is not None:
                        node.keyring_service = KeyringService(
                            keyring,
                            node.membership,
                            rng=random.Random(f"{self.seed}/{node.index}/keyring"),
                        )
                        await nursery.start(node.keyring_service.run)
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


class ZombieWatch:
    """Follows every node's events and checks that no dead or left member comes back except
    through a higher incarnation of its own. With `strict`, a resurrection fails at once;
    otherwise it is recorded in :attr:`resurrections` (for the benchmark). Read the events with
    :meth:`check`, often enough that the channels (10,000 events each) never fill up."""

    def __init__(self, cluster: Cluster, *, strict: bool = True) -> None:
        self.channels = [(n, n.membership.subscribe(10_000)) for n in cluster.live()]
        self.strict = strict
        #: Suspicions seen, node x member, in all and per member.
        self.suspicions = 0
        self.suspected: collections.Counter[NodeId] = collections.Counter()
        self.resurrections: list[tuple[int, MemberView]] = []
        # Per observer: the members it saw die or leave, with the incarnation they ended at.
        self._ended: dict[int, dict[NodeId, int]] = {}

    def check(self) -> int:
        """Reads the events since the last call; returns the deaths and leaves among them
        (node x member)."""
        deaths = 0
        for node, channel in self.channels:
            ended = self._ended.setdefault(node.index, {})
            while True:
                try:
                    event: Event = channel.receive_nowait()
                except trio.WouldBlock:
                    break
                member = event.member
                if isinstance(event, Suspected):
                    self.suspicions += 1
                    self.suspected[member.node_id] += 1
                elif isinstance(event, Died | Left):
                    deaths += 1
                    ended[member.node_id] = member.incarnation
                elif isinstance(event, Joined) and member.node_id in ended:
                    if member.incarnation <= ended[member.node_id]:
                        assert not self.strict, (node.index, member)
                        self.resurrections.append((node.index, member))
                    del ended[member.node_id]
        return deaths


async def wait_for(condition: Callable[[], bool], step: float = 0.1) -> float:
    """Sleep (simulated time) until `condition()` holds; returns how long that took.

    The simulation has no event for "every node believes X", so it is sampled every `step`
    seconds: measurements are exact to `step`.
    """
    started = trio.current_time()
    while not condition():  # noqa: ASYNC110 (sampling the simulation's state)
        await trio.sleep(step)
    return trio.current_time() - started


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
            net, nursery, settings, seed, wrap, skew, keyrings, stack if databases else None
        )
        for _ in range(count):
            await cluster.add()
        if converge:
            await cluster.wait_converged()
        yield cluster
        nursery.cancel_scope.cancel()


class Starvation:
    """When a node's event loop stalls (CPU starvation, a long GC pause, a swapped-out
    process): stalls of up to `longest` seconds at random, every `every` seconds on average,
    drawn from `rng`. During a stall nothing the node sends leaves (datagrams, stream bytes,
    connections) and nothing sent to it is read; both happen when the stall ends, as with a
    real stalled process. `stalls` counts the stalls that held up at least one of them."""

    def __init__(self, rng: random.Random, longest: float = 2.0, every: float = 15.0) -> None:
        self.rng = rng
        self.longest = longest
        self.every = every
        self.stalls = 0
        self._start = rng.expovariate(1 / every)
        self._end = self._start + rng.uniform(0.1, longest)
        self._counted = -1.0

    async def wait(self) -> None:
        now = trio.current_time()
        while now >= self._end:
            self._start = self._end + self.rng.expovariate(1 / self.every)
            self._end = self._start + self.rng.uniform(0.1, self.longest)
        if now >= self._start:
            if self._counted != self._start:
                self._counted = self._start
                self.stalls += 1
            await trio.sleep_until(self._end)

    async def datagram_out(self, size: int) -> None:
        await self.wait()

    async def datagram_in(self, size: int) -> None:
        await self.wait()

    async def stream_out(self, size: int) -> None:
        await self.wait()

    async def stream_in(self, size: int) -> None:
        await self.wait()

    async def connecting(self) -> None:
        await self.wait()


class TransportHooks(Protocol):
    """What a hooked transport calls around each datagram, stream read or write, and
    connection of one node."""

    async def datagram_out(self, size: int) -> None: ...

    async def datagram_in(self, size: int) -> None: ...

    async def stream_out(self, size: int) -> None: ...

    async def stream_in(self, size: int) -> None: ...

    async def connecting(self) -> None: ...


class Meter:
    """Counts what a node sends: datagrams and their bytes, and bytes written to its streams."""

    def __init__(self) -> None:
        self.datagrams = 0
        self.datagram_bytes = 0
        self.stream_bytes = 0

    async def datagram_out(self, size: int) -> None:
        self.datagrams += 1
        self.datagram_bytes += size

    async def datagram_in(self, size: int) -> None:
        pass

    async def stream_out(self, size: int) -> None:
        self.stream_bytes += size

    async def stream_in(self, size: int) -> None:
        pass

    async def connecting(self) -> None:
        pass


class _HookedSocket:
    def __init__(self, inner: DatagramSocket, hooks: TransportHooks) -> None:
        self._inner = inner
        self._hooks = hooks

    async def sendto(self, data: bytes, address: Address) -> None:
        await self._hooks.datagram_out(len(data))
        await self._inner.sendto(data, address)

    async def recvfrom(self) -> tuple[bytes, Address]:
        received = await self._inner.recvfrom()
        await self._hooks.datagram_in(len(received[0]))
        return received

    def close(self) -> None:
        self._inner.close()


class _HookedStream(trio.abc.HalfCloseableStream):
    def __init__(self, inner: trio.abc.Stream, hooks: TransportHooks) -> None:
        self._inner = inner
        self._hooks = hooks

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self._hooks.stream_out(len(data))
        await self._inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self._inner.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        data = await self._inner.receive_some(max_bytes)
        await self._hooks.stream_in(len(data))
        return data

    async def send_eof(self) -> None:
        if isinstance(self._inner, trio.abc.HalfCloseableStream):
            await self._inner.send_eof()

    async def aclose(self) -> None:
        await self._inner.aclose()


class _HookedListener(trio.abc.Listener[trio.abc.Stream]):
    def __init__(self, inner: trio.abc.Listener[trio.abc.Stream], hooks: TransportHooks) -> None:
        self._inner = inner
        self._hooks = hooks

    async def accept(self) -> trio.abc.Stream:
        stream = await self._inner.accept()
        await self._hooks.stream_in(0)
        return _HookedStream(stream, self._hooks)

    async def aclose(self) -> None:
        await self._inner.aclose()


class _HookedTransport:
    def __init__(self, inner: Transport, hooks: TransportHooks) -> None:
        self._inner = inner
        self._hooks = hooks

    async def bind(self, address: Address) -> Endpoint:
        endpoint = await self._inner.bind(address)
        return WrappedEndpoint(
            endpoint,
            _HookedSocket(endpoint.datagrams, self._hooks),
            _HookedListener(endpoint.listener, self._hooks),
        )

    async def connect(self, address: Address) -> trio.abc.Stream:
        await self._hooks.connecting()
        return _HookedStream(await self._inner.connect(address), self._hooks)


def starve(inner: Transport, starvation: Starvation) -> Transport:
    """`inner`, its datagrams, connections and stream bytes waiting out the stalls of
    `starvation`."""
    return _HookedTransport(inner, starvation)


def meter(inner: Transport, counts: Meter) -> Transport:
    """`inner`, with what it sends counted in `counts`."""
    return _HookedTransport(inner, counts)
