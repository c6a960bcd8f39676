"""The streams of one restore: one ``shards/1`` stream per holder, opened on first use and
reused, one request at a time on each (`fetching.fetch_block`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import trio

from plexinode.identity import NodeId
from plexinode.net.address import Address
from plexinode.net.streams import StreamService
from plexinode.shards import fetching, messages


class RestoreStreams:
    """One ``shards/1`` stream per holder for a restore, opened on first use, one request at a
    time on each."""

    def __init__(
        self,
        streams: StreamService,
        locate: Callable[[NodeId], Awaitable[Address]],
        owner: bytes,
    ) -> None:
        self._streams = streams
        self._locate = locate
        self._owner = owner
        self._open: dict[NodeId, trio.abc.Channel[bytes]] = {}
        self._locks: dict[NodeId, trio.Lock] = {}

    async def __aenter__(self) -> RestoreStreams:
        return self

    async def __aexit__(self, *exc: object) -> None:
        for stream in self._open.values():
            with trio.move_on_after(1):
                await stream.aclose()

    async def fetch(self, node: NodeId, segment: bytes, index: int) -> bytes:
        """Share `index` of `segment` from `node` (checked by the caller); a stream that broke
        is closed and forgotten."""
        lock = self._locks.setdefault(node, trio.Lock())
        async with lock:
            stream = self._open.get(node)
            if stream is None:
                address = await self._locate(node)
                stream = await self._streams.open(address, messages.SHARDS_PROTOCOL, node_id=node)
                self._open[node] = stream
            try:
                return await fetching.fetch_block(stream, self._owner, segment, index)
            except fetching.NotHeld:
                raise  # the stream is fine: the holder answered
            except BaseException:
                self._open.pop(node, None)
                with trio.move_on_after(1):
                    await stream.aclose()
                raise
