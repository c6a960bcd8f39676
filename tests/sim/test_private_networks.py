"""Private networks on the in-memory network: outsiders are dropped before any signature or
key exchange, a key rotation keeps every member connected, and a node admitted at run time
keeps its keys and its grant."""

from __future__ import annotations

from dataclasses import replace

import pytest
import trio

from plexinode.errors import DataDirError
from plexinode.membership.members import State
from plexinode.membership.messages import SYNC_PROTOCOL
from plexinode.membership.syncing import Seed
from plexinode.net import packet
from plexinode.net.address import Address
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


async def test_a_passive_observer_learns_neither_envelopes_nor_senders(
    autojump_clock, monkeypatch
) -> None:
    """Every datagram a private network's members exchange (probes, gossip, DHT) is encrypted:
    none carries an envelope or a member's key in clear; a flipped byte is dropped and counted."""
    home = Keyring.generate()
    async with open_memory_network(seed=43, latency=0.002) as net:
        wire: list[bytes] = []
        real_send = net._send  # what every bound socket sends through

        def observe(src, payload, dst) -> None:  # a passive observer on every link
            wire.append(payload)
            real_send(src, payload, dst)

        monkeypatch.setattr(net, "_send", observe)
        hosts = [net.new_host() for _ in range(3)]
        nodes = [
            Node(
                seeded_identity(i),
                FAST,
                net.transport(hosts[i]),
                wall_clock=trio.current_time,
                keyring=Keyring(list(home), home.primary, private=True),
            )
            for i in range(3)
        ]
        async with trio.open_nursery() as nursery:
            for node in nodes:
                await nursery.start(node.run)
            for node in nodes[1:]:
                await node.membership.join()
                assert await node.dht.bootstrap([nodes[0].address]) >= 1
            await trio.sleep(30)
            assert all(
                sum(v.state is State.ALIVE for v in n.membership.table.members()) >= 3
                for n in nodes
            )
            assert len(wire) > 50
            secrets = [n.identity.public_key for n in nodes] + [n.node_id.raw for n in nodes]
            for datagram in wire:
                inner = packet.decrypt(datagram, [home.primary])
                assert inner is not None  # every one is a member's, under the network key
                opened = packet.parse(inner)
                assert opened.payload not in datagram
                assert opened.payload[:12] not in datagram  # not even the envelope's head
                assert all(secret[:8] not in datagram for secret in secrets)
            target = nodes[0]
            before = target.datagrams.stats["drop_network_key"]
            flipped = bytearray(wire[-1])
            flipped[len(flipped) // 2] ^= 0x01
            endpoint = await net.transport(net.new_host()).bind(Address("0.0.0.0", 0))
            assert target.address is not None
            await endpoint.datagrams.sendto(bytes(flipped), target.address)
            await trio.sleep(0.1)
            assert target.datagrams.stats["drop_network_key"] == before + 1
            assert target.datagrams.stats["drop_bad_signature"] == 0
            for node in nodes:
                node.stop()


async def test_a_bare_seed_is_resolved_by_a_ping_before_any_stream_toward_it(
    autojump_clock, monkeypatch
) -> None:
    """A seed given as a bare address (``--bootstrap``, an invite) is dialled only once an
    authenticated ping named the node there, and then only toward that node; where no member
    answers, no stream protocol runs at all."""
    home = Keyring.generate()
    async with open_memory_network(seed=44, latency=0.002) as net:
        nodes = [
            Node(
                seeded_identity(i),
                FAST,
                net.transport(net.new_host()),
                wall_clock=trio.current_time,
                keyring=Keyring(list(home), home.primary, private=True),
            )
            for i in range(2)
        ]
        async with trio.open_nursery() as nursery:
            for node in nodes:
                await nursery.start(node.run)
            first, joiner = nodes
            assert first.address is not None
            dialled: list[tuple[Address, str, object]] = []
            real_open = joiner.streams.open

            async def recording_open(address, protocol, *, node_id=None):
                dialled.append((address, protocol, node_id))
                return await real_open(address, protocol, node_id=node_id)

            monkeypatch.setattr(joiner.streams, "open", recording_open)
            assert await joiner.membership.join([Seed(first.address)])
            assert dialled == [(first.address, SYNC_PROTOCOL, first.node_id)]
            nobody = Address(net.new_host(), first.address.port)
            assert not await joiner.membership.join([Seed(nobody)])
            assert all(address != nobody for address, _, _ in dialled)
            assert joiner.membership.stats["seed_unresolved"] == 1
            for node in nodes:
                node.stop()
