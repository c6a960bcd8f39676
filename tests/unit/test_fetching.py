"""Reading from a holder: answers are checked piece by piece before anything is trusted."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import trio

from plexinode.errors import DecodeError
from plexinode.shards import audit, fetching, messages
from plexinode.shards.fetching import NotHeld
from plexinode.testing.channels import ChannelEnd, channel_pair
from plexinode.wire import envelope
from plexinode.wire.codec import FRAME_LIMITS
from plexinode.wire.schema import Message

OWNER, SEG, B = b"o" * 32, b"s" * 32, b"b" * 16
BLOCK = bytes(range(256)) * 1500  # 384,000 bytes: two pieces


def block_pieces(data: bytes = BLOCK, total: int | None = None) -> list[Message]:
    total = len(data) if total is None else total
    step = messages.PIECE_BYTES
    return [
        messages.ShardBlock(SEG, 2, at, total, data[at : at + step])
        for at in range(0, len(data), step)
    ]


async def exchange(
    answers: list[Message] | list[bytes], call: Callable[[ChannelEnd], object]
) -> object:
    client, server = channel_pair()
    for answer in answers:
        await server.send(answer if isinstance(answer, bytes) else envelope.encode(answer))
    result = await call(client)  # type: ignore[misc]
    request = envelope.decode(await server.receive(), FRAME_LIMITS).message
    return result, request


async def test_a_block_in_pieces() -> None:
    result, request = await exchange(
        block_pieces(), lambda c: fetching.fetch_block(c, OWNER, SEG, 2)
    )
    assert result == BLOCK
    assert request == messages.ShardGet(OWNER, SEG, 2)


async def test_a_manifest_in_pieces_and_a_listing() -> None:
    pieces = [
        messages.ShardManifest(OWNER, B, 0, 5, b"abc"),
        messages.ShardManifest(OWNER, B, 3, 5, b"de"),
    ]
    result, request = await exchange(pieces, lambda c: fetching.fetch_manifest(c, OWNER, B))
    assert result == b"abcde"
    assert request == messages.ShardManifestGet(OWNER, B)
    result, _ = await exchange(
        [messages.ShardListing((B,))], lambda c: fetching.list_backups(c, OWNER)
    )
    assert result == (B,)


async def test_a_challenge() -> None:
    nonce = bytes(16)
    leaves = audit.challenged_leaves(nonce, len(BLOCK))
    proof = audit.answer(BLOCK, nonce, leaves)
    result, request = await exchange(
        [proof], lambda c: fetching.challenge(c, OWNER, SEG, 2, leaves=leaves, nonce=nonce)
    )
    assert result == proof
    assert isinstance(request, messages.ShardChallenge)
    with pytest.raises(DecodeError, match="unexpected shard-block"):
        await exchange(
            block_pieces(),
            lambda c: fetching.challenge(c, OWNER, SEG, 2, leaves=leaves, nonce=nonce),
        )


async def test_not_held() -> None:
    with pytest.raises(NotHeld, match="not_held") as caught:
        await exchange(
            [messages.ShardReply(False, "not_held", "")],
            lambda c: fetching.fetch_block(c, OWNER, SEG, 2),
        )
    assert caught.value.reason == "not_held"
    with pytest.raises(NotHeld, match="empty answer"):
        await exchange(
            [messages.ShardReply(True, "", "")], lambda c: fetching.fetch_block(c, OWNER, SEG, 2)
        )


@pytest.mark.parametrize(
    ("answers", "message"),
    [
        (block_pieces()[1:], "out of order"),
        (block_pieces()[:1] + block_pieces(BLOCK[:-1])[1:], "out of order"),
        (block_pieces(BLOCK, total=len(BLOCK) - 1), "do not add up"),
        ([messages.ShardBlock(SEG, 2, 0, 10, b"")], "do not add up"),
        ([messages.ShardManifest(OWNER, B, 0, 5, b"abcde")], "unexpected shard-manifest"),
        ([b"\xc1"], "malformed"),
    ],
)
async def test_answers_that_do_not_add_up(answers: list[Message], message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        await exchange(answers, lambda c: fetching.fetch_block(c, OWNER, SEG, 2))


async def test_an_announced_size_beyond_the_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fetching, "MAX_MANIFEST_BYTES", 4)
    with pytest.raises(DecodeError, match="5 bytes announced"):
        await exchange(
            [messages.ShardManifest(OWNER, B, 0, 5, b"abc")],
            lambda c: fetching.fetch_manifest(c, OWNER, B),
        )


async def test_a_closed_stream_ends_the_read() -> None:
    client, server = channel_pair()
    await server.aclose()
    with pytest.raises((trio.EndOfChannel, trio.BrokenResourceError, trio.ClosedResourceError)):
        await fetching.fetch_block(client, OWNER, SEG, 2)
