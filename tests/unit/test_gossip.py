"""The gossip queue: retransmission limits, priorities, replacement, byte budgets, bounds."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from plexinode.membership.gossip import GossipQueue, retransmit_limit
from tests.unit.ids import nid


@pytest.mark.parametrize(
    ("members", "limit"), [(0, 1), (1, 4), (9, 4), (10, 8), (99, 8), (100, 12), (1000, 16)]
)
def test_retransmit_limit_grows_with_log_n(members: int, limit: int) -> None:
    assert retransmit_limit(4, members) == limit


def test_least_sent_first_then_newest_first() -> None:
    q = GossipQueue(len)
    q.add(nid(1), b"a")
    q.add(nid(2), b"b")
    assert q.take(1, 100) == [b"b"]  # both unsent: the newest
    q.add(nid(3), b"c")
    assert q.take(2, 100) == [b"c", b"a"]  # unsent first (newest first), then sent once
    assert q.take(3, 100) == [b"c", b"b", b"a"]  # all sent once: newest first


def test_a_newer_claim_about_a_member_replaces_the_queued_one() -> None:
    q = GossipQueue(len)
    q.add(nid(1), b"old")
    q.take(10, 100)
    q.add(nid(1), b"new")
    assert len(q) == 1
    assert q.take(10, 100) == [b"new"]
    assert q.stats["replaced"] == 1


def test_claims_leave_after_their_retransmission_limit() -> None:
    q = GossipQueue(len, retransmit_mult=2)
    q.add(nid(1), b"x")
    sends = 0
    while q.take(100, 9):  # limit 2 * ceil(log10(10)) = 2
        sends += 1
    assert sends == 2
    assert q.stats["retired"] == 1


def test_the_budget_is_filled_without_splitting_a_claim() -> None:
    q = GossipQueue(len)
    q.add(nid(1), b"s" * 10)
    q.add(nid(2), b"L" * 100)  # newest, but too big for the budget
    q.add(nid(3), b"m" * 20)
    taken = q.take(40, 100, overhead=2)
    assert taken == [b"m" * 20, b"s" * 10]
    assert q.take(5, 100) == []


def test_a_flood_of_invented_members_costs_bounded_memory() -> None:
    q = GossipQueue(len, max_queued=64)
    q.add(nid(0), b"real news")
    q.take(100, 10)  # sent once: the first to go when room is needed
    for i in range(1, 10_001):
        q.add(nid(i), b"invented")
    assert len(q) == 64
    assert q.stats["dropped_full"] == 10_001 - 64
    assert b"real news" not in q.take(10_000, 10)


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match=">= 1"):
        GossipQueue(len, retransmit_mult=0)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 20), st.integers(1, 60)), max_size=60),
    st.integers(0, 400),
)
def test_take_never_exceeds_the_budget_nor_repeats_a_claim(
    claims: list[tuple[int, int]], budget: int
) -> None:
    q = GossipQueue(len, max_queued=16)
    for subject, size in claims:
        q.add(nid(subject), bytes([subject]) * size)
    taken = q.take(budget, 50, overhead=3)
    assert sum(len(c) + 3 for c in taken) <= budget
    assert len({c[0] for c in taken}) == len(taken)  # one claim per member
    assert len(q) <= 16


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.tuples(st.just("add"), st.integers(0, 12), st.integers(1, 40)),
            st.tuples(st.just("take"), st.integers(0, 120), st.integers(0, 50)),
        ),
        max_size=80,
    )
)
def test_take_picks_exactly_what_sorting_the_whole_queue_would(ops: list[tuple]) -> None:
    """The levels are an optimisation: the claims taken are those of the plain rule (sort
    everything by times sent, then newest first; take what fits), for queues this small."""
    q: GossipQueue[bytes] = GossipQueue(len, retransmit_mult=2, max_queued=8)
    model: dict[int, list[object]] = {}  # subject -> [item, sent, order]
    order = 0
    for op, a, b in ops:
        if op == "add":
            item = bytes([a]) * b
            q.add(nid(a), item)
            model[a] = [item, 0, order]
            order += 1
            if len(model) > 8:
                worst = max(model, key=lambda s: (model[s][1], -model[s][2]))
                del model[worst]
        else:
            limit = retransmit_limit(2, b)
            expected, left = [], a
            for subject in sorted(model, key=lambda s: (model[s][1], -model[s][2])):
                if left <= 0:
                    break
                if len(model[subject][0]) <= left:
                    left -= len(model[subject][0])
                    expected.append(subject)
            assert q.take(a, b) == [model[s][0] for s in expected]
            for subject in expected:
                model[subject][1] += 1
                if model[subject][1] >= limit:
                    del model[subject]
        assert len(q) == len(model)
