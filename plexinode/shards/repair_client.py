"""The repairer's side of ``shards/1`` with one member: claim, offer, put, done.

Each function sends on a stream the caller opened and reads the answer; a refusal raises
`uploading.HolderRefused` with the holder's reason. The order on one stream is `offer`, then
`put_blocks` as often as needed, then `done` (the holder then checks that it holds every segment
of the share and publishes its provider record); `claim` may be sent to any holder of the home.
"""

from __future__ import annotations

from collections.abc import Sequence

import trio

from plexinode.errors import DecodeError
from plexinode.shards import messages
from plexinode.shards.uploading import HolderRefused, receive_message, request
from plexinode.wire import envelope


async def claim(stream: trio.abc.Channel[bytes], owner: bytes, home: bytes) -> None:
    """Claim the repair of `owner`'s `home` (`HolderRefused` ``claimed``: another has it)."""
    await request(stream, messages.ShardRepairClaim(owner, home))


async def offer(
    stream: trio.abc.Channel[bytes], offered: messages.ShardRepairOffer, manifest: bytes
) -> None:
    """Offer a share with the owner's manifest (`offered.total` must be its length)."""
    await stream.send(envelope.encode(offered))
    for piece in messages.manifest_pieces(offered.owner, offered.backup_id, manifest):
        await stream.send(envelope.encode(piece))
    reply = await receive_message(stream, messages.ShardReply)
    if not reply.ok:
        raise HolderRefused(reply.reason, reply.detail)


async def put_blocks(
    stream: trio.abc.Channel[bytes], blocks: Sequence[tuple[bytes, bytes]]
) -> None:
    """Send (segment ID, block) pairs of the share offered, flushing after the last; return once
    the holder committed them all.

    Raises:
        HolderRefused: a block was refused (``bad_root``, a quota, ...).
    """
    if not blocks:
        return
    for number, (segment, block) in enumerate(blocks):
        last_block = number == len(blocks) - 1
        for at, data, last in messages.pieces(block):
            piece = messages.ShardRepairPut(segment, at, data, last_block and last)
            await stream.send(envelope.encode(piece))
    answered = 0
    while answered < len(blocks):
        stored = await receive_message(stream, messages.ShardStored)
        if stored.refused:
            raise HolderRefused(stored.reason or messages.Reason.BAD_REQUEST)
        count = len(messages.split_ids(stored.stored))
        if not count:
            raise DecodeError(f"{messages.SHARDS_PROTOCOL}: an empty shard-stored")
        answered += count


async def done(stream: trio.abc.Channel[bytes], owner: bytes, home: bytes) -> None:
    """Every block is sent: the holder checks the share is whole (``not_held`` if not)."""
    await request(stream, messages.ShardRepairDone(owner, home))
