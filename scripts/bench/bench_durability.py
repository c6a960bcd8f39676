#!/usr/bin/env python3
"""Durability of a k-of-n backup among nodes on the in-memory network, in simulated time.

    python scripts/bench/bench_durability.py [--members 30] [-k 3] [-n 10] [--mib 4]
        [--random-sets 3 | --every-set] [--restart] [--kills 20] [--grace 10]
        [--repair-limit 300] [--seed 23] [--threshold 0.05] [--part sets|kills] [--dir /dev/shm]

Full nodes (`Node`, the tests' FAST settings, a data dir and file-backed databases each, on a
host of their own) run on the in-memory network under trio's MockClock; every time printed is
simulated seconds. The owner backs up --mib MiB of random data (one file) with k-of-n among
--members other members (the owner never holds a share of its own backup), waits 5 s for the
holders' provider records, then:

sets: repair held back (membership.restart_grace of an hour: a dead holder is not replaced
within the run), the holders (as placed: the owner's catalog) of n - k shares are killed at
once (their host crashed, their node cancelled), the owner restores and the restored file must
equal the source. Each set runs on a fresh network and cluster (its own backup), or with
--restart all on one cluster, the holders killed being restarted on their data dirs before the
next set is killed. The sets: the holders of shares 0 to n - k - 1 (every
primary block gone, so the restore decodes from parity only: zfec's costliest decode), then
--random-sets sets drawn at random, or with --every-set all C(n, n - k) sets.

kills: repair on (restart_grace of --grace seconds), --kills times in a row: one live holder
drawn at random is killed, and the time until the spread is whole again (each of the n shares on a
live holder and no holder with two, by the provider records, polled every second; an extra
copy of a share shows in the shares placed and the bytes) is measured from the kill, with the
repair bytes (the `repair_bytes` counters of the live nodes: blocks read and sent, the repairer's
own included) it cost; the next kill comes only after the repair (a spread not whole again
within --repair-limit simulated seconds ends the part as a failure, printing where the shares
are). Then the owner restores and
the restored file must equal the source. Printed: time to full repair p50/max (the grace, then
the repair round's settle time, are part of it), and repair bytes per lost share against k
times the share size (the k blocks per segment a repairer reads to regenerate one).

The autojump threshold (--threshold) is how long real time must pass with every task idle
before the mock clock jumps: the databases' writes run in worker threads, which the clock must
wait for; data dirs on tmpfs (--dir, default /dev/shm) keep those writes well under it.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from itertools import combinations
from pathlib import Path

import trio
import trio.testing

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from common import header, percentile

from plexinode.config import Settings
from plexinode.identity import NodeId
from plexinode.membership.members import State
from plexinode.net.address import Address
from plexinode.node import Node
from plexinode.testing.network import MemoryNetwork, open_memory_network
from plexinode.testing.nodes import FAST, seeded_identity


def settings_with_grace(grace: float) -> Settings:
    return replace(FAST, membership=replace(FAST.membership, restart_grace=grace))


@dataclass
class Cluster:
    """The owner (node 0) and its members, each on a host of its own, startable and killable."""

    net: MemoryNetwork
    tmp: Path
    nursery: trio.Nursery
    settings: Settings
    hosts: list[str] = field(default_factory=list)
    nodes: list[Node] = field(default_factory=list)
    scopes: list[trio.CancelScope] = field(default_factory=list)

    async def start(self, index: int) -> None:
        data_dir = self.tmp / f"node{index}"
        data_dir.mkdir(mode=0o700, exist_ok=True)
        first = Address(self.hosts[0 if index else 1], FAST.listen.port)
        node = Node(
            seeded_identity(index),
            replace(self.settings, bootstrap=(first,)) if index else self.settings,
            self.net.transport(self.hosts[index]),
            data_dir=data_dir,
            wall_clock=lambda: 1_000_000.0 + trio.current_time(),
        )
        scope = trio.CancelScope()

        async def run(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
            with scope:
                await node.run(task_status=task_status)

        await self.nursery.start(run)
        if index < len(self.nodes):
            self.nodes[index], self.scopes[index] = node, scope
        else:
            self.nodes.append(node)
            self.scopes.append(scope)

    def kill(self, index: int) -> None:
        self.scopes[index].cancel()
        self.net.crash(self.hosts[index])

    def alive(self) -> list[int]:
        return [i for i, s in enumerate(self.scopes) if not s.cancel_called]

    def index_of(self, node_id: NodeId) -> int:
        return [n.node_id for n in self.nodes].index(node_id)

    async def wait_members(self, limit: float = 600) -> None:
        """Until the owner lists every live node alive."""
        want = len(self.alive())
        owner = self.nodes[0]
        with trio.fail_after(limit):
            while len([m for m in owner.membership.members() if m.state is State.ALIVE]) < want:  # noqa: ASYNC110
                await trio.sleep(0.5)

    async def holders(self, backup_id: bytes) -> dict[int, list[int]]:
        """Share index -> the live nodes whose provider records say they hold it."""
        owner = self.nodes[0]
        found = await owner.backups.records.holders(owner.node_id, backup_id)  # type: ignore[union-attr]
        live = set(self.alive())
        return {
            index: sorted(i for i in map(self.index_of, nodes) if i in live)
            for index, nodes in sorted(found.items())
        }

    async def counter(self, name: str) -> int:
        return sum([(await self.nodes[i].status())["shards"].get(name, 0) for i in self.alive()])


async def started(
    net: MemoryNetwork, tmp: Path, nursery: trio.Nursery, args: argparse.Namespace, grace: float
) -> tuple[Cluster, bytes, int]:
    """A cluster of the owner and --members members, with the source backed up; returns the
    cluster, the backup ID and the share size (bytes of one share over all segments)."""
    cluster = Cluster(net, tmp, nursery, settings_with_grace(grace))
    cluster.hosts = [net.new_host() for _ in range(args.members + 1)]
    began = trio.current_time()
    for i in range(args.members + 1):
        await cluster.start(i)
    await cluster.wait_members()
    print(f"  {args.members + 1} nodes alive in {trio.current_time() - began:.1f} s")
    owner = cluster.nodes[0]
    created = await owner.backups.create(tmp / "src", k=args.k, n=args.n, name="durability")
    await trio.sleep(5)  # the holders announce what they hold
    built = await owner.backups.manifest(created.backup_id)
    share = sum(info.block_size for info in built.segments())
    print(
        f"  backed up {created.bytes} bytes, {len(built.segments())} segments, "
        f"{len(created.holders)} holders, share {share} bytes"
    )
    return cluster, created.backup_id, share


async def restored(cluster: Cluster, backup_id: bytes, tmp: Path, label: str, want: str) -> bool:
    dest = tmp / f"out-{label}"
    await cluster.nodes[0].backups.restore(backup_id, dest)
    files = [p for p in dest.rglob("*") if p.is_file()] if dest.is_dir() else [dest]
    got = hashlib.sha256(files[0].read_bytes() if len(files) == 1 else b"")
    shutil.rmtree(dest) if dest.is_dir() else dest.unlink()
    return got.hexdigest() == want


def kill_sets(args: argparse.Namespace) -> list[tuple[str, list[int]]]:
    """The sets of share indices whose holders die: every primary block's first, then random
    ones (or every set)."""
    dying = args.n - args.k
    if args.every_set:
        return [(f"set{i}", list(c)) for i, c in enumerate(combinations(range(args.n), dying))]
    rng = random.Random(args.seed)
    sets = [("primaries+", list(range(dying)))]
    sets += [
        (f"random{i}", sorted(rng.sample(range(args.n), dying))) for i in range(args.random_sets)
    ]
    return sets


async def kill_and_restore(
    cluster: Cluster,
    backup_id: bytes,
    tmp: Path,
    label: str,
    shares: list[int],
    want: str,
    *,
    restart: bool = False,
) -> bool:
    """Kill the holders (as placed: the owner's catalog) of `shares`, then restore; with
    `restart`, start them again on their data dirs afterwards."""
    placed = await cluster.nodes[0].backups.catalog.holders(backup_id)  # type: ignore[union-attr]
    victims = [cluster.index_of(NodeId(placed[s])) for s in shares]
    for index in victims:
        cluster.kill(index)
    began = trio.current_time()
    try:
        ok = await restored(cluster, backup_id, tmp, label, want)
    except Exception as exc:
        ok = False
        print(f"    restore failed: {type(exc).__name__}: {exc}")
    left = sorted(set(placed) - set(shares))
    print(
        f"  {label:<11} killed holders of shares {shares}, left {left}: "
        f"restore {'OK' if ok else 'FAILED'} in {trio.current_time() - began:.1f} s simulated"
    )
    if restart:
        for index in victims:
            await cluster.start(index)
        await cluster.wait_members()
    return ok


async def part_sets(args: argparse.Namespace, tmp: Path, want: str) -> bool:
    print(f"sets: kill n - k = {args.n - args.k} holders, restore (repair held back)")
    results: list[bool] = []
    sets = kill_sets(args)
    if args.restart:
        # One cluster: the holders killed are restarted on their data dirs before the next set.
        async with open_memory_network(seed=args.seed) as net, trio.open_nursery() as nursery:
            cluster, backup_id, _ = await started(net, tmp, nursery, args, grace=3600.0)
            for label, shares in sets:
                results.append(
                    await kill_and_restore(
                        cluster, backup_id, tmp, label, shares, want, restart=True
                    )
                )
            nursery.cancel_scope.cancel()
    else:
        # A fresh network and cluster for each set.
        for number, (label, shares) in enumerate(sets):
            run = tmp / f"run{number}"
            run.mkdir()
            (run / "src").write_bytes((tmp / "src").read_bytes())
            async with (
                open_memory_network(seed=args.seed + 100 + number) as net,
                trio.open_nursery() as nursery,
            ):
                cluster, backup_id, _ = await started(net, run, nursery, args, grace=3600.0)
                results.append(await kill_and_restore(cluster, backup_id, run, label, shares, want))
                nursery.cancel_scope.cancel()
            shutil.rmtree(run)
    print(f"  {sum(results)} of {len(results)} sets of {args.n - args.k} dead holders restored")
    return all(results)


async def wait_spread(
    cluster: Cluster, backup_id: bytes, n: int, victim: int, limit: float
) -> float:
    """Simulated seconds until each of the n shares is on a live holder again, no holder with
    two, the victim not among them (trio.TooSlowError after `limit`)."""
    began = trio.current_time()
    with trio.fail_after(limit):
        while True:
            holders = await cluster.holders(backup_id)
            placed = [nodes for nodes in holders.values() if nodes]
            copies = [node for nodes in placed for node in nodes]
            # Whole: every share on a live holder, no holder with two (an extra copy of a share
            # on a second holder is allowed here, and shows in the shares placed and bytes).
            if len(placed) == n and len(set(copies)) == len(copies) and victim not in copies:
                return trio.current_time() - began
            await trio.sleep(1)


async def part_kills(args: argparse.Namespace, tmp: Path, want: str) -> bool:
    print(f"kills: {args.kills} holders killed one at a time, repair on (grace {args.grace} s)")
    async with open_memory_network(seed=args.seed + 1) as net, trio.open_nursery() as nursery:
        cluster, backup_id, share = await started(net, tmp, nursery, args, grace=args.grace)
        rng = random.Random(args.seed + 1)
        times: list[float] = []
        per_share: list[int] = []
        placed_total = 0
        for round_ in range(1, args.kills + 1):
            holders = await cluster.holders(backup_id)
            current = sorted({node for nodes in holders.values() for node in nodes})
            victim = rng.choice(current)
            lost = sum(1 for nodes in holders.values() if victim in nodes)
            survivors = [i for i in cluster.alive() if i != victim]
            before = sum(
                [
                    (await cluster.nodes[i].status())["shards"].get("repair_bytes", 0)
                    for i in survivors
                ]
            )
            placed_before = sum(
                [
                    (await cluster.nodes[i].status())["shards"].get("repair_shares_placed", 0)
                    for i in survivors
                ]
            )
            cluster.kill(victim)
            try:
                took = await wait_spread(cluster, backup_id, args.n, victim, args.repair_limit)
            except trio.TooSlowError:
                holders = await cluster.holders(backup_id)
                print(
                    f"  kill {round_:>2}: node {victim:>2}: NOT whole again after "
                    f"{args.repair_limit} s; share -> live holders: {holders}; repair counters "
                    f"{await cluster.counter('repair_shares_placed')} placed, "
                    f"{await cluster.counter('repair_bytes')} bytes"
                )
                nursery.cancel_scope.cancel()
                return False
            spent = await cluster.counter("repair_bytes") - before
            placed = await cluster.counter("repair_shares_placed") - placed_before
            placed_total += placed
            times.append(took)
            per_share.append(spent // max(lost, 1))
            print(
                f"  kill {round_:>2}: node {victim:>2} ({lost} share lost), whole again after "
                f"{took:6.1f} s, {placed} share placed, {spent} repair bytes "
                f"({spent / max(lost, 1) / share:.2f} x share), "
                f"{len(cluster.alive()) - 1} members left"
            )
        try:
            ok = await restored(cluster, backup_id, tmp, "after-kills", want)
        except Exception as exc:
            ok = False
            print(f"    restore failed: {type(exc).__name__}: {exc}")
        print(f"  restore after {args.kills} kills: {'OK' if ok else 'FAILED'}")
        print(
            f"  time to full repair (simulated s, grace {args.grace} s included): "
            f"p50 {statistics.median(times):.1f}, p90 {percentile(times, 90):.1f}, "
            f"max {max(times):.1f}, min {min(times):.1f}"
        )
        print(
            f"  repair bytes per lost share: median {statistics.median(per_share)}, "
            f"max {max(per_share)}; k x share = {args.k * share} "
            f"(ratio {statistics.median(per_share) / (args.k * share):.3f}); "
            f"shares placed {placed_total} for {args.kills} lost"
        )
        nursery.cancel_scope.cancel()
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=30)
    parser.add_argument("-k", type=int, default=3)
    parser.add_argument("-n", type=int, default=10)
    parser.add_argument("--mib", type=float, default=4)
    parser.add_argument("--random-sets", type=int, default=3)
    parser.add_argument("--every-set", action="store_true")
    parser.add_argument("--restart", action="store_true")
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--grace", type=float, default=10.0)
    parser.add_argument("--repair-limit", type=float, default=300.0)
    parser.add_argument("--seed", type=int, default=23)
    parser.add_argument("--threshold", type=float, default=0.05)
    parser.add_argument("--part", choices=("sets", "kills"), action="append")
    parser.add_argument("--dir", default="/dev/shm")
    args = parser.parse_args()
    parts = args.part or ["sets", "kills"]
    header("durability of a backup in simulation (in-memory network, MockClock)")
    print(
        f"# k={args.k} n={args.n}, owner + {args.members} members, {args.mib} MiB, "
        f"seed {args.seed}, "
        f"autojump threshold {args.threshold} s, data dirs under {args.dir}"
    )
    data = random.Random(args.seed).randbytes(int(args.mib * (1 << 20)))
    want = hashlib.sha256(data).hexdigest()
    ok = True
    for part in parts:
        with tempfile.TemporaryDirectory(prefix="plexinode-durability-", dir=args.dir) as d:
            tmp = Path(d)
            (tmp / "src").write_bytes(data)
            fn = part_sets if part == "sets" else part_kills
            clock = trio.testing.MockClock(autojump_threshold=args.threshold)
            began = time.perf_counter()
            ok &= trio.run(fn, args, tmp, want, clock=clock)
            print(f"  ({part}: {time.perf_counter() - began:.0f} s real)")
    print(f"durability: {'OK' if ok else 'FAILED'}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
