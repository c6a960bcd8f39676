"""The datagram layer's limits on the in-memory network: replay state across restarts."""

from __future__ import annotations

import trio

from plexinode.node import Node
from plexinode.testing.network import open_memory_network
from plexinode.testing.nodes import FAST, seeded_identity
from plexinode.wire.messages import Ping, Pong

#: A Unix time for the nodes' wall clocks, far from 0.
EPOCH = 1_800_000_000.0


async def test_a_node_restarted_with_its_clock_stepped_back_is_still_heard(
    autojump_clock,
) -> None:
    async with open_memory_network(seed=5) as net, trio.open_nursery() as nursery:
        bob = Node(seeded_identity(1), FAST, net.transport(net.new_host()), membership=False)
        await nursery.start(bob.run)
        assert bob.address is not None
        host = net.new_host()
        alice = Node(
            seeded_identity(0),
            FAST,
            net.transport(host),
            wall_clock=lambda: EPOCH + trio.current_time(),
            membership=False,
        )
        await nursery.start(alice.run)
        reply = await alice.datagrams.request(bob.address, Ping(), node_id=bob.node_id)
        assert isinstance(reply.message, Pong)
        alice.stop()
        await trio.sleep(1)
        # Alice comes back at once, her clock two minutes behind (a step, a new battery...).
        again = Node(
            seeded_identity(0),
            FAST,
            net.transport(host),
            wall_clock=lambda: EPOCH + trio.current_time() - 120.0,
            membership=False,
        )
        await nursery.start(again.run)
        reply = await again.datagrams.request(bob.address, Ping(), node_id=bob.node_id)
        assert isinstance(reply.message, Pong)
        assert bob.datagrams.stats["drop_replay"] == 0
        again.stop()
        bob.stop()
