"""Pairs of in-memory message channels: the two ends of a conversation, without streams."""

from __future__ import annotations

import trio


class ChannelEnd(trio.abc.Channel[bytes]):
    """One end of a pair: sends to the other end, receives what it sends."""

    def __init__(
        self, send: trio.MemorySendChannel[bytes], receive: trio.MemoryReceiveChannel[bytes]
    ) -> None:
        self._send, self._receive = send, receive

    async def send(self, value: bytes) -> None:
        """Send one frame to the other end."""
        await self._send.send(value)

    async def receive(self) -> bytes:
        """The next frame from the other end (`trio.EndOfChannel` once it closed)."""
        return await self._receive.receive()

    async def aclose(self) -> None:
        """Close both directions of this end."""
        await self._send.aclose()
        await self._receive.aclose()


def channel_pair(buffer: int = 1000) -> tuple[ChannelEnd, ChannelEnd]:
    """Two connected ends, each buffering up to `buffer` frames."""
    a_send, b_receive = trio.open_memory_channel[bytes](buffer)
    b_send, a_receive = trio.open_memory_channel[bytes](buffer)
    return ChannelEnd(a_send, a_receive), ChannelEnd(b_send, b_receive)
