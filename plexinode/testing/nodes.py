"""Full nodes on the in-memory network: fast settings, seeded identities, running nodes.

:func:`running_nodes` starts nodes (:class:`~plexinode.node.Node`), each on a host of its own;
:func:`dht_network` starts a DHT that has formed (every node bootstrapped from the first).
Identities come from :func:`seeded_identity`, so a simulation replays from its seed.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import replace

import trio

from plexinode.config import Settings
from plexinode.dht.settings import DhtSettings
from plexinode.identity import Identity
from plexinode.net.address import Address
from plexinode.net.keyring import Keyring
from plexinode.net.settings import DatagramSettings, StreamSettings
from plexinode.net.transport import Transport
from plexinode.node import Node
from plexinode.testing.network import MemoryNetwork

FAST = Settings(
    listen=Address("0.0.0.0", 7420),
    datagram=DatagramSettings(request_timeout=0.5, retries=2),
    stream=StreamSettings(handshake_timeout=2.0),
    # Simulations use seeded identities; the ID puzzle has its own tests.
    dht=DhtSettings(id_difficulty=0),
)


def seeded_identity(index: int, seed: int = 0) -> Identity:
    """A deterministic identity, so that simulations replay exactly from their seed."""
    return Identity.from_seed(seed.to_bytes(8, "big") + index.to_bytes(24, "big"))


@contextlib.asynccontextmanager
async def running_nodes(
    net: MemoryNetwork,
    count: int,
    settings: Settings = FAST,
    *,
    seed: int = 0,
    keyrings: Callable[[int], Keyring] | None = None,
) -> AsyncIterator[list[Node]]:
    """Start `count` nodes on `net`, each on its own host (node `i` with the keyring
    ``keyrings(i)``, if given); stop them all on exit."""
    nodes: list[Node] = []
    async with trio.open_nursery() as nursery:
        for i in range(count):
            host = net.new_host()
            node = Node(
                seeded_identity(i, seed),
                replace(settings),
                net.transport(host),
                wall_clock=trio.current_time,
                keyring=None if keyrings is None else keyrings(i),
            )
            await nursery.start(node.run)
            nodes.append(node)
        yield nodes
        for node in nodes:
            node.stop()


@contextlib.asynccontextmanager
async def dht_network(
    net: MemoryNetwork,
    count: int,
    settings: Settings = FAST,
    *,
    seed: int = 0,
    identity: Callable[[int], Identity] | None = None,
    wrap: Callable[[Transport], Transport] | None = None,
    refreshed: bool = False,
    membership: bool = False,
) -> AsyncIterator[list[Node]]:
    """`count` nodes; the first has no bootstrap, every other bootstraps from the first.

    The nodes run without membership unless `membership` is true: DHT simulations measure the
    DHT, and membership would multiply their cost.

    Node `i` has ``identity(i)`` (default: ``seeded_identity(i, seed)``) and its host's
    transport passed through `wrap`, if given. Yields once every node has joined the DHT, and
    with `refreshed` once every node has also finished its first bucket refresh (the network
    has then formed: each table covers the whole ID space, not only its owner's neighbours).
    """
    nodes: list[Node] = []
    async with trio.open_nursery() as nursery:
        first_address: Address | None = None
        for i in range(count):
            transport: Transport = net.transport(net.new_host())
            node_settings = replace(settings, bootstrap=(first_address,) if first_address else ())
            node = Node(
                identity(i) if identity else seeded_identity(i, seed),
                node_settings,
                wrap(transport) if wrap else transport,
                wall_clock=trio.current_time,
                membership=membership,
            )
            address = await nursery.start(node.run)
            first_address = first_address or address
            nodes.append(node)
        for node in nodes:
            await node.dht.joined.wait()
        if refreshed:
            for node in nodes:
                await node.dht.refreshed.wait()
        yield nodes
        for node in nodes:
            node.stop()
