"""The datagram layer's limits on the in-memory network: replay state across restarts, and
replies to unvalidated source addresses (at most three times what arrived from them)."""

from __future__ import annotations

import trio

from plexinode.dht.messages import FindNode, FindValue, Nodes, Store, Value
from plexinode.dht.record_types import PEER, PROVIDER
from plexinode.dht.records import sign_record
from plexinode.membership.messages import MemberGossip, MemberPing, MemberPingReq
from plexinode.net.address import Address
from plexinode.net.datagram import DatagramService
from plexinode.net.settings import DatagramSettings
from plexinode.net.validation import AMPLIFICATION_FACTOR
from plexinode.node import Node
from plexinode.testing.amplification import measure_reflection
from plexinode.testing.network import open_memory_network
from plexinode.testing.nodes import FAST, dht_network, seeded_identity
from plexinode.wire.messages import Ping, Pong, StreamOpen
from plexinode.wire.schema import Message

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


async def test_no_request_draws_more_than_three_times_its_size_toward_an_unvalidated_source(
    autojump_clock,
) -> None:
    async with (
        open_memory_network(seed=9, latency=0.01) as net,
        dht_network(net, 30, membership=True, refreshed=True) as nodes,
    ):
        victim = nodes[0]
        assert victim.address is not None
        now = int(trio.current_time())
        # Records under the victim's own ID: a find-value for them answers with records.
        key = victim.node_id.raw
        for i in range(8):
            publisher = seeded_identity(700 + i, seed=9)
            record = sign_record(publisher, PROVIDER, key, seq=1, expires_at=now + 600, value=b"")
            victim.dht.records.put(record, now)
        spoofer = seeded_identity(900, seed=9)
        member = nodes[1]
        assert member.address is not None
        ip = bytes(int(part) for part in member.address.host.split("."))
        requests: list[Message] = [
            Ping(),
            FindNode(nodes[5].node_id.raw),
            FindValue(PROVIDER, key),
            FindValue(PEER, nodes[5].node_id.raw),
            Store(sign_record(spoofer, PROVIDER, key, seq=1, expires_at=now + 600, value=b"x")),
            MemberPing(()),
            MemberPingReq(member.node_id.raw, ip, member.address.port, ()),
            MemberGossip(()),
            StreamOpen("echo/1"),  # not a datagram request: answered UNSUPPORTED
        ]
        served = {type(m) for m in requests}
        assert set(victim.datagrams._handlers) <= served  # every type the node serves
        results = await measure_reflection(net, victim, requests, seed=9)
        for result in results:
            assert result.bytes_in > 0
            assert result.bytes_out <= AMPLIFICATION_FACTOR * result.bytes_in, result
        by_name = {r.name: r for r in results}
        assert by_name["find-node"].bytes_out > 0  # shortened, not dropped
        assert victim.datagrams.stats["drop_reply_over_budget"] == 0


async def test_an_honest_first_contact_pads_its_request_and_gets_a_full_answer(
    autojump_clock,
) -> None:
    async with (
        open_memory_network(seed=10, latency=0.01) as net,
        dht_network(net, 30, refreshed=True) as nodes,
    ):
        victim = nodes[0]
        assert victim.address is not None
        endpoint = await net.transport(net.new_host()).bind(Address("0.0.0.0", 7420))
        newcomer = DatagramService(seeded_identity(901, seed=10), endpoint.datagrams, SETTINGS)
        async with trio.open_nursery() as nursery:
            await nursery.start(newcomer.run)
            first = await newcomer.request(victim.address, FindNode(nodes[7].node_id.raw))
            assert isinstance(first.message, Nodes)
            assert len(first.message.contacts) == FAST.dht.k
            assert newcomer.stats["requests_padded"] == 1
            # The victim pinged the newcomer back (it answered: both are validated now), so
            # later requests go unpadded and are still answered in full.
            await trio.sleep(5)
            again = await newcomer.request(victim.address, FindNode(nodes[9].node_id.raw))
            assert isinstance(again.message, Nodes)
            assert len(again.message.contacts) == FAST.dht.k
            assert newcomer.stats["requests_padded"] == 1
            value = await newcomer.request(
                victim.address, FindValue(PEER, victim.node_id.raw), node_id=victim.node_id
            )
            assert isinstance(value.message, Value)
            assert value.message.records
            nursery.cancel_scope.cancel()


SETTINGS = DatagramSettings(request_timeout=0.5, retries=2)
