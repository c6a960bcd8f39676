"""Reading from a holder over ``shards/1``: blocks, challenge proofs, manifests, listings.

Each function sends one request on a stream the caller opened and reads its answer, checking
what it can before trusting it: a block arrives in pieces that must continue one another and
add up to the size the first piece announced, never past `messages.MAX_BLOCK_BYTES` (the caller
then checks it against the share's Merkle root, which only the owner-signed manifest gives); a
manifest arrives in pieces up to its announced total, at most `MAX_MANIFEST_BYTES`, and is then
decoded and its signature checked by the caller. A holder that does not have what is asked for
answers ``shard-reply`` with ``not_held`` (`NotHeld`); any other answer is a protocol error.

Each function runs under a deadline (`deadlines`): `deadlines.ANSWER_SECONDS` until the first
piece, then, once a block or manifest has announced its size, until that size could have
arrived at `deadlines.SLOWEST_RATE`. A holder past it raises `trio.TooSlowError` (one of
`net.streams.STREAM_FAILURES`); the stream is then out of step, and the caller closes it.
"""

from __future__ import annotations

import trio

from plexinode.errors import DecodeError, PlexinodeError
from plexinode.shards import deadlines, messages, pipeline
from plexinode.shards.manifest import MAX_MANIFEST_BYTES
from plexinode.shards.uploading import receive_message
from plexinode.wire import envelope
from plexinode.wire.codec import FRAME_LIMITS
from plexinode.wire.schema import Message

_Piece = messages.ShardBlock | messages.ShardManifest


class NotHeld(PlexinodeError):
    """The holder does not have what was asked for (or refused to serve it: `reason`)."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"not served: {reason}")
        self.reason = reason


async def _next(stream: trio.abc.ReceiveChannel[bytes]) -> Message:
    message = envelope.decode(await stream.receive(), FRAME_LIMITS).message
    if isinstance(message, messages.ShardReply):
        raise NotHeld(message.reason if not message.ok else "empty answer")
    return message


async def _assemble(
    stream: trio.abc.ReceiveChannel[bytes],
    kind: type[_Piece],
    limit: int,
    deadline: trio.CancelScope,
) -> bytes:
    """The pieces of one block or manifest, put together; `deadline` (the request's scope,
    opened with `deadlines.ANSWER_SECONDS` when it was sent) is moved on by the time its
    announced size may take."""
    pieces: list[bytes] = []
    received = 0
    total: int | None = None
    while total is None or received < total:
        message = await _next(stream)
        if not isinstance(message, kind):
            raise DecodeError(f"{messages.SHARDS_PROTOCOL}: unexpected {message.NAME}")
        if total is None:
            total = message.total
            if total > limit:
                raise DecodeError(f"{messages.SHARDS_PROTOCOL}: {total} bytes announced")
            deadline.deadline += total / deadlines.SLOWEST_RATE
        if message.total != total or message.offset != received:
            raise DecodeError(f"{messages.SHARDS_PROTOCOL}: pieces out of order")
        data = message.data
        if received + len(data) > total or not data:
            raise DecodeError(f"{messages.SHARDS_PROTOCOL}: pieces do not add up")
        pieces.append(data)
        received += len(data)
    return b"".join(pieces)


async def fetch_block(
    stream: trio.abc.Channel[bytes], owner: bytes, segment: bytes, index: int
) -> bytes:
    """The block of share `index` of `owner`'s `segment` (not yet checked against its root).

    Raises:
        NotHeld: the holder does not serve it.
        DecodeError: the answer breaks the piece rules.
        trio.TooSlowError: past the deadline (module docstring).
    """
    with trio.fail_after(deadlines.ANSWER_SECONDS) as deadline:
        await stream.send(envelope.encode(messages.ShardGet(owner, segment, index)))
        return await _assemble(stream, messages.ShardBlock, messages.MAX_BLOCK_BYTES, deadline)


async def fetch_manifest(stream: trio.abc.Channel[bytes], owner: bytes, backup_id: bytes) -> bytes:
    """`owner`'s manifest of `backup_id`, as bytes (decode and check it before use)."""
    with trio.fail_after(deadlines.ANSWER_SECONDS) as deadline:
        await stream.send(envelope.encode(messages.ShardManifestGet(owner, backup_id)))
        return await _assemble(stream, messages.ShardManifest, MAX_MANIFEST_BYTES, deadline)


async def challenge(
    stream: trio.abc.Channel[bytes],
    owner: bytes,
    segment: bytes,
    index: int,
    *,
    leaves: tuple[int, ...],
    nonce: bytes,
) -> messages.ShardProof:
    """The holder's proof for a challenge (check it with `audit.check_proof`)."""
    with trio.fail_after(deadlines.transfer(len(leaves) * pipeline.LEAF_BYTES)):
        await stream.send(
            envelope.encode(messages.ShardChallenge(owner, segment, index, leaves, nonce))
        )
        message = await _next(stream)
    if not isinstance(message, messages.ShardProof):
        raise DecodeError(f"{messages.SHARDS_PROTOCOL}: unexpected {message.NAME}")
    return message


async def list_backups(stream: trio.abc.Channel[bytes], owner: bytes) -> tuple[bytes, ...]:
    """The backups of `owner` whose manifests the holder keeps."""
    with trio.fail_after(deadlines.ANSWER_SECONDS):
        await stream.send(envelope.encode(messages.ShardList(owner)))
        listing = await receive_message(stream, messages.ShardListing)
    return listing.backup_ids
