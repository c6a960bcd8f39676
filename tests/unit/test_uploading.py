"""The owner's side of a share upload against a holder played by the holder's session core."""

from __future__ import annotations

import random

import pytest
import trio

from plexinode.shards import messages, pipeline
from plexinode.shards.holding import HolderSession
from plexinode.shards.uploading import HolderRefused, open_share_upload, receive_message, request
from plexinode.testing.channels import ChannelEnd, channel_pair
from plexinode.wire import envelope
from plexinode.wire.codec import FRAME_LIMITS

SECRET = bytes(32)
OWNER = b"o" * 32


class Holder:
    """A holder in memory: answers offers, commits what its session hands over."""

    def __init__(
        self, *, refuse_offer: str = "", refuse_after: int = -1, hold_acks: bool = False
    ) -> None:
        self.session = HolderSession(OWNER)
        self.blocks: dict[bytes, bytes] = {}
        self.commits: list[int] = []
        self.refuse_offer = refuse_offer
        self.refuse_after = refuse_after
        self.hold_acks = hold_acks
        self.release = trio.Event()

    async def serve(self, stream: ChannelEnd) -> None:
        try:
            while True:
                message = envelope.decode(await stream.receive(), FRAME_LIMITS).message
                if isinstance(message, messages.ShardOffer):
                    ok = not self.refuse_offer
                    await stream.send(
                        envelope.encode(messages.ShardReply(ok, self.refuse_offer, ""))
                    )
                elif isinstance(message, messages.ShardPut):
                    commit = self.session.put(message)
                    if commit is None:
                        continue
                    if self.hold_acks:
                        await self.release.wait()
                    self.commits.append(len(commit.blocks))
                    stored, refused = b"", b""
                    for block in commit.blocks:
                        if 0 <= self.refuse_after <= len(self.blocks):
                            refused += block.segment
                            continue
                        assert pipeline.share_root(block.data) == block.root
                        self.blocks[block.segment] = block.data
                        stored += block.segment
                    reason = messages.Reason.NODE_FULL if refused else ""
                    await stream.send(
                        envelope.encode(messages.ShardStored(stored, refused, reason))
                    )
        except trio.EndOfChannel:
            pass


def segments(count: int, size: int = 600_000) -> list[pipeline.EncodedSegment]:
    rng = random.Random(count)
    return [pipeline.encode_segment(SECRET, rng.randbytes(size), 3, 5) for _ in range(count)]


async def upload(
    holder: Holder, segs: list[pipeline.EncodedSegment], window: int = 4, index: int = 1
) -> list[bytes]:
    owner_end, holder_end = channel_pair()
    stored: list[bytes] = []
    failure: list[HolderRefused] = []

    async def owner() -> None:
        try:
            async with open_share_upload(
                owner_end,
                backup_id=b"B" * 16,
                home=b"B" * 16,
                lease_expires=9.0,
                index=index,
                window=window,
            ) as up:
                for i, seg in enumerate(segs):
                    await up.send(seg, more_ready=i + 1 < len(segs))
                await up.drain()
                stored.extend(up.stored)
                assert up.bytes_sent == sum(len(s.blocks[index]) for s in segs)
        except HolderRefused as exc:
            failure.append(exc)
        await owner_end.aclose()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(holder.serve, holder_end)
        nursery.start_soon(owner)
    if failure:
        raise failure[0]
    return stored


async def test_blocks_arrive_whole_and_are_acknowledged_in_groups() -> None:
    holder = Holder()
    segs = segments(9)
    stored = await upload(holder, segs, window=4)
    assert stored == [s.identity for s in segs]
    assert holder.blocks == {s.identity: s.blocks[1] for s in segs}
    assert sum(holder.commits) == 9
    assert max(holder.commits) == 4  # a window per commit, not one fsync per block


async def test_a_full_window_waits_for_the_holder() -> None:
    holder = Holder(hold_acks=True)
    segs = segments(6, size=100_000)
    owner_end, holder_end = channel_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(holder.serve, holder_end)
        async with open_share_upload(
            owner_end, backup_id=b"B" * 16, home=b"B" * 16, lease_expires=9.0, index=0, window=2
        ) as up:
            sent = 0

            async def producer() -> None:
                nonlocal sent
                for seg in segs:
                    await up.send(seg, more_ready=True)
                    sent += 1

            nursery.start_soon(producer)
            await trio.sleep(1)
            assert sent == 2  # the window: the third waits for an acknowledgement
            holder.release.set()
            with trio.fail_after(10):
                while sent < len(segs):  # noqa: ASYNC110 (the producer task counts, not an event)
                    await trio.sleep(0.1)
            await up.send(segments(1, 1000)[0])
            await up.drain()
        await owner_end.aclose()


async def test_a_refused_offer_names_the_reason() -> None:
    with pytest.raises(HolderRefused, match="owner_quota") as caught:
        await upload(Holder(refuse_offer=messages.Reason.OWNER_QUOTA), segments(1))
    assert caught.value.reason == messages.Reason.OWNER_QUOTA


async def test_a_holder_that_fills_up_mid_transfer_stops_the_upload() -> None:
    holder = Holder(refuse_after=2)
    with pytest.raises(HolderRefused, match="node_full"):
        await upload(holder, segments(8), window=2)
    assert len(holder.blocks) == 2


async def test_a_holder_that_closes_or_garbles_is_a_refusal() -> None:
    for garbage in (None, b"\x93\x01\x02", envelope.encode(messages.ShardReply(True, "", ""))):
        owner_end, holder_end = channel_pair()

        async def hang_up(stream: ChannelEnd, garbage: bytes | None = garbage) -> None:
            await receive_message(stream, messages.ShardOffer)
            await stream.send(envelope.encode(messages.ShardReply(True, "", "")))
            await receive_message(stream, messages.ShardPut)
            if garbage is not None:
                await stream.send(garbage)
            await stream.aclose()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(hang_up, holder_end)
            async with open_share_upload(
                owner_end, backup_id=b"B" * 16, home=b"B" * 16, lease_expires=9.0, index=0, window=1
            ) as up:
                await up.send(segments(1, 1000)[0])
                with pytest.raises(HolderRefused):
                    await up.drain()
                with pytest.raises(HolderRefused):
                    await up.send(segments(1, 1000)[0])


async def test_request_returns_the_reply() -> None:
    a, b = channel_pair()
    await b.send(envelope.encode(messages.ShardReply(True, "", "")))
    reply = await request(a, messages.ShardRemove(b"B" * 16))
    assert reply.ok
    assert isinstance(
        envelope.decode(await b.receive(), FRAME_LIMITS).message, messages.ShardRemove
    )


async def test_a_holder_whose_stream_breaks_is_a_refusal() -> None:
    owner_end, holder_end = channel_pair()

    async def accept_then_die(stream: ChannelEnd) -> None:
        await receive_message(stream, messages.ShardOffer)
        await stream.send(envelope.encode(messages.ShardReply(True, "", "")))
        await stream.aclose()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(accept_then_die, holder_end)
        async with open_share_upload(
            owner_end, backup_id=b"B" * 16, home=b"B" * 16, lease_expires=9.0, index=0
        ) as up:
            await trio.sleep(0.1)
            with pytest.raises(HolderRefused, match=r"unreachable|busy"):
                await up.send(segments(1, 1000)[0])
