"""``shards/1`` messages: every one round-trips, the largest fit a frame, bad input is refused."""

from __future__ import annotations

import pytest

from plexinode.errors import DecodeError
from plexinode.net.channel import DEFAULT_MAX_FRAME_BYTES
from plexinode.shards import messages as m
from plexinode.wire import envelope
from plexinode.wire.codec import FRAME_LIMITS
from plexinode.wire.schema import Message

B16, B32 = b"b" * 16, b"s" * 32

LARGEST: list[Message] = [
    m.ShardReply(False, "x" * 32, "d" * 256),
    m.ShardOffer(B16, B16, 255, 1e10, 1 << 40),
    m.ShardPut(
        B16,
        B16,
        1e10,
        B32,
        255,
        B32,
        m.MAX_BLOCK_BYTES,
        m.MAX_BLOCK_BYTES,
        b"x" * m.PIECE_BYTES,
        True,
    ),
    m.ShardStored(B32 * m.MAX_IDS, B32 * m.MAX_IDS, "node_full"),
    m.ShardRef(B16, 1e10, B32 * m.MAX_IDS),
    m.ShardManifest(B32, B16, 1, 2, b"x" * m.PIECE_BYTES),
    m.ShardRenew((B16,) * m.MAX_BACKUPS, 1e10),
    m.ShardRemove(B16),
    m.ShardGet(B32, B32, 3),
    m.ShardBlock(B32, 3, 0, m.MAX_BLOCK_BYTES, b"x" * m.PIECE_BYTES),
    m.ShardChallenge(B32, B32, 3, tuple(range(m.MAX_CHALLENGE_LEAVES)), B16),
    m.ShardProof(
        B16,
        9,
        (b"l" * 8192,) * m.MAX_CHALLENGE_LEAVES,
        ((B32,) * m.MAX_PATH,) * m.MAX_CHALLENGE_LEAVES,
    ),
    m.ShardManifestGet(B32, B16),
    m.ShardList(B32),
    m.ShardListing((B16,) * m.MAX_BACKUPS),
]


@pytest.mark.parametrize("message", LARGEST, ids=lambda msg: msg.NAME)
def test_each_message_round_trips_and_its_largest_form_fits_a_frame(message: Message) -> None:
    data = envelope.encode(message, 7)
    assert len(data) <= DEFAULT_MAX_FRAME_BYTES
    decoded = envelope.decode(data, FRAME_LIMITS)
    assert decoded.message == message
    assert decoded.request_id == 7


def test_every_type_is_listed() -> None:
    assert sorted(type(msg).TYPE for msg in LARGEST) == list(range(96, 111))


@pytest.mark.parametrize(
    "bad",
    [
        [B16, B16, 256, 1.0, 1],  # share index beyond zfec's 256 shares
        [B16, b"short", 0, 1.0, 1],
        [B16, B16, 0, -1.0, 1],
    ],
)
def test_malformed_offers_are_refused(bad: list[object]) -> None:
    with pytest.raises(DecodeError):
        m.ShardOffer.from_wire(bad)


def test_oversized_piece_is_refused() -> None:
    wire = m.ShardBlock(B32, 0, 0, 10, b"").to_wire()
    wire[4] = b"x" * (m.PIECE_BYTES + 1)
    with pytest.raises(DecodeError):
        m.ShardBlock.from_wire(wire)


def test_split_ids() -> None:
    assert m.split_ids(b"") == []
    assert m.split_ids(B32 + b"t" * 32) == [B32, b"t" * 32]
    with pytest.raises(DecodeError, match="whole number"):
        m.split_ids(B32 + b"x")


def test_no_room_reasons() -> None:
    assert {m.Reason.NODE_FULL, m.Reason.OWNER_QUOTA, m.Reason.DISK_FULL} == m.Reason.NO_ROOM
    assert m.Reason.BAD_ROOT not in m.Reason.NO_ROOM
