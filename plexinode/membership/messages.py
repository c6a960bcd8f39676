"""Membership wire messages (type codes 64-95).

Probes travel in authenticated datagrams and piggyback gossip: every ``member-ping``,
``member-ack`` and ``member-ping-req`` carries up to :data:`MAX_PIGGYBACK` signed claims (see
:mod:`plexinode.membership.claims`), as many as fit in :data:`CLAIMS_BUDGET` bytes, so that
membership changes spread on traffic that flows anyway. The datagram layer authenticates the
sender of each message; each claim carries its own signature, checked before it is believed.

When a direct probe gets no ack in time, the prober also sends the same ``member-ping`` over a
secure stream of protocol :data:`PING_PROTOCOL`, answered by one ``member-ack`` frame, so that
a member whose inbound UDP is blocked is not declared dead while its streams work.

Push-pull (anti-entropy) runs over a secure stream of protocol :data:`SYNC_PROTOCOL`, as frames
``member-sync-digest``, ``member-sync-buckets`` and ``member-sync-claims`` (see
:mod:`plexinode.membership.digest` and docs/protocol.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Final

from plexinode.identity import NODE_ID_BYTES
from plexinode.membership.claims import SignedClaim
from plexinode.membership.digest import BUCKET_BYTES, BUCKETS, ROOT_BYTES
from plexinode.membership.state import StateEntry
from plexinode.wire.schema import Bool, Bytes, Int, ListOf, Message, Nested, register, wire

#: The secure-stream protocol of push-pull.
SYNC_PROTOCOL: Final = "member-sync/1"
#: The secure-stream protocol of the fallback probe: one member-ping frame, one member-ack
#: frame, for members whose inbound datagrams are blocked (memberlist's TCP fallback).
PING_PROTOCOL: Final = "member-ping/1"
#: Most claims one push-pull frame carries (a frame stays far below the stream's frame limit).
SYNC_BATCH: Final = 64
#: Most cluster-state entries one push-pull frame carries.
SYNC_STATE_BATCH: Final = 32

#: Most claims one message carries.
MAX_PIGGYBACK: Final = 8
#: The piggyback room of a probe message: a datagram's 1,047 bytes of envelope
#: (``net.packet``), less the envelope's own 13 and the largest message's other fields (a
#: ping-req's target, address and two list headers: 60), with room to spare.
PIGGYBACK_ROOM: Final = 960
#: Bytes of membership claims one message may carry: half the room, so that other services'
#: broadcasts (the cluster state) always have the other half.
CLAIMS_BUDGET: Final = PIGGYBACK_ROOM // 2
#: Bytes a claim adds to a message beyond its own encoding (none: claims are array items).
CLAIM_OVERHEAD: Final = 0
#: Bytes of cluster-state entries one message may carry: the other half of the room.
STATE_BUDGET: Final = PIGGYBACK_ROOM - CLAIMS_BUDGET
#: Most cluster-state entries one message carries.
MAX_STATE_PIGGYBACK: Final = 4

_CLAIMS = ListOf(Nested(SignedClaim), MAX_PIGGYBACK)
_STATE = ListOf(Nested(StateEntry), MAX_STATE_PIGGYBACK)


@register
@dataclass(frozen=True, slots=True)
class MemberPing(Message):
    """Are you alive? Answered with :class:`MemberAck`."""

    TYPE: ClassVar[int] = 64
    NAME: ClassVar[str] = "member-ping"
    claims: tuple[SignedClaim, ...] = wire(_CLAIMS)
    state: tuple[StateEntry, ...] = wire(_STATE, default=())


@register
@dataclass(frozen=True, slots=True)
class MemberAck(Message):
    """I am (or, relayed by a ping-req's relay: the target is)."""

    TYPE: ClassVar[int] = 65
    NAME: ClassVar[str] = "member-ack"
    RESPONSE: ClassVar[bool] = True
    claims: tuple[SignedClaim, ...] = wire(_CLAIMS)
    state: tuple[StateEntry, ...] = wire(_STATE, default=())


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
    state: tuple[StateEntry, ...] = wire(_STATE, default=())


@register
@dataclass(frozen=True, slots=True)
class MemberNack(Message):
    """A relay could not reach the target of a :class:`MemberPingReq` in time."""

    TYPE: ClassVar[int] = 67
    NAME: ClassVar[str] = "member-nack"
    RESPONSE: ClassVar[bool] = True


@register
@dataclass(frozen=True, slots=True)
class MemberGossip(Message):
    """Claims sent on their own, between probes, while there is news (no reply)."""

    TYPE: ClassVar[int] = 71
    NAME: ClassVar[str] = "member-gossip"
    claims: tuple[SignedClaim, ...] = wire(_CLAIMS)
    state: tuple[StateEntry, ...] = wire(_STATE, default=())


@register
@dataclass(frozen=True, slots=True)
class MemberSyncDigest(Message):
    """Push-pull, first frame each way: the root digest of the sender's member table."""

    TYPE: ClassVar[int] = 68
    NAME: ClassVar[str] = "member-sync-digest"
    root: bytes = wire(Bytes(ROOT_BYTES, ROOT_BYTES))
    members: int = wire(Int(0, 1 << 32))
    state_root: bytes = wire(Bytes(ROOT_BYTES, ROOT_BYTES), default=bytes(ROOT_BYTES))


@register
@dataclass(frozen=True, slots=True)
class MemberSyncBuckets(Message):
    """Push-pull, when the roots differ: the sender's bucket digests."""

    TYPE: ClassVar[int] = 69
    NAME: ClassVar[str] = "member-sync-buckets"
    buckets: bytes = wire(Bytes(BUCKETS * BUCKET_BYTES, BUCKETS * BUCKET_BYTES))


@register
@dataclass(frozen=True, slots=True)
class MemberSyncClaims(Message):
    """Push-pull: the sender's claims about the members of the differing buckets (each
    member's alive claim, then its accusation or leave if any), in batches; `last` ends them."""

    TYPE: ClassVar[int] = 70
    NAME: ClassVar[str] = "member-sync-claims"
    claims: tuple[SignedClaim, ...] = wire(ListOf(Nested(SignedClaim), SYNC_BATCH))
    last: bool = wire(Bool())


@register
@dataclass(frozen=True, slots=True)
class MemberSyncState(Message):
    """Push-pull, when the cluster-state digests differ: every entry the sender holds, in
    batches; `last` ends them."""

    TYPE: ClassVar[int] = 72
    NAME: ClassVar[str] = "member-sync-state"
    entries: tuple[StateEntry, ...] = wire(ListOf(Nested(StateEntry), SYNC_STATE_BATCH))
    last: bool = wire(Bool())
