"""DHT lookups in seeded simulations of real nodes on the in-memory network.

    python scripts/bench/bench_dht.py [--nodes 1000] [--lookups 200] [--seeds 3]
                                      [--scenario all|a|b|c|latency] [--growth 250,1000]

Starts --nodes real ``Node``s on one in-memory network under trio's MockClock, each
bootstrapping from the first, and runs --lookups ``find_node`` lookups, one after another,
between random pairs of honest, reachable nodes. Scenarios (issue 3, "Measure"):

(a) a healthy network;
(b) 30% of the nodes gone without notice (partitioned away after the network formed);
(c) 20% colluding adversaries, which answer every FIND_NODE only with each other (the k closest
    to the target first), while 20% of the honest nodes are gone; run with d = 4 paths and
    again with d = 1 on the same seed, so the gain of disjoint paths is visible;
latency: a healthy network with 50 ms links and 2% loss, for lookup latency in simulated time.

Scenarios (a)-(c) use 5 ms links without loss. Each figure is printed beside its target from
the issue. The seed of each run is printed; ``--seeds 1 --first-seed S`` replays one run.
"Queries" are the FIND_NODE requests the lookup handed to its driver (``stats.queries``);
"datagrams" are all datagrams the whole network sent while the lookup ran (requests, replies,
retransmissions and any background traffic), as an upper bound on messages per lookup.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import trio
import trio.testing

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from common import header, percentile

from plexinode.dht.contact import Contact
from plexinode.dht.messages import FindNode, Nodes, WireContact
from plexinode.net.datagram import Inbound
from plexinode.net.memory import open_memory_network
from plexinode.node import Node
from plexinode.wire.schema import Message
from tests.sim.helpers import FAST, dht_network

#: One-way link latency of scenarios (a)-(c): small, so simulated time still moves.
BASE_LATENCY = 0.005


def collude(liar: Node, liars: list[Node], k: int):
    """A FIND_NODE handler that answers only with the k liars closest to the target."""
    ranked = [(n.node_id, n.address) for n in liars]

    async def handler(inbound: Inbound) -> Message:
        assert isinstance(inbound.message, FindNode)
        target = int.from_bytes(inbound.message.target, "big")
        closest = sorted(ranked, key=lambda c: int.from_bytes(c[0].raw, "big") ^ target)[:k]
        return Nodes(tuple(WireContact.from_contact(Contact(i, a)) for i, a in closest))

    return handler


@dataclass
class Outcome:
    """The lookups of one run."""

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
    setup_wall: float = 0.0
    lookup_wall: float = 0.0


async def run_scenario(scenario: str, count: int, lookups: int, seed: int, paths: int) -> Outcome:
    """Form one network for `scenario` with d = `paths` and run the lookups on it.

    Each run forms its own network: lookups teach routing tables (the target that replied
    enters the querier's table), so a second run on the same network would be flattered.
    The same seed gives the same identities, the same liars, the same gone nodes and the
    same pairs.
    """
    settings = replace(FAST, dht=replace(FAST.dht, paths=paths))
    latency, loss = (0.05, 0.02) if scenario == "latency" else (BASE_LATENCY, 0.0)
    rng = random.Random(seed)
    started = time.perf_counter()
    async with (
        open_memory_network(seed=seed, latency=latency, loss=loss) as net,
        dht_network(net, count, settings, seed=seed) as nodes,
    ):
        setup_wall = time.perf_counter() - started
        liars: list[Node] = []
        gone: list[Node] = []
        others = nodes[1:]
        if scenario == "b":
            gone = rng.sample(others, round(0.3 * count))
        elif scenario == "c":
            liars = rng.sample(others, round(0.2 * count))
            liar_set = set(map(id, liars))
            honest = [n for n in others if id(n) not in liar_set]
            gone = rng.sample(honest, round(0.2 * (count - len(liars))))
        if gone:
            gone_set = set(map(id, gone))
            net.partition(
                [n.address.host for n in nodes if id(n) not in gone_set],
                [n.address.host for n in gone],
            )
        for liar in liars:
            liar.datagrams.on(FindNode, collude(liar, liars, FAST.dht.k))
        bad = set(map(id, liars + gone))
        usable = [n for n in nodes if id(n) not in bad]
        pairs = [tuple(rng.sample(usable, 2)) for _ in range(lookups)]
        out = Outcome(scenario, seed, count, paths, setup_wall=setup_wall)
        t0 = time.perf_counter()
        for a, b in pairs:
            sent = net.stats.sent
            result = await a.dht.find_node(b.node_id)
            out.lookups += 1
            out.found += result.found_target
            if result.stats.target_hops is not None:
                out.hops.append(result.stats.target_hops)
            out.queries.append(result.stats.queries)
            out.datagrams.append(net.stats.sent - sent)
            out.latency.append(result.stats.duration)
            out.budget_exhausted += result.stats.budget_exhausted
        out.lookup_wall = time.perf_counter() - t0
    return out


def fmt(values: list[float], scale: float = 1.0, digits: int = 0) -> str:
    if not values:
        return "n/a"
    med = statistics.median(values) * scale
    p99 = percentile(values, 99) * scale
    return f"{med:.{digits}f} / {p99:.{digits}f}"


def check(ok: bool) -> str:
    return "ok" if ok else "MISSED"


SUCCESS_TARGET = {"a": 1.0, "b": 0.99, "c": 0.99, "latency": None}


def report(out: Outcome) -> None:
    rate = out.found / out.lookups
    target = SUCCESS_TARGET[out.label]
    if out.label == "c" and out.paths != 4:
        target = None  # the d = 1 run is the comparison, not a target
    tgt = "" if target is None else f"  target >= {target:.0%}: {check(rate >= target)}"
    print(
        f"[{out.label}] seed={out.seed} N={out.nodes} d={out.paths}: "
        f"success {out.found}/{out.lookups} = {rate:.1%}{tgt}"
    )
    hops_ok = bool(out.hops) and statistics.median(out.hops) <= 4 and percentile(out.hops, 99) <= 8
    print(
        f"    hops (target_hops) median/p99: {fmt(out.hops)}  target <= 4 / <= 8: {check(hops_ok)}"
    )
    q_ok = percentile(out.queries, 99) <= 150 if out.paths == 4 else True
    print(
        f"    queries/lookup median/p99: {fmt(out.queries)}  target <= 150 at d=4: "
        f"{check(q_ok) if out.paths == 4 else 'n/a'}"
    )
    print(f"    datagrams sent network-wide per lookup median/p99: {fmt(out.datagrams)}")
    lat = f"    latency (simulated) median/p99 ms: {fmt(out.latency, 1000)}"
    if out.label == "latency":
        lat_ok = statistics.median(out.latency) < 0.3 and percentile(out.latency, 99) < 1.0
        lat += f"  target < 300 / < 1000: {check(lat_ok)}"
    print(lat)
    print(
        f"    lookups that exhausted a path's budget: {out.budget_exhausted}; "
        f"wall: network formed in {out.setup_wall:.1f} s, lookups took {out.lookup_wall:.1f} s"
    )
    sys.stdout.flush()


def summary(outs: list[Outcome]) -> None:
    found = sum(o.found for o in outs)
    total = sum(o.lookups for o in outs)
    hops = [h for o in outs for h in o.hops]
    queries = [q for o in outs for q in o.queries]
    lat = [x for o in outs for x in o.latency]
    o = outs[0]
    print(
        f"== [{o.label}] N={o.nodes} d={o.paths} over {len(outs)} seeds: success "
        f"{found}/{total} = {found / total:.2%}; hops median/p99 {fmt(hops)}; queries "
        f"median/p99 {fmt(queries)}; latency median/p99 ms {fmt(lat, 1000)}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--lookups", type=int, default=200)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=1)
    parser.add_argument("--scenario", choices=["all", "a", "b", "c", "latency"], default="all")
    parser.add_argument(
        "--growth", default="", help="comma-separated N for healthy-network hops, e.g. 250,1000"
    )
    args = parser.parse_args()
    header("DHT lookups in simulation")
    print(f"# {' '.join(sys.argv)}")
    clock = dict(clock=trio.testing.MockClock(autojump_threshold=0))
    scenarios = ["a", "b", "c", "latency"] if args.scenario == "all" else [args.scenario]
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    begun = time.perf_counter()
    for scenario in scenarios:
        paths_list = (4, 1) if scenario == "c" else (FAST.dht.paths,)
        by_paths: dict[int, list[Outcome]] = {p: [] for p in paths_list}
        for seed in seeds:
            for paths in paths_list:
                out = trio.run(
                    run_scenario, scenario, args.nodes, args.lookups, seed, paths, **clock
                )
                report(out)
                by_paths[paths].append(out)
        for outs in by_paths.values():
            summary(outs)
    for n in [int(x) for x in args.growth.split(",") if x]:
        outs = [
            trio.run(run_scenario, "a", n, args.lookups, seed, FAST.dht.paths, **clock)
            for seed in seeds
        ]
        for out in outs:
            report(out)
        summary(outs)
    print(f"# total wall time {time.perf_counter() - begun:.1f} s")


if __name__ == "__main__":
    main()
