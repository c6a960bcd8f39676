"""A seeded sample of the datagrams honest nodes send, for replays of captured traffic.

The fuzzer (:mod:`plexinode.testing.fuzz_datagrams`) replays exact copies of real datagrams,
from any node to any recipient: :func:`capturing` wraps a node's transport so that everything it
sends is offered to a :class:`Capture`, which keeps a reservoir sample drawn from its own seeded
generator, so a seed replays the same sample.
"""

from __future__ import annotations

import random

from plexinode.net.address import Address
from plexinode.net.transport import DatagramSocket, Transport
from plexinode.testing.wrapping import DatagramWrappingTransport


class Capture:
    """A seeded reservoir sample of the datagrams honest nodes send (at most `size`)."""

    def __init__(self, seed: int, size: int = 512) -> None:
        self._rng = random.Random(seed)
        self.size = size
        self.seen = 0
        self.samples: list[bytes] = []
        self.enabled = True

    def offer(self, data: bytes) -> None:
        """Consider one datagram for the sample."""
        if not self.enabled:
            return
        self.seen += 1
        if len(self.samples) < self.size:
            self.samples.append(data)
        else:
            at = self._rng.randrange(self.seen)
            if at < self.size:
                self.samples[at] = data


class _CapturingSocket:
    def __init__(self, inner: DatagramSocket, capture: Capture) -> None:
        self._inner = inner
        self._capture = capture

    async def sendto(self, data: bytes, address: Address) -> None:
        self._capture.offer(data)
        await self._inner.sendto(data, address)

    async def recvfrom(self) -> tuple[bytes, Address]:
        return await self._inner.recvfrom()

    def close(self) -> None:
        self._inner.close()


def capturing(inner: Transport, capture: Capture) -> Transport:
    """`inner`, offering every datagram its node sends to `capture`."""
    return DatagramWrappingTransport(inner, lambda sock: _CapturingSocket(sock, capture))
