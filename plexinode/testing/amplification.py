"""Measuring reflection: what a node sends toward a source address it has not validated.

An attacker who forges a victim's source address never sees the replies; what matters is how
many bytes the node sends there per byte the attacker sent. :func:`reflect` plays that attacker
from a socket it owns (so the replies can be counted): one signed request from a fresh
identity, then every datagram that arrives back within `wait` seconds (the reply, a ping-back,
retries). The suite runs it on the in-memory network (tests/sim/test_datagram_limits_sim.py)
and ``scripts/bench/bench_amplification.py`` against a real node on loopback.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import trio

from plexinode.identity import Identity, NodeId
from plexinode.net import packet
from plexinode.net.address import Address
from plexinode.net.keyring import Keyring
from plexinode.net.transport import DatagramSocket, Endpoint
from plexinode.node import Node
from plexinode.testing.network import MemoryNetwork
from plexinode.testing.nodes import seeded_identity
from plexinode.wire import envelope
from plexinode.wire.schema import Message


@dataclass(frozen=True, slots=True)
class Reflection:
    """What one request drew toward its (unvalidated) source.

    Attributes:
        name: The request's type name.
        bytes_in: The request datagram's size.
        bytes_out: Bytes of every datagram that came back.
        datagrams_out: How many came back.
    """

    name: str
    bytes_in: int
    bytes_out: int
    datagrams_out: int

    @property
    def ratio(self) -> float:
        """Bytes out per byte in."""
        return self.bytes_out / self.bytes_in


async def reflect(
    sock: DatagramSocket,
    target: Address,
    target_id: NodeId,
    message: Message,
    *,
    sender: Identity,
    request_id: int,
    wait: float,
    keyring: Keyring | None = None,
    name: str | None = None,
) -> Reflection:
    """Send `message` as a request signed by `sender` from `sock` to `target`, and count what
    comes back to `sock` within `wait` seconds (reported under `name`, default the type's)."""
    sealer = packet.Sealer(sender, lambda: request_id & packet.SEQ_MASK, keyring)
    datagram = sealer.seal(envelope.encode(message, request_id), target_id)
    await sock.sendto(datagram, target)
    out = count = 0
    with trio.move_on_after(wait):
        while True:
            data, _ = await sock.recvfrom()
            out += len(data)
            count += 1
    return Reflection(name or message.NAME, len(datagram), out, count)


async def measure_reflection(
    net: MemoryNetwork,
    target: Node,
    requests: list[Message],
    *,
    seed: int,
    wait: float = 15.0,
) -> list[Reflection]:
    """:func:`reflect` each of `requests` at `target`, each from a fresh host and identity."""

    async def fresh_host() -> Endpoint:
        return await net.transport(net.new_host()).bind(Address("0.0.0.0", 7420))

    return await reflect_each(
        fresh_host,
        target,
        [(message.NAME, message) for message in requests],
        senders=lambda i: seeded_identity(10_000 + i, seed),
        seed=seed,
        wait=wait,
    )


async def reflect_each(
    bind: Callable[[], Awaitable[Endpoint]],
    target: Node,
    requests: list[tuple[str, Message]],
    *,
    senders: Callable[[int], Identity],
    seed: int,
    wait: float,
    keyring: Keyring | None = None,
) -> list[Reflection]:
    """:func:`reflect` each named request at `target`, the i-th from a new endpoint
    (`bind`) and signed by ``senders(i)``; request IDs are drawn from `seed`."""
    assert target.address is not None
    rng = random.Random(seed)
    results = []
    for i, (name, message) in enumerate(requests):
        endpoint = await bind()
        try:
            results.append(
                await reflect(
                    endpoint.datagrams,
                    target.address,
                    target.node_id,
                    message,
                    sender=senders(i),
                    request_id=rng.getrandbits(64) | 1 << 63,
                    wait=wait,
                    keyring=keyring,
                    name=name,
                )
            )
        finally:
            await endpoint.aclose()
    return results
