#!/usr/bin/env python3
"""Backup and restore throughput on the in-memory network with 0 ms and with 50 ms links.

    python scripts/bench/bench_backup_latency.py [--mib 256] [--nodes 11] [-k 3] [-n 10]
        [--latency 0.05] [--dir /dev/shm] [--unlimited-reads] [--cap-measured SECONDS]

Full nodes (`Node`, the tests' FAST settings, a data dir and file-backed databases each under
--dir) on the in-memory network, on the REAL clock (throughput is real time), all in this one
process. For each link latency (0, then --latency seconds one way on every link), a fresh
network: --nodes nodes start (the first alone, the others bootstrapping from it), the owner waits
until it lists every other alive, backs up --mib MiB of random data (one file) with k-of-n, and
restores it; the restored file must equal the source (SHA-256). Prints MB/s of each and the
ratio of the 50 ms figures to the 0 ms ones against the 0.80 target, with the number of block
reads the holders answered `busy` (their per-peer read rate, holder_service.READ_RATE, 8 MiB/s
with a 32 MiB burst). --unlimited-reads lifts that rate in every holder (an experiment: what the
restore does without it). --cap-measured SECONDS caps the block fetch times the restore's
holder choice sees (FetchPlan.measured), the charge for a `busy` answer excepted (another
experiment: the first block from a holder is timed with the stream's set-up).

What the latency reaches: the in-memory network delays every datagram (membership, the DHT's
provider and pointer records) and each leg of a stream connection's set-up, but not the bytes of
an established stream (plexinode/testing/streams.py): the figure measures the round trips of
the protocol around the transfer (connections, handshakes, records, membership), not a window
of segments in flight over a long fat link.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from common import header

from plexinode.membership.members import State
from plexinode.net.address import Address
from plexinode.net.ratelimit import TokenBuckets
from plexinode.node import Node
from plexinode.shards import backups
from plexinode.shards.fetch_plan import FetchPlan
from plexinode.testing.network import open_memory_network
from plexinode.testing.nodes import FAST, seeded_identity

MB = 1e6


async def one_run(
    args: argparse.Namespace, tmp: Path, latency: float, want: str
) -> tuple[float, float]:
    """(backup MB/s, restore MB/s) at one link latency."""
    async with open_memory_network(seed=args.seed, latency=latency) as net:
        hosts = [net.new_host() for _ in range(args.nodes)]
        first = Address(hosts[0], FAST.listen.port)
        nodes = []
        for i, host in enumerate(hosts):
            data_dir = tmp / f"node{i}"
            data_dir.mkdir(mode=0o700)
            nodes.append(
                Node(
                    seeded_identity(i),
                    FAST if i == 0 else replace(FAST, bootstrap=(first,)),
                    net.transport(host),
                    data_dir=data_dir,
                )
            )
        async with trio.open_nursery() as nursery:
            for node in nodes:
                await nursery.start(node.run)
            owner = nodes[0]
            if args.unlimited_reads:
                # The experiment: no per-peer read rate at the holders (holder_service.READ_RATE).
                for node in nodes:
                    holder = node._shards.holder  # type: ignore[union-attr]
                    holder._reads = TokenBuckets(1e15, 1e15)
                    if hasattr(holder, "_own_reads"):  # the owner's own budget, where it exists
                        holder._own_reads = TokenBuckets(1e15, 1e15)
            began = time.perf_counter()
            with trio.fail_after(300):
                while len([m for m in owner.membership.members() if m.state is State.ALIVE]) < len(  # noqa: ASYNC110
                    nodes
                ):
                    await trio.sleep(0.2)
            print(
                f"  latency {latency * 1000:.0f} ms: {len(nodes)} nodes alive after "
                f"{time.perf_counter() - began:.1f} s"
            )
            began = time.perf_counter()
            created = await owner.backups.create(tmp / "src", k=args.k, n=args.n)
            backup_s = time.perf_counter() - began
            began = time.perf_counter()
            await owner.backups.restore(created.backup_id, tmp / "out")
            restore_s = time.perf_counter() - began
            busy = sum([(await n.status())["shards"].get("reads_refused_rate", 0) for n in nodes])
            out = tmp / "out"
            got = hashlib.sha256(out.read_bytes()).hexdigest()
            if got != want:
                raise SystemExit(f"latency {latency}: the restored file differs from the source")
            size = created.bytes / MB
            print(
                f"  latency {latency * 1000:.0f} ms: backup {backup_s:.1f} s = "
                f"{size / backup_s:.1f} MB/s ({len(created.holders)} holders), "
                f"restore {restore_s:.1f} s = "
                f"{size / restore_s:.1f} MB/s ({busy} block reads answered busy), SHA-256 equal"
            )
            nursery.cancel_scope.cancel()
    return size / backup_s, size / restore_s


def cap_measured(cap: float) -> None:
    """The experiment of --cap-measured: the restore's holder choice (FetchPlan) sees every
    block fetch's time capped at `cap`, except the charge for a `busy` answer (BUSY_WAIT), so
    that a stream's set-up, timed with its first block, does not make every holder look as
    slow as a busy one."""
    measured = FetchPlan.measured
    try:  # where the restore's fetch lives since the k blocks of a segment are fetched at once
        from plexinode.shards import segment_fetch

        busy = segment_fetch.BUSY_WAIT
    except ImportError:
        busy = backups.BUSY_WAIT

    def capped(self: FetchPlan, holder: bytes, seconds: float) -> None:
        measured(self, holder, seconds if seconds == busy else min(seconds, cap))

    FetchPlan.measured = capped  # type: ignore[method-assign]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=256)
    parser.add_argument("--nodes", type=int, default=11)
    parser.add_argument("-k", type=int, default=3)
    parser.add_argument("-n", type=int, default=10)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=23)
    parser.add_argument("--dir", default="/dev/shm")
    parser.add_argument("--unlimited-reads", action="store_true")
    parser.add_argument("--cap-measured", type=float, default=None)
    args = parser.parse_args()
    if args.cap_measured is not None:
        cap_measured(args.cap_measured)
    header("backup throughput against link latency (in-memory network, real clock)")
    print(
        f"# {args.mib} MiB, {args.nodes} nodes (the owner and {args.nodes - 1} members), "
        f"k={args.k} n={args.n}, one process, data dirs under {args.dir}"
    )
    rng = random.Random(args.seed)
    data = b"".join(rng.randbytes(1 << 20) for _ in range(args.mib))
    want = hashlib.sha256(data).hexdigest()
    results = {}
    for latency in (0.0, args.latency):
        with tempfile.TemporaryDirectory(prefix="plexinode-latency-", dir=args.dir) as d:
            tmp = Path(d)
            (tmp / "src").write_bytes(data)
            results[latency] = trio.run(one_run, args, tmp, latency, want)
    (b0, r0), (b1, r1) = results[0.0], results[args.latency]
    ms = args.latency * 1000
    print(
        f"backup:  {b1:.1f} MB/s at {ms:.0f} ms / {b0:.1f} MB/s at 0 ms = "
        f"{b1 / b0:.2f} (target >= 0.80)"
    )
    print(
        f"restore: {r1:.1f} MB/s at {ms:.0f} ms / {r0:.1f} MB/s at 0 ms = "
        f"{r1 / r0:.2f} (target >= 0.80)"
    )


if __name__ == "__main__":
    main()
