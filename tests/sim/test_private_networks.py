"""Private networks on the in-memory network: outsiders are dropped before any signature or
key exchange, and a key rotation keeps every member connected."""

from __future__ import annotations

import trio

from plexinode.errors import HandshakeError, PeerTimeout
from plexinode.membership.members import State
from plexinode.net.keyring import Keyring
from plexinode.node import Node
from plexinode.testing.network import open_memory_network
from plexinode.testing.nodes import FAST, seeded_identity


async def test_outsiders_are_dropped_and_a_rotation_keeps_members_together(
    autojump_clock,
) -> None:
    home = Keyring.generate()
    async with open_memory_network(seed=41, latency=0.002) as net:
        hosts = [net.new_host() for _ in range(4)]
        rings = [Keyring(list(home), home.primary, private=True) for _ in range(3)]
        rings.append(Keyring.open("open"))  # the outsider: the open network
        nodes = [
            Node(
                seeded_identity(i),
                FAST,
                net.transport(hosts[i]),
                wall_clock=trio.current_time,
                keyring=rings[i],
            )
            for i in range(4)
        ]
        async with trio.open_nursery() as nursery:
            for node in nodes:
                await nursery.start(node.run)
            members, outsider = nodes[:3], nodes[3]
            for node in members[1:]:
                await node.membership.join()  # no seeds yet: nothing happens
                assert await node.dht.bootstrap([members[0].address]) >= 1

            def together(group: list[Node]) -> bool:
                return all(
                    (v := a.membership.table.get(b.node_id)) is not None and v.state is State.ALIVE
                    for a in group
                    for b in group
                )

            with trio.fail_after(60):
                while not together(members):  # noqa: ASYNC110 (sampling the simulation)
                    await trio.sleep(0.5)

            # The outsider is dropped at the network tag: no signature check, no handshake.
            assert await outsider.dht.bootstrap([members[0].address]) == 0
            try:
                await outsider.ping(members[0].address, node_id=members[0].node_id)
            except PeerTimeout:
                pass
            else:  # pragma: no cover
                raise AssertionError("a node of another network was answered")
            try:
                await outsider.ping(members[0].address, via="stream")
            except (HandshakeError, trio.BrokenResourceError, trio.EndOfChannel):
                pass
            else:  # pragma: no cover
                raise AssertionError("a node of another network completed a handshake")
            target = members[0]
            assert target.datagrams.stats["drop_network_key"] >= 2
            assert target.datagrams.stats["drop_bad_signature"] == 0
            assert target.streams.stats["handshake_network_key"] == 1
            assert target.membership.table.get(outsider.node_id) is None

            # Rotation: install the new key everywhere, use it everywhere, remove the old one.
            new = Keyring.generate().primary
            for step, key in (("install", new), ("use", new), ("remove", home.primary)):
                for node in members:
                    getattr(node.keyring_service, step)(key)
                await trio.sleep(5)
                assert together(members), step
            assert all(list(n.keyring) == [new] for n in members)
            await trio.sleep(30)
            assert together(members)
            for node in nodes:
                node.stop()
