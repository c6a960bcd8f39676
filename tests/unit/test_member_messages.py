"""Membership wire messages: round trips, decoder limits, and the size budget for claims."""

from __future__ import annotations

import pytest

from plexinode.errors import DecodeError
from plexinode.identity import Identity
from plexinode.membership.claims import sign_claim
from plexinode.membership.members import MAX_INCARNATION, Claim, State
from plexinode.membership.messages import (
    CLAIMS_BUDGET,
    MAX_PIGGYBACK,
    PIGGYBACK_ROOM,
    MemberAck,
    MemberNack,
    MemberPing,
    MemberPingReq,
)
from plexinode.net import packet
from plexinode.net.address import Address
from plexinode.net.transport import MAX_DATAGRAM
from plexinode.wire import envelope
from plexinode.wire.codec import DATAGRAM_LIMITS, pack

ME = Identity.from_seed(bytes(31) + b"\x05")


def claims(count: int, tag_bytes: int = 0) -> tuple:
    signed = []
    for i in range(count):
        identity = Identity.from_seed(bytes(30) + bytes([1, i]))
        tags = {"t": "v" * tag_bytes} if tag_bytes else {}
        claim = Claim(
            identity.node_id,
            MAX_INCARNATION,
            State.ALIVE,
            address=Address("2001:db8::1", 65535),
            tags=tags,
        )
        signed.append(sign_claim(identity, claim))
    return tuple(signed)


@pytest.mark.parametrize(
    "message",
    [
        MemberPing(claims(2)),
        MemberAck(()),
        MemberPingReq(bytes(32), bytes([10, 0, 0, 1]), 7420, claims(1)),
        MemberNack(),
    ],
)
def test_messages_round_trip(message: object) -> None:
    encoded = envelope.encode(message, 42)  # type: ignore[arg-type]
    decoded = envelope.decode(encoded, DATAGRAM_LIMITS)
    assert decoded.message == message
    assert decoded.request_id == 42


def test_more_claims_than_the_cap_are_refused_by_the_decoder() -> None:
    body = [[c.to_wire() for c in claims(MAX_PIGGYBACK + 1)]]
    with pytest.raises(DecodeError):
        MemberPing.from_wire(body)


def test_membership_takes_half_the_piggyback_room() -> None:
    assert CLAIMS_BUDGET * 2 <= PIGGYBACK_ROOM


def test_a_full_piggyback_room_fits_in_one_datagram() -> None:
    """The largest ping-req whose piggyback fills PIGGYBACK_ROOM is a legal datagram."""
    packed: list = []
    size = 0
    for claim in claims(MAX_PIGGYBACK, tag_bytes=60):
        encoded = len(pack(claim.to_wire()))
        if size + encoded > PIGGYBACK_ROOM:
            break
        packed.append(claim)
        size += encoded
    assert size > PIGGYBACK_ROOM - 300  # the room is really used
    message = MemberPingReq(bytes(32), bytes(16), 65535, tuple(packed))
    payload = envelope.encode(message, (1 << 64) - 1)
    datagram = packet.Sealer(ME, lambda: 1).seal(payload, ME.node_id)
    assert len(datagram) <= MAX_DATAGRAM
