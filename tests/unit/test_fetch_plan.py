"""Choosing the fastest holders for a restore."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from plexinode.shards.fetch_plan import DEFAULT_RTT, FetchPlan

A, B, C, D = (bytes([i]) * 32 for i in range(4))


def test_the_fastest_holders_one_block_each() -> None:
    plan = FetchPlan({0: [A], 1: [B], 2: [C], 3: [D]})
    for node, rtt in ((A, 0.4), (B, 0.1), (C, 0.3), (D, 0.2)):
        plan.measured(node, rtt)
    assert plan.choose(2) == [(1, B), (3, D)]
    assert plan.choose(2, excluded=[1]) == [(3, D), (2, C)]
    plan.failed(D)
    assert plan.choose(3) == [(1, B), (2, C), (0, A)]
    assert plan.choose(5) == [(1, B), (2, C), (0, A)]  # fewer than k: cannot be fetched


def test_times_are_smoothed_and_unmeasured_holders_rank_at_the_median() -> None:
    plan = FetchPlan({0: [A], 1: [B], 2: [C]})
    assert plan.rtt(A) == DEFAULT_RTT
    plan.measured(A, 1.0)
    plan.measured(A, 0.0)
    assert plan.rtt(A) == 1.0 - 0.125
    plan.measured(B, 0.1)
    assert plan.rtt(C) == (0.875 + 0.1) / 2
    assert plan.choose(1) == [(1, B)]


def test_a_holder_of_two_indices_gives_one() -> None:
    plan = FetchPlan({0: [A], 1: [A], 2: [B]})
    plan.measured(A, 0.01)
    plan.measured(B, 1.0)
    assert plan.choose(2) == [(0, A), (2, B)]


@given(
    holders=st.dictionaries(
        st.integers(0, 9),
        st.lists(st.sampled_from([A, B, C, D]), min_size=1, max_size=3),
        max_size=10,
    ),
    k=st.integers(1, 5),
    excluded=st.sets(st.integers(0, 9)),
)
def test_choices_are_distinct_and_allowed(
    holders: dict[int, list[bytes]], k: int, excluded: set[int]
) -> None:
    plan = FetchPlan(holders)
    chosen = plan.choose(k, excluded)
    assert len(chosen) <= k
    assert len({i for i, _ in chosen}) == len({n for _, n in chosen}) == len(chosen)
    assert all(i not in excluded and n in holders[i] for i, n in chosen)


def test_fetches_in_flight_weigh_a_holders_time() -> None:
    plan = FetchPlan({0: [A], 1: [B], 2: [C]})
    for node, rtt in ((A, 0.1), (B, 0.15), (C, 0.4)):
        plan.measured(node, rtt)
    assert plan.choose(1) == [(0, A)]
    plan.started(A)  # A is busy: 0.2 against B's 0.15
    assert plan.choose(1) == [(1, B)]
    plan.started(B)
    plan.started(B)  # B: 0.45; A: 0.2
    assert plan.choose(1) == [(0, A)]
    for node in (A, B, B):
        plan.finished(node)
    assert plan.choose(3) == [(0, A), (1, B), (2, C)]
