"""Membership wire messages (type codes 64-95), carried in authenticated datagrams.

Probes piggyback gossip: every ``member-ping``, ``member-ack`` and ``member-ping-req`` carries
up to :data:`MAX_PIGGYBACK` signed claims (see :mod:`plexinode.membership.claims`), as many as
fit in :data:`CLAIMS_BUDGET` bytes, so that membership changes spread on traffic that flows
anyway. The datagram layer authenticates the sender of each message; each claim carries its
own signature, checked before it is believed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Final

from plexinode.identity import NODE_ID_BYTES
from plexinode.membership.claims import SignedClaim
from plexinode.wire.schema import Bytes, Int, ListOf, Message, Nested, register, wire

#: Most claims one message carries.
MAX_PIGGYBACK: Final = 8
#: Bytes of encoded claims one message may carry: a datagram's 1,087 bytes of envelope
#: (``net.packet``), less the envelope's own 13 and the largest message's other fields (a
#: ping-req's target, address and list header: 58), with room to spare.
CLAIMS_BUDGET: Final = 960
#: Bytes a claim adds to a message beyond its own encoding (none: claims are array items).
CLAIM_OVERHEAD: Final = 0

_CLAIMS = ListOf(Nested(SignedClaim), MAX_PIGGYBACK)


@register
@dataclass(frozen=True, slots=True)
class MemberPing(Message):
    """Are you alive? Answered with :class:`MemberAck`."""

    TYPE: ClassVar[int] = 64
    NAME: ClassVar[str] = "member-ping"
    claims: tuple[SignedClaim, ...] = wire(_CLAIMS)


@register
@dataclass(frozen=True, slots=True)
class MemberAck(Message):
    """I am (or, relayed by a ping-req's relay: the target is)."""

    TYPE: ClassVar[int] = 65
    NAME: ClassVar[str] = "member-ack"
    RESPONSE: ClassVar[bool] = True
    claims: tuple[SignedClaim, ...] = wire(_CLAIMS)


@register
@dataclass(frozen=True, slots=True)
class MemberPingReq(Message):
    """Ping `target` at `ip`:`port` for me. Answered with the target's relayed
    :class:`MemberAck`, or :class:`MemberNack` if it did not answer in time."""

    TYPE: ClassVar[int] = 66
    NAME: ClassVar[str] = "member-ping-req"
    target: bytes = wire(Bytes(NODE_ID_BYTES, NODE_ID_BYTES))
    ip: bytes = wire(Bytes(4, 16))
    port: int = wire(Int(1, 65535))
    claims: tuple[SignedClaim, ...] = wire(_CLAIMS)


@register
@dataclass(frozen=True, slots=True)
class MemberNack(Message):
    """A relay could not reach the target of a :class:`MemberPingReq` in time."""

    TYPE: ClassVar[int] = 67
    NAME: ClassVar[str] = "member-nack"
    RESPONSE: ClassVar[bool] = True
