"""Junk floods: what dropping junk datagrams costs a node, and what a flood does to its service.

Part 1, the cost of one drop (in this process, one core): a node's datagram service is handed
junk datagrams directly (its receive path without the socket), three kinds, each from a source
under the host rate (a fresh source address per datagram) and from one flooding host (over
its rate, and for forgeries over its budget of failed signature checks):

- ``random``: random bytes of a typical datagram's size;
- ``wrong-tag``: a well-formed datagram of another network (encrypted under another key);
- ``bad-signature``: the right network tag (the open network's key is public) and a valid
  envelope, but a signature that does not verify: the most a stranger can make a node spend.
  On a private network a stranger cannot make the tag, so this one stops at ``wrong-tag``.

Part 2, a real flood: `--members` full nodes on 127.0.0.1 (trusted among themselves through
``datagram.trusted_hosts = 127.0.0.1/32``) form a network; a separate process floods the first
(the victim) from 127.0.0.2 with ``bad-signature`` junk, first as fast as it can (the rate the
victim's process drops, R), then paced at 0.5 R, 1 R and 2 R, `--phase` seconds each, after an
idle phase of the same length. Meanwhile another member pings the victim 10 times a second,
looks up a random ID through the DHT once a second, and opens a stream to it (a stream ping: a
new connection, the handshake, one echo) 5 times a second. Each phase prints: pings, lookups
and handshakes that succeeded (share), ping and handshake p50/p99 beside the idle phase's, the
process's CPU use, the victim's drop counters (datagrams and streams), and deaths declared by
any member (all of them are healthy). ``--rates`` paces the flood at given rates instead of
multiples of R (to compare runs whose R differs); ``--receive-buffer`` sets the UDP receive
buffer the nodes ask for (the trade: a deeper queue loses fewer honest datagrams to a flood,
and makes those it keeps wait longer behind the junk).

With ``--msg1``, part 2 floods the victim's TCP port with handshake first messages instead
(``msg1``: the 2-byte length and 69 bytes, then the attacker waits for the answer and hangs
up), from 127.0.0.2 (or from ``--msg1-hosts`` addresses of 127.0.0.0/8, a distributed
attacker), ``--msg1-threads`` connections at a time, as fast as they go: first with a wrong
tag (the responder stops at the tag check), then with the right tag of the open network,
which the victim runs (each costs the victim an X25519 and a signature, and a msg2), every one
with a fresh ephemeral key (a repeated msg1 is dropped as a replay).

Usage: python scripts/bench/bench_junk.py [--members 8] [--phase 20] [--rates R1,R2,...]
       [--receive-buffer BYTES]
       [--msg1 [--msg1-hosts 1] [--msg1-threads 16]]
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
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
from plexinode.errors import PeerTimeout, PlexinodeError, RemoteProtocolError
from plexinode.identity import Identity, NodeId
from plexinode.net import packet
from plexinode.net.address import Address
from plexinode.net.cookie import ZERO_MAC2
from plexinode.net.datagram import DatagramService
from plexinode.net.handshake import MAGIC, VERSION
from plexinode.net.keyring import Keyring, network_tag, open_network_key
from plexinode.net.pinging import PingOptions
from plexinode.net.settings import DatagramSettings
from plexinode.net.transport import RECEIVE_BUFFER, SocketTransport
from plexinode.node import Node
from plexinode.testing.fuzz_datagrams import seal, tagged, untagged
from plexinode.wire import envelope
from plexinode.wire.messages import Ping

HOST = "127.0.0.1"
#: Stream service values that are levels, not counters (not shown as a phase's change).
GAUGES = frozenset({"pending_handshakes", "inbound_streams", "under_load"})
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

#: The handshake flooder: connects to the victim from the given source addresses in turn,
#: `threads` connections at a time, for `seconds`; on each it sends the next msg1 of the file
#: (each framed: its 2-byte length, then the msg1), waits up to 1 s for an answer, and hangs
#: up (with a reset after an answer, so that no TIME_WAIT piles up on this side). Prints its
#: counts.
MSG1_SENDER = r"""
import json, socket, struct, sys, threading, time
path, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
seconds, threads, sources = float(sys.argv[4]), int(sys.argv[5]), sys.argv[6].split(",")
data = open(path, "rb").read()
messages, i = [], 0
while i < len(data):
    n = 2 + int.from_bytes(data[i:i + 2], "big")
    messages.append(data[i:i + n])
    i += n
counts = {"connections": 0, "answered": 0, "closed": 0, "failed": 0}
lock = threading.Lock()
turn = [0]
end = time.perf_counter() + seconds

def worker():
    while time.perf_counter() < end:
        with lock:
            i = turn[0]
            turn[0] += 1
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.settimeout(1.0)
        outcome = "failed"
        try:
            sock.setsockopt(socket.SOL_IP, 24, 1)  # IP_BIND_ADDRESS_NO_PORT
            sock.bind((sources[i % len(sources)], 0))
            sock.connect((host, port))
            sock.sendall(messages[i % len(messages)])
            outcome = "answered" if sock.recv(4096) else "closed"
        except OSError:
            pass
        finally:
            if outcome == "answered":
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()
        with lock:
            counts["connections"] += 1
            counts[outcome] += 1

workers = [threading.Thread(target=worker) for _ in range(threads)]
for w in workers:
    w.start()
for w in workers:
    w.join()
print(json.dumps(counts))
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
        return packet.encrypt(Keyring.open("another-network").primary, body)
    signature = bytes(rng.getrandbits(8) for _ in range(64))
    return tagged(body[:-64] + signature)


def msg1s(count: int, *, right_tag: bool, rng: random.Random) -> bytes:
    """`count` framed handshake first messages, each with a fresh ephemeral key, tagged under
    the open network's key (`right_tag`) or with random bytes."""
    from nacl.public import PrivateKey

    key = open_network_key("open")
    out = bytearray()
    for _ in range(count):
        body = MAGIC + bytes([VERSION]) + bytes(PrivateKey.generate().public_key)
        tag = network_tag(key, body) if right_tag else rng.randbytes(16)
        message = body + tag + ZERO_MAC2  # no cookie
        out += len(message).to_bytes(2, "big") + message
    return bytes(out)


def msg1_sources(hosts: int) -> list[str]:
    """The flooder's source addresses: 127.0.0.2 alone, or `hosts` addresses of 127.0.0.0/8."""
    if hosts <= 1:
        return [ATTACKER]
    return [f"127.0.{1 + i // 250}.{1 + i % 250}" for i in range(hosts)]


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
    handshakes: list[float | None] = dataclasses.field(default_factory=list)
    attacker: dict[str, int] = dataclasses.field(default_factory=dict)
    stream_drops: dict[str, int] = dataclasses.field(default_factory=dict)
    cpu: float = 0.0
    sent: int = 0
    received: int = 0
    drops: dict[str, int] = dataclasses.field(default_factory=dict)
    deaths: int = 0


@dataclasses.dataclass(frozen=True)
class Msg1Flood:
    """The handshake flood of ``--msg1``: source addresses and connections at a time."""

    sources: list[str]
    threads: int


async def flood(
    members: int,
    seconds: float,
    junk_file: str,
    msg1: Msg1Flood | None = None,
    rates: list[float] | None = None,
    receive_buffer: int = RECEIVE_BUFFER,
) -> list[Phase]:
    nodes: list[Node] = []
    phases: list[Phase] = []
    async with trio.open_nursery() as nursery:
        first: Address | None = None
        for i in range(members):
            transport = SocketTransport(receive_buffer=receive_buffer)
            node = Node(identity(i), member_settings(first), transport)
            address = await nursery.start(node.run)
            first = first or address
            nodes.append(node)
        with trio.move_on_after(60):
            while not all(n.membership.counts()["alive"] == members for n in nodes):  # noqa: ASYNC110
                await trio.sleep(0.5)
        victim, honest = nodes[0], nodes[1]
        assert victim.address is not None
        target = victim.address
        rng = random.Random(2)
        flood_bytes = b""
        for i in range(2000):
            datagram = junk("bad-signature", victim.node_id, rng, i)
            flood_bytes += len(datagram).to_bytes(2, "big") + datagram
        await trio.Path(junk_file).write_bytes(flood_bytes)

        async def one_phase(name: str, rate: float, argv: list[str] | None = None) -> Phase:
            phase = Phase(name, rate)
            dead0 = sum(n.membership.stats["declared_dead"] for n in nodes)
            stats = victim.datagrams.stats
            before = dict(stats)
            streams_before = victim.streams.summary()  # counters, the cookies' included
            cpu0 = time.process_time()
            wall0 = time.perf_counter()
            async with trio.open_nursery() as inner:
                if argv is not None:
                    inner.start_soon(_msg1_sender, argv, phase)
                elif rate >= 0:
                    argv = [
                        sys.executable,
                        "-c",
                        SENDER,
                        junk_file,
                        HOST,
                        str(target.port),
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
                                target,
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

                async def handshakes() -> None:
                    end = trio.current_time() + seconds
                    options = PingOptions(via="stream", timeout=5.0)
                    while trio.current_time() < end:
                        start = trio.current_time()
                        try:
                            await honest.ping(target, node_id=victim.node_id, options=options)
                            phase.handshakes.append(trio.current_time() - start)
                        except (PlexinodeError, OSError):
                            phase.handshakes.append(None)
                        await trio.sleep_until(start + 0.2)

                inner.start_soon(pings)
                inner.start_soon(lookups)
                inner.start_soon(handshakes)
            wall = time.perf_counter() - wall0
            phase.cpu = (time.process_time() - cpu0) / wall
            phase.received = stats["received"] - before.get("received", 0)
            phase.drops = {
                k: v - before.get(k, 0)
                for k, v in stats.items()
                if k.startswith("drop_") and v - before.get(k, 0)
            }
            phase.stream_drops = {
                k: v - streams_before.get(k, 0)
                for k, v in victim.streams.summary().items()
                if k not in GAUGES
                and not k.startswith("accepted:")
                and v - streams_before.get(k, 0)
            }
            phase.deaths = sum(n.membership.stats["declared_dead"] for n in nodes) - dead0
            return phase

        phases.append(await one_phase("idle", -1))
        if msg1 is not None:
            for kind, right in (("wrong-tag msg1", False), ("right-tag msg1", True)):
                await trio.Path(junk_file).write_bytes(
                    msg1s(20_000 if right else 2_000, right_tag=right, rng=rng)
                )
                argv = [sys.executable, "-c", MSG1_SENDER, junk_file, HOST]
                argv += [str(target.port), str(seconds), str(msg1.threads)]
                argv.append(",".join(msg1.sources))
                phases.append(await one_phase(kind, 0, argv))
        else:
            top = await one_phase("max", 0)
            phases.append(top)
            if rates:
                for rate in rates:
                    phases.append(await one_phase(f"{rate:.0f}/s", rate))
            else:
                capacity = top.received / seconds
                for factor in (0.5, 1.0, 2.0):
                    phases.append(await one_phase(f"{factor}x", factor * capacity))
        for node in nodes:
            node.stop()
    return phases


async def _sender(argv: list[str], phase: Phase) -> None:
    result = await trio.run_process(argv, capture_stdout=True)
    phase.sent = int(result.stdout.decode().strip() or 0)


async def _msg1_sender(argv: list[str], phase: Phase) -> None:
    result = await trio.run_process(argv, capture_stdout=True)
    phase.attacker = json.loads(result.stdout.decode())
    phase.sent = phase.attacker["connections"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=8)
    parser.add_argument("--phase", type=float, default=20.0)
    parser.add_argument("--count", type=int, default=20_000, help="part 1: datagrams per kind")
    parser.add_argument(
        "--rates",
        type=lambda text: [float(r) for r in text.split(",")],
        help="paced phases at these datagram rates instead of 0.5, 1 and 2 times R",
    )
    parser.add_argument(
        "--receive-buffer",
        type=int,
        default=RECEIVE_BUFFER,
        help="the UDP receive buffer the nodes ask for, in bytes (0: the kernel's default)",
    )
    parser.add_argument("--msg1", action="store_true", help="part 2: flood with handshake msg1s")
    parser.add_argument("--msg1-hosts", type=int, default=1, help="the msg1 flood's sources")
    parser.add_argument("--msg1-threads", type=int, default=16, help="msg1 connections at once")
    args = parser.parse_args()
    header("junk floods")
    print("## part 1: seconds per dropped datagram, straight into the receive path")
    for kind, source, seconds, drops in drop_costs(args.count):
        print(
            f"{kind:14s} from {source:10s}: {seconds * 1e6:7.1f} us/datagram "
            f"({1 / seconds:9,.0f}/s on one core)  {drops}"
        )
    msg1 = None
    if args.msg1:
        msg1 = Msg1Flood(msg1_sources(args.msg1_hosts), args.msg1_threads)
        what = (
            f"handshake msg1s over TCP from {len(msg1.sources)} address(es) "
            f"({msg1.sources[0]}...), {msg1.threads} connections at a time"
        )
    else:
        what = f"bad-signature junk datagrams from {ATTACKER}"
    print(
        f"## part 2: a real node flooded with {what}, {args.members} members, "
        f"{args.phase:.0f} s per phase"
    )
    with tempfile.TemporaryDirectory() as tmp:
        junk_file = os.path.join(tmp, "junk")
        phases = trio.run(
            flood, args.members, args.phase, junk_file, msg1, args.rates, args.receive_buffer
        )
    idle = [p for p in phases[0].pings if p is not None]
    idle_handshakes = [p for p in phases[0].handshakes if p is not None]
    for phase in phases:
        rtts = [p for p in phase.pings if p is not None]
        ok = len(rtts) / max(1, len(phase.pings))
        looked = sum(phase.lookups) / max(1, len(phase.lookups))
        shakes = [p for p in phase.handshakes if p is not None]
        shaken = len(shakes) / max(1, len(phase.handshakes))
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
            f"handshakes ok {shaken:6.1%} ({len(shakes)}) p50 "
            f"{percentile(shakes, 50) * 1e3:6.1f} ms p99 {percentile(shakes, 99) * 1e3:7.1f} ms "
            f"(idle p99 {percentile(idle_handshakes, 99) * 1e3:5.1f} ms)  "
            f"CPU {phase.cpu:5.1%}  deaths {phase.deaths}  {phase.drops}  "
            f"streams {phase.stream_drops}"
            + (f"  attacker {phase.attacker}" if phase.attacker else ""),
            flush=True,
        )


if __name__ == "__main__":
    main()
