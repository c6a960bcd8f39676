"""Datagram path: authenticated round trips per second, and the per-datagram cost of
authentication against plain msgpack, measured in the same run.

    python scripts/bench/bench_datagram.py [--round-trips 5000] [--concurrency 16]

Prints (1) per-datagram microseconds for: msgpack encode+decode of an envelope (the baseline),
the same plus Ed25519 sign+verify and encryption under a private network's key (what plexinode
does), the same plus a per-peer authenticated box with a cached shared key (the alternative in
docs/decisions.md), and the refusal of another network's datagram at the AEAD; (2) ping/pong
round trips per second between two DatagramServices on loopback UDP in one process.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import nacl.bindings as sodium
import nacl.public
import nacl.utils
import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import header, per_op, percentile

from plexinode.identity import Identity
from plexinode.net import packet
from plexinode.net.address import Address
from plexinode.net.datagram import DatagramService, Inbound
from plexinode.net.keyring import Keyring
from plexinode.net.settings import DatagramSettings
from plexinode.net.transport import SocketTransport
from plexinode.wire import envelope
from plexinode.wire.codec import DATAGRAM_LIMITS
from plexinode.wire.messages import Ping, Pong
from plexinode.wire.schema import Message


def cost_per_datagram(n: int) -> dict[str, float]:
    alice, bob = Identity.generate(), Identity.generate()
    message = Pong("127.0.0.1", 4242)

    def plain() -> None:
        envelope.decode(envelope.encode(message, 12345), DATAGRAM_LIMITS)

    sealer = packet.Sealer(alice, lambda: 7, Keyring.generate())
    guard = packet.ReplayGuard(DatagramSettings().replay_window)

    def signed() -> None:
        datagram = sealer.seal(envelope.encode(message, 12345), bob.node_id)
        opened = packet.open_datagram(datagram, sealer.keyring)
        envelope.decode(opened.payload, DATAGRAM_LIMITS)
        opened.verify()
        guard.accept(opened.public_key, opened.counter, 0.0)

    a_box, b_box = nacl.public.PrivateKey.generate(), nacl.public.PrivateKey.generate()
    shared_a = sodium.crypto_box_beforenm(bytes(b_box.public_key), bytes(a_box))
    shared_b = sodium.crypto_box_beforenm(bytes(a_box.public_key), bytes(b_box))

    def boxed() -> None:
        nonce = nacl.utils.random(24)
        sealed = sodium.crypto_box_afternm(envelope.encode(message, 12345), nonce, shared_a)
        opened = sodium.crypto_box_open_afternm(sealed, nonce, shared_b)
        envelope.decode(opened, DATAGRAM_LIMITS)

    outsider = packet.Sealer(bob, lambda: 7, Keyring.generate())
    junk_datagram = outsider.seal(envelope.encode(message, 12345), alice.node_id)

    def junk() -> None:  # another network's datagram: refused at the AEAD, one key tried
        packet.check_layout(junk_datagram)
        assert packet.decrypt(junk_datagram, sealer.keyring.by_preference()) is None

    return {
        name: per_op(fn, n) * 1e6
        for name, fn in (
            ("plain msgpack", plain),
            ("ed25519 (plexinode)", signed),
            ("box, cached key", boxed),
            ("junk refused (aead)", junk),
        )
    }


async def round_trips(total: int, concurrency: int) -> tuple[float, list[float]]:
    transport = SocketTransport()
    # One peer sends every request: lift the per-peer request limit (20/s by default, which
    # this benchmark would hit at once) so that it measures the datagram path, not the limiter.
    settings = DatagramSettings(request_timeout=1.0, retries=3, peer_request_rate=1_000_000)
    a_end = await transport.bind(Address("127.0.0.1", 0))
    b_end = await transport.bind(Address("127.0.0.1", 0))
    alice, bob = Identity.generate(), Identity.generate()
    a = DatagramService(alice, a_end.datagrams, settings)
    b = DatagramService(bob, b_end.datagrams, settings)

    async def pong(inbound: Inbound) -> Message:
        return Pong(inbound.address.host, inbound.address.port)

    b.on(Ping, pong)
    rtts: list[float] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(a.run)
        await nursery.start(b.run)
        remaining = total

        async def worker() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                reply = await a.request(b_end.address, Ping(), node_id=bob.node_id)
                rtts.append(reply.rtt)

        start = time.perf_counter()
        async with trio.open_nursery() as workers:
            for _ in range(concurrency):
                workers.start_soon(worker)
        elapsed = time.perf_counter() - start
        nursery.cancel_scope.cancel()
    await a_end.aclose()
    await b_end.aclose()
    return len(rtts) / elapsed, rtts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--round-trips", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--ops", type=int, default=5000)
    args = parser.parse_args()
    header("datagram path")
    costs = cost_per_datagram(args.ops)
    base = costs["plain msgpack"]
    print("per-datagram cost (encode + decode, one datagram)")
    for name, micros in costs.items():
        print(f"  {name:<22} {micros:8.1f} us   {micros / base:6.1f}x plain")
    rate, rtts = trio.run(round_trips, args.round_trips, args.concurrency)
    print(f"authenticated ping/pong on loopback UDP, {args.concurrency} in flight")
    print(
        f"  {rate:,.0f} round trips/s   rtt median {percentile(rtts, 50) * 1e3:.2f} ms"
        f"   p99 {percentile(rtts, 99) * 1e3:.2f} ms"
    )
    ideal = 1 / (2 * costs["ed25519 (plexinode)"] * 1e-6)
    print(f"  ratio to the crypto-only ceiling ({ideal:,.0f}/s on one core): {rate / ideal:.2f}")


if __name__ == "__main__":
    main()
