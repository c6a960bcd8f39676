"""Liveness between two nodes: the ``ping`` datagram and the ``echo/1`` stream protocol.

Both prove that the node at an address holds a node key, and measure the round trip:

- over datagrams, the ping is signed by us and the pong by them (and bound to our ID); the pong
  also tells us the address our datagram came from (what the DHT's observed-address quorum
  counts);
- over a stream, both sides complete the mutual handshake, then the dialer sends one random
  ``Echo`` frame and the server sends it back unchanged. An echo stream serves only pings and
  benchmarks: one that stays silent for :data:`ECHO_IDLE_TIMEOUT` is closed, and one that sends
  anything other than an echo frame is a protocol error.

The node registers the two handlers (:func:`answer_ping` with its datagram service,
:func:`serve_echo` under :data:`ECHO_PROTOCOL` with its stream service) before it starts them,
and pings over a stream with :func:`ping_stream` (a datagram ping is a ``Ping`` request:
plexinode.net.pinging).
"""

from __future__ import annotations

import os
from typing import Any, Final

import trio

from plexinode.errors import DecodeError, RemoteProtocolError
from plexinode.identity import NodeId
from plexinode.net.address import Address
from plexinode.net.datagram import Inbound
from plexinode.net.secure import SecureStream
from plexinode.net.streams import StreamService
from plexinode.wire import envelope
from plexinode.wire.codec import FRAME_LIMITS
from plexinode.wire.messages import Echo, Pong
from plexinode.wire.schema import Message

ECHO_PROTOCOL: Final = "echo/1"
#: An echo stream that stays silent this long is closed (it only serves pings and benchmarks).
ECHO_IDLE_TIMEOUT: Final = 60.0
#: Random bytes in the frame that `ping_stream` sends and expects back.
ECHO_PAYLOAD_BYTES: Final = 16


async def answer_ping(inbound: Inbound) -> Message:
    """The handler of ``ping`` datagrams: a pong with the address the ping came from."""
    return Pong(inbound.address.host, inbound.address.port)


async def serve_echo(stream: SecureStream) -> None:
    """The ``echo/1`` handler: send every echo frame back until the dialer closes or idles.

    A dialer that closes its stream cleanly (``ping --stream`` does, after one echo) ends the
    stream normally: only a frame that is not an echo, or a stream broken or cut short, is an
    error.

    Raises:
        DecodeError: A frame that is not an echo frame (the stream service counts it and closes
            the stream).
        RemoteProtocolError: The dialer closed without its final frame.
        trio.BrokenResourceError: The connection broke.
    """
    while True:
        with trio.move_on_after(ECHO_IDLE_TIMEOUT) as idle:
            try:
                frame = await stream.receive()
            except trio.EndOfChannel:  # the dialer closed cleanly: done
                return
        if idle.cancelled_caught:  # silent for too long
            return
        message = envelope.decode(frame, FRAME_LIMITS).message
        if not isinstance(message, Echo):
            raise DecodeError(f"echo/1 expects echo frames, got {message.NAME}")
        await stream.send(frame)


async def ping_stream(
    streams: StreamService, address: Address, node_id: NodeId | None = None
) -> dict[str, Any]:
    """Open an ``echo/1`` stream to `address` (which must be `node_id`, if given) and echo one
    frame: the round trip is measured after the handshake, which is timed on its own.

    Returns:
        ``{"node_id", "address", "rtt_ms", "handshake_ms", "via": "stream"}``.

    Raises:
        HandshakeError: The node at `address` is not `node_id`, or the handshake failed.
        RemoteProtocolError: The echo did not come back unchanged, or the node closed the
            stream instead (it refuses streams from us beyond its limits: see
            plexinode.net.streams).
        OSError: The address cannot be reached.
    """
    started = trio.current_time()
    stream = await streams.open(address, ECHO_PROTOCOL, node_id=node_id)
    async with stream:
        handshake_done = trio.current_time()
        payload = envelope.encode(Echo(os.urandom(ECHO_PAYLOAD_BYTES)))
        try:
            await stream.send(payload)
            reply = await stream.receive()
        except (trio.EndOfChannel, trio.BrokenResourceError):
            raise RemoteProtocolError(
                f"the node at {address} closed the stream without an echo (at its stream limits?)"
            ) from None
        if reply != payload:
            raise RemoteProtocolError("echo reply does not match")
    finished = trio.current_time()
    return {
        "node_id": str(stream.remote_node_id),
        "address": str(address),
        "rtt_ms": round((finished - handshake_done) * 1000, 3),
        "handshake_ms": round((handshake_done - started) * 1000, 3),
        "via": "stream",
    }
