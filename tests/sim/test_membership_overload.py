"""Overload on the in-memory network: members sharing one saturated CPU core (their timers
wake late and replies queue up) slow down instead of flooding, and declare nobody dead for
their own slowness (Lifeguard's local health, with event-loop lag counted as ill health)."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from plexinode.membership.members import State
from plexinode.testing.member_cluster import Cluster, member_cluster
from plexinode.testing.network import open_memory_network
from plexinode.testing.transport_hooks import SharedCore, share_core

NODES = 16
#: The share of the core the calm traffic would use once each datagram costs core time.
LOAD = 0.9


def sent(cluster: Cluster) -> int:
    return sum(n.datagrams.stats["sent"] for n in cluster.nodes)


def declared_dead(cluster: Cluster) -> int:
    return sum(n.membership.stats["declared_dead"] for n in cluster.nodes)


@pytest.mark.parametrize("seed", range(3))
async def test_members_on_a_saturated_core_send_less_and_declare_nobody_dead(
    autojump_clock: trio.testing.MockClock, seed: int
) -> None:
    core = SharedCore(autojump_clock, cost=0.0)
    async with (
        open_memory_network(seed=seed, latency=0.002) as net,
        member_cluster(net, NODES, seed=seed, wrap=lambda _, t: share_core(t, core)) as cluster,
    ):
        before = sent(cluster)
        await trio.sleep(30)
        calm = (sent(cluster) - before) / 30
        # Each datagram, sent or received, now costs core time: the calm traffic alone
        # would keep the core LOAD busy (before local health counted the loop's lag, the
        # traffic grew instead, the core saturated, and members declared each other dead).
        core.cost = LOAD / (2 * calm)
        before, started = sent(cluster), trio.current_time()
        await trio.sleep(60)
        loaded = (sent(cluster) - before) / (trio.current_time() - started)
        core.cost = 0.0
        assert declared_dead(cluster) == 0
        assert loaded <= calm
        assert max(n.membership.prober.awareness for n in cluster.nodes) > 0
        # Once the load is gone, health recovers and every view is all alive.
        await trio.sleep(60)
        assert all(a.state_of(b) is State.ALIVE for a in cluster.nodes for b in cluster.nodes)
