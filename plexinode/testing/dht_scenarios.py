"""The lookup scenarios of the DHT issue, on one formed network, for the tests and the bench.

(a) a healthy network; (b) 30% of the nodes gone without notice (partitioned away); (c) 20% of
the nodes colluding (they answer every FIND_NODE only with each other, the k closest to the
target first, as in the S/Kademlia evaluation) while 20% of the honest nodes are gone, with
d = 4 disjoint paths and, on the same tables, d = 1.

Forming a network is the expensive part of a simulation, so every scenario runs on the same
one: the routing tables are snapshotted once formed and restored before each scenario (lookups
teach tables, and failures mark contacts stale, so a scenario would otherwise see the
leftovers of the one before). Pairs, gone nodes and liars come from a generator seeded with the
run's seed, so a run replays from its seed (up to trio's own scheduling order).
"""

from __future__ import annotations

import random
import statistics
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from plexinode.dht.contact import Contact
from plexinode.dht.messages import FindNode, Nodes, WireContact
from plexinode.dht.routing import RoutingTable
from plexinode.net.datagram import Inbound
from plexinode.node import Node
from plexinode.testing.network import MemoryNetwork
from plexinode.wire.schema import Message

GONE_FRACTION_B = 0.3
LIAR_FRACTION_C = 0.2
GONE_FRACTION_C = 0.2


def collude(liars: list[Node], k: int) -> Callable[[Inbound], Awaitable[Message]]:
    """A FIND_NODE handler that answers only with the k liars closest to the target."""
    ranked = [(n.node_id, n.address) for n in liars]

    async def handler(inbound: Inbound) -> Message:
        assert isinstance(inbound.message, FindNode)
        target = int.from_bytes(inbound.message.target, "big")
        closest = sorted(ranked, key=lambda c: int.from_bytes(c[0].raw, "big") ^ target)[:k]
        return Nodes(
            tuple(WireContact.from_contact(Contact(i, a)) for i, a in closest if a is not None)
        )

    return handler


def _nearest_rank(values: list[float], q: int) -> float:
    ordered = sorted(values)
    return ordered[max(0, -(-len(ordered) * q // 100) - 1)] if ordered else float("nan")


@dataclass
class Outcome:
    """The lookups of one scenario."""

    label: str
    seed: int
    nodes: int
    paths: int
    found: int = 0
    lookups: int = 0
    hops: list[int] = field(default_factory=list)
    queries: list[int] = field(default_factory=list)
    datagrams: list[int] = field(default_factory=list)
    latency: list[float] = field(default_factory=list)
    budget_exhausted: int = 0

    @property
    def success(self) -> float:
        return self.found / self.lookups if self.lookups else 0.0

    def median_hops(self) -> float:
        return statistics.median(self.hops) if self.hops else float("nan")

    def p99(self, values: list[float]) -> float:
        return _nearest_rank(values, 99)

    def line(self) -> str:
        """One line for logs and reports."""
        lat = [x * 1000 for x in self.latency]
        hops = [float(h) for h in self.hops]
        queries = [float(q) for q in self.queries]
        return (
            f"[{self.label}] seed={self.seed} N={self.nodes} d={self.paths}: success "
            f"{self.found}/{self.lookups}; hops median/p99 {self.median_hops():.0f}/"
            f"{self.p99(hops):.0f}; queries median/p99 {statistics.median(queries):.0f}/"
            f"{self.p99(queries):.0f}; latency median/p99 {statistics.median(lat):.0f}/"
            f"{self.p99(lat):.0f} ms"
        )


class Scenarios:
    """Runs the scenarios on `nodes`, all of them joined to one network on `net`."""

    def __init__(self, net: MemoryNetwork, nodes: list[Node], seed: int, k: int) -> None:
        self.net = net
        self.nodes = nodes
        self.seed = seed
        self.k = k
        self._tables: list[RoutingTable] = [n.dht.routing.copy() for n in nodes]

    def restore(self) -> None:
        """Put back every node's routing table as it was when the network had formed."""
        for node, table in zip(self.nodes, self._tables, strict=True):
            node.dht.routing = table.copy()

    async def lookups(
        self, label: str, usable: list[Node], count: int, paths: int, rng: random.Random
    ) -> Outcome:
        """`count` lookups of a node ID (``DhtService.locate``: directly if the querier knows
        the target, else one path, then `paths` disjoint paths), one after another, between
        random pairs of `usable` nodes."""
        out = Outcome(label, self.seed, len(self.nodes), paths)
        for _ in range(count):
            a, b = rng.sample(usable, 2)
            sent = self.net.stats.sent
            result = await a.dht.locate(b.node_id, paths=paths)
            out.lookups += 1
            out.found += result.found_target
            if result.stats.target_hops is not None:
                out.hops.append(result.stats.target_hops)
            out.queries.append(result.stats.queries)
            out.datagrams.append(self.net.stats.sent - sent)
            out.latency.append(result.stats.duration)
            out.budget_exhausted += result.stats.budget_exhausted
        return out

    def _cut_off(self, gone: list[Node]) -> None:
        gone_ids = set(map(id, gone))
        self.net.partition(
            [n.address.host for n in self.nodes if id(n) not in gone_ids and n.address],
            [n.address.host for n in gone if n.address],
        )

    async def healthy(self, count: int, paths: int = 4) -> Outcome:
        """(a): every node reachable and honest."""
        self.restore()
        rng = random.Random(self.seed * 1000 + 1)
        return await self.lookups("a", self.nodes, count, paths, rng)

    async def churn(self, count: int, paths: int = 4) -> Outcome:
        """(b): 30% of the nodes (never the first) gone without notice."""
        self.restore()
        rng = random.Random(self.seed * 1000 + 2)
        others = self.nodes[1:]
        gone = rng.sample(others, round(GONE_FRACTION_B * len(self.nodes)))
        self._cut_off(gone)
        try:
            gone_ids = set(map(id, gone))
            usable = [n for n in self.nodes if id(n) not in gone_ids]
            return await self.lookups("b", usable, count, paths, rng)
        finally:
            self.net.heal()

    async def collusion(self, count: int, paths_list: tuple[int, ...] = (4, 1)) -> list[Outcome]:
        """(c): 20% liars and 20% of the honest nodes gone; one run per entry of `paths_list`,
        each from the same tables and with the same pairs."""
        setup = random.Random(self.seed * 1000 + 3)
        others = self.nodes[1:]
        liars = setup.sample(others, round(LIAR_FRACTION_C * len(self.nodes)))
        liar_ids = set(map(id, liars))
        honest = [n for n in others if id(n) not in liar_ids]
        gone = setup.sample(honest, round(GONE_FRACTION_C * (len(self.nodes) - len(liars))))
        bad = liar_ids | set(map(id, gone))
        usable = [n for n in self.nodes if id(n) not in bad]
        originals = [liar.datagrams.handler(FindNode) for liar in liars]
        lying = collude(liars, self.k)
        outcomes = []
        try:
            for liar in liars:
                liar.datagrams.on(FindNode, lying)
            self._cut_off(gone)
            for paths in paths_list:
                self.restore()
                rng = random.Random(self.seed * 1000 + 4)  # the same pairs for every d
                outcomes.append(await self.lookups("c", usable, count, paths, rng))
        finally:
            self.net.heal()
            for liar, original in zip(liars, originals, strict=True):
                if original is not None:
                    liar.datagrams.on(FindNode, original)
        return outcomes
