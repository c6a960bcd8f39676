"""Private networks on the in-memory network: outsiders are dropped before any signature or
key exchange, a key rotation keeps every member connected, and a node admitted at run time
keeps its keys and its grant."""

from __future__ import annotations

from dataclasses import replace

import pytest
import trio

from plexinode.errors import DataDirError
from plexinode.membership.members import State
from plexinode.net.certificates import INVITER, MEMBER
from plexinode.net.keyring import Keyring, load_keyring
from plexinode.net.pinging import NoAnswer, PingOptions
from plexinode.node import Node
from plexinode.testing.authority import ROOT, founded
from plexinode.testing.member_cluster import NETWORK
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
            # Neither a datagram nor a handshake is answered, and ping says why.
            for via in ("datagram", "stream"):
                with pytest.raises(NoAnswer, match="private network whose key"):
                    await outsider.ping(
                        members[0].address,
                        node_id=members[0].node_id,
                        options=PingOptions(via=via, timeout=1.0),
                    )
            target = members[0]
            assert target.datagrams.stats["drop_network_key"] >= 2
            assert target.datagrams.stats["drop_bad_signature"] == 0
            # The datagram ping's diagnosis and the stream ping: two refused handshakes.
            assert target.streams.stats["handshake_network_key"] == 2
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


async def test_a_private_node_that_lost_its_keys_refuses_to_run(autojump_clock, tmp_path) -> None:
    """Without network.keys a node would take the open network's key of the same name: the
    database remembers the network is private, and the node stops with one line instead."""
    async with open_memory_network(seed=43, latency=0.002) as net:
        host = net.new_host()
        private = Keyring.generate()

        def node(keyring: Keyring) -> Node:
            return Node(
                seeded_identity(1),
                FAST,
                net.transport(host),
                data_dir=tmp_path,
                wall_clock=trio.current_time,
                keyring=keyring,
            )

        async with trio.open_nursery() as nursery:
            first = node(private)
            await nursery.start(first.run)
            first.stop()
        keyless = node(Keyring.open(FAST.network))
        keyless.stop()  # should it run at all, it stops at once (and the test fails)
        with pytest.raises(DataDirError, match="private network 'open'"):
            await keyless.run()
        # With its keys back, it runs.
        async with trio.open_nursery() as nursery:
            again = node(private)
            await nursery.start(again.run)
            assert again.keyring.private
            again.stop()


async def test_joining_a_private_network_at_run_time_is_remembered(
    autojump_clock, tmp_path
) -> None:
    settings = replace(FAST, network=NETWORK)
    async with open_memory_network(seed=44, latency=0.002) as net:
        hosts = [net.new_host() for _ in range(2)]
        inviter = Node(
            seeded_identity(0, 44),
            settings,
            net.transport(hosts[0]),
            wall_clock=trio.current_time,
            keyring=founded(44, roles=lambda i: (MEMBER, INVITER))(0),
        )

        def joiner(keyring: Keyring | None = None) -> Node:
            return Node(
                seeded_identity(1, 44),
                settings,
                net.transport(hosts[1]),
                data_dir=tmp_path,
                wall_clock=trio.current_time,
                keyring=keyring,
            )

        async with trio.open_nursery() as nursery:
            await nursery.start(inviter.run)
            async with trio.open_nursery() as first_run:
                newcomer = joiner()
                await first_run.start(newcomer.run)
                await newcomer.join((await inviter.invite(3600)).encode())
                newcomer.stop()
            # Back from its data dir: the network's keys, its root and its grant.
            again = joiner(load_keyring(tmp_path, NETWORK))
            await nursery.start(again.run)
            assert again.keyring.root == ROOT.public_key
            assert again.authority_service is not None
            assert again.authority_service.member(again.identity.public_key)
            again.stop()
            inviter.stop()
        # The keys were saved with the node (network.keys); without them it refuses to run.
        (tmp_path / "network.keys").unlink()
        keyless = joiner()
        keyless.stop()
        with pytest.raises(DataDirError, match="private network"):
            await keyless.run()
