"""The streams of the in-memory network: listeners, bounded pipes, connections.

``connect`` on a :class:`~plexinode.testing.network.MemoryTransport` returns one end of a
reliable, in-order, half-closeable byte stream (:class:`MemoryStream`); ``listener.accept()``
returns the other. Each direction is a bounded pipe (:data:`DEFAULT_STREAM_BUFFER` bytes),
written here rather than borrowed from :mod:`trio.testing`: ``memory_stream_pair`` buffers
without limit, so a writer never feels backpressure, and ``lockstep_stream_pair`` has no buffer
at all, so two peers that both write a greeting before reading (which TCP allows) would
deadlock. The bounded pipe behaves like a pair of socket buffers: ``send_all`` returns once its
bytes fit in the buffer and blocks while the buffer is full, until the reader catches up.

Bytes on an established stream arrive with no delay and are never lost; modelling per-write
delay would need a timer per write, and protocols over streams care about order and
backpressure, which are modelled, far more than about the exact transfer time. (Latency applies
to connection set-up, which the network does: see
:class:`~plexinode.testing.network.MemoryNetwork`.)

Closing a stream ends the peer's reads with ``b""`` after the data already sent, and the peer's
writes raise :class:`trio.BrokenResourceError`; a reset (:meth:`StreamConnection.reset`, which
the network calls on a crash or a partition) makes both ends raise it at once. Closing a
listener resets the connections not yet accepted; accepted streams stay open, as with TCP.

This module knows nothing of the network: a connection registers itself with its two hosts
through the small :class:`ConnectionHost` interface (so that the network can find and reset the
connections of a host), and a listener tells its owner that it closed through a callback.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Protocol

import trio

from plexinode.net.address import Address

#: Bytes buffered per stream direction before ``send_all`` blocks: 64 KiB, the order of a default
#: TCP socket buffer. Large enough that request/response exchanges never stall on it, small enough
#: that a writer to a reader that stopped reading blocks instead of growing memory without bound.
DEFAULT_STREAM_BUFFER: int = 64 * 1024

#: Connections waiting for ``accept`` before new ones are refused; the same backlog that
#: :class:`~plexinode.net.transport.SocketTransport` passes to ``listen``.
DEFAULT_BACKLOG: int = 512


class ConnectionHost(Protocol):
    """What a connection needs of each of its two hosts (the network's record of a host).

    Attributes:
        name: The host's address.
        connections: The connections touching the host, which a crash or a partition resets;
            None until the first.
    """

    name: str
    connections: set[StreamConnection] | None


class MemoryListener(trio.abc.Listener["MemoryStream"]):
    """The stream listener of a bound port.

    Args:
        address: The bound address.
        on_closed: Called once, when the listener closes (the port is free again once its
            datagram socket is closed too).
    """

    __slots__ = ("_address", "_closed", "_lot", "_on_closed", "_pending")

    def __init__(self, address: Address, on_closed: Callable[[], None]) -> None:
        self._address = address
        self._on_closed = on_closed
        self._closed = False
        self._pending: list[StreamConnection] | None = None
        self._lot: trio.lowlevel.ParkingLot | None = None

    @property
    def address(self) -> Address:
        """The address connections to this listener reach."""
        return self._address

    @property
    def closed(self) -> bool:
        """Whether the listener was closed (or its host crashed)."""
        return self._closed

    @property
    def queued(self) -> int:
        """Connections waiting for :meth:`accept`."""
        return len(self._pending) if self._pending else 0

    async def accept(self) -> MemoryStream:
        """Wait for the next incoming connection and return our end of it.

        Raises:
            trio.ClosedResourceError: The listener is closed, before or during the wait.
        """
        await trio.lowlevel.checkpoint()
        while True:
            if self._closed:
                raise trio.ClosedResourceError("the listener is closed")
            if self._pending:
                return self._pending.pop(0).server
            if self._lot is None:
                self._lot = trio.lowlevel.ParkingLot()
            await self._lot.park()

    async def aclose(self) -> None:
        """Stop listening; connections not yet accepted are reset."""
        self.close()
        await trio.lowlevel.checkpoint()

    def close(self) -> None:
        """Stop listening at once (no checkpoint); connections not yet accepted are reset."""
        if self._closed:
            return
        self._closed = True
        pending, self._pending = self._pending or [], None
        for connection in pending:
            connection.reset()
        if self._lot is not None:
            self._lot.unpark_all()
        self._on_closed()

    def enqueue(self, connection: StreamConnection) -> None:
        """Queue an incoming connection for :meth:`accept` (the network checks the backlog)."""
        if self._pending is None:
            self._pending = []
        self._pending.append(connection)
        if self._lot is not None:
            self._lot.unpark()


class _Pipe:
    """One direction of a stream: a bounded byte buffer between one writer and one reader."""

    __slots__ = ("buffer", "capacity", "eof", "lot", "reader_closed", "reset")

    def __init__(self, capacity: int) -> None:
        self.buffer = bytearray()
        self.capacity = capacity
        #: The writer will write no more (``send_eof`` or ``aclose``): reads end with b"".
        self.eof = False
        #: The reader closed its end: writes raise BrokenResourceError.
        self.reader_closed = False
        #: The connection was aborted: both ends raise BrokenResourceError.
        self.reset = False
        self.lot: trio.lowlevel.ParkingLot | None = None

    async def wait(self) -> None:
        """Block until the state changes (any waiter re-checks what it waits for)."""
        if self.lot is None:
            self.lot = trio.lowlevel.ParkingLot()
        await self.lot.park()

    def changed(self) -> None:
        if self.lot is not None:
            self.lot.unpark_all()


class StreamConnection:
    """A stream connection: two pipes and the two :class:`MemoryStream` ends that share them.

    It registers itself in both hosts' ``connections`` and leaves them once both ends are
    closed or it is reset.

    Args:
        client_host: The host that connected.
        server_host: The host that listens.
        client_address: The connecting end's address (a notional source port).
        server_address: The listener's address.
        buffer: Bytes each direction buffers before ``send_all`` blocks.
    """

    __slots__ = ("client", "client_host", "open_ends", "server", "server_host")

    def __init__(
        self,
        client_host: ConnectionHost,
        server_host: ConnectionHost,
        client_address: Address,
        server_address: Address,
        buffer: int,
    ) -> None:
        self.client_host = client_host
        self.server_host = server_host
        upstream, downstream = _Pipe(buffer), _Pipe(buffer)
        self.client = MemoryStream(self, upstream, downstream, client_address, server_address)
        self.server = MemoryStream(self, downstream, upstream, server_address, client_address)
        self.open_ends = 2
        for host in (client_host, server_host):
            if host.connections is None:
                host.connections = set()
            host.connections.add(self)

    def end_closed(self) -> None:
        """One end was closed; the connection is forgotten once both are."""
        self.open_ends -= 1
        if self.open_ends == 0:
            self._forget()

    def reset(self) -> None:
        """Abort the connection: both ends raise BrokenResourceError from now on."""
        for pipe in (self.client._send_pipe, self.server._send_pipe):
            pipe.reset = True
            pipe.buffer.clear()
            pipe.changed()
        self._forget()

    def _forget(self) -> None:
        for host in (self.client_host, self.server_host):
            if host.connections is not None:
                host.connections.discard(self)


class MemoryStream(trio.abc.HalfCloseableStream):
    """One end of a reliable, in-order, half-closeable byte stream with bounded buffering.

    Attributes:
        local_address: This end's address (for a connecting end, a notional source port).
        remote_address: The other end's address.
    """

    __slots__ = (
        "_closed",
        "_connection",
        "_receive_busy",
        "_receive_pipe",
        "_send_busy",
        "_send_pipe",
        "local_address",
        "remote_address",
    )

    def __init__(
        self,
        connection: StreamConnection,
        send_pipe: _Pipe,
        receive_pipe: _Pipe,
        local_address: Address,
        remote_address: Address,
    ) -> None:
        self._connection = connection
        self._send_pipe = send_pipe
        self._receive_pipe = receive_pipe
        self.local_address = local_address
        self.remote_address = remote_address
        self._closed = False
        self._send_busy = False
        self._receive_busy = False

    def _check_sendable(self) -> None:
        pipe = self._send_pipe
        if self._closed or (pipe.eof and not pipe.reset):
            raise trio.ClosedResourceError("this stream is closed for sending")
        if pipe.reset or pipe.reader_closed:
            raise trio.BrokenResourceError("the connection was closed or reset by the peer")

    def _claim_send(self) -> None:
        if self._send_busy:
            raise trio.BusyResourceError("another task is already sending on this stream")
        self._send_busy = True

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        """Write all of `data`, blocking while the buffer towards the peer is full.

        Raises:
            trio.BusyResourceError: Another task is sending on this stream.
            trio.BrokenResourceError: The peer closed its end, or the connection was reset.
            trio.ClosedResourceError: This end was closed, or ``send_eof`` was called.
        """
        self._claim_send()
        try:
            await trio.lowlevel.checkpoint()
            view = memoryview(data).cast("B")
            pipe = self._send_pipe
            while True:
                self._check_sendable()
                if not view:
                    return
                room = pipe.capacity - len(pipe.buffer)
                if room > 0:
                    pipe.buffer += view[:room]
                    view = view[room:]
                    pipe.changed()
                else:
                    await pipe.wait()
        finally:
            self._send_busy = False

    async def wait_send_all_might_not_block(self) -> None:
        """Block until the buffer towards the peer has room (or the stream broke)."""
        self._claim_send()
        try:
            await trio.lowlevel.checkpoint()
            pipe = self._send_pipe
            while True:
                self._check_sendable()
                if len(pipe.buffer) < pipe.capacity:
                    return
                await pipe.wait()
        finally:
            self._send_busy = False

    async def send_eof(self) -> None:
        """Tell the peer we will send no more; it reads b"" after the data already sent."""
        self._claim_send()
        try:
            await trio.lowlevel.checkpoint()
            if self._closed:
                raise trio.ClosedResourceError("this stream is closed")
            if self._send_pipe.reset:
                raise trio.BrokenResourceError("the connection was reset")
            self._send_pipe.eof = True
            self._send_pipe.changed()
        finally:
            self._send_busy = False

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        """Return up to `max_bytes` bytes (all that is buffered if None), or b"" at the end.

        Raises:
            trio.BusyResourceError: Another task is receiving on this stream.
            trio.BrokenResourceError: The connection was reset.
            trio.ClosedResourceError: This end was closed.
        """
        if max_bytes is not None:
            max_bytes = operator.index(max_bytes)
            if max_bytes < 1:
                raise ValueError("max_bytes must be >= 1")
        if self._receive_busy:
            raise trio.BusyResourceError("another task is already receiving on this stream")
        self._receive_busy = True
        try:
            await trio.lowlevel.checkpoint()
            pipe = self._receive_pipe
            while True:
                if self._closed:
                    raise trio.ClosedResourceError("this stream is closed")
                if pipe.reset:
                    raise trio.BrokenResourceError("the connection was reset")
                if pipe.buffer:
                    size = len(pipe.buffer) if max_bytes is None else max_bytes
                    chunk = bytes(pipe.buffer[:size])
                    del pipe.buffer[:size]
                    pipe.changed()
                    return chunk
                if pipe.eof:
                    return b""
                await pipe.wait()
        finally:
            self._receive_busy = False

    async def aclose(self) -> None:
        """Close this end: the peer reads the data already sent, then b""; its writes break."""
        if not self._closed:
            self._closed = True
            self._send_pipe.eof = True
            self._send_pipe.changed()
            self._receive_pipe.reader_closed = True
            self._receive_pipe.buffer.clear()
            self._receive_pipe.changed()
            self._connection.end_closed()
        await trio.lowlevel.checkpoint()
