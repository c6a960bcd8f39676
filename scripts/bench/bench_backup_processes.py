#!/usr/bin/env python3
"""Backups among real `plexinode start` processes on loopback, driven by the CLI.

    python scripts/bench/bench_backup_processes.py [--throughput] [--liveness] [--memory]
        [--incremental] [--mib 256] [--nodes 11] [-k 3] [-n 10] [--happy 7] [--dir DIR]

Each part starts its own network on 127.0.0.1 (separate data dirs under a temporary directory
in DIR, default /tmp; the first node alone, the others bootstrapping from it; LAN profile, the
tests' ID puzzle) and waits until every node lists every other alive. The first node is the
owner. Naming no part runs all four.

--throughput: `backup create` and `backup restore` of --mib MiB of random data (one file),
timed from the CLI (`--json`), against raw zfec encode and decode (zfec alone, k and n as the
backup's, 1 MiB segments, best of 3) on the same bytes in the same run. Prints MB/s and the
ratios to raw zfec encode (targets 0.25x for upload and 0.62x for restore: 3x and 4x what
Tahoe-LAFS 1.20 reaches against the same baseline), the CPU seconds per MB (user + system from
/proc/PID/stat) of the owner and of all holders together during each, and the CPU seconds of
each pipeline stage run alone on the same bytes (`stage_split`: the node does not count its
CPU by stage), the rest of the owner's CPU being the streams to the holders and the driver.
The restored file's SHA-256 must equal the source's.

--liveness: during a backup of --mib MiB, every node's member list is polled over its admin
socket (the `members` command that `members --json` runs) for members marked suspect or dead,
and a non-owner node runs `plexinode ping --json` to the owner and every holder, over and over;
the same pings run before the backup (the baseline). Targets: no suspect, ping p99 < 100 ms.

--memory: peak RSS (VmHWM of /proc/PID/status, reset through /proc/PID/clear_refs before the
command) of the owner's process backing up one file of each of --memory-mib (default 512,
1024, 2048), then of the owner restarted on its data dir restoring it (so that the restore's
peak is its own); each size on a fresh network of --memory-nodes nodes with k = 2, n = 4,
removed after it. Target: under 256 MiB, flat as the file grows.

--incremental: a tree of --files files of 1 MiB of random content backed up three times: as
made, unchanged (target: zero share bytes sent, `bytes_sent`), and after rewriting 10 of the
files (target: at most 2x their encoded size, 10 MiB x n / k).

With --nodes 11 the owner has 10 other members, so each of the n = 10 shares of a segment has
its own holder (Tahoe-LAFS's grid: 10 storage nodes and a client); with 10 nodes one share per
segment finds no member to take it and is not sent.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import random
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import zfec

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from bench_processes import TICKS, alive_everywhere
from common import header, percentile

from plexinode.admin.client import AdminClient
from plexinode.errors import PlexinodeError
from plexinode.shards import coding, derive, pipeline, sealing
from plexinode.shards.segmenter import DEFAULT_SEGMENT_BYTES, Segmenter, SegmentSizes
from plexinode.testing.processes import NodeProcess, cli

MIB = 1 << 20
SECRET = bytes(range(32))
MB = 1e6
#: A CLI command that moves a backup: generous, nothing here is a timeout to measure.
LONG = 3600.0


# -- processes -----------------------------------------------------------------------------


@contextmanager
def network(root: Path, count: int, settle: float) -> Iterator[list[NodeProcess]]:
    """`count` nodes on 127.0.0.1 that all list each other alive; killed and removed after."""
    nodes: list[NodeProcess] = []
    root.mkdir(parents=True)
    try:
        first = NodeProcess(root / "n0")
        nodes.append(first)
        first.wait_ready()
        for index in range(1, count):
            nodes.append(NodeProcess(root / f"n{index}", "--bootstrap", first.address))
        for node in nodes[1:]:
            node.wait_ready()
        deadline = time.monotonic() + 120
        while not alive_everywhere(nodes):
            if time.monotonic() > deadline:
                raise SystemExit(f"the {count} nodes did not all list each other alive in 120 s")
            time.sleep(0.5)
        time.sleep(settle)
        yield nodes
    finally:
        for node in nodes:
            node.kill()
        shutil.rmtree(root, ignore_errors=True)


def restart(nodes: list[NodeProcess], index: int) -> NodeProcess:
    """Stop node `index` and start it again on its data dir (a fresh process: its memory high
    water mark starts anew); waits until it lists every other node alive again."""
    old = nodes[index]
    run(old, "stop")
    old.kill()
    other = nodes[1 if index == 0 else 0]
    nodes[index] = NodeProcess(old.data_dir, "--bootstrap", other.address).wait_ready()
    deadline = time.monotonic() + 120
    while not alive_everywhere(nodes):
        if time.monotonic() > deadline:
            raise SystemExit("the restarted node did not see every other alive in 120 s")
        time.sleep(0.5)
    return nodes[index]


def run(node: NodeProcess, *args: str) -> tuple[dict[str, Any], float]:
    """`plexinode --json ARGS` against `node`: its result and its wall time."""
    start = time.perf_counter()
    done = cli(node.data_dir, "--json", *args, timeout=LONG)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)}: exit {done.returncode}: {done.stdout}{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result, elapsed


def cpu(nodes: list[NodeProcess]) -> list[tuple[float, float]]:
    """(user, system) CPU seconds of each node's process so far."""
    times = []
    for node in nodes:
        fields = Path(f"/proc/{node.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        times.append((int(fields[11]) / TICKS, int(fields[12]) / TICKS))  # utime, stime
    return times


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of `pid`, in KiB."""
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            found[key] = int(value.split()[0])
    return found


def reset_peak(pid: int) -> None:
    """Start `pid`'s VmHWM afresh from its current RSS (Linux: clear_refs 5)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


# -- data ----------------------------------------------------------------------------------


def random_file(path: Path, mib: int, seed: int) -> str:
    """Write `mib` MiB of seeded random bytes to `path`; their SHA-256."""
    rng = random.Random(seed)
    digest = hashlib.sha256()
    with path.open("wb") as f:
        for _ in range(mib):
            chunk = rng.randbytes(MIB)
            digest.update(chunk)
            f.write(chunk)
    return digest.hexdigest()


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(4 * MIB):
            digest.update(chunk)
    return digest.hexdigest()


def best_of(fn: Callable[[], object], runs: int = 3) -> float:
    best = math.inf
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def raw_zfec(data: bytes, k: int, n: int) -> tuple[float, float]:
    """Seconds of zfec encode, and of decode from the n - k .. n - 1 parity blocks (the worst
    case), of `data` in 1 MiB segments cut into k equal primary blocks, each output dropped as
    soon as made; best of 3 each."""
    encoder, decoder = zfec.Encoder(k, n), zfec.Decoder(k, n)
    primaries = []
    for at in range(0, len(data), MIB):
        piece = data[at : at + MIB]
        size = -(-len(piece) // k)
        padded = piece + bytes(size * k - len(piece))
        primaries.append([padded[i * size : (i + 1) * size] for i in range(k)])
    encode_s = best_of(lambda: [encoder.encode(p) and None for p in primaries])
    chosen = list(range(n - k, n))
    parity = [[encoder.encode(p)[i] for i in chosen] for p in primaries]
    decode_s = best_of(lambda: [decoder.decode(b, chosen) and None for b in parity])
    return encode_s, decode_s


class Stages:
    """CPU seconds (user + system of this process, what /proc counts for the owner) per stage."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def run(self, name: str, fn: Callable[[], Any]) -> Any:
        start = time.process_time()
        result = fn()
        self.seconds[name] = self.seconds.get(name, 0.0) + time.process_time() - start
        return result


def stage_split(data: bytes, k: int, n: int, dest: Path) -> tuple[Stages, Stages]:
    """The pipeline's stages alone, one segment at a time, on one thread, as
    scripts/bench/bench_pipeline.py times them (the same primitives) but streaming: each
    segment's output is dropped before the next, so no stage pays for holding the whole input's
    blocks. Backup: chunker, segment ID, cipher, zfec encode, Merkle roots of the n blocks.
    Restore from the n - k parity blocks (the worst case): Merkle check of the k blocks, zfec
    decode, cipher, ID check, writing the file (one fsync at the end)."""
    up, down = Stages(), Stages()
    segmenter = Segmenter(
        SegmentSizes.for_average(DEFAULT_SEGMENT_BYTES), derive.chunker_seed(SECRET)
    )

    def chunk() -> list[bytes]:
        cut = [s for at in range(0, len(data), MIB) for s in segmenter.feed(data[at : at + MIB])]
        return cut + segmenter.finish()

    chosen = list(range(n - k, n))
    with (dest / "stage-split").open("wb") as out:
        for segment in up.run("chunker", chunk):
            identity = up.run("segment ID", lambda s=segment: derive.segment_id(SECRET, s))
            key = derive.segment_key(SECRET, identity)
            sealed = up.run("cipher", lambda s=segment, i=identity, kk=key: sealing.seal(kk, i, s))
            blocks = up.run("zfec encode", lambda c=sealed: coding.encode(c, k, n))
            up.run("Merkle", lambda b=blocks: [pipeline.share_root(x) for x in b])
            held = {i: blocks[i] for i in chosen}
            down.run("Merkle check", lambda h=held: [pipeline.share_root(x) for x in h.values()])
            ciphertext = down.run(
                "zfec decode", lambda h=held, c=sealed: coding.decode(h, k, n, len(c))
            )
            plain = down.run(
                "cipher", lambda c=ciphertext, i=identity, kk=key: sealing.unseal(kk, i, c)
            )
            down.run("ID check", lambda p=plain: derive.segment_id(SECRET, p))
            down.run("file write", lambda p=plain: out.write(p))
        down.run("file write", lambda: (out.flush(), os.fsync(out.fileno())))
    (dest / "stage-split").unlink()
    return up, down


# -- parts ---------------------------------------------------------------------------------


def part_throughput(args: argparse.Namespace, root: Path) -> None:
    k, n, mib = args.k, args.n, args.mib
    print(
        f"\n## throughput: {mib} MiB, {args.nodes} processes, k = {k}, n = {n}, happy {args.happy}"
    )
    rng = random.Random(1)
    data = b"".join(rng.randbytes(MIB) for _ in range(mib))
    source = root / "source.bin"
    source.write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    size_mb = len(data) / MB

    encode_s, decode_s = raw_zfec(data, k, n)
    stages, restore_stages = stage_split(data, k, n, root)
    del data

    with network(root / "nodes", args.nodes, args.settle) as nodes:
        owner = nodes[0]
        at_start = cpu(nodes)
        created, up_s = run(
            owner, "backup", "create", str(source), "-k", str(k), "-n", str(n),
            "--happy", str(args.happy),
        )  # fmt: skip
        after_up = cpu(nodes)
        dest = root / "restored.bin"
        restored, down_s = run(owner, "backup", "restore", created["backup_id"], str(dest))
        after_down = cpu(nodes)
    same = sha256_of(dest) == digest
    dest.unlink()
    source.unlink()

    zfec_mbs = size_mb / encode_s
    sent = created["bytes_sent"]
    up_mbs, down_mbs = size_mb / up_s, size_mb / down_s
    print(
        f"holders {len(created['holders'])}, segments {created['segments']}, "
        f"share bytes sent {sent / MB:.1f} MB ({sent / (mib * MIB):.2f}x the input), "
        f"lost indices {created['lost_indices']}; restored {restored['bytes']} bytes, "
        f"SHA-256 {'equal' if same else 'DIFFERENT'}"
    )
    print(f"raw zfec encode {k}-of-{n}, 1 MiB segments: {encode_s:.2f} s, {zfec_mbs:.0f} MB/s")
    print(f"raw zfec decode from parity blocks: {decode_s:.2f} s, {size_mb / decode_s:.0f} MB/s")
    print(
        f"backup create  {up_s:6.2f} s {up_mbs:6.1f} MB/s  {up_mbs / zfec_mbs:.3f}x zfec encode "
        f"(target >= 0.25x; Tahoe-LAFS 0.082-0.087x)"
    )
    print(
        f"backup restore {down_s:6.2f} s {down_mbs:6.1f} MB/s  {down_mbs / zfec_mbs:.3f}x zfec "
        f"encode (target >= 0.62x; Tahoe-LAFS 0.155-0.177x)"
    )
    spent = {
        "upload": [
            (u1 - u0, s1 - s0) for (u0, s0), (u1, s1) in zip(at_start, after_up, strict=True)
        ],
        "restore": [
            (u1 - u0, s1 - s0) for (u0, s0), (u1, s1) in zip(after_up, after_down, strict=True)
        ],
    }
    for label, wall in (("upload", up_s), ("restore", down_s)):
        rows = spent[label]
        own_user, own_sys = rows[0]
        held_user, held_sys = sum(r[0] for r in rows[1:]), sum(r[1] for r in rows[1:])
        own, held = own_user + own_sys, held_user + held_sys
        print(
            f"CPU during {label} ({wall:.2f} s): owner {own:.2f} s (user {own_user:.2f}, "
            f"system {own_sys:.2f}; {own / size_mb * 1000:.1f} ms/MB, {own / wall:.2f} cores), "
            f"holders together {held:.2f} s (user {held_user:.2f}, system {held_sys:.2f}; "
            f"{held / size_mb * 1000:.1f} ms/MB, {held / wall:.2f} cores), busiest holder "
            f"{max(sum(r) for r in rows[1:]):.2f} s; all processes "
            f"{(own + held) / wall:.2f} of 2 cores"
        )
    for label, split, total in (
        ("upload", stages.seconds, sum(spent["upload"][0])),
        ("restore (parity blocks)", restore_stages.seconds, sum(spent["restore"][0])),
    ):
        print(f"owner's {label} CPU {total:.2f} s; the pipeline's stages alone (CPU seconds):")
        for name, seconds in split.items():
            print(
                f"  {name:<14} {seconds:6.2f} s  {seconds / size_mb * 1000:5.1f} ms/MB  "
                f"{100 * seconds / total:5.1f}% of the owner's"
            )
        rest = total - sum(split.values())
        print(
            f"  {'rest':<14} {rest:6.2f} s  {rest / size_mb * 1000:5.1f} ms/MB  "
            f"{100 * rest / total:5.1f}% (streams to holders, framing, trio, catalog, reading)"
        )


class Watch:
    """Polls every node's member list and runs pings from one node, until stopped."""

    def __init__(self, nodes: list[NodeProcess], pinger: NodeProcess, targets: list[NodeProcess]):
        self.nodes, self.pinger, self.targets = nodes, pinger, targets
        self.stop = threading.Event()
        self.marked: list[tuple[float, str, str, str]] = []  # (when, observer, subject, state)
        self.polls = 0
        self.poll_failures: list[str] = []
        self.slowest_poll = 0.0
        self.rtts: list[float] = []
        self.sent = self.received = 0
        self.ping_failures: list[str] = []

    def poll(self) -> None:
        clients = [
            (node.node_id[:8], AdminClient(node.data_dir, timeout=10)) for node in self.nodes
        ]
        while not self.stop.is_set():
            for name, client in clients:
                start = time.perf_counter()
                try:
                    rows = client.call("members")
                except PlexinodeError as exc:
                    self.poll_failures.append(f"{name}: {exc}")
                    continue
                self.slowest_poll = max(self.slowest_poll, time.perf_counter() - start)
                self.polls += 1
                for row in rows:
                    if row["state"] in ("suspect", "dead"):
                        self.marked.append((time.time(), name, row["node_id"][:8], row["state"]))
            self.stop.wait(0.2)

    def ping_once(self, target: NodeProcess) -> None:
        done = cli(
            self.pinger.data_dir, "--json", "ping", "--count", "20", "--interval", "0.05s",
            target.address, timeout=120,
        )  # fmt: skip
        if done.returncode != 0:
            self.ping_failures.append(done.stdout.strip() or done.stderr.strip())
            self.sent += 20
            return
        result = json.loads(done.stdout)
        self.rtts.extend(result["rtts_ms"])
        self.sent += result["sent"]
        self.received += result["received"]

    def ping(self) -> None:
        while not self.stop.is_set():
            for target in self.targets:
                if self.stop.is_set():
                    return
                self.ping_once(target)

    def summary(self) -> str:
        lost = self.sent - self.received
        return (
            f"{len(self.rtts)} pings answered of {self.sent} ({lost} lost), "
            f"p50 {percentile(self.rtts, 50):.2f} ms, p99 {percentile(self.rtts, 99):.2f} ms, "
            f"max {max(self.rtts, default=math.nan):.2f} ms"
        )


def membership_counters(nodes: list[NodeProcess]) -> dict[str, int]:
    """The membership counters that a suspicion moves, summed over `nodes`."""
    totals: dict[str, int] = {}
    for node in nodes:
        status = AdminClient(node.data_dir).call("status")["membership"]
        for group in ("probes", "claims"):
            for key in ("failed", "indirect", "inconclusive", "refuted", "declared_dead"):
                if key in status[group]:
                    totals[key] = totals.get(key, 0) + int(status[group][key])
    return totals


def part_liveness(args: argparse.Namespace, root: Path) -> None:
    k, n, mib = args.k, args.n, args.mib
    print(f"\n## liveness: a {mib} MiB backup, {args.nodes} processes, k = {k}, n = {n}")
    source = root / "live.bin"
    random_file(source, mib, seed=2)
    with network(root / "nodes", args.nodes, args.settle) as nodes:
        owner, pinger = nodes[0], nodes[1]
        targets = [owner, *nodes[2:]]
        idle = Watch(nodes, pinger, targets)
        for _ in range(args.idle_rounds):
            for target in targets:
                idle.ping_once(target)
        counters_before = membership_counters(nodes)
        busy = Watch(nodes, pinger, targets)
        threads = [threading.Thread(target=busy.poll), threading.Thread(target=busy.ping)]
        for thread in threads:
            thread.start()
        try:
            created, up_s = run(
                owner, "backup", "create", str(source), "-k", str(k), "-n", str(n),
                "--happy", str(args.happy),
            )  # fmt: skip
        finally:
            busy.stop.set()
            for thread in threads:
                thread.join()
        counters_after = membership_counters(nodes)
    source.unlink()
    print(
        f"backup create {up_s:.1f} s ({mib * MIB / MB / up_s:.1f} MB/s), "
        f"{len(created['holders'])} holders"
    )
    print(f"pings from {pinger.node_id[:8]} to the owner and holders, idle: {idle.summary()}")
    print(f"the same during the backup: {busy.summary()}")
    if busy.rtts and idle.rtts:
        print(
            f"  p50 {percentile(busy.rtts, 50) / percentile(idle.rtts, 50):.2f}x idle, "
            f"p99 {percentile(busy.rtts, 99) / percentile(idle.rtts, 99):.2f}x idle; "
            f"target p99 < 100 ms: {'met' if percentile(busy.rtts, 99) < 100 else 'MISSED'}"
        )
    for failure in busy.ping_failures + idle.ping_failures:
        print(f"  ping failed: {failure}")
    subjects = sorted({(observer, subject, state) for _, observer, subject, state in busy.marked})
    print(
        f"member lists polled {busy.polls} times (slowest answer in "
        f"{busy.slowest_poll * 1000:.0f} ms, {len(busy.poll_failures)} failed); "
        f"members marked suspect or dead: "
        f"{len(subjects)} (target 0)"
    )
    for observer, subject, state in subjects:
        print(f"  {observer} saw {subject} {state}")
    for failure in busy.poll_failures[:5]:
        print(f"  poll failed: {failure}")
    moved = {
        key: counters_after.get(key, 0) - counters_before.get(key, 0)
        for key in sorted(set(counters_before) | set(counters_after))
    }
    moved = {key: value for key, value in moved.items() if value}
    print(f"membership counters moved during the backup, all nodes: {moved or 'none'}")


def part_memory(args: argparse.Namespace, root: Path) -> None:
    print(
        f"\n## memory: the owner's peak RSS, {args.memory_nodes} processes, k = 2, n = 4 "
        f"(a fresh network per size)"
    )
    rows = []
    for mib in args.memory_mib:
        where = root / f"memory-{mib}"
        where.mkdir()
        source = where / "source.bin"
        digest = random_file(source, mib, seed=3 + mib)
        with network(where / "nodes", args.memory_nodes, args.settle) as nodes:
            owner = nodes[0]
            pid = owner.proc.pid
            idle = memory_kib(pid)
            reset_peak(pid)
            created, up_s = run(owner, "backup", "create", str(source), "-k", "2", "-n", "4")
            up_peak = memory_kib(pid)["VmHWM"]
            owner = restart(nodes, 0)
            pid = owner.proc.pid
            before_restore = memory_kib(pid)["VmRSS"]
            reset_peak(pid)
            dest = where / "restored.bin"
            _, down_s = run(owner, "backup", "restore", created["backup_id"], str(dest))
            down_peak = memory_kib(pid)["VmHWM"]
        same = sha256_of(dest) == digest
        shutil.rmtree(where)
        rows.append((mib, idle, up_peak, up_s, down_peak, down_s, same))
        print(
            f"{mib:5} MiB: owner idle RSS {idle['VmRSS'] / 1024:.0f} MiB (peak since start "
            f"{idle['VmHWM'] / 1024:.0f}); backup peak {up_peak / 1024:.0f} MiB in {up_s:.1f} s "
            f"({mib * MIB / MB / up_s:.1f} MB/s); restarted: RSS {before_restore / 1024:.0f} MiB; "
            f"restore peak {down_peak / 1024:.0f} MiB in "
            f"{down_s:.1f} s ({mib * MIB / MB / down_s:.1f} MB/s); SHA-256 "
            f"{'equal' if same else 'DIFFERENT'}",
            flush=True,
        )
    peak = max(max(r[2], r[4]) for r in rows) / 1024
    print(f"highest peak {peak:.0f} MiB (target < 256 MiB: {'met' if peak < 256 else 'MISSED'})")
    if len(rows) > 1:
        first, last = rows[0], rows[-1]
        print(
            f"from {first[0]} to {last[0]} MiB: backup peak {last[2] / first[2]:.2f}x, "
            f"restore peak {last[4] / first[4]:.2f}x (flat: 1.00x)"
        )


def part_incremental(args: argparse.Namespace, root: Path) -> None:
    k, n = args.k, args.n
    print(
        f"\n## incremental: {args.files} files of 1 MiB, {args.nodes} processes, k = {k}, n = {n}"
    )
    tree = root / "tree"
    rng = random.Random(5)
    files = [tree / f"d{i // 32:03}" / f"f{i:04}" for i in range(args.files)]
    for path in files:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rng.randbytes(MIB))
    changed = files[3 :: max(1, len(files) // 10)][:10]
    code = ("-k", str(k), "-n", str(n), "--happy", str(args.happy))
    with network(root / "nodes", args.nodes, args.settle) as nodes:
        owner = nodes[0]
        first, first_s = run(owner, "backup", "create", str(tree), *code)
        second, second_s = run(owner, "backup", "create", str(tree), *code)
        for path in changed:
            path.write_bytes(rng.randbytes(MIB))
        third, third_s = run(owner, "backup", "create", str(tree), *code)
    shutil.rmtree(tree)
    shares = len(first["holders"])
    for label, result, seconds in (
        ("first", first, first_s),
        ("unchanged", second, second_s),
        (f"{len(changed)} files rewritten", third, third_s),
    ):
        print(
            f"{label:<18} {seconds:6.1f} s  segments {result['segments']:5}  share bytes sent "
            f"{result['bytes_sent']:>13,}  holders {len(result['holders'])}"
        )
    encoded = len(changed) * MIB * n / k
    print(
        f"unchanged: {second['bytes_sent']} share bytes sent (target 0: "
        f"{'met' if second['bytes_sent'] == 0 else 'MISSED'})"
    )
    print(
        f"{len(changed)} files rewritten: {third['bytes_sent'] / encoded:.2f}x their encoded size "
        f"({len(changed)} MiB x {n}/{k} = {encoded:,.0f} bytes; target <= 2x: "
        f"{'met' if third['bytes_sent'] <= 2 * encoded else 'MISSED'})"
    )
    if shares < n:
        print(f"  (only {shares} holders took shares: {n - shares} share indices not sent)")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--throughput", action="store_true")
    parser.add_argument("--liveness", action="store_true")
    parser.add_argument("--memory", action="store_true")
    parser.add_argument("--incremental", action="store_true")
    parser.add_argument("--mib", type=int, default=256, help="throughput and liveness data")
    parser.add_argument("--nodes", type=int, default=11, help="processes, the owner included")
    parser.add_argument("-k", type=int, default=3)
    parser.add_argument("-n", type=int, default=10)
    parser.add_argument("--happy", type=int, default=7)
    parser.add_argument("--settle", type=float, default=5.0, help="seconds after all are alive")
    parser.add_argument("--idle-rounds", type=int, default=2, help="baseline ping rounds")
    parser.add_argument(
        "--memory-mib", type=lambda t: [int(x) for x in t.split(",")], default=[512, 1024, 2048]
    )
    parser.add_argument("--memory-nodes", type=int, default=5)
    parser.add_argument("--files", type=int, default=1024, help="incremental: files of 1 MiB")
    parser.add_argument("--dir", type=Path, default=None, help="where the temporary dir goes")
    args = parser.parse_args()
    every = {
        "throughput": part_throughput,
        "liveness": part_liveness,
        "memory": part_memory,
        "incremental": part_incremental,
    }
    parts = {name: fn for name, fn in every.items() if getattr(args, name)} or every
    header("backups among real processes on loopback")
    print(f"# {' '.join(sys.argv)}")
    for name, fn in parts.items():
        with tempfile.TemporaryDirectory(prefix=f"plexinode-bench-{name}-", dir=args.dir) as tmp:
            start = time.monotonic()
            fn(args, Path(tmp))
            print(f"({name}: {time.monotonic() - start:.0f} s in all)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
