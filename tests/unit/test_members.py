"""The sans-I/O member table: precedence of claims, refutation, suspicion, tombstones, and
convergence of merges whatever the order (hypothesis)."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from plexinode.identity import NodeId
from plexinode.membership.members import (
    MAX_INCARNATION,
    Applied,
    Claim,
    Died,
    Joined,
    Left,
    MemberTable,
    Reaped,
    State,
    Stopped,
    Suspected,
    Updated,
)
from plexinode.membership.suspicion import suspicion_timeout
from plexinode.net.address import Address
from tests.unit.ids import nid

OWN = nid(1)
X, Y, Z = nid(2), nid(3), nid(4)


def addr(n: int) -> Address:
    return Address(f"10.0.0.{n}", 7420)


def alive(node: NodeId, inc: int, at: int = 9, **tags: str) -> Claim:
    return Claim(node, inc, State.ALIVE, address=addr(at), tags=tags)


def suspect(node: NodeId, inc: int, by: NodeId = Y) -> Claim:
    return Claim(node, inc, State.SUSPECT, accuser=by)


def dead(node: NodeId, inc: int, by: NodeId = Y) -> Claim:
    return Claim(node, inc, State.DEAD, accuser=by)


def table(**kwargs: object) -> MemberTable:
    return MemberTable(OWN, addr(1), 0.0, **kwargs)  # type: ignore[arg-type]


def belief(t: MemberTable, node: NodeId) -> tuple[int, State]:
    view = t.get(node)
    assert view is not None
    return view.incarnation, view.state


def test_a_new_member_joins_once() -> None:
    t = table()
    outcome = t.apply(alive(X, 0), 1.0)
    assert outcome.accepted
    assert [type(e) for e in outcome.events] == [Joined]
    assert t.apply(alive(X, 0), 2.0) == Applied(False)  # heard again: nothing new
    assert t.live_count == 2
    assert len(t) == 2
    assert X in t


def test_accusations_about_unknown_members_are_ignored_and_counted() -> None:
    t = table()
    assert not t.apply(suspect(X, 0), 1.0).accepted
    assert not t.apply(dead(X, 0), 1.0).accepted
    assert X not in t
    assert t.stats["ignored_unknown"] == 2


def test_suspicion_then_refutation_with_a_higher_incarnation() -> None:
    t = table()
    t.apply(alive(X, 3), 0.0)
    outcome = t.apply(suspect(X, 3), 1.0)
    assert outcome.accepted
    assert [type(e) for e in outcome.events] == [Suspected]
    assert belief(t, X) == (3, State.SUSPECT)
    assert not t.apply(alive(X, 3), 2.0).accepted  # the same incarnation cannot refute
    refuted = t.apply(alive(X, 4), 2.0)
    assert [type(e) for e in refuted.events] == [Updated]
    assert belief(t, X) == (4, State.ALIVE)
    assert t.suspicion_deadline(X) is None
    assert not t.apply(suspect(X, 3), 3.0).accepted  # an accusation of the old incarnation
    assert t.stats["ignored_stale"] == 2


def test_an_accusation_of_an_incarnation_not_yet_seen_is_ignored() -> None:
    t = table()
    t.apply(alive(X, 3), 0.0)
    assert not t.apply(suspect(X, MAX_INCARNATION), 1.0).accepted
    assert not t.apply(dead(X, 4), 1.0).accepted
    assert belief(t, X) == (3, State.ALIVE)
    assert t.stats["ignored_future_accusation"] == 2


def test_alive_updates_report_changed_address_or_tags_only() -> None:
    t = table()
    t.apply(alive(X, 0, role="relay"), 0.0)
    assert t.apply(alive(X, 1, role="relay"), 1.0) == Applied(True)  # nothing visible changed
    moved = t.apply(alive(X, 2, at=7, role="relay"), 2.0)
    assert [type(e) for e in moved.events] == [Updated]
    assert moved.events[0].member.address == addr(7)
    retagged = t.apply(alive(X, 3, at=7, role="store"), 3.0)
    assert retagged.events[0].member.tags == {"role": "store"}


def test_we_refute_accusations_against_ourselves() -> None:
    t = table(incarnation=5)
    assert not t.apply(suspect(OWN, 4), 1.0).refutation  # about an incarnation we left behind
    outcome = t.apply(suspect(OWN, 5), 1.0)
    assert outcome.refutation == alive(OWN, 6, at=1)
    assert t.incarnation == 6
    assert t.apply(dead(OWN, 6), 2.0).refutation == alive(OWN, 7, at=1)
    # Claims in our name that we did not make change nothing.
    assert t.apply(alive(OWN, 100), 3.0) == Applied(False)
    assert t.apply(Claim(OWN, 100, State.LEFT), 3.0) == Applied(False)
    assert belief(t, OWN) == (7, State.ALIVE)


def test_at_the_incarnation_limit_there_is_nothing_to_refute_with() -> None:
    t = table(incarnation=MAX_INCARNATION - 1)
    assert t.apply(suspect(OWN, MAX_INCARNATION - 1), 1.0).refutation is not None
    assert t.incarnation == MAX_INCARNATION
    assert t.apply(suspect(OWN, MAX_INCARNATION), 2.0) == Applied(False)
    assert t.incarnation == MAX_INCARNATION
    with pytest.raises(OverflowError):
        t.update_self(3.0, tags={"v": "2"})


def test_update_self_and_leave() -> None:
    t = table()
    claim = t.update_self(1.0, address=addr(5), tags={"v": "2"})
    assert claim == alive(OWN, 1, at=5, v="2")
    assert t.own_claim() == claim
    assert t.leave(2.0) == Claim(OWN, 1, State.LEFT)
    # One change at a time: the other stays as it was.
    assert t.update_self(3.0, tags={"v": "3"}) == alive(OWN, 2, at=5, v="3")
    assert t.update_self(4.0, address=addr(6)) == alive(OWN, 3, at=6, v="3")


def test_the_other_live_members_in_the_order_they_joined() -> None:
    t = table()
    for node in (Z, X, Y):
        t.apply(alive(node, 0), 0.0)
    assert list(t.others_live) == [Z, X, Y]
    t.apply(suspect(X, 0), 1.0)  # a suspect is still live
    t.apply(dead(Y, 0), 1.0)
    assert list(t.others_live) == [Z, X]
    t.apply(alive(Y, 1), 2.0)  # back: at the end
    assert list(t.others_live) == [Z, X, Y]


def test_suspicion_timeout_shrinks_with_independent_confirmations() -> None:
    t = table(probe_interval=1.0, suspicion_mult=2.0, suspicion_max_mult=6.0)
    for i in range(10, 110):  # 100 live members besides us: floor = 2 * log10(101)
        t.apply(alive(nid(i), 0), 0.0)
    floor, ceiling, k = t.suspicion_bounds()
    assert floor == pytest.approx(2 * math.log10(101))
    assert ceiling == pytest.approx(6 * floor)
    assert k == 3
    t.apply(suspect(nid(10), 0, by=nid(11)), 10.0)
    deadlines = [t.suspicion_deadline(nid(10))]
    for accuser in (nid(12), nid(12), nid(13), nid(14), nid(15)):
        t.apply(suspect(nid(10), 0, by=accuser), 11.0)
        deadlines.append(t.suspicion_deadline(nid(10)))
    assert deadlines[0] == pytest.approx(10.0 + ceiling)
    assert deadlines[1] < deadlines[0]
    assert deadlines[2] == deadlines[1]  # the same accuser twice counts once
    assert deadlines[4] == pytest.approx(10.0 + floor)  # K confirmations: the floor
    assert deadlines[5] == deadlines[4]


def test_suspicion_timeout_formula() -> None:
    assert suspicion_timeout(0, 2.0, 12.0, 3) == 12.0
    assert suspicion_timeout(3, 2.0, 12.0, 3) == 2.0
    assert suspicion_timeout(9, 2.0, 12.0, 3) == 2.0
    assert suspicion_timeout(0, 2.0, 12.0, 0) == 2.0
    values = [suspicion_timeout(c, 2.0, 12.0, 3) for c in range(4)]
    assert values == sorted(values, reverse=True)


def test_small_networks_expect_fewer_confirmations() -> None:
    t = table()
    t.apply(alive(X, 0), 0.0)
    t.apply(alive(Y, 0), 0.0)
    assert t.suspicion_bounds()[2] == 1  # three live members: one other can confirm
    floor, _, _ = t.suspicion_bounds()
    assert floor == 2.0  # log10 of a tiny network is floored at 1


def test_expired_suspicion_is_declared_dead_by_us_then_reaped() -> None:
    t = table(retention=100.0)
    t.apply(alive(X, 2), 0.0)
    t.apply(suspect(X, 2), 1.0)
    deadline = t.next_deadline()
    assert deadline is not None
    assert t.expire(deadline - 0.01) == ([], [])
    claims, events = t.expire(deadline)
    assert claims == [Claim(X, 2, State.DEAD, accuser=OWN)]
    assert [type(e) for e in events] == [Died]
    assert t.live_count == 1
    assert t.next_deadline() is None
    assert not t.apply(alive(X, 2), deadline + 1).accepted  # a late, older claim: no resurrection
    claims, events = t.expire(deadline + 100.0)
    assert claims == []
    assert [type(e) for e in events] == [Reaped]
    assert X not in t


def test_a_suspect_whose_time_ran_out_gets_one_last_call_before_the_verdict() -> None:
    t = table()
    t.apply(alive(X, 2), 0.0)
    t.apply(alive(Y, 1), 0.0)
    t.apply(alive(Z, 1), 0.0)
    t.apply(suspect(X, 2), 1.0)
    deadline = t.next_deadline()
    assert deadline is not None
    assert t.last_calls(deadline - 0.01, 0.5) == []  # not yet
    assert t.last_calls(deadline, 0.5) == [X]
    assert t.last_calls(deadline + 0.1, 0.5) == []  # one last call per suspicion
    assert t.next_deadline() == deadline + 0.5
    # A late confirmation does not hurry it.
    assert t.apply(suspect(X, 2, by=Z), deadline + 0.1).accepted
    assert t.expire(deadline + 0.49) == ([], [])
    claims, events = t.expire(deadline + 0.5)
    assert claims == [Claim(X, 2, State.DEAD, accuser=OWN)]
    assert [type(e) for e in events] == [Died]
    assert t.last_calls(deadline + 10.0, 0.5) == []  # the dead get none


def test_a_refutation_during_the_last_call_spares_the_suspect() -> None:
    t = table()
    t.apply(alive(X, 2), 0.0)
    t.apply(suspect(X, 2), 1.0)
    deadline = t.next_deadline()
    assert deadline is not None
    assert t.last_calls(deadline, 0.5) == [X]
    assert t.apply(alive(X, 3), deadline + 0.01).accepted  # the answer to the last call
    assert t.expire(deadline + 1.0) == ([], [])
    view = t.get(X)
    assert view is not None
    assert view.state is State.ALIVE
    # A new suspicion of the new life gets a last call of its own.
    t.apply(suspect(X, 3), deadline + 2.0)
    again = t.next_deadline()
    assert again is not None
    assert t.last_calls(again, 0.5) == [X]


def test_the_member_dead_longest_can_be_forgotten_early_to_make_room() -> None:
    t = table()
    assert t.reap_oldest() is None  # nobody dead: nothing to forget
    t.apply(alive(X, 1), 0.0)
    t.apply(alive(Y, 1), 0.0)
    t.apply(dead(Y, 1, by=X), 1.0)
    t.apply(dead(X, 1), 2.0)
    assert t.remembered_dead == 2
    reaped = t.reap_oldest()
    assert isinstance(reaped, Reaped)
    assert reaped.member.node_id == Y
    assert Y not in t
    assert X in t
    assert (t.remembered_dead, t.stats["reaped_early"]) == (1, 1)
    assert [e.member.node_id for e in t.expire(10_000.0)[1]] == [X]  # the other, in its time


def test_a_restarted_member_rejoins_with_a_higher_incarnation() -> None:
    t = table()
    t.apply(alive(X, 2), 0.0)
    assert [type(e) for e in t.apply(dead(X, 2), 1.0).events] == [Died]
    back = t.apply(alive(X, 3, at=8), 2.0)
    assert [type(e) for e in back.events] == [Joined]
    assert belief(t, X) == (3, State.ALIVE)
    assert t.live_count == 2
    assert t.expire(10_000.0) == ([], [])  # no longer a tombstone


def test_an_alive_member_that_leaves_is_left_at_once() -> None:
    t = table()
    t.apply(alive(X, 2), 0.0)
    outcome = t.apply(Claim(X, 2, State.LEFT), 1.0)
    assert outcome.accepted
    assert [type(e) for e in outcome.events] == [Left]
    assert belief(t, X) == (2, State.LEFT)
    assert t.live_count == 1  # ourselves
    assert not t.apply(suspect(X, 2), 2.0).accepted  # nothing to accuse any more


def test_a_suspect_declared_dead_by_another_member_is_dead_here_too() -> None:
    t = table()
    t.apply(alive(X, 2), 0.0)
    t.apply(suspect(X, 2), 1.0)
    assert t.suspicion_deadline(X) is not None
    outcome = t.apply(dead(X, 2, by=Z), 2.0)
    assert outcome.accepted
    assert [type(e) for e in outcome.events] == [Died]
    assert belief(t, X) == (2, State.DEAD)
    assert t.suspicion_deadline(X) is None  # its own verdict is no longer due
    assert not t.apply(alive(X, 2), 3.0).accepted  # its old life cannot come back


def test_left_outranks_dead_at_one_incarnation() -> None:
    t = table()
    t.apply(alive(X, 2), 0.0)
    t.apply(dead(X, 2), 1.0)
    outcome = t.apply(Claim(X, 2, State.LEFT), 2.0)
    assert [type(e) for e in outcome.events] == [Left]
    assert not t.apply(dead(X, 2, by=Z), 3.0).accepted
    assert belief(t, X) == (2, State.LEFT)


def test_a_suspect_that_leaves_is_left_and_comes_back_only_in_a_new_life() -> None:
    t = table(retention=100.0)
    t.apply(alive(X, 2), 0.0)
    t.apply(suspect(X, 2), 1.0)
    outcome = t.apply(Claim(X, 2, State.LEFT), 2.0)
    assert [type(e) for e in outcome.events] == [Left]
    assert t.next_deadline() is None  # the suspicion ended with the leave: no death to declare
    assert t.live_count == 1
    assert not t.apply(alive(X, 2), 3.0).accepted  # its old alive claim, late: not a rejoin
    back = t.apply(alive(X, 3), 4.0)  # its next life
    assert [type(e) for e in back.events] == [Joined]
    assert belief(t, X) == (3, State.ALIVE)
    assert t.expire(1_000.0) == ([], [])  # no longer remembered as left


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"incarnation": -1, "state": State.ALIVE}, "incarnation"),
        ({"incarnation": 1 << 64, "state": State.ALIVE}, "incarnation"),
        ({"incarnation": 0, "state": State.SUSPECT}, "accuser"),
        ({"incarnation": 0, "state": State.LEFT, "accuser": Y}, "accuser"),
        ({"incarnation": 0, "state": State.ALIVE}, "address"),
    ],
)
def test_malformed_claims_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Claim(X, **kwargs)  # type: ignore[arg-type]


def test_a_stopped_member_is_listed_stopped_until_its_restart_grace_ends() -> None:
    t = table(restart_grace=900.0)
    t.apply(alive(X, 3), 0.0)
    t.apply(suspect(X, 3), 1.0)
    outcome = t.apply(Claim(X, 3, State.STOPPED), 2.0)
    assert outcome.accepted
    assert [type(e) for e in outcome.events] == [Stopped]
    assert belief(t, X) == (3, State.STOPPED)
    assert X not in t.others_live  # not probed while it is away
    # Its silence got it declared dead somewhere: its own word outranks that, at one life.
    assert not t.apply(dead(X, 3), 3.0).accepted
    assert belief(t, X) == (3, State.STOPPED)
    assert t.next_deadline() == 902.0
    assert t.expire(901.0) == ([], [])
    claims, events = t.expire(902.0)
    assert claims == []
    assert [type(e) for e in events] == [Died]
    assert belief(t, X) == (3, State.DEAD)  # shown dead from now on ...
    assert t.expire(2000.0) == ([], [])  # ... once
    assert not t.apply(Claim(X, 3, State.STOPPED), 2001.0).accepted  # old news
    # Back with a higher incarnation (its next run starts above the stopped one): alive.
    back = t.apply(alive(X, 4), 2002.0)
    assert [type(e) for e in back.events] == [Joined]
    assert belief(t, X) == (4, State.ALIVE)
    assert t.next_deadline() is None


def test_a_member_back_within_the_grace_is_alive_and_never_shown_dead() -> None:
    t = table(restart_grace=900.0)
    t.apply(alive(X, 3), 0.0)
    t.apply(Claim(X, 3, State.STOPPED), 1.0)
    t.apply(alive(X, 4), 30.0)
    assert belief(t, X) == (4, State.ALIVE)
    assert t.expire(5000.0) == ([], [])
    # Leaving is final, even over a stopped claim of the same life.
    t.apply(Claim(X, 4, State.STOPPED), 5001.0)
    assert t.apply(Claim(X, 4, State.LEFT), 5002.0).accepted
    assert belief(t, X) == (4, State.LEFT)
    assert not t.apply(Claim(X, 4, State.STOPPED), 5003.0).accepted


def test_our_own_stop_and_a_stopped_claim_of_our_previous_run() -> None:
    t = MemberTable(OWN, addr(1), 0.0, incarnation=5)
    assert t.stop(0.0) == Claim(OWN, 5, State.STOPPED)
    # A restart without our database starts at 0: the stopped claim of our last run is refuted.
    fresh = MemberTable(OWN, addr(1), 0.0)
    outcome = fresh.apply(Claim(OWN, 5, State.STOPPED), 1.0)
    assert outcome.refutation == Claim(OWN, 6, State.ALIVE, address=addr(1), tags={})
    assert fresh.incarnation == 6
    # The stopped claim of a life we already left behind is ignored.
    assert fresh.apply(Claim(OWN, 5, State.STOPPED), 2.0) == Applied(False)
    # An accusation moves us one step only: anyone may accuse any incarnation.
    assert fresh.apply(dead(OWN, 1000), 3.0).refutation is not None
    assert fresh.incarnation == 7
    # Our incarnations never pass the limit.
    fresh.apply(Claim(OWN, MAX_INCARNATION, State.STOPPED), 4.0)
    assert fresh.incarnation == MAX_INCARNATION


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="positive"):
        table(probe_interval=0.0)
    with pytest.raises(ValueError, match="suspicion_confirmations"):
        table(suspicion_confirmations=-1)
    with pytest.raises(ValueError, match="restart_grace"):
        table(restart_grace=-1.0)


# -- convergence ---------------------------------------------------------------------------------

MEMBERS = [nid(10), nid(11), nid(12)]
ACCUSERS = [nid(20), nid(21)]


@st.composite
def histories(draw: st.DrawFn) -> tuple[list[Claim], list[Claim]]:
    """Alive claims (what every node heard first), then any claims about those incarnations."""
    alives = []
    for member in MEMBERS:
        for inc in draw(st.sets(st.integers(0, 4), min_size=1, max_size=3)):
            at = draw(st.integers(2, 4))
            alives.append(alive(member, inc, at=at, v=str(draw(st.integers(0, 1)))))
    announced = [(c.node_id, c.incarnation) for c in alives]
    others = []
    for _ in range(draw(st.integers(0, 12))):
        member, inc = draw(st.sampled_from(announced))
        kind = draw(st.sampled_from([State.SUSPECT, State.DEAD, State.STOPPED, State.LEFT]))
        if kind in (State.LEFT, State.STOPPED):
            others.append(Claim(member, inc + draw(st.integers(0, 1)), kind))
        else:
            others.append(Claim(member, inc, kind, accuser=draw(st.sampled_from(ACCUSERS))))
    return alives, others


def heard(
    alives: list[Claim], others: list[Claim], rng: random.Random, repeats: int
) -> MemberTable:
    t = table()
    first = alives[:]
    rng.shuffle(first)
    rest = (alives + others) * repeats
    rng.shuffle(rest)
    for claim in first + rest:
        t.apply(claim, 0.0)
    return t


def beliefs(t: MemberTable) -> dict[NodeId, tuple[int, State, Address, dict[str, str]]]:
    return {m.node_id: (m.incarnation, m.state, m.address, dict(m.tags)) for m in t.members()}


@settings(max_examples=300, deadline=None)
@given(histories(), st.integers(0, 2**32), st.integers(0, 2**32))
def test_merges_converge_whatever_the_order_and_repetition(
    history: tuple[list[Claim], list[Claim]], seed_a: int, seed_b: int
) -> None:
    """Commutative (any order), idempotent (repeats change nothing), associative (merging in
    two batches equals merging in one: a table that heard part of the claims, then the rest,
    agrees with one that heard them all at once)."""
    alives, others = history
    a = heard(alives, others, random.Random(seed_a), repeats=1)
    b = heard(alives, others, random.Random(seed_b), repeats=3)
    assert beliefs(a) == beliefs(b)
    split = len(others) // 2
    c = heard(alives, others[:split], random.Random(seed_a), repeats=1)
    for claim in others[split:]:
        c.apply(claim, 0.0)
    assert beliefs(c) == beliefs(a)


@settings(max_examples=300, deadline=None)
@given(histories(), st.integers(0, 2**32))
def test_is_news_predicts_exactly_what_apply_acts_on(
    history: tuple[list[Claim], list[Claim]], seed: int
) -> None:
    """The service skips the signature check of claims that are not news, so `is_news` must
    never call news what `apply` ignores, nor the reverse (accusations of us included)."""
    alives, others = history
    rng = random.Random(seed)
    claims = alives + others
    claims += [Claim(OWN, rng.randrange(3), rng.choice([State.SUSPECT, State.DEAD]), accuser=X)]
    claims += [Claim(OWN, rng.randrange(3), State.STOPPED)]
    rng.shuffle(claims)
    t = table()
    for claim in claims:
        predicted = t.is_news(claim)
        outcome = t.apply(claim, 0.0)
        assert predicted == (outcome.accepted or outcome.refutation is not None), claim


def test_is_news_at_the_incarnation_limit() -> None:
    t = MemberTable(OWN, addr(1), 0.0, incarnation=MAX_INCARNATION)
    accusation = suspect(OWN, MAX_INCARNATION)
    assert not t.is_news(accusation)
    assert t.apply(accusation, 0.0) == Applied(False)
