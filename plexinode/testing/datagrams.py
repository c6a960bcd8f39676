"""The bound ports of the in-memory network: a datagram socket and a stream listener each.

A :class:`MemoryEndpoint` is what ``bind`` on a
:class:`~plexinode.testing.network.MemoryTransport` returns (a drop-in
:class:`~plexinode.net.transport.Endpoint`): one :class:`MemoryDatagramSocket` and one
:class:`~plexinode.testing.streams.MemoryListener` on one port. The port is free again once both
are closed.

Each datagram socket owns a bounded trio memory channel (:data:`DEFAULT_QUEUE_SIZE` datagrams);
a full queue drops the datagram, as a full UDP receive buffer does. What happens to a datagram
between ``sendto`` and its arrival (loss, delay, partitions, the counters) is the network's
business: a socket hands what it sends to the network's ``send`` function, and the network
calls :meth:`MemoryDatagramSocket.deliver` when a datagram arrives. Using a closed datagram
socket raises :class:`trio.ClosedResourceError`; the real socket would fail with an ``OSError``
that is logged and swallowed, but sending after close is always a bug, and a simulation is the
place to find it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import trio

from plexinode.net.address import Address
from plexinode.testing.streams import MemoryListener

#: Datagrams queued per socket before new ones are dropped. 256 full-size datagrams are about
#: 300 KB, the order of a default Linux UDP receive buffer (``net.core.rmem_default``); a node that
#: falls further behind than that is overloaded, and dropping is what UDP would do.
DEFAULT_QUEUE_SIZE: int = 256

#: How a socket sends: ``send(source, payload, destination)``; the network decides the fate.
SendDatagram = Callable[[Address, bytes, Address], None]


class EndpointHost(Protocol):
    """What an endpoint needs of its host (the network's record of a host).

    Attributes:
        endpoints: The host's bound endpoints by port; an endpoint leaves it once closed.
    """

    endpoints: dict[int, MemoryEndpoint]


class MemoryEndpoint:
    """A bound port: one datagram socket and one stream listener (a drop-in ``Endpoint``).

    Args:
        host: The host it is bound on; the endpoint removes itself from ``host.endpoints`` once
            both its socket and its listener are closed.
        address: The bound address.
        send: Where the socket's datagrams go (the network).
        queue_size: Datagrams the socket queues before dropping.
    """

    __slots__ = ("_address", "_datagrams", "_host", "_listener")

    def __init__(
        self, host: EndpointHost, address: Address, send: SendDatagram, queue_size: int
    ) -> None:
        self._host = host
        self._address = address
        self._datagrams = MemoryDatagramSocket(self, send, queue_size)
        self._listener = MemoryListener(address, self._part_closed)

    @property
    def address(self) -> Address:
        """The bound address, with the real port even when 0 was asked for."""
        return self._address

    @property
    def datagrams(self) -> MemoryDatagramSocket:
        """The datagram socket."""
        return self._datagrams

    @property
    def listener(self) -> MemoryListener:
        """The stream listener."""
        return self._listener

    async def aclose(self) -> None:
        """Close the socket and the listener; the port is free again."""
        self._datagrams.close()
        await self._listener.aclose()

    def close(self) -> None:
        """Close the socket and the listener at once (no checkpoint): a crash."""
        self._datagrams.close()
        self._listener.close()

    def _part_closed(self) -> None:
        # The port stays taken until both the socket and the listener are closed.
        if self._datagrams.closed and self._listener.closed:
            endpoints = self._host.endpoints
            if endpoints.get(self._address.port) is self:
                del endpoints[self._address.port]


class MemoryDatagramSocket:
    """A bound datagram socket with a bounded receive queue (a drop-in ``DatagramSocket``)."""

    __slots__ = ("_closed", "_endpoint", "_queue_in", "_queue_out", "_send")

    def __init__(self, endpoint: MemoryEndpoint, send: SendDatagram, queue_size: int) -> None:
        self._endpoint = endpoint
        self._send = send
        self._closed = False
        self._queue_in, self._queue_out = trio.open_memory_channel[tuple[bytes, Address]](
            queue_size
        )

    @property
    def closed(self) -> bool:
        """Whether the socket was closed (or its host crashed)."""
        return self._closed

    async def sendto(self, data: bytes, address: Address) -> None:
        """Send one datagram; losses and drops are silent (counted in ``network.stats``).

        Raises:
            trio.ClosedResourceError: This socket is closed.
        """
        await trio.lowlevel.checkpoint()
        if self._closed:
            raise trio.ClosedResourceError("the datagram socket is closed")
        self._send(self._endpoint._address, bytes(data), address)

    async def recvfrom(self) -> tuple[bytes, Address]:
        """Wait for the next datagram and its source address.

        Raises:
            trio.ClosedResourceError: The socket is closed, before or during the wait.
        """
        return await self._queue_out.receive()

    def deliver(self, payload: bytes, source: Address) -> bool:
        """Queue a datagram that arrived (the network calls this on an open socket); return
        False, queueing nothing, when the queue is full."""
        try:
            self._queue_in.send_nowait((payload, source))
        except trio.WouldBlock:
            return False
        return True

    def close(self) -> None:
        """Close the socket; queued datagrams are discarded."""
        if self._closed:
            return
        self._closed = True
        self._queue_out.close()
        self._queue_in.close()
        self._endpoint._part_closed()
