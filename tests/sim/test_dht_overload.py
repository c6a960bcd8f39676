"""Overload on the in-memory network: full nodes (DHT and membership) sharing one saturated
core. The DHT pings back requesters missing from its routing table; membership pings reach it
too. A requester is pinged back once, not at each of its requests: neither the ones in a full
bucket's replacement cache (not entries, so every request of theirs drew a ping-back), nor
pairs of nodes pinging each other back (a ping-back is a request), nor requesters whose
ping-back timed out because the core was busy (see plexinode.dht.verification)."""

from __future__ import annotations

import collections
import dataclasses

import pytest
import trio
import trio.testing

from plexinode.dht.settings import DhtSettings
from plexinode.identity import NodeId
from plexinode.net.datagram import Inbound
from plexinode.node import Node
from plexinode.testing.network import open_memory_network
from plexinode.testing.nodes import FAST, dht_network
from plexinode.testing.transport_hooks import SharedCore, share_core
from plexinode.wire.messages import Ping

NODES = 24
#: k = 4: with 24 nodes the far buckets are full and have replacement caches, as the far
#: buckets of a network of more than about 2k nodes do at the default k.
SETTINGS = dataclasses.replace(FAST, dht=DhtSettings(k=4, id_difficulty=0))
#: The share of the core the calm traffic would use once each datagram costs core time.
LOAD = 0.9


def sent(nodes: list[Node]) -> int:
    return sum(n.datagrams.stats["sent"] for n in nodes)


def count_pings(nodes: list[Node]) -> collections.Counter[tuple[NodeId, NodeId]]:
    """Pings received, per (receiver, sender): the DHT's ping-backs (and its rare liveness
    pings and full-bucket checks)."""
    pings: collections.Counter[tuple[NodeId, NodeId]] = collections.Counter()
    for node in nodes:

        def observe(inbound: Inbound, receiver: NodeId = node.node_id) -> None:
            if isinstance(inbound.message, Ping):
                pings[receiver, inbound.sender] += 1

        node.datagrams.observe(requests=observe)
    return pings


@pytest.mark.parametrize("seed", range(3))
async def test_nodes_on_a_saturated_core_ping_each_requester_back_a_bounded_number_of_times(
    autojump_clock: trio.testing.MockClock, seed: int
) -> None:
    core = SharedCore(autojump_clock, cost=0.0)
    async with (
        open_memory_network(seed=seed, latency=0.002) as net,
        dht_network(
            net,
            NODES,
            SETTINGS,
            seed=seed,
            wrap=lambda t: share_core(t, core),
            membership=True,
        ) as nodes,
    ):
        pings = count_pings(nodes)
        await trio.sleep(30)  # membership joins; the first ping-backs go out
        before = sent(nodes)
        await trio.sleep(30)
        calm = (sent(nodes) - before) / 30
        core.cost = LOAD / (2 * calm)
        pings.clear()
        started = trio.current_time()
        await trio.sleep(60)
        seconds = trio.current_time() - started
        core.cost = 0.0
        # Each requester is pinged back at most twice a minute, two attempts each (a failed
        # check is tried again after 30 s, then 60 s; an answered one not for 15 min), and a
        # full bucket pings none of its entries heard from lately. Before, the busiest pair
        # exchanged 28 pings in the minute, and each node received 1.5 pings a second.
        assert max(pings.values(), default=0) <= 6
        assert sum(pings.values()) / NODES / seconds < 0.25
        answered = sum(n.dht.records_summary()["ping_backs"].get("answered", 0) for n in nodes)
        assert answered > 0
