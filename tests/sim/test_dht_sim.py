"""The DHT on the in-memory network: joining, resolving node IDs, churn, persistence."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
import trio

from plexinode.config import Settings
from plexinode.dht.contact import Contact, bucket_index
from plexinode.dht.messages import FindNode, FindValue, Nodes, Store, Value, WireContact
from plexinode.dht.record_types import PEER, PROVIDER, make_peer_record, peer_addresses
from plexinode.dht.records import InvalidRecord, sign_record
from plexinode.errors import PeerTimeout, RemoteProtocolError
from plexinode.identity import NodeId
from plexinode.net.address import Address
from plexinode.net.datagram import Inbound
from plexinode.node import Node
from plexinode.testing.network import open_memory_network
from plexinode.testing.nodes import FAST, dht_network, seeded_identity
from plexinode.wire.schema import Message


async def test_every_node_resolves_every_other(autojump_clock) -> None:
    async with open_memory_network(seed=1, latency=0.005) as net, dht_network(net, 40) as nodes:
        for node in nodes:
            assert len(node.dht.routing) > 0
        rng = random.Random(1)
        for _ in range(100):
            a, b = rng.sample(nodes, 2)
            contact = await a.dht.resolve(b.node_id)
            assert contact is not None
            assert contact.address == b.address
            pong = await a.ping(None, node_id=b.node_id)
            assert pong["node_id"] == str(b.node_id)
        status = await nodes[0].status()
        assert status["peers"] == len(nodes[0].dht.routing) > 0


@pytest.mark.long
async def test_nodes_that_join_at_once_leave_no_part_of_the_id_space_unknown(
    autojump_clock,
) -> None:
    """150 nodes started at the same instant through one bootstrap node. Without the bucket
    refresh's second try from the farther buckets, a group of nodes close to each other could
    end up knowing nobody in a neighbouring part of the ID space (in most runs, a third of the
    lookups failed), because a lookup only ever asks the closest nodes it knows; and a node
    that knew only its own half of the ID space when it refreshed (nobody farther to ask) kept
    it that way until the next refresh, an interval later, unless it tries again sooner.
    """
    async with (
        open_memory_network(seed=1, latency=0.005) as net,
        dht_network(net, 150, seed=1, refreshed=True) as nodes,
    ):
        await trio.sleep(200)  # the retries of buckets found empty at 30 s and 90 s
        for node in nodes:
            table = node.dht.routing
            sizes = table.bucket_sizes()
            population = Counter(
                bucket_index(node.node_id, other.node_id) for other in nodes if other is not node
            )
            # Every bucket whose part of the ID space holds a good share of the network has
            # contacts (a bucket of one or two nodes may lose a race with their own joining).
            empty = [
                index for index, count in population.items() if count >= 8 and not sizes.get(index)
            ]
            assert not empty, f"{node.node_id.short()} knows nobody in buckets {empty}"
        rng = random.Random(1)
        for _ in range(100):
            a, b = rng.sample(nodes, 2)
            assert (await a.dht.locate(b.node_id)).found_target


def small_k(k: int = 20, **dht: object) -> Settings:
    return replace(FAST, dht=replace(FAST.dht, k=k, **dht))


@pytest.mark.long
async def test_lookups_survive_30_percent_of_nodes_gone(autojump_clock) -> None:
    async with open_memory_network(seed=2, latency=0.005) as net, dht_network(net, 60) as nodes:
        rng = random.Random(2)
        gone = rng.sample(nodes[1:], 18)
        alive = [n for n in nodes if n not in gone]
        assert all(n.address for n in nodes)
        net.partition([n.address.host for n in alive], [n.address.host for n in gone])
        found = 0
        for _ in range(60):
            a, b = rng.sample(alive, 2)
            result = await a.dht.find_node(b.node_id)
            found += result.found_target
        assert found == 60
        unknown = await alive[0].dht.resolve(seeded_identity(999, 7).node_id)
        assert unknown is None
        with pytest.raises(PeerTimeout, match="not found"):
            await alive[0].ping(None, node_id=seeded_identity(999, 7).node_id)


async def test_small_buckets_ping_their_oldest_entry(autojump_clock) -> None:
    async with (
        open_memory_network(seed=3, latency=0.002) as net,
        # A full bucket pings its oldest entry only once that was not heard from for a
        # liveness interval: 120 s here, so that several rounds fit in the run.
        dht_network(net, 40, small_k(2, refresh_interval=120.0, liveness_interval=120.0)) as nodes,
    ):
        await trio.sleep(600)  # several refresh rounds
        stats = sum((n.dht.routing.stats for n in nodes), Counter())
        assert stats["bucket_full"] > 0
        for node in nodes:
            assert all(size <= 2 for size in node.dht.routing.bucket_sizes().values())
        # Kill a third of the nodes; full buckets now evict them when pinged.
        gone = nodes[1::3]
        net.partition(
            [n.address.host for n in nodes if n not in gone], [n.address.host for n in gone]
        )
        await trio.sleep(600)
        stats = sum((n.dht.routing.stats for n in nodes), Counter())
        assert stats["evicted"] + stats["stale"] > 0


async def test_bootstrap_retries_until_a_node_appears(autojump_clock) -> None:
    async with open_memory_network(seed=4) as net:
        later_host = net.new_host()
        settings = replace(FAST, bootstrap=(Address(later_host, FAST.listen.port),))
        early = Node(
            seeded_identity(1),
            settings,
            net.transport(net.new_host()),
            wall_clock=trio.current_time,
        )
        late = Node(
            seeded_identity(2), FAST, net.transport(later_host), wall_clock=trio.current_time
        )
        async with trio.open_nursery() as nursery:
            await nursery.start(early.run)
            await trio.sleep(20)
            assert not early.dht.joined.is_set()
            await nursery.start(late.run)
            with trio.fail_after(120):
                await early.dht.joined.wait()
            assert late.node_id in early.dht.routing
            early.stop()
            late.stop()


@pytest.fixture
def inline_storage(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run a file-backed database's calls on the trio thread instead of a worker thread.

    Under the autojump MockClock every task waiting for a worker thread counts as blocked, so
    virtual time would jump from deadline to deadline (request timeouts, the test's own
    fail_after) for as long as a SQLite call runs. Run inline, a call takes no virtual time,
    as the in-memory databases of the other simulations do; the data still goes through
    SQLite to the file and back, which is what these tests are about.
    """

    async def run_inline(fn: Callable[..., Any], *args: Any, **_: Any) -> Any:
        await trio.lowlevel.checkpoint()
        return fn(*args)

    monkeypatch.setattr(trio.to_thread, "run_sync", run_inline)


async def test_a_restarted_node_rejoins_through_persisted_contacts(
    tmp_path, autojump_clock, inline_storage
) -> None:
    async with open_memory_network(seed=5) as net:
        hosts = [net.new_host() for _ in range(3)]
        first, other, restarted = (seeded_identity(i) for i in range(3))
        first_address = Address(hosts[0], FAST.listen.port)
        joining = replace(FAST, bootstrap=(first_address,))

        def make(identity, host, settings, data_dir=None) -> Node:
            return Node(
                identity,
                settings,
                net.transport(host),
                data_dir=data_dir,
                wall_clock=trio.current_time,
            )

        data_dir = tmp_path / "node"
        data_dir.mkdir(mode=0o700)
        async with trio.open_nursery() as nursery:
            a = make(first, hosts[0], FAST)
            b = make(other, hosts[1], joining)
            c = make(restarted, hosts[2], joining, data_dir)
            for node in (a, b, c):
                await nursery.start(node.run)
                await node.dht.joined.wait()
            assert len(c.dht.peers()) == 2
            c.stop()
            a.stop()  # the only bootstrap node is gone
            await trio.sleep(1)  # virtual: both have shut down and c's contacts are saved
            again = make(restarted, hosts[2], joining, data_dir)
            await nursery.start(again.run)
            with trio.fail_after(60):
                await again.dht.joined.wait()
            # It joined through what it saved before it stopped: a (gone now) and b.
            assert {c.node_id for c in again.dht.remembered} == {first.node_id, other.node_id}
            contact = await again.dht.resolve(other.node_id)
            assert contact is not None
            assert contact.address.host == hosts[1]
            again.stop()
            b.stop()


async def test_liars_and_malformed_replies_do_not_break_lookups(autojump_clock) -> None:
    async with open_memory_network(seed=6, latency=0.003) as net, dht_network(net, 50) as nodes:
        rng = random.Random(6)
        liars = rng.sample(nodes[1:], 10)
        honest = [n for n in nodes if n not in liars]

        def lie(liar: Node):
            async def handler(inbound: Inbound) -> Message:
                assert isinstance(inbound.message, FindNode)
                # Themselves and their friends, the querier itself, junk IPs and bad lengths.
                friends = [n for n in liars if n is not liar][:15]
                contacts = [
                    WireContact.from_contact(Contact(n.node_id, n.address)) for n in friends
                ]
                contacts.append(WireContact(inbound.sender.raw, b"\x0a\x00\x00\x01", 7420))
                contacts.append(WireContact(bytes(32), b"\x00\x00\x00\x00", 1))
                contacts.append(WireContact(bytes(range(32)), b"\x01\x02\x03\x04\x05", 9))
                return Nodes(tuple(contacts))

            return handler

        for liar in liars:
            liar.datagrams.on(FindNode, lie(liar))
        for _ in range(40):
            a, b = rng.sample(honest, 2)
            result = await a.dht.find_node(b.node_id)
            assert result.found_target
        invented = NodeId(bytes(range(32)))
        for node in honest:
            # Hearsay never enters a table: the invented node and the zero ID never answered.
            assert invented not in node.dht.routing
            assert NodeId(bytes(32)) not in node.dht.routing
            assert node.node_id not in node.dht.routing


async def test_records_are_stored_on_the_closest_nodes_and_found(autojump_clock) -> None:
    async with open_memory_network(seed=7, latency=0.003) as net, dht_network(net, 40) as nodes:
        rng = random.Random(7)
        publisher, reader = rng.sample(nodes, 2)
        now = trio.current_time()
        assert publisher.address is not None
        # (The node has published its own peer record already: take sequence numbers above.)
        seq = publisher.dht.next_seq()
        record = make_peer_record(publisher.identity, [publisher.address], seq, now, ttl=3600)
        accepted = await publisher.dht.put(record)
        assert accepted >= FAST.dht.k // 2
        found = await reader.dht.get(PEER, publisher.node_id.raw)
        assert record in found
        assert peer_addresses(found[0]) == [publisher.address]
        # A newer version replaces it everywhere it is asked for.
        newer_record = make_peer_record(
            publisher.identity, [publisher.address], seq + 1, now, ttl=3600
        )
        await publisher.dht.put(newer_record)
        assert (await reader.dht.get(PEER, publisher.node_id.raw))[0].seq == seq + 1
        # Provider records: many publishers under one content key.
        key = bytes(range(32))
        for provider in nodes[:3]:
            signed = sign_record(
                provider.identity, PROVIDER, key, seq=1, expires_at=int(now) + 600, value=b""
            )
            await provider.dht.put(signed)
        providers = await reader.dht.get(PROVIDER, key)
        # The lookup stops at the first node holding any; each provider's record is there.
        assert providers
        assert {r.publisher_id for r in providers} <= {n.node_id for n in nodes[:3]}


async def test_invalid_records_are_refused_and_counted(autojump_clock) -> None:
    async with open_memory_network(seed=8) as net, dht_network(net, 12) as nodes:
        mallory, victim = nodes[1], nodes[2]
        assert victim.address is not None
        await trio.sleep(10_000)  # the mock clock starts near 0; records need a past
        now = trio.current_time()
        good = make_peer_record(mallory.identity, [Address("10.9.9.9", 1)], 1, now, ttl=600)
        forged = replace(good, seq=99)  # signature no longer matches
        expired = make_peer_record(
            mallory.identity, [Address("10.9.9.9", 1)], 2, now - 7200, ttl=600
        )
        future = replace(good, expires_at=int(now) + 10 * 86_400)
        held = victim.dht.records.all_records()  # the nodes' own peer records
        for bad in (forged, expired, future):
            with pytest.raises(RemoteProtocolError):
                await mallory.datagrams.request(victim.address, Store(bad), node_id=victim.node_id)
        assert victim.dht.invalid_from[mallory.node_id] == 3
        assert victim.dht.records.all_records() == held
        with pytest.raises(InvalidRecord):
            await mallory.dht.put(forged)
        # A node that answers FIND_VALUE with a forged record is not believed.
        liar_record = forged

        async def lie(inbound: Inbound) -> Message:
            return Value((liar_record,), ())

        for node in nodes:
            if node is not victim:
                node.datagrams.on(FindValue, lie)
        found = await victim.dht.get(PEER, mallory.node_id.raw)
        assert forged not in found
        assert all(r in held for r in found)  # only mallory's genuine record, held already
        assert sum(victim.dht.invalid_from.values()) > 3


async def test_a_contact_whose_id_does_not_match_the_key_at_its_address(autojump_clock) -> None:
    """A liar names an invented ID at an honest node's address: the request to it is tagged for
    the invented ID, so the honest node drops it as misaddressed and nothing answers for that
    ID; the lookup fails for it, and the invented ID never enters any table."""
    async with open_memory_network(seed=13, latency=0.003) as net, dht_network(net, 12) as nodes:
        liar, honest, asker = nodes[1], nodes[2], nodes[3]
        assert honest.address is not None
        invented = NodeId(bytes(reversed(honest.node_id.raw)))

        async def lie(inbound: Inbound) -> Message:
            return Nodes((WireContact.from_contact(Contact(invented, honest.address)),))

        liar.datagrams.on(FindNode, lie)
        misaddressed = honest.datagrams.stats["drop_misaddressed"]
        result = await asker.dht.find_node(invented)
        assert not result.found_target
        assert honest.datagrams.stats["drop_misaddressed"] > misaddressed
        for node in nodes:
            assert invented not in node.dht.routing
        # The honest node itself is still known and reachable under its real ID.
        assert (await asker.dht.locate(honest.node_id)).found_target
