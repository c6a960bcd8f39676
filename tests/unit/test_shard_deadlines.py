"""Deadlines on shards/1: a holder that accepts a request and then never answers (or answers
too slowly, or stops reading) ends the exchange in simulated time, never hangs it."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable

import pytest
import trio

from plexinode.shards import deadlines, fetching, messages, pipeline
from plexinode.shards.uploading import (
    HolderRefused,
    exchange,
    open_share_upload,
    receive_message,
    request,
)
from plexinode.testing.channels import ChannelEnd, channel_pair
from plexinode.wire import envelope

OWNER, SEG, B = b"o" * 32, b"s" * 32, b"b" * 16
NONCE = bytes(16)


async def silent(stream: ChannelEnd) -> None:
    """A holder that reads every request and answers none."""
    try:
        while True:
            await stream.receive()
    except (trio.EndOfChannel, trio.ClosedResourceError):
        pass


Call = Callable[[ChannelEnd], Awaitable[object]]
CALLS: list[tuple[str, Call, int]] = [
    ("block", lambda c: fetching.fetch_block(c, OWNER, SEG, 1), 0),
    ("manifest", lambda c: fetching.fetch_manifest(c, OWNER, B), 0),
    (
        "challenge",
        lambda c: fetching.challenge(c, OWNER, SEG, 1, leaves=(0, 1, 2, 3), nonce=NONCE),
        4 * pipeline.LEAF_BYTES,
    ),
    ("listing", lambda c: fetching.list_backups(c, OWNER), 0),
    ("request", lambda c: request(c, messages.ShardRemove(B)), 0),
    ("exchange", lambda c: exchange(c, messages.ShardRef(B, 9.0, SEG), messages.ShardStored), 0),
]


@pytest.mark.parametrize(("name", "call", "size"), CALLS, ids=[c[0] for c in CALLS])
async def test_a_request_to_a_holder_that_never_answers_times_out(
    autojump_clock, name: str, call: Call, size: int
) -> None:
    client, server = channel_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(silent, server)
        with pytest.raises(trio.TooSlowError):
            await call(client)
        assert trio.current_time() == pytest.approx(deadlines.transfer(size))
        await client.aclose()


async def test_a_block_announced_then_trickled_times_out_by_its_size(autojump_clock) -> None:
    """The deadline grows with the size the first piece announces, and no further."""
    client, server = channel_pair()
    total = 1 << 20

    async def trickle() -> None:
        await server.receive()
        for at in range(0, total, 1000):
            piece = messages.ShardBlock(SEG, 1, at, total, bytes(min(1000, total - at)))
            await server.send(envelope.encode(piece))
            await trio.sleep(1)  # 1 KB/s: well below the slowest rate allowed

    async with trio.open_nursery() as nursery:
        nursery.start_soon(trickle)
        with pytest.raises(trio.TooSlowError):
            await fetching.fetch_block(client, OWNER, SEG, 1)
        assert trio.current_time() == pytest.approx(deadlines.transfer(total))
        nursery.cancel_scope.cancel()


def segments(count: int, size: int = 100_000) -> list[pipeline.EncodedSegment]:
    rng = random.Random(count)
    return [pipeline.encode_segment(bytes(32), rng.randbytes(size), 2, 3) for _ in range(count)]


async def accept_offer(stream: ChannelEnd) -> None:
    await receive_message(stream, messages.ShardOffer)
    await stream.send(envelope.encode(messages.ShardReply(True, "", "")))


async def test_a_holder_that_never_acknowledges_is_unreachable(autojump_clock) -> None:
    client, server = channel_pair()

    async def accept_then_stall() -> None:
        await accept_offer(server)
        await silent(server)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(accept_then_stall)
        async with open_share_upload(
            client, backup_id=B, home=B, lease_expires=9.0, index=0, window=2
        ) as upload:
            segs = segments(3)
            await upload.send(segs[0], more_ready=True)
            await upload.send(segs[1], more_ready=True)
            with pytest.raises(HolderRefused, match="unreachable"):
                await upload.send(segs[2])  # the window is full: it waits, then gives up
            pending = sum(len(s.blocks[0]) for s in segs[:2])
            assert trio.current_time() == pytest.approx(deadlines.transfer(pending))
            with pytest.raises(HolderRefused, match="unreachable"):
                await upload.drain()
        await client.aclose()


async def test_a_holder_that_never_keeps_the_manifest_is_unreachable(autojump_clock) -> None:
    client, server = channel_pair()

    async def accept_then_stall() -> None:
        await accept_offer(server)
        await silent(server)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(accept_then_stall)
        async with open_share_upload(
            client, backup_id=B, home=B, lease_expires=9.0, index=0
        ) as upload:
            await upload.drain()  # nothing sent, nothing to wait for
            with pytest.raises(HolderRefused, match="unreachable"):
                await upload.put_manifest(OWNER, b"m" * 1000)
        await client.aclose()


async def test_a_holder_that_stops_reading_is_unreachable(autojump_clock) -> None:
    client, server = channel_pair(buffer=1)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(accept_offer, server)  # then reads nothing more
        async with open_share_upload(
            client, backup_id=B, home=B, lease_expires=9.0, index=0, window=8
        ) as upload:
            sent = 0
            with pytest.raises(HolderRefused, match="unreachable"):  # noqa: PT012
                for segment in segments(4, size=600_000):
                    await upload.send(segment, more_ready=True)
                    sent += 1
            assert sent == 0  # its first block did not fit in what the holder took
            assert upload.refused == messages.Reason.UNREACHABLE
        nursery.cancel_scope.cancel()


async def test_a_close_that_cannot_finish_is_dropped(autojump_clock) -> None:
    class Stuck(trio.abc.AsyncResource):
        closed = False

        async def aclose(self) -> None:
            await trio.sleep_forever()

    await deadlines.close_soon(Stuck())
    assert trio.current_time() == pytest.approx(deadlines.CLOSE_SECONDS)
