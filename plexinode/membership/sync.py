"""Push-pull (anti-entropy) as a two-role state machine, sans-I/O in the wsproto manner.

Two members compare what they hold over one secure stream (protocol ``member-sync/1``): the
member that opened it is the *initiator*, the other the *responder*. The exchange is a row of
phases; in each, both sides send their part and receive the other's, the initiator sending
first (so the responder receives first)::

    phase     each side sends                                   when
    digest    member-sync-digest: root of its member digests,   always
              how many members it holds, root of its state
    state     member-sync-state: every cluster-state entry it   the state roots differ
              holds, in batches of SYNC_STATE_BATCH, then an
              empty batch marked last
    buckets   member-sync-buckets: its 256 bucket digests       the member roots differ
    claims    member-sync-claims: the signed claims about the   the member roots differ
              members of the buckets that differ, in batches of
              SYNC_BATCH, the final batch marked last

With equal member roots the exchange ends after the state phase (or the digest phase): the idle
cost is a stream handshake and two small frames, whatever the size of the network
(:mod:`plexinode.membership.digest`).

:class:`PushPull` keeps one side's place in that row. Its driver moves frames and nothing else:
it calls :meth:`PushPull.next_step` until :class:`Done`, sending what :class:`Send` carries,
receiving a frame and feeding it to :meth:`PushPull.receive` when asked (:class:`Expect`), and
acting on the events in between: :class:`Compared` once the digests are exchanged,
:class:`StateReceived` once the state phase is over (merge those entries),
:class:`ClaimsReceived` once the claims phase is over (hear those claims, member by member:
:func:`by_member`).

What a side sends is read from its node when it is sent, not when the exchange starts (only
the digests are taken at the start): the entries when the state phase starts, the members of the
differing buckets when the claims phase starts, and each member's claims when its batch is
filled. The table changes while a side waits on the stream (gossip keeps arriving), so this is
what the exchange saw last; a member that joined meanwhile is simply left for the next one.

Limits: a side refuses to receive more entries than a map holds, or more than
``2 * max_members + 2`` claims (an alive claim and an overriding claim per member, and our own
two): :class:`OversizedExchange`. A frame of the wrong kind is a :class:`DecodeError`.

**Push-pull never revives the dead.** Claims arrive grouped by member; a member we do not know
whose best claim says dead or left is skipped (:meth:`MemberClaims.revives_the_dead`), so a
tombstone we already reaped (or never had) does not come back to life through its old alive
claim. Within ``retention`` the tombstone itself refuses the old claim (the table's invariant 4).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Final

from plexinode.errors import DecodeError, RemoteProtocolError
from plexinode.identity import NodeId
from plexinode.membership.beliefs import State
from plexinode.membership.claims import SignedClaim
from plexinode.membership.digest import bucket_digests, bucket_of, differing_buckets, root_digest
from plexinode.membership.evidence import Evidence
from plexinode.membership.members import MemberTable
from plexinode.membership.messages import (
    SYNC_BATCH,
    SYNC_STATE_BATCH,
    MemberSyncBuckets,
    MemberSyncClaims,
    MemberSyncDigest,
    MemberSyncState,
)
from plexinode.membership.state import StateEntry, StateMap, state_digest
from plexinode.wire.schema import Message


class Role(enum.Enum):
    """Which side of the exchange a machine plays."""

    #: Opened the stream; sends first in every phase.
    INITIATOR = "initiator"
    #: Accepted the stream; receives first in every phase.
    RESPONDER = "responder"


class OversizedExchange(RemoteProtocolError):
    """The other side sent more entries or claims than a node may hold."""


# -- what the machine asks of its driver, and tells it -------------------------------------------


@dataclass(frozen=True, slots=True)
class Send:
    """Send `message` on the stream."""

    message: Message


@dataclass(frozen=True, slots=True)
class Expect:
    """Receive one frame and feed its message to :meth:`PushPull.receive` (`kind` is what the
    phase expects; anything else is refused there)."""

    kind: type[Message]


@dataclass(frozen=True, slots=True)
class Compared:
    """The digests were exchanged: whether the two sides hold the same members and the same
    cluster state."""

    members_equal: bool
    state_equal: bool


@dataclass(frozen=True, slots=True)
class StateReceived:
    """The state phase is over: merge `entries`, the other side's cluster state."""

    entries: tuple[StateEntry, ...]


@dataclass(frozen=True, slots=True)
class ClaimsReceived:
    """The claims phase is over: hear `claims`, the other side's claims about the members of
    the differing buckets (see :func:`by_member`)."""

    claims: tuple[SignedClaim, ...]


@dataclass(frozen=True, slots=True)
class Done:
    """The exchange is over; `in_sync` if the member digests were equal."""

    in_sync: bool


Step = Send | Expect | Compared | StateReceived | ClaimsReceived | Done


# -- the machine ---------------------------------------------------------------------------------


class _Phase(enum.Enum):
    DIGEST = "digest"
    STATE = "state"
    BUCKETS = "buckets"
    CLAIMS = "claims"
    DONE = "done"


#: The halves of a phase, in the order each role goes through them.
_HALVES: Final = {Role.INITIATOR: ("send", "receive"), Role.RESPONDER: ("receive", "send")}
#: The message each phase exchanges.
_KINDS: Final[dict[_Phase, type[Message]]] = {
    _Phase.DIGEST: MemberSyncDigest,
    _Phase.STATE: MemberSyncState,
    _Phase.BUCKETS: MemberSyncBuckets,
    _Phase.CLAIMS: MemberSyncClaims,
}


class PushPull:
    """One side of a push-pull exchange (module docstring).

    Args:
        role: The side this machine plays.
        table: This node's member table (its digests are taken now; the members of the
            differing buckets are read when the claims phase starts).
        evidence: The signed claims behind the table, sent for those members.
        state: This node's cluster state (its digest is taken now; its entries are read when
            the state phase starts).
        max_members: This node's member cap (it bounds the claims it receives).
        left: This node has left: it counts itself as left in its digests.
    """

    def __init__(
        self,
        role: Role,
        table: MemberTable,
        evidence: Evidence,
        state: StateMap,
        *,
        max_members: int,
        left: bool = False,
    ) -> None:
        self.role = role
        self._table = table
        self._evidence = evidence
        self._state = state
        self._max_claims = 2 * max_members + 2
        beliefs = (
            (
                m.node_id,
                m.incarnation,
                State.LEFT if left and m.node_id == table.own_id else m.state,
            )
            for m in list(table.members())
        )
        self._buckets = bucket_digests(beliefs)
        self._ours = MemberSyncDigest(
            root_digest(self._buckets), len(table), state_digest(state.entries())
        )
        self._theirs: MemberSyncDigest | None = None
        self._differing: set[int] = set()
        self._phase = _Phase.DIGEST
        self._half = 0  # how many halves of the phase are done (_HALVES)
        self._outgoing: Iterator[Message] | None = None
        self._entries: list[StateEntry] = []
        self._claims: list[SignedClaim] = []
        self._events: list[Compared | StateReceived | ClaimsReceived] = []

    def next_step(self) -> Step:
        """What the driver does next (module docstring)."""
        while True:
            if self._events:
                return self._events.pop(0)
            if self._phase is _Phase.DONE:
                return Done(self._in_sync())
            if self._half == len(_HALVES[self.role]):
                self._finish_phase()
                continue
            if self._expecting():
                return Expect(_KINDS[self._phase])
            if self._outgoing is None:
                self._outgoing = self._frames()
            message = next(self._outgoing, None)
            if message is not None:
                return Send(message)
            self._outgoing = None
            self._half += 1

    def receive(self, message: Message) -> None:
        """Feed the message of a frame received, when :meth:`next_step` asked for one.

        Raises:
            DecodeError: Not the message the phase exchanges.
            OversizedExchange: More entries or claims than this node may hold.
            RuntimeError: The machine did not expect a frame now (a driver's mistake).
        """
        if not self._expecting():
            raise RuntimeError(f"push-pull ({self.role.value}) is not expecting a frame now")
        kind = _KINDS[self._phase]
        if not isinstance(message, kind):
            raise DecodeError(f"push-pull expected {kind.NAME}, got {message.NAME}")
        last = True
        if isinstance(message, MemberSyncDigest):
            self._theirs = message
        elif isinstance(message, MemberSyncBuckets):
            self._differing = differing_buckets(self._buckets, message.buckets)
        elif isinstance(message, MemberSyncState):
            self._entries.extend(message.entries)
            if len(self._entries) > self._state.max_entries:
                raise OversizedExchange("push-pull cluster state of more entries than allowed")
            last = message.last
        else:
            assert isinstance(message, MemberSyncClaims)
            self._claims.extend(message.claims)
            if len(self._claims) > self._max_claims:
                raise OversizedExchange(f"push-pull state of more than {self._max_claims} claims")
            last = message.last
        if last:
            self._half += 1

    # -- the phases ------------------------------------------------------------------------------

    def _expecting(self) -> bool:
        halves = _HALVES[self.role]
        return (
            self._phase is not _Phase.DONE
            and self._half < len(halves)
            and (halves[self._half] == "receive")
        )

    def _frames(self) -> Iterator[Message]:
        """What this side sends in the current phase, read when each frame is due."""
        if self._phase is _Phase.DIGEST:
            yield self._ours
        elif self._phase is _Phase.STATE:
            entries = list(self._state.entries())
            for start in range(0, len(entries), SYNC_STATE_BATCH):
                yield MemberSyncState(tuple(entries[start : start + SYNC_STATE_BATCH]), False)
            yield MemberSyncState((), True)
        elif self._phase is _Phase.BUCKETS:
            yield MemberSyncBuckets(self._buckets)
        else:
            yield from self._claim_frames()

    def _claim_frames(self) -> Iterator[MemberSyncClaims]:
        batch: list[SignedClaim] = []
        # A copy: the table changes while the driver waits on the stream.
        for member in list(self._table.members()):
            if bucket_of(member.node_id) not in self._differing:
                continue
            for claim in self._evidence.about(member.node_id):
                batch.append(claim)
                if len(batch) == SYNC_BATCH:
                    yield MemberSyncClaims(tuple(batch), False)
                    batch = []
        yield MemberSyncClaims(tuple(batch), True)

    def _finish_phase(self) -> None:
        """Both halves of the phase are done: the event it ends with, and the next phase."""
        self._half = 0
        if self._phase is _Phase.DIGEST:
            assert self._theirs is not None
            state_equal = self._theirs.state_root == self._ours.state_root
            self._events.append(Compared(self._in_sync(), state_equal))
            self._phase = self._after_state() if state_equal else _Phase.STATE
        elif self._phase is _Phase.STATE:
            self._events.append(StateReceived(tuple(self._entries)))
            self._phase = self._after_state()
        elif self._phase is _Phase.BUCKETS:
            self._phase = _Phase.CLAIMS
        else:
            self._events.append(ClaimsReceived(tuple(self._claims)))
            self._phase = _Phase.DONE

    def _after_state(self) -> _Phase:
        return _Phase.DONE if self._in_sync() else _Phase.BUCKETS

    def _in_sync(self) -> bool:
        assert self._theirs is not None  # asked only once the digests are exchanged
        return self._theirs.root == self._ours.root


# -- hearing what arrived ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MemberClaims:
    """The claims received about one member, lowest rank first (the order to hear them in).

    Attributes:
        subject: The member's node ID, as the claims carry it.
        claims: Its claims, by ``(incarnation, state)``, in arrival order among equals.
    """

    subject: bytes
    claims: tuple[SignedClaim, ...]

    def revives_the_dead(self, known: bool) -> bool:
        """Whether hearing these claims could bring back a member this node does not hold
        (`known` false) although they say it died or left (module docstring)."""
        return not known and self.claims[-1].state >= State.DEAD

    def node_id(self) -> NodeId:
        """The member's node ID (the wire schema holds a subject to a node ID's length)."""
        return NodeId(self.subject)


def by_member(received: Iterable[SignedClaim]) -> list[MemberClaims]:
    """`received` grouped by member, members in the order they first appear."""
    groups: dict[bytes, list[SignedClaim]] = {}
    for signed in received:
        groups.setdefault(signed.subject, []).append(signed)
    return [
        MemberClaims(subject, tuple(sorted(claims, key=lambda c: (c.incarnation, c.state))))
        for subject, claims in groups.items()
    ]
