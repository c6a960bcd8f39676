"""The streams of one restore: one ``shards/1`` stream per holder, opened on first use and
reused, one request at a time on each (`fetching.fetch_block`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import trio

from plexinode.errors import PlexinodeError
from plexinode.identity import NodeId
from plexinode.net.address import Address
from plexinode.net.streams import StreamService
from plexinode.shards import deadlines, fetching, messages


class HolderFailed(PlexinodeError):
    """A holder that failed earlier in this restore is not asked again."""


class RestoreStreams:
    """One ``shards/1`` stream per holder for a restore, opened on first use, one request at a
    time on each. Each fetch has its deadline (`fetching.fetch_block`; reaching the holder,
    `deadlines.CONNECT_SECONDS`), counted once the holder's turn comes; a holder whose stream
    failed or stalled is closed and not asked again, so the requests queued behind a stalled
    one fail at once rather than each waiting out a deadline of its own."""

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
        self._failed: set[NodeId] = set()

    async def __aenter__(self) -> RestoreStreams:
        return self

    async def __aexit__(self, *exc: object) -> None:
        for stream in self._open.values():
            await deadlines.close_soon(stream)

    async def fetch(self, node: NodeId, segment: bytes, index: int) -> bytes:
        """Share `index` of `segment` from `node` (checked by the caller); a stream that broke
        is closed and forgotten."""
        lock = self._locks.setdefault(node, trio.Lock())
        async with lock:
            if node in self._failed:
                raise HolderFailed(f"{node.short()} failed earlier in this restore")
            stream = self._open.get(node)
            try:
                if stream is None:
                    with trio.fail_after(deadlines.CONNECT_SECONDS):
                        address = await self._locate(node)
                        stream = await self._streams.open(
                            address, messages.SHARDS_PROTOCOL, node_id=node
                        )
                    self._open[node] = stream
                return await fetching.fetch_block(stream, self._owner, segment, index)
            except fetching.NotHeld:
                raise  # the stream is fine: the holder answered
            except BaseException:
                self._failed.add(node)
                self._open.pop(node, None)
                if stream is not None:
                    await deadlines.close_soon(stream)
                raise
