#!/usr/bin/env python3
"""Stream exhaustion against a real node on loopback: honest service beside idle, same run.

    python scripts/bench/bench_stream_flood.py [--identities 120] [--half-open 4000]
        [--rounds 100] [--interval 0.1] [--retry 0.5] [--settle 10] [--pin]

A target node runs as a real `plexinode start` process on 127.0.0.1 (ID puzzle lowered to
DIFFICULTY bits for the run, so that the attacker's identities are cheap). An honest node runs
in this process, also on 127.0.0.1, and measures three operations against the target, one after
the other, `--rounds` times each, `--interval` seconds apart (10 a second: well within what one
host may open, `stream.host_connection_rate`, and what one peer may ask,
`datagram.peer_request_rate`): a datagram ping, a stream ping (`echo/1`: a new connection, the
handshake and one echo) and a membership push-pull (`member-sync/1`).

(a) idle: the operations with nothing else going on;
(b) under attack: an attacker process on another host address (127.0.0.2) with `--identities`
    node IDs, each trying to hold two idle `echo/1` streams at all times (trying again
    `--retry` seconds after the target refuses or closes one: 480 attempts a second by
    default), plus `--half-open` connections that never send a byte (opened 16 at a time).
    Once every half-open connection is made and `--settle` seconds have passed, the
    operations are measured again while the attack goes on. The attacker runs on the same
    machine, so it competes with the target and the honest node for the CPU.

Printed: the success rate and the p50/p99 latency of each operation in (a) and (b) and the p99
ratio; the target's open file descriptors (/proc/PID/fd) and RSS, idle and the peak under
attack (sampled every 0.2 s); what the attacker managed to hold; the target's `streams`
counters. Targets: 100% success, p99 within 2x of idle, at most 600 descriptors.

With ``--pin``, the attacker process runs on one CPU and the target and the honest node (every
thread of both processes) on another (``os.sched_setaffinity``), for the idle measurement as
well as the attack: the attacker then cannot take CPU time from the target, so what remains
of the p99's growth is the cost of the attack on the target itself (its accepts, refusals and
handshakes), not the competition for the cores. Other processes on the machine still share
both CPUs.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import multiprocessing
import multiprocessing.synchronize
import os
import sys
import tempfile
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
import trio
from common import header, percentile

from plexinode.config import Settings
from plexinode.dht.settings import DhtSettings
from plexinode.errors import HandshakeError, PlexinodeError
from plexinode.identity import Identity, NodeId
from plexinode.membership.syncing import Seed
from plexinode.net import echo
from plexinode.net.address import Address
from plexinode.net.pinging import PingOptions
from plexinode.net.secure import secure_connect
from plexinode.net.transport import SocketTransport
from plexinode.node import Node
from plexinode.testing.processes import NodeProcess, cli_json, environ
from plexinode.wire import envelope
from plexinode.wire.messages import StreamOpen

#: The ID puzzle of the run: low, so that 120 identities take well under a second to make.
DIFFICULTY = 4
ATTACKER_HOST = "127.0.0.2"
#: Streams each attacking identity tries to hold at once (the per-node cap is 8, the per-host
#: cap 128: 120 identities x 2 is well beyond the host's share).
STREAMS_PER_IDENTITY = 2
_SPAWN = multiprocessing.get_context("spawn")


# -- the attacker (a process of its own) ---------------------------------------------------------


def pin(pid: int, cpus: set[int]) -> None:
    """Pin every thread of process `pid` to `cpus` (threads it starts later inherit that)."""
    for task in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(ProcessLookupError):
            os.sched_setaffinity(int(task), cpus)


def attack(
    cpus: set[int] | None,
    address: str,
    node_id: str,
    identities: int,
    half_open: int,
    retry: float,
    flooded: multiprocessing.synchronize.Event,
    stop: multiprocessing.synchronize.Event,
    result: Connection,
) -> None:
    if cpus is not None:
        os.sched_setaffinity(0, cpus)
    trio.run(
        _attack,
        Address.parse(address),
        NodeId.parse(node_id),
        identities,
        half_open,
        retry,
        flooded,
        stop,
        result,
    )


async def _attack(
    address: Address,
    node_id: NodeId,
    identities: int,
    half_open: int,
    retry: float,
    flooded: multiprocessing.synchronize.Event,
    stop: multiprocessing.synchronize.Event,
    result: Connection,
) -> None:
    idents = [Identity.generate(difficulty=DIFFICULTY) for _ in range(identities)]
    counts: collections.Counter[str] = collections.Counter()
    held = [0, 0]  # now, peak

    async def connect() -> trio.SocketStream:
        return await trio.open_tcp_stream(address.host, address.port, local_address=ATTACKER_HOST)

    async def hold(identity: Identity) -> None:
        while True:
            try:
                with trio.fail_after(10):
                    raw = await connect()
                    secure = await secure_connect(raw, identity, expected_node_id=node_id)
                    await secure.send(envelope.encode(StreamOpen(echo.ECHO_PROTOCOL)))
            except (HandshakeError, trio.TooSlowError, OSError, trio.BrokenResourceError):
                counts["refused_before_stream"] += 1
                await trio.sleep(retry)
                continue
            counts["streams_opened"] += 1
            held[0] += 1
            held[1] = max(held)
            with contextlib.suppress(PlexinodeError, trio.EndOfChannel, trio.BrokenResourceError):
                await secure.receive()  # until the target closes it: refused, or idle
            held[0] -= 1
            counts["streams_closed_by_target"] += 1
            await trio.aclose_forcefully(secure)
            await trio.sleep(retry)

    sockets = []

    async def flood(count: int) -> None:
        for _ in range(count):
            while True:
                try:
                    sockets.append(await connect())
                    break
                except OSError:
                    counts["half_open_failed"] += 1
        counts["half_open_made"] = len(sockets)

    async def floods() -> None:
        async with trio.open_nursery() as nursery:
            for i in range(16):
                nursery.start_soon(flood, half_open // 16 + (i < half_open % 16))
        flooded.set()
        await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        for identity in idents:
            for _ in range(STREAMS_PER_IDENTITY):
                nursery.start_soon(hold, identity)
        nursery.start_soon(floods)
        await trio.to_thread.run_sync(stop.wait)
        nursery.cancel_scope.cancel()
    result.send({**counts, "streams_held_at_end": held[0], "streams_held_peak": held[1]})


# -- the measurement -----------------------------------------------------------------------------


def fds_and_rss(pid: int) -> tuple[int, int]:
    """Open file descriptors and resident bytes of process `pid`."""
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    with open(f"/proc/{pid}/status") as f:
        rss_kib = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    return fds, rss_kib * 1024


async def measure(
    node: Node, target: Address, target_id: NodeId, rounds: int, interval: float
) -> dict[str, tuple[int, list[float]]]:
    """Run each operation `rounds` times: (successes, latencies in ms) per operation."""
    out: dict[str, tuple[int, list[float]]] = {}
    seed = Seed(target, target_id)

    async def datagram_ping() -> bool:
        await node.ping(target, node_id=target_id)
        return True

    async def stream_ping() -> bool:
        await node.ping(target, node_id=target_id, options=PingOptions(via="stream"))
        return True

    async def push_pull() -> bool:
        return await node.membership.syncing.sync_with(seed)

    for name, operation in (
        ("datagram ping", datagram_ping),
        ("stream ping", stream_ping),
        ("push-pull", push_pull),
    ):
        ok = 0
        latencies = []
        for _ in range(rounds):
            started = trio.current_time()
            try:
                with trio.fail_after(30):
                    success = await operation()
            except (PlexinodeError, trio.TooSlowError, OSError):
                success = False
            if success:
                ok += 1
                latencies.append((trio.current_time() - started) * 1000)
            await trio.sleep(interval)
        out[name] = (ok, latencies)
    return out


async def run(args: argparse.Namespace, target: NodeProcess) -> dict[str, Any]:
    target_address = Address.parse(target.address)
    target_id = NodeId.parse(target.node_id)
    pid = target.proc.pid
    settings = Settings(
        listen=Address("127.0.0.1", 0),
        bootstrap=(target_address,),
        dht=DhtSettings(id_difficulty=DIFFICULTY),
    )
    honest = Node(Identity.generate(difficulty=DIFFICULTY), settings, SocketTransport())
    report: dict[str, Any] = {}
    samples: list[tuple[int, int]] = []

    async def sample() -> None:
        while True:
            samples.append(fds_and_rss(pid))
            await trio.sleep(0.2)

    async with trio.open_nursery() as nursery:
        await nursery.start(honest.run)
        await honest.membership.syncing.sync_with(Seed(target_address, target_id))
        report["idle_fds_rss"] = fds_and_rss(pid)
        report["idle"] = await measure(
            honest, target_address, target_id, args.rounds, args.interval
        )

        flooded, stop = _SPAWN.Event(), _SPAWN.Event()
        receiver, sender = _SPAWN.Pipe(duplex=False)
        attacker = _SPAWN.Process(
            target=attack,
            args=(
                args.attacker_cpus,
                target.address,
                target.node_id,
                args.identities,
                args.half_open,
                args.retry,
                flooded,
                stop,
                sender,
            ),
        )
        attacker.start()
        try:
            nursery.start_soon(sample)
            started = trio.current_time()
            while not flooded.wait(0):  # (and fail at once if the attacker failed)
                if not attacker.is_alive():
                    raise RuntimeError(f"the attacker exited with {attacker.exitcode}")
                await trio.sleep(0.2)
            report["flooded_after_s"] = trio.current_time() - started
            await trio.sleep(args.settle)
            report["attack"] = await measure(
                honest, target_address, target_id, args.rounds, args.interval
            )
            report["attack_fds_rss_peak"] = (
                max(s[0] for s in samples),
                max(s[1] for s in samples),
            )
            report["status"] = await trio.to_thread.run_sync(cli_json, target.data_dir, "status")
            stop.set()
            report["attacker"] = await trio.to_thread.run_sync(receiver.recv)
        finally:
            stop.set()
            await trio.to_thread.run_sync(attacker.join, 10)
            if attacker.is_alive():
                attacker.kill()
        honest.stop()
        nursery.cancel_scope.cancel()
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--identities", type=int, default=120)
    parser.add_argument("--half-open", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--interval", type=float, default=0.1)
    parser.add_argument("--retry", type=float, default=0.5)
    parser.add_argument("--settle", type=float, default=10.0)
    parser.add_argument(
        "--pin", action="store_true", help="attacker on one CPU, target and honest node on another"
    )
    args = parser.parse_args()
    args.attacker_cpus = node_cpus = None
    if args.pin:
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) < 2:
            parser.error("--pin needs two CPUs")
        args.attacker_cpus, node_cpus = {cpus[0]}, {cpus[1]}
        pin(os.getpid(), node_cpus)
    header("stream exhaustion against a real node on loopback")
    print(
        f"# attacker: {args.identities} identities (difficulty {DIFFICULTY}) on {ATTACKER_HOST}, "
        f"{STREAMS_PER_IDENTITY} idle streams each (retry every {args.retry:g}s), "
        f"{args.half_open} half-open connections; {args.rounds} rounds of each operation, "
        f"{args.interval:g}s apart"
    )
    if args.pin:
        print(
            f"# pinned: attacker on CPU {args.attacker_cpus}, target and honest node on {node_cpus}"
        )
    with tempfile.TemporaryDirectory() as tmp:
        target = NodeProcess(
            Path(tmp) / "target", env=environ(PLEXINODE_DHT_ID_DIFFICULTY=str(DIFFICULTY))
        ).wait_ready()
        if node_cpus is not None:
            pin(target.proc.pid, node_cpus)
        try:
            report = trio.run(run, args, target)
        finally:
            target.kill()
    print()
    print(
        f"{'operation':<14} {'idle ok':>8} {'p50':>8} {'p99':>8}   {'attack ok':>9} {'p50':>8} "
        f"{'p99':>8}   {'p99 ratio':>9}"
    )
    for name, (ok, latencies) in report["idle"].items():
        attack_ok, attack_latencies = report["attack"][name]
        idle_p99, attack_p99 = percentile(latencies, 99), percentile(attack_latencies, 99)
        print(
            f"{name:<14} {ok / args.rounds:>8.0%} {percentile(latencies, 50):>6.1f}ms "
            f"{idle_p99:>6.1f}ms   {attack_ok / args.rounds:>9.0%} "
            f"{percentile(attack_latencies, 50):>6.1f}ms {attack_p99:>6.1f}ms   "
            f"{attack_p99 / idle_p99:>8.2f}x"
        )
    idle_fds, idle_rss = report["idle_fds_rss"]
    peak_fds, peak_rss = report["attack_fds_rss_peak"]
    print()
    print(f"target file descriptors: idle {idle_fds}, peak under attack {peak_fds} (bound 600)")
    print(
        f"target RSS: idle {idle_rss / 2**20:.1f} MiB, peak under attack {peak_rss / 2**20:.1f} MiB"
    )
    print(f"attacker: {dict(sorted(report['attacker'].items()))}")
    print(f"all half-open connections made after {report['flooded_after_s']:.1f}s of attack")
    streams = report["status"]["streams"]
    shown = {k: v for k, v in sorted(streams.items()) if not k.startswith("accepted:")}
    print(f"target streams counters: {shown}")


if __name__ == "__main__":
    main()
