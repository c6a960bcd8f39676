"""Exact reads from a trio stream: the buffer under :mod:`plexinode.net.secure`'s frames.

A secure stream reads length-prefixed messages (handshake messages, then encrypted frames) from
a transport that hands over bytes in whatever chunks arrived. :class:`BufferedReader` keeps
those chunks and gives back exactly the byte ranges asked for, copying as little as it can.
"""

from __future__ import annotations

import collections
import struct
from typing import Final

import trio

#: How much to ask the transport for at a time: a few 64 KiB frames' worth, so that one receive
#: call (and one trio checkpoint) usually brings in at least a whole frame, while a peer that
#: announces a large frame still cannot make one call allocate more than this.
RECEIVE_CHUNK_BYTES: Final = 256 * 1024
#: Received chunks smaller than this are gathered into one buffer instead of being queued one
#: by one (see BufferedReader): it bounds the per-chunk overhead at under 1%.
SMALL_CHUNK_BYTES: Final = 4096


class BufferedReader:
    """Reads exact byte counts from a stream, keeping what arrived beyond them.

    Received chunks are kept as they came, in a queue, rather than appended to one buffer: a
    frame that lies within one chunk (the common case for large frames) is then copied once, by
    slicing, or not at all when it is the whole chunk; only a frame that straddles chunks is
    joined. Chunks smaller than SMALL_CHUNK_BYTES are first gathered in one bytearray, so a peer
    that trickles a large frame a byte at a time cannot make us hold a million tiny objects:
    memory stays proportional to the bytes buffered.

    Cancellation-safe: :meth:`fill` queues what it received even when cancelled, and nothing is
    consumed until the caller calls :meth:`take`.
    """

    __slots__ = ("_chunks", "_offset", "_size", "_stream", "receives")

    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self._stream = stream
        self._chunks: collections.deque[bytes] = collections.deque()
        self._offset = 0  # bytes of _chunks[0] already consumed
        self._size = 0  # bytes buffered and not consumed
        #: How many times :meth:`fill` awaited the stream (each await was a checkpoint).
        self.receives = 0

    def __len__(self) -> int:
        return self._size

    async def fill(self, count: int) -> bool:
        """Wait until at least `count` bytes are buffered; False if EOF comes first."""
        small = bytearray()
        try:
            while self._size < count:
                self.receives += 1
                chunk = await self._stream.receive_some(RECEIVE_CHUNK_BYTES)
                if not chunk:
                    return False
                if len(chunk) < SMALL_CHUNK_BYTES:
                    small += chunk
                else:
                    if small:
                        self._chunks.append(bytes(small))
                        small = bytearray()
                    self._chunks.append(bytes(chunk))
                self._size += len(chunk)
            return True
        finally:
            if small:
                self._chunks.append(bytes(small))

    def clear(self) -> None:
        """Drop everything buffered (a stream given up on frees its partial frame at once)."""
        self._chunks.clear()
        self._offset = 0
        self._size = 0

    def peek(self, struct_: struct.Struct) -> int:
        """Decode an unsigned length at the start of the buffer (which must hold it)."""
        first = self._chunks[0]
        if len(first) - self._offset >= struct_.size:
            value: int = struct_.unpack_from(first, self._offset)[0]
            return value
        head = bytearray()
        for index, chunk in enumerate(self._chunks):  # a length split across chunks: rare
            head += chunk[self._offset if index == 0 else 0 :]
            if len(head) >= struct_.size:
                break
        value = struct_.unpack_from(head)[0]
        return value

    def take(self, start: int, end: int) -> bytes:
        """Return the buffered bytes [start:end] and consume the first `end` bytes."""
        first = self._chunks[0]
        offset = self._offset
        if offset + end > len(first):
            self._consume_joined(start)
            return self._consume_joined(end - start)
        if offset + start == 0 and end == len(first):
            data = first  # exactly one whole chunk: no copy at all
        else:
            data = first[offset + start : offset + end]
        self._size -= end
        if offset + end == len(first):
            self._chunks.popleft()
            self._offset = 0
        else:
            self._offset = offset + end
        return data

    def _consume_joined(self, count: int) -> bytes:
        """Consume and return the next `count` buffered bytes, joined across chunks."""
        pieces = []
        needed = count
        while needed:
            chunk = self._chunks[0]
            available = len(chunk) - self._offset
            if available <= needed:
                pieces.append(memoryview(chunk)[self._offset :])
                self._chunks.popleft()
                self._offset = 0
                needed -= available
            else:
                pieces.append(memoryview(chunk)[self._offset : self._offset + needed])
                self._offset += needed
                needed = 0
        self._size -= count
        return b"".join(pieces)


__all__ = ["RECEIVE_CHUNK_BYTES", "SMALL_CHUNK_BYTES", "BufferedReader"]
