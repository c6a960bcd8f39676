"""The transport interface and its real-socket implementation.

Services never touch sockets directly: they get a :class:`Transport`, which opens a UDP-like
datagram socket and TCP-like stream listeners and connections. :class:`SocketTransport` uses the
operating system; :mod:`plexinode.testing.network` implements the same interface in one process for
simulations. Both bind the datagram socket and the stream listener to the same port number.

The transport also hands out the node's random number generators (:meth:`Transport.rng`): the
choices they make (which member to probe, whom to gossip to, which peers to sync with) must be
unpredictable to others on a real network, so :class:`SocketTransport` seeds them from the
operating system; a simulation seeds them from the node, so that a run replays.
"""

from __future__ import annotations

import errno
import logging
import os
import random
import socket as stdlib_socket
from typing import Protocol

import trio

from plexinode.net.address import Address

log = logging.getLogger(__name__)

#: Largest datagram we ever send or accept (fits the IPv6 minimum MTU with headers).
MAX_DATAGRAM: int = 1200


class DatagramSocket(Protocol):
    """An unreliable, unordered, message-oriented socket."""

    async def sendto(self, data: bytes, address: Address) -> None:
        """Send one datagram; errors from the network are swallowed (UDP semantics)."""

    async def recvfrom(self) -> tuple[bytes, Address]:
        """Wait for the next datagram and its source address."""
        ...

    def close(self) -> None:
        """Release the socket."""


class Endpoint(Protocol):
    """What a node binds: one datagram socket and one stream listener on the same port."""

    @property
    def address(self) -> Address:
        """The bound address (the port is real even when 0 was asked for)."""
        ...

    @property
    def datagrams(self) -> DatagramSocket:
        """The datagram socket."""
        ...

    @property
    def listener(self) -> trio.abc.Listener[trio.abc.Stream]:
        """The stream listener."""
        ...

    async def aclose(self) -> None:
        """Close both sockets."""


class Transport(Protocol):
    """Factory for endpoints and outgoing stream connections."""

    async def bind(self, address: Address) -> Endpoint:
        """Bind a datagram socket and a stream listener on one port (0 picks a free one)."""
        ...

    async def connect(self, address: Address) -> trio.abc.Stream:
        """Open a stream to `address`; OSError if it cannot be reached."""
        ...

    def rng(self, seed: bytes) -> random.Random:
        """A random number generator for one of the node's jobs: seeded by `seed` where runs
        must replay (simulations), unpredictably where they run for real."""
        ...


class _UdpSocket:
    def __init__(self, sock: trio.socket.SocketType) -> None:
        self._sock = sock

    async def sendto(self, data: bytes, address: Address) -> None:
        try:
            await self._sock.sendto(data, (address.host, address.port))
        except OSError as exc:
            log.debug("sendto %s failed: %s", address, exc)

    async def recvfrom(self) -> tuple[bytes, Address]:
        while True:
            try:
                data, addr = await self._sock.recvfrom(MAX_DATAGRAM + 1)
            except ConnectionResetError:  # ICMP port unreachable on some platforms
                continue
            return data, Address(addr[0], addr[1])

    def close(self) -> None:
        self._sock.close()


class _SocketEndpoint:
    def __init__(
        self, udp: trio.socket.SocketType, listener: trio.SocketListener, address: Address
    ) -> None:
        self._udp = _UdpSocket(udp)
        self._listener = listener
        self._address = address

    @property
    def address(self) -> Address:
        return self._address

    @property
    def datagrams(self) -> DatagramSocket:
        return self._udp

    @property
    def listener(self) -> trio.abc.Listener[trio.abc.Stream]:
        return self._listener

    async def aclose(self) -> None:
        self._udp.close()
        await self._listener.aclose()


class SocketTransport:
    """The real network: UDP and TCP sockets from the operating system."""

    #: How many times to retry when the UDP port picked for port 0 is taken for TCP.
    BIND_ATTEMPTS = 20

    async def bind(self, address: Address) -> Endpoint:
        family = stdlib_socket.AF_INET6 if ":" in address.host else stdlib_socket.AF_INET
        attempts = self.BIND_ATTEMPTS if address.port == 0 else 1
        for attempt in range(attempts):
            udp = trio.socket.socket(family, stdlib_socket.SOCK_DGRAM)
            tcp = trio.socket.socket(family, stdlib_socket.SOCK_STREAM)
            try:
                await udp.bind((address.host, address.port))
                port = udp.getsockname()[1]
                tcp.setsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_REUSEADDR, 1)
                await tcp.bind((address.host, port))
                tcp.listen(512)
            except OSError as exc:
                udp.close()
                tcp.close()
                if exc.errno == errno.EADDRINUSE and attempt + 1 < attempts:
                    continue
                raise
            return _SocketEndpoint(udp, trio.SocketListener(tcp), Address(address.host, port))
        raise AssertionError("unreachable")  # pragma: no cover

    def rng(self, seed: bytes) -> random.Random:
        """Seeded from the operating system: `seed`, which others may know (it is derived from
        the public node ID), is not used."""
        del seed
        return random.Random(os.urandom(32))

    async def connect(self, address: Address) -> trio.abc.Stream:
        try:
            return await trio.open_tcp_stream(address.host, address.port)
        except OSError as exc:
            # trio reports "all attempts failed" as a plain OSError; when every attempt was
            # refused, say so (membership treats "nothing listens there" as a crashed process).
            causes = getattr(exc.__cause__, "exceptions", ())
            if causes and all(isinstance(c, ConnectionRefusedError) for c in causes):
                raise ConnectionRefusedError(
                    errno.ECONNREFUSED, f"connection refused by {address}"
                ) from exc
            raise
