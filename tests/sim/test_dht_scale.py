"""The DHT issue's lookup targets at N = 1,000 (the benchmark runs N = 10,000): one network of
real nodes on the in-memory network under the mock clock, formed once, then (a) healthy, (b)
30% gone, (c) 20% colluding liars with 20% of the honest nodes gone, d = 4 against d = 1.

The seed is printed (and fixed, so that CI runs the same network every time); run
``scripts/bench/bench_dht.py`` for more seeds and larger networks.
"""

from __future__ import annotations

import os
import statistics
import time

import pytest
import trio

from plexinode.testing.dht_scenarios import Scenarios
from plexinode.testing.network import open_memory_network
from plexinode.testing.nodes import FAST, dht_network

NODES = int(os.environ.get("PLEXINODE_SCALE_NODES", "1000"))
SEED = int(os.environ.get("PLEXINODE_SCALE_SEED", "1"))
LOOKUPS = 100


@pytest.mark.long
async def test_lookup_targets_at_a_thousand_nodes(autojump_clock) -> None:
    started = time.perf_counter()
    async with (
        open_memory_network(seed=SEED, latency=0.005) as net,
        dht_network(net, NODES, FAST, seed=SEED, refreshed=True) as nodes,
    ):
        formed = time.perf_counter() - started
        print(f"\nseed {SEED}: {NODES} nodes formed in {formed:.0f} s (wall)")
        scenarios = Scenarios(net, nodes, SEED, FAST.dht.k)
        a = await scenarios.healthy(LOOKUPS)
        b = await scenarios.churn(LOOKUPS)
        c4, c1 = await scenarios.collusion(LOOKUPS)
        for outcome in (a, b, c4, c1):
            print(outcome.line())
        print(f"wall {time.perf_counter() - started:.0f} s")
        assert a.found == a.lookups
        assert b.found >= 0.99 * b.lookups
        assert c4.found >= 0.99 * c4.lookups
        assert c4.found >= c1.found  # the gain of disjoint paths (d = 1 is printed beside)
        assert statistics.median(a.hops) <= 4
        assert a.p99([float(h) for h in a.hops]) <= 8
        assert max(c4.queries) <= 150
        assert max(a.queries) <= 150


@pytest.mark.long
async def test_idle_maintenance_traffic_is_under_1_rpc_and_1_kb_per_second(autojump_clock) -> None:
    """An idle network's upkeep (liveness pings, bucket refreshes, republishing) over a
    simulated hour after it settled: at most 1 RPC/s and 1 KB/s sent per node."""
    count, settle, idle = 100, 1200.0, 3600.0
    async with (
        open_memory_network(seed=SEED, latency=0.005) as net,
        dht_network(net, count, FAST, seed=SEED) as nodes,
    ):
        await trio.sleep(settle)
        sent = sum(n.datagrams.stats["sent"] for n in nodes)
        sent_bytes = sum(n.datagrams.stats["sent_bytes"] for n in nodes)
        await trio.sleep(idle)
        sent = sum(n.datagrams.stats["sent"] for n in nodes) - sent
        sent_bytes = sum(n.datagrams.stats["sent_bytes"] for n in nodes) - sent_bytes
        rpcs = sent / 2 / count / idle  # each RPC is a request and a reply
        kbytes = sent_bytes / 1000 / count / idle
        print(f"\nidle N={count}: {rpcs:.3f} RPC/s, {kbytes:.3f} KB/s per node")
        assert 0 < rpcs <= 1.0
        assert kbytes <= 1.0
        # The upkeep happened: contacts were checked and records republished.
        assert sum(n.dht.record_stats["liveness_pings"] for n in nodes) > 0
        assert sum(n.dht.record_stats["published"] for n in nodes) >= 2 * count
