"""A CI-size simulation whose whole outcome is printed, to check that it replays from its seed.

A simulation must depend on its seed and on nothing else: not on the order in which Python
iterates a set (which follows ``PYTHONHASHSEED``), not on the wall clock, not on the order trio
happens to run tasks in. :func:`outcome` runs full nodes (datagrams, streams, DHT, membership)
on a lossy in-memory network under a MockClock: they join, one leaves and one is cut off, the
rest find each other through the DHT, and at the end every node's member view, lookup results
and counters are gathered, JSON-ready. ``tests/sim/test_replay.py`` runs it in two processes
under two different ``PYTHONHASHSEED`` values and compares the two outcomes;
``scripts/bench/replay_check.py`` does the same for the slowest benchmark scenario.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import trio
import trio.testing

from plexinode.membership.settings import MembershipSettings
from plexinode.node import Node
from plexinode.testing.network import open_memory_network
from plexinode.testing.nodes import FAST, dht_network

#: Nodes in the simulation: enough for several buckets, suspicion with confirmations and a
#: lookup of more than one hop, small enough for a few seconds of CPU.
NODES = 12
#: Simulated seconds of each phase.
SETTLE = 30.0
AFTER_FAILURES = 30.0
#: Counters left out of the outcome: the process ID and data dir are not the simulation's.
_NOT_OUTCOME = frozenset({"pid", "data_dir", "version"})


def _view(node: Node) -> list[list[Any]]:
    members = node.membership.members()
    return sorted(
        [str(m.node_id), node.membership.state_of(m).name, m.incarnation] for m in members
    )


async def _status(node: Node) -> dict[str, Any]:
    status = await node.status()
    return {key: value for key, value in status.items() if key not in _NOT_OUTCOME}


async def outcome(seed: int, nodes: int = NODES) -> dict[str, Any]:
    """Run the simulation of `seed` and return everything it ended with."""
    settings = replace(FAST, membership=MembershipSettings(push_pull_interval=10.0))
    result: dict[str, Any] = {"seed": seed, "nodes": nodes}
    async with (
        open_memory_network(seed, latency=0.005, jitter=0.002, loss=0.02) as net,
        dht_network(net, nodes, settings, seed=seed, membership=True) as running,
    ):
        await trio.sleep(SETTLE)
        result["views_joined"] = {str(n.node_id): _view(n) for n in running}
        stopped, crashed = running[-1], running[-2]
        await stopped.membership.leave()
        stopped.stop()
        # Cut off without a word, as a crash looks to the others (it keeps running alone).
        hosts = [n.address.host for n in running if n.address is not None]
        cut = crashed.address.host if crashed.address is not None else ""
        net.partition([cut], [h for h in hosts if h != cut])
        await trio.sleep(AFTER_FAILURES)
        live = running[:-2]
        result["views_alone"] = _view(crashed)
        lookups: dict[str, list[str]] = {}
        for target in running:
            found = await live[0].dht.find_node(target.node_id)
            lookups[str(target.node_id)] = [str(c.node_id) for c in found.closest]
        result["lookups"] = lookups
        result["views"] = {str(n.node_id): _view(n) for n in live}
        result["status"] = {str(n.node_id): await _status(n) for n in live}
        result["end_time"] = trio.current_time()
    return result


def run(seed: int, nodes: int = NODES) -> dict[str, Any]:
    """:func:`outcome` in a trio run of its own, on a MockClock that starts at zero."""
    clock = trio.testing.MockClock(autojump_threshold=0)
    return trio.run(outcome, seed, nodes, clock=clock)
