"""DHT lookups and maintenance traffic in seeded simulations of real nodes.

    python scripts/bench/bench_dht.py [--nodes 1000] [--lookups 200] [--seeds 3]
                                      [--first-seed 1] [--scenario all|abc|latency|idle]
                                      [--growth 1000,10000] [--idle 3600]

Starts --nodes real ``Node``s on one in-memory network under trio's MockClock, each
bootstrapping from the first, and measures what issue 3 asks for, each figure beside its target:

abc      on one network per seed (formed once; routing tables restored before each scenario,
         see plexinode/testing/dht_scenarios.py): (a) healthy, (b) 30% of the nodes gone without
         notice, (c) 20% colluding liars while 20% of the honest nodes are gone, with d = 4 and,
         on the same tables and pairs, d = 1. Links of 5 ms, no loss. --lookups lookups each,
         one after another, between random pairs of usable nodes.
latency  a healthy network with 50 ms links and 2% loss: lookup latency in simulated time.
idle     maintenance traffic: after the network settles (the joins' refreshes and first
         publications, 20 simulated minutes), every datagram all nodes send during --idle
         simulated seconds, per node per second (liveness pings, refreshes, republishing).
growth   healthy-network hops for each N in --growth, to show the logarithmic growth.

"Queries" are the FIND_NODE requests a lookup made (``stats.queries``); "datagrams" are all
datagrams the whole network sent while it ran (requests, replies, retransmissions and any
background traffic), an upper bound on messages per lookup. The seed of each run is printed;
``--seeds 1 --first-seed S`` replays one (up to trio's scheduling order).
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
from pathlib import Path

import trio
import trio.testing

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from common import header, percentile, rss_bytes

from plexinode.testing.dht_scenarios import Outcome, Scenarios
from plexinode.testing.network import open_memory_network
from plexinode.testing.nodes import FAST, dht_network

#: One-way link latency of scenarios (a)-(c): small, so simulated time still moves.
BASE_LATENCY = 0.005
#: Simulated time allowed for a formed network to settle before idle traffic is measured.
SETTLE = 1200.0


def check(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def fmt(values: list[float], scale: float = 1.0) -> str:
    if not values:
        return "n/a"
    return f"{statistics.median(values) * scale:.0f} / {percentile(values, 99) * scale:.0f}"


def report(out: Outcome, target: float | None) -> None:
    rate = out.success
    verdict = "" if target is None else f"  target >= {target:.0%}: {check(rate >= target)}"
    print(
        f"[{out.label}] seed={out.seed} N={out.nodes} d={out.paths}: "
        f"success {out.found}/{out.lookups} = {rate:.1%}{verdict}"
    )
    hops = [float(h) for h in out.hops]
    hops_ok = bool(hops) and statistics.median(hops) <= 4 and percentile(hops, 99) <= 8
    print(f"    hops median/p99: {fmt(hops)}  target <= 4 / <= 8: {check(hops_ok)}")
    queries = [float(q) for q in out.queries]
    q_note = f"target <= 150 at d=4: {check(max(queries) <= 150)}" if out.paths == 4 else ""
    print(f"    queries/lookup median/p99: {fmt(queries)} (max {max(queries):.0f})  {q_note}")
    print(
        f"    datagrams sent network-wide per lookup median/p99: "
        f"{fmt([float(d) for d in out.datagrams])}"
    )
    print(
        f"    latency (simulated) median/p99 ms: {fmt(out.latency, 1000)}; "
        f"lookups that exhausted a path's budget: {out.budget_exhausted}"
    )
    sys.stdout.flush()


def summary(outs: list[Outcome]) -> None:
    found = sum(o.found for o in outs)
    total = sum(o.lookups for o in outs)
    hops = [float(h) for o in outs for h in o.hops]
    queries = [float(q) for o in outs for q in o.queries]
    latency = [x for o in outs for x in o.latency]
    o = outs[0]
    print(
        f"== [{o.label}] N={o.nodes} d={o.paths} over {len(outs)} seeds: success "
        f"{found}/{total} = {found / total:.2%}; hops median/p99 {fmt(hops)}; queries "
        f"median/p99 {fmt(queries)}; latency median/p99 ms {fmt(latency, 1000)}"
    )
    sys.stdout.flush()


async def run_abc(count: int, lookups: int, seed: int) -> list[Outcome]:
    started = time.perf_counter()
    async with (
        open_memory_network(seed=seed, latency=BASE_LATENCY) as net,
        dht_network(net, count, FAST, seed=seed, refreshed=True) as nodes,
    ):
        print(
            f"# seed {seed}: {count} nodes formed in {time.perf_counter() - started:.0f} s, "
            f"{trio.current_time():.1f} simulated s; RSS {rss_bytes() / 2**20:,.0f} MiB "
            f"({rss_bytes() / count / 1024:,.0f} KiB per node)",
            flush=True,
        )
        scenarios = Scenarios(net, nodes, seed, FAST.dht.k)
        a = await scenarios.healthy(lookups)
        report(a, 1.0)
        b = await scenarios.churn(lookups)
        report(b, 0.99)
        c4, c1 = await scenarios.collusion(lookups)
        report(c4, 0.99)
        report(c1, None)
        print(f"# seed {seed}: wall {time.perf_counter() - started:.0f} s")
        return [a, b, c4, c1]


async def run_latency(count: int, lookups: int, seed: int) -> Outcome:
    async with (
        open_memory_network(seed=seed, latency=0.05, loss=0.02) as net,
        dht_network(net, count, FAST, seed=seed, refreshed=True) as nodes,
    ):
        out = await Scenarios(net, nodes, seed, FAST.dht.k).healthy(lookups)
        out.label = "latency"
        report(out, None)
        lat_ok = statistics.median(out.latency) < 0.3 and percentile(out.latency, 99) < 1.0
        print(f"    latency target median < 300 ms, p99 < 1000 ms: {check(lat_ok)}")
        return out


async def run_idle(count: int, seed: int, idle: float) -> tuple[float, float]:
    """Datagrams and bytes sent per node per second while the network is idle."""
    async with (
        open_memory_network(seed=seed, latency=BASE_LATENCY) as net,
        dht_network(net, count, FAST, seed=seed, refreshed=True) as nodes,
    ):
        await trio.sleep(SETTLE)
        sent = sum(n.datagrams.stats["sent"] for n in nodes)
        sent_bytes = sum(n.datagrams.stats["sent_bytes"] for n in nodes)
        began = time.perf_counter()
        await trio.sleep(idle)
        sent = sum(n.datagrams.stats["sent"] for n in nodes) - sent
        sent_bytes = sum(n.datagrams.stats["sent_bytes"] for n in nodes) - sent_bytes
        per_node = count * idle
        # Every RPC is a request and a reply: two datagrams, one sent by each end.
        rpcs, kbytes = sent / 2 / per_node, sent_bytes / 1000 / per_node
        print(
            f"[idle] seed={seed} N={count} over {idle:.0f} simulated s "
            f"(wall {time.perf_counter() - began:.0f} s): {rpcs:.3f} RPC/s and "
            f"{kbytes:.3f} KB/s sent per node  target <= 1 / <= 1: "
            f"{check(rpcs <= 1 and kbytes <= 1)}"
        )
        sys.stdout.flush()
        return rpcs, kbytes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--lookups", type=int, default=200)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=1)
    parser.add_argument(
        "--scenario", choices=["all", "abc", "latency", "idle", "none"], default="all"
    )
    parser.add_argument("--growth", default="", help="comma-separated N, e.g. 1000,10000")
    parser.add_argument("--idle", type=float, default=3600.0, help="simulated idle seconds")
    args = parser.parse_args()
    # Only errors: a flash crowd of joins makes every node log its bootstrap retries.
    logging.basicConfig(level=logging.ERROR)
    header("DHT lookups in simulation")
    print(f"# {' '.join(sys.argv)}")
    clock = dict(clock=trio.testing.MockClock(autojump_threshold=0))
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    begun = time.perf_counter()
    if args.scenario in ("all", "abc"):
        runs = [trio.run(run_abc, args.nodes, args.lookups, seed, **clock) for seed in seeds]
        for index in range(4):
            summary([run[index] for run in runs])
    if args.scenario in ("all", "latency"):
        summary([trio.run(run_latency, args.nodes, args.lookups, s, **clock) for s in seeds])
    if args.scenario in ("all", "idle"):
        trio.run(run_idle, args.nodes, args.first_seed, args.idle, **clock)
    for n in [int(x) for x in args.growth.split(",") if x]:
        outs = []
        for seed in seeds:

            async def healthy(n: int = n, seed: int = seed) -> Outcome:
                async with (
                    open_memory_network(seed=seed, latency=BASE_LATENCY) as net,
                    dht_network(net, n, FAST, seed=seed, refreshed=True) as nodes,
                ):
                    out = await Scenarios(net, nodes, seed, FAST.dht.k).healthy(args.lookups)
                    report(out, 1.0)
                    return out

            outs.append(trio.run(healthy, **clock))
        summary(outs)
    print(f"# total wall time {time.perf_counter() - begun:.1f} s")


if __name__ == "__main__":
    main()
