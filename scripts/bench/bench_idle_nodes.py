"""Resident memory of idle nodes on the in-memory network, in one process.

    python scripts/bench/bench_idle_nodes.py [--nodes 1000] [--idle 60]

Starts --nodes full nodes (datagram service, stream service, in-memory SQLite) on one
in-memory network under trio's MockClock, lets them idle for --idle simulated seconds, and
prints resident memory per node: (RSS with the nodes - RSS of the same process before them)
/ nodes. A ping from the first to the last node checks they are alive, not just allocated.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from pathlib import Path

import trio
import trio.testing

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from common import header, rss_bytes

from plexinode.testing.network import open_memory_network
from plexinode.testing.nodes import running_nodes


async def run(count: int, idle: float) -> None:
    gc.collect()
    async with open_memory_network(seed=1, latency=0.001) as net:
        before = rss_bytes()
        started = time.perf_counter()
        async with running_nodes(net, count) as nodes:
            setup = time.perf_counter() - started
            await trio.sleep(idle)
            gc.collect()
            after = rss_bytes()
            last = nodes[-1].address
            assert last is not None
            pong = await nodes[0].ping(last)
            assert pong["node_id"] == str(nodes[-1].node_id)
    per_node = (after - before) / count
    print(
        f"{count} idle nodes: RSS {before / 2**20:.1f} MiB -> {after / 2**20:.1f} MiB, "
        f"{per_node / 1024:.1f} KiB per node (started in {setup:.1f} s wall)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--idle", type=float, default=60.0)
    args = parser.parse_args()
    header("idle nodes in one process")
    trio.run(run, args.nodes, args.idle, clock=trio.testing.MockClock(autojump_threshold=0))


if __name__ == "__main__":
    main()
