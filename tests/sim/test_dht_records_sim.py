"""DHT records over time: peer records published by their owners, moved nodes found at their
new address, records handed to closer nodes as they join, republished by their holders when
the owner is gone, and dropped when they expire; a node bound to the wildcard address
announces the address others see it at."""

from __future__ import annotations

import contextlib
import logging
import random
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest
import trio

from plexinode.dht.contact import distance
from plexinode.dht.messages import Store, StoreResult
from plexinode.dht.record_types import PEER, PROVIDER, peer_addresses
from plexinode.dht.records import sign_record
from plexinode.errors import PeerTimeout, RemoteProtocolError
from plexinode.identity import Identity, NodeId
from plexinode.net.address import Address
from plexinode.net.datagram import Inbound
from plexinode.net.transport import Endpoint, Transport
from plexinode.node import Node
from plexinode.testing.network import MemoryNetwork, open_memory_network
from plexinode.testing.nodes import FAST, dht_network, seeded_identity
from plexinode.testing.wrapping import WrappedEndpoint
from plexinode.wire.messages import Ping, Pong

#: Ten simulated minutes between republishing rounds, so tests cover several of them.
REPUBLISH = replace(FAST, dht=replace(FAST.dht, republish_interval=600.0))
#: One simulated minute, for a test that waits out one round and need not cover several.
QUICK_REPUBLISH = replace(FAST, dht=replace(FAST.dht, republish_interval=60.0))


@contextlib.asynccontextmanager
async def extra_node(
    net: MemoryNetwork, identity: Identity, bootstrap: Address
) -> AsyncIterator[Node]:
    """One more node, on a fresh host, joining through `bootstrap`."""
    node = Node(
        identity,
        replace(REPUBLISH, bootstrap=(bootstrap,)),
        net.transport(net.new_host()),
        wall_clock=trio.current_time,
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(node.run)
        await node.dht.joined.wait()
        yield node
        node.stop()


def holders(nodes: list[Node], rtype: int, key: bytes) -> list[Node]:
    now = trio.current_time()
    return [n for n in nodes if n.dht.records.get(rtype, key, now)]


async def test_every_node_publishes_its_peer_record(autojump_clock) -> None:
    async with (
        open_memory_network(seed=21, latency=0.005) as net,
        dht_network(net, 30, REPUBLISH, seed=21) as nodes,
    ):
        await trio.sleep(5)  # the first publication follows the join
        rng = random.Random(21)
        for node in nodes:
            summary = node.dht.records_summary()
            assert summary["addresses"] == [str(node.address)]
            assert summary["counters"]["published"] == 1
        for _ in range(20):
            a, b = rng.sample(nodes, 2)
            records = await a.dht.get(PEER, b.node_id.raw)
            assert records, f"no peer record of {b.node_id.short()}"
            assert peer_addresses(max(records, key=lambda r: r.seq)) == [b.address]
        # Each is held by about k nodes (here: nearly everyone, as N is close to k).
        key = nodes[5].node_id.raw
        assert len(holders(nodes, PEER, key)) >= FAST.dht.k // 2
        # Owners publish again every interval (with jitter), with a higher sequence number.
        before = nodes[5].dht.records.get(PEER, key, trio.current_time())[0].seq
        await trio.sleep(700)
        after = nodes[5].dht.records.get(PEER, key, trio.current_time())[0].seq
        assert after > before
        assert nodes[5].dht.records_summary()["counters"]["published"] == 2


async def test_a_node_that_moved_is_found_at_its_new_address(autojump_clock) -> None:
    async with (
        open_memory_network(seed=22, latency=0.005) as net,
        dht_network(net, 25, REPUBLISH, seed=22) as nodes,
    ):
        mover, asker = nodes[7], nodes[3]
        assert mover.address is not None
        assert nodes[1].address is not None
        old_address = mover.address
        await trio.sleep(5)
        assert (await asker.dht.resolve(mover.node_id)) is not None
        # The mover goes away without notice and comes back on another host, same identity.
        net.partition(
            [n.address.host for n in nodes if n is not mover and n.address], [old_address.host]
        )
        async with extra_node(net, mover.identity, nodes[1].address) as moved:
            assert moved.address is not None
            assert moved.address != old_address
            await trio.sleep(5)  # it publishes its new peer record (a higher seq)
            # The asker's table still has the old address: ping falls back to a fresh lookup.
            result = await asker.ping(None, node_id=mover.node_id)
            assert result["address"] == str(moved.address)
            contact = await asker.dht.resolve(mover.node_id, fresh=True)
            assert contact is not None
            assert contact.address == moved.address


async def test_records_move_to_a_node_that_joins_closer_to_their_key(autojump_clock) -> None:
    async with (
        open_memory_network(seed=23, latency=0.005) as net,
        dht_network(net, 60, REPUBLISH, seed=23) as nodes,
    ):
        newcomer_identity = seeded_identity(10_000, seed=23)
        # A key right next to the newcomer's ID: once it joins, it is the closest node to it.
        key = bytearray(newcomer_identity.node_id.raw)
        key[-1] ^= 1
        key = bytes(key)
        publisher = nodes[4]
        expires = int(trio.current_time()) + 7200
        record = sign_record(
            publisher.identity, PROVIDER, key, seq=1, expires_at=expires, value=b""
        )
        assert await publisher.dht.put(record) >= FAST.dht.k // 2
        assert nodes[1].address is not None
        async with extra_node(net, newcomer_identity, nodes[1].address) as newcomer:
            await trio.sleep(30)  # holders ping it back, add it, and hand the record over
            assert newcomer.dht.records.get(PROVIDER, key, trio.current_time()) == [record]
            handed = sum(n.dht.record_stats["handed_off"] for n in nodes)
            assert handed >= 1


@pytest.mark.long
async def test_holders_republish_when_the_owner_and_most_holders_are_gone(
    autojump_clock,
) -> None:
    async with (
        open_memory_network(seed=24, latency=0.005) as net,
        dht_network(net, 80, REPUBLISH, seed=24) as nodes,
    ):
        publisher = nodes[9]
        key = bytes(range(32))
        expires = int(trio.current_time()) + 7200
        record = sign_record(
            publisher.identity, PROVIDER, key, seq=1, expires_at=expires, value=b""
        )
        await publisher.dht.put(record)
        first = holders(nodes, PROVIDER, key)
        assert len(first) >= FAST.dht.k // 2
        # The publisher and three quarters of the holders vanish without notice.
        gone = {id(publisher)} | {id(n) for n in first[: 3 * len(first) // 4] if n is not nodes[0]}
        alive = [n for n in nodes if id(n) not in gone]
        net.partition(
            [n.address.host for n in alive if n.address],
            [n.address.host for n in nodes if id(n) in gone and n.address],
        )
        await trio.sleep(3 * 600)  # a few republishing rounds
        target = NodeId(key)
        closest_alive = sorted(alive, key=lambda n: distance(n.node_id, target))[: FAST.dht.k]
        held = holders(closest_alive, PROVIDER, key)
        assert len(held) >= 3 * FAST.dht.k // 4, f"only {len(held)} of the k closest hold it"
        assert sum(n.dht.record_stats["republished"] for n in alive) >= 1
        # And it can still be found from anywhere.
        found = await alive[-1].dht.get(PROVIDER, key)
        assert record in found


async def test_expired_records_are_dropped(autojump_clock) -> None:
    async with (
        open_memory_network(seed=25, latency=0.005) as net,
        dht_network(net, 20, REPUBLISH, seed=25) as nodes,
    ):
        now = trio.current_time()
        key = bytes(32)
        record = sign_record(
            nodes[2].identity, PROVIDER, key, seq=1, expires_at=int(now) + 300, value=b""
        )
        await nodes[2].dht.put(record)
        assert len(holders(nodes, PROVIDER, key)) >= FAST.dht.k // 2
        await trio.sleep(600)  # past expiry, and past a maintenance round everywhere
        assert all(all(r.rtype != PROVIDER for r in n.dht.records.all_records()) for n in nodes)
        assert sum(n.dht.record_stats["expired"] for n in nodes) >= FAST.dht.k // 2


async def test_reported_addresses_need_a_quorum_and_must_be_routable(autojump_clock) -> None:
    async with open_memory_network(seed=26) as net, dht_network(net, 4, REPUBLISH) as nodes:
        dht = nodes[0].dht
        bound = dht.advertised_addresses()
        reporters = [Address(f"10.0.9.{i}", 7420) for i in range(1, 4)]
        dht.note_observed(Pong("198.51.100.7", 4000), reporters[0])
        assert dht.advertised_addresses() == bound  # one report is not enough
        dht.note_observed(Pong("198.51.100.7", 4000), reporters[0])
        assert dht.advertised_addresses() == bound  # nor the same reporter twice
        # Public reporters count once per /24, whatever their keys: sybils on one network
        # cannot make up a quorum.
        dht.note_observed(Pong("198.51.100.9", 4000), Address("1.2.3.4", 7420))
        dht.note_observed(Pong("198.51.100.9", 4000), Address("1.2.3.5", 7421))
        assert dht.advertised_addresses() == bound
        dht.note_observed(Pong("198.51.100.7", 4000), reporters[1])
        assert dht.advertised_addresses() == [*bound, Address("198.51.100.7", 4000)]
        for bad in (Pong("0.0.0.0", 4000), Pong("224.0.0.1", 4000), Pong("not-an-ip", 1)):
            for reporter in reporters:
                dht.note_observed(bad, reporter)
        assert dht.advertised_addresses() == [*bound, Address("198.51.100.7", 4000)]
        # A burst of invented addresses cannot grow memory without bound.
        for i in range(1000):
            dht.note_observed(Pong(f"10.{i // 250}.{i % 250}.1", 7000), reporters[2])
        assert len(dht.advertised_addresses()) <= 8
        # The change is published: the owner's record now lists the reported address.
        await trio.sleep(5)
        own = dht.records.get(PEER, nodes[0].node_id.raw, trio.current_time())
        assert Address("198.51.100.7", 4000) in peer_addresses(own[0])


class WildcardEndpoint(WrappedEndpoint):
    """What the socket transport reports for a node bound to 0.0.0.0: the wildcard, not the
    address others reach it at (the memory network would report the host's address)."""

    @property
    def address(self) -> Address:
        return Address("0.0.0.0", super().address.port)


class WildcardTransport:
    def __init__(self, inner: Transport) -> None:
        self._inner = inner

    async def bind(self, address: Address) -> Endpoint:
        endpoint = await self._inner.bind(address)
        return WildcardEndpoint(endpoint, endpoint.datagrams)

    def rng(self, seed: bytes) -> random.Random:
        return self._inner.rng(seed)

    async def connect(self, address: Address) -> trio.abc.Stream:
        return await self._inner.connect(address)


async def test_a_node_bound_to_the_wildcard_announces_the_address_a_quorum_saw(
    autojump_clock, caplog
) -> None:
    async with (
        open_memory_network(seed=28, latency=0.005) as net,
        dht_network(net, 1, REPUBLISH) as (first,),
    ):
        assert first.address is not None
        host = net.new_host()
        wild = Node(
            seeded_identity(1),
            replace(REPUBLISH, bootstrap=(first.address,)),
            WildcardTransport(net.transport(host)),
            wall_clock=trio.current_time,
        )
        async with trio.open_nursery() as nursery:
            with caplog.at_level(logging.INFO, logger="plexinode.dht.publishing"):
                assert await nursery.start(wild.run) == Address("0.0.0.0", 7420)
                await wild.dht.joined.wait()
                await trio.sleep(5)
            # It pinged its one contact, whose pong alone is not a quorum: nothing is
            # published, and it says why.
            assert wild.dht.advertised_addresses() == []
            assert "no address to publish yet" in caplog.text
            assert wild.dht.records_summary()["own"] == 0
            assert "published" not in wild.dht.record_stats
            assert first.dht.records.get(PEER, wild.node_id.raw, trio.current_time()) == []

            # A second witness (the first is the pong of that probe): the address both saw
            # is published soon after.
            async with extra_node(net, seeded_identity(2), first.address) as second:
                assert second.address is not None
                await wild.ping(second.address)
                await trio.sleep(5)
                seen = Address(host, 7420)
                assert wild.dht.advertised_addresses() == [seen]
                assert wild.dht.record_stats["published"] == 1
                records = await second.dht.get(PEER, wild.node_id.raw)
                assert [peer_addresses(r) for r in records] == [[seen]]
                # Membership waited for an address too; its alive claim carries that one.
                before = wild.membership.table.get(wild.node_id)
                assert before is not None
                assert before.address == seen

                # Its NAT maps it elsewhere now: more witnesses report the new address, and
                # both the peer record and the alive claim (a new incarnation) follow.
                moved = Address("198.51.100.7", 4000)
                for i in range(3):
                    reporter = Address(f"10.0.9.{i + 1}", 7420)
                    wild.dht.note_observed(Pong(moved.host, moved.port), reporter)
                with caplog.at_level(logging.INFO, logger="plexinode.membership.probing"):
                    await trio.sleep(10)
                assert wild.dht.advertised_addresses() == [moved, seen]
                assert wild.dht.record_stats["published"] == 2
                after = wild.membership.table.get(wild.node_id)
                assert after is not None
                assert after.address == moved
                assert after.incarnation > before.incarnation
                heard = second.membership.table.get(wild.node_id)
                assert heard is not None
                assert heard.address == moved
                assert f"membership: our address changed to {moved}" in caplog.text
            wild.stop()


async def test_a_full_store_refuses_the_nodes_own_peer_record(autojump_clock, caplog) -> None:
    async with (
        open_memory_network(seed=29, latency=0.005) as net,
        dht_network(net, 2, QUICK_REPUBLISH) as nodes,
    ):
        assert nodes[0].address is not None
        node = Node(
            seeded_identity(3),
            replace(QUICK_REPUBLISH, bootstrap=(nodes[0].address,)),
            net.transport(net.new_host()),
            wall_clock=trio.current_time,
        )
        async with trio.open_nursery() as nursery:
            with caplog.at_level(logging.WARNING, logger="plexinode.dht.publishing"):
                await nursery.start(node.run)
                # Full before the node has joined (the bootstrap takes a round trip).
                assert not node.dht.joined.is_set()
                room = node.dht.records.max_records
                node.dht.records.max_records = 0
                await node.dht.joined.wait()
                await trio.sleep(5)
            assert "own peer record refused: store full" in caplog.text
            assert "published" not in node.dht.record_stats
            # Once there is room, the next round publishes it.
            node.dht.records.max_records = room
            await trio.sleep(70)
            assert node.dht.record_stats["published"] == 1
            assert await nodes[1].dht.get(PEER, node.node_id.raw)
            node.stop()


async def test_a_store_flood_from_one_peer_is_rate_limited(autojump_clock) -> None:
    async with open_memory_network(seed=27) as net, dht_network(net, 3, REPUBLISH) as nodes:
        flooder, victim = nodes[1], nodes[2]
        assert victim.address is not None
        now = int(trio.current_time())
        accepted = refused = 0

        async def store(i: int) -> None:
            nonlocal accepted, refused
            record = sign_record(
                flooder.identity,
                PROVIDER,
                i.to_bytes(32, "big"),
                seq=1,
                expires_at=now + 600,
                value=b"",
            )
            try:
                await flooder.datagrams.request(
                    victim.address, Store(record), node_id=victim.node_id, retries=0
                )
                accepted += 1
            except (PeerTimeout, RemoteProtocolError):
                refused += 1

        async with trio.open_nursery() as nursery:
            for i in range(200):
                nursery.start_soon(store, i)
        # A burst of 2 x 20 tokens at 2 tokens a STORE: at most 20 go through (fewer if the
        # flooder's own peer record or handoffs spent some), the rest are dropped (the first
        # answered RATE_LIMITED) and counted; the victim holds only those.
        assert 15 <= accepted <= 20
        assert refused == 200 - accepted
        assert victim.datagrams.stats["drop_rate_limited"] >= refused
        held = [r for r in victim.dht.records.all_records() if r.rtype == PROVIDER]
        assert len(held) == accepted
        # The flooder's other requests, and other peers, are not affected.
        assert (await flooder.dht.locate(victim.node_id)).found_target
        assert await nodes[0].datagrams.request(victim.address, Ping(), node_id=victim.node_id)


#: A small k, so that a 30-node network has nodes that are not among the k closest to a key.
SMALL_K = replace(REPUBLISH, dht=replace(REPUBLISH.dht, k=4))


async def test_a_store_for_a_key_the_node_is_not_close_to_is_refused(autojump_clock) -> None:
    async with open_memory_network(seed=31) as net, dht_network(net, 30, SMALL_K) as nodes:
        storer = nodes[1]

        def knows_k_closer(node: Node, key: bytes) -> bool:
            target = NodeId(key)
            closest = node.dht.routing.closest(target, 4, exclude=(storer.node_id,))
            mine = distance(node.node_id, target)
            return len(closest) == 4 and all(distance(c.node_id, target) < mine for c in closest)

        # A key in the far half of the ID space seen from a node that knows k nodes there.
        def far(node: Node) -> bytes:
            return bytes([node.node_id.raw[0] ^ 0x80]) + node.node_id.raw[1:]

        victim = next(n for n in nodes[2:] if knows_k_closer(n, far(n)))
        assert victim.address is not None
        key = far(victim)
        now = int(trio.current_time())
        record = sign_record(storer.identity, PROVIDER, key, seq=1, expires_at=now + 600, value=b"")
        reply = await storer.datagrams.request(
            victim.address, Store(record), node_id=victim.node_id
        )
        assert isinstance(reply.message, StoreResult)
        assert not reply.message.stored
        assert "k closest" in reply.message.reason
        assert not victim.dht.records.get(PROVIDER, key, now)
        assert victim.dht.records_summary()["refused"] == {"not among the k closest to the key": 1}
        # The nodes the key belongs to take it.
        assert await storer.dht.put(record) >= 3


async def test_providers_from_one_network_take_at_most_their_share_of_a_key(
    autojump_clock,
) -> None:
    async with open_memory_network(seed=32) as net, dht_network(net, 3, REPUBLISH) as nodes:
        victim = nodes[1]
        store = victim.datagrams.handler(Store)
        assert store is not None
        key = victim.node_id.raw  # the victim is the closest node to it
        now = int(trio.current_time())

        async def offer(i: int, host: str) -> bool:
            # 64 cheap identities, each handing the victim a provider record for the key.
            identity = seeded_identity(5000 + i, seed=32)
            record = sign_record(identity, PROVIDER, key, seq=1, expires_at=now + 600, value=b"")
            inbound = Inbound(
                Store(record), 1, identity.node_id, identity.public_key, Address(host, 7420 + i)
            )
            reply = await store(inbound)
            assert isinstance(reply, StoreResult)
            return reply.stored

        from_one = [await offer(i, "93.184.216.9") for i in range(64)]
        assert sum(from_one) == victim.dht.records.max_providers_per_subnet == 8
        from_next = [await offer(100 + i, "93.184.217.9") for i in range(16)]
        assert sum(from_next) == 8
        assert len(victim.dht.records.get(PROVIDER, key, now)) == 16
