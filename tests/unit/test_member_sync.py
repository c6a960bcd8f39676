"""The push-pull machine, sans-I/O: two machines piped together with no sockets (as h11's
tests/helpers.py does), every test run with our side in each role."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import pytest

from plexinode.errors import DecodeError
from plexinode.identity import Identity, NodeId
from plexinode.membership.claims import SignedClaim, sign_claim
from plexinode.membership.digest import bucket_of
from plexinode.membership.evidence import Evidence
from plexinode.membership.members import Claim, MemberTable, State
from plexinode.membership.messages import (
    SYNC_BATCH,
    SYNC_STATE_BATCH,
    MemberPing,
    MemberSyncBuckets,
    MemberSyncClaims,
    MemberSyncDigest,
    MemberSyncState,
)
from plexinode.membership.state import StateMap, sign_entry
from plexinode.membership.sync import (
    ClaimsReceived,
    Compared,
    Done,
    Expect,
    OversizedExchange,
    PushPull,
    Role,
    Send,
    StateReceived,
    Step,
    by_member,
)
from plexinode.net.address import Address
from plexinode.wire import envelope
from plexinode.wire.codec import FRAME_LIMITS
from plexinode.wire.schema import Message

ROLES = pytest.mark.parametrize("role", list(Role))
OTHER_ROLE = {Role.INITIATOR: Role.RESPONDER, Role.RESPONDER: Role.INITIATOR}


def identity(n: int) -> Identity:
    return Identity.from_seed(n.to_bytes(32, "big"))


def alive(who: Identity, inc: int = 0) -> tuple[Claim, SignedClaim]:
    claim = Claim(who.node_id, inc, State.ALIVE, address=Address("10.0.0.1", 7420))
    return claim, sign_claim(who, claim)


@dataclass
class Node:
    """One side's holdings: a member table, the evidence behind it and a cluster state."""

    me: Identity
    max_members: int = 100
    max_entries: int = 256
    table: MemberTable = field(init=False)
    evidence: Evidence = field(default_factory=Evidence)
    state: StateMap = field(init=False)

    def __post_init__(self) -> None:
        self.table = MemberTable(self.me.node_id, Address("10.0.0.1", 7420), 0.0)
        self.state = StateMap(max_entries=self.max_entries)
        self.learn(*alive(self.me))

    def learn(self, claim: Claim, signed: SignedClaim) -> bool:
        if claim.node_id == self.me.node_id and claim.state is State.ALIVE:
            self.evidence.keep(claim, signed)
            return True
        if not self.table.apply(claim, 0.0).accepted:
            return False
        self.evidence.keep(claim, signed)
        return True

    def member(self, who: Identity, inc: int = 0) -> None:
        assert self.learn(*alive(who, inc))

    def write(self, key: str, value: bytes, wall_ms: int = 1_000) -> None:
        assert self.state.merge(sign_entry(self.me, key, value, (wall_ms, 0)), wall_ms).accepted

    def machine(self, role: Role, *, left: bool = False) -> PushPull:
        return PushPull(
            role,
            self.table,
            self.evidence,
            self.state,
            max_members=self.max_members,
            left=left,
        )

    def beliefs(self) -> dict[NodeId, tuple[int, State]]:
        return {m.node_id: (m.incarnation, m.state) for m in self.table.members()}


@dataclass
class Side:
    """A machine and what its driver saw: the frames it sent, and the steps in order."""

    node: Node
    machine: PushPull
    sent: list[Message] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    inbox: list[Message] = field(default_factory=list)
    done: Done | None = None

    def hear(self, step: Step) -> None:
        """What a driver does with the events: merge entries, hear claims member by member."""
        if isinstance(step, StateReceived):
            for entry in step.entries:
                self.node.state.merge(entry, 10**12)
        elif isinstance(step, ClaimsReceived):
            for group in by_member(step.claims):
                if group.revives_the_dead(group.node_id() in self.node.table):
                    continue
                for signed in group.claims:
                    self.node.learn(signed.verify(), signed)


def wire(message: Message) -> Message:
    """`message` through the encoder and the decoder, as a stream carries it."""
    return envelope.decode(envelope.encode(message), FRAME_LIMITS).message


def pipe(ours: Side, theirs: Side) -> None:
    """Run both machines until both are done, each frame sent arriving at the other."""
    while ours.done is None or theirs.done is None:
        progress = False
        for side, other in ((ours, theirs), (theirs, ours)):
            if side.done is not None:
                continue
            step = side.machine.next_step()
            if isinstance(step, Expect):
                if not side.inbox:
                    continue  # waits for the other side
                side.steps.append(step)
                side.machine.receive(side.inbox.pop(0))
            else:
                side.steps.append(step)
                if isinstance(step, Send):
                    side.sent.append(step.message)
                    other.inbox.append(wire(step.message))
                elif isinstance(step, Done):
                    side.done = step
                else:
                    side.hear(step)
            progress = True
        assert progress, "both machines wait for a frame: a deadlock"


def exchange(ours: Node, theirs: Node, role: Role) -> tuple[Side, Side]:
    us = Side(ours, ours.machine(role))
    them = Side(theirs, theirs.machine(OTHER_ROLE[role]))
    pipe(us, them)
    return us, them


def kinds(messages: list[Message]) -> list[type[Message]]:
    return [type(m) for m in messages]


def two_nodes() -> tuple[Node, Node]:
    a, b = Node(identity(1)), Node(identity(2))
    a.member(b.me)
    b.member(a.me)
    return a, b


# -- the phases ----------------------------------------------------------------------------------


@ROLES
def test_equal_tables_and_states_end_after_the_digests(role: Role) -> None:
    a, b = two_nodes()
    us, them = exchange(a, b, role)
    assert kinds(us.sent) == kinds(them.sent) == [MemberSyncDigest]
    assert us.done == them.done == Done(in_sync=True)
    assert Compared(members_equal=True, state_equal=True) in us.steps
    assert us.sent[0].members == 2  # type: ignore[attr-defined]


@ROLES
def test_the_steps_come_in_the_order_of_the_role(role: Role) -> None:
    """The initiator sends first in every phase, the responder receives first; the events come
    once both halves of their phase are done."""
    a, b = two_nodes()
    b.member(identity(3))
    b.write("net.motd", b"hi")
    us, _ = exchange(a, b, role)
    names = [
        type(s).__name__ if not isinstance(s, Send) else type(s.message).__name__ for s in us.steps
    ]
    digest, state, buckets, claims = (
        ["MemberSyncDigest", "Expect"],
        ["MemberSyncState", "Expect", "Expect"],  # theirs: an entry, then the empty last
        ["MemberSyncBuckets", "Expect"],
        ["MemberSyncClaims", "Expect"],
    )
    if role is Role.RESPONDER:
        digest, state, buckets, claims = (p[::-1] for p in (digest, state, buckets, claims))
    assert names == [
        *digest,
        "Compared",
        *state,
        "StateReceived",
        *buckets,
        *claims,
        "ClaimsReceived",
        "Done",
    ]


@ROLES
def test_differing_members_are_exchanged_both_ways_and_the_tables_converge(role: Role) -> None:
    a, b = two_nodes()
    only_a, only_b = identity(10), identity(11)
    a.member(only_a)
    b.member(only_b)
    us, them = exchange(a, b, role)
    assert kinds(us.sent) == [MemberSyncDigest, MemberSyncBuckets, MemberSyncClaims]
    assert us.done == them.done == Done(in_sync=False)
    assert Compared(members_equal=False, state_equal=True) in us.steps
    assert only_b.node_id in a.table
    assert only_a.node_id in b.table
    # The claims sent are those of the differing buckets only.
    differing = {bucket_of(n) for n in (only_a.node_id, only_b.node_id)}
    sent = [c for m in us.sent if isinstance(m, MemberSyncClaims) for c in m.claims]
    assert {bucket_of(NodeId(c.subject)) for c in sent} <= differing
    # Once both have heard each other, the next exchange ends after the digests.
    again, _ = exchange(a, b, role)
    assert kinds(again.sent) == [MemberSyncDigest]


@ROLES
def test_differing_states_are_exchanged_in_batches_with_an_empty_last(role: Role) -> None:
    a, b = two_nodes()
    for i in range(SYNC_STATE_BATCH + 8):
        a.write(f"key/{i}", b"x")
    b.write("net.motd", b"hi")
    us, them = exchange(a, b, role)
    batches = [m for m in us.sent if isinstance(m, MemberSyncState)]
    assert [(len(m.entries), m.last) for m in batches] == [(32, False), (8, False), (0, True)]
    assert [(len(m.entries), m.last) for m in them.sent if isinstance(m, MemberSyncState)] == [
        (1, False),
        (0, True),
    ]
    # The member tables were equal: the exchange ends after the state.
    assert us.done == Done(in_sync=True)
    assert a.state.items() == b.state.items()
    assert len(a.state) == SYNC_STATE_BATCH + 9


@ROLES
def test_claims_go_in_batches_the_last_one_marked(role: Role) -> None:
    a, b = two_nodes()
    for n in range(100, 100 + SYNC_BATCH + 5):
        a.member(identity(n))
    us, _ = exchange(a, b, role)
    batches = [m for m in us.sent if isinstance(m, MemberSyncClaims)]
    assert [m.last for m in batches] == [False, True]
    assert len(batches[0].claims) == SYNC_BATCH
    assert a.beliefs() == b.beliefs()


@ROLES
def test_a_last_batch_may_be_empty(role: Role) -> None:
    """Exactly a batch of claims: a full batch, then an empty one marked last."""
    a, b = Node(identity(1)), Node(identity(2))
    b.member(a.me)
    # Members in buckets of their own: a's own bucket digest stays equal on both sides, and a
    # sends the claims of exactly these members.
    shared = {bucket_of(a.me.node_id), bucket_of(b.me.node_id)}
    assert len(shared) == 2
    candidates = (identity(n) for n in range(1000, 10_000))
    for who in [w for w in candidates if bucket_of(w.node_id) not in shared][:SYNC_BATCH]:
        a.member(who)
    us, _ = exchange(a, b, role)
    batches = [(len(m.claims), m.last) for m in us.sent if isinstance(m, MemberSyncClaims)]
    assert batches == [(SYNC_BATCH, False), (0, True)]


@ROLES
def test_a_member_that_left_counts_itself_as_left(role: Role) -> None:
    a, b = two_nodes()
    us = Side(a, a.machine(role, left=True))
    them = Side(b, b.machine(OTHER_ROLE[role]))
    pipe(us, them)
    assert us.done == Done(in_sync=False)


@ROLES
def test_push_pull_never_revives_the_dead(role: Role) -> None:
    a, b = two_nodes()
    ghost = identity(50)
    b.member(ghost)
    b.learn(*dead_by(b.me, ghost))
    _, them = exchange(a, b, role)
    pushed = [c for m in them.sent if isinstance(m, MemberSyncClaims) for c in m.claims]
    assert [State(c.state) for c in pushed if c.subject == ghost.node_id.raw] == [
        State.ALIVE,
        State.DEAD,
    ]
    assert ghost.node_id not in a.table  # dead where it came from: not brought back here


def dead_by(accuser: Identity, who: Identity, inc: int = 0) -> tuple[Claim, SignedClaim]:
    claim = Claim(who.node_id, inc, State.DEAD, accuser=accuser.node_id)
    return claim, sign_claim(accuser, claim)


# -- what a side reads, and when -----------------------------------------------------------------


@ROLES
def test_claims_are_read_when_their_batch_is_filled(role: Role) -> None:
    """The members are listed when the claims phase starts, and each member's claims read
    when the batch reaches it: a member learnt meanwhile waits for the next exchange, and a
    newer claim of a listed member goes out."""
    a, b = Node(identity(1)), Node(identity(2))
    listed = [identity(n) for n in range(2000, 2000 + SYNC_BATCH + 5)]
    for who in listed:
        a.member(who)
    us = Side(a, a.machine(role))
    them = Side(b, b.machine(OTHER_ROLE[role]))
    late_joiner = identity(9999)
    while not any(isinstance(m, MemberSyncClaims) for m in us.sent):
        step_once(us, them)
    a.member(late_joiner)
    a.learn(*alive(listed[-1], 7))  # the last member listed: not batched yet
    pipe(us, them)
    claims = [c for m in us.sent if isinstance(m, MemberSyncClaims) for c in m.claims]
    subjects = {c.subject for c in claims}
    assert late_joiner.node_id.raw not in subjects
    assert [c.incarnation for c in claims if c.subject == listed[-1].node_id.raw] == [7]
    assert b.table.get(listed[-1].node_id).incarnation == 7  # type: ignore[union-attr]


def step_once(ours: Side, theirs: Side) -> None:
    """One step of each side that can make one (as :func:`pipe`, once)."""
    for side, other in ((ours, theirs), (theirs, ours)):
        step = side.machine.next_step()
        if isinstance(step, Expect):
            if side.inbox:
                side.machine.receive(side.inbox.pop(0))
        elif isinstance(step, Send):
            side.sent.append(step.message)
            other.inbox.append(wire(step.message))
        else:
            side.hear(step)


@ROLES
def test_the_digests_are_taken_at_the_start(role: Role) -> None:
    a, b = two_nodes()
    us = Side(a, a.machine(role))
    a.member(identity(77))  # after the machine was made: not in its digests
    them = Side(b, b.machine(OTHER_ROLE[role]))
    pipe(us, them)
    assert us.done == Done(in_sync=True)
    assert us.sent[0].members == 2  # type: ignore[attr-defined]


# -- limits and mistakes -------------------------------------------------------------------------


@ROLES
def test_more_claims_than_a_node_may_hold_are_refused(role: Role) -> None:
    a, b = two_nodes()
    b.max_members = 2  # so it takes at most 6 claims
    for n in range(300, 310):
        a.member(identity(n))
    us, them = Side(a, a.machine(role)), Side(b, b.machine(OTHER_ROLE[role]))
    with pytest.raises(OversizedExchange, match="more than 6 claims"):
        pipe(us, them)


@ROLES
def test_more_entries_than_a_map_holds_are_refused(role: Role) -> None:
    a = Node(identity(1))
    b = Node(identity(2), max_entries=3)
    for i in range(5):
        a.write(f"k{i}", b"v")
    us, them = Side(a, a.machine(role)), Side(b, b.machine(OTHER_ROLE[role]))
    with pytest.raises(OversizedExchange, match="more entries than allowed"):
        pipe(us, them)


@ROLES
def test_a_frame_of_the_wrong_kind_is_refused(role: Role) -> None:
    a, _ = two_nodes()
    machine = a.machine(role)
    step = machine.next_step()
    if role is Role.INITIATOR:
        assert isinstance(step, Send)
        step = machine.next_step()
    assert step == Expect(MemberSyncDigest)
    with pytest.raises(DecodeError, match="expected member-sync-digest, got member-ping"):
        machine.receive(MemberPing(()))


@ROLES
def test_a_frame_out_of_turn_is_a_driver_mistake(role: Role) -> None:
    a, b = two_nodes()
    us, them = Side(a, a.machine(role)), Side(b, b.machine(OTHER_ROLE[role]))
    initiator = us if role is Role.INITIATOR else them
    with pytest.raises(RuntimeError, match="not expecting a frame"):
        initiator.machine.receive(MemberSyncDigest(bytes(16), 1))  # it sends first
    pipe(us, them)
    with pytest.raises(RuntimeError, match="not expecting a frame"):
        us.machine.receive(MemberSyncDigest(bytes(16), 1))  # it is over
    assert us.machine.next_step() == us.done  # and stays over


def test_a_received_phase_is_not_over_until_the_machine_is_asked_again() -> None:
    """After the frame that ends its receiving half, the initiator's phase ends only at the next
    step: a second frame fed before that is a mistake, not the next phase's."""
    a, b = two_nodes()
    b.member(identity(5))
    machine = a.machine(Role.INITIATOR)
    assert isinstance(machine.next_step(), Send)
    assert machine.next_step() == Expect(MemberSyncDigest)
    theirs = b.machine(Role.RESPONDER)
    assert theirs.next_step() == Expect(MemberSyncDigest)
    theirs.receive(wire(machine_digest(a)))
    reply = theirs.next_step()
    assert isinstance(reply, Send)
    machine.receive(wire(reply.message))
    with pytest.raises(RuntimeError):
        machine.receive(MemberSyncBuckets(bytes(2048)))
    assert machine.next_step() == Compared(members_equal=False, state_equal=True)


def machine_digest(node: Node) -> Message:
    step = node.machine(Role.INITIATOR).next_step()
    assert isinstance(step, Send)
    return step.message


# -- grouping what arrived -----------------------------------------------------------------------


def test_claims_are_grouped_by_member_lowest_rank_first() -> None:
    x, y, z = identity(61), identity(62), identity(63)
    x_alive_2 = alive(x, 2)[1]
    x_alive_1 = alive(x, 1)[1]
    x_dead_2 = dead_by(y, x, 2)[1]
    y_alive = alive(y)[1]
    z_dead = dead_by(x, z)[1]
    groups = by_member([x_alive_2, y_alive, x_dead_2, x_alive_1, z_dead])
    assert [g.node_id() for g in groups] == [x.node_id, y.node_id, z.node_id]
    assert groups[0].claims == (x_alive_1, x_alive_2, x_dead_2)
    assert groups[1].claims == (y_alive,)
    # A member we hold may die; one we do not is not brought in by its tombstone.
    assert not groups[0].revives_the_dead(known=True)
    assert groups[0].revives_the_dead(known=False)
    assert not groups[1].revives_the_dead(known=False)
    assert groups[2].revives_the_dead(known=False)


def test_claims_of_equal_rank_keep_their_order() -> None:
    x = identity(64)
    first = dead_by(identity(65), x)[1]
    second = dead_by(identity(66), x)[1]
    (group,) = by_member(iter([first, second]))
    assert group.claims == (first, second)
    (group,) = by_member(iter([second, first]))
    assert group.claims == (second, first)


def test_a_left_member_is_a_tombstone_too() -> None:
    x = identity(67)
    left = sign_claim(x, Claim(x.node_id, 0, State.LEFT))
    (group,) = by_member([alive(x)[1], left])
    assert group.revives_the_dead(known=False)
    tampered = dataclasses.replace(left, state=int(State.ALIVE))
    (group,) = by_member([tampered])
    assert not group.revives_the_dead(known=False)
