"""The owner's side of sending one share of a backup to one holder over ``shards/1``.

`open_share_upload` owns one stream to one holder for one share index of one home. `send`
puts a segment's block for that index in pieces; up to ``window`` segments may be in flight
(sent, not yet acknowledged) before `send` waits, so the owner never waits a round trip per
segment (Tahoe-LAFS's one round trip per segment is what limits it) and never holds more than
a window's blocks for a slow holder: a full window blocks `send`, which blocks the pipeline's
delivery, which stops new segments from being read (backpressure all the way to the disk).

The last piece of a block carries ``flush`` when the window is full or the caller says nothing
else is ready, so the holder commits what it has (one fsync'd transaction for many blocks)
whenever the owner is about to wait for it. A background task reads the holder's
``shard-stored`` answers: each acknowledged segment frees a window slot and is recorded in
`ShareUpload.stored`; a refusal ends the upload (`ShareUpload.refused` holds the reason) and
wakes a waiting `send`, which raises `HolderRefused` so placement can move the share index to
the next candidate. Once every block is acknowledged, `ShareUpload.put_manifest` sends the
backup's manifest on the same stream.

Deadlines (`deadlines`): a frame that the holder does not take within `deadlines.transfer` of
its size (it stopped reading), or a wait for an answer past `deadlines.transfer` of the bytes
still unacknowledged (it reads but never acknowledges), marks the upload refused with
``unreachable``, as a broken stream does, and the waiting call raises `HolderRefused`: the
job drops the share index and happiness decides. Single requests (`request`, `exchange`: an
offer, a reference, a renewal, a removal) fail with `trio.TooSlowError` after
`deadlines.ANSWER_SECONDS`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TypeVar

import trio

from plexinode.errors import DecodeError, PlexinodeError
from plexinode.shards import deadlines, messages
from plexinode.shards.pipeline import EncodedSegment
from plexinode.wire import envelope
from plexinode.wire.codec import FRAME_LIMITS
from plexinode.wire.schema import Message

log = logging.getLogger(__name__)

M = TypeVar("M", bound=Message)


class HolderRefused(PlexinodeError):
    """The holder refused a share (`reason`, one of `messages.Reason`)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"holder refused: {reason}{': ' + detail if detail else ''}")
        self.reason = reason


async def receive_message(stream: trio.abc.ReceiveChannel[bytes], kind: type[M]) -> M:
    """The next message on `stream`, which must be a `kind`.

    Raises:
        DecodeError: malformed, or another kind of message.
        trio.EndOfChannel: the peer closed the stream.
    """
    message = envelope.decode(await stream.receive(), FRAME_LIMITS).message
    if not isinstance(message, kind):
        raise DecodeError(f"{messages.SHARDS_PROTOCOL}: unexpected {message.NAME}")
    return message


async def exchange(stream: trio.abc.Channel[bytes], message: Message, kind: type[M]) -> M:
    """Send a request answered by one `kind`, under `deadlines.ANSWER_SECONDS`.

    Raises:
        trio.TooSlowError: no answer in time.
    """
    with trio.fail_after(deadlines.ANSWER_SECONDS):
        await stream.send(envelope.encode(message))
        return await receive_message(stream, kind)


async def request(stream: trio.abc.Channel[bytes], message: Message) -> messages.ShardReply:
    """Send a request answered by one ``shard-reply`` (`exchange`); raise `HolderRefused` if
    it refuses."""
    reply = await exchange(stream, message, messages.ShardReply)
    if not reply.ok:
        raise HolderRefused(reply.reason, reply.detail)
    return reply


class ShareUpload:
    """One share index of one home, to one holder (see the module docstring)."""

    def __init__(
        self,
        stream: trio.abc.Channel[bytes],
        *,
        backup_id: bytes,
        home: bytes,
        lease_expires: float,
        index: int,
        window: int,
    ) -> None:
        self._stream = stream
        self.backup_id = backup_id
        self.home = home
        self.lease_expires = lease_expires
        self.index = index
        self.window = window
        self.stored: list[bytes] = []
        self.refused: str | None = None
        self.bytes_sent = 0
        self._in_flight: dict[bytes, int] = {}  # segment ID -> block bytes, unacknowledged
        self._replies: list[messages.ShardReply] = []
        self._changed = trio.Event()

    async def send(self, segment: EncodedSegment, *, more_ready: bool = False) -> None:
        """Send this share's block of `segment` (waits while the window is full).

        Args:
            segment: the encoded segment.
            more_ready: another segment is ready to go at once; without it the block is
                flushed, so the holder commits rather than waiting for more.

        Raises:
            HolderRefused: the holder refused this or an earlier block.
        """
        while len(self._in_flight) >= self.window and self.refused is None:
            await self._wait_change(sum(self._in_flight.values()))
        if self.refused is not None:
            raise HolderRefused(self.refused)
        block = segment.blocks[self.index]
        self._in_flight[segment.identity] = len(block)
        flush = not more_ready or len(self._in_flight) >= self.window
        for at, piece, last in messages.pieces(block):
            put = messages.ShardPut(
                backup_id=self.backup_id,
                home=self.home,
                lease_expires=self.lease_expires,
                segment=segment.identity,
                index=self.index,
                root=segment.roots[self.index],
                size=len(block),
                offset=at,
                data=piece,
                flush=flush and last,
            )
            await self._send(put, len(put.data))
        self.bytes_sent += len(block)

    async def _send(self, message: Message, size: int) -> None:
        """Send one frame; a broken stream, or a holder that does not take it in time, is
        ``unreachable`` (`HolderRefused`)."""
        try:
            with trio.fail_after(deadlines.transfer(size)):
                await self._stream.send(envelope.encode(message))
        except (
            trio.BrokenResourceError,
            trio.ClosedResourceError,
            trio.TooSlowError,
            OSError,
        ) as exc:
            log.info(
                "shards: the stream to the holder of share %d broke: %s",
                self.index,
                str(exc) or "it took nothing in time",
            )
            self.refused = self.refused or messages.Reason.UNREACHABLE
            raise HolderRefused(self.refused) from None

    async def drain(self) -> None:
        """Wait until every block sent is acknowledged (or refused)."""
        while self._in_flight and self.refused is None:
            await self._wait_change(sum(self._in_flight.values()))
        if self.refused is not None:
            raise HolderRefused(self.refused)

    async def _wait_change(self, pending: int) -> None:
        """Wait for the holder's next answer, at most `deadlines.transfer(pending)` (`pending`:
        the bytes it has yet to acknowledge); past that it counts as ``unreachable``."""
        with trio.move_on_after(deadlines.transfer(pending)):
            await self._changed.wait()
            self._changed = trio.Event()
            return
        log.info("shards: the holder of share %d acknowledged nothing in time", self.index)
        self.refused = self.refused or messages.Reason.UNREACHABLE

    async def put_manifest(self, owner: bytes, data: bytes) -> None:
        """Send the backup's manifest (after `drain`); returns once the holder kept it.

        Raises:
            HolderRefused: the holder refused it (``bad_manifest``) or the stream failed.
        """
        for piece in messages.manifest_pieces(owner, self.backup_id, data):
            await self._send(piece, len(piece.data))
        while not self._replies and self.refused is None:
            await self._wait_change(len(data))
        if not self._replies:
            raise HolderRefused(self.refused or messages.Reason.BAD_REQUEST)
        reply = self._replies.pop(0)
        if not reply.ok:
            raise HolderRefused(reply.reason, reply.detail)

    async def read_acks(self) -> None:
        """Read the holder's answers until the stream ends (run in the background)."""
        try:
            while True:
                message = envelope.decode(await self._stream.receive(), FRAME_LIMITS).message
                if isinstance(message, messages.ShardReply):
                    self._replies.append(message)
                elif isinstance(message, messages.ShardStored):
                    self._stored(message)
                else:
                    raise DecodeError(f"{messages.SHARDS_PROTOCOL}: unexpected {message.NAME}")
                self._changed.set()
        except trio.EndOfChannel:
            if self._in_flight and self.refused is None:
                self.refused = messages.Reason.BUSY
            self._changed.set()
        except (DecodeError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            log.info("shards: holder stream for share %d failed: %s", self.index, exc)
            self.refused = self.refused or messages.Reason.BAD_REQUEST
            self._changed.set()

    def _stored(self, stored: messages.ShardStored) -> None:
        for identity in messages.split_ids(stored.stored):
            if self._in_flight.pop(identity, None) is not None:
                self.stored.append(identity)
        if stored.refused:
            self.refused = stored.reason or messages.Reason.BAD_REQUEST


@asynccontextmanager
async def open_share_upload(
    stream: trio.abc.Channel[bytes],
    *,
    backup_id: bytes,
    home: bytes,
    lease_expires: float,
    index: int,
    window: int = 16,
    size_hint: int = 0,
) -> AsyncIterator[ShareUpload]:
    """Offer the share to the holder, then yield the upload with its answers read in the background.

    Raises:
        HolderRefused: the holder refused the offer (e.g. no room: take the next candidate).
    """
    await request(
        stream,
        messages.ShardOffer(
            backup_id=backup_id, home=home, index=index, lease_expires=lease_expires, size=size_hint
        ),
    )
    upload = ShareUpload(
        stream,
        backup_id=backup_id,
        home=home,
        lease_expires=lease_expires,
        index=index,
        window=window,
    )
    # read_acks never raises (it turns every failure into a refusal), so the only exception a
    # nursery could gather is the caller's own: it is raised as itself, not as a group.
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(upload.read_acks)
            try:
                yield upload
            finally:
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise  # pragma: no cover  (only the body raises)
