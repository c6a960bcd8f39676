"""Overload: full nodes sharing one core in one process, on real loopback sockets.

Starts N full nodes (DHT and membership, the real :class:`~plexinode.node.Node` on
127.0.0.1 :class:`~plexinode.net.transport.SocketTransport`, every one bootstrapped from the
first) in one trio run in this process, so that they share one core, waits until every view
holds all N members alive, then measures for --duration seconds:

- datagrams sent per node per second (the nodes' own ``sent`` counters), and by message type
  (requests and replies, counted at the datagram service's send calls), so that the growth of
  traffic under load can be traced to what grows;
- stream opens per node per second, by protocol (push-pull, stream pings, key pulls);
- suspicions (failed probes) and deaths declared of healthy nodes (no node fails in this
  benchmark, so every one is false), and the worst share of suspect or dead entries over all
  views, sampled every 5 s;
- the core's use (process CPU time / wall time) and the event loop's lag (how late a 100 ms
  sleep wakes up: its p50 and p99);
- each node's local health score (Lifeguard's awareness), its mean and max at the end;
- with --types, the DHT's share: its liveness pings, its ping-backs of requesters missing
  from its routing table (``dht.ping_backs``: started, and skipped because the requester was
  checked lately), the pings of a full bucket's oldest entry, and contacts it removed from its
  routing table (a removed contact that then sends us a request is pinged back before it is
  re-added).

Each N's rate is printed beside the idle rate, measured first in the same run at --baseline
nodes (default 10).

Usage: python scripts/bench/bench_overload.py [--sizes 25,50,100,150] [--duration 300]
       [--baseline 10] [--types]
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import hashlib
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import trio

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from common import header, percentile

from plexinode.config import Settings
from plexinode.identity import Identity
from plexinode.membership.beliefs import State
from plexinode.net.address import Address
from plexinode.net.datagram import DatagramService
from plexinode.net.streams import StreamService
from plexinode.net.transport import SocketTransport
from plexinode.node import Node

HOST = "127.0.0.1"

#: What every node sent, by kind ("ping", "ack", "stream member-sync/1", ...): the experiment
#: that tells which traffic grows under load.
SENT: collections.Counter[str] = collections.Counter()


def _instrument() -> None:
    """Count datagrams by message type and streams by protocol, at the services' send calls."""
    send = DatagramService.send
    reply = DatagramService._send_reply
    open_stream = StreamService.open

    async def counted_send(self: DatagramService, address: Any, message: Any, **kw: Any) -> None:
        kind = "req " if kw.get("request_id") else "msg "
        SENT[kind + message.NAME] += 1
        await send(self, address, message, **kw)

    async def counted_reply(self: DatagramService, inbound: Any, message: Any, budget: Any) -> None:
        SENT["rep " + message.NAME] += 1
        await reply(self, inbound, message, budget)

    async def counted_open(self: StreamService, address: Any, protocol: str, **kw: Any) -> Any:
        SENT["stream " + protocol] += 1
        return await open_stream(self, address, protocol, **kw)

    DatagramService.send = counted_send  # type: ignore[method-assign]
    DatagramService._send_reply = counted_reply  # type: ignore[method-assign]
    StreamService.open = counted_open  # type: ignore[method-assign]


def identity(index: int) -> Identity:
    return Identity.from_seed(hashlib.sha256(f"bench-overload:{index}".encode()).digest())


def settings(bootstrap: Address | None) -> Settings:
    base = Settings(listen=Address(HOST, 0), bootstrap=(bootstrap,) if bootstrap else ())
    # One host runs the whole network: the per-host limits would be its own bottleneck.
    return dataclasses.replace(
        base,
        dht=dataclasses.replace(base.dht, id_difficulty=0),
        datagram=dataclasses.replace(base.datagram, trusted_hosts=("127.0.0.0/8",))
        if hasattr(base.datagram, "trusted_hosts")
        else base.datagram,
        stream=dataclasses.replace(base.stream, trusted_hosts=("127.0.0.0/8",)),
    )


@dataclasses.dataclass
class Result:
    nodes: int
    seconds: float
    sent_per_node: float
    streams_per_node: float
    failed_probes: int
    deaths: int
    worst_suspect: float
    worst_dead: float
    cpu: float
    lag_p50: float
    lag_p99: float
    awareness_mean: float
    awareness_max: int
    types: dict[str, float]
    liveness_pings: float
    contacts_removed: float
    ping_backs: float
    ping_backs_skipped: float
    oldest_pings: float


def _views(nodes: list[Node]) -> tuple[float, float, int]:
    """Shares of suspect and of dead entries over all views, and views missing someone."""
    suspect = dead = total = incomplete = 0
    for node in nodes:
        members = node.membership.members()
        if len(members) < len(nodes):
            incomplete += 1
        for member in members:
            total += 1
            suspect += member.state is State.SUSPECT
            dead += member.state in (State.DEAD, State.STOPPED, State.LEFT)
    return suspect / max(1, total), dead / max(1, total), incomplete


def _totals(nodes: list[Node]) -> dict[str, int]:
    out: collections.Counter[str] = collections.Counter()
    for node in nodes:
        out["sent"] += node.datagrams.stats["sent"]
        out["failed"] += node.membership.prober.stats["failed"]
        out["dead"] += node.membership.stats["declared_dead"]
        out["liveness"] += node.dht.record_stats["liveness_pings"]
        out["removed"] += node.dht.routing.stats["removed"]
        out["oldest"] += node.dht.routing.stats["bucket_full"]
        checks = node.dht.records_summary().get("ping_backs", {})
        out["ping_backs"] += checks.get("started", 0)
        out["ping_backs_skipped"] += sum(v for k, v in checks.items() if k.startswith("skipped"))
    return dict(out)


async def _lag_probe(lags: list[float], period: float = 0.1) -> None:
    while True:
        start = trio.current_time()
        await trio.sleep(period)
        lags.append(max(0.0, trio.current_time() - start - period))


async def _until(check: Callable[[], bool], seconds: float) -> bool:
    """Whether `check` held within `seconds` (polled: the nodes have no event for it)."""
    with trio.move_on_after(seconds):
        while not check():  # noqa: ASYNC110
            await trio.sleep(0.5)
        return True
    return False


async def measure(count: int, duration: float, on_ready: Callable[[], Awaitable[None]]) -> Result:
    nodes: list[Node] = []
    async with trio.open_nursery() as nursery:
        first: Address | None = None
        for i in range(count):
            node = Node(identity(i), settings(first), SocketTransport())
            address = await nursery.start(node.run)
            first = first or address
            nodes.append(node)
        converged = await _until(
            lambda: all(n.membership.counts()["alive"] == count for n in nodes), 120 + count
        )
        if not converged:
            print(f"#   N={count}: views not all-alive after the start; measuring anyway")
        await on_ready()
        SENT.clear()
        lags: list[float] = []
        lag_scope = trio.CancelScope()

        async def lag_probe() -> None:
            with lag_scope:
                await _lag_probe(lags)

        nursery.start_soon(lag_probe)
        before = _totals(nodes)
        cpu0, wall0 = time.process_time(), time.perf_counter()
        worst_suspect = worst_dead = 0.0
        end = trio.current_time() + duration
        while trio.current_time() < end:
            await trio.sleep(min(5.0, max(0.0, end - trio.current_time())))
            suspect, dead, _ = _views(nodes)
            worst_suspect, worst_dead = max(worst_suspect, suspect), max(worst_dead, dead)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        after = _totals(nodes)
        awareness = [n.membership.prober.awareness for n in nodes]
        types = {k: v / wall / count for k, v in SENT.items()}
        streams = sum(v for k, v in SENT.items() if k.startswith("stream "))
        lag_scope.cancel()
        for node in nodes:
            node.stop()
    return Result(
        nodes=count,
        seconds=wall,
        sent_per_node=(after["sent"] - before["sent"]) / wall / count,
        streams_per_node=streams / wall / count,
        failed_probes=after["failed"] - before["failed"],
        deaths=after["dead"] - before["dead"],
        worst_suspect=worst_suspect,
        worst_dead=worst_dead,
        cpu=cpu / wall,
        lag_p50=percentile(lags, 50),
        lag_p99=percentile(lags, 99),
        awareness_mean=sum(awareness) / len(awareness),
        awareness_max=max(awareness),
        types=types,
        liveness_pings=(after["liveness"] - before["liveness"]) / wall / count,
        contacts_removed=(after["removed"] - before["removed"]) / wall / count,
        ping_backs=(after["ping_backs"] - before["ping_backs"]) / wall / count,
        ping_backs_skipped=(after["ping_backs_skipped"] - before["ping_backs_skipped"])
        / wall
        / count,
        oldest_pings=(after["oldest"] - before["oldest"]) / wall / count,
    )


async def run(sizes: list[int], duration: float, baseline: int, types: bool) -> None:
    async def nothing() -> None:
        return None

    results: list[Result] = []
    for count in [baseline, *sizes]:
        result = await measure(count, duration, nothing)
        results.append(result)
        idle = results[0].sent_per_node
        print(
            f"N={result.nodes:4d}  sent {result.sent_per_node:6.2f} dgram/s/node "
            f"({result.sent_per_node / idle:4.2f}x idle N={baseline})  "
            f"streams {result.streams_per_node:5.3f}/s/node  "
            f"failed probes {result.failed_probes:5d}  deaths {result.deaths:4d}  "
            f"worst views: suspect {result.worst_suspect:5.1%} dead {result.worst_dead:5.1%}  "
            f"CPU {result.cpu:5.1%}  loop lag p50 {result.lag_p50 * 1e3:6.1f} ms "
            f"p99 {result.lag_p99 * 1e3:7.1f} ms  "
            f"awareness mean {result.awareness_mean:.1f} max {result.awareness_max}",
            flush=True,
        )
        if types:
            for kind, rate in sorted(result.types.items(), key=lambda kv: -kv[1]):
                if rate >= 0.005:
                    print(f"        {kind:32s} {rate:7.3f}/s/node")
            print(
                f"        (DHT pings: liveness {result.liveness_pings:.3f}/s/node, ping-backs "
                f"started {result.ping_backs:.3f} and skipped {result.ping_backs_skipped:.3f}, "
                f"full buckets' oldest entries {result.oldest_pings:.3f}; DHT contacts "
                f"removed {result.contacts_removed:.3f}/s/node)"
            )
        await trio.sleep(2)  # the sockets of the last run close


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="25,50,100,150")
    parser.add_argument("--duration", type=float, default=300.0)
    parser.add_argument("--baseline", type=int, default=10)
    parser.add_argument("--types", action="store_true", help="print traffic by message type")
    args = parser.parse_args()
    header("overload: full nodes sharing one core, loopback UDP + TCP")
    print(f"# duration {args.duration:.0f} s per size")
    _instrument()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    trio.run(run, sizes, args.duration, args.baseline, args.types)


if __name__ == "__main__":
    main()
