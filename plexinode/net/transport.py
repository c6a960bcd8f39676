"""The transport interface and its real-socket implementation.

Services never touch sockets directly: they get a :class:`Transport`, which opens a UDP-like
datagram socket and TCP-like stream listeners and connections. :class:`SocketTransport` uses the
operating system; :mod:`plexinode.testing.network` implements the same interface in one process for
simulations. Both bind the datagram socket and the stream listener to the same port number.

The transport also hands out the node's random number generators (:meth:`Transport.rng`): the
choices they make (which member to probe, whom to gossip to, which peers to sync with) must be
unpredictable to others on a real network, so :class:`SocketTransport` seeds them from the
operating system; a simulation seeds them from the node, so that a run replays.

Receiving. All of a node's datagrams, honest or junk, arrive on one UDP socket, and the kernel
drops what arrives while the socket's receive buffer is full: under a flood, honest pings were
lost there before the node saw them (docs/benchmarks.md, "Junk floods"). So the socket asks for
a large receive buffer (``RECEIVE_BUFFER``; the kernel grants at most ``net.core.rmem_max`` on
Linux, and what it granted is logged), and a wakeup reads every datagram that is ready, up to
``RECEIVE_BATCH``, without a pass through the scheduler for each: trio's ``recvfrom`` costs one
per datagram. After a batch the reader yields once, so the rest of the node (the handlers the
batch started, timers) gets its turn before the next batch.
"""

from __future__ import annotations

import collections
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
#: The UDP receive buffer asked for: 4 MiB holds about 3,000 full datagrams (more small ones),
#: a third of a second of the floods the node drops at its measured rate, instead of the
#: kernel's default of about 200 KiB (a few hundred datagrams).
RECEIVE_BUFFER: int = 4 * 1024 * 1024
#: Datagrams read per wakeup before the reader yields to the rest of the node.
RECEIVE_BATCH: int = 64


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
    """A UDP socket that reads up to `batch` ready datagrams per scheduling pass."""

    def __init__(self, sock: stdlib_socket.socket, batch: int = RECEIVE_BATCH) -> None:
        self._raw = sock  # non-blocking, also wrapped by `self._sock`
        self._sock = trio.socket.from_stdlib_socket(sock)
        self._batch = batch
        self._ready: collections.deque[tuple[bytes, Address]] = collections.deque()

    async def sendto(self, data: bytes, address: Address) -> None:
        try:
            await self._sock.sendto(data, (address.host, address.port))
        except OSError as exc:
            log.debug("sendto %s failed: %s", address, exc)

    async def recvfrom(self) -> tuple[bytes, Address]:
        if not self._ready:
            await trio.lowlevel.checkpoint()  # one scheduling pass per batch
            self._read_ready()
            while not self._ready:
                await trio.lowlevel.wait_readable(self._raw)
                self._read_ready()
        return self._ready.popleft()

    def _read_ready(self) -> None:
        """Take up to one batch of the datagrams the kernel holds, without waiting."""
        for _ in range(self._batch):
            try:
                data, addr = self._raw.recvfrom(MAX_DATAGRAM + 1)
            except BlockingIOError:
                return
            except ConnectionResetError:  # ICMP port unreachable on some platforms
                continue
            self._ready.append((data, Address(addr[0], addr[1])))

    async def bind(self, address: Address) -> None:
        await self._sock.bind((address.host, address.port))

    def close(self) -> None:
        self._sock.close()


def _ask_receive_buffer(sock: stdlib_socket.socket, size: int) -> int:
    """Ask for a receive buffer of `size` bytes; returns (and logs) what the kernel granted."""
    try:
        sock.setsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_RCVBUF, size)
    except OSError as exc:  # pragma: no cover - refused outright on no platform we know
        log.info("UDP receive buffer of %d bytes refused: %s", size, exc)
    granted = int(sock.getsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_RCVBUF))
    # Linux reports twice the usable size (the other half is its bookkeeping).
    log.info(
        "UDP receive buffer: asked for %d bytes, the kernel reports %d%s",
        size,
        granted,
        "" if granted >= size else " (raise net.core.rmem_max for more)",
    )
    return granted


class _SocketEndpoint:
    def __init__(self, udp: _UdpSocket, listener: trio.SocketListener, address: Address) -> None:
        self._udp = udp
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
    """The real network: UDP and TCP sockets from the operating system.

    Args:
        receive_buffer: The UDP receive buffer to ask the kernel for, in bytes (0: its default).
        receive_batch: Datagrams read per wakeup (see the module docstring).
    """

    #: How many times to retry when the UDP port picked for port 0 is taken for TCP.
    BIND_ATTEMPTS = 20

    def __init__(
        self, *, receive_buffer: int = RECEIVE_BUFFER, receive_batch: int = RECEIVE_BATCH
    ) -> None:
        if receive_batch < 1:
            raise ValueError(f"receive_batch must be at least 1, got {receive_batch}")
        self.receive_buffer = receive_buffer
        self.receive_batch = receive_batch

    async def bind(self, address: Address) -> Endpoint:
        family = stdlib_socket.AF_INET6 if ":" in address.host else stdlib_socket.AF_INET
        attempts = self.BIND_ATTEMPTS if address.port == 0 else 1
        for attempt in range(attempts):
            raw = stdlib_socket.socket(family, stdlib_socket.SOCK_DGRAM)
            udp = _UdpSocket(raw, self.receive_batch)
            tcp = trio.socket.socket(family, stdlib_socket.SOCK_STREAM)
            try:
                if self.receive_buffer:
                    _ask_receive_buffer(raw, self.receive_buffer)
                await udp.bind(Address(address.host, address.port))
                port = raw.getsockname()[1]
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
