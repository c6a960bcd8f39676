"""Robustness: a million hostile datagrams into a running DHT node, over real UDP.

    python scripts/bench/bench_dht_fuzz.py [--count 1000000] [--nodes 20] [--seed 1]
                                           [--senders 1] [--identities 300] [--queue-kib 64]
                                           [--answer] [--dense-counters] [--samples 20]
                                           [--id-difficulty 8] [--rss-bound 10]

Starts --nodes real ``Node``s in this process on 127.0.0.1 with the real ``SocketTransport``,
each bootstrapping from the first, and picks one of them as the victim. --senders processes
(multiprocessing, spawn: their CPU is not the node's) then send --count datagrams in all to the
victim's UDP port from plain sockets, drawn from the categories of
``plexinode/testing/fuzz_datagrams.py`` (shared with ``tests/sim/test_dht_fuzz.py``): random
bytes; truncated, extended and bit-flipped copies of real signed datagrams (captured from the
honest network while it formed, or freshly sealed); forged signatures; replays; and, most of
all, datagrams validly signed by a pool of --identities fuzzer identities, addressed to the
victim with fresh counters, whose payloads are broken envelopes, unknown types, wrong fields,
FIND_NODE / FIND_VALUE / STORE requests with hostile contents (invalid records of every kind)
and replies to requests never sent. With --answer the senders also answer every request the
victim sends their identities (it pings back each requester it does not know) with hostile
replies: wrong types, lying contacts, invalid records, duplicates, wrong signers.

Pacing: the senders keep the victim's UDP receive queue below --queue-kib KiB of kernel memory
(read from /proc/net/udp every few datagrams; a loopback datagram takes 2-5 KiB of it, and the
default buffer is 208 KiB), so that the datagrams reach the node rather than the kernel's drop
counter, and honest datagrams still find room. --queue-kib 0 sends as fast as the senders can
(kernel drops are reported either way).

While the flood runs, honest nodes keep doing lookups, one every 0.2 s of each kind: between
two random honest nodes, of the victim (the victim must answer itself), and by the victim.
The same lookups run before and after the flood. The node process's RSS is sampled every
--count / --samples datagrams sent. Verdict: no node task died and no handler raised, the
victim answers a ping after the flood, RSS grew at most --rss-bound MiB after the warm-up
(the first replay window, 60 s, or the first 10% of datagrams, whichever is later: per-sender
replay state legitimately fills during one window), honest lookups succeeded at least 99% of
the time during the flood and always after it. To tell a leak from the allocator's high-water
marks, the objects tracked by the garbage collector are counted by type at the end of the
warm-up and at the end of the flood, and the types that grew most are printed.

Identities: the network's ID puzzle is --id-difficulty bits (8 by default, not the production
16, so that the 320 seeded identities solving it take seconds to find: the victim's cost per
datagram is the same whatever the difficulty); --dense-counters makes the fuzzer identities
count +1 per datagram, which maximises the replay state the victim keeps for them.
"""

from __future__ import annotations

import argparse
import collections
import gc
import multiprocessing
import multiprocessing.sharedctypes
import multiprocessing.synchronize
import random
import socket
import statistics
import sys
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from common import header, percentile, rss_bytes

from plexinode.config import Settings
from plexinode.dht.records import Reason
from plexinode.dht.service import DhtService
from plexinode.dht.settings import DhtSettings
from plexinode.net.address import Address
from plexinode.net.datagram import DatagramService
from plexinode.net.transport import SocketTransport
from plexinode.node import Node
from plexinode.testing.capture import Capture, capturing
from plexinode.testing.fuzz_datagrams import (
    ANSWER_KINDS,
    CATEGORIES,
    OUTCOMES,
    Fuzzer,
    solving_identity,
)

_SPAWN = multiprocessing.get_context("spawn")

#: Datagrams a sender sends between two looks at the victim's receive queue (a look at
#: /proc/net/udp costs ~0.1 ms).
PROBE_EVERY = 8

#: Seconds between two lookups of one kind (each kind runs in its own task).
LOOKUP_PAUSE = 0.2
#: Lookups of each kind before and after the flood.
LOOKUPS_AROUND = 20
#: Replay window of the default settings: per-sender replay state fills during the first one.
REPLAY_WINDOW = Settings().datagram.replay_window
KINDS = ("honest", "of_victim", "by_victim")


# -- sender processes -----------------------------------------------------------------------------


def _sender(
    index: int,
    count: int,
    target: tuple[str, int],
    victim_key: bytes,
    known_keys: list[bytes],
    captured: list[bytes],
    seed: int,
    identities: int,
    dense: bool,
    difficulty: int,
    answer: bool,
    queue_limit: int,
    go: multiprocessing.synchronize.Event,
    stop: Any,
    sent: Any,
    result: Connection,
) -> None:
    fuzzer = Fuzzer(
        victim_key,
        seed=seed * 1000 + index,
        identities=identities,
        first_identity=index * identities,
        clock=time.time,
        known_keys=known_keys,
        captured=captured,
        id_difficulty=difficulty,
        dense_counters=dense,
    )
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    port = target[1]
    stalls = 0
    errors = 0
    answers = 0
    go.wait()
    started = time.perf_counter()
    for n in range(count):
        if n % PROBE_EVERY == 0 and stop.value:
            break  # the victim died
        if queue_limit and n % PROBE_EVERY == 0:
            # Keep the victim's receive queue short: what overflows it is dropped by the kernel
            # and never reaches the node (and honest datagrams need room too).
            waited_since = time.perf_counter()
            while udp_socket(port)[0] > queue_limit:
                if time.perf_counter() - waited_since > 5:
                    stalls += 1  # the victim stopped reading: send anyway
                    break
                time.sleep(0.0002)
        _name, data = fuzzer.next()
        try:
            sock.sendto(data, target)
        except OSError:
            errors += 1
        sent[index] = n + 1
        if answer and n % 16 == 0:
            answers += _answer(sock, fuzzer)
    elapsed = time.perf_counter() - started
    sock.close()
    result.send(
        {
            "counts": dict(fuzzer.counts),
            "elapsed": elapsed,
            "stalls": stalls,
            "errors": errors,
            "answers": answers,
        }
    )


def _answer(sock: socket.socket, fuzzer: Fuzzer) -> int:
    """Answer every request waiting in the socket that is addressed to a fuzzer identity."""
    answered = 0
    sock.setblocking(False)
    try:
        while True:
            try:
                data, address = sock.recvfrom(2048)
            except (BlockingIOError, InterruptedError):
                return answered
            for _kind, reply in fuzzer.answer(data):
                try:
                    sock.sendto(reply, address)
                    answered += 1
                except OSError:
                    pass
    finally:
        sock.setblocking(True)


# -- the node process ----------------------------------------------------------------------------


def rss_mib() -> float:
    """Resident set size of this process, in MiB."""
    return rss_bytes() / (1 << 20)


def udp_socket(port: int) -> tuple[int, int]:
    """(bytes of kernel memory queued, datagrams dropped) at the UDP socket bound to
    127.0.0.1:`port`, from /proc/net/udp (Linux); (0, 0) elsewhere."""
    key = b"0100007F:%04X " % port
    try:
        with open("/proc/net/udp", "rb") as f:
            table = f.read()
        at = table.find(key)
        if at < 0:
            return 0, 0
        parts = table[at : table.index(b"\n", at)].split()
        return int(parts[3].split(b":")[1], 16), int(parts[-1])
    except (OSError, ValueError, IndexError):
        return 0, 0


def kernel_drops(port: int) -> int:
    """Datagrams the kernel dropped at the UDP socket bound to `port`."""
    return udp_socket(port)[1]


def census() -> collections.Counter[str]:
    """Live objects tracked by the garbage collector (containers, instances), by type."""
    return collections.Counter(type(o).__qualname__ for o in gc.get_objects())


@dataclass
class Sample:
    sent: int
    received: int
    elapsed: float
    rss: float
    routing: int
    replay_senders: int
    invalid_senders: int
    records: int


@dataclass
class Lookups:
    """Lookup outcomes per phase and kind: (found, seconds)."""

    by: dict[tuple[str, str], list[tuple[bool, float]]] = field(
        default_factory=lambda: collections.defaultdict(list)
    )

    def add(self, phase: str, kind: str, found: bool, seconds: float) -> None:
        self.by[phase, kind].append((found, seconds))

    def rate(self, phase: str) -> tuple[int, int]:
        results = [r for (p, _k), rs in self.by.items() if p == phase for r in rs]
        return sum(f for f, _ in results), len(results)


async def run(args: argparse.Namespace) -> bool:
    rng = random.Random(args.seed)
    capture = Capture(args.seed)
    crashed: dict[int, BaseException] = {}
    running: set[int] = set()
    nodes: list[Node] = []

    async def guarded(index: int, node: Node, *, task_status: Any) -> None:
        running.add(index)
        try:
            await node.run(task_status=task_status)
        except Exception as exc:
            crashed[index] = exc
            print(f"!! node {index} died: {exc!r}", flush=True)
        finally:
            running.discard(index)

    async with trio.open_nursery() as nursery:
        started = time.perf_counter()
        first: Address | None = None
        for i in range(args.nodes):
            settings = Settings(
                listen=Address("127.0.0.1", 0),
                bootstrap=(first,) if first else (),
                dht=DhtSettings(id_difficulty=args.id_difficulty),
            )
            node = Node(
                solving_identity(b"honest", args.seed * 1000 + i, args.id_difficulty),
                settings,
                capturing(SocketTransport(), capture),
            )
            address = await nursery.start(guarded, i, node)
            first = first or address
            nodes.append(node)
        for node in nodes:
            with trio.fail_after(60):
                await node.dht.joined.wait()
        await trio.sleep(3)  # let the first refresh passes finish
        print(f"# {args.nodes} nodes joined in {time.perf_counter() - started:.1f} s")
        victim_index = rng.randrange(1, args.nodes)
        victim = nodes[victim_index]
        honest = [n for n in nodes if n is not victim]
        assert victim.address is not None
        print(f"# victim: node {victim_index} {victim.node_id.short()} at {victim.address}")
        # The services outlive a node that died (Node.datagrams raises once it stopped).
        datagrams, dht = victim.datagrams, victim.dht
        lookups = Lookups()
        errors_shown = collections.Counter[str]()

        async def lookup(phase: str, kind: str, lrng: random.Random) -> None:
            a, b = lrng.sample(honest, 2)
            if kind == "of_victim":
                b = victim
            elif kind == "by_victim":
                a = victim
            t0 = time.perf_counter()
            try:
                found = (await a.dht.find_node(b.node_id)).found_target
            except Exception as exc:
                errors_shown[repr(exc)] += 1
                if errors_shown[repr(exc)] <= 3:
                    print(f"!! lookup raised {exc!r}", flush=True)
                found = False
            lookups.add(phase, kind, found, time.perf_counter() - t0)

        async def lookups_around(phase: str) -> None:
            lrng = random.Random(f"{args.seed}-{phase}")
            for _ in range(LOOKUPS_AROUND):
                for kind in KINDS:
                    await lookup(phase, kind, lrng)
                    await trio.sleep(LOOKUP_PAUSE / len(KINDS))

        await lookups_around("before")
        capture.enabled = False
        print(f"# captured {len(capture.samples)} of {capture.seen} honest datagrams")
        rss_before = rss_mib()

        # The flood.
        sent = _SPAWN.RawArray("q", args.senders)
        stop = _SPAWN.RawValue("b", 0)
        go = _SPAWN.Event()
        per_sender = [
            args.count // args.senders + (i < args.count % args.senders)
            for i in range(args.senders)
        ]
        pipes = []
        procs = []
        for i, share in enumerate(per_sender):
            receiver, sender_end = _SPAWN.Pipe(duplex=False)
            proc = _SPAWN.Process(
                target=_sender,
                args=(
                    i,
                    share,
                    (victim.address.host, victim.address.port),
                    victim.identity.public_key,
                    [n.identity.public_key for n in nodes],
                    capture.samples,
                    args.seed,
                    args.identities // args.senders,
                    args.dense_counters,
                    args.id_difficulty,
                    args.answer,
                    args.queue_kib * 1024,
                    go,
                    stop,
                    sent,
                    sender_end,
                ),
                daemon=True,
            )
            proc.start()
            pipes.append(receiver)
            procs.append(proc)
        await trio.sleep(2)  # the senders import plexinode and build their identities
        stats = datagrams.stats
        received_at_start = stats["received"]
        drops_at_start = kernel_drops(victim.address.port)
        flood_done = trio.Event()
        samples: list[Sample] = []
        every = max(1, args.count // args.samples)

        censuses: list[tuple[int, collections.Counter[str]]] = []

        def sample(n_sent: int, t0: float) -> None:
            elapsed = time.perf_counter() - t0
            if not censuses and elapsed >= REPLAY_WINDOW and n_sent >= args.count // 10:
                censuses.append((n_sent, census()))  # the warm-up is over
            summary = datagrams.summary()
            samples.append(
                Sample(
                    n_sent,
                    stats["received"] - received_at_start,
                    time.perf_counter() - t0,
                    rss_mib(),
                    len(dht.routing),
                    summary["replay_senders"],
                    len(dht.invalid_from),
                    len(dht.records),
                )
            )

        async def monitor(t0: float) -> None:
            next_at = every
            last_print = t0
            while not flood_done.is_set():
                total = sum(sent)
                if victim_index not in running and not stop.value:
                    stop.value = 1
                    print(f"!! the victim died after {total:,} datagrams: stopping", flush=True)
                while total >= next_at:
                    sample(next_at, t0)
                    next_at += every
                if time.perf_counter() - last_print > 30:
                    last_print = time.perf_counter()
                    rate = total / (last_print - t0)
                    print(f"#   {total:,} sent, {rate:,.0f}/s, RSS {rss_mib():.1f} MiB", flush=True)
                await trio.sleep(0.01)

        async def lookups_during() -> None:
            async def worker(kind: str) -> None:
                lrng = random.Random(f"{args.seed}-during-{kind}")
                while not flood_done.is_set():
                    await lookup("during", kind, lrng)
                    await trio.sleep(LOOKUP_PAUSE)

            async with trio.open_nursery() as inner:
                for kind in KINDS:
                    inner.start_soon(worker, kind)

        pings: list[float] = []
        ping_failures = 0

        async def ping_victim() -> None:
            nonlocal ping_failures
            while not flood_done.is_set():
                try:
                    pong = await honest[0].ping(victim.address, node_id=victim.node_id)
                    pings.append(pong["rtt_ms"])
                except Exception:
                    ping_failures += 1
                await trio.sleep(0.5)

        print(
            f"# flood: {args.count:,} datagrams from {args.senders} sender process(es)", flush=True
        )
        async with trio.open_nursery() as flood:
            t0 = time.perf_counter()
            go.set()
            flood.start_soon(monitor, t0)
            flood.start_soon(lookups_during)
            flood.start_soon(ping_victim)
            results = []
            for pipe in pipes:
                results.append(await trio.to_thread.run_sync(pipe.recv))
            flood_wall = time.perf_counter() - t0
            # Let the victim drain its socket (honest traffic never stops, so wait for the
            # kernel's queue to empty rather than for the counter to stand still).
            for _ in range(600):  # at most 60 s
                if stop.value or not udp_socket(victim.address.port)[0]:
                    break
                await trio.sleep(0.1)
            await trio.sleep(0.5)
            sample(sum(sent), t0)
            censuses.append((sum(sent), census()))
            flood_done.set()
        for proc in procs:
            await trio.to_thread.run_sync(proc.join)

        await trio.sleep(5)  # verification pings of the fuzzer identities time out
        await lookups_around("after")
        try:
            pong = await honest[0].ping(victim.address, node_id=victim.node_id)
            after_ping: float | None = pong["rtt_ms"]
        except Exception as exc:
            print(f"!! ping after the flood failed: {exc!r}")
            after_ping = None
        rss_after = rss_mib()
        ok = report(
            args,
            datagrams=datagrams,
            dht=dht,
            alive=victim_index in running,
            crashed=crashed,
            results=results,
            flood_wall=flood_wall,
            received=stats["received"] - received_at_start,
            kernel=kernel_drops(victim.address.port) - drops_at_start,
            samples=samples,
            censuses=censuses,
            rss=(rss_before, rss_after),
            lookups=lookups,
            pings=pings,
            ping_failures=ping_failures,
            after_ping=after_ping,
        )
        for node in nodes:
            node.stop()
    return ok


def report(
    args: argparse.Namespace,
    *,
    datagrams: DatagramService,
    dht: DhtService,
    alive: bool,
    crashed: dict[int, BaseException],
    results: list[dict[str, Any]],
    flood_wall: float,
    received: int,
    kernel: int,
    samples: list[Sample],
    censuses: list[tuple[int, collections.Counter[str]]],
    rss: tuple[float, float],
    lookups: Lookups,
    pings: list[float],
    ping_failures: int,
    after_ping: float | None,
) -> bool:
    counts: collections.Counter[str] = collections.Counter()
    for r in results:
        counts.update(r["counts"])
    total = sum(counts[c.name] for c in CATEGORIES)
    for index, exc in sorted(crashed.items()):
        print(f"!! node {index} died: {exc!r}")
    print(f"\n## datagrams sent: {total:,} in {flood_wall:.1f} s ({total / flood_wall:,.0f}/s)")
    for c in CATEGORIES:
        n = counts[c.name]
        print(f"  {c.name:26} {n:>9,}  {n / total:6.1%}  (share {c.share}%)  {c.what}")
    answers = sum(counts[k] for k in ANSWER_KINDS)
    if answers:
        sent_answers = sum(r["answers"] for r in results)
        print(f"  answers to the victim's requests: {answers:,} ({sent_answers:,} datagrams)")
        for kind in ANSWER_KINDS:
            print(f"    {kind:26} {counts[kind]:>9,}")
    stalls = sum(r["stalls"] for r in results)
    errors = sum(r["errors"] for r in results)
    print(f"  sender stalls (victim not reading for 5 s): {stalls}; send errors: {errors}")

    stats = datagrams.stats
    summary = datagrams.summary()
    print(
        f"\n## victim: DatagramService counters (whole run; {received:,} received during the flood)"
    )
    print(f"  kernel drops at the victim's socket during the flood: {kernel:,}")
    for key in sorted(stats):
        print(f"  {key:26} {stats[key]:>12,}")
    accounted = sum(stats[k] for k in OUTCOMES)
    print(
        f"  received = sum of outcomes: {stats['received']:,} = {accounted:,} "
        f"({'ok' if accounted == stats['received'] else 'MISMATCH'})"
    )
    print(
        f"  summary: pending_requests={summary['pending_requests']}, "
        f"replay_senders={summary['replay_senders']}"
    )
    print("\n## victim: DHT")
    print(f"  routing table: {len(dht.routing)} contacts; stats {dict(dht.routing.stats)}")
    print(f"  invalid_from: {len(dht.invalid_from)} senders, {dht.invalid_from.total():,} records")
    refused = {str(r): dht.records.stats[r] for r in Reason if dht.records.stats[r]}
    print(f"  records held: {len(dht.records)}; refused by reason: {refused}")
    other = {k: v for k, v in dht.records.stats.items() if k not in set(Reason)}
    if other:
        print(f"  records refused by limits: {other}")
    if hasattr(dht, "record_stats"):
        print(f"  record maintenance: {dict(dht.record_stats)}")

    print("\n## memory: RSS of the node process (all nodes), sampled as the flood progressed")
    print(f"  before the flood {rss[0]:.1f} MiB, after {rss[1]:.1f} MiB")
    print(
        "      sent   received  elapsed s   RSS MiB  routing  replay_senders  invalid_from  records"
    )
    for s in samples:
        print(
            f"  {s.sent:>9,} {s.received:>9,} {s.elapsed:>10.1f} {s.rss:>9.1f} {s.routing:>8} "
            f"{s.replay_senders:>15} {s.invalid_senders:>13} {s.records:>8}"
        )
    warm = [s for s in samples if s.elapsed >= REPLAY_WINDOW and s.sent >= args.count // 10]
    if len(warm) >= 2:
        growth = max(s.rss for s in warm) - warm[0].rss
        span = warm[-1].sent - warm[0].sent
        slope = (warm[-1].rss - warm[0].rss) / span * 100_000 * 1024 if span else 0.0
        print(
            f"  after warm-up (from {warm[0].sent:,} sent, {warm[0].elapsed:.0f} s): growth "
            f"{growth:+.1f} MiB (max - first), {slope:+.0f} KiB per 100,000 datagrams"
        )
        flat = growth <= args.rss_bound
    else:
        growth = float("nan")
        print("  too few samples after the warm-up to judge (run longer)")
        flat = False

    if len(censuses) == 2:
        (at, first), (end, last) = censuses
        grown = (last - first).most_common(8)
        print(
            f"  objects tracked by the GC: {first.total():,} at {at:,} sent, {last.total():,} "
            f"at {end:,}; most grown types: {', '.join(f'{k} +{v:,}' for k, v in grown) or '-'}"
        )

    print("\n## honest lookups (found the target / done; wall ms median / p99)")
    for phase in ("before", "during", "after"):
        for kind in KINDS:
            rs = lookups.by.get((phase, kind), [])
            if not rs:
                continue
            found = sum(f for f, _ in rs)
            ms = [t * 1000 for _, t in rs]
            print(
                f"  {phase:7} {kind:10} {found:>5}/{len(rs):<5} {found / len(rs):7.1%}   "
                f"{statistics.median(ms):7.1f} / {percentile(ms, 99):7.1f}"
            )
    if pings:
        print(
            f"  pings of the victim during the flood: {len(pings)} answered, {ping_failures} "
            f"failed; RTT median {statistics.median(pings):.1f} ms, "
            f"p99 {percentile(pings, 99):.1f} ms"
        )

    during_found, during_n = lookups.rate("during")
    after_found, after_n = lookups.rate("after")
    checks = {
        "no crash": not crashed and alive and stats["handler_error"] == 0,
        "victim answers after": after_ping is not None,
        f"RSS flat (<= {args.rss_bound} MiB after warm-up)": flat,
        "lookups during >= 99%": during_n > 0 and during_found >= 0.99 * during_n,
        "lookups after 100%": after_n > 0 and after_found == after_n,
    }
    verdict = "PASS" if all(checks.values()) else "FAIL"
    detail = "; ".join(f"{name}: {'ok' if good else 'NO'}" for name, good in checks.items())
    print(
        f"\nVERDICT: {verdict} - {total:,} datagrams; victim task "
        f"{'alive' if alive else 'DEAD'}, handler errors {stats['handler_error']}; RSS growth "
        f"after warm-up {growth:+.1f} MiB; lookups during {during_found}/{during_n}, after "
        f"{after_found}/{after_n}; {detail}"
    )
    return verdict == "PASS"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--nodes", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--senders", type=int, default=1)
    parser.add_argument("--identities", type=int, default=300, help="fuzzer identities in all")
    parser.add_argument(
        "--queue-kib",
        type=int,
        default=64,
        help="keep the victim's UDP receive queue below this (KiB of kernel memory; the "
        "default buffer is 208 KiB); 0: no pacing",
    )
    parser.add_argument("--answer", action="store_true", help="answer the victim's requests")
    parser.add_argument(
        "--dense-counters",
        action="store_true",
        help="counters +1 per datagram (most replay state per identity) instead of the clock",
    )
    parser.add_argument(
        "--id-difficulty",
        type=int,
        default=8,
        help="the network's ID puzzle (bits); every identity here is searched to solve it",
    )
    parser.add_argument("--samples", type=int, default=20, help="RSS samples over the flood")
    parser.add_argument("--rss-bound", type=float, default=10.0, help="MiB after warm-up")
    args = parser.parse_args()
    if args.nodes < 3 or args.senders < 1 or args.identities < 2 * args.senders:
        parser.error("need --nodes >= 3, --senders >= 1 and 2 identities per sender")
    header("DHT robustness: hostile datagrams into a running node")
    print(f"# {' '.join(sys.argv)}")
    print(
        f"# seed {args.seed}; {args.identities} fuzzer identities; "
        f"queue limit {args.queue_kib} KiB; answer {args.answer}; "
        f"dense counters {args.dense_counters}; "
        f"ID puzzle {args.id_difficulty} bits"
    )
    begun = time.perf_counter()
    ok = trio.run(run, args)
    print(f"# total wall time {time.perf_counter() - begun:.1f} s")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
