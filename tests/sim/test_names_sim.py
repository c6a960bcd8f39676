"""Names where an operator types them, in simulation: a node that listens on a name, joins
through a bootstrap name that resolves only later, and pings a name."""

from __future__ import annotations

from dataclasses import replace

import trio

from plexinode.net.address import Address
from plexinode.node import Node
from plexinode.testing.network import open_memory_network
from plexinode.testing.nodes import FAST, dht_network, seeded_identity


async def test_a_node_listens_on_a_name_and_resolves_its_bootstrap_name_on_each_retry(
    autojump_clock,
) -> None:
    async with (
        open_memory_network(seed=3, latency=0.005) as net,
        dht_network(net, 1, FAST) as (first,),
    ):
        assert first.address is not None
        host = net.new_host()
        net.add_name("me.example", host)
        settings = replace(
            FAST,
            listen=Address("me.example", 7100),
            bootstrap=(Address("seed.example", first.address.port),),
        )
        node = Node(
            seeded_identity(1),
            settings,
            net.transport(host),
            wall_clock=trio.current_time,
            resolver=net.resolver,
        )
        async with trio.open_nursery() as nursery:
            # It binds the name's address, and reports that address, not the name.
            assert await nursery.start(node.run) == Address(host, 7100)
            await trio.sleep(10)
            # The bootstrap name does not resolve yet: no contact, and still trying.
            assert not node.dht.joined.is_set()
            assert node.dht.bootstrap_addresses == []
            net.add_name("seed.example", first.address.host)
            with trio.fail_after(120):
                await node.dht.joined.wait()
            assert node.dht.bootstrap_addresses == [first.address]
            assert node.datagrams.stats["drop_unmatched_reply"] == 0
            # Pinging the name reaches the node at its address.
            pong = await node.ping(Address("seed.example", first.address.port))
            assert pong["node_id"] == str(first.node_id)
            assert pong["address"] == str(first.address)
            node.stop()
