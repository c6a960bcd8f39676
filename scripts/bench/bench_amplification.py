"""Amplification: bytes a real node sends toward an unvalidated source per byte it received.

Starts `--nodes` full nodes (DHT and membership) on loopback UDP in this process, every one
bootstrapped from the first, and waits until the target (the first) knows the others. The
target holds eight provider records under its own ID, so that a ``find-value`` for them is
answered with records. Then, for every datagram request type, a fresh identity sends one
request from a socket the target has never exchanged with (what a forged source address looks
like to it) and counts every datagram that comes back to that socket within `--wait` seconds:
the reply, a ping-back, retries. The bound (docs/security.md) is 3 bytes out per byte in.

Usage: python scripts/bench/bench_amplification.py [--nodes 30] [--wait 3]
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import sys
import time
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).parent))
from common import header

from plexinode.config import Settings
from plexinode.dht.messages import FindNode, FindValue, Store
from plexinode.dht.record_types import PEER, PROVIDER
from plexinode.dht.records import sign_record
from plexinode.identity import Identity
from plexinode.membership.messages import MemberGossip, MemberPing, MemberPingReq
from plexinode.net.address import Address, packed_ip
from plexinode.net.transport import Endpoint, SocketTransport
from plexinode.net.validation import AMPLIFICATION_FACTOR
from plexinode.node import Node
from plexinode.testing.amplification import Reflection, reflect_each
from plexinode.wire.messages import Ping, StreamOpen
from plexinode.wire.schema import Message

HOST = "127.0.0.1"


def identity(index: int) -> Identity:
    return Identity.from_seed(hashlib.sha256(f"bench-amplification:{index}".encode()).digest())


def settings(bootstrap: Address | None) -> Settings:
    base = Settings(listen=Address(HOST, 0), bootstrap=(bootstrap,) if bootstrap else ())
    return dataclasses.replace(base, dht=dataclasses.replace(base.dht, id_difficulty=0))


async def run(count: int, wait: float) -> list[Reflection]:
    nodes: list[Node] = []
    async with trio.open_nursery() as nursery:
        first: Address | None = None
        for i in range(count):
            node = Node(identity(i), settings(first), SocketTransport())
            address = await nursery.start(node.run)
            first = first or address
            nodes.append(node)
        for node in nodes:
            await node.dht.joined.wait()
        target = nodes[0]
        with trio.move_on_after(60):
            await target.dht.refreshed.wait()  # its table covers the network
        assert target.address is not None
        now = int(time.time())
        key = target.node_id.raw
        for i in range(8):
            record = sign_record(
                identity(1000 + i), PROVIDER, key, seq=1, expires_at=now + 600, value=b""
            )
            target.dht.records.put(record, now)
        member = nodes[1]
        assert member.address is not None
        ip = packed_ip(member.address.host)
        assert ip is not None
        spoofer = identity(2000)
        requests: list[tuple[str, Message]] = [
            ("ping", Ping()),
            ("find-node", FindNode(nodes[5 % count].node_id.raw)),
            ("find-value held", FindValue(PROVIDER, key)),
            ("find-value else", FindValue(PEER, nodes[5 % count].node_id.raw)),
            (
                "store",
                Store(sign_record(spoofer, PROVIDER, key, seq=1, expires_at=now + 600, value=b"x")),
            ),
            ("member-ping", MemberPing(())),
            ("member-ping-req", MemberPingReq(member.node_id.raw, ip, member.address.port, ())),
            ("member-gossip", MemberGossip(())),
            ("stream-open", StreamOpen("echo/1")),  # not served over datagrams: UNSUPPORTED
        ]
        served = {type(m) for _, m in requests}
        missing = set(target.datagrams._handlers) - served
        assert not missing, f"request types not measured: {missing}"
        transport = SocketTransport()

        async def fresh_port() -> Endpoint:
            return await transport.bind(Address(HOST, 0))

        results = await reflect_each(
            fresh_port,
            target,
            requests,
            senders=lambda i: identity(3000 + i),
            seed=22,
            wait=wait,
            keyring=target.keyring,
        )
        for node in nodes:
            node.stop()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=30)
    parser.add_argument("--wait", type=float, default=3.0)
    args = parser.parse_args()
    header("amplification toward an unvalidated source")
    results = trio.run(run, args.nodes, args.wait)
    print(f"{args.nodes} nodes on loopback; each request from a fresh identity and socket")
    print(f"  {'request':<16} {'bytes in':>9} {'bytes out':>10} {'datagrams':>10} {'ratio':>7}")
    worst = 0.0
    for r in results:
        worst = max(worst, r.ratio)
        print(
            f"  {r.name:<16} {r.bytes_in:>9} {r.bytes_out:>10} {r.datagrams_out:>10}"
            f" {r.ratio:>6.2f}x"
        )
    print(f"  worst ratio {worst:.2f}x (bound {AMPLIFICATION_FACTOR}x)")


if __name__ == "__main__":
    main()
