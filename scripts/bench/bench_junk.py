"""Junk floods: what dropping junk datagrams costs a node, and what a flood does to its service.

Part 1, the cost of one drop (in this process, one core): a node's datagram service is handed
junk datagrams directly (its receive path without the socket), three kinds, each from a source
under the host rate (a fresh source address per datagram) and from one flooding host (over
its rate, and for forgeries over its budget of failed signature checks):

- ``random``: random bytes of a typical datagram's size;
- ``wrong-tag``: a well-formed datagram of another network (its tag is under another key);
- ``bad-signature``: the right network tag (the open network's key is public) and a valid
  envelope, but a signature that does not verify: the most a stranger can make a node spend.
  On a private network a stranger cannot make the tag, so this one stops at ``wrong-tag``.

Part 2, a real flood: `--members` full nodes on 127.0.0.1 (trusted among themselves through
``datagram.trusted_hosts = 127.0.0.1/32``) form a network; a separate process floods the first
(the victim) from 127.0.0.2 with ``bad-signature`` junk, first as fast as it can (the rate the
victim's process drops, R), then paced at 0.5 R, 1 R and 2 R, `--phase` seconds each, after an
idle phase of the same length. Meanwhile another member pings the victim 10 times a second and
looks up a random ID through the DHT once a second. Each phase prints: pings and lookups
answered (share), ping p50/p99 beside the idle phase's, the process's CPU use, the victim's
drop counters, and deaths declared by any member (all of them are healthy).

Usage: python scripts/bench/bench_junk.py [--members 8] [--phase 20]
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from common import header, percentile

from plexinode.config import Settings
from plexinode.errors import PeerTimeout, RemoteProtocolError
from plexinode.identity import Identity, NodeId
from plexinode.net.address import Address
from plexinode.net.datagram import DatagramService
from plexinode.net.keyring import Keyring
from plexinode.net.settings import DatagramSettings
from plexinode.net.transport import SocketTransport
from plexinode.node import Node
from plexinode.testing.fuzz_datagrams import seal, tagged, untagged
from plexinode.wire import envelope
from plexinode.wire.messages import Ping

HOST = "127.0.0.1"
ATTACKER = "127.0.0.2"
SIZE = 200

#: The flooding process: reads datagrams from a file, sends them to the victim from ATTACKER
#: at `rate` per second (0: as fast as it can) for `seconds`.
SENDER = r"""
import socket, sys, time
path, host = sys.argv[1], sys.argv[2]
port, rate, seconds = int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
data = open(path, "rb").read()
datagrams, i = [], 0
while i < len(data):
    n = int.from_bytes(data[i:i + 2], "big")
    datagrams.append(data[i + 2:i + 2 + n])
    i += 2 + n
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind(("127.0.0.2", 0))
target = (host, port)
start = time.perf_counter()
sent = 0
while True:
    now = time.perf_counter() - start
    if now >= seconds:
        break
    due = int(now * rate) if rate else sent + 64
    while sent < due:
        try:
            sock.sendto(datagrams[sent % len(datagrams)], target)
        except OSError:
            pass
        sent += 1
    if rate:
        time.sleep(0.001)
print(sent)
"""


def identity(index: int) -> Identity:
    return Identity.from_seed(hashlib.sha256(f"bench-junk:{index}".encode()).digest())


def junk(kind: str, victim: NodeId, rng: random.Random, index: int) -> bytes:
    """One junk datagram of `kind` for `victim` (random bytes are SIZE long)."""
    if kind == "random":
        return rng.randbytes(SIZE)
    forger = identity(10_000 + index % 64)
    payload = envelope.encode(Ping(), rng.getrandbits(63) + 1)
    body = untagged(seal(forger, victim.raw[:8], index + 1, payload))
    if kind == "wrong-tag":
        return body + Keyring.open("another-network").tag(body)
    signature = bytes(rng.getrandbits(8) for _ in range(64))
    return tagged(body[:-64] + signature)


def drop_costs(count: int) -> list[tuple[str, str, float, dict[str, int]]]:
    """Seconds per dropped datagram, by kind and source, straight into the receive path."""
    results = []

    async def run() -> None:
        transport = SocketTransport()
        victim_identity = identity(0)
        rng = random.Random(1)
        for source in ("many hosts", "one host"):
            for kind in ("random", "wrong-tag", "bad-signature"):
                endpoint = await transport.bind(Address(HOST, 0))
                service = DatagramService(
                    victim_identity,
                    endpoint.datagrams,
                    DatagramSettings(),
                    keyring=Keyring.open("open"),
                )
                datagrams = [junk(kind, victim_identity.node_id, rng, i) for i in range(count)]
                if source == "many hosts":
                    addresses = [
                        Address(f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", 7000)
                        for i in range(count)
                    ]
                else:
                    addresses = [Address("203.0.113.9", 7000)] * count
                start = time.perf_counter()
                for data, address in zip(datagrams, addresses, strict=True):
                    service._receive(data, address)
                seconds = (time.perf_counter() - start) / count
                drops = {k: v for k, v in service.stats.items() if k.startswith("drop_")}
                results.append((kind, source, seconds, drops))
                await endpoint.aclose()

    trio.run(run)
    return results


def member_settings(bootstrap: Address | None) -> Settings:
    base = Settings(listen=Address(HOST, 0), bootstrap=(bootstrap,) if bootstrap else ())
    return dataclasses.replace(
        base,
        dht=dataclasses.replace(base.dht, id_difficulty=0),
        datagram=dataclasses.replace(base.datagram, trusted_hosts=(f"{HOST}/32",)),
        stream=dataclasses.replace(base.stream, trusted_hosts=(f"{HOST}/32",)),
    )


@dataclasses.dataclass
class Phase:
    name: str
    rate: float
    pings: list[float | None] = dataclasses.field(default_factory=list)
    lookups: list[bool] = dataclasses.field(default_factory=list)
    cpu: float = 0.0
    sent: int = 0
    received: int = 0
    drops: dict[str, int] = dataclasses.field(default_factory=dict)
    deaths: int = 0


async def flood(members: int, seconds: float, junk_file: str) -> list[Phase]:
    nodes: list[Node] = []
    phases: list[Phase] = []
    async with trio.open_nursery() as nursery:
        first: Address | None = None
        for i in range(members):
            node = Node(identity(i), member_settings(first), SocketTransport())
            address = await nursery.start(node.run)
            first = first or address
            nodes.append(node)
        with trio.move_on_after(60):
            while not all(n.membership.counts()["alive"] == members for n in nodes):  # noqa: ASYNC110
                await trio.sleep(0.5)
        victim, honest = nodes[0], nodes[1]
        assert victim.address is not None
        rng = random.Random(2)
        flood_bytes = b""
        for i in range(2000):
            datagram = junk("bad-signature", victim.node_id, rng, i)
            flood_bytes += len(datagram).to_bytes(2, "big") + datagram
        await trio.Path(junk_file).write_bytes(flood_bytes)

        async def one_phase(name: str, rate: float) -> Phase:
            phase = Phase(name, rate)
            dead0 = sum(n.membership.stats["declared_dead"] for n in nodes)
            stats = victim.datagrams.stats
            before = dict(stats)
            cpu0 = time.process_time()
            wall0 = time.perf_counter()
            async with trio.open_nursery() as inner:
                if rate >= 0:
                    argv = [
                        sys.executable,
                        "-c",
                        SENDER,
                        junk_file,
                        HOST,
                        str(victim.address.port),
                        str(rate),
                        str(seconds),
                    ]
                    inner.start_soon(_sender, argv, phase)

                async def pings() -> None:
                    end = trio.current_time() + seconds
                    while trio.current_time() < end:
                        start = trio.current_time()
                        try:
                            reply = await honest.datagrams.request(
                                victim.address,
                                Ping(),
                                node_id=victim.node_id,
                                attempt_timeout=2.0,
                                retries=0,
                            )
                            phase.pings.append(reply.rtt)
                        except (PeerTimeout, RemoteProtocolError):
                            phase.pings.append(None)
                        await trio.sleep_until(start + 0.1)

                async def lookups() -> None:
                    end = trio.current_time() + seconds
                    rng = random.Random(3)
                    while trio.current_time() < end:
                        start = trio.current_time()
                        with trio.move_on_after(5):
                            result = await honest.dht.find_node(NodeId(rng.randbytes(32)))
                            phase.lookups.append(bool(result.closest))
                            await trio.sleep_until(start + 1.0)
                            continue
                        phase.lookups.append(False)

                inner.start_soon(pings)
                inner.start_soon(lookups)
            wall = time.perf_counter() - wall0
            phase.cpu = (time.process_time() - cpu0) / wall
            phase.received = stats["received"] - before.get("received", 0)
            phase.drops = {
                k: v - before.get(k, 0)
                for k, v in stats.items()
                if k.startswith("drop_") and v - before.get(k, 0)
            }
            phase.deaths = sum(n.membership.stats["declared_dead"] for n in nodes) - dead0
            return phase

        phases.append(await one_phase("idle", -1))
        top = await one_phase("max", 0)
        phases.append(top)
        capacity = top.received / seconds
        for factor in (0.5, 1.0, 2.0):
            phases.append(await one_phase(f"{factor}x", factor * capacity))
        for node in nodes:
            node.stop()
    return phases


async def _sender(argv: list[str], phase: Phase) -> None:
    result = await trio.run_process(argv, capture_stdout=True)
    phase.sent = int(result.stdout.decode().strip() or 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=8)
    parser.add_argument("--phase", type=float, default=20.0)
    parser.add_argument("--count", type=int, default=20_000, help="part 1: datagrams per kind")
    args = parser.parse_args()
    header("junk floods")
    print("## part 1: seconds per dropped datagram, straight into the receive path")
    for kind, source, seconds, drops in drop_costs(args.count):
        print(
            f"{kind:14s} from {source:10s}: {seconds * 1e6:7.1f} us/datagram "
            f"({1 / seconds:9,.0f}/s on one core)  {drops}"
        )
    print(
        f"## part 2: a real node flooded from {ATTACKER} with bad-signature junk, "
        f"{args.members} members, {args.phase:.0f} s per phase"
    )
    with tempfile.TemporaryDirectory() as tmp:
        phases = trio.run(flood, args.members, args.phase, os.path.join(tmp, "junk"))
    idle = [p for p in phases[0].pings if p is not None]
    for phase in phases:
        rtts = [p for p in phase.pings if p is not None]
        ok = len(rtts) / max(1, len(phase.pings))
        looked = sum(phase.lookups) / max(1, len(phase.lookups))
        rate = (
            "as fast as it can"
            if phase.rate == 0
            else ("-" if phase.rate < 0 else f"{phase.rate:,.0f}/s")
        )
        print(
            f"{phase.name:5s} flood {rate:>17s} sent {phase.sent / args.phase:9,.0f}/s "
            f"victim read {phase.received / args.phase:9,.0f}/s  "
            f"pings ok {ok:6.1%} p50 {percentile(rtts, 50) * 1e3:6.1f} ms "
            f"p99 {percentile(rtts, 99) * 1e3:7.1f} ms (idle p99 "
            f"{percentile(idle, 99) * 1e3:5.1f} ms)  lookups ok {looked:6.1%}  "
            f"CPU {phase.cpu:5.1%}  deaths {phase.deaths}  {phase.drops}",
            flush=True,
        )


if __name__ == "__main__":
    main()
